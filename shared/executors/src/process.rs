//! Runs attempts as local child processes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use ork_core::contract::read_failure;
use ork_core::executor::{Completion, Dispatch, DispatchRequest, Executor, ExecutorError, Outcome};
use ork_core::model::AttemptRef;
use ork_core::payload::{check_output_file, OutputFile};
use ork_core::spec::ExecutorKind;

use crate::log_file::SpareLogs;
use crate::orphans::Fate;

/// How long a stopped task's process group has between SIGTERM and SIGKILL,
/// unless `ORK_KILL_GRACE` says otherwise.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

/// The grace period between SIGTERM and SIGKILL: `ORK_KILL_GRACE` (a
/// duration: `10s`, `500ms`) or [`DEFAULT_KILL_GRACE`].
pub fn kill_grace() -> Duration {
    std::env::var("ORK_KILL_GRACE")
        .ok()
        .and_then(|s| humantime::parse_duration(s.trim()).ok())
        .unwrap_or(DEFAULT_KILL_GRACE)
}

/// Stops `child`, which leads its own process group (it was spawned with
/// `process_group(0)`), and everything in that group: SIGTERM to the
/// group, then SIGKILL to whatever of it still runs after `grace`. Returns
/// once the group is gone, with `child` reaped.
pub async fn stop_group(child: &mut Child, grace: Duration) -> std::io::Result<ExitStatus> {
    let Some(pid) = child.id() else {
        // Already reaped.
        return child.wait().await;
    };
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    let exited = tokio::select! {
        status = child.wait() => Some(status?),
        _ = tokio::time::sleep_until(deadline) => None,
    };
    match exited {
        // The leader is gone; its group may not be (children that outlived it).
        Some(status) => {
            kill_what_outlives(group, deadline).await;
            Ok(status)
        }
        None => {
            let _ = killpg(group, Signal::SIGKILL);
            child.wait().await
        }
    }
}

/// Stops the process group an orphaned child leads (see `stop_group`; it
/// is not this process's child, so there is nothing to reap).
async fn stop_orphan(group: Pid, grace: Duration) {
    let _ = killpg(group, Signal::SIGTERM);
    kill_what_outlives(group, tokio::time::Instant::now() + grace).await;
}

/// Waits until no process of `group`, already sent SIGTERM, runs, or until
/// `deadline`; then SIGKILLs what is left of it.
async fn kill_what_outlives(group: Pid, deadline: tokio::time::Instant) {
    while group_running(group) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if group_running(group) {
        let _ = killpg(group, Signal::SIGKILL);
    }
}

/// Whether a process of `group` still runs. Zombies do not count: orphans
/// are reaped by init, which in a container may never do it.
fn group_running(group: Pid) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        // No procfs: ask the kernel whether the group has any member.
        return killpg(group, None).is_ok();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid pgrp …"
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("Z");
            let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
            pgrp == Some(group.as_raw()) && state != "Z" && state != "X"
        })
}

/// Where `program` is on `path` (the task's `PATH`, else this process's;
/// relative entries from `base`, the task's directory), found here: left to
/// the child, each `PATH` entry before the right one costs a failed `exec`
/// while this process waits for the child (`vfork`), which a wide fan-out
/// pays per task. A name with a `/`, or one not found, is left as it is
/// (the spawn then fails with the OS's own error).
fn find_program(program: &str, path: Option<&std::ffi::OsStr>, base: &Path) -> PathBuf {
    if program.contains('/') {
        return PathBuf::from(program);
    }
    let ours = std::env::var_os("PATH");
    let Some(path) = path.or(ours.as_deref()) else {
        return PathBuf::from(program);
    };
    std::env::split_paths(path)
        .map(|dir| base.join(dir).join(program))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| PathBuf::from(program))
}

/// A file with an execute bit.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Spawns `command args…` (or `python3 file args…`) with the worker
/// environment, writes stdout and stderr to one log file per attempt, and
/// reports the exit status (and the JSON left at `$ORK_OUTPUT`) on a channel.
///
/// Every attempt runs in a process group of its own: a cancelled or timed
/// out attempt is stopped with its whole process tree (SIGTERM to the group,
/// SIGKILL after the grace period), not just its direct child.
#[derive(Clone)]
pub struct ProcessExecutor {
    log_dir: PathBuf,
    completions: mpsc::UnboundedSender<Completion>,
    /// Kill switches of running children (taken once used), by execution
    /// id; an entry lasts until its child is gone.
    running: Arc<Mutex<HashMap<String, Option<oneshot::Sender<()>>>>>,
    /// When set, attempts with a callback run under `<program> worker --`,
    /// which reports their end over HTTP: the dispatching process need not
    /// outlive them (serverless mode).
    worker_program: Option<PathBuf>,
    /// Between SIGTERM and SIGKILL when an attempt is stopped.
    kill_grace: Duration,
    /// Outputs up to this size are inline; larger ones are reported by
    /// reference to their file (which the engine moves into its payload store).
    inline_limit: u64,
    /// Outputs over this size fail the attempt.
    max_output_bytes: u64,
    /// Programs found on `PATH` ([`find_program`]), as a shell hashes
    /// commands: a fan-out looks `sh` up once, not once a task (ten failed
    /// `statx` a task on this machine's `PATH`).
    found: Arc<Mutex<HashMap<ProgramKey, PathBuf>>>,
    /// The next attempt's log file, made while this one runs.
    spare_logs: Arc<SpareLogs>,
}

/// A program's name, the task's `PATH` (`None`: this process's) and the
/// directory its relative entries start from.
type ProgramKey = (String, Option<std::ffi::OsString>, PathBuf);

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
            kill_grace: kill_grace(),
            inline_limit: ork_core::payload::DEFAULT_INLINE_LIMIT,
            max_output_bytes: ork_core::payload::DEFAULT_MAX_PAYLOAD_BYTES,
            found: Arc::default(),
            spare_logs: Arc::default(),
        }
    }

    /// [`find_program`], remembered. A remembered path is checked (one
    /// `statx`) and looked up again once it is gone.
    fn locate(&self, program: &str, path: Option<&std::ffi::OsStr>, base: &Path) -> PathBuf {
        if program.contains('/') {
            return PathBuf::from(program);
        }
        let key = (
            program.to_owned(),
            path.map(ToOwned::to_owned),
            base.to_path_buf(),
        );
        let known = self.found.lock().expect("poisoned").get(&key).cloned();
        if let Some(known) = known.filter(|p| is_executable(p)) {
            return known;
        }
        let found = find_program(program, path, base);
        if found.as_os_str() != program {
            self.found
                .lock()
                .expect("poisoned")
                .insert(key, found.clone());
        }
        found
    }

    /// Runs attempts that have a callback under `program worker -- …`
    /// (the `ork` binary), detached from this process.
    pub fn with_worker_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.worker_program = Some(program.into());
        self
    }

    /// The output sizes: inline up to `inline_limit`, by reference up to
    /// `max_bytes`, a failure above (the engine's `Payloads` bounds).
    pub fn with_payload_limits(mut self, inline_limit: u64, max_bytes: u64) -> Self {
        self.inline_limit = inline_limit;
        self.max_output_bytes = max_bytes;
        self
    }

    /// The grace period between SIGTERM and SIGKILL (default: [`kill_grace`]).
    pub fn with_kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// Stops every attempt this executor still runs (each with its process
    /// tree) and returns once they are all gone: what `ork run` does before
    /// it exits. Detached workers are asked to stop and report.
    pub async fn stop_all(&self) {
        for kill in self.running.lock().expect("poisoned").values_mut() {
            if let Some(kill) = kill.take() {
                let _ = kill.send(());
            }
        }
        while !self.running.lock().expect("poisoned").is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The directory of the attempts' logs (absolute).
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
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
        let (program, mut args) = match req.spec.executor {
            ExecutorKind::Python => {
                let file = req
                    .spec
                    .file
                    .as_ref()
                    .ok_or_else(|| ExecutorError::permanent("python task without `file`"))?;
                (
                    "python3".to_owned(),
                    vec![base.join(file).display().to_string()],
                )
            }
            _ => {
                let mut argv = req.spec.argv().into_iter();
                let program = argv
                    .next()
                    .ok_or_else(|| ExecutorError::permanent("process task without `command`"))?;
                (program, argv.collect())
            }
        };
        if req.spec.executor == ExecutorKind::Python {
            args.extend(req.spec.args.iter().cloned());
        }

        let log_path = Self::log_path(&self.log_dir, a);
        let attempt_dir = log_path.parent().expect("log path has a parent");
        std::fs::create_dir_all(attempt_dir).map_err(|e| {
            ExecutorError::permanent(format!("cannot create {}: {e}", attempt_dir.display()))
        })?;
        let log = self.spare_logs.take(&log_path).map_err(|e| {
            ExecutorError::permanent(format!("cannot create {}: {e}", log_path.display()))
        })?;
        let (log_out, log_err) = log
            .file
            .try_clone()
            .and_then(|out| Ok((out, log.file.try_clone()?)))
            .map_err(|e| ExecutorError::permanent(e.to_string()))?;
        // Named by attempt, which every claim numbers anew: no earlier
        // file can be there.
        let output_path = log_path.with_extension("output.json");
        let error_path = log_path.with_extension("error.json");

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
                let path = req.spec.env.get("PATH").map(std::ffi::OsStr::new);
                let mut c = Command::new(self.locate(&program, path, &base));
                c.args(&args);
                c
            }
        };
        if let (Some(_), Some(timeout)) = (detached, req.timeout) {
            // The worker stops the program itself once this has passed.
            command.env(
                "ORK_TIMEOUT",
                humantime::format_duration(timeout).to_string(),
            );
        }
        command
            .process_group(0)
            .current_dir(&base)
            .envs(req.container_env())
            .env("ORK_OUTPUT", &output_path)
            .env("ORK_ERROR", &error_path)
            .stdin(Stdio::null())
            .stdout(log_out)
            .stderr(log_err)
            .kill_on_drop(detached.is_none());
        // A spawn (vfork) holds its thread until the child has exec'd,
        // ~0.15 ms. Alone, it is done here; in a batch, on blocking
        // threads, so that the starts overlap and a fan-out's children
        // exec on the other CPUs meanwhile (202 `sh` tasks: 157 -> 134 ms).
        // Not always: the hop costs a chain ~0.15 ms a task. (`ork run`
        // caps its blocking threads: `SPAWNING_THREADS` in the CLI.)
        let spawned = if req.batch > 1 {
            tokio::task::spawn_blocking(move || crate::affinity::unpinned(|| command.spawn()))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)))
        } else {
            crate::affinity::unpinned(|| command.spawn())
        };
        // Named whether the child started or not: `ork logs` finds the
        // attempt's log either way. A child that started runs meanwhile,
        // so naming its log and making the next one's file are off a
        // chain's path.
        if let Err(e) = log.name() {
            tracing::warn!(path = %log_path.display(), "cannot name the log file: {e}");
        }
        let mut child = spawned
            .map_err(|e| ExecutorError::permanent(format!("cannot start {program:?}: {e}")))?;
        self.spare_logs.refill(attempt_dir);
        let pid = child.id().unwrap_or_default();
        // A detached worker reports for itself: it has no watcher here.
        let execution_id = match detached {
            Some(_) => format!("pid:{pid}"),
            None => crate::orphans::execution_id(pid),
        };
        let (kill_tx, kill_rx) = oneshot::channel();
        self.running
            .lock()
            .expect("poisoned")
            .insert(execution_id.clone(), Some(kill_tx));
        if detached.is_some() {
            // The worker reports for itself. Asked to stop, it stops its
            // program's process group and reports that.
            let this = self.clone();
            let id = execution_id.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = child.wait() => {}
                    Ok(()) = kill_rx => {
                        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                        let _ = child.wait().await;
                    }
                }
                this.running.lock().expect("poisoned").remove(&id);
            });
            return Ok(Dispatch::Started { execution_id });
        }

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
                    Ok(s) if s.success() => {
                        match check_output_file(&output_path, this.inline_limit, this.max_output_bytes).await {
                            Ok(OutputFile::None) => Outcome::success(None),
                            Ok(OutputFile::Inline(v)) => Outcome::success(Some(v)),
                            Ok(OutputFile::Ref(r)) => Outcome {
                                output_ref: Some(r),
                                ..Outcome::success(None)
                            },
                            Err(e) => Outcome::failure(Some(0), e),
                        }
                    }
                    Ok(s) => match s.code() {
                        Some(code) => read_failure(&error_path, code).await,
                        None => Outcome::failure(None, format!("ended by a signal ({s})")),
                    },
                    Err(e) => Outcome::failure(None, format!("wait failed: {e}")),
                },
                _ = deadline => {
                    let _ = stop_group(&mut child, this.kill_grace).await;
                    Outcome::failure(None, format!("timed out after {}", humantime::format_duration(timeout.unwrap_or_default())))
                }
                _ = kill_rx => {
                    let _ = stop_group(&mut child, this.kill_grace).await;
                    Outcome::failure(None, "cancelled")
                }
            };
            this.running.lock().expect("poisoned").remove(&id);
            // The receiver is gone only when the engine shut down; nothing to report to.
            let _ = this.completions.send(Completion { attempt, outcome });
        });
        Ok(Dispatch::Started { execution_id })
    }

    /// An attempt another `ork` process started, asked about by `ork run
    /// --resume`: if that process died, its child's end is lost (nobody
    /// could wait for it), so the attempt has failed; a child it left
    /// running is stopped with its process group first, or it would run
    /// beside the retry. Otherwise (its watcher lives, or it is on another
    /// machine) nothing is told: see [`crate::orphans`].
    async fn poll(
        &self,
        attempt: &AttemptRef,
        execution_id: &str,
    ) -> Result<Option<Outcome>, ExecutorError> {
        if self
            .running
            .lock()
            .expect("poisoned")
            .contains_key(execution_id)
        {
            return Ok(None);
        }
        let lost = "lost: the ork process that started it died";
        match crate::orphans::fate(execution_id, attempt) {
            Fate::Unknown => Ok(None),
            Fate::Ended => Ok(Some(Outcome::failure(
                None,
                format!("{lost}, and its process has ended since"),
            ))),
            Fate::Orphaned(pid) => {
                stop_orphan(Pid::from_raw(pid), self.kill_grace).await;
                Ok(Some(Outcome::failure(
                    None,
                    format!("{lost}; its process group was stopped"),
                )))
            }
        }
    }

    async fn cancel(&self, _attempt: &AttemptRef, execution_id: &str) -> Result<(), ExecutorError> {
        let kill = self
            .running
            .lock()
            .expect("poisoned")
            .get_mut(execution_id)
            .and_then(Option::take);
        if let Some(kill) = kill {
            let _ = kill.send(());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::find_program;
    use std::ffi::OsStr;
    use std::path::{Path, PathBuf};

    #[test]
    fn finds_a_program_on_the_path_as_the_child_would() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let tool = bin.join("tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::write(bin.join("plain"), "not executable").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();

        // Entries before the right one are skipped; a relative entry is
        // the task's directory's.
        let path = OsStr::new("/nonexistent:bin");
        assert_eq!(find_program("tool", Some(path), dir.path()), tool);
        // Not executable, not found, or with a slash: left to the spawn.
        assert_eq!(
            find_program("plain", Some(path), dir.path()),
            PathBuf::from("plain")
        );
        assert_eq!(
            find_program("missing", Some(path), dir.path()),
            PathBuf::from("missing")
        );
        assert_eq!(
            find_program("./tool", Some(path), dir.path()),
            PathBuf::from("./tool")
        );
        // Without the task's PATH, this process's.
        let sh = find_program("sh", None, Path::new("/"));
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{sh:?}");
    }

    #[test]
    fn remembers_where_a_program_is_until_it_is_gone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let executable = |path: &Path| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        let (early, late) = (dir.path().join("a/tool"), dir.path().join("b/tool"));
        executable(&late);
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let executor = super::ProcessExecutor::new(dir.path().join("logs"), tx);
        let path = OsStr::new("a:b");
        assert_eq!(executor.locate("tool", Some(path), dir.path()), late);
        // Found once, it is not looked up again: an earlier entry that
        // gains the program changes nothing (as with a shell's hash)...
        executable(&early);
        assert_eq!(executor.locate("tool", Some(path), dir.path()), late);
        // ...until it is gone. Another PATH is another lookup.
        std::fs::remove_file(&late).unwrap();
        assert_eq!(executor.locate("tool", Some(path), dir.path()), early);
        assert_eq!(
            executor.locate("tool", Some(OsStr::new("b")), dir.path()),
            PathBuf::from("tool")
        );
    }
}
