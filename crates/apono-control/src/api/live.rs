//! The watch endpoints: a request's or a session's next change, by long poll (see
//! [`crate::watch`]). The answer is the object as `GET …/{id}` gives it, with its version in
//! the `ETag` header; the client passes that version back as `after` to wait for the next one.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::extract::{Caller, Id, QueryOf};
use crate::error::ControlError;
use crate::plane::ControlPlane;
use crate::watch::Versioned;

type Plane = State<Arc<ControlPlane>>;

/// The default wait when the query names none.
const DEFAULT_WAIT_SECONDS: u64 = 30;

/// The watch routes.
pub(super) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/api/v1/access-requests/{id}/watch", get(watch_request))
        .route("/api/v1/access-sessions/{id}/watch", get(watch_session))
}

/// `?after=VERSION&wait=SECONDS`.
#[derive(Deserialize)]
pub(crate) struct WatchQuery {
    pub(crate) after: Option<String>,
    pub(crate) wait: Option<u64>,
}

impl WatchQuery {
    pub(crate) fn wait(&self) -> Duration {
        Duration::from_secs(self.wait.unwrap_or(DEFAULT_WAIT_SECONDS))
    }
}

/// The object as JSON, its version in `ETag` (quoted, as HTTP has it).
pub(crate) fn answer<T: Serialize>(v: Versioned<T>) -> Response {
    let mut response = Json(&v.value).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{}\"", v.version)) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn watch_request(
    State(plane): Plane,
    Caller(user): Caller,
    Id(id): Id,
    QueryOf(q): QueryOf<WatchQuery>,
) -> Result<Response, ControlError> {
    let v = plane
        .watch_request(&user, &id, q.after.as_deref(), q.wait())
        .await?;
    Ok(answer(v))
}

async fn watch_session(
    State(plane): Plane,
    Caller(user): Caller,
    Id(id): Id,
    QueryOf(q): QueryOf<WatchQuery>,
) -> Result<Response, ControlError> {
    let v = plane
        .watch_session(&user, &id, q.after.as_deref(), q.wait())
        .await?;
    Ok(answer(v))
}
