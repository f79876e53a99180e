//! [`Client`]: the typed HTTP client of the connector API (`/api/v1`).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::error::{ClientError, sanitize};
use crate::model::{
    AccessDetails, AccessRequest, AccessSession, ApiToken, AuditRecord, DeviceSignIn, DryRun,
    Integration, Me, NewRequest, PermissionEntry, RequestScope, Resource, ResourceTypeEntry,
    SignedIn,
};

/// Settings of a [`Client`] beyond its URL and token.
#[derive(Clone, Debug)]
pub struct ClientBuilder {
    url: String,
    token: SecretString,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    ca_certs: Vec<reqwest::Certificate>,
    allow_insecure_http: bool,
}

impl ClientBuilder {
    /// Deadline of one HTTP call (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Deadline of establishing a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The `User-Agent` header (default `apono-client/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Trusts the CA certificates in `pem` (one or more PEM certificates, such as the file
    /// `--ca-cert` names) besides the system's roots; `path` names the file in errors.
    pub fn ca_cert_pem(mut self, pem: &[u8], path: &str) -> Result<Self, ClientError> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ClientError::CaCert {
                path: sanitize(path, 200),
            })?;
        self.ca_certs.extend(certs);
        Ok(self)
    }

    /// Allows plain `http://` to a host that is not loopback (refused by default: the token
    /// would cross the network in clear).
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.allow_insecure_http = allow;
        self
    }

    /// Checks the URL and builds the client. Nothing is sent yet. Plain `http://` to a host
    /// that is not loopback is refused unless [`ClientBuilder::allow_insecure_http`].
    pub fn build(self) -> Result<Client, ClientError> {
        let base = parse_base_url(&self.url)?;
        if base.scheme() == "http" && !self.allow_insecure_http && !is_loopback(&base) {
            return Err(ClientError::InsecureUrl {
                url: display_url(&base),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent)
            .tls_certs_merge(self.ca_certs)
            .build()
            .map_err(|e| ClientError::Unreachable {
                url: display_url(&base),
                source: Box::new(e),
            })?;
        Ok(Client {
            http,
            base,
            token: self.token,
            timeout: self.timeout,
        })
    }
}

/// Checks a connector URL: `http` or `https`, with a host, without query or credentials.
/// Returns it with a trailing `/`, ready for joining `api/v1/…`.
pub fn parse_base_url(text: &str) -> Result<Url, ClientError> {
    let invalid = || ClientError::InvalidUrl {
        url: sanitize(text, 200),
    };
    let mut url = Url::parse(text.trim()).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(invalid());
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// Whether `url`'s host is `localhost` or a loopback address.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn display_url(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// The typed client of one connector, authenticated with a personal token.
///
/// Cheap to clone; every method is one HTTP call except the `wait_*` helpers, which long-poll
/// the connector's watch endpoints.
/// The token never appears in `Debug` output, logs or errors.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: SecretString,
    /// The deadline of one call: a watch waits less than that on the connector.
    timeout: Duration,
}

impl Client {
    /// A client of the connector at `url` (such as `http://127.0.0.1:8080`).
    pub fn new(url: &str, token: SecretString) -> Result<Self, ClientError> {
        Self::builder(url, token).build()
    }

    /// A builder with the default timeouts.
    pub fn builder(url: &str, token: SecretString) -> ClientBuilder {
        ClientBuilder {
            url: url.to_owned(),
            token,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            user_agent: concat!("apono-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            ca_certs: Vec::new(),
            allow_insecure_http: false,
        }
    }

    /// The connector's base URL, without a trailing `/`.
    pub fn url(&self) -> String {
        display_url(&self.base)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        match self.call_versioned(method, path, query, body).await? {
            Answer::Found(value, _) => Ok(value),
            Answer::NoSuchRoute => Err(ClientError::Malformed {
                url: self.url(),
                what: "HTTP 404 without an API error body".into(),
            }),
        }
    }

    /// One call; a success comes with its `ETag` (unquoted), and a 404 without the API's error
    /// body (a route this connector does not have) is told apart from a missing object.
    #[tracing::instrument(skip_all, fields(%method, %path))]
    async fn call_versioned<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<Answer<T>, ClientError> {
        let mut url = self
            .base
            .join(path)
            .map_err(|_| ClientError::InvalidUrl { url: self.url() })?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(self.token.expose_secret())
            .header("accept", "application/json");
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = req.send().await.map_err(|e| self.transport(e))?;
        let status = response.status();
        let version = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_owned());
        let bytes = response.bytes().await.map_err(|e| self.transport(e))?;
        tracing::debug!(status = status.as_u16(), bytes = bytes.len(), "answer");
        if status == StatusCode::NOT_FOUND
            && serde_json::from_slice::<serde_json::Value>(&bytes).is_err()
        {
            return Ok(Answer::NoSuchRoute);
        }
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map(|value| Answer::Found(value, version))
                .map_err(|e| ClientError::Malformed {
                    url: self.url(),
                    what: if serde_json::from_slice::<serde_json::Value>(&bytes).is_ok() {
                        format!("{path}: {}", sanitize(&e.to_string(), 200))
                    } else {
                        format!("{path}: the body is not JSON (HTTP {})", status.as_u16())
                    },
                });
        }
        Err(self.http_error(status, &bytes))
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        if e.is_timeout() {
            ClientError::Timeout { url: self.url() }
        } else if e.is_decode() || e.is_body() {
            ClientError::Malformed {
                url: self.url(),
                what: "the answer was cut short".into(),
            }
        } else {
            ClientError::Unreachable {
                url: self.url(),
                source: Box::new(e),
            }
        }
    }

    fn http_error(&self, status: StatusCode, bytes: &[u8]) -> ClientError {
        #[derive(serde::Deserialize)]
        struct Problem {
            error: String,
            #[serde(default)]
            problems: Vec<String>,
        }
        let problem: Option<Problem> = serde_json::from_slice(bytes).ok();
        if status == StatusCode::UNAUTHORIZED {
            return ClientError::Unauthenticated;
        }
        let Some(problem) = problem else {
            return if status.is_server_error() {
                ClientError::Server {
                    url: self.url(),
                    status: status.as_u16(),
                    message: "no explanation given".into(),
                }
            } else {
                ClientError::Malformed {
                    url: self.url(),
                    what: format!("HTTP {} without an API error body", status.as_u16()),
                }
            };
        };
        let message = sanitize(&problem.error, 500);
        match status {
            StatusCode::FORBIDDEN => ClientError::Forbidden { message },
            StatusCode::NOT_FOUND => ClientError::NotFound { message },
            StatusCode::CONFLICT => ClientError::Conflict { message },
            StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => ClientError::Invalid {
                problems: if problem.problems.is_empty() {
                    vec![message]
                } else {
                    problem.problems.iter().map(|p| sanitize(p, 300)).collect()
                },
            },
            _ => ClientError::Server {
                url: self.url(),
                status: status.as_u16(),
                message,
            },
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        self.call(Method::GET, path, query, None).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, &[], body).await
    }

    /// Starts a sign-in through an identity provider (`POST /api/v1/auth/oidc/start`):
    /// `(authorization_url, state)`. Needs no token.
    pub async fn sso_start(
        &self,
        provider: Option<&str>,
        redirect_uri: &str,
    ) -> Result<(String, String), ClientError> {
        #[derive(serde::Deserialize)]
        struct Started {
            authorization_url: String,
            state: String,
        }
        let s: Started = self
            .post(
                "api/v1/auth/oidc/start",
                Some(serde_json::json!({ "provider": provider, "redirect_uri": redirect_uri })),
            )
            .await?;
        Ok((s.authorization_url, s.state))
    }

    /// Finishes a sign-in with the code and state the provider sent back
    /// (`POST /api/v1/auth/oidc/callback`): the connector's token and who it is for.
    pub async fn sso_callback(&self, state: &str, code: &str) -> Result<SignedIn, ClientError> {
        self.post(
            "api/v1/auth/oidc/callback",
            Some(serde_json::json!({ "state": state, "code": code })),
        )
        .await
    }

    /// Starts a device-authorization sign-in (`POST /api/v1/auth/oidc/device`).
    pub async fn sso_device(&self, provider: Option<&str>) -> Result<DeviceSignIn, ClientError> {
        self.post(
            "api/v1/auth/oidc/device",
            Some(serde_json::json!({ "provider": provider })),
        )
        .await
    }

    /// Polls a device-authorization sign-in: `None` while the person has not finished.
    pub async fn sso_device_token(&self, handle: &str) -> Result<Option<SignedIn>, ClientError> {
        let value: serde_json::Value = self
            .post(
                "api/v1/auth/oidc/device/token",
                Some(serde_json::json!({ "handle": handle })),
            )
            .await?;
        if value.get("pending").is_some() {
            return Ok(None);
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| ClientError::Malformed {
                url: self.url(),
                what: format!(
                    "api/v1/auth/oidc/device/token: {}",
                    sanitize(&e.to_string(), 200)
                ),
            })
    }

    /// Revokes this client's token when it comes from a sign-in (`POST /api/v1/auth/logout`);
    /// `false` for a personal token (left alone).
    pub async fn sso_logout(&self) -> Result<bool, ClientError> {
        #[derive(serde::Deserialize)]
        struct Out {
            revoked: bool,
        }
        let out: Out = self.post("api/v1/auth/logout", None).await?;
        Ok(out.revoked)
    }

    /// Who the personal token belongs to (`GET /api/v1/me`); proves the URL and the token.
    pub async fn me(&self) -> Result<Me, ClientError> {
        self.get("api/v1/me", &[]).await
    }

    /// The integrations the connector serves.
    pub async fn integrations(&self) -> Result<Vec<Integration>, ClientError> {
        self.get("api/v1/integrations", &[]).await
    }

    /// Finds an integration by its name or by `type/name`.
    pub async fn find_integration(&self, spec: &str) -> Result<Integration, ClientError> {
        let all = self.integrations().await?;
        let found = match spec.split_once('/') {
            Some((t, name)) => all
                .into_iter()
                .find(|i| i.integration_type == t && i.name == name),
            None => all.into_iter().find(|i| i.name == spec),
        };
        found.ok_or_else(|| ClientError::NotFound {
            message: format!(
                "integration {spec:?} not found (apono inventory integrations lists them)"
            ),
        })
    }

    /// Resource types, optionally of one integration.
    pub async fn resource_types(
        &self,
        integration: Option<&str>,
    ) -> Result<Vec<ResourceTypeEntry>, ClientError> {
        let all: Vec<ResourceTypeEntry> = self.get("api/v1/resource-types", &[]).await?;
        Ok(all
            .into_iter()
            .filter(|t| integration.is_none_or(|i| t.integration == i))
            .collect())
    }

    /// Discovered resources, optionally of one integration.
    pub async fn resources(&self, integration: Option<&str>) -> Result<Vec<Resource>, ClientError> {
        self.get("api/v1/resources", &filter(integration)).await
    }

    /// Permissions that may be requested, optionally of one integration.
    pub async fn permissions(
        &self,
        integration: Option<&str>,
    ) -> Result<Vec<PermissionEntry>, ClientError> {
        self.get("api/v1/permissions", &filter(integration)).await
    }

    /// Checks a request against the access flows without creating it.
    pub async fn dry_run(&self, request: &NewRequest) -> Result<DryRun, ClientError> {
        self.post("api/v1/access-requests/dry-run", Some(to_json(request)))
            .await
    }

    /// Creates an access request.
    pub async fn create_request(&self, request: &NewRequest) -> Result<AccessRequest, ClientError> {
        self.post("api/v1/access-requests", Some(to_json(request)))
            .await
    }

    /// Lists requests.
    pub async fn requests(&self, scope: RequestScope) -> Result<Vec<AccessRequest>, ClientError> {
        self.get(
            "api/v1/access-requests",
            &[("scope", scope.as_str().into())],
        )
        .await
    }

    /// One request.
    pub async fn request(&self, id: &str) -> Result<AccessRequest, ClientError> {
        self.get(&format!("api/v1/access-requests/{}", segment(id)?), &[])
            .await
    }

    /// Approves a pending request. The reason is sent along for connectors that record it.
    pub async fn approve(
        &self,
        id: &str,
        reason: Option<&str>,
    ) -> Result<AccessRequest, ClientError> {
        let body = reason.map(|r| serde_json::json!({ "reason": r }));
        self.post(
            &format!("api/v1/access-requests/{}/approve", segment(id)?),
            body,
        )
        .await
    }

    /// Rejects a pending request with a reason.
    pub async fn reject(&self, id: &str, reason: &str) -> Result<AccessRequest, ClientError> {
        self.post(
            &format!("api/v1/access-requests/{}/reject", segment(id)?),
            Some(serde_json::json!({ "reason": reason })),
        )
        .await
    }

    /// Revokes a request early (a pending one is withdrawn).
    pub async fn revoke(&self, id: &str) -> Result<AccessRequest, ClientError> {
        self.post(
            &format!("api/v1/access-requests/{}/revoke", segment(id)?),
            None,
        )
        .await
    }

    /// The caller's access sessions (`all`: everyone's, admins only).
    pub async fn sessions(&self, all: bool) -> Result<Vec<AccessSession>, ClientError> {
        let query = if all {
            vec![("all", "true".to_owned())]
        } else {
            Vec::new()
        };
        self.get("api/v1/access-sessions", &query).await
    }

    /// One access session.
    pub async fn session(&self, id: &str) -> Result<AccessSession, ClientError> {
        self.get(&format!("api/v1/access-sessions/{}", segment(id)?), &[])
            .await
    }

    /// The access details of an active session; the first call carries the one-time
    /// credentials.
    pub async fn access_details(&self, id: &str) -> Result<AccessDetails, ClientError> {
        let value: serde_json::Value = self
            .get(
                &format!("api/v1/access-sessions/{}/access-details", segment(id)?),
                &[],
            )
            .await?;
        AccessDetails::from_json(value).ok_or_else(|| ClientError::Malformed {
            url: self.url(),
            what: "access details do not have the expected shape".into(),
        })
    }

    /// Asks for fresh credentials; the next [`Client::access_details`] shows them once
    /// `credential_status` is `new` again.
    pub async fn reset_credentials(&self, id: &str) -> Result<AccessSession, ClientError> {
        self.post(
            &format!("api/v1/access-sessions/{}/reset-credentials", segment(id)?),
            None,
        )
        .await
    }

    /// API tokens (never the tokens themselves): the caller's own, `user`'s, or with `all`
    /// everyone's (the last two for admins).
    pub async fn tokens(
        &self,
        user: Option<&str>,
        all: bool,
    ) -> Result<Vec<ApiToken>, ClientError> {
        let mut query = Vec::new();
        if let Some(user) = user {
            query.push(("user", user.to_owned()));
        }
        if all {
            query.push(("all", "true".to_owned()));
        }
        self.get("api/v1/tokens", &query).await
    }

    /// Revokes an API token (the caller's own, or anyone's for an admin); every replica refuses
    /// it from its next request.
    pub async fn revoke_token(&self, id: &str) -> Result<ApiToken, ClientError> {
        self.post(&format!("api/v1/tokens/{}/revoke", segment(id)?), None)
            .await
    }

    /// Audit records after sequence number `after`, at most `limit` of them (admins only).
    pub async fn audit(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>, ClientError> {
        self.get(
            "api/v1/audit",
            &[("after", after.to_string()), ("limit", limit.to_string())],
        )
        .await
    }

    /// Waits until `done` holds for request `id`, calling `on_update` with every state seen.
    /// Each change is heard as it is committed: the client long-polls the connector's watch
    /// endpoint (`GET …/{id}/watch`). A connector without it is polled every `poll`. Fails with
    /// [`ClientError::WaitTimeout`] after `timeout`.
    pub async fn wait_for_request(
        &self,
        id: &str,
        timeout: Duration,
        poll: Duration,
        mut done: impl FnMut(&AccessRequest) -> bool,
        mut on_update: impl FnMut(&AccessRequest),
    ) -> Result<AccessRequest, ClientError> {
        let start = Instant::now();
        let mut watch = Watch::new(format!("api/v1/access-requests/{}", segment(id)?), poll);
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let request: AccessRequest = watch.next(self, left).await?;
            on_update(&request);
            if done(&request) {
                return Ok(request);
            }
            if start.elapsed() >= timeout {
                return Err(ClientError::WaitTimeout {
                    id: id.to_owned(),
                    status: request.status.to_string(),
                    waited_seconds: start.elapsed().as_secs(),
                });
            }
        }
    }

    /// Waits until `done` holds for session `id` (as [`Client::wait_for_request`]); `None`
    /// after `timeout` without it.
    pub async fn wait_for_session(
        &self,
        id: &str,
        timeout: Duration,
        poll: Duration,
        mut done: impl FnMut(&AccessSession) -> bool,
    ) -> Result<Option<AccessSession>, ClientError> {
        let start = Instant::now();
        let mut watch = Watch::new(format!("api/v1/access-sessions/{}", segment(id)?), poll);
        loop {
            let left = timeout.saturating_sub(start.elapsed());
            let session: AccessSession = watch.next(self, left).await?;
            if done(&session) {
                return Ok(Some(session));
            }
            if start.elapsed() >= timeout {
                return Ok(None);
            }
        }
    }
}

/// The longest one watch call asks the connector to wait (the connector's own limit).
const MAX_WATCH: Duration = Duration::from_secs(60);

/// What one watch call leaves of the call's deadline for the answer to travel.
const WATCH_MARGIN: Duration = Duration::from_secs(5);

/// An answer: the object with its version, or a route the connector does not have.
enum Answer<T> {
    Found(T, Option<String>),
    NoSuchRoute,
}

/// The state of one wait: the object's path, the version last seen, and whether the connector
/// has the watch endpoint.
struct Watch {
    path: String,
    version: Option<String>,
    first: bool,
    supported: bool,
    poll: Duration,
}

impl Watch {
    fn new(path: String, poll: Duration) -> Self {
        Self {
            path,
            version: None,
            first: true,
            supported: true,
            poll,
        }
    }

    /// The next state: at once the first time, then the next change (or the unchanged state
    /// once `left` is spent).
    async fn next<T: DeserializeOwned>(
        &mut self,
        client: &Client,
        left: Duration,
    ) -> Result<T, ClientError> {
        let first = std::mem::replace(&mut self.first, false);
        if self.supported {
            let wait = left
                .min(client.timeout.saturating_sub(WATCH_MARGIN))
                .min(MAX_WATCH)
                .as_secs();
            if !first && wait == 0 {
                // Less than a second left (or a short call deadline): a short pause, then a look.
                tokio::time::sleep(self.poll.min(left)).await;
            }
            let mut query = vec![("wait", if first { 0 } else { wait }.to_string())];
            if let Some(version) = &self.version {
                query.push(("after", version.clone()));
            }
            let path = format!("{}/watch", self.path);
            match client
                .call_versioned(Method::GET, &path, &query, None)
                .await?
            {
                Answer::Found(value, version) => {
                    self.version = version;
                    return Ok(value);
                }
                Answer::NoSuchRoute => self.supported = false,
            }
        } else if !first {
            tokio::time::sleep(self.poll.min(left)).await;
        }
        client.get(&self.path, &[]).await
    }
}

fn filter(integration: Option<&str>) -> Vec<(&'static str, String)> {
    integration
        .map(|i| vec![("integration", i.to_owned())])
        .unwrap_or_default()
}

fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// An id as one URL path segment: non-empty, no `/`, `?`, `#`, `%` or control characters.
fn segment(id: &str) -> Result<&str, ClientError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
        && id != "."
        && id != "..";
    if ok {
        Ok(id)
    } else {
        Err(ClientError::Usage(format!(
            "{:?} is not a request or session id",
            sanitize(id, 80)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback_unless_allowed() {
        let build = |url: &str, allow: bool| {
            Client::builder(url, "t".into())
                .allow_insecure_http(allow)
                .build()
        };
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:8080",
            "http://[::1]:8080",
            "https://connector.example.com",
        ] {
            build(ok, false).expect(ok);
        }
        for refused in ["http://10.0.0.5:8080", "http://connector.example.com"] {
            let e = build(refused, false).expect_err(refused);
            assert!(matches!(e, ClientError::InsecureUrl { .. }), "{e}");
            build(refused, true).expect(refused);
        }
        let e = Client::builder("https://h", "t".into())
            .ca_cert_pem(b"not a certificate", "/tmp/ca.pem")
            .expect_err("no PEM");
        assert!(e.to_string().contains("/tmp/ca.pem"), "{e}");
    }

    #[test]
    fn base_urls() {
        for good in [
            "http://127.0.0.1:8080",
            "https://apono.example.com/",
            "http://h/prefix",
        ] {
            let url = parse_base_url(good).expect(good);
            assert!(url.as_str().ends_with('/'), "{url}");
        }
        for bad in [
            "",
            "127.0.0.1:8080",
            "ftp://h",
            "http://",
            "http://u:p@h",
            "http://h/?x=1",
            "not a url",
        ] {
            let e = parse_base_url(bad).expect_err(bad);
            assert_eq!(e.kind(), apono_core::ErrorKind::InvalidInput);
        }
        assert_eq!(
            parse_base_url("http://h/prefix")
                .map(|u| u.join("api/v1/x").map(|u| u.to_string()))
                .ok(),
            Some(Ok("http://h/prefix/api/v1/x".to_owned()))
        );
    }

    #[test]
    fn ids_are_single_segments() {
        assert!(segment("r-01HX").is_ok());
        for bad in ["", "..", "a/b", "a?b", "a b", "%2e"] {
            assert!(segment(bad).is_err(), "{bad}");
        }
    }
}
