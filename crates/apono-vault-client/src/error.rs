//! The client's errors.

use apono_core::{BoxError, ErrorKind};

/// Why an OpenBao operation failed.
///
/// Messages name the operation and, where there is one, the (non-secret) path; they never
/// contain tokens, passwords, secret data or OpenBao's own error strings (which may echo
/// request input). [`VaultError::kind`] says whether a retry can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The client's settings are invalid (address, CA certificate).
    #[error("invalid OpenBao client settings: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// A path, mount or name failed its grammar before anything was sent.
    #[error("invalid {what} {shown}: {reason}")]
    InvalidName {
        /// What kind of name (`secret path`, `mount`, `username`, `policy name`).
        what: &'static str,
        /// The input, escaped and shortened.
        shown: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The operation needs a token and the client has none (log in first).
    #[error("{operation} needs a token; log in first")]
    NoToken {
        /// The operation.
        operation: &'static str,
    },
    /// OpenBao could not be reached, or answered with a transient failure (5xx, 429).
    #[error("OpenBao at {address} is unavailable during {operation}")]
    Unavailable {
        /// The server's address.
        address: String,
        /// The operation.
        operation: &'static str,
        /// The transport error or the status, never a body.
        #[source]
        source: Option<BoxError>,
    },
    /// The token is invalid or its policies do not allow the operation (HTTP 401/403), or a
    /// login was refused.
    #[error("OpenBao denied {operation}{}", on(path))]
    PermissionDenied {
        /// The operation.
        operation: &'static str,
        /// The path, if the operation has one.
        path: Option<String>,
    },
    /// The thing asked for does not exist (HTTP 404 or an empty answer).
    #[error("{operation} found nothing{}", on(path))]
    NotFound {
        /// The operation.
        operation: &'static str,
        /// The path, if the operation has one.
        path: Option<String>,
    },
    /// A kv-v2 check-and-set did not match the current version.
    #[error(
        "{operation}{} lost a check-and-set race (the secret changed)",
        on(path)
    )]
    CasMismatch {
        /// The operation.
        operation: &'static str,
        /// The secret's path.
        path: Option<String>,
    },
    /// OpenBao refused the request as invalid (HTTP 400 and other 4xx).
    #[error("OpenBao rejected {operation}{} with HTTP {status}", on(path))]
    Rejected {
        /// The operation.
        operation: &'static str,
        /// The path, if the operation has one.
        path: Option<String>,
        /// The HTTP status.
        status: u16,
    },
    /// OpenBao answered something that does not parse as expected.
    #[error("OpenBao sent an unexpected answer to {operation}")]
    Malformed {
        /// The operation.
        operation: &'static str,
    },
    /// The operation's deadline passed.
    #[error("{operation} timed out")]
    Timeout {
        /// The operation.
        operation: &'static str,
    },
}

fn on(path: &Option<String>) -> String {
    path.as_deref()
        .map(|p| format!(" on {}", quote(p)))
        .unwrap_or_default()
}

/// Shortens and escapes untrusted text for a message.
pub(crate) fn quote(input: &str) -> String {
    const MAX: usize = 96;
    let mut shown: String = input.chars().take(MAX).collect();
    if shown.len() < input.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

impl VaultError {
    /// The kind of failure, for retry decisions.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config { .. } | Self::InvalidName { .. } | Self::Rejected { .. } => {
                ErrorKind::InvalidInput
            }
            Self::NoToken { .. } | Self::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::CasMismatch { .. } => ErrorKind::Conflict,
            Self::Malformed { .. } => ErrorKind::Malformed,
            Self::Timeout { .. } => ErrorKind::Timeout,
        }
    }

    /// Whether OpenBao refused the operation for lack of rights (or a refused login).
    pub fn is_permission_denied(&self) -> bool {
        self.kind() == ErrorKind::PermissionDenied
    }

    /// Whether the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind() == ErrorKind::NotFound
    }
}

/// Turns a transport or status description into a boxed source that carries no body.
pub(crate) fn described(text: impl Into<String>) -> Option<BoxError> {
    Some(text.into().into())
}
