use std::fmt;

/// A task's result: its output, or why it failed.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a task failed, and whether trying again may help.
///
/// Any `std::error::Error` converts into a retryable `Error`, so `?` works
/// on I/O, HTTP or parse errors; say [`Error::fail`] for failures a retry
/// cannot fix.
pub struct Error {
    message: String,
    retryable: bool,
}

impl Error {
    /// An ordinary failure: retried per the task's `retries`.
    pub fn retry(message: impl fmt::Display) -> Self {
        Error {
            message: message.to_string(),
            retryable: true,
        }
    }

    /// A failure retries cannot fix (bad input, a missing table): the task
    /// fails at once, its retries unspent.
    pub fn fail(message: impl fmt::Display) -> Self {
        Error {
            message: message.to_string(),
            retryable: false,
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(e: E) -> Self {
        Error::retry(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("message", &self.message)
            .field("retryable", &self.retryable)
            .finish()
    }
}
