//! A raw line client for IMAP, POP3, SMTP and LMTP, for tests and for the mail store:
//! plain TCP, implicit TLS, and STARTTLS/STLS upgrades, trusting only the CA it is given.
//!
//! It sends exactly the bytes it is told to and returns the server's lines verbatim
//! (without the CRLF), so tests can assert Exchange's replies byte for byte. Every read
//! has a timeout so a silent server fails the test instead of hanging it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long a read waits before giving up.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest line accepted from a server.
const MAX_LINE: usize = 1024 * 1024;

enum Stream {
    Plain(BufReader<TcpStream>),
    Tls(Box<BufReader<TlsStream<TcpStream>>>),
    /// Between a failed upgrade and drop.
    Closed,
}

/// A connection that reads and writes CRLF-terminated lines.
pub struct LineClient {
    stream: Stream,
    /// Every line read and written, for failure messages (`C: ` / `S: ` prefixed).
    transcript: Vec<String>,
}

impl std::fmt::Debug for LineClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineClient")
            .field("tls", &self.is_tls())
            .finish_non_exhaustive()
    }
}

fn timeout_error(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("server did not answer within {READ_TIMEOUT:?} ({what})"),
    )
}

fn closed_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "connection is closed")
}

/// A rustls client configuration that trusts only the CA in `ca_pem`.
pub fn tls_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    Arc::new(crate::crypto::client_config_trusting(ca_pem))
}

async fn tls_handshake(
    tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio::time::timeout(READ_TIMEOUT, TlsConnector::from(config).connect(name, tcp))
        .await
        .map_err(|_| timeout_error("TLS handshake"))?
}

impl LineClient {
    /// Connects over plain TCP.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        Ok(Self {
            stream: Stream::Plain(BufReader::new(tcp)),
            transcript: Vec::new(),
        })
    }

    /// Connects with implicit TLS (IMAPS, POP3S), checking the certificate for `server_name`.
    pub async fn connect_tls(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> std::io::Result<Self> {
        let tcp = TcpStream::connect(addr).await?;
        let tls = tls_handshake(tcp, config, server_name).await?;
        Ok(Self {
            stream: Stream::Tls(Box::new(BufReader::new(tls))),
            transcript: Vec::new(),
        })
    }

    /// Upgrades a plain connection to TLS after the server agreed (`STARTTLS`, `STLS`).
    pub async fn upgrade_tls(
        &mut self,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> std::io::Result<()> {
        let Stream::Plain(reader) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Err(std::io::Error::other("connection is not plain TCP"));
        };
        if !reader.buffer().is_empty() {
            return Err(std::io::Error::other(
                "server sent data after the STARTTLS reply (possible injection)",
            ));
        }
        let tls = tls_handshake(reader.into_inner(), config, server_name).await?;
        self.stream = Stream::Tls(Box::new(BufReader::new(tls)));
        self.transcript.push("-- TLS --".to_owned());
        Ok(())
    }

    /// True once the connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, Stream::Tls(_))
    }

    /// Everything said so far, one line per entry (`C: ...`, `S: ...`).
    pub fn transcript(&self) -> String {
        self.transcript.join("\n")
    }

    /// Sends raw bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.stream {
            Stream::Plain(s) => {
                s.get_mut().write_all(bytes).await?;
                s.get_mut().flush().await
            }
            Stream::Tls(s) => {
                s.get_mut().write_all(bytes).await?;
                s.get_mut().flush().await
            }
            Stream::Closed => Err(closed_error()),
        }
    }

    /// Sends `line` followed by CRLF.
    pub async fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        self.transcript.push(format!("C: {}", shorten(line)));
        let mut bytes = Vec::with_capacity(line.len() + 2);
        bytes.extend_from_slice(line.as_bytes());
        bytes.extend_from_slice(b"\r\n");
        self.send_raw(&bytes).await
    }

    async fn read_until_lf(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        let read = async {
            match &mut self.stream {
                Stream::Plain(s) => (&mut *s).take(MAX_LINE as u64).read_until(b'\n', buf).await,
                Stream::Tls(s) => {
                    (&mut **s)
                        .take(MAX_LINE as u64)
                        .read_until(b'\n', buf)
                        .await
                }
                Stream::Closed => Err(closed_error()),
            }
        };
        tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| timeout_error("line"))?
    }

    /// Reads one line, without its CRLF. An error when the server closed the connection.
    pub async fn read_line(&mut self) -> std::io::Result<String> {
        let mut buf = Vec::new();
        let n = self.read_until_lf(&mut buf).await?;
        if n == 0 {
            self.transcript.push("S: <connection closed>".to_owned());
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("server closed the connection\n{}", self.transcript()),
            ));
        }
        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            buf.pop();
        }
        let line = String::from_utf8_lossy(&buf).into_owned();
        self.transcript.push(format!("S: {}", shorten(&line)));
        Ok(line)
    }

    /// Reads exactly `len` bytes (an IMAP literal).
    pub async fn read_exact(&mut self, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0; len];
        let read = async {
            match &mut self.stream {
                Stream::Plain(s) => s.read_exact(&mut buf).await,
                Stream::Tls(s) => s.read_exact(&mut buf).await,
                Stream::Closed => Err(closed_error()),
            }
        };
        tokio::time::timeout(READ_TIMEOUT, read)
            .await
            .map_err(|_| timeout_error("literal"))??;
        self.transcript.push(format!("S: <{len} bytes>"));
        Ok(buf)
    }

    /// Reads IMAP response lines until the tagged completion for `tag`; returns every
    /// line, the tagged one last. Literals are read and inlined (lossily) so a line is
    /// always one whole response.
    pub async fn read_imap_until_tagged(&mut self, tag: &str) -> std::io::Result<Vec<String>> {
        let prefix = format!("{tag} ");
        let mut lines = Vec::new();
        loop {
            let line = self.read_imap_response().await?;
            let done = line.starts_with(&prefix);
            lines.push(line);
            if done {
                return Ok(lines);
            }
        }
    }

    /// Reads one IMAP response, following literals (`{N}` at the end of a line).
    pub async fn read_imap_response(&mut self) -> std::io::Result<String> {
        let mut out = String::new();
        loop {
            let line = self.read_line().await?;
            out.push_str(&line);
            match literal_length(&line) {
                Some(len) if len <= MAX_LINE * 64 => {
                    let bytes = self.read_exact(len).await?;
                    out.push_str("\r\n");
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
                Some(_) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "literal too large",
                    ));
                }
                None => return Ok(out),
            }
        }
    }

    /// Sends an IMAP command with `tag` and returns every response up to the tagged one.
    pub async fn imap_command(&mut self, tag: &str, command: &str) -> std::io::Result<Vec<String>> {
        self.send_line(&format!("{tag} {command}")).await?;
        self.read_imap_until_tagged(tag).await
    }

    /// Reads one SMTP/LMTP reply (all continuation lines); returns the code and the lines.
    pub async fn read_smtp_reply(&mut self) -> std::io::Result<SmtpReply> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().await?;
            let code = line
                .get(..3)
                .and_then(|c| c.parse::<u16>().ok())
                .ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("not an SMTP reply: {line}"),
                    )
                })?;
            let more = line.as_bytes().get(3) == Some(&b'-');
            lines.push(line);
            if !more {
                return Ok(SmtpReply { code, lines });
            }
        }
    }

    /// Sends an SMTP command and reads its reply.
    pub async fn smtp_command(&mut self, command: &str) -> std::io::Result<SmtpReply> {
        self.send_line(command).await?;
        self.read_smtp_reply().await
    }

    /// Reads a POP3 multi-line body (after a `+OK` line) up to the lone `.`, un-stuffed.
    pub async fn read_pop_multiline(&mut self) -> std::io::Result<Vec<String>> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line == "." {
                return Ok(lines);
            }
            lines.push(line.strip_prefix('.').map_or(line.clone(), str::to_owned));
        }
    }

    /// Sends a POP3 command and reads its one-line status.
    pub async fn pop_command(&mut self, command: &str) -> std::io::Result<String> {
        self.send_line(command).await?;
        self.read_line().await
    }
}

/// An SMTP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    pub code: u16,
    /// Every line, with its code.
    pub lines: Vec<String>,
}

impl SmtpReply {
    /// The last line (the whole reply for single-line replies).
    pub fn last(&self) -> &str {
        self.lines.last().map_or("", String::as_str)
    }

    /// Whether any line advertises `keyword` (EHLO capability lists).
    pub fn has_keyword(&self, keyword: &str) -> bool {
        self.lines.iter().any(|l| {
            l.get(4..)
                .is_some_and(|k| k.split_whitespace().next() == Some(keyword))
        })
    }
}

impl std::fmt::Display for SmtpReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.lines.join("\n"))
    }
}

/// The length of the literal announced at the end of an IMAP line (`{123}` or `{123+}`).
pub fn literal_length(line: &str) -> Option<usize> {
    let rest = line.strip_suffix('}')?;
    let open = rest.rfind('{')?;
    let digits = rest.get(open + 1..)?;
    let digits = digits.strip_suffix('+').unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn shorten(line: &str) -> String {
    if line.len() > 200 {
        let cut = (0..=200)
            .rev()
            .find(|i| line.is_char_boundary(*i))
            .unwrap_or(0);
        format!(
            "{}... ({} bytes)",
            line.get(..cut).unwrap_or_default(),
            line.len()
        )
    } else {
        line.to_owned()
    }
}

/// The SASL XOAUTH2 initial response, base64: `user=U^Aauth=Bearer T^A^A`.
pub fn xoauth2(user: &str, token: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"))
}

/// The SASL OAUTHBEARER (RFC 7628) initial response, base64.
pub fn oauthbearer(user: &str, host: &str, port: u16, token: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!(
        "n,a={user},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01"
    ))
}

/// The SASL PLAIN initial response, base64 (no authorization identity).
pub fn plain(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

/// Dot-stuffs a message for SMTP `DATA` and appends the terminating `.` line.
pub fn dot_stuff(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 16);
    let mut at_line_start = true;
    let mut prev = 0u8;
    for &b in raw {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
        prev = b;
    }
    if !at_line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xoauth2_matches_microsofts_worked_example() {
        assert_eq!(
            xoauth2(
                "test@contoso.onmicrosoft.com",
                "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA"
            ),
            "dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVyIEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0NjbFJDM0VvQUEBAQ=="
        );
    }

    #[test]
    fn oauthbearer_matches_the_notes_example() {
        assert_eq!(
            oauthbearer("user@example.com", "outlook.office365.com", 993, "TOKEN"),
            "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9b3V0bG9vay5vZmZpY2UzNjUuY29tAXBvcnQ9OTkzAWF1dGg9QmVhcmVyIFRPS0VOAQE="
        );
    }

    #[test]
    fn literal_lengths() {
        assert_eq!(literal_length("* 1 FETCH (BODY[] {12}"), Some(12));
        assert_eq!(literal_length("A APPEND x {3+}"), Some(3));
        assert_eq!(literal_length("* OK {x}"), None);
        assert_eq!(literal_length("{}"), None);
        assert_eq!(literal_length("no literal"), None);
    }

    #[test]
    fn dot_stuffing_escapes_leading_dots_and_normalises_line_ends() {
        assert_eq!(
            dot_stuff(b"a\n.b\r\n..c"),
            b"a\r\n..b\r\n...c\r\n.\r\n".to_vec()
        );
        assert_eq!(dot_stuff(b"x\r\n"), b"x\r\n.\r\n".to_vec());
    }
}
