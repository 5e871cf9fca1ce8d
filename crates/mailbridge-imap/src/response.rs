//! IMAP response lines.

use mailbridge_types::ErrorClass;

/// Longest response line accepted (without literals).
pub const MAX_LINE: usize = 64 * 1024;
/// Largest literal accepted inside ordinary responses (not message bodies, which
/// are streamed).
pub const MAX_INLINE_LITERAL: u64 = 1024 * 1024;
/// Most bytes of untagged responses kept for one command (the rest are read and
/// dropped), so a server cannot make one command hold gigabytes.
pub const MAX_UNTAGGED_BYTES: usize = 16 * 1024 * 1024;

/// The literal announced at the end of a line (`{123}` or `{123+}`), if any. A size
/// past `u64` is `u64::MAX`, so that it is refused as too large rather than its bytes
/// taken for response lines.
pub fn trailing_literal(line: &str) -> Option<u64> {
    let rest = line.strip_suffix('}')?;
    let open = rest.rfind('{')?;
    let digits = rest.get(open + 1..)?;
    let digits = digits.strip_suffix('+').unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// A tagged completion: `tag OK|NO|BAD text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub status: CompletionStatus,
    pub text: String,
}

/// The completion status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionStatus {
    Ok,
    No,
    Bad,
}

/// Parses `tag STATUS text` for `tag`; `None` when the line is not that tag's completion.
pub fn parse_completion(line: &str, tag: &str) -> Option<Completion> {
    let rest = line.strip_prefix(tag)?.strip_prefix(' ')?;
    let (word, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let status = match word.to_ascii_uppercase().as_str() {
        "OK" => CompletionStatus::Ok,
        "NO" => CompletionStatus::No,
        "BAD" => CompletionStatus::Bad,
        _ => return None,
    };
    Some(Completion {
        status,
        text: text.to_owned(),
    })
}

/// The value of a bracketed response code such as `[UIDVALIDITY 1234]`.
pub fn response_code<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    let start = text.find('[')?;
    let end = start + text.get(start..)?.find(']')?;
    let inner = text.get(start + 1..end)?;
    let (code, value) = inner.split_once(' ').unwrap_or((inner, ""));
    code.eq_ignore_ascii_case(name).then_some(value)
}

/// The number of an untagged `* N WORD` response.
pub fn untagged_number(line: &str, word: &str) -> Option<u32> {
    let rest = line.strip_prefix("* ")?;
    let (n, w) = rest.split_once(' ')?;
    let w = w.split_whitespace().next()?;
    w.eq_ignore_ascii_case(word)
        .then(|| n.parse().ok())
        .flatten()
}

/// What a `NO`/`BAD` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Meaning {
    /// The token or password was refused (`AUTHENTICATE failed.`).
    AuthenticationFailed,
    /// Exchange's `Request is throttled. Suggested Backoff Time: N milliseconds`.
    Throttled { backoff_ms: u64 },
    /// `[UNAVAILABLE]`, `[INUSE]`, or a `BYE` from the server.
    Transient,
    /// No such folder, or another refusal.
    Rejected,
}

impl Meaning {
    /// Reads a completion text.
    pub fn of(text: &str) -> Self {
        let lower = text.to_ascii_lowercase();
        if let Some(pos) = lower.find("suggested backoff time:") {
            let ms = lower
                .get(pos + "suggested backoff time:".len()..)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            return Meaning::Throttled { backoff_ms: ms };
        }
        if lower.contains("authenticate failed")
            || lower.contains("authentication failed")
            || lower.contains("login failed")
            || lower.contains("[authenticationfailed]")
            || lower.contains("not connected")
        {
            return Meaning::AuthenticationFailed;
        }
        if lower.contains("[unavailable]")
            || lower.contains("[inuse]")
            || lower.contains("try again")
        {
            return Meaning::Transient;
        }
        Meaning::Rejected
    }

    /// The error class.
    pub fn class(self) -> ErrorClass {
        match self {
            Meaning::AuthenticationFailed => ErrorClass::Misconfigured,
            Meaning::Throttled { backoff_ms } => ErrorClass::Throttled {
                retry_after: Some(std::time::Duration::from_millis(backoff_ms)),
            },
            Meaning::Transient => ErrorClass::Transient,
            Meaning::Rejected => ErrorClass::Permanent,
        }
    }

    /// The fix, in the admin's words.
    pub fn fix(self) -> &'static str {
        match self {
            Meaning::AuthenticationFailed => {
                "the server refused the sign-in: for Microsoft 365 app-only check, in order, that the token is for https://outlook.office365.com with the IMAP.AccessAsApp role (admin consent), that `New-ServicePrincipal` was run with the Enterprise application's Object ID (not the app registration's), that `Add-MailboxPermission -AccessRights FullAccess` was given on this mailbox, that user= is the mailbox's primary address, and that IMAP is enabled for it (`Set-CASMailbox -ImapEnabled $true`); changes take up to 30 minutes. For delegated check the https://outlook.office.com/IMAP.AccessAsUser.All scope"
            }
            Meaning::Throttled { .. } => {
                "the server is throttling this mailbox: wait the suggested time"
            }
            Meaning::Transient => "a temporary failure: retry later",
            Meaning::Rejected => "the server refused the command: see its reply",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_completions_and_codes() {
        assert_eq!(
            trailing_literal("* 1 FETCH (UID 7 BODY[] {1234}"),
            Some(1234)
        );
        assert_eq!(trailing_literal("x {12+}"), Some(12));
        assert_eq!(trailing_literal("x {}"), None);
        assert_eq!(
            trailing_literal("x {99999999999999999999}"),
            Some(u64::MAX),
            "too large to hold, but a literal all the same"
        );
        assert_eq!(trailing_literal("x {12++}"), None);
        assert_eq!(trailing_literal("x"), None);
        let c = parse_completion("a1 NO AUTHENTICATE failed.", "a1").unwrap();
        assert_eq!(c.status, CompletionStatus::No);
        assert_eq!(Meaning::of(&c.text), Meaning::AuthenticationFailed);
        assert!(parse_completion("a10 OK x", "a1").is_none());
        assert_eq!(
            response_code("OK [UIDVALIDITY 3857529045] UIDs valid", "UIDVALIDITY"),
            Some("3857529045")
        );
        assert_eq!(untagged_number("* 23 EXISTS", "EXISTS"), Some(23));
        assert_eq!(
            Meaning::of("Request is throttled. Suggested Backoff Time: 299961 milliseconds"),
            Meaning::Throttled {
                backoff_ms: 299_961
            }
        );
        assert_eq!(
            Meaning::of("[CONTACTADMIN] AUTHENTICATE failed."),
            Meaning::AuthenticationFailed
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_lines_never_panic(line in ".{0,300}") {
            let _ = trailing_literal(&line);
            let _ = parse_completion(&line, "a1");
            let _ = response_code(&line, "UIDVALIDITY");
            let _ = untagged_number(&line, "EXISTS");
            let _ = Meaning::of(&line);
        }
    }
}
