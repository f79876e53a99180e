//! Hostile names are refused before a single byte is sent: the provisioner points at a TCP
//! listener that records every connection attempt.

mod common;

use std::net::TcpListener;

use apono_core::{ActionContext, ErrorKind, GrantState, LinuxUsername, Provisioner, SecretValue};
use apono_provision_ssh::{SshConfig, SshProvisioner};
use common::{grant, in_an_hour};
use serde_json::json;

fn corpus() -> Vec<String> {
    let mut names: Vec<String> = [
        "a;id",
        "$(id)",
        "`id`",
        "a\nb",
        "a\0b",
        "-rf",
        "--help",
        "a b",
        "a'b",
        "a\"b",
        "\u{2018}x\u{2019}",
        "\u{201c}x\u{201d}",
        "a|b",
        "a&b",
        "../etc",
        "a/b",
        "*",
        "12345",
        "root",
        "Root",
        "",
        "é",
        "a\\b",
        "a>b",
        "a$IFS",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    names.push("a".repeat(33));
    names.push("x".repeat(4096));
    names
}

/// A provisioner whose only server is a listener nobody answers; returns it and the listener.
fn trap() -> (SshProvisioner, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = SshConfig::from_json(&json!({
        "servers": [{"name": "srv", "host": "127.0.0.1", "port": port,
                     "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFr2O5rbzGDlcMbyW8Ihq9Fmb6QyO2m3Yb7/Sx+Rr1oX"}],
        "user_groups": ["Default", "devs"],
    }))
    .unwrap();
    (SshProvisioner::new(config).unwrap(), listener)
}

fn ctx() -> ActionContext {
    // A syntactically valid key, so that only name validation can stop the action.
    let key = russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519)
        .unwrap()
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .unwrap();
    ActionContext::new(SecretValue::new().with(
        "base64_private_key",
        data_encoding::BASE64.encode(key.as_bytes()),
    ))
}

fn nothing_reached(listener: &TcpListener) {
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a connection reached the server: {other:?}"),
    }
}

#[tokio::test]
async fn hostile_permissions_are_refused_before_connecting() {
    let (p, listener) = trap();
    for name in corpus() {
        let spec = grant("alice", "g-1", &name, in_an_hour());
        let err = p.grant_access(&ctx(), &spec).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{name:?}: {err}");
        assert!(!err.to_string().contains('\n'), "{err}");
    }
    nothing_reached(&listener);
}

#[tokio::test]
async fn hostile_names_in_stored_state_are_refused_before_connecting() {
    let (p, listener) = trap();
    let spec = grant("alice", "g-1", "devs", in_an_hour());
    for name in corpus() {
        let states = [
            json!({"server": "srv", "username": name, "key_fingerprint": "SHA256:x",
                   "groups": [], "groups_added": [], "account_created": true}),
            json!({"server": "srv", "username": "alice", "key_fingerprint": "SHA256:x",
                   "groups": [name], "groups_added": [], "account_created": true}),
            json!({"server": "srv", "username": "alice", "key_fingerprint": "SHA256:x",
                   "groups": [], "groups_added": [name], "account_created": true}),
        ];
        for (i, state) in states.into_iter().enumerate() {
            if i > 0 && name == "root" {
                continue; // well-formed, so accepted: revoke takes no group from the state
            }
            let state = GrantState::from_json(state);
            let err = p.revoke_access(&ctx(), &spec, &state).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{name:?}: {err}");
            if i == 0 {
                let err = p
                    .delete_credentials(&ctx(), &spec, &state)
                    .await
                    .unwrap_err();
                assert_eq!(err.kind(), ErrorKind::InvalidInput, "{name:?}: {err}");
            }
        }
    }
    nothing_reached(&listener);
}

#[test]
fn hostile_identities_derive_safe_account_names() {
    for name in corpus() {
        for identity in [name.clone(), format!("{name}@corp.example")] {
            let user: LinuxUsername = apono_core::AccountNaming::new().derive(&identity);
            // Whatever the identity, the derived name passes the grammar again.
            assert!(
                LinuxUsername::parse(user.as_str()).is_ok(),
                "{identity:?} -> {user}"
            );
            assert_ne!(user.as_str(), "root");
        }
    }
}

#[test]
fn hostile_config_values_are_refused() {
    for name in corpus() {
        // `root` is a well-formed group name (offering it is the operator's choice).
        if name != "root" {
            let config = json!({"servers": [{"name": "s", "host": "h"}], "user_groups": [name]});
            assert!(SshConfig::from_json(&config).is_err(), "{config}");
        }
        let config = json!({"servers": [{"name": "s", "host": "h"}], "shell": name});
        assert!(SshConfig::from_json(&config).is_err(), "{config}");
        // Key names are file names under ~/.ssh/ in the instructions: plain words pass.
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') || name.is_empty() {
            let config = json!({"servers": [{"name": "s", "host": "h"}], "key_name": name});
            assert!(SshConfig::from_json(&config).is_err(), "{config}");
        }
    }
}
