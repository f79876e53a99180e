//! The control plane of the Apono connector: the single owner of state.
//!
//! * [`Config`]: the one TOML file (`[connector]`, `[[users]]`, `[[integrations]]`,
//!   `[[access_flows]]`, `[[notifications]]`, `[[identity_providers]]`), checked as a whole
//!   ([`ConfigError`] lists every problem).
//! * [`Store`]: SQLite (default, embedded) or PostgreSQL through sqlx, migrations embedded.
//!   Write transactions on SQLite are `BEGIN IMMEDIATE` behind an in-process gate, so another
//!   process on the same file (`apono-connector tokens create` next to a running connector)
//!   waits for the write lock (`busy_timeout`) instead of failing with "database is locked";
//!   the pool's other connections read meanwhile.
//! * [`ControlPlane`]: tokens, access flows, requests and approvals, the **grant ledger** and
//!   the **durable scheduler** ([`ControlPlane::run_scheduler`]): a grant row is committed
//!   (`Granting`, account name, expiry) before the executor touches the target; expiry, retries
//!   (exponential backoff with jitter), rotation, cleanup and discovery are rows with due times;
//!   a revoke that keeps failing becomes `RevokeFailed` and is still retried.
//! * Agent mode ([`ControlPlane::agent_poll`], [`ControlPlane::agent_report`]): the jobs of
//!   integrations bound to another connector id (`connector.agents`) are leased to that
//!   connector's agents (`apono-agent`) over `/agent/v1/…`, exactly as to the local scheduler,
//!   and their results are concluded and recorded under the same fencing; agents authenticate
//!   with credentials made by [`ControlPlane::create_connector_credential`].
//!
//! # Batching and crash safety
//!
//! Actions on targets run concurrently (bounded by the executor's global and per-target
//! limits); the database work around them is batched so that commits do not grow with the
//! number of actions:
//!
//! * The scheduler leases a round of due jobs (round-robin over targets, as many as it has free
//!   slots) in **one** transaction.
//! * Every write a job makes — the `Granting`/`Revoking` record before it touches the target,
//!   and its outcome (ledger change, audit record, next due time, release of its leases) — goes
//!   to a group-commit writer, which applies all items queued meanwhile in order in one
//!   transaction, appends their audit records chained in that order under the audit head's lock,
//!   and commits. A job waits for that commit before it goes on, so a grant is still written
//!   down before the target is touched, and its sealed credentials are stored with `Active`.
//! * An outcome commits together with the release of its job's lease. If the process dies
//!   before the commit, nothing of the batch is written: the jobs are still leased and due again
//!   when the leases end (at once after a restart on SQLite), so a lost revoke outcome means the
//!   (idempotent) revoke is simply run again. Retries, backoff and `RevokeFailed` are recorded
//!   per item exactly as before; a failing batch is retried item by item.
//! * [`audit`]: the audit log, each record linked to the previous one by an HMAC under a key
//!   derived from the master key ([`Keys`], `connector.master_key`), which also seals one-time
//!   credentials in the store until they are shown once.
//! * Single sign-on ([`IdentityProvider`], `[[identity_providers]]`): OpenID Connect sign-in
//!   for the portal and the CLI (authorization code with PKCE, device authorization), ID tokens
//!   validated by `jsonwebtoken`, the connector's own tokens whose groups are refreshed from the
//!   provider past `groups_max_age` (see `docs/sso.md`).
//! * [`api::router`]: the HTTP API and the web portal under `/ui/` (server-rendered pages over
//!   the same operations; sessions, CSRF tokens and headers in `docs/portal.md`);
//!   [`api::serve`] its listener (TLS with certificate reload, or plain HTTP on loopback).
//! * [`watch`]: waiting for a request's or session's next change (the API's watch endpoints,
//!   [`ControlPlane::watch_request`]), woken by this process's commits.
//! * Notifications ([`NotificationChannel`]): rows of the ledger's outbox written in the
//!   transaction of each event, delivered by [`ControlPlane::run_notifications`] through the
//!   [`Channels`] the embedder gives ([`ControlPlane::set_notification_channels`]) under leases,
//!   with backoff; [`ControlPlane::slack_interaction`] decides a Slack button press through the
//!   API's rules.
//!
//! # What is proven, against what
//!
//! On SQLite and a real PostgreSQL: the ledger, the scheduler, approvals, owners and the races (a
//! revoke during a grant, a job outliving its lease, a revoke racing an approval); the OpenAPI
//! document against the running API with `openapi-spec-validator` and `schemathesis`; the owners'
//! routing by a table of cases (`policy/route.rs`).
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
//! api::serve(plane, shutdown).await?;
//! # Ok(())
//! # }
//! ```

pub mod api;
mod config;
mod error;
mod identity;
mod keys;
mod ledger;
mod metrics;
mod model;
mod notify;
mod plane;
mod policy;
mod portal;
mod refusals;
mod scheduler;
pub mod watch;

pub use config::{
    AccessFlow, ApprovalMode, Approvers, Config, ConfigError, ConfigProblem, ConnectorSettings,
    FlowTarget, HumanDuration, MasterKeySource, Principals, ResourceSelector, Trigger, User,
    check_config, config_schema, is_connector_id,
};
pub use error::ControlError;
pub use identity::config::{DisabledUserGrants, IdentityProvider};
pub use keys::{Keys, UnsealError};
pub use ledger::audit;
pub use ledger::store::{Backend, Store};
pub use model::{
    AccessRequest, AccessSession, ApiToken, ApprovalRoute, ApproverSource, ConnectorCredential,
    CreatedToken, DryRun, NewRequest, Problem, ProblemCode, RequestApproval,
};
pub use notify::{ChannelType, Channels, NotificationChannel, SlackOutcome};
pub use plane::{
    AgentIdentity, CONNECTOR_OFFLINE, ControlPlane, CreatedConnectorCredential, NewToken,
    RequestScope, TokenScope,
};
