//! SMTP replies ([RFC 5321 §4.2](https://www.rfc-editor.org/rfc/rfc5321#section-4.2))
//! with enhanced status codes ([RFC 3463](https://www.rfc-editor.org/rfc/rfc3463)),
//! EHLO capabilities (RFC 5321 §4.1.1.1), and what they mean for a Microsoft 365 or
//! other submission server.
//!
//! Pure functions over bytes with explicit limits ([`ReplyLimits`]: bytes per line,
//! lines and bytes per reply), apart from any I/O: [`ReplyParser`] takes a reply line
//! by line, [`parse`] a whole reply from a buffer, [`Capabilities::parse`] an EHLO
//! reply. Server text is made [`printable`] as it is parsed. Nothing here panics on
//! any input.

use mailbridge_types::ErrorClass;

/// Longest reply line accepted (RFC 5321 says 512; servers send longer texts).
pub const MAX_LINE: usize = 4096;
/// Most lines in one reply.
pub const MAX_LINES: usize = 256;
/// Most bytes in one reply (its lines' texts together).
pub const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Bounds on one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyLimits {
    /// Bytes per line, without CR LF.
    pub max_line: usize,
    /// Lines per reply.
    pub max_lines: usize,
    /// Bytes per reply.
    pub max_bytes: usize,
}

impl Default for ReplyLimits {
    fn default() -> Self {
        Self {
            max_line: MAX_LINE,
            max_lines: MAX_LINES,
            max_bytes: MAX_REPLY_BYTES,
        }
    }
}

/// A server's text as it may be shown to a person: control characters (escape
/// sequences, bell, backspace, C1) and bidirectional overrides removed, tabs made
/// spaces, at most `max` characters.
pub fn printable(text: &str, max: usize) -> String {
    mailbridge_types::text::without_controls(text, max)
}

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The texts of the lines, without code and separator, made [`printable`].
    pub lines: Vec<String>,
}

/// A reply that is not SMTP or passes a bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    /// Not a reply line (shown escaped, at most 200 characters).
    #[error("malformed SMTP reply line: {0:?}")]
    Malformed(String),
    /// The code changed within one multi-line reply.
    #[error("reply codes change within one reply ({first} then {then})")]
    CodeChanged { first: u16, then: u16 },
    /// A line longer than [`ReplyLimits::max_line`].
    #[error("a reply line longer than {max} bytes")]
    LineTooLong { max: usize },
    /// More lines than [`ReplyLimits::max_lines`].
    #[error("a reply of more than {max} lines")]
    TooManyLines { max: usize },
    /// More bytes than [`ReplyLimits::max_bytes`].
    #[error("a reply of more than {max} bytes")]
    TooManyBytes { max: usize },
}

/// Parses one reply line: `(code, is_last, text)`.
pub fn parse_line(line: &str) -> Result<(u16, bool, &str), ReplyError> {
    let bytes = line.as_bytes();
    let bad = || ReplyError::Malformed(line.chars().take(200).collect());
    if bytes.len() < 3 || !bytes.iter().take(3).all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).ok_or_else(bad)?;
    if !(100..600).contains(&code) {
        return Err(bad());
    }
    match bytes.get(3) {
        None => Ok((code, true, "")),
        Some(b' ') => Ok((code, true, line.get(4..).unwrap_or_default())),
        Some(b'-') => Ok((code, false, line.get(4..).unwrap_or_default())),
        Some(_) => Err(bad()),
    }
}

/// A reply taken line by line, within [`ReplyLimits`].
#[derive(Debug, Clone)]
pub struct ReplyParser {
    limits: ReplyLimits,
    code: Option<u16>,
    lines: Vec<String>,
    bytes: usize,
}

impl ReplyParser {
    /// A parser for one reply.
    pub fn new(limits: ReplyLimits) -> Self {
        Self {
            limits,
            code: None,
            lines: Vec::new(),
            bytes: 0,
        }
    }

    /// Takes one line (without its CR LF; invalid UTF-8 is replaced): the reply once
    /// its last line came. After a reply or an error, start a new parser.
    pub fn push_line(&mut self, line: &[u8]) -> Result<Option<Reply>, ReplyError> {
        if line.len() > self.limits.max_line {
            return Err(ReplyError::LineTooLong {
                max: self.limits.max_line,
            });
        }
        let text = String::from_utf8_lossy(line);
        let (code, last, rest) = parse_line(&text)?;
        let kept = printable(rest, self.limits.max_line);
        // What is held counts: a byte that is not UTF-8 is kept as U+FFFD (3 bytes).
        self.bytes += line.len().max(kept.len());
        if self.bytes > self.limits.max_bytes {
            return Err(ReplyError::TooManyBytes {
                max: self.limits.max_bytes,
            });
        }
        if let Some(first) = self.code.filter(|c| *c != code) {
            return Err(ReplyError::CodeChanged { first, then: code });
        }
        self.code = Some(code);
        self.lines.push(kept);
        if last {
            return Ok(Some(Reply {
                code,
                lines: std::mem::take(&mut self.lines),
            }));
        }
        if self.lines.len() >= self.limits.max_lines {
            return Err(ReplyError::TooManyLines {
                max: self.limits.max_lines,
            });
        }
        Ok(None)
    }
}

/// Parses one whole reply from the start of `input` (lines ending in LF, a CR before
/// it dropped): the reply and the bytes it used, or `None` when `input` ends before
/// the reply does (with no bound passed yet).
pub fn parse(input: &[u8], limits: &ReplyLimits) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut parser = ReplyParser::new(*limits);
    let mut used = 0;
    while let Some(rest) = input.get(used..) {
        let Some(lf) = rest.iter().position(|b| *b == b'\n') else {
            if rest.len() > limits.max_line + 1 {
                return Err(ReplyError::LineTooLong {
                    max: limits.max_line,
                });
            }
            return Ok(None);
        };
        let line = rest.get(..lf).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        used += lf + 1;
        if let Some(reply) = parser.push_line(line)? {
            return Ok(Some((reply, used)));
        }
    }
    Ok(None)
}

/// An enhanced status code (RFC 3463): `class.subject.detail`, as `5.7.139`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnhancedCode {
    /// 2, 4 or 5.
    pub class: u8,
    /// 0 to 999.
    pub subject: u16,
    /// 0 to 999.
    pub detail: u16,
}

impl EnhancedCode {
    /// Parses one word as an enhanced status code.
    pub fn parse(word: &str) -> Option<Self> {
        let mut parts = word.split('.');
        let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let digits = |p: &str, max: usize| {
            (!p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse::<u16>().ok())
                .flatten()
        };
        let class = u8::try_from(digits(class, 1)?).ok()?;
        if !matches!(class, 2 | 4 | 5) {
            return None;
        }
        Some(Self {
            class,
            subject: digits(subject, 3)?,
            detail: digits(detail, 3)?,
        })
    }
}

impl std::fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// What EHLO offered ([RFC 5321 §4.1.1.1](https://www.rfc-editor.org/rfc/rfc5321#section-4.1.1.1)):
/// each line after the first is a keyword and its parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Keyword (upper case) and parameters, in the server's order.
    pub entries: Vec<(String, Vec<String>)>,
}

impl Capabilities {
    /// The capabilities of an EHLO reply's lines (the first line is the greeting);
    /// lines that are not `keyword [params]` are left out.
    pub fn parse(lines: &[String]) -> Self {
        let entries = lines
            .iter()
            .skip(1)
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let keyword = words.next()?;
                if !keyword
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return None;
                }
                Some((
                    keyword.to_ascii_uppercase(),
                    words.map(str::to_owned).collect(),
                ))
            })
            .collect();
        Self { entries }
    }

    /// True when `keyword` is offered (case-insensitive).
    pub fn has(&self, keyword: &str) -> bool {
        self.entries
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(keyword))
    }

    /// The SASL mechanisms after `AUTH`, upper case.
    pub fn auth_mechanisms(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(k, _)| k == "AUTH")
            .flat_map(|(_, params)| params.iter().map(|p| p.to_ascii_uppercase()))
            .collect()
    }

    /// The largest message the server takes (`SIZE n`, RFC 1870), if it says; 0 means
    /// no limit and gives `None`.
    pub fn max_size(&self) -> Option<u64> {
        self.entries
            .iter()
            .find(|(k, _)| k == "SIZE")
            .and_then(|(_, p)| p.first()?.parse().ok())
            .filter(|n| *n > 0)
    }
}

impl Reply {
    /// The whole text, lines joined with a space.
    pub fn text(&self) -> String {
        self.lines.join(" ")
    }

    /// The enhanced status codes (`5.7.139`) in the reply, wherever they stand: some
    /// servers (Postfix in front of Dovecot) put the upstream code after their own.
    pub fn enhanced(&self) -> Vec<EnhancedCode> {
        self.lines
            .iter()
            .flat_map(|line| {
                line.split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == ':')
                    .filter_map(EnhancedCode::parse)
            })
            .collect()
    }

    /// [`Self::enhanced`] as text.
    pub fn enhanced_codes(&self) -> Vec<String> {
        self.enhanced().iter().map(ToString::to_string).collect()
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
            if text.contains("smtpclientauthentication is disabled") {
                return Meaning::SmtpAuthDisabledForTenant;
            }
            if text.contains("basic authentication is disabled")
                || text.contains("security defaults")
            {
                return Meaning::BasicAuthDisabled;
            }
            // "the user credentials were incorrect", "the request did not meet the
            // criteria to be authenticated successfully": 5.7.139 is Exchange Online's
            // code for every refused AUTH, not only for the switched-off ones.
            return Meaning::AuthenticationFailed;
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

    /// The fix when a password (`AUTH PLAIN` / `LOGIN`) was refused: the causes of a
    /// refused password, not a token's.
    pub fn password_fix(self) -> &'static str {
        match self {
            Meaning::AuthenticationFailed | Meaning::Rejected => PASSWORD_FIX,
            other => other.fix(),
        }
    }
}

/// Why a password sign-in is refused, most likely first.
pub const PASSWORD_FIX: &str = "check the login name and the password (`mailbridge account edit`); if the account uses two-step verification, the provider wants an app password instead of the account's own (Outlook.com, Gmail, iCloud, Yahoo); Exchange Online refuses passwords where Basic authentication (SMTP AUTH) is disabled for the tenant or the mailbox (`Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false`, if security defaults allow it) or the account needs MFA: sign the account in with OAuth2 instead (delegated or app-only)";

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
    fn exchange_s_5_7_139_variants_each_mean_their_own_cause() {
        let m = |text: &str| reply(535, text).meaning();
        assert_eq!(
            m(
                "5.7.139 Authentication unsuccessful, the user credentials were incorrect. [SN4PR0501CA0123]"
            ),
            Meaning::AuthenticationFailed
        );
        assert_eq!(
            m(
                "5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully. Contact your administrator. [h]"
            ),
            Meaning::AuthenticationFailed
        );
        assert_eq!(
            m("5.7.139 Authentication unsuccessful, basic authentication is disabled. [h]"),
            Meaning::BasicAuthDisabled
        );
        assert_eq!(
            m(
                "5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy. Contact your administrator. [h]"
            ),
            Meaning::BasicAuthDisabled
        );
        assert_eq!(
            m(
                "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [h]"
            ),
            Meaning::SmtpAuthDisabledForTenant
        );
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

    #[test]
    fn whole_replies_within_limits() {
        let limits = ReplyLimits::default();
        let (r, used) = parse(
            b"250-mail.contoso.com\r\n250-SIZE 35882577\r\n250 AUTH LOGIN XOAUTH2\r\n220 next",
            &limits,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.code, 250);
        assert_eq!(r.lines.len(), 3);
        assert_eq!(used, 65);
        assert_eq!(parse(b"250-a\r\n250-b", &limits).unwrap(), None);
        assert_eq!(
            parse(b"250-a\r\n550 b\r\n", &limits).unwrap_err(),
            ReplyError::CodeChanged {
                first: 250,
                then: 550
            }
        );
        let small = ReplyLimits {
            max_line: 10,
            max_lines: 3,
            max_bytes: 25,
        };
        assert_eq!(
            parse(b"250-a\r\n250-b\r\n250-c\r\n250 d\r\n", &small).unwrap_err(),
            ReplyError::TooManyLines { max: 3 }
        );
        assert_eq!(
            parse(b"250 0123456789\r\n", &small).unwrap_err(),
            ReplyError::LineTooLong { max: 10 }
        );
        assert_eq!(
            parse(b"250-012345\r\n250-012345\r\n250 012345\r\n", &small).unwrap_err(),
            ReplyError::TooManyBytes { max: 25 }
        );
        assert_eq!(
            parse(&[b'2'; 20], &small).unwrap_err(),
            ReplyError::LineTooLong { max: 10 }
        );
    }

    #[test]
    fn server_text_loses_its_control_characters() {
        let (r, _) = parse(
            b"535 5.7.8 \x1b[31mbad\x07 \xc2\x9b credentials\r\n",
            &ReplyLimits::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.text(), "5.7.8 [31mbad  credentials");
        assert_eq!(r.enhanced_codes(), ["5.7.8"]);
    }

    #[test]
    fn enhanced_codes_and_capabilities() {
        assert_eq!(
            EnhancedCode::parse("5.7.139"),
            Some(EnhancedCode {
                class: 5,
                subject: 7,
                detail: 139
            })
        );
        for bad in [
            "", "5.7", "3.1.1", "5.7.1000", "5..1", "5.7.1.2", "x.y.z", "+5.7.1",
        ] {
            assert_eq!(EnhancedCode::parse(bad), None, "{bad}");
        }
        let caps = Capabilities::parse(&[
            "smtp.office365.com Hello".to_owned(),
            "SIZE 157286400".to_owned(),
            "PIPELINING".to_owned(),
            "auth login xoauth2".to_owned(),
            "AUTH=LOGIN".to_owned(),
            "8BITMIME".to_owned(),
        ]);
        assert!(caps.has("pipelining") && caps.has("8BITMIME") && !caps.has("STARTTLS"));
        assert_eq!(caps.auth_mechanisms(), ["LOGIN", "XOAUTH2"]);
        assert_eq!(caps.max_size(), Some(157_286_400));
    }

    fn smtp_ish() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just(b"250".to_vec()),
            Just(b"535".to_vec()),
            Just(b"-".to_vec()),
            Just(b" ".to_vec()),
            Just(b"5.7.139 ".to_vec()),
            Just(b"AUTH XOAUTH2".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\x1b[0m".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
    }

    /// Found by the property below: bytes that are not UTF-8 are held as U+FFFD (three
    /// bytes each), so the byte bound counts what is held, not what came.
    #[test]
    fn bytes_that_are_not_utf8_count_as_held() {
        let input = b"250  \x80\x80\x80\x80\x80 \x80250\x1b[0m\r\n";
        let limits = ReplyLimits {
            max_line: 64,
            max_lines: 1,
            max_bytes: 19,
        };
        assert!(matches!(
            parse(input, &limits),
            Err(ReplyError::TooManyBytes { max: 19 })
        ));
        let roomy = ReplyLimits {
            max_bytes: 64,
            ..limits
        };
        let (reply, _) = parse(input, &roomy).unwrap().unwrap();
        assert!(reply.lines.iter().map(String::len).sum::<usize>() <= 64);
    }

    proptest::proptest! {
        /// Any bytes: a result, within the bounds, never more bytes used than given;
        /// and line by line gives what the whole buffer gives.
        #[test]
        fn replies_are_bounded_and_parsed_alike_by_line_and_whole(
            input in smtp_ish(),
            max_lines in 1usize..8,
            max_bytes in 0usize..200,
        ) {
            let limits = ReplyLimits { max_line: 64, max_lines, max_bytes };
            let whole = parse(&input, &limits);
            if let Ok(Some((reply, used))) = &whole {
                proptest::prop_assert!(*used <= input.len());
                proptest::prop_assert!(reply.lines.len() <= max_lines);
                proptest::prop_assert!(reply.lines.iter().map(String::len).sum::<usize>() <= max_bytes);
                proptest::prop_assert!(!reply.text().chars().any(char::is_control));
            }
            let mut parser = ReplyParser::new(limits);
            let mut by_line = Ok(None);
            let mut used = 0;
            for line in input.split_inclusive(|b| *b == b'\n') {
                let Some(body) = line.strip_suffix(b"\n") else { break };
                if body.len() > limits.max_line + 1 {
                    by_line = Err(ReplyError::LineTooLong { max: limits.max_line });
                    break;
                }
                used += line.len();
                match parser.push_line(body.strip_suffix(b"\r").unwrap_or(body)) {
                    Ok(Some(r)) => { by_line = Ok(Some((r, used))); break; }
                    Ok(None) => {}
                    Err(e) => { by_line = Err(e); break; }
                }
            }
            if !matches!(by_line, Err(ReplyError::LineTooLong { .. })) && !matches!(whole, Err(ReplyError::LineTooLong { .. })) {
                proptest::prop_assert_eq!(whole, by_line);
            }
        }

        #[test]
        fn arbitrary_lines_never_panic(line in ".{0,600}") {
            let _ = parse_line(&line);
            let r = Reply { code: 550, lines: vec![line] };
            let _ = r.meaning();
        }
    }
}
