//! One send API over the transports: [`Sender`], implemented by [`SmtpSender`],
//! [`GraphSender`] and [`EwsSender`] (and [`AnySender`], which is whichever the
//! account uses).
//!
//! What is sent is an [`Outgoing`]: a structured [`Message`] or raw MIME
//! ([`RawMime`], from a file or any reader). The sender address is the message's
//! `From` (the account's address or a send-as address); whether it may be used is the
//! server's decision, and a refusal comes back classified (SMTP `5.2.252`, Graph and
//! EWS `ErrorSendAsDenied`).
//!
//! - SMTP: the connection is opened on first use and reused for the next messages
//!   (`RSET` after a refused message). A reused connection found dead, or closing with
//!   `421` (the server's idle timeout), before any of the body was read is reopened
//!   once; one that fails once the body is going out is an error, never retried, so a
//!   message the server may have kept is not sent twice. A
//!   structured message is first written to an anonymous temporary file, without the
//!   `Bcc` field (Bcc recipients are in the envelope only), then streamed into `DATA`;
//!   raw MIME is streamed from its reader with its `Bcc` field dropped. Nothing is held
//!   whole in memory.
//! - Graph: messages whose MIME fits one request (3 MB, 4 MB after base64) go through
//!   `sendMail` as MIME. Larger ones, and any with an attachment of 3 MB or more, become
//!   a draft (`POST messages`, JSON), get their attachments (one request each below
//!   3 MB, an upload session in chunks of 10 × 320 KiB from 3 MB to 150 MB), and the
//!   draft is sent. The client keeps at most 4 requests in flight per mailbox and
//!   honours `Retry-After`. A draft carries one body, because Graph's `itemBody` holds
//!   one: the HTML when both are given (the text alternative is not sent).
//! - Graph, raw MIME: up to 3 MB through `sendMail` as it is. A larger message (up to
//!   150 MB) is parsed (mail-parser) into a [`Message`] and goes the draft way above:
//!   From, To, Cc, Bcc, Reply-To, Subject, `X-` header fields, the body (HTML wins),
//!   and every attachment with its name, content type and bytes; attachments of 3 MB
//!   or more through upload sessions. Left out, since a Graph draft cannot carry them:
//!   the other header fields (`internetMessageHeaders` takes `X-` fields only; Graph
//!   writes its own Date, Message-ID and MIME structure, so In-Reply-To and References
//!   are lost), the text alternative of an HTML body, and the inline mark of inline
//!   parts (they arrive as ordinary attachments). A draft takes at most 5 `X-` fields
//!   (Graph's 400 `InvalidInternetMessageHeaderCollection`): the ones mail systems add
//!   on the way (`X-MS-`, `X-Forefront-`, `X-Spam`...) are left out, and beyond 5 the
//!   rest. Text parts in the HTML view (a footer) are converted to HTML, not dropped.
//!   Every loss that matters is listed in [`Sent::notes`]. Signed or encrypted
//!   messages (S/MIME, PGP) are refused: taking them apart would break them. The
//!   whole message is read into memory
//!   and its attachments decoded there, about twice its size at the peak (measured in
//!   the CLI tests), never more than once each.
//!
//!   Why not a draft from the MIME itself (`POST messages` with base64 MIME, then the
//!   large attachments added)? The draft request has the same 4 MB limit as
//!   `sendMail`, so the large attachment parts would have to be cut out of the MIME
//!   first: rewriting arbitrary nested multiparts byte by byte, where a mistake
//!   silently corrupts mail; neither our Microsoft reference nor the emulated tenant
//!   cover MIME drafts; and the structured draft path is the one already tested for
//!   structured messages. The price is the list of losses above, which a sender who
//!   needs them avoids by sending that message over SMTP.
//! - EWS: `CreateItem` with `MessageDisposition="SendAndSaveCopy"` and the MIME inline
//!   in the SOAP body, so the MIME is held in memory (EWS has no streaming upload;
//!   Exchange's own limit is 35 MB by default).

use std::future::Future;
use std::io::SeekFrom;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use mail_parser::MessageParser;
use mailbridge_auth::source::TokenSource;
use mailbridge_auth::token::AuthError;
use mailbridge_ews::{EwsAuth, EwsClient};
use mailbridge_graph::{
    GraphClient, REQUEST_LIMIT, UPLOAD_CHUNK_UNIT, UPLOAD_SESSION_MAX, UPLOAD_SESSION_MIN,
};
use mailbridge_smtp::{Credentials, SmtpClient, SmtpConfig, SmtpError};
use mailbridge_types::ErrorClass;

use crate::connect::Identity;
use mailbridge_types::config::{EndpointConfig, Transport};
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncSeekExt as _, BufReader, BufWriter, ReadBuf};

use crate::compose::{Address, BccHeader, ComposeError, Content, Message};
use crate::mailbox::{ErrorKind, GraphMailboxAccess, MailboxError};
use mailbridge_types::error_chain;

/// Largest header block read from raw MIME (1 MiB).
pub const MAX_RAW_HEADER: usize = 1024 * 1024;
/// Largest MIME that Graph's `sendMail` takes: 4 MB after base64.
pub const GRAPH_MIME_LIMIT: u64 = REQUEST_LIMIT / 4 * 3;
/// Largest raw MIME mailbridge turns into a Graph draft (Graph's largest attachment,
/// and Exchange Online's largest message, is 150 MB).
pub const GRAPH_DRAFT_MIME_LIMIT: u64 = UPLOAD_SESSION_MAX;
/// Largest MIME mailbridge hands to EWS in one `CreateItem` (Exchange's maximum
/// configurable message size is 150 MB).
pub const EWS_MIME_LIMIT: u64 = 150 * 1024 * 1024;
/// Upload-session chunk: 10 × 320 KiB (3.125 MiB, under the 4 MB per request).
const UPLOAD_CHUNK: usize = UPLOAD_CHUNK_UNIT * 10;

fn error(class: ErrorClass, message: impl Into<String>) -> MailboxError {
    MailboxError::new(class, ErrorKind::of_class(class), message)
}

fn compose_error(e: &ComposeError) -> MailboxError {
    MailboxError::bad_message(e.class(), error_chain(e))
}

fn smtp_error(e: &SmtpError) -> MailboxError {
    error(e.class(), error_chain(e))
}

/// No access token to sign in with, classed as the sign-in's failure.
pub(crate) fn token_error(e: &AuthError) -> MailboxError {
    error(e.class(), format!("no access token: {}", error_chain(e)))
}

/// Raw MIME to send: the header block read (at most [`MAX_RAW_HEADER`]) and the rest
/// still in its reader.
pub struct RawMime {
    header: Vec<u8>,
    rest: Box<dyn AsyncRead + Send + Unpin>,
    recipients: Option<Vec<String>>,
    envelope_from: Option<String>,
    /// The whole message's size when known (a file), so that reading it whole
    /// allocates once.
    size_hint: Option<u64>,
}

impl std::fmt::Debug for RawMime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawMime")
            .field("header_len", &self.header.len())
            .field("recipients", &self.recipients)
            .finish_non_exhaustive()
    }
}

impl RawMime {
    /// Reads the header block of a message from `reader`.
    pub async fn from_reader<R: AsyncRead + Send + Unpin + 'static>(
        mut reader: R,
    ) -> Result<Self, MailboxError> {
        let mut read = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        let split = loop {
            if let Some(end) = header_end(&read) {
                break end;
            }
            if read.len() > MAX_RAW_HEADER {
                return Err(error(
                    ErrorClass::Permanent,
                    format!(
                        "the MIME message has no end of header (an empty line) within its first {MAX_RAW_HEADER} bytes: is it a MIME message?"
                    ),
                ));
            }
            let n = reader.read(&mut buf).await.map_err(|e| {
                error(
                    ErrorClass::Permanent,
                    format!("failed to read the MIME message: {e}"),
                )
            })?;
            if n == 0 {
                // A message that is all header.
                break read.len();
            }
            read.extend_from_slice(buf.get(..n).unwrap_or_default());
        };
        let body_start = read.split_off(split);
        if MessageParser::default().parse_headers(&read).is_none() {
            return Err(error(
                ErrorClass::Permanent,
                "the MIME message's header cannot be read: is it a MIME (.eml) message?",
            ));
        }
        Ok(Self {
            header: read,
            rest: Box::new(std::io::Cursor::new(body_start).chain(reader)),
            recipients: None,
            envelope_from: None,
            size_hint: None,
        })
    }

    /// Opens a MIME file (`.eml`).
    pub async fn from_file(path: &Path) -> Result<Self, MailboxError> {
        let file = tokio::fs::File::open(path).await.map_err(|e| {
            error(
                ErrorClass::Permanent,
                format!("failed to open the MIME file {}: {e}", path.display()),
            )
        })?;
        let size = file.metadata().await.ok().map(|m| m.len());
        let mut mime = Self::from_reader(BufReader::new(file)).await?;
        mime.size_hint = size;
        Ok(mime)
    }

    /// SMTP only: envelope recipients instead of the header's To, Cc and Bcc.
    #[must_use]
    pub fn with_recipients(mut self, recipients: Vec<String>) -> Self {
        self.recipients = Some(recipients);
        self
    }

    /// SMTP only: the envelope sender (`MAIL FROM`) instead of the header's From.
    #[must_use]
    pub fn with_envelope_from(mut self, from: String) -> Self {
        self.envelope_from = Some(from);
        self
    }

    fn parsed(&self) -> Option<mail_parser::Message<'_>> {
        MessageParser::default().parse_headers(&self.header)
    }

    /// The header's To, Cc and Bcc addresses.
    pub fn header_recipients(&self) -> Vec<String> {
        let Some(m) = self.parsed() else {
            return Vec::new();
        };
        [m.to(), m.cc(), m.bcc()]
            .into_iter()
            .flatten()
            .flat_map(|a| a.iter())
            .filter_map(|a| a.address.as_deref())
            .map(str::to_owned)
            .collect()
    }

    /// The header's From address.
    pub fn from_address(&self) -> Option<String> {
        let m = self.parsed()?;
        m.from()?.first()?.address().map(str::to_owned)
    }

    /// The header's Message-ID (without angle brackets).
    pub fn message_id(&self) -> Option<String> {
        self.parsed()?.message_id().map(str::to_owned)
    }

    /// The header block without its `Bcc` field(s).
    pub fn header_without_bcc(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header.len());
        let mut skipping = false;
        for line in self.header.split_inclusive(|b| *b == b'\n') {
            let continuation = matches!(line.first(), Some(b' ' | b'\t'));
            if !continuation {
                skipping = line
                    .iter()
                    .position(|b| *b == b':')
                    .and_then(|i| line.get(..i))
                    .is_some_and(|name| name.trim_ascii().eq_ignore_ascii_case(b"bcc"));
            }
            if !skipping {
                out.extend_from_slice(line);
            }
        }
        out
    }

    /// The whole message in memory, refused over `limit` bytes.
    async fn into_vec(self, limit: u64, why: &str) -> Result<Vec<u8>, MailboxError> {
        let mut out = self.header;
        if let Some(size) = self.size_hint {
            // Room for the end-of-file read too, or the vector doubles at the end.
            let want = usize::try_from(size.min(limit) + 64).unwrap_or(0);
            out.reserve_exact(want.saturating_sub(out.len()));
        }
        let mut rest = self.rest.take(limit.saturating_sub(out.len() as u64) + 1);
        rest.read_to_end(&mut out).await.map_err(|e| {
            error(
                ErrorClass::Permanent,
                format!("failed to read the MIME message: {e}"),
            )
        })?;
        if out.len() as u64 > limit {
            return Err(error(ErrorClass::Permanent, why.to_owned()));
        }
        Ok(out)
    }
}

/// Where the header block ends (after its empty line).
fn header_end(data: &[u8]) -> Option<usize> {
    if data.starts_with(b"\r\n") {
        return Some(2);
    }
    if data.starts_with(b"\n") {
        return Some(1);
    }
    let crlf = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = data.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What to send.
#[derive(Debug)]
pub enum Outgoing<'a> {
    /// A structured message.
    Message(&'a Message),
    /// Raw MIME.
    Mime(RawMime),
}

/// How a message went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Route {
    /// SMTP `DATA`.
    SmtpData,
    /// Graph `sendMail` with the MIME.
    GraphSendMail,
    /// A Graph draft with its attachments, then `send`.
    GraphDraft {
        /// Attachments uploaded through upload sessions.
        upload_sessions: usize,
    },
    /// EWS `CreateItem` (`SendAndSaveCopy`).
    EwsCreateItem,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::SmtpData => f.write_str("SMTP DATA"),
            Route::GraphSendMail => f.write_str("Graph sendMail (MIME)"),
            Route::GraphDraft { upload_sessions } => write!(
                f,
                "Graph draft + send ({upload_sessions} attachment(s) through upload sessions)"
            ),
            Route::EwsCreateItem => f.write_str("EWS CreateItem (SendAndSaveCopy)"),
        }
    }
}

/// What was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sent {
    pub transport: Transport,
    pub route: Route,
    /// The `Message-ID` (without angle brackets), when known.
    pub message_id: Option<String>,
    /// Bytes handed over: the MIME size, or for a Graph draft its bodies and
    /// attachments.
    pub size: u64,
    /// Recipients (To, Cc, Bcc).
    pub recipients: usize,
    /// The server's final answer, when it gives one (SMTP `250 ... queued as ...`).
    pub server_reply: Option<String>,
    /// What was changed on the way, for the sender to know (raw MIME sent as a Graph
    /// draft: header fields and parts a draft cannot carry).
    pub notes: Vec<String>,
}

/// Sends messages over one transport, for one account.
pub trait Sender {
    /// The transport.
    fn transport(&self) -> Transport;
    /// Sends one message.
    fn send(
        &mut self,
        outgoing: Outgoing<'_>,
    ) -> impl Future<Output = Result<Sent, MailboxError>> + Send;
}

/// An `AsyncRead` that counts what passes through it.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.count += (buf.filled().len() - before) as u64;
        result
    }
}

/// SMTP submission, one connection reused across messages.
#[derive(Debug)]
pub struct SmtpSender {
    config: SmtpConfig,
    credentials: Option<Credentials>,
    /// XOAUTH2 as this login with a token from the source, asked at each connection.
    tokens: Option<(String, Arc<dyn TokenSource>)>,
    client: Option<SmtpClient>,
}

impl SmtpSender {
    /// A sender that connects on first use and signs in with `credentials` (none: an
    /// open relay or a trusted network).
    pub fn new(config: SmtpConfig, credentials: Option<Credentials>) -> Self {
        Self {
            config,
            credentials,
            tokens: None,
            client: None,
        }
    }

    /// A sender that connects on first use and signs in with XOAUTH2 as `user`, with a
    /// token from `tokens` asked at each connection.
    pub fn with_tokens(config: SmtpConfig, user: String, tokens: Arc<dyn TokenSource>) -> Self {
        Self {
            config,
            credentials: None,
            tokens: Some((user, tokens)),
            client: None,
        }
    }

    /// Replaces how the sender signs in (and any token source); used at the next
    /// connection.
    pub fn set_credentials(&mut self, credentials: Option<Credentials>) {
        self.credentials = credentials;
        self.tokens = None;
    }

    /// True while a connection is open.
    pub fn is_connected(&self) -> bool {
        self.client.is_some()
    }

    /// Ends the session (`QUIT`).
    pub async fn close(mut self) -> Result<(), MailboxError> {
        match self.client.take() {
            Some(c) => c.quit().await.map_err(|e| smtp_error(&e)),
            None => Ok(()),
        }
    }

    async fn client(&mut self) -> Result<&mut SmtpClient, MailboxError> {
        if self.client.is_none() {
            let mut client = SmtpClient::connect(&self.config)
                .await
                .map_err(|e| smtp_error(&e))?;
            if let Some((user, tokens)) = &self.tokens {
                let token = tokens.token().await.map_err(|e| token_error(&e))?;
                let credentials = Credentials::XOAuth2 {
                    user: user.clone(),
                    token,
                };
                client
                    .authenticate(&credentials)
                    .await
                    .map_err(|e| smtp_error(&e))?;
            } else if let Some(c) = &self.credentials {
                client.authenticate(c).await.map_err(|e| smtp_error(&e))?;
            }
            self.client = Some(client);
        }
        self.client
            .as_mut()
            .ok_or_else(|| error(ErrorClass::Transient, "the SMTP connection is gone"))
    }

    /// The largest message sent, in bytes (the account's `limits.max_message_size`);
    /// the server's EHLO `SIZE` bounds it too. Used from the next message on.
    pub fn set_max_message_size(&mut self, bytes: u64) {
        self.config.max_message_size = bytes;
    }

    /// `MAIL FROM`, `RCPT TO`, `DATA` from `body`, whose `size` is given when known
    /// (then a message over the bound is refused before `MAIL FROM`). A reused
    /// connection that fails before the body is read (the server closed it while
    /// idle) is reopened once.
    async fn transmit<R: AsyncRead + Unpin + Send>(
        &mut self,
        from: &str,
        recipients: &[String],
        body: &mut Counting<R>,
        size: Option<u64>,
    ) -> Result<String, MailboxError> {
        let mut reused = self.client.is_some();
        loop {
            let client = self.client().await?;
            match client.send_sized(from, recipients, &mut *body, size).await {
                Ok(reply) => return Ok(format!("{} {}", reply.code, reply.text())),
                Err(e) => {
                    // Nothing of the body went out, and the connection was found dead
                    // or closing (421, as Postfix says after its idle timeout). Never
                    // after the final "." (`SmtpError::OutcomeUnknown`): the server
                    // may have the message.
                    let stale = reused
                        && body.count == 0
                        && (matches!(e, SmtpError::Io { .. } | SmtpError::Protocol { .. })
                            || e.reply().is_some_and(|r| r.code == 421));
                    match e {
                        // Refused before `MAIL FROM`: the session is untouched. Stopped
                        // while streaming: the client dropped the connection.
                        SmtpError::MessageTooLarge { .. } => {
                            if self.client.as_ref().is_some_and(|c| !c.is_open()) {
                                self.client = None;
                            }
                        }
                        SmtpError::Refused { .. } | SmtpError::RecipientRefused { .. }
                            if !stale =>
                        {
                            // The session is in step unless the client had to drop it:
                            // clear the transaction and keep it.
                            if let Some(c) = self.client.as_mut()
                                && (!c.is_open() || c.reset().await.is_err())
                            {
                                self.client = None;
                            }
                        }
                        _ => self.client = None,
                    }
                    if stale {
                        reused = false;
                        continue;
                    }
                    return Err(smtp_error(&e));
                }
            }
        }
    }
}

impl Sender for SmtpSender {
    fn transport(&self) -> Transport {
        Transport::Smtp
    }

    async fn send(&mut self, outgoing: Outgoing<'_>) -> Result<Sent, MailboxError> {
        match outgoing {
            Outgoing::Message(m) => {
                m.validate().map_err(|e| compose_error(&e))?;
                let file = tempfile::tempfile().map_err(|e| {
                    error(
                        ErrorClass::Transient,
                        format!("failed to create a temporary file for the message: {e}"),
                    )
                })?;
                let mut writer = BufWriter::new(tokio::fs::File::from_std(file));
                let size = m
                    .write_mime(&mut writer, BccHeader::Omit)
                    .await
                    .map_err(|e| compose_error(&e))?;
                let mut file = writer.into_inner();
                file.seek(SeekFrom::Start(0)).await.map_err(|e| {
                    error(
                        ErrorClass::Transient,
                        format!("failed to rewind the temporary message file: {e}"),
                    )
                })?;
                let recipients = m.envelope_recipients();
                let mut body = Counting {
                    inner: BufReader::new(file),
                    count: 0,
                };
                let reply = self
                    .transmit(&m.from.address, &recipients, &mut body, Some(size))
                    .await?;
                Ok(Sent {
                    transport: Transport::Smtp,
                    route: Route::SmtpData,
                    message_id: Some(m.message_id.clone()),
                    size,
                    recipients: recipients.len(),
                    server_reply: Some(reply),
                    notes: Vec::new(),
                })
            }
            Outgoing::Mime(raw) => {
                let recipients = raw
                    .recipients
                    .clone()
                    .unwrap_or_else(|| raw.header_recipients());
                if recipients.is_empty() {
                    return Err(compose_error(&ComposeError::NoRecipients));
                }
                let from = raw
                    .envelope_from
                    .clone()
                    .or_else(|| raw.from_address())
                    .ok_or_else(|| {
                        error(
                            ErrorClass::Permanent,
                            "the MIME message has no From address: add a From header or give the sender",
                        )
                    })?;
                let message_id = raw.message_id();
                let header = raw.header_without_bcc();
                // A file's size, with the header as it is sent (without Bcc).
                let size = raw.size_hint.map(|total| {
                    total.saturating_sub(raw.header.len() as u64) + header.len() as u64
                });
                let mut body = Counting {
                    inner: std::io::Cursor::new(header).chain(raw.rest),
                    count: 0,
                };
                let reply = self.transmit(&from, &recipients, &mut body, size).await?;
                Ok(Sent {
                    transport: Transport::Smtp,
                    route: Route::SmtpData,
                    message_id,
                    size: body.count,
                    recipients: recipients.len(),
                    server_reply: Some(reply),
                    notes: Vec::new(),
                })
            }
        }
    }
}

/// Microsoft Graph, for one mailbox (`/users/{id | UPN}` app-only, `/me` delegated):
/// the same access as reading it ([`GraphMailboxAccess`]), which also sends.
pub type GraphSender = GraphMailboxAccess;

impl GraphSender {
    async fn send_mime(&self, mime: &[u8]) -> Result<(), MailboxError> {
        Ok(self
            .client
            .send_mime(&self.token, &self.mailbox, mime)
            .await?)
    }

    /// A draft with the attachments, then `send`; the draft is deleted when a step
    /// before sending fails.
    async fn send_as_draft(&self, m: &Message, sizes: &[u64]) -> Result<Sent, MailboxError> {
        if m.headers.len() > GRAPH_MAX_HEADERS {
            return Err(error(
                ErrorClass::Permanent,
                format!(
                    "a Graph draft carries at most {GRAPH_MAX_HEADERS} X- headers and this message has {}: send it over SMTP, or with fewer headers",
                    m.headers.len()
                ),
            ));
        }
        for (name, _) in &m.headers {
            if !name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("x-")) {
                return Err(error(
                    ErrorClass::Permanent,
                    format!(
                        "Graph accepts only custom X- headers on a message, not {name}: rename it X-{name}, or send over SMTP"
                    ),
                ));
            }
        }
        let draft = self
            .client
            .create_draft(&self.token, &self.mailbox, &draft_json(m))
            .await?;
        let result = self.fill_draft(m, sizes, &draft.id).await;
        let upload_sessions = match result {
            Ok(n) => n,
            Err(e) => {
                let _ = self
                    .client
                    .delete(&self.token, &self.mailbox, &draft.id)
                    .await;
                return Err(e);
            }
        };
        self.client
            .send_draft(&self.token, &self.mailbox, &draft.id)
            .await?;
        let body_len =
            m.text.as_ref().map_or(0, String::len) + m.html.as_ref().map_or(0, String::len);
        Ok(Sent {
            transport: Transport::Graph,
            route: Route::GraphDraft { upload_sessions },
            message_id: draft
                .internet_message_id
                .map(|id| id.trim_matches(['<', '>']).to_owned()),
            size: sizes.iter().sum::<u64>() + body_len as u64,
            recipients: m.envelope_recipients().len(),
            server_reply: None,
            notes: Vec::new(),
        })
    }

    /// Adds every attachment to the draft; how many went through upload sessions.
    async fn fill_draft(
        &self,
        m: &Message,
        sizes: &[u64],
        draft: &str,
    ) -> Result<usize, MailboxError> {
        let mut sessions = 0;
        for (a, &size) in m.attachments.iter().zip(sizes) {
            if size > UPLOAD_SESSION_MAX {
                return Err(error(
                    ErrorClass::Permanent,
                    format!(
                        "attachment {} is {size} bytes; Graph takes attachments up to 150 MB",
                        a.file_name
                    ),
                ));
            }
            let mut reader = a.open().await.map_err(|e| compose_error(&e))?;
            let read_error = |e: std::io::Error| {
                let path = match &a.content {
                    Content::File(p) => p.display().to_string(),
                    Content::Bytes(_) => a.file_name.clone(),
                };
                error(
                    ErrorClass::Permanent,
                    format!("failed to read the attachment {path}: {e}"),
                )
            };
            if size < UPLOAD_SESSION_MIN {
                let mut bytes = Vec::new();
                reader.read_to_end(&mut bytes).await.map_err(read_error)?;
                self.client
                    .add_attachment(
                        &self.token,
                        &self.mailbox,
                        draft,
                        &a.file_name,
                        &a.content_type,
                        &bytes,
                    )
                    .await?;
                continue;
            }
            sessions += 1;
            let url = self
                .client
                .create_upload_session(
                    &self.token,
                    &self.mailbox,
                    draft,
                    &a.file_name,
                    &a.content_type,
                    size,
                )
                .await?;
            let mut start = 0u64;
            let mut done = false;
            while start < size {
                let want = usize::try_from((size - start).min(UPLOAD_CHUNK as u64))
                    .unwrap_or(UPLOAD_CHUNK);
                let mut chunk = vec![0u8; want];
                reader.read_exact(&mut chunk).await.map_err(read_error)?;
                match self
                    .client
                    .upload_chunk(&self.mailbox, &url, start, size, chunk.into())
                    .await
                {
                    Ok(last) => done = last,
                    Err(e) => {
                        let _ = self.client.cancel_upload(&self.mailbox, &url).await;
                        return Err(e.into());
                    }
                }
                start += want as u64;
            }
            if !done {
                return Err(error(
                    ErrorClass::Transient,
                    format!(
                        "Graph did not confirm the upload of attachment {} (no 201 after the last chunk)",
                        a.file_name
                    ),
                ));
            }
        }
        Ok(sessions)
    }
}

fn recipient_json(a: &Address) -> Value {
    match &a.name {
        Some(n) => json!({ "emailAddress": { "address": a.address, "name": n } }),
        None => json!({ "emailAddress": { "address": a.address } }),
    }
}

/// The Graph `message` for a draft (without attachments).
fn draft_json(m: &Message) -> Value {
    let list = |l: &[Address]| Value::Array(l.iter().map(recipient_json).collect());
    let (content_type, content) = match (&m.html, &m.text) {
        (Some(h), _) => ("HTML", h.as_str()),
        (None, Some(t)) => ("Text", t.as_str()),
        (None, None) => ("Text", ""),
    };
    let mut v = json!({
        "subject": m.subject,
        "body": { "contentType": content_type, "content": content },
        "from": recipient_json(&m.from),
        "toRecipients": list(&m.to),
        "ccRecipients": list(&m.cc),
        "bccRecipients": list(&m.bcc),
        "replyTo": list(&m.reply_to),
    });
    if !m.headers.is_empty() {
        v["internetMessageHeaders"] = Value::Array(
            m.headers
                .iter()
                .map(|(n, val)| json!({ "name": n, "value": val }))
                .collect(),
        );
    }
    v
}

impl Sender for GraphSender {
    fn transport(&self) -> Transport {
        Transport::Graph
    }

    async fn send(&mut self, outgoing: Outgoing<'_>) -> Result<Sent, MailboxError> {
        match outgoing {
            Outgoing::Message(m) => {
                m.validate().map_err(|e| compose_error(&e))?;
                let mut sizes = Vec::with_capacity(m.attachments.len());
                for a in &m.attachments {
                    sizes.push(a.size().await.map_err(|e| compose_error(&e))?);
                }
                let small = sizes.iter().all(|s| *s < UPLOAD_SESSION_MIN)
                    && sizes.iter().sum::<u64>() / 3 * 4 < GRAPH_MIME_LIMIT;
                if small {
                    let mime = m
                        .to_vec(BccHeader::Include)
                        .await
                        .map_err(|e| compose_error(&e))?;
                    if mime.len() as u64 <= GRAPH_MIME_LIMIT {
                        self.send_mime(&mime).await?;
                        return Ok(Sent {
                            transport: Transport::Graph,
                            route: Route::GraphSendMail,
                            message_id: Some(m.message_id.clone()),
                            size: mime.len() as u64,
                            recipients: m.envelope_recipients().len(),
                            server_reply: None,
                            notes: Vec::new(),
                        });
                    }
                }
                self.send_as_draft(m, &sizes).await
            }
            Outgoing::Mime(raw) => {
                if raw.recipients.is_some() || raw.envelope_from.is_some() {
                    return Err(error(
                        ErrorClass::Permanent,
                        "Graph reads the recipients and sender from the MIME header: envelope recipients and sender apply to SMTP only; put them in the To/Cc/Bcc and From headers",
                    ));
                }
                let message_id = raw.message_id();
                let recipients = raw.header_recipients().len();
                let mime = raw
                    .into_vec(
                        GRAPH_DRAFT_MIME_LIMIT,
                        "the MIME message is larger than 150 MB, more than Exchange Online accepts",
                    )
                    .await?;
                if mime.len() as u64 > GRAPH_MIME_LIMIT {
                    // Too large for sendMail: a draft from the parsed message, its
                    // attachments added (upload sessions from 3 MB), then sent.
                    let size = mime.len() as u64;
                    let (m, notes) = message_from_mime(&mime)?;
                    drop(mime);
                    let mut sizes = Vec::with_capacity(m.attachments.len());
                    for a in &m.attachments {
                        sizes.push(a.size().await.map_err(|e| compose_error(&e))?);
                    }
                    let mut sent = self.send_as_draft(&m, &sizes).await?;
                    sent.size = size;
                    sent.notes = notes;
                    return Ok(sent);
                }
                self.send_mime(&mime).await?;
                Ok(Sent {
                    transport: Transport::Graph,
                    route: Route::GraphSendMail,
                    message_id,
                    size: mime.len() as u64,
                    recipients,
                    server_reply: None,
                    notes: Vec::new(),
                })
            }
        }
    }
}

/// The parts of raw MIME a Graph draft can carry, as a [`Message`]: From, To, Cc, Bcc,
/// Reply-To, Subject, the `X-` header fields, one body (HTML when there is one, else
/// the text parts), and every attachment with its name and content type. What a draft
/// cannot carry is left out: the other header fields (Graph sets its own Date,
/// Message-ID, MIME structure; it refuses others in `internetMessageHeaders`), the text
/// alternative of an HTML body, and the inline mark of an inline part (it becomes an
/// ordinary attachment).
///
/// The attachments' decoded bytes are moved out of the parse, not copied, so the
/// message is held about twice (raw and decoded) while this runs, and the decoded
/// attachments once afterwards.
fn message_from_mime(mime: &[u8]) -> Result<(Message, Vec<String>), MailboxError> {
    use mail_parser::{MimeHeaders as _, PartType};
    let mut notes = Vec::new();
    let unreadable = || {
        error(
            ErrorClass::Permanent,
            "the MIME message cannot be read: is it a MIME (.eml) message?",
        )
    };
    let mut parsed = MessageParser::default()
        .parse(mime)
        .ok_or_else(unreadable)?;
    // Taking a signed or encrypted message apart breaks it.
    let sealed = parsed.parts.iter().any(|p| {
        p.content_type().is_some_and(|ct| {
            let sub = ct.subtype().unwrap_or_default();
            (ct.ctype().eq_ignore_ascii_case("multipart")
                && (sub.eq_ignore_ascii_case("signed") || sub.eq_ignore_ascii_case("encrypted")))
                || (ct.ctype().eq_ignore_ascii_case("application")
                    && (sub.eq_ignore_ascii_case("pkcs7-mime")
                        || sub.eq_ignore_ascii_case("x-pkcs7-mime")))
        })
    });
    if sealed {
        return Err(error(
            ErrorClass::Permanent,
            "the MIME message is signed or encrypted (S/MIME or PGP) and larger than Graph's 3 MB sendMail: a Graph draft would take it apart and break it; send it over SMTP (the account's outgoing side)",
        ));
    }
    let address = |a: &mail_parser::Addr<'_>| {
        a.address().map(|addr| match a.name() {
            Some(n) if !n.is_empty() => Address::with_name(addr, n),
            _ => Address::new(addr),
        })
    };
    let list = |l: Option<&mail_parser::Address<'_>>| -> Vec<Address> {
        l.map(|l| l.iter().filter_map(address).collect())
            .unwrap_or_default()
    };
    let from = parsed
        .from()
        .and_then(|f| f.first())
        .and_then(address)
        .ok_or_else(|| {
            error(
                ErrorClass::Permanent,
                "the MIME message has no From address: add a From header",
            )
        })?;
    let mut m = Message::new(from);
    m.to = list(parsed.to());
    m.cc = list(parsed.cc());
    m.bcc = list(parsed.bcc());
    m.reply_to = list(parsed.reply_to());
    parsed
        .subject()
        .unwrap_or_default()
        .clone_into(&mut m.subject);
    if let Some(id) = parsed.message_id() {
        id.clone_into(&mut m.message_id);
    }
    let mut dropped = Vec::new();
    for h in parsed.headers() {
        let name = h.name();
        if !name.get(..2).is_some_and(|p| p.eq_ignore_ascii_case("x-")) {
            continue;
        }
        // Fields mail systems add on the way (the sending server adds its own).
        let lower = name.to_ascii_lowercase();
        if MAIL_SYSTEM_HEADERS.iter().any(|p| lower.starts_with(p)) {
            continue;
        }
        match h.value().as_text() {
            Some(value) if m.headers.len() < GRAPH_MAX_HEADERS => {
                m.headers.push((name.to_owned(), value.trim().to_owned()));
            }
            _ => dropped.push(name.to_owned()),
        }
    }
    if !dropped.is_empty() {
        notes.push(format!(
            "a Graph draft carries at most {GRAPH_MAX_HEADERS} X- headers: left out {}; send over SMTP to keep them",
            dropped.join(", ")
        ));
    }
    if parsed.in_reply_to().as_text().is_some() || parsed.references().as_text().is_some() {
        notes.push(
            "In-Reply-To and References were left out (a Graph draft cannot carry them), so replies may not thread; send over SMTP to keep them".to_owned(),
        );
    }
    let bodies = |ids: &[u32], html: bool| {
        let texts: Vec<&str> = ids
            .iter()
            .filter_map(|&id| match parsed.parts.get(id as usize).map(|p| &p.body) {
                Some(PartType::Html(t)) if html => Some(t.as_ref()),
                Some(PartType::Text(t)) if !html => Some(t.as_ref()),
                _ => None,
            })
            .collect();
        (!texts.is_empty()).then(|| texts.join(if html { "\n" } else { "\r\n" }))
    };
    let has_html = parsed.html_body.iter().any(|&id| {
        matches!(
            parsed.parts.get(id as usize).map(|p| &p.body),
            Some(PartType::Html(_))
        )
    });
    m.text = bodies(&parsed.text_body, false);
    if has_html {
        // Every part of the HTML view, text parts (a footer, a disclaimer) as HTML.
        let html: Vec<String> = (0..parsed.html_body.len())
            .filter_map(|i| parsed.body_html(i).map(std::borrow::Cow::into_owned))
            .collect();
        m.html = Some(html.join("\n"));
        if m.text.is_some() {
            notes.push(
                "the plain-text alternative was left out: a Graph draft holds one body, and the HTML one was sent".to_owned(),
            );
        }
    }
    let attachment_ids = std::mem::take(&mut parsed.attachments);
    for (n, id) in attachment_ids.into_iter().enumerate() {
        let Some(part) = parsed.parts.get_mut(id as usize) else {
            continue;
        };
        let content_type = part.content_type().map_or_else(
            || "application/octet-stream".to_owned(),
            |ct| match ct.subtype() {
                Some(sub) => format!("{}/{sub}", ct.ctype()),
                None => ct.ctype().to_owned(),
            },
        );
        let file_name = part
            .attachment_name()
            .map_or_else(|| format!("attachment-{}", n + 1), str::to_owned);
        let (content, content_type, file_name) = match std::mem::take(&mut part.body) {
            PartType::Binary(b) | PartType::InlineBinary(b) => {
                (b.into_owned(), content_type, file_name)
            }
            PartType::Text(t) | PartType::Html(t) => {
                (t.into_owned().into_bytes(), content_type, file_name)
            }
            PartType::Message(inner) => {
                let name = part
                    .attachment_name()
                    .map_or_else(|| format!("message-{}.eml", n + 1), str::to_owned);
                (
                    inner.raw_message.into_owned(),
                    "message/rfc822".to_owned(),
                    name,
                )
            }
            PartType::Multipart(_) => continue,
        };
        m.attachments.push(crate::compose::Attachment {
            file_name,
            content_type,
            content: Content::Bytes(content),
        });
    }
    m.validate().map_err(|e| compose_error(&e))?;
    Ok((m, notes))
}

/// What raw MIME becomes as a Graph draft ([`graph_draft_from_mime`]).
#[derive(Debug, Clone)]
pub struct GraphDraftPlan {
    /// The `message` JSON of `POST /messages`.
    pub message: Value,
    /// Each attachment added to the draft afterwards: file name, content type, size.
    pub attachments: Vec<(String, String, u64)>,
    /// What a draft cannot carry and was left out.
    pub notes: Vec<String>,
}

/// Raw MIME as the Graph draft it becomes, without any I/O: the function the Graph
/// sender uses for MIME over sendMail's limit; public for tests and fuzzing.
pub fn graph_draft_from_mime(mime: &[u8]) -> Result<GraphDraftPlan, MailboxError> {
    let (m, notes) = message_from_mime(mime)?;
    let attachments = m
        .attachments
        .iter()
        .map(|a| {
            let size = match &a.content {
                Content::Bytes(b) => b.len() as u64,
                Content::File(_) => 0,
            };
            (a.file_name.clone(), a.content_type.clone(), size)
        })
        .collect();
    Ok(GraphDraftPlan {
        message: draft_json(&m),
        attachments,
        notes,
    })
}

/// The most `internetMessageHeaders` Graph takes on a message (more is a 400
/// `InvalidInternetMessageHeaderCollection`).
pub const GRAPH_MAX_HEADERS: usize = 5;

/// `X-` fields that mail systems add on the way (lower case prefixes), not carried
/// into a Graph draft made from raw MIME.
const MAIL_SYSTEM_HEADERS: &[&str] = &[
    "x-ms-",
    "x-microsoft-",
    "x-forefront-",
    "x-exchange-",
    "x-originating-",
    "x-received",
    "x-google-",
    "x-gm-",
    "x-spam",
    "x-virus",
];

/// EWS, for one mailbox and authorisation.
#[derive(Debug)]
pub struct EwsSender {
    client: EwsClient,
    auth: EwsAuth,
}

impl EwsSender {
    /// A sender over `client` with `auth`.
    pub fn new(client: EwsClient, auth: EwsAuth) -> Self {
        Self { client, auth }
    }
}

impl Sender for EwsSender {
    fn transport(&self) -> Transport {
        Transport::Ews
    }

    async fn send(&mut self, outgoing: Outgoing<'_>) -> Result<Sent, MailboxError> {
        let (mime, message_id, recipients) = match outgoing {
            Outgoing::Message(m) => {
                let mime = m
                    .to_vec(BccHeader::Include)
                    .await
                    .map_err(|e| compose_error(&e))?;
                (
                    mime,
                    Some(m.message_id.clone()),
                    m.envelope_recipients().len(),
                )
            }
            Outgoing::Mime(raw) => {
                if raw.recipients.is_some() || raw.envelope_from.is_some() {
                    return Err(error(
                        ErrorClass::Permanent,
                        "EWS reads the recipients and sender from the MIME header: envelope recipients and sender apply to SMTP only",
                    ));
                }
                let id = raw.message_id();
                let n = raw.header_recipients().len();
                let mime = raw
                    .into_vec(
                        EWS_MIME_LIMIT,
                        "the MIME message is larger than 150 MB, more than Exchange accepts",
                    )
                    .await?;
                (mime, id, n)
            }
        };
        self.client.send_mime(&self.auth, &mime, true).await?;
        Ok(Sent {
            transport: Transport::Ews,
            route: Route::EwsCreateItem,
            message_id,
            size: mime.len() as u64,
            recipients,
            server_reply: None,
            notes: Vec::new(),
        })
    }
}

/// Whichever sender an account uses.
#[derive(Debug)]
pub enum AnySender {
    Smtp(Box<SmtpSender>),
    Graph(GraphSender),
    Ews(EwsSender),
}

impl Sender for AnySender {
    fn transport(&self) -> Transport {
        match self {
            AnySender::Smtp(s) => s.transport(),
            AnySender::Graph(s) => s.transport(),
            AnySender::Ews(s) => s.transport(),
        }
    }

    async fn send(&mut self, outgoing: Outgoing<'_>) -> Result<Sent, MailboxError> {
        match self {
            AnySender::Smtp(s) => s.send(outgoing).await,
            AnySender::Graph(s) => s.send(outgoing).await,
            AnySender::Ews(s) => s.send(outgoing).await,
        }
    }
}

/// How an account signs in, for [`AnySender::for_endpoint`].
#[derive(Clone)]
pub enum SenderSignIn {
    /// App-only tokens: Graph `/users/{address}`, EWS impersonation of the address,
    /// SMTP XOAUTH2 as the address. Asked for a token at each request (Graph, EWS) or
    /// connection (SMTP, IMAP, POP3), so the sender or mailbox outlives any one token.
    AppOnly(Arc<dyn TokenSource>),
    /// Delegated tokens: Graph `/me`, EWS bearer, SMTP XOAUTH2 as the address.
    Delegated(Arc<dyn TokenSource>),
    /// A password (SMTP PLAIN, EWS Basic; Graph has none).
    Password {
        user: String,
        password: SecretString,
    },
    /// No sign-in (an SMTP relay that trusts the network).
    None,
}

impl std::fmt::Debug for SenderSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SenderSignIn::AppOnly(_) => f.write_str("AppOnly"),
            SenderSignIn::Delegated(_) => f.write_str("Delegated"),
            SenderSignIn::Password { user, .. } => f
                .debug_struct("Password")
                .field("user", user)
                .finish_non_exhaustive(),
            SenderSignIn::None => f.write_str("None"),
        }
    }
}

impl AnySender {
    /// The largest message sent, in bytes: the account's `limits.max_message_size`,
    /// applied to SMTP (refused before `MAIL FROM` when the size is known, else
    /// stopped while streaming). Graph and EWS answer with their own service limits.
    #[must_use]
    pub fn with_max_message_size(mut self, bytes: u64) -> Self {
        if let AnySender::Smtp(s) = &mut self {
            s.set_max_message_size(bytes);
        }
        self
    }

    /// The sender for an account's outgoing endpoint, as `who` ([`Identity::of`] the
    /// account: SMTP XOAUTH2 as its login, Graph app-only `/users/{graph_user}`, EWS
    /// impersonation of its address). Graph's `host` is its root (see [`crate::connect::graph_root`]: a
    /// bare host gets `https://`, a root without a version `/v1.0`), EWS's the
    /// `Exchange.asmx` URL.
    pub fn for_endpoint(
        endpoint: &EndpointConfig,
        who: &Identity,
        sign_in: SenderSignIn,
    ) -> Result<Self, MailboxError> {
        let extra_ca_pem = crate::connect::extra_ca_pem(endpoint)?;
        let tls_pin = crate::connect::tls_pin(endpoint)?;
        match endpoint.transport {
            Transport::Smtp => {
                let mut config =
                    SmtpConfig::new(&endpoint.host, endpoint.port(), endpoint.tls_mode());
                config.trust = mailbridge_tls::TlsSettings {
                    extra_ca_pem,
                    server_name: endpoint.tls_name.clone(),
                    pin: tls_pin,
                };
                let sender = match sign_in {
                    SenderSignIn::AppOnly(token) | SenderSignIn::Delegated(token) => {
                        SmtpSender::with_tokens(config, who.login.clone(), token)
                    }
                    SenderSignIn::Password { user, password } => {
                        SmtpSender::new(config, Some(Credentials::Plain { user, password }))
                    }
                    SenderSignIn::None => SmtpSender::new(config, None),
                };
                Ok(AnySender::Smtp(Box::new(sender)))
            }
            Transport::Graph => {
                let root = crate::connect::graph_root(endpoint);
                let mut config = mailbridge_graph::GraphConfig::new(&root);
                config.extra_ca_pem = extra_ca_pem;
                config.tls_pin = tls_pin;
                let client = GraphClient::new(config)?;
                let (mailbox, token) = match sign_in {
                    SenderSignIn::AppOnly(t) => (who.graph_mailbox(false), t),
                    SenderSignIn::Delegated(t) => (who.graph_mailbox(true), t),
                    SenderSignIn::Password { .. } | SenderSignIn::None => {
                        return Err(error(
                            ErrorClass::Misconfigured,
                            "Microsoft Graph needs a token: sign the account in as app-only or delegated, not with a password",
                        ));
                    }
                };
                Ok(AnySender::Graph(GraphSender::new(client, mailbox, token)))
            }
            Transport::Ews => {
                let mut config = mailbridge_ews::EwsConfig::new(&endpoint.host);
                config.extra_ca_pem = extra_ca_pem;
                config.tls_pin = tls_pin;
                let client = EwsClient::new(config)?;
                let auth = match sign_in {
                    SenderSignIn::AppOnly(token) => EwsAuth::AppOnly {
                        token,
                        mailbox: who.address.clone(),
                    },
                    SenderSignIn::Delegated(token) => EwsAuth::Bearer { token },
                    SenderSignIn::Password { user, password } => EwsAuth::Basic { user, password },
                    SenderSignIn::None => {
                        return Err(error(
                            ErrorClass::Misconfigured,
                            "EWS needs a sign-in: a token or a password",
                        ));
                    }
                };
                Ok(AnySender::Ews(EwsSender::new(client, auth)))
            }
            other => Err(error(
                ErrorClass::Misconfigured,
                format!(
                    "{other:?} cannot send mail: set the account's outgoing side to SMTP, Graph or EWS ([account.outgoing] transport = \"smtp\" | \"graph\" | \"ews\")"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[tokio::test]
    async fn raw_mime_header_is_read_and_bcc_dropped() {
        let raw = b"From: A <a@x.example>\r\nTo: b@x.example\r\nBcc: c@x.example,\r\n d@x.example\r\nMessage-ID: <m1@x.example>\r\nSubject: s\r\n\r\nbody\r\n".to_vec();
        let mime = RawMime::from_reader(std::io::Cursor::new(raw))
            .await
            .unwrap();
        assert_eq!(
            mime.header_recipients(),
            ["b@x.example", "c@x.example", "d@x.example"]
        );
        assert_eq!(mime.from_address().as_deref(), Some("a@x.example"));
        assert_eq!(mime.message_id().as_deref(), Some("m1@x.example"));
        let header = String::from_utf8(mime.header_without_bcc()).unwrap();
        assert_eq!(
            header,
            "From: A <a@x.example>\r\nTo: b@x.example\r\nMessage-ID: <m1@x.example>\r\nSubject: s\r\n\r\n"
        );
        let all = mime.into_vec(1000, "too big").await.unwrap();
        assert!(all.ends_with(b"\r\n\r\nbody\r\n"));
    }

    #[tokio::test]
    async fn raw_mime_limits() {
        let big = vec![b'a'; MAX_RAW_HEADER + 20_000];
        let e = RawMime::from_reader(std::io::Cursor::new(big))
            .await
            .unwrap_err();
        assert!(e.message().contains("no end of header"), "{}", e.message());
        let mut m = b"From: a@x.example\r\nTo: b@x.example\r\n\r\n".to_vec();
        m.extend(vec![b'x'; 500]);
        let mime = RawMime::from_reader(std::io::Cursor::new(m)).await.unwrap();
        let e = mime
            .into_vec(100, "too big for the test")
            .await
            .unwrap_err();
        assert_eq!(e.message(), "too big for the test");
        assert_eq!(e.class, ErrorClass::Permanent);
    }

    #[test]
    fn raw_mime_becomes_the_parts_a_graph_draft_carries() {
        let eml = "From: =?UTF-8?Q?J=C3=B6rg?= <j@x.example>\r\n\
To: a@x.example, B <b@x.example>\r\n\
Cc: c@x.example\r\n\
Bcc: d@x.example\r\n\
Reply-To: r@x.example\r\n\
Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n\
Message-ID: <m1@x.example>\r\n\
In-Reply-To: <m0@x.example>\r\n\
X-Ticket-Id: T-7\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: multipart/alternative; boundary=\"b2\"\r\n\
\r\n\
--b2\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
plain text\r\n\
--b2\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>html</p>\r\n\
--b2--\r\n\
--b1\r\n\
Content-Type: application/pdf; name=\"a.pdf\"\r\n\
Content-Disposition: attachment; filename*=UTF-8''M%C3%A4rz.pdf\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAECAwQF\r\n\
--b1\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: inner@x.example\r\n\
Subject: inner\r\n\
\r\n\
inner body\r\n\
--b1--\r\n";
        let (m, notes) = message_from_mime(eml.as_bytes()).unwrap();
        assert_eq!(m.from, Address::with_name("j@x.example", "Jörg"));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("In-Reply-To"), "{notes:?}");
        assert!(notes[1].contains("plain-text alternative"), "{notes:?}");
        assert_eq!(
            m.to,
            [
                Address::new("a@x.example"),
                Address::with_name("b@x.example", "B")
            ]
        );
        assert_eq!(m.cc, [Address::new("c@x.example")]);
        assert_eq!(m.bcc, [Address::new("d@x.example")]);
        assert_eq!(m.reply_to, [Address::new("r@x.example")]);
        assert_eq!(m.subject, "Grüße");
        assert_eq!(m.headers, [("X-Ticket-Id".to_owned(), "T-7".to_owned())]);
        assert_eq!(m.html.as_deref().map(str::trim_end), Some("<p>html</p>"));
        assert_eq!(m.text.as_deref().map(str::trim_end), Some("plain text"));
        assert_eq!(m.attachments.len(), 2, "{:?}", m.attachments);
        let pdf = &m.attachments[0];
        assert_eq!(pdf.file_name, "März.pdf");
        assert_eq!(pdf.content_type, "application/pdf");
        assert_eq!(pdf.content, Content::Bytes(vec![0, 1, 2, 3, 4, 5]));
        let inner = &m.attachments[1];
        assert_eq!(inner.content_type, "message/rfc822");
        assert_eq!(inner.file_name, "message-2.eml");
        let Content::Bytes(b) = &inner.content else {
            panic!("bytes")
        };
        assert!(String::from_utf8_lossy(b).contains("Subject: inner"));
        assert_eq!(draft_json(&m)["body"]["contentType"], "HTML");

        let e = message_from_mime(b"Subject: nobody\r\n\r\nx\r\n").unwrap_err();
        assert_eq!(e.class, ErrorClass::Permanent);
    }

    #[test]
    fn raw_mime_keeps_a_text_footer_and_at_most_five_headers_and_refuses_signed_mail() {
        // An HTML body followed by a plain-text footer part, and more X- fields than a
        // draft takes (mail systems' own are left out without counting).
        let eml = "From: a@x.example\r\nTo: b@x.example\r\nSubject: s\r\n\
X-MS-Exchange-Organization-SCL: 1\r\nX-A: 1\r\nX-B: 2\r\nX-C: 3\r\nX-D: 4\r\nX-E: 5\r\nX-F: 6\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello</p>\r\n\
--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDisclaimer: confidential\r\n\
--b--\r\n";
        let (m, notes) = message_from_mime(eml.as_bytes()).unwrap();
        let html = m.html.unwrap_or_default();
        assert!(html.contains("<p>Hello</p>"), "{html}");
        assert!(html.contains("Disclaimer: confidential"), "{html}");
        let names: Vec<&str> = m.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["X-A", "X-B", "X-C", "X-D", "X-E"]);
        assert!(
            notes.iter().any(|n| n.contains("left out X-F")),
            "{notes:?}"
        );

        for ct in [
            "multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"s\"",
            "multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"s\"",
            "application/pkcs7-mime; smime-type=enveloped-data",
        ] {
            let eml = format!(
                "From: a@x.example\r\nTo: b@x.example\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: {ct}\r\n\r\n--s\r\nContent-Type: text/plain\r\n\r\nx\r\n--s--\r\n"
            );
            let e = message_from_mime(eml.as_bytes()).unwrap_err();
            assert!(e.message().contains("signed or encrypted"), "{ct}: {e}");
            assert!(e.message().contains("SMTP"), "{ct}: {e}");
        }
    }

    #[test]
    fn draft_json_has_recipients_and_html_wins() {
        let mut m = Message::new(Address::with_name("a@x.example", "Ä"));
        m.to.push(Address::new("b@x.example"));
        m.bcc.push(Address::new("c@x.example"));
        m.text = Some("t".into());
        m.html = Some("<b>h</b>".into());
        let v = draft_json(&m);
        assert_eq!(v["body"]["contentType"], "HTML");
        assert_eq!(
            v["bccRecipients"][0]["emailAddress"]["address"],
            "c@x.example"
        );
        assert_eq!(v["from"]["emailAddress"]["name"], "Ä");
    }
}
