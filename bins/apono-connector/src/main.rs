//! `apono-connector`: a command line over `apono-server`, which assembles the connector
//! (secret stores, executor, control plane, scheduler, API, shutdown).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use apono_control::{NewToken, TokenScope};
use apono_core::CancelSignal;
use apono_runtime::ProvisionerRegistry;
use apono_server::{Connector, load_config, shutdown_signal};
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

mod agent;

#[derive(Parser)]
#[command(
    name = "apono-connector",
    about = "Just-in-time privileged access connector"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The configuration file.
    #[arg(long, env = "APONO_CONFIG")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the control plane, the scheduler and the API.
    Run(ConfigArg),
    /// Checks the configuration and reports every problem.
    CheckConfig(ConfigArg),
    /// Prints the configuration file's JSON Schema: every key, its type and default, and each
    /// integration type's `config` (docs/configuration.md is checked against it).
    ConfigSchema,
    /// Discovers every integration's resources once and prints them.
    Discover(ConfigArg),
    /// Personal API tokens.
    #[command(subcommand)]
    Tokens(Tokens),
    /// The audit log.
    #[command(subcommand)]
    Audit(Audit),
    /// Credentials of the agents of other connectors (`connector.agents`).
    #[command(subcommand)]
    Connectors(Connectors),
    /// Runs an agent: takes the actions of the integrations bound to a connector id from a
    /// control plane over HTTPS and runs them with this host's secret stores.
    Agent(agent::AgentArgs),
    /// Initialises (once), unseals and prepares an Apono Vault (OpenBao) and writes the
    /// `apono-vault-role` secret the `apono-vault` integration reads; safe to re-run.
    VaultInit(apono_vault_client::init::VaultInitArgs),
    /// Prints the version.
    Version,
}

#[derive(Subcommand)]
enum Tokens {
    /// Creates a token for a user and prints it (only its hash is stored).
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// The user's email.
        #[arg(long)]
        user: String,
        /// A name to tell the user's tokens apart.
        #[arg(long)]
        name: Option<String>,
        /// How long it works (`30d`, `12h`); `connector.token_default_expiry` by default.
        #[arg(long, value_parser = apono_core::parse_duration)]
        expires_in: Option<Duration>,
    },
    /// Lists tokens (never the tokens themselves) as JSON lines: one user's, or everyone's.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this user's tokens.
        #[arg(long)]
        user: Option<String>,
    },
    /// Revokes a token; every replica refuses it from its next request.
    Revoke {
        #[command(flatten)]
        config: ConfigArg,
        /// The token's id (`tok_…`).
        id: String,
    },
}

#[derive(Subcommand)]
enum Connectors {
    /// Creates a credential for the agents of connector ID and prints it (only its hash is
    /// stored).
    Create {
        #[command(flatten)]
        config: ConfigArg,
        /// The connector id (one of `connector.agents`).
        id: String,
        /// A name to tell the connector's credentials apart.
        #[arg(long)]
        name: Option<String>,
        /// How long it works (`30d`, `12h`); `connector.token_default_expiry` by default.
        #[arg(long, value_parser = apono_core::parse_duration)]
        expires_in: Option<Duration>,
    },
    /// Lists credentials (never the credentials themselves) as JSON lines.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Only this connector's.
        #[arg(long)]
        connector: Option<String>,
    },
    /// Revokes a credential; every replica refuses it from the agent's next request.
    Revoke {
        #[command(flatten)]
        config: ConfigArg,
        /// The credential's id (`cc_…`).
        id: String,
    },
}

#[derive(Subcommand)]
enum Audit {
    /// Verifies the audit log's hash chain.
    Verify(ConfigArg),
}

/// The connector of `arg`'s configuration, with every secret store it needs built from the
/// environment; not serving yet.
async fn connector(arg: &ConfigArg, registry: ProvisionerRegistry) -> anyhow::Result<Connector> {
    let config = load_config(&arg.config, std::env::vars(), &registry)?;
    Ok(Connector::builder(config)
        .registry(registry)
        .secret_stores_from_env()
        .build()
        .await?)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Both rustls providers are compiled in, and winrm-rs installs ring as the process default
    // the first time it is used unless one is installed already: aws-lc-rs (what kube, reqwest
    // and our own TLS code use) is installed first, so TLS behaves the same whichever
    // integration runs first.
    let _ = tokio_rustls::rustls::crypto::aws_lc_rs::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .init();
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)]
async fn run(cli: Cli) -> anyhow::Result<()> {
    let registry = ProvisionerRegistry::with_builtin();
    match cli.command {
        Command::Version => println!("apono-connector {}", env!("CARGO_PKG_VERSION")),
        Command::ConfigSchema => println!(
            "{}",
            serde_json::to_string_pretty(&apono_control::config_schema())?
        ),
        Command::VaultInit(args) => {
            apono_vault_client::init::run_cli(args, &mut std::io::stdout()).await?
        }
        Command::CheckConfig(arg) => {
            load_config(&arg.config, std::env::vars(), &registry)?;
            println!("{}: ok", arg.config.display());
        }
        Command::Tokens(Tokens::Create {
            config,
            user,
            name,
            expires_in,
        }) => {
            let connector = connector(&config, registry).await?;
            let new = NewToken { name, expires_in };
            let created = connector.plane().issue_token(None, &user, &new).await?;
            tracing::info!(token = %created.info.id, user = %created.info.user, expires_at = %created.info.expires_at, "token created");
            println!("{}", created.token.expose_secret());
        }
        Command::Tokens(Tokens::List { config, user }) => {
            let connector = connector(&config, registry).await?;
            let scope = user.map_or(TokenScope::All, TokenScope::User);
            for token in connector.plane().tokens(None, scope).await? {
                println!("{}", serde_json::to_string(&token)?);
            }
        }
        Command::Tokens(Tokens::Revoke { config, id }) => {
            let connector = connector(&config, registry).await?;
            println!(
                "{}",
                serde_json::to_string(&connector.plane().revoke_token(None, &id).await?)?
            );
        }
        Command::Connectors(Connectors::Create {
            config,
            id,
            name,
            expires_in,
        }) => {
            let connector = connector(&config, registry).await?;
            if !connector.plane().config().connector.agents.contains(&id) {
                bail!(
                    "{id:?} is not one of connector.agents in {}",
                    config.config.display()
                );
            }
            let created = connector
                .plane()
                .create_connector_credential(&id, name.as_deref(), expires_in)
                .await?;
            tracing::info!(credential = %created.info.id, connector = %created.info.connector, expires_at = %created.info.expires_at, "connector credential created");
            println!("{}", created.credential.expose_secret());
        }
        Command::Connectors(Connectors::List {
            config,
            connector: id,
        }) => {
            let connector = connector(&config, registry).await?;
            for credential in connector
                .plane()
                .connector_credentials(id.as_deref())
                .await?
            {
                println!("{}", serde_json::to_string(&credential)?);
            }
        }
        Command::Connectors(Connectors::Revoke { config, id }) => {
            let connector = connector(&config, registry).await?;
            connector.plane().revoke_connector_credential(&id).await?;
            println!("{id}: revoked");
        }
        Command::Agent(args) => agent::run(args, registry).await?,
        Command::Audit(Audit::Verify(arg)) => {
            let connector = connector(&arg, registry).await?;
            let report = connector.plane().verify_audit().await?;
            let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
            match report.first_broken {
                None => println!(
                    "audit chain intact: {} checked with key {} ({} linked before the chain was keyed)",
                    plural(n(report.records), "record"),
                    report.key_id,
                    report.unkeyed
                ),
                Some(seq) => bail!(
                    "audit chain broken at record {seq}, checked with key {} ({} records verified before it)",
                    report.key_id,
                    report.records
                ),
            }
        }
        Command::Discover(arg) => {
            let connector = connector(&arg, registry).await?;
            let plane = connector.plane();
            for integration in &plane.config().integrations {
                let inventory = plane
                    .executor()
                    .list_resources(integration, &CancelSignal::new())
                    .await
                    .with_context(|| format!("discovering {}", integration.name))?;
                println!("{}", serde_json_line(&integration.name, &inventory));
            }
        }
        Command::Run(arg) => {
            let connector = connector(&arg, registry).await?;
            connector.run_until(shutdown_signal()?).await?;
        }
    }
    Ok(())
}

fn serde_json_line(name: &str, inventory: &apono_core::Inventory) -> String {
    format!(
        "{name}: {}, {}: {}",
        plural(inventory.resources.len(), "resource"),
        plural(inventory.permissions.len(), "permission"),
        inventory
            .resources
            .iter()
            .map(|r| r.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `1 problem`, `2 problems`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
