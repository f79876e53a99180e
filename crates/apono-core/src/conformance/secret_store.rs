//! The secret store suite.

use secrecy::ExposeSecret;

use super::{ConformanceFailure, ConformanceReport, ensure, failed};
use crate::error::ErrorKind;
use crate::secret::{SecretError, SecretStore, SecretStoreRef, SecretValue};

/// What the suite reads: a secret that exists with known fields, and one that does not.
#[derive(Debug, Clone)]
pub struct SecretStoreFixture {
    /// A secret the store holds and will hand out.
    pub existing: SecretStoreRef,
    /// Exactly the fields `existing` must yield.
    pub expected: SecretValue,
    /// A secret of the same kind that does not exist.
    pub missing: SecretStoreRef,
}

/// Runs the secret store suite:
///
/// * the store serves the kind of `fixture.existing`;
/// * reading an existing secret yields exactly the expected fields, twice in a row;
/// * a secret that is not there is [`ErrorKind::NotFound`];
/// * a reference of another kind is refused with [`SecretError::NotConfigured`];
/// * no expected value appears in the store's `Debug`, the value's `Debug`, or any error's
///   `Display`/`Debug`.
pub async fn check_secret_store(
    store: &dyn SecretStore,
    fixture: &SecretStoreFixture,
) -> Result<ConformanceReport, ConformanceFailure> {
    let mut report = ConformanceReport::default();
    let leaks = |text: &str| {
        fixture
            .expected
            .iter()
            .map(|(_, v)| v.expose_secret())
            .filter(|v| v.len() >= 4)
            .any(|v| text.contains(v))
    };

    const KIND: &str = "serves its kind";
    ensure(store.kind() == fixture.existing.kind(), KIND, || {
        format!(
            "store serves {} but the fixture is {}",
            store.kind(),
            fixture.existing.kind()
        )
    })?;
    report.passed.push(KIND);

    const READ: &str = "reads an existing secret";
    for _ in 0..2 {
        let value = store.get(&fixture.existing).await.map_err(failed(READ))?;
        ensure(value == fixture.expected, READ, || {
            format!(
                "keys {:?} differ from, or values do not match, the expected {:?}",
                value.keys().collect::<Vec<_>>(),
                fixture.expected.keys().collect::<Vec<_>>()
            )
        })?;
        ensure(!leaks(&format!("{value:?}")), READ, || {
            "a value appears in the Debug output of the secret".into()
        })?;
    }
    report.passed.push(READ);

    const MISSING: &str = "a missing secret is NotFound";
    match store.get(&fixture.missing).await {
        Ok(value) => {
            return Err(ConformanceFailure {
                check: MISSING,
                detail: format!(
                    "got a value with keys {:?}",
                    value.keys().collect::<Vec<_>>()
                ),
            });
        }
        Err(e) => ensure(e.kind() == ErrorKind::NotFound, MISSING, || {
            format!("got {} ({e})", e.kind())
        })?,
    }
    report.passed.push(MISSING);

    const OTHER_KIND: &str = "refuses references of another kind";
    let other = if matches!(fixture.existing, SecretStoreRef::Aws { .. }) {
        SecretStoreRef::Gcp {
            project: "conformance".into(),
            secret_id: "other-kind".into(),
        }
    } else {
        SecretStoreRef::Aws {
            region: "conformance-1".into(),
            secret_id: "other-kind".into(),
        }
    };
    match store.get(&other).await {
        Err(SecretError::NotConfigured { .. }) => report.passed.push(OTHER_KIND),
        Err(e) => {
            return Err(ConformanceFailure {
                check: OTHER_KIND,
                detail: format!("expected NotConfigured, got {e}"),
            });
        }
        Ok(_) => {
            return Err(ConformanceFailure {
                check: OTHER_KIND,
                detail: "a reference of another kind returned a value".into(),
            });
        }
    }

    const NO_LEAK: &str = "no value in Debug or errors";
    ensure(!leaks(&format!("{store:?}")), NO_LEAK, || {
        "a value appears in the store's Debug output".into()
    })?;
    if let Err(e) = store.get(&fixture.missing).await {
        let mut shown = format!("{e} {e:?}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            shown.push_str(&format!(" {s} {s:?}"));
            source = s.source();
        }
        ensure(!leaks(&shown), NO_LEAK, || {
            "a value appears in an error chain".into()
        })?;
    }
    report.passed.push(NO_LEAK);
    Ok(report)
}
