//! Firing cron schedules: each due slot becomes one run, exactly once.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Engine, TriggerOptions};
use crate::Error;

impl Engine {
    /// Starts a run for each due slot of each scheduled workflow. A slot's
    /// run carries the idempotency key `schedule:<slot>`, so ticks that
    /// overlap or repeat start it once. A workflow's first slot is the first
    /// after its latest version was applied (or it was unpaused); a paused
    /// workflow's schedule does not fire. Returns the runs started.
    pub async fn fire_schedules(&self, now: DateTime<Utc>) -> Result<Vec<Uuid>, Error> {
        let last = self.store.schedule_slots().await?;
        let mut fired = Vec::new();
        for summary in self.store.list_workflows().await? {
            if summary.paused {
                continue;
            }
            // One workflow that cannot be loaded does not stop the others.
            let wf = match self
                .workflow(&summary.name, Some(summary.latest_version))
                .await
            {
                Ok(wf) => wf,
                Err(e) => {
                    tracing::error!(workflow = %summary.name, error = %e, "schedule: cannot load workflow");
                    continue;
                }
            };
            let Some(Ok(schedule)) = wf.spec.parsed_schedule() else {
                continue;
            };
            let after = last
                .iter()
                .find(|(w, _)| *w == summary.name)
                .map_or(summary.updated_at, |(_, slot)| *slot);
            let slots = schedule.due(after, now);
            for slot in &slots {
                let opts = TriggerOptions {
                    trigger: "schedule".into(),
                    idempotency_key: Some(format!("schedule:{}", slot.to_rfc3339())),
                };
                let t = self
                    .trigger(&summary.name, serde_json::json!({ "slot": slot }), opts)
                    .await?;
                if t.created {
                    tracing::info!(workflow = %summary.name, %slot, run = %t.run.id, "schedule fired");
                    fired.push(t.run.id);
                }
            }
            if let Some(latest) = slots.last() {
                let mut tx = self.store.begin().await?;
                tx.record_schedule_slot(&summary.name, *latest).await?;
                tx.commit().await?;
            }
        }
        Ok(fired)
    }
}
