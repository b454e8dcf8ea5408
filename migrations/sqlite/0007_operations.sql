-- A paused workflow's schedule does not fire (docs/operations.md).
ALTER TABLE workflows ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;

-- Backfills in progress: the cron slots in [next_slot, until_at) not yet
-- started. The sweeper (and each run a backfill finishes) starts the next
-- slots while fewer than max_parallel backfill runs of the workflow are open;
-- a row is deleted once its last slot started.
CREATE TABLE backfills (
    id            TEXT PRIMARY KEY,
    workflow      TEXT NOT NULL REFERENCES workflows (name) ON DELETE CASCADE,
    next_slot     TEXT NOT NULL,
    until_at      TEXT NOT NULL,
    max_parallel  INTEGER NOT NULL,
    rerun         INTEGER NOT NULL,
    created_at    TEXT NOT NULL
);
