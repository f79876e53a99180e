//! Grant jobs: provision a grant claimed `Granting` (or extend an `Active` one).

use apono_core::{ErrorKind, GrantStatus};
use apono_runtime::wire::{Action, ActionResult};

use super::{Next, Outcome, Plan, Prepared, Scheduler, Then};
use crate::error::ControlError;
use crate::ledger::commit::Change;
use crate::ledger::jobs::{GrantRow, target_of};
use crate::model::ts;

pub(super) fn prepare(s: &Scheduler, grant: &GrantRow, now: i64) -> Result<Plan, ControlError> {
    let Some(integration) = s.config.integration(&grant.integration).cloned() else {
        return Ok(Plan::Decided(Outcome::retry(format!(
            "integration {:?} is not configured",
            grant.integration
        ))));
    };
    let mut spec = grant.spec()?;
    let expires_at = grant.expires_at.unwrap_or(now);
    // A grant that expired (or was revoked) before it completed (a crash, an unreachable
    // target) is still completed, with a short target-side expiry, because only a completed
    // grant yields the state revoke needs to remove partial work; its credentials are never
    // shown and the revoke is due at once.
    let recovering = expires_at <= now + 1000 || grant.revoke_requested_at.is_some();
    if recovering {
        spec.expires_at = ts(now + s.lease_ms());
    }
    Ok(Plan::Run(Box::new(Prepared {
        action: Action::Grant {
            integration,
            grant: spec,
        },
        recovering,
        started: now,
    })))
}

pub(super) async fn conclude(
    s: &Scheduler,
    grant: &GrantRow,
    prepared: &Prepared,
    result: ActionResult,
) -> Result<Outcome, ControlError> {
    let id = grant.id.as_str();
    let Action::Grant { integration, .. } = &prepared.action else {
        return Err(ControlError::Corrupt(
            "a grant job ran another action".into(),
        ));
    };
    let recovering = prepared.recovering;
    let expires_at = grant.expires_at.unwrap_or(prepared.started);
    let from = grant.status;
    match result {
        ActionResult::Granted(granted) => {
            let access = serde_json::to_string(&granted.access)
                .map_err(|e| ControlError::Corrupt(e.to_string()))?;
            let state = serde_json::to_string(granted.state.as_json())
                .map_err(|e| ControlError::Corrupt(e.to_string()))?;
            let sealed = if !recovering && !granted.access.credentials.is_empty() {
                Some(s.ledger.keys().await?.seal(id, &granted.access.credentials))
            } else {
                None
            };
            let rotate_at = integration
                .credentials_rotation_period_in_days
                .filter(|d| *d > 0)
                .map(|days| crate::model::now_ms() + i64::from(days) * 86_400_000);
            Ok(Outcome {
                change: Change::Granted {
                    id: id.to_owned(),
                    from,
                    target: target_of(&grant.integration, &grant.resource_id),
                    state,
                    access,
                    sealed,
                    rotate_at,
                },
                next: Next::Done,
                then: Then::Nothing,
            })
        }
        // Refused as invalid only because the expiry passed while the action ran (the grant
        // was not `recovering` when it started): the next attempt is a recovering one.
        ActionResult::Failed(e)
            if e.kind.is_retryable()
                || from == GrantStatus::Active
                || (!recovering
                    && e.kind == ErrorKind::InvalidInput
                    && expires_at <= crate::model::now_ms()) =>
        {
            // Partial state may exist on the target; only a completed grant yields the state
            // revoke needs, so a grant is retried (idempotently) until it completes, then
            // revoked at once if it expired meanwhile.
            let refused_extension = from == GrantStatus::Active && !e.kind.is_retryable();
            Ok(Outcome {
                change: Change::GrantAttemptFailed {
                    id: id.to_owned(),
                    kind: e.kind.as_str(),
                    error: e.error.clone(),
                    // An extension the target refused: the grant stays as it was.
                    drop_job: refused_extension,
                },
                next: if refused_extension {
                    Next::Done
                } else {
                    Next::Retry(e.error)
                },
                then: Then::Nothing,
            })
        }
        ActionResult::Failed(e) => Ok(Outcome::done(Change::GrantFailed {
            id: id.to_owned(),
            kind: e.kind.as_str(),
            error: e.error,
        })),
        other => Err(unexpected(&other)),
    }
}

/// A result that does not answer the action (an agent's bug, or a forged report).
pub(super) fn unexpected(result: &ActionResult) -> ControlError {
    let what = match result {
        ActionResult::Granted(_) => "granted",
        ActionResult::Done => "done",
        ActionResult::Inventory(_) => "an inventory",
        ActionResult::Failed(_) => "failed",
    };
    ControlError::Invalid(vec![format!(
        "the result ({what}) does not answer the action"
    )])
}
