//! What the connector API exchanges, with the API's field names.
//!
//! Every type deserialises leniently (unknown fields are ignored, so a newer connector does not
//! break an older client) and serialises with exactly the fields listed here, which is the JSON
//! the `apono` CLI prints with `-o json`.

use std::collections::BTreeMap;

use apono_core::{GrantStatus, RequestStatus};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// An integration the connector serves (`GET /api/v1/integrations`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Integration {
    /// Unique name.
    pub name: String,
    /// Integration type, such as `ssh`.
    #[serde(rename = "type")]
    pub integration_type: String,
    /// Resource types it offers.
    #[serde(default)]
    pub connected_resource_types: Vec<String>,
    /// The kind of secret store holding its admin credentials (`apono`, `aws`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_store: Option<String>,
    /// Text appended to every grant's access instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_access_details: Option<String>,
    /// The connector id whose worker runs its actions (the connector's own, or an agent's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<String>,
    /// `active`, or `connector offline` when no agent of its connector is online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// A resource type offered by an integration (`GET /api/v1/resource-types`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct ResourceTypeEntry {
    /// Integration name.
    pub integration: String,
    /// Resource type, such as `ssh-server`.
    pub resource_type: String,
}

/// A discovered resource (`GET /api/v1/resources`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Resource {
    /// Integration name.
    pub integration: String,
    /// Resource type.
    pub resource_type: String,
    /// Resource id, used in requests.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A permission that may be requested (`GET /api/v1/permissions`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct PermissionEntry {
    /// Integration name.
    pub integration: String,
    /// Resource type.
    pub resource_type: String,
    /// Permission name, such as `Default` or `ReadOnly`.
    pub permission: String,
    /// What it gives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A new access request (`POST /api/v1/access-requests` and `…/dry-run`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct NewRequest {
    /// Integration name.
    pub integration: String,
    /// Resource type.
    pub resource_type: String,
    /// Resource ids.
    pub resource_ids: Vec<String>,
    /// Permission.
    pub permission: String,
    /// Why (required by some access flows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// Duration such as `1h` or `30m`; the flow's maximum when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// What the dry-run endpoint says about a [`NewRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct DryRun {
    /// Whether the request would be accepted.
    pub allowed: bool,
    /// The access flow that would serve it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    /// Whether an approver must approve it.
    #[serde(default)]
    pub approval_required: bool,
    /// The longest duration the flow allows, such as `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<String>,
    /// What is missing or wrong, each with its [`Problem::code`].
    #[serde(default)]
    pub problems: Vec<Problem>,
    /// Sessions the request would extend instead of provisioning again.
    #[serde(default)]
    pub extends_sessions: Vec<String>,
    /// With `approval_required`: who would approve it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_route: Option<ApprovalRoute>,
}

/// The [`Problem::code`]s the connector sends. A newer connector may send others: treat an
/// unknown code like a plain message.
pub mod problem_code {
    /// The integration is not configured.
    pub const UNKNOWN_INTEGRATION: &str = "unknown_integration";
    /// No resource id was given.
    pub const NO_RESOURCE: &str = "no_resource";
    /// A resource id is not in the integration's discovered inventory.
    pub const UNKNOWN_RESOURCE: &str = "unknown_resource";
    /// The duration does not parse.
    pub const INVALID_DURATION: &str = "invalid_duration";
    /// The integration offers no such permission for the resource type.
    pub const UNKNOWN_PERMISSION: &str = "unknown_permission";
    /// No access flow lets the caller request this.
    pub const NO_MATCHING_FLOW: &str = "no_matching_flow";
    /// The access flow requires a justification.
    pub const JUSTIFICATION_REQUIRED: &str = "justification_required";
    /// The duration is over the flow's maximum, given in [`Problem::max`](super::Problem::max).
    pub const DURATION_OVER_MAX: &str = "duration_over_max";
    /// The flow needs approvals no one but the requester could give.
    pub const NO_POSSIBLE_APPROVAL: &str = "no_possible_approval";
}

/// One reason a dry run refuses a request: a machine-readable `code` (see [`problem_code`])
/// next to the sentence for people.
///
/// A plain string (what connectors before codes sent) reads as a problem with an empty code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// What kind of problem, such as `justification_required`; empty when the connector sent
    /// none.
    pub code: String,
    /// One sentence saying what is missing or wrong.
    pub message: String,
    /// With `duration_over_max`: the flow's maximum duration, such as `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
}

impl Problem {
    /// Whether the problem has this code (one of [`problem_code`]).
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl<'de> Deserialize<'de> for Problem {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Coded {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
            #[serde(default)]
            max: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Coded(Coded),
        }
        Ok(match Either::deserialize(d)? {
            Either::Text(message) => Self {
                code: String::new(),
                message,
                max: None,
            },
            Either::Coded(c) => Self {
                code: c.code,
                message: c.message,
                max: c.max,
            },
        })
    }
}

/// A finished sign-in through an identity provider: the connector's token and who it is for.
#[derive(Deserialize)]
#[non_exhaustive]
pub struct SignedIn {
    /// The connector's API token (never an identity provider's token).
    pub token: SecretString,
    /// The token's id.
    pub token_id: String,
    /// The user's email.
    pub email: String,
    /// The user's groups at sign-in.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Whether the user is an admin.
    #[serde(default)]
    pub admin: bool,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("token_id", &self.token_id)
            .field("email", &self.email)
            .field("groups", &self.groups)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

/// A device-authorization sign-in in progress: where the person enters the code.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct DeviceSignIn {
    /// What to poll with ([`crate::Client::sso_device_token`]).
    pub handle: String,
    /// The code the person enters.
    pub user_code: String,
    /// Where they enter it.
    pub verification_uri: String,
    /// The same with the code filled in.
    #[serde(default)]
    pub verification_uri_complete: Option<String>,
    /// Seconds between polls.
    #[serde(default)]
    pub interval: u64,
}

/// Who a personal token belongs to (`GET /api/v1/me`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Me {
    /// The user's email.
    pub email: String,
    /// The user's groups, as access flows match them.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Whether the user is an admin.
    #[serde(default)]
    pub admin: bool,
}

/// An access request.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct AccessRequest {
    /// Request id.
    pub id: String,
    /// Status: `Pending`, `Granting`, `Active`, `Rejected`, `Revoking`, `Revoked`, `Failed`.
    pub status: RequestStatus,
    /// Who asked (email).
    #[serde(default)]
    pub requester: String,
    /// The access flow that allowed it.
    #[serde(default)]
    pub flow: String,
    /// Integration.
    #[serde(default)]
    pub integration: String,
    /// Resource type.
    #[serde(default)]
    pub resource_type: String,
    /// Resource ids.
    #[serde(default)]
    pub resource_ids: Vec<String>,
    /// Permission.
    #[serde(default)]
    pub permission: String,
    /// Why.
    #[serde(default)]
    pub justification: String,
    /// Requested duration in seconds, counted from activation.
    #[serde(default)]
    pub duration_seconds: i64,
    /// Who approved or rejected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The reason the approver (optional) or the rejecter gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// The access sessions serving it.
    #[serde(default)]
    pub session_ids: Vec<String>,
    /// Under an `all_of` access flow: the approvals given so far, oldest first. Empty under
    /// `any_of` (see [`decided_by`](Self::decided_by)) and from connectors before `all_of`.
    #[serde(default)]
    pub approvals: Vec<RequestApproval>,
    /// Under an `all_of` access flow, while `Pending`: the approver entries still unmet, such
    /// as `user:bob@example.com` or `group:sre`, each needing a different person. Empty once
    /// decided, under `any_of`, and from connectors before `all_of`.
    #[serde(default)]
    pub awaiting: Vec<String>,
    /// While `Pending`: who approves it (absent once decided, and from older connectors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_route: Option<ApprovalRoute>,
}

/// Who approves a request: the connector's answer on a pending request and in a dry run.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct ApprovalRoute {
    /// Where the approvers come from: `access_flow`, `resource_owner` (the integration's
    /// `resource_owner_tag` on the requested resources) or `integration_owners`. A newer
    /// connector may send others.
    pub source: String,
    /// `any_of` (one of them approves) or `all_of` (one per entry, each a different person).
    pub mode: String,
    /// The approvers: `user:EMAIL` or `group:NAME`.
    #[serde(default)]
    pub approvers: Vec<String>,
}

impl std::fmt::Display for ApprovalRoute {
    /// `any of user:carol@example.com, group:sre (the access flow's approvers)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match self.mode.as_str() {
            "any_of" => "any of",
            "all_of" => "all of",
            other => other,
        };
        let source = match self.source.as_str() {
            "access_flow" => "the access flow's approvers",
            "resource_owner" => "the resources' owner",
            "integration_owners" => "the integration's owners",
            other => other,
        };
        write!(f, "{mode} {} ({source})", self.approvers.join(", "))
    }
}

/// One approval of a request under an `all_of` access flow.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct RequestApproval {
    /// Who approved (email).
    pub approver: String,
    /// When.
    pub decided_at: DateTime<Utc>,
}

impl AccessRequest {
    /// Whether waiting for this request can stop: it is `Active`, or in an end state.
    pub fn is_settled(&self) -> bool {
        self.status == RequestStatus::Active || self.status.is_final()
    }

    /// The approval progress of an `all_of` request, such as `1 of 2 approvals, awaiting
    /// group:sre` or `2 of 2 approvals`; `None` when there is none to show (`any_of`, or an
    /// older connector).
    pub fn approval_progress(&self) -> Option<String> {
        if self.approvals.is_empty() && self.awaiting.is_empty() {
            return None;
        }
        let given = self.approvals.len();
        let total = given + self.awaiting.len();
        let noun = if total == 1 { "approval" } else { "approvals" };
        Some(if self.awaiting.is_empty() {
            format!("{given} of {total} {noun}")
        } else {
            format!(
                "{given} of {total} {noun}, awaiting {}",
                self.awaiting.join(", ")
            )
        })
    }
}

/// An access session: one grant of one resource to one grantee.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct AccessSession {
    /// Session (grant) id.
    pub id: String,
    /// The request that created it.
    pub request_id: String,
    /// Status: `Pending`, `Granting`, `Active`, `Revoking`, `Revoked`, `Failed`, `RevokeFailed`.
    pub status: GrantStatus,
    /// Integration.
    #[serde(default)]
    pub integration: String,
    /// Resource type.
    #[serde(default)]
    pub resource_type: String,
    /// Resource id.
    #[serde(default)]
    pub resource_id: String,
    /// Permission.
    #[serde(default)]
    pub permission: String,
    /// The grantee's email.
    #[serde(default)]
    pub grantee: String,
    /// The account name on the target.
    #[serde(default)]
    pub account_name: String,
    /// Duration in seconds.
    #[serde(default)]
    pub duration_seconds: i64,
    /// When access ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When access became active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_at: Option<DateTime<Utc>>,
    /// When access was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// `new` until the one-time credentials were shown, then `viewed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_status: Option<String>,
    /// The last provisioning error (never contains secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// How to use an access session, in plain text and Markdown.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Instructions {
    /// Plain text.
    #[serde(default)]
    pub plain: String,
    /// Markdown.
    #[serde(default)]
    pub markdown: String,
}

/// One-time credentials of a session, as the access-details endpoint returns them.
#[derive(Clone, Debug, Default)]
pub enum Credentials {
    /// The integration issues no credentials.
    #[default]
    None,
    /// Shown now, for the only time: name → value.
    Shown(BTreeMap<String, SecretString>),
    /// Already shown; the connector's note says how to get new ones.
    Masked(String),
}

/// The access details of an active session (`GET /api/v1/access-sessions/{id}/access-details`).
///
/// Reading them is not idempotent: the first call carries the one-time [`Credentials::Shown`],
/// later calls [`Credentials::Masked`]. `Debug` never shows credential values.
#[derive(Clone, Debug, Default)]
pub struct AccessDetails {
    /// Instructions.
    pub instructions: Instructions,
    /// A ready command, such as `ssh -i ~/.ssh/apono -p 22 alice@host`.
    pub cli: Option<String>,
    /// A link to open.
    pub link: Option<String>,
    /// Parameters for scripts (for SSH: `host`, `port`, `username`, `expires_at`).
    pub json: BTreeMap<String, serde_json::Value>,
    /// The one-time credentials.
    pub credentials: Credentials,
    /// `new` when this answer carried the credentials, `viewed` otherwise.
    pub credential_status: Option<String>,
}

impl AccessDetails {
    /// Parses the endpoint's JSON. Returns `None` when it does not have the expected shape.
    pub fn from_json(value: serde_json::Value) -> Option<Self> {
        #[derive(Deserialize)]
        struct Wire {
            #[serde(default)]
            instructions: Instructions,
            #[serde(default)]
            cli: Option<String>,
            #[serde(default)]
            link: Option<String>,
            #[serde(default)]
            json: BTreeMap<String, serde_json::Value>,
            #[serde(default)]
            credentials: Option<serde_json::Value>,
            #[serde(default)]
            credential_status: Option<String>,
        }
        let wire: Wire = serde_json::from_value(value).ok()?;
        let credentials = match wire.credentials {
            None | Some(serde_json::Value::Null) => Credentials::None,
            Some(serde_json::Value::String(note)) => Credentials::Masked(note),
            Some(serde_json::Value::Object(map)) => Credentials::Shown(
                map.into_iter()
                    .map(|(k, v)| {
                        let text = match v {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        (k, SecretString::from(text))
                    })
                    .collect(),
            ),
            Some(_) => return None,
        };
        Some(Self {
            instructions: wire.instructions,
            cli: wire.cli,
            link: wire.link,
            json: wire.json,
            credentials,
            credential_status: wire.credential_status,
        })
    }

    /// The JSON the API returned, credentials included in clear text. The result contains
    /// secrets: show it once, never log it.
    pub fn to_json_exposing_credentials(&self) -> serde_json::Value {
        let credentials = match &self.credentials {
            Credentials::None => serde_json::Value::Null,
            Credentials::Masked(note) => note.clone().into(),
            Credentials::Shown(map) => serde_json::Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), v.expose_secret().into()))
                    .collect(),
            ),
        };
        serde_json::json!({
            "instructions": self.instructions,
            "cli": self.cli,
            "link": self.link,
            "json": self.json,
            "credentials": credentials,
            "credential_status": self.credential_status,
        })
    }

    /// A credential shown in this answer, such as `private_key`.
    pub fn credential(&self, name: &str) -> Option<&SecretString> {
        match &self.credentials {
            Credentials::Shown(map) => map.get(name),
            _ => None,
        }
    }
}

/// A personal API token as listed (`GET /api/v1/tokens`): never the token itself.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct ApiToken {
    /// Token id (`tok_…`).
    pub id: String,
    /// The user it authenticates (email).
    pub user: String,
    /// Its name.
    pub name: String,
    /// `active`, `expired` or `revoked`.
    pub status: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it stops working.
    pub expires_at: String,
    /// When it was last used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// Who revoked it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

/// One record of the audit log (`GET /api/v1/audit`, admins only).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct AuditRecord {
    /// Position in the hash chain, from 1.
    pub seq: i64,
    /// When, in Unix milliseconds.
    pub at: i64,
    /// Who: an email, or `connector`.
    pub actor: String,
    /// What, such as `request.created`.
    pub action: String,
    /// On what: a request, session, integration or token id.
    pub subject: String,
    /// `ok`, `failed`, `denied`, …
    pub outcome: String,
    /// Further details as JSON text.
    #[serde(default)]
    pub details: String,
}

/// Which requests [`crate::Client::requests`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RequestScope {
    /// The caller's own requests.
    #[default]
    Mine,
    /// Pending requests the caller may approve.
    AwaitingMyApproval,
    /// Every request (admins only).
    All,
}

impl RequestScope {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mine => "mine",
            Self::AwaitingMyApproval => "awaiting_my_approval",
            Self::All => "all",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approvals_are_optional_and_summarised() {
        let old = serde_json::json!({
            "id": "req_1", "status": "Pending", "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z"
        });
        let r: AccessRequest = serde_json::from_value(old.clone()).expect("older connector");
        assert!(r.approvals.is_empty() && r.awaiting.is_empty());
        assert_eq!(r.approval_progress(), None);
        let mut new = old;
        new["approvals"] = serde_json::json!([
            { "approver": "bob@x", "decided_at": "2026-01-01T00:01:00Z" }
        ]);
        new["awaiting"] = serde_json::json!(["user:erin@x", "group:sre"]);
        let mut r: AccessRequest = serde_json::from_value(new).expect("parses");
        assert_eq!(r.approvals[0].approver, "bob@x");
        assert_eq!(
            r.approval_progress().as_deref(),
            Some("1 of 3 approvals, awaiting user:erin@x, group:sre")
        );
        let json = serde_json::to_value(&r).expect("serialises");
        assert_eq!(json["awaiting"][1], "group:sre");
        assert_eq!(json["approvals"][0]["decided_at"], "2026-01-01T00:01:00Z");
        r.awaiting.clear();
        assert_eq!(r.approval_progress().as_deref(), Some("1 of 1 approval"));
    }

    #[test]
    fn access_details_shown_then_masked() {
        let shown = AccessDetails::from_json(serde_json::json!({
            "instructions": {"plain": "p", "markdown": "m"}, "cli": "ssh x",
            "json": {"host": "h", "port": 22}, "credentials": {"private_key": "KEY"},
            "credential_status": "new"
        }))
        .expect("parses");
        assert_eq!(
            shown.credential("private_key").map(|s| s.expose_secret()),
            Some("KEY")
        );
        assert!(!format!("{shown:?}").contains("KEY"));
        assert_eq!(
            shown.to_json_exposing_credentials()["credentials"]["private_key"],
            "KEY"
        );
        let masked = AccessDetails::from_json(serde_json::json!({
            "instructions": {"plain": "p", "markdown": "m"},
            "credentials": "[shown once]", "credential_status": "viewed"
        }))
        .expect("parses");
        assert!(matches!(masked.credentials, Credentials::Masked(_)));
        assert!(AccessDetails::from_json(serde_json::json!({"credentials": 3})).is_none());
        assert!(AccessDetails::from_json(serde_json::json!([1])).is_none());
    }
}
