//! The handlers as HTTP routes (axum): what `ork serve` listens with.
//!
//! `POST /trigger`, `POST /advance`, `POST /complete`, `POST /heartbeat`,
//! and read-only `GET /api/runs`, `GET /api/runs/{id}`; the web UI and its
//! read API, login and actions are [`crate::ui`]'s routes.
//! With `ORK_API_KEY` set, all but `/complete` and `/heartbeat` (which
//! carry callback tokens) require it as a bearer token (`/events` also as
//! `?key=`, for push subscriptions that cannot set a header); `/trigger`
//! and the `/api/` routes also take the web UI's session cookie.
//!
//! Every error answer is JSON (`{"error": …}`): axum's own rejections (body
//! limit, path, method) are rewritten by [`json_errors`], unknown routes
//! get a JSON 404, and a handler that panics answers 500 and the server
//! goes on.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures::FutureExt;
use uuid::Uuid;

use crate::handlers::{Handlers, Reply, MAX_BODY_BYTES};

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.body)).into_response()
    }
}

pub fn router(handlers: Arc<Handlers>) -> Router {
    router_with_health(handlers, None)
}

/// The router, with `/health` reporting on a sweeper when there is one.
pub fn router_with_health(handlers: Arc<Handlers>, health: Option<Arc<Health>>) -> Router {
    // Before anything is recorded: metrics sent to no recorder are lost.
    crate::metrics::handle();
    let bucket = Arc::new(TokenBucket::new(EVENTS_BURST, EVENTS_PER_SECOND));
    Router::new()
        .route("/trigger", post(trigger))
        .route("/advance", post(advance))
        .route("/complete", post(complete))
        .route("/heartbeat", post(heartbeat))
        .route("/outputs", put(put_output))
        .route(
            "/events",
            post(move |state, headers, query, body| event(state, headers, query, body, bucket)),
        )
        .route("/health", get(move || health_reply(health)))
        .route("/metrics", get(metrics))
        .route("/api/runs", get(runs))
        .route("/api/runs/{id}", get(run))
        .merge(crate::ui::routes())
        .merge(crate::operations::routes())
        .route_layer(middleware::from_fn(crate::metrics::track))
        .fallback(|| async { Reply::error(404, "no such route") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(json_errors))
        .with_state(handlers)
}

/// Catches a panic of whatever handles the request (answering 500), and
/// turns every error answer that is not JSON (axum's rejections: 413 body
/// limit, 400 bad path, 405 method) into `{"error": <its text>}`.
async fn json_errors(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_owned());
    let response = match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%method, %path, panic = %what, "handler panicked");
            return Reply::error(500, "internal error (see the server log)").into_response();
        }
    };
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    Reply::error(status.as_u16(), message).into_response()
}

/// The sweeper's liveness, as `/health` reports it: the ticker records
/// each pass; more than three ticks without one, or a dead ticker task,
/// and `/health` answers 503.
#[derive(Debug)]
pub struct Health {
    tick: Duration,
    last_pass: Mutex<Instant>,
    dead: std::sync::atomic::AtomicBool,
}

impl Health {
    /// A sweeper ticking every `tick`, counted as having passed now.
    pub fn new(tick: Duration) -> Health {
        Health {
            tick,
            last_pass: Mutex::new(Instant::now()),
            dead: Default::default(),
        }
    }

    /// A sweep pass ended (whatever its result: it did not hang or die).
    pub fn passed(&self) {
        *self.last_pass.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// The ticker task ended.
    pub fn died(&self) {
        self.dead.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn problem(&self) -> Option<String> {
        if self.dead.load(std::sync::atomic::Ordering::SeqCst) {
            return Some("the sweeper task has died".into());
        }
        let since = self
            .last_pass
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed();
        (since > self.tick.saturating_mul(3)).then(|| {
            format!(
                "the sweeper has not passed for {}s (it ticks every {}s)",
                since.as_secs(),
                self.tick.as_secs_f64()
            )
        })
    }
}

async fn health_reply(health: Option<Arc<Health>>) -> Reply {
    match health.and_then(|h| h.problem()) {
        Some(problem) => Reply::error(503, problem),
        None => Reply::ok_json(serde_json::json!({ "status": "ok" })),
    }
}

/// `POST /events` lookups allowed in a burst, and refilled per second.
const EVENTS_BURST: f64 = 20.0;
const EVENTS_PER_SECOND: f64 = 10.0;

/// A token bucket: `burst` calls at once, `rate` per second after.
struct TokenBucket {
    state: Mutex<(f64, Instant)>,
    burst: f64,
    rate: f64,
}

impl TokenBucket {
    fn new(burst: f64, rate: f64) -> TokenBucket {
        TokenBucket {
            state: Mutex::new((burst, Instant::now())),
            burst,
            rate,
        }
    }

    fn take(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, at) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

async fn trigger(State(h): State<Arc<Handlers>>, headers: HeaderMap, body: Bytes) -> Reply {
    match check(&h, &headers) {
        Ok(()) => h.trigger_authorized(&body).await,
        Err(reply) => reply,
    }
}

/// The API key check of the read API and the actions: the bearer header,
/// or the web UI's session cookie (`POST /login`).
pub(crate) fn check(h: &Handlers, headers: &HeaderMap) -> Result<(), Reply> {
    h.authorize_or_session(authorization(headers), session_cookie(headers))
}

/// The value of the `ork_session` cookie, if sent.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == crate::handlers::SESSION_COOKIE)
        .map(|(_, value)| value)
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
async fn event(
    State(h): State<Arc<Handlers>>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
    body: Bytes,
    bucket: Arc<TokenBucket>,
) -> Reply {
    let from_query = query.get("key").map(|k| format!("Bearer {k}"));
    if let Err(reply) = h.authorize(authorization(&headers).or(from_query.as_deref())) {
        return reply;
    }
    if !bucket.take() {
        return Reply::error(429, "too many events; try again shortly");
    }
    match serde_json::from_slice(&body) {
        Ok(event) => h.event(&event).await,
        Err(e) => Reply::error(400, format!("invalid event: {e}")),
    }
}

/// A large output, streamed (the body limit does not apply to a stream).
async fn put_output(
    State(h): State<Arc<Handlers>>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Reply {
    h.put_output(authorization(&headers), body.into_data_stream())
        .await
}

async fn heartbeat(State(h): State<Arc<Handlers>>, body: Bytes) -> Reply {
    h.heartbeat(&body).await
}

/// `GET /metrics`: Prometheus text. The runs-by-status gauges come from one
/// query per scrape; the rest is what the engine and the router recorded.
async fn metrics(State(h): State<Arc<Handlers>>, headers: HeaderMap) -> Response {
    if let Err(reply) = h.authorize(authorization(&headers)) {
        return reply.into_response();
    }
    match h.engine.store().run_counts().await {
        Ok(counts) => {
            for (status, runs) in counts {
                metrics::gauge!("ork_runs", "status" => status).set(runs as f64);
            }
        }
        Err(e) => return Reply::from_engine(e).into_response(),
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::handle().render(),
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct RunsQuery {
    workflow: Option<String>,
    status: Option<String>,
    trigger: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /api/runs?workflow=&status=&trigger=&limit=&offset=`: runs newest
/// first (50 by default, at most 500).
async fn runs(
    State(h): State<Arc<Handlers>>,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Response {
    let Ok(Query(q)) = query else {
        return Reply::error(
            400,
            "invalid query (workflow, status, trigger, limit, offset)",
        )
        .into_response();
    };
    if let Err(reply) = check(&h, &headers) {
        return reply.into_response();
    }
    let set = |s: Option<String>| s.filter(|s| !s.is_empty());
    let filter = ork_core::store::reads::RunFilter {
        workflow: set(q.workflow),
        status: set(q.status),
        trigger: set(q.trigger),
    };
    let (limit, offset) = (
        q.limit.unwrap_or(50).clamp(1, 500),
        q.offset.unwrap_or(0).max(0),
    );
    match h
        .engine
        .store()
        .list_runs_filtered(&filter, limit, offset)
        .await
    {
        Ok(runs) => Json(runs).into_response(),
        Err(e) => Reply::from_engine(e).into_response(),
    }
}

async fn run(
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
    let store = h.engine.store();
    match (
        store.get_run(id).await,
        store.run_tasks(id).await,
        h.engine.run_cost(id).await,
    ) {
        (Ok(run), Ok(tasks), Ok(cost)) => {
            Json(serde_json::json!({ "run": run, "tasks": tasks, "cost": cost })).into_response()
        }
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => Reply::from_engine(e).into_response(),
    }
}
