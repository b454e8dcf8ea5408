//! The planner's statistics after a bulk insert (PostgreSQL).
//!
//! A trigger inserts a run's instances in one transaction, up to
//! `ORK_MAX_INSTANCES` rows of `tasks` and `task_groups`. Until the tables
//! are next analyzed (autovacuum looks once a minute), the planner knows
//! nothing of `run_id`'s values and takes one run's rows for 0.5 % of the
//! table: the statements that join a batch of `VALUES` to a run's rows
//! (the start of 64 attempts, a report's countdown of 23 groups) scanned
//! all 20,000 rows of the run, 3–9 ms each, instead of 23 or 64 lookups by
//! key. So a trigger that grows the tables by a good part of what they
//! held when last analyzed analyzes them, in the background, from a small
//! sample (3,000 rows: 8 ms for 20,000 rows of each table, 45 ms with the
//! default's 30,000); autovacuum later analyzes them with its own.
//!
//! Measured (`--bench http`, 20,000 completions paced at 2,500/s, each
//! run on a fresh database, the builds in turns, six runs each):
//! completion → child p99 23.5–35.8 ms (median 31.7) before, 17.2–23.6 ms
//! (median 18.5) after. The slow pairs were those of the first 3 s, while
//! the trigger's 10,000 parents were still being dispatched.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{statements, Backend, Store};

/// Fewer new instances than this never make a plan go wrong by much.
pub const ANALYZE_AFTER: u64 = 1_000;

/// One `ANALYZE` at a time per process: a burst of big triggers needs one.
static ANALYZING: AtomicBool = AtomicBool::new(false);

impl Store {
    /// After a transaction that inserted `inserted` instances: analyzes
    /// `tasks` and `task_groups` in a task of its own when they are that
    /// much larger than at their last analysis (more than half as large
    /// again, or never analyzed). PostgreSQL only; SQLite plans these
    /// statements by their keys without statistics.
    pub fn refresh_statistics(&self, inserted: u64) {
        let Backend::Postgres(pool) = &self.backend else {
            return;
        };
        if inserted < ANALYZE_AFTER || ANALYZING.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            let analyzed = async {
                let reltuples: f32 = sqlx::query_scalar(statements::TASKS_RELTUPLES)
                    .fetch_one(&pool)
                    .await?;
                // -1 when never analyzed.
                let stale = inserted as f64 > f64::from(reltuples.max(0.0)) / 2.0;
                if stale {
                    let mut tx = pool.begin().await?;
                    sqlx::query(statements::ANALYZE_SAMPLE)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(statements::ANALYZE_RUN_TABLES)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                }
                Ok::<bool, sqlx::Error>(stale)
            };
            match analyzed.await {
                Ok(true) => tracing::debug!(inserted, "tasks analyzed"),
                Ok(false) => {}
                // Autovacuum will do it; the plans are slower meanwhile.
                Err(e) => tracing::warn!(error = %e, "cannot analyze the tasks tables"),
            }
            ANALYZING.store(false, Ordering::SeqCst);
        });
    }
}
