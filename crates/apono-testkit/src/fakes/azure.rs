//! A fake Azure Key Vault (secrets, API 7.x) with its Entra ID (Azure AD) token endpoint and an
//! IMDS-style managed identity endpoint, served over HTTPS.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::json;

use super::server::{
    Common, FakeState, Recorded, RecordedRequest, ServerHandle, json_response, lock,
};
use super::{FakeError, TestCa};

/// `Content-Type` of JSON answers, as the real server writes it.
const AZURE_JSON: &str = "application/json; charset=utf-8";

/// Whether the fake lets the caller read a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AzureAccess {
    /// Readable by any authenticated caller (the default).
    Allowed,
    /// Answers `403 Forbidden` (`ForbiddenByPolicy`/`ForbiddenByRbac`).
    Denied,
}

#[derive(Debug, Default)]
struct Secret {
    versions: Vec<(String, String)>,
    access: Option<AzureAccess>,
}

#[derive(Debug)]
struct AzureState {
    common: Common,
    tenant: String,
    clients: Mutex<BTreeMap<String, String>>,
    federated: Mutex<BTreeMap<String, String>>,
    tokens: Mutex<BTreeSet<String>>,
    secrets: Mutex<BTreeMap<String, Secret>>,
    counter: Mutex<u64>,
    base: Mutex<String>,
}

impl FakeState for AzureState {
    fn common(&self) -> &Common {
        &self.common
    }
}

impl AzureState {
    fn next(&self) -> u64 {
        let mut n = lock(&self.counter);
        *n += 1;
        *n
    }

    fn mint_token(&self) -> String {
        let token = format!("eyJ0eXAiOiJKV1QifQ.fake-azure-token-{}.sig", self.next());
        lock(&self.tokens).insert(token.clone());
        token
    }
}

/// The resource Key Vault names in its challenge; tokens are requested for
/// `https://vault.azure.net/.default`.
pub const KEY_VAULT_RESOURCE: &str = "https://vault.azure.net";

/// A fake Key Vault and Entra ID on one HTTPS port (certificate from a [`TestCa`]):
///
/// * `GET /secrets/{name}?api-version=7.x` and `/secrets/{name}/{version}`: the secret bundle
///   `{value, id, attributes, tags}`; without a valid bearer token, `401` with
///   `WWW-Authenticate: Bearer authorization="{endpoint}/{tenant}", resource="https://vault.azure.net"`;
///   errors as `{error: {code, message}}` (`SecretNotFound`, `Forbidden`, `Unauthorized`);
/// * `POST /{tenant}/oauth2/v2.0/token`: client-credentials grant with a client secret
///   ([`FakeAzureKeyVault::add_client`]) or a federated client assertion
///   ([`FakeAzureKeyVault::add_federated_client`]); AAD-shaped errors (`invalid_client`, …);
/// * `GET /{tenant}/v2.0/.well-known/openid-configuration` (what MSAL reads first);
/// * `GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=…` with
///   `Metadata: true`: the managed identity endpoint (IMDS).
#[derive(Debug)]
pub struct FakeAzureKeyVault {
    state: Arc<AzureState>,
    ca: TestCa,
    server: ServerHandle,
}

impl FakeAzureKeyVault {
    /// Starts the fake for directory (tenant) `tenant`, its certificate valid for `localhost`
    /// and `127.0.0.1`.
    pub fn start(tenant: &str) -> Result<Self, FakeError> {
        Self::start_for(tenant, &["localhost", "127.0.0.1"])
    }

    /// Starts the fake with a certificate valid for `names` (DNS names or IP addresses), such
    /// as a `*.vault.azure.net` name the client resolves to loopback: a client that checks the
    /// challenge's resource against the vault's domain, as the Azure SDKs do, accepts it.
    pub fn start_for(tenant: &str, names: &[&str]) -> Result<Self, FakeError> {
        let ca = TestCa::generate_for(names)?;
        let state = Arc::new(AzureState {
            common: Common::default(),
            tenant: tenant.to_owned(),
            clients: Mutex::default(),
            federated: Mutex::default(),
            tokens: Mutex::default(),
            secrets: Mutex::default(),
            counter: Mutex::new(0),
            base: Mutex::default(),
        });
        let router = Router::new()
            .route("/secrets/{name}", get(get_latest))
            // The SDKs ask for `/secrets/{name}/` (an empty version) for the latest version.
            .route("/secrets/{name}/", get(get_latest))
            .route("/secrets/{name}/{version}", get(get_version))
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route(
                "/{tenant}/v2.0/.well-known/openid-configuration",
                get(openid_configuration),
            )
            .route("/metadata/identity/oauth2/token", get(imds_token))
            .fallback(not_found)
            .with_state(state.clone());
        let server = ServerHandle::spawn("azure", router, Some(ca.server_config()?))?;
        *lock(&state.base) = format!("https://{}", server.addr());
        Ok(Self { state, ca, server })
    }

    /// `https://127.0.0.1:{port}`: the vault URL, the authority host and the IMDS root.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.server.addr())
    }

    /// The tenant this fake's authority serves.
    pub fn tenant(&self) -> &str {
        &self.state.tenant
    }

    /// The CA that signed the fake's certificate: clients must trust it.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// Lets `client_id` obtain tokens with `client_secret`.
    pub fn add_client(&self, client_id: &str, client_secret: &str) {
        lock(&self.state.clients).insert(client_id.to_owned(), client_secret.to_owned());
    }

    /// Lets `client_id` obtain tokens with the client assertion `federated_token` (workload
    /// identity).
    pub fn add_federated_client(&self, client_id: &str, federated_token: &str) {
        lock(&self.state.federated).insert(client_id.to_owned(), federated_token.to_owned());
    }

    /// Sets a new version of secret `name` to `value`; returns the version id.
    pub fn set_secret(&self, name: &str, value: &str) -> String {
        let version = format!("{:032x}", self.state.next());
        lock(&self.state.secrets)
            .entry(name.to_owned())
            .or_default()
            .versions
            .push((version.clone(), value.to_owned()));
        version
    }

    /// Sets whether secret `name` may be read.
    pub fn set_access(&self, name: &str, access: AzureAccess) {
        lock(&self.state.secrets)
            .entry(name.to_owned())
            .or_default()
            .access = Some(access);
    }

    /// Issues an access token directly.
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

fn vault_error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        AZURE_JSON,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn aad_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    json_response(
        status,
        AZURE_JSON,
        &json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}"),
            "error_codes": [code],
            "timestamp": "2026-01-01 00:00:00Z",
            "trace_id": "00000000-0000-0000-0000-000000000000",
            "correlation_id": "00000000-0000-0000-0000-000000000000",
        }),
    )
}

/// Recorded like every request (no stall: an unknown path answers at once).
async fn not_found(_request: Recorded) -> Response {
    vault_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "The requested resource was not found.",
    )
}

async fn get_latest(
    State(state): State<Arc<AzureState>>,
    Path(name): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    request: Recorded,
) -> Response {
    serve_secret(&state, &name, None, &query, &request.headers).await
}

async fn get_version(
    State(state): State<Arc<AzureState>>,
    Path((name, version)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    request: Recorded,
) -> Response {
    let version = Some(version).filter(|v| !v.is_empty());
    serve_secret(&state, &name, version.as_deref(), &query, &request.headers).await
}

async fn serve_secret(
    state: &AzureState,
    name: &str,
    version: Option<&str>,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
) -> Response {
    state.common.maybe_stall().await;
    let base = lock(&state.base).clone();
    if query.get("api-version").is_none_or(String::is_empty) {
        return vault_error(
            StatusCode::BAD_REQUEST,
            "BadParameter",
            "The request URI contains an invalid or missing api-version parameter.",
        );
    }
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|t| lock(&state.tokens).contains(t)) {
        let challenge = format!(
            "Bearer authorization=\"{base}/{}\", resource=\"{KEY_VAULT_RESOURCE}\"",
            state.tenant
        );
        let mut response = vault_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "AKV10000: Request is missing a Bearer or PoP token.",
        );
        if let Ok(value) = challenge.parse() {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        return response;
    }
    let secrets = lock(&state.secrets);
    let found = secrets.get(name).and_then(|secret| {
        let entry = match version {
            None => secret.versions.last(),
            Some(v) => secret.versions.iter().find(|(id, _)| id == v),
        };
        entry.map(|e| (secret.access, e.clone()))
    });
    let Some((access, (id, value))) = found else {
        let message = match version {
            None => format!(
                "A secret with (name/id) {name} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
            ),
            Some(v) => format!(
                "A secret with (name/id) {name}/{v} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
            ),
        };
        return vault_error(StatusCode::NOT_FOUND, "SecretNotFound", &message);
    };
    if access == Some(AzureAccess::Denied) {
        return json_response(
            StatusCode::FORBIDDEN,
            AZURE_JSON,
            &json!({"error": {
                "code": "Forbidden",
                "message": format!("The user, group or application 'appid=…' does not have secrets get permission on key vault '{base}'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287"),
                "innererror": {"code": "AccessDenied"}
            }}),
        );
    }
    json_response(
        StatusCode::OK,
        AZURE_JSON,
        &json!({
            "value": value,
            "id": format!("{base}/secrets/{name}/{id}"),
            "attributes": {
                "enabled": true,
                "created": 1_767_225_600,
                "updated": 1_767_225_600,
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
            "tags": {},
        }),
    )
}

async fn token(
    State(state): State<Arc<AzureState>>,
    Path(tenant): Path<String>,
    request: Recorded,
) -> Response {
    state.common.maybe_stall().await;
    if tenant != state.tenant {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let Some(form) = super::gcp::form_decode(&request.body) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "Malformed body.",
        );
    };
    if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if form.get("scope").is_none_or(|s| !s.ends_with("/.default")) {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
        );
    }
    let Some(client_id) = form.get("client_id") else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    let accepted = if let Some(secret) = form.get("client_secret") {
        lock(&state.clients).get(client_id) == Some(secret)
    } else if let Some(assertion) = form.get("client_assertion") {
        form.get("client_assertion_type").map(String::as_str)
            == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
            && lock(&state.federated).get(client_id) == Some(assertion)
    } else {
        false
    };
    if !accepted {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
        );
    }
    json_response(
        StatusCode::OK,
        AZURE_JSON,
        &json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": state.mint_token(),
        }),
    )
}

async fn openid_configuration(
    State(state): State<Arc<AzureState>>,
    Path(tenant): Path<String>,
    _request: Recorded,
) -> Response {
    let base = lock(&state.base).clone();
    json_response(
        StatusCode::OK,
        AZURE_JSON,
        &json!({
            "token_endpoint": format!("{base}/{tenant}/oauth2/v2.0/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": format!("{base}/{tenant}/discovery/v2.0/keys"),
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": format!("{base}/{tenant}/v2.0"),
            "request_uri_parameter_supported": false,
            "authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{base}/{tenant}/oauth2/v2.0/devicecode"),
            "end_session_endpoint": format!("{base}/{tenant}/oauth2/v2.0/logout"),
            "tenant_region_scope": "EU",
        }),
    )
}

async fn imds_token(
    State(state): State<Arc<AzureState>>,
    Query(query): Query<BTreeMap<String, String>>,
    request: Recorded,
) -> Response {
    state.common.maybe_stall().await;
    if request
        .headers
        .get("metadata")
        .and_then(|v| v.to_str().ok())
        != Some("true")
    {
        return json_response(
            StatusCode::BAD_REQUEST,
            AZURE_JSON,
            &json!({"error": "invalid_request", "error_description": "Required metadata header not specified"}),
        );
    }
    let Some(resource) = query.get("resource") else {
        return json_response(
            StatusCode::BAD_REQUEST,
            AZURE_JSON,
            &json!({"error": "invalid_request", "error_description": "Required audience parameter not specified"}),
        );
    };
    json_response(
        StatusCode::OK,
        AZURE_JSON,
        &json!({
            "access_token": state.mint_token(),
            "client_id": "00000000-0000-0000-0000-00000000beef",
            "expires_in": "3599",
            "expires_on": "4102444800",
            "ext_expires_in": "3599",
            "not_before": "1767225600",
            "resource": resource,
            "token_type": "Bearer",
        }),
    )
}
