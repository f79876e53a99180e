//! `SecretResolver`: routing by kind, no cache by default, opt-in TTL cache and invalidation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apono_core::{
    ErrorKind, SecretError, SecretStore, SecretStoreKind, SecretStoreRef, SecretValue, async_trait,
};
use apono_secrets::SecretResolver;
use secrecy::ExposeSecret;

/// An AWS-kind store that counts reads and returns the read number as `password`.
#[derive(Debug, Default)]
struct CountingStore {
    reads: AtomicUsize,
}

#[async_trait]
impl SecretStore for CountingStore {
    fn kind(&self) -> SecretStoreKind {
        SecretStoreKind::Aws
    }
    async fn get(&self, reference: &SecretStoreRef) -> Result<SecretValue, SecretError> {
        let n = self.reads.fetch_add(1, Ordering::SeqCst) + 1;
        match reference {
            SecretStoreRef::Aws { secret_id, .. } if secret_id == "missing" => {
                Err(SecretError::NotFound {
                    reference: reference.to_string(),
                    source: None,
                })
            }
            SecretStoreRef::Aws { .. } => Ok(SecretValue::new().with("password", n.to_string())),
            other => Err(SecretError::NotConfigured { kind: other.kind() }),
        }
    }
}

fn aws(secret_id: &str) -> SecretStoreRef {
    SecretStoreRef::Aws {
        region: "eu-west-1".into(),
        secret_id: secret_id.into(),
    }
}

fn password(value: &SecretValue) -> String {
    value
        .require("password")
        .unwrap()
        .expose_secret()
        .to_owned()
}

#[tokio::test]
async fn without_cache_every_resolve_reads_the_store() {
    let store = Arc::new(CountingStore::default());
    let resolver = SecretResolver::builder().store(store.clone()).build();
    for expected in ["1", "2", "3"] {
        assert_eq!(
            password(&resolver.resolve(&aws("db")).await.unwrap()),
            expected
        );
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn cache_serves_until_ttl_then_rereads() {
    let store = Arc::new(CountingStore::default());
    let resolver = SecretResolver::builder()
        .store(store.clone())
        .cache_ttl(Duration::from_secs(30))
        .build();
    assert_eq!(password(&resolver.resolve(&aws("db")).await.unwrap()), "1");
    tokio::time::advance(Duration::from_secs(29)).await;
    assert_eq!(password(&resolver.resolve(&aws("db")).await.unwrap()), "1");
    // Another reference is its own entry.
    assert_eq!(
        password(&resolver.resolve(&aws("other")).await.unwrap()),
        "2"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(password(&resolver.resolve(&aws("db")).await.unwrap()), "3");
    assert_eq!(store.reads.load(Ordering::SeqCst), 3);
}

#[tokio::test(start_paused = true)]
async fn invalidate_forces_a_fresh_read() {
    let store = Arc::new(CountingStore::default());
    let resolver = SecretResolver::builder()
        .store(store.clone())
        .cache_ttl(Duration::from_secs(60))
        .build();
    assert_eq!(password(&resolver.resolve(&aws("db")).await.unwrap()), "1");
    assert_eq!(password(&resolver.resolve(&aws("db")).await.unwrap()), "1");
    // The target rejected the credentials.
    resolver.invalidate(&aws("db"));
    assert_eq!(password(&resolver.resolve(&aws("db")).await.unwrap()), "2");
    assert_eq!(password(&resolver.resolve(&aws("db")).await.unwrap()), "2");
    resolver.invalidate_all();
    assert_eq!(password(&resolver.resolve(&aws("db")).await.unwrap()), "3");
}

#[tokio::test(start_paused = true)]
async fn errors_are_not_cached() {
    let store = Arc::new(CountingStore::default());
    let resolver = SecretResolver::builder()
        .store(store.clone())
        .cache_ttl(Duration::from_secs(60))
        .build();
    for _ in 0..2 {
        let err = resolver.resolve(&aws("missing")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unknown_kind_is_not_configured() {
    let resolver = SecretResolver::builder()
        .store(Arc::new(CountingStore::default()))
        .build();
    let err = resolver
        .resolve(&SecretStoreRef::Gcp {
            project: "p".into(),
            secret_id: "s".into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            SecretError::NotConfigured {
                kind: SecretStoreKind::Gcp
            }
        ),
        "{err}"
    );
    assert_eq!(err.to_string(), "no gcp secret store is configured");
    assert_eq!(resolver.kinds().collect::<Vec<_>>(), [SecretStoreKind::Aws]);
    assert!(resolver.store(SecretStoreKind::Aws).is_some());
    let shown = format!("{resolver:?}");
    assert!(shown.contains("Aws"), "{shown}");
}
