//! `HASHICORP_VAULT_CONFIG`: which vaults the connector knows, and how to reach them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use apono_core::json::{describe_json_error, json_type};
use apono_core::{SecretStoreRef, SecretValue};
use secrecy::{ExposeSecret, SecretString};
use tracing::warn;

/// The environment variable holding the vault configuration as JSON.
pub const VAULT_CONFIG_ENV: &str = "HASHICORP_VAULT_CONFIG";
/// The environment variable naming a file that holds the vault configuration as JSON.
pub const VAULT_CONFIG_FILE_ENV: &str = "HASHICORP_VAULT_CONFIG_FILE_PATH";

/// Why a vault configuration was refused. Messages name entries and keys, never values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultConfigError {
    /// Neither variable is set.
    #[error("neither {VAULT_CONFIG_ENV} nor {VAULT_CONFIG_FILE_ENV} is set")]
    NotSet,
    /// Both variables are set; which one wins would be a guess.
    #[error("both {VAULT_CONFIG_ENV} and {VAULT_CONFIG_FILE_ENV} are set; set only one")]
    BothSet,
    /// The configuration file could not be read.
    #[error("cannot read the vault configuration file {path}")]
    File {
        /// The file named by [`VAULT_CONFIG_FILE_ENV`].
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not JSON.
    #[error("vault configuration {reason}")]
    Json {
        /// Category and position of the syntax error (never the text itself).
        reason: String,
    },
    /// The JSON is not an array of objects.
    #[error("vault configuration must be a JSON array of vault entries, found {found}")]
    NotAnArray {
        /// What was found instead.
        found: &'static str,
    },
    /// The array is empty.
    #[error("vault configuration lists no vault")]
    Empty,
    /// One entry is invalid.
    #[error("vault entry {index} is invalid: {reason}")]
    Entry {
        /// Position of the entry in the array, from 0.
        index: usize,
        /// What is wrong, naming the key.
        reason: String,
    },
}

/// The parsed `HASHICORP_VAULT_CONFIG`: a list of vaults in the order given.
///
/// The format is Apono's: a JSON array whose entries are either a vault connection
///
/// ```json
/// {"address": "https://vault:8200", "token": "…", "ca_cert_base64": "LS0tLS1CRUdJTi…",
///  "skip_verify": "false", "namespace": "admin", "secret_engines": ["kv"]}
/// ```
///
/// (`address` and `token` required; `ca_cert_base64` is a base64-encoded PEM bundle that then
/// becomes the only trusted CA; `skip_verify` is a boolean or the strings `"true"`/`"false"`
/// and defaults to `false`; `namespace` and the pins `secret_engine`/`secret_engines` are
/// extensions), or an instruction to fetch the connection from another secret store:
///
/// ```json
/// {"from_secret_store": "AWS", "region": "eu-west-1", "secret_id": "vault-conn"}
/// {"from_secret_store": "GCP", "project": "my-project", "secret_id": "vault-conn"}
/// {"from_secret_store": "AZURE", "AZURE_KEY_VAULT_URL": "https://v.vault.azure.net", "name": "vault-conn"}
/// {"from_secret_store": "KUBERNETES", "NAMESPACE": "apono", "name": "vault-conn"}
/// ```
///
/// whose secret holds the connection's keys (`address` — or `url`, `vault_addr`,
/// `hashicorp_vault_url` — and `token` — or `vault_token`, `hashicorp_vault_token` — plus the
/// optional keys above). Keys are matched case-insensitively, so the upper-case spellings of
/// Apono's documentation (`REGION`, `SECRET_ID`, `PROJECT`, `NAMESPACE`, `SECRET_NAME`,
/// `AZURE_KEY_VAULT_URL`) work, as do `vault_url` for Azure and `secret_name` for `name`.
/// Unknown keys are logged as warnings and ignored. Trailing commas (as in Apono's printed
/// example) are tolerated.
///
/// See the crate documentation for which entry serves a reference.
#[derive(Clone, Debug)]
pub struct VaultConfig {
    entries: Vec<VaultEntry>,
}

/// One vault of a [`VaultConfig`]. `Debug` shows the address and flags, never the token.
#[derive(Clone)]
pub struct VaultEntry {
    pub(crate) source: EntrySource,
    pins: Vec<String>,
}

#[derive(Clone)]
pub(crate) enum EntrySource {
    Direct(Connection),
    FromSecretStore(SecretStoreRef),
}

/// Where and how to reach one vault.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) address: String,
    pub(crate) token: SecretString,
    pub(crate) ca_cert_pem: Option<Vec<u8>>,
    pub(crate) skip_verify: bool,
    pub(crate) namespace: Option<String>,
}

impl VaultConfig {
    /// Parses the JSON text of `HASHICORP_VAULT_CONFIG` (or of the file it names).
    pub fn from_json(text: &[u8]) -> Result<Self, VaultConfigError> {
        let cleaned = strip_trailing_commas(text);
        let parsed: serde_json::Value =
            serde_json::from_slice(&cleaned).map_err(|e| VaultConfigError::Json {
                reason: describe_json_error(&e),
            })?;
        let serde_json::Value::Array(items) = parsed else {
            return Err(VaultConfigError::NotAnArray {
                found: json_type(&parsed),
            });
        };
        if items.is_empty() {
            return Err(VaultConfigError::Empty);
        }
        let entries = items
            .into_iter()
            .enumerate()
            .map(|(index, item)| {
                VaultEntry::parse(item).map_err(|reason| VaultConfigError::Entry { index, reason })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { entries })
    }

    /// Reads the configuration from [`VAULT_CONFIG_ENV`] or the file named by
    /// [`VAULT_CONFIG_FILE_ENV`], looked up through `lookup` (pass `|name|
    /// std::env::var(name).ok()` for the process environment). Exactly one must be set.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, VaultConfigError> {
        let inline = lookup(VAULT_CONFIG_ENV).filter(|v| !v.trim().is_empty());
        let file = lookup(VAULT_CONFIG_FILE_ENV).filter(|v| !v.trim().is_empty());
        match (inline, file) {
            (Some(_), Some(_)) => Err(VaultConfigError::BothSet),
            (None, None) => Err(VaultConfigError::NotSet),
            (Some(text), None) => Self::from_json(text.as_bytes()),
            (None, Some(path)) => {
                let path = PathBuf::from(path);
                let text = std::fs::read(&path)
                    .map_err(|source| VaultConfigError::File { path, source })?;
                Self::from_json(&text)
            }
        }
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[VaultEntry] {
        &self.entries
    }

    /// The entry serving kv-v2 mount `secret_engine`: the first entry pinned to it, else the
    /// first entry without pins.
    pub fn select(&self, secret_engine: &str) -> Option<(usize, &VaultEntry)> {
        let engine = secret_engine.trim_matches('/');
        self.entries
            .iter()
            .enumerate()
            .find(|(_, e)| e.pins.iter().any(|p| p == engine))
            .or_else(|| {
                self.entries
                    .iter()
                    .enumerate()
                    .find(|(_, e)| e.pins.is_empty())
            })
    }
}

impl VaultEntry {
    /// The vault's address, when the entry gives it directly.
    pub fn address(&self) -> Option<&str> {
        match &self.source {
            EntrySource::Direct(c) => Some(&c.address),
            EntrySource::FromSecretStore(_) => None,
        }
    }

    /// The secret holding the connection, when the entry is a `from_secret_store` entry.
    pub fn secret_source(&self) -> Option<&SecretStoreRef> {
        match &self.source {
            EntrySource::Direct(_) => None,
            EntrySource::FromSecretStore(r) => Some(r),
        }
    }

    /// The kv-v2 mounts this entry is pinned to (empty: it serves any mount no other entry
    /// is pinned to).
    pub fn secret_engines(&self) -> &[String] {
        &self.pins
    }

    fn parse(item: serde_json::Value) -> Result<Self, String> {
        let serde_json::Value::Object(object) = item else {
            return Err(format!("expected an object, found {}", json_type(&item)));
        };
        let mut fields = Fields::default();
        for (key, value) in object {
            let lower = key.to_ascii_lowercase();
            let field = match value {
                serde_json::Value::String(s) => Field::Text(s),
                serde_json::Value::Bool(b) => Field::Bool(b),
                serde_json::Value::Array(items) => Field::List(
                    items
                        .into_iter()
                        .map(|i| match i {
                            serde_json::Value::String(s) => Ok(s),
                            other => Err(format!(
                                "key `{lower}` must list strings, found {}",
                                json_type(&other)
                            )),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                other => Field::Other(json_type(&other)),
            };
            if fields.0.insert(lower.clone(), field).is_some() {
                return Err(format!("key `{lower}` is given twice"));
            }
        }
        let pins = fields.pins()?;
        let source = match fields.take_text("from_secret_store")? {
            Some(store) => EntrySource::FromSecretStore(fields.secret_source(&store)?),
            None => EntrySource::Direct(fields.connection()?),
        };
        fields.warn_unknown();
        Ok(Self { source, pins })
    }
}

impl fmt::Debug for VaultEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("VaultEntry");
        match &self.source {
            EntrySource::Direct(c) => s
                .field("address", &c.address)
                .field("token", &apono_core::REDACTED)
                .field("ca_cert", &c.ca_cert_pem.is_some())
                .field("skip_verify", &c.skip_verify)
                .field("namespace", &c.namespace),
            EntrySource::FromSecretStore(r) => s.field("from_secret_store", r),
        };
        s.field("secret_engines", &self.pins).finish()
    }
}

impl Connection {
    /// Builds a connection from the fields of a secret fetched from another store.
    pub(crate) fn from_secret(value: &SecretValue) -> Result<Self, String> {
        let mut fields = Fields::default();
        for (key, v) in value.iter() {
            fields.0.insert(
                key.to_ascii_lowercase(),
                Field::Text(v.expose_secret().to_owned()),
            );
        }
        // Pins and the like belong in HASHICORP_VAULT_CONFIG, not in the fetched secret.
        let connection = fields.connection()?;
        Ok(connection)
    }
}

enum Field {
    Text(String),
    Bool(bool),
    List(Vec<String>),
    Other(&'static str),
}

impl Field {
    fn type_name(&self) -> &'static str {
        match self {
            Field::Text(_) => "a string",
            Field::Bool(_) => "a boolean",
            Field::List(_) => "an array",
            Field::Other(t) => t,
        }
    }
}

#[derive(Default)]
struct Fields(BTreeMap<String, Field>);

impl Fields {
    /// Removes and returns the first of `names` present, as text.
    fn take_text_any(&mut self, names: &[&str]) -> Result<Option<String>, String> {
        let mut found = None;
        for name in names {
            if let Some(field) = self.0.remove(*name) {
                if found.is_some() {
                    return Err(format!("give only one of {}", names.join(", ")));
                }
                match field {
                    Field::Text(t) => found = Some(t),
                    other => {
                        return Err(format!(
                            "key `{name}` must be a string, found {}",
                            other.type_name()
                        ));
                    }
                }
            }
        }
        Ok(found)
    }

    fn take_text(&mut self, name: &str) -> Result<Option<String>, String> {
        self.take_text_any(&[name])
    }

    fn require_text(&mut self, names: &[&str]) -> Result<String, String> {
        match self.take_text_any(names)? {
            Some(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
            Some(_) => Err(format!("key `{}` is empty", names[0])),
            None => Err(format!("key `{}` is required", names[0])),
        }
    }

    fn pins(&mut self) -> Result<Vec<String>, String> {
        let mut pins = Vec::new();
        for name in ["secret_engine", "secret_engines"] {
            match self.0.remove(name) {
                None => {}
                Some(Field::Text(t)) => pins.push(t),
                Some(Field::List(l)) => pins.extend(l),
                Some(other) => {
                    return Err(format!(
                        "key `{name}` must be a string or a list of strings, found {}",
                        other.type_name()
                    ));
                }
            }
        }
        Ok(pins
            .into_iter()
            .map(|p| p.trim().trim_matches('/').to_owned())
            .filter(|p| !p.is_empty())
            .collect())
    }

    fn connection(&mut self) -> Result<Connection, String> {
        let address =
            self.require_text(&["address", "url", "vault_addr", "hashicorp_vault_url"])?;
        let parsed =
            url::Url::parse(&address).map_err(|_| "key `address` is not a valid URL".to_owned())?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err("key `address` must be an http:// or https:// URL with a host".into());
        }
        let token = self.require_text(&["token", "vault_token", "hashicorp_vault_token"])?;
        let ca_cert_pem = match self.take_text("ca_cert_base64")? {
            None => None,
            Some(text) if text.trim().is_empty() => None,
            Some(text) => {
                let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                let pem = data_encoding::BASE64
                    .decode(compact.as_bytes())
                    .or_else(|_| data_encoding::BASE64_NOPAD.decode(compact.as_bytes()))
                    .map_err(|_| "key `ca_cert_base64` is not valid base64".to_owned())?;
                if !pem.windows(b"-----BEGIN".len()).any(|w| w == b"-----BEGIN") {
                    return Err(
                        "key `ca_cert_base64` must be the base64 of a PEM certificate bundle"
                            .into(),
                    );
                }
                Some(pem)
            }
        };
        let skip_verify = match self.0.remove("skip_verify") {
            None => false,
            Some(Field::Bool(b)) => b,
            Some(Field::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "t" => true,
                "false" | "0" | "no" | "f" | "" => false,
                _ => return Err("key `skip_verify` must be true or false".into()),
            },
            Some(other) => {
                return Err(format!(
                    "key `skip_verify` must be a boolean or \"true\"/\"false\", found {}",
                    other.type_name()
                ));
            }
        };
        let namespace = self
            .take_text("namespace")?
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty());
        Ok(Connection {
            address: parsed.as_str().to_owned(),
            token: SecretString::from(token),
            ca_cert_pem,
            skip_verify,
            namespace,
        })
    }

    fn secret_source(&mut self, store: &str) -> Result<SecretStoreRef, String> {
        match store.trim().to_ascii_uppercase().as_str() {
            "AWS" => Ok(SecretStoreRef::Aws {
                region: self.require_text(&["region", "aws_region"])?,
                secret_id: self.require_text(&["secret_id", "aws_secret_id"])?,
            }),
            "GCP" => Ok(SecretStoreRef::Gcp {
                project: self.require_text(&[
                    "project",
                    "project_id",
                    "gcp_project",
                    "gcp_project_id",
                ])?,
                secret_id: self.require_text(&["secret_id", "gcp_secret_id"])?,
            }),
            "AZURE" => Ok(SecretStoreRef::Azure {
                vault_url: self.require_text(&[
                    "azure_key_vault_url",
                    "vault_url",
                    "key_vault_url",
                ])?,
                name: self.require_text(&["name", "secret_name"])?,
            }),
            "KUBERNETES" | "K8S" => Ok(SecretStoreRef::Kubernetes {
                namespace: self.require_text(&["namespace"])?,
                name: self.require_text(&["name", "secret_name"])?,
            }),
            _ => {
                Err("key `from_secret_store` must be one of AWS, GCP, AZURE, KUBERNETES".to_owned())
            }
        }
    }

    fn warn_unknown(&self) {
        for key in self.0.keys() {
            warn!(key = %key, "unknown key in a vault configuration entry ignored");
        }
    }
}

/// Removes commas that directly precede `}` or `]` (outside strings), so that the example in
/// Apono's documentation, which has one, parses.
fn strip_trailing_commas(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for (i, &byte) in text.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
        } else if byte == b'"' {
            in_string = true;
        } else if byte == b',' {
            let next = text[i + 1..].iter().find(|b| !b.is_ascii_whitespace());
            if matches!(next, Some(b'}' | b']')) {
                continue;
            }
        }
        out.push(byte);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_apono_documented_example() {
        let text = r#"[{"address":"http://HASHICORP_VAULT_URL","token":"HASHICORP_VAULT_TOKEN"},
{"from_secret_store": "AWS", "region": "AWS_REGION", "secret_id": "AWS_SECRET_ID",},
{"from_secret_store": "GCP", "project": "GCP_PROJECT_ID", "secret_id": "GCP_SECRET_ID"},
{"from_secret_store": "AZURE", "AZURE_KEY_VAULT_URL": "vault_url", "name": "SECRET_NAME"},
{"from_secret_store": "KUBERNETES", "NAMESPACE": "namespace", "name": "SECRET_NAME"}
]"#;
        let config = VaultConfig::from_json(text.as_bytes()).unwrap();
        assert_eq!(config.entries().len(), 5);
        assert_eq!(
            config.entries()[0].address(),
            Some("http://hashicorp_vault_url/")
        );
        assert!(matches!(
            config.entries()[3].secret_source(),
            Some(SecretStoreRef::Azure { vault_url, name }) if vault_url == "vault_url" && name == "SECRET_NAME"
        ));
        assert!(matches!(
            config.entries()[4].secret_source(),
            Some(SecretStoreRef::Kubernetes { namespace, .. }) if namespace == "namespace"
        ));
    }

    #[test]
    fn skip_verify_as_string_or_bool() {
        for (value, expected) in [
            ("\"true\"", true),
            ("true", true),
            ("\"false\"", false),
            ("false", false),
        ] {
            let text =
                format!(r#"[{{"address":"https://v:8200","token":"t","skip_verify":{value}}}]"#);
            let config = VaultConfig::from_json(text.as_bytes()).unwrap();
            let EntrySource::Direct(c) = &config.entries()[0].source else {
                panic!()
            };
            assert_eq!(c.skip_verify, expected, "{value}");
        }
        let err = VaultConfig::from_json(
            br#"[{"address":"https://v","token":"t","skip_verify":"maybe"}]"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("skip_verify"), "{err}");
    }

    #[test]
    fn selection_prefers_pins_then_first_unpinned() {
        let text = br#"[{"address":"https://a","token":"t"},
            {"address":"https://b","token":"t","secret_engine":"team-b"},
            {"address":"https://c","token":"t"}]"#;
        let config = VaultConfig::from_json(text).unwrap();
        assert_eq!(config.select("team-b").unwrap().0, 1);
        assert_eq!(config.select("secret").unwrap().0, 0);
        let pinned_only = VaultConfig::from_json(
            br#"[{"address":"https://b","token":"t","secret_engines":["x"]}]"#,
        )
        .unwrap();
        assert!(pinned_only.select("y").is_none());
    }

    #[test]
    fn errors_name_keys_not_values() {
        let canary = "canary-4d1c8e";
        for text in [
            format!(r#"[{{"address":"{canary}","token":"t"}}]"#),
            format!(r#"[{{"address":"https://v","token":5,"x":"{canary}"}}]"#),
            format!(
                r#"[{{"address":"https://v","token":"{canary}","ca_cert_base64":"{canary}"}}]"#
            ),
            format!(r#"[{{"from_secret_store":"{canary}"}}]"#),
            format!(r#"["{canary}"]"#),
            format!(r#"{{"token":"{canary}"}}"#),
            format!(r#"[{{"token":"{canary}" "#),
        ] {
            let err = VaultConfig::from_json(text.as_bytes()).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(canary), "{shown}");
        }
    }
}
