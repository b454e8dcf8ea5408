//! Runs attempts as Google Cloud Run Jobs executions, through the Cloud Run
//! Admin API v2 (`run.googleapis.com`).
//!
//! The job itself (image, resources, service account) is deployed outside
//! Ork; a task names it in its `cloudrun:` block and Ork only starts
//! executions of it, overriding the arguments and the environment:
//!
//! - `dispatch`: `POST /v2/projects/P/locations/R/jobs/J:run`, answered by a
//!   `google.longrunning.Operation` whose `metadata` is the new `Execution`;
//!   the execution's name (`projects/P/locations/R/jobs/J/executions/E`) is
//!   the attempt's execution id;
//! - `poll`: `GET /v2/{execution}`, the `Execution` resource;
//! - `cancel`: `POST /v2/{execution}:cancel`.
//!
//! Requests carry a bearer token from [`gcp_auth`] (scope `cloud-platform`).
//! Throttling (429), server errors (5xx) and connection errors are retried
//! with exponential backoff; any other error fails at once with Google's own
//! message (`{"error": {"code", "message", "status"}}`).

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError, Outcome};
use ork_core::model::AttemptRef;
use ork_core::retry::{retry, Backoff};

use crate::rest::{self, error_chain, truncate};

/// Where the Cloud Run Admin API is, unless `ORK_CLOUDRUN_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://run.googleapis.com";

/// The OAuth2 scope requested for every call.
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The `@type` of an operation's metadata when it is an execution.
const EXECUTION_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Execution";

/// How transient API errors (429, 5xx, connection errors) are retried by
/// default: four retries, waiting 200ms, 400ms, 800ms then 1.6s.
pub const DEFAULT_RETRY: Backoff =
    Backoff::new(4, Duration::from_millis(200), Duration::from_secs(10));

/// Starts each attempt as one execution of an existing Cloud Run Job.
///
/// Every Ork task instance (one `ORK_TASK_INDEX` of a fanned-out task) is its
/// own execution with `taskCount: 1`, told its index and count through
/// `ORK_TASK_INDEX` / `ORK_TASK_COUNT`, rather than one execution with
/// `taskCount: N` for the whole task: Ork claims, times out, retries and
/// completes each instance separately (each has its own attempt number,
/// callback token, timeout and outcome), while Cloud Run starts, cancels and
/// reports an execution as a whole. The job's own `CLOUD_RUN_TASK_INDEX` is
/// therefore always 0; workers read `ORK_TASK_INDEX`.
///
/// Likewise, Ork does the retrying: the job should be deployed with
/// `maxRetries: 0`, or a failing attempt runs several times before Ork
/// hears of it.
///
/// A `jobs.run` retried after a 5xx or a lost connection may, rarely, have
/// started an execution the first time too. Both run the same attempt with
/// the same callback token, and the engine applies an attempt's completion
/// at most once, so the cost is compute, not correctness.
#[derive(Clone)]
pub struct CloudRunExecutor {
    /// No trailing slash.
    endpoint: String,
    auth: Arc<dyn gcp_auth::TokenProvider>,
    retry: Backoff,
    http: reqwest::Client,
}

impl fmt::Debug for CloudRunExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudRunExecutor")
            .field("endpoint", &self.endpoint)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl CloudRunExecutor {
    /// An executor calling the Admin API at `endpoint` (such as
    /// [`DEFAULT_ENDPOINT`]) with tokens from `auth`, retrying transient
    /// errors as `retry` says (such as [`DEFAULT_RETRY`]).
    pub fn new(endpoint: String, auth: Arc<dyn gcp_auth::TokenProvider>, retry: Backoff) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("the HTTP client's TLS backend initializes");
        CloudRunExecutor {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            auth,
            retry,
            http,
        }
    }

    /// An executor with the ambient Google credentials, in `gcp_auth`'s
    /// order: the service-account key file named by
    /// `GOOGLE_APPLICATION_CREDENTIALS`, the application default credentials
    /// of `gcloud auth application-default login`, the metadata server (on
    /// Cloud Run, GKE, GCE…), then the `gcloud` CLI. The endpoint is
    /// `ORK_CLOUDRUN_ENDPOINT`, by default [`DEFAULT_ENDPOINT`].
    ///
    /// Without credentials this is an [`ExecutorError::NotConfigured`]
    /// saying what was looked for; there is no fallback.
    pub async fn from_env() -> Result<Self, ExecutorError> {
        let endpoint = std::env::var("ORK_CLOUDRUN_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        let auth = gcp_auth::provider().await.map_err(|e| {
            ExecutorError::NotConfigured(no_credentials_message(
                std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").as_deref(),
                &e,
            ))
        })?;
        Ok(Self::new(endpoint, auth, DEFAULT_RETRY))
    }

    /// The API endpoint calls go to, without a trailing slash.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// One API call, retried while the error is transient; the response
    /// body as JSON. `op` names the API method in error messages.
    async fn call(
        &self,
        op: &'static str,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let tries = AtomicU32::new(0);
        let retryable = |e: &ApiError| e.transient;
        retry(self.retry, retryable, || async {
            let n = tries.fetch_add(1, Ordering::Relaxed) + 1;
            self.try_call(op, method.clone(), url, body)
                .await
                .inspect_err(|e| {
                    if e.transient {
                        tracing::warn!(op, url, tries = n, "Cloud Run call failed: {}", e.detail);
                    }
                })
        })
        .await
        .map_err(|mut e| {
            e.tries = tries.load(Ordering::Relaxed);
            e
        })
    }

    async fn try_call(
        &self,
        op: &'static str,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        // gcp_auth caches the token until shortly before it expires, and
        // retries its own token requests.
        let token = self.auth.token(&[SCOPE]).await.map_err(|e| ApiError {
            op,
            status: None,
            detail: format!("cannot get a Google access token: {}", error_chain(&e)),
            transient: false,
            tries: 1,
        })?;
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(token.as_str())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        rest::json_response(request, google_error)
            .await
            .map_err(|f| ApiError {
                op,
                status: f.status,
                detail: f.detail,
                transient: f.transient,
                tries: 1,
            })
    }

    /// The URL of an execution (plus `suffix`), refusing ids that are not
    /// execution names, so that another executor's id never becomes a path.
    fn execution_url(&self, execution_id: &str, suffix: &str) -> Result<String, ExecutorError> {
        let parts: Vec<&str> = execution_id.split('/').collect();
        let well_formed = parts.len() == 8
            && parts[0] == "projects"
            && parts[2] == "locations"
            && parts[4] == "jobs"
            && parts[6] == "executions"
            && parts.iter().all(|p| is_name_segment(p));
        if !well_formed {
            return Err(ExecutorError::permanent(format!(
                "{execution_id:?} is not a Cloud Run execution name \
                 (projects/P/locations/R/jobs/J/executions/E)"
            )));
        }
        Ok(format!("{}/v2/{execution_id}{suffix}", self.endpoint))
    }
}

#[async_trait]
impl Executor for CloudRunExecutor {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let target =
            req.spec.cloudrun.as_ref().ok_or_else(|| {
                ExecutorError::permanent("cloudrun task without a `cloudrun:` block")
            })?;
        for (what, value) in [
            ("project", &target.project),
            ("region", &target.region),
            ("job", &target.job),
        ] {
            if !is_name_segment(value) {
                return Err(ExecutorError::permanent(format!(
                    "invalid Cloud Run {what} {value:?}"
                )));
            }
        }
        let url = format!(
            "{}/v2/projects/{}/locations/{}/jobs/{}:run",
            self.endpoint, target.project, target.region, target.job
        );
        let operation = self
            .call("jobs.run", Method::POST, &url, Some(&run_job_request(req)))
            .await?;
        if let Some(error) = operation.get("error").filter(|e| !e.is_null()) {
            return Err(ExecutorError::permanent(format!(
                "Cloud Run jobs.run failed: operation ended with {}",
                rpc_status(error)
            )));
        }
        let execution_id = execution_name(&operation).ok_or_else(|| {
            ExecutorError::permanent(format!(
                "Cloud Run jobs.run answered without an execution name: {}",
                truncate(&operation.to_string())
            ))
        })?;
        tracing::debug!(
            attempt = %req.attempt.task_id,
            task = %req.attempt.name,
            index = req.attempt.task_index,
            execution = %execution_id,
            "started Cloud Run execution"
        );
        Ok(Dispatch::Started { execution_id })
    }

    async fn cancel(&self, attempt: &AttemptRef, execution_id: &str) -> Result<(), ExecutorError> {
        let url = self.execution_url(execution_id, ":cancel")?;
        match self
            .call("executions.cancel", Method::POST, &url, Some(&json!({})))
            .await
        {
            Ok(_) => Ok(()),
            // Gone, or already finished (FAILED_PRECONDITION is a 400):
            // there is nothing left to stop.
            Err(e)
                if matches!(
                    e.status,
                    Some(StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::CONFLICT)
                ) =>
            {
                tracing::info!(
                    attempt = %attempt.task_id,
                    execution = execution_id,
                    "Cloud Run execution not cancelled, it has likely ended: {e}"
                );
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn poll(
        &self,
        _attempt: &AttemptRef,
        execution_id: &str,
    ) -> Result<Option<Outcome>, ExecutorError> {
        let url = self.execution_url(execution_id, "")?;
        let execution = self.call("executions.get", Method::GET, &url, None).await?;
        Ok(execution_outcome(&execution))
    }
}

/// The body of `jobs.run` (Google's `RunJobRequest`) for one attempt.
///
/// Cloud Run can override a container's arguments but not its entrypoint,
/// so a task's `command`, when it has one, goes first in `args`, followed by
/// the task's `args`: with an image that has no `ENTRYPOINT` (only a `CMD`)
/// that runs `command args…`; with one, the entrypoint gets them all as
/// arguments. With neither, `args` is left out and the job's own are used.
///
/// The environment is [`DispatchRequest::container_env`]: the worker
/// contract (`ORK_*`), then the task's `env` (the contract wins a clash). The timeout, rounded up to whole seconds, becomes
/// the execution's task timeout.
pub fn run_job_request(req: &DispatchRequest) -> Value {
    let argv = req.spec.argv();
    let args: Vec<&str> = argv.iter().map(String::as_str).collect();
    let env: Vec<Value> = req
        .container_env()
        .into_iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();

    let mut container = json!({ "env": env });
    if !args.is_empty() {
        container["args"] = json!(args);
    }
    let mut overrides = json!({
        "containerOverrides": [container],
        "taskCount": 1,
    });
    if let Some(timeout) = req.timeout {
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        overrides["timeout"] = json!(format!("{}s", secs.max(1)));
    }
    json!({ "overrides": overrides })
}

/// The execution a `jobs.run` operation started: its metadata's `name`, or
/// the operation's own name when the metadata lacks one.
fn execution_name(operation: &Value) -> Option<String> {
    let metadata = operation.get("metadata");
    if let Some(kind) = metadata.and_then(|m| m["@type"].as_str()) {
        if kind != EXECUTION_TYPE {
            tracing::warn!(kind, "jobs.run operation metadata is not an Execution");
        }
    }
    metadata
        .and_then(|m| m["name"].as_str())
        .or_else(|| operation["name"].as_str())
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
}

/// How an `Execution` resource ended, or `None` while it runs.
///
/// It has ended once `completionTime` is set or its `Completed` condition
/// has succeeded or failed. It succeeded when that condition succeeded (or,
/// lacking a verdict, every task succeeded) and no task failed or was
/// cancelled.
pub fn execution_outcome(execution: &Value) -> Option<Outcome> {
    let completed = execution["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Completed");
    let state = completed.and_then(|c| c["state"].as_str()).unwrap_or("");
    let completion_time = execution["completionTime"]
        .as_str()
        .is_some_and(|t| !t.is_empty());
    if !completion_time && state != "CONDITION_SUCCEEDED" && state != "CONDITION_FAILED" {
        return None;
    }

    let count = |field: &str| count_field(&execution[field]);
    let task_count = count("taskCount").max(1);
    let (succeeded, failed, cancelled) = (
        count("succeededCount"),
        count("failedCount"),
        count("cancelledCount"),
    );
    let reason = completed
        .and_then(|c| c["executionReason"].as_str())
        .unwrap_or("");
    let success = failed == 0
        && cancelled == 0
        && match state {
            "CONDITION_SUCCEEDED" => true,
            "CONDITION_FAILED" => false,
            _ => succeeded >= task_count,
        };
    if success {
        return Some(Outcome::success(None));
    }

    let message = completed
        .and_then(|c| c["message"].as_str())
        .filter(|m| !m.is_empty());
    let mut error = match message {
        Some(m) => m.to_owned(),
        None if cancelled > 0 || reason == "CANCELLED" => "execution cancelled".to_owned(),
        None if failed > 0 => format!("{failed} of {task_count} task(s) failed"),
        None => "execution ended without succeeding".to_owned(),
    };
    if !reason.is_empty() && reason != "EXECUTION_REASON_UNDEFINED" {
        error = format!("{reason}: {error}");
    }
    if let Some(logs) = execution["logUri"].as_str().filter(|l| !l.is_empty()) {
        error.push_str(&format!(" (logs: {logs})"));
    }
    Some(Outcome::failure(None, error))
}

/// An int32 field in proto3 JSON: a number, maybe a string, absent when 0.
fn count_field(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

/// A failed API call.
#[derive(Debug)]
struct ApiError {
    op: &'static str,
    /// The HTTP status, when the API answered.
    status: Option<StatusCode>,
    detail: String,
    transient: bool,
    /// How many times the call was made.
    tries: u32,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cloud Run {} failed", self.op)?;
        if self.tries > 1 {
            write!(f, " after {} tries", self.tries)?;
        }
        write!(f, ": {}", self.detail)
    }
}

/// Throttling, server and connection errors are transient; any other
/// answer (403, 404, a bad request) or a refused token is permanent.
impl From<ApiError> for ExecutorError {
    fn from(e: ApiError) -> Self {
        if e.transient {
            ExecutorError::Transient(e.to_string())
        } else {
            ExecutorError::Permanent(e.to_string())
        }
    }
}

/// `403 PERMISSION_DENIED: Permission 'run.jobs.run' denied …` from Google's
/// error body, or the status and the start of whatever else came back.
fn google_error(status: StatusCode, body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().map(|v| &v["error"]);
    let message = error.and_then(|e| e["message"].as_str());
    let code_name = error
        .and_then(|e| e["status"].as_str())
        .or(status.canonical_reason())
        .unwrap_or("");
    match message {
        Some(m) => format!("{} {code_name}: {m}", status.as_u16()),
        None if body.trim().is_empty() => format!("{} {code_name}", status.as_u16()),
        None => format!("{} {code_name}: {}", status.as_u16(), truncate(body.trim())),
    }
}

/// A `google.rpc.Status` (an operation's `error`) as text.
fn rpc_status(status: &Value) -> String {
    let code = &status["code"];
    match status["message"].as_str() {
        Some(m) => format!("code {code}: {m}"),
        None => status.to_string(),
    }
}

/// Whether `s` can be one segment of a resource name (no `/`, `?`, `#`,
/// `%`, whitespace or `..`).
fn is_name_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~'))
}

/// The error of [`CloudRunExecutor::from_env`] when `gcp_auth` found no
/// usable credentials: what was looked for and why each failed.
fn no_credentials_message(
    credentials_file: Option<&std::ffi::OsStr>,
    error: &gcp_auth::Error,
) -> String {
    if let Some(path) = credentials_file {
        // gcp_auth uses the file when the variable is set, and stops there.
        return format!(
            "no usable Google Cloud credentials for the Cloud Run executor: \
             GOOGLE_APPLICATION_CREDENTIALS is set to {:?}, but that service-account \
             key file cannot be used ({}). Point it at a service-account key JSON file, \
             or unset it to use application default credentials or the metadata server",
            path,
            error_chain(error)
        );
    }
    let (gcloud, metadata, adc) = match error {
        gcp_auth::Error::NoAuthMethod(gcloud, metadata, adc) => {
            (error_chain(gcloud), error_chain(metadata), error_chain(adc))
        }
        other => {
            let e = error_chain(other);
            (e.clone(), e.clone(), e)
        }
    };
    format!(
        "no Google Cloud credentials found for the Cloud Run executor; looked for: \
         a service-account key file named by GOOGLE_APPLICATION_CREDENTIALS (not set); \
         application default credentials in \
         $HOME/.config/gcloud/application_default_credentials.json ({adc}); \
         the metadata server at metadata.google.internal ({metadata}); \
         the gcloud CLI, `gcloud auth print-access-token` ({gcloud}). \
         Set GOOGLE_APPLICATION_CREDENTIALS to a service-account key file, \
         run `gcloud auth application-default login`, or run on Google Cloud"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_backoff_doubles() {
        assert_eq!(DEFAULT_RETRY.delay(0), Duration::from_millis(200));
        assert_eq!(DEFAULT_RETRY.delay(3), Duration::from_millis(1600));
    }

    #[test]
    fn no_credentials_message_names_every_source() {
        let error = gcp_auth::Error::NoAuthMethod(
            Box::new(gcp_auth::Error::Str("failed to run `gcloud`")),
            Box::new(gcp_auth::Error::Str("metadata server unreachable")),
            Box::new(gcp_auth::Error::Str("no such file")),
        );
        let message = no_credentials_message(None, &error);
        for part in [
            "GOOGLE_APPLICATION_CREDENTIALS (not set)",
            "application_default_credentials.json (no such file)",
            "metadata.google.internal (metadata server unreachable)",
            "gcloud auth print-access-token` (failed to run `gcloud`)",
        ] {
            assert!(message.contains(part), "{part:?} missing from {message}");
        }
    }

    #[test]
    fn google_error_bodies() {
        let body =
            r#"{"error": {"code": 403, "message": "denied", "status": "PERMISSION_DENIED"}}"#;
        assert_eq!(
            google_error(StatusCode::FORBIDDEN, body),
            "403 PERMISSION_DENIED: denied"
        );
        assert_eq!(
            google_error(StatusCode::BAD_GATEWAY, "<html>oops</html>"),
            "502 Bad Gateway: <html>oops</html>"
        );
        assert_eq!(
            google_error(StatusCode::SERVICE_UNAVAILABLE, ""),
            "503 Service Unavailable"
        );
    }

    #[test]
    fn outcome_from_counts_without_condition() {
        let done = json!({"completionTime": "2024-01-01T00:00:00Z", "succeededCount": 1});
        assert_eq!(execution_outcome(&done), Some(Outcome::success(None)));
        let failed = json!({"completionTime": "2024-01-01T00:00:00Z", "failedCount": 1});
        assert_eq!(
            execution_outcome(&failed).and_then(|o| o.error),
            Some("1 of 1 task(s) failed".to_owned())
        );
        assert_eq!(execution_outcome(&json!({"runningCount": 1})), None);
    }
}
