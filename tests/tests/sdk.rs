//! The task SDKs end to end: workflows/my_etl (Python tasks with Pydantic
//! models and a Rust task) run by the real `ork` binary.

use ork_tests::bin::{ork_on, repo, text};
use ork_tests::db::TestDb;
use ork_tests::on_both_backends;
use std::path::Path;
use std::process::Output;

fn ork(dir: &Path, args: &[&str]) -> Output {
    // The Rust task runs as `cargo run -p my-etl-score`: build it first, so
    // that the run does not wait on a compile.
    ork_tests::bin::path("my-etl-score", "score");
    ork_on(dir)
        .args(args)
        .current_dir(repo())
        .env("ORK_LOG_DIR", "target/test-logs")
        .output()
        .expect("run ork")
}

fn tasks(dir: &Path, printed: &str) -> Vec<serde_json::Value> {
    let run_id = printed.split_whitespace().nth(1).unwrap().to_owned();
    let json = ork(dir, &["tasks", &run_id, "--json"]);
    serde_json::from_slice::<serde_json::Value>(&json.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn task<'a>(list: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    list.iter().find(|t| t["name"] == name).unwrap()
}

/// extract's typed users (7 in the fixture) reached transform; its summary
/// reached the Rust task and, with the scores (through `inputs:`), load.
fn assert_typed_data_flowed(list: &[serde_json::Value]) {
    let task = |name| task(list, name);
    assert_eq!(
        task("extract")["output"]["users"][1]["email"],
        "grace@example.com"
    );
    assert_eq!(task("transform")["output"]["active_users"], 6);
    assert_eq!(task("score")["output"]["top_country"], "US");
    assert_eq!(
        task("load")["output"],
        serde_json::json!({"rows": 3, "active_users": 6, "top_country": "US", "total_spend": 650.5})
    );
}

#[test]
fn typed_data_flows_from_extract_through_the_rust_task_to_load() {
    let dir = tempfile::tempdir().unwrap();
    let out = ork(dir.path(), &["run", "workflows/my_etl/etl.yaml"]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert_typed_data_flowed(&tasks(dir.path(), &printed));
}

/// Kills `ork serve` when the test ends, passed or not.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The same run under `ork serve`, its tasks under `ork worker` reporting
/// over HTTP: triggered with `POST /trigger`, followed through the API,
/// which also returns the schemas `ork apply` stored. On both databases.
async fn my_etl_under_ork_serve_and_ork_worker(db: TestDb) {
    ork_tests::bin::path("my-etl-score", "score");
    let dir = tempfile::tempdir().unwrap();
    let on_db = || {
        let mut c = ork_on(dir.path());
        c.env("ORK_DATABASE_URL", &db.url)
            .current_dir(repo())
            .env("ORK_LOG_DIR", "target/test-logs");
        c
    };
    let out = on_db()
        .args(["apply", "workflows/my_etl/etl.yaml"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let _serve = Serve(
        on_db()
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let started = std::time::Instant::now();
    let get = |path: String| {
        let http = http.clone();
        let url = format!("{base}{path}");
        async move {
            let r = http.get(url).send().await.ok()?;
            r.json::<serde_json::Value>().await.ok()
        }
    };
    while get("/health".into()).await.is_none() {
        assert!(started.elapsed().as_secs() < 30, "ork serve did not start");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let trigger = http
        .post(format!("{base}/trigger"))
        .json(&serde_json::json!({"workflow": "my_etl"}))
        .send()
        .await
        .unwrap();
    assert_eq!(trigger.status(), 202);
    let body: serde_json::Value = trigger.json().await.unwrap();
    let run_id = body["run_id"].as_str().unwrap().to_owned();
    let run = loop {
        let run = get(format!("/api/runs/{run_id}")).await.unwrap_or_default();
        let status = run["run"]["status"].as_str().unwrap_or("");
        if matches!(status, "success" | "failed" | "cancelled") {
            break run;
        }
        assert!(started.elapsed().as_secs() < 120, "{run}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(run["run"]["status"], "success", "{run}");
    assert_typed_data_flowed(run["tasks"].as_array().unwrap());

    let wf = get("/api/workflows/my_etl".into()).await.unwrap();
    let schemas = &wf["schemas"];
    for name in ["extract", "transform", "score", "load"] {
        assert!(schemas[name]["input"].is_object(), "{name}: {schemas}");
        assert!(schemas[name]["output"].is_object(), "{name}: {schemas}");
    }
    assert_eq!(
        schemas["score"]["input"]["required"],
        serde_json::json!(["countries"])
    );
}

#[test]
fn invalid_input_fails_at_once_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = ork(
        dir.path(),
        &["run", "workflows/my_etl/etl.yaml", "-p", "min_spend=lots"],
    );
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(!printed.contains("will retry"), "{printed}");
    let run_id = printed.split_whitespace().nth(1).unwrap().to_owned();
    let listing = text(&ork(dir.path(), &["tasks", &run_id]));
    let row = listing
        .lines()
        .find(|l| l.starts_with("transform"))
        .unwrap_or_else(|| panic!("{listing}"));
    // Attempt 1 of 3, failed, not retried: the error names the field.
    assert!(row.contains("failed") && row.contains("1/3"), "{row}");
    assert!(
        row.contains("invalid input for Input: min_spend: Input should be a valid number"),
        "{row}"
    );
    let list = tasks(dir.path(), &printed);
    assert_eq!(task(&list, "load")["status"], "skipped");
}

on_both_backends!(my_etl_under_ork_serve_and_ork_worker);
