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

use ork_core::contract::{read_failure, read_output, MAX_REPORT_BYTES};
use ork_core::executor::Outcome;
use ork_core::retry::{retry, Backoff};

/// How a report is tried again: 200ms, doubled up to 30s apart, for the
/// report budget (`ORK_REPORT_TIMEOUT`, 15 minutes by default): long enough
/// for a server restart or a deploy.
const REPORT_BASE: Duration = Duration::from_millis(200);
const REPORT_MAX: Duration = Duration::from_secs(30);

/// The worker's settings (`ork_api::config::Config` reads them).
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a report is tried while the server is unreachable or
    /// answers 5xx, before the worker gives up with an error.
    pub report_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            report_timeout: Duration::from_secs(15 * 60),
        }
    }
}

/// The attempt this worker runs, for its messages: `run R task t[i] attempt n`.
fn attempt_label() -> String {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| "?".into());
    format!(
        "run {} task {}[{}] attempt {}",
        var("ORK_RUN_ID"),
        var("ORK_TASK"),
        var("ORK_TASK_INDEX"),
        var("ORK_ATTEMPT")
    )
}

/// How the handler took a report.
enum Sent {
    /// Recorded, a duplicate, or superseded (409): nothing more to do.
    Done,
    /// 413: the body is over the handler's limit (`Some` when it said which).
    TooLarge(Option<u64>),
    /// Another 4xx (a refused or expired token): trying again cannot help.
    Refused(reqwest::StatusCode, String),
}

/// The limit a 413 answer names (`… the limit is M`), if it does.
fn limit_of(body: &str) -> Option<u64> {
    let (_, after) = body.split_once("limit is ")?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Sends one report, trying again on 5xx and lost connections within the budget.
async fn send(
    client: &reqwest::Client,
    url: &str,
    report: &serde_json::Value,
    policy: Backoff,
) -> Result<Sent, String> {
    retry(
        policy,
        |_: &String| true,
        || async {
            match client.post(url).json(report).send().await {
                Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::CONFLICT => {
                    Ok(Sent::Done)
                }
                Ok(r) if r.status() == reqwest::StatusCode::PAYLOAD_TOO_LARGE => {
                    let body = r.text().await.unwrap_or_default();
                    Ok(Sent::TooLarge(limit_of(&body)))
                }
                Ok(r) if r.status().is_client_error() => {
                    let status = r.status();
                    Ok(Sent::Refused(status, r.text().await.unwrap_or_default()))
                }
                Ok(r) => {
                    tracing::warn!(status = %r.status(), %url, "report not accepted; retrying");
                    Err(format!("report answered {}", r.status()))
                }
                Err(e) => {
                    tracing::warn!(error = %e, %url, "report failed; retrying");
                    Err(e.to_string())
                }
            }
        },
    )
    .await
}
use ork_executors::process::{kill_grace, stop_group};

/// How often a running task's heartbeat is sent (`ORK_HEARTBEAT_SECS`).
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// Runs `program` and reports its end; returns the program's exit code.
/// A report that cannot be delivered (the budget spent, the token refused)
/// is logged at error level with the attempt and the URL, and is an error:
/// the attempt's lease then runs out and the sweeper fails it.
pub async fn run(program: &str, args: &[String], settings: &Settings) -> Result<i32, String> {
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

    let timeout = std::env::var("ORK_TIMEOUT")
        .ok()
        .and_then(|s| humantime::parse_duration(s.trim()).ok());
    let grace = kill_grace();
    let mut sigterm = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;

    // A remote input (`ORK_INPUT_URL`, a presigned GET) becomes a local
    // file for the program: it sees `ORK_INPUT_FILE`, as local tasks do.
    let input_file;
    let mut command = Command::new(program);
    if let Ok(input_url) = std::env::var("ORK_INPUT_URL") {
        input_file = download_input(&client, &input_url).await?;
        command
            .env("ORK_INPUT_FILE", &input_file)
            .env_remove("ORK_INPUT_URL");
    }
    let mut child = command
        .args(args)
        .env("ORK_OUTPUT", &output)
        .env("ORK_ERROR", &error)
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
    let mut uploaded = false;
    let (code, outcome) = match (status, stopped) {
        (_, Some((why, code))) => (code, Outcome::failure(None, why)),
        (Ok(s), None) if s.success() => {
            let (outcome, up) = upload_output(&client, &url, &token, &output).await;
            uploaded = up;
            (0, outcome)
        }
        (Ok(s), None) => match s.code() {
            Some(code) => (code, read_failure(&error, code).await),
            None => (
                1,
                Outcome::failure(None, format!("ended by a signal ({s})")),
            ),
        },
        (Err(e), None) => (1, Outcome::failure(None, format!("wait failed: {e}"))),
    };
    let report = json!({
        "token": token,
        "status": if outcome.success { "success" } else { "failed" },
        "exit_code": outcome.exit_code,
        "output": outcome.output,
        "output_uploaded": uploaded,
        "error": outcome.error,
        "retryable": !outcome.permanent,
    });
    // Report until the handler has it: 2xx recorded, 409 superseded:
    // nothing more to do. A 5xx or a lost connection is tried again for the
    // budget; a 413 becomes a failure without the output, which fits.
    let policy = Backoff::within(settings.report_timeout, REPORT_BASE, REPORT_MAX);
    let what = attempt_label();
    let mut sent = send(&client, &url, &report, policy).await;
    if let Ok(Sent::TooLarge(limit)) = sent {
        let size = serde_json::to_vec(&outcome.output).map_or(0, |b| b.len());
        let limit = limit.unwrap_or(MAX_REPORT_BYTES as u64);
        let error = format!("output is {size} bytes, over the limit of {limit}");
        tracing::error!(attempt = %what, %url, "{error}: reporting a failure without it");
        let failure = json!({
            "token": token,
            "status": "failed",
            "exit_code": outcome.exit_code,
            "error": error,
        });
        sent = send(&client, &url, &failure, policy).await;
    }
    match sent {
        Ok(Sent::Done) => {}
        Ok(Sent::TooLarge(_)) => {
            tracing::error!(attempt = %what, %url, "even a report without output was too large");
            return Err(format!("could not report {what} to {url}: body too large"));
        }
        Ok(Sent::Refused(status, body)) => {
            tracing::error!(attempt = %what, %url, %status, %body, "report refused; the attempt's end is lost (the sweeper will fail it when its lease runs out)");
            return Err(format!("could not report {what} to {url}: {status} {body}"));
        }
        Err(e) => {
            tracing::error!(attempt = %what, %url, error = %e, budget = %humantime_secs(settings.report_timeout), "could not report within the budget (ORK_REPORT_TIMEOUT); giving up");
            return Err(format!("could not report {what} to {url}: {e}"));
        }
    }
    Ok(code)
}

/// Streams `url` into a temporary file; its path.
async fn download_input(client: &reqwest::Client, url: &str) -> Result<std::path::PathBuf, String> {
    use tokio::io::AsyncWriteExt;
    let path = std::env::temp_dir().join(format!("ork-input-{}.json", uuid::Uuid::now_v7()));
    let mut resp = client
        .get(url)
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("cannot download the input (ORK_INPUT_URL): {e}"))?;
    let mut f = tokio::fs::File::create(&path)
        .await
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("cannot download the input (ORK_INPUT_URL): {e}"))?
    {
        f.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    f.flush().await.map_err(|e| e.to_string())?;
    Ok(path)
}

/// The program's output: inline when small (`read_output`). A larger one
/// is sent first, streamed from its file: to `ORK_OUTPUT_URL` when the
/// engine gave one (a presigned PUT into its object store), else with `PUT
/// <callback base>/outputs` (the attempt's token as bearer); the report
/// then says `output_uploaded`. A server without that route (404/405) gets
/// it inline, as before.
async fn upload_output(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    output: &std::path::Path,
) -> (Outcome, bool) {
    let size = match tokio::fs::metadata(output).await {
        Ok(m) => m.len(),
        Err(_) => return (Outcome::success(None), false),
    };
    if size <= ork_core::payload::DEFAULT_INLINE_LIMIT {
        return (read_output(output).await, false);
    }
    let request = match std::env::var("ORK_OUTPUT_URL") {
        Ok(presigned) if !presigned.is_empty() => client.put(presigned),
        _ => client
            .put(format!(
                "{}/outputs",
                url.trim_end_matches('/').trim_end_matches("/complete")
            ))
            .bearer_auth(token),
    };
    let file = match tokio::fs::File::open(output).await {
        Ok(f) => f,
        Err(e) => {
            return (
                Outcome::failure(Some(0), format!("cannot read output: {e}")),
                false,
            )
        }
    };
    let body =
        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 16));
    let sent = request
        .header(reqwest::header::CONTENT_LENGTH, size)
        .timeout(Duration::from_secs(600))
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => (Outcome::success(None), true),
        Ok(r)
            if r.status() == reqwest::StatusCode::NOT_FOUND
                || r.status() == reqwest::StatusCode::METHOD_NOT_ALLOWED =>
        {
            (read_output(output).await, false)
        }
        Ok(r) => {
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            (
                Outcome::failure(
                    Some(0),
                    format!("output of {size} bytes: upload answered {status}: {body}"),
                ),
                false,
            )
        }
        Err(e) => (
            Outcome::failure(
                Some(0),
                format!("output of {size} bytes: upload failed: {e}"),
            ),
            false,
        ),
    }
}

fn humantime_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

fn tempfile_path(what: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ork-{what}-{}.json", uuid::Uuid::now_v7()))
}
