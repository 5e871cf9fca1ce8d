//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463), and what they
//! mean for a Microsoft 365 or other submission server.

use mailbridge_types::ErrorClass;

/// Longest reply line accepted (RFC 5321 says 512; servers send longer texts).
pub const MAX_LINE: usize = 4096;
/// Most lines in one reply.
pub const MAX_LINES: usize = 256;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The texts of the lines, without code and separator.
    pub lines: Vec<String>,
}

/// A reply line that is not SMTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed SMTP reply line: {0:?}")]
pub struct ReplyError(pub String);

/// Parses one reply line: `(code, is_last, text)`.
pub fn parse_line(line: &str) -> Result<(u16, bool, &str), ReplyError> {
    let bytes = line.as_bytes();
    let bad = || ReplyError(line.chars().take(200).collect());
    if bytes.len() < 3 || !bytes.iter().take(3).all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).ok_or_else(bad)?;
    if !(200..600).contains(&code) && !(100..200).contains(&code) {
        return Err(bad());
    }
    match bytes.get(3) {
        None => Ok((code, true, "")),
        Some(b' ') => Ok((code, true, line.get(4..).unwrap_or_default())),
        Some(b'-') => Ok((code, false, line.get(4..).unwrap_or_default())),
        Some(_) => Err(bad()),
    }
}

impl Reply {
    /// The whole text, lines joined with a space.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// The first enhanced status code (`5.7.139`) in the reply, wherever it stands:
    /// some servers (Postfix in front of Dovecot) put the upstream code after their own.
    pub fn enhanced_codes(&self) -> Vec<String> {
        let mut out = Vec::new();
        for line in &self.lines {
            for word in line.split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == ':')
            {
                let parts: Vec<&str> = word.split('.').collect();
                if parts.len() == 3
                    && matches!(parts.first(), Some(&("2" | "4" | "5")))
                    && parts.iter().all(|p| {
                        !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit())
                    })
                {
                    out.push(word.to_owned());
                }
            }
        }
        out
    }

    /// True for 2xx and 3xx.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// What the reply means.
    pub fn meaning(&self) -> Meaning {
        let codes = self.enhanced_codes();
        let has = |c: &str| codes.iter().any(|x| x == c);
        let text = self.text().to_ascii_lowercase();
        if self.code < 400 {
            return Meaning::Ok;
        }
        if has("5.7.139") || text.contains("smtpclientauthentication is disabled") {
            if text.contains("for the mailbox") {
                return Meaning::SmtpAuthDisabledForMailbox;
            }
            if text.contains("basic authentication is disabled") {
                return Meaning::BasicAuthDisabled;
            }
            return Meaning::SmtpAuthDisabledForTenant;
        }
        if has("5.2.252") || text.contains("sendasdenied") || has("5.7.60") {
            return Meaning::SendAsDenied;
        }
        if has("4.3.2") && text.contains("concurrent") {
            return Meaning::Throttled;
        }
        if self.code == 535 || has("5.7.3") || has("5.7.8") {
            return Meaning::AuthenticationFailed;
        }
        if has("5.3.4") || self.code == 552 {
            return Meaning::TooLarge;
        }
        if self.code == 421 || (400..500).contains(&self.code) {
            return Meaning::Transient;
        }
        Meaning::Rejected
    }
}

/// What a negative reply means, and what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Meaning {
    Ok,
    /// `5.7.139 … SmtpClientAuthentication is disabled for the Tenant`.
    SmtpAuthDisabledForTenant,
    /// `5.7.139 … disabled for the Mailbox`.
    SmtpAuthDisabledForMailbox,
    /// `5.7.139 … basic authentication is disabled`.
    BasicAuthDisabled,
    /// `535 5.7.3` and kin: the token or password was refused.
    AuthenticationFailed,
    /// `554 5.2.252 SendAsDenied`.
    SendAsDenied,
    /// `432 4.3.2 Concurrent connections limit exceeded`.
    Throttled,
    /// `552 5.3.4` message too large.
    TooLarge,
    /// Any other 4xx: try again later.
    Transient,
    /// Any other 5xx.
    Rejected,
}

impl Meaning {
    /// The error class.
    pub fn class(self) -> ErrorClass {
        match self {
            Meaning::SmtpAuthDisabledForTenant
            | Meaning::SmtpAuthDisabledForMailbox
            | Meaning::BasicAuthDisabled
            | Meaning::SendAsDenied => ErrorClass::NeedsAdmin,
            Meaning::AuthenticationFailed => ErrorClass::Misconfigured,
            Meaning::Throttled => ErrorClass::Throttled { retry_after: None },
            Meaning::Transient => ErrorClass::Transient,
            Meaning::Ok | Meaning::TooLarge | Meaning::Rejected => ErrorClass::Permanent,
        }
    }

    /// The fix, in the admin's words (Exchange Online PowerShell and the portal).
    pub fn fix(self) -> &'static str {
        match self {
            Meaning::Ok => "",
            Meaning::SmtpAuthDisabledForTenant => {
                "SMTP AUTH is disabled for the whole tenant: run `Set-TransportConfig -SmtpClientAuthenticationDisabled $false`, or enable it for this mailbox only with `Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false` (or send through Microsoft Graph instead)"
            }
            Meaning::SmtpAuthDisabledForMailbox => {
                "SMTP AUTH is disabled for this mailbox: run `Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false` (Microsoft 365 admin center -> Users -> the user -> Mail -> Manage email apps -> Authenticated SMTP)"
            }
            Meaning::BasicAuthDisabled => {
                "password (Basic) sign-in is disabled for SMTP: switch the account to OAuth2 (delegated or app-only)"
            }
            Meaning::AuthenticationFailed => {
                "the server refused the sign-in: for Microsoft 365 app-only check that the token has the SMTP.SendAsApp role (admin consent), that `New-ServicePrincipal` was run with the Enterprise application's Object ID, and that the service principal has FullAccess or SendAs on the mailbox (changes can take 30 minutes); for delegated check the SMTP.Send scope; for passwords check the password"
            }
            Meaning::SendAsDenied => {
                "the signed-in mailbox may not send as this From address: run `Add-RecipientPermission -Identity <from address> -Trustee <mailbox or service principal> -AccessRights SendAs`, or send from the mailbox's own address"
            }
            Meaning::Throttled => {
                "too many connections to this mailbox at once (Exchange allows 3): retry later with fewer parallel senders"
            }
            Meaning::TooLarge => {
                "the message is larger than the server accepts: send a smaller message"
            }
            Meaning::Transient => "a temporary failure: retry later",
            Meaning::Rejected => "the server rejected the command: see its reply",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> Reply {
        Reply {
            code,
            lines: vec![text.to_owned()],
        }
    }

    #[test]
    fn exchange_and_postfix_framings_mean_the_same() {
        let exchange = reply(
            535,
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [SN4PR0501CA0123]",
        );
        assert_eq!(exchange.meaning(), Meaning::SmtpAuthDisabledForTenant);
        let postfix = reply(
            535,
            "5.7.8 Error: authentication failed: 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.",
        );
        assert_eq!(postfix.meaning(), Meaning::SmtpAuthDisabledForMailbox);
        assert_eq!(
            reply(535, "5.7.3 Authentication unsuccessful [X]").meaning(),
            Meaning::AuthenticationFailed
        );
        assert_eq!(
            reply(554, "5.2.252 SendAsDenied; alice@contoso.com not allowed to send as bob@contoso.com; STOREDRV.Submit").meaning(),
            Meaning::SendAsDenied
        );
        assert_eq!(
            reply(432, "4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending").meaning(),
            Meaning::Throttled
        );
        assert_eq!(
            reply(451, "4.3.0 try later").meaning().class(),
            ErrorClass::Transient
        );
    }

    #[test]
    fn reply_lines() {
        assert_eq!(
            parse_line("250-PIPELINING").unwrap(),
            (250, false, "PIPELINING")
        );
        assert_eq!(parse_line("250 OK").unwrap(), (250, true, "OK"));
        assert_eq!(parse_line("334").unwrap(), (334, true, ""));
        for bad in ["", "25", "abc def", "2500", "250x", "999 no", "099 no"] {
            assert!(parse_line(bad).is_err(), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_lines_never_panic(line in ".{0,600}") {
            let _ = parse_line(&line);
            let r = Reply { code: 550, lines: vec![line] };
            let _ = r.meaning();
        }
    }
}
