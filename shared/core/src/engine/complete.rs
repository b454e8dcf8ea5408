//! `complete`: recording how attempts ended.
//!
//! # The completion path
//!
//! One name per step, from the attempt's end to the state it changes:
//!
//! 1. An executor (a local process, a polled cloud execution, an ECS
//!    event) or a worker (`ork worker`, over HTTP) produces an
//!    [`Outcome`](crate::executor::Outcome): success or failure, exit code, error, output.
//! 2. Paired with the attempt it belongs to, it is a [`Completion`]
//!    `{ attempt, outcome }`, what the engine receives.
//! 3. A worker's completion arriving at `on-task-complete` is a *report*:
//!    the handler's `Handlers::report` calls [`Engine::report`], whose
//!    answer [`Reported`](super::Reported) says whether it applied, was a
//!    duplicate, was stale or named no task.
//! 4. [`Engine::complete`] takes a batch of completions (from a report, an
//!    `advance` whose dispatches ended at once, the sweeper, `ork run`) and
//!    answers [`Completed`]: how many applied, the runs finalized, the runs
//!    to advance next.
//! 5. Inside its one transaction, the store's transition
//!    `Tx::finish_attempts` writes each attempt's
//!    [`AttemptResult`] (the status it goes to: success, failed, or pending
//!    again for a retry) where the attempt is still in flight, and returns a
//!    [`Finished`](crate::store::Finished) row for each one it changed; the
//!    engine then releases children, skips descendants and closes the run.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::Utc;
use uuid::Uuid;

use super::{Engine, Workflow, TRANSIENT_DB};
use crate::executor::Completion;
use crate::model::{RunStatus, TaskStatus};
use crate::retry::retry;
use crate::store::AttemptResult;
use crate::Error;

/// What one [`Engine::complete`] changed.
#[derive(Debug, Clone, Default)]
pub struct Completed {
    /// Completions that applied; the others were for attempts no longer in flight.
    pub applied: usize,
    /// Runs this call finalized, with their final status.
    pub finalized: Vec<(Uuid, RunStatus)>,
    /// Runs in which tasks may now be ready: advance them next.
    pub to_advance: Vec<Uuid>,
}

impl Engine {
    /// Records how attempts ended, all in one transaction: the attempts
    /// themselves (or their retries), the children they release, the
    /// descendants a final failure skips, and the run's finalization.
    /// Completions of attempts no longer in flight (replays, superseded
    /// attempts, cancelled runs) change nothing. A failure is retried while
    /// the task has retries left, unless its outcome is
    /// [`permanent`](crate::executor::Outcome::permanent).
    #[tracing::instrument(level = "debug", skip_all, fields(completions = completions.len()))]
    pub async fn complete(&self, completions: &[Completion]) -> Result<Completed, Error> {
        if completions.is_empty() {
            return Ok(Completed::default());
        }
        let mut workflows: HashMap<Uuid, Arc<Workflow>> = HashMap::new();
        for c in completions {
            if let Entry::Vacant(slot) = workflows.entry(c.attempt.run_id) {
                slot.insert(
                    self.workflow(&c.attempt.workflow, Some(c.attempt.version))
                        .await?,
                );
            }
        }
        let workflows = &workflows;
        let done = retry(TRANSIENT_DB, Error::is_transient, || {
            self.complete_in_transaction(completions, workflows)
        })
        .await?;
        metrics::counter!("ork_tasks_completed_total").increment(done.applied as u64);
        for (run_id, status) in &done.finalized {
            tracing::info!(%run_id, %status, "run finished");
            metrics::counter!("ork_runs_finished_total", "status" => status.to_string())
                .increment(1);
        }
        Ok(done)
    }

    /// One try of [`Engine::complete`]'s transaction.
    async fn complete_in_transaction(
        &self,
        completions: &[Completion],
        workflows: &HashMap<Uuid, Arc<Workflow>>,
    ) -> Result<Completed, Error> {
        let mut tx = self.store.begin().await?;
        let now = Utc::now();
        let results: Vec<AttemptResult> = completions
            .iter()
            .filter_map(|c| {
                let a = &c.attempt;
                let task = workflows[&a.run_id].spec.tasks.get(&a.name)?;
                let retry = !c.outcome.success
                    && !c.outcome.permanent
                    && a.attempt <= i64::from(task.retries.count);
                let (status, not_before) = match (c.outcome.success, retry) {
                    (true, _) => (TaskStatus::Success, None),
                    (false, true) => {
                        let delay = task.retries.delay_after(a.attempt as u32);
                        (TaskStatus::Pending, Some(crate::limits::after(now, delay)))
                    }
                    (false, false) => (TaskStatus::Failed, None),
                };
                Some(AttemptResult {
                    task_id: a.task_id,
                    attempt: a.attempt,
                    status,
                    exit_code: c.outcome.exit_code,
                    error: c.outcome.error.clone(),
                    output: c.outcome.output.clone(),
                    not_before,
                })
            })
            .collect();
        let finished = tx.finish_attempts(&results, now).await?;
        let mut completed = Completed {
            applied: finished.len(),
            ..Completed::default()
        };
        let mut by_run: HashMap<Uuid, Vec<_>> = HashMap::new();
        for f in &finished {
            by_run.entry(f.run_id).or_default().push(f);
        }
        for (run_id, rows) in by_run {
            let dag = &workflows[&run_id].dag;
            let mut releases: HashMap<String, i64> = HashMap::new();
            let mut failed_tasks: BTreeSet<&str> = BTreeSet::new();
            let (mut closed, mut failed, mut retrying) = (0i64, 0i64, false);
            for f in rows {
                match f.status {
                    TaskStatus::Success => {
                        closed += 1;
                        for child in dag.children(&f.name) {
                            *releases.entry(child.clone()).or_default() += 1;
                        }
                    }
                    TaskStatus::Failed => {
                        closed += 1;
                        failed += 1;
                        failed_tasks.insert(&f.name);
                    }
                    _ => retrying = true,
                }
            }
            let mut releases: Vec<(String, i64)> = releases.into_iter().collect();
            releases.sort();
            tx.release_children(run_id, &releases, now).await?;
            for task in failed_tasks {
                let skipped = tx
                    .skip_pending(
                        run_id,
                        &dag.descendants(task),
                        &format!("upstream task {task} failed"),
                        now,
                    )
                    .await?;
                // Skipped, not failed: `tasks_failed` counts failures only
                // (the run fails all the same: a skip follows a failure).
                closed += skipped;
            }
            if let Some(status) = tx.close_tasks(run_id, closed, failed, now).await? {
                completed.finalized.push((run_id, status));
            } else if !releases.is_empty() || retrying {
                completed.to_advance.push(run_id);
            }
        }
        if completed.applied > 0 {
            tx.notify_wake().await?;
        }
        tx.commit().await?;
        if completed.applied > 0 {
            self.poke();
        }
        Ok(completed)
    }
}
