//! mailbridge-store: what mailbridge keeps between runs.
//!
//! Parts:
//! - [`files`]: directories 0700 and files 0600 (database, `-wal`, `-shm`, key file,
//!   passphrase salt) whatever the umask.
//! - [`master_key`]: the master key, kept outside the database: from
//!   `MAILBRIDGE_MASTER_KEY`, from a key file created on first run with mode 0600, or
//!   derived from a passphrase with Argon2id.
//! - [`sealed`]: sealing with XChaCha20-Poly1305 (random 192-bit nonce, the record id
//!   as associated data), so a sealed value cannot be moved to another record.
//! - [`store`]: the SQLite store (embedded default; PostgreSQL follows) with
//!   migrations, sealed secrets, account sign-in state and master-key rotation;
//!   [`token_store`]: the store as `mailbridge-auth`'s refresh-token store.
//! - [`records`]: apps, accounts and user-defined providers (their configuration
//!   documents, without secrets) and each account folder's download checkpoint.

pub mod files;
pub mod master_key;
pub mod records;
pub mod sealed;
pub mod store;
pub mod token_store;

pub use master_key::MasterKey;
pub use store::{AccountState, SecretKind, SecretMeta, Store, StoreError};
