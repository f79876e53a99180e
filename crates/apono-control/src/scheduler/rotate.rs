//! Rotate jobs: new credentials for an `Active` grant (`reset-credentials`, or the
//! integration's rotation period).

use apono_core::{CancelSignal, ErrorKind};

use apono_core::error_chain;

use super::{Next, Outcome, Scheduler, Then};
use crate::error::ControlError;
use crate::ledger::commit::Change;
use crate::ledger::jobs::{GrantRow, Job};
use crate::model::now_ms;

pub(super) async fn run(
    s: &Scheduler,
    job: &Job,
    grant: &GrantRow,
    abort: &CancelSignal,
) -> Result<Outcome, ControlError> {
    let id = grant.id.as_str();
    let Some(integration) = s.config.integration(&grant.integration).cloned() else {
        return Ok(Outcome::retry("integration is not configured".into()));
    };
    let spec = grant.spec()?;
    let Some(state) = grant.state()? else {
        return Ok(Outcome::retry("grant has no state".into()));
    };
    match s
        .executor
        .reset_credentials(&integration, &spec, &state, abort)
        .await
    {
        Ok(granted) => {
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
        Err(e) if e.kind() == ErrorKind::Unsupported || !e.kind().is_retryable() => {
            Ok(Outcome::done(Change::RotateFailed {
                id: id.to_owned(),
                kind: e.kind().as_str(),
                error: error_chain(&e),
            }))
        }
        Err(e) => Ok(Outcome::retry(error_chain(&e))),
    }
}
