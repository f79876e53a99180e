//! What the API returns: access requests and access sessions (grants).

use apono_core::{CredentialStatus, GrantStatus, RequestStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::ControlError;

pub(crate) fn ts(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// An access request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AccessRequest {
    /// Request id.
    pub id: String,
    /// Apono status.
    pub status: RequestStatus,
    /// Who asked.
    pub requester: String,
    /// The access flow that allowed it.
    pub flow: String,
    /// Integration.
    pub integration: String,
    /// Resource type.
    pub resource_type: String,
    /// Resources.
    pub resource_ids: Vec<String>,
    /// Permission.
    pub permission: String,
    /// Why.
    pub justification: String,
    /// Requested duration in seconds (from activation).
    pub duration_seconds: i64,
    /// Who approved or rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The reason the approver (optional) or the rejecter (required) gave.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The access sessions serving it.
    pub session_ids: Vec<String>,
    /// `all_of` flows: the approvals given so far, oldest first (empty under `any_of`, where
    /// `decided_by` names the one approver).
    pub approvals: Vec<RequestApproval>,
    /// `all_of` flows, while `Pending`: the approver entries still unmet, such as
    /// `user:bob@example.com` or `group:sre` (empty once decided, and under `any_of`).
    pub awaiting: Vec<String>,
}

/// One approval of an `all_of` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestApproval {
    /// Who approved (email).
    pub approver: String,
    /// When.
    pub decided_at: DateTime<Utc>,
}

pub(crate) const REQUEST_COLUMNS: &str = "id, status, requester, flow, integration, resource_type, resource_ids, permission, justification, duration_secs, decided_by, reason, created_at, updated_at";

impl AccessRequest {
    pub(crate) fn from_row(r: &AnyRow) -> Result<Self, ControlError> {
        let status: String = get(r, "status")?;
        let ids: String = get(r, "resource_ids")?;
        Ok(Self {
            id: get(r, "id")?,
            status: status
                .parse()
                .map_err(|e: apono_core::UnknownStatus| ControlError::Corrupt(e.to_string()))?,
            requester: get(r, "requester")?,
            flow: get(r, "flow")?,
            integration: get(r, "integration")?,
            resource_type: get(r, "resource_type")?,
            resource_ids: serde_json::from_str(&ids)
                .map_err(|e| ControlError::Corrupt(e.to_string()))?,
            permission: get(r, "permission")?,
            justification: get(r, "justification")?,
            duration_seconds: get(r, "duration_secs")?,
            decided_by: get(r, "decided_by")?,
            reason: get(r, "reason")?,
            created_at: ts(get(r, "created_at")?),
            updated_at: ts(get(r, "updated_at")?),
            session_ids: Vec::new(),
            approvals: Vec::new(),
            awaiting: Vec::new(),
        })
    }
}

/// An access session: one grant in the ledger.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AccessSession {
    /// Grant id.
    pub id: String,
    /// The request that created it.
    pub request_id: String,
    /// Apono grant status.
    pub status: GrantStatus,
    /// Integration.
    pub integration: String,
    /// Resource type.
    pub resource_type: String,
    /// Resource id.
    pub resource_id: String,
    /// Permission.
    pub permission: String,
    /// The grantee's email.
    pub grantee: String,
    /// The account name on the target.
    pub account_name: String,
    /// Duration in seconds, counted from activation.
    pub duration_seconds: i64,
    /// When access ends (set when granting starts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When access became active.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<DateTime<Utc>>,
    /// When access was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether the one-time credentials were shown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_status: Option<CredentialStatus>,
    /// The last action error (secret-free).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

pub(crate) const SESSION_COLUMNS: &str = "id, request_id, status, integration, resource_type, resource_id, permission, grantee_email, account_name, duration_secs, expires_at, activated_at, revoked_at, credential_status, last_error";

impl AccessSession {
    pub(crate) fn from_row(r: &AnyRow) -> Result<Self, ControlError> {
        let status: String = get(r, "status")?;
        let credential: Option<String> = get(r, "credential_status")?;
        let corrupt = |e: apono_core::UnknownStatus| ControlError::Corrupt(e.to_string());
        Ok(Self {
            id: get(r, "id")?,
            request_id: get(r, "request_id")?,
            status: status.parse().map_err(corrupt)?,
            integration: get(r, "integration")?,
            resource_type: get(r, "resource_type")?,
            resource_id: get(r, "resource_id")?,
            permission: get(r, "permission")?,
            grantee: get(r, "grantee_email")?,
            account_name: get(r, "account_name")?,
            duration_seconds: get(r, "duration_secs")?,
            expires_at: get::<Option<i64>>(r, "expires_at")?.map(ts),
            activated_at: get::<Option<i64>>(r, "activated_at")?.map(ts),
            revoked_at: get::<Option<i64>>(r, "revoked_at")?.map(ts),
            credential_status: credential.map(|c| c.parse()).transpose().map_err(corrupt)?,
            last_error: get(r, "last_error")?,
        })
    }
}

pub(crate) fn get<'r, T>(row: &'r AnyRow, column: &str) -> Result<T, ControlError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column)
        .map_err(|e| ControlError::store("decoding a row", e))
}

/// A new access request, as the API receives it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    /// Integration name.
    pub integration: String,
    /// Resource type.
    pub resource_type: String,
    /// Resource ids.
    pub resource_ids: Vec<String>,
    /// Permission.
    pub permission: String,
    /// Why (required by some flows).
    #[serde(default)]
    pub justification: Option<String>,
    /// Duration such as `1h`; the flow's maximum when absent.
    #[serde(default)]
    pub duration: Option<String>,
}

/// What a dry run says about a [`NewRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DryRun {
    /// Whether the request would be accepted.
    pub allowed: bool,
    /// The flow that would serve it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Whether an approver must approve it.
    pub approval_required: bool,
    /// The longest duration the flow allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<String>,
    /// What is missing or wrong, each with a machine-readable [`ProblemCode`].
    pub problems: Vec<Problem>,
    /// Sessions it would extend instead of provisioning again.
    pub extends_sessions: Vec<String>,
}

/// Why a dry run refuses a request, for programs (the API's `code`, in snake case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemCode {
    /// The integration is not configured.
    UnknownIntegration,
    /// `resource_ids` is empty.
    NoResource,
    /// A resource id is not in the integration's discovered inventory.
    UnknownResource,
    /// The duration does not parse.
    InvalidDuration,
    /// The integration's inventory lists no such permission for the resource type.
    UnknownPermission,
    /// No access flow lets the caller request this permission on these resources.
    NoMatchingFlow,
    /// The access flow requires a justification and none was given.
    JustificationRequired,
    /// The requested duration is over the flow's maximum (given in [`Problem::max`]).
    DurationOverMax,
    /// The access flow needs `all_of` approvals that no set of configured users other than the
    /// requester (when the flow bars self-approval) can give, so the request could never be
    /// approved.
    NoPossibleApproval,
    /// More resources than `connector.max_resources_per_request`.
    TooManyResources,
    /// A resource named twice.
    DuplicateResource,
    /// A justification over `connector.max_justification_length`.
    JustificationTooLong,
}

/// One reason a dry run refuses a request: a code for programs next to the text for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind of problem this is.
    pub code: ProblemCode,
    /// One sentence saying what is missing or wrong.
    pub message: String,
    /// With [`ProblemCode::DurationOverMax`]: the flow's maximum duration, such as `1h`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
}

impl Problem {
    pub(crate) fn new(code: ProblemCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            max: None,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
