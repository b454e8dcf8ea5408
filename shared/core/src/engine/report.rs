//! Reports from workers (the `on-task-complete` webhook): completions and
//! heartbeats for one attempt, already authenticated by its token.

use chrono::Utc;

use super::{Completed, Engine};
use crate::executor::Completion;
use crate::model::{AttemptRef, TaskStatus};
use crate::Error;

/// What became of a worker's report: [`Engine::report`]'s answer.
#[derive(Debug, Clone)]
pub enum Reported {
    /// The attempt was in flight; its end is recorded.
    Applied(Completed),
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
    /// Records a worker's report of its attempt's end, and says which of
    /// the [`Reported`] cases it was. Idempotent: only the first report of an
    /// attempt in flight changes anything.
    #[tracing::instrument(level = "debug", skip_all, fields(run_id = %completion.attempt.run_id, task = %completion.attempt.name, index = completion.attempt.task_index, attempt = completion.attempt.attempt))]
    pub async fn report(&self, completion: Completion) -> Result<Reported, Error> {
        let done = self.complete(std::slice::from_ref(&completion)).await?;
        if done.applied == 1 {
            return Ok(Reported::Applied(done));
        }
        let n = completion.attempt.attempt;
        Ok(
            match self.store.get_task(completion.attempt.task_id).await? {
                None => Reported::Unknown,
                Some(t) if t.attempt > n => Reported::Stale,
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
            },
        )
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
