//! The SMTP submission client: connect (plain, STARTTLS, implicit TLS), EHLO,
//! authenticate, send with `DATA` streamed from a reader.

use std::time::Duration;

use tokio::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailbridge_tls::{LineError, MailStream, TlsSettings};
use mailbridge_types::ErrorClass;
use mailbridge_types::config::Limits;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use crate::reply::{Capabilities, Meaning, Reply, ReplyLimits, ReplyParser};

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
    /// The longest the server's reply to one command may take, all its lines
    /// together (a server that keeps sending `250-...` slowly is stopped by this).
    pub timeout: Duration,
    /// The longest the reply to the end of `DATA` (the final `.`) may take: RFC 5321
    /// §4.5.3.2.6 gives the server 10 minutes, and the message may be accepted
    /// however long it takes ([`FINAL_REPLY_TIMEOUT`]).
    pub final_reply_timeout: Duration,
    /// Bounds on each reply (bytes per line, lines, bytes).
    pub reply_limits: ReplyLimits,
    /// The largest message sent, in bytes: the account's `limits.max_message_size`
    /// (default [`Limits::DEFAULT_MAX_MESSAGE_SIZE`]). The server's EHLO `SIZE`, when
    /// smaller, bounds it too ([`SmtpClient::size_limit`]).
    pub max_message_size: u64,
}

/// RFC 5321 §4.5.3.2.6: "DATA Termination: 10 minutes".
pub const FINAL_REPLY_TIMEOUT: Duration = Duration::from_mins(10);

impl SmtpConfig {
    /// A configuration with a 60 s timeout per reply, 10 minutes for the reply to a
    /// message's end, default reply bounds and `mailbridge.localhost` as EHLO name.
    pub fn new(host: &str, port: u16, tls: TlsMode) -> Self {
        Self {
            host: host.to_owned(),
            port,
            tls,
            trust: TlsSettings::default(),
            ehlo_name: "mailbridge.localhost".to_owned(),
            timeout: Duration::from_mins(1),
            final_reply_timeout: FINAL_REPLY_TIMEOUT,
            reply_limits: ReplyLimits::default(),
            max_message_size: Limits::DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// The bound a message's size met: the smaller of the account's setting and the
/// server's EHLO `SIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SizeLimit {
    /// The account's `limits.max_message_size`, in bytes.
    Setting(u64),
    /// The server's EHLO `SIZE` (RFC 1870), in bytes.
    Server(u64),
}

impl SizeLimit {
    /// The bound in bytes.
    pub fn bytes(self) -> u64 {
        match self {
            SizeLimit::Setting(n) | SizeLimit::Server(n) => n,
        }
    }

    /// The setting that raises it (`limits.max_message_size`); `None` for the
    /// server's own bound, which only its administrator can raise.
    pub fn setting(self) -> Option<&'static str> {
        match self {
            SizeLimit::Setting(_) => Some("limits.max_message_size"),
            SizeLimit::Server(_) => None,
        }
    }
}

/// What a message's size and its bound say, in a person's words.
fn too_large(size: Option<u64>, limit: SizeLimit) -> String {
    let what = match size {
        Some(n) => format!("the message is {n} bytes, more than"),
        None => "the message went past".to_owned(),
    };
    let bound = match limit {
        SizeLimit::Setting(max) => {
            format!("{what} {max} bytes, the most this account sends (limits.max_message_size)")
        }
        SizeLimit::Server(max) => format!(
            "{what} the SMTP server's limit: the server accepts at most {max} bytes (its EHLO SIZE)"
        ),
    };
    let sent = if size.is_some() {
        "nothing was sent"
    } else {
        "sending stopped before the message's end, so nothing was delivered"
    };
    let fix = match limit {
        SizeLimit::Setting(_) => {
            "send a smaller message, or raise limits.max_message_size in the account's [account.limits]"
        }
        SizeLimit::Server(_) => {
            "send a smaller message (large files as links), or ask the server's administrator to raise its limit"
        }
    };
    format!("{bound}; {sent}: {fix}")
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

impl Credentials {
    /// The mechanism and login name these credentials sign in with.
    pub fn sign_in(&self) -> SignIn {
        let (mechanism, login) = match self {
            Credentials::XOAuth2 { user, .. } => (Mechanism::XOAuth2, user),
            Credentials::Plain { user, .. } => (Mechanism::Plain, user),
            Credentials::Login { user, .. } => (Mechanism::Login, user),
        };
        SignIn {
            mechanism,
            login: login.clone(),
        }
    }
}

/// How a sign-in was attempted: the mechanism and the login name sent, so a refusal
/// can say which login was refused and give the causes that fit the mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub mechanism: Mechanism,
    /// The login name (PLAIN, LOGIN) or the mailbox (`user=` of XOAUTH2).
    pub login: String,
}

/// A SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mechanism {
    /// `AUTH XOAUTH2` with an OAuth2 access token.
    XOAuth2,
    /// `AUTH PLAIN` with a password.
    Plain,
    /// `AUTH LOGIN` with a password.
    Login,
}

impl Mechanism {
    /// True for the password mechanisms.
    pub fn is_password(self) -> bool {
        matches!(self, Mechanism::Plain | Mechanism::Login)
    }

    /// The command (`AUTH XOAUTH2`, `AUTH PLAIN`, `AUTH LOGIN`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::XOAuth2 => "AUTH XOAUTH2",
            Mechanism::Plain => "AUTH PLAIN",
            Mechanism::Login => "AUTH LOGIN",
        }
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
    /// The server refused a command; for a sign-in, `sign_in` says which login and
    /// mechanism were refused.
    #[error("{}", refusal(step, reply, sign_in.as_ref()))]
    Refused {
        step: &'static str,
        reply: Reply,
        sign_in: Option<SignIn>,
    },
    /// `RCPT TO` refused for one recipient: the message was not sent to anyone.
    #[error("RCPT TO:<{address}> was refused: {} {}. {}", reply.code, reply.text(), reply.meaning().fix())]
    RecipientRefused { address: String, reply: Reply },
    #[error("the server does not offer {0} (it offers: {1})")]
    Unsupported(String, String),
    /// No `AUTH` on a plain connection to a server that offers `STARTTLS`: it offers
    /// sign-in only after STARTTLS (as smtp.office365.com:587 does).
    #[error(
        "the server offers no AUTH before STARTTLS: set TLS to STARTTLS (`smtp+starttls://host:587` as the outgoing side)"
    )]
    AuthOnlyAfterStartTls,
    /// The message is larger than [`SizeLimit`]: refused before `MAIL FROM` when its
    /// size was known (`size`), else stopped while `DATA` was streamed once it went
    /// past the bound (`size` is `None`; the connection was dropped before the final
    /// `.`, so nothing was delivered).
    #[error("{}", too_large(*size, *limit))]
    MessageTooLarge { size: Option<u64>, limit: SizeLimit },
    #[error(
        "{0:?} cannot be an envelope address (line breaks, angle brackets or spaces): fix the sender or recipient"
    )]
    InvalidAddress(String),
    /// The whole message was sent but its final reply did not come (the wait ran
    /// out, the connection dropped, or the reply was not SMTP): the server may have
    /// accepted it. Resending blindly may deliver it twice.
    #[error(
        "the SMTP server did not confirm the message after its end (the final \".\" of DATA) within {} s: it may have accepted the message; check the recipient's mailbox or Sent Items before resending",
        waited.as_secs()
    )]
    OutcomeUnknown {
        waited: Duration,
        #[source]
        source: Box<SmtpError>,
    },
}

fn refusal(step: &str, reply: &Reply, sign_in: Option<&SignIn>) -> String {
    let meaning = reply.meaning();
    let (code, text) = (reply.code, reply.text());
    match sign_in {
        None => format!("{step} was refused: {code} {text}. {}", meaning.fix()),
        Some(SignIn { mechanism, login }) if mechanism.is_password() => format!(
            "the SMTP server refused the password for login {login:?} ({}): {code} {text}. {}",
            mechanism.as_str(),
            meaning.password_fix()
        ),
        Some(SignIn { mechanism, login }) => format!(
            "the SMTP server refused the token for {login:?} ({}): {code} {text}. {}",
            mechanism.as_str(),
            meaning.fix()
        ),
    }
}

impl SmtpError {
    /// What to do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            SmtpError::Connect { .. } | SmtpError::Io { .. } | SmtpError::Protocol { .. } => {
                ErrorClass::Transient
            }
            SmtpError::Tls { .. }
            | SmtpError::Unsupported(..)
            | SmtpError::AuthOnlyAfterStartTls => ErrorClass::Misconfigured,
            SmtpError::Refused { reply, .. } | SmtpError::RecipientRefused { reply, .. } => {
                reply.meaning().class()
            }
            SmtpError::InvalidAddress(_) => ErrorClass::Permanent,
            SmtpError::MessageTooLarge { .. } => ErrorClass::LimitExceeded,
            SmtpError::OutcomeUnknown { .. } => ErrorClass::OutcomeUnknown,
        }
    }

    /// For a refused sign-in: the mechanism and login name that were refused.
    pub fn sign_in(&self) -> Option<&SignIn> {
        match self {
            SmtpError::Refused { sign_in, .. } => sign_in.as_ref(),
            _ => None,
        }
    }

    /// True when the message may have been accepted although no reply said so
    /// ([`SmtpError::OutcomeUnknown`]): do not resend blindly.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, SmtpError::OutcomeUnknown { .. })
    }

    /// The size bound a message met ([`SmtpError::MessageTooLarge`]).
    pub fn size_limit(&self) -> Option<SizeLimit> {
        match self {
            SmtpError::MessageTooLarge { limit, .. } => Some(*limit),
            _ => None,
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
    final_reply_timeout: Duration,
    reply_limits: ReplyLimits,
    max_message_size: u64,
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
        // Without it the final "." of DATA (a small write after the body's last,
        // partial segment) may wait for the server's delayed ACK before it leaves.
        // Commands are written whole, so this sends no more packets than needed.
        tcp.set_nodelay(true).map_err(|source| SmtpError::Connect {
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
            final_reply_timeout: config.final_reply_timeout,
            reply_limits: config.reply_limits,
            max_message_size: config.max_message_size,
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
                sign_in: None,
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
        self.parsed_capabilities().has(keyword)
    }

    /// The largest message this session sends: the account's
    /// [`SmtpConfig::max_message_size`], or the server's EHLO `SIZE` when that is
    /// smaller (or equal: then the server's word is the one to quote).
    pub fn size_limit(&self) -> SizeLimit {
        match self.parsed_capabilities().max_size() {
            Some(server) if server <= self.max_message_size => SizeLimit::Server(server),
            _ => SizeLimit::Setting(self.max_message_size),
        }
    }

    /// The SASL mechanisms offered after `AUTH`.
    pub fn auth_mechanisms(&self) -> Vec<String> {
        self.parsed_capabilities().auth_mechanisms()
    }

    /// The EHLO capabilities, parsed ([`Capabilities`]).
    pub fn parsed_capabilities(&self) -> Capabilities {
        // `capabilities` holds the lines after the greeting line.
        let mut lines = Vec::with_capacity(self.capabilities.len() + 1);
        lines.push(String::new());
        lines.extend(self.capabilities.iter().cloned());
        Capabilities::parse(&lines)
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
        if offered.is_empty() && self.tls_mode() == TlsMode::None && self.has_capability("STARTTLS")
        {
            return Err(SmtpError::AuthOnlyAfterStartTls);
        }
        if !offered.iter().any(|m| m == need) {
            return Err(SmtpError::Unsupported(
                format!("AUTH {need}"),
                offered.join(" "),
            ));
        }
        let sign_in = credentials.sign_in();
        let step = sign_in.mechanism.as_str();
        let reply = match credentials {
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
                reply
            }
            Credentials::Plain { user, password } => {
                let blob = STANDARD.encode(format!("\0{user}\0{}", password.expose_secret()));
                self.write_line(&format!("AUTH PLAIN {blob}"), "AUTH")
                    .await?;
                self.read_reply("AUTH").await?
            }
            Credentials::Login { user, password } => 'login: {
                // A refusal of `AUTH LOGIN` itself is about the mechanism, not the login.
                self.command("AUTH LOGIN", "AUTH LOGIN", 334).await?;
                for line in [
                    STANDARD.encode(user),
                    STANDARD.encode(password.expose_secret()),
                ] {
                    self.write_line(&line, "AUTH").await?;
                    let reply = self.read_reply("AUTH").await?;
                    if reply.code != 334 {
                        break 'login reply;
                    }
                }
                return Err(SmtpError::Protocol {
                    step: "AUTH LOGIN",
                    detail: "the server asked for more than the login name and the password"
                        .to_owned(),
                });
            }
        };
        if reply.code == 235 {
            Ok(())
        } else {
            Err(SmtpError::Refused {
                step,
                reply,
                sign_in: Some(sign_in),
            })
        }
    }

    /// Sends one message whose size is not known in advance: [`Self::send_sized`]
    /// with no size (the message is counted as it is streamed).
    pub async fn send<R: AsyncRead + Unpin>(
        &mut self,
        from: &str,
        recipients: &[String],
        body: R,
    ) -> Result<Reply, SmtpError> {
        self.send_sized(from, recipients, body, None).await
    }

    /// Sends one message: `MAIL FROM`, `RCPT TO` for each recipient, `DATA` streamed
    /// from `body` (dot-stuffed, bare LF made CRLF). Returns the server's final reply.
    ///
    /// `size` is the message's size in bytes when known before sending (a file, a
    /// composed message). A message larger than [`Self::size_limit`] is then refused
    /// before `MAIL FROM` ([`SmtpError::MessageTooLarge`], nothing sent, the session
    /// unchanged), and `MAIL FROM` carries `SIZE=n` when the server offers `SIZE`
    /// (RFC 1870). Whether or not it was known, the bytes read from `body` are
    /// counted: past the bound the connection is dropped before the final `.`, so
    /// nothing is delivered, and the error is the same.
    ///
    /// When EHLO offered `PIPELINING` the envelope goes in one write and the
    /// replies are read in order (up to [`MAX_PIPELINED_RECIPIENTS`] recipients, so
    /// the unread replies always fit the socket's buffers); otherwise command by
    /// command. Either way a refused
    /// recipient refuses the whole message ([`SmtpError::RecipientRefused`], nothing is
    /// sent to the others) and the session is ready for [`Self::reset`], unless the
    /// connection had to be dropped to stop a `DATA` the server had accepted (then every
    /// later command fails with [`SmtpError::Io`] and the caller reconnects).
    pub async fn send_sized<R: AsyncRead + Unpin>(
        &mut self,
        from: &str,
        recipients: &[String],
        mut body: R,
        size: Option<u64>,
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
        let limit = self.size_limit();
        if let Some(size) = size
            && size > limit.bytes()
        {
            return Err(SmtpError::MessageTooLarge {
                size: Some(size),
                limit,
            });
        }
        let mail_from = match size {
            Some(size) if self.has_capability("SIZE") => format!("MAIL FROM:<{from}> SIZE={size}"),
            _ => format!("MAIL FROM:<{from}>"),
        };
        if self.has_capability("PIPELINING") && recipients.len() <= MAX_PIPELINED_RECIPIENTS {
            self.envelope_pipelined(&mail_from, recipients).await?;
        } else {
            self.command(&mail_from, "MAIL FROM", 250).await?;
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
        let mut read = 0u64;
        loop {
            let n = body.read(&mut buf).await.map_err(|source| SmtpError::Io {
                step: "reading the message",
                source,
            })?;
            if n == 0 {
                break;
            }
            read += n as u64;
            if read > limit.bytes() {
                // Without the final "." the server delivers nothing: drop the
                // connection before any byte past the bound goes out.
                return Err(self.abandon(SmtpError::MessageTooLarge { size: None, limit }));
            }
            out.clear();
            stuffer.push(buf.get(..n).unwrap_or_default(), &mut out);
            self.write_raw(&out, "DATA").await?;
        }
        out.clear();
        stuffer.finish(&mut out);
        // From here the server may have the whole message: whatever goes wrong before
        // its reply leaves the outcome unknown, and the session is closed.
        let waited = self.final_reply_timeout;
        let unknown = |e: SmtpError| SmtpError::OutcomeUnknown {
            waited,
            source: Box::new(e),
        };
        let reply = async {
            self.write_raw(&out, "DATA").await?;
            self.flush("DATA").await?;
            self.read_reply_within("the end of DATA", waited).await
        }
        .await;
        match reply {
            Ok(reply) => expect(reply, "the message (end of DATA)", 250),
            Err(e) => Err(self.abandon(unknown(e))),
        }
    }

    /// `RSET`, to reuse the connection for the next message after a failure.
    pub async fn reset(&mut self) -> Result<(), SmtpError> {
        self.command("RSET", "RSET", 250).await.map(|_| ())
    }

    /// `QUIT`.
    pub async fn quit(mut self) -> Result<(), SmtpError> {
        self.command("QUIT", "QUIT", 221).await.map(|_| ())
    }

    /// RFC 2920: `mail_from` (the `MAIL FROM` line), every `RCPT TO` and `DATA` in
    /// one write, then their replies in order. The outcome is the one the commands would have had one by one:
    /// a refused `MAIL FROM` first, then the first refused recipient (with its address;
    /// `DATA`'s 503/554 "no valid recipients" never hides it), then `DATA`'s own reply.
    /// Every reply is read, so a refused envelope leaves the session in step for `RSET`;
    /// but when the server said 354 to a `DATA` that must not go ahead (a recipient was
    /// refused), the only way out that sends nothing is to drop the connection: a lone
    /// dot would deliver an empty message to the recipients it did accept.
    async fn envelope_pipelined(
        &mut self,
        mail_from: &str,
        recipients: &[String],
    ) -> Result<(), SmtpError> {
        let mut batch = format!("{mail_from}\r\n");
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
            sign_in: None,
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

    /// Writes within [`SmtpConfig::timeout`]: a server that stops reading (its
    /// window closed) is not waited for forever.
    async fn within<T>(
        timeout: Duration,
        step: &'static str,
        io: impl Future<Output = std::io::Result<T>>,
    ) -> Result<T, SmtpError> {
        match tokio::time::timeout(timeout, io).await {
            Ok(result) => result.map_err(|source| SmtpError::Io { step, source }),
            Err(_) => Err(SmtpError::Io {
                step,
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the server stopped reading what was sent",
                ),
            }),
        }
    }

    async fn write_line(&mut self, line: &str, step: &'static str) -> Result<(), SmtpError> {
        Self::within(self.timeout, step, self.conn.write_line(line.as_bytes())).await
    }

    async fn write_raw(&mut self, bytes: &[u8], step: &'static str) -> Result<(), SmtpError> {
        Self::within(self.timeout, step, self.conn.write_all(bytes)).await
    }

    async fn flush(&mut self, step: &'static str) -> Result<(), SmtpError> {
        Self::within(self.timeout, step, self.conn.flush()).await
    }

    /// One reply, all its lines within [`SmtpConfig::timeout`].
    async fn read_reply(&mut self, step: &'static str) -> Result<Reply, SmtpError> {
        self.read_reply_within(step, self.timeout).await
    }

    /// One reply within [`SmtpConfig::reply_limits`], all its lines within `time`.
    async fn read_reply_within(
        &mut self,
        step: &'static str,
        time: Duration,
    ) -> Result<Reply, SmtpError> {
        let deadline = Instant::now() + time;
        let mut parser = ReplyParser::new(self.reply_limits);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .conn
                .read_line(self.reply_limits.max_line, left)
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
            match parser.push_line(&line) {
                Ok(Some(reply)) => return Ok(reply),
                Ok(None) => {}
                Err(e) => {
                    return Err(SmtpError::Protocol {
                        step,
                        detail: e.to_string(),
                    });
                }
            }
        }
    }
}

fn expect(reply: Reply, step: &'static str, want: u16) -> Result<Reply, SmtpError> {
    if reply.code == want {
        Ok(reply)
    } else {
        Err(SmtpError::Refused {
            step,
            reply,
            sign_in: None,
        })
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
