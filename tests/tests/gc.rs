//! Retention (`ork gc`, `POST /api/gc`, `Engine::gc`): finished runs older
//! than the cutoff go with their rows, payloads (local directory or S3)
//! and local logs; open runs stay, also when a retry reopens a run while
//! racing gc callers delete.

use ork_tests::db as common;
use ork_tests::{moto, on_both_backends};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use futures::StreamExt;
use ork_core::engine::{Engine, EngineConfig, TriggerOptions};
use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError, Executors, Outcome};
use ork_core::model::RunStatus;
use ork_core::payload::{PayloadRef, Payloads};
use ork_core::spec::ExecutorKind;
use ork_executors::ProcessExecutor;
use serde_json::json;
use tokio::sync::mpsc;
use uuid::Uuid;

/// A parent with a 200 KB output (stored by reference) and a child that
/// reads it from `ORK_INPUT_FILE`; `fail` makes the child exit 1.
const BIG: &str = r#"
name: big
tasks:
  produce:
    command: ["python3", "-c", "import json, os; print('log line'); json.dump({'rows': ['x' * 1000] * 200}, open(os.environ['ORK_OUTPUT'], 'w'))"]
  consume:
    depends_on: [produce]
    command: ["python3", "-c", "import json, os, sys; d = json.load(open(os.environ['ORK_INPUT_FILE'])); sys.exit(1 if d['params'].get('fail') else 0)"]
"#;

/// Runs [`BIG`] to its end on the process executor with `payloads`;
/// returns the run and the parent's output reference.
async fn run_big(
    db: &TestDb,
    payloads: Payloads,
    logs: &std::path::Path,
    fail: bool,
) -> (Engine, Uuid, PayloadRef) {
    let (tx, mut completions) = mpsc::unbounded_channel();
    let process = Arc::new(ProcessExecutor::new(logs, tx));
    let engine = Engine::new(
        db.store.clone(),
        Executors::new().with(ExecutorKind::Process, process),
        EngineConfig {
            payloads,
            ..EngineConfig::default()
        },
    );
    engine.apply(&parse(BIG), None).await.unwrap();
    let run = engine
        .trigger("big", json!({ "fail": fail }), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    let status = tokio::time::timeout(
        Duration::from_secs(60),
        ork_core::engine::drive(&engine, run.id, &mut completions),
    )
    .await
    .expect("in time")
    .unwrap();
    let want = if fail {
        RunStatus::Failed
    } else {
        RunStatus::Success
    };
    assert_eq!(status, want);
    let outputs = db.store.task_outputs(run.id, &["produce"]).await.unwrap();
    let r = serde_json::from_value(outputs[0].output_ref.clone().expect("a reference")).unwrap();
    (engine, run.id, r)
}

async fn assert_gone(db: &TestDb, run: Uuid) {
    assert!(
        matches!(
            db.store.get_run(run).await,
            Err(ork_core::Error::RunNotFound(_))
        ),
        "run {run} is deleted"
    );
    assert!(db.store.run_tasks(run).await.unwrap().is_empty());
    assert!(db.store.run_events(run).await.unwrap().is_empty());
}

/// Finished runs (a success and a failure) go with their tasks, events,
/// stored outputs and logs; a pending run and everything younger than the
/// cutoff stay.
async fn gc_deletes_finished_runs_with_their_payloads_and_logs(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (payloads, logs) = (dir.path().join("payloads"), dir.path().join("logs"));
    let (engine, ok, r) = run_big(&db, Payloads::new(&payloads), &logs, false).await;
    let (_, failed, _) = run_big(&db, Payloads::new(&payloads), &logs, true).await;
    let stored = r.local_path().expect("a file:// reference");
    assert!(stored.starts_with(payloads.join("outputs").join(ok.to_string())));
    assert!(stored.exists() && logs.join(ok.to_string()).exists());
    let open = engine
        .trigger("big", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run
        .id;

    let none = engine
        .gc(Duration::from_secs(3600), Some(&logs))
        .await
        .unwrap();
    assert_eq!((none.runs, none.objects), (0, 0), "all younger than 1 h");
    assert!(stored.exists());

    let done = engine.gc(Duration::ZERO, Some(&logs)).await.unwrap();
    assert_eq!(done.runs, 2, "{done:?}");
    assert_eq!(done.objects, 2, "each run's one stored output: {done:?}");
    assert!(done.errors.is_empty(), "{done:?}");
    for run in [ok, failed] {
        assert_gone(&db, run).await;
        assert!(!payloads.join("outputs").join(run.to_string()).exists());
        assert!(!payloads.join("inputs").join(run.to_string()).exists());
        assert!(!logs.join(run.to_string()).exists());
    }
    let kept = db.store.get_run(open).await.unwrap();
    assert_eq!(kept.status, RunStatus::Pending);
    assert_eq!(db.store.run_tasks(open).await.unwrap().len(), 2);
    let again = engine.gc(Duration::ZERO, Some(&logs)).await.unwrap();
    assert_eq!(again.runs, 0, "nothing left to delete");
}

/// With S3 as the payload store, the run's objects go from the bucket.
async fn gc_deletes_a_runs_objects_in_s3(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let payloads = Payloads {
        remote: Some(moto::s3_store().await),
        ..Payloads::new(dir.path().join("payloads"))
    };
    let (engine, run, r) = run_big(&db, payloads.clone(), &logs, false).await;
    let store = payloads.store().unwrap();
    assert!(r.url.starts_with(&store.url), "{}", r.url);
    let prefix = store.prefix.clone().join("outputs").join(run.to_string());
    let listed = |p: object_store::path::Path| {
        let store = store.store.clone();
        async move { store.list(Some(&p)).collect::<Vec<_>>().await.len() }
    };
    assert_eq!(listed(prefix.clone()).await, 1);
    let done = engine.gc(Duration::ZERO, Some(&logs)).await.unwrap();
    assert_eq!((done.runs, done.objects), (1, 1), "{done:?}");
    assert_eq!(listed(prefix).await, 0, "the output is deleted from S3");
    assert_gone(&db, run).await;
}

/// Fails every attempt at once.
struct Failing;

#[async_trait]
impl Executor for Failing {
    async fn dispatch(&self, _: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        Ok(Dispatch::Finished(Outcome::failure(Some(1), "boom")))
    }
}

/// 40 failed runs; 4 gc callers and one retry per run, at the same time.
/// Each run ends either reopened (and then still there, `running`, with
/// its tasks) or deleted, never both, and the gc callers together deleted
/// exactly the runs that were not reopened.
async fn racing_gc_and_retry_lose_no_open_run(db: TestDb) {
    const RUNS: usize = 40;
    let engine = Arc::new(with_executor(db.store.clone(), Arc::new(Failing)));
    engine
        .apply(
            &parse(
                "name: f\ntasks:\n  a: {executor: noop}\n  b: {executor: noop, depends_on: [a]}\n",
            ),
            None,
        )
        .await
        .unwrap();
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        let run = engine
            .trigger("f", json!({}), TriggerOptions::default())
            .await
            .unwrap()
            .run;
        engine.advance(run.id).await.unwrap();
        assert_eq!(
            db.store.get_run(run.id).await.unwrap().status,
            RunStatus::Failed
        );
        runs.push(run.id);
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(4 + RUNS));
    let gcs: Vec<_> = (0..4)
        .map(|_| {
            let (engine, barrier) = (engine.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                engine.gc(Duration::ZERO, None).await.unwrap().runs
            })
        })
        .collect();
    // gc deletes the oldest first; the retries go newest first, one every 5
    // ms, so that they meet gc somewhere in the middle: the early ones
    // reopen runs gc has not reached, the late ones find theirs deleted.
    let retries: Vec<_> = runs
        .iter()
        .enumerate()
        .map(|(i, &run)| {
            let (engine, barrier) = (engine.clone(), barrier.clone());
            let delay = Duration::from_millis(5 * (RUNS - i) as u64);
            tokio::spawn(async move {
                barrier.wait().await;
                tokio::time::sleep(delay).await;
                match engine.retry(run, None).await {
                    Ok(Some(n)) => Some(n),
                    Ok(None) | Err(ork_core::Error::RunNotFound(_)) => None,
                    Err(e) => panic!("retry {run}: {e}"),
                }
            })
        })
        .collect();
    let mut deleted = 0;
    for g in gcs {
        deleted += g.await.unwrap();
    }
    let mut reopened = 0;
    for (run, retry) in runs.iter().zip(retries) {
        match retry.await.unwrap() {
            Some(n) => {
                reopened += 1;
                assert_eq!(n, 2, "both instances run again");
                let kept = db.store.get_run(*run).await.expect("a reopened run stays");
                assert_eq!(kept.status, RunStatus::Running);
                assert_eq!(db.store.run_tasks(*run).await.unwrap().len(), 2);
            }
            None => assert_gone(&db, *run).await,
        }
    }
    assert_eq!(deleted, (RUNS - reopened) as u64, "each run deleted once");
    eprintln!("{reopened} reopened, {deleted} deleted");
    // What stayed is open: another gc keeps it.
    assert_eq!(engine.gc(Duration::ZERO, None).await.unwrap().runs, 0);
}

/// `POST /api/gc`: key-protected, `older_than` seconds or a duration
/// string, errors naming the field; a pending run stays.
async fn gc_over_http(db: TestDb) {
    let executors = Executors::new().with(
        ExecutorKind::Noop,
        Arc::new(ork_core::executor::NoopExecutor),
    );
    let app = ork_tests::app::TestApp::builder(db.store.clone())
        .executors(executors)
        .api_key("k")
        .spawn()
        .await;
    app.engine
        .apply(&parse("name: n\ntasks:\n  a: {executor: noop}\n"), None)
        .await
        .unwrap();
    let done = app
        .engine
        .trigger("n", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    app.engine.advance(done.id).await.unwrap();
    let open = app
        .engine
        .trigger("n", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;

    let anonymous = app
        .http
        .post(format!("{}/api/gc", app.url))
        .body(r#"{"older_than": 0}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    for (bad, says) in [
        (
            json!({"older_than": "soon"}),
            "older_than: invalid duration \"soon\"",
        ),
        (json!({"older_than": -1}), "older_than: invalid duration -1"),
        (json!({"older_than": true}), "older_than: a duration"),
        (json!({}), "missing field `older_than`"),
        (json!({"older_than": "1d", "x": 1}), "unknown field"),
    ] {
        let (status, body) = app.post("/api/gc", &bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].as_str().unwrap().contains(says), "{body}");
    }
    let (status, body) = app.post("/api/gc", &json!({"older_than": "1h"})).await;
    assert_eq!((status, body["runs"].as_u64()), (200, Some(0)), "{body}");
    let (status, body) = app.post("/api/gc", &json!({"older_than": 0})).await;
    assert_eq!((status, body["runs"].as_u64()), (200, Some(1)), "{body}");
    assert_gone(&db, done.id).await;
    assert_eq!(
        db.store.get_run(open.id).await.unwrap().status,
        RunStatus::Pending
    );
}

on_both_backends!(
    gc_over_http,
    gc_deletes_finished_runs_with_their_payloads_and_logs,
    gc_deletes_a_runs_objects_in_s3,
    racing_gc_and_retry_lose_no_open_run,
);
