//! The integration's `config`, with Apono's field names and defaults.

use apono_core::{AccountNaming, Integration, IntegrationType, InvalidIntegration};
use serde::{Deserialize, Serialize};

/// Which of the two integration types a provisioner serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WindowsTarget {
    /// `rdp`: one Windows server; accounts are local (`New-LocalUser`); resource type
    /// `rdp-server`.
    Rdp,
    /// `windows-domain-controller`: a domain, managed on one of its controllers; accounts are
    /// Active Directory users (`New-ADUser`); resource type `domain`.
    DomainController,
}

impl WindowsTarget {
    /// The integration type's name (`rdp`, `windows-domain-controller`).
    pub const fn integration_type(self) -> &'static str {
        match self {
            Self::Rdp => "rdp",
            Self::DomainController => "windows-domain-controller",
        }
    }

    /// The resource type discovery reports.
    pub const fn resource_type(self) -> &'static str {
        match self {
            Self::Rdp => "rdp-server",
            Self::DomainController => "domain",
        }
    }

    /// `local` or `domain`, as the scripts' payloads say it.
    pub(crate) const fn mode(self) -> &'static str {
        match self {
            Self::Rdp => "local",
            Self::DomainController => "domain",
        }
    }
}

/// WinRM authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum WinrmAuth {
    /// HTTP Basic (what Apono's setup guide enables). Over plain HTTP only with
    /// [`WindowsConfig::allow_unencrypted_basic`].
    #[default]
    Basic,
    /// NTLMv2, through `winrm-rs`; over plain HTTP the messages are sealed (encrypted). Not
    /// available together with `ca_certificate` (see the crate docs).
    Ntlm,
}

/// The `config` of an `rdp` or `windows-domain-controller` integration.
///
/// Unknown keys are errors. The secret holds `username` and `password` (a domain account may be
/// given as `DOMAIN\user` or `user@domain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct WindowsConfig {
    /// DNS name or IP address of the server (the name its HTTPS certificate is issued for).
    pub host: String,
    /// WinRM port; default 5985, or 5986 with `use_ssl`.
    #[serde(default)]
    pub winrm_port: Option<u16>,
    /// RDP port handed to users; default 3389.
    #[serde(default = "default_rdp_port")]
    pub rdp_port: u16,
    /// WinRM over HTTPS; the certificate must chain to a trusted CA and match `host`.
    #[serde(default)]
    pub use_ssl: bool,
    /// PEM CA certificate(s) to trust for HTTPS instead of the public web roots.
    #[serde(default)]
    pub ca_certificate: Option<String>,
    /// Authentication scheme; default `basic`.
    #[serde(default)]
    pub auth: WinrmAuth,
    /// Allows HTTP Basic over plain HTTP, sending the admin password in the clear; every
    /// connection then logs a warning. Default `false`: refused.
    #[serde(default)]
    pub allow_unencrypted_basic: bool,
    /// How grantee identities become account names.
    #[serde(default)]
    #[cfg_attr(feature = "schemars", schemars(with = "AccountNamingSchema"))]
    pub account_naming: AccountNaming,
    /// Rotate credentials of active grants after this many days (also accepted at the
    /// integration's top level, as in Apono).
    #[serde(default)]
    pub credentials_rotation_period_in_days: Option<u32>,
    /// Delete accounts this many days after their last grant was revoked.
    #[serde(default)]
    pub credentials_cleanup_period_in_days: Option<u32>,
    /// Seconds allowed for one WinRM operation; default 60.
    #[serde(default = "default_operation_timeout")]
    pub operation_timeout_secs: u64,
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

fn default_rdp_port() -> u16 {
    3389
}

fn default_operation_timeout() -> u64 {
    60
}

impl WindowsConfig {
    /// A configuration for `host` with every default.
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            winrm_port: None,
            rdp_port: default_rdp_port(),
            use_ssl: false,
            ca_certificate: None,
            auth: WinrmAuth::Basic,
            allow_unencrypted_basic: false,
            account_naming: AccountNaming::default(),
            credentials_rotation_period_in_days: None,
            credentials_cleanup_period_in_days: None,
            operation_timeout_secs: default_operation_timeout(),
        }
    }

    /// The WinRM port in effect.
    pub fn effective_winrm_port(&self) -> u16 {
        self.winrm_port
            .unwrap_or(if self.use_ssl { 5986 } else { 5985 })
    }

    /// Reads the config of an `rdp` or `windows-domain-controller` integration, taking the
    /// rotation and cleanup periods from the integration when the config leaves them out.
    pub fn from_integration(
        integration: &Integration,
    ) -> Result<(WindowsTarget, Self), InvalidIntegration> {
        let target = match integration.integration_type {
            IntegrationType::Rdp => WindowsTarget::Rdp,
            IntegrationType::WindowsDomainController => WindowsTarget::DomainController,
            ref other => {
                return Err(InvalidIntegration::Config {
                    integration: integration.name.clone(),
                    reason: format!(
                        "type {other} is not served by this provisioner (rdp, windows-domain-controller)"
                    ),
                });
            }
        };
        let mut config: Self = integration.config_as()?;
        config.credentials_rotation_period_in_days = config
            .credentials_rotation_period_in_days
            .or(integration.credentials_rotation_period_in_days);
        config.credentials_cleanup_period_in_days = config
            .credentials_cleanup_period_in_days
            .or(integration.credentials_cleanup_period_in_days);
        config
            .validate()
            .map_err(|reason| InvalidIntegration::Config {
                integration: integration.name.clone(),
                reason,
            })?;
        Ok((target, config))
    }

    /// Checks what serde cannot: a plausible host, a positive timeout, and settings that
    /// belong together.
    pub fn validate(&self) -> Result<(), String> {
        let host_ok = !self.host.is_empty()
            && self.host.len() <= 253
            && self.host.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            })
            && !self.host.starts_with('-');
        if !host_ok {
            return Err("host must be a DNS name or an IP address".into());
        }
        if self.operation_timeout_secs == 0 {
            return Err("operation_timeout_secs must be positive".into());
        }
        if self.ca_certificate.is_some() && !self.use_ssl {
            return Err("ca_certificate needs use_ssl = true".into());
        }
        if self.ca_certificate.is_some() && self.auth == WinrmAuth::Ntlm {
            return Err(
                "auth = ntlm cannot be combined with ca_certificate (winrm-rs 1.1 trusts only the public web roots)"
                    .into(),
            );
        }
        Ok(())
    }
}
