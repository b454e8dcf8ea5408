//! The data plane: inputs by file when large, fan-in of many outputs
//! (outputs of any size in each payload store: `payload_stores.rs`), and `foreach` (dynamic fan-out) including its edge cases and a
//! race of many advancing and completing callers.

use ork_tests::db as common;
use ork_tests::on_both_backends;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use ork_core::engine::{Engine, EngineConfig, TriggerOptions};
use ork_core::executor::{
    Completion, Dispatch, DispatchRequest, Executor, ExecutorError, Executors, Outcome,
};
use ork_core::model::{RunStatus, TaskStatus};
use ork_core::payload::Payloads;
use ork_core::spec::ExecutorKind;
use serde_json::{json, Value};
use tokio::sync::{mpsc, Mutex};
use uuid::Uuid;

fn engine(
    store: ork_core::store::Store,
    executor: Arc<dyn Executor>,
    dir: &std::path::Path,
    max_items: usize,
) -> Engine {
    Engine::new(
        store,
        Executors::new().with(ExecutorKind::Noop, executor),
        EngineConfig {
            payloads: Payloads::new(dir.join("payloads")),
            max_foreach_items: max_items,
            ..EngineConfig::default()
        },
    )
}

/// Reads the input a request carries, inline or from its file (while the
/// attempt runs: the file goes when it ends).
fn input_of(req: &DispatchRequest) -> Value {
    match &req.input_file {
        Some(path) => {
            serde_json::from_slice(&std::fs::read(path).expect("input file")).expect("input JSON")
        }
        None => req.input.clone(),
    }
}

/// Completes each attempt at once with a fixed output, and keeps the requests.
struct Answering {
    outputs: HashMap<&'static str, Value>,
    seen: std::sync::Mutex<Vec<DispatchRequest>>,
}

#[async_trait]
impl Executor for Answering {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        // The input as the attempt saw it, read now.
        let seen = DispatchRequest {
            batch: 1,
            input: input_of(req),
            ..req.clone()
        };
        self.seen.lock().unwrap().push(seen);
        let output = self.outputs.get(req.attempt.name.as_str()).cloned();
        Ok(Dispatch::Finished(Outcome::success(output)))
    }
}

fn answering(outputs: &[(&'static str, Value)]) -> Arc<Answering> {
    Arc::new(Answering {
        outputs: outputs.iter().cloned().collect(),
        seen: Default::default(),
    })
}

/// 10,000 instances of 1 KiB each: the join gets one input file with all
/// of them in index order, not 10,000 inline values in its environment.
async fn fan_in_of_ten_thousand_outputs(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let exec = answering(&[("a", json!({"pad": "y".repeat(1024)}))]);
    let engine = engine(db.store.clone(), exec.clone(), dir.path(), 100_000);
    let spec = "name: fanin\ntasks:\n  a: {executor: noop, task_count: 10000}\n  join: {executor: noop, depends_on: [a]}\n";
    engine.apply(&parse(spec), None).await.unwrap();
    let run = engine
        .trigger("fanin", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    engine.advance(run.id).await.unwrap();
    assert_eq!(
        db.store.get_run(run.id).await.unwrap().status,
        RunStatus::Success
    );
    let seen = exec.seen.lock().unwrap();
    let join = seen.iter().find(|r| r.attempt.name == "join").unwrap();
    assert!(join.input_file.is_some(), "a large input goes by file");
    let env = join.worker_env();
    assert!(env.iter().any(|(k, _)| *k == "ORK_INPUT_FILE"));
    assert!(!env.iter().any(|(k, _)| *k == "ORK_INPUT"));
    let input = join.input.clone();
    assert!(
        !join.input_file.as_ref().unwrap().exists(),
        "the input file goes when its attempt ends"
    );
    let a = input["upstream"]["a"].as_array().unwrap();
    assert_eq!(a.len(), 10_000);
    assert!(a.iter().all(|o| o["pad"].as_str().unwrap().len() == 1024));
}

/// Answers each instance with its index and 1 KiB of padding.
struct Indexed;

#[async_trait]
impl Executor for Indexed {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let output = json!({"i": req.attempt.task_index, "pad": "y".repeat(1024)});
        Ok(Dispatch::Finished(Outcome::success(Some(output))))
    }
}

/// The same fan-in with a real child: a python3 process on the process
/// executor reads the 10,000 outputs (10 MiB) from `ORK_INPUT_FILE`, checks
/// they are in index order, and writes their count to `ORK_OUTPUT`.
async fn fan_in_of_ten_thousand_outputs_into_a_process(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut completions) = mpsc::unbounded_channel();
    let process = Arc::new(ork_executors::ProcessExecutor::new(
        dir.path().join("logs"),
        tx,
    ));
    let engine = Engine::new(
        db.store.clone(),
        Executors::new()
            .with(ExecutorKind::Noop, Arc::new(Indexed))
            .with(ExecutorKind::Process, process),
        EngineConfig {
            payloads: Payloads::new(dir.path().join("payloads")),
            ..EngineConfig::default()
        },
    );
    let spec = r#"
name: fanin
tasks:
  a: {executor: noop, task_count: 10000}
  join:
    depends_on: [a]
    command: ["python3", "-c"]
    args:
      - |
        import json, os
        assert "ORK_INPUT" not in os.environ
        a = json.load(open(os.environ["ORK_INPUT_FILE"]))["upstream"]["a"]
        ordered = all(o["i"] == i and len(o["pad"]) == 1024 for i, o in enumerate(a))
        json.dump({"count": len(a), "ordered": ordered}, open(os.environ["ORK_OUTPUT"], "w"))
"#;
    engine.apply(&parse(spec), None).await.unwrap();
    let run = engine
        .trigger("fanin", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    let status = tokio::time::timeout(
        Duration::from_secs(300),
        ork_core::engine::drive(&engine, run.id, &mut completions),
    )
    .await
    .expect("in time")
    .unwrap();
    let tasks = db.store.run_tasks(run.id).await.unwrap();
    let join = tasks.iter().find(|t| t.name == "join").unwrap();
    assert_eq!(status, RunStatus::Success, "{join:?}");
    assert_eq!(join.output, Some(json!({"count": 10000, "ordered": true})));
    assert!(
        !dir.path()
            .join("payloads")
            .join("inputs")
            .join(run.id.to_string())
            .exists(),
        "the join's input file goes when its attempt ends"
    );
}

const FOREACH: &str = r#"
name: fe
tasks:
  src: {executor: noop}
  each: {executor: noop, depends_on: [src], foreach: src.items}
  after: {executor: noop, depends_on: [each]}
"#;

async fn run_foreach(db: &TestDb, src: Value, max: usize) -> (Uuid, Arc<Answering>) {
    let dir = tempfile::tempdir().unwrap();
    let exec = answering(&[("src", src)]);
    let engine = engine(db.store.clone(), exec.clone(), dir.path(), max);
    engine.apply(&parse(FOREACH), None).await.unwrap();
    let run = engine
        .trigger("fe", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    engine.advance(run.id).await.unwrap();
    (run.id, exec)
}

async fn foreach_items_instances_and_fan_in(db: TestDb) {
    let (run, exec) = run_foreach(&db, json!({"items": ["a", {"b": 1}, 3]}), 10).await;
    let r = db.store.get_run(run).await.unwrap();
    assert_eq!((r.status, r.tasks_total), (RunStatus::Success, 5));
    let seen = exec.seen.lock().unwrap();
    let mut each: Vec<&DispatchRequest> =
        seen.iter().filter(|r| r.attempt.name == "each").collect();
    each.sort_by_key(|r| r.attempt.task_index);
    let items: Vec<Value> = each.iter().map(|r| r.input["item"].clone()).collect();
    assert_eq!(items, vec![json!("a"), json!({"b": 1}), json!(3)]);
    // Its item, not the whole list again.
    assert_eq!(each[0].input["upstream"], json!({}));
    let env = each[1].worker_env();
    assert!(env.contains(&("ORK_ITEM", r#"{"b":1}"#.to_owned())));
    assert!(env.contains(&("ORK_TASK_COUNT", "3".to_owned())));
    let after = seen.iter().find(|r| r.attempt.name == "after").unwrap();
    assert_eq!(after.input["upstream"]["each"], json!([null, null, null]));
}

/// A `foreach` task with a second parent, which ends a layer later: its
/// instances, created with the list's parent, wait for that parent too.
async fn foreach_with_a_later_parent_waits_for_it(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let exec = answering(&[("src", json!({"items": [1, 2, 3]}))]);
    let engine = engine(db.store.clone(), exec.clone(), dir.path(), 10);
    let spec = "name: fe2\ntasks:\n  src: {executor: noop}\n  pre: {executor: noop}\n  \
                gate: {executor: noop, depends_on: [pre]}\n  \
                each: {executor: noop, depends_on: [src, gate], foreach: src.items}\n";
    engine.apply(&parse(spec), None).await.unwrap();
    let run = engine
        .trigger("fe2", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    engine.advance(run.id).await.unwrap();
    let r = db.store.get_run(run.id).await.unwrap();
    assert_eq!((r.status, r.tasks_total), (RunStatus::Success, 6));
    let tasks = db.store.run_tasks(run.id).await.unwrap();
    let gate = tasks.iter().find(|t| t.name == "gate").unwrap();
    let each: Vec<_> = tasks.iter().filter(|t| t.name == "each").collect();
    assert!(
        each.iter().all(|t| t.ready_at >= gate.finished_at),
        "each was ready before gate ended: {each:?}, {gate:?}"
    );
    let seen = exec.seen.lock().unwrap();
    let mut items: Vec<Value> = seen
        .iter()
        .filter(|r| r.attempt.name == "each")
        .map(|r| r.input["item"].clone())
        .collect();
    items.sort_by_key(|v| v.as_i64());
    assert_eq!(items, vec![json!(1), json!(2), json!(3)]);
}

async fn foreach_over_an_empty_list_releases_the_children(db: TestDb) {
    let (run, exec) = run_foreach(&db, json!({"items": []}), 10).await;
    let r = db.store.get_run(run).await.unwrap();
    assert_eq!((r.status, r.tasks_total), (RunStatus::Success, 2));
    let seen = exec.seen.lock().unwrap();
    let after = seen.iter().find(|r| r.attempt.name == "after").unwrap();
    assert_eq!(after.input["upstream"]["each"], json!([]));
}

async fn foreach_over_a_non_array_fails_the_parent(db: TestDb) {
    let (run, _) = run_foreach(&db, json!({"items": {"not": "a list"}}), 10).await;
    assert_eq!(
        db.store.get_run(run).await.unwrap().status,
        RunStatus::Failed
    );
    let tasks = db.store.run_tasks(run).await.unwrap();
    let src = tasks.iter().find(|t| t.name == "src").unwrap();
    assert_eq!(src.status, TaskStatus::Failed);
    let err = src.error.as_deref().unwrap();
    assert!(
        err.contains("src.items is an object, not an array"),
        "{err}"
    );
}

async fn foreach_over_too_many_items_fails_the_parent(db: TestDb) {
    let (run, _) = run_foreach(&db, json!({"items": [1, 2, 3, 4]}), 3).await;
    assert_eq!(
        db.store.get_run(run).await.unwrap().status,
        RunStatus::Failed
    );
    let tasks = db.store.run_tasks(run).await.unwrap();
    let err = tasks
        .iter()
        .find(|t| t.name == "src")
        .unwrap()
        .error
        .clone()
        .unwrap();
    assert!(
        err.contains("src.items has 4 items, over the limit of 3"),
        "{err}"
    );
    assert!(!tasks.iter().any(|t| t.name == "each"));
}

/// Reports every attempt as started, and its completion (twice) on a queue
/// the completing callers share; `src` answers with 5,000 items.
struct Queueing(mpsc::UnboundedSender<Completion>);

#[async_trait]
impl Executor for Queueing {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let output = match req.attempt.name.as_str() {
            "src" => Some(json!({"items": (0..5000).collect::<Vec<i64>>()})),
            "each" => {
                let item = req.item.clone().expect("ORK_ITEM");
                assert_eq!(item, json!(req.attempt.task_index), "item in index order");
                Some(json!(item.as_i64().unwrap() * 2))
            }
            _ => {
                let each = input_of(req)["upstream"]["each"].clone();
                let want: Vec<i64> = (0..5000).map(|i| i * 2).collect();
                assert_eq!(each, json!(want));
                None
            }
        };
        let done = Completion {
            attempt: req.attempt.clone(),
            outcome: Outcome::success(output),
        };
        let _ = self.0.send(done.clone());
        let _ = self.0.send(done);
        Ok(Dispatch::Started {
            execution_id: req.attempt.task_id.to_string(),
        })
    }
}

/// A foreach over 5,000 items with 16 advancing and 16 completing callers
/// (each completion delivered twice): the instances are created once and
/// every item is dispatched exactly once (checked from `events`).
async fn foreach_five_thousand_items_racing_callers(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let engine = Arc::new(engine(
        db.store.clone(),
        Arc::new(Queueing(tx)),
        dir.path(),
        100_000,
    ));
    engine.apply(&parse(FOREACH), None).await.unwrap();
    let run = engine
        .trigger("fe", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    let rx = Arc::new(Mutex::new(rx));
    let mut callers = Vec::new();
    for i in 0..32 {
        let (engine, rx) = (engine.clone(), rx.clone());
        callers.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
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
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    engine.complete(&batch).await.unwrap();
                }
            }
            panic!("run did not finish in time");
        }));
    }
    for c in callers {
        c.await.unwrap();
    }
    let r = db.store.get_run(run.id).await.unwrap();
    assert_eq!(
        (r.status, r.tasks_total, r.tasks_open),
        (RunStatus::Success, 5002, 0)
    );
    let tasks = db.store.run_tasks(run.id).await.unwrap();
    let each: Vec<_> = tasks.iter().filter(|t| t.name == "each").collect();
    assert_eq!(each.len(), 5000, "instances created once");
    let mut indexes: Vec<i64> = each.iter().map(|t| t.task_index).collect();
    indexes.sort();
    assert_eq!(indexes, (0..5000).collect::<Vec<_>>());
    let events = db.store.run_events(run.id).await.unwrap();
    let mut dispatched: HashMap<Uuid, usize> = HashMap::new();
    for e in events.iter().filter(|e| e.status == "dispatched") {
        *dispatched.entry(e.task_id.unwrap()).or_default() += 1;
    }
    assert_eq!(dispatched.len(), 5002);
    assert!(
        dispatched.values().all(|n| *n == 1),
        "an instance dispatched twice"
    );
}

on_both_backends!(
    fan_in_of_ten_thousand_outputs,
    fan_in_of_ten_thousand_outputs_into_a_process,
    foreach_items_instances_and_fan_in,
    foreach_over_an_empty_list_releases_the_children,
    foreach_with_a_later_parent_waits_for_it,
    foreach_over_a_non_array_fails_the_parent,
    foreach_over_too_many_items_fails_the_parent,
    foreach_five_thousand_items_racing_callers,
);
