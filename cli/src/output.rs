//! What `ork` prints: tables for people, JSON for scripts (a run's live
//! progress is `progress.rs`).

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use ork_core::cost::RunCost;
use ork_core::engine::Backfill;
use ork_core::model::{AttemptRef, Event, Run, Task, TaskStatus};
use ork_core::store::reads::{TaskGroupRow, WaitingGroup, WorkflowSummary};
use ork_executors::ProcessExecutor;
use uuid::Uuid;

/// `1 task`, `2 tasks`.
pub fn plural(n: i64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

pub fn json<T: serde::Serialize>(value: &T) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializable")
    );
}

/// Prints rows under headers, each column as wide as its widest cell, in
/// one write (stdout writes a line at a time: a write per row would cost a
/// system call each).
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    use std::fmt::Write as _;
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let mut line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(text, "{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row);
    }
    out!("{text}");
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn span(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> String {
    match (from, to) {
        (Some(a), Some(b)) => format!("{:.2}s", (b - a).num_milliseconds() as f64 / 1000.0),
        _ => "-".into(),
    }
}

pub fn workflows(list: &[WorkflowSummary]) {
    let rows = list
        .iter()
        .map(|w| {
            let tasks = w
                .spec
                .get("tasks")
                .and_then(|t| t.as_object())
                .map_or(0, |t| t.len());
            let description = w
                .spec
                .get("description")
                .and_then(|d| d.as_str())
                .unwrap_or("");
            vec![
                w.name.clone(),
                w.latest_version.to_string(),
                if w.paused { "paused" } else { "active" }.into(),
                tasks.to_string(),
                time(w.updated_at),
                description.to_owned(),
            ]
        })
        .collect();
    table(
        &[
            "workflow",
            "version",
            "state",
            "tasks",
            "updated",
            "description",
        ],
        rows,
    );
}

pub fn runs(list: &[Run]) {
    let rows = list
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                format!("{} v{}", r.workflow, r.version),
                r.status.to_string(),
                format!("{}/{}", r.tasks_total - r.tasks_open, r.tasks_total),
                time(r.created_at),
                span(Some(r.created_at), r.finished_at),
                r.cost_usd.map_or("-".into(), usd),
            ]
        })
        .collect();
    // The cost is the one stored when the run ended: no read per listed run.
    table(
        &[
            "run", "workflow", "status", "done", "created", "took", "cost",
        ],
        rows,
    );
}

/// A run's task instances, with each one's cost when given (`cost.tasks`
/// in the same order as `list`), then its tasks with no instance yet
/// (`waiting`).
pub fn tasks(list: &[Task], waiting: &[WaitingGroup], cost: Option<&RunCost>) {
    let mut rows: Vec<Vec<String>> = list
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let usd = cost
                .and_then(|c| c.tasks.get(i))
                .map_or("-".into(), |c| usd(c.usd));
            vec![
                t.label(),
                t.status.to_string(),
                format!("{}/{}", t.attempt, t.max_attempts),
                t.executor.clone(),
                span(t.started_at.or(t.dispatched_at), t.finished_at),
                usd,
                t.exit_code.map_or("-".into(), |c| c.to_string()),
                t.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    rows.extend(waiting.iter().map(|g| {
        let made = match g.task_count {
            Some(n) => format!("{} made when its parents end", plural(n, "instance")),
            None => "one instance per item, made when its parent succeeds".to_owned(),
        };
        let dash = || "-".to_owned();
        vec![
            g.name.clone(),
            "waiting".to_owned(),
            dash(),
            g.executor.clone().unwrap_or_else(dash),
            dash(),
            dash(),
            dash(),
            made,
        ]
    }));
    table(
        &[
            "task", "status", "attempt", "executor", "took", "cost", "exit", "error",
        ],
        rows,
    );
}

/// A run's cost in one line.
pub fn cost(c: &RunCost) {
    outln!(
        "cost: {} ({} compute + {} control plane, {} invocations)",
        usd(c.total_usd),
        usd(c.compute_usd),
        usd(c.control_plane_usd),
        c.invocations
    );
}

/// Dollars with enough digits for sub-cent attempts.
fn usd(v: f64) -> String {
    format!("${v:.6}")
}

pub fn backfill(b: &Backfill) {
    outln!(
        "backfill {} of {}: {} slots, {} started, {} already ran, {} waiting",
        b.id,
        b.workflow,
        b.slots.len(),
        b.started.len(),
        b.existing,
        b.waiting
    );
    for run in &b.started {
        outln!("{run}");
    }
}

pub fn gc(c: &ork_core::engine::Collected) {
    outln!(
        "deleted {} finished runs, {} stored payload objects",
        c.runs,
        c.objects
    );
    for e in &c.errors {
        eprintln!("left over: {e}");
    }
}

pub fn events(list: &[Event], tasks: &[Task]) {
    let labels: HashMap<Uuid, String> = tasks.iter().map(|t| (t.id, t.label())).collect();
    let rows = list
        .iter()
        .map(|e| {
            vec![
                e.at.format("%H:%M:%S%.3f").to_string(),
                e.task_id
                    .and_then(|id| labels.get(&id).cloned())
                    .unwrap_or_else(|| "(run)".into()),
                e.attempt.map_or("-".into(), |a| a.to_string()),
                e.status.clone(),
                e.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(&["at", "task", "attempt", "status", "detail"], rows);
}

/// How many lines of a failed attempt's log `ork run` shows.
const LOG_TAIL_LINES: usize = 5;

/// The last lines of an attempt's local log (stdout and stderr), if it has one.
pub fn log_tail(log_dir: &Path, run: &Run, task: &Task, attempt: i64) -> Vec<String> {
    let a = AttemptRef {
        attempt,
        ..task.attempt_ref(&run.workflow, run.version)
    };
    let Ok(text) = std::fs::read_to_string(ProcessExecutor::log_path(log_dir, &a)) else {
        return Vec::new();
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..]
        .iter()
        .map(|l| format!("    | {l}"))
        .collect()
}

/// The closing lines of `ork run`: the tasks, what each failure printed
/// last, and the counts.
pub fn summary(run: &Run, list: &[Task], log_dir: &Path) {
    outln!();
    tasks(list, &[], None);
    failures(
        run,
        list.iter().filter(|t| t.status == TaskStatus::Failed),
        log_dir,
    );
    let counts: Vec<(TaskStatus, i64)> = TaskStatus::ALL
        .iter()
        .map(|s| (*s, list.iter().filter(|t| t.status == *s).count() as i64))
        .collect();
    closing_line(run, &counts);
}

/// The closing lines of a large `ork run`: a row per task (its instances
/// counted per status), the first failures, and the counts.
pub fn group_summary(
    run: &Run,
    groups: &[TaskGroupRow],
    failed: &[Task],
    failed_total: i64,
    log_dir: &Path,
) {
    outln!();
    let mut names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    names.dedup();
    let rows = names
        .iter()
        .map(|name| {
            let mine: Vec<&TaskGroupRow> = groups.iter().filter(|g| g.name == *name).collect();
            let instances: i64 = mine.iter().map(|g| g.n).sum();
            let statuses: Vec<String> = mine
                .iter()
                .map(|g| format!("{} {}", g.n, g.status))
                .collect();
            let started = mine
                .iter()
                .filter_map(|g| g.started_at.or(g.dispatched_at))
                .min();
            let finished = mine.iter().filter_map(|g| g.finished_at).max();
            vec![
                (*name).to_owned(),
                instances.to_string(),
                statuses.join(", "),
                mine.first().map_or(String::new(), |g| g.executor.clone()),
                span(started, finished),
            ]
        })
        .collect();
    table(&["task", "instances", "status", "executor", "took"], rows);
    failures(run, failed.iter(), log_dir);
    if failed_total > failed.len() as i64 {
        outln!(
            "\n… and {} more failed: ork tasks {}",
            failed_total - failed.len() as i64,
            run.id
        );
    }
    let counts: Vec<(TaskStatus, i64)> = TaskStatus::ALL
        .iter()
        .map(|s| {
            let n = groups
                .iter()
                .filter(|g| g.status == s.to_string())
                .map(|g| g.n)
                .sum();
            (*s, n)
        })
        .collect();
    closing_line(run, &counts);
}

/// Each failed instance's error and the last lines of its log.
fn failures<'a>(run: &Run, failed: impl Iterator<Item = &'a Task>, log_dir: &Path) {
    for t in failed {
        outln!(
            "\n{} failed (attempt {}/{}): {}",
            t.label(),
            t.attempt,
            t.max_attempts,
            t.error.as_deref().unwrap_or("no error recorded")
        );
        for line in log_tail(log_dir, run, t, t.attempt) {
            outln!("{line}");
        }
        outln!("    full log: ork logs {} {}", run.id, t.label());
    }
}

/// `run … SUCCESS in 1.2s (10000 success)`.
fn closing_line(run: &Run, counts: &[(TaskStatus, i64)]) {
    let mut counts: Vec<(TaskStatus, i64)> =
        counts.iter().copied().filter(|(_, n)| *n > 0).collect();
    counts.sort_by_key(|(s, _)| *s as u8);
    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    outln!(
        "\nrun {} {} in {} ({})",
        run.id,
        run.status.to_string().to_uppercase(),
        span(Some(run.created_at), run.finished_at),
        counts.join(", ")
    );
}
