//! The stateless executor of the Apono connector.
//!
//! The [`Executor`] carries out one of Apono's actions (`grant-access`, `revoke-access`, …) for
//! one [`Integration`](apono_core::Integration):
//!
//! 1. it finds the integration type's factory in the [`ProvisionerRegistry`] (built-in types and
//!    any a third party registers) and builds the provisioner, cached per integration;
//! 2. it waits for a slot under the **per-target** and the **global** concurrency limits;
//! 3. it resolves the integration's secret through [`apono_secrets::SecretResolver`] *at that
//!    moment*, hands it to the provisioner inside an [`ActionContext`](apono_core::ActionContext) with a **deadline** and
//!    the caller's [`CancelSignal`](apono_core::CancelSignal), and drops it when the action ends.
//!
//! It keeps no state besides the provisioners it built; the control plane (`apono-control`)
//! owns the grant ledger and decides what to run and what to retry
//! ([`RuntimeError::kind`] + [`ErrorKind::is_retryable`]).
//!
//! # What is proven, against what
//!
//! `tests/executor.rs`, with in-process provisioners and stores: the concurrency limits,
//! deadlines, cancellation and secrets read per action. The provisioners are proven in their own
//! crates.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use apono_core::{CancelSignal, GrantSpec, Integration};
//! use apono_runtime::{Executor, ExecutorLimits, ProvisionerRegistry};
//! use apono_secrets::SecretResolver;
//!
//! # async fn run(integration: Integration, grant: GrantSpec) -> Result<(), apono_runtime::RuntimeError> {
//! let executor = Executor::new(
//!     ProvisionerRegistry::with_builtin(),
//!     Arc::new(SecretResolver::builder().build()),
//!     ExecutorLimits {
//!         global: 64,
//!         per_target: 4,
//!         action_timeout: Duration::from_secs(30),
//!     },
//! );
//! let granted = executor.grant(&integration, &grant, &CancelSignal::new()).await?;
//! executor.revoke(&integration, &grant, &granted.state, &CancelSignal::new()).await?;
//! # Ok(())
//! # }
//! ```

mod executor;
mod registry;
pub mod wire;

pub use executor::{Executor, ExecutorLimits, RuntimeError};
#[cfg(feature = "schemars")]
pub use registry::integration_config_schemas;
pub use registry::{ProvisionerFactory, ProvisionerRegistry};

pub use apono_core::ErrorKind;
