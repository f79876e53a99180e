//! The executor of an agent (`apono-connector agent`): the same [`Executor`] a connector
//! builds, over the secret stores of the kinds the agent is told to serve, built from its own
//! environment (the integrations arrive with their actions, so their kinds are named up front).

use std::collections::BTreeMap;
use std::sync::Arc;

use apono_control::{Config, ConnectorSettings};
use apono_core::SecretStoreKind;
use apono_runtime::{Executor, ExecutorLimits, ProvisionerRegistry};
use apono_secrets::SecretResolver;

use crate::ServerError;
use crate::stores::{self, Stores};

/// An executor over `registry` whose secret stores are those of `kinds`, each built from the
/// process environment as a connector builds its own (see the crate documentation), with the
/// limits and `allowed_secrets_to_read` of `settings`.
pub async fn agent_executor(
    registry: ProvisionerRegistry,
    kinds: &[SecretStoreKind],
    settings: ConnectorSettings,
) -> Result<Arc<Executor>, ServerError> {
    let limits = ExecutorLimits {
        global: settings.max_concurrent_actions,
        per_target: settings.max_concurrent_per_target,
        action_timeout: settings.action_timeout.0,
    };
    let config = Config {
        connector: settings,
        users: Vec::new(),
        integrations: Vec::new(),
        access_flows: Vec::new(),
        notifications: Vec::new(),
        identity_providers: Vec::new(),
    };
    let needed: BTreeMap<SecretStoreKind, String> = kinds
        .iter()
        .map(|kind| (*kind, "the agent's --secret-store".to_owned()))
        .collect();
    let mut built = Stores::new();
    stores::complete_kinds(&mut built, &config, needed, true).await?;
    let mut resolver = SecretResolver::builder();
    for store in built.into_values() {
        resolver = resolver.store(store);
    }
    Ok(Arc::new(Executor::new(
        registry,
        Arc::new(resolver.build()),
        limits,
    )))
}
