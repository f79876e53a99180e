//! What every launcher shares: a spawned server with a log file, readiness polling with a
//! deadline, stop-by-PID on drop, free ports, setup commands and random secrets.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::error::{Error, Result, Server};

/// How long a server may take to answer after it was spawned.
pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after its stop signal before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Pause between two readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How many free ports a launcher tries when another process takes the port first.
const PORT_ATTEMPTS: usize = 5;
/// How many log lines an error carries.
const TAIL_LINES: usize = 40;

/// The loopback address every server listens on.
pub(crate) const LOOPBACK: &str = "127.0.0.1";

/// A server process we spawned; stopped (and reaped) by PID when dropped.
#[derive(Debug)]
pub(crate) struct ServerProcess {
    server: Server,
    child: Child,
    log_path: PathBuf,
    stop_signal: Signal,
    /// The process the stop signal goes to: the child itself, or the process it runs the
    /// server in (the init process of the SSH server's PID namespace).
    stop_target: Pid,
}

impl ServerProcess {
    /// Spawns `command` with stdin closed and stdout and stderr appended to `log_path`.
    pub(crate) fn spawn(
        server: Server,
        mut command: Command,
        log_path: PathBuf,
        stop_signal: Signal,
    ) -> Result<Self> {
        let log = File::create(&log_path)
            .map_err(|source| io_error(server, format!("create {}", log_path.display()), source))?;
        let stderr = log
            .try_clone()
            .map_err(|source| io_error(server, "duplicate the log file handle", source))?;
        command.stdin(Stdio::null()).stdout(log).stderr(stderr);
        let child = command.spawn().map_err(|source| {
            io_error(
                server,
                format!("spawn {}", display_command(&command)),
                source,
            )
        })?;
        let stop_target = pid_of(child.id());
        Ok(Self {
            server,
            child,
            log_path,
            stop_signal,
            stop_target,
        })
    }

    /// Polls `probe` until it returns true, failing when the process exits first or the
    /// deadline passes.
    pub(crate) fn wait_ready(&mut self, mut probe: impl FnMut() -> bool) -> Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            self.ensure_running()?;
            // Check again after a successful probe: a server that lost its port races a
            // foreign server that now answers on it.
            if probe() && self.ensure_running().is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    server: self.server,
                    timeout: STARTUP_TIMEOUT,
                    log_tail: self.log_tail(),
                });
            }
            sleep(POLL_INTERVAL);
        }
    }

    /// Fails with [`Error::Exited`] when the process has exited.
    fn ensure_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                server: self.server,
                status: status.to_string(),
                log_tail: self.log_tail(),
            }),
            Err(source) => Err(io_error(self.server, "wait for the server process", source)),
        }
    }

    /// The PID of the process we spawned.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the stop signal to `pid` instead of to the spawned process.
    pub(crate) fn set_stop_target(&mut self, pid: u32) {
        self.stop_target = pid_of(pid);
    }

    /// The server's log file.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last lines of the log file.
    pub(crate) fn log_tail(&self) -> String {
        file_tail(&self.log_path)
    }

    /// An error about this server that carries the tail of its log.
    pub(crate) fn unusable(&self, what: &str) -> Error {
        Error::Unusable {
            server: self.server,
            reason: format!("{what}; its log ends with:\n{}", self.log_tail()),
        }
    }

    fn wait_until(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            match self.child.try_wait() {
                Ok(None) if Instant::now() < deadline => sleep(POLL_INTERVAL),
                Ok(None) | Err(_) => return None,
                Ok(Some(status)) => return Some(status),
            }
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // Errors are ignored: the process may have exited in the meantime.
        let _ = kill(self.stop_target, self.stop_signal);
        if self.wait_until(Instant::now() + STOP_GRACE).is_none() {
            let _ = kill(self.stop_target, Signal::SIGKILL);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn pid_of(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).expect("PIDs fit in i32"))
}

/// Runs `start` with a free loopback port, retrying with a new port while the server reports
/// that another process took the port first.
pub(crate) fn on_free_port<T>(
    server: Server,
    mut start: impl FnMut(u16) -> Result<T>,
) -> Result<T> {
    let mut attempt = 1;
    loop {
        match start(free_port(server)?) {
            Err(error) if error.is_port_conflict() && attempt < PORT_ATTEMPTS => attempt += 1,
            result => return result,
        }
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
pub(crate) fn free_port(server: Server) -> Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|source| io_error(server, "find a free port on 127.0.0.1", source))
}

/// Sends a raw HTTP/1.1 `GET path` to `127.0.0.1:port` and returns the status code.
pub(crate) fn http_get_status(port: u16, path: &str) -> Option<u16> {
    let timeout = Duration::from_secs(2);
    let mut stream =
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0_u8; 12];
    stream.read_exact(&mut head).ok()?;
    // "HTTP/1.1 200"
    std::str::from_utf8(head.get(9..12)?).ok()?.parse().ok()
}

/// A new temporary directory named after the server.
pub(crate) fn temp_dir(server: Server) -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("apono-testkit-{server}-"))
        .tempdir()
        .map_err(|source| io_error(server, "create a temporary directory", source))
}

/// Writes `contents` to `path` with permission bits `mode`.
pub(crate) fn write_file(server: Server, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let action = || format!("write {}", path.display());
    let mut file = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|source| io_error(server, action(), source))?;
    file.write_all(contents)
        .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode)))
        .map_err(|source| io_error(server, action(), source))
}

/// Reads a text file the launcher or the server wrote.
pub(crate) fn read_file(server: Server, path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|source| io_error(server, format!("read {}", path.display()), source))
}

/// Runs a preparation step to completion and fails unless it succeeds.
pub(crate) fn run(server: Server, command: &mut Command) -> Result<Output> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|source| io_error(server, format!("run {}", display_command(command)), source))?;
    if output.status.success() {
        return Ok(output);
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(Error::SetupFailed {
        server,
        command: display_command(command),
        status: output.status.to_string(),
        output_tail: tail(&text),
    })
}

/// `count` random bytes from the kernel, hex-encoded (safe in URLs, SQL and shell words).
pub(crate) fn random_hex(server: Server, count: usize) -> Result<String> {
    let mut bytes = vec![0_u8; count];
    File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut bytes))
        .map_err(|source| io_error(server, "read /dev/urandom", source))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Builds an [`Error::Io`].
pub(crate) fn io_error(server: Server, action: impl Into<String>, source: std::io::Error) -> Error {
    Error::Io {
        server,
        action: action.into(),
        source,
    }
}

/// The program and arguments of `command`, for error messages.
fn display_command(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last lines of a file, or a note saying why there are none.
fn file_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    // Only the end of a long log matters.
    let length = file.metadata().map_or(0, |metadata| metadata.len());
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(16 * 1024)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    tail(&String::from_utf8_lossy(&bytes))
}

/// The last [`TAIL_LINES`] lines of `text`.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    match lines.len() {
        0 => "(empty)".to_owned(),
        n => lines[n.saturating_sub(TAIL_LINES)..].join("\n"),
    }
}

/// Fails with [`Error::NotRoot`] unless the process runs as root.
pub(crate) fn require_root(server: Server) -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(Error::NotRoot { server })
    }
}

/// An operating-system account a server runs as.
pub(crate) struct OsUser {
    name: &'static str,
    uid: u32,
    gid: u32,
}

impl OsUser {
    /// Looks the account up in the host's user database.
    pub(crate) fn find(server: Server, name: &'static str) -> Result<Self> {
        let user = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .ok_or(Error::MissingUser { server, user: name })?;
        Ok(Self {
            name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        })
    }

    /// Makes the account the owner of `path`.
    pub(crate) fn own(&self, server: Server, path: &Path) -> Result<()> {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).map_err(|source| {
            io_error(
                server,
                format!("hand {} to {}", path.display(), self.name),
                source,
            )
        })
    }

    /// `program`, to be run as this account (with no supplementary groups).
    pub(crate) fn command(&self, program: &Path) -> Command {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(program);
        command.uid(self.uid).gid(self.gid);
        command
    }
}
