-- A parked delivery's raw MIME moves to the end of its row, as the outbox's did
-- (0011): SQLite keeps a row's columns in order, so listing parked deliveries (their
-- attempts, errors, times and state) walked every parked message's overflow pages.
-- The table is copied as it is; `seq` (the API's page cursor) goes on from where it was.
CREATE TABLE parked_new (
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
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL,
    error_class     TEXT NOT NULL,
    parked_at       INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    claimed_by      TEXT,
    claim_until     INTEGER,
    state           TEXT NOT NULL,
    delivered_at    INTEGER,
    message         BLOB NOT NULL,
    UNIQUE (account_id, idempotency_key)
);

INSERT INTO parked_new (seq, id, account_id, account_name, folder, source_id, message_ref,
    idempotency_key, route, remaining_sinks, source_action, attempts, last_error,
    error_class, parked_at, next_attempt_at, claimed_by, claim_until, state, delivered_at,
    message)
SELECT seq, id, account_id, account_name, folder, source_id, message_ref, idempotency_key,
    route, remaining_sinks, source_action, attempts, last_error, error_class, parked_at,
    next_attempt_at, claimed_by, claim_until, state, delivered_at, message
FROM parked;

-- AUTOINCREMENT's high-water mark, so no `seq` (a page cursor) is ever given twice.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'parked_new', 0
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'parked_new');
UPDATE sqlite_sequence
SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'parked'), 0))
WHERE name = 'parked_new';

DROP TABLE parked;
ALTER TABLE parked_new RENAME TO parked;

CREATE INDEX parked_due ON parked (next_attempt_at) WHERE state = 'parked';
CREATE INDEX parked_source ON parked (account_id, folder, source_id);
