//! `cargo bench -p ork-tests --bench cli`: `ork run` as a user runs it,
//! the release binary as a process, from exec to exit (apply, trigger and
//! the run, on a fresh database; its output to a file). Prints:
//!
//! - fan-out: start → `task_count: N` noop → join, tasks/s and peak RSS, on
//!   SQLite and PostgreSQL (N = 10,000, three runs and their median; and a
//!   100,000-instance run: the largest a workflow may have);
//! - the floor: a 40-task noop chain (median wall, peak RSS), 40 sequential
//!   `sh -c 'echo hi'` tasks and a 202-task process fan-out, each beside the
//!   same processes spawned by bash in the same run, bash and `ork` taking
//!   turns; the process floors twice, the run's directory on disk (in a
//!   directory whose subdirectories ext4 spreads, see `spread_dir`) and on
//!   tmpfs (`/dev/shm`, where there is one);
//! - printing at 10,000 tasks: the default progress (a line of counts every
//!   5 s off a terminal) and `--verbose` (a line per transition) beside
//!   `--json` (no progress; every task as JSON at the end).
//!
//! Every process measured, `ork` and bash alike, runs without the
//! `LD_LIBRARY_PATH` cargo sets for a bench (twenty-odd directories the
//! loader would search at every exec, as no user's shell does).
//!
//! `ORK_BENCH_ONLY=sqlite|postgres` runs one backend's fan-out;
//! `ORK_BENCH_BIG` sets the large fan-out's width (0 skips it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ork_tests::db as common;

/// The release `ork`, next to this bench's executable.
fn ork() -> PathBuf {
    ork_tests::bin::ork()
}

/// What one process took: wall time and peak RSS.
struct Measured {
    wall: Duration,
    rss_mib: f64,
}

/// Runs `command` to its end, its stdout to `out` (stderr beside it), and
/// measures it, through the `measure` helper: spawned from this process,
/// the child's peak RSS would be this bench's own whenever that is the
/// larger (see `src/bin/measure.rs`).
fn measure(command: &mut Command, out: &Path) -> Measured {
    let file = std::fs::File::create(out).expect("output file");
    let err_path = out.with_extension("err");
    let err = std::fs::File::create(&err_path).expect("stderr file");
    let report = out.with_extension("measured");
    let mut helper = Command::new(env!("CARGO_BIN_EXE_measure"));
    helper
        .arg(&report)
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => helper.env(key, value),
            None => helper.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        helper.current_dir(dir);
    }
    let ok = helper
        .stdout(file)
        .stderr(err)
        .status()
        .expect("spawn measure")
        .success();
    let measured = std::fs::read_to_string(&report).unwrap_or_default();
    let fields: Vec<i64> = measured
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let status = fields.get(2).copied().unwrap_or(-1) as i32;
    if !ok || fields.len() != 3 || !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        let printed = std::fs::read_to_string(out).unwrap_or_default();
        let tail: Vec<&str> = printed.lines().rev().take(20).collect();
        panic!(
            "{command:?} failed ({measured:?}): {stderr}\n{}",
            tail.join("\n")
        );
    }
    Measured {
        wall: Duration::from_nanos(fields[0] as u64),
        rss_mib: fields[1] as f64 / 1024.0,
    }
}

/// `ork run FILE` on `database` (a fresh SQLite file in `dir` when None).
fn ork_run(dir: &Path, file: &Path, database: Option<&str>, extra: &[&str]) -> Command {
    let mut c = Command::new(ork());
    let url = database.map_or_else(
        || format!("sqlite:{}", dir.join("ork.db").display()),
        str::to_owned,
    );
    c.current_dir(dir)
        .env("ORK_DATABASE_URL", url)
        .env_remove("DATABASE_URL")
        .env_remove("LD_LIBRARY_PATH")
        .env("ORK_LOG_DIR", dir.join("logs"))
        .arg("run")
        .arg(file)
        .args(extra);
    c
}

fn write(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, yaml).expect("write workflow");
    path
}

fn fan_out_yaml(n: usize) -> String {
    format!(
        "name: fanout\ntasks:\n  start: {{executor: noop}}\n  \
         work: {{executor: noop, depends_on: [start], task_count: {n}}}\n  \
         join: {{executor: noop, depends_on: [work]}}\n"
    )
}

fn chain_yaml(n: usize, task: &str) -> String {
    let mut y = String::from("name: chain\ntasks:\n");
    for i in 0..n {
        let deps = if i == 0 {
            String::new()
        } else {
            format!(", depends_on: [t{}]", i - 1)
        };
        y.push_str(&format!("  t{i}: {{{task}{deps}}}\n"));
    }
    y
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A fresh directory (and a fresh PostgreSQL database, when `pg`) per run.
async fn fan_out(label: &str, n: usize, pg: bool, extra: &[&str]) -> Measured {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = write(dir.path(), "fanout.yaml", &fan_out_yaml(n));
    let db = if pg {
        Some(common::postgres().await)
    } else {
        None
    };
    let m = measure(
        &mut ork_run(
            dir.path(),
            &file,
            db.as_ref().map(|d| d.url.as_str()),
            extra,
        ),
        &dir.path().join("out.txt"),
    );
    let tasks = n + 2;
    println!(
        "{label:<34} {tasks:>7} tasks  {:>7.3} s  {:>8.0} tasks/s  peak RSS {:>6.1} MiB",
        m.wall.as_secs_f64(),
        tasks as f64 / m.wall.as_secs_f64(),
        m.rss_mib
    );
    m
}

/// How many times the 10,000-task fan-outs run: medians of 3.
const FAN_OUT_ROUNDS: usize = 3;

/// [`fan_out`] [`FAN_OUT_ROUNDS`] times, then the median's throughput. One
/// run is not a measure here: the machine drifts by tens of percent
/// within a minute, and the bench's first `ork` (the first after the
/// builds) was often its slowest (16,651 tasks/s, then 24,892 and 22,497).
async fn fan_out_rounds(label: &str, n: usize, pg: bool) {
    let mut walls = Vec::new();
    for _ in 0..FAN_OUT_ROUNDS {
        walls.push(fan_out(label, n, pg, &[]).await.wall);
    }
    let wall = median(walls);
    println!(
        "{:<34} {:>7} tasks  {:>7.3} s  {:>8.0} tasks/s  (median of {FAN_OUT_ROUNDS})",
        format!("  {label}"),
        n + 2,
        wall.as_secs_f64(),
        (n + 2) as f64 / wall.as_secs_f64()
    );
}

/// How many times each floor is measured: medians of 21 (of 9, two benches
/// minutes apart put the chain of `sh` at 1.47 and 1.54 × its floor).
const FLOOR_RUNS: usize = 21;

/// How many times each printing mode runs: medians of 3.
const PRINTING_ROUNDS: usize = 3;

/// bash spawning `sh -c 'echo hi'` `n` times in sequence, or at once.
fn bash_once(n: usize, parallel: bool) -> Duration {
    let script = if parallel {
        format!("for i in $(seq {n}); do sh -c 'echo hi' >/dev/null & done; wait")
    } else {
        format!("for i in $(seq {n}); do sh -c 'echo hi' >/dev/null; done")
    };
    let started = Instant::now();
    let ok = Command::new("bash")
        .args(["-c", &script])
        .env_remove("LD_LIBRARY_PATH")
        .status()
        .expect("bash")
        .success();
    assert!(ok);
    started.elapsed()
}

/// `ork run` of `yaml` on a fresh SQLite file, in a directory left in
/// `kept` until the floors are done.
///
/// Why not removed at once: ext4 without a journal (this machine's root
/// filesystem) keeps the inodes deleted in the last minute (six, while
/// their inode table block is dirty) from new files, scanning past each
/// (`recently_deleted` in the kernel's `ialloc.c`). Every
/// run removed made the next runs' log files and database slower to
/// create: a 202-task fan-out measured 1.40 × its bash floor with each
/// directory removed after its run, 1.12 × with all removed at the end,
/// and 1.11 × with the logs on tmpfs, in the same minutes. No user's run
/// follows the removal of 200 files a second before.
fn ork_once(yaml: &str, base: &Path, kept: &mut Vec<tempfile::TempDir>) -> Measured {
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let file = write(dir.path(), "wf.yaml", yaml);
    let measured = measure(
        &mut ork_run(dir.path(), &file, None, &[]),
        &dir.path().join("out.txt"),
    );
    kept.push(dir);
    measured
}

/// A directory whose subdirectories the filesystem spreads over its block
/// groups (`FS_TOPDIR_FL`, what `chattr +T` sets; ext4 honours it), for the
/// floors on disk.
///
/// Why: on ext4 without a journal, what a run's files cost to create
/// depends on how many files were deleted in the last minutes in their
/// directory's block group (see `ork_once`), whoever deleted them: this
/// bench's earlier sections, an earlier bench, a build. A directory made
/// in `/tmp` shares `/tmp`'s group. After 2,500 files had been deleted in
/// `/tmp`, the 202-task fan-out measured 1.60 × its bash floor in a
/// directory of `/tmp` and 1.12 × in one of this directory, in the same
/// minutes. Where the flag cannot be set, the directory is an ordinary one.
fn spread_dir(parent: &Path) -> tempfile::TempDir {
    use std::os::fd::AsRawFd;
    /// `FS_TOPDIR_FL` of `linux/fs.h`.
    const TOP_OF_HIERARCHY: libc::c_int = 0x0002_0000;
    let dir = tempfile::tempdir_in(parent).expect("tempdir");
    if let Ok(handle) = std::fs::File::open(dir.path()) {
        let mut flags: libc::c_int = 0;
        // SAFETY: both ioctls read or write one int at the pointer given,
        // on a descriptor this function holds open.
        unsafe {
            if libc::ioctl(handle.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) == 0 {
                flags |= TOP_OF_HIERARCHY;
                libc::ioctl(handle.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags);
            }
        }
    }
    dir
}

/// A floor: `ork run` of `yaml` (median wall, largest peak RSS), and with
/// `bash`, the median of the same processes spawned by bash, each bash
/// run right before an `ork` run, so that both see the same machine (it
/// drifts by tens of percent within a minute here).
fn floor_runs(
    yaml: &str,
    bash: Option<(usize, bool)>,
    base: &Path,
    kept: &mut Vec<tempfile::TempDir>,
) -> (Duration, f64, Option<Duration>) {
    let (mut walls, mut bash_walls) = (Vec::new(), Vec::new());
    let mut rss: f64 = 0.0;
    for _ in 0..FLOOR_RUNS {
        if let Some((n, parallel)) = bash {
            bash_walls.push(bash_once(n, parallel));
        }
        let m = ork_once(yaml, base, kept);
        walls.push(m.wall);
        rss = rss.max(m.rss_mib);
    }
    let bash = bash.map(|_| median(bash_walls));
    (median(walls), rss, bash)
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` only builds it.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let only = std::env::var("ORK_BENCH_ONLY").unwrap_or_default();
    let big: usize = std::env::var("ORK_BENCH_BIG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(99_998);
    println!("ork run, release binary, exec to exit (apply + trigger + run, fresh database)");
    if only.is_empty() || only == "sqlite" {
        fan_out_rounds("fan-out 10,000 sqlite", 10_000, false).await;
        if big > 0 {
            fan_out(&format!("fan-out {big} sqlite"), big, false, &[]).await;
        }
    }
    if only.is_empty() || only == "postgres" {
        fan_out_rounds("fan-out 10,000 postgres", 10_000, true).await;
        if big > 0 {
            fan_out(&format!("fan-out {big} postgres"), big, true, &[]).await;
        }
    }

    println!(
        "\nprinting at 10,000 tasks (sqlite), beside --json (no progress, all tasks as JSON at the end); \
         the modes take turns, {PRINTING_ROUNDS} rounds"
    );
    let modes: [(&str, &[&str]); 3] = [
        ("  --json (printed at the end)", &["--json"]),
        ("  default (counts off a terminal)", &[]),
        ("  --verbose (a line per transition)", &["--verbose"]),
    ];
    let mut walls: Vec<Vec<Duration>> = vec![Vec::new(); modes.len()];
    for _ in 0..PRINTING_ROUNDS {
        for ((label, extra), walls) in modes.iter().zip(&mut walls) {
            walls.push(fan_out(label, 10_000, false, extra).await.wall);
        }
    }
    let medians: Vec<Duration> = walls.into_iter().map(median).collect();
    for (label, m) in [("default", medians[1]), ("--verbose", medians[2])] {
        println!(
            "  {label}: {:+.1} % wall beside --json (medians)",
            (m.as_secs_f64() / medians[0].as_secs_f64() - 1.0) * 100.0
        );
    }

    println!(
        "\nthe floor (median of {FLOOR_RUNS}, fresh SQLite file each; bash and ork take turns)"
    );
    let spread = spread_dir(&std::env::temp_dir());
    let disk = spread.path();
    // The floors' directories, removed at the end (see `ork_once`).
    let mut kept = Vec::new();
    let (chain, rss, _) = floor_runs(&chain_yaml(40, "executor: noop"), None, disk, &mut kept);
    println!(
        "chain of 40 noop tasks               {:>7.1} ms  peak RSS {rss:>5.1} MiB",
        chain.as_secs_f64() * 1000.0
    );
    process_floors(disk, &mut kept);
    // The same in memory: the filesystem's state (see `ork_once`), and
    // the fsyncs, out of the picture.
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        println!(
            "the same with the run's directory on tmpfs ({})",
            shm.display()
        );
        process_floors(shm, &mut kept);
    }
}

/// 40 sequential `sh -c 'echo hi'` tasks and a 202-task fan-out of them,
/// each beside bash, run in directories under `base`.
fn process_floors(base: &Path, kept: &mut Vec<tempfile::TempDir>) {
    let sh = "command: [sh, -c, 'echo hi']";
    let (seq, rss, floor) = floor_runs(&chain_yaml(40, sh), Some((40, false)), base, kept);
    let floor = floor.expect("bash floor");
    println!(
        "chain of 40 `sh -c 'echo hi'`        {:>7.1} ms  peak RSS {rss:>5.1} MiB  bash loop {:>6.1} ms  ratio {:.2}",
        seq.as_secs_f64() * 1000.0,
        floor.as_secs_f64() * 1000.0,
        seq.as_secs_f64() / floor.as_secs_f64()
    );
    let fan = format!(
        "name: fan\ntasks:\n  start: {{{sh}}}\n  work: {{{sh}, depends_on: [start], task_count: 200}}\n  \
         join: {{{sh}, depends_on: [work]}}\n"
    );
    let (par, rss, floor) = floor_runs(&fan, Some((202, true)), base, kept);
    let floor = floor.expect("bash floor");
    println!(
        "fan-out of 202 `sh -c 'echo hi'`     {:>7.1} ms  peak RSS {rss:>5.1} MiB  bash &   {:>6.1} ms  ratio {:.2}",
        par.as_secs_f64() * 1000.0,
        floor.as_secs_f64() * 1000.0,
        par.as_secs_f64() / floor.as_secs_f64()
    );
}
