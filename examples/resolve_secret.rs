//! Resolves one secret from the store named on the command line and prints its keys.
//!
//! ```text
//! cargo run -p apono-examples --example resolve_secret -- \
//!     --store '{"aws":{"region":"eu-west-1","secret_id":"prod/ssh"}}'
//! cargo run -p apono-examples --example resolve_secret -- \
//!     --store '{"hashicorp_vault":{"secret_engine":"secret","path":"apono/app"}}' --show-values
//! ```
//!
//! Values are printed only with `--show-values`. Every store reads its credentials the way an
//! operator's environment provides them: AWS from the standard AWS chain; vaults from
//! `HASHICORP_VAULT_CONFIG` or `HASHICORP_VAULT_CONFIG_FILE_PATH` (whose `from_secret_store`
//! entries may use the AWS store); Kubernetes from the pod's service account or the kubeconfig;
//! Azure from `AZURE_*` (client secret, workload identity) or the managed identity; GCP from
//! application-default credentials or the metadata server.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use apono_core::{SecretStore, SecretStoreKind, SecretStoreRef};
use apono_secrets::{
    AponoStore, AwsSecretsManagerStore, AzureCredentials, AzureKeyVaultStore, GcpCredentials,
    GcpSecretManagerStore, HashicorpVaultStore, KubernetesStore, SecretResolver,
};
use clap::Parser;
use secrecy::ExposeSecret;

/// Resolve a secret from any supported store and print its keys.
#[derive(Debug, Parser)]
struct Args {
    /// The secret store reference, as JSON: `{"aws":{"region":"…","secret_id":"…"}}`,
    /// `{"hashicorp_vault":{"secret_engine":"…","path":"…"}}`,
    /// `{"kubernetes":{"namespace":"…","name":"…"}}`, `{"azure":{"vault_url":"…","name":"…"}}`,
    /// `{"gcp":{"project":"…","secret_id":"…"}}` or `{"apono":{"parameters":{…}}}`.
    #[arg(long)]
    store: String,
    /// Also print the values (they are secrets: mind your terminal and its scrollback).
    #[arg(long)]
    show_values: bool,
    /// Send AWS requests to this endpoint (a VPC endpoint, or a local moto server).
    #[arg(long)]
    aws_endpoint_url: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The error chain, once; it never contains a secret value.
            let _ = writeln!(std::io::stderr(), "error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let reference: SecretStoreRef =
        serde_json::from_str(&args.store).context("--store is not a secret store reference")?;
    let resolver = resolver_for(reference.kind(), args.aws_endpoint_url.as_deref()).await?;
    let secret = resolver
        .resolve(&reference)
        .await
        .with_context(|| format!("cannot read {reference}"))?;
    let mut out = std::io::stdout().lock();
    for (key, value) in secret.iter() {
        if args.show_values {
            writeln!(out, "{key}={}", value.expose_secret())?;
        } else {
            writeln!(out, "{key}")?;
        }
    }
    Ok(())
}

/// A resolver with the one store `kind` needs (plus AWS as a source for vault entries).
async fn resolver_for(
    kind: SecretStoreKind,
    aws_endpoint_url: Option<&str>,
) -> anyhow::Result<SecretResolver> {
    let aws = || async {
        let mut builder = AwsSecretsManagerStore::from_env().await;
        if let Some(url) = aws_endpoint_url {
            builder = builder.endpoint_url(url);
        }
        builder.build().context("cannot configure the AWS store")
    };
    let store: Arc<dyn SecretStore> = match kind {
        SecretStoreKind::Apono => Arc::new(AponoStore::new()),
        SecretStoreKind::Aws => Arc::new(aws().await?),
        SecretStoreKind::HashicorpVault => {
            let mut builder = HashicorpVaultStore::from_env()?;
            if let Ok(aws) = aws().await {
                builder = builder.secret_source(Arc::new(aws));
            }
            Arc::new(builder.build()?)
        }
        SecretStoreKind::Kubernetes => Arc::new(KubernetesStore::infer().await?.build()?),
        SecretStoreKind::Azure => Arc::new(
            AzureKeyVaultStore::builder()
                .credentials(AzureCredentials::from_env())
                .build()?,
        ),
        SecretStoreKind::Gcp => Arc::new(
            GcpSecretManagerStore::builder()
                .credentials(GcpCredentials::application_default()?)
                .build()?,
        ),
        other => bail!("this example does not know the {other} store"),
    };
    Ok(SecretResolver::builder().store(store).build())
}
