//! The provisioner against a real OpenSSH server, through its public API only.

mod common;

use std::io::BufRead;

use apono_core::{ErrorKind, GrantState, IntegrationStatus, Provisioner};
use apono_provision_ssh::{PoolOptions, SshConfig, SshProvisioner};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_login_groups_sudo_revoke_and_cleanup() {
    let server = start_server();
    let p = provisioner(&server);
    let status = p.get_status(&ctx(&server)).await.unwrap();
    assert_eq!(status.status, IntegrationStatus::Active, "{status:?}");
    let inventory = p.list_resources(&ctx(&server)).await.unwrap();
    assert_eq!(inventory.resources.len(), 1);
    assert_eq!(inventory.resources[0].tags["env"], "test");
    assert_eq!(inventory.permissions.len(), 3);

    let plain = grant("alice", "g-plain", "Default", in_an_hour());
    let granted = p.grant_access(&ctx(&server), &plain).await.unwrap();
    let user = granted.access.json["username"].as_str().unwrap().to_owned();
    assert_eq!(user, "alice");
    assert!(
        granted
            .access
            .cli
            .as_deref()
            .unwrap()
            .starts_with("ssh -i ")
    );
    let state = serde_json::to_string(granted.state.as_json()).unwrap();
    assert!(!state.contains("PRIVATE KEY"), "{state}");

    let passwd = must(&server, &["getent", "passwd", "alice"]);
    assert!(passwd.contains(":apono-managed account:"), "{passwd}");
    assert!(passwd.trim_end().ends_with(":/bin/bash"), "{passwd}");
    let shadow = must(&server, &["getent", "shadow", "alice"]);
    assert_eq!(shadow.split(':').nth(1), Some("*"), "{shadow}");
    assert_ne!(
        shadow.split(':').nth(7),
        Some(""),
        "account expiry is set: {shadow}"
    );

    let id = login(&server, &granted, &["id", "-Gn"]).expect("login with the granted key");
    assert_eq!(groups_of(&id), set(&["alice", "apono-managed"]));
    assert!(
        login(&server, &granted, &["sudo -n true && echo yes || echo no"])
            .unwrap()
            .contains("no")
    );

    let admin = grant("alice", "g-admin", "jit-sudo", in_an_hour());
    let admin_granted = p.grant_access(&ctx(&server), &admin).await.unwrap();
    let id = login(&server, &admin_granted, &["id", "-Gn"]).unwrap();
    assert_eq!(groups_of(&id), set(&["alice", "apono-managed", "jit-sudo"]));
    assert!(
        login(
            &server,
            &admin_granted,
            &["sudo -n true && echo yes || echo no"]
        )
        .unwrap()
        .contains("yes")
    );

    // A live session of the admin grant: revoking it removes jit-sudo, so the session (whose
    // process still carries the group) must die.
    let (mut session, _keep) = background_session(&server, &admin_granted);
    let mut line = String::new();
    std::io::BufReader::new(session.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "started");
    assert!(processes_of(&server, "alice").contains("sleep"));

    p.revoke_access(&ctx(&server), &admin, &admin_granted.state)
        .await
        .unwrap();
    assert!(login(&server, &admin_granted, &["true"]).is_none());
    assert_eq!(processes_of(&server, "alice"), "");
    let _ = session.wait();
    // The other grant is untouched, and no longer sees jit-sudo.
    let id = login(&server, &granted, &["id", "-Gn"]).unwrap();
    assert_eq!(groups_of(&id), set(&["alice", "apono-managed"]));

    p.revoke_access(&ctx(&server), &plain, &granted.state)
        .await
        .unwrap();
    assert!(login(&server, &granted, &["true"]).is_none());
    let shadow = must(&server, &["getent", "shadow", "alice"]);
    assert!(
        shadow.split(':').nth(1).unwrap().starts_with('!'),
        "{shadow}"
    );
    // Idempotent.
    p.revoke_access(&ctx(&server), &plain, &granted.state)
        .await
        .unwrap();

    // Re-granting a locked account unlocks it.
    let again_spec = grant("alice", "g-again", "Default", in_an_hour());
    let again = p.grant_access(&ctx(&server), &again_spec).await.unwrap();
    assert!(login(&server, &again, &["true"]).is_some());
    // Cleanup keeps an account that an active grant still uses…
    p.delete_credentials(&ctx(&server), &plain, &granted.state)
        .await
        .unwrap();
    assert!(server.exec(&["id", "alice"]).unwrap().status.success());
    // …and deletes it once none does.
    p.revoke_access(&ctx(&server), &again_spec, &again.state)
        .await
        .unwrap();
    p.delete_credentials(&ctx(&server), &again_spec, &again.state)
        .await
        .unwrap();
    assert!(!server.exec(&["id", "alice"]).unwrap().status.success());
    assert!(!must(&server, &["ls", "/home"]).contains("alice"));
    assert!(
        !server
            .exec(&["getent", "group", "apono-managed"])
            .unwrap()
            .status
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_itself_refuses_the_key_after_expiry() {
    let server = start_server();
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(4);
    let granted = {
        let p = provisioner(&server);
        p.grant_access(&ctx(&server), &grant("bob", "g-short", "devs", expires_at))
            .await
            .unwrap()
    }; // the provisioner is gone: nothing will revoke
    assert!(login(&server, &granted, &["true"]).is_some());
    let wait = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default()
        + std::time::Duration::from_millis(1500);
    tokio::time::sleep(wait).await; // waiting for an expiry, not for synchronisation
    assert!(login(&server, &granted, &["true"]).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preexisting_account_is_never_touched() {
    let server = start_server();
    must(&server, &["useradd", "--create-home", "carol"]);
    must(&server, &["usermod", "-a", "-G", "devs", "carol"]);
    let snapshot = || {
        must(
            &server,
            &[
                "sh",
                "-c",
                "getent passwd carol; getent shadow carol; id carol; ls -la /home/carol",
            ],
        )
    };
    let before = snapshot();
    let p = provisioner(&server);
    let spec = grant("carol", "g-carol", "jit-sudo", in_an_hour());
    let err = p.grant_access(&ctx(&server), &spec).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    // A forged state naming the account changes nothing either.
    let forged = GrantState::from_json(serde_json::json!({
        "server": SERVER_NAME, "username": "carol", "key_fingerprint": "SHA256:x",
        "groups": ["devs"], "groups_added": ["devs"], "account_created": true,
    }));
    p.revoke_access(&ctx(&server), &spec, &forged)
        .await
        .unwrap();
    let err = p
        .delete_credentials(&ctx(&server), &spec, &forged)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(snapshot(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_changed_host_keys_are_refused() {
    let server = start_server();
    let offered = russh_fingerprint(server.host_public_key());

    // Pinned to another key.
    let mut config = config_json(&server);
    config["servers"][0]["host_key"] =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFr2O5rbzGDlcMbyW8Ihq9Fmb6QyO2m3Yb7/Sx+Rr1oX".into();
    let p = SshProvisioner::new(SshConfig::from_json(&config).unwrap()).unwrap();
    let err = p
        .grant_access(
            &ctx(&server),
            &grant("dave", "g-dave", "Default", in_an_hour()),
        )
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert!(shown.contains(&offered), "{shown}");
    assert!(shown.contains("changed"), "{shown}");
    let status = p.get_status(&ctx(&server)).await.unwrap();
    assert_ne!(status.status, IntegrationStatus::Active);

    // Not pinned, no known_hosts entry, no TOFU: unknown.
    config["servers"][0]
        .as_object_mut()
        .unwrap()
        .remove("host_key");
    let p = SshProvisioner::new(SshConfig::from_json(&config).unwrap()).unwrap();
    let err = p.get_status(&ctx(&server)).await.unwrap();
    assert_ne!(err.status, IntegrationStatus::Active);
    assert!(format!("{err:?}").contains(&offered));
    assert!(!server.exec(&["id", "dave"]).unwrap().status.success());

    // known_hosts file from the server: trusted.
    config["known_hosts_file"] = server.known_hosts_path().to_str().unwrap().into();
    let p = SshProvisioner::new(SshConfig::from_json(&config).unwrap()).unwrap();
    assert_eq!(
        p.get_status(&ctx(&server)).await.unwrap().status,
        IntegrationStatus::Active
    );
    // …and the key the connector trusted reaches the requester with the access details, so
    // their ssh checks the server without asking, though no host_key is pinned.
    let spec = grant("dave", "g-dave-known-hosts", "Default", in_an_hour());
    let granted = p.grant_access(&ctx(&server), &spec).await.unwrap();
    let fields: Vec<&str> = server
        .host_public_key()
        .split_whitespace()
        .take(2)
        .collect();
    let line = granted.access.json["known_hosts"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(line.ends_with(&fields.join(" ")), "{line}");
    assert!(line.starts_with('['), "{line}");
    p.revoke_access(&ctx(&server), &spec, &granted.state)
        .await
        .unwrap();

    // Trust on first use records the key…
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("known_hosts");
    config["known_hosts_file"] = file.to_str().unwrap().into();
    config["trust_on_first_use"] = true.into();
    let p = SshProvisioner::new(SshConfig::from_json(&config).unwrap()).unwrap();
    assert_eq!(
        p.get_status(&ctx(&server)).await.unwrap().status,
        IntegrationStatus::Active
    );
    let recorded = std::fs::read_to_string(&file).unwrap();
    assert!(recorded.contains(server.host_public_key()), "{recorded}");
    // …and refuses a later change.
    let other = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFr2O5rbzGDlcMbyW8Ihq9Fmb6QyO2m3Yb7/Sx+Rr1oX";
    std::fs::write(&file, recorded.replace(server.host_public_key(), other)).unwrap();
    let p = SshProvisioner::new(SshConfig::from_json(&config).unwrap()).unwrap();
    let report = p.get_status(&ctx(&server)).await.unwrap();
    assert_ne!(report.status, IntegrationStatus::Active);
    assert!(format!("{report:?}").contains(&offered));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_actions_reuse_one_authenticated_connection() {
    let server = start_server();
    let p = provisioner(&server);
    for i in 0..4 {
        let spec = grant("erin", &format!("g-{i}"), "devs", in_an_hour());
        let granted = p.grant_access(&ctx(&server), &spec).await.unwrap();
        p.revoke_access(&ctx(&server), &spec, &granted.state)
            .await
            .unwrap();
    }
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    let logins = log.matches("Accepted publickey for apono").count();
    assert_eq!(logins, 1, "{log}");

    // Without reuse, each action authenticates again.
    let p = provisioner_with(
        &server,
        PoolOptions {
            reuse: false,
            ..PoolOptions::default()
        },
    );
    p.get_status(&ctx(&server)).await.unwrap();
    p.get_status(&ctx(&server)).await.unwrap();
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(log.matches("Accepted publickey for apono").count() >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_honoured_until_revoke() {
    let server = start_server();
    let ca =
        russh::keys::PrivateKey::random(&mut rand::rng(), russh::keys::Algorithm::Ed25519).unwrap();
    let ca_pem = ca.to_openssh(russh::keys::ssh_key::LineEnding::LF).unwrap();
    let secret = secret(&server).with(
        "base64_ca_private_key",
        data_encoding::BASE64.encode(ca_pem.as_bytes()),
    );
    let context = || apono_core::ActionContext::new(secret.clone());
    let p = provisioner(&server);
    let spec = grant("frank", "g-cert", "devs", in_an_hour());
    let granted = p.grant_access(&context(), &spec).await.unwrap();
    let cert = granted.access.json["certificate"].as_str().unwrap();
    assert!(
        cert.starts_with("ssh-ed25519-cert-v01@openssh.com "),
        "{cert}"
    );
    let id = login(&server, &granted, &["id", "-Gn"]).expect("login with the certificate");
    assert_eq!(groups_of(&id), set(&["frank", "apono-managed", "devs"]));

    let rotated = p
        .reset_credentials(&context(), &spec, &granted.state)
        .await
        .unwrap();
    assert!(login(&server, &rotated, &["true"]).is_some());
    assert!(login(&server, &granted, &["true"]).is_none());

    p.revoke_access(&context(), &spec, &rotated.state)
        .await
        .unwrap();
    assert!(login(&server, &rotated, &["true"]).is_none());
}

fn russh_fingerprint(line: &str) -> String {
    russh::keys::PublicKey::from_openssh(line)
        .unwrap()
        .fingerprint(russh::keys::HashAlg::Sha256)
        .to_string()
}
