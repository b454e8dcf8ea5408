-- A fanned-out task with parents (100 instances or more) has no instance
-- rows until its group reaches zero, or is skipped or cancelled: then they
-- are created at once, ready or not. Creating them at trigger meant
-- rewriting every one of them to say "ready" (10,000 row versions and their
-- index entries for a fan-out of 10,000); now a release creates them.
-- Until then the group holds what each instance will be.
ALTER TABLE task_groups ADD COLUMN deferred INTEGER NOT NULL DEFAULT 0;
ALTER TABLE task_groups ADD COLUMN task_count INTEGER;
ALTER TABLE task_groups ADD COLUMN executor TEXT;
ALTER TABLE task_groups ADD COLUMN max_attempts INTEGER;
ALTER TABLE task_groups ADD COLUMN limit_group TEXT;
ALTER TABLE task_groups ADD COLUMN limit_key TEXT;

-- Claims take the ready instances in the order they became ready, along
-- this index, whatever the planner's statistics say: taken while a run's
-- first instances were all ready, they had PostgreSQL scan the table for
-- ready rows (10–19 ms a claim under the webhook load) instead.
DROP INDEX tasks_claim;
CREATE INDEX tasks_claim ON tasks (run_id, deps_remaining, ready_at) WHERE status = 'pending';
