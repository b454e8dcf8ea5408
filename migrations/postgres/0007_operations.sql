-- A paused workflow's schedule does not fire (docs/operations.md).
ALTER TABLE workflows ADD COLUMN paused BOOLEAN NOT NULL DEFAULT FALSE;

-- Backfills in progress: the cron slots in [next_slot, until_at) not yet
-- started. The sweeper (and each run a backfill finishes) starts the next
-- slots while fewer than max_parallel backfill runs of the workflow are open;
-- a row is deleted once its last slot started.
CREATE TABLE backfills (
    id            UUID PRIMARY KEY,
    workflow      TEXT NOT NULL REFERENCES workflows (name) ON DELETE CASCADE,
    next_slot     TIMESTAMPTZ NOT NULL,
    until_at      TIMESTAMPTZ NOT NULL,
    max_parallel  BIGINT NOT NULL,
    rerun         BOOLEAN NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
