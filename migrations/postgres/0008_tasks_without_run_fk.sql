-- A task instance names its run without a foreign key, as an event does.
-- PostgreSQL checks a foreign key row by row: creating a run's instances
-- spent a third of its time on the check (34 ms of 103 ms for 10,000).
-- Instances are created only in a transaction that holds their run (its
-- trigger, or a completion that expands a `foreach`), and deleted with it
-- (retention deletes the run, its tasks and its events in one transaction).
ALTER TABLE tasks DROP CONSTRAINT tasks_run_id_fkey;
