//! The HTTP API (axum) under `/api/v1`, plus `/healthz`, `/readyz` and `/metrics`.

use std::sync::Arc;

use apono_core::Inventory;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::audit;
use crate::config::User;
use crate::error::ControlError;
use crate::model::NewRequest;
use crate::plane::{ControlPlane, RequestScope};

type Plane = State<Arc<ControlPlane>>;

impl IntoResponse for ControlError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Invalid(_) | Self::Config(_) => StatusCode::BAD_REQUEST,
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

async fn caller(plane: &ControlPlane, headers: &HeaderMap) -> Result<User, ControlError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ControlError::Unauthenticated)?;
    plane.authenticate(token.trim()).await
}

/// The router of the whole HTTP surface.
pub fn router(plane: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(|| async { Json(openapi()) }))
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
        .route("/api/v1/audit", get(audit_log))
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
async fn me(State(plane): Plane, headers: HeaderMap) -> Result<Response, ControlError> {
    let user = caller(&plane, &headers).await?;
    Ok(
        Json(json!({ "email": user.email, "groups": user.groups, "admin": user.admin }))
            .into_response(),
    )
}

async fn integrations(State(plane): Plane, headers: HeaderMap) -> Result<Response, ControlError> {
    caller(&plane, &headers).await?;
    let list: Vec<_> = plane
        .config()
        .integrations
        .iter()
        .map(|i| {
            json!({
                "name": i.name,
                "type": i.integration_type,
                "connected_resource_types": i.connected_resource_types,
                "secret_store": i.secret_store.kind(),
                "custom_access_details": i.custom_access_details,
                "credentials_rotation_period_in_days": i.credentials_rotation_period_in_days,
                "credentials_cleanup_period_in_days": i.credentials_cleanup_period_in_days,
            })
        })
        .collect();
    Ok(Json(list).into_response())
}

#[derive(Deserialize)]
struct IntegrationFilter {
    integration: Option<String>,
}

async fn resource_types(State(plane): Plane, headers: HeaderMap) -> Result<Response, ControlError> {
    caller(&plane, &headers).await?;
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
    headers: HeaderMap,
    Query(filter): Query<IntegrationFilter>,
) -> Result<Response, ControlError> {
    caller(&plane, &headers).await?;
    let list: Vec<_> = inventories(&plane, &filter)
        .await?
        .flat_map(|(_, inv)| inv.resources)
        .collect();
    Ok(Json(list).into_response())
}

async fn permissions(
    State(plane): Plane,
    headers: HeaderMap,
    Query(filter): Query<IntegrationFilter>,
) -> Result<Response, ControlError> {
    caller(&plane, &headers).await?;
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
    headers: HeaderMap,
    Query(q): Query<ScopeQuery>,
) -> Result<Response, ControlError> {
    let user = caller(&plane, &headers).await?;
    Ok(Json(plane.requests(&user, q.scope).await?).into_response())
}

fn body<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(raw).map_err(|e| ControlError::Invalid(vec![e.to_string()]))
}

async fn create_request(
    State(plane): Plane,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Result<Response, ControlError> {
    let user = caller(&plane, &headers).await?;
    let req: NewRequest = body(&raw)?;
    let created = plane.create_request(&user, &req).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn dry_run(
    State(plane): Plane,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> Result<Response, ControlError> {
    let user = caller(&plane, &headers).await?;
    let req: NewRequest = body(&raw)?;
    Ok(Json(plane.dry_run(&user, &req).await?).into_response())
}

async fn describe_request(
    State(plane): Plane,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    let user = caller(&plane, &headers).await?;
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
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Response, ControlError> {
    let user = caller(&plane, &headers).await?;
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
    headers: HeaderMap,
    Path(id): Path<String>,
    raw: axum::body::Bytes,
) -> Result<Response, ControlError> {
    let user = caller(&plane, &headers).await?;
    let r: Rejection = body(&raw)?;
    Ok(Json(plane.reject(&user, &id, &r.reason).await?).into_response())
}

async fn revoke(
    State(plane): Plane,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    let user = caller(&plane, &headers).await?;
    Ok(Json(plane.revoke(&user, &id).await?).into_response())
}

#[derive(Deserialize)]
struct AllQuery {
    #[serde(default)]
    all: bool,
}

async fn list_sessions(
    State(plane): Plane,
    headers: HeaderMap,
    Query(q): Query<AllQuery>,
) -> Result<Response, ControlError> {
    let user = caller(&plane, &headers).await?;
    Ok(Json(plane.sessions(&user, q.all).await?).into_response())
}

async fn describe_session(
    State(plane): Plane,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    let user = caller(&plane, &headers).await?;
    Ok(Json(plane.session(&user, &id).await?).into_response())
}

async fn access_details(
    State(plane): Plane,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    let user = caller(&plane, &headers).await?;
    Ok(Json(plane.access_details(&user, &id).await?).into_response())
}

async fn reset_credentials(
    State(plane): Plane,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ControlError> {
    let user = caller(&plane, &headers).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(plane.reset_credentials(&user, &id).await?),
    )
        .into_response())
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
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ControlError> {
    let user = caller(&plane, &headers).await?;
    if !user.admin {
        return Err(ControlError::Forbidden(
            "only admins read the audit log".into(),
        ));
    }
    let records = audit::records(
        plane.store(),
        q.after,
        q.limit.unwrap_or(1000).clamp(1, 100_000),
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

/// The OpenAPI 3.1 description of the API.
pub fn openapi() -> serde_json::Value {
    let op = |summary: &str| json!({ "summary": summary, "security": [{ "bearer": [] }], "responses": { "200": { "description": "OK" }, "401": { "description": "no or unknown token" } } });
    let with_body = |mut operation: serde_json::Value, schema: &str, required: bool| {
        operation["requestBody"] = json!({ "required": required, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
        operation
    };
    let with_response = |mut operation: serde_json::Value, schema: &str| {
        operation["responses"]["200"]["content"] = json!({ "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } });
        operation
    };
    let approve_op = {
        let mut operation = with_response(
            with_body(
                op(
                    "approve; the optional reason is recorded in the request and the audit log. Under an all_of flow an approval that leaves entries unmet answers 200 with the request still Pending (see awaiting)",
                ),
                "Approval",
                false,
            ),
            "AccessRequest",
        );
        operation["responses"]["403"] = json!({ "description": "not an approver, the requester, or (all_of) an approval that would meet no unmet entry" });
        operation["responses"]["409"] = json!({ "description": "the request is no longer Pending, or (all_of) the caller already approved it" });
        operation
    };
    let id_param =
        json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }]);
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Apono connector API", "version": env!("CARGO_PKG_VERSION") },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "NewRequest": { "type": "object", "required": ["integration", "resource_type", "resource_ids", "permission"], "properties": {
                    "integration": { "type": "string" }, "resource_type": { "type": "string" },
                    "resource_ids": { "type": "array", "items": { "type": "string" } },
                    "permission": { "type": "string" }, "justification": { "type": "string" },
                    "duration": { "type": "string", "examples": ["1h", "30m"] } } },
                "AccessRequest": { "type": "object", "required": ["id", "status", "session_ids"], "properties": {
                    "id": { "type": "string" }, "status": { "enum": ["Pending", "Granting", "Active", "Rejected", "Revoking", "Revoked", "Failed"] },
                    "requester": { "type": "string" }, "flow": { "type": "string" },
                    "decided_by": { "type": "string", "description": "who approved or rejected it" },
                    "reason": { "type": "string", "description": "the approver's (optional) or rejecter's reason" },
                    "session_ids": { "type": "array", "items": { "type": "string" }, "description": "the sessions serving it, in lists too" },
                    "approvals": { "type": "array", "items": { "$ref": "#/components/schemas/RequestApproval" }, "description": "all_of flows: the approvals given so far, oldest first; empty under any_of (see decided_by)" },
                    "awaiting": { "type": "array", "items": { "type": "string" }, "examples": [["user:bob@example.com", "group:sre"]], "description": "all_of flows while Pending: the approver entries still unmet, each needing a different person; empty once decided and under any_of" } } },
                "RequestApproval": { "type": "object", "required": ["approver", "decided_at"], "properties": {
                    "approver": { "type": "string" }, "decided_at": { "type": "string", "format": "date-time" } } },
                "Me": { "type": "object", "required": ["email", "groups", "admin"], "properties": {
                    "email": { "type": "string" }, "groups": { "type": "array", "items": { "type": "string" } },
                    "admin": { "type": "boolean" } } },
                "Problem": { "type": "object", "required": ["code", "message"], "properties": {
                    "code": { "enum": ["unknown_integration", "no_resource", "unknown_resource", "invalid_duration", "unknown_permission", "no_matching_flow", "justification_required", "duration_over_max", "no_possible_approval"],
                        "description": "machine-readable; clients should treat an unknown code like a plain message" },
                    "message": { "type": "string", "description": "one sentence for people" },
                    "max": { "type": "string", "description": "with duration_over_max: the flow's maximum duration", "examples": ["1h"] } } },
                "DryRun": { "type": "object", "required": ["allowed", "approval_required", "problems", "extends_sessions"], "properties": {
                    "allowed": { "type": "boolean" }, "flow": { "type": "string" },
                    "approval_required": { "type": "boolean" }, "max_duration": { "type": "string" },
                    "problems": { "type": "array", "items": { "$ref": "#/components/schemas/Problem" } },
                    "extends_sessions": { "type": "array", "items": { "type": "string" } } } },
                "Approval": { "type": "object", "additionalProperties": false, "properties": { "reason": { "type": "string" } } },
                "Rejection": { "type": "object", "required": ["reason"], "additionalProperties": false, "properties": { "reason": { "type": "string" } } },
                "AccessSession": { "type": "object", "required": ["id", "request_id", "status"], "properties": {
                    "id": { "type": "string" }, "request_id": { "type": "string" },
                    "status": { "enum": ["Pending", "Granting", "Active", "Revoking", "Revoked", "Failed", "RevokeFailed"] },
                    "expires_at": { "type": "string", "format": "date-time" }, "credential_status": { "enum": ["new", "viewed"] } } }
            }
        },
        "paths": {
            "/healthz": { "get": { "summary": "liveness", "responses": { "200": { "description": "alive" } } } },
            "/readyz": { "get": { "summary": "readiness (database reachable)", "responses": { "200": { "description": "ready" } } } },
            "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "text format" } } } },
            "/api/v1/me": { "get": with_response(op("who the token belongs to"), "Me") },
            "/api/v1/integrations": { "get": op("list integrations") },
            "/api/v1/resource-types": { "get": op("list resource types") },
            "/api/v1/resources": { "get": op("list discovered resources (?integration=)") },
            "/api/v1/permissions": { "get": op("list permissions (?integration=)") },
            "/api/v1/access-requests": { "get": op("list requests (?scope=mine|awaiting_my_approval|all)"), "post": op("create a request (body: NewRequest)") },
            "/api/v1/access-requests/dry-run": { "post": with_response(with_body(op("check a request without creating it"), "NewRequest", true), "DryRun") },
            "/api/v1/access-requests/{id}": { "parameters": id_param, "get": op("describe a request") },
            "/api/v1/access-requests/{id}/approve": { "parameters": id_param, "post": approve_op },
            "/api/v1/access-requests/{id}/reject": { "parameters": id_param, "post": with_body(op("reject"), "Rejection", true) },
            "/api/v1/access-requests/{id}/revoke": { "parameters": id_param, "post": op("revoke early") },
            "/api/v1/access-sessions": { "get": op("list my sessions (?all=true for admins)") },
            "/api/v1/access-sessions/{id}": { "parameters": id_param, "get": op("describe a session") },
            "/api/v1/access-sessions/{id}/access-details": { "parameters": id_param, "get": op("access details; one-time credentials shown once") },
            "/api/v1/access-sessions/{id}/reset-credentials": { "parameters": id_param, "post": op("issue fresh credentials") },
            "/api/v1/audit": { "get": op("audit records (?after=&limit=&subject=&format=jsonl); admins") }
        }
    })
}
