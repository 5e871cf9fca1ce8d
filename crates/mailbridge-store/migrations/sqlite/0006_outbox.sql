-- The durable outbox: messages accepted for sending (`mailbridge send --queue`, the
-- API) and what became of each. `seq` is the order of submission (per account, the
-- oldest unsent message goes first); `id` the message's stable id. The raw MIME is
-- kept in the row (bounded by the account's `limits.max_message_size` when queued), so
-- a message and its state are written, copied and backed up together.
--
-- States: queued, sending (claimed by `claimed_by` until `claim_until`), sent,
-- retrying (at `next_attempt_at`), failed, outcome-unknown (waits for a person).
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              BLOB NOT NULL UNIQUE CHECK (length(id) = 16),
    account_id      BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    message         BLOB NOT NULL,
    mail_from       TEXT,
    -- JSON array of envelope recipients; empty: the header's To, Cc and Bcc.
    recipients      TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    error_class     TEXT,
    claimed_by      TEXT,
    claim_until     INTEGER,
    sent_at         INTEGER,
    server_reply    TEXT,
    UNIQUE (account_id, idempotency_key)
);

-- The unfinished messages of each account, in order: the head of each account.
CREATE INDEX outbox_pending ON outbox (account_id, seq)
    WHERE state IN ('queued', 'sending', 'retrying');
