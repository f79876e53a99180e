//! A fake Slack Web API: the one method the connector calls, `users.info`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use super::FakeError;
use super::server::{
    Common, FakeState, Recorded, RecordedRequest, ServerHandle, json_response, lock,
};

/// `Content-Type` of the Web API's answers, as Slack writes it.
const SLACK_JSON: &str = "application/json; charset=utf-8";

/// The team every fake user belongs to.
pub const FAKE_TEAM: &str = "T0FAKETEAM";

/// A workspace member as `users.info` describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SlackUser {
    /// `U…`.
    pub id: String,
    /// `profile.email`.
    pub email: Option<String>,
    /// A deactivated account.
    pub deleted: bool,
    /// A bot user.
    pub is_bot: bool,
    /// Whether the member confirmed their email address; `None` leaves the field out.
    pub is_email_confirmed: Option<bool>,
}

impl SlackUser {
    /// An active, confirmed human member with `email`.
    pub fn member(id: &str, email: &str) -> Self {
        Self {
            id: id.to_owned(),
            email: Some(email.to_owned()),
            deleted: false,
            is_bot: false,
            is_email_confirmed: Some(true),
        }
    }
}

#[derive(Debug, Default)]
struct SlackState {
    common: Common,
    /// Bot tokens, and whether each has the `users:read.email` scope.
    tokens: Mutex<BTreeMap<String, bool>>,
    users: Mutex<BTreeMap<String, SlackUser>>,
}

impl FakeState for SlackState {
    fn common(&self) -> &Common {
        &self.common
    }
}

/// A fake Slack Web API on plain HTTP under `/api/`:
///
/// * `users.info` by `GET` (query `user`) or `POST` (form body `user`), authenticated by
///   `Authorization: Bearer` ([`FakeSlackApi::add_token`]);
/// * answers as Slack does, HTTP 200 with `{"ok": true, "user": {…}}`, or `{"ok": false,
///   "error": …}` with `not_authed`, `invalid_auth`, `user_not_found` or
///   `invalid_arguments`; `profile.email` only for a token with the `users:read.email` scope.
#[derive(Debug)]
pub struct FakeSlackApi {
    state: Arc<SlackState>,
    server: ServerHandle,
}

impl FakeSlackApi {
    /// Starts the fake on `127.0.0.1` with a free port.
    pub fn start() -> Result<Self, FakeError> {
        let state = Arc::new(SlackState::default());
        let router = Router::new()
            .route("/api/users.info", get(users_info).post(users_info))
            .fallback(unknown_method)
            .with_state(state.clone());
        let server = ServerHandle::spawn("slack", router, None)?;
        Ok(Self { state, server })
    }

    /// The Web API's base URL, `http://127.0.0.1:{port}/api/` (Slack's is
    /// `https://slack.com/api/`).
    pub fn url(&self) -> String {
        format!("http://{}/api/", self.server.addr())
    }

    /// Accepts bot token `token`, with the `users:read.email` scope or without.
    pub fn add_token(&self, token: &str, email_scope: bool) {
        lock(&self.state.tokens).insert(token.to_owned(), email_scope);
    }

    /// Adds or replaces a member.
    pub fn put_user(&self, user: SlackUser) {
        lock(&self.state.users).insert(user.id.clone(), user);
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state.common.requests()
    }
}

fn answer(body: &serde_json::Value) -> Response {
    json_response(StatusCode::OK, SLACK_JSON, body)
}

fn failure(error: &str) -> Response {
    answer(&json!({ "ok": false, "error": error }))
}

/// Whether the request's bearer token has the `users:read.email` scope, or the Web API's
/// error code.
fn authenticate(state: &SlackState, headers: &HeaderMap) -> Result<bool, &'static str> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("not_authed")?;
    let token = value.strip_prefix("Bearer ").unwrap_or_default();
    lock(&state.tokens)
        .get(token)
        .copied()
        .ok_or("invalid_auth")
}

async fn users_info(State(state): State<Arc<SlackState>>, request: Recorded) -> Response {
    state.common.maybe_stall().await;
    let email_scope = match authenticate(&state, &request.headers) {
        Ok(scope) => scope,
        Err(code) => return failure(code),
    };
    // The arguments come in the query string or, for a POST, a form body.
    let mut arguments: BTreeMap<String, String> = request
        .uri
        .query()
        .map(|q| url_pairs(q.as_bytes()))
        .unwrap_or_default();
    if request.method == axum::http::Method::POST {
        arguments.extend(url_pairs(&request.body));
    }
    let Some(id) = arguments.get("user").filter(|u| !u.is_empty()) else {
        return failure("invalid_arguments");
    };
    let users = lock(&state.users);
    let Some(user) = users.get(id) else {
        return failure("user_not_found");
    };
    let mut profile = json!({
        "real_name": user.id,
        "display_name": user.id,
        "team": FAKE_TEAM,
    });
    if let (true, Some(email)) = (email_scope, &user.email) {
        profile["email"] = json!(email);
    }
    let mut body = json!({
        "ok": true,
        "user": {
            "id": user.id,
            "team_id": FAKE_TEAM,
            "name": user.id.to_ascii_lowercase(),
            "deleted": user.deleted,
            "is_bot": user.is_bot,
            "is_app_user": false,
            "profile": profile,
        }
    });
    if let Some(confirmed) = user.is_email_confirmed {
        body["user"]["is_email_confirmed"] = json!(confirmed);
    }
    answer(&body)
}

async fn unknown_method(_request: Recorded) -> Response {
    failure("unknown_method")
}

/// `application/x-www-form-urlencoded` pairs.
fn url_pairs(text: &[u8]) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(text).into_owned().collect()
}
