//! The provisioner contract: Apono's actions, the context each action runs in, and the errors
//! they return.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::cancel::CancelSignal;
use crate::error::{BoxError, ErrorKind};
use crate::grant::{GrantSpec, GrantState, GrantStateError, Granted};
use crate::integration::{InvalidIntegration, Inventory};
use crate::names::NameError;
use crate::secret::{SecretError, SecretValue};
use crate::status::IntegrationStatus;

/// Apono's action vocabulary for integrations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Action {
    /// Check that the integration works.
    GetStatus,
    /// Discover resources and permissions.
    ListResources,
    /// Provision access for one grant.
    GrantAccess,
    /// Remove the access of one grant.
    RevokeAccess,
    /// Issue credentials for a grant that has none.
    CreateCredentials,
    /// Replace a grant's credentials, invalidating the old ones (rotation).
    ResetCredentials,
    /// Delete the account behind revoked grants (cleanup).
    DeleteCredentials,
}

impl Action {
    /// Every action.
    pub const ALL: [Self; 7] = [
        Self::GetStatus,
        Self::ListResources,
        Self::GrantAccess,
        Self::RevokeAccess,
        Self::CreateCredentials,
        Self::ResetCredentials,
        Self::DeleteCredentials,
    ];

    /// The action's name as Apono spells it (`grant-access`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::GetStatus => "get-status",
            Self::ListResources => "list-resources",
            Self::GrantAccess => "grant-access",
            Self::RevokeAccess => "revoke-access",
            Self::CreateCredentials => "create-credentials",
            Self::ResetCredentials => "reset-credentials",
            Self::DeleteCredentials => "delete-credentials",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything an action needs besides the provisioner's own configuration: the integration's
/// secret (resolved by the caller just before the action and dropped after it), a deadline and a
/// cancellation signal.
///
/// `Debug` shows the secret's keys only.
#[derive(Debug, Clone)]
pub struct ActionContext {
    secret: SecretValue,
    deadline: Option<Instant>,
    cancel: CancelSignal,
}

impl ActionContext {
    /// A context with no deadline and a fresh cancellation signal.
    pub fn new(secret: SecretValue) -> Self {
        Self {
            secret,
            deadline: None,
            cancel: CancelSignal::new(),
        }
    }

    /// Sets the deadline to `timeout` from now.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.deadline = Some(Instant::now() + timeout);
        self
    }

    /// Sets an absolute deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Uses the given cancellation signal.
    pub fn with_cancel(mut self, cancel: CancelSignal) -> Self {
        self.cancel = cancel;
        self
    }

    /// The integration's resolved secret.
    pub fn secret(&self) -> &SecretValue {
        &self.secret
    }

    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before the deadline (`None` without one; zero once passed).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// The cancellation signal.
    pub fn cancel_signal(&self) -> &CancelSignal {
        &self.cancel
    }

    /// Returns an error if the action was cancelled or its deadline has passed.
    ///
    /// Provisioners call this before touching the target and between steps, so a cancelled or
    /// late action stops at a point where it leaves a consistent state.
    pub fn checkpoint(&self) -> Result<(), ProvisionError> {
        if self.cancel.is_cancelled() {
            return Err(ProvisionError::Cancelled);
        }
        if self.remaining() == Some(Duration::ZERO) {
            return Err(ProvisionError::Timeout);
        }
        Ok(())
    }

    /// Runs `work` until it finishes, the context is cancelled ([`ProvisionError::Cancelled`])
    /// or its deadline passes ([`ProvisionError::Timeout`]), whichever comes first; `work` is
    /// not started at all if the context is already cancelled or late ([`Self::checkpoint`]).
    ///
    /// This crate has no async runtime, so the caller hands in its runtime's timer: `sleep`
    /// is called once, with the time left, when the context has a deadline
    /// (`tokio::time::sleep` with Tokio). The error type of `work` only needs to hold a
    /// [`ProvisionError`], so `work` can return a crate's own error.
    ///
    /// Cancel safety: when the deadline or the cancellation wins, `work` is dropped where it
    /// was waiting, so it should only wait at points where stopping leaves a consistent state
    /// (a request sent or not, not half of a multi-step change). When `work` finishes in the
    /// same poll as the cancellation, its result is returned.
    ///
    /// ```no_run
    /// # async fn example(ctx: &apono_core::ActionContext) -> Result<(), apono_core::ProvisionError> {
    /// # async fn call_target() -> Result<String, apono_core::ProvisionError> { Ok(String::new()) }
    /// let answer = ctx.bounded(tokio::time::sleep, call_target()).await?;
    /// # let _ = answer; Ok(()) }
    /// ```
    pub async fn bounded<T, E, S>(
        &self,
        sleep: impl FnOnce(Duration) -> S,
        work: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E>
    where
        E: From<ProvisionError>,
        S: Future<Output = ()>,
    {
        self.checkpoint()?;
        let mut work = pin!(work);
        let mut cancelled = pin!(self.cancel.cancelled());
        let mut deadline = pin!(self.remaining().map(sleep));
        poll_fn(|cx| {
            if let Poll::Ready(result) = work.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            if cancelled.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(ProvisionError::Cancelled.into()));
            }
            if let Some(timer) = deadline.as_mut().as_pin_mut()
                && timer.poll(cx).is_ready()
            {
                return Poll::Ready(Err(ProvisionError::Timeout.into()));
            }
            Poll::Pending
        })
        .await
    }
}

/// One check `get-status` made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCheck {
    /// What was checked, such as `web-1: sudo`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// Details for an operator.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// What `get-status` returns.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The overall verdict.
    pub status: IntegrationStatus,
    /// The individual checks behind it.
    pub checks: Vec<StatusCheck>,
}

impl StatusReport {
    /// Builds a report whose verdict follows from the checks: `Active` if all passed, `Error` if
    /// none did, `Warning` otherwise (and `Error` with no checks at all).
    pub fn from_checks(checks: Vec<StatusCheck>) -> Self {
        let passed = checks.iter().filter(|c| c.ok).count();
        let status = if checks.is_empty() || passed == 0 {
            IntegrationStatus::Error
        } else if passed == checks.len() {
            IntegrationStatus::Active
        } else {
            IntegrationStatus::Warning
        };
        Self { status, checks }
    }
}

/// Why a provisioner action failed.
///
/// Messages never contain secrets. [`ProvisionError::kind`] says whether a retry can help.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The integration's configuration is invalid.
    #[error(transparent)]
    Config(#[from] InvalidIntegration),
    /// The integration's secret could not be used.
    #[error("integration secret is unusable")]
    Secret(#[source] SecretError),
    /// A name failed its grammar before anything was sent to the target.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The grant asks for something the integration cannot give (an unknown resource or
    /// permission).
    #[error("invalid grant: {0}")]
    InvalidGrant(String),
    /// The stored grant state does not belong to this provisioner.
    #[error(transparent)]
    State(#[from] GrantStateError),
    /// The target refused: the connector's admin identity lacks a right.
    #[error("target {target} denied the action: {reason}")]
    PermissionDenied {
        /// Which target.
        target: String,
        /// What was refused.
        reason: String,
        /// The transport's error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The target is in a state that forbids the action, such as an existing account that the
    /// connector did not create.
    #[error("target {target} conflicts with the grant: {reason}")]
    Conflict {
        /// Which target.
        target: String,
        /// What conflicts.
        reason: String,
    },
    /// The target could not be reached, or failed in a way that may pass.
    #[error("target {target} is unavailable")]
    Unavailable {
        /// Which target.
        target: String,
        /// The transport's error.
        #[source]
        source: Option<BoxError>,
    },
    /// The target answered something unexpected.
    #[error("target {target} failed: {reason}")]
    Target {
        /// Which target.
        target: String,
        /// What happened, without secrets.
        reason: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The integration does not implement this action.
    #[error("{0} is not supported by this integration")]
    Unsupported(Action),
    /// The action's deadline passed.
    #[error("deadline exceeded")]
    Timeout,
    /// The action was cancelled.
    #[error("cancelled")]
    Cancelled,
}

impl From<SecretError> for ProvisionError {
    fn from(e: SecretError) -> Self {
        Self::Secret(e)
    }
}

impl ProvisionError {
    /// The kind of failure, for retry decisions.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config(_) | Self::Name(_) | Self::InvalidGrant(_) => ErrorKind::InvalidInput,
            Self::Secret(e) => e.kind(),
            Self::State(_) => ErrorKind::Internal,
            Self::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Self::Conflict { .. } => ErrorKind::Conflict,
            Self::Unavailable { .. } => ErrorKind::Unavailable,
            Self::Target { .. } => ErrorKind::Internal,
            Self::Unsupported(_) => ErrorKind::Unsupported,
            Self::Timeout => ErrorKind::Timeout,
            Self::Cancelled => ErrorKind::Cancelled,
        }
    }
}

/// A provisioner: carries out Apono's actions for one integration on its target systems.
///
/// A provisioner is built from an [`Integration`](crate::Integration)'s typed configuration and
/// held as `Arc<dyn Provisioner>`; every action receives the integration's secret through the
/// [`ActionContext`], never from a store of its own.
///
/// **Contract for every method**
///
/// * Call [`ActionContext::checkpoint`] before touching the target: a cancelled or expired
///   action returns [`ProvisionError::Cancelled`] or [`ProvisionError::Timeout`] having changed
///   nothing.
/// * **Cancel-safety**: the caller may drop the future at any `.await`. The target may then hold
///   part of a grant; the ledger recorded the grant before calling, and revoke must clean up any
///   such partial state, so every step must be one that revoke can undo.
/// * Names are validated ([`crate::names`]) before anything reaches the target.
/// * Errors never contain secrets.
///
/// The conformance suite in [`crate::conformance`] (feature `test-util`) checks these promises
/// against a real target.
#[async_trait]
pub trait Provisioner: Send + Sync + fmt::Debug + 'static {
    /// `get-status`: checks that the integration can reach its targets and has the rights it
    /// needs. Read-only.
    async fn get_status(&self, ctx: &ActionContext) -> Result<StatusReport, ProvisionError>;

    /// `list-resources`: discovers resources and the permissions that can be requested on them.
    /// Read-only.
    async fn list_resources(&self, ctx: &ActionContext) -> Result<Inventory, ProvisionError>;

    /// `grant-access`: provisions `grant` and returns the state to keep plus the access details.
    ///
    /// **Idempotent**: granting the same grant id again converges on one grant (it may issue
    /// fresh credentials and return a new state that replaces the old one). An account found on
    /// the target that this integration did not create is never adopted: that is a
    /// [`ProvisionError::Conflict`].
    async fn grant_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
    ) -> Result<Granted, ProvisionError>;

    /// `revoke-access`: removes exactly what `state` says this grant added, keeping what other
    /// grants of the same grantee still need.
    ///
    /// **Idempotent**: revoking what is already gone, including an account removed out of band,
    /// succeeds.
    async fn revoke_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError>;

    /// `create-credentials`: issues credentials for an active grant whose credentials were not
    /// issued at grant time. Integrations that issue credentials in `grant-access` leave the
    /// default, which reports the action as unsupported.
    async fn create_credentials(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<Granted, ProvisionError> {
        let _ = (ctx, grant, state);
        Err(ProvisionError::Unsupported(Action::CreateCredentials))
    }

    /// `reset-credentials`: replaces an active grant's credentials (rotation, or a user who lost
    /// them); the old credentials stop working. The returned state replaces the stored one.
    ///
    /// **Idempotent** in effect: each call leaves exactly one valid credential.
    async fn reset_credentials(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<Granted, ProvisionError> {
        let _ = (ctx, grant, state);
        Err(ProvisionError::Unsupported(Action::ResetCredentials))
    }

    /// `delete-credentials`: cleanup after a revoked grant: deletes the account the grant used,
    /// if this integration created it and no active grant still uses it.
    ///
    /// **Idempotent**: deleting what is gone succeeds. Never deletes an account the integration
    /// did not create.
    async fn delete_credentials(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        let _ = (ctx, grant, state);
        Err(ProvisionError::Unsupported(Action::DeleteCredentials))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_reports_cancel_and_deadline() {
        let ctx = ActionContext::new(SecretValue::new());
        assert!(ctx.checkpoint().is_ok());
        let late = ctx
            .clone()
            .with_deadline(Instant::now() - Duration::from_millis(1));
        assert_eq!(late.checkpoint().unwrap_err().kind(), ErrorKind::Timeout);
        ctx.cancel_signal().cancel();
        assert_eq!(ctx.checkpoint().unwrap_err().kind(), ErrorKind::Cancelled);
    }

    fn ctx() -> ActionContext {
        ActionContext::new(SecretValue::new())
    }

    #[tokio::test]
    async fn bounded_returns_what_the_work_returns() {
        let ok: Result<u8, ProvisionError> =
            ctx().bounded(tokio::time::sleep, async { Ok(7) }).await;
        assert_eq!(ok.unwrap(), 7);
        let within = ctx()
            .with_timeout(Duration::from_secs(60))
            .bounded(tokio::time::sleep, async {
                Err::<(), _>(ProvisionError::InvalidGrant("no".into()))
            })
            .await;
        assert_eq!(within.unwrap_err().kind(), ErrorKind::InvalidInput);
    }

    #[tokio::test]
    async fn bounded_stops_at_the_deadline() {
        let ctx = ctx().with_timeout(Duration::from_millis(20));
        let result: Result<(), ProvisionError> = ctx
            .bounded(tokio::time::sleep, std::future::pending())
            .await;
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Timeout);
    }

    #[tokio::test]
    async fn bounded_stops_when_cancelled() {
        // No deadline: only the cancellation can end the wait.
        let ctx = ctx();
        let signal = ctx.cancel_signal().clone();
        let result: Result<(), ProvisionError> = ctx
            .bounded(tokio::time::sleep, async {
                signal.cancel();
                std::future::pending().await
            })
            .await;
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Cancelled);
        // With a far deadline, cancellation still wins.
        let ctx = self::ctx().with_timeout(Duration::from_secs(3600));
        let signal = ctx.cancel_signal().clone();
        let waiting = ctx.bounded(
            tokio::time::sleep,
            std::future::pending::<Result<(), ProvisionError>>(),
        );
        let (result, ()) = tokio::join!(waiting, async move { signal.cancel() });
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Cancelled);
    }

    #[tokio::test]
    async fn bounded_does_not_start_late_or_cancelled_work() {
        let started = std::sync::atomic::AtomicBool::new(false);
        let work = || async {
            started.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok::<(), ProvisionError>(())
        };
        let late = ctx().with_deadline(Instant::now() - Duration::from_millis(1));
        let result = late.bounded(tokio::time::sleep, work()).await;
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Timeout);
        let cancelled = ctx();
        cancelled.cancel_signal().cancel();
        let result = cancelled.bounded(tokio::time::sleep, work()).await;
        assert_eq!(result.unwrap_err().kind(), ErrorKind::Cancelled);
        assert!(!started.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// A crate's own error type works as long as it can hold a `ProvisionError`.
    #[tokio::test]
    async fn bounded_keeps_the_callers_error_type() {
        #[derive(Debug)]
        enum Mine {
            Provision(ProvisionError),
        }
        impl From<ProvisionError> for Mine {
            fn from(e: ProvisionError) -> Self {
                Self::Provision(e)
            }
        }
        let ctx = ctx().with_timeout(Duration::from_millis(10));
        let result: Result<(), Mine> = ctx
            .bounded(tokio::time::sleep, std::future::pending())
            .await;
        let Err(Mine::Provision(e)) = result else {
            panic!("expected a timeout, got {result:?}");
        };
        assert_eq!(e.kind(), ErrorKind::Timeout);
    }

    #[test]
    fn status_follows_checks() {
        let check = |ok| StatusCheck {
            name: "c".into(),
            ok,
            message: String::new(),
        };
        let verdict = |checks| StatusReport::from_checks(checks).status;
        assert_eq!(verdict(vec![]), IntegrationStatus::Error);
        assert_eq!(verdict(vec![check(true)]), IntegrationStatus::Active);
        assert_eq!(
            verdict(vec![check(true), check(false)]),
            IntegrationStatus::Warning
        );
        assert_eq!(verdict(vec![check(false)]), IntegrationStatus::Error);
    }

    #[test]
    fn secret_errors_keep_their_kind() {
        let err: ProvisionError = SecretError::MissingKey { key: "k".into() }.into();
        assert_eq!(err.kind(), ErrorKind::Malformed);
        let err: ProvisionError = SecretError::Unavailable {
            store: "aws".into(),
            source: None,
        }
        .into();
        assert!(err.kind().is_retryable());
        assert_eq!(err.to_string(), "integration secret is unusable");
    }

    #[test]
    fn actions_use_apono_names() {
        let names: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            names,
            [
                "get-status",
                "list-resources",
                "grant-access",
                "revoke-access",
                "create-credentials",
                "reset-credentials",
                "delete-credentials"
            ]
        );
        assert_eq!(
            serde_json::to_string(&Action::GrantAccess).unwrap(),
            "\"grant-access\""
        );
    }
}
