//! `hashicorp`: HashiCorp Vault and OpenBao kv-v2, configured by `HASHICORP_VAULT_CONFIG`.

mod config;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use apono_core::{
    SecretError, SecretStore, SecretStoreKind, SecretStoreRef, SecretValue, error_chain,
};
use async_trait::async_trait;
use secrecy::ExposeSecret;
use tracing::{debug, instrument, warn};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::backend_error;
use config::{Connection, EntrySource};
pub use config::{
    VAULT_CONFIG_ENV, VAULT_CONFIG_FILE_ENV, VaultConfig, VaultConfigError, VaultEntry,
};

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
const STORE: &str = "hashicorp vault";

/// Serves [`SecretStoreRef::HashicorpVault`] references from HashiCorp Vault or OpenBao kv-v2
/// engines: `secret_engine` is the kv-v2 mount, `path` the secret within it, and the latest
/// version's data (a JSON object) becomes the [`SecretValue`].
///
/// The vaults come from a [`VaultConfig`] (Apono's `HASHICORP_VAULT_CONFIG`); which entry
/// serves a reference is explained in the crate documentation. TLS is verified against the
/// system roots, or only against `ca_cert_base64` when an entry gives one; `skip_verify`
/// turns verification off (logged as a warning). Entries of the `from_secret_store` form read
/// their address and token, at each use, from another [`SecretStore`] given with
/// [`HashicorpVaultStoreBuilder::secret_source`].
///
/// Each read is bounded by a timeout (15 s unless [`HashicorpVaultStoreBuilder::timeout`]
/// says otherwise), after which it fails with [`SecretError::Timeout`].
pub struct HashicorpVaultStore {
    config: VaultConfig,
    /// One client per direct entry (built once), `None` for `from_secret_store` entries.
    clients: Vec<Option<VaultClient>>,
    sources: BTreeMap<SecretStoreKind, Arc<dyn SecretStore>>,
    timeout: Duration,
}

/// Builds a [`HashicorpVaultStore`].
pub struct HashicorpVaultStoreBuilder {
    config: VaultConfig,
    sources: BTreeMap<SecretStoreKind, Arc<dyn SecretStore>>,
    timeout: Duration,
}

impl HashicorpVaultStore {
    /// A builder for `config`.
    pub fn builder(config: VaultConfig) -> HashicorpVaultStoreBuilder {
        HashicorpVaultStoreBuilder {
            config,
            sources: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A builder for the configuration in the process environment:
    /// [`VAULT_CONFIG_ENV`] (`HASHICORP_VAULT_CONFIG`) or the file named by
    /// [`VAULT_CONFIG_FILE_ENV`] (`HASHICORP_VAULT_CONFIG_FILE_PATH`); exactly one must be
    /// set. This is the one place this backend reads the environment or a file; call it
    /// explicitly.
    pub fn from_env() -> Result<HashicorpVaultStoreBuilder, VaultConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`HashicorpVaultStore::from_env`], with variables looked up through `lookup`.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<HashicorpVaultStoreBuilder, VaultConfigError> {
        VaultConfig::from_lookup(lookup).map(Self::builder)
    }

    async fn read(
        &self,
        engine: &str,
        path: &str,
        shown: &str,
    ) -> Result<SecretValue, SecretError> {
        let Some((index, entry)) = self.config.select(engine) else {
            return Err(SecretError::Config {
                store: STORE.into(),
                reason: format!(
                    "no vault entry serves the secret engine `{engine}` (every entry is pinned \
                     to other engines)"
                ),
                source: None,
            });
        };
        debug!(entry = index, "vault entry selected");
        let fetched;
        let (client, address) = match (&entry.source, self.clients.get(index)) {
            (EntrySource::Direct(connection), Some(Some(client))) => {
                (client, connection.address.as_str())
            }
            (EntrySource::FromSecretStore(source_ref), _) => {
                let connection = self.fetch_connection(source_ref).await?;
                fetched = (build_client(&connection)?, connection.address);
                (&fetched.0, fetched.1.as_str())
            }
            (EntrySource::Direct(_), _) => {
                return Err(SecretError::Config {
                    store: STORE.into(),
                    reason: "internal: vault client missing".into(),
                    source: None,
                });
            }
        };
        let data: serde_json::Value = vaultrs::kv2::read(client, engine, path)
            .await
            .map_err(|e| classify(e, shown, address))?;
        let serde_json::Value::Object(_) = &data else {
            return Err(SecretError::Malformed {
                reason: "the secret's data is not a JSON object".into(),
            });
        };
        let bytes = serde_json::to_vec(&data).map_err(|_| SecretError::Malformed {
            reason: "the secret's data could not be re-encoded".into(),
        })?;
        SecretValue::from_json(&bytes)
    }

    async fn fetch_connection(
        &self,
        source_ref: &SecretStoreRef,
    ) -> Result<Connection, SecretError> {
        let kind = source_ref.kind();
        let source = self.sources.get(&kind).ok_or(SecretError::Config {
            store: STORE.into(),
            reason: format!(
                "the vault connection is kept in {source_ref}, but no {kind} store was given"
            ),
            source: None,
        })?;
        let value = source.get(source_ref).await.map_err(|e| match e.kind() {
            apono_core::ErrorKind::Unavailable | apono_core::ErrorKind::Timeout => {
                SecretError::Unavailable {
                    store: format!("{STORE} (connection from {source_ref})"),
                    source: Some(Box::new(e)),
                }
            }
            _ => SecretError::Config {
                store: STORE.into(),
                reason: format!("the vault connection could not be read from {source_ref}"),
                source: Some(Box::new(e)),
            },
        })?;
        Connection::from_secret(&value).map_err(|reason| SecretError::Config {
            store: STORE.into(),
            reason: format!("the vault connection in {source_ref} is invalid: {reason}"),
            source: None,
        })
    }
}

impl fmt::Debug for HashicorpVaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashicorpVaultStore")
            .field("config", &self.config)
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish()
    }
}

#[async_trait]
impl SecretStore for HashicorpVaultStore {
    fn kind(&self) -> SecretStoreKind {
        SecretStoreKind::HashicorpVault
    }

    #[instrument(skip_all, fields(store = "hashicorp_vault", secret_engine, path))]
    async fn get(&self, reference: &SecretStoreRef) -> Result<SecretValue, SecretError> {
        let SecretStoreRef::HashicorpVault {
            secret_engine,
            path,
        } = reference
        else {
            return Err(SecretError::NotConfigured {
                kind: reference.kind(),
            });
        };
        let span = tracing::Span::current();
        span.record("secret_engine", secret_engine.as_str());
        span.record("path", path.as_str());
        let engine = secret_engine.trim_matches('/');
        let path = path.trim_matches('/');
        let shown = reference.to_string();
        match tokio::time::timeout(self.timeout, self.read(engine, path, &shown)).await {
            Ok(Ok(value)) => {
                debug!(keys = value.len(), "read vault secret");
                Ok(value)
            }
            Ok(Err(e)) => {
                debug!(kind = %e.kind(), "reading vault secret failed");
                Err(e)
            }
            Err(_) => Err(SecretError::Timeout { reference: shown }),
        }
    }
}

impl HashicorpVaultStoreBuilder {
    /// Serves `from_secret_store` entries of `store.kind()` from `store` (for example this
    /// crate's AWS backend, or a [`crate::SecretResolver`]'s store for that kind).
    pub fn secret_source(mut self, store: Arc<dyn SecretStore>) -> Self {
        self.sources.insert(store.kind(), store);
        self
    }

    /// The longest one read may take, including fetching a connection from another store
    /// (default 15 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The store. Builds the HTTP clients of direct entries (so a bad CA fails here) and
    /// checks that every `from_secret_store` entry has a source store.
    pub fn build(self) -> Result<HashicorpVaultStore, SecretError> {
        let mut clients = Vec::with_capacity(self.config.entries().len());
        for (index, entry) in self.config.entries().iter().enumerate() {
            match &entry.source {
                EntrySource::Direct(connection) => {
                    let client = build_client(connection).map_err(|e| match e {
                        SecretError::Config { reason, source, .. } => SecretError::Config {
                            store: format!("{STORE} entry {index}"),
                            reason,
                            source,
                        },
                        other => other,
                    })?;
                    clients.push(Some(client));
                }
                EntrySource::FromSecretStore(source_ref) => {
                    if !self.sources.contains_key(&source_ref.kind()) {
                        return Err(SecretError::Config {
                            store: format!("{STORE} entry {index}"),
                            reason: format!(
                                "the vault connection is kept in {source_ref}, but no {} store \
                                 was given (HashicorpVaultStoreBuilder::secret_source)",
                                source_ref.kind()
                            ),
                            source: None,
                        });
                    }
                    clients.push(None);
                }
            }
        }
        Ok(HashicorpVaultStore {
            config: self.config,
            clients,
            sources: self.sources,
            timeout: self.timeout,
        })
    }
}

impl fmt::Debug for HashicorpVaultStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashicorpVaultStoreBuilder")
            .field("config", &self.config)
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A vaultrs client whose settings are all explicit (vaultrs' defaults read `VAULT_*`
/// variables and files) and whose HTTP client trusts exactly what the entry says.
fn build_client(connection: &Connection) -> Result<VaultClient, SecretError> {
    let config_error = |reason: String, source: Option<apono_core::BoxError>| SecretError::Config {
        store: STORE.into(),
        reason,
        source,
    };
    let mut http = reqwest::Client::builder().tls_backend_rustls();
    if connection.address.starts_with("http://") {
        // No TLS: do not load any trust roots (and avoid reqwest#2988).
        http = http.tls_certs_only(Vec::new());
    } else if let Some(pem) = &connection.ca_cert_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            config_error(
                "`ca_cert_base64` is not a valid PEM certificate bundle".into(),
                backend_error::source(error_chain(&e)),
            )
        })?;
        if certs.is_empty() {
            return Err(config_error(
                "`ca_cert_base64` holds no certificate".into(),
                None,
            ));
        }
        http = http.tls_certs_only(certs);
    }
    if connection.skip_verify {
        warn!(address = %connection.address, "TLS verification of this vault is disabled (skip_verify)");
        http = http.tls_danger_accept_invalid_certs(true);
    }
    let http = http.build().map_err(|e| {
        config_error(
            "the HTTP client could not be built".into(),
            backend_error::source(error_chain(&e)),
        )
    })?;
    let mut settings = VaultClientSettingsBuilder::default();
    settings
        .address(&connection.address)
        .token(connection.token.expose_secret())
        .ca_certs(Vec::new())
        .identity(None)
        .verify(!connection.skip_verify)
        .timeout(None)
        .namespace(connection.namespace.clone());
    let settings = settings
        .build()
        .map_err(|_| config_error("invalid vault client settings".into(), None))?;
    let middle = vaultrs::api::EndpointMiddleware {
        token: connection.token.expose_secret().to_owned(),
        version: format!("v{}", settings.version),
        wrap: None,
        namespace: connection.namespace.clone(),
    };
    let base = settings.address.as_str().to_owned();
    Ok(VaultClient {
        http: rustify::clients::reqwest::Client::new(&base, http),
        middle,
        settings,
    })
}

/// Classifies a vaultrs error. It is never attached as it is: rustify's parse errors carry the
/// response body, which for a read is the secret.
fn classify(error: ClientError, reference: &str, address: &str) -> SecretError {
    let store = format!("{STORE} at {address}");
    match error {
        ClientError::APIError { code, .. } => by_status(code, reference, store),
        ClientError::RestClientError { source } => match source {
            rustify::errors::ClientError::ServerResponseError { code, .. } => {
                by_status(code, reference, store)
            }
            rustify::errors::ClientError::RequestError { source, .. } => {
                let cause: &(dyn std::error::Error + 'static) = source.as_ref();
                SecretError::Unavailable {
                    store,
                    source: backend_error::source(error_chain(cause)),
                }
            }
            rustify::errors::ClientError::ResponseError { .. } => SecretError::Unavailable {
                store,
                source: backend_error::source("the response could not be received"),
            },
            _ => SecretError::Malformed {
                reason: "vault sent a response that could not be parsed".into(),
            },
        },
        ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
            SecretError::NotFound {
                reference: reference.to_owned(),
                source: backend_error::source(
                    "vault returned no data (deleted or destroyed version)",
                ),
            }
        }
        ClientError::JsonParseError { .. } => SecretError::Malformed {
            reason: "the secret's data is not a JSON object".into(),
        },
        _ => SecretError::Unavailable {
            store,
            source: backend_error::source("unclassified vault client failure"),
        },
    }
}

fn by_status(code: u16, reference: &str, store: String) -> SecretError {
    let described = backend_error::source(format!("vault answered HTTP {code}"));
    match code {
        404 => SecretError::NotFound {
            reference: reference.to_owned(),
            source: described,
        },
        401 | 403 => SecretError::PermissionDenied {
            reference: reference.to_owned(),
            reason: format!(
                "vault answered {code}: the token is invalid or its policies do not allow reading \
                 this path"
            ),
            source: described,
        },
        412 | 429 | 500..=599 => SecretError::Unavailable {
            store,
            source: described,
        },
        _ => SecretError::Config {
            store,
            reason: format!("vault rejected the request with HTTP {code}"),
            source: described,
        },
    }
}
