//! The `rancher` integration's configuration.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// Days before the API key's expiry from which `get-status` reports a warning, by default.
pub const DEFAULT_EXPIRY_WARNING_DAYS: u32 = 14;

/// The `config` of a `rancher` integration, with Apono's field names. Unknown keys are errors.
///
/// The integration's secret holds `access_key` and `secret_key`: the API key of the dedicated
/// Rancher user (see the crate docs for the rights it needs).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RancherConfig {
    /// Hostname (or IP address) of the Rancher server, without scheme or path.
    pub host: String,
    /// Rancher's HTTPS port; 443 when absent. A number or a numeric string.
    #[serde(default = "default_port", deserialize_with = "port")]
    pub port: u16,
    /// PEM certificate(s) to trust for Rancher's TLS certificate, instead of the platform's
    /// roots. Also written into the kubeconfigs handed to users.
    #[serde(default)]
    pub certificate_authority: Option<String>,
    /// URL of the Rancher UI shown to users; `https://{host}:{port}/` when absent.
    #[serde(default)]
    pub rancher_ui_url: Option<String>,
    /// Email domain whose clean local parts become readable Rancher usernames
    /// ([`apono_core::AccountNaming`]).
    #[serde(default)]
    pub home_domain: Option<String>,
    /// Rotate grant credentials after this many days (scheduled by the control plane).
    #[serde(default)]
    pub credentials_rotation_period_in_days: Option<u32>,
    /// Delete users this many days after their last grant was revoked (scheduled by the
    /// control plane).
    #[serde(default)]
    pub credentials_cleanup_period_in_days: Option<u32>,
    /// `get-status` warns when the API key expires within this many days (default 14).
    #[serde(default = "default_warning_days")]
    pub api_key_expiry_warning_days: u32,
}

impl fmt::Debug for RancherConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RancherConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field(
                "certificate_authority",
                &self.certificate_authority.as_ref().map(|_| "<pem>"),
            )
            .field("rancher_ui_url", &self.rancher_ui_url)
            .field("home_domain", &self.home_domain)
            .finish_non_exhaustive()
    }
}

fn default_port() -> u16 {
    443
}

fn default_warning_days() -> u32 {
    DEFAULT_EXPIRY_WARNING_DAYS
}

fn port<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Number(u16),
        Text(String),
    }
    match Port::deserialize(deserializer)? {
        Port::Number(n) => Ok(n),
        Port::Text(t) => t
            .trim()
            .parse()
            .map_err(|_| serde::de::Error::custom("port must be a number from 1 to 65535")),
    }
}

/// Why a configuration is not acceptable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The JSON does not parse into [`RancherConfig`] (including unknown keys).
    #[error("invalid rancher config: {reason}")]
    Parse {
        /// What the parser said.
        reason: String,
    },
    /// A field has an unacceptable value.
    #[error("invalid rancher config: {field} {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("could not build the HTTPS client")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl RancherConfig {
    /// Parses and validates an integration's `config`.
    pub fn from_json(config: &serde_json::Value) -> Result<Self, ConfigError> {
        let parsed = Self::deserialize(config).map_err(|e| ConfigError::Parse {
            reason: e.to_string(),
        })?;
        parsed.validate()?;
        Ok(parsed)
    }

    /// A configuration for `host:port` with defaults for everything else.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            certificate_authority: None,
            rancher_ui_url: None,
            home_domain: None,
            credentials_rotation_period_in_days: None,
            credentials_cleanup_period_in_days: None,
            api_key_expiry_warning_days: DEFAULT_EXPIRY_WARNING_DAYS,
        }
    }

    /// Sets the CA to trust (PEM).
    pub fn with_certificate_authority(mut self, pem: impl Into<String>) -> Self {
        self.certificate_authority = Some(pem.into());
        self
    }

    /// Checks every field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| ConfigError::Invalid {
            field,
            reason: reason.to_owned(),
        };
        let host = self.host.trim();
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && (host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
                || (host.starts_with('[')
                    && host.ends_with(']')
                    && host[1..host.len() - 1]
                        .bytes()
                        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')));
        if !host_ok || host != self.host {
            return Err(invalid(
                "host",
                "must be a hostname or IP address, without scheme, port or path",
            ));
        }
        if self.port == 0 {
            return Err(invalid("port", "must be from 1 to 65535"));
        }
        if let Some(pem) = &self.certificate_authority
            && !pem.contains("-----BEGIN CERTIFICATE-----")
        {
            return Err(invalid(
                "certificate_authority",
                "must hold PEM certificates",
            ));
        }
        if let Some(ui) = &self.rancher_ui_url {
            let parsed = url::Url::parse(ui)
                .map_err(|_| invalid("rancher_ui_url", "must be an absolute URL"))?;
            if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
                return Err(invalid("rancher_ui_url", "must be an http(s) URL"));
            }
        }
        Ok(())
    }

    /// `https://{host}:{port}`.
    pub fn base_url(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }

    /// The UI link shown to users.
    pub fn ui_url(&self) -> String {
        self.rancher_ui_url
            .clone()
            .unwrap_or_else(|| format!("{}/", self.base_url()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_apono_fields_and_refuses_unknown_keys() {
        let config = RancherConfig::from_json(&json!({
            "host": "rancher.corp.example",
            "port": "8443",
            "rancher_ui_url": "https://rancher.corp.example/dashboard/",
            "credentials_cleanup_period_in_days": 7,
        }))
        .unwrap();
        assert_eq!(config.port, 8443);
        assert_eq!(config.api_key_expiry_warning_days, 14);
        assert_eq!(config.base_url(), "https://rancher.corp.example:8443");
        let err = RancherConfig::from_json(&json!({"host": "r", "insecure": true})).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
        assert_eq!(
            RancherConfig::from_json(&json!({"host": "r"}))
                .unwrap()
                .port,
            443
        );
    }

    #[test]
    fn refuses_bad_values() {
        for bad in [
            json!({"host": "https://r.example"}),
            json!({"host": "r.example/x"}),
            json!({"host": "a@b"}),
            json!({"host": ""}),
            json!({"host": "r", "port": 0}),
            json!({"host": "r", "port": "http"}),
            json!({"host": "r", "certificate_authority": "not pem"}),
            json!({"host": "r", "rancher_ui_url": "javascript:alert(1)"}),
        ] {
            assert!(RancherConfig::from_json(&bad).is_err(), "{bad}");
        }
        assert!(RancherConfig::from_json(&json!({"host": "[::1]"})).is_ok());
    }
}
