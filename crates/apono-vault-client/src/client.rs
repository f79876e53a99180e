//! The OpenBao client: settings, login, kv-v2, ACL policies, userpass users and tokens.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use apono_core::SecretValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::{debug, instrument};
use vaultrs::api::AuthInfo;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettings, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::error::{VaultError, described, quote};

/// Default timeout of one HTTP request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where an OpenBao server is and how to trust it.
///
/// Everything is explicit: unlike vaultrs' defaults, nothing is read from `VAULT_*`/`BAO_*`
/// environment variables or files. TLS is always verified; with [`ClientSettings::ca_cert_pem`]
/// set, that bundle is the only trusted root, otherwise the platform's web roots are.
#[derive(Clone)]
pub struct ClientSettings {
    address: String,
    ca_cert_pem: Option<String>,
    timeout: Duration,
}

impl ClientSettings {
    /// Settings for the server at `address` (`https://bao.example:8200`; `http://` only for
    /// loopback and tests).
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into().trim_end_matches('/').to_owned(),
            ca_cert_pem: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Trusts exactly the CA certificates of this PEM bundle.
    pub fn ca_cert_pem(mut self, pem: impl Into<String>) -> Self {
        self.ca_cert_pem = Some(pem.into());
        self
    }

    /// Sets the timeout of each HTTP request (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The server's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Builds the connection: checks the address and the CA bundle and prepares the HTTP
    /// client (which every [`OpenBaoClient`] made from it shares).
    pub fn connect(&self) -> Result<OpenBaoConnection, VaultError> {
        let config = |reason: &str, source| VaultError::Config {
            reason: reason.to_owned(),
            source,
        };
        let (scheme, _) = self
            .address
            .split_once("://")
            .ok_or_else(|| config("the address must start with https:// or http://", None))?;
        let mut http = reqwest::Client::builder()
            .tls_backend_rustls()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout);
        match scheme {
            "http" => {
                // No TLS at all: load no trust roots.
                http = http.tls_certs_only(Vec::new());
            }
            "https" => {
                if let Some(pem) = &self.ca_cert_pem {
                    let certs =
                        reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| {
                            config(
                                "the CA certificate is not a valid PEM bundle",
                                described(apono_core::error_chain(&e)),
                            )
                        })?;
                    if certs.is_empty() {
                        return Err(config(
                            "the CA certificate bundle holds no certificate",
                            None,
                        ));
                    }
                    http = http.tls_certs_only(certs);
                }
            }
            _ => {
                return Err(config(
                    "the address must start with https:// or http://",
                    None,
                ));
            }
        }
        let http = http.build().map_err(|e| {
            config(
                "the HTTP client could not be built",
                described(apono_core::error_chain(&e)),
            )
        })?;
        // The token goes into each client's copy; these settings hold none.
        let settings = VaultClientSettingsBuilder::default()
            .address(&self.address)
            .token("")
            .ca_certs(Vec::new())
            .identity(None)
            .verify(true)
            .timeout(Some(self.timeout))
            .namespace(None)
            .build()
            .map_err(|_| config("the address is not a valid URL", None))?;
        Ok(OpenBaoConnection {
            address: self.address.clone(),
            settings,
            http,
        })
    }
}

impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSettings")
            .field("address", &self.address)
            .field("ca_cert_pem", &self.ca_cert_pem.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A checked address plus a TLS-configured HTTP client; cheap to clone. Make a client per
/// identity with [`OpenBaoConnection::client`].
#[derive(Clone)]
pub struct OpenBaoConnection {
    address: String,
    settings: VaultClientSettings,
    http: reqwest::Client,
}

impl fmt::Debug for OpenBaoConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBaoConnection")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl OpenBaoConnection {
    /// The server's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// A client without a token: log in with [`OpenBaoClient::login_approle`] or
    /// [`OpenBaoClient::login_userpass`], or set one with [`OpenBaoClient::set_token`].
    pub fn client(&self) -> OpenBaoClient {
        OpenBaoClient {
            connection: self.clone(),
            vault: self.vault_client(""),
            token: None,
        }
    }

    /// A client using `token`.
    pub fn client_with_token(&self, token: SecretString) -> OpenBaoClient {
        let mut client = self.client();
        client.set_token(token);
        client
    }

    fn vault_client(&self, token: &str) -> VaultClient {
        let mut settings = self.settings.clone();
        settings.token = token.to_owned();
        let middle = vaultrs::api::EndpointMiddleware {
            token: token.to_owned(),
            version: format!("v{}", settings.version),
            wrap: None,
            namespace: None,
        };
        VaultClient {
            http: rustify::clients::reqwest::Client::new(&self.address, self.http.clone()),
            middle,
            settings,
        }
    }
}

/// The token a login returned, and what OpenBao said about it.
pub struct LoginToken {
    /// The token.
    pub token: SecretString,
    /// Its accessor (not a secret: it can look up and revoke the token, not use it).
    pub accessor: String,
    /// Its policies.
    pub policies: Vec<String>,
    /// Its lease duration.
    pub ttl: Duration,
    /// Whether it can be renewed.
    pub renewable: bool,
}

impl fmt::Debug for LoginToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginToken")
            .field("token", &"[redacted]")
            .field("accessor", &self.accessor)
            .field("policies", &self.policies)
            .field("ttl", &self.ttl)
            .field("renewable", &self.renewable)
            .finish()
    }
}

impl LoginToken {
    fn from_auth(auth: AuthInfo) -> Self {
        Self {
            token: SecretString::from(auth.client_token),
            accessor: auth.accessor,
            policies: auth.policies,
            ttl: Duration::from_secs(auth.lease_duration),
            renewable: auth.renewable,
        }
    }
}

/// What OpenBao says about a token (never the token itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// The token's accessor.
    pub accessor: String,
    /// The login path that created it, such as `auth/userpass/login/alice`.
    pub path: String,
    /// Its display name, such as `userpass-alice`.
    pub display_name: String,
    /// Its policies.
    pub policies: Vec<String>,
    /// Seconds left.
    pub ttl: u64,
    /// Its explicit maximum TTL in seconds (0 for none).
    pub explicit_max_ttl: u64,
    /// When it expires (RFC 3339), if it does.
    pub expire_time: Option<String>,
    /// Its metadata (for a userpass login, `username`).
    pub meta: BTreeMap<String, String>,
}

impl TokenInfo {
    fn from_lookup(lookup: vaultrs::api::token::responses::LookupTokenResponse) -> Self {
        Self {
            accessor: lookup.accessor,
            path: lookup.path,
            display_name: lookup.display_name,
            policies: lookup.policies,
            ttl: lookup.ttl,
            explicit_max_ttl: lookup.explicit_max_ttl,
            expire_time: lookup.expire_time,
            meta: lookup.meta.unwrap_or_default().into_iter().collect(),
        }
    }
}

/// A kv-v2 secret as read: its data and which version it is.
#[derive(Clone, Debug)]
pub struct KvSecret {
    /// The key/value data; values are secrets (`Debug` shows the keys only).
    pub data: SecretValue,
    /// The version read.
    pub version: u64,
}

/// One version in a kv-v2 secret's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvVersion {
    /// The version number.
    pub version: u64,
    /// When it was written (RFC 3339).
    pub created_time: String,
    /// When it was (soft-)deleted, if it was.
    pub deletion_time: Option<String>,
    /// Whether its data was destroyed.
    pub destroyed: bool,
}

/// A kv-v2 secret's metadata: its versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvMetadata {
    /// The current version.
    pub current_version: u64,
    /// Every version still recorded, oldest first.
    pub versions: Vec<KvVersion>,
}

/// Settings of a userpass user.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserpassUser {
    /// Policies attached to the user's tokens.
    pub token_policies: Vec<String>,
    /// TTL of the user's tokens.
    pub token_ttl: Option<Duration>,
    /// Maximum TTL of the user's tokens (renewals stop there).
    pub token_max_ttl: Option<Duration>,
    /// Explicit maximum TTL: a hard cap that no mount or system setting raises.
    pub token_explicit_max_ttl: Option<Duration>,
}

#[derive(Deserialize)]
struct UserResponse {
    #[serde(default)]
    token_policies: Vec<String>,
    #[serde(default)]
    token_ttl: u64,
    #[serde(default)]
    token_max_ttl: u64,
    #[serde(default)]
    token_explicit_max_ttl: u64,
}

/// An identity entity, as far as the integration needs it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Entity {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its aliases (one per auth mount it logs in through).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub aliases: Vec<EntityAlias>,
}

/// One alias of an identity entity.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct EntityAlias {
    /// The login name on that mount.
    pub name: String,
    /// The accessor of the auth mount.
    pub mount_accessor: String,
    /// Its custom metadata (which templated policies can read).
    #[serde(default, deserialize_with = "null_as_empty_map")]
    pub custom_metadata: BTreeMap<String, String>,
}

fn null_as_empty_map<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<BTreeMap<String, String>>::deserialize(deserializer)?.unwrap_or_default())
}

fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// Longest kv path (and list recursion) the client accepts.
const MAX_PATH_LEN: usize = 512;
/// Deepest folder nesting [`OpenBaoClient::kv_list_recursive`] follows.
const MAX_LIST_DEPTH: usize = 32;

/// A client of one OpenBao server, holding at most one token.
///
/// Every method is one or a few HTTP requests; none retries. Errors never contain the token,
/// passwords or secret data. Paths and names are checked against strict grammars before they
/// are sent ([`check_kv_path`], [`check_mount`], [`check_name`]).
pub struct OpenBaoClient {
    connection: OpenBaoConnection,
    vault: VaultClient,
    token: Option<SecretString>,
}

impl fmt::Debug for OpenBaoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenBaoClient")
            .field("address", &self.connection.address)
            .field("has_token", &self.token.is_some())
            .finish()
    }
}

impl OpenBaoClient {
    /// The server's address.
    pub fn address(&self) -> &str {
        &self.connection.address
    }

    /// Uses `token` for the following requests.
    pub fn set_token(&mut self, token: SecretString) {
        self.vault.set_token(token.expose_secret());
        self.token = Some(token);
    }

    /// The current token, if any.
    pub fn token(&self) -> Option<&SecretString> {
        self.token.as_ref()
    }

    fn require_token(&self, operation: &'static str) -> Result<(), VaultError> {
        match &self.token {
            Some(_) => Ok(()),
            None => Err(VaultError::NoToken { operation }),
        }
    }

    fn classify(
        &self,
        operation: &'static str,
        path: Option<&str>,
        error: ClientError,
    ) -> VaultError {
        classify(&self.connection.address, operation, path, error)
    }

    // ------------------------------------------------------------------ login and tokens

    /// Logs in with AppRole at `auth/<mount>` and uses the token from now on.
    #[instrument(skip_all, fields(address = %self.connection.address, mount = ?mount))]
    pub async fn login_approle(
        &mut self,
        mount: &str,
        role_id: &SecretString,
        secret_id: &SecretString,
    ) -> Result<LoginToken, VaultError> {
        const OP: &str = "AppRole login";
        check_mount(mount)?;
        let auth = vaultrs::auth::approle::login(
            &self.vault,
            mount,
            role_id.expose_secret(),
            secret_id.expose_secret(),
        )
        .await
        .map_err(|e| login_error(self.classify(OP, None, e)))?;
        let login = LoginToken::from_auth(auth);
        self.set_token(login.token.clone());
        debug!(accessor = %login.accessor, ttl = login.ttl.as_secs(), "logged in with AppRole");
        Ok(login)
    }

    /// Logs in as a userpass user at `auth/<mount>` and uses the token from now on.
    #[instrument(skip_all, fields(address = %self.connection.address, mount = ?mount, username = ?username))]
    pub async fn login_userpass(
        &mut self,
        mount: &str,
        username: &str,
        password: &SecretString,
    ) -> Result<LoginToken, VaultError> {
        const OP: &str = "userpass login";
        check_mount(mount)?;
        check_name("username", username)?;
        let auth =
            vaultrs::auth::userpass::login(&self.vault, mount, username, password.expose_secret())
                .await
                .map_err(|e| login_error(self.classify(OP, None, e)))?;
        let login = LoginToken::from_auth(auth);
        self.set_token(login.token.clone());
        Ok(login)
    }

    /// Renews the client's own token (`increment` asks for a new TTL; OpenBao caps it at the
    /// token's maximum).
    #[instrument(skip_all, fields(address = %self.connection.address))]
    pub async fn renew_self(&self, increment: Option<Duration>) -> Result<LoginToken, VaultError> {
        const OP: &str = "token renewal";
        self.require_token(OP)?;
        let increment = increment.map(|d| format!("{}s", d.as_secs()));
        let auth = vaultrs::token::renew_self(&self.vault, increment.as_deref())
            .await
            .map_err(|e| self.classify(OP, None, e))?;
        Ok(LoginToken::from_auth(auth))
    }

    /// Looks up the client's own token.
    #[instrument(skip_all, fields(address = %self.connection.address))]
    pub async fn lookup_self(&self) -> Result<TokenInfo, VaultError> {
        const OP: &str = "token lookup";
        self.require_token(OP)?;
        vaultrs::token::lookup_self(&self.vault)
            .await
            .map(TokenInfo::from_lookup)
            .map_err(|e| self.classify(OP, None, e))
    }

    /// Looks up another token.
    #[instrument(skip_all, fields(address = %self.connection.address))]
    pub async fn lookup_token(&self, token: &SecretString) -> Result<TokenInfo, VaultError> {
        const OP: &str = "token lookup";
        self.require_token(OP)?;
        vaultrs::token::lookup(&self.vault, token.expose_secret())
            .await
            .map(TokenInfo::from_lookup)
            .map_err(|e| self.classify(OP, None, e))
    }

    /// Looks up a token by its accessor.
    #[instrument(skip_all, fields(address = %self.connection.address))]
    pub async fn lookup_accessor(&self, accessor: &str) -> Result<TokenInfo, VaultError> {
        const OP: &str = "token accessor lookup";
        self.require_token(OP)?;
        vaultrs::token::lookup_accessor(&self.vault, accessor)
            .await
            .map(TokenInfo::from_lookup)
            .map_err(|e| self.classify(OP, None, e))
    }

    /// Lists the accessors of every token (`LIST auth/token/accessors`; needs `sudo`).
    #[instrument(skip_all, fields(address = %self.connection.address))]
    pub async fn list_accessors(&self) -> Result<Vec<String>, VaultError> {
        self.list_keys("token accessor listing", "auth/token/accessors")
            .await
    }

    /// The client's own capabilities on each of `paths`, as OpenBao's ACL judges them
    /// (`sys/capabilities-self`, which the `default` policy allows); `["deny"]` for none. The
    /// paths are taken literally, not fetched.
    #[instrument(skip_all, fields(address = %self.connection.address))]
    pub async fn capabilities_self(
        &self,
        paths: &[&str],
    ) -> Result<BTreeMap<String, Vec<String>>, VaultError> {
        const OP: &str = "capabilities lookup";
        let body = self
            .raw(
                OP,
                Some(reqwest::Method::POST),
                "sys/capabilities-self",
                Some(serde_json::json!({ "paths": paths })),
            )
            .await?
            .ok_or(VaultError::Malformed { operation: OP })?;
        let data = body.get("data").unwrap_or(&body);
        paths
            .iter()
            .map(|path| {
                let caps = data
                    .get(*path)
                    .and_then(serde_json::Value::as_array)
                    .ok_or(VaultError::Malformed { operation: OP })?;
                Ok((
                    (*path).to_owned(),
                    caps.iter()
                        .filter_map(|c| c.as_str().map(str::to_owned))
                        .collect(),
                ))
            })
            .collect()
    }

    /// Revokes a token and its children.
    #[instrument(skip_all, fields(address = %self.connection.address))]
    pub async fn revoke_token(&self, token: &SecretString) -> Result<(), VaultError> {
        const OP: &str = "token revocation";
        self.require_token(OP)?;
        vaultrs::token::revoke(&self.vault, token.expose_secret())
            .await
            .map_err(|e| self.classify(OP, None, e))
    }

    /// Revokes the token with this accessor (and its children).
    #[instrument(skip_all, fields(address = %self.connection.address, accessor = ?accessor))]
    pub async fn revoke_accessor(&self, accessor: &str) -> Result<(), VaultError> {
        const OP: &str = "token revocation by accessor";
        self.require_token(OP)?;
        vaultrs::token::revoke_accessor(&self.vault, accessor)
            .await
            .map_err(|e| self.classify(OP, None, e))
    }

    /// Revokes the client's own token and forgets it.
    #[instrument(skip_all, fields(address = %self.connection.address))]
    pub async fn revoke_self(&mut self) -> Result<(), VaultError> {
        const OP: &str = "token self-revocation";
        self.require_token(OP)?;
        vaultrs::token::revoke_self(&self.vault)
            .await
            .map_err(|e| self.classify(OP, None, e))?;
        self.token = None;
        self.vault.set_token("");
        Ok(())
    }

    /// Revokes every token obtained by logging in as `username` at `auth/<mount>`, now and
    /// synchronously: `PUT sys/leases/revoke-prefix/auth/<mount>/login/<username>` (needs
    /// `update` and `sudo` on that path). OpenBao completes a prefix without a trailing `/` to
    /// `<username>/`, so tokens of other users, including ones whose names start with
    /// `username`, are untouched.
    #[instrument(skip_all, fields(address = %self.connection.address, mount = ?mount, username = ?username))]
    pub async fn revoke_userpass_logins(
        &self,
        mount: &str,
        username: &str,
    ) -> Result<(), VaultError> {
        const OP: &str = "revocation of a user's tokens";
        check_mount(mount)?;
        check_name("username", username)?;
        let path = format!("sys/leases/revoke-prefix/auth/{mount}/login/{username}");
        self.raw(
            OP,
            Some(reqwest::Method::PUT),
            &path,
            Some(serde_json::json!({"sync": true})),
        )
        .await
        .map(|_| ())
    }

    // ------------------------------------------------------------------ kv-v2

    /// Reads the latest version of a kv-v2 secret (`version` = `None`) or a given version.
    #[instrument(skip_all, fields(address = %self.connection.address, mount = ?mount, path = ?path))]
    pub async fn kv_read(
        &self,
        mount: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<KvSecret, VaultError> {
        const OP: &str = "kv read";
        self.require_token(OP)?;
        check_mount(mount)?;
        check_kv_path(path)?;
        let endpoint = vaultrs::api::kv2::requests::ReadSecretRequest::builder()
            .mount(mount)
            .path(path)
            .version(version)
            .build()
            .map_err(|_| VaultError::Malformed { operation: OP })?;
        let response = vaultrs::api::exec_with_result(&self.vault, endpoint)
            .await
            .map_err(|e| self.classify(OP, Some(path), e))?;
        let serde_json::Value::Object(map) = response.data else {
            return Err(VaultError::NotFound {
                operation: OP,
                path: Some(path.to_owned()),
            });
        };
        let mut data = SecretValue::new();
        for (key, value) in map {
            let text = match value {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            data.insert(key, text);
        }
        Ok(KvSecret {
            data,
            version: response.metadata.version,
        })
    }

    /// Writes a new version of a kv-v2 secret. With `cas = Some(v)` the write succeeds only if
    /// the current version is `v` (`Some(0)`: only if the secret does not exist yet), else it
    /// fails with [`VaultError::CasMismatch`]. Returns the new version.
    #[instrument(skip_all, fields(address = %self.connection.address, mount = ?mount, path = ?path, cas = ?cas))]
    pub async fn kv_write(
        &self,
        mount: &str,
        path: &str,
        data: &SecretValue,
        cas: Option<u64>,
    ) -> Result<u64, VaultError> {
        const OP: &str = "kv write";
        self.require_token(OP)?;
        check_mount(mount)?;
        check_kv_path(path)?;
        let map: serde_json::Map<String, serde_json::Value> = data
            .iter()
            .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v.expose_secret())))
            .collect();
        let result = match cas {
            None => vaultrs::kv2::set(&self.vault, mount, path, &map).await,
            Some(cas) => {
                let cas = u32::try_from(cas).map_err(|_| VaultError::InvalidName {
                    what: "check-and-set version",
                    shown: cas.to_string(),
                    reason: "is larger than OpenBao accepts",
                })?;
                vaultrs::kv2::set_with_options(
                    &self.vault,
                    mount,
                    path,
                    &map,
                    vaultrs::api::kv2::requests::SetSecretRequestOptions { cas },
                )
                .await
            }
        };
        result
            .map(|meta| meta.version)
            .map_err(|e| self.classify(OP, Some(path), e))
    }

    /// Lists the keys directly under `folder` (`""` for the mount's root); sub-folders end with
    /// `/`. An empty or missing folder gives an empty list.
    #[instrument(skip_all, fields(address = %self.connection.address, mount = ?mount, folder = ?folder))]
    pub async fn kv_list(&self, mount: &str, folder: &str) -> Result<Vec<String>, VaultError> {
        const OP: &str = "kv list";
        self.require_token(OP)?;
        check_mount(mount)?;
        let folder = folder.trim_end_matches('/');
        if !folder.is_empty() {
            check_kv_path(folder)?;
        }
        match vaultrs::kv2::list(&self.vault, mount, folder).await {
            Ok(keys) => Ok(keys),
            Err(e) => match self.classify(OP, Some(folder), e) {
                e if e.is_not_found() => Ok(Vec::new()),
                e => Err(e),
            },
        }
    }

    /// Lists every secret path under `folder`, recursively, sorted.
    #[instrument(skip_all, fields(address = %self.connection.address, mount = ?mount, folder = ?folder))]
    pub async fn kv_list_recursive(
        &self,
        mount: &str,
        folder: &str,
    ) -> Result<Vec<String>, VaultError> {
        let mut found = Vec::new();
        let mut pending = vec![(folder.trim_end_matches('/').to_owned(), 0usize)];
        while let Some((folder, depth)) = pending.pop() {
            for key in self.kv_list(mount, &folder).await? {
                let full = if folder.is_empty() {
                    key.clone()
                } else {
                    format!("{folder}/{key}")
                };
                if let Some(sub) = full.strip_suffix('/') {
                    if depth < MAX_LIST_DEPTH && check_kv_path(sub).is_ok() {
                        pending.push((sub.to_owned(), depth + 1));
                    }
                } else if check_kv_path(&full).is_ok() {
                    found.push(full);
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Reads a kv-v2 secret's metadata: its versions.
    #[instrument(skip_all, fields(address = %self.connection.address, mount = ?mount, path = ?path))]
    pub async fn kv_versions(&self, mount: &str, path: &str) -> Result<KvMetadata, VaultError> {
        const OP: &str = "kv metadata read";
        self.require_token(OP)?;
        check_mount(mount)?;
        check_kv_path(path)?;
        let meta = vaultrs::kv2::read_metadata(&self.vault, mount, path)
            .await
            .map_err(|e| self.classify(OP, Some(path), e))?;
        let mut versions: Vec<KvVersion> = meta
            .versions
            .into_iter()
            .filter_map(|(number, v)| {
                Some(KvVersion {
                    version: number.parse().ok()?,
                    created_time: v.created_time,
                    deletion_time: Some(v.deletion_time).filter(|t| !t.is_empty()),
                    destroyed: v.destroyed,
                })
            })
            .collect();
        versions.sort_by_key(|v| v.version);
        Ok(KvMetadata {
            current_version: meta.current_version,
            versions,
        })
    }

    /// Deletes a kv-v2 secret entirely: its metadata and every version.
    #[instrument(skip_all, fields(address = %self.connection.address, mount = ?mount, path = ?path))]
    pub async fn kv_delete_all(&self, mount: &str, path: &str) -> Result<(), VaultError> {
        const OP: &str = "kv delete";
        self.require_token(OP)?;
        check_mount(mount)?;
        check_kv_path(path)?;
        vaultrs::kv2::delete_metadata(&self.vault, mount, path)
            .await
            .map_err(|e| self.classify(OP, Some(path), e))
    }

    // ------------------------------------------------------------------ ACL policies

    /// Creates or replaces an ACL policy.
    #[instrument(skip_all, fields(address = %self.connection.address, name = ?name))]
    pub async fn policy_write(&self, name: &str, hcl: &str) -> Result<(), VaultError> {
        const OP: &str = "policy write";
        self.require_token(OP)?;
        check_name("policy name", name)?;
        vaultrs::sys::policy::set(&self.vault, name, hcl)
            .await
            .map_err(|e| self.classify(OP, Some(name), e))
    }

    /// Reads an ACL policy's rules; `None` if it does not exist.
    #[instrument(skip_all, fields(address = %self.connection.address, name = ?name))]
    pub async fn policy_read(&self, name: &str) -> Result<Option<String>, VaultError> {
        const OP: &str = "policy read";
        self.require_token(OP)?;
        check_name("policy name", name)?;
        match vaultrs::sys::policy::read(&self.vault, name).await {
            Ok(policy) => Ok(Some(policy.rules)),
            Err(e) => match self.classify(OP, Some(name), e) {
                e if e.is_not_found() => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Lists the ACL policies' names.
    #[instrument(skip_all, fields(address = %self.connection.address))]
    pub async fn policy_list(&self) -> Result<Vec<String>, VaultError> {
        const OP: &str = "policy list";
        self.require_token(OP)?;
        vaultrs::sys::policy::list(&self.vault)
            .await
            .map(|list| list.policies)
            .map_err(|e| self.classify(OP, None, e))
    }

    /// Deletes an ACL policy; deleting a policy that does not exist succeeds.
    #[instrument(skip_all, fields(address = %self.connection.address, name = ?name))]
    pub async fn policy_delete(&self, name: &str) -> Result<(), VaultError> {
        const OP: &str = "policy delete";
        self.require_token(OP)?;
        check_name("policy name", name)?;
        match vaultrs::sys::policy::delete(&self.vault, name).await {
            Ok(()) => Ok(()),
            Err(e) => match self.classify(OP, Some(name), e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    // ------------------------------------------------------------------ userpass

    /// Creates a userpass user, or replaces its password and settings if it exists.
    ///
    /// `token_policies` is sent as one comma-separated string and only the settings given are
    /// sent, so that an ACL's `allowed_parameters` (such as the connector's, which admits one of
    /// four policy names) can judge the request.
    #[instrument(skip_all, fields(address = %self.connection.address, mount = ?mount, username = ?username))]
    pub async fn userpass_write(
        &self,
        mount: &str,
        username: &str,
        password: &SecretString,
        user: &UserpassUser,
    ) -> Result<(), VaultError> {
        const OP: &str = "userpass user write";
        self.require_token(OP)?;
        check_mount(mount)?;
        check_name("username", username)?;
        let mut body = serde_json::Map::new();
        body.insert("password".into(), password.expose_secret().into());
        body.insert(
            "token_policies".into(),
            user.token_policies.join(",").into(),
        );
        for (key, ttl) in [
            ("token_ttl", user.token_ttl),
            ("token_max_ttl", user.token_max_ttl),
            ("token_explicit_max_ttl", user.token_explicit_max_ttl),
        ] {
            if let Some(ttl) = ttl {
                body.insert(key.into(), format!("{}s", ttl.as_secs()).into());
            }
        }
        let path = format!("auth/{mount}/users/{username}");
        self.raw(
            OP,
            Some(reqwest::Method::POST),
            &path,
            Some(serde_json::Value::Object(body)),
        )
        .await
        .map(|_| ())
    }

    /// Replaces a userpass user's password.
    #[instrument(skip_all, fields(address = %self.connection.address, mount = ?mount, username = ?username))]
    pub async fn userpass_set_password(
        &self,
        mount: &str,
        username: &str,
        password: &SecretString,
    ) -> Result<(), VaultError> {
        const OP: &str = "userpass password update";
        self.require_token(OP)?;
        check_mount(mount)?;
        check_name("username", username)?;
        vaultrs::auth::userpass::user::update_password(
            &self.vault,
            mount,
            username,
            password.expose_secret(),
        )
        .await
        .map_err(|e| self.classify(OP, Some(username), e))
    }

    /// Reads a userpass user's settings; `None` if there is no such user.
    #[instrument(skip_all, fields(address = %self.connection.address, mount = ?mount, username = ?username))]
    pub async fn userpass_read(
        &self,
        mount: &str,
        username: &str,
    ) -> Result<Option<UserpassUser>, VaultError> {
        const OP: &str = "userpass user read";
        check_mount(mount)?;
        check_name("username", username)?;
        let path = format!("auth/{mount}/users/{username}");
        let body = match self.raw(OP, Some(reqwest::Method::GET), &path, None).await {
            Ok(body) => body,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let data = body
            .and_then(|mut b| b.get_mut("data").map(serde_json::Value::take))
            .ok_or(VaultError::Malformed { operation: OP })?;
        let user: UserResponse =
            serde_json::from_value(data).map_err(|_| VaultError::Malformed { operation: OP })?;
        let dur = |s: u64| (s > 0).then(|| Duration::from_secs(s));
        Ok(Some(UserpassUser {
            token_policies: user.token_policies,
            token_ttl: dur(user.token_ttl),
            token_max_ttl: dur(user.token_max_ttl),
            token_explicit_max_ttl: dur(user.token_explicit_max_ttl),
        }))
    }

    /// Lists the userpass users' names.
    #[instrument(skip_all, fields(address = %self.connection.address, mount = ?mount))]
    pub async fn userpass_list(&self, mount: &str) -> Result<Vec<String>, VaultError> {
        const OP: &str = "userpass user list";
        self.require_token(OP)?;
        check_mount(mount)?;
        match vaultrs::auth::userpass::user::list(&self.vault, mount).await {
            Ok(list) => Ok(list.keys),
            Err(e) => match self.classify(OP, None, e) {
                e if e.is_not_found() => Ok(Vec::new()),
                e => Err(e),
            },
        }
    }

    /// Deletes a userpass user; deleting a user that does not exist succeeds. Tokens the user
    /// obtained stay valid: revoke them with [`OpenBaoClient::revoke_userpass_logins`].
    #[instrument(skip_all, fields(address = %self.connection.address, mount = ?mount, username = ?username))]
    pub async fn userpass_delete(&self, mount: &str, username: &str) -> Result<(), VaultError> {
        const OP: &str = "userpass user delete";
        self.require_token(OP)?;
        check_mount(mount)?;
        check_name("username", username)?;
        match vaultrs::auth::userpass::user::delete(&self.vault, mount, username).await {
            Ok(()) => Ok(()),
            Err(e) => match self.classify(OP, Some(username), e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    // ------------------------------------------------------------------ identity

    /// The accessor of the auth method mounted at `auth/<mount>` (`GET sys/auth`; needs `read`
    /// there).
    #[instrument(skip_all, fields(address = %self.connection.address, mount = ?mount))]
    pub async fn auth_mount_accessor(&self, mount: &str) -> Result<String, VaultError> {
        const OP: &str = "auth mount lookup";
        check_mount(mount)?;
        let body = self
            .raw(OP, Some(reqwest::Method::GET), "sys/auth", None)
            .await?;
        let key = format!("{mount}/");
        let mounts = body.as_ref().map(|b| b.get("data").unwrap_or(b));
        match mounts.and_then(|m| m.get(&key)) {
            Some(info) => info
                .get("accessor")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or(VaultError::Malformed { operation: OP }),
            None => Err(VaultError::NotFound {
                operation: OP,
                path: Some(format!("auth/{mount}")),
            }),
        }
    }

    /// Reads the identity entity named `name`; `None` if there is none.
    #[instrument(skip_all, fields(address = %self.connection.address, name = ?name))]
    pub async fn entity_read(&self, name: &str) -> Result<Option<Entity>, VaultError> {
        const OP: &str = "identity entity read";
        check_name("entity name", name)?;
        let path = format!("identity/entity/name/{name}");
        let body = match self.raw(OP, Some(reqwest::Method::GET), &path, None).await {
            Ok(Some(body)) => body,
            // OpenBao answers 204 or 404 for a name it does not know.
            Ok(None) => return Ok(None),
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        let data = body
            .get("data")
            .cloned()
            .ok_or(VaultError::Malformed { operation: OP })?;
        serde_json::from_value(data).map_err(|_| VaultError::Malformed { operation: OP })
    }

    /// Makes sure an identity entity named `name` exists with an alias `alias` on the auth
    /// mount whose accessor is `mount_accessor`, so that logging in as `alias` there lands on
    /// this entity (and deleting the entity by name removes what the logins created). Returns
    /// the entity's id. Idempotent.
    ///
    /// The alias names its entity (`canonical_id`): an administrator's tool. A token allowed
    /// that can attach a login it controls to any entity and so to its identity policies, which
    /// is why the `apono-vault` connector uses [`OpenBaoClient::alias_upsert`] instead.
    #[instrument(skip_all, fields(address = %self.connection.address, name = ?name))]
    pub async fn entity_ensure(
        &self,
        name: &str,
        alias: &str,
        mount_accessor: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<String, VaultError> {
        const OP: &str = "identity entity write";
        self.require_token(OP)?;
        check_name("alias name", alias)?;
        check_name("mount accessor", mount_accessor)?;
        let entity = match self.entity_read(name).await? {
            Some(entity) => entity,
            None => {
                let mut request =
                    vaultrs::api::identity::entity::requests::CreateEntityByNameRequest::builder();
                request.metadata(metadata.clone().into_iter().collect::<HashMap<_, _>>());
                vaultrs::identity::entity::create_or_update_by_name(
                    &self.vault,
                    name,
                    Some(&mut request),
                )
                .await
                .map_err(|e| self.classify(OP, Some(name), e))?;
                self.entity_read(name)
                    .await?
                    .ok_or(VaultError::Malformed { operation: OP })?
            }
        };
        let aliased = entity
            .aliases
            .iter()
            .any(|a| a.name == alias && a.mount_accessor == mount_accessor);
        if !aliased {
            self.raw(
                OP,
                Some(reqwest::Method::POST),
                "identity/entity-alias",
                Some(serde_json::json!({
                    "name": alias,
                    "canonical_id": entity.id,
                    "mount_accessor": mount_accessor,
                })),
            )
            .await?;
        }
        Ok(entity.id)
    }

    /// Creates the entity alias `name` on the auth mount whose accessor is `mount_accessor`
    /// with `custom_metadata`, or replaces the metadata of the alias that exists. No
    /// `canonical_id` is sent: OpenBao gives a new alias a new entity of its own. Returns the
    /// id of the alias's entity. Idempotent.
    #[instrument(skip_all, fields(address = %self.connection.address, name = ?name))]
    pub async fn alias_upsert(
        &self,
        name: &str,
        mount_accessor: &str,
        custom_metadata: &BTreeMap<String, String>,
    ) -> Result<String, VaultError> {
        const OP: &str = "identity entity alias write";
        check_name("alias name", name)?;
        check_name("mount accessor", mount_accessor)?;
        let body = self
            .raw(
                OP,
                Some(reqwest::Method::POST),
                "identity/entity-alias",
                Some(serde_json::json!({
                    "name": name,
                    "mount_accessor": mount_accessor,
                    "custom_metadata": custom_metadata,
                })),
            )
            .await?;
        match body.as_ref().and_then(|b| b.pointer("/data/canonical_id")) {
            Some(serde_json::Value::String(id)) => Ok(id.clone()),
            // An update of an existing alias may answer 204: look its entity up.
            _ => self
                .entity_by_alias(name, mount_accessor)
                .await?
                .map(|e| e.id)
                .ok_or(VaultError::Malformed { operation: OP }),
        }
    }

    /// The entity that the alias `alias` on the auth mount whose accessor is `mount_accessor`
    /// belongs to (`identity/lookup/entity`); `None` if there is no such alias.
    #[instrument(skip_all, fields(address = %self.connection.address, alias = ?alias))]
    pub async fn entity_by_alias(
        &self,
        alias: &str,
        mount_accessor: &str,
    ) -> Result<Option<Entity>, VaultError> {
        const OP: &str = "identity entity lookup";
        check_name("alias name", alias)?;
        check_name("mount accessor", mount_accessor)?;
        let body = match self
            .raw(
                OP,
                Some(reqwest::Method::POST),
                "identity/lookup/entity",
                Some(serde_json::json!({
                    "alias_name": alias,
                    "alias_mount_accessor": mount_accessor,
                })),
            )
            .await
        {
            Ok(Some(body)) => body,
            Ok(None) => return Ok(None),
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        match body.get("data") {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(data) => serde_json::from_value(data.clone())
                .map(Some)
                .map_err(|_| VaultError::Malformed { operation: OP }),
        }
    }

    /// Deletes the identity entity with id `id` and its aliases; deleting one that does not
    /// exist succeeds.
    #[instrument(skip_all, fields(address = %self.connection.address, id = ?id))]
    pub async fn entity_delete_by_id(&self, id: &str) -> Result<(), VaultError> {
        const OP: &str = "identity entity delete";
        check_entity_id(id)?;
        match self
            .raw(
                OP,
                Some(reqwest::Method::DELETE),
                &format!("identity/entity/id/{id}"),
                None,
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes the identity entity named `name` and its aliases; deleting one that does not
    /// exist succeeds.
    #[instrument(skip_all, fields(address = %self.connection.address, name = ?name))]
    pub async fn entity_delete(&self, name: &str) -> Result<(), VaultError> {
        const OP: &str = "identity entity delete";
        self.require_token(OP)?;
        check_name("entity name", name)?;
        match vaultrs::identity::entity::delete_by_name(&self.vault, name).await {
            Ok(()) => Ok(()),
            Err(e) => match self.classify(OP, Some(name), e) {
                e if e.is_not_found() => Ok(()),
                e => Err(e),
            },
        }
    }

    /// Lists the names of the identity entities.
    #[instrument(skip_all, fields(address = %self.connection.address))]
    pub async fn entity_list(&self) -> Result<Vec<String>, VaultError> {
        self.list_keys("identity entity list", "identity/entity/name")
            .await
    }

    // ------------------------------------------------------------------ raw requests

    /// `LIST path`: its keys; none when OpenBao has nothing there (404 or an empty answer).
    async fn list_keys(
        &self,
        operation: &'static str,
        path: &str,
    ) -> Result<Vec<String>, VaultError> {
        let list = reqwest::Method::from_bytes(b"LIST").ok();
        match self.raw(operation, list, path, None).await {
            Ok(None) => Ok(Vec::new()),
            Ok(body) => keys_of(operation, body),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// One request to an endpoint vaultrs does not cover. Returns the JSON body, if any.
    pub(crate) async fn raw(
        &self,
        operation: &'static str,
        method: Option<reqwest::Method>,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, VaultError> {
        self.require_token(operation)?;
        self.raw_unauthenticated(operation, method, path, body)
            .await
    }

    /// [`Self::raw`] without requiring a token (the client's token is still sent if it has
    /// one): for `sys/init`, `sys/unseal`, `sys/seal-status` and `sys/health`, which a sealed or
    /// uninitialised server answers without one.
    pub(crate) async fn raw_unauthenticated(
        &self,
        operation: &'static str,
        method: Option<reqwest::Method>,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, VaultError> {
        let method = method.ok_or(VaultError::Malformed { operation })?;
        let url = format!("{}/v1/{path}", self.connection.address);
        let mut request = self.connection.http.request(method, url);
        if let Some(token) = &self.token {
            request = request.header("X-Vault-Token", token.expose_secret());
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let address = &self.connection.address;
        let response = request
            .send()
            .await
            .map_err(|e| transport(address, operation, &e))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transport(address, operation, &e))?;
        if (200..300).contains(&status) {
            if bytes.is_empty() {
                return Ok(None);
            }
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|_| VaultError::Malformed { operation });
        }
        let cas = status == 400 && String::from_utf8_lossy(&bytes).contains("check-and-set");
        Err(by_status(address, operation, Some(path), status, cas))
    }
}

fn keys_of(
    operation: &'static str,
    body: Option<serde_json::Value>,
) -> Result<Vec<String>, VaultError> {
    let keys = body
        .as_ref()
        .and_then(|b| b.pointer("/data/keys"))
        .and_then(serde_json::Value::as_array)
        .ok_or(VaultError::Malformed { operation })?;
    Ok(keys
        .iter()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect())
}

fn transport(address: &str, operation: &'static str, e: &reqwest::Error) -> VaultError {
    if e.is_timeout() {
        return VaultError::Timeout { operation };
    }
    VaultError::Unavailable {
        address: address.to_owned(),
        operation,
        source: described(apono_core::error_chain(e)),
    }
}

/// A refused login is a permission error whatever the status (OpenBao answers 400 for a wrong
/// password or secret id).
fn login_error(e: VaultError) -> VaultError {
    match e {
        VaultError::Rejected { operation, .. } | VaultError::NotFound { operation, .. } => {
            VaultError::PermissionDenied {
                operation,
                path: None,
            }
        }
        other => other,
    }
}

/// Classifies a vaultrs error. It is never attached as it is: rustify's errors can carry the
/// response body, which for a read is the secret.
fn classify(
    address: &str,
    operation: &'static str,
    path: Option<&str>,
    error: ClientError,
) -> VaultError {
    match error {
        ClientError::APIError { code, errors } => {
            let cas = code == 400 && errors.iter().any(|e| e.contains("check-and-set"));
            by_status(address, operation, path, code, cas)
        }
        ClientError::RestClientError { source } => match source {
            rustify::errors::ClientError::ServerResponseError { code, content } => {
                let cas = code == 400
                    && content
                        .as_deref()
                        .is_some_and(|c| c.contains("check-and-set"));
                by_status(address, operation, path, code, cas)
            }
            rustify::errors::ClientError::RequestError { source, .. } => {
                let cause: &(dyn std::error::Error + 'static) = source.as_ref();
                let timed_out = cause
                    .downcast_ref::<reqwest::Error>()
                    .is_some_and(reqwest::Error::is_timeout);
                if timed_out {
                    VaultError::Timeout { operation }
                } else {
                    VaultError::Unavailable {
                        address: address.to_owned(),
                        operation,
                        source: described(apono_core::error_chain(cause)),
                    }
                }
            }
            rustify::errors::ClientError::ResponseError { .. } => VaultError::Unavailable {
                address: address.to_owned(),
                operation,
                source: described("the response could not be received"),
            },
            _ => VaultError::Malformed { operation },
        },
        ClientError::ResponseEmptyError | ClientError::ResponseDataEmptyError => {
            VaultError::NotFound {
                operation,
                path: path.map(str::to_owned),
            }
        }
        _ => VaultError::Malformed { operation },
    }
}

fn by_status(
    address: &str,
    operation: &'static str,
    path: Option<&str>,
    status: u16,
    cas: bool,
) -> VaultError {
    let path = path.map(str::to_owned);
    match status {
        401 | 403 => VaultError::PermissionDenied { operation, path },
        404 => VaultError::NotFound { operation, path },
        400 if cas => VaultError::CasMismatch { operation, path },
        412 | 429 | 500..=599 => VaultError::Unavailable {
            address: address.to_owned(),
            operation,
            source: described(format!("OpenBao answered HTTP {status}")),
        },
        _ => VaultError::Rejected {
            operation,
            path,
            status,
        },
    }
}

/// Checks a kv-v2 secret path: 1–512 characters of segments separated by single `/`, each
/// segment of `A-Z a-z 0-9 . _ -` and not `.` or `..`. Such a path is safe in a URL and inside
/// a policy's quoted path (no glob characters, quotes or escapes).
pub fn check_kv_path(path: &str) -> Result<(), VaultError> {
    let refuse = |reason| {
        Err(VaultError::InvalidName {
            what: "secret path",
            shown: quote(path),
            reason,
        })
    };
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return refuse("must be 1-512 characters");
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return refuse("must not start or end with '/' or contain '//'");
        }
        if segment == "." || segment == ".." {
            return refuse("must not contain '.' or '..' segments");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return refuse("may contain only A-Z, a-z, 0-9, '.', '_', '-' and '/'");
        }
    }
    Ok(())
}

/// Checks a mount path (a secrets engine or auth method): 1–64 characters of
/// `A-Z a-z 0-9 _ -`, starting with a letter or digit.
pub fn check_mount(mount: &str) -> Result<(), VaultError> {
    let ok = !mount.is_empty()
        && mount.len() <= 64
        && mount.as_bytes()[0].is_ascii_alphanumeric()
        && mount
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(VaultError::InvalidName {
            what: "mount",
            shown: quote(mount),
            reason: "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-', starting with a letter or digit",
        })
    }
}

/// Checks an identity id (a UUID as OpenBao makes them): 1–64 characters of hex digits and `-`.
fn check_entity_id(id: &str) -> Result<(), VaultError> {
    let ok =
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(VaultError::InvalidName {
            what: "entity id",
            shown: quote(id),
            reason: "must be 1-64 characters of hex digits and '-'",
        })
    }
}

/// Checks a userpass username or policy name: 1–128 characters of `a-z 0-9 _ -`, starting
/// with a letter (userpass lower-cases names, so upper case is refused rather than folded).
pub fn check_name(what: &'static str, name: &str) -> Result<(), VaultError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_lowercase()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(VaultError::InvalidName {
            what,
            shown: quote(name),
            reason: "must be 1-128 characters of a-z, 0-9, '_' or '-', starting with a letter",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_paths_are_strict() {
        for good in ["a", "team/db-root", "x/y.z/_w-1"] {
            assert!(check_kv_path(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/a", "a/", "a//b", "a/../b", ".", "a b", "a*", "a\"b", "a+b", "a\nb", "é",
        ] {
            assert!(check_kv_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_and_mounts_are_strict() {
        assert!(check_name("username", "alice-gabc").is_ok());
        for bad in ["", "Alice", "1a", "a/b", "a b", "a.b"] {
            assert!(check_name("username", bad).is_err(), "{bad:?}");
        }
        assert!(check_mount("apono-store").is_ok());
        for bad in ["", "a/b", "-a", "a b", "sys/x"] {
            assert!(check_mount(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn settings_refuse_bad_addresses_and_cas() {
        assert!(ClientSettings::new("ftp://x").connect().is_err());
        assert!(ClientSettings::new("bao:8200").connect().is_err());
        let err = ClientSettings::new("https://127.0.0.1:1")
            .ca_cert_pem("not a pem")
            .connect()
            .unwrap_err();
        assert_eq!(err.kind(), apono_core::ErrorKind::InvalidInput);
        assert!(
            ClientSettings::new("http://127.0.0.1:8200")
                .connect()
                .is_ok()
        );
    }

    #[test]
    fn statuses_are_classified() {
        use apono_core::ErrorKind;
        let kind = |status, cas| by_status("a", "op", None, status, cas).kind();
        assert_eq!(kind(403, false), ErrorKind::PermissionDenied);
        assert_eq!(kind(404, false), ErrorKind::NotFound);
        assert_eq!(kind(400, true), ErrorKind::Conflict);
        assert_eq!(kind(400, false), ErrorKind::InvalidInput);
        assert_eq!(kind(503, false), ErrorKind::Unavailable);
    }
}
