//! The `vault-init` command line (feature `cli`): its arguments and a runner that writes its
//! report to a writer the caller gives.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::{InitError, InitKeys, InitOptions, KEYS_SECRET, KeyCustody, ROLE_SECRET, initialize};
use crate::client::ClientSettings;

/// Where the unseal keys and root token go (`--key-custody`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum CustodyArg {
    /// A Kubernetes Secret (`--keys-secret`) in `--namespace`; later runs unseal from it.
    Secret,
    /// Printed once on stdout and stored nowhere; later runs need `--keys-file`.
    Print,
}

/// Arguments of `apono-connector vault-init`.
#[derive(Clone, Debug, clap::Args)]
pub struct VaultInitArgs {
    /// The OpenBao server.
    #[arg(
        long,
        env = "APONO_VAULT_ADDR",
        default_value = "http://127.0.0.1:8200"
    )]
    pub address: String,
    /// A PEM CA bundle to trust for an https:// address (instead of the web roots).
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// The Kubernetes namespace of the keys secret and the integration secret (default: the
    /// pod's own, or the kubeconfig's).
    #[arg(long, env = "APONO_VAULT_NAMESPACE")]
    pub namespace: Option<String>,
    /// Where the unseal keys and the root token go at initialisation.
    #[arg(long, value_enum, default_value = "secret")]
    pub key_custody: CustodyArg,
    /// The Kubernetes Secret holding the unseal keys and root token (`--key-custody secret`).
    #[arg(long, default_value = KEYS_SECRET)]
    pub keys_secret: String,
    /// With `--key-custody print`: the JSON printed at initialisation, to unseal and
    /// configure on later runs.
    #[arg(long)]
    pub keys_file: Option<PathBuf>,
    /// The integration secret the `apono-vault` integration reads.
    #[arg(long, default_value = ROLE_SECRET)]
    pub role_secret: String,
    /// The kv-v2 mount of the secrets.
    #[arg(long, default_value = "apono-store")]
    pub mount: String,
    /// The connector's AppRole role (and policy) name.
    #[arg(long, default_value = "apono-connector")]
    pub role: String,
    /// Unseal key shares made at initialisation.
    #[arg(long, default_value_t = 1)]
    pub key_shares: u8,
    /// Unseal key shares needed to unseal.
    #[arg(long, default_value_t = 1)]
    pub key_threshold: u8,
    /// Seconds to wait for OpenBao to answer and to become active.
    #[arg(long, default_value_t = 300)]
    pub wait_seconds: u64,
    /// Only unseal a sealed vault with the stored keys; never initialise, configure or write.
    #[arg(long)]
    pub unseal_only: bool,
    /// Keep running: check again every this many seconds (a failed round is logged and
    /// retried), so that a restarted OpenBao is unsealed again. Without it, one round.
    #[arg(long)]
    pub watch_seconds: Option<u64>,
}

/// Why `vault-init` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A file named on the command line could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The output could not be written.
    #[error("cannot write the report")]
    Write(#[source] std::io::Error),
    /// The OpenBao client settings are invalid.
    #[error("invalid OpenBao settings")]
    Settings(#[source] crate::VaultError),
    /// Initialisation failed.
    #[error(transparent)]
    Init(#[from] InitError),
}

fn read(path: &PathBuf) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Read {
        path: path.clone(),
        source,
    })
}

/// Runs `vault-init` with `args` against Kubernetes as `kubectl` would reach it, writing the
/// report (and, with `--key-custody print` on a fresh vault, the keys, once) to `out`.
pub async fn run_cli(args: VaultInitArgs, out: &mut (dyn Write + Send)) -> Result<(), CliError> {
    let mut settings = ClientSettings::new(&args.address);
    if let Some(path) = &args.ca_cert {
        settings = settings.ca_cert_pem(read(path)?);
    }
    let connection = settings.connect().map_err(CliError::Settings)?;
    let keys = match &args.keys_file {
        Some(path) => Some(InitKeys::from_json(read(path)?.trim())?),
        None => None,
    };
    let options = InitOptions {
        mount: args.mount,
        role: args.role,
        key_shares: args.key_shares,
        key_threshold: args.key_threshold,
        custody: match args.key_custody {
            CustodyArg::Secret => KeyCustody::Secret(args.keys_secret),
            CustodyArg::Print => KeyCustody::PrintOnce,
        },
        keys,
        role_secret: args.role_secret,
        wait: Duration::from_secs(args.wait_seconds),
        unseal_only: args.unseal_only,
        ..InitOptions::default()
    };
    let secrets = super::KubernetesSecrets::infer(args.namespace.as_deref()).await?;
    if let Some(every) = args.watch_seconds {
        let every = Duration::from_secs(every.max(1));
        loop {
            match initialize(&connection, &options, &secrets).await {
                Ok(report) if report.unsealed => {
                    tracing::info!("vault-init watch: OpenBao was sealed and is unsealed again");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    error = %apono_core::error_chain(&e),
                    "vault-init watch: this round failed; retrying"
                ),
            }
            tokio::time::sleep(every).await;
        }
    }
    let report = initialize(&connection, &options, &secrets).await?;
    let yes = |b: bool| if b { "yes" } else { "no" };
    if options.unseal_only {
        let line = format!(
            "vault-init: OpenBao at {} (unseal only): unsealed now: {}\n",
            connection.address(),
            yes(report.unsealed)
        );
        out.write_all(line.as_bytes()).map_err(CliError::Write)?;
        return out.flush().map_err(CliError::Write);
    }
    let mut text = format!(
        "vault-init: OpenBao at {} is initialised and unsealed (initialised now: {}, unsealed now: {}); integration secret {}/{} {}\n",
        connection.address(),
        yes(report.initialised),
        yes(report.unsealed),
        secrets.namespace(),
        options.role_secret,
        if report.role_secret_written {
            "written"
        } else {
            "unchanged"
        },
    );
    if let Some(keys) = &report.keys {
        text.push_str(
            "vault-init: the unseal keys and root token follow, ONCE; they are stored nowhere. Keep them offline: every later run needs them (--keys-file)\n",
        );
        text.push_str(keys.to_json().expose_secret());
        text.push('\n');
    }
    out.write_all(text.as_bytes()).map_err(CliError::Write)?;
    out.flush().map_err(CliError::Write)
}
