-- Stable ids: apps, accounts and providers get a UUID (16 bytes) that never changes
-- when their name is edited; names stay unique. Sign-in state and checkpoints are kept
-- by account id. An account that has state or checkpoints but no stored
-- configuration (one defined in the configuration file) gets an id of its own, with
-- no `config`.
--
-- A version 4 UUID built in SQL: 12 random hex digits, the version `4`, 3 random, the
-- variant (8, 9, A or B), 3 random, 12 random; evaluated once per row.

CREATE TABLE apps_new (
    id         BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    name       TEXT NOT NULL UNIQUE,
    config     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO apps_new (id, name, config, updated_at)
SELECT unhex(hex(randomblob(6)) || '4' || substr(hex(randomblob(2)), 2)
             || substr('89AB', 1 + (random() & 3), 1) || substr(hex(randomblob(2)), 2)
             || hex(randomblob(6))),
       name, config, updated_at
FROM apps;

CREATE TABLE providers_new (
    id         BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    name       TEXT NOT NULL UNIQUE,
    config     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO providers_new (id, name, config, updated_at)
SELECT unhex(hex(randomblob(6)) || '4' || substr(hex(randomblob(2)), 2)
             || substr('89AB', 1 + (random() & 3), 1) || substr(hex(randomblob(2)), 2)
             || hex(randomblob(6))),
       id, config, updated_at
FROM providers;

CREATE TABLE accounts_new (
    id         BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    name       TEXT NOT NULL UNIQUE,
    address    TEXT NOT NULL DEFAULT '',
    -- NULL for an account known only by name (defined in the configuration file).
    config     TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
INSERT INTO accounts_new (id, name, address, config, created_at, updated_at)
SELECT unhex(hex(randomblob(6)) || '4' || substr(hex(randomblob(2)), 2)
             || substr('89AB', 1 + (random() & 3), 1) || substr(hex(randomblob(2)), 2)
             || hex(randomblob(6))),
       name, address, config, created_at, updated_at
FROM accounts;
INSERT INTO accounts_new (id, name, address, config, created_at, updated_at)
SELECT unhex(hex(randomblob(6)) || '4' || substr(hex(randomblob(2)), 2)
             || substr('89AB', 1 + (random() & 3), 1) || substr(hex(randomblob(2)), 2)
             || hex(randomblob(6))),
       name, '', NULL, updated_at, updated_at
FROM (
    SELECT account AS name, max(updated_at) AS updated_at FROM (
        SELECT account, updated_at FROM account_state
        UNION ALL
        SELECT account, updated_at FROM checkpoints
    )
    WHERE account NOT IN (SELECT name FROM accounts)
    GROUP BY account
);

CREATE TABLE account_state_new (
    account_id BLOB PRIMARY KEY NOT NULL REFERENCES accounts_new (id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    reason     TEXT,
    updated_at INTEGER NOT NULL
);
INSERT INTO account_state_new (account_id, state, reason, updated_at)
SELECT a.id, s.state, s.reason, s.updated_at
FROM account_state s JOIN accounts_new a ON a.name = s.account;

CREATE TABLE checkpoints_new (
    account_id BLOB NOT NULL REFERENCES accounts_new (id) ON DELETE CASCADE,
    folder     TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (account_id, folder)
);
INSERT INTO checkpoints_new (account_id, folder, checkpoint, updated_at)
SELECT a.id, c.folder, c.checkpoint, c.updated_at
FROM checkpoints c JOIN accounts_new a ON a.name = c.account;

DROP TABLE checkpoints;
DROP TABLE account_state;
DROP INDEX accounts_address;
DROP TABLE accounts;
DROP TABLE providers;
DROP TABLE apps;

ALTER TABLE apps_new RENAME TO apps;
ALTER TABLE providers_new RENAME TO providers;
ALTER TABLE accounts_new RENAME TO accounts;
ALTER TABLE account_state_new RENAME TO account_state;
ALTER TABLE checkpoints_new RENAME TO checkpoints;

CREATE INDEX accounts_address ON accounts (lower(address));
