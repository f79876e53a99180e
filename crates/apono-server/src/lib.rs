//! Assembles an Apono connector from its configuration: the secret stores its integrations
//! need, the executor, the control plane over its store, the scheduler and the HTTP API, with
//! graceful shutdown. The bundled `apono-connector` binary is this crate plus a command line;
//! a custom connector is this crate plus its own provisioners or secret stores.
//!
//! 1. [`load_config`] reads and checks the TOML file against a [`ProvisionerRegistry`] (so an
//!    integration of a type nobody registered is refused, as is a bad `config`).
//! 2. [`Connector::builder`] takes the [`Config`]; [`ConnectorBuilder::registry`] or
//!    [`ConnectorBuilder::provisioner`] add provisioners beside the built-in ones,
//!    [`ConnectorBuilder::secret_store`] adds or replaces a secret store, and
//!    [`ConnectorBuilder::secret_stores_from_env`] builds the built-in stores the configuration
//!    needs from the process environment (see below).
//! 3. [`ConnectorBuilder::build`] opens the store (SQLite under `data_dir`, or PostgreSQL) and
//!    builds the [`ControlPlane`]; [`Connector::run_until`] bootstraps it, listens on
//!    `connector.listen`, runs the scheduler and the API until the signal (for example
//!    [`shutdown_signal`]: SIGTERM or Ctrl-C), then stops both gracefully.
//!    [`Connector::start`] does the same and hands back a [`RunningConnector`] (its address,
//!    [`RunningConnector::stop`]) for tests and embedders.
//!
//! # Secret stores from the environment
//!
//! A store is built only when an integration names its kind — or, for the stores AWS, GCP,
//! Azure and Kubernetes, when a `from_secret_store` entry of `HASHICORP_VAULT_CONFIG` keeps
//! the vault's address and token there — each behind this crate's cargo feature of the same
//! name: `apono` (inline), `aws` (the AWS SDK's credential chain, `AWS_ENDPOINT_URL`),
//! `kubernetes` (`$KUBECONFIG`, `~/.kube/config` or the pod's service account, restricted to
//! `connector.allowed_secrets_to_read`), `azure` (`AZURE_*` variables or a managed identity),
//! `gcp` (application-default credentials, [`GCP_ENDPOINT_OVERRIDE_ENV`]) and `hashicorp`
//! (`HASHICORP_VAULT_CONFIG` or `HASHICORP_VAULT_CONFIG_FILE_PATH`). Those are the only
//! variables read, and only when [`ConnectorBuilder::secret_stores_from_env`] is called.
//!
//! An agent (`apono-connector agent`, crate `apono-agent`) runs on [`agent_executor`]: the
//! same executor, over the stores of the kinds it is told to serve, built the same way.
//!
//! Provisioners follow apono-runtime's features: `ssh`, `rancher`, `winrm`, `apono-vault`.
//! `notify` builds the `[[notifications]]` channels (apono-notify's webhook, Slack and email),
//! which a delivery task runs beside the scheduler (a build without it refuses a configuration
//! that names a channel). No feature is on by default. With `kubernetes`, the application picks the Kubernetes API
//! version (a `k8s-openapi` `v1_*` feature), as kube's documentation explains.
//!
//! # Example: a custom connector
//!
//! ```no_run
//! use std::sync::Arc;
//! use apono_runtime::ProvisionerRegistry;
//! use apono_server::{Connector, load_config, shutdown_signal};
//! # fn widgets(_: &apono_core::Integration) -> Result<Arc<dyn apono_core::Provisioner>, apono_core::ProvisionError> { todo!() }
//! # async fn run() -> Result<(), apono_server::ServerError> {
//! let mut registry = ProvisionerRegistry::with_builtin();
//! registry.register("acme-widgets", Arc::new(widgets));
//! let config = load_config("connector.toml".as_ref(), std::env::vars(), &registry)?;
//! Connector::builder(config)
//!     .registry(registry)
//!     .secret_stores_from_env()
//!     .build()
//!     .await?
//!     .run_until(shutdown_signal()?)
//!     .await
//! # }
//! ```
//!
//! `examples/custom_connector.rs` in the repository is a complete one, and its test drives it
//! through the API (request, approval, grant, revoke).
//!
//! # What is proven, against what
//!
//! `tests/connector.rs` starts a connector in-process with a provisioner and a secret store of
//! its own and runs a request through grant, revoke and shutdown over HTTP; the example's test
//! runs `examples/custom_connector.rs` as a process through request, approval, grant and revoke;
//! the repository's `tests/` package drives the `apono-connector` binary, built on this crate,
//! against a real sshd, OpenBao and moto and the test kit's Kubernetes, Azure and GCP fakes
//! (`from_secret_store` from each), and a scheduled rotation on a libfaketime clock.

mod agent;
mod error;
mod notify;
mod stores;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use apono_control::{Config, ControlError, ControlPlane, Store, check_config};
use apono_core::{CancelSignal, SecretStore};
use apono_runtime::{Executor, ExecutorLimits, ProvisionerFactory, ProvisionerRegistry};
use apono_secrets::SecretResolver;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use agent::agent_executor;
pub use error::ServerError;
pub use stores::GCP_ENDPOINT_OVERRIDE_ENV;

/// How long [`RunningConnector::stop`] lets open API connections finish.
const API_DRAIN: Duration = Duration::from_secs(5);

/// Reads the configuration file at `path` and checks it completely (see
/// [`apono_control::check_config`]): `env` supplies the `APONO_CONNECTOR_<KEY>` overrides
/// (pass `std::env::vars()`), `registry` the integration types and their `config` checks.
/// Every problem is reported at once ([`ServerError::Config`]). Reads only that file.
pub fn load_config(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
    registry: &ProvisionerRegistry,
) -> Result<Config, ServerError> {
    let text = std::fs::read_to_string(path).map_err(|source| ServerError::ReadConfig {
        path: path.to_owned(),
        source,
    })?;
    check_config(&text, env, registry).map_err(|e| ServerError::Config {
        path: path.to_owned(),
        problems: e.problems,
    })
}

/// A connector assembled from its configuration, not yet serving: its [`ControlPlane`] is
/// usable at once (tokens, the audit chain, discovery), and [`Connector::start`] or
/// [`Connector::run_until`] make it serve.
#[derive(Debug)]
pub struct Connector {
    plane: Arc<ControlPlane>,
}

/// Builds a [`Connector`]; see the crate documentation.
#[derive(Debug)]
pub struct ConnectorBuilder {
    config: Config,
    registry: ProvisionerRegistry,
    stores: stores::Stores,
    stores_from_env: bool,
}

impl Connector {
    /// A builder for `config`, with the built-in provisioners of this build
    /// ([`ProvisionerRegistry::with_builtin`]) and no secret store yet.
    pub fn builder(config: Config) -> ConnectorBuilder {
        ConnectorBuilder {
            config,
            registry: ProvisionerRegistry::with_builtin(),
            stores: stores::Stores::new(),
            stores_from_env: false,
        }
    }

    /// The control plane.
    pub fn plane(&self) -> &Arc<ControlPlane> {
        &self.plane
    }

    /// Bootstraps the control plane, binds `connector.listen` and starts the scheduler and
    /// the API in the background. If either of them fails later, the connector stops
    /// ([`RunningConnector::stopped`] completes) and [`RunningConnector::stop`] reports why.
    pub async fn start(self) -> Result<RunningConnector, ServerError> {
        let plane = self.plane;
        plane.bootstrap().await?;
        let listen = plane.config().connector.listen.clone();
        let listener = TcpListener::bind(&listen)
            .await
            .map_err(|source| ServerError::Listen {
                addr: listen.clone(),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Listen {
                addr: listen,
                source,
            })?;
        tracing::info!(listen = %addr, "apono-connector listening");
        let shutdown = CancelSignal::new();
        let scheduler = tokio::spawn({
            let (plane, shutdown) = (plane.clone(), shutdown.clone());
            async move {
                let result = plane.run_scheduler(shutdown.clone()).await;
                shutdown.cancel(); // a scheduler that ends by itself stops the connector
                result
            }
        });
        let notifications = tokio::spawn({
            let (plane, shutdown) = (plane.clone(), shutdown.clone());
            async move {
                let result = plane.run_notifications(shutdown.clone()).await;
                if result.is_err() {
                    shutdown.cancel(); // a delivery worker that fails stops the connector
                }
                result
            }
        });
        let server = tokio::spawn({
            let (plane, shutdown) = (plane.clone(), shutdown.clone());
            async move {
                let result = serve(listener, plane, shutdown.clone()).await;
                shutdown.cancel();
                result
            }
        });
        Ok(RunningConnector {
            plane,
            addr,
            shutdown,
            scheduler,
            notifications,
            server,
        })
    }

    /// [`Connector::start`], then runs until `signal` completes (or the scheduler or the API
    /// fails), then [`RunningConnector::stop`].
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> Result<(), ServerError> {
        let running = self.start().await?;
        tokio::select! {
            () = signal => {}
            () = running.stopped() => {}
        }
        running.stop().await
    }
}

impl ConnectorBuilder {
    /// Replaces the provisioner registry (build it with [`ProvisionerRegistry::with_builtin`]
    /// and [`ProvisionerRegistry::register`] to keep the built-in types). Give the one the
    /// configuration was checked with ([`load_config`]).
    pub fn registry(mut self, registry: ProvisionerRegistry) -> Self {
        self.registry = registry;
        self
    }

    /// Registers a provisioner factory for `integration_type` (replacing any other for it).
    pub fn provisioner(mut self, integration_type: &str, factory: ProvisionerFactory) -> Self {
        self.registry.register(integration_type, factory);
        self
    }

    /// Adds a secret store, used for every reference of its [`SecretStore::kind`] (and as the
    /// source of `from_secret_store` vault entries of that kind), instead of the built-in one.
    pub fn secret_store(mut self, store: Arc<dyn SecretStore>) -> Self {
        self.stores.insert(store.kind(), store);
        self
    }

    /// Builds, from the process environment, every built-in secret store the configuration
    /// needs and was not given with [`ConnectorBuilder::secret_store`] (see the crate
    /// documentation for the variables). Without this call, a needed store that was not
    /// given is an error.
    pub fn secret_stores_from_env(mut self) -> Self {
        self.stores_from_env = true;
        self
    }

    /// Builds the secret stores, creates the data directory, opens the store (running its
    /// migrations) and builds the control plane. Touches no target.
    pub async fn build(mut self) -> Result<Connector, ServerError> {
        stores::complete(&mut self.stores, &self.config, self.stores_from_env).await?;
        let mut resolver = SecretResolver::builder();
        for store in self.stores.into_values() {
            resolver = resolver.store(store);
        }
        let c = &self.config.connector;
        c.prepare_data_dir()?;
        let limits = ExecutorLimits {
            global: c.max_concurrent_actions,
            per_target: c.max_concurrent_per_target,
            action_timeout: c.action_timeout.0,
        };
        let executor = Arc::new(Executor::new(
            self.registry,
            Arc::new(resolver.build()),
            limits,
        ));
        let channels = notify::channels(&self.config)?;
        let store = Store::open(&c.store_url()).await?;
        let plane = ControlPlane::new(store, self.config, executor);
        plane.set_notification_channels(channels);
        Ok(Connector { plane })
    }
}

/// A connector serving its API and running its scheduler (see [`Connector::start`]).
#[derive(Debug)]
pub struct RunningConnector {
    plane: Arc<ControlPlane>,
    addr: SocketAddr,
    shutdown: CancelSignal,
    scheduler: JoinHandle<Result<(), ControlError>>,
    notifications: JoinHandle<Result<(), ControlError>>,
    server: JoinHandle<Result<(), ControlError>>,
}

impl RunningConnector {
    /// The address the API listens on (useful with `listen = "127.0.0.1:0"`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The control plane.
    pub fn plane(&self) -> &Arc<ControlPlane> {
        &self.plane
    }

    /// Completes when the connector stops by itself (the scheduler or the API ended).
    pub async fn stopped(&self) {
        self.shutdown.cancelled().await;
    }

    /// Stops the scheduler (work in flight gets `connector.shutdown_grace`), lets open API
    /// connections finish (5 s at most), closes the store, and reports the first failure of
    /// the scheduler or the API, if any.
    pub async fn stop(self) -> Result<(), ServerError> {
        tracing::info!("shutting down");
        self.shutdown.cancel();
        let scheduler = self.scheduler.await;
        let notifications = self.notifications.await;
        let server = tokio::time::timeout(API_DRAIN, self.server).await;
        self.plane.store().close().await;
        scheduler.map_err(|source| ServerError::Task {
            task: "scheduler",
            source,
        })??;
        notifications.map_err(|source| ServerError::Task {
            task: "notifications",
            source,
        })??;
        match server {
            Ok(Ok(Ok(()))) | Err(_) => Ok(()), // connections still open after the drain: dropped
            Ok(Ok(Err(e))) => Err(ServerError::Control(e)),
            Ok(Err(source)) => Err(ServerError::Task {
                task: "api",
                source,
            }),
        }
    }
}

/// Serves the API of `plane` on `listener` until `stop` fires, then finishes the requests in
/// progress: over TLS when `connector.tls_cert` and `tls_key` are set (reloaded when the files
/// change), else plain HTTP, refused off loopback unless `allow_insecure_listen`. The one
/// place the HTTP server is chosen ([`apono_control::api::serve_on`]).
pub async fn serve(
    listener: TcpListener,
    plane: Arc<ControlPlane>,
    stop: CancelSignal,
) -> Result<(), ControlError> {
    apono_control::api::serve_on(listener, plane, stop).await
}

/// Installs handlers for SIGTERM and Ctrl-C (SIGINT) now, and returns a future completing at
/// the first of them (Ctrl-C only where there is no SIGTERM).
pub fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, ServerError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(ServerError::Signal)?;
        let mut int = signal(SignalKind::interrupt()).map_err(ServerError::Signal)?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
