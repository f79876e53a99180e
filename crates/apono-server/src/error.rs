//! [`ServerError`]: why a connector could not be assembled, started or stopped.

use std::path::PathBuf;

use apono_control::{ConfigProblem, ControlError};
use apono_core::{BoxError, ErrorKind, SecretStoreKind};

/// Why a connector could not be assembled, started or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The configuration file could not be read.
    #[error("cannot read {}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration has problems; every one is listed, one per line.
    #[error("{} has {}:\n{}", path.display(), count(problems.len()), lines(problems))]
    Config {
        /// The file.
        path: PathBuf,
        /// Every problem, in file order.
        problems: Vec<ConfigProblem>,
    },
    /// An integration (or a `from_secret_store` entry of `HASHICORP_VAULT_CONFIG`) reads its
    /// secret from a store this build does not include, and none was given.
    #[error(
        "{needed_by} reads its secret from {kind}, but this connector was built without that \
         secret store (cargo feature `{feature}` of apono-server) and none was given"
    )]
    StoreNotBuilt {
        /// The store kind.
        kind: SecretStoreKind,
        /// The apono-server feature that builds it.
        feature: &'static str,
        /// Who needs it: `integration "servers"` or `HASHICORP_VAULT_CONFIG`.
        needed_by: String,
    },
    /// A secret store could not be set up (credentials, configuration, TLS roots).
    #[error("cannot set up the {store} secret store")]
    SecretStore {
        /// The store kind.
        store: SecretStoreKind,
        /// What kind of failure it is (`InvalidInput` for a bad `HASHICORP_VAULT_CONFIG`).
        failure: ErrorKind,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// The control plane failed (the store, bootstrap, the scheduler).
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The API's address could not be bound.
    #[error("cannot listen on {addr} (connector.listen)")]
    Listen {
        /// `connector.listen`.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The shutdown signal handlers could not be installed.
    #[error("cannot install the shutdown signal handlers")]
    Signal(#[source] std::io::Error),
    /// A `[[notifications]]` channel cannot be built.
    #[error("cannot set up notification channel {channel:?}: {message}")]
    Notification {
        /// The channel's name.
        channel: String,
        /// Why.
        message: String,
    },
    /// A task of the connector (scheduler or API server) panicked.
    #[error("the connector's {task} task failed")]
    Task {
        /// `scheduler` or `api`.
        task: &'static str,
        /// The join error.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl ServerError {
    /// The kind of failure: whether a retry (a restart) can help.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config { .. } | Self::StoreNotBuilt { .. } | Self::Notification { .. } => {
                ErrorKind::InvalidInput
            }
            Self::Control(e) => e.kind(),
            Self::SecretStore { failure, .. } => *failure,
            Self::ReadConfig { .. } | Self::Listen { .. } | Self::Signal(_) => {
                ErrorKind::Unavailable
            }
            Self::Task { .. } => ErrorKind::Internal,
        }
    }
}

fn count(n: usize) -> String {
    if n == 1 {
        "1 problem".to_owned()
    } else {
        format!("{n} problems")
    }
}

/// One problem per line, indented; a problem spanning lines (TOML's syntax errors point with a
/// caret) is indented on each.
fn lines(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {}", p.to_string().replace('\n', "\n  ")))
        .collect::<Vec<_>>()
        .join("\n")
}
