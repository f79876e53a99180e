//! [`SecretResolver`]: one backend per kind of store, with an opt-in short-lived cache.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use apono_core::{SecretError, SecretStore, SecretStoreKind, SecretStoreRef, SecretValue};
use tokio::time::Instant;
use tracing::{debug, instrument};

/// Routes a [`SecretStoreRef`] to the backend configured for its kind.
///
/// By default every [`SecretResolver::resolve`] reads the store: secrets are read when used and
/// not kept. Operators with many actions per second may opt in to a short cache with
/// [`SecretResolverBuilder::cache_ttl`]; then a value is reused until its time-to-live runs out
/// or [`SecretResolver::invalidate`] is called for its reference — call it whenever a target
/// rejects the credentials, so that the next action reads the (probably rotated) secret again.
/// Inline (`apono`) references are never cached: they are already in memory.
///
/// `Debug` lists the configured kinds and the cache size, never a value.
pub struct SecretResolver {
    stores: BTreeMap<SecretStoreKind, Arc<dyn SecretStore>>,
    cache: Option<Cache>,
}

/// Builds a [`SecretResolver`].
#[derive(Default)]
pub struct SecretResolverBuilder {
    stores: BTreeMap<SecretStoreKind, Arc<dyn SecretStore>>,
    cache_ttl: Option<Duration>,
}

struct Cache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, SecretValue)>>,
}

impl SecretResolver {
    /// A builder with no stores and no cache.
    pub fn builder() -> SecretResolverBuilder {
        SecretResolverBuilder::default()
    }

    /// The backend serving `kind`, if one is configured.
    pub fn store(&self, kind: SecretStoreKind) -> Option<&Arc<dyn SecretStore>> {
        self.stores.get(&kind)
    }

    /// The kinds of store this resolver can read.
    pub fn kinds(&self) -> impl Iterator<Item = SecretStoreKind> + '_ {
        self.stores.keys().copied()
    }

    /// Reads the secret `reference` points to, from the backend for its kind (or from the
    /// opt-in cache while the entry is fresh).
    ///
    /// A kind without a backend yields [`SecretError::NotConfigured`]. Cancel-safe: dropping
    /// the future abandons the read and caches nothing.
    #[instrument(skip_all, fields(store = %reference.kind()))]
    pub async fn resolve(&self, reference: &SecretStoreRef) -> Result<SecretValue, SecretError> {
        let kind = reference.kind();
        let store = self
            .stores
            .get(&kind)
            .ok_or(SecretError::NotConfigured { kind })?;
        let key = self.cache.as_ref().and_then(|_| cache_key(reference));
        if let (Some(cache), Some(key)) = (&self.cache, &key)
            && let Some(value) = cache.fresh(key)
        {
            debug!(reference = %reference, "secret served from the resolver cache");
            return Ok(value);
        }
        let value = store.get(reference).await?;
        if let (Some(cache), Some(key)) = (&self.cache, key) {
            cache.put(key, value.clone());
        }
        Ok(value)
    }

    /// Forgets the cached value of `reference`, so that the next [`SecretResolver::resolve`]
    /// reads the store. Call it when a target rejects the credentials. Does nothing without a
    /// cache.
    pub fn invalidate(&self, reference: &SecretStoreRef) {
        if let (Some(cache), Some(key)) = (&self.cache, cache_key(reference)) {
            let removed = cache.lock().remove(&key).is_some();
            debug!(reference = %reference, removed, "resolver cache entry invalidated");
        }
    }

    /// Forgets every cached value.
    pub fn invalidate_all(&self) {
        if let Some(cache) = &self.cache {
            cache.lock().clear();
        }
    }
}

impl fmt::Debug for SecretResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretResolver")
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .field("cache_ttl", &self.cache.as_ref().map(|c| c.ttl))
            .field(
                "cached_entries",
                &self.cache.as_ref().map(|c| c.lock().len()),
            )
            .finish()
    }
}

impl SecretResolverBuilder {
    /// Serves `store.kind()` with `store`, replacing any store of that kind given before.
    pub fn store(mut self, store: Arc<dyn SecretStore>) -> Self {
        self.stores.insert(store.kind(), store);
        self
    }

    /// Opts in to caching values for `ttl` (keep it short: seconds, not hours). A zero TTL
    /// means no cache.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl = Some(ttl).filter(|ttl| !ttl.is_zero());
        self
    }

    /// The resolver.
    pub fn build(self) -> SecretResolver {
        SecretResolver {
            stores: self.stores,
            cache: self.cache_ttl.map(|ttl| Cache {
                ttl,
                entries: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl fmt::Debug for SecretResolverBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretResolverBuilder")
            .field("stores", &self.stores.keys().collect::<Vec<_>>())
            .field("cache_ttl", &self.cache_ttl)
            .finish()
    }
}

impl Cache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, SecretValue)>> {
        // A panic while holding the lock cannot leave the map half-updated.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fresh(&self, key: &str) -> Option<SecretValue> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some((stored, value)) if stored.elapsed() < self.ttl => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn put(&self, key: String, value: SecretValue) {
        let mut entries = self.lock();
        let ttl = self.ttl;
        entries.retain(|_, (stored, _)| stored.elapsed() < ttl);
        entries.insert(key, (Instant::now(), value));
    }
}

/// A cache key that tells every non-inline reference apart (the serialised reference), or
/// `None` for inline parameters, which are never cached.
fn cache_key(reference: &SecretStoreRef) -> Option<String> {
    match reference {
        SecretStoreRef::Apono { .. } => None,
        other => serde_json::to_string(other).ok(),
    }
}
