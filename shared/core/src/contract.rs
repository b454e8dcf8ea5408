//! The worker contract's file side, shared by the process executor and
//! `ork worker`: the JSON a task leaves at `$ORK_OUTPUT` becomes its outcome.
//! (The environment side is [`crate::executor::DispatchRequest::worker_env`];
//! both are described in docs/worker-contract.md.)

use std::path::Path;

use crate::executor::Outcome;

/// The largest report body the handlers accept (`ork_api::handlers::
/// MAX_BODY_BYTES`, which a unit test there keeps equal): what `ork worker`
/// names when a report is answered 413 without saying its limit.
pub const MAX_REPORT_BYTES: usize = 256 * 1024;

/// The largest JSON output a task may leave at `$ORK_OUTPUT`.
pub const MAX_OUTPUT_BYTES: u64 = 1024 * 1024;

/// The success outcome with the task's JSON output, if it left one.
pub async fn read_output(path: &Path) -> Outcome {
    let Ok(meta) = tokio::fs::metadata(path).await else {
        return Outcome::success(None);
    };
    if meta.len() > MAX_OUTPUT_BYTES {
        return Outcome::failure(
            Some(0),
            format!(
                "output is {} bytes, over the limit of {MAX_OUTPUT_BYTES}",
                meta.len()
            ),
        );
    }
    match tokio::fs::read(path)
        .await
        .map(|b| serde_json::from_slice(&b))
    {
        Ok(Ok(v)) => Outcome::success(Some(v)),
        Ok(Err(e)) => Outcome::failure(Some(0), format!("output at $ORK_OUTPUT is not JSON: {e}")),
        Err(e) => Outcome::failure(Some(0), format!("cannot read output: {e}")),
    }
}
