//! IMAP responses ([RFC 3501 §7](https://www.rfc-editor.org/rfc/rfc3501#section-7)),
//! parsed by pure functions over bytes with explicit limits: no I/O, no panic and no
//! allocation a server's announcement decides, whatever the bytes. The client
//! ([`crate::client`]) reads lines and literals and asks these what they mean.
//!
//! - [`split_line`]: one line out of a buffer, at most `max_line` bytes;
//! - [`literal`]: the literal announced at a line's end (`{123}`, `{123+}`);
//! - [`completion`]: a tagged status (`tag OK|NO|BAD text`);
//! - [`is_continuation`], [`is_bye`], [`greeting`];
//! - [`capabilities`]: `* CAPABILITY ...` or `* OK [CAPABILITY ...]`;
//! - [`SelectData`]: `EXISTS`, `UIDVALIDITY`, `UIDNEXT` of a `SELECT`;
//! - [`search`] (`* SEARCH 1 2 3`) and [`esearch`] (RFC 4731 `* ESEARCH (TAG "a")
//!   UID ALL 1:3,7`), both bounded by a number of items;
//! - [`FetchItems`]: what one `* n FETCH (...)` response says between its literals
//!   (the UID, and which section a literal is);
//! - [`Meaning`]: what a refusal means, and the admin's fix;
//! - [`printable`]: server text made safe for an error message or a terminal.

use mailbridge_types::ErrorClass;

/// Longest response line accepted (without literals).
pub const MAX_LINE: usize = 64 * 1024;
/// Longest line of a search answer: an `ESEARCH` sequence set of a fragmented folder
/// can be long (one million scattered UIDs are about 11 MB).
pub const MAX_SEARCH_LINE: usize = 16 * 1024 * 1024;
/// Largest literal accepted inside ordinary responses (not message bodies, which
/// are streamed).
pub const MAX_INLINE_LITERAL: u64 = 1024 * 1024;
/// Most bytes of untagged responses (lines and inline literals, not streamed message
/// bodies) one command may receive: a server that keeps talking is cut off.
pub const MAX_UNTAGGED_BYTES: u64 = 64 * 1024 * 1024;
/// Most untagged lines one command may receive.
pub const MAX_UNTAGGED_LINES: u64 = 1_000_000;
/// Most continuation requests (`+`) one command may receive when it has nothing more
/// to send.
pub const MAX_CONTINUATIONS: u32 = 8;
/// Most capabilities kept from one `CAPABILITY` answer.
pub const MAX_CAPABILITIES: usize = 1_000;

/// Why bytes are not a response this parser accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A line longer than the limit.
    #[error("a line longer than {0} bytes")]
    LineTooLong(usize),
    /// A listing with more items than the limit.
    #[error("more than {0} items in one answer")]
    TooManyItems(u64),
    /// Not the syntax expected.
    #[error("{0}")]
    Syntax(&'static str),
}

/// The first line of `buf` without its line end (LF, and one CR before it), and how
/// many bytes it took with the line end; `Ok(None)` when no line end is in `buf` yet
/// (and the line so far is within `max_line`).
pub fn split_line(buf: &[u8], max_line: usize) -> Result<Option<(&[u8], usize)>, ParseError> {
    let window = buf.get(..max_line.saturating_add(2)).unwrap_or(buf);
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() > max_line.saturating_add(1) {
            Err(ParseError::LineTooLong(max_line))
        } else {
            Ok(None)
        };
    };
    let line = window.get(..lf).unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > max_line {
        return Err(ParseError::LineTooLong(max_line));
    }
    Ok(Some((line, lf + 1)))
}

/// A literal announced at the end of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Literal {
    /// Its size; a size past `u64` is `u64::MAX`, so that it is refused as too large
    /// rather than its bytes taken for response lines.
    pub size: u64,
    /// `{n+}` (LITERAL+): the sender does not wait for a continuation.
    pub non_synchronizing: bool,
}

/// The literal announced at the end of `line` (`{123}` or `{123+}`), if any.
pub fn literal(line: &[u8]) -> Option<Literal> {
    let rest = line.strip_suffix(b"}")?;
    let open = rest.iter().rposition(|&b| b == b'{')?;
    let digits = rest.get(open + 1..)?;
    let (digits, non_synchronizing) = match digits.strip_suffix(b"+") {
        Some(d) => (d, true),
        None => (digits, false),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let size = digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    });
    Some(Literal {
        size: size.unwrap_or(u64::MAX),
        non_synchronizing,
    })
}

/// The text of `line` before the literal it announces (or all of it).
pub fn before_literal(line: &[u8]) -> &[u8] {
    if literal(line).is_none() {
        return line;
    }
    line.iter()
        .rposition(|&b| b == b'{')
        .and_then(|open| line.get(..open))
        .unwrap_or(line)
}

/// A tagged completion: `tag OK|NO|BAD text`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion<'a> {
    pub status: CompletionStatus,
    pub text: &'a [u8],
}

/// The completion status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionStatus {
    Ok,
    No,
    Bad,
}

/// Parses `tag STATUS text` for `tag`; `None` when the line is not that tag's completion.
pub fn completion<'a>(line: &'a [u8], tag: &[u8]) -> Option<Completion<'a>> {
    let rest = line.strip_prefix(tag)?.strip_prefix(b" ")?;
    let (word, text) = split_word(rest);
    let status = if word.eq_ignore_ascii_case(b"OK") {
        CompletionStatus::Ok
    } else if word.eq_ignore_ascii_case(b"NO") {
        CompletionStatus::No
    } else if word.eq_ignore_ascii_case(b"BAD") {
        CompletionStatus::Bad
    } else {
        return None;
    };
    Some(Completion { status, text })
}

/// True for a continuation request (`+ text`).
pub fn is_continuation(line: &[u8]) -> bool {
    line.first() == Some(&b'+')
}

/// True for an untagged `BYE` (the server is closing the connection).
pub fn is_bye(line: &[u8]) -> bool {
    untagged_word(line).is_some_and(|(w, _)| w.eq_ignore_ascii_case(b"BYE"))
}

/// What a server greeting says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Greeting {
    /// `* OK`: sign in next.
    Ok,
    /// `* PREAUTH`: already signed in.
    PreAuth,
    /// `* BYE`: the server refuses the connection.
    Bye,
}

/// The greeting on `line`, or `None` when it is not one.
pub fn greeting(line: &[u8]) -> Option<Greeting> {
    let (word, _) = untagged_word(line)?;
    if word.eq_ignore_ascii_case(b"OK") {
        Some(Greeting::Ok)
    } else if word.eq_ignore_ascii_case(b"PREAUTH") {
        Some(Greeting::PreAuth)
    } else if word.eq_ignore_ascii_case(b"BYE") {
        Some(Greeting::Bye)
    } else {
        None
    }
}

/// The capabilities of a `* CAPABILITY a b c` line or of a `[CAPABILITY a b c]`
/// response code (in a greeting or a completion text), at most [`MAX_CAPABILITIES`].
pub fn capabilities(line: &[u8]) -> Option<Vec<String>> {
    let list = match untagged_word(line) {
        Some((w, rest)) if w.eq_ignore_ascii_case(b"CAPABILITY") => rest,
        _ => response_code(line, b"CAPABILITY")?,
    };
    Some(
        list.split(|&b| b == b' ')
            .filter(|w| !w.is_empty())
            .take(MAX_CAPABILITIES)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect(),
    )
}

/// The value of a bracketed response code such as `[UIDVALIDITY 1234]` in `text`.
pub fn response_code<'a>(text: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let start = text.iter().position(|&b| b == b'[')?;
    let inner = text.get(start + 1..)?;
    let end = inner.iter().position(|&b| b == b']')?;
    let inner = inner.get(..end)?;
    let (code, value) = split_word(inner);
    code.eq_ignore_ascii_case(name).then_some(value)
}

/// The number of an untagged `* N WORD` response (`* 23 EXISTS`).
pub fn untagged_number(line: &[u8], word: &[u8]) -> Option<u32> {
    let (n, rest) = untagged_word(line)?;
    let (w, _) = split_word(rest);
    if w.eq_ignore_ascii_case(word) {
        number(n)
    } else {
        None
    }
}

/// What a `SELECT` reported: the folder's size and identity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SelectData {
    /// `* n EXISTS`.
    pub exists: u32,
    /// `[UIDVALIDITY n]` (0 when not sent).
    pub uid_validity: u32,
    /// `[UIDNEXT n]` (0 when not sent).
    pub uid_next: u32,
}

impl SelectData {
    /// Takes what `line` (an untagged response or the completion's text) says.
    pub fn update(&mut self, line: &[u8]) {
        if let Some(v) = response_code(line, b"UIDVALIDITY").and_then(number) {
            self.uid_validity = v;
        }
        if let Some(v) = response_code(line, b"UIDNEXT").and_then(number) {
            self.uid_next = v;
        }
        if let Some(n) = untagged_number(line, b"EXISTS") {
            self.exists = n;
        }
    }
}

/// The numbers of a `* SEARCH 1 2 3` line appended to `out`; `Ok(false)` when the
/// line is not a `SEARCH` response. More than `max_items` in `out` is an error.
pub fn search(line: &[u8], max_items: u64, out: &mut Vec<u32>) -> Result<bool, ParseError> {
    let Some((word, rest)) = untagged_word(line) else {
        return Ok(false);
    };
    if !word.eq_ignore_ascii_case(b"SEARCH") {
        return Ok(false);
    }
    for n in rest.split(|&b| b == b' ').filter(|w| !w.is_empty()) {
        if n.first() == Some(&b'(') {
            // `(MODSEQ n)` (RFC 7162) ends the list.
            break;
        }
        let n = number(n).ok_or(ParseError::Syntax("a SEARCH answer with a non-number"))?;
        push_item(out, n, max_items)?;
    }
    Ok(true)
}

/// What an `ESEARCH` response ([RFC 4731](https://www.rfc-editor.org/rfc/rfc4731))
/// said, besides the `ALL` set appended to the caller's list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Esearch {
    /// The tag of the command it answers (`(TAG "m5")`), if given.
    pub tag: Option<Vec<u8>>,
    /// `UID`: the numbers are UIDs.
    pub uid: bool,
    /// `COUNT n`.
    pub count: Option<u32>,
    /// `MIN n`.
    pub min: Option<u32>,
    /// `MAX n`.
    pub max: Option<u32>,
}

/// Parses `* ESEARCH [(TAG "t")] [UID] (name value)*`, appending every number of the
/// `ALL` sequence set to `out` (ranges expanded, at most `max_items` in `out`);
/// `Ok(None)` when the line is not an `ESEARCH` response.
pub fn esearch(
    line: &[u8],
    max_items: u64,
    out: &mut Vec<u32>,
) -> Result<Option<Esearch>, ParseError> {
    let Some((word, mut rest)) = untagged_word(line) else {
        return Ok(None);
    };
    if !word.eq_ignore_ascii_case(b"ESEARCH") {
        return Ok(None);
    }
    let mut answer = Esearch::default();
    if let Some(inner) = rest.strip_prefix(b"(") {
        let close = inner
            .iter()
            .position(|&b| b == b')')
            .ok_or(ParseError::Syntax("an ESEARCH correlator without its end"))?;
        let (name, value) = split_word(inner.get(..close).unwrap_or_default());
        if name.eq_ignore_ascii_case(b"TAG") {
            let value = value
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(value);
            answer.tag = Some(value.to_vec());
        }
        rest = inner.get(close + 1..).unwrap_or_default();
    }
    let mut words = rest.split(|&b| b == b' ').filter(|w| !w.is_empty());
    while let Some(name) = words.next() {
        if name.eq_ignore_ascii_case(b"UID") {
            answer.uid = true;
            continue;
        }
        let value = words
            .next()
            .ok_or(ParseError::Syntax("an ESEARCH item without its value"))?;
        if name.eq_ignore_ascii_case(b"ALL") {
            sequence_set(value, max_items, out)?;
        } else if name.eq_ignore_ascii_case(b"COUNT") {
            answer.count = number(value);
        } else if name.eq_ignore_ascii_case(b"MIN") {
            answer.min = number(value);
        } else if name.eq_ignore_ascii_case(b"MAX") {
            answer.max = number(value);
        }
        // Other items (MODSEQ, PARTIAL, ...) are not asked for; a parenthesised value
        // is skipped as words, which is harmless.
    }
    Ok(Some(answer))
}

/// Appends the numbers of a sequence set (`1:3,7,9:8`) to `out`, at most `max_items`
/// in `out`. `*` has no meaning in an answer and is refused.
pub fn sequence_set(set: &[u8], max_items: u64, out: &mut Vec<u32>) -> Result<(), ParseError> {
    for part in set.split(|&b| b == b',') {
        let (a, b) = match part.iter().position(|&c| c == b':') {
            Some(colon) => (
                part.get(..colon).unwrap_or_default(),
                part.get(colon + 1..).unwrap_or_default(),
            ),
            None => (part, part),
        };
        let bad = ParseError::Syntax("a sequence set with a non-number");
        let (a, b) = (number(a).ok_or(bad.clone())?, number(b).ok_or(bad)?);
        let (low, high) = (a.min(b), a.max(b));
        // Checked before expanding: `1:4294967295` must not loop four billion times.
        let room = max_items.saturating_sub(out.len() as u64);
        if u64::from(high - low) >= room {
            return Err(ParseError::TooManyItems(max_items));
        }
        out.extend(low..=high);
    }
    Ok(())
}

/// What one `FETCH` response says outside its literals.
///
/// A response arrives as segments: the text up to a literal, the literal, the text up
/// to the next literal, and so on. [`FetchItems::feed`] takes each segment (without
/// the literals, which the client streams or skips) and tells what the literal
/// announced at its end is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchItems {
    /// The message sequence number (`* n FETCH`).
    pub seq: u32,
    /// The `UID` item, once seen.
    pub uid: Option<u32>,
    /// The first segment was taken (`* n FETCH (` is behind).
    started: bool,
    /// Parenthesis depth at the end of the text so far (1: among the items).
    depth: u32,
    /// The last atom at depth 1 (an item name), upper case, at most 64 bytes (kept
    /// inline: no allocation per message).
    last_name: Name,
    /// The atom before `last_name`'s value was `UID`: the next number is the UID.
    want_uid: bool,
    /// Bytes of text taken so far.
    text: usize,
}

/// An item name, upper case, its first 64 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Name {
    bytes: [u8; 64],
    len: usize,
}

impl Default for Name {
    fn default() -> Self {
        Self {
            bytes: [0; 64],
            len: 0,
        }
    }
}

impl Name {
    fn of(atom: &[u8]) -> Self {
        let mut name = Self::default();
        for (slot, b) in name.bytes.iter_mut().zip(atom) {
            *slot = b.to_ascii_uppercase();
        }
        name.len = atom.len().min(64);
        name
    }

    fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// The item a literal belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiteralItem {
    /// `BODY[section]` (`BODY[]` is the whole message); the section in upper case.
    Body(Vec<u8>),
    /// Any other item.
    Other,
}

impl FetchItems {
    /// The start of a `* n FETCH (` response, or `None` when `first` (the first
    /// segment of an untagged response) is not one.
    pub fn start(first: &[u8]) -> Option<Self> {
        let (n, rest) = untagged_word(first)?;
        let (word, _) = split_word(rest);
        if !word.eq_ignore_ascii_case(b"FETCH") {
            return None;
        }
        Some(Self {
            seq: number(n)?,
            ..Self::default()
        })
    }

    /// Takes the text of one segment (for the first, the whole line; for the rest,
    /// what follows a literal) without the literal announcement at its end, and tells
    /// which item the announced literal (if any) belongs to. At most `max_text` bytes
    /// of text in all are accepted.
    pub fn feed(&mut self, segment: &[u8], max_text: usize) -> Result<LiteralItem, ParseError> {
        self.text = self.text.saturating_add(segment.len());
        if self.text > max_text {
            return Err(ParseError::LineTooLong(max_text));
        }
        let text = if self.started {
            // A literal ended a value: it is not the UID.
            self.want_uid = false;
            segment
        } else {
            // The first segment: `* n FETCH (` precedes the items.
            let open = segment
                .iter()
                .position(|&b| b == b'(')
                .ok_or(ParseError::Syntax("a FETCH response without its items"))?;
            self.started = true;
            self.depth = 1;
            segment.get(open + 1..).unwrap_or_default()
        };
        let mut i = 0;
        while let Some(&b) = text.get(i) {
            match b {
                b'(' => {
                    if self.depth == 1 {
                        self.last_name = Name::default();
                    }
                    self.depth = self.depth.saturating_add(1);
                    i += 1;
                }
                b')' => {
                    self.depth = self.depth.saturating_sub(1);
                    i += 1;
                }
                b' ' => i += 1,
                b'"' => {
                    // A quoted string: skip to its closing quote.
                    i += 1;
                    while let Some(&c) = text.get(i) {
                        i += 1;
                        if c == b'\\' {
                            i += 1;
                        } else if c == b'"' {
                            break;
                        }
                    }
                    if self.depth == 1 {
                        self.last_name = Name::default();
                    }
                    self.want_uid = false;
                }
                _ => {
                    // An atom; brackets may hold spaces and parentheses
                    // (`BODY[HEADER.FIELDS (FROM TO)]`).
                    let start = i;
                    let mut brackets = 0u32;
                    while let Some(&c) = text.get(i) {
                        match c {
                            b'[' => brackets = brackets.saturating_add(1),
                            b']' => brackets = brackets.saturating_sub(1),
                            b' ' | b'(' | b')' | b'"' if brackets == 0 => break,
                            _ => {}
                        }
                        i += 1;
                    }
                    let atom = text.get(start..i).unwrap_or_default();
                    if self.depth == 1 {
                        if self.want_uid {
                            self.uid = number(atom);
                            self.want_uid = false;
                        } else {
                            self.want_uid = atom.eq_ignore_ascii_case(b"UID");
                            self.last_name = Name::default();
                            self.last_name = Name::of(atom);
                        }
                    }
                }
            }
        }
        let name = self.last_name.as_bytes();
        Ok(
            match name
                .strip_prefix(b"BODY[")
                .and_then(|s| s.strip_suffix(b"]"))
            {
                Some(section) if self.depth == 1 => LiteralItem::Body(section.to_vec()),
                _ => LiteralItem::Other,
            },
        )
    }
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

/// Longest server text kept for an error message, in characters.
pub const MAX_SHOWN_TEXT: usize = 300;

/// Server text as it may be shown: invalid UTF-8 replaced, control characters (escape
/// sequences included) dropped, at most [`MAX_SHOWN_TEXT`] characters.
pub fn printable(text: &[u8]) -> String {
    let text = text.get(..MAX_SHOWN_TEXT * 4).unwrap_or(text);
    let mut shown = mailbridge_types::text::without_controls(
        &String::from_utf8_lossy(text),
        MAX_SHOWN_TEXT + 1,
    );
    if shown.chars().count() > MAX_SHOWN_TEXT {
        shown = shown.chars().take(MAX_SHOWN_TEXT).collect();
        shown.push('…');
    }
    shown
}

/// `* WORD rest`: the first word after `* ` and the rest.
fn untagged_word(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = line.strip_prefix(b"* ")?;
    Some(split_word(rest))
}

/// The first word of `s` and what follows its space.
fn split_word(s: &[u8]) -> (&[u8], &[u8]) {
    match s.iter().position(|&b| b == b' ') {
        Some(sp) => (
            s.get(..sp).unwrap_or_default(),
            s.get(sp + 1..).unwrap_or_default(),
        ),
        None => (s, b""),
    }
}

/// A number (RFC 3501 `number`, 32 bits), ASCII digits only.
fn number(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 10 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u32, |n, &d| {
        n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
    })
}

fn push_item(out: &mut Vec<u32>, n: u32, max_items: u64) -> Result<(), ParseError> {
    if out.len() as u64 >= max_items {
        return Err(ParseError::TooManyItems(max_items));
    }
    out.push(n);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn lit(size: u64) -> Literal {
        Literal {
            size,
            non_synchronizing: false,
        }
    }

    #[test]
    fn literals_completions_and_codes() {
        assert_eq!(literal(b"* 1 FETCH (UID 7 BODY[] {1234}"), Some(lit(1234)));
        assert_eq!(
            literal(b"x {12+}"),
            Some(Literal {
                size: 12,
                non_synchronizing: true
            })
        );
        assert_eq!(literal(b"x {}"), None);
        assert_eq!(
            literal(b"x {99999999999999999999}"),
            Some(lit(u64::MAX)),
            "too large to hold, but a literal all the same"
        );
        assert_eq!(literal(b"x {12++}"), None);
        assert_eq!(literal(b"x"), None);
        assert_eq!(before_literal(b"a BODY[] {5}"), b"a BODY[] ");
        let c = completion(b"a1 NO AUTHENTICATE failed.", b"a1").unwrap();
        assert_eq!(c.status, CompletionStatus::No);
        assert_eq!(c.text, b"AUTHENTICATE failed.");
        assert!(completion(b"a10 OK x", b"a1").is_none());
        assert_eq!(completion(b"a1 ok", b"a1").unwrap().text, b"");
        assert_eq!(
            response_code(b"OK [UIDVALIDITY 3857529045] UIDs valid", b"UIDVALIDITY"),
            Some(b"3857529045".as_slice())
        );
        assert_eq!(untagged_number(b"* 23 EXISTS", b"EXISTS"), Some(23));
        assert_eq!(untagged_number(b"* 23 EXISTS", b"RECENT"), None);
        assert!(is_bye(b"* BYE shutting down"));
        assert!(is_continuation(b"+ go ahead"));
        assert_eq!(greeting(b"* PREAUTH hi"), Some(Greeting::PreAuth));
        assert_eq!(greeting(b"hello"), None);
    }

    #[test]
    fn meanings() {
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

    #[test]
    fn lines_are_split_within_their_limit() {
        assert_eq!(
            split_line(b"* OK hi\r\nrest", 100).unwrap(),
            Some((b"* OK hi".as_slice(), 9))
        );
        assert_eq!(
            split_line(b"a\nb", 100).unwrap(),
            Some((b"a".as_slice(), 2))
        );
        assert_eq!(split_line(b"partial", 100).unwrap(), None);
        assert_eq!(
            split_line(b"0123456789\r\n", 10).unwrap(),
            Some((b"0123456789".as_slice(), 12))
        );
        assert_eq!(
            split_line(b"01234567890\r\n", 10),
            Err(ParseError::LineTooLong(10))
        );
        assert_eq!(
            split_line(b"0123456789ab", 10),
            Err(ParseError::LineTooLong(10))
        );
    }

    #[test]
    fn capabilities_from_the_answer_and_from_a_code() {
        assert_eq!(
            capabilities(b"* CAPABILITY IMAP4rev1 SASL-IR  ESEARCH").unwrap(),
            ["IMAP4rev1", "SASL-IR", "ESEARCH"]
        );
        assert_eq!(
            capabilities(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] Dovecot ready.")
                .unwrap(),
            ["IMAP4rev1", "LITERAL+", "AUTH=PLAIN"]
        );
        assert_eq!(capabilities(b"* OK ready"), None);
    }

    #[test]
    fn select_data_from_dovecot() {
        let mut s = SelectData::default();
        for line in [
            b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)".as_slice(),
            b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.",
            b"* 172 EXISTS",
            b"* 1 RECENT",
            b"* OK [UIDVALIDITY 3857529045] UIDs valid",
            b"* OK [UIDNEXT 4392] Predicted next UID",
            b"[READ-WRITE] Select completed (0.001 + 0.000 secs).",
        ] {
            s.update(line);
        }
        assert_eq!(
            s,
            SelectData {
                exists: 172,
                uid_validity: 3_857_529_045,
                uid_next: 4392
            }
        );
        let mut s = SelectData::default();
        s.update(b"* OK [UIDNEXT 99999999999] too large");
        assert_eq!(s.uid_next, 0);
    }

    #[test]
    fn search_and_esearch_answers_within_their_bound() {
        let mut out = Vec::new();
        assert!(search(b"* SEARCH 2 84 882", 10, &mut out).unwrap());
        assert!(search(b"* SEARCH", 10, &mut out).unwrap());
        assert!(search(b"* SEARCH 9 (MODSEQ 917162500)", 10, &mut out).unwrap());
        assert_eq!(out, [2, 84, 882, 9]);
        assert!(!search(b"* 3 EXISTS", 10, &mut out).unwrap());
        assert_eq!(
            search(b"* SEARCH 1 2 3 4 5 6 7", 10, &mut out),
            Err(ParseError::TooManyItems(10))
        );
        assert!(search(b"* SEARCH 1 x", 10, &mut Vec::new()).is_err());

        let mut out = Vec::new();
        let e = esearch(
            b"* ESEARCH (TAG \"m5\") UID ALL 4:6,9,12:11 COUNT 6",
            100,
            &mut out,
        )
        .unwrap()
        .unwrap();
        assert_eq!(out, [4, 5, 6, 9, 11, 12]);
        assert_eq!(e.tag.as_deref(), Some(b"m5".as_slice()));
        assert!(e.uid);
        assert_eq!(e.count, Some(6));
        let e = esearch(b"* ESEARCH (TAG \"m6\") UID", 100, &mut out)
            .unwrap()
            .unwrap();
        assert_eq!(e.count, None);
        assert_eq!(
            esearch(
                b"* ESEARCH UID ALL 1:4294967295",
                1_000_000,
                &mut Vec::new()
            ),
            Err(ParseError::TooManyItems(1_000_000)),
            "refused before expanding"
        );
        assert!(
            esearch(b"* SEARCH 1", 10, &mut Vec::new())
                .unwrap()
                .is_none()
        );
        assert!(esearch(b"* ESEARCH UID ALL 1:*", 10, &mut Vec::new()).is_err());
    }

    /// Feeds the segments of one response; the items of each literal and the UID.
    fn feed(segments: &[&[u8]]) -> (Vec<LiteralItem>, Option<u32>) {
        let mut items = FetchItems::start(segments[0]).unwrap();
        let kinds = segments
            .iter()
            .map(|s| items.feed(before_literal(s), MAX_LINE).unwrap())
            .collect();
        (kinds, items.uid)
    }

    #[test]
    fn fetch_items_name_the_uid_and_the_body_literal() {
        let (kinds, uid) = feed(&[b"* 12 FETCH (UID 4 BODY[] {5}", b")"]);
        assert_eq!(kinds[0], LiteralItem::Body(Vec::new()));
        assert_eq!(uid, Some(4));
        let (kinds, uid) = feed(&[
            b"* 2 FETCH (BODY[HEADER] {3}",
            b" BODY[] {6}",
            b" UID 6 FLAGS (\\Seen))",
        ]);
        assert_eq!(kinds[0], LiteralItem::Body(b"HEADER".to_vec()));
        assert_eq!(kinds[1], LiteralItem::Body(Vec::new()));
        assert_eq!(uid, Some(6));
        let (kinds, uid) = feed(&[b"* 3 FETCH (X-GM-LABELS ({6}", b") UID 7 BODY[] {10}"]);
        assert_eq!(kinds[0], LiteralItem::Other, "a literal inside a list");
        assert_eq!(kinds[1], LiteralItem::Body(Vec::new()));
        assert_eq!(uid, Some(7));
        // A quoted "UID 5" is not the UID; nor a UID inside a list.
        let (_, uid) = feed(&[b"* 3 FETCH (X \"UID 5\" FLAGS (UID 6))"]);
        assert_eq!(uid, None);
        let (kinds, _) = feed(&[b"* 3 FETCH (BODY[HEADER.FIELDS (FROM TO)] {4}"]);
        assert_eq!(
            kinds[0],
            LiteralItem::Body(b"HEADER.FIELDS (FROM TO)".to_vec())
        );
        // A literal value of UID is not a UID.
        let (_, uid) = feed(&[b"* 3 FETCH (UID {2}", b" BODY[] {1}"]);
        assert_eq!(uid, None);
        assert!(FetchItems::start(b"* 3 EXPUNGE").is_none());
        assert!(FetchItems::start(b"* x FETCH (").is_none());
        let mut items = FetchItems::start(b"* 1 FETCH (UID 1").unwrap();
        assert!(items.feed(&[b'a'; 20], 10).is_err());
    }

    #[test]
    fn printable_drops_escape_sequences() {
        assert_eq!(
            printable(b"NO \x1b[31mred\x1b[0m\x07 text\r\n"),
            "NO [31mred[0m text"
        );
        assert_eq!(printable(b"caf\xc3\xa9 \xff"), "caf\u{e9} \u{fffd}");
        let long = printable(&[b'a'; 1000]);
        assert_eq!(long.chars().count(), MAX_SHOWN_TEXT + 1);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_lines_never_panic(line in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = literal(&line);
            let _ = completion(&line, b"a1");
            let _ = response_code(&line, b"UIDVALIDITY");
            let _ = untagged_number(&line, b"EXISTS");
            let _ = capabilities(&line);
            let mut s = SelectData::default();
            s.update(&line);
            let mut out = Vec::new();
            let _ = search(&line, 1000, &mut out);
            proptest::prop_assert!(out.len() <= 1000);
            let _ = esearch(&line, 1000, &mut out);
            proptest::prop_assert!(out.len() <= 1000);
            if let Some(mut f) = FetchItems::start(&line) {
                let _ = f.feed(before_literal(&line), MAX_LINE);
            }
            let shown = printable(&line);
            proptest::prop_assert!(!shown.chars().any(char::is_control));
        }

        #[test]
        fn split_line_never_takes_more_than_given(
            buf in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
            max in 0usize..100,
        ) {
            if let Ok(Some((line, used))) = split_line(&buf, max) {
                proptest::prop_assert!(used <= buf.len());
                proptest::prop_assert!(line.len() <= max);
                proptest::prop_assert_eq!(buf.get(used - 1), Some(&b'\n'));
            }
        }

        /// Sequence sets written from a list come back as that list.
        #[test]
        fn sequence_sets_round_trip(mut uids in proptest::collection::vec(1u32..5000, 0..200)) {
            uids.sort_unstable();
            uids.dedup();
            let set: Vec<String> = uids.iter().map(u32::to_string).collect();
            let line = format!("* ESEARCH (TAG \"x\") UID ALL {}", set.join(","));
            let mut out = Vec::new();
            if uids.is_empty() {
                proptest::prop_assert!(esearch(line.as_bytes(), 1000, &mut out).is_err());
            } else {
                esearch(line.as_bytes(), 1000, &mut out).unwrap();
                proptest::prop_assert_eq!(out, uids);
            }
        }

        /// The UID is found whatever precedes it, and literals are named by their item.
        #[test]
        fn fetch_uid_found_among_other_items(
            uid in 1u32..,
            before in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("FLAGS (\\Seen UID)".to_owned()),
                    proptest::strategy::Just("INTERNALDATE \"17-Jul-1996 02:44:25 -0700\"".to_owned()),
                    proptest::strategy::Just("RFC822.SIZE 44827".to_owned()),
                    proptest::strategy::Just("X-LABEL \"UID 3\"".to_owned()),
                ],
                0..4,
            ),
        ) {
            let line = format!("* 1 FETCH ({} UID {uid} BODY[] {{3}}", before.join(" "));
            let mut items = FetchItems::start(line.as_bytes()).unwrap();
            let kind = items.feed(before_literal(line.as_bytes()), MAX_LINE).unwrap();
            proptest::prop_assert_eq!(kind, LiteralItem::Body(Vec::new()));
            proptest::prop_assert_eq!(items.uid, Some(uid));
        }
    }
}
