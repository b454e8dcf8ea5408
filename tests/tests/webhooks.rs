//! The handlers over real HTTP (axum on 127.0.0.1, reqwest as the worker),
//! on SQLite and PostgreSQL: authentication of triggers and callbacks,
//! idempotent and stale reports, body limits, and 64 webhooks at once.

use ork_tests::db as common;
use ork_tests::on_both_backends;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use ork_core::engine::EngineConfig;
use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError, Executors, Outcome};
use ork_core::model::AttemptRef;
use ork_core::model::{RunStatus, TaskStatus};
use ork_core::spec::ExecutorKind;
use ork_core::token::Signer;
use ork_tests::app::TestApp;
use serde_json::{json, Value};

const KEY: &str = "test-api-key";

/// Starts attempts and keeps their requests (and so their tokens).
#[derive(Default)]
struct Holding(Mutex<Vec<DispatchRequest>>);

#[async_trait]
impl Executor for Holding {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        self.0.lock().unwrap().push(req.clone());
        Ok(Dispatch::Started {
            execution_id: execution_name(req.attempt.task_id),
        })
    }

    /// Every attempt it started has ended well, when asked.
    async fn poll(
        &self,
        _attempt: &AttemptRef,
        _execution_id: &str,
    ) -> Result<Option<Outcome>, ExecutorError> {
        Ok(Some(Outcome::success(Some(json!({"polled": true})))))
    }
}

fn execution_name(task: uuid::Uuid) -> String {
    format!(
        "projects/p/locations/europe-west1/jobs/j/executions/j-{}",
        task.simple()
    )
}

impl Holding {
    fn take(&self) -> Vec<DispatchRequest> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct Server {
    app: TestApp,
    holding: Arc<Holding>,
    signer: Signer,
    db: TestDb,
}

async fn serve(db: TestDb) -> Server {
    let holding = Arc::new(Holding::default());
    let app = TestApp::builder(db.store.clone())
        .executors(Executors::new().with(ExecutorKind::Noop, holding.clone()))
        .api_key(KEY)
        .grace(Duration::from_secs(60))
        .spawn()
        .await;
    Server {
        signer: app.signer.clone(),
        app,
        holding,
        db,
    }
}

impl Server {
    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.app.post(path, body).await
    }

    async fn events(&self, run: uuid::Uuid) -> usize {
        self.db.store.run_events(run).await.unwrap().len()
    }

    async fn trigger(&self, yaml: &str) -> uuid::Uuid {
        let spec = parse(yaml);
        ork_core::engine::Engine::new(
            self.db.store.clone(),
            Executors::new(),
            EngineConfig::default(),
        )
        .apply(&spec, None)
        .await
        .unwrap();
        let (status, body) = self.post("/trigger", &json!({"workflow": spec.name})).await;
        assert_eq!(status, 202, "{body}");
        body["run_id"].as_str().unwrap().parse().unwrap()
    }
}

fn report(token: &str, status: &str) -> Value {
    json!({"token": token, "status": status, "exit_code": if status == "success" { 0 } else { 1 }})
}

async fn callbacks_are_authenticated_idempotent_and_never_stale(db: TestDb) {
    let s = serve(db).await;
    // Trigger needs the API key.
    let r = s
        .app
        .http
        .post(format!("{}/trigger", s.app.url))
        .json(&json!({"workflow": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let run = s
        .trigger("name: one\ntasks:\n  t: {executor: noop, retries: {count: 1, backoff: 1ms}}\n")
        .await;
    let first = s
        .holding
        .take()
        .pop()
        .expect("dispatched by the trigger's advance");
    let token1 = first.callback.unwrap().token;
    let before = s.events(run).await;

    // Forged: another key; tampered: claims changed; expired: our key, past expiry.
    let forger = Signer::new(*b"ffffffffffffffffffffffffffffffff").unwrap();
    let forged = forger.sign(
        &first.attempt,
        chrono::Utc::now() + chrono::Duration::minutes(5),
    );
    let expired = s.signer.sign(
        &first.attempt,
        chrono::Utc::now() - chrono::Duration::seconds(1),
    );
    let tampered = format!("{}x", &token1);
    for bad in [
        forged.as_str(),
        expired.as_str(),
        tampered.as_str(),
        "garbage",
    ] {
        let (status, body) = s.post("/complete", &report(bad, "success")).await;
        assert_eq!(status, 401, "{body}");
    }
    assert!(
        s.post("/complete", &report(&expired, "success")).await.1["error"]
            .as_str()
            .unwrap()
            .contains("expired")
    );
    assert_eq!(
        s.events(run).await,
        before,
        "refused callbacks record nothing"
    );
    assert_eq!(
        s.db.store.run_tasks(run).await.unwrap()[0].status,
        TaskStatus::Running
    );

    // Attempt 1 fails: recorded, retried as attempt 2.
    assert_eq!(s.post("/complete", &report(&token1, "failed")).await.0, 200);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(s.post("/advance", &json!({"run_id": run})).await.0, 200);
    let second = s.holding.take().pop().unwrap();
    assert_eq!(second.attempt.attempt, 2);
    let token2 = second.callback.unwrap().token;

    // Attempt 1 reports again, either way: 409 or duplicate, nothing changes.
    let before = s.events(run).await;
    let (status, body) = s.post("/complete", &report(&token1, "success")).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(s.events(run).await, before);

    // Attempt 2 succeeds once; its replay is a 200 that changes nothing.
    let (status, body) = s.post("/complete", &report(&token2, "success")).await;
    assert_eq!((status, body["result"].as_str()), (200, Some("recorded")));
    assert_eq!(body["finalized"], "success");
    let after = s.events(run).await;
    let (status, body) = s.post("/complete", &report(&token2, "failed")).await;
    assert_eq!((status, body["result"].as_str()), (200, Some("duplicate")));
    assert_eq!(s.events(run).await, after);
    assert_eq!(
        s.db.store.get_run(run).await.unwrap().status,
        RunStatus::Success
    );

    // A finished attempt's heartbeat tells the worker to stop.
    assert_eq!(s.post("/heartbeat", &json!({"token": token2})).await.0, 410);
}

async fn bad_bodies_get_clear_errors(db: TestDb) {
    let s = serve(db).await;
    let huge = "x".repeat(300 * 1024);
    let (status, _) = s
        .post("/complete", &json!({"token": huge, "status": "success"}))
        .await;
    assert_eq!(status, 413);
    let (status, body) = s
        .post("/complete", &json!({"token": "t", "status": "done"}))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown variant `done`"),
        "{body}"
    );
    let (status, body) = s.post("/trigger", &json!({"workflow": "nope"})).await;
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("\"nope\" not found"),
        "{body}"
    );
    let (status, _) = s
        .post("/trigger", &json!({"workflow": "nope", "extra": 1}))
        .await;
    assert_eq!(status, 400);
}

async fn sixty_four_concurrent_webhooks_finalize_once(db: TestDb) {
    let s = Arc::new(serve(db).await);
    let run = s
        .trigger("name: fan\ntasks:\n  fan: {executor: noop, task_count: 64}\n  join: {executor: noop, depends_on: [fan]}\n")
        .await;
    let fan = s.holding.take();
    assert_eq!(fan.len(), 64);
    // Every worker reports twice, all at once.
    let calls: Vec<_> = fan
        .iter()
        .flat_map(|r| {
            [
                r.callback.clone().unwrap().token,
                r.callback.clone().unwrap().token,
            ]
        })
        .map(|token| {
            let s = s.clone();
            tokio::spawn(async move { s.post("/complete", &report(&token, "success")).await })
        })
        .collect();
    let mut recorded = 0;
    for c in calls {
        let (status, body) = c.await.unwrap();
        assert_eq!(status, 200, "{body}");
        if body["result"] == "recorded" {
            recorded += 1;
        }
    }
    assert_eq!(recorded, 64);
    let join = s.holding.take();
    assert_eq!(join.len(), 1, "the child is dispatched exactly once");
    let (status, body) = s
        .post(
            "/complete",
            &report(&join[0].callback.clone().unwrap().token, "success"),
        )
        .await;
    assert_eq!((status, &body["finalized"]), (200, &json!("success")));
    let events = s.db.store.run_events(run).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.task_id.is_none() && e.status == "success")
            .count(),
        1
    );
    assert_eq!(events.iter().filter(|e| e.status == "success").count(), 66);
}

async fn a_cloud_run_execution_event_is_checked_then_recorded(db: TestDb) {
    let s = serve(db).await;
    let run = s
        .trigger("name: one\ntasks:\n  t: {executor: noop}\n")
        .await;
    let task = s.holding.take().pop().unwrap().attempt.task_id;
    // Unknown executions are ignored.
    let stray = json!({"data": {"name": execution_name(uuid::Uuid::now_v7())}});
    let (status, body) = s.post("/events", &stray).await;
    assert_eq!((status, body["result"].as_str()), (200, Some("ignored")));
    // A CloudEvent carrying the Execution resource: the executor is asked
    // (the event itself says nothing trustworthy), and its answer recorded.
    let event = json!({
        "specversion": "1.0",
        "type": "google.cloud.run.execution.v1.completed",
        "data": {"name": execution_name(task), "succeededCount": 1, "completionTime": "2026-11-23T10:00:00Z"},
    });
    let (status, body) = s.post("/events", &event).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("recorded")),
        "{body}"
    );
    let t = s.db.store.run_tasks(run).await.unwrap().pop().unwrap();
    assert_eq!(
        (t.status, t.output),
        (TaskStatus::Success, Some(json!({"polled": true})))
    );
    // Delivered again: nothing left in flight for it.
    assert_eq!(s.post("/events", &event).await.1["result"], "ignored");
    assert_eq!(s.post("/events", &json!({"hello": 1})).await.0, 400);
}

/// Group commit and coalesced advances under load: 32 workers complete
/// 300 parent → child pairs as fast as they are dispatched (`ork serve`'s
/// background advancer), each completion releasing its own child, which
/// the report's batch claims while four more callers advance the run in a
/// loop. Every report is recorded once, every child dispatched exactly
/// once, the run finalized once.
async fn thirty_two_workers_release_three_hundred_children_once(db: TestDb) {
    const PAIRS: usize = 300;
    let yaml = ork_tests::pairs_yaml("pairs", PAIRS);
    let (run, dispatched) = race_reports(&db, "pairs", &yaml, 2 * PAIRS).await;
    let mut names: Vec<&str> = dispatched.iter().map(|r| r.attempt.name.as_str()).collect();
    names.sort();
    names.dedup();
    assert_eq!(
        (dispatched.len(), names.len()),
        (2 * PAIRS, 2 * PAIRS),
        "each task dispatched once"
    );
    assert_finished_once(&db, run, 2 * PAIRS).await;
}

/// A fan-out of 2,000 instances while 32 workers report the ones already
/// started: once reports are being recorded, `advance` claims its later
/// batches smaller (`DEFERRED_BATCH`) and on one lane, and still
/// dispatches every instance exactly once and finalizes the run once,
/// with four more callers advancing the run in a loop.
async fn a_fan_out_defers_to_reports_and_dispatches_each_instance_once(db: TestDb) {
    const N: usize = 2000;
    let yaml = format!("name: fan\ntasks:\n  work:\n    executor: noop\n    task_count: {N}\n");
    let (run, dispatched) = race_reports(&db, "fan", &yaml, N).await;
    let mut indexes: Vec<i64> = dispatched.iter().map(|r| r.attempt.task_index).collect();
    indexes.sort();
    indexes.dedup();
    assert_eq!(
        (dispatched.len(), indexes.len()),
        (N, N),
        "each instance dispatched once"
    );
    let batches: BTreeSet<usize> = dispatched.iter().map(|r| r.batch).collect();
    assert!(
        batches.contains(&(ork_core::engine::DEFERRED_BATCH as usize)),
        "no claim deferred to the reports: batches {batches:?}"
    );
    assert!(batches.iter().all(|b| *b <= 256), "{batches:?}");
    assert_finished_once(&db, run, N).await;
}

/// Applies `yaml` (the workflow `name`, its instances noop tasks held by
/// [`Holding`]) to a server advancing in the background, triggers it over
/// HTTP, and races to its end: 32 workers report success for every attempt
/// started, over HTTP, while four more callers advance the run in a loop.
/// The run, and the requests the workers took, once `total` reports are
/// recorded.
async fn race_reports(
    db: &TestDb,
    name: &str,
    yaml: &str,
    total: usize,
) -> (uuid::Uuid, Vec<DispatchRequest>) {
    let holding = Arc::new(Holding::default());
    let app = TestApp::builder(db.store.clone())
        .executors(Executors::new().with(ExecutorKind::Noop, holding.clone()))
        .advancer(ork_api::advancer::Advancer::spawn())
        .spawn()
        .await;
    app.engine.apply(&parse(yaml), None).await.unwrap();
    let (status, body) = app.post("/trigger", &json!({"workflow": name})).await;
    assert_eq!(status, 202, "{body}");
    let run: uuid::Uuid = body["run_id"].as_str().unwrap().parse().unwrap();
    let app = Arc::new(app);
    let dispatched: Arc<Mutex<Vec<DispatchRequest>>> = Arc::default();
    let recorded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..32).map(|_| {
        let (app, holding, dispatched, recorded) = (
            app.clone(),
            holding.clone(),
            dispatched.clone(),
            recorded.clone(),
        );
        tokio::spawn(async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while recorded.load(std::sync::atomic::Ordering::SeqCst) < total {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the workers got stuck"
                );
                let next = holding.0.lock().unwrap().pop();
                let Some(req) = next else {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    continue;
                };
                let token = req.callback.clone().unwrap().token;
                dispatched.lock().unwrap().push(req);
                let (status, body) = app.post("/complete", &report(&token, "success")).await;
                assert_eq!(
                    (status, &body["result"]),
                    (200, &json!("recorded")),
                    "{body}"
                );
                recorded.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    });
    // Racing the reports' claims.
    let advancers = (0..4).map(|_| {
        let (app, recorded) = (app.clone(), recorded.clone());
        tokio::spawn(async move {
            while recorded.load(std::sync::atomic::Ordering::SeqCst) < total {
                app.engine.advance(run).await.unwrap();
                tokio::task::yield_now().await;
            }
        })
    });
    let handles: Vec<_> = workers.chain(advancers).collect();
    for h in handles {
        h.await.unwrap();
    }
    let dispatched = dispatched.lock().unwrap().clone();
    (run, dispatched)
}

/// The run succeeded, with one `dispatched` event per instance and one
/// `success` per instance and for the run.
async fn assert_finished_once(db: &TestDb, run: uuid::Uuid, instances: usize) {
    assert_eq!(
        db.store.get_run(run).await.unwrap().status,
        RunStatus::Success
    );
    let events = db.store.run_events(run).await.unwrap();
    assert_eq!(
        events.iter().filter(|e| e.status == "dispatched").count(),
        instances
    );
    assert_eq!(
        events.iter().filter(|e| e.status == "success").count(),
        instances + 1
    );
}

on_both_backends!(
    a_cloud_run_execution_event_is_checked_then_recorded,
    callbacks_are_authenticated_idempotent_and_never_stale,
    bad_bodies_get_clear_errors,
    sixty_four_concurrent_webhooks_finalize_once,
    thirty_two_workers_release_three_hundred_children_once,
    a_fan_out_defers_to_reports_and_dispatches_each_instance_once,
);
