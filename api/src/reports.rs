//! Group commit of worker reports. Each report is one transaction's
//! worth of work, and a database commits only so many transactions a
//! second (PostgreSQL here: about 6,300 one-row ones). So the reports that
//! arrive while a batch commits ([`MAX_FLUSHERS`]) wait, then go
//! together in the next one: [`Engine::report_all`], one transaction,
//! whatever their number (up to [`MAX_BATCH`]). Under no load a batch is
//! one report and nothing waits; under load, the commit rate no longer
//! bounds the report rate.
//!
//! The batch runs in its own task, so a caller that goes away (a closed
//! connection) never leaves the others without an answer; a panic in it
//! answers its batch with an error and the next report starts a new one.

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use ork_core::engine::{Engine, Reported};
use ork_core::executor::Completion;
use ork_core::Error;
use tokio::sync::oneshot;

use crate::advancer::Advancer;
use crate::waker::Waker;

/// Most reports recorded by one transaction.
pub const MAX_BATCH: usize = 512;

/// Batches in flight at once. Every batch updates its run's row (the
/// open-task count), as the last statement before its commit
/// (`Engine::record`): a second batch overlaps all its other statements
/// with the first one's, and waits for that row only while the first
/// commits.
pub const MAX_FLUSHERS: usize = 2;

type Answer = oneshot::Sender<Result<Reported, Error>>;

/// The reports waiting for the next batch, and how many batches run.
#[derive(Default)]
pub struct ReportQueue {
    inner: Arc<Mutex<Queue>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(Completion, Answer)>,
    flushers: usize,
}

/// What a batch needs after it commits: the runs it made ready are
/// advanced (before anyone is answered: with [`Advancer::Inline`] the
/// caller's Lambda invocation must not end first), the next due time
/// scheduled.
#[derive(Clone)]
pub struct After {
    pub engine: Arc<Engine>,
    pub advancer: Advancer,
    pub waker: Waker,
}

impl ReportQueue {
    /// Records one report, with whatever others arrive meanwhile.
    pub async fn report(
        &self,
        completion: Completion,
        after: impl FnOnce() -> After,
    ) -> Result<Reported, Error> {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut q = self.inner.lock().expect("poisoned");
            q.waiting.push((completion, tx));
            let lead = q.flushers < MAX_FLUSHERS;
            if lead {
                q.flushers += 1;
            }
            lead
        };
        if lead {
            tokio::spawn(flush(self.inner.clone(), after()));
        }
        rx.await.unwrap_or_else(|_| {
            Err(Error::Internal(
                "the report's batch failed (see the log)".into(),
            ))
        })
    }
}

/// Records batches until no report waits.
async fn flush(queue: Arc<Mutex<Queue>>, after: After) {
    loop {
        let batch: Vec<(Completion, Answer)> = {
            let mut q = queue.lock().expect("poisoned");
            if q.waiting.is_empty() {
                q.flushers -= 1;
                return;
            }
            let n = q.waiting.len().min(MAX_BATCH);
            q.waiting.drain(..n).collect()
        };
        let run = std::panic::AssertUnwindSafe(record(batch, &after)).catch_unwind();
        if run.await.is_err() {
            tracing::error!("recording a batch of reports panicked");
        }
    }
}

async fn record(batch: Vec<(Completion, Answer)>, after: &After) {
    let (completions, answers): (Vec<Completion>, Vec<Answer>) = batch.into_iter().unzip();
    metrics::histogram!("ork_report_batch_size").record(completions.len() as f64);
    let results: Vec<Result<Reported, Error>> = match commit(&completions, after).await {
        Ok(reported) => reported.into_iter().map(Ok).collect(),
        // One report's fault must not fail the others: alone, each gets
        // its own answer.
        Err(_) if completions.len() > 1 => {
            let mut results = Vec::with_capacity(completions.len());
            for c in &completions {
                let one = commit(std::slice::from_ref(c), after).await;
                results.push(one.map(|mut reported| reported.remove(0)));
            }
            results
        }
        Err(e) => vec![Err(e)],
    };
    crate::waker::schedule_wake(&after.engine, &after.waker).await;
    for (answer, result) in answers.into_iter().zip(results) {
        let _ = answer.send(result);
    }
}

/// One transaction for the reports (and the claim of what they made
/// ready, where this process dispatches), then that dispatched and the
/// other runs they made ready advanced.
async fn commit(completions: &[Completion], after: &After) -> Result<Vec<Reported>, Error> {
    let claim = after.advancer.dispatches_here();
    let (reported, done) = after.engine.report_all(completions, claim).await?;
    for released in done.released {
        after.advancer.dispatch(&after.engine, released).await;
    }
    for run in &done.to_advance {
        after.advancer.advance(&after.engine, *run).await;
    }
    Ok(reported)
}
