//! The portal's pages and forms: each reads or changes through one [`ControlPlane`] operation
//! (the API's), so visibility and approval rules are the API's.

use std::collections::BTreeSet;
use std::sync::Arc;

use apono_core::{CredentialStatus, GrantStatus, RequestStatus};
use askama::Template;
use axum::Json;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::session::{Fields, Nav, Viewer};
use super::{PageError, PageResult, render};
use crate::api::live::{WatchQuery, answer};
use crate::api::{Id, QueryOf};
use crate::error::ControlError;
use crate::model::{AccessRequest, AccessSession, NewRequest, Problem, ProblemCode};
use crate::plane::{ControlPlane, RequestScope};

type Plane = State<Arc<ControlPlane>>;
type RawForm = Form<Vec<(String, String)>>;

/// `5m3s`, `2h10m` (`0s` for a time already past).
fn span(seconds: i64) -> String {
    apono_core::format_duration(std::time::Duration::from_secs(
        u64::try_from(seconds).unwrap_or_default(),
    ))
}

fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// One request as lists show it.
struct RequestRow {
    id: String,
    status: String,
    requester: String,
    target: String,
    permission: String,
    progress: String,
    justification: String,
    created: String,
}

/// What a request waits for, or who decided it.
fn progress(r: &AccessRequest) -> String {
    match r.status {
        RequestStatus::Pending => {
            let given: Vec<&str> = r.approvals.iter().map(|a| a.approver.as_str()).collect();
            let mut parts = Vec::new();
            if !given.is_empty() {
                parts.push(format!("approved by {}", given.join(", ")));
            }
            if r.awaiting.is_empty() {
                let who = r
                    .approval_route
                    .as_ref()
                    .map(|route| route.approvers.join(", "))
                    .unwrap_or_default();
                parts.push(if who.is_empty() {
                    "awaiting approval".into()
                } else {
                    format!("awaiting one of {who}")
                });
            } else {
                parts.push(format!("awaiting {}", r.awaiting.join(", ")));
            }
            parts.join("; ")
        }
        _ => match &r.decided_by {
            Some(by) if r.status == RequestStatus::Rejected => format!("rejected by {by}"),
            Some(by) => format!("approved by {by}"),
            // Withdrawn while pending: never decided.
            None if r.session_ids.is_empty() => String::new(),
            None => "approved automatically".into(),
        },
    }
}

impl From<&AccessRequest> for RequestRow {
    fn from(r: &AccessRequest) -> Self {
        Self {
            id: r.id.clone(),
            status: r.status.to_string(),
            requester: r.requester.clone(),
            target: format!(
                "{} / {} / {}",
                r.integration,
                r.resource_type,
                r.resource_ids.join(", ")
            ),
            permission: r.permission.clone(),
            progress: progress(r),
            justification: r.justification.clone(),
            created: when(&r.created_at),
        }
    }
}

/// One session as lists and its page show it.
struct SessionRow {
    id: String,
    request_id: String,
    status: String,
    grantee: String,
    resource: String,
    permission: String,
    account: String,
    time_left: String,
    expires_ms: i64,
    last_error: String,
}

impl From<&AccessSession> for SessionRow {
    fn from(s: &AccessSession) -> Self {
        let now = Utc::now();
        let active = s.status == GrantStatus::Active;
        let time_left = match (&s.expires_at, active) {
            (Some(at), true) => format!("{} left", span((*at - now).num_seconds())),
            _ => match (&s.ended, &s.revoked_at) {
                (Some(how), Some(at)) => format!("{how} at {}", when(at)),
                (Some(how), None) => how.clone(),
                _ => String::new(),
            },
        };
        Self {
            id: s.id.clone(),
            request_id: s.request_id.clone(),
            status: s.status.to_string(),
            grantee: s.grantee.clone(),
            resource: format!(
                "{} / {} / {}",
                s.integration, s.resource_type, s.resource_id
            ),
            permission: s.permission.clone(),
            account: s.account_name.clone(),
            time_left,
            expires_ms: match (&s.expires_at, active) {
                (Some(at), true) => at.timestamp_millis(),
                _ => 0,
            },
            last_error: s.last_error.clone().unwrap_or_default(),
        }
    }
}

// ---------------------------------------------------------------- my access

#[derive(Template)]
#[template(path = "portal/home.html")]
struct HomePage {
    nav: Option<Nav>,
    requests: Vec<RequestRow>,
    sessions: Vec<SessionRow>,
}

/// `GET /ui/`: my requests and sessions.
pub(crate) async fn home(State(plane): Plane, viewer: Viewer) -> PageResult {
    let nav = viewer.nav.clone();
    let run = async {
        let mut requests = plane.requests(&viewer.user, RequestScope::Mine).await?;
        requests.sort_by_key(|r| std::cmp::Reverse(r.created_at));
        let mut sessions = plane.sessions(&viewer.user, false).await?;
        sessions.sort_by(|a, b| b.id.cmp(&a.id));
        Ok::<_, ControlError>(HomePage {
            nav: Some(viewer.nav.clone()),
            requests: requests.iter().map(RequestRow::from).collect(),
            sessions: sessions.iter().map(SessionRow::from).collect(),
        })
    };
    let page = run.await.map_err(|e| PageError::from(e).with_nav(&nav))?;
    Ok(render(&page))
}

// ---------------------------------------------------------------- request access

struct Choice {
    integration: String,
    resource_type: String,
    value: String,
    label: String,
}

/// The problems of a request, next to the fields they concern.
#[derive(Default)]
struct FieldProblems {
    integration: Vec<String>,
    resources: Vec<String>,
    permission: Vec<String>,
    duration: Vec<String>,
    justification: Vec<String>,
    general: Vec<String>,
}

impl FieldProblems {
    fn from(problems: &[Problem]) -> Self {
        let mut out = Self::default();
        for p in problems {
            let field = match p.code {
                ProblemCode::UnknownIntegration => &mut out.integration,
                ProblemCode::NoResource
                | ProblemCode::UnknownResource
                | ProblemCode::TooManyResources
                | ProblemCode::DuplicateResource => &mut out.resources,
                ProblemCode::UnknownPermission | ProblemCode::NoMatchingFlow => &mut out.permission,
                ProblemCode::InvalidDuration | ProblemCode::DurationOverMax => &mut out.duration,
                ProblemCode::JustificationRequired | ProblemCode::JustificationTooLong => {
                    &mut out.justification
                }
                _ => &mut out.general,
            };
            field.push(p.message.clone());
        }
        out
    }
}

#[derive(Template)]
#[template(path = "portal/new_request.html")]
struct NewRequestPage {
    nav: Option<Nav>,
    integrations: Vec<String>,
    resource_types: Vec<Choice>,
    resources: Vec<Choice>,
    permissions: Vec<Choice>,
    form: NewRequest,
    problems: FieldProblems,
}

impl NewRequestPage {
    fn csrf(&self) -> &str {
        self.nav.as_ref().map_or("", |n| n.csrf.as_str())
    }

    fn chosen(&self, id: &str) -> bool {
        self.form.resource_ids.iter().any(|r| r == id)
    }

    fn duration(&self) -> &str {
        self.form.duration.as_deref().unwrap_or_default()
    }

    fn justification(&self) -> &str {
        self.form.justification.as_deref().unwrap_or_default()
    }
}

async fn new_request_page(
    plane: &ControlPlane,
    nav: &Nav,
    form: NewRequest,
    problems: FieldProblems,
) -> Result<NewRequestPage, ControlError> {
    let inventory = plane.inventory().await?;
    let mut resource_types = Vec::new();
    let mut resources = Vec::new();
    let mut permissions = Vec::new();
    for (integration, inv) in &inventory {
        let mut types = BTreeSet::new();
        for r in &inv.resources {
            types.insert(r.resource_type.as_str().to_owned());
            resources.push(Choice {
                integration: integration.clone(),
                resource_type: r.resource_type.as_str().to_owned(),
                value: r.id.clone(),
                label: if r.name.is_empty() || r.name == r.id {
                    r.id.clone()
                } else {
                    format!("{} ({})", r.name, r.id)
                },
            });
        }
        for p in &inv.permissions {
            types.insert(p.resource_type.as_str().to_owned());
            permissions.push(Choice {
                integration: integration.clone(),
                resource_type: p.resource_type.as_str().to_owned(),
                value: p.permission.as_str().to_owned(),
                label: match &p.description {
                    Some(d) if !d.is_empty() => format!("{}: {d}", p.permission.as_str()),
                    _ => p.permission.as_str().to_owned(),
                },
            });
        }
        resource_types.extend(types.into_iter().map(|t| Choice {
            integration: integration.clone(),
            resource_type: t.clone(),
            value: t.clone(),
            label: format!("{integration}: {t}"),
        }));
    }
    Ok(NewRequestPage {
        nav: Some(nav.clone()),
        integrations: inventory.keys().cloned().collect(),
        resource_types,
        resources,
        permissions,
        form,
        problems,
    })
}

/// `GET /ui/requests/new`.
pub(crate) async fn new_request(State(plane): Plane, viewer: Viewer) -> PageResult {
    let empty = NewRequest {
        integration: String::new(),
        resource_type: String::new(),
        resource_ids: Vec::new(),
        permission: String::new(),
        justification: None,
        duration: None,
    };
    let page = new_request_page(&plane, &viewer.nav, empty, FieldProblems::default())
        .await
        .map_err(|e| PageError::from(e).with_nav(&viewer.nav))?;
    Ok(render(&page))
}

fn optional(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn new_request_of(fields: &Fields) -> NewRequest {
    NewRequest {
        integration: fields.get("integration").to_owned(),
        resource_type: fields.get("resource_type").to_owned(),
        resource_ids: fields.all("resource"),
        permission: fields.get("permission").to_owned(),
        justification: optional(fields.get("justification")),
        duration: optional(fields.get("duration")),
    }
}

/// `POST /ui/requests/new`: a dry run first; its problems are shown next to the fields.
pub(crate) async fn create_request(
    State(plane): Plane,
    viewer: Viewer,
    form: RawForm,
) -> PageResult {
    let fields = viewer.checked(form)?;
    let new = new_request_of(&fields);
    let nav = viewer.nav.clone();
    let run = async {
        let check = plane.dry_run(&viewer.user, &new).await?;
        if !check.allowed {
            let page = new_request_page(
                &plane,
                &viewer.nav,
                new.clone(),
                FieldProblems::from(&check.problems),
            )
            .await?;
            return Ok((StatusCode::BAD_REQUEST, render(&page)).into_response());
        }
        let created = plane.create_request(&viewer.user, &new).await?;
        Ok::<_, ControlError>(Redirect::to(&format!("/ui/requests/{}", created.id)).into_response())
    };
    run.await.map_err(|e| PageError::from(e).with_nav(&nav))
}

/// `POST /ui/dry-run` (the script, as the fields are typed): the dry run of the form's
/// request, JSON as the API answers it. The form token travels in `X-CSRF-Token`.
pub(crate) async fn dry_run(
    State(plane): Plane,
    viewer: Viewer,
    headers: HeaderMap,
    Json(new): Json<NewRequest>,
) -> Result<Response, PageError> {
    viewer.header_checked(&headers)?;
    Ok(Json(plane.dry_run(&viewer.user, &new).await?).into_response())
}

// ---------------------------------------------------------------- one request

#[derive(Template)]
#[template(path = "portal/request.html")]
struct RequestPage {
    nav: Option<Nav>,
    r: RequestRow,
    version: String,
    duration: String,
    reason: String,
    approvals: Vec<(String, String)>,
    sessions: Vec<SessionRow>,
    can_decide: bool,
    can_revoke: bool,
}

/// `GET /ui/requests/{id}`: status, approval progress, sessions; approve or reject for its
/// approvers, revoke for its requester and admins. Updated live (see `portal.js`).
pub(crate) async fn request(State(plane): Plane, viewer: Viewer, Id(id): Id) -> PageResult {
    let nav = viewer.nav.clone();
    let run = async {
        let r = plane.request(&viewer.user, &id).await?;
        let mut sessions = Vec::new();
        for s in &r.session_ids {
            // Approvers see the request, not the grantee's sessions.
            if let Ok(s) = plane.session(&viewer.user, s).await {
                sessions.push(SessionRow::from(&s));
            }
        }
        let can_decide = r.status == RequestStatus::Pending
            && plane
                .requests(&viewer.user, RequestScope::AwaitingMyApproval)
                .await?
                .iter()
                .any(|p| p.id == r.id);
        let can_revoke = !r.status.is_final()
            && (viewer.user.admin || r.requester.eq_ignore_ascii_case(&viewer.user.email));
        Ok::<_, ControlError>(RequestPage {
            nav: Some(viewer.nav.clone()),
            version: crate::watch::version_of(&r),
            duration: span(r.duration_seconds),
            reason: r.reason.clone().unwrap_or_default(),
            approvals: r
                .approvals
                .iter()
                .map(|a| (a.approver.clone(), when(&a.decided_at)))
                .collect(),
            r: RequestRow::from(&r),
            sessions,
            can_decide,
            can_revoke,
        })
    };
    let page = run.await.map_err(|e| PageError::from(e).with_nav(&nav))?;
    Ok(render(&page))
}

fn back_to_request(id: &str) -> Response {
    Redirect::to(&format!("/ui/requests/{id}")).into_response()
}

/// `POST /ui/requests/{id}/approve`, with an optional reason.
pub(crate) async fn approve(
    State(plane): Plane,
    viewer: Viewer,
    Id(id): Id,
    form: RawForm,
) -> PageResult {
    let fields = viewer.checked(form)?;
    let reason = optional(fields.get("reason"));
    plane
        .approve(&viewer.user, &id, reason.as_deref())
        .await
        .map_err(|e| PageError::from(e).with_nav(&viewer.nav))?;
    Ok(back_to_request(&id))
}

/// `POST /ui/requests/{id}/reject`, with a reason (required).
pub(crate) async fn reject(
    State(plane): Plane,
    viewer: Viewer,
    Id(id): Id,
    form: RawForm,
) -> PageResult {
    let fields = viewer.checked(form)?;
    let reason = fields.get("reason");
    let result = if reason.is_empty() {
        Err(ControlError::Invalid(vec![
            "a rejection needs a reason".into(),
        ]))
    } else {
        plane.reject(&viewer.user, &id, reason).await
    };
    result.map_err(|e| PageError::from(e).with_nav(&viewer.nav))?;
    Ok(back_to_request(&id))
}

/// `POST /ui/requests/{id}/revoke`: revoke early (withdraw while pending).
pub(crate) async fn revoke(
    State(plane): Plane,
    viewer: Viewer,
    Id(id): Id,
    form: RawForm,
) -> PageResult {
    viewer.checked(form)?;
    plane
        .revoke(&viewer.user, &id)
        .await
        .map_err(|e| PageError::from(e).with_nav(&viewer.nav))?;
    Ok(back_to_request(&id))
}

/// `GET /ui/requests/{id}/watch?after=VERSION&wait=SECONDS`: the script's long poll, the API's
/// watch under the portal's session.
pub(crate) async fn watch_request(
    State(plane): Plane,
    viewer: Viewer,
    Id(id): Id,
    QueryOf(q): QueryOf<WatchQuery>,
) -> Result<Response, PageError> {
    let v = plane
        .watch_request(&viewer.user, &id, q.after.as_deref(), q.wait())
        .await?;
    Ok(answer(v))
}

// ---------------------------------------------------------------- one session

#[derive(Template)]
#[template(path = "portal/session.html")]
struct SessionPage {
    nav: Option<Nav>,
    s: SessionRow,
    version: String,
    mine: bool,
    active: bool,
    unseen: bool,
    revealed: bool,
    credentials: Vec<(String, String)>,
    note: String,
    instructions: String,
    cli: String,
}

async fn session_page(
    plane: &ControlPlane,
    viewer: &Viewer,
    id: &str,
) -> Result<SessionPage, ControlError> {
    let s = plane.session(&viewer.user, id).await?;
    Ok(SessionPage {
        nav: Some(viewer.nav.clone()),
        mine: s.grantee.eq_ignore_ascii_case(&viewer.user.email),
        active: s.status == GrantStatus::Active,
        unseen: s.credential_status == Some(CredentialStatus::New),
        revealed: false,
        credentials: Vec::new(),
        note: String::new(),
        instructions: String::new(),
        cli: String::new(),
        version: crate::watch::version_of(&s),
        s: SessionRow::from(&s),
    })
}

/// `GET /ui/sessions/{id}`: the session, time left, and (for its grantee, once) a button that
/// reveals the credentials.
pub(crate) async fn session(State(plane): Plane, viewer: Viewer, Id(id): Id) -> PageResult {
    let page = session_page(&plane, &viewer, &id)
        .await
        .map_err(|e| PageError::from(e).with_nav(&viewer.nav))?;
    Ok(render(&page))
}

/// `POST /ui/sessions/{id}/reveal`: the access details, the one-time credentials included the
/// first time (the same one-time event as `apono access use`); masked ever after.
pub(crate) async fn reveal(
    State(plane): Plane,
    viewer: Viewer,
    Id(id): Id,
    form: RawForm,
) -> PageResult {
    viewer.checked(form)?;
    let run = async {
        let details = plane.access_details(&viewer.user, &id).await?;
        let mut page = session_page(&plane, &viewer, &id).await?;
        page.revealed = true;
        match &details["credentials"] {
            serde_json::Value::Object(map) => {
                page.credentials = map
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
            }
            serde_json::Value::String(note) => page.note = note.clone(),
            _ => {}
        }
        page.instructions = match &details["instructions"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => o
                .get("plain")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        };
        page.cli = details["cli"].as_str().unwrap_or_default().to_owned();
        Ok::<_, ControlError>(page)
    };
    let page = run
        .await
        .map_err(|e| PageError::from(e).with_nav(&viewer.nav))?;
    Ok(render(&page))
}

/// `POST /ui/sessions/{id}/reset-credentials`.
pub(crate) async fn reset_credentials(
    State(plane): Plane,
    viewer: Viewer,
    Id(id): Id,
    form: RawForm,
) -> PageResult {
    viewer.checked(form)?;
    plane
        .reset_credentials(&viewer.user, &id)
        .await
        .map_err(|e| PageError::from(e).with_nav(&viewer.nav))?;
    Ok(Redirect::to(&format!("/ui/sessions/{id}")).into_response())
}

/// `GET /ui/sessions/{id}/watch?after=VERSION&wait=SECONDS`: the script's long poll of a
/// session page.
pub(crate) async fn watch_session(
    State(plane): Plane,
    viewer: Viewer,
    Id(id): Id,
    QueryOf(q): QueryOf<WatchQuery>,
) -> Result<Response, PageError> {
    let v = plane
        .watch_session(&viewer.user, &id, q.after.as_deref(), q.wait())
        .await?;
    Ok(answer(v))
}

// ---------------------------------------------------------------- approvers

#[derive(Template)]
#[template(path = "portal/inbox.html")]
struct InboxPage {
    nav: Option<Nav>,
    requests: Vec<RequestRow>,
}

/// `GET /ui/inbox`: the requests awaiting my approval, each with approve and reject forms.
pub(crate) async fn inbox(State(plane): Plane, viewer: Viewer) -> PageResult {
    let requests = plane
        .requests(&viewer.user, RequestScope::AwaitingMyApproval)
        .await
        .map_err(|e| PageError::from(e).with_nav(&viewer.nav))?;
    Ok(render(&InboxPage {
        nav: Some(viewer.nav.clone()),
        requests: requests.iter().map(RequestRow::from).collect(),
    }))
}

// ---------------------------------------------------------------- admins

#[derive(Template)]
#[template(path = "portal/admin_requests.html")]
struct AdminRequestsPage {
    nav: Option<Nav>,
    requests: Vec<RequestRow>,
}

/// `GET /ui/admin/requests`: every request (admins).
pub(crate) async fn admin_requests(State(plane): Plane, viewer: Viewer) -> PageResult {
    let mut requests = plane
        .requests(&viewer.user, RequestScope::All)
        .await
        .map_err(|e| PageError::from(e).with_nav(&viewer.nav))?;
    requests.sort_by_key(|r| std::cmp::Reverse(r.created_at));
    Ok(render(&AdminRequestsPage {
        nav: Some(viewer.nav.clone()),
        requests: requests.iter().map(RequestRow::from).collect(),
    }))
}

#[derive(Template)]
#[template(path = "portal/admin_revoke_failed.html")]
struct RevokeFailedPage {
    nav: Option<Nav>,
    sessions: Vec<SessionRow>,
}

/// `GET /ui/admin/revoke-failed`: grants whose revoke keeps failing (admins).
pub(crate) async fn admin_revoke_failed(State(plane): Plane, viewer: Viewer) -> PageResult {
    let sessions = plane
        .sessions(&viewer.user, true)
        .await
        .map_err(|e| PageError::from(e).with_nav(&viewer.nav))?;
    Ok(render(&RevokeFailedPage {
        nav: Some(viewer.nav.clone()),
        sessions: sessions
            .iter()
            .filter(|s| s.status == GrantStatus::RevokeFailed)
            .map(SessionRow::from)
            .collect(),
    }))
}

/// The audit page's filters (a query string: nothing secret).
#[derive(Deserialize, Default)]
pub(crate) struct AuditFilter {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    outcome: String,
}

impl AuditFilter {
    /// The query string of these filters, for the export link.
    fn query(&self) -> String {
        let mut q = vec![("after", self.after.to_string())];
        q.push(("limit", self.limit().to_string()));
        for (k, v) in [
            ("subject", &self.subject),
            ("actor", &self.actor),
            ("action", &self.action),
            ("outcome", &self.outcome),
        ] {
            if !v.is_empty() {
                q.push((k, v.clone()));
            }
        }
        serde_urlencoded::to_string(&q).unwrap_or_default()
    }

    fn limit(&self) -> i64 {
        self.limit.unwrap_or(500).clamp(1, 100_000)
    }
}

/// The records the filters select: `subject` in the store's query, the others on the page
/// of `limit` records read.
async fn audit_records(
    plane: &ControlPlane,
    viewer: &Viewer,
    f: &AuditFilter,
) -> Result<Vec<crate::audit::AuditRecord>, ControlError> {
    let subject = (!f.subject.is_empty()).then_some(f.subject.as_str());
    let records = plane
        .audit_records(&viewer.user, f.after, f.limit(), subject)
        .await?;
    Ok(records
        .into_iter()
        .filter(|r| f.actor.is_empty() || r.actor.eq_ignore_ascii_case(&f.actor))
        .filter(|r| f.action.is_empty() || r.action.starts_with(&f.action))
        .filter(|r| f.outcome.is_empty() || r.outcome == f.outcome)
        .collect())
}

struct AuditRow {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    subject: String,
    outcome: String,
    details: String,
}

#[derive(Template)]
#[template(path = "portal/admin_audit.html")]
struct AuditPage {
    nav: Option<Nav>,
    filter: AuditFilter,
    export: String,
    records: Vec<AuditRow>,
}

/// `GET /ui/admin/audit`: the audit log with filters (admins).
pub(crate) async fn admin_audit(
    State(plane): Plane,
    viewer: Viewer,
    QueryOf(filter): QueryOf<AuditFilter>,
) -> PageResult {
    let records = audit_records(&plane, &viewer, &filter)
        .await
        .map_err(|e| PageError::from(e).with_nav(&viewer.nav))?;
    Ok(render(&AuditPage {
        nav: Some(viewer.nav.clone()),
        export: format!("/ui/admin/audit.jsonl?{}", filter.query()),
        records: records
            .iter()
            .map(|r| AuditRow {
                seq: r.seq,
                at: DateTime::from_timestamp_millis(r.at)
                    .map(|t| when(&t))
                    .unwrap_or_default(),
                actor: r.actor.clone(),
                action: r.action.clone(),
                subject: r.subject.clone(),
                outcome: r.outcome.clone(),
                details: r.details.clone(),
            })
            .collect(),
        filter,
    }))
}

/// `GET /ui/admin/audit.jsonl`: the same records as JSON lines, as a download.
pub(crate) async fn admin_audit_export(
    State(plane): Plane,
    viewer: Viewer,
    QueryOf(filter): QueryOf<AuditFilter>,
) -> PageResult {
    let records = audit_records(&plane, &viewer, &filter)
        .await
        .map_err(|e| PageError::from(e).with_nav(&viewer.nav))?;
    let mut text = String::new();
    for r in &records {
        text.push_str(&serde_json::to_string(r).unwrap_or_default());
        text.push('\n');
    }
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"apono-audit.jsonl\"",
            ),
        ],
        text,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_export_links() {
        assert_eq!(span(303), "5m3s");
        assert_eq!(span(-5), "0s");
        let filter = AuditFilter {
            subject: "req_1&x=y".into(),
            ..AuditFilter::default()
        };
        assert_eq!(filter.query(), "after=0&limit=500&subject=req_1%26x%3Dy");
    }
}
