//! The SMTP relay sink: a received message handed, bytes unchanged, to an SMTP
//! server (the firewall connector's "deliver into the local relay").
//!
//! The envelope sender is the route's, else the message's `Return-Path`, else its
//! `From`, else the null sender `<>`; the recipients are the route's, else the
//! message's `To`, `Cc` and `Bcc` (each once). The message goes as it was fetched,
//! with only an optional `Received:` trace header in front (RFC 5321 §4.4) naming
//! mailbridge and the delivery's idempotency key. The TLS mode, trust and optional
//! password sign-in are the relay's settings; a refused recipient refuses the whole
//! message. A relay is at-least-once: a lost reply to the final `.` is
//! `OutcomeUnknown`, which the connector does not resend blindly.
//!
//! Connections: a sink (and its clones) sends one message at a time and keeps its
//! connection open between deliveries: the next message goes on it with a new
//! `MAIL FROM` (after `RSET` when the previous transaction failed). When a kept
//! connection turns out closed, or its `RSET` or `MAIL FROM` fails (the server
//! timed it out, answered 421, or went away), the message goes on a fresh
//! connection instead: nothing of it had been accepted, so nothing is sent twice. A
//! failure once `MAIL FROM` was accepted is never retried here, and after the final
//! `.` it stays `OutcomeUnknown`. A connection left idle for
//! [`RelayConfig::idle_timeout`] is closed with `QUIT` (also by [`RelaySink::close`]).

use mail_parser::{Address, HeaderValue, MessageParser};
use std::sync::{Arc, Weak};
use std::time::Duration;

use mailbridge_smtp::{Credentials, Reply, SmtpClient, SmtpConfig, SmtpError};
use secrecy::SecretString;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt as _, BufReader};
use tokio::time::Instant;

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
    /// How long a connection stays open after a delivery for the next one (then
    /// `QUIT`); zero closes it after every delivery.
    pub idle_timeout: Duration,
}

/// How long a relay connection stays open between deliveries unless set otherwise.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_mins(1);

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
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// An SMTP relay sink. Clones share its connection (and send one at a time).
#[derive(Debug, Clone)]
pub struct RelaySink {
    config: RelayConfig,
    kept: Arc<Kept>,
}

/// The connection kept between deliveries; its lock is held for a whole delivery.
#[derive(Debug, Default)]
struct Kept {
    slot: tokio::sync::Mutex<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    idle: Option<Idle>,
    /// A task closes `idle` once it has been idle too long.
    closer_running: bool,
}

#[derive(Debug)]
struct Idle {
    client: SmtpClient,
    since: Instant,
    /// Its last transaction failed: `RSET` before the next.
    needs_reset: bool,
}

/// The envelope of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub from: String,
    pub recipients: Vec<String>,
}

impl RelaySink {
    pub fn new(config: RelayConfig) -> Self {
        Self {
            config,
            kept: Arc::default(),
        }
    }

    /// Closes the kept connection now (`QUIT`), if there is one: at shutdown, or to
    /// let go of the relay early. The next delivery connects again.
    pub async fn close(&self) {
        let idle = self.kept.slot.lock().await.idle.take();
        if let Some(idle) = idle {
            let _ = idle.client.quit().await;
        }
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
        let mut slot = self.kept.slot.lock().await;
        let kept = self.take_kept(&mut slot).await;
        let reused = kept.is_some();
        let mut client = match kept {
            Some(client) => client,
            None => self.connect().await?,
        };
        let mut sent = self.send_on(&mut client, delivery, &envelope, &trace).await;
        if reused
            && let Err(Failure::Smtp(e)) = &sent
            && not_begun(e)
        {
            // The kept connection was closed or refused to go on before this message
            // began: nothing of it was taken, so it goes on a fresh connection.
            tracing::debug!(relay = %relay, error = %mailbridge_types::error_chain(e), "the kept relay connection failed before MAIL FROM; connecting again");
            client = self.connect().await?;
            sent = self.send_on(&mut client, delivery, &envelope, &trace).await;
        }
        let keep = match &sent {
            Ok(_) | Err(Failure::Spool(_)) => true,
            Err(Failure::Smtp(e)) => session_survives(e),
        };
        if keep && client.is_open() && !self.config.idle_timeout.is_zero() {
            slot.idle = Some(Idle {
                client,
                since: Instant::now(),
                needs_reset: sent.is_err(),
            });
            if !slot.closer_running {
                slot.closer_running = true;
                tokio::spawn(close_when_idle(
                    Arc::downgrade(&self.kept),
                    self.config.idle_timeout,
                ));
            }
        } else if keep && client.is_open() {
            drop(slot);
            let _ = client.quit().await;
        }
        match sent {
            Ok(reply) => Ok(Accepted {
                location: format!(
                    "{relay}: {} {}",
                    reply.code,
                    mailbridge_types::text::without_controls(&reply.lines.join(" "), 200)
                ),
                already_there: false,
            }),
            Err(Failure::Spool(e)) => Err(e),
            Err(Failure::Smtp(source)) => Err(SinkError::Relay { relay, source }),
        }
    }

    /// The kept connection, ready for a new transaction (`RSET` done when its last
    /// one failed); `None` when there is none, it idled too long, or `RSET` failed.
    async fn take_kept(&self, slot: &mut Slot) -> Option<SmtpClient> {
        let mut idle = slot.idle.take()?;
        // Past its idle time (the closing task had not come to it yet): dropped, as
        // a QUIT to a relay that stopped answering would hold this delivery up.
        if idle.since.elapsed() >= self.config.idle_timeout || !idle.client.is_open() {
            return None;
        }
        if idle.needs_reset
            && let Err(e) = idle.client.reset().await
        {
            tracing::debug!(relay = %self.relay_name(), error = %mailbridge_types::error_chain(&e), "RSET on the kept relay connection failed; connecting again");
            return None;
        }
        Some(idle.client)
    }

    /// A new connection, signed in when the relay wants it.
    async fn connect(&self) -> Result<SmtpClient, SinkError> {
        let failed = |source| SinkError::Relay {
            relay: self.relay_name(),
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
        Ok(client)
    }

    /// One transaction on `client`: the trace header, then the spooled bytes.
    async fn send_on(
        &self,
        client: &mut SmtpClient,
        delivery: &Delivery,
        envelope: &Envelope,
        trace: &str,
    ) -> Result<Reply, Failure> {
        let file = tokio::fs::File::open(&delivery.spool)
            .await
            .map_err(|source| {
                Failure::Spool(SinkError::Io {
                    what: "reading the spooled message",
                    path: delivery.spool.clone(),
                    source,
                })
            })?;
        let body = trace
            .as_bytes()
            .chain(BufReader::with_capacity(64 * 1024, file));
        client
            .send(&envelope.from, &envelope.recipients, body)
            .await
            .map_err(Failure::Smtp)
    }
}

/// Why one transaction failed.
#[derive(Debug)]
enum Failure {
    /// The spooled message could not be opened (nothing was sent).
    Spool(SinkError),
    Smtp(SmtpError),
}

/// The transaction failed before the server accepted its `MAIL FROM`: the
/// connection was found closed, timed out, or the server is closing it (421). Such a
/// failure on a kept connection says nothing about the relay, only about that
/// connection.
fn not_begun(e: &SmtpError) -> bool {
    match e {
        SmtpError::Io { step, .. } | SmtpError::Protocol { step, .. } => *step == "MAIL FROM",
        SmtpError::Refused { step, reply, .. } => *step == "MAIL FROM" && reply.code == 421,
        _ => false,
    }
}

/// Whether the session is still in step after a failed transaction (a refusal the
/// server answered in full), so that `RSET` makes it usable again. A broken
/// connection, a dropped `DATA`, an outcome unknown or a server closing (421) are not.
fn session_survives(e: &SmtpError) -> bool {
    match e {
        SmtpError::Refused { reply, .. } | SmtpError::RecipientRefused { reply, .. } => {
            reply.code != 421
        }
        SmtpError::InvalidAddress(_) | SmtpError::MessageTooLarge { .. } => true,
        _ => false,
    }
}

/// Closes the kept connection once it has been idle for `idle`; ends when there is
/// no kept connection any more (a delivery took it, or it was closed) or the sink is
/// gone.
async fn close_when_idle(kept: Weak<Kept>, idle: Duration) {
    loop {
        let Some(strong) = kept.upgrade() else {
            return;
        };
        let mut slot = strong.slot.lock().await;
        let Some(since) = slot.idle.as_ref().map(|i| i.since) else {
            slot.closer_running = false;
            return;
        };
        let until = since + idle;
        if Instant::now() >= until {
            let expired = slot.idle.take();
            slot.closer_running = false;
            drop(slot);
            if let Some(expired) = expired {
                let _ = expired.client.quit().await;
            }
            return;
        }
        drop(slot);
        drop(strong);
        tokio::time::sleep_until(until).await;
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
