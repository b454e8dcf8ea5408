//! Runs attempts as asynchronous AWS Lambda invocations.
//!
//! An attempt is one `Invoke` of the task's `lambda:` function with
//! `InvocationType: Event`: Lambda queues the event and answers 202 at once;
//! the function runs the task and reports its end to `ORK_CALLBACK_URL`
//! like any worker. The event is the worker contract as JSON
//! ([`invocation_event`]): `{"ork_worker": 1, "env": {…}, "command": […]}`.
//! Ork's `worker` function (`functions/src/bin/worker.rs`) runs `command`
//! with that environment under `ork worker`, heartbeats included; a
//! function of one's own may read the event and report instead
//! (docs/lambda.md).
//!
//! The execution id is `function/request-id`. Lambda has no API to stop
//! an invocation under way, nor to ask how one went: `cancel` stops
//! nothing itself (the worker in the function learns of it at its next
//! heartbeat, answered 410, and stops its program), `poll` knows nothing,
//! and an invocation that never reports fails when its heartbeat lease
//! runs out, as a lost worker does.
//!
//! Lambda has no idempotency key for `Invoke`: a dispatch repeated after a
//! lost answer invokes again. Both invocations run the same attempt with
//! the same callback token, and the engine applies an attempt's completion
//! at most once, so the cost is compute, not correctness.

use async_trait::async_trait;
use aws_sdk_lambda::operation::RequestId;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
use aws_sdk_lambda::Client;
use serde_json::{json, Map, Value};

use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError};
use ork_core::model::AttemptRef;

use crate::aws::sdk_error;

/// The largest event of an asynchronous invocation Lambda accepts.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// The event's version tag: what tells a function this is Ork's contract.
pub const EVENT_VERSION: u64 = 1;

/// Invokes each attempt's function with `InvocationType: Event`.
#[derive(Clone, Debug)]
pub struct LambdaExecutor {
    client: Client,
}

impl LambdaExecutor {
    pub fn new(client: Client) -> Self {
        LambdaExecutor { client }
    }

    /// A client configured by the standard AWS chain (region, credentials,
    /// `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_LAMBDA`). Credentials are looked
    /// up at the first call; when the chain finds none, that call fails with
    /// [`ExecutorError::NotConfigured`].
    pub async fn from_env() -> Result<Self, ExecutorError> {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        if config.credentials_provider().is_none() {
            return Err(ExecutorError::not_configured(
                "no AWS credentials provider for the Lambda executor",
            ));
        }
        Ok(Self::new(Client::new(&config)))
    }
}

/// The event of one attempt: the worker contract's environment
/// ([`DispatchRequest::container_env`], plus `ORK_TIMEOUT` when the task
/// has a timeout) and the task's argv (`command` then `args`; left out
/// when empty, for functions that know their program).
pub fn invocation_event(req: &DispatchRequest) -> Value {
    let mut env: Map<String, Value> = req
        .container_env()
        .into_iter()
        .map(|(name, value)| (name, Value::String(value)))
        .collect();
    if let Some(timeout) = req.timeout {
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        env.insert("ORK_TIMEOUT".into(), json!(format!("{secs}s")));
    }
    let mut event = json!({ "ork_worker": EVENT_VERSION, "env": env });
    let argv = req.spec.argv();
    if !argv.is_empty() {
        event["command"] = json!(argv);
    }
    event
}

#[async_trait]
impl Executor for LambdaExecutor {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let target = req
            .spec
            .lambda
            .as_ref()
            .ok_or_else(|| ExecutorError::permanent("lambda task without a `lambda:` block"))?;
        crate::check_remote_input(req, "a Lambda function")?;
        let event = invocation_event(req).to_string();
        if event.len() > MAX_EVENT_BYTES {
            return Err(ExecutorError::permanent(format!(
                "the Lambda event of this attempt is {} bytes, over the {MAX_EVENT_BYTES} bytes \
                 Lambda accepts for an asynchronous invocation (the task's env and input are in it)",
                event.len()
            )));
        }
        let out = self
            .client
            .invoke()
            .function_name(&target.function)
            .set_qualifier(target.qualifier.clone())
            .invocation_type(InvocationType::Event)
            .payload(Blob::new(event))
            .send()
            .await
            .map_err(|e| sdk_error(&format!("Lambda Invoke of {:?} failed", target.function), e))?;
        if out.status_code() != 202 {
            return Err(ExecutorError::permanent(format!(
                "Lambda Invoke of {:?} answered {} where an asynchronous invocation answers 202",
                target.function,
                out.status_code()
            )));
        }
        let request_id = out.request_id().unwrap_or("unknown");
        let execution_id = format!("{}/{request_id}", target.function);
        tracing::debug!(
            attempt = %req.attempt.task_id,
            task = %req.attempt.name,
            execution = %execution_id,
            "invoked Lambda function"
        );
        Ok(Dispatch::Started { execution_id })
    }

    /// Lambda cannot stop an invocation: the worker in the function stops
    /// its program when its next heartbeat is answered 410 (gone).
    async fn cancel(&self, attempt: &AttemptRef, execution_id: &str) -> Result<(), ExecutorError> {
        tracing::info!(
            attempt = %attempt.task_id,
            execution = execution_id,
            "a Lambda invocation cannot be stopped; its worker stops at its next heartbeat"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ork_core::spec::{ExecutorKind, LambdaTarget, TaskSpec};
    use std::time::Duration;
    use uuid::Uuid;

    fn request() -> DispatchRequest {
        DispatchRequest {
            batch: 1,
            attempt: AttemptRef {
                run_id: Uuid::nil(),
                workflow: "w".into(),
                version: 1,
                task_id: Uuid::nil(),
                name: "t".into(),
                task_index: 0,
                attempt: 2,
            },
            task_count: 1,
            spec: TaskSpec {
                executor: ExecutorKind::Lambda,
                command: Some("python3".into()),
                args: vec!["job.py".into()],
                env: [("ORK_ATTEMPT".to_owned(), "9".to_owned())].into(),
                lambda: Some(LambdaTarget {
                    function: "f".into(),
                    qualifier: None,
                }),
                ..TaskSpec::default()
            },
            base_dir: None,
            input: json!({"params": {}}),
            input_file: None,
            input_url: None,
            output_url: None,
            item: None,
            timeout: Some(Duration::from_millis(1500)),
            callback: None,
        }
    }

    #[test]
    fn the_event_is_the_worker_contract() {
        let event = invocation_event(&request());
        assert_eq!(event["ork_worker"], 1);
        assert_eq!(event["command"], json!(["python3", "job.py"]));
        assert_eq!(event["env"]["ORK_TASK"], "t");
        assert_eq!(
            event["env"]["ORK_ATTEMPT"], "2",
            "the contract wins a clash"
        );
        assert_eq!(event["env"]["ORK_TIMEOUT"], "2s");
        assert_eq!(event["env"]["ORK_INPUT"], r#"{"params":{}}"#);
    }
}
