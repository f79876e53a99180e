//! moto's mock of the AWS APIs (`moto_server`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::error::{Result, Server};
use crate::locate;
use crate::process::{self, LOOPBACK, ServerProcess};

const SERVER: Server = Server::Moto;

/// A private moto server on `127.0.0.1`, stopped when dropped.
///
/// It accepts any credentials; [`Self::aws_env`] gives the conventional fake ones.
pub struct Moto {
    // Dropped first: stop moto before its directory goes.
    process: ServerProcess,
    port: u16,
    python: PathBuf,
    _dir: TempDir,
}

impl Moto {
    /// The region [`Self::aws_env`] names.
    pub const REGION: &'static str = "us-east-1";

    /// Starts `moto_server` and waits until `GET /moto-api/` answers 200.
    pub fn start() -> Result<Self> {
        Self::launch(None)
    }

    /// Starts `moto_server` enforcing IAM after its first `unauthenticated_actions` requests
    /// (moto's `INITIAL_NO_AUTH_ACTION_COUNT`; the readiness probe is not one): those set up
    /// users, policies and access keys, and every later request is allowed or denied by the
    /// policies of the access key that signs it, as far as moto evaluates policies.
    pub fn start_enforcing_iam(unauthenticated_actions: u32) -> Result<Self> {
        Self::launch(Some(unauthenticated_actions))
    }

    fn launch(unauthenticated_actions: Option<u32>) -> Result<Self> {
        let moto_server = locate::program(SERVER, "moto_server")?;
        let python = interpreter_of(&moto_server);
        process::on_free_port(SERVER, |port| {
            let dir = process::temp_dir(SERVER)?;
            let mut command = Command::new(&moto_server);
            command
                .args(["-H", LOOPBACK, "-p", &port.to_string()])
                .env("HOME", dir.path())
                .env("PYTHONUNBUFFERED", "1")
                .current_dir(dir.path());
            if let Some(count) = unauthenticated_actions {
                command.env("INITIAL_NO_AUTH_ACTION_COUNT", count.to_string());
            }
            let mut process = ServerProcess::spawn(
                SERVER,
                command,
                dir.path().join("moto.log"),
                Signal::SIGTERM,
            )?;
            process.wait_ready(|| process::http_get_status(port, "/moto-api/") == Some(200))?;
            Ok(Self {
                process,
                port,
                python: python.clone(),
                _dir: dir,
            })
        })
    }

    /// `http://127.0.0.1:<port>`, the endpoint URL for every AWS service.
    pub fn endpoint_url(&self) -> String {
        format!("http://{LOOPBACK}:{}", self.port)
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Environment for AWS SDKs and CLIs: fake credentials (`testing`), [`Self::REGION`]
    /// and `AWS_ENDPOINT_URL` pointing at this server.
    pub fn aws_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_SESSION_TOKEN", "testing".to_owned()),
            ("AWS_DEFAULT_REGION", Self::REGION.to_owned()),
            ("AWS_REGION", Self::REGION.to_owned()),
            ("AWS_ENDPOINT_URL", self.endpoint_url()),
        ]
    }

    /// The Python interpreter `moto_server` runs on; it can import `boto3`.
    pub fn python_path(&self) -> &Path {
        &self.python
    }

    /// The server's log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }
}

impl fmt::Debug for Moto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Moto")
            .field("endpoint_url", &self.endpoint_url())
            .field("log_path", &self.log_path())
            .finish_non_exhaustive()
    }
}

/// The interpreter in the `#!` line of the `moto_server` script, or else the `python3`
/// beside it.
fn interpreter_of(script: &Path) -> PathBuf {
    let from_shebang = std::fs::read(script).ok().and_then(|bytes| {
        let line = bytes.split(|byte| *byte == b'\n').next()?;
        let line = std::str::from_utf8(line.strip_prefix(b"#!")?).ok()?;
        let interpreter = line.split_whitespace().next()?;
        // `#!/usr/bin/env python3` names no interpreter path.
        Some(PathBuf::from(interpreter)).filter(|path| path.is_file() && !path.ends_with("env"))
    });
    from_shebang.unwrap_or_else(|| script.with_file_name("python3"))
}
