//! `cargo bench --bench limits`: claim-time limits under load. Five
//! workflows share the rate limit `api` (50/s) and the concurrency key
//! `shared` (limit 4); 32 handlers complete attempts (30 ms, every tenth
//! 300 ms) and
//! advance the runs their completions free, one of them also sweeping when
//! `next_due` says (the rate limit's next token). Prints, per backend, the
//! most attempts in flight under the key (sampled from the events table:
//! must equal the limit) and the achieved dispatch rate (must be within 5 %
//! of 50/s); exits non-zero otherwise.
//!
//! PostgreSQL: `DATABASE_URL`; `ORK_BENCH_ONLY=sqlite|postgres` runs one
//! backend; `ORK_BENCH_LIMIT_TASKS` the instances per workflow (100).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ork_tests::db as common;

use async_trait::async_trait;
use common::TestDb;
use ork_core::engine::TriggerOptions;
use ork_core::executor::{Completion, Dispatch, DispatchRequest, Executor, ExecutorError, Outcome};
use tokio::sync::{mpsc, Mutex};
use uuid::Uuid;

const RATE: f64 = 50.0;
const KEY_LIMIT: i64 = 4;
const WORKFLOWS: usize = 5;
const HANDLERS: usize = 32;
/// How long an attempt runs: most are short, every tenth long, so that
/// the key's limit is reached now and then while the rate limit paces.
fn attempt_time(index: i64) -> Duration {
    Duration::from_millis(if index % 10 == 0 { 300 } else { 30 })
}

fn spec(i: usize, tasks: usize) -> String {
    format!(
        r#"
name: limited-{i}
rate_limits:
  api: {{per_second: {RATE}}}
tasks:
  call:
    executor: noop
    task_count: {tasks}
    rate_limit: {{name: api}}
    concurrency: {{key: "{{{{ params.tenant }}}}", limit: {KEY_LIMIT}}}
"#
    )
}

/// Each attempt "runs" for [`attempt_time`], then its completion is queued.
struct Timed(mpsc::UnboundedSender<Completion>);

#[async_trait]
impl Executor for Timed {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let (tx, attempt) = (self.0.clone(), req.attempt.clone());
        let time = attempt_time(attempt.task_index);
        tokio::spawn(async move {
            tokio::time::sleep(time).await;
            let _ = tx.send(Completion {
                attempt,
                outcome: Outcome::success(None),
            });
        });
        Ok(Dispatch::Started {
            execution_id: req.attempt.task_id.to_string(),
        })
    }
}

async fn bench(backend: &str, db: TestDb, tasks: usize) -> bool {
    let (tx, rx) = mpsc::unbounded_channel();
    let engine = Arc::new(common::with_executor(db.store.clone(), Arc::new(Timed(tx))));
    let mut runs: Vec<Uuid> = Vec::new();
    for i in 0..WORKFLOWS {
        engine
            .apply(&common::parse(&spec(i, tasks)), None)
            .await
            .unwrap();
    }
    let started = Instant::now();
    for i in 0..WORKFLOWS {
        let run = engine
            .trigger(
                &format!("limited-{i}"),
                serde_json::json!({"tenant": "shared"}),
                TriggerOptions::default(),
            )
            .await
            .unwrap()
            .run;
        engine.advance(run.id).await.unwrap();
        runs.push(run.id);
    }
    let rx = Arc::new(Mutex::new(rx));
    let total = WORKFLOWS * tasks;
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handlers = Vec::new();
    for h in 0..HANDLERS {
        let (engine, rx, done) = (engine.clone(), rx.clone(), done.clone());
        handlers.push(tokio::spawn(async move {
            use std::sync::atomic::Ordering::SeqCst;
            while done.load(SeqCst) < total {
                if h == 0 {
                    // The sweeper: wakes when the next token is due.
                    let due = engine.next_due(chrono::Utc::now()).await.unwrap();
                    let wait = due
                        .at
                        .and_then(|at| (at - chrono::Utc::now()).to_std().ok())
                        .unwrap_or_default()
                        .min(Duration::from_millis(100));
                    tokio::time::sleep(wait).await;
                    engine.sweep().await.unwrap();
                    continue;
                }
                let c = { rx.lock().await.recv().await };
                let Some(c) = c else { return };
                let completed = engine.complete(&[c]).await.unwrap();
                done.fetch_add(completed.applied(), SeqCst);
                for run in completed.to_advance {
                    engine.advance(run).await.unwrap();
                }
            }
        }));
    }
    // Handlers blocked on the queue end when the last completion is in.
    while done.load(std::sync::atomic::Ordering::SeqCst) < total {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    for h in handlers {
        h.abort();
    }
    let mut events = Vec::new();
    for run in &runs {
        events.extend(db.store.run_events(*run).await.unwrap());
    }
    events.sort_by_key(|e| e.id);
    let (mut now, mut max) = (0i64, 0i64);
    let mut dispatched = Vec::new();
    let mut since: std::collections::HashMap<Uuid, chrono::DateTime<chrono::Utc>> =
        Default::default();
    let mut held = 0.0;
    for e in events.iter().filter(|e| e.task_id.is_some()) {
        match e.status.as_str() {
            "dispatched" => {
                now += 1;
                dispatched.push(e.at);
                since.insert(e.task_id.unwrap(), e.at);
            }
            "success" | "failed" | "pending" | "cancelled" => {
                now -= 1;
                if let Some(at) = since.get(&e.task_id.unwrap()) {
                    held += (e.at - *at).num_microseconds().unwrap_or(0) as f64 / 1e3;
                }
            }
            _ => continue,
        }
        max = max.max(now);
    }
    let held = held / total as f64;
    dispatched.sort();
    let span = (dispatched[dispatched.len() - 1] - dispatched[0])
        .num_microseconds()
        .unwrap_or(1) as f64
        / 1e6;
    let rate = (dispatched.len() - 1) as f64 / span;
    let ok_rate = (rate - RATE).abs() <= RATE * 0.05;
    println!(
        "limits/{backend}: {total} attempts of {WORKFLOWS} workflows, {HANDLERS} handlers, {:.1}s: \
         max in flight under the key {max} (limit {KEY_LIMIT}), achieved rate {rate:.2}/s (limit {RATE}/s, {:+.1} %), a slot held {held:.1} ms per attempt ({:.1} ms running)",
        elapsed.as_secs_f64(),
        (rate / RATE - 1.0) * 100.0,
        (0..tasks as i64).map(|i| attempt_time(i).as_secs_f64() * 1e3).sum::<f64>() / tasks as f64
    );
    max == KEY_LIMIT && ok_rate
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let tasks = std::env::var("ORK_BENCH_LIMIT_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let only = std::env::var("ORK_BENCH_ONLY").unwrap_or_default();
    let mut ok = true;
    if only.is_empty() || only == "sqlite" {
        ok &= bench("sqlite", common::sqlite().await, tasks).await;
    }
    if only.is_empty() || only == "postgres" {
        ok &= bench("postgres", common::postgres().await, tasks).await;
    }
    if !ok {
        eprintln!(
            "limits: a limit was exceeded or not reached, or the rate is off by more than 5 %"
        );
        std::process::exit(1);
    }
}
