//! [`ControlPlane`]: requests, approvals, the grant ledger and token checks.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use apono_core::{
    AccountNaming, Credential, GrantId, GrantSpec, GrantState, GrantStatus, Grantee, Integration,
    Inventory, Permission, RequestStatus, Resource, ResourceType,
};
use apono_runtime::Executor;
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::AnyConnection;
use tokio::sync::Notify;

use crate::approval;
use crate::audit::{self, AuditEntry};
use crate::commit::Committer;
use crate::config::{AccessFlow, ApprovalMode, Config, HumanDuration, User};
use crate::error::ControlError;
use crate::metrics::Metrics;
use crate::model::{
    AccessRequest, AccessSession, DryRun, NewRequest, Problem, ProblemCode, REQUEST_COLUMNS,
    RequestApproval, SESSION_COLUMNS, get,
};
use crate::now_ms;
use crate::store::Store;

/// Kinds of scheduled work.
pub(crate) mod job {
    pub(crate) const GRANT: &str = "grant";
    pub(crate) const REVOKE: &str = "revoke";
    pub(crate) const ROTATE: &str = "rotate";
    pub(crate) const CLEANUP: &str = "cleanup";
    pub(crate) const DISCOVER: &str = "discover";
}

/// Which requests a list shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestScope {
    /// The caller's own requests.
    #[default]
    Mine,
    /// Pending requests the caller may approve.
    AwaitingMyApproval,
    /// Every request (admins only).
    All,
}

/// The control plane: owns the store, the configuration and the executor.
#[derive(Debug)]
pub struct ControlPlane {
    pub(crate) store: Store,
    pub(crate) config: Arc<Config>,
    pub(crate) executor: Arc<Executor>,
    pub(crate) naming: AccountNaming,
    pub(crate) wake: Notify,
    pub(crate) metrics: Metrics,
    /// One-time credentials waiting to be shown, by grant id. Kept in memory only: after a
    /// restart a requester asks for `reset-credentials`.
    credentials: Mutex<HashMap<String, Vec<Credential>>>,
    token_seen: Mutex<HashMap<String, i64>>,
    pub(crate) owner: String,
    /// The scheduler's group-commit writer.
    pub(crate) committer: Committer,
}

pub(crate) fn new_id(prefix: &str) -> String {
    let bytes: [u8; 10] = rand::random();
    format!(
        "{prefix}{}",
        data_encoding::BASE32_NOPAD
            .encode(&bytes)
            .to_ascii_lowercase()
    )
}

fn hash_token(token: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(token.as_bytes()))
}

pub(crate) fn db(context: &'static str) -> impl Fn(sqlx::Error) -> ControlError {
    move |e| ControlError::store(context, e)
}

/// What an approval that completes a request grants.
struct GrantPlan<'a> {
    requester: &'a User,
    new: &'a NewRequest,
    resources: &'a [Resource],
    duration: Duration,
}

/// An approver's decision on a pending request.
#[derive(Clone, Copy)]
enum Decision {
    Approved,
    Rejected,
}

impl Decision {
    /// The request status the decision moves to, the audit action, and the store context.
    fn parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Approved => ("Granting", "request.approved", "approving"),
            Self::Rejected => ("Rejected", "request.rejected", "rejecting"),
        }
    }
}

/// Records `decision` on a request that must still be `Pending` (another approver may have
/// decided first: that is a conflict), with who decided and why, and audits it. `approvals`:
/// under `all_of`, everyone whose approval it took (recorded in the audit record).
async fn decide_pending(
    tx: &mut AnyConnection,
    user: &User,
    request: &AccessRequest,
    decision: Decision,
    reason: Option<&str>,
    approvals: Option<&[String]>,
) -> Result<(), ControlError> {
    let (status, action, context) = decision.parts();
    let changed = sqlx::query("UPDATE requests SET status = $1, decided_by = $2, reason = $3, updated_at = $4 WHERE id = $5 AND status = 'Pending'")
        .bind(status)
        .bind(&user.email)
        .bind(reason)
        .bind(now_ms())
        .bind(&request.id)
        .execute(&mut *tx)
        .await
        .map_err(db(context))?
        .rows_affected();
    if changed != 1 {
        return Err(ControlError::Conflict(format!(
            "request is {}, not Pending",
            request.status
        )));
    }
    audit::append(
        tx,
        AuditEntry {
            actor: &user.email,
            action,
            subject: &request.id,
            outcome: "ok",
            details: {
                let mut details = match reason {
                    Some(reason) => json!({ "reason": reason }),
                    None => json!({}),
                };
                if let Some(approvals) = approvals {
                    details["approvals"] = json!(approvals);
                }
                details
            },
        },
    )
    .await
}

/// The `all_of` approvals of request `id`: `(approver, decided_at)`, oldest first.
async fn approvals_of(
    conn: &mut AnyConnection,
    id: &str,
) -> Result<Vec<(String, i64)>, ControlError> {
    sqlx::query_as(
        "SELECT approver, decided_at FROM request_approvals WHERE request_id = $1 ORDER BY decided_at, approver",
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("reading approvals"))
}

impl ControlPlane {
    /// A control plane over `store` with `config`, executing through `executor`.
    pub fn new(store: Store, config: Config, executor: Arc<Executor>) -> Arc<Self> {
        let owner = format!("{}/{}", config.connector.id, new_id(""));
        Arc::new(Self {
            committer: Committer::new(store.clone(), owner.clone()),
            owner,
            store,
            config: Arc::new(config),
            executor,
            naming: AccountNaming::new(),
            wake: Notify::new(),
            metrics: Metrics::default(),
            credentials: Mutex::new(HashMap::new()),
            token_seen: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The executor.
    pub fn executor(&self) -> &Arc<Executor> {
        &self.executor
    }

    /// Records the configuration load in the audit log and makes sure every integration has a
    /// discovery job.
    pub async fn bootstrap(&self) -> Result<(), ControlError> {
        let mut tx = self.store.begin().await.map_err(db("bootstrap"))?;
        let names: Vec<&str> = self
            .config
            .integrations
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        audit::append(
            &mut tx,
            AuditEntry {
                actor: "connector",
                action: "config.loaded",
                subject: &self.config.connector.id,
                outcome: "ok",
                details: json!({
                    "integrations": names,
                    "users": self.config.users.len(),
                    "access_flows": self.config.access_flows.iter().map(|f| &f.name).collect::<Vec<_>>(),
                }),
            },
        )
        .await?;
        for integration in &self.config.integrations {
            sqlx::query(
                "INSERT INTO jobs (kind, subject, target, due_at, attempts, created_at) VALUES ($1, $2, $3, $4, 0, $4) ON CONFLICT (kind, subject) DO UPDATE SET due_at = excluded.due_at",
            )
            .bind(job::DISCOVER)
            .bind(&integration.name)
            .bind(&integration.name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db("scheduling discovery"))?;
        }
        tx.commit().await.map_err(db("bootstrap"))?;
        self.wake.notify_one();
        Ok(())
    }

    // ------------------------------------------------------------------ tokens

    /// Creates a personal API token for `email` and returns it; only its hash is stored.
    pub async fn create_token(&self, email: &str) -> Result<String, ControlError> {
        let user = self
            .config
            .user(email)
            .ok_or_else(|| ControlError::NotFound(format!("user {email}")))?;
        let secret: [u8; 32] = rand::random();
        let token = format!(
            "apono_{}",
            data_encoding::BASE32_NOPAD
                .encode(&secret)
                .to_ascii_lowercase()
        );
        let id = new_id("tok_");
        let mut tx = self.store.begin().await.map_err(db("creating a token"))?;
        sqlx::query(
            "INSERT INTO tokens (id, user_email, token_hash, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&id)
        .bind(&user.email)
        .bind(hash_token(&token))
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db("creating a token"))?;
        audit::append(
            &mut tx,
            AuditEntry {
                actor: &user.email,
                action: "token.created",
                subject: &id,
                outcome: "ok",
                details: json!({}),
            },
        )
        .await?;
        tx.commit().await.map_err(db("creating a token"))?;
        Ok(token)
    }

    /// The user a bearer token belongs to.
    pub async fn authenticate(&self, token: &str) -> Result<User, ControlError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT id, user_email FROM tokens WHERE token_hash = $1")
                .bind(hash_token(token))
                .fetch_optional(self.store.pool())
                .await
                .map_err(db("checking a token"))?;
        let (id, email) = row.ok_or(ControlError::Unauthenticated)?;
        let user = self
            .config
            .user(&email)
            .cloned()
            .ok_or(ControlError::Unauthenticated)?;
        // Token use is audited at most once a minute per token, so polling does not flood the log.
        let now = now_ms();
        let due = {
            let mut seen = self
                .token_seen
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let last = seen.get(&id).copied().unwrap_or(0);
            if now - last >= 60_000 {
                seen.insert(id.clone(), now);
                true
            } else {
                false
            }
        };
        if due {
            let mut tx = self
                .store
                .begin()
                .await
                .map_err(db("recording token use"))?;
            sqlx::query("UPDATE tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(db("recording token use"))?;
            audit::append(
                &mut tx,
                AuditEntry {
                    actor: &user.email,
                    action: "token.used",
                    subject: &id,
                    outcome: "ok",
                    details: json!({}),
                },
            )
            .await?;
            tx.commit().await.map_err(db("recording token use"))?;
        }
        Ok(user)
    }

    // ------------------------------------------------------------------ inventory

    /// The discovered inventory of every integration.
    pub async fn inventory(&self) -> Result<BTreeMap<String, Inventory>, ControlError> {
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT integration, body FROM inventory")
            .fetch_all(self.store.pool())
            .await
            .map_err(db("reading the inventory"))?;
        let mut out = BTreeMap::new();
        for (name, body) in rows {
            if self.config.integration(&name).is_none() {
                continue;
            }
            let inventory: Inventory =
                serde_json::from_str(&body).map_err(|e| ControlError::Corrupt(e.to_string()))?;
            out.insert(name, inventory);
        }
        Ok(out)
    }

    pub(crate) async fn store_inventory(
        &self,
        integration: &Integration,
        inventory: &Inventory,
    ) -> Result<(), ControlError> {
        let body =
            serde_json::to_string(inventory).map_err(|e| ControlError::Corrupt(e.to_string()))?;
        let mut tx = self
            .store
            .begin()
            .await
            .map_err(db("storing the inventory"))?;
        sqlx::query(
            "INSERT INTO inventory (integration, body, discovered_at) VALUES ($1, $2, $3) ON CONFLICT (integration) DO UPDATE SET body = excluded.body, discovered_at = excluded.discovered_at",
        )
        .bind(&integration.name)
        .bind(body)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db("storing the inventory"))?;
        tx.commit().await.map_err(db("storing the inventory"))?;
        Ok(())
    }

    // ------------------------------------------------------------------ requests

    /// Under an `all_of` flow: a problem when even every configured user approving could not
    /// meet all entries, leaving out `requester` where the flow bars self-approval (a listed
    /// approver requesting, or a listed group with no other member).
    fn unapprovable(&self, flow: &AccessFlow, requester: &User) -> Option<Problem> {
        if flow.approvers.mode != ApprovalMode::AllOf || !flow.needs_approval() {
            return None;
        }
        let entries = approval::entries(&flow.approvers);
        let everyone: Vec<&User> = self
            .config
            .users
            .iter()
            .filter(|u| {
                !(flow.requester_cannot_approve_self
                    && u.email.eq_ignore_ascii_case(&requester.email))
            })
            .collect();
        let best = approval::progress(&entries, &everyone);
        if best.complete() {
            return None;
        }
        let whom = best.awaiting().join(", ");
        let message = if flow.requester_cannot_approve_self {
            format!(
                "access flow {:?} needs approval from {whom}, and no configured user other than \
                 the requester can give it",
                flow.name
            )
        } else {
            format!(
                "access flow {:?} needs approval from {whom}, and no configured user can give it",
                flow.name
            )
        };
        Some(Problem::new(ProblemCode::NoPossibleApproval, message))
    }

    fn matching_resources(
        inventory: &BTreeMap<String, Inventory>,
        req: &NewRequest,
    ) -> (Vec<Resource>, Vec<String>) {
        let mut found = Vec::new();
        let mut problems = Vec::new();
        let empty = Inventory::default();
        let inv = inventory.get(&req.integration).unwrap_or(&empty);
        for id in &req.resource_ids {
            match inv
                .resources
                .iter()
                .find(|r| r.id == *id && r.resource_type == req.resource_type.as_str())
            {
                Some(r) => found.push(r.clone()),
                None => problems.push(format!(
                    "resource {id:?} of type {:?} is unknown in integration {:?} (not discovered yet?)",
                    req.resource_type, req.integration
                )),
            }
        }
        (found, problems)
    }

    /// Checks `req` against the access flows without creating anything.
    pub async fn dry_run(&self, user: &User, req: &NewRequest) -> Result<DryRun, ControlError> {
        Ok(self.evaluate(user, req).await?.0)
    }

    async fn evaluate(
        &self,
        user: &User,
        req: &NewRequest,
    ) -> Result<(DryRun, Option<(AccessFlow, Vec<Resource>, Duration)>), ControlError> {
        let mut problems = Vec::new();
        let known_integration = self.config.integration(&req.integration).is_some();
        if !known_integration {
            problems.push(Problem::new(
                ProblemCode::UnknownIntegration,
                format!("integration {:?} does not exist", req.integration),
            ));
        }
        if req.resource_ids.is_empty() {
            problems.push(Problem::new(
                ProblemCode::NoResource,
                "resource_ids names no resource",
            ));
        }
        let inventory = self.inventory().await?;
        let (resources, missing) = Self::matching_resources(&inventory, req);
        problems.extend(
            missing
                .into_iter()
                .map(|m| Problem::new(ProblemCode::UnknownResource, m)),
        );
        let requested = match &req.duration {
            Some(d) => match HumanDuration::parse(d) {
                Ok(d) => Some(d),
                Err(e) => {
                    problems.push(Problem::new(
                        ProblemCode::InvalidDuration,
                        format!("duration: {e}"),
                    ));
                    None
                }
            },
            None => None,
        };
        // The flows that cover this requester, target, permission and every resource.
        let candidates: Vec<&AccessFlow> = self
            .config
            .access_flows
            .iter()
            .filter(|f| f.requestors.contains(user))
            .filter(|f| {
                f.targets.iter().any(|t| {
                    t.integration == req.integration
                        && t.resource_type == req.resource_type
                        && t.permissions.contains(&req.permission)
                        && resources.iter().all(|r| t.resources.matches(r))
                })
            })
            .collect();
        let mut flow_problems = Vec::new();
        let mut chosen = None;
        for flow in &candidates {
            let mut mine = Vec::new();
            if flow.justification_required
                && req
                    .justification
                    .as_deref()
                    .is_none_or(|j| j.trim().is_empty())
            {
                mine.push(Problem::new(
                    ProblemCode::JustificationRequired,
                    format!("access flow {:?} requires a justification", flow.name),
                ));
            }
            if let Some(d) = requested
                && d > flow.grant_duration
            {
                mine.push(Problem {
                    code: ProblemCode::DurationOverMax,
                    message: format!(
                        "duration {d} is over the maximum {} of access flow {:?}",
                        flow.grant_duration, flow.name
                    ),
                    max: Some(flow.grant_duration.to_string()),
                });
            }
            if let Some(problem) = self.unapprovable(flow, user) {
                mine.push(problem);
            }
            if mine.is_empty() {
                chosen = Some(*flow);
                break;
            }
            flow_problems.extend(mine);
        }
        if candidates.is_empty() {
            // A permission the integration does not offer says more than "no flow": only
            // reported when discovery has listed the resource type's permissions.
            let offered: Vec<&str> = inventory
                .get(&req.integration)
                .map(|inv| {
                    inv.permissions
                        .iter()
                        .filter(|p| p.resource_type.as_str() == req.resource_type)
                        .map(|p| p.permission.as_str())
                        .collect()
                })
                .unwrap_or_default();
            if known_integration
                && !offered.is_empty()
                && !offered.contains(&req.permission.as_str())
            {
                problems.push(Problem::new(
                    ProblemCode::UnknownPermission,
                    format!(
                        "permission {:?} is unknown for {} in integration {:?} (it offers {})",
                        req.permission,
                        req.resource_type,
                        req.integration,
                        offered.join(", ")
                    ),
                ));
            }
            problems.push(Problem::new(
                ProblemCode::NoMatchingFlow,
                format!(
                    "no access flow lets {} request {:?} on {} {:?} of integration {:?}",
                    user.email,
                    req.permission,
                    req.resource_type,
                    req.resource_ids,
                    req.integration
                ),
            ));
        } else if chosen.is_none() {
            problems.extend(flow_problems);
        }
        let flow = chosen.or(candidates.first().copied());
        let duration = flow.map(|f| requested.unwrap_or(f.grant_duration).0);
        let mut extends = Vec::new();
        if problems.is_empty() {
            for r in &resources {
                if let Some(id) = self.holding_grant(user, req, &r.id).await? {
                    extends.push(id);
                }
            }
        }
        let report = DryRun {
            allowed: problems.is_empty(),
            flow: flow.map(|f| f.name.clone()),
            approval_required: flow.is_some_and(AccessFlow::needs_approval),
            max_duration: flow.map(|f| f.grant_duration.to_string()),
            problems,
            extends_sessions: extends,
        };
        let plan = match (report.allowed, chosen, duration) {
            (true, Some(flow), Some(duration)) => Some((flow.clone(), resources, duration)),
            _ => None,
        };
        Ok((report, plan))
    }

    async fn holding_grant(
        &self,
        user: &User,
        req: &NewRequest,
        resource_id: &str,
    ) -> Result<Option<String>, ControlError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM grants WHERE grantee_email = $1 AND integration = $2 AND resource_type = $3 AND resource_id = $4 AND permission = $5 AND status IN ('Pending', 'Granting', 'Active') AND revoke_requested_at IS NULL ORDER BY created_at DESC LIMIT 1",
        )
        .bind(&user.email)
        .bind(&req.integration)
        .bind(&req.resource_type)
        .bind(resource_id)
        .bind(&req.permission)
        .fetch_optional(self.store.pool())
        .await
        .map_err(db("looking for held grants"))?;
        Ok(row.map(|r| r.0))
    }

    /// Creates an access request. Requests that need no approval start granting at once.
    pub async fn create_request(
        &self,
        user: &User,
        req: &NewRequest,
    ) -> Result<AccessRequest, ControlError> {
        let (report, plan) = self.evaluate(user, req).await?;
        let Some((flow, resources, duration)) = plan else {
            let messages: Vec<String> = report.problems.into_iter().map(|p| p.message).collect();
            let mut tx = self.store.begin().await.map_err(db("auditing"))?;
            audit::append(
                &mut tx,
                AuditEntry {
                    actor: &user.email,
                    action: "request.created",
                    subject: &req.integration,
                    outcome: "denied",
                    details: json!({ "problems": messages }),
                },
            )
            .await?;
            tx.commit().await.map_err(db("auditing"))?;
            return Err(ControlError::Invalid(messages));
        };
        let id = new_id("req_");
        let now = now_ms();
        let mut tx = self.store.begin().await.map_err(db("creating a request"))?;
        sqlx::query(
            "INSERT INTO requests (id, requester, flow, integration, resource_type, resource_ids, permission, justification, duration_secs, status, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'Pending', $10, $10)",
        )
        .bind(&id)
        .bind(&user.email)
        .bind(&flow.name)
        .bind(&req.integration)
        .bind(&req.resource_type)
        .bind(serde_json::to_string(&req.resource_ids).unwrap_or_default())
        .bind(&req.permission)
        .bind(req.justification.clone().unwrap_or_default())
        .bind(duration.as_secs() as i64)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("creating a request"))?;
        audit::append(
            &mut tx,
            AuditEntry {
                actor: &user.email,
                action: "request.created",
                subject: &id,
                outcome: "ok",
                details: json!({
                    "flow": flow.name, "integration": req.integration,
                    "resource_type": req.resource_type, "resource_ids": req.resource_ids,
                    "permission": req.permission, "duration_seconds": duration.as_secs(),
                }),
            },
        )
        .await?;
        if !flow.needs_approval() {
            sqlx::query(
                "UPDATE requests SET status = 'Granting', decided_by = 'connector' WHERE id = $1",
            )
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(db("creating a request"))?;
            audit::append(
                &mut tx,
                AuditEntry {
                    actor: "connector",
                    action: "request.approved",
                    subject: &id,
                    outcome: "ok",
                    details: json!({ "automatic": true }),
                },
            )
            .await?;
            self.start_grants(&mut tx, &id, user, req, &resources, duration)
                .await?;
        }
        tx.commit().await.map_err(db("creating a request"))?;
        self.wake.notify_one();
        self.request(user, &id).await
    }

    /// Creates (or extends) the grants of an approved request, inside `tx`.
    async fn start_grants(
        &self,
        tx: &mut AnyConnection,
        request_id: &str,
        requester: &User,
        req: &NewRequest,
        resources: &[Resource],
        duration: Duration,
    ) -> Result<(), ControlError> {
        let now = now_ms();
        let secs = duration.as_secs() as i64;
        for resource in resources {
            let held: Option<(String, String, Option<i64>)> = sqlx::query_as(
                "SELECT id, status, expires_at FROM grants WHERE grantee_email = $1 AND integration = $2 AND resource_type = $3 AND resource_id = $4 AND permission = $5 AND status IN ('Pending', 'Granting', 'Active') AND revoke_requested_at IS NULL ORDER BY created_at DESC LIMIT 1",
            )
            .bind(&requester.email)
            .bind(&req.integration)
            .bind(&req.resource_type)
            .bind(&resource.id)
            .bind(&req.permission)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("looking for held grants"))?;
            let grant_id = match held {
                Some((grant_id, status, expires_at)) => {
                    // Extend what is already held instead of provisioning twice.
                    let new_expiry = now + secs * 1000;
                    if status == "Active" && expires_at.is_some_and(|e| e < new_expiry) {
                        sqlx::query("UPDATE grants SET expires_at = $1, duration_secs = $2, updated_at = $3 WHERE id = $4")
                            .bind(new_expiry)
                            .bind(secs)
                            .bind(now)
                            .bind(&grant_id)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("extending a grant"))?;
                        // Re-grant (idempotent) so the target's own expiry moves too; the
                        // revoke follows the new expiry.
                        upsert_job(
                            tx,
                            job::GRANT,
                            &grant_id,
                            &target_of(&req.integration, &resource.id),
                            now,
                        )
                        .await?;
                        upsert_job(
                            tx,
                            job::REVOKE,
                            &grant_id,
                            &target_of(&req.integration, &resource.id),
                            new_expiry,
                        )
                        .await?;
                    } else if status != "Active" {
                        sqlx::query("UPDATE grants SET duration_secs = CASE WHEN duration_secs < $1 THEN $1 ELSE duration_secs END, updated_at = $2 WHERE id = $3")
                            .bind(secs)
                            .bind(now)
                            .bind(&grant_id)
                            .execute(&mut *tx)
                            .await
                            .map_err(db("extending a grant"))?;
                    }
                    audit::append(
                        tx,
                        AuditEntry {
                            actor: "connector",
                            action: "grant.extended",
                            subject: &grant_id,
                            outcome: "ok",
                            details: json!({ "request_id": request_id, "duration_seconds": secs }),
                        },
                    )
                    .await?;
                    grant_id
                }
                None => {
                    let grant_id = new_id("grt_");
                    let grantee = Grantee {
                        id: requester.email.clone(),
                        email: requester.email.clone(),
                        display_name: String::new(),
                        groups: requester.groups.clone(),
                    };
                    let account: apono_core::LinuxUsername = self.naming.account_for(&grantee);
                    let account = account.into_string();
                    sqlx::query(
                        "INSERT INTO grants (id, request_id, integration, resource_type, resource_id, resource, permission, grantee_email, grantee, account_name, status, duration_secs, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'Pending', $11, $12, $12)",
                    )
                    .bind(&grant_id)
                    .bind(request_id)
                    .bind(&req.integration)
                    .bind(&req.resource_type)
                    .bind(&resource.id)
                    .bind(serde_json::to_string(resource).unwrap_or_default())
                    .bind(&req.permission)
                    .bind(&requester.email)
                    .bind(serde_json::to_string(&grantee).unwrap_or_default())
                    .bind(account)
                    .bind(secs)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("recording a grant"))?;
                    upsert_job(
                        tx,
                        job::GRANT,
                        &grant_id,
                        &target_of(&req.integration, &resource.id),
                        now,
                    )
                    .await?;
                    grant_id
                }
            };
            sqlx::query("INSERT INTO request_grants (request_id, grant_id) VALUES ($1, $2) ON CONFLICT (request_id, grant_id) DO NOTHING")
                .bind(request_id)
                .bind(&grant_id)
                .execute(&mut *tx)
                .await
                .map_err(db("linking a grant"))?;
        }
        refresh_request(tx, request_id).await?;
        Ok(())
    }

    /// One request, if the caller may see it (requester, approver or admin).
    pub async fn request(&self, user: &User, id: &str) -> Result<AccessRequest, ControlError> {
        let request = self.load_request(id).await?;
        let visible = user.admin
            || request.requester.eq_ignore_ascii_case(&user.email)
            || self
                .config
                .flow(&request.flow)
                .is_some_and(|f| f.approvers.principals().contains(user));
        if !visible {
            return Err(ControlError::NotFound(format!("request {id}")));
        }
        Ok(request)
    }

    async fn load_request(&self, id: &str) -> Result<AccessRequest, ControlError> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.store.pool())
            .await
            .map_err(db("reading a request"))?
            .ok_or_else(|| ControlError::NotFound(format!("request {id}")))?;
        let mut request = AccessRequest::from_row(&row)?;
        self.live_status(&mut request).await?;
        request.session_ids = self.session_ids(id).await?;
        self.fill_approvals(&mut request).await?;
        Ok(request)
    }

    /// The `all_of` flow of `request`, if its flow still exists, waits for approvers and is
    /// `all_of`.
    fn all_of_flow(&self, request: &AccessRequest) -> Option<&AccessFlow> {
        self.config
            .flow(&request.flow)
            .filter(|f| f.approvers.mode == ApprovalMode::AllOf && f.needs_approval())
    }

    /// Fills `approvals` from the store and, for a `Pending` `all_of` request, `awaiting` (the
    /// entries a maximum matching of the approvals leaves unmet, under the current
    /// configuration).
    async fn fill_approvals(&self, request: &mut AccessRequest) -> Result<(), ControlError> {
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(db("reading approvals"))?;
        let given = approvals_of(&mut conn, &request.id).await?;
        request.approvals = given
            .into_iter()
            .map(|(approver, at)| RequestApproval {
                approver,
                decided_at: crate::model::ts(at),
            })
            .collect();
        request.awaiting = match self.all_of_flow(request) {
            Some(flow) if request.status == RequestStatus::Pending => {
                let emails: Vec<String> = request
                    .approvals
                    .iter()
                    .map(|a| a.approver.clone())
                    .collect();
                approval::progress(
                    &approval::entries(&flow.approvers),
                    &approval::users(&self.config, &emails),
                )
                .awaiting()
            }
            _ => Vec::new(),
        };
        Ok(())
    }

    /// Whether `user`'s approval would count towards `request` now: for `any_of`, whether they
    /// may approve; for `all_of`, also that they have not approved yet and that their approval
    /// meets an entry still unmet (possibly by moving another approver to another entry).
    fn awaits_approval_of(&self, user: &User, request: &AccessRequest) -> bool {
        if self.may_approve(user, request).is_err() {
            return false;
        }
        let Some(flow) = self.all_of_flow(request) else {
            return true;
        };
        let emails: Vec<String> = request
            .approvals
            .iter()
            .map(|a| a.approver.clone())
            .collect();
        !emails.iter().any(|e| e.eq_ignore_ascii_case(&user.email))
            && approval::would_count(
                &approval::entries(&flow.approvers),
                &approval::users(&self.config, &emails),
                user,
            )
    }

    /// The ids of the sessions (grants) serving request `id`.
    async fn session_ids(&self, id: &str) -> Result<Vec<String>, ControlError> {
        let ids: Vec<(String,)> = sqlx::query_as(
            "SELECT grant_id FROM request_grants WHERE request_id = $1 ORDER BY grant_id",
        )
        .bind(id)
        .fetch_all(self.store.pool())
        .await
        .map_err(db("reading a request"))?;
        Ok(ids.into_iter().map(|r| r.0).collect())
    }

    /// Lists requests.
    pub async fn requests(
        &self,
        user: &User,
        scope: RequestScope,
    ) -> Result<Vec<AccessRequest>, ControlError> {
        let base = format!("SELECT {REQUEST_COLUMNS} FROM requests");
        let rows = match scope {
            RequestScope::Mine => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{base} WHERE requester = $1 ORDER BY created_at DESC LIMIT 1000"
                )))
                .bind(&user.email)
                .fetch_all(self.store.pool())
                .await
            }
            RequestScope::AwaitingMyApproval => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{base} WHERE status = 'Pending' ORDER BY created_at DESC LIMIT 1000"
                )))
                .fetch_all(self.store.pool())
                .await
            }
            RequestScope::All => {
                if !user.admin {
                    return Err(ControlError::Forbidden(
                        "only admins list all requests".into(),
                    ));
                }
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{base} ORDER BY created_at DESC LIMIT 1000"
                )))
                .fetch_all(self.store.pool())
                .await
            }
        }
        .map_err(db("listing requests"))?;
        let mut out = Vec::new();
        for row in &rows {
            let mut request = AccessRequest::from_row(row)?;
            self.live_status(&mut request).await?;
            self.fill_approvals(&mut request).await?;
            if scope == RequestScope::AwaitingMyApproval && !self.awaits_approval_of(user, &request)
            {
                continue;
            }
            request.session_ids = self.session_ids(&request.id).await?;
            out.push(request);
        }
        Ok(out)
    }

    /// The stored status of an approved request is a snapshot; its sessions tell the truth.
    async fn live_status(&self, request: &mut AccessRequest) -> Result<(), ControlError> {
        if matches!(
            request.status,
            RequestStatus::Pending | RequestStatus::Rejected
        ) {
            return Ok(());
        }
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(db("reading a request"))?;
        if let Some(status) = derived_status(&mut conn, &request.id).await? {
            request.status = status
                .parse()
                .map_err(|e: apono_core::UnknownStatus| ControlError::Corrupt(e.to_string()))?;
        }
        Ok(())
    }

    fn may_approve(&self, user: &User, request: &AccessRequest) -> Result<(), ControlError> {
        let flow = self.config.flow(&request.flow).ok_or_else(|| {
            ControlError::Conflict(format!("access flow {:?} no longer exists", request.flow))
        })?;
        if flow.requester_cannot_approve_self && request.requester.eq_ignore_ascii_case(&user.email)
        {
            return Err(ControlError::Forbidden(
                "the requester cannot approve their own request".into(),
            ));
        }
        if !(user.admin || flow.approvers.principals().contains(user)) {
            return Err(ControlError::Forbidden(
                "not an approver of this request".into(),
            ));
        }
        Ok(())
    }

    /// Approves a pending request and starts granting. A `reason`, when given, is recorded in
    /// the request and the audit log.
    pub async fn approve(
        &self,
        user: &User,
        id: &str,
        reason: Option<&str>,
    ) -> Result<AccessRequest, ControlError> {
        let request = self.request(user, id).await?;
        self.may_approve(user, &request)?;
        let requester = self
            .config
            .user(&request.requester)
            .cloned()
            .ok_or_else(|| ControlError::Conflict("the requester is no longer a user".into()))?;
        let new = NewRequest {
            integration: request.integration.clone(),
            resource_type: request.resource_type.clone(),
            resource_ids: request.resource_ids.clone(),
            permission: request.permission.clone(),
            justification: Some(request.justification.clone()),
            duration: None,
        };
        let inventory = self.inventory().await?;
        let (resources, problems) = Self::matching_resources(&inventory, &new);
        if !problems.is_empty() {
            return Err(ControlError::Conflict(problems.join("; ")));
        }
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        let duration = Duration::from_secs(request.duration_seconds.max(1) as u64);
        if let Some(flow) = self.all_of_flow(&request) {
            let plan = GrantPlan {
                requester: &requester,
                new: &new,
                resources: &resources,
                duration,
            };
            return self
                .approve_all_of(user, &request, flow, reason, plan)
                .await;
        }
        let mut tx = self.store.begin().await.map_err(db("approving"))?;
        decide_pending(&mut tx, user, &request, Decision::Approved, reason, None).await?;
        self.start_grants(&mut tx, id, &requester, &new, &resources, duration)
            .await?;
        tx.commit().await.map_err(db("approving"))?;
        self.wake.notify_one();
        self.request(user, id).await
    }

    /// Records `user`'s approval of an `all_of` request. The request row is locked first
    /// (PostgreSQL: concurrent approvers queue on it, so the last one always sees every other
    /// approval); the approvals are then matched to the flow's entries. The approval that meets
    /// the last entry approves the request (`request.approved`) and starts granting; an earlier
    /// one is audited as `request.approval_recorded` and leaves the request `Pending`.
    async fn approve_all_of(
        &self,
        user: &User,
        request: &AccessRequest,
        flow: &AccessFlow,
        reason: Option<&str>,
        plan: GrantPlan<'_>,
    ) -> Result<AccessRequest, ControlError> {
        let id = request.id.as_str();
        let now = now_ms();
        let mut tx = self.store.begin().await.map_err(db("approving"))?;
        let locked =
            sqlx::query("UPDATE requests SET updated_at = $1 WHERE id = $2 AND status = 'Pending'")
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db("approving"))?
                .rows_affected();
        if locked != 1 {
            let status: Option<(String,)> =
                sqlx::query_as("SELECT status FROM requests WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db("approving"))?;
            let status = status.map_or_else(|| request.status.to_string(), |s| s.0);
            return Err(ControlError::Conflict(format!(
                "request is {status}, not Pending"
            )));
        }
        let mut emails: Vec<String> = approvals_of(&mut tx, id)
            .await?
            .into_iter()
            .map(|(approver, _)| approver)
            .collect();
        let entries = approval::entries(&flow.approvers);
        let before = approval::progress(&entries, &approval::users(&self.config, &emails));
        if emails.iter().any(|e| e.eq_ignore_ascii_case(&user.email)) {
            return Err(ControlError::Conflict(format!(
                "{} already approved request {id}; it awaits {}",
                user.email,
                before.awaiting().join(", ")
            )));
        }
        if !approval::would_count(&entries, &approval::users(&self.config, &emails), user) {
            return Err(ControlError::Forbidden(format!(
                "your approval meets none of the approvals request {id} still awaits ({}); each needs a different approver",
                before.awaiting().join(", ")
            )));
        }
        sqlx::query(
            "INSERT INTO request_approvals (request_id, approver, decided_at) VALUES ($1, $2, $3)",
        )
        .bind(id)
        .bind(&user.email)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db("approving"))?;
        emails.push(user.email.clone());
        let after = approval::progress(&entries, &approval::users(&self.config, &emails));
        if after.complete() {
            decide_pending(
                &mut tx,
                user,
                request,
                Decision::Approved,
                reason,
                Some(&emails),
            )
            .await?;
            self.start_grants(
                &mut tx,
                id,
                plan.requester,
                plan.new,
                plan.resources,
                plan.duration,
            )
            .await?;
        } else {
            let mut details = json!({
                "approvals": after.counted,
                "required": entries.len(),
                "awaiting": after.awaiting(),
            });
            if let Some(reason) = reason {
                details["reason"] = json!(reason);
            }
            audit::append(
                &mut tx,
                AuditEntry {
                    actor: &user.email,
                    action: "request.approval_recorded",
                    subject: id,
                    outcome: "ok",
                    details,
                },
            )
            .await?;
        }
        tx.commit().await.map_err(db("approving"))?;
        if after.complete() {
            self.wake.notify_one();
        }
        self.request(user, id).await
    }

    /// Rejects a pending request with a reason.
    pub async fn reject(
        &self,
        user: &User,
        id: &str,
        reason: &str,
    ) -> Result<AccessRequest, ControlError> {
        let request = self.request(user, id).await?;
        self.may_approve(user, &request)?;
        let mut tx = self.store.begin().await.map_err(db("rejecting"))?;
        decide_pending(
            &mut tx,
            user,
            &request,
            Decision::Rejected,
            Some(reason),
            None,
        )
        .await?;
        tx.commit().await.map_err(db("rejecting"))?;
        self.request(user, id).await
    }

    /// Revokes a request early (its requester or an admin): every session it holds is revoked
    /// now. A pending request is withdrawn.
    pub async fn revoke(&self, user: &User, id: &str) -> Result<AccessRequest, ControlError> {
        let request = self.request(user, id).await?;
        if !(user.admin || request.requester.eq_ignore_ascii_case(&user.email)) {
            return Err(ControlError::Forbidden(
                "only the requester or an admin revokes a request".into(),
            ));
        }
        let now = now_ms();
        let mut tx = self.store.begin().await.map_err(db("revoking"))?;
        if request.status == RequestStatus::Pending {
            sqlx::query("UPDATE requests SET status = 'Revoked', decided_by = $1, updated_at = $2 WHERE id = $3 AND status = 'Pending'")
                .bind(&user.email)
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db("revoking"))?;
        }
        for grant_id in &request.session_ids {
            request_grant_revoke(&mut tx, grant_id, now).await?;
        }
        audit::append(
            &mut tx,
            AuditEntry {
                actor: &user.email,
                action: "request.revoked",
                subject: id,
                outcome: "ok",
                details: json!({ "sessions": request.session_ids }),
            },
        )
        .await?;
        refresh_request(&mut tx, id).await?;
        tx.commit().await.map_err(db("revoking"))?;
        self.wake.notify_one();
        self.request(user, id).await
    }

    // ------------------------------------------------------------------ sessions

    /// Access sessions the caller may see (admins: all).
    pub async fn sessions(
        &self,
        user: &User,
        all: bool,
    ) -> Result<Vec<AccessSession>, ControlError> {
        if all && !user.admin {
            return Err(ControlError::Forbidden(
                "only admins list all sessions".into(),
            ));
        }
        let rows = if all {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SESSION_COLUMNS} FROM grants ORDER BY created_at DESC LIMIT 1000"
            )))
            .fetch_all(self.store.pool())
            .await
        } else {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SESSION_COLUMNS} FROM grants WHERE grantee_email = $1 ORDER BY created_at DESC LIMIT 1000"
            )))
            .bind(&user.email)
            .fetch_all(self.store.pool())
            .await
        }
        .map_err(db("listing sessions"))?;
        rows.iter().map(AccessSession::from_row).collect()
    }

    /// One access session, if the caller may see it.
    pub async fn session(&self, user: &User, id: &str) -> Result<AccessSession, ControlError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM grants WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.store.pool())
        .await
        .map_err(db("reading a session"))?
        .ok_or_else(|| ControlError::NotFound(format!("session {id}")))?;
        let session = AccessSession::from_row(&row)?;
        if !(user.admin || session.grantee.eq_ignore_ascii_case(&user.email)) {
            return Err(ControlError::NotFound(format!("session {id}")));
        }
        Ok(session)
    }

    /// The access details of a session. One-time credentials are included the first time
    /// (status `new` → `viewed`) and masked afterwards.
    pub async fn access_details(
        &self,
        user: &User,
        id: &str,
    ) -> Result<serde_json::Value, ControlError> {
        let session = self.session(user, id).await?;
        if !session.grantee.eq_ignore_ascii_case(&user.email) {
            return Err(ControlError::Forbidden(
                "only the grantee sees access details".into(),
            ));
        }
        if session.status != GrantStatus::Active {
            return Err(ControlError::Conflict(format!(
                "session is {}, not Active",
                session.status
            )));
        }
        let access: Option<String> = sqlx::query_scalar("SELECT access FROM grants WHERE id = $1")
            .bind(id)
            .fetch_one(self.store.pool())
            .await
            .map_err(db("reading access details"))?;
        let mut details: serde_json::Value = access
            .as_deref()
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| ControlError::Corrupt(e.to_string()))?
            .unwrap_or_else(|| json!({}));
        let credentials = self
            .credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        let mut tx = self
            .store
            .begin()
            .await
            .map_err(db("showing access details"))?;
        let shown = match credentials {
            Some(credentials)
                if session.credential_status == Some(apono_core::CredentialStatus::New) =>
            {
                let mut map = serde_json::Map::new();
                for c in &credentials {
                    map.insert(c.name.clone(), c.value.expose_secret().into());
                }
                details["credentials"] = serde_json::Value::Object(map);
                sqlx::query(
                    "UPDATE grants SET credential_status = 'viewed', updated_at = $1 WHERE id = $2",
                )
                .bind(now_ms())
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db("showing access details"))?;
                true
            }
            _ => {
                details["credentials"] = json!("[shown once; use reset-credentials for new ones]");
                false
            }
        };
        details["credential_status"] = json!(if shown { "new" } else { "viewed" });
        audit::append(
            &mut tx,
            AuditEntry {
                actor: &user.email,
                action: "session.access_details",
                subject: id,
                outcome: "ok",
                details: json!({ "credentials_shown": shown }),
            },
        )
        .await?;
        tx.commit().await.map_err(db("showing access details"))?;
        Ok(details)
    }

    /// Asks for fresh credentials (`reset-credentials`), run by the scheduler at once.
    pub async fn reset_credentials(
        &self,
        user: &User,
        id: &str,
    ) -> Result<AccessSession, ControlError> {
        let session = self.session(user, id).await?;
        if session.status != GrantStatus::Active {
            return Err(ControlError::Conflict(format!(
                "session is {}, not Active",
                session.status
            )));
        }
        let mut tx = self
            .store
            .begin()
            .await
            .map_err(db("resetting credentials"))?;
        upsert_job(
            &mut tx,
            job::ROTATE,
            id,
            &target_of(&session.integration, &session.resource_id),
            now_ms(),
        )
        .await?;
        audit::append(
            &mut tx,
            AuditEntry {
                actor: &user.email,
                action: "session.reset_credentials",
                subject: id,
                outcome: "requested",
                details: json!({}),
            },
        )
        .await?;
        tx.commit().await.map_err(db("resetting credentials"))?;
        self.wake.notify_one();
        Ok(session)
    }

    pub(crate) fn keep_credentials(&self, grant_id: &str, credentials: Vec<Credential>) {
        let mut map = self
            .credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if credentials.is_empty() {
            map.remove(grant_id);
        } else {
            map.insert(grant_id.to_owned(), credentials);
        }
    }

    pub(crate) fn forget_credentials(&self, grant_id: &str) {
        self.credentials
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(grant_id);
    }

    /// Rebuilds the spec the provisioner saw from a grant row.
    pub(crate) fn spec_from_row(row: &sqlx::any::AnyRow) -> Result<GrantSpec, ControlError> {
        let corrupt = |e: String| ControlError::Corrupt(e);
        let resource: String = get(row, "resource")?;
        let grantee: String = get(row, "grantee")?;
        let permission: String = get(row, "permission")?;
        let id: String = get(row, "id")?;
        let expires: Option<i64> = get(row, "expires_at")?;
        Ok(GrantSpec {
            grant_id: GrantId::new(id).map_err(|e| corrupt(e.to_string()))?,
            grantee: serde_json::from_str(&grantee).map_err(|e| corrupt(e.to_string()))?,
            resource: serde_json::from_str(&resource).map_err(|e| corrupt(e.to_string()))?,
            permission: Permission::new(permission),
            expires_at: crate::model::ts(expires.unwrap_or_else(now_ms)),
            custom_parameters: BTreeMap::new(),
        })
    }

    pub(crate) fn state_from_row(
        row: &sqlx::any::AnyRow,
    ) -> Result<Option<GrantState>, ControlError> {
        let state: Option<String> = get(row, "state")?;
        state
            .map(|s| serde_json::from_str(&s).map(GrantState::from_json))
            .transpose()
            .map_err(|e| ControlError::Corrupt(e.to_string()))
    }

    /// Resource types offered, from the inventory.
    pub async fn resource_types(&self) -> Result<Vec<(String, ResourceType)>, ControlError> {
        let mut out = Vec::new();
        for (name, inventory) in self.inventory().await? {
            let mut types: Vec<ResourceType> = inventory
                .resources
                .iter()
                .map(|r| r.resource_type.clone())
                .chain(
                    inventory
                        .permissions
                        .iter()
                        .map(|p| p.resource_type.clone()),
                )
                .collect();
            types.sort();
            types.dedup();
            out.extend(types.into_iter().map(|t| (name.clone(), t)));
        }
        Ok(out)
    }
}

pub(crate) fn target_of(integration: &str, resource_id: &str) -> String {
    format!("{integration}/{resource_id}")
}

/// Creates a job, or moves an existing one to `due_at` (resetting its attempts).
pub(crate) async fn upsert_job(
    tx: &mut AnyConnection,
    kind: &str,
    subject: &str,
    target: &str,
    due_at: i64,
) -> Result<(), ControlError> {
    sqlx::query(
        "INSERT INTO jobs (kind, subject, target, due_at, attempts, created_at) VALUES ($1, $2, $3, $4, 0, $5) ON CONFLICT (kind, subject) DO UPDATE SET due_at = excluded.due_at, attempts = 0, last_error = NULL",
    )
    .bind(kind)
    .bind(subject)
    .bind(target)
    .bind(due_at)
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(db("scheduling"))?;
    Ok(())
}

/// Marks a grant for revocation now: the expiry moves to now and the revoke job becomes due.
pub(crate) async fn request_grant_revoke(
    tx: &mut AnyConnection,
    grant_id: &str,
    now: i64,
) -> Result<(), ControlError> {
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT status, integration, resource_id FROM grants WHERE id = $1")
            .bind(grant_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("revoking"))?;
    let Some((status, integration, resource_id)) = row else {
        return Ok(());
    };
    sqlx::query("UPDATE grants SET revoke_requested_at = $1, expires_at = CASE WHEN expires_at IS NULL OR expires_at > $1 THEN $1 ELSE expires_at END, updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(grant_id)
        .execute(&mut *tx)
        .await
        .map_err(db("revoking"))?;
    if matches!(status.as_str(), "Active" | "RevokeFailed") {
        // Visible at once; the revoke job carries on from Revoking.
        sqlx::query("UPDATE grants SET status = 'Revoking' WHERE id = $1 AND status IN ('Active', 'RevokeFailed')")
            .bind(grant_id)
            .execute(&mut *tx)
            .await
            .map_err(db("revoking"))?;
    }
    if matches!(status.as_str(), "Active" | "Revoking" | "RevokeFailed") {
        upsert_job(
            tx,
            job::REVOKE,
            grant_id,
            &target_of(&integration, &resource_id),
            now,
        )
        .await?;
    }
    // Pending and Granting grants: the grant job sees `revoke_requested_at` and finishes them.
    Ok(())
}

/// Derives a request's status from its sessions' (`None`: nothing to derive from).
pub(crate) async fn derived_status(
    conn: &mut AnyConnection,
    request_id: &str,
) -> Result<Option<&'static str>, ControlError> {
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT g.status, COUNT(*) FROM grants g JOIN request_grants rg ON rg.grant_id = g.id WHERE rg.request_id = $1 GROUP BY g.status",
    )
    .bind(request_id)
    .fetch_all(&mut *conn)
    .await
    .map_err(db("deriving a request's status"))?;
    if counts.is_empty() {
        return Ok(None);
    }
    let any = |s: &[&str]| counts.iter().any(|(x, _)| s.contains(&x.as_str()));
    Ok(Some(if any(&["Pending", "Granting"]) {
        "Granting"
    } else if any(&["Active"]) {
        "Active"
    } else if any(&["Revoking", "RevokeFailed"]) {
        "Revoking"
    } else if counts.iter().all(|(s, _)| s == "Failed") {
        "Failed"
    } else {
        "Revoked"
    }))
}

/// Writes a request's derived status down (requests still `Pending` or `Rejected` keep theirs).
pub(crate) async fn refresh_request(
    tx: &mut AnyConnection,
    request_id: &str,
) -> Result<(), ControlError> {
    let current: Option<(String,)> = sqlx::query_as("SELECT status FROM requests WHERE id = $1")
        .bind(request_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db("refreshing a request"))?;
    let Some((current,)) = current else {
        return Ok(());
    };
    if current == "Rejected" || current == "Pending" {
        return Ok(());
    }
    if let Some(next) = derived_status(tx, request_id).await?
        && next != current
    {
        sqlx::query("UPDATE requests SET status = $1, updated_at = $2 WHERE id = $3")
            .bind(next)
            .bind(now_ms())
            .bind(request_id)
            .execute(&mut *tx)
            .await
            .map_err(db("refreshing a request"))?;
    }
    Ok(())
}
