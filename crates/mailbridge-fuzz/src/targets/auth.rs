//! Fuzz targets for the auth parsers: the token endpoint's answers (success and error
//! JSON with AADSTS codes), `Retry-After` values, and JWT claims read without trust.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailbridge_auth::claims::{TokenClaims, jwt_payload, signed_in_user};
use mailbridge_auth::diagnosis::TokenError;
use mailbridge_auth::scopes::{Grant, Transport};
use mailbridge_auth::token::{AuthError, parse_retry_after, parse_token_response};
use time::OffsetDateTime;

use crate::Target;

/// This area's targets.
pub const TARGETS: &[Target] = &[
    Target {
        name: "token_response",
        run: token_response,
    },
    Target {
        name: "jwt_claims",
        run: jwt_claims,
    },
    Target {
        name: "retry_after",
        run: retry_after,
    },
];

/// A fixed "now" (2027-01-15 08:00:00 UTC), so that runs repeat.
fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Input: the HTTP status (2 bytes, big-endian), then the answer's body.
fn token_response(data: &[u8]) {
    let (status, body) = match data {
        [hi, lo, body @ ..] => (u16::from_be_bytes([*hi, *lo]), body),
        _ => (200, data),
    };
    match parse_token_response(status, body, now()) {
        Ok(set) => {
            assert!(
                (200..300).contains(&status),
                "a token set from HTTP {status}"
            );
            assert!(
                set.expires_at > now(),
                "a token that expired before it came"
            );
            assert!(set.refresh_at.is_none_or(|r| r > now()));
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            let _ = e.class();
            if !(200..300).contains(&status) {
                assert!(
                    matches!(e, AuthError::Identity(_) | AuthError::Status { .. }),
                    "HTTP {status} read as {e:?}"
                );
            }
        }
    }
    if let Some(error) = TokenError::parse(body) {
        assert!(!error.diagnose().to_string().is_empty());
    }
}

/// Input: a token as text, and the same bytes as a JWT's payload.
fn jwt_claims(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let as_payload = format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(data));
    for token in [text.as_ref(), as_payload.as_str()] {
        let _ = jwt_payload(token);
        if let Some(claims) = TokenClaims::decode(token) {
            for t in [
                Transport::Graph,
                Transport::Imap,
                Transport::Pop3,
                Transport::Smtp,
                Transport::Ews,
            ] {
                for g in [Grant::Delegated, Grant::AppOnly] {
                    for p in claims.problems(t, g) {
                        assert!(!p.to_string().is_empty());
                    }
                }
            }
        }
        if let Some(user) = signed_in_user(Some(token), token) {
            assert!(!user.name.is_empty());
            assert!(!user.name.chars().any(char::is_control));
        }
    }
}

/// Input: a `Retry-After` header value.
fn retry_after(data: &[u8]) {
    if let Ok(value) = std::str::from_utf8(data)
        && let Some(wait) = parse_retry_after(value, now())
    {
        assert!(wait <= mailbridge_auth::token::MAX_RETRY_AFTER);
    }
}
