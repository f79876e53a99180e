//! Grants: who gets what ([`GrantSpec`]), what the provisioner remembers about it
//! ([`GrantState`]) and what the requester receives ([`AccessDetails`]).

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::NameError;
use crate::integration::{Permission, Resource};

/// The id of a grant (an access session).
///
/// Ids end up in markers on targets (an `authorized_keys` comment, a policy name), so they are
/// restricted to 1–64 characters of `[A-Za-z0-9_-]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct GrantId(String);

impl GrantId {
    /// Longest id accepted.
    pub const MAX_LEN: usize = 64;

    /// Validates an id.
    pub fn new(id: impl Into<String>) -> Result<Self, NameError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= Self::MAX_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(id))
        } else {
            Err(NameError::new(
                "grant id",
                &id,
                "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'",
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for GrantId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// The person (or workload) access is granted to.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Grantee {
    /// Stable id in the identity provider.
    pub id: String,
    /// Email address; the usual source of the target account name.
    pub email: String,
    /// Name for display.
    #[serde(default)]
    pub display_name: String,
    /// Groups the grantee belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Grantee {
    /// The identity target account names are derived from: the email if set, else the id.
    pub fn identity(&self) -> &str {
        if self.email.is_empty() {
            &self.id
        } else {
            &self.email
        }
    }
}

/// One grant to provision: one grantee × one resource × one permission, until `expires_at`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct GrantSpec {
    /// The grant's id.
    pub grant_id: GrantId,
    /// Who receives access.
    pub grantee: Grantee,
    /// What they receive access to.
    pub resource: Resource,
    /// What they may do there.
    pub permission: Permission,
    /// When access ends; provisioners also set this on the target where it supports an expiry.
    pub expires_at: DateTime<Utc>,
    /// Request-time parameters defined by the integration, if any.
    #[serde(default)]
    pub custom_parameters: BTreeMap<String, serde_json::Value>,
}

/// What a provisioner recorded at grant time (account name, key fingerprint, binding id…),
/// stored in the grant ledger and handed back to revoke, rotation and cleanup.
///
/// It is opaque to everyone but the provisioner that wrote it. It is stored as plain JSON, so it
/// **must not contain secrets**: record a key's fingerprint, never the key.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct GrantState(serde_json::Value);

impl GrantState {
    /// Records a provisioner's own state type.
    pub fn encode<T: Serialize>(state: &T) -> Result<Self, GrantStateError> {
        serde_json::to_value(state)
            .map(Self)
            .map_err(|e| GrantStateError(e.to_string()))
    }

    /// Reads back what [`GrantState::encode`] recorded.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, GrantStateError> {
        T::deserialize(&self.0).map_err(|e| GrantStateError(e.to_string()))
    }

    /// The raw JSON, for storage.
    pub fn as_json(&self) -> &serde_json::Value {
        &self.0
    }

    /// Wraps raw JSON read back from storage.
    pub fn from_json(value: serde_json::Value) -> Self {
        Self(value)
    }
}

/// A grant state could not be encoded or decoded (for example, written by another version).
#[derive(Debug, thiserror::Error)]
#[error("grant state does not match this provisioner: {0}")]
pub struct GrantStateError(String);

/// Instructions for using a grant, in plain text and in Markdown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Instructions {
    /// Plain text.
    pub plain: String,
    /// Markdown.
    pub markdown: String,
}

/// A credential handed to the requester: a password, a private key, a token.
///
/// `one_time` credentials are shown once (status `new` → `viewed`) and then masked; a new one is
/// issued by `reset-credentials`.
#[derive(Clone)]
pub struct Credential {
    /// What it is, as a key of the access details' JSON view (`password`, `private_key`, …).
    pub name: String,
    /// The secret itself.
    pub value: SecretString,
    /// Whether it is shown only once.
    pub one_time: bool,
}

impl Credential {
    /// A credential shown only once.
    pub fn one_time(name: impl Into<String>, value: impl Into<SecretString>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            one_time: true,
        }
    }
}

impl PartialEq for Credential {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.one_time == other.one_time
            && self.value.expose_secret() == other.value.expose_secret()
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("name", &self.name)
            .field("value", &crate::secret::REDACTED)
            .field("one_time", &self.one_time)
            .finish()
    }
}

/// What the requester receives for a grant.
///
/// `json` holds non-secret parameters (host, port, username); `credentials` holds the secrets.
/// The serialised form never includes credentials: whoever shows them (once) does so
/// explicitly, merging them into the JSON view with [`AccessDetails::json_with_credentials`].
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct AccessDetails {
    /// How to use the access.
    pub instructions: Instructions,
    /// A ready command, such as `ssh -i key -p 22 user@host`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cli: Option<String>,
    /// A link to open, such as a web console URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Parameters for scripts.
    #[serde(default)]
    pub json: BTreeMap<String, serde_json::Value>,
    /// Secrets, never serialised.
    #[serde(skip)]
    pub credentials: Vec<Credential>,
}

impl AccessDetails {
    /// The JSON parameters with the credentials' values added under their names. The result
    /// contains secrets: show it once, never log it.
    pub fn json_with_credentials(&self) -> BTreeMap<String, serde_json::Value> {
        let mut json = self.json.clone();
        for credential in &self.credentials {
            json.insert(
                credential.name.clone(),
                credential.value.expose_secret().into(),
            );
        }
        json
    }

    /// Appends an integration's custom access details to the instructions.
    pub fn append_custom(&mut self, custom: &str) {
        for text in [
            &mut self.instructions.plain,
            &mut self.instructions.markdown,
        ] {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(custom);
        }
    }
}

/// The outcome of `grant-access` (and of rotation): the state to keep and the details to show.
#[derive(Clone, Debug, PartialEq)]
pub struct Granted {
    /// Stored in the grant ledger; handed back to revoke.
    pub state: GrantState,
    /// Shown to the requester.
    pub access: AccessDetails,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_ids_are_marker_safe() {
        assert!(GrantId::new("g-01HZX_abc").is_ok());
        for bad in ["", "a b", "a;b", "a\nb", &"x".repeat(65), "é"] {
            assert!(GrantId::new(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<GrantId>("\"a$b\"").is_err());
    }

    #[test]
    fn credentials_are_never_serialised_or_debugged() {
        let mut details = AccessDetails {
            cli: Some("ssh u@h".into()),
            ..AccessDetails::default()
        };
        details.json.insert("username".into(), "u".into());
        details
            .credentials
            .push(Credential::one_time("password", "canary-51b2"));
        let serialised = serde_json::to_string(&details).unwrap();
        let debugged = format!("{details:?}");
        for shown in [&serialised, &debugged] {
            assert!(!shown.contains("canary-51b2"), "{shown}");
        }
        let full = details.json_with_credentials();
        assert_eq!(full["password"], "canary-51b2");
        assert_eq!(full["username"], "u");
    }

    #[test]
    fn grant_state_round_trips() {
        #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
        struct SshState {
            username: String,
            fingerprint: String,
        }
        let state = SshState {
            username: "alice".into(),
            fingerprint: "SHA256:x".into(),
        };
        let encoded = GrantState::encode(&state).unwrap();
        assert_eq!(encoded.decode::<SshState>().unwrap(), state);
        assert!(encoded.decode::<Vec<u8>>().is_err());
    }

    #[test]
    fn custom_details_are_appended_to_both_forms() {
        let mut details = AccessDetails::default();
        details.instructions.plain = "Log in.".into();
        details.append_custom("Use the bastion.");
        assert_eq!(details.instructions.plain, "Log in.\n\nUse the bastion.");
        assert_eq!(details.instructions.markdown, "Use the bastion.");
    }
}
