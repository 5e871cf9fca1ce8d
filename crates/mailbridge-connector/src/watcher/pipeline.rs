//! One delivery round: every message new since the checkpoint, in order, fetched into
//! a spool file, summarised, routed, delivered to every sink of its route, the
//! route's source action done, and only then the checkpoint moved past it.
//!
//! The round goes in batches ([`Round::batch`] messages, [`Round::batch_bytes`] spooled
//! bytes): one lookup of the parked messages, one fetch ([`FetchMany`]: one pipelined
//! `UID FETCH` over IMAP), the messages routed and delivered in order, a folder sink's
//! files staged ([`FolderSink::stage`]) and made durable and placed together at the
//! end of the batch ([`folder::Batch::commit`]), then the source actions, then one
//! checkpoint past the batch's last message that got through. A crash redelivers at
//! most the batch in flight, under the same idempotency keys. A failure inside a batch
//! ends it at that message: what came before is committed, acted on and checkpointed
//! before the failure is answered.
//!
//! A message a sink does not accept is either retried or parked, by the watcher's
//! [`Parking`] policy (see `docs/delivery.md`). Retried: the round stops there, the
//! checkpoint still stands before the message, and the next round (after the
//! watcher's backoff) lists it again and delivers it again under the same idempotency
//! key (a folder sink finds it there and adds nothing; a webhook receiver sees the same
//! `Idempotency-Key`). Parked: the message (its MIME, the sinks that have not accepted
//! it, the source action still to do) is stored in the store's `parked` table first,
//! and only then does the round go on and the checkpoint move past it; the parked
//! delivery worker ([`crate::parked`]) retries the remaining sinks. A message listed
//! again that is parked already (a crash between parking and the checkpoint, a listing
//! whose checkpoint was not stored) is passed, not delivered a second time.
//!
//! The source action of a parked message is done once every sink accepted it: the
//! worker marks the row delivered, and the account's watcher does the action at the
//! start of its next round (after listing the folder, so an IMAP UID is checked
//! against the folder's UIDVALIDITY), then removes the row. A message that is gone from
//! the source by then (deleted or moved by a person, or a folder recreated under a new
//! UIDVALIDITY) has nothing left to act on: the row is removed with a warning.
//!
//! Failures of the source (listing, fetching, the source action) are never parked:
//! they are the mailbox's, and end the round as before. A message no route matches
//! is passed (logged as unrouted).
//!
//! The checkpoint moves per batch where the transport can say "up to this message"
//! (IMAP: the message's UID under its UIDVALIDITY). Graph delta links, EWS sync
//! states and POP3's UIDL sets describe a whole listing, so for them the listing's
//! checkpoint is stored once every message of the round got through or was parked; a
//! failure leaves the previous one, and the messages already delivered are delivered
//! again under their keys.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use mailbridge_mailbox::download::{FetchError, FetchMany, MessageSinks};
use mailbridge_mailbox::mailbox::{Checkpoint, ErrorKind, Mailbox, MailboxError, MessageRef};
use mailbridge_sinks::attachments::AttachmentsSink;
use mailbridge_sinks::folder::{self, FolderSink};
use mailbridge_sinks::relay::RelaySink;
use mailbridge_sinks::route::{Route, SourceAction, choose};
use mailbridge_sinks::summary::{Summary, summarize};
use mailbridge_sinks::webhook::WebhookSink;
use mailbridge_sinks::{Accepted, Delivery, IdempotencyKey, SinkError};
use mailbridge_store::{AccountId, NewParked, Store, StoreError};
use mailbridge_types::ErrorClass;
use mailbridge_types::backoff::Backoff;
use time::OffsetDateTime;
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use super::state::{Parking, Refusal};
use crate::parked::{message_ref_from_json, message_ref_json};

/// One sink, any kind.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnySink {
    Folder(FolderSink),
    Attachments(AttachmentsSink),
    /// Boxed: an HTTP client's configuration is large.
    Webhook(Box<WebhookSink>),
    /// Boxed: an SMTP configuration is large.
    Relay(Box<RelaySink>),
}

impl AnySink {
    /// Hands `delivery` to the sink.
    pub async fn deliver(&self, delivery: &Delivery) -> Result<Accepted, SinkError> {
        match self {
            AnySink::Folder(s) => s.deliver(delivery).await,
            AnySink::Attachments(s) => s.deliver(delivery).await,
            AnySink::Webhook(s) => s.deliver(delivery).await,
            AnySink::Relay(s) => s.deliver(delivery).await,
        }
    }
}

/// The sinks routes name, by name.
#[derive(Debug, Default)]
pub struct SinkSet {
    sinks: BTreeMap<String, AnySink>,
}

impl SinkSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the sink called `name`.
    pub fn insert(&mut self, name: impl Into<String>, sink: AnySink) -> &mut Self {
        self.sinks.insert(name.into(), sink);
        self
    }

    pub fn get(&self, name: &str) -> Option<&AnySink> {
        self.sinks.get(name)
    }

    /// The first sink a route names that is not in the set.
    pub fn missing<'r>(&self, routes: &'r [Route]) -> Option<(&'r str, &'r str)> {
        routes.iter().find_map(|r| {
            r.sinks
                .iter()
                .find(|s| !self.sinks.contains_key(s.as_str()))
                .map(|s| (r.name.as_str(), s.as_str()))
        })
    }
}

/// Messages per batch in the daemon: a crash redelivers at most this many (under their
/// idempotency keys, so receivers add nothing twice).
pub const BATCH: usize = 200;

/// Bytes of messages a batch spools at most in the daemon (a single larger message,
/// up to `limits.max_message_size`, is a batch of its own).
pub const BATCH_BYTES: u64 = 32 << 20;

/// What one round is about.
#[derive(Debug, Clone)]
pub struct Round<'a> {
    /// The account's stable id (checkpoints, idempotency keys).
    pub account_id: AccountId,
    /// The account's name (shown to receivers, in events and logs).
    pub account: &'a str,
    pub folder: &'a str,
    /// Where fetched messages are spooled while they are delivered.
    pub spool_dir: &'a Path,
    /// The largest message fetched (`limits.max_message_size`).
    pub max_message_size: u64,
    /// Messages fetched and delivered together (one fetch, one commit of the folder
    /// sinks' files, one checkpoint); [`BATCH`] in the daemon.
    pub batch: usize,
    /// Bytes a batch spools at most ([`BATCH_BYTES`] in the daemon): where the
    /// transport announces a message's size before its bytes (IMAP), a message that
    /// would pass it ends the batch before it; elsewhere the batch ends once it is
    /// reached. A batch always takes its first message.
    pub batch_bytes: u64,
    /// The wait before a parked message's first retry.
    pub park_backoff: Backoff,
    /// Told of every message the round handled (metrics).
    pub on_message: Option<&'a MessageHook>,
    /// Where a webhook's receiver fetches a message too large to travel inline.
    pub mime_link: Option<&'a MimeLink>,
}

/// What became of one listed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageOutcome {
    /// Every sink of its route accepted it.
    Delivered,
    /// No route matched: passed.
    Unrouted,
    /// A sink kept refusing it: parked.
    Parked,
    /// Parked before: passed (the parked-delivery worker has it).
    ParkedBefore,
}

impl MessageOutcome {
    /// The stable name (`delivered`, `unrouted`, `parked`, `parked-before`).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageOutcome::Delivered => "delivered",
            MessageOutcome::Unrouted => "unrouted",
            MessageOutcome::Parked => "parked",
            MessageOutcome::ParkedBefore => "parked-before",
        }
    }
}

/// The function behind a [`MessageHook`].
pub type MessageHookFn = dyn Fn(&str, MessageOutcome, std::time::Duration) + Send + Sync;

/// Called with the account's name, what became of a message and how long it took
/// from the start of its fetch to the last sink's answer (the daemon's metrics).
#[derive(Clone)]
pub struct MessageHook(pub std::sync::Arc<MessageHookFn>);

impl std::fmt::Debug for MessageHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MessageHook")
    }
}

/// The function behind a [`MimeLink`].
pub type MimeLinkFn = dyn Fn(AccountId, &str, &MessageRef) -> Option<String> + Send + Sync;

/// Where a receiver fetches a message's raw MIME (the daemon's API:
/// `https://host/api/v1/accounts/{id}/messages/{message}`), given the account's id,
/// the folder and the message's reference at the source: the link a webhook sends
/// for a message too large to travel inline. `None` for a message it cannot name.
#[derive(Clone)]
pub struct MimeLink(pub std::sync::Arc<MimeLinkFn>);

impl std::fmt::Debug for MimeLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MimeLink")
    }
}

/// What a round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundSummary {
    /// Messages listed.
    pub listed: usize,
    /// Messages every sink of their route accepted.
    pub delivered: usize,
    /// Messages no route matched (passed).
    pub unrouted: usize,
    /// Messages parked by this round.
    pub parked: usize,
    /// Messages listed again that were parked before (passed).
    pub parked_before: usize,
    /// Source actions of parked messages done (their rows removed).
    pub source_actions: usize,
    /// Batches fetched.
    pub batches: usize,
    /// The most bytes one batch spooled.
    pub batch_bytes_peak: u64,
}

/// Why a round stopped. What was stored before stays true; the message it names is
/// listed again next round.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoundError {
    #[error("failed to read where the watcher of {folder} stopped")]
    LoadCheckpoint {
        folder: String,
        #[source]
        source: StoreError,
    },
    #[error("failed to list the new messages of {folder}")]
    List {
        folder: String,
        #[source]
        source: MailboxError,
    },
    #[error("failed to fetch {message} from {folder}")]
    Fetch {
        folder: String,
        message: String,
        #[source]
        source: MailboxError,
    },
    #[error("failed to spool {message} at {}", path.display())]
    Spool {
        message: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "route {route} names the sink {sink}, which is not configured (add it or fix the route)"
    )]
    UnknownSink { route: String, sink: String },
    #[error("sink {sink} did not accept {message} from {folder} (route {route})")]
    Sink {
        folder: String,
        message: String,
        route: String,
        sink: String,
        #[source]
        source: SinkError,
    },
    #[error("the source action after delivering {message} from {folder} failed")]
    SourceAction {
        folder: String,
        message: String,
        #[source]
        source: MailboxError,
    },
    #[error("failed to park {message} from {folder}")]
    Park {
        folder: String,
        message: String,
        #[source]
        source: StoreError,
    },
    #[error("failed to read or update the parked deliveries of {folder}")]
    Parked {
        folder: String,
        #[source]
        source: StoreError,
    },
    #[error("failed to make the messages a batch wrote into folder sinks durable ({folder})")]
    Commit {
        folder: String,
        #[source]
        source: SinkError,
    },
    #[error("failed to store where the watcher of {folder} stopped")]
    SaveCheckpoint {
        folder: String,
        #[source]
        source: StoreError,
    },
}

impl RoundError {
    /// What to do about it.
    pub fn class(&self) -> ErrorClass {
        match self {
            RoundError::LoadCheckpoint { .. }
            | RoundError::SaveCheckpoint { .. }
            | RoundError::Park { .. }
            | RoundError::Parked { .. }
            | RoundError::Spool { .. } => ErrorClass::Transient,
            RoundError::List { source, .. }
            | RoundError::Fetch { source, .. }
            | RoundError::SourceAction { source, .. } => source.class,
            RoundError::UnknownSink { .. } => ErrorClass::Misconfigured,
            RoundError::Sink { source, .. } | RoundError::Commit { source, .. } => source.class(),
        }
    }

    /// The mail source's error, when the source failed (its connection, sign-in,
    /// listing, fetch or source action) rather than a sink, the spool or the store.
    pub fn source_error(&self) -> Option<&MailboxError> {
        match self {
            RoundError::List { source, .. }
            | RoundError::Fetch { source, .. }
            | RoundError::SourceAction { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The key of the watcher's checkpoint of `folder` (apart from `mailbridge fetch`'s,
/// which are per output directory).
pub fn watch_checkpoint_key(folder: &str) -> String {
    format!("watch\u{1f}{folder}")
}

/// The checkpoint that covers a listing up to and including `message`, where the
/// transport has one (IMAP).
fn up_to(message: &MessageRef) -> Option<Checkpoint> {
    match message {
        MessageRef::Imap { uid_validity, uid } => Some(Checkpoint::Imap {
            uid_validity: *uid_validity,
            last_uid: *uid,
        }),
        _ => None,
    }
}

/// Runs one round over `folder` of `mailbox`: see the module's documentation.
/// `parking` decides about refused messages and remembers across rounds; `cancel`
/// is looked at between messages (a message being delivered finishes).
pub async fn deliver_round<M: FetchMany + Send>(
    mailbox: &mut M,
    round: &Round<'_>,
    routes: &[Route],
    sinks: &SinkSet,
    store: &Store,
    parking: &mut Parking,
    cancel: &CancellationToken,
) -> Result<RoundSummary, RoundError> {
    let folder = round.folder;
    if let Some((route, sink)) = sinks.missing(routes) {
        return Err(RoundError::UnknownSink {
            route: route.to_owned(),
            sink: sink.to_owned(),
        });
    }
    let key = watch_checkpoint_key(folder);
    let checkpoint: Checkpoint = store
        .checkpoint_by_id(round.account_id, &key)
        .await
        .map_err(|source| RoundError::LoadCheckpoint {
            folder: folder.to_owned(),
            source,
        })?
        .unwrap_or(Checkpoint::Start);
    let listed = mailbox
        .new_since(folder, &checkpoint)
        .await
        .map_err(|source| RoundError::List {
            folder: folder.to_owned(),
            source,
        })?;
    let save = |checkpoint: Checkpoint| {
        let key = key.clone();
        async move {
            store
                .set_checkpoint_by_id(round.account_id, &key, &checkpoint)
                .await
                .map_err(|source| RoundError::SaveCheckpoint {
                    folder: folder.to_owned(),
                    source,
                })
        }
    };
    let mut summary = RoundSummary {
        listed: listed.messages.len(),
        ..RoundSummary::default()
    };
    // The listing selected the folder: the source actions of parked messages
    // delivered since can be checked against it now.
    summary.source_actions = pending_source_actions(mailbox, round, store, cancel).await?;
    tokio::fs::create_dir_all(round.spool_dir)
        .await
        .map_err(|source| RoundError::Spool {
            message: "the spool directory".into(),
            path: round.spool_dir.to_owned(),
            source,
        })?;
    let mut rest = listed.messages.as_slice();
    // A batch that stopped at its byte bound makes the next one as short; full ones
    // let it grow back (doubling) to `round.batch`.
    let mut count = round.batch.max(1);
    while !rest.is_empty() {
        if cancel.is_cancelled() {
            return Ok(summary);
        }
        let batch = rest.get(..count.min(rest.len())).unwrap_or(rest);
        let (passed, handled) = deliver_batch(
            mailbox,
            round,
            batch,
            routes,
            sinks,
            store,
            parking,
            cancel,
            &mut summary,
        )
        .await?;
        if let Some(c) = passed {
            save(c).await?;
        }
        if cancel.is_cancelled() || handled == 0 {
            return Ok(summary);
        }
        count = if handled < batch.len() {
            handled
        } else {
            count.saturating_mul(2).min(round.batch.max(1))
        };
        rest = rest.get(handled..).unwrap_or_default();
    }
    // The listing's own checkpoint: it covers what arrived without being listed
    // (none for IMAP beyond the last UID) and is the only one Graph, EWS and POP3 have.
    save(listed.checkpoint).await?;
    Ok(summary)
}

/// What became of one message of a batch.
enum Outcome {
    /// Every sink of its route accepted it (a folder sink's file waits for the batch's
    /// commit); the route's source action is still to do.
    Delivered {
        key: String,
        then: SourceAction,
    },
    Unrouted,
    Parked,
    ParkedBefore,
}

impl Outcome {
    fn told(&self) -> MessageOutcome {
        match self {
            Outcome::Delivered { .. } => MessageOutcome::Delivered,
            Outcome::Unrouted => MessageOutcome::Unrouted,
            Outcome::Parked => MessageOutcome::Parked,
            Outcome::ParkedBefore => MessageOutcome::ParkedBefore,
        }
    }
}

/// The source references of the round folder's parked messages, by source id (one
/// query for a batch).
async fn parked_refs(
    store: &Store,
    round: &Round<'_>,
) -> Result<HashMap<String, Vec<serde_json::Value>>, RoundError> {
    let rows = store
        .parked_refs(round.account_id, round.folder)
        .await
        .map_err(|source| RoundError::Parked {
            folder: round.folder.to_owned(),
            source,
        })?;
    let mut by_id: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
    for (source_id, message_ref) in rows {
        by_id.entry(source_id).or_default().push(message_ref);
    }
    Ok(by_id)
}

/// Whether `message` is parked already (the same message: its stored reference equals
/// this one, so an IMAP UID under another UIDVALIDITY is not taken for it).
fn parked_before(parked: &HashMap<String, Vec<serde_json::Value>>, message: &MessageRef) -> bool {
    parked
        .get(message.transport_id().as_ref())
        .is_some_and(|refs| refs.contains(&message_ref_json(message)))
}

/// Delivers one batch of the listing: one lookup of the parked messages, one fetch of
/// the others (one `UID FETCH` over IMAP), each message routed and handed to its sinks
/// in order (a folder sink stages its file), then the folder sinks' files made durable
/// at once, then the source actions. Answers the checkpoint that covers what got
/// through (delivered, unrouted or parked, its source action done), if the transport
/// has one per message (the caller stores it), and how many messages of `batch` were
/// handled: fewer than all when the byte bound ended the batch early (the rest are
/// the next batch's) or the round was cancelled. A failure ends the batch at that message:
/// what came before it is finished (committed, acted on, its checkpoint stored) before
/// the failure is answered.
#[expect(
    clippy::too_many_arguments,
    reason = "the round's parts, passed through from deliver_round"
)]
async fn deliver_batch<M: FetchMany + Send>(
    mailbox: &mut M,
    round: &Round<'_>,
    batch: &[MessageRef],
    routes: &[Route],
    sinks: &SinkSet,
    store: &Store,
    parking: &mut Parking,
    cancel: &CancellationToken,
    summary: &mut RoundSummary,
) -> Result<(Option<Checkpoint>, usize), RoundError> {
    let folder = round.folder;
    let parked = parked_refs(store, round).await?;
    let wanted: Vec<MessageRef> = batch
        .iter()
        .filter(|m| !parked_before(&parked, m))
        .cloned()
        .collect();
    let started = std::time::Instant::now();
    let mut spooler = Spooler::new(round, wanted.len());
    let fetched = if wanted.is_empty() {
        Ok(())
    } else {
        mailbox.fetch_many(folder, &wanted, &mut spooler).await
    };
    let fetch_took = started.elapsed();
    summary.batches += 1;
    summary.batch_bytes_peak = summary.batch_bytes_peak.max(spooler.spooled);
    let source_broken = fetched.is_err();
    let mut fetched = Some(fetched);
    let mut staged = Staged::default();
    let mut outcomes: Vec<(Outcome, std::time::Duration)> = Vec::with_capacity(batch.len());
    let mut failure = None;
    for message in batch {
        if cancel.is_cancelled() {
            break;
        }
        let outcome = if parked_before(&parked, message) {
            tracing::info!(
                account = round.account,
                folder,
                source_message = %message,
                "parked before: passed (the parked delivery worker delivers it)"
            );
            Ok(Outcome::ParkedBefore)
        } else if let Some(spooled) = spooler.fetched.get(message.transport_id().as_ref()) {
            deliver_fetched(
                round,
                message,
                spooled,
                routes,
                sinks,
                store,
                parking,
                &mut staged,
            )
            .await
        } else if spooler.full() && matches!(fetched, Some(Ok(()))) {
            // The byte bound ended the batch before this message: the next batch
            // starts with it.
            break;
        } else {
            Err(not_fetched(round, message, fetched.take()))
        };
        match outcome {
            Ok(outcome) => {
                match outcome {
                    Outcome::Delivered { .. } => summary.delivered += 1,
                    Outcome::Unrouted => summary.unrouted += 1,
                    Outcome::Parked => summary.parked += 1,
                    Outcome::ParkedBefore => summary.parked_before += 1,
                }
                outcomes.push((outcome, started.elapsed()));
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if failure.is_none()
        && !cancel.is_cancelled()
        && matches!(fetched, Some(Err(_)))
        && let Some(last) = batch.last()
    {
        // The fetch failed after handing over every message: the session is gone all
        // the same (the source actions wait, see below).
        failure = Some(not_fetched(round, last, fetched.take()));
    }
    let deliver_took = started.elapsed();
    // The folder sinks' files of the whole batch, durable at once (they take the
    // spool files themselves, so those go only after); only then are the messages
    // accepted, their source actions done and the checkpoint moved.
    let committed = staged.commit(round).await;
    let commit_took = started.elapsed();
    spooler.remove_files().await;
    tracing::debug!(
        account = round.account,
        folder,
        messages = outcomes.len(),
        fetch_ms = fetch_took.as_millis(),
        deliver_ms = deliver_took.saturating_sub(fetch_took).as_millis(),
        commit_ms = commit_took.saturating_sub(deliver_took).as_millis(),
        remove_ms = started.elapsed().saturating_sub(commit_took).as_millis(),
        "batch delivered"
    );
    if let Err(source) = committed {
        if let Some(first) = failure {
            tracing::warn!(
                account = round.account,
                folder,
                error = %mailbridge_types::error_chain(&first),
                "a delivery failed in a batch whose folder files could not be made durable"
            );
        }
        return Err(RoundError::Commit {
            folder: folder.to_owned(),
            source,
        });
    }
    let mut passed = None;
    let mut handled = 0;
    for (message, (outcome, took)) in batch.iter().zip(&outcomes) {
        if let Outcome::Delivered { key, then } = outcome {
            if source_broken && *then != SourceAction::Keep {
                // The session broke in the fetch: the action waits for the next round,
                // which delivers the message again (its sinks find it there).
                break;
            }
            let action = match then {
                SourceAction::Keep => Ok(()),
                SourceAction::MarkRead => mailbox.mark_read(message).await,
                SourceAction::Move { folder: to } => mailbox.move_to(message, to).await,
                SourceAction::Delete => mailbox.delete(message).await,
            };
            if let Err(source) = action {
                failure = Some(RoundError::SourceAction {
                    folder: folder.to_owned(),
                    message: message.to_string(),
                    source,
                });
                break;
            }
            parking.delivered(key);
        }
        if let Some(hook) = round.on_message {
            (hook.0)(round.account, outcome.told(), *took);
        }
        passed = up_to(message).or(passed);
        handled += 1;
    }
    match failure {
        Some(e) => {
            // What got through before the failure stays got through.
            if let Some(c) = passed {
                store
                    .set_checkpoint_by_id(round.account_id, &watch_checkpoint_key(folder), &c)
                    .await
                    .map_err(|source| RoundError::SaveCheckpoint {
                        folder: folder.to_owned(),
                        source,
                    })?;
            }
            Err(e)
        }
        None => Ok((passed, handled)),
    }
}

/// The error for a listed message the fetch did not hand over: the fetch's own failure
/// (once), or the server's silence about it (deleted since it was listed?).
fn not_fetched(
    round: &Round<'_>,
    message: &MessageRef,
    fetched: Option<Result<(), FetchError<SpoolError>>>,
) -> RoundError {
    let folder = round.folder.to_owned();
    let shown = message.to_string();
    match fetched {
        Some(Err(FetchError::Mailbox(source))) => RoundError::Fetch {
            folder,
            message: shown,
            source,
        },
        Some(Err(FetchError::Sink(e))) if e.source.kind() == std::io::ErrorKind::FileTooLarge => {
            RoundError::Fetch {
                folder,
                message: shown,
                source: MailboxError::with_source(
                    ErrorClass::LimitExceeded,
                    ErrorKind::LimitExceeded,
                    format!(
                        "a message is larger than the account's limits.max_message_size ({} bytes): raise it to receive the message",
                        round.max_message_size
                    ),
                    e.source,
                ),
            }
        }
        Some(Err(FetchError::Sink(e))) => RoundError::Spool {
            message: shown,
            path: e.path,
            source: e.source,
        },
        Some(Ok(())) | None => RoundError::Fetch {
            folder,
            message: shown.clone(),
            source: MailboxError::new(
                ErrorClass::Transient,
                ErrorKind::NotFound,
                format!(
                    "the server did not send {shown} (deleted since it was listed?): the folder is listed again next round"
                ),
            ),
        },
    }
}

/// Writing into the spool failed.
#[derive(Debug, thiserror::Error)]
#[error("failed to write a fetched message at {}", path.display())]
struct SpoolError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// Where one fetched message goes: a spool file (its path and the bounded writer), or
/// nowhere when the batch's byte bound deferred it to the next batch.
#[expect(
    clippy::large_enum_variant,
    reason = "one at a time, for the message being fetched"
)]
enum SpoolFile {
    File {
        path: PathBuf,
        file: Bounded<tokio::io::BufWriter<tokio::fs::File>>,
        /// The message's bytes while it is no longer than [`SUMMARIZED_INLINE`]: it
        /// is summarised from these, not read back from the file.
        head: Option<Vec<u8>>,
    },
    Deferred(tokio::io::Sink),
}

impl AsyncWrite for SpoolFile {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            SpoolFile::File { file, head, .. } => {
                let n = std::task::ready!(Pin::new(file).poll_write(cx, buf))?;
                if let Some(h) = head {
                    if h.len() + n <= SUMMARIZED_INLINE {
                        h.extend_from_slice(buf.get(..n).unwrap_or_default());
                    } else {
                        *head = None;
                    }
                }
                Poll::Ready(Ok(n))
            }
            SpoolFile::Deferred(sink) => Pin::new(sink).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SpoolFile::File { file, .. } => Pin::new(file).poll_flush(cx),
            SpoolFile::Deferred(sink) => Pin::new(sink).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            SpoolFile::File { file, .. } => Pin::new(file).poll_shutdown(cx),
            SpoolFile::Deferred(sink) => Pin::new(sink).poll_shutdown(cx),
        }
    }
}

/// Where a batch's fetch puts each message: a spool file each, bounded by the account's
/// largest message, until the batch's byte bound; the messages after that are read
/// past (IMAP sends what was asked) and left to the next batch.
///
/// The files are made ahead of need, one per message asked for, by a blocking task
/// that runs while the messages arrive: making a named file costs about 0.3 ms on the
/// project machine's ext4, which in line with the fetch was a third of a batch's time.
struct Spooler {
    /// The files made ahead, in order, at most [`SPOOL_AHEAD`] waiting.
    ahead: Option<tokio::sync::mpsc::Receiver<std::io::Result<(PathBuf, std::fs::File)>>>,
    /// The task making them; it answers how many it made.
    maker: Option<tokio::task::JoinHandle<usize>>,
    /// Files the maker makes (one per message asked for).
    count: usize,
    /// Files made on demand beyond those.
    extra: usize,
    /// Every file handed to a message.
    files: Vec<PathBuf>,
    /// The complete ones, by the message's transport id.
    fetched: HashMap<String, Spooled>,
    prefix: PathBuf,
    limit: u64,
    /// The batch's byte bound.
    budget: u64,
    /// Bytes of the complete ones.
    spooled: u64,
    /// The bound was reached: every message from then on is deferred.
    deferred: bool,
}

/// The buffer in front of each spool file: most messages reach it in one write.
const SPOOL_BUFFER: usize = 64 * 1024;
/// Spool files made ahead of the messages that will fill them.
const SPOOL_AHEAD: usize = 32;
/// Messages up to this size are summarised as they arrive (most mail is smaller);
/// a larger one is read back from its spool file when it is routed.
const SUMMARIZED_INLINE: usize = 64 * 1024;

/// A message of the batch in the spool.
struct Spooled {
    path: PathBuf,
    /// Its summary, when it was made as the message arrived.
    summary: Option<Summary>,
}

/// The spool file `i` of a batch whose files start with `prefix`.
fn spool_path(prefix: &Path, i: usize) -> PathBuf {
    let mut path = prefix.to_owned().into_os_string();
    path.push(format!(".{i}.part"));
    PathBuf::from(path)
}

impl Spooler {
    /// The spool of a batch of `count` messages; their files are made from now on.
    fn new(round: &Round<'_>, count: usize) -> Self {
        // Unique per account and folder (watchers of two folders share the spool).
        let prefix = round.spool_dir.join(
            IdempotencyKey::new(&round.account_id.to_string(), round.folder, "batch", None)
                .to_string(),
        );
        let (tx, rx) = tokio::sync::mpsc::channel(SPOOL_AHEAD);
        let maker_prefix = prefix.clone();
        let maker = tokio::task::spawn_blocking(move || {
            for i in 0..count {
                let path = spool_path(&maker_prefix, i);
                let made = create_new_blocking(&path);
                let failed = made.is_err();
                if tx.blocking_send(made.map(|file| (path, file))).is_err() {
                    // The batch ended early: file i was made but never handed over.
                    return if failed { i } else { i + 1 };
                }
                if failed {
                    return i;
                }
            }
            count
        });
        Self {
            ahead: Some(rx),
            maker: Some(maker),
            count,
            extra: 0,
            files: Vec::new(),
            fetched: HashMap::new(),
            prefix,
            limit: round.max_message_size,
            budget: round.batch_bytes,
            spooled: 0,
            deferred: false,
        }
    }

    /// Whether the batch reached its byte bound (it always takes its first message).
    fn full(&self) -> bool {
        self.deferred || (!self.files.is_empty() && self.spooled >= self.budget)
    }

    async fn remove_files(&mut self) {
        // No more files: the maker stops, saying how many it made (handed over or not).
        self.ahead = None;
        let made = match self.maker.take() {
            Some(maker) => maker.await.unwrap_or(self.files.len()),
            None => 0,
        };
        let prefix = self.prefix.clone();
        // Those handed over, and those made but never handed over.
        let mut paths = std::mem::take(&mut self.files);
        paths.extend((0..made).map(|i| spool_path(&prefix, i)));
        paths.sort_unstable();
        paths.dedup();
        self.fetched.clear();
        // The spool is only a buffer: a file that cannot be removed is replaced by
        // the next batch that makes one of its name (`create_new_blocking`).
        let _ = tokio::task::spawn_blocking(move || {
            for path in paths {
                let _ = std::fs::remove_file(path);
            }
        })
        .await;
    }
}

impl MessageSinks for Spooler {
    type Writer = SpoolFile;
    type Error = SpoolError;

    async fn open(&mut self, size: Option<u64>) -> Result<SpoolFile, SpoolError> {
        let over = match size {
            Some(size) => self.spooled.saturating_add(size) > self.budget,
            None => self.spooled >= self.budget,
        };
        if self.deferred || (over && !self.files.is_empty()) {
            self.deferred = true;
            return Ok(SpoolFile::Deferred(tokio::io::sink()));
        }
        let expected = spool_path(&self.prefix, self.files.len());
        let next = match self.ahead.as_mut() {
            Some(ahead) => ahead.recv().await,
            None => None,
        };
        let (path, file) = match next {
            Some(Ok(made)) => made,
            Some(Err(source)) => {
                return Err(SpoolError {
                    path: expected,
                    source,
                });
            }
            // More files than messages asked for (a server that names the UID after
            // the body sends what was not asked before it can be told apart): made now.
            None => {
                self.extra += 1;
                let path = spool_path(&self.prefix, self.count + self.extra);
                let made = path.clone();
                let file = tokio::task::spawn_blocking(move || create_new_blocking(&made))
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|r| r)
                    .map_err(|source| SpoolError {
                        path: path.clone(),
                        source,
                    })?;
                (path, file)
            }
        };
        let file = tokio::fs::File::from_std(file);
        self.files.push(path.clone());
        Ok(SpoolFile::File {
            path,
            file: Bounded {
                inner: tokio::io::BufWriter::with_capacity(SPOOL_BUFFER, file),
                written: 0,
                limit: self.limit,
            },
            head: Some(Vec::with_capacity(
                usize::try_from(size.unwrap_or(0))
                    .unwrap_or(0)
                    .min(SUMMARIZED_INLINE),
            )),
        })
    }

    async fn done(
        &mut self,
        message: &MessageRef,
        size: u64,
        writer: SpoolFile,
    ) -> Result<(), SpoolError> {
        let SpoolFile::File {
            path,
            mut file,
            head,
        } = writer
        else {
            return Ok(());
        };
        file.flush().await.map_err(|source| SpoolError {
            path: path.clone(),
            source,
        })?;
        self.spooled = self.spooled.saturating_add(size);
        let summary = head
            .filter(|h| h.len() as u64 == file.written)
            .map(|h| summarize(&h));
        self.fetched.insert(
            message.transport_id().into_owned(),
            Spooled { path, summary },
        );
        Ok(())
    }

    fn wants_more(&self) -> bool {
        !self.full()
    }

    fn write_failed(&mut self, source: std::io::Error) -> SpoolError {
        SpoolError {
            path: self.prefix.clone(),
            source,
        }
    }
}

/// Does the source actions of the round folder's parked messages that were delivered
/// since (oldest first), removing each row once done; how many were done. A message
/// gone from the source has nothing left to do: its row goes, with a warning.
async fn pending_source_actions<M: Mailbox + Send>(
    mailbox: &mut M,
    round: &Round<'_>,
    store: &Store,
    cancel: &CancellationToken,
) -> Result<usize, RoundError> {
    let folder = round.folder;
    let store_error = |source| RoundError::Parked {
        folder: folder.to_owned(),
        source,
    };
    let mut done = 0;
    loop {
        let rows = store
            .parked_pending_actions(round.account_id, folder, 100)
            .await
            .map_err(store_error)?;
        if rows.is_empty() || cancel.is_cancelled() {
            return Ok(done);
        }
        for row in rows {
            let action = serde_json::from_value::<SourceAction>(row.source_action.clone());
            let (Some(message), Ok(action)) = (message_ref_from_json(&row.message_ref), action)
            else {
                tracing::warn!(
                    account = round.account,
                    folder,
                    parked = %row.id,
                    "a delivered parked message's source reference or action cannot be read: the row is removed and nothing is done at the source"
                );
                store
                    .parked_source_action_done(row.id)
                    .await
                    .map_err(store_error)?;
                continue;
            };
            let result = match &action {
                SourceAction::Keep => Ok(()),
                SourceAction::MarkRead => mailbox.mark_read(&message).await,
                SourceAction::Move { folder: to } => mailbox.move_to(&message, to).await,
                SourceAction::Delete => mailbox.delete(&message).await,
            };
            match result {
                Ok(()) => {
                    tracing::info!(
                        account = round.account,
                        folder,
                        source_message = %message,
                        parked = %row.id,
                        "source action of a parked message done"
                    );
                    done += 1;
                }
                Err(e) if e.kind == mailbridge_mailbox::mailbox::ErrorKind::NotFound => {
                    tracing::warn!(
                        account = round.account,
                        folder,
                        source_message = %message,
                        parked = %row.id,
                        error = %mailbridge_types::error_chain(&e),
                        "the parked message is gone from the source: its source action is not done"
                    );
                }
                Err(source) => {
                    return Err(RoundError::SourceAction {
                        folder: folder.to_owned(),
                        message: message.to_string(),
                        source,
                    });
                }
            }
            store
                .parked_source_action_done(row.id)
                .await
                .map_err(store_error)?;
        }
    }
}

/// Routes one fetched message and hands it to its route's sinks in order (a folder
/// sink stages it into `staged`); the source action is left to the batch.
#[expect(
    clippy::too_many_arguments,
    reason = "the round's parts, passed through from deliver_batch"
)]
async fn deliver_fetched(
    round: &Round<'_>,
    message: &MessageRef,
    spooled: &Spooled,
    routes: &[Route],
    sinks: &SinkSet,
    store: &Store,
    parking: &mut Parking,
    staged: &mut Staged,
) -> Result<Outcome, RoundError> {
    let folder = round.folder;
    let shown = message.to_string();
    let source_id = message.transport_id().into_owned();
    let spool = spooled.path.as_path();
    let spool_error = |source: std::io::Error| RoundError::Spool {
        message: shown.clone(),
        path: spool.to_owned(),
        source,
    };
    let summary = if let Some(summary) = &spooled.summary {
        std::borrow::Cow::Borrowed(summary)
    } else {
        let mime = tokio::fs::read(spool).await.map_err(spool_error)?;
        std::borrow::Cow::Owned(summarize(&mime))
    };
    let Some(route) = choose(routes, folder, &summary) else {
        tracing::info!(
            account = round.account,
            folder,
            source_message = %shown,
            "unrouted: no route matches the message; passed"
        );
        return Ok(Outcome::Unrouted);
    };
    let delivery = Delivery {
        key: IdempotencyKey::new(
            &round.account_id.to_string(),
            folder,
            &source_id,
            summary.message_id.as_deref(),
        ),
        account: round.account.to_owned(),
        folder: folder.to_owned(),
        source_id: source_id.clone(),
        spool: spool.to_owned(),
        mime_link: round
            .mime_link
            .and_then(|link| (link.0)(round.account_id, folder, message)),
    };
    for (i, name) in route.sinks.iter().enumerate() {
        let sink = sinks.get(name).ok_or_else(|| RoundError::UnknownSink {
            route: route.name.clone(),
            sink: name.clone(),
        })?;
        let delivered = match sink {
            AnySink::Folder(s) => s.stage(&delivery, &mut staged.files).await,
            other => other.deliver(&delivery).await,
        };
        let accepted = match delivered {
            Ok(accepted) => accepted,
            Err(source) => {
                let class = source.class();
                let error = RoundError::Sink {
                    folder: folder.to_owned(),
                    message: shown.clone(),
                    route: route.name.clone(),
                    sink: name.clone(),
                    source,
                };
                let Refusal::Park { attempts } =
                    parking.refused(delivery.key.as_str(), name, class)
                else {
                    return Err(error);
                };
                // The sinks before this one accepted it: their staged files are made
                // durable before the row says only the others remain.
                staged
                    .commit(round)
                    .await
                    .map_err(|source| RoundError::Commit {
                        folder: folder.to_owned(),
                        source,
                    })?;
                // The spool still holds the message (the sinks only read it).
                let mime = tokio::fs::read(spool).await.map_err(spool_error)?;
                let new = NewParked {
                    account: round.account_id,
                    account_name: round.account.to_owned(),
                    folder: folder.to_owned(),
                    source_id: source_id.clone(),
                    message_ref: message_ref_json(message),
                    idempotency_key: delivery.key.as_str().to_owned(),
                    route: route.name.clone(),
                    remaining_sinks: route.sinks.get(i..).unwrap_or_default().to_vec(),
                    source_action: serde_json::to_value(&route.then)
                        .unwrap_or(serde_json::Value::Null),
                    message: mime,
                    attempts,
                    error: mailbridge_types::error_chain(&error),
                    error_class: class.as_str().to_owned(),
                    next_attempt_at: first_retry(round.park_backoff, class),
                };
                let parked = store
                    .parked_park(new, round.max_message_size)
                    .await
                    .map_err(|source| RoundError::Park {
                        folder: folder.to_owned(),
                        message: shown.clone(),
                        source,
                    })?;
                tracing::warn!(
                    account = round.account,
                    folder,
                    source_message = %shown,
                    key = %delivery.key,
                    sink = name.as_str(),
                    parked = %parked.entry.id,
                    attempts,
                    error = %mailbridge_types::error_chain(&error),
                    "parked: the sink did not accept the message; the parked delivery worker retries it"
                );
                return Ok(Outcome::Parked);
            }
        };
        parking.accepted(name);
        if matches!(sink, AnySink::Folder(_)) && !accepted.already_there {
            // Told once it is in place (the batch's commit).
            staged.placed.push(Placed {
                message: shown.clone(),
                key: delivery.key.to_string(),
                sink: name.clone(),
                location: accepted.location,
            });
        } else {
            tracing::info!(
                account = round.account,
                folder,
                source_message = %shown,
                key = %delivery.key,
                sink = name.as_str(),
                location = accepted.location.as_str(),
                already_there = accepted.already_there,
                "delivered"
            );
        }
    }
    Ok(Outcome::Delivered {
        key: delivery.key.as_str().to_owned(),
        then: route.then.clone(),
    })
}

/// A message staged into a folder sink, told as delivered once its batch is committed.
struct Placed {
    message: String,
    key: String,
    sink: String,
    location: String,
}

/// What a batch staged into folder sinks, and what to tell once it is in place.
#[derive(Default)]
struct Staged {
    files: folder::Batch,
    placed: Vec<Placed>,
}

impl Staged {
    /// Commits the staged files ([`folder::Batch::commit`]), then logs each message
    /// as delivered.
    async fn commit(&mut self, round: &Round<'_>) -> Result<(), SinkError> {
        let result = self.files.commit().await;
        for p in self.placed.drain(..) {
            if result.is_ok() {
                tracing::info!(
                    account = round.account,
                    folder = round.folder,
                    source_message = %p.message,
                    key = %p.key,
                    sink = p.sink.as_str(),
                    location = p.location.as_str(),
                    already_there = false,
                    "delivered"
                );
            }
        }
        result
    }
}

/// When a message parked now is retried first: after the backoff's first wait,
/// never before the sink's `Retry-After`.
fn first_retry(backoff: Backoff, class: ErrorClass) -> OffsetDateTime {
    let retry_after = match class {
        ErrorClass::Throttled { retry_after } => retry_after,
        _ => None,
    };
    OffsetDateTime::now_utc() + backoff.wait(0, super::state::jitter_unit(), retry_after)
}

/// A writer that refuses more than `limit` bytes.
struct Bounded<W> {
    inner: W,
    written: u64,
    limit: u64,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Bounded<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.written.saturating_add(buf.len() as u64) > self.limit {
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!(
                    "the message is larger than limits.max_message_size ({} bytes)",
                    self.limit
                ),
            )));
        }
        let this = &mut *self;
        let n = std::task::ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.written += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Creates a spool file that is new: a file of that name left behind (the watcher was
/// killed before removing it) may be a folder sink's placed message now (the sinks
/// link spool files into place), so it is unlinked, never truncated.
fn create_new_blocking(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    match options.open(path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path)?;
            options.open(path)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spool_file_left_behind_is_replaced_never_truncated() {
        // A killed watcher left a spool file a folder sink had linked into place.
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("batch.0.part");
        let placed = dir.path().join("placed.eml");
        std::fs::write(&spool, b"delivered").unwrap();
        std::fs::hard_link(&spool, &placed).unwrap();
        let mut file = create_new_blocking(&spool).unwrap();
        std::io::Write::write_all(&mut file, b"next").unwrap();
        assert_eq!(std::fs::read(&placed).unwrap(), b"delivered");
        assert_eq!(std::fs::read(&spool).unwrap(), b"next");
    }

    #[tokio::test]
    async fn the_spool_refuses_more_than_the_limit() {
        let mut b = Bounded {
            inner: Vec::new(),
            written: 0,
            limit: 10,
        };
        b.write_all(b"0123456789").await.unwrap();
        let e = b.write_all(b"x").await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::FileTooLarge);
        assert_eq!(b.inner, b"0123456789");
    }

    #[test]
    fn imap_checkpoints_move_per_message_others_per_listing() {
        assert_eq!(
            up_to(&MessageRef::Imap {
                uid_validity: 7,
                uid: 42
            }),
            Some(Checkpoint::Imap {
                uid_validity: 7,
                last_uid: 42
            })
        );
        assert_eq!(up_to(&MessageRef::Graph { id: "AAMk".into() }), None);
    }

    /// A Graph-like source (one checkpoint per listing): messages by id, fetches that
    /// fail for the ids in `broken`, source actions recorded (an id in `gone` answers
    /// "not found").
    #[derive(Default)]
    struct Scripted {
        ids: Vec<&'static str>,
        broken: Vec<&'static str>,
        gone: Vec<&'static str>,
        marked: Vec<MessageRef>,
    }

    fn id_of(message: &MessageRef) -> String {
        message.transport_id().into_owned()
    }

    impl FetchMany for Scripted {}

    impl Mailbox for Scripted {
        async fn new_since(
            &mut self,
            _folder: &str,
            _checkpoint: &Checkpoint,
        ) -> Result<mailbridge_mailbox::mailbox::NewMessages, MailboxError> {
            Ok(mailbridge_mailbox::mailbox::NewMessages {
                messages: self
                    .ids
                    .iter()
                    .map(|id| MessageRef::Graph { id: (*id).into() })
                    .collect(),
                checkpoint: Checkpoint::Graph {
                    delta_link: "delta-1".into(),
                },
                resynced: false,
            })
        }
        async fn received_since(
            &mut self,
            _folder: &str,
            _since: OffsetDateTime,
        ) -> Result<mailbridge_mailbox::mailbox::NewMessages, MailboxError> {
            unreachable!("not listed by date in these tests")
        }
        async fn fetch<W: AsyncWrite + Unpin + Send>(
            &mut self,
            message: &MessageRef,
            sink: &mut W,
        ) -> Result<u64, MailboxError> {
            let id = id_of(message);
            if self.broken.contains(&id.as_str()) {
                return Err(MailboxError::new(
                    ErrorClass::Transient,
                    mailbridge_mailbox::mailbox::ErrorKind::Connection,
                    "the connection to Graph failed",
                ));
            }
            let mime = format!("Subject: {id}\r\nMessage-ID: <{id}@example.org>\r\n\r\nbody\r\n");
            sink.write_all(mime.as_bytes()).await.unwrap();
            Ok(mime.len() as u64)
        }
        async fn mark_read(&mut self, message: &MessageRef) -> Result<(), MailboxError> {
            if self.gone.contains(&id_of(message).as_str()) {
                return Err(MailboxError::new(
                    ErrorClass::Permanent,
                    mailbridge_mailbox::mailbox::ErrorKind::NotFound,
                    "no such message",
                ));
            }
            self.marked.push(message.clone());
            Ok(())
        }
        async fn move_to(&mut self, _message: &MessageRef, _to: &str) -> Result<(), MailboxError> {
            unreachable!("no move in these tests")
        }
        async fn delete(&mut self, _message: &MessageRef) -> Result<(), MailboxError> {
            unreachable!("no delete in these tests")
        }
    }

    #[tokio::test]
    async fn refused_messages_are_parked_source_failures_never_and_actions_wait_for_delivery() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("db.sqlite"),
            &mailbridge_store::MasterKey::generate().unwrap(),
        )
        .await
        .unwrap();
        let account_id = store.outbox_account_id("alice").await.unwrap();
        let spool = dir.path().join("spool");
        let round = Round {
            account_id,
            account: "alice",
            folder: "Inbox",
            spool_dir: &spool,
            max_message_size: 1 << 20,
            batch: 1,
            batch_bytes: 1 << 20,
            park_backoff: Backoff::DELIVERY,
            on_message: None,
            mime_link: None,
        };
        // A webhook on loopback without permission: refused as misconfigured, before
        // any connection.
        let mut sinks = SinkSet::new();
        sinks.insert(
            "hook",
            AnySink::Webhook(Box::new(
                WebhookSink::new(mailbridge_sinks::webhook::WebhookConfig::new(
                    "http://127.0.0.1:9/hook".parse().unwrap(),
                    secrecy::SecretString::from("s"),
                ))
                .unwrap(),
            )),
        );
        let routes = [Route {
            name: "all".into(),
            when: mailbridge_sinks::route::Conditions::default(),
            sinks: vec!["hook".into()],
            then: SourceAction::MarkRead,
        }];
        let mut parking = Parking::new(3);
        let cancel = CancellationToken::new();
        let mut mailbox = Scripted {
            ids: vec!["a", "b"],
            broken: vec!["b"],
            ..Scripted::default()
        };
        let key = watch_checkpoint_key("Inbox");

        // "a" is parked at once (the sink cannot work as configured); the fetch of "b"
        // fails: the source's failure ends the round and is not parked.
        let e = deliver_round(
            &mut mailbox,
            &round,
            &routes,
            &sinks,
            &store,
            &mut parking,
            &cancel,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, RoundError::Fetch { .. }), "{e:?}");
        assert!(e.source_error().is_some());
        let rows = store.parked_list(None, None, 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].source_id, "a");
        assert_eq!(rows[0].error_class, "misconfigured");
        assert_eq!(rows[0].remaining_sinks, ["hook"]);
        assert_eq!(rows[0].attempts, 1);
        assert!(parking.is_down("hook"));
        let stored: Option<Checkpoint> = store.checkpoint_by_id(account_id, &key).await.unwrap();
        assert_eq!(
            stored, None,
            "a listing's checkpoint waits for the whole round"
        );

        // Next round: "a" is listed again but parked already (passed, not parked
        // twice); "b" now fetches, fails on the down sink, and is parked at once.
        mailbox.broken.clear();
        let summary = deliver_round(
            &mut mailbox,
            &round,
            &routes,
            &sinks,
            &store,
            &mut parking,
            &cancel,
        )
        .await
        .unwrap();
        assert_eq!(
            (
                summary.listed,
                summary.parked_before,
                summary.parked,
                summary.delivered
            ),
            (2, 1, 1, 0)
        );
        assert_eq!(store.parked_count(None).await.unwrap(), 2);
        let stored: Option<Checkpoint> = store.checkpoint_by_id(account_id, &key).await.unwrap();
        assert!(matches!(stored, Some(Checkpoint::Graph { .. })));
        assert!(
            mailbox.marked.is_empty(),
            "no source action before delivery"
        );

        // Both delivered by a worker; "b" vanished from the source meanwhile.
        for _ in 0..2 {
            let c = store
                .parked_claim_due(
                    "w",
                    OffsetDateTime::now_utc() + Backoff::DELIVERY.cap,
                    Backoff::DELIVERY.cap,
                )
                .await
                .unwrap()
                .unwrap();
            assert!(
                store
                    .parked_mark_delivered(c.entry.id, "w", OffsetDateTime::now_utc(), true)
                    .await
                    .unwrap()
            );
        }
        mailbox.gone.push("b");
        mailbox.ids.clear();
        let summary = deliver_round(
            &mut mailbox,
            &round,
            &routes,
            &sinks,
            &store,
            &mut parking,
            &cancel,
        )
        .await
        .unwrap();
        assert_eq!(summary.source_actions, 1);
        assert_eq!(mailbox.marked, [MessageRef::Graph { id: "a".into() }]);
        assert!(store.parked_list(None, None, 10).await.unwrap().is_empty());
    }

    /// An IMAP-like source (a checkpoint per message): UIDs 1..=n under UIDVALIDITY 1,
    /// one subject each, bodies of `body` bytes; fetched one by one without their
    /// sizes announced (the default `fetch_many`), each fetch recorded.
    struct Uids {
        subjects: Vec<String>,
        body: usize,
        fetched: Vec<u32>,
    }

    impl Uids {
        fn new(subjects: &[&str], body: usize) -> Self {
            Self {
                subjects: subjects.iter().map(|s| (*s).to_owned()).collect(),
                body,
                fetched: Vec::new(),
            }
        }
    }

    impl FetchMany for Uids {}

    impl Mailbox for Uids {
        async fn new_since(
            &mut self,
            _folder: &str,
            checkpoint: &Checkpoint,
        ) -> Result<mailbridge_mailbox::mailbox::NewMessages, MailboxError> {
            let after = match checkpoint {
                Checkpoint::Imap { last_uid, .. } => *last_uid,
                _ => 0,
            };
            let last = u32::try_from(self.subjects.len()).unwrap();
            Ok(mailbridge_mailbox::mailbox::NewMessages {
                messages: (after + 1..=last)
                    .map(|uid| MessageRef::Imap {
                        uid_validity: 1,
                        uid,
                    })
                    .collect(),
                checkpoint: Checkpoint::Imap {
                    uid_validity: 1,
                    last_uid: last.max(after),
                },
                resynced: false,
            })
        }
        async fn received_since(
            &mut self,
            _folder: &str,
            _since: OffsetDateTime,
        ) -> Result<mailbridge_mailbox::mailbox::NewMessages, MailboxError> {
            unreachable!("not listed by date in these tests")
        }
        async fn fetch<W: AsyncWrite + Unpin + Send>(
            &mut self,
            message: &MessageRef,
            sink: &mut W,
        ) -> Result<u64, MailboxError> {
            let MessageRef::Imap { uid, .. } = message else {
                unreachable!("only IMAP references are listed")
            };
            self.fetched.push(*uid);
            let subject = &self.subjects[usize::try_from(*uid).unwrap() - 1];
            let mut mime = format!("Subject: {subject}\r\nMessage-ID: <{uid}@example.org>\r\n\r\n")
                .into_bytes();
            mime.resize(mime.len() + self.body, b'x');
            sink.write_all(&mime).await.map_err(|e| {
                MailboxError::with_source(
                    ErrorClass::Transient,
                    mailbridge_mailbox::mailbox::ErrorKind::Sink,
                    "the spool refused",
                    e,
                )
            })?;
            Ok(mime.len() as u64)
        }
        async fn mark_read(&mut self, _message: &MessageRef) -> Result<(), MailboxError> {
            Ok(())
        }
        async fn move_to(&mut self, _message: &MessageRef, _to: &str) -> Result<(), MailboxError> {
            unreachable!("no move in these tests")
        }
        async fn delete(&mut self, _message: &MessageRef) -> Result<(), MailboxError> {
            unreachable!("no delete in these tests")
        }
    }

    /// A store, a folder sink `files` and the round's parts, in `dir`.
    struct Setup {
        store: Store,
        account_id: AccountId,
        spool: PathBuf,
        out: PathBuf,
        sinks: SinkSet,
    }

    async fn setup(dir: &Path) -> Setup {
        let store = Store::open(
            &dir.join("db.sqlite"),
            &mailbridge_store::MasterKey::generate().unwrap(),
        )
        .await
        .unwrap();
        let account_id = store.outbox_account_id("alice").await.unwrap();
        let out = dir.join("out");
        let mut sinks = SinkSet::new();
        sinks.insert(
            "files",
            AnySink::Folder(FolderSink::open(&out).await.unwrap()),
        );
        Setup {
            store,
            account_id,
            spool: dir.join("spool"),
            out,
            sinks,
        }
    }

    impl Setup {
        fn round(&self, batch: usize, batch_bytes: u64) -> Round<'_> {
            Round {
                account_id: self.account_id,
                account: "alice",
                folder: "INBOX",
                spool_dir: &self.spool,
                max_message_size: 1 << 20,
                batch,
                batch_bytes,
                park_backoff: Backoff::DELIVERY,
                on_message: None,
                mime_link: None,
            }
        }

        /// The `.eml` files of the folder sink, and what the temporary directory holds.
        fn files(&self) -> (Vec<String>, usize) {
            let mut names: Vec<String> = std::fs::read_dir(&self.out)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect();
            names.sort();
            let tmp = std::fs::read_dir(self.out.join(folder::TMP_DIR))
                .unwrap()
                .count();
            (names, tmp)
        }

        async fn checkpoint(&self) -> Option<Checkpoint> {
            self.store
                .checkpoint_by_id(self.account_id, &watch_checkpoint_key("INBOX"))
                .await
                .unwrap()
        }
    }

    fn all_to(sink: &str) -> Route {
        Route {
            name: format!("all-{sink}"),
            when: mailbridge_sinks::route::Conditions::default(),
            sinks: vec![sink.into()],
            then: SourceAction::MarkRead,
        }
    }

    #[tokio::test]
    async fn a_refused_message_in_a_batch_holds_the_checkpoint_and_the_others_get_through() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = setup(dir.path()).await;
        // A webhook nobody listens on (a port just closed): refused as transient.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", closed.local_addr().unwrap());
        drop(closed);
        let mut config = mailbridge_sinks::webhook::WebhookConfig::new(
            url.parse().unwrap(),
            secrecy::SecretString::from("s"),
        );
        config.addresses = mailbridge_sinks::address::AddressPolicy::AllowPrivate;
        w.sinks.insert(
            "hook",
            AnySink::Webhook(Box::new(WebhookSink::new(config).unwrap())),
        );
        let mut to_hook: Route = all_to("hook");
        to_hook.when = serde_json::from_value(serde_json::json!({"subject": "hook*"})).unwrap();
        let routes = [to_hook, all_to("files")];
        let mut mailbox = Uids::new(&["m1", "m2", "hook3", "m4", "m5"], 10);
        let mut parking = Parking::new(2);
        let cancel = CancellationToken::new();
        let round = w.round(5, 1 << 20);

        // One batch of five: the third is refused (first time: retried). The two
        // before it are in the folder and the checkpoint covers them, not it.
        let e = deliver_round(
            &mut mailbox,
            &round,
            &routes,
            &w.sinks,
            &w.store,
            &mut parking,
            &cancel,
        )
        .await
        .unwrap_err();
        assert!(matches!(e, RoundError::Sink { .. }), "{e:?}");
        assert_eq!(mailbox.fetched, [1, 2, 3, 4, 5], "one fetch for the batch");
        let mut expected = vec![format!("{}.eml", key(&w, 1)), format!("{}.eml", key(&w, 2))];
        expected.sort();
        assert_eq!(w.files(), (expected, 0));
        assert_eq!(
            w.checkpoint().await,
            Some(Checkpoint::Imap {
                uid_validity: 1,
                last_uid: 2
            })
        );

        // Next round: refused again, now parked; the two after it are delivered and
        // the checkpoint passes all three.
        let summary = deliver_round(
            &mut mailbox,
            &round,
            &routes,
            &w.sinks,
            &w.store,
            &mut parking,
            &cancel,
        )
        .await
        .unwrap();
        assert_eq!(
            (
                summary.listed,
                summary.parked,
                summary.delivered,
                summary.batches
            ),
            (3, 1, 2, 1)
        );
        let (files, tmp) = w.files();
        assert_eq!((files.len(), tmp), (4, 0));
        let rows = w.store.parked_list(None, None, 10).await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].source_id, "3");
        assert_eq!(rows[0].remaining_sinks, ["hook"]);
        assert_eq!(
            w.checkpoint().await,
            Some(Checkpoint::Imap {
                uid_validity: 1,
                last_uid: 5
            })
        );
    }

    fn key(w: &Setup, uid: u32) -> IdempotencyKey {
        IdempotencyKey::new(
            &w.account_id.to_string(),
            "INBOX",
            &uid.to_string(),
            Some(&format!("{uid}@example.org")),
        )
    }

    #[tokio::test]
    async fn a_crash_after_a_batch_and_before_its_checkpoint_adds_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let w = setup(dir.path()).await;
        let routes = [all_to("files")];
        let mut mailbox = Uids::new(&["a", "b", "c", "d", "e"], 100);
        let mut parking = Parking::new(2);
        let cancel = CancellationToken::new();
        let round = w.round(3, 1 << 20);
        deliver_round(
            &mut mailbox,
            &round,
            &routes,
            &w.sinks,
            &w.store,
            &mut parking,
            &cancel,
        )
        .await
        .unwrap();
        let (files, _) = w.files();
        assert_eq!(files.len(), 5);
        let inode = |uid| {
            use std::os::unix::fs::MetadataExt as _;
            std::fs::metadata(w.out.join(format!("{}.eml", key(&w, uid))))
                .unwrap()
                .ino()
        };
        let before: Vec<u64> = (1..=5).map(inode).collect();

        // The process died after the files were placed, before the checkpoint of the
        // batch was stored: the last stored one is the first batch's.
        w.store
            .set_checkpoint_by_id(
                w.account_id,
                &watch_checkpoint_key("INBOX"),
                &Checkpoint::Imap {
                    uid_validity: 1,
                    last_uid: 3,
                },
            )
            .await
            .unwrap();
        mailbox.fetched.clear();
        let summary = deliver_round(
            &mut mailbox,
            &round,
            &routes,
            &w.sinks,
            &w.store,
            &mut parking,
            &cancel,
        )
        .await
        .unwrap();
        assert_eq!(mailbox.fetched, [4, 5], "the batch is delivered again");
        assert_eq!(summary.delivered, 2);
        let (after, tmp) = w.files();
        assert_eq!((after, tmp), (files, 0), "nothing added");
        assert_eq!(
            (1..=5).map(inode).collect::<Vec<_>>(),
            before,
            "nothing replaced"
        );
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_byte_bound_and_the_next_takes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let w = setup(dir.path()).await;
        let routes = [all_to("files")];
        let subjects: Vec<String> = (1..=7).map(|i| format!("big {i}")).collect();
        let subjects: Vec<&str> = subjects.iter().map(String::as_str).collect();
        let body = 100_000;
        let mut mailbox = Uids::new(&subjects, body);
        let mut parking = Parking::new(2);
        let cancel = CancellationToken::new();
        let budget = 250_000;
        let round = w.round(200, budget);
        let summary = deliver_round(
            &mut mailbox,
            &round,
            &routes,
            &w.sinks,
            &w.store,
            &mut parking,
            &cancel,
        )
        .await
        .unwrap();
        // Sizes not announced: a batch takes messages until it holds the bound, so
        // three each (300 KB), then the last one.
        assert_eq!((summary.delivered, summary.batches), (7, 3));
        assert!(
            summary.batch_bytes_peak < budget + u64::try_from(body).unwrap() + 100,
            "{}",
            summary.batch_bytes_peak
        );
        assert_eq!(
            mailbox.fetched,
            (1..=7).collect::<Vec<_>>(),
            "each fetched once"
        );
        let mut expected: Vec<String> = (1..=7).map(|u| format!("{}.eml", key(&w, u))).collect();
        expected.sort();
        assert_eq!(w.files(), (expected, 0));
        assert_eq!(
            std::fs::read_dir(&w.spool).unwrap().count(),
            0,
            "the spool is empty after the round"
        );

        // One message larger than the bound is a batch of its own.
        let mut big = Uids::new(&["huge", "small"], 300_000);
        w.store
            .set_checkpoint_by_id(
                w.account_id,
                &watch_checkpoint_key("INBOX"),
                &Checkpoint::Start,
            )
            .await
            .unwrap();
        let summary = deliver_round(
            &mut big,
            &w.round(200, 200_000),
            &routes,
            &w.sinks,
            &w.store,
            &mut parking,
            &cancel,
        )
        .await
        .unwrap();
        assert_eq!((summary.delivered, summary.batches), (2, 2));
        assert_eq!(big.fetched, [1, 2]);
    }

    #[test]
    fn a_route_naming_a_missing_sink_is_found() {
        let route = |name: &str, sinks: &[&str]| Route {
            name: name.into(),
            when: mailbridge_sinks::route::Conditions::default(),
            sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
            then: SourceAction::Keep,
        };
        let set = SinkSet::new();
        assert_eq!(
            set.missing(&[route("a", &[]), route("b", &["hook"])]),
            Some(("b", "hook"))
        );
        assert_eq!(set.missing(&[route("a", &[])]), None);
    }
}
