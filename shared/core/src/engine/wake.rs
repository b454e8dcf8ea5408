//! When a host should next sweep: [`Engine::next_due`], the earliest retry,
//! deadline, lease or cron slot, and [`Engine::wake_handle`], poked by every
//! local write that may bring it closer. `ork serve`'s sweeper loop sleeps
//! until the earlier of that time and its tick; the Lambda host schedules a
//! one-time wake-up when it is sooner than the minute schedule.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::Engine;
use crate::spec::Schedule;
use crate::store::reads::Due;
use crate::Error;

/// What [`Engine::next_due`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NextDue {
    /// The earliest time after `after` at which a sweep has work: a retry's
    /// backoff ends, an attempt's timeout or lease expires, a cron slot
    /// comes. `None`: nothing is scheduled.
    pub at: Option<DateTime<Utc>>,
    /// An attempt of a polled executor is running, or a backfill is in
    /// progress: sweep every tick.
    pub polled: bool,
}

/// What the cron slots depend on: how many workflows, the latest applied,
/// the latest slot fired.
type CronKey = (i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The schedules of the workflows, reloaded when a workflow is applied or a
/// slot fired (the fingerprint [`Due`] carries changes).
#[derive(Default)]
pub(super) struct CronCache {
    key: Option<CronKey>,
    /// Each scheduled workflow's schedule and the time its next slot follows.
    schedules: Vec<(Schedule, DateTime<Utc>)>,
}

impl Engine {
    /// Notified after local writes that may bring the next due time closer
    /// (a trigger, a completion, a dispatch). One permit: pokes coalesce.
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    pub(super) fn poke(&self) {
        self.wake.notify_one();
    }

    /// The earliest time after `after` at which [`Engine::sweep`] has work.
    /// One query ([`crate::store::Store::next_due_at`]); the cron slots are
    /// computed here from schedules cached until a workflow is applied or a
    /// slot fires.
    pub async fn next_due(&self, after: DateTime<Utc>) -> Result<NextDue, Error> {
        let due = self.store.next_due_at(after).await?;
        let slot = self.next_slot(&due, after).await?;
        let at = [due.earliest(), slot].into_iter().flatten().min();
        Ok(NextDue {
            at,
            polled: due.polled > 0 || due.backfills > 0,
        })
    }

    async fn next_slot(
        &self,
        due: &Due,
        after: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, Error> {
        let key = Some((due.workflows, due.workflows_at, due.slots_at));
        let stale = self.crons.lock().expect("poisoned").key != key;
        if stale {
            let last = self.store.schedule_slots().await?;
            let mut schedules = Vec::new();
            for summary in self.store.list_workflows().await? {
                let wf = self
                    .workflow(&summary.name, Some(summary.latest_version))
                    .await?;
                let Some(Ok(schedule)) = wf.spec.parsed_schedule() else {
                    continue;
                };
                if summary.paused {
                    continue;
                }
                let from = last
                    .iter()
                    .find(|(w, _)| *w == summary.name)
                    .map_or(summary.updated_at, |(_, slot)| *slot);
                schedules.push((schedule, from));
            }
            *self.crons.lock().expect("poisoned") = CronCache { key, schedules };
        }
        let crons = self.crons.lock().expect("poisoned");
        Ok(crons
            .schedules
            .iter()
            .filter_map(|(s, from)| s.next_after((*from).max(after)))
            .min())
    }
}
