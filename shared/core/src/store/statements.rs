//! Every SQL statement of the store, by name, written once for both
//! backends (`$N` placeholders, `RETURNING`, `UPDATE … FROM (VALUES …)`).
//!
//! A statement with a generated part (a `VALUES` list, an `IN (…)` list, a
//! [`super::Dialect`] lock clause) is split where that part goes:
//! `NAME_HEAD`, the generated part, then `NAME_TAIL`. Only [`super::sql::Sql`]
//! writes the generated parts, and only as placeholders.
//!
//! Statements that name their rows (by id, or by run and task name) compare
//! the status through an expression, `(status || '')`: PostgreSQL then
//! cannot answer them from the partial indexes on status (`tasks_claim`,
//! `tasks_in_flight`), and looks the rows up by key. With statistics
//! taken before a run's rows changed status (the usual case: runs are
//! younger than autovacuum's minute), it believed those indexes small and
//! scanned every attempt in flight once per row sent: 8.8 ms instead of
//! 0.07 ms to record three completions with 10,000 attempts in flight.
//!
//! For the same reason, the `_PG` statements find a run's rows by name
//! through a `LATERAL` lookup per name (`OFFSET 0` keeps the planner from
//! flattening it) rather than `run_id = $1 AND name IN (…)`: believing a
//! run small (74 groups, where it had 20,000), PostgreSQL scanned all of
//! the run's rows by `run_id` and filtered them by name, 3.0 ms to lock ten
//! groups against 0.19 ms for ten lookups by the whole key. SQLite plans
//! `IN (…)` well, and has no `LATERAL`.
//!
//! The `_PG` statements of the hot path take their batches as arrays
//! (`unnest($n::uuid[], …)`, `= ANY($n::text[])`; [`super::sql::Arg`]).
//! A `VALUES` or `IN` list has a text per length: each new one cost a
//! parse and a describe round trip (a third of the webhook load's claims),
//! and a thousand-row `VALUES` list 3.4–5.5 ms of planning at every
//! execution, against 0.15–0.25 ms for the same rows as arrays.

// ---- workflows (writes.rs: `Tx::save_workflow`) ----

pub(super) const INSERT_WORKFLOW: &str =
    "INSERT INTO workflows (name, latest_version, created_at, updated_at) \
     VALUES ($1, 0, $2, $2) ON CONFLICT (name) DO NOTHING";

/// Followed by [`super::Dialect::lock_rows_of`] `w`, so that concurrent
/// applies number versions in turn.
pub(super) const LATEST_WORKFLOW_VERSION: &str =
    "SELECT w.latest_version, v.hash FROM workflows w \
     LEFT JOIN workflow_versions v ON v.workflow = w.name AND v.version = w.latest_version \
     WHERE w.name = $1";

pub(super) const INSERT_WORKFLOW_VERSION: &str =
    "INSERT INTO workflow_versions (workflow, version, spec, hash, source, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6)";

pub(super) const SET_LATEST_WORKFLOW_VERSION: &str =
    "UPDATE workflows SET latest_version = $2, updated_at = $3 WHERE name = $1";

// ---- operations (writes.rs: pause, version deletion, backfills) ----

/// Pauses (`$2` true) or unpauses a workflow; `updated_at` moves so that
/// hosts reload their cron cache (`NEXT_DUE_AT`'s `workflows_at`).
pub(super) const SET_WORKFLOW_PAUSED: &str =
    "UPDATE workflows SET paused = $2, updated_at = $3 WHERE name = $1";

/// Deletes a version that is not the one in force and has no run. Version
/// numbers are never reused (the latest stays), so cached versions stay true.
pub(super) const DELETE_WORKFLOW_VERSION: &str =
    "DELETE FROM workflow_versions WHERE workflow = $1 AND version = $2 \
     AND version <> (SELECT latest_version FROM workflows WHERE name = $1) \
     AND NOT EXISTS (SELECT 1 FROM runs WHERE workflow = $1 AND version = $2)";

/// Why [`DELETE_WORKFLOW_VERSION`] deleted nothing.
pub(super) const WORKFLOW_VERSION_STATE: &str = "SELECT w.latest_version, \
     (SELECT COUNT(*) FROM workflow_versions WHERE workflow = $1 AND version = $2) AS versions, \
     (SELECT COUNT(*) FROM runs WHERE workflow = $1 AND version = $2) AS runs \
     FROM workflows w WHERE w.name = $1";

pub(super) const INSERT_BACKFILL: &str =
    "INSERT INTO backfills (id, workflow, next_slot, until_at, max_parallel, rerun, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// The backfills in progress, each with how many backfill runs of its
/// workflow are open, read in the same statement as its cursor (so a run
/// started after the cursor was read is at or after it).
pub(super) const ACTIVE_BACKFILLS: &str =
    "SELECT b.id, b.workflow, b.next_slot, b.until_at, b.max_parallel, b.rerun, \
     (SELECT COUNT(*) FROM runs r WHERE r.workflow = b.workflow AND r.trigger = 'backfill' \
       AND r.status IN ('pending', 'running')) AS open \
     FROM backfills b ORDER BY b.created_at, b.id";

/// Moves a backfill's cursor from `$2` to `$3`; a racing caller that moved
/// it first wins.
pub(super) const MOVE_BACKFILL: &str =
    "UPDATE backfills SET next_slot = $3 WHERE id = $1 AND next_slot = $2";

/// Ends a backfill whose last slot started.
pub(super) const END_BACKFILL: &str = "DELETE FROM backfills WHERE id = $1";

// ---- runs (`Tx::create_run`, `Tx::close_tasks`, `Tx::cancel_run`) ----

pub(super) const INSERT_RUN: &str =
    "INSERT INTO runs (id, workflow, version, status, params, trigger, idempotency_key, \
     tasks_total, tasks_open, tasks_failed, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 0, $9) \
     ON CONFLICT (workflow, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING";

/// Followed by one `($run, name, deps, deferred, task count, executor,
/// max attempts, limit group, limit key)` tuple per task name: the
/// executor of every group, and for a deferred group what its instances
/// will be (NULL otherwise).
pub(super) const INSERT_TASK_GROUPS_HEAD: &str =
    "INSERT INTO task_groups (run_id, name, deps_remaining, deferred, task_count, executor, \
     max_attempts, limit_group, limit_key) VALUES ";

/// [`INSERT_TASK_GROUPS_HEAD`] on PostgreSQL: all of a run's groups, one
/// array per column (`$2`…`$8`), deferred where a task count is given.
/// 20,000 groups as `VALUES` of 1,000 rows were 20 statements of 9–16 ms.
pub(super) const INSERT_TASK_GROUPS_PG: &str =
    "INSERT INTO task_groups (run_id, name, deps_remaining, deferred, task_count, executor, \
     max_attempts, limit_group, limit_key) \
     SELECT $1, u.name, u.deps, u.task_count IS NOT NULL, u.task_count, u.executor, \
     u.max_attempts, u.limit_group, u.limit_key FROM unnest($2::text[], $3::bigint[], \
     $4::bigint[], $5::text[], $6::bigint[], $7::text[], $8::text[]) \
     AS u(name, deps, task_count, executor, max_attempts, limit_group, limit_key)";

/// The deferred groups of run `$1` (only some: followed by [`CLAIM_TASKS`]
/// or [`CLAIM_TASKS_PG`] and their names), deferred no longer, then
/// [`TAKE_DEFERRED_TAIL`]: what their instances are to be, for the caller
/// to create now. The update locks each group until commit, and a racing
/// caller finds it taken: its instances are created once.
pub(super) const TAKE_DEFERRED_HEAD: &str =
    "UPDATE task_groups SET deferred = FALSE WHERE run_id = $1 AND deferred";

pub(super) const TAKE_DEFERRED_TAIL: &str =
    " RETURNING name, deps_remaining, task_count, executor, max_attempts, limit_group, limit_key";

/// Followed by one tuple per task instance.
pub(super) const INSERT_TASKS_HEAD: &str =
    "INSERT INTO tasks (id, run_id, name, task_index, task_count, executor, status, \
     max_attempts, deps_remaining, ready_at, limit_group, limit_key) VALUES ";

/// [`INSERT_TASKS_HEAD`] on PostgreSQL, for the instances of one task:
/// the ids as one array literal (`$1`, `{…}`), numbered from `$2`, the
/// columns they share bound once. Ten thousand instances are one short
/// statement to parse and plan, not ten of twelve thousand parameters.
pub(super) const INSERT_INSTANCES_PG: &str =
    "INSERT INTO tasks (id, run_id, name, task_index, task_count, executor, status, \
     max_attempts, deps_remaining, ready_at, limit_group, limit_key) \
     SELECT u.id, $3, $4, $2 + u.i - 1, $5, $6, 'pending', $7, $8, $9, $10, $11 \
     FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, i)";

/// The instances of a `foreach` task, created when its parent succeeds:
/// like [`INSERT_TASKS_HEAD`], with each instance's item.
pub(super) const INSERT_FOREACH_TASKS_HEAD: &str =
    "INSERT INTO tasks (id, run_id, name, task_index, task_count, executor, status, \
     max_attempts, deps_remaining, ready_at, item, limit_group, limit_key) VALUES ";

/// `$2` instances more in the run (a `foreach` expanded).
pub(super) const ADD_RUN_TASKS: &str =
    "UPDATE runs SET tasks_total = tasks_total + $2, tasks_open = tasks_open + $2 WHERE id = $1";

pub(super) const START_RUN: &str =
    "UPDATE runs SET status = 'running' WHERE id = $1 AND status = 'pending'";

/// Rows of `tasks` at its last analysis (-1: never), PostgreSQL only.
pub(super) const TASKS_RELTUPLES: &str =
    "SELECT reltuples FROM pg_class WHERE oid = 'tasks'::regclass";

/// Enough of a sample for how many runs the rows belong to.
pub(super) const ANALYZE_SAMPLE: &str = "SET LOCAL default_statistics_target = 10";

pub(super) const ANALYZE_RUN_TABLES: &str = "ANALYZE tasks, task_groups";

/// The conditional update that finalizes a run exactly once. It returns
/// the run's row: a report batch hands it to the dispatch of the children
/// it claimed, which reads no run then.
pub(super) const CLOSE_TASKS: &str =
    "UPDATE runs SET tasks_open = tasks_open - $2, tasks_failed = tasks_failed + $3, \
     status = CASE WHEN tasks_open - $2 > 0 THEN status \
                   WHEN tasks_failed + $3 > 0 THEN 'failed' ELSE 'success' END, \
     finished_at = CASE WHEN tasks_open - $2 > 0 THEN finished_at ELSE $4 END \
     WHERE id = $1 AND status IN ('pending', 'running') RETURNING *";

pub(super) const CANCEL_RUN: &str =
    "UPDATE runs SET status = 'cancelled', tasks_open = 0, finished_at = $2 \
     WHERE id = $1 AND status IN ('pending', 'running')";

pub(super) const IN_FLIGHT_TASKS_OF_RUN: &str =
    "SELECT * FROM tasks WHERE run_id = $1 AND status IN ('dispatched', 'running')";

pub(super) const CANCEL_TASKS_OF_RUN: &str =
    "UPDATE tasks SET status = 'cancelled', finished_at = $2, lease_expires_at = NULL \
     WHERE run_id = $1 AND status IN ('pending', 'dispatched', 'running') \
     RETURNING id, run_id, attempt, status";

// ---- a run's cost (`crate::cost`: `Store::cost_inputs`, `Tx::cost_inputs`, `Tx::set_run_cost`) ----

/// The columns of a run's instances that its cost needs.
pub(super) const COST_TASKS: &str =
    "SELECT id, name, task_index, executor, finished_at FROM tasks WHERE run_id = $1 ORDER BY id";

/// The attempts' events of a run (when each started and ended).
pub(super) const COST_EVENTS: &str = "SELECT task_id, attempt, status, at FROM events \
     WHERE run_id = $1 AND task_id IS NOT NULL AND attempt > 0 ORDER BY id";

/// How many attempts of a run were dispatched: a run's cost when none of
/// its tasks is priced per second. Every claim numbers its attempt one
/// more than the last (requeued claims and `ork retry` included), so the
/// sum of the instances' attempt numbers is the count of `(task, attempt)`
/// pairs in the event log, read from a row per instance rather than two.
pub(super) const COST_ATTEMPTS: &str =
    "SELECT CAST(COALESCE(SUM(attempt), 0) AS BIGINT) AS n FROM tasks WHERE run_id = $1";

/// A run's cost, stored by the transaction that finalized it.
pub(super) const SET_RUN_COST: &str = "UPDATE runs SET cost_usd = $2 WHERE id = $1";

// ---- retry (`Tx::reopen_run`, `Tx::retry_tasks`) ----
/// The conditional update that reopens a finished run once: racing
/// retries wait on its row lock, and the later ones find it running.
pub(super) const REOPEN_RUN: &str =
    "UPDATE runs SET status = 'running', finished_at = NULL, error = NULL, cost_usd = NULL \
     WHERE id = $1 AND status IN ('failed', 'cancelled')";
/// A run's instances counted per task name and status.
pub(super) const TASK_STATUS_COUNTS: &str =
    "SELECT name, status, COUNT(*) AS n FROM tasks WHERE run_id = $1 GROUP BY name, status";
/// `$1` is the run; followed by one `(name, parent instances not yet
/// succeeded)` tuple per task name, then [`SET_GROUP_DEPS_TAIL`].
pub(super) const SET_GROUP_DEPS_HEAD: &str =
    "UPDATE task_groups SET deps_remaining = v.column2 FROM (VALUES ";
pub(super) const SET_GROUP_DEPS_TAIL: &str =
    ") AS v WHERE task_groups.run_id = $1 AND task_groups.name = v.column1";
/// `$1` is the run, `$2` the time; followed by one `(name, attempts
/// granted, deps remaining)` tuple per task name, then
/// [`RETRY_TASKS_TAIL`]. The unsuccessful instances go back to `pending`
/// with new attempts (the attempt number goes on; the last outcome stays
/// visible until the next claim).
pub(super) const RETRY_TASKS_HEAD: &str =
    "UPDATE tasks SET status = 'pending', max_attempts = tasks.attempt + v.column2, \
     deps_remaining = v.column3, ready_at = CASE WHEN v.column3 = 0 THEN $2 ELSE NULL END, \
     not_before = NULL, lease_expires_at = NULL, deadline_at = NULL, finished_at = NULL \
     FROM (VALUES ";
pub(super) const RETRY_TASKS_TAIL: &str =
    ") AS v WHERE tasks.run_id = $1 AND tasks.name = v.column1 \
     AND tasks.status IN ('failed', 'cancelled', 'skipped') \
     RETURNING tasks.id, tasks.run_id, tasks.attempt, tasks.status";
/// The run's counters from its rows, after a retry reopened some.
pub(super) const RECOUNT_RUN: &str = "UPDATE runs SET \
     tasks_open = (SELECT COUNT(*) FROM tasks WHERE run_id = $1 \
       AND status IN ('pending', 'dispatched', 'running')), \
     tasks_failed = (SELECT COUNT(*) FROM tasks WHERE run_id = $1 AND status = 'failed') \
     WHERE id = $1";
/// Runs of a workflow created since `$2`, oldest first, followed by their
/// statuses, then [`RUNS_FOR_BULK_TAIL`] (the limit): what a bulk cancel
/// or retry works through.
pub(super) const RUNS_FOR_BULK_HEAD: &str =
    "SELECT * FROM runs WHERE workflow = $1 AND created_at >= $2 AND status IN (";
pub(super) const RUNS_FOR_BULK_TAIL: &str = ") ORDER BY created_at LIMIT ";
// ---- attempts (`Tx::claim`, `mark_started`, `finish_attempts`, `heartbeat`, `requeue_expired_claims`) ----

/// What a claim writes: [`CLAIM_HEAD`], [`CLAIM_HEAD_PG`].
macro_rules! claim_set {
    () => {
        "UPDATE tasks SET status = 'dispatched', attempt = attempt + 1, \
         lease_expires_at = $3, dispatched_at = $2, started_at = NULL, execution_id = NULL, \
         exit_code = NULL, error = NULL, output = NULL, output_ref = NULL, deadline_at = NULL "
    };
}

/// The rows a claim takes: run `$1`'s ready instances, past their backoff
/// at `$2` ([`CLAIM_HEAD`], [`LOCK_READY_HEAD`], [`CLAIM_CANDIDATES_HEAD`]).
macro_rules! ready_of_run {
    () => {
        " FROM tasks WHERE run_id = $1 AND status = 'pending' \
         AND deps_remaining = 0 AND (not_before IS NULL OR not_before <= $2)"
    };
}

/// Followed by the filters, [`CLAIM_ORDER`], [`CLAIM_LIMIT`], then
/// [`CLAIM_TAIL`].
pub(super) const CLAIM_HEAD: &str =
    concat!(claim_set!(), "WHERE id IN (SELECT id", ready_of_run!());

/// [`CLAIM_HEAD`] on PostgreSQL, followed as it is, then
/// [`super::Dialect::skip_locked`], `)` and [`CLAIM_TAIL`]. The rows
/// chosen and locked are updated by key (`= ANY` of their ids): as an
/// `IN` subquery, PostgreSQL joined them to a scan of the whole table.
pub(super) const CLAIM_HEAD_PG: &str = concat!(
    claim_set!(),
    "WHERE (status || '') = 'pending' AND id = ANY(ARRAY(SELECT id",
    ready_of_run!()
);

/// Claims take the instances in the order they became ready, along
/// `tasks_claim`: whatever the statistics say. Taken by `ANALYZE` while
/// a run's first instances were all ready, they had PostgreSQL scan the
/// table for ready rows instead, 10–19 ms a claim under the webhook load.
pub(super) const CLAIM_ORDER: &str = " ORDER BY ready_at";

/// Between [`CLAIM_HEAD`] and its list of executor kinds, when the caller
/// claims only tasks of some executors (`ork serve --executors`).
pub(super) const CLAIM_EXECUTORS: &str = " AND executor IN (";

/// After [`CLAIM_HEAD`] (and the executor filter), when the caller claims
/// only instances of some tasks: a report's, of the ones it released.
pub(super) const CLAIM_TASKS: &str = " AND name IN (";

/// [`CLAIM_EXECUTORS`] and [`CLAIM_TASKS`] on PostgreSQL: the list as one
/// array (`ANY`, which is what PostgreSQL makes of an `IN` list), so that
/// the statement's text is the same however long the list. Followed by
/// its placeholder, then [`ANY_TEXT_TAIL`].
pub(super) const CLAIM_EXECUTORS_PG: &str = " AND executor = ANY(";
pub(super) const CLAIM_TASKS_PG: &str = " AND name = ANY(";
pub(super) const ANY_TEXT_TAIL: &str = "::text[])";

/// After [`CLAIM_HEAD`] (and the executor filter): the batch size.
pub(super) const CLAIM_LIMIT: &str = " LIMIT $4";

pub(super) const CLAIM_TAIL: &str =
    ") RETURNING id, run_id, name, task_index, task_count, attempt, item";

/// The ready instances of immediate executors, locked rather than claimed
/// (their attempt numbers one ahead): [`FINISH_LOCKED_CLAIM`] writes the
/// claim and the end at once. Followed by the executor kinds, then
/// [`LOCK_READY_TAIL`] and [`super::Dialect::skip_locked`].
pub(super) const LOCK_READY_HEAD: &str = concat!(
    "SELECT id, run_id, name, task_index, task_count, attempt + 1 AS attempt, item",
    ready_of_run!(),
    " AND executor IN ("
);

/// In [`CLAIM_ORDER`]'s order.
pub(super) const LOCK_READY_TAIL: &str = ") ORDER BY ready_at LIMIT $3";

/// `$1` is the time, `$2` the start lease (the first heartbeat is due
/// before it); followed by one `(task, attempt, execution, deadline)`
/// tuple per attempt, then [`MARK_STARTED_TAIL`].
pub(super) const MARK_STARTED_HEAD: &str =
    "UPDATE tasks SET status = 'running', lease_expires_at = $2, \
     started_at = $1, execution_id = v.column3, deadline_at = v.column4 FROM (VALUES ";

/// [`MARK_STARTED_HEAD`] and its tuples on PostgreSQL: the attempts as one
/// array per column (`$3`…`$6`), then [`MARK_STARTED_TAIL`].
pub(super) const MARK_STARTED_PG: &str =
    "UPDATE tasks SET status = 'running', lease_expires_at = $2, \
     started_at = $1, execution_id = v.column3, deadline_at = v.column4 \
     FROM (SELECT * FROM unnest($3::uuid[], $4::bigint[], $5::text[], $6::timestamptz[]) \
     AS u(column1, column2, column3, column4)";

pub(super) const MARK_STARTED_TAIL: &str =
    ") AS v WHERE tasks.id = v.column1 AND tasks.attempt = v.column2 \
     AND (tasks.status || '') = 'dispatched' \
     RETURNING tasks.id, tasks.run_id, tasks.attempt, tasks.status";

/// Around [`MARK_STARTED_PG`] … [`MARK_STARTED_TAIL`] on PostgreSQL when
/// the starts are a transaction of their own ([`super::Store::mark_started`]):
/// the `running` events (at `$1`) are written by the same statement, which
/// commits alone, one round trip where `BEGIN`, the update, the events and
/// `COMMIT` took four.
pub(super) const MARK_STARTED_ALONE_PG_HEAD: &str = "WITH started AS (";

pub(super) const MARK_STARTED_ALONE_PG_TAIL: &str =
    ") INSERT INTO events (run_id, task_id, attempt, status, detail, at) \
     SELECT run_id, id, attempt, status, NULL, $1 FROM started ORDER BY id";

/// `$1` is the time; followed by one `(task, attempt, status, exit code,
/// error, output, not before)` tuple per result, then
/// [`FINISH_ATTEMPTS_TAIL`]. A retry goes back to pending: it is not
/// finished, its outcome stays visible until the next attempt is claimed.
/// The row's `max_attempts` decides whether a retry is left (an `ork
/// retry` grants a task new attempts there): a retry asked past it fails.
pub(super) const FINISH_ATTEMPTS_HEAD: &str =
    "UPDATE tasks SET status = CASE WHEN v.column3 = 'pending' AND v.column2 >= tasks.max_attempts \
       THEN 'failed' ELSE v.column3 END, exit_code = v.column4, error = v.column5, \
     output = v.column6, not_before = v.column7, output_ref = v.column8, lease_expires_at = NULL, deadline_at = NULL, \
     finished_at = CASE WHEN v.column3 = 'pending' AND v.column2 < tasks.max_attempts \
       THEN NULL ELSE $1 END";

/// After [`FINISH_ATTEMPTS_HEAD`] when the rows are still `pending`, locked
/// by [`LOCK_READY_HEAD`]: the claim's columns, written with the end.
pub(super) const FINISH_LOCKED_CLAIM: &str =
    ", attempt = v.column2, dispatched_at = $1, started_at = NULL, execution_id = NULL";

/// After [`FINISH_ATTEMPTS_HEAD`] (and [`FINISH_LOCKED_CLAIM`]): one
/// tuple per attempt, then [`FINISH_ATTEMPTS_TAIL`] or [`FINISH_LOCKED_TAIL`].
pub(super) const FINISH_VALUES: &str = " FROM (VALUES ";

/// [`FINISH_VALUES`] on PostgreSQL: the attempts as one array per column
/// (`$2`…`$9`, [`super::sql::Arg`]), then [`FINISH_ATTEMPTS_TAIL`] or
/// [`FINISH_LOCKED_TAIL`]. One statement text whatever the batch's size.
pub(super) const FINISH_UNNEST_PG: &str = " FROM (SELECT * FROM unnest($2::uuid[], $3::bigint[], \
     $4::text[], $5::bigint[], $6::text[], $7::jsonb[], $8::timestamptz[], $9::jsonb[]) \
     AS u(column1, column2, column3, column4, column5, column6, column7, column8)";

pub(super) const FINISH_ATTEMPTS_TAIL: &str =
    ") AS v WHERE tasks.id = v.column1 AND tasks.attempt = v.column2 \
     AND (tasks.status || '') IN ('dispatched', 'running') \
     RETURNING tasks.id, tasks.run_id, tasks.name, tasks.attempt, tasks.status";

/// The rows [`LOCK_READY_HEAD`] locked, whose attempt numbers the values
/// carry one ahead.
pub(super) const FINISH_LOCKED_TAIL: &str =
    ") AS v WHERE tasks.id = v.column1 AND tasks.attempt = v.column2 - 1 \
     AND (tasks.status || '') = 'pending' \
     RETURNING tasks.id, tasks.run_id, tasks.name, tasks.attempt, tasks.status";

pub(super) const HEARTBEAT_START: &str =
    "UPDATE tasks SET status = 'running', started_at = $4, lease_expires_at = $3 \
     WHERE id = $1 AND attempt = $2 AND status = 'dispatched' \
     RETURNING id, run_id, attempt, status";

pub(super) const HEARTBEAT_EXTEND: &str = "UPDATE tasks SET lease_expires_at = $3 \
     WHERE id = $1 AND attempt = $2 AND status = 'running'";

/// `$1` is the new lease; followed by one `(task, attempt)` tuple per
/// attempt, then [`RENEW_LEASES_TAIL`]. Only running attempts are renewed.
pub(super) const RENEW_LEASES_HEAD: &str = "UPDATE tasks SET lease_expires_at = $1 FROM (VALUES ";

pub(super) const RENEW_LEASES_TAIL: &str =
    ") AS v WHERE tasks.id = v.column1 AND tasks.attempt = v.column2 \
     AND (tasks.status || '') = 'running' RETURNING tasks.id, tasks.attempt";

/// Followed by [`super::Dialect::skip_locked`], then [`REQUEUE_EXPIRED_CLAIMS_TAIL`].
pub(super) const REQUEUE_EXPIRED_CLAIMS_HEAD: &str =
    "UPDATE tasks SET status = 'pending', lease_expires_at = NULL \
     WHERE id IN (SELECT id FROM tasks WHERE status = 'dispatched' \
     AND lease_expires_at < $1 LIMIT 1000";

pub(super) const REQUEUE_EXPIRED_CLAIMS_TAIL: &str = ") RETURNING id, run_id, attempt, status";

/// [`REQUEUE_EXPIRED_CLAIMS_HEAD`] for one run (`$2`), as `ork run` sweeps its own.
pub(super) const REQUEUE_EXPIRED_CLAIMS_OF_RUN_HEAD: &str =
    "UPDATE tasks SET status = 'pending', lease_expires_at = NULL \
     WHERE id IN (SELECT id FROM tasks WHERE run_id = $2 AND status = 'dispatched' \
     AND lease_expires_at < $1 LIMIT 1000";

// ---- readiness (`Tx::release_children`, `Tx::skip_pending`) ----

/// `$1` is the run; followed by one `(name, n)` tuple per group, then
/// [`RELEASE_GROUPS_TAIL`]: every group counted down in one statement.
pub(super) const RELEASE_GROUPS_HEAD: &str =
    "UPDATE task_groups SET deps_remaining = task_groups.deps_remaining - v.column2 FROM (VALUES ";

pub(super) const RELEASE_GROUPS_TAIL: &str = ") AS v WHERE task_groups.run_id = $1 \
     AND task_groups.name = v.column1 \
     RETURNING task_groups.name, task_groups.deps_remaining AS n, task_groups.deferred";

/// Before [`RELEASE_GROUPS_HEAD`] on PostgreSQL: each group locked, in
/// the order of the names (`$2`, one array, sorted: two releases sharing
/// groups wait for each other instead of deadlocking), each looked up by
/// its whole key (the module doc). The count-down is a statement of its
/// own: in one statement, a row another transaction changed while this
/// one waited for its lock would be invisible to the update's snapshot,
/// and its count-down lost.
pub(super) const LOCK_GROUPS_PG: &str = "SELECT g.name FROM unnest($2::text[]) AS v(name) \
     CROSS JOIN LATERAL \
     (SELECT name FROM task_groups WHERE run_id = $1 AND name = v.name FOR UPDATE OFFSET 0) g";

/// The groups at zero made ready: all their pending instances. Followed
/// by the names, then `)`.
pub(super) const MARK_GROUPS_READY_HEAD: &str =
    "UPDATE tasks SET deps_remaining = 0, ready_at = $2 \
     WHERE run_id = $1 AND (status || '') = 'pending' AND name IN (";

/// [`MARK_GROUPS_READY_HEAD`] on PostgreSQL (the module doc), the names as
/// one array (`$3`). The status is checked again on the row updated, so
/// that an instance whose status changed meanwhile (a cancel) is left as
/// it is.
pub(super) const MARK_GROUPS_READY_PG: &str = "UPDATE tasks SET deps_remaining = 0, ready_at = $2 \
     FROM (SELECT t.id FROM unnest($3::text[]) AS v(name) CROSS JOIN LATERAL \
     (SELECT id FROM tasks WHERE run_id = $1 AND name = v.name AND (status || '') = 'pending' OFFSET 0) t) x \
     WHERE tasks.id = x.id AND (tasks.status || '') = 'pending'";

/// Followed by the task names, then [`SKIP_PENDING_TAIL`].
pub(super) const SKIP_PENDING_HEAD: &str = "UPDATE tasks SET status = 'skipped', finished_at = $1 \
     WHERE run_id = $2 AND (status || '') = 'pending' AND name IN (";

pub(super) const SKIP_PENDING_TAIL: &str = ") RETURNING id, run_id, attempt, status";

// ---- schedules and events ----

pub(super) const RECORD_SCHEDULE_SLOT: &str =
    "INSERT INTO schedules (workflow, last_slot) VALUES ($1, $2) \
     ON CONFLICT (workflow) DO UPDATE SET last_slot = excluded.last_slot \
     WHERE schedules.last_slot < excluded.last_slot";

/// `$1` is the time; followed by one `(run, task, attempt, status, detail, $1)`
/// tuple per event.
pub(super) const INSERT_EVENTS_HEAD: &str =
    "INSERT INTO events (run_id, task_id, attempt, status, detail, at) VALUES ";

/// [`INSERT_EVENTS_HEAD`] on PostgreSQL: one array per column
/// ([`super::sql::Arg`]), inserted in the order sent, so that ids follow it.
pub(super) const INSERT_EVENTS_PG: &str =
    "INSERT INTO events (run_id, task_id, attempt, status, detail, at) \
     SELECT run_id, task_id, attempt, status, detail, at FROM unnest($1::uuid[], $2::uuid[], \
     $3::bigint[], $4::text[], $5::text[], $6::timestamptz[]) WITH ORDINALITY \
     AS u(run_id, task_id, attempt, status, detail, at, n) ORDER BY n";

/// [`INSERT_EVENTS_PG`] that also notifies [`WAKE_CHANNEL`] (as
/// [`NOTIFY_WAKE`]; delivered at commit): a transaction that wakes the
/// hosts and logs events pays one round trip for both. Only with events:
/// the notification is a row joined to each of theirs.
pub(super) const INSERT_EVENTS_WAKE_PG: &str = "WITH wake AS (SELECT pg_notify('ork_wake', '')) \
     INSERT INTO events (run_id, task_id, attempt, status, detail, at) \
     SELECT run_id, task_id, attempt, status, detail, at FROM unnest($1::uuid[], $2::uuid[], \
     $3::bigint[], $4::text[], $5::text[], $6::timestamptz[]) WITH ORDINALITY \
     AS u(run_id, task_id, attempt, status, detail, at, n) CROSS JOIN wake ORDER BY n";

// ---- reads (reads.rs) ----

pub(super) const RUN_COUNTS: &str = "SELECT status, COUNT(*) AS runs FROM runs GROUP BY status";

pub(super) const LIST_WORKFLOWS: &str =
    "SELECT w.name, w.latest_version, w.updated_at, w.paused, v.spec FROM workflows w \
     JOIN workflow_versions v ON v.workflow = w.name AND v.version = w.latest_version \
     ORDER BY w.name";

pub(super) const WORKFLOW_SPEC: &str =
    "SELECT v.version, v.spec FROM workflow_versions v JOIN workflows w ON w.name = v.workflow \
     WHERE v.workflow = $1 AND v.version = COALESCE($2, w.latest_version)";

pub(super) const GET_RUN: &str = "SELECT * FROM runs WHERE id = $1";

pub(super) const RUN_BY_IDEMPOTENCY_KEY: &str =
    "SELECT * FROM runs WHERE workflow = $1 AND idempotency_key = $2";

pub(super) const LIST_RUNS_OF_WORKFLOW: &str =
    "SELECT * FROM runs WHERE workflow = $1 ORDER BY created_at DESC LIMIT $2";

pub(super) const LIST_RUNS: &str = "SELECT * FROM runs ORDER BY created_at DESC LIMIT $1";

pub(super) const OPEN_RUNS: &str =
    "SELECT * FROM runs WHERE status IN ('pending', 'running') ORDER BY created_at LIMIT $1";

pub(super) const RUN_INSTANCES: &str =
    "SELECT id, name, task_index, task_count FROM tasks WHERE run_id = $1 ORDER BY id";

pub(super) const RUN_TASKS: &str = "SELECT * FROM tasks WHERE run_id = $1 ORDER BY id";

pub(super) const GET_TASK: &str = "SELECT * FROM tasks WHERE id = $1";

/// The columns of an attempt in flight: the task and its run's workflow
/// version. A macro so that the statements below are whole literals.
macro_rules! in_flight {
    () => {
        "SELECT t.*, r.workflow, r.version FROM tasks t JOIN runs r ON r.id = t.run_id"
    };
}

pub(super) const IN_FLIGHT_BY_EXECUTION: &str = concat!(
    in_flight!(),
    " WHERE t.execution_id = $1 AND t.status IN ('dispatched', 'running')"
);

pub(super) const OVERDUE_ATTEMPTS: &str = concat!(
    in_flight!(),
    " WHERE t.status = 'running' AND (t.deadline_at < $1 OR t.lease_expires_at < $1) \
     ORDER BY t.id LIMIT $2"
);

pub(super) const OVERDUE_ATTEMPTS_OF_RUN: &str = concat!(
    in_flight!(),
    " WHERE t.run_id = $3 AND t.status = 'running' \
     AND (t.deadline_at < $1 OR t.lease_expires_at < $1) ORDER BY t.id LIMIT $2"
);

/// Followed by the executor names, then [`RUNNING_ATTEMPTS_TAIL`] and the limit.
pub(super) const RUNNING_ATTEMPTS_HEAD: &str = concat!(
    in_flight!(),
    " WHERE t.status = 'running' AND t.execution_id IS NOT NULL AND t.executor IN ("
);

pub(super) const RUNNING_ATTEMPTS_TAIL: &str = ") ORDER BY t.started_at LIMIT ";

/// Running local attempts whose process an `ork` watches (`ork run`): the
/// execution id names the watcher (`ork_executors::orphans`), so the
/// sweeper can tell when that `ork` died. (`ork serve`'s own attempts run
/// under a detached `ork worker`, which reports for itself: a bare
/// `pid:N`.)
macro_rules! watched_local {
    () => {
        "t.executor IN ('process', 'python') AND t.execution_id LIKE 'pid:%;watcher=%'"
    };
}

/// `$1` is the limit.
pub(super) const WATCHED_ATTEMPTS: &str = concat!(
    in_flight!(),
    " WHERE t.status = 'running' AND ",
    watched_local!(),
    " ORDER BY t.started_at LIMIT $1"
);

/// `$1` is the run; followed by the task names, then [`TASK_OUTPUTS_TAIL`].
pub(super) const TASK_OUTPUTS_HEAD: &str =
    "SELECT name, task_index, output, output_ref FROM tasks \
     WHERE run_id = $1 AND status = 'success' AND name IN (";

pub(super) const TASK_OUTPUTS_TAIL: &str = ") ORDER BY name, task_index";

/// [`TASK_OUTPUTS_HEAD`] on PostgreSQL (the module doc): followed by one
/// `($n)` tuple per name, then [`TASK_OUTPUTS_PG_TAIL`].
pub(super) const TASK_OUTPUTS_PG_HEAD: &str =
    "SELECT t.name, t.task_index, t.output, t.output_ref FROM (VALUES ";

pub(super) const TASK_OUTPUTS_PG_TAIL: &str = ") AS v(name) CROSS JOIN LATERAL \
     (SELECT name, task_index, output, output_ref FROM tasks \
      WHERE run_id = $1 AND name = v.name AND status = 'success' OFFSET 0) t \
     ORDER BY t.name, t.task_index";

/// One instance's output (`$1` the run, `$2` the task), whatever its status.
pub(super) const TASK_OUTPUT: &str = "SELECT name, task_index, output, output_ref FROM tasks \
     WHERE run_id = $1 AND id = $2";

pub(super) const READY_RUNS: &str =
    "SELECT DISTINCT run_id FROM tasks WHERE status = 'pending' AND deps_remaining = 0 \
     AND (not_before IS NULL OR not_before <= $1) LIMIT $2";

pub(super) const SCHEDULE_SLOTS: &str = "SELECT workflow, last_slot FROM schedules";

// ---- the web UI's reads (reads.rs; api/src/ui) ----

/// Runs newest first, each filter (`$1` workflow, `$2` status, `$3`
/// trigger) applied when not NULL; `$4` limit, `$5` offset.
pub(super) const LIST_RUNS_FILTERED: &str = "SELECT * FROM runs \
     WHERE ($1 IS NULL OR workflow = $1) AND ($2 IS NULL OR status = $2) \
     AND ($3 IS NULL OR trigger = $3) ORDER BY created_at DESC LIMIT $4 OFFSET $5";

/// One row per task name and status of a run: what the graph and the
/// timeline show without reading every instance of a fan-out. A deferred
/// group's instances, not created yet, are `pending`.
pub(super) const RUN_TASK_GROUPS: &str =
    "SELECT name, status, MAX(task_count) AS task_count, MAX(executor) AS executor, \
     COUNT(*) AS n, MAX(attempt) AS max_attempt, MIN(ready_at) AS ready_at, \
     MIN(dispatched_at) AS dispatched_at, MIN(started_at) AS started_at, \
     MAX(finished_at) AS finished_at FROM tasks WHERE run_id = $1 GROUP BY name, status \
     UNION ALL SELECT name, 'pending' AS status, task_count, executor, task_count AS n, \
     0 AS max_attempt, NULL AS ready_at, NULL AS dispatched_at, NULL AS started_at, \
     NULL AS finished_at FROM task_groups WHERE run_id = $1 AND deferred \
     ORDER BY name, status";

/// A run's tasks that have no instance yet: a `foreach` child (one per
/// item, made when its parent succeeds) or a deferred fan-out (made when
/// its parents end).
pub(super) const RUN_WAITING_GROUPS: &str = "SELECT g.name, g.task_count, g.executor \
     FROM task_groups g WHERE g.run_id = $1 \
     AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = g.run_id AND t.name = g.name) \
     ORDER BY g.name";

/// A page of a run's task instances (`$2` name and `$3` status when not
/// NULL), in name and index order; `$4` limit, `$5` offset.
pub(super) const RUN_TASKS_PAGE: &str = "SELECT * FROM tasks WHERE run_id = $1 \
     AND ($2 IS NULL OR name = $2) AND ($3 IS NULL OR status = $3) \
     ORDER BY name, task_index LIMIT $4 OFFSET $5";

/// How many instances [`RUN_TASKS_PAGE`] pages through.
pub(super) const COUNT_RUN_TASKS: &str = "SELECT COUNT(*) AS n FROM tasks WHERE run_id = $1 \
     AND ($2 IS NULL OR name = $2) AND ($3 IS NULL OR status = $3)";

/// One task instance's events (its attempts), oldest first.
pub(super) const TASK_EVENTS: &str =
    "SELECT * FROM events WHERE run_id = $1 AND task_id = $2 ORDER BY id";

/// A page of a run's events after the id `$2`, oldest first; `$3` limit.
pub(super) const RUN_EVENTS_PAGE: &str =
    "SELECT * FROM events WHERE run_id = $1 AND id > $2 ORDER BY id LIMIT $3";

/// A workflow's versions, newest first.
pub(super) const WORKFLOW_VERSIONS: &str =
    "SELECT version, hash, created_at, source IS NOT NULL AS has_source \
     FROM workflow_versions WHERE workflow = $1 ORDER BY version DESC";

/// The YAML a version was applied from (NULL when applied from a spec).
pub(super) const WORKFLOW_SOURCE: &str = "SELECT v.version, v.spec, v.source, w.paused \
     FROM workflow_versions v JOIN workflows w ON w.name = v.workflow \
     WHERE v.workflow = $1 AND v.version = COALESCE($2, w.latest_version)";

pub(super) const RUN_EVENTS: &str = "SELECT * FROM events WHERE run_id = $1 ORDER BY id";

// ---- waking a host (reads.rs: `Store::next_due_at`; mod.rs: `Store::watch`) ----

/// `$1` is the time after which a due time counts (a host that just swept
/// passes the sweep's start: what was due before it is left to the next
/// tick); `$2` the executors the sweeper polls. One row of scalar
/// subqueries, so that the idle host's check is one statement: the
/// earliest retry (or ready task nobody advanced), deadline and lease
/// (claims and heartbeats), whether a polled attempt is running, and what
/// the cron cache depends on (workflows applied, slots fired).
pub(super) const NEXT_DUE_AT: &str = concat!(
    "SELECT (SELECT MIN(COALESCE(not_before, ready_at)) FROM tasks \
       WHERE status = 'pending' AND deps_remaining = 0 AND COALESCE(not_before, ready_at) > $1) AS retry_at, \
     (SELECT MIN(deadline_at) FROM tasks WHERE status = 'running' AND deadline_at > $1) AS deadline_at, \
     (SELECT MIN(lease_expires_at) FROM tasks \
       WHERE status IN ('dispatched', 'running') AND lease_expires_at > $1) AS lease_at, \
     (SELECT COUNT(*) FROM (SELECT 1 FROM tasks t WHERE t.status = 'running' \
       AND t.execution_id IS NOT NULL AND (t.executor IN ('cloudrun', 'fargate', 'kubernetes', 'azure') OR (",
    watched_local!(),
    ")) LIMIT 1) AS p) AS polled, \
     (SELECT COUNT(*) FROM workflows) AS workflows, \
     (SELECT MAX(updated_at) FROM workflows) AS workflows_at, \
     (SELECT MAX(last_slot) FROM schedules) AS slots_at, \
     (SELECT COUNT(*) FROM backfills) AS backfills"
);

/// The PostgreSQL channel hosts `LISTEN` on; trigger and complete
/// transactions notify it (delivered at commit).
pub(crate) const WAKE_CHANNEL: &str = "ork_wake";

/// PostgreSQL only: wakes the hosts listening on [`WAKE_CHANNEL`].
pub(super) const NOTIFY_WAKE: &str = "NOTIFY ork_wake";

/// SQLite only: a counter that changes when another connection commits.
/// Not a transaction and reads no table: polling it is free.
pub(super) const SQLITE_DATA_VERSION: &str = "PRAGMA data_version";

// ---- claim-time limits (`Tx::claim_limited`, docs/concurrency.md) ----

/// Followed by one `(key)` tuple per limit, in key order, then
/// [`LOCK_LIMITS_TAIL`]. The upsert locks each row until commit (on
/// PostgreSQL; SQLite's writer is alone anyway), so claims under a limit
/// take turns, and returns the latest `next_at` of each.
pub(super) const LOCK_LIMITS_HEAD: &str = "INSERT INTO limits (key) VALUES ";

pub(super) const LOCK_LIMITS_TAIL: &str =
    " ON CONFLICT (key) DO UPDATE SET key = excluded.key RETURNING key, next_at";

/// [`LOCK_LIMITS_HEAD`]'s answer without the lock: followed by the keys and `)`.
pub(super) const PEEK_LIMITS_HEAD: &str = "SELECT key, next_at FROM limits WHERE key IN (";

/// `$1` the run, `$2` its workflow, `$3` its concurrency key: the run's
/// status and the runs of the workflow in flight (all, and under the key).
pub(super) const RUN_GATE: &str = "SELECT (SELECT status FROM runs WHERE id = $1) AS status, \
     (SELECT COUNT(*) FROM runs WHERE workflow = $2 AND status = 'running') AS runs, \
     (SELECT COUNT(*) FROM runs WHERE workflow = $2 AND status = 'running' \
       AND concurrency_key = $3) AS keyed";

/// `$1` the run, `$2` the time, `$3` the batch size; the ready instances,
/// optionally followed by [`CLAIM_EXECUTORS`]…`)` and [`CLAIM_TASKS`]…`)`,
/// then [`CLAIM_CANDIDATES_TAIL`].
pub(super) const CLAIM_CANDIDATES_HEAD: &str = concat!("SELECT id, name", ready_of_run!());

pub(super) const CLAIM_CANDIDATES_TAIL: &str = " ORDER BY name, task_index LIMIT $3";

/// Attempts in flight per `max_parallel` group: followed by the groups,
/// then [`IN_FLIGHT_KEYS`], the keys, and `) GROUP BY limit_key`.
pub(super) const IN_FLIGHT_GROUPS: &str =
    "SELECT 'group' AS kind, limit_group AS k, COUNT(*) AS n FROM tasks \
     WHERE status IN ('dispatched', 'running') AND limit_group IN (";

pub(super) const IN_FLIGHT_KEYS: &str = ") GROUP BY limit_group UNION ALL \
     SELECT 'key' AS kind, limit_key AS k, COUNT(*) AS n FROM tasks \
     WHERE status IN ('dispatched', 'running') AND limit_key IN (";

pub(super) const IN_FLIGHT_TAIL: &str = ") GROUP BY limit_key";

/// [`CLAIM_HEAD`] for chosen instances: `$1` the time, `$2` the lease,
/// followed by the ids, then [`CLAIM_TAIL`].
pub(super) const CLAIM_IDS_HEAD: &str =
    "UPDATE tasks SET status = 'dispatched', attempt = attempt + 1, \
     lease_expires_at = $2, dispatched_at = $1, started_at = NULL, execution_id = NULL, \
     exit_code = NULL, error = NULL, output = NULL, output_ref = NULL, deadline_at = NULL \
     WHERE (status || '') = 'pending' AND id IN (";

/// When a rate limit's next token is available.
pub(super) const SET_LIMIT_NEXT_AT: &str = "UPDATE limits SET next_at = $2 WHERE key = $1";

/// `$1` when to look again: instances waiting for a rate limit's token,
/// followed by their ids and `)`. The sweeper wakes at that time (it is
/// their `not_before`, which `next_due` reads).
pub(super) const DEFER_TASKS_HEAD: &str =
    "UPDATE tasks SET not_before = $1 WHERE (status || '') = 'pending' AND id IN (";

pub(super) const SET_RUN_KEY: &str = "UPDATE runs SET concurrency_key = $2 WHERE id = $1";

/// Runs with ready instances waiting on the limits of the finished
/// instances (followed by their ids, then [`WAITING_RUNS_MID`], the same
/// ids, then [`WAITING_RUNS_TAIL`]): a slot freed, advance them.
pub(super) const WAITING_RUNS_HEAD: &str = "SELECT DISTINCT w.run_id AS id FROM tasks f \
     JOIN tasks w ON w.limit_group = f.limit_group \
     WHERE w.status = 'pending' AND w.deps_remaining = 0 AND f.id IN (";

pub(super) const WAITING_RUNS_MID: &str = ") UNION SELECT DISTINCT w.run_id AS id FROM tasks f \
     JOIN tasks w ON w.limit_key = f.limit_key \
     WHERE w.status = 'pending' AND w.deps_remaining = 0 AND f.id IN (";

pub(super) const WAITING_RUNS_TAIL: &str = ") LIMIT 64";

/// Makes the ready instances of some runs (followed by their ids and `)`)
/// due at `$1`, so that a host's `next_due` advances them: a cancel freed
/// the slot they wait for. A later `not_before` (a retry's backoff) stays.
pub(super) const WAKE_RUNS_HEAD: &str = "UPDATE tasks SET not_before = $1 \
     WHERE status = 'pending' AND deps_remaining = 0 \
     AND (not_before IS NULL OR not_before < $1) AND run_id IN (";

/// The oldest runs waiting for the run slot that run `$1` (final) freed
/// under its key, `$2` at most.
pub(super) const QUEUED_RUNS_KEYED: &str = "SELECT w.id FROM runs f JOIN runs w \
     ON w.workflow = f.workflow AND w.concurrency_key = f.concurrency_key \
     WHERE f.id = $1 AND w.status = 'pending' ORDER BY w.created_at, w.id LIMIT $2";

/// The oldest runs of workflow `$1` waiting for a run slot, `$2` at most.
pub(super) const QUEUED_RUNS: &str = "SELECT id FROM runs WHERE workflow = $1 \
     AND status = 'pending' ORDER BY created_at, id LIMIT $2";

/// The runs of workflow `$1` not final, oldest first, `$2` at most: what
/// `on_limit: skip | cancel_oldest` counts at trigger.
pub(super) const ACTIVE_RUNS: &str = "SELECT id FROM runs WHERE workflow = $1 \
     AND status IN ('pending', 'running') ORDER BY created_at, id LIMIT $2";

/// [`ACTIVE_RUNS`] under the run key `$3`.
pub(super) const ACTIVE_RUNS_KEYED: &str = "SELECT id FROM runs WHERE workflow = $1 \
     AND status IN ('pending', 'running') AND concurrency_key = $3 \
     ORDER BY created_at, id LIMIT $2";

/// Runs finished before `$1`, oldest first, at most `$2` (retention).
pub(super) const FINISHED_BEFORE: &str = "SELECT id FROM runs \
     WHERE status IN ('success', 'failed', 'cancelled') AND finished_at < $1 \
     ORDER BY finished_at LIMIT $2";
/// Deletes run `$1` only if it is still finished before `$2`; its groups
/// go by cascade, its tasks and events by [`DELETE_RUN_TASKS`] and
/// [`DELETE_RUN_EVENTS`] (no foreign key names their run on PostgreSQL).
pub(super) const DELETE_FINISHED_RUN: &str = "DELETE FROM runs WHERE id = $1 \
     AND status IN ('success', 'failed', 'cancelled') AND finished_at < $2";
pub(super) const DELETE_RUN_TASKS: &str = "DELETE FROM tasks WHERE run_id = $1";
pub(super) const DELETE_RUN_EVENTS: &str = "DELETE FROM events WHERE run_id = $1";
