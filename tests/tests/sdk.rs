//! The task SDKs end to end: workflows/my_etl (Python tasks with Pydantic
//! models and a Rust task) run by the real `ork` binary.

use ork_tests::bin::{ork_on, repo, text};
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

#[test]
fn typed_data_flows_from_extract_through_the_rust_task_to_load() {
    let dir = tempfile::tempdir().unwrap();
    let out = ork(dir.path(), &["run", "workflows/my_etl/etl.yaml"]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    let list = tasks(dir.path(), &printed);
    // extract's typed users (7 in the fixture) reached transform; its
    // summary reached the Rust task and, with the scores, load.
    assert_eq!(
        task(&list, "extract")["output"]["users"][1]["email"],
        "grace@example.com"
    );
    assert_eq!(task(&list, "transform")["output"]["active_users"], 6);
    assert_eq!(task(&list, "score")["output"]["top_country"], "US");
    assert_eq!(
        task(&list, "load")["output"],
        serde_json::json!({"rows": 3, "active_users": 6, "top_country": "US", "total_spend": 650.5})
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
