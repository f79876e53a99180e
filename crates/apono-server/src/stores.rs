//! Choosing the secret stores a configuration needs, and building the built-in ones from the
//! process environment (the one place this crate reads it).
//!
//! A store is needed for every `secret_store` kind an integration names or
//! `connector.master_key` is read from, and, when the
//! HashiCorp store is needed, for every `from_secret_store` source of `HASHICORP_VAULT_CONFIG`
//! (the vault's address and token are read from AWS, GCP, Azure or Kubernetes at each use).
//! A store given by the application ([`crate::ConnectorBuilder::secret_store`]) is used as
//! it is; the others are built from the environment, each only when needed, so a connector
//! without cloud credentials starts. Building reads credentials but makes no request.

use std::collections::BTreeMap;
#[cfg(feature = "hashicorp")]
use std::collections::BTreeSet;
use std::sync::Arc;

use apono_control::Config;
use apono_core::{SecretStore, SecretStoreKind};

use crate::ServerError;

/// The stores by kind.
pub(crate) type Stores = BTreeMap<SecretStoreKind, Arc<dyn SecretStore>>;

/// gcloud's endpoint override for Secret Manager (`https://…/`, requests go to `{it}v1/…`),
/// honoured when the GCP store is built from the environment (private endpoints, tests).
pub const GCP_ENDPOINT_OVERRIDE_ENV: &str = "CLOUDSDK_API_ENDPOINT_OVERRIDES_SECRETMANAGER";

/// Who needs each store kind: the first integration naming it.
pub(crate) fn needed(config: &Config) -> BTreeMap<SecretStoreKind, String> {
    let mut needed = BTreeMap::new();
    // An integration bound to an agent reads its secret from the agent's own stores.
    let local = |i: &&apono_core::Integration| {
        i.connector
            .as_ref()
            .is_none_or(|c| *c == config.connector.id)
    };
    for integration in config.integrations.iter().filter(local) {
        needed
            .entry(integration.secret_store.kind())
            .or_insert_with(|| format!("integration {:?}", integration.name));
    }
    for channel in &config.notifications {
        if let Some(reference) = &channel.secret_store {
            needed
                .entry(reference.kind())
                .or_insert_with(|| format!("notification channel {:?}", channel.name));
        }
    }
    if let Some(kind) = config
        .connector
        .master_key
        .as_ref()
        .and_then(|k| k.secret_store_kind())
    {
        needed
            .entry(kind)
            .or_insert_with(|| "connector.master_key".to_owned());
    }
    needed
}

/// Adds to `stores` every needed kind it lacks, built from the environment when `from_env`,
/// else fails naming the first one missing.
pub(crate) async fn complete(
    stores: &mut Stores,
    config: &Config,
    from_env: bool,
) -> Result<(), ServerError> {
    complete_kinds(stores, config, needed(config), from_env).await
}

/// Adds to `stores` every kind of `needed` (kind → who needs it) it lacks, as [`complete`].
pub(crate) async fn complete_kinds(
    stores: &mut Stores,
    config: &Config,
    needed: BTreeMap<SecretStoreKind, String>,
    from_env: bool,
) -> Result<(), ServerError> {
    let vault_needed = needed.contains_key(&SecretStoreKind::HashicorpVault);
    let missing: Vec<(SecretStoreKind, String)> = needed
        .into_iter()
        .filter(|(kind, _)| !stores.contains_key(kind))
        .collect();
    for (kind, needed_by) in missing {
        if !from_env {
            return Err(ServerError::StoreNotBuilt {
                kind,
                feature: feature(kind),
                needed_by: format!(
                    "{needed_by} (and secret stores are not read from the environment)"
                ),
            });
        }
        if kind == SecretStoreKind::HashicorpVault {
            continue; // last: its `from_secret_store` sources come first
        }
        let store = from_environment(kind, config, &needed_by).await?;
        stores.insert(kind, store);
    }
    if from_env && !stores.contains_key(&SecretStoreKind::HashicorpVault) && vault_needed {
        let store = hashicorp(stores, config).await?;
        stores.insert(SecretStoreKind::HashicorpVault, store);
    }
    Ok(())
}

/// The apono-server feature that builds a store kind.
pub(crate) fn feature(kind: SecretStoreKind) -> &'static str {
    match kind {
        SecretStoreKind::Apono => "apono",
        SecretStoreKind::Kubernetes => "kubernetes",
        SecretStoreKind::Aws => "aws",
        SecretStoreKind::Azure => "azure",
        SecretStoreKind::Gcp => "gcp",
        SecretStoreKind::HashicorpVault => "hashicorp",
        _ => "(none)",
    }
}

#[allow(dead_code)] // unused when no store feature is on
fn failed(store: SecretStoreKind, error: apono_core::SecretError) -> ServerError {
    ServerError::SecretStore {
        store,
        failure: error.kind(),
        source: Box::new(error),
    }
}

/// The built-in store of `kind` (not HashiCorp), configured from the environment.
#[allow(clippy::unused_async)] // awaits only with some features
async fn from_environment(
    kind: SecretStoreKind,
    config: &Config,
    needed_by: &str,
) -> Result<Arc<dyn SecretStore>, ServerError> {
    let _ = config;
    match kind {
        #[cfg(feature = "apono")]
        SecretStoreKind::Apono => Ok(Arc::new(apono_secrets::AponoStore::new())),
        #[cfg(feature = "aws")]
        SecretStoreKind::Aws => {
            // Credentials from the standard chain; `AWS_ENDPOINT_URL` is honoured.
            let store = apono_secrets::AwsSecretsManagerStore::from_env()
                .await
                .build()
                .map_err(|e| failed(kind, e))?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "kubernetes")]
        SecretStoreKind::Kubernetes => {
            // `$KUBECONFIG` or `~/.kube/config`, else the pod's service account.
            let mut builder = apono_secrets::KubernetesStore::infer()
                .await
                .map_err(|e| failed(kind, e))?;
            if let Some(allowed) = &config.connector.allowed_secrets_to_read {
                builder = builder.allowed_secrets(allowed);
            }
            Ok(Arc::new(builder.build().map_err(|e| failed(kind, e))?))
        }
        #[cfg(feature = "azure")]
        SecretStoreKind::Azure => {
            // `AZURE_TENANT_ID`/`AZURE_CLIENT_ID`/`AZURE_CLIENT_SECRET`, workload identity or a
            // managed identity; `AZURE_AUTHORITY_HOST` is honoured.
            let store = apono_secrets::AzureKeyVaultStore::builder()
                .credentials(apono_secrets::AzureCredentials::from_env())
                .build()
                .map_err(|e| failed(kind, e))?;
            Ok(Arc::new(store))
        }
        #[cfg(feature = "gcp")]
        SecretStoreKind::Gcp => {
            // Application-default credentials (`GOOGLE_APPLICATION_CREDENTIALS`, gcloud's file,
            // the metadata server) and gcloud's endpoint override.
            let credentials = apono_secrets::GcpCredentials::application_default()
                .map_err(|e| failed(kind, e))?;
            let mut builder =
                apono_secrets::GcpSecretManagerStore::builder().credentials(credentials);
            if let Some(endpoint) = std::env::var(GCP_ENDPOINT_OVERRIDE_ENV)
                .ok()
                .filter(|v| !v.trim().is_empty())
            {
                builder = builder.endpoint(endpoint.trim().trim_end_matches('/'));
            }
            Ok(Arc::new(builder.build().map_err(|e| failed(kind, e))?))
        }
        other => Err(ServerError::StoreNotBuilt {
            kind: other,
            feature: feature(other),
            needed_by: needed_by.to_owned(),
        }),
    }
}

/// The HashiCorp Vault store from `HASHICORP_VAULT_CONFIG` (or the file named by
/// `HASHICORP_VAULT_CONFIG_FILE_PATH`), with a source store for each `from_secret_store` kind:
/// one already in `stores` (given, or built for an integration), else one built from the
/// environment and added to `stores`.
#[cfg(feature = "hashicorp")]
async fn hashicorp(
    stores: &mut Stores,
    config: &Config,
) -> Result<Arc<dyn SecretStore>, ServerError> {
    let kind = SecretStoreKind::HashicorpVault;
    let vault_config = apono_secrets::VaultConfig::from_lookup(|name| std::env::var(name).ok())
        .map_err(|e| ServerError::SecretStore {
            store: kind,
            failure: apono_core::ErrorKind::InvalidInput,
            source: Box::new(e),
        })?;
    let sources: BTreeSet<SecretStoreKind> = vault_config
        .entries()
        .iter()
        .filter_map(|entry| entry.secret_source().map(apono_core::SecretStoreRef::kind))
        .collect();
    let mut builder = apono_secrets::HashicorpVaultStore::builder(vault_config);
    for source in sources {
        let store = match stores.get(&source) {
            Some(store) => store.clone(),
            None => {
                let store = from_environment(source, config, "HASHICORP_VAULT_CONFIG").await?;
                stores.insert(source, store.clone());
                store
            }
        };
        builder = builder.secret_source(store);
    }
    Ok(Arc::new(builder.build().map_err(|e| failed(kind, e))?))
}

#[cfg(not(feature = "hashicorp"))]
#[allow(clippy::unused_async)]
async fn hashicorp(_: &mut Stores, config: &Config) -> Result<Arc<dyn SecretStore>, ServerError> {
    let kind = SecretStoreKind::HashicorpVault;
    Err(ServerError::StoreNotBuilt {
        kind,
        feature: feature(kind),
        needed_by: needed(config).remove(&kind).unwrap_or_default(),
    })
}
