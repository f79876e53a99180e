//! Helpers shared by the test binaries: run the real `apono` binary in a private home,
//! a fake HTTP server, and the real `apono-connector` binary.
#![allow(dead_code, unreachable_pub, clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// A user of the CLI: a private `$HOME`, `$XDG_CONFIG_HOME` and `$XDG_CACHE_HOME`.
pub struct User {
    pub home: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl User {
    pub fn new() -> Result<Self> {
        let home = tempfile::tempdir()?;
        Ok(Self {
            env: Vec::new(),
            home,
        })
    }

    /// With `APONO_URL` and `APONO_TOKEN` set.
    pub fn with_env(url: &str, token: &str) -> Result<Self> {
        let mut user = Self::new()?;
        user.env.push(("APONO_URL".into(), url.into()));
        user.env.push(("APONO_TOKEN".into(), token.into()));
        Ok(user)
    }

    pub fn config_file(&self) -> PathBuf {
        self.home.path().join("config/apono/config.json")
    }

    pub fn key_dir(&self) -> PathBuf {
        self.home.path().join("cache/apono/keys")
    }

    /// `apono ARGS` in this user's environment and nothing else of the test's.
    pub fn apono(&self, args: &[&str]) -> Command {
        let mut cmd = self.command(env!("CARGO_BIN_EXE_apono"));
        cmd.args(args);
        cmd
    }

    /// `program` in this user's environment and nothing else of the test's.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .env("XDG_CACHE_HOME", self.home.path().join("cache"))
            .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `apono ARGS` to completion.
    pub fn run(&self, args: &[&str]) -> Result<Out> {
        let output = self
            .apono(args)
            .output()
            .with_context(|| format!("running apono {}", args.join(" ")))?;
        Ok(Out::from(args, output))
    }
}

/// What a run printed, and how it exited.
#[derive(Debug)]
pub struct Out {
    pub args: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    pub fn from(args: &[&str], output: Output) -> Self {
        Self {
            args: args.join(" "),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Exit 0; returns stdout.
    pub fn ok(&self) -> Result<&str> {
        ensure!(
            self.code == Some(0),
            "apono {} failed: {self:#?}",
            self.args
        );
        Ok(&self.stdout)
    }

    /// Exit 0 with JSON on stdout.
    pub fn json(&self) -> Result<serde_json::Value> {
        serde_json::from_str(self.ok()?)
            .with_context(|| format!("apono {}: stdout is not JSON: {self:#?}", self.args))
    }

    /// Exit `code` with exactly one line `error: …` on stderr that contains `needle`; no panic.
    pub fn error(&self, code: i32, needle: &str) -> Result<&str> {
        ensure!(
            self.code == Some(code),
            "apono {}: expected exit {code}: {self:#?}",
            self.args
        );
        let line = self.stderr.trim_end();
        ensure!(
            line.lines().count() == 1 && line.starts_with("error: "),
            "apono {}: expected one error line: {self:#?}",
            self.args
        );
        ensure!(
            !line.contains("panicked") && !line.contains("backtrace"),
            "apono {} panicked: {self:#?}",
            self.args
        );
        ensure!(
            line.contains(needle),
            "apono {}: expected {needle:?} in the error: {self:#?}",
            self.args
        );
        Ok(line)
    }
}

/// The permission bits of a file.
pub fn mode(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .permissions()
        .mode()
        & 0o777)
}

/// An axum server on a free loopback port, in its own thread; stops when dropped.
pub struct FakeServer {
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(router: axum::Router) -> Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr: SocketAddr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                axum::serve(listener, router)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        Ok(Self {
            url: format!("http://{addr}"),
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `apono-connector` binary: `$APONO_TEST_CONNECTOR_BIN` when set, else built by
/// `$CARGO build -p apono-connector` into this test's own target directory and profile.
///
/// Binary-only packages cannot be dev-dependencies, and `cargo nextest run --workspace` builds
/// only the binaries of packages with integration tests, so the test asks cargo itself: a no-op
/// when the binary is fresh, a build otherwise (cargo's lock serialises concurrent tests; it is
/// not held while tests run).
pub fn connector_bin() -> Result<PathBuf> {
    static BIN: std::sync::OnceLock<std::result::Result<PathBuf, String>> =
        std::sync::OnceLock::new();
    BIN.get_or_init(|| build_connector().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_connector() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("APONO_TEST_CONNECTOR_BIN") {
        return Ok(path.into());
    }
    // target/<profile>/deps/<this test>
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test executable is not in target/<profile>/deps")?;
    let target_dir = profile_dir.parent().context("no target directory")?;
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "-p",
            "apono-connector",
            "--profile",
            profile,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .output()
        .context("running cargo build -p apono-connector")?;
    ensure!(
        out.status.success(),
        "cargo build -p apono-connector failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = profile_dir.join("apono-connector");
    ensure!(bin.is_file(), "{} missing after cargo build", bin.display());
    Ok(bin)
}

/// A running `apono-connector run`, killed when dropped.
pub struct Connector {
    pub url: String,
    pub config: PathBuf,
    pub log: PathBuf,
    child: Child,
}

impl Connector {
    /// Writes `config` (with `{listen}` and `{data}` filled in), creates a personal token for
    /// each of `users` (before the start: SQLite is one process's) and starts the connector.
    pub fn start(dir: &Path, config: &str, users: &[&str]) -> Result<(Self, Vec<String>)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let text = config
            .replace("{listen}", &format!("127.0.0.1:{port}"))
            .replace("{data}", &dir.join("data").display().to_string());
        let config = dir.join("connector.toml");
        std::fs::write(&config, text)?;
        let bin = connector_bin()?;
        let check = Command::new(&bin)
            .arg("check-config")
            .arg("--config")
            .arg(&config)
            .output()?;
        ensure!(
            check.status.success(),
            "check-config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let tokens = users
            .iter()
            .map(|u| token(&bin, &config, u))
            .collect::<Result<Vec<_>>>()?;
        let log = dir.join("connector.log");
        let child = Command::new(&bin)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Ok((
            Self {
                url: format!("http://127.0.0.1:{port}"),
                config,
                log,
                child,
            },
            tokens,
        ))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `ready` until it holds, failing with the connector's log after `limit`.
    pub fn wait(&mut self, limit: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if ready() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("connector exited with {status}: {}", self.log_text());
            }
            if Instant::now() > deadline {
                bail!("connector not ready: {}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A personal token for `email` (`apono-connector tokens create`).
fn token(bin: &Path, config: &Path, email: &str) -> Result<String> {
    let out = Command::new(bin)
        .args(["tokens", "create", "--user", email, "--config"])
        .arg(config)
        .output()?;
    ensure!(
        out.status.success(),
        "tokens create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
