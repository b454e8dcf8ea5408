//! The engine: `trigger`, `advance`, `complete` and `cancel`, the four
//! operations the handlers are made of. Plain library calls: no HTTP, no
//! Lambda, no process lives on between them. Each loads what it needs from
//! the store, changes state in one transaction, and returns.

/// Tries a transaction again when the database reports a transient failure.
/// Defined before the submodules so that they can use it too.
macro_rules! retry_transient {
    ($body:expr) => {{
        let mut tries = 0;
        loop {
            match $body {
                Err(e) if e.is_transient() && tries < 5 => {
                    tries += 1;
                    tracing::debug!(error = %e, tries, "transient database error, retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(5 << tries)).await;
                }
                other => break other,
            }
        }
    }};
}

mod drive;
mod report;
mod schedule;
mod sweep;

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::{stream, StreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use drive::drive;
pub use report::Reported;
pub use sweep::Swept;

use crate::dag::Dag;
use crate::executor::Callback;
use crate::executor::{Completion, Dispatch, DispatchRequest, Executors, Outcome};
use crate::model::{AttemptRef, Run, RunStatus, TaskStatus};
use crate::spec::WorkflowSpec;
use crate::store::{AttemptResult, ClaimedTask, NewTask, Started, Store};
use crate::token::Signer;
use crate::Error;

/// Tuning knobs; the defaults suit both backends.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most task instances claimed by one statement.
    pub claim_batch: i64,
    /// How long a claim stays this caller's before the sweeper may take it back.
    pub lease: Duration,
    /// Most dispatches in flight at once (`buffer_unordered`).
    pub dispatch_concurrency: usize,
    /// How long after its last heartbeat a running attempt is given up.
    pub heartbeat_timeout: Duration,
    /// Set in serverless mode: workers report to this URL with signed tokens.
    pub callback: Option<CallbackConfig>,
}

/// Where workers report, and the key their tokens are signed with.
#[derive(Debug, Clone)]
pub struct CallbackConfig {
    /// The `on-task-complete` endpoint.
    pub url: String,
    pub signer: Signer,
    /// How long a token stays valid beyond the task's timeout.
    pub grace: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            claim_batch: 256,
            lease: Duration::from_secs(60),
            dispatch_concurrency: 32,
            heartbeat_timeout: Duration::from_secs(300),
            callback: None,
        }
    }
}

/// A workflow version with its graph, as the engine uses it.
#[derive(Debug)]
pub struct Workflow {
    pub version: i64,
    pub spec: WorkflowSpec,
    pub dag: Dag,
}

#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub name: String,
    pub version: i64,
    /// `false` when the spec was identical to the latest version.
    pub created: bool,
}

#[derive(Debug, Clone, Default)]
pub struct TriggerOptions {
    /// What started the run: `manual`, `http`, `schedule`…
    pub trigger: String,
    /// A second trigger with the same key returns the first run.
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Triggered {
    pub run: Run,
    /// `false` when the idempotency key named an existing run.
    pub created: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Advanced {
    /// Attempts claimed and handed to executors.
    pub dispatched: usize,
    /// Set when this call's completions finalized the run.
    pub finalized: Option<RunStatus>,
}

#[derive(Debug, Clone, Default)]
pub struct Completed {
    /// Completions that applied; the others were for attempts no longer in flight.
    pub applied: usize,
    /// Runs this call finalized, with their final status.
    pub finalized: Vec<(Uuid, RunStatus)>,
    /// Runs in which tasks may now be ready: advance them next.
    pub to_advance: Vec<Uuid>,
}

pub struct Engine {
    store: Store,
    executors: Executors,
    config: EngineConfig,
    /// Parsed workflow versions. Versions never change once stored, so
    /// caching them is always safe.
    workflows: Mutex<HashMap<(String, i64), Arc<Workflow>>>,
}

impl Engine {
    pub fn new(store: Store, executors: Executors, config: EngineConfig) -> Self {
        Engine {
            store,
            executors,
            config,
            workflows: Mutex::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Validates a spec and stores it as the workflow's next version, unless
    /// it is identical to the latest one. An invalid spec stores nothing.
    pub async fn apply(
        &self,
        spec: &WorkflowSpec,
        source: Option<String>,
    ) -> Result<Applied, Error> {
        spec.validate()?;
        let json = serde_json::to_value(spec).expect("a spec serializes");
        let hash = hex::encode(Sha256::digest(json.to_string().as_bytes()));
        let mut tx = self.store.begin().await?;
        let (version, created) = tx
            .save_workflow(&spec.name, json, &hash, source, Utc::now())
            .await?;
        tx.commit().await?;
        Ok(Applied {
            name: spec.name.clone(),
            version,
            created,
        })
    }

    /// A workflow version, from the cache or the store (`None`: the latest).
    pub async fn workflow(&self, name: &str, version: Option<i64>) -> Result<Arc<Workflow>, Error> {
        if let Some(v) = version {
            if let Some(wf) = self
                .workflows
                .lock()
                .expect("poisoned")
                .get(&(name.to_owned(), v))
            {
                return Ok(wf.clone());
            }
        }
        let (version, json) = self.store.workflow_spec(name, version).await?;
        let spec: WorkflowSpec = serde_json::from_value(json).map_err(|e| {
            Error::Invalid(format!(
                "stored spec of {name} v{version} is unreadable: {e}"
            ))
        })?;
        let dag = Dag::new(&spec).map_err(|cycle| {
            Error::Invalid(format!("stored spec of {name} has a cycle: {cycle:?}"))
        })?;
        let wf = Arc::new(Workflow { version, spec, dag });
        self.workflows
            .lock()
            .expect("poisoned")
            .insert((name.to_owned(), version), wf.clone());
        Ok(wf)
    }

    /// Creates a run of the workflow's latest version with all its task
    /// instances, `pending`. Nothing is dispatched until [`Engine::advance`].
    pub async fn trigger(
        &self,
        workflow: &str,
        params: serde_json::Value,
        opts: TriggerOptions,
    ) -> Result<Triggered, Error> {
        if !params.is_object() {
            return Err(Error::Invalid("run params must be a JSON object".into()));
        }
        if let Some(key) = &opts.idempotency_key {
            if let Some(run) = self.store.run_by_idempotency_key(workflow, key).await? {
                return Ok(Triggered {
                    run,
                    created: false,
                });
            }
        }
        let wf = self.workflow(workflow, None).await?;
        let tasks: Vec<NewTask> = wf
            .dag
            .topo_order()
            .iter()
            .flat_map(|name| {
                let spec = &wf.spec.tasks[name];
                let deps: i64 = wf
                    .dag
                    .parents(name)
                    .iter()
                    .map(|p| i64::from(wf.spec.tasks[p].task_count))
                    .sum();
                (0..spec.task_count).map(move |i| NewTask {
                    name: name.clone(),
                    task_index: i64::from(i),
                    task_count: i64::from(spec.task_count),
                    executor: spec.executor.as_str().to_owned(),
                    max_attempts: i64::from(spec.retries.count) + 1,
                    deps_remaining: deps,
                })
            })
            .collect();
        let now = Utc::now();
        let run = Run {
            id: Uuid::now_v7(),
            workflow: workflow.to_owned(),
            version: wf.version,
            status: RunStatus::Pending,
            params,
            trigger: if opts.trigger.is_empty() {
                "manual".into()
            } else {
                opts.trigger
            },
            idempotency_key: opts.idempotency_key.clone(),
            tasks_total: tasks.len() as i64,
            tasks_open: tasks.len() as i64,
            tasks_failed: 0,
            error: None,
            created_at: now,
            finished_at: None,
        };
        let created = retry_transient!(
            async {
                let mut tx = self.store.begin().await?;
                let created = tx.create_run(&run, &tasks).await?;
                tx.commit().await?;
                Ok::<_, Error>(created)
            }
            .await
        )?;
        if created {
            return Ok(Triggered { run, created });
        }
        // Lost a race with another trigger of the same idempotency key.
        let key = opts.idempotency_key.as_deref().unwrap_or_default();
        let run = self
            .store
            .run_by_idempotency_key(workflow, key)
            .await?
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "idempotency key {key:?} conflicted but no run has it"
                ))
            })?;
        Ok(Triggered {
            run,
            created: false,
        })
    }

    /// Claims the run's ready tasks, batch by batch, and hands them to their
    /// executors. Attempts that end at once (or fail to start) are completed
    /// here, which may make more tasks ready: the loop goes on until none is.
    pub async fn advance(&self, run_id: Uuid) -> Result<Advanced, Error> {
        let run = self.store.get_run(run_id).await?;
        let mut report = Advanced::default();
        if run.status.is_final() {
            return Ok(report);
        }
        let wf = self.workflow(&run.workflow, Some(run.version)).await?;
        loop {
            let claimed = retry_transient!(
                async {
                    let mut tx = self.store.begin().await?;
                    let now = Utc::now();
                    let lease_until = now + self.config.lease;
                    let claimed = tx
                        .claim(run_id, now, lease_until, self.config.claim_batch)
                        .await?;
                    tx.commit().await?;
                    Ok::<_, Error>(claimed)
                }
                .await
            )?;
            if claimed.is_empty() {
                break;
            }
            let full_batch = claimed.len() as i64 == self.config.claim_batch;
            report.dispatched += claimed.len();
            let finished = self.dispatch(&run, &wf, claimed).await?;
            if !finished.is_empty() {
                let done = self.complete(&finished).await?;
                if let Some((_, status)) = done.finalized.first() {
                    report.finalized = Some(*status);
                }
            }
            if !full_batch && finished.is_empty() {
                break;
            }
        }
        Ok(report)
    }

    /// Starts claimed attempts on their executors, at most
    /// `dispatch_concurrency` at once; records the ones that started and
    /// returns the completions of the ones that already ended.
    async fn dispatch(
        &self,
        run: &Run,
        wf: &Workflow,
        claimed: Vec<ClaimedTask>,
    ) -> Result<Vec<Completion>, Error> {
        let inputs = self.inputs(run, wf, &claimed).await?;
        let now = Utc::now();
        let requests = claimed.into_iter().map(|t| {
            let spec = wf.spec.tasks[&t.name].clone();
            let mut req = DispatchRequest {
                input: inputs.get(&t.name).cloned().unwrap_or_default(),
                attempt: AttemptRef {
                    run_id: run.id,
                    workflow: run.workflow.clone(),
                    version: run.version,
                    task_id: t.id,
                    name: t.name,
                    task_index: t.task_index,
                    attempt: t.attempt,
                },
                task_count: t.task_count,
                timeout: spec.timeout,
                base_dir: wf.spec.base_dir.clone(),
                callback: None,
                spec,
            };
            if let Some(cb) = &self.config.callback {
                let valid = req.timeout.unwrap_or(Duration::from_secs(24 * 3600)) + cb.grace;
                req.callback = Some(Callback {
                    url: cb.url.clone(),
                    token: cb.signer.sign(&req.attempt, now + valid),
                });
            }
            req
        });
        let results: Vec<(AttemptRef, Option<Duration>, Result<Dispatch, String>)> =
            stream::iter(requests)
                .map(|req| async move {
                    let result = match self.executors.get(req.spec.executor) {
                        Some(executor) => executor.dispatch(&req).await,
                        None => {
                            Err(Error::NoExecutor(req.spec.executor.as_str().into()).to_string())
                        }
                    };
                    (req.attempt, req.timeout, result)
                })
                .buffer_unordered(self.config.dispatch_concurrency.max(1))
                .collect()
                .await;

        let mut started = Vec::new();
        let mut finished = Vec::new();
        let now = Utc::now();
        for (attempt, timeout, result) in results {
            match result {
                Ok(Dispatch::Started { execution_id }) => started.push(Started {
                    task_id: attempt.task_id,
                    attempt: attempt.attempt,
                    execution_id,
                    deadline: timeout.map(|t| now + t),
                }),
                Ok(Dispatch::Finished(outcome)) => finished.push(Completion { attempt, outcome }),
                Err(error) => finished.push(Completion {
                    attempt,
                    outcome: Outcome::failure(None, format!("dispatch failed: {error}")),
                }),
            }
        }
        if !started.is_empty() {
            retry_transient!(
                async {
                    let mut tx = self.store.begin().await?;
                    tx.mark_started(&started, now).await?;
                    tx.commit().await
                }
                .await
            )?;
        }
        Ok(finished)
    }

    /// Each claimed task's input: the run's params and its parents' outputs
    /// (one output per parent, or a list by index for a fanned-out parent;
    /// `null` where a parent left none). One query per batch, which returns
    /// only the outputs that exist.
    async fn inputs(
        &self,
        run: &Run,
        wf: &Workflow,
        claimed: &[ClaimedTask],
    ) -> Result<HashMap<String, serde_json::Value>, Error> {
        let names: BTreeSet<&str> = claimed.iter().map(|t| t.name.as_str()).collect();
        let parents: BTreeSet<&str> = names
            .iter()
            .flat_map(|n| wf.dag.parents(n).iter().map(String::as_str))
            .collect();
        let mut upstream: HashMap<&str, serde_json::Value> = parents
            .iter()
            .map(|p| {
                let count = wf.spec.tasks[*p].task_count;
                let empty = if count == 1 {
                    serde_json::Value::Null
                } else {
                    serde_json::Value::Array(vec![serde_json::Value::Null; count as usize])
                };
                (*p, empty)
            })
            .collect();
        let parents: Vec<&str> = parents.into_iter().collect();
        for o in self.store.task_outputs(run.id, &parents).await? {
            match upstream.get_mut(o.name.as_str()) {
                Some(serde_json::Value::Array(slots)) => {
                    if let Some(slot) = slots.get_mut(o.task_index as usize) {
                        *slot = o.output;
                    }
                }
                Some(single) => *single = o.output,
                None => {}
            }
        }
        Ok(names
            .into_iter()
            .map(|name| {
                let mine: serde_json::Map<String, serde_json::Value> = wf
                    .dag
                    .parents(name)
                    .iter()
                    .map(|p| (p.clone(), upstream[p.as_str()].clone()))
                    .collect();
                let input = serde_json::json!({ "params": run.params, "upstream": mine });
                (name.to_owned(), input)
            })
            .collect())
    }

    /// Records how attempts ended, all in one transaction: the attempts
    /// themselves (or their retries), the children they release, the
    /// descendants a final failure skips, and the run's finalization.
    /// Completions of attempts no longer in flight (replays, superseded
    /// attempts, cancelled runs) change nothing.
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
        retry_transient!(self.complete_once(completions, &workflows).await)
    }

    async fn complete_once(
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
                let retry = !c.outcome.success && a.attempt <= i64::from(task.retries.count);
                let (status, not_before) = match (c.outcome.success, retry) {
                    (true, _) => (TaskStatus::Success, None),
                    (false, true) => {
                        let delay = task.retries.delay_after(a.attempt as u32);
                        (TaskStatus::Pending, Some(now + delay))
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
        let mut report = Completed {
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
                closed += skipped;
                failed += skipped;
            }
            if let Some(status) = tx.close_tasks(run_id, closed, failed, now).await? {
                report.finalized.push((run_id, status));
            } else if !releases.is_empty() || retrying {
                report.to_advance.push(run_id);
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Cancels a run that is not final and asks the executors to stop its
    /// attempts in flight. Returns `false` if the run was already final.
    pub async fn cancel(&self, run_id: Uuid) -> Result<bool, Error> {
        let run = self.store.get_run(run_id).await?;
        let mut tx = self.store.begin().await?;
        let Some(in_flight) = tx.cancel_run(run_id, Utc::now()).await? else {
            return Ok(false);
        };
        tx.commit().await?;
        for task in in_flight {
            self.stop(&task, &task.attempt_ref(&run.workflow, run.version))
                .await;
        }
        Ok(true)
    }
}
