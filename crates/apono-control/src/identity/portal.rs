//! The portal's "Sign in with …": `GET /ui/sso/{provider}` starts an authorization-code sign-in
//! (PKCE, state, nonce; the redirect URI is this connector's `/ui/sso/callback`), and
//! `GET /ui/sso/callback` finishes it into a portal session (the same cookie as a token
//! sign-in; signing out revokes its token, which ends the sign-in's session).
//!
//! The state is also bound to the browser that started the sign-in: a cookie
//! (`SameSite=Lax`, so that it comes back with the provider's top-level redirect) holds it,
//! and a callback whose state is not that cookie's is refused (no one can sign someone else's
//! browser in to their own account). The callback answers a page that moves on to `/ui/` by
//! itself, since the `SameSite=Strict` session cookie is not sent along a redirect chain that
//! started at the provider.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use secrecy::ExposeSecret;

use crate::api::QueryOf;
use crate::error::ControlError;
use crate::plane::ControlPlane;
use crate::portal::session::{SESSION_TOKEN_NAME, session_cookie};
use crate::portal::{PageError, PageResult};

const STATE_COOKIE: &str = "apono_sso_state";

/// The routes, mounted inside the portal's (its security headers apply).
pub(crate) fn routes() -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/ui/sso/callback", get(callback))
        .route("/ui/sso/{provider}", get(start))
}

fn secure(plane: &ControlPlane) -> bool {
    plane.config().connector.tls_cert.is_some()
}

fn state_cookie(plane: &ControlPlane, value: &str, max_age: u64) -> HeaderValue {
    let secure = if secure(plane) { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{STATE_COOKIE}={value}; Path=/ui/sso; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("apono_sso_state=; Max-Age=0"))
}

/// This connector's callback URL as the browser reaches it.
fn callback_url(plane: &ControlPlane, headers: &HeaderMap) -> Result<String, ControlError> {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .ok_or_else(|| ControlError::Invalid(vec!["no usable Host header".into()]))?;
    let scheme = if secure(plane) { "https" } else { "http" };
    Ok(format!("{scheme}://{host}/ui/sso/callback"))
}

async fn start(
    State(plane): State<Arc<ControlPlane>>,
    Path(provider): Path<String>,
    headers: HeaderMap,
) -> PageResult {
    let redirect = callback_url(&plane, &headers)?;
    let (url, state) = plane
        .sso()
        .start(&plane, Some(&provider), &redirect, SESSION_TOKEN_NAME)
        .await?;
    let mut response = Redirect::to(&url).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, state_cookie(&plane, &state, 600));
    Ok(response)
}

#[derive(serde::Deserialize)]
struct Back {
    state: Option<String>,
    code: Option<String>,
    error: Option<String>,
}

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn callback(
    State(plane): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    QueryOf(back): QueryOf<Back>,
) -> Result<Response, PageError> {
    if let Some(error) = back.error {
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(60)
            .collect();
        return Err(ControlError::Forbidden(format!(
            "the identity provider refused the sign-in ({error})"
        ))
        .into());
    }
    let (Some(state), Some(code)) = (back.state, back.code) else {
        return Err(
            ControlError::Invalid(vec!["the provider sent no code or state".into()]).into(),
        );
    };
    let bound = cookie(&headers, STATE_COOKIE).is_some_and(|c| super::constant_time_eq(c, &state));
    if !bound {
        return Err(plane
            .refused_sign_in(ControlError::Forbidden(
                "sign-in refused: this browser did not start this sign-in".into(),
            ))
            .await
            .into());
    }
    let signed_in = match plane
        .sso()
        .finish(&plane, &state, &code, SESSION_TOKEN_NAME)
        .await
    {
        Ok(s) => s,
        Err(e) => return Err(plane.refused_sign_in(e).await.into()),
    };
    let max_age =
        u64::try_from((signed_in.expires_at - crate::model::now_ms()) / 1000).unwrap_or(0);
    let mut response = Html(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"0;url=/ui/\"><title>Signed in</title></head>\
         <body><p>Signed in. <a href=\"/ui/\">Continue</a></p></body></html>",
    )
    .into_response();
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        session_cookie(
            &plane,
            &signed_in.token_id,
            signed_in.token.expose_secret(),
            max_age,
        ),
    );
    h.append(header::SET_COOKIE, state_cookie(&plane, "", 0));
    Ok(response)
}
