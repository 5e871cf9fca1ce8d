//! POP3 responses ([RFC 1939](https://www.rfc-editor.org/rfc/rfc1939)), parsed as pure
//! functions over bytes with explicit limits, apart from any I/O:
//!
//! - [`Status`]: a status line (`+OK` / `-ERR`, RFC 2449 response codes, a SASL `+`
//!   continuation), at most [`MAX_LINE`] bytes, its text made printable;
//! - [`Listing`]: a multi-line `UIDL` or `LIST` answer ([RFC 1939 §7] and §5), line
//!   by line up to its terminating `.`, at most `max_items` entries, message numbers
//!   never repeated;
//! - [`Body`]: a multi-line message (`RETR`, `TOP`) decoded as a byte stream: the
//!   dot stuffing removed (RFC 1939 §3), bare LF made CR LF, the terminating `.`
//!   found across chunk boundaries, and at most `max_size` bytes out. Message lines
//!   have no length limit: only the message's size is bounded.
//!
//! Nothing here panics on any input, and nothing allocates more than it was given
//! (a [`Body`] writes at most twice its input, a [`Listing`] holds at most
//! `max_items` entries).
//!
//! [RFC 1939 §7]: https://www.rfc-editor.org/rfc/rfc1939#section-7

use mailbridge_types::ErrorClass;

/// Longest status or listing line accepted (RFC 1939 says 512; servers send longer
/// texts). Message bodies are not line-bounded.
pub const MAX_LINE: usize = 8192;
/// Longest unique id (RFC 1939 §7: 1 to 70 characters 0x21-0x7E).
pub const MAX_UID: usize = 70;

/// A server's text as it may be shown to a person: control characters (escape
/// sequences, bell, backspace, C1) and bidirectional overrides removed, tabs made
/// spaces, at most `max` characters.
pub fn printable(text: &str, max: usize) -> String {
    mailbridge_types::text::without_controls(text, max)
}

/// A status line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub ok: bool,
    /// A SASL continuation (`+ …`) rather than `+OK`.
    pub continuation: bool,
    /// The text after `+OK ` / `-ERR `, made [`printable`].
    pub text: String,
}

/// A line that is not a POP3 status line (shown escaped, at most 200 characters).
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
            text: printable(rest.trim_start(), MAX_LINE),
        })
    }

    /// Parses a status line given as bytes (without its CR LF; invalid UTF-8 is
    /// replaced), refusing one longer than [`MAX_LINE`].
    pub fn parse_bytes(line: &[u8]) -> Result<Self, StatusError> {
        if line.len() > MAX_LINE {
            return Err(StatusError(format!(
                "a line of {} bytes (at most {MAX_LINE})",
                line.len()
            )));
        }
        Self::parse(&String::from_utf8_lossy(line))
    }

    /// The RFC 2449 response code (`AUTH`, `SYS/TEMP`, `IN-USE`, ...), if any.
    pub fn code(&self) -> Option<&str> {
        let rest = self.text.strip_prefix('[')?;
        rest.split_once(']').map(|(code, _)| code)
    }

    /// The size a `+OK` to `RETR` announces (`+OK 1234 octets`), if it does. A hint
    /// only: the message is counted as it arrives.
    pub fn announced_size(&self) -> Option<u64> {
        self.text.split_whitespace().next()?.parse().ok()
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
        if lower.contains("authentication failure")
            || lower.contains("authentication failed")
            || lower.contains("logon failure")
        {
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

    /// The fix when a password (`USER`/`PASS`) was refused: the causes of a refused
    /// password, not a token's.
    pub fn password_fix(self) -> &'static str {
        match self {
            Meaning::AuthenticationFailed | Meaning::Rejected => PASSWORD_FIX,
            other => other.fix(),
        }
    }
}

/// Why a password sign-in is refused, most likely first.
pub const PASSWORD_FIX: &str = "check the login name and the password (`mailbridge account edit`); if the account uses two-step verification, the provider wants an app password instead of the account's own (Outlook.com, Gmail, iCloud, Yahoo); Exchange Online refuses every password since Basic authentication was turned off: sign the account in with OAuth2 instead (delegated or app-only)";

/// Parses one `UIDL` listing line: `<msg number> <unique id>`.
pub fn parse_uidl_line(line: &str) -> Option<(u32, String)> {
    UidlEntry::parse(line.as_bytes()).map(|e| (e.number, e.uid))
}

/// One `UIDL` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidlEntry {
    pub number: u32,
    /// 1 to [`MAX_UID`] characters 0x21-0x7E.
    pub uid: String,
}

/// One `LIST` entry: a message number and its size as the server announces it (a
/// hint: never trusted for anything but refusing early).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListEntry {
    pub number: u32,
    pub size: u64,
}

/// A line of a multi-line listing.
pub trait ListingLine: Sized {
    /// The command it answers (for messages).
    const COMMAND: &'static str;
    /// Parses one line (without CR LF); `None` when it is not one.
    fn parse(line: &[u8]) -> Option<Self>;
    /// Its message number.
    fn number(&self) -> u32;
}

/// Two words separated by spaces, nothing else (RFC 1939 allows only one space;
/// servers pad).
fn two_words(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut words = line
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|w| !w.is_empty());
    let first = words.next()?;
    let second = words.next()?;
    words.next().is_none().then_some((first, second))
}

fn number(word: &[u8]) -> Option<u32> {
    if word.is_empty() || word.len() > 10 || !word.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(word).ok()?.parse().ok()
}

impl ListingLine for UidlEntry {
    const COMMAND: &'static str = "UIDL";

    fn parse(line: &[u8]) -> Option<Self> {
        let (n, uid) = two_words(line)?;
        let number = number(n)?;
        if uid.len() > MAX_UID || !uid.iter().all(|b| (0x21..=0x7e).contains(b)) {
            return None;
        }
        Some(UidlEntry {
            number,
            uid: String::from_utf8(uid.to_vec()).ok()?,
        })
    }

    fn number(&self) -> u32 {
        self.number
    }
}

impl ListingLine for ListEntry {
    const COMMAND: &'static str = "LIST";

    fn parse(line: &[u8]) -> Option<Self> {
        let (n, size) = two_words(line)?;
        if size.is_empty() || size.len() > 20 || !size.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(ListEntry {
            number: number(n)?,
            size: std::str::from_utf8(size).ok()?.parse().ok()?,
        })
    }

    fn number(&self) -> u32 {
        self.number
    }
}

/// Why a listing was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ListingError {
    /// More entries than the limit.
    #[error("more than {max} entries")]
    TooMany { max: u64 },
    /// A line that is not an entry (shown escaped, at most 100 characters).
    #[error("bad listing line {0:?}")]
    BadLine(String),
    /// A line longer than [`MAX_LINE`].
    #[error("a listing line longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// The same message number twice.
    #[error("message number {0} listed twice")]
    DuplicateNumber(u32),
    /// The input ended before the terminating `.`.
    #[error("the listing ended without its final \".\"")]
    Incomplete,
}

/// A multi-line listing (`UIDL`, `LIST`) read line by line: at most `max_items`
/// entries, each message number once.
#[derive(Debug)]
pub struct Listing<T> {
    items: Vec<T>,
    max_items: u64,
    done: bool,
}

impl<T: ListingLine> Listing<T> {
    /// An empty listing that takes at most `max_items` entries.
    pub fn new(max_items: u64) -> Self {
        Self {
            items: Vec::new(),
            max_items,
            done: false,
        }
    }

    /// Takes one line (without its CR LF). `Ok(true)` at the terminating `.`; lines
    /// after it are refused.
    pub fn push_line(&mut self, line: &[u8]) -> Result<bool, ListingError> {
        if self.done {
            return Err(ListingError::BadLine(escaped(line)));
        }
        if line.len() > MAX_LINE {
            return Err(ListingError::LineTooLong);
        }
        if line == b"." {
            self.done = true;
            let mut numbers: Vec<u32> = self.items.iter().map(ListingLine::number).collect();
            numbers.sort_unstable();
            if let Some(w) = numbers.windows(2).find(|w| w.first() == w.get(1)) {
                return Err(ListingError::DuplicateNumber(
                    w.first().copied().unwrap_or_default(),
                ));
            }
            return Ok(true);
        }
        if self.items.len() as u64 >= self.max_items {
            return Err(ListingError::TooMany {
                max: self.max_items,
            });
        }
        let entry = T::parse(line).ok_or_else(|| ListingError::BadLine(escaped(line)))?;
        self.items.push(entry);
        Ok(false)
    }

    /// True once the terminating `.` was taken.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The entries so far, in the server's order.
    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

/// Parses a whole multi-line listing (after its `+OK` line) from `input`: the
/// entries and the bytes used (up to and including the `.` line).
pub fn parse_listing<T: ListingLine>(
    input: &[u8],
    max_items: u64,
) -> Result<(Vec<T>, usize), ListingError> {
    let mut listing = Listing::new(max_items);
    let mut used = 0;
    while let Some(rest) = input.get(used..) {
        let Some(lf) = rest.iter().position(|b| *b == b'\n') else {
            if rest.len() > MAX_LINE + 1 {
                return Err(ListingError::LineTooLong);
            }
            break;
        };
        let line = rest.get(..lf).unwrap_or_default();
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        used += lf + 1;
        if listing.push_line(line)? {
            return Ok((listing.into_items(), used));
        }
    }
    Err(ListingError::Incomplete)
}

fn escaped(line: &[u8]) -> String {
    String::from_utf8_lossy(line).chars().take(100).collect()
}

/// A message longer than the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the message is larger than {max} bytes")]
pub struct TooLarge {
    pub max: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    /// At the start of a line.
    LineStart,
    /// Inside a line.
    Mid,
    /// Inside a line, right after a CR.
    AfterCr,
    /// A line began with `.` (taken away).
    Dot,
    /// A line began with `.` and a CR.
    DotCr,
    /// The terminating `.` line was read.
    Done,
}

/// A multi-line message (`RETR`, `TOP`) decoded as it arrives ([RFC 1939 §3]): a
/// line starting with `.` loses that dot, a line of one `.` ends the message, a bare
/// LF becomes CR LF (a CR a line ends with is content: `text\r\r\n` keeps one), and
/// more than `max_size` bytes out is an error. Lines may be of any length.
///
/// [RFC 1939 §3]: https://www.rfc-editor.org/rfc/rfc1939#section-3
#[derive(Debug, Clone)]
pub struct Body {
    state: BodyState,
    size: u64,
    max_size: u64,
}

impl Body {
    /// A message of at most `max_size` bytes (after unstuffing).
    pub fn new(max_size: u64) -> Self {
        Self {
            state: BodyState::LineStart,
            size: 0,
            max_size,
        }
    }

    /// Decodes what it can of `input` into `out` (appended; at most twice
    /// `input.len()` bytes): the bytes of `input` used, all of them unless the
    /// message ended inside it. Past the limit nothing more is appended and the
    /// error says so.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, TooLarge> {
        let start = out.len();
        let mut used = 0;
        while let Some(rest) = input.get(used..) {
            if rest.is_empty() || self.state == BodyState::Done {
                break;
            }
            if self.state == BodyState::Mid {
                // Fast path: copy up to the next CR or LF.
                let run = rest
                    .iter()
                    .position(|b| *b == b'\r' || *b == b'\n')
                    .unwrap_or(rest.len());
                if run > 0 {
                    out.extend_from_slice(rest.get(..run).unwrap_or_default());
                    used += run;
                    continue;
                }
            }
            let Some(&b) = rest.first() else { break };
            used += 1;
            self.state = match (self.state, b) {
                (BodyState::LineStart, b'.') => BodyState::Dot,
                (BodyState::Dot | BodyState::DotCr, b'\n') => BodyState::Done,
                (BodyState::Dot, b'\r') => BodyState::DotCr,
                (BodyState::DotCr, b) => {
                    // ".\r" then more: the dot goes, the CR is content.
                    out.push(b'\r');
                    after_cr(b, out)
                }
                (BodyState::AfterCr, b) => after_cr(b, out),
                (_, b'\n') => {
                    out.extend_from_slice(b"\r\n");
                    BodyState::LineStart
                }
                (_, b'\r') => {
                    out.push(b'\r');
                    BodyState::AfterCr
                }
                (_, b) => {
                    out.push(b);
                    BodyState::Mid
                }
            };
        }
        self.size += (out.len() - start) as u64;
        if self.size > self.max_size {
            out.truncate(start);
            return Err(TooLarge { max: self.max_size });
        }
        Ok(used)
    }

    /// True once the terminating `.` was read.
    pub fn is_done(&self) -> bool {
        self.state == BodyState::Done
    }

    /// Bytes decoded so far.
    pub fn size(&self) -> u64 {
        self.size
    }
}

fn after_cr(b: u8, out: &mut Vec<u8>) -> BodyState {
    match b {
        b'\n' => {
            out.push(b'\n');
            BodyState::LineStart
        }
        b'\r' => {
            out.push(b'\r');
            BodyState::AfterCr
        }
        b => {
            out.push(b);
            BodyState::Mid
        }
    }
}

/// Decodes a whole multi-line message (after its `+OK` line) from `input`: the
/// message, the bytes used, and whether its terminating `.` was found.
pub fn decode_body(input: &[u8], max_size: u64) -> Result<(Vec<u8>, usize, bool), TooLarge> {
    let mut body = Body::new(max_size);
    let mut out = Vec::new();
    let used = body.decode(input, &mut out)?;
    Ok((out, used, body.is_done()))
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
        assert_eq!(
            Status::parse("+OK 1234 octets").unwrap().announced_size(),
            Some(1234)
        );
        assert!(Status::parse_bytes(&[b'+'; MAX_LINE + 1]).is_err());
    }

    #[test]
    fn server_text_loses_its_control_characters() {
        let s = Status::parse("-ERR \u{1b}[2J\u{1b}]0;owned\u{7}bad\u{8}\u{202e} password\tnow")
            .unwrap();
        assert_eq!(s.text, "[2J]0;ownedbad password now");
        assert!(!s.text.chars().any(char::is_control));
    }

    #[test]
    fn uidl_and_list_lines() {
        assert_eq!(
            parse_uidl_line("1 00000001575d1b3f"),
            Some((1, "00000001575d1b3f".into()))
        );
        for bad in ["", "x y", "1", "1 a b", "1 \u{7f}", "99999999999 a", "-1 a"] {
            assert!(parse_uidl_line(bad).is_none(), "{bad}");
        }
        assert!(UidlEntry::parse(format!("1 {}", "a".repeat(71)).as_bytes()).is_none());
        assert_eq!(
            ListEntry::parse(b"2 18446744073709551615"),
            Some(ListEntry {
                number: 2,
                size: u64::MAX
            })
        );
        assert!(ListEntry::parse(b"2 18446744073709551616").is_none());
        assert!(ListEntry::parse(b"2 12k").is_none());
    }

    #[test]
    fn listings_end_at_the_dot_and_are_bounded() {
        let (items, used) = parse_listing::<UidlEntry>(b"1 a\r\n2 b\r\n.\r\n+OK next", 10).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(used, 13);
        assert_eq!(
            parse_listing::<UidlEntry>(b"1 a\r\n2 b\r\n3 c\r\n.\r\n", 2).unwrap_err(),
            ListingError::TooMany { max: 2 }
        );
        assert_eq!(
            parse_listing::<UidlEntry>(b"1 a\r\n1 b\r\n.\r\n", 10).unwrap_err(),
            ListingError::DuplicateNumber(1)
        );
        assert_eq!(
            parse_listing::<ListEntry>(b"1 10\r\n", 10).unwrap_err(),
            ListingError::Incomplete
        );
        assert!(matches!(
            parse_listing::<ListEntry>(b"1 x\r\n.\r\n", 10).unwrap_err(),
            ListingError::BadLine(_)
        ));
    }

    fn decode_in(chunks: &[&[u8]], max: u64) -> (Result<Vec<u8>, TooLarge>, bool) {
        let mut body = Body::new(max);
        let mut out = Vec::new();
        for c in chunks {
            if let Err(e) = body.decode(c, &mut out) {
                return (Err(e), false);
            }
        }
        (Ok(out), body.is_done())
    }

    #[test]
    fn bodies_are_unstuffed_across_chunks() {
        let (out, done) = decode_in(&[b"a\r\n..b\r\n.", b"\r\n"], 100);
        assert_eq!(out.unwrap(), b"a\r\n.b\r\n");
        assert!(done);
        let (out, done) = decode_in(&[b"x\r", b"\r\n.\r", b"\r\n.\r\n"], 100);
        assert_eq!(
            out.unwrap(),
            b"x\r\r\n\r\r\n",
            "\".\\r\\r\\n\" is a line \"\\r\""
        );
        assert!(done);
        let (out, done) = decode_in(&[b"bare\nlf\n.\n"], 100);
        assert_eq!(out.unwrap(), b"bare\r\nlf\r\n");
        assert!(done);
        let (out, done) = decode_in(&[b"cut off"], 100);
        assert_eq!(out.unwrap(), b"cut off");
        assert!(!done);
        let (_, used, done) = decode_body(b"m\r\n.\r\n+OK next", 100).unwrap();
        assert_eq!(used, 6);
        assert!(done);
    }

    #[test]
    fn long_lines_are_fine_and_size_is_bounded() {
        let line = vec![b'x'; 100_000];
        let (out, done) = decode_in(&[&line, b"\r\n.\r\n"], 200_000);
        assert_eq!(out.unwrap().len(), 100_002);
        assert!(done);
        let (out, _) = decode_in(&[&line, b"\r\n.\r\n"], 100_001);
        assert_eq!(out.unwrap_err(), TooLarge { max: 100_001 });
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_lines_never_panic(line in ".{0,300}") {
            if let Ok(s) = Status::parse(&line) { let _ = (s.code(), s.meaning()); }
            let _ = parse_uidl_line(&line);
        }
    }
}
