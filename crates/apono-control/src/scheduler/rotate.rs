//! Rotate jobs: new credentials for an `Active` grant (`reset-credentials`, or the
//! integration's rotation period).

use apono_core::ErrorKind;
use apono_runtime::wire::{Action, ActionResult};

use super::{Next, Outcome, Plan, Prepared, Scheduler, Then};
use crate::error::ControlError;
use crate::ledger::commit::Change;
use crate::ledger::jobs::{GrantRow, Job};
use crate::model::now_ms;

pub(super) fn prepare(s: &Scheduler, grant: &GrantRow, now: i64) -> Result<Plan, ControlError> {
    let Some(integration) = s.config.integration(&grant.integration).cloned() else {
        return Ok(Plan::Decided(Outcome::retry(
            "integration is not configured".into(),
        )));
    };
    let Some(state) = grant.state()? else {
        return Ok(Plan::Decided(Outcome::retry("grant has no state".into())));
    };
    Ok(Plan::Run(Box::new(Prepared {
        action: Action::ResetCredentials {
            integration,
            grant: grant.spec()?,
            state,
        },
        recovering: false,
        started: now,
    })))
}

pub(super) async fn conclude(
    s: &Scheduler,
    job: &Job,
    grant: &GrantRow,
    prepared: &Prepared,
    result: ActionResult,
) -> Result<Outcome, ControlError> {
    let id = grant.id.as_str();
    let integration = prepared.action.integration();
    match result {
        ActionResult::Granted(granted) => {
            let sealed = if granted.access.credentials.is_empty() {
                None
            } else {
                Some(s.ledger.keys().await?.seal(id, &granted.access.credentials))
            };
            Ok(Outcome {
                change: Change::Rotated {
                    id: id.to_owned(),
                    target: job.target.clone(),
                    state: serde_json::to_string(granted.state.as_json())
                        .map_err(|e| ControlError::Corrupt(e.to_string()))?,
                    access: serde_json::to_string(&granted.access)
                        .map_err(|e| ControlError::Corrupt(e.to_string()))?,
                    sealed,
                    next: integration
                        .credentials_rotation_period_in_days
                        .filter(|d| *d > 0)
                        .map(|days| now_ms() + i64::from(days) * 86_400_000),
                },
                next: Next::Done,
                then: Then::Nothing,
            })
        }
        ActionResult::Failed(e) if e.kind == ErrorKind::Unsupported || !e.kind.is_retryable() => {
            Ok(Outcome::done(Change::RotateFailed {
                id: id.to_owned(),
                kind: e.kind.as_str(),
                error: e.error,
            }))
        }
        ActionResult::Failed(e) => Ok(Outcome::retry(e.error)),
        other => Err(super::grant::unexpected(&other)),
    }
}
