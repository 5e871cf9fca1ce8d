-- Sign-in state of each account: signed-in, or needs-sign-in with the reason.
CREATE TABLE account_state (
    account    TEXT PRIMARY KEY NOT NULL,
    state      TEXT NOT NULL,
    reason     TEXT,
    updated_at INTEGER NOT NULL
);
