//! The tasks' type schemas at `ork apply` / `ork run` (docs/type_schemas.md):
//! each `schema:` read from its file or its command, or derived for an SDK
//! `python` task with `python3 -m ork schema FILE`, stored inline in the
//! spec (so the version holds them and the API returns them), then checked
//! along every edge by `spec::check_types`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use ork_core::spec::{self, ExecutorKind, TaskSchema, TaskSpec, WorkflowSpec};
use serde_json::Value;

/// How long a schema command may take (a `cargo run` may build first).
const SCHEMA_TIMEOUT: Duration = Duration::from_secs(600);

/// Resolves the schemas of `spec`'s tasks and checks its edges; `src` is
/// the YAML text of `file`, for the line numbers of errors.
pub async fn resolve_and_check(spec: &mut WorkflowSpec, file: &Path, src: &str) -> Result<()> {
    let base = spec.base_dir.clone().unwrap_or_else(|| PathBuf::from("."));
    for (name, task) in spec.tasks.iter_mut() {
        let resolved = match &task.schema {
            Some(TaskSchema::File(path)) => {
                let path = base.join(path);
                let text = std::fs::read_to_string(&path).with_context(|| {
                    format!("task {name:?}: cannot read schema {}", path.display())
                })?;
                Some(
                    parse(&text)
                        .with_context(|| format!("task {name:?}: schema {}", path.display()))?,
                )
            }
            Some(TaskSchema::Command { command }) => {
                Some(run(command, task, &base).await.with_context(|| {
                    format!("task {name:?}: schema command {}", command.join(" "))
                })?)
            }
            Some(TaskSchema::Inline { .. }) => None,
            None => match python_sdk_file(task, &base) {
                Some(path) => {
                    let argv = ["python3", "-m", "ork", "schema"].map(String::from);
                    let mut argv = argv.to_vec();
                    argv.push(path.display().to_string());
                    match run(&argv, task, &base).await {
                        Ok(schema) => Some(schema),
                        Err(e) => {
                            tracing::warn!(
                                "task {name:?}: no schema from `python3 -m ork schema` ({e:#}); its edges are not checked"
                            );
                            None
                        }
                    }
                }
                None => None,
            },
        };
        if let Some(s) = resolved {
            task.schema = Some(s);
        }
    }
    spec::check_types(spec, src).map_err(|e| anyhow!(e.in_file(Some(file))))
}

/// A `python` task's file when it uses the SDK (`@ork.task` / `@task`):
/// only such a file can be imported without running it.
fn python_sdk_file(task: &TaskSpec, base: &Path) -> Option<PathBuf> {
    if task.executor != ExecutorKind::Python {
        return None;
    }
    let path = base.join(task.file.as_ref()?);
    let text = std::fs::read_to_string(&path).ok()?;
    let decorated = text.lines().any(|l| {
        let l = l.trim_start();
        l.starts_with("@ork.task") || l.starts_with("@task")
    });
    (decorated && text.contains("ork")).then_some(path)
}

/// Runs `argv` in the workflow's directory with the task's `env`, and reads
/// its output as a schema.
async fn run(argv: &[String], task: &TaskSpec, base: &Path) -> Result<TaskSchema> {
    let (program, args) = argv.split_first().context("empty command")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .current_dir(base)
        .envs(&task.env)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = tokio::time::timeout(SCHEMA_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow!("still running after {}s", SCHEMA_TIMEOUT.as_secs()))?
        .context("cannot start it")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        bail!("exited with {}: {last}", out.status);
    }
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// `{"input": …, "output": …}`, each a JSON Schema object when present.
fn parse(text: &str) -> Result<TaskSchema> {
    let v: Value = serde_json::from_str(text).context("not JSON")?;
    let part = |k: &str| -> Result<Option<Value>> {
        match v.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(s @ (Value::Object(_) | Value::Bool(_))) => Ok(Some(s.clone())),
            Some(_) => bail!("`{k}` is not a JSON Schema"),
        }
    };
    if !v.is_object() {
        bail!("expected {{\"input\": …, \"output\": …}}");
    }
    Ok(TaskSchema::Inline {
        input: part("input")?,
        output: part("output")?,
    })
}
