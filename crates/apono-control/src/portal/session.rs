//! Portal sessions: sign-in with a personal API token, the session cookie, and the form
//! tokens every state-changing form carries.
//!
//! * **A session is a token.** Signing in checks the personal token given, then mints a
//!   short-lived token of the same user named `portal session` (at most [`SESSION_LIFETIME`],
//!   never beyond `connector.token_max_expiry`) in the tokens table; the cookie holds its id
//!   and secret. Every page authenticates it as the API authenticates a bearer token, so
//!   `apono tokens revoke`, expiry and removing the user from the configuration end the session
//!   on every replica. Signing out revokes it. An identity-provider sign-in can call
//!   [`start`] to make the same session.
//! * **The cookie** is `HttpOnly`, `SameSite=Strict`, and over TLS `Secure` with the
//!   `__Host-` prefix (bound to this origin, path `/`); on plain HTTP (loopback only) it is
//!   limited to `/ui`. Nothing secret is ever in a URL.
//! * **Form tokens (CSRF).** Every POST carries a `csrf` field: HMAC-SHA-256 of the session's
//!   token id under a key derived from the master key (the same on every replica). The sign-in
//!   form, before any session, carries the HMAC of a random nonce that a short-lived cookie
//!   holds too. A POST whose `Origin` (or `Sec-Fetch-Site`) says it comes from another site is
//!   refused before that.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::extract::{Form, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::{PageError, PageResult, render};
use crate::config::User;
use crate::error::ControlError;
use crate::plane::{ControlPlane, NewToken};

/// The longest a portal session lasts.
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);

/// The name of the tokens that are portal sessions.
pub(crate) const SESSION_TOKEN_NAME: &str = "portal session";

const PRE_COOKIE: &str = "apono_portal_signin";

/// What every page's navigation needs: who is signed in, and the form token of the session.
#[derive(Clone, Debug)]
pub(crate) struct Nav {
    pub(crate) email: String,
    pub(crate) admin: bool,
    pub(crate) csrf: String,
}

/// The signed-in user of a portal request. Pages without a session redirect to the sign-in
/// page; a POST without one, or from another site, is refused.
pub(crate) struct Viewer {
    pub(crate) user: User,
    pub(crate) nav: Nav,
    session: String,
}

/// Whether the portal is served over TLS (its cookies are then `Secure`).
fn secure(plane: &ControlPlane) -> bool {
    plane.config().connector.tls_cert.is_some()
}

fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-apono_portal"
    } else {
        "apono_portal"
    }
}

/// `Set-Cookie` for `name=value` with the portal's attributes (`max_age` 0 deletes it).
fn set_cookie(secure: bool, name: &str, value: &str, max_age: u64) -> HeaderValue {
    let scope = if secure { "Path=/; Secure" } else { "Path=/ui" };
    HeaderValue::from_str(&format!(
        "{name}={value}; {scope}; HttpOnly; SameSite=Strict; Max-Age={max_age}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("apono_portal=; Max-Age=0"))
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

/// Whether a state-changing request comes from this site: `Sec-Fetch-Site` (when sent) is
/// `same-origin` or `none`, and `Origin` (when sent) names the host the request was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let fetch_site_ok = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| matches!(v, "same-origin" | "none"));
    let origin_ok = match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(origin) => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| !host.is_empty() && authority == host)
        }
    };
    fetch_site_ok && origin_ok
}

/// Compares two form tokens in time independent of where they differ.
fn tokens_match(given: &str, expected: &str) -> bool {
    given.len() == expected.len()
        && given
            .bytes()
            .zip(expected.bytes())
            .fold(0_u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn cross_site() -> PageError {
    PageError::from(ControlError::Forbidden(
        "the form was sent from another site".into(),
    ))
}

fn bad_form_token() -> PageError {
    PageError::from(ControlError::Forbidden(
        "the form's token is missing or wrong: reload the page and try again".into(),
    ))
}

impl FromRequestParts<Arc<ControlPlane>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        plane: &Arc<ControlPlane>,
    ) -> Result<Self, Response> {
        let changing = parts.method != Method::GET && parts.method != Method::HEAD;
        if changing && !same_origin(&parts.headers) {
            return Err(cross_site().into_response());
        }
        let signed_in = match cookie(&parts.headers, cookie_name(secure(plane)))
            .and_then(|v| v.split_once('.'))
        {
            Some((session, token)) => plane
                .authenticate(token)
                .await
                .ok()
                .map(|user| (session.to_owned(), user)),
            None => None,
        };
        let Some((session, user)) = signed_in else {
            return Err(if changing {
                PageError::from(ControlError::Unauthenticated).into_response()
            } else {
                Redirect::to("/ui/sign-in").into_response()
            });
        };
        let keys = plane
            .keys()
            .await
            .map_err(|e| PageError::from(e).into_response())?;
        let nav = Nav {
            email: user.email.clone(),
            admin: user.admin,
            csrf: keys.form_token(&session),
        };
        Ok(Self { user, nav, session })
    }
}

/// A submitted form: its fields in order (a name may repeat).
pub(crate) struct Fields(pub(crate) Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, trimmed; empty when absent.
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.trim())
    }

    /// Every non-empty value of `name`.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, v)| k == name && !v.trim().is_empty())
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
}

impl Viewer {
    /// The form's fields once its `csrf` field is this session's form token.
    pub(crate) fn checked(
        &self,
        Form(fields): Form<Vec<(String, String)>>,
    ) -> Result<Fields, PageError> {
        let fields = Fields(fields);
        if tokens_match(fields.get("csrf"), &self.nav.csrf) {
            Ok(fields)
        } else {
            Err(bad_form_token().with_nav(&self.nav))
        }
    }

    /// Whether the `X-CSRF-Token` header (the script's fetches) is this session's form token.
    pub(crate) fn header_checked(&self, headers: &HeaderMap) -> Result<(), PageError> {
        let given = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if tokens_match(given, &self.nav.csrf) {
            Ok(())
        } else {
            Err(bad_form_token())
        }
    }
}

/// Starts a portal session for `user` (after any sign-in: a personal token today, an
/// identity provider later): mints the session token and answers the cookie that holds it.
pub(crate) async fn start(plane: &ControlPlane, user: &User) -> Result<HeaderValue, ControlError> {
    let lifetime = SESSION_LIFETIME.min(plane.config().connector.token_max_expiry.0);
    let created = plane
        .issue_token(
            Some(user),
            &user.email,
            &NewToken {
                name: Some(SESSION_TOKEN_NAME.into()),
                expires_in: Some(lifetime),
            },
        )
        .await?;
    let value = format!(
        "{}.{}",
        created.info.id,
        secrecy::ExposeSecret::expose_secret(&created.token)
    );
    Ok(set_cookie(
        secure(plane),
        cookie_name(secure(plane)),
        &value,
        lifetime.as_secs(),
    ))
}

#[derive(Template)]
#[template(path = "portal/sign_in.html")]
struct SignInPage {
    nav: Option<Nav>,
    csrf: String,
    error: Option<String>,
    /// Identity providers to sign in with: `(name, label)`.
    sso: Vec<(String, String)>,
}

/// The session cookie holding token `id`'s `token` for `max_age` seconds (an identity
/// provider's sign-in mints the token itself: `crate::identity`).
pub(crate) fn session_cookie(
    plane: &ControlPlane,
    id: &str,
    token: &str,
    max_age: u64,
) -> HeaderValue {
    let secure = secure(plane);
    set_cookie(
        secure,
        cookie_name(secure),
        &format!("{id}.{token}"),
        max_age,
    )
}

/// The sign-in form, with a fresh nonce in a cookie and its HMAC in the form.
async fn sign_in_form(
    plane: &ControlPlane,
    status: StatusCode,
    error: Option<String>,
) -> PageResult {
    let nonce = data_encoding::HEXLOWER.encode(&rand::random::<[u8; 16]>());
    let keys = plane.keys().await?;
    let page = SignInPage {
        nav: None,
        csrf: keys.form_token(&format!("sign-in {nonce}")),
        error,
        sso: plane
            .sso()
            .providers()
            .map(|p| (p.name.clone(), p.label().to_owned()))
            .collect(),
    };
    let mut response = (status, render(&page)).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(secure(plane), PRE_COOKIE, &nonce, 600),
    );
    Ok(response)
}

/// `GET /ui/sign-in`.
pub(crate) async fn sign_in_page(State(plane): State<Arc<ControlPlane>>) -> PageResult {
    sign_in_form(&plane, StatusCode::OK, None).await
}

/// `POST /ui/sign-in`: a personal token in, a session cookie out.
pub(crate) async fn sign_in(
    State(plane): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> PageResult {
    let fields = Fields(fields);
    if !same_origin(&headers) {
        return Err(cross_site());
    }
    let keys = plane.keys().await?;
    let expected = cookie(&headers, PRE_COOKIE).map(|n| keys.form_token(&format!("sign-in {n}")));
    if !expected.is_some_and(|e| tokens_match(fields.get("csrf"), &e)) {
        return Err(bad_form_token());
    }
    let Ok(user) = plane.authenticate(fields.get("token")).await else {
        return sign_in_form(
            &plane,
            StatusCode::UNAUTHORIZED,
            Some("That token is not valid (unknown, expired or revoked).".into()),
        )
        .await;
    };
    let cookie = start(&plane, &user).await?;
    let mut response = Redirect::to("/ui/").into_response();
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, cookie);
    h.append(
        header::SET_COOKIE,
        set_cookie(secure(&plane), PRE_COOKIE, "", 0),
    );
    Ok(response)
}

/// `POST /ui/sign-out`: revokes the session's token and deletes the cookie.
pub(crate) async fn sign_out(
    State(plane): State<Arc<ControlPlane>>,
    viewer: Viewer,
    form: Form<Vec<(String, String)>>,
) -> PageResult {
    viewer.checked(form)?;
    plane
        .revoke_token(Some(&viewer.user), &viewer.session)
        .await?;
    let mut response = Redirect::to("/ui/sign-in").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(secure(&plane), cookie_name(secure(&plane)), "", 0),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn cross_site_posts_are_told_apart() {
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example"),
        ])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ])));
        assert!(!same_origin(&headers(&[("origin", "null")])));
    }

    #[test]
    fn cookies_are_secure_over_tls() {
        let tls = set_cookie(true, cookie_name(true), "tok_a.apono_b", 60);
        assert_eq!(
            tls.to_str().unwrap(),
            "__Host-apono_portal=tok_a.apono_b; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        let plain = set_cookie(false, cookie_name(false), "", 0);
        assert_eq!(
            plain.to_str().unwrap(),
            "apono_portal=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"
        );
    }

    #[test]
    fn cookies_and_tokens() {
        let h = headers(&[("cookie", "a=1; apono_portal=tok_x.apono_y; b=2")]);
        assert_eq!(cookie(&h, "apono_portal"), Some("tok_x.apono_y"));
        assert_eq!(cookie(&h, "apono"), None);
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abd", "abc") && !tokens_match("", "abc"));
    }
}
