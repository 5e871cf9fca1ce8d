//! The parked delivery worker: retries the messages watchers parked
//! ([`mailbridge_store::parked`]) until every sink of their route accepted them.
//!
//! The worker claims one due row at a time under a lease (so two instances sharing a
//! PostgreSQL store never retry the same row at once), writes its MIME to a spool
//! file, and hands it to each sink that has not accepted it yet (the account's sinks
//! come from a lookup the caller passes: the same [`SinkSet`] its watcher uses),
//! under the message's idempotency key. Then:
//! - every remaining sink accepted: the row is removed, or, when the route has a
//!   source action, marked delivered for the account's watcher to do the action;
//! - some refused: the sinks that accepted are not asked again; the row is retried
//!   after [`Backoff::DELIVERY`]'s wait for its attempt (with jitter, never before a
//!   `Retry-After`), however often it fails: a parked message is never dropped
//!   except by a person ([`ParkedHandle::drop`]);
//! - a sink whose outcome is unknown (it may have the message): the row waits for a
//!   person ([`ParkedHandle::retry_now`] or drop) instead of being sent again by itself.
//!
//! [`ParkedHandle::retry_now`] makes a row due at once and wakes the worker. Between
//! rows the worker sleeps until the next one is due (at most
//! [`ParkedSettings::poll_interval`], to see rows parked by other instances), so it
//! never spins.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mailbridge_mailbox::mailbox::MessageRef;
use mailbridge_sinks::route::SourceAction;
use mailbridge_sinks::{Delivery, IdempotencyKey};
use mailbridge_store::parked::{ClaimedParked, ParkedId};
use mailbridge_store::{AccountId, Store, StoreError};
use mailbridge_types::backoff::Backoff;
use mailbridge_types::{Clock, ErrorClass};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::watcher::SinkSet;

/// The sinks of an account (`None`: the account has none, or is not known here).
pub type SinkLookup = Arc<dyn Fn(AccountId) -> Option<Arc<SinkSet>> + Send + Sync>;

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct ParkedSettings {
    /// This worker's name in claims (`claimed_by`): unique per running instance.
    pub instance: String,
    /// How long a claim lasts: longer than the slowest delivery to every sink of a
    /// route (a row whose claim ended is retried by another worker).
    pub lease: Duration,
    /// The wait between retries of a row.
    pub backoff: Backoff,
    /// How often to look for rows parked by other instances while nothing is due.
    pub poll_interval: Duration,
    /// Where a retried message is spooled while its sinks read it.
    pub spool_dir: PathBuf,
    /// Where a webhook's receiver fetches a message too large to travel inline.
    pub mime_link: Option<crate::watcher::pipeline::MimeLink>,
}

impl ParkedSettings {
    /// The usual settings, spooling in `spool_dir`.
    pub fn new(spool_dir: PathBuf) -> Self {
        Self {
            instance: format!("mailbridge-{}", std::process::id()),
            lease: Duration::from_mins(10),
            backoff: Backoff::DELIVERY,
            poll_interval: Duration::from_secs(30),
            spool_dir,
            mime_link: None,
        }
    }
}

/// What a retry did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParkedOutcome {
    /// Every remaining sink accepted it; the row is gone, or waits for its source
    /// action (`source_action_pending`).
    Delivered {
        id: ParkedId,
        source_action_pending: bool,
    },
    /// Some sinks refused: retried at `at`.
    Retrying {
        id: ParkedId,
        at: OffsetDateTime,
        remaining: Vec<String>,
        error: String,
    },
    /// The row was dropped, or its claim handed on, while it was being retried:
    /// nothing was recorded.
    ClaimLost { id: ParkedId },
}

/// The worker's own failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParkedError {
    #[error("the parked deliveries' store failed")]
    Store(#[from] StoreError),
}

/// Retry on demand and drop, for the API: wakes the worker.
#[derive(Debug, Clone)]
pub struct ParkedHandle {
    store: Store,
    wake: Arc<Notify>,
}

impl ParkedHandle {
    /// Makes the row due now and wakes the worker; false when no row with this id is
    /// parked (delivered or dropped meanwhile).
    pub async fn retry_now(&self, id: ParkedId) -> Result<bool, StoreError> {
        let found = self.store.parked_retry_now(id).await?;
        if found {
            self.wake.notify_one();
        }
        Ok(found)
    }

    /// Removes the row: the message is not delivered to its remaining sinks. False
    /// when there was none.
    pub async fn drop(&self, id: ParkedId) -> Result<bool, StoreError> {
        self.store.parked_drop(id).await
    }
}

/// The parked delivery worker.
pub struct ParkedWorker {
    store: Store,
    sinks: SinkLookup,
    settings: ParkedSettings,
    clock: Arc<dyn Clock>,
    jitter: Arc<dyn Fn() -> f64 + Send + Sync>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for ParkedWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkedWorker")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ParkedWorker {
    /// A worker over `store`'s parked deliveries, delivering through the sinks
    /// `sinks` gives for each account.
    pub fn new(store: Store, sinks: SinkLookup, settings: ParkedSettings) -> Self {
        Self {
            store,
            sinks,
            settings,
            clock: Arc::new(mailbridge_types::SystemClock),
            jitter: Arc::new(rand::random::<f64>),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Uses `clock` for "now" (tests move it past a retry time).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Uses `jitter` (a number in `[0, 1)`) for the backoff's randomness.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Arc<dyn Fn() -> f64 + Send + Sync>) -> Self {
        self.jitter = jitter;
        self
    }

    /// Retry on demand and drop, waking this worker.
    pub fn handle(&self) -> ParkedHandle {
        ParkedHandle {
            store: self.store.clone(),
            wake: self.wake.clone(),
        }
    }

    /// Claims the next due row and retries it; `None` when nothing is due.
    pub async fn retry_next(&self) -> Result<Option<ParkedOutcome>, ParkedError> {
        let Some(claimed) = self
            .store
            .parked_claim_due(
                &self.settings.instance,
                self.clock.now(),
                self.settings.lease,
            )
            .await?
        else {
            return Ok(None);
        };
        let id = claimed.entry.id;
        let (remaining, failure) = self.deliver(&claimed).await;
        let instance = &self.settings.instance;
        let Some((error, class)) = failure else {
            let pending = serde_json::from_value::<SourceAction>(claimed.entry.source_action)
                .map_or(true, |a| a != SourceAction::Keep);
            if !self
                .store
                .parked_mark_delivered(id, instance, self.clock.now(), pending)
                .await?
            {
                return Ok(Some(ParkedOutcome::ClaimLost { id }));
            }
            tracing::info!(
                account = claimed.entry.account_name.as_str(),
                parked = %id,
                key = claimed.entry.idempotency_key.as_str(),
                source_action_pending = pending,
                "parked message delivered"
            );
            return Ok(Some(ParkedOutcome::Delivered {
                id,
                source_action_pending: pending,
            }));
        };
        let at = self.next_attempt(&claimed, class);
        if !self
            .store
            .parked_record_failure(id, instance, at, &error, class.as_str(), &remaining)
            .await?
        {
            return Ok(Some(ParkedOutcome::ClaimLost { id }));
        }
        tracing::warn!(
            account = claimed.entry.account_name.as_str(),
            parked = %id,
            key = claimed.entry.idempotency_key.as_str(),
            remaining = ?remaining,
            retry_at = %at,
            error = error.as_str(),
            "parked message still refused"
        );
        Ok(Some(ParkedOutcome::Retrying {
            id,
            at,
            remaining,
            error,
        }))
    }

    /// Retries until nothing is due or `cancel` is cancelled; what each retry did.
    pub async fn retry_due(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Vec<ParkedOutcome>, ParkedError> {
        let mut done = Vec::new();
        while !cancel.is_cancelled() {
            match self.retry_next().await? {
                Some(outcome) => done.push(outcome),
                None => break,
            }
        }
        Ok(done)
    }

    /// The daemon's loop: retries what is due, then sleeps until the next row is due
    /// (at most the poll interval) or [`ParkedHandle::retry_now`] wakes it, until
    /// `cancel` is cancelled. A store failure is logged and tried again after the
    /// poll interval.
    pub async fn run(&self, cancel: CancellationToken) {
        while !cancel.is_cancelled() {
            let mut wait = self.settings.poll_interval;
            match self.retry_due(&cancel).await {
                Ok(_) => match self.store.parked_next_due().await {
                    Ok(Some(due)) => {
                        let until = (due - self.clock.now()).max(time::Duration::ZERO);
                        // Whole seconds in the store: a row due "now" may still be a
                        // second away for the claim; never spin on it.
                        wait = wait.min(until.unsigned_abs().max(Duration::from_millis(200)));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(error = %mailbridge_types::error_chain(&e), "parked delivery worker: the store failed");
                    }
                },
                Err(e) => {
                    tracing::error!(error = %mailbridge_types::error_chain(&e), "parked delivery worker: the store failed");
                }
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Hands `claimed` to each of its remaining sinks: those that still refuse, and
    /// the last refusal (its text and class) if any.
    async fn deliver(
        &self,
        claimed: &ClaimedParked,
    ) -> (Vec<String>, Option<(String, ErrorClass)>) {
        let entry = &claimed.entry;
        let refuse_all = |error: String, class: ErrorClass| {
            (entry.remaining_sinks.clone(), Some((error, class)))
        };
        let Some(key) = IdempotencyKey::parse(&entry.idempotency_key) else {
            return refuse_all(
                format!(
                    "the stored idempotency key {:?} cannot be read: drop the parked delivery and deliver the message again from its source",
                    entry.idempotency_key
                ),
                ErrorClass::Permanent,
            );
        };
        let Some(sinks) = (self.sinks)(entry.account) else {
            return refuse_all(
                format!(
                    "account {} has no sinks configured here: configure its routes and sinks again, or drop the parked delivery",
                    entry.account_name
                ),
                ErrorClass::Misconfigured,
            );
        };
        let spool = self
            .settings
            .spool_dir
            .join(format!("parked-{}.eml", entry.id));
        let written = async {
            tokio::fs::create_dir_all(&self.settings.spool_dir).await?;
            tokio::fs::write(&spool, &claimed.message).await
        }
        .await;
        if let Err(e) = written {
            return refuse_all(
                format!(
                    "failed to spool the parked message at {}: {e}; check the spool directory's space and permissions",
                    spool.display()
                ),
                ErrorClass::Transient,
            );
        }
        let delivery = Delivery {
            key,
            account: entry.account_name.clone(),
            folder: entry.folder.clone(),
            source_id: entry.source_id.clone(),
            spool: spool.clone(),
            mime_link: self.settings.mime_link.as_ref().and_then(|link| {
                message_ref_from_json(&entry.message_ref)
                    .and_then(|m| (link.0)(entry.account, &entry.folder, &m))
            }),
        };
        let mut remaining = Vec::new();
        let mut last = None;
        for name in &entry.remaining_sinks {
            let Some(sink) = sinks.get(name) else {
                remaining.push(name.clone());
                last = Some((
                    format!(
                        "the sink {name} of route {} is not configured any more: add it back, or drop the parked delivery",
                        entry.route
                    ),
                    ErrorClass::Misconfigured,
                ));
                continue;
            };
            match sink.deliver(&delivery).await {
                Ok(accepted) => tracing::info!(
                    account = entry.account_name.as_str(),
                    parked = %entry.id,
                    key = %delivery.key,
                    sink = name.as_str(),
                    location = accepted.location.as_str(),
                    already_there = accepted.already_there,
                    "parked message delivered to a sink"
                ),
                Err(e) => {
                    remaining.push(name.clone());
                    last = Some((
                        format!("sink {name}: {}", mailbridge_types::error_chain(&e)),
                        e.class(),
                    ));
                }
            }
        }
        // The spool is only a buffer: a file left behind is overwritten next time.
        let _ = tokio::fs::remove_file(&spool).await;
        (remaining, last)
    }

    /// When a refused row is retried: after the backoff's wait for its attempt, never
    /// before a `Retry-After`; an unknown outcome waits for a person.
    fn next_attempt(&self, claimed: &ClaimedParked, class: ErrorClass) -> OffsetDateTime {
        let now = self.clock.now();
        if class == ErrorClass::OutcomeUnknown {
            // Resending could deliver twice: only a person's retry brings it back.
            return now + Duration::from_hours(24 * 365 * 100);
        }
        let retry_after = match class {
            ErrorClass::Throttled { retry_after } => retry_after,
            _ => None,
        };
        let wait = self
            .settings
            .backoff
            .wait(claimed.entry.attempts, (self.jitter)(), retry_after);
        // The store keeps whole seconds: rounded up, never before the wait.
        let at = now + wait;
        if at.nanosecond() == 0 {
            at
        } else {
            at.replace_nanosecond(0).unwrap_or(at) + Duration::from_secs(1)
        }
    }
}

/// `message` as a parked row keeps it (`{"imap": {"uid_validity": 7, "uid": 42}}`,
/// `{"graph": {"id": ...}}`, `{"ews": {"id": ...}}`, `{"pop3": {"uidl": ...}}`).
pub fn message_ref_json(message: &MessageRef) -> serde_json::Value {
    match message {
        MessageRef::Imap { uid_validity, uid } => {
            serde_json::json!({"imap": {"uid_validity": uid_validity, "uid": uid}})
        }
        MessageRef::Graph { id } => serde_json::json!({"graph": {"id": id}}),
        MessageRef::Ews { id } => serde_json::json!({"ews": {"id": id}}),
        MessageRef::Pop3 { uidl } => serde_json::json!({"pop3": {"uidl": uidl}}),
        other => serde_json::json!({"other": other.to_string()}),
    }
}

/// The message a parked row names, as [`message_ref_json`] wrote it; `None` when it
/// cannot be read.
pub fn message_ref_from_json(value: &serde_json::Value) -> Option<MessageRef> {
    let text = |v: &serde_json::Value, field: &str| v.get(field)?.as_str().map(str::to_owned);
    if let Some(imap) = value.get("imap") {
        let number = |field: &str| u32::try_from(imap.get(field)?.as_u64()?).ok();
        return Some(MessageRef::Imap {
            uid_validity: number("uid_validity")?,
            uid: number("uid")?,
        });
    }
    if let Some(graph) = value.get("graph") {
        return Some(MessageRef::Graph {
            id: text(graph, "id")?,
        });
    }
    if let Some(ews) = value.get("ews") {
        return Some(MessageRef::Ews {
            id: text(ews, "id")?,
        });
    }
    let pop3 = value.get("pop3")?;
    Some(MessageRef::Pop3 {
        uidl: text(pop3, "uidl")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use mailbridge_sinks::folder::FolderSink;
    use mailbridge_sinks::relay::{RelayConfig, RelaySink};
    use mailbridge_sinks::webhook::{WebhookConfig, WebhookSink};
    use mailbridge_store::NewParked;
    use mailbridge_testkit::hostile::{HostileServer, Step};

    use crate::watcher::AnySink;

    async fn store(dir: &std::path::Path) -> (Store, AccountId) {
        let store = Store::open(
            &dir.join("db.sqlite"),
            &mailbridge_store::MasterKey::generate().unwrap(),
        )
        .await
        .unwrap();
        let account = store.outbox_account_id("alice").await.unwrap();
        (store, account)
    }

    async fn park(store: &Store, account: AccountId, uid: u32, sinks: &[&str]) -> ParkedId {
        let key = IdempotencyKey::new(&account.to_string(), "INBOX", &uid.to_string(), None);
        store
            .parked_park(
                NewParked {
                    account,
                    account_name: "alice".into(),
                    folder: "INBOX".into(),
                    source_id: uid.to_string(),
                    message_ref: message_ref_json(&MessageRef::Imap {
                        uid_validity: 1,
                        uid,
                    }),
                    idempotency_key: key.as_str().to_owned(),
                    route: "all".into(),
                    remaining_sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
                    source_action: serde_json::json!({"action": "keep"}),
                    message: format!(
                        "From: a@example.org\r\nTo: b@example.org\r\nSubject: {uid}\r\n\r\nbody\r\n"
                    )
                    .into_bytes(),
                    attempts: 1,
                    error: "refused".into(),
                    error_class: "transient".into(),
                    next_attempt_at: store.now(),
                },
                1 << 20,
            )
            .await
            .unwrap()
            .entry
            .id
    }

    fn worker(store: &Store, dir: &std::path::Path, sinks: Option<Arc<SinkSet>>) -> ParkedWorker {
        let mut settings = ParkedSettings::new(dir.join("spool"));
        settings.backoff = Backoff::DELIVERY;
        ParkedWorker::new(store.clone(), Arc::new(move |_| sinks.clone()), settings)
            .with_jitter(Arc::new(|| 0.0))
    }

    #[tokio::test]
    async fn accepting_sinks_are_taken_off_and_refusing_ones_wait_their_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let (store, account) = store(dir.path()).await;
        let out = dir.path().join("out");
        let mut sinks = SinkSet::new();
        sinks.insert(
            "folder",
            AnySink::Folder(FolderSink::open(&out).await.unwrap()),
        );
        // Loopback without permission: refused before any connection.
        sinks.insert(
            "hook",
            AnySink::Webhook(Box::new(
                WebhookSink::new(WebhookConfig::new(
                    "http://127.0.0.1:9/hook".parse().unwrap(),
                    secrecy::SecretString::from("s"),
                ))
                .unwrap(),
            )),
        );
        let id = park(&store, account, 1, &["folder", "gone", "hook"]).await;
        let w = worker(&store, dir.path(), Some(Arc::new(sinks)));
        let before = OffsetDateTime::now_utc();
        let Some(ParkedOutcome::Retrying {
            at,
            remaining,
            error,
            ..
        }) = w.retry_next().await.unwrap()
        else {
            panic!("not retrying");
        };
        // The folder took it; the sink no longer configured and the refusing hook
        // remain; the wait is the backoff's for the second attempt.
        assert_eq!(remaining, ["gone", "hook"]);
        assert!(error.starts_with("sink hook: "), "{error}");
        assert!(at >= before + Backoff::DELIVERY.floor, "{at}");
        let eml = std::fs::read_dir(&out)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "eml")
            })
            .count();
        assert_eq!(eml, 1, "the folder has it once");
        let row = store.parked_get(id).await.unwrap().unwrap();
        assert_eq!(row.attempts, 2);
        assert_eq!(row.error_class, "misconfigured");
        assert_eq!(row.claimed_by, None);
        assert!(w.retry_next().await.unwrap().is_none(), "not due yet");
        assert!(
            std::fs::read_dir(dir.path().join("spool"))
                .unwrap()
                .next()
                .is_none(),
            "the spool is emptied"
        );

        // An account without sinks here: misconfigured, kept, retried later.
        let other = park(&store, account, 2, &["folder"]).await;
        let lost = worker(&store, dir.path(), None);
        let Some(ParkedOutcome::Retrying { id, error, .. }) = lost.retry_next().await.unwrap()
        else {
            panic!("not retrying");
        };
        assert_eq!(id, other);
        assert!(error.contains("no sinks configured"), "{error}");
        assert_eq!(store.parked_count(None).await.unwrap(), 2);
    }

    #[tokio::test]
    async fn a_relay_whose_outcome_is_unknown_waits_for_a_person() {
        let dir = tempfile::tempdir().unwrap();
        let (store, account) = store(dir.path()).await;
        // The relay takes the message and closes without answering the final dot.
        let relay = HostileServer::start(vec![
            Step::Send(b"220 relay ESMTP\r\n".to_vec()),
            Step::ReadLine,
            Step::Send(b"250 relay\r\n".to_vec()),
            Step::ReadLine,
            Step::Send(b"250 2.1.0 Ok\r\n".to_vec()),
            Step::ReadLine,
            Step::Send(b"250 2.1.5 Ok\r\n".to_vec()),
            Step::ReadLine,
            Step::Send(b"354 go on\r\n".to_vec()),
            Step::ReadUntil(b".\r\n".to_vec()),
            Step::Close,
        ])
        .await;
        let mut sinks = SinkSet::new();
        sinks.insert(
            "relay",
            AnySink::Relay(Box::new(RelaySink::new(RelayConfig::new(
                mailbridge_smtp::SmtpConfig::new(
                    "127.0.0.1",
                    relay.port(),
                    mailbridge_smtp::TlsMode::None,
                ),
            )))),
        );
        let id = park(&store, account, 1, &["relay"]).await;
        let w = worker(&store, dir.path(), Some(Arc::new(sinks)));
        let Some(ParkedOutcome::Retrying { at, error, .. }) = w.retry_next().await.unwrap() else {
            panic!("not retrying");
        };
        assert!(
            at > OffsetDateTime::now_utc() + Duration::from_hours(24 * 365),
            "{at}"
        );
        assert!(error.starts_with("sink relay: "), "{error}");
        let row = store.parked_get(id).await.unwrap().unwrap();
        assert_eq!(row.error_class, "outcome-unknown");
        assert_eq!(relay.connections(), 1);
        // A person's retry makes it due again.
        assert!(w.handle().retry_now(id).await.unwrap());
        assert!(
            store
                .parked_claim_due("x", OffsetDateTime::now_utc(), Duration::from_mins(1))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn message_references_round_trip() {
        for m in [
            MessageRef::Imap {
                uid_validity: 7,
                uid: 42,
            },
            MessageRef::Graph { id: "AAMk=".into() },
            MessageRef::Ews { id: "AQMk".into() },
            MessageRef::Pop3 {
                uidl: "000001 2".into(),
            },
        ] {
            assert_eq!(message_ref_from_json(&message_ref_json(&m)), Some(m));
        }
        for bad in [
            serde_json::json!({"imap": {"uid": 1}}),
            serde_json::json!({"imap": {"uid_validity": 1, "uid": 4_294_967_296_u64}}),
            serde_json::json!({"graph": {"id": 5}}),
            serde_json::json!(null),
            serde_json::json!({"other": "x"}),
        ] {
            assert_eq!(message_ref_from_json(&bad), None, "{bad}");
        }
    }
}
