use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use anyhow::ensure;
use apono_testkit::{Server, SshServer};

use crate::{output_of, stdout_of};

/// The system ssh client with nothing but the options given.
fn ssh(server: &SshServer, known_hosts: &Path, options: &[&str]) -> Command {
    let mut command = Command::new("ssh");
    command
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-p",
            &server.port().to_string(),
        ])
        .args(options)
        .arg(format!("{}@{}", server.admin_user(), server.host()));
    command
}

#[test]
fn a_user_created_over_ssh_exists_in_the_namespace_only() -> anyhow::Result<()> {
    let host_passwd = std::fs::read("/etc/passwd")?;
    let server = SshServer::start()?;
    let key = server
        .admin_private_key_path()
        .to_str()
        .expect("UTF-8 temp path");
    stdout_of(
        ssh(
            &server,
            server.known_hosts_path(),
            &["-i", key, "-o", "IdentitiesOnly=yes"],
        )
        .args(["sudo", "-n", "useradd", "smoketest"]),
    )?;

    let id = server.exec(&["id", "smoketest"])?;
    ensure!(
        id.status.success(),
        "smoketest missing in the namespace: {id:?}"
    );
    ensure!(String::from_utf8(id.stdout)?.contains("(smoketest)"));
    ensure!(
        !output_of(Command::new("id").arg("smoketest"))?
            .status
            .success(),
        "smoketest leaked to the host"
    );
    ensure!(
        std::fs::read("/etc/passwd")? == host_passwd,
        "the host's /etc/passwd changed"
    );
    Ok(())
}

#[test]
fn the_admin_has_exactly_the_promised_sudo_rule_and_key() -> anyhow::Result<()> {
    let server = SshServer::start()?;
    let rule = server.exec(&["stat", "-c", "%a %U", "/etc/sudoers.d/apono"])?;
    ensure!(String::from_utf8(rule.stdout)?.trim() == "440 root");
    let sudoers = server.exec(&["cat", "/etc/sudoers.d/apono"])?;
    ensure!(sudoers.stdout == b"apono ALL=(ALL) NOPASSWD:ALL\n");
    let authorized = server.exec(&["cat", "/home/apono/.ssh/authorized_keys"])?;
    ensure!(String::from_utf8(authorized.stdout)?.trim() == server.admin_public_key());

    ensure!(
        server
            .admin_private_key()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
    );
    let mode = std::fs::metadata(server.admin_private_key_path())?
        .permissions()
        .mode()
        & 0o777;
    ensure!(mode == 0o600, "private key file mode {mode:o}");
    ensure!(server.host_public_key().starts_with("ssh-ed25519 AAAA"));
    ensure!(
        server.known_hosts_line()
            == format!("[127.0.0.1]:{} {}", server.port(), server.host_public_key())
    );
    ensure!(stdout_of(server.ssh_command().arg("whoami"))? == "apono");
    ensure!(stdout_of(server.ssh_command().args(["sudo", "-n", "whoami"]))? == "root");
    Ok(())
}

#[test]
fn password_login_is_refused() -> anyhow::Result<()> {
    let server = SshServer::start()?;
    let output = output_of(
        ssh(
            &server,
            server.known_hosts_path(),
            &[
                "-o",
                "PubkeyAuthentication=no",
                "-o",
                "PreferredAuthentications=password,keyboard-interactive",
            ],
        )
        .arg("true"),
    )?;
    let stderr = String::from_utf8(output.stderr)?;
    ensure!(!output.status.success());
    ensure!(stderr.contains("Permission denied (publickey)"), "{stderr}");
    Ok(())
}

#[test]
fn a_wrong_host_key_is_refused_by_the_client() -> anyhow::Result<()> {
    let server = SshServer::start()?;
    let dir = tempfile::tempdir()?;
    let other_key = dir.path().join("other");
    stdout_of(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other_key),
    )?;
    let other_public = std::fs::read_to_string(other_key.with_extension("pub"))?;
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!("[127.0.0.1]:{} {other_public}", server.port()),
    )?;

    let key = server
        .admin_private_key_path()
        .to_str()
        .expect("UTF-8 temp path");
    let output = output_of(ssh(&server, &known_hosts, &["-i", key]).arg("true"))?;
    let stderr = String::from_utf8(output.stderr)?;
    ensure!(!output.status.success());
    ensure!(stderr.contains("Host key verification failed"), "{stderr}");
    Ok(())
}

#[test]
fn a_certificate_from_the_trusted_user_ca_logs_in() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = dir.path().join("ca");
    let user_key = dir.path().join("user");
    for key in [&ca, &user_key] {
        stdout_of(
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(key),
        )?;
    }
    stdout_of(
        Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(&ca)
            .args(["-I", "smoke", "-n", "apono", "-V", "-5m:+5m"])
            .arg(user_key.with_extension("pub")),
    )?;
    let server = SshServer::builder()
        .trusted_user_ca_key(std::fs::read_to_string(ca.with_extension("pub"))?.trim())
        .file("/etc/ssh/apono-smoke.txt", "hello\n", 0o640)
        .start()?;

    let key = user_key.to_str().expect("UTF-8 temp path");
    ensure!(
        stdout_of(
            ssh(
                &server,
                server.known_hosts_path(),
                &["-i", key, "-o", "IdentitiesOnly=yes"]
            )
            .arg("whoami")
        )? == "apono"
    );
    let file = server.exec(&["stat", "-c", "%a %U", "/etc/ssh/apono-smoke.txt"])?;
    ensure!(String::from_utf8(file.stdout)?.trim() == "640 root");
    ensure!(
        !Path::new("/etc/ssh/apono-smoke.txt").exists(),
        "the file leaked to the host"
    );
    Ok(())
}

#[test]
fn files_outside_the_private_directories_are_refused() {
    let error = SshServer::builder()
        .file("/usr/local/bin/evil", "", 0o755)
        .start()
        .unwrap_err();
    assert_eq!(error.server(), Server::Sshd);
    assert!(
        error
            .to_string()
            .starts_with("sshd: refusing to install /usr/local/bin/evil"),
        "{error}"
    );
    let error = SshServer::builder()
        .file("/etc/../usr/evil", "", 0o644)
        .start()
        .unwrap_err();
    assert!(error.to_string().contains("refusing"), "{error}");
}

#[test]
fn dropping_the_server_stops_it() -> anyhow::Result<()> {
    let server = SshServer::start()?;
    let (pid, port) = (server.namespace_pid(), server.port());
    ensure!(Path::new(&format!("/proc/{pid}")).exists());
    drop(server);
    ensure!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "sshd {pid} still runs"
    );
    ensure!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still answers"
    );
    Ok(())
}

#[test]
fn a_server_that_cannot_start_says_why() {
    let error = SshServer::builder()
        .sshd_config_line("NoSuchDirective yes")
        .start()
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("sshd: exited before it became ready"),
        "{message}"
    );
    assert!(message.contains("NoSuchDirective"), "{message}");
}
