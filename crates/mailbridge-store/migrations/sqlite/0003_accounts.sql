-- Apps, accounts and user-defined providers, each kept as its JSON document (the
-- configuration types of mailbridge-types); secrets are never part of them.
CREATE TABLE apps (
    name       TEXT PRIMARY KEY NOT NULL,
    config     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE accounts (
    name       TEXT PRIMARY KEY NOT NULL,
    address    TEXT NOT NULL,
    config     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE INDEX accounts_address ON accounts (address COLLATE NOCASE);

CREATE TABLE providers (
    id         TEXT PRIMARY KEY NOT NULL,
    config     TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Where a download of an account's folder stopped (the Mailbox API's checkpoint).
CREATE TABLE checkpoints (
    account    TEXT NOT NULL,
    folder     TEXT NOT NULL,
    checkpoint TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (account, folder)
);
