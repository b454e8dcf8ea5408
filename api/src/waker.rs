//! Early wake-ups for hosts that only sweep on a schedule. On AWS the
//! `advance` function is swept every minute by EventBridge; a 5 s retry
//! backoff or a 10 s timeout would wait for that minute. After each piece
//! of work, the handlers ask the engine when the next thing is due and, when
//! that is sooner than the next minute sweep, create an EventBridge
//! Scheduler one-time schedule (`at(…)`, deleted after it fires) that
//! invokes `advance` then. The minute schedule stays the safety net.
//!
//! `ork serve` needs none of this: its sweeper loop sleeps until the next
//! due time itself (`crate::sweeper`).

use aws_sdk_scheduler::types::{
    ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target,
};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

/// Due times further away than this are left to the minute schedule.
const MINUTE_SWEEP: TimeDelta = TimeDelta::seconds(60);

/// How a host gets woken before its next scheduled sweep.
#[derive(Clone, Default)]
pub enum Waker {
    /// It does not need to be (its own loop sleeps until the due time), or
    /// no early wake-up is configured: the minute sweep does the work.
    #[default]
    None,
    /// EventBridge Scheduler one-time schedules that invoke `advance`.
    Scheduler {
        client: aws_sdk_scheduler::Client,
        /// The `advance` function's ARN.
        target_arn: String,
        /// The role EventBridge Scheduler assumes to invoke it.
        role_arn: String,
        /// The schedule group the one-time schedules go in.
        group: String,
    },
}

/// The name of the one-time schedule for a due time: one per second, so
/// that handlers racing to schedule the same wake-up create it once.
pub fn schedule_name(at: DateTime<Utc>) -> String {
    format!("ork-wake-{}", at.timestamp())
}

impl Waker {
    /// Makes sure `advance` runs at `due` when that is sooner than the next
    /// minute sweep. Returns the schedule created, if this call created one.
    /// Failures are logged: the minute sweep still comes.
    pub async fn wake_at(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> Option<String> {
        let Waker::Scheduler {
            client,
            target_arn,
            role_arn,
            group,
        } = self
        else {
            return None;
        };
        if due > now + MINUTE_SWEEP {
            return None;
        }
        // Whole seconds, never in the past: what `at()` takes.
        let at = (due.max(now) + TimeDelta::seconds(1)).trunc_subsecs(0);
        let name = schedule_name(at);
        let target = Target::builder()
            .arn(target_arn)
            .role_arn(role_arn)
            .input("{}")
            .build()
            .expect("arn and role are set");
        let created = client
            .create_schedule()
            .name(&name)
            .group_name(group)
            .schedule_expression(format!("at({})", at.format("%Y-%m-%dT%H:%M:%S")))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(
                FlexibleTimeWindow::builder()
                    .mode(FlexibleTimeWindowMode::Off)
                    .build()
                    .expect("mode is set"),
            )
            .action_after_completion(ActionAfterCompletion::Delete)
            .target(target)
            .send()
            .await;
        match created {
            Ok(_) => {
                tracing::debug!(%name, %at, "scheduled an early advance");
                Some(name)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conflict_exception()) =>
            {
                None
            }
            Err(e) => {
                tracing::warn!(%name, error = %aws_sdk_scheduler::error::DisplayErrorContext(&e), "cannot schedule an early advance; the minute sweep will do it");
                None
            }
        }
    }
}

/// After work that may have set a retry's backoff, a deadline or a lease:
/// asks the [`Waker`] to run `advance` when the next one is due, if that is
/// sooner than the next scheduled sweep. Only what is due after now
/// counts, so something stuck cannot make it spin.
pub async fn schedule_wake(engine: &ork_core::engine::Engine, waker: &Waker) {
    if matches!(waker, Waker::None) {
        return;
    }
    let now = Utc::now();
    match engine.next_due(now).await {
        Ok(ork_core::engine::NextDue { at: Some(at), .. }) => {
            waker.wake_at(at, now).await;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the next due time"),
    }
}
