//! `trigger`: a new run of a workflow's latest version.

use chrono::Utc;
use uuid::Uuid;

use super::{Engine, TRANSIENT_DB};
use crate::limits;
use crate::model::{Run, RunStatus};
use crate::retry::retry;
use crate::spec::OnLimit;
use crate::store::NewTask;
use crate::Error;

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

impl Engine {
    /// Creates a run of the workflow's latest version with all its task
    /// instances, `pending`. Nothing is dispatched until [`Engine::advance`].
    #[tracing::instrument(level = "debug", skip(self, params, opts), fields(trigger = %opts.trigger))]
    pub async fn trigger(
        &self,
        workflow: &str,
        params: serde_json::Value,
        opts: TriggerOptions,
    ) -> Result<Triggered, Error> {
        if !params.is_object() {
            return Err(Error::Invalid("run params must be a JSON object".into()));
        }
        check_input(workflow, &params, opts.idempotency_key.as_deref())?;
        if let Some(key) = &opts.idempotency_key {
            if let Some(run) = self.store.run_by_idempotency_key(workflow, key).await? {
                return Ok(Triggered {
                    run,
                    created: false,
                });
            }
        }
        let wf = self.workflow(workflow, None).await?;
        let params = wf.spec.with_param_defaults(params);
        let instances = wf.spec.instances();
        let max = self.config.max_instances;
        if instances > u64::from(max) {
            return Err(Error::Invalid(format!(
                "workflow {workflow:?} has {instances} task instances, the maximum is {max} (ORK_MAX_INSTANCES)"
            )));
        }
        let tasks: Vec<NewTask> = wf
            .dag
            .topo_order()
            .iter()
            .map(|name| {
                let spec = &wf.spec.tasks[name];
                let deps: i64 = wf
                    .dag
                    .parents(name)
                    .iter()
                    .map(|p| i64::from(wf.spec.tasks[p].task_count))
                    .sum();
                // A `foreach` task has no instance until its parent succeeds
                // (`Tx::expand_foreach`); its children count it as one
                // parent instance until then.
                let task_count = if spec.foreach.is_some() {
                    0
                } else {
                    i64::from(spec.task_count)
                };
                let (limit_group, limit_key) = super::limits::task_keys(&wf.spec, name, &params);
                NewTask {
                    name: name.clone(),
                    task_count,
                    executor: spec.executor.as_str().to_owned(),
                    max_attempts: i64::from(spec.retries.count) + 1,
                    deps_remaining: deps,
                    limit_group,
                    limit_key,
                }
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
            tasks_total: instances as i64,
            tasks_open: instances as i64,
            tasks_failed: 0,
            error: None,
            created_at: now,
            finished_at: None,
            cost_usd: None,
        };
        let run_key = super::limits::run_key(&wf.spec, &run.params);
        // `on_limit: skip | cancel_oldest` decide here, under the lock the
        // claims take; `queue` (the default) waits at claim.
        let on_limit = wf.spec.concurrency.as_ref().map(|c| c.on_limit);
        let gate = super::limits::run_gate(&wf.spec, &run.params)
            .filter(|_| on_limit.is_some_and(|o| o != OnLimit::Queue));
        let (run_ref, tasks, run_key, gate) = (&run, &tasks, &run_key, &gate);
        let spec = &wf.spec;
        let (created, skipped, displaced) =
            retry(TRANSIENT_DB, Error::is_transient, || async move {
                let mut tx = self.store.begin().await?;
                let full = match gate {
                    Some(g) => tx.full_run_slots(g).await?,
                    None => Vec::new(),
                };
                let created = tx.create_run(run_ref, tasks).await?;
                let (mut skipped, mut displaced) = (None, None);
                if created {
                    if let Some(key) = run_key {
                        tx.set_run_key(run_ref.id, key).await?;
                    }
                    match (full.first(), on_limit) {
                        (Some(_), Some(OnLimit::Skip)) => {
                            tx.cancel_run(run_ref.id, now).await?;
                            skipped = Some(self.store_cost(&mut tx, spec, run_ref.id, now).await?);
                        }
                        (Some(oldest), Some(OnLimit::CancelOldest)) => {
                            let in_flight = tx.cancel_run(*oldest, now).await?;
                            if in_flight.is_some() {
                                self.store_cost_of(&mut tx, *oldest, now).await?;
                            }
                            displaced = in_flight.map(|t| (*oldest, t));
                        }
                        _ => {}
                    }
                    tx.notify_wake();
                }
                tx.commit().await?;
                Ok((created, skipped, displaced))
            })
            .await?;
        let mut run = run;
        if let Some(cost) = skipped {
            run.status = RunStatus::Cancelled;
            run.cost_usd = Some(cost);
            tracing::info!(run_id = %run.id, workflow = %run.workflow, "run skipped: concurrency limit reached (on_limit: skip)");
        }
        if let Some((oldest, in_flight)) = displaced {
            tracing::info!(run_id = %oldest, workflow = %run.workflow, "run cancelled: a new run displaced it (on_limit: cancel_oldest)");
            let old = self.store.get_run(oldest).await?;
            for task in in_flight {
                self.stop(&task, &task.attempt_ref(&old.workflow, old.version))
                    .await;
            }
        }
        if created {
            self.poke();
            self.store.refresh_statistics(instances);
            tracing::info!(run_id = %run.id, workflow = %run.workflow, version = run.version, trigger = %run.trigger, "run triggered");
            return Ok(Triggered { run, created });
        }
        // Lost a race with another trigger of the same idempotency key.
        let key = opts.idempotency_key.as_deref().unwrap_or_default();
        let run = self
            .store
            .run_by_idempotency_key(workflow, key)
            .await?
            .ok_or_else(|| {
                Error::Internal(format!(
                    "idempotency key {key:?} conflicted but no run has it"
                ))
            })?;
        Ok(Triggered {
            run,
            created: false,
        })
    }
}

/// What the database must be able to store and read back, checked before
/// anything is: no NUL in any text, JSON numbers it round-trips, bounded
/// sizes (`crate::limits`). Errors name the field.
fn check_input(workflow: &str, params: &serde_json::Value, key: Option<&str>) -> Result<(), Error> {
    limits::check_text(workflow, "workflow").map_err(Error::Invalid)?;
    if let Some(key) = key {
        if key.len() > limits::MAX_IDEMPOTENCY_KEY_BYTES {
            return Err(Error::Invalid(format!(
                "idempotency_key: {} bytes, the maximum is {}",
                key.len(),
                limits::MAX_IDEMPOTENCY_KEY_BYTES
            )));
        }
        limits::check_text(key, "idempotency_key").map_err(Error::Invalid)?;
    }
    let size = params.to_string().len();
    if size > limits::MAX_PARAMS_BYTES {
        return Err(Error::Invalid(format!(
            "params: {size} bytes as JSON, the maximum is {}",
            limits::MAX_PARAMS_BYTES
        )));
    }
    limits::check_json(params, "params").map_err(Error::Invalid)
}
