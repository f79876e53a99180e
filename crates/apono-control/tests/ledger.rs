//! The grant ledger and the durable scheduler, on SQLite and on PostgreSQL, with an in-memory
//! provisioner whose target state the tests observe.

#[macro_use]
mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use apono_control::{
    Config, ControlError, ControlPlane, NewRequest, ProblemCode, RequestScope, Store, User, audit,
};
use apono_core::{
    AccessDetails, ActionContext, Credential, GrantSpec, GrantState, GrantStatus, Granted,
    Inventory, Permission, PermissionInfo, ProvisionError, Provisioner, RequestStatus, Resource,
    StatusReport, async_trait,
};
use apono_runtime::{Executor, ExecutorLimits, ProvisionerRegistry};
use apono_secrets::{AponoStore, SecretResolver};
use support::database;

/// What exists on the fake target: grant ids with access.
#[derive(Debug, Default)]
struct Target {
    granted: Mutex<BTreeSet<String>>,
    grant_calls: AtomicUsize,
    down: AtomicBool,
    /// The next grant does part of its work, then waits this long (as in a full executor
    /// queue) and, like the real provisioners, refuses a grant whose expiry has passed.
    stall_next_grant_ms: AtomicU64,
}

#[derive(Debug)]
struct FakeProvisioner(Arc<Target>);

#[async_trait]
impl Provisioner for FakeProvisioner {
    async fn get_status(&self, _ctx: &ActionContext) -> Result<StatusReport, ProvisionError> {
        Ok(StatusReport::from_checks(vec![]))
    }
    async fn list_resources(&self, _ctx: &ActionContext) -> Result<Inventory, ProvisionError> {
        let resource = |id: &str, env: &str| Resource {
            integration: String::new(),
            resource_type: "box".into(),
            id: id.into(),
            name: id.into(),
            tags: [("env".to_owned(), env.to_owned())].into(),
        };
        Ok(Inventory {
            resources: vec![
                resource("web-1", "prod"),
                resource("web-2", "prod"),
                resource("dev-1", "dev"),
            ],
            permissions: vec![PermissionInfo {
                resource_type: "box".into(),
                permission: Permission::from("Default"),
                description: None,
            }],
        })
    }
    async fn grant_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        ctx.checkpoint()?;
        ctx.secret().require("password")?;
        if self.0.down.load(Ordering::SeqCst) {
            return Err(ProvisionError::Unavailable {
                target: "fake".into(),
                source: None,
            });
        }
        let stall = self.0.stall_next_grant_ms.swap(0, Ordering::SeqCst);
        if stall > 0 {
            self.0
                .granted
                .lock()
                .unwrap()
                .insert(grant.grant_id.to_string());
            tokio::time::sleep(Duration::from_millis(stall)).await;
        }
        if grant.expires_at <= chrono::Utc::now() {
            return Err(ProvisionError::InvalidGrant(
                "the grant has already expired".into(),
            ));
        }
        self.0.grant_calls.fetch_add(1, Ordering::SeqCst);
        self.0
            .granted
            .lock()
            .unwrap()
            .insert(grant.grant_id.to_string());
        let mut access = AccessDetails::default();
        access
            .credentials
            .push(Credential::one_time("password", "one-time-canary"));
        Ok(Granted {
            state: GrantState::encode(&grant.grant_id.to_string())?,
            access,
        })
    }
    async fn reset_credentials(
        &self,
        _ctx: &ActionContext,
        _grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<Granted, ProvisionError> {
        let mut access = AccessDetails::default();
        access
            .credentials
            .push(Credential::one_time("password", "one-time-canary"));
        Ok(Granted {
            state: state.clone(),
            access,
        })
    }
    async fn revoke_access(
        &self,
        ctx: &ActionContext,
        _grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        ctx.checkpoint()?;
        if self.0.down.load(Ordering::SeqCst) {
            return Err(ProvisionError::Unavailable {
                target: "fake".into(),
                source: None,
            });
        }
        let id: String = state.decode()?;
        self.0.granted.lock().unwrap().remove(&id);
        Ok(())
    }
}

const CONFIG: &str = r#"
[connector]
id = "test"
listen = "127.0.0.1:0"
master_key = { secret_store = { apono = { parameters = { master_key = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a" } } } }
retry_base = "1s"
retry_max = "1s"
revoke_failed_after_attempts = 2

[[users]]
email = "alice@example.com"
groups = ["developers"]

[[users]]
email = "bob@example.com"
groups = ["sre"]

[[users]]
email = "root@example.com"
admin = true

[[integrations]]
name = "boxes"
type = "fake"
secret_store = { apono = { parameters = { password = "admin-secret" } } }
custom_access_details = "Use the bastion."

[[access_flows]]
name = "auto"
trigger = "automatic"
requestors = { groups = ["developers"] }
targets = [{ integration = "boxes", resource_type = "box", permissions = ["Default"], resources = { tags = { env = "dev" } } }]
grant_duration = "2s"

[[access_flows]]
name = "prod"
trigger = "self_serve"
requestors = { groups = ["developers", "sre"] }
targets = [{ integration = "boxes", resource_type = "box", permissions = ["Default"], resources = { tags = { env = "prod" } } }]
approvers = { mode = "any_of", groups = ["sre"] }
grant_duration = "1h"
justification_required = true
requester_cannot_approve_self = true
"#;

struct Harness {
    plane: Arc<ControlPlane>,
    target: Arc<Target>,
    _db: support::Db,
}

async fn open(url: &str, target: Arc<Target>) -> Result<Arc<ControlPlane>> {
    open_with(url, target, CONFIG).await
}

async fn open_with(url: &str, target: Arc<Target>, text: &str) -> Result<Arc<ControlPlane>> {
    let config = Config::parse(text, std::iter::empty(), None)?;
    let mut registry = ProvisionerRegistry::new();
    let t = target.clone();
    registry.register(
        "fake",
        Arc::new(move |_| Ok(Arc::new(FakeProvisioner(t.clone())) as Arc<dyn Provisioner>)),
    );
    let resolver = SecretResolver::builder()
        .store(Arc::new(AponoStore::new()))
        .build();
    let executor = Arc::new(Executor::new(
        registry,
        Arc::new(resolver),
        ExecutorLimits::default(),
    ));
    let plane = ControlPlane::new(Store::open(url).await?, config, executor);
    plane.bootstrap().await?;
    plane.run_due_once().await?;
    Ok(plane)
}

async fn harness(postgres: bool) -> Result<Harness> {
    harness_with(postgres, CONFIG).await
}

async fn harness_with(postgres: bool, config: &str) -> Result<Harness> {
    let db = database(postgres)?;
    let target = Arc::new(Target::default());
    let plane = open_with(&db.url, target.clone(), config).await?;
    Ok(Harness {
        plane,
        target,
        _db: db,
    })
}

fn user(h: &Harness, email: &str) -> User {
    h.plane.config().user(email).unwrap().clone()
}

fn dev_request() -> NewRequest {
    NewRequest {
        integration: "boxes".into(),
        resource_type: "box".into(),
        resource_ids: vec!["dev-1".into()],
        permission: "Default".into(),
        justification: None,
        duration: None,
    }
}

fn prod_request(justification: Option<&str>, duration: Option<&str>) -> NewRequest {
    NewRequest {
        integration: "boxes".into(),
        resource_type: "box".into(),
        resource_ids: vec!["web-1".into()],
        permission: "Default".into(),
        justification: justification.map(Into::into),
        duration: duration.map(Into::into),
    }
}

async fn wait_for_expiry(h: &Harness, secs: u64) -> Result<()> {
    tokio::time::sleep(Duration::from_millis(secs * 1000 + 100)).await;
    h.plane.run_due_once().await?;
    Ok(())
}

async fn grant_expires_and_is_revoked(postgres: bool) -> Result<()> {
    let h = harness(postgres).await?;
    let alice = user(&h, "alice@example.com");
    let request = h.plane.create_request(&alice, &dev_request()).await?;
    assert_eq!(request.status, RequestStatus::Granting);
    h.plane.run_due_once().await?;
    let request = h.plane.request(&alice, &request.id).await?;
    assert_eq!(request.status, RequestStatus::Active);
    let session = h.plane.session(&alice, &request.session_ids[0]).await?;
    assert_eq!(session.status, GrantStatus::Active);
    assert_eq!(session.request_id, request.id);
    assert_eq!(h.target.granted.lock().unwrap().len(), 1);

    // One-time credentials: shown once, then masked.
    let first = h.plane.access_details(&alice, &session.id).await?;
    assert_eq!(first["credentials"]["password"], "one-time-canary");
    assert!(
        first["instructions"]["plain"]
            .as_str()
            .unwrap()
            .contains("bastion")
    );
    let second = h.plane.access_details(&alice, &session.id).await?;
    assert!(!second.to_string().contains("one-time-canary"), "{second}");

    wait_for_expiry(&h, 2).await?;
    let session = h.plane.session(&alice, &session.id).await?;
    assert_eq!(session.status, GrantStatus::Revoked);
    assert!(h.target.granted.lock().unwrap().is_empty());
    assert_eq!(
        h.plane.request(&alice, &request.id).await?.status,
        RequestStatus::Revoked
    );

    let report = h.plane.verify_audit().await?;
    assert!(report.is_intact() && report.records > 5, "{report:?}");
    let all = audit::records(h.plane.store(), 0, 10_000, None).await?;
    let text = serde_json::to_string(&all)?;
    assert!(!text.contains("one-time-canary") && !text.contains("admin-secret"));
    for action in [
        "config.loaded",
        "request.created",
        "grant.started",
        "grant.succeeded",
        "revoke.succeeded",
    ] {
        assert!(all.iter().any(|r| r.action == action), "missing {action}");
    }
    Ok(())
}

on_both_databases!(grant_expires_and_is_revoked);

async fn approvals_follow_the_flow(postgres: bool) -> Result<()> {
    let h = harness(postgres).await?;
    let alice = user(&h, "alice@example.com");
    let bob = user(&h, "bob@example.com");
    let root = user(&h, "root@example.com");

    let dry = h
        .plane
        .dry_run(&alice, &prod_request(None, Some("3h")))
        .await?;
    assert!(!dry.allowed);
    let justification = dry
        .problems
        .iter()
        .find(|p| p.code == ProblemCode::JustificationRequired)
        .expect("justification_required");
    assert!(justification.message.contains("justification"), "{dry:?}");
    let over = dry
        .problems
        .iter()
        .find(|p| p.code == ProblemCode::DurationOverMax)
        .expect("duration_over_max");
    assert!(over.message.contains("over the maximum"), "{dry:?}");
    assert_eq!(over.max.as_deref(), Some("1h"));
    let json = serde_json::to_value(&dry)?;
    assert!(
        json["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["code"] == "duration_over_max" && p["max"] == "1h"),
        "{json}"
    );
    assert!(
        h.plane
            .create_request(&alice, &prod_request(None, None))
            .await
            .is_err()
    );

    let request = h
        .plane
        .create_request(&alice, &prod_request(Some("incident 42"), Some("30m")))
        .await?;
    assert_eq!(request.status, RequestStatus::Pending);
    assert!(
        h.plane.approve(&alice, &request.id, None).await.is_err(),
        "alice is no approver"
    );
    let waiting = h
        .plane
        .requests(&bob, RequestScope::AwaitingMyApproval)
        .await?;
    assert_eq!(waiting.len(), 1);
    assert!(h.plane.requests(&alice, RequestScope::All).await.is_err());

    // bob cannot approve his own request either.
    let own = h
        .plane
        .create_request(&bob, &prod_request(Some("on call"), None))
        .await?;
    let err = h.plane.approve(&bob, &own.id, None).await.unwrap_err();
    assert!(err.to_string().contains("own request"), "{err}");
    let rejected = h.plane.reject(&root, &own.id, "not needed").await?;
    assert_eq!(rejected.status, RequestStatus::Rejected);
    assert_eq!(rejected.reason.as_deref(), Some("not needed"));

    let approved = h.plane.approve(&bob, &request.id, Some("on call")).await?;
    assert_eq!(approved.status, RequestStatus::Granting);
    assert_eq!(approved.reason.as_deref(), Some("on call"));
    let approval = audit::records(h.plane.store(), 0, 1000, Some(&request.id))
        .await?
        .into_iter()
        .find(|r| r.action == "request.approved")
        .expect("the approval is audited");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&approval.details)?["reason"],
        "on call"
    );
    h.plane.run_due_once().await?;
    assert_eq!(
        h.plane.request(&alice, &request.id).await?.status,
        RequestStatus::Active
    );
    // Lists carry each request's sessions, as describing one does.
    let listed = h.plane.requests(&alice, RequestScope::Mine).await?;
    let listed = listed.iter().find(|r| r.id == request.id).unwrap();
    assert!(!listed.session_ids.is_empty());
    assert_eq!(listed.session_ids, approved.session_ids);

    // Asking again for what she holds extends the grant instead of provisioning twice.
    let calls = h.target.grant_calls.load(Ordering::SeqCst);
    let again = h
        .plane
        .create_request(&alice, &prod_request(Some("still on it"), Some("1h")))
        .await?;
    h.plane.approve(&bob, &again.id, None).await?;
    h.plane.run_due_once().await?;
    let again = h.plane.request(&alice, &again.id).await?;
    assert_eq!(again.session_ids, approved.session_ids);
    assert_eq!(h.target.granted.lock().unwrap().len(), 1);
    assert_eq!(
        h.target.grant_calls.load(Ordering::SeqCst),
        calls + 1,
        "one idempotent re-grant moves the target's expiry"
    );

    // Early revoke by the requester.
    let revoked = h.plane.revoke(&alice, &request.id).await?;
    assert_eq!(revoked.status, RequestStatus::Revoking);
    h.plane.run_due_once().await?;
    assert_eq!(
        h.plane.request(&alice, &request.id).await?.status,
        RequestStatus::Revoked
    );
    assert!(h.target.granted.lock().unwrap().is_empty());
    assert!(
        h.plane
            .session(&bob, &approved.session_ids[0])
            .await
            .is_err(),
        "not bob's session"
    );
    Ok(())
}

on_both_databases!(approvals_follow_the_flow);

const OWNERS_CONFIG: &str = r#"
[connector]
master_key = { secret_store = { apono = { parameters = { master_key = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a" } } } }

[[users]]
email = "alice@example.com"
groups = ["developers"]

[[users]]
email = "bob@example.com"
groups = ["sre"]

[[users]]
email = "carol@example.com"
groups = ["prod"]

[[users]]
email = "dana@example.com"

[[integrations]]
name = "boxes"
type = "fake"
secret_store = { apono = { parameters = { password = "admin-secret" } } }
owners = ["dana@example.com"]
resource_owner_tag = "env"

[[access_flows]]
name = "prod"
trigger = "self_serve"
requestors = { groups = ["developers"] }
targets = [{ integration = "boxes", resource_type = "box", permissions = ["Default"], resources = { tags = { env = "prod" } } }]
approvers = { groups = ["sre"] }
grant_duration = "1h"

[[access_flows]]
name = "dev"
trigger = "self_serve"
requestors = { groups = ["developers"] }
targets = [{ integration = "boxes", resource_type = "box", permissions = ["Default"], resources = { tags = { env = "dev" } } }]
approvers = { groups = ["nobody-yet"] }
grant_duration = "1h"
"#;

/// The resource owner named by the `env` tag (group `prod`: carol) approves web-1 instead of
/// the flow's sre; dev-1's owner (group `dev`) has no member and the flow's approvers none, so
/// the integration's owner (dana) approves it. Both routes show in the dry run and on the
/// pending request, and only the routed approvers may approve.
async fn owners_approve_by_resource_tag_or_as_fallback(postgres: bool) -> Result<()> {
    let h = harness_with(postgres, OWNERS_CONFIG).await?;
    let (alice, bob, carol, dana) = (
        user(&h, "alice@example.com"),
        user(&h, "bob@example.com"),
        user(&h, "carol@example.com"),
        user(&h, "dana@example.com"),
    );
    let route = |r: &Option<apono_control::ApprovalRoute>| {
        r.as_ref()
            .map(|r| format!("{}: {}", r.source.as_str(), r.approvers.join(", ")))
    };
    for (resource, approver, refused, want) in [
        ("web-1", &carol, &bob, "resource_owner: group:prod"),
        (
            "dev-1",
            &dana,
            &carol,
            "integration_owners: user:dana@example.com",
        ),
    ] {
        let mut req = prod_request(None, None);
        req.resource_ids = vec![resource.into()];
        let dry = h.plane.dry_run(&alice, &req).await?;
        assert!(dry.allowed && dry.approval_required, "{dry:?}");
        assert_eq!(route(&dry.approval_route).as_deref(), Some(want));

        let created = h.plane.create_request(&alice, &req).await?;
        assert_eq!(created.status, RequestStatus::Pending);
        assert_eq!(route(&created.approval_route).as_deref(), Some(want));
        let awaiting = h
            .plane
            .requests(approver, RequestScope::AwaitingMyApproval)
            .await?;
        assert!(awaiting.iter().any(|r| r.id == created.id), "{resource}");
        assert!(
            h.plane
                .requests(refused, RequestScope::AwaitingMyApproval)
                .await?
                .is_empty()
        );
        let denied = h.plane.approve(refused, &created.id, None).await;
        assert!(
            matches!(
                denied,
                Err(ControlError::Forbidden(_) | ControlError::NotFound(_))
            ),
            "{resource}: {denied:?}"
        );

        let approved = h.plane.approve(approver, &created.id, None).await?;
        assert_eq!(
            approved.decided_by.as_deref(),
            Some(approver.email.as_str())
        );
        assert_eq!(approved.approval_route, None, "shown only while Pending");
        h.plane.run_due_once().await?;
        let done = h.plane.request(&alice, &created.id).await?;
        assert_eq!(done.status, RequestStatus::Active, "{resource}");
    }
    Ok(())
}

on_both_databases!(owners_approve_by_resource_tag_or_as_fallback);

async fn unreachable_target_turns_revoke_failed_then_recovers(postgres: bool) -> Result<()> {
    let h = harness(postgres).await?;
    let alice = user(&h, "alice@example.com");
    let request = h.plane.create_request(&alice, &dev_request()).await?;
    h.plane.run_due_once().await?;
    let id = h.plane.request(&alice, &request.id).await?.session_ids[0].clone();
    h.target.down.store(true, Ordering::SeqCst);
    wait_for_expiry(&h, 2).await?;
    assert_eq!(
        h.plane.session(&alice, &id).await?.status,
        GrantStatus::Revoking
    );
    wait_for_expiry(&h, 1).await?; // the retry is due after the 1 s backoff
    let session = h.plane.session(&alice, &id).await?;
    assert_eq!(session.status, GrantStatus::RevokeFailed);
    assert!(
        session
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("unavailable"),
        "{session:?}"
    );
    let metrics = h.plane.metrics_text().await?;
    assert!(metrics.contains("apono_revokes_failed 1"), "{metrics}");

    h.target.down.store(false, Ordering::SeqCst);
    wait_for_expiry(&h, 1).await?;
    assert_eq!(
        h.plane.session(&alice, &id).await?.status,
        GrantStatus::Revoked
    );
    assert!(h.target.granted.lock().unwrap().is_empty());
    Ok(())
}

/// A grant whose expiry passes while its action waits (here: after partial work) is refused
/// by the provisioner as expired. It is not abandoned as `Failed` with the partial work left on
/// the target: the retry completes it with a short target-side expiry, and it is revoked at
/// once, credentials never shown.
async fn grant_expiring_in_flight_is_completed_then_revoked(postgres: bool) -> Result<()> {
    let h = harness(postgres).await?;
    let alice = user(&h, "alice@example.com");
    h.target.stall_next_grant_ms.store(2500, Ordering::SeqCst);
    let request = h.plane.create_request(&alice, &dev_request()).await?;
    h.plane.run_due_once().await?;
    let id = h.plane.request(&alice, &request.id).await?.session_ids[0].clone();
    let session = h.plane.session(&alice, &id).await?;
    assert_eq!(session.status, GrantStatus::Granting, "{session:?}");
    assert!(
        session
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("already expired")),
        "{session:?}"
    );
    assert_eq!(h.target.granted.lock().unwrap().len(), 1, "partial work");
    wait_for_expiry(&h, 1).await?; // the retry completes the grant; its revoke is due at once
    h.plane.run_due_once().await?;
    let session = h.plane.session(&alice, &id).await?;
    assert_eq!(session.status, GrantStatus::Revoked, "{session:?}");
    assert!(session.credential_status.is_none(), "{session:?}");
    assert!(h.target.granted.lock().unwrap().is_empty());
    Ok(())
}

on_both_databases!(grant_expiring_in_flight_is_completed_then_revoked);

on_both_databases!(unreachable_target_turns_revoke_failed_then_recovers);

/// Work written before a "crash" (a plane dropped without running its jobs) runs when a new
/// plane opens the same store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_overdue_work_runs_after_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite3").display()
    );
    let target = Arc::new(Target::default());
    let first = open(&url, target.clone()).await?;
    let alice = first.config().user("alice@example.com").unwrap().clone();
    let request = first.create_request(&alice, &dev_request()).await?;
    first.run_due_once().await?;
    first.store().close().await;
    drop(first);
    assert_eq!(target.granted.lock().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let second = open(&url, target.clone()).await?;
    let shutdown = apono_core::CancelSignal::new();
    let scheduler = tokio::spawn(second.clone().run_scheduler(shutdown.clone()));
    let mut status = RequestStatus::Active;
    for _ in 0..100 {
        status = second.request(&alice, &request.id).await?.status;
        if status == RequestStatus::Revoked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    scheduler.await??;
    assert_eq!(status, RequestStatus::Revoked);
    assert!(target.granted.lock().unwrap().is_empty());
    Ok(())
}

#[test]
fn config_reports_every_problem_with_its_key() {
    let bad = r#"
[connector]
listen = "nowhere"
colour = "blue"

[[users]]
email = "not-an-email"

[[integrations]]
name = "a"
type = "fake"
secret_store = { apono = { parameters = {} } }
typo = 1

[[access_flows]]
name = "f"
trigger = "automatic"
requestors = { groups = ["x"] }
targets = [{ integration = "missing", resource_type = "box", permissions = ["Default"] }]
grant_duration = "2 hours"

[extra]
"#;
    let err = Config::parse(bad, std::iter::empty(), None).unwrap_err();
    let text = err.to_string();
    for needle in [
        "extra",
        "colour",
        "integrations[0] (a)",
        "typo",
        "access_flows[0] (f)",
        "users[0].email",
    ] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
    let ok = Config::parse(
        CONFIG,
        [(
            "APONO_CONNECTOR_LISTEN".to_owned(),
            "127.0.0.1:9999".to_owned(),
        )],
        None,
    )
    .unwrap();
    assert_eq!(ok.connector.listen, "127.0.0.1:9999");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_audit_chain_detects_tampering() -> Result<()> {
    let h = harness(false).await?;
    let alice = user(&h, "alice@example.com");
    h.plane.create_request(&alice, &dev_request()).await?;
    h.plane.run_due_once().await?;
    let before = h.plane.verify_audit().await?;
    assert!(before.is_intact(), "{before:?}");

    sqlx_exec(
        &h,
        "UPDATE audit SET actor = 'mallory@example.com' WHERE seq = 2",
    )
    .await?;
    let after = h.plane.verify_audit().await?;
    assert_eq!(after.first_broken, Some(2), "{after:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_audit_chain_detects_truncation() -> Result<()> {
    let h = harness(false).await?;
    let alice = user(&h, "alice@example.com");
    h.plane.create_request(&alice, &dev_request()).await?;
    let records = audit::records(h.plane.store(), 0, 1000, None).await?;
    let last = records.last().unwrap().seq;
    sqlx_exec(&h, &format!("DELETE FROM audit WHERE seq = {last}")).await?;
    assert_eq!(h.plane.verify_audit().await?.first_broken, Some(last));
    Ok(())
}

async fn sqlx_exec(h: &Harness, sql: &str) -> Result<()> {
    let mut conn = h.plane.store().pool().acquire().await?;
    sqlx_raw(&mut conn, sql).await
}

async fn sqlx_raw(conn: &mut sqlx::AnyConnection, sql: &str) -> Result<()> {
    use sqlx::Executor as _;
    conn.execute(sqlx::AssertSqlSafe(sql.to_owned())).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_dry_run_problems_carry_codes() -> Result<()> {
    let h = harness(false).await?;
    let alice = user(&h, "alice@example.com");
    let bob = user(&h, "bob@example.com");
    let codes =
        |dry: &apono_control::DryRun| dry.problems.iter().map(|p| p.code).collect::<Vec<_>>();

    let mut req = dev_request();
    req.integration = "nowhere".into();
    let dry = h.plane.dry_run(&alice, &req).await?;
    assert!(!dry.allowed);
    assert!(
        codes(&dry).contains(&ProblemCode::UnknownIntegration),
        "{dry:?}"
    );
    assert!(
        codes(&dry).contains(&ProblemCode::UnknownResource),
        "{dry:?}"
    );
    assert!(
        codes(&dry).contains(&ProblemCode::NoMatchingFlow),
        "{dry:?}"
    );

    let mut req = dev_request();
    req.resource_ids = vec!["ghost".into()];
    let dry = h.plane.dry_run(&alice, &req).await?;
    assert_eq!(codes(&dry)[0], ProblemCode::UnknownResource, "{dry:?}");
    assert!(dry.problems[0].message.contains("\"ghost\""), "{dry:?}");

    let mut req = dev_request();
    req.permission = "Root".into();
    let dry = h.plane.dry_run(&alice, &req).await?;
    assert_eq!(
        codes(&dry),
        [ProblemCode::UnknownPermission, ProblemCode::NoMatchingFlow],
        "{dry:?}"
    );
    assert!(dry.problems[0].message.contains("Default"), "{dry:?}");

    // A permission that exists, but no flow lets bob (sre) at the dev boxes.
    let dry = h.plane.dry_run(&bob, &dev_request()).await?;
    assert_eq!(codes(&dry), [ProblemCode::NoMatchingFlow], "{dry:?}");
    assert!(
        dry.problems[0].message.contains("no access flow"),
        "{dry:?}"
    );

    let mut req = dev_request();
    req.duration = Some("soon".into());
    let dry = h.plane.dry_run(&alice, &req).await?;
    assert!(
        codes(&dry).contains(&ProblemCode::InvalidDuration),
        "{dry:?}"
    );

    let dry = h.plane.dry_run(&alice, &dev_request()).await?;
    assert!(dry.allowed && dry.problems.is_empty(), "{dry:?}");
    Ok(())
}

/// Sends one HTTP/1.1 request and returns the status code and body.
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    stream
        .write_all(format!("{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response.get(9..12).unwrap_or("0").parse()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_requires_a_token_and_scopes_what_users_see() -> Result<()> {
    let h = harness(false).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = apono_control::api::router(h.plane.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    assert_eq!(http(addr, "GET", "/healthz", None).await?.0, 200);
    assert_eq!(http(addr, "GET", "/readyz", None).await?.0, 200);
    let (status, openapi) = http(addr, "GET", "/api/v1/openapi.json", None).await?;
    assert_eq!(status, 200);
    assert!(
        openapi.contains("/api/v1/access-requests/{id}/approve"),
        "{openapi}"
    );
    assert_eq!(
        http(addr, "GET", "/api/v1/access-requests", None).await?.0,
        401
    );
    assert_eq!(
        http(addr, "GET", "/api/v1/access-requests", Some("apono_forged"))
            .await?
            .0,
        401
    );

    let alice = h.plane.create_token("alice@example.com").await?;
    let root = h.plane.create_token("root@example.com").await?;
    assert!(h.plane.create_token("nobody@example.com").await.is_err());
    assert_eq!(http(addr, "GET", "/api/v1/me", None).await?.0, 401);
    assert_eq!(
        http(addr, "GET", "/api/v1/me", Some("apono_forged"))
            .await?
            .0,
        401
    );
    let (status, me) = http(addr, "GET", "/api/v1/me", Some(&alice)).await?;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&me)?,
        serde_json::json!({ "email": "alice@example.com", "groups": ["developers"], "admin": false })
    );
    let (status, me) = http(addr, "GET", "/api/v1/me", Some(&root)).await?;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&me)?,
        serde_json::json!({ "email": "root@example.com", "groups": [], "admin": true })
    );
    assert!(
        openapi.contains("/api/v1/me") && openapi.contains("duration_over_max"),
        "{openapi}"
    );
    let (status, resources) = http(
        addr,
        "GET",
        "/api/v1/resources?integration=boxes",
        Some(&alice),
    )
    .await?;
    assert_eq!(status, 200);
    assert!(resources.contains("dev-1"), "{resources}");
    assert_eq!(
        http(
            addr,
            "GET",
            "/api/v1/access-requests?scope=all",
            Some(&alice)
        )
        .await?
        .0,
        403
    );
    assert_eq!(
        http(
            addr,
            "GET",
            "/api/v1/access-requests?scope=all",
            Some(&root)
        )
        .await?
        .0,
        200
    );
    assert_eq!(
        http(addr, "GET", "/api/v1/audit", Some(&alice)).await?.0,
        403
    );
    let (status, lines) = http(addr, "GET", "/api/v1/audit?format=jsonl", Some(&root)).await?;
    assert_eq!(status, 200);
    assert!(
        lines.lines().any(|l| l.contains("\"token.used\"")),
        "{lines}"
    );
    assert!(
        !lines.contains(&alice) && !lines.contains(&root),
        "tokens must not be audited"
    );
    let (_, metrics) = http(addr, "GET", "/metrics", None).await?;
    assert!(metrics.contains("apono_revokes_due 0"), "{metrics}");
    Ok(())
}

// ------------------------------------------------------------------ all_of approval

/// `pair`: bob and erin must both approve. `duties`: one sre and one dba, different people;
/// carol is in both groups.
const ALL_OF_CONFIG: &str = r#"
[connector]
id = "test"
listen = "127.0.0.1:0"
master_key = { secret_store = { apono = { parameters = { master_key = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a" } } } }

[[users]]
email = "alice@example.com"
groups = ["developers"]

[[users]]
email = "bob@example.com"
groups = ["sre"]

[[users]]
email = "carol@example.com"
groups = ["sre", "dba"]

[[users]]
email = "dave@example.com"
groups = ["dba"]

[[users]]
email = "erin@example.com"
groups = ["leads"]

[[users]]
email = "root@example.com"
admin = true

[[integrations]]
name = "boxes"
type = "fake"
secret_store = { apono = { parameters = { password = "admin-secret" } } }

[[access_flows]]
name = "pair"
trigger = "self_serve"
requestors = { groups = ["developers", "leads"] }
targets = [{ integration = "boxes", resource_type = "box", permissions = ["Default"], resources = { tags = { env = "dev" } } }]
approvers = { mode = "all_of", users = ["bob@example.com", "erin@example.com"] }
grant_duration = "1h"

[[access_flows]]
name = "duties"
trigger = "self_serve"
requestors = { groups = ["developers"] }
targets = [{ integration = "boxes", resource_type = "box", permissions = ["Default"], resources = { tags = { env = "prod" } } }]
approvers = { mode = "all_of", groups = ["sre", "dba"] }
grant_duration = "1h"
"#;

fn box_request(id: &str) -> NewRequest {
    NewRequest {
        integration: "boxes".into(),
        resource_type: "box".into(),
        resource_ids: vec![id.into()],
        permission: "Default".into(),
        justification: Some("change 7".into()),
        duration: None,
    }
}

/// The ids of the requests awaiting `user`'s approval.
async fn awaiting_ids(h: &Harness, user: &User) -> Result<Vec<String>> {
    Ok(h.plane
        .requests(user, RequestScope::AwaitingMyApproval)
        .await?
        .into_iter()
        .map(|r| r.id)
        .collect())
}

fn approvers_of(request: &apono_control::AccessRequest) -> Vec<&str> {
    request
        .approvals
        .iter()
        .map(|a| a.approver.as_str())
        .collect()
}

async fn all_of_needs_every_approver(postgres: bool) -> Result<()> {
    let h = harness_with(postgres, ALL_OF_CONFIG).await?;
    let [alice, bob, carol, dave, erin, root] = ["alice", "bob", "carol", "dave", "erin", "root"]
        .map(|name| user(&h, &format!("{name}@example.com")));

    // Two named users: the first approval leaves it Pending, awaiting the other.
    let request = h
        .plane
        .create_request(&alice, &box_request("dev-1"))
        .await?;
    assert_eq!(request.status, RequestStatus::Pending);
    assert_eq!(
        request.awaiting,
        ["user:bob@example.com", "user:erin@example.com"]
    );
    assert!(request.approvals.is_empty());
    assert_eq!(awaiting_ids(&h, &bob).await?, [request.id.as_str()]);
    assert_eq!(awaiting_ids(&h, &erin).await?, [request.id.as_str()]);
    assert!(awaiting_ids(&h, &dave).await?.is_empty(), "not an approver");
    assert!(
        awaiting_ids(&h, &root).await?.is_empty(),
        "an admin meets no entry of an all_of flow"
    );
    let partial = h
        .plane
        .approve(&bob, &request.id, Some("looks fine"))
        .await?;
    assert_eq!(partial.status, RequestStatus::Pending);
    assert_eq!(partial.awaiting, ["user:erin@example.com"]);
    assert_eq!(approvers_of(&partial), ["bob@example.com"]);
    assert!(partial.session_ids.is_empty() && partial.decided_by.is_none());
    assert!(h.target.granted.lock().unwrap().is_empty());
    assert!(awaiting_ids(&h, &bob).await?.is_empty(), "bob approved it");
    assert_eq!(awaiting_ids(&h, &erin).await?, [request.id.as_str()]);
    // Twice is a conflict; an admin's approval meets nothing.
    let twice = h.plane.approve(&bob, &request.id, None).await.unwrap_err();
    assert!(
        matches!(&twice, ControlError::Conflict(m) if m.contains("already approved") && m.contains("user:erin@example.com")),
        "{twice}"
    );
    let admin = h.plane.approve(&root, &request.id, None).await.unwrap_err();
    assert!(matches!(admin, ControlError::Forbidden(_)), "{admin}");
    let approved = h.plane.approve(&erin, &request.id, None).await?;
    assert_eq!(approved.status, RequestStatus::Granting);
    assert!(approved.awaiting.is_empty());
    assert_eq!(
        approvers_of(&approved),
        ["bob@example.com", "erin@example.com"]
    );
    assert_eq!(approved.decided_by.as_deref(), Some("erin@example.com"));
    h.plane.run_due_once().await?;
    let active = h.plane.request(&alice, &request.id).await?;
    assert_eq!(active.status, RequestStatus::Active);
    assert_eq!(h.target.granted.lock().unwrap().len(), 1);
    let listed = h.plane.requests(&alice, RequestScope::Mine).await?;
    assert_eq!(approvers_of(&listed[0]), approvers_of(&approved));
    let records = audit::records(h.plane.store(), 0, 1000, Some(&request.id)).await?;
    let details = |action: &str| -> Vec<serde_json::Value> {
        records
            .iter()
            .filter(|r| r.action == action)
            .map(|r| serde_json::from_str(&r.details).unwrap())
            .collect()
    };
    let recorded = details("request.approval_recorded");
    assert_eq!(recorded.len(), 1, "{records:?}");
    assert_eq!(
        recorded[0]["awaiting"],
        serde_json::json!(["user:erin@example.com"])
    );
    assert_eq!(recorded[0]["reason"], "looks fine");
    let final_ = details("request.approved");
    assert_eq!(final_.len(), 1, "{records:?}");
    assert_eq!(
        final_[0]["approvals"],
        serde_json::json!(["bob@example.com", "erin@example.com"])
    );

    // One person in both listed groups meets one of them only; order does not matter: bob
    // (sre only) completes it, carol being counted for dba.
    let duties = h
        .plane
        .create_request(&alice, &box_request("web-1"))
        .await?;
    assert_eq!(duties.awaiting, ["group:sre", "group:dba"]);
    let partial = h.plane.approve(&carol, &duties.id, None).await?;
    assert_eq!(partial.status, RequestStatus::Pending);
    assert_eq!(partial.awaiting, ["group:dba"]);
    let twice = h.plane.approve(&carol, &duties.id, None).await.unwrap_err();
    assert!(matches!(twice, ControlError::Conflict(_)), "{twice}");
    assert!(!awaiting_ids(&h, &carol).await?.contains(&duties.id));
    assert!(awaiting_ids(&h, &dave).await?.contains(&duties.id));
    assert!(
        awaiting_ids(&h, &bob).await?.contains(&duties.id),
        "carol moves to dba when bob takes sre"
    );
    let approved = h.plane.approve(&bob, &duties.id, None).await?;
    assert_eq!(approved.status, RequestStatus::Granting);
    assert!(approved.awaiting.is_empty());

    // A rejection after one approval rejects at once; approving afterwards is a conflict.
    let rejected = h
        .plane
        .create_request(&alice, &box_request("web-2"))
        .await?;
    let partial = h.plane.approve(&dave, &rejected.id, None).await?;
    assert_eq!(partial.awaiting, ["group:sre"]);
    let done = h.plane.reject(&bob, &rejected.id, "not today").await?;
    assert_eq!(done.status, RequestStatus::Rejected);
    assert!(done.awaiting.is_empty());
    assert_eq!(approvers_of(&done), ["dave@example.com"]);
    assert_eq!(done.reason.as_deref(), Some("not today"));
    let late = h
        .plane
        .approve(&carol, &rejected.id, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&late, ControlError::Conflict(m) if m.contains("not Pending")),
        "{late}"
    );
    assert!(!awaiting_ids(&h, &carol).await?.contains(&rejected.id));

    // A listed approver's own request could never be fully approved (she cannot count for
    // herself): refused up front with a code, not left Pending for ever.
    let dry = h.plane.dry_run(&erin, &box_request("dev-1")).await?;
    assert!(!dry.allowed, "{dry:?}");
    assert!(
        dry.problems
            .iter()
            .any(|p| p.code == ProblemCode::NoPossibleApproval
                && p.message.contains("user:erin@example.com")),
        "{dry:?}"
    );
    let refused = h
        .plane
        .create_request(&erin, &box_request("dev-1"))
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("no configured user other than the requester"),
        "{refused}"
    );

    // Over HTTP: a partial approval answers 200 with the request still Pending; twice is 409.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let router = apono_control::api::router(h.plane.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let pending = h
        .plane
        .create_request(&alice, &box_request("web-2"))
        .await?;
    let dave_token = h.plane.create_token("dave@example.com").await?;
    let path = format!("/api/v1/access-requests/{}/approve", pending.id);
    let (status, body) = http(addr, "POST", &path, Some(&dave_token)).await?;
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(body["status"], "Pending");
    assert_eq!(body["awaiting"], serde_json::json!(["group:sre"]));
    assert_eq!(body["approvals"][0]["approver"], "dave@example.com");
    assert!(body["approvals"][0]["decided_at"].is_string(), "{body}");
    let (status, body) = http(addr, "POST", &path, Some(&dave_token)).await?;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already approved"), "{body}");
    let (_, openapi) = http(addr, "GET", "/api/v1/openapi.json", None).await?;
    assert!(
        openapi.contains("RequestApproval") && openapi.contains("awaiting"),
        "{openapi}"
    );

    let report = h.plane.verify_audit().await?;
    assert!(report.is_intact(), "{report:?}");
    Ok(())
}

on_both_databases!(all_of_needs_every_approver);

/// Concurrent approvers of one `all_of` request: whichever commits last approves it, exactly
/// once (PostgreSQL row lock; SQLite's write gate).
async fn all_of_concurrent_approvals_approve_once(postgres: bool) -> Result<()> {
    let h = harness_with(postgres, ALL_OF_CONFIG).await?;
    let alice = user(&h, "alice@example.com");
    let bob = user(&h, "bob@example.com");
    let dave = user(&h, "dave@example.com");
    for round in 0..5 {
        let request = h
            .plane
            .create_request(&alice, &box_request("web-1"))
            .await?;
        let (a, b) = tokio::join!(
            h.plane.approve(&bob, &request.id, None),
            h.plane.approve(&dave, &request.id, None)
        );
        let (a, b) = (a?, b?);
        assert!(
            [a.status, b.status].contains(&RequestStatus::Granting),
            "round {round}: {a:?} {b:?}"
        );
        let now = h.plane.request(&alice, &request.id).await?;
        assert_ne!(now.status, RequestStatus::Pending, "round {round}");
        assert_eq!(now.approvals.len(), 2);
        let approved = audit::records(h.plane.store(), 0, 1000, Some(&request.id))
            .await?
            .into_iter()
            .filter(|r| r.action == "request.approved")
            .count();
        assert_eq!(approved, 1, "round {round}");
        h.plane.revoke(&alice, &request.id).await?;
        h.plane.run_due_once().await?;
    }
    assert!(h.plane.verify_audit().await?.is_intact());
    Ok(())
}

on_both_databases!(all_of_concurrent_approvals_approve_once);

#[test]
fn all_of_without_approvers_is_a_config_error() {
    let text = ALL_OF_CONFIG.replace(
        r#"approvers = { mode = "all_of", groups = ["sre", "dba"] }"#,
        r#"approvers = { mode = "all_of" }"#,
    );
    let err = Config::parse(&text, std::iter::empty(), None).unwrap_err();
    assert_eq!(err.problems.len(), 1, "{err}");
    assert_eq!(err.problems[0].key, "access_flows[1].approvers");
    assert!(err.problems[0].message.contains("all_of"), "{err}");
    let text = ALL_OF_CONFIG.replace(
        r#"users = ["bob@example.com", "erin@example.com"]"#,
        r#"users = ["bob@example.com", "nobody@example.com"]"#,
    );
    let err = Config::parse(&text, std::iter::empty(), None).unwrap_err();
    assert_eq!(err.problems[0].key, "access_flows[0].approvers.users");
    assert!(
        err.problems[0].message.contains("nobody@example.com"),
        "{err}"
    );
    let mode = ALL_OF_CONFIG.replace("all_of", "most_of");
    let err = Config::parse(&mode, std::iter::empty(), None).unwrap_err();
    assert!(err.to_string().contains("access_flows[0] (pair)"), "{err}");
}

// ------------------------------------------------------------------ sealed credentials, keyed audit

/// The master key every test configuration names (`5a` × 32).
const TEST_KEY: &str = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";

async fn sealed_of(plane: &ControlPlane, id: &str) -> Result<(Option<String>, Option<String>)> {
    Ok(
        sqlx::query_as("SELECT credential_status, sealed_credentials FROM grants WHERE id = $1")
            .bind(id)
            .fetch_one(plane.store().pool())
            .await?,
    )
}

/// Credentials sealed in the store survive a restart and are shown exactly once by whichever
/// of two connectors on the same database is asked; both ask at once, twenty times over.
async fn sealed_credentials_are_shown_once_by_any_replica(postgres: bool) -> Result<()> {
    let h = harness(postgres).await?;
    let alice = user(&h, "alice@example.com");
    let request = h.plane.create_request(&alice, &dev_request()).await?;
    h.plane.run_due_once().await?;
    let id = h.plane.request(&alice, &request.id).await?.session_ids[0].clone();
    let (status, sealed) = sealed_of(&h.plane, &id).await?;
    assert_eq!(status.as_deref(), Some("new"));
    let sealed = sealed.expect("sealed in the store");
    assert!(
        sealed.starts_with("v1:") && !sealed.contains("canary"),
        "{sealed}"
    );
    // A restart, and a second replica: a fresh control plane on the same database.
    let other = open(&h._db.url, h.target.clone()).await?;
    let mut shown = 0;
    for round in 0..20 {
        if round > 0 {
            h.plane.reset_credentials(&alice, &id).await?;
            h.plane.run_due_once().await?;
            assert_eq!(sealed_of(&h.plane, &id).await?.0.as_deref(), Some("new"));
        }
        let (a, b) = tokio::join!(
            h.plane.access_details(&alice, &id),
            other.access_details(&alice, &id)
        );
        let got: Vec<bool> = [a?, b?]
            .iter()
            .map(|d| d.to_string().contains("one-time-canary"))
            .collect();
        assert_eq!(
            got.iter().filter(|g| **g).count(),
            1,
            "round {round}: {got:?}"
        );
        shown += 1;
        let (status, sealed) = sealed_of(&h.plane, &id).await?;
        assert_eq!(status.as_deref(), Some("viewed"));
        assert!(sealed.is_none(), "deleted with the view");
    }
    assert_eq!(shown, 20);
    let all = audit::records(h.plane.store(), 0, 100_000, None).await?;
    assert!(!serde_json::to_string(&all)?.contains("one-time-canary"));
    assert_eq!(
        all.iter()
            .filter(|r| r.action == "session.access_details"
                && r.details.contains("\"credentials_shown\":true"))
            .count(),
        20
    );
    Ok(())
}

on_both_databases!(sealed_credentials_are_shown_once_by_any_replica);

/// A revoke deletes the sealed credentials in its own transaction; a sealed blob copied to
/// another grant's row does not open there.
async fn revoke_deletes_sealed_credentials_and_copies_do_not_open(postgres: bool) -> Result<()> {
    let h = harness(postgres).await?;
    let alice = user(&h, "alice@example.com");
    let bob = user(&h, "bob@example.com");
    let mut ids = Vec::new();
    for req in [dev_request(), prod_request(Some("incident 7"), None)] {
        let request = h.plane.create_request(&alice, &req).await?;
        if request.status == RequestStatus::Pending {
            h.plane.approve(&bob, &request.id, None).await?;
        }
        h.plane.run_due_once().await?;
        ids.push((
            request.id.clone(),
            h.plane.request(&alice, &request.id).await?.session_ids[0].clone(),
        ));
    }
    let (first_request, first) = &ids[0];
    let (_, second) = &ids[1];
    // Copy the first grant's blob onto the second: authenticated against the grant id, it
    // does not open, and is deleted all the same.
    let blob = sealed_of(&h.plane, first).await?.1.expect("sealed");
    sqlx::query("UPDATE grants SET sealed_credentials = $1 WHERE id = $2")
        .bind(&blob)
        .bind(second)
        .execute(h.plane.store().pool())
        .await?;
    let copied = h.plane.access_details(&alice, second).await?;
    assert!(!copied.to_string().contains("one-time-canary"), "{copied}");
    assert!(
        copied["credentials"]
            .as_str()
            .unwrap()
            .contains("could not be unsealed")
    );
    assert!(sealed_of(&h.plane, second).await?.1.is_none());

    h.plane.revoke(&alice, first_request).await?;
    let (status, sealed) = sealed_of(&h.plane, first).await?;
    assert!(sealed.is_none(), "deleted at revoke (status {status:?})");
    Ok(())
}

on_both_databases!(revoke_deletes_sealed_credentials_and_copies_do_not_open);

/// Another master key (the key lost and replaced): pending credentials are never readable,
/// they are deleted and the requester is told to reset.
async fn credentials_under_a_lost_key_are_unrecoverable(postgres: bool) -> Result<()> {
    let h = harness(postgres).await?;
    let alice = user(&h, "alice@example.com");
    let request = h.plane.create_request(&alice, &dev_request()).await?;
    h.plane.run_due_once().await?;
    let id = h.plane.request(&alice, &request.id).await?.session_ids[0].clone();
    let other_key = "77".repeat(32);
    let replaced = open_with(
        &h._db.url,
        h.target.clone(),
        &CONFIG.replace(TEST_KEY, &other_key),
    )
    .await?;
    let details = replaced.access_details(&alice, &id).await?;
    let text = details["credentials"].as_str().unwrap_or_default();
    assert!(
        text.contains("could not be unsealed") && text.contains("reset-credentials"),
        "{details}"
    );
    assert!(!details.to_string().contains("one-time-canary"));
    assert!(sealed_of(&h.plane, &id).await?.1.is_none());
    // Not readable under the old key either: they are gone.
    let again = h.plane.access_details(&alice, &id).await?;
    assert!(!again.to_string().contains("one-time-canary"));
    Ok(())
}

on_both_databases!(credentials_under_a_lost_key_are_unrecoverable);

/// Someone who can write the database rewrites a record and recomputes every link after it,
/// as they could when the links were plain SHA-256: without the key, `verify` finds it, and
/// says which key it checked with.
async fn keyed_audit_detects_a_rewritten_and_recomputed_chain(postgres: bool) -> Result<()> {
    let h = harness(postgres).await?;
    let alice = user(&h, "alice@example.com");
    h.plane.create_request(&alice, &dev_request()).await?;
    h.plane.run_due_once().await?;
    let key_id = apono_control::Keys::parse(TEST_KEY)?.id().to_owned();
    let before = h.plane.verify_audit().await?;
    assert!(before.is_intact() && before.unkeyed == 0, "{before:?}");
    assert_eq!(before.key_id, key_id);
    let records = audit::records(h.plane.store(), 0, 10_000, None).await?;
    assert!(records.iter().all(|r| r.key_id == key_id));

    // Rewrite record 2 and recompute the chain from there on (SHA-256, the real key id).
    rewrite(&h, &records, 2, Some(&key_id)).await?;
    let after = h.plane.verify_audit().await?;
    assert_eq!(after.first_broken, Some(2), "{after:?}");
    assert_eq!(after.key_id, key_id);
    // The same rewrite presented as records from before the chain was keyed: an unkeyed link
    // after a keyed one is refused.
    rewrite(&h, &records, 2, None).await?;
    assert_eq!(h.plane.verify_audit().await?.first_broken, Some(2));
    // The whole chain rewritten as unkeyed from the start: refused too.
    rewrite(&h, &records, 1, None).await?;
    let whole = h.plane.verify_audit().await?;
    assert_eq!(whole.first_broken, Some(1), "{whole:?}");
    Ok(())
}

/// Recomputes the chain with plain SHA-256 links from record `from` on, with mallory as the
/// actor of record 2, and moves the head, as a database writer without the key can.
async fn rewrite(
    h: &Harness,
    records: &[audit::AuditRecord],
    from: i64,
    key_id: Option<&str>,
) -> Result<()> {
    use sha2::{Digest, Sha256};
    let mut prev = if from == 1 {
        "genesis".to_owned()
    } else {
        records[(from - 2) as usize].hash.clone()
    };
    for r in records.iter().filter(|r| r.seq >= from) {
        let actor = if r.seq == 2 {
            "mallory@example.com"
        } else {
            r.actor.as_str()
        };
        let mut hasher = Sha256::new();
        for part in [
            prev.as_str(),
            &r.seq.to_string(),
            &r.at.to_string(),
            actor,
            &r.action,
            &r.subject,
            &r.outcome,
            &r.details,
        ] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let hash = data_encoding::HEXLOWER.encode(&hasher.finalize());
        sqlx::query(
            "UPDATE audit SET actor = $1, prev_hash = $2, hash = $3, key_id = $4 WHERE seq = $5",
        )
        .bind(actor)
        .bind(&prev)
        .bind(&hash)
        .bind(key_id)
        .bind(r.seq)
        .execute(h.plane.store().pool())
        .await?;
        prev = hash;
    }
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&prev)
        .execute(h.plane.store().pool())
        .await?;
    Ok(())
}

on_both_databases!(keyed_audit_detects_a_rewritten_and_recomputed_chain);

// ------------------------------------------------------------------ API tokens

/// Tokens expire, list without their secret, and a revoke on one replica refuses the token on
/// another at its next request; users see and revoke only their own, admins anyone's.
async fn tokens_expire_list_and_revoke_across_replicas(postgres: bool) -> Result<()> {
    use apono_control::{NewToken, TokenScope};
    use secrecy::ExposeSecret;
    let h = harness(postgres).await?;
    let replica = open(&h._db.url, h.target.clone()).await?;
    let alice = user(&h, "alice@example.com");
    let bob = user(&h, "bob@example.com");
    let root = user(&h, "root@example.com");

    // Past the maximum (a year by default): refused, nothing stored.
    let too_long = NewToken {
        name: Some("ci".into()),
        expires_in: Some(Duration::from_secs(400 * 86_400)),
    };
    let err = h
        .plane
        .issue_token(None, &alice.email, &too_long)
        .await
        .unwrap_err();
    assert!(matches!(err, ControlError::Invalid(_)), "{err}");

    let short = NewToken {
        name: Some("laptop".into()),
        expires_in: Some(Duration::from_secs(2)),
    };
    let brief = h.plane.issue_token(None, &alice.email, &short).await?;
    let lasting = h
        .plane
        .issue_token(None, &alice.email, &NewToken::default())
        .await?;
    let bobs = h
        .plane
        .issue_token(None, &bob.email, &NewToken::default())
        .await?;
    assert_eq!(lasting.info.name, "token");
    let days = (lasting.info.expires_at - lasting.info.created_at).num_days();
    assert_eq!(days, 30, "the default expiry");
    for t in [&brief, &lasting] {
        assert_eq!(
            replica.authenticate(t.token.expose_secret()).await?.email,
            alice.email
        );
    }

    // Lists: never the secret; users their own, admins anyone's.
    let mine = h.plane.tokens(Some(&alice), TokenScope::Mine).await?;
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|t| t.user == alice.email));
    let text = serde_json::to_string(&mine)?;
    assert!(!text.contains(brief.token.expose_secret()), "{text}");
    assert!(mine.iter().all(|t| t.last_used_at.is_some()), "{mine:?}");
    assert!(matches!(
        h.plane
            .tokens(Some(&alice), TokenScope::User(bob.email.clone()))
            .await,
        Err(ControlError::Forbidden(_))
    ));
    assert!(matches!(
        h.plane.tokens(Some(&alice), TokenScope::All).await,
        Err(ControlError::Forbidden(_))
    ));
    assert_eq!(h.plane.tokens(Some(&root), TokenScope::All).await?.len(), 3);

    // Alice cannot revoke Bob's token (it does not exist for her); Bob's still works.
    assert!(matches!(
        h.plane.revoke_token(Some(&alice), &bobs.info.id).await,
        Err(ControlError::NotFound(_))
    ));
    replica.authenticate(bobs.token.expose_secret()).await?;
    // Alice revokes her own on one replica: refused on the other at the next request.
    let revoked = h.plane.revoke_token(Some(&alice), &lasting.info.id).await?;
    assert_eq!(revoked.status, "revoked");
    assert_eq!(revoked.revoked_by.as_deref(), Some(alice.email.as_str()));
    assert!(matches!(
        replica.authenticate(lasting.token.expose_secret()).await,
        Err(ControlError::Unauthenticated)
    ));
    // An admin revokes Bob's through the other replica.
    replica.revoke_token(Some(&root), &bobs.info.id).await?;
    assert!(matches!(
        h.plane.authenticate(bobs.token.expose_secret()).await,
        Err(ControlError::Unauthenticated)
    ));

    // The short one expires.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert!(matches!(
        h.plane.authenticate(brief.token.expose_secret()).await,
        Err(ControlError::Unauthenticated)
    ));
    let all = h.plane.tokens(None, TokenScope::All).await?;
    let status = |id: &str| all.iter().find(|t| t.id == id).map(|t| t.status.clone());
    assert_eq!(status(&brief.info.id).as_deref(), Some("expired"));
    assert_eq!(status(&bobs.info.id).as_deref(), Some("revoked"));

    let records = audit::records(h.plane.store(), 0, 10_000, None).await?;
    let count = |action: &str| records.iter().filter(|r| r.action == action).count();
    assert_eq!(count("token.created"), 3);
    assert_eq!(count("token.revoked"), 2);
    assert!(
        records
            .iter()
            .any(|r| r.action == "token.revoke" && r.outcome == "denied"),
        "alice's attempt on bob's token is audited"
    );
    let text = serde_json::to_string(&records)?;
    for t in [&brief, &lasting, &bobs] {
        assert!(!text.contains(t.token.expose_secret()));
    }
    Ok(())
}

on_both_databases!(tokens_expire_list_and_revoke_across_replicas);

/// A watch answers as soon as a change commits in this process, not at its re-check; it
/// answers unchanged at its deadline and at once when the API stops; the request's
/// visibility rules hold.
async fn watches_answer_at_the_commit(postgres: bool) -> Result<()> {
    let h = harness(postgres).await?;
    let alice = user(&h, "alice@example.com");
    let bob = user(&h, "bob@example.com");
    let request = h.plane.create_request(&alice, &dev_request()).await?;
    h.plane.run_due_once().await?;
    let first = h
        .plane
        .watch_request(&alice, &request.id, None, Duration::ZERO)
        .await?;
    assert!(first.changed);
    assert_eq!(first.value.status, RequestStatus::Active);
    assert!(matches!(
        h.plane
            .watch_request(&bob, &request.id, None, Duration::ZERO)
            .await,
        Err(ControlError::NotFound(_))
    ));

    // Unchanged: the unchanged state at the deadline.
    let started = std::time::Instant::now();
    let same = h
        .plane
        .watch_request(
            &alice,
            &request.id,
            Some(&first.version),
            Duration::from_millis(300),
        )
        .await?;
    assert!(!same.changed && same.version == first.version);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A revoke commits: the waiting watch answers at once (the re-check is a second away).
    let waiter = {
        let plane = h.plane.clone();
        let (alice, id, version) = (alice.clone(), request.id.clone(), first.version.clone());
        tokio::spawn(async move {
            let v = plane
                .watch_request(&alice, &id, Some(&version), Duration::from_secs(30))
                .await;
            (v, std::time::Instant::now())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.plane.revoke(&alice, &request.id).await?;
    let revoked_at = std::time::Instant::now();
    let (changed, answered_at) = waiter.await?;
    let changed = changed?;
    assert!(changed.changed && changed.value.status != RequestStatus::Active);
    let lag = answered_at.saturating_duration_since(revoked_at);
    assert!(
        lag < Duration::from_millis(500),
        "answered {lag:?} after the revoke"
    );

    // The session's watch, and the end of every watch when the API stops.
    let session = &changed.value.session_ids[0];
    let s = h
        .plane
        .watch_session(&alice, session, None, Duration::ZERO)
        .await?;
    let waiter = {
        let plane = h.plane.clone();
        let (alice, id, version) = (alice.clone(), session.clone(), s.version.clone());
        tokio::spawn(async move {
            plane
                .watch_session(&alice, &id, Some(&version), Duration::from_secs(30))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let closed_at = std::time::Instant::now();
    h.plane.close_watches();
    let ended = tokio::time::timeout(Duration::from_secs(2), waiter).await???;
    assert!(!ended.changed && ended.version == s.version);
    assert!(closed_at.elapsed() < Duration::from_secs(2));
    Ok(())
}

on_both_databases!(watches_answer_at_the_commit);
