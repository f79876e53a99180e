//! [`ControlPlane`]: the wiring of the [`Ledger`](crate::ledger), the
//! [`Policy`](crate::policy) and the [`Scheduler`](crate::scheduler) behind the operations the
//! API offers. Each operation reads what it needs from the ledger, asks the policy, and hands
//! the decision back to the ledger to make durable.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use apono_core::{AccountNaming, CancelSignal, GrantStatus, Grantee, Inventory, ResourceType};
use apono_runtime::Executor;
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::config::{Config, User};
use crate::error::ControlError;
use crate::keys::Keyring;
use crate::ledger::audit::AuditEntry;
use crate::ledger::jobs::target_of;
use crate::ledger::store::Store;
use crate::ledger::{Decision, GrantPlan, Ledger, RequestFilter, RequestRecord};
use crate::metrics::{self, RevokeLag};
use crate::model::now_ms;
use crate::model::{AccessRequest, AccessSession, ApiToken, CreatedToken, DryRun, NewRequest};
use crate::policy::{Evaluation, Policy, Route};
use crate::refusals::Refusals;
use crate::scheduler::{Scheduler, Wake};
use crate::watch::{self, Versioned};

mod agents;
pub use agents::{AgentIdentity, CONNECTOR_OFFLINE, CreatedConnectorCredential};

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

/// Whose tokens a list shows.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum TokenScope {
    /// The caller's own.
    #[default]
    Mine,
    /// One user's (admins, or the caller themselves).
    User(String),
    /// Everyone's (admins).
    All,
}

/// A token to create: its name (default `token`) and how long it lasts (default
/// `connector.token_default_expiry`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewToken {
    /// A name to tell tokens apart in lists.
    pub name: Option<String>,
    /// How long from now it works.
    pub expires_in: Option<std::time::Duration>,
}

/// The control plane: the configuration, the ledger over the store, and the scheduler that
/// runs the ledger's jobs on the executor.
#[derive(Debug)]
pub struct ControlPlane {
    config: Arc<Config>,
    ledger: Arc<Ledger>,
    scheduler: Arc<Scheduler>,
    lag: Arc<RevokeLag>,
    wake: Arc<Wake>,
    naming: AccountNaming,
    token_seen: Mutex<HashMap<String, i64>>,
    refusals: Refusals,
    /// Fired when the API stops: watches answer at once.
    closing: CancelSignal,
    channels: std::sync::OnceLock<crate::notify::Channels>,
    /// Sign-in through `[[identity_providers]]`.
    sso: crate::identity::Sso,
}

fn hash_token(token: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(token.as_bytes()))
}

impl ControlPlane {
    /// A control plane over `store` with `config`, executing through `executor`.
    ///
    /// The master key (`connector.master_key`) is loaded on first use (at the latest by
    /// [`ControlPlane::bootstrap`]), through the executor's secret resolver when it is kept in
    /// a secret store.
    pub fn new(store: Store, config: Config, executor: Arc<Executor>) -> Arc<Self> {
        let keyring = Keyring::new(
            config.connector.master_key.clone(),
            config.connector.data_dir.clone(),
            store.backend(),
            executor.clone(),
        );
        let owner = format!("{}/{}", config.connector.id, crate::ledger::new_id(""));
        let sso = crate::identity::Sso::new(&config.identity_providers);
        let config = Arc::new(config);
        let routes = Arc::new(crate::ledger::outbox::Routes::new(&config.notifications));
        let ledger = Arc::new(Ledger::new(store, owner, Arc::new(keyring), routes));
        let lag = Arc::new(RevokeLag::default());
        let wake = Arc::new(Wake::default());
        let scheduler = Arc::new(Scheduler::new(
            ledger.clone(),
            config.clone(),
            executor,
            lag.clone(),
            wake.clone(),
        ));
        Arc::new(Self {
            config,
            ledger,
            scheduler,
            lag,
            wake,
            naming: AccountNaming::new(),
            token_seen: Mutex::new(HashMap::new()),
            refusals: Refusals::default(),
            closing: CancelSignal::new(),
            channels: std::sync::OnceLock::new(),
            sso,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &Store {
        self.ledger.store()
    }

    /// The ledger (for the sign-in module's records).
    pub(crate) fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Sign-in through the identity providers.
    pub(crate) fn sso(&self) -> &crate::identity::Sso {
        &self.sso
    }

    /// Wakes the scheduler (grants to revoke now).
    pub(crate) fn wake_scheduler(&self) {
        self.wake.notify_one();
    }

    /// The executor.
    pub fn executor(&self) -> &Arc<Executor> {
        &self.scheduler.executor
    }

    /// Verifies the audit chain with this connector's audit key (the report names the key id).
    pub async fn verify_audit(&self) -> Result<crate::audit::ChainReport, ControlError> {
        let keys = self.ledger.keys().await?;
        crate::audit::verify(self.ledger.store(), &keys).await
    }

    fn policy(&self) -> Policy<'_> {
        Policy::new(&self.config)
    }

    /// Audits a refusal (rate-limited, see `refusals.rs`) and hands the error back. A failure
    /// to audit never hides the refusal itself.
    pub(crate) async fn refused(
        &self,
        actor: &str,
        action: &'static str,
        subject: &str,
        error: ControlError,
    ) -> ControlError {
        if let Some(left_out) = self.refusals.admit(actor, action) {
            let entry = AuditEntry {
                actor,
                action,
                subject,
                outcome: "denied",
                details: json!({ "error": error.to_string(), "refusals_left_out": left_out }),
            };
            if let Err(e) = self.ledger.audit(entry).await {
                tracing::warn!(error = %e, "cannot audit a refusal");
            }
        }
        error
    }

    /// `result`, with a refusal (`Forbidden`) audited.
    async fn audited<T>(
        &self,
        actor: &str,
        action: &'static str,
        subject: &str,
        result: Result<T, ControlError>,
    ) -> Result<T, ControlError> {
        match result {
            Err(e @ ControlError::Forbidden(_)) => {
                Err(self.refused(actor, action, subject, e).await)
            }
            other => other,
        }
    }

    /// Records the configuration load in the audit log, makes sure every integration has a
    /// discovery job, and revokes the grants (and withdraws the pending requests) of people no
    /// longer in the configuration.
    pub async fn bootstrap(&self) -> Result<(), ControlError> {
        let names: Vec<&str> = self
            .config
            .integrations
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        let summary = json!({
            "integrations": names,
            "users": self.config.users.len(),
            "access_flows": self.config.access_flows.iter().map(|f| &f.name).collect::<Vec<_>>(),
        });
        for integration in &self.config.integrations {
            if integration.secret_store.kind() == apono_core::SecretStoreKind::Apono {
                tracing::warn!(
                    integration = %integration.name,
                    "the integration's admin secret is written inline in the configuration; \
                     not recommended for production, use a secret manager"
                );
            }
        }
        self.sso.warn_inline_secrets();
        // People who signed in through an identity provider are users too.
        let signed_in = self.sso_users().await?;
        self.ledger
            .bootstrap(&self.config.connector.id, summary, &names, |email| {
                self.config.user(email).is_some() || signed_in.contains(&email.to_ascii_lowercase())
            })
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Runs the scheduler until `shutdown` fires (claims due jobs and runs them on the executor).
    pub async fn run_scheduler(
        self: Arc<Self>,
        shutdown: CancelSignal,
    ) -> Result<(), ControlError> {
        self.scheduler.clone().run(shutdown).await
    }

    /// Gives the notification channels of `[[notifications]]` (built by `apono-server`), once,
    /// before [`ControlPlane::run_notifications`]; later calls change nothing.
    pub fn set_notification_channels(&self, channels: crate::notify::Channels) {
        let _ = self.channels.set(channels);
    }

    /// The notification channel named `name`, if it was given.
    pub(crate) fn notification_channel(
        &self,
        name: &str,
    ) -> Option<&Arc<dyn apono_notify::Deliver>> {
        self.channels.get().and_then(|c| c.get(name))
    }

    /// Delivers queued notifications until `shutdown` fires (see `notify`); returns at once
    /// when no channel is configured.
    pub async fn run_notifications(
        self: Arc<Self>,
        shutdown: CancelSignal,
    ) -> Result<(), ControlError> {
        let worker = crate::notify::Worker {
            ledger: self.ledger.clone(),
            config: self.config.clone(),
            executor: self.scheduler.executor.clone(),
            channels: self.channels.get().cloned().unwrap_or_default(),
            plane: Arc::downgrade(&self),
        };
        Arc::new(worker).run(shutdown).await
    }

    /// Runs every job due now until none is left (tests and `discover`).
    pub async fn run_due_once(self: &Arc<Self>) -> Result<usize, ControlError> {
        self.scheduler.run_due_once().await
    }

    /// The metrics in Prometheus text format (the list of metrics is in `docs/control-plane.md`).
    pub async fn metrics_text(&self) -> Result<String, ControlError> {
        let gauges = self.ledger.gauges().await?;
        Ok(metrics::render(
            &gauges,
            self.scheduler.executor.in_flight(),
            &self.lag,
        ))
    }

    // ------------------------------------------------------------------ tokens

    /// Creates a personal API token for `email` with the default name and expiry, and returns
    /// it; only its hash is stored.
    pub async fn create_token(&self, email: &str) -> Result<String, ControlError> {
        let created = self.issue_token(None, email, &NewToken::default()).await?;
        Ok(created.token.expose_secret().to_owned())
    }

    /// Creates a personal API token for `email`: by an admin (`by`), or by the operator on
    /// the connector's host (`None`). Its expiry is `connector.token_default_expiry` unless
    /// `new` names one, and never beyond `connector.token_max_expiry`. Only its hash is
    /// stored; the token is in the answer, once.
    pub async fn issue_token(
        &self,
        by: Option<&User>,
        email: &str,
        new: &NewToken,
    ) -> Result<CreatedToken, ControlError> {
        let actor = by.map_or("connector", |u| u.email.as_str());
        if by.is_some_and(|u| !u.admin && !u.email.eq_ignore_ascii_case(email)) {
            return Err(self
                .refused(
                    actor,
                    "token.create",
                    email,
                    ControlError::Forbidden("only admins create tokens for others".into()),
                )
                .await);
        }
        let user = self
            .config
            .user(email)
            .ok_or_else(|| ControlError::NotFound(format!("user {email}")))?;
        let c = &self.config.connector;
        let expiry = new.expires_in.unwrap_or(c.token_default_expiry.0);
        let mut problems = Vec::new();
        if expiry > c.token_max_expiry.0 || expiry.is_zero() {
            problems.push(format!(
                "the expiry must be more than 0 and at most {} (connector.token_max_expiry)",
                c.token_max_expiry
            ));
        }
        let name = new.name.as_deref().unwrap_or("token").trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            problems.push(
                "a token's name has 1 to 100 characters, none of them control characters".into(),
            );
        }
        if !problems.is_empty() {
            return Err(ControlError::Invalid(problems));
        }
        let secret: [u8; 32] = rand::random();
        let token = format!(
            "apono_{}",
            data_encoding::BASE32_NOPAD
                .encode(&secret)
                .to_ascii_lowercase()
        );
        let expires_at = now_ms() + i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX / 2);
        let info = self
            .ledger
            .insert_token(actor, &user.email, name, &hash_token(&token), expires_at)
            .await?;
        Ok(CreatedToken {
            info,
            token: token.into(),
        })
    }

    fn legacy_token_ms(&self) -> i64 {
        i64::try_from(self.config.connector.token_max_expiry.0.as_millis()).unwrap_or(i64::MAX / 2)
    }

    /// Lists tokens (never the tokens themselves): the caller's own, one user's or everyone's
    /// (admins, or the operator on the connector's host: `by = None`).
    pub async fn tokens(
        &self,
        by: Option<&User>,
        scope: TokenScope,
    ) -> Result<Vec<ApiToken>, ControlError> {
        let email = match (&scope, by) {
            (TokenScope::Mine, Some(user)) => Some(user.email.as_str()),
            (TokenScope::Mine, None) => {
                return Err(ControlError::Invalid(vec![
                    "the operator has no tokens of their own: name a user or all".into(),
                ]));
            }
            (TokenScope::User(email), Some(user))
                if !user.admin && !user.email.eq_ignore_ascii_case(email) =>
            {
                return Err(ControlError::Forbidden(
                    "only admins list other users' tokens".into(),
                ));
            }
            (TokenScope::All, Some(user)) if !user.admin => {
                return Err(ControlError::Forbidden(
                    "only admins list every token".into(),
                ));
            }
            (TokenScope::User(email), _) => Some(email.as_str()),
            (TokenScope::All, _) => None,
        };
        self.ledger.tokens(email, self.legacy_token_ms()).await
    }

    /// Revokes token `id`: its owner or an admin (`by`), or the operator (`None`). Effective
    /// on every replica at the next request (tokens are checked in the database each time).
    /// Someone else's token does not exist for a non-admin.
    pub async fn revoke_token(
        &self,
        by: Option<&User>,
        id: &str,
    ) -> Result<ApiToken, ControlError> {
        let actor = by.map_or("connector", |u| u.email.as_str());
        let revoked = self
            .ledger
            .revoke_token(id, actor, |owner| match by {
                Some(user) if !user.admin && !user.email.eq_ignore_ascii_case(owner) => {
                    Err(ControlError::Forbidden(format!("token {id} is not yours")))
                }
                _ => Ok(()),
            })
            .await;
        let owner = match revoked {
            Ok(Some(owner)) => owner,
            Ok(None) => return Err(ControlError::NotFound(format!("token {id}"))),
            Err(e @ ControlError::Forbidden(_)) => {
                self.refused(actor, "token.revoke", id, e).await;
                return Err(ControlError::NotFound(format!("token {id}")));
            }
            Err(e) => return Err(e),
        };
        self.ledger
            .tokens(Some(&owner), self.legacy_token_ms())
            .await?
            .into_iter()
            .find(|t| t.id == id)
            .ok_or_else(|| ControlError::NotFound(format!("token {id}")))
    }

    /// The user a bearer token belongs to. A person removed from the configuration is refused
    /// at once.
    pub async fn authenticate(&self, token: &str) -> Result<User, ControlError> {
        let hash = hash_token(token);
        let Some((id, email)) = self.ledger.token(&hash, self.legacy_token_ms()).await? else {
            // Unknown tokens are audited under one actor, so a flood of them is one record a
            // minute; the subject is a short prefix of the token's hash, never the token.
            let subject = format!("sha256:{}", &hash[..12]);
            return Err(self
                .refused(
                    "anonymous",
                    "token.use",
                    &subject,
                    ControlError::Unauthenticated,
                )
                .await);
        };
        // A sign-in's token: the identity provider's user, groups fresh.
        let from_sso = if self.sso.enabled() {
            self.sso.user_for_token(self, &id).await?
        } else {
            None
        };
        let Some(user) = from_sso.or_else(|| self.config.user(&email).cloned()) else {
            return Err(self
                .refused(&email, "token.use", &id, ControlError::Unauthenticated)
                .await);
        };
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
            self.ledger.token_used(&id, &user.email).await?;
        }
        Ok(user)
    }

    // ------------------------------------------------------------------ inventory

    /// The discovered inventory of every configured integration.
    pub async fn inventory(&self) -> Result<BTreeMap<String, Inventory>, ControlError> {
        let mut all = self.ledger.inventory().await?;
        all.retain(|name, _| self.config.integration(name).is_some());
        Ok(all)
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

    // ------------------------------------------------------------------ requests

    /// The grants an allowed request would extend instead of creating.
    async fn extends(
        &self,
        user: &User,
        req: &NewRequest,
        evaluation: &Evaluation<'_>,
    ) -> Result<Vec<String>, ControlError> {
        let mut extends = Vec::new();
        if evaluation.allowed {
            for r in &evaluation.resources {
                if let Some(id) = self
                    .ledger
                    .held_grant(
                        &user.email,
                        &req.integration,
                        &req.resource_type,
                        &r.id,
                        &req.permission,
                    )
                    .await?
                {
                    extends.push(id);
                }
            }
        }
        Ok(extends)
    }

    /// Checks `req` against the access flows without creating anything.
    pub async fn dry_run(&self, user: &User, req: &NewRequest) -> Result<DryRun, ControlError> {
        let inventory = self.inventory().await?;
        let evaluation = self.policy().evaluate(user, req, &inventory, None);
        let extends_sessions = self.extends(user, req, &evaluation).await?;
        Ok(DryRun {
            allowed: evaluation.allowed,
            flow: evaluation.flow.map(|f| f.name.clone()),
            approval_required: evaluation.flow.is_some_and(|f| f.needs_approval()),
            approval_route: evaluation.route.as_ref().map(Route::shown),
            max_duration: evaluation.flow.map(|f| f.grant_duration.to_string()),
            integration_status: self.integration_offline(&req.integration).await,
            problems: evaluation.problems,
            extends_sessions,
        })
    }

    fn plan(&self, requester: &User, req: &NewRequest, evaluation: &Evaluation<'_>) -> GrantPlan {
        let grantee = Grantee {
            id: requester.email.clone(),
            email: requester.email.clone(),
            display_name: String::new(),
            groups: requester.groups.clone(),
        };
        let account: apono_core::LinuxUsername = self.naming.account_for(&grantee);
        let account = account.into_string();
        GrantPlan {
            grantee,
            account,
            integration: req.integration.clone(),
            resource_type: req.resource_type.clone(),
            permission: req.permission.clone(),
            resources: evaluation.resources.clone(),
            duration_secs: evaluation.duration.unwrap_or_default().as_secs() as i64,
        }
    }

    /// Creates an access request. Requests that need no approval start granting at once.
    pub async fn create_request(
        &self,
        user: &User,
        req: &NewRequest,
    ) -> Result<AccessRequest, ControlError> {
        let inventory = self.inventory().await?;
        let evaluation = self.policy().evaluate(user, req, &inventory, None);
        let (Some(flow), Some(duration), true) =
            (evaluation.flow, evaluation.duration, evaluation.allowed)
        else {
            let messages: Vec<String> =
                evaluation.problems.into_iter().map(|p| p.message).collect();
            return Err(self
                .refused(
                    &user.email,
                    "request.create",
                    &req.integration,
                    ControlError::Invalid(messages),
                )
                .await);
        };
        let justification = req.justification.clone().unwrap_or_default();
        let record = RequestRecord {
            requester: &user.email,
            flow: &flow.name,
            integration: &req.integration,
            resource_type: &req.resource_type,
            resource_ids: &req.resource_ids,
            permission: &req.permission,
            justification: &justification,
            duration_secs: duration.as_secs() as i64,
        };
        let details = json!({
            "flow": flow.name, "integration": req.integration,
            "resource_type": req.resource_type, "resource_ids": req.resource_ids,
            "permission": req.permission, "duration_seconds": duration.as_secs(),
        });
        let auto = (!flow.needs_approval()).then(|| self.plan(user, req, &evaluation));
        let id = self
            .ledger
            .create_request(&record, details, auto.as_ref())
            .await?;
        self.wake.notify_one();
        self.request(user, &id).await
    }

    /// One request, if the caller may see it (requester, approver or admin).
    pub async fn request(&self, user: &User, id: &str) -> Result<AccessRequest, ControlError> {
        Ok(self.request_routed(user, id).await?.0)
    }

    /// One request the caller may see, with who approves it now.
    async fn request_routed(
        &self,
        user: &User,
        id: &str,
    ) -> Result<(AccessRequest, Option<Route>), ControlError> {
        let not_found = || ControlError::NotFound(format!("request {id}"));
        let mut request = self.ledger.request(id).await?.ok_or_else(not_found)?;
        let route = self
            .policy()
            .request_route(&request, &self.inventory().await?);
        if !self.policy().may_see(user, &request, route.as_ref()) {
            return Err(not_found());
        }
        self.show_route(&mut request, route.as_ref());
        Ok((request, route))
    }

    /// Fills in what a request waits for: the unmet `all_of` entries, and, while `Pending`,
    /// who approves it.
    fn show_route(&self, request: &mut AccessRequest, route: Option<&Route>) {
        request.awaiting = self.policy().awaiting(request, route);
        request.approval_route = route
            .filter(|_| request.status == apono_core::RequestStatus::Pending)
            .map(Route::shown);
    }

    /// Lists requests.
    pub async fn requests(
        &self,
        user: &User,
        scope: RequestScope,
    ) -> Result<Vec<AccessRequest>, ControlError> {
        let filter = match scope {
            RequestScope::Mine => RequestFilter::By(&user.email),
            RequestScope::AwaitingMyApproval => RequestFilter::Pending,
            RequestScope::All if user.admin => RequestFilter::All,
            RequestScope::All => {
                return Err(ControlError::Forbidden(
                    "only admins list all requests".into(),
                ));
            }
        };
        let policy = self.policy();
        let inventory = self.inventory().await?;
        let mut out = Vec::new();
        for mut request in self.ledger.requests(filter).await? {
            let route = policy.request_route(&request, &inventory);
            self.show_route(&mut request, route.as_ref());
            if scope == RequestScope::AwaitingMyApproval
                && !policy.awaits_approval_of(user, &request, route.as_ref())
            {
                continue;
            }
            out.push(request);
        }
        Ok(out)
    }

    /// Approves a pending request and starts granting, after checking it again against the
    /// current configuration (flow, requester, target, permission, maximum duration). A
    /// `reason`, when given, is recorded in the request and the audit log.
    pub async fn approve(
        &self,
        user: &User,
        id: &str,
        reason: Option<&str>,
    ) -> Result<AccessRequest, ControlError> {
        let policy = self.policy();
        policy.check_reason(reason)?;
        let (request, route) = self.request_routed(user, id).await?;
        self.audited(
            &user.email,
            "request.approve",
            id,
            policy.may_approve(user, &request, route.as_ref()),
        )
        .await?;
        if request.status != apono_core::RequestStatus::Pending {
            return Err(ControlError::Conflict(format!(
                "request is {}, not Pending",
                request.status
            )));
        }
        let inventory = self.inventory().await?;
        let requester = self.current_user(&request.requester).await?;
        let evaluation = policy.recheck(requester.as_ref(), &request, &inventory)?;
        let requester = requester
            .as_ref()
            .ok_or_else(|| ControlError::Conflict("the requester is no longer a user".into()))?;
        let new = NewRequest {
            integration: request.integration.clone(),
            resource_type: request.resource_type.clone(),
            resource_ids: request.resource_ids.clone(),
            permission: request.permission.clone(),
            justification: None,
            duration: None,
        };
        let plan = self.plan(requester, &new, &evaluation);
        let reason = reason.map(str::trim).filter(|r| !r.is_empty());
        let started = match policy.all_of_flow(&request, route.as_ref()) {
            Some(flow) => {
                self.ledger
                    .approve_all_of(id, &user.email, reason, &plan, |given| {
                        policy.all_of_step(flow, user, id, given, reason)
                    })
                    .await?
            }
            None => {
                self.ledger
                    .decide(id, &user.email, Decision::Approved, reason, Some(&plan))
                    .await?;
                true
            }
        };
        if started {
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
        let policy = self.policy();
        policy.check_reason(Some(reason))?;
        let (request, route) = self.request_routed(user, id).await?;
        self.audited(
            &user.email,
            "request.reject",
            id,
            policy.may_approve(user, &request, route.as_ref()),
        )
        .await?;
        self.ledger
            .decide(id, &user.email, Decision::Rejected, Some(reason), None)
            .await?;
        self.request(user, id).await
    }

    /// Revokes a request early (its requester or an admin): every session it holds is revoked
    /// now; a pending request is withdrawn. Decided on the locked request inside one
    /// transaction, so a revoke racing an approval always wins.
    pub async fn revoke(&self, user: &User, id: &str) -> Result<AccessRequest, ControlError> {
        // Visibility first: a request the caller may not see does not exist for them.
        self.request(user, id).await?;
        let policy = self.policy();
        let revoked = self
            .ledger
            .revoke_request(id, &user.email, |requester| {
                policy.may_revoke(user, requester)
            })
            .await;
        self.audited(&user.email, "request.revoke", id, revoked)
            .await?;
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
        self.ledger
            .sessions((!all).then_some(user.email.as_str()))
            .await
    }

    /// One access session, if the caller may see it.
    pub async fn session(&self, user: &User, id: &str) -> Result<AccessSession, ControlError> {
        self.ledger
            .session(id)
            .await?
            .filter(|s| user.admin || s.grantee.eq_ignore_ascii_case(&user.email))
            .ok_or_else(|| ControlError::NotFound(format!("session {id}")))
    }

    /// The access details of a session. One-time credentials are included the first time
    /// (status `new` → `viewed`, decided in the store, so two callers at once never both see
    /// them) and masked afterwards.
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
        let mut details = self.ledger.access(id).await?;
        let sealed = self.ledger.take_credentials(id, &user.email).await?;
        let opened = match sealed {
            Some(sealed) => Some(self.ledger.keys().await?.open(id, &sealed)),
            None => None,
        };
        let shown = match opened {
            Some(Ok(credentials)) => {
                let mut map = serde_json::Map::new();
                for (name, value) in &credentials {
                    map.insert(name.clone(), value.expose_secret().into());
                }
                details["credentials"] = serde_json::Value::Object(map);
                true
            }
            Some(Err(e)) => {
                // Deleted all the same: unreadable now means unreadable for good.
                tracing::warn!(session = %id, error = %e, "one-time credentials could not be unsealed");
                details["credentials"] = json!(format!(
                    "[the one-time credentials could not be unsealed ({e}); use reset-credentials for new ones]"
                ));
                false
            }
            None => {
                details["credentials"] = json!("[shown once; use reset-credentials for new ones]");
                false
            }
        };
        details["credential_status"] = json!(if shown { "new" } else { "viewed" });
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
        self.ledger
            .request_rotation(
                id,
                &target_of(&session.integration, &session.resource_id),
                &user.email,
            )
            .await?;
        self.wake.notify_one();
        Ok(session)
    }

    // ------------------------------------------------------------------ audit

    /// Audit records after `after` (at most `limit`, clamped to 1..=100000), about `subject`
    /// only when given; admins only.
    pub async fn audit_records(
        &self,
        user: &User,
        after: i64,
        limit: i64,
        subject: Option<&str>,
    ) -> Result<Vec<crate::audit::AuditRecord>, ControlError> {
        if !user.admin {
            return Err(ControlError::Forbidden(
                "only admins read the audit log".into(),
            ));
        }
        crate::audit::records(self.store(), after, limit.clamp(1, 100_000), subject).await
    }

    // ------------------------------------------------------------------ watches

    /// Request `id` once its version differs from `after` (at once without `after`), or after
    /// `wait` unchanged; visible to whoever may see the request. See [`crate::watch`].
    pub async fn watch_request(
        &self,
        user: &User,
        id: &str,
        after: Option<&str>,
        wait: std::time::Duration,
    ) -> Result<Versioned<AccessRequest>, ControlError> {
        let commits = self.store().commits();
        watch::until_changed(commits, &self.closing, after, wait, || {
            self.request(user, id)
        })
        .await
    }

    /// Session `id` once its version differs from `after`, as [`ControlPlane::watch_request`].
    pub async fn watch_session(
        &self,
        user: &User,
        id: &str,
        after: Option<&str>,
        wait: std::time::Duration,
    ) -> Result<Versioned<AccessSession>, ControlError> {
        let commits = self.store().commits();
        watch::until_changed(commits, &self.closing, after, wait, || {
            self.session(user, id)
        })
        .await
    }

    /// Ends every watch now and from now on (the API is stopping: a graceful shutdown does not
    /// wait for long polls).
    pub fn close_watches(&self) {
        self.closing.cancel();
    }

    /// The keys derived from the master key.
    pub(crate) async fn keys(&self) -> Result<Arc<crate::keys::Keys>, ControlError> {
        self.ledger.keys().await
    }
}
