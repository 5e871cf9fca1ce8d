//! The outbox's sender against real Postfix/Dovecot and the emulated tenant: a message
//! queued while the SMTP side cannot be reached is retried and sent once it can, in
//! the order of submission per account; a 5xx refusal fails with the server's reason;
//! Graph throttling (429 + Retry-After) is retried later and sent once. Time is an
//! injectable clock: no test waits for a retry time to pass. Sessions: a run of
//! messages of one account goes over one SMTP session (counted by a proxy in front of
//! Postfix), a session cut between two messages is reopened once, a drop after the end
//! of DATA is outcome-unknown, and interleaved accounts keep one session each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailbridge_connector::outbox::{
    OutboxSettings, OutboxWorker, Outcome, OutgoingSide, OutgoingSides, SentCopy,
};
use mailbridge_mailbox::connect::Identity;
use mailbridge_mailbox::mailbox::{ErrorKind, MailboxError};
use mailbridge_mailbox::send::SenderSignIn;
use mailbridge_store::{AccountId, MasterKey, NewOutboxMessage, OutboxState, Store};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{AppRegistration, MailboxRight, Tenant, TenantModel, User};
use mailbridge_testkit::tokens::Resource;
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::config::{EndpointConfig, TlsMode, Transport};
use mailbridge_types::{Clock as _, ErrorClass, OffsetClock};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

const ALICE: &str = "alice@contoso.example";
const BOB: &str = "bob@contoso.example";

struct World {
    emulator: Emulator,
    server: EmulatorServer,
    mail: MailServers,
    app: AppRegistration,
    _dir: tempfile::TempDir,
    ca_file: std::path::PathBuf,
    store: Store,
    clock: Arc<OffsetClock>,
}

async fn world() -> World {
    let app = AppRegistration::new("Connector").consented();
    let sp = app.service_principal_id.to_string();
    let tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", "pw"))
        .with_user(User::new(BOB, "Bob", "pw"))
        .with_app(app.clone())
        .with_exchange_service_principal(&app)
        .with_mailbox_permission(ALICE, &sp, MailboxRight::FullAccess);
    let emulator = Emulator::new(TenantModel::builder().tenant(tenant).build().unwrap()).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, mail.ca_pem()).unwrap();
    let clock = Arc::new(OffsetClock::new());
    let store = Store::open(
        &dir.path().join("mailbridge.db"),
        &MasterKey::generate().unwrap(),
    )
    .await
    .unwrap()
    .with_clock(clock.clone());
    World {
        emulator,
        server,
        mail,
        app,
        _dir: dir,
        ca_file,
        store,
        clock,
    }
}

/// Each account's outgoing side; the SMTP port can be changed while the test runs.
struct Sides {
    smtp_port: Mutex<u16>,
    /// Accounts that send through another SMTP port than `smtp_port`.
    account_ports: Mutex<HashMap<AccountId, u16>>,
    /// How many times an account was looked up.
    lookups: AtomicUsize,
    ca_file: std::path::PathBuf,
    tls_name: String,
    graph_root: String,
    smtp_token: SecretString,
    graph_token: SecretString,
    graph_account: Mutex<Option<AccountId>>,
    /// The folder of Alice's IMAP side that keeps a copy of what goes out over SMTP.
    sent_folder: Mutex<Option<String>>,
    imap_port: u16,
    imap_token: SecretString,
}

impl OutgoingSides for Sides {
    async fn outgoing(&self, account: AccountId) -> Result<OutgoingSide, MailboxError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let smtp_port = match self.account_ports.lock().unwrap().get(&account) {
            Some(port) => *port,
            None => *self.smtp_port.lock().unwrap(),
        };
        let who = Identity {
            account: "alice".into(),
            address: ALICE.into(),
            login: ALICE.into(),
            graph_user: ALICE.into(),
        };
        let graph = *self.graph_account.lock().unwrap() == Some(account);
        let (endpoint, token) = if graph {
            (
                EndpointConfig {
                    transport: Transport::Graph,
                    host: self.graph_root.clone(),
                    port: None,
                    tls: None,
                    tls_name: None,
                    extra_ca_file: None,
                    tls_pin: None,
                },
                self.graph_token.clone(),
            )
        } else {
            (
                EndpointConfig {
                    transport: Transport::Smtp,
                    host: "127.0.0.1".into(),
                    port: Some(smtp_port),
                    tls: Some(TlsMode::StartTls),
                    tls_name: Some(self.tls_name.clone()),
                    extra_ca_file: Some(self.ca_file.clone()),
                    tls_pin: None,
                },
                self.smtp_token.clone(),
            )
        };
        let sent_copy = match (graph, self.sent_folder.lock().unwrap().clone()) {
            (false, Some(folder)) => Some(SentCopy {
                account: serde_json::from_value(serde_json::json!({
                    "name": "alice",
                    "address": ALICE,
                    "sign_in": "app-only",
                    "app": "connector",
                    "transports": ["imap", "smtp"],
                    "incoming": {
                        "transport": "imap",
                        "host": "127.0.0.1",
                        "port": self.imap_port,
                        "tls": "starttls",
                        "tls_name": self.tls_name,
                        "extra_ca_file": self.ca_file,
                    },
                }))
                .unwrap(),
                folder,
                sign_in: SenderSignIn::AppOnly(mailbridge_auth::source::fixed(
                    self.imap_token.clone(),
                )),
            }),
            _ => None,
        };
        Ok(OutgoingSide {
            endpoint,
            who,
            sign_in: SenderSignIn::AppOnly(mailbridge_auth::source::fixed(token)),
            max_message_size: 10 * 1024 * 1024,
            sent_copy,
        })
    }
}

impl World {
    fn sides(&self, smtp_port: u16) -> Arc<Sides> {
        Arc::new(Sides {
            smtp_port: Mutex::new(smtp_port),
            account_ports: Mutex::default(),
            lookups: AtomicUsize::new(0),
            ca_file: self.ca_file.clone(),
            tls_name: self.mail.tls_name().to_owned(),
            graph_root: format!("{}/v1.0", self.server.base_url()),
            smtp_token: SecretString::from(self.emulator.app_token(
                &self.app,
                Resource::exchange(),
                &["SMTP.SendAsApp"],
            )),
            graph_token: SecretString::from(self.emulator.app_token(
                &self.app,
                Resource::graph(),
                &["Mail.Send"],
            )),
            graph_account: Mutex::new(None),
            sent_folder: Mutex::new(None),
            imap_port: self.mail.imap().port(),
            imap_token: SecretString::from(self.emulator.app_token(
                &self.app,
                Resource::exchange(),
                &["IMAP.AccessAsApp"],
            )),
        })
    }

    fn worker(&self, sides: Arc<Sides>) -> OutboxWorker<Arc<Sides>> {
        OutboxWorker::new(
            self.store.clone(),
            sides,
            OutboxSettings {
                instance: "test".into(),
                ..OutboxSettings::default()
            },
        )
        .with_clock(self.clock.clone())
        .with_jitter(Arc::new(|| 0.0))
    }

    fn message(account: AccountId, subject: &str, key: Option<&str>) -> NewOutboxMessage {
        NewOutboxMessage {
            account,
            idempotency_key: key.map(str::to_owned),
            message: format!(
                "From: Alice <{ALICE}>\r\nTo: {BOB}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@contoso.example>\r\n\r\n{subject}\r\n"
            )
            .into_bytes(),
            mail_from: None,
            recipients: Vec::new(),
        }
    }

    /// How many messages with `subject` are in Bob's inbox now.
    async fn count(&self, subject: &str) -> usize {
        let needle = format!("Subject: {subject}\r\n");
        self.mail
            .mail_store()
            .list(BOB, "INBOX")
            .await
            .unwrap()
            .iter()
            .filter(|m| {
                m.header
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
            })
            .count()
    }

    /// Waits (with a deadline) until `subject` is in Bob's inbox; then it is there once.
    async fn arrived_once(&self, subject: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.count(subject).await == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{subject:?} did not arrive\n{}",
                self.mail.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(self.count(subject).await, 1, "{subject:?} arrived twice");
    }
}

fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn queued_while_smtp_is_unreachable_is_sent_once_later_in_order() {
    let w = world().await;
    let alice = w.store.outbox_account_id("alice").await.unwrap();
    let sides = w.sides(closed_port());
    let worker = w.worker(sides.clone());
    let cancel = CancellationToken::new();
    let first = w
        .store
        .outbox_enqueue(World::message(alice, "outbox first", Some("k-1")), u64::MAX)
        .await
        .unwrap();
    let second = w
        .store
        .outbox_enqueue(World::message(alice, "outbox second", None), u64::MAX)
        .await
        .unwrap();
    // Submitting the first again (same key) queues nothing.
    let again = w
        .store
        .outbox_enqueue(World::message(alice, "outbox first", Some("k-1")), u64::MAX)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.entry.id, first.entry.id);

    // Unreachable: the first is retrying, the second waits behind it.
    let before = w.clock.now();
    let done = worker.send_pending(&cancel).await.unwrap();
    assert_eq!(done.len(), 1, "{done:?}");
    let Outcome::Retrying { id, at, error } = &done[0] else {
        panic!("{done:?}");
    };
    assert_eq!(*id, first.entry.id);
    assert!(*at >= before + Duration::from_secs(5), "{at}");
    assert_eq!(w.store.outbox_next_due().await.unwrap(), Some(*at));
    assert!(!error.is_empty());
    let row = w.store.outbox_get(first.entry.id).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Retrying);
    assert_eq!(row.error_class.as_deref(), Some("transient"), "{row:?}");
    let waiting = w.store.outbox_get(second.entry.id).await.unwrap().unwrap();
    assert_eq!(waiting.state, OutboxState::Queued);

    // Reachable again, but not due yet: nothing is sent.
    *sides.smtp_port.lock().unwrap() = w.mail.submission().port();
    assert!(worker.send_pending(&cancel).await.unwrap().is_empty());
    // Due: both go, first then second, once each.
    w.clock.advance(time::Duration::minutes(1));
    let done = worker.send_pending(&cancel).await.unwrap();
    let ids: Vec<_> = done.iter().map(Outcome::id).collect();
    assert_eq!(ids, [first.entry.id, second.entry.id], "{done:?}");
    assert!(
        done.iter().all(|o| matches!(o, Outcome::Sent { .. })),
        "{done:?}"
    );
    let row = w.store.outbox_get(first.entry.id).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Sent);
    assert_eq!(row.attempts, 2);
    assert!(row.server_reply.is_some());
    w.arrived_once("outbox first").await;
    w.arrived_once("outbox second").await;
    // Nothing left to send, nothing sent twice.
    assert!(worker.send_pending(&cancel).await.unwrap().is_empty());
    assert!(w.store.outbox_next_due().await.unwrap().is_none());
}

#[tokio::test]
async fn a_message_sent_over_smtp_gets_its_copy_in_the_sent_folder_once() {
    let w = world().await;
    let alice = w.store.outbox_account_id("alice").await.unwrap();
    let sides = w.sides(w.mail.submission().port());
    *sides.sent_folder.lock().unwrap() = Some("Sent Items".into());
    let worker = w.worker(sides.clone());
    let cancel = CancellationToken::new();
    w.store
        .outbox_enqueue(World::message(alice, "kept in sent", None), u64::MAX)
        .await
        .unwrap();
    let done = worker.send_pending(&cancel).await.unwrap();
    assert!(matches!(done[..], [Outcome::Sent { .. }]), "{done:?}");
    w.arrived_once("kept in sent").await;
    let copies: Vec<_> = w
        .mail
        .mail_store()
        .list(ALICE, "Sent Items")
        .await
        .unwrap()
        .into_iter()
        .filter(|m| String::from_utf8_lossy(&m.header).contains("Subject: kept in sent\r\n"))
        .collect();
    assert_eq!(copies.len(), 1, "one copy in Alice's Sent Items");

    // A folder that does not exist: the message is still sent once (and logged), never
    // resent because its copy failed.
    *sides.sent_folder.lock().unwrap() = Some("No Such Folder".into());
    w.store
        .outbox_enqueue(World::message(alice, "copy fails", None), u64::MAX)
        .await
        .unwrap();
    let done = worker.send_pending(&cancel).await.unwrap();
    assert!(matches!(done[..], [Outcome::Sent { .. }]), "{done:?}");
    w.arrived_once("copy fails").await;
    assert!(worker.send_pending(&cancel).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_5xx_refusal_fails_with_the_reason_and_the_account_goes_on() {
    let w = world().await;
    let alice = w.store.outbox_account_id("alice").await.unwrap();
    let worker = w.worker(w.sides(w.mail.submission().port()));
    let mut refused = World::message(alice, "outbox refused", None);
    refused.recipients = vec!["carol@-bad-.example".into()];
    let refused = w.store.outbox_enqueue(refused, u64::MAX).await.unwrap();
    let after = w
        .store
        .outbox_enqueue(
            World::message(alice, "outbox after refusal", None),
            u64::MAX,
        )
        .await
        .unwrap();
    let done = worker
        .send_pending(&CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.len(), 2, "{done:?}");
    let Outcome::Failed { id, error } = &done[0] else {
        panic!("{done:?}");
    };
    assert_eq!(*id, refused.entry.id);
    assert!(error.contains("5.1.3"), "{error}");
    let row = w.store.outbox_get(refused.entry.id).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Failed);
    assert_eq!(row.error_class.as_deref(), Some("permanent"));
    assert!(row.last_error.unwrap().contains("carol@-bad-.example"));
    assert_eq!(row.attempts, 1, "a permanent refusal is not retried");
    assert!(matches!(&done[1], Outcome::Sent { id, .. } if *id == after.entry.id));
    w.arrived_once("outbox after refusal").await;
    assert_eq!(w.count("outbox refused").await, 0);
}

#[tokio::test]
async fn graph_throttling_is_retried_after_retry_after_and_sent_once() {
    let w = world().await;
    let alice = w.store.outbox_account_id("alice").await.unwrap();
    let sides = w.sides(closed_port());
    *sides.graph_account.lock().unwrap() = Some(alice);
    let worker = w.worker(sides);
    let cancel = CancellationToken::new();
    // Graph answers 429 with Retry-After: 1 until the test stops it (the client's own
    // retries give up; the outbox keeps the message).
    w.emulator.update_knobs(|k| {
        k.faults.graph_429 = 1000;
        k.graph_retry_after_secs = 1;
    });
    let queued = w
        .store
        .outbox_enqueue(World::message(alice, "outbox throttled", None), u64::MAX)
        .await
        .unwrap();
    let before = w.clock.now();
    let done = worker.send_pending(&cancel).await.unwrap();
    let [Outcome::Retrying { id, at, .. }] = done.as_slice() else {
        panic!("{done:?}");
    };
    assert_eq!(*id, queued.entry.id);
    assert!(*at >= before + Duration::from_secs(1));
    let row = w.store.outbox_get(queued.entry.id).await.unwrap().unwrap();
    assert_eq!(row.error_class.as_deref(), Some("throttled"), "{row:?}");
    let throttled = w
        .emulator
        .requests()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert!(throttled >= 1);
    w.emulator.update_knobs(|k| k.faults.graph_429 = 0);
    // Not due yet: Graph is not asked again.
    let asked = w.emulator.requests().len();
    assert!(worker.send_pending(&cancel).await.unwrap().is_empty());
    assert_eq!(w.emulator.requests().len(), asked);
    w.clock.advance(time::Duration::minutes(2));
    let done = worker.send_pending(&cancel).await.unwrap();
    assert!(
        matches!(done.as_slice(), [Outcome::Sent { .. }]),
        "{done:?}"
    );
    let sends = w
        .emulator
        .requests()
        .iter()
        .filter(|r| r.uri.contains("sendMail") && r.status / 100 == 2)
        .count();
    assert_eq!(sends, 1, "sent once");
    w.arrived_once("outbox throttled").await;
}

/// An outgoing side that cannot be had: `outgoing` answers with the error given.
struct Refusing(ErrorClass);

impl OutgoingSides for Refusing {
    async fn outgoing(&self, _: AccountId) -> Result<OutgoingSide, MailboxError> {
        Err(MailboxError::new(
            self.0,
            ErrorKind::of_class(self.0),
            format!("refused as {}: the fix for it", self.0.as_str()),
        ))
    }
}

async fn sqlite_store() -> (tempfile::TempDir, Store, Arc<OffsetClock>, AccountId) {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(OffsetClock::new());
    let store = Store::open(
        &dir.path().join("mailbridge.db"),
        &MasterKey::generate().unwrap(),
    )
    .await
    .unwrap()
    .with_clock(clock.clone());
    let account = store.outbox_account_id("alice").await.unwrap();
    (dir, store, clock, account)
}

fn plain(account: AccountId) -> NewOutboxMessage {
    NewOutboxMessage {
        account,
        idempotency_key: None,
        message: b"From: a@example.org\r\nTo: b@example.org\r\nSubject: s\r\n\r\nx\r\n".to_vec(),
        mail_from: None,
        recipients: Vec::new(),
    }
}

fn refusing_worker(
    store: &Store,
    clock: &Arc<OffsetClock>,
    class: ErrorClass,
) -> OutboxWorker<Refusing> {
    OutboxWorker::new(
        store.clone(),
        Refusing(class),
        OutboxSettings {
            instance: "test".into(),
            deadline: Duration::from_hours(1),
            ..OutboxSettings::default()
        },
    )
    .with_clock(clock.clone())
    .with_jitter(Arc::new(|| 0.0))
}

#[tokio::test]
async fn retry_after_longer_than_the_backoff_is_waited_for() {
    let (_dir, store, clock, account) = sqlite_store().await;
    let id = store
        .outbox_enqueue(plain(account), u64::MAX)
        .await
        .unwrap()
        .entry
        .id;
    let worker = refusing_worker(
        &store,
        &clock,
        ErrorClass::Throttled {
            retry_after: Some(Duration::from_mins(10)),
        },
    );
    let before = clock.now();
    let done = worker
        .send_pending(&CancellationToken::new())
        .await
        .unwrap();
    let [Outcome::Retrying { at, .. }] = done.as_slice() else {
        panic!("{done:?}");
    };
    // The backoff alone (jitter 0) would wait 5 s; the server asked for 600.
    assert!(*at >= before + Duration::from_mins(10), "{at}");
    assert!(
        *at <= clock.now() + Duration::from_mins(10) + Duration::from_secs(1),
        "{at}"
    );
    clock.advance(time::Duration::seconds(599));
    assert!(
        worker
            .send_pending(&CancellationToken::new())
            .await
            .unwrap()
            .is_empty()
    );
    clock.advance(time::Duration::seconds(2));
    let done = worker
        .send_pending(&CancellationToken::new())
        .await
        .unwrap();
    assert!(
        matches!(done.as_slice(), [Outcome::Retrying { .. }]),
        "{done:?}"
    );
    assert_eq!(store.outbox_get(id).await.unwrap().unwrap().attempts, 2);
}

#[tokio::test]
async fn a_transient_failure_past_the_deadline_fails_naming_it() {
    let (_dir, store, clock, account) = sqlite_store().await;
    let id = store
        .outbox_enqueue(plain(account), u64::MAX)
        .await
        .unwrap()
        .entry
        .id;
    let worker = refusing_worker(&store, &clock, ErrorClass::Transient);
    let cancel = CancellationToken::new();
    let done = worker.send_pending(&cancel).await.unwrap();
    assert!(
        matches!(done.as_slice(), [Outcome::Retrying { .. }]),
        "{done:?}"
    );
    clock.advance(time::Duration::hours(1));
    let done = worker.send_pending(&cancel).await.unwrap();
    let [Outcome::Failed { error, .. }] = done.as_slice() else {
        panic!("{done:?}");
    };
    assert!(
        error.contains("still failing 1 h after it was queued (2 attempts)"),
        "{error}"
    );
    assert!(error.contains("refused as transient"), "{error}");
    let row = store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Failed);
    clock.advance(time::Duration::hours(10));
    assert!(worker.send_pending(&cancel).await.unwrap().is_empty());
}

#[tokio::test]
async fn outcome_unknown_is_never_resent_and_others_fail_with_their_fix() {
    for (class, state) in [
        (ErrorClass::OutcomeUnknown, OutboxState::OutcomeUnknown),
        (ErrorClass::NeedsAdmin, OutboxState::Failed),
        (ErrorClass::Misconfigured, OutboxState::Failed),
        (ErrorClass::Permanent, OutboxState::Failed),
    ] {
        let (_dir, store, clock, account) = sqlite_store().await;
        let id = store
            .outbox_enqueue(plain(account), u64::MAX)
            .await
            .unwrap()
            .entry
            .id;
        let worker = refusing_worker(&store, &clock, class);
        let cancel = CancellationToken::new();
        assert_eq!(worker.send_pending(&cancel).await.unwrap().len(), 1);
        let row = store.outbox_get(id).await.unwrap().unwrap();
        assert_eq!(row.state, state, "{class}");
        assert_eq!(row.error_class.as_deref(), Some(class.as_str()));
        assert!(
            row.last_error.unwrap().contains("the fix for it"),
            "{class}"
        );
        clock.advance(time::Duration::days(2));
        assert!(
            worker.send_pending(&cancel).await.unwrap().is_empty(),
            "{class}"
        );
        assert_eq!(store.outbox_get(id).await.unwrap().unwrap().attempts, 1);
    }
}

#[tokio::test]
async fn a_cancelled_worker_takes_nothing() {
    let (_dir, store, clock, account) = sqlite_store().await;
    let id = store
        .outbox_enqueue(plain(account), u64::MAX)
        .await
        .unwrap()
        .entry
        .id;
    let worker = refusing_worker(&store, &clock, ErrorClass::Permanent);
    let cancel = CancellationToken::new();
    cancel.cancel();
    assert!(worker.send_pending(&cancel).await.unwrap().is_empty());
    worker.run(cancel).await.unwrap();
    assert_eq!(
        store.outbox_get(id).await.unwrap().unwrap().state,
        OutboxState::Queued
    );
}

/// Answers only once `release` is notified, with a permanent refusal.
struct Slow {
    release: Arc<tokio::sync::Notify>,
}

impl OutgoingSides for Slow {
    async fn outgoing(&self, _: AccountId) -> Result<OutgoingSide, MailboxError> {
        self.release.notified().await;
        Err(MailboxError::new(
            ErrorClass::Permanent,
            ErrorKind::ServerRefused,
            "refused after a long wait",
        ))
    }
}

#[tokio::test]
async fn a_long_send_renews_its_lease() {
    let (_dir, store, clock, account) = sqlite_store().await;
    let id = store
        .outbox_enqueue(plain(account), u64::MAX)
        .await
        .unwrap()
        .entry
        .id;
    let release = Arc::new(tokio::sync::Notify::new());
    let worker = OutboxWorker::new(
        store.clone(),
        Slow {
            release: release.clone(),
        },
        OutboxSettings {
            instance: "slow".into(),
            lease: Duration::from_secs(3),
            ..OutboxSettings::default()
        },
    )
    .with_clock(clock.clone());
    let task = tokio::spawn(async move { worker.send_next().await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let first_until = loop {
        let row = store.outbox_get(id).await.unwrap().unwrap();
        if row.state == OutboxState::Sending {
            break row.claim_until.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not claimed: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The sender's clock moves past the first lease while it is still sending: the
    // lease is renewed from the new time (checked with a deadline, not a sleep).
    clock.advance(time::Duration::hours(1));
    assert!(first_until < clock.now());
    loop {
        let row = store.outbox_get(id).await.unwrap().unwrap();
        if row.state == OutboxState::Sending && row.claim_until.is_some_and(|u| u >= clock.now()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not renewed: {row:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another sender finds nothing to take, nor declares it lost.
    assert!(
        store
            .outbox_claim_next("other", clock.now(), Duration::from_secs(3))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.outbox_get(id).await.unwrap().unwrap().state,
        OutboxState::Sending
    );
    release.notify_one();
    let outcome = task.await.unwrap().unwrap().unwrap();
    assert!(matches!(outcome, Outcome::Failed { .. }), "{outcome:?}");
}

/// A TCP proxy in front of Postfix's submission port: counts the connections it
/// accepted and cuts every open one (both directions at once) on demand, as a server
/// that drops an idle session does.
struct Proxy {
    port: u16,
    accepted: Arc<AtomicUsize>,
    open: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    listener: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let open: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (count, tasks) = (accepted.clone(), open.clone());
        let listener = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                tasks.lock().unwrap().push(tokio::spawn(async move {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }));
            }
        });
        Self {
            port,
            accepted,
            open,
            listener,
        }
    }

    /// Connections accepted so far.
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Closes every open connection now (both sockets dropped); how many were still
    /// open.
    async fn cut(&self) -> usize {
        let tasks = std::mem::take(&mut *self.open.lock().unwrap());
        let mut live = 0;
        for t in tasks {
            if !t.is_finished() {
                live += 1;
            }
            t.abort();
            let _ = t.await;
        }
        live
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.listener.abort();
        for t in self.open.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[tokio::test]
async fn a_run_of_messages_of_one_account_goes_over_one_smtp_session() {
    let w = world().await;
    let alice = w.store.outbox_account_id("alice").await.unwrap();
    let proxy = Proxy::start(w.mail.submission()).await;
    let sides = w.sides(proxy.port);
    let worker = w.worker(sides.clone());
    let cancel = CancellationToken::new();
    let mut queued = Vec::new();
    for i in 0..8 {
        let subject = format!("run {i}");
        let entry = w
            .store
            .outbox_enqueue(World::message(alice, &subject, None), u64::MAX)
            .await
            .unwrap();
        queued.push(entry.entry.id);
    }
    let done = worker.send_pending(&cancel).await.unwrap();
    let ids: Vec<_> = done.iter().map(Outcome::id).collect();
    assert_eq!(ids, queued, "in order of submission: {done:?}");
    assert!(
        done.iter().all(|o| matches!(o, Outcome::Sent { .. })),
        "{done:?}"
    );
    assert_eq!(
        proxy.accepted(),
        1,
        "one SMTP session for the run\n{}",
        w.mail.logs()
    );
    assert_eq!(sides.lookups.load(Ordering::SeqCst), 1, "looked up once");
    for i in 0..8 {
        w.arrived_once(&format!("run {i}")).await;
    }

    // The pass closed its session: the next pass looks the account up again (it may
    // have changed) and opens a new one.
    w.store
        .outbox_enqueue(World::message(alice, "next pass", None), u64::MAX)
        .await
        .unwrap();
    let done = worker.send_pending(&cancel).await.unwrap();
    assert!(matches!(done[..], [Outcome::Sent { .. }]), "{done:?}");
    assert_eq!(proxy.accepted(), 2);
    assert_eq!(sides.lookups.load(Ordering::SeqCst), 2);
    w.arrived_once("next pass").await;
}

#[tokio::test]
async fn a_session_cut_between_two_messages_is_reopened_and_the_second_is_sent_once() {
    let w = world().await;
    let alice = w.store.outbox_account_id("alice").await.unwrap();
    let proxy = Proxy::start(w.mail.submission()).await;
    let worker = w.worker(w.sides(proxy.port));
    let first = w
        .store
        .outbox_enqueue(World::message(alice, "before the cut", None), u64::MAX)
        .await
        .unwrap()
        .entry
        .id;
    let second = w
        .store
        .outbox_enqueue(World::message(alice, "after the cut", None), u64::MAX)
        .await
        .unwrap()
        .entry
        .id;
    let done = worker.send_next().await.unwrap();
    assert!(
        matches!(&done, Some(Outcome::Sent { id, .. }) if *id == first),
        "{done:?}"
    );
    assert_eq!(proxy.accepted(), 1);
    // The server side goes away while the session waits for the next message (it
    // was kept open for it).
    assert_eq!(proxy.cut().await, 1, "the session was kept open");
    let done = worker.send_next().await.unwrap();
    assert!(
        matches!(&done, Some(Outcome::Sent { id, .. }) if *id == second),
        "sent on a new session, not put off: {done:?}\n{}",
        w.mail.logs()
    );
    assert_eq!(proxy.accepted(), 2, "exactly one new session");
    let row = w.store.outbox_get(second).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Sent);
    assert_eq!(row.attempts, 1, "sent at its first attempt");
    assert!(worker.send_next().await.unwrap().is_none());
    w.arrived_once("before the cut").await;
    w.arrived_once("after the cut").await;
}

/// An SMTP relay without TLS or sign-in at `port` (a scripted server).
struct PlainSmtp {
    port: u16,
}

impl OutgoingSides for PlainSmtp {
    async fn outgoing(&self, _: AccountId) -> Result<OutgoingSide, MailboxError> {
        Ok(OutgoingSide {
            endpoint: EndpointConfig {
                transport: Transport::Smtp,
                host: "127.0.0.1".into(),
                port: Some(self.port),
                tls: Some(TlsMode::None),
                tls_name: None,
                extra_ca_file: None,
                tls_pin: None,
            },
            who: Identity::address("a@example.org"),
            sign_in: SenderSignIn::None,
            max_message_size: 10 * 1024 * 1024,
            sent_copy: None,
        })
    }
}

#[tokio::test]
async fn a_drop_after_the_end_of_data_on_a_reused_session_is_outcome_unknown() {
    use mailbridge_testkit::hostile::{HostileServer, Step};
    let (_dir, store, clock, account) = sqlite_store().await;
    // Takes the first message of a session, then hangs up after the second one's
    // final "." without a reply: the server may have it.
    let transaction = |end: Step| {
        vec![
            Step::ReadLine,
            Step::Send(b"250 2.1.0 ok\r\n".to_vec()),
            Step::ReadLine,
            Step::Send(b"250 2.1.5 ok\r\n".to_vec()),
            Step::ReadLine,
            Step::Send(b"354 go ahead\r\n".to_vec()),
            Step::ReadUntil(b".\r\n".to_vec()),
            end,
        ]
    };
    let mut script = vec![
        Step::Send(b"220 mx ready\r\n".to_vec()),
        Step::ReadLine,
        Step::Send(b"250-mx\r\n250 8BITMIME\r\n".to_vec()),
    ];
    script.extend(transaction(Step::Send(b"250 2.0.0 queued\r\n".to_vec())));
    script.extend(transaction(Step::Close));
    let server = HostileServer::start(script).await;
    let worker = OutboxWorker::new(
        store.clone(),
        PlainSmtp {
            port: server.port(),
        },
        OutboxSettings {
            instance: "test".into(),
            ..OutboxSettings::default()
        },
    )
    .with_clock(clock.clone())
    .with_jitter(Arc::new(|| 0.0));
    let queue = |subject: &str| NewOutboxMessage {
        account,
        idempotency_key: None,
        message: format!(
            "From: a@example.org\r\nTo: b@example.org\r\nSubject: {subject}\r\n\r\nx\r\n"
        )
        .into_bytes(),
        mail_from: None,
        recipients: Vec::new(),
    };
    let first = store
        .outbox_enqueue(queue("taken"), u64::MAX)
        .await
        .unwrap();
    let second = store
        .outbox_enqueue(queue("maybe taken"), u64::MAX)
        .await
        .unwrap();
    let done = worker
        .send_pending(&CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done.len(), 2, "{done:?}");
    assert!(
        matches!(&done[0], Outcome::Sent { id, .. } if *id == first.entry.id),
        "{done:?}"
    );
    assert!(
        matches!(&done[1], Outcome::OutcomeUnknown { id, .. } if *id == second.entry.id),
        "{done:?}"
    );
    assert_eq!(server.connections(), 1, "not sent again on a new session");
    let row = store.outbox_get(second.entry.id).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::OutcomeUnknown);
    // Never resent by the worker.
    clock.advance(time::Duration::hours(1));
    assert!(
        worker
            .send_pending(&CancellationToken::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(server.connections(), 1);
    assert!(server.wait_ended(1, Duration::from_secs(20)).await);
    assert_eq!(
        server
            .received_text()
            .matches("Subject: maybe taken\r\n")
            .count(),
        1
    );
}

#[tokio::test]
async fn two_accounts_interleaved_each_keep_their_own_session() {
    let w = world().await;
    let alice = w.store.outbox_account_id("alice").await.unwrap();
    let other = w.store.outbox_account_id("alice-too").await.unwrap();
    let (one, two) = (
        Proxy::start(w.mail.submission()).await,
        Proxy::start(w.mail.submission()).await,
    );
    let sides = w.sides(one.port);
    sides.account_ports.lock().unwrap().insert(other, two.port);
    let worker = w.worker(sides.clone());
    let mut queued = Vec::new();
    for i in 0..3 {
        for (account, name) in [(alice, "one"), (other, "two")] {
            let subject = format!("interleaved {name} {i}");
            let entry = w
                .store
                .outbox_enqueue(World::message(account, &subject, None), u64::MAX)
                .await
                .unwrap();
            queued.push(entry.entry.id);
        }
    }
    let done = worker
        .send_pending(&CancellationToken::new())
        .await
        .unwrap();
    let ids: Vec<_> = done.iter().map(Outcome::id).collect();
    assert_eq!(ids, queued, "{done:?}");
    assert!(
        done.iter().all(|o| matches!(o, Outcome::Sent { .. })),
        "{done:?}"
    );
    assert_eq!(one.accepted(), 1, "one session for the first account");
    assert_eq!(two.accepted(), 1, "one session for the second account");
    assert_eq!(
        sides.lookups.load(Ordering::SeqCst),
        2,
        "each looked up once"
    );
    for i in 0..3 {
        for name in ["one", "two"] {
            w.arrived_once(&format!("interleaved {name} {i}")).await;
        }
    }
}
