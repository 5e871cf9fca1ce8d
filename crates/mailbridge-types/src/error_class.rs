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
    /// A bound mailbridge sets was exceeded (message size, listing length, page chain,
    /// time per command): the error names the bound and the setting that raises it.
    /// Retrying as is fails again.
    LimitExceeded,
    /// The request may or may not have taken effect (for example the connection was
    /// lost after a message's final `.` was sent): do not resend blindly; check first
    /// (Sent Items, the recipient) or resend accepting a possible duplicate.
    OutcomeUnknown,
}

impl ErrorClass {
    /// True when retrying the same request later can succeed without anyone acting.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Transient | ErrorClass::Throttled { .. })
    }

    /// A stable machine-readable name (`transient`, `throttled`, `needs-sign-in`,
    /// `needs-admin`, `misconfigured`, `permanent`, `limit-exceeded`, `outcome-unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Throttled { .. } => "throttled",
            ErrorClass::NeedsSignIn => "needs-sign-in",
            ErrorClass::NeedsAdmin => "needs-admin",
            ErrorClass::Misconfigured => "misconfigured",
            ErrorClass::Permanent => "permanent",
            ErrorClass::LimitExceeded => "limit-exceeded",
            ErrorClass::OutcomeUnknown => "outcome-unknown",
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

/// An error and its sources, `: `-separated: the whole story in one line for a
/// report or a log.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_chain_reads_as_one_line() {
        let inner = std::io::Error::other("connection reset");
        let outer = Wrapped(inner);
        assert_eq!(
            error_chain(&outer),
            "reading the answer failed: connection reset"
        );
    }

    #[derive(Debug)]
    struct Wrapped(std::io::Error);
    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("reading the answer failed")
        }
    }
    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

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
