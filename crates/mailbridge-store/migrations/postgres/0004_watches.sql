-- What the daemon does with received mail; the same tables as SQLite's 0007.

-- Sinks, by stable id and unique name; secrets sealed under `sink:<id>:secret`.
CREATE TABLE sinks (
    id         UUID PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    config     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Each account's watch (enabled, folder, poll interval, routes) as one JSON document.
CREATE TABLE watches (
    account_id UUID PRIMARY KEY NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    config     TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Leases: which instance holds a piece of work (an account's watcher) until when.
CREATE TABLE leases (
    name   TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    until  BIGINT NOT NULL
);
