//! Executors start task attempts somewhere (a local process, a cloud job)
//! and report how they end. The engine knows them only through [`Executor`].

mod mock;
mod noop;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use mock::MockExecutor;
pub use noop::NoopExecutor;

use crate::model::AttemptRef;
use crate::spec::{ExecutorKind, TaskSpec};

/// Everything an executor needs to start one attempt.
#[derive(Debug, Clone)]
pub struct DispatchRequest {
    pub attempt: AttemptRef,
    pub task_count: i64,
    pub spec: TaskSpec,
    /// Directory of the workflow file, for relative paths.
    pub base_dir: Option<PathBuf>,
    /// The task's input: `{"params": {...}, "upstream": {"task": output |
    /// [outputs]}, "item": …}`, inline when small (`Null` when it is in
    /// [`DispatchRequest::input_file`]).
    pub input: serde_json::Value,
    /// The input document written to a file, when it is too large to be
    /// inline (or includes a parent's large output): `ORK_INPUT_FILE`.
    pub input_file: Option<PathBuf>,
    /// The input document in the remote payload store, presigned for a GET
    /// (cloud workers, when it is too large to be inline): `ORK_INPUT_URL`.
    pub input_url: Option<String>,
    /// Where a cloud worker PUTs a large output (a URL presigned for the
    /// remote payload store), when there is one: `ORK_OUTPUT_URL`.
    pub output_url: Option<String>,
    /// The item of a `foreach` instance, when small enough to be
    /// `ORK_ITEM` (it is in the input document in any case).
    pub item: Option<serde_json::Value>,
    pub timeout: Option<Duration>,
    /// Where and how the worker reports its end, when the engine has a
    /// callback URL (serverless mode). Local processes report directly.
    pub callback: Option<Callback>,
    /// How many attempts the engine is starting together with this one
    /// (1: this one alone). An executor whose start blocks its thread (a
    /// process spawn) takes the others' starts off it when there are some.
    pub batch: usize,
}

/// The worker's way back to `on-task-complete`.
#[derive(Debug, Clone)]
pub struct Callback {
    pub url: String,
    pub token: String,
}

impl DispatchRequest {
    /// The worker contract: the environment every executor gives a worker
    /// (see docs/worker-contract.md), on top of the task's own `env`.
    pub fn worker_env(&self) -> Vec<(&'static str, String)> {
        let a = &self.attempt;
        let mut env = vec![
            ("ORK_RUN_ID", a.run_id.to_string()),
            ("ORK_WORKFLOW", a.workflow.clone()),
            ("ORK_TASK", a.name.clone()),
            ("ORK_TASK_INDEX", a.task_index.to_string()),
            ("ORK_TASK_COUNT", self.task_count.to_string()),
            ("ORK_ATTEMPT", a.attempt.to_string()),
        ];
        match (&self.input_url, &self.input_file) {
            (Some(url), _) => env.push(("ORK_INPUT_URL", url.clone())),
            (None, Some(path)) => env.push(("ORK_INPUT_FILE", path.display().to_string())),
            (None, None) => env.push(("ORK_INPUT", self.input.to_string())),
        }
        if let Some(url) = &self.output_url {
            env.push(("ORK_OUTPUT_URL", url.clone()));
        }
        if let Some(item) = &self.item {
            env.push(("ORK_ITEM", item.to_string()));
        }
        if let Some(cb) = &self.callback {
            env.push(("ORK_CALLBACK_URL", cb.url.clone()));
            env.push(("ORK_CALLBACK_TOKEN", cb.token.clone()));
        }
        env
    }

    /// The whole environment of the worker: the contract's variables, then
    /// the task's `env` without the names the contract already sets (the
    /// contract wins a clash). One list for every executor.
    pub fn container_env(&self) -> Vec<(String, String)> {
        let worker = self.worker_env();
        let task = self
            .spec
            .env
            .iter()
            .filter(|(name, _)| !worker.iter().any(|(w, _)| w == name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect::<Vec<_>>();
        worker
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .chain(task)
            .collect()
    }
}

/// What an executor did with a request.
#[derive(Debug, Clone)]
pub enum Dispatch {
    /// The attempt is under way; its end is reported later as a [`Completion`].
    Started { execution_id: String },
    /// The attempt already ended (executors with nothing to wait for).
    Finished(Outcome),
}

/// How an attempt ended: what an executor or a worker produces, and what
/// the engine records (see [`crate::engine`] for the completion path).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub success: bool,
    pub exit_code: Option<i64>,
    pub error: Option<String>,
    pub output: Option<serde_json::Value>,
    /// A failure that trying again cannot fix (the attempt could not be
    /// started for good): the engine fails it without spending retries.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub permanent: bool,
    /// A large output, stored by reference instead of `output`. Only
    /// executors of this process set it (never a worker's report).
    #[serde(skip)]
    pub output_ref: Option<crate::payload::PayloadRef>,
}

impl Outcome {
    pub fn success(output: Option<serde_json::Value>) -> Self {
        Outcome {
            success: true,
            exit_code: Some(0),
            error: None,
            output,
            permanent: false,
            output_ref: None,
        }
    }

    pub fn failure(exit_code: Option<i64>, error: impl Into<String>) -> Self {
        Outcome {
            success: false,
            exit_code,
            error: Some(error.into()),
            output: None,
            permanent: false,
            output_ref: None,
        }
    }

    /// The failure of an attempt that could not be started: permanent
    /// unless the executor said the error was transient.
    pub fn dispatch_failed(error: &ExecutorError) -> Self {
        Outcome {
            permanent: !error.is_transient(),
            ..Outcome::failure(None, format!("dispatch failed: {error}"))
        }
    }
}

/// Why an executor could not do what it was asked. The message is written
/// for the person running Ork; the kind says whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecutorError {
    /// Throttling, a server error, a lost connection: may succeed later.
    #[error("{0}")]
    Transient(String),
    /// The request itself is wrong or refused (denied, unknown job, bad
    /// parameter, a program that cannot be started): retrying cannot help.
    #[error("{0}")]
    Permanent(String),
    /// The executor cannot be used here: no credentials, no executor of
    /// that kind.
    #[error("{0}")]
    NotConfigured(String),
}

impl ExecutorError {
    pub fn transient(message: impl Into<String>) -> Self {
        ExecutorError::Transient(message.into())
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        ExecutorError::Permanent(message.into())
    }

    pub fn not_configured(message: impl Into<String>) -> Self {
        ExecutorError::NotConfigured(message.into())
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, ExecutorError::Transient(_))
    }

    pub fn message(&self) -> &str {
        match self {
            ExecutorError::Transient(m)
            | ExecutorError::Permanent(m)
            | ExecutorError::NotConfigured(m) => m,
        }
    }
}

/// An attempt's end, as reported to the engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Completion {
    pub attempt: AttemptRef,
    pub outcome: Outcome,
}

/// Starts and stops attempts on one kind of compute.
#[async_trait]
pub trait Executor: Send + Sync {
    /// Starts an attempt. An error fails the attempt; only a
    /// [`ExecutorError::Transient`] one is retried (per the task's policy).
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError>;

    /// `true` for an executor whose attempts end at dispatch, touch nothing
    /// outside this process and read no input (noop, mock): the engine
    /// claims, dispatches and records them in one transaction, which it may
    /// try again. Such an executor always answers [`Dispatch::Finished`].
    fn immediate(&self) -> bool {
        false
    }

    /// Stops an attempt that is under way; stopping a finished one is not an error.
    async fn cancel(&self, attempt: &AttemptRef, execution_id: &str) -> Result<(), ExecutorError> {
        let _ = (attempt, execution_id);
        Ok(())
    }

    /// How an attempt under way is doing, for the sweeper when no callback
    /// came: `Some` once it has ended, `None` while it runs or when this
    /// executor cannot tell.
    async fn poll(
        &self,
        attempt: &AttemptRef,
        execution_id: &str,
    ) -> Result<Option<Outcome>, ExecutorError> {
        let _ = (attempt, execution_id);
        Ok(None)
    }
}

/// The executors an engine can use, by kind.
#[derive(Clone, Default)]
pub struct Executors {
    by_kind: HashMap<ExecutorKind, Arc<dyn Executor>>,
}

impl Executors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, kind: ExecutorKind, executor: Arc<dyn Executor>) -> Self {
        self.by_kind.insert(kind, executor);
        self
    }

    pub fn get(&self, kind: ExecutorKind) -> Option<&Arc<dyn Executor>> {
        self.by_kind.get(&kind)
    }
}

impl Executors {
    /// Every kind of task runs on `executor`: `ork run --dry-run` with [`MockExecutor`].
    pub fn all(executor: Arc<dyn Executor>) -> Executors {
        ExecutorKind::ALL
            .iter()
            .fold(Executors::new(), |e, kind| e.with(*kind, executor.clone()))
    }
}
