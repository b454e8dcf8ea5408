//! The `ork` binary end to end: real processes, a real SQLite file.

use ork_tests::bin::{ork_on, repo, text};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `ork` with its database and logs in `dir`.
fn ork(dir: &Path, args: &[&str]) -> Output {
    ork_on(dir)
        .args(args)
        .current_dir(repo())
        .env("ORK_LOG_DIR", "target/test-logs")
        .output()
        .expect("run ork")
}

/// Writes a workflow file `name` in `dir`; returns its path.
fn workflow(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(&file, yaml).expect("write the workflow");
    file
}

#[test]
fn the_etl_example_runs_to_success_with_real_processes() {
    let dir = tempfile::tempdir().unwrap();
    let out = ork(dir.path(), &["run", "workflows/etl.yaml"]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("SUCCESS"), "{printed}");
    for task in [
        "extract",
        "transform[0]",
        "transform[3]",
        "validate",
        "load",
        "report",
    ] {
        assert!(
            printed.contains(&format!("{task} succeeded")),
            "no success line for {task}:\n{printed}"
        );
    }
    // The load's output (the shards' totals) reached `report` as input.
    let run_id = printed.split_whitespace().nth(1).unwrap().to_owned();
    let log = ork(dir.path(), &["logs", &run_id, "report"]);
    assert!(text(&log).contains(r#""total":5050"#), "{}", text(&log));

    let json = ork(dir.path(), &["tasks", &run_id, "--json"]);
    let tasks: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(tasks.as_array().unwrap().len(), 8);
}

#[test]
fn the_failing_variant_retries_skips_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let out = ork(dir.path(), &["run", "workflows/etl-failing.yaml"]);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains("load attempt 1 failed: exited with code 3; will retry"),
        "{printed}"
    );
    assert!(printed.contains("load failed"), "{printed}");
    assert!(
        printed.contains("report skipped: upstream task load failed"),
        "{printed}"
    );
    assert!(printed.contains("FAILED"), "{printed}");
    let run_id = printed.split_whitespace().nth(1).unwrap().to_owned();
    let log = ork(dir.path(), &["logs", &run_id, "load"]);
    assert!(text(&log).contains("the warehouse refused the connection"));
    // The failure shows what the task printed last, and where the rest is.
    assert!(
        printed.contains("| the warehouse refused the connection"),
        "the failed attempt's log tail is shown:\n{printed}"
    );
    assert!(
        printed.contains(&format!("full log: ork logs {run_id} load")),
        "{printed}"
    );
    assert!(printed.contains("(8 tasks)"), "{printed}");
}

#[test]
fn one_task_is_singular_and_missing_logs_say_where_they_were_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let file = workflow(
        dir.path(),
        "one.yaml",
        "name: one\ntasks:\n  only: {command: 'true'}\n",
    );
    let out = ork(dir.path(), &["run", file.to_str().unwrap()]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("(1 task)"), "{printed}");
    let run_id = printed.split_whitespace().nth(1).unwrap().to_owned();
    let elsewhere = ork_on(dir.path())
        .args(["logs", &run_id, "only"])
        .current_dir(dir.path())
        .env_remove("ORK_LOG_DIR")
        .output()
        .unwrap();
    assert_eq!(elsewhere.status.code(), Some(1), "{}", text(&elsewhere));
    let said = text(&elsewhere);
    assert!(said.contains("looked for"), "{said}");
    assert!(
        said.contains(&dir.path().join(".ork").join("logs").display().to_string()),
        "{said}"
    );
}

/// A task whose program cannot start still has its (empty) log where
/// `ork logs` looks: the failure is this machine's, not a missing log.
#[test]
fn a_task_that_cannot_start_has_a_log_all_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let file = workflow(
        dir.path(),
        "missing.yaml",
        "name: missing\ntasks:\n  only: {command: ork-test-no-such-program}\n",
    );
    let out = ork(dir.path(), &["run", file.to_str().unwrap()]);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(printed.contains("cannot start"), "{printed}");
    let run_id = printed.split_whitespace().nth(1).unwrap().to_owned();
    let log = ork(dir.path(), &["logs", &run_id, "only"]);
    assert!(log.status.success(), "{}", text(&log));
}

#[test]
fn a_listing_into_a_closed_pipe_ends_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let out = ork(dir.path(), &["run", "workflows/etl.yaml"]);
    let run_id = text(&out).split_whitespace().nth(1).unwrap().to_owned();
    let db = format!("sqlite:{}", dir.path().join("ork.db").display());
    for _ in 0..5 {
        let piped = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "\"$ORK\" events {run_id} | head -c 0; \"$ORK\" events {run_id} | head -n 1"
            ))
            .env("ORK", ork_tests::bin::ork())
            .env("ORK_DATABASE_URL", &db)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&piped.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("Broken pipe"), "{stderr}");
    }
}

#[test]
fn a_run_whose_reader_goes_away_still_runs_to_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("ork.db").display());
    // `head -n 1` exits after the first line; every line `ork run` prints
    // after it goes to a closed pipe.
    let piped = Command::new("bash")
        .arg("-c")
        .arg("\"$ORK\" run workflows/etl.yaml | head -n 1; echo \"ork exited ${PIPESTATUS[0]}\"")
        .env("ORK", ork_tests::bin::ork())
        .env("ORK_DATABASE_URL", &db)
        .env("ORK_LOG_DIR", dir.path().join("logs"))
        .current_dir(repo())
        .output()
        .unwrap();
    let stdout = text(&piped);
    let stderr = String::from_utf8_lossy(&piped.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stdout.contains("ork exited 0"), "{stdout}\n{stderr}");
    let run_id = stdout.split_whitespace().nth(1).unwrap();
    let status = ork(dir.path(), &["--json", "status", run_id]);
    let run: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(run["status"], "success", "{run}");
}

#[test]
fn apply_reports_an_invalid_file_with_its_line_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = workflow(
        dir.path(),
        "cycle.yaml",
        "name: c\ntasks:\n  a: {command: 'true', depends_on: [b]}\n  b: {command: 'true', depends_on: [a]}\n",
    );
    let out = ork(dir.path(), &["apply", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let printed = text(&out);
    assert!(printed.contains("cycle.yaml:"), "{printed}");
    assert!(
        printed.contains("cycle: a -> b -> a") || printed.contains("cycle: b -> a -> b"),
        "{printed}"
    );
    let list = ork(dir.path(), &["list-workflows", "--json"]);
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "[]");
}

#[test]
fn trigger_status_and_cancel_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = ork(
        dir.path(),
        &[
            "create-workflow",
            "--name",
            "one-job",
            "--job-name",
            "true",
            "--project",
            "p",
            "--task-count",
            "3",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let listed = text(&ork(dir.path(), &["list-workflows"]));
    assert!(listed.contains("one-job"), "{listed}");
    let run_id = String::from_utf8(ork(dir.path(), &["trigger", "one-job"]).stdout)
        .unwrap()
        .trim()
        .to_owned();
    let status = text(&ork(dir.path(), &["status", "--workflow", "one-job"]));
    assert!(
        status.contains(&run_id) && status.contains("pending"),
        "{status}"
    );
    // The list's cost column: "-" while open, then the figure stored when
    // the run ended, the one `ork status RUN` computes.
    let row = |listed: &str| {
        listed
            .lines()
            .find(|l| l.contains(&run_id))
            .unwrap()
            .to_owned()
    };
    assert!(
        status.lines().next().unwrap().trim_end().ends_with("COST"),
        "{status}"
    );
    assert!(row(&status).trim_end().ends_with(" -"), "{status}");
    assert!(text(&ork(dir.path(), &["cancel", &run_id])).contains("cancelled"));
    let one = text(&ork(dir.path(), &["status", &run_id]));
    let usd = one
        .split("cost: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let listed = text(&ork(dir.path(), &["status", "--workflow", "one-job"]));
    assert!(
        row(&listed).trim_end().ends_with(&format!(" {usd}")),
        "{listed}\n{one}"
    );
    let tasks = text(&ork(dir.path(), &["tasks", &run_id]));
    assert_eq!(tasks.matches("cancelled").count(), 3, "{tasks}");
    let waited = ork(dir.path(), &["trigger", "one-job", "--wait"]);
    assert!(waited.status.success(), "{}", text(&waited));
}

/// A task whose instances do not exist yet (a `foreach` child, a deferred
/// fan-out) is listed by `ork status` and `ork tasks` all the same.
#[test]
fn tasks_with_no_instance_yet_are_listed_as_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let wide = workflow(
        dir.path(),
        "wide.yaml",
        "name: wide\ntasks:\n  start: {command: [sh, -c, 'true']}\n  \
         work: {command: [sh, -c, 'true'], depends_on: [start], task_count: 150}\n",
    );
    for file in ["workflows/foreach.yaml", wide.to_str().unwrap()] {
        assert!(ork(dir.path(), &["apply", file]).status.success());
    }
    let trigger = |name: &str| {
        let out = ork(dir.path(), &["trigger", name]);
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let foreach = trigger("foreach-demo");
    for command in ["tasks", "status"] {
        let listed = text(&ork(dir.path(), &[command, &foreach]));
        let greet = listed.lines().find(|l| l.starts_with("greet "));
        assert!(
            greet.is_some_and(|l| l.contains("waiting")
                && l.contains(" process ")
                && l.contains("one instance per item, made when its parent succeeds")),
            "{command}: {listed}"
        );
    }
    let wide = trigger("wide");
    let listed = text(&ork(dir.path(), &["tasks", &wide]));
    let work = listed.lines().find(|l| l.starts_with("work "));
    assert!(
        work.is_some_and(|l| l.contains("waiting")
            && l.contains(" process ")
            && l.contains("150 instances made when its parents end")),
        "{listed}"
    );
    // Once made, the instances are listed instead.
    let out = ork(dir.path(), &["run", "--resume", &wide]);
    assert!(out.status.success(), "{}", text(&out));
    let listed = text(&ork(dir.path(), &["tasks", &wide]));
    assert!(!listed.contains("waiting"), "{listed}");
    assert!(listed.contains("work[149]"), "{listed}");
}

#[test]
fn dry_run_records_what_cloud_tasks_would_run_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let out = ork(dir.path(), &["run", "--dry-run", "workflows/cloud.yaml"]);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    let run_id = printed.split_whitespace().nth(1).unwrap().to_owned();
    let json = ork(dir.path(), &["tasks", &run_id, "--json"]);
    let tasks: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let train = tasks
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "train")
        .unwrap();
    assert_eq!(train["output"]["dry_run"], true);
    assert_eq!(train["output"]["cloudrun"]["job"], "trainer");
    let scores = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["name"] == "score")
        .count();
    assert_eq!(scores, 4);
}

#[test]
fn create_workflow_makes_the_seeds_cloud_run_job_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let made = ork(
        dir.path(),
        &[
            "create-workflow",
            "--name",
            "nightly",
            "--job-name",
            "etl-job",
            "--project",
            "my-proj",
            "--executor",
            "cloudrun",
            "--task-count",
            "5",
        ],
    );
    assert!(made.status.success(), "{}", text(&made));
    let listed: serde_json::Value =
        serde_json::from_slice(&ork(dir.path(), &["list-workflows", "--json"]).stdout).unwrap();
    let task = &listed[0]["spec"]["tasks"]["etl-job"];
    assert_eq!(
        task["cloudrun"],
        serde_json::json!({"job": "etl-job", "project": "my-proj", "region": "us-central1"})
    );
    assert_eq!(task["task_count"], 5);
    let missing = ork(
        dir.path(),
        &[
            "create-workflow",
            "--name",
            "x",
            "--job-name",
            "j",
            "--executor",
            "cloudrun",
        ],
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing).contains("--executor cloudrun needs --project"));
}

#[test]
fn a_bad_workflow_file_is_refused_before_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let bad = workflow(
        dir.path(),
        "bad.yaml",
        "name: bad\ntasks:\n  a: {command: [\"true\"]}\n  b:\n    command: [\"true\"]\n    depends_on: [nope]\n",
    );
    for command in ["run", "apply"] {
        let out = ork(dir.path(), &[command, bad.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{command}: {}", text(&out));
        assert!(
            text(&out).contains(r#"bad.yaml:6: task "b" depends on unknown task "nope""#),
            "{command}: {}",
            text(&out)
        );
        assert!(
            !dir.path().join("ork.db").exists(),
            "{command} made a database for a workflow it refused"
        );
    }
}

#[test]
fn create_workflow_validates_like_apply_and_stores_nothing_invalid() {
    let dir = tempfile::tempdir().unwrap();
    for bad in [
        &["--job-name", "no spaces allowed"][..],
        &["--job-name", "j", "--task-count", "0"][..],
        &["--job-name", "", "--executor", "noop"][..],
    ] {
        let mut args = vec!["create-workflow", "--name", "bad"];
        args.extend_from_slice(bad);
        let out = ork(dir.path(), &args);
        assert!(!out.status.success(), "accepted {bad:?}: {}", text(&out));
    }
    let listed: serde_json::Value =
        serde_json::from_slice(&ork(dir.path(), &["list-workflows", "--json"]).stdout).unwrap();
    assert_eq!(
        listed,
        serde_json::json!([]),
        "an invalid workflow was stored"
    );
}

/// A workflow whose first attempt of `first` hangs (the one a killed `ork
/// run` leaves behind) and whose retry succeeds.
const INTERRUPTED: &str = r#"
name: interrupted
tasks:
  first:
    command: sh
    args: [-c, 'if [ "$ORK_ATTEMPT" = 1 ]; then sleep 20; fi']
    retries: {count: 1, backoff: 1ms}
  after:
    command: sh
    args: [-c, 'true']
    depends_on: [first]
"#;

/// Starts `ork run` on [`INTERRUPTED`], kills it with -9 while `first`
/// runs, and returns the run id. Leases last `heartbeat_timeout` (the
/// default when `None`).
fn run_and_kill(dir: &Path, heartbeat_timeout: Option<&str>) -> String {
    use std::io::{BufRead, BufReader};
    let file = workflow(dir, "interrupted.yaml", INTERRUPTED);
    let mut command = ork_on(dir);
    command
        .args(["run", file.to_str().unwrap()])
        .current_dir(repo())
        .env("ORK_LOG_DIR", "target/test-logs")
        .stdout(std::process::Stdio::piped());
    if let Some(timeout) = heartbeat_timeout {
        command.env("ORK_HEARTBEAT_TIMEOUT", timeout);
    }
    let mut child = command.spawn().unwrap();
    let mut first = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    stdout.read_line(&mut first).unwrap();
    // "run <id> of interrupted v1 (2 tasks)"
    let run_id = first.split_whitespace().nth(1).unwrap().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(stdout);
    let status = text(&ork(dir, &["status", &run_id, "--json"]));
    assert!(status.contains("\"running\""), "{status}");
    run_id
}

/// `ork run --resume RUN` to its end, with `env` set.
fn resume(dir: &Path, run_id: &str, env: (&str, &str)) -> Output {
    ork_on(dir)
        .args(["run", "--resume", run_id])
        .current_dir(repo())
        .env("ORK_LOG_DIR", "target/test-logs")
        .env(env.0, env.1)
        .output()
        .unwrap()
}

#[test]
fn a_run_killed_with_9_is_resumed_by_ork_run_resume() {
    let dir = tempfile::tempdir().unwrap();
    let run_id = run_and_kill(dir.path(), Some("1s"));
    let out = resume(dir.path(), &run_id, ("ORK_HEARTBEAT_TIMEOUT", "1s"));
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(0), "{printed}");
    // The child is on this machine: found lost before its lease (1s, run
    // out by now) is looked at. `tests/tests/sweeper.rs` covers a resumed
    // run's expired leases.
    let events = text(&ork(dir.path(), &["events", &run_id]));
    assert!(
        events.contains("lost: the ork process that started it died"),
        "{events}"
    );
    let status = text(&ork(dir.path(), &["status", &run_id, "--json"]));
    assert!(status.contains("\"success\""), "{status}");
}

/// With the default leases (5 min), `--resume` does not wait for them:
/// the dead `ork run`'s child on this machine is stopped (it would sleep
/// 20 s) and its attempt failed at once, and the retry succeeds.
#[test]
fn ork_run_resume_stops_what_the_dead_run_left_running_without_waiting_for_its_lease() {
    let dir = tempfile::tempdir().unwrap();
    let run_id = run_and_kill(dir.path(), None);
    let pid = first_pid(dir.path(), &run_id);
    assert!(runs(pid), "the killed run's child {pid} should still run");

    let started = std::time::Instant::now();
    let out = resume(dir.path(), &run_id, ("ORK_KILL_GRACE", "2s"));
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(0), "{printed}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "resumed in {:?}: waited for the lease? {printed}",
        started.elapsed()
    );
    assert!(!runs(pid), "the dead run's child {pid} still runs");
    let events = text(&ork(dir.path(), &["events", &run_id]));
    assert!(
        events
            .contains("lost: the ork process that started it died; its process group was stopped"),
        "{events}"
    );
    let status = text(&ork(dir.path(), &["status", &run_id, "--json"]));
    assert!(status.contains("\"success\""), "{status}");
}

/// The pid of the process of task `first` of `run_id`, from its execution
/// id ("pid:N;watcher=…;space=…").
fn first_pid(dir: &Path, run_id: &str) -> i32 {
    let tasks: serde_json::Value =
        serde_json::from_slice(&ork(dir, &["tasks", run_id, "--json"]).stdout).unwrap();
    let first = tasks
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "first"))
        .unwrap_or_else(|| panic!("no task `first` in {tasks}"));
    let execution = first["execution_id"].as_str().unwrap_or_default();
    execution
        .strip_prefix("pid:")
        .and_then(|p| p.split(';').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("execution id {execution:?}"))
}

/// Whether `pid` runs (a zombie does not: it waits for init to reap it).
fn runs(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let (_, rest) = s.rsplit_once(')')?;
            rest.split_whitespace()
                .next()
                .map(|state| state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// The sweeper of `ork serve` on the same database finishes a killed `ork
/// run`: with the default leases (5 min), it does not wait for them
/// either. It stops the dead run's child on this machine (it would sleep
/// 20 s), fails its attempt, and the retry succeeds.
/// (`tests/tests/sweeper.rs` covers leases that run out.)
#[test]
fn a_run_killed_with_9_is_finished_by_the_sweeper_of_ork_serve() {
    let dir = tempfile::tempdir().unwrap();
    let run_id = run_and_kill(dir.path(), None);
    let pid = first_pid(dir.path(), &run_id);
    assert!(runs(pid), "the killed run's child {pid} should still run");
    let mut serve = ork_on(dir.path())
        .args(["serve", "--addr", "127.0.0.1:0", "--tick", "300ms"])
        .current_dir(repo())
        .env("ORK_LOG_DIR", "target/test-logs")
        .env("ORK_KILL_GRACE", "2s")
        .env("ORK_SIGNING_KEY", "a-test-signing-key-of-32-bytes-or-more")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        let status = text(&ork(dir.path(), &["status", &run_id, "--json"]));
        if status.contains("\"success\"") || started.elapsed().as_secs() > 30 {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    let took = started.elapsed();
    serve.kill().unwrap();
    serve.wait().unwrap();
    assert!(status.contains("\"success\""), "{status}");
    assert!(
        took < std::time::Duration::from_secs(15),
        "finished in {took:?}: waited for the lease?"
    );
    assert!(!runs(pid), "the dead run's child {pid} still runs");
    let events = text(&ork(dir.path(), &["events", &run_id]));
    assert!(
        events
            .contains("lost: the ork process that started it died; its process group was stopped"),
        "{events}"
    );
}

#[test]
fn backfill_pause_delete_version_and_cost_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    assert!(ork(dir.path(), &["apply", "workflows/nightly.yaml"])
        .status
        .success());
    let out = ork(
        dir.path(),
        &[
            "backfill",
            "nightly",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-03",
            "--max-parallel",
            "2",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let b: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(b["slots"].as_array().unwrap().len(), 3, "{b}");
    assert_eq!(
        (
            b["started"].as_array().unwrap().len(),
            b["waiting"].as_i64()
        ),
        (2, Some(1))
    );
    let again = text(&ork(
        dir.path(),
        &[
            "backfill",
            "nightly",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-02",
        ],
    ));
    assert!(again.contains("0 started, 2 already ran"), "{again}");
    let bad = ork(
        dir.path(),
        &[
            "backfill",
            "nightly",
            "--from",
            "Nov 1",
            "--to",
            "2026-11-02",
        ],
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("--from: \"Nov 1\" is neither a day"),
        "{}",
        text(&bad)
    );

    assert!(text(&ork(dir.path(), &["pause", "nightly"])).contains("paused"));
    let listed = text(&ork(dir.path(), &["list-workflows"]));
    assert!(listed.contains("paused"), "{listed}");
    assert!(text(&ork(dir.path(), &["unpause", "nightly"])).contains("unpaused"));
    assert!(text(&ork(dir.path(), &["list-workflows"])).contains("active"));

    let refused = ork(dir.path(), &["delete-version", "nightly", "1"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused).contains("is the latest"),
        "{}",
        text(&refused)
    );

    let run_id = b["started"][0].as_str().unwrap();
    let status = text(&ork(dir.path(), &["status", run_id]));
    assert!(
        status.contains("cost: $") && status.contains("invocations"),
        "{status}"
    );
    let json = ork(dir.path(), &["status", run_id, "--json"]);
    let run: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(run["trigger"], "backfill");
    assert_eq!(
        run["cost"]["invocations"], 1,
        "pending: only its trigger so far"
    );
    let tasks: serde_json::Value =
        serde_json::from_slice(&ork(dir.path(), &["tasks", run_id, "--json"]).stdout).unwrap();
    assert_eq!(tasks[0]["cost_usd"], 0.0, "{tasks}");
}

/// `ork gc`: a finished run and its stored output go, a bad duration is
/// refused naming it; `ork serve` with `ORK_RETENTION` deletes on its own.
#[test]
fn gc_from_the_command_line_and_the_retention_of_ork_serve() {
    let dir = tempfile::tempdir().unwrap();
    let payloads = dir.path().join("payloads");
    let gc = |args: &[&str]| {
        ork_on(dir.path())
            .arg("gc")
            .args(args)
            .current_dir(repo())
            .env("ORK_LOG_DIR", "target/test-logs")
            .env("ORK_PAYLOAD_DIR", &payloads)
            .output()
            .unwrap()
    };
    let run_big = || {
        let out = ork_on(dir.path())
            .args(["run", "workflows/big_output.yaml"])
            .current_dir(repo())
            .env("ORK_LOG_DIR", "target/test-logs")
            .env("ORK_PAYLOAD_DIR", &payloads)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let list = text(&ork(dir.path(), &["status", "--json", "--limit", "1"]));
        let list: serde_json::Value = serde_json::from_str(&list).unwrap();
        list[0]["id"].as_str().unwrap().to_owned()
    };
    let gone = |run: &str| {
        let out = ork(dir.path(), &["status", run]);
        !out.status.success() && !payloads.join("outputs").join(run).exists()
    };

    let run = run_big();
    assert!(payloads.join("outputs").join(&run).exists());
    let kept = gc(&["--older-than", "1h", "--json"]);
    assert!(kept.status.success(), "{}", text(&kept));
    let kept: serde_json::Value = serde_json::from_slice(&kept.stdout).unwrap();
    assert_eq!(kept["runs"], 0, "{kept}");
    let bad = gc(&["--older-than", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad).contains("invalid duration \"soon\""),
        "{}",
        text(&bad)
    );
    let done = gc(&["--older-than", "0s", "--json"]);
    assert!(done.status.success(), "{}", text(&done));
    let done: serde_json::Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(
        (done["runs"].as_u64(), done["objects"].as_u64()),
        (Some(1), Some(1)),
        "{done}"
    );
    assert!(gone(&run));

    let run = run_big();
    let mut serve = ork_on(dir.path())
        .args(["serve", "--addr", "127.0.0.1:0"])
        .current_dir(repo())
        .env("ORK_LOG_DIR", "target/test-logs")
        .env("ORK_PAYLOAD_DIR", &payloads)
        .env("ORK_RETENTION", "1s")
        .env("ORK_SIGNING_KEY", "a-test-signing-key-of-32-bytes-or-more")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !gone(&run) && started.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    serve.kill().unwrap();
    serve.wait().unwrap();
    assert!(
        gone(&run),
        "ork serve with ORK_RETENTION=1s deleted the run"
    );
}

/// The CPUs a process may run on, from `/proc/PID/status`.
fn cpus_allowed(status: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .trim()
        .to_owned()
}

/// A process's scheduling policy (field 41 of `/proc/PID/stat`: 0 is
/// `SCHED_OTHER`, 3 `SCHED_BATCH`).
fn policy(stat: &str) -> String {
    let (_, rest) = stat.rsplit_once(')').expect("(comm)");
    rest.split_whitespace()
        .nth(38)
        .expect("field 41")
        .to_owned()
}

#[test]
fn ork_run_keeps_itself_on_one_cpu_and_gives_its_tasks_every_cpu() {
    let ours = cpus_allowed(&std::fs::read_to_string("/proc/self/status").unwrap());
    let our_policy = policy(&std::fs::read_to_string("/proc/self/stat").unwrap());
    let dir = tempfile::tempdir().unwrap();
    // The task's parent is `ork run` itself. It lifts its pin while it
    // starts a task (`affinity::unpinned`) and pins itself again once the
    // child has exec'd: on a loaded machine, the task can look before
    // that. So a pinned `ork` is read once it is back on one CPU (or
    // after 5 s, when it never is).
    workflow(
        dir.path(),
        "wf.yaml",
        "name: cpus\ntasks:\n  show:\n    command: [sh, -c, '[ \"$ORK_PIN_CPU\" = false ] || for i in $(seq 500); do grep -q \"^Cpus_allowed_list:.*[-,]\" /proc/$PPID/status || break; sleep 0.01; done; cat /proc/$PPID/status > ork.status; cat /proc/$PPID/stat > ork.stat; cat /proc/self/status > task.status; cat /proc/self/stat > task.stat']\n",
    );
    let run = |pin: &str| {
        let out = ork_on(dir.path())
            .current_dir(dir.path())
            .env("ORK_LOG_DIR", dir.path().join("logs"))
            .env("ORK_PIN_CPU", pin)
            .args(["run", "wf.yaml"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
        (
            (cpus_allowed(&read("ork.status")), policy(&read("ork.stat"))),
            (
                cpus_allowed(&read("task.status")),
                policy(&read("task.stat")),
            ),
        )
    };
    let ((ork, ork_policy), task) = run("true");
    assert_eq!(
        task,
        (ours.clone(), our_policy.clone()),
        "the task has every CPU ork was given, and its scheduling policy"
    );
    if ours.contains(['-', ',']) {
        assert!(
            !ork.contains(['-', ',']),
            "ork run is on one CPU, not {ork}"
        );
        if our_policy == "0" {
            assert_eq!(ork_policy, "3", "ork run is under SCHED_BATCH");
        }
    }
    let (ork, task) = run("false");
    let unchanged = (ours, our_policy);
    assert_eq!((&ork, &task), (&unchanged, &unchanged));
}
