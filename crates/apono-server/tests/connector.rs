//! The assembly in-process: configuration problems reported with the file, a missing secret
//! store refused by name, and a connector on a free port with a provisioner and a secret store
//! of the test's own, driven through its HTTP API from request to revoke, then stopped.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apono_control::Config;
use apono_core::{
    AccessDetails, ActionContext, GrantSpec, GrantState, Granted, Inventory, PermissionInfo,
    ProvisionError, Provisioner, Resource, SecretError, SecretStore, SecretStoreKind,
    SecretStoreRef, SecretValue, StatusReport, async_trait,
};
use apono_runtime::ProvisionerRegistry;
use apono_server::{Connector, ServerError, load_config};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[connector]
listen = "127.0.0.1:0"
data_dir = "{data}"

[[users]]
email = "alice@example.com"
groups = ["developers"]

[[integrations]]
name = "doors"
type = "test-doors"
secret_store = { kubernetes = { namespace = "apono", name = "doors-admin" } }

[[access_flows]]
name = "doors"
trigger = "automatic"
requestors = { groups = ["developers"] }
targets = [{ integration = "doors", resource_type = "door", permissions = ["open"] }]
grant_duration = "1h"
"#;

/// Grants by remembering who holds which door; needs the `key` of its secret.
#[derive(Debug, Default)]
struct Doors {
    open: Mutex<BTreeSet<String>>,
}

#[async_trait]
impl Provisioner for Doors {
    async fn get_status(&self, _: &ActionContext) -> Result<StatusReport, ProvisionError> {
        Ok(StatusReport::from_checks(vec![]))
    }

    async fn list_resources(&self, _: &ActionContext) -> Result<Inventory, ProvisionError> {
        Ok(Inventory {
            resources: vec![Resource {
                integration: String::new(),
                resource_type: "door".into(),
                id: "front".into(),
                name: "Front door".into(),
                tags: Default::default(),
            }],
            permissions: vec![PermissionInfo {
                resource_type: "door".into(),
                permission: "open".into(),
                description: None,
            }],
        })
    }

    async fn grant_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        ctx.secret().require("key")?;
        self.open
            .lock()
            .expect("lock")
            .insert(grant.grantee.email.clone());
        Ok(Granted {
            state: GrantState::encode(&grant.grantee.email)?,
            access: AccessDetails::default(),
        })
    }

    async fn revoke_access(
        &self,
        _: &ActionContext,
        _: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        let email: String = state.decode()?;
        self.open.lock().expect("lock").remove(&email);
        Ok(())
    }
}

/// A `kubernetes` store of the test's own: counts its reads.
#[derive(Debug, Default)]
struct CountingStore {
    reads: AtomicUsize,
}

#[async_trait]
impl SecretStore for CountingStore {
    fn kind(&self) -> SecretStoreKind {
        SecretStoreKind::Kubernetes
    }

    async fn get(&self, reference: &SecretStoreRef) -> Result<SecretValue, SecretError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        match reference {
            SecretStoreRef::Kubernetes { name, .. } if name == "doors-admin" => {
                Ok(SecretValue::new().with("key", "k-123"))
            }
            _ => Err(SecretError::NotFound {
                reference: reference.to_string(),
                source: None,
            }),
        }
    }
}

fn config(dir: &std::path::Path) -> Result<Config> {
    let text = CONFIG.replace("{data}", &dir.join("data").display().to_string());
    Ok(Config::parse(&text, std::iter::empty(), None)?)
}

#[test]
fn configuration_problems_name_the_file_and_every_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("connector.toml");
    std::fs::write(
        &path,
        CONFIG.replace("{data}", "data") + "\n[[users]]\nemail = \"nobody\"\n",
    )?;
    let err = load_config(&path, std::iter::empty(), &ProvisionerRegistry::new()).unwrap_err();
    let text = err.to_string();
    ensure!(
        text.starts_with(&format!("{} has 2 problems:\n  ", path.display())),
        "{text}"
    );
    ensure!(
        text.contains("integrations[0].type: no provisioner for type \"test-doors\""),
        "{text}"
    );
    ensure!(
        text.contains("users[1].email: must be an email address"),
        "{text}"
    );
    ensure!(err.kind() == apono_core::ErrorKind::InvalidInput);

    let missing = load_config(
        &dir.path().join("absent.toml"),
        std::iter::empty(),
        &ProvisionerRegistry::new(),
    )
    .unwrap_err();
    ensure!(
        matches!(missing, ServerError::ReadConfig { .. }),
        "{missing}"
    );
    Ok(())
}

#[tokio::test]
async fn a_needed_store_neither_given_nor_read_from_the_environment_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let err = Connector::builder(config(dir.path())?)
        .build()
        .await
        .unwrap_err();
    let text = err.to_string();
    ensure!(
        matches!(
            err,
            ServerError::StoreNotBuilt {
                kind: SecretStoreKind::Kubernetes,
                ..
            }
        ) && text.contains("integration \"doors\"")
            && text.contains("kubernetes"),
        "{text}"
    );
    ensure!(
        !dir.path().join("data").exists(),
        "nothing is created first"
    );
    Ok(())
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut req = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let resp = req.timeout(Duration::from_secs(10)).send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    ensure!(status.is_success(), "{url}: {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

async fn wait_for(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = call(client, reqwest::Method::GET, url, token, None).await?;
        if done(&value) {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("{url}: still {value}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_provisioner_and_store_from_request_to_revoke() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let doors = Arc::new(Doors::default());
    let store = Arc::new(CountingStore::default());
    let connector = Connector::builder(config(dir.path())?)
        .registry(ProvisionerRegistry::new())
        .provisioner(
            "test-doors",
            Arc::new({
                let doors = doors.clone();
                move |_| Ok(doors.clone() as Arc<dyn Provisioner>)
            }),
        )
        .secret_store(store.clone())
        .secret_stores_from_env() // given stores win: nothing is read from the environment
        .build()
        .await?;
    let token = connector.plane().create_token("alice@example.com").await?;
    let running = connector.start().await?;
    let base = format!("http://{}/api/v1", running.local_addr());
    let client = reqwest::Client::new();

    wait_for(&client, &format!("{base}/resources"), &token, |r| {
        r.as_array().is_some_and(|a| !a.is_empty())
    })
    .await?;
    let request = call(
        &client,
        reqwest::Method::POST,
        &format!("{base}/access-requests"),
        &token,
        Some(json!({
            "integration": "doors", "resource_type": "door",
            "resource_ids": ["front"], "permission": "open"
        })),
    )
    .await?;
    let id = request["id"].as_str().context("id")?.to_owned();
    wait_for(
        &client,
        &format!("{base}/access-requests/{id}"),
        &token,
        |r| r["status"] == "Active",
    )
    .await?;
    ensure!(
        doors
            .open
            .lock()
            .expect("lock")
            .contains("alice@example.com")
    );
    ensure!(
        store.reads.load(Ordering::SeqCst) >= 1,
        "the given store served the secret"
    );

    call(
        &client,
        reqwest::Method::POST,
        &format!("{base}/access-requests/{id}/revoke"),
        &token,
        None,
    )
    .await?;
    wait_for(
        &client,
        &format!("{base}/access-requests/{id}"),
        &token,
        |r| r["status"] == "Revoked",
    )
    .await?;
    ensure!(doors.open.lock().expect("lock").is_empty());

    running.stop().await?;
    ensure!(
        client
            .get(format!("{base}/me"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_err(),
        "the API is closed after stop"
    );
    Ok(())
}
