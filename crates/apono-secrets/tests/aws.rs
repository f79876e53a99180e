//! The AWS Secrets Manager backend against a real moto server.
#![cfg(feature = "aws")]

mod common;

use apono_core::conformance::{SecretStoreFixture, check_secret_store};
use apono_core::{ErrorKind, SecretStore, SecretStoreRef, SecretValue};
use apono_secrets::{AwsSecretsManagerStore, READ_TAG_KEY};
use apono_testkit::Moto;
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::Tag;
use secrecy::{ExposeSecret, SecretString};

fn sdk(moto: &Moto) -> aws_sdk_secretsmanager::Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(Moto::REGION))
        .endpoint_url(moto.endpoint_url())
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

fn store(moto: &Moto) -> apono_secrets::AwsSecretsManagerStoreBuilder {
    AwsSecretsManagerStore::builder()
        .static_credentials("testing", SecretString::from("testing"), None)
        .endpoint_url(moto.endpoint_url())
}

enum Payload<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

async fn create(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
    payload: Payload<'_>,
    tagged: bool,
) {
    let mut request = client.create_secret().name(name);
    request = match payload {
        Payload::Text(text) => request.secret_string(text),
        Payload::Binary(bytes) => request.secret_binary(Blob::new(bytes)),
    };
    if tagged {
        request = request.tags(Tag::builder().key(READ_TAG_KEY).value("true").build());
    }
    request.send().await.expect("create the secret in moto");
}

fn aws(secret_id: &str) -> SecretStoreRef {
    SecretStoreRef::Aws {
        region: Moto::REGION.into(),
        secret_id: secret_id.into(),
    }
}

#[tokio::test]
async fn conformance() {
    let moto = Moto::start().expect("moto must start");
    let client = sdk(&moto);
    let password = common::canary();
    let json = format!(r#"{{"username":"admin","password":"{password}","port":5432}}"#);
    create(&client, "apono/conformance", Payload::Text(&json), true).await;
    let store = store(&moto).build().unwrap();
    let fixture = SecretStoreFixture {
        existing: aws("apono/conformance"),
        expected: SecretValue::new()
            .with("username", "admin")
            .with("password", password.as_str())
            .with("port", "5432"),
        missing: aws("apono/does-not-exist"),
    };
    let report = check_secret_store(&store, &fixture)
        .await
        .expect("conformance");
    assert!(!report.passed.is_empty());
}

#[tokio::test]
async fn tagged_secret_read_by_name_arn_and_binary() {
    let moto = Moto::start().expect("moto must start");
    let client = sdk(&moto);
    create(
        &client,
        "apono/text",
        Payload::Text(r#"{"user":"a","password":"b"}"#),
        true,
    )
    .await;
    create(
        &client,
        "apono/binary",
        Payload::Binary(br#"{"user":"c"}"#),
        true,
    )
    .await;
    let store = store(&moto).build().unwrap();

    let value = store.get(&aws("apono/text")).await.unwrap();
    assert_eq!(value.keys().collect::<Vec<_>>(), ["password", "user"]);
    let arn = client
        .describe_secret()
        .secret_id("apono/text")
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_owned();
    let by_arn = store.get(&aws(&arn)).await.unwrap();
    assert_eq!(by_arn, value);

    let binary = store.get(&aws("apono/binary")).await.unwrap();
    assert_eq!(binary.require("user").unwrap().expose_secret(), "c");
}

#[tokio::test]
async fn untagged_secret_is_refused_naming_the_rule() {
    let moto = Moto::start().expect("moto must start");
    let client = sdk(&moto);
    create(
        &client,
        "apono/untagged",
        Payload::Text(r#"{"password":"x"}"#),
        false,
    )
    .await;
    let err = store(&moto)
        .build()
        .unwrap()
        .get(&aws("apono/untagged"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let shown = err.to_string();
    assert!(shown.contains("apono-connector-read=true"), "{shown}");
    assert!(shown.contains("apono/untagged"), "{shown}");

    // Where IAM enforces the tag, the guard can be switched off.
    let unguarded = store(&moto).require_read_tag(false).build().unwrap();
    let value = unguarded.get(&aws("apono/untagged")).await.unwrap();
    assert_eq!(value.keys().collect::<Vec<_>>(), ["password"]);
}

#[tokio::test]
async fn missing_secret_is_not_found() {
    let moto = Moto::start().expect("moto must start");
    let store = store(&moto).build().unwrap();
    for guard in [true, false] {
        let store = if guard {
            &store
        } else {
            &self::store(&moto).require_read_tag(false).build().unwrap()
        };
        let err = store.get(&aws("apono/nope")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        assert!(
            std::error::Error::source(&err).is_some(),
            "the backend error is the source"
        );
    }
}

#[tokio::test]
async fn malformed_values_are_classified() {
    let moto = Moto::start().expect("moto must start");
    let client = sdk(&moto);
    create(&client, "apono/array", Payload::Text("[1,2]"), true).await;
    create(&client, "apono/null", Payload::Text(r#"{"k":null}"#), true).await;
    let store = store(&moto).build().unwrap();
    let err = store.get(&aws("apono/array")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Malformed);
    assert!(err.to_string().contains("an array"), "{err}");
    let err = store.get(&aws("apono/null")).await.unwrap_err();
    assert!(err.to_string().contains("`k`"), "{err}");
}

#[tokio::test]
async fn no_credentials_is_a_config_error() {
    let err = AwsSecretsManagerStore::builder().build().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}
