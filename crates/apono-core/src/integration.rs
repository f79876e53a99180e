//! Integrations and what discovery finds in them: resources, resource types and permissions.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::quote_untrusted;
use crate::secret::SecretStoreRef;

/// Declares a string newtype with `as_str`, `Display`, `From<&str>` and transparent serde.
macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a name.
            pub fn new(name: impl Into<String>) -> Self {
                Self(name.into())
            }

            /// The name as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(name: &str) -> Self {
                Self(name.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(name: String) -> Self {
                Self(name)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

string_newtype!(
    /// A kind of resource an integration exposes, such as `ssh-server`, `rdp-server`,
    /// `cluster`, `project`, `secret` or `database`.
    ResourceType
);

string_newtype!(
    /// What a grant gives on a resource type: an SSH user group or `Default`, `Connect` or a
    /// Windows group, a Rancher role template, `Admin`/`ReadWrite`/`ReadOnly` on a vault,
    /// `read-only`/`read-write`/`admin` on a database.
    Permission
);

/// The type of an integration: one of ours, or a third party's.
///
/// It serialises as the plain string Apono uses (`ssh`, `windows-domain-controller`, …), and any
/// other string is kept as [`IntegrationType::Other`], so a custom provisioner registers its own
/// type without changes here.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum IntegrationType {
    /// Linux servers over SSH.
    Ssh,
    /// A Windows server reached over RDP, managed over WinRM.
    Rdp,
    /// A Windows domain, managed on a domain controller over WinRM.
    WindowsDomainController,
    /// Rancher clusters and projects.
    Rancher,
    /// Secrets in an Apono (OpenBao) vault.
    AponoVault,
    /// PostgreSQL.
    Postgresql,
    /// MySQL or MariaDB.
    Mysql,
    /// Microsoft SQL Server.
    Mssql,
    /// A type this crate does not know: a third party's.
    Other(String),
}

impl IntegrationType {
    const KNOWN: [(Self, &'static str); 8] = [
        (Self::Ssh, "ssh"),
        (Self::Rdp, "rdp"),
        (Self::WindowsDomainController, "windows-domain-controller"),
        (Self::Rancher, "rancher"),
        (Self::AponoVault, "apono-vault"),
        (Self::Postgresql, "postgresql"),
        (Self::Mysql, "mysql"),
        (Self::Mssql, "mssql"),
    ];

    /// The type's string form.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(name) => name,
            known => Self::KNOWN
                .iter()
                .find(|(k, _)| k == known)
                .map_or("", |(_, s)| s),
        }
    }
}

impl From<&str> for IntegrationType {
    fn from(name: &str) -> Self {
        Self::KNOWN
            .iter()
            .find(|(_, s)| *s == name)
            .map_or_else(|| Self::Other(name.to_owned()), |(k, _)| k.clone())
    }
}

impl fmt::Display for IntegrationType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "schemars")]
impl schemars::JsonSchema for IntegrationType {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "IntegrationType".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let known: Vec<&str> = Self::KNOWN.iter().map(|(_, name)| *name).collect();
        schemars::json_schema!({
            "type": "string",
            "description": "The integration type: one of ours, or a third party's.",
            "examples": known,
        })
    }
}

impl Serialize for IntegrationType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IntegrationType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Ok(Self::from(name.as_str()))
    }
}

/// Text shown to requesters with every grant of an integration; at most
/// [`CustomAccessDetails::MAX_CHARS`] characters, as in Apono.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(transparent)]
pub struct CustomAccessDetails(
    #[cfg_attr(feature = "schemars", schemars(length(max = 400)))] String,
);

impl CustomAccessDetails {
    /// Apono's limit on the length of custom access details.
    pub const MAX_CHARS: usize = 400;

    /// Checks the length limit.
    pub fn new(text: impl Into<String>) -> Result<Self, InvalidIntegration> {
        let text = text.into();
        let chars = text.chars().count();
        if chars > Self::MAX_CHARS {
            return Err(InvalidIntegration::CustomAccessDetailsTooLong { chars });
        }
        Ok(Self(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for CustomAccessDetails {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// A configured integration: one target system (or a fleet of them) that the connector can
/// grant access to, with Apono's field names.
///
/// `config` is typed per integration type: the provisioner parses it with
/// [`Integration::config_as`] into its own struct and rejects unknown keys there. Unknown keys
/// at this level are rejected too.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Integration {
    /// Unique name.
    pub name: String,
    /// What kind of system it is.
    #[serde(rename = "type")]
    pub integration_type: IntegrationType,
    /// The resource types this integration offers for requests; empty means all it discovers.
    #[serde(default)]
    pub connected_resource_types: Vec<ResourceType>,
    /// Type-specific settings; their keys depend on `type`.
    #[serde(default = "empty_object")]
    #[cfg_attr(
        feature = "schemars",
        schemars(with = "BTreeMap<String, serde_json::Value>")
    )]
    pub config: serde_json::Value,
    /// Where the integration's admin credentials are read from: a table with exactly one key
    /// naming the store.
    #[cfg_attr(feature = "schemars", schemars(with = "schema::SecretStoreRef"))]
    pub secret_store: SecretStoreRef,
    /// Text added to every grant's access details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_access_details: Option<CustomAccessDetails>,
    /// Emails or group names of the integration's owners: the fallback approvers of a request
    /// whose access flow names no approver who can approve it, when no resource owner is found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// The resource tag naming each resource's owner (an email or a group name), who approves
    /// requests for it (Apono's "resource owner" key name). Requires `owners`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_owner_tag: Option<String>,
    /// Rotate credentials of active grants after this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_rotation_period_in_days: Option<u32>,
    /// Delete accounts this many days after their last grant was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_cleanup_period_in_days: Option<u32>,
    /// The id of the connector this integration is bound to; `None` means the local one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

impl Integration {
    /// Parses `config` into a provisioner's own configuration type.
    ///
    /// Give that type `#[serde(deny_unknown_fields)]` so that a mistyped key is an error, not a
    /// silently ignored setting.
    pub fn config_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, InvalidIntegration> {
        T::deserialize(&self.config).map_err(|e| InvalidIntegration::Config {
            integration: self.name.clone(),
            reason: e.to_string(),
        })
    }

    /// Whether requests for `resource_type` are offered by this integration.
    pub fn offers(&self, resource_type: &ResourceType) -> bool {
        self.connected_resource_types.is_empty()
            || self.connected_resource_types.contains(resource_type)
    }
}

/// Why an integration's definition is not acceptable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidIntegration {
    /// `custom_access_details` is longer than Apono allows.
    #[error(
        "custom_access_details has {chars} characters; at most {} are allowed",
        CustomAccessDetails::MAX_CHARS
    )]
    CustomAccessDetailsTooLong {
        /// The length found.
        chars: usize,
    },
    /// The type-specific `config` does not parse.
    #[error(
        "config of integration {} is invalid: {reason}",
        quote_untrusted(integration)
    )]
    Config {
        /// The integration's name.
        integration: String,
        /// What is wrong, as the parser says it.
        reason: String,
    },
}

/// Something discovery found in an integration that access can be requested to.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Resource {
    /// Name of the integration it belongs to.
    pub integration: String,
    /// Its type.
    pub resource_type: ResourceType,
    /// Stable id within the integration and type.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Tags, used by access flows to select resources.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A permission that can be requested on resources of one type.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct PermissionInfo {
    /// The resource type it applies to.
    pub resource_type: ResourceType,
    /// The permission.
    pub permission: Permission,
    /// What it gives, for people choosing one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What `list-resources` returns: the resources found and the permissions they offer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Inventory {
    /// Resources found.
    pub resources: Vec<Resource>,
    /// Permissions that can be requested, per resource type.
    pub permissions: Vec<PermissionInfo>,
}

/// The JSON Schema of [`SecretStoreRef`], whose own module carries no schema: the same
/// variants and keys, with the same serde attributes. `apono-connector`'s configuration
/// reference test checks both against each other through serde's messages.
#[cfg(feature = "schemars")]
mod schema {
    use std::collections::BTreeMap;

    /// Where an integration's secret is kept: exactly one of the stores Apono supports.
    #[derive(schemars::JsonSchema)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    #[allow(dead_code)] // a schema only
    pub(super) enum SecretStoreRef {
        /// Parameters written inline in the integration's configuration. Convenient for trials;
        /// not for production, since the secret then lives in the configuration itself.
        Apono {
            /// The secret's fields.
            parameters: BTreeMap<String, String>,
        },
        /// A Kubernetes `Secret`; its `data` keys become the fields.
        Kubernetes {
            /// Namespace of the secret.
            namespace: String,
            /// Name of the secret.
            name: String,
        },
        /// An AWS Secrets Manager secret whose value is a JSON object.
        Aws {
            /// Region of the secret, such as `eu-west-1`.
            region: String,
            /// Name or ARN of the secret.
            secret_id: String,
        },
        /// An Azure Key Vault secret whose value is a JSON object.
        Azure {
            /// The vault's URL, such as `https://my-vault.vault.azure.net`.
            vault_url: String,
            /// Name of the secret.
            name: String,
        },
        /// A GCP Secret Manager secret whose latest version holds a JSON object.
        Gcp {
            /// Project id.
            project: String,
            /// Secret id within the project.
            secret_id: String,
        },
        /// A HashiCorp Vault (or OpenBao) kv-v2 secret.
        HashicorpVault {
            /// Mount path of the kv-v2 engine.
            secret_engine: String,
            /// Path of the secret within the engine.
            path: String,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integration_types_round_trip_as_strings() {
        for name in [
            "ssh",
            "rdp",
            "windows-domain-controller",
            "rancher",
            "apono-vault",
            "postgresql",
            "mysql",
            "mssql",
            "acme-widgets",
        ] {
            let parsed: IntegrationType = serde_json::from_value(name.into()).unwrap();
            assert_eq!(parsed.as_str(), name);
            assert_eq!(serde_json::to_value(&parsed).unwrap(), name);
        }
        assert_eq!(IntegrationType::from("ssh"), IntegrationType::Ssh);
        assert_eq!(
            IntegrationType::from("acme"),
            IntegrationType::Other("acme".into())
        );
    }

    #[test]
    fn integration_parses_apono_shape_and_rejects_unknown_keys() {
        let json = serde_json::json!({
            "name": "prod-servers",
            "type": "ssh",
            "connected_resource_types": ["ssh-server"],
            "custom_access_details": "Use the bastion",
            "credentials_rotation_period_in_days": 30,
            "credentials_cleanup_period_in_days": 7,
            "secret_store": {"aws": {"region": "eu-west-1", "secret_id": "prod/ssh"}},
            "config": {"servers": []}
        });
        let integration: Integration = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(integration.integration_type, IntegrationType::Ssh);
        assert!(integration.offers(&"ssh-server".into()));
        assert!(!integration.offers(&"rdp-server".into()));

        let mut bad = json.clone();
        bad["secret_stor"] = serde_json::json!({});
        let err = serde_json::from_value::<Integration>(bad).unwrap_err();
        assert!(err.to_string().contains("secret_stor"), "{err}");

        let mut long = json;
        long["custom_access_details"] = "x".repeat(401).into();
        let err = serde_json::from_value::<Integration>(long).unwrap_err();
        assert!(err.to_string().contains("401 characters"), "{err}");
    }

    #[test]
    fn typed_config_errors_name_the_integration() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct SshConfig {
            servers: Vec<String>,
        }
        let integration: Integration = serde_json::from_value(serde_json::json!({
            "name": "prod", "type": "ssh",
            "secret_store": {"gcp": {"project": "p", "secret_id": "s"}},
            "config": {"servers": [], "sever": 1}
        }))
        .unwrap();
        let err = integration.config_as::<SshConfig>().unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("\"prod\"") && shown.contains("sever"),
            "{shown}"
        );
    }
}
