//! The agents' endpoints: `POST /agent/v1/poll` (a long poll for work) and
//! `POST /agent/v1/report` (the outcome of one leased action), authenticated by the agent's
//! credential (`Authorization: Bearer apono_agent_…`) and the connector id it serves
//! (`Apono-Connector-Id`). The messages are [`apono_runtime::wire`]'s.

use std::sync::Arc;

use apono_runtime::wire::{CONNECTOR_HEADER, POLL_PATH, Poll, REPORT_PATH, Report};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};

use crate::error::ControlError;
use crate::plane::{AgentIdentity, ControlPlane};

/// The largest report (an inventory can be large).
const MAX_REPORT_BYTES: usize = 16 * 1024 * 1024;

/// The agents' routes.
pub(super) fn router(plane: Arc<ControlPlane>) -> Router {
    Router::new()
        .route(POLL_PATH, post(poll))
        .route(REPORT_PATH, post(report))
        .with_state(plane)
}

/// The agent a request comes from; 401 without a live credential, 403 for a credential of
/// another connector.
struct Agent(AgentIdentity);

impl FromRequestParts<Arc<ControlPlane>> for Agent {
    type Rejection = ControlError;

    async fn from_request_parts(
        parts: &mut Parts,
        plane: &Arc<ControlPlane>,
    ) -> Result<Self, ControlError> {
        let credential = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ControlError::Unauthenticated)?;
        let connector = parts
            .headers
            .get(CONNECTOR_HEADER)
            .and_then(|v| v.to_str().ok())
            .ok_or(ControlError::Unauthenticated)?;
        plane
            .authenticate_agent(credential.trim(), connector.trim())
            .await
            .map(Self)
    }
}

/// A JSON body of at most [`MAX_REPORT_BYTES`].
struct JsonOf<T>(T);

impl<T: serde::de::DeserializeOwned> FromRequest<Arc<ControlPlane>> for JsonOf<T> {
    type Rejection = ControlError;

    async fn from_request(req: Request, _: &Arc<ControlPlane>) -> Result<Self, ControlError> {
        let bytes = axum::body::to_bytes(req.into_body(), MAX_REPORT_BYTES)
            .await
            .map_err(|_| {
                ControlError::TooLarge(format!("the body is larger than {MAX_REPORT_BYTES} bytes"))
            })?;
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|e| ControlError::Invalid(vec![e.to_string()]))
    }
}

async fn poll(
    State(plane): State<Arc<ControlPlane>>,
    Agent(agent): Agent,
    JsonOf(body): JsonOf<Poll>,
) -> Result<Response, ControlError> {
    Ok(Json(plane.agent_poll(&agent, body).await?).into_response())
}

async fn report(
    State(plane): State<Arc<ControlPlane>>,
    Agent(agent): Agent,
    JsonOf(body): JsonOf<Report>,
) -> Result<Response, ControlError> {
    plane.agent_report(&agent, body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
