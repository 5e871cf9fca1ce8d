//! Token responses and errors of the token endpoint.

use std::time::Duration;

use mailbridge_types::ErrorClass;
use secrecy::SecretString;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::authority::AuthorityError;
use crate::credential::CredentialError;
use crate::diagnosis::{Diagnosis, TokenError};

/// What a successful token request returns.
pub struct TokenSet {
    pub access_token: SecretString,
    /// When the access token expires (from `expires_in`).
    pub expires_at: OffsetDateTime,
    /// When to refresh proactively (from `refresh_in`, when the server sends it).
    pub refresh_at: Option<OffsetDateTime>,
    /// Granted scopes (`scope`), may be more than requested.
    pub scopes: Vec<String>,
    /// The new refresh token: store it before using the access token.
    pub refresh_token: Option<SecretString>,
    /// The ID token, when `openid` was requested (not a secret: claims about the user).
    pub id_token: Option<String>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"[REDACTED]")
            .field("expires_at", &self.expires_at)
            .field("refresh_at", &self.refresh_at)
            .field("scopes", &self.scopes)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[REDACTED]"),
            )
            .field("id_token", &self.id_token.as_ref().map(|_| "[present]"))
            .finish()
    }
}

#[derive(Deserialize)]
pub(crate) struct RawTokenResponse {
    pub token_type: Option<String>,
    pub access_token: String,
    pub expires_in: serde_json::Value,
    #[serde(default)]
    pub refresh_in: Option<serde_json::Value>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
}

fn as_seconds(v: &serde_json::Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

impl RawTokenResponse {
    pub(crate) fn into_token_set(self, now: OffsetDateTime) -> Result<TokenSet, AuthError> {
        if self
            .token_type
            .as_deref()
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(AuthError::Protocol("token_type is not Bearer".into()));
        }
        let expires_in = as_seconds(&self.expires_in)
            .filter(|s| *s > 0)
            .ok_or_else(|| AuthError::Protocol("expires_in is missing or not a number".into()))?;
        Ok(TokenSet {
            access_token: SecretString::from(self.access_token),
            expires_at: now + time::Duration::seconds(expires_in),
            refresh_at: self
                .refresh_in
                .as_ref()
                .and_then(as_seconds)
                .filter(|s| *s > 0)
                .map(|s| now + time::Duration::seconds(s)),
            scopes: self
                .scope
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            refresh_token: self.refresh_token.map(SecretString::from),
            id_token: self.id_token,
        })
    }
}

/// An error answer of the identity platform, with its diagnosis.
#[derive(Debug)]
pub struct IdentityFailure {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub error: TokenError,
    pub diagnosis: Diagnosis,
}

/// Error of a sign-in operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error(
        "the certificate of the sign-in service at {url} is not trusted: if it uses a private CA, set the app's extra_ca_file (certificate checks stay on)"
    )]
    Certificate {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("could not reach the sign-in service at {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the sign-in service answered HTTP {}: {}", .0.status, .0.diagnosis)]
    Identity(Box<IdentityFailure>),
    #[error("the sign-in service answered HTTP {status} without an error body")]
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("the sign-in service sent an answer mailbridge does not understand: {0}")]
    Protocol(String),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    #[error("the sign-in was not completed: {0}")]
    Interaction(String),
}

impl AuthError {
    /// Wraps a transport error, telling certificate failures apart.
    pub(crate) fn from_reqwest(url: &str, source: reqwest::Error) -> Self {
        let mut cause: Option<&dyn std::error::Error> = Some(&source);
        let mut certificate = false;
        while let Some(c) = cause {
            let text = c.to_string().to_ascii_lowercase();
            if text.contains("certificate") || text.contains("unknownissuer") {
                certificate = true;
                break;
            }
            cause = c.source();
        }
        if certificate {
            AuthError::Certificate {
                url: url.to_owned(),
                source,
            }
        } else {
            AuthError::Http {
                url: url.to_owned(),
                source,
            }
        }
    }

    /// What to do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            AuthError::Http { .. } | AuthError::Protocol(_) => ErrorClass::Transient,
            AuthError::Identity(f) => match f.status {
                429 => ErrorClass::Throttled {
                    retry_after: f.retry_after,
                },
                500..=599 => ErrorClass::Transient,
                _ => f.diagnosis.class,
            },
            AuthError::Status {
                status,
                retry_after,
            } => match *status {
                429 => ErrorClass::Throttled {
                    retry_after: *retry_after,
                },
                500..=599 | 408 => ErrorClass::Transient,
                _ => ErrorClass::Permanent,
            },
            AuthError::Credential(_) | AuthError::Authority(_) | AuthError::Certificate { .. } => {
                ErrorClass::Misconfigured
            }
            AuthError::Interaction(_) => ErrorClass::NeedsSignIn,
        }
    }

    /// The OAuth `error` code, when the service sent one.
    pub fn oauth_error(&self) -> Option<&str> {
        match self {
            AuthError::Identity(f) => Some(&f.error.error),
            _ => None,
        }
    }
}
