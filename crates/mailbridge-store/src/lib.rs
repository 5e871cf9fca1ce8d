//! mailbridge-store: what mailbridge keeps between runs.
//!
//! One type, [`Store`], over two backends with the same behaviour and one test suite:
//! SQLite ([`Store::open`], a file in WAL mode, the embedded default) and PostgreSQL
//! ([`Store::connect`] with a `postgres://` URL, for several instances sharing one
//! store). Both run the same SQL, each with its own connection settings and
//! migrations (`migrations/sqlite`, `migrations/postgres`).
//!
//! Parts:
//! - [`files`]: directories 0700 and files 0600 (database, `-wal`, `-shm`, `.lock`,
//!   key file, passphrase salt) whatever the umask.
//! - [`master_key`]: the master key, kept outside the database: from
//!   `MAILBRIDGE_MASTER_KEY`, from a key file created on first run with mode 0600, or
//!   derived from a passphrase with Argon2id.
//! - [`sealed`]: sealing with XChaCha20-Poly1305 (random 192-bit nonce, the record id
//!   as associated data), so a sealed value cannot be moved to another record.
//! - [`store`]: opening either backend, sealed secrets, account sign-in state and
//!   master-key rotation; [`token_store`]: the store as `mailbridge-auth`'s
//!   refresh-token store.
//! - [`api_tokens`]: the daemon's API tokens (name, role, user, SHA-256 only; revoked
//!   ones kept with the time), added, found by hash, listed, revoked and counted.
//! - [`ids`]: the stable ids (UUIDs) of apps, accounts and providers, kept when a name
//!   is edited; sign-in state and checkpoints are kept by account id.
//! - [`records`]: apps, accounts and user-defined providers (their configuration
//!   documents, without secrets), each account folder's download checkpoint, and
//!   [`Store::import`], a batch written all or nothing.
//! - [`outbox`]: the durable outbox (messages queued for sending, claimed under a
//!   lease, in the order of submission per account; `FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL), and why it is a table of our own rather than a job-queue crate.
//! - [`parked`]: parked deliveries (received messages a sink kept refusing, with
//!   their MIME, remaining sinks and pending source action), claimed under a lease
//!   for retries, listed by page, retried on demand or dropped.
//! - [`users`]: the people of the web UI (name, role, language, disabled; the
//!   password only as an Argon2id hash made by the caller), their web sessions (by
//!   the SHA-256 of the id, with the CSRF token and expiry) and the first run's
//!   one-time setup token.
//! - [`audit`]: the audit log (who changed what, when and from where; appended,
//!   read newest first a page at a time) and the system's settings (key and value).
//! - [`watches`]: what the daemon does with received mail (sinks, each account's
//!   watch with its routes) and leases, which spread accounts' watchers over instances.

pub mod api_tokens;
pub mod audit;
pub mod files;
pub mod ids;
pub mod master_key;
pub mod outbox;
pub mod parked;
mod postgres;
pub mod records;
pub mod sealed;
mod sqlite;
pub mod store;
pub mod token_store;
pub mod users;
pub mod watches;

pub use api_tokens::ApiToken;
pub use audit::{Actor, AuditEntry, NewAuditEntry};
pub use ids::{AccountId, AppId, ProviderId, SinkId};
pub use master_key::MasterKey;
pub use outbox::{ClaimedMessage, Enqueued, NewOutboxMessage, OutboxEntry, OutboxId, OutboxState};
pub use parked::{ClaimedParked, NewParked, Parked, ParkedEntry, ParkedId, ParkedState};
pub use records::{Import, ImportSecret};
pub use store::{AccountState, Backend, SecretKind, SecretMeta, Store, StoreError};
pub use users::{NewUser, PasswordHash, User, WebSession};
pub use watches::{StoredSink, sink_secret_id};
