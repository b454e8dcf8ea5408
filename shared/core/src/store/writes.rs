//! State changes. Each method is one step of a transaction and logs the
//! events for the rows it changed ([`EventLog`]); the caller commits, which
//! writes them.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::sql::{Arg, Conn, Dialect, Sql};
use super::statements::*;
use super::Tx;
use crate::model::{Run, RunStatus, TaskStatus};
use crate::spec::ExecutorKind;
use crate::Error;

/// The event detail of a claim put back by [`Tx::requeue_expired_claims`]:
/// its dispatch was never recorded (a worker it may have started has a
/// void token: its reports are answered 409).
pub const REQUEUED_CLAIM: &str =
    "claim lease expired with no start recorded: requeued, no retry spent";

/// Rows per multi-row statement: under both backends' bound-parameter limits.
const CHUNK: usize = 1000;

/// A task of a new run: its `task_count` instances are created with the
/// run, generated batch by batch (never one vector of all instances).
#[derive(Debug, Clone, Default)]
pub(crate) struct NewTask {
    pub name: String,
    pub task_count: i64,
    pub executor: String,
    pub max_attempts: i64,
    pub deps_remaining: i64,
    /// `max_parallel`'s group (`workflow/task`), counted across runs.
    pub limit_group: Option<String>,
    /// `concurrency.key`, rendered.
    pub limit_key: Option<String>,
}

impl NewTask {
    /// Whether the instances wait to be created until their group is
    /// released (or skipped, or cancelled): a fan-out of [`FANNED_OUT`]
    /// or more that has parents. Created at trigger, each would be written
    /// a second time only to say that it is ready.
    fn deferred(&self) -> bool {
        self.task_count >= FANNED_OUT && self.deps_remaining > 0
    }

    /// This task, if deferred: what its group keeps of its instances.
    fn template(&self) -> Option<&NewTask> {
        self.deferred().then_some(self)
    }
}

/// A deferred group taken by [`Tx::create_deferred`]: its instances to create.
#[derive(sqlx::FromRow)]
struct DeferredGroup {
    name: String,
    deps_remaining: i64,
    task_count: i64,
    executor: String,
    max_attempts: i64,
    limit_group: Option<String>,
    limit_key: Option<String>,
}

impl From<DeferredGroup> for NewTask {
    fn from(g: DeferredGroup) -> NewTask {
        NewTask {
            name: g.name,
            task_count: g.task_count,
            executor: g.executor,
            max_attempts: g.max_attempts,
            deps_remaining: g.deps_remaining,
            limit_group: g.limit_group,
            limit_key: g.limit_key,
        }
    }
}

/// A task instance this caller now owns until `lease_expires_at`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct ClaimedTask {
    pub id: Uuid,
    pub run_id: Uuid,
    pub name: String,
    pub task_index: i64,
    pub task_count: i64,
    pub attempt: i64,
    /// The item of a `foreach` instance.
    #[sqlx(json(nullable))]
    pub item: Option<serde_json::Value>,
}

/// An executor accepted an attempt.
#[derive(Debug, Clone)]
pub(crate) struct Started {
    pub task_id: Uuid,
    pub attempt: i64,
    pub execution_id: String,
    /// When the task's timeout fails the attempt, if it has one.
    pub deadline: Option<DateTime<Utc>>,
}

/// What becomes of an attempt: `Success`, `Failed`, or `Pending` again for a retry.
#[derive(Debug, Clone)]
pub(crate) struct AttemptResult {
    pub task_id: Uuid,
    pub attempt: i64,
    pub status: TaskStatus,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub output: Option<serde_json::Value>,
    /// A large output's reference ([`crate::payload::PayloadRef`]).
    pub output_ref: Option<serde_json::Value>,
    pub not_before: Option<DateTime<Utc>>,
}

/// An attempt result that applied (the attempt was still in flight).
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct Finished {
    pub id: Uuid,
    pub run_id: Uuid,
    pub name: String,
    pub attempt: i64,
    #[sqlx(try_from = "String")]
    pub status: TaskStatus,
}

#[derive(sqlx::FromRow)]
struct Version {
    latest_version: i64,
    hash: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Count {
    n: i64,
}

#[derive(sqlx::FromRow)]
struct TaskEventRow {
    id: Uuid,
    run_id: Uuid,
    attempt: i64,
    #[sqlx(try_from = "String")]
    status: TaskStatus,
}

#[derive(sqlx::FromRow)]
struct VersionState {
    latest_version: i64,
    versions: i64,
    runs: i64,
}

/// One row of `events`, before insertion.
pub(super) struct NewEvent {
    pub(super) run_id: Uuid,
    pub(super) task_id: Option<Uuid>,
    pub(super) attempt: Option<i64>,
    pub(super) status: &'static str,
    pub(super) detail: Option<String>,
}

impl NewEvent {
    /// An event of the run itself (no task): its new `status`.
    fn of_run(run_id: Uuid, status: RunStatus, detail: Option<String>) -> NewEvent {
        NewEvent {
            run_id,
            task_id: None,
            attempt: None,
            status: status.as_str(),
            detail,
        }
    }
}

/// The events of a transaction's steps, in order, written by one
/// statement when it commits ([`Tx::commit`]): each step used to write its
/// own, one more round trip to PostgreSQL, or hand-off to SQLite's
/// connection thread, per step. A step that reads or deletes events
/// writes the log first.
#[derive(Default)]
pub(crate) struct EventLog {
    events: Vec<(DateTime<Utc>, NewEvent)>,
    /// PostgreSQL: the hosts are to be woken ([`Tx::notify_wake`]), by the
    /// statement that writes the events.
    wake: bool,
}

impl EventLog {
    fn add(&mut self, at: DateTime<Utc>, events: impl IntoIterator<Item = NewEvent>) {
        self.events.extend(events.into_iter().map(|e| (at, e)));
    }

    /// Inserts the logged events, in order, and empties the log.
    pub(super) async fn write(&mut self, c: &mut Conn<'_>) -> Result<(), Error> {
        if c.dialect() == Dialect::Postgres {
            let wake = std::mem::take(&mut self.wake);
            if self.events.is_empty() && wake {
                c.execute(Sql::new(NOTIFY_WAKE)).await?;
            }
            // One statement, however many: arrays have no parameter limit.
            if !self.events.is_empty() {
                let events = std::mem::take(&mut self.events);
                let times = Arg::column(events.iter().map(|(at, _)| Some(*at)));
                let insert = match wake {
                    true => INSERT_EVENTS_WAKE_PG,
                    false => INSERT_EVENTS_PG,
                };
                let sql = Sql::new(insert)
                    .bind(Arg::column(events.iter().map(|(_, e)| Some(e.run_id))))
                    .bind(Arg::column(events.iter().map(|(_, e)| e.task_id)))
                    .bind(Arg::column(events.iter().map(|(_, e)| e.attempt)))
                    .bind(Arg::column(
                        events.iter().map(|(_, e)| Some(e.status.to_owned())),
                    ))
                    .bind(Arg::column(events.into_iter().map(|(_, e)| e.detail)))
                    .bind(times);
                c.execute(sql).await?;
            }
            return Ok(());
        }
        for chunk in self.events.chunks(CHUNK) {
            let mut sql = Sql::new(INSERT_EVENTS_HEAD);
            sql.push_values(chunk, |s, (at, e)| {
                vec![
                    s.arg(e.run_id),
                    s.arg(e.task_id),
                    s.arg(e.attempt),
                    s.arg(e.status),
                    s.arg(e.detail.clone()),
                    s.arg(*at),
                ]
            });
            c.execute(sql).await?;
        }
        self.events.clear();
        Ok(())
    }
}

/// A claim of a run's ready task instances.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claim<'a> {
    pub run_id: Uuid,
    pub now: DateTime<Utc>,
    /// The claimed attempts' lease: dispatched by then, or swept.
    pub lease_until: DateTime<Utc>,
    /// The most instances to claim.
    pub limit: i64,
    /// Only instances of these executors (`ork serve --executors`).
    pub executors: Option<&'a [ExecutorKind]>,
    /// Only instances of these tasks (the ones a batch of completions may
    /// have made ready: [`crate::engine::Engine::report_all`]).
    pub tasks: Option<&'a [String]>,
    /// The caller read the run as `pending`, and its first claim starts it.
    /// A run never goes back to `pending`: the claims of a running one
    /// skip that update of its row.
    pub run_pending: bool,
}

/// What the rows of the attempts [`Tx::finish_attempts`] ends hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// Their claims: `dispatched` or `running` with the same attempt number.
    InFlight,
    /// Nothing yet: `pending`, locked by this transaction's
    /// [`Tx::lock_ready`], one attempt behind. The claim is written with
    /// the end, one new row version instead of two.
    Locked,
}

impl Claim<'_> {
    /// ` AND executor IN (…)` when the claim is for some executors only,
    /// ` AND name IN (…)` when for some tasks only.
    pub(super) fn push_filters(&self, sql: &mut Sql, dialect: Dialect) {
        let pg = dialect == Dialect::Postgres;
        if let Some(kinds) = self.executors {
            let kinds = kinds.iter().map(|k| k.as_str().to_owned());
            match pg {
                true => push_any(sql, CLAIM_EXECUTORS_PG, kinds),
                false => push_in(sql, CLAIM_EXECUTORS, kinds),
            }
        }
        if let Some(tasks) = self.tasks {
            push_names(sql, dialect, tasks);
        }
    }
}

/// ` AND name IN (…)` of `names`, as one array on PostgreSQL.
fn push_names(sql: &mut Sql, dialect: Dialect, names: &[String]) {
    match dialect {
        Dialect::Postgres => push_any(sql, CLAIM_TASKS_PG, names.iter().cloned()),
        Dialect::Sqlite => push_in(sql, CLAIM_TASKS, names.iter().cloned()),
    }
}

/// `head` (` AND column IN (`), the items (`NULL` for none: matches no
/// row), then `)`.
fn push_in(sql: &mut Sql, head: &'static str, items: impl ExactSizeIterator<Item = String>) {
    sql.push(head);
    if items.len() == 0 {
        sql.push("NULL");
    } else {
        sql.push_list(items);
    }
    sql.push(")");
}

/// `head` (` AND column = ANY(`), the items as one array (none: matches no
/// row), then [`ANY_TEXT_TAIL`].
fn push_any(sql: &mut Sql, head: &'static str, items: impl Iterator<Item = String>) {
    sql.push(head);
    sql.push_arg(Arg::column(items.map(Some)));
    sql.push(ANY_TEXT_TAIL);
}

impl Tx {
    /// Stores `spec` as the workflow's next version unless the latest version
    /// has the same hash. Returns the version in force and whether it is new.
    pub(crate) async fn save_workflow(
        &mut self,
        name: &str,
        spec: serde_json::Value,
        hash: &str,
        source: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(i64, bool), Error> {
        let mut c = self.conn();
        c.execute(Sql::new(INSERT_WORKFLOW).bind(name).bind(now))
            .await?;
        // Lock the workflow row so concurrent applies number versions in turn.
        let mut latest = Sql::new(LATEST_WORKFLOW_VERSION).bind(name);
        c.dialect().lock_rows_of(&mut latest, "w");
        let current: Version = c
            .fetch_optional(latest)
            .await?
            .ok_or_else(|| Error::WorkflowNotFound(name.to_owned()))?;
        if current.hash.as_deref() == Some(hash) {
            return Ok((current.latest_version, false));
        }
        let version = current.latest_version + 1;
        c.execute(
            Sql::new(INSERT_WORKFLOW_VERSION)
                .bind(name)
                .bind(version)
                .bind(Some(spec))
                .bind(hash)
                .bind(source)
                .bind(now),
        )
        .await?;
        c.execute(
            Sql::new(SET_LATEST_WORKFLOW_VERSION)
                .bind(name)
                .bind(version)
                .bind(now),
        )
        .await?;
        Ok((version, true))
    }

    /// Creates a `pending` run with its task instances. With an idempotency
    /// key that the workflow already used, creates nothing and returns `false`.
    /// The instances of one task must be consecutive in `tasks`.
    pub(crate) async fn create_run(&mut self, run: &Run, tasks: &[NewTask]) -> Result<bool, Error> {
        let (mut c, log) = self.parts();
        let inserted = c
            .execute(
                Sql::new(INSERT_RUN)
                    .bind(run.id)
                    .bind(run.workflow.as_str())
                    .bind(run.version)
                    .bind(run.status.as_str())
                    .bind(Some(run.params.clone()))
                    .bind(run.trigger.as_str())
                    .bind(run.idempotency_key.clone())
                    .bind(tasks.iter().map(|t| t.task_count).sum::<i64>())
                    .bind(run.created_at),
            )
            .await?;
        if inserted == 0 {
            return Ok(false);
        }
        // A deferred group keeps what its instances will be; every group
        // its executor, which listings show before any instance exists.
        if c.dialect() == Dialect::Postgres {
            let column = |f: fn(&NewTask) -> Option<String>| Arg::column(tasks.iter().map(f));
            let number = |f: fn(&NewTask) -> Option<i64>| Arg::column(tasks.iter().map(f));
            let sql = Sql::new(INSERT_TASK_GROUPS_PG)
                .bind(run.id)
                .bind(column(|t| Some(t.name.clone())))
                .bind(number(|t| Some(t.deps_remaining)))
                .bind(number(|t| t.template().map(|d| d.task_count)))
                .bind(column(|t| Some(t.executor.clone())))
                .bind(number(|t| t.template().map(|d| d.max_attempts)))
                .bind(column(|t| t.template().and_then(|d| d.limit_group.clone())))
                .bind(column(|t| t.template().and_then(|d| d.limit_key.clone())));
            c.execute(sql).await?;
        } else {
            for chunk in tasks.chunks(CHUNK) {
                let mut sql = Sql::new(INSERT_TASK_GROUPS_HEAD);
                let run_id = sql.arg(run.id);
                sql.push_values(chunk, |s, t| {
                    let d = t.template();
                    vec![
                        run_id,
                        s.arg(t.name.as_str()),
                        s.arg(t.deps_remaining),
                        s.arg(d.is_some()),
                        s.arg(d.map(|d| d.task_count)),
                        s.arg(t.executor.as_str()),
                        s.arg(d.map(|d| d.max_attempts)),
                        s.arg(d.and_then(|d| d.limit_group.clone())),
                        s.arg(d.and_then(|d| d.limit_key.clone())),
                    ]
                });
                c.execute(sql).await?;
            }
        }
        let now: Vec<&NewTask> = tasks.iter().filter(|t| !t.deferred()).collect();
        insert_tasks(&mut c, run.id, run.created_at, &now).await?;
        log.add(
            run.created_at,
            vec![NewEvent::of_run(
                run.id,
                run.status,
                Some(format!(
                    "{} v{} ({})",
                    run.workflow, run.version, run.trigger
                )),
            )],
        );
        Ok(true)
    }

    /// Claims up to `limit` ready task instances of a run: `pending`, no
    /// parent left to succeed, past their retry backoff. Each claimed row
    /// moves to `dispatched` with a new attempt number and a lease, for this
    /// caller alone. Marks a `pending` run `running`. With `executors`,
    /// only tasks of those executor kinds are claimed (still one statement).
    pub(crate) async fn claim(&mut self, claim: &Claim<'_>) -> Result<Vec<ClaimedTask>, Error> {
        let dialect = self.conn().dialect();
        let pg = dialect == Dialect::Postgres;
        let mut sql = Sql::new(if pg { CLAIM_HEAD_PG } else { CLAIM_HEAD })
            .bind(claim.run_id)
            .bind(claim.now)
            .bind(claim.lease_until)
            .bind(claim.limit);
        claim.push_filters(&mut sql, dialect);
        sql.push(CLAIM_ORDER);
        sql.push(CLAIM_LIMIT);
        dialect.skip_locked(&mut sql);
        if pg {
            sql.push(")");
        }
        sql.push(CLAIM_TAIL);
        let claimed: Vec<ClaimedTask> = self.conn().fetch_all(sql).await?;
        self.claimed(claim, &claimed).await?;
        Ok(claimed)
    }

    /// Locks up to `claim.limit` ready instances of the `kinds` executors
    /// (immediate ones: each attempt ends in this transaction) without
    /// writing their claims: [`Finish::Locked`] writes the claim and the
    /// end at once, with their events. The run starts here, as at a claim.
    pub(crate) async fn lock_ready(
        &mut self,
        claim: &Claim<'_>,
        kinds: &[ExecutorKind],
    ) -> Result<Vec<ClaimedTask>, Error> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(LOCK_READY_HEAD)
            .bind(claim.run_id)
            .bind(claim.now)
            .bind(claim.limit);
        sql.push_list(kinds.iter().map(|k| k.as_str().to_owned()));
        sql.push(LOCK_READY_TAIL);
        self.conn().dialect().skip_locked(&mut sql);
        let locked: Vec<ClaimedTask> = self.conn().fetch_all(sql).await?;
        if !locked.is_empty() {
            self.start_run(claim, Vec::new()).await?;
        }
        Ok(locked)
    }

    /// After a claim took `claimed`: their `dispatched` events, and the run
    /// started if the caller read it as pending.
    pub(super) async fn claimed(
        &mut self,
        claim: &Claim<'_>,
        claimed: &[ClaimedTask],
    ) -> Result<(), Error> {
        if claimed.is_empty() {
            return Ok(());
        }
        let events: Vec<NewEvent> = claimed
            .iter()
            .map(|t| NewEvent {
                run_id: t.run_id,
                task_id: Some(t.id),
                attempt: Some(t.attempt),
                status: TaskStatus::Dispatched.as_str(),
                detail: None,
            })
            .collect();
        self.start_run(claim, events).await
    }

    /// Starts the run if the claim's caller read it as pending (its
    /// `running` event joins `events`), and writes `events`.
    async fn start_run(
        &mut self,
        claim: &Claim<'_>,
        mut events: Vec<NewEvent>,
    ) -> Result<(), Error> {
        let (mut c, log) = self.parts();
        if claim.run_pending && c.execute(Sql::new(START_RUN).bind(claim.run_id)).await? == 1 {
            events.push(NewEvent::of_run(claim.run_id, RunStatus::Running, None));
        }
        log.add(claim.now, events);
        Ok(())
    }

    /// Records that executors accepted these attempts (`dispatched` →
    /// `running`), each with a start lease: unless a heartbeat (or `ork
    /// run`'s renewal) extends it, the sweeper fails the attempt at
    /// `lease_until`. No attempt in flight is without a deadline.
    pub(crate) async fn mark_started(
        &mut self,
        started: &[Started],
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<(), Error> {
        let (mut c, log) = self.parts();
        let mut started: Vec<&Started> = started.iter().collect();
        started.sort_by_key(|s| s.task_id);
        for chunk in started.chunks(CHUNK) {
            let mut sql = if c.dialect() == Dialect::Postgres {
                started_columns(Sql::new(MARK_STARTED_PG).bind(now).bind(lease_until), chunk)
            } else {
                let mut sql = Sql::new(MARK_STARTED_HEAD).bind(now).bind(lease_until);
                sql.push_values(chunk, |s, r| {
                    vec![
                        s.arg(r.task_id),
                        s.arg(r.attempt),
                        s.arg(r.execution_id.as_str()),
                        s.arg(r.deadline),
                    ]
                });
                sql
            };
            sql.push(MARK_STARTED_TAIL);
            let rows: Vec<TaskEventRow> = c.fetch_all(sql).await?;
            log.add(now, task_events(&rows));
        }
        Ok(())
    }

    /// Applies attempt results to attempts still in flight (`dispatched` or
    /// `running` with the same attempt number, or locked: see [`Finish`]);
    /// results for finished, cancelled or superseded attempts change
    /// nothing. Returns what applied.
    pub(crate) async fn finish_attempts(
        &mut self,
        results: &[AttemptResult],
        from: Finish,
        now: DateTime<Utc>,
    ) -> Result<Vec<Finished>, Error> {
        let (mut c, log) = self.parts();
        let mut applied = Vec::with_capacity(results.len());
        // Rows are locked in id order, so that two batches sharing attempts
        // (a replayed webhook) wait for each other instead of deadlocking.
        let mut results: Vec<&AttemptResult> = results.iter().collect();
        results.sort_by_key(|r| r.task_id);
        results.dedup_by_key(|r| (r.task_id, r.attempt));
        for chunk in results.chunks(CHUNK) {
            let sent: HashMap<(Uuid, i64), &AttemptResult> =
                chunk.iter().map(|r| ((r.task_id, r.attempt), *r)).collect();
            // A retry goes back to pending (see the statement).
            let mut sql = Sql::new(FINISH_ATTEMPTS_HEAD).bind(now);
            if from == Finish::Locked {
                sql.push(FINISH_LOCKED_CLAIM);
            }
            if c.dialect() == Dialect::Postgres {
                sql.push(FINISH_UNNEST_PG);
                sql = sql
                    .bind(Arg::column(chunk.iter().map(|r| Some(r.task_id))))
                    .bind(Arg::column(chunk.iter().map(|r| Some(r.attempt))))
                    .bind(Arg::column(
                        chunk.iter().map(|r| Some(r.status.as_str().to_owned())),
                    ))
                    .bind(Arg::column(chunk.iter().map(|r| r.exit_code)))
                    .bind(Arg::column(chunk.iter().map(|r| r.error.clone())))
                    .bind(Arg::column(chunk.iter().map(|r| r.output.clone())))
                    .bind(Arg::column(chunk.iter().map(|r| r.not_before)))
                    .bind(Arg::column(chunk.iter().map(|r| r.output_ref.clone())));
            } else {
                sql.push(FINISH_VALUES);
                sql.push_values(chunk, |s, r| {
                    vec![
                        s.arg(r.task_id),
                        s.arg(r.attempt),
                        s.arg(r.status.as_str()),
                        s.arg(r.exit_code),
                        s.arg(r.error.clone()),
                        s.arg(r.output.clone()),
                        s.arg(r.not_before),
                        s.arg(r.output_ref.clone()),
                    ]
                });
            }
            sql.push(match from {
                Finish::InFlight => FINISH_ATTEMPTS_TAIL,
                Finish::Locked => FINISH_LOCKED_TAIL,
            });
            let rows: Vec<Finished> = c.fetch_all(sql).await?;
            // A locked row's claim is written here: its `dispatched` event
            // too, before its end.
            let claims = rows
                .iter()
                .filter(|_| from == Finish::Locked)
                .map(|f| NewEvent {
                    run_id: f.run_id,
                    task_id: Some(f.id),
                    attempt: Some(f.attempt),
                    status: TaskStatus::Dispatched.as_str(),
                    detail: None,
                });
            let ends = rows.iter().map(|f| {
                let r = sent[&(f.id, f.attempt)];
                NewEvent {
                    run_id: f.run_id,
                    task_id: Some(f.id),
                    attempt: Some(r.attempt),
                    status: f.status.as_str(),
                    detail: r.error.clone(),
                }
            });
            log.add(now, claims.chain(ends));
            applied.extend(rows);
        }
        Ok(applied)
    }

    /// Counts succeeded parent instances against their children:
    /// `(child task name, how many parent instances succeeded)`. When a
    /// child's count reaches zero, all its instances become ready. One
    /// statement counts down every group released (a batch of completions
    /// may release many), after one that locks their rows in name order on
    /// PostgreSQL; one more readies the groups at zero, all their
    /// instances at once. Returns the groups at zero (a `foreach` task's
    /// among them, whose instances its caller creates next, ready).
    pub(crate) async fn release_children(
        &mut self,
        run_id: Uuid,
        releases: &[(String, i64)],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, Error> {
        let mut c = self.conn();
        let mut releases = releases.to_vec();
        releases.sort();
        #[derive(sqlx::FromRow)]
        struct Left {
            name: String,
            n: i64,
            deferred: bool,
        }
        let pg = c.dialect() == Dialect::Postgres;
        let (mut ready, mut deferred): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
        for chunk in releases.chunks(CHUNK) {
            if pg {
                let names = Arg::column(chunk.iter().map(|(name, _)| Some(name.clone())));
                c.execute(Sql::new(LOCK_GROUPS_PG).bind(run_id).bind(names))
                    .await?;
            }
            let mut sql = Sql::new(RELEASE_GROUPS_HEAD).bind(run_id);
            sql.push_values(chunk, |s, (name, n)| vec![s.arg(name.as_str()), s.arg(*n)]);
            sql.push(RELEASE_GROUPS_TAIL);
            let left: Vec<Left> = c.fetch_all(sql).await?;
            for l in left.into_iter().filter(|l| l.n == 0) {
                match l.deferred {
                    true => deferred.push(l.name),
                    false => ready.push(l.name),
                }
            }
        }
        if !deferred.is_empty() {
            self.create_deferred(run_id, Some(&deferred), now).await?;
        }
        let mut c = self.conn();
        ready.sort();
        for chunk in ready.chunks(CHUNK) {
            let sql = if pg {
                let names = Arg::column(chunk.iter().cloned().map(Some));
                Sql::new(MARK_GROUPS_READY_PG)
                    .bind(run_id)
                    .bind(now)
                    .bind(names)
            } else {
                let mut sql = Sql::new(MARK_GROUPS_READY_HEAD).bind(run_id).bind(now);
                sql.push_list(chunk.iter().cloned());
                sql.push(")");
                sql
            };
            c.execute(sql).await?;
        }
        ready.extend(deferred);
        Ok(ready)
    }

    /// Creates the instances of the run's deferred groups (of `names` only,
    /// when given) that are still deferred: `pending`, ready if their
    /// group is at zero (`now`). Whoever takes a group creates them, once.
    async fn create_deferred(
        &mut self,
        run_id: Uuid,
        names: Option<&[String]>,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        let mut c = self.conn();
        let mut sql = Sql::new(TAKE_DEFERRED_HEAD).bind(run_id);
        if let Some(names) = names {
            push_names(&mut sql, c.dialect(), names);
        }
        sql.push(TAKE_DEFERRED_TAIL);
        let groups: Vec<DeferredGroup> = c.fetch_all(sql).await?;
        let tasks: Vec<NewTask> = groups.into_iter().map(NewTask::from).collect();
        let tasks: Vec<&NewTask> = tasks.iter().collect();
        insert_tasks(&mut c, run_id, now, &tasks).await
    }

    /// Creates the instances of a `foreach` task, one per item (index =
    /// position), `pending`, ready since `now` if the task has no parent
    /// left to succeed (`task.deps_remaining`: the caller released its
    /// group first), and counts them in the run.
    pub(crate) async fn expand_foreach(
        &mut self,
        run_id: Uuid,
        task: &NewTask,
        items: &[serde_json::Value],
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        if items.is_empty() {
            return Ok(());
        }
        let mut c = self.conn();
        let count = items.len() as i64;
        let indexed: Vec<(i64, &serde_json::Value)> = items
            .iter()
            .enumerate()
            .map(|(i, v)| (i as i64, v))
            .collect();
        for chunk in indexed.chunks(CHUNK) {
            let mut sql = Sql::new(INSERT_FOREACH_TASKS_HEAD);
            sql.push_values(chunk, |s, &(index, item)| {
                vec![
                    s.arg(Uuid::now_v7()),
                    s.arg(run_id),
                    s.arg(task.name.as_str()),
                    s.arg(index),
                    s.arg(count),
                    s.arg(task.executor.as_str()),
                    s.arg(TaskStatus::Pending.as_str()),
                    s.arg(task.max_attempts),
                    s.arg(task.deps_remaining),
                    s.arg((task.deps_remaining == 0).then_some(now)),
                    s.arg(Some(item.clone())),
                    s.arg(task.limit_group.clone()),
                    s.arg(task.limit_key.clone()),
                ]
            });
            c.execute(sql).await?;
        }
        c.execute(Sql::new(ADD_RUN_TASKS).bind(run_id).bind(count))
            .await?;
        Ok(())
    }

    /// Marks the pending instances of the named tasks `skipped`; returns how many.
    pub(crate) async fn skip_pending(
        &mut self,
        run_id: Uuid,
        names: &[String],
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, Error> {
        if names.is_empty() {
            return Ok(0);
        }
        self.create_deferred(run_id, Some(names), now).await?;
        let (mut c, log) = self.parts();
        let mut sql = Sql::new(SKIP_PENDING_HEAD).bind(now).bind(run_id);
        sql.push_list(names.iter().map(String::as_str));
        sql.push(SKIP_PENDING_TAIL);
        let rows: Vec<TaskEventRow> = c.fetch_all(sql).await?;
        let mut events = task_events(&rows);
        for e in &mut events {
            e.detail = Some(reason.to_owned());
        }
        log.add(now, events);
        Ok(rows.len() as i64)
    }

    /// Counts `closed` task instances as final, `failed` of them as failures.
    /// When none is left open, finalizes the run: this conditional update of
    /// the run row is what makes finalization happen exactly once. Returns
    /// the run as updated (final if this call finalized it), or `None` when
    /// nothing changed (no instance closed, or the run was final already).
    pub(crate) async fn close_tasks(
        &mut self,
        run_id: Uuid,
        closed: i64,
        failed: i64,
        now: DateTime<Utc>,
    ) -> Result<Option<Run>, Error> {
        if closed == 0 {
            return Ok(None);
        }
        let (mut c, log) = self.parts();
        let run: Option<Run> = c
            .fetch_optional(
                Sql::new(CLOSE_TASKS)
                    .bind(run_id)
                    .bind(closed)
                    .bind(failed)
                    .bind(now),
            )
            .await?;
        if let Some(run) = run.as_ref().filter(|r| r.status.is_final()) {
            log.add(now, vec![NewEvent::of_run(run_id, run.status, None)]);
        }
        Ok(run)
    }

    /// A worker's sign of life: a `dispatched` attempt becomes `running`,
    /// and a running one must beat again before `lease_until`. Returns
    /// whether the attempt is still in flight.
    pub(crate) async fn heartbeat(
        &mut self,
        task_id: Uuid,
        attempt: i64,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let (mut c, log) = self.parts();
        let started: Vec<TaskEventRow> = c
            .fetch_all(
                Sql::new(HEARTBEAT_START)
                    .bind(task_id)
                    .bind(attempt)
                    .bind(lease_until)
                    .bind(now),
            )
            .await?;
        if !started.is_empty() {
            log.add(now, task_events(&started));
            return Ok(true);
        }
        // Extending the lease of a running attempt is not a transition: no event.
        let extended = c
            .execute(
                Sql::new(HEARTBEAT_EXTEND)
                    .bind(task_id)
                    .bind(attempt)
                    .bind(lease_until),
            )
            .await?;
        Ok(extended == 1)
    }

    /// Extends the leases of running attempts whose liveness this caller
    /// vouches for (`ork run`'s own children, cloud attempts a poll found
    /// running) to `lease_until`. Not a transition: no event. Returns the
    /// attempts still running.
    pub(crate) async fn renew_leases(
        &mut self,
        attempts: &[(Uuid, i64)],
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, i64)>, Error> {
        #[derive(sqlx::FromRow)]
        struct Renewed {
            id: Uuid,
            attempt: i64,
        }
        let mut c = self.conn();
        let mut attempts = attempts.to_vec();
        attempts.sort();
        attempts.dedup();
        let mut alive = Vec::with_capacity(attempts.len());
        for chunk in attempts.chunks(CHUNK) {
            let mut sql = Sql::new(RENEW_LEASES_HEAD).bind(lease_until);
            sql.push_values(chunk, |s, (id, attempt)| vec![s.arg(*id), s.arg(*attempt)]);
            sql.push(RENEW_LEASES_TAIL);
            let rows: Vec<Renewed> = c.fetch_all(sql).await?;
            alive.extend(rows.into_iter().map(|r| (r.id, r.attempt)));
        }
        Ok(alive)
    }

    /// Puts back claims whose lease ran out with no start recorded (the
    /// claimer died or lost the database between its claim and recording
    /// the dispatch), so the next advance dispatches them again as a new
    /// attempt, spending no retry; of one run, or of all. A started attempt
    /// is never requeued: its expired lease fails it (see the sweeper).
    /// Returns their runs.
    pub(crate) async fn requeue_expired_claims(
        &mut self,
        now: DateTime<Utc>,
        run: Option<Uuid>,
    ) -> Result<Vec<Uuid>, Error> {
        let (mut c, log) = self.parts();
        let mut sql = match run {
            None => Sql::new(REQUEUE_EXPIRED_CLAIMS_HEAD).bind(now),
            Some(run) => Sql::new(REQUEUE_EXPIRED_CLAIMS_OF_RUN_HEAD)
                .bind(now)
                .bind(run),
        };
        c.dialect().skip_locked(&mut sql);
        sql.push(REQUEUE_EXPIRED_CLAIMS_TAIL);
        let rows: Vec<TaskEventRow> = c.fetch_all(sql).await?;
        let mut events = task_events(&rows);
        for e in &mut events {
            e.detail = Some(REQUEUED_CLAIM.into());
        }
        log.add(now, events);
        let mut runs: Vec<Uuid> = rows.iter().map(|r| r.run_id).collect();
        runs.sort();
        runs.dedup();
        Ok(runs)
    }

    /// Wakes the hosts listening for changes when this transaction commits
    /// (PostgreSQL `NOTIFY`; SQLite hosts see the commit by `data_version`).
    /// On PostgreSQL the notification goes with the events' statement
    /// ([`EventLog`]), or alone at commit if there are none.
    pub(crate) fn notify_wake(&mut self) {
        let (c, log) = self.parts();
        log.wake = c.dialect() == super::Dialect::Postgres;
    }

    /// Records that a workflow's schedule fired `slot`; never moves back.
    pub(crate) async fn record_schedule_slot(
        &mut self,
        workflow: &str,
        slot: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.conn()
            .execute(Sql::new(RECORD_SCHEDULE_SLOT).bind(workflow).bind(slot))
            .await?;
        Ok(())
    }

    /// Pauses or unpauses a workflow; `false` if there is no such workflow.
    pub(crate) async fn set_paused(
        &mut self,
        workflow: &str,
        paused: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let n = self
            .conn()
            .execute(
                Sql::new(SET_WORKFLOW_PAUSED)
                    .bind(workflow)
                    .bind(paused)
                    .bind(now),
            )
            .await?;
        Ok(n > 0)
    }

    /// Deletes a workflow version that is not the latest and has no run.
    /// The error says which rule refused it.
    pub(crate) async fn delete_version(
        &mut self,
        workflow: &str,
        version: i64,
    ) -> Result<(), Error> {
        let mut c = self.conn();
        let deleted = c
            .execute(
                Sql::new(DELETE_WORKFLOW_VERSION)
                    .bind(workflow)
                    .bind(version),
            )
            .await?;
        if deleted > 0 {
            return Ok(());
        }
        let state: Option<VersionState> = c
            .fetch_optional(
                Sql::new(WORKFLOW_VERSION_STATE)
                    .bind(workflow)
                    .bind(version),
            )
            .await?;
        let state = state.ok_or_else(|| Error::WorkflowNotFound(workflow.to_owned()))?;
        Err(Error::Invalid(if state.versions == 0 {
            format!("workflow {workflow:?} has no version {version}")
        } else if state.latest_version == version {
            format!(
                "version {version} is the latest of {workflow:?}: apply another version before deleting it"
            )
        } else {
            format!(
                "version {version} of {workflow:?} has {} runs: only a version without runs can be deleted",
                state.runs
            )
        }))
    }

    pub(crate) async fn insert_backfill(
        &mut self,
        b: &super::reads::ActiveBackfill,
        now: DateTime<Utc>,
    ) -> Result<(), Error> {
        self.conn()
            .execute(
                Sql::new(INSERT_BACKFILL)
                    .bind(b.id)
                    .bind(b.workflow.as_str())
                    .bind(b.next_slot)
                    .bind(b.until_at)
                    .bind(b.max_parallel)
                    .bind(b.rerun)
                    .bind(now),
            )
            .await?;
        Ok(())
    }

    /// Moves a backfill's cursor from `from` to `to` (`None`: it is done);
    /// `false` when another caller moved it first.
    pub(crate) async fn move_backfill(
        &mut self,
        id: Uuid,
        from: DateTime<Utc>,
        to: Option<DateTime<Utc>>,
    ) -> Result<bool, Error> {
        let mut c = self.conn();
        let Some(to) = to else {
            return Ok(c.execute(Sql::new(END_BACKFILL).bind(id)).await? > 0);
        };
        Ok(
            c.execute(Sql::new(MOVE_BACKFILL).bind(id).bind(from).bind(to))
                .await?
                > 0,
        )
    }

    /// Cancels a run that is not final: its unfinished tasks become
    /// `cancelled`. Returns the attempts that were in flight (for the
    /// executors to stop), or `None` if the run was already final.
    pub(crate) async fn cancel_run(
        &mut self,
        run_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<crate::model::Task>>, Error> {
        let n = self
            .conn()
            .execute(Sql::new(CANCEL_RUN).bind(run_id).bind(now))
            .await?;
        if n == 0 {
            return Ok(None);
        }
        // Instances not created yet are cancelled too, as rows to retry.
        self.create_deferred(run_id, None, now).await?;
        let (mut c, log) = self.parts();
        let in_flight: Vec<crate::model::Task> = c
            .fetch_all(Sql::new(IN_FLIGHT_TASKS_OF_RUN).bind(run_id))
            .await?;
        let rows: Vec<TaskEventRow> = c
            .fetch_all(Sql::new(CANCEL_TASKS_OF_RUN).bind(run_id).bind(now))
            .await?;
        let mut events = task_events(&rows);
        events.push(NewEvent::of_run(run_id, RunStatus::Cancelled, None));
        log.add(now, events);
        Ok(Some(in_flight))
    }
}

impl Tx {
    /// [`Store::cost_inputs`](super::Store::cost_inputs) as this
    /// transaction sees them: for the cost of the run it finalizes.
    pub(crate) async fn cost_inputs(
        &mut self,
        run_id: Uuid,
    ) -> Result<(Vec<crate::cost::CostTask>, Vec<crate::cost::CostEvent>), Error> {
        // The run's last events are this transaction's own.
        self.write_events().await?;
        let mut c = self.conn();
        let tasks = c.fetch_all(Sql::new(COST_TASKS).bind(run_id)).await?;
        let events = c.fetch_all(Sql::new(COST_EVENTS).bind(run_id)).await?;
        Ok((tasks, events))
    }

    /// How many attempts of the run were dispatched (`COST_ATTEMPTS`).
    pub(crate) async fn attempts_dispatched(&mut self, run_id: Uuid) -> Result<i64, Error> {
        let row: Option<Count> = self
            .conn()
            .fetch_optional(Sql::new(COST_ATTEMPTS).bind(run_id))
            .await?;
        Ok(row.map_or(0, |r| r.n))
    }

    /// Stores the cost of a run this transaction finalized.
    pub(crate) async fn set_run_cost(&mut self, run_id: Uuid, usd: f64) -> Result<(), Error> {
        self.conn()
            .execute(Sql::new(SET_RUN_COST).bind(run_id).bind(usd))
            .await?;
        Ok(())
    }
}

/// A task name an `ork retry` reopens: its unsuccessful instances go back
/// to `pending`, granted `attempts` new attempts, and wait for `deps`
/// parent instances (its group's count, set from the rows).
#[derive(Debug, Clone)]
pub(crate) struct RetryTask {
    pub name: String,
    pub attempts: i64,
    pub deps: i64,
}

impl Tx {
    /// Reopens a `failed` or `cancelled` run (`running` again, not
    /// finished). The conditional update of the run row makes racing
    /// retries reopen it once: returns whether this call did.
    pub(crate) async fn reopen_run(&mut self, run_id: Uuid) -> Result<bool, Error> {
        let reopened = self
            .conn()
            .execute(Sql::new(REOPEN_RUN).bind(run_id))
            .await?;
        Ok(reopened == 1)
    }

    /// A run's instances counted per `(task name, status)`.
    pub(crate) async fn task_status_counts(
        &mut self,
        run_id: Uuid,
    ) -> Result<Vec<(String, TaskStatus, i64)>, Error> {
        #[derive(sqlx::FromRow)]
        struct Counted {
            name: String,
            #[sqlx(try_from = "String")]
            status: TaskStatus,
            n: i64,
        }
        let rows: Vec<Counted> = self
            .conn()
            .fetch_all(Sql::new(TASK_STATUS_COUNTS).bind(run_id))
            .await?;
        Ok(rows.into_iter().map(|r| (r.name, r.status, r.n)).collect())
    }

    /// After [`Tx::reopen_run`]: sets the groups' counts of `tasks`, puts
    /// their failed, cancelled and skipped instances back to `pending`
    /// (each with a `pending` event saying why, and the run a `running`
    /// one), and recounts the run's open and failed instances. Returns how
    /// many instances it reopened.
    pub(crate) async fn retry_tasks(
        &mut self,
        run_id: Uuid,
        tasks: &[RetryTask],
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<i64, Error> {
        let (mut c, log) = self.parts();
        let mut reopened = 0;
        let mut tasks = tasks.to_vec();
        tasks.sort_by(|a, b| a.name.cmp(&b.name));
        for chunk in tasks.chunks(CHUNK) {
            let mut sql = Sql::new(SET_GROUP_DEPS_HEAD).bind(run_id);
            sql.push_values(chunk, |s, t| vec![s.arg(t.name.as_str()), s.arg(t.deps)]);
            sql.push(SET_GROUP_DEPS_TAIL);
            c.execute(sql).await?;
            let mut sql = Sql::new(RETRY_TASKS_HEAD).bind(run_id).bind(now);
            sql.push_values(chunk, |s, t| {
                vec![s.arg(t.name.as_str()), s.arg(t.attempts), s.arg(t.deps)]
            });
            sql.push(RETRY_TASKS_TAIL);
            let rows: Vec<TaskEventRow> = c.fetch_all(sql).await?;
            let mut events = task_events(&rows);
            for e in &mut events {
                e.detail = Some(reason.to_owned());
            }
            log.add(now, events);
            reopened += rows.len() as i64;
        }
        c.execute(Sql::new(RECOUNT_RUN).bind(run_id)).await?;
        let detail = format!("{reason}: {reopened} task instance(s) to run again");
        log.add(
            now,
            vec![NewEvent::of_run(run_id, RunStatus::Running, Some(detail))],
        );
        Ok(reopened)
    }
}

/// Most instances of one task created by one [`INSERT_INSTANCES_PG`].
const INSTANCES_CHUNK: usize = 10_000;

/// From how many instances a task is fanned out: its instances are created
/// by [`INSERT_INSTANCES_PG`] on PostgreSQL rather than among the `VALUES`
/// rows of all the others, and, if it has parents, only once its group is
/// released ([`NewTask::deferred`]).
const FANNED_OUT: i64 = 100;

/// The instances of `tasks` in run `run_id`, `pending`; those of a task with
/// no parent left to succeed are ready since `at`.
async fn insert_tasks(
    c: &mut Conn<'_>,
    run_id: Uuid,
    at: DateTime<Utc>,
    tasks: &[&NewTask],
) -> Result<(), Error> {
    let pg = c.dialect() == Dialect::Postgres;
    let (fanned, rest): (Vec<&NewTask>, Vec<&NewTask>) =
        tasks.iter().partition(|t| pg && t.task_count >= FANNED_OUT);
    insert_fanned_out_pg(c, run_id, at, &fanned).await?;
    insert_instances(c, run_id, at, &rest).await
}

/// The instances of fanned-out `tasks`, one [`INSERT_INSTANCES_PG`] per
/// task (per [`INSTANCES_CHUNK`] of its instances).
async fn insert_fanned_out_pg(
    c: &mut Conn<'_>,
    run_id: Uuid,
    at: DateTime<Utc>,
    tasks: &[&NewTask],
) -> Result<(), Error> {
    for t in tasks {
        let ready = (t.deps_remaining == 0).then_some(at);
        for first in (0..t.task_count).step_by(INSTANCES_CHUNK) {
            let n = (t.task_count - first).min(INSTANCES_CHUNK as i64);
            let mut ids = String::with_capacity(37 * n as usize + 2);
            ids.push('{');
            for i in 0..n {
                if i > 0 {
                    ids.push(',');
                }
                ids.push_str(Uuid::now_v7().hyphenated().encode_lower(&mut [0; 36]));
            }
            ids.push('}');
            c.execute(
                Sql::new(INSERT_INSTANCES_PG)
                    .bind(ids)
                    .bind(first)
                    .bind(run_id)
                    .bind(t.name.as_str())
                    .bind(t.task_count)
                    .bind(t.executor.as_str())
                    .bind(t.max_attempts)
                    .bind(t.deps_remaining)
                    .bind(ready)
                    .bind(t.limit_group.clone())
                    .bind(t.limit_key.clone()),
            )
            .await?;
        }
    }
    Ok(())
}

/// The instances of `tasks` as `INSERT … VALUES` of [`CHUNK`] rows.
async fn insert_instances(
    c: &mut Conn<'_>,
    run_id: Uuid,
    at: DateTime<Utc>,
    tasks: &[&NewTask],
) -> Result<(), Error> {
    // (task, next index): the cursor of the instances still to insert.
    let (mut task, mut next) = (0usize, 0i64);
    loop {
        let mut chunk: Vec<(&NewTask, i64)> = Vec::with_capacity(CHUNK);
        while chunk.len() < CHUNK && task < tasks.len() {
            if next < tasks[task].task_count {
                chunk.push((tasks[task], next));
                next += 1;
            } else {
                (task, next) = (task + 1, 0);
            }
        }
        if chunk.is_empty() {
            break;
        }
        let mut sql = Sql::new(INSERT_TASKS_HEAD);
        sql.push_values(&chunk, |s, &(t, task_index)| {
            let ready = (t.deps_remaining == 0).then_some(at);
            vec![
                s.arg(Uuid::now_v7()),
                s.arg(run_id),
                s.arg(t.name.as_str()),
                s.arg(task_index),
                s.arg(t.task_count),
                s.arg(t.executor.as_str()),
                s.arg(TaskStatus::Pending.as_str()),
                s.arg(t.max_attempts),
                s.arg(t.deps_remaining),
                s.arg(ready),
                s.arg(t.limit_group.clone()),
                s.arg(t.limit_key.clone()),
            ]
        });
        c.execute(sql).await?;
    }
    Ok(())
}

fn task_events(rows: &[TaskEventRow]) -> Vec<NewEvent> {
    rows.iter()
        .map(|r| NewEvent {
            run_id: r.run_id,
            task_id: Some(r.id),
            attempt: Some(r.attempt),
            status: r.status.as_str(),
            detail: None,
        })
        .collect()
}

/// The attempts of a start ([`MARK_STARTED_PG`]) as PostgreSQL's arrays,
/// `$3`…`$6`.
fn started_columns(sql: Sql, started: &[&Started]) -> Sql {
    sql.bind(Arg::column(started.iter().map(|r| Some(r.task_id))))
        .bind(Arg::column(started.iter().map(|r| Some(r.attempt))))
        .bind(Arg::column(
            started.iter().map(|r| Some(r.execution_id.clone())),
        ))
        .bind(Arg::column(started.iter().map(|r| r.deadline)))
}

impl super::Store {
    /// [`Tx::mark_started`] in a transaction of its own. On PostgreSQL, one
    /// statement that also writes the events and commits alone
    /// ([`MARK_STARTED_ALONE_PG_HEAD`]): a dispatch batch's one write after
    /// its claim costs one round trip, not four.
    pub(crate) async fn mark_started(
        &self,
        started: &[Started],
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<(), Error> {
        let super::Backend::Postgres(pool) = &self.backend else {
            let mut tx = self.begin().await?;
            tx.mark_started(started, now, lease_until).await?;
            return tx.commit().await;
        };
        let mut started: Vec<&Started> = started.iter().collect();
        started.sort_by_key(|s| s.task_id);
        let mut sql = started_columns(
            Sql::new(MARK_STARTED_ALONE_PG_HEAD)
                .bind(now)
                .bind(lease_until),
            &started,
        );
        sql.push(MARK_STARTED_PG)
            .push(MARK_STARTED_TAIL)
            .push(MARK_STARTED_ALONE_PG_TAIL);
        let mut conn = pool.acquire().await?;
        Conn::Postgres(&mut conn).execute(sql).await?;
        Ok(())
    }
}
