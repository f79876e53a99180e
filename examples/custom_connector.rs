//! A custom connector: every built-in integration type, plus a third party's `allowlist` type,
//! with the stock store, scheduler, API and secret stores (`apono-server`).
//!
//! `cargo run -p apono-examples --example custom_connector -- connector.toml`
//!
//! An `allowlist` integration (`config = { dir = "/srv/allow", tools = ["wiki"] }`) offers
//! each tool as a `tool` resource with the permission `use`; a grant writes `DIR/<grant id>`
//! (`EMAIL TOOL`), which the tools read, and revoke deletes it. `tests/custom_connector.rs`
//! runs this program and drives it through the API.

use std::{path::PathBuf, sync::Arc};

use apono_core::{AccessDetails, ActionContext, GrantSpec, GrantState, Granted, Integration};
use apono_core::{Inventory, PermissionInfo, ProvisionError, Provisioner, Resource, StatusReport};
use apono_server::{Connector, load_config, shutdown_signal};

#[derive(Debug, serde::Deserialize)]
struct Allowlist {
    dir: PathBuf,
    tools: Vec<String>,
}

#[apono_core::async_trait]
impl Provisioner for Allowlist {
    async fn get_status(&self, _: &ActionContext) -> Result<StatusReport, ProvisionError> {
        Ok(StatusReport::from_checks(vec![]))
    }

    async fn list_resources(&self, _: &ActionContext) -> Result<Inventory, ProvisionError> {
        let tool = |id: &String| Resource {
            integration: String::new(),
            resource_type: "tool".into(),
            id: id.clone(),
            name: id.clone(),
            tags: Default::default(),
        };
        let permissions = vec![PermissionInfo {
            resource_type: "tool".into(),
            permission: "use".into(),
            description: None,
        }];
        let resources = self.tools.iter().map(tool).collect();
        Ok(Inventory {
            resources,
            permissions,
        })
    }

    async fn grant_access(
        &self,
        _: &ActionContext,
        g: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        let line = format!("{} {}\n", g.grantee.email, g.resource.id);
        std::fs::write(self.dir.join(g.grant_id.as_str()), line).map_err(failed)?; // idempotent
        let state = GrantState::encode(&g.grant_id)?;
        Ok(Granted {
            state,
            access: AccessDetails::default(),
        })
    }

    async fn revoke_access(
        &self,
        _: &ActionContext,
        g: &GrantSpec,
        _: &GrantState,
    ) -> Result<(), ProvisionError> {
        match std::fs::remove_file(self.dir.join(g.grant_id.as_str())) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(failed(e)),
            _ => Ok(()), // already gone is success
        }
    }
}

fn failed(e: std::io::Error) -> ProvisionError {
    let target = "allowlist".into();
    ProvisionError::Unavailable {
        target,
        source: Some(Box::new(e)),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let mut registry = apono_runtime::ProvisionerRegistry::with_builtin();
    registry.register(
        "allowlist",
        Arc::new(|i: &Integration| {
            Ok(Arc::new(i.config_as::<Allowlist>()?) as Arc<dyn Provisioner>)
        }),
    );
    let path = PathBuf::from(
        std::env::args_os()
            .nth(1)
            .unwrap_or("connector.toml".into()),
    );
    let config = load_config(&path, std::env::vars(), &registry)?;
    let connector = Connector::builder(config)
        .registry(registry)
        .secret_stores_from_env();
    connector
        .build()
        .await?
        .run_until(shutdown_signal()?)
        .await?;
    Ok(())
}
