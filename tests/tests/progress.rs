//! `ork run`'s progress at scale: a run of over 50 task instances prints
//! counts, not a line per transition (unless `--verbose`); failures are
//! printed as they happen with their log; on a terminal it is a live bar.

use ork_tests::bin::{ork, ork_on, text};
use std::path::{Path, PathBuf};
use std::process::Output;

/// 60 instances of `work` that each sleep 0.3 s; instance 7 fails.
const WIDE: &str = "name: wide
tasks:
  start: {executor: noop}
  work:
    depends_on: [start]
    task_count: 60
    command: [sh, -c, 'sleep 0.3; echo \"instance $ORK_TASK_INDEX\"; test $ORK_TASK_INDEX != 7']
";

fn workflow(dir: &Path) -> PathBuf {
    let file = dir.join("wide.yaml");
    std::fs::write(&file, WIDE).unwrap();
    file
}

fn run(dir: &Path, extra: &[&str]) -> Output {
    let file = workflow(dir);
    ork_on(dir)
        .current_dir(dir)
        .env("ORK_LOG_DIR", dir.join("logs"))
        .env("ORK_PROGRESS_INTERVAL", "100ms")
        .arg("run")
        .arg(&file)
        .args(extra)
        .output()
        .expect("run ork")
}

#[test]
fn a_large_run_prints_counts_and_its_failures_not_every_transition() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &[]);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    // No line per instance…
    assert!(!printed.contains("work[3] succeeded"), "{printed}");
    assert!(!printed.contains("work[3] started"), "{printed}");
    // …but the failure as it happened, with its log's last lines.
    assert!(printed.contains("✗ work[7] failed"), "{printed}");
    assert!(printed.contains("| instance 7"), "{printed}");
    // Lines of counts while it ran (every 100 ms over ≥ 0.3 s), the last one complete.
    let counts: Vec<&str> = printed.lines().filter(|l| l.contains(" done: ")).collect();
    assert!(counts.len() >= 2, "{printed}");
    assert!(
        counts
            .last()
            .unwrap()
            .contains("61/61 done: 60 succeeded, 1 failed"),
        "{printed}"
    );
    // The closing summary: a row per task, not per instance.
    assert!(
        printed
            .lines()
            .any(|l| l.starts_with("work ") && l.contains("1 failed, 59 success")),
        "{printed}"
    );
    assert!(
        !printed.lines().any(|l| l.starts_with("work[3]")),
        "{printed}"
    );
    assert!(
        printed.contains("work[7] failed (attempt 1/1)"),
        "{printed}"
    );
    assert!(printed.contains("(60 success, 1 failed)"), "{printed}");
}

#[test]
fn verbose_keeps_a_line_per_transition() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["--verbose"]);
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    for i in [0, 3, 59] {
        assert!(
            printed.contains(&format!("work[{i}] succeeded")),
            "{printed}"
        );
        assert!(printed.contains(&format!("work[{i}] started")), "{printed}");
    }
    assert!(!printed.contains(" done: "), "{printed}");
}

#[test]
fn on_a_terminal_a_large_run_draws_a_bar() {
    let dir = tempfile::tempdir().unwrap();
    let file = workflow(dir.path());
    // `script` gives ork a pseudo-terminal and copies what it drew.
    let command = format!(
        "ORK_DATABASE_URL=sqlite:{db} ORK_LOG_DIR={logs} {ork} run {file}",
        db = dir.path().join("ork.db").display(),
        logs = dir.path().join("logs").display(),
        ork = ork().display(),
        file = file.display(),
    );
    let out = std::process::Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .env_remove("DATABASE_URL")
        .output()
        .expect("script");
    let printed = text(&out);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    // The bar's counts, redrawn in place, and the failure above it.
    assert!(printed.contains("/61"), "{printed}");
    assert!(printed.contains("running"), "{printed}");
    assert!(
        printed.contains("\u{1b}["),
        "no terminal control sequences: {printed}"
    );
    assert!(printed.contains("✗ work[7] failed"), "{printed}");
    assert!(!printed.contains("work[3] succeeded"), "{printed}");
}
