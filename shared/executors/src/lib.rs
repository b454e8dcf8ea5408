//! Where Ork's tasks run. `process` (local programs and python files) is
//! always here; `cloudrun` (Cloud Run Jobs, Admin API v2), `fargate`
//! (ECS RunTask on Fargate), `kubernetes` (batch/v1 Jobs through `kube`),
//! `lambda` (asynchronous Lambda invocations) and `azure` (Container Apps
//! Jobs through ARM) are behind cargo features of the same names, so
//! that crates which only run local tasks never build a cloud SDK.
//!
//! [`standard`] is the registry every entry point uses: it maps each
//! [`ExecutorKind`] to its executor, building the cloud ones on first use.

pub mod affinity;
#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "azure")]
pub mod azure;
#[cfg(feature = "cloudrun")]
pub mod cloudrun;
pub mod ecs_event;
#[cfg(feature = "fargate")]
pub mod fargate;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
#[cfg(feature = "lambda")]
pub mod lambda;
mod log_file;
mod orphans;
pub mod process;
#[cfg(any(feature = "cloudrun", feature = "azure"))]
mod rest;

use std::sync::Arc;

use async_trait::async_trait;
use ork_core::executor::{
    Dispatch, DispatchRequest, Executor, ExecutorError, Executors, MockExecutor, NoopExecutor,
    Outcome,
};
use ork_core::model::AttemptRef;
use ork_core::spec::ExecutorKind;

#[cfg(feature = "azure")]
pub use azure::AzureExecutor;
#[cfg(feature = "cloudrun")]
pub use cloudrun::CloudRunExecutor;
#[cfg(feature = "fargate")]
pub use fargate::FargateExecutor;
#[cfg(feature = "kubernetes")]
pub use kubernetes::KubernetesExecutor;
#[cfg(feature = "lambda")]
pub use lambda::LambdaExecutor;
pub use process::ProcessExecutor;

/// Every executor this build has: local processes (and python files)
/// through `process`, `noop`, `mock`, and the cloud executors compiled in,
/// which are built on first use so that commands that never dispatch to
/// them never look for their credentials.
pub fn standard(process: Arc<ProcessExecutor>) -> Executors {
    #[cfg(feature = "kubernetes")]
    let log_dir = process.log_dir().to_path_buf();
    let executors = Executors::new()
        .with(ExecutorKind::Process, process.clone())
        .with(ExecutorKind::Python, process)
        .with(ExecutorKind::Noop, Arc::new(NoopExecutor))
        .with(ExecutorKind::Mock, Arc::new(MockExecutor));
    #[cfg(feature = "cloudrun")]
    let executors = executors.with(
        ExecutorKind::Cloudrun,
        Arc::new(OnFirstUse::new(|| async {
            CloudRunExecutor::from_env()
                .await
                .map(|e| Arc::new(e) as Arc<dyn Executor>)
        })),
    );
    #[cfg(feature = "fargate")]
    let executors = executors.with(
        ExecutorKind::Fargate,
        Arc::new(OnFirstUse::new(|| async {
            FargateExecutor::from_env()
                .await
                .map(|e| Arc::new(e) as Arc<dyn Executor>)
        })),
    );
    #[cfg(feature = "kubernetes")]
    let executors = executors.with(
        ExecutorKind::Kubernetes,
        Arc::new(OnFirstUse::new(move || {
            let log_dir = log_dir.clone();
            async move {
                KubernetesExecutor::from_env(Some(log_dir))
                    .await
                    .map(|e| Arc::new(e) as Arc<dyn Executor>)
            }
        })),
    );
    #[cfg(feature = "lambda")]
    let executors = executors.with(
        ExecutorKind::Lambda,
        Arc::new(OnFirstUse::new(|| async {
            LambdaExecutor::from_env()
                .await
                .map(|e| Arc::new(e) as Arc<dyn Executor>)
        })),
    );
    #[cfg(feature = "azure")]
    let executors = executors.with(
        ExecutorKind::Azure,
        Arc::new(OnFirstUse::new(|| async {
            AzureExecutor::from_env().map(|e| Arc::new(e) as Arc<dyn Executor>)
        })),
    );
    executors
}

/// Refuses an attempt whose input is a local file (`ORK_INPUT_FILE`), for
/// executors whose workers cannot read this machine's files.
#[cfg(any(feature = "lambda", feature = "azure"))]
fn check_remote_input(req: &DispatchRequest, worker: &str) -> Result<(), ExecutorError> {
    match &req.input_file {
        Some(path) => Err(ExecutorError::permanent(format!(
            "the input of this attempt is too large to be inline and is in a local file              ({}), which {worker} cannot read; keep the parents' outputs under the inline              limit (ORK_INLINE_PAYLOAD_BYTES)",
            path.display()
        ))),
        None => Ok(()),
    }
}

type Init = Box<
    dyn Fn() -> futures::future::BoxFuture<'static, Result<Arc<dyn Executor>, ExecutorError>>
        + Send
        + Sync,
>;

/// An executor built when first needed; if building it fails (missing
/// credentials: [`ExecutorError::NotConfigured`]), every dispatch fails
/// with that error.
pub struct OnFirstUse {
    cell: tokio::sync::OnceCell<Result<Arc<dyn Executor>, ExecutorError>>,
    init: Init,
}

impl OnFirstUse {
    pub fn new<F, Fut>(init: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut:
            std::future::Future<Output = Result<Arc<dyn Executor>, ExecutorError>> + Send + 'static,
    {
        OnFirstUse {
            cell: tokio::sync::OnceCell::new(),
            init: Box::new(move || Box::pin(init())),
        }
    }

    async fn get(&self) -> Result<&Arc<dyn Executor>, ExecutorError> {
        self.cell
            .get_or_init(|| (self.init)())
            .await
            .as_ref()
            .map_err(Clone::clone)
    }
}

#[async_trait]
impl Executor for OnFirstUse {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        self.get().await?.dispatch(req).await
    }

    async fn cancel(&self, attempt: &AttemptRef, execution_id: &str) -> Result<(), ExecutorError> {
        self.get().await?.cancel(attempt, execution_id).await
    }

    async fn poll(
        &self,
        attempt: &AttemptRef,
        execution_id: &str,
    ) -> Result<Option<Outcome>, ExecutorError> {
        self.get().await?.poll(attempt, execution_id).await
    }
}
