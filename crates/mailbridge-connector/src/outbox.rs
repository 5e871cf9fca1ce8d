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

/// The sender worker.
pub struct OutboxWorker<S> {
    store: Store,
    sides: S,
    settings: OutboxSettings,
    clock: Arc<dyn Clock>,
    jitter: Arc<dyn Fn() -> f64 + Send + Sync>,
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

    /// Claims the next due message and sends it; `None` when nothing is due.
    pub async fn send_next(&self) -> Result<Option<Outcome>, OutboxError> {
        let now = self.clock.now();
        let Some(claimed) = self
            .store
            .outbox_claim_next(&self.settings.instance, now, self.settings.lease)
            .await?
        else {
            return Ok(None);
        };
        let id = claimed.entry.id;
        let instance = &self.settings.instance;
        // The lease is renewed while the message is handed over (a third of it at a
        // time), so a long send is not taken for a stopped sender.
        let mut renew = tokio::time::interval(self.settings.lease / 3);
        renew.tick().await;
        let send = self.send(&claimed);
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
    pub async fn send_pending(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Vec<Outcome>, OutboxError> {
        let mut done = Vec::new();
        while !cancel.is_cancelled() {
            match self.send_next().await? {
                Some(outcome) => done.push(outcome),
                None => break,
            }
        }
        Ok(done)
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

    /// Hands `claimed` to its account's server; the server's answer when it took it.
    async fn send(&self, claimed: &ClaimedMessage) -> Result<Option<String>, MailboxError> {
        let side = self.sides.outgoing(claimed.entry.account).await?;
        let mut sender = AnySender::for_endpoint(&side.endpoint, &side.who, side.sign_in)?
            .with_max_message_size(side.max_message_size);
        let mut raw = RawMime::from_reader(std::io::Cursor::new(claimed.message.clone())).await?;
        if !claimed.entry.recipients.is_empty() {
            raw = raw.with_recipients(claimed.entry.recipients.clone());
        }
        if let Some(from) = &claimed.entry.mail_from {
            raw = raw.with_envelope_from(from.clone());
        }
        let sent = sender.send(Outgoing::Mime(raw)).await?;
        if let AnySender::Smtp(smtp) = sender {
            // The message is sent; a failed QUIT changes nothing about it.
            let _ = smtp.close().await;
            if let Some(copy) = side.sent_copy {
                // Sent is sent: a copy that fails is logged, never a reason to resend.
                if let Err(e) = Self::append_copy(copy, &claimed.message).await {
                    tracing::warn!(
                        account = side.who.account.as_str(),
                        outbox = %claimed.entry.id,
                        error = %mailbridge_types::error_chain(&e),
                        "the message was sent, but its copy could not be put in the sent folder"
                    );
                }
            }
        }
        Ok(sent.server_reply)
    }

    /// Appends `message` to the sent folder of `copy`'s IMAP side, marked read.
    async fn append_copy(copy: SentCopy, message: &[u8]) -> Result<(), MailboxError> {
        let mut mailbox =
            mailbridge_mailbox::connect::open_incoming(&copy.account, copy.sign_in).await?;
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
