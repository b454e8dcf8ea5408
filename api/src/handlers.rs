//! The handlers, independent of transport: bytes and headers in, a status
//! and a JSON body out.

use std::sync::Arc;

use chrono::Utc;
use ork_core::engine::{Engine, Reported, TriggerOptions};
use ork_core::executor::{Completion, Outcome};
use ork_core::model::AttemptRef;
use ork_core::payload::OutputFile;
use ork_core::token::Signer;
use ork_core::Error;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::advancer::Advancer;
use crate::oidc::OidcVerifier;
use crate::reports::{After, ReportQueue};
use crate::waker::Waker;

/// Largest request body accepted; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A handler's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply { status: 200, body }
    }

    /// A 200 with `body`.
    pub fn ok_json(body: Value) -> Reply {
        Reply::ok(body)
    }

    pub fn error(status: u16, message: impl std::fmt::Display) -> Reply {
        Reply {
            status,
            body: json!({ "error": message.to_string() }),
        }
    }

    /// The one mapping of an engine or store error to an answer: 404 for
    /// an unknown workflow or run, 400 for the caller's mistakes, 503 for a
    /// transient database failure, 500 for everything else. Only the
    /// caller's own errors are shown as they are; the detail of the others
    /// (raw database errors, internal faults) goes to the log.
    pub fn from_engine(e: Error) -> Reply {
        if e.is_not_found() {
            Reply::error(404, e)
        } else if e.is_user_error() {
            Reply::error(400, e)
        } else if e.is_transient() {
            tracing::warn!(error = %e, "transient database error");
            Reply::error(503, "the database is busy or unreachable; try again")
        } else {
            tracing::error!(error = %e, "handler failed");
            Reply::error(500, "internal error (see the server log)")
        }
    }
}

/// The three handlers over one engine.
pub struct Handlers {
    pub engine: Arc<Engine>,
    /// Required of `trigger` callers as `Authorization: Bearer <key>`;
    /// `None` leaves `trigger` open (local `ork serve` only).
    pub api_key: Option<String>,
    /// Checks the tokens of worker reports.
    pub signer: Signer,
    pub advancer: Advancer,
    /// Also accepted on `advance`: Google-signed ID tokens of one service
    /// account (Cloud Scheduler's OIDC token), when configured.
    pub oidc: Option<Arc<OidcVerifier>>,
    /// How this host is woken before its next scheduled sweep (AWS:
    /// EventBridge Scheduler one-time schedules), if it must be.
    pub waker: Waker,
    /// Where local attempts' logs are (the process executor's log dir),
    /// for the web UI's `GET /api/runs/{id}/tasks/{task_id}/log`.
    pub log_dir: Option<std::path::PathBuf>,
    /// Worker reports waiting for their batch's transaction.
    pub reports: ReportQueue,
}

/// The web UI's session cookie, set by `POST /login`.
pub const SESSION_COOKIE: &str = "ork_session";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerRequest {
    workflow: String,
    #[serde(default = "empty_object")]
    params: Value,
    #[serde(default)]
    idempotency_key: Option<String>,
}

fn empty_object() -> Value {
    json!({})
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AdvanceRequest {
    #[serde(default)]
    run_id: Option<Uuid>,
}

/// A worker's report of its attempt's end (the worker contract).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteRequest {
    token: String,
    status: ReportedStatus,
    #[serde(default)]
    exit_code: Option<i64>,
    #[serde(default)]
    output: Option<Value>,
    /// The output was sent before with `PUT /outputs` (too large to be inline).
    #[serde(default)]
    output_uploaded: bool,
    #[serde(default)]
    error: Option<String>,
    /// `false`: a failure that retries cannot fix (the task said so at
    /// `$ORK_ERROR`); it is not retried.
    #[serde(default)]
    retryable: Option<bool>,
}

#[derive(Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum ReportedStatus {
    Success,
    Failed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatRequest {
    token: String,
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Reply> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Reply::error(
            413,
            format!(
                "request body is {} bytes, the limit is {MAX_BODY_BYTES}",
                body.len()
            ),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| Reply::error(400, format!("invalid request body: {e}")))
}

/// Compares digests, so the time taken says nothing about the key.
fn same_secret(given: &str, expected: &str) -> bool {
    Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}

impl Handlers {
    /// Checks `Authorization: Bearer <ORK_API_KEY>` when a key is configured:
    /// what callers of `trigger`, `advance` and the read API must present.
    pub fn authorize(&self, authorization: Option<&str>) -> Result<(), Reply> {
        let Some(key) = &self.api_key else {
            return Ok(());
        };
        let given = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default();
        if same_secret(given, key) {
            Ok(())
        } else {
            Err(Reply::error(
                401,
                "missing or wrong API key (Authorization: Bearer <ORK_API_KEY>)",
            ))
        }
    }

    /// The value of the session cookie for the configured key: a digest of
    /// it, so that the cookie is not the key itself. `None` without a key.
    pub fn session_token(&self) -> Option<String> {
        self.api_key.as_ref().map(|key| {
            Sha256::digest(format!("ork-ui-session\0{key}").as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
    }

    /// [`Handlers::authorize`], also accepting the web UI's session cookie.
    pub fn authorize_or_session(
        &self,
        authorization: Option<&str>,
        session: Option<&str>,
    ) -> Result<(), Reply> {
        if let (Some(token), Some(given)) = (self.session_token(), session) {
            if same_secret(given, &token) {
                return Ok(());
            }
        }
        self.authorize(authorization)
    }

    /// What callers of `advance` must present: the API key, or, when
    /// configured, a Google-signed ID token of the scheduler's service account.
    pub async fn authorize_advance(&self, authorization: Option<&str>) -> Result<(), Reply> {
        let by_key = self.authorize(authorization);
        let (Err(reply), Some(oidc)) = (&by_key, &self.oidc) else {
            return by_key;
        };
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or_default();
        match oidc.verify(token).await {
            Ok(()) => Ok(()),
            Err(why) if self.api_key.is_none() => Err(Reply::error(401, why)),
            Err(why) => {
                tracing::debug!(%why, "advance: neither the API key nor an ID token");
                Err(reply.clone())
            }
        }
    }

    /// `POST /trigger`: starts a run; 202 with its id. A repeated
    /// idempotency key answers with the first run.
    pub async fn trigger(&self, authorization: Option<&str>, body: &[u8]) -> Reply {
        if let Err(reply) = self.authorize(authorization) {
            return reply;
        }
        self.trigger_authorized(body).await
    }

    /// `POST /trigger` of a caller already authorized.
    pub async fn trigger_authorized(&self, body: &[u8]) -> Reply {
        let req: TriggerRequest = match parse(body) {
            Ok(r) => r,
            Err(reply) => return reply,
        };
        self.start(&req.workflow, req.params, "http", req.idempotency_key)
            .await
    }

    /// A scheduled event (EventBridge, Cloud Scheduler) naming a workflow.
    pub async fn trigger_scheduled(&self, workflow: &str) -> Reply {
        self.start(workflow, json!({}), "schedule", None).await
    }

    async fn start(
        &self,
        workflow: &str,
        params: Value,
        trigger: &str,
        idempotency_key: Option<String>,
    ) -> Reply {
        let opts = TriggerOptions {
            trigger: trigger.into(),
            idempotency_key,
        };
        match self.engine.trigger(workflow, params, opts).await {
            Ok(t) => {
                if t.created {
                    self.advancer.advance(&self.engine, t.run.id).await;
                }
                Reply {
                    status: 202,
                    body: json!({ "run_id": t.run.id, "created": t.created, "status": t.run.status }),
                }
            }
            Err(e) => Reply::from_engine(e),
        }
    }

    /// `POST /advance`: `{"run_id": …}` advances one run; an empty body
    /// (the cron tick) sweeps.
    pub async fn advance(&self, body: &[u8]) -> Reply {
        let req: AdvanceRequest = if body.iter().all(u8::is_ascii_whitespace) {
            AdvanceRequest::default()
        } else {
            match parse(body) {
                Ok(r) => r,
                Err(reply) => return reply,
            }
        };
        match req.run_id {
            Some(run_id) => self.advance_run(run_id).await,
            None => self.sweep().await,
        }
    }

    /// Advances one run: claims its ready tasks and dispatches them.
    pub async fn advance_run(&self, run_id: Uuid) -> Reply {
        let reply = match self.engine.advance(run_id).await {
            Ok(a) => Reply::ok(json!({ "dispatched": a.dispatched, "finalized": a.finalized })),
            Err(e) => Reply::from_engine(e),
        };
        self.schedule_wake().await;
        reply
    }

    /// One sweeper pass (the cron tick).
    pub async fn sweep(&self) -> Reply {
        let reply = match self.engine.sweep().await {
            Ok(s) => Reply::ok(json!({
                "requeued": s.requeued, "overdue": s.overdue, "polled": s.polled,
                "fired": s.fired, "advanced": s.advanced,
            })),
            Err(e) => Reply::from_engine(e),
        };
        self.schedule_wake().await;
        reply
    }

    async fn schedule_wake(&self) {
        crate::waker::schedule_wake(&self.engine, &self.waker).await;
    }

    fn verify(&self, token: &str) -> Result<AttemptRef, Reply> {
        self.signer
            .verify(token, Utc::now())
            .map_err(|e| Reply::error(401, e))
    }

    /// `POST /complete` (on-task-complete): a worker reports its attempt's
    /// end. 200 when recorded or already recorded, 401 for a forged or
    /// expired token, 409 for a superseded attempt, 413 for a large body.
    pub async fn complete(&self, body: &[u8]) -> Reply {
        let req: CompleteRequest = match parse(body) {
            Ok(r) => r,
            Err(reply) => return reply,
        };
        let attempt = match self.verify(&req.token) {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        let mut outcome = Outcome {
            success: req.status == ReportedStatus::Success,
            exit_code: req.exit_code,
            error: req.error,
            output: req.output,
            permanent: req.status == ReportedStatus::Failed && req.retryable == Some(false),
            output_ref: None,
        };
        if req.output_uploaded && outcome.success {
            match self.engine.config().payloads.uploaded(&attempt).await {
                Ok(OutputFile::Inline(v)) => outcome.output = Some(v),
                Ok(OutputFile::Ref(r)) => outcome.output_ref = Some(r),
                Ok(OutputFile::None) => {
                    outcome = Outcome::failure(
                        outcome.exit_code,
                        "no output was uploaded (PUT /outputs or ORK_OUTPUT_URL)",
                    )
                }
                Err(e) => outcome = Outcome::failure(outcome.exit_code, e),
            }
        }
        self.report(Completion { attempt, outcome }).await
    }

    /// `PUT /outputs` with `Authorization: Bearer <callback token>`: the
    /// output of the attempt the token names, too large to be inline in a
    /// report, streamed into the payload directory (never whole in memory);
    /// the report that follows says `"output_uploaded": true`. 413 over
    /// `max_bytes`, 401 for a bad token.
    pub async fn put_output<S, E>(&self, authorization: Option<&str>, mut body: S) -> Reply
    where
        S: futures::Stream<Item = Result<axum::body::Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let Some(token) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
            return Reply::error(401, "missing Authorization: Bearer <callback token>");
        };
        let attempt = match self.verify(token.trim()) {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        let p = &self.engine.config().payloads;
        let path = p.upload_path(&attempt);
        let written: Result<u64, Reply> = async {
            let internal = |e: std::io::Error| {
                tracing::error!(error = %e, "cannot store an uploaded output");
                Reply::error(500, "cannot store the output")
            };
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await.map_err(internal)?;
            }
            let mut f = tokio::fs::File::create(&path).await.map_err(internal)?;
            let mut n = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| Reply::error(400, format!("upload failed: {e}")))?;
                n += chunk.len() as u64;
                if n > p.max_bytes {
                    return Err(Reply::error(
                        413,
                        format!(
                            "output is over {} bytes: the limit is {}",
                            p.max_bytes, p.max_bytes
                        ),
                    ));
                }
                f.write_all(&chunk).await.map_err(internal)?;
            }
            f.flush().await.map_err(internal)?;
            Ok(n)
        }
        .await;
        match written {
            Ok(n) => Reply::ok(json!({ "stored": n })),
            Err(reply) => {
                let _ = tokio::fs::remove_file(&path).await;
                reply
            }
        }
    }

    /// A verified report of an attempt's end: records it (with the
    /// reports that arrive meanwhile, [`ReportQueue`]) and advances what it
    /// made ready.
    pub async fn report(&self, completion: Completion) -> Reply {
        let attempt = completion.attempt.attempt;
        let after = || After {
            engine: self.engine.clone(),
            advancer: self.advancer.clone(),
            waker: self.waker.clone(),
        };
        match self.reports.report(completion, after).await {
            Ok(Reported::Applied { finalized }) => {
                Reply::ok(json!({ "result": "recorded", "finalized": finalized }))
            }
            Ok(Reported::Duplicate) => Reply::ok(json!({ "result": "duplicate" })),
            Ok(Reported::Stale) => Reply::error(
                409,
                format!("attempt {attempt} was superseded by a later attempt"),
            ),
            Ok(Reported::Unknown) => Reply::error(404, "no such task"),
            Err(e) => Reply::from_engine(e),
        }
    }

    /// `POST /heartbeat`: the attempt is alive. 410 when it is no longer in
    /// flight, so the worker can stop.
    pub async fn heartbeat(&self, body: &[u8]) -> Reply {
        let req: HeartbeatRequest = match parse(body) {
            Ok(r) => r,
            Err(reply) => return reply,
        };
        let attempt = match self.verify(&req.token) {
            Ok(a) => a,
            Err(reply) => return reply,
        };
        match self.engine.heartbeat(&attempt).await {
            Ok(true) => Reply::ok(json!({ "result": "alive" })),
            Ok(false) => Reply::error(410, "this attempt is no longer in flight"),
            Err(e) => Reply::from_engine(e),
        }
    }
}

impl Handlers {
    /// An event from a worker's platform rather than the worker: an ECS
    /// "Task State Change" (EventBridge) for Fargate workers, identified by
    /// the callback token the task was started with; or a Cloud Run
    /// `Execution` resource (a CloudEvent's `data`, or a Pub/Sub push whose
    /// message is the resource), identified by its execution name.
    pub async fn event(&self, event: &Value) -> Reply {
        if event["detail-type"] == "ECS Task State Change" {
            let Some(stopped) = ork_executors::ecs_event::parse_task_state_change(event) else {
                return Reply::ok(json!({ "result": "ignored", "reason": "task not stopped" }));
            };
            let Some(token) = stopped.token else {
                return Reply::ok(json!({ "result": "ignored", "reason": "not an Ork task" }));
            };
            let attempt = match self.verify(&token) {
                Ok(a) => a,
                Err(reply) => return reply,
            };
            return self
                .report(Completion {
                    attempt,
                    outcome: stopped.outcome,
                })
                .await;
        }
        if let Some(execution) = cloud_run_execution(event) {
            return self.cloud_run_execution(&execution).await;
        }
        Reply::error(400, "unrecognized event")
    }
}

impl Handlers {
    /// The event is only a hint, since it carries no token: the outcome
    /// recorded is what the executor itself reports for that execution.
    async fn cloud_run_execution(&self, execution: &Value) -> Reply {
        let name = execution["name"].as_str().unwrap_or_default();
        let attempt = match self.engine.store().in_flight_by_execution(name).await {
            Ok(Some(attempt)) => attempt,
            Ok(None) => {
                return Reply::ok(
                    json!({ "result": "ignored", "reason": "no attempt in flight has this execution" }),
                )
            }
            Err(e) => return Reply::from_engine(e),
        };
        match self.engine.check(&attempt).await {
            Ok(Some(outcome)) => {
                self.report(Completion {
                    attempt: attempt.attempt_ref(),
                    outcome,
                })
                .await
            }
            Ok(None) => {
                Reply::ok(json!({ "result": "ignored", "reason": "execution still running" }))
            }
            Err(e) => Reply::error(502, e),
        }
    }
}

/// The Cloud Run `Execution` resource an event carries, if it carries one.
fn cloud_run_execution(event: &Value) -> Option<Value> {
    let is_execution = |v: &Value| {
        v["name"]
            .as_str()
            .is_some_and(|n| n.contains("/executions/"))
    };
    if let Some(data) = event.get("data").filter(|d| is_execution(d)) {
        return Some(data.clone());
    }
    let pushed = event["message"]["data"].as_str().and_then(|b64| {
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        serde_json::from_slice::<Value>(&bytes).ok()
    });
    pushed
        .filter(is_execution)
        .or_else(|| is_execution(event).then(|| event.clone()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_worker_knows_the_body_limit() {
        assert_eq!(super::MAX_BODY_BYTES, ork_core::contract::MAX_REPORT_BYTES);
    }

    use super::*;

    #[test]
    fn engine_errors_map_to_statuses_without_leaking_internals() {
        let reply = Reply::from_engine(Error::RunNotFound(Uuid::nil()));
        assert_eq!(reply.status, 404);
        let reply = Reply::from_engine(Error::Invalid("run params must be a JSON object".into()));
        assert_eq!(reply, Reply::error(400, "run params must be a JSON object"));
        let reply = Reply::from_engine(Error::Database(sqlx::Error::PoolTimedOut));
        assert_eq!(reply.status, 503);
        for internal in [
            Error::Database(sqlx::Error::Protocol("relation \"runs\" is locked".into())),
            Error::Internal("stored spec of etl v1 is unreadable".into()),
        ] {
            let reply = Reply::from_engine(internal);
            assert_eq!(reply.status, 500);
            let body = reply.body.to_string();
            assert!(!body.contains("runs") && !body.contains("etl"), "{body}");
        }
    }
}
