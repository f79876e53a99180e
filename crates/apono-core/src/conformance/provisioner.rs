//! The provisioner suite.

use async_trait::async_trait;

use super::{ConformanceFailure, ConformanceReport, ensure, failed};
use crate::error::{BoxError, ErrorKind};
use crate::grant::{GrantSpec, GrantState, Granted};
use crate::provision::{ActionContext, ProvisionError, Provisioner};

/// What a provisioner's test supplies so the suite can drive it and observe the target.
///
/// The observations must come from the target itself (log in with the credential, read
/// `/etc/passwd`, query the catalog), never from the provisioner's own bookkeeping, or the suite
/// would only check the provisioner against itself.
#[async_trait]
pub trait ProvisionerHarness: Send + Sync {
    /// The provisioner under test.
    fn provisioner(&self) -> &dyn Provisioner;

    /// A fresh context for one action, with the integration's secret and a generous deadline.
    fn context(&self) -> ActionContext;

    /// A valid grant for grantee number `grantee` (distinct numbers are distinct people) with
    /// id `grant_id`, on a resource of the target, expiring well in the future.
    fn grant(&self, grantee: usize, grant_id: &str) -> GrantSpec;

    /// Everything on the target that grants can change (accounts, groups, keys, sessions), in a
    /// canonical order: equal snapshots mean the target is in the same state.
    async fn snapshot(&self) -> Result<Vec<String>, BoxError>;

    /// Whether `granted`'s credentials give access to `grant`'s resource right now.
    async fn has_access(&self, grant: &GrantSpec, granted: &Granted) -> Result<bool, BoxError>;

    /// Removes the grant's account from the target behind the provisioner's back.
    async fn remove_out_of_band(
        &self,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), BoxError>;
}

/// Runs the provisioner suite. The target should be in its initial state; the suite leaves it
/// there again when the provisioner behaves.
///
/// * `get-status` and `list-resources` succeed, and discovery finds at least one resource;
/// * a cancelled action and an action past its deadline fail with `Cancelled`/`Timeout` and
///   change nothing;
/// * a grant gives access; granting the same grant again succeeds (idempotent);
/// * two grants of one grantee are independent: revoking one keeps the other's access;
/// * revoke takes access away, and revoking again succeeds (idempotent);
/// * `reset-credentials`, where supported, gives working credentials and voids the old ones;
/// * grant then revoke (then `delete-credentials`, where supported) leaves the target as it was;
/// * revoke and cleanup succeed after the account was removed out of band.
pub async fn check_provisioner(
    harness: &dyn ProvisionerHarness,
) -> Result<ConformanceReport, ConformanceFailure> {
    let mut report = ConformanceReport::default();
    let p = harness.provisioner();

    const STATUS: &str = "get-status and list-resources succeed";
    p.get_status(&harness.context())
        .await
        .map_err(failed(STATUS))?;
    let inventory = p
        .list_resources(&harness.context())
        .await
        .map_err(failed(STATUS))?;
    ensure(!inventory.resources.is_empty(), STATUS, || {
        "discovery found no resources".into()
    })?;
    report.passed.push(STATUS);

    let initial = snapshot(harness, "initial snapshot").await?;

    const CANCEL: &str = "cancelled and late actions change nothing";
    let grant = harness.grant(0, "conformance-cancel");
    let cancelled = harness.context();
    cancelled.cancel_signal().cancel();
    expect_kind(
        p.grant_access(&cancelled, &grant).await,
        ErrorKind::Cancelled,
        CANCEL,
    )?;
    let late = harness
        .context()
        .with_deadline(std::time::Instant::now() - std::time::Duration::from_millis(1));
    expect_kind(
        p.grant_access(&late, &grant).await,
        ErrorKind::Timeout,
        CANCEL,
    )?;
    unchanged(harness, &initial, CANCEL).await?;
    report.passed.push(CANCEL);

    const GRANT: &str = "grant gives access and is idempotent";
    let first_spec = harness.grant(0, "conformance-a");
    let first = grant_ok(harness, &first_spec, GRANT).await?;
    let again = grant_ok(harness, &first_spec, GRANT).await?;
    report.passed.push(GRANT);

    const INDEPENDENT: &str = "grants of one grantee are independent";
    let second_spec = harness.grant(0, "conformance-b");
    let second = grant_ok(harness, &second_spec, INDEPENDENT).await?;
    revoke_ok(harness, &first_spec, &again.state, INDEPENDENT).await?;
    ensure(
        access(harness, &second_spec, &second, INDEPENDENT).await?,
        INDEPENDENT,
        || "revoking one grant took away the other grant's access".into(),
    )?;
    report.passed.push(INDEPENDENT);

    const REVOKE: &str = "revoke removes access and is idempotent";
    for (spec, granted) in [(&first_spec, &first), (&first_spec, &again)] {
        ensure(
            !access(harness, spec, granted, REVOKE).await?,
            REVOKE,
            || "credentials still work after revoke".into(),
        )?;
    }
    revoke_ok(harness, &first_spec, &again.state, REVOKE).await?;
    report.passed.push(REVOKE);

    const RESET: &str = "reset-credentials voids the old credentials";
    let mut second_state = second.state.clone();
    match p
        .reset_credentials(&harness.context(), &second_spec, &second.state)
        .await
    {
        Err(ProvisionError::Unsupported(_)) => report.not_applicable.push(RESET),
        Err(e) => return Err(failed(RESET)(e)),
        Ok(rotated) => {
            ensure(
                access(harness, &second_spec, &rotated, RESET).await?,
                RESET,
                || "the new credentials do not work".into(),
            )?;
            ensure(
                !access(harness, &second_spec, &second, RESET).await?,
                RESET,
                || "the old credentials still work".into(),
            )?;
            second_state = rotated.state;
            report.passed.push(RESET);
        }
    }
    revoke_ok(harness, &second_spec, &second_state, REVOKE).await?;

    const RESTORE: &str = "grant, revoke and cleanup leave the target as it was";
    let cleanup = p
        .delete_credentials(&harness.context(), &second_spec, &second_state)
        .await;
    match cleanup {
        Err(ProvisionError::Unsupported(_)) => report.not_applicable.push(RESTORE),
        Err(e) => return Err(failed(RESTORE)(e)),
        Ok(()) => {
            p.delete_credentials(&harness.context(), &second_spec, &second_state)
                .await
                .map_err(failed(RESTORE))?;
            unchanged(harness, &initial, RESTORE).await?;
            report.passed.push(RESTORE);
        }
    }

    const OUT_OF_BAND: &str = "revoke succeeds after out-of-band removal";
    let spec = harness.grant(1, "conformance-oob");
    let granted = grant_ok(harness, &spec, OUT_OF_BAND).await?;
    harness
        .remove_out_of_band(&spec, &granted.state)
        .await
        .map_err(failed(OUT_OF_BAND))?;
    revoke_ok(harness, &spec, &granted.state, OUT_OF_BAND).await?;
    match p
        .delete_credentials(&harness.context(), &spec, &granted.state)
        .await
    {
        Ok(()) | Err(ProvisionError::Unsupported(_)) => {}
        Err(e) => return Err(failed(OUT_OF_BAND)(e)),
    }
    report.passed.push(OUT_OF_BAND);

    Ok(report)
}

async fn snapshot(
    harness: &dyn ProvisionerHarness,
    check: &'static str,
) -> Result<Vec<String>, ConformanceFailure> {
    harness.snapshot().await.map_err(failed(check))
}

async fn unchanged(
    harness: &dyn ProvisionerHarness,
    initial: &[String],
    check: &'static str,
) -> Result<(), ConformanceFailure> {
    let now = snapshot(harness, check).await?;
    let added: Vec<_> = now.iter().filter(|l| !initial.contains(l)).collect();
    let removed: Vec<_> = initial.iter().filter(|l| !now.contains(l)).collect();
    ensure(added.is_empty() && removed.is_empty(), check, || {
        format!("target changed: added {added:?}, removed {removed:?}")
    })
}

async fn access(
    harness: &dyn ProvisionerHarness,
    spec: &GrantSpec,
    granted: &Granted,
    check: &'static str,
) -> Result<bool, ConformanceFailure> {
    harness
        .has_access(spec, granted)
        .await
        .map_err(failed(check))
}

async fn grant_ok(
    harness: &dyn ProvisionerHarness,
    spec: &GrantSpec,
    check: &'static str,
) -> Result<Granted, ConformanceFailure> {
    let granted = harness
        .provisioner()
        .grant_access(&harness.context(), spec)
        .await
        .map_err(failed(check))?;
    ensure(access(harness, spec, &granted, check).await?, check, || {
        format!("grant {} gives no access", spec.grant_id)
    })?;
    Ok(granted)
}

async fn revoke_ok(
    harness: &dyn ProvisionerHarness,
    spec: &GrantSpec,
    state: &GrantState,
    check: &'static str,
) -> Result<(), ConformanceFailure> {
    harness
        .provisioner()
        .revoke_access(&harness.context(), spec, state)
        .await
        .map_err(failed(check))
}

fn expect_kind<T>(
    result: Result<T, ProvisionError>,
    kind: ErrorKind,
    check: &'static str,
) -> Result<(), ConformanceFailure> {
    match result {
        Err(e) if e.kind() == kind => Ok(()),
        Err(e) => Err(ConformanceFailure {
            check,
            detail: format!("expected {kind}, got {} ({e})", e.kind()),
        }),
        Ok(_) => Err(ConformanceFailure {
            check,
            detail: format!("expected {kind}, but the action succeeded"),
        }),
    }
}
