//! The sweeper loop of a long-lived host (`ork serve`): it sweeps when
//! something is due instead of on a fixed tick alone.
//!
//! Each turn asks [`Engine::next_due`] (one query) and sleeps until the
//! earlier of that time and the next tick, or until woken: by the engine's
//! [`Engine::wake_handle`] after a local write, or by
//! [`ork_core::store::Store::watch`] when another process (a CLI `ork
//! trigger`) committed. It sweeps only when something is due, so an idle
//! host runs one query per tick. What a sweep could not fix (an item still
//! due after it) is left to the next tick instead of spinning on it.

use std::sync::Arc;
use std::time::Duration;

use std::panic::AssertUnwindSafe;

use chrono::{DateTime, Utc};
use futures::FutureExt;
use ork_core::engine::{Engine, NextDue};

use crate::http::Health;

/// Runs forever: sweeps `engine` when something is due, at the latest
/// every `tick` when an attempt must be polled, and checks what is due
/// at least every `tick`.
pub async fn run(engine: Arc<Engine>, tick: Duration, health: Arc<Health>) {
    let wake = engine.wake_handle();
    // Other processes' commits wake this loop too.
    let _watch = match engine.store().watch(wake.clone()).await {
        Ok(handle) => Some(AbortOnDrop(handle)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the database for other processes' writes");
            None
        }
    };
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let mut next_tick = tokio::time::Instant::now();
    // The start of the last sweep: what was due before it is left to the tick.
    let mut swept_at: Option<DateTime<Utc>> = None;
    loop {
        // Each turn checks what is due: the loop is alive.
        health.passed();
        let at_tick = tokio::time::Instant::now() >= next_tick;
        if at_tick {
            next_tick = tokio::time::Instant::now() + tick;
        }
        let after = if at_tick {
            epoch
        } else {
            swept_at.unwrap_or(epoch)
        };
        let now = Utc::now();
        let due = match engine.next_due(after).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, "reading the next due time failed");
                // Sweep at the tick, as without a due time.
                NextDue {
                    at: at_tick.then_some(now),
                    polled: false,
                }
            }
        };
        if due.at.is_some_and(|t| t <= now) || (at_tick && due.polled) {
            swept_at = Some(now);
            match AssertUnwindSafe(engine.sweep()).catch_unwind().await {
                Ok(Ok(s)) => tracing::debug!(?s, "swept"),
                Ok(Err(e)) => tracing::error!(error = %e, "sweep failed"),
                Err(_) => tracing::error!("sweep panicked"),
            }
            // Look again, counting only what comes due after this sweep.
            continue;
        }
        let mut until = next_tick;
        if let Some(at) = due.at {
            let wait = (at - Utc::now()).to_std().unwrap_or_default();
            until = until.min(tokio::time::Instant::now() + wait);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = wake.notified() => {}
        }
    }
}

/// Stops the watch task with the loop.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// `ORK_RETENTION`: runs `ork gc` on its own, at start and then every
/// `retention` or every hour, whichever is shorter (at least every second).
/// Several servers on one database may do so: racing gc callers delete
/// each run once.
pub async fn retain(engine: Arc<Engine>, retention: Duration, log_dir: Option<std::path::PathBuf>) {
    let every = retention.clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        match AssertUnwindSafe(engine.gc(retention, log_dir.as_deref()))
            .catch_unwind()
            .await
        {
            Ok(Ok(c)) if c.runs > 0 || !c.errors.is_empty() => {
                tracing::info!(runs = c.runs, objects = c.objects, errors = ?c.errors, "retention: runs deleted")
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "retention: gc failed"),
            Err(_) => tracing::error!("retention: gc panicked"),
        }
        tokio::time::sleep(every).await;
    }
}
