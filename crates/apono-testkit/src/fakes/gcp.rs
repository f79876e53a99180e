//! A fake GCP Secret Manager (REST v1), with Google's OAuth token endpoint and the metadata
//! server's token endpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use data_encoding::BASE64;
use serde_json::json;

use super::FakeError;
use super::server::{
    Common, FakeState, Recorded, RecordedRequest, ServerHandle, json_response, lock,
};

/// `Content-Type` of Secret Manager's JSON answers.
const GOOGLE_API_JSON: &str = "application/json; charset=UTF-8";
/// `Content-Type` of the OAuth token endpoint's answers.
const GOOGLE_OAUTH_JSON: &str = "application/json; charset=utf-8";

/// Whether the fake lets the caller read a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GcpAccess {
    /// Readable by any authenticated caller (the default).
    Allowed,
    /// Answers `403 PERMISSION_DENIED`, as when the service account lacks
    /// `secretmanager.versions.access`.
    Denied,
}

/// The service account the fake trusts: an RSA key generated for this fake alone.
#[derive(Clone)]
pub struct GcpServiceAccountKey {
    client_email: String,
    private_key_id: String,
    private_key_pem: String,
}

impl std::fmt::Debug for GcpServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpServiceAccountKey")
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

impl GcpServiceAccountKey {
    /// The account's e-mail address (the JWT's `iss`).
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The private key, PKCS#8 PEM.
    pub fn private_key_pem(&self) -> &str {
        &self.private_key_pem
    }

    /// A service-account key file (`"type": "service_account"`), as `gcloud iam
    /// service-accounts keys create` writes it, whose `token_uri` is `token_uri`.
    pub fn key_file_json(&self, project: &str, token_uri: &str) -> String {
        json!({
            "type": "service_account",
            "project_id": project,
            "private_key_id": self.private_key_id,
            "private_key": self.private_key_pem,
            "client_email": self.client_email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        })
        .to_string()
    }
}

#[derive(Debug, Default)]
struct Secret {
    versions: Vec<Vec<u8>>,
    access: Option<GcpAccess>,
    corrupt_crc: bool,
}

#[derive(Debug)]
struct GcpState {
    common: Common,
    public_key_pem: String,
    client_email: String,
    secrets: Mutex<BTreeMap<(String, String), Secret>>,
    tokens: Mutex<BTreeSet<String>>,
    refresh_tokens: Mutex<BTreeMap<String, (String, String)>>,
    next_token: Mutex<u64>,
}

impl FakeState for GcpState {
    fn common(&self) -> &Common {
        &self.common
    }
}

impl GcpState {
    fn mint_token(&self) -> String {
        let mut next = lock(&self.next_token);
        *next += 1;
        let token = format!("ya29.fake-gcp-token-{}", *next);
        lock(&self.tokens).insert(token.clone());
        token
    }
}

/// A fake Secret Manager: `GET /v1/projects/{p}/secrets/{s}/versions/{v}:access`, answering
/// `{name, payload: {data, dataCrc32c}}` or Google's `{error: {code, message, status}}`;
/// `POST /token` (the OAuth token endpoint: JWT-bearer grant checked against
/// [`FakeGcpSecretManager::service_account_key`], refresh-token grant for authorised-user
/// credentials); and the metadata server's
/// `GET /computeMetadata/v1/instance/service-accounts/default/token`.
///
/// Secret Manager requests need `Authorization: Bearer` with a token this fake issued.
#[derive(Debug)]
pub struct FakeGcpSecretManager {
    state: Arc<GcpState>,
    key: GcpServiceAccountKey,
    server: ServerHandle,
}

impl FakeGcpSecretManager {
    /// Starts the fake on `127.0.0.1` with a free port, with a freshly generated service
    /// account key.
    pub fn start() -> Result<Self, FakeError> {
        let crypto = |source: rcgen::Error| FakeError::Crypto {
            fake: "gcp",
            source: Box::new(source),
        };
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(crypto)?;
        let client_email = "apono-connector@fake-project.iam.gserviceaccount.com".to_owned();
        let key = GcpServiceAccountKey {
            client_email: client_email.clone(),
            private_key_id: "0123456789abcdef0123456789abcdef01234567".to_owned(),
            private_key_pem: key_pair.serialize_pem(),
        };
        let state = Arc::new(GcpState {
            common: Common::default(),
            public_key_pem: key_pair.public_key_pem(),
            client_email,
            secrets: Mutex::default(),
            tokens: Mutex::default(),
            refresh_tokens: Mutex::default(),
            next_token: Mutex::new(0),
        });
        let router = Router::new()
            .route(
                "/v1/projects/{project}/secrets/{secret}/versions/{version}",
                get(access),
            )
            .route("/token", post(token))
            .route(
                "/computeMetadata/v1/instance/service-accounts/default/token",
                get(metadata_token),
            )
            .fallback(not_found)
            .with_state(state.clone());
        let server = ServerHandle::spawn("gcp", router, None)?;
        Ok(Self { state, key, server })
    }

    /// The API endpoint, `http://127.0.0.1:{port}`: requests go to `{endpoint}/v1/…`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// The OAuth token endpoint, `{endpoint}/token`.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.endpoint())
    }

    /// The metadata server's root (`http://metadata.google.internal` in GCP).
    pub fn metadata_endpoint(&self) -> String {
        self.endpoint()
    }

    /// The service account whose JWTs the token endpoint accepts.
    pub fn service_account_key(&self) -> &GcpServiceAccountKey {
        &self.key
    }

    /// Adds a version holding `data` to `projects/{project}/secrets/{secret_id}` (creating
    /// the secret); the newest version is `latest`.
    pub fn add_secret_version(&self, project: &str, secret_id: &str, data: impl Into<Vec<u8>>) {
        lock(&self.state.secrets)
            .entry((project.to_owned(), secret_id.to_owned()))
            .or_default()
            .versions
            .push(data.into());
    }

    /// Sets whether the secret may be read.
    pub fn set_access(&self, project: &str, secret_id: &str, access: GcpAccess) {
        lock(&self.state.secrets)
            .entry((project.to_owned(), secret_id.to_owned()))
            .or_default()
            .access = Some(access);
    }

    /// Makes the secret's `dataCrc32c` wrong, as a corrupted payload would be.
    pub fn corrupt_checksum(&self, project: &str, secret_id: &str) {
        lock(&self.state.secrets)
            .entry((project.to_owned(), secret_id.to_owned()))
            .or_default()
            .corrupt_crc = true;
    }

    /// Registers an authorised-user refresh token (application-default credentials of the
    /// `authorized_user` type) for `client_id`/`client_secret`.
    pub fn add_refresh_token(&self, refresh_token: &str, client_id: &str, client_secret: &str) {
        lock(&self.state.refresh_tokens).insert(
            refresh_token.to_owned(),
            (client_id.to_owned(), client_secret.to_owned()),
        );
    }

    /// Issues an access token directly, as if a grant had succeeded.
    pub fn issue_token(&self) -> String {
        self.state.mint_token()
    }

    /// While `stalled`, requests hang without an answer (for timeout tests).
    pub fn set_stalled(&self, stalled: bool) {
        self.state.common.set_stalled(stalled);
    }

    /// The requests answered so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.common.requests()
    }
}

fn google_error(status: StatusCode, google_status: &str, message: &str) -> Response {
    json_response(
        status,
        GOOGLE_API_JSON,
        &json!({
            "error": {
                "code": status.as_u16(),
                "message": message,
                "status": google_status,
            }
        }),
    )
}

fn oauth_error(error: &str, description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        GOOGLE_OAUTH_JSON,
        &json!({"error": error, "error_description": description}),
    )
}

fn token_response(token: String) -> Response {
    json_response(
        StatusCode::OK,
        GOOGLE_OAUTH_JSON,
        &json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}),
    )
}

/// Recorded like every request (no stall: an unknown path answers at once).
async fn not_found(request: Recorded) -> Response {
    google_error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!(
            "The requested URL {} was not found on this server.",
            request.uri.path()
        ),
    )
}

async fn access(
    State(state): State<Arc<GcpState>>,
    Path((project, secret, version)): Path<(String, String, String)>,
    request: Recorded,
) -> Response {
    state.common.maybe_stall().await;
    let Some(version) = version.strip_suffix(":access") else {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested URL was not found on this server.",
        );
    };
    let token = request
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|t| lock(&state.tokens).contains(t)) {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        );
    }
    let secrets = lock(&state.secrets);
    let name = format!("projects/{project}/secrets/{secret}");
    let Some(entry) = secrets.get(&(project.clone(), secret.clone())) else {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Secret [{name}] not found or has no versions."),
        );
    };
    if entry.access == Some(GcpAccess::Denied) {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!(
                "Permission 'secretmanager.versions.access' denied for resource '{name}/versions/{version}' (or it may not exist)."
            ),
        );
    }
    let index = if version == "latest" {
        entry.versions.len().checked_sub(1)
    } else {
        version
            .parse::<usize>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .filter(|&n| n < entry.versions.len())
    };
    let Some(index) = index else {
        return google_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("Secret Version [{name}/versions/{version}] not found."),
        );
    };
    let data = &entry.versions[index];
    let mut crc = crc32c::crc32c(data);
    if entry.corrupt_crc {
        crc ^= 1;
    }
    json_response(
        StatusCode::OK,
        GOOGLE_API_JSON,
        &json!({
            "name": format!("{name}/versions/{}", index + 1),
            "payload": {
                "data": BASE64.encode(data),
                // int64 fields are strings in proto3 JSON.
                "dataCrc32c": crc.to_string(),
            }
        }),
    )
}

#[derive(serde::Deserialize)]
struct JwtClaims {
    iss: String,
    aud: String,
    scope: Option<String>,
    exp: u64,
    iat: u64,
}

async fn token(State(state): State<Arc<GcpState>>, request: Recorded) -> Response {
    state.common.maybe_stall().await;
    let form: BTreeMap<String, String> = match serde_urlencoded_pairs(&request.body) {
        Some(form) => form,
        None => return oauth_error("invalid_request", "Malformed form body."),
    };
    match form.get("grant_type").map(String::as_str) {
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            let Some(assertion) = form.get("assertion") else {
                return oauth_error("invalid_request", "Missing required parameter: assertion");
            };
            let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(state.public_key_pem.as_bytes())
            else {
                return oauth_error("internal_failure", "fake key unusable");
            };
            let token_uri = format!(
                "http://{}/token",
                request
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
            );
            let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
            validation.set_audience(&[token_uri, "https://oauth2.googleapis.com/token".into()]);
            validation.set_issuer(&[state.client_email.as_str()]);
            validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
            match jsonwebtoken::decode::<JwtClaims>(assertion, &key, &validation) {
                Ok(data) => {
                    let claims = data.claims;
                    if claims.scope.as_deref().is_none_or(str::is_empty) {
                        return oauth_error(
                            "invalid_scope",
                            "Invalid OAuth scope or ID token audience provided.",
                        );
                    }
                    if claims.exp.saturating_sub(claims.iat) > 3600 {
                        return oauth_error(
                            "invalid_grant",
                            "Invalid JWT: Expiration time too far in the future.",
                        );
                    }
                    let _ = (claims.iss, claims.aud);
                    token_response(state.mint_token())
                }
                Err(_) => oauth_error("invalid_grant", "Invalid JWT Signature."),
            }
        }
        Some("refresh_token") => {
            let known = form
                .get("refresh_token")
                .and_then(|t| lock(&state.refresh_tokens).get(t).cloned());
            match known {
                Some((id, secret))
                    if form.get("client_id") == Some(&id)
                        && form.get("client_secret") == Some(&secret) =>
                {
                    token_response(state.mint_token())
                }
                _ => oauth_error("invalid_grant", "Bad Request"),
            }
        }
        _ => oauth_error("unsupported_grant_type", "Invalid grant_type."),
    }
}

async fn metadata_token(State(state): State<Arc<GcpState>>, request: Recorded) -> Response {
    state.common.maybe_stall().await;
    if request
        .headers
        .get("metadata-flavor")
        .and_then(|v| v.to_str().ok())
        != Some("Google")
    {
        return (
            StatusCode::FORBIDDEN,
            "Missing required header: Metadata-Flavor",
        )
            .into_response();
    }
    token_response(state.mint_token())
}

/// Parses an `application/x-www-form-urlencoded` body.
fn serde_urlencoded_pairs(body: &[u8]) -> Option<BTreeMap<String, String>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut map = BTreeMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        map.insert(percent_decode(k)?, percent_decode(v)?);
    }
    Some(map)
}

pub(crate) fn form_decode(body: &[u8]) -> Option<BTreeMap<String, String>> {
    serde_urlencoded_pairs(body)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}
