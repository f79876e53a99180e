//! Just-in-time access to RDP servers and Windows domains over WinRM: the integration types
//! `rdp` and `windows-domain-controller`.
//!
//! * **`rdp`** — one Windows server. Discovery reports the resource `rdp-server` (the host) and
//!   its local groups as permissions; `Connect` means *Remote Desktop Users*. Accounts are local.
//! * Well-known groups (*Remote Desktop Users*, *Administrators*, *Domain Admins*, …) are found
//!   on the target by SID, not by name, so localised Windows works; permissions keep their
//!   English names everywhere ([`groups`]). Any other group is found by its exact name.
//! * **`windows-domain-controller`** — a domain, managed on one of its controllers. Discovery
//!   reports the resource `domain` and the domain's groups as permissions; `Connect` means an
//!   enabled domain account (its default *Domain Users* membership, nothing added), any other
//!   permission is an AD group the account joins. Accounts are Active Directory users.
//!
//! A grant creates — or re-enables, if it carries the connector's marker in its description —
//! the account named by [`AccountNaming`](apono_core::AccountNaming) (a `sAMAccountName` of at
//! most 20 characters), sets a fresh 32-character random password ([`apono_core::password`]), sets the
//! account expiry to the grant's end (a backstop if the connector is down), records a *lease*
//! for the grant (registry key `HKLM:\SOFTWARE\Apono\Connector\Leases\<account>`), and adds the
//! membership. The requester receives the host, RDP port, `DOMAIN\user`, the one-time password,
//! a ready `.rdp` file and an `xfreerdp` command. Revoke drops the grant's lease; when no live
//! lease remains it removes the membership, resets the password to an unknown random value,
//! disables the account and logs off its sessions. Several grants of one grantee share the
//! account and stay independent. Cleanup deletes only marked accounts without live leases;
//! rotation sets a new password. An existing account without the marker is never touched.
//!
//! **No injection, by construction**: every action runs one fixed PowerShell script
//! ([`script`]); the data travels as one base64 JSON line on the command's stdin, never in script
//! text or on the command line, and names are validated before anything is sent.
//!
//! **Verification status** — what is checked, and how:
//!
//! * *Syntax*: every script the crate sends is parsed by tree-sitter-powershell
//!   (`tests/powershell_syntax.rs`): no syntax error, no command outside a fixed list of Windows
//!   PowerShell 5.1 cmdlets (core, ActiveDirectory, LocalAccounts) and `logoff.exe`, no
//!   parameter those cmdlets lack. That list is written from Microsoft's cmdlet reference.
//! * *Behaviour*: the provisioner runs against the WS-Management fake of `apono-testkit`
//!   (`fakes::winrm`, itself checked by pywinrm), which recognises these scripts by their exact
//!   text and imitates their effect; the fake does not run PowerShell.
//! * *Not verified*: the scripts have never run on Windows — not the cmdlets' actual behaviour
//!   (error types, idempotency of membership changes), nor reading stdin over WinRS, nor
//!   localised hosts. Run them against a real server before relying on them.
//!
//! # Transport
//!
//! Fail closed. HTTPS (`use_ssl = true`) verifies the certificate chain and the host name;
//! self-signed certificates are refused. With `ca_certificate` the chain must lead to that CA
//! (this path is our own minimal WS-Management client, because `winrm-rs` 1.1 trusts only the
//! compiled-in public web roots and cannot take a CA; it authenticates with Basic). Without it,
//! `winrm-rs` verifies against the public web roots. Basic authentication over plain HTTP is
//! refused unless `allow_unencrypted_basic = true`, and then every connection logs a warning.
//! `auth = "ntlm"` uses `winrm-rs`'s NTLMv2, sealed on plain HTTP.
//!
//! `winrm-rs` logs whole SOAP request bodies at `TRACE` level (target `winrm_rs`); those bodies
//! carry the base64 payload, password included. Never enable `TRACE` for `winrm_rs`.
//!
//! # What is proven, against what
//!
//! Against the test kit's WS-Management fake (itself checked with `pywinrm`), and every script is
//! parsed by `tree-sitter-powershell`. No Windows host has run these scripts.
//!
//! # Example
//!
//! ```no_run
//! use apono_core::{ActionContext, Provisioner, SecretValue};
//! use apono_provision_winrm::{WindowsConfig, WindowsTarget, WinrmProvisioner};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = WindowsConfig::new("rdp1.corp.example");
//! config.use_ssl = true;
//! config.ca_certificate = Some(std::fs::read_to_string("corp-ca.pem")?);
//! let provisioner = WinrmProvisioner::new("office-rdp", WindowsTarget::Rdp, config)?;
//!
//! let secret = SecretValue::new()
//!     .with("username", "apono")
//!     .with("password", "…");
//! let status = provisioner.get_status(&ActionContext::new(secret)).await?;
//! println!("{:?}", status.status);
//! # Ok(())
//! # }
//! ```

mod config;
pub mod groups;
pub mod script;
mod transport;

use std::collections::BTreeMap;

use apono_core::names::{GroupName, Windows};
use apono_core::secrecy::{ExposeSecret, SecretString};
use apono_core::{
    AccessDetails, ActionContext, Credential, GrantSpec, GrantState, Granted, Instructions,
    Integration, InvalidIntegration, Inventory, NameError, Permission, PermissionInfo,
    ProvisionError, Provisioner, Resource, StatusCheck, StatusReport, async_trait,
    generate_password,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use apono_core::names::SamAccountName;
pub use config::{WindowsConfig, WindowsTarget, WinrmAuth};
pub use transport::TransportError;

use script::ScriptKind;
use transport::{AdminCredentials, Transport, transport_for};

/// The permission every integration offers.
pub const CONNECT: &str = "Connect";
/// The local group `Connect` means on an RDP server (found by its SID, `S-1-5-32-555`).
pub const REMOTE_DESKTOP_USERS: &str = "Remote Desktop Users";
/// Length of generated passwords ([`apono_core::password`]'s policy).
pub use apono_core::password::PASSWORD_LEN;

/// The provisioner for one `rdp` or `windows-domain-controller` integration.
#[derive(Debug, Clone)]
pub struct WinrmProvisioner {
    integration: String,
    target: WindowsTarget,
    config: WindowsConfig,
    custom_access_details: Option<String>,
}

/// What a grant records: the account and the group it joined. No secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WinrmGrantState {
    account: SamAccountName,
    #[serde(default)]
    group: Option<GroupName<Windows>>,
    domain: String,
}

#[derive(Serialize)]
struct ModePayload<'a> {
    mode: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GrantPayload<'a> {
    mode: &'a str,
    user: &'a str,
    group: &'a str,
    group_sid: String,
    group_rid: u32,
    grant: &'a str,
    expires: String,
    #[serde(serialize_with = "script::expose")]
    password: &'a SecretString,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RevokePayload<'a> {
    mode: &'a str,
    user: &'a str,
    group: &'a str,
    group_sid: String,
    group_rid: u32,
    grant: &'a str,
    #[serde(serialize_with = "script::expose")]
    password: &'a SecretString,
}

#[derive(Serialize)]
struct RotatePayload<'a> {
    mode: &'a str,
    user: &'a str,
    grant: &'a str,
    #[serde(serialize_with = "script::expose")]
    password: &'a SecretString,
}

#[derive(Serialize)]
struct CleanupPayload<'a> {
    mode: &'a str,
    user: &'a str,
}

impl WinrmProvisioner {
    /// A provisioner for the integration called `integration`.
    pub fn new(
        integration: impl Into<String>,
        target: WindowsTarget,
        config: WindowsConfig,
    ) -> Result<Self, InvalidIntegration> {
        let integration = integration.into();
        config
            .validate()
            .map_err(|reason| InvalidIntegration::Config {
                integration: integration.clone(),
                reason,
            })?;
        Ok(Self {
            integration,
            target,
            config,
            custom_access_details: None,
        })
    }

    /// A provisioner for an `rdp` or `windows-domain-controller` integration.
    pub fn from_integration(integration: &Integration) -> Result<Self, InvalidIntegration> {
        let (target, config) = WindowsConfig::from_integration(integration)?;
        let mut provisioner = Self::new(integration.name.clone(), target, config)?;
        provisioner.custom_access_details = integration
            .custom_access_details
            .as_ref()
            .map(|c| c.as_str().to_owned());
        Ok(provisioner)
    }

    /// The configuration in effect.
    pub fn config(&self) -> &WindowsConfig {
        &self.config
    }

    /// The account a grant uses (derived from the grantee; validated).
    pub fn account_for(&self, grant: &GrantSpec) -> SamAccountName {
        self.config.account_naming.account_for(&grant.grantee)
    }

    /// The group a permission means, validated: `Connect` is *Remote Desktop Users* on an RDP
    /// server and no extra group on a domain; any other permission names a group.
    pub fn group_for(
        &self,
        permission: &Permission,
    ) -> Result<Option<GroupName<Windows>>, ProvisionError> {
        if permission.as_str() == CONNECT {
            return Ok(match self.target {
                WindowsTarget::Rdp => Some(GroupName::parse(REMOTE_DESKTOP_USERS)?),
                WindowsTarget::DomainController => None,
            });
        }
        Ok(Some(checked_group(permission.as_str())?))
    }

    /// How the scripts find `group`: the SID of a built-in alias (`S-1-5-32-…`) or the RID of
    /// a default domain group (see [`groups`]), or neither (`""`, `0`), and then by its name.
    fn group_sid_and_rid(&self, group: Option<&GroupName<Windows>>) -> (String, u32) {
        group
            .and_then(|g| groups::by_name(self.target, g.as_str()))
            .map_or((String::new(), 0), |known| {
                (
                    known.builtin_sid().unwrap_or_default(),
                    known.domain_rid().unwrap_or_default(),
                )
            })
    }

    /// Builds the exact command grant-access sends, after validating every name; exposed so
    /// tests can check that commands never vary but in their payload.
    pub fn grant_command(
        &self,
        grant: &GrantSpec,
        password: &SecretString,
    ) -> Result<script::RemoteCommand, ProvisionError> {
        self.check_resource(grant)?;
        let account = self.account_for(grant);
        let group = self.group_for(&grant.permission)?;
        let (group_sid, group_rid) = self.group_sid_and_rid(group.as_ref());
        Ok(script::command(
            ScriptKind::Grant,
            &GrantPayload {
                mode: self.target.mode(),
                user: account.as_str(),
                group: group.as_ref().map_or("", GroupName::as_str),
                group_sid,
                group_rid,
                grant: grant.grant_id.as_str(),
                expires: grant
                    .expires_at
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                password,
            },
        ))
    }

    /// The groups discovery offers as permissions, from the discover script's `groups` (names)
    /// and `groupSids` (their SIDs, in the same order; absent from older hosts and the fake):
    /// a well-known group under its English name whatever the host's language, any other group
    /// under its own name if that could be granted safely. A group that merely carries a
    /// well-known group's name (a custom *Administrators* beside the localised built-in one) is
    /// not offered: granting that name means the well-known group.
    fn offered_groups(&self, result: &Value) -> Vec<String> {
        let strings = |key: &str| -> Vec<&str> {
            result
                .get(key)
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|v| v.as_str().unwrap_or("")).collect())
                .unwrap_or_default()
        };
        let names = strings("groups");
        let sids = strings("groupSids");
        let domain_sid = result.get("domainSid").and_then(Value::as_str);
        let mut offered = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let known = sids
                .get(i)
                .filter(|_| sids.len() == names.len())
                .and_then(|sid| groups::by_sid(self.target, sid, domain_sid));
            let group = match known {
                Some(known) => known.name,
                None if sids.len() == names.len()
                    && groups::by_name(self.target, name).is_some() =>
                {
                    continue;
                }
                None => name,
            };
            if checked_group(group).is_ok() && !offered.iter().any(|o: &String| o == group) {
                offered.push(group.to_owned());
            }
        }
        offered
    }

    fn host(&self) -> &str {
        &self.config.host
    }

    fn check_resource(&self, grant: &GrantSpec) -> Result<(), ProvisionError> {
        if grant.resource.resource_type.as_str() != self.target.resource_type() {
            return Err(ProvisionError::InvalidGrant(format!(
                "resource type {} is not offered by this integration ({})",
                grant.resource.resource_type,
                self.target.resource_type()
            )));
        }
        if grant.resource.integration != self.integration {
            return Err(ProvisionError::InvalidGrant(
                "the resource belongs to another integration".into(),
            ));
        }
        Ok(())
    }

    fn transport(&self, ctx: &ActionContext) -> Result<Box<dyn Transport>, ProvisionError> {
        let username = ctx.secret().require("username")?.expose_secret().to_owned();
        let password = ctx.secret().require("password")?.clone();
        transport_for(&self.config, AdminCredentials { username, password }).map_err(|e| {
            ProvisionError::Config(InvalidIntegration::Config {
                integration: self.integration.clone(),
                reason: e.to_string(),
            })
        })
    }

    /// Runs one command within the action's deadline and cancellation, and reads its JSON result.
    async fn run(
        &self,
        ctx: &ActionContext,
        command: script::RemoteCommand,
    ) -> Result<Value, ProvisionError> {
        ctx.checkpoint()?;
        let transport = self.transport(ctx)?;
        tracing::debug!(host = %self.host(), script = command.kind.name(), "running WinRM script");
        let output = ctx
            .bounded(tokio::time::sleep, async {
                transport
                    .run(&command)
                    .await
                    .map_err(|e| self.transport_error(e))
            })
            .await?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = || {
            let text: String = stderr.trim().chars().take(300).collect();
            format!("{} script: {}", command.kind.name(), text.escape_debug())
        };
        match output.exit_code {
            0 => {}
            3 => {
                return Err(ProvisionError::Conflict {
                    target: self.host().to_owned(),
                    reason: reason(),
                });
            }
            4 => return Err(ProvisionError::InvalidGrant(reason())),
            5 => {
                return Err(ProvisionError::PermissionDenied {
                    target: self.host().to_owned(),
                    reason: reason(),
                    source: None,
                });
            }
            _ => {
                return Err(ProvisionError::Target {
                    target: self.host().to_owned(),
                    reason: reason(),
                    source: None,
                });
            }
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str::<Value>(line.trim()).ok())
            .ok_or_else(|| ProvisionError::Target {
                target: self.host().to_owned(),
                reason: format!("{} script printed no JSON result", command.kind.name()),
                source: None,
            })
    }

    fn transport_error(&self, e: TransportError) -> ProvisionError {
        let target = self.host().to_owned();
        match e {
            TransportError::Unauthorized => ProvisionError::PermissionDenied {
                target,
                reason: "WinRM rejected the integration's credentials".into(),
                source: Some(Box::new(e)),
            },
            e @ (TransportError::UnencryptedBasic | TransportError::TlsConfig(_)) => {
                ProvisionError::Config(InvalidIntegration::Config {
                    integration: self.integration.clone(),
                    reason: e.to_string(),
                })
            }
            e if e.is_tls() => ProvisionError::Target {
                target,
                reason: "the server's TLS certificate was not accepted".into(),
                source: Some(Box::new(e)),
            },
            e @ TransportError::Connect(_) => ProvisionError::Unavailable {
                target,
                source: Some(Box::new(e)),
            },
            e => ProvisionError::Target {
                target,
                reason: "WinRM failed".into(),
                source: Some(Box::new(e)),
            },
        }
    }

    fn access_details(
        &self,
        state: &WinrmGrantState,
        password: SecretString,
        grant: &GrantSpec,
    ) -> AccessDetails {
        let host = self.host();
        let port = self.config.rdp_port;
        let user = state.account.as_str();
        let qualified = format!("{}\\{user}", state.domain);
        let rdp_file = format!(
            "full address:s:{host}:{port}\r\nusername:s:{qualified}\r\nprompt for credentials:i:1\r\nauthentication level:i:2\r\n"
        );
        let cli = format!("xfreerdp /v:{host}:{port} /u:{user} /d:{}", state.domain);
        let plain = format!(
            "Connect with Remote Desktop to {host}:{port} as {qualified} with the one-time password. Access ends at {}.",
            grant
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let markdown = format!(
            "Connect with Remote Desktop to `{host}:{port}` as `{qualified}` with the one-time password, or run `{cli}`. Access ends at {}.",
            grant
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        let mut json = BTreeMap::new();
        json.insert("host".into(), Value::from(host));
        json.insert("rdp_port".into(), Value::from(port));
        json.insert("username".into(), Value::from(qualified));
        json.insert("domain".into(), Value::from(state.domain.clone()));
        json.insert("rdp_file".into(), Value::from(rdp_file));
        let mut details = AccessDetails {
            instructions: Instructions { plain, markdown },
            cli: Some(cli),
            link: None,
            json,
            credentials: vec![Credential::one_time("password", password)],
        };
        if let Some(custom) = &self.custom_access_details {
            details.append_custom(custom);
        }
        details
    }
}

/// A group name that passed the core Windows grammar and this crate's stricter policy: ASCII
/// only (no Unicode look-alikes of another group's name) and no apostrophe.
fn checked_group(name: &str) -> Result<GroupName<Windows>, NameError> {
    let group = GroupName::<Windows>::parse(name)?;
    if !name.is_ascii() || name.contains('\'') {
        return Err(NameError::new(
            "Windows group name",
            name,
            "must be ASCII without quotes (connector policy)",
        ));
    }
    Ok(group)
}

fn field<'a>(value: &'a Value, name: &str) -> &'a str {
    value.get(name).and_then(Value::as_str).unwrap_or("")
}

#[async_trait]
impl Provisioner for WinrmProvisioner {
    async fn get_status(&self, ctx: &ActionContext) -> Result<StatusReport, ProvisionError> {
        let command = script::command(
            ScriptKind::Status,
            &ModePayload {
                mode: self.target.mode(),
            },
        );
        let reach = format!("{}: WinRM", self.host());
        let rights = format!("{}: administrator", self.host());
        match self.run(ctx, command).await {
            Ok(result) => {
                let admin = result.get("admin").and_then(Value::as_bool) == Some(true);
                Ok(StatusReport::from_checks(vec![
                    StatusCheck {
                        name: reach,
                        ok: true,
                        message: format!(
                            "connected as {} on {}",
                            field(&result, "user"),
                            field(&result, "computer")
                        ),
                    },
                    StatusCheck {
                        name: rights,
                        ok: admin,
                        message: if admin {
                            String::new()
                        } else {
                            "the WinRM user is not an administrator; grants need the rights to create users, reset passwords and change group membership".into()
                        },
                    },
                ]))
            }
            Err(e @ (ProvisionError::Cancelled | ProvisionError::Timeout)) => Err(e),
            Err(e) => Ok(StatusReport::from_checks(vec![StatusCheck {
                name: reach,
                ok: false,
                message: e.to_string(),
            }])),
        }
    }

    async fn list_resources(&self, ctx: &ActionContext) -> Result<Inventory, ProvisionError> {
        let command = script::command(
            ScriptKind::Discover,
            &ModePayload {
                mode: self.target.mode(),
            },
        );
        let result = self.run(ctx, command).await?;
        let resource_type = self.target.resource_type();
        let (id, name) = match self.target {
            WindowsTarget::Rdp => (
                self.host().to_owned(),
                field(&result, "computer").to_owned(),
            ),
            WindowsTarget::DomainController => {
                let dns = field(&result, "dnsDomain");
                let domain = if dns.is_empty() {
                    field(&result, "domain")
                } else {
                    dns
                };
                (domain.to_owned(), field(&result, "domain").to_owned())
            }
        };
        let mut tags = BTreeMap::new();
        tags.insert("host".to_owned(), self.host().to_owned());
        let resources = vec![Resource {
            integration: self.integration.clone(),
            resource_type: resource_type.into(),
            id,
            name,
            tags,
        }];
        let mut permissions = vec![PermissionInfo {
            resource_type: resource_type.into(),
            permission: CONNECT.into(),
            description: Some(match self.target {
                WindowsTarget::Rdp => "Sign in over RDP (member of Remote Desktop Users)".into(),
                WindowsTarget::DomainController => {
                    "An enabled domain account (Domain Users)".into()
                }
            }),
        }];
        for group in self.offered_groups(&result) {
            permissions.push(PermissionInfo {
                resource_type: resource_type.into(),
                permission: group.clone().into(),
                description: Some(format!("Member of {group}")),
            });
        }
        Ok(Inventory {
            resources,
            permissions,
        })
    }

    #[tracing::instrument(skip_all, fields(integration = %self.integration, grant = %grant.grant_id))]
    async fn grant_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        ctx.checkpoint()?;
        let password = generate_password();
        let command = self.grant_command(grant, &password)?;
        let result = self.run(ctx, command).await?;
        let state = WinrmGrantState {
            account: self.account_for(grant),
            group: self.group_for(&grant.permission)?,
            domain: field(&result, "domain").to_owned(),
        };
        tracing::info!(account = %state.account, "granted");
        Ok(Granted {
            state: GrantState::encode(&state)?,
            access: self.access_details(&state, password, grant),
        })
    }

    #[tracing::instrument(skip_all, fields(integration = %self.integration, grant = %grant.grant_id))]
    async fn revoke_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        ctx.checkpoint()?;
        let state: WinrmGrantState = state.decode()?;
        let scramble = generate_password();
        let (group_sid, group_rid) = self.group_sid_and_rid(state.group.as_ref());
        let command = script::command(
            ScriptKind::Revoke,
            &RevokePayload {
                mode: self.target.mode(),
                user: state.account.as_str(),
                group: state.group.as_ref().map_or("", GroupName::as_str),
                group_sid,
                group_rid,
                grant: grant.grant_id.as_str(),
                password: &scramble,
            },
        );
        let result = self.run(ctx, command).await?;
        tracing::info!(account = %state.account, outcome = field(&result, "state"), "revoked");
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(integration = %self.integration, grant = %grant.grant_id))]
    async fn reset_credentials(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<Granted, ProvisionError> {
        ctx.checkpoint()?;
        let mut decoded: WinrmGrantState = state.decode()?;
        let password = generate_password();
        let command = script::command(
            ScriptKind::Rotate,
            &RotatePayload {
                mode: self.target.mode(),
                user: decoded.account.as_str(),
                grant: grant.grant_id.as_str(),
                password: &password,
            },
        );
        let result = self.run(ctx, command).await?;
        let domain = field(&result, "domain");
        if !domain.is_empty() {
            decoded.domain = domain.to_owned();
        }
        Ok(Granted {
            state: GrantState::encode(&decoded)?,
            access: self.access_details(&decoded, password, grant),
        })
    }

    #[tracing::instrument(skip_all, fields(integration = %self.integration, grant = %grant.grant_id))]
    async fn delete_credentials(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        ctx.checkpoint()?;
        let state: WinrmGrantState = state.decode()?;
        let command = script::command(
            ScriptKind::Cleanup,
            &CleanupPayload {
                mode: self.target.mode(),
                user: state.account.as_str(),
            },
        );
        let result = self.run(ctx, command).await?;
        tracing::info!(account = %state.account, outcome = field(&result, "state"), "cleanup");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provisioner(target: WindowsTarget) -> WinrmProvisioner {
        WinrmProvisioner::new("w", target, WindowsConfig::new("host.example")).unwrap()
    }

    #[test]
    fn discovery_offers_well_known_groups_under_their_english_names() {
        // A German server: built-in groups under localised names, one of them non-ASCII, plus
        // a custom group that merely carries a well-known name.
        let result = serde_json::json!({
            "groups": ["Administratoren", "Remotedesktopbenutzer", "Ereignisprotokollleser",
                       "Hyper-V-Administratoren", "Benutzer für Remoteverwaltung", "Helpdesk",
                       "Administrators", "Bad;Name"],
            "groupSids": ["S-1-5-32-544", "S-1-5-32-555", "S-1-5-32-573", "S-1-5-32-578",
                          "S-1-5-32-580", "S-1-5-21-1-2-3-1001", "S-1-5-21-1-2-3-1002",
                          "S-1-5-21-1-2-3-1003"],
            "domainSid": null,
        });
        assert_eq!(
            provisioner(WindowsTarget::Rdp).offered_groups(&result),
            [
                "Administrators",
                "Remote Desktop Users",
                "Event Log Readers",
                "Hyper-V Administrators",
                "Remote Management Users",
                "Helpdesk"
            ]
        );
        // Without SIDs (older hosts, the fake), names are offered as they are.
        let names_only = serde_json::json!({ "groups": ["Administratoren", "Helpdesk"] });
        assert_eq!(
            provisioner(WindowsTarget::Rdp).offered_groups(&names_only),
            ["Administratoren", "Helpdesk"]
        );
    }

    #[test]
    fn domain_groups_are_recognised_by_rid_and_granted_with_it() {
        let d = "S-1-5-21-1004336348-1177238915-682003330";
        let result = serde_json::json!({
            "groups": ["Domänen-Admins", "Remotedesktopbenutzer", "Finance"],
            "groupSids": [format!("{d}-512"), "S-1-5-32-555", format!("{d}-1105")],
            "domainSid": d,
        });
        let dc = provisioner(WindowsTarget::DomainController);
        assert_eq!(
            dc.offered_groups(&result),
            ["Domain Admins", "Remote Desktop Users", "Finance"]
        );
        let group = |name: &str| GroupName::<Windows>::parse(name).unwrap();
        assert_eq!(
            dc.group_sid_and_rid(Some(&group("domain admins"))),
            (String::new(), 512)
        );
        assert_eq!(
            dc.group_sid_and_rid(Some(&group("Remote Desktop Users"))),
            ("S-1-5-32-555".to_owned(), 0)
        );
        assert_eq!(
            dc.group_sid_and_rid(Some(&group("Finance"))),
            (String::new(), 0)
        );
        assert_eq!(dc.group_sid_and_rid(None), (String::new(), 0));
        // On a member server, Domain Admins is no local group: looked up by name.
        assert_eq!(
            provisioner(WindowsTarget::Rdp).group_sid_and_rid(Some(&group("Domain Admins"))),
            (String::new(), 0)
        );
    }
}
