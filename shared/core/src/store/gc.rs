//! Retention: finished runs deleted with their rows (docs/operations.md).

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::sql::Sql;
use super::statements::{
    DELETE_FINISHED_RUN, DELETE_RUN_EVENTS, DELETE_RUN_TASKS, FINISHED_BEFORE,
};
use super::{IdRow, Store, Tx};
use crate::Error;

impl Store {
    /// Up to `limit` runs that finished before `cutoff`, oldest first:
    /// candidates for [`Tx::delete_finished_run`], which checks again.
    pub(crate) async fn finished_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Uuid>, Error> {
        let rows: Vec<IdRow> = self
            .read_all(Sql::new(FINISHED_BEFORE).bind(cutoff).bind(limit))
            .await?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }
}

impl Tx {
    /// Deletes a run that is still finished before `cutoff`, with its
    /// groups (by cascade), its tasks and its events. The run's row goes
    /// first and on that condition: a retry that reopened it meanwhile (or
    /// a racing deleter) leaves it be, and the answer is `false`. On
    /// PostgreSQL the delete and a retry's reopening lock the same row, and
    /// the later one sees what the first committed.
    pub(crate) async fn delete_finished_run(
        &mut self,
        run: Uuid,
        cutoff: DateTime<Utc>,
    ) -> Result<bool, Error> {
        self.write_events().await?;
        let mut c = self.conn();
        let deleted = c
            .execute(Sql::new(DELETE_FINISHED_RUN).bind(run).bind(cutoff))
            .await?;
        if deleted == 0 {
            return Ok(false);
        }
        c.execute(Sql::new(DELETE_RUN_TASKS).bind(run)).await?;
        c.execute(Sql::new(DELETE_RUN_EVENTS).bind(run)).await?;
        Ok(true)
    }
}
