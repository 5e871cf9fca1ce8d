//! The daemon's work behind the API: a watcher for every account whose watch is on,
//! and the outbox's sender, for as long as the process runs.
//!
//! [`Daemon::start`] spawns two tasks:
//! - the supervisor, which brings the running watchers in line with the store
//!   (accounts, sinks and watches) on start, whenever [`Daemon::reload`] is called
//!   (after every change through the API) and every third of the lease time. Each
//!   account's watcher runs only while this instance holds the account's lease
//!   (`watch:<account id>`, renewed on every pass): with several instances on one
//!   PostgreSQL store, each account is watched by exactly one of them, and when an
//!   instance dies another takes its accounts over once their leases end. A watcher
//!   is restarted when its account, its app, its watch or any sink changed; one that
//!   stopped for a sign-in stays stopped until the next explicit reload.
//! - the outbox's sender ([`OutboxWorker`]), which signs accounts in through the
//!   same [`SignIn`] service as the watchers (one token cache for the process).
//! - the parked-delivery worker ([`ParkedWorker::run`]), which retries the messages a
//!   sink kept refusing on their schedule and on demand ([`DaemonHandle::parked`]),
//!   through the same sinks as the watchers.
//!
//! Every watcher state change is kept ([`DaemonHandle::states`]) and passed on
//! ([`DaemonHandle::subscribe`]) for the API's events and the metrics.
//! [`Daemon::stop`] stops taking work, lets each watcher finish the message it is
//! delivering, gives the leases back so another instance can go on at once, and
//! lets the sender finish the message it is handing over.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mailbridge_accounts::signin::SignIn;
use mailbridge_connector::outbox::{
    OutboxSettings, OutboxWorker, OutgoingSide, OutgoingSides, SentCopy,
};
use mailbridge_connector::parked::{ParkedHandle, ParkedSettings, ParkedWorker, SinkLookup};
use mailbridge_connector::spec::{SinkSpec, Watch, build_sink};
use mailbridge_connector::watcher::{
    self, Backoffs, MessageHook, MimeLink, SinkSet, WatcherConfig, WatcherEvent, WatcherHandle,
    WatcherState,
};
use mailbridge_mailbox::mailbox::{ErrorKind, MailboxError};
use mailbridge_store::{AccountId, Store, sink_secret_id};
use mailbridge_types::config::{AccountConfig, AppConfig, Transport};
use mailbridge_types::error_chain;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

/// The default lease on an account's watcher.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// How the daemon runs.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// This instance's name in leases and outbox claims: unique per running process.
    pub instance: String,
    /// Where messages are spooled while they are delivered (`<dir>/<account id>`).
    pub spool_dir: PathBuf,
    /// The configuration file whose apps and accounts join the store's.
    pub config_file: PathBuf,
    /// How long an account's lease lasts without renewal (renewed every third).
    pub lease: Duration,
    /// The outbox sender's settings (its `instance` is set from [`Self::instance`]).
    pub outbox: OutboxSettings,
    /// The watchers' backoffs (tests shorten them).
    pub backoffs: Backoffs,
    /// Told of every message a watcher handled (the metrics).
    pub on_message: Option<MessageHook>,
    /// The address receivers reach the API at (`serve --public-url`, e.g.
    /// `https://mailbridge.example.com`): a webhook's link to a message too large to
    /// travel inline starts with it. None: no link.
    pub public_url: Option<String>,
}

impl DaemonSettings {
    /// The webhook's link to a message's raw MIME: [`Self::public_url`] and the API's
    /// path for it ([`crate::api_messages::message_path`]).
    fn mime_link(&self) -> Option<MimeLink> {
        let base = self.public_url.as_deref()?.trim_end_matches('/').to_owned();
        Some(MimeLink(Arc::new(move |account, folder, message| {
            crate::api_messages::message_path(account, folder, message)
                .map(|path| format!("{base}{path}"))
        })))
    }

    /// The defaults, for an instance called `instance` with its spool in `spool_dir`.
    pub fn new(instance: String, spool_dir: PathBuf, config_file: PathBuf) -> Self {
        Self {
            outbox: OutboxSettings {
                instance: instance.clone(),
                ..OutboxSettings::default()
            },
            instance,
            spool_dir,
            config_file,
            lease: DEFAULT_LEASE,
            backoffs: Backoffs::default(),
            on_message: None,
            public_url: None,
        }
    }
}

/// The running daemon.
#[derive(Debug)]
pub struct Daemon {
    shared: Arc<Shared>,
    supervisor: tokio::task::JoinHandle<()>,
    outbox: tokio::task::JoinHandle<()>,
    parked: tokio::task::JoinHandle<()>,
    recorder: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    store: Store,
    sign_in: Arc<SignIn>,
    settings: DaemonSettings,
    events: broadcast::Sender<WatcherEvent>,
    states: Mutex<BTreeMap<String, WatcherEvent>>,
    reload: Notify,
    outbox_due: Notify,
    cancel: CancellationToken,
    /// The sinks as last built: the watchers' and the parked-delivery worker's.
    sinks_cell: Arc<Mutex<Arc<SinkSet>>>,
    parked: ParkedHandle,
    /// Messages per hour, latencies and last syncs per account (the dashboard's).
    activity: crate::activity::Activity,
}

/// What the API reaches of the running daemon (cheap to clone).
#[derive(Debug, Clone)]
pub struct DaemonHandle(Arc<Shared>);

impl DaemonHandle {
    /// The store the daemon works on.
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The configuration file whose apps and accounts join the store's.
    pub fn config_file(&self) -> &std::path::Path {
        &self.0.settings.config_file
    }

    /// The daemon's sign-in service (one token cache for the watchers, the outbox and
    /// the API's reads of a mailbox).
    pub fn sign_in(&self) -> &Arc<SignIn> {
        &self.0.sign_in
    }

    /// How many requests the daemon's sign-in service sent to the identity platform.
    pub fn token_requests(&self) -> u64 {
        self.0.sign_in.token_requests()
    }

    /// See [`Daemon::reload`].
    pub fn reload(&self) {
        self.0.reload.notify_one();
    }

    /// Retry on demand and drop of parked deliveries.
    pub fn parked(&self) -> &ParkedHandle {
        &self.0.parked
    }

    /// A message was queued: the sender looks at once instead of at its next poll.
    pub fn wake_outbox(&self) {
        self.0.outbox_due.notify_one();
    }

    /// Every watcher state change from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<WatcherEvent> {
        self.0.events.subscribe()
    }

    /// The last state of each account's watcher that ran here, by account name.
    pub fn states(&self) -> Vec<WatcherEvent> {
        self.0
            .states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// What each account's watcher did lately (in memory: empty after a restart).
    pub fn activity(&self) -> &crate::activity::Activity {
        &self.0.activity
    }

    /// The last state of the watcher of `account` (by name).
    pub fn state_of(&self, account: &str) -> Option<WatcherEvent> {
        self.0
            .states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(account)
            .cloned()
    }
}

impl Daemon {
    /// Starts the supervisor and the outbox sender.
    pub fn start(store: Store, sign_in: Arc<SignIn>, mut settings: DaemonSettings) -> Self {
        let (events, mut received) = broadcast::channel(1024);
        let activity = crate::activity::Activity::default();
        let counted = {
            let store = store.clone();
            activity.hook(move || store.now())
        };
        settings.on_message = Some(match settings.on_message.take() {
            None => counted,
            Some(other) => MessageHook(Arc::new(move |account, outcome, took| {
                (counted.0)(account, outcome, took);
                (other.0)(account, outcome, took);
            })),
        });
        let sinks: Arc<Mutex<Arc<SinkSet>>> = Arc::default();
        let lookup: SinkLookup = {
            let sinks = sinks.clone();
            Arc::new(move |_account| {
                Some(sinks.lock().unwrap_or_else(PoisonError::into_inner).clone())
            })
        };
        let mut parked_settings = ParkedSettings::new(settings.spool_dir.join("parked"));
        parked_settings.instance.clone_from(&settings.instance);
        parked_settings.mime_link = settings.mime_link();
        let parked_worker = ParkedWorker::new(store.clone(), lookup, parked_settings);
        let shared = Arc::new(Shared {
            sinks_cell: sinks,
            parked: parked_worker.handle(),
            store,
            sign_in,
            settings,
            events,
            states: Mutex::new(BTreeMap::new()),
            activity,
            reload: Notify::new(),
            outbox_due: Notify::new(),
            cancel: CancellationToken::new(),
        });
        let recorder = {
            let shared = shared.clone();
            tokio::spawn(async move {
                loop {
                    match received.recv().await {
                        Ok(event) => {
                            let before = shared
                                .states
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .insert(event.account.clone(), event.clone());
                            // A round got through: syncing, then idle.
                            if event.state == WatcherState::Idle
                                && before.is_some_and(|b| b.state == WatcherState::Syncing)
                            {
                                shared.activity.synced(&event.account, event.at);
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            })
        };
        let supervisor = tokio::spawn(supervise(shared.clone()));
        let parked = {
            let cancel = shared.cancel.clone();
            tokio::spawn(async move { parked_worker.run(cancel).await })
        };
        let outbox = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let sides = AccountSides {
                    store: shared.store.clone(),
                    sign_in: shared.sign_in.clone(),
                    config_file: shared.settings.config_file.clone(),
                };
                let worker = OutboxWorker::new(
                    shared.store.clone(),
                    Arc::new(sides),
                    shared.settings.outbox.clone(),
                );
                send_until_stopped(&shared, &worker).await;
            })
        };
        Self {
            shared,
            supervisor,
            outbox,
            parked,
            recorder,
        }
    }

    /// What the API reaches of the daemon.
    pub fn handle(&self) -> DaemonHandle {
        DaemonHandle(self.shared.clone())
    }

    /// Brings the watchers in line with the store now (after a change), and restarts
    /// those that stopped for a sign-in.
    pub fn reload(&self) {
        self.shared.reload.notify_one();
    }

    /// Stops: no new work; watchers finish the message they deliver and give their
    /// leases back; the sender finishes the message it hands over. Waits at most
    /// `bound`, then cuts off what is left (a cut delivery is delivered again under
    /// its key by whoever takes the account next; a cut send becomes outcome-unknown).
    pub async fn stop(self, bound: Duration) {
        self.shared.cancel.cancel();
        let Daemon {
            shared,
            mut supervisor,
            mut outbox,
            mut parked,
            recorder,
        } = self;
        let both = async {
            let _ = (&mut supervisor).await;
            let _ = (&mut outbox).await;
            let _ = (&mut parked).await;
        };
        if tokio::time::timeout(bound, both).await.is_err() {
            tracing::warn!(
                timeout_secs = bound.as_secs(),
                "watchers or the outbox sender were still busy after the shutdown timeout; cut off"
            );
            supervisor.abort();
            outbox.abort();
            parked.abort();
        }
        drop(shared);
        recorder.abort();
    }
}

/// The outbox sender's loop: sends what is due, then waits until the next message is
/// due, a message is queued through the API, or the poll interval passed (messages
/// queued by another process). A store failure ends a pass, not the sender.
async fn send_until_stopped<S: OutgoingSides>(shared: &Shared, worker: &OutboxWorker<S>) {
    let poll = shared.settings.outbox.poll_interval;
    while !shared.cancel.is_cancelled() {
        let mut wait = poll;
        match worker.send_pending(&shared.cancel).await {
            Ok(_) => {
                if let Ok(Some(due)) = shared.store.outbox_next_due().await {
                    let until = (due - shared.store.now()).max(time::Duration::ZERO);
                    wait = wait.min(until.unsigned_abs());
                }
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "the outbox sender failed; trying again");
            }
        }
        tokio::select! {
            () = shared.cancel.cancelled() => break,
            () = shared.outbox_due.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// A running watcher and what it was started from.
struct Running {
    fingerprint: String,
    handle: WatcherHandle,
}

fn lease_name(account: AccountId) -> String {
    format!("watch:{account}")
}

async fn supervise(shared: Arc<Shared>) {
    let mut running: HashMap<AccountId, Running> = HashMap::new();
    let mut sinks = Sinks::default();
    let mut explicit = true;
    loop {
        if let Err(e) = reconcile(&shared, &mut running, &mut sinks, explicit).await {
            tracing::warn!(error = %e, "failed to bring the watchers in line with the store; trying again");
        }
        explicit = false;
        tokio::select! {
            () = shared.cancel.cancelled() => break,
            () = shared.reload.notified() => explicit = true,
            () = tokio::time::sleep(shared.settings.lease / 3) => {}
        }
    }
    let store = &shared.store;
    for (account, r) in running {
        r.handle.stop().await;
        if let Err(e) = store
            .release_lease(&lease_name(account), &shared.settings.instance)
            .await
        {
            tracing::warn!(%account, error = %error_chain(&e), "failed to give the watcher's lease back; another instance takes it when it ends");
        }
    }
}

/// The sinks as last built, and what they were built from.
#[derive(Default)]
struct Sinks {
    fingerprint: String,
    set: Arc<SinkSet>,
}

async fn reconcile(
    shared: &Shared,
    running: &mut HashMap<AccountId, Running>,
    sinks: &mut Sinks,
    explicit: bool,
) -> Result<(), String> {
    let store = &shared.store;
    let stored = store
        .sinks::<SinkSpec>()
        .await
        .map_err(|e| error_chain(&e))?;
    // Secrets are part of what a sink was built from: a new one rebuilds it.
    let secrets = store.secrets().await.map_err(|e| error_chain(&e))?;
    let mut fingerprint = String::new();
    for s in &stored {
        let updated = secrets
            .iter()
            .find(|m| m.id == sink_secret_id(s.id))
            .map(|m| m.updated_at.unix_timestamp_nanos());
        let _ = write!(
            fingerprint,
            "{}\u{1f}{}\u{1f}{}\u{1f}{updated:?}\u{1e}",
            s.id,
            s.name,
            serde_json::to_string(&s.config).unwrap_or_default()
        );
    }
    if fingerprint != sinks.fingerprint {
        let mut set = SinkSet::new();
        for s in &stored {
            let secret = store
                .get_secret(&sink_secret_id(s.id))
                .await
                .map_err(|e| error_chain(&e))?;
            match build_sink(&s.name, &s.config, secret).await {
                Ok(sink) => {
                    set.insert(s.name.clone(), sink);
                }
                // Left out: the routes that name it stop at it (misconfigured) and
                // say which sink, until it is fixed.
                Err(e) => {
                    tracing::warn!(sink = s.name.as_str(), error = %error_chain(&e), "sink left out");
                }
            }
        }
        sinks.set = Arc::new(set);
        sinks.fingerprint = fingerprint;
        *shared
            .sinks_cell
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = sinks.set.clone();
    }

    let accounts = mailbridge_accounts::catalog::by_id(store, &shared.settings.config_file)
        .await
        .map_err(|e| error_chain(&e))?;
    let watches = store
        .watches::<Watch>()
        .await
        .map_err(|e| error_chain(&e))?;
    let mut wanted: HashMap<AccountId, (String, WatcherConfig, AccountConfig, Option<AppConfig>)> =
        HashMap::new();
    for (id, watch) in watches {
        let Some((account, app)) = accounts.get(&id) else {
            continue;
        };
        if !watch.enabled || !account.download || account.incoming.is_none() {
            continue;
        }
        let fingerprint = format!(
            "{}\u{1e}{}\u{1e}{}\u{1e}{}",
            serde_json::to_string(account).unwrap_or_default(),
            serde_json::to_string(app).unwrap_or_default(),
            serde_json::to_string(&watch).unwrap_or_default(),
            sinks.fingerprint
        );
        let mut config = WatcherConfig::new(
            account.clone(),
            id,
            watch.routes.clone(),
            shared.settings.spool_dir.join(id.to_string()),
        );
        config.folder.clone_from(&watch.folder);
        config.poll_interval = watch.poll_interval();
        config.backoffs = shared.settings.backoffs;
        config.on_message.clone_from(&shared.settings.on_message);
        config.mime_link = shared.settings.mime_link();
        wanted.insert(id, (fingerprint, config, account.clone(), app.clone()));
    }

    // Watchers no longer wanted stop and give their leases back.
    let gone: Vec<AccountId> = running
        .keys()
        .filter(|id| !wanted.contains_key(id))
        .copied()
        .collect();
    for id in gone {
        if let Some(r) = running.remove(&id) {
            r.handle.stop().await;
        }
        let _ = store
            .release_lease(&lease_name(id), &shared.settings.instance)
            .await;
    }

    // The leases this instance still holds, renewed in one write; the others are
    // taken one by one (usually none after the first pass).
    let renewed: std::collections::HashSet<String> = store
        .renew_leases(&shared.settings.instance, shared.settings.lease)
        .await
        .map_err(|e| error_chain(&e))?
        .into_iter()
        .collect();
    for (id, (fingerprint, config, account, app)) in wanted {
        let name = lease_name(id);
        let held = renewed.contains(&name)
            || store
                .acquire_lease(&name, &shared.settings.instance, shared.settings.lease)
                .await
                .map_err(|e| error_chain(&e))?;
        if !held {
            // Another instance watches it (or took it over while this one stalled).
            if let Some(r) = running.remove(&id) {
                tracing::info!(
                    account = account.name.as_str(),
                    "another instance holds the account's lease; its watcher stops here"
                );
                r.handle.stop().await;
            }
            continue;
        }
        if let Some(r) = running.get(&id)
            && r.fingerprint == fingerprint
            && (!r.handle.is_finished() || !explicit)
        {
            continue;
        }
        if let Some(r) = running.remove(&id) {
            r.handle.stop().await;
        }
        let Some(incoming) = account.incoming.as_ref().map(|e| e.transport) else {
            continue;
        };
        let sign_in = shared.sign_in.clone();
        let source = move || {
            let sign_in = sign_in.clone();
            let account = account.clone();
            let app = app.clone();
            async move {
                sign_in
                    .credentials(&account, app.as_ref(), incoming)
                    .await
                    .map_err(|e| {
                        let class = e.class();
                        MailboxError::with_source(
                            class,
                            ErrorKind::of_class(class),
                            format!("account {} could not sign in", account.name),
                            e,
                        )
                    })
            }
        };
        let handle = watcher::spawn(
            config,
            source,
            sinks.set.clone(),
            store.clone(),
            shared.events.clone(),
            &shared.cancel,
        );
        running.insert(
            id,
            Running {
                fingerprint,
                handle,
            },
        );
    }
    Ok(())
}

/// The accounts' outgoing sides for the outbox sender: each looked up when the
/// sender opens a session for the account (once per pass, and again after
/// [`mailbridge_connector::outbox::SIDE_REUSE`] of use, so accounts changed while the
/// daemon runs take effect) and signed in through the process's [`SignIn`].
#[derive(Debug)]
pub struct AccountSides {
    pub store: Store,
    pub sign_in: Arc<SignIn>,
    /// The configuration file whose accounts join the store's.
    pub config_file: PathBuf,
}

impl OutgoingSides for AccountSides {
    async fn outgoing(&self, id: AccountId) -> Result<OutgoingSide, MailboxError> {
        let accounts = mailbridge_accounts::catalog::by_id(&self.store, &self.config_file)
            .await
            .map_err(|e| {
                let class = e.class();
                MailboxError::with_source(
                    class,
                    ErrorKind::of_class(class),
                    "failed to read the accounts",
                    e,
                )
            })?;
        let Some((account, app)) = accounts.get(&id) else {
            return Err(MailboxError::misconfigured(format!(
                "the message's account ({id}) is not in the configuration any more: add it again, or leave the message"
            )));
        };
        outgoing_side(&self.sign_in, account, app.as_ref()).await
    }
}

/// The outgoing side of `account`, signed in through `sign_in`; a clear error when
/// it cannot send (sending off, no outgoing side, no sign-in).
pub async fn outgoing_side(
    sign_in: &SignIn,
    account: &AccountConfig,
    app: Option<&AppConfig>,
) -> Result<OutgoingSide, MailboxError> {
    if !account.send {
        return Err(MailboxError::misconfigured(format!(
            "sending is off for account {}: turn it on with `mailbridge account edit {} --send true`",
            account.name, account.name
        )));
    }
    let Some(endpoint) = account.outgoing_side().cloned() else {
        return Err(MailboxError::misconfigured(format!(
            "account {} has no outgoing side: set one with `mailbridge account edit {} --outgoing smtp+starttls://host`",
            account.name, account.name
        )));
    };
    let signed_in = sign_in
        .credentials(account, app, endpoint.transport)
        .await
        .map_err(|e| {
            let class = e.class();
            MailboxError::with_source(
                class,
                ErrorKind::of_class(class),
                format!("account {} could not sign in", account.name),
                e,
            )
        })?;
    let sent_copy = match (&account.sent_copy, endpoint.transport, &account.incoming) {
        (Some(folder), Transport::Smtp, Some(incoming))
            if incoming.transport == Transport::Imap =>
        {
            Some(SentCopy {
                account: account.clone(),
                folder: folder.clone(),
                sign_in: sign_in
                    .credentials(account, app, Transport::Imap)
                    .await
                    .map_err(|e| {
                        let class = e.class();
                        MailboxError::with_source(
                            class,
                            ErrorKind::of_class(class),
                            format!(
                                "account {} could not sign in to its IMAP side for the sent copy",
                                account.name
                            ),
                            e,
                        )
                    })?,
            })
        }
        (Some(folder), Transport::Smtp, _) => {
            tracing::warn!(
                account = account.name.as_str(),
                folder = folder.as_str(),
                "sent_copy needs an IMAP incoming side; no copy is kept"
            );
            None
        }
        // Graph and EWS keep their own copy in Sent Items.
        _ => None,
    };
    Ok(OutgoingSide {
        endpoint,
        who: mailbridge_mailbox::connect::Identity::of(account),
        sign_in: signed_in,
        max_message_size: account.limits.max_message_size,
        sent_copy,
    })
}

/// Whether a watcher state means the account needs a person.
pub fn needs_attention(state: &WatcherState) -> bool {
    matches!(
        state,
        WatcherState::NeedsSignIn { .. } | WatcherState::Disabled { reason: Some(_) }
    )
}
