//! The HTML pages of the interactive flows: sign-in, MFA, consent, admin consent, device
//! code entry and confirmation, and error pages. Plain HTML forms with a little inline
//! CSS, usable in a browser; every dynamic value is HTML-escaped.
//!
//! Forms post to the routes under `/login/...` (and `/devicelogin`) with a hidden
//! `flow` field: an opaque id that is consumed on use.

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::aad::AadError;

/// Escapes text for HTML element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:'Segoe UI',Arial,sans-serif;background:#f2f2f2;margin:0}\
main{max-width:440px;margin:48px auto;background:#fff;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}\
h1{font-size:24px;font-weight:600;margin:0 0 16px}\
input[type=text],input[type=password],input[type=email]{width:100%;box-sizing:border-box;padding:6px 0;border:0;border-bottom:1px solid #666;font-size:15px;margin:8px 0 16px}\
button{background:#0067b8;color:#fff;border:0;padding:6px 24px;font-size:15px;margin:8px 8px 0 0;cursor:pointer}\
button.secondary{background:#ccc;color:#000}\
.error{color:#e81123;margin:8px 0}.small{font-size:13px;color:#444}ul{padding-left:20px}";

/// A complete page.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body><main>\n<div class=\"small\">Microsoft (mailbridge sandbox)</div>\n{body}\n</main></body></html>\n",
        esc(title)
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    resp
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        esc(name),
        esc(value)
    )
}

fn error_div(error: Option<&AadError>) -> String {
    error.map_or_else(String::new, |e| {
        format!(
            "<div id=\"error\" class=\"error\" role=\"alert\">{}</div>",
            esc(&e.headline())
        )
    })
}

/// The error page Microsoft shows instead of redirecting (AADSTS50011, 700016, ...).
pub fn error_page(error: &AadError, now: OffsetDateTime) -> Response {
    let ts = now
        .format(time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
        ))
        .unwrap_or_default();
    let body = format!(
        "<h1>Sorry, but we're having trouble signing you in.</h1>\n\
<div id=\"error\" class=\"error\" role=\"alert\">{}</div>\n\
<div class=\"small\" id=\"details\">Request Id: {}<br>Correlation Id: {}<br>Timestamp: {}<br>Message: {}</div>",
        esc(&error.headline()),
        Uuid::new_v4(),
        Uuid::new_v4(),
        esc(&ts),
        esc(&error.headline()),
    );
    page(error.status, "Sign in to your account", &body)
}

/// The sign-in page (username + password).
pub fn signin_page(
    flow: &str,
    app_name: &str,
    login_hint: Option<&str>,
    error: Option<&AadError>,
) -> Response {
    let body = format!(
        "<h1>Sign in</h1>\n<p>to continue to {}</p>\n{}\n\
<form method=\"post\" action=\"/login/signin\">{}\n\
<label for=\"login\">Email, phone, or Skype</label>\
<input type=\"email\" id=\"login\" name=\"login\" value=\"{}\" autocomplete=\"username\" required>\n\
<label for=\"passwd\">Password</label>\
<input type=\"password\" id=\"passwd\" name=\"passwd\" autocomplete=\"current-password\" required>\n\
<button type=\"submit\">Sign in</button></form>",
        esc(app_name),
        error_div(error),
        hidden("flow", flow),
        esc(login_hint.unwrap_or_default()),
    );
    page(StatusCode::OK, "Sign in to your account", &body)
}

/// The MFA page (enter the code from the authenticator).
pub fn mfa_page(flow: &str, upn: &str, error: Option<&AadError>) -> Response {
    let body = format!(
        "<h1>Enter code</h1>\n<p class=\"small\">{}</p>\n\
<p>Enter the code displayed in the Microsoft Authenticator app on your mobile device.</p>\n{}\n\
<form method=\"post\" action=\"/login/mfa\">{}\n\
<input type=\"text\" name=\"otc\" inputmode=\"numeric\" autocomplete=\"one-time-code\" placeholder=\"Code\" required>\n\
<button type=\"submit\">Verify</button></form>",
        esc(upn),
        error_div(error),
        hidden("flow", flow),
    );
    page(StatusCode::OK, "Enter code", &body)
}

/// One group of permissions on a consent page.
#[derive(Debug, Clone)]
pub struct PermissionGroup {
    /// "Microsoft Graph", "Office 365 Exchange Online", or "" for OpenID permissions.
    pub api: String,
    /// Permission values with their kind ("Delegated" / "Application").
    pub permissions: Vec<(String, &'static str)>,
}

fn groups_html(groups: &[PermissionGroup]) -> String {
    let mut out = String::new();
    for g in groups {
        let title = if g.api.is_empty() {
            "Sign you in and keep access"
        } else {
            g.api.as_str()
        };
        let _ = write!(out, "<h2 style=\"font-size:16px\">{}</h2><ul>", esc(title));
        for (p, kind) in &g.permissions {
            let _ = write!(
                out,
                "<li><span class=\"permission\">{}</span> <span class=\"small\">({})</span></li>",
                esc(p),
                esc(kind)
            );
        }
        out.push_str("</ul>");
    }
    out
}

/// The consent page ("Permissions requested") with Accept and Cancel.
pub fn consent_page(
    flow: &str,
    app_name: &str,
    upn: &str,
    groups: &[PermissionGroup],
    admin: bool,
) -> Response {
    let title = if admin {
        "Permissions requested — Accept for your organization"
    } else {
        "Permissions requested"
    };
    let note = if admin {
        "If you accept, this app will get access to the specified resources for all users in your organization. No one else will be prompted to review these permissions."
    } else {
        "Accepting these permissions means that you allow this app to use your data as specified in their terms of service and privacy statement."
    };
    let body = format!(
        "<h1>{}</h1>\n<p class=\"small\">{}</p>\n<p><strong id=\"app\">{}</strong> wants to:</p>\n{}\n\
<p class=\"small\">{}</p>\n\
<form method=\"post\" action=\"/login/consent\">{}\n\
<button type=\"submit\" name=\"accept\" value=\"true\">Accept</button>\
<button type=\"submit\" class=\"secondary\" name=\"accept\" value=\"false\">Cancel</button></form>",
        esc(title),
        esc(upn),
        esc(app_name),
        groups_html(groups),
        esc(note),
        hidden("flow", flow),
    );
    page(StatusCode::OK, "Permissions requested", &body)
}

/// "Need admin approval" (AADSTS90094): user consent is not allowed in the tenant.
pub fn need_admin_approval_page(app_name: &str, upn: &str, error: &AadError) -> Response {
    let body = format!(
        "<h1>Need admin approval</h1>\n<p class=\"small\">{}</p>\n\
<p><strong>{}</strong> needs permission to access resources in your organization that only an admin can grant. Please ask an admin to grant permission to this app before you can use it.</p>\n\
<div id=\"error\" class=\"error\" role=\"alert\">{}</div>",
        esc(upn),
        esc(app_name),
        esc(&error.headline()),
    );
    page(StatusCode::OK, "Need admin approval", &body)
}

/// The device-code entry page.
pub fn device_entry_page(message: Option<&str>) -> Response {
    let err = message.map_or_else(String::new, |m| {
        format!(
            "<div id=\"error\" class=\"error\" role=\"alert\">{}</div>",
            esc(m)
        )
    });
    let body = format!(
        "<h1>Enter code</h1>\n<p>Enter the code displayed on your app or device.</p>\n{err}\n\
<form method=\"post\" action=\"/devicelogin\">\n\
<input type=\"text\" name=\"otc\" placeholder=\"Code\" autocomplete=\"off\" required>\n\
<button type=\"submit\">Next</button></form>"
    );
    page(StatusCode::OK, "Enter code", &body)
}

/// "Are you trying to sign in to &lt;app&gt;?"
pub fn device_confirm_page(flow: &str, app_name: &str, upn: &str) -> Response {
    let body = format!(
        "<h1>Are you trying to sign in to {}?</h1>\n<p class=\"small\">{}</p>\n\
<p>Only continue if you downloaded the app from a store or website that you trust.</p>\n\
<form method=\"post\" action=\"/login/confirm\">{}\n\
<button type=\"submit\" name=\"accept\" value=\"true\">Continue</button>\
<button type=\"submit\" class=\"secondary\" name=\"accept\" value=\"false\">Cancel</button></form>",
        esc(app_name),
        esc(upn),
        hidden("flow", flow),
    );
    page(StatusCode::OK, "Are you trying to sign in?", &body)
}

/// The last device-flow page.
pub fn device_done_page(app_name: &str) -> Response {
    let body = format!(
        "<h1>{}</h1>\n<p id=\"done\">You have signed in to the {} application on your device. You may now close this window.</p>",
        esc(app_name),
        esc(app_name),
    );
    page(StatusCode::OK, "Signed in", &body)
}

/// The device-flow page after Cancel.
pub fn device_declined_page(app_name: &str) -> Response {
    let body = format!(
        "<h1>{}</h1>\n<p id=\"done\">You have declined to sign in to the {} application on your device. You may now close this window.</p>",
        esc(app_name),
        esc(app_name),
    );
    page(StatusCode::OK, "Sign-in declined", &body)
}

/// `response_mode=form_post`: an auto-submitting form to the redirect URI.
pub fn form_post_page(redirect_uri: &str, params: &[(&str, String)]) -> Response {
    let mut fields = String::new();
    for (k, v) in params {
        fields.push_str(&hidden(k, v));
    }
    let body = format!(
        "<form method=\"post\" name=\"hiddenform\" action=\"{}\">{fields}\
<noscript><p>Script is disabled. Click Submit to continue.</p><button type=\"submit\">Submit</button></noscript></form>\
<script>document.forms[0].submit();</script>",
        esc(redirect_uri),
    );
    page(StatusCode::OK, "Working...", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
