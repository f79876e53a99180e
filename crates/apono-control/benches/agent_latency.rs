//! Benchmark (not run in CI): the time from an access request to `Active` and from a revoke to
//! `Revoked`, one request at a time, for an integration run by the control plane itself and for
//! one bound to an agent (`apono-agent`, in this process) that reaches the control plane over
//! HTTPS on loopback; both with the same in-process provisioner, taking no time of its own, so
//! the difference is what the agent's round trip adds.
//!
//! `cargo bench -p apono-control --bench agent_latency -- [requests]` (default 200 of each).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use apono_agent::{Agent, AgentOptions};
use apono_control::{Config, ControlPlane, NewRequest, Store};
use apono_core::{
    CancelSignal, RequestStatus, SecretError, SecretStore, SecretStoreKind, SecretStoreRef,
    SecretValue, async_trait,
};
use apono_runtime::{Executor, ExecutorLimits, ProvisionerRegistry};
use apono_secrets::{AponoStore, SecretResolver};
use apono_testkit::fakes::TestCa;
use support::Timed;

/// The agent's own secret store: an AWS-kind store answering every reference in this process
/// (the integration's secret never reaches the control plane).
#[derive(Debug)]
struct LocalStore;

#[async_trait]
impl SecretStore for LocalStore {
    fn kind(&self) -> SecretStoreKind {
        SecretStoreKind::Aws
    }
    async fn get(&self, _: &SecretStoreRef) -> Result<SecretValue, SecretError> {
        SecretValue::from_json(br#"{"k":"v"}"#)
    }
}

fn config(listen: &str, cert: &str, key: &str, n: usize) -> String {
    format!(
        r#"
[connector]
id = "central"
listen = "{listen}"
tls_cert = "{cert}"
tls_key = "{key}"
agents = ["edge"]
max_resources_per_request = {n}
master_key = {{ secret_store = {{ apono = {{ parameters = {{ master_key = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a" }} }} }} }}
[[users]]
email = "alice@example.com"
groups = ["dev"]
[[integrations]]
name = "local"
type = "slow"
secret_store = {{ apono = {{ parameters = {{ k = "v" }} }} }}
[[integrations]]
name = "agent"
type = "slow"
connector = "edge"
secret_store = {{ aws = {{ region = "eu-west-1", secret_id = "boxes" }} }}
[[access_flows]]
name = "f"
trigger = "automatic"
requestors = {{ groups = ["dev"] }}
targets = [{{ integration = "local", resource_type = "box", permissions = ["Default"] }}, {{ integration = "agent", resource_type = "box", permissions = ["Default"] }}]
grant_duration = "1h"
"#
    )
}

fn limits() -> ExecutorLimits {
    ExecutorLimits {
        global: 64,
        per_target: 4,
        action_timeout: Duration::from_secs(30),
    }
}

/// Polls request `id` every 100 µs until it is `status`; returns the time since `start`.
async fn until(
    plane: &ControlPlane,
    user: &apono_control::User,
    id: &str,
    status: RequestStatus,
    start: Instant,
) -> Result<Duration> {
    loop {
        let r = plane.request(user, id).await?;
        if r.status == status {
            return Ok(start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("request {id} stuck in {}", r.status);
        }
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |p: f64| ms(v[((v.len() as f64 - 1.0) * p).round() as usize]);
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    (at(0.5), at(0.99), mean)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)]
async fn main() -> Result<()> {
    let n: usize = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir()?;
    let ca = TestCa::generate()?;
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, ca.server_cert_pem())?;
    std::fs::write(&key, ca.server_key_pem())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let config = Config::parse(
        &config(
            &addr.to_string(),
            &cert.display().to_string(),
            &key.display().to_string(),
            n,
        ),
        std::iter::empty(),
        None,
    )?;
    let slow = Timed {
        latency: Duration::ZERO,
        resources: n,
    };
    let plane = ControlPlane::new(
        Store::open(&format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("bench.sqlite3").display()
        ))
        .await?,
        config,
        support::executor("slow", slow.clone(), limits()),
    );
    plane.bootstrap().await?;
    let credential = plane
        .create_connector_credential("edge", None, None)
        .await?
        .credential;
    let stop = CancelSignal::new();
    tokio::spawn(apono_control::api::serve_on(
        listener,
        plane.clone(),
        stop.clone(),
    ));
    tokio::spawn(plane.clone().run_scheduler(stop.clone()));

    // The agent: the same provisioner behind its own executor and secret store.
    let mut registry = ProvisionerRegistry::new();
    registry.register(
        "slow",
        Arc::new(move |_| Ok(Arc::new(slow.clone()) as Arc<dyn apono_core::Provisioner>)),
    );
    let resolver = SecretResolver::builder()
        .store(Arc::new(LocalStore))
        .store(Arc::new(AponoStore::new()))
        .build();
    let agent = Agent::new(
        AgentOptions {
            connector_id: "edge".into(),
            control_plane: format!("https://127.0.0.1:{}", addr.port()).parse()?,
            credential,
            ca_pem: ca.ca_pem().as_bytes().to_vec(),
        },
        Arc::new(Executor::new(registry, Arc::new(resolver), limits())),
    )?;
    let agent_stop = stop.clone();
    tokio::spawn(async move { agent.run(agent_stop).await });

    // Both inventories discovered (the agent's through the agent).
    let started = Instant::now();
    loop {
        let inventory = plane.inventory().await?;
        if ["local", "agent"]
            .iter()
            .all(|i| inventory.get(*i).is_some_and(|v| v.resources.len() == n))
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("not discovered");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let alice = plane.config().user("alice@example.com").unwrap().clone();
    let mut grant = [Vec::new(), Vec::new()];
    let mut revoke = [Vec::new(), Vec::new()];
    for i in 0..n {
        // Alternating, so both paths see the same machine.
        for (k, integration) in ["local", "agent"].into_iter().enumerate() {
            let req = NewRequest {
                integration: integration.into(),
                resource_type: "box".into(),
                resource_ids: vec![format!("r{i}")],
                permission: "Default".into(),
                justification: None,
                duration: None,
            };
            let start = Instant::now();
            let request = plane.create_request(&alice, &req).await?;
            grant[k].push(until(&plane, &alice, &request.id, RequestStatus::Active, start).await?);
            let start = Instant::now();
            plane.revoke(&alice, &request.id).await?;
            revoke[k]
                .push(until(&plane, &alice, &request.id, RequestStatus::Revoked, start).await?);
        }
    }
    stop.cancel();

    println!("{n} requests each, one at a time, provisioner taking no time (ms):\n");
    println!("| action | path | p50 | p99 | mean |");
    println!("|---|---|---|---|---|");
    for (name, v) in [("grant", grant), ("revoke", revoke)] {
        let [local, agent] = v;
        let (l50, l99, lmean) = percentiles(local);
        let (a50, a99, amean) = percentiles(agent);
        println!("| {name} | local | {l50:.1} | {l99:.1} | {lmean:.1} |");
        println!("| {name} | agent (HTTPS, loopback) | {a50:.1} | {a99:.1} | {amean:.1} |");
        println!(
            "| {name} | added by the agent | {:.1} | {:.1} | {:.1} |",
            a50 - l50,
            a99 - l99,
            amean - lmean
        );
    }
    Ok(())
}
