-- The outbox's raw MIME moves to the end of its row, and claiming finds due messages
-- through indexes. SQLite keeps a row's columns in order, so every column after
-- `message` (the state, the next attempt, the claim) sat behind the message's
-- overflow pages: the claim, which read the state of every row ever queued, walked
-- all the mail ever sent, at each message. The table is copied as it is (ids, order,
-- states) with `message` last; `seq` goes on from where it was.
CREATE TABLE outbox_new (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              BLOB NOT NULL UNIQUE CHECK (length(id) = 16),
    account_id      BLOB NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
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
    message         BLOB NOT NULL,
    UNIQUE (account_id, idempotency_key)
);

INSERT INTO outbox_new (seq, id, account_id, idempotency_key, created_at, mail_from,
    recipients, state, attempts, next_attempt_at, last_error, error_class, claimed_by,
    claim_until, sent_at, server_reply, message)
SELECT seq, id, account_id, idempotency_key, created_at, mail_from, recipients, state,
    attempts, next_attempt_at, last_error, error_class, claimed_by, claim_until, sent_at,
    server_reply, message
FROM outbox;

-- AUTOINCREMENT's high-water mark, so no `seq` is ever given twice.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'outbox_new', 0
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox_new');
UPDATE sqlite_sequence
SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0))
WHERE name = 'outbox_new';

DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;

-- The unfinished messages of each account, in order: the head of each account.
CREATE INDEX outbox_pending ON outbox (account_id, seq)
    WHERE state IN ('queued', 'sending', 'retrying');
-- The messages a claim may take, soonest first.
CREATE INDEX outbox_due ON outbox (next_attempt_at, seq)
    WHERE state IN ('queued', 'retrying');
-- The claims to look at when a sender may have stopped.
CREATE INDEX outbox_sending ON outbox (claim_until) WHERE state = 'sending';
