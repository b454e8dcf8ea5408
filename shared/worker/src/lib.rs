//! The worker side of the worker contract, for programs that know nothing
//! of Ork: `ork worker -- <program> [args…]` runs the program with the
//! environment it was given, beats `ORK_CALLBACK_URL`'s heartbeat while it
//! runs, and reports its exit status and `$ORK_OUTPUT` to `ORK_CALLBACK_URL`.
//! Use it as a container entrypoint on Cloud Run or Fargate, or let the
//! process executor start local tasks under it.
//!
//! The program runs in a process group of its own. When the attempt is given
//! up (a heartbeat answers 410), when `ORK_TIMEOUT` has passed, or when the
//! worker gets SIGTERM or SIGINT (how Cloud Run, Fargate and Kubernetes stop
//! containers), the whole group is stopped (SIGTERM, then SIGKILL after
//! `ORK_KILL_GRACE`) and the attempt's end is still reported.

use std::time::Duration;

use serde_json::json;
use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};

use ork_core::contract::read_output;
use ork_core::executor::Outcome;
use ork_executors::process::{kill_grace, stop_group};

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
            output_file = tempfile_path();
            output_file.clone()
        }
    };
    let heartbeat_every = std::env::var("ORK_HEARTBEAT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(DEFAULT_HEARTBEAT, Duration::from_secs);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;

    let timeout = std::env::var("ORK_TIMEOUT")
        .ok()
        .and_then(|s| humantime::parse_duration(s.trim()).ok());
    let grace = kill_grace();
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;

    let mut child = Command::new(program)
        .args(args)
        .env("ORK_OUTPUT", &output)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {program:?}: {e}"))?;
    let heartbeat_url = format!(
        "{}/heartbeat",
        url.trim_end_matches('/').trim_end_matches("/complete")
    );
    let deadline = async {
        match timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    // Why the program was stopped, and the worker's exit code then.
    let mut stopped: Option<(String, i32)> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = tokio::time::sleep(heartbeat_every) => {
                let sent = client.post(&heartbeat_url).json(&json!({ "token": token })).send().await;
                if let Ok(r) = sent {
                    if r.status() == reqwest::StatusCode::GONE {
                        // The attempt was given up (timeout, cancel): stop working on it.
                        stopped = Some(("the attempt was given up (cancelled or timed out)".into(), 1));
                    }
                }
            }
            _ = &mut deadline => {
                let t = humantime::format_duration(timeout.unwrap_or_default());
                stopped = Some((format!("timed out after {t}"), 1));
            }
            _ = sigterm.recv() => stopped = Some(("the worker was stopped by SIGTERM".into(), 143)),
            _ = sigint.recv() => stopped = Some(("the worker was stopped by SIGINT".into(), 130)),
        }
        if stopped.is_some() {
            break stop_group(&mut child, grace).await;
        }
    };
    let (code, outcome) = match (status, stopped) {
        (_, Some((why, code))) => (code, Outcome::failure(None, why)),
        (Ok(s), None) if s.success() => (0, read_output(&output).await),
        (Ok(s), None) => {
            let code = s.code().unwrap_or(1);
            (
                code,
                Outcome::failure(s.code().map(i64::from), format!("exited with code {code}")),
            )
        }
        (Err(e), None) => (1, Outcome::failure(None, format!("wait failed: {e}"))),
    };
    let report = json!({
        "token": token,
        "status": if outcome.success { "success" } else { "failed" },
        "exit_code": outcome.exit_code,
        "output": outcome.output,
        "error": outcome.error,
    });
    // Report until the handler has it: 2xx recorded, 409 superseded, 401
    // expired: nothing more to do in any case.
    let mut delay = Duration::from_millis(200);
    for _ in 0..8 {
        match client.post(&url).json(&report).send().await {
            Ok(r) if r.status().is_success() || r.status().is_client_error() => return Ok(code),
            Ok(r) => tracing::warn!(status = %r.status(), "report not accepted; retrying"),
            Err(e) => tracing::warn!(error = %e, "report failed; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    Err(format!("could not report to {url}"))
}

fn tempfile_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ork-output-{}.json", uuid::Uuid::now_v7()))
}
