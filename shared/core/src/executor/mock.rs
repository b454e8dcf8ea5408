use async_trait::async_trait;
use serde_json::json;

use super::{Dispatch, DispatchRequest, Executor, ExecutorError, Outcome};

/// Dry run: records what would be dispatched, as the attempt's output,
/// and succeeds. Used for `executor: mock` and for every task under
/// `ork run --dry-run`; never chosen silently in place of a real executor.
#[derive(Debug, Default, Clone)]
pub struct MockExecutor;

#[async_trait]
impl Executor for MockExecutor {
    fn immediate(&self) -> bool {
        true
    }

    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let s = &req.spec;
        let would = json!({
            "dry_run": true,
            "executor": s.executor.as_str(),
            "command": s.command,
            "args": s.args,
            "file": s.file,
            "env": s.env,
            "cloudrun": s.cloudrun,
            "fargate": s.fargate,
            "lambda": s.lambda,
            "azure": s.azure,
            "timeout_secs": req.timeout.map(|t| t.as_secs_f64()),
            "task_index": req.attempt.task_index,
            "task_count": req.task_count,
        });
        tracing::info!(task = %req.attempt.name, index = req.attempt.task_index, "dry run: would dispatch {would}");
        Ok(Dispatch::Finished(Outcome::success(Some(would))))
    }
}
