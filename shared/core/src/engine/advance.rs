//! `advance`: claiming a run's ready tasks, building their inputs and
//! handing them to their executors.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::Utc;
use futures::{stream, StreamExt};
use uuid::Uuid;

use super::{Engine, Workflow, TRANSIENT_DB};
use crate::executor::{Callback, Completion, Dispatch, DispatchRequest, ExecutorError, Outcome};
use crate::limits;
use crate::model::{AttemptRef, Run, RunStatus};
use crate::retry::retry;
use crate::store::{ClaimedTask, Started};
use crate::Error;

#[derive(Debug, Clone, Default)]
pub struct Advanced {
    /// Attempts claimed and handed to executors.
    pub dispatched: usize,
    /// Set when this call's completions finalized the run.
    pub finalized: Option<RunStatus>,
    /// The attempts this call started, `(task, attempt)`: the ones `ork
    /// run` renews the leases of while it owns them.
    pub started: Vec<(Uuid, i64)>,
}

impl Engine {
    /// Claims the run's ready tasks, batch by batch, and hands them to their
    /// executors. Attempts that end at once (or fail to start) are completed
    /// here, which may make more tasks ready: the loop goes on until none is.
    pub async fn advance(&self, run_id: Uuid) -> Result<Advanced, Error> {
        let run = self.store.get_run(run_id).await?;
        let mut advanced = Advanced::default();
        if run.status.is_final() {
            return Ok(advanced);
        }
        let wf = self.workflow(&run.workflow, Some(run.version)).await?;
        loop {
            let claimed = retry(TRANSIENT_DB, Error::is_transient, || async move {
                let mut tx = self.store.begin().await?;
                let now = Utc::now();
                let lease_until = limits::after(now, self.config.lease);
                let claimed = tx
                    .claim(
                        run_id,
                        now,
                        lease_until,
                        self.config.claim_batch,
                        self.config.executors.as_deref(),
                    )
                    .await?;
                tx.commit().await?;
                Ok(claimed)
            })
            .await?;
            if claimed.is_empty() {
                break;
            }
            let full_batch = claimed.len() as i64 == self.config.claim_batch;
            advanced.dispatched += claimed.len();
            let (started, ended) = self.dispatch(&run, &wf, claimed).await?;
            advanced.started.extend(started);
            // New leases and deadlines.
            self.poke();
            if !ended.is_empty() {
                let done = self.complete(&ended).await?;
                if let Some((_, status)) = done.finalized.first() {
                    advanced.finalized = Some(*status);
                }
            }
            if !full_batch && ended.is_empty() {
                break;
            }
        }
        Ok(advanced)
    }

    /// Starts claimed attempts on their executors, at most
    /// `dispatch_concurrency` at once; marks the ones that started and
    /// returns the completions of the ones that already ended (or could not
    /// start: a dispatch error that is not transient is a permanent failure).
    /// Started attempts get a start lease of `heartbeat_timeout`: from here
    /// on, every attempt in flight has a deadline.
    async fn dispatch(
        &self,
        run: &Run,
        wf: &Workflow,
        claimed: Vec<ClaimedTask>,
    ) -> Result<(Vec<(Uuid, i64)>, Vec<Completion>), Error> {
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
                let valid = req
                    .timeout
                    .unwrap_or(Duration::from_secs(24 * 3600))
                    .saturating_add(cb.grace);
                req.callback = Some(Callback {
                    url: cb.url.clone(),
                    token: cb.signer.sign(&req.attempt, limits::after(now, valid)),
                });
            }
            req
        });
        let results: Vec<(
            AttemptRef,
            Option<Duration>,
            Result<Dispatch, ExecutorError>,
        )> = stream::iter(requests)
            .map(|req| async move {
                let result = match self.executors.get(req.spec.executor) {
                    Some(executor) => executor.dispatch(&req).await,
                    None => Err(ExecutorError::not_configured(
                        Error::NoExecutor(req.spec.executor.as_str().into()).to_string(),
                    )),
                };
                (req.attempt, req.timeout, result)
            })
            .buffer_unordered(self.config.dispatch_concurrency.max(1))
            .collect()
            .await;

        let mut started = Vec::new();
        let mut ended = Vec::new();
        let now = Utc::now();
        for (attempt, timeout, result) in results {
            match result {
                Ok(Dispatch::Started { execution_id }) => started.push(Started {
                    task_id: attempt.task_id,
                    attempt: attempt.attempt,
                    execution_id,
                    deadline: timeout.map(|t| limits::after(now, t)),
                }),
                Ok(Dispatch::Finished(outcome)) => ended.push(Completion { attempt, outcome }),
                Err(error) => {
                    tracing::warn!(task = %attempt.name, index = attempt.task_index, %error, "dispatch failed");
                    ended.push(Completion {
                        attempt,
                        outcome: Outcome::dispatch_failed(&error),
                    })
                }
            }
        }
        if !started.is_empty() {
            let started = &started;
            let lease_until = now + self.config.heartbeat_timeout;
            retry(TRANSIENT_DB, Error::is_transient, || async move {
                let mut tx = self.store.begin().await?;
                tx.mark_started(started, now, lease_until).await?;
                tx.commit().await
            })
            .await?;
        }
        let started = started.iter().map(|s| (s.task_id, s.attempt)).collect();
        Ok((started, ended))
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
}
