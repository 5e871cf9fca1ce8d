//! Watchers: one task per account that turns new mail into deliveries, for as long as
//! the daemon runs.
//!
//! A watcher is an explicit state machine ([`WatcherState`], moved by the pure
//! [`state::Machine`]): connecting (a fresh sign-in from the account's
//! [`SignInSource`], so a token source is reused and a renewed token is used at each
//! reconnection), syncing (a [`pipeline::deliver_round`]: each new message routed and
//! delivered, the checkpoint moved only past messages every sink accepted or that were
//! parked, by the [`state::Parking`] policy, for the parked delivery worker), idle (IMAP
//! `IDLE`, renewed before 29 minutes, a round on each `EXISTS`; polling at
//! [`WatcherConfig::poll_interval`] where `IDLE` is not offered and for the other
//! transports), waiting-until (after a failure: backoff with jitter, never shorter
//! than a `Retry-After`; then a new session), needs-sign-in (the source refused the
//! sign-in: the watcher stops), disabled (stopped; also after a sink's unknown
//! outcome, which is never resent without a person deciding). Every change is published as a
//! [`WatcherEvent`] on a broadcast channel.
//!
//! A watcher is cancelled through its [`CancellationToken`] and its task awaited
//! ([`WatcherHandle::stop`]): a message being delivered finishes, nothing after it
//! starts, and what its batch delivered so far is committed and checkpointed.

pub mod pipeline;
pub mod state;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mailbridge_mailbox::connect::{AnyMailbox, open_incoming};
use mailbridge_mailbox::mailbox::{ErrorKind, MailboxError};
use mailbridge_mailbox::send::SenderSignIn;
use mailbridge_sinks::route::Route;
use mailbridge_store::{AccountId, Store};
use mailbridge_types::config::AccountConfig;
use time::OffsetDateTime;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use pipeline::{
    AnySink, MessageHook, MessageOutcome, MimeLink, RoundError, RoundSummary, SinkSet,
};
pub use state::{Backoffs, Parking, Refusal, WatcherEvent, WatcherState};

use state::{Machine, Side};

/// The longest single IMAP `IDLE` (RFC 2177 asks clients to renew it before the
/// server's 30-minute inactivity timeout).
pub const MAX_IDLE: Duration = Duration::from_mins(29);

/// Hands out the sign-in for each new session (a token source shared with the rest
/// of the process, or a password).
pub trait SignInSource: Send + Sync {
    /// The sign-in for the next session.
    fn sign_in(&self) -> impl Future<Output = Result<SenderSignIn, MailboxError>> + Send;
}

/// A closure answering the sign-in (e.g. `move || async { Ok(SenderSignIn::AppOnly(tokens.clone())) }`).
impl<F, Fut> SignInSource for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<SenderSignIn, MailboxError>> + Send,
{
    fn sign_in(&self) -> impl Future<Output = Result<SenderSignIn, MailboxError>> + Send {
        self()
    }
}

/// What a watcher watches and where messages go.
#[derive(Debug, Clone)]
pub struct WatcherConfig {
    pub account: AccountConfig,
    /// The account's stable id in the store (checkpoints, idempotency keys).
    pub account_id: AccountId,
    /// The folder watched.
    pub folder: String,
    /// Ordered rules: the first match decides a message's sinks.
    pub routes: Vec<Route>,
    /// Where messages are spooled while being delivered.
    pub spool_dir: PathBuf,
    /// Between rounds where `IDLE` is not available.
    pub poll_interval: Duration,
    /// The longest one `IDLE` lasts before it is renewed (at most [`MAX_IDLE`]).
    pub idle_renew: Duration,
    pub backoffs: Backoffs,
    /// A message a sink refuses for a passing reason is parked after this many
    /// failures in a row (see [`Parking`]); 3 by default.
    pub park_after: u32,
    /// Told of every message a round handled (the daemon's metrics).
    pub on_message: Option<pipeline::MessageHook>,
    /// Where a webhook's receiver fetches a message too large to travel inline (the
    /// daemon's API); none: such a webhook request carries neither the MIME nor a link.
    pub mime_link: Option<pipeline::MimeLink>,
}

impl WatcherConfig {
    /// INBOX, a 60 s poll interval, IDLE renewed every 29 minutes, the usual backoffs,
    /// parking after 3 failures in a row.
    pub fn new(
        account: AccountConfig,
        account_id: AccountId,
        routes: Vec<Route>,
        spool_dir: PathBuf,
    ) -> Self {
        Self {
            account,
            account_id,
            folder: "INBOX".into(),
            routes,
            spool_dir,
            poll_interval: Duration::from_mins(1),
            idle_renew: MAX_IDLE,
            backoffs: Backoffs::default(),
            park_after: 3,
            on_message: None,
            mime_link: None,
        }
    }
}

/// A running watcher.
#[derive(Debug)]
pub struct WatcherHandle {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl WatcherHandle {
    /// Stops the watcher and waits for its task to end.
    pub async fn stop(self) {
        self.cancel.cancel();
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    /// Whether the task ended (stopped, or stopped for a sign-in).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for the task to end on its own (after [`WatcherState::NeedsSignIn`]),
    /// without stopping it.
    pub async fn finished(self) {
        if let Err(e) = self.task.await
            && e.is_panic()
        {
            std::panic::resume_unwind(e.into_panic());
        }
    }
}

/// Starts a watcher under `cancel` (a child token: stopping the handle stops only
/// this watcher). State changes go to `events`.
pub fn spawn<S: SignInSource + 'static>(
    config: WatcherConfig,
    sign_in: S,
    sinks: Arc<SinkSet>,
    store: Store,
    events: broadcast::Sender<WatcherEvent>,
    cancel: &CancellationToken,
) -> WatcherHandle {
    let cancel = cancel.child_token();
    let task = tokio::spawn(run(config, sign_in, sinks, store, events, cancel.clone()));
    WatcherHandle { cancel, task }
}

/// Publishes state changes (a repeated state is not published again).
struct Publisher {
    account: String,
    events: broadcast::Sender<WatcherEvent>,
    last: Option<WatcherState>,
}

impl Publisher {
    fn set(&mut self, state: WatcherState) {
        if self.last.as_ref() == Some(&state) {
            return;
        }
        tracing::info!(account = self.account.as_str(), state = ?state, "watcher state");
        // No receiver is not an error: events are for whoever listens.
        let _ = self.events.send(WatcherEvent {
            account: self.account.clone(),
            state: state.clone(),
            at: OffsetDateTime::now_utc(),
        });
        self.last = Some(state);
    }
}

/// Why a session ended.
enum Ended {
    Cancelled,
    Failed(Side, mailbridge_types::ErrorClass, String),
}

/// The watcher's task: sessions one after the other until cancelled or the sign-in
/// is refused.
pub async fn run<S: SignInSource>(
    config: WatcherConfig,
    sign_in: S,
    sinks: Arc<SinkSet>,
    store: Store,
    events: broadcast::Sender<WatcherEvent>,
    cancel: CancellationToken,
) {
    let mut publisher = Publisher {
        account: config.account.name.clone(),
        events,
        last: None,
    };
    let mut machine = Machine::new(config.backoffs);
    let mut parking = Parking::new(config.park_after);
    loop {
        let ended = session(
            &config,
            &sign_in,
            &sinks,
            &store,
            &mut machine,
            &mut parking,
            &mut publisher,
            &cancel,
        )
        .await;
        let (side, class, reason) = match ended {
            Ended::Cancelled => break,
            Ended::Failed(side, class, reason) => (side, class, reason),
        };
        let now = OffsetDateTime::now_utc();
        let next = machine.failed(side, class, reason, now, state::jitter_unit());
        publisher.set(next.clone());
        match next {
            WatcherState::WaitingUntil { until, .. } => {
                let wait = state::until(OffsetDateTime::now_utc(), until);
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
            WatcherState::NeedsSignIn { .. } | WatcherState::Disabled { .. } => return,
            _ => {}
        }
    }
    publisher.set(WatcherState::Disabled { reason: None });
}

/// Which side a source's error counts against: a refused sign-in (not a passing
/// failure of the token service) is [`Side::SignIn`].
fn source_side(e: &MailboxError) -> Side {
    let passing = matches!(
        e.class,
        mailbridge_types::ErrorClass::Transient | mailbridge_types::ErrorClass::Throttled { .. }
    );
    if e.kind == ErrorKind::SignInRefused && !passing {
        Side::SignIn
    } else {
        Side::Source
    }
}

/// One session: connect, then rounds and waits until something fails or the watcher
/// is cancelled.
#[expect(
    clippy::too_many_arguments,
    reason = "the watcher task's parts, each borrowed for one session; a struct would only rename them"
)]
async fn session<S: SignInSource>(
    config: &WatcherConfig,
    sign_in: &S,
    sinks: &SinkSet,
    store: &Store,
    machine: &mut Machine,
    parking: &mut Parking,
    publisher: &mut Publisher,
    cancel: &CancellationToken,
) -> Ended {
    let source_failed =
        |e: &MailboxError| Ended::Failed(source_side(e), e.class, mailbridge_types::error_chain(e));
    publisher.set(WatcherState::Connecting);
    let opened = tokio::select! {
        () = cancel.cancelled() => return Ended::Cancelled,
        opened = async {
            let signed_in = sign_in.sign_in().await?;
            open_incoming(&config.account, signed_in).await
        } => opened,
    };
    let mut mailbox = match opened {
        Ok(m) => m,
        Err(e) => return source_failed(&e),
    };
    let round = pipeline::Round {
        account_id: config.account_id,
        account: &config.account.name,
        folder: &config.folder,
        spool_dir: &config.spool_dir,
        max_message_size: config.account.limits.max_message_size,
        batch: pipeline::BATCH,
        batch_bytes: pipeline::BATCH_BYTES,
        park_backoff: config.backoffs.delivery,
        on_message: config.on_message.as_ref(),
        mime_link: config.mime_link.as_ref(),
    };
    let idle_renew = config.idle_renew.min(MAX_IDLE);
    loop {
        publisher.set(WatcherState::Syncing);
        let listed = match pipeline::deliver_round(
            &mut mailbox,
            &round,
            &config.routes,
            sinks,
            store,
            parking,
            cancel,
        )
        .await
        {
            Ok(summary) => {
                if summary.listed > 0 {
                    tracing::info!(
                        account = config.account.name.as_str(),
                        folder = config.folder.as_str(),
                        listed = summary.listed,
                        delivered = summary.delivered,
                        unrouted = summary.unrouted,
                        parked = summary.parked,
                        parked_before = summary.parked_before,
                        "round done"
                    );
                }
                publisher.set(machine.succeeded());
                summary.listed
            }
            Err(e) => {
                let side = e.source_error().map_or(Side::Delivery, source_side);
                return Ended::Failed(side, e.class(), mailbridge_types::error_chain(&e));
            }
        };
        if cancel.is_cancelled() {
            return Ended::Cancelled;
        }
        if listed > 0 {
            // Mail that arrived during the round may have been announced by one of its
            // commands' answers and would not be announced again in IDLE: look again
            // first, and wait only after a round found nothing.
            continue;
        }
        // Wait for new mail: IDLE where the server offers it, else the poll interval.
        let can_idle = match &mut mailbox {
            AnyMailbox::Imap(imap) => imap.client_mut().has_capability("IDLE"),
            _ => false,
        };
        match &mut mailbox {
            AnyMailbox::Imap(imap) if can_idle => {
                // An IDLE that ends without news is renewed at once; news (or the
                // renewal time) leads to a round.
                let idled = tokio::select! {
                    () = cancel.cancelled() => return Ended::Cancelled,
                    idled = imap.client_mut().idle(idle_renew) => idled,
                };
                if let Err(e) = idled {
                    return source_failed(&MailboxError::from(e));
                }
            }
            _ => {
                // A POP3 session holds the maildrop's lock and sees nothing new: it
                // ends now, and the next round opens a new one.
                if let AnyMailbox::Pop3(pop) = &mut mailbox
                    && let Err(e) = pop.release().await
                {
                    return source_failed(&e);
                }
                tokio::select! {
                    () = cancel.cancelled() => return Ended::Cancelled,
                    () = tokio::time::sleep(config.poll_interval) => {}
                }
            }
        }
    }
}
