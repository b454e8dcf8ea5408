//! Ork's Lambda worker: the function a `lambda` task invokes.
//!
//! Each event is the worker contract as JSON (`ork_executors::lambda`):
//! `{"ork_worker": 1, "env": {"ORK_…": …}, "command": [program, args…]}`.
//! The function runs `command` under `ork worker` with that environment,
//! in a child process of this binary (so no variable of one event leaks
//! into the next, and the program gets a process group of its own): it
//! heartbeats `ORK_CALLBACK_URL`, stops the program when a heartbeat is
//! answered 410 (the run was cancelled) or `ORK_TIMEOUT` passes, and
//! reports the exit status and `$ORK_OUTPUT`. Package the task's program
//! with the function (a container image, or a layer).
//!
//! The answer (`{"exit_code": n}`) is for logs only: asynchronous
//! invocations discard it. A run's end is the report, so the function is
//! deployed with no asynchronous retries (`MaximumRetryAttempts: 0`): Ork
//! retries per the task's policy.

use std::process::ExitCode;

use lambda_runtime::{service_fn, LambdaEvent};
use serde_json::{json, Value};

/// The first argument of the child process that runs one task.
const CHILD: &str = "--ork-run-task";

fn main() -> ExitCode {
    ork_api::config::init_tracing("info", ork_api::config::LogFormat::Text, false);
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD) {
        let Some(program) = args.get(1) else {
            eprintln!("{CHILD} needs a program");
            return ExitCode::from(2);
        };
        let settings = ork_worker::Settings::default();
        return match runtime.block_on(ork_worker::run(program, &args[2..], &settings)) {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(lambda_runtime::run(service_fn(handle))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// One event: the task, run to its end and reported.
async fn handle(event: LambdaEvent<Value>) -> Result<Value, lambda_runtime::Error> {
    let (event, _context) = event.into_parts();
    if event["ork_worker"] != json!(ork_executors::lambda::EVENT_VERSION) {
        return Err("not an Ork worker event (no \"ork_worker\": 1)".into());
    }
    let env: Vec<(String, String)> = event["env"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect();
    let command: Vec<String> = event["command"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().map(str::to_owned))
        .collect();
    if command.is_empty() {
        return Err("the event has no command: give the lambda task a `command`".into());
    }
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .arg(CHILD)
        .args(&command)
        .envs(env)
        .status()
        .await?;
    tracing::info!(command = ?command, %status, "task ended");
    Ok(json!({ "exit_code": status.code() }))
}
