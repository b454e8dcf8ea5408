//! Reports from workers (the `on-task-complete` webhook): completions and
//! heartbeats for one attempt, already authenticated by its token.

use std::collections::HashSet;

use chrono::Utc;
use uuid::Uuid;

use super::{Completed, Engine};
use crate::executor::Completion;
use crate::model::{AttemptRef, RunStatus, TaskStatus};
use crate::Error;

/// What became of a worker's report: one of [`Engine::report_all`]'s answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    /// The attempt was in flight; its end is recorded. `finalized`: the
    /// status of its run, when this batch finalized it.
    Applied { finalized: Option<RunStatus> },
    /// The attempt's end was recorded before (a replay, or the run was
    /// cancelled): nothing changed.
    Duplicate,
    /// The attempt was superseded (a retry or a re-dispatch took its
    /// place): nothing changed.
    Stale,
    /// No such task.
    Unknown,
}

impl Engine {
    /// Records workers' reports of their attempts' ends, all in one
    /// transaction (group commit: `ork serve` gathers the reports that
    /// arrive while the previous batch commits), and says which of the
    /// [`Reported`] cases each one was, in order, with what the batch
    /// changed. Idempotent: only the first report of an attempt in flight
    /// changes anything, within a batch as across batches.
    ///
    /// With `claim`, the same transaction claims the instances the reports
    /// made ready ([`Completed::released`]; the caller hands them to
    /// [`Engine::dispatch_released`]): a child is dispatched as soon as its
    /// parent's report commits, without waiting for an `advance` of its
    /// run, which under load is busy with the previous batch.
    #[tracing::instrument(level = "debug", skip_all, fields(reports = completions.len()))]
    pub async fn report_all(
        &self,
        completions: &[Completion],
        claim: bool,
    ) -> Result<(Vec<Reported>, Completed), Error> {
        let recording = self.reports.recording();
        let done = self.complete_and_claim(completions, claim).await?;
        drop(recording);
        let mut recorded: HashSet<(Uuid, i64)> = done.recorded.iter().copied().collect();
        let mut answers = Vec::with_capacity(completions.len());
        for c in completions {
            let a = &c.attempt;
            let answer = if recorded.remove(&(a.task_id, a.attempt)) {
                let finalized = done
                    .finalized
                    .iter()
                    .find(|(run, _)| *run == a.run_id)
                    .map(|(_, status)| *status);
                Reported::Applied { finalized }
            } else {
                self.not_recorded(a).await?
            };
            answers.push(answer);
        }
        Ok((answers, done))
    }

    /// Why a report changed nothing.
    async fn not_recorded(&self, a: &AttemptRef) -> Result<Reported, Error> {
        Ok(match self.store.get_task(a.task_id).await? {
            None => Reported::Unknown,
            Some(t) if t.attempt > a.attempt => Reported::Stale,
            // Back to pending with no outcome recorded: the claim of this
            // attempt was requeued by the sweeper, the attempt is void.
            Some(t)
                if t.status == TaskStatus::Pending
                    && t.exit_code.is_none()
                    && t.error.is_none() =>
            {
                Reported::Stale
            }
            Some(_) => Reported::Duplicate,
        })
    }

    /// A worker's heartbeat: the attempt is `running`, and is given up if
    /// no heartbeat comes for `heartbeat_timeout`. `false` when the attempt
    /// is no longer in flight (the worker should stop).
    pub async fn heartbeat(&self, attempt: &AttemptRef) -> Result<bool, Error> {
        let mut tx = self.store.begin().await?;
        let now = Utc::now();
        let alive = tx
            .heartbeat(
                attempt.task_id,
                attempt.attempt,
                crate::limits::after(now, self.config.heartbeat_timeout),
                now,
            )
            .await?;
        tx.commit().await?;
        Ok(alive)
    }
}
