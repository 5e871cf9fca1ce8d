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
        // A lifetime past the calendar's end is not a lifetime (and `+` would panic).
        let expires_at = now
            .checked_add(time::Duration::seconds(expires_in))
            .ok_or_else(|| {
                AuthError::Protocol(format!("expires_in {expires_in} is out of range"))
            })?;
        Ok(TokenSet {
            access_token: SecretString::from(self.access_token),
            expires_at,
            refresh_at: self
                .refresh_in
                .as_ref()
                .and_then(as_seconds)
                .filter(|s| *s > 0)
                .and_then(|s| now.checked_add(time::Duration::seconds(s))),
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

/// The most a token endpoint's answer may hold (a token set is a few KiB; more is
/// not the identity platform talking).
pub const MAX_ANSWER: usize = 1024 * 1024;

/// The longest `Retry-After` read from an answer (a day); larger values count as a day.
/// Each flow bounds its waits further (the cache's policy, the device code's lifetime,
/// the code redemption's few tries).
pub const MAX_RETRY_AFTER: Duration = Duration::from_hours(24);

/// Reads a token endpoint's answer (`microsoft-protocols.md` §1.4 and §1.5): pure, no
/// I/O, so that it can be fuzzed. A 2xx answer must be a token set; any other status
/// becomes [`AuthError::Identity`] (an OAuth error body, with its AADSTS diagnosis) or
/// [`AuthError::Status`]. Answers longer than [`MAX_ANSWER`] are refused.
pub fn parse_token_response(
    status: u16,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<TokenSet, AuthError> {
    if body.len() > MAX_ANSWER {
        return Err(AuthError::Protocol(format!(
            "the token answer is longer than {MAX_ANSWER} bytes"
        )));
    }
    if !(200..300).contains(&status) {
        return Err(error_response(status, body, None));
    }
    let raw: RawTokenResponse = serde_json::from_slice(body)
        .map_err(|e| AuthError::Protocol(format!("token answer is not the expected JSON: {e}")))?;
    raw.into_token_set(now)
}

/// The error of a non-2xx answer: the identity platform's OAuth error body with its
/// diagnosis when there is one, else the bare status.
pub fn error_response(status: u16, body: &[u8], retry_after: Option<Duration>) -> AuthError {
    match TokenError::parse(body) {
        Some(error) => {
            let diagnosis = error.diagnose();
            AuthError::Identity(Box::new(IdentityFailure {
                status,
                retry_after,
                error,
                diagnosis,
            }))
        }
        None => AuthError::Status {
            status,
            retry_after,
        },
    }
}

/// A `Retry-After` value (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, as a wait
/// from `now`; at most [`MAX_RETRY_AFTER`]. A date in the past is no wait; anything
/// else is `None`.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits: more than fits in a u64 is more than the cap.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER));
    }
    let at = OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = at - now;
    Some(if wait.is_negative() {
        Duration::ZERO
    } else {
        Duration::try_from(wait).map_or(MAX_RETRY_AFTER, |w| w.min(MAX_RETRY_AFTER))
    })
}

/// An error answer of the identity platform, with its diagnosis.
#[derive(Debug)]
pub struct IdentityFailure {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub error: TokenError,
    pub diagnosis: Diagnosis,
}

/// How long to wait before sending a refused request again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryHint {
    /// The service's `Retry-After`.
    AsAsked(Duration),
    /// It did not say: the caller's backoff.
    Backoff,
}

impl RetryHint {
    /// The wait, with `backoff` when the service did not say.
    pub(crate) fn wait(self, backoff: Duration) -> Duration {
        match self {
            RetryHint::AsAsked(d) => d,
            RetryHint::Backoff => backoff,
        }
    }
}

impl From<Option<Duration>> for RetryHint {
    fn from(retry_after: Option<Duration>) -> Self {
        retry_after.map_or(RetryHint::Backoff, RetryHint::AsAsked)
    }
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
    #[error(
        "{url} answered with more than {limit} bytes, which no token answer needs: this is not the Microsoft identity platform; check the app's authority host (for national clouds and the sandbox it is set per app)"
    )]
    TooLarge { url: String, limit: usize },
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
            // A 5xx that says when to come back is a request to wait that long.
            AuthError::Identity(f) => match (f.status, f.retry_after) {
                (429, retry_after) | (500..=599, retry_after @ Some(_)) => {
                    ErrorClass::Throttled { retry_after }
                }
                (500..=599, None) => ErrorClass::Transient,
                _ => f.diagnosis.class,
            },
            AuthError::Status {
                status,
                retry_after,
            } => match (*status, *retry_after) {
                (429, retry_after) | (500..=599 | 408, retry_after @ Some(_)) => {
                    ErrorClass::Throttled { retry_after }
                }
                (500..=599 | 408, None) => ErrorClass::Transient,
                _ => ErrorClass::Permanent,
            },
            AuthError::Credential(_)
            | AuthError::Authority(_)
            | AuthError::Certificate { .. }
            | AuthError::TooLarge { .. } => ErrorClass::Misconfigured,
            AuthError::Interaction(_) => ErrorClass::NeedsSignIn,
        }
    }

    /// The `Retry-After` the service sent with this answer, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AuthError::Identity(f) => f.retry_after,
            AuthError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// When the service refused the request without acting on it (429, 408, 5xx) or
    /// could not be reached at all, how long to wait before sending it again. A timeout
    /// or a cut-off answer counts too when `idempotent` (the request may have been acted
    /// on). `None` for every other error.
    pub(crate) fn retry_hint(&self, idempotent: bool) -> Option<RetryHint> {
        match self {
            AuthError::Identity(f) if matches!(f.status, 408 | 429 | 500..=599) => {
                Some(RetryHint::from(f.retry_after))
            }
            AuthError::Status {
                status: 408 | 429 | 500..=599,
                retry_after,
            } => Some(RetryHint::from(*retry_after)),
            AuthError::Http { source, .. } if idempotent || source.is_connect() => {
                Some(RetryHint::Backoff)
            }
            _ => None,
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

#[cfg(test)]
mod prop_tests {
    use base64::Engine as _;

    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn parse(body: &[u8]) -> Result<TokenSet, String> {
        parse_token_response(200, body, now()).map_err(|e| e.to_string())
    }

    #[test]
    fn retry_after_as_seconds_or_date_and_bounded() {
        let at = |s: &str| parse_retry_after(s, now());
        assert_eq!(at("120"), Some(Duration::from_mins(2)));
        assert_eq!(at(" 0 "), Some(Duration::ZERO));
        assert_eq!(at("99999999999999999999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(at("86401"), Some(MAX_RETRY_AFTER));
        // now() is 2027-01-15 08:00:00 UTC.
        assert_eq!(
            at("Fri, 15 Jan 2027 08:00:30 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(at("Thu, 01 Jan 1970 00:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(at("Sun, 01 Jan 2034 00:00:00 GMT"), Some(MAX_RETRY_AFTER));
        for bad in ["", "-1", "1.5", "soon", "30 s"] {
            assert_eq!(at(bad), None, "{bad}");
        }
    }

    #[test]
    fn error_answers_are_classed_with_their_retry_after() {
        let body = br#"{"error":"temporarily_unavailable","error_description":"AADSTS90033: A transient error has occurred.","error_codes":[90033]}"#;
        let e = parse_token_response(503, body, now()).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Transient);
        assert_eq!(e.oauth_error(), Some("temporarily_unavailable"));
        let ra = Some(Duration::from_secs(7));
        for status in [429, 503] {
            assert_eq!(
                error_response(status, body, ra).class(),
                ErrorClass::Throttled { retry_after: ra }
            );
            assert_eq!(
                error_response(status, b"<html>busy</html>", ra).class(),
                ErrorClass::Throttled { retry_after: ra }
            );
        }
        assert_eq!(
            error_response(502, b"", None).class(),
            ErrorClass::Transient
        );
        let e = parse_token_response(200, &vec![b' '; MAX_ANSWER + 1], now()).unwrap_err();
        assert!(e.to_string().contains("longer than"), "{e}");
    }

    /// Any JSON value, nested a little.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
            ".{0,20}".prop_map(Value::from),
            "-?[0-9]{1,25}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn lifetimes_past_the_end_of_the_calendar_are_refused_not_a_panic() {
        // Found by `token_responses_with_wrong_types_never_panic`: `now + i64::MAX s`
        // panicked inside `time`.
        let body =
            br#"{"token_type":"Bearer","access_token":"x","expires_in":9223372036854775807}"#;
        let err = parse(body).err().unwrap();
        assert!(
            err.contains("expires_in 9223372036854775807 is out of range"),
            "{err}"
        );
        let body = br#"{"access_token":"x","expires_in":"3599","refresh_in":9223372036854775807}"#;
        let set = parse(body).unwrap();
        assert_eq!(set.refresh_at, None);
        assert_eq!(set.expires_at, now() + time::Duration::seconds(3599));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&body);
            let _ = crate::diagnosis::TokenError::parse(&body);
        }

        #[test]
        fn token_responses_with_wrong_types_never_panic(
            token_type in any_json(),
            access_token in any_json(),
            expires_in in any_json(),
            refresh_in in any_json(),
            scope in any_json(),
            refresh_token in any_json(),
        ) {
            let body = json!({
                "token_type": token_type, "access_token": access_token,
                "expires_in": expires_in, "refresh_in": refresh_in, "scope": scope,
                "refresh_token": refresh_token,
            });
            match parse(body.to_string().as_bytes()) {
                Ok(set) => {
                    prop_assert!(set.expires_at > now());
                    prop_assert!(set.refresh_at.is_none_or(|r| r > now()));
                }
                Err(e) => prop_assert!(!e.is_empty()),
            }
        }

        #[test]
        fn numeric_lifetimes_are_kept_or_refused(secs in any::<i64>(), as_text in any::<bool>()) {
            let v = if as_text { Value::from(secs.to_string()) } else { Value::from(secs) };
            let body = json!({"access_token": "t", "expires_in": v});
            match parse(body.to_string().as_bytes()) {
                Ok(set) => prop_assert_eq!(set.expires_at - now(), time::Duration::seconds(secs)),
                Err(e) => prop_assert!(secs <= 0 || e.contains("out of range"), "{}", e),
            }
        }

        #[test]
        fn error_answers_with_wrong_types_never_panic(
            error in any_json(),
            description in any_json(),
            codes in any_json(),
            claims in any_json(),
        ) {
            let body = json!({
                "error": error, "error_description": description, "error_codes": codes,
                "claims": claims, "trace_id": 1, "correlation_id": [],
            });
            if let Some(e) = crate::diagnosis::TokenError::parse(body.to_string().as_bytes()) {
                let d = e.diagnose();
                prop_assert!(!d.to_string().is_empty());
            }
        }

        #[test]
        fn aadsts_codes_are_read_from_the_description(code in any::<u32>(), tail in "[^\\r\\n]{0,40}") {
            let body = json!({"error": "invalid_client", "error_description": format!("AADSTS{code}: {tail}\r\nTrace ID: x")});
            let e = crate::diagnosis::TokenError::parse(body.to_string().as_bytes()).unwrap();
            prop_assert_eq!(e.code, Some(code));
            prop_assert_eq!(e.message, format!("AADSTS{code}: {tail}"));
        }

        #[test]
        fn claims_of_arbitrary_tokens_never_panic(
            token in "[A-Za-z0-9_.=-]{0,200}",
            payload in any_json(),
        ) {
            let _ = crate::claims::TokenClaims::decode(&token);
            let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string());
            if let Some(c) = crate::claims::TokenClaims::decode(&format!("e30.{encoded}.sig")) {
                for t in [mailbridge_types::config::Transport::Imap, mailbridge_types::config::Transport::Smtp] {
                    let _ = c.problems(t, crate::scopes::Grant::AppOnly);
                }
            }
        }
    }
}
