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

/// Drives one run to its end within this process (`ork run`): advance, wait
/// for the completions that local executors report, record them, advance
/// again, until the run is final. Returns the final status.
pub async fn drive(
    engine: &Engine,
    run_id: Uuid,
    completions: &mut mpsc::UnboundedReceiver<Completion>,
) -> Result<RunStatus, Error> {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        engine.advance(run_id).await?;
        let run = engine.store().get_run(run_id).await?;
        if run.status.is_final() {
            return Ok(run.status);
        }
        tokio::select! {
            received = completions.recv() => {
                let Some(first) = received else {
                    return Err(Error::Internal("the executors' completion channel closed".into()));
                };
                let mut batch = vec![first];
                while let Ok(c) = completions.try_recv() {
                    batch.push(c);
                }
                engine.complete(&batch).await?;
            }
            _ = tick.tick() => {}
        }
    }
}
