-- The audit log and the system's settings; as SQLite's migration 0013. Rows of the
-- audit log are only ever added; `seq` orders them. Never a secret value in them.
CREATE TABLE audit_log (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor_kind  TEXT NOT NULL CHECK (actor_kind IN ('person', 'token')),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_kind TEXT NOT NULL,
    object_id   TEXT,
    object_name TEXT,
    client      TEXT NOT NULL
);

CREATE TABLE settings (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
