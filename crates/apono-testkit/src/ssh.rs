//! OpenSSH `sshd` in a private mount and PID namespace.

use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::error::{Error, Result, Server};
use crate::locate;
use crate::process::{self, ServerProcess, io_error};

const SERVER: Server = Server::Sshd;
/// The administrator account created inside the namespace.
const ADMIN_USER: &str = "apono";
/// Where [`SshServerBuilder::trusted_user_ca_key`] lines go inside the namespace.
const TRUSTED_USER_CA_KEYS: &str = "/etc/ssh/apono_trusted_user_ca_keys";
/// The directories that are private to the namespace; files may only be installed there.
const PRIVATE_DIRS: [&str; 6] = ["/etc", "/home", "/root", "/run", "/var/lib", "/var/log"];

/// Options for an [`SshServer`] that must be in place before `sshd` starts.
#[derive(Debug, Clone, Default)]
pub struct SshServerBuilder {
    listen: Option<Ipv4Addr>,
    trusted_user_ca_keys: Vec<String>,
    config_lines: Vec<String>,
    files: Vec<PrivateFile>,
}

#[derive(Debug, Clone)]
struct PrivateFile {
    path: PathBuf,
    contents: Vec<u8>,
    mode: u32,
}

impl SshServerBuilder {
    /// Trusts user certificates signed by this CA: the public key line (`ssh-ed25519 AAAA…`)
    /// is written to a file that `sshd_config`'s `TrustedUserCAKeys` names. May be repeated.
    pub fn trusted_user_ca_key(mut self, public_key_line: impl Into<String>) -> Self {
        self.trusted_user_ca_keys.push(public_key_line.into());
        self
    }

    /// Listens on `address` (an address of this host, such as the host side of a test
    /// network namespace's veth pair) instead of `127.0.0.1`.
    pub fn listen_address(mut self, address: Ipv4Addr) -> Self {
        self.listen = Some(address);
        self
    }

    fn address(&self) -> Ipv4Addr {
        self.listen.unwrap_or(Ipv4Addr::LOCALHOST)
    }

    /// Appends a directive to the generated `sshd_config`, e.g.
    /// `AuthorizedPrincipalsFile /etc/ssh/principals/%u`. May be repeated.
    pub fn sshd_config_line(mut self, line: impl Into<String>) -> Self {
        self.config_lines.push(line.into());
        self
    }

    /// Installs a root-owned file with permission bits `mode` inside the namespace before
    /// `sshd` starts. `path` must be absolute and lie under one of the namespace's private
    /// directories (`/etc`, `/home`, `/root`, `/run`, `/var/lib`, `/var/log`);
    /// [`Self::start`] fails otherwise, so that nothing is ever written to the host.
    pub fn file(
        mut self,
        path: impl Into<PathBuf>,
        contents: impl Into<Vec<u8>>,
        mode: u32,
    ) -> Self {
        self.files.push(PrivateFile {
            path: path.into(),
            contents: contents.into(),
            mode,
        });
        self
    }

    /// Starts the server and waits until it sends its SSH banner.
    pub fn start(self) -> Result<SshServer> {
        self.check_files()?;
        process::require_root(SERVER)?;
        let programs = Programs::find()?;
        process::on_free_port(SERVER, |port| self.start_on(&programs, port))
    }

    fn check_files(&self) -> Result<()> {
        for file in &self.files {
            let private = PRIVATE_DIRS
                .iter()
                .any(|dir| file.path.starts_with(dir) && file.path != Path::new(dir));
            let plain = file
                .path
                .components()
                .all(|part| matches!(part, Component::RootDir | Component::Normal(_)));
            if !(private && plain) {
                return Err(Error::InvalidOption {
                    server: SERVER,
                    reason: format!(
                        "refusing to install {}: files must lie under one of {}",
                        file.path.display(),
                        PRIVATE_DIRS.join(", ")
                    ),
                });
            }
        }
        Ok(())
    }

    fn start_on(&self, programs: &Programs, port: u16) -> Result<SshServer> {
        let dir = process::temp_dir(SERVER)?;
        let root = dir.path();
        let host_key = root.join("ssh_host_ed25519_key");
        let admin_key = root.join("admin_ed25519");
        programs.keygen(&host_key, "apono-testkit host key")?;
        programs.keygen(&admin_key, "apono@apono-testkit")?;
        let host_public_key = key_without_comment(&process::read_file(
            SERVER,
            &host_key.with_extension("pub"),
        )?);
        let host = self.address();
        let known_hosts_line = format!("[{host}]:{port} {host_public_key}");
        let known_hosts_path = root.join("known_hosts");
        process::write_file(
            SERVER,
            &known_hosts_path,
            format!("{known_hosts_line}\n").as_bytes(),
            0o644,
        )?;

        let installs = self.stage_files(root)?;

        let config_path = root.join("sshd_config");
        let config = self.sshd_config(port, &host_key);
        process::write_file(SERVER, &config_path, config.as_bytes(), 0o644)?;
        let setup_path = root.join("setup.sh");
        let setup = setup_script(root, &programs.sshd, &config_path, &installs);
        process::write_file(SERVER, &setup_path, setup.as_bytes(), 0o700)?;

        let mut command = Command::new(&programs.unshare);
        command
            .args([
                "--mount",
                "--pid",
                "--fork",
                "--kill-child",
                "--propagation",
                "private",
                "--mount-proc",
            ])
            .arg("/bin/sh")
            .arg(&setup_path);
        let mut process =
            ServerProcess::spawn(SERVER, command, root.join("sshd.log"), Signal::SIGTERM)?;
        process.wait_ready(|| sends_banner(host, port))?;
        let init_pid = namespace_init(process.pid())
            .ok_or_else(|| process.unusable("cannot find the init process of the namespace"))?;
        // sshd is the namespace's init; when it exits the kernel ends the namespace and
        // `unshare` exits too.
        process.set_stop_target(init_pid);

        Ok(SshServer {
            host: host.to_string(),
            port,
            init_pid,
            admin_private_key: process::read_file(SERVER, &admin_key)?,
            admin_public_key: process::read_file(SERVER, &admin_key.with_extension("pub"))?
                .trim()
                .to_owned(),
            admin_private_key_path: admin_key,
            host_public_key,
            known_hosts_line,
            known_hosts_path,
            nsenter: programs.nsenter.clone(),
            ssh: programs.ssh.clone(),
            process,
            _dir: dir,
        })
    }

    /// Writes the files to install (and the CA keys) to `root/files` and returns the
    /// script lines that install them inside the namespace.
    fn stage_files(&self, root: &Path) -> Result<Vec<String>> {
        let mut files = self.files.clone();
        if !self.trusted_user_ca_keys.is_empty() {
            let mut contents = self.trusted_user_ca_keys.join("\n");
            contents.push('\n');
            files.push(PrivateFile {
                path: TRUSTED_USER_CA_KEYS.into(),
                contents: contents.into(),
                mode: 0o644,
            });
        }
        let staged = root.join("files");
        fs::create_dir(&staged)
            .map_err(|source| io_error(SERVER, "create the staging directory", source))?;
        let mut installs = Vec::new();
        for (index, file) in files.iter().enumerate() {
            let source = staged.join(index.to_string());
            process::write_file(SERVER, &source, &file.contents, 0o600)?;
            installs.push(format!(
                "install -D -m {:o} {} {}",
                file.mode,
                shell_quote(&source),
                shell_quote(&file.path)
            ));
        }
        Ok(installs)
    }

    fn sshd_config(&self, port: u16, host_key: &Path) -> String {
        let mut config = format!(
            "\
# Written by apono-testkit for a private, throw-away sshd.
Port {port}
ListenAddress {listen}
AddressFamily inet
HostKey {host_key}
PidFile none
# Without PAM, sshd itself refuses accounts whose password field starts with `!` (locked);
# accounts must carry `*` instead (as the connector's accounts do). PAM would add nothing
# here but pam_loginuid and pam_systemd, which cannot work in the namespace.
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
AuthorizedKeysFile .ssh/authorized_keys
StrictModes yes
# No AcceptEnv: nothing from the client's environment is accepted.
LogLevel VERBOSE
PrintMotd no
X11Forwarding no
Subsystem sftp internal-sftp
",
            host_key = host_key.display(),
            listen = self.address(),
        );
        if !self.trusted_user_ca_keys.is_empty() {
            config.push_str(&format!("TrustedUserCAKeys {TRUSTED_USER_CA_KEYS}\n"));
        }
        for line in &self.config_lines {
            config.push_str(line);
            config.push('\n');
        }
        config
    }
}

/// The programs the SSH launcher runs, found before anything is spawned.
struct Programs {
    sshd: PathBuf,
    keygen: PathBuf,
    unshare: PathBuf,
    nsenter: PathBuf,
    ssh: PathBuf,
}

impl Programs {
    fn find() -> Result<Self> {
        // The setup script also needs useradd, usermod and install, which come with every
        // Debian system that has sshd; a missing one shows up in the log tail.
        Ok(Self {
            sshd: locate::program(SERVER, "sshd")?,
            keygen: locate::program(SERVER, "ssh-keygen")?,
            unshare: locate::program(SERVER, "unshare")?,
            nsenter: locate::program(SERVER, "nsenter")?,
            ssh: locate::program(SERVER, "ssh")?,
        })
    }

    /// Generates an unencrypted ed25519 key pair at `path` and `path.pub` (mode 0600).
    fn keygen(&self, path: &Path, comment: &str) -> Result<()> {
        process::run(
            SERVER,
            Command::new(&self.keygen)
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(path),
        )
        .map(drop)
    }
}

/// The script `unshare` runs as the namespace's first process: it makes `/etc`, `/home`,
/// `/root`, `/run`, `/var/lib` and `/var/log` private, creates the administrator and becomes
/// `sshd`.
fn setup_script(root: &Path, sshd: &Path, config: &Path, installs: &[String]) -> String {
    let root = shell_quote(root);
    format!(
        r#"#!/bin/sh
set -eu
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
root={root}

# A private copy of the whole /etc: useradd rewrites passwd, group and shadow by renaming,
# which single-file bind mounts would not survive.
cp -a /etc "$root/etc"
mount --bind "$root/etc" /etc
mount -t tmpfs -o mode=0755 apono-testkit-home /home
mount -t tmpfs -o mode=0700 apono-testkit-root /root
mount -t tmpfs -o mode=0755 apono-testkit-log /var/log
# State that provisioners keep on the server (e.g. /var/lib/apono-provision-ssh) stays private.
mount -t tmpfs -o mode=0755 apono-testkit-lib /var/lib
mount -t tmpfs -o mode=0755 apono-testkit-run /run
install -d -m 0755 /run/sshd

useradd --create-home --user-group --shell /bin/bash {admin}
usermod --password '*' {admin}
install -d -m 0700 -o {admin} -g {admin} /home/{admin}/.ssh
install -m 0600 -o {admin} -g {admin} "$root/admin_ed25519.pub" /home/{admin}/.ssh/authorized_keys
printf '%s\n' '{admin} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/{admin}
chmod 0440 /etc/sudoers.d/{admin}
{installs}
exec {sshd} -D -e -f {config}
"#,
        admin = ADMIN_USER,
        installs = installs.join("\n"),
        sshd = shell_quote(sshd),
        config = shell_quote(config),
    )
}

/// Whether an SSH server answers on `host:port`.
fn sends_banner(host: Ipv4Addr, port: u16) -> bool {
    let timeout = Duration::from_secs(2);
    let Ok(stream) = TcpStream::connect_timeout(&(host, port).into(), timeout) else {
        return false;
    };
    if stream.set_read_timeout(Some(timeout)).is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && line.starts_with("SSH-2.0-")
}

/// The first child of `unshare`, which is PID 1 of the new PID namespace.
fn namespace_init(unshare_pid: u32) -> Option<u32> {
    fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `ssh-ed25519 AAAA… comment` without the comment.
fn key_without_comment(line: &str) -> String {
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `path` as one single-quoted shell word.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// A private OpenSSH server on `127.0.0.1`, stopped when dropped.
///
/// `sshd` runs as root in its own mount and PID namespace with private copies of `/etc`,
/// `/home`, `/root`, `/run`, `/var/lib` (empty) and `/var/log`, so accounts created through it
/// never touch the host; everything else (`/tmp`, `/usr`, the network) is the host's. It accepts
/// public-key logins only (`UsePAM no`, so accounts must have the password
/// field `*`, not the locked `!`), and its administrator [`Self::admin_user`] has
/// passwordless sudo.
pub struct SshServer {
    // Dropped first: stop sshd before its directory goes.
    process: ServerProcess,
    host: String,
    port: u16,
    init_pid: u32,
    admin_private_key: String,
    admin_private_key_path: PathBuf,
    admin_public_key: String,
    host_public_key: String,
    known_hosts_line: String,
    known_hosts_path: PathBuf,
    nsenter: PathBuf,
    ssh: PathBuf,
    _dir: TempDir,
}

impl SshServer {
    /// Starts a server with default options; see [`SshServerBuilder`] for the others.
    pub fn start() -> Result<Self> {
        Self::builder().start()
    }

    /// Options to set before the server starts.
    pub fn builder() -> SshServerBuilder {
        SshServerBuilder::default()
    }

    /// `127.0.0.1`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port `sshd` listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The administrator account (`apono`), which has passwordless sudo.
    pub fn admin_user(&self) -> &str {
        ADMIN_USER
    }

    /// The administrator's unencrypted ed25519 private key in OpenSSH format
    /// (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    pub fn admin_private_key(&self) -> &str {
        &self.admin_private_key
    }

    /// A mode-0600 file holding [`Self::admin_private_key`], for `ssh -i`.
    pub fn admin_private_key_path(&self) -> &Path {
        &self.admin_private_key_path
    }

    /// The administrator's public key line (`ssh-ed25519 AAAA… apono@apono-testkit`), the
    /// one line of its `authorized_keys`.
    pub fn admin_public_key(&self) -> &str {
        &self.admin_public_key
    }

    /// The server's host public key (`ssh-ed25519 AAAA…`), freshly generated for this server.
    pub fn host_public_key(&self) -> &str {
        &self.host_public_key
    }

    /// The `known_hosts` line for this server: `[127.0.0.1]:<port> ssh-ed25519 AAAA…`.
    pub fn known_hosts_line(&self) -> &str {
        &self.known_hosts_line
    }

    /// A `known_hosts` file holding [`Self::known_hosts_line`] only.
    pub fn known_hosts_path(&self) -> &Path {
        &self.known_hosts_path
    }

    /// The file `sshd -e` logs to (`LogLevel VERBOSE`).
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The host PID of the namespace's init process (which is `sshd`).
    pub fn namespace_pid(&self) -> u32 {
        self.init_pid
    }

    /// Runs `argv` as root inside the server's namespace (through `nsenter`) and returns its
    /// output whatever its exit status, e.g. `exec(&["id", "alice"])` or
    /// `exec(&["cat", "/etc/passwd"])` to inspect what a test did to the server.
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        let mut command = Command::new(&self.nsenter);
        command
            .args([
                "--target",
                &self.init_pid.to_string(),
                "--mount",
                "--pid",
                "--",
            ])
            .args(argv)
            .current_dir("/");
        command.output().map_err(|source| {
            io_error(
                SERVER,
                format!("run {} in the namespace", argv.join(" ")),
                source,
            )
        })
    }

    /// The system `ssh` client, set up to log in as the administrator with
    /// [`Self::admin_private_key_path`] and to accept only this server's host key
    /// (`StrictHostKeyChecking=yes`, `BatchMode=yes`, no user or global configuration).
    /// Append the remote command with [`Command::args`].
    pub fn ssh_command(&self) -> Command {
        let mut command = Command::new(&self.ssh);
        command
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
            ])
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts_path.display()
            ))
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "StrictHostKeyChecking=yes",
                "-i",
            ])
            .arg(&self.admin_private_key_path)
            .args(["-p", &self.port.to_string()])
            .arg(format!("{ADMIN_USER}@{}", self.host));
        command
    }
}

impl fmt::Debug for SshServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SshServer")
            .field("port", &self.port)
            .field("namespace_pid", &self.init_pid)
            .field("admin_user", &ADMIN_USER)
            .field("admin_private_key_path", &self.admin_private_key_path)
            .field("log_path", &self.log_path())
            .finish_non_exhaustive()
    }
}
