//! `GET /{tenant}/oauth2/v2.0/authorize` (`microsoft-protocols.md` §1.2).
//!
//! Errors about the app or the redirect URI are rendered on an error page and never
//! redirected (redirecting to an unvalidated URI is unsafe); everything after that goes
//! back to the client as `?error=...&error_description=AADSTS...&state=...`.

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::errors;
use super::issue::missing_consent;
use super::pages;
use super::signin::{self, check_user, redirect_error, session_from};
use super::state::{AuthorizeRequest, Flow, FlowKind, PkceMethod, ResponseMode, SignedIn, Step};
use super::{Segment, resolve_segment};
use crate::aad::AadError;
use crate::emulator::Emulator;
use crate::model::{AppRegistration, Platform, SignInAudience};
use crate::tokens::ScopeSet;

/// Query or form parameters, first occurrence wins.
pub(crate) fn params(raw: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

/// Finds the app for a request at `segment` and checks it may be used there.
pub(crate) fn app_for_segment(
    emulator: &Emulator,
    segment: Segment,
    client_id: &str,
) -> Result<AppRegistration, AadError> {
    emulator.read(|m| {
        let directory = segment.directory_name(m);
        let Some((home, app)) = m.app(client_id) else {
            return Err(errors::app_not_found(client_id, &directory));
        };
        let id = app.client_id.to_string();
        if let Segment::Tenant(t) = segment
            && home.id != t
            && app.audience == SignInAudience::SingleTenant
        {
            return Err(errors::app_not_found(client_id, &directory));
        }
        if app.disabled {
            return Err(errors::app_disabled(&id, &app.display_name));
        }
        match (segment, app.audience) {
            (Segment::Common | Segment::Organizations, SignInAudience::SingleTenant) => {
                Err(errors::not_multi_tenant(&id))
            }
            (Segment::Consumers, SignInAudience::SingleTenant | SignInAudience::MultiTenant) => {
                Err(errors::org_only_app(&id, &app.display_name))
            }
            (Segment::Tenant(_) | Segment::Organizations, SignInAudience::PersonalOnly) => {
                Err(errors::msa_only_app(&id, &app.display_name))
            }
            _ => Ok(app.clone()),
        }
    })
}

/// The `/authorize` endpoint.
pub async fn authorize(
    State(emulator): State<Emulator>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let now = emulator.now();
    let p = params(query.as_deref().unwrap_or_default());
    let get = |k: &str| p.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let segment = match resolve_segment(&emulator, &tenant) {
        Ok(s) => s,
        Err(e) => return pages::error_page(&e.to_error(false), now),
    };
    let Some(client_id) = get("client_id") else {
        return pages::error_page(&errors::missing_parameter("client_id"), now);
    };
    let app = match app_for_segment(&emulator, segment, client_id) {
        Ok(a) => a,
        Err(e) => return pages::error_page(&e, now),
    };
    let redirect_uri = match get("redirect_uri") {
        Some(r) => r.to_owned(),
        None => match app.redirect_uris.first() {
            Some(r) => r.uri.clone(),
            None => return pages::error_page(&errors::no_reply_address(), now),
        },
    };
    let Some(platform) = app.redirect_platform(&redirect_uri) else {
        return pages::error_page(
            &errors::redirect_mismatch(&redirect_uri, &app.client_id.to_string()),
            now,
        );
    };
    let public = platform != Platform::Web;
    let state = get("state").map(str::to_owned);
    let response_mode = match get("response_mode") {
        None | Some("query") => ResponseMode::Query,
        Some("fragment") => ResponseMode::Fragment,
        Some("form_post") => ResponseMode::FormPost,
        Some(other) => {
            return redirect_error(
                &redirect_uri,
                ResponseMode::Query,
                state.as_deref(),
                &errors::invalid_parameter("response_mode", other),
                now,
            );
        }
    };
    let fail =
        |e: AadError| redirect_error(&redirect_uri, response_mode, state.as_deref(), &e, now);

    match get("response_type") {
        None => return fail(errors::missing_parameter("response_type")),
        Some("code") => {}
        Some(other) => return fail(errors::unsupported_response_type(other)),
    }
    let Some(scope) = get("scope") else {
        return fail(errors::missing_parameter("scope"));
    };
    let set = ScopeSet::parse(scope);
    if let Some(unknown) = set.unknown_resources.first() {
        let directory = emulator.read(|m| segment.directory_name(m));
        return fail(errors::resource_not_found(unknown, &directory));
    }
    let code_challenge = match (get("code_challenge"), get("code_challenge_method")) {
        (None, _) => None,
        (Some(c), None | Some("plain")) => Some((c.to_owned(), PkceMethod::Plain)),
        (Some(c), Some("S256")) => Some((c.to_owned(), PkceMethod::S256)),
        (Some(_), Some(other)) => {
            return fail(errors::invalid_parameter("code_challenge_method", other));
        }
    };
    if code_challenge.is_none() && public && emulator.knobs().require_pkce {
        return fail(errors::pkce_required());
    }
    let prompt = get("prompt").unwrap_or_default();
    let login_hint = get("login_hint").map(str::to_owned);

    let request = AuthorizeRequest {
        redirect_uri: redirect_uri.clone(),
        public,
        scope: scope.to_owned(),
        state: state.clone(),
        nonce: get("nonce").map(str::to_owned),
        response_mode,
        code_challenge,
        prompt_consent: prompt == "consent",
    };
    let mut flow = Flow {
        kind: FlowKind::Authorize(request),
        segment,
        client_id: app.client_id,
        user: None,
        step: Step::SignIn,
        login_hint: login_hint.clone(),
        created: now,
    };

    // Single sign-on from the session cookie, unless the client asks to sign in again.
    let session = session_from(&emulator, &headers).filter(|s| {
        login_hint
            .as_deref()
            .is_none_or(|h| h.eq_ignore_ascii_case(&s.upn))
    });
    let sso = session.and_then(|s| {
        let checked = emulator
            .read(|m| check_user(m, segment, app.client_id, &s.upn))
            .ok()?;
        Some(SignedIn {
            mfa_done: s.mfa_done,
            ..checked
        })
    });
    let sso = if matches!(prompt, "login" | "select_account") {
        None
    } else {
        sso
    };

    if prompt == "none" {
        let Some(user) = sso else {
            return fail(errors::login_required());
        };
        let (mfa, missing) = emulator.read(|m| {
            let mfa = m.user(&user.upn).is_some_and(|(_, u)| u.mfa_required);
            (mfa, missing_consent(m, &user, &app, scope))
        });
        if mfa && !user.mfa_done {
            let resource = set
                .resources
                .first()
                .map_or(crate::model::GRAPH_APP_ID, |(r, _)| r.api.app_id());
            return fail(errors::interaction_required_mfa(resource));
        }
        if !missing.is_empty() {
            return fail(errors::consent_required_silent(
                &app.client_id.to_string(),
                &app.display_name,
            ));
        }
        flow.user = Some(user);
        return signin::finish(&emulator, flow);
    }
    if let Some(user) = sso {
        flow.user = Some(user);
        return signin::after_password(&emulator, flow);
    }
    signin::show_signin(&emulator, flow, None)
}
