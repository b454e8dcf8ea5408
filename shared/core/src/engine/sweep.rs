//! The sweeper: what the cron tick does every minute. It repairs what no
//! event will: claims whose dispatch never happened, attempts past their
//! timeout or lease (every attempt in flight has one: a start lease, then
//! heartbeats), attempts whose callback never came, retries whose
//! backoff has passed, cron schedules that are due, and backfills with room.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Utc;
use futures::{stream, StreamExt};
use uuid::Uuid;

use super::{Engine, TRANSIENT_DB};
use crate::executor::{Completion, Executor, ExecutorError, Outcome};
use crate::model::{AttemptRef, InFlight, Task, TaskStatus};
use crate::retry::retry;
use crate::spec::ExecutorKind;
use crate::Error;

/// Most rows one sweep looks at per kind of repair.
const SWEEP_LIMIT: i64 = 1000;

/// The executors a sweep asks about every running attempt: their
/// platform's answer is the attempt's heartbeat. (`NEXT_DUE_AT` names the
/// same, so that `ork serve` sweeps at each tick while one runs.)
pub(crate) const POLLED: [ExecutorKind; 4] = [
    ExecutorKind::Cloudrun,
    ExecutorKind::Fargate,
    ExecutorKind::Kubernetes,
    ExecutorKind::Azure,
];

/// What [`Engine::expire_leases`] did.
#[derive(Debug, Clone, Default)]
pub struct Expired {
    /// Claims put back for a new attempt after their lease expired.
    pub requeued: usize,
    /// Attempts failed for their timeout or an expired lease.
    pub overdue: usize,
    /// Runs with something new to dispatch.
    pub to_advance: Vec<Uuid>,
}

/// What one sweep did.
#[derive(Debug, Clone, Default)]
pub struct Swept {
    /// Claims put back for a new attempt after their lease expired.
    pub requeued: usize,
    /// Attempts failed for their timeout or a missed heartbeat.
    pub overdue: usize,
    /// Attempts found ended by asking their executor.
    pub polled: usize,
    /// Runs started by cron schedules.
    pub fired: Vec<Uuid>,
    /// Runs advanced.
    pub advanced: usize,
}

impl Engine {
    /// One sweep. Safe to run concurrently with itself and with handlers:
    /// every repair is a conditional update, so overlapping sweeps do each
    /// thing once.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn sweep(&self) -> Result<Swept, Error> {
        let started = std::time::Instant::now();
        let swept = self.sweep_once().await;
        metrics::histogram!("ork_sweep_seconds").record(started.elapsed().as_secs_f64());
        swept
    }

    async fn sweep_once(&self) -> Result<Swept, Error> {
        let now = Utc::now();
        let mut swept = Swept::default();
        let mut to_advance: BTreeSet<Uuid> = BTreeSet::new();

        let expired = self.expire_leases(None).await?;
        swept.requeued = expired.requeued;
        swept.overdue = expired.overdue;
        to_advance.extend(expired.to_advance);

        let remote = POLLED.map(ExecutorKind::as_str);
        let running = self.store.running_attempts(&remote, SWEEP_LIMIT).await?;
        let (mut ended, mut alive) = (Vec::new(), Vec::new());
        for (f, answer) in self.poll_all(&running).await {
            match answer {
                Ok(Some(outcome)) => ended.push(Completion {
                    attempt: f.attempt_ref(),
                    outcome,
                }),
                // Its platform says it runs: as good as a heartbeat.
                Ok(None) => alive.push((f.task.id, f.task.attempt)),
                Err(e) => tracing::warn!(task = %f.task.label(), error = %e, "poll failed"),
            }
        }
        self.renew_leases(&alive).await?;
        ended.extend(self.reap_local().await?);
        let done = self.complete(&ended).await?;
        swept.polled = done.applied();
        to_advance.extend(done.to_advance);

        swept.fired = self.fire_schedules(now).await?;
        to_advance.extend(swept.fired.iter().copied());
        for p in self.continue_backfills().await? {
            to_advance.extend(p.started);
        }
        to_advance.extend(self.store.ready_runs(now, SWEEP_LIMIT).await?);

        // Each run on its own: one that fails (an unreadable row, a stored
        // spec that no longer loads) is logged and the others go on.
        for run in to_advance {
            match self.advance(run).await {
                Ok(_) => swept.advanced += 1,
                Err(e) => tracing::error!(%run, error = %e, "sweep: advancing a run failed"),
            }
        }
        Ok(swept)
    }

    /// The lease half of a sweep, of one run (`ork run`) or of all: claims
    /// whose lease ran out with no start recorded are put back (no retry
    /// spent); running attempts past their timeout or their lease (start
    /// lease, heartbeat, `ork run`'s renewal) are stopped and failed,
    /// then retried per their policy. Returns what changed and the runs to
    /// advance.
    pub async fn expire_leases(&self, run: Option<Uuid>) -> Result<Expired, Error> {
        let now = Utc::now();
        let requeued = retry(TRANSIENT_DB, Error::is_transient, || async move {
            let mut tx = self.store.begin().await?;
            let runs = tx.requeue_expired_claims(now, run).await?;
            tx.commit().await?;
            Ok(runs)
        })
        .await?;
        let mut expired = Expired {
            requeued: requeued.len(),
            to_advance: requeued,
            ..Expired::default()
        };

        let overdue = self.store.overdue_attempts(now, run, SWEEP_LIMIT).await?;
        let completions: Vec<Completion> = overdue
            .iter()
            .map(|f| {
                let why = match f.task.deadline_at {
                    Some(d) if d < now => {
                        let limit = f.task.started_at.and_then(|s| (d - s).to_std().ok());
                        let limit = humantime::format_duration(limit.unwrap_or_default());
                        format!("timed out after {limit}")
                    }
                    _ => format!(
                        "no heartbeat for {}: the worker is gone",
                        humantime::format_duration(self.config.heartbeat_timeout)
                    ),
                };
                Completion {
                    attempt: f.attempt_ref(),
                    outcome: Outcome::failure(None, why),
                }
            })
            .collect();
        for f in &overdue {
            self.stop(&f.task, &f.attempt_ref()).await;
        }
        let done = self.complete(&completions).await?;
        expired.overdue = done.applied();
        expired.to_advance.extend(done.to_advance);
        expired.to_advance.sort();
        expired.to_advance.dedup();
        Ok(expired)
    }

    /// Extends the leases of running attempts known to be alive by
    /// `heartbeat_timeout`; returns the ones still running.
    pub async fn renew_leases(&self, attempts: &[(Uuid, i64)]) -> Result<Vec<(Uuid, i64)>, Error> {
        if attempts.is_empty() {
            return Ok(Vec::new());
        }
        retry(TRANSIENT_DB, Error::is_transient, || async move {
            let mut tx = self.store.begin().await?;
            let alive = tx
                .renew_leases(attempts, Utc::now() + self.config.heartbeat_timeout)
                .await?;
            tx.commit().await?;
            Ok(alive)
        })
        .await
    }

    /// `ork run --resume`: asks the executors of `run`'s attempts under way
    /// how they are doing, and records the ends they can tell (the local
    /// processes of the dead `ork run` that started them: see the process
    /// executor's `poll`) now rather than when their leases run out. What
    /// they cannot tell is left to the leases. Returns how many ended.
    pub async fn reap_ended(&self, run_id: Uuid) -> Result<usize, Error> {
        let run = self.store.get_run(run_id).await?;
        let in_flight: Vec<InFlight> = self
            .store
            .run_tasks(run_id)
            .await?
            .into_iter()
            .filter(|t| t.status == TaskStatus::Running && t.execution_id.is_some())
            .map(|task| InFlight {
                task,
                workflow: run.workflow.clone(),
                version: run.version,
            })
            .collect();
        let ended = ended_of(self.poll_all(&in_flight).await);
        Ok(self.complete(&ended).await?.applied())
    }

    /// The local attempts whose end their executor can tell: those of an
    /// `ork run` that died on this machine (see the process executor's
    /// `poll`), found at the next sweep rather than when their leases run
    /// out, and the processes they left stopped. Its silence about the
    /// others is no heartbeat: their leases decide, as before.
    async fn reap_local(&self) -> Result<Vec<Completion>, Error> {
        if self.executors.get(ExecutorKind::Process).is_none() {
            return Ok(Vec::new());
        }
        let watched = self.store.watched_attempts(SWEEP_LIMIT).await?;
        Ok(ended_of(self.poll_all(&watched).await))
    }

    /// [`Engine::check`] of each attempt, `dispatch_concurrency` at a time:
    /// each attempt with its executor's answer.
    async fn poll_all<'a>(
        &self,
        attempts: &'a [InFlight],
    ) -> Vec<(&'a InFlight, Result<Option<Outcome>, ExecutorError>)> {
        // By index: a closure taking `&InFlight` makes a future that the
        // handlers' `Send` bound cannot prove general over its lifetime.
        let answers: Vec<(usize, _)> = stream::iter(0..attempts.len())
            .map(|i| async move { (i, self.check(&attempts[i]).await) })
            .buffer_unordered(self.config.dispatch_concurrency.max(1))
            .collect()
            .await;
        answers
            .into_iter()
            .map(|(i, answer)| (&attempts[i], answer))
            .collect()
    }

    /// Asks an attempt's executor how it is doing: `Some` once it ended.
    pub async fn check(&self, attempt: &InFlight) -> Result<Option<Outcome>, ExecutorError> {
        let (executor, execution_id) = self.execution_of(&attempt.task)?;
        executor.poll(&attempt.attempt_ref(), execution_id).await
    }

    /// The executor of a task's current attempt and its execution id.
    fn execution_of<'t>(
        &self,
        task: &'t Task,
    ) -> Result<(&Arc<dyn Executor>, &'t str), ExecutorError> {
        let kind: ExecutorKind = task.executor.parse().map_err(ExecutorError::Permanent)?;
        let executor = self.executors.get(kind).ok_or_else(|| {
            ExecutorError::not_configured(Error::NoExecutor(kind.as_str().into()).to_string())
        })?;
        let execution_id = task
            .execution_id
            .as_deref()
            .ok_or_else(|| ExecutorError::permanent("the attempt has no execution id"))?;
        Ok((executor, execution_id))
    }

    /// Asks the executor to stop an attempt being given up or cancelled
    /// (best effort: a failure is logged, the state change stands).
    pub(super) async fn stop(&self, task: &Task, attempt: &AttemptRef) {
        let Ok((executor, execution_id)) = self.execution_of(task) else {
            return;
        };
        if let Err(e) = executor.cancel(attempt, execution_id).await {
            tracing::warn!(task = %task.label(), error = %e, "could not stop attempt");
        }
    }
}

/// The ends among [`Engine::poll_all`]'s answers, for a caller to whom
/// "nothing to tell" says nothing (see [`Engine::reap_ended`]).
fn ended_of(answers: Vec<(&InFlight, Result<Option<Outcome>, ExecutorError>)>) -> Vec<Completion> {
    let mut ended = Vec::new();
    for (f, answer) in answers {
        match answer {
            Ok(Some(outcome)) => ended.push(Completion {
                attempt: f.attempt_ref(),
                outcome,
            }),
            Ok(None) => {}
            Err(e) => tracing::debug!(task = %f.task.label(), error = %e, "poll failed"),
        }
    }
    ended
}
