//! The IMAP client: a thin tokio driver over [`crate::response`]'s parsers.
//!
//! Every command runs within bounds a server cannot talk its way past: a total time
//! ([`Limits::command_timeout_secs`]) besides the wait for each answer, a number of
//! untagged lines (the larger of [`MAX_UNTAGGED_LINES`] and [`Limits::max_list_items`]),
//! untagged bytes ([`MAX_UNTAGGED_BYTES`]) and continuation requests
//! ([`MAX_CONTINUATIONS`]); a literal larger than [`Limits::max_message_size`] is
//! refused before a byte of it is read, and a listing
//! longer than [`Limits::max_list_items`] is refused as it grows.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailbridge_tls::{LineError, MailStream, TlsSettings};
use mailbridge_types::ErrorClass;
use mailbridge_types::config::Limits;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::time::Instant;

use crate::response::{
    self, CompletionStatus, FetchItems, Greeting, LiteralItem, MAX_CONTINUATIONS,
    MAX_INLINE_LITERAL, MAX_LINE, MAX_SEARCH_LINE, MAX_UNTAGGED_BYTES, MAX_UNTAGGED_LINES, Meaning,
    ParseError, SelectData, printable,
};

pub use mailbridge_types::config::TlsMode;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub trust: TlsSettings,
    /// Timeout for each server answer (not for IDLE, which has its own).
    pub timeout: Duration,
    /// The account's bounds: message size, listing length, time per command.
    pub limits: Limits,
}

impl ImapConfig {
    /// A configuration with a 60 s timeout, the system's roots and default limits.
    pub fn new(host: &str, port: u16, tls: TlsMode) -> Self {
        Self {
            host: host.to_owned(),
            port,
            tls,
            trust: TlsSettings::default(),
            timeout: Duration::from_mins(1),
            limits: Limits::default(),
        }
    }
}

/// How to sign in.
pub enum Credentials {
    /// `AUTHENTICATE XOAUTH2`: the mailbox to open (`user=`) and an access token.
    XOAuth2 { user: String, token: SecretString },
    /// `AUTHENTICATE OAUTHBEARER` (RFC 7628), for providers other than Microsoft.
    OAuthBearer { user: String, token: SecretString },
    /// `LOGIN`.
    Login {
        user: String,
        password: SecretString,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, user) = match self {
            Credentials::XOAuth2 { user, .. } => ("XOAuth2", user),
            Credentials::OAuthBearer { user, .. } => ("OAuthBearer", user),
            Credentials::Login { user, .. } => ("Login", user),
        };
        f.debug_struct(kind)
            .field("user", user)
            .finish_non_exhaustive()
    }
}

/// What failed. Server text in these (refusals, `BYE`, protocol details) is passed
/// through [`printable`]: no control characters, bounded length.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImapError {
    #[error("could not connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] mailbridge_tls::TlsError),
    #[error("connection to the IMAP server failed during {step}")]
    Io {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the IMAP server sent something that is not IMAP during {step}: {detail}")]
    Protocol { step: &'static str, detail: String },
    #[error("{step} was refused: {text}. {}", Meaning::of(text).fix())]
    Refused { step: &'static str, text: String },
    #[error("the server closed the session: {0}")]
    Bye(String),
    /// A bound of the account's [`Limits`] was exceeded.
    #[error(
        "{what} during {step}, past the bound {setting} = {bound}: raise `{setting}` in the account's limits if this is expected"
    )]
    LimitExceeded {
        step: &'static str,
        /// What the server did, e.g. "the server announced a message of 9223372036854775807 bytes".
        what: String,
        /// The setting (`limits.max_message_size`, ...).
        setting: &'static str,
        /// Its value.
        bound: u64,
    },
    /// A fixed bound of mailbridge's was exceeded: the server kept sending what no
    /// command asks for (response bytes that carry no message, continuation requests
    /// where no data was due).
    #[error(
        "{what} during {step}: the server keeps sending what was not asked for (a fixed bound of mailbridge); the server or something in between misbehaves"
    )]
    Flooded { step: &'static str, what: String },
}

impl ImapError {
    /// What to do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            ImapError::Connect { .. }
            | ImapError::Io { .. }
            | ImapError::Protocol { .. }
            | ImapError::Bye(_) => ErrorClass::Transient,
            ImapError::Tls(_) => ErrorClass::Misconfigured,
            ImapError::Refused { text, .. } => Meaning::of(text).class(),
            ImapError::LimitExceeded { .. } | ImapError::Flooded { .. } => {
                ErrorClass::LimitExceeded
            }
        }
    }

    /// The meaning of a refusal.
    pub fn meaning(&self) -> Option<Meaning> {
        match self {
            ImapError::Refused { text, .. } => Some(Meaning::of(text)),
            _ => None,
        }
    }

    fn refused(step: &'static str, text: &[u8]) -> Self {
        ImapError::Refused {
            step,
            text: printable(text),
        }
    }

    fn protocol(step: &'static str, detail: impl Into<String>) -> Self {
        ImapError::Protocol {
            step,
            detail: detail.into(),
        }
    }

    fn bye(line: &[u8]) -> Self {
        ImapError::Bye(printable(line))
    }

    fn message_too_large(step: &'static str, size: u64, limits: &Limits) -> Self {
        ImapError::LimitExceeded {
            step,
            what: format!("the server announced a message of {size} bytes"),
            setting: "limits.max_message_size",
            bound: limits.max_message_size,
        }
    }

    fn list_too_long(step: &'static str, limits: &Limits) -> Self {
        ImapError::LimitExceeded {
            step,
            what: format!(
                "the folder lists more than {} messages",
                limits.max_list_items
            ),
            setting: "limits.max_list_items",
            bound: limits.max_list_items,
        }
    }

    fn parse(step: &'static str, e: ParseError, limits: &Limits) -> Self {
        match e {
            ParseError::TooManyItems(_) => Self::list_too_long(step, limits),
            other => Self::protocol(step, other.to_string()),
        }
    }
}

/// A selected folder's identity and size: the checkpoint is (`uid_validity`, last UID).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Folder {
    pub uid_validity: u32,
    pub uid_next: u32,
    pub exists: u32,
}

/// What the command in progress may still receive and how long it may still take.
#[derive(Debug, Clone, Copy)]
struct Budget {
    deadline: Instant,
    lines: u64,
    bytes: u64,
    continuations: u32,
}

/// A connected IMAP session.
#[derive(Debug)]
pub struct ImapClient {
    conn: MailStream,
    next_tag: u32,
    timeout: Duration,
    limits: Limits,
    budget: Budget,
    /// Capabilities from the greeting or the last `CAPABILITY`.
    pub capabilities: Vec<String>,
    /// `EXISTS` of the selected folder when it was selected, to list it in windows of
    /// message sequence numbers.
    selected_exists: u32,
    /// The server reported a changed message count (`EXISTS`) in the answer to a
    /// command other than `SELECT` since the folder was selected or the last
    /// [`Self::idle`]: news that an `IDLE` would not be told again.
    news: bool,
    /// How the connection is secured.
    tls: TlsMode,
}

/// Message sequence numbers searched per `UID SEARCH` when the server offers no
/// `ESEARCH`: the answer holds at most this many UIDs (about 220 KB).
pub const SEARCH_WINDOW: u32 = 20_000;

/// `day` as an IMAP `date` (`4-Dec-2026`), month names in English whatever the locale.
fn imap_date(day: time::Date) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS
        .get(usize::from(u8::from(day.month())) - 1)
        .copied()
        .unwrap_or("Jan");
    format!("{}-{month}-{}", day.day(), day.year())
}

/// The user name as a GS2 `saslname` (RFC 5801 §4, used by OAUTHBEARER, RFC 7628
/// §3.1): `,` becomes `=2C` and `=` becomes `=3D`, so the name cannot end the header or
/// smuggle another attribute.
fn gs2_saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
mod gs2_tests {
    #[test]
    fn gs2_user_names_escape_comma_and_equals() {
        for (user, wire) in [
            ("alice@contoso.example", "alice@contoso.example"),
            ("a,b=c@x", "a=2Cb=3Dc@x"),
            ("=2C", "=3D2C"),
            (",,", "=2C=2C"),
        ] {
            assert_eq!(super::gs2_saslname(user), wire);
        }
    }
}

fn quote(s: &str) -> Result<String, ImapError> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(ImapError::protocol(
            "quoting",
            "a name or password with a line break",
        ));
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

/// The windows of message sequence numbers `1..=exists`, highest first, as
/// `(low, high)`; the highest is searched as `low:*` so that messages arriving
/// meanwhile are included.
fn windows_from_top(exists: u32) -> impl Iterator<Item = (u32, u32)> {
    let mut high = exists;
    std::iter::from_fn(move || {
        if high == 0 {
            return None;
        }
        let low = high.saturating_sub(SEARCH_WINDOW - 1).max(1);
        let window = (low, high);
        high = low - 1;
        Some(window)
    })
}

impl ImapClient {
    /// Connects, reads the greeting, and upgrades with STARTTLS when asked. With
    /// [`TlsMode::Auto`]: implicit TLS, or STARTTLS when the server answers the
    /// handshake in plain text ([`ImapClient::tls_mode`] tells which).
    pub async fn connect(config: &ImapConfig) -> Result<Self, ImapError> {
        mailbridge_tls::connect_in_mode(
            config.tls,
            |tls| Self::connect_as(config, tls),
            |e| matches!(e, ImapError::Tls(t) if mailbridge_tls::is_not_tls(&t.source)),
        )
        .await
    }

    /// How this connection is secured (never [`TlsMode::Auto`]).
    pub fn tls_mode(&self) -> TlsMode {
        self.tls
    }

    /// The bounds this session holds to.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    async fn connect_as(config: &ImapConfig, tls: TlsMode) -> Result<Self, ImapError> {
        let addr = format!("{}:{}", config.host, config.port);
        let tcp = mailbridge_tls::connect_tcp(&config.host, config.port, config.timeout)
            .await
            .map_err(|source| ImapError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let conn = if tls == TlsMode::Implicit {
            MailStream::implicit(&config.trust, &config.host, tcp, config.timeout).await?
        } else {
            MailStream::plain(tcp)
        };
        let mut client = Self {
            conn,
            next_tag: 1,
            selected_exists: 0,
            news: false,
            tls,
            timeout: config.timeout,
            limits: config.limits,
            budget: Budget {
                deadline: Instant::now() + config.limits.command_timeout(),
                lines: 0,
                bytes: 0,
                continuations: 0,
            },
            capabilities: Vec::new(),
        };
        let greeting = match client.read_line("the greeting").await {
            Err(ImapError::Io { step, source }) if tls != TlsMode::Implicit => {
                return Err(ImapError::Io {
                    step,
                    source: mailbridge_tls::no_greeting(source),
                });
            }
            other => other?,
        };
        match response::greeting(&greeting) {
            Some(Greeting::Ok | Greeting::PreAuth) => {}
            Some(Greeting::Bye) => return Err(ImapError::bye(&greeting)),
            None => return Err(ImapError::protocol("the greeting", printable(&greeting))),
        }
        client.capability().await?;
        if tls == TlsMode::StartTls {
            client.run("STARTTLS", "STARTTLS", |_| Ok(())).await?;
            client
                .conn
                .start_tls(&config.trust, &config.host, config.timeout)
                .await?;
            client.capability().await?;
        }
        Ok(client)
    }

    /// True when `CAPABILITY` listed `name` (case-insensitive).
    pub fn has_capability(&self, name: &str) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.eq_ignore_ascii_case(name))
    }

    async fn capability(&mut self) -> Result<(), ImapError> {
        let mut found = None;
        self.run("CAPABILITY", "CAPABILITY", |line| {
            if found.is_none() {
                found = response::capabilities(line);
            }
            Ok(())
        })
        .await?;
        if let Some(found) = found {
            self.capabilities = found;
        }
        Ok(())
    }

    /// Signs in.
    pub async fn authenticate(&mut self, credentials: &Credentials) -> Result<(), ImapError> {
        match credentials {
            Credentials::XOAuth2 { user, token } => {
                let blob = STANDARD.encode(format!(
                    "user={user}\x01auth=Bearer {}\x01\x01",
                    token.expose_secret()
                ));
                self.sasl("XOAUTH2", &blob).await
            }
            Credentials::OAuthBearer { user, token } => {
                let blob = STANDARD.encode(format!(
                    "n,a={},\x01auth=Bearer {}\x01\x01",
                    gs2_saslname(user),
                    token.expose_secret()
                ));
                self.sasl("OAUTHBEARER", &blob).await
            }
            Credentials::Login { user, password } => {
                let command = format!(
                    "LOGIN {} {}",
                    quote(user)?,
                    quote(password.expose_secret())?
                );
                self.run(&command, "LOGIN", |_| Ok(())).await.map(|_| ())
            }
        }?;
        // Capabilities often change after login.
        self.capability().await
    }

    async fn sasl(&mut self, mechanism: &str, blob: &str) -> Result<(), ImapError> {
        let tag = self.tag();
        self.begin();
        if self.has_capability("SASL-IR") {
            self.write_line(
                &format!("{tag} AUTHENTICATE {mechanism} {blob}"),
                "AUTHENTICATE",
            )
            .await?;
        } else {
            self.write_line(&format!("{tag} AUTHENTICATE {mechanism}"), "AUTHENTICATE")
                .await?;
            let line = self.read_line("AUTHENTICATE").await?;
            if !response::is_continuation(&line) {
                return self.finish_sasl(&tag, Some(line)).await;
            }
            self.write_line(blob, "AUTHENTICATE").await?;
        }
        self.finish_sasl(&tag, None).await
    }

    async fn finish_sasl(
        &mut self,
        tag: &str,
        mut pending: Option<Vec<u8>>,
    ) -> Result<(), ImapError> {
        // A server that keeps challenging or talking never ends the exchange: bounded.
        let (mut challenges, mut lines) = (0u32, 0u32);
        loop {
            let line = match pending.take() {
                Some(l) => l,
                None => self.read_line("AUTHENTICATE").await?,
            };
            lines += 1;
            if lines > 1_000 {
                return Err(ImapError::protocol(
                    "AUTHENTICATE",
                    "more than 1,000 lines without a completion",
                ));
            }
            if response::is_continuation(&line) {
                challenges += 1;
                if challenges > 3 {
                    return Err(ImapError::protocol(
                        "AUTHENTICATE",
                        "the server keeps asking for more after the token",
                    ));
                }
                // An error challenge (Gmail's JSON): answer empty to get the NO.
                self.write_line("", "AUTHENTICATE").await?;
                continue;
            }
            if let Some(c) = response::completion(&line, tag.as_bytes()) {
                return match c.status {
                    CompletionStatus::Ok => Ok(()),
                    _ => Err(ImapError::refused("AUTHENTICATE", c.text)),
                };
            }
        }
    }

    /// `SELECT` a folder.
    pub async fn select(&mut self, folder: &str) -> Result<Folder, ImapError> {
        // The folder as selected now is what a listing after this sees.
        self.news = false;
        let mut data = SelectData::default();
        let done = self
            .run(&format!("SELECT {}", quote(folder)?), "SELECT", |line| {
                data.update(line);
                Ok(())
            })
            .await?;
        data.update(&done);
        if data.uid_validity == 0 {
            return Err(ImapError::protocol("SELECT", "no UIDVALIDITY"));
        }
        self.selected_exists = data.exists;
        Ok(Folder {
            uid_validity: data.uid_validity,
            uid_next: data.uid_next,
            exists: data.exists,
        })
    }

    /// UIDs of the selected folder above `last_uid` (the checkpoint), ascending.
    ///
    /// The cost follows the number of messages, not the UID space: with `ESEARCH`
    /// ([RFC 4731](https://www.rfc-editor.org/rfc/rfc4731)) one `UID SEARCH RETURN
    /// (ALL)` answered by a sequence set; otherwise windows of [`SEARCH_WINDOW`]
    /// message sequence numbers from the highest down, stopping at the first window
    /// that holds a message at or below the checkpoint (UIDs ascend with sequence
    /// numbers). More than [`Limits::max_list_items`] UIDs is an error.
    pub async fn uids_after(&mut self, last_uid: u32) -> Result<Vec<u32>, ImapError> {
        let from = last_uid.saturating_add(1);
        let mut uids = Vec::new();
        if self.has_capability("ESEARCH") {
            self.search_into(&format!("RETURN (ALL) UID {from}:*"), &mut uids)
                .await?;
        } else if self.selected_exists == 0 {
            self.search_into(&format!("UID {from}:*"), &mut uids)
                .await?;
        } else {
            for (low, high) in windows_from_top(self.selected_exists) {
                let set = if high == self.selected_exists {
                    format!("{low}:*")
                } else {
                    format!("{low}:{high}")
                };
                let before = uids.len();
                self.search_into(&format!("{set} UID {from}:*"), &mut uids)
                    .await?;
                // A window not wholly above the checkpoint: the rest is below it.
                if ((uids.len() - before) as u64) < u64::from(high - low + 1) {
                    break;
                }
            }
        }
        uids.retain(|u| *u > last_uid);
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// UIDs of the selected folder whose internal date is on or after `day`
    /// (`UID SEARCH SINCE`, [RFC 3501 §6.4.4](https://www.rfc-editor.org/rfc/rfc3501#section-6.4.4):
    /// the date only, time and zone disregarded), ascending; with `ESEARCH` in one
    /// command, otherwise in windows of message sequence numbers like
    /// [`Self::uids_after`].
    pub async fn uids_received_since(&mut self, day: time::Date) -> Result<Vec<u32>, ImapError> {
        let since = imap_date(day);
        let mut uids = Vec::new();
        if self.has_capability("ESEARCH") {
            self.search_into(&format!("RETURN (ALL) SINCE {since}"), &mut uids)
                .await?;
        } else if self.selected_exists == 0 {
            self.search_into(&format!("SINCE {since}"), &mut uids)
                .await?;
        } else {
            let mut windows: Vec<(u32, u32)> = windows_from_top(self.selected_exists).collect();
            windows.reverse();
            for (low, high) in windows {
                let set = if high == self.selected_exists {
                    format!("{low}:*")
                } else {
                    format!("{low}:{high}")
                };
                self.search_into(&format!("{set} SINCE {since}"), &mut uids)
                    .await?;
            }
        }
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// `UID SEARCH criteria`, the UIDs of its `SEARCH` or `ESEARCH` answer appended to
    /// `uids` (at most [`Limits::max_list_items`] in all).
    async fn search_into(&mut self, criteria: &str, uids: &mut Vec<u32>) -> Result<(), ImapError> {
        const STEP: &str = "UID SEARCH";
        let tag = self.tag();
        let max = self.limits.max_list_items;
        let limits = self.limits;
        self.begin();
        self.write_line(&format!("{tag} UID SEARCH {criteria}"), STEP)
            .await?;
        self.collect(&tag, STEP, MAX_SEARCH_LINE, |line| {
            let before = uids.len();
            let parsed = match response::esearch(line, max, uids) {
                Ok(Some(e)) if e.tag.as_ref().is_some_and(|t| *t != tag.as_bytes()) => {
                    // The answer to another command: not ours to list.
                    uids.truncate(before);
                    Ok(true)
                }
                Ok(Some(_)) => Ok(true),
                Ok(None) => response::search(line, max, uids),
                Err(e) => Err(e),
            };
            parsed
                .map(|_| ())
                .map_err(|e| ImapError::parse(STEP, e, &limits))
        })
        .await?;
        Ok(())
    }

    /// `UID FETCH uid BODY.PEEK[]`, streamed into `sink`; the message's size, or `None`
    /// when there is no message with that UID.
    pub async fn fetch<W: AsyncWrite + Unpin>(
        &mut self,
        uid: u32,
        sink: &mut W,
    ) -> Result<Option<u64>, ImapError> {
        self.fetch_section(uid, "", sink).await
    }

    /// `UID FETCH uid BODY.PEEK[HEADER]`: only the message's header block (up to and
    /// including the empty line), streamed into `sink`; its size, or `None` when there
    /// is no message with that UID.
    pub async fn fetch_header<W: AsyncWrite + Unpin>(
        &mut self,
        uid: u32,
        sink: &mut W,
    ) -> Result<Option<u64>, ImapError> {
        self.fetch_section(uid, "HEADER", sink).await
    }

    /// `UID FETCH uid BODY.PEEK[section]`, the section's literal streamed into `sink`.
    /// Answers about other messages are skipped; a section announced larger than
    /// [`Limits::max_message_size`] is refused before it is read.
    async fn fetch_section<W: AsyncWrite + Unpin>(
        &mut self,
        uid: u32,
        section: &str,
        sink: &mut W,
    ) -> Result<Option<u64>, ImapError> {
        const STEP: &str = "UID FETCH";
        let tag = self.tag();
        self.begin();
        self.write_line(
            &format!("{tag} UID FETCH {uid} (UID BODY.PEEK[{section}])"),
            STEP,
        )
        .await?;
        let mut size = None;
        // Inside an untagged response that continues after a literal (the next line is
        // the rest of it, which may hold more literals: `BODY[]` need not be first),
        // and what it said so far if it is a FETCH response.
        let mut in_response = false;
        let mut items: Option<FetchItems> = None;
        // The section was streamed from the response in progress.
        let mut streamed_here = false;
        loop {
            let line = self.read_untagged_line(STEP, MAX_LINE).await?;
            if !in_response {
                if let Some(c) = response::completion(&line, tag.as_bytes()) {
                    return match c.status {
                        CompletionStatus::Ok => Ok(size),
                        _ => Err(ImapError::refused(STEP, c.text)),
                    };
                }
                if response::is_bye(&line) {
                    return Err(ImapError::bye(&line));
                }
                self.count_continuation(&line, STEP)?;
                items = FetchItems::start(&line);
                streamed_here = false;
            }
            let item = match items.as_mut() {
                Some(items) => items
                    .feed(response::before_literal(&line), MAX_LINE)
                    .map_err(|e| ImapError::parse(STEP, e, &self.limits))?,
                None => LiteralItem::Other,
            };
            let Some(literal) = response::literal(&line) else {
                // The response is complete.
                if streamed_here
                    && let Some(other) = items.as_ref().and_then(|i| i.uid)
                    && other != uid
                {
                    return Err(ImapError::protocol(
                        STEP,
                        format!(
                            "the server sent message {other}'s content when asked for message {uid}"
                        ),
                    ));
                }
                in_response = false;
                continue;
            };
            in_response = true;
            let n = literal.size;
            let Some(i) = items.as_ref() else {
                self.skip_literal(n, MAX_INLINE_LITERAL, STEP).await?;
                continue;
            };
            if n > self.limits.max_message_size {
                return Err(ImapError::message_too_large(STEP, n, &self.limits));
            }
            let ours = i.uid.is_none_or(|u| u == uid);
            if !ours {
                tracing::warn!(
                    asked = uid,
                    answered = i.uid,
                    "the IMAP server answered for a message not asked for: ignored"
                );
            }
            if ours && size.is_none() && item == LiteralItem::Body(section.as_bytes().to_vec()) {
                self.copy_literal(n, sink).await?;
                size = Some(n);
                streamed_here = true;
            } else {
                self.skip_literal(n, self.limits.max_message_size, STEP)
                    .await?;
            }
        }
    }

    /// Sets or clears `\Seen`.
    pub async fn set_seen(&mut self, uid: u32, seen: bool) -> Result<(), ImapError> {
        let op = if seen {
            "+FLAGS.SILENT"
        } else {
            "-FLAGS.SILENT"
        };
        self.run(
            &format!("UID STORE {uid} {op} (\\Seen)"),
            "UID STORE",
            |_| Ok(()),
        )
        .await
        .map(|_| ())
    }

    /// Moves a message to another folder (`UID MOVE`, or copy + delete + expunge).
    pub async fn move_to(&mut self, uid: u32, folder: &str) -> Result<(), ImapError> {
        let target = quote(folder)?;
        if self.has_capability("MOVE") {
            return self
                .run(&format!("UID MOVE {uid} {target}"), "UID MOVE", |_| Ok(()))
                .await
                .map(|_| ());
        }
        self.run(&format!("UID COPY {uid} {target}"), "UID COPY", |_| Ok(()))
            .await?;
        self.delete(uid).await
    }

    /// Deletes a message (`\Deleted` then `UID EXPUNGE` of that UID only).
    pub async fn delete(&mut self, uid: u32) -> Result<(), ImapError> {
        self.run(
            &format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"),
            "UID STORE",
            |_| Ok(()),
        )
        .await?;
        if self.has_capability("UIDPLUS") {
            self.run(&format!("UID EXPUNGE {uid}"), "UID EXPUNGE", |_| Ok(()))
                .await
                .map(|_| ())
        } else {
            self.run("EXPUNGE", "EXPUNGE", |_| Ok(())).await.map(|_| ())
        }
    }

    /// `APPEND` a message of `size` bytes read from `message` (a Sent copy); the new
    /// UID when the server reports it (`APPENDUID`).
    pub async fn append<R: AsyncRead + Unpin>(
        &mut self,
        folder: &str,
        seen: bool,
        size: u64,
        message: &mut R,
    ) -> Result<Option<u32>, ImapError> {
        let tag = self.tag();
        let flags = if seen { " (\\Seen)" } else { "" };
        self.begin();
        self.write_line(
            &format!("{tag} APPEND {}{flags} {{{size}}}", quote(folder)?),
            "APPEND",
        )
        .await?;
        let line = self.read_line("APPEND").await?;
        if !response::is_continuation(&line) {
            let text =
                response::completion(&line, tag.as_bytes()).map_or(line.as_slice(), |c| c.text);
            return Err(ImapError::refused("APPEND", text));
        }
        let copied = tokio::io::copy(&mut message.take(size), &mut self.conn)
            .await
            .map_err(|source| ImapError::Io {
                step: "APPEND",
                source,
            })?;
        if copied != size {
            return Err(ImapError::protocol(
                "APPEND",
                format!("the message had {copied} bytes, not the {size} announced"),
            ));
        }
        self.write_line("", "APPEND").await?;
        let done = self.collect(&tag, "APPEND", MAX_LINE, |_| Ok(())).await?;
        Ok(response::response_code(&done, b"APPENDUID").and_then(|v| {
            let uid = v.split(|&b| b == b' ').nth(1)?;
            std::str::from_utf8(uid).ok()?.parse().ok()
        }))
    }

    /// `IDLE` until the server reports new mail (`EXISTS`) or `wait` passes; true when
    /// new mail arrived.
    ///
    /// A server reports new mail once, in the answer to whatever command is running
    /// when it notices it (RFC 3501 §7.3.1, §5.2): mail that arrived while a listing
    /// ran may be announced in that listing's answer, after the listing was made, and
    /// would never be announced in `IDLE`. So when such an announcement came since the
    /// folder was selected (or since the last `idle`), this answers true at once,
    /// without `IDLE`, and the caller lists again.
    pub async fn idle(&mut self, wait: Duration) -> Result<bool, ImapError> {
        if std::mem::take(&mut self.news) {
            return Ok(true);
        }
        let tag = self.tag();
        self.begin();
        self.write_line(&format!("{tag} IDLE"), "IDLE").await?;
        let first = self.read_line("IDLE").await?;
        if !response::is_continuation(&first) {
            let text =
                response::completion(&first, tag.as_bytes()).map_or(first.as_slice(), |c| c.text);
            return Err(ImapError::refused("IDLE", text));
        }
        let deadline = Instant::now() + wait;
        let mut new_mail = false;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            match self.conn.read_line(MAX_LINE, remaining).await {
                Err(LineError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => break,
                Err(LineError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(ImapError::Bye(
                        "the server closed the connection during IDLE".into(),
                    ));
                }
                Err(e) => {
                    return Err(ImapError::Io {
                        step: "IDLE",
                        source: std::io::Error::other(e),
                    });
                }
                Ok(line) => {
                    if response::is_bye(&line) {
                        return Err(ImapError::bye(&line));
                    }
                    if response::untagged_number(&line, b"EXISTS").is_some()
                        || response::untagged_number(&line, b"RECENT").is_some()
                    {
                        new_mail = true;
                        break;
                    }
                }
            }
        }
        self.begin();
        self.write_line("DONE", "IDLE").await?;
        self.collect(&tag, "IDLE", MAX_LINE, |_| Ok(())).await?;
        Ok(new_mail)
    }

    /// `LOGOUT`.
    pub async fn logout(mut self) -> Result<(), ImapError> {
        let tag = self.tag();
        self.begin();
        self.write_line(&format!("{tag} LOGOUT"), "LOGOUT").await?;
        loop {
            let line = self.read_untagged_line("LOGOUT", MAX_LINE).await?;
            if let Some(c) = response::completion(&line, tag.as_bytes()) {
                return match c.status {
                    CompletionStatus::Ok => Ok(()),
                    _ => Err(ImapError::refused("LOGOUT", c.text)),
                };
            }
        }
    }

    fn tag(&mut self) -> String {
        let t = format!("m{}", self.next_tag);
        self.next_tag += 1;
        t
    }

    /// A command starts: its time and its untagged budget start afresh.
    fn begin(&mut self) {
        self.budget = Budget {
            deadline: Instant::now() + self.limits.command_timeout(),
            lines: 0,
            bytes: 0,
            continuations: 0,
        };
    }

    /// Sends a command, hands each untagged response (small literals inline) to
    /// `untagged`, and returns the completion's text.
    async fn run(
        &mut self,
        command: &str,
        step: &'static str,
        untagged: impl FnMut(&[u8]) -> Result<(), ImapError>,
    ) -> Result<Vec<u8>, ImapError> {
        let tag = self.tag();
        self.begin();
        self.write_line(&format!("{tag} {command}"), step).await?;
        self.collect(&tag, step, MAX_LINE, untagged).await
    }

    /// Reads the answer to the command tagged `tag`: each untagged response (lines of
    /// at most `max_line`, small literals inline) goes to `untagged`; the completion's
    /// text is returned, a `NO`/`BAD` is an error.
    async fn collect(
        &mut self,
        tag: &str,
        step: &'static str,
        max_line: usize,
        mut untagged: impl FnMut(&[u8]) -> Result<(), ImapError>,
    ) -> Result<Vec<u8>, ImapError> {
        loop {
            let line = self.read_line_with_literals(step, max_line).await?;
            if let Some(c) = response::completion(&line, tag.as_bytes()) {
                return match c.status {
                    CompletionStatus::Ok => Ok(c.text.to_vec()),
                    _ => Err(ImapError::refused(step, c.text)),
                };
            }
            if response::is_bye(&line) && step != "LOGOUT" {
                return Err(ImapError::bye(&line));
            }
            self.count_continuation(&line, step)?;
            untagged(&line)?;
        }
    }

    /// A continuation request where the command has nothing more to send: tolerated a
    /// few times, then an error (a server must not keep a command waiting so).
    fn count_continuation(&mut self, line: &[u8], step: &'static str) -> Result<(), ImapError> {
        if response::is_continuation(line) {
            self.budget.continuations += 1;
            if self.budget.continuations > MAX_CONTINUATIONS {
                return Err(ImapError::Flooded {
                    step,
                    what: format!(
                        "more than {MAX_CONTINUATIONS} continuation requests where no data was due"
                    ),
                });
            }
        }
        Ok(())
    }

    /// A response line with any (small) literals read inline.
    async fn read_line_with_literals(
        &mut self,
        step: &'static str,
        max_line: usize,
    ) -> Result<Vec<u8>, ImapError> {
        let mut line = self.read_untagged_line(step, max_line).await?;
        while let Some(literal) = response::literal(&line) {
            let n = literal.size;
            // The bound is for the whole response: many literals must not add up.
            if n > MAX_INLINE_LITERAL.saturating_sub(line.len() as u64) {
                return Err(ImapError::protocol(
                    step,
                    format!("a literal of {n} bytes where a short value was expected"),
                ));
            }
            self.stream_literal(n, &mut line).await?;
            self.count_bytes(n, step)?;
            let rest = self.read_untagged_line(step, max_line).await?;
            line.extend_from_slice(&rest);
        }
        Ok(line)
    }

    /// A line counted against the command's untagged budget.
    async fn read_untagged_line(
        &mut self,
        step: &'static str,
        max_line: usize,
    ) -> Result<Vec<u8>, ImapError> {
        let line = self.read_line_max(step, max_line).await?;
        if step != "SELECT" && response::untagged_number(&line, b"EXISTS").is_some() {
            self.news = true;
        }
        self.budget.lines += 1;
        // A listing of N messages takes at most N lines (FETCH, EXPUNGE, flags): the
        // listing bound, with room for a command's own few lines.
        let max_lines = self.limits.max_list_items.max(MAX_UNTAGGED_LINES);
        if self.budget.lines > max_lines {
            return Err(ImapError::LimitExceeded {
                step,
                what: format!(
                    "the server sent more than {max_lines} response lines to one command"
                ),
                setting: "limits.max_list_items",
                bound: self.limits.max_list_items,
            });
        }
        self.count_bytes(line.len() as u64 + 2, step)?;
        Ok(line)
    }

    fn count_bytes(&mut self, n: u64, step: &'static str) -> Result<(), ImapError> {
        self.budget.bytes = self.budget.bytes.saturating_add(n);
        if self.budget.bytes > MAX_UNTAGGED_BYTES {
            return Err(ImapError::Flooded {
                step,
                what: format!("more than {MAX_UNTAGGED_BYTES} bytes of responses to one command"),
            });
        }
        Ok(())
    }

    /// The wait for the next bytes: the per-answer timeout, or what is left of the
    /// command's total time if less.
    fn wait(&self, step: &'static str) -> Result<Duration, ImapError> {
        let left = self
            .budget
            .deadline
            .saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(self.out_of_time(step));
        }
        Ok(left.min(self.timeout))
    }

    fn out_of_time(&self, step: &'static str) -> ImapError {
        ImapError::LimitExceeded {
            step,
            what: format!(
                "the command ran longer than {} s in all",
                self.limits.command_timeout_secs
            ),
            setting: "limits.command_timeout_secs",
            bound: self.limits.command_timeout_secs,
        }
    }

    /// A timeout of a read: the command's total time if that is what ran out.
    fn timed_out(&self, step: &'static str, what: &'static str) -> ImapError {
        if Instant::now() >= self.budget.deadline {
            self.out_of_time(step)
        } else {
            ImapError::Io {
                step,
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, what),
            }
        }
    }

    /// Copies a literal of `n` bytes from the connection's buffer into `sink`, with the
    /// timeout applied to each read (a large message may take longer than one) and
    /// the command's total time to all of them. Never allocates what `n` says. A
    /// failed write into `sink` is reported as a connection failure while storing; see
    /// [`Self::copy_literal_into`] to tell the two apart.
    async fn copy_literal<W: AsyncWrite + Unpin>(
        &mut self,
        n: u64,
        sink: &mut W,
    ) -> Result<(), ImapError> {
        self.copy_literal_into(n, sink).await.map_err(|e| match e {
            FetchError::Imap(e) => e,
            FetchError::Sink(source) => ImapError::Io {
                step: "storing a fetched message",
                source,
            },
        })
    }

    /// [`Self::copy_literal`], with a failed write into `sink` reported as
    /// [`FetchError::Sink`].
    async fn copy_literal_into<W: AsyncWrite + Unpin>(
        &mut self,
        n: u64,
        sink: &mut W,
    ) -> Result<(), FetchError<std::io::Error>> {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        const STEP: &str = "reading a message";
        let mut left = n;
        while left > 0 {
            let wait = self.wait(STEP)?;
            let chunk = match tokio::time::timeout(wait, self.conn.fill_buf()).await {
                Err(_) => return Err(self.timed_out(STEP, "the server stopped sending").into()),
                Ok(r) => r.map_err(|source| ImapError::Io { step: STEP, source })?,
            };
            if chunk.is_empty() {
                return Err(ImapError::Io {
                    step: STEP,
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the message was cut short",
                    ),
                }
                .into());
            }
            let take = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
            let part = chunk.get(..take).unwrap_or_default();
            sink.write_all(part).await.map_err(FetchError::Sink)?;
            self.conn.consume(take);
            left -= take as u64;
        }
        Ok(())
    }

    /// Reads a literal of `n` bytes (at most a short value's size) into `buf`.
    async fn stream_literal(&mut self, n: u64, buf: &mut Vec<u8>) -> Result<(), ImapError> {
        self.copy_literal(n, buf).await
    }

    /// Reads and drops a literal of `n` bytes, refused before reading when larger than
    /// `max` or past the command's untagged byte budget.
    async fn skip_literal(
        &mut self,
        n: u64,
        max: u64,
        step: &'static str,
    ) -> Result<(), ImapError> {
        if n > max {
            return Err(if max == self.limits.max_message_size {
                ImapError::message_too_large(step, n, &self.limits)
            } else {
                ImapError::protocol(
                    step,
                    format!("a literal of {n} bytes where a short value was expected"),
                )
            });
        }
        // Bytes nobody asked for count against the command's budget.
        self.count_bytes(n, step)?;
        self.copy_literal(n, &mut tokio::io::sink()).await
    }

    async fn write_line(&mut self, line: &str, step: &'static str) -> Result<(), ImapError> {
        self.conn
            .write_line(line.as_bytes())
            .await
            .map_err(|source| ImapError::Io { step, source })
    }

    async fn read_line(&mut self, step: &'static str) -> Result<Vec<u8>, ImapError> {
        self.read_line_max(step, MAX_LINE).await
    }

    async fn read_line_max(
        &mut self,
        step: &'static str,
        max_line: usize,
    ) -> Result<Vec<u8>, ImapError> {
        let wait = self.wait(step)?;
        self.conn
            .read_line(max_line, wait)
            .await
            .map_err(|e| match e {
                LineError::TooLong(max) => {
                    ImapError::protocol(step, format!("a line longer than {max} bytes"))
                }
                LineError::Io(source) if source.kind() == std::io::ErrorKind::TimedOut => {
                    self.timed_out(step, "the server did not answer in time")
                }
                LineError::Io(source) => ImapError::Io { step, source },
                other => ImapError::Io {
                    step,
                    source: std::io::Error::other(other),
                },
            })
    }
}

/// Where [`ImapClient::fetch_many`] puts each message: a writer opened when the server
/// announces the message's `BODY[]` literal, and handed back once the message and the
/// rest of its `FETCH` response have arrived. A writer that is not handed back (the
/// answer turned out to be about a message not asked for, or the fetch failed) is
/// dropped: its message is discarded.
///
/// The sinks' failures come back from [`ImapClient::fetch_many`] as
/// [`FetchError::Sink`] in their own type, never as a connection failure: a full disk
/// is not a reason to reconnect.
pub trait FetchSinks {
    /// Where one message's bytes go.
    type Writer: AsyncWrite + Unpin + Send;
    /// Why the sinks failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A writer for the next message of `size` bytes; `uid` when the server named it
    /// before the body (Dovecot and Exchange do; a server may also send it after).
    fn open(
        &mut self,
        uid: Option<u32>,
        size: u64,
    ) -> impl Future<Output = Result<Self::Writer, Self::Error>> + Send;

    /// Message `uid` (`size` bytes) was written completely into `writer`. Called only
    /// for UIDs asked for, at most once each.
    fn done(
        &mut self,
        uid: u32,
        size: u64,
        writer: Self::Writer,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Writing into one of the writers failed with `error`: the sinks' own error for it.
    fn write_failed(&mut self, error: std::io::Error) -> Self::Error;
}

/// Why [`ImapClient::fetch_many`] failed: the server or connection, or the sinks.
#[derive(Debug, thiserror::Error)]
pub enum FetchError<E> {
    /// The server or the connection failed (drop the session).
    #[error(transparent)]
    Imap(#[from] ImapError),
    /// The sinks failed (the session is in the middle of a response: drop it too).
    #[error(transparent)]
    Sink(E),
}

/// Longest UID set sent in one `UID FETCH` command; longer sets become several
/// commands, sent together (pipelined).
const MAX_UID_SET: usize = 4000;

/// `sorted` (ascending, no duplicates) as IMAP sequence sets (`1:5,8,10:12`), each at
/// most [`MAX_UID_SET`] long.
fn uid_sets(sorted: &[u32]) -> Vec<String> {
    let mut sets = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while let Some(&start) = sorted.get(i) {
        let mut end = start;
        while sorted.get(i + 1) == Some(&end.saturating_add(1)) && end < u32::MAX {
            end += 1;
            i += 1;
        }
        i += 1;
        let part = if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        };
        if !current.is_empty() && current.len() + 1 + part.len() > MAX_UID_SET {
            sets.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(',');
        }
        current.push_str(&part);
    }
    if !current.is_empty() {
        sets.push(current);
    }
    sets
}

/// A message being written by [`ImapClient::fetch_many`].
struct Open<W> {
    size: u64,
    writer: W,
}

/// The UIDs a `UID FETCH` asked for, and which of them were handed over.
struct Asked {
    uids: Vec<u32>,
    handed: Vec<bool>,
}

impl Asked {
    fn new(uids: &[u32]) -> Self {
        let mut sorted = uids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let handed = vec![false; sorted.len()];
        Self {
            uids: sorted,
            handed,
        }
    }

    /// True when `uid` was asked for and not handed over yet.
    fn wants(&self, uid: u32) -> bool {
        self.uids
            .binary_search(&uid)
            .ok()
            .and_then(|i| self.handed.get(i))
            .is_some_and(|handed| !handed)
    }

    fn mark(&mut self, uid: u32) {
        if let Ok(i) = self.uids.binary_search(&uid)
            && let Some(h) = self.handed.get_mut(i)
        {
            *h = true;
        }
    }
}

impl ImapClient {
    /// `UID FETCH uids (UID BODY.PEEK[])` as few pipelined commands, each message's
    /// literal streamed straight into its own writer from `sinks` (one message at a
    /// time; nothing is held in memory beyond the connection's buffer). UIDs the server
    /// no longer has are left out; answers about messages not asked for (or a second
    /// answer about one) are skipped and logged, never handed over. A message
    /// announced larger than [`Limits::max_message_size`] is an error before any of it
    /// is read. Returns how many messages were handed to `sinks`; the sinks' failures
    /// (opening, writing, completing a message) come back as [`FetchError::Sink`].
    ///
    /// After an error the session may be in the middle of a response: drop it.
    pub async fn fetch_many<S: FetchSinks + Send>(
        &mut self,
        uids: &[u32],
        sinks: &mut S,
    ) -> Result<u32, FetchError<S::Error>> {
        const STEP: &str = "UID FETCH";
        let mut asked = Asked::new(uids);
        let mut tags = std::collections::VecDeque::new();
        let mut commands = String::new();
        for set in uid_sets(&asked.uids) {
            let tag = self.tag();
            commands.push_str(&tag);
            commands.push_str(" UID FETCH ");
            commands.push_str(&set);
            commands.push_str(" (UID BODY.PEEK[])\r\n");
            tags.push_back(tag);
        }
        if tags.is_empty() {
            return Ok(0);
        }
        self.begin();
        {
            use tokio::io::AsyncWriteExt as _;
            let sent = async {
                self.conn.write_all(commands.as_bytes()).await?;
                self.conn.flush().await
            };
            sent.await
                .map_err(|source| ImapError::Io { step: STEP, source })?;
        }
        let mut handed = 0u32;
        let mut refused = None;
        // The untagged response in progress (it continues after each literal), what
        // it said so far if it is a FETCH response, and its message.
        let mut in_response = false;
        let mut items: Option<FetchItems> = None;
        let mut open: Option<Open<S::Writer>> = None;
        while let Some(tag) = tags.front() {
            let segment = self.read_untagged_line(STEP, MAX_LINE).await?;
            if !in_response {
                if let Some(c) = response::completion(&segment, tag.as_bytes()) {
                    if c.status != CompletionStatus::Ok && refused.is_none() {
                        refused = Some(printable(c.text));
                    }
                    tags.pop_front();
                    // Each command of the pipeline has its own time and budget.
                    self.begin();
                    continue;
                }
                if response::is_bye(&segment) {
                    return Err(ImapError::bye(&segment).into());
                }
                self.count_continuation(&segment, STEP)?;
                items = FetchItems::start(&segment);
            }
            let item = match items.as_mut() {
                Some(items) => items
                    .feed(response::before_literal(&segment), MAX_LINE)
                    .map_err(|e| ImapError::parse(STEP, e, &self.limits))?,
                None => LiteralItem::Other,
            };
            let Some(literal) = response::literal(&segment) else {
                // The response is complete.
                in_response = false;
                let uid = items.take().and_then(|i| i.uid);
                if let Some(o) = open.take() {
                    let uid =
                        uid.ok_or_else(|| ImapError::protocol(STEP, "a message without its UID"))?;
                    if !asked.wants(uid) {
                        // Dropping the writer discards what was written.
                        tracing::warn!(
                            uid,
                            "the IMAP server sent a message not asked for (or twice): ignored"
                        );
                        continue;
                    }
                    asked.mark(uid);
                    sinks
                        .done(uid, o.size, o.writer)
                        .await
                        .map_err(FetchError::Sink)?;
                    handed += 1;
                }
                continue;
            };
            in_response = true;
            let n = literal.size;
            let Some(i) = items.as_ref() else {
                self.skip_literal(n, MAX_INLINE_LITERAL, STEP).await?;
                continue;
            };
            if n > self.limits.max_message_size {
                return Err(ImapError::message_too_large(STEP, n, &self.limits).into());
            }
            let known = i.uid;
            if open.is_none() && item == LiteralItem::Body(Vec::new()) {
                if let Some(uid) = known.filter(|u| !asked.wants(*u)) {
                    tracing::warn!(
                        uid,
                        "the IMAP server sent a message not asked for (or twice): skipped"
                    );
                    self.skip_literal(n, self.limits.max_message_size, STEP)
                        .await?;
                    continue;
                }
                let mut writer = sinks.open(known, n).await.map_err(FetchError::Sink)?;
                match self.copy_literal_into(n, &mut writer).await {
                    Ok(()) => {}
                    Err(FetchError::Imap(e)) => return Err(e.into()),
                    Err(FetchError::Sink(e)) => {
                        return Err(FetchError::Sink(sinks.write_failed(e)));
                    }
                }
                open = Some(Open { size: n, writer });
            } else {
                self.skip_literal(n, self.limits.max_message_size, STEP)
                    .await?;
            }
        }
        match refused {
            Some(text) => Err(ImapError::Refused { step: STEP, text }.into()),
            None => Ok(handed),
        }
    }
}

#[cfg(test)]
mod fetch_many_tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// Collects each message in memory, keyed by UID.
    #[derive(Default)]
    struct Collect {
        done: BTreeMap<u32, Vec<u8>>,
        hints: Vec<Option<u32>>,
    }

    impl FetchSinks for Collect {
        type Writer = Vec<u8>;
        type Error = std::io::Error;

        async fn open(&mut self, uid: Option<u32>, _size: u64) -> std::io::Result<Vec<u8>> {
            self.hints.push(uid);
            Ok(Vec::new())
        }

        async fn done(&mut self, uid: u32, size: u64, writer: Vec<u8>) -> std::io::Result<()> {
            assert_eq!(writer.len() as u64, size);
            self.done.insert(uid, writer);
            Ok(())
        }

        fn write_failed(&mut self, error: std::io::Error) -> std::io::Error {
            error
        }
    }

    /// A client connected to a scripted server that greets, answers `CAPABILITY`, then
    /// sends `script` after reading the client's commands.
    async fn scripted(script: Vec<u8>) -> ImapClient {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"* OK ready\r\n").await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(b"* CAPABILITY IMAP4rev1\r\nm1 OK done\r\n")
                .await
                .unwrap();
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(&script).await;
            let _ = s.shutdown().await;
            let _ = s.read(&mut buf).await;
        });
        let mut config = ImapConfig::new("127.0.0.1", port, TlsMode::None);
        config.timeout = Duration::from_secs(5);
        ImapClient::connect(&config).await.unwrap()
    }

    #[test]
    fn imap_dates_have_english_months_and_no_padding() {
        use time::macros::date;
        assert_eq!(imap_date(date!(2026 - 12 - 04)), "4-Dec-2026");
        assert_eq!(imap_date(date!(1999 - 01 - 31)), "31-Jan-1999");
    }

    #[test]
    fn uid_sets_are_ranges_split_at_the_limit() {
        assert_eq!(uid_sets(&[1, 2, 3, 5, 7, 9, 10]), ["1:3,5,7,9:10"]);
        assert_eq!(
            uid_sets(&[u32::MAX - 1, u32::MAX]),
            [format!("{}:{}", u32::MAX - 1, u32::MAX)]
        );
        assert!(uid_sets(&[]).is_empty());
        let every_other: Vec<u32> = (1..5000).map(|u| u * 2).collect();
        let sets = uid_sets(&every_other);
        assert!(sets.len() > 1);
        assert!(sets.iter().all(|s| s.len() <= MAX_UID_SET));
        let back: Vec<u32> = sets
            .iter()
            .flat_map(|s| s.split(','))
            .map(|u| u.parse().unwrap())
            .collect();
        assert_eq!(back, every_other);
    }

    #[tokio::test]
    async fn messages_stream_into_their_own_writers_whatever_the_item_order() {
        let script = b"* 1 FETCH (UID 4 BODY[] {5}\r\nhello)\r\n\
* 2 FETCH (FLAGS (\\Seen))\r\n\
* 2 FETCH (BODY[HEADER] {3}\r\nabc BODY[] {6}\r\nworld! UID 6)\r\n\
* 9 EXISTS\r\n\
m2 OK done\r\n"
            .to_vec();
        let mut client = scripted(script).await;
        let mut sinks = Collect::default();
        assert_eq!(client.fetch_many(&[4, 6, 7], &mut sinks).await.unwrap(), 2);
        assert_eq!(sinks.done[&4], b"hello");
        assert_eq!(sinks.done[&6], b"world!");
        assert_eq!(sinks.hints, [Some(4), None]);
    }

    #[tokio::test]
    async fn mail_announced_during_a_listing_ends_the_next_idle_at_once() {
        // The listing's answer reports a new message after the search was made.
        let mut client = scripted(b"* SEARCH 5\r\n* 10 EXISTS\r\nm2 OK done\r\n".to_vec()).await;
        assert_eq!(client.uids_after(4).await.unwrap(), [5]);
        // No IDLE is sent (the server would never announce that mail again): news.
        assert!(client.idle(Duration::from_secs(5)).await.unwrap());
    }

    #[tokio::test]
    async fn a_selects_own_count_is_not_news() {
        let mut client = scripted(
            b"* 10 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\nm2 OK [READ-WRITE] done\r\n".to_vec(),
        )
        .await;
        client.select("INBOX").await.unwrap();
        // IDLE is sent and waits: this server has closed the connection instead.
        assert!(client.idle(Duration::from_secs(5)).await.is_err());
    }

    #[tokio::test]
    async fn answers_about_messages_not_asked_for_are_never_handed_over() {
        // Asked for 1:3; the server answers about 999 (UID before the body), 4242
        // (UID after it), 2 twice, and never about 1 and 3.
        let script = b"* 1 FETCH (UID 999 BODY[] {5}\r\nhello)\r\n\
* 2 FETCH (BODY[] {5}\r\nworld UID 4242)\r\n\
* 3 FETCH (UID 2 BODY[] {3}\r\ntwo)\r\n\
* 3 FETCH (UID 2 BODY[] {5}\r\nagain)\r\n\
m2 OK done\r\n"
            .to_vec();
        let mut client = scripted(script).await;
        let mut sinks = Collect::default();
        assert_eq!(client.fetch_many(&[1, 2, 3], &mut sinks).await.unwrap(), 1);
        assert_eq!(sinks.done.keys().copied().collect::<Vec<_>>(), [2]);
        assert_eq!(sinks.done[&2], b"two");
        assert_eq!(
            sinks.hints,
            [None, Some(2)],
            "999 and the second 2 not opened"
        );
    }

    #[tokio::test]
    async fn a_refusal_and_a_cut_short_literal_are_errors() {
        let mut client = scripted(b"m2 NO [UNAVAILABLE] try again\r\n".to_vec()).await;
        let err = client
            .fetch_many(&[1], &mut Collect::default())
            .await
            .unwrap_err();
        let FetchError::Imap(err) = err else {
            panic!("a refusal is the server's: {err}");
        };
        assert_eq!(err.class(), ErrorClass::Transient, "{err}");
        assert!(matches!(err, ImapError::Refused { .. }), "{err}");

        let mut client = scripted(b"* 1 FETCH (UID 1 BODY[] {100}\r\nshort".to_vec()).await;
        let err = client
            .fetch_many(&[1], &mut Collect::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("reading a message"), "{err}");

        let mut client = scripted(b"* 1 FETCH (BODY[] {2}\r\nhi)\r\nm2 OK\r\n".to_vec()).await;
        let err = client
            .fetch_many(&[1], &mut Collect::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("without its UID"), "{err}");
    }

    /// The sinks' own failure, typed: never taken for the connection's.
    #[derive(Debug, thiserror::Error, PartialEq, Eq)]
    enum Full {
        #[error("opening message {0:?} failed")]
        Open(Option<u32>),
        #[error("writing failed: {0}")]
        Write(String),
        #[error("completing message {0} failed")]
        Done(u32),
    }

    /// Writes that fail with "no space left on device".
    struct NoSpace;

    impl AsyncWrite for NoSpace {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Ready(Err(std::io::ErrorKind::StorageFull.into()))
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Sinks failing at one step: 0 opening, 1 writing, 2 completing.
    struct Failing(u8);

    impl FetchSinks for Failing {
        type Writer = std::pin::Pin<Box<dyn AsyncWrite + Send>>;
        type Error = Full;

        async fn open(&mut self, uid: Option<u32>, _size: u64) -> Result<Self::Writer, Full> {
            match self.0 {
                0 => Err(Full::Open(uid)),
                1 => Ok(Box::pin(NoSpace)),
                _ => Ok(Box::pin(tokio::io::sink())),
            }
        }

        async fn done(&mut self, uid: u32, _size: u64, _writer: Self::Writer) -> Result<(), Full> {
            Err(Full::Done(uid))
        }

        fn write_failed(&mut self, error: std::io::Error) -> Full {
            Full::Write(error.kind().to_string())
        }
    }

    #[tokio::test]
    async fn the_sinks_failures_come_back_as_theirs_not_as_the_connections() {
        let script = b"* 1 FETCH (UID 4 BODY[] {5}\r\nhello)\r\nm2 OK done\r\n".to_vec();
        for (step, expected) in [
            (0, Full::Open(Some(4))),
            (
                1,
                Full::Write(
                    std::io::Error::from(std::io::ErrorKind::StorageFull)
                        .kind()
                        .to_string(),
                ),
            ),
            (2, Full::Done(4)),
        ] {
            let mut client = scripted(script.clone()).await;
            let err = client
                .fetch_many(&[4], &mut Failing(step))
                .await
                .unwrap_err();
            match err {
                FetchError::Sink(e) => assert_eq!(e, expected),
                FetchError::Imap(e) => panic!("step {step}: taken for the connection's: {e}"),
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        #[test]
        fn hostile_responses_never_panic(
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..400),
            prefix in "(\\* [0-9]{1,3} FETCH \\((UID [0-9]{1,12} )?BODY\\[\\] \\{[0-9]{1,25}\\+?\\}\r\n)?",
        ) {
            let mut script = prefix.into_bytes();
            script.extend(body);
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut client = scripted(script).await;
                let _ = client.fetch_many(&[1, 2, 3], &mut Collect::default()).await;
            });
        }
    }
}
