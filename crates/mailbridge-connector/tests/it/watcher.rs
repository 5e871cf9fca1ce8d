//! Watchers against real Dovecot (through the emulated tenant's tokens), SQLite, a
//! loopback webhook receiver and a folder sink: new mail reaches the webhook through
//! IDLE, a stopped and restarted watcher delivers each message exactly once, a
//! refusing webhook holds the checkpoint back until it accepts, a dropped session is
//! reopened with a fresh sign-in, and a refused sign-in stops the watcher.

use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use mailbridge_connector::watcher::pipeline::watch_checkpoint_key;
use mailbridge_connector::watcher::{
    self, AnySink, Backoffs, SinkSet, WatcherConfig, WatcherEvent, WatcherHandle, WatcherState,
};
use mailbridge_mailbox::mailbox::{Checkpoint, MailboxError};
use mailbridge_mailbox::send::SenderSignIn;
use mailbridge_sinks::address::AddressPolicy;
use mailbridge_sinks::folder::FolderSink;
use mailbridge_sinks::route::{Route, SourceAction};
use mailbridge_sinks::webhook::{WebhookConfig, WebhookSink};
use mailbridge_store::{AccountId, MasterKey, Store};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{AppRegistration, MailboxRight, Tenant, TenantModel, User};
use mailbridge_testkit::tokens::Resource;
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::backoff::Backoff;
use mailbridge_types::config::AccountConfig;
use secrecy::SecretString;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub(crate) const ALICE: &str = "alice@contoso.example";
/// Long enough for Dovecot under a loaded machine, short enough to fail a hung test.
pub(crate) const DEADLINE: Duration = Duration::from_mins(1);

pub(crate) struct World {
    pub(crate) _server: EmulatorServer,
    pub(crate) emulator: Emulator,
    pub(crate) mail: MailServers,
    pub(crate) app: AppRegistration,
    pub(crate) store: Store,
    pub(crate) account: AccountConfig,
    pub(crate) account_id: AccountId,
    pub(crate) dir: tempfile::TempDir,
    _ca: tempfile::NamedTempFile,
}

pub(crate) async fn world() -> World {
    let app = AppRegistration::new("Connector").consented();
    let tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", "pw"))
        .with_app(app.clone())
        .with_exchange_service_principal(&app)
        .with_mailbox_permission(
            ALICE,
            &app.service_principal_id.to_string(),
            MailboxRight::FullAccess,
        );
    let emulator = Emulator::new(TenantModel::builder().tenant(tenant).build().unwrap()).unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        &dir.path().join("db.sqlite"),
        &MasterKey::generate().unwrap(),
    )
    .await
    .unwrap();
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), mail.ca_pem()).unwrap();
    let addr = mail.imaps();
    let account: AccountConfig = serde_json::from_value(serde_json::json!({
        "name": "alice",
        "address": ALICE,
        "sign_in": "app-only",
        "app": "connector",
        "transports": ["imap"],
        "incoming": {
            "transport": "imap",
            "host": addr.ip().to_string(),
            "port": addr.port(),
            "tls": "implicit",
            "tls_name": mail.tls_name(),
            "extra_ca_file": ca.path(),
        },
    }))
    .unwrap();
    store.put_account(&account).await.unwrap();
    let account_id = store.account_id("alice").await.unwrap().unwrap();
    World {
        _server: server,
        emulator,
        mail,
        app,
        store,
        account,
        account_id,
        dir,
        _ca: ca,
    }
}

/// Short backoffs, so a retry comes within the test's deadline.
pub(crate) const QUICK: Backoffs = Backoffs {
    source: Backoff {
        floor: Duration::from_millis(50),
        base: Duration::from_millis(100),
        cap: Duration::from_millis(400),
    },
    delivery: Backoff {
        floor: Duration::from_millis(50),
        base: Duration::from_millis(100),
        cap: Duration::from_millis(400),
    },
};

pub(crate) fn route(sink: &str) -> Route {
    Route {
        name: format!("all to {sink}"),
        when: mailbridge_sinks::route::Conditions::default(),
        sinks: vec![sink.to_owned()],
        then: SourceAction::Keep,
    }
}

impl World {
    pub(crate) fn config(&self, routes: Vec<Route>) -> WatcherConfig {
        let mut c = WatcherConfig::new(
            self.account.clone(),
            self.account_id,
            routes,
            self.dir.path().join("spool"),
        );
        // Only IDLE can bring a new mail within the deadline.
        c.poll_interval = Duration::from_hours(1);
        c.backoffs = QUICK;
        c
    }

    /// Starts a watcher whose sign-in is a fresh app-only token per session; the
    /// counter says how many sessions asked for one.
    pub(crate) fn start(
        &self,
        config: WatcherConfig,
        sinks: Arc<SinkSet>,
        events: &broadcast::Sender<WatcherEvent>,
    ) -> (WatcherHandle, Arc<AtomicUsize>) {
        let emulator = self.emulator.clone();
        let app = self.app.clone();
        let count = Arc::new(AtomicUsize::new(0));
        let counted = count.clone();
        let sign_in = move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let token = emulator.app_token(&app, Resource::exchange(), &["IMAP.AccessAsApp"]);
            async move {
                Ok::<_, MailboxError>(SenderSignIn::AppOnly(mailbridge_auth::source::fixed(
                    SecretString::from(token),
                )))
            }
        };
        let handle = watcher::spawn(
            config,
            sign_in,
            sinks,
            self.store.clone(),
            events.clone(),
            &CancellationToken::new(),
        );
        (handle, count)
    }

    pub(crate) async fn append(&self, subject: &str) {
        let raw = format!(
            "From: bob@example.org\r\nTo: {ALICE}\r\nSubject: {subject}\r\nMessage-ID: <{}@example.org>\r\n\r\nbody of {subject}\r\n",
            subject.replace(' ', "-")
        );
        self.mail
            .mail_store()
            .append(ALICE, "INBOX", raw.as_bytes(), false)
            .await
            .unwrap();
    }

    pub(crate) async fn checkpoint(&self) -> Option<Checkpoint> {
        self.store
            .checkpoint_by_id(self.account_id, &watch_checkpoint_key("INBOX"))
            .await
            .unwrap()
    }
}

/// The next event that `want` accepts, within the deadline.
pub(crate) async fn event(
    rx: &mut broadcast::Receiver<WatcherEvent>,
    what: &str,
    want: impl Fn(&WatcherState) -> bool,
) -> WatcherEvent {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match rx.recv().await {
                Ok(e) if want(&e.state) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("events ended before {what}: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no event {what} within {DEADLINE:?}"))
}

pub(crate) fn idle(s: &WatcherState) -> bool {
    *s == WatcherState::Idle
}

/// A webhook receiver on loopback: each request's body and the status it got.
pub(crate) struct Receiver {
    pub(crate) url: url::Url,
    pub(crate) status: Arc<AtomicU16>,
    pub(crate) seen: Arc<Mutex<Vec<(u16, serde_json::Value)>>>,
    notify: tokio::sync::mpsc::UnboundedReceiver<u16>,
    _task: tokio::task::JoinHandle<()>,
}

pub(crate) async fn receiver(status: u16) -> Receiver {
    let answer = Arc::new(AtomicU16::new(status));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, notify) = tokio::sync::mpsc::unbounded_channel();
    let (a, s) = (answer.clone(), seen.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |_headers: HeaderMap, body: Bytes| {
            let (a, s, tx) = (a.clone(), s.clone(), tx.clone());
            async move {
                let status = a.load(Ordering::SeqCst);
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                s.lock().unwrap().push((status, json));
                let _ = tx.send(status);
                StatusCode::from_u16(status).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Receiver {
        url: format!("http://{addr}/hook").parse().unwrap(),
        status: answer,
        seen,
        notify,
        _task: task,
    }
}

impl Receiver {
    pub(crate) fn sink(&self) -> AnySink {
        let mut c = WebhookConfig::new(self.url.clone(), SecretString::from("whsec-watch"));
        c.addresses = AddressPolicy::AllowPrivate;
        c.timeout = Duration::from_secs(10);
        AnySink::Webhook(Box::new(WebhookSink::new(c).unwrap()))
    }

    /// The status of the next request, within the deadline.
    pub(crate) async fn next(&mut self) -> u16 {
        tokio::time::timeout(DEADLINE, self.notify.recv())
            .await
            .expect("no webhook request within the deadline")
            .unwrap()
    }

    pub(crate) fn subjects(&self, status: u16) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| *s == status)
            .map(|(_, j)| j["subject"].as_str().unwrap().to_owned())
            .collect()
    }
}

#[tokio::test]
async fn new_mail_reaches_a_webhook_through_idle_and_after_a_dropped_session() {
    let w = world().await;
    let mut hook = receiver(200).await;
    let mut sinks = SinkSet::new();
    sinks.insert("hook", hook.sink());
    let (events, mut rx) = broadcast::channel(256);
    let (handle, sessions) = w.start(w.config(vec![route("hook")]), Arc::new(sinks), &events);
    event(&mut rx, "idle", idle).await;

    w.append("printer on fire").await;
    assert_eq!(hook.next().await, 200);
    assert_eq!(hook.subjects(200), ["printer on fire"]);
    let seen = hook.seen.lock().unwrap()[0].1.clone();
    assert_eq!(seen["account"], "alice");
    assert_eq!(seen["folder"], "INBOX");
    assert_eq!(sessions.load(Ordering::SeqCst), 1);

    // The server drops the session: the watcher waits, signs in again and goes on.
    event(&mut rx, "idle after the delivery", idle).await;
    assert!(w.mail.drop_sessions(Some(ALICE)).await.unwrap() >= 1);
    event(&mut rx, "waiting after the dropped session", |s| {
        matches!(s, WatcherState::WaitingUntil { .. })
    })
    .await;
    event(&mut rx, "idle again", idle).await;
    assert_eq!(
        sessions.load(Ordering::SeqCst),
        2,
        "a fresh sign-in per session"
    );
    w.append("printer still on fire").await;
    assert_eq!(hook.next().await, 200);
    assert_eq!(
        hook.subjects(200),
        ["printer on fire", "printer still on fire"]
    );

    handle.stop().await;
    event(&mut rx, "disabled", |s| {
        *s == WatcherState::Disabled { reason: None }
    })
    .await;
}

pub(crate) fn eml_files(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut files: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    files.sort();
    files
}

pub(crate) fn subjects_of(files: &[Vec<u8>]) -> Vec<String> {
    let mut subjects: Vec<String> = files
        .iter()
        .map(|f| {
            let text = String::from_utf8_lossy(f);
            text.lines()
                .find_map(|l| l.strip_prefix("Subject: "))
                .unwrap()
                .to_owned()
        })
        .collect();
    subjects.sort();
    subjects
}

#[tokio::test]
async fn a_folder_sink_gets_each_message_exactly_once_across_restarts() {
    let w = world().await;
    let out = w.dir.path().join("out");
    let sinks = {
        let mut s = SinkSet::new();
        s.insert(
            "folder",
            AnySink::Folder(FolderSink::open(&out).await.unwrap()),
        );
        Arc::new(s)
    };
    for i in 0..10 {
        w.append(&format!("message {i:02}")).await;
    }
    let (events, mut rx) = broadcast::channel(256);
    let (first, _) = w.start(w.config(vec![route("folder")]), sinks.clone(), &events);
    event(&mut rx, "idle after the first ten", idle).await;
    assert_eq!(eml_files(&out).len(), 10);
    first.stop().await;

    for i in 10..20 {
        w.append(&format!("message {i:02}")).await;
    }
    // As if the process had died before storing its checkpoint: the next watcher
    // lists everything again, and nothing is added twice.
    w.store
        .set_checkpoint_by_id(
            w.account_id,
            &watch_checkpoint_key("INBOX"),
            &Checkpoint::Start,
        )
        .await
        .unwrap();
    let (second, _) = w.start(w.config(vec![route("folder")]), sinks.clone(), &events);
    event(&mut rx, "idle after all twenty", idle).await;
    second.stop().await;
    // And a third, from the stored checkpoint, adds nothing either.
    let (third, _) = w.start(w.config(vec![route("folder")]), sinks, &events);
    event(&mut rx, "idle again", idle).await;
    third.stop().await;

    let files = eml_files(&out);
    let want: Vec<String> = (0..20).map(|i| format!("message {i:02}")).collect();
    assert_eq!(subjects_of(&files), want);
    assert!(
        std::fs::read_dir(w.dir.path().join("spool"))
            .unwrap()
            .next()
            .is_none(),
        "the spool is emptied"
    );
}

#[tokio::test]
async fn a_refusing_webhook_holds_the_checkpoint_until_it_accepts() {
    let w = world().await;
    let mut hook = receiver(200).await;
    let mut sinks = SinkSet::new();
    sinks.insert("hook", hook.sink());
    w.append("first").await;
    let (events, mut rx) = broadcast::channel(256);
    let mut config = w.config(vec![route("hook")]);
    // Never parked here: this is the retry before parking (tests/it/parked.rs parks).
    config.park_after = u32::MAX;
    let (handle, _) = w.start(config, Arc::new(sinks), &events);
    // The first message goes through while the receiver accepts it.
    assert_eq!(hook.next().await, 200);
    event(&mut rx, "idle", idle).await;
    let Some(Checkpoint::Imap {
        last_uid: before, ..
    }) = w.checkpoint().await
    else {
        panic!("no IMAP checkpoint after the first message");
    };

    hook.status.store(503, Ordering::SeqCst);
    w.append("second").await;
    assert_eq!(hook.next().await, 503);
    let waiting = event(&mut rx, "waiting after the 503", |s| {
        matches!(s, WatcherState::WaitingUntil { .. })
    })
    .await;
    let WatcherState::WaitingUntil { reason, .. } = &waiting.state else {
        unreachable!()
    };
    assert!(reason.contains("503"), "{reason}");
    // Retried, with backoff, and still refused: the checkpoint has not moved.
    assert_eq!(hook.next().await, 503);
    assert!(
        matches!(w.checkpoint().await, Some(Checkpoint::Imap { last_uid, .. }) if last_uid == before)
    );

    hook.status.store(200, Ordering::SeqCst);
    // Requests answered 503 may still be in flight; wait for the accepted one.
    while hook.next().await != 200 {}
    event(&mut rx, "idle after the delivery", idle).await;
    // A round after it found nothing more: the second message arrived once.
    event(&mut rx, "syncing", |s| *s == WatcherState::Syncing).await;
    event(&mut rx, "idle", idle).await;
    assert_eq!(hook.subjects(200), ["first", "second"]);
    assert!(
        matches!(w.checkpoint().await, Some(Checkpoint::Imap { last_uid, .. }) if last_uid > before)
    );
    handle.stop().await;
}

#[tokio::test]
async fn a_refused_sign_in_stops_the_watcher() {
    let w = world().await;
    let (events, mut rx) = broadcast::channel(256);
    let sign_in = || async {
        Ok::<_, MailboxError>(SenderSignIn::AppOnly(mailbridge_auth::source::fixed(
            SecretString::from("not-a-token"),
        )))
    };
    let handle = watcher::spawn(
        w.config(vec![]),
        sign_in,
        Arc::new(SinkSet::new()),
        w.store.clone(),
        events,
        &CancellationToken::new(),
    );
    let stopped = event(&mut rx, "needs sign-in", |s| {
        matches!(s, WatcherState::NeedsSignIn { .. })
    })
    .await;
    assert_eq!(stopped.account, "alice");
    // The task ends on its own: no retry loop against a refusing server.
    tokio::time::timeout(DEADLINE, handle.finished())
        .await
        .expect("the watcher went on after the sign-in was refused");
}
