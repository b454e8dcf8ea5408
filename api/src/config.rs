//! Handler configuration, from environment variables (documented in the README).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ork_core::engine::{CallbackConfig, Engine, EngineConfig};
use ork_core::executor::Completion;
use ork_core::store::{self, Store};
use ork_core::token::Signer;
use ork_executors::ProcessExecutor;
use tokio::sync::mpsc;

use crate::advancer::Advancer;
use crate::handlers::Handlers;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `ORK_SIGNING_KEY`; required: without it no callback can be trusted.
pub fn signer_from_env() -> Result<Signer> {
    let key = var("ORK_SIGNING_KEY").context("ORK_SIGNING_KEY is not set: the handlers need it to sign and check callback tokens (at least 32 bytes)")?;
    Signer::new(key.into_bytes()).map_err(|e| anyhow::anyhow!("ORK_SIGNING_KEY: {e}"))
}

/// `ORK_GCP_CREDENTIALS_JSON` (a service-account key as text, as a secret
/// manager hands it to a Lambda function) is written to a private file for
/// `GOOGLE_APPLICATION_CREDENTIALS`, which gcp_auth reads as a path.
fn gcp_credentials_from_env() -> Result<()> {
    let Some(json) = var("ORK_GCP_CREDENTIALS_JSON") else {
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

/// What a host (`ork serve`, a Lambda function) supplies where the
/// environment is silent.
pub struct Defaults {
    pub advancer: Advancer,
    pub callback_url: Option<String>,
    pub worker_program: Option<PathBuf>,
    /// Used when `ORK_SIGNING_KEY` is unset (a local server's own key).
    pub signer: Option<Signer>,
}

/// What the handlers of one process share.
pub struct Setup {
    pub handlers: Arc<Handlers>,
    /// Completions of local processes that report in-process (when no
    /// worker program is configured).
    pub completions: mpsc::UnboundedReceiver<Completion>,
}

/// Builds the handlers from the environment:
/// `ORK_DATABASE_URL`/`DATABASE_URL`, `ORK_SIGNING_KEY`, `ORK_API_KEY`,
/// `ORK_CALLBACK_URL` (the on-task-complete endpoint workers report to),
/// `ORK_WORKER_PROGRAM` (the `ork` binary local workers run under, so that
/// they report over HTTP), `ORK_LOG_DIR`, and `ORK_ADVANCE_FUNCTION` /
/// `ORK_ADVANCE_URL` (how to reach `advance`; else `default_advancer`).
pub async fn from_env(defaults: Defaults) -> Result<Setup> {
    let url = store::database_url_from_env();
    let store = Store::connect(&url)
        .await
        .context("cannot open the database")?;
    let signer = match defaults.signer {
        Some(signer) if var("ORK_SIGNING_KEY").is_none() => signer,
        _ => signer_from_env()?,
    };
    let callback_url = var("ORK_CALLBACK_URL").or(defaults.callback_url);
    let (tx, completions) = mpsc::unbounded_channel();
    let log_dir = PathBuf::from(var("ORK_LOG_DIR").unwrap_or_else(|| ".ork/logs".into()));
    let mut process = ProcessExecutor::new(log_dir, tx);
    if let Some(worker) = var("ORK_WORKER_PROGRAM")
        .map(PathBuf::from)
        .or(defaults.worker_program)
    {
        if callback_url.is_none() {
            bail!("ORK_WORKER_PROGRAM is set but no ORK_CALLBACK_URL: local workers would have nowhere to report");
        }
        process = process.with_worker_program(worker);
    }
    gcp_credentials_from_env()?;
    let executors = ork_executors::standard(Arc::new(process));
    let config = EngineConfig {
        callback: callback_url.map(|url| CallbackConfig {
            url,
            signer: signer.clone(),
            grace: Duration::from_secs(3600),
        }),
        dispatch_concurrency: match var("ORK_DISPATCH_CONCURRENCY") {
            Some(n) => n
                .parse()
                .context("ORK_DISPATCH_CONCURRENCY must be a positive number")?,
            None => EngineConfig::default().dispatch_concurrency,
        },
        ..EngineConfig::default()
    };
    let engine = Arc::new(Engine::new(store, executors, config));
    let advancer = if let Some(function) = var("ORK_ADVANCE_FUNCTION") {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Advancer::Lambda {
            client: aws_sdk_lambda::Client::new(&aws),
            function,
        }
    } else if let Some(url) = var("ORK_ADVANCE_URL") {
        Advancer::Http {
            client: reqwest::Client::new(),
            url,
        }
    } else {
        defaults.advancer
    };
    let handlers = Arc::new(Handlers {
        engine,
        api_key: var("ORK_API_KEY"),
        signer,
        advancer,
    });
    Ok(Setup {
        handlers,
        completions,
    })
}
