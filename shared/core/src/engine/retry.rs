//! `retry`: running a finished run's unsuccessful tasks again, in place.
//!
//! The failed, cancelled and skipped instances go back to `pending` with
//! new attempts (each task's `retries` granted again); successes and their
//! outputs are kept, so the children of a kept success start at once. The
//! run reopens in the same transaction, by one conditional update of its
//! row: racing retries reopen it once.

use std::collections::{BTreeSet, HashMap};

use chrono::Utc;
use uuid::Uuid;

use super::{Engine, Workflow, TRANSIENT_DB};
use crate::model::TaskStatus;
use crate::retry::retry;
use crate::store::RetryTask;
use crate::Error;

/// How the events of a retry begin: each instance sent back to `pending`
/// has it as its detail (`retry requested`, or with the task named), and
/// the run's `running` event too, with the count.
pub const RETRY_REQUESTED: &str = "retry requested";

impl Engine {
    /// Reopens a `failed` or `cancelled` run and puts its failed,
    /// cancelled and skipped instances back to `pending`: all of them, or
    /// (with `task`) those of that task and its descendants, except where
    /// an unsuccessful parent outside them would keep one waiting. Returns how
    /// many instances will run again, or `None` if the run was not failed
    /// or cancelled (another retry reopened it first, or it succeeded or
    /// is still open). Nothing is dispatched until [`Engine::advance`].
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn retry(&self, run_id: Uuid, task: Option<&str>) -> Result<Option<i64>, Error> {
        let run = self.store.get_run(run_id).await?;
        let wf = self.workflow(&run.workflow, Some(run.version)).await?;
        let selected: BTreeSet<String> = match task {
            None => wf.spec.tasks.keys().cloned().collect(),
            Some(t) if wf.spec.tasks.contains_key(t) => std::iter::once(t.to_owned())
                .chain(wf.dag.descendants(t))
                .collect(),
            Some(t) => {
                return Err(Error::Invalid(format!(
                    "workflow {:?} v{} has no task {t:?}",
                    run.workflow, run.version
                )))
            }
        };
        let reason = match task {
            None => RETRY_REQUESTED.to_owned(),
            Some(t) => format!("{RETRY_REQUESTED} (task {t} and its descendants)"),
        };
        let (wf, selected, reason) = (&wf, &selected, reason.as_str());
        let reopened = retry(TRANSIENT_DB, Error::is_transient, || async move {
            let mut tx = self.store.begin().await?;
            if !tx.reopen_run(run_id).await? {
                return Ok(None);
            }
            let counts = tx.task_status_counts(run_id).await?;
            let tasks = plan(wf, selected, &counts);
            let n = tx.retry_tasks(run_id, &tasks, reason, Utc::now()).await?;
            if n == 0 {
                // Dropping the transaction rolls the reopening back.
                return Err(Error::Invalid(format!(
                    "run {run_id} has no failed, cancelled or skipped task {}to retry",
                    task.map(|t| format!("in {t:?} or its descendants "))
                        .unwrap_or_default()
                )));
            }
            tx.notify_wake();
            tx.commit().await?;
            Ok(Some(n))
        })
        .await?;
        if let Some(n) = reopened {
            self.poke();
            tracing::info!(%run_id, tasks = n, task, "run reopened for a retry");
            metrics::counter!("ork_runs_retried_total").increment(1);
        }
        Ok(reopened)
    }
}

/// The selected tasks to reopen, in topological order, each with what
/// it waits for once reopened: its parents' instances that have not
/// succeeded (a `foreach` parent not yet expanded counts as one, as at
/// trigger). A task waiting for an unsuccessful parent that is not
/// reopened could never start: it is left as it ended, and so are its
/// descendants.
fn plan(
    wf: &Workflow,
    selected: &BTreeSet<String>,
    counts: &[(String, TaskStatus, i64)],
) -> Vec<RetryTask> {
    let mut rows: HashMap<&str, (i64, i64)> = HashMap::new(); // (instances, successes)
    for (name, status, n) in counts {
        let e = rows.entry(name.as_str()).or_default();
        e.0 += n;
        if *status == TaskStatus::Success {
            e.1 += n;
        }
    }
    let not_done = |name: &str| -> i64 {
        match rows.get(name) {
            Some((all, ok)) => all - ok,
            // No instance: a `foreach` task, expanded (to none) only if its
            // source parent succeeded.
            None => match wf.spec.tasks.get(name).and_then(|t| t.foreach_source()) {
                Some((source, _)) => i64::from(rows.get(source).is_none_or(|(all, ok)| ok < all)),
                None => 0,
            },
        }
    };
    let mut reopened: BTreeSet<&str> = BTreeSet::new();
    let mut tasks = Vec::with_capacity(selected.len());
    for name in wf.dag.topo_order().iter().filter(|n| selected.contains(*n)) {
        let parents = wf.dag.parents(name);
        let waits = |p: &String| not_done(p) > 0 && !reopened.contains(p.as_str());
        if parents.iter().any(waits) {
            continue;
        }
        reopened.insert(name);
        tasks.push(RetryTask {
            name: name.clone(),
            attempts: i64::from(wf.spec.tasks[name].retries.count) + 1,
            deps: parents.iter().map(|p| not_done(p)).sum(),
        });
    }
    tasks
}
