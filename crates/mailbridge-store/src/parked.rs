//! Parked deliveries: received messages that a sink kept refusing (or refused for
//! good), kept until they are delivered or a person drops them; the same table on
//! SQLite and PostgreSQL.
//!
//! A row holds everything needed to finish the delivery on any instance: the raw MIME
//! (bounded by the account's `limits.max_message_size`), the sinks that have not
//! accepted the message yet, the route's source action still to do, the message's
//! reference at the source and its idempotency key (the same key as every earlier
//! attempt, so receivers can tell a redelivery).
//!
//! A row moves: `parked` (retried at `next_attempt_at`; a worker claims it under a
//! lease, `claimed_by` until `claim_until`, so two instances never retry it at once)
//! → every remaining sink accepted: removed, or `delivered` while the source action
//! waits for the account's watcher (which removes it once done). A failed retry
//! stays `parked` with the next time, the error and the sinks still remaining.
//! [`Store::parked_retry_now`] makes a row due at once; [`Store::parked_drop`]
//! removes it (the message is then not delivered to its remaining sinks).

use std::time::Duration;

use sqlx::Row as _;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ids::AccountId;
use crate::store::{Db, Store, StoreError, from_unix, on_db, unix};

/// The stable id of a parked delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParkedId(Uuid);

impl ParkedId {
    /// The id from its UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID of the id.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for ParkedId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl std::str::FromStr for ParkedId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where a parked delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ParkedState {
    /// Some sinks have not accepted it: retried at `next_attempt_at`.
    Parked,
    /// Every sink accepted it; the source action waits for the account's watcher.
    Delivered,
}

impl ParkedState {
    /// The stable name (`parked`, `delivered`).
    pub fn as_str(self) -> &'static str {
        match self {
            ParkedState::Parked => "parked",
            ParkedState::Delivered => "delivered",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "parked" => Some(ParkedState::Parked),
            "delivered" => Some(ParkedState::Delivered),
            _ => None,
        }
    }
}

impl std::fmt::Display for ParkedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message to park.
#[derive(Clone)]
pub struct NewParked {
    pub account: AccountId,
    /// The account's name, as shown to receivers.
    pub account_name: String,
    pub folder: String,
    /// The transport's id of the message (IMAP UID, Graph or EWS id, POP3 UIDL).
    pub source_id: String,
    /// The message's reference at the source, as the connector writes it.
    pub message_ref: serde_json::Value,
    /// The idempotency key every delivery of the message carries; parking the same
    /// key again for the account returns the row parked first.
    pub idempotency_key: String,
    /// The route that chose the sinks.
    pub route: String,
    /// The sinks that have not accepted the message, in the route's order.
    pub remaining_sinks: Vec<String>,
    /// The route's source action, as the connector writes it.
    pub source_action: serde_json::Value,
    /// The raw MIME message.
    pub message: Vec<u8>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// The last failure: what happened and what to do.
    pub error: String,
    /// Its class (`ErrorClass::as_str`).
    pub error_class: String,
    /// When it is retried first.
    pub next_attempt_at: OffsetDateTime,
}

impl std::fmt::Debug for NewParked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewParked")
            .field("account", &self.account)
            .field("folder", &self.folder)
            .field("source_id", &self.source_id)
            .field("idempotency_key", &self.idempotency_key)
            .field("remaining_sinks", &self.remaining_sinks)
            .field("size", &self.message.len())
            .finish_non_exhaustive()
    }
}

/// A parked delivery without its bytes: what the API shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEntry {
    pub id: ParkedId,
    /// Its place in the order rows were parked: the cursor of a page
    /// ([`Store::parked_list`]'s `after`).
    pub seq: i64,
    pub account: AccountId,
    pub account_name: String,
    pub folder: String,
    pub source_id: String,
    pub message_ref: serde_json::Value,
    pub idempotency_key: String,
    pub route: String,
    /// The sinks that have not accepted it (empty once delivered).
    pub remaining_sinks: Vec<String>,
    pub source_action: serde_json::Value,
    /// The message's size in bytes.
    pub size: u64,
    /// Failed attempts.
    pub attempts: u32,
    /// The last failure: what happened and what to do.
    pub last_error: String,
    /// Its class (`ErrorClass::as_str`).
    pub error_class: String,
    pub parked_at: OffsetDateTime,
    /// When it is retried next (`parked`).
    pub next_attempt_at: OffsetDateTime,
    /// The worker retrying it and until when.
    pub claimed_by: Option<String>,
    pub claim_until: Option<OffsetDateTime>,
    pub state: ParkedState,
    pub delivered_at: Option<OffsetDateTime>,
}

/// A claimed row: the row and its bytes.
#[derive(Clone)]
pub struct ClaimedParked {
    pub entry: ParkedEntry,
    pub message: Vec<u8>,
}

impl std::fmt::Debug for ClaimedParked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedParked")
            .field("entry", &self.entry)
            .finish_non_exhaustive()
    }
}

/// What [`Store::parked_park`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    pub entry: ParkedEntry,
    /// False when the key was parked before: `entry` is that row, unchanged.
    pub created: bool,
}

/// The columns of a [`ParkedEntry`].
macro_rules! columns {
    () => {
        "seq, id, account_id, account_name, folder, source_id, message_ref, idempotency_key, \
         route, remaining_sinks, source_action, CAST(length(message) AS BIGINT) AS size, \
         attempts, last_error, error_class, parked_at, next_attempt_at, claimed_by, \
         claim_until, state, delivered_at"
    };
}

/// The claim: the earliest due row not claimed (or whose claim ended). `$1` instance,
/// `$2` claim until, `$3` now; the argument is PostgreSQL's row lock, empty on SQLite.
macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE parked SET claimed_by = $1, claim_until = $2
             WHERE id = (
               SELECT p.id FROM parked p
               WHERE p.state = 'parked' AND p.next_attempt_at <= $3
                 AND (p.claim_until IS NULL OR p.claim_until <= $3)
               ORDER BY p.next_attempt_at, p.seq
               LIMIT 1 ",
            $lock,
            ")
             AND state = 'parked' AND (claim_until IS NULL OR claim_until <= $3)
             RETURNING ",
            columns!(),
            ", message"
        )
    };
}

/// A row as read, before its fields are checked.
struct Raw {
    seq: i64,
    id: Uuid,
    account: Uuid,
    account_name: String,
    folder: String,
    source_id: String,
    message_ref: String,
    idempotency_key: String,
    route: String,
    remaining_sinks: String,
    source_action: String,
    size: i64,
    attempts: i64,
    last_error: String,
    error_class: String,
    parked_at: i64,
    next_attempt_at: i64,
    claimed_by: Option<String>,
    claim_until: Option<i64>,
    state: String,
    delivered_at: Option<i64>,
}

/// Reads a [`Raw`] from a row of either backend (expanded once per backend).
macro_rules! raw {
    ($row:expr) => {{
        let r = $row;
        Raw {
            seq: r.try_get("seq")?,
            id: r.try_get("id")?,
            account: r.try_get("account_id")?,
            account_name: r.try_get("account_name")?,
            folder: r.try_get("folder")?,
            source_id: r.try_get("source_id")?,
            message_ref: r.try_get("message_ref")?,
            idempotency_key: r.try_get("idempotency_key")?,
            route: r.try_get("route")?,
            remaining_sinks: r.try_get("remaining_sinks")?,
            source_action: r.try_get("source_action")?,
            size: r.try_get("size")?,
            attempts: r.try_get("attempts")?,
            last_error: r.try_get("last_error")?,
            error_class: r.try_get("error_class")?,
            parked_at: r.try_get("parked_at")?,
            next_attempt_at: r.try_get("next_attempt_at")?,
            claimed_by: r.try_get("claimed_by")?,
            claim_until: r.try_get("claim_until")?,
            state: r.try_get("state")?,
            delivered_at: r.try_get("delivered_at")?,
        }
    }};
}

impl Raw {
    fn entry(self) -> Result<ParkedEntry, StoreError> {
        let record = |source| StoreError::Record {
            id: format!("parked:{}", self.id.hyphenated()),
            source,
        };
        let state = ParkedState::parse(&self.state).ok_or_else(|| {
            record(serde::de::Error::custom(format!(
                "unknown state {:?}",
                self.state
            )))
        })?;
        let remaining_sinks: Vec<String> =
            serde_json::from_str(&self.remaining_sinks).map_err(record)?;
        let message_ref = serde_json::from_str(&self.message_ref).map_err(record)?;
        let source_action = serde_json::from_str(&self.source_action).map_err(record)?;
        Ok(ParkedEntry {
            id: ParkedId(self.id),
            seq: self.seq,
            account: AccountId::from_uuid(self.account),
            account_name: self.account_name,
            folder: self.folder,
            source_id: self.source_id,
            message_ref,
            idempotency_key: self.idempotency_key,
            route: self.route,
            remaining_sinks,
            source_action,
            size: u64::try_from(self.size).unwrap_or(0),
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            last_error: self.last_error,
            error_class: self.error_class,
            parked_at: from_unix(self.parked_at),
            next_attempt_at: from_unix(self.next_attempt_at),
            claimed_by: self.claimed_by,
            claim_until: self.claim_until.map(from_unix),
            state,
            delivered_at: self.delivered_at.map(from_unix),
        })
    }
}

/// Seconds of `d`, rounded up (a lease is never shorter than asked).
fn secs_up(d: Duration) -> i64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(s).unwrap_or(i64::MAX)
}

fn json_text(id: Uuid, value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Record {
        id: format!("parked:{}", id.hyphenated()),
        source,
    })
}

/// The largest page [`Store::parked_list`] returns.
pub const MAX_PAGE: u32 = 1000;

impl Store {
    /// Parks a message, at most `max_size` bytes (the account's
    /// `limits.max_message_size`). The row is durable when this returns. With an
    /// idempotency key parked before for the account, nothing is written and that
    /// row is returned (`created: false`).
    pub async fn parked_park(&self, new: NewParked, max_size: u64) -> Result<Parked, StoreError> {
        let size = u64::try_from(new.message.len()).unwrap_or(u64::MAX);
        if size > max_size {
            return Err(StoreError::MessageTooLarge {
                size,
                max: max_size,
            });
        }
        let id = Uuid::new_v4();
        let now = unix(self.now());
        let remaining = json_text(id, &new.remaining_sinks)?;
        let message_ref = json_text(id, &new.message_ref)?;
        let source_action = json_text(id, &new.source_action)?;
        let inserted = on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO parked (id, account_id, account_name, folder, source_id, message_ref,
                   idempotency_key, route, remaining_sinks, source_action, message, attempts,
                   last_error, error_class, parked_at, next_attempt_at, state)
                 SELECT $1, id, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                   'parked'
                 FROM accounts WHERE id = $2
                 ON CONFLICT (account_id, idempotency_key) DO NOTHING",
            )
            .bind(id)
            .bind(new.account.as_uuid())
            .bind(&new.account_name)
            .bind(&new.folder)
            .bind(&new.source_id)
            .bind(&message_ref)
            .bind(&new.idempotency_key)
            .bind(&new.route)
            .bind(&remaining)
            .bind(&source_action)
            .bind(&new.message)
            .bind(i64::from(new.attempts))
            .bind(&new.error)
            .bind(&new.error_class)
            .bind(now)
            .bind(unix(new.next_attempt_at))
            .execute(pool)
            .await?
            .rows_affected()
        });
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM parked WHERE account_id = $1 AND idempotency_key = $2"
        );
        let raw = on_db!(&self.db, pool => {
            match sqlx::query(sql)
                .bind(new.account.as_uuid())
                .bind(&new.idempotency_key)
                .fetch_optional(pool)
                .await?
            {
                Some(row) => Some(raw!(&row)),
                None => None,
            }
        });
        match raw {
            Some(raw) => Ok(Parked {
                entry: raw.entry()?,
                created: inserted == 1,
            }),
            None => Err(StoreError::NotFound {
                kind: "account",
                id: new.account.to_string(),
            }),
        }
    }

    /// One row, without its bytes.
    pub async fn parked_get(&self, id: ParkedId) -> Result<Option<ParkedEntry>, StoreError> {
        let sql = concat!("SELECT ", columns!(), " FROM parked WHERE id = $1");
        let raw = on_db!(&self.db, pool => {
            match sqlx::query(sql).bind(id.as_uuid()).fetch_optional(pool).await? {
                Some(row) => Some(raw!(&row)),
                None => None,
            }
        });
        raw.map(Raw::entry).transpose()
    }

    /// A page of rows of `account` (every account's with `None`) in the order they
    /// were parked, without their bytes: those after the row whose `seq` is `after`,
    /// at most `limit` (at most [`MAX_PAGE`]).
    pub async fn parked_list(
        &self,
        account: Option<AccountId>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ParkedEntry>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM parked WHERE ($1 IS NULL OR account_id = $1) AND seq > $2
              ORDER BY seq LIMIT $3"
        );
        let raws = on_db!(&self.db, pool => {
            let rows = sqlx::query(sql)
                .bind(account.map(|a| a.as_uuid()))
                .bind(after.unwrap_or(0))
                .bind(i64::from(limit.min(MAX_PAGE)))
                .fetch_all(pool)
                .await?;
            let mut raws = Vec::with_capacity(rows.len());
            for row in &rows {
                raws.push(raw!(row));
            }
            raws
        });
        raws.into_iter().map(Raw::entry).collect()
    }

    /// The rows of `account` parked from `folder` for the message with `source_id`
    /// (the watcher's check that a message listed again is parked already).
    pub async fn parked_find(
        &self,
        account: AccountId,
        folder: &str,
        source_id: &str,
    ) -> Result<Vec<ParkedEntry>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM parked WHERE account_id = $1 AND folder = $2 AND source_id = $3 ORDER BY seq"
        );
        let raws = on_db!(&self.db, pool => {
            let rows = sqlx::query(sql)
                .bind(account.as_uuid())
                .bind(folder)
                .bind(source_id)
                .fetch_all(pool)
                .await?;
            let mut raws = Vec::with_capacity(rows.len());
            for row in &rows {
                raws.push(raw!(row));
            }
            raws
        });
        raws.into_iter().map(Raw::entry).collect()
    }

    /// The source references (`message_ref`) of every row of `account` from `folder`,
    /// by source id: one query for a whole batch of listed messages, reading neither
    /// the messages nor the other columns.
    pub async fn parked_refs(
        &self,
        account: AccountId,
        folder: &str,
    ) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        let sql =
            "SELECT id, source_id, message_ref FROM parked WHERE account_id = $1 AND folder = $2";
        let rows: Vec<(Uuid, String, String)> = on_db!(&self.db, pool => {
            sqlx::query_as(sql)
                .bind(account.as_uuid())
                .bind(folder)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|(id, source_id, message_ref)| {
                let message_ref =
                    serde_json::from_str(&message_ref).map_err(|source| StoreError::Record {
                        id: format!("parked:{}", id.hyphenated()),
                        source,
                    })?;
                Ok((source_id, message_ref))
            })
            .collect()
    }

    /// The delivered rows of `account` from `folder` whose source action waits, the
    /// oldest first, at most `limit`.
    pub async fn parked_pending_actions(
        &self,
        account: AccountId,
        folder: &str,
        limit: u32,
    ) -> Result<Vec<ParkedEntry>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM parked WHERE account_id = $1 AND folder = $2 AND state = 'delivered'
              ORDER BY seq LIMIT $3"
        );
        let raws = on_db!(&self.db, pool => {
            let rows = sqlx::query(sql)
                .bind(account.as_uuid())
                .bind(folder)
                .bind(i64::from(limit.min(MAX_PAGE)))
                .fetch_all(pool)
                .await?;
            let mut raws = Vec::with_capacity(rows.len());
            for row in &rows {
                raws.push(raw!(row));
            }
            raws
        });
        raws.into_iter().map(Raw::entry).collect()
    }

    /// Claims the earliest due row for `instance` until `now + lease`; `None` when
    /// nothing is due. A row whose claim ended (its worker stopped) is due again.
    pub async fn parked_claim_due(
        &self,
        instance: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Option<ClaimedParked>, StoreError> {
        let now_s = unix(now);
        let until = now_s.saturating_add(secs_up(lease));
        let claimed = match &self.db {
            Db::Sqlite(pool) => {
                match sqlx::query(claim_sql!(""))
                    .bind(instance)
                    .bind(until)
                    .bind(now_s)
                    .fetch_optional(pool)
                    .await?
                {
                    Some(row) => Some((raw!(&row), row.try_get::<Vec<u8>, _>("message")?)),
                    None => None,
                }
            }
            Db::Postgres(pool) => {
                match sqlx::query(claim_sql!("FOR UPDATE OF p SKIP LOCKED"))
                    .bind(instance)
                    .bind(until)
                    .bind(now_s)
                    .fetch_optional(pool)
                    .await?
                {
                    Some(row) => Some((raw!(&row), row.try_get::<Vec<u8>, _>("message")?)),
                    None => None,
                }
            }
        };
        match claimed {
            Some((raw, message)) => Ok(Some(ClaimedParked {
                entry: raw.entry()?,
                message,
            })),
            None => Ok(None),
        }
    }

    /// A retry by `instance` failed: one attempt more, retried at `next_attempt_at`,
    /// `error` (of `class`) the last error, `remaining` the sinks still to accept it;
    /// the claim ends. False when the claim is not (any more) `instance`'s (nothing
    /// is written).
    pub async fn parked_record_failure(
        &self,
        id: ParkedId,
        instance: &str,
        next_attempt_at: OffsetDateTime,
        error: &str,
        class: &str,
        remaining: &[String],
    ) -> Result<bool, StoreError> {
        let remaining = json_text(id.as_uuid(), &remaining)?;
        let done = on_db!(&self.db, pool => {
            sqlx::query(
                "UPDATE parked SET attempts = attempts + 1, next_attempt_at = $3, last_error = $4,
                   error_class = $5, remaining_sinks = $6, claimed_by = NULL, claim_until = NULL
                 WHERE id = $1 AND state = 'parked' AND claimed_by = $2",
            )
            .bind(id.as_uuid())
            .bind(instance)
            .bind(unix(next_attempt_at))
            .bind(error)
            .bind(class)
            .bind(&remaining)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done > 0)
    }

    /// Every remaining sink accepted the row `instance` claimed, at `at`: removed, or
    /// `delivered` when `source_action_pending` (the watcher does it and removes
    /// the row). False when the claim is not (any more) `instance`'s.
    pub async fn parked_mark_delivered(
        &self,
        id: ParkedId,
        instance: &str,
        at: OffsetDateTime,
        source_action_pending: bool,
    ) -> Result<bool, StoreError> {
        let done = if source_action_pending {
            on_db!(&self.db, pool => {
                sqlx::query(
                    "UPDATE parked SET state = 'delivered', remaining_sinks = '[]',
                       delivered_at = $3, claimed_by = NULL, claim_until = NULL
                     WHERE id = $1 AND state = 'parked' AND claimed_by = $2",
                )
                .bind(id.as_uuid())
                .bind(instance)
                .bind(unix(at))
                .execute(pool)
                .await?
                .rows_affected()
            })
        } else {
            on_db!(&self.db, pool => {
                sqlx::query("DELETE FROM parked WHERE id = $1 AND state = 'parked' AND claimed_by = $2")
                    .bind(id.as_uuid())
                    .bind(instance)
                    .execute(pool)
                    .await?
                    .rows_affected()
            })
        };
        Ok(done > 0)
    }

    /// The source action of a delivered row was done (or its message is gone):
    /// the row is removed. False when it was not a delivered row.
    pub async fn parked_source_action_done(&self, id: ParkedId) -> Result<bool, StoreError> {
        let done = on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM parked WHERE id = $1 AND state = 'delivered'")
                .bind(id.as_uuid())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Makes a parked row due now (a person asked for a retry). False when there is
    /// no parked row with this id (delivered or dropped).
    pub async fn parked_retry_now(&self, id: ParkedId) -> Result<bool, StoreError> {
        let done = on_db!(&self.db, pool => {
            sqlx::query("UPDATE parked SET next_attempt_at = $2 WHERE id = $1 AND state = 'parked'")
                .bind(id.as_uuid())
                .bind(unix(self.now()))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// Removes a row whatever its state: the message is not delivered to its
    /// remaining sinks, nor its source action done. False when there was none.
    pub async fn parked_drop(&self, id: ParkedId) -> Result<bool, StoreError> {
        let done = on_db!(&self.db, pool => {
            sqlx::query("DELETE FROM parked WHERE id = $1")
                .bind(id.as_uuid())
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// When the next parked row becomes due (its retry time, or the end of its
    /// claim if later), or `None` when no row is parked.
    pub async fn parked_next_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        let next: Option<i64> = on_db!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT min(CASE WHEN claim_until IS NOT NULL AND claim_until > next_attempt_at
                             THEN claim_until ELSE next_attempt_at END)
                 FROM parked WHERE state = 'parked'",
            )
            .fetch_one(pool)
            .await?
        });
        Ok(next.map(from_unix))
    }

    /// How many rows are parked (not yet delivered), for `account` or all.
    pub async fn parked_count(&self, account: Option<AccountId>) -> Result<u64, StoreError> {
        let n: i64 = on_db!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT count(*) FROM parked WHERE state = 'parked' AND ($1 IS NULL OR account_id = $1)",
            )
            .bind(account.map(|a| a.as_uuid()))
            .fetch_one(pool)
            .await?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
