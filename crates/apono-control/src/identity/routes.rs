//! The sign-in endpoints of the API (`/api/v1/auth/…`), used by `apono login --sso` and
//! `--device` and `apono logout`. None of them takes or gives an IdP token: the connector
//! keeps those, and answers its own API token.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::json;

use super::{CLI_TOKEN_NAME, SignedIn};
use crate::api::Body;
use crate::error::ControlError;
use crate::model::ts;
use crate::plane::ControlPlane;

type Plane = State<Arc<ControlPlane>>;

/// The routes, mounted beside the API's.
pub(crate) fn router() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/api/v1/auth/providers", get(providers))
        .route("/api/v1/auth/oidc/start", post(start))
        .route("/api/v1/auth/oidc/callback", post(callback))
        .route("/api/v1/auth/oidc/device", post(device))
        .route("/api/v1/auth/oidc/device/token", post(device_token))
        .route("/api/v1/auth/logout", post(logout))
}

fn body<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, ControlError> {
    serde_json::from_slice(raw).map_err(|e| ControlError::Invalid(vec![e.to_string()]))
}

fn signed_in(s: &SignedIn) -> Response {
    Json(json!({
        "token": s.token.expose_secret(),
        "token_id": s.token_id,
        "email": s.user.email,
        "groups": s.user.groups,
        "admin": s.user.admin,
        "expires_at": ts(s.expires_at),
    }))
    .into_response()
}

/// The configured identity providers.
async fn providers(State(plane): Plane) -> Response {
    let list: Vec<_> = plane
        .sso()
        .providers()
        .map(|p| json!({ "name": p.name, "display_name": p.label() }))
        .collect();
    Json(list).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Start {
    #[serde(default)]
    provider: Option<String>,
    redirect_uri: String,
}

/// The CLI's loopback redirect: `http://127.0.0.1:<port>/…` or `http://[::1]:<port>/…`
/// (RFC 8252), nothing else, so that a sign-in started here can only come back to the machine
/// that started it.
fn loopback_redirect(uri: &str) -> Result<(), ControlError> {
    let ok = url::Url::parse(uri).is_ok_and(|u| {
        u.scheme() == "http"
            && matches!(u.host_str(), Some("127.0.0.1" | "[::1]"))
            && u.port().is_some()
            && u.username().is_empty()
            && u.password().is_none()
            && u.fragment().is_none()
    });
    if ok {
        Ok(())
    } else {
        Err(ControlError::Invalid(vec![
            "redirect_uri must be http://127.0.0.1:<port>/… (a loopback listener of the CLI)"
                .into(),
        ]))
    }
}

async fn start(State(plane): Plane, Body(raw): Body) -> Result<Response, ControlError> {
    let start: Start = body(&raw)?;
    loopback_redirect(&start.redirect_uri)?;
    let (url, state) = plane
        .sso()
        .start(
            &plane,
            start.provider.as_deref(),
            &start.redirect_uri,
            CLI_TOKEN_NAME,
        )
        .await?;
    Ok(Json(json!({ "authorization_url": url, "state": state })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Callback {
    state: String,
    code: String,
}

async fn callback(State(plane): Plane, Body(raw): Body) -> Result<Response, ControlError> {
    let cb: Callback = body(&raw)?;
    let result = plane
        .sso()
        .finish(&plane, &cb.state, &cb.code, CLI_TOKEN_NAME)
        .await;
    match result {
        Ok(s) => Ok(signed_in(&s)),
        Err(e) => Err(plane.refused_sign_in(e).await),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Device {
    #[serde(default)]
    provider: Option<String>,
}

async fn device(State(plane): Plane, Body(raw): Body) -> Result<Response, ControlError> {
    let d: Device = if raw.iter().all(u8::is_ascii_whitespace) {
        Device { provider: None }
    } else {
        body(&raw)?
    };
    let (handle, device) = plane
        .sso()
        .device_start(&plane, d.provider.as_deref())
        .await?;
    Ok(Json(json!({
        "handle": handle,
        "user_code": device.user_code,
        "verification_uri": device.verification_uri,
        "verification_uri_complete": device.verification_uri_complete,
        "expires_in": device.expires_in,
        "interval": device.interval.unwrap_or(5),
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceToken {
    handle: String,
}

async fn device_token(State(plane): Plane, Body(raw): Body) -> Result<Response, ControlError> {
    let d: DeviceToken = body(&raw)?;
    match plane.sso().device_poll(&plane, &d.handle).await {
        Ok(Ok(s)) => Ok(signed_in(&s)),
        Ok(Err(slow_down)) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "pending": true, "slow_down": slow_down })),
        )
            .into_response()),
        Err(e) => Err(plane.refused_sign_in(e).await),
    }
}

/// Revokes the caller's token when it comes from a sign-in (a personal token is left alone:
/// `apono tokens revoke` is for those).
async fn logout(State(plane): Plane, headers: HeaderMap) -> Result<Response, ControlError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(ControlError::Unauthenticated)?;
    let revoked = plane.sso_logout(token).await?;
    Ok(Json(json!({ "revoked": revoked })).into_response())
}

#[cfg(test)]
mod tests {
    use super::loopback_redirect;

    #[test]
    fn only_the_clis_loopback_listener_is_a_redirect() {
        for ok in [
            "http://127.0.0.1:49152/callback",
            "http://[::1]:8000/callback",
        ] {
            assert!(loopback_redirect(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://evil.example/callback",
            "http://127.0.0.1/callback",
            "http://localhost:5000/callback",
            "http://user@127.0.0.1:5000/callback",
            "http://127.0.0.1.evil.example:5000/callback",
            "http://127.0.0.1:5000/callback#frag",
            "https://127.0.0.1:5000/callback",
            "not a url",
        ] {
            assert!(loopback_redirect(bad).is_err(), "{bad}");
        }
    }
}
