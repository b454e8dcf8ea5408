//! The task panel's output download and cloud log links, over real HTTP on
//! both backends: an inline output and a large one kept by reference (and
//! streamed back byte for byte), the workflow's schemas, and the console
//! URLs built from Cloud Run and ECS execution ids.

use ork_tests::app::TestApp;
use ork_tests::db::*;
use ork_tests::on_both_backends;

use std::sync::Arc;

use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError, Executors, Outcome};
use ork_core::payload::{check_output_file, OutputFile, DEFAULT_MAX_PAYLOAD_BYTES};
use ork_core::spec::ExecutorKind;
use serde_json::{json, Value};

/// `big` leaves a 300 KiB output file (kept by reference), `small` `{"n": 1}`.
struct Outputs(tempfile::TempDir);

#[async_trait::async_trait]
impl Executor for Outputs {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        if req.attempt.name != "big" {
            return Ok(Dispatch::Finished(Outcome::success(Some(json!({"n": 1})))));
        }
        let path = self.0.path().join(format!("{}.json", req.attempt.task_id));
        let rows: Vec<Value> = (0..3000)
            .map(|i| json!({"i": i, "pad": "x".repeat(90)}))
            .collect();
        std::fs::write(&path, serde_json::to_vec(&rows).unwrap()).unwrap();
        let mut outcome = Outcome::success(None);
        match check_output_file(&path, 64 * 1024, DEFAULT_MAX_PAYLOAD_BYTES).await {
            Ok(OutputFile::Ref(r)) => outcome.output_ref = Some(r),
            _ => panic!("a 300 KiB output is kept by reference"),
        }
        Ok(Dispatch::Finished(outcome))
    }
}

const WF: &str = r#"
name: outs
tasks:
  big: {executor: noop}
  small:
    executor: noop
    depends_on: [big]
    inputs: {first: big.0}
    schema:
      input: {type: object, properties: {first: {type: object}}}
      output: {type: object, required: [n], properties: {n: {type: integer}}}
"#;

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.http
        .get(format!("{}{path}", app.url))
        .send()
        .await
        .unwrap()
}

/// Applies and triggers `outs`, and waits for its success: its id and summary.
async fn run_outs(app: &TestApp) -> (String, Value) {
    app.engine.apply(&parse(WF), None).await.unwrap();
    let (status, body) = app.post("/trigger", &json!({"workflow": "outs"})).await;
    assert_eq!(status, 202, "{body}");
    let id = body["run_id"].as_str().unwrap().to_owned();
    let mut run = Value::Null;
    for _ in 0..200 {
        run = get(app, &format!("/api/runs/{id}"))
            .await
            .json()
            .await
            .unwrap();
        if run["run"]["status"] == "success" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(run["run"]["status"], "success", "{run}");
    (id, run)
}

async fn outputs_download_inline_and_by_reference(db: TestDb) {
    let exec = Arc::new(Outputs(tempfile::tempdir().unwrap()));
    let app = TestApp::builder(db.store.clone())
        .executors(Executors::new().with(ExecutorKind::Noop, exec))
        .spawn()
        .await;
    let (id, run) = run_outs(&app).await;
    let task_id = |name: &str| {
        run["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // The large output: the panel gets its reference and a download link.
    let big = task_id("big");
    let panel: Value = get(&app, &format!("/api/runs/{id}/tasks/{big}"))
        .await
        .json()
        .await
        .unwrap();
    let r = &panel["output_ref"];
    assert!(r["size"].as_u64().unwrap() > 64 * 1024, "{panel}");
    let link = panel["download"].as_str().unwrap();
    assert_eq!(link, format!("/api/runs/{id}/tasks/{big}/output"));
    let resp = get(&app, link).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-disposition"],
        "attachment; filename=\"big.0.output.json\""
    );
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, r["size"].as_u64().unwrap());
    let stored = r["url"].as_str().unwrap().strip_prefix("file://").unwrap();
    assert!(
        bytes == std::fs::read(stored).unwrap(),
        "the stored bytes, as they are"
    );
    let rows: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
    assert_eq!((rows.len(), &rows[2999]["i"]), (3000, &json!(2999)));

    // The inline one downloads as its JSON.
    let small = task_id("small");
    let resp = get(&app, &format!("/api/runs/{id}/tasks/{small}/output")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"n": 1}));

    // An unknown task is a JSON 404.
    let other = uuid::Uuid::now_v7();
    let resp = get(&app, &format!("/api/runs/{id}/tasks/{other}/output")).await;
    assert_eq!(resp.status(), 404);
    assert!(resp.json::<Value>().await.unwrap()["error"].is_string());

    // The workflow's schemas, by task.
    let wf: Value = get(&app, "/api/workflows/outs").await.json().await.unwrap();
    assert_eq!(wf["schemas"]["small"]["output"]["required"], json!(["n"]));
    assert!(wf["schemas"].get("big").is_none(), "{}", wf["schemas"]);
}

/// With S3 as the payload store (moto), the download is a redirect to a
/// presigned GET of the stored object, which serves its bytes.
async fn outputs_in_s3_download_by_presigned_redirect(db: TestDb) {
    let exec = Arc::new(Outputs(tempfile::tempdir().unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let payloads = ork_core::payload::Payloads {
        remote: Some(ork_tests::moto::s3_store().await),
        ..ork_core::payload::Payloads::new(dir.path().to_path_buf())
    };
    let app = TestApp::builder(db.store.clone())
        .executors(Executors::new().with(ExecutorKind::Noop, exec))
        .payloads(payloads)
        .spawn()
        .await;
    let (id, run) = run_outs(&app).await;
    let big = run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "big")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_follow
        .get(format!("{}/api/runs/{id}/tasks/{big}/output", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 307);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("X-Amz-Signature="), "{location}");
    let bytes = reqwest::get(&location)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let rows: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
    assert_eq!((rows.len(), &rows[2999]["i"]), (3000, &json!(2999)));
}

on_both_backends!(
    outputs_download_inline_and_by_reference,
    outputs_in_s3_download_by_presigned_redirect
);

#[test]
fn console_urls_from_execution_ids() {
    use ork_api::ui::console_log_url;
    assert_eq!(
        console_log_url("cloudrun", "projects/p1/locations/europe-west1/jobs/etl/executions/etl-x7k2").unwrap(),
        "https://console.cloud.google.com/logs/query;query=resource.type%3D%22cloud_run_job%22%0Aresource.labels.job_name%3D%22etl%22%0Alabels.%22run.googleapis.com%2Fexecution_name%22%3D%22etl-x7k2%22?project=p1"
    );
    assert_eq!(
        console_log_url("fargate", "arn:aws:ecs:eu-west-1:123456789012:task/batch/0f1e2d3c4b5a").unwrap(),
        "https://eu-west-1.console.aws.amazon.com/ecs/v2/clusters/batch/tasks/0f1e2d3c4b5a/logs?region=eu-west-1"
    );
    assert_eq!(console_log_url("fargate", "not-an-arn"), None);
    assert_eq!(console_log_url("cloudrun", "projects/p/jobs/x"), None);
    assert_eq!(console_log_url("process", "123"), None);
}
