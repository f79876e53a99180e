//! End-to-end tests of the `apono-connector` binary (see the `[[test]]` targets) and the
//! `apono-quickstart-target` helper of `scripts/quickstart.sh`.
//!
//! The library holds what these tests and the `apono` CLI's tests share: [`connector_bin`],
//! a running connector ([`ConnectorConfig`], [`Connector`]), the TOML that points an `ssh`
//! integration at a test kit [`SshServer`] ([`ssh_secret_store`], [`ssh_server`]), an SSH
//! login ([`ssh_login`]) and an authenticated API call ([`call`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apono_testkit::SshServer;
use serde_json::Value;

pub mod deploy;

/// The `apono-connector` binary to test: `APONO_TEST_CONNECTOR_BIN` if set, else the workspace's
/// own, brought up to date first with `cargo build -p apono-connector` into the calling test's
/// own target directory and profile (`scripts/test.sh` runs the same build beforehand).
///
/// Binary-only packages cannot be dev-dependencies, and test builds do not link other packages'
/// binaries, so the test asks cargo itself: a no-op when the binary is fresh, a build otherwise
/// (cargo's lock serialises concurrent tests; it is not held while tests run). The outcome is
/// kept for the whole test process.
pub fn connector_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        build_bin(
            "APONO_TEST_CONNECTOR_BIN",
            "apono-connector",
            "apono-connector",
        )
        .map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// The `apono` CLI binary, as [`connector_bin`] finds the connector (`APONO_TEST_CLI_BIN`).
pub fn cli_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        build_bin("APONO_TEST_CLI_BIN", "apono-cli", "apono").map_err(|e| format!("{e:#}"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

fn build_bin(env: &str, package: &str, bin: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Ok(path.into());
    }
    cargo_build(&["-p", package, "--bin", bin], bin)
}

/// The example `name` of the `apono-examples` package (`examples/NAME.rs`), brought up to date
/// first with `cargo build --example` as [`connector_bin`] does for the connector.
pub fn example_bin(name: &str) -> Result<PathBuf> {
    cargo_build(
        &["-p", "apono-examples", "--example", name],
        &format!("examples/{name}"),
    )
}

/// Runs `cargo build ARGS` into the calling test's own target directory and profile, and
/// returns `target/<profile>/<output>`.
fn cargo_build(args: &[&str], output: &str) -> Result<PathBuf> {
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
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let mut build = Command::new(cargo);
    // Only the caller's toolchain carries over: variables cargo sets for the test itself
    // (features, package metadata) must not steer this build.
    build.env_clear();
    for (key, value) in std::env::vars_os() {
        let keep = matches!(
            key.to_string_lossy().as_ref(),
            "PATH" | "HOME" | "CARGO_HOME" | "RUSTUP_HOME" | "RUSTUP_TOOLCHAIN" | "TMPDIR"
        );
        if keep {
            build.env(key, value);
        }
    }
    let out = build
        .args(["build", "--quiet"])
        .args(args)
        .args(["--profile", profile, "--manifest-path", manifest])
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running cargo build {}", args.join(" ")))?;
    ensure!(
        out.status.success(),
        "cargo build {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = profile_dir.join(output);
    ensure!(bin.is_file(), "{} missing after cargo build", bin.display());
    Ok(bin)
}

/// A connector configuration written to `DIR/connector.toml` and accepted by `check-config`,
/// with a free loopback port for the API. The connector is not running yet: this is the time
/// for commands that open its database (`tokens create`; SQLite is one process's).
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// The `apono-connector` binary.
    pub bin: PathBuf,
    /// `DIR/connector.toml`.
    pub path: PathBuf,
    /// `http://127.0.0.1:PORT`, the API once started.
    pub url: String,
    /// `DIR/connector.log`: the connector's stderr, appended to by every start.
    pub log: PathBuf,
    addr: SocketAddr,
    run_env: Vec<(String, String)>,
    env: Vec<(String, String)>,
    hosts: Option<PathBuf>,
}

impl ConnectorConfig {
    /// Writes `template` with `{listen}` (a free `127.0.0.1:PORT`) and `{data}` (`DIR/data`)
    /// filled in, and runs `apono-connector check-config` on it.
    pub fn write(dir: &Path, template: &str) -> Result<Self> {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let text = template
            .replace("{listen}", &addr.to_string())
            .replace("{data}", &dir.join("data").display().to_string());
        let path = dir.join("connector.toml");
        std::fs::write(&path, text)?;
        let config = Self {
            bin: connector_bin()?,
            path,
            url: format!("http://{addr}"),
            log: dir.join("connector.log"),
            addr,
            run_env: Vec::new(),
            env: Vec::new(),
            hosts: None,
        };
        let check = config.command(&["check-config"]).output()?;
        ensure!(
            check.status.success(),
            "check-config: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        Ok(config)
    }

    /// `apono-connector ARGS --config PATH`, with [`ConnectorConfig::env`] and
    /// [`ConnectorConfig::hosts`] applied.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = match &self.hosts {
            // A private mount namespace whose /etc/hosts is the file given: `unshare` and `sh`
            // exec into the connector, so the child's pid is the connector's.
            Some(hosts) => {
                let mut cmd = Command::new("unshare");
                cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                    .arg(r#"mount --bind "$0" /etc/hosts && exec "$@""#)
                    .arg(hosts)
                    .arg(&self.bin);
                cmd
            }
            None => Command::new(&self.bin),
        };
        cmd.args(args).arg("--config").arg(&self.path);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Sets `key=value` in the environment of every command of this connector.
    pub fn env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Runs every command of this connector in a private mount namespace whose `/etc/hosts`
    /// adds `names`, each resolving to `127.0.0.1` (the test runs as root, as the SSH tests
    /// do); the host's own `/etc/hosts` is untouched.
    pub fn hosts(&mut self, names: &[&str]) -> Result<()> {
        let mut text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        for name in names {
            text.push_str(&format!("\n127.0.0.1 {name}\n"));
        }
        let path = self.path.with_file_name("hosts");
        std::fs::write(&path, text)?;
        self.hosts = Some(path);
        Ok(())
    }

    /// A personal token for `email` (`apono-connector tokens create`).
    pub fn token(&self, email: &str) -> Result<String> {
        let out = self
            .command(&["tokens", "create", "--user", email])
            .output()?;
        ensure!(
            out.status.success(),
            "tokens create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// Starts `apono-connector run` and waits until `/readyz` answers 200 (30 s at most).
    pub fn start(&self) -> Result<Connector> {
        let mut connector = Connector {
            child: self.spawn()?,
            url: self.url.clone(),
            config: self.clone(),
        };
        connector.wait_ready(Duration::from_secs(30))?;
        Ok(connector)
    }

    /// Sets `key=value` in the environment of `apono-connector run` (not of the other
    /// commands).
    pub fn run_env(&mut self, key: &str, value: &str) {
        self.run_env.push((key.to_owned(), value.to_owned()));
    }

    fn spawn(&self) -> Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        self.command(&["run"])
            .envs(self.run_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))
    }
}

/// A running `apono-connector run`, killed when dropped.
#[derive(Debug)]
pub struct Connector {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// What it runs with.
    pub config: ConnectorConfig,
    child: Child,
}

impl Connector {
    /// Writes `template` (see [`ConnectorConfig::write`]), creates a personal token for each
    /// of `users` (before the start) and starts the connector (see [`ConnectorConfig::start`]).
    pub fn start(dir: &Path, template: &str, users: &[&str]) -> Result<(Self, Vec<String>)> {
        let config = ConnectorConfig::write(dir, template)?;
        let tokens = users
            .iter()
            .map(|u| config.token(u))
            .collect::<Result<Vec<_>>>()?;
        Ok((config.start()?, tokens))
    }

    /// What the connector wrote to stderr so far (every start).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.config.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls `ready` until it holds, failing with the connector's log after `limit` or when
    /// the connector exits.
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

    /// Waits until `GET /readyz` answers 200.
    pub fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let addr = self.config.addr;
        self.wait(limit, || http_status(addr, "/readyz") == Some(200))
    }

    /// SIGKILL, and waits for the exit.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Kills the connector (SIGKILL) and starts it again at once, without waiting for
    /// readiness; the log is appended to.
    pub fn kill_and_restart(&mut self) -> Result<()> {
        self.kill()?;
        self.child = self.config.spawn()?;
        Ok(())
    }

    /// SIGTERM, and the exit status.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        let pid = i32::try_from(self.child.id()).context("pid")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        Ok(self.child.wait()?)
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status code of a plain `GET path` on `addr`, `None` when it cannot be had (yet).
fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).ok()?;
    // "HTTP/1.1 200"
    std::str::from_utf8(&head[9..]).ok()?.parse().ok()
}

/// The value of an `ssh` integration's `secret_store` for `server`: its admin key, inline.
pub fn ssh_secret_store(server: &SshServer) -> String {
    let key_b64 = data_encoding::BASE64.encode(server.admin_private_key().as_bytes());
    format!(r#"{{ apono = {{ parameters = {{ base64_private_key = "{key_b64}" }} }} }}"#)
}

/// One entry of an `ssh` integration's `config.servers`: `server` as `name`, with its admin
/// user and host key; `extra` is appended inside the braces (e.g. `, tags = { env = "test" }`).
pub fn ssh_server(server: &SshServer, name: &str, extra: &str) -> String {
    format!(
        r#"{{ name = "{name}", host = "{}", port = {}, user = "{}", host_key = "{}"{extra} }}"#,
        server.host(),
        server.port(),
        server.admin_user(),
        server.host_public_key().trim(),
    )
}

/// Whether `ssh -i KEY USER@server true` succeeds, trusting only the server's own host key.
pub fn ssh_login(server: &SshServer, key: &Path, user: &str) -> Result<bool> {
    let status = Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg(format!(
            "-oUserKnownHostsFile={}",
            server.known_hosts_path().display()
        ))
        .arg("-i")
        .arg(key)
        .args(["-p", &server.port().to_string()])
        .arg(format!("{user}@{}", server.host()))
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    Ok(status.success())
}

/// `METHOD url` with `token` as bearer and `body` as JSON, 10 s at most; the JSON answer of a
/// success, an error with the status and body otherwise.
pub async fn call(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<Value> {
    let mut req = client
        .request(method.parse()?, url)
        .header("authorization", format!("Bearer {token}"))
        .timeout(Duration::from_secs(10));
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    ensure!(status.is_success(), "{method} {url}: {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

/// A wall clock shifted at will, for `apono-connector run` only: libfaketime (Debian's
/// `libfaketime`, which `scripts/test.sh` installs) preloaded into the connector, reading its
/// offset from a file at most once a second. Both the wall clock and the monotonic clock move,
/// so the connector's timers and its due times agree. Nothing else is affected: the test, the
/// target servers and the other commands keep the real time.
#[derive(Debug)]
pub struct FakeClock {
    library: PathBuf,
    file: PathBuf,
}

impl FakeClock {
    /// A clock in `dir`, not shifted yet.
    pub fn new(dir: &Path) -> Result<Self> {
        let library = [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib/aarch64-linux-gnu",
            "/usr/lib",
        ]
        .iter()
        .map(|d| Path::new(d).join("faketime/libfaketime.so.1"))
        .find(|p| p.is_file())
        .context(
            "libfaketime.so.1 not found: install the Debian package libfaketime \
                 (scripts/test.sh does)",
        )?;
        let clock = Self {
            library,
            file: dir.join("faketime"),
        };
        clock.shift(Duration::ZERO)?;
        Ok(clock)
    }

    /// Shifts the clock to the real time plus `offset` (the connector sees it within a second).
    pub fn shift(&self, offset: Duration) -> Result<()> {
        // Written whole and renamed, so the library never reads half a line.
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("+{}\n", offset.as_secs()))?;
        std::fs::rename(&tmp, &self.file)?;
        Ok(())
    }

    /// Makes `config`'s `apono-connector run` use this clock.
    pub fn apply(&self, config: &mut ConnectorConfig) {
        config.run_env("LD_PRELOAD", &self.library.display().to_string());
        config.run_env("FAKETIME_TIMESTAMP_FILE", &self.file.display().to_string());
        config.run_env("FAKETIME_CACHE_DURATION", "1");
    }
}

/// A small deterministic generator (no extra dependency).
pub struct XorShift(pub u64);
impl XorShift {
    /// The next number below `below`.
    pub fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// What the connector granted that is still on `server`: `apono-managed` accounts and group
/// members, and key files naming a grant.
pub fn leftovers(server: &SshServer) -> Result<Vec<String>> {
    let mut found = Vec::new();
    let passwd = server.exec(&["getent", "passwd"])?;
    for line in String::from_utf8_lossy(&passwd.stdout).lines() {
        if line.contains("apono-managed") {
            found.push(format!("account: {line}"));
        }
    }
    let group = server.exec(&["getent", "group", "apono-managed"])?;
    let members = String::from_utf8_lossy(&group.stdout)
        .trim()
        .rsplit(':')
        .next()
        .unwrap_or("")
        .to_owned();
    if !members.is_empty() {
        found.push(format!("apono-managed members: {members}"));
    }
    let keys = server.exec(&["sh", "-c", "grep -rl grt_ /home 2>/dev/null || true"])?;
    for file in String::from_utf8_lossy(&keys.stdout).lines() {
        found.push(format!("key file still names a grant: {file}"));
    }
    Ok(found)
}
