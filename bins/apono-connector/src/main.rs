//! `apono-connector`: a command line over `apono-server`, which assembles the connector
//! (secret stores, executor, control plane, scheduler, API, shutdown).

use std::path::PathBuf;

use anyhow::{Context, bail};
use apono_control::audit;
use apono_core::CancelSignal;
use apono_runtime::ProvisionerRegistry;
use apono_server::{Connector, load_config, shutdown_signal};
use clap::{Parser, Subcommand};

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
        Command::CheckConfig(arg) => {
            load_config(&arg.config, std::env::vars(), &registry)?;
            println!("{}: ok", arg.config.display());
        }
        Command::Tokens(Tokens::Create { config, user }) => {
            let connector = connector(&config, registry).await?;
            println!("{}", connector.plane().create_token(&user).await?);
        }
        Command::Audit(Audit::Verify(arg)) => {
            let connector = connector(&arg, registry).await?;
            let report = audit::verify(connector.plane().store()).await?;
            match report.first_broken {
                None => println!(
                    "audit chain intact: {}",
                    plural(
                        usize::try_from(report.records).unwrap_or(usize::MAX),
                        "record"
                    )
                ),
                Some(seq) => bail!(
                    "audit chain broken at record {seq} ({} records verified before it)",
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
