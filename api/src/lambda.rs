//! The handlers as AWS Lambda functions. A function receives either an HTTP
//! request (a Function URL or API Gateway, payload format 1.0 or 2.0), which
//! `lambda_http` turns into an `http::Request` for the same axum [`Router`]
//! that `ork serve` runs, or a non-HTTP event, read by the small typed
//! [`Event`] branch: an asynchronous `{"run_id"}` invocation of `advance`,
//! an EventBridge schedule (a sweep, or a scheduled trigger), an ECS
//! task-state change for `on-task-complete`.

use futures::FutureExt as _;
use std::sync::Arc;

use axum::Router;
use lambda_http::request::LambdaRequest;
use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

use crate::advancer::Advancer;
use crate::handlers::{Handlers, Reply};

/// Which of the three functions this binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Trigger,
    Advance,
    OnTaskComplete,
}

impl Function {
    /// The route a request to the root of this function's URL means: a
    /// Function URL is one endpoint, so `POST /` to the `trigger` function is
    /// `POST /trigger`. Other paths are routed as they are, so a function's
    /// URL also serves `/heartbeat`, `/api/…` and the web UI.
    fn root_route(self) -> &'static str {
        match self {
            Function::Trigger => "/trigger",
            Function::Advance => "/advance",
            Function::OnTaskComplete => "/complete",
        }
    }
}

/// Runs one function until the Lambda runtime stops it.
pub async fn run(function: Function) -> Result<(), lambda_runtime::Error> {
    let format = crate::config::Config::from_env()
        .map(|c| c.log_format)
        .unwrap_or(crate::config::LogFormat::Text);
    crate::config::init_tracing("info", format, false);
    // Background work is frozen once a Lambda function answers, so
    // without an `advance` function to invoke, advance inline.
    let defaults = crate::config::Defaults {
        advancer: Advancer::Inline,
        callback_url: None,
        worker_program: None,
        signer: None,
    };
    let config = crate::config::Config::from_env()?;
    let setup = crate::config::setup(&config, defaults).await?;
    let handlers = setup.handlers;
    if handlers.engine.config().callback.is_none() {
        tracing::warn!(
            "ORK_CALLBACK_URL is not set: workers started here have no way to report back"
        );
    }
    let router = crate::http::router(handlers.clone());
    // Boxed, like the router's future below: inline, the type is too deep
    // for the compiler's layout recursion limit.
    Box::pin(lambda_runtime::run(service_fn(
        move |event: LambdaEvent<Value>| {
            let (handlers, router) = (handlers.clone(), router.clone());
            async move {
                Ok::<Value, lambda_runtime::Error>(
                    handle(&handlers, &router, function, event).await,
                )
            }
        },
    )))
    .await
}

/// Routes one event; public so that tests can call it without a runtime.
pub async fn handle(
    handlers: &Arc<Handlers>,
    router: &Router,
    function: Function,
    event: LambdaEvent<Value>,
) -> Value {
    let LambdaEvent { payload, context } = event;
    if payload.get("requestContext").is_some() {
        return match serde_json::from_value::<LambdaRequest>(payload) {
            // Boxed: the router's future is deep enough to overflow the
            // compiler's layout recursion limit inline.
            Ok(request) => Box::pin(serve_http(router, function, request, context)).await,
            Err(e) => {
                json!({ "statusCode": 400, "body": json!({"error": format!("unreadable HTTP event: {e}")}).to_string() })
            }
        };
    }
    handle_event(handlers, function, payload).await
}

/// A non-HTTP event (asynchronous invocation, EventBridge), answered as
/// `{"status", "body"}`.
pub async fn handle_event(handlers: &Arc<Handlers>, function: Function, payload: Value) -> Value {
    let reply = match Event::read(function, payload) {
        // A panic answers 500 rather than killing the function's runtime.
        // Boxed, as above: the report path's future is deep.
        Ok(event) => std::panic::AssertUnwindSafe(Box::pin(event.handle(handlers)))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| {
                tracing::error!("event handler panicked");
                Reply::error(500, "internal error (see the server log)")
            }),
        Err(reply) => reply,
    };
    json!({ "status": reply.status, "body": reply.body })
}

/// An HTTP event through the router, answered in the shape its origin expects.
async fn serve_http(
    router: &Router,
    function: Function,
    request: LambdaRequest,
    context: lambda_runtime::Context,
) -> Value {
    let adapter = lambda_http::Adapter::from(service_fn(move |mut req: lambda_http::Request| {
        let router = router.clone();
        async move {
            // A POST to the Function URL's root is the function's own
            // route; a GET of it is the web UI (`crate::ui`).
            if matches!(req.uri().path(), "" | "/") && req.method() != axum::http::Method::GET {
                let mut parts = req.uri().clone().into_parts();
                parts.path_and_query = Some(
                    match req.uri().query() {
                        Some(q) => format!("{}?{q}", function.root_route()),
                        None => function.root_route().to_owned(),
                    }
                    .parse()
                    .expect("a static route is a valid path"),
                );
                *req.uri_mut() = axum::http::Uri::from_parts(parts).expect("valid uri");
            }
            router.oneshot(req.map(axum::body::Body::new)).await
        }
    }));
    let response = adapter
        .oneshot(LambdaEvent::new(request, context))
        .await
        .expect("the router is infallible");
    serde_json::to_value(response).expect("a Lambda response serializes")
}

/// The events a function takes other than HTTP requests.
enum Event {
    /// `{"run_id": …}`: an asynchronous invocation after a trigger or completion.
    AdvanceRun(Uuid),
    /// The EventBridge schedule of `advance` (any other payload): a sweep.
    Sweep,
    /// A scheduled trigger: `{"workflow": …}` or an EventBridge event whose
    /// `detail` names it.
    TriggerScheduled(String),
    /// A platform event for `on-task-complete` (ECS task-state change,
    /// Cloud Run execution), checked before anything is recorded.
    Platform(Value),
}

#[derive(Deserialize)]
struct RunId {
    run_id: Uuid,
}

impl Event {
    fn read(function: Function, payload: Value) -> Result<Event, Reply> {
        match function {
            Function::Advance => match payload.get("run_id") {
                Some(_) => RunId::deserialize(&payload)
                    .map(|r| Event::AdvanceRun(r.run_id))
                    .map_err(|e| Reply::error(400, format!("invalid advance event: {e}"))),
                None => Ok(Event::Sweep),
            },
            Function::Trigger => payload
                .get("workflow")
                .or_else(|| payload["detail"].get("workflow"))
                .and_then(Value::as_str)
                .map(|w| Event::TriggerScheduled(w.to_owned()))
                .ok_or_else(|| {
                    Reply::error(400, "a scheduled trigger event must name a `workflow`")
                }),
            Function::OnTaskComplete => Ok(Event::Platform(payload)),
        }
    }

    async fn handle(self, handlers: &Arc<Handlers>) -> Reply {
        match self {
            Event::AdvanceRun(run_id) => handlers.advance_run(run_id).await,
            Event::Sweep => handlers.sweep().await,
            Event::TriggerScheduled(workflow) => handlers.trigger_scheduled(&workflow).await,
            Event::Platform(event) => handlers.event(&event).await,
        }
    }
}
