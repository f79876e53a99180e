//! The hand-written OpenAPI 3.1 document of the API, checked against the running API by
//! `openapi-spec-validator` and `schemathesis` (`tests/openapi.rs`).

use serde_json::json;

/// A JSON response body of the named component schema.
fn json_content(schema: serde_json::Value) -> serde_json::Value {
    json!({ "application/json": { "schema": schema } })
}

fn schema_ref(name: &str) -> serde_json::Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// An error answer: the JSON error shape.
fn error_response(description: &str) -> serde_json::Value {
    json!({ "description": description, "content": json_content(schema_ref("Error")) })
}

/// One authenticated operation: `summary`, the success `status` with its `body` schema, the
/// answers every authenticated operation can give (401, 503), and the `errors` it adds.
fn operation(
    summary: &str,
    status: &str,
    body: serde_json::Value,
    errors: &[(&str, &str)],
) -> serde_json::Value {
    let mut responses = serde_json::Map::new();
    responses.insert(
        status.to_owned(),
        json!({ "description": "success", "content": json_content(body) }),
    );
    responses.insert("401".into(), error_response("no token, or an unknown one"));
    for (code, description) in errors {
        responses.insert((*code).to_owned(), error_response(description));
    }
    responses.insert(
        "503".into(),
        error_response("the database is unavailable, or stored data does not parse"),
    );
    json!({ "summary": summary, "security": [{ "bearer": [] }], "responses": responses })
}

/// `operation` with a JSON request body of the named schema.
fn with_body(mut operation: serde_json::Value, schema: &str, required: bool) -> serde_json::Value {
    operation["requestBody"] =
        json!({ "required": required, "content": json_content(schema_ref(schema)) });
    operation["responses"]["413"] =
        error_response("the body is larger than connector.max_body_bytes");
    operation
}

fn array_of(schema: &str) -> serde_json::Value {
    json!({ "type": "array", "items": schema_ref(schema) })
}

fn query_param(name: &str, schema: serde_json::Value, description: &str) -> serde_json::Value {
    json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description })
}

const BAD_BODY: (&str, &str) = (
    "400",
    "the body is not the JSON the operation takes (problems lists why)",
);
const BAD_QUERY: (&str, &str) = ("400", "a query parameter does not parse");
const NO_REQUEST: (&str, &str) = ("404", "no such request, or not visible to the caller");
const NO_SESSION: (&str, &str) = ("404", "no such session, or not visible to the caller");

/// The component schemas of [`openapi`].
fn schemas() -> serde_json::Value {
    let string = json!({ "type": "string" });
    let strings = json!({ "type": "array", "items": { "type": "string" } });
    let time = json!({ "type": "string", "format": "date-time" });
    let mut all = json!({
        "Error": { "type": "object", "required": ["error", "kind", "problems"], "properties": {
            "error": { "type": "string", "description": "one sentence for people; never secrets" },
            "kind": { "enum": ["not_found", "permission_denied", "unavailable", "timeout", "cancelled", "malformed", "invalid_input", "conflict", "unsupported", "internal"] },
            "problems": { "type": "array", "items": { "type": "string" }, "description": "with invalid_input: every problem, as messages" } } },
        "NewRequest": { "type": "object", "additionalProperties": false, "required": ["integration", "resource_type", "resource_ids", "permission"], "properties": {
            "integration": string, "resource_type": string,
            "resource_ids": strings,
            "permission": string, "justification": { "type": ["string", "null"] },
            "duration": { "type": ["string", "null"], "examples": ["1h", "30m"], "description": "the flow's maximum when absent" } } },
        "AccessRequest": { "type": "object", "required": ["id", "status", "requester", "flow", "integration", "resource_type", "resource_ids", "permission", "justification", "duration_seconds", "created_at", "updated_at", "session_ids", "approvals", "awaiting"], "properties": {
            "id": string, "status": { "enum": apono_core::RequestStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>() },
            "requester": string, "flow": string,
            "integration": string, "resource_type": string, "resource_ids": strings,
            "permission": string, "justification": string,
            "duration_seconds": { "type": "integer", "description": "requested duration, counted from activation" },
            "decided_by": { "type": "string", "description": "who approved or rejected it" },
            "reason": { "type": "string", "description": "the approver's (optional) or rejecter's reason" },
            "created_at": time, "updated_at": time,
            "session_ids": { "type": "array", "items": { "type": "string" }, "description": "the sessions serving it, in lists too" },
            "approvals": { "type": "array", "items": schema_ref("RequestApproval"), "description": "the approvals given, oldest first: all_of flows so far, any_of the one that approved; empty for automatic approval and for rejections (see decided_by)" },
            "awaiting": { "type": "array", "items": { "type": "string" }, "examples": [["user:bob@example.com", "group:sre"]], "description": "all_of flows while Pending: the approver entries still unmet, each needing a different person; empty once decided and under any_of" },
            "approval_route": schema_ref("ApprovalRoute") } },
        "ApprovalRoute": { "type": "object", "required": ["source", "mode", "approvers"], "description": "who approves the request: the access flow's approvers, the resource owner (the integration's resource_owner_tag on every requested resource, under any_of flows, or when no one can meet the flow's approvers) or the integration's owners (when no one can meet the flow's approvers)", "properties": {
            "source": { "enum": ["access_flow", "resource_owner", "integration_owners"] },
            "mode": { "enum": ["any_of", "all_of"] },
            "approvers": { "type": "array", "items": { "type": "string" }, "examples": [["user:carol@example.com", "group:payments"]] } } },
        "RequestApproval": { "type": "object", "required": ["approver", "decided_at"], "properties": {
            "approver": string, "decided_at": time } },
        "Me": { "type": "object", "required": ["email", "groups", "admin"], "properties": {
            "email": string, "groups": strings, "admin": { "type": "boolean" } } },
        "Integration": { "type": "object", "required": ["name", "type", "connected_resource_types", "secret_store", "connector", "status"], "properties": {
            "name": string, "type": string, "connected_resource_types": strings,
            "connector": { "type": "string", "description": "the connector id whose worker runs its actions (this one's, or an agent's)" },
            "status": { "enum": ["active", "connector offline"], "description": "`connector offline` when no agent of its connector is online: grants wait, revokes retry" },
            "secret_store": { "type": "string", "description": "the kind of secret store holding its admin secret, never the secret", "examples": ["kubernetes"] },
            "custom_access_details": { "type": ["string", "null"] },
            "credentials_rotation_period_in_days": { "type": ["integer", "null"], "minimum": 0 },
            "credentials_cleanup_period_in_days": { "type": ["integer", "null"], "minimum": 0 } } },
        "IntegrationResourceType": { "type": "object", "required": ["integration", "resource_type"], "properties": {
            "integration": string, "resource_type": string } },
        "Resource": { "type": "object", "required": ["integration", "resource_type", "id", "name", "tags"], "properties": {
            "integration": string, "resource_type": string, "id": string, "name": string,
            "tags": { "type": "object", "additionalProperties": { "type": "string" } },
            "integration_status": { "enum": ["connector offline"], "description": "present when the integration's connector has no agent online: grants on it wait for one" } } },
        "IntegrationPermission": { "type": "object", "required": ["integration", "resource_type", "permission", "description"], "properties": {
            "integration": string, "resource_type": string, "permission": string,
            "description": { "type": ["string", "null"] } } },
        "Problem": { "type": "object", "required": ["code", "message"], "properties": {
            "code": { "enum": ["unknown_integration", "no_resource", "unknown_resource", "invalid_duration", "unknown_permission", "no_matching_flow", "justification_required", "duration_over_max", "no_possible_approval", "too_many_resources", "duplicate_resource", "justification_too_long"],
                "description": "machine-readable; clients should treat an unknown code like a plain message" },
            "message": { "type": "string", "description": "one sentence for people" },
            "max": { "type": "string", "description": "with duration_over_max: the flow's maximum duration", "examples": ["1h"] } } },
        "DryRun": { "type": "object", "required": ["allowed", "approval_required", "problems", "extends_sessions"], "properties": {
            "allowed": { "type": "boolean" }, "flow": string,
            "approval_required": { "type": "boolean" }, "max_duration": string,
            "approval_route": schema_ref("ApprovalRoute"),
            "problems": array_of("Problem"),
            "extends_sessions": strings,
            "integration_status": { "enum": ["connector offline"], "description": "present when the integration's connector has no agent online: grants wait for one" } } },
        "Approval": { "type": "object", "additionalProperties": false, "properties": { "reason": { "type": ["string", "null"] } } },
        "Rejection": { "type": "object", "required": ["reason"], "additionalProperties": false, "properties": { "reason": string } },
        "ApiToken": { "type": "object", "required": ["id", "user", "name", "status", "created_at", "expires_at"], "properties": {
            "id": string, "user": { "type": "string", "description": "the email of the user it authenticates" },
            "name": string,
            "status": { "enum": ["active", "expired", "revoked"] },
            "created_at": time, "expires_at": time, "last_used_at": time, "revoked_at": time,
            "revoked_by": { "type": "string", "description": "a user's email, or connector" } } },
        "AccessSession": { "type": "object", "required": ["id", "request_id", "status", "integration", "resource_type", "resource_id", "permission", "grantee", "account_name", "duration_seconds"], "properties": {
            "id": string, "request_id": string,
            "status": { "enum": apono_core::GrantStatus::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>() },
            "integration": string, "resource_type": string, "resource_id": string, "permission": string,
            "grantee": { "type": "string", "description": "the grantee's email" },
            "account_name": { "type": "string", "description": "the account name on the target" },
            "duration_seconds": { "type": "integer" },
            "expires_at": time, "activated_at": time, "revoked_at": time,
            "credential_status": { "enum": ["new", "viewed"] },
            "last_error": { "type": "string", "description": "the last action error, free of secrets" },
            "ended": { "enum": ["expired", "revoked"], "description": "how access ended, once it has: at expires_at, or revoked early" },
            "ended_by": { "type": "string", "description": "who revoked it early: a user's email, or connector for a person removed from the configuration" } } },
        "AccessDetails": { "type": "object", "required": ["credentials", "credential_status"], "properties": {
            "instructions": { "description": "how to connect, as plain text and Markdown" }, "cli": string, "link": string,
            "credentials": { "oneOf": [{ "type": "object", "additionalProperties": { "type": "string" }, "description": "name → value, shown once" }, { "type": "string", "description": "a note saying they were shown already" }] },
            "credential_status": { "enum": ["new", "viewed"] } } },
        "AuditRecord": { "type": "object", "required": ["seq", "at", "actor", "action", "subject", "outcome", "details", "prev_hash", "hash"], "properties": {
            "seq": { "type": "integer", "minimum": 1 }, "at": { "type": "integer", "description": "Unix milliseconds" },
            "actor": string, "action": string, "subject": string, "outcome": string,
            "details": { "type": "string", "description": "JSON text" },
            "prev_hash": string, "hash": string } }
    });
    // Slack's outcome and the agents' messages (a second literal: one would pass the macro's
    // recursion limit).
    let agents = json!({
        "SlackOutcome": { "type": "object", "required": ["outcome", "request_id", "text"], "properties": {
            "outcome": { "enum": ["approved", "recorded", "rejected", "refused"], "description": "recorded: an all_of approval that others must complete; refused: the rules refused the decision (text says why)" },
            "request_id": string,
            "user": { "type": "string", "description": "the connector user the Slack user maps to" },
            "text": { "type": "string", "description": "what the Slack message now says" } } },
        "AgentPoll": { "type": "object", "required": ["free"], "properties": {
            "free": { "type": "integer", "minimum": 0, "description": "the most actions to hand out" } } },
        "AgentWork": { "type": "object", "required": ["actions"], "properties": {
            "actions": { "type": "array", "items": { "type": "object", "required": ["lease", "kind", "subject", "lease_ms", "action"], "properties": {
                "lease": string, "kind": string, "subject": string,
                "lease_ms": { "type": "integer", "minimum": 0 },
                "action": { "type": "object", "description": "apono_runtime::wire::Action: the action, the integration's definition and the grant" } } } } } },
        "AgentReport": { "type": "object", "required": ["lease", "kind", "subject", "result"], "properties": {
            "lease": string, "kind": string, "subject": string,
            "result": { "type": "object", "description": "apono_runtime::wire::ActionResult" } } }
    });
    if let (Some(all), serde_json::Value::Object(agents)) = (all.as_object_mut(), agents) {
        all.extend(agents);
    }
    all
}

/// The OpenAPI 3.1 description of the API. `tests/openapi.rs` checks it with
/// `openapi-spec-validator` and `schemathesis` against the real router.
pub fn openapi() -> serde_json::Value {
    let text = |description: &str| json!({ "description": description, "content": { "text/plain": { "schema": { "type": "string" } } } });
    let id_param =
        json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }]);
    let integration_param = json!([query_param(
        "integration",
        json!({ "type": "string" }),
        "only this integration's"
    )]);
    let decided = |summary: &str, schema: &str, required: bool, forbidden: &str, conflict: &str| {
        with_body(
            operation(
                summary,
                "200",
                schema_ref("AccessRequest"),
                &[BAD_BODY, ("403", forbidden), NO_REQUEST, ("409", conflict)],
            ),
            schema,
            required,
        )
    };
    let mut list_requests = operation(
        "list requests",
        "200",
        array_of("AccessRequest"),
        &[BAD_QUERY, ("403", "scope=all by someone not an admin")],
    );
    list_requests["parameters"] = json!([query_param(
        "scope",
        json!({ "enum": ["mine", "awaiting_my_approval", "all"], "default": "mine" }),
        "all: admins only"
    )]);
    let mut list_sessions = operation(
        "list my sessions",
        "200",
        array_of("AccessSession"),
        &[BAD_QUERY, ("403", "all=true by someone not an admin")],
    );
    list_sessions["parameters"] = json!([query_param(
        "all",
        json!({ "type": "boolean", "default": false }),
        "every session (admins only)"
    )]);
    let mut list_tokens = operation(
        "list API tokens (never the tokens themselves): mine, one user's, or all (admins)",
        "200",
        array_of("ApiToken"),
        &[
            BAD_QUERY,
            (
                "403",
                "another user's or all tokens, by someone not an admin",
            ),
        ],
    );
    list_tokens["parameters"] = json!([
        query_param(
            "user",
            json!({ "type": "string" }),
            "this user's tokens (admins, or the user themselves)"
        ),
        query_param(
            "all",
            json!({ "type": "boolean", "default": false }),
            "every user's tokens (admins only)"
        ),
    ]);
    let mut audit = operation(
        "audit records, oldest first; admins only",
        "200",
        array_of("AuditRecord"),
        &[BAD_QUERY, ("403", "not an admin")],
    );
    audit["responses"]["200"]["content"]["application/x-ndjson"] = json!({ "schema": { "type": "string", "description": "with format=jsonl: one AuditRecord per line" } });
    audit["parameters"] = json!([
        query_param(
            "after",
            json!({ "type": "integer", "format": "int64", "default": 0 }),
            "records after this seq"
        ),
        query_param(
            "limit",
            json!({ "type": "integer", "format": "int64", "default": 1000 }),
            "at most this many (clamped to 1..=100000)"
        ),
        query_param(
            "subject",
            json!({ "type": "string" }),
            "only records about this request, grant, integration or token id"
        ),
        query_param(
            "format",
            json!({ "enum": ["json", "jsonl"], "default": "json" }),
            "jsonl: newline-delimited JSON"
        ),
    ]);
    let mut resources = operation(
        "list discovered resources",
        "200",
        array_of("Resource"),
        &[BAD_QUERY],
    );
    resources["parameters"] = integration_param.clone();
    let mut permissions = operation(
        "list permissions",
        "200",
        array_of("IntegrationPermission"),
        &[BAD_QUERY],
    );
    permissions["parameters"] = integration_param;
    let watch = |summary: &str, schema: &str, not_found: (&str, &str)| {
        let mut op = operation(summary, "200", schema_ref(schema), &[BAD_QUERY, not_found]);
        op["responses"]["200"]["headers"] = json!({ "ETag": { "description": "the answer's version, quoted: pass it (without the quotes) as after", "schema": { "type": "string" } } });
        op["parameters"] = json!([
            query_param(
                "after",
                json!({ "type": "string", "examples": ["v1-3f1c0a9b7e2d4c55"] }),
                "the version the client has (the ETag of its last answer); the answer waits until the version differs. Without it the answer is immediate"
            ),
            query_param(
                "wait",
                json!({ "type": "integer", "minimum": 0, "default": 30 }),
                "seconds to wait at most for a change (at most 60); the unchanged state is answered then"
            ),
        ]);
        op
    };
    // The agents' endpoints (docs/agents.md): an agent's credential, not a user's token, and the
    // connector id it serves.
    let agent = |summary: &str,
                 status: &str,
                 body: Option<&str>,
                 request: &str,
                 errors: &[(&str, &str)]| {
        let mut op = match body {
            Some(schema) => operation(summary, status, schema_ref(schema), errors),
            None => {
                let mut op = operation(summary, status, json!({}), errors);
                op["responses"][status] = json!({ "description": "recorded" });
                op
            }
        };
        op["security"] = json!([{ "agent": [] }]);
        op["responses"]["401"] = error_response(
            "no agent credential, an unknown, revoked or expired one, or no connector id",
        );
        op["responses"]["403"] = error_response(
            "the credential serves another connector id, or the id is not one of connector.agents",
        );
        op["parameters"] = json!([{ "name": "Apono-Connector-Id", "in": "header", "required": true,
            "schema": { "type": "string" }, "description": "the connector id the agent serves" }]);
        op["requestBody"] =
            json!({ "required": true, "content": json_content(schema_ref(request)) });
        op["responses"]["400"] = error_response("the body is not the JSON the operation takes");
        op["responses"]["413"] = error_response("the body is larger than 16 MiB");
        op
    };
    let poll = agent(
        "an agent's long poll: the due actions of its connector's integrations, leased to it (none after a while)",
        "200",
        Some("AgentWork"),
        "AgentPoll",
        &[],
    );
    let report = agent(
        "an agent's result of one leased action, recorded under the lease",
        "204",
        None,
        "AgentReport",
        &[(
            "409",
            "the lease no longer holds the action: another worker took it over",
        )],
    );
    let metrics = json!({ "summary": "Prometheus metrics", "responses": {
        "200": text("the Prometheus text format"),
        "503": error_response("the database is unavailable") } });
    let slack = json!({ "parameters": [{ "name": "channel", "in": "path", "required": true, "schema": { "type": "string" }, "description": "a [[notifications]] channel of type slack" }], "post": {
                "summary": "Slack's interactivity request URL: an Approve or Reject button press on a notification. Authenticated by Slack's request signature (X-Slack-Signature, X-Slack-Request-Timestamp within five minutes) under the channel's signing secret, not by a bearer token; the Slack user acts as the connector user slack_users maps them to, under the API's rules",
                "parameters": [
                    { "name": "X-Slack-Request-Timestamp", "in": "header", "required": false, "schema": { "type": "string" } },
                    { "name": "X-Slack-Signature", "in": "header", "required": false, "schema": { "type": "string" } }
                ],
                "requestBody": { "required": true, "content": { "application/x-www-form-urlencoded": { "schema": { "type": "object", "properties": { "payload": { "type": "string", "description": "Slack's block_actions payload (JSON)" } } } } } },
                "responses": {
                    "200": { "description": "the press was handled (outcome says how); the message is replaced through its response_url", "content": json_content(schema_ref("SlackOutcome")) },
                    "400": error_response("the payload is not a press of an Apono button"),
                    "401": error_response("the signature is missing, stale or wrong"),
                    "404": error_response("no Slack notification channel of that name"),
                    "413": error_response("the body is larger than connector.max_body_bytes"),
                    "503": error_response("the channel's secret cannot be read, or the database is unavailable")
                } } });
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": { "title": "Apono connector API", "version": env!("CARGO_PKG_VERSION") },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer" },
                "agent": { "type": "http", "scheme": "bearer", "description": "an agent's credential (apono-connector connectors create)" },
            },
            "schemas": schemas(),
        },
        "paths": {
            "/healthz": { "get": { "summary": "liveness", "responses": { "200": text("alive") } } },
            "/readyz": { "get": { "summary": "readiness (database reachable)", "responses": { "200": text("ready"), "503": text("database unavailable") } } },
            "/metrics": { "get": metrics },
            "/api/v1/me": { "get": operation("who the token belongs to", "200", schema_ref("Me"), &[]) },
            "/api/v1/integrations": { "get": operation("list integrations", "200", array_of("Integration"), &[]) },
            "/api/v1/resource-types": { "get": operation("list resource types", "200", array_of("IntegrationResourceType"), &[]) },
            "/api/v1/resources": { "get": resources },
            "/api/v1/permissions": { "get": permissions },
            "/api/v1/access-requests": {
                "get": list_requests,
                "post": with_body(operation("create a request; refused (400, with the dry run's messages as problems) when a dry run would not allow it", "201", schema_ref("AccessRequest"), &[("400", "the body does not parse, or the request is not allowed (problems lists why)")]), "NewRequest", true),
            },
            "/api/v1/access-requests/dry-run": { "post": with_body(operation("check a request without creating it", "200", schema_ref("DryRun"), &[BAD_BODY]), "NewRequest", true) },
            "/api/v1/access-requests/{id}": { "parameters": id_param, "get": operation("describe a request", "200", schema_ref("AccessRequest"), &[NO_REQUEST]) },
            "/api/v1/access-requests/{id}/watch": { "parameters": id_param, "get": watch("wait for the request's next change (long poll): answers when its version differs from after, or after wait seconds unchanged. Changes committed by this connector are answered within milliseconds, those of another replica within a second", "AccessRequest", NO_REQUEST) },
            "/api/v1/access-requests/{id}/approve": { "parameters": id_param, "post": decided(
                "approve; the body is optional, its reason is recorded in the request and the audit log. Under an all_of flow an approval that leaves entries unmet answers 200 with the request still Pending (see awaiting)",
                "Approval", false,
                "not an approver, the requester, or (all_of) an approval that would meet no unmet entry",
                "the request is no longer Pending, its flow is gone, or (all_of) the caller already approved it") },
            "/api/v1/access-requests/{id}/reject": { "parameters": id_param, "post": decided(
                "reject, with a reason", "Rejection", true,
                "not an approver, or the requester",
                "the request is no longer Pending, or its flow is gone") },
            "/api/v1/access-requests/{id}/revoke": { "parameters": id_param, "post": operation("revoke early (the requester or an admin); a Pending request is withdrawn", "200", schema_ref("AccessRequest"), &[("403", "neither the requester nor an admin"), NO_REQUEST]) },
            "/api/v1/access-sessions": { "get": list_sessions },
            "/api/v1/access-sessions/{id}": { "parameters": id_param, "get": operation("describe a session", "200", schema_ref("AccessSession"), &[NO_SESSION]) },
            "/api/v1/access-sessions/{id}/watch": { "parameters": id_param, "get": watch("wait for the session's next change (long poll), as the request's watch", "AccessSession", NO_SESSION) },
            "/api/v1/access-sessions/{id}/access-details": { "parameters": id_param, "get": operation("access details (the grantee only); one-time credentials shown once", "200", schema_ref("AccessDetails"), &[("403", "not the grantee"), NO_SESSION, ("409", "the session is not Active")]) },
            "/api/v1/access-sessions/{id}/reset-credentials": { "parameters": id_param, "post": operation("issue fresh credentials (run by the scheduler at once)", "202", schema_ref("AccessSession"), &[NO_SESSION, ("409", "the session is not Active")]) },
            "/api/v1/tokens": { "get": list_tokens },
            "/api/v1/tokens/{id}/revoke": { "parameters": id_param, "post": operation("revoke a token (its owner or an admin); effective on every replica at the next request", "200", schema_ref("ApiToken"), &[("404", "no such token, or not the caller's")]) },
            "/api/v1/audit": { "get": audit },
            "/api/v1/slack/{channel}/interactions": slack,
            "/agent/v1/poll": { "post": poll },
            "/agent/v1/report": { "post": report },
        }
    });
    crate::identity::openapi::extend(&mut doc);
    doc
}
