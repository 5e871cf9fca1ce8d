-- The audit log: every administrative change, who made it (a person of the web UI or
-- an API token, by name), what (an action on an object: its kind, id and name; never a
-- secret value), when (unix seconds) and from where (the client's address). Rows are
-- only ever added; `seq` orders them.
CREATE TABLE audit_log (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor_kind  TEXT NOT NULL CHECK (actor_kind IN ('person', 'token')),
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    object_kind TEXT NOT NULL,
    object_id   TEXT,
    object_name TEXT,
    client      TEXT NOT NULL
);

-- The system's settings (which account sends its own notifications, the default
-- language), one value per key.
CREATE TABLE settings (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
