//! Extractors that answer a bad request with the API's JSON error shape: the authenticated
//! [`Caller`], a path [`Id`], a query string ([`QueryOf`]) and a size-limited [`Body`].

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header;
use axum::http::request::Parts;

use crate::config::User;
use crate::error::ControlError;
use crate::plane::ControlPlane;

/// The user the request's bearer token belongs to; 401 without one.
pub(crate) struct Caller(pub(crate) User);

impl FromRequestParts<Arc<ControlPlane>> for Caller {
    type Rejection = ControlError;

    async fn from_request_parts(
        parts: &mut Parts,
        plane: &Arc<ControlPlane>,
    ) -> Result<Self, ControlError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ControlError::Unauthenticated)?;
        plane.authenticate(token.trim()).await.map(Self)
    }
}

/// axum's `Query`, rejecting a query string that does not parse with the JSON error shape
/// (400, `invalid_input`) instead of axum's plain-text answer.
pub(crate) struct QueryOf<T>(pub(crate) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for QueryOf<T> {
    type Rejection = ControlError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ControlError> {
        Query::try_from_uri(&parts.uri)
            .map(|Query(value)| Self(value))
            .map_err(|e| ControlError::Invalid(vec![e.body_text()]))
    }
}

/// axum's `Path` for one id, rejecting a segment that does not decode (not UTF-8) with the JSON
/// error shape (400, `invalid_input`) instead of axum's plain-text answer.
pub(crate) struct Id(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ControlError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ControlError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(id)| Self(id))
            .map_err(|e| ControlError::Invalid(vec![e.body_text()]))
    }
}

/// The raw body, at most `connector.max_body_bytes` (413 beyond, with the limit named).
pub(crate) struct Body(pub(crate) axum::body::Bytes);

impl FromRequest<Arc<ControlPlane>> for Body {
    type Rejection = ControlError;

    async fn from_request(req: Request, plane: &Arc<ControlPlane>) -> Result<Self, ControlError> {
        let limit = plane.config().connector.max_body_bytes;
        axum::body::to_bytes(req.into_body(), limit)
            .await
            .map(Self)
            .map_err(|_| {
                ControlError::TooLarge(format!(
                    "the body is larger than {limit} bytes (connector.max_body_bytes)"
                ))
            })
    }
}
