//! Secret store backends for the Apono connector, one cargo feature each.
//!
//! An integration names where its admin credentials live with a [`SecretStoreRef`]; a backend
//! implementing apono-core's [`SecretStore`] reads that secret at the moment it is needed, and
//! a [`SecretResolver`] routes each reference to the backend configured for its kind.
//!
//! | feature | backend | reference |
//! |---|---|---|
//! | `apono` | `AponoStore`: inline parameters (not for production) | `{"apono": {"parameters": {…}}}` |
//! | `aws` | `AwsSecretsManagerStore`: AWS Secrets Manager | `{"aws": {"region": "…", "secret_id": "…"}}` |
//! | `hashicorp` | `HashicorpVaultStore`: HashiCorp Vault / OpenBao kv-v2 | `{"hashicorp_vault": {"secret_engine": "…", "path": "…"}}` |
//! | `kubernetes` | `KubernetesStore`: Kubernetes secrets labelled `apono-connector-read=true` | `{"kubernetes": {"namespace": "…", "name": "…"}}` |
//! | `azure` | `AzureKeyVaultStore`: Azure Key Vault | `{"azure": {"vault_url": "…", "name": "…"}}` |
//! | `gcp` | `GcpSecretManagerStore`: GCP Secret Manager | `{"gcp": {"project": "…", "secret_id": "…"}}` |
//!
//! No feature is on by default: an application enables the stores it uses. Each store type's
//! documentation carries a `no_run` example of building and reading it; those of `apono`,
//! `aws` and `hashicorp` follow here.
//!
//! # Promises
//!
//! * **Read when used.** Backends never cache secret values. [`SecretResolver`] caches only
//!   when asked to ([`SecretResolverBuilder::cache_ttl`]), for a short time, and forgets a
//!   value on [`SecretResolver::invalidate`] (call it when a target rejects the credentials).
//! * **Classified errors.** Every failure is an apono-core [`SecretError`]: `NotFound`,
//!   `PermissionDenied` (including the connector's own read-guard, the
//!   `apono-connector-read=true` tag), `Unavailable` (retryable), `Timeout`, `Malformed`
//!   (names the key, never the value), `NotConfigured` or `Config`.
//! * **No secret leaks.** Values are [`secrecy`] types. SDK, HTTP and JSON errors can quote
//!   response bodies, so they are never attached as an error's `source` as they are: a
//!   backend attaches a description it wrote itself (status code, error code, transport
//!   failure). Nothing is logged but store names, references and keys.
//! * **Nothing implicit.** No backend reads environment variables or files unless its
//!   explicit `from_env()` constructor is called.
//!
//! # What is proven, against what
//!
//! HashiCorp Vault against a real OpenBao (plain and TLS), AWS against moto; Kubernetes, Azure Key
//! Vault and GCP Secret Manager against the test kit's protocol fakes, which the vendors' own
//! Python clients check (no real cloud has answered). Every backend runs apono-core's secret store
//! conformance suite, and `tests/no_leak.rs` looks for a canary secret in every error and `Debug`
//! output. Through the `apono-connector` binary, `from_secret_store` vault entries work from each
//! of the four sources.
//!
//! # Example: a resolver
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use apono_core::SecretStoreRef;
//! use apono_secrets::SecretResolver;
//! # async fn run(store: Arc<dyn apono_core::SecretStore>) -> Result<(), apono_core::SecretError> {
//! let resolver = SecretResolver::builder()
//!     .store(store)
//!     // Opt-in, for high-volume operators: keep values for at most 30 seconds.
//!     .cache_ttl(Duration::from_secs(30))
//!     .build();
//! let reference: SecretStoreRef =
//!     serde_json::from_str(r#"{"aws":{"region":"eu-west-1","secret_id":"prod/ssh"}}"#)
//!         .expect("a valid reference");
//! let secret = resolver.resolve(&reference).await?;
//! let _password = secret.require("password")?;
//! // The target refused the credentials: they were probably rotated.
//! resolver.invalidate(&reference);
//! # Ok(())
//! # }
//! ```
#![cfg_attr(
    feature = "apono",
    doc = r##"
# Example: inline parameters (feature `apono`)

```no_run
use apono_core::{SecretStore, SecretStoreRef, SecretValue};
use apono_secrets::AponoStore;
# async fn run() -> Result<(), apono_core::SecretError> {
let store = AponoStore::new();
let reference = SecretStoreRef::Apono {
    parameters: SecretValue::new().with("username", "admin").with("password", "…"),
};
let value = store.get(&reference).await?; // logs a warning: not for production
# Ok(())
# }
```
"##
)]
#![cfg_attr(
    feature = "aws",
    doc = r##"
# Example: AWS Secrets Manager (feature `aws`)

```no_run
use apono_core::{SecretStore, SecretStoreRef};
use apono_secrets::AwsSecretsManagerStore;
# async fn run() -> Result<(), apono_core::SecretError> {
// Credentials from the usual AWS chain (environment, profile, web identity, IMDS…).
let store = AwsSecretsManagerStore::from_env().await.build()?;
let reference = SecretStoreRef::Aws {
    region: "eu-west-1".into(),
    secret_id: "prod/ssh-admin".into(),
};
// Refused unless the secret carries the tag `apono-connector-read=true`.
let value = store.get(&reference).await?;
# Ok(())
# }
```
"##
)]
#![cfg_attr(
    feature = "hashicorp",
    doc = r##"
# Example: HashiCorp Vault / OpenBao (feature `hashicorp`)

```no_run
use apono_core::{SecretStore, SecretStoreRef};
use apono_secrets::HashicorpVaultStore;
# async fn run() -> Result<(), Box<dyn std::error::Error>> {
// Reads HASHICORP_VAULT_CONFIG or HASHICORP_VAULT_CONFIG_FILE_PATH, e.g.
// [{"address":"https://vault.internal:8200","token":"…","ca_cert_base64":"LS0t…"}]
let store = HashicorpVaultStore::from_env()?.build()?;
let reference = SecretStoreRef::HashicorpVault {
    secret_engine: "secret".into(),
    path: "apono/postgres".into(),
};
let value = store.get(&reference).await?;
# Ok(())
# }
```

## Which vault serves a reference

`HASHICORP_VAULT_CONFIG` is a JSON array of vault entries. An entry may pin the kv-v2 mounts it
serves with `"secret_engine": "kv"` or `"secret_engines": ["kv", "team-b"]`. A reference is
served by **the first entry, in array order, that is pinned to its `secret_engine`**, and when
no entry is pinned to it, by **the first entry without a pin**. When neither exists the read
fails with [`SecretError::Config`]. So with several unpinned vaults, the first one is used.
See `VaultConfig` for the accepted keys.
"##
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend_error;
mod resolver;

#[cfg(feature = "apono")]
mod apono;
#[cfg(feature = "aws")]
mod aws;
#[cfg(feature = "azure")]
mod azure;
#[cfg(feature = "gcp")]
mod gcp;
#[cfg(feature = "hashicorp")]
mod hashicorp;
#[cfg(feature = "kubernetes")]
mod kubernetes;
#[cfg(any(feature = "azure", feature = "gcp"))]
mod rest;

#[cfg(feature = "azure")]
pub use azure::{
    AZURE_AUTHORITY_HOST, AZURE_IMDS_ENDPOINT, AZURE_KEY_VAULT_API_VERSION, AzureCredentials,
    AzureKeyVaultStore, AzureKeyVaultStoreBuilder,
};
#[cfg(feature = "gcp")]
pub use gcp::{
    GCP_METADATA_ENDPOINT, GCP_SCOPE, GCP_SECRET_MANAGER_ENDPOINT, GCP_TOKEN_URI,
    GOOGLE_APPLICATION_CREDENTIALS_ENV, GcpCredentials, GcpSecretManagerStore,
    GcpSecretManagerStoreBuilder,
};
#[cfg(feature = "kubernetes")]
pub use kubernetes::{
    KUBERNETES_READ_LABEL, KUBERNETES_READ_LABEL_VALUE, KubernetesStore, KubernetesStoreBuilder,
};
pub use resolver::{SecretResolver, SecretResolverBuilder};

#[cfg(feature = "apono")]
pub use apono::AponoStore;
#[cfg(feature = "aws")]
pub use aws::{
    AwsSecretsManagerStore, AwsSecretsManagerStoreBuilder, READ_TAG_KEY, READ_TAG_VALUE,
};
#[cfg(feature = "hashicorp")]
pub use hashicorp::{
    HashicorpVaultStore, HashicorpVaultStoreBuilder, VAULT_CONFIG_ENV, VAULT_CONFIG_FILE_ENV,
    VaultConfig, VaultConfigError, VaultEntry,
};

/// Re-exported: the contract and vocabulary every backend here implements.
pub use apono_core::{SecretError, SecretStore, SecretStoreKind, SecretStoreRef, SecretValue};
