//! Ork's configuration, in one typed place: every setting is a flag of the
//! `ork` command line and an environment variable (the Lambda functions,
//! which have no command line, read the same struct from the environment
//! alone). The README's configuration table lists them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Args, Parser};
use ork_core::engine::{CallbackConfig, Engine, EngineConfig};
use ork_core::executor::Completion;
use ork_core::spec::ExecutorKind;
use ork_core::store::{Store, StoreOptions};
use ork_core::token::Signer;
use ork_executors::ProcessExecutor;
use tokio::sync::mpsc;

use crate::advancer::Advancer;
use crate::handlers::Handlers;
use crate::oidc::OidcVerifier;
use crate::waker::Waker;

/// The settings shared by the CLI and the handlers.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Database URL: `sqlite:PATH` or `postgres://…` [default: $DATABASE_URL, else sqlite:<state dir>/ork.db]
    #[arg(long, global = true, env = "ORK_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where local task attempts write their logs [default: <state dir>/logs]
    #[arg(long, global = true, env = "ORK_LOG_DIR")]
    pub log_dir: Option<PathBuf>,
    /// Bring the schema up to date on connect (deployed handlers may set
    /// false and run `ork init` once per deploy).
    #[arg(long, global = true, env = "ORK_MIGRATE", default_value_t = true, action = ArgAction::Set)]
    pub migrate: bool,
    /// HMAC-SHA256 key (≥ 32 bytes) for callback tokens.
    #[arg(long, global = true, env = "ORK_SIGNING_KEY", hide_env_values = true)]
    pub signing_key: Option<String>,
    /// Bearer key required by `trigger`, `advance` and the read API.
    #[arg(long, global = true, env = "ORK_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The `on-task-complete` endpoint workers report to.
    #[arg(long, global = true, env = "ORK_CALLBACK_URL")]
    pub callback_url: Option<String>,
    /// Run local tasks under `<program> worker --`, so that they report over HTTP.
    #[arg(long, global = true, env = "ORK_WORKER_PROGRAM")]
    pub worker_program: Option<PathBuf>,
    /// Invoke this `advance` Lambda function asynchronously after triggers and completions.
    #[arg(long, global = true, env = "ORK_ADVANCE_FUNCTION")]
    pub advance_function: Option<String>,
    /// Or POST to this `advance` endpoint.
    #[arg(long, global = true, env = "ORK_ADVANCE_URL")]
    pub advance_url: Option<String>,
    /// Most executor calls (RunTask, jobs.run, spawns) in flight at once.
    #[arg(long, global = true, env = "ORK_DISPATCH_CONCURRENCY", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub dispatch_concurrency: u32,
    /// Also accept on `advance` Google-signed ID tokens for this audience
    /// (the service URL: what Cloud Scheduler's OIDC token names).
    #[arg(
        long,
        global = true,
        env = "ORK_OIDC_AUDIENCE",
        requires = "oidc_service_account"
    )]
    pub oidc_audience: Option<String>,
    /// The service account whose ID tokens `advance` accepts (the scheduler's).
    #[arg(
        long,
        global = true,
        env = "ORK_OIDC_SERVICE_ACCOUNT",
        requires = "oidc_audience"
    )]
    pub oidc_service_account: Option<String>,
    /// Where the ID tokens' public keys are published.
    #[arg(long, global = true, env = "ORK_OIDC_JWKS_URL", default_value = crate::oidc::GOOGLE_JWKS_URL)]
    pub oidc_jwks_url: String,
    /// Most task instances of one run (the sum of its tasks' `task_count`),
    /// checked at apply and at trigger.
    #[arg(long, global = true, env = "ORK_MAX_INSTANCES", default_value_t = ork_core::limits::DEFAULT_MAX_INSTANCES,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_instances: u32,
    /// How long a started attempt lives without a sign of life (a
    /// heartbeat, or `ork run` renewing its own children's leases) before
    /// the sweeper fails it and retries it per policy.
    #[arg(long, global = true, env = "ORK_HEARTBEAT_TIMEOUT", default_value = "300s",
          value_parser = humantime::parse_duration)]
    pub heartbeat_timeout: Duration,
    /// `ork worker`: how long a report is tried (with backoff) while the
    /// server is unreachable or answers 5xx, before an error-level log.
    #[arg(long, global = true, env = "ORK_REPORT_TIMEOUT", default_value = "15m",
          value_parser = humantime::parse_duration)]
    pub report_timeout: Duration,
    /// AWS: the `advance` function's ARN, for EventBridge Scheduler one-time
    /// schedules that wake it when something is due before the minute sweep.
    #[arg(
        long,
        global = true,
        env = "ORK_WAKE_FUNCTION_ARN",
        requires = "wake_role_arn"
    )]
    pub wake_function_arn: Option<String>,
    /// The role EventBridge Scheduler assumes to invoke it.
    #[arg(
        long,
        global = true,
        env = "ORK_WAKE_ROLE_ARN",
        requires = "wake_function_arn"
    )]
    pub wake_role_arn: Option<String>,
    /// The schedule group of those one-time schedules.
    #[arg(
        long,
        global = true,
        env = "ORK_WAKE_SCHEDULE_GROUP",
        default_value = "default"
    )]
    pub wake_schedule_group: String,
    /// Log lines as `text` or `json` (CloudWatch, Cloud Logging).
    #[arg(
        long,
        global = true,
        env = "ORK_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Where large task outputs and input files are kept [default: <state dir>/payloads]
    #[arg(long, global = true, env = "ORK_PAYLOAD_DIR")]
    pub payload_dir: Option<PathBuf>,
    /// An object store for large outputs and inputs instead of the payload
    /// directory: `s3://bucket/prefix` or `gs://bucket/prefix` (cloud
    /// workers then get their inputs by presigned URL).
    #[arg(long, global = true, env = "ORK_PAYLOAD_URL")]
    pub payload_url: Option<String>,
    /// Outputs (and input documents) up to this many bytes stay inline
    /// (the database row, `ORK_INPUT`); larger ones go by reference.
    #[arg(long, global = true, env = "ORK_INLINE_PAYLOAD_BYTES", default_value_t = ork_core::payload::DEFAULT_INLINE_LIMIT,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 20)))]
    pub inline_payload_bytes: u64,
    /// The largest output a task may leave; a larger one fails the attempt.
    #[arg(long, global = true, env = "ORK_MAX_PAYLOAD_BYTES", default_value_t = ork_core::payload::DEFAULT_MAX_PAYLOAD_BYTES)]
    pub max_payload_bytes: u64,
    /// Most items one `foreach` fans out over; more fail the parent.
    #[arg(long, global = true, env = "ORK_MAX_FOREACH_ITEMS", default_value_t = ork_core::limits::DEFAULT_MAX_FOREACH_ITEMS)]
    pub max_foreach_items: usize,
    /// Cost: Fargate USD per vCPU-second (list price $0.04048 per vCPU-hour).
    #[arg(long, global = true, env = "ORK_PRICE_FARGATE_VCPU_SECOND", default_value_t = ork_core::cost::Prices::default().fargate_vcpu_second)]
    pub price_fargate_vcpu_second: f64,
    /// Cost: Fargate USD per GB-second (list price $0.004445 per GB-hour).
    #[arg(long, global = true, env = "ORK_PRICE_FARGATE_GB_SECOND", default_value_t = ork_core::cost::Prices::default().fargate_gb_second)]
    pub price_fargate_gb_second: f64,
    /// Cost: Cloud Run Jobs USD per vCPU-second.
    #[arg(long, global = true, env = "ORK_PRICE_CLOUDRUN_VCPU_SECOND", default_value_t = ork_core::cost::Prices::default().cloudrun_vcpu_second)]
    pub price_cloudrun_vcpu_second: f64,
    /// Cost: Cloud Run Jobs USD per GiB-second.
    #[arg(long, global = true, env = "ORK_PRICE_CLOUDRUN_GIB_SECOND", default_value_t = ork_core::cost::Prices::default().cloudrun_gib_second)]
    pub price_cloudrun_gib_second: f64,
    /// Cost: Lambda USD per GB-second (the control plane's invocations).
    #[arg(long, global = true, env = "ORK_PRICE_LAMBDA_GB_SECOND", default_value_t = ork_core::cost::Prices::default().lambda_gb_second)]
    pub price_lambda_gb_second: f64,
    /// Cost: Lambda USD per request (the control plane's invocations).
    #[arg(long, global = true, env = "ORK_PRICE_LAMBDA_REQUEST", default_value_t = ork_core::cost::Prices::default().lambda_request)]
    pub price_lambda_request: f64,
    /// Cost: the control plane's memory in MB and average seconds per invocation.
    #[arg(long, global = true, env = "ORK_CONTROL_PLANE_MEMORY_MB", default_value_t = ork_core::cost::Prices::default().control_plane_memory_mb)]
    pub control_plane_memory_mb: f64,
    #[arg(long, global = true, env = "ORK_CONTROL_PLANE_SECONDS", default_value_t = ork_core::cost::Prices::default().control_plane_seconds)]
    pub control_plane_seconds: f64,
    /// `ork serve`: claim only tasks of these executor kinds
    /// (comma-separated: `kubernetes,process`; `process` includes
    /// `python`), leaving the others to another server [default: all].
    #[arg(long, global = true, env = "ORK_EXECUTORS", value_delimiter = ',')]
    pub executors: Option<Vec<ExecutorKind>>,
    /// Most task instances claimed by one statement (the claim batch).
    #[arg(long, global = true, env = "ORK_BATCH_SIZE", default_value_t = 256,
          value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub batch_size: i64,
    /// On PostgreSQL, most claim batches of one run in flight at once while
    /// claims come back full (SQLite has one writer: one).
    #[arg(long, global = true, env = "ORK_CLAIM_LANES", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=16))]
    pub claim_lanes: u16,
    /// `ork serve`: how often the sweeper runs at the latest (the tick);
    /// it also runs at each due time and on other processes' writes.
    #[arg(long, global = true, env = "ORK_POLL_INTERVAL", alias = "tick", default_value = "60s",
          value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// `ork serve`: delete the runs finished longer ago than this (`30d`),
    /// with their payloads and logs, as `ork gc` does: at start, then every
    /// hour (or every RETENTION, when shorter) [default: keep them].
    #[arg(long, global = true, env = "ORK_RETENTION",
          value_parser = ork_core::spec::parse_duration)]
    pub retention: Option<Duration>,
    /// This server's name in its logs [default: <hostname>-<pid>].
    #[arg(long, global = true, env = "ORK_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// A GCP service-account key as text (from a secret manager), for Cloud Run.
    #[arg(
        long,
        global = true,
        env = "ORK_GCP_CREDENTIALS_JSON",
        hide_env_values = true,
        hide = true
    )]
    pub gcp_credentials_json: Option<String>,
}

/// The configuration alone, for hosts without a command line.
#[derive(Parser)]
struct EnvOnly {
    #[command(flatten)]
    config: Config,
}

impl Config {
    /// The configuration from the environment alone (Lambda functions).
    pub fn from_env() -> Result<Config> {
        EnvOnly::try_parse_from(["ork"])
            .map(|e| e.config)
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))
    }

    /// `--database-url`, else `DATABASE_URL`, else the embedded SQLite
    /// file in the [`state_dir`].
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .or_else(|| std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| format!("sqlite:{}", state_dir().join("ork.db").display()))
    }

    /// The price table of `ork_core::cost` from the `ORK_PRICE_*` settings.
    pub fn prices(&self) -> ork_core::cost::Prices {
        ork_core::cost::Prices {
            fargate_vcpu_second: self.price_fargate_vcpu_second,
            fargate_gb_second: self.price_fargate_gb_second,
            cloudrun_vcpu_second: self.price_cloudrun_vcpu_second,
            cloudrun_gib_second: self.price_cloudrun_gib_second,
            lambda_gb_second: self.price_lambda_gb_second,
            lambda_request: self.price_lambda_request,
            control_plane_memory_mb: self.control_plane_memory_mb,
            control_plane_seconds: self.control_plane_seconds,
        }
    }

    /// The payload store and its bounds: `--payload-url` (S3, GCS) when
    /// set; the local directory `--payload-dir`, else `payloads/` in the
    /// [`state_dir`] (also where outputs land before they are stored).
    pub fn payloads(&self) -> Result<ork_core::payload::Payloads> {
        let dir = self
            .payload_dir
            .clone()
            .unwrap_or_else(|| state_dir().join("payloads"));
        let remote = match self.payload_url.as_deref().filter(|u| !u.is_empty()) {
            Some(url) => Some(crate::payload_store::open(url, &[])?),
            None => None,
        };
        Ok(ork_core::payload::Payloads {
            inline_limit: self.inline_payload_bytes,
            max_bytes: self.max_payload_bytes,
            remote,
            ..ork_core::payload::Payloads::new(dir)
        })
    }

    /// The executor kinds this process claims tasks of (`None`: all):
    /// `--executors`, with `python` added to `process` (the process
    /// executor runs both).
    pub fn claimed_executors(&self) -> Option<Vec<ExecutorKind>> {
        let mut kinds = self.executors.clone()?;
        if kinds.contains(&ExecutorKind::Process) && !kinds.contains(&ExecutorKind::Python) {
            kinds.push(ExecutorKind::Python);
        }
        kinds.sort_by_key(|k| k.as_str());
        kinds.dedup();
        Some(kinds)
    }

    /// `--instance-id`, else `<hostname>-<pid>`.
    pub fn instance_id(&self) -> String {
        self.instance_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| "ork".to_owned());
            format!("{host}-{}", std::process::id())
        })
    }

    /// `--log-dir`, else `logs/` in the [`state_dir`].
    pub fn log_dir(&self) -> PathBuf {
        self.log_dir
            .clone()
            .unwrap_or_else(|| state_dir().join("logs"))
    }

    /// Opens the database, migrating it unless `migrate` is off. On SQLite,
    /// with at most `sqlite_readers` connections for reads.
    pub async fn connect(&self, sqlite_readers: u32) -> Result<Store> {
        let url = self.database_url();
        let options = StoreOptions {
            migrate: self.migrate,
            sqlite_readers,
            ..StoreOptions::default()
        };
        Store::connect_with(&url, &options)
            .await
            .with_context(|| format!("cannot open the database at {}", redact(&url)))
    }

    /// The callback-token signer: `signing_key`, else `fallback`.
    fn signer(&self, fallback: Option<Signer>) -> Result<Signer> {
        match (&self.signing_key, fallback) {
            (Some(key), _) => Signer::new(key.clone().into_bytes())
                .map_err(|e| anyhow::anyhow!("ORK_SIGNING_KEY: {e}")),
            (None, Some(signer)) => Ok(signer),
            (None, None) => bail!("ORK_SIGNING_KEY is not set: the handlers need it to sign and check callback tokens (at least 32 bytes)"),
        }
    }

    /// `ORK_GCP_CREDENTIALS_JSON` is written to a private file for
    /// `GOOGLE_APPLICATION_CREDENTIALS`, which gcp_auth reads as a path.
    fn install_gcp_credentials(&self) -> Result<()> {
        let Some(json) = &self.gcp_credentials_json else {
            return Ok(());
        };
        let path = std::env::temp_dir().join("ork-gcp-credentials.json");
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        // Set once at start-up, before any thread reads the environment.
        unsafe { std::env::set_var("GOOGLE_APPLICATION_CREDENTIALS", &path) };
        Ok(())
    }
}

/// The directory of a project's local state (the SQLite file, local logs):
/// the nearest `.ork/` in the working directory or one of its parents, as
/// git finds `.git`, so that `ork` run from a subdirectory (the Lambda
/// functions under `cargo lambda watch` run in `functions/`) uses the same
/// state; else `.ork/` in the working directory, created on first use.
pub fn state_dir() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .map(|dir| dir.join(STATE_DIR))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| cwd.join(STATE_DIR))
}

/// The file of a local server's own signing key, in the [`state_dir`].
pub const SIGNING_KEY_FILE: &str = "signing.key";

/// A local server's signing key when none is configured: read from
/// `dir/signing.key`, else generated once into it (mode 0600), so that a
/// restarted `ork serve` still accepts the tokens of workers it started.
pub fn local_signer(dir: &std::path::Path) -> Result<Signer> {
    let path = dir.join(SIGNING_KEY_FILE);
    let key = match std::fs::read_to_string(&path) {
        Ok(key) => key.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let key = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            match options.open(&path) {
                Ok(mut file) => {
                    use std::io::Write;
                    file.write_all(key.as_bytes())
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    key
                }
                // Another server made it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    std::fs::read_to_string(&path)?.trim().to_owned()
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot create {}", path.display()))
                }
            }
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Signer::new(key.into_bytes()).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The name of the state directory.
pub const STATE_DIR: &str = ".ork";

/// Logs through `tracing` to stderr, filtered by `RUST_LOG` (else `default`).
/// `format` is `text` (for people) or `json` (one object per line, with the
/// span fields — run_id, task, attempt —, what CloudWatch and Cloud Logging
/// parse). Lambda and Cloud Run stamp lines themselves: `with_time` off.
pub fn init_tracing(default: &str, format: LogFormat, with_time: bool) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr);
    let _ = match (format, with_time) {
        (LogFormat::Json, true) => builder.json().try_init(),
        (LogFormat::Json, false) => builder.json().without_time().try_init(),
        (LogFormat::Text, true) => builder.try_init(),
        (LogFormat::Text, false) => builder.without_time().try_init(),
    };
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

/// What a host (`ork serve`, a Lambda function) supplies where the
/// configuration is silent.
pub struct Defaults {
    pub advancer: Advancer,
    pub callback_url: Option<String>,
    pub worker_program: Option<PathBuf>,
    /// Used when no signing key is configured (a local server's own key).
    pub signer: Option<Signer>,
}

/// What the handlers of one process share.
pub struct Setup {
    pub handlers: Arc<Handlers>,
    /// Completions of local processes that report in-process (when no
    /// worker program is configured).
    pub completions: mpsc::UnboundedReceiver<Completion>,
}

/// Builds the handlers of one process from its configuration.
pub async fn setup(config: &Config, defaults: Defaults) -> Result<Setup> {
    // Before anything else: a Lambda function without a key refuses to
    // start (at cold start, with the reason) rather than sign with a key
    // that the next instance would not know.
    let signer = config.signer(defaults.signer)?;
    let store = config
        .connect(StoreOptions::default().sqlite_readers)
        .await?;
    let callback_url = config.callback_url.clone().or(defaults.callback_url);
    let (tx, completions) = mpsc::unbounded_channel();
    let payloads = config.payloads()?;
    let mut process = ProcessExecutor::new(config.log_dir(), tx)
        .with_payload_limits(payloads.inline_limit, payloads.max_bytes);
    if let Some(worker) = config.worker_program.clone().or(defaults.worker_program) {
        if callback_url.is_none() {
            bail!("ORK_WORKER_PROGRAM is set but no ORK_CALLBACK_URL: local workers would have nowhere to report");
        }
        process = process.with_worker_program(worker);
    }
    config.install_gcp_credentials()?;
    let executors = ork_executors::standard(Arc::new(process));
    let engine_config = EngineConfig {
        callback: callback_url.map(|url| CallbackConfig {
            url,
            signer: signer.clone(),
            grace: Duration::from_secs(3600),
        }),
        dispatch_concurrency: config.dispatch_concurrency as usize,
        max_instances: config.max_instances,
        heartbeat_timeout: config.heartbeat_timeout,
        payloads,
        max_foreach_items: config.max_foreach_items,
        claim_batch: config.batch_size,
        claim_lanes: config.claim_lanes.into(),
        executors: config.claimed_executors(),
        prices: config.prices(),
        ..EngineConfig::default()
    };
    let engine = Arc::new(Engine::new(store, executors, engine_config));
    let advancer = if let Some(function) = &config.advance_function {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Advancer::Lambda {
            client: aws_sdk_lambda::Client::new(&aws),
            function: function.clone(),
        }
    } else if let Some(url) = &config.advance_url {
        Advancer::Http {
            client: reqwest::Client::new(),
            url: url.clone(),
        }
    } else {
        defaults.advancer
    };
    let handlers = Arc::new(Handlers {
        engine,
        api_key: config.api_key.clone(),
        signer,
        advancer,
        waker: match (&config.wake_function_arn, &config.wake_role_arn) {
            (Some(target), Some(role)) => {
                let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                Waker::Scheduler {
                    client: aws_sdk_scheduler::Client::new(&aws),
                    target_arn: target.clone(),
                    role_arn: role.clone(),
                    group: config.wake_schedule_group.clone(),
                }
            }
            _ => Waker::None,
        },
        oidc: match (&config.oidc_audience, &config.oidc_service_account) {
            (Some(audience), Some(account)) => Some(Arc::new(OidcVerifier::new(
                audience.clone(),
                account.clone(),
                config.oidc_jwks_url.clone(),
            ))),
            _ => None,
        },
        log_dir: Some(config.log_dir()),
        reports: Default::default(),
    });
    Ok(Setup {
        handlers,
        completions,
    })
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn a_local_key_is_generated_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".ork");
        let first = local_signer(&state).unwrap();
        let path = state.join(SIGNING_KEY_FILE);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A restart reads the same key: its tokens still verify.
        let again = local_signer(&state).unwrap();
        let attempt = ork_core::model::AttemptRef {
            run_id: uuid::Uuid::now_v7(),
            workflow: "w".into(),
            version: 1,
            task_id: uuid::Uuid::now_v7(),
            name: "t".into(),
            task_index: 0,
            attempt: 1,
        };
        let now = chrono::Utc::now();
        let token = first.sign(&attempt, now + chrono::Duration::minutes(5));
        assert!(again.verify(&token, now).is_ok());
    }

    #[test]
    fn serve_limits_parse_from_flags() {
        let config = EnvOnly::try_parse_from([
            "ork",
            "--executors",
            "kubernetes,process",
            "--batch-size",
            "10",
            "--claim-lanes",
            "3",
            "--tick",
            "5s",
            "--instance-id",
            "i1",
        ])
        .unwrap()
        .config;
        assert_eq!(
            config.claimed_executors(),
            Some(vec![
                ExecutorKind::Kubernetes,
                ExecutorKind::Process,
                ExecutorKind::Python
            ])
        );
        assert_eq!(config.batch_size, 10);
        assert_eq!(config.claim_lanes, 3);
        assert_eq!(config.poll_interval, Duration::from_secs(5));
        assert_eq!(config.instance_id(), "i1");
        assert!(EnvOnly::try_parse_from(["ork", "--executors", "nope"]).is_err());
        assert!(EnvOnly::try_parse_from(["ork", "--batch-size", "0"]).is_err());
        for lanes in ["0", "17", "two"] {
            assert!(EnvOnly::try_parse_from(["ork", "--claim-lanes", lanes]).is_err());
        }
    }

    #[test]
    fn without_a_key_or_a_fallback_the_handlers_refuse_to_start() {
        let mut config = Config::from_env().unwrap();
        config.signing_key = None;
        let e = config.signer(None).unwrap_err().to_string();
        assert!(e.contains("ORK_SIGNING_KEY is not set"), "{e}");
    }
}
