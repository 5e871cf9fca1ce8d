-- API tokens of the daemon's HTTP API. Only the token's SHA-256 (64 hex digits) is
-- kept; the token itself is shown once when it is made. A revoked token keeps its row
-- (revoked_at set) so the listing shows when it was revoked; names are unique among
-- tokens that are not revoked.
CREATE TABLE api_tokens (
    id         BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('administrator', 'user', 'auditor')),
    user_name  TEXT,
    sha256     TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;
