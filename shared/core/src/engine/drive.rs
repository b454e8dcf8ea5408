use std::collections::HashSet;
use std::time::Duration;

use tokio::sync::mpsc;
use uuid::Uuid;

use super::Engine;
use crate::executor::Completion;
use crate::model::RunStatus;
use crate::Error;

/// How often a driven run is advanced without news, to pick up retries
/// whose backoff has passed.
const TICK: Duration = Duration::from_millis(200);

/// Drives one run to its end within this process (`ork run`, `ork run
/// --resume`): advance, wait for the completions that local executors
/// report, record them, and hand out the children they released (claimed
/// in the same transaction, as a report batch does), until the run is
/// final. Returns the final status. An `advance` follows a batch only when
/// its claim could not take everything: limits, immediate executors, a
/// full claim, or attempts that ended at once.
///
/// Leases: this process owns the children it started (the in-process
/// executor reports their ends, no heartbeat comes over HTTP), so it renews
/// their leases every quarter of `heartbeat_timeout` while it lives. When it
/// dies (kill -9), the leases run out and whoever sweeps next (`ork serve`'s
/// ticker, or this loop in a later `ork run --resume`) fails those attempts
/// and retries them per policy. Attempts of the run this process did not
/// start (a previous, dead `ork run`'s) are never renewed here: this loop
/// sweeps the run's expired leases too.
pub async fn drive(
    engine: &Engine,
    run_id: Uuid,
    completions: &mut mpsc::UnboundedReceiver<Completion>,
) -> Result<RunStatus, Error> {
    let mut owned: HashSet<(Uuid, i64)> = HashSet::new();
    // Whether to read the run again before waiting: after a completion
    // batch that did not finalize it, this process knows it is open (and
    // advances it as last read); a cancel from elsewhere is seen at the
    // next tick.
    let mut run = engine.store().get_run(run_id).await?;
    // A run that has started may hold attempts of a dead `ork run`
    // (`--resume`): their expired leases are swept now, not a renewal
    // period later. A new run has none, and its first ticks come one
    // period in: nothing is due before.
    if run.status == RunStatus::Running {
        engine.expire_leases(Some(run_id)).await?;
    }
    let now = tokio::time::Instant::now();
    let mut tick = tokio::time::interval_at(now + TICK, TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let renew_every = (engine.config().heartbeat_timeout / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(30));
    let mut renew = tokio::time::interval_at(now + renew_every, renew_every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut read_status = true;
    // Whether the run may have ready tasks no claim has taken: not after a
    // completion batch whose transaction claimed all it made ready (the
    // tick picks up retries whose backoff has passed since).
    let mut advance = true;
    loop {
        if run.status.is_final() {
            return Ok(run.status);
        }
        if advance {
            let advanced = engine.advance_run(&run).await?;
            owned.extend(advanced.started);
            if let Some(status) = advanced.finalized {
                return Ok(status);
            }
        }
        if read_status {
            run = engine.store().get_run(run_id).await?;
            if run.status.is_final() {
                return Ok(run.status);
            }
        }
        read_status = true;
        advance = true;
        tokio::select! {
            received = completions.recv() => {
                let Some(first) = received else {
                    return Err(Error::Internal("the executors' completion channel closed".into()));
                };
                let mut batch = vec![first];
                while let Ok(c) = completions.try_recv() {
                    batch.push(c);
                }
                let done = engine.complete_and_claim(&batch, true).await?;
                if let Some((_, status)) = done.finalized.iter().find(|(r, _)| *r == run_id) {
                    return Ok(*status);
                }
                advance = done.to_advance.contains(&run_id);
                for released in done.released {
                    if released.run_id != run_id {
                        engine.dispatch_released(released).await?;
                        continue;
                    }
                    let step = engine.hand_off_released(&run, released).await?;
                    owned.extend(step.started);
                    if let Some(status) = step.finalized {
                        return Ok(status);
                    }
                    advance |= step.full || step.ended_any;
                }
                read_status = false;
            }
            _ = renew.tick() => {
                let mine: Vec<(Uuid, i64)> = owned.iter().copied().collect();
                owned = engine.renew_leases(&mine).await?.into_iter().collect();
                engine.expire_leases(Some(run_id)).await?;
            }
            _ = tick.tick() => {}
        }
    }
}
