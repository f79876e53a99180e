//! A custom integration type registered next to the built-in ones, then run through the
//! executor: `cargo run -p apono-examples --example custom_provisioner`.
//!
//! A custom connector registers its types the same way and hands the registry to
//! `apono_server::Connector::builder` (see `custom_connector.rs`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use apono_core::{
    AccessDetails, ActionContext, CancelSignal, GrantSpec, GrantState, Granted, Integration,
    Inventory, ProvisionError, Provisioner, Resource, StatusReport, async_trait,
};
use apono_runtime::{Executor, ExecutorLimits, ProvisionerRegistry};
use apono_secrets::{AponoStore, SecretResolver};

/// Grants access to "widgets" by remembering who holds which.
#[derive(Debug, Default)]
struct WidgetProvisioner {
    holders: Mutex<BTreeSet<String>>,
}

#[async_trait]
impl Provisioner for WidgetProvisioner {
    async fn get_status(&self, _ctx: &ActionContext) -> Result<StatusReport, ProvisionError> {
        Ok(StatusReport::from_checks(vec![]))
    }

    async fn list_resources(&self, _ctx: &ActionContext) -> Result<Inventory, ProvisionError> {
        Ok(Inventory {
            resources: vec![Resource {
                integration: String::new(),
                resource_type: "widget".into(),
                id: "w-1".into(),
                name: "Widget one".into(),
                tags: Default::default(),
            }],
            permissions: vec![],
        })
    }

    async fn grant_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        ctx.checkpoint()?;
        let _api_key = ctx.secret().require("api_key")?; // resolved for this action only
        self.holders
            .lock()
            .expect("lock")
            .insert(grant.grant_id.to_string());
        Ok(Granted {
            state: GrantState::encode(&grant.grant_id)?,
            access: AccessDetails::default(),
        })
    }

    async fn revoke_access(
        &self,
        ctx: &ActionContext,
        _grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        ctx.checkpoint()?;
        let id: String = state.decode()?;
        self.holders.lock().expect("lock").remove(&id); // already gone is success
        Ok(())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut registry = ProvisionerRegistry::with_builtin();
    registry.register(
        "acme-widgets",
        Arc::new(|_integration: &Integration| {
            Ok(Arc::new(WidgetProvisioner::default()) as Arc<dyn Provisioner>)
        }),
    );
    let resolver = SecretResolver::builder()
        .store(Arc::new(AponoStore::new()))
        .build();
    let executor = Executor::new(registry, Arc::new(resolver), ExecutorLimits::default());

    let integration: Integration = serde_json::from_value(serde_json::json!({
        "name": "widgets", "type": "acme-widgets",
        "secret_store": { "apono": { "parameters": { "api_key": "example-only" } } }
    }))?;
    let inventory = executor
        .list_resources(&integration, &CancelSignal::new())
        .await?;
    #[allow(clippy::print_stdout)]
    {
        println!(
            "discovered: {:?}",
            inventory
                .resources
                .iter()
                .map(|r| &r.id)
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}
