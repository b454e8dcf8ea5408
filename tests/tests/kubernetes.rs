//! The Kubernetes executor against a fake API server ([`FakeKube`]),
//! driven through the real `kube` client, and a DAG mixing `process` and
//! `kubernetes` tasks run through the handlers on both databases:
//!
//! ```text
//!            ┌── train (kubernetes, reports to /complete) ──┐
//! extract ───┤                                               ├── report (process)
//! (process)  └── score (kubernetes, Job marked succeeded) ──┘
//! ```
//!
//! `train` ends as a real worker would (its "kubelet" POSTs the report to
//! `ORK_CALLBACK_URL`); `score`'s Job is marked succeeded and the sweep
//! (`POST /advance` with an empty body) finds it by polling, saving the
//! pod's log as the attempt's log. Cancel, `OOMKilled`, `ImagePullBackOff`,
//! 403 and a repeated dispatch are covered too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ork_core::engine::Engine;
use ork_core::executor::{Completion, Dispatch, DispatchRequest, Executor, Executors};
use ork_core::model::{AttemptRef, RunStatus, Task, TaskStatus};
use ork_core::spec::ExecutorKind;
use ork_executors::kubernetes::{job_name, KubernetesExecutor};
use ork_executors::ProcessExecutor;
use ork_tests::app::TestApp;
use ork_tests::db::{self as common, TestDb};
use ork_tests::fake_kube::FakeKube;
use ork_tests::on_both_backends;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::mpsc;
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(60);

const WORKFLOW: &str = r#"name: mixed-k8s
tasks:
  extract:
    executor: process
    command: sh
    args: [-c, "printf '{\"rows\": 3}' > \"$ORK_OUTPUT\""]
  train:
    executor: kubernetes
    depends_on: [extract]
    command: python
    args: [-m, train]
    env: {EPOCHS: "2", ORK_TASK: "spoofed"}
    timeout: 90s
    kubernetes:
      image: ghcr.io/ork-rs/train:1.2
      namespace: ml
      service_account: trainer
      cpu: 500m
      memory: 1Gi
      node_selector: {pool: gpu}
      tolerations:
        - {key: gpu, operator: Exists, effect: NoSchedule}
      ttl_seconds_after_finished: 600
  score:
    executor: kubernetes
    depends_on: [extract]
    kubernetes: {image: ghcr.io/ork-rs/score:1}
  report:
    executor: process
    depends_on: [train, score]
    command: sh
    args: [-c, "printf '%s' \"$ORK_INPUT\" > \"$ORK_OUTPUT\""]
"#;

struct World {
    app: TestApp,
    fake: FakeKube,
    db: TestDb,
    logs: std::path::PathBuf,
    _dir: TempDir,
}

async fn world(db: TestDb, workflow: &str) -> World {
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    let (tx, completions) = mpsc::unbounded_channel();
    let process = Arc::new(ProcessExecutor::new(&logs, tx));
    let kube = KubernetesExecutor::new(fake.config(), Some(logs.clone())).expect("client");
    let executors = Executors::new()
        .with(ExecutorKind::Process, process)
        .with(ExecutorKind::Kubernetes, Arc::new(kube));
    let app = TestApp::builder(db.store.clone())
        .executors(executors)
        .spawn()
        .await;
    tokio::spawn(drain(app.engine.clone(), completions));
    app.engine
        .apply(&common::parse(workflow), None)
        .await
        .expect("apply");
    World {
        app,
        fake,
        db,
        logs,
        _dir: dir,
    }
}

/// Records completions of local processes, as `ork serve` does.
async fn drain(engine: Arc<Engine>, mut completions: mpsc::UnboundedReceiver<Completion>) {
    while let Some(first) = completions.recv().await {
        let mut batch = vec![first];
        while let Ok(c) = completions.try_recv() {
            batch.push(c);
        }
        let done = engine.complete(&batch).await.expect("complete");
        for run in done.to_advance {
            engine.advance(run).await.expect("advance");
        }
    }
}

impl World {
    async fn trigger(&self, workflow: &str) -> Uuid {
        let (status, body) = self
            .app
            .post(
                "/trigger",
                &json!({"workflow": workflow, "params": {"day": "d1"}}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        body["run_id"].as_str().unwrap().parse().unwrap()
    }

    async fn tasks(&self, run: Uuid) -> HashMap<String, Task> {
        self.db
            .store
            .run_tasks(run)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect()
    }

    async fn wait_for(&self, run: Uuid, want: &[(&str, TaskStatus)]) -> HashMap<String, Task> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let tasks = self.tasks(run).await;
            if want.iter().all(|(name, s)| tasks[*name].status == *s) {
                return tasks;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {want:?}, tasks are {:?}",
                tasks
                    .values()
                    .map(|t| (&t.name, t.status, &t.error))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_for_end(&self, run: Uuid) -> RunStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let status = self.db.store.get_run(run).await.unwrap().status;
            if status.is_final() {
                return status;
            }
            assert!(Instant::now() < deadline, "run {run} is still {status:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The cron tick through the handlers: an empty `POST /advance` sweeps.
    async fn sweep(&self) {
        let r = self
            .app
            .http
            .post(format!("{}/advance", self.app.url))
            .body("")
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }

    fn attempt(&self, run: Uuid, task: &Task) -> AttemptRef {
        AttemptRef {
            run_id: run,
            workflow: String::new(),
            version: 1,
            task_id: task.id,
            name: task.name.clone(),
            task_index: task.task_index,
            attempt: task.attempt,
        }
    }
}

async fn a_dag_of_process_and_kubernetes_tasks_runs_through_the_handlers(db: TestDb) {
    let w = world(db, WORKFLOW).await;
    let run = w.trigger("mixed-k8s").await;
    let tasks = w
        .wait_for(
            run,
            &[
                ("train", TaskStatus::Running),
                ("score", TaskStatus::Running),
            ],
        )
        .await;

    // One Job per attempt, named for it, in the task's namespace.
    let train = &tasks["train"];
    let train_id = format!("ml/{}", job_name(&w.attempt(run, train)));
    assert_eq!(train.execution_id.as_deref(), Some(train_id.as_str()));
    let score = &tasks["score"];
    let score_id = format!("default/{}", job_name(&w.attempt(run, score)));
    assert_eq!(score.execution_id.as_deref(), Some(score_id.as_str()));
    assert_eq!(w.fake.created().len(), 2);

    // The Job as the API server got it.
    let job = w.fake.job(&train_id).expect("train's Job");
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["kind"], "Job");
    let spec = &job["spec"];
    assert_eq!(spec["backoffLimit"], 0);
    assert_eq!(spec["ttlSecondsAfterFinished"], 600);
    assert_eq!(spec["activeDeadlineSeconds"], 90);
    let labels = &job["metadata"]["labels"];
    assert_eq!(labels["ork.io/run"], run.to_string());
    assert_eq!(labels["ork.io/task"], "train");
    assert_eq!(labels["ork.io/attempt"], "1");
    assert_eq!(labels["ork.io/task-index"], "0");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(pod["serviceAccountName"], "trainer");
    assert_eq!(pod["nodeSelector"], json!({"pool": "gpu"}));
    assert_eq!(
        pod["tolerations"],
        json!([{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}])
    );
    let container = &pod["containers"][0];
    assert_eq!(container["image"], "ghcr.io/ork-rs/train:1.2");
    assert_eq!(container["command"], json!(["python"]));
    assert_eq!(container["args"], json!(["-m", "train"]));
    assert_eq!(
        container["resources"],
        json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "1Gi"}})
    );
    let env = w.fake.env(&train_id);
    assert_eq!(env["ORK_RUN_ID"], run.to_string());
    assert_eq!(env["ORK_TASK"], "train", "the contract wins a clash");
    assert_eq!(env["ORK_TASK_INDEX"], "0");
    assert_eq!(env["ORK_TASK_COUNT"], "1");
    assert_eq!(env["ORK_ATTEMPT"], "1");
    assert_eq!(env["EPOCHS"], "2");
    assert_eq!(env["ORK_CALLBACK_URL"], format!("{}/complete", w.app.url));
    let input: Value = serde_json::from_str(&env["ORK_INPUT"]).unwrap();
    assert_eq!(input["upstream"]["extract"], json!({"rows": 3}));
    assert_eq!(input["params"]["day"], "d1");
    let score_container =
        &w.fake.job(&score_id).unwrap()["spec"]["template"]["spec"]["containers"][0];
    assert!(score_container.get("command").is_none_or(Value::is_null));
    assert!(score_container.get("resources").is_none_or(Value::is_null));

    // A sweep while both run: polled, still running.
    w.fake.run(&train_id);
    w.fake.run(&score_id);
    w.sweep().await;
    w.wait_for(
        run,
        &[
            ("train", TaskStatus::Running),
            ("score", TaskStatus::Running),
        ],
    )
    .await;

    // train: its worker reports, as a real container would.
    let (code, answer) = w.fake.report(&train_id, true, json!({"model": "m1"})).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["result"], "recorded");

    // score: the Job controller marks it succeeded; the sweep polls it.
    w.fake
        .finish(&score_id, 0, "Completed", "scoring 3 rows\nscore=0.93\n");
    w.sweep().await;
    assert_eq!(w.wait_for_end(run).await, RunStatus::Success);
    let tasks = w.tasks(run).await;
    assert_eq!(tasks["train"].output, Some(json!({"model": "m1"})));
    let report = tasks["report"].output.clone().unwrap();
    assert_eq!(report["upstream"]["train"], json!({"model": "m1"}));
    assert_eq!(tasks["score"].exit_code, Some(0));

    // `ork logs` reads the process executor's log path: the pod's log.
    let score_log = ProcessExecutor::log_path(&w.logs, &w.attempt(run, &tasks["score"]));
    assert_eq!(
        std::fs::read_to_string(&score_log).expect("score's log"),
        "scoring 3 rows\nscore=0.93\n"
    );
    // Nothing was created twice, nothing deleted.
    assert_eq!(w.fake.created().len(), 2);
    assert!(w.fake.deletes().is_empty(), "{:?}", w.fake.deletes());
}

const ONE: &str = r#"name: one
tasks:
  job:
    executor: kubernetes
    command: /bin/work
    retries: {count: 2, backoff: 1s}
    kubernetes: {image: ghcr.io/ork-rs/work:1, namespace: jobs}
"#;

async fn cancel_deletes_the_job_in_the_background_and_keeps_its_log(db: TestDb) {
    let w = world(db, ONE).await;
    let run = w.trigger("one").await;
    let tasks = w.wait_for(run, &[("job", TaskStatus::Running)]).await;
    let id = tasks["job"].execution_id.clone().unwrap();
    w.fake.run(&id);
    w.fake.set_log(&id, "working…\n");
    assert!(w.app.engine.cancel(run).await.expect("cancel"));
    assert_eq!(w.wait_for_end(run).await, RunStatus::Cancelled);
    assert_eq!(
        w.fake.deletes(),
        vec![(id.clone(), Some("Background".to_owned()))]
    );
    assert!(w.fake.jobs().is_empty());
    let log = ProcessExecutor::log_path(&w.logs, &w.attempt(run, &tasks["job"]));
    assert_eq!(std::fs::read_to_string(log).unwrap(), "working…\n");
}

async fn oom_is_retried_and_an_unpullable_image_fails_for_good(db: TestDb) {
    let w = world(db, ONE).await;
    let run = w.trigger("one").await;
    let tasks = w.wait_for(run, &[("job", TaskStatus::Running)]).await;
    let first = tasks["job"].execution_id.clone().unwrap();
    w.fake.run(&first);
    w.fake.finish(&first, 137, "OOMKilled", "allocating…\n");
    w.sweep().await;
    // Failed with the pod's exit code and reason, retried per policy (a new Job).
    let deadline = Instant::now() + PATIENCE;
    let second = loop {
        let t = &w.tasks(run).await["job"];
        if t.attempt == 2 && t.status == TaskStatus::Running {
            break t.execution_id.clone().unwrap();
        }
        assert!(Instant::now() < deadline, "no second attempt: {t:?}");
        w.sweep().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_ne!(first, second);
    assert!(second.ends_with("-0-2"), "{second}");
    let events = w.db.store.run_events(run).await.unwrap();
    let failed = events
        .iter()
        .filter_map(|e| e.detail.as_ref())
        .any(|d| d.to_string().contains("OOMKilled") && d.to_string().contains("137"));
    assert!(failed, "OOMKilled and 137 in the events: {events:?}");

    // The second attempt's image cannot be pulled: failed at once, no retry left unspent.
    w.fake.image_pull_backoff(&second);
    w.sweep().await;
    assert_eq!(w.wait_for_end(run).await, RunStatus::Failed);
    let t = &w.tasks(run).await["job"];
    assert_eq!(t.attempt, 2, "a permanent failure spends no retry");
    let error = t.error.clone().unwrap_or_default();
    assert!(error.contains("ImagePullBackOff"), "{error}");
    assert!(
        w.fake.deletes().iter().any(|(id, _)| *id == second),
        "the stuck Job is deleted"
    );
}

/// `ork serve --executors process`: the claim filter leaves the `noop`
/// and `kubernetes` tasks pending for another server, in one statement.
async fn a_server_limited_to_process_leaves_other_tasks_unclaimed(db: TestDb) {
    use ork_core::engine::{EngineConfig, TriggerOptions};
    let spec = common::parse(
        "name: limited\ntasks:\n  local:\n    command: \"true\"\n  quick:\n    executor: noop\n    task_count: 3\n  remote:\n    executor: kubernetes\n    kubernetes: {image: busybox}\n",
    );
    let (tx, mut completions) = mpsc::unbounded_channel();
    let dir = tempfile::tempdir().unwrap();
    let process = Arc::new(ProcessExecutor::new(dir.path(), tx));
    let executors = Executors::new().with(ExecutorKind::Process, process).with(
        ExecutorKind::Noop,
        Arc::new(ork_core::executor::NoopExecutor),
    );
    let config = EngineConfig {
        executors: Some(vec![ExecutorKind::Process, ExecutorKind::Python]),
        claim_batch: 1,
        ..EngineConfig::default()
    };
    let engine = Engine::new(db.store.clone(), executors, config);
    engine.apply(&spec, None).await.unwrap();
    let run = engine
        .trigger("limited", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    let advanced = engine.advance(run.id).await.unwrap();
    assert_eq!(advanced.dispatched, 1, "only the process task is claimed");
    let done = completions.recv().await.expect("the process ends");
    engine.complete(&[done]).await.unwrap();
    engine.advance(run.id).await.unwrap();
    let tasks = db.store.run_tasks(run.id).await.unwrap();
    for t in &tasks {
        let want = if t.name == "local" {
            TaskStatus::Success
        } else {
            TaskStatus::Pending
        };
        assert_eq!(t.status, want, "{} ({})", t.name, t.executor);
        if t.name != "local" {
            assert_eq!(t.attempt, 0, "{} was never claimed", t.name);
        }
    }
    assert_eq!(tasks.len(), 5);

    // An unlimited engine on the same database takes the rest.
    let all = common::noop_engine(db.store.clone());
    let advanced = all.advance(run.id).await.unwrap();
    assert!(advanced.dispatched >= 3, "{advanced:?}");
}

on_both_backends!(
    a_server_limited_to_process_leaves_other_tasks_unclaimed,
    a_dag_of_process_and_kubernetes_tasks_runs_through_the_handlers,
    cancel_deletes_the_job_in_the_background_and_keeps_its_log,
    oom_is_retried_and_an_unpullable_image_fails_for_good,
);

fn request(namespace: &str) -> DispatchRequest {
    let spec = common::parse(&format!(
        "name: w\ntasks:\n  t:\n    executor: kubernetes\n    kubernetes: {{image: busybox, namespace: {namespace}}}\n"
    ));
    DispatchRequest {
        batch: 1,
        attempt: AttemptRef {
            run_id: Uuid::now_v7(),
            workflow: "w".into(),
            version: 1,
            task_id: Uuid::now_v7(),
            name: "t".into(),
            task_index: 0,
            attempt: 1,
        },
        task_count: 1,
        spec: spec.tasks["t"].clone(),
        base_dir: None,
        input: json!({}),
        input_file: None,
        input_url: None,
        output_url: None,
        item: None,
        timeout: None,
        callback: None,
    }
}

#[tokio::test]
async fn a_repeated_dispatch_creates_no_second_job() {
    let fake = FakeKube::start().await;
    let kube = KubernetesExecutor::new(fake.config(), None).unwrap();
    let req = request("default");
    let first = kube.dispatch(&req).await.expect("dispatch");
    let again = kube.dispatch(&req).await.expect("409 is already started");
    let (Dispatch::Started { execution_id: a }, Dispatch::Started { execution_id: b }) =
        (first, again)
    else {
        panic!("both started");
    };
    assert_eq!(a, b);
    assert_eq!(fake.created(), vec![a.clone()]);
    let posts = fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST")
        .count();
    assert_eq!(posts, 2);
    // Polling a running Job: nothing yet; a Job gone: a failure.
    assert_eq!(kube.poll(&req.attempt, &a).await.unwrap(), None);
    kube.cancel(&req.attempt, &a).await.unwrap();
    kube.cancel(&req.attempt, &a)
        .await
        .expect("cancelling twice is fine");
    let gone = kube.poll(&req.attempt, &a).await.unwrap().unwrap();
    assert!(!gone.success);
    assert!(kube.poll(&req.attempt, "no/such/id").await.is_err());
}

#[tokio::test]
async fn forbidden_is_a_permanent_error_with_the_servers_message() {
    let fake = FakeKube::start().await;
    let kube = KubernetesExecutor::new(fake.config(), None).unwrap();
    let e = kube.dispatch(&request("forbidden")).await.unwrap_err();
    assert!(!e.is_transient(), "{e:?}");
    let message = e.to_string();
    assert!(message.contains("403"), "{message}");
    assert!(message.contains("cannot create resource"), "{message}");
}
