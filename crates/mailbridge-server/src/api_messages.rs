//! An account's messages under `/api/v1/accounts/{id}/messages`: the newest of a
//! folder (id, subject, from, date, size) and one message's raw MIME, streamed as
//! `message/rfc822`.
//!
//! Both go through the Mailbox API ([`mailbridge_mailbox::connect::open_incoming`]),
//! signed in through the daemon's sign-in service (its token cache, shared with the
//! watchers). Memory is bounded: a listing keeps the first 64 KiB of each message (its
//! header), and a fetched message flows
//! through a 64 KiB pipe to the client, never whole in memory; a message over the
//! account's `limits.max_message_size` is cut off with an error. Time is bounded by
//! the account's `limits.command_timeout_secs` (and the API's request limit until
//! the answer starts).
//!
//! A message's id is opaque: its folder and transport reference as base64url JSON.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use mailbridge_mailbox::connect::{AnyMailbox, open_incoming};
use mailbridge_mailbox::mailbox::{Checkpoint, Mailbox as _, MailboxError, MessageRef};
use mailbridge_types::access::Action;
use mailbridge_types::config::{AccountConfig, AppConfig};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt as _, AsyncWrite};
use utoipa::ToSchema;

use crate::AppState;
use crate::account_access::account_for;
use crate::api_config::{invalid, work};
use crate::api_token::Caller;
use crate::daemon::DaemonHandle;
use crate::problem::{Problem, ProblemDocument};

/// Messages listed when no limit is given.
const DEFAULT_LIMIT: u32 = 20;
/// The most messages one listing returns.
const MAX_LIMIT: u32 = 200;
/// Bytes of each listed message kept to read its header.
const HEADER_BYTES: usize = 64 * 1024;
/// The pipe a fetched message flows through.
const PIPE_BYTES: usize = 64 * 1024;

/// Where the API serves a message's raw MIME (`/api/v1/accounts/{id}/messages/{message}`,
/// the path only), for the message `reference` of `folder` of account `account`: the
/// link a webhook sends for a message too large to travel inline.
pub fn message_path(
    account: mailbridge_store::AccountId,
    folder: &str,
    reference: &MessageRef,
) -> Option<String> {
    MessageId::of(folder, reference)
        .map(|m| format!("/api/v1/accounts/{account}/messages/{}", m.text()))
}

/// A message's opaque id: its folder and its reference at the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageId {
    /// The folder.
    f: String,
    /// The reference.
    r: RefJson,
}

/// [`MessageRef`] as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase", deny_unknown_fields)]
enum RefJson {
    Imap { v: u32, u: u32 },
    Graph { i: String },
    Ews { i: String },
    Pop3 { i: String },
}

impl MessageId {
    fn of(folder: &str, r: &MessageRef) -> Option<Self> {
        let r = match r {
            MessageRef::Imap { uid_validity, uid } => RefJson::Imap {
                v: *uid_validity,
                u: *uid,
            },
            MessageRef::Graph { id } => RefJson::Graph { i: id.clone() },
            MessageRef::Ews { id } => RefJson::Ews { i: id.clone() },
            MessageRef::Pop3 { uidl } => RefJson::Pop3 { i: uidl.clone() },
            _ => return None,
        };
        Some(Self {
            f: folder.to_owned(),
            r,
        })
    }

    fn text(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn parse(text: &str) -> Option<Self> {
        if text.len() > 8 * 1024 {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn message_ref(&self) -> MessageRef {
        match &self.r {
            RefJson::Imap { v, u } => MessageRef::Imap {
                uid_validity: *v,
                uid: *u,
            },
            RefJson::Graph { i } => MessageRef::Graph { id: i.clone() },
            RefJson::Ews { i } => MessageRef::Ews { id: i.clone() },
            RefJson::Pop3 { i } => MessageRef::Pop3 { uidl: i.clone() },
        }
    }
}

/// A listed message.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    /// Opaque: GET /api/v1/accounts/{id}/messages/{message} fetches it.
    pub id: String,
    /// The message at its source (UID, Graph or EWS id, UIDL).
    pub source_id: String,
    pub subject: Option<String>,
    /// The From header's first address.
    pub from: Option<String>,
    /// The Date header, RFC 3339.
    pub date: Option<String>,
    /// Its size in bytes.
    pub size: u64,
}

/// Which messages to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    /// The folder (default INBOX).
    pub folder: Option<String>,
    /// At most this many, newest first (default 20, at most 200).
    pub limit: Option<u32>,
}

fn mailbox_failed(account: &str, e: &MailboxError) -> Problem {
    use mailbridge_mailbox::mailbox::ErrorKind;
    tracing::warn!(account = %account, error = %mailbridge_types::error_chain(e), "mailbox request through the API failed");
    let (status, code, title) = match e.kind {
        ErrorKind::NotFound => {
            return Problem::not_found(format!("account {account}: {}", e.detail()));
        }
        ErrorKind::LimitExceeded => (
            StatusCode::BAD_GATEWAY,
            "limit-exceeded",
            "Over the account's limits",
        ),
        ErrorKind::Throttled => (
            StatusCode::SERVICE_UNAVAILABLE,
            "throttled",
            "The service is throttling",
        ),
        _ => (
            StatusCode::BAD_GATEWAY,
            "mailbox-failed",
            "The mailbox refused or failed",
        ),
    };
    Problem::new(
        status,
        code,
        title,
        format!(
            "account {account}: {} ({}); POST /api/v1/accounts/{{id}}/test/receive shows each step and the fix",
            e.detail(),
            e.class
        ),
    )
}

fn command_limit(account: &AccountConfig) -> Duration {
    Duration::from_secs(account.limits.command_timeout_secs.max(1))
}

fn timed_out(account: &AccountConfig) -> Problem {
    Problem::new(
        StatusCode::GATEWAY_TIMEOUT,
        "mailbox-timeout",
        "The mailbox did not answer in time",
        format!(
            "account {}'s server did not answer within {} s (limits.command_timeout_secs); try again later",
            account.name, account.limits.command_timeout_secs
        ),
    )
}

/// Signs in and opens the account's incoming side.
async fn open(
    daemon: &DaemonHandle,
    account: &AccountConfig,
    app: Option<&AppConfig>,
) -> Result<AnyMailbox, Problem> {
    let Some(side) = account.incoming_side() else {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "no-incoming-side",
            "No incoming side",
            format!(
                "account {} has no incoming side in force: give it incoming and turn download on",
                account.name
            ),
        ));
    };
    let signed_in = daemon
        .sign_in()
        .credentials(account, app, side.transport)
        .await
        .map_err(|e| {
            tracing::warn!(account = %account.name, error = %mailbridge_types::error_chain(&e), "sign-in through the API failed");
            Problem::new(
                StatusCode::CONFLICT,
                "sign-in-failed",
                "Sign-in failed",
                mailbridge_types::error_chain(&e),
            )
        })?;
    open_incoming(account, signed_in)
        .await
        .map_err(|e| mailbox_failed(&account.name, &e))
}

/// The newest messages of a folder, newest first, each with its subject, sender,
/// date and size (read from the first 64 KiB of the message).
#[utoipa::path(get, path = "/api/v1/accounts/{id}/messages", security(("api_token" = [])),
    params(("id" = String, Path, description = "the account's id"), MessagesQuery),
    responses((status = 200, body = Vec<MessageView>), (status = 404, body = ProblemDocument), (status = 409, body = ProblemDocument), (status = 502, body = ProblemDocument)))]
pub async fn list_messages(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<MessagesQuery>,
) -> Result<Json<Vec<MessageView>>, Problem> {
    caller.require(Action::ReadAccount { own: true })?;
    let daemon = work(&state)?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(invalid("limit", format!("1 to {MAX_LIMIT}")));
    }
    let folder = q.folder.unwrap_or_else(|| "INBOX".to_owned());
    if folder.is_empty() || folder.len() > 1024 || folder.chars().any(char::is_control) {
        return Err(invalid(
            "folder",
            "a folder name without control characters",
        ));
    }
    let (_, account, app) = account_for(&caller, daemon, &id, false).await?;
    let work = async {
        let mut mailbox = open(daemon, &account, app.as_ref()).await?;
        let listed = mailbox
            .new_since(&folder, &Checkpoint::Start)
            .await
            .map_err(|e| mailbox_failed(&account.name, &e))?;
        let mut out = Vec::new();
        for r in listed.messages.iter().rev().take(limit as usize) {
            let mut head = Head::new(account.limits.max_message_size);
            let size = mailbox
                .fetch(r, &mut head)
                .await
                .map_err(|e| mailbox_failed(&account.name, &e))?;
            let Some(message_id) = MessageId::of(&folder, r) else {
                continue;
            };
            out.push(head.view(message_id.text(), r.transport_id().into_owned(), size));
        }
        if let Err(e) = mailbox.close().await {
            tracing::debug!(account = %account.name, error = %mailbridge_types::error_chain(&e), "closing the mailbox after a listing failed");
        }
        Ok::<_, Problem>(out)
    };
    let out = tokio::time::timeout(command_limit(&account), work)
        .await
        .map_err(|_| timed_out(&account))??;
    Ok(Json(out))
}

/// One message's raw MIME, streamed (`message/rfc822`), as the server holds it.
#[utoipa::path(get, path = "/api/v1/accounts/{id}/messages/{message}", security(("api_token" = [])),
    params(("id" = String, Path, description = "the account's id"), ("message" = String, Path, description = "the message's id from the listing")),
    responses((status = 200, description = "the raw MIME", content_type = "message/rfc822", body = String), (status = 404, body = ProblemDocument), (status = 502, body = ProblemDocument)))]
pub async fn get_message(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((id, message)): Path<(String, String)>,
) -> Result<Response, Problem> {
    caller.require(Action::ReadAccount { own: true })?;
    let daemon = work(&state)?;
    let (_, account, app) = account_for(&caller, daemon, &id, false).await?;
    let not_found = || {
        Problem::not_found(format!(
            "account {} has no message {message}; GET /api/v1/accounts/{id}/messages lists them",
            account.name
        ))
    };
    let wanted = MessageId::parse(&message).ok_or_else(not_found)?;
    let reference = wanted.message_ref();
    let mut mailbox = open(daemon, &account, app.as_ref()).await?;
    if let (AnyMailbox::Imap(_), MessageRef::Imap { uid_validity, uid }) = (&mailbox, &reference) {
        // Selects the folder and tells whether the UID is there under this
        // UIDVALIDITY (a recreated folder's UID may name another message).
        let listed = mailbox
            .new_since(
                &wanted.f,
                &Checkpoint::Imap {
                    uid_validity: *uid_validity,
                    last_uid: uid.saturating_sub(1),
                },
            )
            .await
            .map_err(|e| mailbox_failed(&account.name, &e))?;
        if listed.resynced || listed.messages.first() != Some(&reference) {
            return Err(not_found());
        }
    }
    let (reader, writer) = tokio::io::duplex(PIPE_BYTES);
    let limit = command_limit(&account);
    let max = account.limits.max_message_size;
    let name = account.name.clone();
    let fetch = tokio::spawn(async move {
        let mut sink = Capped {
            inner: writer,
            left: max,
        };
        let result = match tokio::time::timeout(limit, mailbox.fetch(&reference, &mut sink)).await {
            Ok(Ok(size)) => Ok(size),
            Ok(Err(e)) => Err(mailbox_failed(&name, &e)),
            Err(_) => Err(Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                "mailbox-timeout",
                "The mailbox did not answer in time",
                format!(
                    "account {name}'s server did not send the message within {} s",
                    limit.as_secs()
                ),
            )),
        };
        drop(sink);
        if let Err(e) = mailbox.close().await {
            tracing::debug!(account = %name, error = %mailbridge_types::error_chain(&e), "closing the mailbox after a fetch failed");
        }
        result
    });
    let mut reader = reader;
    let mut first = Vec::with_capacity(PIPE_BYTES);
    let n = reader
        .read_buf(&mut first)
        .await
        .map_err(|_| Problem::internal(None))?;
    if n == 0 {
        // Nothing came: the fetch ended; its error (not found, refused) is the answer.
        return match fetch.await {
            Ok(Ok(_)) => Ok(rfc822(Body::empty())),
            Ok(Err(p)) => Err(p),
            Err(_) => Err(Problem::internal(None)),
        };
    }
    let rest = futures::stream::unfold((reader, Some(fetch)), |(mut reader, fetch)| async move {
        let fetch = fetch?;
        let mut buf = Vec::with_capacity(PIPE_BYTES);
        match reader.read_buf(&mut buf).await {
            Ok(0) => match fetch.await {
                // The end, whole.
                Ok(Ok(_)) => None,
                Ok(Err(p)) => Some((Err(std::io::Error::other(p.detail)), (reader, None))),
                Err(e) => Some((Err(std::io::Error::other(e)), (reader, None))),
            },
            Ok(_) => Some((Ok(Bytes::from(buf)), (reader, Some(fetch)))),
            Err(e) => Some((Err(e), (reader, None))),
        }
    });
    let body = futures::StreamExt::chain(
        futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(first)) }),
        rest,
    );
    Ok(rfc822(Body::from_stream(body)))
}

fn rfc822(body: Body) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("message/rfc822"),
    );
    response
}

/// A writer that refuses more than `left` bytes (the account's message size limit).
struct Capped<W> {
    inner: W,
    left: u64,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Capped<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.len() as u64 > self.left {
            return Poll::Ready(Err(std::io::Error::other(
                "the message is larger than the account's limits.max_message_size",
            )));
        }
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.left = this.left.saturating_sub(n as u64);
                Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A writer that keeps a message's first [`HEADER_BYTES`] and counts the rest, up to
/// the size limit.
struct Head {
    kept: Vec<u8>,
    left: u64,
}

impl Head {
    fn new(max: u64) -> Self {
        Self {
            kept: Vec::new(),
            left: max,
        }
    }

    fn view(&self, id: String, source_id: String, size: u64) -> MessageView {
        let parsed = mail_parser::MessageParser::new().parse_headers(&self.kept[..]);
        let text = |s: Option<&str>| {
            s.map(|s| {
                s.chars()
                    .filter(|c| !c.is_control())
                    .take(998)
                    .collect::<String>()
            })
        };
        let (subject, from, date) = match &parsed {
            Some(m) => (
                text(m.subject()),
                text(m.from().and_then(|a| a.first()).and_then(|a| a.address())),
                m.date().map(mail_parser::DateTime::to_rfc3339),
            ),
            None => (None, None, None),
        };
        MessageView {
            id,
            source_id,
            subject,
            from,
            date,
            size,
        }
    }
}

impl AsyncWrite for Head {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if buf.len() as u64 > self.left {
            return Poll::Ready(Err(std::io::Error::other(
                "the message is larger than the account's limits.max_message_size",
            )));
        }
        self.left -= buf.len() as u64;
        let room = HEADER_BYTES.saturating_sub(self.kept.len());
        let keep = buf.get(..room.min(buf.len())).unwrap_or_default();
        self.kept.extend_from_slice(keep);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_round_trip_and_refuse_junk() {
        let r = MessageRef::Imap {
            uid_validity: 7,
            uid: 42,
        };
        let id = MessageId::of("INBOX", &r).unwrap();
        let text = id.text();
        assert!(
            text.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let back = MessageId::parse(&text).unwrap();
        assert_eq!((back.f.as_str(), back.message_ref()), ("INBOX", r));
        for junk in ["", "!!", "e30", &"A".repeat(9000)] {
            assert!(MessageId::parse(junk).is_none(), "{junk}");
        }
    }

    #[tokio::test]
    async fn the_head_keeps_the_header_and_refuses_past_the_limit() {
        use tokio::io::AsyncWriteExt as _;
        let raw = b"From: Alice <alice@example.org>\r\nSubject: Hello\r\nDate: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\nbody\r\n";
        let mut head = Head::new(1000);
        head.write_all(raw).await.unwrap();
        let v = head.view("i".into(), "1".into(), raw.len() as u64);
        assert_eq!(v.subject.as_deref(), Some("Hello"));
        assert_eq!(v.from.as_deref(), Some("alice@example.org"));
        assert_eq!(v.date.as_deref(), Some("2026-12-07T10:00:00Z"));
        let mut small = Head::new(10);
        assert!(small.write_all(raw).await.is_err());
        let mut capped = Capped {
            inner: Vec::new(),
            left: 10,
        };
        assert!(capped.write_all(raw).await.is_err());
    }
}
