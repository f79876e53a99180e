//! The control plane of the Apono connector: the single owner of state.
//!
//! * [`Config`]: the one TOML file (`[connector]`, `[[users]]`, `[[integrations]]`,
//!   `[[access_flows]]`), checked as a whole ([`ConfigError`] lists every problem).
//! * [`Store`]: SQLite (default, embedded) or PostgreSQL through sqlx, migrations embedded.
//! * [`ControlPlane`]: tokens, access flows, requests and approvals, the **grant ledger** and
//!   the **durable scheduler** ([`ControlPlane::run_scheduler`]): a grant row is committed
//!   (`Granting`, account name, expiry) before the executor touches the target; expiry, retries
//!   (exponential backoff with jitter), rotation, cleanup and discovery are rows with due times;
//!   a revoke that keeps failing becomes `RevokeFailed` and is still retried.
//! * [`audit`]: the hash-chained audit log.
//! * [`api::router`]: the HTTP API.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use apono_control::{Config, ControlPlane, Store, api};
//! use apono_core::CancelSignal;
//! use apono_runtime::{Executor, ExecutorLimits, ProvisionerRegistry};
//! # async fn run(text: &str, resolver: Arc<apono_secrets::SecretResolver>) -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::parse(text, std::iter::empty(), None)?;
//! let store = Store::open(&config.connector.store_url()).await?;
//! let executor = Arc::new(Executor::new(ProvisionerRegistry::with_builtin(), resolver, ExecutorLimits::default()));
//! let plane = ControlPlane::new(store, config, executor);
//! plane.bootstrap().await?;
//! let shutdown = CancelSignal::new();
//! tokio::spawn(plane.clone().run_scheduler(shutdown.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, api::router(plane)).await?;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod audit;
mod config;
mod error;
mod metrics;
mod model;
mod plane;
mod scheduler;
mod store;

pub use config::{
    AccessFlow, ApprovalMode, Approvers, Config, ConfigError, ConfigProblem, ConnectorSettings,
    FlowTarget, HumanDuration, Principals, ResourceSelector, Trigger, User, check_config,
};
pub use error::ControlError;
pub use model::{AccessRequest, AccessSession, DryRun, NewRequest, Problem, ProblemCode};
pub use plane::{ControlPlane, RequestScope};
pub use store::{Backend, Store};

/// Now, in Unix milliseconds (the store's time unit).
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
