//! Group commit of the scheduler's outcomes.
//!
//! A finished job hands the ledger one typed [`Change`] (what its action did) and a
//! [`Release`] (what becomes of its job row). One writer task takes everything queued when it
//! becomes free (up to [`MAX_BATCH`] items), applies the items in order inside **one** write
//! transaction, appends their audit records at the end of that transaction chained in the same
//! order, writes the status counters, commits, and only then answers each submitter. Under load
//! many outcomes share one commit; an idle writer commits a lone item at once.
//!
//! # Fencing and crash safety
//!
//! * Every item first checks that its job still carries the lease token of its claim. If the
//!   lease ended and another worker took the job, the item writes nothing
//!   ([`Applied::Fenced`]): a late outcome never overwrites newer work.
//! * A submitter learns what happened only after the commit; sealed credentials are stored in
//!   the transaction that makes the grant `Active`, and dropped if a revoke won meanwhile.
//! * If the process dies before the batch commits, nothing of it is written: the jobs are still
//!   leased, due again when their leases end (at once on SQLite, where a restart voids the
//!   leases), and the idempotent actions are redone.
//! * If a batch fails (a database error), each of its items is retried in a transaction of its
//!   own, so one bad item costs only itself.

use std::sync::{Arc, OnceLock};

use apono_core::GrantStatus;
use serde_json::{Value, json};
use sqlx::AnyConnection;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use super::audit::{AuditEntry, Chain};
use super::gauges::Deltas;
use super::jobs::{self, JobKind};
use super::outbox::{self, Routes, Told};
use super::store::Store;
use super::{IN_CHUNK, db, marks, transition};
use crate::error::ControlError;
use crate::keys::{Keyring, Keys};
use crate::model::now_ms;

/// The most items one transaction takes.
pub(crate) const MAX_BATCH: usize = 512;

/// What a finished job did, as the ledger records it.
#[derive(Clone, Debug)]
pub(crate) enum Change {
    /// Nothing to record beyond the release.
    Nothing,
    /// The job has nothing left to do (its integration was removed): its row goes.
    Dropped { kind: JobKind, subject: String },
    /// The grant's action succeeded on the target. It becomes `Active` with a revoke due at its
    /// expiry, unless a revoke was asked for meanwhile: then it becomes `Revoking` with the
    /// revoke due at once and no credentials ([`Applied::RevokedWhileGranting`]).
    Granted {
        id: String,
        from: GrantStatus,
        target: String,
        /// The provisioner's state (JSON text).
        state: String,
        /// The access details without secrets (JSON text).
        access: String,
        /// The one-time credentials, sealed for this grant, waiting to be shown.
        sealed: Option<String>,
        /// When to rotate the credentials, if the integration rotates them.
        rotate_at: Option<i64>,
    },
    /// A grant attempt failed; it is retried (or, for a refused extension, dropped).
    GrantAttemptFailed {
        id: String,
        kind: &'static str,
        error: String,
        drop_job: bool,
    },
    /// A grant failed for good, leaving nothing on the target.
    GrantFailed {
        id: String,
        kind: &'static str,
        error: String,
    },
    /// The revoke succeeded.
    Revoked {
        id: String,
        lag_ms: Option<i64>,
        /// When (and on which target) to clean up, if the integration does.
        cleanup: Option<(String, i64)>,
    },
    /// A revoke attempt failed; `give_up` marks the grant `RevokeFailed` (still retried);
    /// `alert`: this is the attempt that reached the limit (`session.revoke_failed` is told
    /// once, not at every later attempt).
    RevokeAttemptFailed {
        id: String,
        attempt: i64,
        kind: &'static str,
        error: String,
        give_up: bool,
        alert: bool,
    },
    /// New credentials were issued.
    Rotated {
        id: String,
        target: String,
        state: String,
        access: String,
        /// The new one-time credentials, sealed for this grant.
        sealed: Option<String>,
        next: Option<i64>,
    },
    /// Rotation is refused for good.
    RotateFailed {
        id: String,
        kind: &'static str,
        error: String,
    },
    /// Cleanup ended (`ok`, `unsupported`, `failed`, `skipped`).
    CleanedUp {
        id: String,
        outcome: &'static str,
        details: Value,
    },
    /// An integration's inventory was discovered.
    Discovered { integration: String, body: String },
}

/// What becomes of the job row once the change is applied (the lease is always released).
#[derive(Clone, Debug)]
pub(crate) enum After {
    /// The row stays as the change left it (deleted, or moved by an upsert).
    Keep,
    /// Retried later.
    Retry {
        attempts: i64,
        error: String,
        due_at: i64,
    },
    /// Due again at `due_at`, attempts reset.
    Reschedule { due_at: i64 },
}

/// The job whose lease an item releases.
#[derive(Clone, Debug)]
pub(crate) struct Release {
    pub(crate) kind: JobKind,
    pub(crate) subject: String,
    pub(crate) lease: String,
    pub(crate) after: After,
}

/// What an item did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    /// Written as asked.
    Done,
    /// `Granted` found a revoke asked for meanwhile: the grant is `Revoking`, its revoke due.
    RevokedWhileGranting,
    /// The grant was no longer in the status the job started from: nothing written, retried.
    Changed,
    /// The job's lease had ended: nothing written.
    Fenced,
}

struct Item {
    change: Change,
    release: Release,
    reply: oneshot::Sender<Result<Applied, ControlError>>,
}

/// The group-commit writer of one ledger (its task starts on first use).
#[derive(Debug)]
pub(crate) struct Committer {
    store: Store,
    keyring: Arc<Keyring>,
    routes: Arc<Routes>,
    queue: OnceLock<mpsc::UnboundedSender<Item>>,
}

impl Committer {
    pub(crate) fn new(store: Store, keyring: Arc<Keyring>, routes: Arc<Routes>) -> Self {
        Self {
            store,
            keyring,
            routes,
            queue: OnceLock::new(),
        }
    }

    /// Applies `change` and releases the lease, in a transaction shared with whatever else is
    /// queued; returns once committed.
    pub(crate) async fn commit(
        &self,
        change: Change,
        release: Release,
    ) -> Result<Applied, ControlError> {
        let keys = self.keyring.get().await?;
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(writer(
                self.store.clone(),
                keys.clone(),
                self.routes.clone(),
                rx,
            ));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let item = Item {
            change,
            release,
            reply,
        };
        match queue.send(item) {
            Ok(()) => answer.await.map_err(|_| {
                ControlError::Corrupt("the group-commit writer stopped before answering".into())
            })?,
            // The writer's runtime is gone (a ledger used from another runtime): write alone.
            Err(mpsc::error::SendError(item)) => {
                let mut one = apply(&self.store, &keys, &self.routes, &[&item]).await?;
                Ok(one.pop().unwrap_or(Applied::Fenced))
            }
        }
    }
}

async fn writer(
    store: Store,
    keys: Arc<Keys>,
    routes: Arc<Routes>,
    mut rx: mpsc::UnboundedReceiver<Item>,
) {
    let mut items = Vec::new();
    let mut last_commit: Option<tokio::time::Instant> = None;
    while rx.recv_many(&mut items, MAX_BATCH).await > 0 {
        // Busy (the last commit ended moments ago): gather a millisecond's worth of outcomes
        // so one transaction records many. Idle: commit the lone item at once.
        if items.len() < MAX_BATCH
            && last_commit.is_some_and(|t| t.elapsed() < std::time::Duration::from_millis(5))
        {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            while items.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(item) => items.push(item),
                    Err(_) => break,
                }
            }
        }
        let refs: Vec<&Item> = items.iter().collect();
        let result = apply(&store, &keys, &routes, &refs).await;
        last_commit = Some(tokio::time::Instant::now());
        match result {
            Ok(applied) => {
                for (item, applied) in items.drain(..).zip(applied) {
                    let _ = item.reply.send(Ok(applied));
                }
            }
            Err(e) if items.len() == 1 => {
                if let Some(item) = items.pop() {
                    let _ = item.reply.send(Err(e));
                }
            }
            Err(e) => {
                warn!(items = items.len(), error = %e, "a group commit failed; committing its items one by one");
                for item in items.drain(..) {
                    let result = apply(&store, &keys, &routes, &[&item])
                        .await
                        .map(|mut a| a.pop().unwrap_or(Applied::Fenced));
                    let _ = item.reply.send(result);
                }
            }
        }
    }
}

/// An audit record waiting for the end of the batch.
struct Pending {
    action: &'static str,
    subject: String,
    outcome: &'static str,
    details: Value,
}

/// One transaction for `items`, in order: the leases checked in one statement per job kind,
/// revokes recorded in a few set-based statements for the whole batch, other changes one by
/// one, the audit records appended together at the end.
async fn apply(
    store: &Store,
    keys: &Keys,
    routes: &Routes,
    items: &[&Item],
) -> Result<Vec<Applied>, ControlError> {
    let mut tx = store
        .begin()
        .await
        .map_err(db("recording a job's outcome"))?;
    let mut deltas = Deltas::default();
    let mut audits = Vec::new();
    let held = fence(&mut tx, items).await?;
    let mut applied = vec![Applied::Fenced; items.len()];
    let (bulk, single): (Vec<usize>, Vec<usize>) =
        (0..items.len()).filter(|&i| held[i]).partition(|&i| {
            matches!(items[i].change, Change::Revoked { cleanup: None, .. })
                && matches!(items[i].release.after, After::Keep)
        });
    if !bulk.is_empty() {
        revoked(&mut tx, &mut deltas, &mut audits, items, &bulk).await?;
        for i in bulk {
            applied[i] = Applied::Done;
        }
    }
    for i in single {
        let item = items[i];
        let outcome = record(&mut tx, &mut deltas, &mut audits, &item.change).await?;
        let after = match outcome {
            Applied::Changed => After::Retry {
                attempts: 0,
                error: "the grant changed while its action ran".into(),
                due_at: now_ms(),
            },
            _ => item.release.after.clone(),
        };
        release(&mut tx, &item.release, &after).await?;
        applied[i] = outcome;
    }
    // The notifications the outcomes call for, in their transaction.
    let told: Vec<Told<'_>> = audits
        .iter()
        .map(|a| Told {
            action: a.action,
            subject: &a.subject,
            details: &a.details,
        })
        .collect();
    let queued = outbox::enqueue(&mut tx, routes, &told).await?;
    // The audit head, then the status counters: the order every transaction takes them in, so
    // two transactions on PostgreSQL never wait for each other in a circle.
    if !audits.is_empty() {
        // Each record names the connector whose worker did the action: the id its lease
        // token starts with (this control plane's, or an agent's).
        let by: std::collections::HashMap<&str, &str> = items
            .iter()
            .zip(&held)
            .filter(|(_, held)| **held)
            .map(|(i, _)| {
                (
                    i.release.subject.as_str(),
                    jobs::lease_connector(&i.release.lease),
                )
            })
            .collect();
        let entries: Vec<AuditEntry<'_>> = audits
            .iter()
            .map(|a| {
                let mut details = a.details.clone();
                if let (Value::Object(map), Some(id)) = (&mut details, by.get(a.subject.as_str())) {
                    map.insert("connector".into(), Value::String((*id).to_owned()));
                }
                AuditEntry {
                    actor: "connector",
                    action: a.action,
                    subject: &a.subject,
                    outcome: a.outcome,
                    details,
                }
            })
            .collect();
        let mut chain = Chain::open(&mut tx, keys).await?;
        chain.append_all(&mut tx, &entries).await?;
        chain.close(&mut tx).await?;
    }
    deltas.flush(&mut tx).await?;
    tx.commit().await.map_err(db("recording a job's outcome"))?;
    if queued > 0 {
        routes.ring();
    }
    Ok(applied)
}

/// Which items' jobs still carry their claim's lease token (locking those rows until commit).
async fn fence(tx: &mut AnyConnection, items: &[&Item]) -> Result<Vec<bool>, ControlError> {
    use std::collections::{BTreeMap, HashMap};
    let mut by_kind: BTreeMap<JobKind, Vec<usize>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        by_kind.entry(item.release.kind).or_default().push(i);
    }
    let mut held = vec![false; items.len()];
    for (kind, indexes) in by_kind {
        for chunk in indexes.chunks(IN_CHUNK) {
            let sql = format!(
                "UPDATE jobs SET leased_until = leased_until WHERE kind = $1 AND subject IN ({}) RETURNING subject, lease_owner",
                marks(2, chunk.len())
            );
            let mut query = sqlx::query_as::<_, (String, Option<String>)>(sqlx::AssertSqlSafe(sql))
                .bind(kind.as_str());
            for &i in chunk {
                query = query.bind(items[i].release.subject.clone());
            }
            let owners: HashMap<String, Option<String>> = query
                .fetch_all(&mut *tx)
                .await
                .map_err(db("recording a job's outcome"))?
                .into_iter()
                .collect();
            for &i in chunk {
                let release = &items[i].release;
                held[i] = owners
                    .get(&release.subject)
                    .is_some_and(|o| o.as_deref() == Some(release.lease.as_str()));
            }
        }
    }
    Ok(held)
}

/// Records the revokes `bulk` (no cleanup to schedule, the job row kept as the change leaves
/// it): `Revoking → Revoked`, their revoke and rotate jobs deleted, their grants' leases
/// released, in one statement each per chunk.
async fn revoked(
    tx: &mut AnyConnection,
    deltas: &mut Deltas,
    audits: &mut Vec<Pending>,
    items: &[&Item],
    bulk: &[usize],
) -> Result<(), ControlError> {
    use GrantStatus::{Revoked, Revoking};
    transition(Revoking, Revoked)?;
    let now = now_ms();
    for chunk in bulk.chunks(IN_CHUNK) {
        let ids: Vec<String> = chunk
            .iter()
            .map(|&i| items[i].release.subject.clone())
            .collect();
        let moved = {
            // `(status || '')`: the primary key finds the rows; the status index would scan
            // every revoking grant.
            let sql = format!(
                "UPDATE grants SET status = $1, updated_at = $2, revoked_at = $2, last_error = NULL, credential_status = NULL, sealed_credentials = NULL, lease_owner = NULL, leased_until = NULL WHERE (status || '') = $3 AND id IN ({}) RETURNING id",
                marks(4, ids.len())
            );
            let mut query = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql))
                .bind(Revoked.as_str())
                .bind(now)
                .bind(Revoking.as_str());
            for id in &ids {
                query = query.bind(id.clone());
            }
            query
                .fetch_all(&mut *tx)
                .await
                .map_err(db("recording revokes"))?
        };
        deltas.moved(Revoking, Revoked, moved.len() as u64);
        {
            let sql = format!(
                "DELETE FROM jobs WHERE kind IN ($1, $2) AND subject IN ({})",
                marks(3, ids.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(JobKind::Revoke.as_str())
                .bind(JobKind::Rotate.as_str());
            for id in &ids {
                query = query.bind(id.clone());
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(db("recording revokes"))?;
        }
        if moved.len() < ids.len() {
            // A grant that was not `Revoking` keeps its state; its lease is released all the
            // same.
            let sql = format!(
                "UPDATE grants SET lease_owner = NULL, leased_until = NULL WHERE lease_owner IS NOT NULL AND id IN ({})",
                marks(1, ids.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in &ids {
                query = query.bind(id.clone());
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(db("recording revokes"))?;
        }
        for &i in chunk {
            if let Change::Revoked { id, lag_ms, .. } = &items[i].change {
                audits.push(Pending {
                    action: "revoke.succeeded",
                    subject: id.clone(),
                    outcome: "ok",
                    details: json!({ "lag_ms": lag_ms }),
                });
            }
        }
    }
    Ok(())
}

async fn exec(
    conn: &mut AnyConnection,
    query: sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments>,
) -> Result<u64, ControlError> {
    Ok(query
        .execute(&mut *conn)
        .await
        .map_err(db("recording a job's outcome"))?
        .rows_affected())
}

/// Moves grant `id` from `from` to `to` (nothing if it is not in `from`); whether it moved.
async fn set_status(
    conn: &mut AnyConnection,
    deltas: &mut Deltas,
    id: &str,
    from: GrantStatus,
    to: GrantStatus,
) -> Result<bool, ControlError> {
    transition(from, to)?;
    let n = exec(
        conn,
        sqlx::query("UPDATE grants SET status = $1, updated_at = $2 WHERE id = $3 AND status = $4")
            .bind(to.as_str())
            .bind(now_ms())
            .bind(id)
            .bind(from.as_str()),
    )
    .await?;
    deltas.moved(from, to, n);
    Ok(n == 1)
}

async fn last_error(conn: &mut AnyConnection, id: &str, error: &str) -> Result<(), ControlError> {
    exec(
        conn,
        sqlx::query("UPDATE grants SET last_error = $1, updated_at = $2 WHERE id = $3")
            .bind(error)
            .bind(now_ms())
            .bind(id),
    )
    .await
    .map(drop)
}

/// The revoke of grant `id` becomes due at its stored expiry (`at_once`: now).
async fn schedule_revoke(
    conn: &mut AnyConnection,
    id: &str,
    target: &str,
    at_once: bool,
) -> Result<(), ControlError> {
    let now = now_ms();
    exec(
        conn,
        sqlx::query(
            "INSERT INTO jobs (kind, subject, target, due_at, attempts, created_at) SELECT $1, id, $2, CASE WHEN $3 = 1 OR expires_at IS NULL OR expires_at < $4 THEN $4 ELSE expires_at END, 0, $4 FROM grants WHERE id = $5 ON CONFLICT (kind, subject) DO UPDATE SET due_at = excluded.due_at, attempts = 0, last_error = NULL",
        )
        .bind(JobKind::Revoke.as_str())
        .bind(target)
        .bind(i64::from(at_once))
        .bind(now)
        .bind(id),
    )
    .await
    .map(drop)
}

async fn record(
    tx: &mut AnyConnection,
    deltas: &mut Deltas,
    audits: &mut Vec<Pending>,
    change: &Change,
) -> Result<Applied, ControlError> {
    use GrantStatus::{Active, Failed, Granting, RevokeFailed, Revoked, Revoking};
    let mut audit = |action, subject: &str, outcome, details| {
        audits.push(Pending {
            action,
            subject: subject.to_owned(),
            outcome,
            details,
        });
    };
    let now = now_ms();
    match change {
        Change::Nothing => {}
        Change::Dropped { kind, subject } => jobs::delete(tx, *kind, subject).await?,
        Change::Granted {
            id,
            from,
            target,
            state,
            access,
            sealed,
            rotate_at,
        } => {
            // The state is kept whatever follows: revoke needs it.
            let stored = exec(
                tx,
                sqlx::query("UPDATE grants SET state = $1, access = $2, last_error = NULL, updated_at = $3 WHERE id = $4 AND status = $5")
                    .bind(state.as_str())
                    .bind(access.as_str())
                    .bind(now)
                    .bind(id.as_str())
                    .bind(from.as_str()),
            )
            .await?;
            if stored != 1 {
                return Ok(Applied::Changed);
            }
            transition(*from, Active)?;
            let activated = exec(
                tx,
                sqlx::query("UPDATE grants SET status = $1, credential_status = $2, sealed_credentials = $6, activated_at = COALESCE(activated_at, $3) WHERE id = $4 AND status = $5 AND revoke_requested_at IS NULL")
                    .bind(Active.as_str())
                    .bind(sealed.is_some().then_some(apono_core::CredentialStatus::New.as_str()))
                    .bind(now)
                    .bind(id.as_str())
                    .bind(from.as_str())
                    .bind(sealed.as_deref()),
            )
            .await?;
            jobs::delete(tx, JobKind::Grant, id).await?;
            if activated == 1 {
                deltas.moved(*from, Active, 1);
                schedule_revoke(tx, id, target, false).await?;
                if let Some(at) = rotate_at {
                    jobs::enqueue(tx, JobKind::Rotate, id, target, *at).await?;
                }
                audit("grant.succeeded", id, "ok", json!({}));
                return Ok(Applied::Done);
            }
            // A revoke was asked for while the action ran: it wins.
            set_status(tx, deltas, id, *from, Revoking).await?;
            exec(
                tx,
                sqlx::query("UPDATE grants SET credential_status = NULL, sealed_credentials = NULL WHERE id = $1")
                    .bind(id.as_str()),
            )
            .await?;
            schedule_revoke(tx, id, target, true).await?;
            audit(
                "grant.succeeded",
                id,
                "ok",
                json!({ "revoke_requested": true }),
            );
            audit("revoke.started", id, "ok", json!({ "attempt": 1 }));
            return Ok(Applied::RevokedWhileGranting);
        }
        Change::GrantAttemptFailed {
            id,
            kind,
            error,
            drop_job,
        } => {
            last_error(tx, id, error).await?;
            if *drop_job {
                jobs::delete(tx, JobKind::Grant, id).await?;
            }
            audit(
                "grant.attempt",
                id,
                "failed",
                json!({ "kind": kind, "error": error }),
            );
        }
        Change::GrantFailed { id, kind, error } => {
            set_status(tx, deltas, id, Granting, Failed).await?;
            last_error(tx, id, error).await?;
            jobs::delete(tx, JobKind::Grant, id).await?;
            audit(
                "grant.failed",
                id,
                "failed",
                json!({ "kind": kind, "error": error }),
            );
        }
        Change::Revoked {
            id,
            lag_ms,
            cleanup,
        } => {
            transition(Revoking, Revoked)?;
            let n = exec(
                tx,
                sqlx::query("UPDATE grants SET status = $1, updated_at = $2, revoked_at = $2, last_error = NULL, credential_status = NULL, sealed_credentials = NULL WHERE id = $3 AND status = $4")
                    .bind(Revoked.as_str())
                    .bind(now)
                    .bind(id.as_str())
                    .bind(Revoking.as_str()),
            )
            .await?;
            deltas.moved(Revoking, Revoked, n);
            exec(
                tx,
                sqlx::query("DELETE FROM jobs WHERE subject = $1 AND kind IN ($2, $3)")
                    .bind(id.as_str())
                    .bind(JobKind::Revoke.as_str())
                    .bind(JobKind::Rotate.as_str()),
            )
            .await?;
            if let Some((target, at)) = cleanup {
                jobs::enqueue(tx, JobKind::Cleanup, id, target, *at).await?;
            }
            audit("revoke.succeeded", id, "ok", json!({ "lag_ms": lag_ms }));
        }
        Change::RevokeAttemptFailed {
            id,
            attempt,
            kind,
            error,
            give_up,
            alert,
        } => {
            if *give_up {
                // Alerting state, still retried: never dropped.
                set_status(tx, deltas, id, Revoking, RevokeFailed).await?;
            }
            last_error(tx, id, error).await?;
            audit(
                "revoke.attempt",
                id,
                "failed",
                json!({ "attempt": attempt, "kind": kind, "error": error, "revoke_failed": give_up, "alert": alert }),
            );
        }
        Change::Rotated {
            id,
            target,
            state,
            access,
            sealed,
            next,
        } => {
            exec(
                tx,
                sqlx::query("UPDATE grants SET state = $1, access = $2, credential_status = $3, sealed_credentials = $7, updated_at = $4 WHERE id = $5 AND status = $6")
                    .bind(state.as_str())
                    .bind(access.as_str())
                    .bind(sealed.is_some().then_some(apono_core::CredentialStatus::New.as_str()))
                    .bind(now)
                    .bind(id.as_str())
                    .bind(Active.as_str())
                    .bind(sealed.as_deref()),
            )
            .await?;
            match next {
                Some(at) => jobs::enqueue(tx, JobKind::Rotate, id, target, *at).await?,
                None => jobs::delete(tx, JobKind::Rotate, id).await?,
            }
            audit("credentials.reset", id, "ok", json!({}));
        }
        Change::RotateFailed { id, kind, error } => {
            jobs::delete(tx, JobKind::Rotate, id).await?;
            audit(
                "credentials.reset",
                id,
                "failed",
                json!({ "kind": kind, "error": error }),
            );
        }
        Change::CleanedUp {
            id,
            outcome,
            details,
        } => {
            jobs::delete(tx, JobKind::Cleanup, id).await?;
            audit("cleanup", id, outcome, details.clone());
        }
        Change::Discovered { integration, body } => {
            exec(
                tx,
                sqlx::query("INSERT INTO inventory (integration, body, discovered_at) VALUES ($1, $2, $3) ON CONFLICT (integration) DO UPDATE SET body = excluded.body, discovered_at = excluded.discovered_at")
                    .bind(integration.as_str())
                    .bind(body.as_str())
                    .bind(now),
            )
            .await?;
        }
    }
    Ok(Applied::Done)
}

async fn release(
    conn: &mut AnyConnection,
    release: &Release,
    after: &After,
) -> Result<(), ControlError> {
    let (kind, subject, lease) = (
        release.kind.as_str(),
        release.subject.as_str(),
        release.lease.as_str(),
    );
    match after {
        After::Keep => {
            exec(
                conn,
                sqlx::query("UPDATE jobs SET lease_owner = NULL, leased_until = NULL WHERE kind = $1 AND subject = $2 AND lease_owner = $3")
                    .bind(kind)
                    .bind(subject)
                    .bind(lease),
            )
            .await?;
        }
        After::Retry {
            attempts,
            error,
            due_at,
        } => {
            exec(
                conn,
                sqlx::query("UPDATE jobs SET attempts = $1, last_error = $2, due_at = $3, lease_owner = NULL, leased_until = NULL WHERE kind = $4 AND subject = $5 AND lease_owner = $6")
                    .bind(*attempts)
                    .bind(error.as_str())
                    .bind(*due_at)
                    .bind(kind)
                    .bind(subject)
                    .bind(lease),
            )
            .await?;
        }
        After::Reschedule { due_at } => {
            exec(
                conn,
                sqlx::query("UPDATE jobs SET attempts = 0, last_error = NULL, due_at = $1, lease_owner = NULL, leased_until = NULL WHERE kind = $2 AND subject = $3 AND lease_owner = $4")
                    .bind(*due_at)
                    .bind(kind)
                    .bind(subject)
                    .bind(lease),
            )
            .await?;
        }
    }
    if release.kind != JobKind::Discover {
        exec(
            conn,
            sqlx::query("UPDATE grants SET lease_owner = NULL, leased_until = NULL WHERE id = $1 AND lease_owner = $2")
                .bind(subject)
                .bind(lease),
        )
        .await?;
    }
    Ok(())
}
