//! Runs attempts as Kubernetes `batch/v1` Jobs, through the [`kube`] client.
//!
//! Every attempt (one `ORK_TASK_INDEX` of a task, one attempt number) is
//! one Job with one pod and `backoffLimit: 0`: Ork does the retrying. The
//! task's `kubernetes:` block gives the image, namespace, service account,
//! resources, node selector, tolerations and `ttlSecondsAfterFinished`; the
//! environment is the worker contract ([`DispatchRequest::container_env`]).
//!
//! - `dispatch`: `POST /apis/batch/v1/namespaces/N/jobs`. The Job's name is
//!   derived from the run, task, index and attempt ([`job_name`]), so that a
//!   repeated dispatch of the same attempt finds the Job it made (`409
//!   AlreadyExists` is "already started"); the execution id is `N/name`;
//! - `poll` (the sweeper's): `GET` the Job, and its pods by the label
//!   `ork.io/job=name`: the Job's `Complete`/`Failed` condition, the pod's
//!   exit code and reason (`OOMKilled`), and an image that cannot be pulled
//!   (`ErrImagePull`, `ImagePullBackOff`, `InvalidImageName`) as a permanent
//!   failure. Once it has ended, the pod's log is saved as the attempt's log
//!   ([`ProcessExecutor::log_path`](crate::ProcessExecutor::log_path)), so
//!   that `ork logs` shows it;
//! - `cancel`: the pod's log is saved, then the Job is deleted with
//!   `propagationPolicy: Background` (its pods go with it).
//!
//! The cluster is the ambient one ([`kube::Config::infer`]): `KUBECONFIG`
//! or `~/.kube/config`, else the in-cluster service account. Throttling
//! (429), server errors (5xx) and connection errors are retried with
//! backoff; any other error (403, 404, 422) fails at once with the API
//! server's own `Status` message.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, Pod, PodSpec, PodTemplateSpec, ResourceRequirements, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams};

use ork_core::executor::{Dispatch, DispatchRequest, Executor, ExecutorError, Outcome};
use ork_core::model::AttemptRef;
use ork_core::retry::{retry, Backoff};

use crate::ProcessExecutor;

/// How transient API errors are retried by default: four retries, waiting
/// 200ms, 400ms, 800ms then 1.6s.
pub const DEFAULT_RETRY: Backoff =
    Backoff::new(4, Duration::from_millis(200), Duration::from_secs(10));

/// How long a finished Job is kept unless the task says otherwise.
pub const DEFAULT_TTL_SECONDS: i32 = 3600;

/// The name of the task's container in the pod.
pub const CONTAINER: &str = "task";

/// The label every pod of an attempt's Job carries: the Job's name.
pub const JOB_LABEL: &str = "ork.io/job";

/// Waiting reasons that mean the pod can never start.
const UNSTARTABLE: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ErrImageNeverPull",
];

/// Starts each attempt as a Kubernetes Job.
#[derive(Clone)]
pub struct KubernetesExecutor {
    client: kube::Client,
    /// Where Jobs go when the task names no namespace.
    default_namespace: String,
    /// Where pod logs are saved, when set.
    log_dir: Option<PathBuf>,
    retry: Backoff,
}

impl fmt::Debug for KubernetesExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesExecutor")
            .field("default_namespace", &self.default_namespace)
            .field("log_dir", &self.log_dir)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl KubernetesExecutor {
    /// An executor for the cluster of `config` (its default namespace is
    /// the tasks' default), saving pod logs under `log_dir`.
    pub fn new(config: kube::Config, log_dir: Option<PathBuf>) -> Result<Self, ExecutorError> {
        // kube's rustls client uses the process-wide crypto provider, which
        // rustls cannot pick when the build has both ring and aws-lc-rs
        // (sqlx brings one, jsonwebtoken the other): choose ring, unless a
        // provider is installed already.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let default_namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).map_err(|e| {
            ExecutorError::not_configured(format!("cannot build the Kubernetes client: {e}"))
        })?;
        Ok(KubernetesExecutor {
            client,
            default_namespace,
            log_dir,
            retry: DEFAULT_RETRY,
        })
    }

    /// How transient errors are retried (default [`DEFAULT_RETRY`]).
    pub fn with_retry(mut self, retry: Backoff) -> Self {
        self.retry = retry;
        self
    }

    /// An executor for the ambient cluster ([`kube::Config::infer`]):
    /// `KUBECONFIG` or `~/.kube/config`, else the in-cluster service account.
    /// Without either, [`ExecutorError::NotConfigured`].
    pub async fn from_env(log_dir: Option<PathBuf>) -> Result<Self, ExecutorError> {
        let config = kube::Config::infer().await.map_err(|e| {
            ExecutorError::not_configured(format!(
                "no Kubernetes configuration found for the kubernetes executor ({e}); \
                 looked for KUBECONFIG, ~/.kube/config and the in-cluster service account \
                 (KUBERNETES_SERVICE_HOST and /var/run/secrets/kubernetes.io/serviceaccount)"
            ))
        })?;
        Self::new(config, log_dir)
    }

    /// One API call, retried while the error is transient.
    async fn call<T, Fut>(&self, op: &'static str, f: impl Fn() -> Fut) -> Result<T, ApiError>
    where
        Fut: std::future::Future<Output = Result<T, kube::Error>>,
    {
        retry(
            self.retry,
            |e: &ApiError| e.transient,
            || {
                let fut = f();
                async move { fut.await.map_err(|e| ApiError::new(op, e)) }
            },
        )
        .await
    }

    /// The pods of a Job, newest first.
    async fn pods(&self, namespace: &str, job: &str) -> Result<Vec<Pod>, ApiError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = ListParams::default().labels(&format!("{JOB_LABEL}={job}"));
        let mut list = self.call("list pods", || pods.list(&params)).await?.items;
        list.sort_by(|a, b| {
            b.metadata
                .creation_timestamp
                .cmp(&a.metadata.creation_timestamp)
        });
        Ok(list)
    }

    /// Saves the log of the newest pod that ran as the attempt's log;
    /// failures are only logged (the outcome matters more).
    async fn save_logs(&self, attempt: &AttemptRef, namespace: &str, pods: &[Pod]) {
        let Some(log_dir) = &self.log_dir else {
            return;
        };
        let Some(pod) = pods.iter().find(|p| has_started(p)) else {
            return;
        };
        let Some(name) = pod.metadata.name.as_deref() else {
            return;
        };
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = LogParams {
            container: Some(CONTAINER.to_owned()),
            ..LogParams::default()
        };
        let text = match self.call("pod logs", || api.logs(name, &params)).await {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(pod = name, "cannot read the pod's log: {e}");
                return;
            }
        };
        let path = ProcessExecutor::log_path(log_dir, attempt);
        let written = match path.parent() {
            Some(dir) => tokio::fs::create_dir_all(dir).await,
            None => Ok(()),
        };
        if let Err(e) = match written {
            Ok(()) => tokio::fs::write(&path, text).await,
            Err(e) => Err(e),
        } {
            tracing::warn!(path = %path.display(), "cannot save the pod's log: {e}");
        }
    }

    async fn delete(&self, namespace: &str, job: &str) -> Result<(), ApiError> {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams::background();
        match self.call("delete job", || jobs.delete(job, &params)).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl Executor for KubernetesExecutor {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let target = req.spec.kubernetes.as_ref().ok_or_else(|| {
            ExecutorError::permanent("kubernetes task without a `kubernetes:` block")
        })?;
        let namespace = target
            .namespace
            .clone()
            .unwrap_or_else(|| self.default_namespace.clone());
        let job = job_manifest(req);
        let name = job.metadata.name.clone().unwrap_or_default();
        let execution_id = format!("{namespace}/{name}");
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &namespace);
        let params = PostParams::default();
        match self.call("create job", || jobs.create(&params, &job)).await {
            Ok(_) => {}
            // This attempt was dispatched before (a retried advance): its
            // Job is the one under way.
            Err(e) if e.code == Some(409) => {
                tracing::info!(job = %execution_id, "Kubernetes Job exists already: attempt already started");
            }
            Err(e) => return Err(e.into()),
        }
        tracing::debug!(
            attempt = %req.attempt.task_id,
            task = %req.attempt.name,
            index = req.attempt.task_index,
            job = %execution_id,
            "created Kubernetes Job"
        );
        Ok(Dispatch::Started { execution_id })
    }

    async fn cancel(&self, attempt: &AttemptRef, execution_id: &str) -> Result<(), ExecutorError> {
        let (namespace, job) = parse_execution_id(execution_id)?;
        if let Ok(pods) = self.pods(namespace, job).await {
            self.save_logs(attempt, namespace, &pods).await;
        }
        self.delete(namespace, job).await?;
        Ok(())
    }

    async fn poll(
        &self,
        attempt: &AttemptRef,
        execution_id: &str,
    ) -> Result<Option<Outcome>, ExecutorError> {
        let (namespace, name) = parse_execution_id(execution_id)?;
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        let job = match self.call("get job", || jobs.get(name)).await {
            Ok(job) => job,
            Err(e) if e.code == Some(404) => {
                return Ok(Some(Outcome::failure(
                    None,
                    format!(
                        "Kubernetes Job {execution_id} is gone (deleted before it was seen to end)"
                    ),
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let pods = self.pods(namespace, name).await?;
        let outcome = job_outcome(&job, &pods);
        if let Some(outcome) = &outcome {
            self.save_logs(attempt, namespace, &pods).await;
            if outcome.permanent {
                // A pod that cannot start would wait for ever.
                if let Err(e) = self.delete(namespace, name).await {
                    tracing::warn!(job = execution_id, "cannot delete the Job: {e}");
                }
            }
        }
        Ok(outcome)
    }
}

/// `namespace/name`, refusing anything else so that another executor's
/// id never becomes a path.
fn parse_execution_id(id: &str) -> Result<(&str, &str), ExecutorError> {
    match id.split_once('/') {
        Some((ns, name)) if is_dns_label(ns) && is_dns_label(name) => Ok((ns, name)),
        _ => Err(ExecutorError::permanent(format!(
            "{id:?} is not a Kubernetes Job id (namespace/name)"
        ))),
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

/// The Job of an attempt: `ork-<task>-<hash>-<index>-<attempt>`, at most
/// 63 characters (a label value: Kubernetes labels the pods with it), the
/// same for every dispatch of the same attempt. The hash (of the run id and
/// the task name) keeps names apart whose readable parts are cut alike.
pub fn job_name(attempt: &AttemptRef) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in attempt
        .run_id
        .as_bytes()
        .iter()
        .chain(attempt.name.as_bytes())
    {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let suffix = format!(
        "-{:012x}-{}-{}",
        hash & 0xffff_ffff_ffff,
        attempt.task_index,
        attempt.attempt
    );
    let room = 63usize.saturating_sub(4 + suffix.len());
    let slug: String = attempt
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(room)
        .collect();
    let slug = slug.trim_matches('-');
    let name = if slug.is_empty() {
        format!("ork{suffix}")
    } else {
        format!("ork-{slug}{suffix}")
    };
    name.chars().take(63).collect()
}

/// A label value from any text: at most 63 of `[A-Za-z0-9._-]`, starting
/// and ending with an alphanumeric.
fn label_value(s: &str) -> String {
    let v: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The Job of one attempt, as [`KubernetesExecutor::dispatch`] creates it.
pub fn job_manifest(req: &DispatchRequest) -> Job {
    let target = req
        .spec
        .kubernetes
        .clone()
        .unwrap_or_else(|| ork_core::spec::KubernetesTarget {
            image: String::new(),
            namespace: None,
            service_account: None,
            cpu: None,
            memory: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            ttl_seconds_after_finished: None,
        });
    let a = &req.attempt;
    let name = job_name(a);
    let labels: BTreeMap<String, String> = [
        ("app.kubernetes.io/managed-by", "ork".to_owned()),
        ("ork.io/run", a.run_id.to_string()),
        ("ork.io/workflow", label_value(&a.workflow)),
        ("ork.io/task", label_value(&a.name)),
        ("ork.io/task-index", a.task_index.to_string()),
        ("ork.io/attempt", a.attempt.to_string()),
        (JOB_LABEL, name.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();

    let mut quantities = BTreeMap::new();
    if let Some(cpu) = &target.cpu {
        quantities.insert("cpu".to_owned(), Quantity(cpu.clone()));
    }
    if let Some(memory) = &target.memory {
        quantities.insert("memory".to_owned(), Quantity(memory.clone()));
    }
    let resources = (!quantities.is_empty()).then(|| ResourceRequirements {
        requests: Some(quantities.clone()),
        limits: Some(quantities),
        ..ResourceRequirements::default()
    });
    let env = req
        .container_env()
        .into_iter()
        .map(|(name, value)| EnvVar {
            name,
            value: Some(value),
            value_from: None,
        })
        .collect();
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(target.image.clone()),
        // A string `command` or a list's words replace the entrypoint; `args`
        // stay the container's args.
        command: req.spec.command.as_ref().map(|c| c.words().to_vec()),
        args: (!req.spec.args.is_empty()).then(|| req.spec.args.clone()),
        env: Some(env),
        resources,
        ..Container::default()
    };
    let tolerations = (!target.tolerations.is_empty()).then(|| {
        target
            .tolerations
            .iter()
            .map(|t| Toleration {
                key: t.key.clone(),
                operator: t.operator.clone(),
                value: t.value.clone(),
                effect: t.effect.clone(),
                toleration_seconds: t.toleration_seconds,
            })
            .collect()
    });
    let deadline = req
        .timeout
        .map(|t| (t.as_secs() + u64::from(t.subsec_nanos() > 0)).max(1) as i64);
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            completions: Some(1),
            parallelism: Some(1),
            active_deadline_seconds: deadline,
            ttl_seconds_after_finished: Some(
                target
                    .ttl_seconds_after_finished
                    .map_or(DEFAULT_TTL_SECONDS, |t| t.min(i32::MAX as u32) as i32),
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    service_account_name: target.service_account.clone(),
                    node_selector: (!target.node_selector.is_empty())
                        .then(|| target.node_selector.clone()),
                    tolerations,
                    containers: vec![container],
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    }
}

/// Whether a pod's container got as far as running (it has a log).
fn has_started(pod: &Pod) -> bool {
    task_status(pod).is_some_and(|s| {
        s.state
            .as_ref()
            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
    })
}

fn task_status(pod: &Pod) -> Option<&k8s_openapi::api::core::v1::ContainerStatus> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses
        .iter()
        .find(|s| s.name == CONTAINER)
        .or(statuses.first())
}

/// How a Job ended, from it and its pods (newest first), or `None` while
/// it runs. A pod whose image cannot be pulled is a permanent failure; a
/// failed pod's exit code and reason (`OOMKilled`, `Error`) are the
/// attempt's.
pub fn job_outcome(job: &Job, pods: &[Pod]) -> Option<Outcome> {
    let status = job.status.clone().unwrap_or_default();
    let condition = |kind: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind && c.status == "True")
            .cloned()
    };
    let terminated = pods.iter().find_map(|p| {
        task_status(p)
            .and_then(|s| s.state.as_ref())
            .and_then(|st| st.terminated.clone())
    });
    let exit_code = terminated.as_ref().map(|t| i64::from(t.exit_code));
    if condition("Complete").is_some() || status.succeeded.unwrap_or(0) > 0 {
        return Some(Outcome::success(None));
    }
    let failed = condition("Failed");
    if failed.is_some() || status.failed.unwrap_or(0) > 0 {
        let mut error = match &terminated {
            Some(t) => {
                let reason = t.reason.as_deref().unwrap_or("Error");
                let mut e = format!("{reason}: the container exited with code {}", t.exit_code);
                if let Some(m) = t.message.as_deref().filter(|m| !m.trim().is_empty()) {
                    e.push_str(&format!(" ({})", m.trim()));
                }
                e
            }
            None => "the Job's pod failed".to_owned(),
        };
        if let Some(c) = failed {
            let reason = c.reason.unwrap_or_default();
            let message = c.message.unwrap_or_default();
            if !reason.is_empty() || !message.is_empty() {
                error.push_str(&format!("; Job failed: {reason}: {message}"));
            }
        }
        return Some(Outcome::failure(exit_code, error));
    }
    // Still running, or stuck before its start for good.
    for pod in pods {
        let waiting = task_status(pod)
            .and_then(|s| s.state.as_ref())
            .and_then(|st| st.waiting.as_ref());
        if let Some(w) = waiting {
            let reason = w.reason.as_deref().unwrap_or("");
            if UNSTARTABLE.contains(&reason) {
                let message = w.message.as_deref().unwrap_or("");
                return Some(Outcome {
                    permanent: true,
                    ..Outcome::failure(
                        None,
                        format!("{reason}: the pod cannot start: {message}")
                            .trim_end_matches([' ', ':'])
                            .to_owned(),
                    )
                });
            }
        }
    }
    None
}

/// A failed API call.
#[derive(Debug)]
struct ApiError {
    op: &'static str,
    /// The HTTP status, when the API server answered.
    code: Option<u16>,
    detail: String,
    transient: bool,
}

impl ApiError {
    fn new(op: &'static str, e: kube::Error) -> Self {
        match e {
            kube::Error::Api(status) => {
                let code = status.code;
                ApiError {
                    op,
                    code: Some(code),
                    detail: format!("{code} {}: {}", status.reason, status.message),
                    transient: code == 429 || code >= 500,
                }
            }
            kube::Error::HyperError(e) => ApiError {
                op,
                code: None,
                detail: e.to_string(),
                transient: true,
            },
            kube::Error::Service(e) => ApiError {
                op,
                code: None,
                detail: e.to_string(),
                transient: true,
            },
            other => ApiError {
                op,
                code: None,
                detail: other.to_string(),
                transient: false,
            },
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kubernetes {} failed: {}", self.op, self.detail)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(name: &str) -> AttemptRef {
        AttemptRef {
            run_id: uuid::Uuid::now_v7(),
            workflow: "w".into(),
            version: 1,
            task_id: uuid::Uuid::now_v7(),
            name: name.into(),
            task_index: 1234,
            attempt: 12,
        }
    }

    #[test]
    fn job_names_are_short_stable_labels() {
        let a = attempt(&"Very_Long.Task-name".repeat(10));
        let name = job_name(&a);
        assert!(name.len() <= 63, "{name}");
        assert!(is_dns_label(&name), "{name}");
        assert!(name.ends_with("-1234-12"), "{name}");
        assert_eq!(name, job_name(&a));
        let other = AttemptRef {
            run_id: uuid::Uuid::now_v7(),
            ..a.clone()
        };
        assert_ne!(name, job_name(&other));
        assert!(is_dns_label(&job_name(&attempt("__"))));
    }

    fn pod(state: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p"},
            "status": {"containerStatuses": [{
                "name": CONTAINER, "image": "i", "imageID": "", "ready": false,
                "restartCount": 0, "state": state,
            }]},
        }))
        .unwrap()
    }

    fn job(status: serde_json::Value) -> Job {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j"}, "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn outcomes_from_the_job_and_its_pod() {
        let running = pod(serde_json::json!({"running": {}}));
        assert_eq!(
            job_outcome(&job(serde_json::json!({"active": 1})), &[running]),
            None
        );

        let oom = pod(serde_json::json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}));
        let failed = job(serde_json::json!({"failed": 1, "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "m"}]}));
        let outcome = job_outcome(&failed, &[oom]).unwrap();
        assert!(!outcome.success && !outcome.permanent);
        assert_eq!(outcome.exit_code, Some(137));
        let error = outcome.error.unwrap();
        assert!(
            error.starts_with("OOMKilled: the container exited with code 137"),
            "{error}"
        );
        assert!(error.contains("BackoffLimitExceeded"), "{error}");

        let pull =
            pod(serde_json::json!({"waiting": {"reason": "ErrImagePull", "message": "not found"}}));
        let outcome = job_outcome(&job(serde_json::json!({"active": 1})), &[pull]).unwrap();
        assert!(outcome.permanent);
        assert_eq!(
            outcome.error.as_deref(),
            Some("ErrImagePull: the pod cannot start: not found")
        );

        let done = job(serde_json::json!({"succeeded": 1}));
        assert_eq!(job_outcome(&done, &[]), Some(Outcome::success(None)));
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("a b/c"), "a_b_c");
        assert_eq!(label_value("_x_"), "x");
        assert_eq!(label_value(&"y".repeat(80)).len(), 63);
    }
}
