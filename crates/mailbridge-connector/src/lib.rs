//! The connector: what moves mail from a mailbox to where it is wanted, and keeps
//! where it stopped.
//!
//! Today it holds the one sync loop ([`sync::sync`]) that `mailbridge fetch` runs:
//! list what is new in a folder since the stored checkpoint, hand it to a sink (the
//! durable Maildir download of `mailbridge_mailbox::download`), and store each
//! checkpoint ([`checkpoint::CheckpointStore`]) only once the sink made the messages
//! it covers durable. A stop or a failure at any point loses nothing, and the next
//! run goes on from the last stored checkpoint without duplicating a message.
//!
//! [`outbox`] is the sending side: the worker that takes messages from the store's
//! durable outbox in the order of submission per account, sends each through its
//! account's outgoing side (SMTP, Graph or EWS, signed in by the caller), retries
//! passing failures after the backoff and the server's `Retry-After` up to a
//! deadline, fails the rest with the reason and the fix, and never resends a message
//! whose outcome is unknown. `mailbridge outbox send-pending` runs it today.
//!
//! The daemon's watchers ([`watcher`]) run beside it: one task per account, an
//! explicit state machine (connecting, syncing, idle, waiting-until, needs-sign-in,
//! disabled) whose changes are published as events. Each round lists what is new
//! since the watcher's checkpoint, spools each message, routes it
//! (`mailbridge_sinks::route`), hands it to every sink of its route, does the route's
//! source action, and only then moves the checkpoint past it. A message a sink does
//! not accept is retried with the round's backoff, and parked once it failed
//! `park_after` times in a row, at once when the sink refused it for good or is known
//! to be down (stored with its MIME before the checkpoint moves past it, so the
//! messages behind it go on). Between rounds an
//! IMAP watcher waits in `IDLE` (renewed before 29 minutes), anything else polls;
//! a dropped session is reopened with a fresh sign-in after a backoff.
//!
//! [`parked`] is the parked delivery worker: it claims due parked messages under a
//! lease, delivers them to the sinks that have not accepted them yet (with backoff and
//! jitter, never dropping one), and leaves the source action to the account's
//! watcher; a person retries a row at once or drops it through [`parked::ParkedHandle`].
//!
//! [`spec`] is what the daemon stores and its API takes: each sink's settings
//! ([`spec::SinkSpec`], built into a working sink by [`spec::build_sink`]) and each
//! account's watch ([`spec::Watch`]: enabled, folder, poll interval, routes), each
//! with the problems that name a bad field. Which instance runs which account's
//! watcher (leases in the store) is decided by `mailbridge-server`'s daemon, which
//! runs these parts.

pub mod checkpoint;
pub mod outbox;
pub mod parked;
pub mod spec;
pub mod sync;
pub mod watcher;

pub use checkpoint::{CheckpointStore, checkpoint_key};
pub use sync::{MaildirSink, Start, SyncError, sync};
