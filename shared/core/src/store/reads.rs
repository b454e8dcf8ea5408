//! Queries that change nothing.

use uuid::Uuid;

use super::sql::{Dialect, Row, Sql};
use super::statements::*;
use super::Store;
use chrono::{DateTime, Utc};

use crate::model::{Event, InFlight, Run, RunStatus, Task};
use crate::Error;

/// A workflow's latest version, as listed by `ork list-workflows`.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct WorkflowSummary {
    pub name: String,
    pub latest_version: i64,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// A paused workflow's schedule does not fire.
    pub paused: bool,
    #[sqlx(json)]
    pub spec: serde_json::Value,
}

/// A backfill in progress ([`Store::active_backfills`]).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ActiveBackfill {
    pub id: Uuid,
    pub workflow: String,
    /// The slots at or after this one, and before `until_at`, are not started.
    pub next_slot: DateTime<Utc>,
    pub until_at: DateTime<Utc>,
    pub max_parallel: i64,
    /// Slots that already ran run again (keys `backfill:<id>:<slot>`).
    pub rerun: bool,
    /// Backfill runs of the workflow now pending or running.
    pub open: i64,
}

#[derive(sqlx::FromRow)]
struct RunCount {
    status: String,
    runs: i64,
}

#[derive(sqlx::FromRow)]
struct SpecRow {
    version: i64,
    #[sqlx(json)]
    spec: serde_json::Value,
}

/// The output of one succeeded task instance.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskOutput {
    pub name: String,
    pub task_index: i64,
    #[sqlx(json(nullable))]
    pub output: Option<serde_json::Value>,
    /// Set instead of `output` for a large one ([`crate::payload::PayloadRef`]).
    #[sqlx(json(nullable))]
    pub output_ref: Option<serde_json::Value>,
}

/// What [`Store::next_due_at`] found: the earliest times after which the
/// sweeper has something to do, and what the cron slots depend on.
#[derive(Debug, Clone, Default, PartialEq, sqlx::FromRow)]
pub struct Due {
    /// The earliest retry whose backoff ends (or ready task not yet advanced).
    pub retry_at: Option<DateTime<Utc>>,
    /// The earliest running attempt's timeout.
    pub deadline_at: Option<DateTime<Utc>>,
    /// The earliest claim or heartbeat lease to expire.
    // Seam: a lease/deadline column of in-flight attempts added later joins
    // the MIN in `NEXT_DUE_AT`, nothing else changes.
    pub lease_at: Option<DateTime<Utc>>,
    /// 1 when an attempt of a polled executor (`engine::sweep::POLLED`),
    /// or a local one an `ork run` watches, is running: the sweeper asks
    /// about it every tick.
    pub polled: i64,
    /// How many workflows there are, and when the latest was applied, and
    /// the latest slot fired: the cron cache is stale when these change.
    pub workflows: i64,
    pub workflows_at: Option<DateTime<Utc>>,
    pub slots_at: Option<DateTime<Utc>>,
    /// Backfills in progress: the sweeper starts their next slots each tick.
    pub backfills: i64,
}

impl Due {
    /// The earliest of the row times.
    pub fn earliest(&self) -> Option<DateTime<Utc>> {
        [self.retry_at, self.deadline_at, self.lease_at]
            .into_iter()
            .flatten()
            .min()
    }
}

impl Store {
    /// When the sweeper next has work, counting only times after `after`:
    /// one statement ([`NEXT_DUE_AT`]), the only one an idle host runs.
    pub async fn next_due_at(&self, after: DateTime<Utc>) -> Result<Due, Error> {
        let due: Option<Due> = self
            .read_optional(Sql::new(NEXT_DUE_AT).bind(after))
            .await?;
        Ok(due.unwrap_or_default())
    }

    /// Runs a query on a reader connection.
    pub(super) async fn read_all<T: Row>(&self, sql: Sql) -> Result<Vec<T>, Error> {
        let mut r = self.reader().await?;
        Ok(r.conn().fetch_all(sql).await?)
    }

    /// [`Store::read_all`], skipping (and logging) rows that do not decode.
    async fn read_readable<T: Row>(&self, sql: Sql) -> Result<Vec<T>, Error> {
        let mut r = self.reader().await?;
        Ok(r.conn().fetch_readable(sql).await?)
    }

    async fn read_optional<T: Row>(&self, sql: Sql) -> Result<Option<T>, Error> {
        let mut r = self.reader().await?;
        Ok(r.conn().fetch_optional(sql).await?)
    }

    /// How many runs there are in each status (for `/metrics`).
    pub async fn run_counts(&self) -> Result<Vec<(String, i64)>, Error> {
        let rows: Vec<RunCount> = self.read_all(Sql::new(RUN_COUNTS)).await?;
        Ok(rows.into_iter().map(|r| (r.status, r.runs)).collect())
    }

    /// The backfills in progress, oldest first, with their open runs.
    pub async fn active_backfills(&self) -> Result<Vec<ActiveBackfill>, Error> {
        self.read_all(Sql::new(ACTIVE_BACKFILLS)).await
    }

    pub async fn list_workflows(&self) -> Result<Vec<WorkflowSummary>, Error> {
        self.read_all(Sql::new(LIST_WORKFLOWS)).await
    }

    /// The stored spec of a workflow version (the latest when `version` is `None`),
    /// with its version number.
    pub async fn workflow_spec(
        &self,
        name: &str,
        version: Option<i64>,
    ) -> Result<(i64, serde_json::Value), Error> {
        let row: Option<SpecRow> = self
            .read_optional(Sql::new(WORKFLOW_SPEC).bind(name).bind(version))
            .await?;
        let row = row.ok_or_else(|| Error::WorkflowNotFound(name.to_owned()))?;
        Ok((row.version, row.spec))
    }

    pub async fn get_run(&self, id: Uuid) -> Result<Run, Error> {
        self.read_optional(Sql::new(GET_RUN).bind(id))
            .await?
            .ok_or(Error::RunNotFound(id))
    }

    /// The run a workflow's idempotency key created, if any.
    pub async fn run_by_idempotency_key(
        &self,
        workflow: &str,
        key: &str,
    ) -> Result<Option<Run>, Error> {
        self.read_optional(Sql::new(RUN_BY_IDEMPOTENCY_KEY).bind(workflow).bind(key))
            .await
    }

    /// The most recent runs, newest first, optionally of one workflow.
    pub async fn list_runs(&self, workflow: Option<&str>, limit: i64) -> Result<Vec<Run>, Error> {
        let sql = match workflow {
            Some(w) => Sql::new(LIST_RUNS_OF_WORKFLOW).bind(w).bind(limit),
            None => Sql::new(LIST_RUNS).bind(limit),
        };
        self.read_readable(sql).await
    }

    /// Runs not yet final, oldest first: what the sweeper looks after.
    pub async fn open_runs(&self, limit: i64) -> Result<Vec<Run>, Error> {
        self.read_readable(Sql::new(OPEN_RUNS).bind(limit)).await
    }

    /// All task instances of a run, in creation order.
    pub async fn run_tasks(&self, run_id: Uuid) -> Result<Vec<Task>, Error> {
        self.read_all(Sql::new(RUN_TASKS).bind(run_id)).await
    }

    /// The attempt an executor knows by `execution_id` (a Cloud Run
    /// execution name, an ECS task ARN), if it is still in flight.
    pub async fn in_flight_by_execution(
        &self,
        execution_id: &str,
    ) -> Result<Option<InFlight>, Error> {
        self.read_optional(Sql::new(IN_FLIGHT_BY_EXECUTION).bind(execution_id))
            .await
    }

    pub async fn get_task(&self, task_id: Uuid) -> Result<Option<Task>, Error> {
        self.read_optional(Sql::new(GET_TASK).bind(task_id)).await
    }

    /// Outputs of the succeeded instances of the named tasks of a run
    /// (both `None` where one left no output).
    pub async fn task_outputs(
        &self,
        run_id: Uuid,
        names: &[&str],
    ) -> Result<Vec<TaskOutput>, Error> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let sql = if self.dialect() == Dialect::Postgres {
            let mut sql = Sql::new(TASK_OUTPUTS_PG_HEAD).bind(run_id);
            sql.push_values(names.iter().copied(), |s, name| vec![s.arg(name)]);
            sql.push(TASK_OUTPUTS_PG_TAIL);
            sql
        } else {
            let mut sql = Sql::new(TASK_OUTPUTS_HEAD).bind(run_id);
            sql.push_list(names.iter().copied());
            sql.push(TASK_OUTPUTS_TAIL);
            sql
        };
        self.read_all(sql).await
    }

    /// One instance's output or reference (`None`: no such task in the run).
    pub async fn task_output(
        &self,
        run_id: Uuid,
        task_id: Uuid,
    ) -> Result<Option<TaskOutput>, Error> {
        self.read_optional(Sql::new(TASK_OUTPUT).bind(run_id).bind(task_id))
            .await
    }

    /// Running attempts whose deadline or lease (start lease, heartbeat,
    /// `ork run`'s renewal) has passed; of one run, or of all.
    pub async fn overdue_attempts(
        &self,
        now: DateTime<Utc>,
        run: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<InFlight>, Error> {
        match run {
            None => {
                self.read_all(Sql::new(OVERDUE_ATTEMPTS).bind(now).bind(limit))
                    .await
            }
            Some(run) => {
                self.read_all(
                    Sql::new(OVERDUE_ATTEMPTS_OF_RUN)
                        .bind(now)
                        .bind(limit)
                        .bind(run),
                )
                .await
            }
        }
    }

    /// Running attempts of the given executors, oldest first: the ones the
    /// sweeper asks their executor about when no callback came.
    pub async fn running_attempts(
        &self,
        executors: &[&str],
        limit: i64,
    ) -> Result<Vec<InFlight>, Error> {
        if executors.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(RUNNING_ATTEMPTS_HEAD);
        sql.push_list(executors.iter().copied());
        sql.push(RUNNING_ATTEMPTS_TAIL).push_arg(limit);
        self.read_all(sql).await
    }

    /// Running local attempts that an `ork` process watches (`ork run`),
    /// oldest first: the sweeper asks whether that `ork` died.
    pub async fn watched_attempts(&self, limit: i64) -> Result<Vec<InFlight>, Error> {
        self.read_all(Sql::new(WATCHED_ATTEMPTS).bind(limit)).await
    }

    /// Runs with a task instance ready to claim now (its retry backoff passed).
    pub async fn ready_runs(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Uuid>, Error> {
        #[derive(sqlx::FromRow)]
        struct Row {
            run_id: Uuid,
        }
        let rows: Vec<Row> = self
            .read_all(Sql::new(READY_RUNS).bind(now).bind(limit))
            .await?;
        Ok(rows.into_iter().map(|r| r.run_id).collect())
    }

    /// The last slot each scheduled workflow fired.
    pub async fn schedule_slots(&self) -> Result<Vec<(String, DateTime<Utc>)>, Error> {
        #[derive(sqlx::FromRow)]
        struct Row {
            workflow: String,
            last_slot: DateTime<Utc>,
        }
        let rows: Vec<Row> = self.read_all(Sql::new(SCHEDULE_SLOTS)).await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.workflow, r.last_slot))
            .collect())
    }

    /// The run's event log, oldest first.
    pub async fn run_events(&self, run_id: Uuid) -> Result<Vec<Event>, Error> {
        self.read_all(Sql::new(RUN_EVENTS).bind(run_id)).await
    }

    /// What a run's cost is computed from ([`crate::cost::run_cost`]): its
    /// instances and its attempts' events, read on one connection.
    pub async fn cost_inputs(
        &self,
        run_id: Uuid,
    ) -> Result<(Vec<crate::cost::CostTask>, Vec<crate::cost::CostEvent>), Error> {
        let mut r = self.reader().await?;
        let tasks = r
            .conn()
            .fetch_all(Sql::new(COST_TASKS).bind(run_id))
            .await?;
        let events = r
            .conn()
            .fetch_all(Sql::new(COST_EVENTS).bind(run_id))
            .await?;
        Ok((tasks, events))
    }

    /// Runs newest first, filtered by workflow, status and trigger, one page.
    pub async fn list_runs_filtered(
        &self,
        filter: &RunFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Run>, Error> {
        let sql = Sql::new(LIST_RUNS_FILTERED)
            .bind(filter.workflow.clone())
            .bind(filter.status.clone())
            .bind(filter.trigger.clone())
            .bind(limit)
            .bind(offset);
        self.read_readable(sql).await
    }

    /// Runs of `workflow` created at or after `since` in one of
    /// `statuses`, oldest first, at most `limit`: what a bulk cancel or
    /// retry works through.
    pub async fn runs_for_bulk(
        &self,
        workflow: &str,
        statuses: &[RunStatus],
        since: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Run>, Error> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = Sql::new(RUNS_FOR_BULK_HEAD).bind(workflow).bind(since);
        sql.push_list(statuses.iter().map(|s| s.as_str()));
        sql.push(RUNS_FOR_BULK_TAIL);
        sql.push_arg(limit);
        self.read_readable(sql).await
    }

    /// A run's task instances, named and numbered only: what `ork run`'s
    /// progress follows (a fraction of a whole row's bytes at 100,000).
    pub async fn run_instances(&self, run_id: Uuid) -> Result<Vec<InstanceRow>, Error> {
        self.read_all(Sql::new(RUN_INSTANCES).bind(run_id)).await
    }

    /// A run's task instances counted per name and status.
    pub async fn run_task_groups(&self, run_id: Uuid) -> Result<Vec<TaskGroupRow>, Error> {
        self.read_all(Sql::new(RUN_TASK_GROUPS).bind(run_id)).await
    }

    /// A run's tasks that have no instance yet (see [`WaitingGroup`]).
    pub async fn run_waiting_groups(&self, run_id: Uuid) -> Result<Vec<WaitingGroup>, Error> {
        self.read_all(Sql::new(RUN_WAITING_GROUPS).bind(run_id))
            .await
    }

    /// One page of a run's task instances (of one name, in one status, when
    /// given), and how many there are in all.
    pub async fn run_tasks_page(
        &self,
        run_id: Uuid,
        name: Option<String>,
        status: Option<String>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Task>, i64), Error> {
        #[derive(sqlx::FromRow)]
        struct Count {
            n: i64,
        }
        let page = Sql::new(RUN_TASKS_PAGE)
            .bind(run_id)
            .bind(name.clone())
            .bind(status.clone())
            .bind(limit)
            .bind(offset);
        let tasks = self.read_all(page).await?;
        let count: Option<Count> = self
            .read_optional(
                Sql::new(COUNT_RUN_TASKS)
                    .bind(run_id)
                    .bind(name)
                    .bind(status),
            )
            .await?;
        Ok((tasks, count.map_or(0, |c| c.n)))
    }

    /// One task instance's events (its attempts' history), oldest first.
    pub async fn task_events(&self, run_id: Uuid, task_id: Uuid) -> Result<Vec<Event>, Error> {
        self.read_all(Sql::new(TASK_EVENTS).bind(run_id).bind(task_id))
            .await
    }

    /// Up to `limit` of the run's events after the event id `after`.
    pub async fn run_events_page(
        &self,
        run_id: Uuid,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>, Error> {
        self.read_all(
            Sql::new(RUN_EVENTS_PAGE)
                .bind(run_id)
                .bind(after)
                .bind(limit),
        )
        .await
    }

    /// A workflow's versions, newest first.
    pub async fn workflow_versions(&self, name: &str) -> Result<Vec<VersionSummary>, Error> {
        self.read_all(Sql::new(WORKFLOW_VERSIONS).bind(name)).await
    }

    /// A version's spec and the YAML it was applied from (the latest
    /// version when `version` is `None`).
    pub async fn workflow_source(
        &self,
        name: &str,
        version: Option<i64>,
    ) -> Result<WorkflowSource, Error> {
        let row: Option<WorkflowSource> = self
            .read_optional(Sql::new(WORKFLOW_SOURCE).bind(name).bind(version))
            .await?;
        row.ok_or_else(|| Error::WorkflowNotFound(name.to_owned()))
    }
}

/// What [`Store::list_runs_filtered`] keeps: each filter when set.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub workflow: Option<String>,
    pub status: Option<String>,
    pub trigger: Option<String>,
}

/// A task instance, by id: its name and place.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InstanceRow {
    pub id: Uuid,
    pub name: String,
    pub task_index: i64,
    pub task_count: i64,
}

/// The instances of one task name of a run in one status.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct TaskGroupRow {
    pub name: String,
    pub status: String,
    pub task_count: i64,
    pub executor: String,
    pub n: i64,
    pub max_attempt: i64,
    pub ready_at: Option<DateTime<Utc>>,
    pub dispatched_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A task of a run whose instances are made later: a `foreach` child
/// (`task_count` unknown until its parent's output is) or a deferred
/// fan-out, when its parents end.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct WaitingGroup {
    pub name: String,
    pub task_count: Option<i64>,
    pub executor: Option<String>,
}

/// One stored version of a workflow.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct VersionSummary {
    pub version: i64,
    pub hash: String,
    pub created_at: DateTime<Utc>,
    pub has_source: bool,
}

/// A version's spec, and the YAML source it was applied from.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct WorkflowSource {
    pub version: i64,
    #[sqlx(json)]
    pub spec: serde_json::Value,
    pub source: Option<String>,
    /// Whether the workflow is paused.
    pub paused: bool,
}
