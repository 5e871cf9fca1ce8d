-- Store metadata (key check value, passphrase salt) and sealed secrets.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);

-- Every secret (refresh token, client secret, certificate key, password) is sealed with
-- XChaCha20-Poly1305 under the master key, with its id as associated data.
CREATE TABLE secrets (
    id           TEXT PRIMARY KEY NOT NULL,
    kind         TEXT NOT NULL,
    sealed       BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    expires_at   INTEGER
);
