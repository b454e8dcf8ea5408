//! `gc`: retention. Runs that finished (succeeded, failed or were
//! cancelled) before a cutoff are deleted, each in one transaction with its
//! tasks and events, then their payloads and local logs. An open run is
//! never deleted: the delete is conditional on the run's row, so a retry
//! that reopens a run while a gc runs either comes first (the run stays) or
//! finds it gone (the retry answers "not found").

use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use super::{Engine, TRANSIENT_DB};
use crate::retry::retry;
use crate::Error;

/// How many candidate runs one read lists.
const GC_BATCH: i64 = 500;

/// What a [`Engine::gc`] deleted.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Collected {
    /// Runs deleted, with their rows.
    pub runs: u64,
    /// Objects deleted from the payload store (outputs, input documents).
    pub objects: u64,
    /// Payloads or logs of deleted runs that could not be removed: the
    /// runs are gone, what is named here is left over.
    pub errors: Vec<String>,
}

impl Engine {
    /// Deletes the runs that finished more than `older_than` ago, then
    /// their payloads (`outputs/<run>/`, `inputs/<run>/`, `uploads/<run>/`
    /// in the store, local or remote; input files in the local directory)
    /// and, with `log_dir`, their local logs (`<log_dir>/<run>/`).
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn gc(
        &self,
        older_than: Duration,
        log_dir: Option<&Path>,
    ) -> Result<Collected, Error> {
        let too_long = || Error::Invalid(format!("older_than: {older_than:?} is too long"));
        let age = chrono::Duration::from_std(older_than).map_err(|_| too_long())?;
        let cutoff = Utc::now().checked_sub_signed(age).ok_or_else(too_long)?;
        let mut collected = Collected::default();
        loop {
            let batch = self.store.finished_before(cutoff, GC_BATCH).await?;
            let mut deleted_any = false;
            for &run in &batch {
                let deleted = retry(TRANSIENT_DB, Error::is_transient, || async move {
                    let mut tx = self.store.begin().await?;
                    let deleted = tx.delete_finished_run(run, cutoff).await?;
                    tx.commit().await?;
                    Ok(deleted)
                })
                .await?;
                if !deleted {
                    continue;
                }
                deleted_any = true;
                collected.runs += 1;
                self.forget_run(run, log_dir, &mut collected).await;
            }
            // A short batch was the last; a batch of which nothing could be
            // deleted (all reopened or taken by another gc) would repeat.
            if batch.len() < GC_BATCH as usize || !deleted_any {
                break;
            }
        }
        if collected.runs > 0 {
            tracing::info!(
                runs = collected.runs,
                objects = collected.objects,
                "gc deleted runs"
            );
        }
        Ok(collected)
    }

    /// Removes a deleted run's payloads and logs; failures are recorded,
    /// not fatal (the rows are gone already).
    async fn forget_run(&self, run: Uuid, log_dir: Option<&Path>, collected: &mut Collected) {
        match self.config.payloads.forget_run(run).await {
            Ok(n) => collected.objects += n,
            Err(e) => {
                tracing::warn!(%run, error = %e, "gc: cannot delete the run's payloads");
                collected.errors.push(format!("run {run}: payloads: {e}"));
            }
        }
        let Some(dir) = log_dir else { return };
        match tokio::fs::remove_dir_all(dir.join(run.to_string())).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(%run, error = %e, "gc: cannot delete the run's logs");
                collected.errors.push(format!("run {run}: logs: {e}"));
            }
            _ => {}
        }
    }
}
