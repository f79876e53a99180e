//! The inline (`apono`) backend.
#![cfg(feature = "apono")]

mod common;

use apono_core::conformance::{SecretStoreFixture, check_secret_store};
use apono_core::{SecretStore, SecretStoreRef, SecretValue};
use apono_secrets::AponoStore;

#[tokio::test]
async fn conformance() {
    let password = common::canary();
    let fixture = SecretStoreFixture {
        existing: SecretStoreRef::Apono {
            parameters: SecretValue::new()
                .with("username", "admin")
                .with("password", password.as_str()),
        },
        expected: SecretValue::new()
            .with("username", "admin")
            .with("password", password.as_str()),
        missing: SecretStoreRef::Apono {
            parameters: SecretValue::new(),
        },
    };
    check_secret_store(&AponoStore::new(), &fixture)
        .await
        .expect("conformance");
}

#[tokio::test]
async fn warns_that_it_is_not_for_production() {
    let (logs, _guard) = common::capture_logs();
    let value = AponoStore::new()
        .get(&SecretStoreRef::Apono {
            parameters: SecretValue::new().with("password", "x"),
        })
        .await
        .unwrap();
    assert_eq!(value.len(), 1);
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("not recommended for production"),
        "{text}"
    );
}
