//! A fake AWS Lambda `Invoke` endpoint that runs Ork's worker function
//! (`functions/src/bin/worker.rs`) as Lambda would: a fresh process per
//! event, fed through the Lambda Runtime API ([`crate::lambda_runtime`]),
//! stopped once it has answered.
//!
//! `POST /2015-03-31/functions/{name}/invocations` (the REST shape
//! `aws-sdk-lambda` sends; `X-Amz-Invocation-Type`, `?Qualifier=`) is
//! recorded; for a function added with [`FakeLambda::add_function`] it
//! answers 202 with an `x-amzn-RequestId` and starts the invocation in the
//! background; for any other, 404 `ResourceNotFoundException` in Lambda's
//! error shape.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

/// One `Invoke` as the endpoint got it.
#[derive(Debug, Clone)]
pub struct Invoked {
    pub function: String,
    pub query: Option<String>,
    pub invocation_type: Option<String>,
    pub event: Value,
}

#[derive(Default)]
struct Inner {
    /// The environment of each known function's processes.
    functions: HashMap<String, Vec<(String, String)>>,
    invoked: Vec<Invoked>,
    /// Function processes running now, and the answers of those that ended.
    alive: usize,
    answers: Vec<Result<Value, Value>>,
}

/// A running fake; the server stops when this is dropped.
pub struct FakeLambda {
    /// `http://127.0.0.1:PORT`, the endpoint for the Lambda client.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeLambda {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeLambda {
    pub async fn start() -> FakeLambda {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let app = Router::new()
            .route("/2015-03-31/functions/{name}/invocations", post(invoke))
            .with_state(inner.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake lambda");
        });
        FakeLambda { url, inner, server }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("poisoned")
    }

    /// Makes function `name` exist: Ork's worker function, run with `env`
    /// (the function's configuration) on top of this process's.
    pub fn add_function(&self, name: &str, env: &[(&str, &str)]) {
        let env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.lock().functions.insert(name.to_owned(), env);
    }

    pub fn invoked(&self) -> Vec<Invoked> {
        self.lock().invoked.clone()
    }

    /// Function processes running now.
    pub fn alive(&self) -> usize {
        self.lock().alive
    }

    /// The answers of the invocations that ended.
    pub fn answers(&self) -> Vec<Result<Value, Value>> {
        self.lock().answers.clone()
    }
}

/// An `aws-sdk-lambda` client for `endpoint`, with static test credentials.
pub async fn client(endpoint: &str) -> aws_sdk_lambda::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_lambda::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_lambda::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .load()
        .await;
    aws_sdk_lambda::Client::new(&config)
}

async fn invoke(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let env = {
        let mut inner = inner.lock().expect("poisoned");
        inner.invoked.push(Invoked {
            function: name.clone(),
            query,
            invocation_type,
            event: event.clone(),
        });
        inner.functions.get(&name).cloned()
    };
    let Some(env) = env else {
        return (
            StatusCode::NOT_FOUND,
            [("x-amzn-errortype", "ResourceNotFoundException")],
            json!({"Type": "User", "Message": format!("Function not found: arn:aws:lambda:us-east-1:123456789012:function:{name}")}).to_string(),
        )
            .into_response();
    };
    inner.lock().expect("poisoned").alive += 1;
    tokio::spawn(async move {
        let answer = run_once(&name, &env, event).await;
        let mut inner = inner.lock().expect("poisoned");
        inner.alive -= 1;
        inner.answers.push(answer);
    });
    (
        StatusCode::ACCEPTED,
        [("x-amzn-requestid", uuid::Uuid::new_v4().to_string())],
        "",
    )
        .into_response()
}

/// Runs the worker function for one event and returns its answer.
async fn run_once(name: &str, env: &[(String, String)], event: Value) -> Result<Value, Value> {
    let binary = crate::bin::path("ork-functions", "worker");
    crate::lambda_runtime::invoke(&binary, name, env, event)
        .await
        .answer
}
