//! `cargo bench -p ork-api --bench http`: the handlers over HTTP on
//! PostgreSQL (`DATABASE_URL`, a fresh database per run).
//!
//! - webhook round trip: POST /complete answered, p50/p99;
//! - completion → child dispatched: from sending a parent's completion to
//!   its child reaching the executor, p50/p99;
//! - Cloud Run dispatches/s: 400 task instances sent to a local server
//!   speaking the Admin API v2 (`jobs.run`, answered after 50 ms, a real
//!   API's latency), one at a time and 32 at once
//!   (`dispatch_concurrency`): the API's latency bounds throughput, not Ork;
//! - cold start: a Lambda binary (`target/release/advance`, built by
//!   `cargo build --release -p ork-functions`) from exec until it asks the
//!   Runtime API for its first event, p50/max.

use ork_tests::db as common;
use ork_tests::fake_cloudrun;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ork_api::advancer::Advancer;
use ork_core::engine::{Engine, EngineConfig};
use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError, Executors};
use ork_core::spec::{self, ExecutorKind};
use ork_core::store::Store;
use ork_tests::app::TestApp;
use serde_json::json;

/// Starts attempts, noting when each reached it, and keeps their tokens.
#[derive(Default)]
struct Recorder {
    reached: Mutex<HashMap<String, (Instant, String)>>,
}

#[async_trait]
impl Executor for Recorder {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let key = format!("{}[{}]", req.attempt.name, req.attempt.task_index);
        let token = req
            .callback
            .as_ref()
            .map(|c| c.token.clone())
            .unwrap_or_default();
        self.reached
            .lock()
            .unwrap()
            .insert(key, (Instant::now(), token));
        Ok(Dispatch::Started {
            execution_id: "bench".into(),
        })
    }
}

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

async fn webhooks(url: &str) {
    const PAIRS: usize = 300;
    let recorder = Arc::new(Recorder::default());
    let store = Store::connect(url).await.unwrap();
    let app = TestApp::builder(store)
        .executors(Executors::new().with(ExecutorKind::Noop, recorder.clone()))
        .advancer(Advancer::Spawn)
        .spawn()
        .await;
    let (engine, addr) = (
        app.engine.clone(),
        app.url.trim_start_matches("http://").to_owned(),
    );
    let mut yaml = String::from("name: pairs\ntasks:\n");
    for i in 0..PAIRS {
        yaml.push_str(&format!(
            "  p{i}: {{executor: noop}}\n  c{i}: {{executor: noop, depends_on: [p{i}]}}\n"
        ));
    }
    engine
        .apply(&spec::parse_str(&yaml, None).unwrap(), None)
        .await
        .unwrap();

    let http = reqwest::Client::new();
    let started = http
        .post(format!("http://{addr}/trigger"))
        .json(&json!({"workflow": "pairs"}))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 202);
    while recorder.reached.lock().unwrap().len() < PAIRS {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut round_trips = Vec::new();
    let mut to_child = Vec::new();
    for i in 0..PAIRS {
        let token = recorder.reached.lock().unwrap()[&format!("p{i}[0]")]
            .1
            .clone();
        let sent = Instant::now();
        let r = http
            .post(format!("http://{addr}/complete"))
            .json(&json!({"token": token, "status": "success"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        round_trips.push(sent.elapsed());
        let child = format!("c{i}[0]");
        loop {
            if let Some((at, _)) = recorder.reached.lock().unwrap().get(&child) {
                to_child.push(*at - sent);
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    println!(
        "webhook round trip       p50 {:>6.2} ms  p99 {:>6.2} ms   ({PAIRS} completions, one at a time)",
        pct(round_trips.clone(), 0.5),
        pct(round_trips, 0.99)
    );
    println!(
        "completion → child       p50 {:>6.2} ms  p99 {:>6.2} ms   (dispatched to the executor)",
        pct(to_child.clone(), 0.5),
        pct(to_child, 0.99)
    );
}

/// `ORK_MIGRATE` for the measured starts: as deployed (`false`, the
/// schema migrated at deploy) unless the caller's environment says otherwise.
fn os_migrate() -> String {
    std::env::var("ORK_MIGRATE").unwrap_or_else(|_| "false".into())
}

/// Exec → first Runtime API `next` of a Lambda binary, over `runs` starts.
async fn cold_starts(url: &str, runs: usize) {
    let binary = ork_tests::bin::path("ork-functions", "advance");
    if !binary.exists() {
        println!("cold start               skipped: build {} first (cargo build --release -p ork-functions)", binary.display());
        return;
    }
    let mut times = Vec::new();
    for _ in 0..runs {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let exec = Instant::now();
        let mut child = std::process::Command::new(&binary)
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "advance")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("ORK_DATABASE_URL", url)
            .env("ORK_MIGRATE", os_migrate())
            .env("ORK_SIGNING_KEY", "bench-bench-bench-bench-bench-32")
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The first connection to the Runtime API is the function being ready.
        let _conn = listener.accept().unwrap();
        times.push(exec.elapsed());
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let max = times.iter().max().copied().unwrap_or_default();
    println!(
        "cold start (exec→ready)  p50 {:>6.2} ms  max {:>6.2} ms   ({runs} starts, incl. connecting to PostgreSQL; ORK_MIGRATE={})",
        pct(times, 0.5),
        max.as_secs_f64() * 1000.0,
        os_migrate()
    );
}

/// Dispatches `instances` Cloud Run attempts through the real executor to
/// the fake API, which answers each `jobs.run` after 50 ms.
async fn cloud_run_dispatches(url: &str, instances: u32, concurrency: usize) -> f64 {
    let fake = fake_cloudrun::FakeCloudRun::start().await;
    fake.add_job("bench", "europe-west1", "trainer");
    fake.set_latency(Duration::from_millis(50));
    let dir = tempfile::tempdir().unwrap();
    let key = fake.write_key_file(dir.path());
    // Set before any thread of the executor reads them.
    unsafe {
        std::env::set_var("GOOGLE_APPLICATION_CREDENTIALS", &key);
        std::env::set_var("ORK_CLOUDRUN_ENDPOINT", &fake.url);
    }
    let executor = ork_executors::CloudRunExecutor::from_env()
        .await
        .expect("executor");
    let config = EngineConfig {
        dispatch_concurrency: concurrency,
        claim_batch: 1000,
        ..EngineConfig::default()
    };
    let store = Store::connect(url).await.unwrap();
    let engine = Engine::new(
        store,
        Executors::new().with(ExecutorKind::Cloudrun, Arc::new(executor)),
        config,
    );
    let name = format!("cloud{concurrency}");
    let yaml = format!(
        "name: {name}\ntasks:\n  train:\n    executor: cloudrun\n    cloudrun: {{job: trainer, project: bench, region: europe-west1}}\n    task_count: {instances}\n"
    );
    engine
        .apply(&spec::parse_str(&yaml, None).unwrap(), None)
        .await
        .unwrap();
    let run = engine
        .trigger(&name, json!({}), Default::default())
        .await
        .unwrap()
        .run;
    let started = Instant::now();
    let done = engine.advance(run.id).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(done.dispatched, instances as usize);
    assert_eq!(fake.executions().len(), instances as usize);
    let rate = f64::from(instances) / secs;
    println!(
        "cloud run dispatches     {rate:>8.0} /s   ({instances} jobs.run calls, {concurrency} in flight at most, {:.2} s)",
        secs
    );
    rate
}

#[tokio::main]
async fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // A fresh database with the schema in place, so cold starts measure a
    // deployed function.
    // Kept until the end: dropping it drops the database.
    let db = common::postgres().await;
    let url = db.url.clone();
    webhooks(&url).await;
    cold_starts(&url, 20).await;
    cloud_run_dispatches(&url, 100, 1).await;
    cloud_run_dispatches(&url, 400, 32).await;
}
