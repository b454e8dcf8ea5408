//! The Lambda and Azure Container Apps Jobs executors, run through the
//! handlers on both databases in a DAG with local processes:
//!
//! ```text
//!            ┌── train (lambda: Ork's worker function runs it, reports) ──┐
//! extract ───┤                                                             ├── report (process)
//! (process)  └── score (azure: execution marked Succeeded, found by poll) ─┘
//! ```
//!
//! `train` goes through `aws-sdk-lambda` to [`FakeLambda`], which runs the
//! real `worker` function binary through a Lambda Runtime API for the
//! event: the task's program runs under `ork worker` and reports to
//! `ORK_CALLBACK_URL`. `score` goes through ARM to [`FakeAzure`] with a
//! client-credentials token. Cancel stops the Azure execution and makes
//! the Lambda worker stop its program at its next heartbeat (410). The
//! Lambda request shape is checked against moto too, and the Azure errors,
//! retries and managed-identity tokens against the fake.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::IntoResponse;
use ork_core::engine::Engine;
use ork_core::executor::{
    Completion, Dispatch, DispatchRequest, Executor, ExecutorError, Executors,
};
use ork_core::model::{AttemptRef, RunStatus, Task, TaskStatus};
use ork_core::retry::Backoff;
use ork_core::spec::ExecutorKind;
use ork_executors::azure::{AzureExecutor, Credential};
use ork_executors::lambda::{invocation_event, LambdaExecutor};
use ork_executors::ProcessExecutor;
use ork_tests::app::TestApp;
use ork_tests::db::{self as common, TestDb};
use ork_tests::fake_azure::{self, FakeAzure};
use ork_tests::fake_lambda::{self, FakeLambda};
use ork_tests::on_both_backends;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::sync::mpsc;
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(60);
const SUB: &str = "sub-1";
const GROUP: &str = "rg-batch";
const FAST: Backoff = Backoff::new(3, Duration::from_millis(10), Duration::from_millis(50));

const WORKFLOW: &str = r#"name: mixed-serverless
tasks:
  extract:
    executor: process
    command: sh
    args: [-c, "printf '{\"rows\": 3}' > \"$ORK_OUTPUT\""]
  train:
    executor: lambda
    depends_on: [extract]
    command: sh
    args: [-c, "printf '%s' \"$ORK_INPUT\" > \"$ORK_OUTPUT\""]
    env: {EPOCHS: "2", ORK_TASK: spoofed}
    timeout: 60s
    lambda: {function: ork-worker, qualifier: live}
  score:
    executor: azure
    depends_on: [extract]
    command: python
    args: [-m, score]
    env: {MODE: fast}
    azure: {subscription: sub-1, resource_group: rg-batch, job: scorer}
  report:
    executor: process
    depends_on: [train, score]
    command: sh
    args: [-c, "printf '%s' \"$ORK_INPUT\" > \"$ORK_OUTPUT\""]
"#;

struct World {
    app: TestApp,
    lambda: FakeLambda,
    azure: FakeAzure,
    db: TestDb,
    _dir: TempDir,
}

fn client_secret(azure: &FakeAzure) -> Credential {
    Credential::ClientSecret {
        authority: azure.url.clone(),
        tenant: fake_azure::TENANT.into(),
        client_id: fake_azure::CLIENT_ID.into(),
        secret: fake_azure::CLIENT_SECRET.into(),
    }
}

fn add_scorer(azure: &FakeAzure) {
    azure.add_job(
        SUB,
        GROUP,
        "scorer",
        json!([{
            "name": "main",
            "image": "acme.azurecr.io/score:7",
            "resources": {"cpu": 0.5, "memory": "1Gi"},
            "env": [
                {"name": "DB_HOST", "value": "db.internal"},
                {"name": "MODE", "value": "slow"},
                {"name": "API_KEY", "secretRef": "api-key"},
            ],
        }]),
    );
}

async fn world(db: TestDb, workflow: &str, function_env: &[(&str, &str)]) -> World {
    let lambda = FakeLambda::start().await;
    lambda.add_function("ork-worker", function_env);
    let azure = FakeAzure::start().await;
    add_scorer(&azure);
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, completions) = mpsc::unbounded_channel();
    let process = Arc::new(ProcessExecutor::new(dir.path().join("logs"), tx));
    let executors = Executors::new()
        .with(ExecutorKind::Process, process)
        .with(
            ExecutorKind::Lambda,
            Arc::new(LambdaExecutor::new(fake_lambda::client(&lambda.url).await)),
        )
        .with(
            ExecutorKind::Azure,
            Arc::new(AzureExecutor::new(
                azure.url.clone(),
                client_secret(&azure),
                FAST,
            )),
        );
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
        lambda,
        azure,
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
}

async fn a_dag_of_process_lambda_and_azure_tasks_runs_through_the_handlers(db: TestDb) {
    let w = world(db, WORKFLOW, &[]).await;
    let run = w.trigger("mixed-serverless").await;
    let tasks = w
        .wait_for(
            run,
            &[
                ("train", TaskStatus::Success),
                ("score", TaskStatus::Running),
            ],
        )
        .await;

    // train: one asynchronous Invoke of the function's alias, the worker
    // contract as the event.
    let invoked = w.lambda.invoked();
    assert_eq!(invoked.len(), 1, "{invoked:?}");
    let call = &invoked[0];
    assert_eq!(call.function, "ork-worker");
    assert_eq!(call.invocation_type.as_deref(), Some("Event"));
    assert_eq!(call.query.as_deref(), Some("Qualifier=live"));
    let event = &call.event;
    assert_eq!(event["ork_worker"], 1);
    assert_eq!(event["command"][0], "sh");
    let env = &event["env"];
    assert_eq!(env["ORK_RUN_ID"], run.to_string());
    assert_eq!(env["ORK_TASK"], "train", "the contract wins a clash");
    assert_eq!(env["ORK_ATTEMPT"], "1");
    assert_eq!(env["EPOCHS"], "2");
    assert_eq!(env["ORK_TIMEOUT"], "60s");
    assert_eq!(env["ORK_CALLBACK_URL"], format!("{}/complete", w.app.url));
    assert!(env["ORK_CALLBACK_TOKEN"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    let train = &tasks["train"];
    assert!(
        train
            .execution_id
            .as_deref()
            .is_some_and(|id| id.starts_with("ork-worker/")),
        "{:?}",
        train.execution_id
    );
    // The function's process answered and is gone.
    let deadline = Instant::now() + PATIENCE;
    while w.lambda.alive() > 0 {
        assert!(Instant::now() < deadline, "the worker function still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(w.lambda.answers(), vec![Ok(json!({"exit_code": 0}))]);

    // score: the job read, then one start with the template overridden.
    let executions = w.azure.executions();
    assert_eq!(executions.len(), 1);
    let id = &executions[0];
    assert_eq!(tasks["score"].execution_id.as_deref(), Some(id.as_str()));
    let job = fake_azure::job_id(SUB, GROUP, "scorer");
    let calls: Vec<(String, String)> = w
        .azure
        .requests()
        .into_iter()
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        calls[..2],
        [
            ("GET".to_owned(), job.clone()),
            ("POST".to_owned(), format!("{job}/start")),
        ]
    );
    let container = &w.azure.execution(id).unwrap()["properties"]["template"]["containers"][0];
    assert_eq!(container["name"], "main");
    assert_eq!(container["image"], "acme.azurecr.io/score:7");
    assert_eq!(container["resources"], json!({"cpu": 0.5, "memory": "1Gi"}));
    assert_eq!(container["command"], json!(["python"]));
    assert_eq!(container["args"], json!(["-m", "score"]));
    assert!(container["env"]
        .as_array()
        .unwrap()
        .contains(&json!({"name": "API_KEY", "secretRef": "api-key"})));
    let env = w.azure.env(id);
    assert_eq!(
        env["DB_HOST"], "db.internal",
        "the job's own variables stay"
    );
    assert_eq!(env["MODE"], "fast", "the task's env wins over the job's");
    assert_eq!(env["ORK_TASK"], "score");
    assert_eq!(env["ORK_RUN_ID"], run.to_string());
    assert_eq!(env["ORK_CALLBACK_URL"], format!("{}/complete", w.app.url));

    // A sweep while it runs changes nothing; once it succeeded, the poll
    // records it and the report runs.
    w.sweep().await;
    assert_eq!(w.tasks(run).await["score"].status, TaskStatus::Running);
    w.azure.set_status(id, "Succeeded");
    w.sweep().await;
    assert_eq!(w.wait_for_end(run).await, RunStatus::Success);
    let tasks = w.tasks(run).await;
    let report = tasks["report"].output.clone().expect("report's output");
    assert_eq!(
        report["upstream"]["train"]["upstream"]["extract"]["rows"],
        3
    );
    assert_eq!(report["upstream"]["score"], Value::Null);
    // One token, cached for every call.
    assert_eq!(w.azure.grants(), vec!["client_credentials".to_owned()]);
}

const CANCEL: &str = r#"name: long
tasks:
  slow_lambda:
    executor: lambda
    command: sleep
    args: ["30"]
    lambda: {function: ork-worker}
  slow_azure:
    executor: azure
    azure: {subscription: sub-1, resource_group: rg-batch, job: scorer, container: main}
"#;

async fn cancel_stops_the_azure_execution_and_the_lambda_worker(db: TestDb) {
    let w = world(db, CANCEL, &[("ORK_HEARTBEAT_SECS", "1")]).await;
    let run = w.trigger("long").await;
    let tasks = w
        .wait_for(
            run,
            &[
                ("slow_lambda", TaskStatus::Running),
                ("slow_azure", TaskStatus::Running),
            ],
        )
        .await;
    // The function is running the program.
    let deadline = Instant::now() + PATIENCE;
    while w.lambda.alive() == 0 {
        assert!(
            Instant::now() < deadline,
            "the worker function never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled_at = Instant::now();
    let (status, body) = w
        .app
        .post(&format!("/api/runs/{run}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(w.wait_for_end(run).await, RunStatus::Cancelled);

    // Azure: the execution was stopped.
    let id = tasks["slow_azure"].execution_id.clone().unwrap();
    let stop = format!("{id}/stop");
    assert!(
        w.azure
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path == stop),
        "{:?}",
        w.azure.requests()
    );
    assert_eq!(
        w.azure.execution(&id).unwrap()["properties"]["status"],
        "Stopped"
    );

    // Lambda: the worker heard 410 at its next heartbeat, stopped `sleep
    // 30` and the function answered, long before the program would end.
    while w.lambda.alive() > 0 {
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(20),
            "the worker function still runs after the cancel"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cancelled_at.elapsed() < Duration::from_secs(20));
    assert_eq!(w.lambda.answers().len(), 1);
    let tasks = w.tasks(run).await;
    assert_eq!(tasks["slow_lambda"].status, TaskStatus::Cancelled);
    assert_eq!(tasks["slow_azure"].status, TaskStatus::Cancelled);
}

on_both_backends!(
    a_dag_of_process_lambda_and_azure_tasks_runs_through_the_handlers,
    cancel_stops_the_azure_execution_and_the_lambda_worker,
);

fn request(yaml_task: &str) -> DispatchRequest {
    let spec = common::parse(&format!("name: w\ntasks:\n  t:\n{yaml_task}"));
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
        input: json!({"params": {}}),
        input_file: None,
        input_url: None,
        output_url: None,
        item: None,
        timeout: None,
        callback: None,
    }
}

fn azure_request(job: &str) -> DispatchRequest {
    request(&format!(
        "    executor: azure\n    command: /bin/work\n    azure: {{subscription: {SUB}, resource_group: {GROUP}, job: {job}}}\n"
    ))
}

#[tokio::test]
async fn azure_errors_retries_and_managed_identity() {
    let azure = FakeAzure::start().await;
    add_scorer(&azure);
    let executor = AzureExecutor::new(azure.url.clone(), client_secret(&azure), FAST);

    // Refused and unknown jobs fail for good, with ARM's message.
    let err = executor
        .dispatch(&azure_request("forbidden"))
        .await
        .unwrap_err();
    assert!(matches!(err, ExecutorError::Permanent(_)), "{err:?}");
    assert!(err.message().contains("403 AuthorizationFailed"), "{err}");
    let err = executor.dispatch(&azure_request("nope")).await.unwrap_err();
    assert!(matches!(err, ExecutorError::Permanent(_)), "{err:?}");
    assert!(err.message().contains("404 ResourceNotFound"), "{err}");
    // A container the job does not have.
    let mut req = azure_request("scorer");
    req.spec.azure.as_mut().unwrap().container = Some("sidecar".into());
    let err = executor.dispatch(&req).await.unwrap_err();
    assert!(
        err.message().contains("no container named \"sidecar\""),
        "{err}"
    );
    assert!(azure.executions().is_empty());

    // A 503 before starting is retried: one execution.
    azure.fail_next_starts(&[503]);
    let Dispatch::Started { execution_id } =
        executor.dispatch(&azure_request("scorer")).await.unwrap()
    else {
        panic!("not started")
    };
    assert_eq!(azure.executions(), vec![execution_id.clone()]);

    // A start whose answer was lost is found by listing, not made twice.
    azure.lose_next_start_answers(&[504]);
    let req = azure_request("scorer");
    let Dispatch::Started {
        execution_id: second,
    } = executor.dispatch(&req).await.unwrap()
    else {
        panic!("not started")
    };
    assert_eq!(
        azure.executions(),
        vec![execution_id.clone(), second.clone()]
    );
    assert!(azure
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.path.ends_with("/jobs/scorer/executions")));

    // A bare 202 (no JobExecutionBase): the execution is found by listing.
    azure.answer_starts_without_body();
    let Dispatch::Started {
        execution_id: third,
    } = executor.dispatch(&azure_request("scorer")).await.unwrap()
    else {
        panic!("not started")
    };
    assert_eq!(azure.executions().len(), 3);
    assert_eq!(azure.executions()[2], third);

    // Poll: running, then failed with a pointer to the logs.
    let attempt = req.attempt.clone();
    assert_eq!(executor.poll(&attempt, &second).await.unwrap(), None);
    azure.set_status(&second, "Failed");
    let outcome = executor.poll(&attempt, &second).await.unwrap().unwrap();
    assert!(!outcome.success);
    assert!(outcome
        .error
        .unwrap()
        .contains("ContainerAppConsoleLogs_CL"));
    // Stopping a gone execution is not an error; a foreign id is refused.
    let gone = format!(
        "{}/executions/scorer-gone",
        fake_azure::job_id(SUB, GROUP, "scorer")
    );
    executor.cancel(&attempt, &gone).await.unwrap();
    let err = executor
        .cancel(&attempt, "projects/p/jobs/x")
        .await
        .unwrap_err();
    assert!(matches!(err, ExecutorError::Permanent(_)));
    assert_eq!(azure.grants(), vec!["client_credentials".to_owned()]);

    // A wrong secret: Entra ID's reason, permanent.
    let wrong = AzureExecutor::new(
        azure.url.clone(),
        Credential::ClientSecret {
            authority: azure.url.clone(),
            tenant: fake_azure::TENANT.into(),
            client_id: fake_azure::CLIENT_ID.into(),
            secret: "wrong".into(),
        },
        FAST,
    );
    let err = wrong.dispatch(&azure_request("scorer")).await.unwrap_err();
    assert!(matches!(err, ExecutorError::Permanent(_)), "{err:?}");
    assert!(err.message().contains("AADSTS7000215"), "{err}");

    // A managed identity's endpoint.
    let msi = AzureExecutor::new(
        azure.url.clone(),
        Credential::ManagedIdentity {
            endpoint: azure.identity_endpoint(),
            header: fake_azure::IDENTITY_HEADER.into(),
            client_id: None,
        },
        FAST,
    );
    assert!(matches!(
        msi.dispatch(&azure_request("scorer")).await.unwrap(),
        Dispatch::Started { .. }
    ));
    assert_eq!(
        azure.grants().last().map(String::as_str),
        Some("managed_identity")
    );
}

#[tokio::test]
async fn lambda_errors_are_permanent_where_retrying_cannot_help() {
    let lambda = FakeLambda::start().await;
    let executor = LambdaExecutor::new(fake_lambda::client(&lambda.url).await);
    let req =
        request("    executor: lambda\n    command: \"true\"\n    lambda: {function: missing}\n");
    let err = executor.dispatch(&req).await.unwrap_err();
    assert!(matches!(err, ExecutorError::Permanent(_)), "{err:?}");
    assert!(err.message().contains("ResourceNotFoundException"), "{err}");

    // An input in a local file cannot reach a function.
    let mut big = req.clone();
    big.input_file = Some("/tmp/ork-input.json".into());
    let err = executor.dispatch(&big).await.unwrap_err();
    assert!(matches!(err, ExecutorError::Permanent(_)), "{err:?}");
    // Nor an event over Lambda's limit.
    let mut huge = req.clone();
    huge.input = json!({"blob": "x".repeat(300 * 1024)});
    let err = executor.dispatch(&huge).await.unwrap_err();
    assert!(err.message().contains("over the 262144 bytes"), "{err}");
    assert_eq!(lambda.invoked().len(), 1, "neither was sent");
}

/// One request through the recording proxy: method, path and query, headers, body.
type Request = (String, String, HeaderMap, Bytes);

/// What went through the recording proxy in front of moto.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request>>>);

/// A pass-through proxy that records each request (method, path and
/// query, headers, body) on its way to `upstream`.
async fn recording_proxy(upstream: String) -> (String, Seen) {
    let seen = Seen::default();
    let record = seen.clone();
    let client = ork_tests::moto::local_http();
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, mut headers: HeaderMap, body: Bytes| {
            let (record, client, upstream) = (record.clone(), client.clone(), upstream.clone());
            async move {
                let path = uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                record.0.lock().unwrap().push((
                    method.to_string(),
                    path.clone(),
                    headers.clone(),
                    body.clone(),
                ));
                headers.remove("host");
                headers.remove("content-length");
                let resp = client
                    .request(method, format!("{upstream}{path}"))
                    .headers(headers)
                    .body(body)
                    .send()
                    .await
                    .expect("moto answers");
                let status = resp.status();
                let mut headers = resp.headers().clone();
                headers.remove("content-length");
                headers.remove("transfer-encoding");
                (status, headers, resp.bytes().await.unwrap_or_default()).into_response()
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// A moto call by hand; moto reads the service from the credential scope.
async fn moto_call(
    moto: &str,
    service: &str,
    path: &str,
    content_type: &str,
    body: String,
) -> (u16, String) {
    let r = ork_tests::moto::local_http()
        .post(format!("{moto}{path}"))
        .header("Content-Type", content_type)
        .header(
            "Authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/{service}/aws4_request, \
                 SignedHeaders=host, Signature=0"
            ),
        )
        .body(body)
        .send()
        .await
        .expect("moto");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn lambda_invoke_request_shape_against_moto() {
    let moto = ork_tests::moto::harness_async().await.moto.clone();
    // Lambda without Docker: invocations answer at once.
    let r = ork_tests::moto::local_http()
        .post(format!("{moto}/moto-api/config"))
        .json(&json!({"lambda": {"use_docker": false}}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let role = format!("ork-worker-{}", Uuid::now_v7().simple());
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let (status, text) = moto_call(
        &moto,
        "iam",
        "/",
        "application/x-www-form-urlencoded",
        format!(
            "Action=CreateRole&Version=2010-05-08&RoleName={role}&AssumeRolePolicyDocument={}",
            policy
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                })
                .collect::<String>()
        ),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let function = format!("ork-moto-{}", &role[11..23]);
    let (status, text) = moto_call(
        &moto,
        "lambda",
        "/2015-03-31/functions",
        "application/json",
        json!({
            "FunctionName": function,
            "Runtime": "provided.al2023",
            "Role": format!("arn:aws:iam::123456789012:role/{role}"),
            "Handler": "bootstrap",
            "Code": {"ZipFile": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="},
            "Timeout": 900,
            "MemorySize": 1024,
        })
        .to_string(),
    )
    .await;
    assert_eq!(status, 201, "{text}");

    let (proxy, seen) = recording_proxy(moto).await;
    let executor = LambdaExecutor::new(fake_lambda::client(&proxy).await);
    let req = request(&format!(
        "    executor: lambda\n    command: [python3, job.py]\n    env: {{STAGE: prod}}\n    lambda: {{function: {function}}}\n"
    ));
    let Dispatch::Started { execution_id } = executor.dispatch(&req).await.expect("invoke") else {
        panic!("not started")
    };
    assert!(
        execution_id.starts_with(&format!("{function}/")),
        "{execution_id}"
    );
    let seen = seen.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (method, path, headers, body) = &seen[0];
    assert_eq!(method, "POST");
    assert_eq!(
        path,
        &format!("/2015-03-31/functions/{function}/invocations")
    );
    assert_eq!(headers["x-amz-invocation-type"], "Event");
    assert!(headers["authorization"]
        .to_str()
        .unwrap()
        .contains("/us-east-1/lambda/aws4_request"));
    let event: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(event, invocation_event(&req));
    assert_eq!(event["command"], json!(["python3", "job.py"]));
    assert_eq!(event["env"]["STAGE"], "prod");
    // (moto's Lambda without Docker answers any name: an unknown function's
    // 404 is checked against FakeLambda above.)
}
