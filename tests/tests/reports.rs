//! Worker reports: an output over the handlers' body limit is uploaded
//! first (`PUT /outputs`) and reaches the child by reference; a server that stays down or
//! refuses the token gets tried for `ORK_REPORT_TIMEOUT`, then an error-level
//! log naming the attempt and the URL.

use ork_tests::db as common;
use ork_tests::on_both_backends;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ork_core::engine::TriggerOptions;
use ork_core::executor::Executors;
use ork_core::model::{RunStatus, TaskStatus};
use ork_core::spec::ExecutorKind;
use ork_executors::ProcessExecutor;
use ork_tests::app::TestApp;
use serde_json::json;

/// An output over the report body's limit goes by `PUT /outputs` (the
/// attempt's token as bearer, streamed into the payload directory); the
/// report says `output_uploaded`, the row keeps a reference, and the child
/// gets the output in its `ORK_INPUT_FILE`.
async fn an_output_over_the_body_limit_is_uploaded_and_reaches_the_child(db: TestDb) {
    let logs = tempfile::tempdir().unwrap();
    let (tx, _completions) = tokio::sync::mpsc::unbounded_channel();
    let process = ProcessExecutor::new(logs.path(), tx).with_worker_program(ork_tests::bin::ork());
    let app = TestApp::builder(db.store.clone())
        .executors(Executors::new().with(ExecutorKind::Process, Arc::new(process)))
        .spawn()
        .await;
    // 300 000 characters of output: over the report body's limit.
    let spec = r#"
name: big
tasks:
  t:
    command: python3
    args: [-c, 'import json, os; json.dump("a" * 300000, open(os.environ["ORK_OUTPUT"], "w"))']
  c:
    depends_on: [t]
    command: python3
    args: [-c, 'import json, os; d = json.load(open(os.environ["ORK_INPUT_FILE"])); json.dump(len(d["upstream"]["t"]), open(os.environ["ORK_OUTPUT"], "w"))']
"#;
    app.engine.apply(&parse(spec), None).await.unwrap();
    let run = app
        .engine
        .trigger("big", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    app.engine.advance(run.id).await.unwrap();
    let started = Instant::now();
    let run = loop {
        let run = db.store.get_run(run.id).await.unwrap();
        if run.status.is_final() {
            break run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the attempt hangs: {:?}",
            db.store.run_tasks(run.id).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let tasks = db.store.run_tasks(run.id).await.unwrap();
    assert_eq!(run.status, RunStatus::Success, "{tasks:?}");
    let t = tasks.iter().find(|t| t.name == "t").unwrap();
    assert_eq!((t.status, t.output.clone()), (TaskStatus::Success, None));
    let c = tasks.iter().find(|t| t.name == "c").unwrap();
    assert_eq!(c.output, Some(json!(300000)));
    let outputs = db.store.task_outputs(run.id, &["t"]).await.unwrap();
    let r = outputs[0].output_ref.clone().expect("a reference");
    assert_eq!(r["size"], json!(300002));
}

/// `PUT /outputs` needs the attempt's token.
async fn an_upload_without_a_valid_token_is_refused(db: TestDb) {
    let app = TestApp::builder(db.store.clone()).spawn().await;
    let http = reqwest::Client::new();
    let url = format!("{}/outputs", app.url.trim_end_matches('/'));
    let none = http.put(&url).body("{}").send().await.unwrap();
    assert_eq!(none.status(), 401);
    let forged = http
        .put(&url)
        .bearer_auth("forged")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
}

on_both_backends!(
    an_output_over_the_body_limit_is_uploaded_and_reaches_the_child,
    an_upload_without_a_valid_token_is_refused,
);

/// A server that answers every request with `status`.
async fn answering(status: u16) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let code = axum::http::StatusCode::from_u16(status).unwrap();
    let app = axum::Router::new().fallback(move || async move { (code, "{}") });
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// Runs `ork worker -- true` reporting to `url`: its exit code, stderr and
/// how long it took.
async fn worker(url: &str, report_timeout: &str) -> (Option<i32>, String, Duration) {
    let url = format!("{url}/complete");
    let report_timeout = report_timeout.to_owned();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let out = Command::new(ork_tests::bin::ork())
            .args(["worker", "--", "true"])
            .env("ORK_CALLBACK_URL", &url)
            .env("ORK_CALLBACK_TOKEN", "not-checked-here")
            .env("ORK_RUN_ID", "0190f2a4-0000-7000-8000-000000000001")
            .env("ORK_TASK", "extract")
            .env("ORK_TASK_INDEX", "0")
            .env("ORK_ATTEMPT", "3")
            .env("ORK_REPORT_TIMEOUT", report_timeout)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            started.elapsed(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_worker_that_cannot_report_tries_for_its_budget_then_logs_an_error() {
    let url = answering(503).await;
    let (code, stderr, took) = worker(&url, "2s").await;
    assert_ne!(code, Some(0), "{stderr}");
    assert!(took >= Duration::from_secs(2), "gave up early: {took:?}");
    assert!(took < Duration::from_secs(15), "over its budget: {took:?}");
    assert!(stderr.contains("ERROR"), "{stderr}");
    assert!(stderr.contains(&url), "names the URL: {stderr}");
    assert!(
        stderr.contains("extract[0] attempt 3"),
        "names the attempt: {stderr}"
    );
}

#[tokio::test]
async fn a_worker_whose_token_is_refused_logs_an_error() {
    let url = answering(401).await;
    let (code, stderr, _) = worker(&url, "2s").await;
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("ERROR"), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    assert!(stderr.contains("extract[0] attempt 3"), "{stderr}");
}

/// `ORK_INPUT_URL` (a presigned GET for cloud workers): `ork worker`
/// downloads it and gives its program `ORK_INPUT_FILE` instead.
#[tokio::test]
async fn a_worker_downloads_its_input_url_into_a_file() {
    let url = answering(200).await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(ork_tests::bin::ork())
            .args([
                "worker",
                "--",
                "sh",
                "-c",
                r#"test -z "$ORK_INPUT_URL" && test "$(cat "$ORK_INPUT_FILE")" = "{}""#,
            ])
            .env("ORK_CALLBACK_URL", format!("{url}/complete"))
            .env("ORK_CALLBACK_TOKEN", "not-checked-here")
            .env("ORK_INPUT_URL", format!("{url}/input.json"))
            .env("ORK_REPORT_TIMEOUT", "2s")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
