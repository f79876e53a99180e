//! A fake Rancher v3 management API (Norman REST shapes), served over HTTPS with a test CA.
//!
//! It models what a just-in-time access provisioner touches: local users and their passwords,
//! global role bindings, clusters, projects, role templates, cluster and project role template
//! bindings, tokens (API keys, login tokens, kubeconfig tokens) with TTLs, the local provider's
//! `login` action, the `setpassword` user action and the `generateKubeconfig` cluster action.
//!
//! It describes itself as Norman does, so schema-driven clients work: `GET /v3` is the
//! `apiRoot` linking every collection by `pluralName`, every authenticated answer carries
//! `X-Api-Schemas: {base}/v3/schemas`, and `/v3/schemas[/{id}]` serve the `schema` resources
//! (fields, methods, actions, `collectionFilters`) of the types above — listing only the
//! methods the fake implements. Lists filter on the schema's `collectionFilters` only
//! (`field=v`, `field_ne=v`); other parameters are ignored, as Norman ignores them.
//!
//! Resources carry `type`, `baseType`, `id`, `links` (`self`, `update`, `remove`; clusters
//! and projects also their sub-context collections, `/v3/clusters/{id}/projects` …) and
//! `actions`; collections are `{type: "collection", resourceType, data, pagination, filters,
//! …}`; errors are `{type: "error", status, code, message}` with Norman's codes (`NotFound`,
//! `PermissionDenied`, `NotUnique`, `MissingRequired`, `InvalidReference`, `InvalidAction`,
//! `InvalidBodyContent`, `MinLengthExceeded`, `MethodNotAllow`). A missing or wrong credential
//! gets the answer of Rancher's authentication filter instead, `401`
//! `{type: "error", status: "401", message: "Unauthorized 401: must authenticate"}`. Callers
//! authenticate with `Authorization: Bearer name:secret` or HTTP Basic `name` / `secret`, as
//! Rancher accepts.
//!
//! `tests/fake_rancher.rs` checks all this with Rancher's own Python client
//! (`rancher-client-python-3p`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::server::{
    Common, FakeState, Recorded, RecordedRequest, ServerHandle, json_response, lock,
};
use super::{FakeError, TestCa};

/// `Content-Type` of JSON answers, as the real server writes it.
const NORMAN_JSON: &str = "application/json";

mod schema;

/// Shortest password the fake accepts, as Rancher's default `password-min-length` setting.
pub const MIN_PASSWORD_LEN: usize = 12;
/// TTL of tokens minted by `generateKubeconfig` (Rancher's default
/// `kubeconfig-default-token-ttl-minutes`, 30 days).
pub const KUBECONFIG_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Id of the management ("local") cluster the fake always has.
pub const LOCAL_CLUSTER: &str = "local";

#[derive(Debug, Clone)]
struct UserRec {
    username: String,
    name: String,
    description: String,
    enabled: bool,
    must_change_password: bool,
    password: Option<String>,
    labels: Map<String, Value>,
    annotations: Map<String, Value>,
    created: u64,
}

#[derive(Debug, Clone)]
struct Binding {
    /// `clusterId` for CRTBs, `projectId` for PRTBs, `globalRoleId` for GRBs.
    scope: String,
    role: String,
    user_id: String,
    labels: Map<String, Value>,
    annotations: Map<String, Value>,
}

#[derive(Debug, Clone)]
struct TokenRec {
    secret: String,
    user_id: String,
    description: String,
    ttl_ms: u64,
    created: u64,
    /// Seconds since the epoch; `None` never expires.
    expires_at: Option<u64>,
    derived: bool,
    labels: Map<String, Value>,
}

#[derive(Debug, Default)]
struct Db {
    users: BTreeMap<String, UserRec>,
    privileged: BTreeSet<String>,
    grbs: BTreeMap<String, Binding>,
    clusters: BTreeMap<String, String>,
    projects: BTreeMap<String, (String, String)>,
    role_templates: BTreeMap<String, (String, String, bool)>,
    crtbs: BTreeMap<String, Binding>,
    prtbs: BTreeMap<String, Binding>,
    tokens: BTreeMap<String, TokenRec>,
    page_size: usize,
    rng: u64,
}

impl Db {
    fn random_suffix(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut out = String::with_capacity(len);
        for _ in 0..len {
            // xorshift64*: plenty for unique test ids; not a security boundary.
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            let v = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
            out.push(ALPHABET[(v >> 33) as usize % ALPHABET.len()] as char);
        }
        out
    }

    fn fresh_id(&mut self, prefix: &str, taken: impl Fn(&Db, &str) -> bool) -> String {
        loop {
            let id = format!("{prefix}{}", self.random_suffix(5));
            if !taken(self, &id) {
                return id;
            }
        }
    }

    fn mint_token(
        &mut self,
        id_prefix: &str,
        user_id: &str,
        description: &str,
        ttl_ms: u64,
        derived: bool,
    ) -> (String, String) {
        let id = self.fresh_id(id_prefix, |db, id| db.tokens.contains_key(id));
        let secret = self.random_suffix(54);
        let created = now_secs();
        self.tokens.insert(
            id.clone(),
            TokenRec {
                secret: secret.clone(),
                user_id: user_id.to_owned(),
                description: description.to_owned(),
                ttl_ms,
                created,
                expires_at: (ttl_ms > 0).then(|| created + ttl_ms.div_ceil(1000)),
                derived,
                labels: Map::new(),
            },
        );
        (id, secret)
    }

    fn visible_cluster(&self, caller: &Caller, cluster: &str) -> bool {
        caller.privileged
            || self
                .crtbs
                .values()
                .any(|b| b.user_id == caller.user_id && b.scope == cluster)
            || self.prtbs.values().any(|b| {
                b.user_id == caller.user_id
                    && self
                        .projects
                        .get(&b.scope)
                        .is_some_and(|(c, _)| c == cluster)
            })
    }

    fn visible_project(&self, caller: &Caller, project: &str) -> bool {
        caller.privileged
            || self
                .prtbs
                .values()
                .any(|b| b.user_id == caller.user_id && b.scope == project)
            || self.projects.get(project).is_some_and(|(cluster, _)| {
                self.crtbs.values().any(|b| {
                    b.user_id == caller.user_id && &b.scope == cluster && b.role == "cluster-owner"
                })
            })
    }
}

#[derive(Debug)]
struct RancherState {
    common: Common,
    db: Mutex<Db>,
    base: Mutex<String>,
    ca_pem: String,
}

impl FakeState for RancherState {
    fn common(&self) -> &Common {
        &self.common
    }
}

/// The caller a request authenticated as.
#[derive(Debug, Clone)]
struct Caller {
    user_id: String,
    token_id: String,
    privileged: bool,
}

/// An API key (a Rancher token): `access_key` is the token's name, `secret_key` its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RancherApiKey {
    /// The token name, such as `token-x7k2p`.
    pub access_key: String,
    /// The secret part.
    pub secret_key: String,
}

impl RancherApiKey {
    /// `access_key:secret_key`, the bearer token form.
    pub fn bearer(&self) -> String {
        format!("{}:{}", self.access_key, self.secret_key)
    }
}

/// A fake Rancher server on one HTTPS port (certificate from a [`TestCa`]).
///
/// It starts with the `local` management cluster, two downstream clusters (`c-m-prod1`
/// "prod" with projects "Default" and "web", `c-m-dev42` "dev" with project "Default"),
/// Rancher's built-in role templates (`cluster-owner`, `cluster-member`, `project-owner`,
/// `project-member`, `read-only`, …), an `admin` user and the dedicated
/// `apono-provisioner-user` with an API key ([`FakeRancher::api_key`]). Both of those are
/// privileged: they may do everything. Any other user sees only itself, its own tokens and
/// bindings, and the clusters and projects it is bound to.
///
/// Paths: `/v3`, `/v3/schemas[/{id}]`, `/v3/{users,globalrolebindings,clusters,projects,
/// roletemplates,clusterroletemplatebindings,projectroletemplatebindings,tokens}[/{id}]` with
/// `GET`, `POST` (create: users, bindings, tokens), `PUT` (users), `DELETE` (users, bindings,
/// tokens), list filters from the schemas' `collectionFilters` (`?username=…`, `?userId=…`,
/// `?me=true`), `limit`/`marker` pagination, `GET /v3/clusters/{id}/{projects,
/// clusterroletemplatebindings}` and `GET /v3/projects/{id}/projectroletemplatebindings`; actions
/// `POST /v3/users/{id}?action=setpassword`, `POST /v3/clusters/{id}?action=generateKubeconfig`
/// and `POST /v3-public/localProviders/local?action=login`.
///
/// Deleting a user deletes its tokens and bindings, as Rancher's user controller does.
#[derive(Debug)]
pub struct FakeRancher {
    state: Arc<RancherState>,
    ca: TestCa,
    server: ServerHandle,
    api_key: RancherApiKey,
    admin_key: RancherApiKey,
}

const ADMIN_ID: &str = "user-admin1";
const PROVISIONER_ID: &str = "u-apono1";

impl FakeRancher {
    /// Starts the fake with its initial state.
    pub fn start() -> Result<Self, FakeError> {
        let ca = TestCa::generate()?;
        let mut db = Db {
            page_size: 1000,
            rng: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
                | 1,
            ..Db::default()
        };
        for (id, username, name) in [
            (ADMIN_ID, "admin", "Default Admin"),
            (
                PROVISIONER_ID,
                "apono-provisioner-user",
                "Apono provisioner",
            ),
        ] {
            db.users.insert(
                id.to_owned(),
                UserRec {
                    username: username.to_owned(),
                    name: name.to_owned(),
                    description: String::new(),
                    enabled: true,
                    must_change_password: false,
                    password: Some(format!("{username}-initial-password")),
                    labels: Map::new(),
                    annotations: Map::new(),
                    created: now_secs(),
                },
            );
            db.privileged.insert(id.to_owned());
        }
        db.grbs
            .insert("grb-admin".into(), binding("admin", "admin", ADMIN_ID));
        db.grbs.insert(
            "grb-apono".into(),
            binding(
                "apono-provisioner-user-role",
                "apono-provisioner-user-role",
                PROVISIONER_ID,
            ),
        );
        db.clusters.insert(LOCAL_CLUSTER.into(), "local".into());
        db.clusters.insert("c-m-prod1".into(), "prod".into());
        db.clusters.insert("c-m-dev42".into(), "dev".into());
        for (id, cluster, name) in [
            ("local:p-local1", LOCAL_CLUSTER, "System"),
            ("c-m-prod1:p-dflt1", "c-m-prod1", "Default"),
            ("c-m-prod1:p-web01", "c-m-prod1", "web"),
            ("c-m-dev42:p-dflt2", "c-m-dev42", "Default"),
        ] {
            db.projects.insert(id.into(), (cluster.into(), name.into()));
        }
        for (id, name, context, locked) in [
            ("cluster-owner", "Cluster Owner", "cluster", false),
            ("cluster-member", "Cluster Member", "cluster", false),
            (
                "clusterroletemplatebindings-view",
                "View Cluster Members",
                "cluster",
                false,
            ),
            ("nodes-manage", "Manage Nodes", "cluster", true),
            ("project-owner", "Project Owner", "project", false),
            ("project-member", "Project Member", "project", false),
            ("read-only", "Read-only", "project", false),
        ] {
            db.role_templates
                .insert(id.into(), (name.into(), context.into(), locked));
        }
        let (ak, sk) = db.mint_token("token-", PROVISIONER_ID, "apono connector", 0, true);
        let api_key = RancherApiKey {
            access_key: ak,
            secret_key: sk,
        };
        let (ak, sk) = db.mint_token("token-", ADMIN_ID, "test observer", 0, true);
        let admin_key = RancherApiKey {
            access_key: ak,
            secret_key: sk,
        };
        let state = Arc::new(RancherState {
            common: Common::default(),
            db: Mutex::new(db),
            base: Mutex::default(),
            ca_pem: ca.ca_pem().to_owned(),
        });
        let router = Router::new().fallback(dispatch).with_state(state.clone());
        let server = ServerHandle::spawn("rancher", router, Some(ca.server_config()?))?;
        *lock(&state.base) = format!("https://{}", server.addr());
        Ok(Self {
            state,
            ca,
            server,
            api_key,
            admin_key,
        })
    }

    /// `https://127.0.0.1:{port}`.
    pub fn endpoint(&self) -> String {
        format!("https://{}", self.server.addr())
    }

    /// The port the fake listens on (`127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// The CA that signed the fake's certificate: clients must trust it.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The dedicated provisioner user's API key (never expires unless
    /// [`FakeRancher::set_api_key_expiry`] says so).
    pub fn api_key(&self) -> &RancherApiKey {
        &self.api_key
    }

    /// An API key of the `admin` user, for tests that observe the fake through its API.
    pub fn admin_key(&self) -> &RancherApiKey {
        &self.admin_key
    }

    /// Makes the provisioner's API key expire `in_` from now; `None` removes the expiry.
    /// A key whose expiry has passed is refused with `401`.
    pub fn set_api_key_expiry(&self, in_: Option<Duration>) {
        let mut db = lock(&self.state.db);
        if let Some(token) = db.tokens.get_mut(&self.api_key.access_key) {
            token.created = now_secs();
            token.ttl_ms = in_.map_or(0, |d| d.as_millis() as u64);
            token.expires_at = in_.map(|d| now_secs() + d.as_secs());
        }
    }

    /// Moves the provisioner's API key's expiry into the past.
    pub fn expire_api_key(&self) {
        let mut db = lock(&self.state.db);
        if let Some(token) = db.tokens.get_mut(&self.api_key.access_key) {
            token.expires_at = Some(now_secs().saturating_sub(1));
            token.ttl_ms = 1;
        }
    }

    /// Adds a local user that the connector did not create (a person's own account); returns
    /// its id.
    pub fn add_local_user(&self, username: &str, password: &str) -> String {
        let mut db = lock(&self.state.db);
        let id = db.fresh_id("u-", |db, id| db.users.contains_key(id));
        db.users.insert(
            id.clone(),
            UserRec {
                username: username.to_owned(),
                name: username.to_owned(),
                description: String::new(),
                enabled: true,
                must_change_password: false,
                password: Some(password.to_owned()),
                labels: Map::new(),
                annotations: Map::new(),
                created: now_secs(),
            },
        );
        id
    }

    /// Adds a downstream cluster.
    pub fn add_cluster(&self, id: &str, name: &str) {
        lock(&self.state.db)
            .clusters
            .insert(id.to_owned(), name.to_owned());
    }

    /// Adds a role template with `context` `cluster` or `project`.
    pub fn add_role_template(&self, id: &str, name: &str, context: &str) {
        lock(&self.state.db)
            .role_templates
            .insert(id.to_owned(), (name.to_owned(), context.to_owned(), false));
    }

    /// Sets the largest page a collection returns (Norman's `limit`; default 1000).
    pub fn set_page_size(&self, size: usize) {
        lock(&self.state.db).page_size = size.max(1);
    }

    /// While `stalled`, requests hang without an answer (for timeout tests).
    pub fn set_stalled(&self, stalled: bool) {
        self.state.common.set_stalled(stalled);
    }

    /// The requests answered so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.common.requests()
    }

    /// Every local user the fake holds, by id.
    pub fn users(&self) -> Vec<RancherUser> {
        let db = lock(&self.state.db);
        db.users
            .iter()
            .map(|(id, u)| RancherUser {
                id: id.clone(),
                username: u.username.clone(),
                name: u.name.clone(),
                description: u.description.clone(),
                enabled: u.enabled,
                must_change_password: u.must_change_password,
                labels: string_map(&u.labels),
                annotations: string_map(&u.annotations),
            })
            .collect()
    }

    /// Whether user `user_id` exists and its password is `password`.
    pub fn password_is(&self, user_id: &str, password: &str) -> bool {
        lock(&self.state.db)
            .users
            .get(user_id)
            .is_some_and(|u| u.password.as_deref() == Some(password))
    }

    /// Every global, cluster and project role (template) binding the fake holds, sorted.
    pub fn bindings(&self) -> Vec<RancherBinding> {
        let db = lock(&self.state.db);
        let mut out: Vec<RancherBinding> = [
            (RancherBindingKind::Global, &db.grbs),
            (RancherBindingKind::Cluster, &db.crtbs),
            (RancherBindingKind::Project, &db.prtbs),
        ]
        .into_iter()
        .flat_map(|(kind, map)| {
            map.iter().map(move |(id, b)| RancherBinding {
                kind,
                id: id.clone(),
                scope: b.scope.clone(),
                role: b.role.clone(),
                user_id: b.user_id.clone(),
                labels: string_map(&b.labels),
                annotations: string_map(&b.annotations),
            })
        })
        .collect();
        out.sort();
        out
    }
}

/// A local user as [`FakeRancher::users`] reports it (the password stays inside; see
/// [`FakeRancher::password_is`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RancherUser {
    /// `u-…`.
    pub id: String,
    /// The login name.
    pub username: String,
    /// The display name (`name` in the API).
    pub name: String,
    /// `description`.
    pub description: String,
    /// `enabled`.
    pub enabled: bool,
    /// `mustChangePassword`.
    pub must_change_password: bool,
    /// `labels`, values as text.
    pub labels: BTreeMap<String, String>,
    /// `annotations`, values as text.
    pub annotations: BTreeMap<String, String>,
}

/// Which kind of binding a [`RancherBinding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RancherBindingKind {
    /// A `globalRoleBinding`.
    Global,
    /// A `clusterRoleTemplateBinding`.
    Cluster,
    /// A `projectRoleTemplateBinding`.
    Project,
}

/// A role binding as [`FakeRancher::bindings`] reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RancherBinding {
    /// Global, cluster or project.
    pub kind: RancherBindingKind,
    /// `grb-…`, `{clusterId}:crtb-…` or `{project}:prtb-…`.
    pub id: String,
    /// `globalRoleId`, `clusterId` or `projectId`.
    pub scope: String,
    /// `globalRoleId` or `roleTemplateId`.
    pub role: String,
    /// `userId`.
    pub user_id: String,
    /// `labels`, values as text.
    pub labels: BTreeMap<String, String>,
    /// `annotations`, values as text.
    pub annotations: BTreeMap<String, String>,
}

fn string_map(map: &Map<String, Value>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            (k.clone(), text)
        })
        .collect()
}

fn binding(scope: &str, role: &str, user_id: &str) -> Binding {
    Binding {
        scope: scope.to_owned(),
        role: role.to_owned(),
        user_id: user_id.to_owned(),
        labels: Map::new(),
        annotations: Map::new(),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// RFC 3339 UTC time of `secs` since the epoch.
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json_response(
        status,
        NORMAN_JSON,
        &json!({
            "type": "error",
            "baseType": "error",
            "status": status.as_u16(),
            "code": code,
            "message": message,
        }),
    )
}

fn not_found(what: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{what} not found"),
    )
}

fn forbidden() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "PermissionDenied",
        "the caller may not perform this action",
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                if let Ok(b) = u8::from_str_radix(hex, 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_map(uri: &Uri) -> BTreeMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn authenticate(state: &RancherState, headers: &HeaderMap) -> Option<Caller> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    let pair = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = data_encoding::BASE64.decode(rest.trim().as_bytes()).ok()?;
        String::from_utf8(decoded).ok()?
    } else {
        return None;
    };
    let (name, secret) = pair.split_once(':')?;
    let db = lock(&state.db);
    let token = db.tokens.get(name)?;
    if token.secret != secret || token.expires_at.is_some_and(|at| at <= now_secs()) {
        return None;
    }
    let user = db.users.get(&token.user_id)?;
    if !user.enabled {
        return None;
    }
    Some(Caller {
        user_id: token.user_id.clone(),
        token_id: name.to_owned(),
        privileged: db.privileged.contains(&token.user_id),
    })
}

async fn dispatch(State(state): State<Arc<RancherState>>, request: Recorded) -> Response {
    state.common.maybe_stall().await;
    let segments: Vec<String> = request
        .uri
        .path()
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    let query = query_map(&request.uri);
    let body: Value = if request.body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&request.body) {
            Ok(v) => v,
            Err(_) => {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "InvalidBodyContent",
                    "the body is not valid JSON",
                );
            }
        }
    };
    let base = lock(&state.base).clone();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    if let ["v3-public", "localProviders", "local"] = seg.as_slice() {
        if request.method == Method::POST
            && query.get("action").map(String::as_str) == Some("login")
        {
            return login(&state, &base, &body);
        }
        return error(StatusCode::NOT_FOUND, "NotFound", "not found");
    }
    let Some(caller) = authenticate(&state, &request.headers) else {
        return unauthenticated();
    };
    let mut response = route(&state, &base, &caller, &request.method, &seg, &query, &body);
    // Norman names the schema collection on every answer; schema-driven clients read it.
    if let Ok(value) = format!("{base}/v3/schemas").parse() {
        response.headers_mut().insert("x-api-schemas", value);
    }
    response
}

/// Rancher's authentication filter's answer, before Norman sees the request: its own error
/// shape, with `status` a string and no `code`.
fn unauthenticated() -> Response {
    json_response(
        StatusCode::UNAUTHORIZED,
        NORMAN_JSON,
        &json!({
            "type": "error",
            "status": "401",
            "message": "Unauthorized 401: must authenticate",
        }),
    )
}

fn route(
    state: &RancherState,
    base: &str,
    caller: &Caller,
    method: &Method,
    seg: &[&str],
    query: &BTreeMap<String, String>,
    body: &Value,
) -> Response {
    let method_not_allowed = || {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllow",
            "method not allowed",
        )
    };
    match seg {
        ["v3"] if method == Method::GET => {
            json_response(StatusCode::OK, NORMAN_JSON, &schema::api_root(base))
        }
        ["v3", "schemas"] if method == Method::GET => {
            json_response(StatusCode::OK, NORMAN_JSON, &schema::collection(base))
        }
        ["v3", "schemas", id] if method == Method::GET => match schema::by_id(id) {
            Some(t) => json_response(StatusCode::OK, NORMAN_JSON, &t.to_json(base)),
            None => not_found(id),
        },
        ["v3", "schemas", ..] | ["v3"] => method_not_allowed(),
        ["v3", parent @ ("clusters" | "projects"), id, sub] if method == Method::GET => {
            sub_list(state, base, caller, parent, id, sub, query)
        }
        ["v3", collection] => {
            if method == Method::GET {
                list(state, base, caller, collection, query)
            } else if method == Method::POST {
                create(state, base, caller, collection, body)
            } else {
                method_not_allowed()
            }
        }
        ["v3", collection, id] => {
            if method == Method::POST {
                let Some(action) = query.get("action") else {
                    return method_not_allowed();
                };
                act(state, base, caller, collection, id, action, body)
            } else if method == Method::GET {
                get_one(state, base, caller, collection, id)
            } else if method == Method::DELETE {
                remove(state, base, caller, collection, id)
            } else if method == Method::PUT {
                update(state, base, caller, collection, id, body)
            } else {
                method_not_allowed()
            }
        }
        _ => error(StatusCode::NOT_FOUND, "NotFound", "not found"),
    }
}

fn user_json(base: &str, db: &Db, caller: &Caller, id: &str, user: &UserRec) -> Value {
    let url = format!("{base}/v3/users/{id}");
    let _ = db;
    json!({
        "type": "user",
        "baseType": "user",
        "id": id,
        "username": user.username,
        "name": user.name,
        "description": user.description,
        "enabled": user.enabled,
        "mustChangePassword": user.must_change_password,
        "principalIds": [format!("local://{id}")],
        "me": caller.user_id == id,
        "labels": user.labels,
        "annotations": user.annotations,
        "created": rfc3339(user.created),
        "state": if user.enabled { "active" } else { "inactive" },
        "links": {"self": url, "update": url, "remove": url},
        "actions": {"setpassword": format!("{url}?action=setpassword")},
    })
}

fn binding_json(base: &str, collection: &str, id: &str, b: &Binding, db: &Db) -> Value {
    let url = format!("{base}/v3/{collection}/{id}");
    let (kind, scope_field, role_field) = match collection {
        "clusterroletemplatebindings" => {
            ("clusterRoleTemplateBinding", "clusterId", "roleTemplateId")
        }
        "projectroletemplatebindings" => {
            ("projectRoleTemplateBinding", "projectId", "roleTemplateId")
        }
        _ => ("globalRoleBinding", "globalRoleId", "globalRoleId"),
    };
    let mut value = json!({
        "type": kind,
        "baseType": kind,
        "id": id,
        "name": id.rsplit(':').next().unwrap_or(id),
        "userId": b.user_id,
        "userPrincipalId": format!("local://{}", b.user_id),
        "groupPrincipalId": null,
        "labels": b.labels,
        "annotations": b.annotations,
        "links": {"self": url, "remove": url, "update": url},
        "actions": {},
    });
    value[scope_field] = b.scope.clone().into();
    value[role_field] = b.role.clone().into();
    if let Some((ns, _)) = id.split_once(':') {
        value["namespaceId"] = ns.into();
    }
    let _ = db;
    value
}

fn token_json(base: &str, caller: &Caller, id: &str, t: &TokenRec) -> Value {
    let url = format!("{base}/v3/tokens/{id}");
    json!({
        "type": "token",
        "baseType": "token",
        "id": id,
        "name": id,
        "userId": t.user_id,
        "userPrincipal": format!("local://{}", t.user_id),
        "authProvider": "local",
        "description": t.description,
        "ttl": t.ttl_ms,
        "expiresAt": t.expires_at.map(rfc3339).unwrap_or_default(),
        "expired": t.expires_at.is_some_and(|at| at <= now_secs()),
        "isDerived": t.derived,
        "current": caller.token_id == id,
        "enabled": true,
        "clusterId": null,
        "created": rfc3339(t.created),
        "labels": t.labels,
        "links": {"self": url, "remove": url},
        "actions": {},
    })
}

fn cluster_json(base: &str, id: &str, name: &str) -> Value {
    let url = format!("{base}/v3/clusters/{id}");
    json!({
        "type": "cluster",
        "baseType": "cluster",
        "id": id,
        "name": name,
        "state": "active",
        "internal": id == LOCAL_CLUSTER,
        "links": {
            "self": url,
            "projects": format!("{url}/projects"),
            "clusterRoleTemplateBindings": format!("{url}/clusterroletemplatebindings"),
        },
        "actions": {
            "generateKubeconfig": format!("{url}?action=generateKubeconfig"),
        },
    })
}

fn project_json(base: &str, id: &str, cluster: &str, name: &str) -> Value {
    let url = format!("{base}/v3/projects/{id}");
    json!({
        "type": "project",
        "baseType": "project",
        "id": id,
        "name": name,
        "clusterId": cluster,
        "namespaceId": cluster,
        "state": "active",
        "links": {
            "self": url,
            "projectRoleTemplateBindings": format!("{url}/projectroletemplatebindings"),
        },
        "actions": {},
    })
}

fn role_template_json(base: &str, id: &str, name: &str, context: &str, locked: bool) -> Value {
    json!({
        "type": "roleTemplate",
        "baseType": "roleTemplate",
        "id": id,
        "name": name,
        "context": context,
        "builtin": true,
        "external": false,
        "hidden": false,
        "locked": locked,
        "administrative": id == "cluster-owner",
        "clusterCreatorDefault": id == "cluster-owner",
        "projectCreatorDefault": id == "project-owner",
        "links": {"self": format!("{base}/v3/roletemplates/{id}")},
        "actions": {},
    })
}

/// Every item of a collection the caller may see, as JSON.
fn items(db: &Db, base: &str, caller: &Caller, collection: &str) -> Option<Vec<Value>> {
    let own = |user_id: &str| caller.privileged || caller.user_id == user_id;
    let out = match collection {
        "users" => db
            .users
            .iter()
            .filter(|(id, _)| own(id))
            .map(|(id, u)| user_json(base, db, caller, id, u))
            .collect(),
        "globalrolebindings" | "clusterroletemplatebindings" | "projectroletemplatebindings" => {
            let map = match collection {
                "globalrolebindings" => &db.grbs,
                "clusterroletemplatebindings" => &db.crtbs,
                _ => &db.prtbs,
            };
            map.iter()
                .filter(|(_, b)| own(&b.user_id))
                .map(|(id, b)| binding_json(base, collection, id, b, db))
                .collect()
        }
        "tokens" => db
            .tokens
            .iter()
            .filter(|(_, t)| own(&t.user_id))
            .map(|(id, t)| token_json(base, caller, id, t))
            .collect(),
        "clusters" => db
            .clusters
            .iter()
            .filter(|(id, _)| db.visible_cluster(caller, id))
            .map(|(id, name)| cluster_json(base, id, name))
            .collect(),
        "projects" => db
            .projects
            .iter()
            .filter(|(id, _)| db.visible_project(caller, id))
            .map(|(id, (cluster, name))| project_json(base, id, cluster, name))
            .collect(),
        "roletemplates" => db
            .role_templates
            .iter()
            .map(|(id, (name, context, locked))| {
                role_template_json(base, id, name, context, *locked)
            })
            .collect(),
        _ => return None,
    };
    Some(out)
}

fn field_matches(item: &Value, key: &str, wanted: &str) -> bool {
    match item.get(key) {
        Some(Value::String(s)) => s == wanted,
        Some(Value::Bool(b)) => b.to_string() == wanted,
        Some(Value::Number(n)) => n.to_string() == wanted,
        _ => false,
    }
}

fn list(
    state: &RancherState,
    base: &str,
    caller: &Caller,
    collection: &str,
    query: &BTreeMap<String, String>,
) -> Response {
    let db = lock(&state.db);
    let (Some(spec), Some(mut all)) = (
        schema::by_collection(collection),
        items(&db, base, caller, collection),
    ) else {
        return not_found("collection");
    };
    let conditions = spec.conditions(query);
    for (field, modifier, wanted) in &conditions {
        let negated = matches!(*modifier, "ne" | "notin");
        all.retain(|item| field_matches(item, field, wanted) != negated);
    }
    let total = all.len();
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(db.page_size)
        .clamp(1, db.page_size);
    let start = query
        .get("marker")
        .and_then(|m| all.iter().position(|i| i["id"] == m.as_str()))
        .unwrap_or(0);
    let page: Vec<Value> = all.iter().skip(start).take(limit).cloned().collect();
    let mut pagination = json!({"limit": limit, "total": total});
    if let Some(next) = all.get(start + limit) {
        let mut params: Vec<String> = query
            .iter()
            .filter(|(k, _)| k.as_str() != "marker")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        params.push(format!("marker={}", next["id"].as_str().unwrap_or("")));
        pagination["next"] = format!("{base}/v3/{collection}?{}", params.join("&")).into();
        pagination["partial"] = true.into();
    }
    let resource_type = spec.id;
    let mut value = json!({
        "type": "collection",
        "resourceType": resource_type,
        "links": {"self": format!("{base}/v3/{collection}")},
        "actions": {},
        "pagination": pagination,
        "filters": spec.applied_filters(&conditions),
        "sortLinks": {},
        "data": page,
    });
    if spec.creatable() {
        value["createTypes"] = json!({resource_type: format!("{base}/v3/{collection}")});
    }
    json_response(StatusCode::OK, NORMAN_JSON, &value)
}

/// `GET /v3/clusters/{id}/{collection}` and `GET /v3/projects/{id}/{collection}`: Norman's
/// sub-context links, the collection filtered by `clusterId` or `projectId`.
fn sub_list(
    state: &RancherState,
    base: &str,
    caller: &Caller,
    parent: &str,
    id: &str,
    sub: &str,
    query: &BTreeMap<String, String>,
) -> Response {
    let (field, allowed): (&str, &[&str]) = match parent {
        "clusters" => ("clusterId", &["projects", "clusterroletemplatebindings"]),
        _ => ("projectId", &["projectroletemplatebindings"]),
    };
    {
        let db = lock(&state.db);
        let visible = match parent {
            "clusters" => db.clusters.contains_key(id) && db.visible_cluster(caller, id),
            _ => db.projects.contains_key(id) && db.visible_project(caller, id),
        };
        if !visible {
            return not_found(id);
        }
    }
    if !allowed.contains(&sub) {
        return not_found(sub);
    }
    let mut query = query.clone();
    query.insert(field.to_owned(), id.to_owned());
    list(state, base, caller, sub, &query)
}

fn get_one(
    state: &RancherState,
    base: &str,
    caller: &Caller,
    collection: &str,
    id: &str,
) -> Response {
    let db = lock(&state.db);
    let Some(all) = items(&db, base, caller, collection) else {
        return not_found("collection");
    };
    match all.into_iter().find(|i| i["id"] == id) {
        Some(item) => json_response(StatusCode::OK, NORMAN_JSON, &item),
        None => not_found(id),
    }
}

fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn object_field(body: &Value, key: &str) -> Map<String, Value> {
    body.get(key)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn missing(field: &str) -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "MissingRequired",
        &format!("{field} is required"),
    )
}

fn create(
    state: &RancherState,
    base: &str,
    caller: &Caller,
    collection: &str,
    body: &Value,
) -> Response {
    let mut db = lock(&state.db);
    if collection == "tokens" {
        // Any user may create tokens for itself.
        let ttl = body.get("ttl").and_then(Value::as_u64).unwrap_or(0);
        let description = str_field(body, "description").unwrap_or("");
        let (id, secret) = db.mint_token("token-", &caller.user_id, description, ttl, true);
        let mut value = token_json(base, caller, &id, &db.tokens[&id]);
        value["token"] = format!("{id}:{secret}").into();
        return json_response(StatusCode::CREATED, NORMAN_JSON, &value);
    }
    if !caller.privileged {
        return forbidden();
    }
    match collection {
        "users" => {
            let Some(username) = str_field(body, "username") else {
                return missing("username");
            };
            let Some(password) = str_field(body, "password") else {
                return missing("password");
            };
            if password.chars().count() < MIN_PASSWORD_LEN {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "MinLengthExceeded",
                    &format!("password must be at least {MIN_PASSWORD_LEN} characters"),
                );
            }
            if db.users.values().any(|u| u.username == username) {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "NotUnique",
                    "username is already in use",
                );
            }
            let id = db.fresh_id("u-", |db, id| db.users.contains_key(id));
            let user = UserRec {
                username: username.to_owned(),
                name: str_field(body, "name").unwrap_or("").to_owned(),
                description: str_field(body, "description").unwrap_or("").to_owned(),
                enabled: body.get("enabled").and_then(Value::as_bool).unwrap_or(true),
                must_change_password: body
                    .get("mustChangePassword")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                password: Some(password.to_owned()),
                labels: object_field(body, "labels"),
                annotations: object_field(body, "annotations"),
                created: now_secs(),
            };
            let value = user_json(base, &db, caller, &id, &user);
            db.users.insert(id, user);
            json_response(StatusCode::CREATED, NORMAN_JSON, &value)
        }
        "globalrolebindings" | "clusterroletemplatebindings" | "projectroletemplatebindings" => {
            let Some(user_id) = str_field(body, "userId") else {
                return missing("userId");
            };
            if !db.users.contains_key(user_id) {
                return invalid_reference("userId");
            }
            let (scope_field, role_field) = match collection {
                "globalrolebindings" => ("globalRoleId", "globalRoleId"),
                "clusterroletemplatebindings" => ("clusterId", "roleTemplateId"),
                _ => ("projectId", "roleTemplateId"),
            };
            let Some(scope) = str_field(body, scope_field) else {
                return missing(scope_field);
            };
            let Some(role) = str_field(body, role_field) else {
                return missing(role_field);
            };
            let mut b = binding(scope, role, user_id);
            b.labels = object_field(body, "labels");
            b.annotations = object_field(body, "annotations");
            let id = match collection {
                "globalrolebindings" => {
                    if !matches!(role, "admin" | "restricted-admin" | "user" | "user-base") {
                        return invalid_reference("globalRoleId");
                    }
                    db.fresh_id("grb-", |db, id| db.grbs.contains_key(id))
                }
                "clusterroletemplatebindings" => {
                    if !db.clusters.contains_key(scope) {
                        return invalid_reference("clusterId");
                    }
                    if let Some(r) = template_problem(&db, role, "cluster") {
                        return r;
                    }
                    let prefix = format!("{scope}:crtb-");
                    db.fresh_id(&prefix, |db, id| db.crtbs.contains_key(id))
                }
                _ => {
                    if !db.projects.contains_key(scope) {
                        return invalid_reference("projectId");
                    }
                    if let Some(r) = template_problem(&db, role, "project") {
                        return r;
                    }
                    let ns = scope.rsplit(':').next().unwrap_or(scope);
                    let prefix = format!("{ns}:prtb-");
                    db.fresh_id(&prefix, |db, id| db.prtbs.contains_key(id))
                }
            };
            let value = binding_json(base, collection, &id, &b, &db);
            match collection {
                "globalrolebindings" => db.grbs.insert(id, b),
                "clusterroletemplatebindings" => db.crtbs.insert(id, b),
                _ => db.prtbs.insert(id, b),
            };
            json_response(StatusCode::CREATED, NORMAN_JSON, &value)
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllow",
            "method not allowed",
        ),
    }
}

fn invalid_reference(field: &str) -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        "InvalidReference",
        &format!("{field} refers to nothing"),
    )
}

/// Why a binding may not refer to role template `role` in `context`, if it may not.
fn template_problem(db: &Db, role: &str, context: &str) -> Option<Response> {
    match db.role_templates.get(role) {
        None => Some(invalid_reference("roleTemplateId")),
        Some((_, c, _)) if c != context => Some(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidBodyContent",
            &format!("referenced role template must have context {context}"),
        )),
        Some((_, _, true)) => Some(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidBodyContent",
            "referenced role template is locked",
        )),
        Some(_) => None,
    }
}

fn remove(
    state: &RancherState,
    base: &str,
    caller: &Caller,
    collection: &str,
    id: &str,
) -> Response {
    let mut db = lock(&state.db);
    let value = match collection {
        "tokens" => match db.tokens.get(id) {
            Some(t) if caller.privileged || t.user_id == caller.user_id => {
                let v = token_json(base, caller, id, t);
                db.tokens.remove(id);
                v
            }
            _ => return not_found(id),
        },
        _ if !caller.privileged => return forbidden(),
        "users" => {
            let Some(user) = db.users.remove(id) else {
                return not_found(id);
            };
            db.privileged.remove(id);
            db.tokens.retain(|_, t| t.user_id != id);
            db.grbs.retain(|_, b| b.user_id != id);
            db.crtbs.retain(|_, b| b.user_id != id);
            db.prtbs.retain(|_, b| b.user_id != id);
            user_json(base, &db, caller, id, &user)
        }
        "globalrolebindings" | "clusterroletemplatebindings" | "projectroletemplatebindings" => {
            let map = match collection {
                "globalrolebindings" => &mut db.grbs,
                "clusterroletemplatebindings" => &mut db.crtbs,
                _ => &mut db.prtbs,
            };
            let Some(b) = map.remove(id) else {
                return not_found(id);
            };
            binding_json(base, collection, id, &b, &db)
        }
        _ => {
            return error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllow",
                "method not allowed",
            );
        }
    };
    json_response(StatusCode::OK, NORMAN_JSON, &value)
}

fn update(
    state: &RancherState,
    base: &str,
    caller: &Caller,
    collection: &str,
    id: &str,
    body: &Value,
) -> Response {
    if collection != "users" {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllow",
            "method not allowed",
        );
    }
    if !caller.privileged {
        return forbidden();
    }
    let mut db = lock(&state.db);
    let Some(user) = db.users.get_mut(id) else {
        return not_found(id);
    };
    if let Some(v) = str_field(body, "name") {
        v.clone_into(&mut user.name);
    }
    if let Some(v) = body.get("description").and_then(Value::as_str) {
        v.clone_into(&mut user.description);
    }
    if let Some(v) = body.get("enabled").and_then(Value::as_bool) {
        user.enabled = v;
    }
    if body.get("labels").is_some() {
        user.labels = object_field(body, "labels");
    }
    if body.get("annotations").is_some() {
        user.annotations = object_field(body, "annotations");
    }
    let user = user.clone();
    json_response(
        StatusCode::OK,
        NORMAN_JSON,
        &user_json(base, &db, caller, id, &user),
    )
}

fn act(
    state: &RancherState,
    base: &str,
    caller: &Caller,
    collection: &str,
    id: &str,
    action: &str,
    body: &Value,
) -> Response {
    let mut db = lock(&state.db);
    match (collection, action) {
        ("users", "setpassword") => {
            if !caller.privileged {
                return forbidden();
            }
            let Some(password) = str_field(body, "newPassword") else {
                return missing("newPassword");
            };
            if password.chars().count() < MIN_PASSWORD_LEN {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "MinLengthExceeded",
                    &format!("password must be at least {MIN_PASSWORD_LEN} characters"),
                );
            }
            let Some(user) = db.users.get_mut(id) else {
                return not_found(id);
            };
            user.password = Some(password.to_owned());
            user.must_change_password = false;
            let user = user.clone();
            json_response(
                StatusCode::OK,
                NORMAN_JSON,
                &user_json(base, &db, caller, id, &user),
            )
        }
        ("clusters", "generateKubeconfig") => {
            let Some(name) = db.clusters.get(id).cloned() else {
                return not_found(id);
            };
            if !db.visible_cluster(caller, id) {
                return not_found(id);
            }
            let ttl = KUBECONFIG_TOKEN_TTL.as_millis() as u64;
            let prefix = format!("kubeconfig-{}", caller.user_id);
            let (token_id, secret) =
                db.mint_token(&prefix, &caller.user_id, "Kubeconfig token", ttl, false);
            let ca = data_encoding::BASE64.encode(state.ca_pem.as_bytes());
            let config = format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: \"{name}\"\n  cluster:\n    server: \"{base}/k8s/clusters/{id}\"\n    certificate-authority-data: \"{ca}\"\n\nusers:\n- name: \"{name}\"\n  user:\n    token: \"{token_id}:{secret}\"\n\ncontexts:\n- name: \"{name}\"\n  context:\n    user: \"{name}\"\n    cluster: \"{name}\"\n\ncurrent-context: \"{name}\"\n"
            );
            json_response(
                StatusCode::OK,
                NORMAN_JSON,
                &json!({"type": "generateKubeConfigOutput", "baseType": "generateKubeConfigOutput", "config": config}),
            )
        }
        _ => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidAction",
            &format!("invalid action {action}"),
        ),
    }
}

fn login(state: &RancherState, base: &str, body: &Value) -> Response {
    let failed = || {
        error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "authentication failed",
        )
    };
    let (Some(username), Some(password)) =
        (str_field(body, "username"), str_field(body, "password"))
    else {
        return failed();
    };
    let mut db = lock(&state.db);
    let Some((id, _)) = db
        .users
        .iter()
        .find(|(_, u)| {
            u.username == username && u.enabled && u.password.as_deref() == Some(password)
        })
        .map(|(id, u)| (id.clone(), u.clone()))
    else {
        return failed();
    };
    let ttl = body
        .get("ttl")
        .and_then(Value::as_u64)
        .unwrap_or(16 * 3600 * 1000);
    let description = str_field(body, "description").unwrap_or("");
    let (token_id, secret) = db.mint_token("token-", &id, description, ttl, false);
    let caller = Caller {
        user_id: id,
        token_id: token_id.clone(),
        privileged: false,
    };
    let mut value = token_json(base, &caller, &token_id, &db.tokens[&token_id]);
    value["token"] = format!("{token_id}:{secret}").into();
    json_response(StatusCode::CREATED, NORMAN_JSON, &value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(1_798_761_600), "2027-01-01T00:00:00Z");
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("c-1%3Ap-2"), "c-1:p-2");
        assert_eq!(percent_decode("a%2"), "a%2");
    }
}
