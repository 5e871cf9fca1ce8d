//! POP3 responses.

use mailbridge_types::ErrorClass;

/// Longest response line accepted (RFC 1939 says 512; servers send longer texts).
pub const MAX_LINE: usize = 8192;

/// A status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub ok: bool,
    /// A SASL continuation (`+ …`) rather than `+OK`.
    pub continuation: bool,
    /// The text after `+OK ` / `-ERR `.
    pub text: String,
}

/// A line that is not a POP3 status line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed POP3 status line: {0:?}")]
pub struct StatusError(pub String);

impl Status {
    /// Parses `+OK …`, `-ERR …`, or a SASL continuation `+ …` (as `ok`).
    pub fn parse(line: &str) -> Result<Self, StatusError> {
        let (ok, continuation, rest) = if let Some(rest) = line.strip_prefix("+OK") {
            (true, false, rest)
        } else if let Some(rest) = line.strip_prefix("-ERR") {
            (false, false, rest)
        } else if let Some(rest) = line.strip_prefix('+') {
            (true, true, rest)
        } else {
            return Err(StatusError(line.chars().take(200).collect()));
        };
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return Err(StatusError(line.chars().take(200).collect()));
        }
        Ok(Self {
            ok,
            continuation,
            text: rest.trim_start().to_owned(),
        })
    }

    /// The RFC 2449 response code (`AUTH`, `SYS/TEMP`, `IN-USE`, ...), if any.
    pub fn code(&self) -> Option<&str> {
        let rest = self.text.strip_prefix('[')?;
        rest.split_once(']').map(|(code, _)| code)
    }

    /// What a refusal means.
    pub fn meaning(&self) -> Meaning {
        if self.ok {
            return Meaning::Ok;
        }
        let lower = self.text.to_ascii_lowercase();
        let code = self.code().map(str::to_ascii_uppercase);
        if lower.contains("pop disabled") || lower.contains("pop3 disabled") {
            return Meaning::PopDisabled;
        }
        match code.as_deref() {
            Some("IN-USE" | "SYS/TEMP") => return Meaning::Transient,
            Some("AUTH") => return Meaning::AuthenticationFailed,
            _ => {}
        }
        if lower.contains("authentication failure") || lower.contains("authentication failed") {
            Meaning::AuthenticationFailed
        } else if lower.contains("throttl") || lower.contains("try again") {
            Meaning::Transient
        } else {
            Meaning::Rejected
        }
    }
}

/// What a `-ERR` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Meaning {
    Ok,
    /// The token or password was refused.
    AuthenticationFailed,
    /// POP is switched off for the mailbox.
    PopDisabled,
    /// Mailbox locked by another session, or a temporary server problem.
    Transient,
    Rejected,
}

impl Meaning {
    /// The error class.
    pub fn class(self) -> ErrorClass {
        match self {
            Meaning::AuthenticationFailed => ErrorClass::Misconfigured,
            Meaning::PopDisabled => ErrorClass::NeedsAdmin,
            Meaning::Transient => ErrorClass::Transient,
            Meaning::Ok | Meaning::Rejected => ErrorClass::Permanent,
        }
    }

    /// The fix, in the admin's words.
    pub fn fix(self) -> &'static str {
        match self {
            Meaning::Ok => "",
            Meaning::AuthenticationFailed => {
                "the server refused the sign-in: for Microsoft 365 app-only check that the token has the POP.AccessAsApp role (admin consent), that `New-ServicePrincipal` was run with the Enterprise application's Object ID, that the service principal has FullAccess on the mailbox (`Add-MailboxPermission -AccessRights FullAccess`; changes take up to 30 minutes), and that POP is enabled for the mailbox; for delegated check the POP.AccessAsUser.All scope; for passwords check the password"
            }
            Meaning::PopDisabled => {
                "POP is disabled for this mailbox: run `Set-CASMailbox -Identity <mailbox> -PopEnabled $true` (Outlook.com: Settings -> Mail -> Forwarding and IMAP -> Let devices and apps use POP)"
            }
            Meaning::Transient => {
                "a temporary failure (or another session holds the mailbox): retry later"
            }
            Meaning::Rejected => "the server rejected the command: see its reply",
        }
    }
}

/// Parses one `UIDL` listing line: `<msg number> <unique id>`.
pub fn parse_uidl_line(line: &str) -> Option<(u32, String)> {
    let mut parts = line.split_whitespace();
    let n = parts.next()?.parse().ok()?;
    let uid = parts.next()?;
    if parts.next().is_some() || uid.len() > 70 || !uid.bytes().all(|b| (0x21..=0x7e).contains(&b))
    {
        return None;
    }
    Some((n, uid.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_codes() {
        let s =
            Status::parse("-ERR [AUTH] Authentication failure: unknown user name or bad password.")
                .unwrap();
        assert!(!s.ok);
        assert_eq!(s.code(), Some("AUTH"));
        assert_eq!(s.meaning(), Meaning::AuthenticationFailed);
        let s = Status::parse("-ERR Authentication failure: unknown user name or bad password.")
            .unwrap();
        assert_eq!(
            s.meaning(),
            Meaning::AuthenticationFailed,
            "Exchange's own text"
        );
        assert_eq!(
            Status::parse("-ERR This account has POP disabled.")
                .unwrap()
                .meaning(),
            Meaning::PopDisabled
        );
        assert_eq!(
            Status::parse("-ERR [IN-USE] Mailbox locked")
                .unwrap()
                .meaning(),
            Meaning::Transient
        );
        assert!(Status::parse("+ ").unwrap().continuation);
        assert!(!Status::parse("+OK done").unwrap().continuation);
        assert!(Status::parse("+OK").unwrap().ok);
        for bad in ["", "OK", "+OKAY", "-ERRx", "* 1 EXISTS"] {
            assert!(Status::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn uidl_lines() {
        assert_eq!(
            parse_uidl_line("1 00000001575d1b3f"),
            Some((1, "00000001575d1b3f".into()))
        );
        for bad in ["", "x y", "1", "1 a b", "1 \u{7f}"] {
            assert!(parse_uidl_line(bad).is_none(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_lines_never_panic(line in ".{0,300}") {
            if let Ok(s) = Status::parse(&line) { let _ = (s.code(), s.meaning()); }
            let _ = parse_uidl_line(&line);
        }
    }
}
