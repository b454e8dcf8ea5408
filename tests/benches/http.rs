//! `cargo bench -p ork-tests --bench http`: the handlers over HTTP on
//! PostgreSQL (`DATABASE_URL`, a fresh database per run).
//!
//! - webhook round trip: POST /complete answered, p50/p99;
//! - webhook load: 64 workers completing 20,000 tasks (10,000 parent →
//!   child pairs) as fast as they are dispatched, each completion
//!   releasing a child: completions/s, round trip and completion → child
//!   dispatch p50/p99, the transactions committed (group commit); then
//!   the same paced at 2,500 completions/s, the issue's sustained rate;
//!   both three times, each on a new database and server (the paced p99
//!   per round and the median);
//! - completion → child dispatched: from sending a parent's completion to
//!   its child reaching the executor, p50/p99;
//! - Cloud Run dispatches/s: 400 task instances sent to a local server
//!   speaking the Admin API v2 (`jobs.run`, answered after 50 ms, a real
//!   API's latency), one at a time and 32 at once
//!   (`dispatch_concurrency`): the API's latency bounds throughput, not Ork;
//! - Lambda handler memory: the `trigger` binary answering a Function URL
//!   request (the run's three noop tasks advanced inline), peak RSS;
//! - cold start: a Lambda binary (`target/release/advance`, built by
//!   `cargo build --release -p ork-functions`) from exec until it asks the
//!   Runtime API for its first event, p50/max.
//!
//! `ORK_BENCH_ONLY=webhook` runs the webhook benches alone.

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

/// Starts attempts, noting when each reached it and keeping its token;
/// with a queue, also hands each `(key, token)` to the bench's workers.
#[derive(Default)]
struct Recorder {
    reached: Mutex<HashMap<String, (Instant, String)>>,
    queue: Mutex<Option<tokio::sync::mpsc::UnboundedSender<(String, String)>>>,
}

impl Recorder {
    /// Forgets the last run's attempts (their keys repeat), and hands the
    /// next run's to `queue`.
    fn reset(&self, queue: Option<tokio::sync::mpsc::UnboundedSender<(String, String)>>) {
        self.reached.lock().unwrap().clear();
        *self.queue.lock().unwrap() = queue;
    }
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
            .insert(key.clone(), (Instant::now(), token.clone()));
        if let Some(queue) = &*self.queue.lock().unwrap() {
            let _ = queue.send((key, token));
        }
        Ok(Dispatch::Started {
            execution_id: "bench".into(),
        })
    }
}

/// The handlers on `url`'s database, dispatching to `recorder`: one
/// server for the webhook benches, as a deployed one serves run after
/// run (its connection pool already open).
async fn serve(url: &str, recorder: &Arc<Recorder>) -> TestApp {
    let store = Store::connect(url).await.unwrap();
    TestApp::builder(store)
        .executors(Executors::new().with(ExecutorKind::Noop, recorder.clone()))
        .advancer(Advancer::spawn())
        .spawn()
        .await
}

/// Applies a workflow `name` of `pairs` parent → child pairs.
async fn apply_pairs(app: &TestApp, name: &str, pairs: usize) {
    let yaml = ork_tests::pairs_yaml(name, pairs);
    app.engine
        .apply(&spec::parse_str(&yaml, None).unwrap(), None)
        .await
        .unwrap();
}

fn pct(mut v: Vec<Duration>, p: f64) -> f64 {
    v.sort();
    v.get(((v.len() as f64 - 1.0) * p).round() as usize)
        .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

async fn webhooks(app: &TestApp, recorder: &Recorder) {
    const PAIRS: usize = 300;
    recorder.reset(None);
    apply_pairs(app, "pairs", PAIRS).await;
    let addr = app.url.trim_start_matches("http://").to_owned();

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

/// The completion webhook under load: `workers` concurrent workers, one
/// HTTP completion per task, `pairs` parent → child pairs in one run. With
/// a `rate`, the workers send at most that many completions a second
/// between them (the k-th not before k / rate s after the first): latency
/// at a sustained rate, not at saturation, where a closed loop of
/// `workers` makes each round trip `workers` / throughput by Little's law.
async fn webhook_load(
    url: &str,
    app: &TestApp,
    recorder: &Recorder,
    pairs: usize,
    workers: usize,
    rate: Option<f64>,
) -> f64 {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    recorder.reset(Some(tx));
    let name = match rate {
        None => "load".to_owned(),
        Some(r) => format!("load{r:.0}"),
    };
    apply_pairs(app, &name, pairs).await;
    let addr = app.url.clone();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(workers)
        .build()
        .unwrap();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let total = 2 * pairs;
    let pg = sqlx::PgPool::connect(url).await.unwrap();
    let commits = || async {
        // The statistics are flushed about once a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let n: i64 = sqlx::query_scalar(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&pg)
        .await
        .unwrap();
        n
    };
    let commits_before = commits().await;
    let r = http
        .post(format!("{addr}/trigger"))
        .json(&json!({"workflow": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let start = Instant::now();
    let tickets = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let paced_from: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (http, rx, sent, done, addr, tickets, paced_from) = (
                http.clone(),
                rx.clone(),
                sent.clone(),
                done.clone(),
                addr.clone(),
                tickets.clone(),
                paced_from.clone(),
            );
            tokio::spawn(async move {
                let mut round_trips = Vec::new();
                while done.load(std::sync::atomic::Ordering::SeqCst) < total {
                    let next = tokio::time::timeout(Duration::from_millis(50), async {
                        rx.lock().await.recv().await
                    });
                    let Ok(Some((key, token))) = next.await else {
                        continue;
                    };
                    // Paced from the first completion there is to send: a
                    // clock started at the trigger would have the workers
                    // send the first ones in one burst, to catch up.
                    if let Some(rate) = rate {
                        let epoch = *paced_from.get_or_init(Instant::now);
                        let k = tickets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let due = epoch + Duration::from_secs_f64(k as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let at = Instant::now();
                    sent.lock().unwrap().insert(key, at);
                    let r = http
                        .post(format!("{addr}/complete"))
                        .json(&json!({"token": token, "status": "success"}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    round_trips.push(at.elapsed());
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                round_trips
            })
        })
        .collect();
    let mut round_trips = Vec::new();
    for h in handles {
        round_trips.extend(h.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    let commits = commits().await - commits_before;
    let (sent, reached) = (sent.lock().unwrap(), recorder.reached.lock().unwrap());
    let to_child: Vec<Duration> = (0..pairs)
        .map(|i| reached[&format!("c{i}[0]")].0 - sent[&format!("p{i}[0]")])
        .collect();
    let paced = rate.map_or(String::new(), |r| format!(", paced at {r:.0}/s"));
    println!(
        "webhook load             {:>8.0} /s   ({total} completions by {workers} workers in {secs:.2} s, each releasing a child{paced})",
        total as f64 / secs
    );
    println!(
        "  round trip             p50 {:>6.2} ms  p99 {:>6.2} ms",
        pct(round_trips.clone(), 0.5),
        pct(round_trips, 0.99)
    );
    let to_child_p99 = pct(to_child.clone(), 0.99);
    println!(
        "  completion → child     p50 {:>6.2} ms  p99 {:>6.2} ms",
        pct(to_child, 0.5),
        to_child_p99
    );
    println!(
        "  transactions           {commits} committed ({:.2} per completion, with the trigger, claims and reads)",
        commits as f64 / total as f64
    );
    to_child_p99
}

/// How many times the webhook loads run, each time on a new database and
/// server: the saturated load, then the paced one, whose p99 to the child
/// is printed per round and as the median. One run's tail moves with the
/// machine (14.9 to 23.6 ms in three benches of one session), and rounds
/// in one database are not alike: each leaves 40,000 tasks and 80,000
/// events in the tables the next one writes (three paced runs in a row
/// measured 29.8, 44.3 and 41.9 ms).
const WEBHOOK_ROUNDS: usize = 3;

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

/// Peak RSS of a Lambda handler process over one invocation each: the
/// `trigger` function answering a Function URL request whose run (three
/// noop tasks) it advances inline, as deployed without
/// `ORK_ADVANCE_FUNCTION`.
async fn lambda_memory(url: &str, runs: usize) {
    let binary = ork_tests::bin::path("ork-functions", "trigger");
    if !binary.exists() {
        println!("lambda handler memory    skipped: build {} first (cargo build --release -p ork-functions)", binary.display());
        return;
    }
    let store = Store::connect(url).await.unwrap();
    let engine = Engine::new(store, Executors::new(), EngineConfig::default());
    let yaml = "name: rss\ntasks:\n  a: {executor: noop}\n  b: {executor: noop, depends_on: [a]}\n  c: {executor: noop, depends_on: [b]}\n";
    engine
        .apply(&spec::parse_str(yaml, None).unwrap(), None)
        .await
        .unwrap();
    let env = vec![
        ("ORK_DATABASE_URL".to_owned(), url.to_owned()),
        ("ORK_MIGRATE".to_owned(), os_migrate()),
        ("ORK_API_KEY".to_owned(), "bench-key".to_owned()),
        (
            "ORK_SIGNING_KEY".to_owned(),
            "bench-bench-bench-bench-bench-32".to_owned(),
        ),
        ("RUST_LOG".to_owned(), "error".to_owned()),
    ];
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {"authorization": "Bearer bench-key", "content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/"}, "requestId": "r", "timeEpoch": 0},
        "body": json!({"workflow": "rss"}).to_string(),
        "isBase64Encoded": false,
    });
    let mut peaks = Vec::new();
    for _ in 0..runs {
        let done = ork_tests::lambda_runtime::invoke(&binary, "trigger", &env, event.clone()).await;
        let answer = done.answer.expect("the trigger function answers");
        assert_eq!(answer["statusCode"], 202, "{answer}");
        peaks.push(done.peak_rss_kib.unwrap_or_default() as f64 / 1024.0);
    }
    peaks.sort_by(f64::total_cmp);
    println!(
        "lambda handler peak RSS  p50 {:>6.1} MiB  max {:>6.1} MiB   ({runs} invocations of `trigger`, the run advanced inline)",
        peaks[peaks.len() / 2],
        peaks[peaks.len() - 1]
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
    let recorder = Arc::new(Recorder::default());
    let app = serve(&url, &recorder).await;
    webhooks(&app, &recorder).await;
    drop(app);
    let mut p99s = Vec::new();
    for _ in 0..WEBHOOK_ROUNDS {
        let round = common::postgres().await;
        let app = serve(&round.url, &recorder).await;
        webhook_load(&round.url, &app, &recorder, 10_000, 64, None).await;
        p99s.push(webhook_load(&round.url, &app, &recorder, 10_000, 64, Some(2500.0)).await);
    }
    let listed: Vec<String> = p99s.iter().map(|p| format!("{p:.2}")).collect();
    p99s.sort_by(f64::total_cmp);
    println!(
        "paced at 2500/s, completion → child p99 {} ms: median {:.2} ms ({WEBHOOK_ROUNDS} rounds)",
        listed.join(", "),
        p99s[p99s.len() / 2]
    );
    if std::env::var("ORK_BENCH_ONLY").is_ok_and(|only| only == "webhook") {
        return;
    }
    cold_starts(&url, 20).await;
    lambda_memory(&url, 10).await;
    cloud_run_dispatches(&url, 100, 1).await;
    cloud_run_dispatches(&url, 400, 32).await;
}
