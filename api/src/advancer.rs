//! How a handler gets `advance` run for a run after a trigger or a
//! completion, without waiting for it.

use std::sync::Arc;

use ork_core::engine::Engine;
use uuid::Uuid;

/// The way to the `advance` handler.
#[derive(Clone)]
pub enum Advancer {
    /// In this process, in the background (`ork serve`).
    Spawn,
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

impl Advancer {
    pub async fn advance(&self, engine: &Arc<Engine>, run_id: Uuid) {
        let event = serde_json::json!({ "run_id": run_id });
        match self {
            Advancer::Spawn => {
                let engine = engine.clone();
                tokio::spawn(async move {
                    if let Err(e) = engine.advance(run_id).await {
                        tracing::error!(%run_id, error = %e, "advance failed");
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
