//! `ork`: the command line. Parses arguments and calls the engine; all the
//! work is in `ork-core` and `ork-api`.

/// `println!` that a closed stdout cannot stop. `ork run … | head -3`
/// must still finish its run when its reader is gone, where `println!`
/// panics on the broken pipe. (The listing commands restore SIGPIPE's
/// default instead, and end quietly at their first write; see
/// `quiet_broken_pipe`.)
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `print!` on the same terms as `outln!`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod commands;
mod dbt;
mod output;
mod progress;
mod schemas;
mod serve;

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use uuid::Uuid;

/// Ork: scale-to-zero workflow orchestration.
#[derive(Parser)]
#[command(name = "ork", version, about)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// The options every subcommand takes, before or after its name.
#[derive(clap::Args)]
struct Global {
    #[command(flatten)]
    config: ork_api::config::Config,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
}

impl Cli {
    /// [`Parser::parse`], with only the subcommand named in the arguments
    /// built.
    ///
    /// Why: building a command, clap copies each global option (the 41 of
    /// [`Global`]) into every subcommand, 23 of them. With only the named
    /// one, parsing `ork status` took 0.57–0.86 ms instead of 1.0–1.5 ms
    /// (a one-task `ork run` takes 7 ms). Help, version and every error go
    /// through the whole command, so what they print is unchanged;
    /// `tests::parses_as_the_whole_command` checks that the matches are the
    /// same.
    fn parse_fast() -> Cli {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let whole = Cli::command();
        let matches = Self::one_subcommand(&whole, &args)
            .and_then(|command| command.try_get_matches_from(&args).ok())
            .unwrap_or_else(|| whole.get_matches_from(&args));
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    }

    /// The root's options and settings with only the subcommand `args`
    /// name, or None where the whole command should answer (help, version,
    /// no or an unknown subcommand, an unknown root option).
    fn one_subcommand(whole: &clap::Command, args: &[std::ffi::OsString]) -> Option<clap::Command> {
        if args.iter().any(|a| a == "-h" || a == "--help") {
            return None;
        }
        let mut rest = args.iter().skip(1).map(|a| a.to_str());
        let name = loop {
            let arg = rest.next()??;
            // `-V`, `--version` and `--` are none of the root's options
            // (clap adds the first two when it builds the command).
            let Some(flag) = arg.strip_prefix("--") else {
                if arg.starts_with('-') {
                    return None;
                }
                break arg;
            };
            // A root option's value may be the next argument.
            if !flag.contains('=') {
                let option = whole.get_arguments().find(|a| a.get_long() == Some(flag))?;
                if option.get_action().takes_values() {
                    rest.next()?;
                }
            }
        };
        let sub = whole.find_subcommand(name)?.clone();
        // As `#[command(name = "ork", version)]` has it.
        let mut root = clap::Command::new("ork")
            .version(env!("CARGO_PKG_VERSION"))
            .subcommand_required(true)
            .arg_required_else_help(true);
        if let Some(about) = whole.get_about() {
            root = root.about(about.clone());
        }
        Some(Global::augment_args(root).subcommand(sub))
    }
}

/// The runs a bulk `cancel` or `retry` works through.
#[derive(clap::Args)]
pub struct Bulk {
    /// Every run of this workflow (in `--status`, created within `--since`).
    #[arg(long, conflicts_with = "run_id")]
    workflow: Option<String>,
    /// The runs' status (cancel: `pending` and `running` by default; retry: `failed`).
    #[arg(long, requires = "workflow", value_parser = ["pending", "running", "failed", "cancelled"])]
    status: Option<String>,
    /// Only runs created this recently (`1h`, `2d`).
    #[arg(long, requires = "workflow", value_parser = humantime::parse_duration)]
    since: Option<std::time::Duration>,
}

#[derive(Subcommand)]
enum Command {
    /// Create the database (or bring its schema up to date).
    Init,
    /// Validate and store workflows from a YAML file or a directory of them.
    Apply { path: PathBuf },
    /// Store a one-task workflow that runs a single job (`task_count` instances).
    CreateWorkflow {
        #[arg(long)]
        name: String,
        /// The job to run: the program for `process`.
        #[arg(long)]
        job_name: String,
        /// Cloud project of the job (cloud executors).
        #[arg(long)]
        project: Option<String>,
        #[arg(long, default_value = "us-central1")]
        region: String,
        #[arg(long, default_value_t = 1)]
        task_count: u32,
        #[arg(long, default_value = "process")]
        executor: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List workflows and their latest versions.
    ListWorkflows,
    /// Start a run of a workflow.
    Trigger {
        #[arg(required_unless_present = "like")]
        workflow: Option<String>,
        /// A new run of the workflow of RUN, with its params (`--param`
        /// entries override them); its trigger is `replay`.
        #[arg(long, value_name = "RUN", conflicts_with = "workflow")]
        like: Option<Uuid>,
        /// A run parameter, `key=value` (the value is parsed as JSON when it can be).
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// A second trigger with the same key returns the first run.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Execute the run in this process and wait for its end.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        progress: progress::Options,
    },
    /// Show recent runs, or one run.
    Status {
        run_id: Option<Uuid>,
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Show the task instances of a run.
    Tasks { run_id: Uuid },
    /// Show the event log of a run.
    Events { run_id: Uuid },
    /// Print the log of a task's attempt (`name` or `name[index]`).
    Logs {
        run_id: Uuid,
        task: String,
        /// Which attempt (default: the latest).
        #[arg(long)]
        attempt: Option<i64>,
    },
    /// Cancel a run: its unfinished tasks are cancelled, running ones
    /// stopped. `--workflow W` cancels each open run of W instead.
    Cancel {
        #[arg(required_unless_present = "workflow")]
        run_id: Option<Uuid>,
        #[command(flatten)]
        bulk: Bulk,
    },
    /// Run a failed or cancelled run's failed, cancelled and skipped tasks
    /// again, in place, with new attempts (successes and their outputs are
    /// kept; `--task T`: T and its descendants only). `--workflow W`
    /// retries each failed run of W instead.
    Retry {
        #[arg(required_unless_present = "workflow")]
        run_id: Option<Uuid>,
        #[arg(long, conflicts_with = "workflow")]
        task: Option<String>,
        #[command(flatten)]
        bulk: Bulk,
        /// Execute the run in this process and wait for its end.
        #[arg(long, conflicts_with = "workflow")]
        wait: bool,
        #[command(flatten)]
        progress: progress::Options,
    },
    /// Stop a workflow's schedule from firing (manual triggers still run).
    Pause { workflow: String },
    /// Resume a paused workflow's schedule from now.
    Unpause { workflow: String },
    /// Delete a version of a workflow that has no runs (not the latest).
    DeleteVersion { workflow: String, version: i64 },
    /// Delete the runs that finished (succeeded, failed or were cancelled)
    /// longer ago than --older-than, with their tasks, events, payloads and
    /// local logs (docs/operations.md). Open runs are never deleted.
    Gc {
        /// Seconds or a duration (`30d`, `12h`).
        #[arg(long, value_parser = ork_core::spec::parse_duration)]
        older_than: std::time::Duration,
    },
    /// One run per cron slot of a workflow's schedule in a date range,
    /// trigger `backfill`; executed by `ork serve` or the cloud handlers.
    Backfill {
        workflow: String,
        /// The first day (`2026-11-01`, UTC) or time (RFC 3339) covered.
        #[arg(long)]
        from: String,
        /// The last day covered (`2026-11-07` includes the 7th), or an
        /// RFC 3339 time (excluded).
        #[arg(long)]
        to: String,
        /// Most backfill runs of the workflow open at once; the others
        /// start as those end [default: all at once].
        #[arg(long)]
        max_parallel: Option<u32>,
        /// Run again slots that already ran (by schedule or backfill).
        #[arg(long)]
        rerun: bool,
    },
    /// Serve the three handlers over HTTP (POST /trigger, /advance,
    /// /complete, /heartbeat), the web UI, and a ticker that sweeps.
    Serve {
        #[arg(long, env = "ORK_ADDR", default_value = "127.0.0.1:4000")]
        addr: std::net::SocketAddr,
    },
    /// dbt projects as workflows (docs/dbt.md).
    Dbt {
        #[command(subcommand)]
        command: DbtCommand,
    },
    /// Run a task program under the worker contract: report its end to
    /// $ORK_CALLBACK_URL with $ORK_CALLBACK_TOKEN (a container entrypoint).
    Worker {
        program: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Apply a workflow file, trigger it and execute it here, showing progress.
    /// Exits 1 if the run fails. `--resume RUN` instead re-attaches to a run
    /// left unfinished (its `ork run` was killed): attempts in flight from
    /// before are failed and retried per policy, at once for local processes
    /// started on this machine (stopped if they still run), else when their
    /// leases run out (`ORK_HEARTBEAT_TIMEOUT`), and the run is driven to
    /// its end here.
    Run {
        #[arg(required_unless_present = "resume")]
        file: Option<PathBuf>,
        #[arg(long = "param", short = 'p', value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Dispatch nothing: record what each task would run (as its
        /// output) and succeed.
        #[arg(long)]
        dry_run: bool,
        /// Drive this unfinished run to its end instead of starting one.
        #[arg(long, value_name = "RUN", conflicts_with_all = ["file", "params", "dry_run"])]
        resume: Option<Uuid>,
        #[command(flatten)]
        progress: progress::Options,
    },
}

#[derive(Subcommand)]
enum DbtCommand {
    /// Make a workflow of a dbt project: one task per model, seed and
    /// snapshot, dependencies from its manifest. Prints the YAML (or writes
    /// it with -o); --apply stores it.
    Import(dbt::ImportArgs),
}

/// `ork status | head`: a closed stdout ends a listing quietly, as it does
/// for other Unix tools, instead of panicking in `println!`. (Not for the
/// commands that drive runs or serve: those must outlive their reader.)
fn quiet_broken_pipe() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of a signal has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// One glibc malloc arena for `ork run`, whose threads share one CPU:
/// with an arena per thread (the default), memory one thread frees is not
/// reused by another, and a 40-task run's peak RSS was 0.9 MiB higher
/// (12.2–12.4 against 11.3–11.5 MiB). `MALLOC_ARENA_MAX`, when set, wins.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: called before any other thread exists; mallopt only
        // changes a tunable of the allocator.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

/// The most blocking threads of `ork run`, which start a wide batch's
/// processes on them (each holds its thread until its child has exec'd).
/// Tokio would start up to 512, one per spawn waiting, each one more thread
/// to create and to switch to. A fan-out of 202 `sh` tasks on the 2-core
/// bench machine, medians of 21 beside bash's: 1.22 × bash with the
/// default, 1.15 with 6 threads, 1.10 with 8, 1.16 with 10, 1.19 with 16.
const SPAWNING_THREADS: usize = 8;

fn main() {
    let cli = Cli::parse_fast();
    let drives_a_run = matches!(cli.command, Command::Run { .. });
    // `ork run` drives its run in this process: its threads stay on one
    // CPU (before the runtime starts them), its tasks do not.
    if drives_a_run {
        ork_executors::affinity::pin_to_current_cpu();
        one_malloc_arena();
    }
    // `ork run`'s threads share one CPU, so a second runtime thread only
    // adds hand-offs: a child's exit was reaped on a worker and its
    // completion sent to the engine on this thread. One thread for both
    // (chain of 40 `sh`: 74.6 → 73.4 ms; 202 in parallel 173 → 168 ms).
    let mut builder = if drives_a_run {
        let mut builder = tokio::runtime::Builder::new_current_thread();
        builder.max_blocking_threads(SPAWNING_THREADS);
        builder
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = builder
        .enable_all()
        .build()
        .expect("cannot start the async runtime");
    runtime.block_on(run(cli));
}

async fn run(cli: Cli) {
    // `ork serve` logs each request and run transition; the others only warn.
    let default = match cli.command {
        Command::Serve { .. } => "info,sqlx=warn",
        _ => "warn",
    };
    ork_api::config::init_tracing(default, cli.global.config.log_format, true);
    if !matches!(
        cli.command,
        Command::Serve { .. }
            | Command::Worker { .. }
            | Command::Run { .. }
            | Command::Trigger { .. }
    ) {
        quiet_broken_pipe();
    }
    match commands::run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::{ArgMatches, CommandFactory};
    use std::ffi::OsString;

    /// Every argument's values and their source, then the subcommand's.
    fn flatten(m: &ArgMatches) -> Vec<String> {
        let mut out: Vec<String> = m
            .ids()
            .map(|id| {
                let values: Vec<_> = m
                    .get_raw(id.as_str())
                    .map(|v| v.collect())
                    .unwrap_or_default();
                format!("{id}={values:?} from {:?}", m.value_source(id.as_str()))
            })
            .collect();
        out.sort();
        if let Some((name, sub)) = m.subcommand() {
            out.push(format!("subcommand {name}"));
            out.extend(flatten(sub));
        }
        out
    }

    #[test]
    fn parses_as_the_whole_command() {
        let argvs = [
            "ork run wf.yaml",
            "ork --database-url sqlite:a.db run wf.yaml --json -p x=1",
            "ork run --database-url=sqlite:b.db wf.yaml --dry-run",
            "ork --json --log-dir logs status",
            "ork --batch-size 7 serve --addr 127.0.0.1:1 --poll-interval 5s --executors process",
            "ork worker -- sh -c 'exit 3' --json",
            "ork dbt import proj --apply",
            "ork --migrate false cancel --workflow w --status running",
            "ork logs 01a24cab-529c-7212-8916-fe7b7905758e t0",
            "ork create-workflow --name n --job-name j --task-count 3",
        ];
        for argv in argvs {
            let args: Vec<OsString> = shell_words(argv);
            let whole = Cli::command().try_get_matches_from(&args);
            let one = Cli::one_subcommand(&Cli::command(), &args)
                .unwrap_or_else(|| panic!("{argv}: no subcommand found"))
                .try_get_matches_from(&args);
            match (whole, one) {
                (Ok(whole), Ok(one)) => assert_eq!(flatten(&whole), flatten(&one), "{argv}"),
                (whole, one) => panic!("{argv}: {whole:?} against {one:?}"),
            }
        }
        // What the whole command answers: help, version, errors.
        for argv in [
            "ork",
            "ork --help",
            "ork run --help",
            "ork -V",
            "ork --version",
            "ork -- status",
            "ork help run",
            "ork nosuch",
            "ork --nosuch run",
            "ork --database-url",
        ] {
            assert!(
                Cli::one_subcommand(&Cli::command(), &shell_words(argv)).is_none(),
                "{argv}"
            );
        }
    }

    fn shell_words(line: &str) -> Vec<OsString> {
        let mut words = Vec::new();
        let mut quoted = false;
        let mut word = String::new();
        for c in line.chars() {
            match c {
                '\'' => quoted = !quoted,
                ' ' if !quoted => words.push(std::mem::take(&mut word).into()),
                c => word.push(c),
            }
        }
        words.push(word.into());
        words
    }
}
