//! What the daemon does with received mail, and which instance does it.
//!
//! - Sinks ([`Store::put_sink`]): where messages are delivered, each a JSON document of
//!   its settings (the type is the connector's) under a stable [`SinkId`] and a unique
//!   name that routes refer to. A sink's secret (a webhook's signing secret, a relay's
//!   password) is sealed apart under [`sink_secret_id`] and removed with the sink.
//! - Watches ([`Store::put_watch`]): per account, whether its watcher runs, the folder,
//!   the poll interval and the ordered routes, as one JSON document.
//! - Leases ([`Store::acquire_lease`]): a named piece of work (an account's watcher)
//!   held by one instance until a time. Taking one is one statement, atomic on both
//!   backends: a lease is taken when it is free, has ended, or is already the
//!   caller's (a renewal). Times are in milliseconds, so short leases can be tested.

use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ids::{AccountId, SinkId};
use crate::store::{Store, StoreError, on_db, unix};

/// The id under which a sink's secret is sealed.
pub fn sink_secret_id(sink: SinkId) -> String {
    format!("sink:{sink}:secret")
}

fn encode<T: Serialize>(id: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Record {
        id: id.to_owned(),
        source,
    })
}

fn decode<T: DeserializeOwned>(id: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|source| StoreError::Record {
        id: id.to_owned(),
        source,
    })
}

fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// A stored sink: its id, name and settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSink<T> {
    pub id: SinkId,
    pub name: String,
    pub config: T,
}

impl Store {
    /// Adds a sink called `name`, or replaces the settings of the sink of that name
    /// (which keeps its id). Returns the sink's id.
    pub async fn put_sink<T: Serialize>(
        &self,
        name: &str,
        config: &T,
    ) -> Result<SinkId, StoreError> {
        let text = encode(&format!("sink:{name}"), config)?;
        let now = unix(self.now());
        let id: Uuid = on_db!(&self.db, pool => {
            sqlx::query_scalar(
                "INSERT INTO sinks (id, name, config, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
                 ON CONFLICT (name) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at
                 RETURNING id",
            )
            .bind(SinkId::generate().as_uuid())
            .bind(name)
            .bind(text)
            .bind(now)
            .fetch_one(pool)
            .await?
        });
        Ok(SinkId::from_uuid(id))
    }

    /// Replaces the name and settings of the sink `id`; false when there is none.
    /// A name another sink has fails with [`StoreError::Exists`].
    pub async fn update_sink<T: Serialize>(
        &self,
        id: SinkId,
        name: &str,
        config: &T,
    ) -> Result<bool, StoreError> {
        let text = encode(&format!("sink:{name}"), config)?;
        let now = unix(self.now());
        let done: Result<u64, sqlx::Error> = on_db!(&self.db, pool => {
            sqlx::query("UPDATE sinks SET name = $2, config = $3, updated_at = $4 WHERE id = $1")
                .bind(id.as_uuid())
                .bind(name)
                .bind(text)
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        });
        match done {
            Ok(n) => Ok(n > 0),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(StoreError::Exists {
                kind: "sink",
                name: name.to_owned(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// Every sink, by name.
    pub async fn sinks<T: DeserializeOwned>(&self) -> Result<Vec<StoredSink<T>>, StoreError> {
        let rows: Vec<(Uuid, String, String)> = on_db!(&self.db, pool => {
            sqlx::query_as("SELECT id, name, config FROM sinks ORDER BY name")
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(id, name, config)| {
                Ok(StoredSink {
                    id: SinkId::from_uuid(id),
                    config: decode(&format!("sink:{name}"), &config)?,
                    name,
                })
            })
            .collect()
    }

    /// The sink `id`.
    pub async fn sink<T: DeserializeOwned>(
        &self,
        id: SinkId,
    ) -> Result<Option<StoredSink<T>>, StoreError> {
        let row: Option<(String, String)> = on_db!(&self.db, pool => {
            sqlx::query_as("SELECT name, config FROM sinks WHERE id = $1")
                .bind(id.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        row.map(|(name, config)| {
            Ok(StoredSink {
                id,
                config: decode(&format!("sink:{name}"), &config)?,
                name,
            })
        })
        .transpose()
    }

    /// Removes the sink `id` and its secret; true when it existed. Callers check
    /// first that no route names it.
    pub async fn remove_sink(&self, id: SinkId) -> Result<bool, StoreError> {
        let done = on_db!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            let done = sqlx::query("DELETE FROM sinks WHERE id = $1")
                .bind(id.as_uuid())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM secrets WHERE id = $1")
                .bind(sink_secret_id(id))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            done
        });
        Ok(done > 0)
    }

    /// Sets the watch of the account `account` (its watcher's settings and routes).
    pub async fn put_watch<T: Serialize>(
        &self,
        account: AccountId,
        watch: &T,
    ) -> Result<(), StoreError> {
        let text = encode(&format!("watch:{account}"), watch)?;
        let now = unix(self.now());
        on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO watches (account_id, config, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (account_id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
            )
            .bind(account.as_uuid())
            .bind(text)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The watch of `account`, if it has one.
    pub async fn watch<T: DeserializeOwned>(
        &self,
        account: AccountId,
    ) -> Result<Option<T>, StoreError> {
        let text: Option<String> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT config FROM watches WHERE account_id = $1")
                .bind(account.as_uuid())
                .fetch_optional(pool)
                .await?
        });
        text.map(|t| decode(&format!("watch:{account}"), &t))
            .transpose()
    }

    /// Every account's watch.
    pub async fn watches<T: DeserializeOwned>(&self) -> Result<Vec<(AccountId, T)>, StoreError> {
        let rows: Vec<(Uuid, String)> = on_db!(&self.db, pool => {
            sqlx::query_as("SELECT account_id, config FROM watches ORDER BY account_id")
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(id, text)| {
                let id = AccountId::from_uuid(id);
                Ok((id, decode(&format!("watch:{id}"), &text)?))
            })
            .collect()
    }

    /// Removes the watch of `account`; true when it had one.
    pub async fn remove_watch(&self, account: AccountId) -> Result<bool, StoreError> {
        let done = on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM watches WHERE account_id = $1")
                .bind(account.as_uuid())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Takes or renews the lease `name` for `holder` until `now + duration`: true when
    /// `holder` holds it now (it was free, had ended, or was already its own), false
    /// when another holder's lease still runs.
    pub async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        duration: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let now = millis(self.now());
        let until = now.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
        let got: Option<String> = on_db!(&self.db, pool => {
            sqlx::query_scalar(
                "INSERT INTO leases (name, holder, until) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE leases.holder = excluded.holder OR leases.until <= $4
                 RETURNING holder",
            )
            .bind(name)
            .bind(holder)
            .bind(until)
            .bind(now)
            .fetch_optional(pool)
            .await?
        });
        Ok(got.is_some())
    }

    /// Renews every lease `holder` still holds until `now + duration`, in one
    /// statement (one write however many accounts an instance watches); the names of
    /// the leases renewed. A lease that ended is not renewed (another holder may have
    /// it): take it again with [`Store::acquire_lease`].
    pub async fn renew_leases(
        &self,
        holder: &str,
        duration: std::time::Duration,
    ) -> Result<Vec<String>, StoreError> {
        let now = millis(self.now());
        let until = now.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
        let names: Vec<String> = on_db!(&self.db, pool => {
            sqlx::query_scalar(
                "UPDATE leases SET until = $1 WHERE holder = $2 AND until > $3 RETURNING name",
            )
            .bind(until)
            .bind(holder)
            .bind(now)
            .fetch_all(pool)
            .await?
        });
        Ok(names)
    }

    /// Gives the lease `name` back if `holder` holds it (another instance may take it
    /// at once); true when it did.
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        let done = on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
                .bind(name)
                .bind(holder)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Who holds the lease `name` now (an ended lease has no holder).
    pub async fn lease_holder(&self, name: &str) -> Result<Option<String>, StoreError> {
        let now = millis(self.now());
        let holder: Option<String> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT holder FROM leases WHERE name = $1 AND until > $2")
                .bind(name)
                .bind(now)
                .fetch_optional(pool)
                .await?
        });
        Ok(holder)
    }
}
