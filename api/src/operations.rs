//! The HTTP API of a workflow's day-two controls (key-protected like the
//! rest of `/api`), each a call into the engine (`engine/operations.rs`,
//! `ork_core::cost`):
//!
//! - `POST /api/workflows/{name}/pause`, `POST /api/workflows/{name}/unpause`;
//! - `DELETE /api/workflows/{name}/versions/{version}`: a version with no run;
//! - `POST /api/workflows/{name}/backfill` with `{"from", "to", "max_parallel",
//!   "rerun"}` (`from`/`to`: days or RFC 3339 times, as `ork backfill`);
//! - `GET /api/runs/{id}/cost`: the run's cost per task instance and in all;
//! - `POST /api/gc` with `{"older_than": "30d"}` (seconds or a duration):
//!   deletes the runs finished before then, as `ork gc` (`engine/gc.rs`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use ork_core::engine::BackfillRequest;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use crate::handlers::{Handlers, Reply};
use crate::http::check;

pub fn routes() -> Router<Arc<Handlers>> {
    Router::new()
        .route("/api/workflows/{name}/pause", post(pause))
        .route("/api/workflows/{name}/unpause", post(unpause))
        .route(
            "/api/workflows/{name}/versions/{version}",
            delete(delete_version),
        )
        .route("/api/workflows/{name}/backfill", post(backfill))
        .route("/api/runs/{id}/cost", get(cost))
        .route("/api/gc", post(gc))
}

async fn pause(h: State<Arc<Handlers>>, name: Path<String>, headers: HeaderMap) -> Response {
    set_paused(h, name, headers, true).await
}

async fn unpause(h: State<Arc<Handlers>>, name: Path<String>, headers: HeaderMap) -> Response {
    set_paused(h, name, headers, false).await
}

async fn set_paused(
    State(h): State<Arc<Handlers>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    paused: bool,
) -> Response {
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    match h.engine.set_paused(&name, paused).await {
        Ok(()) => Json(json!({ "workflow": name, "paused": paused })).into_response(),
        Err(e) => Reply::from_engine(e).into_response(),
    }
}

async fn delete_version(
    State(h): State<Arc<Handlers>>,
    path: Result<Path<(String, i64)>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path((name, version))) = path else {
        return Reply::error(400, "the version is not a number").into_response();
    };
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    match h.engine.delete_version(&name, version).await {
        Ok(()) => {
            Json(json!({ "workflow": name, "version": version, "deleted": true })).into_response()
        }
        Err(e) => Reply::from_engine(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillBody {
    from: String,
    to: String,
    #[serde(default)]
    max_parallel: Option<u32>,
    #[serde(default)]
    rerun: bool,
}

async fn backfill(
    State(h): State<Arc<Handlers>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    let body: BackfillBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return Reply::error(400, format!("backfill body: {e}")).into_response(),
    };
    let (from, until) = match (
        ork_core::spec::parse_bound(&body.from, false),
        ork_core::spec::parse_bound(&body.to, true),
    ) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) => return Reply::error(400, format!("from: {e}")).into_response(),
        (_, Err(e)) => return Reply::error(400, format!("to: {e}")).into_response(),
    };
    let req = BackfillRequest {
        from,
        until,
        max_parallel: body.max_parallel,
        rerun: body.rerun,
    };
    match h.engine.backfill(&name, req).await {
        Ok(b) => {
            for run in &b.started {
                h.advancer.advance(&h.engine, *run).await;
            }
            (axum::http::StatusCode::ACCEPTED, Json(json!(b))).into_response()
        }
        Err(e) => Reply::from_engine(e).into_response(),
    }
}

async fn cost(
    State(h): State<Arc<Handlers>>,
    id: Result<Path<Uuid>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Path(id)) = id else {
        return Reply::error(400, "the run id is not a UUID").into_response();
    };
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    match h.engine.run_cost(id).await {
        Ok(c) => Json(c).into_response(),
        Err(e) => Reply::from_engine(e).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GcBody {
    older_than: serde_json::Value,
}

async fn gc(
    State(h): State<Arc<Handlers>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    let body: GcBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return Reply::error(400, format!("gc body: {e}")).into_response(),
    };
    let older_than = match &body.older_than {
        serde_json::Value::String(s) => ork_core::spec::parse_duration(s),
        serde_json::Value::Number(n) => n
            .as_u64()
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| format!("invalid duration {n}: not a whole number of seconds")),
        other => Err(format!(
            "a duration: seconds or a string like \"30d\", not {other}"
        )),
    };
    let older_than = match older_than {
        Ok(d) => d,
        Err(e) => return Reply::error(400, format!("older_than: {e}")).into_response(),
    };
    match h.engine.gc(older_than, h.log_dir.as_deref()).await {
        Ok(c) => Json(c).into_response(),
        Err(e) => Reply::from_engine(e).into_response(),
    }
}
