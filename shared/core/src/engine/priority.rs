//! Completions before new starts. A report releases children that wait
//! for it; a big run's next claim batch only starts more work. On a
//! loaded host the two compete for the same CPUs (the database's and this
//! process's), so while reports are being recorded, `advance` defers its
//! next batch until they are done (for at most [`MOST_DEFERRED`]), claims
//! smaller batches ([`DEFERRED_BATCH`]) and on one lane.
//!
//! Measured (`--bench http`, a fan-out of 10,000 parents dispatched while
//! their completions arrive at 2,500/s): completion → child p99 went from
//! 35.5–43.4 ms to 12.8–15.0 ms; the slow pairs were those of the fan-out's
//! first 0.7 s.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Longest an `advance` batch waits for reports: under a steady stream of
/// them a fan-out still claims a batch per lane this often.
pub const MOST_DEFERRED: Duration = Duration::from_millis(10);

/// Most instances a deferred batch claims: a quarter of the default
/// `claim_batch`, so that a batch that starts while reports are recorded
/// holds the CPUs a quarter as long.
pub const DEFERRED_BATCH: i64 = 64;

/// How many [`crate::engine::Engine::report_all`] calls are under way,
/// and when the last one ended.
#[derive(Default)]
pub(super) struct Reports {
    in_flight: AtomicUsize,
    idle: Notify,
    last_end: Mutex<Option<Instant>>,
}

/// Held while reports are recorded; dropping it may wake the deferred.
pub(super) struct Recording<'a>(&'a Reports);

impl Reports {
    pub(super) fn recording(&self) -> Recording<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Recording(self)
    }

    /// Whether reports are being recorded, or were within the last
    /// [`MOST_DEFERRED`]: a stream of them has gaps between batches.
    pub(super) fn busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0
            || self
                .last_end
                .lock()
                .expect("poisoned")
                .is_some_and(|at| at.elapsed() < MOST_DEFERRED)
    }

    /// Returns once no report is being recorded, or after [`MOST_DEFERRED`].
    pub(super) async fn idle(&self) {
        let deadline = Instant::now() + MOST_DEFERRED;
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            // Registered before the check, so a drop to zero in between
            // still wakes this waiter.
            notified.as_mut().enable();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return;
            }
        }
    }
}

impl Drop for Recording<'_> {
    fn drop(&mut self) {
        *self.0.last_end.lock().expect("poisoned") = Some(Instant::now());
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_for_reports_and_no_longer_than_most_deferred() {
        let reports = Reports::default();
        // Nothing recorded: no wait.
        let t = Instant::now();
        assert!(!reports.busy());
        reports.idle().await;
        assert_eq!(t.elapsed(), Duration::ZERO);

        // Recorded for 3 ms: the wait ends with it, and the host stays
        // busy for MOST_DEFERRED after.
        let guard = reports.recording();
        assert!(reports.busy());
        tokio::join!(
            async {
                tokio::time::sleep(Duration::from_millis(3)).await;
                drop(guard);
            },
            reports.idle()
        );
        assert_eq!(t.elapsed(), Duration::from_millis(3));
        assert!(reports.busy());
        tokio::time::sleep(MOST_DEFERRED).await;
        assert!(!reports.busy());

        // Recorded for longer: the wait ends after MOST_DEFERRED.
        let _held = reports.recording();
        let t = Instant::now();
        reports.idle().await;
        assert_eq!(t.elapsed(), MOST_DEFERRED);
    }
}
