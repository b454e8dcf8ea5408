//! `GET /metrics` (Prometheus text, key-protected) after a run through the
//! handlers, and `ORK_LOG_FORMAT=json` log lines carrying the run's fields.

use std::process::Command;
use std::sync::Arc;

use ork_core::executor::{Executors, NoopExecutor};
use ork_core::spec::ExecutorKind;
use ork_tests::app::TestApp;
use ork_tests::db::{self, TestDb};
use ork_tests::on_both_backends;
use serde_json::{json, Value};

const KEY: &str = "metrics-key";

async fn metrics_after_a_run(db: TestDb) {
    let app = TestApp::builder(db.store.clone())
        .executors(Executors::new().with(ExecutorKind::Noop, Arc::new(NoopExecutor)))
        .api_key(KEY)
        .spawn()
        .await;
    let spec = db::parse("name: counted\ntasks:\n  a: {executor: noop}\n  b: {executor: noop, depends_on: [a], task_count: 3}\n");
    app.engine.apply(&spec, None).await.unwrap();
    let (status, body) = app.post("/trigger", &json!({"workflow": "counted"})).await;
    assert_eq!(status, 202, "{body}");

    let unauthorized = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let r = app
        .http
        .get(format!("{}/metrics", app.url))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for expected in [
        "ork_runs{status=\"success\"} 1",
        "ork_tasks_dispatched_total{executor=\"noop\",result=\"started\"}",
        "ork_tasks_completed_total",
        "ork_claim_batch_size_bucket",
        "ork_dispatch_seconds_bucket{executor=\"noop\"",
        "ork_http_request_seconds_bucket{route=\"/trigger\"",
        "ork_http_requests_total{route=\"/trigger\",method=\"POST\",status=\"202\"}",
        "ork_runs_finished_total{status=\"success\"}",
    ] {
        assert!(text.contains(expected), "no {expected} in:\n{text}");
    }
}

on_both_backends!(metrics_after_a_run);

#[test]
fn json_logs_carry_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let out = Command::new(ork_tests::bin::ork())
        .args(["run", "workflows/etl.yaml"])
        .current_dir(repo)
        .env(
            "ORK_DATABASE_URL",
            format!("sqlite:{}", dir.path().join("ork.db").display()),
        )
        .env("ORK_LOG_DIR", dir.path().join("logs"))
        .env("ORK_LOG_FORMAT", "json")
        .env("RUST_LOG", "ork_core=info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let triggered = lines
        .iter()
        .find(|l| l["fields"]["message"] == "run triggered")
        .expect("a `run triggered` line");
    assert_eq!(triggered["fields"]["workflow"], "etl");
    assert!(triggered["fields"]["run_id"].is_string(), "{triggered}");
    let finished = lines
        .iter()
        .find(|l| l["fields"]["message"] == "run finished")
        .expect("a `run finished` line");
    assert_eq!(finished["fields"]["status"], "success");
    assert_eq!(finished["level"], "INFO");
}
