//! Watchers over every transport against the emulated tenant, real Dovecot and a
//! loopback webhook receiver, each signing in through a token source that renews its
//! tokens (the tenant's and our clocks are injected): a new mail reaches the receiver
//! in the first poll after it arrived through a Graph delta, an EWS SyncFolderItems
//! and a POP3 watcher, and a restarted watcher delivers nothing twice; Graph, EWS and
//! IMAP (XOAUTH2) watchers go on across several token lifetimes and are never marked
//! needs-sign-in.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use mailbridge_auth::authority::{Authority, TenantSegment};
use mailbridge_auth::cache::RetryPolicy;
use mailbridge_auth::client::{App, HttpOptions, TokenClient};
use mailbridge_auth::credential::ClientCredential;
use mailbridge_auth::scopes::{Grant, scopes_for};
use mailbridge_auth::session::{AccountSignIn, Sessions, StoreFailure, TokenStore};
use mailbridge_auth::source::{AccountTokens, TokenSource};
use mailbridge_connector::watcher::{
    self, AnySink, Backoffs, SinkSet, WatcherConfig, WatcherEvent, WatcherHandle, WatcherState,
};
use mailbridge_mailbox::mailbox::MailboxError;
use mailbridge_mailbox::send::SenderSignIn;
use mailbridge_sinks::address::AddressPolicy;
use mailbridge_sinks::route::{Conditions, Route, SourceAction};
use mailbridge_sinks::webhook::{WebhookConfig, WebhookSink};
use mailbridge_store::{AccountId, MasterKey, Store};
use mailbridge_testkit::crypto::TestCa;
use mailbridge_testkit::mailservers::MailServers;
use mailbridge_testkit::model::{
    Api, AppRegistration, MailboxRight, PermissionKind, Tenant, TenantModel, User,
};
use mailbridge_testkit::{Emulator, EmulatorServer};
use mailbridge_types::OffsetClock;
use mailbridge_types::backoff::Backoff;
use mailbridge_types::config::{AccountConfig, Transport};
use secrecy::SecretString;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub const ALICE: &str = "alice@contoso.example";
pub const BOB: &str = "bob@contoso.example";
const SECRET: &str = "Qx~8Q~connector.secret.value-1234567890";
const GRAPH: &str = "https://graph.microsoft.com";
/// Long enough for Dovecot on a loaded machine, short enough to fail a hung test.
pub const DEADLINE: Duration = Duration::from_mins(1);
/// The poll interval of Graph, EWS and POP3 watchers in these tests.
const POLL: Duration = Duration::from_millis(300);

/// Short backoffs, so a retry comes within the test's deadline.
pub const QUICK: Backoffs = Backoffs {
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

/// App-only sign-in keeps no refresh token.
pub struct NoStore;

impl TokenStore for NoStore {
    async fn load_refresh_token(&self, _: &str) -> Result<Option<SecretString>, StoreFailure> {
        Ok(None)
    }
    async fn save_refresh_token(&self, _: &str, _: &SecretString) -> Result<(), StoreFailure> {
        Ok(())
    }
    async fn mark_needs_sign_in(&self, _: &str, _: &str) -> Result<(), StoreFailure> {
        Ok(())
    }
    async fn mark_signed_in(&self, _: &str) -> Result<(), StoreFailure> {
        Ok(())
    }
}

/// The emulated tenant (Alice's mailbox readable by the app over every transport),
/// its Dovecot and Postfix, a store, and one set of token sessions on our clock.
pub struct World {
    pub server: EmulatorServer,
    pub emulator: Emulator,
    /// The one clock of the tenant (token lifetimes as Graph, EWS and Dovecot judge
    /// them) and of our token cache: time passes for both at once.
    pub clock: Arc<OffsetClock>,
    pub mail: MailServers,
    pub app: AppRegistration,
    pub sessions: Arc<Sessions<NoStore>>,
    pub store: Store,
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
}

pub async fn world() -> World {
    let year = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let mut app = AppRegistration::new("Connector").with_secret(SECRET, year);
    for (api, role) in [
        (Api::Graph, "Mail.ReadWrite"),
        (Api::Graph, "Mail.Send"),
        (Api::ExchangeOnline, "full_access_as_app"),
        (Api::ExchangeOnline, "IMAP.AccessAsApp"),
        (Api::ExchangeOnline, "POP.AccessAsApp"),
        (Api::ExchangeOnline, "SMTP.SendAsApp"),
    ] {
        app = app.with_permission(api, PermissionKind::Application, role);
    }
    let app = app.consented();
    let sp = app.service_principal_id.to_string();
    let tenant = Tenant::new("Contoso", "contoso.example")
        .with_user(User::new(ALICE, "Alice", "pw"))
        .with_user(User::new(BOB, "Bob", "pw"))
        .with_app(app.clone())
        .with_exchange_service_principal(&app)
        .with_mailbox_permission(ALICE, &sp, MailboxRight::FullAccess);
    let clock = Arc::new(OffsetClock::new());
    let emulator = Emulator::with_clock(
        TenantModel::builder().tenant(tenant).build().unwrap(),
        clock.clone(),
    )
    .unwrap();
    let server = EmulatorServer::start(emulator.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mail = MailServers::start(&emulator, &TestCa::generate().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, mail.ca_pem()).unwrap();
    let store = Store::open(
        &dir.path().join("mailbridge.db"),
        &MasterKey::generate().unwrap(),
    )
    .await
    .unwrap();
    let sessions = Arc::new(Sessions::new(
        TokenClient::with_clock(&HttpOptions::default(), clock.clone()).unwrap(),
        Arc::new(NoStore),
        RetryPolicy::default(),
    ));
    World {
        server,
        emulator,
        clock,
        mail,
        app,
        sessions,
        store,
        dir,
        ca_file,
    }
}

impl World {
    /// An app-only account named `name` reading Alice's mailbox over `transport`,
    /// stored.
    pub async fn account(&self, name: &str, transport: Transport) -> (AccountConfig, AccountId) {
        let tls = |addr: std::net::SocketAddr, kind: &str| {
            serde_json::json!({
                "transport": kind,
                "host": addr.ip().to_string(),
                "port": addr.port(),
                "tls": "implicit",
                "tls_name": self.mail.tls_name(),
                "extra_ca_file": self.ca_file,
            })
        };
        let incoming = match transport {
            Transport::Imap | Transport::Pop3 => {
                let addr = if transport == Transport::Imap {
                    self.mail.imaps()
                } else {
                    self.mail.pop3s()
                };
                tls(addr, label(transport))
            }
            Transport::Graph => serde_json::json!({
                "transport": "graph",
                "host": self.server.base_url(),
            }),
            Transport::Ews => serde_json::json!({
                "transport": "ews",
                "host": format!("{}/EWS/Exchange.asmx", self.server.base_url()),
            }),
            Transport::Smtp => panic!("SMTP is not an incoming side"),
        };
        let account: AccountConfig = serde_json::from_value(serde_json::json!({
            "name": name,
            "address": ALICE,
            "sign_in": "app-only",
            "app": "connector",
            "transports": [transport],
            "incoming": incoming,
        }))
        .unwrap();
        self.store.put_account(&account).await.unwrap();
        let id = self.store.account_id(name).await.unwrap().unwrap();
        (account, id)
    }

    /// The account's tokens for `transport`, from the world's sessions (a cache on
    /// our clock, renewing a token before it expires).
    pub fn tokens(&self, account: &str, transport: Transport) -> Arc<dyn TokenSource> {
        Arc::new(AccountTokens::new(
            self.sessions.clone(),
            AccountSignIn {
                account: account.to_owned(),
                app: App {
                    client_id: self.app.client_id.to_string(),
                    credential: ClientCredential::Secret(SecretString::from(SECRET)),
                },
                authority: Authority::new(
                    &self.server.base_url(),
                    TenantSegment::parse("contoso.example").unwrap(),
                )
                .unwrap(),
                scopes: scopes_for(transport, Grant::AppOnly, GRAPH),
                delegated: false,
            },
        ))
    }

    /// A watcher's settings: `folder`, quick polls and backoffs.
    pub fn config(
        &self,
        account: &AccountConfig,
        id: AccountId,
        folder: &str,
        routes: Vec<Route>,
    ) -> WatcherConfig {
        let mut c = WatcherConfig::new(
            account.clone(),
            id,
            routes,
            self.dir.path().join("spool").join(&account.name),
        );
        folder.clone_into(&mut c.folder);
        c.poll_interval = POLL;
        c.backoffs = QUICK;
        c
    }

    /// Starts a watcher signing in with the account's token source.
    pub fn watch(&self, config: WatcherConfig, sinks: Arc<SinkSet>) -> Watch {
        let transport = config.account.incoming_side().unwrap().transport;
        let tokens = self.tokens(&config.account.name, transport);
        Watch::start(config, sinks, tokens, self.store.clone())
    }

    /// A message from `from` to Alice, stored in her inbox now.
    pub async fn append(&self, from: &str, subject: &str) {
        let raw = format!(
            "From: {from}\r\nTo: {ALICE}\r\nSubject: {subject}\r\nMessage-ID: <{}@example.org>\r\nDate: Mon, 7 Dec 2026 09:00:00 +0000\r\n\r\nbody of {subject}\r\n",
            subject.replace(' ', "-")
        );
        self.append_raw(raw.as_bytes()).await;
    }

    pub async fn append_raw(&self, raw: &[u8]) {
        self.mail
            .mail_store()
            .append(ALICE, "INBOX", raw, false)
            .await
            .unwrap();
    }

    /// Time passes: every token issued more than `by` ago has expired for everyone.
    pub fn time_passes(&self, by: time::Duration) {
        self.clock.advance(by);
    }

    pub fn token_requests(&self) -> usize {
        self.emulator.requests_to("/oauth2/v2.0/token").len()
    }
}

/// The transport's name as in the configuration.
pub fn label(transport: Transport) -> &'static str {
    match transport {
        Transport::Imap => "imap",
        Transport::Pop3 => "pop3",
        Transport::Smtp => "smtp",
        Transport::Graph => "graph",
        Transport::Ews => "ews",
    }
}

/// Every message to the sinks named, kept in the mailbox.
pub fn route(sinks: &[&str]) -> Route {
    Route {
        name: format!("all to {}", sinks.join(", ")),
        when: Conditions::default(),
        sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
        then: SourceAction::Keep,
    }
}

/// A running watcher, every state it published, and a receiver to wait on.
pub struct Watch {
    pub handle: Option<WatcherHandle>,
    pub account: String,
    rx: broadcast::Receiver<WatcherEvent>,
    /// Every state published, in order.
    pub states: Arc<Mutex<Vec<WatcherState>>>,
    /// Whether the recorder fell behind (then `states` is not the whole story).
    lagged: Arc<AtomicBool>,
    /// Sessions that asked for a sign-in.
    pub sign_ins: Arc<AtomicUsize>,
}

impl Watch {
    pub fn start(
        config: WatcherConfig,
        sinks: Arc<SinkSet>,
        tokens: Arc<dyn TokenSource>,
        store: Store,
    ) -> Self {
        let (events, rx) = broadcast::channel::<WatcherEvent>(4096);
        let states = Arc::new(Mutex::new(Vec::new()));
        let lagged = Arc::new(AtomicBool::new(false));
        let mut recorder = events.subscribe();
        let (s, l) = (states.clone(), lagged.clone());
        tokio::spawn(async move {
            loop {
                match recorder.recv().await {
                    Ok(e) => s.lock().unwrap().push(e.state),
                    Err(broadcast::error::RecvError::Lagged(_)) => l.store(true, Ordering::SeqCst),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let sign_ins = Arc::new(AtomicUsize::new(0));
        let counted = sign_ins.clone();
        let sign_in = move || {
            counted.fetch_add(1, Ordering::SeqCst);
            let tokens = tokens.clone();
            async move { Ok::<_, MailboxError>(SenderSignIn::AppOnly(tokens)) }
        };
        let account = config.account.name.clone();
        let handle = watcher::spawn(
            config,
            sign_in,
            sinks,
            store,
            events,
            &CancellationToken::new(),
        );
        Self {
            handle: Some(handle),
            account,
            rx,
            states,
            lagged,
            sign_ins,
        }
    }

    /// The next state `want` accepts, within the deadline; a watcher that stops or
    /// fails on the way fails the test with its reason.
    pub async fn until(&mut self, what: &str, want: impl Fn(&WatcherState) -> bool) {
        let account = self.account.clone();
        tokio::time::timeout(DEADLINE, async {
            loop {
                match self.rx.recv().await {
                    Ok(e) if want(&e.state) => return,
                    Ok(WatcherEvent {
                        state:
                            s @ (WatcherState::NeedsSignIn { .. } | WatcherState::Disabled { .. }),
                        ..
                    }) => panic!("{account}: {s:?} while waiting for {what}"),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(e) => panic!("{account}: events ended before {what}: {e}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{account}: no {what} within {DEADLINE:?}"));
    }

    /// Waits for one whole round that started after now (its `Syncing`, then its
    /// `Idle`); any failure on the way fails the test.
    pub async fn next_round(&mut self, what: &str) {
        // What was published before now belongs to rounds that may have started
        // before the caller's mail arrived.
        while let Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) = self.rx.try_recv() {}
        let account = self.account.clone();
        let strict = |stage: &'static str| {
            let account = account.clone();
            move |s: &WatcherState| match s {
                WatcherState::WaitingUntil { reason, .. } => {
                    panic!("{account}: a round failed while waiting for {stage}: {reason}")
                }
                WatcherState::Syncing => stage == "syncing",
                WatcherState::Idle => stage == "idle",
                _ => false,
            }
        };
        self.until(&format!("the start of {what}"), strict("syncing"))
            .await;
        self.until(&format!("the end of {what}"), strict("idle"))
            .await;
    }

    pub async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.stop().await;
        }
    }

    /// Every state published so far; fails if the recorder missed some.
    pub fn all_states(&self) -> Vec<WatcherState> {
        assert!(
            !self.lagged.load(Ordering::SeqCst),
            "{}: the event recorder fell behind",
            self.account
        );
        self.states.lock().unwrap().clone()
    }
}

/// One webhook request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Request {
    pub key: Option<String>,
    pub body: serde_json::Value,
}

/// A webhook receiver on loopback, answering 200.
pub struct Receiver {
    pub url: url::Url,
    pub seen: Arc<Mutex<Vec<Request>>>,
    notify: tokio::sync::mpsc::UnboundedReceiver<()>,
    _task: tokio::task::JoinHandle<()>,
}

pub async fn receiver() -> Receiver {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (tx, notify) = tokio::sync::mpsc::unbounded_channel();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (s, tx) = (s.clone(), tx.clone());
            async move {
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                s.lock().unwrap().push(Request { key, body });
                let _ = tx.send(());
                StatusCode::OK
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
        seen,
        notify,
        _task: task,
    }
}

impl Receiver {
    pub fn sink(&self) -> AnySink {
        let mut c = WebhookConfig::new(self.url.clone(), SecretString::from("whsec-transports"));
        c.addresses = AddressPolicy::AllowPrivate;
        c.timeout = Duration::from_secs(10);
        AnySink::Webhook(Box::new(WebhookSink::new(c).unwrap()))
    }

    /// Waits (with the deadline) until a request with `subject` came.
    pub async fn wait_for(&mut self, subject: &str) {
        tokio::time::timeout(DEADLINE, async {
            while !self.subjects().iter().any(|s| s == subject) {
                self.notify.recv().await.unwrap();
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{subject:?} did not reach the webhook within {DEADLINE:?}"));
    }

    /// The subjects of the requests, in the order they came.
    pub fn subjects(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.body["subject"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Sinks with one webhook called `hook`.
fn hook_sinks(hook: &Receiver) -> Arc<SinkSet> {
    let mut s = SinkSet::new();
    s.insert("hook", hook.sink());
    Arc::new(s)
}

/// A new mail reaches the webhook in the first poll after it arrived, and a restarted
/// watcher delivers nothing twice.
async fn delivers_in_the_next_poll_and_nothing_twice_after_a_restart(
    transport: Transport,
    folder: &str,
) {
    let w = world().await;
    let name = format!("alice-{}", label(transport));
    let (account, id) = w.account(&name, transport).await;
    let hook = receiver().await;
    let sinks = hook_sinks(&hook);
    let config = w.config(&account, id, folder, vec![route(&["hook"])]);
    let mut first = w.watch(config.clone(), sinks.clone());
    first.next_round("the first round").await;

    w.append("carol@example.org", "printer on fire").await;
    first.next_round("the round after the first mail").await;
    assert_eq!(
        hook.subjects(),
        ["printer on fire"],
        "{transport:?}: the first poll after the mail arrived delivers it"
    );
    let request = hook.seen.lock().unwrap()[0].clone();
    assert_eq!(request.body["account"], name.as_str());
    assert_eq!(request.body["folder"], folder);
    assert!(request.key.is_some(), "{request:?}");
    first.stop().await;

    // A new watcher (as after a restart of the daemon) goes on from the stored
    // checkpoint: its rounds deliver nothing again.
    let mut second = w.watch(config, sinks);
    second.next_round("the first round after the restart").await;
    second.next_round("a second round after the restart").await;
    assert_eq!(
        hook.subjects(),
        ["printer on fire"],
        "{transport:?}: nothing twice"
    );

    w.append("carol@example.org", "printer still on fire").await;
    second.next_round("the round after the second mail").await;
    assert_eq!(
        hook.subjects(),
        ["printer on fire", "printer still on fire"],
        "{transport:?}"
    );
    second.stop().await;
    for watch in [&first, &second] {
        let states = watch.all_states();
        assert!(
            !states
                .iter()
                .any(|s| matches!(s, WatcherState::WaitingUntil { .. })),
            "{transport:?}: no failure on the way: {states:?}"
        );
        assert_eq!(
            watch.sign_ins.load(Ordering::SeqCst),
            1,
            "{transport:?}: one session"
        );
    }
}

#[tokio::test]
async fn a_graph_delta_watcher_delivers_in_the_next_poll_and_nothing_twice_after_a_restart() {
    delivers_in_the_next_poll_and_nothing_twice_after_a_restart(Transport::Graph, "inbox").await;
}

#[tokio::test]
async fn an_ews_sync_watcher_delivers_in_the_next_poll_and_nothing_twice_after_a_restart() {
    delivers_in_the_next_poll_and_nothing_twice_after_a_restart(Transport::Ews, "inbox").await;
}

#[tokio::test]
async fn a_pop3_watcher_delivers_in_the_next_poll_and_nothing_twice_after_a_restart() {
    delivers_in_the_next_poll_and_nothing_twice_after_a_restart(Transport::Pop3, "INBOX").await;
}

/// Graph, EWS and IMAP watchers of one mailbox across four token lifetimes, mail
/// arriving in each: every watcher delivers every message once, their tokens are
/// renewed (one per resource per lifetime), and none is ever marked needs-sign-in.
/// The IMAP session is dropped in each new lifetime, as Exchange ends a session whose
/// token expired, so the watcher must sign in again with a current token.
#[tokio::test]
async fn graph_ews_and_imap_watchers_keep_going_across_token_lifetimes() {
    let w = world().await;
    let mut watches = Vec::new();
    let mut hooks = Vec::new();
    for (transport, folder) in [
        (Transport::Graph, "inbox"),
        (Transport::Ews, "inbox"),
        (Transport::Imap, "INBOX"),
    ] {
        let (account, id) = w
            .account(&format!("alice-{}", label(transport)), transport)
            .await;
        let hook = receiver().await;
        let config = w.config(&account, id, folder, vec![route(&["hook"])]);
        let mut watch = w.watch(config, hook_sinks(&hook));
        watch.until("idle", |s| *s == WatcherState::Idle).await;
        watches.push((transport, watch));
        hooks.push(hook);
    }
    // The first tokens: one per resource the accounts use.
    let first_tokens = w.token_requests();
    assert!(first_tokens >= 2, "{first_tokens}");

    let lifetimes = 4;
    for lifetime in 0..lifetimes {
        if lifetime > 0 {
            // Past the emulator's 3599 s lifetime for both clocks.
            w.time_passes(time::Duration::minutes(61));
            assert!(w.mail.drop_sessions(Some(ALICE)).await.unwrap() >= 1);
        }
        let subject = format!("report {lifetime}");
        w.append("carol@example.org", &subject).await;
        for ((_, watch), hook) in watches.iter_mut().zip(&mut hooks) {
            // A watcher that stops (needs sign-in) fails the test with its reason.
            let what = format!("{subject:?} at the webhook");
            tokio::select! {
                () = hook.wait_for(&subject) => {}
                () = watch.until(&what, |_| false) => {}
            }
        }
    }
    let want: Vec<String> = (0..lifetimes).map(|l| format!("report {l}")).collect();
    for ((transport, watch), hook) in watches.iter_mut().zip(&hooks) {
        assert_eq!(hook.subjects(), want, "{transport:?}: each message once");
        watch.stop().await;
        let states = watch.all_states();
        assert!(
            !states
                .iter()
                .any(|s| matches!(s, WatcherState::NeedsSignIn { .. })),
            "{transport:?}: {states:?}"
        );
        if *transport == Transport::Imap {
            assert!(
                watch.sign_ins.load(Ordering::SeqCst) > lifetimes - 1,
                "the IMAP watcher signed in again in each lifetime"
            );
        } else {
            // Graph and EWS have no session to lose: no failure at all, and the same
            // session all along (the token source renewed the tokens under it).
            assert!(
                !states
                    .iter()
                    .any(|s| matches!(s, WatcherState::WaitingUntil { .. })),
                "{transport:?}: {states:?}"
            );
            assert_eq!(watch.sign_ins.load(Ordering::SeqCst), 1, "{transport:?}");
        }
    }
    // Each lifetime's tokens were new. A request already on its way when time passed
    // may have been refused (401) and retried once with a new token: never more
    // tokens than that.
    let refused = ["/messages/delta", "/EWS/Exchange.asmx"]
        .iter()
        .map(|path| {
            w.emulator
                .requests_to(path)
                .iter()
                .filter(|r| r.status == 401)
                .count()
        })
        .sum::<usize>();
    let tokens = w.token_requests();
    assert!(
        (first_tokens * lifetimes..=first_tokens * lifetimes + refused).contains(&tokens),
        "{tokens} token requests, {refused} refused requests"
    );
    // Dovecot asked the tenant about a token at each IMAP sign-in, and each was valid.
    let judged: Vec<u16> = w
        .emulator
        .requests()
        .iter()
        .filter(|r| r.surface == "imap-judge")
        .map(|r| r.status)
        .collect();
    assert!(judged.len() >= lifetimes, "{judged:?}");
    assert!(judged.iter().all(|s| *s == 200), "{judged:?}");
}
