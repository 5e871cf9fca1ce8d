-- People of the web UI, their sessions, and the one-time setup link of the first run;
-- as SQLite's migration 0010. Passwords only as Argon2id PHC strings; session ids and
-- setup tokens only as their SHA-256 (64 hex digits).
CREATE TABLE users (
    id            UUID PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('administrator', 'user', 'auditor')),
    language      TEXT,
    created_at    BIGINT NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE
);

CREATE TABLE web_sessions (
    sha256       TEXT PRIMARY KEY NOT NULL,
    user_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);

CREATE INDEX web_sessions_user ON web_sessions (user_id);

CREATE TABLE setup_tokens (
    sha256     TEXT PRIMARY KEY NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
