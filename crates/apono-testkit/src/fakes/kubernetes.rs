//! A fake Kubernetes API server: discovery, and reading, creating and replacing `Secret`s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use data_encoding::BASE64;
use serde_json::json;

use super::FakeError;
use super::server::{
    Common, FakeState, Recorded, RecordedRequest, ServerHandle, json_response, lock,
};

/// `Content-Type` of JSON answers, as the real server writes it.
const KUBE_JSON: &str = "application/json";

/// Whether the fake's RBAC lets the caller `get` a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KubernetesAccess {
    /// Any authenticated caller may read it (the default).
    Allowed,
    /// `403 Forbidden`, as when the service account has no `get` on `secrets`.
    Denied,
    /// `429 TooManyRequests` with `Retry-After: 1`, as API Priority and Fairness answers an
    /// overloaded flow.
    Throttled,
}

/// A secret's labels.
pub type Labels = BTreeMap<String, String>;
/// A secret's data: key to bytes.
pub type SecretData = BTreeMap<String, Vec<u8>>;

#[derive(Debug)]
struct StoredSecret {
    labels: BTreeMap<String, String>,
    data: BTreeMap<String, Vec<u8>>,
    uid: u64,
}

#[derive(Debug, Default)]
struct KubeState {
    common: Common,
    tokens: Mutex<BTreeSet<String>>,
    secrets: Mutex<BTreeMap<(String, String), StoredSecret>>,
    access: Mutex<BTreeMap<(String, String), KubernetesAccess>>,
    counter: Mutex<u64>,
}

impl FakeState for KubeState {
    fn common(&self) -> &Common {
        &self.common
    }
}

/// The user the fake reports in `403` messages.
const USER: &str = "system:serviceaccount:apono-connector:apono-connector";

/// A fake API server on plain HTTP, authenticating `Authorization: Bearer` tokens
/// ([`FakeKubernetes::add_token`]):
///
/// * discovery: `GET /version` (public), `/api`, `/api/v1`, `/apis`;
/// * `GET /api/v1/namespaces/{namespace}/secrets/{name}`: the `Secret` object (`data` values
///   base64), or a `Status` object: `404 NotFound`, `403 Forbidden`, `401 Unauthorized`,
///   `429 TooManyRequests`;
/// * `POST /api/v1/namespaces/{namespace}/secrets` creates one (`201`, or `409 AlreadyExists`);
///   `PUT …/secrets/{name}` replaces one (`200`; `404 NotFound`; `409 Conflict` when the
///   body's `metadata.resourceVersion` is not the current one). Both take `data` (base64) and
///   `stringData`, and answer `400 BadRequest` when the body's name or namespace disagrees
///   with the path. The same RBAC switches ([`FakeKubernetes::set_access`]) apply.
#[derive(Debug)]
pub struct FakeKubernetes {
    state: Arc<KubeState>,
    server: ServerHandle,
}

impl FakeKubernetes {
    /// Starts the fake on `127.0.0.1` with a free port.
    pub fn start() -> Result<Self, FakeError> {
        let state = Arc::new(KubeState::default());
        let router = Router::new()
            // The API server answers discovery paths with and without a trailing slash (the
            // Python client asks for `/version/`, `/api/`, `/api/v1/`).
            .route("/version", get(version))
            .route("/version/", get(version))
            .route("/api", get(api_versions))
            .route("/api/", get(api_versions))
            .route("/apis", get(api_groups))
            .route("/apis/", get(api_groups))
            .route("/api/v1", get(api_resources))
            .route("/api/v1/", get(api_resources))
            .route(
                "/api/v1/namespaces/{namespace}/secrets",
                post(create_secret),
            )
            .route(
                "/api/v1/namespaces/{namespace}/secrets/{name}",
                get(get_secret).put(replace_secret),
            )
            .fallback(not_found)
            .with_state(state.clone());
        let server = ServerHandle::spawn("kubernetes", router, None)?;
        Ok(Self { state, server })
    }

    /// The API server URL, `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Accepts `token` as a bearer token (a service account token).
    pub fn add_token(&self, token: &str) {
        lock(&self.state.tokens).insert(token.to_owned());
    }

    /// Creates or replaces the `Opaque` secret `namespace/name`.
    pub fn put_secret<K, V>(
        &self,
        namespace: &str,
        name: &str,
        labels: &[(&str, &str)],
        data: impl IntoIterator<Item = (K, V)>,
    ) where
        K: Into<String>,
        V: Into<Vec<u8>>,
    {
        let uid = next_uid(&self.state);
        lock(&self.state.secrets).insert(
            (namespace.to_owned(), name.to_owned()),
            StoredSecret {
                labels: labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                data: data
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
                uid,
            },
        );
    }

    /// The labels and data of secret `namespace/name`, if it exists (whoever wrote it).
    pub fn secret(&self, namespace: &str, name: &str) -> Option<(Labels, SecretData)> {
        lock(&self.state.secrets)
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|s| (s.labels.clone(), s.data.clone()))
    }

    /// Sets whether RBAC lets the caller read or write `namespace/name`.
    pub fn set_access(&self, namespace: &str, name: &str, access: KubernetesAccess) {
        let key = (namespace.to_owned(), name.to_owned());
        let mut accesses = lock(&self.state.access);
        match access {
            KubernetesAccess::Allowed => {
                accesses.remove(&key);
            }
            other => {
                accesses.insert(key, other);
            }
        }
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

fn status(
    code: StatusCode,
    reason: &str,
    message: &str,
    details: Option<serde_json::Value>,
) -> Response {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    if let Some(details) = details {
        body["details"] = details;
    }
    json_response(code, KUBE_JSON, &body)
}

/// Holds the request while the fake is stalled, then checks its bearer token; `Err` is the
/// `401` to send.
async fn authenticate(state: &KubeState, headers: &HeaderMap) -> Result<(), Response> {
    state.common.maybe_stall().await;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token.is_some_and(|t| lock(&state.tokens).contains(t)) {
        Ok(())
    } else {
        Err(status(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
            None,
        ))
    }
}

/// Recorded like every request (no stall: an unknown path answers at once).
async fn not_found(_request: Recorded) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

async fn version(State(state): State<Arc<KubeState>>, _request: Recorded) -> Response {
    // `/version` is public (the `system:public-info-viewer` role), as on a real cluster.
    state.common.maybe_stall().await;
    json_response(
        StatusCode::OK,
        KUBE_JSON,
        &json!({
            "major": "1",
            "minor": "32",
            "emulationMajor": "1",
            "emulationMinor": "32",
            "gitVersion": "v1.32.0",
            "gitCommit": "70d3cc986aa8221cd1dfb1121852688902d3bf53",
            "gitTreeState": "clean",
            "buildDate": "2024-12-11T17:59:15Z",
            "goVersion": "go1.23.3",
            "compiler": "gc",
            "platform": "linux/amd64",
        }),
    )
}

async fn api_versions(State(state): State<Arc<KubeState>>, request: Recorded) -> Response {
    if let Err(r) = authenticate(&state, &request.headers).await {
        return r;
    }
    let host = request
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_owned();
    json_response(
        StatusCode::OK,
        KUBE_JSON,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}],
        }),
    )
}

async fn api_groups(State(state): State<Arc<KubeState>>, request: Recorded) -> Response {
    if let Err(r) = authenticate(&state, &request.headers).await {
        return r;
    }
    json_response(
        StatusCode::OK,
        KUBE_JSON,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
    )
}

async fn api_resources(State(state): State<Arc<KubeState>>, request: Recorded) -> Response {
    if let Err(r) = authenticate(&state, &request.headers).await {
        return r;
    }
    json_response(
        StatusCode::OK,
        KUBE_JSON,
        &json!({
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [
                {
                    "name": "namespaces",
                    "singularName": "namespace",
                    "namespaced": false,
                    "kind": "Namespace",
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                    "shortNames": ["ns"],
                    "storageVersionHash": "Q3oi5N2YM8M="
                },
                {
                    "name": "secrets",
                    "singularName": "secret",
                    "namespaced": true,
                    "kind": "Secret",
                    "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                    "storageVersionHash": "S6u1pOWzb84="
                }
            ],
        }),
    )
}

async fn get_secret(
    State(state): State<Arc<KubeState>>,
    Path((namespace, name)): Path<(String, String)>,
    request: Recorded,
) -> Response {
    if let Err(r) = authenticate(&state, &request.headers).await {
        return r;
    }
    let key = (namespace.clone(), name.clone());
    let access = lock(&state.access).get(&key).copied();
    if access == Some(KubernetesAccess::Throttled) {
        let mut response = status(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests, please try again later.",
            Some(json!({"retryAfterSeconds": 1})),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return response;
    }
    if let Some(r) = refused(&state, &namespace, &name, "get") {
        return r;
    }
    let secrets = lock(&state.secrets);
    let Some(secret) = secrets.get(&key) else {
        return not_found_secret(&name);
    };
    json_response(
        StatusCode::OK,
        KUBE_JSON,
        &secret_json(&namespace, &name, secret),
    )
}

fn not_found_secret(name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("secrets \"{name}\" not found"),
        Some(json!({"name": name, "kind": "secrets"})),
    )
}

fn secret_json(namespace: &str, name: &str, secret: &StoredSecret) -> serde_json::Value {
    let data: serde_json::Map<String, serde_json::Value> = secret
        .data
        .iter()
        .map(|(k, v)| (k.clone(), json!(BASE64.encode(v))))
        .collect();
    json!({
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": format!("6b1d4c1e-0000-4000-8000-{:012x}", secret.uid),
            "resourceVersion": secret.uid.to_string(),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": secret.labels,
        },
        "data": data,
        "type": "Opaque",
    })
}

/// The RBAC switch of `namespace/name`, answered as the API server would for `verb`.
fn refused(state: &KubeState, namespace: &str, name: &str, verb: &str) -> Option<Response> {
    let access = lock(&state.access)
        .get(&(namespace.to_owned(), name.to_owned()))
        .copied();
    match access {
        Some(KubernetesAccess::Denied) => Some(status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &format!(
                "secrets \"{name}\" is forbidden: User \"{USER}\" cannot {verb} resource \"secrets\" in API group \"\" in the namespace \"{namespace}\""
            ),
            Some(json!({"name": name, "kind": "secrets"})),
        )),
        _ => None,
    }
}

/// A `Secret` body as the API server reads it: name, namespace, labels, `resourceVersion`,
/// and `data` (base64) merged with `stringData` (plain). `Err` is the `400` to send.
#[allow(clippy::result_large_err)]
fn parse_secret(
    body: &[u8],
    namespace: &str,
) -> Result<(String, Option<String>, StoredSecret), Response> {
    let bad = |message: String| status(StatusCode::BAD_REQUEST, "BadRequest", &message, None);
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "the body of the request was in an unknown format: {e}"
        ))
    })?;
    // The URL says what the object is: the API server defaults an absent kind and apiVersion
    // (the Python client sends neither unless set) and refuses others.
    let kind_ok = value["kind"].is_null() || value["kind"] == "Secret";
    let version_ok = value["apiVersion"].is_null() || value["apiVersion"] == "v1";
    if !kind_ok || !version_ok {
        return Err(bad("the body is not a v1 Secret".to_owned()));
    }
    let metadata = &value["metadata"];
    let name = metadata["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("Secret \"\" is invalid: metadata.name: Required value".to_owned()))?
        .to_owned();
    if let Some(ns) = metadata["namespace"].as_str()
        && ns != namespace
    {
        return Err(bad(
            "the namespace of the provided object does not match the namespace sent on the request"
                .to_owned(),
        ));
    }
    let labels = match &metadata["labels"] {
        serde_json::Value::Null => BTreeMap::new(),
        other => serde_json::from_value(other.clone())
            .map_err(|_| bad("metadata.labels must be a map of strings".to_owned()))?,
    };
    let mut data = BTreeMap::new();
    if let Some(map) = value["data"].as_object() {
        for (k, v) in map {
            let bytes = v
                .as_str()
                .and_then(|t| BASE64.decode(t.as_bytes()).ok())
                .ok_or_else(|| bad(format!("data[{k}]: illegal base64 data")))?;
            data.insert(k.clone(), bytes);
        }
    }
    if let Some(map) = value["stringData"].as_object() {
        for (k, v) in map {
            let text = v
                .as_str()
                .ok_or_else(|| bad(format!("stringData[{k}] must be a string")))?;
            data.insert(k.clone(), text.as_bytes().to_vec());
        }
    }
    let version = metadata["resourceVersion"].as_str().map(str::to_owned);
    Ok((
        name,
        version,
        StoredSecret {
            labels,
            data,
            uid: 0,
        },
    ))
}

fn next_uid(state: &KubeState) -> u64 {
    let mut n = lock(&state.counter);
    *n += 1;
    *n
}

async fn create_secret(
    State(state): State<Arc<KubeState>>,
    Path(namespace): Path<String>,
    request: Recorded,
) -> Response {
    if let Err(r) = authenticate(&state, &request.headers).await {
        return r;
    }
    let (name, _, mut secret) = match parse_secret(&request.body, &namespace) {
        Ok(parsed) => parsed,
        Err(r) => return r,
    };
    if let Some(r) = refused(&state, &namespace, &name, "create") {
        return r;
    }
    let key = (namespace.clone(), name.clone());
    let mut secrets = lock(&state.secrets);
    if secrets.contains_key(&key) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            &format!("secrets \"{name}\" already exists"),
            Some(json!({"name": name, "kind": "secrets"})),
        );
    }
    secret.uid = next_uid(&state);
    let body = secret_json(&namespace, &name, &secret);
    secrets.insert(key, secret);
    json_response(StatusCode::CREATED, KUBE_JSON, &body)
}

async fn replace_secret(
    State(state): State<Arc<KubeState>>,
    Path((namespace, name)): Path<(String, String)>,
    request: Recorded,
) -> Response {
    if let Err(r) = authenticate(&state, &request.headers).await {
        return r;
    }
    if let Some(r) = refused(&state, &namespace, &name, "update") {
        return r;
    }
    let (body_name, version, mut secret) = match parse_secret(&request.body, &namespace) {
        Ok(parsed) => parsed,
        Err(r) => return r,
    };
    if body_name != name {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the name of the object does not match the name on the URL",
            None,
        );
    }
    let key = (namespace.clone(), name.clone());
    let mut secrets = lock(&state.secrets);
    let Some(current) = secrets.get(&key) else {
        return not_found_secret(&name);
    };
    if version.is_some_and(|v| v != current.uid.to_string()) {
        return status(
            StatusCode::CONFLICT,
            "Conflict",
            &format!(
                "Operation cannot be fulfilled on secrets \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some(json!({"name": name, "kind": "secrets"})),
        );
    }
    secret.uid = next_uid(&state);
    let body = secret_json(&namespace, &name, &secret);
    secrets.insert(key, secret);
    json_response(StatusCode::OK, KUBE_JSON, &body)
}
