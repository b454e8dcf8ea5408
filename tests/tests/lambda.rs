//! The three Lambda binaries, run the way AWS runs them: a process per
//! event, fed through the Lambda Runtime API (`ork_tests::lambda_runtime`),
//! answering Function URL requests (payload format 2.0). A gateway stands
//! in for the Function URLs: each request starts a fresh handler process,
//! and the process is stopped once it has answered, so no Ork process
//! lives between events. Workers are plain shell commands
//! honouring the worker contract (they `curl` their report back).

use ork_tests::db as common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

const API_KEY: &str = "lambda-test-key";
const SIGNING_KEY: &str = "0123456789abcdef0123456789abcdef-lambda";

/// What the gateway saw: handler processes alive now, started in all, and
/// the time from exec to the first `next` call (cold start) of each.
#[derive(Default)]
struct Stats {
    alive: AtomicUsize,
    started: AtomicUsize,
    cold_starts: Mutex<Vec<Duration>>,
}

/// Runs `binary` for one event, as Lambda would, and returns its answer.
async fn invoke(
    binary: std::path::PathBuf,
    env: &[(String, String)],
    event: Value,
    stats: &Stats,
) -> Result<Value, Value> {
    stats.alive.fetch_add(1, Ordering::SeqCst);
    stats.started.fetch_add(1, Ordering::SeqCst);
    let done = ork_tests::lambda_runtime::invoke(&binary, "ork", env, event).await;
    if let Some(cold) = done.cold_start {
        stats.cold_starts.lock().unwrap().push(cold);
    }
    stats.alive.fetch_sub(1, Ordering::SeqCst);
    done.answer
}

/// Function URLs: each request becomes an invocation of a new process.
#[derive(Clone)]
struct Gateway {
    env: Vec<(String, String)>,
    stats: Arc<Stats>,
}

fn function_url_event(path: &str, headers: &HeaderMap, body: &Bytes) -> Value {
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or_default())))
        .collect();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {"http": {"method": "POST", "path": path}, "requestId": "r", "timeEpoch": 0},
        "body": String::from_utf8_lossy(body),
        "isBase64Encoded": false,
    })
}

async fn url(
    State(g): State<Gateway>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let (binary, path) = match function.as_str() {
        "trigger" => (ork_tests::bin::path("ork-functions", "trigger"), "/"),
        "complete" => (
            ork_tests::bin::path("ork-functions", "on-task-complete"),
            "/",
        ),
        "heartbeat" => (
            ork_tests::bin::path("ork-functions", "on-task-complete"),
            "/heartbeat",
        ),
        _ => return (StatusCode::NOT_FOUND, String::new()),
    };
    let answer = invoke(
        binary,
        &g.env,
        function_url_event(path, &headers, &body),
        &g.stats,
    )
    .await;
    let answer = answer.unwrap_or_else(|e| panic!("function error: {e}"));
    let status = StatusCode::from_u16(answer["statusCode"].as_u64().unwrap() as u16).unwrap();
    (
        status,
        answer["body"].as_str().unwrap_or_default().to_owned(),
    )
}

const WORKER: &str = r#"curl -sf -X POST "$ORK_CALLBACK_URL" -H 'content-type: application/json' -d "{\"token\": \"$ORK_CALLBACK_TOKEN\", \"status\": \"success\", \"output\": {\"index\": $ORK_TASK_INDEX}}""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dag_runs_on_lambda_handlers_that_live_one_event_each() {
    let db = common::postgres().await;
    let logs = tempfile::tempdir().unwrap();
    let worker = logs.path().join("worker.sh");
    std::fs::write(&worker, WORKER).unwrap();
    let w = worker.display();
    let spec = format!(
        "name: serverless\ntasks:\n  a: {{command: sh, args: [{w}]}}\n  b: {{command: sh, args: [{w}], depends_on: [a], task_count: 3}}\n  c: {{command: sh, args: [{w}], depends_on: [b]}}\n"
    );
    common::noop_engine(db.store.clone())
        .apply(&common::parse(&spec), None)
        .await
        .unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let env = vec![
        ("ORK_DATABASE_URL".to_owned(), db.url.clone()),
        ("ORK_SIGNING_KEY".to_owned(), SIGNING_KEY.to_owned()),
        ("ORK_API_KEY".to_owned(), API_KEY.to_owned()),
        (
            "ORK_CALLBACK_URL".to_owned(),
            format!("http://{addr}/complete"),
        ),
        ("ORK_LOG_DIR".to_owned(), logs.path().display().to_string()),
        ("RUST_LOG".to_owned(), "warn".to_owned()),
    ];
    let stats = Arc::new(Stats::default());
    let gateway = Gateway {
        env: env.clone(),
        stats: stats.clone(),
    };
    let app = Router::new()
        .route("/{function}", post(url))
        .with_state(gateway);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let http = reqwest::Client::new();
    let unauthorized = http
        .post(format!("http://{addr}/trigger"))
        .json(&json!({"workflow": "serverless"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let accepted = http
        .post(format!("http://{addr}/trigger"))
        .bearer_auth(API_KEY)
        .json(&json!({"workflow": "serverless", "idempotency_key": "k1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let body: Value = accepted.json().await.unwrap();
    let run_id: uuid::Uuid = body["run_id"].as_str().unwrap().parse().unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let run = db.store.get_run(run_id).await.unwrap();
        if run.status.is_final() {
            assert_eq!(run.status, ork_core::model::RunStatus::Success);
            break;
        }
        assert!(Instant::now() < deadline, "run did not finish: {run:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the last answers drain, then: no handler process is alive.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(stats.alive.load(Ordering::SeqCst), 0);
    // One trigger + one completion per task instance (5), each its own process.
    assert_eq!(stats.started.load(Ordering::SeqCst), 1 + 1 + 5);

    // Outputs travelled through the callbacks into the next task's input.
    let tasks = db.store.run_tasks(run_id).await.unwrap();
    let b2 = tasks
        .iter()
        .find(|t| t.name == "b" && t.task_index == 2)
        .unwrap();
    assert_eq!(b2.output, Some(json!({"index": 2})));

    // Non-HTTP events: an advance sweep (the EventBridge schedule) and a
    // replayed idempotent trigger.
    let sweep = invoke(
        ork_tests::bin::path("ork-functions", "advance"),
        &env,
        json!({"source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}}),
        &stats,
    )
    .await
    .unwrap();
    assert_eq!(sweep["status"], 200, "{sweep}");
    let again = invoke(
        ork_tests::bin::path("ork-functions", "trigger"),
        &env,
        function_url_event(
            "/",
            &{
                let mut h = HeaderMap::new();
                h.insert(
                    "authorization",
                    format!("Bearer {API_KEY}").parse().unwrap(),
                );
                h
            },
            &Bytes::from(json!({"workflow": "serverless", "idempotency_key": "k1"}).to_string()),
        ),
        &stats,
    )
    .await
    .unwrap();
    assert_eq!(again["statusCode"], 202);
    assert!(again["body"]
        .as_str()
        .unwrap()
        .contains(&run_id.to_string()));
    let cold = stats.cold_starts.lock().unwrap().clone();
    eprintln!("cold starts (exec → ready): {cold:?}");
}
