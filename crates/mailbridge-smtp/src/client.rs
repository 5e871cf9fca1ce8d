//! The SMTP submission client: connect (plain, STARTTLS, implicit TLS), EHLO,
//! authenticate, send with `DATA` streamed from a reader.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailbridge_tls::{LineError, MailStream, TlsSettings};
use mailbridge_types::ErrorClass;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use crate::reply::{MAX_LINE, MAX_LINES, Meaning, Reply, parse_line};

pub use mailbridge_types::config::TlsMode;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// Trusted roots (the system's plus an extra CA) and the certificate name.
    pub trust: TlsSettings,
    /// The name sent with EHLO.
    pub ehlo_name: String,
    /// Timeout for each read (the server's answer to one command).
    pub timeout: Duration,
}

impl SmtpConfig {
    /// A configuration with a 60 s timeout and `mailbridge.localhost` as EHLO name.
    pub fn new(host: &str, port: u16, tls: TlsMode) -> Self {
        Self {
            host: host.to_owned(),
            port,
            tls,
            trust: TlsSettings::default(),
            ehlo_name: "mailbridge.localhost".to_owned(),
            timeout: Duration::from_mins(1),
        }
    }
}

/// How to sign in.
pub enum Credentials {
    /// `AUTH XOAUTH2`: the mailbox (`user=`) and an access token.
    XOAuth2 { user: String, token: SecretString },
    /// `AUTH PLAIN`.
    Plain {
        user: String,
        password: SecretString,
    },
    /// `AUTH LOGIN`.
    Login {
        user: String,
        password: SecretString,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, user) = match self {
            Credentials::XOAuth2 { user, .. } => ("XOAuth2", user),
            Credentials::Plain { user, .. } => ("Plain", user),
            Credentials::Login { user, .. } => ("Login", user),
        };
        f.debug_struct(kind)
            .field("user", user)
            .finish_non_exhaustive()
    }
}

/// What failed, with the server's reply and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SmtpError {
    #[error("could not connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS with {host} failed{}", mailbridge_tls::ca_hint(source))]
    Tls {
        host: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connection to the SMTP server failed during {step}")]
    Io {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the SMTP server sent something that is not SMTP during {step}: {detail}")]
    Protocol { step: &'static str, detail: String },
    #[error("{step} was refused: {} {}. {}", reply.code, reply.text(), reply.meaning().fix())]
    Refused { step: &'static str, reply: Reply },
    /// `RCPT TO` refused for one recipient: the message was not sent to anyone.
    #[error("RCPT TO:<{address}> was refused: {} {}. {}", reply.code, reply.text(), reply.meaning().fix())]
    RecipientRefused { address: String, reply: Reply },
    #[error("the server does not offer {0} (it offers: {1})")]
    Unsupported(String, String),
    #[error(
        "{0:?} cannot be an envelope address (line breaks, angle brackets or spaces): fix the sender or recipient"
    )]
    InvalidAddress(String),
}

impl SmtpError {
    /// What to do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            SmtpError::Connect { .. } | SmtpError::Io { .. } | SmtpError::Protocol { .. } => {
                ErrorClass::Transient
            }
            SmtpError::Tls { .. } | SmtpError::Unsupported(..) => ErrorClass::Misconfigured,
            SmtpError::Refused { reply, .. } | SmtpError::RecipientRefused { reply, .. } => {
                reply.meaning().class()
            }
            SmtpError::InvalidAddress(_) => ErrorClass::Permanent,
        }
    }

    /// The server's refusal, if it refused.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            SmtpError::Refused { reply, .. } | SmtpError::RecipientRefused { reply, .. } => {
                Some(reply)
            }
            _ => None,
        }
    }

    /// The meaning of the server's refusal, if it refused.
    pub fn meaning(&self) -> Option<Meaning> {
        match self {
            SmtpError::Refused { reply, .. } | SmtpError::RecipientRefused { reply, .. } => {
                Some(reply.meaning())
            }
            _ => None,
        }
    }
}

/// A connected SMTP session.
pub struct SmtpClient {
    conn: MailStream,
    timeout: Duration,
    /// EHLO keywords after the last EHLO (`AUTH PLAIN LOGIN XOAUTH2`, `SIZE 35882577`, ...).
    pub capabilities: Vec<String>,
    /// How the connection is secured.
    tls: TlsMode,
}

impl std::fmt::Debug for SmtpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpClient")
            .field("tls", &self.conn.is_tls())
            .field("capabilities", &self.capabilities)
            .finish_non_exhaustive()
    }
}

fn tls_error(e: mailbridge_tls::TlsError) -> SmtpError {
    SmtpError::Tls {
        host: e.name,
        source: e.source,
    }
}

/// The most recipients whose envelope is pipelined in one write: their replies
/// (about 40 bytes each) are read only after the whole envelope is written, so they must
/// fit in the socket buffers or both sides would wait on each other. Exchange Online
/// takes 500 recipients per message at most.
pub const MAX_PIPELINED_RECIPIENTS: usize = 1000;

/// `RCPT TO` succeeded: 250, or 251 "user not local; will forward" (RFC 5321
/// §4.2.2 counts both as success).
fn recipient_accepted(reply: &Reply) -> bool {
    matches!(reply.code, 250 | 251)
}

impl SmtpClient {
    /// Connects, reads the greeting, says EHLO, and upgrades with STARTTLS when asked.
    /// With [`TlsMode::Auto`]: implicit TLS, or STARTTLS when the server answers the
    /// handshake in plain text ([`SmtpClient::tls_mode`] tells which).
    pub async fn connect(config: &SmtpConfig) -> Result<Self, SmtpError> {
        mailbridge_tls::connect_in_mode(
            config.tls,
            |tls| Self::connect_as(config, tls),
            |e| matches!(e, SmtpError::Tls { source, .. } if mailbridge_tls::is_not_tls(source)),
        )
        .await
    }

    /// How this connection is secured (never [`TlsMode::Auto`]).
    pub fn tls_mode(&self) -> TlsMode {
        self.tls
    }

    async fn connect_as(config: &SmtpConfig, tls: TlsMode) -> Result<Self, SmtpError> {
        let addr = format!("{}:{}", config.host, config.port);
        let tcp = mailbridge_tls::connect_tcp(&config.host, config.port, config.timeout)
            .await
            .map_err(|source| SmtpError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let conn = if tls == TlsMode::Implicit {
            MailStream::implicit(&config.trust, &config.host, tcp, config.timeout)
                .await
                .map_err(tls_error)?
        } else {
            MailStream::plain(tcp)
        };
        let mut client = Self {
            conn,
            timeout: config.timeout,
            capabilities: Vec::new(),
            tls,
        };
        let greeting = match client.read_reply("greeting").await {
            Err(SmtpError::Io { step, source }) if tls != TlsMode::Implicit => {
                return Err(SmtpError::Io {
                    step,
                    source: mailbridge_tls::no_greeting(source),
                });
            }
            other => other?,
        };
        if greeting.code != 220 {
            return Err(SmtpError::Refused {
                step: "the greeting",
                reply: greeting,
            });
        }
        client.ehlo(&config.ehlo_name).await?;
        if tls == TlsMode::StartTls {
            if !client.has_capability("STARTTLS") {
                return Err(SmtpError::Unsupported(
                    "STARTTLS".into(),
                    client.capabilities.join(", "),
                ));
            }
            client.command("STARTTLS", "STARTTLS", 220).await?;
            client
                .conn
                .start_tls(&config.trust, &config.host, config.timeout)
                .await
                .map_err(tls_error)?;
            client.ehlo(&config.ehlo_name).await?;
        }
        Ok(client)
    }

    /// True when EHLO listed `keyword` (case-insensitive, first word).
    pub fn has_capability(&self, keyword: &str) -> bool {
        self.capabilities.iter().any(|c| {
            c.split_whitespace()
                .next()
                .is_some_and(|k| k.eq_ignore_ascii_case(keyword))
        })
    }

    /// The SASL mechanisms offered after `AUTH`.
    pub fn auth_mechanisms(&self) -> Vec<String> {
        self.capabilities
            .iter()
            .filter_map(|c| {
                let mut words = c.split_whitespace();
                (words.next()?.eq_ignore_ascii_case("AUTH"))
                    .then(|| words.map(str::to_ascii_uppercase).collect::<Vec<_>>())
            })
            .flatten()
            .collect()
    }

    async fn ehlo(&mut self, name: &str) -> Result<(), SmtpError> {
        let reply = self.command(&format!("EHLO {name}"), "EHLO", 250).await?;
        self.capabilities = reply.lines.into_iter().skip(1).collect();
        Ok(())
    }

    /// Signs in.
    pub async fn authenticate(&mut self, credentials: &Credentials) -> Result<(), SmtpError> {
        let offered = self.auth_mechanisms();
        let need = match credentials {
            Credentials::XOAuth2 { .. } => "XOAUTH2",
            Credentials::Plain { .. } => "PLAIN",
            Credentials::Login { .. } => "LOGIN",
        };
        if !offered.iter().any(|m| m == need) {
            return Err(SmtpError::Unsupported(
                format!("AUTH {need}"),
                offered.join(" "),
            ));
        }
        match credentials {
            Credentials::XOAuth2 { user, token } => {
                let blob = STANDARD.encode(format!(
                    "user={user}\x01auth=Bearer {}\x01\x01",
                    token.expose_secret()
                ));
                // Exchange accepts the initial response on the AUTH line (RFC 4954 allows
                // 12,288 octets); a JSON error challenge (334) is answered empty.
                self.write_line(&format!("AUTH XOAUTH2 {blob}"), "AUTH")
                    .await?;
                let mut reply = self.read_reply("AUTH").await?;
                if reply.code == 334 {
                    self.write_line("", "AUTH").await?;
                    reply = self.read_reply("AUTH").await?;
                }
                expect(reply, "AUTH XOAUTH2", 235).map(|_| ())
            }
            Credentials::Plain { user, password } => {
                let blob = STANDARD.encode(format!("\0{user}\0{}", password.expose_secret()));
                self.write_line(&format!("AUTH PLAIN {blob}"), "AUTH")
                    .await?;
                let reply = self.read_reply("AUTH").await?;
                expect(reply, "AUTH PLAIN", 235).map(|_| ())
            }
            Credentials::Login { user, password } => {
                self.command("AUTH LOGIN", "AUTH LOGIN", 334).await?;
                self.command(&STANDARD.encode(user), "AUTH LOGIN", 334)
                    .await?;
                self.write_line(&STANDARD.encode(password.expose_secret()), "AUTH")
                    .await?;
                let reply = self.read_reply("AUTH").await?;
                expect(reply, "AUTH LOGIN", 235).map(|_| ())
            }
        }
    }

    /// Sends one message: `MAIL FROM`, `RCPT TO` for each recipient, `DATA` streamed
    /// from `body` (dot-stuffed, bare LF made CRLF). Returns the server's final reply.
    ///
    /// When EHLO offered `PIPELINING` the envelope goes in one write and the
    /// replies are read in order (up to [`MAX_PIPELINED_RECIPIENTS`] recipients, so
    /// the unread replies always fit the socket's buffers); otherwise command by
    /// command. Either way a refused
    /// recipient refuses the whole message ([`SmtpError::RecipientRefused`], nothing is
    /// sent to the others) and the session is ready for [`Self::reset`], unless the
    /// connection had to be dropped to stop a `DATA` the server had accepted (then every
    /// later command fails with [`SmtpError::Io`] and the caller reconnects).
    pub async fn send<R: AsyncRead + Unpin>(
        &mut self,
        from: &str,
        recipients: &[String],
        mut body: R,
    ) -> Result<Reply, SmtpError> {
        // An address must not smuggle a second command into the envelope.
        if let Some(bad) = std::iter::once(from)
            .chain(recipients.iter().map(String::as_str))
            .find(|a| {
                a.chars()
                    .any(|c| c.is_control() || matches!(c, '<' | '>' | ' '))
            })
        {
            return Err(SmtpError::InvalidAddress(bad.to_owned()));
        }
        if self.has_capability("PIPELINING") && recipients.len() <= MAX_PIPELINED_RECIPIENTS {
            self.envelope_pipelined(from, recipients).await?;
        } else {
            self.command(&format!("MAIL FROM:<{from}>"), "MAIL FROM", 250)
                .await?;
            for r in recipients {
                let reply = self.exchange(&format!("RCPT TO:<{r}>"), "RCPT TO").await?;
                if !recipient_accepted(&reply) {
                    return Err(SmtpError::RecipientRefused {
                        address: r.clone(),
                        reply,
                    });
                }
            }
            self.command("DATA", "DATA", 354).await?;
        }
        let mut stuffer = DotStuffer::default();
        let mut buf = vec![0u8; 64 * 1024];
        let mut out = Vec::with_capacity(70 * 1024);
        loop {
            let n = body.read(&mut buf).await.map_err(|source| SmtpError::Io {
                step: "reading the message",
                source,
            })?;
            if n == 0 {
                break;
            }
            out.clear();
            stuffer.push(buf.get(..n).unwrap_or_default(), &mut out);
            self.write_raw(&out, "DATA").await?;
        }
        out.clear();
        stuffer.finish(&mut out);
        self.write_raw(&out, "DATA").await?;
        self.flush("DATA").await?;
        let reply = self.read_reply("end of DATA").await?;
        expect(reply, "the message (end of DATA)", 250)
    }

    /// `RSET`, to reuse the connection for the next message after a failure.
    pub async fn reset(&mut self) -> Result<(), SmtpError> {
        self.command("RSET", "RSET", 250).await.map(|_| ())
    }

    /// `QUIT`.
    pub async fn quit(mut self) -> Result<(), SmtpError> {
        self.command("QUIT", "QUIT", 221).await.map(|_| ())
    }

    /// RFC 2920: `MAIL FROM`, every `RCPT TO` and `DATA` in one write, then their
    /// replies in order. The outcome is the one the commands would have had one by one:
    /// a refused `MAIL FROM` first, then the first refused recipient (with its address;
    /// `DATA`'s 503/554 "no valid recipients" never hides it), then `DATA`'s own reply.
    /// Every reply is read, so a refused envelope leaves the session in step for `RSET`;
    /// but when the server said 354 to a `DATA` that must not go ahead (a recipient was
    /// refused), the only way out that sends nothing is to drop the connection: a lone
    /// dot would deliver an empty message to the recipients it did accept.
    async fn envelope_pipelined(
        &mut self,
        from: &str,
        recipients: &[String],
    ) -> Result<(), SmtpError> {
        let mut batch = format!("MAIL FROM:<{from}>\r\n");
        for r in recipients {
            batch.push_str("RCPT TO:<");
            batch.push_str(r);
            batch.push_str(">\r\n");
        }
        batch.push_str("DATA\r\n");
        self.write_raw(batch.as_bytes(), "MAIL FROM").await?;
        self.flush("MAIL FROM").await?;
        let mail = match self.read_reply("MAIL FROM").await {
            Ok(mail) => mail,
            // Replies to the rest may still come: the session is out of step.
            Err(e) => return Err(self.abandon(e)),
        };
        let mut refusal = (mail.code != 250).then_some(SmtpError::Refused {
            step: "MAIL FROM",
            reply: mail,
        });
        for r in recipients {
            match self.read_reply("RCPT TO").await {
                Ok(reply) if !recipient_accepted(&reply) && refusal.is_none() => {
                    refusal = Some(SmtpError::RecipientRefused {
                        address: r.clone(),
                        reply,
                    });
                }
                Ok(_) => {}
                // A server that refuses and hangs up (421): the refusal is the news.
                Err(e) => return Err(self.abandon(refusal.unwrap_or(e))),
            }
        }
        let data = match self.read_reply("DATA").await {
            Ok(data) => data,
            Err(e) => return Err(self.abandon(refusal.unwrap_or(e))),
        };
        match refusal {
            None => expect(data, "DATA", 354).map(|_| ()),
            Some(e) if data.code == 354 => Err(self.abandon(e)),
            Some(e) => Err(e),
        }
    }

    /// Drops the connection (every later command fails) and hands back `e`.
    fn abandon(&mut self, e: SmtpError) -> SmtpError {
        self.conn = MailStream::Closed;
        e
    }

    /// False once the connection was dropped (see [`Self::send`]).
    pub fn is_open(&self) -> bool {
        !matches!(self.conn, MailStream::Closed)
    }

    async fn command(
        &mut self,
        line: &str,
        step: &'static str,
        want: u16,
    ) -> Result<Reply, SmtpError> {
        let reply = self.exchange(line, step).await?;
        expect(reply, step, want)
    }

    /// One command and its reply, whatever the code.
    async fn exchange(&mut self, line: &str, step: &'static str) -> Result<Reply, SmtpError> {
        self.write_line(line, step).await?;
        self.read_reply(step).await
    }

    async fn write_line(&mut self, line: &str, step: &'static str) -> Result<(), SmtpError> {
        self.conn
            .write_line(line.as_bytes())
            .await
            .map_err(|source| SmtpError::Io { step, source })
    }

    async fn write_raw(&mut self, bytes: &[u8], step: &'static str) -> Result<(), SmtpError> {
        self.conn
            .write_all(bytes)
            .await
            .map_err(|source| SmtpError::Io { step, source })
    }

    async fn flush(&mut self, step: &'static str) -> Result<(), SmtpError> {
        self.conn
            .flush()
            .await
            .map_err(|source| SmtpError::Io { step, source })
    }

    async fn read_line(&mut self, step: &'static str) -> Result<String, SmtpError> {
        let line = self
            .conn
            .read_line(MAX_LINE, self.timeout)
            .await
            .map_err(|e| match e {
                LineError::TooLong(max) => SmtpError::Protocol {
                    step,
                    detail: format!("a line longer than {max} bytes"),
                },
                LineError::Io(source) => SmtpError::Io { step, source },
                other => SmtpError::Io {
                    step,
                    source: std::io::Error::other(other),
                },
            })?;
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    async fn read_reply(&mut self, step: &'static str) -> Result<Reply, SmtpError> {
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let line = self.read_line(step).await?;
            let (c, last, text) = parse_line(&line).map_err(|e| SmtpError::Protocol {
                step,
                detail: e.to_string(),
            })?;
            if code.is_some_and(|k| k != c) {
                return Err(SmtpError::Protocol {
                    step,
                    detail: format!("reply codes change within one reply ({line:?})"),
                });
            }
            code = Some(c);
            lines.push(text.to_owned());
            if last {
                return Ok(Reply { code: c, lines });
            }
            if lines.len() >= MAX_LINES {
                return Err(SmtpError::Protocol {
                    step,
                    detail: format!("a reply of more than {MAX_LINES} lines"),
                });
            }
        }
    }
}

fn expect(reply: Reply, step: &'static str, want: u16) -> Result<Reply, SmtpError> {
    if reply.code == want {
        Ok(reply)
    } else {
        Err(SmtpError::Refused { step, reply })
    }
}

/// Dot stuffing (RFC 5321 §4.5.2) and CRLF line ends, across chunk boundaries.
#[derive(Debug)]
struct DotStuffer {
    at_line_start: bool,
    last_was_cr: bool,
    wrote_anything: bool,
}

impl Default for DotStuffer {
    fn default() -> Self {
        Self {
            at_line_start: true,
            last_was_cr: false,
            wrote_anything: false,
        }
    }
}

impl DotStuffer {
    fn push(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            match b {
                b'\n' => {
                    if !self.last_was_cr {
                        out.push(b'\r');
                    }
                    out.push(b'\n');
                    self.at_line_start = true;
                    self.last_was_cr = false;
                }
                b'\r' => {
                    if self.last_was_cr {
                        // A lone CR before: keep it as a line break.
                        out.push(b'\n');
                        self.at_line_start = true;
                    }
                    out.push(b'\r');
                    self.last_was_cr = true;
                }
                _ => {
                    if self.last_was_cr {
                        out.push(b'\n');
                        self.at_line_start = true;
                        self.last_was_cr = false;
                    }
                    if self.at_line_start && b == b'.' {
                        out.push(b'.');
                    }
                    out.push(b);
                    self.at_line_start = false;
                }
            }
            self.wrote_anything = true;
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.last_was_cr {
            out.push(b'\n');
        } else if !self.at_line_start || !self.wrote_anything {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stuff(chunks: &[&[u8]]) -> Vec<u8> {
        let mut s = DotStuffer::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    #[test]
    fn dots_are_stuffed_and_line_ends_normalised_across_chunks() {
        assert_eq!(stuff(&[b"a\r\n.b\r\n"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(stuff(&[b"a\r", b"\n.", b"b"]), b"a\r\n..b\r\n.\r\n");
        assert_eq!(stuff(&[b".x\nbare\n"]), b"..x\r\nbare\r\n.\r\n");
        assert_eq!(stuff(&[b""]), b"\r\n.\r\n");
        assert_eq!(stuff(&[b"end\r"]), b"end\r\n.\r\n");
    }

    proptest::proptest! {
        #[test]
        fn stuffed_output_never_has_a_lone_dot_line_before_the_end(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400), split in 0usize..400) {
            let split = split.min(input.len());
            let (a, b) = input.split_at(split);
            let out = stuff(&[a, b]);
            let body = &out[..out.len() - 3];
            proptest::prop_assert!(!body.windows(5).any(|w| w == b"\r\n.\r\n"));
            proptest::prop_assert!(out.ends_with(b"\r\n.\r\n"));
            // Every LF is preceded by CR.
            for (i, &c) in out.iter().enumerate() {
                if c == b'\n' { proptest::prop_assert_eq!(out.get(i.wrapping_sub(1)), Some(&b'\r')); }
            }
        }
    }
}
