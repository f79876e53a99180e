//! `apono`: inline parameters written in the integration's configuration.

use apono_core::{SecretError, SecretStore, SecretStoreKind, SecretStoreRef, SecretValue};
use async_trait::async_trait;
use tracing::{instrument, warn};

/// Serves [`SecretStoreRef::Apono`] references: the parameters written inline in the
/// integration's configuration.
///
/// **Not for production.** The secret then lives in the configuration itself (and wherever
/// that is copied); Apono's own documentation recommends a secret manager instead. The first
/// read in a process logs a warning saying so (once: a warning per action would drown the log;
/// the connector also names each integration that uses inline parameters when it starts).
///
/// An integration whose inline parameters are empty has no secret: reading it is
/// [`SecretError::NotFound`].
#[derive(Debug, Default, Clone, Copy)]
#[non_exhaustive]
pub struct AponoStore;

impl AponoStore {
    /// The store.
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl SecretStore for AponoStore {
    fn kind(&self) -> SecretStoreKind {
        SecretStoreKind::Apono
    }

    #[instrument(skip_all, fields(store = "apono"))]
    async fn get(&self, reference: &SecretStoreRef) -> Result<SecretValue, SecretError> {
        let SecretStoreRef::Apono { parameters } = reference else {
            return Err(SecretError::NotConfigured {
                kind: reference.kind(),
            });
        };
        if parameters.is_empty() {
            return Err(SecretError::NotFound {
                reference: reference.to_string(),
                source: None,
            });
        }
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            warn!(
                keys = parameters.len(),
                "using inline secret parameters from the integration configuration; \
                 not recommended for production, use a secret manager"
            );
        }
        Ok(parameters.clone())
    }
}
