//! The durable outbox: messages accepted for sending and what became of each, in the
//! same table on SQLite and PostgreSQL.
//!
//! Why a table of our own and not a job-queue crate (apalis with its SQL backends was
//! evaluated): the outbox needs the order of submission *per account* (an account's
//! next message waits while its oldest unsent one is retrying), a `Retry-After` per
//! message, an `outcome-unknown` state that is never retried by itself, and rows that
//! the API and the CLI read as they are, identical on both backends. A generic job
//! queue gives none of these without a second table beside its own; the queue itself
//! is one `UPDATE ... WHERE id = (SELECT ... LIMIT 1)` statement.
//!
//! A message moves: `queued` → (claimed) `sending` → `sent` | `retrying` (at a time;
//! claimed again then) | `failed` | `outcome-unknown`. A claim is a lease
//! (`claimed_by`, `claim_until`, renewed by a sender while it sends): a sender that
//! stops while `sending` (a crash, a `kill -9`) cannot say whether the server took
//! the message, so when its lease ends the row becomes `outcome-unknown` rather than
//! being sent again. Each row is
//! therefore handed to a server at most once, except when a person resends an
//! `outcome-unknown` one.
//!
//! Claims ([`Store::outbox_claim_next`]) take the oldest due *head* of any account:
//! the account's oldest message still `queued`, `sending` or `retrying`. On PostgreSQL
//! the candidate row is locked `FOR UPDATE SKIP LOCKED`, so instances claiming at the
//! same moment take different rows; SQLite runs the one statement under its write
//! lock.

use std::time::Duration;

use sqlx::Row as _;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::ids::AccountId;
use crate::store::{Db, Store, StoreError, on_db, unix};

/// The stable id of an outbox message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OutboxId(Uuid);

impl OutboxId {
    /// The id from its UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// The UUID of the id.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for OutboxId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl std::str::FromStr for OutboxId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// Where an outbox message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OutboxState {
    /// Accepted, not tried yet.
    Queued,
    /// Claimed by a sender, which is handing it to the server.
    Sending,
    /// The server accepted it.
    Sent,
    /// A passing failure; tried again at `next_attempt_at`.
    Retrying,
    /// Will not be sent: the reason and the fix are in `last_error`.
    Failed,
    /// Maybe sent, maybe not (the connection broke after the message was handed
    /// over, or its sender stopped while sending): never resent by itself; a person
    /// checks the recipient's mailbox or Sent Items first.
    OutcomeUnknown,
}

impl OutboxState {
    /// The stable name (`queued`, `sending`, `sent`, `retrying`, `failed`,
    /// `outcome-unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Queued => "queued",
            OutboxState::Sending => "sending",
            OutboxState::Sent => "sent",
            OutboxState::Retrying => "retrying",
            OutboxState::Failed => "failed",
            OutboxState::OutcomeUnknown => "outcome-unknown",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => OutboxState::Queued,
            "sending" => OutboxState::Sending,
            "sent" => OutboxState::Sent,
            "retrying" => OutboxState::Retrying,
            "failed" => OutboxState::Failed,
            "outcome-unknown" => OutboxState::OutcomeUnknown,
            _ => return None,
        })
    }

    /// True when nothing will happen to the message without a person (sent, failed,
    /// outcome unknown).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            OutboxState::Sent | OutboxState::Failed | OutboxState::OutcomeUnknown
        )
    }
}

impl std::fmt::Display for OutboxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message to queue.
#[derive(Clone)]
pub struct NewOutboxMessage {
    pub account: AccountId,
    /// The submitter's key (`Idempotency-Key`): queuing the same key again for the
    /// account returns the message queued first.
    pub idempotency_key: Option<String>,
    /// The raw MIME message.
    pub message: Vec<u8>,
    /// The envelope sender (SMTP `MAIL FROM`); `None`: the header's From.
    pub mail_from: Option<String>,
    /// The envelope recipients (SMTP `RCPT TO`); empty: the header's To, Cc and Bcc.
    pub recipients: Vec<String>,
}

impl std::fmt::Debug for NewOutboxMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewOutboxMessage")
            .field("account", &self.account)
            .field("idempotency_key", &self.idempotency_key)
            .field("size", &self.message.len())
            .field("recipients", &self.recipients.len())
            .finish_non_exhaustive()
    }
}

/// An outbox message without its bytes: what the API and the CLI show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub id: OutboxId,
    pub account: AccountId,
    pub idempotency_key: Option<String>,
    pub created_at: OffsetDateTime,
    /// The message's size in bytes.
    pub size: u64,
    pub mail_from: Option<String>,
    pub recipients: Vec<String>,
    pub state: OutboxState,
    /// Attempts started (claims).
    pub attempts: u32,
    /// When it is tried next (`queued`, `retrying`).
    pub next_attempt_at: OffsetDateTime,
    /// The last failure: what happened and what to do.
    pub last_error: Option<String>,
    /// The last failure's class (`ErrorClass::as_str`).
    pub error_class: Option<String>,
    /// The sender holding it (`sending`) and until when.
    pub claimed_by: Option<String>,
    pub claim_until: Option<OffsetDateTime>,
    pub sent_at: Option<OffsetDateTime>,
    /// The server's answer when it was sent (SMTP `250 ... queued as ...`).
    pub server_reply: Option<String>,
}

/// A claimed message: its row and its bytes.
#[derive(Clone)]
pub struct ClaimedMessage {
    pub entry: OutboxEntry,
    pub message: Vec<u8>,
}

impl std::fmt::Debug for ClaimedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedMessage")
            .field("entry", &self.entry)
            .finish_non_exhaustive()
    }
}

/// What [`Store::outbox_enqueue`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub entry: OutboxEntry,
    /// False when the idempotency key was queued before: `entry` is that message.
    pub created: bool,
}

/// The columns of an [`OutboxEntry`].
macro_rules! columns {
    () => {
        "id, account_id, idempotency_key, created_at, CAST(length(message) AS BIGINT) AS size, \
         mail_from, recipients, state, attempts, next_attempt_at, last_error, error_class, \
         claimed_by, claim_until, sent_at, server_reply"
    };
}

/// The claim: the oldest due head of any account. `$1` instance, `$2` claim until,
/// `$3` now; the argument is PostgreSQL's row lock, empty on SQLite.
macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE outbox SET state = 'sending', claimed_by = $1, claim_until = $2,
               attempts = attempts + 1
             WHERE id = (
               SELECT o.id FROM outbox o
               WHERE o.state IN ('queued', 'retrying') AND o.next_attempt_at <= $3
                 AND o.seq = (SELECT min(h.seq) FROM outbox h WHERE h.account_id = o.account_id
                              AND h.state IN ('queued', 'sending', 'retrying'))
               ORDER BY o.next_attempt_at, o.seq
               LIMIT 1 ",
            $lock,
            ")
             AND state IN ('queued', 'retrying')
             RETURNING ",
            columns!(),
            ", message"
        )
    };
}

/// A row as read, before its fields are checked.
struct Raw {
    id: Uuid,
    account: Uuid,
    idempotency_key: Option<String>,
    created_at: i64,
    size: i64,
    mail_from: Option<String>,
    recipients: String,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    error_class: Option<String>,
    claimed_by: Option<String>,
    claim_until: Option<i64>,
    sent_at: Option<i64>,
    server_reply: Option<String>,
}

/// Reads a [`Raw`] from a row of either backend (expanded once per backend).
macro_rules! raw {
    ($row:expr) => {{
        let r = $row;
        Raw {
            id: r.try_get("id")?,
            account: r.try_get("account_id")?,
            idempotency_key: r.try_get("idempotency_key")?,
            created_at: r.try_get("created_at")?,
            size: r.try_get("size")?,
            mail_from: r.try_get("mail_from")?,
            recipients: r.try_get("recipients")?,
            state: r.try_get("state")?,
            attempts: r.try_get("attempts")?,
            next_attempt_at: r.try_get("next_attempt_at")?,
            last_error: r.try_get("last_error")?,
            error_class: r.try_get("error_class")?,
            claimed_by: r.try_get("claimed_by")?,
            claim_until: r.try_get("claim_until")?,
            sent_at: r.try_get("sent_at")?,
            server_reply: r.try_get("server_reply")?,
        }
    }};
}

fn at(s: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(s).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl Raw {
    fn entry(self) -> Result<OutboxEntry, StoreError> {
        let id = self.id.hyphenated().to_string();
        let state = OutboxState::parse(&self.state).ok_or_else(|| StoreError::Record {
            id: format!("outbox:{id}"),
            source: serde::de::Error::custom(format!("unknown state {:?}", self.state)),
        })?;
        let recipients: Vec<String> =
            serde_json::from_str(&self.recipients).map_err(|source| StoreError::Record {
                id: format!("outbox:{id}"),
                source,
            })?;
        Ok(OutboxEntry {
            id: OutboxId(self.id),
            account: AccountId::from_uuid(self.account),
            idempotency_key: self.idempotency_key,
            created_at: at(self.created_at),
            size: u64::try_from(self.size).unwrap_or(0),
            mail_from: self.mail_from,
            recipients,
            state,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            next_attempt_at: at(self.next_attempt_at),
            last_error: self.last_error,
            error_class: self.error_class,
            claimed_by: self.claimed_by,
            claim_until: self.claim_until.map(at),
            sent_at: self.sent_at.map(at),
            server_reply: self.server_reply,
        })
    }
}

/// Seconds of `d`, rounded up (a lease or a wait is never shorter than asked).
fn secs_up(d: Duration) -> i64 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(s).unwrap_or(i64::MAX)
}

impl Store {
    /// Queues a message for `new.account`, at most `max_size` bytes (the account's
    /// `limits.max_message_size`). With an idempotency key queued before for the
    /// account, nothing is written and that message is returned (`created: false`).
    pub async fn outbox_enqueue(
        &self,
        new: NewOutboxMessage,
        max_size: u64,
    ) -> Result<Enqueued, StoreError> {
        let size = u64::try_from(new.message.len()).unwrap_or(u64::MAX);
        if size > max_size {
            return Err(StoreError::MessageTooLarge {
                size,
                max: max_size,
            });
        }
        let id = Uuid::new_v4();
        let now = unix(self.now());
        let recipients =
            serde_json::to_string(&new.recipients).map_err(|source| StoreError::Record {
                id: format!("outbox:{id}"),
                source,
            })?;
        let inserted = on_db!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO outbox (id, account_id, idempotency_key, created_at, message,
                   mail_from, recipients, state, attempts, next_attempt_at)
                 SELECT $1, id, $3, $4, $5, $6, $7, 'queued', 0, $4 FROM accounts WHERE id = $2
                 ON CONFLICT (account_id, idempotency_key) DO NOTHING",
            )
            .bind(id)
            .bind(new.account.as_uuid())
            .bind(new.idempotency_key.as_deref())
            .bind(now)
            .bind(&new.message)
            .bind(new.mail_from.as_deref())
            .bind(&recipients)
            .execute(pool)
            .await?
            .rows_affected()
        });
        if inserted == 1 {
            let entry = self
                .outbox_get(OutboxId(id))
                .await?
                .ok_or(StoreError::NotFound {
                    kind: "outbox message",
                    id: id.to_string(),
                })?;
            return Ok(Enqueued {
                entry,
                created: true,
            });
        }
        if let Some(key) = &new.idempotency_key {
            let sql = concat!(
                "SELECT ",
                columns!(),
                " FROM outbox WHERE account_id = $1 AND idempotency_key = $2"
            );
            let raw = on_db!(&self.db, pool => {
                match sqlx::query(sql)
                    .bind(new.account.as_uuid())
                    .bind(key)
                    .fetch_optional(pool)
                    .await?
                {
                    Some(row) => Some(raw!(&row)),
                    None => None,
                }
            });
            if let Some(raw) = raw {
                return Ok(Enqueued {
                    entry: raw.entry()?,
                    created: false,
                });
            }
        }
        Err(StoreError::NotFound {
            kind: "account",
            id: new.account.to_string(),
        })
    }

    /// Claims the next message to send for `instance` until `now + lease`: the oldest
    /// due message among the heads of the accounts (an account's oldest message still
    /// queued, sending or retrying; an account whose head waits or is being sent
    /// waits). `None` when nothing is due.
    ///
    /// First, messages whose sender's lease ended while `sending` become
    /// `outcome-unknown` (the server may have them).
    pub async fn outbox_claim_next(
        &self,
        instance: &str,
        now: OffsetDateTime,
        lease: Duration,
    ) -> Result<Option<ClaimedMessage>, StoreError> {
        let now_s = unix(now);
        let until = now_s.saturating_add(secs_up(lease));
        on_db!(&self.db, pool => {
            sqlx::query(
                "UPDATE outbox SET state = 'outcome-unknown', error_class = 'outcome-unknown',
                   last_error = 'the sender ' || claimed_by || ' stopped while sending: the server may or may not have the message; check the recipient''s mailbox or Sent Items, then resend it or leave it',
                   claimed_by = NULL, claim_until = NULL
                 WHERE state = 'sending' AND claim_until <= $1",
            )
            .bind(now_s)
            .execute(pool)
            .await?;
        });
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
                match sqlx::query(claim_sql!("FOR UPDATE OF o SKIP LOCKED"))
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
            Some((raw, message)) => Ok(Some(ClaimedMessage {
                entry: raw.entry()?,
                message,
            })),
            None => Ok(None),
        }
    }

    /// Extends `instance`'s claim on `id` to `until` (a long send renews its lease so
    /// that the message does not become `outcome-unknown` under it); an error when
    /// the claim is not (any more) `instance`'s.
    pub async fn outbox_renew_claim(
        &self,
        id: OutboxId,
        instance: &str,
        until: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let done = on_db!(&self.db, pool => {
            sqlx::query(
                "UPDATE outbox SET claim_until = $3
                 WHERE id = $1 AND state = 'sending' AND claimed_by = $2",
            )
            .bind(id.as_uuid())
            .bind(instance)
            .bind(unix(until))
            .execute(pool)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::ClaimLost {
                id: id.to_string(),
                instance: instance.to_owned(),
            });
        }
        Ok(())
    }

    /// Ends `instance`'s claim on `id` with `state` and the given fields; an error
    /// when the claim is not (any more) `instance`'s.
    async fn outbox_finish(
        &self,
        id: OutboxId,
        instance: &str,
        state: OutboxState,
        next_attempt_at: Option<OffsetDateTime>,
        error: Option<(&str, &str)>,
        sent: Option<(OffsetDateTime, Option<&str>)>,
    ) -> Result<(), StoreError> {
        const FINISH: &str = "UPDATE outbox SET state = $3, claimed_by = NULL, claim_until = NULL,
                   next_attempt_at = coalesce($4, next_attempt_at),
                   last_error = coalesce($5, last_error), error_class = coalesce($6, error_class),
                   sent_at = $7, server_reply = $8
                 WHERE id = $1 AND state = 'sending' AND claimed_by = $2";
        macro_rules! finish {
            ($query:expr) => {
                $query
                    .bind(id.as_uuid())
                    .bind(instance)
                    .bind(state.as_str())
                    .bind(next_attempt_at.map(unix))
                    .bind(error.map(|(text, _)| text))
                    .bind(error.map(|(_, class)| class))
                    .bind(sent.map(|(t, _)| unix(t)))
                    .bind(sent.and_then(|(_, reply)| reply))
            };
        }
        // "Sent" is written without waiting for the disk: the next commit (the next
        // claim, or any other write) makes it durable with itself, since both logs are
        // written in order. Lost only to a power cut before that, it leaves the row
        // `sending`, which becomes `outcome-unknown` (never resent): the one write per
        // message that may wait is the one whose loss duplicates nothing.
        let relaxed = state == OutboxState::Sent;
        let done = match &self.db {
            Db::Sqlite(pool) if relaxed => {
                let mut conn = pool.acquire().await?;
                sqlx::query("PRAGMA synchronous = NORMAL")
                    .execute(&mut *conn)
                    .await?;
                let result = finish!(sqlx::query(FINISH)).execute(&mut *conn).await;
                if sqlx::query("PRAGMA synchronous = FULL")
                    .execute(&mut *conn)
                    .await
                    .is_err()
                {
                    // Never back in the pool with durability turned down.
                    conn.close_on_drop();
                }
                result?.rows_affected()
            }
            Db::Postgres(pool) if relaxed => {
                let mut tx = pool.begin().await?;
                sqlx::query("SET LOCAL synchronous_commit = off")
                    .execute(&mut *tx)
                    .await?;
                let done = finish!(sqlx::query(FINISH))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                done
            }
            _ => on_db!(&self.db, pool => {
                finish!(sqlx::query(FINISH)).execute(pool).await?.rows_affected()
            }),
        };
        if done == 0 {
            return Err(StoreError::ClaimLost {
                id: id.to_string(),
                instance: instance.to_owned(),
            });
        }
        Ok(())
    }

    /// The server accepted `id` at `at`, answering `reply`.
    pub async fn outbox_mark_sent(
        &self,
        id: OutboxId,
        instance: &str,
        at: OffsetDateTime,
        reply: Option<&str>,
    ) -> Result<(), StoreError> {
        self.outbox_finish(
            id,
            instance,
            OutboxState::Sent,
            None,
            None,
            Some((at, reply)),
        )
        .await
    }

    /// A passing failure: `id` is tried again at `at`; `error` says what happened and
    /// `class` its class.
    pub async fn outbox_mark_retry(
        &self,
        id: OutboxId,
        instance: &str,
        at: OffsetDateTime,
        error: &str,
        class: &str,
    ) -> Result<(), StoreError> {
        self.outbox_finish(
            id,
            instance,
            OutboxState::Retrying,
            Some(at),
            Some((error, class)),
            None,
        )
        .await
    }

    /// `id` will not be sent: `error` says why and what to do.
    pub async fn outbox_mark_failed(
        &self,
        id: OutboxId,
        instance: &str,
        error: &str,
        class: &str,
    ) -> Result<(), StoreError> {
        self.outbox_finish(
            id,
            instance,
            OutboxState::Failed,
            None,
            Some((error, class)),
            None,
        )
        .await
    }

    /// The server may or may not have `id`: it waits for a person.
    pub async fn outbox_mark_outcome_unknown(
        &self,
        id: OutboxId,
        instance: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        self.outbox_finish(
            id,
            instance,
            OutboxState::OutcomeUnknown,
            None,
            Some((error, "outcome-unknown")),
            None,
        )
        .await
    }

    /// One message, without its bytes.
    pub async fn outbox_get(&self, id: OutboxId) -> Result<Option<OutboxEntry>, StoreError> {
        let sql = concat!("SELECT ", columns!(), " FROM outbox WHERE id = $1");
        let raw = on_db!(&self.db, pool => {
            match sqlx::query(sql).bind(id.as_uuid()).fetch_optional(pool).await? {
                Some(row) => Some(raw!(&row)),
                None => None,
            }
        });
        raw.map(Raw::entry).transpose()
    }

    /// The messages of `account` (every account's with `None`), in the order they
    /// were queued, without their bytes.
    pub async fn outbox_list(
        &self,
        account: Option<AccountId>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let sql = concat!(
            "SELECT ",
            columns!(),
            " FROM outbox WHERE $1 IS NULL OR account_id = $1 ORDER BY seq"
        );
        let raws = on_db!(&self.db, pool => {
            let rows = sqlx::query(sql)
                .bind(account.map(|a| a.as_uuid()))
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

    /// When the next unfinished message becomes due (the earliest `next_attempt_at`
    /// among the accounts' heads that wait), or `None` when none waits.
    pub async fn outbox_next_due(&self) -> Result<Option<OffsetDateTime>, StoreError> {
        let next: Option<i64> = on_db!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT min(o.next_attempt_at) FROM outbox o
                 WHERE o.state IN ('queued', 'retrying')
                   AND o.seq = (SELECT min(h.seq) FROM outbox h WHERE h.account_id = o.account_id
                                AND h.state IN ('queued', 'sending', 'retrying'))",
            )
            .fetch_one(pool)
            .await?
        });
        Ok(next.map(at))
    }

    /// How many messages each account has in each state (the metrics' queue depth
    /// and sent/failed counts): (account, state, count), accounts with none left out.
    pub async fn outbox_counts(&self) -> Result<Vec<(AccountId, OutboxState, u64)>, StoreError> {
        let rows: Vec<(Uuid, String, i64)> = on_db!(&self.db, pool => {
            sqlx::query_as(
                "SELECT account_id, state, count(*) FROM outbox GROUP BY account_id, state ORDER BY account_id, state",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(account, state, n)| {
                Some((
                    AccountId::from_uuid(account),
                    OutboxState::parse(&state)?,
                    u64::try_from(n).unwrap_or(0),
                ))
            })
            .collect())
    }
}

impl Store {
    /// The id the outbox keeps `account`'s messages under: the stored account's, or
    /// one given now to an account of the configuration file.
    pub async fn outbox_account_id(&self, account: &str) -> Result<AccountId, StoreError> {
        self.account_id_or_register(account).await
    }
}
