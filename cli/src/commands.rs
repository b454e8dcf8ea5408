use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use ork_api::config::{redact, Config};
use ork_core::engine::{self, Engine, EngineConfig, TriggerOptions};
use ork_core::executor::{Completion, Executors, MockExecutor};
use ork_core::model::{RunStatus, Task, TaskStatus};
use ork_core::spec::{self, CloudRunTarget, ExecutorKind, TaskSpec, WorkflowSpec};
use ork_core::store::Store;
use ork_executors::ProcessExecutor;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::output;
use crate::progress::{self, Progress};
use crate::{Cli, Command, DbtCommand, Global};

/// Runs one command; returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    let Cli {
        global: Global { config, json },
        command,
    } = cli;
    match command {
        Command::Worker { program, args } => {
            let settings = ork_worker::Settings {
                report_timeout: config.report_timeout,
            };
            return ork_worker::run(&program, &args, &settings)
                .await
                .map_err(anyhow::Error::msg);
        }
        Command::Serve { addr } => {
            return crate::serve::serve(&config, addr, config.poll_interval).await
        }
        Command::Dbt {
            command: DbtCommand::Import(args),
        } if !args.apply => return dbt_import(None, &args).await,
        _ => {}
    }
    let dry_run = matches!(command, Command::Run { dry_run: true, .. });
    // A workflow file is read and checked before the store opens: a bad
    // one is refused without leaving a database behind.
    let loaded = match &command {
        Command::Apply { path } => load(path).await?,
        Command::Run {
            file: Some(file),
            resume: None,
            ..
        } => load(file).await?,
        _ => Vec::new(),
    };
    let ctx = Ctx::open(&config, json, dry_run).await?;
    match command {
        Command::Init => init(&config),
        Command::Apply { path } => apply(&ctx, &loaded, &path).await,
        Command::CreateWorkflow {
            name,
            job_name,
            project,
            region,
            task_count,
            executor,
            description,
        } => {
            let job = OneJob {
                name,
                job_name,
                project,
                region,
                task_count,
                executor,
                description,
            };
            create_workflow(&ctx, job).await
        }
        Command::ListWorkflows => list_workflows(&ctx).await,
        Command::Trigger {
            workflow,
            like,
            params,
            idempotency_key,
            wait,
            progress,
        } => {
            let wait = wait.then_some(progress);
            trigger(ctx, workflow, like, &params, idempotency_key, wait).await
        }
        Command::Status {
            run_id,
            workflow,
            limit,
        } => status(&ctx, run_id, workflow.as_deref(), limit).await,
        Command::Tasks { run_id } => tasks(&ctx, run_id).await,
        Command::Events { run_id } => events(&ctx, run_id).await,
        Command::Logs {
            run_id,
            task,
            attempt,
        } => logs(&ctx, &config.log_dir(), run_id, &task, attempt).await,
        Command::Cancel {
            run_id: Some(run_id),
            ..
        } => cancel(&ctx, run_id).await,
        Command::Cancel { bulk, .. } => cancel_bulk(&ctx, &bulk).await,
        Command::Retry {
            run_id: Some(run_id),
            task,
            wait,
            progress,
            ..
        } => retry(ctx, run_id, task.as_deref(), wait.then_some(progress)).await,
        Command::Retry { bulk, .. } => retry_bulk(&ctx, &bulk).await,
        Command::Pause { workflow } => pause(&ctx, &workflow, true).await,
        Command::Unpause { workflow } => pause(&ctx, &workflow, false).await,
        Command::DeleteVersion { workflow, version } => {
            ctx.engine.delete_version(&workflow, version).await?;
            let done =
                serde_json::json!({ "workflow": workflow, "version": version, "deleted": true });
            ctx.print(&done, |_| outln!("deleted {workflow} v{version}"));
            Ok(0)
        }
        Command::Gc { older_than } => {
            let done = ctx.engine.gc(older_than, Some(&ctx.log_dir)).await?;
            ctx.print(&done, output::gc);
            Ok(if done.errors.is_empty() { 0 } else { 1 })
        }
        Command::Backfill {
            workflow,
            from,
            to,
            max_parallel,
            rerun,
        } => {
            let req = engine::BackfillRequest {
                from: spec::parse_bound(&from, false).map_err(|e| anyhow!("--from: {e}"))?,
                until: spec::parse_bound(&to, true).map_err(|e| anyhow!("--to: {e}"))?,
                max_parallel,
                rerun,
            };
            let b = ctx.engine.backfill(&workflow, req).await?;
            ctx.print(&b, output::backfill);
            Ok(0)
        }
        Command::Dbt {
            command: DbtCommand::Import(args),
        } => dbt_import(Some(&ctx), &args).await,
        Command::Run {
            resume: Some(run_id),
            progress,
            ..
        } => resume(ctx, run_id, progress).await,
        Command::Run {
            file: Some(file),
            params,
            progress,
            ..
        } => run_file(ctx, &loaded, &file, &params, progress).await,
        Command::Run { .. } => bail!("`ork run` takes a workflow file or --resume RUN"),
        Command::Worker { .. } | Command::Serve { .. } => unreachable!("handled above"),
    }
}

/// What every command but `serve` and `worker` works with: the store, an
/// engine over it with local executors, and where local completions arrive.
struct Ctx {
    store: Store,
    log_dir: PathBuf,
    engine: Engine,
    /// The engine's local processes, stopped before `ork run` exits.
    processes: Arc<ProcessExecutor>,
    completions: mpsc::UnboundedReceiver<Completion>,
    json: bool,
}

impl Ctx {
    async fn open(config: &Config, json: bool, dry_run: bool) -> Result<Ctx> {
        // One connection for reads: a command's reads are few and short,
        // and `ork run`'s threads share one CPU; each more connection
        // parsed the schema as it opened (a one-task `ork run`: 9.0 → 8.1
        // ms; a chain of 40 noop tasks: 19.6 → 18.3 ms).
        let store = config.connect(1).await?;
        let (tx, completions) = mpsc::unbounded_channel::<Completion>();
        let payloads = config.payloads()?;
        let processes = Arc::new(
            ProcessExecutor::new(config.log_dir(), tx)
                .with_payload_limits(payloads.inline_limit, payloads.max_bytes),
        );
        let engine = local_engine(store.clone(), config, payloads, processes.clone(), dry_run);
        Ok(Ctx {
            store,
            log_dir: config.log_dir(),
            engine,
            processes,
            completions,
            json,
        })
    }

    /// Prints `value` as JSON with `--json`, else as `human` prints it.
    fn print<T: serde::Serialize>(&self, value: &T, human: impl FnOnce(&T)) {
        if self.json {
            output::json(value);
        } else {
            human(value);
        }
    }
}

/// Opening the store (before this) made or migrated the schema.
fn init(config: &Config) -> Result<i32> {
    outln!("database ready at {}", redact(&config.database_url()));
    Ok(0)
}

/// `ork apply`: `specs`, read from `path` ([`load`]), stored.
async fn apply(ctx: &Ctx, specs: &[WorkflowSpec], path: &Path) -> Result<i32> {
    let mut applied = Vec::new();
    for spec in specs {
        applied.push(ctx.engine.apply(spec, Some(source_of(path))).await?);
    }
    ctx.print(&applied, |applied| {
        for a in applied {
            let what = if a.created {
                "stored as"
            } else {
                "unchanged at"
            };
            outln!("{} {what} version {}", a.name, a.version);
        }
    });
    Ok(0)
}

/// The seeds' one-job workflow, from `ork create-workflow`'s flags.
struct OneJob {
    name: String,
    job_name: String,
    project: Option<String>,
    region: String,
    task_count: u32,
    executor: String,
    description: Option<String>,
}

async fn create_workflow(ctx: &Ctx, job: OneJob) -> Result<i32> {
    let kind: ExecutorKind = job.executor.parse().map_err(|e: String| anyhow!(e))?;
    // A Cloud Run Job, or a local program.
    let task = match kind {
        ExecutorKind::Cloudrun => TaskSpec {
            executor: kind,
            cloudrun: Some(CloudRunTarget {
                job: job.job_name.clone(),
                project: job
                    .project
                    .ok_or_else(|| anyhow!("--executor cloudrun needs --project"))?,
                region: job.region,
            }),
            task_count: job.task_count,
            ..TaskSpec::default()
        },
        ExecutorKind::Process | ExecutorKind::Noop | ExecutorKind::Mock => TaskSpec {
            executor: kind,
            command: Some(job.job_name.clone().into()),
            task_count: job.task_count,
            ..TaskSpec::default()
        },
        other => bail!("create-workflow makes cloudrun, process, noop or mock workflows, not {}; write a YAML file for {0}", other.as_str()),
    };
    let spec = WorkflowSpec {
        name: job.name,
        description: job.description,
        tasks: BTreeMap::from([(job.job_name, task)]),
        base_dir: None,
        schedule: None,
        timezone: None,
        catchup: false,
        params: BTreeMap::new(),
        concurrency: None,
        rate_limits: BTreeMap::new(),
    };
    let a = ctx.engine.apply(&spec, None).await?;
    ctx.print(&a, |a| outln!("{} stored as version {}", a.name, a.version));
    Ok(0)
}

async fn list_workflows(ctx: &Ctx) -> Result<i32> {
    let workflows = ctx.store.list_workflows().await?;
    ctx.print(&workflows, |w| output::workflows(w));
    Ok(0)
}

async fn trigger(
    mut ctx: Ctx,
    workflow: Option<String>,
    like: Option<Uuid>,
    params: &[String],
    idempotency_key: Option<String>,
    wait: Option<progress::Options>,
) -> Result<i32> {
    let mut params = parse_params(params)?;
    let (workflow, trigger) = match like {
        // A replay: the run's workflow and params, `--param`s on top.
        Some(id) => {
            let run = ctx.store.get_run(id).await?;
            let mut merged = run.params;
            if let (Some(m), Some(extra)) = (merged.as_object_mut(), params.as_object()) {
                m.extend(extra.clone());
            }
            params = merged;
            (run.workflow, "replay")
        }
        None => (workflow.context("a workflow name or --like RUN")?, "manual"),
    };
    let options = TriggerOptions {
        trigger: trigger.into(),
        idempotency_key,
    };
    let t = ctx.engine.trigger(&workflow, params, options).await?;
    if let Some(progress) = wait {
        return execute(&mut ctx, t.run.id, progress).await;
    }
    ctx.print(&t.run, |run| {
        let note = if t.created {
            ""
        } else {
            " (existing run for this idempotency key)"
        };
        outln!("{}{note}", run.id);
    });
    Ok(0)
}

async fn status(
    ctx: &Ctx,
    run_id: Option<Uuid>,
    workflow: Option<&str>,
    limit: i64,
) -> Result<i32> {
    match run_id {
        Some(id) => {
            let run = ctx.store.get_run(id).await?;
            let tasks = ctx.store.run_tasks(id).await?;
            let waiting = ctx.store.run_waiting_groups(id).await?;
            let cost = ctx.engine.run_cost(id).await?;
            let shown = WithCost {
                item: &run,
                cost: &cost,
            };
            ctx.print(&shown, |_| {
                output::runs(std::slice::from_ref(&run));
                output::cost(&cost);
                output::tasks(&tasks, &waiting, Some(&cost));
            });
        }
        None => {
            let runs = ctx.store.list_runs(workflow, limit).await?;
            ctx.print(&runs, |runs| output::runs(runs));
        }
    }
    Ok(0)
}

async fn tasks(ctx: &Ctx, run_id: Uuid) -> Result<i32> {
    ctx.store.get_run(run_id).await?;
    let tasks = ctx.store.run_tasks(run_id).await?;
    let waiting = ctx.store.run_waiting_groups(run_id).await?;
    let cost = ctx.engine.run_cost(run_id).await?;
    // JSON: each instance with its `cost_usd` and `seconds` run.
    let shown: Vec<serde_json::Value> = tasks
        .iter()
        .zip(&cost.tasks)
        .map(|(t, c)| {
            let mut v = serde_json::to_value(t).unwrap_or_default();
            v["cost_usd"] = serde_json::json!(c.usd);
            v["seconds"] = serde_json::json!(c.seconds);
            v
        })
        .collect();
    ctx.print(&shown, |_| output::tasks(&tasks, &waiting, Some(&cost)));
    Ok(0)
}

/// A run (or anything) with its cost, as `--json` prints it: the item's
/// fields and `cost`.
#[derive(serde::Serialize)]
struct WithCost<'a, T: serde::Serialize> {
    #[serde(flatten)]
    item: &'a T,
    cost: &'a ork_core::cost::RunCost,
}

async fn pause(ctx: &Ctx, workflow: &str, paused: bool) -> Result<i32> {
    ctx.engine.set_paused(workflow, paused).await?;
    let done = serde_json::json!({ "workflow": workflow, "paused": paused });
    ctx.print(&done, |_| {
        if paused {
            outln!("{workflow}: paused (its schedule does not fire; manual triggers still run)");
        } else {
            outln!("{workflow}: unpaused (its schedule fires from now on)");
        }
    });
    Ok(0)
}

async fn events(ctx: &Ctx, run_id: Uuid) -> Result<i32> {
    let events = ctx.store.run_events(run_id).await?;
    let tasks = ctx.store.run_tasks(run_id).await?;
    ctx.print(&events, |e| output::events(e, &tasks));
    Ok(0)
}

async fn logs(
    ctx: &Ctx,
    log_dir: &Path,
    run_id: Uuid,
    task: &str,
    attempt: Option<i64>,
) -> Result<i32> {
    let run = ctx.store.get_run(run_id).await?;
    let tasks = ctx.store.run_tasks(run_id).await?;
    let chosen: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.label() == task || t.name == task)
        .collect();
    if chosen.is_empty() {
        bail!("run {run_id} has no task {task:?}");
    }
    let many = chosen.len() > 1;
    let mut missing = 0;
    for t in chosen {
        let n = attempt.unwrap_or(t.attempt);
        let a = ork_core::model::AttemptRef {
            attempt: n,
            ..t.attempt_ref(&run.workflow, run.version)
        };
        let path = ProcessExecutor::log_path(log_dir, &a);
        if many {
            outln!("==> {} (attempt {n}) <==", t.label());
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => out!("{text}"),
            Err(e) => {
                missing += 1;
                eprintln!(
                    "no log for {} attempt {n}: looked for {} ({e}); logs are local to the machine that ran the attempt (--log-dir / ORK_LOG_DIR)",
                    t.label(),
                    path.display()
                );
            }
        }
    }
    Ok(if missing > 0 { 1 } else { 0 })
}

async fn cancel(ctx: &Ctx, run_id: Uuid) -> Result<i32> {
    if ctx.engine.cancel(run_id).await? {
        outln!("run {run_id} cancelled");
    } else {
        let run = ctx.store.get_run(run_id).await?;
        outln!("run {run_id} is already {}", run.status);
    }
    Ok(0)
}

/// `ork retry RUN`: reopens the run; `--wait` drives it here, else an
/// `ork serve` (or the cloud's sweep) dispatches it.
async fn retry(
    mut ctx: Ctx,
    run_id: Uuid,
    task: Option<&str>,
    wait: Option<progress::Options>,
) -> Result<i32> {
    match ctx.engine.retry(run_id, task).await? {
        Some(n) => {
            if !ctx.json {
                outln!("run {run_id} reopened: {}", output::plural(n, "task"));
            }
            if let Some(progress) = wait {
                return execute(&mut ctx, run_id, progress).await;
            }
            let run = ctx.store.get_run(run_id).await?;
            ctx.print(&run, |_| {});
            Ok(0)
        }
        None => {
            let run = ctx.store.get_run(run_id).await?;
            bail!(
                "run {run_id} is {}: only a failed or cancelled run can be retried",
                run.status
            )
        }
    }
}

/// Most runs one bulk `cancel` or `retry` goes through.
const BULK_LIMIT: i64 = 10_000;

/// The runs `--workflow`, `--status` and `--since` name, of the statuses
/// the command acts on (`default` when no `--status`).
async fn bulk_runs(
    ctx: &Ctx,
    bulk: &crate::Bulk,
    allowed: &[RunStatus],
    default: &[RunStatus],
    verb: &str,
) -> Result<Vec<ork_core::model::Run>> {
    let workflow = bulk.workflow.as_deref().context("--workflow")?;
    let statuses = match &bulk.status {
        Some(s) => {
            let s: RunStatus = s.parse().map_err(|e| anyhow!("--status: {e}"))?;
            if !allowed.contains(&s) {
                bail!("--status {s}: only {verb} runs that are {}", join(allowed));
            }
            vec![s]
        }
        None => default.to_vec(),
    };
    let since = match bulk.since {
        // Further back than the epoch: every run.
        Some(d) => chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
            .unwrap_or(chrono::DateTime::<chrono::Utc>::UNIX_EPOCH),
        None => chrono::DateTime::<chrono::Utc>::UNIX_EPOCH,
    };
    Ok(ctx
        .store
        .runs_for_bulk(workflow, &statuses, since, BULK_LIMIT)
        .await?)
}

fn join(statuses: &[RunStatus]) -> String {
    statuses
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// `ork cancel --workflow W`: cancels each open run of W, one transaction
/// each (a run finishing meanwhile is left as it ended).
async fn cancel_bulk(ctx: &Ctx, bulk: &crate::Bulk) -> Result<i32> {
    let open = [RunStatus::Pending, RunStatus::Running];
    let runs = bulk_runs(ctx, bulk, &open, &open, "cancel").await?;
    let mut cancelled = Vec::new();
    for run in &runs {
        if ctx.engine.cancel(run.id).await? {
            cancelled.push(run.id);
        }
    }
    report_bulk(ctx, "cancelled", &cancelled, runs.len())
}

/// `ork retry --workflow W`: retries each failed (or `--status`) run of W.
/// A run another caller reopened meanwhile is left to it.
async fn retry_bulk(ctx: &Ctx, bulk: &crate::Bulk) -> Result<i32> {
    let runs = bulk_runs(
        ctx,
        bulk,
        &[RunStatus::Failed, RunStatus::Cancelled],
        &[RunStatus::Failed],
        "retry",
    )
    .await?;
    let mut retried = Vec::new();
    for run in &runs {
        if ctx.engine.retry(run.id, None).await?.is_some() {
            retried.push(run.id);
        }
    }
    report_bulk(ctx, "retried", &retried, runs.len())
}

fn report_bulk(ctx: &Ctx, verb: &str, done: &[Uuid], matched: usize) -> Result<i32> {
    let summary = serde_json::json!({ verb: done, "matched": matched });
    ctx.print(&summary, |_| {
        for id in done {
            outln!("{id}");
        }
        outln!(
            "{} {verb} (of {matched} matching)",
            output::plural(done.len() as i64, "run")
        );
    });
    Ok(0)
}

/// `ork run`: apply one workflow file (read as `specs`, [`load`]),
/// trigger it, and execute it here.
async fn run_file(
    mut ctx: Ctx,
    specs: &[WorkflowSpec],
    file: &Path,
    params: &[String],
    progress: progress::Options,
) -> Result<i32> {
    let [spec] = specs else {
        bail!(
            "{} holds {} workflows; `ork run` takes a file with one",
            file.display(),
            specs.len()
        );
    };
    let applied = ctx.engine.apply(spec, Some(source_of(file))).await?;
    let options = TriggerOptions {
        trigger: "manual".into(),
        idempotency_key: None,
    };
    let t = ctx
        .engine
        .trigger(&applied.name, parse_params(params)?, options)
        .await?;
    if !ctx.json {
        outln!(
            "run {} of {} v{} ({})",
            t.run.id,
            applied.name,
            applied.version,
            output::plural(t.run.tasks_total, "task")
        );
    }
    execute(&mut ctx, t.run.id, progress).await
}

/// The engine of a CLI process: local processes and every other executor,
/// or the dry-run executor for all tasks.
fn local_engine(
    store: Store,
    config: &Config,
    payloads: ork_core::payload::Payloads,
    processes: Arc<ProcessExecutor>,
    dry_run: bool,
) -> Engine {
    let executors = if dry_run {
        Executors::all(Arc::new(MockExecutor))
    } else {
        ork_executors::standard(processes)
    };
    let engine_config = EngineConfig {
        heartbeat_timeout: config.heartbeat_timeout,
        payloads,
        max_foreach_items: config.max_foreach_items,
        prices: config.prices(),
        claim_batch: config.batch_size,
        claim_lanes: config.claim_lanes.into(),
        ..EngineConfig::default()
    };
    Engine::new(store, executors, engine_config)
}

/// `ork run --resume RUN`: re-attach to a run whose `ork run` died, and
/// drive it to its end as `ork run` would have. Its attempts in flight
/// belong to no live process. Local ones started on this machine fail at
/// once (retrying per policy), their processes stopped if they still run;
/// the others fail when their leases run out, which nothing renews.
async fn resume(mut ctx: Ctx, run_id: Uuid, options: progress::Options) -> Result<i32> {
    let run = ctx.store.get_run(run_id).await?;
    if run.status.is_final() {
        outln!("run {run_id} is already {}", run.status);
        return Ok(if run.status == RunStatus::Success {
            0
        } else {
            1
        });
    }
    let reaped = ctx.engine.reap_ended(run_id).await?;
    if !ctx.json {
        let tasks = ctx.store.run_tasks(run_id).await?;
        let in_flight: Vec<&Task> = tasks
            .iter()
            .filter(|t| matches!(t.status, TaskStatus::Dispatched | TaskStatus::Running))
            .collect();
        outln!(
            "resuming run {run_id} of {} v{} ({} tasks)",
            run.workflow,
            run.version,
            run.tasks_total
        );
        if reaped > 0 {
            outln!(
                "{reaped} attempt(s) of the dead `ork run` failed: their process had ended or was stopped"
            );
        }
        if let Some(until) = in_flight.iter().filter_map(|t| t.lease_expires_at).max() {
            outln!(
                "{} attempt(s) in flight from before: failed and retried per policy when their leases run out (by {until})",
                in_flight.len()
            );
        }
    }
    execute(&mut ctx, run_id, options).await
}

/// Drives a run here with live progress and prints its summary. No task
/// outlives it: on SIGINT (Ctrl-C) or SIGTERM the run is cancelled, and
/// whatever still runs (a run cancelled by `ork cancel` elsewhere) is
/// stopped with its process tree before it returns.
async fn execute(ctx: &mut Ctx, run_id: Uuid, options: progress::Options) -> Result<i32> {
    let log_dir = ctx.log_dir.clone();
    let run = ctx.store.get_run(run_id).await?;
    let progress =
        (!ctx.json).then(|| Progress::start(ctx.store.clone(), run, log_dir.clone(), options));
    let driven = tokio::select! {
        status = engine::drive(&ctx.engine, run_id, &mut ctx.completions) => Ok(status),
        signal = interrupted() => Err(signal?),
    };
    let status = match driven {
        Ok(status) => status,
        Err((name, code)) => {
            let cancelled = ctx.engine.cancel(run_id).await;
            ctx.processes.stop_all().await;
            if let Some(p) = progress {
                p.finish().await;
            }
            cancelled?;
            let run = ctx.store.get_run(run_id).await?;
            if ctx.json {
                output::json(&serde_json::json!({ "run": run, "signal": name }));
            } else {
                outln!("\n{name}: run {run_id} {}", run.status);
            }
            return Ok(code);
        }
    };
    ctx.processes.stop_all().await;
    let status = status?;
    if let Some(p) = progress {
        p.finish().await;
    }
    let run = ctx.store.get_run(run_id).await?;
    if ctx.json {
        let tasks = ctx.store.run_tasks(run_id).await?;
        output::json(&serde_json::json!({ "run": run, "tasks": tasks }));
    } else if options.verbose || run.tasks_total <= progress::LINES_UP_TO {
        let tasks = ctx.store.run_tasks(run_id).await?;
        output::summary(&run, &tasks, &log_dir);
    } else {
        // A row per task rather than per instance, and the first failures.
        let groups = ctx.store.run_task_groups(run_id).await?;
        let (failed, failed_total) = ctx
            .store
            .run_tasks_page(run_id, None, Some("failed".into()), 10, 0)
            .await?;
        output::group_summary(&run, &groups, &failed, failed_total, &log_dir);
    }
    Ok(if status == RunStatus::Success { 0 } else { 1 })
}

/// Resolves on SIGINT or SIGTERM with the signal's name and the exit code
/// that reports it (128 + its number).
async fn interrupted() -> Result<(&'static str, i32)> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(tokio::select! {
        _ = int.recv() => ("interrupted", 130),
        _ = term.recv() => ("terminated", 143),
    })
}

/// Loads workflows from a file or a directory, with absolute base dirs so
/// that the stored spec does not depend on where `ork` was run, and their
/// tasks' type schemas resolved and checked along the edges.
async fn load(path: &Path) -> Result<Vec<WorkflowSpec>> {
    let mut specs = if path.is_dir() {
        spec::load_dir_files(path)?
    } else {
        vec![(path.to_path_buf(), spec::load_file(path)?)]
    };
    for (file, s) in &mut specs {
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
        let src = std::fs::read_to_string(&*file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        crate::schemas::resolve_and_check(s, file, &src).await?;
    }
    Ok(specs.into_iter().map(|(_, s)| s).collect())
}

/// `ork dbt import`: the workflow of a dbt project, printed, written and/or
/// stored (`--apply`, with the store of `ctx`).
async fn dbt_import(ctx: Option<&Ctx>, args: &crate::dbt::ImportArgs) -> Result<i32> {
    let spec = crate::dbt::import(args)?;
    let yaml = format!(
        "# Generated by `ork dbt import`: re-import after the dbt project changes.\n{}",
        serde_norway::to_string(&spec)?
    );
    match &args.output {
        Some(path) => std::fs::write(path, &yaml)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None if ctx.is_none() => out!("{yaml}"),
        None => {}
    }
    if let Some(ctx) = ctx {
        let source = args.output.as_ref().map(|p| p.display().to_string());
        let a = ctx.engine.apply(&spec, source).await?;
        let what = if a.created {
            "stored as"
        } else {
            "unchanged at"
        };
        ctx.print(&a, |a| outln!("{} {what} version {}", a.name, a.version));
    } else if let Some(path) = &args.output {
        eprintln!(
            "{}: workflow {} ({})",
            path.display(),
            spec.name,
            output::plural(spec.tasks.len() as i64, "task")
        );
    }
    Ok(0)
}

/// What is stored with a version as its source: a file's YAML text, headed
/// by a comment naming the file (the web UI shows it as written), or a
/// directory's path.
fn source_of(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(yaml) if path.is_file() => format!("# {}\n{yaml}", path.display()),
        _ => path.display().to_string(),
    }
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
