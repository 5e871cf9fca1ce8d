-- The whole schema of the PostgreSQL store; the same tables as SQLite after its
-- migration 0004, in PostgreSQL's types.

-- Store metadata (the master-key check value).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value BYTEA NOT NULL
);

-- Every secret (refresh token, client secret, certificate key, password) is sealed with
-- XChaCha20-Poly1305 under the master key, with its id as associated data. The master
-- key is never in the database.
CREATE TABLE secrets (
    id           TEXT PRIMARY KEY NOT NULL,
    kind         TEXT NOT NULL,
    sealed       BYTEA NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    expires_at   BIGINT
);

-- Apps, accounts and user-defined providers, each with a stable id and a unique name,
-- kept as their JSON documents (secrets are never part of them).
CREATE TABLE apps (
    id         UUID PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    config     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE providers (
    id         UUID PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    config     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE accounts (
    id         UUID PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    address    TEXT NOT NULL DEFAULT '',
    -- NULL for an account known only by name (defined in the configuration file).
    config     TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE INDEX accounts_address ON accounts (lower(address));

-- Sign-in state of each account: signed-in, or needs-sign-in with the reason.
CREATE TABLE account_state (
    account_id UUID PRIMARY KEY NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    reason     TEXT,
    updated_at BIGINT NOT NULL
);

-- Where a download of an account's folder stopped.
CREATE TABLE checkpoints (
    account_id UUID NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    folder     TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, folder)
);
