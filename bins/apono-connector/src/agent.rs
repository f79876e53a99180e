//! `apono-connector agent`: the command line of an `apono-agent` over `apono-server`'s agent
//! executor.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use apono_agent::{Agent, AgentOptions};
use apono_control::ConnectorSettings;
use apono_core::{CancelSignal, SecretStoreKind};
use apono_runtime::ProvisionerRegistry;
use apono_server::{agent_executor, shutdown_signal};

/// The variable an agent's credential may be given in (never on the command line).
const CREDENTIAL_ENV: &str = "APONO_AGENT_CREDENTIAL";

#[derive(clap::Args)]
pub(crate) struct AgentArgs {
    /// The connector id this agent serves (integrations bind to it with `connector`).
    #[arg(long, env = "APONO_AGENT_CONNECTOR_ID")]
    connector_id: String,
    /// The control plane's URL (`https://host:port`).
    #[arg(long, env = "APONO_AGENT_CONTROL_PLANE")]
    control_plane: url::Url,
    /// The CA certificate (PEM) the control plane's TLS certificate must chain to: the only
    /// one trusted.
    #[arg(long, env = "APONO_AGENT_CA_FILE")]
    ca_file: PathBuf,
    /// A file holding the agent's credential (`apono-connector connectors create`); without
    /// it, the credential is read from `APONO_AGENT_CREDENTIAL`.
    #[arg(long, env = "APONO_AGENT_CREDENTIAL_FILE")]
    credential_file: Option<PathBuf>,
    /// A kind of secret store this agent reads integration secrets from, built from its
    /// environment as the connector builds its own: `kubernetes`, `aws`, `azure`, `gcp`,
    /// `hashicorp_vault`. May be repeated.
    #[arg(long = "secret-store", value_parser = parse_kind)]
    secret_stores: Vec<SecretStoreKind>,
    /// Deadline of one action (at most the control plane's `action_timeout`).
    #[arg(long, default_value = "30s", value_parser = apono_core::parse_duration)]
    action_timeout: Duration,
    /// Actions running at once over all targets.
    #[arg(long, default_value_t = 64)]
    max_concurrent_actions: usize,
    /// Actions running at once against one target.
    #[arg(long, default_value_t = 4)]
    max_concurrent_per_target: usize,
    /// The Kubernetes secrets the `kubernetes` store may read (`namespace/name`), comma
    /// separated; every secret labelled for the connector when absent.
    #[arg(long, value_delimiter = ',')]
    allowed_secrets_to_read: Option<Vec<String>>,
}

fn parse_kind(text: &str) -> Result<SecretStoreKind, String> {
    serde_json::from_value(serde_json::Value::String(text.replace('-', "_")))
        .map_err(|_| format!("{text:?} is not a secret store kind"))
}

/// Runs the agent until SIGTERM or Ctrl-C.
pub(crate) async fn run(args: AgentArgs, registry: ProvisionerRegistry) -> anyhow::Result<()> {
    let credential = match &args.credential_file {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the credential file {}", path.display()))?,
        None => std::env::var(CREDENTIAL_ENV)
            .with_context(|| format!("no --credential-file and no {CREDENTIAL_ENV}"))?,
    };
    let credential = credential.trim().to_owned();
    if credential.is_empty() {
        bail!("the agent's credential is empty");
    }
    let ca_pem = std::fs::read(&args.ca_file)
        .with_context(|| format!("reading the CA file {}", args.ca_file.display()))?;
    let settings = ConnectorSettings {
        id: args.connector_id.clone(),
        action_timeout: apono_control::HumanDuration(args.action_timeout),
        max_concurrent_actions: args.max_concurrent_actions,
        max_concurrent_per_target: args.max_concurrent_per_target,
        allowed_secrets_to_read: args.allowed_secrets_to_read,
        ..ConnectorSettings::default()
    };
    let executor = agent_executor(registry, &args.secret_stores, settings).await?;
    let agent = Agent::new(
        AgentOptions {
            connector_id: args.connector_id,
            control_plane: args.control_plane,
            credential: credential.into(),
            ca_pem,
        },
        executor,
    )?;
    let stop = CancelSignal::new();
    let signal = shutdown_signal()?;
    let trigger = stop.clone();
    tokio::spawn(async move {
        signal.await;
        trigger.cancel();
    });
    agent.run(stop).await;
    Ok(())
}
