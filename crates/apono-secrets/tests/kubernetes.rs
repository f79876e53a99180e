//! The Kubernetes backend against `apono_testkit::fakes::FakeKubernetes` (itself checked by the
//! official Python client in apono-testkit's `tests/fake_kubernetes.rs`).
#![cfg(feature = "kubernetes")]

mod common;

use std::time::Duration;

use apono_core::conformance::{SecretStoreFixture, check_secret_store};
use apono_core::{ErrorKind, SecretStore, SecretStoreRef, SecretValue};
use apono_secrets::{KUBERNETES_READ_LABEL, KubernetesStore, KubernetesStoreBuilder};
use apono_testkit::fakes::{FakeKubernetes, KubernetesAccess};
use secrecy::{ExposeSecret, SecretString};

const TOKEN: &str = "sa-token-for-tests";
const READ: &[(&str, &str)] = &[(KUBERNETES_READ_LABEL, "true")];

fn reference(namespace: &str, name: &str) -> SecretStoreRef {
    SecretStoreRef::Kubernetes {
        namespace: namespace.into(),
        name: name.into(),
    }
}

fn builder(fake: &FakeKubernetes, token: &str) -> KubernetesStoreBuilder {
    KubernetesStore::with_token(&fake.url(), SecretString::from(token.to_owned()), "apono")
        .unwrap()
        .timeout(Duration::from_secs(10))
}

#[tokio::test]
async fn conformance_with_a_service_account_token() {
    let fake = FakeKubernetes::start().unwrap();
    fake.add_token(TOKEN);
    let password = common::canary();
    fake.put_secret(
        "apono",
        "db-admin",
        READ,
        [("username", "admin"), ("password", password.as_str())],
    );
    let store = builder(&fake, TOKEN).build().unwrap();
    let fixture = SecretStoreFixture {
        existing: reference("apono", "db-admin"),
        expected: SecretValue::new()
            .with("username", "admin")
            .with("password", password.clone()),
        missing: reference("apono", "does-not-exist"),
    };
    check_secret_store(&store, &fixture)
        .await
        .unwrap_or_else(|f| panic!("conformance failed: {f}"));
    let read = fake
        .requests()
        .into_iter()
        .find(|r| r.path_and_query == "/api/v1/namespaces/apono/secrets/db-admin")
        .expect("the secret was read");
    assert_eq!(
        read.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
}

#[tokio::test]
async fn the_label_and_the_allow_list_guard_reads() {
    let fake = FakeKubernetes::start().unwrap();
    fake.add_token(TOKEN);
    fake.put_secret("apono", "listed", READ, [("k", "v")]);
    fake.put_secret("apono", "bare", READ, [("k", "v")]);
    fake.put_secret("apono", "unlisted", READ, [("k", "v")]);
    fake.put_secret("apono", "unlabelled", &[], [("k", "v")]);
    fake.put_secret(
        "apono",
        "wrong-value",
        &[(KUBERNETES_READ_LABEL, "yes")],
        [("k", "v")],
    );

    let open = builder(&fake, TOKEN).build().unwrap();
    assert_eq!(
        open.get(&reference("apono", "unlisted"))
            .await
            .unwrap()
            .len(),
        1
    );
    for name in ["unlabelled", "wrong-value"] {
        let error = open.get(&reference("apono", name)).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{name}: {error}");
        assert!(
            error.to_string().contains("apono-connector-read=true"),
            "{error}"
        );
    }

    let guarded = builder(&fake, TOKEN)
        .allowed_secrets(["apono/listed", "bare", "other/listed"])
        .build()
        .unwrap();
    let value = guarded.get(&reference("apono", "listed")).await.unwrap();
    assert_eq!(value.require("k").unwrap().expose_secret(), "v");
    // A bare entry names a secret of the default namespace.
    guarded.get(&reference("apono", "bare")).await.unwrap();
    let before = fake.requests().len();
    let error = guarded
        .get(&reference("apono", "unlisted"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    assert!(
        error.to_string().contains("allowedSecretsToRead"),
        "{error}"
    );
    assert_eq!(
        fake.requests().len(),
        before,
        "a secret off the allow-list was fetched"
    );
}

#[tokio::test]
async fn a_kubeconfig_file_is_used() {
    let fake = FakeKubernetes::start().unwrap();
    fake.add_token(TOKEN);
    fake.put_secret("apono", "s", READ, [("k", "v")]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
             clusters:\n- name: fake\n  cluster:\n    server: {}\n\
             users:\n- name: connector\n  user:\n    token: {TOKEN}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: connector\n    namespace: apono\n",
            fake.url()
        ),
    )
    .unwrap();
    let store = KubernetesStore::from_kubeconfig_file(&path, None)
        .await
        .unwrap()
        .allowed_secrets(["s"])
        .build()
        .unwrap();
    assert_eq!(store.get(&reference("apono", "s")).await.unwrap().len(), 1);

    let canary = common::canary();
    std::fs::write(
        &path,
        format!("apiVersion: v1\nusers: [{{token: {canary}\n"),
    )
    .unwrap();
    let error = KubernetesStore::from_kubeconfig_file(&path, None)
        .await
        .map(|_| ());
    let error = common::check_failure(&canary, error, "broken kubeconfig");
    assert_eq!(error.kind(), ErrorKind::InvalidInput, "{error}");
}

#[tokio::test]
async fn every_failure_path_keeps_the_canary_out_of_errors_logs_and_panics() {
    let (logs, _guard) = common::capture_logs();
    let fake = FakeKubernetes::start().unwrap();
    fake.add_token(TOKEN);
    let canary = common::canary();
    let good = builder(&fake, TOKEN).build().unwrap();

    fake.put_secret("apono", "ok", READ, [("password", canary.as_str())]);
    let value = good.get(&reference("apono", "ok")).await.unwrap();
    let error = common::check_failure(
        &canary,
        value.require("username").map(|_| ()),
        "missing key",
    );
    assert_eq!(error.kind(), ErrorKind::Malformed);
    common::assert_no_leak(&canary, &format!("{value:?}"), "value Debug");

    // Not text: a data value that is not UTF-8.
    let mut bytes = canary.clone().into_bytes();
    bytes.push(0xff);
    fake.put_secret("apono", "binary", READ, [("password", bytes)]);
    let error = common::check_failure(
        &canary,
        good.get(&reference("apono", "binary")).await,
        "binary",
    );
    assert_eq!(error.kind(), ErrorKind::Malformed, "{error}");
    assert!(error.to_string().contains("`password`"), "{error}");

    // The read guard, RBAC, a missing secret.
    fake.put_secret("apono", "unlabelled", &[], [("password", canary.as_str())]);
    let error = common::check_failure(
        &canary,
        good.get(&reference("apono", "unlabelled")).await,
        "unlabelled",
    );
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    fake.put_secret("apono", "locked", READ, [("password", canary.as_str())]);
    fake.set_access("apono", "locked", KubernetesAccess::Denied);
    let error = common::check_failure(
        &canary,
        good.get(&reference("apono", "locked")).await,
        "rbac",
    );
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    assert!(error.to_string().contains("RBAC"), "{error}");
    let error = common::check_failure(
        &canary,
        good.get(&reference("apono", "nope")).await,
        "missing",
    );
    assert_eq!(error.kind(), ErrorKind::NotFound, "{error}");

    // An overloaded API server (429 + Retry-After): one request, answered `Unavailable`
    // (not a `Timeout` after kube's own retries); retrying is the scheduler's job, not kube's.
    fake.put_secret("apono", "busy", READ, [("password", canary.as_str())]);
    fake.set_access("apono", "busy", KubernetesAccess::Throttled);
    let before = fake.requests().len();
    let error = common::check_failure(
        &canary,
        good.get(&reference("apono", "busy")).await,
        "throttled",
    );
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    assert!(error.kind().is_retryable(), "{error}");
    assert_eq!(fake.requests().len(), before + 1, "the read was retried");

    // A token the API server rejects (the canary: it must not be echoed either).
    let wrong = builder(&fake, &canary).build().unwrap();
    let error = common::check_failure(
        &canary,
        wrong.get(&reference("apono", "ok")).await,
        "bad token",
    );
    assert_eq!(error.kind(), ErrorKind::PermissionDenied, "{error}");
    common::assert_no_leak(&canary, &format!("{wrong:?}"), "store Debug");

    // Unreachable, then too slow.
    let closed = KubernetesStore::with_token(
        &format!("http://127.0.0.1:{}", common::closed_port()),
        SecretString::from(TOKEN),
        "apono",
    )
    .unwrap()
    .build()
    .unwrap();
    let error = common::check_failure(
        &canary,
        closed.get(&reference("apono", "ok")).await,
        "unreachable",
    );
    assert_eq!(error.kind(), ErrorKind::Unavailable, "{error}");
    let slow = builder(&fake, TOKEN)
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    fake.set_stalled(true);
    let error = common::check_failure(
        &canary,
        slow.get(&reference("apono", "ok")).await,
        "timeout",
    );
    assert_eq!(error.kind(), ErrorKind::Timeout, "{error}");
    fake.set_stalled(false);

    let logged = logs.text();
    assert!(
        logged.contains("kubernetes"),
        "nothing was logged at TRACE: {logged}"
    );
    common::assert_no_leak(&canary, &logged, "logs");
}
