//! The audit log and the system's settings. Tables:
//! `migrations/sqlite/0013_audit_settings.sql`, `migrations/postgres/0009_audit_settings.sql`.
//!
//! - The **audit log** keeps every administrative change: who made it (a person of
//!   the web UI or an API token, by name: [`Actor`]), what (an action on an object:
//!   its kind, id and name), when, and from where (the client's address). The caller
//!   (`mailbridge-server`'s `audit`) decides the words; the store only appends and
//!   reads back, newest first, a bounded page at a time ([`MAX_PAGE`]). Nothing here
//!   takes a secret value: an entry names the object a secret belongs to, never the
//!   secret.
//! - **Settings** are one text value per key (which account sends the system's own
//!   notifications, the default language).

use time::OffsetDateTime;

use crate::store::{Store, StoreError, from_unix, on_db, unix};

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Actor {
    /// A person signed in to the web UI.
    Person,
    /// An API token.
    Token,
}

impl Actor {
    /// The stored word: `person` or `token`.
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Person => "person",
            Actor::Token => "token",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "person" => Some(Actor::Person),
            "token" => Some(Actor::Token),
            _ => None,
        }
    }
}

/// An entry to append.
#[derive(Debug, Clone, Copy)]
pub struct NewAuditEntry<'a> {
    pub actor_kind: Actor,
    /// The person's or the token's name.
    pub actor: &'a str,
    /// What was done (`create`, `update`, `delete`, `retry`, ...).
    pub action: &'a str,
    /// To what kind of object (`app`, `account`, `provider`, `user`, ...).
    pub object_kind: &'a str,
    pub object_id: Option<&'a str>,
    pub object_name: Option<&'a str>,
    /// The client's address.
    pub client: &'a str,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Its place in the log: larger is newer ([`Store::audit_list`]'s `before`).
    pub seq: i64,
    pub at: OffsetDateTime,
    pub actor_kind: Actor,
    pub actor: String,
    pub action: String,
    pub object_kind: String,
    pub object_id: Option<String>,
    pub object_name: Option<String>,
    pub client: String,
}

/// The largest page [`Store::audit_list`] returns.
pub const MAX_PAGE: u32 = 500;

type Row = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
);

impl Store {
    /// Appends an entry to the audit log; its `seq`.
    pub async fn audit_record(&self, entry: NewAuditEntry<'_>) -> Result<i64, StoreError> {
        let now = unix(self.now());
        let seq: i64 = on_db!(&self.db, pool => {
            sqlx::query_scalar(
                "INSERT INTO audit_log (at, actor_kind, actor, action, object_kind, object_id, object_name, client)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
            )
            .bind(now)
            .bind(entry.actor_kind.as_str())
            .bind(entry.actor)
            .bind(entry.action)
            .bind(entry.object_kind)
            .bind(entry.object_id)
            .bind(entry.object_name)
            .bind(entry.client)
            .fetch_one(pool)
            .await?
        });
        Ok(seq)
    }

    /// The newest entries older than `before` (all when `None`), newest first, at most
    /// `limit` (1 to [`MAX_PAGE`]).
    pub async fn audit_list(
        &self,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let limit = i64::from(limit.clamp(1, MAX_PAGE));
        let before = before.unwrap_or(i64::MAX);
        let rows: Vec<Row> = on_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT seq, at, actor_kind, actor, action, object_kind, object_id, object_name, client
                 FROM audit_log WHERE seq < $1 ORDER BY seq DESC LIMIT $2",
            )
            .bind(before)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(
                |(seq, at, kind, actor, action, object_kind, object_id, object_name, client)| {
                    Ok(AuditEntry {
                        seq,
                        at: from_unix(at),
                        actor_kind: Actor::parse(&kind).ok_or_else(|| StoreError::Record {
                            id: format!("audit:{seq}"),
                            source: serde::de::Error::custom(format!(
                                "unknown actor kind {kind:?}"
                            )),
                        })?,
                        actor,
                        action,
                        object_kind,
                        object_id,
                        object_name,
                        client,
                    })
                },
            )
            .collect()
    }

    /// The value of setting `key`, if set.
    pub async fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let value: Option<String> = on_db!(&self.db, pool => {
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await?
        });
        Ok(value)
    }

    /// Sets (with `None`: removes) setting `key`.
    pub async fn put_setting(&self, key: &str, value: Option<&str>) -> Result<(), StoreError> {
        let now = unix(self.now());
        on_db!(&self.db, pool => {
            match value {
                Some(value) => {
                    sqlx::query(
                        "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    )
                    .bind(key)
                    .bind(value)
                    .bind(now)
                    .execute(pool)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM settings WHERE key = $1")
                        .bind(key)
                        .execute(pool)
                        .await?;
                }
            }
        });
        Ok(())
    }
}
