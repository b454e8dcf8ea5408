use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use ork_core::engine::{self, Engine, EngineConfig, TriggerOptions};
use ork_core::executor::{Completion, Executors, MockExecutor};
use ork_core::model::{RunStatus, Task};
use ork_core::spec::{self, CloudRunTarget, ExecutorKind, TaskSpec, WorkflowSpec};
use ork_core::store::{self, Store};
use ork_executors::ProcessExecutor;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::output::{self, Progress};
use crate::{Cli, Command};

/// Runs one command; returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Worker { program, args } => {
            return ork_worker::run(program, args)
                .await
                .map_err(anyhow::Error::msg);
        }
        Command::Serve { addr, tick } => return crate::serve::serve(*addr, *tick).await,
        _ => {}
    }
    let url = cli
        .database_url
        .clone()
        .unwrap_or_else(store::database_url_from_env);
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("cannot open the database at {}", redact(&url)))?;
    let (tx, mut completions) = mpsc::unbounded_channel::<Completion>();
    let dry_run = matches!(cli.command, Command::Run { dry_run: true, .. });
    let engine = local_engine(store.clone(), &cli.log_dir, tx, dry_run);
    let json = cli.json;
    match cli.command {
        Command::Init => {
            println!("database ready at {}", redact(&url));
        }
        Command::Apply { path } => {
            let specs = load(&path)?;
            let mut applied = Vec::new();
            for spec in &specs {
                applied.push(engine.apply(spec, Some(path.display().to_string())).await?);
            }
            if json {
                output::json(&applied);
            } else {
                for a in applied {
                    let what = if a.created {
                        "stored as"
                    } else {
                        "unchanged at"
                    };
                    println!("{} {what} version {}", a.name, a.version);
                }
            }
        }
        Command::CreateWorkflow {
            name,
            job_name,
            project,
            region,
            task_count,
            executor,
            description,
        } => {
            let kind: ExecutorKind = executor.parse().map_err(|e: String| anyhow!(e))?;
            // The seeds' one-job workflow: a Cloud Run Job, or a local program.
            let task = match kind {
                ExecutorKind::Cloudrun => TaskSpec {
                    executor: kind,
                    cloudrun: Some(CloudRunTarget {
                        job: job_name.clone(),
                        project: project.ok_or_else(|| anyhow!("--executor cloudrun needs --project"))?,
                        region,
                    }),
                    task_count,
                    ..TaskSpec::default()
                },
                ExecutorKind::Process | ExecutorKind::Noop | ExecutorKind::Mock => TaskSpec {
                    executor: kind,
                    command: Some(job_name.clone()),
                    task_count,
                    ..TaskSpec::default()
                },
                other => bail!("create-workflow makes cloudrun, process, noop or mock workflows, not {}; write a YAML file for {0}", other.as_str()),
            };
            let spec = WorkflowSpec {
                name,
                description,
                tasks: BTreeMap::from([(job_name, task)]),
                base_dir: None,
                schedule: None,
                timezone: None,
                catchup: false,
            };
            let a = engine.apply(&spec, None).await?;
            if json {
                output::json(&a);
            } else {
                println!("{} stored as version {}", a.name, a.version);
            }
        }
        Command::ListWorkflows => {
            let workflows = store.list_workflows().await?;
            if json {
                output::json(&workflows);
            } else {
                output::workflows(&workflows);
            }
        }
        Command::Trigger {
            workflow,
            params,
            idempotency_key,
            wait,
        } => {
            let params = parse_params(&params)?;
            let t = engine
                .trigger(
                    &workflow,
                    params,
                    TriggerOptions {
                        trigger: "manual".into(),
                        idempotency_key,
                    },
                )
                .await?;
            if !wait {
                if json {
                    output::json(&t.run);
                } else {
                    let note = if t.created {
                        ""
                    } else {
                        " (existing run for this idempotency key)"
                    };
                    println!("{}{note}", t.run.id);
                }
                return Ok(0);
            }
            return execute(&engine, t.run.id, &mut completions, json).await;
        }
        Command::Status {
            run_id: Some(id), ..
        } => {
            let run = store.get_run(id).await?;
            if json {
                output::json(&run);
            } else {
                output::runs(std::slice::from_ref(&run));
                output::tasks(&store.run_tasks(id).await?);
            }
        }
        Command::Status {
            run_id: None,
            workflow,
            limit,
        } => {
            let runs = store.list_runs(workflow.as_deref(), limit).await?;
            if json {
                output::json(&runs);
            } else {
                output::runs(&runs);
            }
        }
        Command::Tasks { run_id } => {
            store.get_run(run_id).await?;
            let tasks = store.run_tasks(run_id).await?;
            if json {
                output::json(&tasks);
            } else {
                output::tasks(&tasks);
            }
        }
        Command::Events { run_id } => {
            let events = store.run_events(run_id).await?;
            if json {
                output::json(&events);
            } else {
                output::events(&events, &store.run_tasks(run_id).await?);
            }
        }
        Command::Logs {
            run_id,
            task,
            attempt,
        } => {
            let run = store.get_run(run_id).await?;
            let tasks = store.run_tasks(run_id).await?;
            let chosen: Vec<&Task> = tasks
                .iter()
                .filter(|t| t.label() == task || t.name == task)
                .collect();
            if chosen.is_empty() {
                bail!("run {run_id} has no task {task:?}");
            }
            let many = chosen.len() > 1;
            for t in chosen {
                let n = attempt.unwrap_or(t.attempt);
                let a = ork_core::model::AttemptRef {
                    attempt: n,
                    ..t.attempt_ref(&run.workflow, run.version)
                };
                let path = ProcessExecutor::log_path(&cli.log_dir, &a);
                if many {
                    println!("==> {} (attempt {n}) <==", t.label());
                }
                match std::fs::read_to_string(&path) {
                    Ok(text) => print!("{text}"),
                    Err(_) => {
                        eprintln!("no log for {} attempt {n} at {}", t.label(), path.display())
                    }
                }
            }
        }
        Command::Cancel { run_id } => {
            if engine.cancel(run_id).await? {
                println!("run {run_id} cancelled");
            } else {
                let run = store.get_run(run_id).await?;
                println!("run {run_id} is already {}", run.status);
            }
        }
        Command::Worker { .. } | Command::Serve { .. } => unreachable!("handled above"),
        Command::Run { file, params, .. } => {
            let specs = load(&file)?;
            let [spec] = specs.as_slice() else {
                bail!(
                    "{} holds {} workflows; `ork run` takes a file with one",
                    file.display(),
                    specs.len()
                );
            };
            let applied = engine.apply(spec, Some(file.display().to_string())).await?;
            let params = parse_params(&params)?;
            let t = engine
                .trigger(
                    &applied.name,
                    params,
                    TriggerOptions {
                        trigger: "manual".into(),
                        idempotency_key: None,
                    },
                )
                .await?;
            if !json {
                println!(
                    "run {} of {} v{} ({} tasks)",
                    t.run.id, applied.name, applied.version, t.run.tasks_total
                );
            }
            return execute(&engine, t.run.id, &mut completions, json).await;
        }
    }
    Ok(0)
}

/// The engine of a CLI process: local processes and every other executor,
/// or the dry-run executor for all tasks.
fn local_engine(
    store: Store,
    log_dir: &Path,
    completions: mpsc::UnboundedSender<Completion>,
    dry_run: bool,
) -> Engine {
    let executors = if dry_run {
        Executors::all(Arc::new(MockExecutor))
    } else {
        ork_executors::standard(Arc::new(ProcessExecutor::new(log_dir, completions)))
    };
    Engine::new(store, executors, EngineConfig::default())
}

/// Drives a run here with live progress and prints its summary.
async fn execute(
    engine: &Engine,
    run_id: Uuid,
    completions: &mut mpsc::UnboundedReceiver<Completion>,
    json: bool,
) -> Result<i32> {
    let progress = (!json).then(|| Progress::start(engine.store().clone(), run_id));
    let status = engine::drive(engine, run_id, completions).await?;
    if let Some(p) = progress {
        p.finish().await;
    }
    let run = engine.store().get_run(run_id).await?;
    let tasks = engine.store().run_tasks(run_id).await?;
    if json {
        output::json(&serde_json::json!({ "run": run, "tasks": tasks }));
    } else {
        output::summary(&run, &tasks);
    }
    Ok(if status == RunStatus::Success { 0 } else { 1 })
}

/// Loads workflows from a file or a directory, with absolute base dirs so
/// that the stored spec does not depend on where `ork` was run.
fn load(path: &Path) -> Result<Vec<WorkflowSpec>> {
    let mut specs = if path.is_dir() {
        spec::load_dir(path)?
    } else {
        vec![spec::load_file(path)?]
    };
    for s in &mut specs {
        if let Some(dir) = &s.base_dir {
            let dir = if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir.clone()
            };
            s.base_dir = Some(
                std::fs::canonicalize(&dir)
                    .with_context(|| format!("cannot resolve {}", dir.display()))?,
            );
        }
    }
    Ok(specs)
}

/// `key=value` pairs as a JSON object; values that parse as JSON keep their type.
fn parse_params(pairs: &[String]) -> Result<serde_json::Value> {
    let mut map = serde_json::Map::new();
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--param {pair:?} is not KEY=VALUE"))?;
        let value =
            serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.to_owned()));
        map.insert(k.to_owned(), value);
    }
    Ok(serde_json::Value::Object(map))
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}
