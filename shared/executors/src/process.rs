//! Runs attempts as local child processes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};

use ork_core::contract::{read_failure, read_output};
use ork_core::executor::{Completion, Dispatch, DispatchRequest, Executor, ExecutorError, Outcome};
use ork_core::model::AttemptRef;
use ork_core::spec::ExecutorKind;

/// Spawns `command args…` (or `python3 file args…`) with the worker
/// environment, writes stdout and stderr to one log file per attempt, and
/// reports the exit status (and the JSON left at `$ORK_OUTPUT`) on a channel.
#[derive(Clone)]
pub struct ProcessExecutor {
    log_dir: PathBuf,
    completions: mpsc::UnboundedSender<Completion>,
    /// Kill switches of running children, by execution id.
    running: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
    /// When set, attempts with a callback run under `<program> worker --`,
    /// which reports their end over HTTP: the dispatching process need not
    /// outlive them (serverless mode).
    worker_program: Option<PathBuf>,
}

impl ProcessExecutor {
    /// `log_dir` is made absolute: tasks run in their workflow's directory.
    pub fn new(
        log_dir: impl Into<PathBuf>,
        completions: mpsc::UnboundedSender<Completion>,
    ) -> Self {
        let log_dir = log_dir.into();
        ProcessExecutor {
            log_dir: std::path::absolute(&log_dir).unwrap_or(log_dir),
            completions,
            running: Arc::default(),
            worker_program: None,
        }
    }

    /// Runs attempts that have a callback under `program worker -- …`
    /// (the `ork` binary), detached from this process.
    pub fn with_worker_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.worker_program = Some(program.into());
        self
    }

    /// Where the log of an attempt is written.
    pub fn log_path(log_dir: &Path, attempt: &AttemptRef) -> PathBuf {
        log_dir.join(attempt.run_id.to_string()).join(format!(
            "{}.{}.{}.log",
            attempt.name, attempt.task_index, attempt.attempt
        ))
    }
}

#[async_trait]
impl Executor for ProcessExecutor {
    async fn dispatch(&self, req: &DispatchRequest) -> Result<Dispatch, ExecutorError> {
        let a = &req.attempt;
        let base = req.base_dir.clone().unwrap_or_else(|| PathBuf::from("."));
        let (program, mut args) =
            match req.spec.executor {
                ExecutorKind::Python => {
                    let file =
                        req.spec.file.as_ref().ok_or_else(|| {
                            ExecutorError::permanent("python task without `file`")
                        })?;
                    (
                        "python3".to_owned(),
                        vec![base.join(file).display().to_string()],
                    )
                }
                _ => (
                    req.spec.command.clone().ok_or_else(|| {
                        ExecutorError::permanent("process task without `command`")
                    })?,
                    Vec::new(),
                ),
            };
        args.extend(req.spec.args.iter().cloned());

        let log_path = Self::log_path(&self.log_dir, a);
        let attempt_dir = log_path.parent().expect("log path has a parent");
        std::fs::create_dir_all(attempt_dir).map_err(|e| {
            ExecutorError::permanent(format!("cannot create {}: {e}", attempt_dir.display()))
        })?;
        let log = std::fs::File::create(&log_path).map_err(|e| {
            ExecutorError::permanent(format!("cannot create {}: {e}", log_path.display()))
        })?;
        let log_err = log
            .try_clone()
            .map_err(|e| ExecutorError::permanent(e.to_string()))?;
        let output_path = log_path.with_extension("output.json");
        let _ = std::fs::remove_file(&output_path);
        let error_path = log_path.with_extension("error.json");
        let _ = std::fs::remove_file(&error_path);

        let detached = self
            .worker_program
            .as_ref()
            .filter(|_| req.callback.is_some());
        let mut command = match detached {
            Some(worker) => {
                let mut c = Command::new(worker);
                c.arg("worker").arg("--").arg(&program).args(&args);
                c
            }
            None => {
                let mut c = Command::new(&program);
                c.args(&args);
                c
            }
        };
        let mut child = command
            .current_dir(&base)
            .envs(req.container_env())
            .env("ORK_OUTPUT", &output_path)
            .env("ORK_ERROR", &error_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(detached.is_none())
            .spawn()
            .map_err(|e| ExecutorError::permanent(format!("cannot start {program:?}: {e}")))?;
        let execution_id = format!("pid:{}", child.id().unwrap_or_default());
        if detached.is_some() {
            // The worker reports for itself; tokio reaps the child when it exits.
            return Ok(Dispatch::Started { execution_id });
        }

        let (kill_tx, kill_rx) = oneshot::channel();
        self.running
            .lock()
            .expect("poisoned")
            .insert(execution_id.clone(), kill_tx);
        let this = self.clone();
        let attempt = a.clone();
        let timeout = req.timeout;
        let id = execution_id.clone();
        tokio::spawn(async move {
            let deadline = async {
                match timeout {
                    Some(t) => tokio::time::sleep(t).await,
                    None => std::future::pending().await,
                }
            };
            let outcome = tokio::select! {
                status = child.wait() => match status {
                    Ok(s) if s.success() => read_output(&output_path).await,
                    Ok(s) => match s.code() {
                        Some(code) => read_failure(&error_path, code).await,
                        None => Outcome::failure(None, format!("ended by a signal ({s})")),
                    },
                    Err(e) => Outcome::failure(None, format!("wait failed: {e}")),
                },
                _ = deadline => {
                    let _ = child.kill().await;
                    Outcome::failure(None, format!("timed out after {}", humantime::format_duration(timeout.unwrap_or_default())))
                }
                _ = kill_rx => {
                    let _ = child.kill().await;
                    Outcome::failure(None, "cancelled")
                }
            };
            this.running.lock().expect("poisoned").remove(&id);
            // The receiver is gone only when the engine shut down; nothing to report to.
            let _ = this.completions.send(Completion { attempt, outcome });
        });
        Ok(Dispatch::Started { execution_id })
    }

    async fn cancel(&self, _attempt: &AttemptRef, execution_id: &str) -> Result<(), ExecutorError> {
        if let Some(kill) = self.running.lock().expect("poisoned").remove(execution_id) {
            let _ = kill.send(());
        }
        Ok(())
    }
}
