//! The web UI's read API, login cookie and actions over real HTTP, on both
//! backends: run filters and pages, the run summary (one node per task
//! name with counts per status, laid out by layers), task pages, attempts,
//! logs, events, the SSE stream, cancel, retry, workflows, and the session cookie.

use ork_tests::app::TestApp;
use ork_tests::db::*;
use ork_tests::on_both_backends;

use std::sync::Arc;

use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError, Executors};
use ork_core::spec::ExecutorKind;
use serde_json::{json, Value};

const FAN: &str = r#"
name: fan
tasks:
  start: {executor: noop}
  many: {executor: noop, depends_on: [start], task_count: 250}
  end: {executor: noop, depends_on: [many]}
"#;

const STUCK: &str = "name: stuck\ntasks:\n  wait: {executor: mock}\n";

/// Accepts every attempt and never reports: a run that stays running.
struct Hanging;

#[async_trait::async_trait]
impl Executor for Hanging {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        Ok(Dispatch::Started {
            execution_id: req.attempt.task_id.to_string(),
        })
    }
}

async fn app(db: &TestDb, key: Option<&str>) -> TestApp {
    let executors = Executors::new()
        .with(
            ExecutorKind::Noop,
            Arc::new(ork_core::executor::NoopExecutor),
        )
        .with(ExecutorKind::Mock, Arc::new(Hanging));
    let mut b = TestApp::builder(db.store.clone()).executors(executors);
    if let Some(key) = key {
        b = b.api_key(key);
    }
    let app = b.spawn().await;
    for yaml in [FAN, STUCK] {
        app.engine.apply(&parse(yaml), None).await.unwrap();
    }
    app
}

async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let mut req = app.http.get(format!("{}{path}", app.url));
    if let Some(key) = &app.api_key {
        req = req.bearer_auth(key);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn finished_fan(app: &TestApp) -> String {
    let (status, body) = app.post("/trigger", &json!({"workflow": "fan"})).await;
    assert_eq!(status, 202, "{body}");
    let id = body["run_id"].as_str().unwrap().to_owned();
    for _ in 0..200 {
        let (_, run) = get(app, &format!("/api/runs/{id}")).await;
        if run["run"]["status"] == "success" {
            return id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the fan run did not succeed");
}

async fn summary_groups_instances_and_pages_them(db: TestDb) {
    let app = app(&db, None).await;
    let id = finished_fan(&app).await;
    let (status, s) = get(&app, &format!("/api/runs/{id}/summary")).await;
    assert_eq!(status, 200, "{s}");
    let nodes = s["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "one node per task name: {s}");
    let node = |n: &str| nodes.iter().find(|x| x["name"] == n).unwrap().clone();
    assert_eq!(node("many")["task_count"], 250);
    assert_eq!(node("many")["counts"]["success"], 250);
    assert_eq!(node("many")["status"], "success");
    assert_eq!(
        (
            node("start")["layer"].as_i64(),
            node("many")["layer"].as_i64(),
            node("end")["layer"].as_i64()
        ),
        (Some(0), Some(1), Some(2))
    );
    assert_eq!(s["edges"].as_array().unwrap().len(), 2);

    let (_, page) = get(
        &app,
        &format!("/api/runs/{id}/tasks?name=many&limit=100&offset=200"),
    )
    .await;
    assert_eq!(page["total"], 250);
    let tasks = page["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 50);
    assert_eq!(tasks[0]["task_index"], 200);
    let (_, none) = get(&app, &format!("/api/runs/{id}/tasks?status=failed")).await;
    assert_eq!(none["total"], 0);

    let task = tasks[0]["id"].as_str().unwrap();
    let (status, t) = get(&app, &format!("/api/runs/{id}/tasks/{task}")).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["label"], "many[200]");
    let attempts = t["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["status"], "success");
    assert!(attempts[0]["queued_at"].is_string(), "{t}");
    assert_eq!(t["input"]["params"], json!({}), "{t}");
    assert!(t["input"]["upstream"].is_object(), "{t}");
    // A noop attempt keeps no log: a note, not an error.
    let (status, log) = get(&app, &format!("/api/runs/{id}/tasks/{task}/log?attempt=1")).await;
    assert_eq!(status, 200, "{log}");
    assert!(log["log"].is_null() && log["note"].is_string(), "{log}");
    let (status, e) = get(&app, &format!("/api/runs/{id}/tasks/{task}/log?attempt=7")).await;
    assert_eq!(status, 404, "{e}");
    assert!(e["error"].is_string());

    let (_, ev) = get(&app, &format!("/api/runs/{id}/events?limit=10")).await;
    let ev = ev["events"].as_array().unwrap();
    assert_eq!(ev.len(), 10);
    let last = ev[9]["id"].as_i64().unwrap();
    let (_, more) = get(&app, &format!("/api/runs/{id}/events?after={last}&limit=5")).await;
    assert!(more["events"][0]["id"].as_i64().unwrap() > last);

    // The stream of a final run ends at once, with the run.
    let text = app
        .http
        .get(format!("{}/api/runs/{id}/stream", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("event: end") && text.contains("\"success\""),
        "{text}"
    );

    // Errors are JSON.
    for (path, want) in [
        (format!("/api/runs/{}/summary", uuid::Uuid::now_v7()), 404),
        ("/api/runs/nope/summary".to_owned(), 400),
        (format!("/api/runs/{id}/tasks?limit=x"), 400),
        ("/api/workflows/nope".to_owned(), 404),
    ] {
        let (status, body) = get(&app, &path).await;
        assert_eq!(status, want, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
}

async fn runs_filter_and_paginate_and_cancel(db: TestDb) {
    let app = app(&db, None).await;
    let done = finished_fan(&app).await;
    let (_, stuck) = app.post("/trigger", &json!({"workflow": "stuck"})).await;
    let stuck = stuck["run_id"].as_str().unwrap().to_owned();
    let (_, all) = get(&app, "/api/runs").await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    let (_, fan) = get(&app, "/api/runs?workflow=fan").await;
    assert_eq!(fan[0]["id"], done.as_str());
    assert_eq!(fan.as_array().unwrap().len(), 1);
    let (_, ok) = get(&app, "/api/runs?status=success&trigger=http").await;
    assert_eq!(ok.as_array().unwrap().len(), 1);
    let (_, none) = get(&app, "/api/runs?trigger=schedule").await;
    assert_eq!(none.as_array().unwrap().len(), 0);
    let (_, page) = get(&app, "/api/runs?limit=1&offset=1").await;
    assert_eq!(page[0]["id"], done.as_str(), "newest first: {page}");
    // The cost stored when a run ended: a figure for the finished run, null
    // for the open one; the run's own page computes the same.
    assert_eq!(all[0]["cost_usd"], json!(null), "{all}");
    let (_, finished) = get(&app, &format!("/api/runs/{done}")).await;
    assert!(all[1]["cost_usd"].as_f64().unwrap() > 0.0, "{all}");
    assert_eq!(all[1]["cost_usd"], finished["cost"]["total_usd"], "{all}");

    let (status, c) = app
        .post(&format!("/api/runs/{stuck}/cancel"), &json!({}))
        .await;
    assert_eq!((status, c["cancelled"].clone()), (200, json!(true)), "{c}");
    let (_, again) = app
        .post(&format!("/api/runs/{stuck}/cancel"), &json!({}))
        .await;
    assert_eq!(again["cancelled"], false);
    let (_, run) = get(&app, &format!("/api/runs/{stuck}")).await;
    assert_eq!(run["run"]["status"], "cancelled");
    assert_eq!(run["run"]["cost_usd"], run["cost"]["total_usd"], "{run}");
    let (status, _) = app
        .post(
            &format!("/api/runs/{}/cancel", uuid::Uuid::now_v7()),
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);
}

async fn workflows_show_versions_source_graph_and_schedule(db: TestDb) {
    let app = app(&db, None).await;
    let yaml = "name: nightly\nschedule: '0 3 * * *'\ntasks:\n  a: {executor: noop}\n  b: {executor: noop, depends_on: [a]}\n";
    app.engine
        .apply(&parse(yaml), Some(yaml.into()))
        .await
        .unwrap();
    let v2 = yaml.replace("b: {", "c: {executor: noop}\n  b: {");
    app.engine
        .apply(&parse(&v2), Some(v2.clone()))
        .await
        .unwrap();
    let (_, list) = get(&app, "/api/workflows").await;
    let nightly = list
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "nightly")
        .unwrap();
    assert_eq!(nightly["latest_version"], 2);
    assert_eq!(nightly["schedule"]["next"].as_array().unwrap().len(), 3);
    let (status, w) = get(&app, "/api/workflows/nightly").await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["version"], 2);
    assert_eq!(w["yaml"], v2.as_str());
    assert_eq!(w["versions"].as_array().unwrap().len(), 2);
    assert_eq!(w["graph"]["nodes"].as_array().unwrap().len(), 3);
    let next = w["schedule"]["next"].as_array().unwrap();
    assert_eq!(next.len(), 5);
    assert!(next[0].as_str().unwrap().contains("T03:00:00"), "{next:?}");
    let (_, v1) = get(&app, "/api/workflows/nightly?version=1").await;
    assert_eq!(v1["yaml"], yaml);
}

async fn the_session_cookie_stands_for_the_key(db: TestDb) {
    let app = app(&db, Some("k3y")).await;
    let anon = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", app.url);
    let (status, s) = {
        let r = anon.get(url("/api/session")).send().await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 200);
    assert_eq!(s, json!({"auth_required": true, "authenticated": false}));
    for path in ["/api/runs", "/api/workflows"] {
        let r = anon.get(url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path}");
        assert!(r.json::<Value>().await.unwrap()["error"].is_string());
    }
    let r = anon
        .post(url("/login"))
        .json(&json!({"key": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let r = anon
        .post(url("/login"))
        .json(&json!({"key": "k3y"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("k3y"),
        "the cookie is not the key: {cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let with = |rb: reqwest::RequestBuilder| rb.header("cookie", pair.clone());
    let r = with(anon.get(url("/api/runs"))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = with(anon.post(url("/trigger")))
        .json(&json!({"workflow": "stuck"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let run = r.json::<Value>().await.unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = with(anon.post(url(&format!("/api/runs/{run}/cancel"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = with(anon.get(url("/api/runs")))
        .header("cookie", "ork_session=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "the real cookie still counts");
    let r = anon
        .get(url("/api/runs"))
        .header("cookie", "ork_session=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = anon.post(url("/logout")).send().await.unwrap();
    let cleared = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    // The page and its assets are served without a key, from the binary.
    for (path, kind) in [
        ("/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let r = anon.get(url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("https://"),
            "{path} loads nothing from elsewhere"
        );
    }
}

async fn retry_reopens_a_run_over_http(db: TestDb) {
    let app = app(&db, Some("k3y")).await;
    let done = finished_fan(&app).await;
    let (_, stuck) = app.post("/trigger", &json!({"workflow": "stuck"})).await;
    let stuck = stuck["run_id"].as_str().unwrap().to_owned();
    let retry = format!("/api/runs/{stuck}/retry");
    // Still running: nothing to retry.
    let (status, body) = app.post(&retry, &json!({})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("only a failed or cancelled run"));
    let (status, _) = app
        .post(&format!("/api/runs/{stuck}/cancel"), &json!({}))
        .await;
    assert_eq!(status, 200);

    let anon = reqwest::Client::new();
    let r = anon
        .post(format!("{}{retry}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let (status, body) = app.post(&retry, &json!({"tasks": "wait"})).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = app.post(&retry, &json!({"task": "nope"})).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains(r#"no task "nope""#),
        "{body}"
    );

    let (status, body) = app.post(&retry, &json!({"task": "wait"})).await;
    assert_eq!(
        (status, &body["retried"], &body["tasks"]),
        (200, &json!(true), &json!(1)),
        "{body}"
    );
    // The handler asked for the run's advance: a new attempt is dispatched.
    let mut attempt = Value::Null;
    for _ in 0..100 {
        let (_, page) = get(&app, &format!("/api/runs/{stuck}/tasks")).await;
        attempt = page["tasks"][0].clone();
        if attempt["attempt"] == 2 && attempt["status"] == "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        (&attempt["attempt"], &attempt["status"]),
        (&json!(2), &json!("running")),
        "{attempt}"
    );
    let (status, _) = app.post(&retry, &json!({})).await;
    assert_eq!(status, 409, "reopened once");
    let (status, _) = app
        .post(&format!("/api/runs/{done}/retry"), &json!({}))
        .await;
    assert_eq!(status, 409, "a successful run has nothing to retry");
    let (status, _) = app
        .post(
            &format!("/api/runs/{}/retry", uuid::Uuid::now_v7()),
            &json!({}),
        )
        .await;
    assert_eq!(status, 404);
}

on_both_backends!(
    retry_reopens_a_run_over_http,
    summary_groups_instances_and_pages_them,
    runs_filter_and_paginate_and_cancel,
    workflows_show_versions_source_graph_and_schedule,
    the_session_cookie_stands_for_the_key,
);
