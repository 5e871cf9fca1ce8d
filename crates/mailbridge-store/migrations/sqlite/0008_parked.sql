-- Parked deliveries: a received message that a sink kept refusing (or refused for
-- good), kept with everything needed to finish its delivery later on any instance:
-- its raw MIME (bounded by the account's `limits.max_message_size`), the sinks that
-- have not accepted it yet (JSON list), the route's source action still to do (JSON),
-- the message's reference at the source (JSON) and its idempotency key. The watcher
-- stores the row before it moves its checkpoint past the message.
--
-- States: parked (retried at `next_attempt_at`; claimed by `claimed_by` until
-- `claim_until` while a worker retries it), delivered (every sink accepted it; the
-- source action waits for the account's watcher, which removes the row once done).
-- A delivered message with nothing to do at the source is removed at once.
CREATE TABLE parked (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              BLOB NOT NULL UNIQUE CHECK (length(id) = 16),
    account_id      BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    account_name    TEXT NOT NULL,
    folder          TEXT NOT NULL,
    source_id       TEXT NOT NULL,
    message_ref     TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    route           TEXT NOT NULL,
    remaining_sinks TEXT NOT NULL,
    source_action   TEXT NOT NULL,
    message         BLOB NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL,
    error_class     TEXT NOT NULL,
    parked_at       INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    claimed_by      TEXT,
    claim_until     INTEGER,
    state           TEXT NOT NULL,
    delivered_at    INTEGER,
    UNIQUE (account_id, idempotency_key)
);

CREATE INDEX parked_due ON parked (next_attempt_at) WHERE state = 'parked';
CREATE INDEX parked_source ON parked (account_id, folder, source_id);
