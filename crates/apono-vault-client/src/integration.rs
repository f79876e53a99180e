//! The `apono-vault` integration: a [`Provisioner`] granting just-in-time access to the secrets
//! of an OpenBao kv-v2 mount.
//!
//! Each grant gets its own userpass user and its own entity alias on that userpass mount, both
//! named `apono-g-<account>-<grant hash>` (the account from [`AccountNaming`], the hash from the
//! grant id), so grants of one grantee never share anything. The alias is created without a
//! `canonical_id`, so OpenBao gives it a fresh entity of its own; its `custom_metadata` names the
//! grant (`apono_grant`, `apono_integration`) and, for a `secret` grant, the secret's path
//! segments.
//!
//! **The connector writes no ACL policy.** The user's token carries one of four fixed policies
//! the operator wrote once ([`crate::policy::install_policies`]): `Admin`, `ReadWrite` or
//! `ReadOnly` on the whole mount, or the `secret` policy, templated on the alias metadata. The
//! connector's AppRole ([`crate::policy::connector_policy_hcl`]) can attach nothing else, so
//! whoever holds it can at most reach the secrets of the mount (`docs/vault-policy.md`).
//!
//! **OpenBao itself ends access at `expires_at`.** A userpass token's lifetime counts from its
//! login, so a password would keep logging in after the grant ends whenever the connector is
//! not there to revoke it. The grantee is therefore never given a password. At grant time the
//! connector sets the user a random password it never shows or keeps, logs in as the user once,
//! and hands out the token that login returned. That login's TTL, maximum TTL and explicit
//! maximum TTL are the whole seconds left until `expires_at`, so OpenBao ends the token by then
//! on its own, connector or not. No one can obtain another one. The token belongs to the
//! per-grant user, alias and entity, so OpenBao's audit log names the grant. Tokens of earlier
//! logins of the same grant (a retried or extended grant, a credential reset) are revoked
//! before the new login, so each grant has exactly one live token.
//!
//! **Revoke** deletes the user, revokes every token obtained with it
//! (`sys/leases/revoke-prefix` on its login path), and deletes the alias's entity (with the
//! alias). Revoking what is gone succeeds. **Rotation** (`reset-credentials`) issues a new token
//! in the same way, which revokes the old one.

use std::collections::BTreeMap;
use std::time::Duration;

use apono_core::{
    AccessDetails, AccountNaming, ActionContext, Credential, GrantSpec, GrantState, Granted,
    Instructions, Inventory, LinuxUsername, NameError, Permission, PermissionInfo, ProvisionError,
    Provisioner, Resource, ResourceType, StatusCheck, StatusReport, async_trait,
};
use chrono::Utc;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, instrument, warn};

use crate::client::{ClientSettings, OpenBaoClient, OpenBaoConnection, UserpassUser, check_mount};
use crate::error::VaultError;
use crate::policy::{GRANT_POLICY_PREFIX, GrantPolicy, GrantScope, VaultPermission};

pub use crate::policy::NAME_PREFIX;
/// Resource type of one secret.
pub const SECRET: &str = "secret";
/// Resource type of the whole mount.
pub const MANAGEMENT: &str = "management";
/// The default kv-v2 mount.
pub const DEFAULT_MOUNT: &str = "apono-store";
/// Name of the one-time credential: the grant's OpenBao token.
pub const TOKEN: &str = "token";
/// Keys of the integration secret.
pub(crate) const ROLE_ID: &str = "role_id";
pub(crate) const SECRET_ID: &str = "secret_id";

fn default_mount() -> String {
    DEFAULT_MOUNT.to_owned()
}
fn default_userpass() -> String {
    "userpass".to_owned()
}
fn default_approle() -> String {
    "approle".to_owned()
}

/// The integration's `config`. Unknown keys are errors.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AponoVaultConfig {
    /// Where the connector reaches OpenBao.
    pub vault_internal_url: String,
    /// What users are shown; defaults to the internal URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_external_url: Option<String>,
    /// The kv-v2 mount holding the secrets.
    #[serde(default = "default_mount")]
    pub mount: String,
    /// PEM CA bundle to trust for the internal URL (instead of the web roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
    /// The userpass auth mount grantees log in with (extension; default `userpass`).
    #[serde(default = "default_userpass")]
    pub userpass_mount: String,
    /// The AppRole auth mount the connector logs in with (extension; default `approle`).
    #[serde(default = "default_approle")]
    pub approle_mount: String,
    /// How grantees' identities become account names.
    #[serde(default)]
    #[cfg_attr(feature = "schemars", schemars(with = "AccountNamingSchema"))]
    pub account_naming: AccountNaming,
}

/// The JSON Schema of [`AccountNaming`], which carries none of its own: the same keys.
/// `apono-connector`'s configuration reference test checks both against each other.
#[cfg(feature = "schemars")]
#[derive(schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(inline)]
#[allow(dead_code)] // a schema only
struct AccountNamingSchema {
    /// Identities in this email domain whose local part is clean keep it as their account
    /// name (`alice@corp.example` → `alice`); all others get a hash suffix.
    #[serde(default)]
    home_domain: Option<String>,
}

impl AponoVaultConfig {
    /// A configuration with defaults for everything but the internal URL.
    pub fn new(vault_internal_url: impl Into<String>) -> Self {
        Self {
            vault_internal_url: vault_internal_url.into(),
            vault_external_url: None,
            mount: default_mount(),
            ca_certificate: None,
            userpass_mount: default_userpass(),
            approle_mount: default_approle(),
            account_naming: AccountNaming::default(),
        }
    }
}

/// What the integration records per grant; no secrets.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VaultGrantState {
    /// The userpass user, which is also the name of its entity alias.
    pub username: String,
    /// The ACL policy the user's tokens carry: one of the fixed `apono-grant-*` policies (in
    /// states written before those existed, a per-grant `apono-g-*` policy).
    pub policy: String,
    /// The userpass mount.
    pub userpass_mount: String,
    /// A named identity entity: only in states written when the connector created one per
    /// grant. Revoke finds the entity through the alias in any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity: Option<String>,
}

/// The `apono-vault` provisioner.
#[derive(Debug)]
pub struct AponoVaultProvisioner {
    integration: String,
    config: AponoVaultConfig,
    connection: OpenBaoConnection,
}

fn config_error(integration: &str, reason: impl Into<String>) -> ProvisionError {
    ProvisionError::Config(apono_core::InvalidIntegration::Config {
        integration: integration.to_owned(),
        reason: reason.into(),
    })
}

impl AponoVaultProvisioner {
    /// Builds the provisioner of integration `integration` from its parsed configuration.
    pub fn new(
        integration: impl Into<String>,
        config: AponoVaultConfig,
    ) -> Result<Self, ProvisionError> {
        let integration = integration.into();
        for mount in [&config.mount, &config.userpass_mount, &config.approle_mount] {
            check_mount(mount).map_err(|e| config_error(&integration, e.to_string()))?;
        }
        // The mount names the fixed grant policies, so it must make valid policy names.
        GrantPolicy::Secret
            .name(&config.mount)
            .map_err(|e| config_error(&integration, e.to_string()))?;
        let mut settings = ClientSettings::new(&config.vault_internal_url);
        if let Some(pem) = &config.ca_certificate {
            settings = settings.ca_cert_pem(pem);
        }
        let connection = settings
            .connect()
            .map_err(|e| config_error(&integration, e.to_string()))?;
        Ok(Self {
            integration,
            config,
            connection,
        })
    }

    /// Builds the provisioner from an [`apono_core::Integration`] of type `apono-vault`.
    pub fn from_integration(integration: &apono_core::Integration) -> Result<Self, ProvisionError> {
        Self::new(&integration.name, integration.config_as()?)
    }

    fn target(&self) -> String {
        format!("OpenBao at {}", self.connection.address())
    }

    fn map(&self, e: VaultError) -> ProvisionError {
        let target = self.target();
        let reason = e.to_string();
        match e.kind() {
            apono_core::ErrorKind::PermissionDenied => ProvisionError::PermissionDenied {
                target,
                reason,
                source: Some(Box::new(e)),
            },
            apono_core::ErrorKind::Unavailable => ProvisionError::Unavailable {
                target,
                source: Some(Box::new(e)),
            },
            apono_core::ErrorKind::Timeout => ProvisionError::Timeout,
            apono_core::ErrorKind::Conflict => ProvisionError::Conflict { target, reason },
            _ => ProvisionError::Target {
                target,
                reason,
                source: Some(Box::new(e)),
            },
        }
    }

    /// Logs in with the integration's AppRole (`role_id`, `secret_id` from the context's
    /// secret).
    async fn admin(&self, ctx: &ActionContext) -> Result<OpenBaoClient, ProvisionError> {
        ctx.checkpoint()?;
        let role_id = ctx.secret().require(ROLE_ID)?;
        let secret_id = ctx.secret().require(SECRET_ID)?;
        let mut client = self.connection.client();
        client
            .login_approle(&self.config.approle_mount, role_id, secret_id)
            .await
            .map_err(|e| self.map(e))?;
        ctx.checkpoint()?;
        Ok(client)
    }

    /// Revokes the connector's login token (best effort: it also expires with its TTL).
    async fn logout(&self, mut client: OpenBaoClient) {
        if let Err(e) = client.revoke_self().await {
            warn!(error = %e, "could not revoke the connector's login token; it expires with its TTL");
        }
    }

    fn scope(&self, grant: &GrantSpec) -> Result<GrantScope, ProvisionError> {
        let resource = &grant.resource;
        let permission = grant.permission.as_str();
        match resource.resource_type.as_str() {
            MANAGEMENT => {
                if resource.id != self.config.mount {
                    return Err(ProvisionError::InvalidGrant(format!(
                        "management resource {:?} is not this integration's mount",
                        resource.id
                    )));
                }
                VaultPermission::parse(permission)
                    .map(GrantScope::Mount)
                    .ok_or_else(|| {
                        ProvisionError::InvalidGrant(format!(
                            "unknown permission {permission:?}; use Admin, ReadWrite or ReadOnly"
                        ))
                    })
            }
            SECRET => {
                if permission != VaultPermission::ReadOnly.as_str() {
                    return Err(ProvisionError::InvalidGrant(format!(
                        "a secret resource only offers ReadOnly, not {permission:?}"
                    )));
                }
                crate::client::check_kv_path(&resource.id)
                    .map_err(|e| ProvisionError::InvalidGrant(e.to_string()))?;
                Ok(GrantScope::Secret(resource.id.clone()))
            }
            other => Err(ProvisionError::InvalidGrant(format!(
                "unknown resource type {other:?}; use secret or management"
            ))),
        }
    }

    /// The user (and policy) name of a grant: prefix, account name, hash of the grant id.
    pub fn account_name(&self, grant: &GrantSpec) -> Result<String, ProvisionError> {
        let account: LinuxUsername = self.config.account_naming.account_for(&grant.grantee);
        let digest = Sha256::new()
            .chain_update(b"apono-vault-grant-v1\0")
            .chain_update(grant.grant_id.as_str().as_bytes())
            .finalize();
        let hash = data_encoding::BASE32_NOPAD
            .encode(&digest)
            .to_ascii_lowercase();
        let name = format!("{NAME_PREFIX}{account}-{}", &hash[..10]);
        crate::client::check_name("username", &name)
            .map_err(|e| NameError::new("OpenBao username", &name, e.to_string()))?;
        Ok(name)
    }

    fn ttl_left(&self, grant: &GrantSpec) -> Result<Duration, ProvisionError> {
        let left = (grant.expires_at - Utc::now()).num_seconds();
        if left < 1 {
            return Err(ProvisionError::InvalidGrant(
                "the grant has already expired".into(),
            ));
        }
        Ok(Duration::from_secs(left.unsigned_abs()))
    }

    fn user_settings(policy: &str, ttl: Duration) -> UserpassUser {
        UserpassUser {
            token_policies: vec![policy.to_owned()],
            token_ttl: Some(ttl),
            token_max_ttl: Some(ttl),
            token_explicit_max_ttl: Some(ttl),
        }
    }

    /// Whether the grant's user exists; refuses one that exists but was not made for this grant
    /// (its tokens carry anything but exactly one of `policies`).
    async fn ensure_ours(
        &self,
        client: &OpenBaoClient,
        username: &str,
        policies: &[&str],
    ) -> Result<bool, ProvisionError> {
        match client
            .userpass_read(&self.config.userpass_mount, username)
            .await
            .map_err(|e| self.map(e))?
        {
            None => Ok(false),
            Some(user)
                if user.token_policies.len() == 1
                    && policies.contains(&user.token_policies[0].as_str()) =>
            {
                Ok(true)
            }
            Some(_) => Err(ProvisionError::Conflict {
                target: self.target(),
                reason: format!(
                    "userpass user {username} exists and was not created for this grant"
                ),
            }),
        }
    }

    /// Issues the grant's one token: revokes tokens of earlier logins, sets the user a fresh
    /// random password (never shown, never kept) and token TTLs ending at the grant's
    /// `expires_at`, and logs in as the user once. Policy and entity must exist.
    async fn issue_token(
        &self,
        ctx: &ActionContext,
        admin: &OpenBaoClient,
        grant: &GrantSpec,
        state: &VaultGrantState,
        scope: &GrantScope,
    ) -> Result<(SecretString, Duration), ProvisionError> {
        let userpass = &state.userpass_mount;
        admin
            .revoke_userpass_logins(userpass, &state.username)
            .await
            .map_err(|e| self.map(e))?;
        ctx.checkpoint()?;
        // The TTL is counted as late as possible: a token from this login ends by expires_at.
        let ttl = self.ttl_left(grant)?;
        let password = apono_core::generate_password();
        admin
            .userpass_write(
                userpass,
                &state.username,
                &password,
                &Self::user_settings(&state.policy, ttl),
            )
            .await
            .map_err(|e| self.map(e))?;
        ctx.checkpoint()?;
        let mut grantee = self.connection.client();
        let login = grantee
            .login_userpass(userpass, &state.username, &password)
            .await
            .map_err(|e| self.map(e))?;
        if login.ttl > ttl {
            // OpenBao would let this token outlive the grant: never hand it out.
            let _ = grantee.revoke_self().await;
            return Err(ProvisionError::Target {
                target: self.target(),
                reason: format!(
                    "OpenBao issued a token for {}s where {}s were asked",
                    login.ttl.as_secs(),
                    ttl.as_secs()
                ),
                source: None,
            });
        }
        // The fixed policy must be installed: ask OpenBao what this token may do (a question,
        // not a read) before handing it out.
        let probe = match scope {
            GrantScope::Secret(path) => format!("{}/data/{path}", self.config.mount),
            GrantScope::Mount(_) => format!("{}/data/apono-capability-probe", self.config.mount),
        };
        let caps = grantee.capabilities_self(&[&probe]).await;
        let readable = caps
            .as_ref()
            .is_ok_and(|c| c.get(&probe).is_some_and(|c| c.iter().any(|c| c == "read")));
        if !readable {
            let _ = grantee.revoke_self().await;
            if let Err(e) = caps {
                return Err(self.map(e));
            }
            return Err(config_error(
                &self.integration,
                format!(
                    "the grant's token cannot read {probe}: OpenBao lacks the fixed policy {} \
                     (install it with policy::install_policies)",
                    state.policy
                ),
            ));
        }
        Ok((login.token, login.ttl))
    }

    /// The fixed policy a grant's token carries.
    fn grant_policy(&self, scope: &GrantScope) -> Result<String, ProvisionError> {
        scope
            .policy()
            .name(&self.config.mount)
            .map_err(|e| ProvisionError::InvalidGrant(e.to_string()))
    }

    /// The alias metadata of a grant: who it is for, and what a `secret` grant may read.
    fn alias_metadata(
        &self,
        grant: &GrantSpec,
        scope: &GrantScope,
    ) -> Result<BTreeMap<String, String>, ProvisionError> {
        let mut metadata = scope
            .alias_metadata()
            .map_err(|e| ProvisionError::InvalidGrant(e.to_string()))?;
        metadata.insert("apono_grant".to_owned(), grant.grant_id.as_str().to_owned());
        metadata.insert("apono_integration".to_owned(), self.integration.clone());
        Ok(metadata)
    }

    /// Creates the grant's entity alias on the userpass mount (OpenBao gives it a fresh entity),
    /// or sets the metadata of the one that exists.
    async fn ensure_alias(
        &self,
        admin: &OpenBaoClient,
        state: &VaultGrantState,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), ProvisionError> {
        let accessor = admin
            .auth_mount_accessor(&state.userpass_mount)
            .await
            .map_err(|e| self.map(e))?;
        admin
            .alias_upsert(&state.username, &accessor, metadata)
            .await
            .map_err(|e| self.map(e))?;
        Ok(())
    }

    fn access_details(
        &self,
        username: &str,
        token: SecretString,
        grant: &GrantSpec,
    ) -> AccessDetails {
        let address = self
            .config
            .vault_external_url
            .clone()
            .unwrap_or_else(|| self.config.vault_internal_url.clone());
        let mount = &self.config.mount;
        let userpass = &self.config.userpass_mount;
        let what = match grant.resource.resource_type.as_str() {
            SECRET => format!("read secret {} in {mount}", grant.resource.id),
            _ => format!("{} on the secrets in {mount}", grant.permission),
        };
        let expires = grant.expires_at.to_rfc3339();
        // `bao login` with no arguments asks for the token, so it never lands in shell history.
        let cli = format!("BAO_ADDR={address} bao login");
        let plain = format!(
            "You may {what} until {expires}, as {username}. Use the vault token shown once: the \
             apono CLI does (apono vault list|fetch|create|update|delete), or paste it into {cli}. \
             OpenBao itself ends the token at {expires}."
        );
        let markdown = format!(
            "You may **{what}** until `{expires}`, as `{username}`.\n\nUse the vault token shown \
             once with `apono vault …`, or paste it at the prompt of:\n\n```sh\n{cli}\n```\n\n\
             OpenBao itself ends the token at `{expires}`."
        );
        let mut json = BTreeMap::new();
        json.insert("vault_address".into(), address.clone().into());
        json.insert("username".into(), username.into());
        json.insert("mount_name".into(), mount.clone().into());
        json.insert("auth_mount".into(), userpass.clone().into());
        AccessDetails {
            instructions: Instructions { plain, markdown },
            cli: Some(cli),
            link: None,
            json,
            credentials: vec![Credential::one_time(TOKEN, token)],
        }
    }

    async fn remove(
        &self,
        client: &OpenBaoClient,
        state: &VaultGrantState,
    ) -> Result<(), ProvisionError> {
        crate::client::check_name("username", &state.username).map_err(|e| self.map(e))?;
        let legacy_policy = state.policy.starts_with(NAME_PREFIX);
        if !state.username.starts_with(NAME_PREFIX)
            || !(legacy_policy || state.policy.starts_with(GRANT_POLICY_PREFIX))
        {
            return Err(ProvisionError::InvalidGrant(
                "grant state names an account this integration does not create".into(),
            ));
        }
        // An older grant whose credentials were reset may already carry a fixed policy.
        let mut accepted = vec![state.policy.clone()];
        if legacy_policy {
            for policy in GrantPolicy::ALL {
                accepted.push(policy.name(&self.config.mount).map_err(|e| self.map(e))?);
            }
        }
        let accepted: Vec<&str> = accepted.iter().map(String::as_str).collect();
        if self.ensure_ours(client, &state.username, &accepted).await? {
            client
                .userpass_delete(&state.userpass_mount, &state.username)
                .await
                .map_err(|e| self.map(e))?;
        }
        client
            .revoke_userpass_logins(&state.userpass_mount, &state.username)
            .await
            .map_err(|e| self.map(e))?;
        // The alias's entity, found through the alias (named entities of older states have the
        // alias too). A mount that is gone took its users and aliases with it.
        let accessor = match client.auth_mount_accessor(&state.userpass_mount).await {
            Ok(accessor) => Some(accessor),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(self.map(e)),
        };
        if let Some(accessor) = accessor {
            let entity = client
                .entity_by_alias(&state.username, &accessor)
                .await
                .map_err(|e| self.map(e))?;
            if let Some(entity) = entity {
                let only_ours = entity
                    .aliases
                    .iter()
                    .all(|a| a.name == state.username && a.mount_accessor == accessor);
                if only_ours {
                    client
                        .entity_delete_by_id(&entity.id)
                        .await
                        .map_err(|e| self.map(e))?;
                } else {
                    warn!(entity = %entity.name, "the grant's alias belongs to an entity with other aliases; left in place");
                }
            }
        }
        if legacy_policy {
            warn!(
                policy = %state.policy,
                "per-grant policy of an older connector left in place: the connector may no longer delete policies (delete it with an operator's token)"
            );
        }
        Ok(())
    }
}

#[async_trait]
impl Provisioner for AponoVaultProvisioner {
    #[instrument(skip_all, fields(integration = %self.integration))]
    async fn get_status(&self, ctx: &ActionContext) -> Result<StatusReport, ProvisionError> {
        let mount = self.config.mount.clone();
        let userpass = self.config.userpass_mount.clone();
        ctx.bounded(tokio::time::sleep, async {
            let client = self.admin(ctx).await?;
            let mut checks = vec![StatusCheck {
                name: "AppRole login".into(),
                ok: true,
                message: String::new(),
            }];
            let mut check = |name: String, result: Result<(), VaultError>| {
                checks.push(StatusCheck {
                    name,
                    ok: result.is_ok(),
                    message: result.err().map(|e| e.to_string()).unwrap_or_default(),
                });
            };
            check(
                format!("list secrets in {mount}"),
                client.kv_list(&mount, "").await.map(|_| ()),
            );
            check(
                format!("list users of auth/{userpass}"),
                client.userpass_list(&userpass).await.map(|_| ()),
            );
            self.logout(client).await;
            Ok(StatusReport::from_checks(checks))
        })
        .await
    }

    #[instrument(skip_all, fields(integration = %self.integration))]
    async fn list_resources(&self, ctx: &ActionContext) -> Result<Inventory, ProvisionError> {
        let mount = self.config.mount.clone();
        let paths = ctx
            .bounded(tokio::time::sleep, async {
                let client = self.admin(ctx).await?;
                let result = client
                    .kv_list_recursive(&mount, "")
                    .await
                    .map_err(|e| self.map(e));
                self.logout(client).await;
                result
            })
            .await?;
        let resource = |resource_type: &str, id: &str| Resource {
            integration: self.integration.clone(),
            resource_type: ResourceType::from(resource_type),
            id: id.to_owned(),
            name: id.to_owned(),
            tags: BTreeMap::new(),
        };
        let mut resources = vec![resource(MANAGEMENT, &self.config.mount)];
        resources.extend(paths.iter().map(|p| resource(SECRET, p)));
        let mut permissions: Vec<PermissionInfo> = VaultPermission::ALL
            .into_iter()
            .map(|p| PermissionInfo {
                resource_type: ResourceType::from(MANAGEMENT),
                permission: Permission::from(p.as_str()),
                description: Some(
                    match p {
                        VaultPermission::Admin => "list, create, fetch, update and delete secrets",
                        VaultPermission::ReadWrite => "list, create, fetch and update secrets",
                        VaultPermission::ReadOnly => "list and fetch secrets",
                    }
                    .into(),
                ),
            })
            .collect();
        permissions.push(PermissionInfo {
            resource_type: ResourceType::from(SECRET),
            permission: Permission::from(VaultPermission::ReadOnly.as_str()),
            description: Some("fetch this secret".into()),
        });
        Ok(Inventory {
            resources,
            permissions,
        })
    }

    #[instrument(skip_all, fields(integration = %self.integration, grant = %grant.grant_id))]
    async fn grant_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        ctx.checkpoint()?;
        let scope = self.scope(grant)?;
        let username = self.account_name(grant)?;
        let policy = self.grant_policy(&scope)?;
        let metadata = self.alias_metadata(grant, &scope)?;
        // An expired grant is refused before OpenBao is touched.
        self.ttl_left(grant)?;
        let state = VaultGrantState {
            username,
            policy,
            userpass_mount: self.config.userpass_mount.clone(),
            entity: None,
        };
        let (token, ttl) = ctx
            .bounded(tokio::time::sleep, async {
                let owned = self.admin(ctx).await?;
                let admin = &owned;
                let state = &state;
                let result = async {
                    // Refuse a foreign account before touching anything.
                    self.ensure_ours(admin, &state.username, &[&state.policy])
                        .await?;
                    // Alias (with its fresh entity), then the user and its one token: revoke undoes
                    // each.
                    self.ensure_alias(admin, state, &metadata).await?;
                    ctx.checkpoint()?;
                    self.issue_token(ctx, admin, grant, state, &scope).await
                }
                .await;
                self.logout(owned).await;
                result
            })
            .await?;
        info!(username = %state.username, ttl_secs = ttl.as_secs(), "granted");
        Ok(Granted {
            state: GrantState::encode(&state)?,
            access: self.access_details(&state.username, token, grant),
        })
    }

    #[instrument(skip_all, fields(integration = %self.integration, grant = %grant.grant_id))]
    async fn revoke_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        ctx.checkpoint()?;
        let state: VaultGrantState = state.decode()?;
        ctx.bounded(tokio::time::sleep, async {
            let client = self.admin(ctx).await?;
            let result = self.remove(&client, &state).await;
            self.logout(client).await;
            result
        })
        .await?;
        info!(username = %state.username, "revoked");
        Ok(())
    }

    #[instrument(skip_all, fields(integration = %self.integration, grant = %grant.grant_id))]
    async fn reset_credentials(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<Granted, ProvisionError> {
        ctx.checkpoint()?;
        let old: VaultGrantState = state.decode()?;
        let scope = self.scope(grant)?;
        let metadata = self.alias_metadata(grant, &scope)?;
        // A state of an older connector moves to the fixed policy.
        let decoded = VaultGrantState {
            policy: self.grant_policy(&scope)?,
            entity: None,
            ..old.clone()
        };
        // An expired grant is refused before OpenBao is touched.
        self.ttl_left(grant)?;
        let token = ctx
            .bounded(tokio::time::sleep, async {
                let owned = self.admin(ctx).await?;
                let admin = &owned;
                let state = &decoded;
                let result = async {
                    // An older grant's user carries its per-grant policy, or already the fixed one
                    // if an earlier reset got that far.
                    let accepted = [state.policy.as_str(), old.policy.as_str()];
                    if !self.ensure_ours(admin, &old.username, &accepted).await? {
                        return Err(ProvisionError::Conflict {
                            target: self.target(),
                            reason: format!("userpass user {} no longer exists", state.username),
                        });
                    }
                    self.ensure_alias(admin, state, &metadata).await?;
                    // Revokes the old token before the new login.
                    self.issue_token(ctx, admin, grant, state, &scope).await
                }
                .await;
                self.logout(owned).await;
                result
            })
            .await?;
        Ok(Granted {
            state: GrantState::encode(&decoded)?,
            access: self.access_details(&decoded.username, token.0, grant),
        })
    }

    #[instrument(skip_all, fields(integration = %self.integration, grant = %grant.grant_id))]
    async fn delete_credentials(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        // Revoke already deleted the per-grant user; cleanup makes sure of it.
        self.revoke_access(ctx, grant, state).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_refuses_unknown_keys_and_has_defaults() {
        let config: AponoVaultConfig =
            serde_json::from_value(serde_json::json!({"vault_internal_url": "https://bao:8200"}))
                .unwrap();
        assert_eq!(config.mount, "apono-store");
        assert_eq!(config, AponoVaultConfig::new("https://bao:8200"));
        let typo = serde_json::json!({"vault_internal_url": "https://bao:8200", "mnt": "x"});
        assert!(serde_json::from_value::<AponoVaultConfig>(typo).is_err());
        let bad_mount = AponoVaultConfig {
            mount: "a/b".into(),
            ..AponoVaultConfig::new("https://bao:8200")
        };
        assert!(AponoVaultProvisioner::new("v", bad_mount).is_err());
    }

    #[test]
    fn passwords_are_long_and_fresh() {
        use secrecy::ExposeSecret;
        let (a, b) = (
            apono_core::generate_password(),
            apono_core::generate_password(),
        );
        assert_eq!(a.expose_secret().len(), apono_core::password::PASSWORD_LEN);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
