//! No secret leaks: a random canary is put into each backend, every failure path is driven,
//! and the canary (raw, base64, hex, URL- or JSON-encoded) must appear nowhere in errors'
//! `Display`/`Debug` chains, in logs captured at TRACE, or in panic messages.
//!
//! Each backend has its own `#[tokio::test]` here, on a current-thread runtime so that the
//! thread-local log capture sees every task. To add a backend: put the canary in it, call
//! `common::check_failure` on each failing read, and `common::assert_no_leak` on the logs.

mod common;

use common::{assert_no_leak, canary, capture_logs, check_failure};

#[cfg(feature = "apono")]
#[tokio::test]
async fn apono_never_leaks() {
    use apono_core::{SecretStore, SecretStoreRef, SecretValue};
    let secret = canary();
    let (logs, _guard) = capture_logs();
    let store = apono_secrets::AponoStore::new();
    let reference = SecretStoreRef::Apono {
        parameters: SecretValue::new().with("password", secret.as_str()),
    };
    let value = store.get(&reference).await.unwrap();
    check_failure(&secret, value.require("username"), "missing key");
    check_failure(
        &secret,
        store
            .get(&SecretStoreRef::Aws {
                region: "r".into(),
                secret_id: "s".into(),
            })
            .await,
        "other kind",
    );
    check_failure(
        &secret,
        store
            .get(&SecretStoreRef::Apono {
                parameters: SecretValue::new(),
            })
            .await,
        "empty parameters",
    );
    for hostile in [
        format!(r#"{{"apono":{{"parameters":{{"k":["{secret}"]}}}}}}"#),
        format!(r#"{{"apono":{{"parameters":{{"k":{{"x":"{secret}"}}}}}}}}"#),
        format!(r#"{{"apono":{{"parameters":{{"k":"{secret}"}},"x":1}}}}"#),
    ] {
        let err = serde_json::from_str::<SecretStoreRef>(&hostile).unwrap_err();
        assert_no_leak(
            &secret,
            &format!("{err} {err:?}"),
            "hostile inline parameters",
        );
    }
    let shown = format!("{store:?} {reference:?} {reference} {value:?}");
    assert_no_leak(&secret, &shown, "debug output");
    assert_no_leak(&secret, &logs.text(), "logs");
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn aws_never_leaks() {
    use std::time::Duration;

    use apono_core::{ErrorKind, SecretStore, SecretStoreRef};
    use apono_secrets::{AwsSecretsManagerStore, READ_TAG_KEY};
    use apono_testkit::Moto;
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_secretsmanager::primitives::Blob;
    use aws_sdk_secretsmanager::types::Tag;
    use secrecy::SecretString;

    let secret = canary();
    let moto = Moto::start().expect("moto must start");
    let sdk = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(Moto::REGION))
            .endpoint_url(moto.endpoint_url())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .build(),
    );
    let tag = || Tag::builder().key(READ_TAG_KEY).value("true").build();
    let cases: [(&str, String, bool); 7] = [
        ("ok", format!(r#"{{"password":"{secret}"}}"#), true),
        ("string", format!(r#""{secret}""#), true),
        ("bare", format!(r#"{{"password": {secret}}}"#), true),
        ("array", format!(r#"["{secret}"]"#), true),
        ("truncated", format!(r#"{{"password":"{secret}"#), true),
        ("number", "12345678".to_owned(), true),
        ("untagged", format!(r#"{{"password":"{secret}"}}"#), false),
    ];
    for (name, text, tagged) in &cases {
        let mut request = sdk.create_secret().name(*name).secret_string(text);
        if *tagged {
            request = request.tags(tag());
        }
        request.send().await.unwrap();
    }
    sdk.create_secret()
        .name("binary")
        .secret_binary(Blob::new(format!(r#"{{"password":{secret}"#)))
        .tags(tag())
        .send()
        .await
        .unwrap();

    let (logs, _guard) = capture_logs();
    let builder = || {
        AwsSecretsManagerStore::builder().static_credentials(
            "testing",
            SecretString::from("testing"),
            None,
        )
    };
    let store = builder().endpoint_url(moto.endpoint_url()).build().unwrap();
    let aws = |id: &str| SecretStoreRef::Aws {
        region: Moto::REGION.into(),
        secret_id: id.into(),
    };
    let value = store.get(&aws("ok")).await.unwrap();
    check_failure(&secret, value.require("username"), "missing key");
    for name in ["string", "bare", "array", "truncated", "number", "binary"] {
        let err = check_failure(&secret, store.get(&aws(name)).await, name);
        assert_eq!(err.kind(), ErrorKind::Malformed, "{name}: {err}");
    }
    let err = check_failure(&secret, store.get(&aws("untagged")).await, "untagged");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    let err = check_failure(&secret, store.get(&aws("missing")).await, "missing");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // The secret as a credential: the secret access key must not leak either.
    let keyed = AwsSecretsManagerStore::builder()
        .static_credentials("AKIDEXAMPLE", SecretString::from(secret.clone()), None)
        .endpoint_url(format!("http://127.0.0.1:{}", common::closed_port()))
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    assert_no_leak(
        &secret,
        &format!("{keyed:?}"),
        "debug of a store holding the key",
    );
    let err = check_failure(&secret, keyed.get(&aws("ok")).await, "unreachable");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let (_listener, port) = common::silent_listener();
    let silent = builder()
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = check_failure(&secret, silent.get(&aws("ok")).await, "timeout");
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert_no_leak(&secret, &format!("{store:?} {value:?}"), "debug output");
    let logs = logs.text();
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "logs were captured: {logs}"
    );
    assert_no_leak(&secret, &logs, "logs");
}

#[cfg(feature = "hashicorp")]
#[tokio::test]
async fn hashicorp_never_leaks() {
    use std::sync::Arc;
    use std::time::Duration;

    use apono_core::{
        ErrorKind, SecretError, SecretStore, SecretStoreKind, SecretStoreRef, SecretValue,
        async_trait,
    };
    use apono_secrets::{HashicorpVaultStore, VaultConfig};
    use apono_testkit::OpenBao;

    let secret = canary();
    let server = OpenBao::start().expect("openbao must start");
    let put = server
        .cli()
        .args([
            "kv",
            "put",
            "secret/apono/app",
            &format!("password={secret}"),
        ])
        .output()
        .unwrap();
    assert!(put.status.success());
    let vault = |engine: &str, path: &str| SecretStoreRef::HashicorpVault {
        secret_engine: engine.into(),
        path: path.into(),
    };
    let build = |config: String, timeout: Duration| {
        HashicorpVaultStore::builder(VaultConfig::from_json(config.as_bytes()).unwrap())
            .timeout(timeout)
            .build()
            .unwrap()
    };

    let (logs, _guard) = capture_logs();
    let store = build(
        format!(
            r#"[{{"address":"{}","token":"{}"}}]"#,
            server.address(),
            server.root_token()
        ),
        Duration::from_secs(10),
    );
    let value = store.get(&vault("secret", "apono/app")).await.unwrap();
    check_failure(&secret, value.require("username"), "missing key");
    let err = check_failure(
        &secret,
        store.get(&vault("secret", "apono/none")).await,
        "missing",
    );
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = check_failure(&secret, store.get(&vault("nomount", "x")).await, "no mount");
    assert!(
        matches!(
            err.kind(),
            ErrorKind::NotFound | ErrorKind::PermissionDenied
        ),
        "{err}"
    );

    // The canary as the token: refused, and never shown.
    let bad_token = build(
        format!(
            r#"[{{"address":"{}","token":"{secret}"}}]"#,
            server.address()
        ),
        Duration::from_secs(10),
    );
    let err = check_failure(
        &secret,
        bad_token.get(&vault("secret", "apono/app")).await,
        "bad token",
    );
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let unreachable = build(
        format!(
            r#"[{{"address":"http://127.0.0.1:{}","token":"{secret}"}}]"#,
            common::closed_port()
        ),
        Duration::from_secs(10),
    );
    let err = check_failure(
        &secret,
        unreachable.get(&vault("secret", "apono/app")).await,
        "unreachable",
    );
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let (_listener, port) = common::silent_listener();
    let silent = build(
        format!(r#"[{{"address":"http://127.0.0.1:{port}","token":"{secret}"}}]"#),
        Duration::from_millis(300),
    );
    let err = check_failure(
        &secret,
        silent.get(&vault("secret", "apono/app")).await,
        "timeout",
    );
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");

    // Malformed configurations that carry the canary.
    for config in [
        format!(r#"[{{"address":"{secret}","token":"t"}}]"#),
        format!(r#"[{{"address":"https://v","token":"{secret}","skip_verify":"{secret}"}}]"#),
        format!(r#"[{{"address":"https://v","token":"{secret}","ca_cert_base64":"{secret}"}}]"#),
        format!(r#"[{{"address":"https://v","token":["{secret}"]}}]"#),
        format!(r#"[{{"address":"https://v","token":"{secret}""#),
        format!(r#"["{secret}"]"#),
    ] {
        let err = VaultConfig::from_json(config.as_bytes()).unwrap_err();
        assert_no_leak(&secret, &common::error_text(&err), "config");
    }

    // A from_secret_store chain whose connection secret is malformed or holds the canary.
    #[derive(Debug)]
    struct Source(SecretValue);
    #[async_trait]
    impl SecretStore for Source {
        fn kind(&self) -> SecretStoreKind {
            SecretStoreKind::Kubernetes
        }
        async fn get(&self, _: &SecretStoreRef) -> Result<SecretValue, SecretError> {
            Ok(self.0.clone())
        }
    }
    let chain_config = VaultConfig::from_json(
        br#"[{"from_secret_store":"KUBERNETES","namespace":"apono","name":"vault"}]"#,
    )
    .unwrap();
    for fields in [
        SecretValue::new()
            .with("address", secret.as_str())
            .with("token", "t"),
        SecretValue::new().with("token", secret.as_str()),
        SecretValue::new()
            .with("address", server.address())
            .with("token", secret.as_str()),
        SecretValue::new()
            .with("address", server.address())
            .with("token", "t")
            .with("skip_verify", secret.as_str()),
    ] {
        let chained = HashicorpVaultStore::builder(chain_config.clone())
            .secret_source(Arc::new(Source(fields)))
            .build()
            .unwrap();
        assert_no_leak(&secret, &format!("{chained:?}"), "chained debug");
        check_failure(
            &secret,
            chained.get(&vault("secret", "apono/app")).await,
            "chain",
        );
    }

    let shown = format!("{store:?} {bad_token:?} {value:?}");
    assert_no_leak(&secret, &shown, "debug output");
    assert_no_leak(&secret, &logs.text(), "logs");
}

/// The check itself can fail: every encoded form of the canary is caught.
#[test]
fn the_leak_check_catches_every_form() {
    let secret = canary();
    let encodings = [
        secret.clone(),
        data_encoding::BASE64.encode(format!("user:{secret}").as_bytes()),
        data_encoding::BASE64URL_NOPAD.encode(format!("ab{secret}").as_bytes()),
        data_encoding::HEXUPPER.encode(secret.as_bytes()),
        secret.replace('-', "%2D"),
    ];
    for encoded in encodings {
        let text = format!("error: something went wrong near {encoded}!");
        let caught = common::panic_message(|| assert_no_leak(&secret, &text, "self-test"));
        assert!(caught.is_some(), "not caught: {encoded}");
    }
    assert!(
        common::panic_message(|| assert_no_leak(&secret, "nothing here", "self-test")).is_none()
    );
}
