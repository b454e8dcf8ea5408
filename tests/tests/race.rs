//! Many handlers at once: 10,000 task instances driven by 32 concurrent
//! callers (16 advancing, 16 completing, every completion delivered twice;
//! or, for the immediate noop executor, 32 advancing).
//! Checked from the `events` table: every instance dispatched once, started
//! at most once, succeeded once, and the run finalized once.

use ork_tests::db as common;
use ork_tests::on_both_backends;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use ork_core::engine::TriggerOptions;
use ork_core::executor::{Completion, Dispatch, DispatchRequest, Executor, ExecutorError, Outcome};
use ork_core::model::RunStatus;
use tokio::sync::{mpsc, Mutex};
use uuid::Uuid;

/// 1 + 3 × 3,333 = 10,000 instances; each layer waits for all of the one before.
const LAYERS: &str = r#"
name: race
tasks:
  start: {executor: noop}
  a: {executor: noop, depends_on: [start], task_count: 3333}
  b: {executor: noop, depends_on: [a], task_count: 3333}
  c: {executor: noop, depends_on: [b], task_count: 3333}
"#;

/// Applies [`LAYERS`] and triggers a run of it.
async fn trigger_layers(engine: &ork_core::engine::Engine) -> ork_core::model::Run {
    engine.apply(&parse(LAYERS), None).await.unwrap();
    engine
        .trigger("race", serde_json::json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run
}

/// Reports every attempt as started, and its completion (twice) on a queue
/// that the completing callers share.
struct Queueing(mpsc::UnboundedSender<Completion>);

#[async_trait]
impl Executor for Queueing {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let done = Completion {
            attempt: req.attempt.clone(),
            outcome: Outcome::success(None),
        };
        self.0
            .send(done.clone())
            .map_err(|e| ExecutorError::permanent(e.to_string()))?;
        self.0
            .send(done)
            .map_err(|e| ExecutorError::permanent(e.to_string()))?;
        Ok(Dispatch::Started {
            execution_id: req.attempt.task_id.to_string(),
        })
    }
}

async fn ten_thousand_tasks_thirty_two_callers(db: TestDb) {
    let (tx, rx) = mpsc::unbounded_channel();
    let engine = Arc::new(with_executor(db.store.clone(), Arc::new(Queueing(tx))));
    let run = trigger_layers(&engine).await;
    assert_eq!(run.tasks_total, 10_000);
    let rx = Arc::new(Mutex::new(rx));
    let finalized = Arc::new(std::sync::Mutex::new(Vec::new()));

    let mut callers = Vec::new();
    for i in 0..32 {
        let (engine, rx, finalized) = (engine.clone(), rx.clone(), finalized.clone());
        callers.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
            while tokio::time::Instant::now() < deadline {
                if engine
                    .store()
                    .get_run(run.id)
                    .await
                    .unwrap()
                    .status
                    .is_final()
                {
                    return;
                }
                if i % 2 == 0 {
                    engine.advance(run.id).await.unwrap();
                    tokio::task::yield_now().await;
                } else {
                    let mut batch = Vec::new();
                    {
                        let mut rx = rx.lock().await;
                        while batch.len() < 200 {
                            match rx.try_recv() {
                                Ok(c) => batch.push(c),
                                Err(_) => break,
                            }
                        }
                    }
                    if batch.is_empty() {
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        continue;
                    }
                    let done = engine.complete(&batch).await.unwrap();
                    finalized.lock().unwrap().extend(done.finalized);
                }
            }
            panic!("run did not finish in time");
        }));
    }
    for c in callers {
        c.await.unwrap();
    }

    assert_eq!(
        *finalized.lock().unwrap(),
        vec![(run.id, RunStatus::Success)]
    );
    assert_each_instance_ran_once(&db, run.id).await;
}

/// Checked from `events`: every instance dispatched once, started at most
/// once, succeeded once; the run finalized once, with nothing left open.
async fn assert_each_instance_ran_once(db: &TestDb, run_id: Uuid) {
    let events = db.store.run_events(run_id).await.unwrap();
    let mut per_task: HashMap<(Uuid, &str), usize> = HashMap::new();
    for e in &events {
        if let Some(task) = e.task_id {
            *per_task.entry((task, e.status.as_str())).or_default() += 1;
        }
    }
    for status in ["dispatched", "success"] {
        let tasks = per_task
            .iter()
            .filter(|((_, s), _)| *s == status)
            .collect::<Vec<_>>();
        assert_eq!(tasks.len(), 10_000, "instances with a {status} event");
        assert!(
            tasks.iter().all(|(_, n)| **n == 1),
            "some instance has more than one {status} event"
        );
    }
    // A completion may overtake the record of its start: `running` is optional, never repeated.
    assert!(per_task
        .iter()
        .filter(|((_, s), _)| *s == "running")
        .all(|(_, n)| *n == 1));
    let run_finals = events
        .iter()
        .filter(|e| e.task_id.is_none() && e.status == "success")
        .count();
    assert_eq!(run_finals, 1);
    let run = db.store.get_run(run_id).await.unwrap();
    assert_eq!((run.status, run.tasks_open), (RunStatus::Success, 0));
}

/// The same 10,000 instances of the immediate noop executor (locked, then
/// written claim and end at once), driven by 32 callers that all advance,
/// each in up to four claim lanes, in batches of 100.
async fn ten_thousand_immediate_tasks_thirty_two_advancers(db: TestDb) {
    let config = ork_core::engine::EngineConfig {
        claim_batch: 100,
        immediate_batch: 100,
        claim_lanes: 4,
        ..Default::default()
    };
    let executors = ork_core::executor::Executors::new().with(
        ork_core::spec::ExecutorKind::Noop,
        Arc::new(ork_core::executor::NoopExecutor),
    );
    let engine = Arc::new(ork_core::engine::Engine::new(
        db.store.clone(),
        executors,
        config,
    ));
    let run = trigger_layers(&engine).await;
    let finalized = Arc::new(std::sync::Mutex::new(Vec::new()));
    let callers: Vec<_> = (0..32)
        .map(|_| {
            let (engine, finalized) = (engine.clone(), finalized.clone());
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(300);
                while tokio::time::Instant::now() < deadline {
                    let advanced = engine.advance(run.id).await.unwrap();
                    finalized.lock().unwrap().extend(advanced.finalized);
                    let status = engine.store().get_run(run.id).await.unwrap().status;
                    if status.is_final() {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
                panic!("run did not finish in time");
            })
        })
        .collect();
    for c in callers {
        c.await.unwrap();
    }
    assert_eq!(*finalized.lock().unwrap(), vec![RunStatus::Success]);
    assert_each_instance_ran_once(&db, run.id).await;
}

on_both_backends!(
    ten_thousand_tasks_thirty_two_callers,
    ten_thousand_immediate_tasks_thirty_two_advancers
);
