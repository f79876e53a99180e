//! Helpers shared by the test binaries: run the real `apono` binary in a private home, and a
//! fake HTTP server. The real `apono-connector` binary comes from `apono_e2e`.
#![allow(dead_code, unreachable_pub, clippy::print_stderr)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result, ensure};

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

    /// The id of the first request waiting for this user's approval, if any.
    pub fn first_pending(&self) -> Option<String> {
        self.run(&["requests", "list", "--scope", "approvals", "-o", "json"])
            .ok()
            .and_then(|o| o.json().ok())
            .and_then(|v| v[0]["id"].as_str().map(str::to_owned))
    }

    /// Runs `apono ARGS` to completion.
    /// Waits (up to a minute) until this user sees resources of `resource_type` in
    /// `integration`: the connector's first discovery has run.
    pub fn wait_for_discovery(
        &self,
        connector: &mut apono_e2e::Connector,
        integration: &str,
        resource_type: &str,
    ) -> Result<()> {
        let args = [
            "inventory",
            "resources",
            "-i",
            integration,
            "-t",
            resource_type,
            "-o",
            "json",
        ];
        connector.wait(std::time::Duration::from_secs(60), || {
            self.run(&args)
                .ok()
                .and_then(|out| out.json().ok())
                .is_some_and(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        })
    }

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
