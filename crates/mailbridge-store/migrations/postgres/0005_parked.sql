-- Parked deliveries; the same table as SQLite's migration 0008, in PostgreSQL's
-- types. Workers claim due rows with `FOR UPDATE SKIP LOCKED`, so two instances never
-- retry the same row at once.
CREATE TABLE parked (
    seq             BIGSERIAL PRIMARY KEY,
    id              UUID NOT NULL UNIQUE,
    account_id      UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    account_name    TEXT NOT NULL,
    folder          TEXT NOT NULL,
    source_id       TEXT NOT NULL,
    message_ref     TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    route           TEXT NOT NULL,
    remaining_sinks TEXT NOT NULL,
    source_action   TEXT NOT NULL,
    message         BYTEA NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL,
    error_class     TEXT NOT NULL,
    parked_at       BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_by      TEXT,
    claim_until     BIGINT,
    state           TEXT NOT NULL,
    delivered_at    BIGINT,
    UNIQUE (account_id, idempotency_key)
);

CREATE INDEX parked_due ON parked (next_attempt_at) WHERE state = 'parked';
CREATE INDEX parked_source ON parked (account_id, folder, source_id);
