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
use crate::token::{AuthError, IdentityFailure, RawTokenResponse, TokenSet};

/// The most a token endpoint's answer may hold (a token set is a few KiB; more is
/// not the identity platform talking).
const MAX_ANSWER: usize = 1024 * 1024;

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
        Ok(Self { http, clock })
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
        let raw: RawTokenResponse = serde_json::from_slice(&body).map_err(|e| {
            AuthError::Protocol(format!("token answer is not the expected JSON: {e}"))
        })?;
        raw.into_token_set(now)
    }

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
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
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
        let bytes = bytes_buf::Bytes::from(bytes);
        if (200..300).contains(&status) {
            return Ok(bytes);
        }
        match TokenError::parse(&bytes) {
            Some(error) => {
                let diagnosis = error.diagnose();
                Err(AuthError::Identity(Box::new(IdentityFailure {
                    status,
                    retry_after,
                    error,
                    diagnosis,
                })))
            }
            None => Err(AuthError::Status {
                status,
                retry_after,
            }),
        }
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

    /// Redeems an authorization code with its PKCE verifier.
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
        self.post_token(&authority.token_endpoint(), form).await
    }

    /// Starts the device-code flow.
    pub async fn start_device_code(
        &self,
        app: &App,
        authority: &Authority,
        scopes: &[String],
    ) -> Result<DeviceCode, AuthError> {
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
    /// `interval` between polls and adds 5 s on `slow_down` (RFC 8628).
    pub async fn poll_device_code(
        &self,
        app: &App,
        authority: &Authority,
        code: &DeviceCode,
    ) -> Result<TokenSet, AuthError> {
        let mut interval = Duration::from_secs(code.interval);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(code.expires_in);
        loop {
            tokio::time::sleep(interval).await;
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
            match self.post_token(&authority.token_endpoint(), form).await {
                Ok(tokens) => return Ok(tokens),
                Err(e) => match e.oauth_error() {
                    Some("authorization_pending") => {}
                    Some("slow_down") => interval += Duration::from_secs(5),
                    _ => return Err(e),
                },
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AuthError::Interaction(
                    "the device code expired before the sign-in was completed; start again".into(),
                ));
            }
        }
    }
}

/// `bytes` re-export under a private name, so the public API does not name the crate.
mod bytes_buf {
    pub use bytes::Bytes;
}
