//! Decoding the rows of `requests` and `grants` into the API's types.

use sqlx::any::AnyRow;

use apono_core::GrantStatus;

use super::get;
use crate::error::ControlError;
use crate::model::{AccessRequest, AccessSession, ts};

pub(crate) const REQUEST_COLUMNS: &str = "id, status, requester, flow, integration, resource_type, resource_ids, permission, justification, duration_secs, decided_by, reason, created_at, updated_at";

pub(crate) const SESSION_COLUMNS: &str = "id, request_id, status, integration, resource_type, resource_id, permission, grantee_email, account_name, duration_secs, expires_at, activated_at, revoked_at, credential_status, last_error, revoke_requested_at, revoke_requested_by";

impl AccessRequest {
    pub(crate) fn from_row(r: &AnyRow) -> Result<Self, ControlError> {
        let status: String = get(r, "status")?;
        let ids: String = get(r, "resource_ids")?;
        Ok(Self {
            id: get(r, "id")?,
            status: status.parse()?,
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
            approval_route: None,
        })
    }
}
impl AccessSession {
    pub(crate) fn from_row(r: &AnyRow) -> Result<Self, ControlError> {
        let status: String = get(r, "status")?;
        let credential: Option<String> = get(r, "credential_status")?;
        Ok(Self {
            id: get(r, "id")?,
            request_id: get(r, "request_id")?,
            status: status.parse()?,
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
            credential_status: credential.map(|c| c.parse()).transpose()?,
            last_error: get(r, "last_error")?,
            ended: ended(status_of(r)?, get(r, "revoke_requested_at")?),
            ended_by: get(r, "revoke_requested_by")?,
        })
    }
}

fn status_of(r: &AnyRow) -> Result<GrantStatus, ControlError> {
    get::<String>(r, "status")?
        .parse()
        .map_err(ControlError::from)
}

/// How a session that no longer holds access ended: at its expiry, or revoked early.
fn ended(status: GrantStatus, revoke_requested_at: Option<i64>) -> Option<String> {
    match (status, revoke_requested_at) {
        (GrantStatus::Revoked | GrantStatus::Revoking | GrantStatus::RevokeFailed, None) => {
            Some("expired".into())
        }
        (GrantStatus::Revoked | GrantStatus::Revoking | GrantStatus::RevokeFailed, Some(_)) => {
            Some("revoked".into())
        }
        (GrantStatus::Failed, Some(_)) => Some("revoked".into()),
        _ => None,
    }
}
