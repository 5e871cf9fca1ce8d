//! The SQLite store: migrations, sealed secrets, master-key rotation.

use std::path::Path;
use std::str::FromStr as _;

use secrecy::{ExposeSecret, SecretString};
use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use time::OffsetDateTime;

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
    fn as_str(self) -> &'static str {
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
    #[error("stored record {id} cannot be read")]
    Record {
        id: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: SqlitePool,
    sealer: std::sync::Arc<std::sync::RwLock<Sealer>>,
    clock: std::sync::Arc<dyn mailbridge_types::Clock>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

pub(crate) fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn from_unix(s: i64) -> OffsetDateTime {
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
        let file_err = |source| StoreError::File {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            crate::files::create_private_dir(parent).map_err(file_err)?;
        }
        crate::files::create_private_file(path).map_err(file_err)?;
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        // Journals left by an older version keep their mode until tightened.
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut journal = path.as_os_str().to_owned();
            journal.push(suffix);
            crate::files::make_private(Path::new(&journal)).map_err(file_err)?;
        }
        Self::from_pool(pool, key).await
    }

    async fn from_pool(pool: SqlitePool, key: &MasterKey) -> Result<Self, StoreError> {
        sqlx::migrate!("./migrations").run(&pool).await?;
        let sealer = Sealer::new(key);
        let check: Option<Vec<u8>> = sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(KEY_CHECK_ID)
            .fetch_optional(&pool)
            .await?;
        match check {
            Some(sealed) => match sealer.open(KEY_CHECK_ID, &sealed) {
                Ok(text) if text == KEY_CHECK_TEXT => {}
                _ => return Err(StoreError::WrongMasterKey),
            },
            None => {
                sqlx::query("INSERT INTO meta (key, value) VALUES (?, ?)")
                    .bind(KEY_CHECK_ID)
                    .bind(sealer.seal(KEY_CHECK_ID, KEY_CHECK_TEXT)?)
                    .execute(&pool)
                    .await?;
            }
        }
        Ok(Self {
            pool,
            sealer: std::sync::Arc::new(std::sync::RwLock::new(sealer)),
            clock: std::sync::Arc::new(mailbridge_types::SystemClock),
        })
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

    /// Records the sign-in state of an account.
    pub async fn set_account_state(
        &self,
        account: &str,
        state: AccountState,
    ) -> Result<(), StoreError> {
        let (name, reason) = match &state {
            AccountState::SignedIn => ("signed-in", None),
            AccountState::NeedsSignIn { reason } => ("needs-sign-in", Some(reason.as_str())),
        };
        sqlx::query(
            "INSERT INTO account_state (account, state, reason, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT(account) DO UPDATE SET state = excluded.state, reason = excluded.reason,
               updated_at = excluded.updated_at",
        )
        .bind(account)
        .bind(name)
        .bind(reason)
        .bind(unix(self.now()))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The sign-in state of an account; `None` when it never signed in.
    pub async fn account_state(&self, account: &str) -> Result<Option<AccountState>, StoreError> {
        let row = sqlx::query("SELECT state, reason FROM account_state WHERE account = ?")
            .bind(account)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| {
            let state: String = r.try_get("state").unwrap_or_default();
            if state == "needs-sign-in" {
                AccountState::NeedsSignIn {
                    reason: r
                        .try_get::<Option<String>, _>("reason")
                        .ok()
                        .flatten()
                        .unwrap_or_default(),
                }
            } else {
                AccountState::SignedIn
            }
        }))
    }

    /// Forgets an account's sign-in state.
    pub async fn clear_account_state(&self, account: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM account_state WHERE account = ?")
            .bind(account)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn seal(&self, id: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let sealer = self
            .sealer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(sealer.seal(id, plaintext)?)
    }

    fn open_sealed(&self, id: &str, sealed: &[u8]) -> Result<Vec<u8>, StoreError> {
        let sealer = self
            .sealer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        sealer
            .open(id, sealed)
            .map_err(|_| StoreError::Damaged { id: id.to_owned() })
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
        let sealed = self.seal(id, value.expose_secret().as_bytes())?;
        sqlx::query(
            "INSERT INTO secrets (id, kind, sealed, created_at, updated_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, sealed = excluded.sealed,
               updated_at = excluded.updated_at, expires_at = excluded.expires_at",
        )
        .bind(id)
        .bind(kind.as_str())
        .bind(sealed)
        .bind(unix(now))
        .bind(unix(now))
        .bind(expires_at.map(unix))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Opens a secret; `None` when there is none with that id.
    pub async fn get_secret(&self, id: &str) -> Result<Option<SecretString>, StoreError> {
        let sealed: Option<Vec<u8>> = sqlx::query_scalar("SELECT sealed FROM secrets WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
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
        sqlx::query("UPDATE secrets SET last_used_at = ? WHERE id = ?")
            .bind(unix(now))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Removes a secret; true when it existed.
    pub async fn delete_secret(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM secrets WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Metadata of every secret, by id.
    pub async fn secrets(&self) -> Result<Vec<SecretMeta>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, created_at, updated_at, last_used_at, expires_at FROM secrets ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(SecretMeta {
                    id: r.try_get("id").ok()?,
                    kind: SecretKind::parse(r.try_get::<String, _>("kind").ok()?.as_str())?,
                    created_at: from_unix(r.try_get("created_at").ok()?),
                    updated_at: from_unix(r.try_get("updated_at").ok()?),
                    last_used_at: r
                        .try_get::<Option<i64>, _>("last_used_at")
                        .ok()?
                        .map(from_unix),
                    expires_at: r
                        .try_get::<Option<i64>, _>("expires_at")
                        .ok()?
                        .map(from_unix),
                })
            })
            .collect())
    }

    /// Re-seals every secret under `new_key` in one transaction; the number re-sealed.
    /// Afterwards only `new_key` opens the database.
    pub async fn rotate_key(&self, new_key: &MasterKey) -> Result<usize, StoreError> {
        let new_sealer = Sealer::new(new_key);
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query("SELECT id, sealed FROM secrets")
            .fetch_all(&mut *tx)
            .await?;
        let mut count = 0;
        for row in rows {
            let id: String = row.try_get("id")?;
            let sealed: Vec<u8> = row.try_get("sealed")?;
            let plain = zeroize::Zeroizing::new(self.open_sealed(&id, &sealed)?);
            sqlx::query("UPDATE secrets SET sealed = ? WHERE id = ?")
                .bind(new_sealer.seal(&id, &plain)?)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            count += 1;
        }
        sqlx::query("UPDATE meta SET value = ? WHERE key = ?")
            .bind(new_sealer.seal(KEY_CHECK_ID, KEY_CHECK_TEXT)?)
            .bind(KEY_CHECK_ID)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        *self
            .sealer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = new_sealer;
        Ok(count)
    }

    /// Closes the pool (flushes the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

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

    #[tokio::test]
    async fn wrong_master_key_is_refused_and_rotation_switches_keys() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("mailbridge.db");
        let old = MasterKey::generate().unwrap();
        let new = MasterKey::generate().unwrap();
        let now = OffsetDateTime::now_utc();
        let store = Store::open(&db, &old).await.unwrap();
        for i in 0..3 {
            store
                .put_secret(
                    &format!("s{i}"),
                    SecretKind::Password,
                    &SecretString::from(format!("pw{i}")),
                    None,
                    now,
                )
                .await
                .unwrap();
        }
        assert!(matches!(
            Store::open(&db, &new).await,
            Err(StoreError::WrongMasterKey)
        ));
        assert_eq!(store.rotate_key(&new).await.unwrap(), 3);
        assert_eq!(
            store
                .get_secret("s2")
                .await
                .unwrap()
                .unwrap()
                .expose_secret(),
            "pw2"
        );
        store.close().await;
        assert!(matches!(
            Store::open(&db, &old).await,
            Err(StoreError::WrongMasterKey)
        ));
        let reopened = Store::open(&db, &new).await.unwrap();
        assert_eq!(
            reopened
                .get_secret("s0")
                .await
                .unwrap()
                .unwrap()
                .expose_secret(),
            "pw0"
        );
    }
}
