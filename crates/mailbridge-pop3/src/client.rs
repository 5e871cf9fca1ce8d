//! The POP3 client.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use mailbridge_tls::{LineError, MailStream, TlsSettings};
use mailbridge_types::ErrorClass;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};

use crate::response::{MAX_LINE, Meaning, Status, parse_uidl_line};

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
}

impl Pop3Config {
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
    #[error("{step} was refused: -ERR {}. {}", status.text, status.meaning().fix())]
    Refused { step: &'static str, status: Status },
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
        }
    }

    /// The meaning of the server's refusal, if it refused.
    pub fn meaning(&self) -> Option<Meaning> {
        match self {
            Pop3Error::Refused { status, .. } => Some(status.meaning()),
            _ => None,
        }
    }
}

/// A connected POP3 session.
#[derive(Debug)]
pub struct Pop3Client {
    conn: MailStream,
    timeout: Duration,
    /// How the connection is secured.
    tls: TlsMode,
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
            tls,
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
    /// Microsoft 365 requires.
    pub async fn authenticate(&mut self, credentials: &Credentials) -> Result<(), Pop3Error> {
        match credentials {
            Credentials::XOAuth2 { user, token } => {
                self.write_line("AUTH XOAUTH2", "AUTH").await?;
                let cont = self.read_status("AUTH").await?;
                if !cont.continuation {
                    return Err(Pop3Error::Refused {
                        step: "AUTH XOAUTH2",
                        status: cont,
                    });
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
                    Err(Pop3Error::Refused {
                        step: "AUTH XOAUTH2",
                        status,
                    })
                }
            }
            Credentials::UserPass { user, password } => {
                self.command(&format!("USER {user}"), "USER").await?;
                self.write_line(&format!("PASS {}", password.expose_secret()), "PASS")
                    .await?;
                self.expect_ok("PASS").await.map(|_| ())
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

    /// `UIDL`: every message's number and unique id (the checkpoint key).
    pub async fn uidl(&mut self) -> Result<Vec<(u32, String)>, Pop3Error> {
        self.command("UIDL", "UIDL").await?;
        let mut out = Vec::new();
        loop {
            let line = self.read_line("UIDL").await?;
            if line == b"." {
                return Ok(out);
            }
            let text = String::from_utf8_lossy(&line);
            let entry = parse_uidl_line(&text).ok_or_else(|| Pop3Error::Protocol {
                step: "UIDL",
                detail: format!(
                    "bad listing line {:?}",
                    text.chars().take(100).collect::<String>()
                ),
            })?;
            out.push(entry);
        }
    }

    /// `RETR n`, streamed into `sink` with the dot stuffing removed and CR LF line ends
    /// kept; returns the number of bytes written. The message is never held in memory.
    pub async fn retr<W: AsyncWrite + Unpin>(
        &mut self,
        n: u32,
        sink: &mut W,
    ) -> Result<u64, Pop3Error> {
        self.command(&format!("RETR {n}"), "RETR").await?;
        let mut written = 0u64;
        loop {
            let line = self.read_line("RETR").await?;
            if line == b"." {
                sink.flush().await.map_err(|source| Pop3Error::Io {
                    step: "writing the message",
                    source,
                })?;
                return Ok(written);
            }
            let content = line.strip_prefix(b".").unwrap_or(&line);
            sink.write_all(content)
                .await
                .map_err(|source| Pop3Error::Io {
                    step: "writing the message",
                    source,
                })?;
            sink.write_all(b"\r\n")
                .await
                .map_err(|source| Pop3Error::Io {
                    step: "writing the message",
                    source,
                })?;
            written += content.len() as u64 + 2;
        }
    }

    /// `DELE n` (takes effect at `QUIT`).
    pub async fn dele(&mut self, n: u32) -> Result<(), Pop3Error> {
        self.command(&format!("DELE {n}"), "DELE").await.map(|_| ())
    }

    /// `QUIT`: commits deletions.
    pub async fn quit(mut self) -> Result<(), Pop3Error> {
        self.command("QUIT", "QUIT").await.map(|_| ())
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
            Err(Pop3Error::Refused { step, status })
        }
    }

    async fn read_status(&mut self, step: &'static str) -> Result<Status, Pop3Error> {
        let line = self.read_line(step).await?;
        Status::parse(&String::from_utf8_lossy(&line)).map_err(|e| Pop3Error::Protocol {
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

    /// One line without its CR LF, at most [`MAX_LINE`] bytes.
    async fn read_line(&mut self, step: &'static str) -> Result<Vec<u8>, Pop3Error> {
        let line = self
            .conn
            .read_line(MAX_LINE, self.timeout)
            .await
            .map_err(|e| match e {
                LineError::TooLong(max) => Pop3Error::Protocol {
                    step,
                    detail: format!("a line longer than {max} bytes"),
                },
                LineError::Io(source) => Pop3Error::Io { step, source },
                other => Pop3Error::Io {
                    step,
                    source: std::io::Error::other(other),
                },
            })?;
        Ok(line)
    }
}
