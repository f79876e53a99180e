//! A private PostgreSQL cluster.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::error::{Result, Server};
use crate::locate;
use crate::process::{self, LOOPBACK, OsUser, ServerProcess, io_error};

const SERVER: Server = Server::Postgres;
/// The OS user the cluster runs as (PostgreSQL refuses to run as root).
const OS_USER: &str = "postgres";
const SUPERUSER: &str = "apono";
const DATABASE: &str = "postgres";

/// A private PostgreSQL cluster on `127.0.0.1`, stopped (fast shutdown) when dropped.
///
/// The cluster is created by `initdb` in a temporary directory and runs as the `postgres`
/// OS user. It accepts TCP connections on loopback only, with `scram-sha-256` password
/// authentication for every user including the superuser [`Self::superuser`]; its Unix
/// socket lives in the temporary directory.
pub struct Postgres {
    // Dropped first: stop postgres before its directory goes.
    process: ServerProcess,
    port: u16,
    password: String,
    psql: PathBuf,
    _dir: TempDir,
}

impl Postgres {
    /// Creates the cluster, starts it and waits until `pg_isready` succeeds.
    pub fn start() -> Result<Self> {
        process::require_root(SERVER)?;
        let initdb = locate::program(SERVER, "initdb")?;
        let postgres = locate::program(SERVER, "postgres")?;
        let pg_isready = locate::program(SERVER, "pg_isready")?;
        let psql = locate::program(SERVER, "psql")?;
        let user = OsUser::find(SERVER, OS_USER)?;

        let dir = process::temp_dir(SERVER)?;
        let root = dir.path();
        user.own(SERVER, root)?;
        let password = process::random_hex(SERVER, 16)?;
        let password_file = root.join("superuser-password");
        process::write_file(SERVER, &password_file, password.as_bytes(), 0o600)?;
        user.own(SERVER, &password_file)?;
        let data = root.join("data");
        let as_postgres = |program: &Path| {
            let mut command = user.command(program);
            command.current_dir(root).env("HOME", root);
            command
        };
        process::run(
            SERVER,
            as_postgres(&initdb)
                .arg("--pgdata")
                .arg(&data)
                .args([
                    "--username",
                    SUPERUSER,
                    "--auth",
                    "scram-sha-256",
                    "--encoding",
                    "UTF8",
                ])
                .args(["--locale", "C", "--no-sync"])
                .arg(format!("--pwfile={}", password_file.display())),
        )?;
        std::fs::remove_file(&password_file)
            .map_err(|source| io_error(SERVER, "remove the password file", source))?;

        let (process, port) = process::on_free_port(SERVER, |port| {
            let mut command = as_postgres(&postgres);
            command
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string()])
                .args(["-c", &format!("listen_addresses={LOOPBACK}")])
                .args(["-c", &format!("unix_socket_directories={}", root.display())])
                // A throw-away cluster: no durability, little memory.
                .args([
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ])
                .args(["-c", "shared_buffers=16MB", "-c", "max_connections=50"]);
            // SIGINT is PostgreSQL's "fast" shutdown: it does not wait for clients.
            let mut process =
                ServerProcess::spawn(SERVER, command, root.join("postgres.log"), Signal::SIGINT)?;
            let mut ready = Command::new(&pg_isready);
            ready
                .args(["-q", "-h", LOOPBACK, "-p", &port.to_string(), "-t", "2"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            process.wait_ready(|| ready.status().is_ok_and(|status| status.success()))?;
            Ok((process, port))
        })?;
        Ok(Self {
            process,
            port,
            password,
            psql,
            _dir: dir,
        })
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &str {
        LOOPBACK
    }

    /// The TCP port the cluster listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's name (`apono`).
    pub fn superuser(&self) -> &str {
        SUPERUSER
    }

    /// The superuser's password (random per server).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The database that always exists (`postgres`).
    pub fn database(&self) -> &str {
        DATABASE
    }

    /// `postgres://apono:<password>@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@{LOOPBACK}:{}/{DATABASE}",
            self.password, self.port
        )
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// `psql` connected over TCP as the superuser (`PGHOST`, `PGPORT`, `PGUSER`,
    /// `PGPASSWORD` and `PGDATABASE` set; `-X -v ON_ERROR_STOP=1`). Append more arguments,
    /// e.g. `["-tA", "-c", "SELECT 1"]`.
    pub fn psql(&self) -> Command {
        let mut command = Command::new(&self.psql);
        command
            .args(["-X", "-v", "ON_ERROR_STOP=1"])
            .env("PGHOST", LOOPBACK)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", SUPERUSER)
            .env("PGPASSWORD", &self.password)
            .env("PGDATABASE", DATABASE)
            .env_remove("PGSERVICE")
            .env_remove("PGPASSFILE");
        command
    }
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres")
            .field("port", &self.port)
            .field("superuser", &SUPERUSER)
            .field("password", &"<redacted>")
            .field("log_path", &self.log_path())
            .finish_non_exhaustive()
    }
}
