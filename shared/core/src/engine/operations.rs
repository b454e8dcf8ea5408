//! Day-two controls of a workflow: pausing its schedule, deleting a version
//! nobody ran, and backfilling its cron slots over a date range.
//!
//! A backfill is a row of `backfills` (a cursor over its slots), not a
//! process: [`Engine::backfill`] starts what fits at once, and the rest is
//! started by [`Engine::continue_backfills`], which each finalizing
//! completion and each sweep call. Every slot's run has a deterministic
//! idempotency key (the schedule's `schedule:<slot>`, or
//! `backfill:<id>:<slot>` with `rerun`), so racing callers start it once.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{Engine, TriggerOptions, TRANSIENT_DB};
use crate::limits;
use crate::retry::retry;
use crate::store::reads::ActiveBackfill;
use crate::Error;

/// What [`Engine::backfill`] is asked.
#[derive(Debug, Clone)]
pub struct BackfillRequest {
    /// The first instant covered (a slot at exactly `from` is included).
    pub from: DateTime<Utc>,
    /// The end, excluded.
    pub until: DateTime<Utc>,
    /// Most backfill runs of the workflow open at once; `None`: all at once.
    pub max_parallel: Option<u32>,
    /// Run again the slots that already have a run.
    pub rerun: bool,
}

/// What [`Engine::backfill`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Backfill {
    pub id: Uuid,
    pub workflow: String,
    /// Every slot in the range.
    pub slots: Vec<DateTime<Utc>>,
    /// The runs started now.
    pub started: Vec<Uuid>,
    /// Slots that already had a run (not run again without `rerun`).
    pub existing: usize,
    /// Slots left for later, when a backfill run ends (`max_parallel`).
    pub waiting: usize,
}

impl Engine {
    /// Pauses (`true`) or unpauses a workflow's schedule. Manual triggers
    /// and backfills still start runs. Unpausing resumes the schedule from
    /// now: the slots missed while paused are not fired (backfill them).
    pub async fn set_paused(&self, workflow: &str, paused: bool) -> Result<(), Error> {
        retry(TRANSIENT_DB, Error::is_transient, || async move {
            let now = Utc::now();
            let mut tx = self.store.begin().await?;
            if !tx.set_paused(workflow, paused, now).await? {
                return Err(Error::WorkflowNotFound(workflow.to_owned()));
            }
            if !paused {
                tx.record_schedule_slot(workflow, now).await?;
            }
            tx.notify_wake();
            tx.commit().await
        })
        .await?;
        self.poke();
        tracing::info!(%workflow, paused, "workflow paused state set");
        Ok(())
    }

    /// Deletes a version of a workflow that has no run and is not the
    /// latest (whose number stays taken, so versions never change).
    pub async fn delete_version(&self, workflow: &str, version: i64) -> Result<(), Error> {
        retry(TRANSIENT_DB, Error::is_transient, || async move {
            let mut tx = self.store.begin().await?;
            tx.delete_version(workflow, version).await?;
            tx.commit().await
        })
        .await?;
        self.workflows
            .lock()
            .expect("poisoned")
            .remove(&(workflow.to_owned(), version));
        tracing::info!(%workflow, version, "workflow version deleted");
        Ok(())
    }

    /// One run per cron slot of the workflow's schedule in `[from, until)`,
    /// trigger `backfill`, params `{"slot": …}` as the schedule gives. A slot
    /// that already ran (by schedule or backfill) is not run again unless
    /// `rerun`. With `max_parallel`, the first slots start now and the others
    /// as backfill runs end. Returns at once; the runs are to be advanced.
    pub async fn backfill(&self, workflow: &str, req: BackfillRequest) -> Result<Backfill, Error> {
        let wf = self.workflow(workflow, None).await?;
        let schedule = match wf.spec.parsed_schedule() {
            Some(Ok(s)) => s,
            Some(Err(e)) => return Err(Error::Invalid(e)),
            None => {
                return Err(Error::Invalid(format!(
                    "workflow {workflow:?} has no schedule: nothing to backfill"
                )))
            }
        };
        if req.from >= req.until {
            return Err(Error::Invalid(format!(
                "backfill: from ({}) must be before to ({})",
                req.from, req.until
            )));
        }
        let max = limits::MAX_BACKFILL_PARALLEL;
        let parallel = match req.max_parallel {
            Some(0) => {
                return Err(Error::Invalid(
                    "backfill: max_parallel must be at least 1".into(),
                ))
            }
            Some(n) if n > max => {
                return Err(Error::Invalid(format!(
                    "backfill: max_parallel is {n}, the maximum is {max}"
                )))
            }
            Some(n) => i64::from(n),
            None => i64::from(max),
        };
        let slots = schedule.between(req.from, req.until, limits::MAX_BACKFILL_SLOTS + 1);
        if slots.len() > limits::MAX_BACKFILL_SLOTS {
            return Err(Error::Invalid(format!(
                "backfill: the range has more than {} slots of {:?}; split it",
                limits::MAX_BACKFILL_SLOTS,
                schedule_text(&wf.spec)
            )));
        }
        let Some(first) = slots.first().copied() else {
            return Ok(Backfill {
                id: Uuid::nil(),
                workflow: workflow.to_owned(),
                slots,
                started: Vec::new(),
                existing: 0,
                waiting: 0,
            });
        };
        let row = ActiveBackfill {
            id: Uuid::now_v7(),
            workflow: workflow.to_owned(),
            next_slot: first,
            until_at: req.until,
            max_parallel: parallel,
            rerun: req.rerun,
            open: 0,
        };
        let row_ref = &row;
        retry(TRANSIENT_DB, Error::is_transient, || async move {
            let mut tx = self.store.begin().await?;
            tx.insert_backfill(row_ref, Utc::now()).await?;
            tx.notify_wake();
            tx.commit().await
        })
        .await?;
        tracing::info!(%workflow, backfill = %row.id, slots = slots.len(), parallel, "backfill created");
        let progress = self.continue_backfills().await?;
        let started: Vec<Uuid> = progress
            .iter()
            .filter(|p| p.backfill == row.id)
            .flat_map(|p| p.started.iter().copied())
            .collect();
        let existing = progress
            .iter()
            .filter(|p| p.backfill == row.id)
            .map(|p| p.existing)
            .sum();
        let waiting = match self
            .store
            .active_backfills()
            .await?
            .into_iter()
            .find(|b| b.id == row.id)
        {
            Some(b) => slots.iter().filter(|s| **s >= b.next_slot).count(),
            None => 0,
        };
        Ok(Backfill {
            id: row.id,
            workflow: workflow.to_owned(),
            slots,
            started,
            existing,
            waiting,
        })
    }

    /// Starts the next slots of every backfill in progress while fewer than
    /// its `max_parallel` backfill runs of the workflow are open, and moves
    /// its cursor. Safe to race: the slots come from the cursor and their
    /// runs from idempotency keys, and an open run of a slot counts against
    /// the room whoever started it. Returns the runs started, to advance.
    pub async fn continue_backfills(&self) -> Result<Vec<BackfillProgress>, Error> {
        let mut progress = Vec::new();
        for b in self.store.active_backfills().await? {
            match self.continue_backfill(&b).await {
                Ok(p) => progress.push(p),
                Err(e) => {
                    tracing::error!(backfill = %b.id, workflow = %b.workflow, error = %e, "backfill: cannot continue")
                }
            }
        }
        Ok(progress)
    }

    async fn continue_backfill(&self, b: &ActiveBackfill) -> Result<BackfillProgress, Error> {
        let mut p = BackfillProgress {
            backfill: b.id,
            started: Vec::new(),
            existing: 0,
        };
        let mut room = b.max_parallel - b.open;
        if room <= 0 {
            return Ok(p);
        }
        let wf = self.workflow(&b.workflow, None).await?;
        let Some(Ok(schedule)) = wf.spec.parsed_schedule() else {
            // The schedule was removed by a new version: nothing to follow.
            let mut tx = self.store.begin().await?;
            tx.move_backfill(b.id, b.next_slot, None).await?;
            tx.commit().await?;
            return Ok(p);
        };
        let slots = schedule.between(b.next_slot, b.until_at, limits::MAX_BACKFILL_SLOTS + 1);
        let mut next = None;
        for slot in &slots {
            if room == 0 {
                next = Some(*slot);
                break;
            }
            let key = if b.rerun {
                format!("backfill:{}:{}", b.id, slot.to_rfc3339())
            } else {
                format!("schedule:{}", slot.to_rfc3339())
            };
            let opts = TriggerOptions {
                trigger: "backfill".into(),
                idempotency_key: Some(key),
            };
            let t = self
                .trigger(&b.workflow, serde_json::json!({ "slot": slot }), opts)
                .await?;
            if t.created {
                p.started.push(t.run.id);
                room -= 1;
            } else {
                p.existing += 1;
                if !t.run.status.is_final() {
                    room -= 1;
                }
            }
        }
        let mut tx = self.store.begin().await?;
        tx.move_backfill(b.id, b.next_slot, next).await?;
        tx.commit().await?;
        if !p.started.is_empty() {
            tracing::info!(backfill = %b.id, workflow = %b.workflow, started = p.started.len(), "backfill started slots");
        }
        Ok(p)
    }
}

/// What [`Engine::continue_backfills`] did for one backfill.
#[derive(Debug, Clone)]
pub struct BackfillProgress {
    pub backfill: Uuid,
    pub started: Vec<Uuid>,
    /// Slots found with a run already (not started again).
    pub existing: usize,
}

fn schedule_text(spec: &crate::spec::WorkflowSpec) -> String {
    spec.schedule.clone().unwrap_or_default()
}
