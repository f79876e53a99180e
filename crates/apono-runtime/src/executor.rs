//! [`Executor`]: one action, one integration, a fresh secret, a deadline, bounded concurrency.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use apono_core::{
    Action, ActionContext, CancelSignal, ErrorKind, GrantSpec, GrantState, Granted, Integration,
    Inventory, ProvisionError, Provisioner, SecretError, StatusReport,
};
use apono_secrets::SecretResolver;
use tokio::sync::Semaphore;
use tracing::{debug, instrument};

use crate::registry::ProvisionerRegistry;

/// Concurrency and time limits of an [`Executor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecutorLimits {
    /// Actions running at once, over all targets.
    pub global: usize,
    /// Actions running at once against one target (one resource of one integration).
    pub per_target: usize,
    /// Deadline of one action, counted from the moment it got its slots (resolving the secret
    /// included).
    pub action_timeout: Duration,
}

impl Default for ExecutorLimits {
    fn default() -> Self {
        Self {
            global: 64,
            per_target: 4,
            action_timeout: Duration::from_secs(30),
        }
    }
}

/// Why an action did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No provisioner is registered for the integration's type.
    #[error("no provisioner is registered for integration type {integration_type:?}")]
    UnknownType {
        /// The type asked for.
        integration_type: String,
    },
    /// The provisioner could not be built from the integration's definition.
    #[error("integration {integration:?} cannot be set up")]
    Build {
        /// The integration.
        integration: String,
        /// Why.
        #[source]
        source: ProvisionError,
    },
    /// The integration's secret could not be read.
    #[error("secret of integration {integration:?} could not be read")]
    Secret {
        /// The integration.
        integration: String,
        /// Why.
        #[source]
        source: SecretError,
    },
    /// The provisioner failed.
    #[error("{action} on integration {integration:?} failed")]
    Action {
        /// The action.
        action: Action,
        /// The integration.
        integration: String,
        /// Why.
        #[source]
        source: ProvisionError,
    },
    /// The action's deadline passed.
    #[error("{action} on integration {integration:?} exceeded its deadline")]
    Timeout {
        /// The action.
        action: Action,
        /// The integration.
        integration: String,
    },
    /// The caller cancelled the action.
    #[error("{action} on integration {integration:?} was cancelled")]
    Cancelled {
        /// The action.
        action: Action,
        /// The integration.
        integration: String,
    },
}

impl RuntimeError {
    /// The kind of failure: [`ErrorKind::is_retryable`] says whether the scheduler should retry.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::UnknownType { .. } => ErrorKind::Unsupported,
            Self::Build { source, .. } => source.kind(),
            Self::Secret { source, .. } => source.kind(),
            Self::Action { source, .. } => source.kind(),
            Self::Timeout { .. } => ErrorKind::Timeout,
            Self::Cancelled { .. } => ErrorKind::Cancelled,
        }
    }

    /// Whether the provisioner reported the action as not implemented.
    pub fn is_unsupported(&self) -> bool {
        self.kind() == ErrorKind::Unsupported
    }
}

/// A provisioner built for an integration, with the definition it was built from.
type Built = (Integration, Arc<dyn Provisioner>);

/// One action with its inputs.
enum Request<'a> {
    GetStatus,
    ListResources,
    Grant(&'a GrantSpec),
    Revoke(&'a GrantSpec, &'a GrantState),
    Reset(&'a GrantSpec, &'a GrantState),
    Delete(&'a GrantSpec, &'a GrantState),
}

impl Request<'_> {
    fn action(&self) -> Action {
        match self {
            Self::GetStatus => Action::GetStatus,
            Self::ListResources => Action::ListResources,
            Self::Grant(_) => Action::GrantAccess,
            Self::Revoke(..) => Action::RevokeAccess,
            Self::Reset(..) => Action::ResetCredentials,
            Self::Delete(..) => Action::DeleteCredentials,
        }
    }
}

enum Outcome {
    Status(StatusReport),
    Inventory(Inventory),
    Granted(Granted),
    Done,
}

/// The stateless executor (see the [crate documentation](crate)).
pub struct Executor {
    registry: ProvisionerRegistry,
    resolver: Arc<SecretResolver>,
    limits: ExecutorLimits,
    global: Arc<Semaphore>,
    per_target: Mutex<HashMap<String, Arc<Semaphore>>>,
    built: Mutex<HashMap<String, Built>>,
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("registry", &self.registry)
            .field("resolver", &self.resolver)
            .field("limits", &self.limits)
            .finish()
    }
}

impl Executor {
    /// An executor over `registry`, reading secrets through `resolver`.
    pub fn new(
        registry: ProvisionerRegistry,
        resolver: Arc<SecretResolver>,
        limits: ExecutorLimits,
    ) -> Self {
        let limits = ExecutorLimits {
            global: limits.global.max(1),
            per_target: limits.per_target.max(1),
            ..limits
        };
        Self {
            registry,
            resolver,
            global: Arc::new(Semaphore::new(limits.global)),
            per_target: Mutex::new(HashMap::new()),
            built: Mutex::new(HashMap::new()),
            limits,
        }
    }

    /// The registry.
    pub fn registry(&self) -> &ProvisionerRegistry {
        &self.registry
    }

    /// The secret resolver (the control plane reads its master key through it when the key is
    /// kept in a secret store).
    pub fn resolver(&self) -> &SecretResolver {
        &self.resolver
    }

    /// The limits.
    pub fn limits(&self) -> ExecutorLimits {
        self.limits
    }

    /// Actions running right now.
    pub fn in_flight(&self) -> usize {
        self.limits.global - self.global.available_permits()
    }

    /// Checks that `integration` can be served: its type is registered and its configuration
    /// builds a provisioner. Touches no target and reads no secret.
    pub fn check(&self, integration: &Integration) -> Result<(), RuntimeError> {
        self.provisioner(integration).map(drop)
    }

    /// `get-status` for the integration.
    pub async fn get_status(
        &self,
        integration: &Integration,
        cancel: &CancelSignal,
    ) -> Result<StatusReport, RuntimeError> {
        match self
            .run(integration, &integration.name, Request::GetStatus, cancel)
            .await?
        {
            Outcome::Status(report) => Ok(report),
            _ => unreachable!("get-status returns a status"),
        }
    }

    /// `list-resources` for the integration; every resource is stamped with the integration's
    /// name.
    pub async fn list_resources(
        &self,
        integration: &Integration,
        cancel: &CancelSignal,
    ) -> Result<Inventory, RuntimeError> {
        match self
            .run(
                integration,
                &integration.name,
                Request::ListResources,
                cancel,
            )
            .await?
        {
            Outcome::Inventory(mut inventory) => {
                for resource in &mut inventory.resources {
                    resource.integration = integration.name.clone();
                }
                Ok(inventory)
            }
            _ => unreachable!("list-resources returns an inventory"),
        }
    }

    /// `grant-access`. The integration's custom access details are appended to the
    /// instructions.
    pub async fn grant(
        &self,
        integration: &Integration,
        grant: &GrantSpec,
        cancel: &CancelSignal,
    ) -> Result<Granted, RuntimeError> {
        let target = target_key(integration, grant);
        match self
            .run(integration, &target, Request::Grant(grant), cancel)
            .await?
        {
            Outcome::Granted(mut granted) => {
                if let Some(custom) = &integration.custom_access_details {
                    granted.access.append_custom(custom.as_str());
                }
                Ok(granted)
            }
            _ => unreachable!("grant-access returns a grant"),
        }
    }

    /// `revoke-access`.
    pub async fn revoke(
        &self,
        integration: &Integration,
        grant: &GrantSpec,
        state: &GrantState,
        cancel: &CancelSignal,
    ) -> Result<(), RuntimeError> {
        let target = target_key(integration, grant);
        self.run(integration, &target, Request::Revoke(grant, state), cancel)
            .await
            .map(drop)
    }

    /// `reset-credentials` (rotation, or a requester who lost the one-time credentials).
    pub async fn reset_credentials(
        &self,
        integration: &Integration,
        grant: &GrantSpec,
        state: &GrantState,
        cancel: &CancelSignal,
    ) -> Result<Granted, RuntimeError> {
        let target = target_key(integration, grant);
        match self
            .run(integration, &target, Request::Reset(grant, state), cancel)
            .await?
        {
            Outcome::Granted(mut granted) => {
                if let Some(custom) = &integration.custom_access_details {
                    granted.access.append_custom(custom.as_str());
                }
                Ok(granted)
            }
            _ => unreachable!("reset-credentials returns a grant"),
        }
    }

    /// `delete-credentials` (cleanup after revoke).
    pub async fn delete_credentials(
        &self,
        integration: &Integration,
        grant: &GrantSpec,
        state: &GrantState,
        cancel: &CancelSignal,
    ) -> Result<(), RuntimeError> {
        let target = target_key(integration, grant);
        self.run(integration, &target, Request::Delete(grant, state), cancel)
            .await
            .map(drop)
    }

    fn provisioner(&self, integration: &Integration) -> Result<Arc<dyn Provisioner>, RuntimeError> {
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((definition, provisioner)) = built.get(&integration.name)
            && definition == integration
        {
            return Ok(provisioner.clone());
        }
        let factory = self
            .registry
            .factory(integration.integration_type.as_str())
            .ok_or_else(|| RuntimeError::UnknownType {
                integration_type: integration.integration_type.to_string(),
            })?;
        let provisioner = factory(integration).map_err(|source| RuntimeError::Build {
            integration: integration.name.clone(),
            source,
        })?;
        built.insert(
            integration.name.clone(),
            (integration.clone(), provisioner.clone()),
        );
        Ok(provisioner)
    }

    fn target_slots(&self, target: &str) -> Arc<Semaphore> {
        let mut slots = self
            .per_target
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slots.len() > 10_000 {
            // Forget idle targets so the map stays bounded.
            let per_target = self.limits.per_target;
            slots.retain(|_, s| s.available_permits() < per_target);
        }
        slots
            .entry(target.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.limits.per_target)))
            .clone()
    }

    #[instrument(skip_all, fields(integration = %integration.name, action = %request.action(), target))]
    async fn run(
        &self,
        integration: &Integration,
        target: &str,
        request: Request<'_>,
        cancel: &CancelSignal,
    ) -> Result<Outcome, RuntimeError> {
        let action = request.action();
        let cancelled = || RuntimeError::Cancelled {
            action,
            integration: integration.name.clone(),
        };
        let provisioner = self.provisioner(integration)?;
        let target_slots = self.target_slots(target);
        // Waiting for a slot is not the target's fault: the deadline starts once both are held.
        let _permits = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(cancelled()),
            permits = async {
                let t = target_slots.acquire_owned().await;
                let g = self.global.clone().acquire_owned().await;
                (t, g)
            } => permits,
        };
        let timeout = self.limits.action_timeout;
        let work = async {
            let secret = self
                .resolver
                .resolve(&integration.secret_store)
                .await
                .map_err(|source| RuntimeError::Secret {
                    integration: integration.name.clone(),
                    source,
                })?;
            let ctx = ActionContext::new(secret)
                .with_timeout(timeout)
                .with_cancel(cancel.clone());
            let p = provisioner.as_ref();
            let result = match request {
                Request::GetStatus => p.get_status(&ctx).await.map(Outcome::Status),
                Request::ListResources => p.list_resources(&ctx).await.map(Outcome::Inventory),
                Request::Grant(grant) => p.grant_access(&ctx, grant).await.map(Outcome::Granted),
                Request::Revoke(grant, state) => p
                    .revoke_access(&ctx, grant, state)
                    .await
                    .map(|()| Outcome::Done),
                Request::Reset(grant, state) => p
                    .reset_credentials(&ctx, grant, state)
                    .await
                    .map(Outcome::Granted),
                Request::Delete(grant, state) => p
                    .delete_credentials(&ctx, grant, state)
                    .await
                    .map(|()| Outcome::Done),
            };
            // `ctx`, and with it the secret, is dropped here.
            drop(ctx);
            result.map_err(|source| {
                if source.kind() == ErrorKind::PermissionDenied {
                    // The admin credentials may have been rotated: read them afresh next time.
                    self.resolver.invalidate(&integration.secret_store);
                }
                match source.kind() {
                    ErrorKind::Cancelled => cancelled(),
                    ErrorKind::Timeout => RuntimeError::Timeout {
                        action,
                        integration: integration.name.clone(),
                    },
                    _ => RuntimeError::Action {
                        action,
                        integration: integration.name.clone(),
                        source,
                    },
                }
            })
        };
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => Err(cancelled()),
            result = tokio::time::timeout(timeout, work) => match result {
                Ok(result) => result,
                Err(_) => Err(RuntimeError::Timeout { action, integration: integration.name.clone() }),
            },
        };
        debug!(ok = outcome.is_ok(), "action finished");
        outcome
    }
}

fn target_key(integration: &Integration, grant: &GrantSpec) -> String {
    format!("{}/{}", integration.name, grant.resource.id)
}
