//! The state store: the only module that writes SQL.
//!
//! One [`Store`] serves PostgreSQL (production) and SQLite (the embedded
//! default) with the same statements (`statements.rs`, run by `sql.rs`).
//! Reads are public [`Store`] methods; every change goes through a `Tx`
//! (crate-private: the engine is the only writer), whose methods each
//! append the matching rows to `events`, so a state change and its record
//! commit or roll back together.
//!
//! Concurrency: on PostgreSQL, claims lock rows with `FOR UPDATE SKIP LOCKED`
//! and every transition is a conditional `UPDATE` on the expected status and
//! attempt; on SQLite, write transactions are `BEGIN IMMEDIATE` on a single
//! writer connection, so they are serialized within a process and across
//! processes by SQLite's lock.

#[cfg(test)]
mod contract_tests;
mod gc;
mod limits;
pub mod reads;
pub(crate) mod sql;
mod statements;
mod statistics;
mod template;
mod writes;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};

pub(crate) use limits::{ClaimLimits, RateGate, RunGate, TaskGate};
use sql::Conn;
pub use sql::Dialect;
pub use statistics::ANALYZE_AFTER;
pub(crate) use writes::{
    AttemptResult, Claim, ClaimedTask, Finish, Finished, NewTask, RetryTask, Started,
};

use crate::Error;

/// Where the embedded SQLite database lives unless told otherwise.
pub const DEFAULT_SQLITE_PATH: &str = ".ork/ork.db";

pub(crate) static PG_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/postgres");
pub(crate) static SQLITE_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("../../migrations/sqlite");

/// How often a SQLite host checks whether another process committed.
pub const SQLITE_WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// Pool sizes and timeouts.
/// A row of one id: what the statements that list ids answer.
#[derive(sqlx::FromRow)]
struct IdRow {
    id: uuid::Uuid,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    /// SQLite: the most connections reading beside the writer (at most
    /// `max_connections`). Each one parses the schema when it opens.
    pub sqlite_readers: u32,
    pub acquire_timeout: Duration,
    /// Bring the schema up to date on connect. Deployed handlers may turn
    /// it off (`ORK_MIGRATE=false`) and migrate once per deploy
    /// (`ork init`), which spares every cold start the check.
    pub migrate: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 16,
            sqlite_readers: 8,
            acquire_timeout: Duration::from_secs(30),
            migrate: std::env::var("ORK_MIGRATE").map_or(true, |v| v != "false"),
        }
    }
}

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Postgres(PgPool),
    /// SQLite allows one writer at a time: writes share one connection (so
    /// they queue in-process instead of spinning on `SQLITE_BUSY`), reads
    /// use the others, which WAL lets run alongside the writer.
    Sqlite {
        reader: SqlitePool,
        writer: SqlitePool,
    },
}

/// The database URL from the environment: `ORK_DATABASE_URL`, else
/// `DATABASE_URL`, else the embedded SQLite file.
pub fn database_url_from_env() -> String {
    std::env::var("ORK_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| format!("sqlite:{DEFAULT_SQLITE_PATH}"))
}

impl Store {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Store, Error> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    pub async fn connect_with(url: &str, opts: &StoreOptions) -> Result<Store, Error> {
        let backend = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections)
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(options)
                .await?;
            if opts.migrate {
                PG_MIGRATIONS.run(&pool).await?;
            }
            Backend::Postgres(pool)
        } else if let Some(path) = url.strip_prefix("sqlite:") {
            let path = path.trim_start_matches("//");
            if let Some(dir) = Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Error::Invalid(format!("cannot create {}: {e}", dir.display())))?;
            }
            // Where there is no copy (no hard links here, say), the
            // migrations make the schema as they would have.
            let from_template = opts.migrate
                && template::create(Path::new(path)).unwrap_or_else(|e| {
                    tracing::debug!(error = %e, path, "no copy of the schema template");
                    false
                });
            let options = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(opts.acquire_timeout);
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(options.clone())
                .await?;
            if opts.migrate && !from_template {
                SQLITE_MIGRATIONS.run(&writer).await?;
            }
            let reader = SqlitePoolOptions::new()
                .max_connections(opts.sqlite_readers.clamp(1, opts.max_connections.max(1)))
                .acquire_timeout(opts.acquire_timeout)
                .connect_with(options)
                .await?;
            Backend::Sqlite { reader, writer }
        } else {
            return Err(Error::Invalid(format!(
                "unsupported database URL {url:?}: expected postgres://… or sqlite:PATH"
            )));
        };
        Ok(Store { backend })
    }

    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Postgres(_) => Dialect::Postgres,
            Backend::Sqlite { .. } => Dialect::Sqlite,
        }
    }

    /// Starts a write transaction.
    pub(crate) async fn begin(&self) -> Result<Tx, Error> {
        Ok(match &self.backend {
            Backend::Postgres(pool) => Tx::new(TxDb::Postgres(pool.begin().await?)),
            Backend::Sqlite { writer, .. } => {
                Tx::new(TxDb::Sqlite(writer.begin_with("BEGIN IMMEDIATE").await?))
            }
        })
    }

    async fn reader(&self) -> Result<Pooled, Error> {
        Ok(match &self.backend {
            Backend::Postgres(pool) => Pooled::Postgres(pool.acquire().await?),
            Backend::Sqlite { reader, .. } => Pooled::Sqlite(reader.acquire().await?),
        })
    }

    /// Pokes `wake` whenever another process may have changed the
    /// database (a CLI `ork trigger`, another host's completion), from a
    /// task of its own, until the returned handle is aborted:
    ///
    /// - PostgreSQL: `LISTEN` on [`statements::WAKE_CHANNEL`], which trigger
    ///   and complete transactions `NOTIFY`; it costs no query while idle.
    ///   A lost connection also pokes (notifications may have been missed).
    /// - SQLite has no notifications: a dedicated connection polls
    ///   `PRAGMA data_version` every [`SQLITE_WATCH_INTERVAL`], which changes
    ///   when another connection commits. It is not a transaction and reads
    ///   no table (cheaper and more exact than watching the `-wal` file's
    ///   mtime, which checkpoints also touch).
    pub async fn watch(
        &self,
        wake: std::sync::Arc<tokio::sync::Notify>,
    ) -> Result<tokio::task::JoinHandle<()>, Error> {
        match &self.backend {
            Backend::Postgres(pool) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(statements::WAKE_CHANNEL).await?;
                Ok(tokio::spawn(async move {
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(_)) => wake.notify_one(),
                            // Reconnecting: what was sent meanwhile is lost.
                            Ok(None) => wake.notify_one(),
                            Err(e) => {
                                tracing::warn!(error = %e, "LISTEN connection failed");
                                tokio::time::sleep(SQLITE_WATCH_INTERVAL).await;
                            }
                        }
                    }
                }))
            }
            Backend::Sqlite { reader, .. } => {
                #[derive(sqlx::FromRow)]
                struct Version {
                    data_version: i64,
                }
                let mut conn = reader.acquire().await?.detach();
                Ok(tokio::spawn(async move {
                    let mut last = None;
                    let mut ticker = tokio::time::interval(SQLITE_WATCH_INTERVAL);
                    loop {
                        ticker.tick().await;
                        let sql = sql::Sql::new(statements::SQLITE_DATA_VERSION);
                        match Conn::Sqlite(&mut conn).fetch_optional::<Version>(sql).await {
                            Ok(v) => {
                                let v = v.map(|v| v.data_version);
                                if last.is_some() && v != last {
                                    wake.notify_one();
                                }
                                last = v;
                            }
                            Err(e) => tracing::warn!(error = %e, "PRAGMA data_version failed"),
                        }
                    }
                }))
            }
        }
    }

    /// Closes the pools, waiting for connections in use to come back.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Postgres(pool) => pool.close().await,
            Backend::Sqlite { reader, writer } => {
                reader.close().await;
                writer.close().await;
            }
        }
    }
}

enum Pooled {
    Postgres(PoolConnection<Postgres>),
    Sqlite(PoolConnection<Sqlite>),
}

impl Pooled {
    fn conn(&mut self) -> Conn<'_> {
        match self {
            Pooled::Postgres(c) => Conn::Postgres(c),
            Pooled::Sqlite(c) => Conn::Sqlite(c),
        }
    }
}

/// A write transaction. Dropped without [`Tx::commit`], it rolls back.
pub(crate) struct Tx {
    db: TxDb,
    /// The events of its steps, written when it commits.
    events: writes::EventLog,
}

enum TxDb {
    Postgres(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

impl Tx {
    fn new(db: TxDb) -> Tx {
        Tx {
            db,
            events: writes::EventLog::default(),
        }
    }

    fn conn(&mut self) -> Conn<'_> {
        self.parts().0
    }

    /// The connection, and the events to write at commit.
    fn parts(&mut self) -> (Conn<'_>, &mut writes::EventLog) {
        let conn = match &mut self.db {
            TxDb::Postgres(t) => Conn::Postgres(t),
            TxDb::Sqlite(t) => Conn::Sqlite(t),
        };
        (conn, &mut self.events)
    }

    /// Writes the events logged so far: at commit, and before a statement
    /// that reads or deletes events.
    async fn write_events(&mut self) -> Result<(), Error> {
        let (mut c, events) = self.parts();
        events.write(&mut c).await
    }

    pub(crate) async fn commit(mut self) -> Result<(), Error> {
        self.write_events().await?;
        match self.db {
            TxDb::Postgres(t) => t.commit().await?,
            TxDb::Sqlite(t) => t.commit().await?,
        }
        Ok(())
    }
}
