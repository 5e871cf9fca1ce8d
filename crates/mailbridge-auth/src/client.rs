//! The token client: one HTTP client and the identity platform's grants.
//!
//! Hand-written over reqwest rather than the `oauth2` crate: Microsoft's error bodies
//! (AADSTS codes, `suberror`, `claims`), certificate client assertions, `refresh_in` and
//! `Retry-After` need control the crate does not give, and its reqwest feature is tied
//! to an older reqwest.

use std::sync::Arc;
use std::time::Duration;

use mailbridge_types::{Clock, SystemClock};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::authority::Authority;
use crate::credential::ClientCredential;
use crate::diagnosis::TokenError;
use crate::token::{
    AuthError, MAX_ANSWER, TokenSet, error_response, parse_retry_after, parse_token_response,
};

/// Tries of one authorization-code redemption (the code lives about 10 minutes; the
/// person is waiting).
const REDEEM_ATTEMPTS: u32 = 3;
/// The longest wait between them; a longer `Retry-After` ends the redemption.
const REDEEM_MAX_WAIT: Duration = Duration::from_secs(30);
/// A device code's lifetime and polling interval as the server states them, bounded
/// (Microsoft's are 900 s and 5 s).
const DEVICE_CODE_MAX_LIFETIME: Duration = Duration::from_hours(1);
const DEVICE_CODE_MAX_INTERVAL: Duration = Duration::from_mins(1);

/// The app an account signs in with.
#[derive(Debug)]
pub struct App {
    /// Application (client) ID.
    pub client_id: String,
    pub credential: ClientCredential,
}

/// HTTP settings for the sign-in service.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Extra trusted CA certificates (PEM), added to the system's roots.
    pub extra_ca_pem: Option<String>,
    /// Per-request timeout; 30 s when absent.
    pub timeout: Option<Duration>,
}

/// Talks to the token, device-code and authorize endpoints.
#[derive(Debug, Clone)]
pub struct TokenClient {
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
    /// Requests sent to the identity platform, shared by the client's clones.
    requests: Arc<std::sync::atomic::AtomicU64>,
}

/// What the device-code endpoint returns: show `message` to the user.
#[derive(Deserialize)]
#[expect(
    clippy::struct_field_names,
    reason = "field names are Microsoft's JSON names"
)]
pub struct DeviceCode {
    pub user_code: String,
    device_code: String,
    pub verification_uri: String,
    pub expires_in: u64,
    #[serde(default = "default_interval")]
    pub interval: u64,
    pub message: String,
}

fn default_interval() -> u64 {
    5
}

impl std::fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCode")
            .field("user_code", &self.user_code)
            .field("verification_uri", &self.verification_uri)
            .field("expires_in", &self.expires_in)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl TokenClient {
    /// A client on the system clock.
    pub fn new(options: &HttpOptions) -> Result<Self, AuthError> {
        Self::with_clock(options, Arc::new(SystemClock))
    }

    /// A client reading time from `clock`.
    pub fn with_clock(options: &HttpOptions, clock: Arc<dyn Clock>) -> Result<Self, AuthError> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(options.timeout.unwrap_or(Duration::from_secs(30)))
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("mailbridge/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &options.extra_ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| AuthError::Protocol(format!("extra CA file is not PEM: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| AuthError::Protocol(format!("failed to build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            clock,
            requests: Arc::default(),
        })
    }

    /// How many requests this client (and its clones) sent to the identity platform:
    /// token, device-code and refresh requests (the daemon's metrics).
    pub fn requests_made(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// POSTs a form to `url` and reads a token answer.
    async fn post_token(
        &self,
        url: &str,
        form: Vec<(&'static str, SecretString)>,
    ) -> Result<TokenSet, AuthError> {
        let now = self.clock.now();
        let body = self.post_form(url, form).await?;
        parse_token_response(200, &body, now)
    }

    /// Opens an `/authorize` URL as a browser would (no cookies, no redirects
    /// followed) to learn, before a person is sent there, whether the identity
    /// platform refuses the request on its own error page: an unregistered redirect
    /// URI (AADSTS50011), an unknown or disabled app. Such errors are shown on
    /// Microsoft's page and never sent back to the redirect URI, so this is the only
    /// way mailbridge can explain them. `Some` with the error the page names
    /// (`AADSTSnnnn: ...`); `None` when the page names none (the sign-in page, or a
    /// redirect).
    pub async fn probe_authorize(&self, url: &str) -> Result<Option<TokenError>, AuthError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|source| AuthError::from_reqwest(url, source))?;
        if response.status().is_redirection() {
            return Ok(None);
        }
        let bytes = mailbridge_http::bounded_body(response, 512 * 1024)
            .await
            .map_err(|e| match e {
                mailbridge_http::BodyError::Http(source) => AuthError::Http {
                    url: url.to_owned(),
                    source,
                },
                mailbridge_http::BodyError::TooLarge { limit } => AuthError::TooLarge {
                    url: url.to_owned(),
                    limit,
                },
                other => AuthError::Protocol(format!("{url}: {other}")),
            })?;
        Ok(aadsts_in_page(&String::from_utf8_lossy(&bytes)))
    }

    /// POSTs a form; the body of a 2xx answer, else the error (with `Retry-After`).
    async fn post_form(
        &self,
        url: &str,
        form: Vec<(&'static str, SecretString)>,
    ) -> Result<bytes_buf::Bytes, AuthError> {
        let body: String = form
            .iter()
            .fold(
                url::form_urlencoded::Serializer::new(String::new()),
                |mut s, (k, v)| {
                    s.append_pair(k, v.expose_secret());
                    s
                },
            )
            .finish();
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let response = self
            .http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("x-client-sku", "mailbridge")
            .body(body)
            .send()
            .await
            .map_err(|source| AuthError::from_reqwest(url, source))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now()));
        let bytes = mailbridge_http::bounded_body(response, MAX_ANSWER)
            .await
            .map_err(|e| match e {
                mailbridge_http::BodyError::Http(source) => AuthError::Http {
                    url: url.to_owned(),
                    source,
                },
                mailbridge_http::BodyError::TooLarge { limit } => AuthError::TooLarge {
                    url: url.to_owned(),
                    limit,
                },
                other => AuthError::Protocol(format!("{url}: {other}")),
            })?;
        if (200..300).contains(&status) {
            return Ok(bytes_buf::Bytes::from(bytes));
        }
        Err(error_response(status, &bytes, retry_after))
    }

    fn base_form(
        app: &App,
        authority: &Authority,
        grant_type: &'static str,
        scopes: &[String],
        now: time::OffsetDateTime,
    ) -> Result<Vec<(&'static str, SecretString)>, AuthError> {
        let mut form = vec![
            ("client_id", SecretString::from(app.client_id.clone())),
            ("grant_type", SecretString::from(grant_type)),
            ("scope", SecretString::from(scopes.join(" "))),
        ];
        form.extend(app.credential.form_fields(
            &app.client_id,
            &authority.token_endpoint(),
            now,
        )?);
        Ok(form)
    }

    /// App-only: client credentials with the app's secret or certificate.
    pub async fn client_credentials(
        &self,
        app: &App,
        authority: &Authority,
        scopes: &[String],
    ) -> Result<TokenSet, AuthError> {
        authority.check_app_only()?;
        if matches!(app.credential, ClientCredential::None) {
            return Err(AuthError::Protocol(
                "app-only sign-in needs a client secret or a certificate".into(),
            ));
        }
        let form = Self::base_form(
            app,
            authority,
            "client_credentials",
            scopes,
            self.clock.now(),
        )?;
        self.post_token(&authority.token_endpoint(), form).await
    }

    /// Redeems a refresh token. The answer carries the rotated refresh token, which the
    /// caller must store before using the access token.
    pub async fn refresh(
        &self,
        app: &App,
        authority: &Authority,
        refresh_token: &SecretString,
        scopes: &[String],
    ) -> Result<TokenSet, AuthError> {
        let mut form = Self::base_form(app, authority, "refresh_token", scopes, self.clock.now())?;
        form.push((
            "refresh_token",
            SecretString::from(refresh_token.expose_secret().to_owned()),
        ));
        self.post_token(&authority.token_endpoint(), form).await
    }

    /// Redeems an authorization code with its PKCE verifier. When the service refuses
    /// for now (429, 5xx) or cannot be reached, tries again after its `Retry-After` (or
    /// 1 s, then 2 s): three tries in all, waits of at most 30 s. A timeout is not
    /// retried: the code may have been used.
    pub async fn redeem_code(
        &self,
        app: &App,
        authority: &Authority,
        code: &SecretString,
        redirect_uri: &str,
        verifier: &SecretString,
        scopes: &[String],
    ) -> Result<TokenSet, AuthError> {
        let mut form = Self::base_form(
            app,
            authority,
            "authorization_code",
            scopes,
            self.clock.now(),
        )?;
        form.push(("code", SecretString::from(code.expose_secret().to_owned())));
        form.push(("redirect_uri", SecretString::from(redirect_uri.to_owned())));
        form.push((
            "code_verifier",
            SecretString::from(verifier.expose_secret().to_owned()),
        ));
        let mut backoff = Duration::from_secs(1);
        let mut attempt = 1;
        loop {
            let err = match self
                .post_token(&authority.token_endpoint(), form.clone())
                .await
            {
                Ok(tokens) => return Ok(tokens),
                Err(e) => e,
            };
            let Some(hint) = err.retry_hint(false) else {
                return Err(err);
            };
            let wait = hint.wait(backoff);
            if attempt >= REDEEM_ATTEMPTS || wait > REDEEM_MAX_WAIT {
                return Err(err);
            }
            tokio::time::sleep(wait).await;
            backoff *= 2;
            attempt += 1;
        }
    }

    /// Starts the device-code flow, asking also for `openid profile`
    /// ([`crate::scopes::IDENTITY_SCOPES`]) so that the answer names who signed in.
    pub async fn start_device_code(
        &self,
        app: &App,
        authority: &Authority,
        scopes: &[String],
    ) -> Result<DeviceCode, AuthError> {
        let scopes = crate::scopes::with_identity_scopes(scopes);
        let form = vec![
            ("client_id", SecretString::from(app.client_id.clone())),
            ("scope", SecretString::from(scopes.join(" "))),
        ];
        let body = self
            .post_form(&authority.devicecode_endpoint(), form)
            .await?;
        serde_json::from_slice(&body).map_err(|e| {
            AuthError::Protocol(format!("device-code answer is not the expected JSON: {e}"))
        })
    }

    /// Polls until the user finished (or declined, or the code expired). Waits
    /// `interval` between polls and adds 5 s on `slow_down` (RFC 8628 §3.5). When the
    /// service refuses for now (429, 5xx) or cannot be reached, polling goes on after
    /// its `Retry-After` (or a doubling backoff from the interval, up to a minute), as
    /// long as the code lives; a wait past the code's expiry ends the sign-in. The
    /// lifetime and interval the service states are bounded (an hour, a minute).
    pub async fn poll_device_code(
        &self,
        app: &App,
        authority: &Authority,
        code: &DeviceCode,
    ) -> Result<TokenSet, AuthError> {
        let mut interval = Duration::from_secs(code.interval.max(1)).min(DEVICE_CODE_MAX_INTERVAL);
        let lifetime = Duration::from_secs(code.expires_in).min(DEVICE_CODE_MAX_LIFETIME);
        let deadline = tokio::time::Instant::now() + lifetime;
        let expired = || {
            AuthError::Interaction(
                "the device code expired before the sign-in was completed; start again".into(),
            )
        };
        let mut wait = interval;
        let mut backoff = interval;
        loop {
            if tokio::time::Instant::now() + wait >= deadline {
                return Err(expired());
            }
            tokio::time::sleep(wait).await;
            let mut form = vec![
                ("client_id", SecretString::from(app.client_id.clone())),
                (
                    "grant_type",
                    SecretString::from("urn:ietf:params:oauth:grant-type:device_code"),
                ),
                ("device_code", SecretString::from(code.device_code.clone())),
            ];
            form.extend(app.credential.form_fields(
                &app.client_id,
                &authority.token_endpoint(),
                self.clock.now(),
            )?);
            wait = interval;
            match self.post_token(&authority.token_endpoint(), form).await {
                Ok(tokens) => return Ok(tokens),
                Err(e) => match e.oauth_error() {
                    Some("authorization_pending") => backoff = interval,
                    Some("slow_down") => {
                        interval =
                            (interval + Duration::from_secs(5)).min(DEVICE_CODE_MAX_INTERVAL);
                        wait = interval;
                        backoff = interval;
                    }
                    _ => {
                        let Some(hint) = e.retry_hint(true) else {
                            return Err(e);
                        };
                        wait = hint.wait(backoff).max(interval);
                        backoff = (backoff * 2).min(DEVICE_CODE_MAX_INTERVAL);
                        if tokio::time::Instant::now() + wait >= deadline {
                            // Waiting as asked outlives the code: say why it ended.
                            return Err(e);
                        }
                    }
                },
            }
        }
    }
}

/// The first `AADSTSnnnn: message` an error page shows (the message up to the
/// end of its HTML text, at most 1,000 characters).
fn aadsts_in_page(page: &str) -> Option<TokenError> {
    let mut rest = page;
    while let Some(at) = rest.find("AADSTS") {
        let after = rest.get(at..)?;
        let digits: String = after
            .get(6..)?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let tail = after.get(6 + digits.len()..)?;
        if let (Ok(code), true) = (digits.parse::<u32>(), tail.starts_with(':')) {
            let message: String = after
                .chars()
                .take_while(|c| !matches!(c, '<' | '"' | '\n' | '\r'))
                .take(1000)
                .collect();
            return Some(TokenError {
                error: "invalid_request".to_owned(),
                code: Some(code),
                message: message.replace("&#39;", "'").replace("&amp;", "&"),
                suberror: None,
                claims: None,
                trace_id: None,
                correlation_id: None,
            });
        }
        rest = after.get(6..)?;
    }
    None
}

/// `bytes` re-export under a private name, so the public API does not name the crate.
mod bytes_buf {
    pub use bytes::Bytes;
}

#[cfg(test)]
mod tests {
    use super::aadsts_in_page;

    #[test]
    fn an_error_page_names_its_aadsts_code_and_a_sign_in_page_none() {
        let page = "<h1>Sorry</h1><div id=\"error\">AADSTS50011: The redirect URI &#39;https://mb.example/oauth/callback&#39; specified in the request does not match.</div>";
        let e = aadsts_in_page(page).unwrap();
        assert_eq!(e.code, Some(50011));
        assert_eq!(
            e.message,
            "AADSTS50011: The redirect URI 'https://mb.example/oauth/callback' specified in the request does not match."
        );
        assert!(
            aadsts_in_page("<form>Sign in to AADSTS</form> AADSTSx AADSTS12 no colon").is_none()
        );
        assert!(aadsts_in_page("").is_none());
    }
}
