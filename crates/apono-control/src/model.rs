//! What the API returns: access requests and access sessions (grants).

use apono_core::{CredentialStatus, GrantStatus, RequestStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Now, in Unix milliseconds (the store's time unit).
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

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
    /// While `Pending`: who approves it now (the access flow's approvers, the resource owner or
    /// the integration's owners).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_route: Option<ApprovalRoute>,
}

/// Where the approvers of a request come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ApproverSource {
    /// The access flow's `approvers`.
    AccessFlow,
    /// The owner named by the integration's `resource_owner_tag` on the requested resources.
    ResourceOwner,
    /// The integration's `owners`: the flow names no approver who can approve.
    IntegrationOwners,
}

impl ApproverSource {
    /// The name used in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccessFlow => "access_flow",
            Self::ResourceOwner => "resource_owner",
            Self::IntegrationOwners => "integration_owners",
        }
    }
}

/// Who approves a request: shown by the dry run and on a pending request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApprovalRoute {
    /// Where the approvers come from.
    pub source: ApproverSource,
    /// `any_of`: one of them approves; `all_of`: one per entry, each a different person.
    pub mode: crate::config::ApprovalMode,
    /// The approvers: `user:EMAIL` or `group:NAME`.
    pub approvers: Vec<String>,
}

/// One approval of an `all_of` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RequestApproval {
    /// Who approved (email).
    pub approver: String,
    /// When.
    pub decided_at: DateTime<Utc>,
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
    /// How access ended, once it has: `expired` (at `expires_at`) or `revoked` (early).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
    /// Who ended it early: a user's email, or `connector` for a person removed from the
    /// configuration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_by: Option<String>,
}

/// A personal API token as listed (never the token itself, nor its hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    /// Token id (`tok_…`).
    pub id: String,
    /// The user it authenticates (email).
    pub user: String,
    /// Its name, given at creation.
    pub name: String,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When it was last used (recorded at most once a minute per connector).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who revoked it: a user's email, or `connector` for `apono-connector tokens revoke`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// An agent's credential as listed (never the credential itself, nor its hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnectorCredential {
    /// Credential id (`cc_…`).
    pub id: String,
    /// The connector id its agents serve.
    pub connector: String,
    /// Its name, given at creation.
    pub name: String,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
    /// When an agent last polled with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who revoked it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// A token just created: the secret is shown here once and never again.
#[derive(Debug)]
pub struct CreatedToken {
    /// What lists show of it.
    pub info: ApiToken,
    /// The bearer token.
    pub token: secrecy::SecretString,
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
    /// With `approval_required`: who would approve it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval_route: Option<ApprovalRoute>,
    /// The longest duration the flow allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<String>,
    /// What is missing or wrong, each with a machine-readable [`ProblemCode`].
    pub problems: Vec<Problem>,
    /// Sessions it would extend instead of provisioning again.
    pub extends_sessions: Vec<String>,
    /// `connector offline` when the integration is bound to a connector none of whose agents
    /// is online: the request is accepted and its grants wait for the agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration_status: Option<&'static str>,
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
