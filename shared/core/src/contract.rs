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

/// The largest error document a task may leave at `$ORK_ERROR`.
pub const MAX_ERROR_BYTES: u64 = 64 * 1024;

/// The failure outcome of a task that exited with `code` (non-zero). When
/// it left `{"ork_error": {"message": "…", "retryable": false}}` at
/// `$ORK_ERROR` (`error_path`), the message becomes the attempt's error,
/// and `"retryable": false` makes the failure permanent (no retries).
/// Without a readable document it is an ordinary, retryable failure.
pub async fn read_failure(error_path: &Path, code: i32) -> Outcome {
    let plain = Outcome::failure(Some(i64::from(code)), format!("exited with code {code}"));
    let Ok(meta) = tokio::fs::metadata(error_path).await else {
        return plain;
    };
    if meta.len() > MAX_ERROR_BYTES {
        return plain;
    }
    let Ok(Ok(doc)) = tokio::fs::read(error_path)
        .await
        .map(|b| serde_json::from_slice::<serde_json::Value>(&b))
    else {
        return plain;
    };
    let Some(err) = doc.get("ork_error") else {
        return plain;
    };
    let message = err
        .get("message")
        .and_then(|m| m.as_str())
        .filter(|m| !m.is_empty())
        .map_or_else(|| format!("exited with code {code}"), str::to_owned);
    Outcome {
        permanent: err.get("retryable").and_then(|r| r.as_bool()) == Some(false),
        ..Outcome::failure(Some(i64::from(code)), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn failure_with(doc: Option<&str>) -> Outcome {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("error.json");
        if let Some(doc) = doc {
            std::fs::write(&path, doc).unwrap();
        }
        read_failure(&path, 3).await
    }

    #[tokio::test]
    async fn error_document_sets_message_and_retryability() {
        let plain = failure_with(None).await;
        assert_eq!(plain.error.as_deref(), Some("exited with code 3"));
        assert!(!plain.permanent);

        let fatal = failure_with(Some(
            r#"{"ork_error": {"message": "bad input: x", "retryable": false}}"#,
        ))
        .await;
        assert_eq!(fatal.error.as_deref(), Some("bad input: x"));
        assert_eq!(fatal.exit_code, Some(3));
        assert!(fatal.permanent && !fatal.success);

        let retry = failure_with(Some(
            r#"{"ork_error": {"message": "busy", "retryable": true}}"#,
        ))
        .await;
        assert_eq!(retry.error.as_deref(), Some("busy"));
        assert!(!retry.permanent);

        for junk in ["not json", "{}", r#"{"ork_error": 1}"#] {
            let o = failure_with(Some(junk)).await;
            assert!(!o.permanent, "{junk}");
            assert_eq!(o.error.as_deref(), Some("exited with code 3"), "{junk}");
        }
    }
}
