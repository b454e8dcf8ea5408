//! The Lambda Runtime API for one event: how the tests run a Lambda binary
//! as AWS does, a process per event. The binary asks for the event
//! (`GET …/invocation/next`), answers it (`…/response` or `…/error`), and
//! asks again, where Lambda would freeze it: the process is stopped then.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::oneshot;

/// How long an invocation may take to answer.
const PATIENCE: Duration = Duration::from_secs(120);

/// One invocation's end.
#[derive(Debug)]
pub struct Answered {
    /// The function's answer; `Err`: what it posted to an error route, or
    /// why there was no answer (the process exited, the time ran out).
    pub answer: Result<Value, Value>,
    /// From exec to the first `next` call.
    pub cold_start: Option<Duration>,
    /// The process's peak resident set once it answered (`VmHWM`), KiB.
    pub peak_rss_kib: Option<u64>,
}

/// A live process's peak resident set, from `/proc/<pid>/status`.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Invocation {
    event: Mutex<Option<Value>>,
    answer: Mutex<Option<oneshot::Sender<Result<Value, Value>>>>,
    ready_at: Mutex<Option<Instant>>,
}

async fn next(State(inv): State<Arc<Invocation>>) -> impl IntoResponse {
    *inv.ready_at.lock().unwrap() = Some(Instant::now());
    let Some(event) = inv.event.lock().unwrap().take() else {
        // Lambda would freeze the process here; `invoke` stops it.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let deadline = chrono::Utc::now().timestamp_millis() + PATIENCE.as_millis() as i64;
    (
        [
            ("lambda-runtime-aws-request-id", "req-1".to_owned()),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:ork".to_owned(),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000".to_owned(),
            ),
        ],
        event.to_string(),
    )
}

fn answered(inv: &Invocation, answer: Result<Value, Value>) -> StatusCode {
    if let Some(tx) = inv.answer.lock().unwrap().take() {
        let _ = tx.send(answer);
    }
    StatusCode::ACCEPTED
}

async fn respond(State(inv): State<Arc<Invocation>>, body: Bytes) -> StatusCode {
    answered(
        &inv,
        Ok(serde_json::from_slice(&body).unwrap_or(Value::Null)),
    )
}

async fn fail(State(inv): State<Arc<Invocation>>, body: Bytes) -> StatusCode {
    answered(
        &inv,
        Err(serde_json::from_slice(&body).unwrap_or(Value::Null)),
    )
}

/// Runs `binary` as function `function` for one `event`, with `env` on top
/// of this process's environment, and stops it once it has answered.
pub async fn invoke(
    binary: &Path,
    function: &str,
    env: &[(String, String)],
    event: Value,
) -> Answered {
    let (tx, rx) = oneshot::channel();
    let inv = Arc::new(Invocation {
        event: Mutex::new(Some(event)),
        answer: Mutex::new(Some(tx)),
        ready_at: Mutex::new(None),
    });
    let api = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route(
            "/2018-06-01/runtime/invocation/{id}/response",
            post(respond),
        )
        .route("/2018-06-01/runtime/invocation/{id}/error", post(fail))
        .route("/2018-06-01/runtime/init/error", post(fail))
        .with_state(inv.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move { axum::serve(listener, api).await });

    let exec = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .envs(env.iter().cloned())
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "test")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let answer = tokio::select! {
        answer = rx => answer.unwrap_or(Err(Value::Null)),
        status = child.wait() => Err(json!({"exited": status.map(|s| s.to_string()).unwrap_or_default()})),
        _ = tokio::time::sleep(PATIENCE) => Err(json!(format!("no answer in {PATIENCE:?}"))),
    };
    let cold_start = inv.ready_at.lock().unwrap().map(|ready| ready - exec);
    let peak_rss_kib = child.id().and_then(peak_rss_kib);
    // Lambda freezes or ends the environment after the answer: stop it.
    let _ = child.kill().await;
    assert!(
        child.try_wait().unwrap().is_some(),
        "the function's process is gone"
    );
    server.abort();
    Answered {
        answer,
        cold_start,
        peak_rss_kib,
    }
}
