//! The HTTP API (axum) under `/api/v1`, plus `/healthz`, `/readyz`, `/metrics` and the web
//! portal under `/ui/` (module `portal`).
//!
//! * `extract`: the authenticated caller, ids, query strings and bodies, each refused with
//!   the JSON error shape.
//! * `routes`: one handler per operation, each a call of one [`ControlPlane`] method.
//! * `live`: the watch endpoints (long polls for a request's or a session's next change).
//! * `agents`: the agents' long poll and reports (`/agent/v1/…`).
//! * [`openapi`]: the OpenAPI document.
//! * [`serve`]: the listener, over TLS with certificate reload, or plain HTTP on loopback.

mod agents;
mod extract;
pub(crate) mod live;
mod openapi;
mod routes;
mod serve;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

use crate::error::ControlError;
use crate::plane::ControlPlane;
pub(crate) use extract::{Body, Id, QueryOf};
pub use openapi::openapi;
pub use serve::{serve, serve_on};

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid(_) | Self::Config(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Conflict(_) => StatusCode::CONFLICT,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        let problems = match &self {
            Self::Invalid(p) => p.clone(),
            _ => Vec::new(),
        };
        (
            status,
            Json(json!({ "error": self.to_string(), "kind": self.kind().as_str(), "problems": problems })),
        )
            .into_response()
    }
}

/// The router of the whole HTTP surface: the API, its watch endpoints and the web portal
/// (`/ui/`).
pub fn router(plane: Arc<ControlPlane>) -> Router {
    routes::router(plane.clone()).merge(agents::router(plane))
}
