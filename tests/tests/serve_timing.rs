//! `ork serve`'s sweeper loop (`ork_api::sweeper::run`) wakes when work is
//! due, not on its tick: a retry's backoff, a timeout, a trigger written by
//! another process (as `ork trigger` does) on the same database; and an
//! idle host runs about one query per tick. Each on SQLite and PostgreSQL
//! (the idle count on PostgreSQL, where `pg_stat_database` counts it).

use ork_tests::db as common;
use ork_tests::on_both_backends;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::*;
use ork_core::engine::{Engine, EngineConfig, TriggerOptions};
use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError, Executors, Outcome};
use ork_core::model::RunStatus;
use ork_core::spec::ExecutorKind;
use ork_core::store::{Store, StoreOptions};
use serde_json::json;

/// The tick of every loop here: far longer than any wait a test allows.
const LONG_TICK: Duration = Duration::from_secs(60);

/// Records when each attempt was dispatched; fails the first `fail`
/// attempts at once, or starts them and never reports (`hang`).
#[derive(Default)]
struct Clock {
    fail: i64,
    hang: bool,
    dispatched: Mutex<Vec<(i64, Instant)>>,
}

#[async_trait]
impl Executor for Clock {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let attempt = req.attempt.attempt;
        self.dispatched
            .lock()
            .unwrap()
            .push((attempt, Instant::now()));
        if self.hang {
            return Ok(Dispatch::Started {
                execution_id: format!("clock-{attempt}"),
            });
        }
        Ok(Dispatch::Finished(if attempt <= self.fail {
            Outcome::failure(Some(1), "failed on purpose")
        } else {
            Outcome::success(None)
        }))
    }
}

impl Clock {
    fn times(&self) -> Vec<(i64, Instant)> {
        self.dispatched.lock().unwrap().clone()
    }
}

fn engine(store: Store, clock: Arc<Clock>) -> Arc<Engine> {
    Arc::new(Engine::new(
        store,
        Executors::new().with(ExecutorKind::Noop, clock),
        EngineConfig::default(),
    ))
}

/// Serves `engine`'s sweeper loop until dropped.
struct Serving(tokio::task::JoinHandle<()>);

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn serve(engine: &Arc<Engine>, tick: Duration) -> Serving {
    let serving = Serving(tokio::spawn(ork_api::sweeper::run(
        engine.clone(),
        tick,
        std::sync::Arc::new(ork_api::http::Health::new(tick)),
    )));
    // The first turn (a sweep at start) and the watch are set up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    serving
}

/// What `ork trigger` or `ork cancel` has: its own store and engine on the
/// same database, no executors, no advance.
async fn another_process(db: &TestDb) -> (Store, Engine) {
    let cli_store = Store::connect_with(
        &db.url,
        &StoreOptions {
            migrate: false,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let cli = Engine::new(cli_store.clone(), Executors::new(), EngineConfig::default());
    (cli_store, cli)
}

async fn wait_final(engine: &Engine, run: uuid::Uuid, within: Duration) -> RunStatus {
    let start = Instant::now();
    loop {
        let status = engine.store().get_run(run).await.unwrap().status;
        if status.is_final() || start.elapsed() > within {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn a_backoff_is_retried_within_a_second_of_being_due(db: TestDb) {
    let clock = Arc::new(Clock {
        fail: 1,
        ..Clock::default()
    });
    let engine = engine(db.store.clone(), clock.clone());
    engine
        .apply(
            &parse(
                "name: flaky\ntasks:\n  t: {executor: noop, retries: {count: 1, backoff: 2s}}\n",
            ),
            None,
        )
        .await
        .unwrap();
    let _serving = serve(&engine, LONG_TICK).await;
    // As the trigger handler does: trigger, then advance.
    let t = engine
        .trigger("flaky", json!({}), TriggerOptions::default())
        .await
        .unwrap();
    engine.advance(t.run.id).await.unwrap();
    let status = wait_final(&engine, t.run.id, Duration::from_secs(6)).await;
    assert_eq!(status, RunStatus::Success, "the retry ran within 6 s");
    let times = clock.times();
    assert_eq!(times.len(), 2, "{times:?}");
    let waited = times[1].1 - times[0].1;
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(3),
        "retried {waited:?} after the failure (backoff 2 s, tick 60 s)"
    );
}

async fn a_timeout_fires_within_a_second_of_its_deadline(db: TestDb) {
    let clock = Arc::new(Clock {
        hang: true,
        ..Clock::default()
    });
    let engine = engine(db.store.clone(), clock.clone());
    engine
        .apply(
            &parse("name: slow\ntasks:\n  t: {executor: noop, timeout: 1s}\n"),
            None,
        )
        .await
        .unwrap();
    let _serving = serve(&engine, LONG_TICK).await;
    let started = Instant::now();
    let t = engine
        .trigger("slow", json!({}), TriggerOptions::default())
        .await
        .unwrap();
    engine.advance(t.run.id).await.unwrap();
    let status = wait_final(&engine, t.run.id, Duration::from_secs(5)).await;
    let took = started.elapsed();
    assert_eq!(status, RunStatus::Failed, "timed out within 5 s");
    assert!(
        took < Duration::from_millis(2200),
        "a 1 s timeout fired after {took:?} (tick 60 s)"
    );
}

async fn a_trigger_from_another_process_is_dispatched_within_a_second(db: TestDb) {
    let clock = Arc::new(Clock::default());
    let engine = engine(db.store.clone(), clock.clone());
    engine
        .apply(&parse("name: cli\ntasks:\n  t: {executor: noop}\n"), None)
        .await
        .unwrap();
    let _serving = serve(&engine, LONG_TICK).await;
    let (cli_store, cli) = another_process(&db).await;
    let triggered = Instant::now();
    let t = cli
        .trigger("cli", json!({}), TriggerOptions::default())
        .await
        .unwrap();
    let status = wait_final(&engine, t.run.id, Duration::from_secs(5)).await;
    assert_eq!(status, RunStatus::Success, "dispatched within 5 s");
    let times = clock.times();
    let waited = times[0].1 - triggered;
    assert!(
        waited < Duration::from_secs(1),
        "dispatched {waited:?} after another process's trigger (tick 60 s)"
    );
    cli_store.close().await;
}

/// A run queued behind a concurrency key starts when a cancel (here by
/// another process, as `ork cancel` does) frees the slot, not at the tick.
async fn a_cancel_that_frees_a_slot_starts_the_queued_run_within_a_second(db: TestDb) {
    let clock = Arc::new(Clock {
        hang: true,
        ..Clock::default()
    });
    let engine = engine(db.store.clone(), clock.clone());
    engine
        .apply(
            &parse("name: keyed\ntasks:\n  t: {executor: noop, concurrency: {key: shared, limit: 1}}\n"),
            None,
        )
        .await
        .unwrap();
    let _serving = serve(&engine, LONG_TICK).await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let t = engine
            .trigger("keyed", json!({}), TriggerOptions::default())
            .await
            .unwrap();
        engine.advance(t.run.id).await.unwrap();
        runs.push(t.run.id);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(clock.times().len(), 1, "the key holds the second run back");
    let (cli_store, cli) = another_process(&db).await;
    let cancelled = Instant::now();
    assert!(cli.cancel(runs[0]).await.unwrap());
    let start = Instant::now();
    while clock.times().len() < 2 && start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let times = clock.times();
    assert_eq!(times.len(), 2, "the queued run started within 5 s");
    let waited = times[1].1 - cancelled;
    assert!(
        waited < Duration::from_secs(1),
        "dispatched {waited:?} after the cancel freed its slot (tick 60 s)"
    );
    cli_store.close().await;
}

on_both_backends!(
    a_backoff_is_retried_within_a_second_of_being_due,
    a_timeout_fires_within_a_second_of_its_deadline,
    a_trigger_from_another_process_is_dispatched_within_a_second,
    a_cancel_that_frees_a_slot_starts_the_queued_run_within_a_second,
);

/// Committed transactions of one database, from `pg_stat_database` (read
/// from the admin database, so that reading does not count).
async fn commits(db: &str) -> i64 {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .unwrap();
    let (n,): (i64,) =
        sqlx::query_as("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
            .bind(db)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    n
}

/// An idle host runs one query per tick (`next_due_at`), LISTEN none; the
/// old fixed sweep ran six transactions per tick. A short tick stands in
/// for the minute: backends report their counts when they disconnect, so
/// the host's store is closed before the count is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_host_runs_one_query_per_tick_on_postgres() {
    let db = postgres().await;
    let name = db
        .url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let engine = noop_engine(db.store.clone());
    engine
        .apply(
            &parse("name: nightly\nschedule: \"0 3 * * *\"\ntasks:\n  t: {executor: noop}\n"),
            None,
        )
        .await
        .unwrap();
    db.store.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = commits(&name).await;

    let store = Store::connect_with(
        &db.url,
        &StoreOptions {
            migrate: false,
            ..StoreOptions::default()
        },
    )
    .await
    .unwrap();
    let host = Arc::new(noop_engine(store.clone()));
    let tick = Duration::from_millis(500);
    let window = Duration::from_secs(8);
    let serving = Serving(tokio::spawn(ork_api::sweeper::run(
        host.clone(),
        tick,
        std::sync::Arc::new(ork_api::http::Health::new(tick)),
    )));
    tokio::time::sleep(window).await;
    drop(serving);
    tokio::time::sleep(Duration::from_millis(100)).await;
    store.close().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let spent = commits(&name).await - before;

    let ticks = (window.as_millis() / tick.as_millis()) as i64 + 1;
    // One check per tick, plus a fixed start-up cost (about a dozen: the
    // pool's and the listener's first statements, LISTEN, loading the cron
    // schedules); the old fixed sweep ran six per tick (over 100 here).
    let allowed = ticks + 16;
    eprintln!("idle: {spent} transactions in {window:?} with a {tick:?} tick ({ticks} ticks)");
    assert!(
        spent <= allowed,
        "{spent} transactions in {ticks} idle ticks (at most {allowed})"
    );
}
