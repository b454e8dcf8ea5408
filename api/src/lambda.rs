//! The handlers as AWS Lambda functions. Each function takes the events it
//! can receive — an HTTP request through a Function URL or API Gateway
//! (payload format 1.0 or 2.0), an asynchronous invocation, or an
//! EventBridge event — and answers through the Lambda Runtime API.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};

use crate::advancer::Advancer;
use crate::handlers::{Handlers, Reply};

/// Which of the three functions this binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Trigger,
    Advance,
    OnTaskComplete,
}

/// Runs one function until the Lambda runtime stops it.
pub async fn run(function: Function) -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .without_time()
        .init();
    // Background work is frozen once a Lambda function answers, so
    // without an `advance` function to invoke, advance inline.
    let defaults = crate::config::Defaults {
        advancer: Advancer::Inline,
        callback_url: None,
        worker_program: None,
        signer: None,
    };
    let setup = crate::config::from_env(defaults).await?;
    let handlers = setup.handlers;
    if handlers.engine.config().callback.is_none() {
        tracing::warn!(
            "ORK_CALLBACK_URL is not set: workers started here have no way to report back"
        );
    }
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let handlers = handlers.clone();
        async move {
            Ok::<Value, lambda_runtime::Error>(handle(&handlers, function, event.payload).await)
        }
    }))
    .await
}

/// An HTTP request as Lambda delivers it.
struct HttpEvent {
    path: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

impl HttpEvent {
    /// Reads payload format 2.0 (`rawPath`) or 1.0 (`httpMethod`, `path`).
    fn parse(event: &Value) -> Option<HttpEvent> {
        event.get("requestContext")?;
        let path = event
            .get("rawPath")
            .or_else(|| event.get("path"))?
            .as_str()?
            .to_owned();
        let authorization = event["headers"]
            .as_object()
            .and_then(|h| {
                h.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            })
            .and_then(|(_, v)| v.as_str())
            .map(str::to_owned);
        let raw = event["body"].as_str().unwrap_or_default();
        let body = if event["isBase64Encoded"].as_bool() == Some(true) {
            B64.decode(raw).unwrap_or_default()
        } else {
            raw.as_bytes().to_vec()
        };
        Some(HttpEvent {
            path,
            authorization,
            body,
        })
    }
}

fn http_response(reply: Reply) -> Value {
    json!({
        "statusCode": reply.status,
        "headers": { "content-type": "application/json" },
        "body": reply.body.to_string(),
        "isBase64Encoded": false,
        "cookies": [],
    })
}

/// Routes one event to its handler; public so tests can call it directly.
pub async fn handle(handlers: &Arc<Handlers>, function: Function, event: Value) -> Value {
    if let Some(http) = HttpEvent::parse(&event) {
        let reply = match function {
            Function::Trigger => {
                handlers
                    .trigger(http.authorization.as_deref(), &http.body)
                    .await
            }
            Function::Advance => match handlers.authorize(http.authorization.as_deref()) {
                Ok(()) => handlers.advance(&http.body).await,
                Err(reply) => reply,
            },
            Function::OnTaskComplete if http.path.ends_with("/heartbeat") => {
                handlers.heartbeat(&http.body).await
            }
            Function::OnTaskComplete => handlers.complete(&http.body).await,
        };
        return http_response(reply);
    }
    let reply = match function {
        // `{"run_id": …}` from an asynchronous invocation; anything else
        // (the EventBridge schedule) is a sweep.
        Function::Advance => {
            let body = match event.get("run_id") {
                Some(id) => json!({ "run_id": id }).to_string(),
                None => String::new(),
            };
            handlers.advance(body.as_bytes()).await
        }
        Function::Trigger => {
            match event
                .get("workflow")
                .or_else(|| event["detail"].get("workflow"))
                .and_then(Value::as_str)
            {
                Some(workflow) => handlers.trigger_scheduled(workflow).await,
                None => Reply::error(400, "a scheduled trigger event must name a `workflow`"),
            }
        }
        Function::OnTaskComplete => handlers.event(&event).await,
    };
    json!({ "status": reply.status, "body": reply.body })
}
