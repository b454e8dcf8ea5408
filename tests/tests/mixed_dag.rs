//! One DAG mixing `process`, `cloudrun` and `fargate` tasks, run end to end
//! through the handlers: real HTTP to the axum router, PostgreSQL as the
//! store, a fake Cloud Run Admin API v2 (reached through gcp_auth's real
//! service-account path) and moto's ECS (through the real `aws-sdk-ecs`).
//!
//! ```text
//!            ┌── train (cloudrun) ──┐
//! extract ───┤                      ├── report (process)
//! (process)  └── score (fargate) ───┘
//! ```
//!
//! Local processes report through the process executor's channel, drained
//! into the engine as `ork serve` does. Fargate attempts end through the
//! EventBridge "ECS Task State Change" event built from moto's DescribeTasks.
//! Cloud Run attempts end through the worker's `POST /complete` in the
//! first run; in the second the callback is lost and the sweep
//! (`POST /advance` with an empty body) finds the execution ended by
//! polling `executions.get`.

use ork_tests::db as common;
use ork_tests::fake_cloudrun;
use ork_tests::moto;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_cloudrun::{FakeCloudRun, CLIENT_EMAIL, PROJECT_ID, SCOPE};
use moto::EcsFixture;
use ork_api::lambda::Function;
use ork_api::Handlers;
use ork_core::engine::Engine;
use ork_core::executor::{Completion, Executors};
use ork_core::model::{RunStatus, Task, TaskStatus};
use ork_core::spec::ExecutorKind;
use ork_core::token::Signer;
use ork_executors::{CloudRunExecutor, FargateExecutor, ProcessExecutor};
use ork_tests::app::TestApp;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::mpsc;
use uuid::Uuid;

const API_KEY: &str = "mixed-dag-api-key";
const REGION: &str = "europe-west1";
const JOB: &str = "train";
const CONTAINER: &str = "app";
const SECURITY_GROUP: &str = "sg-0123456789abcdef0";
const TASKS: [&str; 4] = ["extract", "train", "score", "report"];

/// How long anything asynchronous (a local process, a dispatch) may take.
const PATIENCE: Duration = Duration::from_secs(60);

fn workflow(ecs: &EcsFixture) -> String {
    format!(
        r#"name: mixed
tasks:
  extract:
    executor: process
    command: sh
    args:
      - -c
      - |
        printf '{{"rows": 3}}' > "$ORK_OUTPUT"
  train:
    executor: cloudrun
    depends_on: [extract]
    command: python
    args: [-m, train]
    env: {{EPOCHS: "2"}}
    cloudrun: {{job: {JOB}, project: {PROJECT_ID}, region: {REGION}}}
  score:
    executor: fargate
    depends_on: [extract]
    command: python
    args: [score.py]
    fargate:
      cluster: {cluster}
      task_definition: {family}
      container: {CONTAINER}
      subnets: [{subnet}]
      security_groups: [{SECURITY_GROUP}]
      assign_public_ip: true
  report:
    executor: process
    depends_on: [train, score]
    command: sh
    args:
      - -c
      - |
        printf '%s' "$ORK_INPUT" > "$ORK_OUTPUT"
"#,
        cluster = ecs.cluster,
        family = ecs.family,
        subnet = ecs.subnet,
    )
}

/// The router on 127.0.0.1, over an engine with the three executors.
struct World {
    url: String,
    http: reqwest::Client,
    handlers: Arc<Handlers>,
    signer: Signer,
    fake: FakeCloudRun,
    ecs: EcsFixture,
    db: common::TestDb,
    _dir: TempDir,
}

async fn world() -> World {
    // moto first: it points the standard AWS chain at itself.
    moto::harness_async().await;
    let ecs = EcsFixture::create(CONTAINER).await;

    // The fake Cloud Run API and a service-account key whose `token_uri`
    // is the fake, found the way production finds it: gcp_auth's provider
    // reads GOOGLE_APPLICATION_CREDENTIALS, the endpoint is
    // ORK_CLOUDRUN_ENDPOINT. (This binary has one test, so nothing else
    // reads the environment meanwhile.)
    let fake = FakeCloudRun::start().await;
    fake.add_job(PROJECT_ID, REGION, JOB);
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = fake.write_key_file(dir.path());
    std::env::set_var("GOOGLE_APPLICATION_CREDENTIALS", &key_file);
    std::env::set_var("ORK_CLOUDRUN_ENDPOINT", &fake.url);
    let cloudrun = CloudRunExecutor::from_env()
        .await
        .expect("Cloud Run executor from the key file");
    assert_eq!(cloudrun.endpoint(), fake.url);
    let fargate = FargateExecutor::from_env().await.expect("AWS credentials");

    let db = common::postgres().await;
    let (tx, completions) = mpsc::unbounded_channel();
    let process = Arc::new(ProcessExecutor::new(dir.path().join("logs"), tx));
    let executors = Executors::new()
        .with(ExecutorKind::Process, process)
        .with(ExecutorKind::Cloudrun, Arc::new(cloudrun))
        .with(ExecutorKind::Fargate, Arc::new(fargate));
    let app = TestApp::builder(db.store.clone())
        .executors(executors)
        .api_key(API_KEY)
        .spawn()
        .await;
    let (engine, handlers, signer, url) = (
        app.engine.clone(),
        app.handlers.clone(),
        app.signer.clone(),
        app.url.clone(),
    );
    tokio::spawn(drain(engine.clone(), completions));

    let spec = common::parse(&workflow(&ecs));
    engine.apply(&spec, None).await.expect("apply");
    World {
        url,
        http: moto::local_http(),
        handlers,
        signer,
        fake,
        ecs,
        db,
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
    /// A POST to the router; `None` sends an empty body.
    async fn post(&self, url: &str, body: Option<&Value>) -> (u16, Value) {
        let mut req = self.http.post(url).bearer_auth(API_KEY);
        req = match body {
            Some(b) => req.json(b),
            None => req.body(""),
        };
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn trigger(&self) -> Uuid {
        let (status, body) = self
            .post(
                &format!("{}/trigger", self.url),
                Some(&json!({"workflow": "mixed", "params": {"day": "2024-05-01"}})),
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

    /// Waits until the named tasks have these statuses; returns the tasks.
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

    /// The `jobs.run` request the fake received for this run's `train`.
    fn jobs_run_body(&self, run: Uuid) -> Value {
        let bodies: Vec<Value> = self
            .fake
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with(":run"))
            .filter_map(|r| r.body)
            .filter(|b| cloudrun_env(b).get("ORK_RUN_ID") == Some(&run.to_string()))
            .collect();
        assert_eq!(bodies.len(), 1, "one jobs.run for run {run}");
        bodies.into_iter().next().unwrap()
    }

    /// Waits for moto to stop the task, then builds its "ECS Task State
    /// Change" event from what DescribeTasks says.
    async fn stopped_event(&self, arn: &str) -> Value {
        let task = self.ecs.describe_until_stopped(arn).await;
        moto::task_state_change_event(&task)
    }

    /// Checks the run's end: `success`, every task succeeded, each was
    /// dispatched exactly once (attempt 1), the run finalized once.
    async fn assert_succeeded_once(&self, run: Uuid) -> HashMap<String, Task> {
        assert_eq!(self.wait_for_end(run).await, RunStatus::Success);
        let tasks = self.tasks(run).await;
        for name in TASKS {
            let t = &tasks[name];
            assert_eq!(t.status, TaskStatus::Success, "{name}: {:?}", t.error);
            assert_eq!(t.attempt, 1, "{name}");
        }
        let events = self.db.store.run_events(run).await.unwrap();
        let dispatched: Vec<_> = events.iter().filter(|e| e.status == "dispatched").collect();
        assert_eq!(dispatched.len(), TASKS.len(), "{events:?}");
        for name in TASKS {
            let id = tasks[name].id;
            let mine: Vec<_> = dispatched
                .iter()
                .filter(|e| e.task_id == Some(id))
                .collect();
            assert_eq!(mine.len(), 1, "{name} dispatched once: {events:?}");
            assert_eq!(mine[0].attempt, Some(1), "{name}");
        }
        assert_eq!(
            events
                .iter()
                .filter(|e| e.task_id.is_none() && e.status == "success")
                .count(),
            1,
            "the run finalized once: {events:?}"
        );
        // The web UI's view, over HTTP, agrees.
        let view: Value = self
            .http
            .get(format!("{}/api/runs/{run}", self.url))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(view["run"]["status"], "success", "{view}");
        tasks
    }
}

/// The environment of a `jobs.run` body's container override.
fn cloudrun_env(body: &Value) -> HashMap<String, String> {
    body["overrides"]["containerOverrides"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The environment of a described ECS task's container override.
fn ecs_env(task: &Value) -> HashMap<String, String> {
    task["overrides"]["containerOverrides"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == CONTAINER)
        .and_then(|c| c["environment"].as_array())
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_owned(),
                e["value"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// What `extract` hands its children.
fn extract_input() -> Value {
    json!({"params": {"day": "2024-05-01"}, "upstream": {"extract": {"rows": 3}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dag_of_process_cloudrun_and_fargate_tasks_runs_through_the_handlers() {
    let w = world().await;

    // ---- Run 1: the Cloud Run worker reports over HTTP; the Fargate task's
    // end comes as the ECS event, through `Handlers::event`.
    let run = w.trigger().await;
    // `extract` ran locally; its completion dispatched `train` and `score`.
    let tasks = w
        .wait_for(
            run,
            &[
                ("extract", TaskStatus::Success),
                ("train", TaskStatus::Running),
                ("score", TaskStatus::Running),
                ("report", TaskStatus::Pending),
            ],
        )
        .await;
    assert_eq!(tasks["extract"].output, Some(json!({"rows": 3})));

    // Cloud Run: one execution of the job, told the worker contract.
    let execution = tasks["train"].execution_id.clone().expect("an execution");
    assert!(
        execution.starts_with(&format!(
            "projects/{PROJECT_ID}/locations/{REGION}/jobs/{JOB}/executions/"
        )),
        "{execution}"
    );
    let body = w.jobs_run_body(run);
    assert_eq!(
        body["overrides"]["containerOverrides"][0]["args"],
        json!(["python", "-m", "train"])
    );
    let env = cloudrun_env(&body);
    assert_eq!(env["ORK_TASK"], "train");
    assert_eq!(env["EPOCHS"], "2");
    assert_eq!(
        serde_json::from_str::<Value>(&env["ORK_INPUT"]).unwrap(),
        extract_input()
    );
    let callback_url = &env["ORK_CALLBACK_URL"];
    assert_eq!(callback_url, &format!("{}/complete", w.url));
    let train_token = &env["ORK_CALLBACK_TOKEN"];

    // Fargate: one ECS task of the definition, with the same contract.
    let arn = tasks["score"].execution_id.clone().expect("a task ARN");
    let described = w.ecs.describe(&arn).await;
    assert_eq!(described["launchType"], "FARGATE");
    assert_eq!(
        described["overrides"]["containerOverrides"][0]["command"],
        json!(["python", "score.py"])
    );
    let score_env = ecs_env(&described);
    assert_eq!(score_env["ORK_TASK"], "score");
    assert_eq!(&score_env["ORK_CALLBACK_URL"], callback_url);
    assert_eq!(
        serde_json::from_str::<Value>(&score_env["ORK_INPUT"]).unwrap(),
        extract_input()
    );

    // The task panel's log links to each attempt's console, built from the
    // execution ids the executors recorded.
    for (name, want) in [
        ("train", format!("https://console.cloud.google.com/logs/query;query=resource.type%3D%22cloud_run_job%22%0Aresource.labels.job_name%3D%22{JOB}%22%0Alabels.%22run.googleapis.com%2Fexecution_name%22%3D%22{}%22?project={PROJECT_ID}", execution.rsplit('/').next().unwrap())),
        ("score", {
            let (region, task) = (arn.split(':').nth(3).unwrap(), arn.rsplit('/').next().unwrap());
            let cluster = arn.split('/').nth(1).unwrap();
            format!("https://{region}.console.aws.amazon.com/ecs/v2/clusters/{cluster}/tasks/{task}/logs?region={region}")
        }),
    ] {
        let url = format!("{}/api/runs/{run}/tasks/{}/log", w.url, tasks[name].id);
        let log: Value = w.http.get(url).bearer_auth(API_KEY).send().await.unwrap().json().await.unwrap();
        assert_eq!(log["console_url"], want.as_str(), "{name}: {log}");
    }

    // The Cloud Run worker finishes and reports, as the contract says.
    let (status, reply) = w
        .post(
            callback_url,
            Some(&json!({
                "token": train_token, "status": "success", "exit_code": 0,
                "output": {"model": "gs://models/run-1"},
            })),
        )
        .await;
    assert_eq!(
        (status, &reply["result"]),
        (200, &json!("recorded")),
        "{reply}"
    );
    w.fake.set_succeeded(&execution);
    let tasks = w.tasks(run).await;
    assert_eq!(tasks["train"].status, TaskStatus::Success);
    assert_eq!(
        tasks["report"].status,
        TaskStatus::Pending,
        "score is not done"
    );

    // The ECS task stops; EventBridge delivers its state change.
    let event = w.stopped_event(&arn).await;
    assert_eq!(event["detail"]["lastStatus"], "STOPPED");
    assert_eq!(event["detail"]["containers"][0]["exitCode"], 0);
    let token = ecs_env(&event["detail"])["ORK_CALLBACK_TOKEN"].clone();
    let claims = w.signer.verify(&token, chrono::Utc::now()).unwrap();
    assert_eq!(
        claims.task_id, tasks["score"].id,
        "the token names score's attempt"
    );
    let reply = w.handlers.event(&event).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["result"], "recorded", "{reply:?}");
    assert_eq!(
        w.tasks(run).await["score"].status,
        TaskStatus::Success,
        "the event completed score"
    );

    // `report` ran locally and saw both upstream outputs.
    let tasks = w.assert_succeeded_once(run).await;
    assert_eq!(
        tasks["report"].output,
        Some(json!({
            "params": {"day": "2024-05-01"},
            "upstream": {"train": {"model": "gs://models/run-1"}, "score": null},
        }))
    );
    // A second delivery of the same event changes nothing.
    let events = w.db.store.run_events(run).await.unwrap().len();
    let reply = w.handlers.event(&event).await;
    assert_eq!(
        (reply.status, &reply.body["result"]),
        (200, &json!("duplicate"))
    );
    assert_eq!(w.db.store.run_events(run).await.unwrap().len(), events);

    // ---- Run 2: the ECS event comes through the on-task-complete Lambda
    // function's router; the Cloud Run callback is lost and the sweep
    // polls the execution.
    let run2 = w.trigger().await;
    let tasks = w
        .wait_for(
            run2,
            &[
                ("extract", TaskStatus::Success),
                ("train", TaskStatus::Running),
                ("score", TaskStatus::Running),
            ],
        )
        .await;
    let execution2 = tasks["train"].execution_id.clone().unwrap();
    assert_ne!(execution2, execution);
    w.jobs_run_body(run2);
    let arn2 = tasks["score"].execution_id.clone().unwrap();
    assert_ne!(arn2, arn);

    let event = w.stopped_event(&arn2).await;
    let reply = ork_api::lambda::handle_event(&w.handlers, Function::OnTaskComplete, event).await;
    assert_eq!(reply["status"], 200, "{reply}");
    assert_eq!(reply["body"]["result"], "recorded", "{reply}");

    // The Cloud Run execution succeeds, but its worker's report never comes.
    w.fake.set_succeeded(&execution2);
    let tasks = w
        .wait_for(
            run2,
            &[
                ("score", TaskStatus::Success),
                ("train", TaskStatus::Running),
                ("report", TaskStatus::Pending),
            ],
        )
        .await;
    assert_eq!(tasks["train"].output, None);
    let gets_before = w
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET")
        .count();
    assert_eq!(gets_before, 0, "nothing polled Cloud Run yet");

    // The cron tick: an empty POST /advance sweeps, polls the execution,
    // completes `train` and advances the run.
    let (status, swept) = w.post(&format!("{}/advance", w.url), None).await;
    assert_eq!(status, 200, "{swept}");
    assert_eq!(swept["polled"], 1, "{swept}");
    let gets: Vec<_> = w
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].path, format!("/v2/{execution2}"));

    let tasks = w.assert_succeeded_once(run2).await;
    assert_eq!(tasks["train"].output, None, "a poll carries no output");
    assert_eq!(
        tasks["report"].output.as_ref().unwrap()["upstream"],
        json!({"train": null, "score": null})
    );

    // ---- The fake Cloud Run saw only authenticated calls: two jobs.run
    // and one executions.get, each with the bearer token its token
    // endpoint issued for the service account's JWT.
    let issued = w.fake.issued_tokens();
    assert!(!issued.is_empty());
    let requests = w.fake.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    assert_eq!(w.fake.executions(), vec![execution, execution2]);
    for r in &requests {
        let bearer = r
            .authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or_else(|| panic!("no bearer token on {r:?}"));
        assert!(issued.iter().any(|t| t == bearer), "{r:?}");
    }
    for grant in w.fake.token_grants() {
        assert_eq!(grant.claims["iss"], CLIENT_EMAIL);
        assert_eq!(grant.claims["scope"], SCOPE);
        assert!(grant.access_token.is_some(), "{grant:?}");
    }
}
