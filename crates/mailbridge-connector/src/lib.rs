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
//! The daemon's parts will live here too: per-account watchers (IMAP IDLE, Graph
//! delta and EWS polling), routes and sinks (SMTP relay, webhook, folder,
//! attachments), the durable outbox and the leases that spread accounts over
//! instances; they run the same loop.

pub mod checkpoint;
pub mod sync;
pub mod watcher;

pub use checkpoint::{CheckpointStore, checkpoint_key};
pub use sync::{MaildirSink, Start, SyncError, sync};
