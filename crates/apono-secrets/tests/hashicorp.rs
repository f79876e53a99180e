//! The HashiCorp Vault backend against a real OpenBao dev server (plain and TLS).
#![cfg(feature = "hashicorp")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use apono_core::conformance::{SecretStoreFixture, check_secret_store};
use apono_core::{
    ErrorKind, SecretError, SecretStore, SecretStoreKind, SecretStoreRef, SecretValue, async_trait,
};
use apono_secrets::{HashicorpVaultStore, VAULT_CONFIG_ENV, VAULT_CONFIG_FILE_ENV, VaultConfig};
use apono_testkit::OpenBao;
use secrecy::ExposeSecret;

/// Runs the bao CLI against `server` and returns its stdout; fails the test on error.
fn bao(server: &OpenBao, args: &[&str]) -> String {
    let output = server.cli().args(args).output().expect("run bao");
    assert!(
        output.status.success(),
        "bao {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn vault_ref(engine: &str, path: &str) -> SecretStoreRef {
    SecretStoreRef::HashicorpVault {
        secret_engine: engine.into(),
        path: path.into(),
    }
}

fn direct_config(server: &OpenBao) -> String {
    format!(
        r#"[{{"address":"{}","token":"{}"}}]"#,
        server.address(),
        server.root_token()
    )
}

fn store_for(config: &str) -> HashicorpVaultStore {
    HashicorpVaultStore::builder(VaultConfig::from_json(config.as_bytes()).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn conformance_plain() {
    let server = OpenBao::start().expect("openbao must start");
    let password = common::canary();
    bao(
        &server,
        &[
            "kv",
            "put",
            "secret/apono/app",
            "username=admin",
            &format!("password={password}"),
        ],
    );
    let fixture = SecretStoreFixture {
        existing: vault_ref("secret", "apono/app"),
        expected: SecretValue::new()
            .with("username", "admin")
            .with("password", password.as_str()),
        missing: vault_ref("secret", "apono/missing"),
    };
    check_secret_store(&store_for(&direct_config(&server)), &fixture)
        .await
        .expect("conformance");
}

#[tokio::test]
async fn tls_with_ca_cert_base64() {
    let server = OpenBao::start_tls().expect("openbao (TLS) must start");
    bao(
        &server,
        &["kv", "put", "secret/apono/tls", "password=over-tls"],
    );
    let ca = data_encoding::BASE64.encode(server.ca_cert_pem().expect("a CA").as_bytes());
    let config = format!(
        r#"[{{"address":"{}","token":"{}","ca_cert_base64":"{ca}"}}]"#,
        server.address(),
        server.root_token()
    );
    let fixture = SecretStoreFixture {
        existing: vault_ref("secret", "apono/tls"),
        expected: SecretValue::new().with("password", "over-tls"),
        missing: vault_ref("secret", "apono/missing"),
    };
    check_secret_store(&store_for(&config), &fixture)
        .await
        .expect("conformance over TLS");

    // Verified by default: without the CA the self-signed chain is refused.
    let err = store_for(&direct_config(&server))
        .get(&vault_ref("secret", "apono/tls"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    // skip_verify, as a string, turns verification off.
    let config = format!(
        r#"[{{"address":"{}","token":"{}","skip_verify":"true"}}]"#,
        server.address(),
        server.root_token()
    );
    let value = store_for(&config)
        .get(&vault_ref("secret", "apono/tls"))
        .await
        .unwrap();
    assert_eq!(
        value.require("password").unwrap().expose_secret(),
        "over-tls"
    );
}

#[tokio::test]
async fn bad_ca_is_refused_at_build() {
    let config = format!(
        r#"[{{"address":"https://127.0.0.1:1","token":"t","ca_cert_base64":"{}"}}]"#,
        data_encoding::BASE64
            .encode(b"-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----\n")
    );
    let err = HashicorpVaultStore::builder(VaultConfig::from_json(config.as_bytes()).unwrap())
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

/// A Kubernetes-kind store serving one secret: stands in for any store that keeps the vault
/// connection.
#[derive(Debug)]
struct ConnectionStore {
    fields: SecretValue,
}

#[async_trait]
impl SecretStore for ConnectionStore {
    fn kind(&self) -> SecretStoreKind {
        SecretStoreKind::Kubernetes
    }
    async fn get(&self, reference: &SecretStoreRef) -> Result<SecretValue, SecretError> {
        match reference {
            SecretStoreRef::Kubernetes { namespace, name }
                if namespace == "apono" && name == "vault-conn" =>
            {
                Ok(self.fields.clone())
            }
            SecretStoreRef::Kubernetes { .. } => Err(SecretError::NotFound {
                reference: reference.to_string(),
                source: None,
            }),
            other => Err(SecretError::NotConfigured { kind: other.kind() }),
        }
    }
}

#[tokio::test]
async fn from_secret_store_chain() {
    let server = OpenBao::start().expect("openbao must start");
    bao(
        &server,
        &["kv", "put", "secret/apono/chained", "password=via-chain"],
    );
    let source = Arc::new(ConnectionStore {
        fields: SecretValue::new()
            .with("ADDRESS", server.address())
            .with("TOKEN", server.root_token()),
    });
    let config = r#"[{"from_secret_store": "KUBERNETES", "NAMESPACE": "apono", "SECRET_NAME": "vault-conn",}]"#;
    let config = VaultConfig::from_json(config.as_bytes()).unwrap();

    // Without a source store for the entry's kind, building fails clearly.
    let err = HashicorpVaultStore::builder(config.clone())
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("kubernetes"), "{err}");

    let store = HashicorpVaultStore::builder(config.clone())
        .secret_source(source)
        .build()
        .unwrap();
    let fixture = SecretStoreFixture {
        existing: vault_ref("secret", "apono/chained"),
        expected: SecretValue::new().with("password", "via-chain"),
        missing: vault_ref("secret", "apono/missing"),
    };
    check_secret_store(&store, &fixture)
        .await
        .expect("conformance through the chain");

    // A connection secret that is not where the entry says is a configuration error.
    let elsewhere = HashicorpVaultStore::builder(
        VaultConfig::from_json(
            br#"[{"from_secret_store":"KUBERNETES","namespace":"apono","name":"other"}]"#,
        )
        .unwrap(),
    )
    .secret_source(Arc::new(ConnectionStore {
        fields: SecretValue::new(),
    }))
    .build()
    .unwrap();
    let err = elsewhere
        .get(&vault_ref("secret", "apono/chained"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[cfg(feature = "aws")]
#[tokio::test]
async fn from_secret_store_chain_through_aws_backend() {
    use apono_secrets::AwsSecretsManagerStore;
    use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_secretsmanager::types::Tag;
    let server = OpenBao::start().expect("openbao must start");
    let moto = apono_testkit::Moto::start().expect("moto must start");
    bao(
        &server,
        &["kv", "put", "secret/apono/aws-chained", "password=via-aws"],
    );
    let sdk = aws_sdk_secretsmanager::Client::from_conf(
        aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(apono_testkit::Moto::REGION))
            .endpoint_url(moto.endpoint_url())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
            .build(),
    );
    sdk.create_secret()
        .name("vault-conn")
        .secret_string(format!(
            r#"{{"address":"{}","token":"{}"}}"#,
            server.address(),
            server.root_token()
        ))
        .tags(
            Tag::builder()
                .key("apono-connector-read")
                .value("true")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let aws = AwsSecretsManagerStore::builder()
        .static_credentials("testing", secrecy::SecretString::from("testing"), None)
        .endpoint_url(moto.endpoint_url())
        .build()
        .unwrap();
    let config = format!(
        r#"[{{"from_secret_store":"AWS","REGION":"{}","SECRET_ID":"vault-conn"}}]"#,
        apono_testkit::Moto::REGION
    );
    let store = HashicorpVaultStore::builder(VaultConfig::from_json(config.as_bytes()).unwrap())
        .secret_source(Arc::new(aws))
        .build()
        .unwrap();
    let value = store
        .get(&vault_ref("secret", "apono/aws-chained"))
        .await
        .unwrap();
    assert_eq!(
        value.require("password").unwrap().expose_secret(),
        "via-aws"
    );
}

#[tokio::test]
async fn pinned_engine_selects_its_vault() {
    let server = OpenBao::start().expect("openbao must start");
    bao(&server, &["secrets", "enable", "-path=team-b", "kv-v2"]);
    bao(&server, &["kv", "put", "team-b/app", "password=team-b"]);
    bao(&server, &["kv", "put", "secret/app", "password=default"]);
    let dead = format!("http://127.0.0.1:{}", common::closed_port());
    // Entry 0 is pinned to `elsewhere` (and unreachable); entry 1 is pinned to team-b;
    // entry 2 is the first unpinned one and serves everything else.
    let config = format!(
        r#"[{{"address":"{dead}","token":"x","secret_engine":"elsewhere"}},
            {{"address":"{a}","token":"{t}","secret_engines":["team-b"]}},
            {{"address":"{a}","token":"{t}"}},
            {{"address":"{dead}","token":"x"}}]"#,
        a = server.address(),
        t = server.root_token()
    );
    let store = store_for(&config);
    let read = |engine: &'static str| {
        let store = &store;
        async move {
            store
                .get(&vault_ref(engine, "app"))
                .await
                .map(|v| v.require("password").unwrap().expose_secret().to_owned())
        }
    };
    assert_eq!(read("team-b").await.unwrap(), "team-b");
    assert_eq!(read("secret").await.unwrap(), "default");
    let err = read("elsewhere").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn token_without_policy_is_permission_denied() {
    let server = OpenBao::start().expect("openbao must start");
    bao(&server, &["kv", "put", "secret/apono/app", "password=x"]);
    let weak = bao(
        &server,
        &["token", "create", "-policy=default", "-field=token"],
    );
    let config = format!(r#"[{{"address":"{}","token":"{weak}"}}]"#, server.address());
    let err = store_for(&config)
        .get(&vault_ref("secret", "apono/app"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
}

#[tokio::test]
async fn config_from_env_variables_and_file() {
    let server = OpenBao::start().expect("openbao must start");
    bao(
        &server,
        &["kv", "put", "secret/apono/env", "password=from-file"],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.json");
    std::fs::write(&path, direct_config(&server)).unwrap();
    let path_text = path.to_string_lossy().into_owned();
    let store = HashicorpVaultStore::from_lookup(|name| {
        (name == VAULT_CONFIG_FILE_ENV).then(|| path_text.clone())
    })
    .unwrap()
    .build()
    .unwrap();
    let value = store.get(&vault_ref("secret", "apono/env")).await.unwrap();
    assert_eq!(
        value.require("password").unwrap().expose_secret(),
        "from-file"
    );

    let inline = direct_config(&server);
    let store =
        HashicorpVaultStore::from_lookup(|name| (name == VAULT_CONFIG_ENV).then(|| inline.clone()))
            .unwrap()
            .build()
            .unwrap();
    assert_eq!(
        store
            .get(&vault_ref("secret", "apono/env"))
            .await
            .unwrap()
            .len(),
        1
    );

    let neither = HashicorpVaultStore::from_lookup(|_| None).unwrap_err();
    assert!(neither.to_string().contains(VAULT_CONFIG_ENV), "{neither}");
    let both = HashicorpVaultStore::from_lookup(|_| Some("[]".into())).unwrap_err();
    assert!(both.to_string().contains("only one"), "{both}");
}

#[tokio::test]
async fn timeout_is_reported() {
    let (_listener, port) = common::silent_listener();
    let config = format!(r#"[{{"address":"http://127.0.0.1:{port}","token":"t"}}]"#);
    let store = HashicorpVaultStore::builder(VaultConfig::from_json(config.as_bytes()).unwrap())
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let err = store.get(&vault_ref("secret", "x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
}
