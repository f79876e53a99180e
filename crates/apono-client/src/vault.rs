//! Secrets in an Apono Vault (`apono-vault` integration) through the user's own access session:
//! find the session, take its one-time OpenBao token (which OpenBao itself ends at the
//! session's expiry), cache it, run a kv-v2 operation.

use std::path::PathBuf;

use apono_core::{GrantStatus, SecretValue};
use apono_vault_client::integration::TOKEN;
use apono_vault_client::{ClientSettings, OpenBaoClient, VaultError};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::client::Client;
use crate::error::ClientError;
use crate::files::KeyCache;
use crate::model::{AccessSession, Credentials};

/// The integration type this module speaks to.
pub const VAULT_INTEGRATION_TYPE: &str = "apono-vault";
/// The name of a vault session's one-time credential, its OpenBao token.
pub const VAULT_TOKEN: &str = TOKEN;

/// Where and how to reach an Apono Vault, besides what the access session says.
#[derive(Clone, Debug, Default)]
pub struct VaultOptions {
    /// The session to use (default: the best active one, see [`VaultAccess::open`]).
    pub session_id: Option<String>,
    /// A PEM bundle to trust for the vault's TLS certificate (default: the web roots).
    pub ca_cert_pem: Option<String>,
}

/// A secret as `apono vault fetch` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct VaultSecret {
    /// The path inside the mount.
    pub path: String,
    /// The version read.
    pub version: u64,
    /// The key/value pairs (secret: print, never log).
    #[serde(serialize_with = "expose_values")]
    pub data: SecretValue,
}

fn expose_values<S: serde::Serializer>(data: &SecretValue, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(data.len()))?;
    for (k, v) in data.iter() {
        map.serialize_entry(k, v.expose_secret())?;
    }
    map.end()
}

/// What a write did (`apono vault create`/`update`/`delete -o json`).
#[derive(Clone, Debug, Serialize)]
pub struct VaultWrite {
    /// The path inside the mount.
    pub path: String,
    /// The version written (absent for a delete).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Whether the secret was deleted with all its versions.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

/// Preference of a session for general vault work: the broadest permission first.
fn rank(session: &AccessSession) -> u8 {
    match (session.resource_type.as_str(), session.permission.as_str()) {
        ("management", "Admin") => 0,
        ("management", "ReadWrite") => 1,
        ("management", _) => 2,
        _ => 3,
    }
}

/// A logged-in view of one Apono Vault through one access session.
#[derive(Debug)]
pub struct VaultAccess {
    session: AccessSession,
    mount: String,
    openbao: OpenBaoClient,
}

impl VaultAccess {
    /// Finds the caller's active session on `integration` (an `apono-vault` integration, by
    /// name or `type/name`) and logs in.
    ///
    /// With several active sessions the broadest is used (`management` `Admin`, then
    /// `ReadWrite`, `ReadOnly`, then `secret` sessions; the latest expiry first), unless
    /// [`VaultOptions::session_id`] names one. The OpenBao token is cached in `cache` (`0600`,
    /// until the session's expiry) under the session id. A cached token that OpenBao no longer
    /// accepts is dropped; then the session's one-time token is fetched from the connector,
    /// which works only if it was not shown yet ([`ClientError::CredentialsShown`] otherwise).
    pub async fn open(
        client: &Client,
        cache: &KeyCache,
        integration: &str,
        options: &VaultOptions,
    ) -> Result<Self, ClientError> {
        let integration = client.find_integration(integration).await?;
        if integration.integration_type != VAULT_INTEGRATION_TYPE {
            return Err(ClientError::Usage(format!(
                "integration {} is of type {}, not {VAULT_INTEGRATION_TYPE}",
                integration.name, integration.integration_type
            )));
        }
        let all = client.sessions(false).await?;
        let mut mine: Vec<AccessSession> = all
            .into_iter()
            .filter(|s| s.integration == integration.name)
            .collect();
        // Tokens of sessions that ended are useless; drop them.
        for s in mine.iter().filter(|s| !s.status.may_hold_access()) {
            let _ = cache.remove(&s.id);
        }
        let session = match &options.session_id {
            Some(id) => {
                mine.into_iter()
                    .find(|s| &s.id == id)
                    .ok_or_else(|| ClientError::NotFound {
                        message: format!(
                            "session {id} of integration {} not found",
                            integration.name
                        ),
                    })?
            }
            None => {
                let ended = !mine.is_empty();
                mine.retain(|s| s.status == GrantStatus::Active);
                mine.sort_by(|a, b| {
                    rank(a)
                        .cmp(&rank(b))
                        .then_with(|| b.expires_at.cmp(&a.expires_at))
                });
                mine.into_iter()
                    .next()
                    .ok_or_else(|| ClientError::NoActiveSession {
                        integration: integration.name.clone(),
                        ended,
                    })?
            }
        };
        if session.status != GrantStatus::Active {
            let _ = cache.remove(&session.id);
            return Err(ClientError::Conflict {
                message: format!("session {} is {}, not Active", session.id, session.status),
            });
        }
        Self::login(client, cache, session, options).await
    }

    async fn login(
        client: &Client,
        cache: &KeyCache,
        session: AccessSession,
        options: &VaultOptions,
    ) -> Result<Self, ClientError> {
        let id = session.id.clone();
        let details = client.access_details(&id).await?;
        let text = |key: &str| details.json.get(key).and_then(|v| v.as_str());
        let malformed = |what: &str| ClientError::Malformed {
            url: client.url(),
            what: format!("the access details of session {id} lack {what}"),
        };
        let address = text("vault_address").ok_or_else(|| malformed("vault_address"))?;
        let mount = text("mount_name")
            .ok_or_else(|| malformed("mount_name"))?
            .to_owned();
        let mut settings = ClientSettings::new(address);
        if let Some(pem) = &options.ca_cert_pem {
            settings = settings.ca_cert_pem(pem.clone());
        }
        let connection = settings.connect()?;

        // A token shown now is the newest credential (a reset or an extension revokes older
        // ones): keep it before using it, so that a failure (OpenBao down) loses nothing.
        let shown = match &details.credentials {
            Credentials::Shown(map) => map.get(TOKEN).cloned(),
            _ => None,
        };
        let token = match shown {
            Some(token) => {
                remember_vault_token(cache, &session, &token)?;
                Some(token)
            }
            None => read_cached(cache, &id),
        };
        let openbao = match token {
            Some(token) => {
                let openbao = connection.client_with_token(token);
                match openbao.lookup_self().await {
                    Ok(_) => Some(openbao),
                    Err(e) if e.is_permission_denied() => {
                        tracing::debug!(session = %id, "vault token rejected");
                        None
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            None => None,
        };
        match openbao {
            Some(openbao) => Ok(Self {
                session,
                mount,
                openbao,
            }),
            None => {
                let _ = cache.remove(&id);
                Err(ClientError::CredentialsShown { session_id: id })
            }
        }
    }

    /// The session in use.
    pub fn session(&self) -> &AccessSession {
        &self.session
    }

    /// The kv-v2 mount.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// `path` relative to the mount: a leading `<mount>/` is dropped, as are `/` at either end.
    pub fn relative<'a>(&self, path: &'a str) -> &'a str {
        let path = path.trim_matches('/');
        match path.strip_prefix(self.mount.as_str()) {
            Some("") => "",
            Some(rest) if rest.starts_with('/') => &rest[1..],
            _ => path,
        }
    }

    fn denied(&self, operation: &'static str, path: &str) -> ClientError {
        ClientError::VaultDenied {
            operation,
            path: path.to_owned(),
            access: format!(
                "{} on {} {}",
                self.session.permission, self.session.resource_type, self.session.resource_id
            ),
        }
    }

    fn map(&self, operation: &'static str, path: &str, e: VaultError) -> ClientError {
        if e.is_permission_denied() {
            self.denied(operation, path)
        } else if e.is_not_found() {
            ClientError::SecretNotFound {
                path: path.to_owned(),
            }
        } else {
            e.into()
        }
    }

    /// Every secret path under `folder` (`""`: the whole mount), recursively, sorted; paths
    /// are relative to the mount.
    pub async fn list(&self, folder: &str) -> Result<Vec<String>, ClientError> {
        let folder = self.relative(folder);
        self.openbao
            .kv_list_recursive(&self.mount, folder)
            .await
            .map_err(|e| self.map("list", folder, e))
    }

    /// The latest version of a secret.
    pub async fn fetch(&self, path: &str) -> Result<VaultSecret, ClientError> {
        let path = self.relative(path);
        let secret = self
            .openbao
            .kv_read(&self.mount, path, None)
            .await
            .map_err(|e| self.map("fetch", path, e))?;
        Ok(VaultSecret {
            path: path.to_owned(),
            version: secret.version,
            data: secret.data,
        })
    }

    /// Creates a secret that does not exist yet (check-and-set 0):
    /// [`ClientError::SecretExists`] if it does.
    pub async fn create(&self, path: &str, data: &SecretValue) -> Result<VaultWrite, ClientError> {
        let path = self.relative(path);
        let version = self
            .openbao
            .kv_write(&self.mount, path, data, Some(0))
            .await
            .map_err(|e| match e {
                VaultError::CasMismatch { .. } => ClientError::SecretExists {
                    path: path.to_owned(),
                },
                e => self.map("create", path, e),
            })?;
        Ok(VaultWrite {
            path: path.to_owned(),
            version: Some(version),
            deleted: false,
        })
    }

    /// Writes a new version of an existing secret, checked against its current version:
    /// [`ClientError::SecretNotFound`] if it does not exist, [`ClientError::Conflict`] if it
    /// changed meanwhile.
    pub async fn update(&self, path: &str, data: &SecretValue) -> Result<VaultWrite, ClientError> {
        let path = self.relative(path);
        let meta = self
            .openbao
            .kv_versions(&self.mount, path)
            .await
            .map_err(|e| self.map("update", path, e))?;
        let version = self
            .openbao
            .kv_write(&self.mount, path, data, Some(meta.current_version))
            .await
            .map_err(|e| match e {
                VaultError::CasMismatch { .. } => ClientError::Conflict {
                    message: format!("secret {path} changed while it was being updated"),
                },
                e => self.map("update", path, e),
            })?;
        Ok(VaultWrite {
            path: path.to_owned(),
            version: Some(version),
            deleted: false,
        })
    }

    /// Deletes a secret's metadata and every version; [`ClientError::SecretNotFound`] if
    /// there is no such secret.
    pub async fn delete(&self, path: &str) -> Result<VaultWrite, ClientError> {
        let path = self.relative(path);
        match self.openbao.kv_versions(&self.mount, path).await {
            Ok(_) => {}
            // Without read rights, the delete itself says whether it is allowed.
            Err(e) if e.is_permission_denied() => {}
            Err(e) => return Err(self.map("delete", path, e)),
        }
        self.openbao
            .kv_delete_all(&self.mount, path)
            .await
            .map_err(|e| self.map("delete", path, e))?;
        Ok(VaultWrite {
            path: path.to_owned(),
            version: None,
            deleted: true,
        })
    }
}

/// The cached OpenBao token of a session (`token:<value>`, so the format can grow).
fn read_cached(cache: &KeyCache, session_id: &str) -> Option<SecretString> {
    let path: PathBuf = cache.find(session_id)?;
    let text = std::fs::read_to_string(path).ok()?;
    text.trim_end_matches('\n')
        .strip_prefix("token:")
        .map(|t| SecretString::from(t.to_owned()))
}

/// Keeps `token`, the one-time OpenBao token of the vault `session`, in `cache` (`0600`, until
/// the session's expiry), where [`VaultAccess::open`] finds it. For callers that show the
/// session's access details themselves (`apono access use`): a token shown once there still
/// serves `apono vault` on this machine.
pub fn remember_vault_token(
    cache: &KeyCache,
    session: &AccessSession,
    token: &SecretString,
) -> Result<(), ClientError> {
    let text = format!("token:{}", token.expose_secret());
    cache
        .store(&session.id, &SecretString::from(text), session.expires_at)
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_round_trips_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = KeyCache::new(dir.path().join("vault"));
        let session = AccessSession {
            id: "g-1".into(),
            request_id: "r-1".into(),
            status: GrantStatus::Active,
            integration: String::new(),
            resource_type: String::new(),
            resource_id: String::new(),
            permission: String::new(),
            grantee: String::new(),
            account_name: String::new(),
            duration_seconds: 0,
            expires_at: None,
            activated_at: None,
            revoked_at: None,
            credential_status: None,
            last_error: None,
        };
        remember_vault_token(&cache, &session, &SecretString::from("s.tok")).expect("store");
        assert!(read_cached(&cache, "g-1").is_some_and(|t| t.expose_secret() == "s.tok"));
        remember_vault_token(&cache, &session, &SecretString::from("s.newer")).expect("store");
        assert!(read_cached(&cache, "g-1").is_some_and(|t| t.expose_secret() == "s.newer"));
        assert!(read_cached(&cache, "g-2").is_none());
    }

    #[test]
    fn secrets_serialise_their_values() {
        let secret = VaultSecret {
            path: "team/db".into(),
            version: 2,
            data: SecretValue::new().with("password", "s3cret"),
        };
        assert_eq!(
            serde_json::to_value(&secret).expect("json"),
            serde_json::json!({"path": "team/db", "version": 2, "data": {"password": "s3cret"}})
        );
    }
}
