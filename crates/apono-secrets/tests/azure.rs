//! The Azure Key Vault backend against `apono_testkit::fakes::FakeAzureKeyVault` (itself
//! checked by azure-identity and azure-keyvault-secrets in apono-testkit's
//! `tests/fake_azure.rs`), over TLS verified against the fake's test CA.
#![cfg(feature = "azure")]

mod common;

use std::time::Duration;

use apono_core::conformance::{SecretStoreFixture, check_secret_store};
use apono_core::{ErrorKind, SecretStore, SecretStoreRef, SecretValue};
use apono_secrets::{AzureCredentials, AzureKeyVaultStore, AzureKeyVaultStoreBuilder};
use apono_testkit::fakes::{AzureAccess, FakeAzureKeyVault};
use secrecy::{ExposeSecret, SecretString};

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

fn reference(fake: &FakeAzureKeyVault, name: &str) -> SecretStoreRef {
    SecretStoreRef::Azure {
        vault_url: fake.endpoint(),
        name: name.into(),
    }
}

fn client_secret(fake: &FakeAzureKeyVault, secret: &str) -> AzureCredentials {
    AzureCredentials::client_secret(TENANT, "app-id", SecretString::from(secret.to_owned()))
        .with_authority_host(fake.endpoint())
}

fn builder(fake: &FakeAzureKeyVault, credentials: AzureCredentials) -> AzureKeyVaultStoreBuilder {
    AzureKeyVaultStore::builder()
        .credentials(credentials)
        .add_root_certificate_pem(fake.ca().ca_pem())
        // The fake is not under vault.azure.net.
        .verify_challenge_resource(false)
        .timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn conformance_with_a_client_secret_and_the_challenge() {
    let fake = FakeAzureKeyVault::start(TENANT).unwrap();
    fake.add_client("app-id", "app-secret");
    let password = common::canary();
    fake.set_secret("db-admin", r#"{"username":"stale"}"#);
    fake.set_secret(
        "db-admin",
        &format!(r#"{{"username":"admin","password":"{password}","port":5432}}"#),
    );
    let store = builder(&fake, client_secret(&fake, "app-secret"))
        .build()
        .unwrap();
    let fixture = SecretStoreFixture {
        existing: reference(&fake, "db-admin"),
        expected: SecretValue::new()
            .with("username", "admin")
            .with("password", password.clone())
            .with("port", "5432"),
        missing: reference(&fake, "does-not-exist"),
    };
    check_secret_store(&store, &fixture)
        .await
        .unwrap_or_else(|f| panic!("conformance failed: {f}"));

    let requests = fake.requests();
    // First request without a token, answered by the challenge; then one token for all reads.
    let reads: Vec<_> = requests
        .iter()
        .filter(|r| r.path_and_query.starts_with("/secrets/"))
        .collect();
    assert_eq!(reads[0].header("authorization"), None, "{:?}", reads[0]);
    assert!(
        reads[0].path_and_query.ends_with("?api-version=7.4"),
        "{:?}",
        reads[0]
    );
    assert!(
        reads[1..]
            .iter()
            .all(|r| r.header("authorization").is_some())
    );
    let grants: Vec<_> = requests
        .iter()
        .filter(|r| r.path_and_query == format!("/{TENANT}/oauth2/v2.0/token"))
        .collect();
    assert_eq!(grants.len(), 1, "{requests:?}");
    assert!(
        grants[0]
            .body
            .contains("scope=https%3A%2F%2Fvault.azure.net%2F.default")
    );
    common::assert_no_leak(&password, &format!("{store:?}"), "store Debug");
}

#[tokio::test]
async fn workload_and_managed_identities() {
    let fake = FakeAzureKeyVault::start(TENANT).unwrap();
    fake.add_federated_client("wi-app", "federated.jwt");
    fake.set_secret("s", r#"{"k":"v"}"#);
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "federated.jwt\n").unwrap();
    for credentials in [
        AzureCredentials::workload_identity(TENANT, "wi-app", &token_file)
            .with_authority_host(fake.endpoint()),
        AzureCredentials::managed_identity().with_imds_endpoint(fake.endpoint()),
        AzureCredentials::user_assigned_managed_identity("mi-client")
            .with_imds_endpoint(fake.endpoint()),
    ] {
        let shown = format!("{credentials:?}");
        let value = builder(&fake, credentials)
            .build()
            .unwrap()
            .get(&reference(&fake, "s"))
            .await
            .unwrap_or_else(|e| panic!("{shown}: {e}"));
        assert_eq!(value.require("k").unwrap().expose_secret(), "v");
    }
    let imds = fake
        .requests()
        .into_iter()
        .find(|r| r.path_and_query.contains("client_id=mi-client"))
        .expect("IMDS was asked for the user-assigned identity");
    assert_eq!(imds.header("metadata"), Some("true"));
    assert!(
        imds.path_and_query
            .contains("resource=https%3A%2F%2Fvault.azure.net"),
        "{imds:?}"
    );
}

#[tokio::test]
async fn challenges_are_checked_like_the_sdks_do() {
    let fake = FakeAzureKeyVault::start(TENANT).unwrap();
    fake.add_client("app-id", "app-secret");
    fake.set_secret("s", r#"{"k":"v"}"#);
    // The resource (vault.azure.net) is not the vault's domain (127.0.0.1): refused before
    // any credential is sent.
    let strict = AzureKeyVaultStore::builder()
        .credentials(client_secret(&fake, "app-secret"))
        .add_root_certificate_pem(fake.ca().ca_pem())
        .build()
        .unwrap();
    let error = strict.get(&reference(&fake, "s")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    assert!(error.to_string().contains("does not match"), "{error}");
    // Credentials for another tenant than the vault's.
    let other = AzureCredentials::client_secret(
        "00000000-0000-0000-0000-000000000000",
        "app-id",
        SecretString::from("app-secret"),
    )
    .with_authority_host(fake.endpoint());
    let error = builder(&fake, other)
        .build()
        .unwrap()
        .get(&reference(&fake, "s"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    assert!(error.to_string().contains("tenant"), "{error}");
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r.body.contains("app-secret")),
        "a client secret was sent despite a refused challenge"
    );
}

#[tokio::test]
async fn every_failure_path_keeps_the_canary_out_of_errors_logs_and_panics() {
    let (logs, _guard) = common::capture_logs();
    let fake = FakeAzureKeyVault::start(TENANT).unwrap();
    let canary = common::canary();
    fake.add_client("app-id", "app-secret");
    let good = builder(&fake, client_secret(&fake, "app-secret"))
        .build()
        .unwrap();

    fake.set_secret("ok", &format!(r#"{{"password":"{canary}"}}"#));
    let value = good.get(&reference(&fake, "ok")).await.unwrap();
    let error = common::check_failure(
        &canary,
        value.require("username").map(|_| ()),
        "missing key",
    );
    assert_eq!(error.kind(), ErrorKind::Malformed);
    common::assert_no_leak(&canary, &format!("{value:?}"), "value Debug");

    for (name, payload) in [
        ("plain", canary.clone()),
        ("string", format!(r#""{canary}""#)),
        ("array", format!(r#"["{canary}"]"#)),
        ("broken", format!(r#"{{"password": {canary}}}"#)),
        ("truncated", format!(r#"{{"password":"{canary}"#)),
        ("null", r#"{"k":null}"#.to_owned()),
    ] {
        fake.set_secret(name, &payload);
        let error = common::check_failure(&canary, good.get(&reference(&fake, name)).await, name);
        assert_eq!(error.kind(), ErrorKind::Malformed, "{name}: {error}");
    }

    fake.set_secret("locked", &format!(r#"{{"password":"{canary}"}}"#));
    fake.set_access("locked", AzureAccess::Denied);
    let error = common::check_failure(
        &canary,
        good.get(&reference(&fake, "locked")).await,
        "denied",
    );
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    let error = common::check_failure(
        &canary,
        good.get(&reference(&fake, "nope")).await,
        "missing",
    );
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");

    // A client secret Entra ID refuses (the canary itself: it must not be echoed either).
    let wrong = builder(&fake, client_secret(&fake, &canary))
        .build()
        .unwrap();
    let error = common::check_failure(
        &canary,
        wrong.get(&reference(&fake, "ok")).await,
        "bad client secret",
    );
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    common::assert_no_leak(&canary, &format!("{wrong:?}"), "store Debug");

    // TLS without the test CA: the fake's certificate is not trusted.
    let untrusted = AzureKeyVaultStore::builder()
        .credentials(client_secret(&fake, "app-secret"))
        .verify_challenge_resource(false)
        .build()
        .unwrap();
    let error = common::check_failure(
        &canary,
        untrusted.get(&reference(&fake, "ok")).await,
        "untrusted",
    );
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");

    // Unreachable, then too slow.
    let closed = SecretStoreRef::Azure {
        vault_url: format!("https://127.0.0.1:{}", common::closed_port()),
        name: "ok".into(),
    };
    let error = common::check_failure(&canary, good.get(&closed).await, "unreachable");
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    let slow = builder(&fake, client_secret(&fake, "app-secret"))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    fake.set_stalled(true);
    let error = common::check_failure(&canary, slow.get(&reference(&fake, "ok")).await, "timeout");
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    fake.set_stalled(false);

    let logged = logs.text();
    assert!(
        logged.contains("azure"),
        "nothing was logged at TRACE: {logged}"
    );
    common::assert_no_leak(&canary, &logged, "logs");
}
