//! The job queue: every piece of future work is a row of `jobs` with a due time. Claiming a job
//! leases it and its grant in one transaction and, in the same transaction, makes the status
//! change that announces the work (`Pending → Granting` with the expiry, `Active → Revoking`),
//! so the ledger says what is about to happen before the executor touches a target.
//!
//! Each claim has a lease token of its own (`owner#n`); an outcome is written only while its
//! job still carries that token (see [`super::commit`]), so the work of a lease that ended
//! (another worker or replica took the job over) can never be recorded over the newer work.

use std::fmt;

use apono_core::{GrantSpec, GrantState, GrantStatus};
use serde_json::json;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use super::audit::{AuditEntry, Chain};
use super::gauges::Deltas;
use super::store::Backend;
use super::{IN_CHUNK, Ledger, db, get, marks, transition};
use crate::error::ControlError;
use crate::model::now_ms;
use crate::model::ts;

/// Kinds of scheduled work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum JobKind {
    /// Provision a grant (or extend it).
    Grant,
    /// Revoke a grant at its expiry (or at once).
    Revoke,
    /// Rotate a grant's credentials.
    Rotate,
    /// Delete what a revoked grant left (accounts) after the cleanup period.
    Cleanup,
    /// Discover an integration's resources.
    Discover,
}

impl JobKind {
    const ALL: [Self; 5] = [
        Self::Grant,
        Self::Revoke,
        Self::Rotate,
        Self::Cleanup,
        Self::Discover,
    ];

    /// The stored name.
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Revoke => "revoke",
            Self::Rotate => "rotate",
            Self::Cleanup => "cleanup",
            Self::Discover => "discover",
        }
    }

    fn parse(text: &str) -> Result<Self, ControlError> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| ControlError::Corrupt(format!("unknown job kind {text:?}")))
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A due job.
#[derive(Clone, Debug)]
pub(crate) struct Job {
    pub(crate) kind: JobKind,
    /// A grant id, or an integration name for discovery.
    pub(crate) subject: String,
    /// `integration/resource`: what the per-target limit counts.
    pub(crate) target: String,
    pub(crate) attempts: i64,
    pub(crate) due_at: i64,
}

/// The columns of a [`GrantRow`].
pub(crate) const GRANT_COLUMNS: &str = "id, status, integration, resource_type, resource_id, resource, permission, grantee, duration_secs, expires_at, revoke_requested_at, state";

/// A grant as the scheduler works on it.
#[derive(Clone, Debug)]
pub(crate) struct GrantRow {
    pub(crate) id: String,
    pub(crate) status: GrantStatus,
    pub(crate) integration: String,
    pub(crate) resource_id: String,
    pub(crate) duration_secs: i64,
    pub(crate) expires_at: Option<i64>,
    pub(crate) revoke_requested_at: Option<i64>,
    resource: String,
    permission: String,
    grantee: String,
    state: Option<String>,
}

impl GrantRow {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Self, ControlError> {
        let status: String = get(row, "status")?;
        Ok(Self {
            id: get(row, "id")?,
            status: status.parse()?,
            integration: get(row, "integration")?,
            resource_id: get(row, "resource_id")?,
            duration_secs: get(row, "duration_secs")?,
            expires_at: get(row, "expires_at")?,
            revoke_requested_at: get(row, "revoke_requested_at")?,
            resource: get(row, "resource")?,
            permission: get(row, "permission")?,
            grantee: get(row, "grantee")?,
            state: get(row, "state")?,
        })
    }

    /// The spec the provisioner sees (the expiry as stored, or now).
    pub(crate) fn spec(&self) -> Result<GrantSpec, ControlError> {
        let corrupt = |e: String| ControlError::Corrupt(e);
        Ok(GrantSpec {
            grant_id: apono_core::GrantId::new(self.id.clone())
                .map_err(|e| corrupt(e.to_string()))?,
            grantee: serde_json::from_str(&self.grantee).map_err(|e| corrupt(e.to_string()))?,
            resource: serde_json::from_str(&self.resource).map_err(|e| corrupt(e.to_string()))?,
            permission: apono_core::Permission::new(self.permission.clone()),
            expires_at: ts(self.expires_at.unwrap_or_else(now_ms)),
            custom_parameters: Default::default(),
        })
    }

    /// What the grant's provisioning recorded, if it completed once.
    pub(crate) fn state(&self) -> Result<Option<GrantState>, ControlError> {
        self.state
            .as_deref()
            .map(|s| serde_json::from_str(s).map(GrantState::from_json))
            .transpose()
            .map_err(|e| ControlError::Corrupt(e.to_string()))
    }
}

/// `integration/resource`: the key of the per-target limit.
pub(crate) fn target_of(integration: &str, resource_id: &str) -> String {
    format!("{integration}/{resource_id}")
}

/// Which jobs a worker looks at: by the integration in their target (`integration` or
/// `integration/resource`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum JobScope {
    /// Every job but those of these integrations (the control plane's own scheduler).
    Except(Vec<String>),
    /// Only the jobs of these integrations (an agent's).
    Only(Vec<String>),
}

impl JobScope {
    /// The SQL condition on `target`, its placeholders numbered from `first`, and the values
    /// to bind in order. Only placeholders go into the text.
    fn condition(&self, first: usize) -> (String, Vec<String>) {
        let names = match self {
            Self::Except(names) | Self::Only(names) => names,
        };
        if names.is_empty() {
            return match self {
                Self::Except(_) => (String::from("1 = 1"), Vec::new()),
                Self::Only(_) => (String::from("1 = 0"), Vec::new()),
            };
        }
        let mut terms = Vec::new();
        let mut values = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let (a, b) = (first + 2 * i, first + 2 * i + 1);
            terms.push(format!("target = ${a} OR target LIKE ${b} ESCAPE '!'"));
            values.push(name.clone());
            let escaped: String = name
                .chars()
                .flat_map(|c| match c {
                    '!' | '%' | '_' => vec!['!', c],
                    c => vec![c],
                })
                .collect();
            values.push(format!("{escaped}/%"));
        }
        let any = terms.join(" OR ");
        match self {
            Self::Except(_) => (format!("NOT ({any})"), values),
            Self::Only(_) => (format!("({any})"), values),
        }
    }
}

/// The connector id a lease token names (`<connector id>/<owner>#n`): whose worker holds it.
pub(crate) fn lease_connector(lease: &str) -> &str {
    lease.split_once('/').map_or(lease, |(id, _)| id)
}

/// A job this worker now holds.
#[derive(Debug)]
pub(crate) struct Claimed {
    pub(crate) job: Job,
    /// The lease token every write of the job's outcome is fenced by.
    pub(crate) lease: String,
    /// The grant, as the claim left it (`None` for discovery).
    pub(crate) grant: Option<GrantRow>,
}

/// Creates a job, or moves an existing one to `due_at` (resetting its attempts).
pub(crate) async fn enqueue(
    conn: &mut AnyConnection,
    kind: JobKind,
    subject: &str,
    target: &str,
    due_at: i64,
) -> Result<(), ControlError> {
    sqlx::query(
        "INSERT INTO jobs (kind, subject, target, due_at, attempts, created_at) VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (kind, subject) DO UPDATE SET due_at = excluded.due_at, attempts = 0, last_error = NULL",
    )
    .bind(kind.as_str())
    .bind(subject)
    .bind(target)
    .bind(due_at)
    .bind(now_ms())
    .execute(&mut *conn)
    .await
    .map_err(db("scheduling"))?;
    Ok(())
}

/// Deletes a job (nothing if there is none).
pub(crate) async fn delete(
    conn: &mut AnyConnection,
    kind: JobKind,
    subject: &str,
) -> Result<(), ControlError> {
    sqlx::query("DELETE FROM jobs WHERE kind = $1 AND subject = $2")
        .bind(kind.as_str())
        .bind(subject)
        .execute(&mut *conn)
        .await
        .map_err(db("scheduling"))?;
    Ok(())
}

/// What a claim decided for one job.
enum Admission {
    /// Run it.
    Run,
    /// Run it, once its grant is written `Revoking` with the batch's other revokes.
    Revoke,
    /// Nothing to do: the job row was deleted.
    Dropped,
}

impl Ledger {
    /// Up to `limit` jobs due at `now` and not leased, oldest first, leaving out the jobs of
    /// `busy` targets (those at their limit of actions in flight), so a backlog on one target
    /// never hides the work of the others.
    pub(crate) async fn due_jobs(
        &self,
        now: i64,
        limit: i64,
        busy: &[String],
        scope: &JobScope,
    ) -> Result<Vec<Job>, ControlError> {
        let mut sql = String::from(
            "SELECT kind, subject, target, attempts, due_at FROM jobs WHERE due_at <= $1 AND (leased_until IS NULL OR leased_until < $1)",
        );
        if !busy.is_empty() {
            let marks: Vec<String> = (0..busy.len()).map(|i| format!("${}", i + 3)).collect();
            sql.push_str(&format!(" AND target NOT IN ({})", marks.join(", ")));
        }
        let (condition, values) = scope.condition(busy.len() + 3);
        sql.push_str(&format!(" AND {condition}"));
        sql.push_str(" ORDER BY due_at LIMIT $2");
        // Only placeholders are added to the text; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(now).bind(limit);
        for target in busy {
            query = query.bind(target.clone());
        }
        for value in values {
            query = query.bind(value);
        }
        let rows = query
            .fetch_all(self.store.pool())
            .await
            .map_err(db("reading due jobs"))?;
        rows.iter()
            .map(|r| {
                Ok(Job {
                    kind: JobKind::parse(&get::<String>(r, "kind")?)?,
                    subject: get(r, "subject")?,
                    target: get(r, "target")?,
                    attempts: get(r, "attempts")?,
                    due_at: get(r, "due_at")?,
                })
            })
            .collect()
    }

    /// The earliest due time of a job that is not leased.
    pub(crate) async fn next_due(&self, scope: &JobScope) -> Result<Option<i64>, ControlError> {
        let (condition, values) = scope.condition(2);
        // Only placeholders are added to the text; every value is bound.
        let mut query = sqlx::query_as::<_, (Option<i64>,)>(sqlx::AssertSqlSafe(format!(
            "SELECT MIN(due_at) FROM jobs WHERE (leased_until IS NULL OR leased_until < $1) AND {condition}"
        )))
        .bind(now_ms());
        for value in values {
            query = query.bind(value);
        }
        let row = query
            .fetch_one(self.store.pool())
            .await
            .map_err(db("reading the next due time"))?;
        Ok(row.0)
    }

    /// Voids every lease (SQLite at start-up: one process, so leases left by a killed
    /// predecessor are void and their jobs due at once).
    pub(crate) async fn void_leases(&self) -> Result<(), ControlError> {
        let mut tx = self.store.begin().await.map_err(db("releasing leases"))?;
        sqlx::query("UPDATE jobs SET lease_owner = NULL, leased_until = NULL, due_at = $1 WHERE lease_owner IS NOT NULL")
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db("releasing leases"))?;
        sqlx::query(
            "UPDATE grants SET lease_owner = NULL, leased_until = NULL WHERE lease_owner IS NOT NULL",
        )
        .execute(&mut *tx)
        .await
        .map_err(db("releasing leases"))?;
        tx.commit().await.map_err(db("releasing leases"))
    }

    /// Leases `jobs` (and the grants they work on, so no two actions on one grant ever run at
    /// once, here or on another replica) until `until`, and makes each job's opening status
    /// change, all in one transaction, a few set-based statements for the whole batch. Returns
    /// what was claimed, in the order given; a job another worker holds, or whose grant it
    /// holds, is skipped. The lease token is this replica's own, or, for an agent of another
    /// connector, one naming that connector (`for_connector`).
    pub(crate) async fn claim(
        &self,
        jobs: Vec<Job>,
        now: i64,
        until: i64,
        for_connector: Option<&str>,
    ) -> Result<Vec<Claimed>, ControlError> {
        use std::collections::{BTreeMap, HashMap, HashSet};
        let lease = match for_connector {
            Some(id) => self.agent_lease(id),
            None => self.new_lease(),
        };
        let keys = self.keys().await?;
        // One action per grant per batch.
        let mut seen = HashSet::new();
        let wanted: Vec<usize> = (0..jobs.len())
            .filter(|&i| jobs[i].kind == JobKind::Discover || seen.insert(jobs[i].subject.clone()))
            .collect();
        let mut by_kind: BTreeMap<JobKind, Vec<&str>> = BTreeMap::new();
        for &i in &wanted {
            by_kind
                .entry(jobs[i].kind)
                .or_default()
                .push(jobs[i].subject.as_str());
        }
        let postgres = self.store.backend() == Backend::Postgres;
        let mut tx = self.store.begin().await.map_err(db("claiming jobs"))?;
        // 1. The jobs. The due time moves to the lease's end: if this worker dies, the job is
        //    due again then, and scans for due work skip leased rows by index.
        let mut leased: HashSet<(JobKind, String)> = HashSet::new();
        for (kind, subjects) in &by_kind {
            for chunk in subjects.chunks(IN_CHUNK) {
                // `+due_at`: the primary key finds the rows; an index on the due time would scan
                // every due job.
                let due = format!(
                    "kind = $3 AND +due_at <= $4 AND (leased_until IS NULL OR leased_until < $4) AND subject IN ({})",
                    marks(5, chunk.len())
                );
                let sql = format!(
                    "UPDATE jobs SET lease_owner = $1, leased_until = $2, due_at = $2 WHERE kind = $3 AND {} RETURNING subject",
                    skip_locked(postgres, "jobs", "subject", &due)
                );
                let mut query = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql))
                    .bind(lease.clone())
                    .bind(until)
                    .bind(kind.as_str())
                    .bind(now);
                for s in chunk {
                    query = query.bind((*s).to_owned());
                }
                for (subject,) in query
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db("claiming jobs"))?
                {
                    leased.insert((*kind, subject));
                }
            }
        }
        // 2. Their grants.
        let grant_ids: Vec<String> = wanted
            .iter()
            .filter(|&&i| {
                jobs[i].kind != JobKind::Discover
                    && leased.contains(&(jobs[i].kind, jobs[i].subject.clone()))
            })
            .map(|&i| jobs[i].subject.clone())
            .collect();
        let mut grants: HashMap<String, GrantRow> = HashMap::new();
        for chunk in grant_ids.chunks(IN_CHUNK) {
            let free = format!(
                "(leased_until IS NULL OR leased_until < $3) AND id IN ({})",
                marks(4, chunk.len())
            );
            let sql = format!(
                "UPDATE grants SET lease_owner = $1, leased_until = $2 WHERE {} RETURNING {GRANT_COLUMNS}",
                skip_locked(postgres, "grants", "id", &free)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(lease.clone())
                .bind(until)
                .bind(now);
            for id in chunk {
                query = query.bind(id.clone());
            }
            for row in query
                .fetch_all(&mut *tx)
                .await
                .map_err(db("claiming grants"))?
            {
                let grant = GrantRow::from_row(&row)?;
                grants.insert(grant.id.clone(), grant);
            }
        }
        // 3. The opening status changes: revokes of live grants in one statement, the rest
        //    one by one.
        let mut deltas = Deltas::default();
        let mut audits: Vec<(&'static str, String, &'static str, serde_json::Value)> = Vec::new();
        let mut got: Vec<Option<Option<GrantRow>>> = vec![None; jobs.len()];
        let mut revoking: Vec<usize> = Vec::new();
        for &i in &wanted {
            let job = &jobs[i];
            if !leased.contains(&(job.kind, job.subject.clone())) {
                continue;
            }
            if job.kind == JobKind::Discover {
                got[i] = Some(None);
                continue;
            }
            let Some(mut grant) = grants.remove(&job.subject) else {
                let exists: Option<(String,)> =
                    sqlx::query_as("SELECT id FROM grants WHERE id = $1")
                        .bind(&job.subject)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db("claiming a grant"))?;
                if exists.is_none() {
                    delete(&mut tx, job.kind, &job.subject).await?;
                } else {
                    // Another action on this grant is running: the job stays as it was, to be
                    // tried again later.
                    sqlx::query("UPDATE jobs SET lease_owner = NULL, leased_until = NULL, due_at = $1 WHERE kind = $2 AND subject = $3 AND lease_owner = $4")
                        .bind(job.due_at)
                        .bind(job.kind.as_str())
                        .bind(&job.subject)
                        .bind(&lease)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("claiming a job"))?;
                }
                continue;
            };
            match admit(&mut tx, &mut deltas, &mut audits, job, &mut grant, now).await? {
                Admission::Run => got[i] = Some(Some(grant)),
                Admission::Revoke => {
                    revoking.push(i);
                    got[i] = Some(Some(grant));
                }
                Admission::Dropped => {
                    sqlx::query("UPDATE grants SET lease_owner = NULL, leased_until = NULL WHERE id = $1 AND lease_owner = $2")
                        .bind(&job.subject)
                        .bind(&lease)
                        .execute(&mut *tx)
                        .await
                        .map_err(db("claiming a grant"))?;
                }
            }
        }
        for chunk in revoking.chunks(IN_CHUNK) {
            let sql = format!(
                "UPDATE grants SET status = $1, updated_at = $2 WHERE status IN ($3, $4) AND id IN ({})",
                marks(5, chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(GrantStatus::Revoking.as_str())
                .bind(now)
                .bind(GrantStatus::Active.as_str())
                .bind(GrantStatus::RevokeFailed.as_str());
            for &i in chunk {
                query = query.bind(jobs[i].subject.clone());
            }
            query
                .execute(&mut *tx)
                .await
                .map_err(db("claiming grants"))?;
        }
        // The audit head, then the status counters: the order every transaction takes them in.
        if !audits.is_empty() {
            let entries: Vec<AuditEntry<'_>> = audits
                .iter()
                .map(|(action, subject, outcome, details)| {
                    let mut details = details.clone();
                    if let serde_json::Value::Object(map) = &mut details {
                        map.insert("connector".into(), lease_connector(&lease).into());
                    }
                    AuditEntry {
                        actor: "connector",
                        action,
                        subject,
                        outcome,
                        details,
                    }
                })
                .collect();
            let mut chain = Chain::open(&mut tx, &keys).await?;
            chain.append_all(&mut tx, &entries).await?;
            chain.close(&mut tx).await?;
        }
        deltas.flush(&mut tx).await?;
        tx.commit().await.map_err(db("claiming jobs"))?;
        Ok(jobs
            .into_iter()
            .zip(got)
            .filter_map(|(job, got)| {
                got.map(|grant| Claimed {
                    job,
                    lease: lease.clone(),
                    grant,
                })
            })
            .collect())
    }
}

/// The `WHERE` clause of a claim's `UPDATE` of `table` over the rows matching `filter`.
///
/// On PostgreSQL the rows are picked by a sub-select `FOR UPDATE SKIP LOCKED`: a claimer never
/// waits for a row another transaction holds (another replica's claim, or an outcome being
/// recorded), it leaves that row to its holder. Without it, two replicas' claims over
/// overlapping due rows lock them in different orders (each statement's plan picks its own
/// scan) and wait for each other until PostgreSQL's deadlock detector aborts one after
/// `deadlock_timeout` (1 s): the three-replica revoke lag of docs/benchmarks.md. SQLite has one
/// writer at a time, so the filter is used as it is.
fn skip_locked(postgres: bool, table: &str, key: &str, filter: &str) -> String {
    if postgres {
        format!("{key} IN (SELECT {key} FROM {table} WHERE {filter} FOR UPDATE SKIP LOCKED)")
    } else {
        filter.to_owned()
    }
}

impl Ledger {
    /// The job `kind`/`subject` as claimed under `lease`, if that lease still holds it (and
    /// its grant): what an agent's report is concluded against. `None` when the lease ended,
    /// whether or not another worker has taken the job since: a late outcome is dropped and the
    /// job, due again at the lease's end, is handed out anew (every action is idempotent).
    pub(crate) async fn held(
        &self,
        kind: &str,
        subject: &str,
        lease: &str,
    ) -> Result<Option<Claimed>, ControlError> {
        let Ok(kind) = JobKind::parse(kind) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT subject, target, attempts, due_at FROM jobs WHERE kind = $1 AND subject = $2 AND lease_owner = $3 AND leased_until >= $4",
        )
        .bind(kind.as_str())
        .bind(subject)
        .bind(lease)
        .bind(now_ms())
        .fetch_optional(self.store.pool())
        .await
        .map_err(db("reading a leased job"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let job = Job {
            kind,
            subject: get(&row, "subject")?,
            target: get(&row, "target")?,
            attempts: get(&row, "attempts")?,
            due_at: get(&row, "due_at")?,
        };
        let grant = if kind == JobKind::Discover {
            None
        } else {
            let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {GRANT_COLUMNS} FROM grants WHERE id = $1 AND lease_owner = $2"
            )))
            .bind(subject)
            .bind(lease)
            .fetch_optional(self.store.pool())
            .await
            .map_err(db("reading a leased grant"))?;
            match row {
                Some(row) => Some(GrantRow::from_row(&row)?),
                None => return Ok(None),
            }
        };
        Ok(Some(Claimed {
            job,
            lease: lease.to_owned(),
            grant,
        }))
    }

    /// Makes the jobs in `scope` that wait for a backoff after failing with `error` due now
    /// (a connector's agent is polling: what failed for want of it need not wait).
    pub(crate) async fn hasten(&self, scope: &JobScope, error: &str) -> Result<(), ControlError> {
        let (condition, values) = scope.condition(3);
        let mut tx = self.store.begin().await.map_err(db("hastening jobs"))?;
        // Only placeholders are added to the text; every value is bound.
        let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET due_at = $1 WHERE last_error = $2 AND due_at > $1 AND (leased_until IS NULL OR leased_until < $1) AND {condition}"
        )))
        .bind(now_ms())
        .bind(error);
        for value in values {
            query = query.bind(value);
        }
        query
            .execute(&mut *tx)
            .await
            .map_err(db("hastening jobs"))?;
        tx.commit().await.map_err(db("hastening jobs"))
    }
}

/// The opening status change of a claimed job on its grant, or why it has nothing to do.
async fn admit(
    tx: &mut AnyConnection,
    deltas: &mut Deltas,
    audits: &mut Vec<(&'static str, String, &'static str, serde_json::Value)>,
    job: &Job,
    grant: &mut GrantRow,
    now: i64,
) -> Result<Admission, ControlError> {
    use GrantStatus::{Active, Failed, Granting, Pending, RevokeFailed, Revoked, Revoking};
    let id = grant.id.clone();
    match (job.kind, grant.status) {
        (JobKind::Grant, Pending) if grant.revoke_requested_at.is_some() => {
            // Withdrawn before the target was touched.
            transition(Pending, Failed)?;
            let n = sqlx::query("UPDATE grants SET status = $1, last_error = $2, updated_at = $3 WHERE id = $4 AND status = $5")
                .bind(Failed.as_str())
                .bind("revoked before it was granted")
                .bind(now)
                .bind(&id)
                .bind(Pending.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db("claiming a grant"))?
                .rows_affected();
            deltas.moved(Pending, Failed, n);
            delete(tx, JobKind::Grant, &id).await?;
            Ok(Admission::Dropped)
        }
        (JobKind::Grant, Pending) => {
            // Written down before the target is touched: Granting, with its expiry.
            transition(Pending, Granting)?;
            let expires_at = now + grant.duration_secs * 1000;
            let n = sqlx::query("UPDATE grants SET status = $1, expires_at = $2, updated_at = $3 WHERE id = $4 AND status = $5")
                .bind(Granting.as_str())
                .bind(expires_at)
                .bind(now)
                .bind(&id)
                .bind(Pending.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db("claiming a grant"))?
                .rows_affected();
            deltas.moved(Pending, Granting, n);
            grant.status = Granting;
            grant.expires_at = Some(expires_at);
            audits.push((
                "grant.started",
                id,
                "ok",
                json!({ "integration": grant.integration, "resource_id": grant.resource_id }),
            ));
            Ok(Admission::Run)
        }
        (JobKind::Grant, Granting | Active) => Ok(Admission::Run),
        (JobKind::Revoke, Active | RevokeFailed) => {
            // Counted and audited here; the status itself is written for the whole batch in
            // one statement by `claim`.
            transition(grant.status, Revoking)?;
            deltas.moved(grant.status, Revoking, 1);
            grant.status = Revoking;
            audits.push((
                "revoke.started",
                id,
                "ok",
                json!({ "attempt": job.attempts + 1 }),
            ));
            Ok(Admission::Revoke)
        }
        (JobKind::Revoke, Revoking) => Ok(Admission::Run),
        (JobKind::Rotate, Active) => Ok(Admission::Run),
        (JobKind::Cleanup, Revoked) => Ok(Admission::Run),
        (JobKind::Cleanup, _) => {
            delete(tx, job.kind, &id).await?;
            audits.push(("cleanup", id, "skipped", json!({})));
            Ok(Admission::Dropped)
        }
        // Revoke of a Pending or Granting grant: the grant job revokes it when it completes.
        // Anything else has nothing left to do.
        _ => {
            delete(tx, job.kind, &id).await?;
            Ok(Admission::Dropped)
        }
    }
}
