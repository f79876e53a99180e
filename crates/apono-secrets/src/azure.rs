//! Azure Key Vault (REST API 7.4), behind the `azure` feature.
//!
//! See the store type for the protocol, credentials and an example.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use apono_core::{SecretError, SecretStore, SecretStoreKind, SecretStoreRef, SecretValue};
use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use crate::backend_error::source;
use crate::rest;

/// Entra ID's public authority host.
pub const AZURE_AUTHORITY_HOST: &str = "https://login.microsoftonline.com";
/// The instance metadata service's root, where managed identities get tokens.
pub const AZURE_IMDS_ENDPOINT: &str = "http://169.254.169.254";
/// The Key Vault REST API version used.
pub const AZURE_KEY_VAULT_API_VERSION: &str = "7.4";

const STORE: &str = "azure key vault";

fn config(reason: impl Into<String>) -> SecretError {
    SecretError::Config {
        store: STORE.into(),
        reason: reason.into(),
        source: None,
    }
}

/// How the store obtains Entra ID (Azure AD) access tokens.
///
/// `Debug` shows the kind of credentials, the tenant and client ids, never secrets.
#[derive(Clone)]
pub struct AzureCredentials {
    source: CredentialSource,
    authority_host: String,
    imds_endpoint: String,
}

#[derive(Clone)]
enum CredentialSource {
    ClientSecret {
        tenant_id: String,
        client_id: String,
        client_secret: SecretString,
    },
    WorkloadIdentity {
        tenant_id: String,
        client_id: String,
        token_file: PathBuf,
    },
    ManagedIdentity {
        client_id: Option<String>,
    },
}

impl fmt::Debug for AzureCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            CredentialSource::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("authority_host", &self.authority_host)
                .finish_non_exhaustive(),
            CredentialSource::WorkloadIdentity {
                tenant_id,
                client_id,
                token_file,
            } => f
                .debug_struct("WorkloadIdentity")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("token_file", token_file)
                .field("authority_host", &self.authority_host)
                .finish(),
            CredentialSource::ManagedIdentity { client_id } => f
                .debug_struct("ManagedIdentity")
                .field("client_id", client_id)
                .field("imds_endpoint", &self.imds_endpoint)
                .finish(),
        }
    }
}

impl AzureCredentials {
    fn new(source: CredentialSource) -> Self {
        Self {
            source,
            authority_host: AZURE_AUTHORITY_HOST.into(),
            imds_endpoint: AZURE_IMDS_ENDPOINT.into(),
        }
    }

    /// An app registration's client secret (the client-credentials grant).
    pub fn client_secret(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
    ) -> Self {
        Self::new(CredentialSource::ClientSecret {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            client_secret,
        })
    }

    /// Workload identity (AKS): the federated token in `token_file`, read again at every token
    /// request since the kubelet rotates it, is the client assertion.
    pub fn workload_identity(
        tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        token_file: impl Into<PathBuf>,
    ) -> Self {
        Self::new(CredentialSource::WorkloadIdentity {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            token_file: token_file.into(),
        })
    }

    /// The machine's system-assigned managed identity, through IMDS.
    pub fn managed_identity() -> Self {
        Self::new(CredentialSource::ManagedIdentity { client_id: None })
    }

    /// A user-assigned managed identity, chosen by its client id, through IMDS.
    pub fn user_assigned_managed_identity(client_id: impl Into<String>) -> Self {
        Self::new(CredentialSource::ManagedIdentity {
            client_id: Some(client_id.into()),
        })
    }

    /// Credentials from the environment variables the Azure SDKs read:
    /// `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_CLIENT_SECRET` (client secret), else
    /// `AZURE_TENANT_ID` + `AZURE_CLIENT_ID` + `AZURE_FEDERATED_TOKEN_FILE` (workload
    /// identity), else a managed identity (user-assigned when `AZURE_CLIENT_ID` is set).
    /// `AZURE_AUTHORITY_HOST` overrides the authority host.
    ///
    /// This constructor reads the environment; the others read nothing.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let tenant = var("AZURE_TENANT_ID");
        let client = var("AZURE_CLIENT_ID");
        let credentials = match (tenant, client.clone()) {
            (Some(tenant), Some(client_id)) => {
                if let Some(secret) = var("AZURE_CLIENT_SECRET") {
                    Self::client_secret(tenant, client_id, SecretString::from(secret))
                } else if let Some(file) = var("AZURE_FEDERATED_TOKEN_FILE") {
                    Self::workload_identity(tenant, client_id, file)
                } else {
                    Self::user_assigned_managed_identity(client_id)
                }
            }
            _ => match client {
                Some(client_id) => Self::user_assigned_managed_identity(client_id),
                None => Self::managed_identity(),
            },
        };
        match var("AZURE_AUTHORITY_HOST") {
            Some(host) => credentials.with_authority_host(host),
            None => credentials,
        }
    }

    /// Replaces the authority host (default [`AZURE_AUTHORITY_HOST`]; sovereign clouds and
    /// tests).
    pub fn with_authority_host(mut self, host: impl Into<String>) -> Self {
        self.authority_host = host.into().trim_end_matches('/').to_owned();
        self
    }

    /// Replaces the IMDS root (default [`AZURE_IMDS_ENDPOINT`]; tests).
    pub fn with_imds_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.imds_endpoint = endpoint.into().trim_end_matches('/').to_owned();
        self
    }

    fn tenant(&self) -> Option<&str> {
        match &self.source {
            CredentialSource::ClientSecret { tenant_id, .. }
            | CredentialSource::WorkloadIdentity { tenant_id, .. } => Some(tenant_id),
            CredentialSource::ManagedIdentity { .. } => None,
        }
    }
}

/// Builds an [`AzureKeyVaultStore`].
#[derive(Debug)]
pub struct AzureKeyVaultStoreBuilder {
    credentials: Option<AzureCredentials>,
    timeout: Duration,
    extra_roots: Vec<Vec<u8>>,
    verify_challenge_resource: bool,
}

impl AzureKeyVaultStoreBuilder {
    /// The credentials to use (required).
    pub fn credentials(mut self, credentials: AzureCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Deadline of each HTTP request (default 30 seconds); exceeding it is
    /// [`SecretError::Timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Trusts this CA certificate (PEM) in addition to the platform's roots.
    pub fn add_root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.extra_roots.push(pem.into());
        self
    }

    /// Whether the challenge's `resource` must belong to the vault's domain (default `true`,
    /// as in the Azure SDKs; turn off only for vaults served under another domain, such as a
    /// test fake).
    pub fn verify_challenge_resource(mut self, verify: bool) -> Self {
        self.verify_challenge_resource = verify;
        self
    }

    /// Builds the store. Fails with [`SecretError::Config`] without credentials.
    pub fn build(self) -> Result<AzureKeyVaultStore, SecretError> {
        let credentials = self
            .credentials
            .ok_or_else(|| config("no credentials were given"))?;
        Ok(AzureKeyVaultStore {
            http: rest::client(STORE, self.timeout, &self.extra_roots)?,
            credentials,
            verify_challenge_resource: self.verify_challenge_resource,
            cache: Mutex::default(),
        })
    }
}

/// What a vault's `401` challenge asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Challenge {
    tenant: Option<String>,
    scope: String,
}

struct CachedToken {
    token: SecretString,
    refresh_at: u64,
}

#[derive(Default)]
struct Cache {
    /// Per vault origin.
    challenges: BTreeMap<String, Challenge>,
    /// Per (tenant, scope).
    tokens: BTreeMap<(String, String), CachedToken>,
}

/// Azure Key Vault (REST API 7.4), behind the `azure` feature.
///
/// A [`SecretStoreRef::Azure`] `{vault_url, name}` is read with
/// `GET {vault_url}/secrets/{name}?api-version=7.4`; the secret's value must be a JSON object,
/// whose keys become the fields.
///
/// Authentication follows the Azure SDKs: the first request to a vault goes without a token and
/// Key Vault answers `401` with `WWW-Authenticate: Bearer authorization="…/{tenant}",
/// resource="https://vault.azure.net"`; the store takes the tenant and the scope
/// (`{resource}/.default`) from that challenge, checks that the resource belongs to the vault's
/// domain, obtains a token from its [`AzureCredentials`] and repeats the request. The secret is
/// sent only to the authority host the credentials were configured with, never to a host
/// named by a challenge. Challenges and access tokens are cached in memory; secret values are
/// not.
///
/// # Example
///
/// ```no_run
/// use apono_core::{SecretStore, SecretStoreRef};
/// use apono_secrets::{AzureCredentials, AzureKeyVaultStore};
/// use secrecy::SecretString;
/// # async fn run() -> Result<(), apono_core::SecretError> {
/// let credentials = AzureCredentials::client_secret(
///     "72f988bf-86f1-41af-91ab-2d7cd011db47",
///     "00000000-0000-0000-0000-000000000001",
///     SecretString::from("client secret"),
/// );
/// // Or AzureCredentials::managed_identity(), AzureCredentials::workload_identity(…),
/// // AzureCredentials::from_env().
/// let store = AzureKeyVaultStore::builder().credentials(credentials).build()?;
/// let reference = SecretStoreRef::Azure {
///     vault_url: "https://my-vault.vault.azure.net".into(),
///     name: "postgres-admin".into(),
/// };
/// let value = store.get(&reference).await?;
/// # Ok(())
/// # }
/// ```
pub struct AzureKeyVaultStore {
    http: reqwest::Client,
    credentials: AzureCredentials,
    verify_challenge_resource: bool,
    cache: Mutex<Cache>,
}

impl fmt::Debug for AzureKeyVaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureKeyVaultStore")
            .field("credentials", &self.credentials)
            .field("verify_challenge_resource", &self.verify_challenge_resource)
            .finish_non_exhaustive()
    }
}

impl AzureKeyVaultStore {
    /// A builder with a 30-second timeout and challenge-resource verification on.
    pub fn builder() -> AzureKeyVaultStoreBuilder {
        AzureKeyVaultStoreBuilder {
            credentials: None,
            timeout: rest::DEFAULT_TIMEOUT,
            extra_roots: Vec::new(),
            verify_challenge_resource: true,
        }
    }

    async fn token(
        &self,
        challenge: &Challenge,
        reference: &str,
    ) -> Result<SecretString, SecretError> {
        let tenant = match (self.credentials.tenant(), challenge.tenant.as_deref()) {
            (Some(ours), Some(theirs)) if !ours.eq_ignore_ascii_case(theirs) => {
                return Err(SecretError::PermissionDenied {
                    reference: reference.to_owned(),
                    reason: format!(
                        "the vault belongs to tenant {} but the credentials are for tenant {ours}",
                        rest::short(theirs)
                    ),
                    source: None,
                });
            }
            (Some(ours), _) => ours.to_owned(),
            (None, theirs) => theirs.unwrap_or_default().to_owned(),
        };
        let key = (tenant.clone(), challenge.scope.clone());
        if let Some(cached) = self.cache.lock().await.tokens.get(&key)
            && rest::unix_now() < cached.refresh_at
        {
            return Ok(cached.token.clone());
        }
        let (token, expires_in) = self
            .fetch_token(&tenant, &challenge.scope, reference)
            .await?;
        self.cache.lock().await.tokens.insert(
            key,
            CachedToken {
                token: token.clone(),
                refresh_at: rest::unix_now() + expires_in.saturating_sub(120),
            },
        );
        Ok(token)
    }

    async fn fetch_token(
        &self,
        tenant: &str,
        scope: &str,
        reference: &str,
    ) -> Result<(SecretString, u64), SecretError> {
        let authority = &self.credentials.authority_host;
        let token_url = || {
            let mut url = url::Url::parse(authority)
                .map_err(|e| config(format!("authority host is not a URL: {e}")))?;
            url.path_segments_mut()
                .map_err(|()| config("authority host cannot have a path"))?
                .pop_if_empty()
                .extend([tenant, "oauth2", "v2.0", "token"]);
            Ok::<_, SecretError>(url)
        };
        let request = match &self.credentials.source {
            CredentialSource::ClientSecret {
                client_id,
                client_secret,
                ..
            } => {
                let body = rest::form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    ("client_secret", client_secret.expose_secret()),
                    ("scope", scope),
                ]);
                self.http
                    .post(token_url()?)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.as_str().to_owned())
            }
            CredentialSource::WorkloadIdentity {
                client_id,
                token_file,
                ..
            } => {
                let assertion =
                    std::fs::read_to_string(token_file).map_err(|e| SecretError::Config {
                        store: STORE.into(),
                        reason: format!(
                            "cannot read the federated token file {}",
                            token_file.display()
                        ),
                        source: source(e.to_string()),
                    })?;
                let assertion = zeroize::Zeroizing::new(assertion);
                let body = rest::form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", client_id),
                    (
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    ),
                    ("client_assertion", assertion.trim()),
                    ("scope", scope),
                ]);
                self.http
                    .post(token_url()?)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.as_str().to_owned())
            }
            CredentialSource::ManagedIdentity { client_id } => {
                let resource = scope.strip_suffix("/.default").unwrap_or(scope);
                let mut url = url::Url::parse(&self.credentials.imds_endpoint)
                    .map_err(|e| config(format!("IMDS endpoint is not a URL: {e}")))?;
                url.set_path("/metadata/identity/oauth2/token");
                url.query_pairs_mut()
                    .append_pair("api-version", "2018-02-01")
                    .append_pair("resource", resource);
                if let Some(id) = client_id {
                    url.query_pairs_mut().append_pair("client_id", id);
                }
                self.http.get(url).header("metadata", "true")
            }
        };
        let answer = rest::send(request, STORE, reference).await?;
        rest::oauth_token(
            &answer,
            STORE,
            reference,
            "Entra ID refused the credentials",
        )
    }

    /// Reads the challenge of a `401` answer and checks it against the vault.
    fn challenge(
        &self,
        vault: &url::Url,
        answer: &rest::Answer,
        reference: &str,
    ) -> Result<Challenge, SecretError> {
        let refused = |reason: String| SecretError::PermissionDenied {
            reference: reference.to_owned(),
            reason,
            source: None,
        };
        let header = answer
            .headers
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.trim_start().to_ascii_lowercase().starts_with("bearer"))
            .ok_or_else(|| refused("the vault answered 401 without a Bearer challenge".into()))?;
        let params = parse_challenge(header);
        let authorization = params
            .get("authorization")
            .or_else(|| params.get("authorization_uri"));
        let tenant = authorization
            .and_then(|a| url::Url::parse(a).ok())
            .and_then(|u| {
                u.path_segments()?
                    .find(|s| !s.is_empty())
                    .map(str::to_owned)
            });
        let scope = match (params.get("scope"), params.get("resource")) {
            (Some(scope), _) => scope.clone(),
            (None, Some(resource)) => format!("{}/.default", resource.trim_end_matches('/')),
            (None, None) => {
                return Err(refused(
                    "the vault's challenge names neither a scope nor a resource".into(),
                ));
            }
        };
        if self.verify_challenge_resource {
            let resource_host = url::Url::parse(&scope)
                .ok()
                .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
                .unwrap_or_default();
            let vault_host = vault.host_str().unwrap_or_default().to_ascii_lowercase();
            if resource_host.is_empty()
                || !(vault_host == resource_host
                    || vault_host.ends_with(&format!(".{resource_host}")))
            {
                return Err(refused(format!(
                    "the challenge's resource {} does not match the vault's domain {vault_host}",
                    rest::short(&resource_host)
                )));
            }
        }
        Ok(Challenge { tenant, scope })
    }
}

/// The `key="value"` parameters of a `Bearer` challenge.
fn parse_challenge(header: &str) -> BTreeMap<String, String> {
    let rest = header.trim_start();
    let rest = rest.get(6..).unwrap_or_default();
    let mut params = BTreeMap::new();
    for part in rest.split(',') {
        if let Some((key, value)) = part.split_once('=') {
            params.insert(
                key.trim().to_ascii_lowercase(),
                value.trim().trim_matches('"').to_owned(),
            );
        }
    }
    params
}

#[async_trait]
impl SecretStore for AzureKeyVaultStore {
    fn kind(&self) -> SecretStoreKind {
        SecretStoreKind::Azure
    }

    #[tracing::instrument(skip_all, fields(store = "azure", reference = %reference))]
    async fn get(&self, reference: &SecretStoreRef) -> Result<SecretValue, SecretError> {
        let SecretStoreRef::Azure { vault_url, name } = reference else {
            return Err(SecretError::NotConfigured {
                kind: reference.kind(),
            });
        };
        let shown = reference.to_string();
        let mut url = url::Url::parse(vault_url)
            .map_err(|e| config(format!("vault_url {vault_url} is not a URL: {e}")))?;
        let origin = url.origin().ascii_serialization();
        url.path_segments_mut()
            .map_err(|()| config(format!("vault_url {vault_url} cannot have a path")))?
            .pop_if_empty()
            .extend(["secrets", name]);
        url.query_pairs_mut()
            .append_pair("api-version", AZURE_KEY_VAULT_API_VERSION);

        let known = self.cache.lock().await.challenges.get(&origin).cloned();
        let mut answer = match &known {
            Some(challenge) => {
                let token = self.token(challenge, &shown).await?;
                let request = self
                    .http
                    .get(url.clone())
                    .bearer_auth(token.expose_secret());
                rest::send(request, STORE, &shown).await?
            }
            // The first request carries no token: the vault's challenge says which to get.
            None => rest::send(self.http.get(url.clone()), STORE, &shown).await?,
        };
        if answer.status == 401 {
            let challenge = self.challenge(&url, &answer, &shown)?;
            tracing::debug!(scope = %challenge.scope, "answering the vault's challenge");
            {
                let mut cache = self.cache.lock().await;
                cache.challenges.insert(origin, challenge.clone());
                if known.is_some() {
                    // The cached token was refused: forget it.
                    let tenant = self
                        .credentials
                        .tenant()
                        .or(challenge.tenant.as_deref())
                        .unwrap_or_default()
                        .to_owned();
                    cache.tokens.remove(&(tenant, challenge.scope.clone()));
                }
            }
            let token = self.token(&challenge, &shown).await?;
            let request = self
                .http
                .get(url.clone())
                .bearer_auth(token.expose_secret());
            answer = rest::send(request, STORE, &shown).await?;
        }
        if answer.status != 200 {
            return Err(classify(&shown, &answer));
        }
        let body = rest::json(&answer.body).map_err(|reason| SecretError::Malformed { reason })?;
        let value = rest::str_field(&body, "value").ok_or_else(|| SecretError::Malformed {
            reason: "the secret bundle has no string `value`".into(),
        })?;
        tracing::debug!("secret read");
        SecretValue::from_json(value.as_bytes())
    }
}

/// Maps an error answer, in Key Vault's `{error: {code, message}}` shape, to a
/// [`SecretError`].
fn classify(reference: &str, answer: &rest::Answer) -> SecretError {
    rest::classify_error(
        reference,
        answer,
        &rest::ErrorWords {
            store: STORE,
            code_field: "code",
            token_rejected: "Key Vault rejected the access token",
            forbidden: "the identity lacks the secrets get permission (access policy or Key Vault Secrets User role)",
            bad_request: "Key Vault refused the request",
        },
    )
}
