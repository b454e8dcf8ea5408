//! The web UI: its pages (one HTML document, a script and a stylesheet,
//! embedded in the binary: no CDN, nothing downloaded at run time), the
//! login cookie, and the JSON read API the pages (and any client) use:
//!
//! - `GET /api/runs/{id}/summary`: the run, its DAG laid out by layers
//!   ([`layout`]) with instance counts per status for each task name;
//! - `GET /api/runs/{id}/tasks?name=&status=&limit=&offset=`: a page of instances;
//! - `GET /api/runs/{id}/tasks/{task_id}`: one instance, its attempts and events;
//! - `GET /api/runs/{id}/tasks/{task_id}/log?attempt=N`: a local attempt's
//!   log, or a link to a cloud attempt's in its console;
//! - `GET /api/runs/{id}/tasks/{task_id}/output`: the output as a download,
//!   streamed from the payload store when it is large;
//! - `GET /api/runs/{id}/events?after=&limit=`: the run's event history;
//! - `GET /api/runs/{id}/stream`: server-sent events while the run changes;
//! - `POST /api/runs/{id}/cancel`: [`ork_core::engine::Engine::cancel`];
//! - `POST /api/runs/{id}/retry` (`{"task": …}` optional):
//!   [`ork_core::engine::Engine::retry`], then an advance of the run;
//!   (pause, backfill, version deletion and `/cost` are in `crate::operations`);
//! - `GET /api/workflows`, `GET /api/workflows/{name}?version=`;
//! - `GET /api/session`, `POST /login`, `POST /logout`.

pub mod layout;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::handlers::{Handlers, Reply, SESSION_COOKIE};
use crate::http::check;
use ork_core::model::{Event, Task};
use ork_core::spec::Schedule;

/// The pages' routes, merged into [`crate::http::router`].
pub fn routes() -> Router<Arc<Handlers>> {
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route("/ui", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/ui/app.js",
            get(|| asset("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/ui/app.css",
            get(|| asset("text/css; charset=utf-8", APP_CSS)),
        )
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/api/session", get(session))
        .route("/api/runs/{id}/summary", get(summary))
        .route("/api/runs/{id}/tasks", get(tasks))
        .route("/api/runs/{id}/tasks/{task_id}", get(task))
        .route("/api/runs/{id}/tasks/{task_id}/log", get(log))
        .route("/api/runs/{id}/tasks/{task_id}/output", get(output))
        .route("/api/runs/{id}/events", get(events))
        .route("/api/runs/{id}/stream", get(stream))
        .route("/api/runs/{id}/cancel", post(cancel))
        .route("/api/runs/{id}/retry", post(retry))
        .route("/api/workflows", get(workflows))
        .route("/api/workflows/{name}", get(workflow))
}

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// A path segment that must be a UUID.
type IdPath = Result<Path<Uuid>, axum::extract::rejection::PathRejection>;
type TaskPath = Result<Path<(Uuid, Uuid)>, axum::extract::rejection::PathRejection>;

fn bad_id() -> Response {
    Reply::error(400, "the run or task id is not a UUID").into_response()
}

fn engine_error(e: ork_core::Error) -> Response {
    Reply::from_engine(e).into_response()
}

// ---- login ----

#[derive(Deserialize)]
struct LoginRequest {
    key: String,
}

/// `POST /login` with `{"key": …}`: checks the key
/// and sets the session cookie (HttpOnly, SameSite=Strict) that the read
/// API and the actions accept in place of the bearer header.
async fn login(State(h): State<Arc<Handlers>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<LoginRequest>(&body) else {
        return Reply::error(400, "expected {\"key\": \"<ORK_API_KEY>\"}").into_response();
    };
    let Some(token) = h.session_token() else {
        return Reply::ok_json(json!({ "authenticated": true, "auth_required": false }))
            .into_response();
    };
    if let Err(reply) = h.authorize(Some(&format!("Bearer {}", req.key))) {
        return reply.into_response();
    }
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000{}",
        secure(&headers)
    );
    with_cookie(
        Reply::ok_json(json!({ "authenticated": true, "auth_required": true })),
        &cookie,
    )
}

/// `POST /logout`: clears the session cookie.
async fn logout(headers: HeaderMap) -> Response {
    let cookie = format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        secure(&headers)
    );
    with_cookie(Reply::ok_json(json!({ "authenticated": false })), &cookie)
}

/// `; Secure` behind HTTPS (a Lambda Function URL forwards the scheme).
fn secure(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    if https {
        "; Secure"
    } else {
        ""
    }
}

fn with_cookie(reply: Reply, cookie: &str) -> Response {
    let mut response = reply.into_response();
    if let Ok(v) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// `GET /api/session`: whether a key is required and the caller has it.
async fn session(State(h): State<Arc<Handlers>>, headers: HeaderMap) -> Reply {
    Reply::ok_json(json!({
        "auth_required": h.api_key.is_some(),
        "authenticated": check(&h, &headers).is_ok(),
    }))
}

// ---- runs ----

/// The run, and one node per task name: instance counts per status, the
/// earliest queue and start and the latest end, on a layered layout.
async fn summary(State(h): State<Arc<Handlers>>, id: IdPath, headers: HeaderMap) -> Response {
    let Ok(Path(id)) = id else { return bad_id() };
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    let store = h.engine.store();
    let run = match store.get_run(id).await {
        Ok(run) => run,
        Err(e) => return engine_error(e),
    };
    let groups = match store.run_task_groups(id).await {
        Ok(g) => g,
        Err(e) => return engine_error(e),
    };
    let spec = match store.workflow_spec(&run.workflow, Some(run.version)).await {
        Ok((_, spec)) => spec,
        Err(e) => return engine_error(e),
    };
    let mut deps = layout::deps_of_spec(&spec);
    for g in &groups {
        deps.entry(g.name.clone()).or_default();
    }
    let laid = layout::layout(&deps);
    let mut by_name: BTreeMap<&str, Value> = BTreeMap::new();
    for g in &groups {
        let node = by_name.entry(g.name.as_str()).or_insert_with(|| {
            json!({ "task_count": g.task_count, "executor": g.executor, "counts": {},
                    "max_attempt": 0, "ready_at": null, "started_at": null, "finished_at": null })
        });
        node["counts"][&g.status] = json!(g.n);
        node["max_attempt"] = json!(node["max_attempt"].as_i64().unwrap_or(0).max(g.max_attempt));
        let earliest = |field: &str, t: Option<chrono::DateTime<Utc>>, node: &mut Value| {
            let Some(t) = t else { return };
            let cur = node[field]
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
            let later_than_cur = field == "finished_at";
            let replace = match cur {
                None => true,
                Some(c) if later_than_cur => t > c,
                Some(c) => t < c,
            };
            if replace {
                node[field] = json!(t);
            }
        };
        earliest("ready_at", g.ready_at.or(g.dispatched_at), node);
        earliest("started_at", g.started_at, node);
        earliest("finished_at", g.finished_at, node);
    }
    let nodes: Vec<Value> = laid
        .nodes
        .iter()
        .map(|p| {
            let mut node = by_name.remove(p.name.as_str()).unwrap_or_else(
                || json!({ "task_count": 0, "executor": null, "counts": {}, "max_attempt": 0 }),
            );
            let status = group_status(&node["counts"]);
            let open = node["counts"].as_object().is_some_and(|c| {
                c.iter()
                    .any(|(s, _)| matches!(s.as_str(), "pending" | "dispatched" | "running"))
            });
            if open {
                node["finished_at"] = Value::Null;
            }
            node["name"] = json!(p.name);
            node["deps"] = json!(p.deps);
            node["layer"] = json!(p.layer);
            node["x"] = json!(p.x);
            node["y"] = json!(p.y);
            node["status"] = json!(status);
            node
        })
        .collect();
    // Cost per task name (instances summed) and for the run.
    let cost = match h.engine.run_cost(run.id).await {
        Ok(c) => c,
        Err(e) => return engine_error(e),
    };
    let mut nodes = nodes;
    for node in &mut nodes {
        let name = node["name"].as_str().unwrap_or_default();
        let usd: f64 = cost
            .tasks
            .iter()
            .filter(|t| t.name == name)
            .map(|t| t.usd)
            .sum();
        node["cost_usd"] = json!(usd);
    }
    Json(json!({
        "run": run,
        "cost": { "total_usd": cost.total_usd, "compute_usd": cost.compute_usd,
                  "control_plane_usd": cost.control_plane_usd, "invocations": cost.invocations },
        "nodes": nodes,
        "edges": laid.edges,
        "width": laid.width,
        "height": laid.height,
        "node_w": laid.node_w,
        "node_h": laid.node_h,
        "now": Utc::now(),
    }))
    .into_response()
}

/// The status a task name shows: running while any instance is under
/// way, failed if any failed, else the most advanced common status.
fn group_status(counts: &Value) -> &'static str {
    let has = |s: &str| counts[s].as_i64().unwrap_or(0) > 0;
    if has("running") || has("dispatched") {
        "running"
    } else if has("failed") {
        if has("pending") {
            "running"
        } else {
            "failed"
        }
    } else if has("pending") {
        if has("success") {
            "running"
        } else {
            "pending"
        }
    } else if has("cancelled") {
        "cancelled"
    } else if has("skipped") {
        "skipped"
    } else if has("success") {
        "success"
    } else {
        "pending"
    }
}

#[derive(Deserialize)]
struct PageQuery {
    name: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/runs/{id}/tasks`: `{"tasks": [...], "total": n}`, one page.
async fn tasks(
    State(h): State<Arc<Handlers>>,
    id: IdPath,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(id)) = id else { return bad_id() };
    let Ok(Query(q)) = query else {
        return Reply::error(400, "invalid query (name, status, limit, offset)").into_response();
    };
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    let store = h.engine.store();
    if let Err(e) = store.get_run(id).await {
        return engine_error(e);
    }
    let (limit, offset) = (
        q.limit.unwrap_or(100).clamp(1, 1000),
        q.offset.unwrap_or(0).max(0),
    );
    let empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    match store
        .run_tasks_page(id, empty(q.name), empty(q.status), limit, offset)
        .await
    {
        Ok((tasks, total)) => Json(json!({
            "tasks": tasks, "total": total, "limit": limit, "offset": offset,
        }))
        .into_response(),
        Err(e) => engine_error(e),
    }
}

/// The attempts of a task instance, from its events: queued (claimed),
/// started, ended, with how each ended.
fn attempts(task: &Task, events: &[Event]) -> Vec<Value> {
    let mut by_attempt: BTreeMap<i64, Value> = BTreeMap::new();
    for e in events {
        let Some(n) = e.attempt.filter(|n| *n > 0) else {
            continue;
        };
        let a = by_attempt
            .entry(n)
            .or_insert_with(|| json!({ "attempt": n, "status": "dispatched" }));
        match e.status.as_str() {
            "dispatched" => a["queued_at"] = json!(e.at),
            "running" => {
                a["started_at"] = json!(e.at);
                a["status"] = json!("running");
            }
            other => {
                a["ended_at"] = json!(e.at);
                // A failed attempt that will be retried goes back to pending.
                a["status"] = json!(if other == "pending" { "retried" } else { other });
                if e.detail.is_some() {
                    a["error"] = json!(e.detail);
                }
            }
        }
    }
    if let Some(current) = by_attempt.get_mut(&task.attempt) {
        current["exit_code"] = json!(task.exit_code);
        if task.error.is_some() {
            current["error"] = json!(task.error);
        }
        if current.get("started_at").is_none() && task.started_at.is_some() {
            current["started_at"] = json!(task.started_at);
        }
    }
    by_attempt.into_values().collect()
}

/// `GET /api/runs/{id}/tasks/{task_id}`: the instance, its attempts, its events.
async fn task(State(h): State<Arc<Handlers>>, ids: TaskPath, headers: HeaderMap) -> Response {
    let Ok(Path((run_id, task_id))) = ids else {
        return bad_id();
    };
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    let store = h.engine.store();
    let task = match store.get_task(task_id).await {
        Ok(Some(t)) if t.run_id == run_id => t,
        Ok(_) => {
            return Reply::error(404, format!("run {run_id} has no task {task_id}")).into_response()
        }
        Err(e) => return engine_error(e),
    };
    let events = match store.task_events(run_id, task_id).await {
        Ok(e) => e,
        Err(e) => return engine_error(e),
    };
    let input = match task_input(&h, run_id, &task.name).await {
        Ok(input) => input,
        Err(e) => return engine_error(e),
    };
    let output_ref = match store.task_output(run_id, task_id).await {
        Ok(o) => o.and_then(|o| o.output_ref),
        Err(e) => return engine_error(e),
    };
    let download = (task.output.is_some() || output_ref.is_some())
        .then(|| format!("/api/runs/{run_id}/tasks/{task_id}/output"));
    Json(json!({
        "task": task, "label": task.label(), "attempts": attempts(&task, &events),
        "events": events, "input": input, "output_ref": output_ref, "download": download,
    }))
    .into_response()
}

/// `GET /api/runs/{id}/tasks/{task_id}/output`: the instance's output as a
/// JSON file to save; a large one streamed from the payload store in 64 KiB
/// chunks, so the server's memory does not grow with it.
async fn output(State(h): State<Arc<Handlers>>, ids: TaskPath, headers: HeaderMap) -> Response {
    let Ok(Path((run_id, task_id))) = ids else {
        return bad_id();
    };
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    let out = match h.engine.store().task_output(run_id, task_id).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            return Reply::error(404, format!("run {run_id} has no task {task_id}")).into_response()
        }
        Err(e) => return engine_error(e),
    };
    let file_name = format!("{}.{}.output.json", out.name, out.task_index);
    let disposition = format!(
        "attachment; filename=\"{}\"",
        file_name.replace(
            |c: char| !c.is_ascii_alphanumeric() && !".-_".contains(c),
            "_"
        )
    );
    let headers = |len: u64| {
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, disposition.clone()),
            (header::CONTENT_LENGTH, len.to_string()),
        ]
    };
    match (out.output, out.output_ref) {
        (_, Some(r)) => {
            let r: ork_core::payload::PayloadRef = match serde_json::from_value(r) {
                Ok(r) => r,
                Err(e) => {
                    return Reply::error(500, format!("bad output reference: {e}")).into_response()
                }
            };
            // In S3 or GCS: a short-lived presigned GET, so the bytes go
            // from the store to the browser, not through this server.
            let payloads = &h.engine.config().payloads;
            match payloads.presigned_get(&r, DOWNLOAD_URL_TTL).await {
                Some(Ok(url)) => {
                    return (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, url)])
                        .into_response()
                }
                Some(Err(e)) => {
                    return Reply::error(500, format!("cannot presign the output: {e}"))
                        .into_response()
                }
                None => {}
            }
            match payloads.open(&r).await {
                Some(Ok(got)) => (
                    headers(r.size),
                    axum::body::Body::from_stream(got.into_stream()),
                )
                    .into_response(),
                Some(Err(object_store::Error::NotFound { .. })) => {
                    Reply::error(410, "the output's payload was removed").into_response()
                }
                Some(Err(e)) => {
                    Reply::error(500, format!("cannot read the output: {e}")).into_response()
                }
                None => Reply::error(
                    501,
                    format!(
                        "the output is stored at {}, which this server does not read",
                        r.url
                    ),
                )
                .into_response(),
            }
        }
        (Some(v), None) => {
            let body = v.to_string();
            (headers(body.len() as u64), body).into_response()
        }
        (None, None) => Reply::error(404, "this task has no output").into_response(),
    }
}

/// How long a download link to an output in S3 or GCS stays valid.
const DOWNLOAD_URL_TTL: Duration = Duration::from_secs(15 * 60);

/// What a task starts from: the run's params, and the outputs its parents
/// left (a list, by index, for a fanned-out parent).
async fn task_input(h: &Handlers, run_id: Uuid, name: &str) -> Result<Value, ork_core::Error> {
    let store = h.engine.store();
    let run = store.get_run(run_id).await?;
    let (_, spec) = store
        .workflow_spec(&run.workflow, Some(run.version))
        .await?;
    let deps = layout::deps_of_spec(&spec).remove(name).unwrap_or_default();
    let names: Vec<&str> = deps.iter().map(String::as_str).collect();
    let mut upstream = serde_json::Map::new();
    for out in store.task_outputs(run_id, &names).await? {
        // A large output is shown by its reference (URL, size, digest).
        let value = match (out.output, out.output_ref) {
            (Some(v), _) => v,
            (None, Some(r)) => json!({ "output_ref": r }),
            (None, None) => Value::Null,
        };
        let fanned = spec["tasks"][&out.name]["task_count"].as_u64().unwrap_or(1) > 1;
        if fanned {
            let list = upstream
                .entry(out.name.clone())
                .or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut() {
                list.push(json!({ "index": out.task_index, "output": value }));
            }
        } else {
            upstream.insert(out.name.clone(), value);
        }
    }
    Ok(json!({ "params": run.params, "upstream": upstream }))
}

#[derive(Deserialize)]
struct LogQuery {
    attempt: Option<i64>,
}

/// The most of a log shown: its end.
const LOG_TAIL_BYTES: u64 = 512 * 1024;

/// `GET /api/runs/{id}/tasks/{task_id}/log?attempt=N`: the log of a local
/// attempt (the process executor's file under the log dir), its last
/// 512 KiB; for a cloud attempt, where its log lives.
async fn log(
    State(h): State<Arc<Handlers>>,
    ids: TaskPath,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path((run_id, task_id))) = ids else {
        return bad_id();
    };
    let Ok(Query(q)) = query else {
        return Reply::error(400, "attempt must be a number").into_response();
    };
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    let store = h.engine.store();
    let (run, task) = match (store.get_run(run_id).await, store.get_task(task_id).await) {
        (Ok(run), Ok(Some(t))) if t.run_id == run_id => (run, t),
        (Err(e), _) | (_, Err(e)) => return engine_error(e),
        _ => {
            return Reply::error(404, format!("run {run_id} has no task {task_id}")).into_response()
        }
    };
    let attempt = q.attempt.unwrap_or(task.attempt);
    if attempt < 1 || attempt > task.attempt {
        return Reply::error(
            404,
            format!("task {} has no attempt {attempt}", task.label()),
        )
        .into_response();
    }
    let console_url = task
        .execution_id
        .as_deref()
        .and_then(|id| console_log_url(&task.executor, id));
    let cloud_note = match task.executor.as_str() {
        "lambda" => Some("This attempt ran on AWS Lambda: its log is in CloudWatch Logs (the function's log group, /aws/lambda/<function>)."),
        "azure" => Some("This attempt ran as an Azure Container Apps Job execution: its log is in the environment's Log Analytics workspace (ContainerAppConsoleLogs_CL)."),
        "fargate" => Some("This attempt ran on ECS Fargate: its log is in CloudWatch Logs (the task definition's awslogs group)."),
        "cloudrun" => Some("This attempt ran as a Cloud Run job execution: its log is in Cloud Logging."),
        "noop" => Some("This executor runs nothing and keeps no log."),
        _ => None,
    };
    if let Some(note) = cloud_note {
        return Json(
            json!({ "attempt": attempt, "executor": task.executor, "log": null,
                    "note": note, "execution_id": task.execution_id, "console_url": console_url }),
        )
        .into_response();
    }
    let Some(dir) = &h.log_dir else {
        return Json(
            json!({ "attempt": attempt, "executor": task.executor, "log": null,
                            "note": "this server has no log directory" }),
        )
        .into_response();
    };
    let mut a = task.attempt_ref(&run.workflow, run.version);
    a.attempt = attempt;
    let path = ork_executors::process::ProcessExecutor::log_path(dir, &a);
    match read_tail(&path, LOG_TAIL_BYTES).await {
        Ok((text, truncated)) => Json(json!({
            "attempt": attempt, "executor": task.executor, "log": text, "truncated": truncated,
        }))
        .into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Json(json!({
            "attempt": attempt, "executor": task.executor, "log": null,
            "note": "no log yet (the attempt has not started, or its log was removed)",
        }))
        .into_response(),
        Err(e) => Reply::error(500, format!("cannot read the log: {e}")).into_response(),
    }
}

/// Where a cloud attempt's log is shown, built from its execution id: a
/// Cloud Run execution (`projects/P/locations/R/jobs/J/executions/E`) in
/// Cloud Logging, filtered to that execution; an ECS task
/// (`arn:aws:ecs:R:A:task/C/ID`) in the ECS console's log tab, which reads
/// CloudWatch Logs through the task definition's `awslogs` settings.
pub fn console_log_url(executor: &str, execution_id: &str) -> Option<String> {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    match executor {
        "cloudrun" => {
            let p: Vec<&str> = execution_id.split('/').collect();
            let ["projects", project, "locations", _, "jobs", job, "executions", exec] = p[..]
            else {
                return None;
            };
            let query = format!(
                "resource.type=\"cloud_run_job\"\nresource.labels.job_name=\"{job}\"\nlabels.\"run.googleapis.com/execution_name\"=\"{exec}\""
            );
            Some(format!(
                "https://console.cloud.google.com/logs/query;query={}?project={}",
                enc(&query),
                enc(project)
            ))
        }
        "fargate" => {
            let rest = execution_id.strip_prefix("arn:aws:ecs:")?;
            let (region, rest) = rest.split_once(':')?;
            let (_account, resource) = rest.split_once(':')?;
            let mut parts = resource.strip_prefix("task/")?.split('/');
            let (cluster, id) = (parts.next()?, parts.next()?);
            Some(format!(
                "https://{region}.console.aws.amazon.com/ecs/v2/clusters/{}/tasks/{}/logs?region={region}",
                enc(cluster),
                enc(id)
            ))
        }
        _ => None,
    }
}

async fn read_tail(path: &std::path::Path, max: u64) -> std::io::Result<(String, bool)> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await?;
    let len = f.metadata().await?.len();
    let truncated = len > max;
    if truncated {
        f.seek(std::io::SeekFrom::Start(len - max)).await?;
    }
    let mut bytes = Vec::new();
    f.take(max).read_to_end(&mut bytes).await?;
    Ok((String::from_utf8_lossy(&bytes).into_owned(), truncated))
}

#[derive(Deserialize)]
struct EventsQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

/// `GET /api/runs/{id}/events?after=&limit=`: `{"events": [...]}`, oldest first.
async fn events(
    State(h): State<Arc<Handlers>>,
    id: IdPath,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(id)) = id else { return bad_id() };
    let Ok(Query(q)) = query else {
        return Reply::error(400, "after and limit must be numbers").into_response();
    };
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    let store = h.engine.store();
    if let Err(e) = store.get_run(id).await {
        return engine_error(e);
    }
    let limit = q.limit.unwrap_or(200).clamp(1, 1000);
    match store.run_events_page(id, q.after.unwrap_or(0), limit).await {
        Ok(events) => Json(json!({ "events": events })).into_response(),
        Err(e) => engine_error(e),
    }
}

/// How often the stream looks for new events.
const STREAM_POLL: Duration = Duration::from_millis(500);

/// `GET /api/runs/{id}/stream`: server-sent events. A `change` event
/// (the run's row, the last event id) whenever new events were recorded,
/// then `end` once the run is final.
async fn stream(State(h): State<Arc<Handlers>>, id: IdPath, headers: HeaderMap) -> Response {
    let Ok(Path(id)) = id else { return bad_id() };
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    if let Err(e) = h.engine.store().get_run(id).await {
        return engine_error(e);
    }
    let stream = futures::stream::unfold((h, 0i64, false), move |(h, last, done)| async move {
        if done {
            return None;
        }
        let store = h.engine.store();
        let mut last = last;
        loop {
            let new = store
                .run_events_page(id, last, 1000)
                .await
                .unwrap_or_default();
            if let Some(e) = new.last() {
                last = e.id;
            }
            let run = store.get_run(id).await.ok();
            let is_final = run.as_ref().is_none_or(|r| r.status.is_final());
            if !new.is_empty() || is_final {
                let kind = if is_final && new.len() < 1000 {
                    "end"
                } else {
                    "change"
                };
                let data = json!({ "run": run, "last_event": last }).to_string();
                let event = SseEvent::default().event(kind).data(data);
                return Some((Ok::<_, Infallible>(event), (h, last, kind == "end")));
            }
            tokio::time::sleep(STREAM_POLL).await;
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// `POST /api/runs/{id}/cancel`: `{"cancelled": true}`, or false when the
/// run was already final.
async fn cancel(State(h): State<Arc<Handlers>>, id: IdPath, headers: HeaderMap) -> Response {
    let Ok(Path(id)) = id else { return bad_id() };
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    match h.engine.cancel(id).await {
        Ok(cancelled) => Json(json!({ "run_id": id, "cancelled": cancelled })).into_response(),
        Err(e) => engine_error(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RetryRequest {
    /// Only this task and its descendants.
    task: Option<String>,
}

/// `POST /api/runs/{id}/retry`: reopens a failed or cancelled run
/// (`{"retried": true, "tasks": n}`) and asks for its advance; 409 when
/// the run is not failed or cancelled (a racing retry reopened it first).
async fn retry(
    State(h): State<Arc<Handlers>>,
    id: IdPath,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(Path(id)) = id else { return bad_id() };
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        RetryRequest::default()
    } else {
        match serde_json::from_slice::<RetryRequest>(&body) {
            Ok(r) => r,
            Err(e) => {
                return Reply::error(
                    400,
                    format!("expected {{\"task\": \"<name>\"}} or no body: {e}"),
                )
                .into_response()
            }
        }
    };
    match h.engine.retry(id, req.task.as_deref()).await {
        Ok(Some(n)) => {
            h.advancer.advance(&h.engine, id).await;
            Json(json!({ "run_id": id, "retried": true, "tasks": n })).into_response()
        }
        Ok(None) => match h.engine.store().get_run(id).await {
            Ok(run) => Reply::error(
                409,
                format!(
                    "run {id} is {}: only a failed or cancelled run can be retried",
                    run.status
                ),
            )
            .into_response(),
            Err(e) => engine_error(e),
        },
        Err(e) => engine_error(e),
    }
}

// ---- workflows ----

/// The next `n` fire times of a spec's schedule, if it has one.
fn schedule_of(spec: &Value, n: usize) -> Value {
    let Some(cron) = spec["schedule"].as_str() else {
        return Value::Null;
    };
    let tz = spec["timezone"].as_str();
    match Schedule::parse(cron, tz, spec["catchup"].as_bool().unwrap_or(false)) {
        Ok(s) => {
            let mut next = Vec::new();
            let mut at = Utc::now();
            while next.len() < n {
                let Some(t) = s.next_after(at) else { break };
                next.push(t);
                at = t;
            }
            json!({ "cron": cron, "timezone": tz.unwrap_or("UTC"), "next": next })
        }
        Err(e) => json!({ "cron": cron, "timezone": tz, "error": e, "next": [] }),
    }
}

/// `GET /api/workflows`: each workflow's latest version, its task count
/// and its next fire times.
async fn workflows(State(h): State<Arc<Handlers>>, headers: HeaderMap) -> Response {
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    match h.engine.store().list_workflows().await {
        Ok(list) => Json(
            list.iter()
                .map(|w| {
                    json!({
                        "name": w.name, "latest_version": w.latest_version, "updated_at": w.updated_at,
                        "paused": w.paused,
                        "description": w.spec["description"],
                        "tasks": w.spec["tasks"].as_object().map_or(0, |t| t.len()),
                        "schedule": schedule_of(&w.spec, 3),
                    })
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => engine_error(e),
    }
}

/// The tasks' input and output JSON Schemas, as `ork apply` stored them
/// (docs/type_schemas.md), by task; tasks without one are left out.
fn schemas_of(spec: &Value) -> Value {
    let tasks = spec["tasks"].as_object().into_iter().flatten();
    let known = tasks.filter_map(|(name, t)| {
        let s = &t["schema"];
        let pick = |k: &str| s.get(k).filter(|v| !v.is_null()).cloned();
        let (input, output) = (pick("input"), pick("output"));
        (input.is_some() || output.is_some())
            .then(|| (name.clone(), json!({"input": input, "output": output})))
    });
    Value::Object(known.collect())
}

#[derive(Deserialize)]
struct VersionQuery {
    version: Option<i64>,
}

/// `GET /api/workflows/{name}?version=`: the version's spec, YAML source,
/// DAG, schedule and type schemas, and every version.
async fn workflow(
    State(h): State<Arc<Handlers>>,
    Path(name): Path<String>,
    query: Result<Query<VersionQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Query(q)) = query else {
        return Reply::error(400, "version must be a number").into_response();
    };
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    let store = h.engine.store();
    let source = match store.workflow_source(&name, q.version).await {
        Ok(s) => s,
        Err(e) => return engine_error(e),
    };
    let versions = match store.workflow_versions(&name).await {
        Ok(v) => v,
        Err(e) => return engine_error(e),
    };
    let graph = layout::layout(&layout::deps_of_spec(&source.spec));
    // `ork apply` records where it applied from; a caller of the engine may
    // store the YAML itself. The stored spec, as YAML, is shown either way.
    let stored = source.source.unwrap_or_default();
    let (yaml_source, applied_from) = if stored.contains('\n') {
        (Some(stored), None)
    } else {
        (None, Some(stored).filter(|s| !s.is_empty()))
    };
    let mut shown = source.spec.clone();
    if let Some(o) = shown.as_object_mut() {
        o.remove("base_dir");
    }
    let yaml = yaml_source.or_else(|| serde_norway::to_string(&shown).ok());
    Json(json!({
        "yaml": yaml,
        "applied_from": applied_from,
        "name": name,
        "version": source.version,
        "versions": versions,
        "spec": source.spec,
        "graph": graph,
        "schedule": schedule_of(&source.spec, 5),
        "schemas": schemas_of(&source.spec),
        "paused": source.paused,
    }))
    .into_response()
}
