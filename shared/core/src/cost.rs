//! What a run cost: each attempt's duration × its resources × its
//! executor's price, plus the control plane's own invocations priced as
//! Lambda requests. Computed from the run's events (when each attempt
//! started and ended) and its workflow version (the resources): when read,
//! and once more by the transaction that finalizes the run, which stores the
//! total in `runs.cost_usd` for run lists (`Engine::store_cost`). Nothing
//! is added to the completion of a task that does not end its run.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::engine::Engine;
use crate::spec::{ExecutorKind, WorkflowSpec};
use crate::store::Tx;
use crate::Error;

/// Prices in USD. Defaults are the public list prices (AWS us-east-1,
/// Google us-central1 tier 1, Linux/x86) as of 2026; local executors are free.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    pub fargate_vcpu_second: f64,
    pub fargate_gb_second: f64,
    pub cloudrun_vcpu_second: f64,
    pub cloudrun_gib_second: f64,
    pub lambda_gb_second: f64,
    pub lambda_request: f64,
    /// The control plane's memory (the SAM template's `MemorySize`).
    pub control_plane_memory_mb: f64,
    /// The control plane's average duration per invocation.
    pub control_plane_seconds: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            // $0.04048 per vCPU-hour, $0.004445 per GB-hour.
            fargate_vcpu_second: 0.04048 / 3600.0,
            fargate_gb_second: 0.004445 / 3600.0,
            cloudrun_vcpu_second: 0.000018,
            cloudrun_gib_second: 0.000002,
            lambda_gb_second: 0.000_016_666_7,
            // $0.20 per million requests.
            lambda_request: 0.000_000_2,
            control_plane_memory_mb: 256.0,
            control_plane_seconds: 0.1,
        }
    }
}

impl Prices {
    /// USD per second of one instance of `task`: vCPUs and memory from its
    /// executor block (Fargate: `cpu` units / 1024 and `memory` MiB, else
    /// the smallest task size, 0.25 vCPU and 0.5 GB; Cloud Run Jobs: the
    /// default 1 vCPU and 0.5 GiB); local and Kubernetes tasks cost 0.
    pub fn per_second(&self, task: &crate::spec::TaskSpec) -> f64 {
        match task.executor {
            ExecutorKind::Fargate => {
                let f = task.fargate.as_ref();
                let vcpu = f
                    .and_then(|f| f.cpu)
                    .map_or(0.25, |c| f64::from(c) / 1024.0);
                let gb = f
                    .and_then(|f| f.memory)
                    .map_or(0.5, |m| f64::from(m) / 1024.0);
                vcpu * self.fargate_vcpu_second + gb * self.fargate_gb_second
            }
            ExecutorKind::Cloudrun => self.cloudrun_vcpu_second + 0.5 * self.cloudrun_gib_second,
            _ => 0.0,
        }
    }

    /// USD per control-plane invocation: its request and its GB-seconds.
    pub fn per_invocation(&self) -> f64 {
        self.lambda_request
            + self.control_plane_memory_mb / 1024.0
                * self.control_plane_seconds
                * self.lambda_gb_second
    }
}

/// The cost of one task instance over all its attempts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TaskCost {
    pub task_id: Uuid,
    pub name: String,
    pub task_index: i64,
    pub executor: String,
    /// Attempts that started (ran on their executor).
    pub attempts: i64,
    /// Seconds run, summed over attempts (an attempt in flight counts to now).
    pub seconds: f64,
    pub usd: f64,
}

/// The cost of a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunCost {
    pub run_id: Uuid,
    /// The tasks' attempts.
    pub compute_usd: f64,
    /// Handler invocations the run took: its trigger, and per attempt
    /// dispatched its dispatch and its completion report (an upper bound:
    /// a batch of them is one invocation).
    pub invocations: i64,
    pub control_plane_usd: f64,
    pub total_usd: f64,
    pub tasks: Vec<TaskCost>,
}

/// The columns of a task instance that its cost needs.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CostTask {
    pub id: Uuid,
    pub name: String,
    pub task_index: i64,
    pub executor: String,
    pub finished_at: Option<DateTime<Utc>>,
}

/// An event of an attempt (`attempt > 0`): when it started or ended.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CostEvent {
    pub task_id: Uuid,
    pub attempt: i64,
    pub status: String,
    pub at: DateTime<Utc>,
}

/// When an attempt started and ended, as its events say.
type Span = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Computes a run's cost from its tasks and events.
pub fn run_cost(
    prices: &Prices,
    spec: &WorkflowSpec,
    run_id: Uuid,
    tasks: &[CostTask],
    events: &[CostEvent],
    now: DateTime<Utc>,
) -> RunCost {
    // Per (task, attempt): when it started and when it ended.
    let mut spans: BTreeMap<(Uuid, i64), Span> = BTreeMap::new();
    for e in events.iter().filter(|e| e.attempt > 0) {
        let span = spans.entry((e.task_id, e.attempt)).or_default();
        match e.status.as_str() {
            "dispatched" => {}
            "running" => span.0 = Some(e.at),
            _ => {
                span.1.get_or_insert(e.at);
            }
        }
    }
    let mut costs = Vec::with_capacity(tasks.len());
    // Attempts dispatched (including those that ended at dispatch).
    let mut dispatched = 0;
    for t in tasks {
        let rate = spec
            .tasks
            .get(&t.name)
            .map_or(0.0, |s| prices.per_second(s));
        let (mut attempts, mut seconds) = (0, 0.0);
        for (_, (start, end)) in spans.range((t.id, 0)..=(t.id, i64::MAX)) {
            dispatched += 1;
            let Some(start) = start else { continue };
            let end = end.or(t.finished_at).unwrap_or(now).max(*start);
            attempts += 1;
            seconds += (end - *start).num_milliseconds() as f64 / 1000.0;
        }

        costs.push(TaskCost {
            task_id: t.id,
            name: t.name.clone(),
            task_index: t.task_index,
            executor: t.executor.clone(),
            attempts,
            seconds,
            usd: seconds * rate,
        });
    }
    let compute_usd: f64 = costs.iter().map(|c| c.usd).sum();
    let (invocations, control_plane_usd) = control_plane(prices, dispatched);
    RunCost {
        run_id,
        compute_usd,
        invocations,
        control_plane_usd,
        total_usd: compute_usd + control_plane_usd,
        tasks: costs,
    }
}

/// The invocations of a run that dispatched `dispatched` attempts, and
/// their price.
fn control_plane(prices: &Prices, dispatched: i64) -> (i64, f64) {
    let invocations = 1 + 2 * dispatched;
    (invocations, invocations as f64 * prices.per_invocation())
}

impl Engine {
    /// What a run cost so far (two reads: its tasks and its events).
    pub async fn run_cost(&self, run_id: Uuid) -> Result<RunCost, Error> {
        let run = self.store().get_run(run_id).await?;
        let wf = self.workflow(&run.workflow, Some(run.version)).await?;
        let (tasks, events) = self.store().cost_inputs(run_id).await?;
        Ok(run_cost(
            &self.config().prices,
            &wf.spec,
            run_id,
            &tasks,
            &events,
            Utc::now(),
        ))
    }

    /// In the transaction that just finalized `run_id` (of a version of
    /// `spec`): computes its cost from what the transaction sees and stores
    /// the total (returned), so the stored figure is the run's cost as it
    /// ended. The one extra read at a run's end is here, once per run.
    pub(crate) async fn store_cost(
        &self,
        tx: &mut Tx,
        spec: &WorkflowSpec,
        run_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<f64, Error> {
        let prices = &self.config().prices;
        let total = if spec.tasks.values().all(|t| prices.per_second(t) == 0.0) {
            // No task is priced per second (local, noop, Kubernetes): the
            // cost is the control plane's, a count of attempts, which the
            // database counts without sending the run's events (and
            // `run_cost`'s total adds a compute cost of 0 to it).
            control_plane(prices, tx.attempts_dispatched(run_id).await?).1
        } else {
            let (tasks, events) = tx.cost_inputs(run_id).await?;
            run_cost(prices, spec, run_id, &tasks, &events, now).total_usd
        };
        tx.set_run_cost(run_id, total).await?;
        Ok(total)
    }

    /// [`Engine::store_cost`] for a run of any version (looked up).
    pub(crate) async fn store_cost_of(
        &self,
        tx: &mut Tx,
        run_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<f64, Error> {
        let run = self.store().get_run(run_id).await?;
        let wf = self.workflow(&run.workflow, Some(run.version)).await?;
        self.store_cost(tx, &wf.spec, run_id, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_list_prices_per_second() {
        let p = Prices::default();
        // One hour of 1 vCPU + 2 GB on Fargate: $0.04048 + 2 × $0.004445.
        let hour = 3600.0 * (p.fargate_vcpu_second + 2.0 * p.fargate_gb_second);
        assert!((hour - 0.04937).abs() < 1e-9, "{hour}");
        // A 256 MB, 100 ms invocation: $0.0000002 + 0.025 GB-s.
        let inv = p.per_invocation();
        assert!(
            (inv - (0.0000002 + 0.025 * 0.0000166667)).abs() < 1e-12,
            "{inv}"
        );
    }
}
