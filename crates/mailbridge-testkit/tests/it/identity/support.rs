//! A fresh emulated tenant per test, an HTTP client that behaves like a browser without
//! following redirects, an HTML form reader, and assertions on Microsoft's error shape.

use std::sync::Arc;

use mailbridge_testkit::crypto::{CertificateCredential, Jwt, b64url_decode};
use mailbridge_testkit::model::{
    Api, AppRegistration, PermissionKind, Platform, SignInAudience, Tenant, TenantModel, User,
};
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::OffsetClock;
use serde_json::Value;
use time::OffsetDateTime;

pub const PASSWORD: &str = "Correct-Horse-1";
pub const SECRET: &str = "Qx~8Q~daemon.secret.value-1234567890";
/// RFC 7636-style verifier and its S256 challenge (microsoft-protocols.md §1.2).
pub const VERIFIER: &str = "M25iVXpKU3puUjFaYWg3T1NDTDQtcW1ROUY5YXlwalNoc0hhakxifmZHag";
pub const CHALLENGE: &str = "qjrzSW9gMiUgpUvqgEPE4_-8swvyCtfOVvg55o5S_es";
pub const IMAP_SCOPE: &str = "offline_access openid profile https://outlook.office.com/IMAP.AccessAsUser.All https://outlook.office.com/SMTP.Send";

/// The emulated world of one test.
pub struct World {
    pub server: EmulatorServer,
    pub clock: Arc<OffsetClock>,
    pub base: String,
    pub tid: String,
    /// Public multi-tenant desktop app (loopback redirect, public client flows on).
    pub desktop: AppRegistration,
    /// Single-tenant confidential daemon (secret + certificate, app-only Exchange and
    /// Graph roles, admin consent granted).
    pub daemon: AppRegistration,
    pub certificate: Arc<CertificateCredential>,
    /// Web app (confidential, https redirect).
    pub web: AppRegistration,
}

impl World {
    pub fn emulator(&self) -> &Emulator {
        &self.server.emulator
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn token_url(&self, tenant: &str) -> String {
        self.url(&format!("/{tenant}/oauth2/v2.0/token"))
    }

    /// Moves the emulator's clock.
    pub fn advance(&self, secs: i64) {
        self.clock.advance(time::Duration::seconds(secs));
    }
}

/// The default world: tenant Contoso with alice, bob (MFA), carol (admin), three apps,
/// a second tenant Fabrikam with dave, and the personal-account directory with pat.
pub async fn world() -> World {
    world_with(|_| {}).await
}

/// The default world, changed by `f` before the emulator starts.
pub async fn world_with(f: impl FnOnce(&mut TenantModel)) -> World {
    let certificate = Arc::new(CertificateCredential::generate("mail daemon").unwrap());
    let year = OffsetDateTime::now_utc() + time::Duration::days(365);
    let mut desktop = AppRegistration::new("Mail connector")
        .public()
        .with_redirect(Platform::MobileDesktop, "http://localhost")
        .with_permission(
            Api::Graph,
            PermissionKind::Delegated,
            "IMAP.AccessAsUser.All",
        )
        .with_permission(Api::Graph, PermissionKind::Delegated, "SMTP.Send")
        .with_permission(Api::Graph, PermissionKind::Delegated, "offline_access");
    desktop.audience = SignInAudience::MultiTenant;
    let daemon = AppRegistration::new("Mail daemon")
        .with_secret(SECRET, year)
        .with_certificate(&certificate.certificate_pem, year)
        .with_redirect(Platform::Web, "https://daemon.example/consent")
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "IMAP.AccessAsApp",
        )
        .with_permission(
            Api::ExchangeOnline,
            PermissionKind::Application,
            "SMTP.SendAsApp",
        )
        .with_permission(Api::Graph, PermissionKind::Application, "Mail.ReadWrite")
        .consented();
    let mut web = AppRegistration::new("Web mail")
        .with_secret("web-secret-value", year)
        .with_redirect(Platform::Web, "https://web.example/callback")
        .with_permission(Api::Graph, PermissionKind::Delegated, "Mail.Read");
    web.audience = SignInAudience::MultiTenantAndPersonal;
    let mut bob = User::new("bob@contoso.example", "Bob", PASSWORD);
    bob.mfa_required = true;
    let contoso = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new("alice@contoso.example", "Alice", PASSWORD))
        .with_user(bob)
        .with_user(User::new("carol@contoso.example", "Carol", PASSWORD).admin())
        .with_app(desktop.clone())
        .with_app(daemon.clone())
        .with_app(web.clone());
    let fabrikam = Tenant::new("Fabrikam", "fabrikam.example").with_user(User::new(
        "dave@fabrikam.example",
        "Dave",
        PASSWORD,
    ));
    let personal = Tenant::personal_accounts("outlook.example").with_user(User::new(
        "pat@outlook.example",
        "Pat",
        PASSWORD,
    ));
    let mut model = TenantModel::builder()
        .tenant(contoso)
        .tenant(fabrikam)
        .tenant(personal)
        .build()
        .unwrap();
    let tid = model.tenants[0].id.to_string();
    f(&mut model);
    let clock = Arc::new(OffsetClock::new());
    let emulator = Emulator::with_clock(model, clock.clone()).unwrap();
    let server = EmulatorServer::start(emulator, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = server.base_url();
    World {
        server,
        clock,
        base,
        tid,
        desktop,
        daemon,
        certificate,
        web,
    }
}

/// A browser-like client: cookies on, redirects off.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

/// The first form of a page: its action and hidden fields.
#[derive(Debug, Clone)]
pub struct Form {
    pub action: String,
    pub fields: Vec<(String, String)>,
}

/// Reads the first `<form>` of `html`.
pub fn form(html: &str) -> Form {
    let start = html
        .find("<form")
        .unwrap_or_else(|| panic!("no form in page:\n{html}"));
    let end = html[start..].find("</form>").unwrap() + start;
    let body = &html[start..end];
    let open_end = body.find('>').unwrap();
    let action = attr(&body[..open_end], "action").unwrap();
    let mut fields = Vec::new();
    let mut rest = body;
    while let Some(i) = rest.find("<input") {
        let tag_end = rest[i..].find('>').unwrap() + i;
        let tag = &rest[i..tag_end];
        if tag.contains("type=\"hidden\"")
            && let (Some(n), Some(v)) = (attr(tag, "name"), attr(tag, "value"))
        {
            fields.push((n, v));
        }
        rest = &rest[tag_end..];
    }
    Form { action, fields }
}

/// The text of the element with `id="error"`, if the page has one.
pub fn page_error(html: &str) -> Option<String> {
    let start = html.find("id=\"error\"")?;
    let open_end = html[start..].find('>')? + start + 1;
    let close = html[open_end..].find("</div>")? + open_end;
    Some(unescape(&html[open_end..close]))
}

/// Posts a page's form with extra fields; returns the answer and its body.
pub async fn submit(
    client: &reqwest::Client,
    base: &str,
    html: &str,
    extra: &[(&str, &str)],
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
    let f = form(html);
    let url = if f.action.starts_with("http") {
        f.action.clone()
    } else {
        format!("{base}{}", f.action)
    };
    let mut fields: Vec<(String, String)> = f.fields.clone();
    fields.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let resp = client.post(url).form(&fields).send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// GETs a URL; returns status, headers and body.
pub async fn get(
    client: &reqwest::Client,
    url: &str,
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
    let resp = client.get(url).send().await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// The `Location` of a 302 as a parsed URL.
pub fn location(status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap) -> url::Url {
    assert_eq!(status, reqwest::StatusCode::FOUND, "expected a redirect");
    url::Url::parse(headers["location"].to_str().unwrap()).unwrap()
}

/// A query parameter of a URL.
pub fn query(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The /authorize URL for the desktop app with PKCE S256.
pub fn authorize_url(w: &World, tenant: &str, scope: &str, extra: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&w.url(&format!("/{tenant}/oauth2/v2.0/authorize"))).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", &w.desktop.client_id.to_string())
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", "http://localhost:53682/")
        .append_pair("scope", scope)
        .append_pair("state", "12345")
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        url.query_pairs_mut().append_pair(k, v);
    }
    url.to_string()
}

/// Signs `upn` in on the sign-in page `html` (and passes MFA with `mfa`), returning the
/// page or redirect that follows.
pub async fn sign_in(
    client: &reqwest::Client,
    w: &World,
    html: &str,
    upn: &str,
    mfa: Option<&str>,
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
    assert!(
        html.contains("name=\"passwd\""),
        "not the sign-in page:\n{html}"
    );
    let (s, h, body) = submit(
        client,
        &w.base,
        html,
        &[("login", upn), ("passwd", PASSWORD)],
    )
    .await;
    match mfa {
        Some(code) => {
            assert!(
                body.contains("action=\"/login/mfa\""),
                "not the MFA page:\n{body}"
            );
            submit(client, &w.base, &body, &[("otc", code)]).await
        }
        None => (s, h, body),
    }
}

/// Runs the whole browser part of an authorization-code flow for `upn` and returns the
/// redirect to the client.
pub async fn authorize_code(
    w: &World,
    client: &reqwest::Client,
    tenant: &str,
    scope: &str,
    upn: &str,
    mfa: Option<&str>,
) -> url::Url {
    let (s, h, html) = get(client, &authorize_url(w, tenant, scope, &[])).await;
    if s == 302 {
        // Single sign-on: the browser session answers without a page.
        return location(s, &h);
    }
    assert_eq!(s, 200, "{html}");
    let (mut s, mut h, mut body) = sign_in(client, w, &html, upn, mfa).await;
    if s == 200 && body.contains("Permissions requested") {
        (s, h, body) = submit(client, &w.base, &body, &[("accept", "true")]).await;
    }
    assert_eq!(s, 302, "{body}");
    location(s, &h)
}

/// Redeems a code for the desktop app.
pub async fn redeem(w: &World, tenant: &str, code: &str, scope: Option<&str>) -> reqwest::Response {
    let client_id = w.desktop.client_id.to_string();
    let mut form = vec![
        ("client_id", client_id.as_str()),
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", "http://localhost:53682/"),
        ("code_verifier", VERIFIER),
    ];
    if let Some(s) = scope {
        form.push(("scope", s));
    }
    reqwest::Client::new()
        .post(w.token_url(tenant))
        .form(&form)
        .send()
        .await
        .unwrap()
}

/// Posts a form to the token endpoint of `tenant`.
pub async fn token(w: &World, tenant: &str, form: &[(&str, &str)]) -> reqwest::Response {
    reqwest::Client::new()
        .post(w.token_url(tenant))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// A client-credentials request with the daemon's secret.
pub async fn client_credentials(w: &World, scope: &str, secret: &str) -> reqwest::Response {
    let id = w.daemon.client_id.to_string();
    token(
        w,
        &w.tid,
        &[
            ("client_id", &id),
            ("scope", scope),
            ("client_secret", secret),
            ("grant_type", "client_credentials"),
        ],
    )
    .await
}

/// Asserts Microsoft's error shape (§1.5) and returns the body: status, `error`,
/// `error_codes`, `AADSTS<code>: <text>` then CR LF Trace ID / Correlation ID /
/// Timestamp lines matching the separate fields.
pub async fn assert_aad(
    resp: reqwest::Response,
    status: u16,
    error: &str,
    code: u32,
    text: Option<&str>,
) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], error, "{body:#}");
    assert_eq!(body["error_codes"], serde_json::json!([code]), "{body:#}");
    let description = body["error_description"].as_str().unwrap();
    let lines: Vec<&str> = description.split("\r\n").collect();
    assert_eq!(lines.len(), 4, "{description:?}");
    let headline = format!("AADSTS{code}: ");
    assert!(lines[0].starts_with(&headline), "{description:?}");
    if let Some(t) = text {
        assert_eq!(lines[0], format!("AADSTS{code}: {t}"));
    }
    assert_eq!(
        lines[1],
        format!("Trace ID: {}", body["trace_id"].as_str().unwrap())
    );
    assert_eq!(
        lines[2],
        format!(
            "Correlation ID: {}",
            body["correlation_id"].as_str().unwrap()
        )
    );
    assert_eq!(
        lines[3],
        format!("Timestamp: {}", body["timestamp"].as_str().unwrap())
    );
    assert_eq!(
        body["error_uri"],
        format!("https://login.microsoftonline.com/error?code={code}")
    );
    body
}

/// Decodes a JWT and checks its signature against the JWKS fetched over HTTP from
/// `/{tenant}/discovery/v2.0/keys`.
pub async fn verified_claims(w: &World, token: &str) -> Value {
    let jwt = Jwt::parse(token).expect("a JWT");
    let jwks: Value = reqwest::get(w.url(&format!("/{}/discovery/v2.0/keys", w.tid)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kid = jwt.header_str("kid").unwrap();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .expect("signing key published");
    let n = b64url_decode(key["n"].as_str().unwrap()).unwrap();
    let e = b64url_decode(key["e"].as_str().unwrap()).unwrap();
    let public = aws_lc_rs::signature::RsaPublicKeyComponents { n: &n, e: &e };
    public
        .verify(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            jwt.signing_input.as_bytes(),
            &jwt.signature,
        )
        .expect("signature verifies with the published key");
    jwt.claims
}

/// A client assertion for the daemon, signed with its certificate.
pub fn assertion(w: &World, pss: bool, aud: &str, iat: i64, exp: i64, jti: &str) -> String {
    let id = w.daemon.client_id.to_string();
    let header = if pss {
        serde_json::json!({"alg": "PS256", "typ": "JWT", "x5t#S256": w.certificate.x5t_s256()})
    } else {
        serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": w.certificate.x5t_sha1()})
    };
    let claims = serde_json::json!({
        "aud": aud, "iss": id, "sub": id, "jti": jti, "iat": iat, "nbf": iat, "exp": exp,
    });
    w.certificate.sign_jwt(&header, &claims, pss).unwrap()
}

/// The emulator's current time as seconds.
pub fn now(w: &World) -> i64 {
    w.emulator().now().unix_timestamp()
}
