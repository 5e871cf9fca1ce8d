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
//! The daemon's other parts will live here too: per-account watchers (IMAP IDLE,
//! Graph delta and EWS polling), routes to the sinks, and the leases that spread
//! accounts over instances; they run the same loop.

pub mod checkpoint;
pub mod outbox;
pub mod sync;

pub use checkpoint::{CheckpointStore, checkpoint_key};
pub use sync::{MaildirSink, Start, SyncError, sync};
