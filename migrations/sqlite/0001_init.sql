-- Ork's state. Every state change also appends to `events` in the same transaction.
-- SQLite twin of migrations/postgres: same tables and columns; timestamps are RFC 3339 text, ids 16-byte blobs, JSON text.

CREATE TABLE workflows (
    name            TEXT PRIMARY KEY,
    latest_version  INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE workflow_versions (
    workflow    TEXT NOT NULL REFERENCES workflows (name) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    spec        TEXT NOT NULL,
    hash        TEXT NOT NULL,
    source      TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (workflow, version)
);

CREATE TABLE runs (
    id               BLOB PRIMARY KEY,
    workflow         TEXT NOT NULL,
    version          INTEGER NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'running', 'success', 'failed', 'cancelled')),
    params           TEXT NOT NULL,
    trigger          TEXT NOT NULL,
    idempotency_key  TEXT,
    -- Counters kept in step with the tasks so that finalizing a run is one
    -- conditional update of this row, never a scan.
    tasks_total      INTEGER NOT NULL,
    tasks_open       INTEGER NOT NULL,
    tasks_failed     INTEGER NOT NULL DEFAULT 0,
    error            TEXT,
    created_at       TEXT NOT NULL,
    finished_at      TEXT,
    FOREIGN KEY (workflow, version) REFERENCES workflow_versions (workflow, version)
);
CREATE INDEX runs_by_workflow ON runs (workflow, created_at DESC);
CREATE INDEX runs_by_created ON runs (created_at DESC);
CREATE INDEX runs_open ON runs (status) WHERE status IN ('pending', 'running');
CREATE UNIQUE INDEX runs_idempotency ON runs (workflow, idempotency_key) WHERE idempotency_key IS NOT NULL;

CREATE TABLE tasks (
    id                BLOB PRIMARY KEY,
    run_id            BLOB NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    task_index        INTEGER NOT NULL,
    task_count        INTEGER NOT NULL,
    executor          TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'dispatched', 'running', 'success', 'failed', 'skipped', 'cancelled')),
    attempt           INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    -- Copied from task_groups; set to 0 (and ready_at set) when the group's reaches 0.
    deps_remaining    INTEGER NOT NULL,
    execution_id      TEXT,
    exit_code         INTEGER,
    error             TEXT,
    output            TEXT,
    ready_at          TEXT,
    not_before        TEXT,
    -- dispatched: the claim's lease; running: when a missed heartbeat fails it.
    lease_expires_at  TEXT,
    -- running: when the task's timeout fails it.
    deadline_at       TEXT,
    dispatched_at     TEXT,
    started_at        TEXT,
    finished_at       TEXT,
    UNIQUE (run_id, name, task_index)
);
-- The claim: ready tasks of one run.
CREATE INDEX tasks_claim ON tasks (run_id, deps_remaining) WHERE status = 'pending';
-- Platform events (Cloud Run executions) name the attempt by its execution.
CREATE INDEX tasks_by_execution ON tasks (execution_id) WHERE execution_id IS NOT NULL;
-- The sweeper: attempts in flight (leases, deadlines, polls).
CREATE INDEX tasks_in_flight ON tasks (status, lease_expires_at) WHERE status IN ('dispatched', 'running');

-- One row per task name in a run: how many parent instances have yet to
-- succeed before all of its instances are ready. A release is one update of
-- this row, not of every instance of a fanned-out child.
CREATE TABLE task_groups (
    run_id          BLOB NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    deps_remaining  INTEGER NOT NULL,
    PRIMARY KEY (run_id, name)
);

CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id    BLOB NOT NULL,
    task_id   BLOB,
    attempt   INTEGER,
    status    TEXT NOT NULL,
    detail    TEXT,
    at        TEXT NOT NULL
);
CREATE INDEX events_by_run ON events (run_id, id);

-- The last cron slot fired per scheduled workflow. Each slot's run is also
-- unique through runs_idempotency (key `schedule:<slot>`), so overlapping
-- ticks fire it once.
CREATE TABLE schedules (
    workflow    TEXT PRIMARY KEY REFERENCES workflows (name) ON DELETE CASCADE,
    last_slot   TEXT NOT NULL
);
