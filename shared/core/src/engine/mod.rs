//! The engine: `trigger`, `advance`, `complete` and `cancel`, the four
//! operations the handlers are made of. Plain library calls: no HTTP, no
//! Lambda, no process lives on between them. Each loads what it needs from
//! the store, changes state in one transaction, and returns.
//!
//! One file per operation: [`trigger`](Engine::trigger) (`trigger.rs`),
//! [`advance`](Engine::advance) with the claim, dispatch and inputs
//! (`advance.rs`), [`complete`](Engine::complete) (`complete.rs`, which also
//! documents the completion path), [`cancel`](Engine::cancel) (`cancel.rs`),
//! worker reports (`report.rs`), the sweeper (`sweep.rs`), cron firing
//! (`schedule.rs`), pause, version deletion and backfills (`operations.rs`) and `ork run`'s loop (`drive.rs`). This file has the
//! engine itself, its configuration and its cache of workflow versions.

mod advance;
mod cancel;
mod complete;
mod drive;
mod gc;
mod limits;
mod operations;
mod priority;
mod report;
mod retry;
mod schedule;
pub(crate) mod sweep;
mod trigger;
mod wake;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use advance::Advanced;
pub use complete::{Completed, Released};
pub use drive::drive;
pub use gc::Collected;
pub use operations::{Backfill, BackfillProgress, BackfillRequest};
pub use priority::{DEFERRED_BATCH, MOST_DEFERRED};
pub use report::Reported;
pub use retry::RETRY_REQUESTED;
pub use sweep::{Expired, Swept};
pub use trigger::{TriggerOptions, Triggered};
pub use wake::NextDue;

use crate::dag::Dag;
use crate::executor::Executors;
use crate::retry::Backoff;
use crate::spec::WorkflowSpec;
use crate::store::Store;
use crate::token::Signer;
use crate::Error;

/// How a transaction is tried again when the database reports a transient
/// failure ([`Error::is_transient`]): five more tries, 10ms to 160ms apart.
const TRANSIENT_DB: Backoff =
    Backoff::new(5, Duration::from_millis(10), Duration::from_millis(160));

/// Tuning knobs; the defaults suit both backends.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Most task instances claimed by one statement.
    pub claim_batch: i64,
    /// Most instances of immediate executors (noop, mock) locked and
    /// recorded by one transaction. Nothing is dispatched, so a bigger
    /// batch only makes fewer, larger transactions.
    pub immediate_batch: i64,
    /// Most claim batches of one run in flight at once on PostgreSQL, while
    /// claims come back full (`ORK_CLAIM_LANES`); SQLite takes one.
    pub claim_lanes: usize,
    /// How long a claim stays this caller's before the sweeper may take it back.
    pub lease: Duration,
    /// Most dispatches in flight at once (`buffer_unordered`).
    pub dispatch_concurrency: usize,
    /// How long a started attempt lives without a sign of life: its start
    /// lease, then the lease each heartbeat (or `ork run`'s renewal of its
    /// own children, or a poll that found it running) extends.
    pub heartbeat_timeout: Duration,
    /// Set in serverless mode: workers report to this URL with signed tokens.
    pub callback: Option<CallbackConfig>,
    /// Most task instances of one run (the sum of its tasks' `task_count`),
    /// checked at apply and at trigger.
    pub max_instances: u32,
    /// Where large outputs and input files live, and the size bounds.
    pub payloads: crate::payload::Payloads,
    /// Most items a `foreach` may fan out over; more fail the parent.
    pub max_foreach_items: usize,
    /// Claim only tasks of these executor kinds (`ork serve --executors`);
    /// `None` claims every task.
    pub executors: Option<Vec<crate::spec::ExecutorKind>>,
    /// The price table [`Engine::run_cost`] uses (`crate::cost`).
    pub prices: crate::cost::Prices,
}

/// Where workers report, and the key their tokens are signed with.
#[derive(Debug, Clone)]
pub struct CallbackConfig {
    /// The `on-task-complete` endpoint.
    pub url: String,
    pub signer: Signer,
    /// How long a token stays valid beyond the task's timeout.
    pub grace: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            claim_batch: 256,
            immediate_batch: 1000,
            claim_lanes: 2,
            lease: Duration::from_secs(60),
            dispatch_concurrency: 32,
            heartbeat_timeout: Duration::from_secs(300),
            callback: None,
            max_instances: crate::limits::DEFAULT_MAX_INSTANCES,
            payloads: crate::payload::Payloads::default(),
            max_foreach_items: crate::limits::DEFAULT_MAX_FOREACH_ITEMS,
            executors: None,
            prices: crate::cost::Prices::default(),
        }
    }
}

/// A workflow version with its graph, as the engine uses it.
#[derive(Debug)]
pub struct Workflow {
    pub version: i64,
    pub spec: WorkflowSpec,
    pub dag: Dag,
    /// [`WorkflowSpec::has_limits`], read once: every completion and
    /// claim asks, and the answer walks every task.
    pub limited: bool,
    /// The executor kinds its tasks use, each once.
    pub executors: Vec<crate::spec::ExecutorKind>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub name: String,
    pub version: i64,
    /// `false` when the spec was identical to the latest version.
    pub created: bool,
}

pub struct Engine {
    store: Store,
    executors: Executors,
    config: EngineConfig,
    /// Parsed workflow versions. Versions never change once stored, so
    /// caching them is always safe.
    workflows: Mutex<HashMap<(String, i64), Arc<Workflow>>>,
    /// Poked after every local write that may bring the next due time
    /// closer (`wake.rs`); a host's sweeper loop waits on it.
    wake: Arc<tokio::sync::Notify>,
    /// The cron schedules of the workflows, for [`Engine::next_due`].
    crons: Mutex<wake::CronCache>,
    /// Reports being recorded, which `advance`'s later batches defer to.
    reports: priority::Reports,
}

impl Engine {
    pub fn new(store: Store, executors: Executors, config: EngineConfig) -> Self {
        Engine {
            store,
            executors,
            config,
            workflows: Mutex::default(),
            wake: Arc::default(),
            crons: Mutex::default(),
            reports: priority::Reports::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Validates a spec and stores it as the workflow's next version, unless
    /// it is identical to the latest one. An invalid spec stores nothing.
    pub async fn apply(
        &self,
        spec: &WorkflowSpec,
        source: Option<String>,
    ) -> Result<Applied, Error> {
        spec.validate()?;
        let (instances, max) = (spec.instances(), self.config.max_instances);
        if instances > u64::from(max) {
            return Err(crate::spec::SpecError::new(format!(
                "workflow {:?} has {instances} task instances, the maximum is {max} (ORK_MAX_INSTANCES)",
                spec.name
            ))
            .into());
        }
        let json = serde_json::to_value(spec).expect("a spec serializes");
        let hash = hex::encode(Sha256::digest(json.to_string().as_bytes()));
        let mut tx = self.store.begin().await?;
        let (version, created) = tx
            .save_workflow(&spec.name, json, &hash, source, Utc::now())
            .await?;
        tx.commit().await?;
        Ok(Applied {
            name: spec.name.clone(),
            version,
            created,
        })
    }

    /// A workflow version, from the cache or the store (`None`: the latest).
    pub async fn workflow(&self, name: &str, version: Option<i64>) -> Result<Arc<Workflow>, Error> {
        if let Some(v) = version {
            if let Some(wf) = self
                .workflows
                .lock()
                .expect("poisoned")
                .get(&(name.to_owned(), v))
            {
                return Ok(wf.clone());
            }
        }
        let (version, json) = self.store.workflow_spec(name, version).await?;
        let spec: WorkflowSpec = serde_json::from_value(json).map_err(|e| {
            Error::Internal(format!(
                "stored spec of {name} v{version} is unreadable: {e}"
            ))
        })?;
        let dag = Dag::new(&spec).map_err(|cycle| {
            Error::Internal(format!("stored spec of {name} has a cycle: {cycle:?}"))
        })?;
        let limited = spec.has_limits();
        let mut executors: Vec<_> = spec.tasks.values().map(|t| t.executor).collect();
        executors.sort_by_key(|k| k.as_str());
        executors.dedup();
        let wf = Arc::new(Workflow {
            version,
            spec,
            dag,
            limited,
            executors,
        });
        self.workflows
            .lock()
            .expect("poisoned")
            .insert((name.to_owned(), version), wf.clone());
        Ok(wf)
    }
}
