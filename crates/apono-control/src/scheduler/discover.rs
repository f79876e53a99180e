//! Discovery jobs: list an integration's resources and permissions, again every
//! `discovery_interval`.

use apono_core::CancelSignal;
use tracing::debug;

use apono_core::error_chain;

use super::{Next, Outcome, Scheduler, Then};
use crate::error::ControlError;
use crate::ledger::commit::Change;
use crate::ledger::jobs::Job;
use crate::model::now_ms;

pub(super) async fn run(
    s: &Scheduler,
    job: &Job,
    abort: &CancelSignal,
) -> Result<Outcome, ControlError> {
    let Some(integration) = s.config.integration(&job.subject).cloned() else {
        // Removed from the configuration: its discovery ends with it.
        return Ok(Outcome::done(Change::Dropped {
            kind: job.kind,
            subject: job.subject.clone(),
        }));
    };
    match s.executor.list_resources(&integration, abort).await {
        Ok(inventory) => {
            debug!(integration = %integration.name, resources = inventory.resources.len(), "discovered");
            Ok(Outcome {
                change: Change::Discovered {
                    integration: integration.name.clone(),
                    body: serde_json::to_string(&inventory)
                        .map_err(|e| ControlError::Corrupt(e.to_string()))?,
                },
                next: Next::Reschedule(
                    now_ms() + s.config.connector.discovery_interval.0.as_millis() as i64,
                ),
                then: Then::Nothing,
            })
        }
        Err(e) => Ok(Outcome::retry(error_chain(&e))),
    }
}
