//! Cleanup jobs: delete what a revoked grant left on the target (accounts) once the
//! integration's cleanup period has passed.

use apono_core::ErrorKind;
use apono_runtime::wire::{Action, ActionResult};
use serde_json::json;

use super::{Outcome, Plan, Prepared, Scheduler};
use crate::error::ControlError;
use crate::ledger::commit::Change;
use crate::ledger::jobs::{GrantRow, Job};

fn done(grant: &GrantRow, outcome: &'static str, details: serde_json::Value) -> Outcome {
    Outcome::done(Change::CleanedUp {
        id: grant.id.clone(),
        outcome,
        details,
    })
}

pub(super) fn prepare(s: &Scheduler, grant: &GrantRow, now: i64) -> Result<Plan, ControlError> {
    let Some(integration) = s.config.integration(&grant.integration).cloned() else {
        return Ok(Plan::Decided(done(
            grant,
            "skipped",
            json!({ "reason": "integration removed" }),
        )));
    };
    let Some(state) = grant.state()? else {
        return Ok(Plan::Decided(done(
            grant,
            "skipped",
            json!({ "reason": "no state" }),
        )));
    };
    Ok(Plan::Run(Box::new(Prepared {
        action: Action::DeleteCredentials {
            integration,
            grant: grant.spec()?,
            state,
        },
        recovering: false,
        started: now,
    })))
}

pub(super) fn conclude(
    job: &Job,
    grant: &GrantRow,
    result: ActionResult,
) -> Result<Outcome, ControlError> {
    match result {
        ActionResult::Done => Ok(done(grant, "ok", json!({}))),
        ActionResult::Failed(e) if e.kind == ErrorKind::Unsupported => {
            Ok(done(grant, "unsupported", json!({})))
        }
        ActionResult::Failed(e) if job.attempts >= 10 => {
            Ok(done(grant, "failed", json!({ "error": e.error })))
        }
        ActionResult::Failed(e) => Ok(Outcome::retry(e.error)),
        other => Err(super::grant::unexpected(&other)),
    }
}
