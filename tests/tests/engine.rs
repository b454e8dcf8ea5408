//! The engine and the store, one body per behaviour, run on SQLite and PostgreSQL.

use ork_tests::db as common;
use ork_tests::on_both_backends;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::*;
use ork_core::engine::TriggerOptions;
use ork_core::executor::{Completion, Dispatch, DispatchRequest, Executor, ExecutorError, Outcome};
use ork_core::model::{AttemptRef, RunStatus, TaskStatus};
use serde_json::json;

const DIAMOND: &str = r#"
name: diamond
tasks:
  extract: {executor: noop}
  left: {executor: noop, depends_on: [extract], task_count: 4}
  right: {executor: noop, depends_on: [extract]}
  join: {executor: noop, depends_on: [left, right]}
"#;

/// Starts attempts and holds them, so the test decides how they end.
#[derive(Default)]
struct Holding {
    started: Mutex<Vec<DispatchRequest>>,
}

impl Holding {
    fn take(&self) -> Vec<DispatchRequest> {
        std::mem::take(&mut *self.started.lock().unwrap())
    }
}

#[async_trait]
impl Executor for Holding {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        self.started.lock().unwrap().push(req.clone());
        Ok(Dispatch::Started {
            execution_id: format!("held-{}", req.attempt.task_id),
        })
    }
}

/// Fails the named tasks a number of times, then succeeds.
struct Flaky {
    failures_left: Mutex<HashMap<String, u32>>,
}

#[async_trait]
impl Executor for Flaky {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let mut left = self.failures_left.lock().unwrap();
        match left.get_mut(&req.attempt.name) {
            Some(n) if *n > 0 => {
                *n -= 1;
                Ok(Dispatch::Finished(Outcome::failure(Some(3), "boom")))
            }
            _ => Ok(Dispatch::Finished(Outcome::success(Some(
                json!({"task": req.attempt.name}),
            )))),
        }
    }
}

/// Refuses to start the named task: with a permanent error always, or
/// with a transient one the given number of times.
struct Refusing {
    permanent: bool,
    transient_left: Mutex<u32>,
    dispatches: Mutex<u32>,
}

impl Refusing {
    fn permanent() -> Self {
        Refusing {
            permanent: true,
            transient_left: Mutex::new(0),
            dispatches: Mutex::new(0),
        }
    }

    fn transient(times: u32) -> Self {
        Refusing {
            permanent: false,
            transient_left: Mutex::new(times),
            dispatches: Mutex::new(0),
        }
    }
}

#[async_trait]
impl Executor for Refusing {
    async fn dispatch(&self, _req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        *self.dispatches.lock().unwrap() += 1;
        if self.permanent {
            return Err(ExecutorError::permanent("403 PERMISSION_DENIED: denied"));
        }
        let mut left = self.transient_left.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            return Err(ExecutorError::transient("503 UNAVAILABLE: try later"));
        }
        Ok(Dispatch::Finished(Outcome::success(None)))
    }
}

const RETRIED: &str = "name: r\ntasks:\n  t: {executor: noop, retries: {count: 3, backoff: 1ms}}\n";

/// Advances the run until it is final.
async fn advance_to_end(engine: &ork_core::engine::Engine, run: uuid::Uuid) -> RunStatus {
    for _ in 0..200 {
        if let Some(s) = engine.advance(run).await.unwrap().finalized {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("run {run} did not finish");
}

async fn a_permanent_dispatch_error_is_not_retried(db: TestDb) {
    let refusing = Arc::new(Refusing::permanent());
    let engine = with_executor(db.store.clone(), refusing.clone());
    engine.apply(&parse(RETRIED), None).await.unwrap();
    let run = engine
        .trigger("r", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    assert_eq!(advance_to_end(&engine, run.id).await, RunStatus::Failed);
    let task = db.store.run_tasks(run.id).await.unwrap().pop().unwrap();
    assert_eq!((task.status, task.attempt), (TaskStatus::Failed, 1));
    assert_eq!(
        task.error.as_deref(),
        Some("dispatch failed: 403 PERMISSION_DENIED: denied")
    );
    assert_eq!(
        *refusing.dispatches.lock().unwrap(),
        1,
        "retries: 3 not spent"
    );
}

async fn a_transient_dispatch_error_is_retried(db: TestDb) {
    let refusing = Arc::new(Refusing::transient(2));
    let engine = with_executor(db.store.clone(), refusing.clone());
    engine.apply(&parse(RETRIED), None).await.unwrap();
    let run = engine
        .trigger("r", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    assert_eq!(advance_to_end(&engine, run.id).await, RunStatus::Success);
    let task = db.store.run_tasks(run.id).await.unwrap().pop().unwrap();
    assert_eq!((task.status, task.attempt), (TaskStatus::Success, 3));
    assert_eq!(*refusing.dispatches.lock().unwrap(), 3);
}

fn ok(attempt: &AttemptRef) -> Completion {
    Completion {
        attempt: attempt.clone(),
        outcome: Outcome::success(None),
    }
}

/// A run of the diamond on an engine whose executor holds its attempts,
/// advanced once: `extract`'s attempt is held.
async fn diamond_held(
    db: &TestDb,
    params: serde_json::Value,
) -> (
    ork_core::engine::Engine,
    Arc<Holding>,
    ork_core::model::Run,
    DispatchRequest,
) {
    let holding = Arc::new(Holding::default());
    let engine = with_executor(db.store.clone(), holding.clone());
    engine.apply(&parse(DIAMOND), None).await.unwrap();
    let run = engine
        .trigger("diamond", params, TriggerOptions::default())
        .await
        .unwrap()
        .run;
    engine.advance(run.id).await.unwrap();
    let extract = holding.take().pop().unwrap();
    (engine, holding, run, extract)
}

/// A report batch claims the instances it releases in its own
/// transaction: they are `dispatched` before any `advance`, and
/// `dispatch_released` starts them. Without the claim (or where limits
/// gate it) the run is left to `advance`, as before.
async fn a_report_claims_the_children_it_releases(db: TestDb) {
    let (engine, holding, run, extract) = diamond_held(&db, json!({})).await;
    let extract = extract.attempt;
    let (reported, mut done) = engine.report_all(&[ok(&extract)], true).await.unwrap();
    assert_eq!(reported.len(), 1);
    assert!(done.to_advance.is_empty(), "{done:?}");
    assert_eq!(done.released.len(), 1);
    let status = |name: &'static str| {
        let store = db.store.clone();
        async move {
            let tasks = store.run_tasks(run.id).await.unwrap();
            tasks
                .iter()
                .filter(|t| t.name == name)
                .map(|t| t.status)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(status("left").await, vec![TaskStatus::Dispatched; 4]);
    assert_eq!(status("right").await, vec![TaskStatus::Dispatched]);
    assert_eq!(status("join").await, vec![TaskStatus::Pending]);
    assert!(holding.take().is_empty(), "claimed, not yet dispatched");
    let again = engine
        .dispatch_released(done.released.pop().unwrap())
        .await
        .unwrap();
    assert!(!again, "the claim took everything ready");
    let children = holding.take();
    let mut started: Vec<String> = children
        .iter()
        .map(|r| format!("{}[{}]", r.attempt.name, r.attempt.task_index))
        .collect();
    started.sort();
    assert_eq!(
        started,
        ["left[0]", "left[1]", "left[2]", "left[3]", "right[0]"]
    );
    assert_eq!(status("left").await, vec![TaskStatus::Running; 4]);
    // Nothing is left for an advance.
    assert_eq!(engine.advance(run.id).await.unwrap().dispatched, 0);

    // Without the claim: the run is to be advanced, nothing is claimed.
    let ends: Vec<Completion> = children.iter().map(|r| ok(&r.attempt)).collect();
    let (_, done) = engine.report_all(&ends, false).await.unwrap();
    assert!(done.released.is_empty());
    assert_eq!(done.to_advance, vec![run.id]);
    assert_eq!(status("join").await, vec![TaskStatus::Pending]);
    assert_eq!(engine.advance(run.id).await.unwrap().dispatched, 1);

    // A workflow with limits: its claims are `advance`'s.
    let limited = "name: lim\ntasks:\n  a: {executor: noop}\n  b: {executor: noop, depends_on: [a], max_parallel: 1}\n";
    engine.apply(&parse(limited), None).await.unwrap();
    let run = engine
        .trigger("lim", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    engine.advance(run.id).await.unwrap();
    let a = holding.take().pop().unwrap().attempt;
    let (_, done) = engine.report_all(&[ok(&a)], true).await.unwrap();
    assert!(done.released.is_empty());
    assert_eq!(done.to_advance, vec![run.id]);
    assert_eq!(engine.advance(run.id).await.unwrap().dispatched, 1);
}

async fn applying_a_changed_spec_creates_a_version(db: TestDb) {
    let engine = noop_engine(db.store.clone());
    let v1 = engine.apply(&parse(DIAMOND), None).await.unwrap();
    assert_eq!((v1.version, v1.created), (1, true));
    let again = engine.apply(&parse(DIAMOND), None).await.unwrap();
    assert_eq!((again.version, again.created), (1, false));
    let run = engine
        .trigger("diamond", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;

    let changed = DIAMOND.replace(
        "right: {executor: noop,",
        "right: {executor: noop, retries: 2,",
    );
    let v2 = engine.apply(&parse(&changed), None).await.unwrap();
    assert_eq!((v2.version, v2.created), (2, true));
    // The run keeps the version it started with.
    assert_eq!(db.store.get_run(run.id).await.unwrap().version, 1);
    let listed = db.store.list_workflows().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].latest_version, 2);
}

async fn a_diamond_with_fan_out_runs_to_success(db: TestDb) {
    let engine = noop_engine(db.store.clone());
    engine.apply(&parse(DIAMOND), None).await.unwrap();
    let run = engine
        .trigger(
            "diamond",
            json!({"day": "2026-11-23"}),
            TriggerOptions::default(),
        )
        .await
        .unwrap()
        .run;
    assert_eq!(run.tasks_total, 7);
    assert_eq!(run.status, RunStatus::Pending);

    let report = engine.advance(run.id).await.unwrap();
    assert_eq!(report.dispatched, 7);
    assert_eq!(report.finalized, Some(RunStatus::Success));

    let run = db.store.get_run(run.id).await.unwrap();
    assert_eq!(
        (run.status, run.tasks_open, run.tasks_failed),
        (RunStatus::Success, 0, 0)
    );
    let tasks = db.store.run_tasks(run.id).await.unwrap();
    assert!(tasks
        .iter()
        .all(|t| t.status == TaskStatus::Success && t.attempt == 1));
    // `join` was dispatched only after all of its five parent instances succeeded.
    let join = tasks.iter().find(|t| t.name == "join").unwrap();
    let last_parent = tasks
        .iter()
        .filter(|t| t.name != "join" && t.name != "extract")
        .map(|t| t.finished_at.unwrap())
        .max()
        .unwrap();
    assert!(join.dispatched_at.unwrap() >= last_parent);
    let finals = db
        .store
        .run_events(run.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.task_id.is_none() && e.status == "success")
        .count();
    assert_eq!(finals, 1);
}

async fn a_failing_task_is_retried_then_its_descendants_skipped(db: TestDb) {
    let flaky = Arc::new(Flaky {
        failures_left: Mutex::new(HashMap::from([("left".to_owned(), 99)])),
    });
    let engine = with_executor(db.store.clone(), flaky);
    let spec = DIAMOND.replace(
        "task_count: 4}",
        "task_count: 4, retries: {count: 2, backoff: 1ms}}",
    );
    engine.apply(&parse(&spec), None).await.unwrap();
    let run = engine
        .trigger("diamond", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    let mut finalized = None;
    for _ in 0..100 {
        if let Some(s) = engine.advance(run.id).await.unwrap().finalized {
            finalized = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(finalized, Some(RunStatus::Failed));
    let tasks = db.store.run_tasks(run.id).await.unwrap();
    let by = |name: &str| tasks.iter().filter(|t| t.name == name).collect::<Vec<_>>();
    for left in by("left") {
        assert_eq!(
            (left.status, left.attempt, left.exit_code),
            (TaskStatus::Failed, 3, Some(3))
        );
        assert_eq!(left.error.as_deref(), Some("boom"));
    }
    assert_eq!(by("right")[0].status, TaskStatus::Success);
    assert_eq!(by("join")[0].status, TaskStatus::Skipped);
    let run = db.store.get_run(run.id).await.unwrap();
    assert_eq!(
        (run.status, run.tasks_open, run.tasks_failed),
        (RunStatus::Failed, 0, 4),
        "4 instances failed; the skipped join is not a failure"
    );
    let events = db.store.run_events(run.id).await.unwrap();
    // Each of the 4 instances: 3 attempts, 2 of them sent back to pending.
    assert_eq!(
        events
            .iter()
            .filter(|e| e.status == "pending" && e.task_id.is_some())
            .count(),
        8
    );
    let skip = events.iter().find(|e| e.status == "skipped").unwrap();
    assert_eq!(skip.detail.as_deref(), Some("upstream task left failed"));
}

async fn outputs_flow_to_children_as_input(db: TestDb) {
    let (engine, holding, run, extract) = diamond_held(&db, json!({"n": 1})).await;
    assert_eq!(extract.input, json!({"params": {"n": 1}, "upstream": {}}));
    let done = Completion {
        attempt: extract.attempt,
        outcome: Outcome::success(Some(json!({"rows": 10}))),
    };
    engine.complete(&[done]).await.unwrap();
    engine.advance(run.id).await.unwrap();
    let mut next = holding.take();
    assert_eq!(next.len(), 5);
    for req in &next {
        assert_eq!(req.input["upstream"]["extract"], json!({"rows": 10}));
    }
    next.sort_by_key(|r| (r.attempt.name.clone(), r.attempt.task_index));
    let completions: Vec<Completion> = next
        .iter()
        .map(|r| Completion {
            attempt: r.attempt.clone(),
            outcome: Outcome::success(Some(json!(r.attempt.task_index))),
        })
        .collect();
    engine.complete(&completions).await.unwrap();
    engine.advance(run.id).await.unwrap();
    let join = holding.take().pop().unwrap();
    assert_eq!(join.input["upstream"]["left"], json!([0, 1, 2, 3]));
    assert_eq!(join.input["upstream"]["right"], json!(0));
}

async fn replayed_and_stale_completions_change_nothing(db: TestDb) {
    let holding = Arc::new(Holding::default());
    let engine = with_executor(db.store.clone(), holding.clone());
    engine
        .apply(
            &parse(
                "name: one\ntasks:\n  only: {executor: noop, retries: {count: 1, backoff: 1ms}}\n",
            ),
            None,
        )
        .await
        .unwrap();
    let run = engine
        .trigger("one", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    engine.advance(run.id).await.unwrap();
    let first = holding.take().pop().unwrap().attempt;
    // Attempt 1 fails and is retried as attempt 2.
    let failed = Completion {
        attempt: first.clone(),
        outcome: Outcome::failure(Some(1), "x"),
    };
    assert_eq!(
        engine
            .complete(std::slice::from_ref(&failed))
            .await
            .unwrap()
            .applied(),
        1
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    engine.advance(run.id).await.unwrap();
    let second = holding.take().pop().unwrap().attempt;
    assert_eq!(second.attempt, 2);
    let before = db.store.run_events(run.id).await.unwrap().len();
    // The superseded attempt reports again, either way: nothing changes.
    assert_eq!(engine.complete(&[failed]).await.unwrap().applied(), 0);
    assert_eq!(engine.complete(&[ok(&first)]).await.unwrap().applied(), 0);
    assert_eq!(db.store.run_events(run.id).await.unwrap().len(), before);
    // The current attempt finishes the run; its replay changes nothing.
    let done = engine.complete(&[ok(&second)]).await.unwrap();
    assert_eq!(done.finalized, vec![(run.id, RunStatus::Success)]);
    let after = db.store.run_events(run.id).await.unwrap().len();
    let replay = engine.complete(&[ok(&second), ok(&second)]).await.unwrap();
    assert_eq!((replay.applied(), replay.finalized.len()), (0, 0));
    assert_eq!(db.store.run_events(run.id).await.unwrap().len(), after);
}

async fn an_idempotency_key_returns_the_first_run(db: TestDb) {
    let engine = noop_engine(db.store.clone());
    engine.apply(&parse(DIAMOND), None).await.unwrap();
    let opts = || TriggerOptions {
        trigger: "http".into(),
        idempotency_key: Some("2026-11-23".into()),
    };
    let first = engine.trigger("diamond", json!({}), opts()).await.unwrap();
    let second = engine.trigger("diamond", json!({}), opts()).await.unwrap();
    assert!(first.created && !second.created);
    assert_eq!(first.run.id, second.run.id);
    assert_eq!(
        db.store.list_runs(Some("diamond"), 10).await.unwrap().len(),
        1
    );
}

async fn cancel_closes_the_run_and_ignores_late_completions(db: TestDb) {
    let (engine, _holding, run, extract) = diamond_held(&db, json!({})).await;
    let extract = extract.attempt;
    assert!(engine.cancel(run.id).await.unwrap());
    assert!(
        !engine.cancel(run.id).await.unwrap(),
        "a second cancel finds the run final"
    );
    let late = engine.complete(&[ok(&extract)]).await.unwrap();
    assert_eq!(late.applied(), 0);
    let run = db.store.get_run(run.id).await.unwrap();
    assert_eq!(run.status, RunStatus::Cancelled);
    let tasks = db.store.run_tasks(run.id).await.unwrap();
    assert!(tasks.iter().all(|t| t.status == TaskStatus::Cancelled));
    assert_eq!(engine.advance(run.id).await.unwrap().dispatched, 0);
}

async fn a_missing_executor_fails_the_attempt_with_a_clear_error(db: TestDb) {
    let engine = noop_engine(db.store.clone());
    engine
        .apply(&parse("name: p\ntasks:\n  t: {command: 'true'}\n"), None)
        .await
        .unwrap();
    let run = engine
        .trigger("p", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    assert_eq!(
        engine.advance(run.id).await.unwrap().finalized,
        Some(RunStatus::Failed)
    );
    let task = db.store.run_tasks(run.id).await.unwrap().pop().unwrap();
    assert_eq!(
        task.error.as_deref(),
        Some("dispatch failed: no executor configured for `process` tasks")
    );
}

/// A trigger that fills the tasks tables of a fresh PostgreSQL database
/// has them analyzed, so the planner looks rows up by key instead of
/// scanning the run's (`store/statistics.rs`); a small one does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_trigger_refreshes_the_planner_statistics() {
    let db = common::postgres().await;
    let pg = sqlx::PgPool::connect(&db.url).await.unwrap();
    // Only the trigger analyzes them here.
    for off in [
        "ALTER TABLE tasks SET (autovacuum_enabled = false)",
        "ALTER TABLE task_groups SET (autovacuum_enabled = false)",
    ] {
        sqlx::query(off).execute(&pg).await.unwrap();
    }
    let reltuples = || async {
        sqlx::query_scalar::<_, f32>("SELECT reltuples FROM pg_class WHERE oid = 'tasks'::regclass")
            .fetch_one(&pg)
            .await
            .unwrap()
    };
    let engine = noop_engine(db.store.clone());
    let trigger = |n: u64| {
        let engine = &engine;
        async move {
            let yaml = format!("name: wide{n}\ntasks:\n  w: {{executor: noop, task_count: {n}}}\n");
            engine.apply(&parse(&yaml), None).await.unwrap();
            engine
                .trigger(&format!("wide{n}"), json!({}), TriggerOptions::default())
                .await
                .unwrap();
        }
    };
    let small = ork_core::store::ANALYZE_AFTER - 1;
    trigger(small).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        reltuples().await < small as f32,
        "analyzed after {small} instances"
    );
    trigger(1500).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let all = (small + 1500) as f32;
    while reltuples().await < all {
        assert!(std::time::Instant::now() < deadline, "tasks not analyzed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

on_both_backends!(
    a_report_claims_the_children_it_releases,
    applying_a_changed_spec_creates_a_version,
    a_diamond_with_fan_out_runs_to_success,
    a_failing_task_is_retried_then_its_descendants_skipped,
    outputs_flow_to_children_as_input,
    replayed_and_stale_completions_change_nothing,
    an_idempotency_key_returns_the_first_run,
    cancel_closes_the_run_and_ignores_late_completions,
    a_missing_executor_fails_the_attempt_with_a_clear_error,
    a_permanent_dispatch_error_is_not_retried,
    a_transient_dispatch_error_is_retried,
);
