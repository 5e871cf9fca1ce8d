//! Graph errors (`microsoft-protocols.md` §3.7).

use std::time::Duration;

use mailbridge_types::ErrorClass;
use serde_json::Value;

/// What a Graph error answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Meaning {
    /// 429 / 503 / 504: wait `Retry-After`.
    Throttled,
    /// 401: the token is missing, expired, for another audience, or invalid.
    BadToken,
    /// 403 `ErrorAccessDenied` "Access to OData is disabled.": an application access
    /// policy or RBAC scope excludes the mailbox.
    OutsideAccessPolicy,
    /// 403 otherwise: the token lacks the permission (admin consent).
    AccessDenied,
    /// 404 `MailboxNotEnabledForRESTAPI`: no Exchange Online licence, or on-premises.
    MailboxNotEnabled,
    /// 404 for a user.
    UnknownUser,
    /// 404 for an item: it is gone.
    NotFound,
    /// 410 / `syncStateNotFound` / `resyncRequired`: start the delta sync over.
    ResyncRequired,
    /// 5xx other than the above.
    Transient,
    Rejected,
}

/// A Graph error answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Microsoft Graph answered HTTP {status} {code}: {message}. {}", meaning.fix())]
pub struct GraphError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub retry_after: Option<Duration>,
    pub request_id: Option<String>,
    pub meaning: Meaning,
}

impl GraphError {
    /// Reads an error answer.
    pub fn from_answer(
        status: u16,
        retry_after: Option<Duration>,
        request_id: Option<String>,
        body: &[u8],
    ) -> Self {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let code = v["error"]["code"].as_str().unwrap_or_default().to_owned();
        let message = v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let meaning = match (status, code.as_str()) {
            (429 | 503 | 504, _) => Meaning::Throttled,
            (410, _) | (_, "syncStateNotFound" | "SyncStateNotFound" | "resyncRequired") => {
                Meaning::ResyncRequired
            }
            (401, _) => Meaning::BadToken,
            (403, _) if message.contains("Access to OData is disabled") => {
                Meaning::OutsideAccessPolicy
            }
            (403, _) => Meaning::AccessDenied,
            (404, "MailboxNotEnabledForRESTAPI") => Meaning::MailboxNotEnabled,
            (404, "ErrorInvalidUser") => Meaning::UnknownUser,
            (404, _) => Meaning::NotFound,
            (500..=599, _) => Meaning::Transient,
            _ => Meaning::Rejected,
        };
        Self {
            status,
            code,
            message,
            retry_after,
            request_id,
            meaning,
        }
    }

    /// What to do about it.
    pub fn class(&self) -> ErrorClass {
        match self.meaning {
            Meaning::Throttled => ErrorClass::Throttled {
                retry_after: self.retry_after,
            },
            Meaning::Transient => ErrorClass::Transient,
            Meaning::BadToken => ErrorClass::NeedsSignIn,
            Meaning::OutsideAccessPolicy | Meaning::AccessDenied | Meaning::MailboxNotEnabled => {
                ErrorClass::NeedsAdmin
            }
            Meaning::UnknownUser => ErrorClass::Misconfigured,
            Meaning::NotFound | Meaning::ResyncRequired | Meaning::Rejected => {
                ErrorClass::Permanent
            }
        }
    }
}

impl Meaning {
    /// The fix, in the admin's words.
    pub fn fix(self) -> &'static str {
        match self {
            Meaning::Throttled => "Graph is throttling this mailbox: retry after the time it gave",
            Meaning::BadToken => {
                "the access token was refused: it expired, or it is not for https://graph.microsoft.com (request https://graph.microsoft.com/.default for app-only)"
            }
            Meaning::OutsideAccessPolicy => {
                "an application access policy (or RBAC for Applications scope) excludes this mailbox: add it to the policy's group (`Test-ApplicationAccessPolicy -Identity <mailbox> -AppId <client id>` shows the result; changes can take an hour)"
            }
            Meaning::AccessDenied => {
                "the token lacks the permission: in App registrations -> API permissions add Microsoft Graph Mail.ReadWrite (and Mail.Send to send) as Application permissions, then press \"Grant admin consent\""
            }
            Meaning::MailboxNotEnabled => {
                "the mailbox is not in Exchange Online (no Exchange Online licence, or it is on-premises): assign a licence, or use EWS for on-premises mailboxes"
            }
            Meaning::UnknownUser => {
                "no such user: use the mailbox's Object ID or user principal name"
            }
            Meaning::NotFound => "the message no longer exists",
            Meaning::ResyncRequired => {
                "the delta state is gone: start the sync over from the folder's first page"
            }
            Meaning::Transient => "a temporary failure at Microsoft: retry later",
            Meaning::Rejected => "Graph refused the request: see its message",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meanings_of_real_answers() {
        let e = GraphError::from_answer(
            403,
            None,
            None,
            br#"{"error":{"code":"ErrorAccessDenied","message":"Access to OData is disabled."}}"#,
        );
        assert_eq!(e.meaning, Meaning::OutsideAccessPolicy);
        assert_eq!(e.class(), ErrorClass::NeedsAdmin);
        assert!(e.to_string().contains("Test-ApplicationAccessPolicy"));
        let e = GraphError::from_answer(429, Some(Duration::from_secs(3)), None, b"not json");
        assert_eq!(
            e.class(),
            ErrorClass::Throttled {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        let e = GraphError::from_answer(
            404,
            None,
            None,
            br#"{"error":{"code":"MailboxNotEnabledForRESTAPI","message":"The mailbox is either inactive, soft-deleted, or is hosted on-premise."}}"#,
        );
        assert_eq!(e.meaning, Meaning::MailboxNotEnabled);
        assert_eq!(
            GraphError::from_answer(410, None, None, b"{}").meaning,
            Meaning::ResyncRequired
        );
    }
}
