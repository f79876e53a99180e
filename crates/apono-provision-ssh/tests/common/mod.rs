//! Shared helpers: a real sshd (apono-testkit), a provisioner pointed at it, and logins with
//! the system `ssh` client (independent of the russh code under test).

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use apono_core::secrecy::ExposeSecret;
use apono_core::{
    ActionContext, GrantId, GrantSpec, Granted, Grantee, Permission, Resource, SecretValue,
};
use apono_provision_ssh::{PoolOptions, SshConfig, SshProvisioner};
use apono_testkit::SshServer;
use chrono::{DateTime, Utc};
use serde_json::json;

pub const SERVER_NAME: &str = "srv";
pub const HOME_DOMAIN: &str = "corp.example";

/// Starts sshd with a `devs` group and a `jit-sudo` group that has passwordless sudo. Panics
/// (fails the test) when the server cannot start.
pub fn start_server() -> SshServer {
    start_with(SshServer::builder())
}

pub fn start_with(builder: apono_testkit::SshServerBuilder) -> SshServer {
    let server = builder
        .file(
            "/etc/sudoers.d/jit-sudo",
            "%jit-sudo ALL=(ALL) NOPASSWD:ALL\n",
            0o440,
        )
        .start()
        .expect("the OpenSSH test server must start");
    must(&server, &["groupadd", "devs"]);
    must(&server, &["groupadd", "jit-sudo"]);
    server
}

pub fn must(server: &SshServer, argv: &[&str]) -> String {
    let out = server.exec(argv).expect("exec in the namespace");
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn config_json(server: &SshServer) -> serde_json::Value {
    json!({
        "servers": [{
            "name": SERVER_NAME,
            "host": server.host(),
            "port": server.port(),
            "user": server.admin_user(),
            "tags": {"env": "test"},
            "host_key": server.host_public_key(),
        }],
        "user_groups": ["Default", "devs", "jit-sudo"],
        "home_domain": HOME_DOMAIN,
    })
}

pub fn provisioner(server: &SshServer) -> SshProvisioner {
    SshProvisioner::new(SshConfig::from_json(&config_json(server)).unwrap()).unwrap()
}

pub fn provisioner_with(server: &SshServer, options: PoolOptions) -> SshProvisioner {
    SshProvisioner::with_pool_options(SshConfig::from_json(&config_json(server)).unwrap(), options)
        .unwrap()
}

pub fn secret(server: &SshServer) -> SecretValue {
    SecretValue::new().with(
        "base64_private_key",
        data_encoding::BASE64.encode(server.admin_private_key().as_bytes()),
    )
}

pub fn ctx(server: &SshServer) -> ActionContext {
    ActionContext::new(secret(server)).with_timeout(std::time::Duration::from_secs(60))
}

pub fn grant(user: &str, id: &str, permission: &str, expires_at: DateTime<Utc>) -> GrantSpec {
    GrantSpec {
        grant_id: GrantId::new(id).unwrap(),
        grantee: Grantee {
            id: format!("idp-{user}"),
            email: format!("{user}@{HOME_DOMAIN}"),
            display_name: user.into(),
            groups: vec![],
        },
        resource: Resource {
            integration: "ssh-test".into(),
            resource_type: "ssh-server".into(),
            id: SERVER_NAME.into(),
            name: SERVER_NAME.into(),
            tags: Default::default(),
        },
        permission: Permission::from(permission),
        expires_at,
        custom_parameters: Default::default(),
    }
}

pub fn in_an_hour() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::hours(1)
}

/// Logs in as `user` with the grant's private key (and certificate, if any) using the system
/// `ssh` client and runs `command`; `None` when the login is refused.
pub fn login(server: &SshServer, granted: &Granted, command: &[&str]) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("id");
    let key = granted
        .access
        .credentials
        .iter()
        .find(|c| c.name == "private_key")
        .expect("a private key credential");
    write_private(&key_path, key.value.expose_secret().as_bytes());
    if let Some(cert) = granted.access.json.get("certificate") {
        std::fs::write(dir.path().join("id-cert.pub"), cert.as_str().unwrap()).unwrap();
    }
    let user = granted.access.json["username"].as_str().unwrap();
    let out = Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            server.known_hosts_path().display()
        ))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg("-i")
        .arg(&key_path)
        .args(["-p", &server.port().to_string()])
        .arg(format!("{user}@{}", server.host()))
        .args(command)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if out.status.code() == Some(255) {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Starts a long-running session as the grant's user and returns the `ssh` child.
pub fn background_session(
    server: &SshServer,
    granted: &Granted,
) -> (std::process::Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("id");
    let key = &granted.access.credentials[0];
    write_private(&key_path, key.value.expose_secret().as_bytes());
    if let Some(cert) = granted.access.json.get("certificate") {
        std::fs::write(dir.path().join("id-cert.pub"), cert.as_str().unwrap()).unwrap();
    }
    let user = granted.access.json["username"].as_str().unwrap();
    let child = Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            server.known_hosts_path().display()
        ))
        .args(["-o", "StrictHostKeyChecking=yes", "-i"])
        .arg(&key_path)
        .args(["-p", &server.port().to_string()])
        .arg(format!("{user}@{}", server.host()))
        .args(["echo started; exec sleep 600"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    (child, dir)
}

fn write_private(path: &std::path::Path, bytes: &[u8]) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}

pub fn groups_of(output: &str) -> BTreeSet<String> {
    output.split_whitespace().map(str::to_owned).collect()
}

pub fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The user's processes in the namespace.
pub fn processes_of(server: &SshServer, user: &str) -> String {
    let out = server.exec(&["pgrep", "-a", "-u", user]).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
