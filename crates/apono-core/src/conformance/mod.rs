//! Conformance suites that any [`SecretStore`](crate::SecretStore) or
//! [`Provisioner`](crate::Provisioner) implementation — ours or a third party's — runs against
//! itself, against a real target or a faithful fake of one.
//!
//! Each suite is an `async fn` returning a [`ConformanceReport`] or the first
//! [`ConformanceFailure`]; call it from a test with whatever runtime the implementation uses:
//!
//! ```no_run
//! # async fn demo(store: &dyn apono_core::SecretStore, fixture: apono_core::conformance::SecretStoreFixture) {
//! let report = apono_core::conformance::check_secret_store(store, &fixture)
//!     .await
//!     .unwrap();
//! println!("{report}");
//! # }
//! ```

mod provisioner;
mod secret_store;

use std::fmt;

pub use provisioner::{ProvisionerHarness, check_provisioner};
pub use secret_store::{SecretStoreFixture, check_secret_store};

/// A promise of the contract that the implementation broke.
#[derive(Debug, thiserror::Error)]
#[error("conformance check `{check}` failed: {detail}")]
pub struct ConformanceFailure {
    /// The check that failed.
    pub check: &'static str,
    /// What was observed.
    pub detail: String,
}

/// What a suite checked.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ConformanceReport {
    /// Checks that passed.
    pub passed: Vec<&'static str>,
    /// Checks not run because the implementation reports the action as unsupported.
    pub not_applicable: Vec<&'static str>,
}

impl fmt::Display for ConformanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} checks passed", self.passed.len())?;
        if !self.not_applicable.is_empty() {
            write!(
                f,
                "; not applicable (unsupported): {}",
                self.not_applicable.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Fails `check` with `detail` unless `ok`.
fn ensure(
    ok: bool,
    check: &'static str,
    detail: impl FnOnce() -> String,
) -> Result<(), ConformanceFailure> {
    if ok {
        Ok(())
    } else {
        Err(ConformanceFailure {
            check,
            detail: detail(),
        })
    }
}

/// Turns any error into a failure of `check`.
fn failed<E: fmt::Display>(check: &'static str) -> impl FnOnce(E) -> ConformanceFailure {
    move |e| ConformanceFailure {
        check,
        detail: format!("unexpected error: {e}"),
    }
}
