//! The payload stores: the local directory, S3 (moto's S3 server) and GCS
//! (`gcp-storage-emulator`), through `object_store` as `ORK_PAYLOAD_URL`
//! configures them. A 10 MiB output is stored by reference and streamed
//! into its child's input on the process executor; a cloud worker (Cloud
//! Run against its fake API, Fargate against moto) gets its input as a
//! presigned URL, fetched here for real.

use ork_tests::db as common;
use ork_tests::{fake_cloudrun, gcs, moto, on_both_backends};

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ork_core::engine::{Engine, EngineConfig, TriggerOptions};
use ork_core::executor::{Completion, Executor, Executors, Outcome};
use ork_core::model::{AttemptRef, RunStatus};
use ork_core::payload::{PayloadRef, Payloads};
use ork_core::retry::Backoff;
use ork_core::spec::ExecutorKind;
use ork_executors::{CloudRunExecutor, FargateExecutor, ProcessExecutor};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use uuid::Uuid;

/// A parent that writes `rows` rows of 1,023 bytes (10,240: 10 MiB).
fn produce(rows: usize) -> String {
    format!(
        r#"
  produce:
    command: ["python3", "-c", "import json, os; json.dump({{'rows': ['x' * 1023] * {rows}}}, open(os.environ['ORK_OUTPUT'], 'w'))"]
"#
    )
}

async fn s3(dir: &std::path::Path) -> Payloads {
    Payloads {
        remote: Some(moto::s3_store().await),
        ..Payloads::new(dir.join("payloads"))
    }
}

async fn gcs(dir: &std::path::Path) -> Payloads {
    Payloads {
        remote: Some(gcs::store().await),
        ..Payloads::new(dir.join("payloads"))
    }
}

/// Fetches a URL (a presigned one) with a plain client: no credentials.
async fn fetch(url: &str) -> Vec<u8> {
    let resp = moto::local_http().get(url).send().await.expect("GET");
    assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
    resp.bytes().await.expect("body").to_vec()
}

/// The reference the run's `produce` row keeps.
async fn produce_ref(db: &TestDb, run: Uuid) -> PayloadRef {
    let outputs = db.store.task_outputs(run, &["produce"]).await.unwrap();
    serde_json::from_value(outputs[0].output_ref.clone().expect("a reference")).unwrap()
}

/// A large output (`rows` KiB) on the process executor, stored in
/// `payloads`, reaches the child through `ORK_INPUT_FILE` (streamed from
/// the store); the row keeps a reference (size, sha256), not the bytes.
async fn large_output_to_a_child_on_processes(
    db: &TestDb,
    payloads: Payloads,
    rows: usize,
) -> (Uuid, PayloadRef) {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut completions) = mpsc::unbounded_channel();
    let process = Arc::new(ProcessExecutor::new(dir.path().join("logs"), tx));
    let engine = Engine::new(
        db.store.clone(),
        Executors::new().with(ExecutorKind::Process, process),
        EngineConfig {
            payloads,
            ..EngineConfig::default()
        },
    );
    let spec = format!(
        r#"
name: big
tasks:{produce}
  consume:
    depends_on: [produce]
    command: ["python3", "-c"]
    args:
      - |
        import json, os
        assert "ORK_INPUT" not in os.environ
        d = json.load(open(os.environ["ORK_INPUT_FILE"]))
        rows = d["upstream"]["produce"]["rows"]
        json.dump({{"rows": len(rows), "bytes": sum(len(r) for r in rows)}}, open(os.environ["ORK_OUTPUT"], "w"))
"#,
        produce = produce(rows)
    );
    engine.apply(&parse(&spec), None).await.unwrap();
    let run = engine
        .trigger("big", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    let status = tokio::time::timeout(
        Duration::from_secs(120),
        ork_core::engine::drive(&engine, run.id, &mut completions),
    )
    .await
    .expect("in time")
    .unwrap();
    let tasks = db.store.run_tasks(run.id).await.unwrap();
    assert_eq!(status, RunStatus::Success, "{tasks:?}");
    let consume = tasks.iter().find(|t| t.name == "consume").unwrap();
    assert_eq!(
        consume.output,
        Some(json!({"rows": rows, "bytes": rows * 1023}))
    );
    let produce = tasks.iter().find(|t| t.name == "produce").unwrap();
    assert_eq!(produce.output, None, "the large output is not inline");
    let r = produce_ref(db, run.id).await;
    assert!(r.size > rows as u64 * 1024, "{r:?}");
    assert_eq!(r.sha256.len(), 64);
    (run.id, r)
}

async fn ten_mib_output_in_the_local_directory(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (run, r) =
        large_output_to_a_child_on_processes(&db, Payloads::new(dir.path()), 10240).await;
    assert!(
        !dir.path().join("inputs").join(run.to_string()).exists(),
        "input files go with their attempts"
    );
    let path = r.local_path().expect("a file:// reference");
    assert!(path.starts_with(dir.path().join("outputs")), "{r:?}");
    assert_eq!(std::fs::metadata(path).unwrap().len(), r.size);
}

/// The stored object, fetched by presigned URL, is the output: same size,
/// same SHA-256; and nothing of it is left in the local directory.
async fn check_remote_copy(payloads: &Payloads, r: &PayloadRef, dir: &std::path::Path) {
    let url = payloads
        .presigned_get(r, Duration::from_secs(60))
        .await
        .expect("in the remote store")
        .expect("presigned");
    let bytes = fetch(&url).await;
    assert_eq!(bytes.len() as u64, r.size);
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), r.sha256);
    let left: Vec<_> = walk(&dir.join("payloads").join("outputs"));
    assert!(left.is_empty(), "output files left behind: {left:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p)
            } else {
                vec![p]
            }
        })
        .collect()
}

async fn ten_mib_output_in_s3(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let payloads = s3(dir.path()).await;
    let (run, r) = large_output_to_a_child_on_processes(&db, payloads.clone(), 10240).await;
    assert!(
        r.url.starts_with(&format!(
            "{}/outputs/{run}/",
            payloads.remote.as_ref().unwrap().url
        )),
        "{r:?}"
    );
    check_remote_copy(&payloads, &r, dir.path()).await;
}

/// 5 MiB: under the multipart threshold (`UPLOAD_PART`, 8 MiB), so one
/// upload; the emulator does not implement the XML API's multipart uploads
/// (GCS does; S3's are tested above).
async fn five_mib_output_in_gcs(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let payloads = gcs(dir.path()).await;
    let (run, r) = large_output_to_a_child_on_processes(&db, payloads.clone(), 5120).await;
    assert!(
        r.url.starts_with(&format!(
            "{}/outputs/{run}/",
            payloads.remote.as_ref().unwrap().url
        )),
        "{r:?}"
    );
    check_remote_copy(&payloads, &r, dir.path()).await;
}

/// Runs `produce` on a local process, then advances the run: its child,
/// on `executor`, is dispatched with the 10 MiB input. Returns the engine
/// and the child's attempt.
async fn produce_then_dispatch(
    db: &TestDb,
    payloads: Payloads,
    kind: ExecutorKind,
    executor: Arc<dyn Executor>,
    child: &str,
) -> (Engine, AttemptRef) {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut completions) = mpsc::unbounded_channel();
    let process = Arc::new(ProcessExecutor::new(dir.path().join("logs"), tx));
    let engine = Engine::new(
        db.store.clone(),
        Executors::new()
            .with(ExecutorKind::Process, process)
            .with(kind, executor),
        EngineConfig {
            payloads,
            ..EngineConfig::default()
        },
    );
    let spec = format!("name: cloud\ntasks:{}{child}", produce(10240));
    engine.apply(&parse(&spec), None).await.unwrap();
    let run = engine
        .trigger("cloud", json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    engine.advance(run.id).await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(60), completions.recv())
        .await
        .expect("produce ends in time")
        .expect("a completion");
    assert!(done.outcome.success, "{:?}", done.outcome);
    engine.complete(&[done]).await.unwrap();
    let advanced = engine.advance(run.id).await.unwrap();
    assert_eq!(advanced.dispatched, 1);
    let tasks = db.store.run_tasks(run.id).await.unwrap();
    let t = tasks.iter().find(|t| t.name == "consume").unwrap();
    assert!(t.execution_id.is_some(), "{t:?}");
    let attempt = AttemptRef {
        run_id: run.id,
        workflow: "cloud".into(),
        version: run.version,
        task_id: t.id,
        name: t.name.clone(),
        task_index: t.task_index,
        attempt: t.attempt,
    };
    (engine, attempt)
}

/// The input at `ORK_INPUT_URL` of a worker's environment (a list of
/// `{name, value}`), fetched: the 10 MiB document. Returns `ORK_OUTPUT_URL`.
async fn check_input_url(env: &[Value]) -> String {
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .and_then(|e| e["value"].as_str())
            .map(str::to_owned)
    };
    assert_eq!(var("ORK_INPUT"), None, "not inline");
    assert_eq!(
        var("ORK_INPUT_FILE"),
        None,
        "no local path for a cloud worker"
    );
    let url = var("ORK_INPUT_URL").expect("ORK_INPUT_URL");
    let doc: Value = serde_json::from_slice(&fetch(&url).await).expect("the input is JSON");
    let rows = doc["upstream"]["produce"]["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 10240);
    assert!(rows.iter().all(|r| r.as_str().unwrap().len() == 1023));
    var("ORK_OUTPUT_URL").expect("ORK_OUTPUT_URL")
}

/// Once the attempt ended, its input document is deleted from the store.
async fn input_gone(env: &[Value]) {
    let url = env
        .iter()
        .find(|e| e["name"] == "ORK_INPUT_URL")
        .and_then(|e| e["value"].as_str())
        .unwrap();
    let resp = moto::local_http().get(url).send().await.expect("GET");
    assert_eq!(
        resp.status(),
        404,
        "the input is deleted once its attempt ended"
    );
}

/// Ends the child's attempt as a worker would with a 3 MiB output: PUT to
/// its presigned `ORK_OUTPUT_URL`, then the report (`output_uploaded`: the
/// handler's check of the uploaded object, then the completion). The row
/// references the object where the worker put it.
async fn finish(db: &TestDb, engine: &Engine, attempt: AttemptRef, output_url: &str) {
    let output = serde_json::to_vec(&json!({"big": "y".repeat(3 << 20)})).unwrap();
    let resp = moto::local_http()
        .put(output_url)
        .body(output.clone())
        .send()
        .await
        .expect("PUT");
    assert!(resp.status().is_success(), "PUT: {}", resp.status());
    let payloads = &engine.config().payloads;
    let r = match payloads.uploaded(&attempt).await.unwrap() {
        ork_core::payload::OutputFile::Ref(r) => r,
        _ => panic!("a reference to the uploaded output"),
    };
    assert_eq!(r.size, output.len() as u64);
    let run = attempt.run_id;
    engine
        .complete(&[Completion {
            attempt,
            outcome: Outcome {
                output_ref: Some(r.clone()),
                ..Outcome::success(None)
            },
        }])
        .await
        .unwrap();
    assert_eq!(
        db.store.get_run(run).await.unwrap().status,
        RunStatus::Success
    );
    let stored = db.store.task_outputs(run, &["consume"]).await.unwrap();
    let stored: PayloadRef = serde_json::from_value(stored[0].output_ref.clone().unwrap()).unwrap();
    assert_eq!(stored, r);
    assert!(stored.url.starts_with("s3://"), "{stored:?}");
    let url = payloads
        .presigned_get(&stored, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fetch(&url).await, output);
}

async fn ten_mib_input_by_presigned_url_on_cloud_run(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_cloudrun::FakeCloudRun::start().await;
    fake.add_job("p", "europe-west1", "consume");
    let key = fake.write_key_file(dir.path());
    let account = gcp_auth::CustomServiceAccount::from_file(&key).unwrap();
    let retry = Backoff::new(4, Duration::from_millis(1), Duration::from_millis(1));
    let cloudrun = Arc::new(CloudRunExecutor::new(
        fake.url.clone(),
        Arc::new(account),
        retry,
    ));
    let child = "
  consume:
    executor: cloudrun
    cloudrun: {job: consume, project: p, region: europe-west1}
    depends_on: [produce]
";
    let payloads = s3(dir.path()).await;
    let (engine, attempt) =
        produce_then_dispatch(&db, payloads, ExecutorKind::Cloudrun, cloudrun, child).await;
    let run = fake
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with(":run"))
        .expect("a jobs.run call");
    let body = run.body.expect("a body");
    let env = body["overrides"]["containerOverrides"][0]["env"]
        .as_array()
        .unwrap_or_else(|| panic!("no env in {body}"))
        .clone();
    let output_url = check_input_url(&env).await;
    finish(&db, &engine, attempt, &output_url).await;
    input_gone(&env).await;
}

async fn ten_mib_input_by_presigned_url_on_fargate(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    moto::harness_async().await;
    let fx = moto::EcsFixture::create("app").await;
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let fargate = Arc::new(FargateExecutor::new(aws_sdk_ecs::Client::new(&config)));
    let child = format!(
        "
  consume:
    executor: fargate
    fargate:
      cluster: {}
      task_definition: {}
      container: app
      subnets: [{}]
      security_groups: [sg-0123456789abcdef0]
    depends_on: [produce]
",
        fx.cluster, fx.family, fx.subnet
    );
    let payloads = s3(dir.path()).await;
    let (engine, attempt) =
        produce_then_dispatch(&db, payloads, ExecutorKind::Fargate, fargate, &child).await;
    let tasks = db.store.run_tasks(attempt.run_id).await.unwrap();
    let arn = tasks
        .iter()
        .find(|t| t.name == "consume")
        .and_then(|t| t.execution_id.clone())
        .expect("a task ARN");
    let task = fx.describe(&arn).await;
    let env = task["overrides"]["containerOverrides"][0]["environment"]
        .as_array()
        .unwrap_or_else(|| panic!("no environment in {task}"))
        .clone();
    let output_url = check_input_url(&env).await;
    finish(&db, &engine, attempt, &output_url).await;
    input_gone(&env).await;
}

/// An output over the upload part size (20 MiB: three parts of at most
/// 8 MiB) goes into GCS by a multipart upload and reads back whole: same
/// size and SHA-256, by presigned URL and through the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_mib_output_into_gcs_in_parts() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = gcs(dir.path()).await;
    let file = dir.path().join("out.json");
    let size = 20 << 20;
    let mut text = vec![b'x'; size];
    (text[0], text[size - 1]) = (b'"', b'"');
    std::fs::write(&file, &text).unwrap();
    drop(text);
    let r = match ork_core::payload::check_output_file(&file, 1024, 1 << 30).await {
        Ok(ork_core::payload::OutputFile::Ref(r)) => r,
        _ => panic!("a reference"),
    };
    let before = gcs::PARTS_ASSEMBLED.load(std::sync::atomic::Ordering::SeqCst);
    let run = Uuid::now_v7();
    let stored = payloads
        .adopt(&r, run, "big.0.json")
        .await
        .expect("adopted");
    let parts = gcs::PARTS_ASSEMBLED.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(parts >= 3, "a multipart upload of 3 parts, not {parts}");
    assert!(stored.url.starts_with("gs://"), "{}", stored.url);
    assert_eq!((stored.size, &stored.sha256), (r.size, &r.sha256));
    assert!(!file.exists(), "the local file goes once stored");
    check_remote_copy(&payloads, &stored, dir.path()).await;
    use sha2::Digest;
    let mut hash = sha2::Sha256::new();
    let mut n = 0;
    let mut chunks = payloads
        .open(&stored)
        .await
        .expect("in the store")
        .unwrap()
        .into_stream();
    while let Some(chunk) = futures::StreamExt::next(&mut chunks).await {
        let chunk = chunk.unwrap();
        n += chunk.len() as u64;
        hash.update(&chunk);
    }
    assert_eq!((n, hex::encode(hash.finalize())), (r.size, r.sha256));
}

on_both_backends!(
    ten_mib_output_in_the_local_directory,
    ten_mib_output_in_s3,
    five_mib_output_in_gcs,
    ten_mib_input_by_presigned_url_on_cloud_run,
    ten_mib_input_by_presigned_url_on_fargate,
);

/// `ork worker` with `ORK_OUTPUT_URL` (a presigned PUT into S3): its
/// program's 300 KB output is streamed there, the report says
/// `output_uploaded` without the output, and the handler's check finds it
/// (size, SHA-256) and references it where it is.
#[tokio::test]
async fn ork_worker_puts_a_large_output_to_its_presigned_url() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = s3(dir.path()).await;
    let attempt = AttemptRef {
        run_id: Uuid::now_v7(),
        workflow: "w".into(),
        version: 1,
        task_id: Uuid::now_v7(),
        name: "t".into(),
        task_index: 0,
        attempt: 1,
    };
    let output_url = payloads
        .output_put_url(&attempt, Duration::from_secs(600))
        .await
        .expect("a remote store")
        .expect("presigned");
    // The control plane's `/complete`, recording the report.
    let reports = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = reports.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            r#"{"result":"recorded"}"#
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(ork_tests::bin::ork())
            .args([
                "worker",
                "--",
                "python3",
                "-c",
                "import json, os; json.dump('z' * 300000, open(os.environ['ORK_OUTPUT'], 'w'))",
            ])
            .env("ORK_CALLBACK_URL", format!("{url}/complete"))
            .env("ORK_CALLBACK_TOKEN", "not-checked-here")
            .env("ORK_OUTPUT_URL", output_url)
            .env("ORK_REPORT_TIMEOUT", "5s")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports = reports.lock().unwrap().clone();
    let report = reports
        .iter()
        .find(|r| r["status"] == "success")
        .unwrap_or_else(|| panic!("no success report in {reports:?}"));
    assert_eq!(report["output_uploaded"], json!(true), "{report}");
    assert_eq!(report["output"], Value::Null, "{report}");
    match payloads.uploaded(&attempt).await.unwrap() {
        ork_core::payload::OutputFile::Ref(r) => {
            assert_eq!(r.size, 300_002);
            assert!(r.url.starts_with("s3://"), "{r:?}");
        }
        _ => panic!("a reference to the uploaded output"),
    }
}
