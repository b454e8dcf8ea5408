//! A fake Kubernetes API server, for testing the Kubernetes executor
//! through the real `kube` client without a cluster.
//!
//! One axum server on `127.0.0.1:0` (plain HTTP) answers, in the API's
//! shapes:
//!
//! - `POST /apis/batch/v1/namespaces/N/jobs`: creates the Job (`201`, the
//!   Job with `uid`, `namespace`, `creationTimestamp`) and its pod, pending
//!   (`ContainerCreating`), labelled with the template's labels and
//!   `job-name`; `409 AlreadyExists` when the name is taken, `403 Forbidden`
//!   in the namespace `forbidden`;
//! - `GET /apis/batch/v1/namespaces/N/jobs/J`: the Job (`404 NotFound`);
//! - `DELETE /apis/batch/v1/namespaces/N/jobs/J`: deletes it and its pods,
//!   recording the `propagationPolicy` (body or query); a `Status`;
//! - `GET /api/v1/namespaces/N/pods?labelSelector=k=v[,k=v]`: a `PodList`;
//! - `GET /api/v1/namespaces/N/pods/P/log`: the pod's log, as text.
//!
//! Errors are `Status` bodies (`{"kind": "Status", "status": "Failure",
//! "reason", "message", "code"}`). The "kubelet" is the test: it moves a
//! Job's pod to running, succeeded or failed (with an exit code and a
//! reason such as `OOMKilled`), to `ImagePullBackOff`, or reports as the
//! worker would ([`FakeKube::report`]: `POST $ORK_CALLBACK_URL`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Value};

/// One API call as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub body: Option<Value>,
}

#[derive(Default)]
struct Inner {
    /// Jobs by `namespace/name`.
    jobs: BTreeMap<String, Value>,
    /// Pods by `namespace/name`.
    pods: BTreeMap<String, Value>,
    logs: BTreeMap<String, String>,
    requests: Vec<Recorded>,
    /// `(namespace/name, propagationPolicy)` of every delete.
    deletes: Vec<(String, Option<String>)>,
    /// Every Job ever created, in order (`namespace/name`).
    created: Vec<String>,
    counter: u64,
}

/// A running fake; the server stops when this is dropped.
pub struct FakeKube {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn status(code: u16, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    (StatusCode::from_u16(code).expect("status code"), Json(body)).into_response()
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl FakeKube {
    pub async fn start() -> FakeKube {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let app = Router::new().fallback(handle).with_state(inner.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake server");
        });
        FakeKube { url, inner, server }
    }

    /// A client configuration for this server (no TLS, no auth), with
    /// `default` as its default namespace.
    pub fn config(&self) -> kube::Config {
        let mut config = kube::Config::new(self.url.parse().expect("a URI"));
        config.default_namespace = "default".to_owned();
        config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("poisoned")
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Every Job created, `namespace/name`, in order.
    pub fn created(&self) -> Vec<String> {
        self.lock().created.clone()
    }

    /// The Job `namespace/name` as stored, if it exists.
    pub fn job(&self, id: &str) -> Option<Value> {
        self.lock().jobs.get(id).cloned()
    }

    /// The Jobs that exist now.
    pub fn jobs(&self) -> Vec<String> {
        self.lock().jobs.keys().cloned().collect()
    }

    /// `(namespace/name, propagationPolicy)` of every delete.
    pub fn deletes(&self) -> Vec<(String, Option<String>)> {
        self.lock().deletes.clone()
    }

    /// The environment of a Job's container.
    pub fn env(&self, id: &str) -> BTreeMap<String, String> {
        let job = self.job(id).unwrap_or_else(|| panic!("no Job {id}"));
        job["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or("").to_owned(),
                    e["value"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }

    fn pod_of(inner: &mut Inner, id: &str) -> String {
        let (ns, job) = id.split_once('/').expect("namespace/name");
        inner
            .pods
            .iter()
            .find(|(_, p)| {
                p["metadata"]["labels"]["job-name"] == job && p["metadata"]["namespace"] == ns
            })
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| panic!("no pod of Job {id}"))
    }

    fn set_container(&self, id: &str, phase: &str, state: Value, log: Option<&str>) {
        let mut inner = self.lock();
        let pod = Self::pod_of(&mut inner, id);
        if let Some(log) = log {
            inner.logs.insert(pod.clone(), log.to_owned());
        }
        let p = inner.pods.get_mut(&pod).expect("pod");
        p["status"]["phase"] = json!(phase);
        p["status"]["containerStatuses"] = json!([{
            "name": "task",
            "image": p["spec"]["containers"][0]["image"],
            "imageID": "",
            "ready": phase == "Running",
            "restartCount": 0,
            "state": state,
        }]);
    }

    /// What the pod's container has written so far.
    pub fn set_log(&self, id: &str, log: &str) {
        let mut inner = self.lock();
        let pod = Self::pod_of(&mut inner, id);
        inner.logs.insert(pod, log.to_owned());
    }

    /// The kubelet started the pod.
    pub fn run(&self, id: &str) {
        self.set_container(
            id,
            "Running",
            json!({"running": {"startedAt": now()}}),
            None,
        );
        let mut inner = self.lock();
        if let Some(job) = inner.jobs.get_mut(id) {
            job["status"]["active"] = json!(1);
        }
    }

    /// The pod's container exited with `exit_code` (`reason`: `Completed`,
    /// `Error`, `OOMKilled`…), having written `log`; the Job completes or
    /// fails accordingly, as the Job controller would mark it.
    pub fn finish(&self, id: &str, exit_code: i32, reason: &str, log: &str) {
        let phase = if exit_code == 0 {
            "Succeeded"
        } else {
            "Failed"
        };
        self.set_container(
            id,
            phase,
            json!({"terminated": {
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": now(),
                "finishedAt": now(),
            }}),
            Some(log),
        );
        let mut inner = self.lock();
        let job = inner.jobs.get_mut(id).expect("job");
        let (field, condition, why) = if exit_code == 0 {
            ("succeeded", "Complete", "")
        } else {
            ("failed", "Failed", "BackoffLimitExceeded")
        };
        job["status"] = json!({
            field: 1,
            "startTime": now(),
            "conditions": [{
                "type": condition,
                "status": "True",
                "reason": why,
                "message": if why.is_empty() { "" } else { "Job has reached the specified backoff limit" },
                "lastTransitionTime": now(),
            }],
        });
    }

    /// The kubelet cannot pull the pod's image.
    pub fn image_pull_backoff(&self, id: &str) {
        self.set_container(
            id,
            "Pending",
            json!({"waiting": {
                "reason": "ImagePullBackOff",
                "message": "Back-off pulling image \"nope:latest\"",
            }}),
            None,
        );
    }

    /// Reports the Job's end as its worker would: `POST $ORK_CALLBACK_URL`
    /// with `$ORK_CALLBACK_TOKEN`. Returns the HTTP status and answer.
    pub async fn report(&self, id: &str, success: bool, output: Value) -> (u16, Value) {
        let env = self.env(id);
        let body = json!({
            "token": env["ORK_CALLBACK_TOKEN"],
            "status": if success { "success" } else { "failed" },
            "exit_code": if success { 0 } else { 1 },
            "output": output,
            "error": if success { Value::Null } else { json!("worker failed") },
        });
        let r = reqwest::Client::new()
            .post(&env["ORK_CALLBACK_URL"])
            .json(&body)
            .send()
            .await
            .expect("POST to the callback URL");
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let body_json: Option<Value> = serde_json::from_slice(&body).ok();
    let mut inner = inner.lock().expect("poisoned");
    inner.requests.push(Recorded {
        method: method.to_string(),
        uri: uri.to_string(),
        body: body_json.clone(),
    });
    let query: BTreeMap<String, String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), percent_decode(v)))
        .collect();
    let parts: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    match (method.clone(), parts.as_slice()) {
        (Method::POST, ["apis", "batch", "v1", "namespaces", ns, "jobs"]) => {
            create_job(&mut inner, ns, body_json)
        }
        (Method::GET, ["apis", "batch", "v1", "namespaces", ns, "jobs", name]) => {
            match inner.jobs.get(&format!("{ns}/{name}")) {
                Some(job) => Json(job.clone()).into_response(),
                None => status(404, "NotFound", format!("jobs.batch \"{name}\" not found")),
            }
        }
        (Method::DELETE, ["apis", "batch", "v1", "namespaces", ns, "jobs", name]) => {
            let id = format!("{ns}/{name}");
            let policy = body_json
                .as_ref()
                .and_then(|b| b["propagationPolicy"].as_str().map(str::to_owned))
                .or_else(|| query.get("propagationPolicy").cloned());
            inner.deletes.push((id.clone(), policy));
            if inner.jobs.remove(&id).is_none() {
                return status(404, "NotFound", format!("jobs.batch \"{name}\" not found"));
            }
            let job_name = name.to_string();
            let namespace = ns.to_string();
            inner.pods.retain(|_, p| {
                !(p["metadata"]["labels"]["job-name"] == job_name.as_str()
                    && p["metadata"]["namespace"] == namespace.as_str())
            });
            Json(json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {"name": name, "group": "batch", "kind": "jobs", "uid": ""},
            }))
            .into_response()
        }
        (Method::GET, ["api", "v1", "namespaces", ns, "pods"]) => {
            let selector: Vec<(String, String)> = query
                .get("labelSelector")
                .map(|s| {
                    s.split(',')
                        .filter_map(|kv| kv.split_once('='))
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let items: Vec<Value> = inner
                .pods
                .values()
                .filter(|p| p["metadata"]["namespace"] == *ns)
                .filter(|p| {
                    selector
                        .iter()
                        .all(|(k, v)| p["metadata"]["labels"][k.as_str()] == v.as_str())
                })
                .cloned()
                .collect();
            Json(json!({
                "kind": "PodList",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": "1"},
                "items": items,
            }))
            .into_response()
        }
        (Method::GET, ["api", "v1", "namespaces", ns, "pods", name, "log"]) => {
            let id = format!("{ns}/{name}");
            if !inner.pods.contains_key(&id) {
                return status(404, "NotFound", format!("pods \"{name}\" not found"));
            }
            inner
                .logs
                .get(&id)
                .cloned()
                .unwrap_or_default()
                .into_response()
        }
        _ => status(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({method} {uri})"),
        ),
    }
}

fn create_job(inner: &mut Inner, ns: &str, body: Option<Value>) -> Response {
    let Some(mut job) = body else {
        return status(400, "BadRequest", "the body is not a Job".to_owned());
    };
    if ns == "forbidden" {
        return status(
            403,
            "Forbidden",
            format!("jobs.batch is forbidden: User \"system:serviceaccount:ork:ork\" cannot create resource \"jobs\" in API group \"batch\" in the namespace \"{ns}\""),
        );
    }
    let Some(name) = job["metadata"]["name"].as_str().map(str::to_owned) else {
        return status(
            422,
            "Invalid",
            "Job.batch is invalid: metadata.name: Required value".to_owned(),
        );
    };
    let id = format!("{ns}/{name}");
    if inner.jobs.contains_key(&id) {
        return status(
            409,
            "AlreadyExists",
            format!("jobs.batch \"{name}\" already exists"),
        );
    }
    inner.counter += 1;
    let n = inner.counter;
    job["metadata"]["namespace"] = json!(ns);
    job["metadata"]["uid"] = json!(format!("00000000-0000-0000-0000-{n:012}"));
    job["metadata"]["creationTimestamp"] = json!(now());
    job["metadata"]["resourceVersion"] = json!(n.to_string());
    job["status"] = json!({});
    inner.jobs.insert(id.clone(), job.clone());
    inner.created.push(id);

    let template = &job["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels["job-name"] = json!(name);
    labels["batch.kubernetes.io/job-name"] = json!(name);
    let pod_name = format!("{name}-{n:05}");
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "namespace": ns,
            "labels": labels,
            "uid": format!("11111111-0000-0000-0000-{n:012}"),
            "creationTimestamp": now(),
        },
        "spec": template["spec"],
        "status": {
            "phase": "Pending",
            "containerStatuses": [{
                "name": "task",
                "image": template["spec"]["containers"][0]["image"],
                "imageID": "",
                "ready": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            }],
        },
    });
    inner.pods.insert(format!("{ns}/{pod_name}"), pod);
    (StatusCode::CREATED, Json(job)).into_response()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
