//! The store: one type over two backends (`sqlite.rs`, `postgres.rs`),
//! sealed secrets, account sign-in state, master-key rotation.
//!
//! Both backends run the same SQL: the subset SQLite and PostgreSQL share (`$n`
//! parameters, `ON CONFLICT ... DO UPDATE`, `RETURNING`, `lower()`), written once and
//! compiled for each pool by `on_db!`. Each backend owns its connection settings and
//! its migrations.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use sqlx::Row as _;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use time::OffsetDateTime;

use crate::ids::AccountId;
use crate::master_key::{MasterKey, RandomError};
use crate::sealed::Sealer;

const KEY_CHECK_ID: &str = "meta:key_check";
const KEY_CHECK_TEXT: &[u8] = b"mailbridge master key check v1";

/// Whether an account can get tokens without a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountState {
    SignedIn,
    NeedsSignIn { reason: String },
}

/// What a secret is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretKind {
    RefreshToken,
    ClientSecret,
    CertificateKey,
    Password,
}

impl SecretKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SecretKind::RefreshToken => "refresh-token",
            SecretKind::ClientSecret => "client-secret",
            SecretKind::CertificateKey => "certificate-key",
            SecretKind::Password => "password",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "refresh-token" => SecretKind::RefreshToken,
            "client-secret" => SecretKind::ClientSecret,
            "certificate-key" => SecretKind::CertificateKey,
            "password" => SecretKind::Password,
            _ => return None,
        })
    }
}

/// What is known about a secret without opening it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    pub id: String,
    pub kind: SecretKind,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
    pub expires_at: Option<OffsetDateTime>,
}

/// Error of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error(
        "the master key does not open this database: use the key it was created with (MAILBRIDGE_MASTER_KEY, the key file, or the passphrase)"
    )]
    WrongMasterKey,
    #[error("failed to create or restrict the database file {path} to its owner")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {id} is damaged or was sealed under another key")]
    Damaged { id: String },
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error(
        "failed to connect to the PostgreSQL database {target}: check the URL, that the server runs and accepts this user"
    )]
    Connect {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "unsupported database URL {target}: use a file path, sqlite://PATH or postgres://USER@HOST/DATABASE"
    )]
    UnsupportedUrl { target: String },
    #[error("{kind} {name} exists already")]
    Exists { kind: &'static str, name: String },
    #[error("no {kind} with id {id}")]
    NotFound { kind: &'static str, id: String },
    #[error(
        "the message is {size} bytes, over the account's limit of {max}: send a smaller message or raise the account's limits.max_message_size"
    )]
    MessageTooLarge { size: u64, max: u64 },
    #[error(
        "outbox message {id} is no longer claimed by {instance}: its lease ended and it was handed on; lengthen the outbox lease"
    )]
    ClaimLost { id: String, instance: String },
    #[error("stored record {id} cannot be read")]
    Record {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The database behind a [`Store`].
#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the backend's pool; the body is written once and
/// compiled for each backend.
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite($pool) => $body,
            $crate::store::Db::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_db;

/// The store: SQLite (embedded, the default) or PostgreSQL (several instances), with
/// the same behaviour. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) db: Db,
    sealer: std::sync::Arc<std::sync::RwLock<Sealer>>,
    clock: std::sync::Arc<dyn mailbridge_types::Clock>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// Which database a [`Store`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub(crate) fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

pub(crate) fn from_unix(s: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(s).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Store {
    /// Opens (creating when missing) the SQLite database at `path` in WAL mode, runs
    /// migrations, and checks that `key` is the database's master key (a new database
    /// adopts it).
    ///
    /// The database file and its `-wal` and `-shm` files get mode 0600, and a missing
    /// parent directory is created 0700 ([`crate::files`]).
    pub async fn open(path: &Path, key: &MasterKey) -> Result<Self, StoreError> {
        let pool = crate::sqlite::open(path).await?;
        Self::with_db(Db::Sqlite(pool), key).await
    }

    /// Opens the store a URL names: `postgres://` (or `postgresql://`) for PostgreSQL,
    /// `sqlite://PATH` (or `sqlite:PATH`) for SQLite; then as [`Store::open`]: runs the
    /// backend's migrations and checks `key`.
    pub async fn connect(url: &str, key: &MasterKey) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = crate::postgres::connect(url).await?;
            return Self::with_db(Db::Postgres(pool), key).await;
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .filter(|p| !p.is_empty())
        {
            return Self::open(Path::new(path), key).await;
        }
        Err(StoreError::UnsupportedUrl {
            target: crate::postgres::redacted(url),
        })
    }

    async fn with_db(db: Db, key: &MasterKey) -> Result<Self, StoreError> {
        let sealer = Sealer::new(key);
        // Two instances starting on a new database race here: the first check value
        // written wins and both compare against it.
        let fresh = sealer.seal(KEY_CHECK_ID, KEY_CHECK_TEXT)?;
        let check: Vec<u8> = on_db!(&db, pool => {
            sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                .bind(KEY_CHECK_ID)
                .bind(fresh)
                .execute(pool)
                .await?;
            sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
                .bind(KEY_CHECK_ID)
                .fetch_one(pool)
                .await?
        });
        match sealer.open(KEY_CHECK_ID, &check) {
            Ok(text) if text == KEY_CHECK_TEXT => {}
            _ => return Err(StoreError::WrongMasterKey),
        }
        Ok(Self {
            db,
            sealer: std::sync::Arc::new(std::sync::RwLock::new(sealer)),
            clock: std::sync::Arc::new(mailbridge_types::SystemClock),
        })
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        match self.db {
            Db::Sqlite(_) => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// Uses `clock` for timestamps (tests move it to age refresh tokens).
    #[must_use]
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn mailbridge_types::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The current time by the store's clock.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Records the sign-in state of an account, by name. An account the store has no
    /// configuration for (one from the configuration file) gets an id here.
    pub async fn set_account_state(
        &self,
        account: &str,
        state: AccountState,
    ) -> Result<(), StoreError> {
        let id = self.account_id_or_register(account).await?;
        self.set_account_state_by_id(id, state).await
    }

    /// Records the sign-in state of the account with this id.
    pub async fn set_account_state_by_id(
        &self,
        account: AccountId,
        state: AccountState,
    ) -> Result<(), StoreError> {
        let (name, reason) = match &state {
            AccountState::SignedIn => ("signed-in", None),
            AccountState::NeedsSignIn { reason } => ("needs-sign-in", Some(reason.as_str())),
        };
        let now = unix(self.now());
        let done = on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO account_state (account_id, state, reason, updated_at)
                 SELECT id, $2, $3, $4 FROM accounts WHERE id = $1
                 ON CONFLICT (account_id) DO UPDATE SET state = excluded.state,
                   reason = CASE WHEN excluded.state = 'signed-in' AND account_state.state = 'signed-in'
                     THEN account_state.reason ELSE excluded.reason END,
                   updated_at = excluded.updated_at",
            )
            .bind(account.as_uuid())
            .bind(name)
            .bind(reason)
            .bind(now)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NotFound {
                kind: "account",
                id: account.to_string(),
            });
        }
        Ok(())
    }

    /// The sign-in state of an account, by name; `None` when it never signed in.
    pub async fn account_state(&self, account: &str) -> Result<Option<AccountState>, StoreError> {
        match self.account_id(account).await? {
            Some(id) => self.account_state_by_id(id).await,
            None => Ok(None),
        }
    }

    /// The sign-in state of the account with this id; `None` when it never signed in.
    pub async fn account_state_by_id(
        &self,
        account: AccountId,
    ) -> Result<Option<AccountState>, StoreError> {
        let row: Option<(String, Option<String>)> = on_db!(&self.db, pool => {
            sqlx::query_as("SELECT state, reason FROM account_state WHERE account_id = $1")
                .bind(account.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(state, reason)| {
            if state == "needs-sign-in" {
                AccountState::NeedsSignIn {
                    reason: reason.unwrap_or_default(),
                }
            } else {
                AccountState::SignedIn
            }
        }))
    }

    /// Records who signed account `account` in (the user the sign-in's answer named)
    /// while it is signed in; a refresh keeps it, a sign-in again replaces it, and
    /// "needs sign-in" forgets it. `None`: the answer named nobody.
    pub async fn set_signed_in_user(
        &self,
        account: &str,
        user: Option<&str>,
    ) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            sqlx::query(
                "UPDATE account_state SET reason = $2
                 WHERE state = 'signed-in' AND account_id IN (SELECT id FROM accounts WHERE name = $1)",
            )
            .bind(account)
            .bind(user)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Who signed the account with this id in, while it is signed in
    /// ([`Store::set_signed_in_user`]).
    pub async fn signed_in_user(&self, account: AccountId) -> Result<Option<String>, StoreError> {
        let row: Option<(Option<String>,)> = on_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT reason FROM account_state WHERE account_id = $1 AND state = 'signed-in'",
            )
            .bind(account.as_uuid())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.and_then(|(user,)| user))
    }

    /// Forgets an account's sign-in state.
    pub async fn clear_account_state(&self, account: &str) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            sqlx::query(
                "DELETE FROM account_state WHERE account_id IN (SELECT id FROM accounts WHERE name = $1)",
            )
            .bind(account)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub(crate) fn seal_bytes(&self, id: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let sealer = self
            .sealer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(sealer.seal(id, plaintext)?)
    }

    pub(crate) fn open_sealed(&self, id: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        let sealer = self
            .sealer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sealer
            .open(id, sealed)
            .map_err(|_| StoreError::Damaged { id: id.to_owned() })
    }

    /// Seals `value` as the secret `id`.
    pub(crate) fn seal_secret(
        &self,
        id: &str,
        value: &SecretString,
    ) -> Result<Vec<u8>, StoreError> {
        self.seal_bytes(id, value.expose_secret().as_bytes())
    }

    /// Stores (or replaces) a secret, sealed. The write is durable when this returns,
    /// so a rotated refresh token is safe before the new access token is used.
    pub async fn put_secret(
        &self,
        id: &str,
        kind: SecretKind,
        value: &SecretString,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let sealed = self.seal_secret(id, value)?;
        on_db!(&self.db, pool => {
            sqlx::query(PUT_SECRET)
                .bind(id)
                .bind(kind.as_str())
                .bind(sealed)
                .bind(unix(now))
                .bind(expires_at.map(unix))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Opens a secret; `None` when there is none with that id.
    pub async fn get_secret(&self, id: &str) -> Result<Option<SecretString>, StoreError> {
        let sealed: Option<Vec<u8>> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT sealed FROM secrets WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        let plain = zeroize::Zeroizing::new(self.open_sealed(id, &sealed)?);
        let text = String::from_utf8(plain.to_vec())
            .map_err(|_| StoreError::Damaged { id: id.to_owned() })?;
        Ok(Some(SecretString::from(text)))
    }

    /// Records that a secret was used (refresh-token idle tracking).
    pub async fn touch_secret(&self, id: &str, now: OffsetDateTime) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            sqlx::query("UPDATE secrets SET last_used_at = $1 WHERE id = $2")
                .bind(unix(now))
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Removes a secret; true when it existed.
    pub async fn delete_secret(&self, id: &str) -> Result<bool, StoreError> {
        let done = on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM secrets WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Metadata of every secret, by id.
    pub async fn secrets(&self) -> Result<Vec<SecretMeta>, StoreError> {
        type Meta = (String, String, i64, i64, Option<i64>, Option<i64>);
        let rows: Vec<Meta> = on_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT id, kind, created_at, updated_at, last_used_at, expires_at FROM secrets ORDER BY id",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(id, kind, created, updated, used, expires)| {
                Some(SecretMeta {
                    id,
                    kind: SecretKind::parse(&kind)?,
                    created_at: from_unix(created),
                    updated_at: from_unix(updated),
                    last_used_at: used.map(from_unix),
                    expires_at: expires.map(from_unix),
                })
            })
            .collect())
    }

    /// Re-seals every secret under `new_key` in one transaction; the number re-sealed.
    /// Afterwards only `new_key` opens the database.
    pub async fn rotate_key(&self, new_key: &MasterKey) -> Result<usize, StoreError> {
        let new_sealer = Sealer::new(new_key);
        let count = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let rows = sqlx::query("SELECT id, sealed FROM secrets")
                .fetch_all(&mut *tx)
                .await?;
            let mut count = 0;
            for row in rows {
                let id: String = row.try_get("id")?;
                let sealed: Vec<u8> = row.try_get("sealed")?;
                let plain = zeroize::Zeroizing::new(self.open_sealed(&id, &sealed)?);
                sqlx::query("UPDATE secrets SET sealed = $1 WHERE id = $2")
                    .bind(new_sealer.seal(&id, &plain)?)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                count += 1;
            }
            sqlx::query("UPDATE meta SET value = $1 WHERE key = $2")
                .bind(new_sealer.seal(KEY_CHECK_ID, KEY_CHECK_TEXT)?)
                .bind(KEY_CHECK_ID)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            count
        });
        *self
            .sealer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = new_sealer;
        Ok(count)
    }

    /// Asks the database a trivial query (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_db!(&self.db, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Closes the pool (for SQLite, flushes the WAL).
    pub async fn close(&self) {
        on_db!(&self.db, pool => pool.close().await);
    }
}

/// Writes a sealed secret: `$1` id, `$2` kind, `$3` sealed, `$4` now, `$5` expires.
pub(crate) const PUT_SECRET: &str =
    "INSERT INTO secrets (id, kind, sealed, created_at, updated_at, expires_at) VALUES ($1, $2, $3, $4, $4, $5)
     ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, sealed = excluded.sealed,
       updated_at = excluded.updated_at, expires_at = excluded.expires_at";

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0.AXoA-refresh-token-value-that-must-not-leak-9f8e7d";

    #[tokio::test]
    async fn secrets_are_sealed_on_disk_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("mailbridge.db");
        let key = MasterKey::generate().unwrap();
        let now = OffsetDateTime::now_utc();
        {
            let store = Store::open(&db, &key).await.unwrap();
            store
                .put_secret(
                    "account:alice:refresh",
                    SecretKind::RefreshToken,
                    &SecretString::from(SECRET),
                    None,
                    now,
                )
                .await
                .unwrap();
            store.close().await;
        }
        // No byte of the secret anywhere in the database files.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(16).any(|w| w == &SECRET.as_bytes()[..16]));
        }
        let store = Store::open(&db, &key).await.unwrap();
        let back = store
            .get_secret("account:alice:refresh")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back.expose_secret(), SECRET);
        let meta = store.secrets().await.unwrap();
        assert_eq!(meta.len(), 1);
        assert_eq!(meta[0].kind, SecretKind::RefreshToken);
        assert!(store.get_secret("missing").await.unwrap().is_none());
    }
}
