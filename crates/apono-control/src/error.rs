//! [`ControlError`]: why a control-plane operation failed.

use apono_core::ErrorKind;

/// Why a control-plane operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The database failed.
    #[error("database error while {context}")]
    Store {
        /// What was being done.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The caller is not authenticated.
    #[error("authentication required")]
    Unauthenticated,
    /// The caller may not do this.
    #[error("not permitted: {0}")]
    Forbidden(String),
    /// The thing asked for does not exist (or is not visible to the caller).
    #[error("{0} not found")]
    NotFound(String),
    /// The request is invalid; every problem is listed.
    #[error("invalid request: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// The request body is over the configured limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The operation does not fit the current state (approving a revoked request…).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Stored data does not parse (written by another version?).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A notification channel cannot be used (its secret cannot be read, or lacks a field);
    /// never names a secret's value.
    #[error("notification channel: {0}")]
    Notification(String),
    /// The master key cannot be loaded (missing, unreadable, malformed); never names the key.
    #[error("master key: {0}")]
    Key(String),
    /// The API's address cannot be listened on.
    #[error("cannot listen on {address} (connector.listen)")]
    Listen {
        /// The address.
        address: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The data directory (`connector.data_dir`) cannot be created or written.
    #[error("the data directory {} (connector.data_dir) {problem}", path.display())]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What is wrong and what to do.
        problem: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// An I/O operation failed.
    #[error("i/o error while {context}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl ControlError {
    pub(crate) fn store(context: &'static str, source: sqlx::Error) -> Self {
        Self::Store { context, source }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Store { .. }
            | Self::Io { .. }
            | Self::Key(_)
            | Self::Notification(_)
            | Self::Listen { .. }
            | Self::DataDir { .. } => ErrorKind::Unavailable,
            Self::Unauthenticated | Self::Forbidden(_) => ErrorKind::PermissionDenied,
            Self::NotFound(_) => ErrorKind::NotFound,
            Self::Invalid(_) | Self::Config(_) | Self::TooLarge(_) => ErrorKind::InvalidInput,
            Self::Conflict(_) => ErrorKind::Conflict,
            Self::Corrupt(_) => ErrorKind::Malformed,
        }
    }
}

impl From<apono_core::UnknownStatus> for ControlError {
    /// A stored status no version of this crate writes.
    fn from(e: apono_core::UnknownStatus) -> Self {
        Self::Corrupt(e.to_string())
    }
}
