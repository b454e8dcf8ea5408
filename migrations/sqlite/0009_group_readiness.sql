-- Readiness is the group's: a claim reads task_groups.deps_remaining, so
-- the release of a fan-out writes one row, not one per instance (10,000
-- instances were 93 ms of one statement). The group keeps when it became
-- ready; an instance copies it when claimed.
ALTER TABLE task_groups ADD COLUMN ready_at TEXT;
UPDATE task_groups SET ready_at = (SELECT MIN(t.ready_at) FROM tasks t
    WHERE t.run_id = task_groups.run_id AND t.name = task_groups.name)
WHERE deps_remaining = 0;
DROP INDEX tasks_claim;
ALTER TABLE tasks DROP COLUMN deps_remaining;
-- The claim: a run's pending instances, per task name in index order.
CREATE INDEX tasks_claim ON tasks (run_id, name, task_index) WHERE status = 'pending';
