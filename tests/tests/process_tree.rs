//! Killed tasks take their whole process tree with them: cancel, timeout,
//! Ctrl-C of `ork run`, and `ork worker` told to stop (410, SIGTERM, its
//! deadline) leave no descendant of the task running.
//!
//! Every task here is `sh -c 'sleep 300 & echo $! > child.pid; …; sleep 300'`
//! in a temporary directory: the grandchild's pid is in `child.pid`, the
//! shell's in `sh.pid`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ork_core::executor::{Callback, Completion, Dispatch, DispatchRequest, Executor};
use ork_core::model::AttemptRef;
use ork_core::spec::TaskSpec;
use ork_executors::ProcessExecutor;
use tokio::sync::mpsc;
use uuid::Uuid;

/// The task: a background grandchild, then a long foreground sleep.
const TREE: &str = "sleep 300 & echo $! > child.pid; echo $$ > sh.pid; sleep 300";
/// Like [`TREE`], but every process of it ignores SIGTERM.
const STUBBORN: &str = "trap '' TERM; sleep 300 & echo $! > child.pid; echo $$ > sh.pid; sleep 300";

/// How long the tests wait for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(4);

/// Whether `pid` is running: it exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S …": the state follows the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

/// The pids the task wrote, once it wrote them both.
fn task_pids(dir: &Path) -> Vec<u32> {
    let start = Instant::now();
    loop {
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
        };
        if let (Some(sh), Some(child)) = (read("sh.pid"), read("child.pid")) {
            let mut pids = vec![sh, child];
            assert!(pids.iter().all(|p| alive(*p)), "the task is not running");
            // The foreground sleep too, unless the shell exec'd it.
            let shown = Instant::now();
            while shown.elapsed() < Duration::from_millis(500) {
                let kids = children(sh);
                if kids.len() >= 2 {
                    pids.extend(kids.into_iter().filter(|k| *k != child));
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            return pids;
        }
        assert!(start.elapsed() < PATIENCE, "the task never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The running children of `parent`, from /proc.
fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let (_, rest) = stat.rsplit_once(')')?;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .filter(|pid| alive(*pid))
        .collect()
}

/// Waits until none of `pids` runs; fails naming the survivors.
fn assert_all_gone(pids: &[u32], within: Duration) {
    let start = Instant::now();
    loop {
        let survivors: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if survivors.is_empty() {
            return;
        }
        if start.elapsed() > within {
            // Leave nothing behind for the next test run.
            for p in &survivors {
                let _ = Command::new("kill")
                    .args(["-KILL", &p.to_string()])
                    .status();
            }
            panic!("processes left behind: {survivors:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

// --- the process executor, in this process -------------------------------

fn request(dir: &Path, script: &str, timeout: Option<Duration>) -> DispatchRequest {
    DispatchRequest {
        batch: 1,
        attempt: AttemptRef {
            run_id: Uuid::now_v7(),
            workflow: "tree".into(),
            version: 1,
            task_id: Uuid::now_v7(),
            name: "tree".into(),
            task_index: 0,
            attempt: 1,
        },
        task_count: 1,
        spec: TaskSpec {
            command: Some("sh".into()),
            args: vec!["-c".into(), script.into()],
            ..TaskSpec::default()
        },
        base_dir: Some(dir.to_path_buf()),
        input: serde_json::json!({}),
        input_file: None,
        input_url: None,
        output_url: None,
        item: None,
        timeout,
        callback: None,
    }
}

async fn started(executor: &ProcessExecutor, req: &DispatchRequest) -> String {
    match executor.dispatch(req).await.unwrap() {
        Dispatch::Started { execution_id } => execution_id,
        Dispatch::Finished(o) => panic!("finished at once: {o:?}"),
    }
}

async fn completion(rx: &mut mpsc::UnboundedReceiver<Completion>) -> Completion {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("no completion")
        .expect("channel open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_kills_the_whole_process_tree() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let executor = ProcessExecutor::new(dir.path().join("logs"), tx);
    let req = request(dir.path(), TREE, None);
    let id = started(&executor, &req).await;
    let pids = task_pids(dir.path());
    executor.cancel(&req.attempt, &id).await.unwrap();
    let done = completion(&mut rx).await;
    assert_eq!(done.outcome.error.as_deref(), Some("cancelled"));
    assert_all_gone(&pids, PATIENCE);
}

/// The members of a batch are spawned on blocking threads (their vforks
/// overlap): each still starts, and a cancel still takes each whole tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_spawned_off_thread_is_killed_tree_by_tree() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let executor = ProcessExecutor::new(dir.path().join("logs"), tx);
    let requests: Vec<DispatchRequest> = (0..3)
        .map(|i| {
            let base = dir.path().join(format!("member{i}"));
            std::fs::create_dir(&base).unwrap();
            DispatchRequest {
                batch: 3,
                ..request(&base, TREE, None)
            }
        })
        .collect();
    let ids = futures::future::join_all(requests.iter().map(|r| started(&executor, r))).await;
    let pids: Vec<u32> = requests
        .iter()
        .flat_map(|r| task_pids(r.base_dir.as_deref().unwrap()))
        .collect();
    for (req, id) in requests.iter().zip(&ids) {
        executor.cancel(&req.attempt, id).await.unwrap();
    }
    for _ in &requests {
        let done = completion(&mut rx).await;
        assert_eq!(done.outcome.error.as_deref(), Some("cancelled"));
    }
    assert_all_gone(&pids, PATIENCE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_kills_the_whole_process_tree() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let executor = ProcessExecutor::new(dir.path().join("logs"), tx);
    let req = request(dir.path(), TREE, Some(Duration::from_secs(1)));
    started(&executor, &req).await;
    let pids = task_pids(dir.path());
    let done = completion(&mut rx).await;
    assert!(
        done.outcome.error.as_deref().unwrap().contains("timed out"),
        "{:?}",
        done.outcome
    );
    assert_all_gone(&pids, PATIENCE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_that_ignore_sigterm_are_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let executor = ProcessExecutor::new(dir.path().join("logs"), tx)
        .with_kill_grace(Duration::from_millis(300));
    let req = request(dir.path(), STUBBORN, None);
    let id = started(&executor, &req).await;
    let pids = task_pids(dir.path());
    let asked = Instant::now();
    executor.cancel(&req.attempt, &id).await.unwrap();
    completion(&mut rx).await;
    assert_all_gone(&pids, PATIENCE);
    assert!(
        asked.elapsed() >= Duration::from_millis(300),
        "no grace period"
    );
}

// --- `ork run`, `ork cancel` ---------------------------------------------

fn workflow(dir: &Path, script: &str) -> PathBuf {
    let file = dir.join("tree.yaml");
    let spec = serde_json::json!({
        "name": "tree",
        "tasks": { "tree": { "command": "sh", "args": ["-c", script] } },
    });
    // JSON is YAML.
    std::fs::write(&file, spec.to_string()).unwrap();
    file
}

fn ork(dir: &Path) -> Command {
    let mut c = ork_tests::bin::ork_on(dir);
    c.current_dir(dir)
        .env("ORK_LOG_DIR", dir.join("logs"))
        .env("ORK_KILL_GRACE", "2s");
    c
}

/// Starts `ork run` on the tree workflow; returns it, its run id and the task's pids.
fn ork_run(dir: &Path) -> (std::process::Child, String, Vec<u32>) {
    let file = workflow(dir, TREE);
    let mut child = ork(dir)
        .arg("run")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    // "run <id> of tree v1 (1 tasks)"
    let run_id = first.split_whitespace().nth(1).expect(&first).to_owned();
    let pids = task_pids(dir);
    (child, run_id, pids)
}

fn wait_with_deadline(child: &mut std::process::Child) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("ork did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_status(dir: &Path, run_id: &str) -> String {
    let out = ork(dir)
        .args(["status", run_id, "--json"])
        .output()
        .unwrap();
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    run["status"].as_str().unwrap().to_owned()
}

#[test]
fn ork_cancel_stops_the_tasks_of_an_ork_run_in_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let (mut run, run_id, pids) = ork_run(dir.path());
    let out = ork(dir.path()).args(["cancel", &run_id]).output().unwrap();
    assert!(out.status.success());
    let status = wait_with_deadline(&mut run);
    assert_eq!(status.code(), Some(1));
    assert_all_gone(&pids, PATIENCE);
    assert_eq!(run_status(dir.path(), &run_id), "cancelled");
}

#[test]
fn ctrl_c_of_ork_run_stops_its_tasks_and_cancels_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let (mut run, run_id, pids) = ork_run(dir.path());
    signal(run.id(), "INT");
    let status = wait_with_deadline(&mut run);
    assert_all_gone(&pids, PATIENCE);
    assert_eq!(status.code(), Some(130));
    let mut printed = String::new();
    std::io::Read::read_to_string(run.stdout.as_mut().unwrap(), &mut printed).unwrap();
    assert!(printed.contains("cancelled"), "{printed}");
    assert_eq!(run_status(dir.path(), &run_id), "cancelled");
}

#[test]
fn sigterm_of_ork_run_stops_its_tasks_too() {
    let dir = tempfile::tempdir().unwrap();
    let (mut run, run_id, pids) = ork_run(dir.path());
    signal(run.id(), "TERM");
    let status = wait_with_deadline(&mut run);
    assert_all_gone(&pids, PATIENCE);
    assert_ne!(status.code(), Some(0));
    assert_eq!(run_status(dir.path(), &run_id), "cancelled");
}

// --- `ork worker` --------------------------------------------------------

/// A callback endpoint: `/heartbeat` answers `heartbeat`, `/complete`
/// records the reports.
async fn callback_server(
    heartbeat: axum::http::StatusCode,
) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    use axum::routing::post;
    let reports = Arc::new(Mutex::new(Vec::new()));
    let recorded = reports.clone();
    let app = axum::Router::new()
        .route("/heartbeat", post(move || async move { heartbeat }))
        .route(
            "/complete",
            post(
                move |axum::Json(v): axum::Json<serde_json::Value>| async move {
                    recorded.lock().unwrap().push(v);
                    axum::Json(serde_json::json!({ "result": "recorded" }))
                },
            ),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/complete"), reports)
}

fn worker(dir: &Path, url: &str, script: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(ork_tests::bin::ork());
    c.current_dir(dir)
        .args(["worker", "--", "sh", "-c", script])
        .env("ORK_CALLBACK_URL", url)
        .env("ORK_CALLBACK_TOKEN", "t")
        .env("ORK_HEARTBEAT_SECS", "1")
        .env("ORK_KILL_GRACE", "2s")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

async fn worker_exit(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("ork worker did not exit")
        .unwrap()
}

async fn pids_of(dir: &Path) -> Vec<u32> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || task_pids(&dir))
        .await
        .unwrap()
}

fn the_report(reports: &Mutex<Vec<serde_json::Value>>) -> serde_json::Value {
    let reports = reports.lock().unwrap();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["status"], "failed", "{reports:?}");
    reports[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ork_worker_kills_the_tree_when_the_heartbeat_answers_410() {
    let dir = tempfile::tempdir().unwrap();
    let (url, reports) = callback_server(axum::http::StatusCode::GONE).await;
    let mut child = worker(dir.path(), &url, TREE).spawn().unwrap();
    let pids = pids_of(dir.path()).await;
    worker_exit(&mut child).await;
    assert_all_gone(&pids, PATIENCE);
    the_report(&reports);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ork_worker_kills_the_tree_on_sigterm_and_still_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (url, reports) = callback_server(axum::http::StatusCode::OK).await;
    let mut child = worker(dir.path(), &url, TREE).spawn().unwrap();
    let pids = pids_of(dir.path()).await;
    signal(child.id().unwrap(), "TERM");
    worker_exit(&mut child).await;
    assert_all_gone(&pids, PATIENCE);
    let report = the_report(&reports);
    assert!(
        report["error"].as_str().unwrap().contains("SIGTERM"),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ork_worker_kills_the_tree_when_its_deadline_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (url, reports) = callback_server(axum::http::StatusCode::OK).await;
    let mut child = worker(dir.path(), &url, TREE)
        .env("ORK_TIMEOUT", "1s")
        .spawn()
        .unwrap();
    let pids = pids_of(dir.path()).await;
    worker_exit(&mut child).await;
    assert_all_gone(&pids, PATIENCE);
    let report = the_report(&reports);
    assert!(
        report["error"].as_str().unwrap().contains("timed out"),
        "{report}"
    );
}

/// Under `ork serve`, the process executor starts `ork worker` detached;
/// cancelling the attempt stops the worker, which stops its program.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_detached_worker_kills_its_program_tree() {
    let dir = tempfile::tempdir().unwrap();
    let (url, reports) = callback_server(axum::http::StatusCode::OK).await;
    let (tx, _rx) = mpsc::unbounded_channel();
    let executor = ProcessExecutor::new(dir.path().join("logs"), tx)
        .with_worker_program(ork_tests::bin::ork());
    let mut req = request(dir.path(), TREE, None);
    req.callback = Some(Callback {
        url,
        token: "t".into(),
    });
    let id = started(&executor, &req).await;
    let pids = pids_of(dir.path()).await;
    executor.cancel(&req.attempt, &id).await.unwrap();
    let start = Instant::now();
    while reports.lock().unwrap().is_empty() {
        assert!(start.elapsed() < PATIENCE, "the worker never reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_all_gone(&pids, PATIENCE);
    the_report(&reports);
}
