//! What to do about an error. Every error that reaches the connector or the HTTP layer
//! carries one of these classes; retry logic reads only the class.

use std::fmt;
use std::time::Duration;

/// The class of an error: what the caller (or the admin) should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorClass {
    /// A passing fault (network, 5xx): retry later with backoff; keep tokens and state.
    Transient,
    /// The service asked us to slow down: retry after the given time (or backoff).
    Throttled { retry_after: Option<Duration> },
    /// The user must sign in again (refresh token expired or revoked, MFA now required).
    NeedsSignIn,
    /// An administrator must act in the tenant (consent, policy, service principal).
    NeedsAdmin,
    /// mailbridge's configuration is wrong (ids, secrets, scopes, URLs): fix it.
    Misconfigured,
    /// Will not succeed as asked; do not retry.
    Permanent,
}

impl ErrorClass {
    /// True when retrying the same request later can succeed without anyone acting.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Transient | ErrorClass::Throttled { .. })
    }

    /// A stable machine-readable name (`transient`, `throttled`, `needs-sign-in`,
    /// `needs-admin`, `misconfigured`, `permanent`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Throttled { .. } => "throttled",
            ErrorClass::NeedsSignIn => "needs-sign-in",
            ErrorClass::NeedsAdmin => "needs-admin",
            ErrorClass::Misconfigured => "misconfigured",
            ErrorClass::Permanent => "permanent",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorClass::Throttled {
                retry_after: Some(d),
            } => write!(f, "throttled (retry after {} s)", d.as_secs()),
            other => f.write_str(other.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_and_throttled_are_retryable() {
        assert!(ErrorClass::Transient.is_retryable());
        assert!(ErrorClass::Throttled { retry_after: None }.is_retryable());
        for c in [
            ErrorClass::NeedsSignIn,
            ErrorClass::NeedsAdmin,
            ErrorClass::Misconfigured,
            ErrorClass::Permanent,
        ] {
            assert!(!c.is_retryable(), "{c}");
        }
        assert_eq!(
            ErrorClass::Throttled {
                retry_after: Some(Duration::from_secs(7))
            }
            .to_string(),
            "throttled (retry after 7 s)"
        );
    }
}
