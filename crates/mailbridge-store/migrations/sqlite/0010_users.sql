-- People of the web UI, their sessions, and the one-time setup link of the first run.
-- A password is kept only as an Argon2id PHC string (made by the caller); a session id
-- and a setup token only as their SHA-256 (64 hex digits).
CREATE TABLE users (
    id            BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('administrator', 'user', 'auditor')),
    language      TEXT,
    created_at    INTEGER NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1))
);

CREATE TABLE web_sessions (
    sha256       TEXT PRIMARY KEY NOT NULL,
    user_id      BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL
);

CREATE INDEX web_sessions_user ON web_sessions (user_id);

CREATE TABLE setup_tokens (
    sha256     TEXT PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
);
