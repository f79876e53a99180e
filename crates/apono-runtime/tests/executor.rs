//! The executor's promises: deadlines, per-target and global concurrency bounds, secrets read
//! per action, cancellation, and classified errors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use apono_core::{
    AccessDetails, ActionContext, CancelSignal, ErrorKind, GrantId, GrantSpec, GrantState, Granted,
    Grantee, Integration, Inventory, Permission, ProvisionError, Provisioner, Resource,
    SecretError, SecretStore, SecretStoreKind, SecretStoreRef, SecretValue, StatusReport,
    async_trait,
};
use apono_runtime::{Executor, ExecutorLimits, ProvisionerRegistry};
use apono_secrets::SecretResolver;

/// Counts reads, so the test sees that every action reads the secret afresh.
#[derive(Debug, Default)]
struct CountingStore(AtomicUsize);

#[async_trait]
impl SecretStore for CountingStore {
    fn kind(&self) -> SecretStoreKind {
        SecretStoreKind::Aws
    }
    async fn get(&self, _reference: &SecretStoreRef) -> Result<SecretValue, SecretError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(SecretValue::new().with("password", "admin-secret"))
    }
}

#[derive(Debug, Default)]
struct Slow {
    delay: Duration,
    running: AtomicUsize,
    peak: AtomicUsize,
}

#[async_trait]
impl Provisioner for Slow {
    async fn get_status(&self, _: &ActionContext) -> Result<StatusReport, ProvisionError> {
        Ok(StatusReport::from_checks(vec![]))
    }
    async fn list_resources(&self, _: &ActionContext) -> Result<Inventory, ProvisionError> {
        Ok(Inventory::default())
    }
    async fn grant_access(
        &self,
        ctx: &ActionContext,
        g: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        ctx.secret().require("password")?;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(Granted {
            state: GrantState::encode(&g.grant_id)?,
            access: AccessDetails::default(),
        })
    }
    async fn revoke_access(
        &self,
        _: &ActionContext,
        _: &GrantSpec,
        _: &GrantState,
    ) -> Result<(), ProvisionError> {
        Ok(())
    }
}

fn integration(kind: &str) -> Integration {
    serde_json::from_value(serde_json::json!({
        "name": "i", "type": kind,
        "secret_store": {"aws": {"region": "eu-west-1", "secret_id": "s"}}
    }))
    .unwrap()
}

fn spec(n: usize, resource: &str) -> GrantSpec {
    GrantSpec {
        grant_id: GrantId::new(format!("g{n}")).unwrap(),
        grantee: Grantee {
            id: "a".into(),
            email: "a@example.com".into(),
            display_name: String::new(),
            groups: vec![],
        },
        resource: Resource {
            integration: "i".into(),
            resource_type: "box".into(),
            id: resource.into(),
            name: resource.into(),
            tags: Default::default(),
        },
        permission: Permission::from("Default"),
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
        custom_parameters: Default::default(),
    }
}

fn executor(provisioner: Arc<Slow>, store: Arc<CountingStore>, limits: ExecutorLimits) -> Executor {
    let mut registry = ProvisionerRegistry::new();
    registry.register(
        "slow",
        Arc::new(move |_| Ok(provisioner.clone() as Arc<dyn Provisioner>)),
    );
    Executor::new(
        registry,
        Arc::new(SecretResolver::builder().store(store).build()),
        limits,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounds_concurrency_per_target_and_globally_and_reads_the_secret_per_action() {
    let slow = Arc::new(Slow {
        delay: Duration::from_millis(50),
        ..Slow::default()
    });
    let store = Arc::new(CountingStore::default());
    let limits = ExecutorLimits {
        global: 3,
        per_target: 2,
        action_timeout: Duration::from_secs(5),
    };
    let exec = Arc::new(executor(slow.clone(), store.clone(), limits));
    let integration = integration("slow");

    // One target: at most 2 at once.
    let tasks: Vec<_> = (0..6)
        .map(|n| {
            let (exec, integration) = (exec.clone(), integration.clone());
            tokio::spawn(async move {
                exec.grant(&integration, &spec(n, "one"), &CancelSignal::new())
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(slow.peak.load(Ordering::SeqCst), 2);
    assert_eq!(
        store.0.load(Ordering::SeqCst),
        6,
        "one secret read per action"
    );

    // Many targets: at most 3 at once.
    slow.peak.store(0, Ordering::SeqCst);
    let tasks: Vec<_> = (0..9)
        .map(|n| {
            let (exec, integration) = (exec.clone(), integration.clone());
            tokio::spawn(async move {
                exec.grant(
                    &integration,
                    &spec(n, &format!("t{n}")),
                    &CancelSignal::new(),
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(slow.peak.load(Ordering::SeqCst), 3);
    assert_eq!(exec.in_flight(), 0);
}

#[tokio::test]
async fn deadline_cancel_and_unknown_types_are_classified() {
    let slow = Arc::new(Slow {
        delay: Duration::from_secs(30),
        ..Slow::default()
    });
    let limits = ExecutorLimits {
        global: 4,
        per_target: 4,
        action_timeout: Duration::from_millis(100),
    };
    let exec = executor(slow, Arc::new(CountingStore::default()), limits);

    let err = exec
        .grant(&integration("slow"), &spec(1, "r"), &CancelSignal::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(err.kind().is_retryable());

    let cancel = CancelSignal::new();
    cancel.cancel();
    let err = exec
        .grant(&integration("slow"), &spec(2, "r"), &cancel)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);

    let err = exec
        .grant(&integration("nope"), &spec(3, "r"), &CancelSignal::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(exec.check(&integration("nope")).is_err());

    // A store kind without a backend: not retryable, and no secret in the message.
    let mut other = integration("slow");
    other.secret_store = SecretStoreRef::Gcp {
        project: "p".into(),
        secret_id: "s".into(),
    };
    let err = exec
        .grant(&other, &spec(4, "r"), &CancelSignal::new())
        .await
        .unwrap_err();
    assert!(!err.kind().is_retryable());
    assert!(!format!("{err:?}").contains("admin-secret"));
}
