//! `cancel`: closing a run and stopping its attempts.

use chrono::Utc;
use uuid::Uuid;

use super::Engine;
use crate::Error;

impl Engine {
    /// Cancels a run that is not final and asks the executors to stop its
    /// attempts in flight. Returns `false` if the run was already final.
    pub async fn cancel(&self, run_id: Uuid) -> Result<bool, Error> {
        let run = self.store.get_run(run_id).await?;
        let wf = self.workflow(&run.workflow, Some(run.version)).await?;
        let now = Utc::now();
        let mut tx = self.store.begin().await?;
        let Some(in_flight) = tx.cancel_run(run_id, now).await? else {
            return Ok(false);
        };
        self.store_cost(&mut tx, &wf.spec, run_id, now).await?;
        if wf.limited {
            // The slots this run held are free: the runs waiting for them
            // become due, so a host starts them now, not at its tick.
            let freed: Vec<Uuid> = in_flight.iter().map(|t| t.id).collect();
            let mut waiting = tx.waiting_runs(&freed).await?;
            if let Some(c) = &wf.spec.concurrency {
                if let Some(limit) = c.limit.filter(|_| c.key.is_some()) {
                    waiting.extend(tx.queued_runs_keyed(run_id, i64::from(limit)).await?);
                }
                if let Some(max) = c.max_runs {
                    waiting.extend(tx.queued_runs(&wf.spec.name, i64::from(max)).await?);
                }
            }
            tx.wake_runs(&waiting, now).await?;
        }
        tx.commit().await?;
        for task in in_flight {
            self.stop(&task, &task.attempt_ref(&run.workflow, run.version))
                .await;
        }
        Ok(true)
    }
}
