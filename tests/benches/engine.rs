//! `cargo bench --bench engine`: the engine's own overhead. Runs 10,000 noop
//! task instances (four layers, each waiting for the one before) on SQLite
//! and PostgreSQL with concurrent `advance` callers, and prints throughput,
//! claim-to-dispatch and ready-to-dispatch latency percentiles, and peak RSS.
//!
//! Then the data plane: a `foreach` over 10,000 items with noop tasks, and a
//! 100 MiB output handed parent → child by reference, in the payload
//! directory and in S3 (moto) (throughput and peak
//! RSS: the engine streams the payload, its memory must not grow with it).
//!
//! PostgreSQL: `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres);
//! a fresh database is created for the run. `ORK_BENCH_TASKS`,
//! `ORK_BENCH_CALLERS` and `ORK_BENCH_BATCH` change the size;
//! `ORK_BENCH_ONLY=sqlite|postgres` runs one backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ork_tests::db as common;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ork_core::engine::{Engine, EngineConfig, TriggerOptions};
use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError, Executors, Outcome};
use ork_core::spec::{self, ExecutorKind};
use ork_core::store::Store;
use uuid::Uuid;

/// Succeeds at once, noting when each attempt reached it.
#[derive(Default)]
struct Stopwatch {
    reached: Mutex<HashMap<Uuid, DateTime<Utc>>>,
}

#[async_trait]
impl Executor for Stopwatch {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        self.reached
            .lock()
            .unwrap()
            .insert(req.attempt.task_id, Utc::now());
        Ok(Dispatch::Finished(Outcome::success(None)))
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Peak resident memory of this process since the last reset, in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn reset_peak_rss() {
    // Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn bench(label: &str, url: &str, tasks: usize, callers: usize) {
    reset_peak_rss();
    let store = Store::connect(url).await.expect("connect");
    let per_layer = (tasks - 1) / 3;
    let yaml = format!(
        "name: bench\ntasks:\n  start: {{executor: noop}}\n  a: {{executor: noop, depends_on: [start], task_count: {per_layer}}}\n  b: {{executor: noop, depends_on: [a], task_count: {per_layer}}}\n  c: {{executor: noop, depends_on: [b], task_count: {per_layer}}}\n"
    );
    let stopwatch = Arc::new(Stopwatch::default());
    let engine = Arc::new(Engine::new(
        store.clone(),
        Executors::new().with(ExecutorKind::Noop, stopwatch.clone()),
        EngineConfig {
            claim_batch: env_or("ORK_BENCH_BATCH", 256) as i64,
            ..EngineConfig::default()
        },
    ));
    engine
        .apply(&spec::parse_str(&yaml, None).expect("spec"), None)
        .await
        .expect("apply");

    let started = Instant::now();
    let run = engine
        .trigger("bench", serde_json::json!({}), TriggerOptions::default())
        .await
        .expect("trigger")
        .run;
    let handles: Vec<_> = (0..callers)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                loop {
                    engine.advance(run.id).await.expect("advance");
                    if engine
                        .store()
                        .get_run(run.id)
                        .await
                        .expect("run")
                        .status
                        .is_final()
                    {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("caller");
    }
    let elapsed = started.elapsed();
    let run = store.get_run(run.id).await.expect("run");
    assert_eq!(run.tasks_open, 0);

    let rows = store.run_tasks(run.id).await.expect("tasks");
    let reached = std::mem::take(&mut *stopwatch.reached.lock().unwrap());
    let mut claim_to_dispatch = Vec::new();
    let mut ready_to_dispatch = Vec::new();
    for t in &rows {
        let at = reached[&t.id];
        let ms = |from: DateTime<Utc>| (at - from).num_microseconds().unwrap_or(0) as f64 / 1000.0;
        claim_to_dispatch.push(ms(t.dispatched_at.expect("dispatched")));
        ready_to_dispatch.push(ms(t.ready_at.expect("ready")));
    }
    claim_to_dispatch.sort_by(f64::total_cmp);
    ready_to_dispatch.sort_by(f64::total_cmp);
    println!(
        "{label:<10} {:>6} tasks  {callers:>2} callers  {:>7.2} s  {:>8.0} tasks/s  \
         claim→dispatch p50 {:>6.2} ms p99 {:>6.2} ms  ready→dispatch p50 {:>7.2} ms p99 {:>7.2} ms  peak RSS {:>6.1} MiB",
        rows.len(),
        elapsed.as_secs_f64(),
        rows.len() as f64 / elapsed.as_secs_f64(),
        percentile(&claim_to_dispatch, 0.50),
        percentile(&claim_to_dispatch, 0.99),
        percentile(&ready_to_dispatch, 0.50),
        percentile(&ready_to_dispatch, 0.99),
        peak_rss_mib(),
    );
    store.close().await;
}

/// `src` answers with `items` items; `each` instances succeed at once.
struct Items(usize);

#[async_trait]
impl Executor for Items {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let output = (req.attempt.name == "src")
            .then(|| serde_json::json!({ "items": (0..self.0).collect::<Vec<usize>>() }));
        Ok(Dispatch::Finished(Outcome::success(output)))
    }
}

async fn bench_foreach(label: &str, url: &str, items: usize, callers: usize) {
    reset_peak_rss();
    let store = Store::connect(url).await.expect("connect");
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Arc::new(Engine::new(
        store.clone(),
        Executors::new().with(ExecutorKind::Noop, Arc::new(Items(items))),
        EngineConfig {
            payloads: ork_core::payload::Payloads::new(dir.path()),
            ..EngineConfig::default()
        },
    ));
    let yaml = "name: fe\ntasks:\n  src: {executor: noop}\n  each: {executor: noop, depends_on: [src], foreach: src.items}\n  join: {executor: noop, depends_on: [each]}\n";
    engine
        .apply(&spec::parse_str(yaml, None).expect("spec"), None)
        .await
        .expect("apply");
    let started = Instant::now();
    let run = engine
        .trigger("fe", serde_json::json!({}), TriggerOptions::default())
        .await
        .expect("trigger")
        .run;
    drive_callers(&engine, run.id, callers).await;
    let elapsed = started.elapsed();
    let run = store.get_run(run.id).await.expect("run");
    assert_eq!((run.tasks_open, run.tasks_total), (0, items as i64 + 2));
    println!(
        "{label:<10} foreach over {items} items  {callers:>2} callers  {:>7.2} s  {:>8.0} tasks/s  peak RSS {:>6.1} MiB",
        elapsed.as_secs_f64(),
        run.tasks_total as f64 / elapsed.as_secs_f64(),
        peak_rss_mib(),
    );
    store.close().await;
}

async fn drive_callers(engine: &Arc<Engine>, run: Uuid, callers: usize) {
    let handles: Vec<_> = (0..callers)
        .map(|_| {
            let engine = engine.clone();
            tokio::spawn(async move {
                loop {
                    engine.advance(run).await.expect("advance");
                    if engine
                        .store()
                        .get_run(run)
                        .await
                        .expect("run")
                        .status
                        .is_final()
                    {
                        break;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("caller");
    }
}

/// `produce` writes a `size`-byte JSON output file (streaming) and hands it
/// over by reference, as the process executor does; `consume` reads its
/// input file through, streaming, and checks its length.
struct BigOutput {
    dir: std::path::PathBuf,
    size: u64,
    consumed: Mutex<u64>,
}

#[async_trait]
impl Executor for BigOutput {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        use std::io::Write;
        if req.attempt.name == "produce" {
            let path = self.dir.join("produce.json");
            let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            let chunk = "x".repeat(1 << 20);
            f.write_all(b"{\"rows\":[").unwrap();
            let n = self.size >> 20;
            for i in 0..n {
                if i > 0 {
                    f.write_all(b",").unwrap();
                }
                write!(f, "\"{chunk}\"").unwrap();
            }
            f.write_all(b"]}").unwrap();
            f.flush().unwrap();
            drop(f);
            let out = ork_core::payload::check_output_file(&path, 64 * 1024, 1 << 30)
                .await
                .expect("output");
            let ork_core::payload::OutputFile::Ref(r) = out else {
                panic!("a large output is a reference")
            };
            return Ok(Dispatch::Finished(Outcome {
                output_ref: Some(r),
                ..Outcome::success(None)
            }));
        }
        let path = req.input_file.clone().expect("an input file");
        let mut f = std::fs::File::open(path).unwrap();
        let n = std::io::copy(&mut f, &mut std::io::sink()).unwrap();
        *self.consumed.lock().unwrap() = n;
        Ok(Dispatch::Finished(Outcome::success(None)))
    }
}

async fn bench_big_output(
    label: &str,
    url: &str,
    size: u64,
    remote: Option<ork_core::payload::Remote>,
) {
    let store = Store::connect(url).await.expect("connect");
    let dir = tempfile::tempdir().expect("tempdir");
    let exec = Arc::new(BigOutput {
        dir: dir.path().to_path_buf(),
        size,
        consumed: Mutex::new(0),
    });
    let engine = Arc::new(Engine::new(
        store.clone(),
        Executors::new().with(ExecutorKind::Noop, exec.clone()),
        EngineConfig {
            payloads: ork_core::payload::Payloads {
                remote,
                ..ork_core::payload::Payloads::new(dir.path().join("payloads"))
            },
            ..EngineConfig::default()
        },
    ));
    let yaml = "name: big\ntasks:\n  produce: {executor: noop}\n  consume: {executor: noop, depends_on: [produce]}\n";
    engine
        .apply(&spec::parse_str(yaml, None).expect("spec"), None)
        .await
        .expect("apply");
    reset_peak_rss();
    let before = peak_rss_mib();
    let started = Instant::now();
    let run = engine
        .trigger("big", serde_json::json!({}), TriggerOptions::default())
        .await
        .expect("trigger")
        .run;
    drive_callers(&engine, run.id, 1).await;
    let elapsed = started.elapsed();
    let consumed = *exec.consumed.lock().unwrap();
    assert!(consumed > size, "the child read the whole input");
    println!(
        "{label:<10} {} MiB output parent → child  {:>7.2} s  {:>7.1} MiB/s  peak RSS {:>6.1} MiB (at start {:>6.1} MiB)",
        size >> 20,
        elapsed.as_secs_f64(),
        (consumed >> 20) as f64 / elapsed.as_secs_f64(),
        peak_rss_mib(),
        before,
    );
    store.close().await;
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and only checks that it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let tasks = env_or("ORK_BENCH_TASKS", 10_000);
    let callers = env_or("ORK_BENCH_CALLERS", 8);
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = format!("sqlite:{}", dir.path().join("bench.db").display());
    let only = std::env::var("ORK_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "sqlite" {
        bench("sqlite", &sqlite, tasks, callers).await;
        bench_foreach("sqlite", &sqlite, tasks, callers).await;
        bench_big_output("sqlite", &sqlite, 100 << 20, None).await;
        let s3 = ork_tests::moto::s3_store().await;
        bench_big_output("sqlite+s3", &sqlite, 100 << 20, Some(s3)).await;
    }
    if only.is_empty() || only == "postgres" {
        // Kept until the end: dropping it drops the database.
        let db = common::postgres().await;
        bench("postgres", &db.url, tasks, callers).await;
        bench_foreach("postgres", &db.url, tasks, callers).await;
        bench_big_output("postgres", &db.url, 100 << 20, None).await;
        let s3 = ork_tests::moto::s3_store().await;
        bench_big_output("postgres+s3", &db.url, 100 << 20, Some(s3)).await;
    }
}
