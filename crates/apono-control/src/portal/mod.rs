//! The web portal under `/ui/`: server-rendered pages (askama templates in
//! `templates/portal/`) over the same [`ControlPlane`] operations as the API, so the same rules
//! hold (a request is visible to its requester, its approvers and admins; self-approval is
//! refused; only the grantee sees credentials, once).
//!
//! * `session`: sign-in with a personal token, the session cookie and the form tokens (CSRF).
//! * `pages`: one handler per page or form.
//! * `static/`: the one style sheet and the one script (progressive enhancement: field problems
//!   as they are typed, copy buttons, live status by long poll). Every page works without it.
//!
//! Every answer carries a strict Content-Security-Policy (no inline script or style, nothing
//! from elsewhere, no framing), `no-store` (pages may show credentials) and
//! `Referrer-Policy: same-origin` (with `no-referrer` browsers send `Origin: null` with
//! same-origin form posts, which the origin check refuses). See `docs/portal.md`.

mod pages;
pub(crate) mod session;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::ControlError;
use crate::plane::ControlPlane;

/// The portal's policy: scripts, styles, fetches and forms from this origin only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const SCRIPT: &str = include_str!("static/portal.js");
const STYLE: &str = include_str!("static/portal.css");

/// The portal's routes, mounted beside the API; form bodies are limited to `max_body_bytes`
/// (`connector.max_body_bytes`, as the API's).
pub(crate) fn router(max_body_bytes: usize) -> Router<Arc<ControlPlane>> {
    Router::new()
        .route("/ui", get(pages::home))
        .route("/ui/", get(pages::home))
        .route(
            "/ui/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/ui/sign-out", post(session::sign_out))
        .route(
            "/ui/requests/new",
            get(pages::new_request).post(pages::create_request),
        )
        .route("/ui/dry-run", post(pages::dry_run))
        .route("/ui/requests/{id}", get(pages::request))
        .route("/ui/requests/{id}/approve", post(pages::approve))
        .route("/ui/requests/{id}/reject", post(pages::reject))
        .route("/ui/requests/{id}/revoke", post(pages::revoke))
        .route("/ui/requests/{id}/watch", get(pages::watch_request))
        .route("/ui/sessions/{id}", get(pages::session))
        .route("/ui/sessions/{id}/watch", get(pages::watch_session))
        .route("/ui/sessions/{id}/reveal", post(pages::reveal))
        .route(
            "/ui/sessions/{id}/reset-credentials",
            post(pages::reset_credentials),
        )
        .route("/ui/inbox", get(pages::inbox))
        .route("/ui/admin/requests", get(pages::admin_requests))
        .route("/ui/admin/revoke-failed", get(pages::admin_revoke_failed))
        .route("/ui/admin/audit", get(pages::admin_audit))
        .route("/ui/admin/audit.jsonl", get(pages::admin_audit_export))
        .route(
            "/ui/static/portal.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/static/portal.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .merge(crate::identity::portal::routes())
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(headers))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The security headers of every portal answer.
async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A page rendered, or the error page when the template fails (it cannot with our types).
fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a portal template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// The error page.
#[derive(Template)]
#[template(path = "portal/error.html")]
struct ErrorPage {
    nav: Option<session::Nav>,
    title: String,
    message: String,
    problems: Vec<String>,
}

/// What a portal handler fails with: shown as the error page with the API's status codes.
pub(crate) struct PageError(Box<Failure>);

struct Failure {
    status: StatusCode,
    error: ControlError,
    nav: Option<session::Nav>,
}

impl PageError {
    pub(crate) fn with_nav(mut self, nav: &session::Nav) -> Self {
        self.0.nav = Some(nav.clone());
        self
    }
}

impl From<ControlError> for PageError {
    fn from(error: ControlError) -> Self {
        let status = match &error {
            ControlError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ControlError::Forbidden(_) => StatusCode::FORBIDDEN,
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Invalid(_) | ControlError::Config(_) => StatusCode::BAD_REQUEST,
            ControlError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self(Box::new(Failure {
            status,
            error,
            nav: None,
        }))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let Failure { status, error, nav } = *self.0;
        let title = match status {
            StatusCode::UNAUTHORIZED => "Sign in first",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::CONFLICT => "Not possible now",
            StatusCode::BAD_REQUEST => "Check the form",
            _ => "Unavailable",
        };
        let problems = match &error {
            ControlError::Invalid(p) => p.clone(),
            _ => Vec::new(),
        };
        let page = ErrorPage {
            nav,
            title: title.into(),
            message: error.to_string(),
            problems,
        };
        (status, render(&page)).into_response()
    }
}

/// A handler's result.
pub(crate) type PageResult = Result<Response, PageError>;
