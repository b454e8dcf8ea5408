//! From a workflow's declared limits (docs/concurrency.md) to what the
//! store checks: the keys a new task row carries, and the gates of a claim.

use std::time::Duration;

use super::Workflow;
use crate::model::{Run, RunStatus};
use crate::spec::{render_key, WorkflowSpec};
use crate::store::{ClaimLimits, RateGate, RunGate, TaskGate};

/// The `max_parallel` group of a task: shared by all runs of the workflow.
fn group(workflow: &str, task: &str) -> String {
    format!("{workflow}/{task}")
}

/// `(limit_group, limit_key)` of a task's instances in a run with `params`.
pub(super) fn task_keys(
    spec: &WorkflowSpec,
    task: &str,
    params: &serde_json::Value,
) -> (Option<String>, Option<String>) {
    let Some(t) = spec.tasks.get(task) else {
        return (None, None);
    };
    (
        t.max_parallel.map(|_| group(&spec.name, task)),
        t.concurrency.as_ref().map(|c| render_key(&c.key, params)),
    )
}

/// The run's `concurrency.key`, rendered, if the workflow has one.
pub(super) fn run_key(spec: &WorkflowSpec, params: &serde_json::Value) -> Option<String> {
    let key = spec.concurrency.as_ref()?.key.as_ref()?;
    Some(render_key(key, params))
}

/// The workflow's run limits for a run with `params`.
pub(super) fn run_gate(spec: &WorkflowSpec, params: &serde_json::Value) -> Option<RunGate> {
    let c = spec.concurrency.as_ref()?;
    Some(RunGate {
        workflow: spec.name.clone(),
        max_runs: c.max_runs.map(i64::from),
        key: c
            .key
            .as_ref()
            .zip(c.limit)
            .map(|(k, n)| (render_key(k, params), i64::from(n))),
    })
}

/// The gates a claim of `run` passes, or `None` when the workflow has no
/// limits (the plain one-statement claim).
pub(super) fn claim_limits(wf: &Workflow, run: &Run) -> Option<ClaimLimits> {
    let spec = &wf.spec;
    if !wf.limited {
        return None;
    }
    let run_gate = run_gate(spec, &run.params).filter(|_| run.status == RunStatus::Pending);
    let tasks = spec
        .tasks
        .iter()
        .filter_map(|(name, t)| {
            let gate = TaskGate {
                group: t
                    .max_parallel
                    .map(|n| (group(&spec.name, name), i64::from(n))),
                key: t
                    .concurrency
                    .as_ref()
                    .map(|c| (render_key(&c.key, &run.params), i64::from(c.limit))),
                rate: t.rate_limit.as_ref().and_then(|r| {
                    let per_second = spec.rate_limits.get(&r.name)?.per_second;
                    Some(RateGate {
                        name: r.name.clone(),
                        interval: Duration::from_secs_f64(1.0 / per_second),
                        cost: r.cost,
                    })
                }),
            };
            let limited = gate.group.is_some() || gate.key.is_some() || gate.rate.is_some();
            limited.then(|| (name.clone(), gate))
        })
        .collect();
    Some(ClaimLimits {
        run: run_gate,
        tasks,
    })
}
