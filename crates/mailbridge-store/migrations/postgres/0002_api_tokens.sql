-- API tokens of the daemon's HTTP API; as SQLite's migration 0005. Only the token's
-- SHA-256 (64 hex digits) is kept; names are unique among tokens not revoked.
CREATE TABLE api_tokens (
    id         UUID PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('administrator', 'user', 'auditor')),
    user_name  TEXT,
    sha256     TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;
