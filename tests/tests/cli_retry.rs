//! `ork retry`, `ork trigger --like` and the bulk `ork cancel` / `ork retry
//! --workflow`: the `ork` binary with real processes, on SQLite and PostgreSQL.

use ork_tests::bin::{ork, repo, text};
use ork_tests::db as common;
use ork_tests::on_both_backends;

use std::path::Path;
use std::process::{Command, Output};

use common::TestDb;
use serde_json::Value;

fn ork_at(db: &TestDb, dir: &Path, args: &[&str]) -> Output {
    Command::new(ork())
        .args(args)
        .current_dir(repo())
        .env("ORK_DATABASE_URL", &db.url)
        .env_remove("DATABASE_URL")
        .env("ORK_LOG_DIR", dir.join("logs"))
        .output()
        .expect("run ork")
}

fn json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

/// `check` fails until the file `ready` exists in `dir`; `after` then runs.
fn workflow(dir: &Path) -> std::path::PathBuf {
    let ready = dir.join("ready");
    let yaml = format!(
        r#"name: gated
tasks:
  first:
    command: [sh, -c, "echo first"]
  check:
    command: [sh, -c, "test -e '{}' || {{ echo 'not ready yet' >&2; exit 4; }}"]
    depends_on: [first]
    retries: {{count: 3, backoff: 1ms}}
    non_retryable_exit_codes: [4]
  after:
    command: [sh, -c, "echo after"]
    depends_on: [check]
"#,
        ready.display()
    );
    let file = dir.join("gated.yaml");
    std::fs::write(&file, yaml).unwrap();
    file
}

async fn retry_and_replay_from_the_command_line(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let file = workflow(dir.path());
    let file = file.to_str().unwrap();
    // Exit code 4 is not retryable: one attempt, then after is skipped.
    let out = ork_at(&db, dir.path(), &["run", file, "-p", "day=2026-11-01"]);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    let run_id = printed.split_whitespace().nth(1).unwrap().to_owned();
    let tasks = json(&ork_at(&db, dir.path(), &["tasks", &run_id, "--json"]));
    let check = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "check")
        .unwrap();
    assert_eq!(
        (check["attempt"].as_i64(), check["status"].as_str()),
        (Some(1), Some("failed"))
    );

    // Fixed: the retry runs check and after again, in place; first is kept.
    std::fs::write(dir.path().join("ready"), "").unwrap();
    let out = ork_at(&db, dir.path(), &["retry", &run_id, "--wait"]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains(&format!("run {run_id} reopened: 2 tasks")),
        "{printed}"
    );
    assert!(printed.contains("SUCCESS"), "{printed}");
    let tasks = json(&ork_at(&db, dir.path(), &["tasks", &run_id, "--json"]));
    let attempt = |name: &str| {
        let t = tasks
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap();
        (
            t["attempt"].as_i64().unwrap(),
            t["status"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(attempt("first"), (1, "success".into()));
    assert_eq!(attempt("check"), (2, "success".into()));
    assert_eq!(attempt("after"), (1, "success".into()));
    let events = text(&ork_at(&db, dir.path(), &["events", &run_id]));
    assert!(events.contains("retry requested"), "{events}");

    // A successful run is not retried.
    let again = ork_at(&db, dir.path(), &["retry", &run_id]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again).contains("is success: only a failed or cancelled run can be retried"),
        "{}",
        text(&again)
    );

    // A replay: a new run with the same params, `--param`s on top.
    let like = json(&ork_at(
        &db,
        dir.path(),
        &["trigger", "--like", &run_id, "-p", "extra=1", "--json"],
    ));
    assert_ne!(like["id"].as_str(), Some(run_id.as_str()));
    assert_eq!(like["workflow"], "gated");
    assert_eq!(like["trigger"], "replay");
    assert_eq!(
        like["params"],
        serde_json::json!({"day": "2026-11-01", "extra": 1})
    );
}

async fn bulk_cancel_and_retry_of_a_workflows_runs(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let file = workflow(dir.path());
    assert!(ork_at(&db, dir.path(), &["apply", file.to_str().unwrap()])
        .status
        .success());
    let mut runs = Vec::new();
    for _ in 0..3 {
        let t = json(&ork_at(&db, dir.path(), &["trigger", "gated", "--json"]));
        runs.push(t["id"].as_str().unwrap().to_owned());
    }
    // Pending runs are open: all three are cancelled.
    let out = json(&ork_at(
        &db,
        dir.path(),
        &["cancel", "--workflow", "gated", "--json"],
    ));
    assert_eq!(out["matched"], 3);
    let mut cancelled: Vec<String> = serde_json::from_value(out["cancelled"].clone()).unwrap();
    cancelled.sort();
    runs.sort();
    assert_eq!(cancelled, runs);

    // The default status of a bulk retry is failed: none.
    let out = json(&ork_at(
        &db,
        dir.path(),
        &["retry", "--workflow", "gated", "--json"],
    ));
    assert_eq!(
        (
            out["matched"].as_i64(),
            out["retried"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    let out = ork_at(
        &db,
        dir.path(),
        &[
            "retry",
            "--workflow",
            "gated",
            "--status",
            "cancelled",
            "--since",
            "1h",
        ],
    );
    assert!(
        text(&out).contains("3 runs retried (of 3 matching)"),
        "{}",
        text(&out)
    );
    let status = json(&ork_at(&db, dir.path(), &["status", &runs[0], "--json"]));
    assert_eq!(
        status["run"]["status"]
            .as_str()
            .or(status["status"].as_str()),
        Some("running"),
        "{status}"
    );

    // --status running cancels the reopened ones; --since 0s matches none.
    let out = json(&ork_at(
        &db,
        dir.path(),
        &[
            "cancel",
            "--workflow",
            "gated",
            "--status",
            "running",
            "--since",
            "0s",
            "--json",
        ],
    ));
    assert_eq!(out["matched"], 0);
    let out = json(&ork_at(
        &db,
        dir.path(),
        &[
            "cancel",
            "--workflow",
            "gated",
            "--status",
            "running",
            "--json",
        ],
    ));
    assert_eq!(out["cancelled"].as_array().map(Vec::len), Some(3));
    // A status the command does not act on is refused.
    let out = ork_at(
        &db,
        dir.path(),
        &["cancel", "--workflow", "gated", "--status", "failed"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("only cancel runs that are pending or running"),
        "{}",
        text(&out)
    );
}

on_both_backends!(
    retry_and_replay_from_the_command_line,
    bulk_cancel_and_retry_of_a_workflows_runs,
);
