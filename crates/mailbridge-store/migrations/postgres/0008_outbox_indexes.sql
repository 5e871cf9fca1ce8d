-- Claiming finds due messages through indexes, not by reading every row ever queued
-- (PostgreSQL keeps the raw MIME out of line, so only the indexes are new here; SQLite's
-- migration 0011 also moves the message to the end of the row).
CREATE INDEX outbox_due ON outbox (next_attempt_at, seq)
    WHERE state IN ('queued', 'retrying');
CREATE INDEX outbox_sending ON outbox (claim_until) WHERE state = 'sending';
