//! Group commit for the scheduler's writes.
//!
//! A job's writes (the ledger change it describes, its audit record and the release of its
//! leases) are handed to one writer task as a list of [`Step`]s. The writer takes everything
//! queued when it becomes free (up to [`MAX_BATCH`] items), applies the items in order inside
//! **one** write transaction, appends their audit records at the end of that transaction,
//! chained in the same order, commits, and only then answers each submitter. Under load many
//! finished actions share one commit; an idle writer commits a lone item at once, so batching
//! adds no waiting of its own.
//!
//! # Crash safety
//!
//! * A submitter learns that its writes happened only after the commit, so anything it does
//!   next (touching a target after `Granting` is recorded, showing credentials after `Active`
//!   is recorded) still follows the commit, as with a transaction of its own.
//! * Each item carries its own lease release. If the process dies before the batch commits,
//!   nothing of it is written: the jobs are still leased, due again when their leases end (at
//!   once on SQLite, where a restart voids the leases), and the actions are redone; provisioners
//!   are idempotent, so a revoke whose outcome was lost is simply revoked again.
//! * The audit chain is extended under the head row's lock inside the batch's transaction, so
//!   the records of a batch commit or vanish together with the changes they describe.
//! * If a batch fails (a database error), each of its items is retried in a transaction of its
//!   own, so one bad item costs only itself.

use std::sync::OnceLock;

use serde_json::Value;
use sqlx::AnyConnection;
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

use crate::audit::{AuditEntry, Chain};
use crate::error::ControlError;
use crate::plane::{db, job};
use crate::store::Store;

/// The most items one transaction takes.
pub(crate) const MAX_BATCH: usize = 512;

/// A bound value.
#[derive(Clone, Debug)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Self::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Self::Int(v)
    }
}
impl From<String> for Arg {
    fn from(v: String) -> Self {
        Self::Text(Some(v))
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Self::Text(Some(v.to_owned()))
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Self {
        Self::Text(v.map(str::to_owned))
    }
}

/// One write of an item.
#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// A statement that must change exactly one row; if it does not, the item's later steps
    /// are skipped and its job is retried (put it first).
    Guard(&'static str, Vec<Arg>),
    /// A statement.
    Exec(&'static str, Vec<Arg>),
    /// An audit record by the connector.
    Audit {
        action: &'static str,
        subject: String,
        outcome: &'static str,
        details: Value,
    },
}

impl Step {
    pub(crate) fn audit(
        action: &'static str,
        subject: &str,
        outcome: &'static str,
        details: Value,
    ) -> Self {
        Self::Audit {
            action,
            subject: subject.to_owned(),
            outcome,
            details,
        }
    }
}

/// What happens to a job row when its leases are released.
#[derive(Clone, Debug)]
pub(crate) enum After {
    /// The row stays as the steps left it (moved by an upsert, say); its lease is released.
    Keep,
    /// The steps deleted the row: only the grant's lease is released.
    Deleted,
    /// Retried later.
    Retry {
        attempts: i64,
        error: String,
        due_at: i64,
    },
    /// Due again at `due_at`, attempts reset.
    Reschedule { due_at: i64 },
}

/// The job whose leases an item releases.
#[derive(Clone, Debug)]
pub(crate) struct Release {
    pub(crate) kind: String,
    pub(crate) subject: String,
    /// When every step ran.
    pub(crate) after: After,
    /// When a [`Step::Guard`] matched no row.
    pub(crate) after_guard_failed: After,
}

struct Item {
    steps: Vec<Step>,
    release: Option<Release>,
    reply: oneshot::Sender<Result<bool, ControlError>>,
}

/// The group-commit writer of one control plane (its task starts on first use).
#[derive(Debug)]
pub(crate) struct Committer {
    store: Store,
    owner: String,
    queue: OnceLock<mpsc::UnboundedSender<Item>>,
}

impl Committer {
    pub(crate) fn new(store: Store, owner: String) -> Self {
        Self {
            store,
            owner,
            queue: OnceLock::new(),
        }
    }

    /// Applies `steps`, then releases `release`'s leases, in a transaction shared with whatever
    /// else is queued; returns once committed, with whether the item's guard (if any) held.
    pub(crate) async fn commit(
        &self,
        steps: Vec<Step>,
        release: Option<Release>,
    ) -> Result<bool, ControlError> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(writer(self.store.clone(), self.owner.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        let item = Item {
            steps,
            release,
            reply,
        };
        match queue.send(item) {
            Ok(()) => answer.await.map_err(|_| {
                ControlError::Corrupt("the group-commit writer stopped before answering".into())
            })?,
            // The writer's runtime is gone (a plane used from another runtime): write alone.
            Err(mpsc::error::SendError(item)) => {
                let mut one = apply(&self.store, &self.owner, &[&item]).await?;
                Ok(one.pop().unwrap_or(false))
            }
        }
    }
}

async fn writer(store: Store, owner: String, mut rx: mpsc::UnboundedReceiver<Item>) {
    let mut items = Vec::new();
    while rx.recv_many(&mut items, MAX_BATCH).await > 0 {
        let refs: Vec<&Item> = items.iter().collect();
        match apply(&store, &owner, &refs).await {
            Ok(held) => {
                for (item, held) in items.drain(..).zip(held) {
                    let _ = item.reply.send(Ok(held));
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
                    let result = apply(&store, &owner, &[&item])
                        .await
                        .map(|mut held| held.pop().unwrap_or(false));
                    let _ = item.reply.send(result);
                }
            }
        }
    }
}

fn bind<'q>(
    mut query: Query<'q, sqlx::Any, AnyArguments>,
    args: &[Arg],
) -> Query<'q, sqlx::Any, AnyArguments> {
    for arg in args {
        query = match arg {
            Arg::Int(v) => query.bind(*v),
            Arg::Text(v) => query.bind(v.clone()),
        };
    }
    query
}

async fn run(
    conn: &mut AnyConnection,
    sql: &'static str,
    args: &[Arg],
) -> Result<u64, ControlError> {
    Ok(bind(sqlx::query(sql), args)
        .execute(&mut *conn)
        .await
        .map_err(db("recording a job's outcome"))?
        .rows_affected())
}

/// One transaction for `items`, in order; returns for each whether its guard held.
async fn apply(store: &Store, owner: &str, items: &[&Item]) -> Result<Vec<bool>, ControlError> {
    let mut tx = store
        .begin()
        .await
        .map_err(db("recording a job's outcome"))?;
    let mut held = Vec::with_capacity(items.len());
    let mut audits = Vec::new();
    for item in items {
        let mut ok = true;
        let first_audit = audits.len();
        for step in &item.steps {
            match step {
                Step::Guard(sql, args) => {
                    if run(&mut tx, sql, args).await? != 1 {
                        ok = false;
                        break;
                    }
                }
                Step::Exec(sql, args) => {
                    run(&mut tx, sql, args).await?;
                }
                Step::Audit { .. } => audits.push(step),
            }
        }
        if !ok {
            audits.truncate(first_audit);
        }
        if let Some(release) = &item.release {
            let after = if ok {
                &release.after
            } else {
                &release.after_guard_failed
            };
            release_leases(&mut tx, owner, release, after).await?;
        }
        held.push(ok);
    }
    // The chain's head is locked last and held only for the inserts and the commit.
    if !audits.is_empty() {
        let mut chain = Chain::open(&mut tx).await?;
        for step in audits {
            if let Step::Audit {
                action,
                subject,
                outcome,
                details,
            } = step
            {
                chain
                    .append(
                        &mut tx,
                        AuditEntry {
                            actor: "connector",
                            action,
                            subject,
                            outcome,
                            details: details.clone(),
                        },
                    )
                    .await?;
            }
        }
        chain.close(&mut tx).await?;
    }
    tx.commit().await.map_err(db("recording a job's outcome"))?;
    Ok(held)
}

async fn release_leases(
    conn: &mut AnyConnection,
    owner: &str,
    release: &Release,
    after: &After,
) -> Result<(), ControlError> {
    let (kind, subject) = (release.kind.as_str(), release.subject.as_str());
    match after {
        After::Deleted => {}
        After::Keep => {
            run(
                conn,
                "UPDATE jobs SET lease_owner = NULL, leased_until = NULL WHERE kind = $1 AND subject = $2 AND lease_owner = $3",
                &[kind.into(), subject.into(), owner.into()],
            )
            .await?;
        }
        After::Retry {
            attempts,
            error,
            due_at,
        } => {
            run(
                conn,
                "UPDATE jobs SET attempts = $1, last_error = $2, due_at = $3, lease_owner = NULL, leased_until = NULL WHERE kind = $4 AND subject = $5 AND lease_owner = $6",
                &[
                    (*attempts).into(),
                    error.as_str().into(),
                    (*due_at).into(),
                    kind.into(),
                    subject.into(),
                    owner.into(),
                ],
            )
            .await?;
        }
        After::Reschedule { due_at } => {
            run(
                conn,
                "UPDATE jobs SET attempts = 0, last_error = NULL, due_at = $1, lease_owner = NULL, leased_until = NULL WHERE kind = $2 AND subject = $3 AND lease_owner = $4",
                &[(*due_at).into(), kind.into(), subject.into(), owner.into()],
            )
            .await?;
        }
    }
    if kind != job::DISCOVER {
        run(
            conn,
            "UPDATE grants SET lease_owner = NULL, leased_until = NULL WHERE id = $1 AND lease_owner = $2",
            &[subject.into(), owner.into()],
        )
        .await?;
    }
    Ok(())
}
