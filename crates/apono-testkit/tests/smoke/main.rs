//! Smoke tests: each launcher starts its real server, and the server's own client proves it
//! works. A server that cannot start fails its test; nothing is skipped.

mod mariadb;
mod moto;
mod openbao;
mod postgres;
mod ssh;

use std::process::{Command, Output};

use anyhow::{Context as _, ensure};

/// Runs `command`, requires success and returns its trimmed stdout.
fn stdout_of(command: &mut Command) -> anyhow::Result<String> {
    let output = output_of(command)?;
    ensure!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// Runs `command` whatever its exit status.
fn output_of(command: &mut Command) -> anyhow::Result<Output> {
    command
        .output()
        .with_context(|| format!("cannot run {command:?}"))
}

/// Launchers can be shared across threads and async tasks.
#[test]
fn servers_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<apono_testkit::SshServer>();
    send_sync::<apono_testkit::OpenBao>();
    send_sync::<apono_testkit::OpenBaoRaft>();
    send_sync::<apono_testkit::Postgres>();
    send_sync::<apono_testkit::MariaDb>();
    send_sync::<apono_testkit::Moto>();
    send_sync::<apono_testkit::Error>();
}
