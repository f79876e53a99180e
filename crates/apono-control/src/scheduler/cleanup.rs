//! Cleanup jobs: delete what a revoked grant left on the target (accounts) once the
//! integration's cleanup period has passed.

use apono_core::{CancelSignal, ErrorKind};
use serde_json::json;

use apono_core::error_chain;

use super::{Outcome, Scheduler};
use crate::error::ControlError;
use crate::ledger::commit::Change;
use crate::ledger::jobs::{GrantRow, Job};

pub(super) async fn run(
    s: &Scheduler,
    job: &Job,
    grant: &GrantRow,
    abort: &CancelSignal,
) -> Result<Outcome, ControlError> {
    let id = grant.id.clone();
    let done = |outcome: &'static str, details: serde_json::Value| {
        Ok(Outcome::done(Change::CleanedUp {
            id: id.clone(),
            outcome,
            details,
        }))
    };
    let Some(integration) = s.config.integration(&grant.integration).cloned() else {
        return done("skipped", json!({ "reason": "integration removed" }));
    };
    let spec = grant.spec()?;
    let Some(state) = grant.state()? else {
        return done("skipped", json!({ "reason": "no state" }));
    };
    match s
        .executor
        .delete_credentials(&integration, &spec, &state, abort)
        .await
    {
        Ok(()) => done("ok", json!({})),
        Err(e) if e.kind() == ErrorKind::Unsupported => done("unsupported", json!({})),
        Err(e) if job.attempts >= 10 => done("failed", json!({ "error": error_chain(&e) })),
        Err(e) => Ok(Outcome::retry(error_chain(&e))),
    }
}
