//! `ork dbt import` against a real dbt (dbt-core with dbt-duckdb, installed
//! by scripts/test.sh in target/dbt-venv, or $ORK_TEST_DBT_VENV): the
//! workflows/dbt_example project imported and run by the real `ork` binary,
//! its DuckDB tables checked; a failing model; selection; re-import.

use ork_tests::bin::{ork_on, repo, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The relationships test of customer_totals.customer to stg_orders.
const REL: &str = "test.relationships_customer_totals_customer__customer__ref_stg_orders_";

fn venv() -> PathBuf {
    let venv = std::env::var_os("ORK_TEST_DBT_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/dbt-venv"));
    assert!(
        venv.join("bin/dbt").exists(),
        "no dbt in {}: scripts/test.sh installs it (python3 -m venv target/dbt-venv && \
         target/dbt-venv/bin/pip install 'dbt-core==1.10.*' 'dbt-duckdb==1.10.*')",
        venv.display()
    );
    venv
}

fn dbt() -> String {
    venv().join("bin/dbt").display().to_string()
}

/// A copy of workflows/dbt_example (without its target/) in `dir`.
fn project(dir: &Path) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let name = e.file_name();
            if name == "target" || name == "logs" {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                copy(&e.path(), &to.join(&name));
            } else {
                std::fs::copy(e.path(), to.join(&name)).unwrap();
            }
        }
    }
    let to = dir.join("dbt_example");
    copy(&repo().join("workflows/dbt_example"), &to);
    to
}

fn ork(dir: &Path, args: &[&str]) -> Output {
    ork_on(dir)
        .args(args)
        .current_dir(dir)
        .env("ORK_LOG_DIR", dir.join("logs"))
        .output()
        .expect("run ork")
}

/// `ork dbt import PROJECT --dbt VENV/dbt --lock target/dbt.lock EXTRA...`.
fn import(dir: &Path, project: &Path, extra: &[&str]) -> Output {
    let dbt = dbt();
    let project = project.display().to_string();
    let mut args = vec![
        "dbt",
        "import",
        &project,
        "--dbt",
        &dbt,
        "--lock",
        "target/dbt.lock",
    ];
    args.extend(extra);
    ork(dir, &args)
}

fn workflow(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let spec = ork_core::spec::parse_str(&text, Some(path)).expect("a valid workflow");
    serde_json::to_value(spec).unwrap()
}

/// Rows of a query on the project's DuckDB file, with the venv's python.
fn duckdb(project: &Path, sql: &str) -> Value {
    let db = project.join("target/dbt_example.duckdb");
    let script = format!(
        "import duckdb, json, sys\n\
         rows = duckdb.connect({db:?}, read_only=True).execute(sys.argv[1]).fetchall()\n\
         print(json.dumps([[float(v) if not isinstance(v, (str, int)) else v for v in r] for r in rows]))",
        db = db.display().to_string()
    );
    let out = Command::new(venv().join("bin/python"))
        .args(["-c", &script, sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn run_tasks(dir: &Path, printed: &str) -> Vec<Value> {
    let run_id = printed
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id in {printed}"))
        .to_owned();
    let out = ork(dir, &["tasks", &run_id, "--json"]);
    serde_json::from_slice::<Value>(&out.stdout)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn status_of(tasks: &[Value], name: &str) -> String {
    tasks
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name}"))["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn the_example_imports_and_runs_to_success() {
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path());
    let file = dir.path().join("dbt_example.yaml");
    let out = import(dir.path(), &project, &["-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let wf = workflow(&file);
    let tasks = wf["tasks"].as_object().unwrap();
    let names: Vec<&str> = tasks.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "customer_totals",
            "order_stats",
            "paid_orders",
            "raw_orders",
            "stg_orders",
            REL,
        ]
    );
    // A test on two models is a task of its own, after both.
    assert_eq!(
        tasks[REL]["depends_on"],
        serde_json::json!(["customer_totals", "stg_orders"])
    );
    assert_eq!(tasks[REL]["args"][2], "test");
    assert_eq!(wf["name"], "dbt-example");
    assert_eq!(
        tasks["stg_orders"]["depends_on"],
        serde_json::json!(["raw_orders"])
    );
    assert_eq!(
        tasks["customer_totals"]["depends_on"],
        serde_json::json!(["paid_orders"])
    );
    let args = tasks["stg_orders"]["args"].as_array().unwrap();
    assert_eq!(args[2], "build");
    assert_eq!(args[4], "stg_orders");

    let out = ork(dir.path(), &["run", file.to_str().unwrap()]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    for t in run_tasks(dir.path(), &printed) {
        assert_eq!(t["status"], "success", "{t}");
    }
    assert_eq!(
        duckdb(
            &project,
            "select customer, orders, total from customer_totals order by customer"
        ),
        serde_json::json!([["ada", 1, 120.5], ["grace", 2, 95.75], ["linus", 1, 200.0]])
    );
    assert_eq!(
        duckdb(&project, "select orders, revenue from order_stats"),
        serde_json::json!([[4, 416.25]])
    );
}

#[test]
fn a_failing_model_skips_its_dependants() {
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path());
    std::fs::write(
        project.join("models/paid_orders.sql"),
        "select no_such_column from {{ ref('stg_orders') }}\n",
    )
    .unwrap();
    let file = dir.path().join("dbt_example.yaml");
    let out = import(dir.path(), &project, &["-o", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = ork(dir.path(), &["run", file.to_str().unwrap()]);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    let tasks = run_tasks(dir.path(), &printed);
    assert_eq!(status_of(&tasks, "raw_orders"), "success");
    assert_eq!(status_of(&tasks, "stg_orders"), "success");
    assert_eq!(status_of(&tasks, "paid_orders"), "failed");
    assert_eq!(status_of(&tasks, "customer_totals"), "skipped");
    assert_eq!(status_of(&tasks, "order_stats"), "skipped");
    assert_eq!(status_of(&tasks, REL), "skipped");

    // With the model fixed, `ork retry` runs only the failed model and the
    // models it skipped; the two that succeeded keep their one attempt.
    std::fs::copy(
        repo().join("workflows/dbt_example/models/paid_orders.sql"),
        project.join("models/paid_orders.sql"),
    )
    .unwrap();
    let run_id = tasks[0]["run_id"].as_str().unwrap().to_owned();
    let out = ork(dir.path(), &["retry", &run_id, "--wait"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = ork(dir.path(), &["tasks", &run_id, "--json"]);
    let tasks: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    for t in &tasks {
        assert_eq!(t["status"], "success", "{t}");
    }
    let attempt = |name: &str| {
        tasks.iter().find(|t| t["name"] == name).unwrap()["attempt"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(attempt("raw_orders"), 1);
    assert_eq!(attempt("stg_orders"), 1);
    assert!(attempt("paid_orders") > 1);
    assert_eq!(
        duckdb(&project, "select count(*) from customer_totals"),
        serde_json::json!([[3]])
    );
}

#[test]
fn selection_modes_overlays_and_reimport() {
    let dir = tempfile::tempdir().unwrap();
    let project = project(dir.path());

    // dbt's selection syntax, through dbt ls; paid_orders depends on the
    // seed through the excluded stg_orders.
    let file = dir.path().join("sel.yaml");
    let out = import(
        dir.path(),
        &project,
        &[
            "--select",
            "+order_stats",
            "--exclude",
            "stg_orders",
            "-o",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let wf = workflow(&file);
    let tasks = wf["tasks"].as_object().unwrap();
    assert_eq!(
        tasks.keys().collect::<Vec<_>>(),
        ["order_stats", "paid_orders", "raw_orders"]
    );
    assert_eq!(
        tasks["paid_orders"]["depends_on"],
        serde_json::json!(["raw_orders"])
    );

    // `--mode run`: dbt run/seed per node and a dbt test task per test,
    // after its model; an overlay puts every task on Fargate.
    let overlay = dir.path().join("overlay.yaml");
    std::fs::write(
        &overlay,
        "defaults:\n  executor: fargate\n  fargate: {cluster: dbt, task_definition: dbt:1, container: dbt, subnets: [subnet-1]}\n  env: {DBT_THREADS: '4'}\ntasks:\n  customer_totals: {timeout: 10m}\n",
    )
    .unwrap();
    let file = dir.path().join("run.yaml");
    let out = import(
        dir.path(),
        &project,
        &[
            "--mode",
            "run",
            "--overlay",
            overlay.to_str().unwrap(),
            "--task-project-dir",
            "/app",
            "--name",
            "dbt-on-fargate",
            "-o",
            file.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let wf = workflow(&file);
    let tasks = wf["tasks"].as_object().unwrap();
    // args: the lock file, dbt, then dbt's arguments.
    assert_eq!(tasks["raw_orders"]["args"][2], "seed");
    assert_eq!(tasks["stg_orders"]["args"][2], "run");
    let test = &tasks["test.unique_stg_orders_id"];
    assert_eq!(test["depends_on"], serde_json::json!(["stg_orders"]));
    assert_eq!(test["args"][2], "test");
    for t in tasks.values() {
        assert_eq!(t["executor"], "fargate");
        assert_eq!(t["fargate"]["cluster"], "dbt");
        assert_eq!(t["env"]["DBT_PROJECT_DIR"], "/app");
        assert_eq!(t["env"]["DBT_PROFILES_DIR"], "/app");
        assert_eq!(t["env"]["DBT_THREADS"], "4");
    }
    assert!(!tasks["customer_totals"]["timeout"].is_null());
    assert!(tasks["order_stats"]["timeout"].is_null());
    // Valid as it is: a dry run dispatches every task (to the mock executor).
    let out = ork(dir.path(), &["run", "--dry-run", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));

    // --apply: stored once, unchanged when imported again, a new version
    // when the project changed.
    let applied = |what: &str| {
        let out = import(dir.path(), &project, &["--apply"]);
        let printed = text(&out);
        assert!(out.status.success(), "{printed}");
        assert!(printed.contains(what), "{printed}");
    };
    applied("dbt-example stored as version 1");
    applied("dbt-example unchanged at version 1");
    std::fs::write(
        project.join("models/big_customers.sql"),
        "select * from {{ ref('customer_totals') }} where total > 100\n",
    )
    .unwrap();
    applied("dbt-example stored as version 2");
}
