//! Just-in-time access to Linux servers over SSH: Apono's `ssh` integration, resource type
//! `ssh-server`.
//!
//! [`SshProvisioner`] implements [`apono_core::Provisioner`]. For each grant it logs in to the
//! server as the configured admin user (key-only, passwordless `sudo`) and, in one round trip:
//!
//! * creates the grantee's account if missing — named by [`apono_core::AccountNaming`] and
//!   **marked as the connector's** (member of `apono-managed`, GECOS `apono-managed account`);
//!   an existing unmarked account is never touched ([`ProvisionError::Conflict`]);
//! * adds the requested group (the permission; `Default` adds none);
//! * records the grant in a **root-owned record** on the server (see [`script::STATE_DIR`]);
//! * installs a fresh ed25519 public key in the account's `authorized_keys` with
//!   `expiry-time=` set to the grant's end, so **the server itself** stops honouring it, and
//!   sets the account's expiry (`chage -E`) past the end as a backstop;
//! * returns the private key once, with `ssh` instructions.
//!
//! The grantee is treated as an adversary with a shell on the server: revoke and cleanup
//! decide only from the root-owned records and the connector's own [`SshGrantState`], never
//! from anything in the grantee's home directory. When the last grant of an account ends,
//! revoke first ends the account itself (expiry in the past, password locked, supplementary
//! groups removed, cron and `at` jobs removed, every process killed until none is left), and
//! only then, best effort and bounded in time, rewrites the key file. A partial revoke leaves
//! exactly the union of the remaining grants. Cleanup deletes marked accounts only.
//!
//! Host keys are verified fail-closed ([`SshConfig::known_hosts_file`], per-server
//! `host_key`, `@cert-authority` lines, or explicit trust on first use). Every action is one
//! fixed script whose arguments are validated names, quoted by construction.
//!
//! # What is proven, against what
//!
//! On a real OpenSSH server in a private namespace: grant, login, revoke, rotation and cleanup, in
//! key and certificate mode, and a hostile grantee who cannot keep access. That sshd runs without
//! PAM, cron and `at`: those paths are reasoned, not tested.
//!
//! # Example
//!
//! ```no_run
//! use apono_core::{ActionContext, Provisioner, SecretValue};
//! use apono_provision_ssh::{SshConfig, SshProvisioner};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = SshConfig::from_json(&serde_json::json!({
//!     "servers": r#"[{"name":"web-1","host":"10.0.0.5","host_key":"ssh-ed25519 AAAA…"}]"#,
//!     "user_groups": ["Default", "sudo"],
//! }))?;
//! let provisioner = SshProvisioner::new(config)?;
//! let secret = SecretValue::new().with("base64_private_key", "LS0tLS1CRUdJTi…");
//! let report = provisioner.get_status(&ActionContext::new(secret)).await?;
//! println!("{:?}", report.status);
//! # Ok(())
//! # }
//! ```

mod config;
pub mod script;
mod session;
mod trust;

use std::sync::Arc;

use apono_core::{
    AccessDetails, AccountNaming, ActionContext, Credential, GrantSpec, GrantState, Granted,
    Instructions, Inventory, LinuxGroupName, LinuxUsername, Permission, PermissionInfo,
    ProvisionError, Provisioner, Resource, ResourceType, StatusCheck, StatusReport, async_trait,
};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use russh::keys::{Algorithm, HashAlg, PrivateKey};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tracing::instrument;

pub use config::{ConfigError, DEFAULT_PERMISSION, ServerConfig, SshConfig};
pub use session::PoolOptions;
pub use trust::HostKeyRejected;

use session::{AdminKey, Output, SessionPool, TransportError};
use trust::HostTrust;

/// The integration type, as Apono names it.
pub const INTEGRATION_TYPE: &str = "ssh";
/// The resource type of every server.
pub const RESOURCE_TYPE: &str = "ssh-server";
/// Secret key: base64 of the admin user's private key (PEM or OpenSSH format).
pub const SECRET_PRIVATE_KEY: &str = "base64_private_key";
/// Secret key: the private key's passphrase, if it is encrypted.
pub const SECRET_PASSPHRASE: &str = "passphrase";
/// Secret key: base64 of a user CA's private key; when set, grants issue certificates.
pub const SECRET_CA_PRIVATE_KEY: &str = "base64_ca_private_key";

/// What a grant recorded: exactly what it added. No secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshGrantState {
    /// The server's name (resource id).
    pub server: String,
    /// The account.
    pub username: String,
    /// SHA-256 fingerprint of the grant's public key.
    pub key_fingerprint: String,
    /// Certificate serial, when a certificate was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_serial: Option<u64>,
    /// The groups the grant asked for.
    pub groups: Vec<String>,
    /// The groups the grant actually added (the account was not yet a member).
    pub groups_added: Vec<String>,
    /// Whether the grant created the account.
    pub account_created: bool,
}

/// The `ssh` integration's provisioner. Cheap to share (`Arc<dyn Provisioner>`); holds no
/// secrets, only pooled authenticated connections.
#[derive(Debug)]
pub struct SshProvisioner {
    config: SshConfig,
    naming: AccountNaming,
    groups: Vec<LinuxGroupName>,
    pool: SessionPool,
    trust: Arc<HostTrust>,
}

impl SshProvisioner {
    /// A provisioner with default pool options.
    pub fn new(config: SshConfig) -> Result<Self, ConfigError> {
        Self::with_pool_options(config, PoolOptions::default())
    }

    /// A provisioner with the given pool options.
    pub fn with_pool_options(config: SshConfig, options: PoolOptions) -> Result<Self, ConfigError> {
        config.validate()?;
        let groups = config.permission_groups()?;
        let naming = match &config.home_domain {
            Some(domain) => AccountNaming::new().with_home_domain(domain.clone()),
            None => AccountNaming::new(),
        };
        let trust = Arc::new(HostTrust::new(
            config.known_hosts_file.clone(),
            config.trust_on_first_use,
        ));
        let pool = SessionPool::new(options, trust.clone(), &config.servers);
        Ok(Self {
            config,
            naming,
            groups,
            pool,
            trust,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SshConfig {
        &self.config
    }

    /// The account a grantee gets on every server of this integration.
    pub fn account_for(&self, grant: &GrantSpec) -> LinuxUsername {
        self.naming.account_for(&grant.grantee)
    }

    fn server_for(&self, grant: &GrantSpec) -> Result<&ServerConfig, ProvisionError> {
        if grant.resource.resource_type != RESOURCE_TYPE {
            return Err(ProvisionError::InvalidGrant(format!(
                "resource type {:?} is not {RESOURCE_TYPE}",
                grant.resource.resource_type.as_str()
            )));
        }
        self.config
            .server(&grant.resource.id)
            .ok_or_else(|| ProvisionError::InvalidGrant("unknown ssh server".into()))
    }

    /// The groups a permission adds: none for `Default`, else one offered group.
    fn groups_for(&self, permission: &Permission) -> Result<Vec<LinuxGroupName>, ProvisionError> {
        if permission.as_str() == DEFAULT_PERMISSION
            && self
                .config
                .user_groups
                .iter()
                .any(|g| g == DEFAULT_PERMISSION)
        {
            return Ok(Vec::new());
        }
        let group = LinuxGroupName::parse(permission.as_str())?;
        if !self.groups.contains(&group) {
            return Err(ProvisionError::InvalidGrant(format!(
                "permission {:?} is not one of the integration's user_groups",
                group.as_str()
            )));
        }
        Ok(vec![group])
    }

    /// Runs one script on `server`, honouring the context's cancellation and deadline.
    async fn run(
        &self,
        ctx: &ActionContext,
        server: &ServerConfig,
        admin: &AdminKey,
        script: &str,
        args: &[&str],
        stdin: &[u8],
    ) -> Result<Output, ProvisionError> {
        let command = script::command_line(script, args).ok_or_else(|| ProvisionError::Target {
            target: server.name.clone(),
            reason: "refusing to send an empty or NUL-containing argument".into(),
            source: None,
        })?;
        ctx.bounded(tokio::time::sleep, async {
            self.pool
                .run(server, admin, &command, stdin)
                .await
                .map_err(|e| transport_error(server, e))
        })
        .await
    }

    async fn put_key(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        ctx.checkpoint()?;
        let server = self.server_for(grant)?;
        let groups = self.groups_for(&grant.permission)?;
        let user: LinuxUsername = self.account_for(grant);
        if grant.expires_at <= Utc::now() {
            return Err(ProvisionError::InvalidGrant(
                "the grant has already expired".into(),
            ));
        }
        let admin = admin_key(ctx)?;
        let ca = ca_key(ctx)?;

        let mut key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|e| {
            ProvisionError::Target {
                target: server.name.clone(),
                reason: "cannot generate a key pair".into(),
                source: Some(Box::new(e)),
            }
        })?;
        let group_list = groups
            .iter()
            .map(LinuxGroupName::as_str)
            .collect::<Vec<_>>()
            .join(",");
        // A label for people reading the key file; nothing ever parses it.
        let marker = format!("apono-grant:{}", grant.grant_id);
        key.set_comment(marker.clone());
        let public = key.public_key().clone();
        let fingerprint = public.fingerprint(HashAlg::Sha256).to_string();
        let mut certificate_serial = None;
        let (line, certificate) = match &ca {
            None => {
                let openssh = public.to_openssh().map_err(|e| encoding_error(server, e))?;
                let bare = openssh
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                (
                    format!(
                        "expiry-time=\"{}\" {bare} {marker}\n",
                        expiry_time(grant.expires_at)
                    ),
                    None,
                )
            }
            Some(ca) => {
                let serial: u64 = rand::random();
                certificate_serial = Some(serial);
                let cert = sign_certificate(ca, &key, &user, grant, server, serial)?;
                let ca_public = ca
                    .public_key()
                    .to_openssh()
                    .map_err(|e| encoding_error(server, e))?;
                let ca_line = ca_public
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                (
                    format!(
                        "cert-authority,principals=\"{principal}\",expiry-time=\"{}\" {ca_line} {marker}\n",
                        expiry_time(grant.expires_at),
                        principal = grant_principal(grant, serial),
                    ),
                    Some(cert),
                )
            }
        };

        let end = grant.expires_at.timestamp().to_string();
        let expiry = account_expiry(grant.expires_at);
        let mut args = vec![
            script::EDIT_KEYS,
            user.as_str(),
            self.config.shell.as_str(),
            grant.grant_id.as_str(),
            end.as_str(),
            expiry.as_str(),
        ];
        args.extend(groups.iter().map(LinuxGroupName::as_str));
        let out = self
            .run(ctx, server, &admin, script::GRANT, &args, line.as_bytes())
            .await?;
        match out.status {
            Some(0) => {}
            Some(3) => {
                return Err(ProvisionError::Conflict {
                    target: server.name.clone(),
                    reason: format!(
                        "account {user} exists and was not created by this integration"
                    ),
                });
            }
            Some(4) => {
                return Err(ProvisionError::InvalidGrant(format!(
                    "group {:?} does not exist on server {}",
                    group_list, server.name
                )));
            }
            Some(5) => {
                return Err(ProvisionError::Target {
                    target: server.name.clone(),
                    reason: format!(
                        "the key could not be written to the home directory of {user} \
                         within {}s; the grant was taken back",
                        script::EDIT_TIMEOUT_SECS
                    ),
                    source: None,
                });
            }
            Some(7) => {
                return Err(ProvisionError::InvalidGrant(format!(
                    "by the clock of server {} the grant has already ended",
                    server.name
                )));
            }
            _ => return Err(script_failed(server, "grant", &out)),
        }
        let groups_added: Vec<String> = tagged(&out.stdout, "apono:added")
            .map(str::to_owned)
            .collect();
        let state = SshGrantState {
            server: server.name.clone(),
            username: user.to_string(),
            key_fingerprint: fingerprint,
            certificate_serial,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            groups_added,
            account_created: out.stdout.lines().any(|l| l == "apono:created"),
        };
        let private = key
            .to_openssh(russh::keys::ssh_key::LineEnding::LF)
            .map_err(|e| encoding_error(server, e))?;
        let access = self.access_details(
            server,
            &user,
            grant,
            SecretString::from(private.as_str().to_owned()),
            certificate,
        );
        Ok(Granted {
            state: GrantState::encode(&state)?,
            access,
        })
    }

    fn access_details(
        &self,
        server: &ServerConfig,
        user: &LinuxUsername,
        grant: &GrantSpec,
        private_key: SecretString,
        certificate: Option<String>,
    ) -> AccessDetails {
        let key_file = format!("~/.ssh/{}", self.config.key_name);
        let cli = format!(
            "ssh -i {key_file} -p {} {user}@{}",
            server.port, server.host
        );
        let until = grant.expires_at.to_rfc3339();
        let cert_note = if certificate.is_some() {
            format!(" and the certificate as {key_file}-cert.pub")
        } else {
            String::new()
        };
        // The server's host key, so the requester's ssh can check the server without asking:
        // `host_key` as configured (type and data), else the key the connector's own connection
        // trusted (known_hosts file or first use); `known_hosts` as the line OpenSSH reads
        // (`[host]:port` for a port other than 22).
        let host_key = server
            .host_key
            .as_deref()
            .and_then(host_key_fields)
            .or_else(|| {
                self.trust
                    .accepted(&trust::host_port(&server.host, server.port))
                    .and_then(|key| key.to_openssh().ok())
                    .as_deref()
                    .and_then(host_key_fields)
            });
        let known_hosts = host_key
            .as_ref()
            .map(|key| format!("{} {key}", trust::host_port(&server.host, server.port)));
        let (plain_host, markdown_host) = match &known_hosts {
            Some(line) => (
                format!("\nThe server's host key, for ~/.ssh/known_hosts: {line}"),
                format!("\n\nThe server's host key, for `~/.ssh/known_hosts`:\n\n```\n{line}\n```"),
            ),
            None => (String::new(), String::new()),
        };
        let plain = format!(
            "Save the private key as {key_file} (chmod 600){cert_note}, then run: {cli}{plain_host}\n\
             Access to {} ends at {until}.",
            server.name
        );
        let markdown = format!(
            "Save the private key as `{key_file}` (`chmod 600`){cert_note}, then run:\n\n\
             ```\n{cli}\n```{markdown_host}\n\nAccess to **{}** ends at {until}.",
            server.name
        );
        let mut access = AccessDetails {
            instructions: Instructions { plain, markdown },
            cli: Some(cli),
            ..AccessDetails::default()
        };
        access
            .json
            .insert("host".into(), server.host.clone().into());
        access.json.insert("port".into(), server.port.into());
        access.json.insert("username".into(), user.as_str().into());
        access.json.insert("expires_at".into(), until.into());
        if let Some(cert) = certificate {
            access.json.insert("certificate".into(), cert.into());
        }
        if let (Some(key), Some(line)) = (host_key, known_hosts) {
            access.json.insert("host_key".into(), key.into());
            access.json.insert("known_hosts".into(), line.into());
        }
        access
            .credentials
            .push(Credential::one_time("private_key", private_key));
        access
    }

    async fn status_of(&self, ctx: &ActionContext, server: &ServerConfig) -> Vec<StatusCheck> {
        let check = |what: &str, result: Result<(), String>| StatusCheck {
            name: format!("{}: {what}", server.name),
            ok: result.is_ok(),
            message: result.err().unwrap_or_default(),
        };
        let admin = match admin_key(ctx) {
            Ok(admin) => admin,
            Err(e) => return vec![check("authenticated", Err(e.to_string()))],
        };
        let auth = ctx
            .bounded(tokio::time::sleep, async {
                self.pool
                    .authenticate(server, &admin)
                    .await
                    .map_err(|e| transport_error(server, e))
            })
            .await;
        if let Err(e) = auth {
            let reachable = !matches!(
                &e,
                ProvisionError::Unavailable { .. } | ProvisionError::Timeout
            );
            return vec![
                check(
                    "reachable",
                    if reachable {
                        Ok(())
                    } else {
                        Err(apono_core::error_chain(&e))
                    },
                ),
                check("authenticated", Err(apono_core::error_chain(&e))),
            ];
        }
        let sudo = ctx
            .bounded(tokio::time::sleep, async {
                self.pool
                    .run(server, &admin, "sudo -n true", &[])
                    .await
                    .map_err(|e| transport_error(server, e))
            })
            .await;
        let sudo = match sudo {
            Ok(out) if out.status == Some(0) => Ok(()),
            Ok(out) => Err(format!("sudo -n true failed: {}", sanitize(&out.stderr))),
            Err(e) => Err(apono_core::error_chain(&e)),
        };
        vec![
            check("reachable", Ok(())),
            check("authenticated", Ok(())),
            check("sudo", sudo),
        ]
    }
}

#[async_trait]
impl Provisioner for SshProvisioner {
    #[instrument(skip_all, fields(integration_type = INTEGRATION_TYPE))]
    async fn get_status(&self, ctx: &ActionContext) -> Result<StatusReport, ProvisionError> {
        ctx.checkpoint()?;
        let mut checks = Vec::new();
        for server in &self.config.servers {
            checks.extend(self.status_of(ctx, server).await);
        }
        Ok(StatusReport::from_checks(checks))
    }

    #[instrument(skip_all, fields(integration_type = INTEGRATION_TYPE))]
    async fn list_resources(&self, ctx: &ActionContext) -> Result<Inventory, ProvisionError> {
        ctx.checkpoint()?;
        let resource_type = ResourceType::from(RESOURCE_TYPE);
        let resources = self
            .config
            .servers
            .iter()
            .map(|s| Resource {
                integration: String::new(),
                resource_type: resource_type.clone(),
                id: s.name.clone(),
                name: s.name.clone(),
                tags: s.tags.clone(),
            })
            .collect();
        let permissions = self
            .config
            .user_groups
            .iter()
            .map(|g| PermissionInfo {
                resource_type: resource_type.clone(),
                permission: Permission::from(g.as_str()),
                description: Some(if g == DEFAULT_PERMISSION {
                    "log in with the user's own default Linux group".into()
                } else {
                    format!("log in as a member of the Linux group {g}")
                }),
            })
            .collect();
        Ok(Inventory {
            resources,
            permissions,
        })
    }

    #[instrument(skip_all, fields(grant_id = %grant.grant_id, server = %grant.resource.id))]
    async fn grant_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        self.put_key(ctx, grant).await
    }

    #[instrument(skip_all, fields(grant_id = %grant.grant_id, server = %grant.resource.id))]
    async fn revoke_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        ctx.checkpoint()?;
        let state: SshGrantState = state.decode()?;
        let user = LinuxUsername::parse(state.username.as_str())?;
        let server = self
            .config
            .server(&state.server)
            .ok_or_else(|| ProvisionError::InvalidGrant("unknown ssh server".into()))?;
        // A stored state that does not parse is refused before anything is sent. Which groups go
        // is not taken from it, though: the script leaves the account exactly the groups of
        // its remaining root-owned records (and touches only accounts that are ours).
        for g in state.groups.iter().chain(&state.groups_added) {
            LinuxGroupName::parse(g.as_str())?;
        }
        let admin = admin_key(ctx)?;
        let args = [script::EDIT_KEYS, user.as_str(), grant.grant_id.as_str()];
        let out = self
            .run(ctx, server, &admin, script::REVOKE, &args, &[])
            .await?;
        match out.status {
            Some(0) => {}
            Some(6) => return Err(processes_remain(server, &user)),
            _ => return Err(script_failed(server, "revoke", &out)),
        }
        if out.stdout.lines().any(|l| l == "apono:not-ours") {
            tracing::warn!(user = %user, "account is no longer marked as ours; left untouched");
        }
        if out.stdout.lines().any(|l| l == "apono:keys-unchanged") {
            // The account-level revoke is complete; only the key file could not be rewritten
            // (the user interfered with the edit, which runs as the user).
            tracing::warn!(user = %user, "the key file could not be rewritten within its time limit");
        }
        Ok(())
    }

    #[instrument(skip_all, fields(grant_id = %grant.grant_id, server = %grant.resource.id))]
    async fn reset_credentials(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<Granted, ProvisionError> {
        let old: SshGrantState = state.decode()?;
        let mut granted = self.put_key(ctx, grant).await?;
        let mut new: SshGrantState = granted.state.decode()?;
        new.account_created |= old.account_created;
        for g in old.groups_added {
            if !new.groups_added.contains(&g) {
                new.groups_added.push(g);
            }
        }
        granted.state = GrantState::encode(&new)?;
        Ok(granted)
    }

    #[instrument(skip_all, fields(grant_id = %grant.grant_id, server = %grant.resource.id))]
    async fn delete_credentials(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        ctx.checkpoint()?;
        let state: SshGrantState = state.decode()?;
        let user = LinuxUsername::parse(state.username.as_str())?;
        let server = self
            .config
            .server(&state.server)
            .ok_or_else(|| ProvisionError::InvalidGrant("unknown ssh server".into()))?;
        let admin = admin_key(ctx)?;
        let out = self
            .run(
                ctx,
                server,
                &admin,
                script::DELETE,
                &[script::EDIT_KEYS, user.as_str()],
                &[],
            )
            .await?;
        match out.status {
            Some(0) => Ok(()),
            Some(3) => Err(ProvisionError::Conflict {
                target: server.name.clone(),
                reason: format!("account {user} was not created by this integration"),
            }),
            Some(6) => Err(processes_remain(server, &user)),
            _ => Err(script_failed(server, "cleanup", &out)),
        }
    }
}

fn admin_key(ctx: &ActionContext) -> Result<AdminKey, ProvisionError> {
    let encoded = ctx.secret().require(SECRET_PRIVATE_KEY)?;
    let passphrase = ctx.secret().get(SECRET_PASSPHRASE);
    let key = decode_key(encoded, passphrase, SECRET_PRIVATE_KEY)?;
    let id = key.public_key().fingerprint(HashAlg::Sha256).to_string();
    Ok(AdminKey {
        key: Arc::new(key),
        id,
    })
}

fn ca_key(ctx: &ActionContext) -> Result<Option<PrivateKey>, ProvisionError> {
    ctx.secret()
        .get(SECRET_CA_PRIVATE_KEY)
        .map(|encoded| decode_key(encoded, None, SECRET_CA_PRIVATE_KEY))
        .transpose()
}

fn decode_key(
    encoded: &SecretString,
    passphrase: Option<&SecretString>,
    name: &str,
) -> Result<PrivateKey, ProvisionError> {
    let unusable = |reason: &str| {
        ProvisionError::Secret(apono_core::SecretError::Malformed {
            reason: format!("{name} {reason}"),
        })
    };
    let compact: zeroize::Zeroizing<String> = zeroize::Zeroizing::new(
        encoded
            .expose_secret()
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect(),
    );
    let bytes = data_encoding::BASE64
        .decode(compact.as_bytes())
        .map_err(|_| unusable("is not base64"))?;
    let text = secrecy::SecretString::from(
        String::from_utf8(bytes).map_err(|_| unusable("is not a text key file"))?,
    );
    russh::keys::decode_secret_key(
        text.expose_secret(),
        passphrase.map(ExposeSecret::expose_secret),
    )
    .map_err(|_| unusable("is not a usable private key (or the passphrase is wrong)"))
}

fn sign_certificate(
    ca: &PrivateKey,
    key: &PrivateKey,
    user: &LinuxUsername,
    grant: &GrantSpec,
    server: &ServerConfig,
    serial: u64,
) -> Result<String, ProvisionError> {
    use russh::keys::ssh_key::certificate::{Builder, CertType};
    let now = Utc::now().timestamp();
    let after = u64::try_from(now - 60).unwrap_or(0);
    let before = u64::try_from(grant.expires_at.timestamp()).unwrap_or(0);
    let fail = |e: russh::keys::ssh_key::Error| ProvisionError::Target {
        target: server.name.clone(),
        reason: "cannot sign the user certificate".into(),
        source: Some(Box::new(e)),
    };
    let mut builder = Builder::new_with_random_nonce(
        &mut rand::rng(),
        key.public_key().key_data().clone(),
        after,
        before,
    )
    .map_err(fail)?;
    builder.cert_type(CertType::User).map_err(fail)?;
    builder.serial(serial).map_err(fail)?;
    builder
        .key_id(format!("apono-grant:{}", grant.grant_id))
        .map_err(fail)?;
    builder.valid_principal(user.as_str()).map_err(fail)?;
    builder
        .valid_principal(grant_principal(grant, serial))
        .map_err(fail)?;
    for ext in ["permit-pty", "permit-user-rc"] {
        builder.extension(ext, "").map_err(fail)?;
    }
    let cert = builder.sign(ca).map_err(fail)?;
    cert.to_openssh().map_err(fail)
}

/// The type and data of an OpenSSH public key line, without its comment.
fn host_key_fields(line: &str) -> Option<String> {
    let mut fields = line.split_whitespace();
    let (kind, data) = (fields.next()?, fields.next()?);
    russh::keys::PublicKey::from_openssh(&format!("{kind} {data}"))
        .is_ok()
        .then(|| format!("{kind} {data}"))
}

/// The extra certificate principal that ties one certificate to its grant's `authorized_keys`
/// line (`cert-authority,principals=…`), so revoking or rotating the grant voids it at once.
fn grant_principal(grant: &GrantSpec, serial: u64) -> String {
    format!("apono-grant-{}-{serial:016x}", grant.grant_id)
}

/// `authorized_keys` `expiry-time` value (UTC).
fn expiry_time(at: DateTime<Utc>) -> String {
    at.format("%Y%m%d%H%M%SZ").to_string()
}

/// The account-expiry backstop: the day after the grant ends (UTC).
fn account_expiry(at: DateTime<Utc>) -> String {
    (at + ChronoDuration::days(1))
        .format("%Y-%m-%d")
        .to_string()
}

fn tagged<'a>(stdout: &'a str, tag: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    stdout
        .lines()
        .filter_map(move |l| l.strip_prefix(tag).and_then(|rest| rest.strip_prefix(' ')))
}

fn encoding_error(server: &ServerConfig, e: russh::keys::ssh_key::Error) -> ProvisionError {
    ProvisionError::Target {
        target: server.name.clone(),
        reason: "cannot encode a key".into(),
        source: Some(Box::new(e)),
    }
}

fn transport_error(server: &ServerConfig, e: TransportError) -> ProvisionError {
    match e {
        TransportError::HostKey(rejected) => ProvisionError::Target {
            target: server.name.clone(),
            reason: rejected.to_string(),
            source: Some(Box::new(rejected)),
        },
        TransportError::Auth(reason) => ProvisionError::PermissionDenied {
            target: server.name.clone(),
            reason,
            source: None,
        },
        other => ProvisionError::Unavailable {
            target: server.name.clone(),
            source: Some(Box::new(other)),
        },
    }
}

/// A process of the user survived every attempt to kill it; the account is locked and
/// expired all the same, and a retry kills again.
fn processes_remain(server: &ServerConfig, user: &LinuxUsername) -> ProvisionError {
    ProvisionError::Unavailable {
        target: server.name.clone(),
        source: Some(format!("a process of {user} survived every attempt to kill it").into()),
    }
}

fn script_failed(server: &ServerConfig, what: &str, out: &Output) -> ProvisionError {
    let status = out.status.map_or_else(
        || "no exit status".to_owned(),
        |s| format!("exit status {s}"),
    );
    if out.stderr.contains("sudo:") && out.stderr.contains("password") {
        return ProvisionError::PermissionDenied {
            target: server.name.clone(),
            reason: "the admin user has no passwordless sudo".into(),
            source: None,
        };
    }
    ProvisionError::Target {
        target: server.name.clone(),
        reason: format!("{what} script failed ({status}): {}", sanitize(&out.stderr)),
        source: None,
    }
}

/// Server output for an error message: printable, one line, shortened.
fn sanitize(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = flat.trim();
    match trimmed.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &trimmed[..i]),
        None => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use apono_core::{GrantId, Grantee};

    use super::*;

    const HOST_KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    fn details(port: u16, host_key: Option<&str>) -> AccessDetails {
        let mut server = serde_json::json!({"name": "web-1", "host": "10.0.0.5", "port": port});
        if let Some(key) = host_key {
            server["host_key"] = key.into();
        }
        let config = SshConfig::from_json(&serde_json::json!({ "servers": [server] }))
            .expect("valid config");
        let provisioner = SshProvisioner::new(config).expect("provisioner");
        let server = provisioner.config().servers[0].clone();
        let grant = GrantSpec {
            grant_id: GrantId::new("g-1").expect("id"),
            grantee: Grantee {
                id: "idp-alice".into(),
                email: "alice@example.com".into(),
                display_name: "alice".into(),
                groups: vec![],
            },
            resource: Resource {
                integration: "servers".into(),
                resource_type: "ssh-server".into(),
                id: "web-1".into(),
                name: "web-1".into(),
                tags: Default::default(),
            },
            permission: Permission::from("Default"),
            expires_at: Utc::now() + ChronoDuration::minutes(1),
            custom_parameters: Default::default(),
        };
        let user = provisioner.account_for(&grant);
        provisioner.access_details(&server, &user, &grant, "KEY".to_owned().into(), None)
    }

    #[test]
    fn access_details_carry_the_pinned_host_key_as_openssh_reads_it() {
        let with_comment = format!("{HOST_KEY} root@web-1");
        let access = details(2222, Some(&with_comment));
        assert_eq!(access.json["host_key"], HOST_KEY);
        let line = format!("[10.0.0.5]:2222 {HOST_KEY}");
        assert_eq!(access.json["known_hosts"], line.as_str());
        assert!(access.instructions.plain.contains(&line));
        assert!(access.instructions.markdown.contains(&line));
        let access = details(22, Some(HOST_KEY));
        assert_eq!(
            access.json["known_hosts"],
            format!("10.0.0.5 {HOST_KEY}").as_str()
        );
        let access = details(22, None);
        assert!(!access.json.contains_key("host_key") && !access.json.contains_key("known_hosts"));
        assert!(!access.instructions.plain.contains("host key"));
    }
}
