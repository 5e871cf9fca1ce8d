//! Delegated sign-in where a person is present: authorization code with PKCE S256 on a
//! loopback redirect (the browser comes back to `http://localhost:<port>/`), and the
//! paste-the-redirect-URL variant for servers without a browser.
//!
//! The loopback listener is a minimal HTTP/1.1 reader written here (it reads one
//! request line and answers one page); a web framework would be far more than needed.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use crate::authority::Authority;
use crate::client::{App, TokenClient};
use crate::token::{AuthError, TokenSet};

/// A PKCE verifier and its S256 challenge (RFC 7636).
pub struct Pkce {
    verifier: SecretString,
    /// `BASE64URL(SHA256(verifier))`.
    pub challenge: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce")
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

impl Pkce {
    /// A fresh verifier of 43 characters from 32 random bytes.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        Self::from_verifier(&URL_SAFE_NO_PAD.encode(bytes))
    }

    /// The challenge for a given verifier.
    pub fn from_verifier(verifier: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        Self {
            verifier: SecretString::from(verifier.to_owned()),
            challenge: URL_SAFE_NO_PAD.encode(digest),
        }
    }

    /// The verifier, sent when redeeming the code.
    pub fn verifier(&self) -> &SecretString {
        &self.verifier
    }
}

/// An authorization request in progress.
#[derive(Debug)]
pub struct AuthorizationRequest {
    /// Open this in a browser.
    pub url: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    state: String,
    pkce: Pkce,
}

impl AuthorizationRequest {
    /// Builds the `/authorize` URL with PKCE S256 and a random `state`.
    pub fn new(
        client_id: &str,
        authority: &Authority,
        scopes: &[String],
        redirect_uri: &str,
        login_hint: Option<&str>,
    ) -> Self {
        Self::with_extra_consent(client_id, authority, scopes, &[], redirect_uri, login_hint)
    }

    /// Like [`AuthorizationRequest::new`], also asking consent for `extra_consent`
    /// (scopes of other resources, redeemed later with the refresh token: a token
    /// request names one resource, `/authorize` may name several).
    pub fn with_extra_consent(
        client_id: &str,
        authority: &Authority,
        scopes: &[String],
        extra_consent: &[String],
        redirect_uri: &str,
        login_hint: Option<&str>,
    ) -> Self {
        let pkce = Pkce::generate();
        let mut state_bytes = [0u8; 16];
        let _ = aws_lc_rs::rand::fill(&mut state_bytes);
        let state = URL_SAFE_NO_PAD.encode(state_bytes);
        let all_scopes = crate::scopes::with_identity_scopes(scopes);
        let mut consent = all_scopes.clone();
        for s in extra_consent {
            if !consent.contains(s) {
                consent.push(s.clone());
            }
        }
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("client_id", client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("response_mode", "query")
            .append_pair("scope", &consent.join(" "))
            .append_pair("state", &state)
            .append_pair("code_challenge", &pkce.challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("prompt", "select_account");
        if let Some(hint) = login_hint {
            query.append_pair("login_hint", hint);
        }
        Self {
            url: format!("{}?{}", authority.authorize_endpoint(), query.finish()),
            redirect_uri: redirect_uri.to_owned(),
            scopes: all_scopes,
            state,
            pkce,
        }
    }

    /// The `state` this request sent (the key of a sign-in waiting for its answer).
    pub fn state(&self) -> &str {
        &self.state
    }

    /// Reads the code from the URL the browser was sent back to (or its query string),
    /// checking `state` and turning an `error` into a clear message.
    pub fn code_from_redirect(&self, redirected: &str) -> Result<SecretString, AuthError> {
        let answer = RedirectAnswer::parse(redirected);
        if let Some(error) = answer.error {
            let fix = error.diagnose().to_string();
            return Err(AuthError::Interaction(format!(
                "{}: {} {fix}",
                error.error, error.message
            )));
        }
        if answer.state.as_deref() != Some(self.state.as_str()) {
            return Err(AuthError::Interaction(
                "the answer's state does not match this sign-in (a stale or forged redirect); start again".into(),
            ));
        }
        answer.code.ok_or_else(|| {
            AuthError::Interaction(
                "the redirect URL carries no code; paste the whole URL from the address bar".into(),
            )
        })
    }

    /// Redeems the code.
    pub async fn redeem(
        &self,
        client: &TokenClient,
        app: &App,
        authority: &Authority,
        code: &SecretString,
    ) -> Result<TokenSet, AuthError> {
        client
            .redeem_code(
                app,
                authority,
                code,
                &self.redirect_uri,
                self.pkce.verifier(),
                &self.scopes,
            )
            .await
    }
}

/// What the browser was sent back with: the `code`, the `state`, or Microsoft's
/// `error` (with its `error_description`, parsed as the token endpoint's errors are).
pub struct RedirectAnswer {
    pub code: Option<SecretString>,
    pub state: Option<String>,
    pub error: Option<crate::diagnosis::TokenError>,
}

impl std::fmt::Debug for RedirectAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedirectAnswer")
            .field("code", &self.code.as_ref().map(|_| "REDACTED"))
            .field("state", &self.state)
            .field("error", &self.error)
            .finish()
    }
}

impl RedirectAnswer {
    /// Reads a redirect URL (or only its query string); the fragment is ignored.
    pub fn parse(redirected: &str) -> Self {
        let query = redirected
            .split_once('?')
            .map_or(redirected, |(_, q)| q)
            .split('#')
            .next()
            .unwrap_or_default();
        let mut code = None;
        let mut state = None;
        let mut error = None;
        let mut description = None;
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "code" if code.is_none() => code = Some(v.into_owned()),
                "state" if state.is_none() => state = Some(v.into_owned()),
                "error" if error.is_none() => error = Some(v.into_owned()),
                "error_description" if description.is_none() => {
                    description = Some(v.into_owned());
                }
                _ => {}
            }
        }
        let error = error.map(|error| {
            let description = description.unwrap_or_default();
            crate::diagnosis::TokenError::parse(
                serde_json::json!({"error": error, "error_description": description})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap_or(crate::diagnosis::TokenError {
                error,
                code: None,
                message: String::new(),
                suberror: None,
                claims: None,
                trace_id: None,
                correlation_id: None,
            })
        });
        Self {
            code: code.filter(|c| !c.is_empty()).map(SecretString::from),
            state,
            error,
        }
    }
}

/// The user named by an ID token (`preferred_username`, `upn` or `email`), read
/// without verification: it is only shown back to the person who just signed in.
pub fn id_token_user(id_token: &str) -> Option<String> {
    crate::claims::signed_in_user(Some(id_token), "").map(|u| u.name)
}

/// Runs the loopback sign-in: listens on `127.0.0.1:<ephemeral>`, hands the URL to
/// `open` (which opens a browser or prints it), waits up to `timeout` for the browser to
/// come back, redeems the code, and answers the browser with "Signed in as &lt;user&gt;. You
/// can close this tab." or an error page.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per front end; a struct would only rename them"
)]
pub async fn loopback_sign_in(
    client: &TokenClient,
    app: &App,
    authority: &Authority,
    scopes: &[String],
    extra_consent: &[String],
    login_hint: Option<&str>,
    timeout: Duration,
    open: impl FnOnce(&str),
) -> Result<TokenSet, AuthError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| AuthError::Interaction(format!("cannot listen on a loopback port: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| AuthError::Interaction(format!("cannot read the loopback port: {e}")))?
        .port();
    let request = AuthorizationRequest::with_extra_consent(
        &app.client_id,
        authority,
        scopes,
        extra_consent,
        &format!("http://localhost:{port}/"),
        login_hint,
    );
    open(&request.url);
    let wait = async {
        loop {
            let (mut stream, _) = listener
                .accept()
                .await
                .map_err(|e| AuthError::Interaction(format!("loopback listener failed: {e}")))?;
            let Some(target) = read_request_target(&mut stream).await else {
                continue;
            };
            if !target.contains("code=") && !target.contains("error=") {
                let _ = respond(
                    &mut stream,
                    404,
                    "Not found",
                    "This is mailbridge's sign-in listener.",
                )
                .await;
                continue;
            }
            let outcome = match request.code_from_redirect(&target) {
                Ok(code) => request.redeem(client, app, authority, &code).await,
                Err(e) => Err(e),
            };
            match &outcome {
                Ok(tokens) => {
                    let user = crate::claims::signed_in_user(
                        tokens.id_token.as_deref(),
                        secrecy::ExposeSecret::expose_secret(&tokens.access_token),
                    )
                    .map_or_else(|| "your account".to_owned(), |u| u.name);
                    let _ = respond(
                        &mut stream,
                        200,
                        "Signed in",
                        &format!(
                            "Signed in as {}. You can close this tab.",
                            html_escape(&user)
                        ),
                    )
                    .await;
                }
                Err(e) => {
                    let _ = respond(
                        &mut stream,
                        400,
                        "Sign-in failed",
                        &format!("Sign-in failed: {}", html_escape(&e.to_string())),
                    )
                    .await;
                }
            }
            return outcome;
        }
    };
    tokio::time::timeout(timeout, wait).await.unwrap_or_else(|_| {
        Err(AuthError::Interaction(format!(
            "no answer from the browser within {} s; run the sign-in again, or use --device-code or --paste",
            timeout.as_secs()
        )))
    })
}

/// Reads one request head and returns its target (`/?code=...`); `None` when it is not
/// a GET request line. Reads at most 16 KiB.
async fn read_request_target(stream: &mut tokio::net::TcpStream) -> Option<String> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(chunk.get(..n)?);
    }
    let head = String::from_utf8_lossy(&buf);
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    if parts.next()? != "GET" {
        return None;
    }
    parts.next().map(str::to_owned)
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    status: u16,
    title: &str,
    text: &str,
) -> std::io::Result<()> {
    let body = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title} - mailbridge</title></head>\
         <body style=\"font-family:sans-serif;margin:3em\"><h1>{title}</h1><p>{text}</p></body></html>"
    );
    let reason = if status == 200 { "OK" } else { "Error" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authority::TenantSegment;
    use secrecy::ExposeSecret;

    #[test]
    fn pkce_matches_the_rfc_vector_from_the_notes() {
        let p = Pkce::from_verifier("M25iVXpKU3puUjFaYWg3T1NDTDQtcW1ROUY5YXlwalNoc0hhakxifmZHag");
        assert_eq!(p.challenge, "qjrzSW9gMiUgpUvqgEPE4_-8swvyCtfOVvg55o5S_es");
        assert_eq!(Pkce::generate().verifier().expose_secret().len(), 43);
    }

    fn request() -> AuthorizationRequest {
        let authority = Authority::new("http://127.0.0.1:1", TenantSegment::Organizations).unwrap();
        AuthorizationRequest::new(
            "6731de76-14a6-49ae-97bc-6eba6914391e",
            &authority,
            &[
                "https://outlook.office.com/IMAP.AccessAsUser.All".into(),
                "offline_access".into(),
            ],
            "http://localhost:5000/",
            Some("alice@contoso.example"),
        )
    }

    #[test]
    fn authorize_url_has_pkce_state_and_identity_scopes() {
        let r = request();
        assert!(
            r.url
                .starts_with("http://127.0.0.1:1/organizations/oauth2/v2.0/authorize?")
        );
        let q: std::collections::BTreeMap<_, _> =
            url::form_urlencoded::parse(r.url.split_once('?').unwrap().1.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], r.pkce.challenge);
        assert_eq!(q["state"], r.state);
        assert!(q["scope"].contains("openid"));
        assert_eq!(q["login_hint"], "alice@contoso.example");
    }

    #[test]
    fn pasted_redirects_are_checked() {
        let r = request();
        let ok = format!("http://localhost:5000/?code=0.AXoA&state={}", r.state);
        assert_eq!(r.code_from_redirect(&ok).unwrap().expose_secret(), "0.AXoA");
        assert!(
            r.code_from_redirect("http://localhost:5000/?code=x&state=forged")
                .is_err()
        );
        assert!(r.code_from_redirect(&format!("state={}", r.state)).is_err());
        let declined = format!(
            "http://localhost:5000/?error=access_denied&error_description=AADSTS65004%3A+User+declined+to+consent+to+access+the+app.&state={}",
            r.state
        );
        let err = r.code_from_redirect(&declined).unwrap_err().to_string();
        assert!(err.contains("AADSTS65004"), "{err}");
        assert!(err.contains("press Accept"), "{err}");
    }

    #[test]
    fn id_token_user_reads_preferred_username() {
        let payload = URL_SAFE_NO_PAD.encode(r#"{"preferred_username":"alice@contoso.example"}"#);
        assert_eq!(
            id_token_user(&format!("e30.{payload}.sig")).unwrap(),
            "alice@contoso.example"
        );
        assert!(id_token_user("garbage").is_none());
    }
}
