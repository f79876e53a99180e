//! `apono-connector`: wiring only. The control plane, the executor and the API live in
//! `apono-control` and `apono-runtime`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use apono_control::{Config, ControlPlane, Store, api, audit, check_config};
use apono_core::{CancelSignal, SecretStoreKind};
use apono_runtime::{Executor, ExecutorLimits, ProvisionerRegistry};
use apono_secrets::SecretResolver;
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
    },
}

#[derive(Subcommand)]
enum Audit {
    /// Verifies the audit log's hash chain.
    Verify(ConfigArg),
}

fn load(arg: &ConfigArg, registry: &ProvisionerRegistry) -> anyhow::Result<Config> {
    let text = std::fs::read_to_string(&arg.config)
        .with_context(|| format!("reading {}", arg.config.display()))?;
    check_config(&text, std::env::vars(), registry).map_err(|e| {
        // A problem may span lines (TOML's syntax errors point with a caret): indent each.
        let lines: Vec<String> = e
            .problems
            .iter()
            .map(|p| format!("  {}", p.to_string().replace('\n', "\n  ")))
            .collect();
        anyhow::anyhow!(
            "{} has {}:\n{}",
            arg.config.display(),
            plural(lines.len(), "problem"),
            lines.join("\n")
        )
    })
}

async fn plane(config: Config, registry: ProvisionerRegistry) -> anyhow::Result<Arc<ControlPlane>> {
    config.connector.prepare_data_dir()?;
    let kinds: BTreeSet<SecretStoreKind> = config
        .integrations
        .iter()
        .map(|i| i.secret_store.kind())
        .collect();
    let c = &config.connector;
    let mut resolver = SecretResolver::builder().store(Arc::new(apono_secrets::AponoStore::new()));
    // Cloud stores are built only when an integration uses them, so a connector without
    // cloud credentials starts. Building reads credentials but makes no request.
    if kinds.contains(&SecretStoreKind::Aws) {
        resolver = resolver.store(Arc::new(
            apono_secrets::AwsSecretsManagerStore::from_env()
                .await
                .build()?,
        ));
    }
    if kinds.contains(&SecretStoreKind::HashicorpVault) {
        resolver = resolver.store(Arc::new(
            apono_secrets::HashicorpVaultStore::from_env()?.build()?,
        ));
    }
    if kinds.contains(&SecretStoreKind::Kubernetes) {
        let mut builder = apono_secrets::KubernetesStore::infer()
            .await
            .context("setting up the kubernetes secret store")?;
        if let Some(allowed) = &c.allowed_secrets_to_read {
            builder = builder.allowed_secrets(allowed);
        }
        resolver = resolver.store(Arc::new(builder.build()?));
    }
    if kinds.contains(&SecretStoreKind::Azure) {
        resolver = resolver.store(Arc::new(
            apono_secrets::AzureKeyVaultStore::builder()
                .credentials(apono_secrets::AzureCredentials::from_env())
                .build()?,
        ));
    }
    if kinds.contains(&SecretStoreKind::Gcp) {
        let credentials = apono_secrets::GcpCredentials::application_default()
            .context("reading GCP application-default credentials")?;
        resolver = resolver.store(Arc::new(
            apono_secrets::GcpSecretManagerStore::builder()
                .credentials(credentials)
                .build()?,
        ));
    }
    let limits = ExecutorLimits {
        global: c.max_concurrent_actions,
        per_target: c.max_concurrent_per_target,
        action_timeout: c.action_timeout.0,
    };
    let executor = Arc::new(Executor::new(registry, Arc::new(resolver.build()), limits));
    let store = Store::open(&c.store_url()).await?;
    Ok(ControlPlane::new(store, config, executor))
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
            load(&arg, &registry)?;
            println!("{}: ok", arg.config.display());
        }
        Command::Tokens(Tokens::Create { config, user }) => {
            let plane = plane(load(&config, &registry)?, registry).await?;
            println!("{}", plane.create_token(&user).await?);
        }
        Command::Audit(Audit::Verify(arg)) => {
            let plane = plane(load(&arg, &registry)?, registry).await?;
            let report = audit::verify(plane.store()).await?;
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
            let plane = plane(load(&arg, &registry)?, registry).await?;
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
            let plane = plane(load(&arg, &registry)?, registry).await?;
            plane.bootstrap().await?;
            let listen = &plane.config().connector.listen;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen} (connector.listen)"))?;
            tracing::info!(listen = %listener.local_addr()?, "apono-connector listening");
            let shutdown = CancelSignal::new();
            let scheduler = tokio::spawn(plane.clone().run_scheduler(shutdown.clone()));
            let stop = shutdown.clone();
            let server = axum::serve(listener, api::router(plane.clone()))
                .with_graceful_shutdown(async move { stop.cancelled().await });
            let server = tokio::spawn(async move { server.await });
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
            tracing::info!("shutting down");
            shutdown.cancel();
            scheduler.await??;
            let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
            plane.store().close().await;
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
