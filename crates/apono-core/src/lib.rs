//! Vocabulary and contracts of the Apono just-in-time access connector.
//!
//! This crate is what every other `apono-*` crate agrees on, and nothing more: it has no network,
//! cloud-SDK or async-runtime dependency.
//!
//! * **Vocabulary**, with Apono's field names: [`Integration`] (typed by [`IntegrationType`]),
//!   [`SecretStoreRef`] and [`SecretValue`], [`Resource`], [`ResourceType`], [`Permission`],
//!   [`Grantee`], [`GrantSpec`], the provisioner's opaque [`GrantState`], [`AccessDetails`], and
//!   the status enums ([`RequestStatus`], [`GrantStatus`], [`CredentialStatus`],
//!   [`IntegrationStatus`]).
//! * **Contracts**: [`SecretStore`] (read a secret where it lives, when it is needed) and
//!   [`Provisioner`] (Apono's actions `get-status`, `list-resources`, `grant-access`,
//!   `revoke-access`, `create-credentials`, `reset-credentials`, `delete-credentials`), both
//!   `#[async_trait]` and used as `Arc<dyn …>`, with an [`ActionContext`] that carries the
//!   resolved secret, a deadline and a [`CancelSignal`].
//! * **Errors** classified by [`ErrorKind`], which says whether a retry can help.
//! * **Names**: validated account and group names per target system, and the deterministic,
//!   injective [`AccountNaming`] derivation ([`names`]).
//! * **Shared helpers**, one home each: [`duration`] (`90s`, `1h30m` — one grammar for the
//!   configuration, requests and the CLI), [`error_chain`] (an error and its sources on one
//!   line), [`ActionContext::bounded`] (work under an action's deadline and cancellation),
//!   [`password`] (random passwords for created accounts), [`json`] (describing JSON without
//!   quoting it).
//! * **Conformance suites** (feature `test-util`) that any implementation, ours or a third
//!   party's, runs against itself ([`conformance`]).
//!
//! # What is proven, against what
//!
//! Property tests of the name grammars and of `AccountNaming` (deterministic and injective over
//! every target's limits) and the conformance suites themselves; `tests/tidy.rs` keeps one home
//! per shared helper. The crate talks to nothing, so nothing else needs proving.
//!
//! # Example: a provisioner
//!
//! ```no_run
//! use apono_core::{
//!     async_trait, ActionContext, GrantSpec, GrantState, Granted, Inventory, LinuxUsername,
//!     AccountNaming, ProvisionError, Provisioner, StatusReport, AccessDetails,
//! };
//!
//! #[derive(Debug)]
//! struct Greeter;
//!
//! #[async_trait]
//! impl Provisioner for Greeter {
//!     async fn get_status(&self, _ctx: &ActionContext) -> Result<StatusReport, ProvisionError> {
//!         Ok(StatusReport::from_checks(vec![]))
//!     }
//!     async fn list_resources(&self, _ctx: &ActionContext) -> Result<Inventory, ProvisionError> {
//!         Ok(Inventory::default())
//!     }
//!     async fn grant_access(
//!         &self,
//!         ctx: &ActionContext,
//!         grant: &GrantSpec,
//!     ) -> Result<Granted, ProvisionError> {
//!         ctx.checkpoint()?;
//!         let user: LinuxUsername = AccountNaming::new().account_for(&grant.grantee);
//!         let _admin_password = ctx.secret().require("password")?;
//!         // … create `user` on the target …
//!         Ok(Granted {
//!             state: GrantState::encode(&user)?,
//!             access: AccessDetails::default(),
//!         })
//!     }
//!     async fn revoke_access(
//!         &self,
//!         ctx: &ActionContext,
//!         _grant: &GrantSpec,
//!         state: &GrantState,
//!     ) -> Result<(), ProvisionError> {
//!         ctx.checkpoint()?;
//!         let _user: LinuxUsername = state.decode()?;
//!         // … remove what the grant added; succeed if it is already gone …
//!         Ok(())
//!     }
//! }
//! ```

mod cancel;
pub mod duration;
mod error;
mod grant;
mod integration;
pub mod json;
pub mod names;
pub mod password;
mod provision;
mod secret;
mod status;

#[cfg(feature = "test-util")]
pub mod conformance;

pub use async_trait::async_trait;

pub use cancel::{CancelSignal, Cancelled};
pub use duration::{DurationError, format_duration, parse_duration};
pub use error::{BoxError, ErrorKind, NameError, error_chain};
pub use grant::{
    AccessDetails, Credential, GrantId, GrantSpec, GrantState, GrantStateError, Granted, Grantee,
    Instructions,
};
pub use integration::{
    CustomAccessDetails, Integration, IntegrationType, InvalidIntegration, Inventory, Permission,
    PermissionInfo, Resource, ResourceType,
};
pub use names::{AccountName, AccountNaming, GroupName, LinuxGroupName, LinuxUsername};
pub use password::generate_password;
pub use provision::{
    Action, ActionContext, ProvisionError, Provisioner, StatusCheck, StatusReport,
};
pub use secret::{
    REDACTED, SecretError, SecretStore, SecretStoreKind, SecretStoreRef, SecretValue,
};
pub use status::{CredentialStatus, GrantStatus, IntegrationStatus, RequestStatus, UnknownStatus};

/// Re-exported so implementers name the same `secrecy` types as this crate.
pub use secrecy;
