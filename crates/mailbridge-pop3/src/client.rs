//! The POP3 client.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailbridge_tls::{LineError, MailStream, TlsSettings};
use mailbridge_types::ErrorClass;
use mailbridge_types::config::Limits;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncBufReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::time::Instant;

use crate::response::{
    Body, ListEntry, Listing, ListingError, ListingLine, MAX_LINE, Meaning, Status, UidlEntry,
};

mod top;
pub use top::MAX_TOP_BYTES;

pub use mailbridge_types::config::TlsMode;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Pop3Config {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// Trusted roots (system plus an extra CA) and the certificate name.
    pub trust: TlsSettings,
    /// Timeout for each server answer.
    pub timeout: Duration,
    /// Bounds on listings, messages and the time per command (the account's
    /// `[account.limits]`).
    pub limits: Limits,
}

impl Pop3Config {
    /// A configuration with a 60 s timeout, the system's roots and the default
    /// [`Limits`].
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
    /// `AUTH XOAUTH2` (two steps): the mailbox (`user=`) and an access token.
    XOAuth2 { user: String, token: SecretString },
    /// `USER` / `PASS`.
    UserPass {
        user: String,
        password: SecretString,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::XOAuth2 { user, .. } => f
                .debug_struct("XOAuth2")
                .field("user", user)
                .finish_non_exhaustive(),
            Credentials::UserPass { user, .. } => f
                .debug_struct("UserPass")
                .field("user", user)
                .finish_non_exhaustive(),
        }
    }
}

/// How a sign-in was attempted: the mechanism and the login name sent, so a refusal
/// can say which login was refused and give the causes that fit the mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub mechanism: Mechanism,
    /// The login name (`USER`) or the mailbox (`user=` of XOAUTH2).
    pub login: String,
}

/// A sign-in mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mechanism {
    /// `AUTH XOAUTH2` with an OAuth2 access token.
    XOAuth2,
    /// `USER` / `PASS` with a password.
    UserPass,
}

impl Mechanism {
    /// True for the password mechanisms.
    pub fn is_password(self) -> bool {
        matches!(self, Mechanism::UserPass)
    }

    /// The commands' name (`AUTH XOAUTH2`, `USER/PASS`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mechanism::XOAuth2 => "AUTH XOAUTH2",
            Mechanism::UserPass => "USER/PASS",
        }
    }
}

impl Credentials {
    /// The mechanism and login name these credentials sign in with.
    pub fn sign_in(&self) -> SignIn {
        match self {
            Credentials::XOAuth2 { user, .. } => SignIn {
                mechanism: Mechanism::XOAuth2,
                login: user.clone(),
            },
            Credentials::UserPass { user, .. } => SignIn {
                mechanism: Mechanism::UserPass,
                login: user.clone(),
            },
        }
    }
}

/// A bound of [`Limits`] that a server made mailbridge reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// `limits.max_message_size`, in bytes.
    MessageSize(u64),
    /// `limits.max_list_items`.
    ListItems(u64),
    /// `limits.command_timeout_secs`.
    CommandTime(Duration),
}

impl Limit {
    /// The setting that raises it.
    pub fn setting(self) -> &'static str {
        match self {
            Limit::MessageSize(_) => "limits.max_message_size",
            Limit::ListItems(_) => "limits.max_list_items",
            Limit::CommandTime(_) => "limits.command_timeout_secs",
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::MessageSize(max) => write!(f, "{max} bytes"),
            Limit::ListItems(max) => write!(f, "{max} entries"),
            Limit::CommandTime(max) => write!(f, "{} s", max.as_secs()),
        }
    }
}

/// What failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Pop3Error {
    #[error("could not connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] mailbridge_tls::TlsError),
    #[error("connection to the POP3 server failed during {step}")]
    Io {
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the POP3 server sent something that is not POP3 during {step}: {detail}")]
    Protocol { step: &'static str, detail: String },
    /// The server refused a command; for a sign-in, `sign_in` says which login and
    /// mechanism were refused.
    #[error("{}", refusal(step, status, sign_in.as_ref()))]
    Refused {
        step: &'static str,
        status: Status,
        sign_in: Option<SignIn>,
    },
    /// A bound was reached (`what` names the object): the command was stopped and
    /// the session closed.
    #[error(
        "{what} exceeds {limit}, the most mailbridge accepts ({setting}): raise {setting} in the account's [account.limits] if this is expected, otherwise the server misbehaves",
        setting = limit.setting()
    )]
    LimitExceeded { what: String, limit: Limit },
}

fn refusal(step: &str, status: &Status, sign_in: Option<&SignIn>) -> String {
    let meaning = status.meaning();
    match sign_in {
        None => format!(
            "{step} was refused: -ERR {}. {}",
            status.text,
            meaning.fix()
        ),
        Some(SignIn { mechanism, login }) if mechanism.is_password() => format!(
            "the POP3 server refused the password for login {login:?} ({}): -ERR {}. {}",
            mechanism.as_str(),
            status.text,
            meaning.password_fix()
        ),
        Some(SignIn { mechanism, login }) => format!(
            "the POP3 server refused the token for {login:?} ({}): -ERR {}. {}",
            mechanism.as_str(),
            status.text,
            meaning.fix()
        ),
    }
}

impl Pop3Error {
    /// What to do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            Pop3Error::Connect { .. } | Pop3Error::Io { .. } | Pop3Error::Protocol { .. } => {
                ErrorClass::Transient
            }
            Pop3Error::Tls(_) => ErrorClass::Misconfigured,
            Pop3Error::Refused { status, .. } => status.meaning().class(),
            Pop3Error::LimitExceeded { .. } => ErrorClass::LimitExceeded,
        }
    }

    /// The meaning of the server's refusal, if it refused.
    pub fn meaning(&self) -> Option<Meaning> {
        match self {
            Pop3Error::Refused { status, .. } => Some(status.meaning()),
            _ => None,
        }
    }

    /// For a refused sign-in: the mechanism and login name that were refused.
    pub fn sign_in(&self) -> Option<&SignIn> {
        match self {
            Pop3Error::Refused { sign_in, .. } => sign_in.as_ref(),
            _ => None,
        }
    }

    /// The bound that was reached, if one was.
    pub fn limit(&self) -> Option<Limit> {
        match self {
            Pop3Error::LimitExceeded { limit, .. } => Some(*limit),
            _ => None,
        }
    }
}

/// Most bytes of the server's input decoded at once.
const CHUNK: usize = 64 * 1024;

/// A connected POP3 session.
#[derive(Debug)]
pub struct Pop3Client {
    conn: MailStream,
    timeout: Duration,
    limits: Limits,
    /// How the connection is secured.
    tls: TlsMode,
    /// The end of the command under way ([`Limits::command_timeout`]).
    deadline: Option<Instant>,
    /// Sizes from the last `LIST` (hints for refusing a message early).
    sizes: BTreeMap<u32, u64>,
}

impl Pop3Client {
    /// Connects, reads the greeting and upgrades with `STLS` when asked. With
    /// [`TlsMode::Auto`]: implicit TLS, or `STLS` when the server answers the
    /// handshake in plain text ([`Pop3Client::tls_mode`] tells which).
    pub async fn connect(config: &Pop3Config) -> Result<Self, Pop3Error> {
        mailbridge_tls::connect_in_mode(
            config.tls,
            |tls| Self::connect_as(config, tls),
            |e| matches!(e, Pop3Error::Tls(t) if mailbridge_tls::is_not_tls(&t.source)),
        )
        .await
    }

    /// How this connection is secured (never [`TlsMode::Auto`]).
    pub fn tls_mode(&self) -> TlsMode {
        self.tls
    }

    /// False once the session was closed because a command was stopped half way (a
    /// bound reached): every later command fails.
    pub fn is_open(&self) -> bool {
        !matches!(self.conn, MailStream::Closed)
    }

    async fn connect_as(config: &Pop3Config, tls: TlsMode) -> Result<Self, Pop3Error> {
        let addr = format!("{}:{}", config.host, config.port);
        let tcp = mailbridge_tls::connect_tcp(&config.host, config.port, config.timeout)
            .await
            .map_err(|source| Pop3Error::Connect {
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
            timeout: config.timeout,
            limits: config.limits,
            tls,
            deadline: None,
            sizes: BTreeMap::new(),
        };
        match client.expect_ok("the greeting").await {
            Err(Pop3Error::Io { step, source }) if tls != TlsMode::Implicit => {
                return Err(Pop3Error::Io {
                    step,
                    source: mailbridge_tls::no_greeting(source),
                });
            }
            other => other?,
        };
        if tls == TlsMode::StartTls {
            client.command("STLS", "STLS").await?;
            client
                .conn
                .start_tls(&config.trust, &config.host, config.timeout)
                .await?;
        }
        Ok(client)
    }

    /// Signs in. XOAUTH2 goes in two steps (`AUTH XOAUTH2`, `+`, the blob), as
    /// Microsoft 365 requires. A refusal is [`Pop3Error::Refused`] with
    /// [`Pop3Error::sign_in`] naming the mechanism and the login name.
    pub async fn authenticate(&mut self, credentials: &Credentials) -> Result<(), Pop3Error> {
        let refused = |step, status| Pop3Error::Refused {
            step,
            status,
            sign_in: Some(credentials.sign_in()),
        };
        match credentials {
            Credentials::XOAuth2 { user, token } => {
                self.write_line("AUTH XOAUTH2", "AUTH").await?;
                let cont = self.read_status("AUTH").await?;
                if !cont.continuation {
                    return Err(refused("AUTH XOAUTH2", cont));
                }
                let blob = STANDARD.encode(format!(
                    "user={user}\x01auth=Bearer {}\x01\x01",
                    token.expose_secret()
                ));
                self.write_line(&blob, "AUTH").await?;
                let mut status = self.read_status("AUTH").await?;
                if status.continuation {
                    // A `+ <error JSON>` challenge: answer empty to get the -ERR.
                    self.write_line("", "AUTH").await?;
                    status = self.read_status("AUTH").await?;
                }
                if status.ok {
                    Ok(())
                } else {
                    Err(refused("AUTH XOAUTH2", status))
                }
            }
            Credentials::UserPass { user, password } => {
                self.write_line(&format!("USER {user}"), "USER").await?;
                let status = self.read_status("USER").await?;
                if !status.ok {
                    return Err(refused("USER", status));
                }
                self.write_line(&format!("PASS {}", password.expose_secret()), "PASS")
                    .await?;
                let status = self.read_status("PASS").await?;
                if status.ok {
                    Ok(())
                } else {
                    Err(refused("PASS", status))
                }
            }
        }
    }

    /// `STAT`: number of messages and total size.
    pub async fn stat(&mut self) -> Result<(u32, u64), Pop3Error> {
        let status = self.command("STAT", "STAT").await?;
        let mut parts = status.text.split_whitespace();
        let count = parts.next().and_then(|n| n.parse().ok());
        let size = parts.next().and_then(|n| n.parse().ok());
        match (count, size) {
            (Some(c), Some(s)) => Ok((c, s)),
            _ => Err(Pop3Error::Protocol {
                step: "STAT",
                detail: format!("unexpected answer {:?}", status.text),
            }),
        }
    }

    /// `UIDL`: every message's number and unique id (the checkpoint key), at most
    /// [`Limits::max_list_items`] entries within [`Limits::command_timeout`].
    pub async fn uidl(&mut self) -> Result<Vec<(u32, String)>, Pop3Error> {
        let items: Vec<UidlEntry> = self.listing().await?;
        Ok(items.into_iter().map(|e| (e.number, e.uid)).collect())
    }

    /// `LIST`: every message's number and size as the server announces it (bounded as
    /// [`Self::uidl`]). The sizes are kept: [`Self::retr`] refuses a message announced
    /// larger than [`Limits::max_message_size`] without downloading it.
    pub async fn list(&mut self) -> Result<Vec<(u32, u64)>, Pop3Error> {
        let items: Vec<ListEntry> = self.listing().await?;
        self.sizes = items.iter().map(|e| (e.number, e.size)).collect();
        Ok(items.into_iter().map(|e| (e.number, e.size)).collect())
    }

    async fn listing<T: ListingLine>(&mut self) -> Result<Vec<T>, Pop3Error> {
        let step = T::COMMAND;
        self.start_command();
        let result = async {
            self.command(step, step).await?;
            let mut listing = Listing::<T>::new(self.limits.max_list_items);
            loop {
                let line = self.read_line(step).await?;
                match listing.push_line(&line) {
                    Ok(true) => return Ok(listing.into_items()),
                    Ok(false) => {}
                    Err(ListingError::TooMany { max }) => {
                        return Err(Pop3Error::LimitExceeded {
                            what: format!("the {step} listing"),
                            limit: Limit::ListItems(max),
                        });
                    }
                    Err(e) => {
                        return Err(Pop3Error::Protocol {
                            step,
                            detail: e.to_string(),
                        });
                    }
                }
            }
        }
        .await;
        self.end_command(result)
    }

    /// `RETR n`, streamed into `sink` with the dot stuffing removed and CR LF line ends
    /// kept; returns the number of bytes written. The message is never held in memory
    /// and its lines may be of any length. A message larger than
    /// [`Limits::max_message_size`] is [`Pop3Error::LimitExceeded`]: refused before
    /// `RETR` when the last [`Self::list`] announced it so (the session stays usable),
    /// otherwise stopped at the bound (the session is closed). The whole command
    /// takes at most [`Limits::command_timeout`].
    pub async fn retr<W: AsyncWrite + Unpin>(
        &mut self,
        n: u32,
        sink: &mut W,
    ) -> Result<u64, Pop3Error> {
        let max = self.limits.max_message_size;
        if let Some(&size) = self.sizes.get(&n)
            && size > max
        {
            return Err(Pop3Error::LimitExceeded {
                what: format!("message {n} ({size} bytes as LIST announced it)"),
                limit: Limit::MessageSize(max),
            });
        }
        self.start_command();
        let result = async {
            self.command(&format!("RETR {n}"), "RETR").await?;
            self.read_body(n, "RETR", max, sink).await
        }
        .await;
        self.end_command(result)
    }

    /// Reads a multi-line message into `out` (with the limit `max`) and flushes it;
    /// its size.
    pub(crate) async fn read_body<W: AsyncWrite + Unpin>(
        &mut self,
        n: u32,
        step: &'static str,
        max: u64,
        out: &mut W,
    ) -> Result<u64, Pop3Error> {
        let mut body = Body::new(max);
        let mut decoded = Vec::with_capacity(CHUNK);
        while !body.is_done() {
            let timeout = self.read_timeout(step)?;
            let read = self.conn.fill_buf();
            let input = match tokio::time::timeout(timeout, read).await {
                Ok(Ok(input)) => input,
                Ok(Err(source)) => return Err(Pop3Error::Io { step, source }),
                Err(_) => return Err(self.timed_out(step)),
            };
            if input.is_empty() {
                return Err(Pop3Error::Io {
                    step,
                    source: std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the server closed the connection in the middle of a message",
                    ),
                });
            }
            let input = input.get(..CHUNK).unwrap_or(input);
            decoded.clear();
            let used = body
                .decode(input, &mut decoded)
                .map_err(|e| Pop3Error::LimitExceeded {
                    what: format!("message {n}"),
                    limit: Limit::MessageSize(e.max),
                })?;
            self.conn.consume(used);
            out.write_all(&decoded)
                .await
                .map_err(|source| Pop3Error::Io {
                    step: "writing the message",
                    source,
                })?;
        }
        out.flush().await.map_err(|source| Pop3Error::Io {
            step: "writing the message",
            source,
        })?;
        Ok(body.size())
    }

    /// `DELE n` (takes effect at `QUIT`).
    pub async fn dele(&mut self, n: u32) -> Result<(), Pop3Error> {
        self.command(&format!("DELE {n}"), "DELE").await.map(|_| ())
    }

    /// `QUIT`: commits deletions.
    pub async fn quit(mut self) -> Result<(), Pop3Error> {
        self.command("QUIT", "QUIT").await.map(|_| ())
    }

    /// Starts the clock of [`Limits::command_timeout`] for a command.
    fn start_command(&mut self) {
        self.deadline = Some(Instant::now() + self.limits.command_timeout());
    }

    /// Ends a command started with [`Self::start_command`]. A command stopped half
    /// way by a bound leaves the session out of step: it is closed.
    fn end_command<T>(&mut self, result: Result<T, Pop3Error>) -> Result<T, Pop3Error> {
        self.deadline = None;
        if matches!(result, Err(Pop3Error::LimitExceeded { .. })) {
            self.conn = MailStream::Closed;
        }
        result
    }

    /// The time the next read may take: the per-answer timeout, or less when the
    /// command's own time runs out first (then an error once it has).
    fn read_timeout(&self, step: &'static str) -> Result<Duration, Pop3Error> {
        match self.deadline {
            None => Ok(self.timeout),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    Err(self.command_time_exceeded(step))
                } else {
                    Ok(left.min(self.timeout))
                }
            }
        }
    }

    fn command_time_exceeded(&self, step: &'static str) -> Pop3Error {
        Pop3Error::LimitExceeded {
            what: format!("the time {step} took"),
            limit: Limit::CommandTime(self.limits.command_timeout()),
        }
    }

    /// The error for a read that timed out: the command's time, or the server's
    /// silence.
    fn timed_out(&self, step: &'static str) -> Pop3Error {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return self.command_time_exceeded(step);
        }
        Pop3Error::Io {
            step,
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the server did not answer in time",
            ),
        }
    }

    async fn command(&mut self, line: &str, step: &'static str) -> Result<Status, Pop3Error> {
        self.write_line(line, step).await?;
        self.expect_ok(step).await
    }

    async fn expect_ok(&mut self, step: &'static str) -> Result<Status, Pop3Error> {
        let status = self.read_status(step).await?;
        if status.ok {
            Ok(status)
        } else {
            Err(Pop3Error::Refused {
                step,
                status,
                sign_in: None,
            })
        }
    }

    async fn read_status(&mut self, step: &'static str) -> Result<Status, Pop3Error> {
        let line = self.read_line(step).await?;
        Status::parse_bytes(&line).map_err(|e| Pop3Error::Protocol {
            step,
            detail: e.to_string(),
        })
    }

    async fn write_line(&mut self, line: &str, step: &'static str) -> Result<(), Pop3Error> {
        self.conn
            .write_line(line.as_bytes())
            .await
            .map_err(|source| Pop3Error::Io { step, source })
    }

    /// One status or listing line without its CR LF, at most [`MAX_LINE`] bytes.
    async fn read_line(&mut self, step: &'static str) -> Result<Vec<u8>, Pop3Error> {
        let timeout = self.read_timeout(step)?;
        match self.conn.read_line(MAX_LINE, timeout).await {
            Ok(line) => Ok(line),
            Err(LineError::TooLong(max)) => Err(Pop3Error::Protocol {
                step,
                detail: format!("a line longer than {max} bytes"),
            }),
            Err(LineError::Io(source)) if source.kind() == std::io::ErrorKind::TimedOut => {
                Err(match self.timed_out(step) {
                    Pop3Error::Io { .. } => Pop3Error::Io { step, source },
                    limit => limit,
                })
            }
            Err(LineError::Io(source)) => Err(Pop3Error::Io { step, source }),
            Err(other) => Err(Pop3Error::Io {
                step,
                source: std::io::Error::other(other),
            }),
        }
    }
}
