//! Revoke jobs: remove a grant's access (claimed `Revoking`).

use apono_core::GrantState;
use apono_runtime::wire::{Action, ActionResult};

use super::{Next, Outcome, Plan, Prepared, Scheduler, Then};
use crate::error::ControlError;
use crate::ledger::commit::Change;
use crate::ledger::jobs::{GrantRow, Job, target_of};
use crate::model::now_ms;

pub(super) fn prepare(s: &Scheduler, grant: &GrantRow, now: i64) -> Result<Plan, ControlError> {
    let Some(integration) = s.config.integration(&grant.integration).cloned() else {
        return Ok(Plan::Decided(Outcome::retry(format!(
            "integration {:?} is not configured",
            grant.integration
        ))));
    };
    let state = grant
        .state()?
        .unwrap_or_else(|| GrantState::from_json(serde_json::Value::Null));
    Ok(Plan::Run(Box::new(Prepared {
        action: Action::Revoke {
            integration,
            grant: grant.spec()?,
            state,
        },
        recovering: false,
        started: now,
    })))
}

pub(super) fn conclude(
    s: &Scheduler,
    job: &Job,
    grant: &GrantRow,
    prepared: &Prepared,
    result: ActionResult,
) -> Result<Outcome, ControlError> {
    let id = grant.id.as_str();
    let integration = prepared.action.integration();
    match result {
        ActionResult::Done => {
            let now = now_ms();
            let lag = grant.expires_at.map(|e| (now - e).max(0));
            let cleanup = integration.credentials_cleanup_period_in_days.map(|days| {
                (
                    target_of(&grant.integration, &grant.resource_id),
                    now + i64::from(days) * 86_400_000,
                )
            });
            Ok(Outcome {
                change: Change::Revoked {
                    id: id.to_owned(),
                    lag_ms: lag,
                    cleanup,
                },
                next: Next::Done,
                then: Then::Revoked(lag),
            })
        }
        ActionResult::Failed(e) => {
            let attempt = job.attempts + 1;
            let limit = i64::from(s.config.connector.revoke_failed_after_attempts);
            let give_up = attempt >= limit;
            Ok(Outcome {
                change: Change::RevokeAttemptFailed {
                    id: id.to_owned(),
                    attempt,
                    kind: e.kind.as_str(),
                    error: e.error.clone(),
                    give_up,
                    alert: attempt == limit,
                },
                next: Next::Retry(e.error),
                then: Then::Nothing,
            })
        }
        other => Err(super::grant::unexpected(&other)),
    }
}
