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
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::Utc;
use uuid::Uuid;

use super::{Engine, Workflow, TRANSIENT_DB};
use crate::executor::{Completion, Outcome};
use crate::model::{RunStatus, TaskStatus};
use crate::retry::retry;
use crate::store::reads::TaskOutput;
use crate::store::{AttemptResult, Finish, Finished, NewTask};
use crate::Error;

/// The items of the `foreach` children of a success, by attempt.
/// With each child, its instances' rendered `concurrency.key`.
pub(super) type Expansions =
    HashMap<(Uuid, i64), Vec<(String, Vec<serde_json::Value>, Option<String>)>>;

/// The array at `path` in a parent's output, or why it is not one.
fn foreach_items(
    output: &serde_json::Value,
    parent: &str,
    path: &[&str],
    max: usize,
) -> Result<Vec<serde_json::Value>, String> {
    let mut v = output;
    let shown = std::iter::once(parent)
        .chain(path.iter().copied())
        .collect::<Vec<_>>()
        .join(".");
    for key in path {
        v = match v {
            serde_json::Value::Object(m) => m.get(*key).unwrap_or(&serde_json::Value::Null),
            serde_json::Value::Array(a) => key
                .parse::<usize>()
                .ok()
                .and_then(|i| a.get(i))
                .unwrap_or(&serde_json::Value::Null),
            _ => &serde_json::Value::Null,
        };
    }
    let found = match v {
        serde_json::Value::Array(items) if items.len() > max => {
            return Err(format!(
                "{shown} has {} items, over the limit of {max} (ORK_MAX_FOREACH_ITEMS)",
                items.len()
            ))
        }
        serde_json::Value::Array(items) => return Ok(items.clone()),
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Object(_) => "an object",
    };
    Err(format!("{shown} is {found}, not an array"))
}

/// What one [`Engine::complete`] changed.
#[derive(Debug, Clone, Default)]
pub struct Completed {
    /// The attempts whose completions applied, `(task, attempt)`; the
    /// others were for attempts no longer in flight.
    pub recorded: Vec<(Uuid, i64)>,
    /// Runs this call finalized, with their final status.
    pub finalized: Vec<(Uuid, RunStatus)>,
    /// Runs in which tasks may now be ready: advance them next.
    pub to_advance: Vec<Uuid>,
    /// The instances [`Engine::report_all`] claimed in its transaction,
    /// by run: hand each to [`Engine::dispatch_released`].
    pub released: Vec<Released>,
    /// The tasks of each run in `to_advance` that the completions may have
    /// made ready: the children they released, the tasks they retry.
    pub(super) maybe_ready: HashMap<Uuid, Vec<String>>,
    /// Per run, the outputs this transaction recorded for the successes of
    /// single-instance tasks with children (when it claims): what the
    /// instances it releases read as inputs, unless they have other parents.
    pub(super) outputs: HashMap<Uuid, Vec<TaskOutput>>,
}

/// A run's instances claimed by the transaction that released them (see
/// [`Engine::report_all`]), not yet handed to their executors.
#[derive(Debug, Clone)]
pub struct Released {
    pub run_id: Uuid,
    /// The run as the releasing transaction left it (its row comes back
    /// from the update that counts the closed instances): the dispatch
    /// needs no read of it.
    pub(super) run: Option<crate::model::Run>,
    pub(super) tasks: Vec<crate::store::ClaimedTask>,
    /// The claim took a whole batch: more may be ready.
    pub(super) full: bool,
    /// Outputs of parents that succeeded in the releasing transaction
    /// ([`Completed::outputs`]): an instance whose parents are all here
    /// needs no read of them.
    pub(super) outputs: Vec<TaskOutput>,
}

/// [`Completed::outputs`]: of the attempts `finished` (applied), the
/// successes of single-instance tasks with children, with the output
/// `results` wrote for each.
fn recorded_outputs(
    results: &[AttemptResult],
    finished: &[Finished],
    workflows: &HashMap<Uuid, Arc<Workflow>>,
) -> HashMap<Uuid, Vec<TaskOutput>> {
    let written: HashMap<(Uuid, i64), &AttemptResult> = results
        .iter()
        .map(|r| ((r.task_id, r.attempt), r))
        .collect();
    let mut outputs: HashMap<Uuid, Vec<TaskOutput>> = HashMap::new();
    for f in finished.iter().filter(|f| f.status == TaskStatus::Success) {
        let wf = &workflows[&f.run_id];
        let single = wf
            .spec
            .tasks
            .get(&f.name)
            .is_some_and(|t| t.single_instance());
        let Some(r) = written.get(&(f.id, f.attempt)) else {
            continue;
        };
        if !single || wf.dag.children(&f.name).is_empty() {
            continue;
        }
        outputs.entry(f.run_id).or_default().push(TaskOutput {
            name: f.name.clone(),
            task_index: 0,
            output: r.output.clone(),
            output_ref: r.output_ref.clone(),
        });
    }
    outputs
}

impl Completed {
    /// How many completions applied.
    pub fn applied(&self) -> usize {
        self.recorded.len()
    }
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
        self.complete_and_claim(completions, false).await
    }

    /// [`Engine::complete`], and with `claim`, the claim of the instances
    /// it made ready in the same transaction ([`Completed::released`]).
    pub(super) async fn complete_and_claim(
        &self,
        completions: &[Completion],
        claim: bool,
    ) -> Result<Completed, Error> {
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
        let mut completions = completions.to_vec();
        let expansions = self.prepare_all(&mut completions, &workflows).await;
        let (workflows, expansions) = (&workflows, &expansions);
        let completions = &completions;
        let done = retry(TRANSIENT_DB, Error::is_transient, || async move {
            let mut tx = self.store.begin().await?;
            let done = self
                .record(
                    &mut tx,
                    completions,
                    Finish::InFlight,
                    workflows,
                    expansions,
                    claim,
                )
                .await?;
            tx.commit().await?;
            Ok(done)
        })
        .await?;
        Ok(self.after_complete(completions, workflows, done).await)
    }

    /// [`Engine::prepare`] for each completion: the `foreach` expansions
    /// their successes make.
    pub(super) async fn prepare_all(
        &self,
        completions: &mut [Completion],
        workflows: &HashMap<Uuid, Arc<Workflow>>,
    ) -> Expansions {
        let mut expansions: Expansions = HashMap::new();
        for c in completions {
            let wf = &workflows[&c.attempt.run_id];
            self.prepare(c, wf, &mut expansions).await;
        }
        expansions
    }

    /// After the transaction: input documents removed, metrics, the next
    /// runs of backfills a finished run made room for.
    pub(super) async fn after_complete(
        &self,
        completions: &[Completion],
        workflows: &HashMap<Uuid, Arc<Workflow>>,
        mut done: Completed,
    ) -> Completed {
        if done.applied() > 0 {
            self.poke();
        }
        // The attempts are over: their input documents are not read again.
        let ended: Vec<(&crate::model::AttemptRef, bool)> = completions
            .iter()
            .map(|c| {
                let kind = workflows[&c.attempt.run_id]
                    .spec
                    .tasks
                    .get(&c.attempt.name)
                    .map(|t| t.executor);
                (&c.attempt, kind.is_some_and(|k| !k.is_local()))
            })
            .collect();
        self.config.payloads.forget_inputs(&ended).await;
        for (run_id, _) in &done.finalized {
            self.config.payloads.forget_run_inputs(*run_id).await;
        }
        metrics::counter!("ork_tasks_completed_total").increment(done.applied() as u64);
        for (run_id, status) in &done.finalized {
            tracing::info!(%run_id, %status, "run finished");
            metrics::counter!("ork_runs_finished_total", "status" => status.to_string())
                .increment(1);
        }
        // A finished run may free a backfill's slot: start its next runs.
        if !done.finalized.is_empty() {
            match self.continue_backfills().await {
                Ok(p) => done
                    .to_advance
                    .extend(p.into_iter().flat_map(|p| p.started)),
                Err(e) => tracing::error!(error = %e, "backfill: cannot continue"),
            }
        }
        done
    }

    /// Before the transaction: moves a large output into the payload store,
    /// and reads the items of the `foreach` children of a success. An
    /// output that is not an array at a child's path, or has more items
    /// than `max_foreach_items`, fails the attempt (for good) instead.
    async fn prepare(&self, c: &mut Completion, wf: &Workflow, expansions: &mut Expansions) {
        let a = &c.attempt;
        if let Some(r) = c.outcome.output_ref.take() {
            let name = format!("{}.{}.{}.json", a.name, a.task_index, a.attempt);
            match self.config.payloads.adopt(&r, a.run_id, &name).await {
                Ok(r) => c.outcome.output_ref = Some(r),
                Err(e) => {
                    c.outcome = Outcome::failure(
                        c.outcome.exit_code,
                        format!("cannot store the output: {e}"),
                    );
                    return;
                }
            }
        }
        if !c.outcome.success {
            return;
        }
        let children: Vec<(&String, Vec<&str>)> = wf
            .dag
            .children(&a.name)
            .iter()
            .filter_map(|child| {
                let (parent, path) = wf.spec.tasks.get(child)?.foreach_source()?;
                (parent == a.name).then_some((child, path))
            })
            .collect();
        if children.is_empty() {
            return;
        }
        let output = match (&c.outcome.output_ref, &c.outcome.output) {
            (Some(r), _) => match self.config.payloads.read_value(r).await {
                Ok(v) => v,
                Err(e) => {
                    c.outcome = Outcome::failure(c.outcome.exit_code, e);
                    return;
                }
            },
            (None, Some(v)) => v.clone(),
            (None, None) => serde_json::Value::Null,
        };
        let mut found = Vec::new();
        let mut params = None;
        for (child, path) in children {
            let key = match &wf.spec.tasks[child].concurrency {
                Some(_) => {
                    if params.is_none() {
                        params = match self.store.get_run(a.run_id).await {
                            Ok(run) => Some(run.params),
                            Err(e) => {
                                c.outcome = Outcome::failure(c.outcome.exit_code, e.to_string());
                                return;
                            }
                        };
                    }
                    let params = params.as_ref().expect("read above");
                    super::limits::task_keys(&wf.spec, child, params).1
                }
                None => None,
            };
            match foreach_items(&output, &a.name, &path, self.config.max_foreach_items) {
                Ok(items) => found.push((child.clone(), items, key)),
                Err(e) => {
                    c.outcome = Outcome {
                        permanent: true,
                        ..Outcome::failure(
                            c.outcome.exit_code,
                            format!("foreach of task {child:?}: {e}"),
                        )
                    };
                    return;
                }
            }
        }
        expansions.insert((a.task_id, a.attempt), found);
    }

    /// [`Engine::complete`]'s work inside a transaction (the caller's:
    /// `advance` records the attempts of immediate executors in their
    /// claim's, `from` [`Finish::Locked`] rows). With `claim`, the
    /// instances it made ready are claimed in it too
    /// ([`Engine::claim_released`]).
    ///
    /// Each run's row (its open-task count) is written last, just before
    /// the commit: every transaction that records an end of the run
    /// updates that row, so its lock is held for the commit only, and
    /// concurrent batches of one run overlap all their other statements.
    pub(super) async fn record(
        &self,
        tx: &mut crate::store::Tx,
        completions: &[Completion],
        from: Finish,
        workflows: &HashMap<Uuid, Arc<Workflow>>,
        expansions: &Expansions,
        claim: bool,
    ) -> Result<Completed, Error> {
        let now = Utc::now();
        let results: Vec<AttemptResult> = completions
            .iter()
            .filter_map(|c| {
                let a = &c.attempt;
                let task = workflows[&a.run_id].spec.tasks.get(&a.name)?;
                // Whether retries are left is the row's `max_attempts`
                // (see `FINISH_ATTEMPTS_HEAD`): an `ork retry` grants more.
                let retry = !c.outcome.success
                    && !c.outcome.permanent
                    && !c
                        .outcome
                        .exit_code
                        .is_some_and(|code| task.non_retryable_exit_codes.contains(&code));
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
                    output_ref: c
                        .outcome
                        .output_ref
                        .as_ref()
                        .and_then(|r| serde_json::to_value(r).ok()),
                    not_before,
                })
            })
            .collect();
        let finished = tx.finish_attempts(&results, from, now).await?;
        let mut completed = Completed {
            recorded: finished.iter().map(|f| (f.id, f.attempt)).collect(),
            ..Completed::default()
        };
        if claim {
            completed.outputs = recorded_outputs(&results, &finished, workflows);
        }
        // By run id: concurrent transactions lock the runs' rows in one order.
        let mut by_run: BTreeMap<Uuid, Vec<_>> = BTreeMap::new();
        for f in &finished {
            by_run.entry(f.run_id).or_default().push(f);
        }
        // (run, instances closed, of them failed), written at the end.
        let mut closes: Vec<(Uuid, i64, i64)> = Vec::with_capacity(by_run.len());
        for (run_id, rows) in by_run {
            let wf = &workflows[&run_id];
            let dag = &wf.dag;
            let mut releases: HashMap<String, i64> = HashMap::new();
            // `foreach` children of the successes: their instances, created
            // in the transaction that records the parent's success (which
            // applies once), after the release (ready if it readied their
            // group). Their own children counted the task as one parent
            // instance: they wait for `n` now (none: released).
            let mut expanded: Vec<(NewTask, &[serde_json::Value])> = Vec::new();
            for f in rows.iter().filter(|f| f.status == TaskStatus::Success) {
                for (child, items, key) in expansions.get(&(f.id, f.attempt)).into_iter().flatten()
                {
                    let spec = &wf.spec.tasks[child];
                    let task = NewTask {
                        name: child.clone(),
                        task_count: items.len() as i64,
                        executor: spec.executor.as_str().to_owned(),
                        max_attempts: i64::from(spec.retries.count) + 1,
                        deps_remaining: 1,
                        limit_group: super::limits::task_keys(
                            &wf.spec,
                            child,
                            &serde_json::Value::Null,
                        )
                        .0,
                        limit_key: key.clone(),
                    };
                    expanded.push((task, items));
                    for grandchild in dag.children(child) {
                        *releases.entry(grandchild.clone()).or_default() += 1 - items.len() as i64;
                    }
                }
            }
            let mut failed_tasks: BTreeSet<&str> = BTreeSet::new();
            let (mut closed, mut failed, mut retrying) = (0i64, 0i64, false);
            for f in &rows {
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
            let releases: Vec<(String, i64)> = releases.into_iter().collect();
            let at_zero = tx.release_children(run_id, &releases, now).await?;
            for (mut task, items) in expanded {
                if at_zero.contains(&task.name) {
                    task.deps_remaining = 0;
                }
                tx.expand_foreach(run_id, &task, items, now).await?;
            }
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
            closes.push((run_id, closed, failed));
            if !releases.is_empty() || retrying {
                completed.to_advance.push(run_id);
                let retried = rows.iter().filter(|f| f.status == TaskStatus::Pending);
                let names = (releases.into_iter().map(|(name, _)| name))
                    .chain(retried.map(|f| f.name.clone()))
                    .collect();
                completed.maybe_ready.insert(run_id, names);
            }
        }
        if claim {
            self.claim_released(tx, &mut completed, workflows).await?;
        }
        for (run_id, closed, failed) in closes {
            let Some(run) = tx.close_tasks(run_id, closed, failed, now).await? else {
                continue;
            };
            if run.status.is_final() {
                self.store_cost(tx, &workflows[&run_id].spec, run_id, now)
                    .await?;
                completed.finalized.push((run_id, run.status));
                // Nothing of it is left to claim: a released child or a
                // retry would have kept it open.
                completed.to_advance.retain(|r| *r != run_id);
                completed.maybe_ready.remove(&run_id);
            } else if let Some(released) =
                completed.released.iter_mut().find(|r| r.run_id == run_id)
            {
                released.run = Some(run);
            }
        }
        self.free_slots(tx, &finished, workflows, &mut completed)
            .await?;
        if completed.applied() > 0 {
            tx.notify_wake();
        }
        Ok(completed)
    }

    /// A queued task starts when a slot frees, not at the next sweep: the
    /// runs waiting on a limit that a finished attempt was under, and the
    /// oldest runs queued behind a finalized run's `max_runs`, are advanced
    /// next (docs/concurrency.md).
    async fn free_slots(
        &self,
        tx: &mut crate::store::Tx,
        finished: &[Finished],
        workflows: &HashMap<Uuid, Arc<Workflow>>,
        completed: &mut Completed,
    ) -> Result<(), Error> {
        let limited = |run: &Uuid| workflows.get(run).is_some_and(|w| w.limited);
        let freed: Vec<Uuid> = finished
            .iter()
            .filter(|f| limited(&f.run_id))
            .map(|f| f.id)
            .collect();
        let mut runs = tx.waiting_runs(&freed).await?;
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        for (run_id, _) in &completed.finalized {
            let wf = &workflows[run_id];
            let Some(c) = &wf.spec.concurrency else {
                continue;
            };
            if let Some(limit) = c.limit.filter(|_| c.key.is_some()) {
                runs.extend(tx.queued_runs_keyed(*run_id, i64::from(limit)).await?);
            }
            if let Some(max) = c.max_runs {
                if seen.insert(wf.spec.name.as_str()) {
                    runs.extend(tx.queued_runs(&wf.spec.name, i64::from(max)).await?);
                }
            }
        }
        for run in runs {
            let open = !completed.finalized.iter().any(|(r, _)| *r == run);
            if open && !completed.to_advance.contains(&run) {
                completed.to_advance.push(run);
            }
        }
        Ok(())
    }
}
