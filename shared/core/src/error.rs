use uuid::Uuid;

use crate::spec::SpecError;

/// Errors of the core library. Messages are written for the person running Ork.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("workflow {0:?} not found (apply it first: `ork apply <file>`)")]
    WorkflowNotFound(String),
    #[error("run {0} not found")]
    RunNotFound(Uuid),
    #[error("no executor configured for `{0}` tasks")]
    NoExecutor(String),
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// Whether retrying the whole transaction may succeed: a PostgreSQL
    /// deadlock or serialization failure, or a dropped connection.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Database(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40P01") | Some("40001"))
            }
            Error::Database(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut) => true,
            _ => false,
        }
    }
}
