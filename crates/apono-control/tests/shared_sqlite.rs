//! Two stores on one SQLite file, as `apono-connector tokens create` (or `audit verify`) next
//! to a running connector: both write at once and neither sees "database is locked".

mod support;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use apono_control::{Config, ControlPlane, NewRequest, Store, audit};
use apono_core::CancelSignal;
use apono_runtime::ExecutorLimits;
use support::{Timed, count};

const RESOURCES: usize = 60;

const CONFIG: &str = r#"
[connector]
id = "shared"
listen = "127.0.0.1:0"
master_key = { secret_store = { apono = { parameters = { master_key = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a" } } } }
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
    let quick = Timed {
        latency: Duration::from_millis(2),
        resources: RESOURCES,
    };
    Ok(ControlPlane::new(
        Store::open(url).await?,
        Config::parse(CONFIG, std::iter::empty(), None)?,
        support::executor("quick", quick, ExecutorLimits::default()),
    ))
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
    let report = cli.verify_audit().await?;
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
