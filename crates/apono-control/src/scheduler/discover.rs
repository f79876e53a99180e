//! Discovery jobs: list an integration's resources and permissions, again every
//! `discovery_interval`.

use apono_runtime::wire::{Action, ActionResult};
use tracing::debug;

use super::{Next, Outcome, Plan, Prepared, Scheduler, Then};
use crate::error::ControlError;
use crate::ledger::commit::Change;
use crate::ledger::jobs::Job;
use crate::model::now_ms;

pub(super) fn prepare(s: &Scheduler, job: &Job, now: i64) -> Plan {
    let Some(integration) = s.config.integration(&job.subject).cloned() else {
        // Removed from the configuration: its discovery ends with it.
        return Plan::Decided(Outcome::done(Change::Dropped {
            kind: job.kind,
            subject: job.subject.clone(),
        }));
    };
    Plan::Run(Box::new(Prepared {
        action: Action::ListResources { integration },
        recovering: false,
        started: now,
    }))
}

pub(super) fn conclude(
    s: &Scheduler,
    prepared: &Prepared,
    result: ActionResult,
) -> Result<Outcome, ControlError> {
    let integration = prepared.action.integration();
    match result {
        ActionResult::Inventory(mut inventory) => {
            // Whoever listed them, the resources belong to this integration.
            for resource in &mut inventory.resources {
                resource.integration = integration.name.clone();
            }
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
        ActionResult::Failed(e) => Ok(Outcome::retry(e.error)),
        other => Err(super::grant::unexpected(&other)),
    }
}
