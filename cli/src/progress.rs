//! The live progress of `ork run`, read from the run's event log: what is
//! printed is what was recorded.
//!
//! The log is followed by a cursor (the last event id seen), so each event
//! is read once however long the run; the closing counts are read from the
//! instances' rows (`Follow::recount`: on PostgreSQL, events can commit
//! out of id order, behind the cursor). How it is shown depends on the run's
//! size and where the output goes:
//!
//! - **lines**: one line per task transition, for runs of at most
//!   [`LINES_UP_TO`] task instances, or with `--verbose`;
//! - **bar**: on a terminal, a live bar with counts per status and the
//!   tasks running, failures printed above it as they happen;
//! - **summary**: off a terminal, a line of counts every
//!   `ORK_PROGRESS_INTERVAL` (default 5 s), failures printed as they happen.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ork_core::engine::RETRY_REQUESTED;
use ork_core::model::{Event, Run};
use ork_core::store::Store;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::output::log_tail;

/// Runs with more task instances than this get a bar or summary lines
/// rather than a line per transition.
pub const LINES_UP_TO: i64 = 50;

/// How often the event log is read.
const POLL: Duration = Duration::from_millis(100);

/// Events read per query.
const PAGE: i64 = 10_000;

/// Prints a run's progress while it executes.
pub struct Progress {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

impl Progress {
    /// Follows `run`; failures show the last lines of their log in
    /// `log_dir`.
    pub fn start(store: Store, run: Run, log_dir: PathBuf, options: Options) -> Progress {
        let (stop, mut stopped) = oneshot::channel();
        let handle = tokio::spawn(async move {
            let mut follow = Follow::new(store, run, log_dir, options);
            // The first read waits a period too: at the start, it would
            // find next to nothing, and compete with the run's first claim
            // for this process's CPU.
            loop {
                // Woken at once by the stop: the run's end is not held up.
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = tokio::time::sleep(POLL) => {}
                }
                follow.poll().await;
            }
            follow.poll().await;
            if !matches!(follow.display, Display::Lines) {
                // Only the bar and the summary close with counts.
                follow.recount().await;
            }
            follow.finish();
        });
        Progress { stop, handle }
    }

    /// Prints what is left to print and stops.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.handle.await;
    }
}

/// The flags of the commands that execute a run here (`ork run`, `ork
/// trigger --wait`, `ork retry --wait`).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Options {
    /// A line per task transition however large the run (else runs of over
    /// 50 task instances show a live bar, or off a terminal a line of
    /// counts every --progress-interval).
    #[arg(long, short)]
    pub verbose: bool,
    /// Off a terminal, how often a large run prints its counts.
    #[arg(long = "progress-interval", env = "ORK_PROGRESS_INTERVAL", default_value = "5s",
          value_parser = humantime::parse_duration)]
    pub every: Duration,
}

/// How the progress is shown (see the module doc).
enum Display {
    Lines,
    Bar(ProgressBar),
    Summary {
        every: Duration,
        next: Instant,
        /// The last line printed: the closing one is not printed twice.
        last: String,
    },
}

/// What is known of one task instance: enough to name it and count it.
struct Instance {
    name: Arc<str>,
    index: i64,
    fanned_out: bool,
    status: &'static str,
}

impl Instance {
    fn label(&self) -> String {
        if self.fanned_out {
            format!("{}[{}]", self.name, self.index)
        } else {
            self.name.to_string()
        }
    }
}

struct Follow {
    store: Store,
    run: Run,
    log_dir: PathBuf,
    options: Options,
    display: Display,
    /// The last event id read.
    after: i64,
    instances: HashMap<Uuid, Instance>,
    /// Instances per status (`pending`, `dispatched`, `running`, …).
    counts: BTreeMap<&'static str, i64>,
}

impl Follow {
    fn new(store: Store, run: Run, log_dir: PathBuf, options: Options) -> Follow {
        Follow {
            store,
            run,
            log_dir,
            options,
            display: Display::Lines,
            after: 0,
            instances: HashMap::new(),
            counts: BTreeMap::new(),
        }
    }

    /// Reads what was recorded since the last poll and shows it.
    async fn poll(&mut self) {
        if let Ok(run) = self.store.get_run(self.run.id).await {
            // A `foreach` adds instances as the run goes.
            self.run = run;
        }
        self.choose_display();
        loop {
            let Ok(events) = self
                .store
                .run_events_page(self.run.id, self.after, PAGE)
                .await
            else {
                break;
            };
            let full = events.len() as i64 == PAGE;
            let mut lines = Vec::new();
            for e in &events {
                self.after = self.after.max(e.id);
                self.apply(e, &mut lines).await;
            }
            self.print(lines);
            if !full {
                break;
            }
        }
        self.show();
    }

    /// Leaves the line per transition once the run is large, for good.
    fn choose_display(&mut self) {
        if !matches!(self.display, Display::Lines)
            || self.options.verbose
            || self.run.tasks_total <= LINES_UP_TO
        {
            return;
        }
        self.display = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(
                Some(self.run.tasks_total as u64),
                ProgressDrawTarget::stderr(),
            );
            bar.set_style(
                ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            Display::Bar(bar)
        } else {
            Display::Summary {
                every: self.options.every,
                next: Instant::now() + self.options.every,
                last: String::new(),
            }
        };
    }

    /// Counts one event, and adds to `lines` what it prints.
    async fn apply(&mut self, e: &Event, lines: &mut Vec<String>) {
        let Some(id) = e.task_id else { return };
        if !self.instances.contains_key(&id) {
            self.load_instances().await;
        }
        let Some(status) = counted_status(&e.status) else {
            return;
        };
        let Some(instance) = self.instances.get_mut(&id) else {
            return;
        };
        *self.counts.entry(instance.status).or_default() -= 1;
        *self.counts.entry(status).or_default() += 1;
        instance.status = status;
        let label = instance.label();
        let failed = matches!(e.status.as_str(), "failed" | "pending") && !is_retry(e);
        let print = match self.display {
            Display::Lines => true,
            // Large runs print what needs a look: failures and retries.
            _ => failed,
        };
        if !print {
            return;
        }
        let Some(line) = transition_line(e, &label) else {
            return;
        };
        lines.push(line);
        if failed {
            if let Ok(Some(task)) = self.store.get_task(id).await {
                let attempt = e.attempt.unwrap_or(task.attempt);
                lines.extend(log_tail(&self.log_dir, &self.run, &task, attempt));
            }
        }
    }

    /// Prints a page's lines: above the bar, or in one write (stdout
    /// writes a line at a time: a write per line cost `--verbose` a system
    /// call per transition).
    fn print(&self, lines: Vec<String>) {
        if lines.is_empty() {
            return;
        }
        match &self.display {
            Display::Bar(bar) => lines.into_iter().for_each(|line| bar.println(line)),
            _ => out!("{}\n", lines.join("\n")),
        }
    }

    /// Reads the run's instances: the first time, and when a `foreach`
    /// has added some. Every instance starts `pending`; its events, read
    /// from the first, bring it to where it is.
    async fn load_instances(&mut self) {
        let Ok(tasks) = self.store.run_instances(self.run.id).await else {
            return;
        };
        let mut names: HashMap<String, Arc<str>> = HashMap::new();
        for t in tasks {
            if self.instances.contains_key(&t.id) {
                continue;
            }
            let name = names
                .entry(t.name.clone())
                .or_insert_with(|| Arc::from(t.name.as_str()))
                .clone();
            *self.counts.entry("pending").or_default() += 1;
            self.instances.insert(
                t.id,
                Instance {
                    name,
                    index: t.task_index,
                    fanned_out: t.task_count > 1,
                    status: "pending",
                },
            );
        }
    }

    fn show(&mut self) {
        let line = self.counts_line();
        let done = self.done();
        let summary = self.counts_summary();
        match &mut self.display {
            Display::Lines => {}
            Display::Bar(bar) => {
                bar.set_length(self.run.tasks_total.max(0) as u64);
                bar.set_position(done as u64);
                bar.set_message(line);
            }
            Display::Summary { every, next, last } => {
                if Instant::now() >= *next {
                    *next = Instant::now() + *every;
                    outln!("{} {summary}", chrono::Utc::now().format("%H:%M:%S"));
                    *last = summary;
                }
            }
        }
    }

    /// Counts the instances from their rows, for the closing line. The log
    /// is followed by id, and on PostgreSQL two transactions can commit
    /// their events out of id order (ids are drawn at insert): a poll
    /// between the two commits moves the cursor past the events of the
    /// later one, which are never read. What was printed live stays; the
    /// closing line is right.
    async fn recount(&mut self) {
        let Ok(groups) = self.store.run_task_groups(self.run.id).await else {
            return;
        };
        let mut counts = BTreeMap::new();
        for g in &groups {
            if let Some(status) = counted_status(&g.status) {
                *counts.entry(status).or_default() += g.n;
            }
        }
        self.counts = counts;
    }

    /// Clears the bar, or prints the closing line of counts (unless the
    /// last one printed already says it).
    fn finish(&mut self) {
        let closing = self.counts_summary();
        match &mut self.display {
            Display::Lines => {}
            Display::Bar(bar) => bar.finish_and_clear(),
            Display::Summary { last, .. } => {
                if *last != closing {
                    outln!("{} {closing}", chrono::Utc::now().format("%H:%M:%S"));
                }
            }
        }
    }

    /// `61/61 done: 60 succeeded, 1 failed`.
    fn counts_summary(&self) -> String {
        format!(
            "{}/{} done: {}",
            self.done(),
            self.run.tasks_total,
            self.counts_line()
        )
    }

    /// Instances that ended.
    fn done(&self) -> i64 {
        ["success", "failed", "skipped", "cancelled"]
            .iter()
            .map(|s| self.counts.get(s).copied().unwrap_or(0))
            .sum()
    }

    /// `9990 succeeded, 2 failed, 8 running, 12 pending (extract[3], …)`.
    fn counts_line(&self) -> String {
        let n = |s: &str| self.counts.get(s).copied().unwrap_or(0);
        // The run counts the instances of a fan-out that are created only
        // when its parents are done (deferred); they are pending too.
        let known: i64 = self.counts.values().sum();
        let pending = n("pending") + (self.run.tasks_total - known).max(0);
        let mut parts = Vec::new();
        for (count, word) in [
            (n("success"), "succeeded"),
            (n("failed"), "failed"),
            (n("skipped"), "skipped"),
            (n("cancelled"), "cancelled"),
            (n("dispatched") + n("running"), "running"),
            (pending, "pending"),
        ] {
            if count > 0 {
                parts.push(format!("{count} {word}"));
            }
        }
        let running: Vec<String> = self
            .instances
            .values()
            .filter(|i| i.status == "running")
            .take(3)
            .map(Instance::label)
            .collect();
        let mut line = parts.join(", ");
        if !running.is_empty() {
            line.push_str(&format!(" ({}{})", running.join(", "), {
                if n("running") > running.len() as i64 {
                    ", …"
                } else {
                    ""
                }
            }));
        }
        line
    }
}

/// The status an event leaves its instance in, as counted.
fn counted_status(status: &str) -> Option<&'static str> {
    Some(match status {
        "pending" => "pending",
        "dispatched" => "dispatched",
        "running" => "running",
        "success" => "success",
        "failed" => "failed",
        "skipped" => "skipped",
        "cancelled" => "cancelled",
        _ => return None,
    })
}

/// An instance sent back by `ork retry` (not a failed attempt).
fn is_retry(e: &Event) -> bool {
    e.detail
        .as_deref()
        .is_some_and(|d| d.starts_with(RETRY_REQUESTED))
}

/// One transition as a line: `12:00:01 ✓ extract succeeded`.
fn transition_line(e: &Event, task: &str) -> Option<String> {
    let attempt = e.attempt.unwrap_or(0);
    let detail = e
        .detail
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    let (mark, what) = match e.status.as_str() {
        "running" => ("▸", format!("started (attempt {attempt})")),
        "success" => ("✓", "succeeded".to_owned()),
        "failed" => ("✗", format!("failed{detail}")),
        "pending" if is_retry(e) => ("↻", format!("to run again{detail}")),
        "pending" => ("↻", format!("attempt {attempt} failed{detail}; will retry")),
        "skipped" => ("-", format!("skipped{detail}")),
        "cancelled" => ("■", "cancelled".to_owned()),
        _ => return None,
    };
    Some(format!("{} {mark} {task} {what}", e.at.format("%H:%M:%S")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ork_core::engine::{Engine, EngineConfig, TriggerOptions};
    use ork_core::executor::{Executors, NoopExecutor};
    use ork_core::spec::ExecutorKind;

    /// Marks half the instances of `run` (`task_index` below 30, or from
    /// 30) succeeded, with their events, in `tx`, uncommitted.
    async fn succeed_half(tx: &mut sqlx::PgConnection, run: Uuid, low: bool) {
        sqlx::query(
            "UPDATE tasks SET status = 'success' WHERE run_id = $1 AND (task_index < 30) = $2",
        )
        .bind(run)
        .bind(low)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO events (run_id, task_id, attempt, status, at) \
             SELECT run_id, id, 1, 'success', now() FROM tasks \
             WHERE run_id = $1 AND (task_index < 30) = $2",
        )
        .bind(run)
        .bind(low)
        .execute(&mut *tx)
        .await
        .unwrap();
    }

    /// Events committed out of id order (two PostgreSQL transactions, the
    /// one with the lower ids committed after a poll read the other's)
    /// are passed over by the cursor; the closing line still counts every
    /// instance.
    #[tokio::test]
    async fn the_closing_line_counts_events_committed_out_of_id_order() {
        let db = ork_core::testing::postgres().await;
        let executors = Executors::new().with(ExecutorKind::Noop, Arc::new(NoopExecutor));
        let engine = Engine::new(db.store.clone(), executors, EngineConfig::default());
        let yaml = "name: wide\ntasks:\n  work: {executor: noop, task_count: 60}\n";
        let spec = ork_core::spec::parse_str(yaml, None).unwrap();
        engine.apply(&spec, None).await.unwrap();
        let run = engine
            .trigger("wide", serde_json::json!({}), TriggerOptions::default())
            .await
            .unwrap()
            .run;
        let options = Options {
            verbose: false,
            every: Duration::from_secs(3600),
        };
        let mut follow = Follow::new(db.store.clone(), run.clone(), PathBuf::new(), options);
        follow.poll().await;
        let pg = sqlx::PgPool::connect(&db.url).await.unwrap();
        let (mut first, mut second) = (pg.begin().await.unwrap(), pg.begin().await.unwrap());
        succeed_half(&mut first, run.id, true).await;
        succeed_half(&mut second, run.id, false).await;
        second.commit().await.unwrap();
        follow.poll().await;
        first.commit().await.unwrap();
        follow.poll().await;
        assert_eq!(
            follow.counts_summary(),
            "30/60 done: 30 succeeded, 30 pending"
        );
        follow.recount().await;
        assert_eq!(follow.counts_summary(), "60/60 done: 60 succeeded");
    }
}
