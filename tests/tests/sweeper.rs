//! The sweeper's repairs, on SQLite and PostgreSQL: claims whose dispatch
//! never happened, attempts past their timeout or their lease (also when
//! `ork run --resume` takes over a dead run), and cron slots fired by
//! overlapping ticks.

use ork_tests::db as common;
use ork_tests::on_both_backends;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use ork_core::engine::{Engine, EngineConfig, TriggerOptions};
use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError, Executors};
use ork_core::model::TaskStatus;
use ork_core::spec::ExecutorKind;
use serde_json::json;

/// Starts attempts and never reports them; can be told to hang instead.
#[derive(Default)]
struct Silent {
    hang: bool,
    started: Mutex<Vec<DispatchRequest>>,
}

#[async_trait]
impl Executor for Silent {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        self.started.lock().unwrap().push(req.clone());
        Ok(Dispatch::Started {
            execution_id: format!("silent-{}", req.attempt.attempt),
        })
    }
}

fn engine(db: &TestDb, executor: Arc<dyn Executor>, lease: Duration) -> Arc<Engine> {
    engine_with(
        db,
        executor,
        lease,
        EngineConfig::default().heartbeat_timeout,
    )
}

fn engine_with(
    db: &TestDb,
    executor: Arc<dyn Executor>,
    lease: Duration,
    heartbeat_timeout: Duration,
) -> Arc<Engine> {
    let config = EngineConfig {
        lease,
        heartbeat_timeout,
        ..EngineConfig::default()
    };
    Arc::new(Engine::new(
        db.store.clone(),
        Executors::new().with(ExecutorKind::Noop, executor),
        config,
    ))
}

async fn a_claim_whose_handler_died_is_dispatched_again_once(db: TestDb) {
    // The first handler claims, then hangs in dispatch and is killed.
    let dying = engine(
        &db,
        Arc::new(Silent {
            hang: true,
            ..Silent::default()
        }),
        Duration::from_millis(3000),
    );
    dying
        .apply(
            &parse("name: one\ntasks:\n  only: {executor: noop}\n"),
            None,
        )
        .await
        .unwrap();
    let run = dying
        .trigger("one", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    let handler = tokio::spawn({
        let dying = dying.clone();
        async move { dying.advance(run.id).await }
    });
    // Wait for the claim (however loaded the machine), then kill the handler.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let task = loop {
        let task = db.store.run_tasks(run.id).await.unwrap().pop().unwrap();
        if task.status != TaskStatus::Pending || std::time::Instant::now() > deadline {
            break task;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    handler.abort();
    assert_eq!((task.status, task.attempt), (TaskStatus::Dispatched, 1));

    // Before the lease runs out, a sweep leaves the claim alone.
    let silent = Arc::new(Silent::default());
    let sweeper = engine(&db, silent.clone(), Duration::from_secs(60));
    assert_eq!(sweeper.sweep().await.unwrap().requeued, 0);
    tokio::time::sleep(Duration::from_millis(3000)).await;
    // Two sweeps at once after it: the claim is put back and dispatched once.
    let (a, b) = tokio::join!(sweeper.sweep(), sweeper.sweep());
    assert_eq!(a.unwrap().requeued + b.unwrap().requeued, 1);
    let started = silent.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].attempt.attempt, 2);
    let task = db.store.run_tasks(run.id).await.unwrap().pop().unwrap();
    assert_eq!((task.status, task.attempt), (TaskStatus::Running, 2));
    let events = db.store.run_events(run.id).await.unwrap();
    let requeues: Vec<_> = events
        .iter()
        .filter(|e| e.status == "pending" && e.task_id.is_some())
        .collect();
    assert_eq!(requeues.len(), 1);
    assert_eq!(
        requeues[0].detail.as_deref(),
        Some("claim lease expired with no start recorded: requeued, no retry spent")
    );
    assert_eq!(
        events.iter().filter(|e| e.status == "dispatched").count(),
        2
    );
}

async fn a_task_past_its_timeout_is_failed_and_retried(db: TestDb) {
    let silent = Arc::new(Silent::default());
    let engine = engine(&db, silent.clone(), Duration::from_secs(60));
    let spec = "name: slow\ntasks:\n  t: {executor: noop, timeout: 1s, retries: {count: 1, backoff: 1ms}}\n";
    engine.apply(&parse(spec), None).await.unwrap();
    let run = engine
        .trigger("slow", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    engine.advance(run.id).await.unwrap();
    assert_eq!(engine.sweep().await.unwrap().overdue, 0, "not overdue yet");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let swept = engine.sweep().await.unwrap();
    assert_eq!(swept.overdue, 1);
    // Retried at once (1ms backoff) by the same sweep's advance, or the next.
    tokio::time::sleep(Duration::from_millis(5)).await;
    engine.sweep().await.unwrap();
    let attempts: Vec<i64> = silent
        .started
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.attempt.attempt)
        .collect();
    assert_eq!(attempts, vec![1, 2]);
    let events = db.store.run_events(run.id).await.unwrap();
    let timed_out = events
        .iter()
        .find(|e| e.status == "pending" && e.task_id.is_some())
        .unwrap();
    assert_eq!(timed_out.detail.as_deref(), Some("timed out after 1s"));
    // The second attempt times out too: no retries left, the run fails.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    engine.sweep().await.unwrap();
    let run = db.store.get_run(run.id).await.unwrap();
    assert_eq!(run.status, ork_core::model::RunStatus::Failed);
}

async fn overlapping_ticks_fire_a_schedule_slot_once(db: TestDb) {
    let engine = Arc::new(noop_engine(db.store.clone()));
    let spec = "name: hourly\nschedule: \"0 * * * *\"\ntasks:\n  t: {executor: noop}\n";
    engine.apply(&parse(spec), None).await.unwrap();
    let later = chrono::Utc::now() + chrono::Duration::hours(3);
    let ticks: Vec<_> = (0..4)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move { engine.fire_schedules(later).await.unwrap() })
        })
        .collect();
    let mut fired = Vec::new();
    for t in ticks {
        fired.extend(t.await.unwrap());
    }
    // Catch-up is off: only the latest due slot, once.
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert!(engine.fire_schedules(later).await.unwrap().is_empty());
    let runs = db.store.list_runs(Some("hourly"), 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].trigger, "schedule");
    assert!(runs[0]
        .idempotency_key
        .as_deref()
        .unwrap()
        .starts_with("schedule:"));
}

/// A started attempt whose worker never beats (it died before its first
/// heartbeat, or cannot reach the server) and has no `timeout`: its start
/// lease runs out and the sweeper fails it, retries it, then fails the run.
async fn a_started_attempt_that_never_beats_is_failed_and_retried(db: TestDb) {
    let silent = Arc::new(Silent::default());
    let engine = engine_with(
        &db,
        silent.clone(),
        Duration::from_secs(60),
        Duration::from_millis(500),
    );
    let spec = "name: gone\ntasks:\n  t: {executor: noop, retries: {count: 1, backoff: 1ms}}\n";
    engine.apply(&parse(spec), None).await.unwrap();
    let run = engine
        .trigger("gone", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    engine.advance(run.id).await.unwrap();
    let task = db.store.run_tasks(run.id).await.unwrap().pop().unwrap();
    assert_eq!(task.status, TaskStatus::Running);
    assert!(
        task.lease_expires_at.is_some(),
        "a started attempt has a deadline from its start on"
    );
    assert_eq!(engine.sweep().await.unwrap().overdue, 0, "not expired yet");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(engine.sweep().await.unwrap().overdue, 1);
    tokio::time::sleep(Duration::from_millis(5)).await;
    engine.sweep().await.unwrap();
    let attempts: Vec<i64> = silent
        .started
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.attempt.attempt)
        .collect();
    assert_eq!(attempts, vec![1, 2]);
    let events = db.store.run_events(run.id).await.unwrap();
    let gone = events
        .iter()
        .find(|e| e.status == "pending" && e.task_id.is_some())
        .unwrap();
    assert_eq!(
        gone.detail.as_deref(),
        Some("no heartbeat for 500ms: the worker is gone")
    );
    // The second attempt goes the same way: no retries left, the run fails.
    tokio::time::sleep(Duration::from_millis(600)).await;
    engine.sweep().await.unwrap();
    let run = db.store.get_run(run.id).await.unwrap();
    assert_eq!(run.status, ork_core::model::RunStatus::Failed);
    assert_eq!(run.tasks_open, 0);
}

/// `ork run --resume` (`engine::drive` on a run that has started): the
/// attempt a dead `ork run` left running is failed as soon as its lease
/// has run out, and retried, not a renewal period later (30 s here).
async fn a_resumed_run_sweeps_its_expired_leases_at_once(db: TestDb) {
    let spec = parse(
        "name: resumed\ntasks:\n  only:\n    executor: noop\n    retries: {count: 1, backoff: 1ms}\n",
    );
    // The dead process: it started the attempt, with a start lease of 1 s,
    // and was never heard of again.
    let dead = engine_with(
        &db,
        Arc::new(Silent::default()),
        Duration::from_secs(60),
        Duration::from_secs(1),
    );
    dead.apply(&spec, None).await.unwrap();
    let run = dead
        .trigger("resumed", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    dead.advance(run.id).await.unwrap();
    let task = db.store.run_tasks(run.id).await.unwrap().remove(0);
    assert_eq!((task.status, task.attempt), (TaskStatus::Running, 1));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The resuming process renews leases every 30 s (a quarter of its
    // heartbeat timeout, at most 30 s).
    let resumer = engine_with(
        &db,
        Arc::new(ork_core::executor::NoopExecutor),
        Duration::from_secs(60),
        Duration::from_secs(600),
    );
    let (_keep, mut completions) = tokio::sync::mpsc::unbounded_channel();
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        ork_core::engine::drive(&resumer, run.id, &mut completions),
    )
    .await
    .expect("the expired lease was swept before the first renewal")
    .unwrap();
    assert_eq!(status, ork_core::model::RunStatus::Success);
    let task = db.store.run_tasks(run.id).await.unwrap().remove(0);
    assert_eq!((task.status, task.attempt), (TaskStatus::Success, 2));
}

on_both_backends!(
    a_resumed_run_sweeps_its_expired_leases_at_once,
    a_started_attempt_that_never_beats_is_failed_and_retried,
    a_claim_whose_handler_died_is_dispatched_again_once,
    a_task_past_its_timeout_is_failed_and_retried,
    overlapping_ticks_fire_a_schedule_slot_once,
);
