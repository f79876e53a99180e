//! A private MariaDB server.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::error::{Result, Server};
use crate::locate;
use crate::process::{self, LOOPBACK, OsUser, ServerProcess};

const SERVER: Server = Server::MariaDb;
/// The OS user `mariadbd` switches to.
const OS_USER: &str = "mysql";
const ADMIN_USER: &str = "apono";
/// Options for `mariadb-install-db` and `mariadbd`: small, and no Linux native AIO, whose
/// system-wide limit many parallel servers would exhaust.
const INNODB_OPTIONS: [&str; 3] = [
    "--innodb-use-native-aio=0",
    "--innodb-log-file-size=8M",
    "--innodb-buffer-pool-size=32M",
];

/// A private MariaDB server on `127.0.0.1`, stopped when dropped.
///
/// The data directory is created by `mariadb-install-db` in a temporary directory;
/// `mariadbd` runs as the `mysql` OS user, ignores every option file (`--no-defaults`) and
/// listens on loopback and on a socket in the temporary directory. [`Self::user`] is an
/// account `'apono'@'%'` with a random password and every privilege, `WITH GRANT OPTION`.
/// `root` can only log in through the socket as the OS root user (`unix_socket`).
pub struct MariaDb {
    // Dropped first: stop mariadbd before its directory goes.
    process: ServerProcess,
    port: u16,
    password: String,
    socket: PathBuf,
    client: PathBuf,
    _dir: TempDir,
}

impl MariaDb {
    /// Creates the data directory, starts the server and waits until `mariadb-admin ping`
    /// succeeds and the administrator can log in.
    pub fn start() -> Result<Self> {
        process::require_root(SERVER)?;
        let install_db = locate::program(SERVER, "mariadb-install-db")?;
        let mariadbd = locate::program(SERVER, "mariadbd")?;
        let admin = locate::program(SERVER, "mariadb-admin")?;
        let client = locate::program(SERVER, "mariadb")?;
        let user = OsUser::find(SERVER, OS_USER)?;

        let dir = process::temp_dir(SERVER)?;
        let root = dir.path();
        user.own(SERVER, root)?;
        let data = root.join("data");
        process::run(
            SERVER,
            Command::new(&install_db)
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--user={OS_USER}"))
                .args([
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ])
                .args(INNODB_OPTIONS)
                .current_dir(root),
        )?;
        let password = process::random_hex(SERVER, 16)?;
        // Run at every start, before the server accepts connections; one statement a line.
        let init = format!(
            "CREATE OR REPLACE USER '{ADMIN_USER}'@'%' IDENTIFIED BY '{password}';\n\
             GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'%' WITH GRANT OPTION;\n"
        );
        let init_file = root.join("init.sql");
        process::write_file(SERVER, &init_file, init.as_bytes(), 0o600)?;
        user.own(SERVER, &init_file)?;
        let socket = root.join("mariadbd.sock");

        let (process, port) = process::on_free_port(SERVER, |port| {
            let mut command = Command::new(&mariadbd);
            command
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}", socket.display()))
                .arg(format!(
                    "--pid-file={}",
                    root.join("mariadbd.pid").display()
                ))
                .arg(format!("--tmpdir={}", root.display()))
                .arg(format!("--init-file={}", init_file.display()))
                .arg(format!("--port={port}"))
                .arg(format!("--bind-address={LOOPBACK}"))
                .args(["--skip-networking=0", "--skip-name-resolve"])
                .arg(format!("--user={OS_USER}"))
                .args(INNODB_OPTIONS)
                .current_dir(root);
            let mut process =
                ServerProcess::spawn(SERVER, command, root.join("mariadbd.log"), Signal::SIGTERM)?;
            let mut ping = client_command(&admin, port, &password);
            ping.args(["--connect-timeout=2", "ping"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            process.wait_ready(|| ping.status().is_ok_and(|status| status.success()))?;
            Ok((process, port))
        })?;

        // `ping` succeeds even when the login is refused, and a failing init file does not
        // stop the server: check the administrator once.
        let mut login = client_command(&client, port, &password);
        login
            .args(["--batch", "--execute", "SELECT 1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if !login.status().is_ok_and(|status| status.success()) {
            return Err(
                process.unusable(&format!("the administrator `{ADMIN_USER}` cannot log in"))
            );
        }
        Ok(Self {
            process,
            port,
            password,
            socket,
            client,
            _dir: dir,
        })
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &str {
        LOOPBACK
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The administrator's name (`apono`).
    pub fn user(&self) -> &str {
        ADMIN_USER
    }

    /// The administrator's password (random per server).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `mysql://apono:<password>@127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!(
            "mysql://{ADMIN_USER}:{}@{LOOPBACK}:{}/",
            self.password, self.port
        )
    }

    /// The server's Unix socket (root logs in through it as `root`).
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The `mariadb` client connected over TCP as the administrator (`--no-defaults`, the
    /// password in `MYSQL_PWD`). Append more arguments, e.g.
    /// `["--batch", "--skip-column-names", "--execute", "SELECT 1"]`.
    pub fn client(&self) -> Command {
        client_command(&self.client, self.port, &self.password)
    }
}

/// `mariadb` or `mariadb-admin` aimed at `127.0.0.1:port` as the administrator.
fn client_command(program: &Path, port: u16, password: &str) -> Command {
    let mut command = Command::new(program);
    command
        .arg("--no-defaults")
        .args([
            "--protocol=tcp",
            "--host",
            LOOPBACK,
            "--port",
            &port.to_string(),
            "--user",
            ADMIN_USER,
        ])
        .env("MYSQL_PWD", password);
    command
}

impl fmt::Debug for MariaDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MariaDb")
            .field("port", &self.port)
            .field("user", &ADMIN_USER)
            .field("password", &"<redacted>")
            .field("log_path", &self.log_path())
            .finish_non_exhaustive()
    }
}
