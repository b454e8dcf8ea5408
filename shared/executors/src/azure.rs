//! Runs attempts as Azure Container Apps Job executions, through the ARM
//! REST API (`management.azure.com`, `Microsoft.App`, api-version
//! [`API_VERSION`]).
//!
//! The job (image, resources, identity, `triggerType: Manual`,
//! `replicaRetryLimit: 0` so that Ork does the retrying) is deployed
//! outside Ork; a task names it in its `azure:` block and Ork starts
//! executions of it:
//!
//! - `dispatch`: `GET …/jobs/{job}` (its template), then
//!   `POST …/jobs/{job}/start` with that template overridden: the task's
//!   container gets the worker contract's environment (added to, or
//!   replacing by name, the job's own variables) and the task's `command` /
//!   `args`. The answer names the execution (`JobExecutionBase`; an answer
//!   without one, a bare 202, is resolved by listing as below); its resource
//!   id (`/subscriptions/…/jobs/{job}/executions/{name}`) is the execution id.
//!   A start retried after a transient error first lists the job's
//!   executions (`GET …/jobs/{job}/executions`) for one carrying this
//!   attempt (its `ORK_RUN_ID`, `ORK_TASK`, `ORK_TASK_INDEX`, `ORK_ATTEMPT`),
//!   so a start that did happen is not made twice;
//! - `poll`: `GET {execution id}`, its `properties.status`;
//! - `cancel`: `POST {execution id}/stop`.
//!
//! Tokens come from a minimal client for two Microsoft Entra ID grants
//! ([`Credential`]), not from `azure_identity` (see docs/azure.md for why).
//! Throttling (429), server errors (5xx) and connection errors are retried
//! with exponential backoff; any other answer fails at once with ARM's own
//! message (`{"error": {"code", "message"}}`).

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError, Outcome};
use ork_core::model::AttemptRef;
use ork_core::retry::{retry, Backoff};

use crate::rest::{self, error_chain, truncate};

/// Azure Resource Manager, unless `ORK_AZURE_ENDPOINT` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";

/// Microsoft Entra ID's public cloud, unless `AZURE_AUTHORITY_HOST` says otherwise.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The `Microsoft.App` API version every call uses.
pub const API_VERSION: &str = "2024-03-01";

/// The resource tokens are requested for.
pub const RESOURCE: &str = "https://management.azure.com/";

/// How transient errors are retried: four retries, 200 ms doubling.
pub const DEFAULT_RETRY: Backoff =
    Backoff::new(4, Duration::from_millis(200), Duration::from_secs(10));

/// The variables that identify an attempt in an execution's template.
const ATTEMPT_VARS: [&str; 4] = ["ORK_RUN_ID", "ORK_TASK", "ORK_TASK_INDEX", "ORK_ATTEMPT"];

/// How Ork gets an ARM token.
#[derive(Clone)]
pub enum Credential {
    /// A service principal's secret: `POST {authority}/{tenant}/oauth2/v2.0/token`
    /// (`grant_type=client_credentials`, scope `…/.default`).
    ClientSecret {
        authority: String,
        tenant: String,
        client_id: String,
        secret: String,
    },
    /// The managed identity of a Container App, App Service or Function:
    /// `GET $IDENTITY_ENDPOINT?resource=…&api-version=2019-08-01` with the
    /// `X-IDENTITY-HEADER` secret (a user-assigned identity by client id).
    ManagedIdentity {
        endpoint: String,
        header: String,
        client_id: Option<String>,
    },
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::ClientSecret {
                authority,
                tenant,
                client_id,
                ..
            } => f
                .debug_struct("ClientSecret")
                .field("authority", authority)
                .field("tenant", tenant)
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            Credential::ManagedIdentity {
                endpoint,
                client_id,
                ..
            } => f
                .debug_struct("ManagedIdentity")
                .field("endpoint", endpoint)
                .field("client_id", client_id)
                .finish_non_exhaustive(),
        }
    }
}

impl Credential {
    /// From the environment, in this order: `AZURE_TENANT_ID` +
    /// `AZURE_CLIENT_ID` + `AZURE_CLIENT_SECRET` (and `AZURE_AUTHORITY_HOST`),
    /// as `azure_identity`'s environment credential reads them; else
    /// `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, which Azure sets where a
    /// managed identity is assigned (`AZURE_CLIENT_ID` picks a
    /// user-assigned one).
    pub fn from_env() -> Result<Credential, ExecutorError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        if let (Some(tenant), Some(client_id), Some(secret)) = (
            var("AZURE_TENANT_ID"),
            var("AZURE_CLIENT_ID"),
            var("AZURE_CLIENT_SECRET"),
        ) {
            let authority = var("AZURE_AUTHORITY_HOST").unwrap_or_else(|| DEFAULT_AUTHORITY.into());
            return Ok(Credential::ClientSecret {
                authority: authority.trim_end_matches('/').to_owned(),
                tenant,
                client_id,
                secret,
            });
        }
        if let (Some(endpoint), Some(header)) = (var("IDENTITY_ENDPOINT"), var("IDENTITY_HEADER")) {
            return Ok(Credential::ManagedIdentity {
                endpoint,
                header,
                client_id: var("AZURE_CLIENT_ID"),
            });
        }
        Err(ExecutorError::not_configured(
            "no Azure credentials for the Azure executor; looked for: a service principal \
             (AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET, not all set); \
             a managed identity (IDENTITY_ENDPOINT and IDENTITY_HEADER, set by Azure where \
             one is assigned: not set). Set the three AZURE_* variables, or run on Azure \
             with a managed identity",
        ))
    }
}

/// A token and when to stop using it.
struct Cached {
    token: String,
    renew_at: Instant,
}

/// Starts each attempt as one execution of an existing Container Apps Job.
pub struct AzureExecutor {
    /// No trailing slash.
    endpoint: String,
    credential: Credential,
    token: tokio::sync::Mutex<Option<Cached>>,
    retry: Backoff,
    http: reqwest::Client,
}

impl fmt::Debug for AzureExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureExecutor")
            .field("endpoint", &self.endpoint)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl AzureExecutor {
    pub fn new(endpoint: String, credential: Credential, retry: Backoff) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("the HTTP client's TLS backend initializes");
        AzureExecutor {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            credential,
            token: tokio::sync::Mutex::new(None),
            retry,
            http,
        }
    }

    /// [`Credential::from_env`], and the endpoint `ORK_AZURE_ENDPOINT`
    /// (by default [`DEFAULT_ENDPOINT`]).
    pub fn from_env() -> Result<Self, ExecutorError> {
        let endpoint = std::env::var("ORK_AZURE_ENDPOINT")
            .ok()
            .filter(|e| !e.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
        Ok(Self::new(endpoint, Credential::from_env()?, DEFAULT_RETRY))
    }

    /// A bearer token for ARM, from the cache until five minutes before it
    /// expires.
    async fn token(&self) -> Result<String, ApiError> {
        let mut cached = self.token.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.renew_at) {
            return Ok(c.token.clone());
        }
        let fail = |detail: String, transient: bool| ApiError {
            op: "token",
            status: None,
            detail: format!("cannot get an Azure access token: {detail}"),
            transient,
            tries: 1,
        };
        let request = match &self.credential {
            Credential::ClientSecret {
                authority,
                tenant,
                client_id,
                secret,
            } => self
                .http
                .post(format!("{authority}/{}/oauth2/v2.0/token", encode(tenant)))
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(format!(
                    "grant_type=client_credentials&client_id={}&client_secret={}&scope={}",
                    encode(client_id),
                    encode(secret),
                    encode(&format!("{RESOURCE}.default"))
                )),
            Credential::ManagedIdentity {
                endpoint,
                header,
                client_id,
            } => {
                let mut url = format!(
                    "{endpoint}?api-version=2019-08-01&resource={}",
                    encode(RESOURCE)
                );
                if let Some(id) = client_id {
                    url.push_str(&format!("&client_id={}", encode(id)));
                }
                self.http.get(url).header("X-IDENTITY-HEADER", header)
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| fail(error_chain(&e), true))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .map_err(|e| fail(format!("{status}: {}", error_chain(&e)), true))?;
        if !status.is_success() {
            let why = body["error_description"]
                .as_str()
                .or(body["error"].as_str())
                .or(body["message"].as_str())
                .unwrap_or("no reason given");
            return Err(fail(
                format!("{status}: {why}"),
                status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error(),
            ));
        }
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| fail("the answer has no access_token".into(), false))?
            .to_owned();
        // `expires_in` (seconds, Entra ID) or `expires_on` (epoch seconds,
        // managed identity), either a number or a string.
        let number = |v: &Value| v.as_u64().or_else(|| v.as_str()?.parse().ok());
        let lifetime = number(&body["expires_in"])
            .or_else(|| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .ok()?
                    .as_secs();
                number(&body["expires_on"]).map(|on| on.saturating_sub(now))
            })
            .unwrap_or(0);
        let renew_at = Instant::now() + Duration::from_secs(lifetime.saturating_sub(300));
        *cached = Some(Cached {
            token: token.clone(),
            renew_at,
        });
        Ok(token)
    }

    /// One ARM call, retried while the error is transient; the JSON answer.
    async fn call(
        &self,
        op: &'static str,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Value, ApiError> {
        let tries = AtomicU32::new(0);
        retry(
            self.retry,
            |e: &ApiError| e.transient,
            || async {
                let n = tries.fetch_add(1, Ordering::Relaxed) + 1;
                self.try_call(op, method.clone(), url, body)
                    .await
                    .inspect_err(|e| {
                        if e.transient {
                            tracing::warn!(op, url, tries = n, "Azure call failed: {}", e.detail);
                        }
                    })
            },
        )
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
        let token = self.token().await.map_err(|e| ApiError { op, ..e })?;
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        rest::json_response(request, arm_error)
            .await
            .map_err(|f| ApiError {
                op,
                status: f.status,
                detail: f.detail,
                transient: f.transient,
                tries: 1,
            })
    }

    fn url(&self, path: &str, suffix: &str) -> String {
        format!("{}{path}{suffix}?api-version={API_VERSION}", self.endpoint)
    }

    /// The execution of an earlier start of this attempt, if the job lists one.
    async fn find_started(
        &self,
        job: &str,
        req: &DispatchRequest,
    ) -> Result<Option<String>, ApiError> {
        let env = req.worker_env();
        let mut url = Some(self.url(job, "/executions"));
        while let Some(page) = url.take() {
            let list = self
                .call("executions.list", Method::GET, &page, None)
                .await?;
            let found = list["value"].as_array().into_iter().flatten().find(|e| {
                let containers = e["properties"]["template"]["containers"].as_array();
                containers.into_iter().flatten().any(|c| {
                    ATTEMPT_VARS.iter().all(|var| {
                        let want = env.iter().find(|(n, _)| n == var).map(|(_, v)| v.as_str());
                        env_value(c, var) == want
                    })
                })
            });
            if let Some(id) = found.and_then(|e| e["id"].as_str()) {
                return Ok(Some(id.to_owned()));
            }
            url = list["nextLink"].as_str().map(str::to_owned);
        }
        Ok(None)
    }

    /// The URL of an execution (plus `suffix`), refusing ids that are not
    /// Container Apps Job execution ids.
    fn execution_url(&self, execution_id: &str, suffix: &str) -> Result<String, ExecutorError> {
        let parts: Vec<&str> = execution_id.split('/').collect();
        let well_formed = parts.len() == 11
            && parts[0].is_empty()
            && parts[1].eq_ignore_ascii_case("subscriptions")
            && parts[3].eq_ignore_ascii_case("resourceGroups")
            && parts[5].eq_ignore_ascii_case("providers")
            && parts[6].eq_ignore_ascii_case("Microsoft.App")
            && parts[7].eq_ignore_ascii_case("jobs")
            && parts[9].eq_ignore_ascii_case("executions")
            && parts[1..].iter().all(|p| is_name_segment(p));
        if !well_formed {
            return Err(ExecutorError::permanent(format!(
                "{execution_id:?} is not a Container Apps Job execution id \
                 (/subscriptions/S/resourceGroups/G/providers/Microsoft.App/jobs/J/executions/E)"
            )));
        }
        Ok(self.url(execution_id, suffix))
    }
}

#[async_trait]
impl Executor for AzureExecutor {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let target = req
            .spec
            .azure
            .as_ref()
            .ok_or_else(|| ExecutorError::permanent("azure task without an `azure:` block"))?;
        crate::check_remote_input(req, "an Azure Container Apps Job")?;
        for (what, value) in [
            ("subscription", &target.subscription),
            ("resource_group", &target.resource_group),
            ("job", &target.job),
        ] {
            if !is_name_segment(value) {
                return Err(ExecutorError::permanent(format!(
                    "invalid Azure {what} {value:?}"
                )));
            }
        }
        let job = format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.App/jobs/{}",
            target.subscription, target.resource_group, target.job
        );
        let resource = self
            .call("jobs.get", Method::GET, &self.url(&job, ""), None)
            .await?;
        let template = start_template(req, &resource, target.container.as_deref())?;
        let start = self.url(&job, "/start");
        let tries = AtomicU32::new(0);
        let started = retry(
            self.retry,
            |e: &ApiError| e.transient,
            || async {
                // A start that failed in transit may have happened.
                if tries.fetch_add(1, Ordering::Relaxed) > 0 {
                    if let Some(id) = self.find_started(&job, req).await? {
                        return Ok(json!({ "id": id }));
                    }
                }
                self.try_call("jobs.start", Method::POST, &start, Some(&template))
                    .await
            },
        )
        .await
        .map_err(|mut e| {
            e.tries = tries.load(Ordering::Relaxed);
            ExecutorError::from(e)
        })?;
        let execution_id = match (started["id"].as_str(), started["name"].as_str()) {
            (Some(id), _) if !id.is_empty() => id.to_owned(),
            (None, Some(name)) if is_name_segment(name) => format!("{job}/executions/{name}"),
            // A 202 may come with only a `Location` (a long-running
            // operation): the execution is found by its attempt.
            _ => self.find_started(&job, req).await?.ok_or_else(|| {
                ExecutorError::permanent(format!(
                    "Azure jobs.start answered without an execution, and the job lists none \
                     of this attempt: {}",
                    truncate(&started.to_string())
                ))
            })?,
        };
        tracing::debug!(
            attempt = %req.attempt.task_id,
            task = %req.attempt.name,
            execution = %execution_id,
            "started Azure Container Apps Job execution"
        );
        Ok(Dispatch::Started { execution_id })
    }

    async fn cancel(&self, attempt: &AttemptRef, execution_id: &str) -> Result<(), ExecutorError> {
        let url = self.execution_url(execution_id, "/stop")?;
        match self.call("executions.stop", Method::POST, &url, None).await {
            Ok(_) => Ok(()),
            // Gone, or already finished: nothing left to stop.
            Err(e) if matches!(e.status, Some(StatusCode::NOT_FOUND | StatusCode::CONFLICT)) => {
                tracing::info!(
                    attempt = %attempt.task_id,
                    execution = execution_id,
                    "Azure execution not stopped, it has likely ended: {e}"
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

/// The body of `jobs/{job}/start` (a `JobExecutionTemplate`): the job's
/// own containers and init containers, with the task's container (named
/// by `container`, else the first) given the worker contract's
/// environment over the job's own variables (by name; `ORK_TIMEOUT` too
/// when the task has a timeout, since a job's `replicaTimeout` cannot be
/// overridden per execution), and the task's `command` (the container's
/// command) and `args`.
pub fn start_template(
    req: &DispatchRequest,
    job: &Value,
    container: Option<&str>,
) -> Result<Value, ExecutorError> {
    let template = &job["properties"]["template"];
    let mut containers = template["containers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let index = match container {
        Some(name) => containers.iter().position(|c| c["name"] == name),
        None => (!containers.is_empty()).then_some(0),
    };
    let Some(index) = index else {
        return Err(ExecutorError::permanent(format!(
            "the Container Apps Job {:?} has no container {}",
            job["name"].as_str().unwrap_or("?"),
            container.map_or("at all".into(), |c| format!("named {c:?}"))
        )));
    };
    let mut env: Vec<(String, String)> = req.container_env();
    if let Some(t) = req.timeout {
        let secs = t.as_secs() + u64::from(t.subsec_nanos() > 0);
        env.push(("ORK_TIMEOUT".into(), format!("{secs}s")));
    }
    let c = &mut containers[index];
    let mut vars: Vec<Value> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| !env.iter().any(|(n, _)| v["name"] == n.as_str()))
        .cloned()
        .collect();
    vars.extend(
        env.into_iter()
            .map(|(name, value)| json!({"name": name, "value": value})),
    );
    c["env"] = json!(vars);
    if let Some(command) = &req.spec.command {
        c["command"] = json!(command.words());
        c["args"] = json!(req.spec.args);
    } else if !req.spec.args.is_empty() {
        c["args"] = json!(req.spec.args);
    }
    let mut body = json!({ "containers": containers });
    if let Some(init) = template["initContainers"]
        .as_array()
        .filter(|i| !i.is_empty())
    {
        body["initContainers"] = json!(init);
    }
    Ok(body)
}

/// How a `JobExecution` ended, or `None` while it runs (`Running`,
/// `Processing`, `Unknown`).
pub fn execution_outcome(execution: &Value) -> Option<Outcome> {
    let properties = &execution["properties"];
    let status = properties["status"].as_str().unwrap_or("");
    let name = execution["name"].as_str().unwrap_or("?");
    let error = match status {
        "Succeeded" => return Some(Outcome::success(None)),
        "Failed" => format!("Container Apps Job execution {name} failed"),
        "Stopped" => format!("Container Apps Job execution {name} was stopped"),
        // Some replicas failed; final once it has an end time.
        "Degraded"
            if properties["endTime"]
                .as_str()
                .is_some_and(|t| !t.is_empty()) =>
        {
            format!("Container Apps Job execution {name} ended degraded")
        }
        _ => return None,
    };
    Some(Outcome::failure(
        None,
        format!("{error} (logs: Log Analytics, ContainerAppConsoleLogs_CL)"),
    ))
}

/// The value of variable `name` in a container of a template.
fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == name)
        .and_then(|v| v["value"].as_str())
}

/// A failed ARM call.
#[derive(Debug)]
struct ApiError {
    op: &'static str,
    status: Option<StatusCode>,
    detail: String,
    transient: bool,
    tries: u32,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Azure {} failed", self.op)?;
        if self.tries > 1 {
            write!(f, " after {} tries", self.tries)?;
        }
        write!(f, ": {}", self.detail)
    }
}

impl From<ApiError> for ExecutorError {
    fn from(e: ApiError) -> Self {
        if e.transient {
            ExecutorError::Transient(e.to_string())
        } else {
            ExecutorError::Permanent(e.to_string())
        }
    }
}

/// `404 ResourceNotFound: The Resource 'Microsoft.App/jobs/x' … was not found`
/// from ARM's error body, or the status and the start of whatever came back.
fn arm_error(status: StatusCode, body: &str) -> String {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().map(|v| &v["error"]);
    let code = error
        .and_then(|e| e["code"].as_str())
        .or(status.canonical_reason())
        .unwrap_or("");
    match error.and_then(|e| e["message"].as_str()) {
        Some(m) => format!("{} {code}: {m}", status.as_u16()),
        None if body.trim().is_empty() => format!("{} {code}", status.as_u16()),
        None => format!("{} {code}: {}", status.as_u16(), truncate(body.trim())),
    }
}

/// Whether `s` can be one segment of an ARM path.
fn is_name_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
}

/// Percent-encoding of a form or query value (RFC 3986 unreserved kept).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(encode("a b/c~.=&"), "a%20b%2Fc~.%3D%26");
        assert_eq!(
            encode("https://management.azure.com/.default"),
            "https%3A%2F%2Fmanagement.azure.com%2F.default"
        );
    }

    #[test]
    fn execution_statuses() {
        let with = |status: &str, end: Option<&str>| json!({"name": "j-1", "properties": {"status": status, "endTime": end}});
        assert_eq!(
            execution_outcome(&with("Succeeded", Some("t"))),
            Some(Outcome::success(None))
        );
        for running in ["Running", "Processing", "Unknown", "Degraded"] {
            assert_eq!(execution_outcome(&with(running, None)), None, "{running}");
        }
        let failed = execution_outcome(&with("Failed", Some("t"))).unwrap();
        assert!(failed.error.unwrap().contains("j-1 failed"));
        let stopped = execution_outcome(&with("Stopped", Some("t"))).unwrap();
        assert!(stopped.error.unwrap().contains("stopped"));
    }

    #[test]
    fn arm_error_bodies() {
        let body = r#"{"error": {"code": "ResourceNotFound", "message": "no job"}}"#;
        assert_eq!(
            arm_error(StatusCode::NOT_FOUND, body),
            "404 ResourceNotFound: no job"
        );
        assert_eq!(arm_error(StatusCode::BAD_GATEWAY, ""), "502 Bad Gateway");
    }
}
