//! [`ClientError`]: why a call to the connector, or a profile or key-cache operation, failed.

use apono_core::ErrorKind;

/// Why a call to the connector, or a profile or key-cache operation, failed.
///
/// Display strings are one line, lowercase, and never contain a token or a credential. Text the
/// connector sent is stripped of control characters and shortened before it is shown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connector URL does not parse or is not `http(s)`.
    #[error("{url:?} is not a connector URL (expected http://host:port or https://host)")]
    InvalidUrl {
        /// The URL as given (never contains a token).
        url: String,
    },
    /// Plain `http://` to a host that is not loopback: the token would cross the network in
    /// clear. Refused unless allowed explicitly.
    #[error(
        "refusing plain http to {url}, which is not a loopback address: the token would travel in clear; use https, or allow insecure http explicitly"
    )]
    InsecureUrl {
        /// The URL as given.
        url: String,
    },
    /// A CA certificate file does not hold a PEM certificate.
    #[error("{path} holds no PEM certificate")]
    CaCert {
        /// The file.
        path: String,
    },
    /// The connector could not be reached (connection refused, DNS, TLS).
    #[error("connector at {url} unreachable")]
    Unreachable {
        /// The connector's base URL.
        url: String,
        /// The transport error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The connector did not answer in time.
    #[error("connector at {url} did not answer in time")]
    Timeout {
        /// The connector's base URL.
        url: String,
    },
    /// The connector refused the personal token.
    #[error("the connector refused the personal token (unknown, revoked or expired)")]
    Unauthenticated,
    /// The caller may not do this.
    #[error("{message}")]
    Forbidden {
        /// The connector's explanation.
        message: String,
    },
    /// The thing asked for does not exist or is not visible to the caller.
    #[error("{message}")]
    NotFound {
        /// The connector's explanation, such as `request r-1 not found`.
        message: String,
    },
    /// The connector refused the request as invalid; every problem is listed.
    #[error("invalid request: {}", problems.join("; "))]
    Invalid {
        /// What is missing or wrong.
        problems: Vec<String>,
    },
    /// The operation does not fit the current state (approving a revoked request…).
    #[error("{message}")]
    Conflict {
        /// The connector's explanation.
        message: String,
    },
    /// The connector failed (HTTP 5xx) or answered with an unexpected status.
    #[error("connector at {url} failed (HTTP {status}): {message}")]
    Server {
        /// The connector's base URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The connector's explanation, if it gave one.
        message: String,
    },
    /// The answer does not have the shape of the connector API.
    #[error("unexpected answer from {url} (is it an Apono connector?): {what}")]
    Malformed {
        /// The connector's base URL.
        url: String,
        /// What was wrong with it.
        what: String,
    },
    /// Waiting for a request to settle took longer than allowed.
    #[error("request {id} is still {status} after {waited_seconds}s")]
    WaitTimeout {
        /// The request id.
        id: String,
        /// Its last status.
        status: String,
        /// How long the client waited.
        waited_seconds: u64,
    },
    /// A profile file or cached key could not be read or written.
    #[error("{context} {path}")]
    Io {
        /// What was being done, such as `writing`.
        context: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A profile file does not parse.
    #[error("{path} is not a valid apono profile file: {reason}")]
    ProfileFile {
        /// The file.
        path: String,
        /// What is wrong (never quotes the token).
        reason: String,
    },
    /// A value given by the user is invalid (a duration, a session id, a profile name).
    #[error("{0}")]
    Usage(String),
    /// The caller has no active access session on a vault integration.
    #[error("no active access session on {integration}{}", if *ended { " (your sessions there have ended)" } else { "" })]
    NoActiveSession {
        /// The integration's name.
        integration: String,
        /// Whether the caller had sessions there that are no longer active.
        ended: bool,
    },
    /// A session's one-time vault token was already shown, and no usable copy is cached on
    /// this machine.
    #[error(
        "the one-time vault token of session {session_id} was already shown and this machine holds no usable copy of it"
    )]
    CredentialsShown {
        /// The session id.
        session_id: String,
    },
    /// The vault refused an operation that the session's permission does not include.
    #[error("your access ({access}) does not allow {operation} on {path:?}")]
    VaultDenied {
        /// `list`, `fetch`, `create`, `update` or `delete`.
        operation: &'static str,
        /// The secret path (relative to the mount).
        path: String,
        /// The session's permission, resource type and resource.
        access: String,
    },
    /// `create` of a secret that exists.
    #[error("secret {path:?} already exists")]
    SecretExists {
        /// The secret path (relative to the mount).
        path: String,
    },
    /// No secret at that path.
    #[error("no secret {path:?}")]
    SecretNotFound {
        /// The secret path (relative to the mount).
        path: String,
    },
    /// Any other failure talking to the vault (OpenBao).
    #[error(transparent)]
    Vault(#[from] apono_vault_client::VaultError),
}

impl ClientError {
    /// The kind of failure; [`ErrorKind::is_retryable`] says whether trying again can help.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidUrl { .. }
            | Self::InsecureUrl { .. }
            | Self::CaCert { .. }
            | Self::Invalid { .. }
            | Self::Usage(_) => ErrorKind::InvalidInput,
            Self::Unreachable { .. } => ErrorKind::Unavailable,
            Self::Timeout { .. } | Self::WaitTimeout { .. } => ErrorKind::Timeout,
            Self::Unauthenticated | Self::Forbidden { .. } => ErrorKind::PermissionDenied,
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Conflict { .. } => ErrorKind::Conflict,
            Self::Server { status, .. } if *status >= 500 => ErrorKind::Unavailable,
            Self::Server { .. } => ErrorKind::Internal,
            Self::Malformed { .. } | Self::ProfileFile { .. } => ErrorKind::Malformed,
            Self::Io { .. } => ErrorKind::Internal,
            Self::NoActiveSession { .. }
            | Self::CredentialsShown { .. }
            | Self::VaultDenied { .. } => ErrorKind::PermissionDenied,
            Self::SecretExists { .. } => ErrorKind::Conflict,
            Self::SecretNotFound { .. } => ErrorKind::NotFound,
            Self::Vault(e) => e.kind(),
        }
    }
}

/// Makes text from the network safe to print on one line: control characters become spaces,
/// and it is cut to `max` characters.
pub(crate) fn sanitize(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_strips_control_characters_and_shortens() {
        assert_eq!(sanitize("a\x1b[31mb\nc", 100), "a [31mb c");
        assert_eq!(sanitize("abcdef", 3), "abc…");
    }

    #[test]
    fn kinds() {
        assert_eq!(
            ClientError::Unauthenticated.kind(),
            ErrorKind::PermissionDenied
        );
        assert!(
            ClientError::Timeout { url: "u".into() }
                .kind()
                .is_retryable()
        );
    }
}
