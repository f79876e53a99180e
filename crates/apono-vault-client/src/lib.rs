//! An OpenBao client, and the `apono-vault` integration of the Apono connector built on it.
//!
//! * [`OpenBaoClient`] (usable on its own): AppRole and userpass login, token renewal, lookup
//!   and revocation (by token, by accessor, or every token a userpass user obtained); kv-v2
//!   read, write with check-and-set, recursive list, versions and deletion of a secret with all
//!   its versions; ACL policies; userpass users; identity entities and entity aliases. Settings
//!   are explicit ([`ClientSettings`]): nothing is read from `VAULT_*`/`BAO_*` variables, TLS is
//!   always verified, and the trusted CA can be set. Errors ([`VaultError`]) never contain
//!   tokens, passwords or secret data.
//! * [`integration`]: the [`AponoVaultProvisioner`], which grants `Admin`, `ReadWrite` or
//!   `ReadOnly` on a kv-v2 mount (resource type `management`) or read access to one secret
//!   (resource type `secret`) through a per-grant userpass user and entity alias. The grantee
//!   receives a token that OpenBao itself ends at the grant's `expires_at`; no password that
//!   could log in later is ever handed out. It depends on `apono-core` only.
//! * [`policy`]: the permission matrix, the four fixed grant policies that implement it, and
//!   the connector's AppRole policy. **The connector writes no ACL policy**: the operator
//!   installs the fixed ones once ([`policy::install_policies`]), and the AppRole can attach
//!   nothing else, so whoever holds its secret reaches at most the secrets of the mount
//!   (`docs/vault-policy.md`, proven on a real OpenBao in `tests/openbao.rs`).
//! * [`init`]: installs an Apono Vault on a fresh or restarted OpenBao (initialise once, unseal,
//!   enable the mounts, write the policies, the AppRole role and the `apono-vault-role`
//!   integration secret); idempotent. `apono-connector vault-init` runs it (feature
//!   `kubernetes` keeps its secrets in Kubernetes).
//!
//! ```no_run
//! use apono_vault_client::{ClientSettings, VaultError};
//! use apono_core::SecretValue;
//! use secrecy::SecretString;
//!
//! # async fn demo(role_id: SecretString, secret_id: SecretString, pem: String) -> Result<(), VaultError> {
//! let connection = ClientSettings::new("https://bao.internal:8200")
//!     .ca_cert_pem(pem)
//!     .connect()?;
//! let mut client = connection.client();
//! client.login_approle("approle", &role_id, &secret_id).await?;
//! let version = client
//!     .kv_write("apono-store", "team/db", &SecretValue::new().with("password", "s3cret"), Some(0))
//!     .await?;
//! let secret = client.kv_read("apono-store", "team/db", None).await?;
//! assert_eq!(secret.version, version);
//! for path in client.kv_list_recursive("apono-store", "").await? {
//!     println!("{path}");
//! }
//! client.revoke_self().await?;
//! # Ok(())
//! # }
//! ```
//!
//! # What is proven, against what
//!
//! On a real OpenBao (`bao server -dev`): the client's operations, the `apono-vault` integration's
//! permission levels, and 41 escalation attempts with the connector's own AppRole token, all
//! refused.

mod client;
mod error;
pub mod init;
pub mod integration;
pub mod policy;

pub use client::{
    ClientSettings, DEFAULT_TIMEOUT, Entity, EntityAlias, KvMetadata, KvSecret, KvVersion,
    LoginToken, OpenBaoClient, OpenBaoConnection, TokenInfo, UserpassUser, check_kv_path,
    check_mount, check_name,
};
pub use error::VaultError;
pub use integration::{AponoVaultConfig, AponoVaultProvisioner, VaultGrantState};
