//! The SMTP relay sink: a received message handed, bytes unchanged, to an SMTP
//! server (the firewall connector's "deliver into the local relay").
//!
//! The envelope sender is the route's, else the message's `Return-Path`, else its
//! `From`, else the null sender `<>`; the recipients are the route's, else the
//! message's `To`, `Cc` and `Bcc` (each once). The message goes as it was fetched,
//! with only an optional `Received:` trace header in front (RFC 5321 §4.4) naming
//! mailbridge and the delivery's idempotency key. One connection per delivery, with
//! the TLS mode, trust and optional password sign-in of the relay's settings; a
//! refused recipient refuses the whole message. A relay is at-least-once: a lost
//! reply to the final `.` is `OutcomeUnknown`, which the connector does not resend
//! blindly.

use mail_parser::{Address, HeaderValue, MessageParser};
use mailbridge_smtp::{Credentials, SmtpClient, SmtpConfig};
use secrecy::SecretString;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt as _, BufReader};

use crate::{Accepted, Delivery, SinkError};

/// The most header bytes read to find the envelope.
const MAX_HEADER_BYTES: usize = 1024 * 1024;
/// The most recipients taken from a message's headers.
const MAX_RECIPIENTS: usize = 1000;

/// An SMTP relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub smtp: SmtpConfig,
    /// `AUTH PLAIN` with this login and password, when the relay wants it.
    pub login: Option<(String, SecretString)>,
    /// The envelope sender; `None` takes it from the message.
    pub envelope_from: Option<String>,
    /// The recipients; empty takes them from the message.
    pub recipients: Vec<String>,
    /// Put a `Received:` trace header in front of the message.
    pub received_header: bool,
    /// The largest message sent (the account's maximum message size).
    pub max_message_size: u64,
}

impl RelayConfig {
    /// A relay with the envelope from each message and a trace header.
    pub fn new(smtp: SmtpConfig) -> Self {
        Self {
            smtp,
            login: None,
            envelope_from: None,
            recipients: Vec::new(),
            received_header: true,
            max_message_size: 150 * 1024 * 1024,
        }
    }
}

/// An SMTP relay sink.
#[derive(Debug, Clone)]
pub struct RelaySink {
    config: RelayConfig,
}

/// The envelope of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub from: String,
    pub recipients: Vec<String>,
}

impl RelaySink {
    pub fn new(config: RelayConfig) -> Self {
        Self { config }
    }

    fn relay_name(&self) -> String {
        format!("{}:{}", self.config.smtp.host, self.config.smtp.port)
    }

    /// The envelope for a message whose header block is `headers`.
    pub fn envelope(&self, headers: &[u8]) -> Result<Envelope, SinkError> {
        let parsed = MessageParser::default().parse_headers(headers);
        let from = match &self.config.envelope_from {
            Some(from) => from.clone(),
            None => parsed
                .as_ref()
                .and_then(|m| match m.return_path() {
                    HeaderValue::Text(t) => Some(t.trim_matches(['<', '>', ' ']).to_owned()),
                    HeaderValue::TextList(l) => l
                        .first()
                        .map(|t| t.trim_matches(['<', '>', ' ']).to_owned()),
                    _ => None,
                })
                .filter(|a| a.contains('@'))
                .or_else(|| {
                    parsed
                        .as_ref()
                        .and_then(|m| m.from())
                        .and_then(|a| a.first())
                        .and_then(|a| a.address())
                        .map(str::to_owned)
                })
                .unwrap_or_default(),
        };
        let recipients = if self.config.recipients.is_empty() {
            let mut out: Vec<String> = Vec::new();
            if let Some(m) = &parsed {
                for address in [m.to(), m.cc(), m.bcc()].into_iter().flatten() {
                    for a in address_list(address) {
                        if !out.iter().any(|o| o.eq_ignore_ascii_case(&a)) {
                            out.push(a);
                        }
                    }
                }
            }
            out.truncate(MAX_RECIPIENTS);
            out
        } else {
            self.config.recipients.clone()
        };
        if recipients.is_empty() {
            return Err(SinkError::RelayConfig(
                "the message names no recipient in To, Cc or Bcc and the route sets none: set the route's recipients (for example the mailbox's own address)".to_owned(),
            ));
        }
        Ok(Envelope { from, recipients })
    }

    /// Sends the message to the relay.
    pub async fn deliver(&self, delivery: &Delivery) -> Result<Accepted, SinkError> {
        let io = |what: &'static str| {
            let path = delivery.spool.clone();
            move |source| SinkError::Io { what, path, source }
        };
        let size = tokio::fs::metadata(&delivery.spool)
            .await
            .map_err(io("reading the spooled message"))?
            .len();
        if size > self.config.max_message_size {
            return Err(SinkError::TooLarge {
                size,
                limit: self.config.max_message_size,
            });
        }
        let headers = read_headers(&delivery.spool)
            .await
            .map_err(io("reading the spooled message"))?;
        let envelope = self.envelope(&headers)?;
        let trace = if self.config.received_header {
            received_header(delivery, OffsetDateTime::now_utc())
        } else {
            String::new()
        };
        let relay = self.relay_name();
        let failed = |source| SinkError::Relay {
            relay: relay.clone(),
            source,
        };
        let mut client = SmtpClient::connect(&self.config.smtp)
            .await
            .map_err(failed)?;
        if let Some((user, password)) = &self.config.login {
            client
                .authenticate(&Credentials::Plain {
                    user: user.clone(),
                    password: password.clone(),
                })
                .await
                .map_err(failed)?;
        }
        let file = tokio::fs::File::open(&delivery.spool)
            .await
            .map_err(io("reading the spooled message"))?;
        let body = trace
            .as_bytes()
            .chain(BufReader::with_capacity(64 * 1024, file));
        let reply = client
            .send(&envelope.from, &envelope.recipients, body)
            .await
            .map_err(failed)?;
        let _ = client.quit().await;
        Ok(Accepted {
            location: format!(
                "{relay}: {} {}",
                reply.code,
                mailbridge_types::text::without_controls(&reply.lines.join(" "), 200)
            ),
            already_there: false,
        })
    }
}

fn address_list(address: &Address<'_>) -> Vec<String> {
    address
        .iter()
        .filter_map(|a| a.address())
        .filter(|a| a.contains('@') && !a.chars().any(|c| c.is_control() || c == ' '))
        .map(str::to_owned)
        .collect()
}

/// The header block of the spooled message (up to the blank line, at most
/// [`MAX_HEADER_BYTES`]).
async fn read_headers(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let file = tokio::fs::File::open(path).await?;
    let mut reader = BufReader::new(file).take(MAX_HEADER_BYTES as u64);
    let mut out = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = tokio::io::AsyncBufReadExt::read_until(&mut reader, b'\n', &mut line).await?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&line);
        if line == b"\r\n" || line == b"\n" {
            break;
        }
    }
    Ok(out)
}

/// `Received: by mailbridge (account A, folder F) id KEY; DATE` (RFC 5322 §3.6.7
/// trace field; RFC 5321 §4.4), every value stripped of what would break the line.
pub fn received_header(delivery: &Delivery, now: OffsetDateTime) -> String {
    let clean = |s: &str| -> String {
        mailbridge_types::text::without_controls(s, 200)
            .chars()
            .filter(|c| !matches!(c, '(' | ')' | ';' | '\\'))
            .collect()
    };
    let date = now
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    format!(
        "Received: by mailbridge (account {}, folder {}) id {};\r\n\t{}\r\n",
        clean(&delivery.account),
        clean(&delivery.folder),
        delivery.key,
        date
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdempotencyKey;

    fn sink(from: Option<&str>, recipients: &[&str]) -> RelaySink {
        let mut c = RelayConfig::new(SmtpConfig::new(
            "127.0.0.1",
            25,
            mailbridge_smtp::TlsMode::None,
        ));
        c.envelope_from = from.map(str::to_owned);
        c.recipients = recipients.iter().map(|s| (*s).to_owned()).collect();
        RelaySink::new(c)
    }

    #[test]
    fn the_envelope_comes_from_the_message() {
        let headers = b"Return-Path: <bounce@example.com>\r\nFrom: Alice <alice@example.com>\r\nTo: bob@example.com, Carol <carol@example.com>\r\nCc: BOB@example.com, dave@example.com\r\nBcc: eve@example.com\r\n\r\n";
        let e = sink(None, &[]).envelope(headers).unwrap();
        assert_eq!(e.from, "bounce@example.com");
        assert_eq!(
            e.recipients,
            [
                "bob@example.com",
                "carol@example.com",
                "dave@example.com",
                "eve@example.com"
            ]
        );
    }

    #[test]
    fn without_return_path_the_sender_is_from_or_null() {
        let e = sink(None, &[])
            .envelope(b"From: alice@example.com\r\nTo: b@example.com\r\n\r\n")
            .unwrap();
        assert_eq!(e.from, "alice@example.com");
        let e = sink(None, &[])
            .envelope(b"To: b@example.com\r\n\r\n")
            .unwrap();
        assert_eq!(e.from, "");
    }

    #[test]
    fn the_route_overrides_the_envelope() {
        let e = sink(Some("relay@corp.example"), &["archive@corp.example"])
            .envelope(b"From: alice@example.com\r\nTo: b@example.com\r\n\r\n")
            .unwrap();
        assert_eq!(e.from, "relay@corp.example");
        assert_eq!(e.recipients, ["archive@corp.example"]);
    }

    #[test]
    fn no_recipient_is_a_clear_error() {
        let e = sink(None, &[]).envelope(b"Subject: x\r\n\r\n").unwrap_err();
        assert_eq!(e.class(), mailbridge_types::ErrorClass::Misconfigured);
        assert!(e.to_string().contains("route's recipients"), "{e}");
    }

    #[test]
    fn the_trace_header_cannot_break_its_line() {
        let d = Delivery {
            key: IdempotencyKey::new("a", "f", "1", None),
            account: "evil\r\nBcc: x@y".to_owned(),
            folder: "IN(BOX);".to_owned(),
            source_id: "1".to_owned(),
            spool: std::path::PathBuf::new(),
            mime_link: None,
        };
        let h = received_header(&d, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(h.matches("\r\n").count(), 2, "{h}");
        assert!(h.starts_with("Received: by mailbridge (account evilBcc: x@y, folder INBOX) id "));
        assert!(
            h.ends_with("\r\n\tThu, 01 Jan 1970 00:00:00 +0000\r\n"),
            "{h}"
        );
    }
}
