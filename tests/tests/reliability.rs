//! Reliability: no value a caller can send (an extreme duration, a huge
//! fan-out, a number or a string the database cannot read back) panics the
//! engine, stalls the sweeper or reaches a client as raw database text.

use ork_tests::db as common;
use ork_tests::on_both_backends;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ork_core::engine::{CallbackConfig, Engine, EngineConfig, TriggerOptions};
use ork_core::executor::{Executors, NoopExecutor};
use ork_core::model::RunStatus;
use ork_core::spec::ExecutorKind;
use ork_core::token::Signer;
use ork_core::Error;
use serde_json::json;

fn engine(db: &TestDb, config: EngineConfig) -> Engine {
    Engine::new(
        db.store.clone(),
        Executors::new().with(ExecutorKind::Noop, Arc::new(NoopExecutor)),
        config,
    )
}

/// Runs one statement on the test database behind the store's back.
async fn exec(db: &TestDb, sql: &str) {
    use sqlx::Executor as _;
    if db.url.starts_with("postgres") {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        pool.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)))
            .await
            .unwrap();
        pool.close().await;
    } else {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        pool.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(sql)))
            .await
            .unwrap();
        pool.close().await;
    }
}

/// Leases, heartbeats and token lifetimes far beyond any date: the time
/// arithmetic saturates instead of panicking.
async fn extreme_durations_do_not_panic(db: TestDb) {
    let config = EngineConfig {
        lease: Duration::MAX,
        heartbeat_timeout: Duration::MAX,
        callback: Some(CallbackConfig {
            url: "http://127.0.0.1:9/complete".into(),
            signer: Signer::new(*ork_tests::app::SIGNING_KEY).unwrap(),
            grace: Duration::MAX,
        }),
        ..EngineConfig::default()
    };
    let engine = engine(&db, config);
    let spec = parse("name: far\ntasks:\n  a: {executor: noop, timeout: 30d, retries: {count: 1, backoff: 1d, max_backoff: 1d}}\n");
    engine.apply(&spec, None).await.unwrap();
    let t = engine
        .trigger("far", json!({}), TriggerOptions::default())
        .await
        .unwrap();
    engine.advance(t.run.id).await.unwrap();
    assert_eq!(
        db.store.get_run(t.run.id).await.unwrap().status,
        RunStatus::Success
    );
    engine.sweep().await.unwrap();
}

/// The most instances of a run is the engine's `max_instances`, checked at
/// apply and again at trigger (the limit may have been lowered since).
async fn instances_per_run_are_bounded(db: TestDb) {
    let small = EngineConfig {
        max_instances: 10,
        ..EngineConfig::default()
    };
    let spec = parse("name: fan\ntasks:\n  a: {executor: noop, task_count: 6}\n  b: {executor: noop, task_count: 6, depends_on: [a]}\n");
    let err = engine(&db, small.clone())
        .apply(&spec, None)
        .await
        .unwrap_err();
    assert!(err.is_user_error(), "{err}");
    assert!(
        err.to_string()
            .contains("12 task instances, the maximum is 10"),
        "{err}"
    );
    engine(&db, EngineConfig::default())
        .apply(&spec, None)
        .await
        .unwrap();
    let err = engine(&db, small)
        .trigger("fan", json!({}), TriggerOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_user_error(), "{err}");
    assert!(err.to_string().contains("the maximum is 10"), "{err}");
}

/// Many instances are inserted batch by batch and all become one run; a
/// fan-out with parents is created when they are done (deferred), and
/// counted in the run from the start.
async fn a_large_fan_out_is_created_in_batches(db: TestDb) {
    let engine = engine(&db, EngineConfig::default());
    let spec = parse("name: wide\ntasks:\n  a: {executor: noop, task_count: 2500}\n  b: {executor: noop, task_count: 1001, depends_on: [a]}\n");
    engine.apply(&spec, None).await.unwrap();
    let t = engine
        .trigger("wide", json!({}), TriggerOptions::default())
        .await
        .unwrap();
    assert_eq!(t.run.tasks_total, 3501);
    let indexes = |tasks: &[ork_core::model::Task], name: &str| {
        let mut i: Vec<i64> = tasks
            .iter()
            .filter(|t| t.name == name)
            .map(|t| t.task_index)
            .collect();
        i.sort();
        i
    };
    let tasks = db.store.run_tasks(t.run.id).await.unwrap();
    assert_eq!(tasks.len(), 2500, "b waits to be created");
    assert_eq!(indexes(&tasks, "a"), (0..2500).collect::<Vec<_>>());
    let groups = db.store.run_task_groups(t.run.id).await.unwrap();
    assert!(groups
        .iter()
        .any(|g| (g.name.as_str(), g.status.as_str(), g.n) == ("b", "pending", 1001)));
    let mut status = None;
    for _ in 0..100 {
        status = engine.advance(t.run.id).await.unwrap().finalized;
        if status.is_some() {
            break;
        }
    }
    assert_eq!(status, Some(ork_core::model::RunStatus::Success));
    let tasks = db.store.run_tasks(t.run.id).await.unwrap();
    assert_eq!(tasks.len(), 3501);
    assert_eq!(indexes(&tasks, "b"), (0..1001).collect::<Vec<_>>());
    assert!(tasks
        .iter()
        .all(|t| t.status == ork_core::model::TaskStatus::Success && t.ready_at.is_some()));
}

/// What the database cannot store or read back is refused, naming the field.
async fn unstorable_trigger_input_is_refused(db: TestDb) {
    let engine = engine(&db, EngineConfig::default());
    engine
        .apply(&parse("name: w\ntasks:\n  a: {executor: noop}\n"), None)
        .await
        .unwrap();
    let key = |k: &str| TriggerOptions {
        idempotency_key: Some(k.into()),
        ..TriggerOptions::default()
    };
    let cases: Vec<(&str, serde_json::Value, TriggerOptions, &str)> = vec![
        (
            "w",
            json!({"n": 1.7976931348623157e308}),
            key("k"),
            "params.n",
        ),
        ("w", json!({"n": -1e301}), key("k"), "params.n"),
        ("w", json!({"s": "a\u{0}b"}), key("k"), "params.s"),
        ("w", json!({"a\u{0}": 1}), key("k"), "NUL"),
        (
            "w",
            json!({"deep": [[{"x": "\u{0}"}]]}),
            key("k"),
            "params.deep[0][0].x",
        ),
        ("w\u{0}", json!({}), key("k"), "workflow"),
        ("w", json!({}), key("a\u{0}"), "idempotency_key"),
        ("w", json!({}), key(&"k".repeat(3000)), "idempotency_key"),
        ("w", json!({"big": "x".repeat(100_000)}), key("k"), "params"),
    ];
    for (workflow, params, opts, field) in cases {
        let err = engine.trigger(workflow, params, opts).await.unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        assert!(err.to_string().contains(field), "{err} lacks {field}");
    }
    // What is accepted reads back as it was sent, on both backends.
    let params = json!({
        "max": 1e299, "min": -1e299, "tiny": 1e-299, "i": i64::MIN, "u": u64::MAX,
        "f": 0.1, "s": "é \u{1} \"", "k".repeat(255): [null, true, {}],
    });
    let t = engine
        .trigger("w", params.clone(), key(&"k".repeat(256)))
        .await
        .unwrap();
    assert_eq!(db.store.get_run(t.run.id).await.unwrap().params, params);
    assert_eq!(db.store.list_runs(None, 10).await.unwrap().len(), 1);
}

/// A row that cannot be read back stops neither the sweeper nor the list
/// of runs: it is logged and skipped, and the other runs go on.
async fn one_unreadable_run_does_not_stall_the_others(db: TestDb) {
    let engine = engine(&db, EngineConfig::default());
    for name in ["bad", "good"] {
        let spec = parse(&format!("name: {name}\ntasks:\n  a: {{executor: noop}}\n"));
        engine.apply(&spec, None).await.unwrap();
    }
    let bad = engine
        .trigger("bad", json!({}), TriggerOptions::default())
        .await
        .unwrap();
    let good = engine
        .trigger("good", json!({}), TriggerOptions::default())
        .await
        .unwrap();
    exec(
        &db,
        r#"UPDATE runs SET params = '{"n": 1e400}' WHERE workflow = 'bad'"#,
    )
    .await;
    assert!(db.store.get_run(bad.run.id).await.is_err());
    engine
        .sweep()
        .await
        .expect("the sweep goes on past the bad run");
    assert_eq!(
        db.store.get_run(good.run.id).await.unwrap().status,
        RunStatus::Success
    );
    let listed = db.store.list_runs(None, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        [good.run.id]
    );
}

on_both_backends!(
    extreme_durations_do_not_panic,
    instances_per_run_are_bounded,
    a_large_fan_out_is_created_in_batches,
    unstorable_trigger_input_is_refused,
    one_unreadable_run_does_not_stall_the_others,
    every_error_is_json_with_a_message,
    events_need_the_api_key_and_are_rate_limited,
);

// ---- over HTTP ---------------------------------------------------------------

use async_trait::async_trait;
use ork_api::advancer::Advancer;
use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError};
use ork_tests::app::TestApp;

/// Panics in dispatch, as a bug would.
struct Panicking;

#[async_trait]
impl Executor for Panicking {
    async fn dispatch(&self, _: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        panic!("a bug in an executor");
    }
}

async fn raw(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    key: Option<&str>,
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.url))
        .body(body);
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let r = req
        .send()
        .await
        .expect("an answer, not a dropped connection");
    let status = r.status().as_u16();
    let json = r.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json");
    let text = r.text().await.unwrap();
    assert!(json, "{status} {path}: not JSON: {text:?}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    (status, body)
}

/// Every error answer is JSON with a message, whoever produced it: the
/// handlers, axum's extractors and body limit, unknown routes and methods,
/// and a handler that panicked.
async fn every_error_is_json_with_a_message(db: TestDb) {
    let executors = Executors::new().with(ExecutorKind::Noop, Arc::new(Panicking));
    let app = TestApp::builder(db.store.clone())
        .executors(executors)
        .api_key("k")
        .advancer(Advancer::Inline)
        .spawn()
        .await;
    app.engine
        .apply(&parse("name: w\ntasks:\n  a: {executor: noop}\n"), None)
        .await
        .unwrap();
    use reqwest::Method;
    let key = Some("k");
    type Case<'a> = (Method, &'a str, Option<&'a str>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (Method::POST, "/trigger", key, vec![b' '; 300 * 1024], 413),
        (Method::GET, "/api/runs/not-a-uuid", key, vec![], 400),
        (Method::GET, "/no/such/route", key, vec![], 404),
        (Method::GET, "/trigger", key, vec![], 405),
        (Method::POST, "/trigger", key, b"{".to_vec(), 400),
        (Method::POST, "/trigger", None, b"{}".to_vec(), 401),
        (
            Method::POST,
            "/trigger",
            key,
            br#"{"workflow": "w", "params": {"n": 1.7976931348623157e308}}"#.to_vec(),
            400,
        ),
        (
            Method::POST,
            "/trigger",
            key,
            br#"{"workflow": "w\u0000"}"#.to_vec(),
            400,
        ),
        // The executor panics: the answer is a 500, the server lives on.
        (
            Method::POST,
            "/trigger",
            key,
            br#"{"workflow": "w"}"#.to_vec(),
            500,
        ),
        (Method::GET, "/api/runs", key, vec![], 200),
    ];
    for (method, path, key, body, status) in cases {
        let (got, body) = raw(&app, method.clone(), path, key, body).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        if status != 200 {
            let msg = body["error"].as_str().unwrap_or_default();
            assert!(!msg.is_empty(), "{method} {path}: {body}");
            assert!(!msg.contains("a bug in an executor"), "{body}");
        }
    }
    let (_, body) = raw(
        &app,
        Method::POST,
        "/trigger",
        key,
        br#"{"workflow": "w", "params": {"n": 1e308}}"#.to_vec(),
    )
    .await;
    assert!(
        body["error"].as_str().unwrap().contains("params.n"),
        "{body}"
    );
}

/// `POST /events` needs the API key (in the header, or as `?key=` for push
/// subscriptions that cannot set one), and its lookups are rate-limited.
async fn events_need_the_api_key_and_are_rate_limited(db: TestDb) {
    let app = TestApp::builder(db.store.clone())
        .api_key("k")
        .spawn()
        .await;
    use reqwest::Method;
    let event = br#"{"data": {"name": "projects/p/locations/l/jobs/j/executions/e"}}"#.to_vec();
    let (status, body) = raw(&app, Method::POST, "/events", None, event.clone()).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = raw(&app, Method::POST, "/events", Some("k"), event.clone()).await;
    assert_eq!(
        (status, body["result"].as_str()),
        (200, Some("ignored")),
        "{body}"
    );
    let (status, _) = raw(&app, Method::POST, "/events?key=k", None, event.clone()).await;
    assert_eq!(status, 200);
    let mut limited = false;
    for _ in 0..200 {
        let (status, body) = raw(&app, Method::POST, "/events", Some("k"), event.clone()).await;
        if status == 429 {
            assert!(body["error"].is_string());
            limited = true;
            break;
        }
    }
    assert!(limited, "200 lookups in a row were not rate-limited");
}

/// `/health` answers 503 (JSON) when the sweeper has not passed for more
/// than three ticks, and 200 once it does.
#[tokio::test]
async fn health_reports_a_stalled_sweeper() {
    let db = ork_tests::db::sqlite().await;
    let handlers = TestApp::builder(db.store.clone()).spawn().await.handlers;
    let health = Arc::new(ork_api::http::Health::new(Duration::from_millis(300)));
    let app = ork_api::http::router_with_health(handlers, Some(health.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/health", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let get = || async {
        let r = reqwest::get(&url).await.unwrap();
        (
            r.status().as_u16(),
            r.json::<serde_json::Value>().await.unwrap(),
        )
    };
    health.passed();
    assert_eq!(get().await.0, 200);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (status, body) = get().await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("sweeper"),
        "{body}"
    );
    health.passed();
    assert_eq!(get().await.0, 200);
    health.died();
    assert_eq!(get().await.0, 503);
}
