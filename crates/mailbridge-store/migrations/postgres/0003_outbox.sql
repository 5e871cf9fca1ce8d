-- The durable outbox; the same table as SQLite's migration 0006, in PostgreSQL's
-- types. Claims take rows with `FOR UPDATE SKIP LOCKED`, so instances sharing the
-- database never claim the same message.
CREATE TABLE outbox (
    seq             BIGSERIAL PRIMARY KEY,
    id              UUID NOT NULL UNIQUE,
    account_id      UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    idempotency_key TEXT,
    created_at      BIGINT NOT NULL,
    message         BYTEA NOT NULL,
    mail_from       TEXT,
    -- JSON array of envelope recipients; empty: the header's To, Cc and Bcc.
    recipients      TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    error_class     TEXT,
    claimed_by      TEXT,
    claim_until     BIGINT,
    sent_at         BIGINT,
    server_reply    TEXT,
    UNIQUE (account_id, idempotency_key)
);

CREATE INDEX outbox_pending ON outbox (account_id, seq)
    WHERE state IN ('queued', 'sending', 'retrying');
