//! Secrets: where an integration's admin credentials live ([`SecretStoreRef`]), what reading
//! them yields ([`SecretValue`]), and the contract every store backend implements
//! ([`SecretStore`]).

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{BoxError, ErrorKind};
use crate::json::{describe_json_error, json_type};

/// Where an integration's secret is kept: exactly one of the stores Apono supports.
///
/// The serialised shape is Apono's: an object with a single key naming the store, for example
/// `{"aws": {"region": "eu-west-1", "secret_id": "prod/ssh"}}` or, in TOML,
/// `secret_store = { kubernetes = { namespace = "apono", name = "ssh-admin" } }`.
///
/// `Debug` and `Display` never show the values of inline parameters.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum SecretStoreRef {
    /// Parameters written inline in the integration's configuration. Convenient for trials;
    /// not for production, since the secret then lives in the configuration itself.
    Apono {
        /// The secret's fields.
        parameters: SecretValue,
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

impl SecretStoreRef {
    /// The kind of store this reference points into.
    pub const fn kind(&self) -> SecretStoreKind {
        match self {
            Self::Apono { .. } => SecretStoreKind::Apono,
            Self::Kubernetes { .. } => SecretStoreKind::Kubernetes,
            Self::Aws { .. } => SecretStoreKind::Aws,
            Self::Azure { .. } => SecretStoreKind::Azure,
            Self::Gcp { .. } => SecretStoreKind::Gcp,
            Self::HashicorpVault { .. } => SecretStoreKind::HashicorpVault,
        }
    }
}

impl fmt::Display for SecretStoreRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Apono { parameters } => {
                write!(f, "inline parameters ({} keys)", parameters.len())
            }
            Self::Kubernetes { namespace, name } => {
                write!(f, "kubernetes secret {namespace}/{name}")
            }
            Self::Aws { region, secret_id } => {
                write!(f, "aws secret {secret_id} in {region}")
            }
            Self::Azure { vault_url, name } => {
                write!(f, "azure key vault secret {name} in {vault_url}")
            }
            Self::Gcp { project, secret_id } => {
                write!(f, "gcp secret projects/{project}/secrets/{secret_id}")
            }
            Self::HashicorpVault {
                secret_engine,
                path,
            } => write!(f, "vault secret {secret_engine}/{path}"),
        }
    }
}

/// The six kinds of secret store, without their coordinates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SecretStoreKind {
    /// Inline parameters.
    Apono,
    /// Kubernetes secrets.
    Kubernetes,
    /// AWS Secrets Manager.
    Aws,
    /// Azure Key Vault.
    Azure,
    /// GCP Secret Manager.
    Gcp,
    /// HashiCorp Vault or OpenBao kv-v2.
    HashicorpVault,
}

impl SecretStoreKind {
    /// The name used in configuration (`aws`, `hashicorp_vault`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Apono => "apono",
            Self::Kubernetes => "kubernetes",
            Self::Aws => "aws",
            Self::Azure => "azure",
            Self::Gcp => "gcp",
            Self::HashicorpVault => "hashicorp_vault",
        }
    }
}

impl fmt::Display for SecretStoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fields of a secret: key → secret string.
///
/// Every store Apono supports holds a JSON object (a Kubernetes secret's `data` map is the same
/// thing once decoded), so [`SecretValue::from_json`] is the usual way to build one.
///
/// The values are [`SecretString`]s: `Debug` lists the keys only, `Serialize` writes every value
/// as `"[redacted]"`, and errors about a value name its key, never its content.
#[derive(Clone, Default)]
pub struct SecretValue {
    fields: BTreeMap<String, SecretString>,
}

/// What `Serialize` writes in place of every secret value.
pub const REDACTED: &str = "[redacted]";

impl SecretValue {
    /// An empty value.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a JSON object into fields.
    ///
    /// String values are taken as they are; numbers and booleans as their JSON text; nested
    /// objects and arrays as their compact JSON text. `null` values, and anything that is not an
    /// object, are refused. Error messages never contain any part of the input.
    ///
    /// ```
    /// use apono_core::SecretValue;
    /// use secrecy::ExposeSecret;
    /// let value = SecretValue::from_json(br#"{"username":"admin","port":5432}"#).unwrap();
    /// assert_eq!(value.require("port").unwrap().expose_secret(), "5432");
    /// assert!(SecretValue::from_json(b"[1,2]").is_err());
    /// ```
    pub fn from_json(bytes: &[u8]) -> Result<Self, SecretError> {
        let parsed: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| SecretError::Malformed {
                reason: format!("value {}", describe_json_error(&e)),
            })?;
        let serde_json::Value::Object(map) = parsed else {
            return Err(SecretError::Malformed {
                reason: format!("expected a JSON object, found {}", json_type(&parsed)),
            });
        };
        let mut fields = BTreeMap::new();
        for (key, value) in map {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => {
                    return Err(SecretError::Malformed {
                        reason: format!("key `{key}` is null"),
                    });
                }
                serde_json::Value::Bool(_) | serde_json::Value::Number(_) => value.to_string(),
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => value.to_string(),
            };
            fields.insert(key, SecretString::from(text));
        }
        Ok(Self { fields })
    }

    /// Adds or replaces one field.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<SecretString>) {
        self.fields.insert(key.into(), value.into());
    }

    /// Builder form of [`SecretValue::insert`].
    pub fn with(mut self, key: impl Into<String>, value: impl Into<SecretString>) -> Self {
        self.insert(key, value);
        self
    }

    /// The field called `key`, if present.
    pub fn get(&self, key: &str) -> Option<&SecretString> {
        self.fields.get(key)
    }

    /// The field called `key`, or [`SecretError::MissingKey`] naming it.
    pub fn require(&self, key: &str) -> Result<&SecretString, SecretError> {
        self.get(key).ok_or_else(|| SecretError::MissingKey {
            key: key.to_owned(),
        })
    }

    /// The keys, in sorted order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// The fields, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SecretString)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl PartialEq for SecretValue {
    /// Compares keys and values in constant time per value length, so that equality checks in
    /// tests do not become a timing oracle if ever used elsewhere.
    fn eq(&self, other: &Self) -> bool {
        self.fields.len() == other.fields.len()
            && self
                .fields
                .iter()
                .zip(&other.fields)
                .all(|((ka, va), (kb, vb))| {
                    ka == kb && constant_time_eq(va.expose_secret(), vb.expose_secret())
                })
    }
}

impl Eq for SecretValue {}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.fields.keys().map(|k| (k, REDACTED)))
            .finish()
    }
}

impl FromIterator<(String, SecretString)> for SecretValue {
    fn from_iter<I: IntoIterator<Item = (String, SecretString)>>(iter: I) -> Self {
        Self {
            fields: iter.into_iter().collect(),
        }
    }
}

impl Serialize for SecretValue {
    /// Writes the keys with every value replaced by [`REDACTED`].
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.fields.keys().map(|k| (k, REDACTED)))
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    /// Reads a map of scalar values (strings, numbers, booleans), as written inline in a
    /// configuration file. Errors name the key, never the value.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;

        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = SecretValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of secret fields")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretValue, A::Error> {
                let mut value = SecretValue::new();
                while let Some(key) = map.next_key::<String>()? {
                    let field: ScalarField = map.next_value().map_err(|_| {
                        de::Error::custom(format!(
                            "secret field `{key}` must be a string, number or boolean"
                        ))
                    })?;
                    value.insert(key, field.0);
                }
                Ok(value)
            }
        }

        deserializer.deserialize_map(FieldsVisitor)
    }
}

/// One scalar secret field read without ever echoing it in an error.
struct ScalarField(String);

impl<'de> Deserialize<'de> for ScalarField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl Visitor<'_> for ScalarVisitor {
            type Value = ScalarField;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarField, E> {
                Ok(ScalarField(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<ScalarField, E> {
                Ok(ScalarField(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarField, E> {
                Ok(ScalarField(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarField, E> {
                Ok(ScalarField(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarField, E> {
                Ok(ScalarField(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarField, E> {
                Ok(ScalarField(v.to_string()))
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Why a secret could not be read or used.
///
/// Messages name stores, references and keys; they never contain a secret value. The backend's
/// own error, when there is one, is the `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The secret does not exist in the store.
    #[error("{reference} was not found")]
    NotFound {
        /// The secret that was asked for.
        reference: String,
        /// The backend's error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The store, or the connector's read-guard, refused to hand the secret out.
    #[error("reading {reference} is not permitted: {reason}")]
    PermissionDenied {
        /// The secret that was asked for.
        reference: String,
        /// Which rule refused it.
        reason: String,
        /// The backend's error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The store could not be reached or answered with a transient error.
    #[error("secret store {store} is unavailable")]
    Unavailable {
        /// Which store (kind and location, never credentials).
        store: String,
        /// The transport error.
        #[source]
        source: Option<BoxError>,
    },
    /// Reading the secret took longer than the action allowed.
    #[error("reading {reference} timed out")]
    Timeout {
        /// The secret that was asked for.
        reference: String,
    },
    /// The secret's value does not have the expected shape.
    #[error("secret value is malformed: {reason}")]
    Malformed {
        /// What is wrong, without quoting the value.
        reason: String,
    },
    /// A key the integration needs is absent from the secret.
    #[error("secret has no key `{key}`")]
    MissingKey {
        /// The missing key.
        key: String,
    },
    /// No backend is configured for this kind of store.
    #[error("no {kind} secret store is configured")]
    NotConfigured {
        /// The kind of store asked for.
        kind: SecretStoreKind,
    },
    /// The store backend is misconfigured (bad endpoint, unreadable credentials file…).
    #[error("secret store {store} is misconfigured: {reason}")]
    Config {
        /// Which store.
        store: String,
        /// What is wrong.
        reason: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
}

impl SecretError {
    /// The kind of failure, for retry decisions.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Malformed { .. } | Self::MissingKey { .. } => ErrorKind::Malformed,
            Self::NotConfigured { .. } | Self::Config { .. } => ErrorKind::InvalidInput,
        }
    }
}

/// A secret store backend: reads the secret a [`SecretStoreRef`] points to, at the moment it is
/// needed.
///
/// Implementations are held as `Arc<dyn SecretStore>` and shared across tasks.
///
/// * **Idempotent**: `get` only reads; calling it again returns the current value.
/// * **Cancel-safe**: dropping the future abandons the read and leaves nothing behind.
/// * **No caching** unless the backend documents an opt-in cache: the promise to operators is
///   that secrets are read when used and not kept.
/// * Errors are classified ([`SecretError::kind`]) and never contain the value.
#[async_trait]
pub trait SecretStore: Send + Sync + fmt::Debug + 'static {
    /// The kind of [`SecretStoreRef`] this backend serves.
    fn kind(&self) -> SecretStoreKind;

    /// Reads the secret `reference` points to.
    ///
    /// A reference of another kind than [`SecretStore::kind`] yields
    /// [`SecretError::NotConfigured`].
    async fn get(&self, reference: &SecretStoreRef) -> Result<SecretValue, SecretError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "canary-7f3a9e";

    #[test]
    fn debug_and_serialize_hide_values() {
        let value = SecretValue::new().with("password", CANARY);
        let debug = format!("{value:?}");
        assert!(
            debug.contains("password") && !debug.contains(CANARY),
            "{debug}"
        );
        let json = serde_json::to_string(&value).unwrap();
        assert_eq!(json, r#"{"password":"[redacted]"}"#);
        let store = SecretStoreRef::Apono { parameters: value };
        for shown in [format!("{store:?}"), store.to_string()] {
            assert!(!shown.contains(CANARY), "{shown}");
        }
    }

    #[test]
    fn json_errors_never_quote_the_input() {
        for input in [
            format!("\"{CANARY}\""),
            format!("{{\"k\": {CANARY}}}"),
            format!("[\"{CANARY}\"]"),
            format!("{{\"k\": \"{CANARY}\""),
            format!("{{\"{CANARY}\" \"x\"}}"),
        ] {
            let err = SecretValue::from_json(input.as_bytes()).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(CANARY), "{shown}");
            assert_eq!(err.kind(), ErrorKind::Malformed);
        }
    }

    #[test]
    fn scalars_and_nested_values_become_text() {
        let value =
            SecretValue::from_json(br#"{"s":"x","n":5,"b":true,"o":{"a":1},"l":[1]}"#).unwrap();
        let get = |k| value.get(k).unwrap().expose_secret().to_owned();
        assert_eq!(get("s"), "x");
        assert_eq!(get("n"), "5");
        assert_eq!(get("b"), "true");
        assert_eq!(get("o"), r#"{"a":1}"#);
        assert_eq!(get("l"), "[1]");
        let err = SecretValue::from_json(br#"{"k":null}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "secret value is malformed: key `k` is null"
        );
    }

    #[test]
    fn missing_key_is_named() {
        let err = SecretValue::new()
            .require("base64_private_key")
            .unwrap_err();
        assert_eq!(err.to_string(), "secret has no key `base64_private_key`");
    }

    #[test]
    fn store_refs_use_apono_field_names() {
        let cases = [
            (
                r#"{"aws":{"region":"eu-west-1","secret_id":"prod/ssh"}}"#,
                SecretStoreKind::Aws,
            ),
            (
                r#"{"kubernetes":{"namespace":"apono","name":"ssh"}}"#,
                SecretStoreKind::Kubernetes,
            ),
            (
                r#"{"azure":{"vault_url":"https://v.vault.azure.net","name":"s"}}"#,
                SecretStoreKind::Azure,
            ),
            (
                r#"{"gcp":{"project":"p","secret_id":"s"}}"#,
                SecretStoreKind::Gcp,
            ),
            (
                r#"{"hashicorp_vault":{"secret_engine":"kv","path":"a/b"}}"#,
                SecretStoreKind::HashicorpVault,
            ),
            (
                r#"{"apono":{"parameters":{"password":"x","port":22}}}"#,
                SecretStoreKind::Apono,
            ),
        ];
        for (json, kind) in cases {
            let parsed: SecretStoreRef = serde_json::from_str(json).unwrap();
            assert_eq!(parsed.kind(), kind, "{json}");
        }
        let unknown = serde_json::from_str::<SecretStoreRef>(
            r#"{"aws":{"region":"r","secret_id":"s","extra":1}}"#,
        );
        assert!(unknown.is_err());
        let hostile = serde_json::from_str::<SecretStoreRef>(&format!(
            r#"{{"apono":{{"parameters":{{"k":["{CANARY}"]}}}}}}"#
        ))
        .unwrap_err();
        assert!(!hostile.to_string().contains(CANARY), "{hostile}");
    }
}
