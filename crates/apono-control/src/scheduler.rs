//! The durable scheduler: every piece of future work (grant, revoke at expiry, retries,
//! rotation, cleanup, discovery) is a row in `jobs` with a due time. The loop claims due rows
//! with a lease (so replicas never run the same work twice, and work of a dead process is taken
//! over when its lease ends), orders them round-robin over targets, and runs them on the
//! executor under a bound on work in flight.
//!
//! # Batching
//!
//! Actions run concurrently; their database work is batched so that the number of commits does
//! not grow with the number of actions:
//!
//! * **Claims**: each round leases up to as many due jobs as there are free slots (taken in
//!   round-robin order over targets) in **one** transaction, in a fixed (subject) order so two
//!   replicas claiming at once cannot deadlock.
//! * **Writes**: what a job records before it touches a target (`Granting` with its expiry,
//!   `Revoking`) and its outcome (the ledger change, the audit record, the next due time, the
//!   release of its leases) go to the group-commit writer ([`crate::commit`]), which commits
//!   every item queued meanwhile in one transaction. A job waits for that commit before it goes
//!   on (to the target, or to showing credentials), so the order of effects is the same as with
//!   a transaction per step.
//!
//! Crash safety is unchanged: a grant row is committed (`Granting`, expiry) before the executor
//! touches the target; an outcome commits together with the release of its job's lease, so if
//! the process dies first the job is still leased, due again when the lease ends (at once after
//! a restart on SQLite), and the idempotent action is redone.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use apono_core::{CancelSignal, Credential, ErrorKind, GrantStatus};
use serde_json::json;
use sqlx::Row;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::commit::{After, Arg, Release, Step};
use crate::error::ControlError;
use crate::now_ms;
use crate::plane::{ControlPlane, db, job, target_of};
use crate::store::Backend;

#[derive(Clone, Debug)]
struct Job {
    kind: String,
    subject: String,
    target: String,
    attempts: i64,
    due_at: i64,
}

/// What a job run asks of its row.
enum Next {
    Done,
    /// Done, and the steps deleted the job's row.
    Deleted,
    Retry {
        error: String,
    },
    Reschedule {
        due_at: i64,
    },
}

/// What to do in memory once a job's outcome is committed.
enum Then {
    Nothing,
    KeepCredentials(String, Vec<Credential>),
    Revoked { id: String, lag: Option<i64> },
}

/// A job run's result: its writes, committed together with the release of its leases.
struct Outcome {
    next: Next,
    steps: Vec<Step>,
    then: Then,
}

impl Outcome {
    fn done(steps: Vec<Step>) -> Self {
        Self {
            next: Next::Done,
            steps,
            then: Then::Nothing,
        }
    }

    fn retry(error: String) -> Self {
        Self {
            next: Next::Retry { error },
            steps: Vec::new(),
            then: Then::Nothing,
        }
    }
}

fn delete_job(kind: &str, subject: &str) -> Step {
    Step::Exec(
        "DELETE FROM jobs WHERE kind = $1 AND subject = $2",
        vec![kind.into(), subject.into()],
    )
}

/// Creates a job, or moves an existing one to `due_at` (resetting its attempts).
fn upsert_job(kind: &str, subject: &str, target: &str, due_at: i64) -> Step {
    Step::Exec(
        "INSERT INTO jobs (kind, subject, target, due_at, attempts, created_at) VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (kind, subject) DO UPDATE SET due_at = excluded.due_at, attempts = 0, last_error = NULL",
        vec![
            kind.into(),
            subject.into(),
            target.into(),
            due_at.into(),
            now_ms().into(),
        ],
    )
}

fn status_args(id: &str, from: GrantStatus, to: GrantStatus) -> Vec<Arg> {
    debug_assert!(from == to || from.can_become(to), "{from} -> {to}");
    vec![
        to.as_str().into(),
        now_ms().into(),
        id.into(),
        from.as_str().into(),
    ]
}

const SET_STATUS: &str =
    "UPDATE grants SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4";

/// Moves a grant from `from` to `to` (nothing if it is not in `from`).
fn set_status(id: &str, from: GrantStatus, to: GrantStatus) -> Step {
    Step::Exec(SET_STATUS, status_args(id, from, to))
}

/// Moves a grant from `from` to `to`; the item's later steps run only if it was in `from`.
fn guard_status(id: &str, from: GrantStatus, to: GrantStatus) -> Step {
    Step::Guard(SET_STATUS, status_args(id, from, to))
}

impl ControlPlane {
    fn lease_ms(&self) -> i64 {
        (self.config.connector.action_timeout.0.as_millis() as i64) * 2 + 10_000
    }

    fn backoff_ms(&self, attempts: i64) -> i64 {
        let base = self.config.connector.retry_base.0.as_millis() as f64;
        let max = self.config.connector.retry_max.0.as_millis() as f64;
        let exp = base * 2f64.powi((attempts.clamp(1, 30) - 1) as i32);
        let capped = exp.min(max);
        let jitter: f64 = rand::random::<f64>() * 0.5 + 0.5;
        (capped * jitter) as i64
    }

    /// Runs the scheduler until `shutdown` fires, then waits up to `shutdown_grace` for work in
    /// flight; work still running after that is cancelled, which leaves its job due again.
    pub async fn run_scheduler(
        self: Arc<Self>,
        shutdown: CancelSignal,
    ) -> Result<(), ControlError> {
        let abort = CancelSignal::new();
        if self.store.backend() == Backend::Sqlite {
            // SQLite means one process: leases left by a killed predecessor are void.
            let mut tx = self.store.begin().await.map_err(db("releasing leases"))?;
            sqlx::query("UPDATE jobs SET lease_owner = NULL, leased_until = NULL, due_at = $1 WHERE lease_owner IS NOT NULL")
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(db("releasing leases"))?;
            sqlx::query("UPDATE grants SET lease_owner = NULL, leased_until = NULL WHERE lease_owner IS NOT NULL")
                .execute(&mut *tx)
                .await
                .map_err(db("releasing leases"))?;
            tx.commit().await.map_err(db("releasing leases"))?;
        }
        let capacity = self.config.connector.max_concurrent_actions.max(1) * 2;
        let slots = Arc::new(Semaphore::new(capacity));
        let mut tasks = JoinSet::new();
        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            let free = slots.available_permits();
            if free == 0 || (free < capacity / 4 && !tasks.is_empty()) {
                // Claim in batches: wait until a quarter of the slots are free (the executor
                // still has the other three quarters of claimed work to run meanwhile).
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.wake.notified() => {},
                    () = tokio::time::sleep(Duration::from_millis(50)) => {},
                }
                continue;
            }
            let now = now_ms();
            let batch = match self.due_jobs(now, 512).await {
                Ok(b) => b,
                Err(e) => {
                    warn!(error = %e, "cannot read due jobs");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let wanted: Vec<Job> = round_robin(batch).into_iter().take(free).collect();
            let claimed = if wanted.is_empty() {
                Vec::new()
            } else {
                match self.claim(wanted, now_ms()).await {
                    Ok(claimed) => claimed,
                    Err(e) => {
                        warn!(error = %e, "cannot claim jobs");
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                        }
                    }
                }
            };
            let dispatched = claimed.len();
            for job in claimed {
                // Only this loop takes permits, and it claimed no more than were free.
                let permit = slots.clone().acquire_owned().await.expect("never closed");
                let plane = self.clone();
                let abort = abort.clone();
                tasks.spawn(async move {
                    plane.execute(job, &abort).await;
                    drop(permit);
                    plane.wake.notify_one();
                });
            }
            if dispatched > 0 {
                continue;
            }
            // Nothing claimable: sleep until the next due time, a wake-up, or 1 s (other
            // replicas may add work).
            let next = self.next_due().await.unwrap_or(None);
            let wait = next
                .map(|due| (due - now_ms()).clamp(0, 1000))
                .unwrap_or(1000);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {},
                () = tokio::time::sleep(Duration::from_millis(wait.max(5) as u64)) => {},
            }
        }
        info!(in_flight = tasks.len(), "scheduler stopping");
        let grace = self.config.connector.shutdown_grace.0;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            warn!(in_flight = tasks.len(), "abandoning in-flight actions");
            abort.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            tasks.abort_all();
        }
        Ok(())
    }

    /// Runs every job due now until none is left (tests and `discover`).
    pub async fn run_due_once(self: &Arc<Self>) -> Result<usize, ControlError> {
        let mut ran = 0;
        loop {
            let batch = self.due_jobs(now_ms(), 512).await?;
            if batch.is_empty() {
                return Ok(ran);
            }
            let claimed = self.claim(round_robin(batch), now_ms()).await?;
            if claimed.is_empty() {
                // Due, but held by another replica's leases: nothing to run here now.
                return Ok(ran);
            }
            let mut set = JoinSet::new();
            for job in claimed {
                ran += 1;
                let plane = self.clone();
                set.spawn(async move { plane.execute(job, &CancelSignal::new()).await });
            }
            while set.join_next().await.is_some() {}
        }
    }

    async fn due_jobs(&self, now: i64, limit: i64) -> Result<Vec<Job>, ControlError> {
        let rows = sqlx::query("SELECT kind, subject, target, attempts, due_at FROM jobs WHERE due_at <= $1 AND (leased_until IS NULL OR leased_until < $1) ORDER BY due_at LIMIT $2")
            .bind(now)
            .bind(limit)
            .fetch_all(self.store.pool())
            .await
            .map_err(db("reading due jobs"))?;
        rows.iter()
            .map(|r| {
                Ok(Job {
                    kind: r.try_get("kind")?,
                    subject: r.try_get("subject")?,
                    target: r.try_get("target")?,
                    attempts: r.try_get("attempts")?,
                    due_at: r.try_get("due_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("reading due jobs"))
    }

    async fn next_due(&self) -> Result<Option<i64>, ControlError> {
        let row: (Option<i64>,) = sqlx::query_as(
            "SELECT MIN(due_at) FROM jobs WHERE leased_until IS NULL OR leased_until < $1",
        )
        .bind(now_ms())
        .fetch_one(self.store.pool())
        .await
        .map_err(db("reading the next due time"))?;
        Ok(row.0)
    }

    /// Leases `jobs` and, for grant work, the grants themselves, so that no two actions on one
    /// grant ever run at once (in this process or another replica), all in one transaction.
    /// Returns the jobs leased, in the order given.
    async fn claim(&self, jobs: Vec<Job>, now: i64) -> Result<Vec<Job>, ControlError> {
        let until = now + self.lease_ms();
        // One action per grant per batch; rows are locked in (subject, kind) order so that
        // replicas claiming at once on PostgreSQL take row locks in the same order.
        let mut seen = HashSet::new();
        let mut order: Vec<usize> = (0..jobs.len())
            .filter(|&i| jobs[i].kind == job::DISCOVER || seen.insert(jobs[i].subject.clone()))
            .collect();
        order.sort_by(|&a, &b| {
            (&jobs[a].subject, &jobs[a].kind).cmp(&(&jobs[b].subject, &jobs[b].kind))
        });
        let mut got = vec![false; jobs.len()];
        let mut tx = self.store.begin().await.map_err(db("claiming jobs"))?;
        for i in order {
            let job = &jobs[i];
            // The due time moves to the lease's end: if this process dies, the job is due again
            // then, and scans for due work skip leased rows by index.
            let leased = sqlx::query("UPDATE jobs SET lease_owner = $1, leased_until = $2, due_at = $2 WHERE kind = $3 AND subject = $4 AND due_at <= $5 AND (leased_until IS NULL OR leased_until < $5)")
                .bind(&self.owner)
                .bind(until)
                .bind(&job.kind)
                .bind(&job.subject)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db("claiming a job"))?
                .rows_affected();
            if leased != 1 {
                continue;
            }
            if job.kind != job::DISCOVER {
                let leased = sqlx::query("UPDATE grants SET lease_owner = $1, leased_until = $2 WHERE id = $3 AND (leased_until IS NULL OR leased_until < $4)")
                    .bind(&self.owner)
                    .bind(until)
                    .bind(&job.subject)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("claiming a grant"))?
                    .rows_affected();
                if leased != 1 {
                    // Another action on this grant is running: the job stays as it was, to be
                    // tried again later.
                    sqlx::query("UPDATE jobs SET lease_owner = NULL, leased_until = NULL, due_at = $1 WHERE kind = $2 AND subject = $3 AND lease_owner = $4")
                        .bind(job.due_at)
                        .bind(&job.kind)
                        .bind(&job.subject)
                        .bind(&self.owner)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("claiming a job"))?;
                    continue;
                }
            }
            got[i] = true;
        }
        tx.commit().await.map_err(db("claiming jobs"))?;
        Ok(jobs
            .into_iter()
            .zip(got)
            .filter_map(|(job, got)| got.then_some(job))
            .collect())
    }

    async fn execute(&self, job: Job, abort: &CancelSignal) {
        let result = match job.kind.as_str() {
            job::GRANT => self.run_grant(&job, abort).await,
            job::REVOKE => self.run_revoke(&job, abort).await,
            job::ROTATE => self.run_rotate(&job, abort).await,
            job::CLEANUP => self.run_cleanup(&job, abort).await,
            job::DISCOVER => self.run_discover(&job, abort).await,
            other => {
                warn!(kind = other, "unknown job kind; dropped");
                Ok(Outcome::done(Vec::new()))
            }
        };
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => {
                warn!(kind = %job.kind, subject = %job.subject, error = %e, "job failed");
                Outcome::retry(e.to_string())
            }
        };
        let attempts = job.attempts + 1;
        let after = match outcome.next {
            // The steps deleted or moved the row. A row they left stays due at the lease's
            // end: unfinished work is retried, never dropped.
            Next::Done => After::Keep,
            Next::Deleted => After::Deleted,
            Next::Retry { error } => After::Retry {
                attempts,
                error,
                due_at: now_ms() + self.backoff_ms(attempts),
            },
            Next::Reschedule { due_at } => After::Reschedule { due_at },
        };
        let release = Release {
            kind: job.kind.clone(),
            subject: job.subject.clone(),
            after,
            after_guard_failed: After::Retry {
                attempts,
                error: ControlError::Conflict("grant changed while granting".into()).to_string(),
                due_at: now_ms() + self.backoff_ms(attempts),
            },
        };
        match self.committer.commit(outcome.steps, Some(release)).await {
            Ok(true) => match outcome.then {
                Then::Nothing => {}
                Then::KeepCredentials(id, credentials) => self.keep_credentials(&id, credentials),
                Then::Revoked { id, lag } => {
                    self.forget_credentials(&id);
                    if let Some(lag) = lag {
                        self.metrics.observe_revoke_lag(lag);
                    }
                }
            },
            Ok(false) => {
                warn!(kind = %job.kind, subject = %job.subject, "grant changed while granting; retried");
            }
            Err(e) => {
                warn!(kind = %job.kind, subject = %job.subject, error = %e, "cannot record a job's outcome; its lease will expire");
            }
        }
    }

    async fn grant_row(&self, id: &str) -> Result<Option<sqlx::any::AnyRow>, ControlError> {
        sqlx::query("SELECT * FROM grants WHERE id = $1")
            .bind(id)
            .fetch_optional(self.store.pool())
            .await
            .map_err(db("reading a grant"))
    }

    async fn run_grant(&self, job: &Job, abort: &CancelSignal) -> Result<Outcome, ControlError> {
        let Some(row) = self.grant_row(&job.subject).await? else {
            return Ok(Outcome::done(vec![delete_job(job::GRANT, &job.subject)]));
        };
        let id = job.subject.as_str();
        let status: GrantStatus = row
            .try_get::<String, _>("status")
            .map_err(db("reading a grant"))?
            .parse()
            .map_err(|e: apono_core::UnknownStatus| ControlError::Corrupt(e.to_string()))?;
        let revoke_requested: Option<i64> = row
            .try_get("revoke_requested_at")
            .map_err(db("reading a grant"))?;
        let integration_name: String = row.try_get("integration").map_err(db("reading a grant"))?;
        let resource_id: String = row.try_get("resource_id").map_err(db("reading a grant"))?;
        let duration: i64 = row
            .try_get("duration_secs")
            .map_err(db("reading a grant"))?;
        let now = now_ms();
        let Some(integration) = self.config.integration(&integration_name).cloned() else {
            return Ok(Outcome::retry(format!(
                "integration {integration_name:?} is not configured"
            )));
        };
        match status {
            GrantStatus::Pending => {
                if revoke_requested.is_some() {
                    // Withdrawn before the target was touched.
                    return Ok(Outcome::done(vec![
                        set_status(id, GrantStatus::Pending, GrantStatus::Failed),
                        Step::Exec(
                            "UPDATE grants SET last_error = 'revoked before it was granted' WHERE id = $1",
                            vec![id.into()],
                        ),
                        delete_job(job::GRANT, id),
                    ]));
                }
                // Written down before the target is touched: Granting, with its expiry. The
                // commit is awaited before the executor runs.
                self.committer
                    .commit(
                        vec![
                            set_status(id, GrantStatus::Pending, GrantStatus::Granting),
                            Step::Exec(
                                "UPDATE grants SET expires_at = $1 WHERE id = $2",
                                vec![(now + duration * 1000).into(), id.into()],
                            ),
                            Step::audit(
                                "grant.started",
                                id,
                                "ok",
                                json!({ "integration": integration_name, "resource_id": resource_id }),
                            ),
                        ],
                        None,
                    )
                    .await?;
            }
            GrantStatus::Granting | GrantStatus::Active => {}
            _ => return Ok(Outcome::done(vec![delete_job(job::GRANT, id)])),
        }
        let row = self
            .grant_row(id)
            .await?
            .ok_or_else(|| ControlError::NotFound(id.into()))?;
        let mut spec = ControlPlane::spec_from_row(&row)?;
        let expires_at: i64 = row
            .try_get::<Option<i64>, _>("expires_at")
            .map_err(db("reading a grant"))?
            .unwrap_or(now);
        // A grant that expired before it completed (a crash, an unreachable target) is still
        // completed, with a short target-side expiry, because only a completed grant yields the
        // state revoke needs to remove partial work; its credentials are never shown and the
        // revoke is due at once.
        let recovering = expires_at <= now_ms() + 1000;
        if recovering {
            spec.expires_at = crate::model::ts(now_ms() + self.lease_ms());
        }
        let from: GrantStatus = if status == GrantStatus::Pending {
            GrantStatus::Granting
        } else {
            status
        };
        match self.executor.grant(&integration, &spec, abort).await {
            Ok(granted) => {
                let access = serde_json::to_string(&granted.access)
                    .map_err(|e| ControlError::Corrupt(e.to_string()))?;
                let state = serde_json::to_string(granted.state.as_json())
                    .map_err(|e| ControlError::Corrupt(e.to_string()))?;
                let has_credentials = !recovering && !granted.access.credentials.is_empty();
                let target = target_of(&integration_name, &resource_id);
                // If the grant changed meanwhile, nothing below is written and the job is
                // retried.
                let mut steps = vec![
                    guard_status(id, from, GrantStatus::Active),
                    Step::Exec(
                        "UPDATE grants SET state = $1, access = $2, credential_status = $3, activated_at = COALESCE(activated_at, $4), last_error = NULL WHERE id = $5",
                        vec![
                            state.into(),
                            access.into(),
                            (if has_credentials { Some("new") } else { None }).into(),
                            now_ms().into(),
                            id.into(),
                        ],
                    ),
                    delete_job(job::GRANT, id),
                    upsert_job(job::REVOKE, id, &target, expires_at),
                ];
                if let Some(days) = integration
                    .credentials_rotation_period_in_days
                    .filter(|d| *d > 0)
                {
                    steps.push(upsert_job(
                        job::ROTATE,
                        id,
                        &target,
                        now_ms() + i64::from(days) * 86_400_000,
                    ));
                }
                steps.push(Step::audit(
                    "grant.succeeded",
                    id,
                    "ok",
                    json!({ "expires_at": crate::model::ts(expires_at) }),
                ));
                Ok(Outcome {
                    next: Next::Done,
                    steps,
                    then: if recovering {
                        Then::Nothing
                    } else {
                        Then::KeepCredentials(id.to_owned(), granted.access.credentials)
                    },
                })
            }
            // Refused as invalid only because the expiry passed while the action waited for
            // a slot or ran (the grant was not `recovering` when it started): the next attempt
            // is a recovering one, with a target-side expiry in the future.
            Err(e)
                if e.kind().is_retryable()
                    || from == GrantStatus::Active
                    || (!recovering
                        && e.kind() == apono_core::ErrorKind::InvalidInput
                        && expires_at <= now_ms()) =>
            {
                // Partial state may exist on the target; only a completed grant yields the state
                // revoke needs, so a grant is retried (idempotently) until it completes, then
                // revoked at once if it expired meanwhile.
                let mut steps = vec![
                    Step::Exec(
                        "UPDATE grants SET last_error = $1, updated_at = $2 WHERE id = $3",
                        vec![error_chain(&e).into(), now_ms().into(), id.into()],
                    ),
                    Step::audit(
                        "grant.attempt",
                        id,
                        "failed",
                        json!({ "kind": e.kind().as_str(), "error": error_chain(&e) }),
                    ),
                ];
                if from == GrantStatus::Active && !e.kind().is_retryable() {
                    // An extension the target refused: the grant stays as it was.
                    steps.push(delete_job(job::GRANT, id));
                    return Ok(Outcome::done(steps));
                }
                Ok(Outcome {
                    next: Next::Retry {
                        error: error_chain(&e),
                    },
                    steps,
                    then: Then::Nothing,
                })
            }
            Err(e) => Ok(Outcome::done(vec![
                set_status(id, GrantStatus::Granting, GrantStatus::Failed),
                Step::Exec(
                    "UPDATE grants SET last_error = $1 WHERE id = $2",
                    vec![error_chain(&e).into(), id.into()],
                ),
                delete_job(job::GRANT, id),
                Step::audit(
                    "grant.failed",
                    id,
                    "failed",
                    json!({ "kind": e.kind().as_str(), "error": error_chain(&e) }),
                ),
            ])),
        }
    }

    async fn run_revoke(&self, job: &Job, abort: &CancelSignal) -> Result<Outcome, ControlError> {
        let id = job.subject.as_str();
        let Some(row) = self.grant_row(id).await? else {
            return Ok(Outcome::done(vec![delete_job(job::REVOKE, id)]));
        };
        let status: GrantStatus = row
            .try_get::<String, _>("status")
            .map_err(db("reading a grant"))?
            .parse()
            .map_err(|e: apono_core::UnknownStatus| ControlError::Corrupt(e.to_string()))?;
        let integration_name: String = row.try_get("integration").map_err(db("reading a grant"))?;
        let resource_id: String = row.try_get("resource_id").map_err(db("reading a grant"))?;
        let expires_at: Option<i64> = row.try_get("expires_at").map_err(db("reading a grant"))?;
        match status {
            GrantStatus::Active | GrantStatus::RevokeFailed | GrantStatus::Revoking => {}
            // Granting: the grant job schedules the revoke when it completes.
            _ => return Ok(Outcome::done(vec![delete_job(job::REVOKE, id)])),
        }
        let Some(integration) = self.config.integration(&integration_name).cloned() else {
            return Ok(Outcome::retry(format!(
                "integration {integration_name:?} is not configured"
            )));
        };
        if status != GrantStatus::Revoking {
            self.committer
                .commit(
                    vec![
                        set_status(id, status, GrantStatus::Revoking),
                        Step::audit(
                            "revoke.started",
                            id,
                            "ok",
                            json!({ "attempt": job.attempts + 1 }),
                        ),
                    ],
                    None,
                )
                .await?;
        }
        let spec = ControlPlane::spec_from_row(&row)?;
        let state = ControlPlane::state_from_row(&row)?
            .unwrap_or_else(|| apono_core::GrantState::from_json(serde_json::Value::Null));
        let result = self
            .executor
            .revoke(&integration, &spec, &state, abort)
            .await;
        let now = now_ms();
        match result {
            Ok(()) => {
                let mut steps = vec![
                    Step::Exec(
                        "UPDATE grants SET status = $1, updated_at = $2, revoked_at = $2, last_error = NULL WHERE id = $3 AND status = $4",
                        vec![
                            GrantStatus::Revoked.as_str().into(),
                            now.into(),
                            id.into(),
                            GrantStatus::Revoking.as_str().into(),
                        ],
                    ),
                    Step::Exec(
                        "DELETE FROM jobs WHERE subject = $1 AND kind IN ($2, $3)",
                        vec![id.into(), job::REVOKE.into(), job::ROTATE.into()],
                    ),
                ];
                if let Some(days) = integration.credentials_cleanup_period_in_days {
                    steps.push(upsert_job(
                        job::CLEANUP,
                        id,
                        &target_of(&integration_name, &resource_id),
                        now + i64::from(days) * 86_400_000,
                    ));
                }
                let lag = expires_at.map(|e| (now - e).max(0));
                steps.push(Step::audit(
                    "revoke.succeeded",
                    id,
                    "ok",
                    json!({ "lag_ms": lag }),
                ));
                Ok(Outcome {
                    next: Next::Deleted,
                    steps,
                    then: Then::Revoked {
                        id: id.to_owned(),
                        lag,
                    },
                })
            }
            Err(e) => {
                let attempts = job.attempts + 1;
                let give_up =
                    attempts >= i64::from(self.config.connector.revoke_failed_after_attempts);
                let mut steps = Vec::new();
                if give_up {
                    // Alerting state, still retried: never dropped.
                    steps.push(set_status(
                        id,
                        GrantStatus::Revoking,
                        GrantStatus::RevokeFailed,
                    ));
                }
                steps.push(Step::Exec(
                    "UPDATE grants SET last_error = $1, updated_at = $2 WHERE id = $3",
                    vec![error_chain(&e).into(), now.into(), id.into()],
                ));
                steps.push(Step::audit("revoke.attempt", id, "failed", json!({ "attempt": attempts, "kind": e.kind().as_str(), "error": error_chain(&e), "revoke_failed": give_up })));
                Ok(Outcome {
                    next: Next::Retry {
                        error: error_chain(&e),
                    },
                    steps,
                    then: Then::Nothing,
                })
            }
        }
    }

    async fn run_rotate(&self, job: &Job, abort: &CancelSignal) -> Result<Outcome, ControlError> {
        let id = job.subject.as_str();
        let row = self.grant_row(id).await?;
        let Some(row) = row.filter(|r| {
            r.try_get::<String, _>("status")
                .is_ok_and(|s| s == "Active")
        }) else {
            return Ok(Outcome::done(vec![delete_job(job::ROTATE, id)]));
        };
        let integration_name: String = row.try_get("integration").map_err(db("reading a grant"))?;
        let Some(integration) = self.config.integration(&integration_name).cloned() else {
            return Ok(Outcome::retry("integration is not configured".into()));
        };
        let spec = ControlPlane::spec_from_row(&row)?;
        let Some(state) = ControlPlane::state_from_row(&row)? else {
            return Ok(Outcome::retry("grant has no state".into()));
        };
        match self
            .executor
            .reset_credentials(&integration, &spec, &state, abort)
            .await
        {
            Ok(granted) => {
                let mut steps = vec![
                    Step::Exec(
                        "UPDATE grants SET state = $1, access = $2, credential_status = $3, updated_at = $4 WHERE id = $5 AND status = 'Active'",
                        vec![
                            serde_json::to_string(granted.state.as_json())
                                .unwrap_or_default()
                                .into(),
                            serde_json::to_string(&granted.access)
                                .unwrap_or_default()
                                .into(),
                            (if granted.access.credentials.is_empty() {
                                None
                            } else {
                                Some("new")
                            })
                            .into(),
                            now_ms().into(),
                            id.into(),
                        ],
                    ),
                    Step::audit("credentials.reset", id, "ok", json!({})),
                ];
                steps.push(
                    match integration
                        .credentials_rotation_period_in_days
                        .filter(|d| *d > 0)
                    {
                        Some(days) => upsert_job(
                            job::ROTATE,
                            id,
                            &job.target,
                            now_ms() + i64::from(days) * 86_400_000,
                        ),
                        None => delete_job(job::ROTATE, id),
                    },
                );
                Ok(Outcome {
                    next: Next::Done,
                    steps,
                    then: Then::KeepCredentials(id.to_owned(), granted.access.credentials),
                })
            }
            Err(e) if e.kind() == ErrorKind::Unsupported || !e.kind().is_retryable() => {
                Ok(Outcome::done(vec![
                    delete_job(job::ROTATE, id),
                    Step::audit(
                        "credentials.reset",
                        id,
                        "failed",
                        json!({ "kind": e.kind().as_str(), "error": error_chain(&e) }),
                    ),
                ]))
            }
            Err(e) => Ok(Outcome::retry(error_chain(&e))),
        }
    }

    async fn run_cleanup(&self, job: &Job, abort: &CancelSignal) -> Result<Outcome, ControlError> {
        let id = job.subject.as_str();
        let row = self.grant_row(id).await?;
        let done = |outcome: &'static str, details: serde_json::Value| {
            Ok(Outcome::done(vec![
                delete_job(job::CLEANUP, id),
                Step::audit("cleanup", id, outcome, details),
            ]))
        };
        let Some(row) = row.filter(|r| {
            r.try_get::<String, _>("status")
                .is_ok_and(|s| s == "Revoked")
        }) else {
            return done("skipped", json!({}));
        };
        let integration_name: String = row.try_get("integration").map_err(db("reading a grant"))?;
        let Some(integration) = self.config.integration(&integration_name).cloned() else {
            return done("skipped", json!({ "reason": "integration removed" }));
        };
        let spec = ControlPlane::spec_from_row(&row)?;
        let Some(state) = ControlPlane::state_from_row(&row)? else {
            return done("skipped", json!({ "reason": "no state" }));
        };
        match self
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

    async fn run_discover(&self, job: &Job, abort: &CancelSignal) -> Result<Outcome, ControlError> {
        let Some(integration) = self.config.integration(&job.subject).cloned() else {
            return Ok(Outcome::done(vec![delete_job(job::DISCOVER, &job.subject)]));
        };
        match self.executor.list_resources(&integration, abort).await {
            Ok(inventory) => {
                self.store_inventory(&integration, &inventory).await?;
                debug!(integration = %integration.name, resources = inventory.resources.len(), "discovered");
                Ok(Outcome {
                    next: Next::Reschedule {
                        due_at: now_ms()
                            + self.config.connector.discovery_interval.0.as_millis() as i64,
                    },
                    steps: Vec::new(),
                    then: Then::Nothing,
                })
            }
            Err(e) => Ok(Outcome::retry(error_chain(&e))),
        }
    }
}

/// An error and its sources on one line (errors never carry secrets).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Orders jobs so that each target gets a turn before any gets a second one, keeping the
/// due-time order within a target.
fn round_robin(jobs: Vec<Job>) -> Vec<Job> {
    let mut queues: BTreeMap<String, VecDeque<Job>> = BTreeMap::new();
    let mut order = Vec::new();
    for job in jobs {
        if !queues.contains_key(&job.target) {
            order.push(job.target.clone());
        }
        queues.entry(job.target.clone()).or_default().push_back(job);
    }
    let mut out = Vec::new();
    loop {
        let mut any = false;
        for target in &order {
            if let Some(job) = queues.get_mut(target).and_then(VecDeque::pop_front) {
                out.push(job);
                any = true;
            }
        }
        if !any {
            return out;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(target: &str, n: usize) -> Job {
        Job {
            kind: job::REVOKE.into(),
            subject: format!("{target}-{n}"),
            target: target.into(),
            attempts: 0,
            due_at: 0,
        }
    }

    #[test]
    fn every_target_gets_a_turn_before_any_gets_a_second() {
        let mut jobs: Vec<Job> = (0..5).map(|n| job("busy", n)).collect();
        jobs.push(job("quiet", 0));
        jobs.push(job("other", 0));
        let order: Vec<String> = round_robin(jobs).into_iter().map(|j| j.subject).collect();
        assert_eq!(
            order[..4],
            ["busy-0", "quiet-0", "other-0", "busy-1"].map(String::from)
        );
        assert_eq!(order.len(), 7);
        assert_eq!(order[6], "busy-4");
    }
}
