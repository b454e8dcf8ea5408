//! Day-two controls on both backends: backfills (one run per slot,
//! idempotent with the schedule, `max_parallel` kept under 16 racing
//! callers, sampled from the events table), pause/unpause, deleting a
//! version without runs, and the cost of a run from its attempts (stored
//! when it is finalized, for run lists).

use ork_tests::db as common;
use ork_tests::on_both_backends;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::*;
use ork_core::engine::{BackfillRequest, TriggerOptions};
use ork_core::executor::{
    Completion, Dispatch, DispatchRequest, Executor, ExecutorError, Executors, Outcome,
};
use ork_core::model::{Run, RunStatus};
use ork_core::spec::{parse_bound, ExecutorKind};
use ork_core::Error;

const DAILY: &str = r#"
name: daily
schedule: "0 6 * * *"
tasks:
  load: {executor: noop}
"#;

const HOURLY: &str = r#"
name: hourly
schedule: "0 * * * *"
tasks:
  a: {executor: noop}
  b: {executor: noop, depends_on: [a]}
"#;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn week() -> BackfillRequest {
    BackfillRequest {
        from: parse_bound("2026-11-01", false).unwrap(),
        until: parse_bound("2026-11-07", true).unwrap(),
        max_parallel: None,
        rerun: false,
    }
}

async fn runs_of(db: &TestDb, workflow: &str) -> Vec<Run> {
    db.store.list_runs(Some(workflow), 1000).await.unwrap()
}

async fn backfill_runs_each_slot_once_and_respects_the_schedule(db: TestDb) {
    let engine = noop_engine(db.store.clone());
    engine.apply(&parse(DAILY), None).await.unwrap();
    // The schedule already ran the 3rd.
    let third = at("2026-11-03T06:00:00Z");
    let opts = TriggerOptions {
        trigger: "schedule".into(),
        idempotency_key: Some(format!("schedule:{}", third.to_rfc3339())),
    };
    engine
        .trigger("daily", serde_json::json!({ "slot": third }), opts)
        .await
        .unwrap();

    let b = engine.backfill("daily", week()).await.unwrap();
    assert_eq!(b.slots.len(), 7, "{:?}", b.slots);
    assert_eq!(b.slots[0], at("2026-11-01T06:00:00Z"));
    assert_eq!(b.slots[6], at("2026-11-07T06:00:00Z"));
    assert_eq!((b.started.len(), b.existing, b.waiting), (6, 1, 0));
    let runs = runs_of(&db, "daily").await;
    assert_eq!(runs.len(), 7);
    let slots: BTreeSet<String> = runs.iter().map(|r| r.params["slot"].to_string()).collect();
    assert_eq!(slots.len(), 7, "one run per slot");
    assert_eq!(runs.iter().filter(|r| r.trigger == "backfill").count(), 6);

    // Again: nothing new. With --rerun: every slot once more.
    let again = engine.backfill("daily", week()).await.unwrap();
    assert_eq!((again.started.len(), again.existing), (0, 7));
    let rerun = engine
        .backfill(
            "daily",
            BackfillRequest {
                rerun: true,
                ..week()
            },
        )
        .await
        .unwrap();
    assert_eq!(rerun.started.len(), 7);
    assert_eq!(runs_of(&db, "daily").await.len(), 14);
    assert!(db.store.active_backfills().await.unwrap().is_empty());

    // Bad requests are named.
    let err = engine
        .backfill(
            "daily",
            BackfillRequest {
                max_parallel: Some(0),
                ..week()
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("max_parallel must be at least 1"),
        "{err}"
    );
    let err = engine
        .backfill(
            "daily",
            BackfillRequest {
                from: at("2026-11-07T00:00:00Z"),
                until: at("2026-11-01T00:00:00Z"),
                ..week()
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("must be before"), "{err}");
    let far = BackfillRequest {
        until: at("2100-01-01T00:00:00Z"),
        ..week()
    };
    engine
        .apply(
            &parse(
                &HOURLY
                    .replace("name: hourly", "name: minutely")
                    .replace("0 * * * *", "* * * * *"),
            ),
            None,
        )
        .await
        .unwrap();
    let err = engine.backfill("minutely", far).await.unwrap_err();
    assert!(err.to_string().contains("more than 10000 slots"), "{err}");
    engine
        .apply(&parse("name: plain\ntasks:\n  a: {executor: noop}\n"), None)
        .await
        .unwrap();
    let err = engine.backfill("plain", week()).await.unwrap_err();
    assert!(err.to_string().contains("has no schedule"), "{err}");
}

/// 24 hourly slots, at most 2 open, driven by 16 callers that each advance
/// open runs and continue backfills as fast as they can.
async fn backfill_max_parallel_holds_under_racing_callers(db: TestDb) {
    let engine = Arc::new(noop_engine(db.store.clone()));
    engine.apply(&parse(HOURLY), None).await.unwrap();
    let req = BackfillRequest {
        from: parse_bound("2026-11-01", false).unwrap(),
        until: parse_bound("2026-11-01", true).unwrap(),
        max_parallel: Some(2),
        rerun: false,
    };
    let b = engine.backfill("hourly", req).await.unwrap();
    assert_eq!((b.slots.len(), b.started.len(), b.waiting), (24, 2, 22));

    let mut callers = Vec::new();
    for _ in 0..16 {
        let engine = engine.clone();
        callers.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while tokio::time::Instant::now() < deadline {
                let open = engine.store().open_runs(100).await.unwrap();
                let active = engine.store().active_backfills().await.unwrap();
                if open.is_empty() && active.is_empty() {
                    return;
                }
                for run in open {
                    engine.advance(run.id).await.unwrap();
                }
                engine.continue_backfills().await.unwrap();
            }
            panic!("the backfill did not finish");
        }));
    }
    for c in callers {
        c.await.unwrap();
    }
    let runs = runs_of(&db, "hourly").await;
    assert_eq!(runs.len(), 24);
    assert!(runs
        .iter()
        .all(|r| r.status == RunStatus::Success && r.trigger == "backfill"));
    let slots: BTreeSet<String> = runs.iter().map(|r| r.params["slot"].to_string()).collect();
    assert_eq!(slots.len(), 24);

    // Concurrency sampled from the events: +1 at a run's creation, -1 at its end.
    let mut events = Vec::new();
    for r in &runs {
        for e in db.store.run_events(r.id).await.unwrap() {
            if e.task_id.is_none() && matches!(e.status.as_str(), "pending" | "success") {
                events.push((e.id, e.status == "pending"));
            }
        }
    }
    events.sort();
    let (mut open, mut max) = (0i64, 0i64);
    for (_, opened) in &events {
        open += if *opened { 1 } else { -1 };
        max = max.max(open);
    }
    assert_eq!(events.len(), 48, "{events:?}");
    assert_eq!(max, 2, "at most max_parallel backfill runs open at once");
}

async fn pause_stops_the_schedule_and_unpause_resumes_from_now(db: TestDb) {
    let engine = Arc::new(noop_engine(db.store.clone()));
    let yaml =
        "name: tick\nschedule: \"* * * * *\"\ncatchup: true\ntasks:\n  a: {executor: noop}\n";
    engine.apply(&parse(yaml), None).await.unwrap();
    let now = Utc::now();
    assert!(engine.next_due(now).await.unwrap().at.is_some());

    engine.set_paused("tick", true).await.unwrap();
    let listed = db.store.list_workflows().await.unwrap();
    assert!(listed[0].paused);
    // Racing sweeps an hour on fire nothing; the next due time has no slot.
    let later = now + chrono::Duration::hours(1);
    let fired = futures::future::join_all((0..8).map(|_| engine.fire_schedules(later))).await;
    assert!(fired.into_iter().all(|f| f.unwrap().is_empty()));
    assert_eq!(engine.next_due(now).await.unwrap().at, None);
    // Manual triggers still run.
    let t = engine
        .trigger("tick", serde_json::json!({}), TriggerOptions::default())
        .await
        .unwrap();
    assert!(t.created);

    let unpaused_at = Utc::now();
    engine.set_paused("tick", false).await.unwrap();
    assert!(!db.store.list_workflows().await.unwrap()[0].paused);
    // Catching up starts at the unpause, not at the pause: 3 minutes → ≤ 3 slots.
    let soon = unpaused_at + chrono::Duration::minutes(3);
    let fired: Vec<Vec<uuid::Uuid>> =
        futures::future::join_all((0..8).map(|_| engine.fire_schedules(soon)))
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
    let fired: Vec<uuid::Uuid> = fired.into_iter().flatten().collect();
    assert!((2..=3).contains(&fired.len()), "{fired:?}");
    let unique: BTreeSet<_> = fired.iter().collect();
    assert_eq!(
        unique.len(),
        fired.len(),
        "racing sweeps fire each slot once"
    );
    for id in fired {
        let run = db.store.get_run(id).await.unwrap();
        let slot: DateTime<Utc> = serde_json::from_value(run.params["slot"].clone()).unwrap();
        assert!(slot > unpaused_at, "{slot} fired from before the unpause");
    }
    let err = engine.set_paused("nope", true).await.unwrap_err();
    assert!(matches!(err, Error::WorkflowNotFound(_)), "{err}");
}

async fn only_a_version_without_runs_and_not_the_latest_is_deleted(db: TestDb) {
    let engine = noop_engine(db.store.clone());
    let v = |n: u32| {
        parse(&format!(
            "name: w\ntasks:\n  a: {{executor: noop, task_count: {n}}}\n"
        ))
    };
    assert_eq!(engine.apply(&v(1), None).await.unwrap().version, 1);
    assert_eq!(engine.apply(&v(2), None).await.unwrap().version, 2);
    engine
        .trigger("w", serde_json::json!({}), TriggerOptions::default())
        .await
        .unwrap();
    let err = engine.delete_version("w", 2).await.unwrap_err();
    assert!(err.to_string().contains("is the latest"), "{err}");
    assert_eq!(engine.apply(&v(3), None).await.unwrap().version, 3);
    let err = engine.delete_version("w", 2).await.unwrap_err();
    assert!(err.to_string().contains("has 1 runs"), "{err}");
    engine.delete_version("w", 1).await.unwrap();
    let versions: Vec<i64> = db
        .store
        .workflow_versions("w")
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, vec![3, 2]);
    let err = engine.delete_version("w", 1).await.unwrap_err();
    assert!(err.to_string().contains("has no version 1"), "{err}");
    // Numbers are not reused.
    assert_eq!(engine.apply(&v(4), None).await.unwrap().version, 4);
    let err = engine.delete_version("nope", 1).await.unwrap_err();
    assert!(matches!(err, Error::WorkflowNotFound(_)), "{err}");
}

/// Starts every attempt; the test ends them.
struct Starting;

#[async_trait]
impl Executor for Starting {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        Ok(Dispatch::Started {
            execution_id: format!("exec-{}-{}", req.attempt.task_id, req.attempt.attempt),
        })
    }
}

const PRICED: &str = r#"
name: priced
tasks:
  big:
    executor: fargate
    fargate: {cluster: c, task_definition: td:1, container: main, subnets: [s-1], cpu: 1024, memory: 2048}
    retries: {count: 1, backoff: 0s}
  free: {executor: noop, depends_on: [big]}
"#;

async fn cost_is_attempt_time_times_resources_plus_invocations(db: TestDb) {
    let executors = Executors::new()
        .with(ExecutorKind::Fargate, Arc::new(Starting))
        .with(
            ExecutorKind::Noop,
            Arc::new(ork_core::executor::NoopExecutor),
        );
    let engine = engine_with(db.store.clone(), executors);
    engine.apply(&parse(PRICED), None).await.unwrap();
    let run = engine
        .trigger("priced", serde_json::json!({}), TriggerOptions::default())
        .await
        .unwrap()
        .run;
    // Attempt 1 runs 300 ms and fails; attempt 2 runs 300 ms and succeeds.
    for outcome in [Outcome::failure(Some(1), "boom"), Outcome::success(None)] {
        engine.advance(run.id).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let task = db
            .store
            .run_tasks(run.id)
            .await
            .unwrap()
            .into_iter()
            .find(|t| t.name == "big")
            .unwrap();
        let done = engine
            .complete(&[Completion {
                attempt: task.attempt_ref("priced", run.version),
                outcome,
            }])
            .await
            .unwrap();
        assert_eq!(done.applied(), 1);
    }
    engine.advance(run.id).await.unwrap();
    assert_eq!(
        db.store.get_run(run.id).await.unwrap().status,
        RunStatus::Success
    );

    let cost = engine.run_cost(run.id).await.unwrap();
    let big = cost.tasks.iter().find(|t| t.name == "big").unwrap();
    let free = cost.tasks.iter().find(|t| t.name == "free").unwrap();
    assert_eq!(big.attempts, 2);
    assert!((0.6..5.0).contains(&big.seconds), "{big:?}");
    let p = &engine.config().prices;
    let rate = p.fargate_vcpu_second + 2.0 * p.fargate_gb_second;
    assert!((big.usd - big.seconds * rate).abs() < 1e-12, "{big:?}");
    assert_eq!(free.usd, 0.0);
    // Trigger + (2 + 1 attempts) × (dispatch + report).
    assert_eq!(cost.invocations, 7);
    assert!((cost.control_plane_usd - 7.0 * p.per_invocation()).abs() < 1e-15);
    assert!((cost.total_usd - big.usd - cost.control_plane_usd).abs() < 1e-12);
    // Finished: the cost no longer changes.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(engine.run_cost(run.id).await.unwrap(), cost);
}

/// Reports how the attempt of `name` in `run` ended; returns how many
/// completions applied.
async fn end(
    engine: &ork_core::engine::Engine,
    db: &TestDb,
    run: &Run,
    name: &str,
    outcome: Outcome,
) -> usize {
    let task = db
        .store
        .run_tasks(run.id)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == name)
        .unwrap();
    let done = engine
        .complete(&[Completion {
            attempt: task.attempt_ref(&run.workflow, run.version),
            outcome,
        }])
        .await
        .unwrap();
    done.applied()
}

/// The run's stored cost (`runs.cost_usd`), as `GET /api/runs` lists it.
async fn listed_cost(db: &TestDb, run: &Run) -> Option<f64> {
    let listed = runs_of(db, &run.workflow).await;
    let row = listed.iter().find(|r| r.id == run.id).unwrap();
    assert_eq!(
        row.cost_usd,
        db.store.get_run(run.id).await.unwrap().cost_usd
    );
    row.cost_usd
}

/// `PRICED` with a local process in place of the Fargate task.
const UNPRICED: &str = r#"
name: unpriced
tasks:
  big: {command: "true", retries: {count: 0}}
  free: {executor: noop, depends_on: [big]}
"#;

/// The cost a run list shows is stored by the transaction that finalizes
/// the run, equal to what `run_cost` computes from the events; a retry
/// clears it and the next finalization stores it again; a cancel stores it.
async fn finalizing_a_run_stores_its_cost(db: TestDb) {
    let executors = Executors::new()
        .with(ExecutorKind::Fargate, Arc::new(Starting))
        .with(ExecutorKind::Process, Arc::new(Starting))
        .with(
            ExecutorKind::Noop,
            Arc::new(ork_core::executor::NoopExecutor),
        );
    let engine = engine_with(db.store.clone(), executors);
    // Fargate is priced per second; a local process is not (its run's cost
    // is its control plane's, counted by the database).
    for yaml in [PRICED.replace("count: 1", "count: 0"), UNPRICED.into()] {
        stores_its_cost(&engine, &db, &parse(&yaml)).await;
    }
}

async fn stores_its_cost(
    engine: &ork_core::engine::Engine,
    db: &TestDb,
    spec: &ork_core::spec::WorkflowSpec,
) {
    engine.apply(spec, None).await.unwrap();
    let priced = spec.name == "priced";
    let trigger = || async {
        engine
            .trigger(&spec.name, serde_json::json!({}), TriggerOptions::default())
            .await
            .unwrap()
            .run
    };
    let run = trigger().await;
    engine.advance(run.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(listed_cost(db, &run).await, None, "open: no cost yet");

    // `big` fails for good: the run fails, `free` is skipped.
    let boom = Outcome::failure(Some(1), "boom");
    assert_eq!(end(engine, db, &run, "big", boom.clone()).await, 1);
    assert_eq!(
        db.store.get_run(run.id).await.unwrap().status,
        RunStatus::Failed
    );
    let failed = engine.run_cost(run.id).await.unwrap();
    assert_eq!(failed.compute_usd > 0.0, priced, "{failed:?}");
    assert_eq!(listed_cost(db, &run).await, Some(failed.total_usd));

    // A retry reopens it and clears the figure; finalizing sets it again.
    assert!(engine.retry(run.id, None).await.unwrap().is_some());
    assert_eq!(listed_cost(db, &run).await, None, "reopened: no cost");
    engine.advance(run.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        end(engine, db, &run, "big", Outcome::success(None)).await,
        1
    );
    engine.advance(run.id).await.unwrap();
    assert_eq!(
        db.store.get_run(run.id).await.unwrap().status,
        RunStatus::Success
    );
    let succeeded = engine.run_cost(run.id).await.unwrap();
    assert!(succeeded.total_usd > failed.total_usd, "{succeeded:?}");
    assert_eq!(listed_cost(db, &run).await, Some(succeeded.total_usd));
    // A late report of the run's attempts changes neither.
    assert_eq!(end(engine, db, &run, "big", boom).await, 0);
    assert_eq!(listed_cost(db, &run).await, Some(succeeded.total_usd));

    // A cancel stores the cost of the attempt it stopped, too.
    let cancelled = trigger().await;
    engine.advance(cancelled.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(engine.cancel(cancelled.id).await.unwrap());
    let cost = engine.run_cost(cancelled.id).await.unwrap();
    assert_eq!(cost.compute_usd > 0.0, priced, "{cost:?}");
    assert_eq!(listed_cost(db, &cancelled).await, Some(cost.total_usd));
    assert!(!engine.cancel(cancelled.id).await.unwrap());
    assert_eq!(listed_cost(db, &cancelled).await, Some(cost.total_usd));
}

/// The same controls through the HTTP API, key-protected.
async fn operations_over_http(db: TestDb) {
    let executors = Executors::new().with(
        ExecutorKind::Noop,
        Arc::new(ork_core::executor::NoopExecutor),
    );
    let app = ork_tests::app::TestApp::builder(db.store.clone())
        .executors(executors)
        .api_key("k")
        .spawn()
        .await;
    app.engine.apply(&parse(DAILY), None).await.unwrap();
    let url = |p: &str| format!("{}{p}", app.url);
    let get = |p: String| {
        let req = app.http.get(p).bearer_auth("k");
        async move {
            let r = req.send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };

    let anonymous = app
        .http
        .post(url("/api/workflows/daily/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let (status, body) = app
        .post("/api/workflows/daily/pause", &serde_json::json!({}))
        .await;
    assert_eq!(
        (status, body["paused"].as_bool()),
        (200, Some(true)),
        "{body}"
    );
    let (_, list) = get(url("/api/workflows")).await;
    assert_eq!(list[0]["paused"], true, "{list}");
    let (_, page) = get(url("/api/workflows/daily")).await;
    assert_eq!(page["paused"], true);
    let (status, _) = app
        .post("/api/workflows/nope/pause", &serde_json::json!({}))
        .await;
    assert_eq!(status, 404);

    let (status, body) = app
        .post(
            "/api/workflows/daily/backfill",
            &serde_json::json!({"from": "2026-11-01", "to": "2026-11-03", "max_parallel": 1}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["slots"].as_array().unwrap().len(), 3);
    assert_eq!(body["started"].as_array().unwrap().len(), 1);
    assert_eq!(body["waiting"], 2);
    // The sweeper (here called directly) starts the rest as runs end.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let runs = runs_of(&db, "daily").await;
        if runs.len() == 3 && runs.iter().all(|r| r.status == RunStatus::Success) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{runs:?}");
        app.engine.sweep().await.unwrap();
    }
    for (bad, says) in [
        (
            serde_json::json!({"from": "nope", "to": "2026-11-03"}),
            "from:",
        ),
        (
            serde_json::json!({"from": "2026-11-01"}),
            "missing field `to`",
        ),
        (
            serde_json::json!({"from": "2026-11-01", "to": "2026-11-03", "x": 1}),
            "unknown field",
        ),
    ] {
        let (status, body) = app.post("/api/workflows/daily/backfill", &bad).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains(says), "{body}");
    }

    let run = &runs_of(&db, "daily").await[0];
    let (status, cost) = get(url(&format!("/api/runs/{}/cost", run.id))).await;
    assert_eq!(status, 200, "{cost}");
    assert_eq!(cost["invocations"], 3);
    assert_eq!(cost["tasks"].as_array().unwrap().len(), 1);
    let (_, detail) = get(url(&format!("/api/runs/{}", run.id))).await;
    assert_eq!(detail["cost"], cost);
    let (_, summary) = get(url(&format!("/api/runs/{}/summary", run.id))).await;
    assert_eq!(summary["cost"]["total_usd"], cost["total_usd"]);
    assert_eq!(summary["nodes"][0]["cost_usd"], 0.0);

    let r = app
        .http
        .delete(url("/api/workflows/daily/versions/1"))
        .bearer_auth("k")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("is the latest"),
        "{body}"
    );
}

on_both_backends!(
    operations_over_http,
    backfill_runs_each_slot_once_and_respects_the_schedule,
    backfill_max_parallel_holds_under_racing_callers,
    pause_stops_the_schedule_and_unpause_resumes_from_now,
    only_a_version_without_runs_and_not_the_latest_is_deleted,
    cost_is_attempt_time_times_resources_plus_invocations,
    finalizing_a_run_stores_its_cost,
);
