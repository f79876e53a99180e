//! The integration's configuration, with the names and defaults of Apono's SSH integration.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use apono_core::{LinuxGroupName, NameError};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// The permission that adds no group: the user logs in with their own default Linux group.
pub const DEFAULT_PERMISSION: &str = "Default";

/// Configuration of an `ssh` integration (the integration's `config` object).
///
/// Unknown keys are errors. `servers` is accepted both as a list of objects and as the
/// minified JSON string that Apono's Terraform provider sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// The servers of the integration; each one is an `ssh-server` resource.
    #[serde(deserialize_with = "servers_list_or_json")]
    pub servers: Vec<ServerConfig>,
    /// The permissions offered: Linux groups that grants add, or `Default` (the user's own
    /// default group only). Default: `["Default"]`.
    #[serde(default = "default_user_groups")]
    pub user_groups: Vec<String>,
    /// The login shell of accounts the integration creates. Default: `/bin/bash`.
    #[serde(default = "default_shell")]
    pub shell: String,
    /// The file name the requester is told to save the private key as. Default:
    /// `apono_id_ed25519`.
    #[serde(default = "default_key_name")]
    pub key_name: String,
    /// Rotate the credentials of active grants after this many days (acted on by the
    /// scheduler through `reset-credentials`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_rotation_period_in_days: Option<u32>,
    /// Delete accounts this many days after their last grant was revoked (acted on by the
    /// scheduler through `delete-credentials`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_cleanup_period_in_days: Option<u32>,
    /// A `known_hosts` file whose entries (plain or hashed host names, `@cert-authority` and
    /// `@revoked` lines) are trusted host keys. With `trust_on_first_use`, first-seen keys are
    /// appended to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts_file: Option<PathBuf>,
    /// Accept and record a server's key the first time it is seen; any later change is still
    /// refused. Default: `false` (unknown keys are refused).
    #[serde(default)]
    pub trust_on_first_use: bool,
    /// The email domain whose addresses map to readable account names
    /// (`john.smith@corp.example` → `john_smith`); other identities get hashed names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_domain: Option<String>,
}

/// One SSH server of the integration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Unique name; the resource id.
    pub name: String,
    /// IP address or host name.
    pub host: String,
    /// The administrator account the connector logs in as. Default: `apono`.
    #[serde(default = "default_admin_user")]
    pub user: String,
    /// The SSH port. Default: 22.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Labels for access flows.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The server's pinned host key, as an OpenSSH public-key line (`ssh-ed25519 AAAA…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
}

fn default_user_groups() -> Vec<String> {
    vec![DEFAULT_PERMISSION.to_owned()]
}
fn default_shell() -> String {
    "/bin/bash".to_owned()
}
fn default_key_name() -> String {
    "apono_id_ed25519".to_owned()
}
fn default_admin_user() -> String {
    "apono".to_owned()
}
fn default_port() -> u16 {
    22
}

fn servers_list_or_json<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServerConfig>, D::Error> {
    struct ServersVisitor;
    impl<'de> Visitor<'de> for ServersVisitor {
        type Value = Vec<ServerConfig>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of servers or a JSON string holding one")
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            serde_json::from_str(s).map_err(|e| E::custom(format!("servers: {e}")))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(server) = seq.next_element()? {
                out.push(server);
            }
            Ok(out)
        }
    }
    d.deserialize_any(ServersVisitor)
}

/// Why a configuration is not acceptable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration does not parse.
    #[error("ssh integration config does not parse: {0}")]
    Parse(String),
    /// A value breaks a rule.
    #[error("ssh integration config is invalid: {0}")]
    Invalid(String),
    /// A group name fails the Linux grammar.
    #[error(transparent)]
    Name(#[from] NameError),
}

impl SshConfig {
    /// Parses a JSON config object (the integration's `config`).
    pub fn from_json(value: &serde_json::Value) -> Result<Self, ConfigError> {
        let config = Self::deserialize(value).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the rules serde cannot express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.servers.is_empty() {
            return Err(ConfigError::Invalid("servers is empty".into()));
        }
        let mut names = BTreeSet::new();
        for server in &self.servers {
            if server.name.is_empty() || !names.insert(server.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "server names must be unique and non-empty ({:?})",
                    server.name
                )));
            }
            if server.host.is_empty() || server.user.is_empty() || server.port == 0 {
                return Err(ConfigError::Invalid(format!(
                    "server {:?} needs a host, a user and a non-zero port",
                    server.name
                )));
            }
            if let Some(line) = &server.host_key {
                russh::keys::PublicKey::from_openssh(line.trim()).map_err(|_| {
                    ConfigError::Invalid(format!(
                        "host_key of server {:?} is not an OpenSSH public key line",
                        server.name
                    ))
                })?;
            }
        }
        self.permission_groups()?;
        let shell_ok = self.shell.starts_with('/')
            && self.shell.len() <= 255
            && self
                .shell
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._+-".contains(&b))
            && !self.shell.split('/').any(|part| part == "..");
        if !shell_ok {
            return Err(ConfigError::Invalid(
                "shell must be an absolute path of A-Z, a-z, 0-9, '/', '.', '_', '+', '-'".into(),
            ));
        }
        if self.key_name.is_empty()
            || !self
                .key_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(ConfigError::Invalid(
                "key_name must be a file name of A-Z, a-z, 0-9, '.', '_', '-'".into(),
            ));
        }
        Ok(())
    }

    /// The groups behind `user_groups` (without `Default`), validated.
    pub(crate) fn permission_groups(&self) -> Result<Vec<LinuxGroupName>, NameError> {
        self.user_groups
            .iter()
            .filter(|g| g.as_str() != DEFAULT_PERMISSION)
            .map(LinuxGroupName::parse)
            .collect()
    }

    /// The server named `name`.
    pub(crate) fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_follow_the_reference() {
        let config = SshConfig::from_json(&json!({
            "servers": [{"name": "web-1", "host": "10.0.0.5"}]
        }))
        .unwrap();
        let server = &config.servers[0];
        assert_eq!((server.user.as_str(), server.port), ("apono", 22));
        assert_eq!(config.user_groups, ["Default"]);
        assert!(!config.trust_on_first_use);
    }

    #[test]
    fn servers_may_be_a_minified_json_string() {
        let config = SshConfig::from_json(&json!({
            "servers": r#"[{"name":"a","host":"h","port":2222,"tags":{"env":"prod"}}]"#,
            "user_groups": ["Default", "sudo"],
        }))
        .unwrap();
        assert_eq!(config.servers[0].port, 2222);
        assert_eq!(config.servers[0].tags["env"], "prod");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        for bad in [
            json!({"servers": [{"name": "a", "host": "h"}], "shel": "/bin/sh"}),
            json!({"servers": [{"name": "a", "host": "h", "prot": 22}]}),
            json!({"servers": r#"[{"name":"a","host":"h","x":1}]"#}),
            json!({"servers": []}),
            json!({"servers": [{"name": "a", "host": "h"}, {"name": "a", "host": "i"}]}),
            json!({"servers": [{"name": "a", "host": "h"}], "shell": "/bin/sh; rm"}),
            json!({"servers": [{"name": "a", "host": "h"}], "user_groups": ["$(id)"]}),
            json!({"servers": [{"name": "a", "host": "h", "host_key": "nonsense"}]}),
        ] {
            assert!(SshConfig::from_json(&bad).is_err(), "{bad}");
        }
    }
}
