//! The generated password never reaches logs, errors or command lines: every action is run with
//! a TRACE-level subscriber capturing all crates' events and span fields.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use apono_core::Provisioner;
use apono_provision_winrm::WindowsTarget;
use apono_testkit::fakes::winrm::FakeWinrmTls;
use common::{Setup, context, setup};
use data_encoding::BASE64;

#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture() -> (LogBuffer, tracing::subscriber::DefaultGuard) {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (buffer, tracing::subscriber::set_default(subscriber))
}

/// Grants, rotates and revokes; returns the logs and every secret that must not be in them
/// (passwords and the base64 stdin lines that carry them).
async fn run(tls: FakeWinrmTls) -> (String, Vec<String>) {
    let setup = setup(WindowsTarget::Rdp, tls);
    let (logs, _guard) = capture();
    let spec = setup.grant_for("leak.check@corp.example", "g-leak", "Connect");
    let granted = setup
        .provisioner
        .grant_access(&context(), &spec)
        .await
        .unwrap();
    let rotated = setup
        .provisioner
        .reset_credentials(&context(), &spec, &granted.state)
        .await
        .unwrap();
    setup
        .provisioner
        .revoke_access(&context(), &spec, &rotated.state)
        .await
        .unwrap();
    let mut secrets = vec![Setup::password_of(&granted), Setup::password_of(&rotated)];
    let scramble = setup
        .fake
        .account(&Setup::user_of(&granted))
        .unwrap()
        .password;
    secrets.push(scramble);
    for command in setup.fake.commands() {
        let stdin = String::from_utf8(command.stdin).unwrap();
        secrets.push(stdin.trim().to_owned());
        secrets.push(BASE64.encode(stdin.as_bytes()));
        // No secret is on a command line.
        for secret in &secrets[..3] {
            assert!(!command.arguments.concat().contains(secret.as_str()));
        }
    }
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    (text, secrets)
}

#[tokio::test]
async fn own_https_transport_logs_no_secret_even_at_trace() {
    let (logs, secrets) = run(FakeWinrmTls::TestCa).await;
    assert!(
        logs.contains("apono_provision_winrm"),
        "nothing captured: {logs}"
    );
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret was logged:\n{logs}"
        );
    }
}

/// `winrm-rs` logs whole SOAP bodies (with the base64 payload) at TRACE under `winrm_rs`; the
/// crate docs say never to enable that. Everything else, at every level, stays clean.
#[tokio::test]
async fn winrm_rs_transport_logs_no_secret_outside_its_own_trace_bodies() {
    let (logs, secrets) = run(FakeWinrmTls::None).await;
    // One event per entry: a line starting with a timestamp, then its continuation lines.
    let mut events: Vec<String> = Vec::new();
    for line in logs.lines() {
        if line.starts_with("20") || events.is_empty() {
            events.push(line.to_owned());
        } else if let Some(last) = events.last_mut() {
            last.push('\n');
            last.push_str(line);
        }
    }
    let outside: Vec<&String> = events
        .iter()
        .filter(|e| {
            let head = e.lines().next().unwrap_or("");
            !(head.contains(" TRACE ") && head.contains("winrm_rs"))
        })
        .collect();
    assert!(!outside.is_empty());
    for line in outside {
        for secret in &secrets {
            assert!(
                !line.contains(secret.as_str()),
                "a secret was logged: {line}"
            );
        }
    }
}
