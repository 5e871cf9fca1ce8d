//! The IMAP client.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailbridge_tls::{LineError, MailStream, TlsSettings};
use mailbridge_types::ErrorClass;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};

use crate::response::{
    Completion, CompletionStatus, MAX_INLINE_LITERAL, MAX_LINE, MAX_UNTAGGED_BYTES, Meaning,
    parse_completion, response_code, trailing_literal, untagged_number,
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
}

impl ImapConfig {
    /// A configuration with a 60 s timeout and the system's roots.
    pub fn new(host: &str, port: u16, tls: TlsMode) -> Self {
        Self {
            host: host.to_owned(),
            port,
            tls,
            trust: TlsSettings::default(),
            timeout: Duration::from_mins(1),
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

/// What failed.
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
        }
    }

    /// The meaning of a refusal.
    pub fn meaning(&self) -> Option<Meaning> {
        match self {
            ImapError::Refused { text, .. } => Some(Meaning::of(text)),
            _ => None,
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

/// A connected IMAP session.
#[derive(Debug)]
pub struct ImapClient {
    conn: MailStream,
    next_tag: u32,
    timeout: Duration,
    /// Capabilities from the greeting or the last `CAPABILITY`.
    pub capabilities: Vec<String>,
    /// `UIDNEXT` of the selected folder (0 when unknown), to search it in windows.
    selected_uid_next: u32,
    /// How the connection is secured.
    tls: TlsMode,
}

/// UIDs searched per `UID SEARCH` while the folder's `UIDNEXT` is ahead: the answer
/// stays under the response line limit (5,000 ten-digit numbers are 55 KB).
const SEARCH_WINDOW: u32 = 5_000;

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
        return Err(ImapError::Protocol {
            step: "quoting",
            detail: "a name or password with a line break".into(),
        });
    }
    Ok(format!(
        "\"{}\"",
        s.replace('\\', "\\\\").replace('"', "\\\"")
    ))
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
            selected_uid_next: 0,
            tls,
            timeout: config.timeout,
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
        if greeting.starts_with("* BYE") {
            return Err(ImapError::Bye(greeting));
        }
        if !greeting.starts_with("* OK") && !greeting.starts_with("* PREAUTH") {
            return Err(ImapError::Protocol {
                step: "the greeting",
                detail: greeting.chars().take(200).collect(),
            });
        }
        client.capability().await?;
        if tls == TlsMode::StartTls {
            client.run("STARTTLS", "STARTTLS").await?;
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
        let (untagged, _) = self.run("CAPABILITY", "CAPABILITY").await?;
        if let Some(line) = untagged
            .iter()
            .find(|l| l.to_ascii_uppercase().starts_with("* CAPABILITY "))
        {
            self.capabilities = line.split_whitespace().skip(2).map(str::to_owned).collect();
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
                self.run(&command, "LOGIN").await.map(|_| ())
            }
        }?;
        // Capabilities often change after login.
        self.capability().await
    }

    async fn sasl(&mut self, mechanism: &str, blob: &str) -> Result<(), ImapError> {
        let tag = self.tag();
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
            if !line.starts_with('+') {
                return self.finish_sasl(&tag, Some(line)).await;
            }
            self.write_line(blob, "AUTHENTICATE").await?;
        }
        self.finish_sasl(&tag, None).await
    }

    async fn finish_sasl(
        &mut self,
        tag: &str,
        mut pending: Option<String>,
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
                return Err(ImapError::Protocol {
                    step: "AUTHENTICATE",
                    detail: "more than 1,000 lines without a completion".into(),
                });
            }
            if line.starts_with('+') {
                challenges += 1;
                if challenges > 3 {
                    return Err(ImapError::Protocol {
                        step: "AUTHENTICATE",
                        detail: "the server keeps asking for more after the token".into(),
                    });
                }
                // An error challenge (Gmail's JSON): answer empty to get the NO.
                self.write_line("", "AUTHENTICATE").await?;
                continue;
            }
            if let Some(c) = parse_completion(&line, tag) {
                return match c.status {
                    CompletionStatus::Ok => Ok(()),
                    _ => Err(ImapError::Refused {
                        step: "AUTHENTICATE",
                        text: c.text,
                    }),
                };
            }
        }
    }

    /// `SELECT` a folder.
    pub async fn select(&mut self, folder: &str) -> Result<Folder, ImapError> {
        let (untagged, done) = self
            .run(&format!("SELECT {}", quote(folder)?), "SELECT")
            .await?;
        let mut f = Folder {
            uid_validity: 0,
            uid_next: 0,
            exists: 0,
        };
        for line in untagged
            .iter()
            .map(String::as_str)
            .chain([done.text.as_str()])
        {
            if let Some(v) = response_code(line, "UIDVALIDITY").and_then(|v| v.parse().ok()) {
                f.uid_validity = v;
            }
            if let Some(v) = response_code(line, "UIDNEXT").and_then(|v| v.parse().ok()) {
                f.uid_next = v;
            }
            if let Some(n) = untagged_number(line, "EXISTS") {
                f.exists = n;
            }
        }
        if f.uid_validity == 0 {
            return Err(ImapError::Protocol {
                step: "SELECT",
                detail: "no UIDVALIDITY".into(),
            });
        }
        self.selected_uid_next = f.uid_next;
        Ok(f)
    }

    /// UIDs of the selected folder above `last_uid` (the checkpoint), ascending.
    pub async fn uids_after(&mut self, last_uid: u32) -> Result<Vec<u32>, ImapError> {
        // Windows of UIDs up to UIDNEXT, then the rest (new arrivals included), so a
        // large folder's answer never outgrows the line limit.
        let mut from = last_uid.saturating_add(1);
        let mut uids = Vec::new();
        while self.selected_uid_next > from && self.selected_uid_next - from > SEARCH_WINDOW {
            let to = from + SEARCH_WINDOW - 1;
            uids.extend(self.search_uids(&format!("UID {from}:{to}")).await?);
            from = to + 1;
        }
        uids.extend(self.search_uids(&format!("UID {from}:*")).await?);
        uids.retain(|u| *u > last_uid);
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// UIDs of the selected folder whose internal date is on or after `day`
    /// (`UID SEARCH SINCE`, [RFC 3501 §6.4.4](https://www.rfc-editor.org/rfc/rfc3501#section-6.4.4):
    /// the date only, time and zone disregarded), ascending; searched in windows of
    /// UIDs like [`Self::uids_after`].
    pub async fn uids_received_since(&mut self, day: time::Date) -> Result<Vec<u32>, ImapError> {
        let since = imap_date(day);
        let mut from = 1u32;
        let mut uids = Vec::new();
        while self.selected_uid_next > from && self.selected_uid_next - from > SEARCH_WINDOW {
            let to = from + SEARCH_WINDOW - 1;
            uids.extend(
                self.search_uids(&format!("UID {from}:{to} SINCE {since}"))
                    .await?,
            );
            from = to + 1;
        }
        uids.extend(
            self.search_uids(&format!("UID {from}:* SINCE {since}"))
                .await?,
        );
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    async fn search_uids(&mut self, criteria: &str) -> Result<Vec<u32>, ImapError> {
        let (untagged, _) = self
            .run(&format!("UID SEARCH {criteria}"), "UID SEARCH")
            .await?;
        Ok(untagged
            .iter()
            .filter(|l| l.to_ascii_uppercase().starts_with("* SEARCH"))
            .flat_map(|l| {
                l.split_whitespace()
                    .skip(2)
                    .filter_map(|n| n.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect())
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
    async fn fetch_section<W: AsyncWrite + Unpin>(
        &mut self,
        uid: u32,
        section: &str,
        sink: &mut W,
    ) -> Result<Option<u64>, ImapError> {
        let tag = self.tag();
        self.write_line(
            &format!("{tag} UID FETCH {uid} (UID BODY.PEEK[{section}])"),
            "UID FETCH",
        )
        .await?;
        let wanted = format!("BODY[{section}]");
        let mut size = None;
        // Inside a FETCH response that continues after a literal: the next line is
        // the rest of it, which may hold more literals (`BODY[]` need not be first).
        let mut in_fetch = false;
        loop {
            let line = self.read_line("UID FETCH").await?;
            if !in_fetch {
                if let Some(c) = parse_completion(&line, &tag) {
                    return match c.status {
                        CompletionStatus::Ok => Ok(size),
                        _ => Err(ImapError::Refused {
                            step: "UID FETCH",
                            text: c.text,
                        }),
                    };
                }
                if line.starts_with("* BYE") {
                    return Err(ImapError::Bye(line));
                }
            }
            let Some(n) = trailing_literal(&line) else {
                in_fetch = false;
                continue;
            };
            let upper = line.to_ascii_uppercase();
            in_fetch = in_fetch || (upper.starts_with("* ") && upper.contains(" FETCH "));
            // The literal is the section when the item just before it is `BODY[...]`.
            let item = upper
                .get(..upper.rfind('{').unwrap_or(0))
                .unwrap_or_default();
            if in_fetch && item.trim_end().ends_with(wanted.as_str()) && size.is_none() {
                self.stream_literal(n, sink).await?;
                size = Some(n);
            } else {
                self.skip_literal(n).await?;
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
        self.run(&format!("UID STORE {uid} {op} (\\Seen)"), "UID STORE")
            .await
            .map(|_| ())
    }

    /// Moves a message to another folder (`UID MOVE`, or copy + delete + expunge).
    pub async fn move_to(&mut self, uid: u32, folder: &str) -> Result<(), ImapError> {
        let target = quote(folder)?;
        if self.has_capability("MOVE") {
            return self
                .run(&format!("UID MOVE {uid} {target}"), "UID MOVE")
                .await
                .map(|_| ());
        }
        self.run(&format!("UID COPY {uid} {target}"), "UID COPY")
            .await?;
        self.delete(uid).await
    }

    /// Deletes a message (`\Deleted` then `UID EXPUNGE` of that UID only).
    pub async fn delete(&mut self, uid: u32) -> Result<(), ImapError> {
        self.run(
            &format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"),
            "UID STORE",
        )
        .await?;
        if self.has_capability("UIDPLUS") {
            self.run(&format!("UID EXPUNGE {uid}"), "UID EXPUNGE")
                .await
                .map(|_| ())
        } else {
            self.run("EXPUNGE", "EXPUNGE").await.map(|_| ())
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
        self.write_line(
            &format!("{tag} APPEND {}{flags} {{{size}}}", quote(folder)?),
            "APPEND",
        )
        .await?;
        let line = self.read_line("APPEND").await?;
        if !line.starts_with('+') {
            let text = parse_completion(&line, &tag).map_or(line, |c| c.text);
            return Err(ImapError::Refused {
                step: "APPEND",
                text,
            });
        }
        let copied = tokio::io::copy(&mut message.take(size), &mut self.conn)
            .await
            .map_err(|source| ImapError::Io {
                step: "APPEND",
                source,
            })?;
        if copied != size {
            return Err(ImapError::Protocol {
                step: "APPEND",
                detail: format!("the message had {copied} bytes, not the {size} announced"),
            });
        }
        self.write_line("", "APPEND").await?;
        let (_, done) = self.collect(&tag, "APPEND").await?;
        Ok(response_code(&done.text, "APPENDUID")
            .and_then(|v| v.split_whitespace().nth(1)?.parse().ok()))
    }

    /// `IDLE` until the server reports new mail (`EXISTS`) or `wait` passes; true when
    /// new mail arrived.
    pub async fn idle(&mut self, wait: Duration) -> Result<bool, ImapError> {
        let tag = self.tag();
        self.write_line(&format!("{tag} IDLE"), "IDLE").await?;
        let first = self.read_line("IDLE").await?;
        if !first.starts_with('+') {
            let text = parse_completion(&first, &tag).map_or(first, |c| c.text);
            return Err(ImapError::Refused { step: "IDLE", text });
        }
        let deadline = tokio::time::Instant::now() + wait;
        let mut new_mail = false;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
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
                    let text = String::from_utf8_lossy(&line).into_owned();
                    if text.starts_with("* BYE") {
                        return Err(ImapError::Bye(text));
                    }
                    if untagged_number(&text, "EXISTS").is_some()
                        || untagged_number(&text, "RECENT").is_some()
                    {
                        new_mail = true;
                        break;
                    }
                }
            }
        }
        self.write_line("DONE", "IDLE").await?;
        self.collect(&tag, "IDLE").await?;
        Ok(new_mail)
    }

    /// `LOGOUT`.
    pub async fn logout(mut self) -> Result<(), ImapError> {
        self.run("LOGOUT", "LOGOUT").await.map(|_| ())
    }

    fn tag(&mut self) -> String {
        let t = format!("m{}", self.next_tag);
        self.next_tag += 1;
        t
    }

    /// Sends a command and reads its untagged responses and completion.
    async fn run(
        &mut self,
        command: &str,
        step: &'static str,
    ) -> Result<(Vec<String>, Completion), ImapError> {
        let tag = self.tag();
        self.write_line(&format!("{tag} {command}"), step).await?;
        self.collect(&tag, step).await
    }

    async fn collect(
        &mut self,
        tag: &str,
        step: &'static str,
    ) -> Result<(Vec<String>, Completion), ImapError> {
        let mut untagged = Vec::new();
        let mut kept = 0usize;
        loop {
            let line = self.read_line_with_literals(step).await?;
            if let Some(c) = parse_completion(&line, tag) {
                return match c.status {
                    CompletionStatus::Ok => Ok((untagged, c)),
                    _ => Err(ImapError::Refused { step, text: c.text }),
                };
            }
            if line.starts_with("* BYE") && step != "LOGOUT" {
                return Err(ImapError::Bye(line));
            }
            if untagged.len() < 100_000 && kept < MAX_UNTAGGED_BYTES {
                kept += line.len();
                untagged.push(line);
            }
        }
    }

    /// A response line with any (small) literals read inline.
    async fn read_line_with_literals(&mut self, step: &'static str) -> Result<String, ImapError> {
        let mut line = self.read_line(step).await?;
        while let Some(n) = trailing_literal(&line) {
            // The bound is for the whole response: many literals must not add up.
            if n > MAX_INLINE_LITERAL.saturating_sub(line.len() as u64) {
                return Err(ImapError::Protocol {
                    step,
                    detail: format!("a literal of {n} bytes where a short value was expected"),
                });
            }
            let mut buf = Vec::new();
            self.stream_literal(n, &mut buf).await?;
            line.push_str(&String::from_utf8_lossy(&buf));
            line.push_str(&self.read_line(step).await?);
        }
        Ok(line)
    }

    async fn stream_literal<W: AsyncWrite + Unpin>(
        &mut self,
        n: u64,
        sink: &mut W,
    ) -> Result<(), ImapError> {
        let mut limited = (&mut self.conn).take(n);
        let copied = tokio::time::timeout(self.timeout, tokio::io::copy(&mut limited, sink))
            .await
            .map_err(|_| ImapError::Io {
                step: "reading a message",
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the server stopped sending",
                ),
            })?
            .map_err(|source| ImapError::Io {
                step: "reading a message",
                source,
            })?;
        if copied == n {
            Ok(())
        } else {
            Err(ImapError::Io {
                step: "reading a message",
                source: std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the message was cut short",
                ),
            })
        }
    }

    async fn skip_literal(&mut self, n: u64) -> Result<(), ImapError> {
        self.stream_literal(n, &mut tokio::io::sink()).await
    }

    async fn write_line(&mut self, line: &str, step: &'static str) -> Result<(), ImapError> {
        self.conn
            .write_line(line.as_bytes())
            .await
            .map_err(|source| ImapError::Io { step, source })
    }

    async fn read_line(&mut self, step: &'static str) -> Result<String, ImapError> {
        let line = self
            .conn
            .read_line(MAX_LINE, self.timeout)
            .await
            .map_err(|e| match e {
                LineError::TooLong(max) => ImapError::Protocol {
                    step,
                    detail: format!("a line longer than {max} bytes"),
                },
                LineError::Io(source) => ImapError::Io { step, source },
                other => ImapError::Io {
                    step,
                    source: std::io::Error::other(other),
                },
            })?;
        Ok(String::from_utf8_lossy(&line).into_owned())
    }
}

/// Where [`ImapClient::fetch_many`] puts each message: a writer opened when the server
/// announces the message's `BODY[]` literal, and handed back once the message and the
/// rest of its `FETCH` response have arrived.
pub trait FetchSinks {
    /// Where one message's bytes go.
    type Writer: AsyncWrite + Unpin + Send;

    /// A writer for the next message of `size` bytes; `uid` when the server named it
    /// before the body (Dovecot and Exchange do; a server may also send it after).
    fn open(
        &mut self,
        uid: Option<u32>,
        size: u64,
    ) -> impl Future<Output = std::io::Result<Self::Writer>> + Send;

    /// Message `uid` (`size` bytes) was written completely into `writer`.
    fn done(
        &mut self,
        uid: u32,
        size: u64,
        writer: Self::Writer,
    ) -> impl Future<Output = std::io::Result<()>> + Send;
}

/// Longest UID set sent in one `UID FETCH` command; longer sets become several
/// commands, sent together (pipelined).
const MAX_UID_SET: usize = 4000;

/// `uids` as IMAP sequence sets (`1:5,8,10:12`), each at most [`MAX_UID_SET`] long.
fn uid_sets(uids: &[u32]) -> Vec<String> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
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

/// The UID of an untagged `* n FETCH (...)` response (`UID 17` among its items), or
/// `None` when the line is not a FETCH response or names no UID.
fn fetch_response_uid(response: &str) -> Option<u32> {
    let mut words = response.split_whitespace();
    if words.next() != Some("*") {
        return None;
    }
    words.next()?.parse::<u32>().ok()?;
    if !words.next()?.eq_ignore_ascii_case("FETCH") {
        return None;
    }
    let mut items = words
        .flat_map(|w| w.split(['(', ')']))
        .filter(|w| !w.is_empty());
    while let Some(item) = items.next() {
        if item.eq_ignore_ascii_case("UID") {
            return items.next()?.parse().ok();
        }
    }
    None
}

/// True when `segment` (a response line up to a literal) ends with `BODY[]`, so the
/// literal that follows is the whole message.
fn announces_body(segment: &str) -> bool {
    let Some(open) = segment.rfind('{') else {
        return false;
    };
    segment
        .get(..open)
        .is_some_and(|s| s.trim_end().to_ascii_uppercase().ends_with("BODY[]"))
}

/// A message being written by [`ImapClient::fetch_many`].
struct Open<W> {
    uid: Option<u32>,
    size: u64,
    writer: W,
}

impl ImapClient {
    /// `UID FETCH uids (UID BODY.PEEK[])` as few pipelined commands, each message's
    /// literal streamed straight into its own writer from `sinks` (one message at a
    /// time; nothing is held in memory beyond the connection's buffer). UIDs the server
    /// no longer has are left out. Returns how many messages were handed to `sinks`.
    ///
    /// After an error the session may be in the middle of a response: drop it.
    pub async fn fetch_many<S: FetchSinks + Send>(
        &mut self,
        uids: &[u32],
        sinks: &mut S,
    ) -> Result<u32, ImapError> {
        const STEP: &str = "UID FETCH";
        let mut tags = std::collections::VecDeque::new();
        let mut commands = String::new();
        for set in uid_sets(uids) {
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
        // The current untagged response without its literals, and its message.
        let mut response = String::new();
        let mut open: Option<Open<S::Writer>> = None;
        while let Some(tag) = tags.front() {
            let segment = self.read_line(STEP).await?;
            if response.is_empty() {
                if let Some(c) = parse_completion(&segment, tag) {
                    if c.status != CompletionStatus::Ok && refused.is_none() {
                        refused = Some(c.text);
                    }
                    tags.pop_front();
                    continue;
                }
                if segment.starts_with("* BYE") {
                    return Err(ImapError::Bye(segment));
                }
            }
            if response.len() + segment.len() > MAX_LINE {
                return Err(ImapError::Protocol {
                    step: STEP,
                    detail: format!("a response longer than {MAX_LINE} bytes without literals"),
                });
            }
            response.push_str(&segment);
            let Some(n) = trailing_literal(&segment) else {
                // The response is complete.
                if let Some(o) = open.take() {
                    let uid = o
                        .uid
                        .or_else(|| fetch_response_uid(&response))
                        .ok_or_else(|| ImapError::Protocol {
                            step: STEP,
                            detail: "a message without its UID".into(),
                        })?;
                    sinks
                        .done(uid, o.size, o.writer)
                        .await
                        .map_err(|source| ImapError::Io {
                            step: "storing a fetched message",
                            source,
                        })?;
                    handed += 1;
                }
                response.clear();
                continue;
            };
            if open.is_none() && announces_body(&segment) && is_fetch_response(&response) {
                let uid = fetch_response_uid(&response);
                let mut writer = sinks.open(uid, n).await.map_err(|source| ImapError::Io {
                    step: "storing a fetched message",
                    source,
                })?;
                self.copy_literal(n, &mut writer).await?;
                open = Some(Open {
                    uid,
                    size: n,
                    writer,
                });
            } else {
                self.skip_literal(n).await?;
            }
        }
        match refused {
            Some(text) => Err(ImapError::Refused { step: STEP, text }),
            None => Ok(handed),
        }
    }

    /// Copies a literal of `n` bytes from the connection's buffer into `sink`, with the
    /// timeout applied to each read (a large message may take longer than one).
    async fn copy_literal<W: AsyncWrite + Unpin>(
        &mut self,
        n: u64,
        sink: &mut W,
    ) -> Result<(), ImapError> {
        use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
        const STEP: &str = "reading a message";
        let mut left = n;
        while left > 0 {
            let chunk = tokio::time::timeout(self.timeout, self.conn.fill_buf())
                .await
                .map_err(|_| ImapError::Io {
                    step: STEP,
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the server stopped sending",
                    ),
                })?
                .map_err(|source| ImapError::Io { step: STEP, source })?;
            if chunk.is_empty() {
                return Err(ImapError::Io {
                    step: STEP,
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the message was cut short",
                    ),
                });
            }
            let take = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
            let part = chunk.get(..take).unwrap_or_default();
            sink.write_all(part).await.map_err(|source| ImapError::Io {
                step: "storing a fetched message",
                source,
            })?;
            self.conn.consume(take);
            left -= take as u64;
        }
        Ok(())
    }
}

/// True when `response` starts as an untagged FETCH response (`* n FETCH`).
fn is_fetch_response(response: &str) -> bool {
    let mut words = response.split_whitespace();
    words.next() == Some("*")
        && words.next().is_some_and(|n| n.parse::<u32>().is_ok())
        && words
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case("FETCH"))
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

        async fn open(&mut self, uid: Option<u32>, _size: u64) -> std::io::Result<Vec<u8>> {
            self.hints.push(uid);
            Ok(Vec::new())
        }

        async fn done(&mut self, uid: u32, size: u64, writer: Vec<u8>) -> std::io::Result<()> {
            assert_eq!(writer.len() as u64, size);
            self.done.insert(uid, writer);
            Ok(())
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
        assert_eq!(uid_sets(&[5, 1, 2, 3, 9, 10, 7]), ["1:3,5,7,9:10"]);
        assert_eq!(
            uid_sets(&[u32::MAX, u32::MAX - 1]),
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

    #[test]
    fn uid_of_fetch_responses() {
        assert_eq!(fetch_response_uid("* 3 FETCH (UID 17 BODY[] {5}"), Some(17));
        assert_eq!(fetch_response_uid("* 3 FETCH (BODY[] {5})(UID 9)"), Some(9));
        assert_eq!(
            fetch_response_uid("* 3 FETCH (FLAGS (\\Seen) UID 4)"),
            Some(4)
        );
        assert_eq!(fetch_response_uid("* 3 EXPUNGE"), None);
        assert_eq!(fetch_response_uid("* 3 FETCH (FLAGS (UID))"), None);
        assert!(announces_body("* 1 FETCH (UID 2 BODY[] {10}"));
        assert!(!announces_body("* 1 FETCH (UID 2 BODY[HEADER] {10}"));
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
    async fn a_refusal_and_a_cut_short_literal_are_errors() {
        let mut client = scripted(b"m2 NO [UNAVAILABLE] try again\r\n".to_vec()).await;
        let err = client
            .fetch_many(&[1], &mut Collect::default())
            .await
            .unwrap_err();
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
