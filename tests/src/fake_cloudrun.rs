//! A fake Google Cloud Run Admin API v2 and OAuth2 token endpoint, for
//! testing the Cloud Run executor without Google.
//!
//! One axum server on `127.0.0.1:0` answers, in Google's published shapes:
//!
//! - `POST /token`: the OAuth2 JWT-bearer grant a service-account key makes
//!   (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=JWT`),
//!   checking the JWT's claims (not its signature) and issuing
//!   `{"access_token", "expires_in", "token_type"}`;
//! - `POST /v2/projects/P/locations/R/jobs/J:run` (a `RunJobRequest`):
//!   a `google.longrunning.Operation` whose `metadata` is the new
//!   `google.cloud.run.v2.Execution`;
//! - `GET /v2/projects/P/locations/R/jobs/J/executions/E`: the `Execution`;
//! - `POST /v2/…/executions/E:cancel`: the operation of the cancellation.
//!
//! API calls need a bearer token this server issued (else 401
//! UNAUTHENTICATED). Errors are Google error bodies
//! `{"error": {"code", "message", "status", "details"}}`. Scripting: jobs
//! must be added ([`FakeCloudRun::add_job`]), others are 404 NOT_FOUND; a job
//! named `forbidden` is 403 PERMISSION_DENIED; [`FakeCloudRun::fail_next_runs`]
//! makes the next `jobs.run` calls answer 429 or 5xx; executions are moved to
//! running, succeeded or failed with `set_*`. Every API request is recorded
//! (method, path, `Authorization`, JSON body), as is every token grant.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

/// The service account the test key file belongs to.
pub const CLIENT_EMAIL: &str = "ork-tests@ork-test-project.iam.gserviceaccount.com";
pub const PROJECT_ID: &str = "ork-test-project";
pub const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const EXECUTION_TYPE: &str = "type.googleapis.com/google.cloud.run.v2.Execution";

/// One API call as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path only, such as `/v2/projects/p/locations/r/jobs/j:run`.
    pub path: String,
    pub authorization: Option<String>,
    /// The JSON body, if there was one.
    pub body: Option<Value>,
}

/// One request to the token endpoint.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub grant_type: String,
    /// The JWT assertion's header and claims, decoded.
    pub jwt_header: Value,
    pub claims: Value,
    /// What was issued, if anything.
    pub access_token: Option<String>,
}

#[derive(Default)]
struct Inner {
    /// Known jobs, as `projects/P/locations/R/jobs/J`.
    jobs: HashSet<String>,
    /// HTTP statuses the next `jobs.run` calls answer with, in order.
    run_failures: VecDeque<u16>,
    reject_tokens: bool,
    /// Executions by name, and their names in creation order.
    executions: HashMap<String, Value>,
    created: Vec<String>,
    requests: Vec<Recorded>,
    grants: Vec<TokenGrant>,
    issued: Vec<String>,
    counter: u64,
    /// How long each API call takes to answer (a real API's latency).
    latency: std::time::Duration,
}

/// A running fake; the server stops when this is dropped.
pub struct FakeCloudRun {
    /// `http://127.0.0.1:PORT`, the API endpoint.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCloudRun {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeCloudRun {
    pub async fn start() -> FakeCloudRun {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let shared = Shared {
            inner: inner.clone(),
            token_uri: format!("{url}/token"),
        };
        let app = Router::new().fallback(handle).with_state(shared);
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake server");
        });
        FakeCloudRun { url, inner, server }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("poisoned")
    }

    /// Makes every API call take `latency` to answer.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.lock().latency = latency;
    }

    /// The OAuth2 token endpoint, for the key file's `token_uri`.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.url)
    }

    /// Makes `projects/{project}/locations/{region}/jobs/{job}` exist.
    pub fn add_job(&self, project: &str, region: &str, job: &str) {
        self.lock()
            .jobs
            .insert(format!("projects/{project}/locations/{region}/jobs/{job}"));
    }

    /// The next `jobs.run` calls answer these statuses (429, 500, 503…), in
    /// order, before any real handling.
    pub fn fail_next_runs(&self, statuses: &[u16]) {
        self.lock().run_failures.extend(statuses);
    }

    /// The token endpoint answers `invalid_grant` from now on.
    pub fn reject_token_requests(&self) {
        self.lock().reject_tokens = true;
    }

    /// Every API call so far (the token endpoint's are in [`Self::token_grants`]).
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn token_grants(&self) -> Vec<TokenGrant> {
        self.lock().grants.clone()
    }

    pub fn issued_tokens(&self) -> Vec<String> {
        self.lock().issued.clone()
    }

    /// Names of the executions started, oldest first.
    pub fn executions(&self) -> Vec<String> {
        self.lock().created.clone()
    }

    pub fn execution(&self, name: &str) -> Option<Value> {
        self.lock().executions.get(name).cloned()
    }

    /// The execution's task has started and runs.
    pub fn set_running(&self, name: &str) {
        self.update(name, |e| {
            let now = now();
            e["startTime"] = json!(now);
            e["runningCount"] = json!(1);
            e["conditions"] = json!([
                condition("Completed", "CONDITION_PENDING", "", None),
                condition("ResourcesAvailable", "CONDITION_SUCCEEDED", "", None),
                condition("Started", "CONDITION_SUCCEEDED", "", None),
            ]);
        });
    }

    /// The execution's task exited 0.
    pub fn set_succeeded(&self, name: &str) {
        self.update(name, |e| {
            finish(e);
            e["succeededCount"] = json!(1);
            e["conditions"] = json!([
                condition(
                    "Completed",
                    "CONDITION_SUCCEEDED",
                    "Execution completed successfully in 4.21s.",
                    None
                ),
                condition("ResourcesAvailable", "CONDITION_SUCCEEDED", "", None),
                condition("Started", "CONDITION_SUCCEEDED", "", None),
            ]);
        });
    }

    /// The execution's task failed, with this `Completed` condition message.
    pub fn set_failed(&self, name: &str, message: &str) {
        self.update(name, |e| {
            finish(e);
            e["failedCount"] = json!(1);
            e["conditions"] = json!([
                condition(
                    "Completed",
                    "CONDITION_FAILED",
                    message,
                    Some("NON_ZERO_EXIT_CODE")
                ),
                condition("ResourcesAvailable", "CONDITION_SUCCEEDED", "", None),
                condition("Started", "CONDITION_SUCCEEDED", "", None),
            ]);
        });
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut Value)) {
        let mut inner = self.lock();
        let execution = inner
            .executions
            .get_mut(name)
            .unwrap_or_else(|| panic!("no execution {name}"));
        f(execution);
    }

    /// Writes a service-account key file for this server (a real RSA key,
    /// `token_uri` pointing here) into `dir`, and returns its path.
    pub fn write_key_file(&self, dir: &Path) -> PathBuf {
        let key = json!({
            "type": "service_account",
            "project_id": PROJECT_ID,
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": test_rsa_key_pem(),
            "client_email": CLIENT_EMAIL,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri(),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        });
        let path = dir.join("service-account.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&key).unwrap()).expect("write key file");
        path
    }
}

/// A throwaway 2048-bit RSA key (PKCS#8 PEM, what service-account keys
/// hold), made once per test binary with `openssl`. Test-only: it signs JWTs
/// that only this fake reads.
pub fn test_rsa_key_pem() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
            ])
            .output()
            .expect("these tests need `openssl` on PATH to make a throwaway RSA key");
        assert!(
            out.status.success(),
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pem = String::from_utf8(out.stdout).expect("PEM is text");
        assert!(pem.contains("BEGIN PRIVATE KEY"), "not PKCS#8: {pem}");
        pem
    })
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    token_uri: String,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn condition(kind: &str, state: &str, message: &str, reason: Option<&str>) -> Value {
    let mut c = json!({
        "type": kind,
        "state": state,
        "lastTransitionTime": now(),
    });
    if !message.is_empty() {
        c["message"] = json!(message);
    }
    if let Some(reason) = reason {
        c["executionReason"] = json!(reason);
    }
    c
}

/// Marks an execution ended (counts and conditions are the caller's).
fn finish(e: &mut Value) {
    let now = now();
    if e.get("startTime").is_none() {
        e["startTime"] = json!(now);
    }
    e["completionTime"] = json!(now);
    e["updateTime"] = json!(now);
    e["reconciling"] = json!(false);
    if let Some(obj) = e.as_object_mut() {
        obj.remove("runningCount");
    }
}

/// A Google API error response.
fn google_error(code: StatusCode, status: &str, message: &str) -> Response {
    let mut error = json!({
        "code": code.as_u16(),
        "message": message,
        "status": status,
    });
    if status == "PERMISSION_DENIED" {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "IAM_PERMISSION_DENIED",
            "domain": "run.googleapis.com",
            "metadata": {"permission": "run.jobs.run"},
        }]);
    }
    (code, Json(json!({ "error": error }))).into_response()
}

/// Google's canonical status for an HTTP code the script asks for.
fn status_name(code: StatusCode) -> (&'static str, &'static str) {
    match code.as_u16() {
        429 => (
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Job run requests' and limit \
             'Job run requests per minute per region' of service 'run.googleapis.com'.",
        ),
        500 => ("INTERNAL", "Internal error encountered."),
        503 => ("UNAVAILABLE", "The service is currently unavailable."),
        504 => ("DEADLINE_EXCEEDED", "The request timed out."),
        400 => ("INVALID_ARGUMENT", "Request contains an invalid argument."),
        403 => ("PERMISSION_DENIED", "The caller does not have permission"),
        404 => ("NOT_FOUND", "Requested entity was not found."),
        409 => ("ALREADY_EXISTS", "Resource already exists."),
        _ => ("UNKNOWN", "Unknown error."),
    }
}

async fn handle(
    State(shared): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    if path == "/token" && method == Method::POST {
        return token(&shared, &body);
    }
    let latency = shared.inner.lock().expect("poisoned").latency;
    tokio::time::sleep(latency).await;
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let json_body = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => Some(v),
            Err(e) => {
                return google_error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    &format!("Invalid JSON payload received. {e}"),
                )
            }
        }
    };
    let mut inner = shared.inner.lock().expect("poisoned");
    inner.requests.push(Recorded {
        method: method.to_string(),
        path: path.clone(),
        authorization: authorization.clone(),
        body: json_body.clone(),
    });

    let Some(rest) = path.strip_prefix("/v2/") else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
    };
    let bearer = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| inner.issued.iter().any(|i| i == t)) {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, \
             login cookie or other valid authentication credential.",
        );
    }

    if let Some(job) = rest.strip_suffix(":run") {
        if method != Method::POST {
            return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
        }
        return run_job(&mut inner, job, json_body.as_ref());
    }
    if let Some(execution) = rest.strip_suffix(":cancel") {
        if method != Method::POST {
            return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
        }
        return cancel_execution(&mut inner, execution);
    }
    if method == Method::GET && is_execution_name(rest) {
        return match inner.executions.get(rest) {
            Some(e) => Json(e.clone()).into_response(),
            None => execution_not_found(rest),
        };
    }
    google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.")
}

/// `projects/P/locations/R/jobs/J` split into (P, R, J).
fn job_parts(name: &str) -> Option<(&str, &str, &str)> {
    let p: Vec<&str> = name.split('/').collect();
    (p.len() == 6 && p[0] == "projects" && p[2] == "locations" && p[4] == "jobs")
        .then(|| (p[1], p[3], p[5]))
}

fn is_execution_name(name: &str) -> bool {
    let p: Vec<&str> = name.split('/').collect();
    p.len() == 8 && job_parts(&p[..6].join("/")).is_some() && p[6] == "executions"
}

fn execution_not_found(name: &str) -> Response {
    let p: Vec<&str> = name.split('/').collect();
    let short = p.last().copied().unwrap_or(name);
    google_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!("Resource '{short}' of kind 'EXECUTION' does not exist."),
    )
}

fn run_job(inner: &mut Inner, job_name: &str, body: Option<&Value>) -> Response {
    if let Some(code) = inner.run_failures.pop_front() {
        let code = StatusCode::from_u16(code).expect("a status code");
        let (status, message) = status_name(code);
        return google_error(code, status, message);
    }
    let Some((project, region, job)) = job_parts(job_name) else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
    };
    if job == "forbidden" {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!("Permission 'run.jobs.run' denied on resource '{job_name}' (or resource may not exist)."),
        );
    }
    if !inner.jobs.contains(job_name) {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!(
                "Resource '{job}' of kind 'JOB' in region '{region}' in project '{project}' does not exist."
            ),
        );
    }
    let empty = json!({});
    let body = body.unwrap_or(&empty);
    if let Err(message) = check_run_job_request(body) {
        return google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", &message);
    }

    inner.counter += 1;
    let n = inner.counter;
    let name = format!("{job_name}/executions/{job}-x{n:04}");
    let overrides = &body["overrides"];
    let container = &overrides["containerOverrides"][0];
    let task_count = overrides["taskCount"].as_i64().unwrap_or(1);
    let now = now();
    let mut template_container = json!({
        "image": format!("{region}-docker.pkg.dev/{project}/ork/{job}:latest"),
        "resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}},
    });
    if let Some(args) = container.get("args") {
        template_container["args"] = args.clone();
    }
    if let Some(env) = container.get("env") {
        template_container["env"] = env.clone();
    }
    let mut execution = json!({
        "name": name,
        "uid": uuid::Uuid::now_v7().to_string(),
        "generation": "1",
        "createTime": now,
        "updateTime": now,
        "launchStage": "GA",
        "job": job,
        "parallelism": 1,
        "taskCount": task_count,
        "template": {
            "taskCount": task_count,
            "template": {
                "containers": [template_container],
                "maxRetries": 0,
                "timeout": overrides["timeout"].as_str().unwrap_or("600s"),
                "serviceAccount": CLIENT_EMAIL,
                "executionEnvironment": "EXECUTION_ENVIRONMENT_GEN2",
            },
        },
        "reconciling": true,
        "conditions": [
            condition("Completed", "CONDITION_PENDING", "", None),
            condition("ResourcesAvailable", "CONDITION_PENDING", "", None),
        ],
        "observedGeneration": "1",
        "logUri": format!(
            "https://console.cloud.google.com/logs/viewer?project={project}&resource=cloud_run_job/job_name/{job}/location/{region}"
        ),
        "etag": format!("\"e{n}\""),
    });
    inner.executions.insert(name.clone(), execution.clone());
    inner.created.push(name.clone());

    execution["@type"] = json!(EXECUTION_TYPE);
    Json(json!({
        "name": format!("projects/{project}/locations/{region}/operations/{}", uuid::Uuid::now_v7()),
        "metadata": execution,
    }))
    .into_response()
}

fn cancel_execution(inner: &mut Inner, name: &str) -> Response {
    if !is_execution_name(name) {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
    }
    let Some(execution) = inner.executions.get_mut(name) else {
        return execution_not_found(name);
    };
    if execution.get("completionTime").is_some() {
        return google_error(
            StatusCode::BAD_REQUEST,
            "FAILED_PRECONDITION",
            &format!("Execution '{name}' has already completed and cannot be cancelled."),
        );
    }
    finish(execution);
    execution["cancelledCount"] = json!(1);
    execution["conditions"] = json!([
        condition(
            "Completed",
            "CONDITION_FAILED",
            "The execution was cancelled.",
            Some("CANCELLED")
        ),
        condition("ResourcesAvailable", "CONDITION_SUCCEEDED", "", None),
    ]);
    let mut metadata = execution.clone();
    metadata["@type"] = json!(EXECUTION_TYPE);
    let (project, region) = {
        let p: Vec<&str> = name.split('/').collect();
        (p[1].to_owned(), p[3].to_owned())
    };
    Json(json!({
        "name": format!("projects/{project}/locations/{region}/operations/{}", uuid::Uuid::now_v7()),
        "metadata": metadata,
    }))
    .into_response()
}

/// The fields Google's `RunJobRequest` has; an unknown one is rejected, as
/// Google does (`Invalid JSON payload received. Unknown name …`).
fn check_run_job_request(body: &Value) -> Result<(), String> {
    fn known(v: &Value, at: &str, fields: &[&str]) -> Result<(), String> {
        let obj = v
            .as_object()
            .ok_or_else(|| format!("Invalid JSON payload received. '{at}' is not an object."))?;
        match obj.keys().find(|k| !fields.contains(&k.as_str())) {
            Some(k) => Err(format!(
                "Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field."
            )),
            None => Ok(()),
        }
    }
    known(body, "", &["validateOnly", "etag", "overrides"])?;
    let Some(overrides) = body.get("overrides") else {
        return Ok(());
    };
    known(
        overrides,
        "overrides",
        &["containerOverrides", "taskCount", "timeout"],
    )?;
    if let Some(n) = overrides.get("taskCount") {
        if n.as_i64().is_none_or(|n| n < 0) {
            return Err("overrides.task_count: must be a non-negative int32".into());
        }
    }
    if let Some(t) = overrides.get("timeout") {
        let ok = t
            .as_str()
            .and_then(|t| t.strip_suffix('s'))
            .is_some_and(|secs| {
                let mut parts = secs.splitn(2, '.');
                let whole = parts.next().unwrap_or("");
                let frac = parts.next().unwrap_or("0");
                !whole.is_empty()
                    && whole.bytes().all(|b| b.is_ascii_digit())
                    && frac.len() <= 9
                    && frac.bytes().all(|b| b.is_ascii_digit())
            });
        if !ok {
            return Err(format!(
                "Invalid value at 'overrides.timeout' (type.googleapis.com/google.protobuf.Duration), {t}"
            ));
        }
    }
    let containers = match overrides.get("containerOverrides") {
        None => return Ok(()),
        Some(Value::Array(c)) => c,
        Some(_) => return Err("Invalid value at 'overrides.container_overrides'".into()),
    };
    for (i, c) in containers.iter().enumerate() {
        let at = format!("overrides.container_overrides[{i}]");
        known(c, &at, &["name", "args", "env", "clearArgs"])?;
        if let Some(args) = c.get("args") {
            if !args
                .as_array()
                .is_some_and(|a| a.iter().all(Value::is_string))
            {
                return Err(format!("Invalid value at '{at}.args', must be strings"));
            }
        }
        let mut seen = HashSet::new();
        for (j, e) in c["env"].as_array().into_iter().flatten().enumerate() {
            let at = format!("{at}.env[{j}]");
            known(e, &at, &["name", "value", "valueSource"])?;
            let Some(name) = e["name"].as_str().filter(|n| !n.is_empty()) else {
                return Err(format!("{at}.name: must not be empty"));
            };
            if !e["value"].is_string() && e.get("valueSource").is_none() {
                return Err(format!("Invalid value at '{at}.value'"));
            }
            if !seen.insert(name.to_owned()) {
                return Err(format!("{at}.name: duplicate environment variable {name}"));
            }
        }
    }
    Ok(())
}

/// The OAuth2 token endpoint of a service-account key's `token_uri`.
fn token(shared: &Shared, body: &[u8]) -> Response {
    let form = parse_form(&String::from_utf8_lossy(body));
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let grant_type = field("grant_type");
    let assertion = field("assertion");
    let mut segments = assertion.split('.');
    let mut decode = || -> Value {
        segments
            .next()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    };
    let jwt_header = decode();
    let claims = decode();

    let mut inner = shared.inner.lock().expect("poisoned");
    let problem = if inner.reject_tokens {
        Some("Invalid JWT Signature.".to_owned())
    } else if grant_type != JWT_BEARER {
        Some(format!("unsupported grant_type {grant_type:?}"))
    } else if jwt_header["alg"] != "RS256" {
        Some(format!("bad JWT header {jwt_header}"))
    } else if claims["iss"] != CLIENT_EMAIL || claims["aud"] != shared.token_uri.as_str() {
        Some(format!("Invalid JWT: bad iss or aud in {claims}"))
    } else if claims["exp"]
        .as_i64()
        .zip(claims["iat"].as_i64())
        .is_none_or(|(exp, iat)| exp <= iat)
    {
        Some("Invalid JWT: Token must be a short-lived token".to_owned())
    } else {
        None
    };
    let access_token = match &problem {
        Some(_) => None,
        None => Some(format!("ya29.fake-access-token-{}", inner.issued.len() + 1)),
    };
    inner.grants.push(TokenGrant {
        grant_type,
        jwt_header,
        claims,
        access_token: access_token.clone(),
    });
    match (access_token, problem) {
        (Some(token), _) => {
            inner.issued.push(token.clone());
            Json(json!({
                "access_token": token,
                "expires_in": 3600,
                "token_type": "Bearer",
            }))
            .into_response()
        }
        (None, problem) => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": "invalid_grant",
                "error_description": problem.unwrap_or_default(),
            })),
        )
            .into_response(),
    }
}

/// `application/x-www-form-urlencoded`, decoded.
fn parse_form(body: &str) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}
