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
