//! Revoke jobs: remove a grant's access (claimed `Revoking`).

use apono_core::{CancelSignal, GrantState};

use apono_core::error_chain;

use super::{Next, Outcome, Scheduler, Then};
use crate::error::ControlError;
use crate::ledger::commit::Change;
use crate::ledger::jobs::{GrantRow, Job, target_of};
use crate::model::now_ms;

pub(super) async fn run(
    s: &Scheduler,
    job: &Job,
    grant: &GrantRow,
    abort: &CancelSignal,
) -> Result<Outcome, ControlError> {
    let id = grant.id.as_str();
    let Some(integration) = s.config.integration(&grant.integration).cloned() else {
        return Ok(Outcome::retry(format!(
            "integration {:?} is not configured",
            grant.integration
        )));
    };
    let spec = grant.spec()?;
    let state = grant
        .state()?
        .unwrap_or_else(|| GrantState::from_json(serde_json::Value::Null));
    match s.executor.revoke(&integration, &spec, &state, abort).await {
        Ok(()) => {
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
        Err(e) => {
            let attempt = job.attempts + 1;
            let limit = i64::from(s.config.connector.revoke_failed_after_attempts);
            let give_up = attempt >= limit;
            Ok(Outcome {
                change: Change::RevokeAttemptFailed {
                    id: id.to_owned(),
                    attempt,
                    kind: e.kind().as_str(),
                    error: error_chain(&e),
                    give_up,
                    alert: attempt == limit,
                },
                next: Next::Retry(error_chain(&e)),
                then: Then::Nothing,
            })
        }
    }
}
