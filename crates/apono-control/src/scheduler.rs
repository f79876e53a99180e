//! The durable scheduler: every piece of future work (grant, revoke at expiry, retries,
//! rotation, cleanup, discovery) is a row in `jobs` with a due time. The loop claims due rows
//! with a lease (so replicas never run the same work twice, and work of a dead process is taken
//! over when its lease ends), orders them round-robin over targets, and runs them on the
//! executor under a bound on work in flight.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use apono_core::{CancelSignal, ErrorKind, GrantStatus};
use serde_json::json;
use sqlx::Row;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::audit::{self, AuditEntry};
use crate::error::ControlError;
use crate::now_ms;
use crate::plane::{ControlPlane, db, job, target_of, upsert_job};
use crate::store::Backend;

#[derive(Clone, Debug)]
struct Job {
    kind: String,
    subject: String,
    target: String,
    attempts: i64,
}

/// What a job run asks of its row.
enum Next {
    Done,
    Retry { error: String },
    Reschedule { due_at: i64 },
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
            sqlx::query("UPDATE jobs SET lease_owner = NULL, leased_until = NULL, due_at = $1 WHERE lease_owner IS NOT NULL")
                .bind(now_ms())
                .execute(self.store.pool())
                .await
                .map_err(db("releasing leases"))?;
            sqlx::query("UPDATE grants SET lease_owner = NULL, leased_until = NULL")
                .execute(self.store.pool())
                .await
                .map_err(db("releasing leases"))?;
        }
        let slots = Arc::new(Semaphore::new(
            self.config.connector.max_concurrent_actions.max(1) * 2,
        ));
        let mut tasks = JoinSet::new();
        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
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
            let mut dispatched = 0;
            for job in round_robin(batch) {
                let permit = tokio::select! {
                    () = shutdown.cancelled() => break,
                    p = slots.clone().acquire_owned() => p.expect("never closed"),
                };
                match self.claim(&job, now_ms()).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        warn!(error = %e, "cannot claim a job");
                        continue;
                    }
                }
                dispatched += 1;
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
            let mut set = JoinSet::new();
            for job in round_robin(batch) {
                if self.claim(&job, now_ms()).await? {
                    ran += 1;
                    let plane = self.clone();
                    set.spawn(async move { plane.execute(job, &CancelSignal::new()).await });
                }
            }
            while set.join_next().await.is_some() {}
        }
    }

    async fn due_jobs(&self, now: i64, limit: i64) -> Result<Vec<Job>, ControlError> {
        let rows = sqlx::query("SELECT kind, subject, target, attempts FROM jobs WHERE due_at <= $1 AND (leased_until IS NULL OR leased_until < $1) ORDER BY due_at LIMIT $2")
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

    /// Leases the job and, for grant work, the grant itself, so that no two actions on one
    /// grant ever run at once (in this process or another replica).
    async fn claim(&self, job: &Job, now: i64) -> Result<bool, ControlError> {
        let until = now + self.lease_ms();
        let mut tx = self
            .store
            .pool()
            .begin()
            .await
            .map_err(db("claiming a job"))?;
        // The due time moves to the lease's end: if this process dies, the job is due again then,
        // and scans for due work skip leased rows by index.
        let got = sqlx::query("UPDATE jobs SET lease_owner = $1, leased_until = $2, due_at = $2 WHERE kind = $3 AND subject = $4 AND due_at <= $5 AND (leased_until IS NULL OR leased_until < $5)")
            .bind(&self.owner)
            .bind(until)
            .bind(&job.kind)
            .bind(&job.subject)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db("claiming a job"))?
            .rows_affected();
        if got != 1 {
            return Ok(false);
        }
        if job.kind != job::DISCOVER {
            let got = sqlx::query("UPDATE grants SET lease_owner = $1, leased_until = $2 WHERE id = $3 AND (leased_until IS NULL OR leased_until < $4)")
                .bind(&self.owner)
                .bind(until)
                .bind(&job.subject)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db("claiming a grant"))?
                .rows_affected();
            if got != 1 {
                // Another action on this grant is running; try again later.
                tx.rollback().await.map_err(db("claiming a job"))?;
                return Ok(false);
            }
        }
        tx.commit().await.map_err(db("claiming a job"))?;
        Ok(true)
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
                Ok(Next::Done)
            }
        };
        let next = match result {
            Ok(next) => next,
            Err(e) => {
                warn!(kind = %job.kind, subject = %job.subject, error = %e, "job failed");
                Next::Retry {
                    error: e.to_string(),
                }
            }
        };
        if let Err(e) = self.finish(&job, next).await {
            warn!(kind = %job.kind, subject = %job.subject, error = %e, "cannot record a job's outcome; its lease will expire");
        }
    }

    async fn finish(&self, job: &Job, next: Next) -> Result<(), ControlError> {
        let mut tx = self
            .store
            .pool()
            .begin()
            .await
            .map_err(db("finishing a job"))?;
        match next {
            // The job handlers delete or move their row in their own transaction; here only
            // leases are released.
            // The handler deleted or moved its row in its own transaction. A row it left
            // stays due at the lease's end: unfinished work is retried, never dropped.
            Next::Done => {}
            Next::Retry { error } => {
                let attempts = job.attempts + 1;
                sqlx::query("UPDATE jobs SET attempts = $1, last_error = $2, due_at = $3 WHERE kind = $4 AND subject = $5 AND lease_owner = $6")
                    .bind(attempts)
                    .bind(&error)
                    .bind(now_ms() + self.backoff_ms(attempts))
                    .bind(&job.kind)
                    .bind(&job.subject)
                    .bind(&self.owner)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("finishing a job"))?;
            }
            Next::Reschedule { due_at } => {
                sqlx::query("UPDATE jobs SET attempts = 0, last_error = NULL, due_at = $1 WHERE kind = $2 AND subject = $3 AND lease_owner = $4")
                    .bind(due_at)
                    .bind(&job.kind)
                    .bind(&job.subject)
                    .bind(&self.owner)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("finishing a job"))?;
            }
        }
        sqlx::query("UPDATE jobs SET lease_owner = NULL, leased_until = NULL WHERE kind = $1 AND subject = $2 AND lease_owner = $3")
            .bind(&job.kind)
            .bind(&job.subject)
            .bind(&self.owner)
            .execute(&mut *tx)
            .await
            .map_err(db("finishing a job"))?;
        if job.kind != job::DISCOVER {
            sqlx::query("UPDATE grants SET lease_owner = NULL, leased_until = NULL WHERE id = $1 AND lease_owner = $2")
                .bind(&job.subject)
                .bind(&self.owner)
                .execute(&mut *tx)
                .await
                .map_err(db("finishing a job"))?;
        }
        tx.commit().await.map_err(db("finishing a job"))?;
        Ok(())
    }

    async fn grant_row(&self, id: &str) -> Result<Option<sqlx::any::AnyRow>, ControlError> {
        sqlx::query("SELECT * FROM grants WHERE id = $1")
            .bind(id)
            .fetch_optional(self.store.pool())
            .await
            .map_err(db("reading a grant"))
    }

    async fn delete_job(
        tx: &mut sqlx::AnyConnection,
        kind: &str,
        subject: &str,
    ) -> Result<(), ControlError> {
        sqlx::query("DELETE FROM jobs WHERE kind = $1 AND subject = $2")
            .bind(kind)
            .bind(subject)
            .execute(&mut *tx)
            .await
            .map_err(db("deleting a job"))?;
        Ok(())
    }

    async fn set_status(
        &self,
        tx: &mut sqlx::AnyConnection,
        id: &str,
        from: GrantStatus,
        to: GrantStatus,
    ) -> Result<bool, ControlError> {
        debug_assert!(from == to || from.can_become(to), "{from} -> {to}");
        let n = sqlx::query(
            "UPDATE grants SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4",
        )
        .bind(to.as_str())
        .bind(now_ms())
        .bind(id)
        .bind(from.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db("updating a grant"))?
        .rows_affected();
        Ok(n == 1)
    }

    async fn run_grant(&self, job: &Job, abort: &CancelSignal) -> Result<Next, ControlError> {
        let Some(row) = self.grant_row(&job.subject).await? else {
            let mut tx = self.store.pool().begin().await.map_err(db("grant job"))?;
            Self::delete_job(&mut tx, job::GRANT, &job.subject).await?;
            tx.commit().await.map_err(db("grant job"))?;
            return Ok(Next::Done);
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
            return Ok(Next::Retry {
                error: format!("integration {integration_name:?} is not configured"),
            });
        };
        match status {
            GrantStatus::Pending => {
                let mut tx = self.store.pool().begin().await.map_err(db("grant job"))?;
                if revoke_requested.is_some() {
                    // Withdrawn before the target was touched.
                    self.set_status(&mut tx, id, GrantStatus::Pending, GrantStatus::Failed)
                        .await?;
                    sqlx::query("UPDATE grants SET last_error = 'revoked before it was granted' WHERE id = $1")
                        .bind(id).execute(&mut *tx).await.map_err(db("grant job"))?;
                    Self::delete_job(&mut tx, job::GRANT, id).await?;
                    tx.commit().await.map_err(db("grant job"))?;
                    return Ok(Next::Done);
                }
                // Written down before the target is touched: Granting, with its expiry.
                self.set_status(&mut tx, id, GrantStatus::Pending, GrantStatus::Granting)
                    .await?;
                sqlx::query("UPDATE grants SET expires_at = $1 WHERE id = $2")
                    .bind(now + duration * 1000)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("grant job"))?;
                audit::append(&mut tx, AuditEntry { actor: "connector", action: "grant.started", subject: id, outcome: "ok", details: json!({ "integration": integration_name, "resource_id": resource_id }) }).await?;
                tx.commit().await.map_err(db("grant job"))?;
            }
            GrantStatus::Granting | GrantStatus::Active => {}
            _ => {
                let mut tx = self.store.pool().begin().await.map_err(db("grant job"))?;
                Self::delete_job(&mut tx, job::GRANT, id).await?;
                tx.commit().await.map_err(db("grant job"))?;
                return Ok(Next::Done);
            }
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
                let mut tx = self.store.pool().begin().await.map_err(db("grant job"))?;
                if !self
                    .set_status(&mut tx, id, from, GrantStatus::Active)
                    .await?
                {
                    return Err(ControlError::Conflict(
                        "grant changed while granting".into(),
                    ));
                }
                sqlx::query("UPDATE grants SET state = $1, access = $2, credential_status = $3, activated_at = COALESCE(activated_at, $4), last_error = NULL WHERE id = $5")
                    .bind(state)
                    .bind(access)
                    .bind(if has_credentials { Some("new") } else { None })
                    .bind(now_ms())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("grant job"))?;
                Self::delete_job(&mut tx, job::GRANT, id).await?;
                let target = target_of(&integration_name, &resource_id);
                upsert_job(&mut tx, job::REVOKE, id, &target, expires_at).await?;
                if let Some(days) = integration
                    .credentials_rotation_period_in_days
                    .filter(|d| *d > 0)
                {
                    upsert_job(
                        &mut tx,
                        job::ROTATE,
                        id,
                        &target,
                        now_ms() + i64::from(days) * 86_400_000,
                    )
                    .await?;
                }
                audit::append(
                    &mut tx,
                    AuditEntry {
                        actor: "connector",
                        action: "grant.succeeded",
                        subject: id,
                        outcome: "ok",
                        details: json!({ "expires_at": crate::model::ts(expires_at) }),
                    },
                )
                .await?;
                tx.commit().await.map_err(db("grant job"))?;
                if !recovering {
                    self.keep_credentials(id, granted.access.credentials);
                }
                Ok(Next::Done)
            }
            Err(e) if e.kind().is_retryable() || from == GrantStatus::Active => {
                // Partial state may exist on the target; only a completed grant yields the state
                // revoke needs, so a grant is retried (idempotently) until it completes, then
                // revoked at once if it expired meanwhile.
                let mut tx = self.store.pool().begin().await.map_err(db("grant job"))?;
                sqlx::query("UPDATE grants SET last_error = $1, updated_at = $2 WHERE id = $3")
                    .bind(error_chain(&e))
                    .bind(now_ms())
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("grant job"))?;
                audit::append(
                    &mut tx,
                    AuditEntry {
                        actor: "connector",
                        action: "grant.attempt",
                        subject: id,
                        outcome: "failed",
                        details: json!({ "kind": e.kind().as_str(), "error": error_chain(&e) }),
                    },
                )
                .await?;
                tx.commit().await.map_err(db("grant job"))?;
                if from == GrantStatus::Active && !e.kind().is_retryable() {
                    // An extension the target refused: the grant stays as it was.
                    let mut tx = self.store.pool().begin().await.map_err(db("grant job"))?;
                    Self::delete_job(&mut tx, job::GRANT, id).await?;
                    tx.commit().await.map_err(db("grant job"))?;
                    return Ok(Next::Done);
                }
                Ok(Next::Retry {
                    error: error_chain(&e),
                })
            }
            Err(e) => {
                let mut tx = self.store.pool().begin().await.map_err(db("grant job"))?;
                self.set_status(&mut tx, id, GrantStatus::Granting, GrantStatus::Failed)
                    .await?;
                sqlx::query("UPDATE grants SET last_error = $1 WHERE id = $2")
                    .bind(error_chain(&e))
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("grant job"))?;
                Self::delete_job(&mut tx, job::GRANT, id).await?;
                audit::append(
                    &mut tx,
                    AuditEntry {
                        actor: "connector",
                        action: "grant.failed",
                        subject: id,
                        outcome: "failed",
                        details: json!({ "kind": e.kind().as_str(), "error": error_chain(&e) }),
                    },
                )
                .await?;
                tx.commit().await.map_err(db("grant job"))?;
                Ok(Next::Done)
            }
        }
    }

    async fn run_revoke(&self, job: &Job, abort: &CancelSignal) -> Result<Next, ControlError> {
        let id = job.subject.as_str();
        let Some(row) = self.grant_row(id).await? else {
            let mut tx = self.store.pool().begin().await.map_err(db("revoke job"))?;
            Self::delete_job(&mut tx, job::REVOKE, id).await?;
            tx.commit().await.map_err(db("revoke job"))?;
            return Ok(Next::Done);
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
            _ => {
                // Granting: the grant job schedules the revoke when it completes.
                let mut tx = self.store.pool().begin().await.map_err(db("revoke job"))?;
                Self::delete_job(&mut tx, job::REVOKE, id).await?;
                tx.commit().await.map_err(db("revoke job"))?;
                return Ok(Next::Done);
            }
        }
        let Some(integration) = self.config.integration(&integration_name).cloned() else {
            return Ok(Next::Retry {
                error: format!("integration {integration_name:?} is not configured"),
            });
        };
        if status != GrantStatus::Revoking {
            let mut tx = self.store.pool().begin().await.map_err(db("revoke job"))?;
            self.set_status(&mut tx, id, status, GrantStatus::Revoking)
                .await?;
            audit::append(
                &mut tx,
                AuditEntry {
                    actor: "connector",
                    action: "revoke.started",
                    subject: id,
                    outcome: "ok",
                    details: json!({ "attempt": job.attempts + 1 }),
                },
            )
            .await?;
            tx.commit().await.map_err(db("revoke job"))?;
        }
        let spec = ControlPlane::spec_from_row(&row)?;
        let state = ControlPlane::state_from_row(&row)?
            .unwrap_or_else(|| apono_core::GrantState::from_json(serde_json::Value::Null));
        let result = self
            .executor
            .revoke(&integration, &spec, &state, abort)
            .await;
        let now = now_ms();
        let mut tx = self.store.pool().begin().await.map_err(db("revoke job"))?;
        match result {
            Ok(()) => {
                self.set_status(&mut tx, id, GrantStatus::Revoking, GrantStatus::Revoked)
                    .await?;
                sqlx::query("UPDATE grants SET revoked_at = $1, last_error = NULL, state = state WHERE id = $2")
                    .bind(now).bind(id).execute(&mut *tx).await.map_err(db("revoke job"))?;
                Self::delete_job(&mut tx, job::REVOKE, id).await?;
                Self::delete_job(&mut tx, job::ROTATE, id).await?;
                if let Some(days) = integration.credentials_cleanup_period_in_days {
                    upsert_job(
                        &mut tx,
                        job::CLEANUP,
                        id,
                        &target_of(&integration_name, &resource_id),
                        now + i64::from(days) * 86_400_000,
                    )
                    .await?;
                }
                let lag = expires_at.map(|e| (now - e).max(0));
                audit::append(
                    &mut tx,
                    AuditEntry {
                        actor: "connector",
                        action: "revoke.succeeded",
                        subject: id,
                        outcome: "ok",
                        details: json!({ "lag_ms": lag }),
                    },
                )
                .await?;
                tx.commit().await.map_err(db("revoke job"))?;
                self.forget_credentials(id);
                if let Some(lag) = lag {
                    self.metrics.observe_revoke_lag(lag);
                }
                Ok(Next::Done)
            }
            Err(e) => {
                let attempts = job.attempts + 1;
                let give_up =
                    attempts >= i64::from(self.config.connector.revoke_failed_after_attempts);
                if give_up {
                    // Alerting state, still retried: never dropped.
                    self.set_status(
                        &mut tx,
                        id,
                        GrantStatus::Revoking,
                        GrantStatus::RevokeFailed,
                    )
                    .await?;
                }
                sqlx::query("UPDATE grants SET last_error = $1, updated_at = $2 WHERE id = $3")
                    .bind(error_chain(&e))
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("revoke job"))?;
                audit::append(&mut tx, AuditEntry { actor: "connector", action: "revoke.attempt", subject: id, outcome: "failed", details: json!({ "attempt": attempts, "kind": e.kind().as_str(), "error": error_chain(&e), "revoke_failed": give_up }) }).await?;
                tx.commit().await.map_err(db("revoke job"))?;
                Ok(Next::Retry {
                    error: error_chain(&e),
                })
            }
        }
    }

    async fn run_rotate(&self, job: &Job, abort: &CancelSignal) -> Result<Next, ControlError> {
        let id = job.subject.as_str();
        let row = self.grant_row(id).await?;
        let Some(row) = row.filter(|r| {
            r.try_get::<String, _>("status")
                .is_ok_and(|s| s == "Active")
        }) else {
            let mut tx = self.store.pool().begin().await.map_err(db("rotate job"))?;
            Self::delete_job(&mut tx, job::ROTATE, id).await?;
            tx.commit().await.map_err(db("rotate job"))?;
            return Ok(Next::Done);
        };
        let integration_name: String = row.try_get("integration").map_err(db("reading a grant"))?;
        let Some(integration) = self.config.integration(&integration_name).cloned() else {
            return Ok(Next::Retry {
                error: "integration is not configured".into(),
            });
        };
        let spec = ControlPlane::spec_from_row(&row)?;
        let Some(state) = ControlPlane::state_from_row(&row)? else {
            return Ok(Next::Retry {
                error: "grant has no state".into(),
            });
        };
        match self
            .executor
            .reset_credentials(&integration, &spec, &state, abort)
            .await
        {
            Ok(granted) => {
                let mut tx = self.store.pool().begin().await.map_err(db("rotate job"))?;
                sqlx::query("UPDATE grants SET state = $1, access = $2, credential_status = $3, updated_at = $4 WHERE id = $5 AND status = 'Active'")
                    .bind(serde_json::to_string(granted.state.as_json()).unwrap_or_default())
                    .bind(serde_json::to_string(&granted.access).unwrap_or_default())
                    .bind(if granted.access.credentials.is_empty() { None } else { Some("new") })
                    .bind(now_ms()).bind(id)
                    .execute(&mut *tx).await.map_err(db("rotate job"))?;
                audit::append(
                    &mut tx,
                    AuditEntry {
                        actor: "connector",
                        action: "credentials.reset",
                        subject: id,
                        outcome: "ok",
                        details: json!({}),
                    },
                )
                .await?;
                match integration
                    .credentials_rotation_period_in_days
                    .filter(|d| *d > 0)
                {
                    Some(days) => {
                        upsert_job(
                            &mut tx,
                            job::ROTATE,
                            id,
                            &job.target,
                            now_ms() + i64::from(days) * 86_400_000,
                        )
                        .await?
                    }
                    None => Self::delete_job(&mut tx, job::ROTATE, id).await?,
                }
                tx.commit().await.map_err(db("rotate job"))?;
                self.keep_credentials(id, granted.access.credentials);
                Ok(Next::Done)
            }
            Err(e) if e.kind() == ErrorKind::Unsupported || !e.kind().is_retryable() => {
                let mut tx = self.store.pool().begin().await.map_err(db("rotate job"))?;
                Self::delete_job(&mut tx, job::ROTATE, id).await?;
                audit::append(
                    &mut tx,
                    AuditEntry {
                        actor: "connector",
                        action: "credentials.reset",
                        subject: id,
                        outcome: "failed",
                        details: json!({ "kind": e.kind().as_str(), "error": error_chain(&e) }),
                    },
                )
                .await?;
                tx.commit().await.map_err(db("rotate job"))?;
                Ok(Next::Done)
            }
            Err(e) => Ok(Next::Retry {
                error: error_chain(&e),
            }),
        }
    }

    async fn run_cleanup(&self, job: &Job, abort: &CancelSignal) -> Result<Next, ControlError> {
        let id = job.subject.as_str();
        let row = self.grant_row(id).await?;
        let done = |this: &Self, outcome: &'static str, details: serde_json::Value| {
            let id = id.to_owned();
            let pool = this.store.pool().clone();
            async move {
                let mut tx = pool.begin().await.map_err(db("cleanup job"))?;
                Self::delete_job(&mut tx, job::CLEANUP, &id).await?;
                audit::append(
                    &mut tx,
                    AuditEntry {
                        actor: "connector",
                        action: "cleanup",
                        subject: &id,
                        outcome,
                        details,
                    },
                )
                .await?;
                tx.commit().await.map_err(db("cleanup job"))?;
                Ok::<_, ControlError>(Next::Done)
            }
        };
        let Some(row) = row.filter(|r| {
            r.try_get::<String, _>("status")
                .is_ok_and(|s| s == "Revoked")
        }) else {
            return done(self, "skipped", json!({})).await;
        };
        let integration_name: String = row.try_get("integration").map_err(db("reading a grant"))?;
        let Some(integration) = self.config.integration(&integration_name).cloned() else {
            return done(self, "skipped", json!({ "reason": "integration removed" })).await;
        };
        let spec = ControlPlane::spec_from_row(&row)?;
        let Some(state) = ControlPlane::state_from_row(&row)? else {
            return done(self, "skipped", json!({ "reason": "no state" })).await;
        };
        match self
            .executor
            .delete_credentials(&integration, &spec, &state, abort)
            .await
        {
            Ok(()) => done(self, "ok", json!({})).await,
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                done(self, "unsupported", json!({})).await
            }
            Err(e) if job.attempts >= 10 => {
                done(self, "failed", json!({ "error": error_chain(&e) })).await
            }
            Err(e) => Ok(Next::Retry {
                error: error_chain(&e),
            }),
        }
    }

    async fn run_discover(&self, job: &Job, abort: &CancelSignal) -> Result<Next, ControlError> {
        let Some(integration) = self.config.integration(&job.subject).cloned() else {
            let mut tx = self
                .store
                .pool()
                .begin()
                .await
                .map_err(db("discover job"))?;
            Self::delete_job(&mut tx, job::DISCOVER, &job.subject).await?;
            tx.commit().await.map_err(db("discover job"))?;
            return Ok(Next::Done);
        };
        match self.executor.list_resources(&integration, abort).await {
            Ok(inventory) => {
                self.store_inventory(&integration, &inventory).await?;
                debug!(integration = %integration.name, resources = inventory.resources.len(), "discovered");
                Ok(Next::Reschedule {
                    due_at: now_ms()
                        + self.config.connector.discovery_interval.0.as_millis() as i64,
                })
            }
            Err(e) => Ok(Next::Retry {
                error: error_chain(&e),
            }),
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
