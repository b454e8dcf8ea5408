use uuid::Uuid;

use crate::spec::SpecError;

/// Errors of the core library. Messages are written for the person running Ork.
///
/// They fall in three groups, which the handlers answer differently:
/// the caller's mistakes ([`Error::is_user_error`]: a bad spec or request,
/// an unknown workflow or run), transient database failures
/// ([`Error::is_transient`]), and internal faults (everything else: the
/// database, a stored spec that no longer reads, a closed channel), whose
/// detail is for the log, not for the caller.
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
    /// The caller's input is wrong (a bad parameter, URL or path).
    #[error("{0}")]
    Invalid(String),
    /// Ork's own fault: a broken invariant, unreadable stored state.
    #[error("internal error: {0}")]
    Internal(String),
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

    /// Whether the caller named something that does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::WorkflowNotFound(_) | Error::RunNotFound(_))
    }

    /// Whether the caller's input is at fault (a spec or a request that does
    /// not validate), rather than Ork or its database.
    pub fn is_user_error(&self) -> bool {
        matches!(self, Error::Spec(_) | Error::Invalid(_))
    }
}
