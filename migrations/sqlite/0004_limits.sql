-- Claim-time limits (docs/concurrency.md). A task's limit keys are set when
-- its row is created, so counting the attempts in flight under a key is an
-- index lookup.
ALTER TABLE runs ADD COLUMN concurrency_key TEXT;
-- `max_parallel`: `workflow/task`, shared by every run of the workflow.
ALTER TABLE tasks ADD COLUMN limit_group TEXT;
-- `concurrency.key` rendered from the run's params.
ALTER TABLE tasks ADD COLUMN limit_key TEXT;
CREATE INDEX tasks_limit_group ON tasks (limit_group, status) WHERE limit_group IS NOT NULL;
CREATE INDEX tasks_limit_key ON tasks (limit_key, status) WHERE limit_key IS NOT NULL;
CREATE INDEX runs_active_by_workflow ON runs (workflow, status) WHERE status IN ('pending', 'running');

-- One row per limit a claim checks: locked (by an upsert) for the claim's
-- transaction, so claims under the same limit take turns; for a rate limit,
-- `next_at` is when its next token is available.
CREATE TABLE limits (
    key      TEXT PRIMARY KEY,
    next_at  TEXT
);
