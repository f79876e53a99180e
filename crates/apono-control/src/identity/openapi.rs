//! The sign-in endpoints' part of the OpenAPI document (`crate::api::openapi`).

use serde_json::{Value, json};

fn error(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn ok(schema: &str) -> Value {
    json!({ "description": "success", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

fn body(schema: &str, required: bool) -> Value {
    json!({ "required": required, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } })
}

/// Adds the sign-in paths and schemas to `doc`.
pub(crate) fn extend(doc: &mut Value) {
    let string = json!({ "type": "string" });
    let strings = json!({ "type": "array", "items": { "type": "string" } });
    let schemas = json!({
        "IdentityProvider": { "type": "object", "required": ["name", "display_name"], "properties": {
            "name": string, "display_name": string } },
        "SsoStart": { "type": "object", "additionalProperties": false, "required": ["redirect_uri"], "properties": {
            "provider": { "type": ["string", "null"], "description": "the provider's name (needed when several are configured)" },
            "redirect_uri": { "type": "string", "examples": ["http://127.0.0.1:49152/callback"], "description": "the CLI's loopback listener: http://127.0.0.1:<port>/… only" } } },
        "SsoStarted": { "type": "object", "required": ["authorization_url", "state"], "properties": {
            "authorization_url": { "type": "string", "description": "where to send the browser (authorization code with PKCE; the verifier and nonce stay in the connector)" },
            "state": string } },
        "SsoCallback": { "type": "object", "additionalProperties": false, "required": ["state", "code"], "properties": {
            "state": { "type": "string", "description": "as the provider sent it back; used once" },
            "code": string } },
        "SsoDevice": { "type": "object", "additionalProperties": false, "properties": {
            "provider": { "type": ["string", "null"] } } },
        "SsoDeviceStarted": { "type": "object", "required": ["handle", "user_code", "verification_uri", "expires_in", "interval"], "properties": {
            "handle": { "type": "string", "description": "what the CLI polls with; the device code stays in the connector" },
            "user_code": string, "verification_uri": string,
            "verification_uri_complete": { "type": ["string", "null"] },
            "expires_in": { "type": "integer", "minimum": 0 },
            "interval": { "type": "integer", "minimum": 0 } } },
        "SsoDeviceToken": { "type": "object", "additionalProperties": false, "required": ["handle"], "properties": {
            "handle": string } },
        "SsoPending": { "type": "object", "required": ["pending", "slow_down"], "properties": {
            "pending": { "type": "boolean" }, "slow_down": { "type": "boolean" } } },
        "SignedIn": { "type": "object", "required": ["token", "token_id", "email", "groups", "admin", "expires_at"], "properties": {
            "token": { "type": "string", "description": "the connector's API token (never an IdP token), shown once" },
            "token_id": string, "email": string, "groups": strings,
            "admin": { "type": "boolean" },
            "expires_at": { "type": "string", "format": "date-time" } } },
        "SignedOut": { "type": "object", "required": ["revoked"], "properties": {
            "revoked": { "type": "boolean", "description": "false when the token is a personal token (left alone)" } } },
    });
    let unavailable = error("the database or the identity provider is unavailable");
    let bad = error("the body is not the JSON the operation takes (problems lists why)");
    let big = error("the body is larger than connector.max_body_bytes");
    let refused = error(
        "refused: an unknown, expired or used state, an ID token that does not validate (issuer, audience, expiry, signature, nonce), an email not allowed, or a static user's email",
    );
    let no_provider = error("no such identity provider (or none configured)");
    let paths = json!({
        "/api/v1/auth/providers": { "get": { "summary": "the identity providers one can sign in with", "responses": {
            "200": { "description": "success", "content": { "application/json": { "schema": { "type": "array", "items": { "$ref": "#/components/schemas/IdentityProvider" } } } } } } } },
        "/api/v1/auth/oidc/start": { "post": { "summary": "start a sign-in through an identity provider (the CLI's loopback flow)", "requestBody": body("SsoStart", true), "responses": {
            "200": ok("SsoStarted"), "400": bad.clone(), "404": no_provider.clone(), "413": big.clone(), "503": unavailable.clone() } } },
        "/api/v1/auth/oidc/callback": { "post": { "summary": "finish a sign-in: the code and state the provider sent back, for the connector's API token", "requestBody": body("SsoCallback", true), "responses": {
            "200": ok("SignedIn"), "400": bad.clone(), "403": refused.clone(), "404": no_provider.clone(), "413": big.clone(), "503": unavailable.clone() } } },
        "/api/v1/auth/oidc/device": { "post": { "summary": "start a device-authorization sign-in", "requestBody": body("SsoDevice", false), "responses": {
            "200": ok("SsoDeviceStarted"), "400": bad.clone(), "403": refused.clone(), "404": no_provider.clone(), "413": big.clone(), "503": unavailable.clone() } } },
        "/api/v1/auth/oidc/device/token": { "post": { "summary": "poll a device-authorization sign-in", "requestBody": body("SsoDeviceToken", true), "responses": {
            "200": ok("SignedIn"), "202": ok("SsoPending"), "400": bad, "403": refused, "404": no_provider, "413": big, "503": unavailable.clone() } } },
        "/api/v1/auth/logout": { "post": { "summary": "revoke the caller's token when it comes from a sign-in", "security": [{ "bearer": [] }], "responses": {
            "200": ok("SignedOut"), "401": error("no token, or an unknown one"), "503": unavailable } } },
    });
    if let (Some(all), Value::Object(mine)) =
        (doc["components"]["schemas"].as_object_mut(), schemas)
    {
        all.extend(mine);
    }
    if let (Some(all), Value::Object(mine)) = (doc["paths"].as_object_mut(), paths) {
        all.extend(mine);
    }
}
