use async_trait::async_trait;

use super::{Dispatch, DispatchRequest, Executor, ExecutorError, Outcome};

/// Succeeds at once without running anything: the engine's overhead alone,
/// for tests and benchmarks.
#[derive(Debug, Default, Clone)]
pub struct NoopExecutor;

#[async_trait]
impl Executor for NoopExecutor {
    fn immediate(&self) -> bool {
        true
    }

    async fn dispatch(&self, _req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        Ok(Dispatch::Finished(Outcome::success(None)))
    }
}
