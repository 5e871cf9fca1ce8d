-- What the daemon does with received mail.
--
-- Sinks: where messages are delivered (a folder, an attachments folder, a webhook, an
-- SMTP relay), each with a stable id and a unique name that routes refer to. `config`
-- is the JSON document of its settings without secrets: a webhook's signing secret
-- and a relay's password are sealed in `secrets` under `sink:<id>:secret`.
CREATE TABLE sinks (
    id         BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    name       TEXT NOT NULL UNIQUE,
    config     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Each account's watch: whether its watcher runs, the folder it watches, how often it
-- polls, and its ordered routes, as one JSON document.
CREATE TABLE watches (
    account_id BLOB PRIMARY KEY NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    config     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Leases: which instance holds a piece of work (an account's watcher) until when.
-- An instance renews its leases well before they end; one that dies loses them when
-- they end, and another instance takes them over.
CREATE TABLE leases (
    name   TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    until  INTEGER NOT NULL
);
