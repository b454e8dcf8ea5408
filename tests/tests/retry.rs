//! Retrying a finished run in place (`Engine::retry`), and the exit codes a
//! task declares not retryable; on SQLite and PostgreSQL.

use ork_tests::db as common;
use ork_tests::on_both_backends;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::*;
use ork_core::engine::{Engine, TriggerOptions};
use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError, Outcome};
use ork_core::model::{RunStatus, Task, TaskStatus};
use serde_json::json;
use uuid::Uuid;

const DIAMOND: &str = r#"
name: diamond
tasks:
  extract: {executor: noop}
  left: {executor: noop, depends_on: [extract], task_count: 4, retries: {count: 2, backoff: 1ms}}
  right: {executor: noop, depends_on: [extract]}
  join: {executor: noop, depends_on: [left, right]}
"#;

/// Fails the named tasks' attempts (exit code 3) while the count of
/// failures left for the name lasts, then succeeds; a success's output is
/// `{"task": name, "items": [1, 2, 3], "n": dispatches so far}`. Records
/// every dispatch's input.
#[derive(Default)]
struct Scripted {
    failures_left: Mutex<HashMap<String, u32>>,
    exit_code: i64,
    inputs: Mutex<Vec<(String, serde_json::Value)>>,
    /// Names whose next attempt is started and held (never reported).
    hold_once: Mutex<Vec<String>>,
}

impl Scripted {
    fn failing(name: &str, times: u32, exit_code: i64) -> Arc<Self> {
        Arc::new(Scripted {
            failures_left: Mutex::new(HashMap::from([(name.to_owned(), times)])),
            exit_code,
            ..Scripted::default()
        })
    }

    fn fail(&self, name: &str, times: u32) {
        self.failures_left
            .lock()
            .unwrap()
            .insert(name.to_owned(), times);
    }

    fn dispatches(&self, name: &str) -> usize {
        let inputs = self.inputs.lock().unwrap();
        inputs.iter().filter(|(n, _)| n == name).count()
    }
}

#[async_trait]
impl Executor for Scripted {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let name = req.attempt.name.clone();
        let n = {
            let mut inputs = self.inputs.lock().unwrap();
            inputs.push((name.clone(), req.input.clone()));
            inputs.len()
        };
        {
            let mut hold = self.hold_once.lock().unwrap();
            if let Some(i) = hold.iter().position(|h| *h == name) {
                hold.remove(i);
                return Ok(Dispatch::Started {
                    execution_id: format!("held-{}", req.attempt.task_id),
                });
            }
        }
        let mut left = self.failures_left.lock().unwrap();
        match left.get_mut(&name) {
            Some(k) if *k > 0 => {
                *k -= 1;
                Ok(Dispatch::Finished(Outcome::failure(
                    Some(self.exit_code),
                    "boom",
                )))
            }
            _ => Ok(Dispatch::Finished(Outcome::success(Some(
                json!({"task": name, "items": [1, 2, 3], "n": n}),
            )))),
        }
    }
}

async fn advance_to_end(engine: &Engine, run: Uuid) -> RunStatus {
    for _ in 0..400 {
        if let Some(s) = engine.advance(run).await.unwrap().finalized {
            return s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("run {run} did not finish");
}

async fn start(engine: &Engine, yaml: &str) -> Uuid {
    let spec = parse(yaml);
    engine.apply(&spec, None).await.unwrap();
    engine
        .trigger(
            &spec.name,
            json!({"day": "2026-11-01"}),
            TriggerOptions::default(),
        )
        .await
        .unwrap()
        .run
        .id
}

fn by<'a>(tasks: &'a [Task], name: &str) -> Vec<&'a Task> {
    tasks.iter().filter(|t| t.name == name).collect()
}

async fn a_retry_reruns_the_failures_in_place_and_keeps_the_successes(db: TestDb) {
    // The 4 `left` instances fail all 3 attempts each: the run fails.
    let exec = Scripted::failing("left", 12, 3);
    let engine = with_executor(db.store.clone(), exec.clone());
    let run = start(&engine, DIAMOND).await;
    assert_eq!(advance_to_end(&engine, run).await, RunStatus::Failed);
    let before = db.store.run_tasks(run).await.unwrap();
    let right = by(&before, "right")[0].clone();

    // Left instances and the skipped join run again; extract and right do not.
    assert_eq!(engine.retry(run, None).await.unwrap(), Some(5));
    let reopened = db.store.get_run(run).await.unwrap();
    assert_eq!(
        (reopened.status, reopened.tasks_open, reopened.tasks_failed),
        (RunStatus::Running, 5, 0)
    );
    assert!(reopened.finished_at.is_none());
    assert_eq!(advance_to_end(&engine, run).await, RunStatus::Success);

    let after = db.store.run_tasks(run).await.unwrap();
    assert_eq!(by(&after, "extract")[0].attempt, 1);
    assert_eq!(exec.dispatches("extract"), 1);
    let kept = by(&after, "right")[0];
    assert_eq!(
        (kept.attempt, &kept.output, kept.finished_at),
        (1, &right.output, right.finished_at),
        "a success and its output are kept"
    );
    for left in by(&after, "left") {
        // A new attempt, with the task's retries granted again.
        assert_eq!(
            (left.status, left.attempt, left.max_attempts),
            (TaskStatus::Success, 4, 6)
        );
    }
    let join = by(&after, "join")[0];
    assert_eq!((join.status, join.attempt), (TaskStatus::Success, 1));
    // The join's input has the kept output of `right`.
    let inputs = exec.inputs.lock().unwrap().clone();
    let (_, input) = inputs.iter().find(|(n, _)| n == "join").unwrap();
    assert!(
        input
            .to_string()
            .contains(&right.output.as_ref().unwrap()["n"].to_string()),
        "{input}"
    );
    let run_row = db.store.get_run(run).await.unwrap();
    assert_eq!(
        (
            run_row.tasks_open,
            run_row.tasks_failed,
            run_row.tasks_total
        ),
        (0, 0, 7)
    );

    // All of it is in the events: the reopening, each instance sent back.
    let events = db.store.run_events(run).await.unwrap();
    let reopen: Vec<_> = events
        .iter()
        .filter(|e| {
            e.task_id.is_none() && e.detail.as_deref().is_some_and(|d| d.starts_with("retry"))
        })
        .collect();
    assert_eq!(reopen.len(), 1);
    assert_eq!(
        reopen[0].detail.as_deref(),
        Some("retry requested: 5 task instance(s) to run again")
    );
    let sent_back = events
        .iter()
        .filter(|e| e.detail.as_deref() == Some("retry requested"))
        .count();
    assert_eq!(sent_back, 5);
    let finals: Vec<_> = events
        .iter()
        .filter(|e| {
            e.task_id.is_none()
                && RunStatus::ALL
                    .iter()
                    .any(|s| s.is_final() && s.as_str() == e.status)
        })
        .map(|e| e.status.as_str())
        .collect();
    assert_eq!(finals, ["failed", "success"]);

    // A successful run has nothing to retry.
    assert_eq!(engine.retry(run, None).await.unwrap(), None);
}

async fn sixteen_racing_retries_reopen_the_run_once(db: TestDb) {
    let exec = Scripted::failing("left", 12, 3);
    let engine = Arc::new(with_executor(db.store.clone(), exec.clone()));
    let run = start(&engine, DIAMOND).await;
    assert_eq!(advance_to_end(&engine, run).await, RunStatus::Failed);

    // 16 handlers, each with its own engine and connection pool.
    let mut engines = Vec::new();
    for _ in 0..16 {
        let store = ork_core::store::Store::connect(&db.url).await.unwrap();
        engines.push(with_executor(store, exec.clone()));
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let racers: Vec<_> = engines
        .into_iter()
        .map(|engine| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                engine.retry(run, None).await.unwrap()
            })
        })
        .collect();
    let mut reopened = Vec::new();
    for r in racers {
        if let Some(n) = r.await.unwrap() {
            reopened.push(n);
        }
    }
    assert_eq!(
        reopened,
        [5],
        "one retry reopens the run, the others find it running"
    );
    let events = db.store.run_events(run).await.unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.detail.as_deref() == Some("retry requested"))
            .count(),
        5,
        "each instance is sent back once"
    );
    let row = db.store.get_run(run).await.unwrap();
    assert_eq!((row.tasks_open, row.tasks_failed), (5, 0));
    assert_eq!(advance_to_end(&engine, run).await, RunStatus::Success);
    // Every instance is claimed by one caller per attempt: 4 + 1 more.
    assert_eq!(exec.dispatches("left"), 12 + 4);
    assert_eq!(exec.dispatches("join"), 1);
}

const TWO_BRANCHES: &str = r#"
name: branches
tasks:
  a: {executor: noop}
  b: {executor: noop}
  c: {executor: noop, depends_on: [a]}
  d: {executor: noop, depends_on: [a, b]}
"#;

async fn a_retry_of_one_task_reruns_it_and_its_descendants(db: TestDb) {
    let exec = Scripted::failing("a", 1, 1);
    exec.fail("b", 1);
    let engine = with_executor(db.store.clone(), exec.clone());
    let run = start(&engine, TWO_BRANCHES).await;
    assert_eq!(advance_to_end(&engine, run).await, RunStatus::Failed);

    let e = engine
        .retry(run, Some("nope"))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(r#"no task "nope""#), "{e}");
    let row = db.store.get_run(run).await.unwrap();
    assert_eq!((row.status, row.tasks_open), (RunStatus::Failed, 0));

    // a and c; d, which also waits for the failed b, stays skipped, and
    // the run fails again.
    assert_eq!(engine.retry(run, Some("a")).await.unwrap(), Some(2));
    assert_eq!(advance_to_end(&engine, run).await, RunStatus::Failed);
    let tasks = db.store.run_tasks(run).await.unwrap();
    let status = |n: &str| by(&tasks, n)[0].status;
    assert_eq!(
        [status("a"), status("b"), status("c"), status("d")],
        [
            TaskStatus::Success,
            TaskStatus::Failed,
            TaskStatus::Success,
            TaskStatus::Skipped
        ]
    );
    let row = db.store.get_run(run).await.unwrap();
    assert_eq!((row.tasks_open, row.tasks_failed), (0, 1));
    // Nothing left to retry in a's subtree: refused, and nothing changes.
    let e = engine.retry(run, Some("c")).await.unwrap_err().to_string();
    assert!(
        e.contains("no failed, cancelled or skipped task in \"c\""),
        "{e}"
    );
    let row = db.store.get_run(run).await.unwrap();
    assert_eq!((row.status, row.tasks_open), (RunStatus::Failed, 0));

    // Then the rest: b and d, with a's success kept.
    assert_eq!(engine.retry(run, None).await.unwrap(), Some(2));
    assert_eq!(advance_to_end(&engine, run).await, RunStatus::Success);
    assert_eq!(exec.dispatches("a"), 2);
    assert_eq!(exec.dispatches("c"), 1);
    assert_eq!(exec.dispatches("d"), 1);
}

async fn a_cancelled_run_is_retried_from_where_it_stopped(db: TestDb) {
    let exec = Arc::new(Scripted::default());
    exec.hold_once.lock().unwrap().push("c".into());
    let engine = with_executor(db.store.clone(), exec.clone());
    let run = start(&engine, TWO_BRANCHES).await;
    // a, b and d succeed; c is held in flight, then the run is cancelled.
    for _ in 0..10 {
        engine.advance(run).await.unwrap();
    }
    assert_eq!(
        db.store.get_run(run).await.unwrap().status,
        RunStatus::Running
    );
    assert!(engine.cancel(run).await.unwrap());
    let tasks = db.store.run_tasks(run).await.unwrap();
    assert_eq!(by(&tasks, "c")[0].status, TaskStatus::Cancelled);
    assert_eq!(engine.retry(run, None).await.unwrap(), Some(1));
    assert_eq!(advance_to_end(&engine, run).await, RunStatus::Success);
    let tasks = db.store.run_tasks(run).await.unwrap();
    assert!(tasks.iter().all(|t| t.status == TaskStatus::Success));
    assert_eq!(by(&tasks, "c")[0].attempt, 2);
    assert_eq!(
        exec.dispatches("a"),
        1,
        "a succeeded before the cancel: kept"
    );
}

const FOREACH: &str = r#"
name: fan
tasks:
  list: {executor: noop}
  each: {executor: noop, depends_on: [list], foreach: list.items}
  sum: {executor: noop, depends_on: [each]}
"#;

async fn a_retry_expands_a_foreach_whose_parent_failed(db: TestDb) {
    let exec = Scripted::failing("list", 1, 1);
    let engine = with_executor(db.store.clone(), exec.clone());
    let run = start(&engine, FOREACH).await;
    assert_eq!(advance_to_end(&engine, run).await, RunStatus::Failed);
    assert!(by(&db.store.run_tasks(run).await.unwrap(), "each").is_empty());
    // list and the skipped sum; each has no instance until list succeeds.
    assert_eq!(engine.retry(run, None).await.unwrap(), Some(2));
    assert_eq!(advance_to_end(&engine, run).await, RunStatus::Success);
    let tasks = db.store.run_tasks(run).await.unwrap();
    assert_eq!(by(&tasks, "each").len(), 3);
    assert_eq!(by(&tasks, "sum")[0].status, TaskStatus::Success);
    let row = db.store.get_run(run).await.unwrap();
    assert_eq!((row.tasks_total, row.tasks_open), (5, 0));
}

async fn a_non_retryable_exit_code_fails_at_once(db: TestDb) {
    let yaml = |codes: &str| {
        format!(
            "name: strict\ntasks:\n  t: {{executor: noop, retries: {{count: 3, backoff: 1ms}}, non_retryable_exit_codes: {codes}}}\n"
        )
    };
    // Exit code 3 is declared not retryable: one attempt, retries unspent.
    let exec = Scripted::failing("t", 99, 3);
    let engine = with_executor(db.store.clone(), exec.clone());
    let run = start(&engine, &yaml("[2, 3]")).await;
    assert_eq!(advance_to_end(&engine, run).await, RunStatus::Failed);
    let t = db.store.run_tasks(run).await.unwrap().pop().unwrap();
    assert_eq!(
        (t.status, t.attempt, t.exit_code),
        (TaskStatus::Failed, 1, Some(3))
    );
    assert_eq!(exec.dispatches("t"), 1);

    // Another code is retried per policy: 4 attempts.
    let run = start(&engine, &yaml("[2]")).await;
    assert_eq!(advance_to_end(&engine, run).await, RunStatus::Failed);
    let t = db.store.run_tasks(run).await.unwrap().pop().unwrap();
    assert_eq!((t.status, t.attempt), (TaskStatus::Failed, 4));
}

on_both_backends!(
    a_retry_reruns_the_failures_in_place_and_keeps_the_successes,
    sixteen_racing_retries_reopen_the_run_once,
    a_retry_of_one_task_reruns_it_and_its_descendants,
    a_cancelled_run_is_retried_from_where_it_stopped,
    a_retry_expands_a_foreach_whose_parent_failed,
    a_non_retryable_exit_code_fails_at_once,
);
