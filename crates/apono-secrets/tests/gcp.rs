//! The GCP Secret Manager backend against `apono_testkit::fakes::FakeGcpSecretManager` (itself
//! checked by Google's own clients in apono-testkit's `tests/fake_gcp.rs`).
#![cfg(feature = "gcp")]

mod common;

use std::time::Duration;

use apono_core::conformance::{SecretStoreFixture, check_secret_store};
use apono_core::{ErrorKind, SecretError, SecretStore, SecretStoreRef, SecretValue};
use apono_secrets::{GcpCredentials, GcpSecretManagerStore};
use apono_testkit::fakes::{FakeGcpSecretManager, GcpAccess};
use secrecy::{ExposeSecret, SecretString};

const PROJECT: &str = "fake-project";

fn reference(secret_id: &str) -> SecretStoreRef {
    SecretStoreRef::Gcp {
        project: PROJECT.into(),
        secret_id: secret_id.into(),
    }
}

fn key_credentials(fake: &FakeGcpSecretManager) -> GcpCredentials {
    let json = fake
        .service_account_key()
        .key_file_json(PROJECT, &fake.token_uri());
    GcpCredentials::from_json(&SecretString::from(json)).expect("a valid key file")
}

fn store(fake: &FakeGcpSecretManager, credentials: GcpCredentials) -> GcpSecretManagerStore {
    GcpSecretManagerStore::builder()
        .endpoint(fake.endpoint())
        .credentials(credentials)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build the store")
}

#[tokio::test]
async fn conformance_with_a_service_account_key() {
    let fake = FakeGcpSecretManager::start().unwrap();
    let password = common::canary();
    fake.add_secret_version(PROJECT, "db-admin", r#"{"username":"stale"}"#);
    fake.add_secret_version(
        PROJECT,
        "db-admin",
        format!(r#"{{"username":"admin","password":"{password}","port":5432}}"#),
    );
    let store = store(&fake, key_credentials(&fake));
    let fixture = SecretStoreFixture {
        existing: reference("db-admin"),
        expected: SecretValue::new()
            .with("username", "admin")
            .with("password", password.clone())
            .with("port", "5432"),
        missing: reference("does-not-exist"),
    };
    let report = check_secret_store(&store, &fixture)
        .await
        .unwrap_or_else(|f| panic!("conformance failed: {f}"));
    assert!(!report.passed.is_empty());

    // One JWT-bearer grant served every read: the token is cached, the value is not.
    let requests = fake.requests();
    let grants: Vec<_> = requests
        .iter()
        .filter(|r| r.path_and_query == "/token")
        .collect();
    assert_eq!(grants.len(), 1, "{requests:?}");
    assert!(
        grants[0]
            .body
            .contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer")
    );
    let reads = requests
        .iter()
        .filter(|r| {
            r.path_and_query == "/v1/projects/fake-project/secrets/db-admin/versions/latest:access"
        })
        .count();
    assert_eq!(reads, 2, "{requests:?}");
    common::assert_no_leak(&password, &format!("{store:?}"), "store Debug");
}

#[tokio::test]
async fn metadata_server_authorized_user_and_static_token_credentials() {
    let fake = FakeGcpSecretManager::start().unwrap();
    fake.add_secret_version(PROJECT, "s", r#"{"k":"v"}"#);
    fake.add_refresh_token(
        "1//refresh",
        "client-id.apps.googleusercontent.com",
        "client-secret",
    );
    let adc = serde_json::json!({
        "type": "authorized_user",
        "client_id": "client-id.apps.googleusercontent.com",
        "client_secret": "client-secret",
        "refresh_token": "1//refresh",
    })
    .to_string();
    let credentials = [
        GcpCredentials::metadata_server_at(fake.metadata_endpoint()),
        GcpCredentials::from_json(&SecretString::from(adc))
            .unwrap()
            .with_token_uri(fake.token_uri()),
        GcpCredentials::access_token(SecretString::from(fake.issue_token())),
    ];
    for credentials in credentials {
        let shown = format!("{credentials:?}");
        let value = store(&fake, credentials)
            .get(&reference("s"))
            .await
            .unwrap_or_else(|e| panic!("{shown}: {e}"));
        assert_eq!(value.require("k").unwrap().expose_secret(), "v", "{shown}");
        assert!(
            !shown.contains("client-secret") && !shown.contains("refresh"),
            "{shown}"
        );
    }
    let metadata = fake
        .requests()
        .into_iter()
        .find(|r| r.path_and_query.starts_with("/computeMetadata/"))
        .expect("the metadata server was asked");
    assert_eq!(metadata.header("metadata-flavor"), Some("Google"));
}

#[tokio::test]
async fn a_key_file_is_read_from_disk_and_bad_files_are_config_errors() {
    let fake = FakeGcpSecretManager::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("key.json");
    std::fs::write(
        &path,
        fake.service_account_key()
            .key_file_json(PROJECT, &fake.token_uri()),
    )
    .unwrap();
    fake.add_secret_version(PROJECT, "s", r#"{"k":"v"}"#);
    let value = store(&fake, GcpCredentials::from_file(&path).unwrap())
        .get(&reference("s"))
        .await
        .unwrap();
    assert_eq!(value.len(), 1);

    let canary = common::canary();
    for (json, context) in [
        (
            format!(r#"{{"type":"service_account","private_key":"{canary}"}}"#),
            "no client_email",
        ),
        (format!(r#"{{"type":"{canary}x"}}"#), "unknown type"),
        (
            format!(r#"{{"type":"service_account" "{canary}"}}"#),
            "bad JSON",
        ),
    ] {
        let error = GcpCredentials::from_json(&SecretString::from(json));
        let error = common::check_failure(&canary, error, context);
        assert_eq!(error.kind(), ErrorKind::InvalidInput, "{context}: {error}");
    }
    // A key that is not RSA PEM fails when the store signs, as a configuration error.
    let bad_key = serde_json::json!({
        "type": "service_account",
        "client_email": "x@p.iam.gserviceaccount.com",
        "private_key": format!("-----BEGIN PRIVATE KEY-----\n{canary}\n-----END PRIVATE KEY-----\n"),
        "token_uri": fake.token_uri(),
    })
    .to_string();
    let store = store(
        &fake,
        GcpCredentials::from_json(&SecretString::from(bad_key)).unwrap(),
    );
    let error = common::check_failure(&canary, store.get(&reference("s")).await, "bad key");
    assert!(matches!(error, SecretError::Config { .. }), "{error}");
}

#[tokio::test]
async fn every_failure_path_keeps_the_canary_out_of_errors_logs_and_panics() {
    let (logs, _guard) = common::capture_logs();
    let fake = FakeGcpSecretManager::start().unwrap();
    let canary = common::canary();
    let good = store(&fake, key_credentials(&fake));

    // Missing key: the value is read, the key the integration needs is absent.
    fake.add_secret_version(PROJECT, "ok", format!(r#"{{"password":"{canary}"}}"#));
    let value = good.get(&reference("ok")).await.unwrap();
    let error = common::check_failure(
        &canary,
        value.require("username").map(|_| ()),
        "missing key",
    );
    assert_eq!(error.kind(), ErrorKind::Malformed);
    common::assert_no_leak(&canary, &format!("{value:?}"), "value Debug");

    // Not an object, not JSON, a null field.
    for (id, payload) in [
        ("string", format!(r#""{canary}""#)),
        ("array", format!(r#"["{canary}"]"#)),
        ("number", "12345678901234567890".to_owned()),
        ("broken", format!(r#"{{"password": {canary}}}"#)),
        ("truncated", format!(r#"{{"password":"{canary}"#)),
        ("null", r#"{"k":null}"#.to_owned()),
        ("binary", format!("\u{0}{canary}\u{1}")),
    ] {
        fake.add_secret_version(PROJECT, id, payload);
        let error = common::check_failure(&canary, good.get(&reference(id)).await, id);
        assert_eq!(error.kind(), ErrorKind::Malformed, "{id}: {error}");
    }

    // A payload whose checksum does not match: retryable.
    fake.add_secret_version(PROJECT, "corrupt", format!(r#"{{"password":"{canary}"}}"#));
    fake.corrupt_checksum(PROJECT, "corrupt");
    let error = common::check_failure(&canary, good.get(&reference("corrupt")).await, "crc");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");

    // Permission denied and not found.
    fake.add_secret_version(PROJECT, "locked", format!(r#"{{"password":"{canary}"}}"#));
    fake.set_access(PROJECT, "locked", GcpAccess::Denied);
    let error = common::check_failure(&canary, good.get(&reference("locked")).await, "denied");
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    assert!(
        error.to_string().contains("secretmanager.versions.access"),
        "{error}"
    );
    let error = common::check_failure(&canary, good.get(&reference("nope")).await, "missing");
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");

    // A token the store refuses, and a key the token endpoint refuses.
    let bad_token = store(
        &fake,
        GcpCredentials::access_token(SecretString::from(canary.clone())),
    );
    let error = common::check_failure(&canary, bad_token.get(&reference("ok")).await, "bad token");
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    let stranger = FakeGcpSecretManager::start().unwrap();
    let foreign = store(
        &fake,
        key_credentials(&stranger).with_token_uri(fake.token_uri()),
    );
    let error = common::check_failure(&canary, foreign.get(&reference("ok")).await, "foreign key");
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");

    // The store unreachable, then too slow.
    let unreachable = GcpSecretManagerStore::builder()
        .endpoint(format!("http://127.0.0.1:{}", common::closed_port()))
        .credentials(GcpCredentials::access_token(SecretString::from(
            fake.issue_token(),
        )))
        .build()
        .unwrap();
    let error = common::check_failure(
        &canary,
        unreachable.get(&reference("ok")).await,
        "unreachable",
    );
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    let slow = GcpSecretManagerStore::builder()
        .endpoint(fake.endpoint())
        .credentials(GcpCredentials::access_token(SecretString::from(
            fake.issue_token(),
        )))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    fake.set_stalled(true);
    let error = common::check_failure(&canary, slow.get(&reference("ok")).await, "timeout");
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    fake.set_stalled(false);

    let logged = logs.text();
    assert!(
        logged.contains("gcp"),
        "nothing was logged at TRACE: {logged}"
    );
    common::assert_no_leak(&canary, &logged, "logs");
}
