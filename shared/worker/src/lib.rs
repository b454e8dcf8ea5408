//! The worker side of the worker contract, for programs that know nothing
//! of Ork: `ork worker -- <program> [args…]` runs the program with the
//! environment it was given, beats `ORK_CALLBACK_URL`'s heartbeat while it
//! runs, and reports its exit status and `$ORK_OUTPUT` to `ORK_CALLBACK_URL`.
//! Use it as a container entrypoint on Cloud Run or Fargate, or let the
//! process executor start local tasks under it.

use std::time::Duration;

use serde_json::json;
use tokio::process::Command;

use ork_core::contract::{read_failure, read_output};
use ork_core::executor::Outcome;
use ork_core::retry::{retry, Backoff};

/// How a report is tried again: seven more times, 200ms to 10s apart.
const REPORT_RETRY: Backoff = Backoff::new(7, Duration::from_millis(200), Duration::from_secs(10));

/// How often a running task's heartbeat is sent (`ORK_HEARTBEAT_SECS`).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// Runs `program` and reports its end; returns the program's exit code.
pub async fn run(program: &str, args: &[String]) -> Result<i32, String> {
    let url = std::env::var("ORK_CALLBACK_URL").map_err(|_| "ORK_CALLBACK_URL is not set")?;
    let token = std::env::var("ORK_CALLBACK_TOKEN").map_err(|_| "ORK_CALLBACK_TOKEN is not set")?;
    let output_file;
    let output = match std::env::var("ORK_OUTPUT") {
        Ok(path) => std::path::PathBuf::from(path),
        Err(_) => {
            output_file = tempfile_path("output");
            output_file.clone()
        }
    };
    // Where the program may say why it failed (and whether to retry).
    let error = std::env::var("ORK_ERROR")
        .map_or_else(|_| tempfile_path("error"), std::path::PathBuf::from);
    let _ = std::fs::remove_file(&error);
    let heartbeat_every = std::env::var("ORK_HEARTBEAT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(DEFAULT_HEARTBEAT, Duration::from_secs);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;

    let mut child = Command::new(program)
        .args(args)
        .env("ORK_OUTPUT", &output)
        .env("ORK_ERROR", &error)
        .spawn()
        .map_err(|e| format!("cannot start {program:?}: {e}"))?;
    let heartbeat_url = format!(
        "{}/heartbeat",
        url.trim_end_matches('/').trim_end_matches("/complete")
    );
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = tokio::time::sleep(heartbeat_every) => {
                let sent = client.post(&heartbeat_url).json(&json!({ "token": token })).send().await;
                if let Ok(r) = sent {
                    if r.status() == reqwest::StatusCode::GONE {
                        // The attempt was given up (timeout, cancel): stop working on it.
                        let _ = child.kill().await;
                    }
                }
            }
        }
    };
    let (code, outcome) = match status {
        Ok(s) if s.success() => (0, read_output(&output).await),
        Ok(s) => match s.code() {
            Some(code) => (code, read_failure(&error, code).await),
            None => (
                1,
                Outcome::failure(None, format!("ended by a signal ({s})")),
            ),
        },
        Err(e) => (1, Outcome::failure(None, format!("wait failed: {e}"))),
    };
    let report = json!({
        "token": token,
        "status": if outcome.success { "success" } else { "failed" },
        "exit_code": outcome.exit_code,
        "output": outcome.output,
        "error": outcome.error,
        "retryable": !outcome.permanent,
    });
    // Report until the handler has it: 2xx recorded, 409 superseded, 401
    // expired: nothing more to do in any case. A 5xx or a lost connection
    // is tried again.
    retry(
        REPORT_RETRY,
        |_: &String| true,
        || async {
            match client.post(&url).json(&report).send().await {
                Ok(r) if r.status().is_success() || r.status().is_client_error() => Ok(()),
                Ok(r) => {
                    tracing::warn!(status = %r.status(), "report not accepted; retrying");
                    Err(format!("report answered {}", r.status()))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "report failed; retrying");
                    Err(e.to_string())
                }
            }
        },
    )
    .await
    .map_err(|e| format!("could not report to {url}: {e}"))?;
    Ok(code)
}

fn tempfile_path(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ork-{what}-{}.json", uuid::Uuid::now_v7()))
}
