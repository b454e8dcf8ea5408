//! A fake Azure Resource Manager for Container Apps Jobs and a Microsoft
//! Entra ID token endpoint, for testing the Azure executor without Azure.
//!
//! One axum server on `127.0.0.1:0` answers, in the published shapes
//! (`Microsoft.App` api-version 2024-03-01):
//!
//! - `POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant
//!   (form `grant_type`, `client_id`, `client_secret`, `scope`), answered
//!   `{"token_type", "expires_in", "access_token"}`; and `GET /msi/token`,
//!   the managed-identity endpoint (`X-IDENTITY-HEADER`, `resource`),
//!   answered `{"access_token", "expires_on", "resource", "token_type"}`;
//! - `GET /subscriptions/S/resourceGroups/G/providers/Microsoft.App/jobs/J`:
//!   the job resource, with its `properties.template`;
//! - `POST …/jobs/J/start` (a `JobExecutionTemplate`): 202 and
//!   `{"id", "name"}` of the new execution (or, after
//!   [`FakeAzure::answer_starts_without_body`], a bare 202 with a `Location`);
//! - `GET …/jobs/J/executions`: `{"value": [JobExecution]}`;
//! - `GET …/jobs/J/executions/E`: the `JobExecution`
//!   (`properties.status`, `startTime`, `endTime`, `template`);
//! - `POST …/jobs/J/executions/E/stop`: 200, the execution `Stopped`.
//!
//! Every ARM call needs `?api-version=` (else 400
//! `MissingApiVersionParameter`) and a bearer token this server issued
//! (else 401 `AuthenticationFailed`). Errors are ARM bodies
//! `{"error": {"code", "message"}}`; unknown jobs and executions are 404
//! `ResourceNotFound`; a job named `forbidden` is 403
//! `AuthorizationFailed`. [`FakeAzure::fail_next_starts`] makes the next
//! starts answer an error before starting anything,
//! [`FakeAzure::lose_next_start_answers`] after starting (a lost answer).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};

pub const TENANT: &str = "00000000-0000-0000-0000-0000000000aa";
pub const CLIENT_ID: &str = "ork-tests-client";
pub const CLIENT_SECRET: &str = "s3cr3t~with.odd&chars=";
pub const IDENTITY_HEADER: &str = "identity-header-secret";
pub const API_VERSION: &str = "2024-03-01";

/// One ARM call as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Option<Value>,
}

#[derive(Default)]
struct Inner {
    /// Jobs by resource id (lower case), the resource as GET answers it.
    jobs: HashMap<String, Value>,
    executions: BTreeMap<String, Value>,
    fail_starts: VecDeque<u16>,
    lose_starts: VecDeque<u16>,
    /// Answer starts with a bare 202 and a `Location`, no body.
    bare_starts: bool,
    requests: Vec<Recorded>,
    /// Token requests: `client_credentials` or `managed_identity`.
    grants: Vec<String>,
    issued: Vec<String>,
    counter: u64,
}

/// A running fake; the server stops when this is dropped.
pub struct FakeAzure {
    /// `http://127.0.0.1:PORT`: ARM, the authority host and the identity endpoint.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeAzure {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The resource id of a job.
pub fn job_id(subscription: &str, group: &str, job: &str) -> String {
    format!(
        "/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.App/jobs/{job}"
    )
}

impl FakeAzure {
    pub async fn start() -> FakeAzure {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake server");
        });
        FakeAzure { url, inner, server }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("poisoned")
    }

    /// The managed-identity endpoint, for `IDENTITY_ENDPOINT`.
    pub fn identity_endpoint(&self) -> String {
        format!("{}/msi/token", self.url)
    }

    /// Makes a job exist with these template containers.
    pub fn add_job(&self, subscription: &str, group: &str, job: &str, containers: Value) {
        let id = job_id(subscription, group, job);
        let resource = json!({
            "id": id,
            "name": job,
            "type": "Microsoft.App/jobs",
            "location": "westeurope",
            "properties": {
                "provisioningState": "Succeeded",
                "configuration": {"triggerType": "Manual", "replicaTimeout": 1800, "replicaRetryLimit": 0},
                "template": {"containers": containers},
            },
        });
        self.lock().jobs.insert(id.to_lowercase(), resource);
    }

    /// The next starts answer these statuses without starting anything.
    pub fn fail_next_starts(&self, statuses: &[u16]) {
        self.lock().fail_starts.extend(statuses);
    }

    /// The next starts start an execution, then answer these statuses.
    pub fn lose_next_start_answers(&self, statuses: &[u16]) {
        self.lock().lose_starts.extend(statuses);
    }

    /// Starts answer 202 with only a `Location` header (a long-running
    /// operation, as newer api-versions may), no `JobExecutionBase`.
    pub fn answer_starts_without_body(&self) {
        self.lock().bare_starts = true;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn grants(&self) -> Vec<String> {
        self.lock().grants.clone()
    }

    /// Execution ids, in creation order.
    pub fn executions(&self) -> Vec<String> {
        let inner = self.lock();
        let mut all: Vec<(u64, String)> = inner
            .executions
            .iter()
            .map(|(id, e)| (e["seq"].as_u64().unwrap_or(0), id.clone()))
            .collect();
        all.sort();
        all.into_iter().map(|(_, id)| id).collect()
    }

    pub fn execution(&self, id: &str) -> Option<Value> {
        self.lock().executions.get(id).cloned()
    }

    /// The environment of an execution's first container, by name.
    pub fn env(&self, id: &str) -> HashMap<String, String> {
        let e = self.execution(id).expect("execution");
        e["properties"]["template"]["containers"][0]["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| {
                (
                    v["name"].as_str().unwrap_or_default().to_owned(),
                    v["value"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Sets an execution's status (`Succeeded`, `Failed`…), with an end time
    /// when it is final.
    pub fn set_status(&self, id: &str, status: &str) {
        let mut inner = self.lock();
        let e = inner.executions.get_mut(id).expect("execution");
        e["properties"]["status"] = json!(status);
        if !matches!(status, "Running" | "Processing") {
            e["properties"]["endTime"] = json!(chrono::Utc::now().to_rfc3339());
        }
    }
}

fn arm_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn form(body: &[u8]) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query = form(uri.query().unwrap_or("").as_bytes());
    let mut inner = inner.lock().expect("poisoned");

    // Tokens.
    if method == Method::POST && path == format!("/{TENANT}/oauth2/v2.0/token") {
        let f = form(&body);
        inner.grants.push("client_credentials".into());
        let ok = f.get("grant_type").map(String::as_str) == Some("client_credentials")
            && f.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && f.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
            && f.get("scope").map(String::as_str) == Some("https://management.azure.com/.default");
        if !ok {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "invalid_client", "error_description": format!("AADSTS7000215: Invalid client secret provided ({f:?})")})),
            )
                .into_response();
        }
        inner.counter += 1;
        let token = format!("entra-token-{}", inner.counter);
        inner.issued.push(token.clone());
        return Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}))
            .into_response();
    }
    if method == Method::GET && path == "/msi/token" {
        inner.grants.push("managed_identity".into());
        let header_ok = headers
            .get("x-identity-header")
            .is_some_and(|h| h == IDENTITY_HEADER);
        if !header_ok
            || query.get("resource").map(String::as_str) != Some("https://management.azure.com/")
        {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"statusCode": 400, "message": "bad identity request"})),
            )
                .into_response();
        }
        inner.counter += 1;
        let token = format!("msi-token-{}", inner.counter);
        inner.issued.push(token.clone());
        let expires_on = chrono::Utc::now().timestamp() + 3600;
        return Json(json!({"access_token": token, "expires_on": expires_on.to_string(), "resource": "https://management.azure.com/", "token_type": "Bearer"}))
            .into_response();
    }

    // ARM.
    inner.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or("").to_owned(),
        body: serde_json::from_slice(&body).ok(),
    });
    let bearer = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::to_owned);
    if !bearer.is_some_and(|t| inner.issued.contains(&t)) {
        return arm_error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing or invalid.",
        );
    }
    if query.get("api-version").map(String::as_str) != Some(API_VERSION) {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        );
    }
    let lower = path.to_lowercase();
    let (job_key, rest) = match lower.find("/providers/microsoft.app/jobs/") {
        Some(at) => {
            let after = at + "/providers/microsoft.app/jobs/".len();
            let end = lower[after..].find('/').map_or(lower.len(), |i| after + i);
            (lower[..end].to_owned(), path[end..].to_owned())
        }
        None => {
            return arm_error(
                StatusCode::NOT_FOUND,
                "NoRegisteredProviderFound",
                "no such resource type",
            )
        }
    };
    if job_key.ends_with("/jobs/forbidden") {
        return arm_error(
            StatusCode::FORBIDDEN,
            "AuthorizationFailed",
            "The client does not have authorization to perform action 'Microsoft.App/jobs/start/action'.",
        );
    }
    let Some(job) = inner.jobs.get(&job_key).cloned() else {
        return arm_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            &format!(
                "The Resource 'Microsoft.App/jobs/{}' was not found.",
                job_key.rsplit('/').next().unwrap_or("")
            ),
        );
    };
    let job_path = job["id"].as_str().unwrap_or_default().to_owned();
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", []) => Json(job).into_response(),
        ("POST", ["start"]) => {
            if let Some(status) = inner.fail_starts.pop_front() {
                let status = StatusCode::from_u16(status).unwrap();
                return arm_error(status, "ServiceUnavailable", "try again later");
            }
            let Some(template) = serde_json::from_slice::<Value>(&body)
                .ok()
                .filter(|t| t["containers"].is_array())
            else {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContent",
                    "the body is not a JobExecutionTemplate",
                );
            };
            inner.counter += 1;
            let name = format!(
                "{}-{:07x}",
                job["name"].as_str().unwrap_or("job"),
                inner.counter
            );
            let id = format!("{job_path}/executions/{name}");
            let execution = json!({
                "seq": inner.counter,
                "id": id,
                "name": name,
                "type": "Microsoft.App/jobs/executions",
                "properties": {"status": "Running", "startTime": chrono::Utc::now().to_rfc3339(), "template": template},
            });
            inner.executions.insert(id.clone(), execution);
            if let Some(status) = inner.lose_starts.pop_front() {
                let status = StatusCode::from_u16(status).unwrap();
                return arm_error(status, "GatewayTimeout", "the answer was lost");
            }
            if inner.bare_starts {
                let location = format!("/subscriptions/x/providers/Microsoft.App/locations/westeurope/containerappOperationResults/{name}");
                return (StatusCode::ACCEPTED, [("location", location)]).into_response();
            }
            (StatusCode::ACCEPTED, Json(json!({"id": id, "name": name}))).into_response()
        }
        ("GET", ["executions"]) => {
            let prefix = format!("{job_path}/executions/");
            let value: Vec<Value> = inner
                .executions
                .iter()
                .filter(|(id, _)| id.starts_with(&prefix))
                .map(|(_, e)| e.clone())
                .collect();
            Json(json!({"value": value})).into_response()
        }
        ("GET", ["executions", name]) | ("POST", ["executions", name, "stop"]) => {
            let id = format!("{job_path}/executions/{name}");
            let Some(execution) = inner.executions.get_mut(&id) else {
                return arm_error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFound",
                    &format!("execution {name} not found"),
                );
            };
            if method == Method::POST {
                execution["properties"]["status"] = json!("Stopped");
                execution["properties"]["endTime"] = json!(chrono::Utc::now().to_rfc3339());
                return StatusCode::OK.into_response();
            }
            Json(execution.clone()).into_response()
        }
        _ => arm_error(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("{method} {path}"),
        ),
    }
}
