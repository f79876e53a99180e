//! GCP Secret Manager (REST v1), behind the `gcp` feature.
//!
//! See the store type for the protocol, credentials and an example.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use apono_core::json::describe_json_error;
use apono_core::{SecretError, SecretStore, SecretStoreKind, SecretStoreRef, SecretValue};
use async_trait::async_trait;
use data_encoding::BASE64;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::backend_error::source;
use crate::rest;

/// Secret Manager's public endpoint.
pub const GCP_SECRET_MANAGER_ENDPOINT: &str = "https://secretmanager.googleapis.com";
/// Google's OAuth token endpoint, the default `token_uri`.
pub const GCP_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// The metadata server's root on GCP.
pub const GCP_METADATA_ENDPOINT: &str = "http://metadata.google.internal";
/// The OAuth scope requested for Secret Manager.
pub const GCP_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The environment variable naming an application-default credentials file.
pub const GOOGLE_APPLICATION_CREDENTIALS_ENV: &str = "GOOGLE_APPLICATION_CREDENTIALS";

const STORE: &str = "gcp secret manager";

/// How the store obtains access tokens.
///
/// `Debug` shows the kind of credentials and the account, never keys or tokens.
#[derive(Clone)]
pub struct GcpCredentials {
    source: CredentialSource,
}

#[derive(Clone)]
enum CredentialSource {
    ServiceAccount {
        client_email: String,
        private_key_id: Option<String>,
        private_key: SecretString,
        token_uri: String,
    },
    AuthorizedUser {
        client_id: String,
        client_secret: SecretString,
        refresh_token: SecretString,
        token_uri: String,
    },
    Metadata {
        root: String,
    },
    AccessToken(SecretString),
}

impl fmt::Debug for GcpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            CredentialSource::ServiceAccount {
                client_email,
                token_uri,
                ..
            } => f
                .debug_struct("ServiceAccount")
                .field("client_email", client_email)
                .field("token_uri", token_uri)
                .finish_non_exhaustive(),
            CredentialSource::AuthorizedUser {
                client_id,
                token_uri,
                ..
            } => f
                .debug_struct("AuthorizedUser")
                .field("client_id", client_id)
                .field("token_uri", token_uri)
                .finish_non_exhaustive(),
            CredentialSource::Metadata { root } => f
                .debug_struct("MetadataServer")
                .field("root", root)
                .finish(),
            CredentialSource::AccessToken(_) => f.write_str("AccessToken([redacted])"),
        }
    }
}

fn config(reason: impl Into<String>) -> SecretError {
    SecretError::Config {
        store: STORE.into(),
        reason: reason.into(),
        source: None,
    }
}

impl GcpCredentials {
    /// Credentials from the text of a credentials JSON file: a service-account key
    /// (`"type": "service_account"`) or gcloud's authorised-user credentials
    /// (`"type": "authorized_user"`). Errors name missing fields, never values.
    pub fn from_json(json: &SecretString) -> Result<Self, SecretError> {
        let value: serde_json::Value = serde_json::from_str(json.expose_secret())
            .map_err(|e| config(format!("credentials {}", describe_json_error(&e))))?;
        let field = |key: &str| -> Result<String, SecretError> {
            rest::str_field(&value, key)
                .map(str::to_owned)
                .ok_or_else(|| config(format!("credentials have no string field `{key}`")))
        };
        let token_uri = rest::str_field(&value, "token_uri")
            .unwrap_or(GCP_TOKEN_URI)
            .to_owned();
        match rest::str_field(&value, "type") {
            Some("service_account") => Ok(Self {
                source: CredentialSource::ServiceAccount {
                    client_email: field("client_email")?,
                    private_key_id: rest::str_field(&value, "private_key_id").map(str::to_owned),
                    private_key: SecretString::from(field("private_key")?),
                    token_uri,
                },
            }),
            Some("authorized_user") => Ok(Self {
                source: CredentialSource::AuthorizedUser {
                    client_id: field("client_id")?,
                    client_secret: SecretString::from(field("client_secret")?),
                    refresh_token: SecretString::from(field("refresh_token")?),
                    token_uri,
                },
            }),
            // The file is a secret: name the field, not what it holds.
            Some(_) => Err(config(
                "credentials have an unsupported `type` (service_account and authorized_user are supported)",
            )),
            None => Err(config("credentials have no string field `type`")),
        }
    }

    /// Credentials from a credentials JSON file (read now, once), as
    /// [`GcpCredentials::from_json`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SecretError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| SecretError::Config {
            store: STORE.into(),
            reason: format!("cannot read credentials file {}", path.display()),
            source: source(e.to_string()),
        })?;
        Self::from_json(&SecretString::from(text))
    }

    /// Tokens from the metadata server of the machine (GCE, GKE workload identity,
    /// Cloud Run), at [`GCP_METADATA_ENDPOINT`].
    pub fn metadata_server() -> Self {
        Self::metadata_server_at(GCP_METADATA_ENDPOINT)
    }

    /// Tokens from a metadata server at `root` (for tests and emulators).
    pub fn metadata_server_at(root: impl Into<String>) -> Self {
        Self {
            source: CredentialSource::Metadata {
                root: root.into().trim_end_matches('/').to_owned(),
            },
        }
    }

    /// A fixed access token, used as it is (it is not refreshed).
    pub fn access_token(token: SecretString) -> Self {
        Self {
            source: CredentialSource::AccessToken(token),
        }
    }

    /// Application-default credentials, as Google's client libraries find them: the file named
    /// by `GOOGLE_APPLICATION_CREDENTIALS`; else gcloud's
    /// `$HOME/.config/gcloud/application_default_credentials.json`; else the metadata server.
    ///
    /// This constructor reads the environment and that file; the others read nothing.
    pub fn application_default() -> Result<Self, SecretError> {
        if let Some(path) = std::env::var_os(GOOGLE_APPLICATION_CREDENTIALS_ENV) {
            return Self::from_file(PathBuf::from(path));
        }
        if let Some(home) = std::env::var_os("HOME") {
            let path =
                PathBuf::from(home).join(".config/gcloud/application_default_credentials.json");
            if path.is_file() {
                return Self::from_file(path);
            }
        }
        Ok(Self::metadata_server())
    }

    /// Replaces the token endpoint of service-account or authorised-user credentials (for tests
    /// and private endpoints); other credentials are unchanged.
    pub fn with_token_uri(mut self, uri: impl Into<String>) -> Self {
        match &mut self.source {
            CredentialSource::ServiceAccount { token_uri, .. }
            | CredentialSource::AuthorizedUser { token_uri, .. } => *token_uri = uri.into(),
            CredentialSource::Metadata { .. } | CredentialSource::AccessToken(_) => {}
        }
        self
    }
}

/// Builds a [`GcpSecretManagerStore`].
#[derive(Debug)]
pub struct GcpSecretManagerStoreBuilder {
    endpoint: String,
    credentials: Option<GcpCredentials>,
    timeout: Duration,
    extra_roots: Vec<Vec<u8>>,
}

impl GcpSecretManagerStoreBuilder {
    /// The credentials to use (required).
    pub fn credentials(mut self, credentials: GcpCredentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The API endpoint (default [`GCP_SECRET_MANAGER_ENDPOINT`]); `http://` is accepted for
    /// tests and emulators.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = endpoint.into().trim_end_matches('/').to_owned();
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

    /// Builds the store. Fails with [`SecretError::Config`] without credentials.
    pub fn build(self) -> Result<GcpSecretManagerStore, SecretError> {
        let credentials = self
            .credentials
            .ok_or_else(|| config("no credentials were given"))?;
        url::Url::parse(&self.endpoint)
            .map_err(|e| config(format!("endpoint is not a URL: {e}")))?;
        let http = rest::client(STORE, self.timeout, &self.extra_roots)?;
        Ok(GcpSecretManagerStore {
            http,
            endpoint: self.endpoint,
            credentials,
            token: Mutex::new(None),
        })
    }
}

struct CachedToken {
    token: SecretString,
    refresh_at: u64,
}

/// GCP Secret Manager (REST v1), behind the `gcp` feature.
///
/// A [`SecretStoreRef::Gcp`] `{project, secret_id}` is read with
/// `GET {endpoint}/v1/projects/{project}/secrets/{secret_id}/versions/latest:access`; the
/// base64 payload is checked against its `dataCrc32c` and must hold a JSON object, whose keys
/// become the secret's fields.
///
/// Credentials ([`GcpCredentials`]) come from a service-account key (a JWT signed RS256 and
/// exchanged at the key's `token_uri`, the JWT-bearer grant), the metadata server (GCE, GKE,
/// Cloud Run), or application-default credentials. Access tokens are cached in memory until
/// shortly before they expire; secret values never are.
///
/// # Example
///
/// ```no_run
/// use apono_core::{SecretStore, SecretStoreRef};
/// use apono_secrets::{GcpCredentials, GcpSecretManagerStore};
/// # async fn run() -> Result<(), apono_core::SecretError> {
/// // GOOGLE_APPLICATION_CREDENTIALS, gcloud's ADC file, or the metadata server.
/// let store = GcpSecretManagerStore::builder()
///     .credentials(GcpCredentials::application_default()?)
///     .build()?;
/// let reference = SecretStoreRef::Gcp {
///     project: "my-project".into(),
///     secret_id: "postgres-admin".into(),
/// };
/// let value = store.get(&reference).await?;
/// # Ok(())
/// # }
/// ```
pub struct GcpSecretManagerStore {
    http: reqwest::Client,
    endpoint: String,
    credentials: GcpCredentials,
    token: Mutex<Option<CachedToken>>,
}

impl fmt::Debug for GcpSecretManagerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcpSecretManagerStore")
            .field("endpoint", &self.endpoint)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl GcpSecretManagerStore {
    /// A builder with the public endpoint and a 30-second timeout.
    pub fn builder() -> GcpSecretManagerStoreBuilder {
        GcpSecretManagerStoreBuilder {
            endpoint: GCP_SECRET_MANAGER_ENDPOINT.into(),
            credentials: None,
            timeout: rest::DEFAULT_TIMEOUT,
            extra_roots: Vec::new(),
        }
    }

    /// An access token: the cached one, or a new one from the credentials.
    async fn token(&self, reference: &str) -> Result<SecretString, SecretError> {
        if let CredentialSource::AccessToken(token) = &self.credentials.source {
            return Ok(token.clone());
        }
        let mut cached = self.token.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| rest::unix_now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let (token, expires_in) = self.fetch_token(reference).await?;
        *cached = Some(CachedToken {
            token: token.clone(),
            refresh_at: rest::unix_now() + expires_in.saturating_sub(60),
        });
        Ok(token)
    }

    async fn fetch_token(&self, reference: &str) -> Result<(SecretString, u64), SecretError> {
        let request = match &self.credentials.source {
            CredentialSource::ServiceAccount {
                client_email,
                private_key_id,
                private_key,
                token_uri,
            } => {
                let assertion = sign_jwt(
                    client_email,
                    private_key_id.as_deref(),
                    private_key,
                    token_uri,
                )?;
                let body = rest::form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", &assertion),
                ]);
                self.http
                    .post(token_uri)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.as_str().to_owned())
            }
            CredentialSource::AuthorizedUser {
                client_id,
                client_secret,
                refresh_token,
                token_uri,
            } => {
                let body = rest::form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id),
                    ("client_secret", client_secret.expose_secret()),
                    ("refresh_token", refresh_token.expose_secret()),
                ]);
                self.http
                    .post(token_uri)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body.as_str().to_owned())
            }
            CredentialSource::Metadata { root } => self
                .http
                .get(format!(
                    "{root}/computeMetadata/v1/instance/service-accounts/default/token?scopes={}",
                    url::form_urlencoded::byte_serialize(GCP_SCOPE.as_bytes()).collect::<String>()
                ))
                .header("metadata-flavor", "Google"),
            CredentialSource::AccessToken(token) => return Ok((token.clone(), u64::MAX / 2)),
        };
        let answer = rest::send(request, STORE, reference).await?;
        rest::oauth_token(
            &answer,
            STORE,
            reference,
            "the token endpoint refused the credentials",
        )
    }
}

/// Signs the JWT-bearer assertion (RS256) for a service account.
fn sign_jwt(
    client_email: &str,
    private_key_id: Option<&str>,
    private_key: &SecretString,
    token_uri: &str,
) -> Result<String, SecretError> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key.expose_secret().as_bytes())
        .map_err(|_| config("the service account's private_key is not an RSA key in PEM"))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = private_key_id.map(str::to_owned);
    let now = rest::unix_now();
    let claims = serde_json::json!({
        "iss": client_email,
        "scope": GCP_SCOPE,
        "aud": token_uri,
        "iat": now,
        "exp": now + 3600,
    });
    jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|_| config("the service account's private_key cannot sign (RS256)"))
}

#[async_trait]
impl SecretStore for GcpSecretManagerStore {
    fn kind(&self) -> SecretStoreKind {
        SecretStoreKind::Gcp
    }

    #[tracing::instrument(skip_all, fields(store = "gcp", reference = %reference))]
    async fn get(&self, reference: &SecretStoreRef) -> Result<SecretValue, SecretError> {
        let SecretStoreRef::Gcp { project, secret_id } = reference else {
            return Err(SecretError::NotConfigured {
                kind: reference.kind(),
            });
        };
        let shown = reference.to_string();
        let mut url = url::Url::parse(&self.endpoint)
            .map_err(|e| config(format!("endpoint is not a URL: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| config("endpoint cannot have a path"))?
            .pop_if_empty()
            .extend([
                "v1",
                "projects",
                project,
                "secrets",
                secret_id,
                "versions",
                "latest:access",
            ]);
        let mut retried = false;
        let answer = loop {
            let token = self.token(&shown).await?;
            let answer = rest::send(
                self.http
                    .get(url.clone())
                    .bearer_auth(token.expose_secret()),
                STORE,
                &shown,
            )
            .await?;
            if answer.status == 401 && !retried {
                // The cached token may have been revoked: fetch a new one, once.
                tracing::debug!("token refused, fetching a new one");
                *self.token.lock().await = None;
                retried = true;
                continue;
            }
            break answer;
        };
        if answer.status != 200 {
            return Err(classify(&shown, &answer));
        }
        tracing::debug!("secret version read");
        decode_payload(&answer.body)
    }
}

/// Maps an error answer, in Google's `{error: {code, message, status}}` shape, to a
/// [`SecretError`].
fn classify(reference: &str, answer: &rest::Answer) -> SecretError {
    rest::classify_error(
        reference,
        answer,
        &rest::ErrorWords {
            store: STORE,
            code_field: "status",
            token_rejected: "Secret Manager rejected the access token",
            forbidden: "the service account lacks secretmanager.versions.access",
            bad_request: "Secret Manager refused the request",
        },
    )
}

/// Decodes `{payload: {data, dataCrc32c}}` into fields. Errors describe the shape, never the
/// content.
fn decode_payload(body: &[u8]) -> Result<SecretValue, SecretError> {
    let malformed = |reason: &str| SecretError::Malformed {
        reason: reason.to_owned(),
    };
    let value = rest::json(body).map_err(|e| SecretError::Malformed { reason: e })?;
    let payload = value
        .get("payload")
        .ok_or_else(|| malformed("the response has no `payload`"))?;
    let data = rest::str_field(payload, "data")
        .ok_or_else(|| malformed("`payload.data` is missing or not a string"))?;
    let bytes = Zeroizing::new(
        BASE64
            .decode(data.as_bytes())
            .map_err(|_| malformed("`payload.data` is not valid base64"))?,
    );
    if let Some(crc) = payload.get("dataCrc32c") {
        let expected = crc
            .as_u64()
            .or_else(|| crc.as_str()?.parse().ok())
            .ok_or_else(|| malformed("`payload.dataCrc32c` is not an integer"))?;
        if u64::from(crc32c::crc32c(&bytes)) != expected {
            // Corruption in transit or storage: a retry may read it intact.
            return Err(SecretError::Unavailable {
                store: STORE.into(),
                source: source("the payload does not match its dataCrc32c checksum"),
            });
        }
    }
    SecretValue::from_json(&bytes)
}
