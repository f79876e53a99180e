//! The ledger: the one owner of the store. Every SQL statement of the control plane is in this
//! module; every grant status change is typed, checked against [`GrantStatus::can_become`],
//! counted for `/metrics` and audited in the transaction that makes it.
//!
//! * [`store`]: the connection pool and migrations (SQLite or PostgreSQL).
//! * [`audit`]: the hash-chained audit log.
//! * [`jobs`]: the job queue and claims (leases, fencing tokens, the opening status change).
//! * [`commit`]: group commit of the scheduler's outcomes.
//! * [`connectors`]: the agents' credentials and when each connector was last seen.
//! * [`gauges`]: status counters for `/metrics`.
//! * [`outbox`]: the notifications each commit calls for, and their delivery leases.
//!
//! Callers pass decisions in (made by [`crate::policy`] from the configuration); the ledger
//! makes them durable, and decides nothing about who may do what.

pub mod audit;
pub(crate) mod commit;
pub(crate) mod connectors;
pub(crate) mod gauges;
pub(crate) mod jobs;
pub(crate) mod outbox;
mod rows;
pub(crate) mod sso;
pub(crate) mod store;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use apono_core::{GrantStatus, Grantee, Inventory, RequestStatus, Resource};
use serde_json::{Value, json};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use crate::error::ControlError;
use crate::keys::{Keyring, Keys};
use crate::model::now_ms;
use crate::model::{AccessRequest, AccessSession, ApiToken, RequestApproval, ts};
use crate::policy::AllOfStep;
use audit::AuditEntry;
use commit::{Applied, Change, Committer, Release};
use gauges::{DUE_CAP, Deltas, Gauges};
use jobs::{JobKind, target_of};
use rows::{REQUEST_COLUMNS, SESSION_COLUMNS};
use store::{Store, WriteTx};

/// A store error, with what was being done.
pub(crate) fn db(context: &'static str) -> impl Fn(sqlx::Error) -> ControlError {
    move |e| ControlError::store(context, e)
}

/// One column of a row.
pub(crate) fn get<'r, T>(row: &'r AnyRow, column: &str) -> Result<T, ControlError>
where
    T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    row.try_get(column)
        .map_err(|e| ControlError::store("decoding a row", e))
}

/// Refuses a status change the grant state machine does not allow (a bug, never written).
pub(crate) fn transition(from: GrantStatus, to: GrantStatus) -> Result<(), ControlError> {
    if from == to || from.can_become(to) {
        Ok(())
    } else {
        Err(ControlError::Corrupt(format!(
            "a grant cannot move from {from} to {to}"
        )))
    }
}

/// `$first, $first+1, …`: `n` placeholders for an `IN (…)` list or a `VALUES` row. Only
/// placeholders ever go into SQL text this way; every value is bound.
pub(crate) fn marks(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The most values one `IN (…)` list binds.
pub(crate) const IN_CHUNK: usize = 500;

/// A random id with `prefix` (`req_`, `grt_`, `tok_`).
pub(crate) fn new_id(prefix: &str) -> String {
    let bytes: [u8; 10] = rand::random();
    format!(
        "{prefix}{}",
        data_encoding::BASE32_NOPAD
            .encode(&bytes)
            .to_ascii_lowercase()
    )
}

/// The statuses in which a grant is held (or about to be), for finding one to extend.
const HELD: [GrantStatus; 3] = [
    GrantStatus::Pending,
    GrantStatus::Granting,
    GrantStatus::Active,
];

/// What an approved request grants: one grant per resource, for the requester.
#[derive(Clone, Debug)]
pub(crate) struct GrantPlan {
    pub(crate) grantee: Grantee,
    pub(crate) account: String,
    pub(crate) integration: String,
    pub(crate) resource_type: String,
    pub(crate) permission: String,
    pub(crate) resources: Vec<Resource>,
    pub(crate) duration_secs: i64,
}

/// A new access request, as recorded.
#[derive(Clone, Debug)]
pub(crate) struct RequestRecord<'a> {
    pub(crate) requester: &'a str,
    pub(crate) flow: &'a str,
    pub(crate) integration: &'a str,
    pub(crate) resource_type: &'a str,
    pub(crate) resource_ids: &'a [String],
    pub(crate) permission: &'a str,
    pub(crate) justification: &'a str,
    pub(crate) duration_secs: i64,
}

/// How a decided request moves.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Decision {
    Approved,
    Rejected,
}

/// Which requests a list reads.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RequestFilter<'a> {
    By(&'a str),
    Pending,
    All,
}

/// A write transaction with its status-counter changes, flushed at commit.
pub(crate) struct Tx {
    tx: WriteTx,
    deltas: Deltas,
    keys: std::sync::Arc<Keys>,
    /// The audit records appended, for the notifications outbox (only when one is routed).
    told: Vec<(String, String, Value)>,
    routes: std::sync::Arc<outbox::Routes>,
}

impl Tx {
    /// Writes the status counters last (after any audit record, as every transaction does:
    /// the audit head, then the counters) and commits.
    async fn commit(mut self, context: &'static str) -> Result<(), ControlError> {
        let told: Vec<outbox::Told<'_>> = self
            .told
            .iter()
            .map(|(action, subject, details)| outbox::Told {
                action,
                subject,
                details,
            })
            .collect();
        let queued = outbox::enqueue(&mut self.tx, &self.routes, &told).await?;
        self.deltas.flush(&mut self.tx).await?;
        self.tx.commit().await.map_err(db(context))?;
        if queued > 0 {
            self.routes.ring();
        }
        Ok(())
    }

    fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// Appends one audit record in this transaction.
    async fn audit(
        &mut self,
        actor: &str,
        action: &str,
        subject: &str,
        outcome: &str,
        details: Value,
    ) -> Result<(), ControlError> {
        if !self.routes.is_empty() {
            self.told
                .push((action.to_owned(), subject.to_owned(), details.clone()));
        }
        audit::append(
            &mut self.tx,
            &self.keys,
            AuditEntry {
                actor,
                action,
                subject,
                outcome,
                details,
            },
        )
        .await
    }
}

/// The one owner of the store.
#[derive(Debug)]
pub(crate) struct Ledger {
    store: Store,
    owner: String,
    leases: AtomicU64,
    committer: Committer,
    keyring: std::sync::Arc<Keyring>,
    routes: std::sync::Arc<outbox::Routes>,
}

impl Ledger {
    /// A ledger over `store`; `owner` names this process in leases; `keyring` holds the keys
    /// of the audit chain and of sealed credentials; `routes` say which events are queued
    /// for which notification channels.
    pub(crate) fn new(
        store: Store,
        owner: String,
        keyring: std::sync::Arc<Keyring>,
        routes: std::sync::Arc<outbox::Routes>,
    ) -> Self {
        Self {
            committer: Committer::new(store.clone(), keyring.clone(), routes.clone()),
            store,
            owner,
            leases: AtomicU64::new(0),
            keyring,
            routes,
        }
    }

    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The keys (loaded on first use).
    pub(crate) async fn keys(&self) -> Result<std::sync::Arc<Keys>, ControlError> {
        self.keyring.get().await
    }

    /// A lease token for an agent of connector `id` (`id/agent-<random>#n`): the connector
    /// it names is the only one whose agents may report on it.
    fn agent_lease(&self, id: &str) -> String {
        format!(
            "{id}/{}#{}",
            new_id("agent-"),
            self.leases.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// A lease token no other claim has (`owner#n`).
    fn new_lease(&self) -> String {
        format!(
            "{}#{}",
            self.owner,
            self.leases.fetch_add(1, Ordering::Relaxed)
        )
    }

    async fn begin(&self, context: &'static str) -> Result<Tx, ControlError> {
        let keys = self.keys().await?;
        Ok(Tx {
            tx: self.store.begin().await.map_err(db(context))?,
            deltas: Deltas::default(),
            keys,
            told: Vec::new(),
            routes: self.routes.clone(),
        })
    }

    /// Records a finished job's outcome (group commit).
    pub(crate) async fn record(
        &self,
        change: Change,
        release: Release,
    ) -> Result<Applied, ControlError> {
        self.committer.commit(change, release).await
    }

    /// Appends one audit record on its own.
    pub(crate) async fn audit(&self, entry: AuditEntry<'_>) -> Result<(), ControlError> {
        let mut tx = self.begin("auditing").await?;
        let keys = tx.keys.clone();
        audit::append(tx.conn(), &keys, entry).await?;
        tx.commit("auditing").await
    }

    // ------------------------------------------------------------------ start-up

    /// Records the configuration load, makes sure every integration has a discovery job, and
    /// revokes every grant (and withdraws every pending request) of a person no longer in the
    /// configuration.
    pub(crate) async fn bootstrap(
        &self,
        connector: &str,
        summary: Value,
        integrations: &[&str],
        is_user: impl Fn(&str) -> bool,
    ) -> Result<(), ControlError> {
        let mut tx = self.begin("bootstrap").await?;
        tx.audit("connector", "config.loaded", connector, "ok", summary)
            .await?;
        let now = now_ms();
        for name in integrations {
            jobs::enqueue(tx.conn(), JobKind::Discover, name, name, now).await?;
        }
        let live: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, grantee_email FROM grants WHERE status IN ($1, $2, $3, $4, $5) AND revoke_requested_at IS NULL",
        )
        .bind(GrantStatus::Pending.as_str())
        .bind(GrantStatus::Granting.as_str())
        .bind(GrantStatus::Active.as_str())
        .bind(GrantStatus::Revoking.as_str())
        .bind(GrantStatus::RevokeFailed.as_str())
        .fetch_all(tx.conn())
        .await
        .map_err(db("bootstrap"))?;
        for (id, email) in live.iter().filter(|(_, e)| !is_user(e)) {
            request_grant_revoke(&mut tx, id, "connector", now).await?;
            tx.audit("connector", "grant.revoked", id, "ok", json!({ "reason": "the grantee is no longer a user in the configuration", "grantee": email }))
            .await?;
        }
        let pending: Vec<(String, String)> =
            sqlx::query_as("SELECT id, requester FROM requests WHERE status = $1")
                .bind(RequestStatus::Pending.as_str())
                .fetch_all(tx.conn())
                .await
                .map_err(db("bootstrap"))?;
        for (id, requester) in pending.iter().filter(|(_, r)| !is_user(r)) {
            sqlx::query("UPDATE requests SET status = $1, decided_by = 'connector', updated_at = $2 WHERE id = $3 AND status = $4")
                .bind(RequestStatus::Revoked.as_str())
                .bind(now)
                .bind(id)
                .bind(RequestStatus::Pending.as_str())
                .execute(tx.conn())
                .await
                .map_err(db("bootstrap"))?;
            tx.audit("connector", "request.revoked", id, "ok", json!({ "reason": "the requester is no longer a user in the configuration", "requester": requester }))
            .await?;
        }
        tx.commit("bootstrap").await
    }

    // ------------------------------------------------------------------ tokens

    /// Stores a token's hash for `email` with a name and an expiry (audited by `actor`);
    /// returns it as listed.
    pub(crate) async fn insert_token(
        &self,
        actor: &str,
        email: &str,
        name: &str,
        hash: &str,
        expires_at: i64,
    ) -> Result<ApiToken, ControlError> {
        let context = "creating a token";
        let id = new_id("tok_");
        let now = now_ms();
        let mut tx = self.begin(context).await?;
        sqlx::query(
            "INSERT INTO tokens (id, user_email, token_hash, created_at, name, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(email)
        .bind(hash)
        .bind(now)
        .bind(name)
        .bind(expires_at)
        .execute(tx.conn())
        .await
        .map_err(db(context))?;
        tx.audit(
            actor,
            "token.created",
            &id,
            "ok",
            json!({ "user": email, "name": name, "expires_at": ts(expires_at) }),
        )
        .await?;
        tx.commit(context).await?;
        Ok(ApiToken {
            id,
            user: email.to_owned(),
            name: name.to_owned(),
            status: "active".into(),
            created_at: ts(now),
            expires_at: ts(expires_at),
            last_used_at: None,
            revoked_at: None,
            revoked_by: None,
        })
    }

    /// The live token with this hash: `(id, email)`. Revoked and expired tokens are not found;
    /// a token from before expiries existed ends `legacy_max_ms` after its creation. Read
    /// from the database at every request, so a revoke on any replica holds at the next one.
    pub(crate) async fn token(
        &self,
        hash: &str,
        legacy_max_ms: i64,
    ) -> Result<Option<(String, String)>, ControlError> {
        let now = now_ms();
        sqlx::query_as(
            "SELECT id, user_email FROM tokens WHERE token_hash = $1 AND revoked_at IS NULL AND (expires_at > $2 OR (expires_at IS NULL AND created_at > $3))",
        )
        .bind(hash)
        .bind(now)
        .bind(now - legacy_max_ms)
        .fetch_optional(self.store.pool())
        .await
        .map_err(db("checking a token"))
    }

    /// Tokens, newest first: of `email`, or everyone's.
    pub(crate) async fn tokens(
        &self,
        email: Option<&str>,
        legacy_max_ms: i64,
    ) -> Result<Vec<ApiToken>, ControlError> {
        const COLUMNS: &str =
            "id, user_email, name, created_at, expires_at, last_used_at, revoked_at, revoked_by";
        let rows = match email {
            Some(email) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM tokens WHERE LOWER(user_email) = LOWER($1) ORDER BY created_at DESC, id"
            )))
            .bind(email)
            .fetch_all(self.store.pool())
            .await,
            None => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM tokens ORDER BY created_at DESC, id"
            )))
            .fetch_all(self.store.pool())
            .await,
        }
        .map_err(db("listing tokens"))?;
        let now = now_ms();
        rows.iter()
            .map(|row| {
                let created_at: i64 = get(row, "created_at")?;
                let expires_at =
                    get::<Option<i64>>(row, "expires_at")?.unwrap_or(created_at + legacy_max_ms);
                let revoked_at: Option<i64> = get(row, "revoked_at")?;
                let status = if revoked_at.is_some() {
                    "revoked"
                } else if expires_at <= now {
                    "expired"
                } else {
                    "active"
                };
                Ok(ApiToken {
                    id: get(row, "id")?,
                    user: get(row, "user_email")?,
                    name: get::<Option<String>>(row, "name")?.unwrap_or_default(),
                    status: status.into(),
                    created_at: ts(created_at),
                    expires_at: ts(expires_at),
                    last_used_at: get::<Option<i64>>(row, "last_used_at")?.map(ts),
                    revoked_at: revoked_at.map(ts),
                    revoked_by: get(row, "revoked_by")?,
                })
            })
            .collect()
    }

    /// Revokes token `id` if `may(owner)` allows (audited; a refusal is the caller's to
    /// audit). Revoking a revoked token changes nothing. Returns the owner, or `None` when
    /// there is no such token.
    pub(crate) async fn revoke_token(
        &self,
        id: &str,
        actor: &str,
        may: impl FnOnce(&str) -> Result<(), ControlError>,
    ) -> Result<Option<String>, ControlError> {
        let context = "revoking a token";
        let mut tx = self.begin(context).await?;
        let owner: Option<(String,)> = sqlx::query_as(
            "UPDATE tokens SET revoked_at = revoked_at WHERE id = $1 RETURNING user_email",
        )
        .bind(id)
        .fetch_optional(tx.conn())
        .await
        .map_err(db(context))?;
        let Some((owner,)) = owner else {
            return Ok(None);
        };
        may(&owner)?;
        let changed = sqlx::query(
            "UPDATE tokens SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(actor)
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db(context))?
        .rows_affected();
        if changed == 1 {
            tx.audit(actor, "token.revoked", id, "ok", json!({ "user": owner }))
                .await?;
        }
        tx.commit(context).await?;
        Ok(Some(owner))
    }

    /// Records that token `id` was used (audited).
    pub(crate) async fn token_used(&self, id: &str, email: &str) -> Result<(), ControlError> {
        let mut tx = self.begin("recording token use").await?;
        sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(db("recording token use"))?;
        tx.audit(email, "token.used", id, "ok", json!({})).await?;
        tx.commit("recording token use").await
    }

    // ------------------------------------------------------------------ inventory

    /// Every stored inventory, by integration.
    pub(crate) async fn inventory(&self) -> Result<BTreeMap<String, Inventory>, ControlError> {
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT integration, body FROM inventory")
            .fetch_all(self.store.pool())
            .await
            .map_err(db("reading the inventory"))?;
        rows.into_iter()
            .map(|(name, body)| {
                serde_json::from_str(&body)
                    .map(|inv| (name, inv))
                    .map_err(|e| ControlError::Corrupt(e.to_string()))
            })
            .collect()
    }

    // ------------------------------------------------------------------ requests

    /// The newest grant `email` holds (or is about to) for this target and permission.
    pub(crate) async fn held_grant(
        &self,
        email: &str,
        integration: &str,
        resource_type: &str,
        resource_id: &str,
        permission: &str,
    ) -> Result<Option<String>, ControlError> {
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(db("looking for held grants"))?;
        Ok(held(
            &mut conn,
            email,
            integration,
            resource_type,
            resource_id,
            permission,
        )
        .await?
        .map(|h| h.0))
    }

    /// Records a request (`Pending`), or, with `auto`, an automatically approved one whose
    /// grants start at once. Returns its id.
    pub(crate) async fn create_request(
        &self,
        record: &RequestRecord<'_>,
        details: Value,
        auto: Option<&GrantPlan>,
    ) -> Result<String, ControlError> {
        let id = new_id("req_");
        let now = now_ms();
        let mut tx = self.begin("creating a request").await?;
        sqlx::query(
            "INSERT INTO requests (id, requester, flow, integration, resource_type, resource_ids, permission, justification, duration_secs, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
        )
        .bind(&id)
        .bind(record.requester)
        .bind(record.flow)
        .bind(record.integration)
        .bind(record.resource_type)
        .bind(serde_json::to_string(record.resource_ids).unwrap_or_default())
        .bind(record.permission)
        .bind(record.justification)
        .bind(record.duration_secs)
        .bind(RequestStatus::Pending.as_str())
        .bind(now)
        .execute(tx.conn())
        .await
        .map_err(db("creating a request"))?;
        tx.audit(record.requester, "request.created", &id, "ok", details)
            .await?;
        if let Some(plan) = auto {
            sqlx::query("UPDATE requests SET status = $1, decided_by = 'connector' WHERE id = $2")
                .bind(RequestStatus::Granting.as_str())
                .bind(&id)
                .execute(tx.conn())
                .await
                .map_err(db("creating a request"))?;
            tx.audit(
                "connector",
                "request.approved",
                &id,
                "ok",
                json!({ "automatic": true }),
            )
            .await?;
            start_grants(&mut tx, &id, plan).await?;
        }
        tx.commit("creating a request").await?;
        Ok(id)
    }

    /// Approves or rejects request `id`, which must still be `Pending`; an approval starts
    /// `plan`'s grants in the same transaction.
    pub(crate) async fn decide(
        &self,
        id: &str,
        actor: &str,
        decision: Decision,
        reason: Option<&str>,
        plan: Option<&GrantPlan>,
    ) -> Result<(), ControlError> {
        let context = match decision {
            Decision::Approved => "approving",
            Decision::Rejected => "rejecting",
        };
        let mut tx = self.begin(context).await?;
        decide_pending(&mut tx, id, actor, decision, reason, None).await?;
        if let (Decision::Approved, Some(plan)) = (decision, plan) {
            // The one approval an `any_of` flow needs, listed like `all_of` approvals.
            sqlx::query("INSERT INTO request_approvals (request_id, approver, decided_at) VALUES ($1, $2, $3) ON CONFLICT (request_id, approver) DO NOTHING")
                .bind(id)
                .bind(actor)
                .bind(now_ms())
                .execute(tx.conn())
                .await
                .map_err(db(context))?;
            start_grants(&mut tx, id, plan).await?;
        }
        tx.commit(context).await
    }

    /// Records `actor`'s approval of an `all_of` request. The request row is locked first
    /// (PostgreSQL: concurrent approvers queue on it, so the last one always sees every other
    /// approval); `step` decides from the approvals already given whether this one completes
    /// the request (it is then approved and `plan`'s grants start) or is only recorded.
    pub(crate) async fn approve_all_of(
        &self,
        id: &str,
        actor: &str,
        reason: Option<&str>,
        plan: &GrantPlan,
        step: impl FnOnce(&[String]) -> Result<AllOfStep, ControlError>,
    ) -> Result<bool, ControlError> {
        let now = now_ms();
        let mut tx = self.begin("approving").await?;
        let status = lock_request(&mut tx, id).await?;
        if status != RequestStatus::Pending.as_str() {
            return Err(ControlError::Conflict(format!(
                "request is {status}, not Pending"
            )));
        }
        let given: Vec<String> = approvals_of(tx.conn(), id)
            .await?
            .into_iter()
            .map(|a| a.approver)
            .collect();
        let step = step(&given)?;
        sqlx::query(
            "INSERT INTO request_approvals (request_id, approver, decided_at) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(actor)
        .bind(now)
        .execute(tx.conn())
        .await
        .map_err(db("approving"))?;
        let complete = match step {
            AllOfStep::Completes(emails) => {
                decide_pending(
                    &mut tx,
                    id,
                    actor,
                    Decision::Approved,
                    reason,
                    Some(&emails),
                )
                .await?;
                start_grants(&mut tx, id, plan).await?;
                true
            }
            AllOfStep::Recorded(details) => {
                tx.audit(actor, "request.approval_recorded", id, "ok", details)
                    .await?;
                false
            }
        };
        tx.commit("approving").await?;
        Ok(complete)
    }

    /// Revokes request `id` as `actor`: decided inside one transaction on the locked request
    /// row, so it races nothing. A `Pending` request is withdrawn; otherwise every session it
    /// holds is revoked now (a grant not yet started is never started; one being granted is
    /// revoked as soon as it completes). `may` checks the caller against the requester.
    pub(crate) async fn revoke_request(
        &self,
        id: &str,
        actor: &str,
        may: impl FnOnce(&str) -> Result<(), ControlError>,
    ) -> Result<(), ControlError> {
        let now = now_ms();
        let mut tx = self.begin("revoking").await?;
        let (status, requester) = lock_request_with_requester(&mut tx, id).await?;
        may(&requester)?;
        let withdrawn = status == RequestStatus::Pending.as_str();
        if withdrawn {
            sqlx::query(
                "UPDATE requests SET status = $1, decided_by = $2, updated_at = $3 WHERE id = $4",
            )
            .bind(RequestStatus::Revoked.as_str())
            .bind(actor)
            .bind(now)
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(db("revoking"))?;
        }
        let sessions = session_ids(tx.conn(), id).await?;
        for grant_id in &sessions {
            request_grant_revoke(&mut tx, grant_id, actor, now).await?;
        }
        tx.audit(
            actor,
            "request.revoked",
            id,
            "ok",
            json!({ "sessions": sessions, "withdrawn": withdrawn, "was": status }),
        )
        .await?;
        refresh_request(&mut tx, id).await?;
        tx.commit("revoking").await
    }

    /// Request `id` with its sessions, approvals and live status.
    pub(crate) async fn request(&self, id: &str) -> Result<Option<AccessRequest>, ControlError> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.store.pool())
            .await
            .map_err(db("reading a request"))?;
        match row {
            Some(row) => Ok(Some(self.complete_request(&row).await?)),
            None => Ok(None),
        }
    }

    /// Requests, newest first (at most 1000).
    pub(crate) async fn requests(
        &self,
        filter: RequestFilter<'_>,
    ) -> Result<Vec<AccessRequest>, ControlError> {
        let base = format!("SELECT {REQUEST_COLUMNS} FROM requests");
        let rows = match filter {
            RequestFilter::By(email) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{base} WHERE requester = $1 ORDER BY created_at DESC LIMIT 1000"
                )))
                .bind(email.to_owned())
                .fetch_all(self.store.pool())
                .await
            }
            RequestFilter::Pending => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{base} WHERE status = $1 ORDER BY created_at DESC LIMIT 1000"
                )))
                .bind(RequestStatus::Pending.as_str())
                .fetch_all(self.store.pool())
                .await
            }
            RequestFilter::All => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{base} ORDER BY created_at DESC LIMIT 1000"
                )))
                .fetch_all(self.store.pool())
                .await
            }
        }
        .map_err(db("listing requests"))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.complete_request(row).await?);
        }
        Ok(out)
    }

    async fn complete_request(&self, row: &AnyRow) -> Result<AccessRequest, ControlError> {
        let mut request = AccessRequest::from_row(row)?;
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(db("reading a request"))?;
        // The stored status of an approved request is a snapshot; its sessions tell the truth.
        if !matches!(
            request.status,
            RequestStatus::Pending | RequestStatus::Rejected
        ) && let Some((status, changed)) = derived_status(&mut conn, &request.id).await?
        {
            request.status = status;
            // A request changes when its sessions do (an expiry, a revoke).
            request.updated_at = request.updated_at.max(ts(changed));
        }
        request.session_ids = session_ids(&mut conn, &request.id).await?;
        request.approvals = approvals_of(&mut conn, &request.id).await?;
        Ok(request)
    }

    // ------------------------------------------------------------------ sessions

    /// Sessions (grants), newest first (at most 1000): of `grantee`, or all.
    pub(crate) async fn sessions(
        &self,
        grantee: Option<&str>,
    ) -> Result<Vec<AccessSession>, ControlError> {
        let rows = match grantee {
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SESSION_COLUMNS} FROM grants ORDER BY created_at DESC LIMIT 1000"
                )))
                .fetch_all(self.store.pool())
                .await
            }
            Some(email) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {SESSION_COLUMNS} FROM grants WHERE grantee_email = $1 ORDER BY created_at DESC LIMIT 1000"
                )))
                .bind(email.to_owned())
                .fetch_all(self.store.pool())
                .await
            }
        }
        .map_err(db("listing sessions"))?;
        rows.iter().map(AccessSession::from_row).collect()
    }

    /// Session `id`.
    pub(crate) async fn session(&self, id: &str) -> Result<Option<AccessSession>, ControlError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM grants WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.store.pool())
        .await
        .map_err(db("reading a session"))?
        .as_ref()
        .map(AccessSession::from_row)
        .transpose()
    }

    /// The stored access details of session `id` (no secrets: JSON object).
    pub(crate) async fn access(&self, id: &str) -> Result<Value, ControlError> {
        let access: Option<String> = sqlx::query_scalar("SELECT access FROM grants WHERE id = $1")
            .bind(id)
            .fetch_optional(self.store.pool())
            .await
            .map_err(db("reading access details"))?
            .flatten();
        access
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| ControlError::Corrupt(e.to_string()))
            .map(|v| v.unwrap_or_else(|| json!({})))
    }

    /// Takes session `id`'s sealed one-time credentials, once: marks them `viewed` and deletes
    /// them in one transaction, on the locked row, so that of any number of callers on any
    /// number of replicas exactly one gets them. `None` when none wait. Audited either way.
    pub(crate) async fn take_credentials(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<Option<String>, ControlError> {
        let context = "showing access details";
        let mut tx = self.begin(context).await?;
        let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "UPDATE grants SET updated_at = updated_at WHERE id = $1 AND status = $2 RETURNING credential_status, sealed_credentials",
        )
        .bind(id)
        .bind(GrantStatus::Active.as_str())
        .fetch_optional(tx.conn())
        .await
        .map_err(db(context))?;
        let new = apono_core::CredentialStatus::New.as_str();
        let sealed = match row {
            Some((Some(status), sealed)) if status == new => {
                sqlx::query("UPDATE grants SET credential_status = $1, sealed_credentials = NULL, updated_at = $2 WHERE id = $3")
                    .bind(apono_core::CredentialStatus::Viewed.as_str())
                    .bind(now_ms())
                    .bind(id)
                    .execute(tx.conn())
                    .await
                    .map_err(db(context))?;
                sealed
            }
            _ => None,
        };
        tx.audit(
            actor,
            "session.access_details",
            id,
            "ok",
            json!({ "credentials_shown": sealed.is_some() }),
        )
        .await?;
        tx.commit(context).await?;
        Ok(sealed)
    }

    /// Asks for new credentials for session `id` now (audited).
    pub(crate) async fn request_rotation(
        &self,
        id: &str,
        target: &str,
        actor: &str,
    ) -> Result<(), ControlError> {
        let mut tx = self.begin("resetting credentials").await?;
        jobs::enqueue(tx.conn(), JobKind::Rotate, id, target, now_ms()).await?;
        tx.audit(
            actor,
            "session.reset_credentials",
            id,
            "requested",
            json!({}),
        )
        .await?;
        tx.commit("resetting credentials").await
    }

    // ------------------------------------------------------------------ metrics

    /// What `/metrics` shows: a fixed number of indexed reads whatever the ledger holds.
    pub(crate) async fn gauges(&self) -> Result<Gauges, ControlError> {
        let now = now_ms();
        let counts: Vec<(String, i64)> = sqlx::query_as("SELECT status, n FROM grant_counts")
            .fetch_all(self.store.pool())
            .await
            .map_err(db("reading metrics"))?;
        let grants = GrantStatus::ALL
            .iter()
            .map(|s| {
                let n = counts
                    .iter()
                    .find(|(k, _)| k == s.as_str())
                    .map_or(0, |(_, n)| *n);
                (*s, n)
            })
            .collect();
        let (due,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM (SELECT 1 FROM jobs WHERE kind = $1 AND due_at <= $2 LIMIT $3) AS due",
        )
        .bind(JobKind::Revoke.as_str())
        .bind(now)
        .bind(DUE_CAP)
        .fetch_one(self.store.pool())
        .await
        .map_err(db("reading metrics"))?;
        let (oldest,): (Option<i64>,) =
            sqlx::query_as("SELECT MIN(due_at) FROM jobs WHERE kind = $1")
                .bind(JobKind::Revoke.as_str())
                .fetch_one(self.store.pool())
                .await
                .map_err(db("reading metrics"))?;
        Ok(Gauges {
            grants,
            revokes_due: due,
            oldest_due_revoke: oldest.filter(|o| *o <= now),
        })
    }
}

// ---------------------------------------------------------------------- in-transaction steps

async fn held(
    conn: &mut AnyConnection,
    email: &str,
    integration: &str,
    resource_type: &str,
    resource_id: &str,
    permission: &str,
) -> Result<Option<(String, String, Option<i64>)>, ControlError> {
    sqlx::query_as(
        "SELECT id, status, expires_at FROM grants WHERE grantee_email = $1 AND integration = $2 AND resource_type = $3 AND resource_id = $4 AND permission = $5 AND status IN ($6, $7, $8) AND revoke_requested_at IS NULL ORDER BY created_at DESC LIMIT 1",
    )
    .bind(email)
    .bind(integration)
    .bind(resource_type)
    .bind(resource_id)
    .bind(permission)
    .bind(HELD[0].as_str())
    .bind(HELD[1].as_str())
    .bind(HELD[2].as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db("looking for held grants"))
}

/// Locks request `id`'s row (an `UPDATE`) and returns its status.
async fn lock_request(tx: &mut Tx, id: &str) -> Result<String, ControlError> {
    lock_request_with_requester(tx, id).await.map(|(s, _)| s)
}

async fn lock_request_with_requester(
    tx: &mut Tx,
    id: &str,
) -> Result<(String, String), ControlError> {
    sqlx::query_as("UPDATE requests SET updated_at = $1 WHERE id = $2 RETURNING status, requester")
        .bind(now_ms())
        .bind(id)
        .fetch_optional(tx.conn())
        .await
        .map_err(db("reading a request"))?
        .ok_or_else(|| ControlError::NotFound(format!("request {id}")))
}

/// Records `decision` on a request that must still be `Pending` (another approver may have
/// decided first: that is a conflict), with who decided and why, and audits it. `approvals`:
/// under `all_of`, everyone whose approval it took.
async fn decide_pending(
    tx: &mut Tx,
    id: &str,
    actor: &str,
    decision: Decision,
    reason: Option<&str>,
    approvals: Option<&[String]>,
) -> Result<(), ControlError> {
    let (status, action) = match decision {
        Decision::Approved => (RequestStatus::Granting, "request.approved"),
        Decision::Rejected => (RequestStatus::Rejected, "request.rejected"),
    };
    let changed = sqlx::query("UPDATE requests SET status = $1, decided_by = $2, reason = $3, updated_at = $4 WHERE id = $5 AND status = $6")
        .bind(status.as_str())
        .bind(actor)
        .bind(reason)
        .bind(now_ms())
        .bind(id)
        .bind(RequestStatus::Pending.as_str())
        .execute(tx.conn())
        .await
        .map_err(db("deciding a request"))?
        .rows_affected();
    if changed != 1 {
        let now: Option<(String,)> = sqlx::query_as("SELECT status FROM requests WHERE id = $1")
            .bind(id)
            .fetch_optional(tx.conn())
            .await
            .map_err(db("deciding a request"))?;
        let now = now.map_or_else(|| "gone".to_owned(), |s| s.0);
        return Err(ControlError::Conflict(format!(
            "request is {now}, not Pending"
        )));
    }
    let mut details = match reason {
        Some(reason) => json!({ "reason": reason }),
        None => json!({}),
    };
    if let Some(approvals) = approvals {
        details["approvals"] = json!(approvals);
    }
    tx.audit(actor, action, id, "ok", details).await
}

/// Creates (or extends) the grants of approved request `request_id`.
async fn start_grants(tx: &mut Tx, request_id: &str, plan: &GrantPlan) -> Result<(), ControlError> {
    let now = now_ms();
    let secs = plan.duration_secs;
    let email = plan.grantee.email.as_str();
    for resource in &plan.resources {
        let target = target_of(&plan.integration, &resource.id);
        let holding = held(
            tx.conn(),
            email,
            &plan.integration,
            &plan.resource_type,
            &resource.id,
            &plan.permission,
        )
        .await?;
        let grant_id = match holding {
            Some((grant_id, status, expires_at)) => {
                // Extend what is already held instead of provisioning twice.
                let new_expiry = now + secs * 1000;
                if status == GrantStatus::Active.as_str() {
                    if expires_at.is_some_and(|e| e < new_expiry) {
                        sqlx::query("UPDATE grants SET expires_at = $1, duration_secs = $2, updated_at = $3 WHERE id = $4")
                            .bind(new_expiry)
                            .bind(secs)
                            .bind(now)
                            .bind(&grant_id)
                            .execute(tx.conn())
                            .await
                            .map_err(db("extending a grant"))?;
                        // Re-grant (idempotent) so the target's own expiry moves too; the
                        // revoke follows the new expiry.
                        jobs::enqueue(tx.conn(), JobKind::Grant, &grant_id, &target, now).await?;
                        jobs::enqueue(tx.conn(), JobKind::Revoke, &grant_id, &target, new_expiry)
                            .await?;
                    }
                } else {
                    sqlx::query("UPDATE grants SET duration_secs = CASE WHEN duration_secs < $1 THEN $1 ELSE duration_secs END, updated_at = $2 WHERE id = $3")
                        .bind(secs)
                        .bind(now)
                        .bind(&grant_id)
                        .execute(tx.conn())
                        .await
                        .map_err(db("extending a grant"))?;
                }
                tx.audit(
                    "connector",
                    "grant.extended",
                    &grant_id,
                    "ok",
                    json!({ "request_id": request_id, "duration_seconds": secs }),
                )
                .await?;
                grant_id
            }
            None => {
                let grant_id = new_id("grt_");
                sqlx::query(
                    "INSERT INTO grants (id, request_id, integration, resource_type, resource_id, resource, permission, grantee_email, grantee, account_name, status, duration_secs, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)",
                )
                .bind(&grant_id)
                .bind(request_id)
                .bind(&plan.integration)
                .bind(&plan.resource_type)
                .bind(&resource.id)
                .bind(serde_json::to_string(resource).unwrap_or_default())
                .bind(&plan.permission)
                .bind(email)
                .bind(serde_json::to_string(&plan.grantee).unwrap_or_default())
                .bind(&plan.account)
                .bind(GrantStatus::Pending.as_str())
                .bind(secs)
                .bind(now)
                .execute(tx.conn())
                .await
                .map_err(db("recording a grant"))?;
                tx.deltas.created(GrantStatus::Pending, 1);
                jobs::enqueue(tx.conn(), JobKind::Grant, &grant_id, &target, now).await?;
                grant_id
            }
        };
        sqlx::query("INSERT INTO request_grants (request_id, grant_id) VALUES ($1, $2) ON CONFLICT (request_id, grant_id) DO NOTHING")
            .bind(request_id)
            .bind(&grant_id)
            .execute(tx.conn())
            .await
            .map_err(db("linking a grant"))?;
    }
    refresh_request(tx, request_id).await
}

/// Marks grant `grant_id` for revocation now, deciding on its status as locked by the update:
/// the expiry moves to now; an `Active` (or `RevokeFailed`) grant turns `Revoking` with its
/// revoke due; a `Pending` one is withdrawn by its grant job (due now) before the target is
/// touched; a `Granting` one is revoked as soon as its action completes.
async fn request_grant_revoke(
    tx: &mut Tx,
    grant_id: &str,
    actor: &str,
    now: i64,
) -> Result<(), ControlError> {
    let row: Option<(String, String, String)> = sqlx::query_as(
        "UPDATE grants SET sealed_credentials = NULL, revoke_requested_by = CASE WHEN revoke_requested_at IS NULL THEN $3 ELSE revoke_requested_by END, revoke_requested_at = COALESCE(revoke_requested_at, $1), expires_at = CASE WHEN expires_at IS NULL OR expires_at > $1 THEN $1 ELSE expires_at END, updated_at = $1 WHERE id = $2 RETURNING status, integration, resource_id",
    )
    .bind(now)
    .bind(grant_id)
    .bind(actor)
    .fetch_optional(tx.conn())
    .await
    .map_err(db("revoking"))?;
    let Some((status, integration, resource_id)) = row else {
        return Ok(());
    };
    let status: GrantStatus = status.parse()?;
    let target = target_of(&integration, &resource_id);
    match status {
        GrantStatus::Active | GrantStatus::RevokeFailed => {
            // Visible at once; the revoke job carries on from Revoking.
            transition(status, GrantStatus::Revoking)?;
            let n = sqlx::query("UPDATE grants SET status = $1 WHERE id = $2 AND status = $3")
                .bind(GrantStatus::Revoking.as_str())
                .bind(grant_id)
                .bind(status.as_str())
                .execute(tx.conn())
                .await
                .map_err(db("revoking"))?
                .rows_affected();
            tx.deltas.moved(status, GrantStatus::Revoking, n);
            jobs::enqueue(tx.conn(), JobKind::Revoke, grant_id, &target, now).await?;
        }
        GrantStatus::Revoking => {
            jobs::enqueue(tx.conn(), JobKind::Revoke, grant_id, &target, now).await?;
        }
        GrantStatus::Pending => {
            jobs::enqueue(tx.conn(), JobKind::Grant, grant_id, &target, now).await?;
        }
        // Granting: the completion sees `revoke_requested_at`. Revoked, Failed: nothing left.
        _ => {}
    }
    Ok(())
}

/// The sessions (grant ids) serving request `id`.
async fn session_ids(conn: &mut AnyConnection, id: &str) -> Result<Vec<String>, ControlError> {
    let ids: Vec<(String,)> = sqlx::query_as(
        "SELECT grant_id FROM request_grants WHERE request_id = $1 ORDER BY grant_id",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading a request"))?;
    Ok(ids.into_iter().map(|r| r.0).collect())
}

/// The `all_of` approvals of request `id`, oldest first.
async fn approvals_of(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Vec<RequestApproval>, ControlError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT approver, decided_at FROM request_approvals WHERE request_id = $1 ORDER BY decided_at, approver",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading approvals"))?;
    Ok(rows
        .into_iter()
        .map(|(approver, at)| RequestApproval {
            approver,
            decided_at: ts(at),
        })
        .collect())
}

/// Derives a request's status from its sessions' (`None`: nothing to derive from), and the
/// time its sessions last changed.
async fn derived_status(
    conn: &mut AnyConnection,
    request_id: &str,
) -> Result<Option<(RequestStatus, i64)>, ControlError> {
    let counts: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT g.status, COUNT(*), MAX(g.updated_at) FROM grants g JOIN request_grants rg ON rg.grant_id = g.id WHERE rg.request_id = $1 GROUP BY g.status",
    )
    .bind(request_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("deriving a request's status"))?;
    let statuses: Vec<GrantStatus> = counts
        .iter()
        .map(|(s, _, _)| s.parse().map_err(ControlError::from))
        .collect::<Result<_, _>>()?;
    let changed = counts.iter().map(|(_, _, at)| *at).max().unwrap_or(0);
    Ok(RequestStatus::from_grants(&statuses).map(|s| (s, changed)))
}

/// Writes a request's derived status down (requests still `Pending` or `Rejected` keep theirs).
async fn refresh_request(tx: &mut Tx, request_id: &str) -> Result<(), ControlError> {
    let current: Option<(String,)> = sqlx::query_as("SELECT status FROM requests WHERE id = $1")
        .bind(request_id)
        .fetch_optional(tx.conn())
        .await
        .map_err(db("refreshing a request"))?;
    let Some((current,)) = current else {
        return Ok(());
    };
    if current == RequestStatus::Rejected.as_str() || current == RequestStatus::Pending.as_str() {
        return Ok(());
    }
    if let Some((next, _)) = derived_status(tx.conn(), request_id).await?
        && next.as_str() != current
    {
        sqlx::query("UPDATE requests SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(next.as_str())
            .bind(now_ms())
            .bind(request_id)
            .execute(tx.conn())
            .await
            .map_err(db("refreshing a request"))?;
    }
    Ok(())
}
