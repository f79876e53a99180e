//! Two stores on one SQLite file, as `apono-connector tokens create` (or `audit verify`) next
//! to a running connector: both write at once and neither sees "database is locked".

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use apono_control::{Config, ControlPlane, NewRequest, Store, audit};
use apono_core::{
    AccessDetails, ActionContext, CancelSignal, GrantSpec, GrantState, Granted, Inventory,
    Permission, PermissionInfo, ProvisionError, Provisioner, Resource, StatusReport, async_trait,
};
use apono_runtime::{Executor, ExecutorLimits, ProvisionerRegistry};
use apono_secrets::{AponoStore, SecretResolver};
use sqlx::Row;

const RESOURCES: usize = 60;

#[derive(Debug)]
struct Quick;

#[async_trait]
impl Provisioner for Quick {
    async fn get_status(&self, _: &ActionContext) -> Result<StatusReport, ProvisionError> {
        Ok(StatusReport::from_checks(vec![]))
    }
    async fn list_resources(&self, _: &ActionContext) -> Result<Inventory, ProvisionError> {
        Ok(Inventory {
            resources: (0..RESOURCES)
                .map(|i| Resource {
                    integration: String::new(),
                    resource_type: "box".into(),
                    id: format!("r{i}"),
                    name: format!("r{i}"),
                    tags: Default::default(),
                })
                .collect(),
            permissions: vec![PermissionInfo {
                resource_type: "box".into(),
                permission: Permission::from("Default"),
                description: None,
            }],
        })
    }
    async fn grant_access(
        &self,
        _: &ActionContext,
        g: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        tokio::time::sleep(Duration::from_millis(2)).await;
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
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(())
    }
}

const CONFIG: &str = r#"
[connector]
id = "shared"
listen = "127.0.0.1:0"
max_concurrent_actions = 16
[[users]]
email = "alice@example.com"
groups = ["dev"]
[[integrations]]
name = "boxes"
type = "quick"
secret_store = { apono = { parameters = { k = "v" } } }
[[access_flows]]
name = "f"
trigger = "automatic"
requestors = { groups = ["dev"] }
targets = [{ integration = "boxes", resource_type = "box", permissions = ["Default"] }]
grant_duration = "1s"
"#;

async fn plane(url: &str) -> Result<Arc<ControlPlane>> {
    let mut registry = ProvisionerRegistry::new();
    registry.register(
        "quick",
        Arc::new(|_| Ok(Arc::new(Quick) as Arc<dyn Provisioner>)),
    );
    let resolver = SecretResolver::builder()
        .store(Arc::new(AponoStore::new()))
        .build();
    let executor = Arc::new(Executor::new(
        registry,
        Arc::new(resolver),
        ExecutorLimits::default(),
    ));
    Ok(ControlPlane::new(
        Store::open(url).await?,
        Config::parse(CONFIG, std::iter::empty(), None)?,
        executor,
    ))
}

async fn count(plane: &ControlPlane, status: &str) -> Result<i64> {
    Ok(
        sqlx::query("SELECT COUNT(*) AS n FROM grants WHERE status = $1")
            .bind(status)
            .fetch_one(plane.store().pool())
            .await?
            .try_get("n")?,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_sqlite_file_write_at_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite3").display()
    );
    // The "connector": grants made and revoked by its scheduler, with API writes meanwhile.
    let connector = plane(&url).await?;
    connector.bootstrap().await?;
    connector.run_due_once().await?;
    let shutdown = CancelSignal::new();
    let scheduler = tokio::spawn(connector.clone().run_scheduler(shutdown.clone()));
    let alice = connector
        .config()
        .user("alice@example.com")
        .unwrap()
        .clone();

    // The "CLI": a second store on the same file, opened while the connector writes.
    let cli = plane(&url).await?;
    let cli_writes = {
        let cli = cli.clone();
        tokio::spawn(async move {
            let mut tokens = Vec::new();
            for _ in 0..40 {
                tokens.push(cli.create_token("alice@example.com").await?);
            }
            anyhow::Ok(tokens)
        })
    };
    let mut request_ids = Vec::new();
    for i in 0..RESOURCES {
        let request = NewRequest {
            integration: "boxes".into(),
            resource_type: "box".into(),
            resource_ids: vec![format!("r{i}")],
            permission: "Default".into(),
            justification: None,
            duration: None,
        };
        request_ids.push(connector.create_request(&alice, &request).await?.id);
    }
    // Read-then-write transactions on the CLI's side too (an early revoke reads the grant
    // before it writes): the kind a deferred BEGIN could not upgrade while the connector wrote.
    for id in request_ids.iter().step_by(3) {
        cli.revoke(&alice, id).await?;
    }
    let tokens = cli_writes.await??;
    assert_eq!(tokens.len(), 40);

    // Everything the connector granted is revoked in the end (1 s grants, or revoked early).
    let mut revoked = 0;
    for _ in 0..300 {
        revoked = count(&connector, "Revoked").await? + count(&connector, "Failed").await?;
        if revoked == RESOURCES as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    scheduler.await??;
    assert_eq!(revoked, RESOURCES as i64);

    // Both stores' audit records form one intact chain.
    let report = audit::verify(cli.store()).await?;
    assert!(report.is_intact(), "{report:?}");
    let records = audit::records(connector.store(), 0, 100_000, None).await?;
    let created = records
        .iter()
        .filter(|r| r.action == "token.created")
        .count();
    assert_eq!(created, 40);
    assert!(records.iter().any(|r| r.action == "revoke.succeeded"));
    for token in &tokens {
        connector.authenticate(token).await?;
    }
    Ok(())
}
