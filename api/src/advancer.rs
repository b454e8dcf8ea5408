//! How a handler gets `advance` run for a run after a trigger or a
//! completion, without waiting for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use ork_core::engine::{Engine, Released};
use uuid::Uuid;

/// The way to the `advance` handler.
#[derive(Clone)]
pub enum Advancer {
    /// In this process, in the background (`ork serve`), one `advance`
    /// of a run at a time ([`Advancer::spawn`]).
    Spawn(Running),
    /// In this call, before it returns (a Lambda function with no
    /// `ORK_ADVANCE_FUNCTION`: background work would be frozen with it).
    Inline,
    /// An asynchronous invocation of the `advance` Lambda function
    /// (`InvocationType=Event`): the caller returns at once.
    Lambda {
        client: aws_sdk_lambda::Client,
        function: String,
    },
    /// A POST to an `advance` endpoint, not waiting for its answer.
    Http {
        client: reqwest::Client,
        url: String,
    },
}

/// The runs being advanced in the background, each with whether it was
/// asked for again meanwhile. Fifty completions of one run that arrive
/// together make one `advance` and at most one more after it, not fifty
/// racing claims: the second sees every completion committed before it was
/// asked for.
#[derive(Clone, Default)]
pub struct Running(Arc<Mutex<HashMap<Uuid, bool>>>);

impl Running {
    /// `true` when the caller is to advance the run (none is under way).
    fn start(&self, run_id: Uuid) -> bool {
        let mut running = self.0.lock().expect("poisoned");
        match running.get_mut(&run_id) {
            Some(again) => {
                *again = true;
                false
            }
            None => {
                running.insert(run_id, false);
                true
            }
        }
    }

    /// `true` when the run was asked for again during the last `advance`.
    fn again(&self, run_id: Uuid) -> bool {
        let mut running = self.0.lock().expect("poisoned");
        match running.get_mut(&run_id) {
            Some(again) if *again => {
                *again = false;
                true
            }
            _ => {
                running.remove(&run_id);
                false
            }
        }
    }
}

impl Advancer {
    /// [`Advancer::Spawn`], with nothing under way.
    pub fn spawn() -> Advancer {
        Advancer::Spawn(Running::default())
    }

    /// Whether a batch of reports claims the instances it makes ready, for
    /// [`Advancer::dispatch`] to hand to executors from this process: where
    /// `advance` runs in this process anyway (`Spawn`, `Inline`). A Lambda
    /// or HTTP advancer leaves dispatching to the `advance` function.
    pub fn dispatches_here(&self) -> bool {
        matches!(self, Advancer::Spawn(_) | Advancer::Inline)
    }

    /// Hands instances a report's transaction claimed to their executors
    /// (in the background with `Spawn`), then advances their run if it may
    /// have more ready.
    pub async fn dispatch(&self, engine: &Arc<Engine>, released: Released) {
        let run_id = released.run_id;
        let (engine, advancer) = (engine.clone(), self.clone());
        let work = async move {
            let dispatched = std::panic::AssertUnwindSafe(engine.dispatch_released(released));
            let again = match dispatched.catch_unwind().await {
                Ok(Ok(again)) => again,
                // What was claimed is requeued when its lease expires.
                Ok(Err(e)) => {
                    tracing::error!(%run_id, error = %e, "dispatching released tasks failed");
                    true
                }
                Err(_) => {
                    tracing::error!(%run_id, "dispatching released tasks panicked");
                    true
                }
            };
            if again {
                advancer.advance(&engine, run_id).await;
            }
        };
        match self {
            Advancer::Spawn(_) => {
                tokio::spawn(work);
            }
            _ => work.await,
        }
    }

    pub async fn advance(&self, engine: &Arc<Engine>, run_id: Uuid) {
        let event = serde_json::json!({ "run_id": run_id });
        match self {
            Advancer::Spawn(running) => {
                if !running.start(run_id) {
                    return;
                }
                let (engine, running) = (engine.clone(), running.clone());
                tokio::spawn(async move {
                    loop {
                        let advanced = std::panic::AssertUnwindSafe(engine.advance(run_id));
                        match advanced.catch_unwind().await {
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => tracing::error!(%run_id, error = %e, "advance failed"),
                            Err(_) => tracing::error!(%run_id, "advance panicked"),
                        }
                        if !running.again(run_id) {
                            break;
                        }
                    }
                });
            }
            Advancer::Inline => {
                if let Err(e) = engine.advance(run_id).await {
                    tracing::error!(%run_id, error = %e, "advance failed");
                }
            }
            Advancer::Lambda { client, function } => {
                let sent = client
                    .invoke()
                    .function_name(function)
                    .invocation_type(aws_sdk_lambda::types::InvocationType::Event)
                    .payload(aws_sdk_lambda::primitives::Blob::new(event.to_string()))
                    .send()
                    .await;
                if let Err(e) = sent {
                    // The sweeper advances the run within a minute anyway.
                    tracing::error!(%run_id, error = %aws_sdk_lambda::error::DisplayErrorContext(&e), "invoking advance failed");
                }
            }
            Advancer::Http { client, url } => {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    if let Err(e) = client.post(&url).json(&event).send().await {
                        tracing::error!(%run_id, error = %e, "posting to advance failed");
                    }
                });
            }
        }
    }
}
