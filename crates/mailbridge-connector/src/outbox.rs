//! The outbox's sender: takes queued messages from the store's durable outbox
//! ([`mailbridge_store::outbox`]) one at a time and sends each through its account's
//! outgoing side ([`AnySender`]: SMTP, Graph or EWS).
//!
//! What becomes of a message, by the class of the failure ([`ErrorClass`]):
//! - sent: `sent`, with the server's answer;
//! - transient or throttled (SMTP 4xx, HTTP 429 and 5xx, a server that cannot be
//!   reached): `retrying` at now + [`Backoff::DELIVERY`]'s wait for the attempt,
//!   never earlier than the server's `Retry-After`; once the message is older than
//!   the deadline ([`OutboxSettings::deadline`], 24 h by default), `failed`;
//! - outcome unknown (the connection broke after the message was handed over):
//!   `outcome-unknown`, never resent by the worker;
//! - anything else (refused for good, misconfigured, needs an admin or a sign-in, over
//!   a limit): `failed`, with the reason and the fix.
//!
//! The account's sign-in is the caller's ([`OutgoingSides`]), so the daemon's and the
//! CLI's `SignIn` (one token cache per process) is the one used. Cancelling stops the
//! worker from claiming; a message being handed over is finished first, so that its
//! state is known.
//!
//! Sessions: the worker keeps each account's sender ([`AnySender`]) open while that
//! account has messages due, so a run of messages goes over one SMTP session (one
//! connection, STARTTLS and sign-in; `MAIL FROM` to the final `.` per message) and one
//! HTTP connection pool for Graph and EWS. The account is looked up ([`OutgoingSides`])
//! when its session opens, so at most once per pass and then again every
//! [`SIDE_REUSE`] (an account changed meanwhile takes effect then). Up to
//! [`MAX_SESSIONS`] accounts keep a session at once (messages of several accounts
//! interleaved); the longest unused is closed for a new one. A session is closed
//! (`QUIT`) when nothing is due any more, when the pass ends (cancelled, or the store
//! failed), and after any failure to send on it, so the next message opens a fresh one.
//! A reused SMTP session the server closed while it was idle (a dropped connection, or
//! `421` as Postfix says after its idle timeout) is noticed before any of the message's
//! body went out, and the message is sent on one new session (see
//! [`mailbridge_mailbox::send::SmtpSender`]); once the whole message went out (after the
//! final `.`) a dropped connection is `outcome-unknown`, never resent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mailbridge_mailbox::connect::Identity;
use mailbridge_mailbox::mailbox::MailboxError;
use mailbridge_mailbox::send::{AnySender, Outgoing, RawMime, Sender as _, SenderSignIn};
use mailbridge_store::outbox::{ClaimedMessage, OutboxId};
use mailbridge_store::{AccountId, Store, StoreError};
use mailbridge_types::backoff::Backoff;
use mailbridge_types::config::EndpointConfig;
use mailbridge_types::{Clock, ErrorClass};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// An account's outgoing side, as the caller signs it in.
pub struct OutgoingSide {
    /// Where and how it sends (the account's `outgoing`).
    pub endpoint: EndpointConfig,
    /// Who the account is on the wire.
    pub who: Identity,
    /// Its sign-in (a token source from the process's `SignIn`, a password, none).
    pub sign_in: SenderSignIn,
    /// The account's `limits.max_message_size`.
    pub max_message_size: u64,
    /// Where a copy of what is sent over SMTP goes (the account's `sent_copy`).
    pub sent_copy: Option<SentCopy>,
}

/// A copy of each message sent over SMTP, appended (marked read) to a folder of the
/// account's IMAP side: SMTP servers keep no copy; Graph and EWS keep their own.
pub struct SentCopy {
    /// The account (its incoming side is the IMAP server).
    pub account: mailbridge_types::config::AccountConfig,
    /// The folder, e.g. `Sent`.
    pub folder: String,
    /// The sign-in for the IMAP side.
    pub sign_in: SenderSignIn,
}

impl std::fmt::Debug for SentCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentCopy")
            .field("account", &self.account.name)
            .field("folder", &self.folder)
            .field("sign_in", &self.sign_in)
            .finish()
    }
}

impl std::fmt::Debug for OutgoingSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingSide")
            .field("endpoint", &self.endpoint)
            .field("account", &self.who.account)
            .field("sign_in", &self.sign_in)
            .finish_non_exhaustive()
    }
}

/// Gives the worker each account's outgoing side, signed in.
pub trait OutgoingSides: Send + Sync {
    /// The outgoing side of the account with this id; an error (with its class) when
    /// it cannot send (no such account, sending switched off, no sign-in).
    fn outgoing(
        &self,
        account: AccountId,
    ) -> impl Future<Output = Result<OutgoingSide, MailboxError>> + Send;
}

impl<T: OutgoingSides> OutgoingSides for Arc<T> {
    fn outgoing(
        &self,
        account: AccountId,
    ) -> impl Future<Output = Result<OutgoingSide, MailboxError>> + Send {
        (**self).outgoing(account)
    }
}

/// How the worker runs.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// This sender's name in claims (`claimed_by`): unique per running instance.
    pub instance: String,
    /// How long a claim lasts; renewed every third of it while a message is being
    /// sent. A sender that stops while sending leaves the message `outcome-unknown`
    /// when its lease ends.
    pub lease: Duration,
    /// A message still failing this long after it was queued fails for good.
    pub deadline: Duration,
    /// The wait between attempts.
    pub backoff: Backoff,
    /// [`OutboxWorker::run`]: how often to look for messages queued by other
    /// processes while nothing is due.
    pub poll_interval: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            instance: format!("mailbridge-{}", std::process::id()),
            lease: Duration::from_mins(15),
            deadline: Duration::from_hours(24),
            backoff: Backoff::DELIVERY,
            poll_interval: Duration::from_secs(5),
        }
    }
}

/// What happened to a message the worker took.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The server accepted it.
    Sent {
        id: OutboxId,
        server_reply: Option<String>,
    },
    /// Tried again at `at`.
    Retrying {
        id: OutboxId,
        at: OffsetDateTime,
        error: String,
    },
    /// Will not be sent.
    Failed { id: OutboxId, error: String },
    /// Maybe sent: waits for a person.
    OutcomeUnknown { id: OutboxId, error: String },
}

impl Outcome {
    /// The message's id.
    pub fn id(&self) -> OutboxId {
        match self {
            Outcome::Sent { id, .. }
            | Outcome::Retrying { id, .. }
            | Outcome::Failed { id, .. }
            | Outcome::OutcomeUnknown { id, .. } => *id,
        }
    }
}

/// The worker's own failure: the store could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    #[error("the outbox's store failed")]
    Store(#[from] StoreError),
}

/// How many accounts keep a session open at once (see the module's overview).
pub const MAX_SESSIONS: usize = 16;

/// How long an account's looked-up outgoing side (and the session opened from it)
/// serves before the account is looked up again: an account edited while its
/// messages keep coming takes effect within this time (and at the next pass anyway).
pub const SIDE_REUSE: Duration = Duration::from_secs(30);

/// The longest wait for a server's answer to `QUIT` when a session is closed.
const QUIT_WAIT: Duration = Duration::from_secs(10);

/// An account's open sender, kept while its messages are due.
struct Session {
    sender: AnySender,
    /// The account's name, for logs.
    name: String,
    sent_copy: Option<SentCopy>,
    /// When the account was looked up (monotonic).
    looked_up: tokio::time::Instant,
    /// When it was last used ([`Sessions::uses`] at the time), to close the longest unused.
    last_use: u64,
}

impl Session {
    /// Ends the session: `QUIT` for SMTP (its answer changes nothing about what was
    /// sent, so a failure is only logged); Graph and EWS just drop their pool.
    async fn close(self) {
        if let AnySender::Smtp(smtp) = self.sender
            && smtp.is_connected()
        {
            match tokio::time::timeout(QUIT_WAIT, smtp.close()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(
                    account = self.name.as_str(),
                    error = %mailbridge_types::error_chain(&e),
                    "QUIT failed on an outbox SMTP session"
                ),
                Err(_) => tracing::debug!(
                    account = self.name.as_str(),
                    "no answer to QUIT on an outbox SMTP session; dropped"
                ),
            }
        }
    }
}

/// The open sessions, by account.
#[derive(Default)]
struct Sessions {
    open: HashMap<AccountId, Session>,
    /// Messages sent through sessions so far (a logical clock for `last_use`).
    uses: u64,
}

impl Sessions {
    /// Closes every session.
    async fn close_all(&mut self) {
        for (_, session) in self.open.drain() {
            session.close().await;
        }
    }
}

/// The sender worker.
pub struct OutboxWorker<S> {
    store: Store,
    sides: S,
    settings: OutboxSettings,
    clock: Arc<dyn Clock>,
    jitter: Arc<dyn Fn() -> f64 + Send + Sync>,
    /// The accounts' open sessions; held by the one `send_next` running at a time.
    sessions: tokio::sync::Mutex<Sessions>,
}

impl<S> std::fmt::Debug for OutboxWorker<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxWorker")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<S: OutgoingSides> OutboxWorker<S> {
    /// A worker over `store`'s outbox, sending through `sides`.
    pub fn new(store: Store, sides: S, settings: OutboxSettings) -> Self {
        Self {
            store,
            sides,
            settings,
            clock: Arc::new(mailbridge_types::SystemClock),
            jitter: Arc::new(rand::random::<f64>),
            sessions: tokio::sync::Mutex::default(),
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

    /// Claims the next due message and sends it; `None` when nothing is due (then the
    /// open sessions are closed). The account's session stays open for its next
    /// message: [`Self::send_pending`] closes it at the end, [`Self::close_sessions`]
    /// when called on its own.
    pub async fn send_next(&self) -> Result<Option<Outcome>, OutboxError> {
        let mut sessions = self.sessions.lock().await;
        let now = self.clock.now();
        let claimed = match self
            .store
            .outbox_claim_next(&self.settings.instance, now, self.settings.lease)
            .await
        {
            Ok(Some(claimed)) => claimed,
            Ok(None) => {
                sessions.close_all().await;
                return Ok(None);
            }
            Err(e) => {
                sessions.close_all().await;
                return Err(e.into());
            }
        };
        let id = claimed.entry.id;
        let instance = &self.settings.instance;
        // The lease is renewed while the message is handed over (a third of it at a
        // time), so a long send is not taken for a stopped sender.
        let mut renew = tokio::time::interval(self.settings.lease / 3);
        renew.tick().await;
        let send = self.send(&claimed, &mut sessions);
        tokio::pin!(send);
        let result = loop {
            tokio::select! {
                result = &mut send => break result,
                _ = renew.tick() => {
                    let until = self.clock.now() + self.settings.lease;
                    self.store.outbox_renew_claim(id, instance, until).await?;
                }
            }
        };
        let outcome = match result {
            Ok(server_reply) => {
                self.store
                    .outbox_mark_sent(id, instance, self.clock.now(), server_reply.as_deref())
                    .await?;
                Outcome::Sent { id, server_reply }
            }
            Err(e) => self.after_failure(&claimed, &e).await?,
        };
        Ok(Some(outcome))
    }

    /// Sends until nothing is due (everything sent, failed, or waiting for a later
    /// time) or `cancel` is cancelled; what happened to each message taken.
    ///
    /// The sessions opened meanwhile are closed before it returns.
    pub async fn send_pending(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Vec<Outcome>, OutboxError> {
        let mut done = Vec::new();
        let result = loop {
            if cancel.is_cancelled() {
                break Ok(done);
            }
            match self.send_next().await {
                Ok(Some(outcome)) => done.push(outcome),
                Ok(None) => break Ok(done),
                Err(e) => break Err(e),
            }
        };
        self.close_sessions().await;
        result
    }

    /// Closes the sessions kept open for the next messages (`QUIT`).
    pub async fn close_sessions(&self) {
        self.sessions.lock().await.close_all().await;
    }

    /// The daemon's loop: sends what is due, then waits until the next message is
    /// due (at most [`OutboxSettings::poll_interval`]), until `cancel` is cancelled.
    pub async fn run(&self, cancel: CancellationToken) -> Result<(), OutboxError> {
        while !cancel.is_cancelled() {
            self.send_pending(&cancel).await?;
            let mut wait = self.settings.poll_interval;
            if let Some(due) = self.store.outbox_next_due().await? {
                let until = (due - self.clock.now()).max(time::Duration::ZERO);
                wait = wait.min(until.unsigned_abs());
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        Ok(())
    }

    /// Hands `claimed` to its account's server, over the account's open session or a
    /// new one; the server's answer when it took it.
    async fn send(
        &self,
        claimed: &ClaimedMessage,
        sessions: &mut Sessions,
    ) -> Result<Option<String>, MailboxError> {
        let account = claimed.entry.account;
        // The session is out of the map while it sends: back in only if all went well.
        let mut session = match sessions.open.remove(&account) {
            Some(session) if session.looked_up.elapsed() < SIDE_REUSE => session,
            // Looked up long ago: the account may have changed.
            Some(old) => {
                old.close().await;
                self.open_session(account).await?
            }
            None => self.open_session(account).await?,
        };
        let sent = match self.hand_over(claimed, &mut session.sender).await {
            Ok(sent) => sent,
            Err(e) => {
                // Whatever failed, the next message starts on a fresh session.
                session.close().await;
                return Err(e);
            }
        };
        if let (AnySender::Smtp(_), Some(copy)) = (&session.sender, &session.sent_copy) {
            // Sent is sent: a copy that fails is logged, never a reason to resend.
            if let Err(e) = Self::append_copy(copy, &claimed.message).await {
                tracing::warn!(
                    account = session.name.as_str(),
                    outbox = %claimed.entry.id,
                    error = %mailbridge_types::error_chain(&e),
                    "the message was sent, but its copy could not be put in the sent folder"
                );
            }
        }
        if sessions.open.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .open
                .iter()
                .min_by_key(|(_, s)| s.last_use)
                .map(|(id, _)| *id)
            && let Some(old) = sessions.open.remove(&oldest)
        {
            old.close().await;
        }
        sessions.uses += 1;
        session.last_use = sessions.uses;
        sessions.open.insert(account, session);
        Ok(sent)
    }

    /// Looks `account` up and opens its sender (an SMTP sender connects when it first
    /// sends).
    async fn open_session(&self, account: AccountId) -> Result<Session, MailboxError> {
        let side = self.sides.outgoing(account).await?;
        let sender = AnySender::for_endpoint(&side.endpoint, &side.who, side.sign_in)?
            .with_max_message_size(side.max_message_size);
        Ok(Session {
            sender,
            name: side.who.account,
            sent_copy: side.sent_copy,
            looked_up: tokio::time::Instant::now(),
            last_use: 0,
        })
    }

    /// `claimed`'s message, with its envelope, through `sender`.
    async fn hand_over(
        &self,
        claimed: &ClaimedMessage,
        sender: &mut AnySender,
    ) -> Result<Option<String>, MailboxError> {
        let mut raw = RawMime::from_reader(std::io::Cursor::new(claimed.message.clone())).await?;
        if !claimed.entry.recipients.is_empty() {
            raw = raw.with_recipients(claimed.entry.recipients.clone());
        }
        if let Some(from) = &claimed.entry.mail_from {
            raw = raw.with_envelope_from(from.clone());
        }
        Ok(sender.send(Outgoing::Mime(raw)).await?.server_reply)
    }

    /// Appends `message` to the sent folder of `copy`'s IMAP side, marked read.
    async fn append_copy(copy: &SentCopy, message: &[u8]) -> Result<(), MailboxError> {
        let mut mailbox =
            mailbridge_mailbox::connect::open_incoming(&copy.account, copy.sign_in.clone()).await?;
        let mailbridge_mailbox::connect::AnyMailbox::Imap(imap) = &mut mailbox else {
            return Err(MailboxError::misconfigured(format!(
                "account {} keeps copies of sent mail in {}, which needs an IMAP incoming side",
                copy.account.name, copy.folder
            )));
        };
        imap.client_mut()
            .append(
                &copy.folder,
                true,
                message.len() as u64,
                &mut std::io::Cursor::new(message),
            )
            .await
            .map_err(MailboxError::from)?;
        Ok(())
    }

    /// Records what `error` means for `claimed`.
    async fn after_failure(
        &self,
        claimed: &ClaimedMessage,
        error: &MailboxError,
    ) -> Result<Outcome, OutboxError> {
        let id = claimed.entry.id;
        let instance = &self.settings.instance;
        let text = error.detail();
        let class = error.class;
        let now = self.clock.now();
        match class {
            ErrorClass::Transient | ErrorClass::Throttled { .. } => {
                let deadline = claimed.entry.created_at + self.settings.deadline;
                if now >= deadline {
                    let error = format!(
                        "still failing {} after it was queued ({} attempts), given up: {text}; send it again once the cause is fixed",
                        humane(self.settings.deadline),
                        claimed.entry.attempts
                    );
                    self.store
                        .outbox_mark_failed(id, instance, &error, class.as_str())
                        .await?;
                    return Ok(Outcome::Failed { id, error });
                }
                let retry_after = match class {
                    ErrorClass::Throttled { retry_after } => retry_after,
                    _ => None,
                };
                let attempt = claimed.entry.attempts.saturating_sub(1);
                let wait = self
                    .settings
                    .backoff
                    .wait(attempt, (self.jitter)(), retry_after);
                // The store keeps whole seconds: rounded up, never before the wait.
                let at = now + wait;
                let at = if at.nanosecond() == 0 {
                    at
                } else {
                    at.replace_nanosecond(0).unwrap_or(at) + Duration::from_secs(1)
                };
                self.store
                    .outbox_mark_retry(id, instance, at, &text, class.as_str())
                    .await?;
                Ok(Outcome::Retrying {
                    id,
                    at,
                    error: text,
                })
            }
            ErrorClass::OutcomeUnknown => {
                let error = format!(
                    "{text}; the message is not resent by itself: check the recipient's mailbox or Sent Items, then send it again if it is missing"
                );
                self.store
                    .outbox_mark_outcome_unknown(id, instance, &error)
                    .await?;
                Ok(Outcome::OutcomeUnknown { id, error })
            }
            _ => {
                self.store
                    .outbox_mark_failed(id, instance, &text, class.as_str())
                    .await?;
                Ok(Outcome::Failed { id, error: text })
            }
        }
    }
}

/// `d` in hours, minutes or seconds, for messages.
fn humane(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s.is_multiple_of(3600) {
        format!("{} h", s / 3600)
    } else if s >= 60 && s.is_multiple_of(60) {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(humane(Duration::from_hours(24)), "24 h");
        assert_eq!(humane(Duration::from_mins(90)), "90 min");
        assert_eq!(humane(Duration::from_secs(45)), "45 s");
    }
}
