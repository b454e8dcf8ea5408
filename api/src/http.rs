//! The handlers as HTTP routes (axum): what `ork serve` listens with.
//!
//! `POST /trigger`, `POST /advance`, `POST /complete`, `POST /heartbeat`,
//! and read-only `GET /api/runs`, `GET /api/runs/{id}` for the web UI.
//! With `ORK_API_KEY` set, all but `/complete` and `/heartbeat` (which
//! carry callback tokens) require it as a bearer token.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use uuid::Uuid;

use crate::handlers::{Handlers, Reply, MAX_BODY_BYTES};

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body)).into_response()
    }
}

pub fn router(handlers: Arc<Handlers>) -> Router {
    Router::new()
        .route("/trigger", post(trigger))
        .route("/advance", post(advance))
        .route("/complete", post(complete))
        .route("/heartbeat", post(heartbeat))
        .route("/events", post(event))
        .route("/health", get(|| async { "ok" }))
        .route("/api/runs", get(runs))
        .route("/api/runs/{id}", get(run))
        .route("/", get(ui))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(handlers)
}

async fn trigger(State(h): State<Arc<Handlers>>, headers: HeaderMap, body: Bytes) -> Reply {
    h.trigger(authorization(&headers), &body).await
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn advance(State(h): State<Arc<Handlers>>, headers: HeaderMap, body: Bytes) -> Reply {
    match h.authorize_advance(authorization(&headers)).await {
        Ok(()) => h.advance(&body).await,
        Err(reply) => reply,
    }
}

async fn complete(State(h): State<Arc<Handlers>>, body: Bytes) -> Reply {
    h.complete(&body).await
}

/// Platform events (a Cloud Run execution via Pub/Sub push or Eventarc,
/// an ECS task-state change): each is checked, never trusted as such.
async fn event(State(h): State<Arc<Handlers>>, body: Bytes) -> Reply {
    match serde_json::from_slice(&body) {
        Ok(event) => h.event(&event).await,
        Err(e) => Reply::error(400, format!("invalid event: {e}")),
    }
}

async fn heartbeat(State(h): State<Arc<Handlers>>, body: Bytes) -> Reply {
    h.heartbeat(&body).await
}

async fn runs(State(h): State<Arc<Handlers>>, headers: HeaderMap) -> Response {
    if let Err(reply) = h.authorize(authorization(&headers)) {
        return reply.into_response();
    }
    match h.engine.store().list_runs(None, 50).await {
        Ok(runs) => Json(runs).into_response(),
        Err(e) => Reply::from_engine(e).into_response(),
    }
}

async fn run(State(h): State<Arc<Handlers>>, Path(id): Path<Uuid>, headers: HeaderMap) -> Response {
    if let Err(reply) = h.authorize(authorization(&headers)) {
        return reply.into_response();
    }
    let store = h.engine.store();
    match (store.get_run(id).await, store.run_tasks(id).await) {
        (Ok(run), Ok(tasks)) => {
            Json(serde_json::json!({ "run": run, "tasks": tasks })).into_response()
        }
        (Err(e), _) | (_, Err(e)) => Reply::from_engine(e).into_response(),
    }
}

async fn ui() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("ui.html"),
    )
}
