//! The handlers: each takes the authenticated [`Caller`], calls one [`ControlPlane`]
//! operation and answers JSON.

use std::sync::Arc;

use apono_core::Inventory;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::extract::{Body, Caller, Id, QueryOf};
use crate::error::ControlError;
use crate::model::NewRequest;
use crate::plane::{ControlPlane, RequestScope, TokenScope};

type Plane = State<Arc<ControlPlane>>;

/// Every route and its handler.
pub(super) fn router(plane: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/api/v1/openapi.json",
            get(|| async { Json(super::openapi()) }),
        )
        .route("/api/v1/me", get(me))
        .route("/api/v1/integrations", get(integrations))
        .route("/api/v1/resource-types", get(resource_types))
        .route("/api/v1/resources", get(resources))
        .route("/api/v1/permissions", get(permissions))
        .route(
            "/api/v1/access-requests",
            get(list_requests).post(create_request),
        )
        .route("/api/v1/access-requests/dry-run", post(dry_run))
        .route("/api/v1/access-requests/{id}", get(describe_request))
        .route("/api/v1/access-requests/{id}/approve", post(approve))
        .route("/api/v1/access-requests/{id}/reject", post(reject))
        .route("/api/v1/access-requests/{id}/revoke", post(revoke))
        .route("/api/v1/access-sessions", get(list_sessions))
        .route("/api/v1/access-sessions/{id}", get(describe_session))
        .route(
            "/api/v1/access-sessions/{id}/access-details",
            get(access_details),
        )
        .route(
            "/api/v1/access-sessions/{id}/reset-credentials",
            post(reset_credentials),
        )
        .route("/api/v1/tokens", get(list_tokens))
        .route("/api/v1/tokens/{id}/revoke", post(revoke_token))
        .route("/api/v1/audit", get(audit_log))
        .merge(super::live::routes())
        .merge(crate::portal::router(
            plane.config().connector.max_body_bytes,
        ))
        .route(
            "/api/v1/slack/{channel}/interactions",
            post(slack_interaction),
        )
        .merge(crate::identity::routes::router())
        .with_state(plane)
}

async fn readyz(State(plane): Plane) -> Response {
    if plane.store().ping().await {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
    }
}

async fn metrics(State(plane): Plane) -> Result<Response, ControlError> {
    let text = plane.metrics_text().await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// Who the token belongs to: what `apono login` shows.
async fn me(Caller(user): Caller) -> Result<Response, ControlError> {
    Ok(
        Json(json!({ "email": user.email, "groups": user.groups, "admin": user.admin }))
            .into_response(),
    )
}

async fn integrations(State(plane): Plane, Caller(_): Caller) -> Result<Response, ControlError> {
    let mut list = Vec::new();
    for i in &plane.config().integrations {
        let status = plane.integration_offline(&i.name).await.unwrap_or("active");
        list.push(json!({
            "name": i.name,
            "type": i.integration_type,
            "connector": i.connector.as_deref().unwrap_or(&plane.config().connector.id),
            "status": status,
            "connected_resource_types": i.connected_resource_types,
            "secret_store": i.secret_store.kind(),
            "custom_access_details": i.custom_access_details,
            "credentials_rotation_period_in_days": i.credentials_rotation_period_in_days,
            "credentials_cleanup_period_in_days": i.credentials_cleanup_period_in_days,
        }));
    }
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
struct IntegrationFilter {
    integration: Option<String>,
}

async fn resource_types(State(plane): Plane, Caller(_): Caller) -> Result<Response, ControlError> {
    let list: Vec<_> = plane
        .resource_types()
        .await?
        .into_iter()
        .map(|(integration, t)| json!({ "integration": integration, "resource_type": t }))
        .collect();
    Ok(Json(list).into_response())
}

/// The discovered inventories, limited to the integration the query names, if any.
async fn inventories(
    plane: &ControlPlane,
    filter: &IntegrationFilter,
) -> Result<impl Iterator<Item = (String, Inventory)>, ControlError> {
    let wanted = filter.integration.clone();
    Ok(plane
        .inventory()
        .await?
        .into_iter()
        .filter(move |(name, _)| wanted.as_ref().is_none_or(|f| f == name)))
}

async fn resources(
    State(plane): Plane,
    Caller(_): Caller,
    QueryOf(filter): QueryOf<IntegrationFilter>,
) -> Result<Response, ControlError> {
    // Each resource of an integration whose connector has no agent online says so, as the
    // integration does: grants on it wait.
    let mut list = Vec::new();
    for (integration, inv) in inventories(&plane, &filter).await? {
        let offline = plane.integration_offline(&integration).await;
        for resource in inv.resources {
            // Strings and a string map: serializing cannot fail.
            let mut entry = json!(resource);
            if let (Some(status), Some(fields)) = (offline, entry.as_object_mut()) {
                fields.insert("integration_status".into(), json!(status));
            }
            list.push(entry);
        }
    }
    Ok(Json(list).into_response())
}

async fn permissions(
    State(plane): Plane,
    Caller(_): Caller,
    QueryOf(filter): QueryOf<IntegrationFilter>,
) -> Result<Response, ControlError> {
    let list: Vec<_> = inventories(&plane, &filter)
        .await?
        .flat_map(|(name, inv)| {
            inv.permissions
                .into_iter()
                .map(move |p| json!({ "integration": name, "resource_type": p.resource_type, "permission": p.permission, "description": p.description }))
        })
        .collect();
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
struct ScopeQuery {
    #[serde(default)]
    scope: RequestScope,
}

async fn list_requests(
    State(plane): Plane,
    Caller(user): Caller,
    QueryOf(q): QueryOf<ScopeQuery>,
) -> Result<Response, ControlError> {
    Ok(Json(plane.requests(&user, q.scope).await?).into_response())
}

fn body<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(raw).map_err(|e| ControlError::Invalid(vec![e.to_string()]))
}

async fn create_request(
    State(plane): Plane,
    Caller(user): Caller,
    Body(raw): Body,
) -> Result<Response, ControlError> {
    let req: NewRequest = body(&raw)?;
    let created = plane.create_request(&user, &req).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn dry_run(
    State(plane): Plane,
    Caller(user): Caller,
    Body(raw): Body,
) -> Result<Response, ControlError> {
    let req: NewRequest = body(&raw)?;
    Ok(Json(plane.dry_run(&user, &req).await?).into_response())
}

async fn describe_request(
    State(plane): Plane,
    Caller(user): Caller,
    Id(id): Id,
) -> Result<Response, ControlError> {
    Ok(Json(plane.request(&user, &id).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Approval {
    #[serde(default)]
    reason: Option<String>,
}

async fn approve(
    State(plane): Plane,
    Caller(user): Caller,
    Id(id): Id,
    Body(raw): Body,
) -> Result<Response, ControlError> {
    // The body is optional: no body (or `{}`) approves without a reason.
    let approval: Approval = if raw.iter().all(u8::is_ascii_whitespace) {
        Approval { reason: None }
    } else {
        body(&raw)?
    };
    Ok(Json(
        plane
            .approve(&user, &id, approval.reason.as_deref())
            .await?,
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rejection {
    reason: String,
}

async fn reject(
    State(plane): Plane,
    Caller(user): Caller,
    Id(id): Id,
    Body(raw): Body,
) -> Result<Response, ControlError> {
    let r: Rejection = body(&raw)?;
    Ok(Json(plane.reject(&user, &id, &r.reason).await?).into_response())
}

async fn revoke(
    State(plane): Plane,
    Caller(user): Caller,
    Id(id): Id,
) -> Result<Response, ControlError> {
    Ok(Json(plane.revoke(&user, &id).await?).into_response())
}

#[derive(Deserialize)]
struct AllQuery {
    #[serde(default)]
    all: bool,
}

async fn list_sessions(
    State(plane): Plane,
    Caller(user): Caller,
    QueryOf(q): QueryOf<AllQuery>,
) -> Result<Response, ControlError> {
    Ok(Json(plane.sessions(&user, q.all).await?).into_response())
}

async fn describe_session(
    State(plane): Plane,
    Caller(user): Caller,
    Id(id): Id,
) -> Result<Response, ControlError> {
    Ok(Json(plane.session(&user, &id).await?).into_response())
}

async fn access_details(
    State(plane): Plane,
    Caller(user): Caller,
    Id(id): Id,
) -> Result<Response, ControlError> {
    Ok(Json(plane.access_details(&user, &id).await?).into_response())
}

async fn reset_credentials(
    State(plane): Plane,
    Caller(user): Caller,
    Id(id): Id,
) -> Result<Response, ControlError> {
    Ok((
        StatusCode::ACCEPTED,
        Json(plane.reset_credentials(&user, &id).await?),
    )
        .into_response())
}

#[derive(Deserialize)]
struct TokensQuery {
    user: Option<String>,
    #[serde(default)]
    all: bool,
}

async fn list_tokens(
    State(plane): Plane,
    Caller(user): Caller,
    QueryOf(q): QueryOf<TokensQuery>,
) -> Result<Response, ControlError> {
    let scope = match (q.all, q.user) {
        (true, _) => TokenScope::All,
        (false, Some(email)) => TokenScope::User(email),
        (false, None) => TokenScope::Mine,
    };
    Ok(Json(plane.tokens(Some(&user), scope).await?).into_response())
}

async fn revoke_token(
    State(plane): Plane,
    Caller(user): Caller,
    Id(id): Id,
) -> Result<Response, ControlError> {
    Ok(Json(plane.revoke_token(Some(&user), &id).await?).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
    subject: Option<String>,
    format: Option<String>,
}

async fn audit_log(
    State(plane): Plane,
    Caller(user): Caller,
    QueryOf(q): QueryOf<AuditQuery>,
) -> Result<Response, ControlError> {
    let records = plane
        .audit_records(
            &user,
            q.after,
            q.limit.unwrap_or(1000),
            q.subject.as_deref(),
        )
        .await?;
    if q.format.as_deref() == Some("jsonl") {
        let mut text = String::new();
        for r in &records {
            text.push_str(&serde_json::to_string(r).unwrap_or_default());
            text.push('\n');
        }
        return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], text).into_response());
    }
    Ok(Json(records).into_response())
}

/// A Slack button press (Slack's signature checked instead of a bearer token).
async fn slack_interaction(
    State(plane): Plane,
    Id(channel): Id,
    headers: axum::http::HeaderMap,
    Body(body): Body,
) -> Result<Response, ControlError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let outcome = plane
        .slack_interaction(
            &channel,
            header(apono_notify::signature::SLACK_TIMESTAMP_HEADER),
            header(apono_notify::signature::SLACK_SIGNATURE_HEADER),
            &body,
        )
        .await?;
    Ok(Json(outcome).into_response())
}
