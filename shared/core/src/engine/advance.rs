//! `advance`: claiming a run's ready tasks, building their inputs and
//! handing them to their executors.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use chrono::Utc;
use futures::{stream, FutureExt, StreamExt};
use uuid::Uuid;

use super::{priority, Engine, Workflow, TRANSIENT_DB};
use crate::executor::{Callback, Completion, Dispatch, DispatchRequest, ExecutorError, Outcome};
use crate::limits;
use crate::model::{AttemptRef, Run, RunStatus};
use crate::payload::{self, PayloadRef, Piece};
use crate::retry::retry;
use crate::store::reads::TaskOutput;
use crate::store::{Claim, ClaimedTask, Finish, Started};
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

/// What one claim step of [`Engine::advance`] did.
pub(super) struct Step {
    claimed: usize,
    /// The claim took a whole batch: more may be ready.
    pub(super) full: bool,
    /// Attempts ended here (immediate, or failed to start): their
    /// children may be ready.
    pub(super) ended_any: bool,
    pub(super) finalized: Option<RunStatus>,
    pub(super) started: Vec<(Uuid, i64)>,
}

impl Engine {
    /// Claims the run's ready tasks, batch by batch, and hands them to their
    /// executors. Attempts that end at once (or fail to start) are completed
    /// here, which may make more tasks ready: the loop goes on until none is.
    ///
    /// On PostgreSQL, while claims come back full, up to `claim_lanes`
    /// batches are in flight at once: the server then works on one while
    /// another commits (`SKIP LOCKED` keeps their claims apart). SQLite
    /// has one writer, so one lane.
    pub async fn advance(&self, run_id: Uuid) -> Result<Advanced, Error> {
        let run = self.store.get_run(run_id).await?;
        if run.status.is_final() {
            return Ok(Advanced::default());
        }
        self.advance_run(&run).await
    }

    /// [`Engine::advance`] of a run the caller has read and knows to be
    /// open (`ork run`'s loop, after a completion that did not end it):
    /// one read fewer per layer of a chain. A run cancelled meanwhile has
    /// no pending task left to claim, so a stale `run` claims nothing.
    #[tracing::instrument(level = "debug", skip_all, fields(run_id = %run.id))]
    pub async fn advance_run(&self, run: &Run) -> Result<Advanced, Error> {
        let mut advanced = Advanced::default();
        let wf = self.workflow(&run.workflow, Some(run.version)).await?;
        let gates = super::limits::claim_limits(&wf, run);
        let workflows = HashMap::from([(run.id, wf.clone())]);
        let lanes = match self.store.dialect() {
            crate::store::Dialect::Postgres => self.config.claim_lanes.max(1),
            crate::store::Dialect::Sqlite => 1,
        };
        let immediate_kinds = self.immediate_kinds(&wf);
        let claim = |limit| {
            self.claim_step(
                run,
                &wf,
                gates.as_ref(),
                &immediate_kinds,
                &workflows,
                limit,
            )
        };
        // Later batches of a big run defer to reports being recorded
        // (`priority.rs`): their children wait, these batches do not.
        let step = || async {
            let limit = if self.reports.busy() {
                self.config.claim_batch.min(priority::DEFERRED_BATCH)
            } else {
                self.config.claim_batch
            };
            self.reports.idle().await;
            claim(limit).await
        };
        let mut in_flight = stream::FuturesUnordered::new();
        in_flight.push(claim(self.config.claim_batch).boxed());
        let mut failed = None;
        while let Some(done) = in_flight.next().await {
            let s = match done {
                Ok(s) => s,
                Err(e) => {
                    // The other lanes finish what they claimed first.
                    failed.get_or_insert(e);
                    continue;
                }
            };
            advanced.dispatched += s.claimed;
            advanced.started.extend(s.started);
            if s.finalized.is_some() {
                advanced.finalized = s.finalized;
            }
            if failed.is_some() || s.claimed == 0 || !(s.full || s.ended_any) {
                continue;
            }
            // While reports are recorded, one lane: a full step whose twin
            // is still in flight leaves the next claim to it (the twin's
            // claim saw every unlocked ready row, or is full too).
            let lanes = if self.reports.busy() { 1 } else { lanes };
            if s.ended_any || in_flight.len() < lanes {
                in_flight.push(step().boxed());
            }
            if s.full && in_flight.len() < lanes {
                in_flight.push(step().boxed());
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(advanced),
        }
    }

    /// One claim of ready tasks, with their dispatch: up to
    /// `immediate_batch` of the `immediate_kinds` executors (unless limits
    /// gate the claim), else up to `limit` of any.
    async fn claim_step(
        &self,
        run: &Run,
        wf: &Workflow,
        gates: Option<&crate::store::ClaimLimits>,
        immediate_kinds: &[crate::spec::ExecutorKind],
        workflows: &HashMap<Uuid, std::sync::Arc<Workflow>>,
        limit: i64,
    ) -> Result<Step, Error> {
        let run_id = run.id;
        let (claimed, immediate, from) = retry(TRANSIENT_DB, Error::is_transient, || async move {
            let mut tx = self.store.begin().await?;
            let now = Utc::now();
            let claim = Claim {
                run_id,
                now,
                lease_until: limits::after(now, self.config.lease),
                limit,
                executors: self.config.executors.as_deref(),
                tasks: None,
                run_pending: run.status == RunStatus::Pending,
            };
            // The attempts of immediate executors end here, in the claim's
            // transaction: one commit instead of three, and (unless limits
            // gate the claim) one write of each row instead of two.
            let mut now_done = Vec::new();
            if gates.is_none() {
                let claim = Claim {
                    limit: self.config.immediate_batch,
                    ..claim
                };
                now_done = tx.lock_ready(&claim, immediate_kinds).await?;
            }
            let (from, claimed) = if now_done.is_empty() {
                let all = match gates {
                    None => tx.claim(&claim).await?,
                    Some(gates) => tx.claim_limited(&claim, gates).await?,
                };
                let claimed: Vec<ClaimedTask>;
                (now_done, claimed) = all
                    .into_iter()
                    .partition(|t| self.is_immediate(wf, &t.name));
                (Finish::InFlight, claimed)
            } else {
                (Finish::Locked, Vec::new())
            };
            let immediate = if now_done.is_empty() {
                None
            } else {
                let mut ended = self.dispatch_immediate(run, wf, &now_done).await;
                let expansions = self.prepare_all(&mut ended, workflows).await;
                let done = self
                    .record(&mut tx, &ended, from, workflows, &expansions, false)
                    .await?;
                Some((ended, done))
            };
            tx.commit().await?;
            Ok((claimed, immediate, from))
        })
        .await?;
        let claimed_n = claimed.len() + immediate.as_ref().map_or(0, |(ended, _)| ended.len());
        let batch = match from {
            Finish::Locked => self.config.immediate_batch,
            Finish::InFlight => limit,
        };
        let mut step = Step {
            claimed: claimed_n,
            full: claimed_n as i64 == batch,
            ended_any: false,
            finalized: None,
            started: Vec::new(),
        };
        if claimed_n == 0 {
            return Ok(step);
        }
        metrics::histogram!("ork_claim_batch_size").record(claimed_n as f64);
        if let Some((ended, done)) = immediate {
            let done = self.after_complete(&ended, workflows, done).await;
            step.finalized = done.finalized.first().map(|(_, status)| *status);
            step.ended_any = true;
        }
        if !claimed.is_empty() {
            self.hand_off(run, wf, claimed, &[], &mut step).await?;
        }
        Ok(step)
    }

    /// Dispatches claimed instances ([`Engine::dispatch`]) and completes
    /// the attempts that ended at once, noting both in `step`. `known`:
    /// parents' outputs at hand ([`super::Released::outputs`]).
    async fn hand_off(
        &self,
        run: &Run,
        wf: &Workflow,
        claimed: Vec<ClaimedTask>,
        known: &[TaskOutput],
        step: &mut Step,
    ) -> Result<(), Error> {
        let (started, ended) = self.dispatch(run, wf, claimed, known).await?;
        step.started = started;
        // New leases and deadlines.
        self.poke();
        if !ended.is_empty() {
            let done = self.complete(&ended).await?;
            if let Some((_, status)) = done.finalized.first() {
                step.finalized = Some(*status);
            }
            step.ended_any = true;
        }
        Ok(())
    }

    /// Inside a completion's transaction (a report batch's): claims the
    /// ready instances of the runs it may have made ready, so that their
    /// dispatch waits for no `advance`. Only where the claim is plain: no
    /// limits gate it, and no immediate executor's attempt ends in it
    /// (`advance` does both). The runs claimed here leave `to_advance`;
    /// [`Engine::dispatch_released`] says when one needs an `advance` still.
    pub(super) async fn claim_released(
        &self,
        tx: &mut crate::store::Tx,
        done: &mut super::Completed,
        workflows: &HashMap<Uuid, std::sync::Arc<Workflow>>,
    ) -> Result<(), Error> {
        let now = Utc::now();
        let mut rest = Vec::new();
        for run_id in std::mem::take(&mut done.to_advance) {
            let plain = workflows
                .get(&run_id)
                .is_some_and(|wf| !wf.limited && self.immediate_kinds(wf).is_empty());
            let Some(names) = done.maybe_ready.get(&run_id).filter(|_| plain) else {
                rest.push(run_id);
                continue;
            };
            let tasks = tx
                .claim(&Claim {
                    run_id,
                    now,
                    lease_until: limits::after(now, self.config.lease),
                    limit: self.config.claim_batch,
                    executors: self.config.executors.as_deref(),
                    // What an `advance` would claim first (a trigger's
                    // fan-out, say) is left to it: this transaction is the
                    // report batch's, which every report waits for.
                    tasks: Some(names),
                    // A run with a completion has started.
                    run_pending: false,
                })
                .await?;
            if tasks.is_empty() {
                continue;
            }
            metrics::histogram!("ork_claim_batch_size").record(tasks.len() as f64);
            done.released.push(super::Released {
                run_id,
                run: None,
                full: tasks.len() as i64 == self.config.claim_batch,
                tasks,
                outputs: done.outputs.remove(&run_id).unwrap_or_default(),
            });
        }
        done.to_advance = rest;
        Ok(())
    }

    /// Hands the instances a report's transaction claimed to their
    /// executors: the rest of an `advance` step. `true` when the run may
    /// have more ready (its claim was full, or attempts ended at once):
    /// `advance` it next.
    pub async fn dispatch_released(&self, mut released: super::Released) -> Result<bool, Error> {
        let run = match released.run.take() {
            Some(run) => run,
            None => self.store.get_run(released.run_id).await?,
        };
        let step = self.hand_off_released(&run, released).await?;
        Ok(step.full || step.ended_any)
    }

    /// [`Engine::dispatch_released`] for the caller who has `run` at hand
    /// (`ork run`'s loop): its params are all the hand-off reads of it.
    pub(super) async fn hand_off_released(
        &self,
        run: &Run,
        released: super::Released,
    ) -> Result<Step, Error> {
        let super::Released {
            tasks,
            full,
            outputs,
            ..
        } = released;
        let wf = self.workflow(&run.workflow, Some(run.version)).await?;
        let mut step = Step {
            claimed: tasks.len(),
            full,
            ended_any: false,
            finalized: None,
            started: Vec::new(),
        };
        self.hand_off(run, &wf, tasks, &outputs, &mut step).await?;
        Ok(step)
    }

    /// Hands one attempt to its executor (or fails it: its input was
    /// `refused`, or no executor of its kind is configured), counting the
    /// dispatch and how long it took.
    async fn start(
        &self,
        req: &DispatchRequest,
        refused: Option<String>,
    ) -> Result<Dispatch, ExecutorError> {
        let started = std::time::Instant::now();
        let kind = req.spec.executor;
        let result = match (refused, self.executors.get(kind)) {
            (Some(why), _) => Err(ExecutorError::permanent(why)),
            (None, Some(executor)) => executor.dispatch(req).await,
            (None, None) => Err(ExecutorError::not_configured(
                Error::NoExecutor(kind.as_str().into()).to_string(),
            )),
        };
        let outcome = if result.is_ok() { "started" } else { "error" };
        metrics::counter!("ork_tasks_dispatched_total", "executor" => kind.as_str(), "result" => outcome)
            .increment(1);
        metrics::histogram!("ork_dispatch_seconds", "executor" => kind.as_str())
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// The [`immediate`](crate::executor::Executor::immediate) executor
    /// kinds of a workflow's tasks that this engine claims.
    fn immediate_kinds(&self, wf: &Workflow) -> Vec<crate::spec::ExecutorKind> {
        wf.executors
            .iter()
            .copied()
            .filter(|k| self.executors.get(*k).is_some_and(|e| e.immediate()))
            .filter(|k| {
                self.config
                    .executors
                    .as_ref()
                    .is_none_or(|only| only.contains(k))
            })
            .collect()
    }

    /// Whether a task's executor is [`immediate`](crate::executor::Executor::immediate).
    fn is_immediate(&self, wf: &Workflow, task: &str) -> bool {
        wf.spec
            .tasks
            .get(task)
            .and_then(|t| self.executors.get(t.executor))
            .is_some_and(|e| e.immediate())
    }

    /// Dispatches claimed attempts of immediate executors, which end at
    /// once: their completions (an executor that did start one broke its
    /// contract, and the attempt fails).
    async fn dispatch_immediate(
        &self,
        run: &Run,
        wf: &Workflow,
        claimed: &[ClaimedTask],
    ) -> Vec<Completion> {
        let mut ended = Vec::with_capacity(claimed.len());
        for t in claimed {
            let spec = wf.spec.tasks[&t.name].clone();
            let kind = spec.executor;
            let req = DispatchRequest {
                input: serde_json::Value::Null,
                input_file: None,
                input_url: None,
                output_url: None,
                item: t.item.clone(),
                attempt: t.attempt_ref(run),
                task_count: t.task_count,
                timeout: spec.timeout,
                base_dir: wf.spec.base_dir.clone(),
                callback: None,
                batch: 1,
                spec,
            };
            let outcome = match self.start(&req, None).await {
                Ok(Dispatch::Finished(outcome)) => outcome,
                Ok(Dispatch::Started { .. }) => {
                    Outcome::dispatch_failed(&ExecutorError::permanent(format!(
                        "the {} executor started an attempt it said would end at once",
                        kind.as_str()
                    )))
                }
                Err(error) => Outcome::dispatch_failed(&error),
            };
            ended.push(Completion {
                attempt: req.attempt,
                outcome,
            });
        }
        ended
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
        known: &[TaskOutput],
    ) -> Result<(Vec<(Uuid, i64)>, Vec<Completion>), Error> {
        let mut inputs = self.inputs(run, wf, &claimed, known).await?;
        let item_limit = self.config.payloads.inline_limit;
        let now = Utc::now();
        let batch = claimed.len();
        let requests = claimed.into_iter().map(|t| {
            let spec = wf.spec.tasks[&t.name].clone();
            let input = inputs.remove(&t.id).unwrap_or_default();
            let attempt = t.attempt_ref(run);
            // `ORK_ITEM` within what the executor takes inline (Fargate: 2 KiB).
            let item_limit = spec
                .executor
                .inline_input_cap()
                .map_or(item_limit, |cap| cap.min(item_limit));
            let item = t.item.filter(|i| payload::json_len(i) <= item_limit);
            let mut req = DispatchRequest {
                input: input.inline,
                input_file: input.file,
                input_url: input.url,
                output_url: input.output_url,
                item,
                attempt,
                task_count: t.task_count,
                timeout: spec.timeout,
                base_dir: wf.spec.base_dir.clone(),
                callback: None,
                batch,
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
            (req, input.refused)
        });
        let results: Vec<(
            AttemptRef,
            Option<Duration>,
            Result<Dispatch, ExecutorError>,
        )> = stream::iter(requests)
            .map(|(req, refused)| async move {
                let result = self.start(&req, refused).await;
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
                self.store.mark_started(started, now, lease_until).await
            })
            .await?;
        }
        let started = started.iter().map(|s| (s.task_id, s.attempt)).collect();
        Ok((started, ended))
    }

    /// Each claimed instance's input: the run's params and its parents'
    /// outputs (one output per parent, or a list by index for a fanned-out
    /// or `foreach` parent; `null` where a parent left none), and its
    /// `foreach` item, and its `inputs:` mapping. One query per batch, none
    /// when every parent is a single instance whose output is `known` (a
    /// chain: the report that released the child recorded it; a chain of
    /// 40 `sh` tasks, 35.1 → 32.4 ms).
    /// Inline when small; otherwise
    /// written (streaming, with large outputs copied in from the payload
    /// store) to a file for a local task, to the remote payload store for a
    /// cloud one (a presigned URL), by task id.
    async fn inputs(
        &self,
        run: &Run,
        wf: &Workflow,
        claimed: &[ClaimedTask],
        known: &[TaskOutput],
    ) -> Result<HashMap<Uuid, Input>, Error> {
        let names: BTreeSet<&str> = claimed.iter().map(|t| t.name.as_str()).collect();
        let parents: BTreeSet<&str> = names.iter().flat_map(|n| input_parents(wf, n)).collect();
        let mut upstream: HashMap<&str, Upstream> = parents
            .iter()
            .map(|p| {
                let spec = &wf.spec.tasks[*p];
                // A `foreach` task's list is as long as its instances (all
                // succeeded: the rows say how many).
                let empty = if spec.single_instance() {
                    Upstream::One(Slot::Null)
                } else if spec.foreach.is_some() {
                    Upstream::List(Vec::new())
                } else {
                    Upstream::List(vec![Slot::Null; spec.task_count as usize])
                };
                (*p, empty)
            })
            .collect();
        let at_hand = parents
            .iter()
            .all(|p| matches!(upstream[p], Upstream::One(_)) && known.iter().any(|o| o.name == *p));
        let outputs = if at_hand {
            let mine = known.iter().filter(|o| parents.contains(o.name.as_str()));
            mine.cloned().collect()
        } else {
            let parent_list: Vec<&str> = parents.iter().copied().collect();
            self.store.task_outputs(run.id, &parent_list).await?
        };
        for o in outputs {
            let slot = match (o.output_ref, o.output) {
                (Some(r), _) => serde_json::from_value(r)
                    .map(Slot::Ref)
                    .unwrap_or(Slot::Null),
                (None, Some(v)) => Slot::Value(v),
                (None, None) => Slot::Null,
            };
            match upstream.get_mut(o.name.as_str()) {
                Some(Upstream::List(slots)) => {
                    let i = o.task_index as usize;
                    if slots.len() <= i {
                        slots.resize(i + 1, Slot::Null);
                    }
                    slots[i] = slot;
                }
                Some(Upstream::One(single)) => *single = slot,
                None => {}
            }
        }
        let payloads = &self.config.payloads;
        let params_len = payload::json_len(&run.params);
        let mut out = HashMap::new();
        for t in claimed {
            let mine: Vec<(&str, &Upstream)> = input_parents(wf, &t.name)
                .map(|p| (p, &upstream[p]))
                .collect();
            // The task's `inputs:` mapping, which the SDKs resolve.
            let task_inputs = &wf.spec.tasks[&t.name].inputs;
            let mapping = (!task_inputs.is_empty()).then(|| serde_json::json!(task_inputs));
            let by_ref = mine.iter().any(|(_, u)| u.has_ref());
            let size = params_len
                + mine
                    .iter()
                    .map(|(n, u)| n.len() as u64 + 4 + u.len())
                    .sum::<u64>()
                + t.item.as_ref().map_or(0, payload::json_len)
                + mapping.as_ref().map_or(0, payload::json_len)
                + 50;
            let spec = &wf.spec.tasks[&t.name];
            let kind = spec.executor;
            let limit = kind
                .inline_input_cap()
                .map_or(payloads.inline_limit, |cap| cap.min(payloads.inline_limit));
            // Presigned URLs are valid while the attempt may run: its
            // timeout and an hour (at most a week).
            let ttl = spec
                .timeout
                .unwrap_or(Duration::from_secs(24 * 3600))
                .saturating_add(Duration::from_secs(3600));
            let output_url = if kind.is_local() {
                None
            } else {
                let a = t.attempt_ref(run);
                match payloads.output_put_url(&a, ttl).await {
                    Some(url) => Some(url.map_err(Error::Internal)?),
                    None => None,
                }
            };
            if !by_ref && size <= limit {
                let mut doc = serde_json::json!({
                    "params": run.params,
                    "upstream": mine
                        .iter()
                        .map(|(n, u)| ((*n).to_owned(), u.value()))
                        .collect::<serde_json::Map<_, _>>(),
                });
                if let Some(item) = &t.item {
                    doc["item"] = item.clone();
                }
                if let Some(m) = &mapping {
                    doc["inputs"] = m.clone();
                }
                out.insert(
                    t.id,
                    Input {
                        inline: doc,
                        output_url,
                        ..Input::default()
                    },
                );
                continue;
            }
            let mut pieces: Vec<Piece> = vec![
                Piece::Raw("{\"params\":".into()),
                Piece::Json(&run.params),
                Piece::Raw(",\"upstream\":{".into()),
            ];
            for (i, (name, u)) in mine.iter().enumerate() {
                let key = serde_json::to_string(name).unwrap_or_default();
                let sep = if i == 0 { "" } else { "," };
                pieces.push(Piece::Raw(format!("{sep}{key}:").into()));
                match u {
                    Upstream::One(slot) => pieces.push(slot.piece()),
                    Upstream::List(slots) => {
                        pieces.push(Piece::Raw("[".into()));
                        for (j, slot) in slots.iter().enumerate() {
                            if j > 0 {
                                pieces.push(Piece::Raw(",".into()));
                            }
                            pieces.push(slot.piece());
                        }
                        pieces.push(Piece::Raw("]".into()));
                    }
                }
            }
            pieces.push(Piece::Raw("}".into()));
            if let Some(item) = &t.item {
                pieces.push(Piece::Raw(",\"item\":".into()));
                pieces.push(Piece::Json(item));
            }
            if let Some(m) = &mapping {
                pieces.push(Piece::Raw(",\"inputs\":".into()));
                pieces.push(Piece::Json(m));
            }
            pieces.push(Piece::Raw("}".into()));
            let input = if kind.is_local() {
                let path = payloads.input_path(run.id, &t.name, t.task_index, t.attempt);
                payloads.write_pieces(&path, &pieces).await.map_err(|e| {
                    Error::Internal(format!("cannot write {}: {e}", path.display()))
                })?;
                Input {
                    file: Some(path),
                    ..Input::default()
                }
            } else {
                let key = payload::Payloads::input_key(&t.attempt_ref(run));
                match payloads.put_pieces(&key, &pieces, ttl).await {
                    Some(url) => Input {
                        url: Some(url.map_err(|e| {
                            Error::Internal(format!("cannot store the input {key}: {e}"))
                        })?),
                        output_url,
                        ..Input::default()
                    },
                    None => Input {
                        refused: Some(format!(
                            "the input is about {size} bytes (or has a parent's output stored by \
                             reference), over the {limit} bytes a {} task takes inline, and there \
                             is no remote payload store to pass it by URL: set ORK_PAYLOAD_URL \
                             (s3://… or gs://…)",
                            kind.as_str()
                        )),
                        ..Input::default()
                    },
                }
            };
            out.insert(t.id, input);
        }
        Ok(out)
    }
}

impl ClaimedTask {
    fn attempt_ref(&self, run: &Run) -> AttemptRef {
        AttemptRef {
            run_id: run.id,
            workflow: run.workflow.clone(),
            version: run.version,
            task_id: self.id,
            name: self.name.clone(),
            task_index: self.task_index,
            attempt: self.attempt,
        }
    }
}

/// How an attempt gets its input document: inline (`ORK_INPUT`), a file
/// (`ORK_INPUT_FILE`), a presigned URL (`ORK_INPUT_URL`); or why it cannot
/// (the attempt fails for good).
#[derive(Default)]
struct Input {
    inline: serde_json::Value,
    file: Option<PathBuf>,
    url: Option<String>,
    /// A cloud worker's presigned PUT for a large output.
    output_url: Option<String>,
    refused: Option<String>,
}

/// The parents whose outputs are in a task's input document: all of them,
/// but the one a `foreach` task iterates over (each instance gets its item,
/// not the whole list again: that made a foreach over `n` items copy the
/// list `n` times).
fn input_parents<'a>(wf: &'a Workflow, name: &str) -> impl Iterator<Item = &'a str> {
    let skip = wf
        .spec
        .tasks
        .get(name)
        .and_then(|t| t.foreach_source())
        .map(|(parent, _)| parent);
    wf.dag
        .parents(name)
        .iter()
        .map(String::as_str)
        .filter(move |p| skip != Some(*p))
}

/// A parent's output as it goes into an input document.
#[derive(Clone)]
enum Slot {
    Null,
    Value(serde_json::Value),
    Ref(PayloadRef),
}

impl Slot {
    fn piece(&self) -> Piece<'_> {
        match self {
            Slot::Null => Piece::Raw("null".into()),
            Slot::Value(v) => Piece::Json(v),
            Slot::Ref(r) => Piece::Ref(r),
        }
    }
}

enum Upstream {
    One(Slot),
    List(Vec<Slot>),
}

impl Upstream {
    fn slots(&self) -> &[Slot] {
        match self {
            Upstream::One(s) => std::slice::from_ref(s),
            Upstream::List(v) => v,
        }
    }

    fn has_ref(&self) -> bool {
        self.slots().iter().any(|s| matches!(s, Slot::Ref(_)))
    }

    /// Serialized length, about (inline values only).
    fn len(&self) -> u64 {
        self.slots()
            .iter()
            .map(|s| match s {
                Slot::Null => 5,
                Slot::Value(v) => payload::json_len(v) + 1,
                Slot::Ref(r) => r.size + 1,
            })
            .sum::<u64>()
            + 2
    }

    fn value(&self) -> serde_json::Value {
        let one = |s: &Slot| match s {
            Slot::Value(v) => v.clone(),
            _ => serde_json::Value::Null,
        };
        match self {
            Upstream::One(s) => one(s),
            Upstream::List(v) => serde_json::Value::Array(v.iter().map(one).collect()),
        }
    }
}
