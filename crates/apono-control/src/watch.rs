//! Waiting for the next change of a request or a session: what the API's `watch` endpoints,
//! the portal's live pages and the CLI's `--wait` use instead of polling.
//!
//! A watched object has a **version**: a fingerprint of everything the API shows of it (its
//! JSON), so a change of anything a client sees, a status derived from the grants included,
//! is a new version. A waiter reads the object, and while its version is the one the client
//! already has, sleeps until
//!
//! * this process commits a write transaction ([`Store::commits`](crate::Store)): the ledger's
//!   group commit, an approval, a revoke; the object is read again at once, so a client hears
//!   of a change within a few milliseconds of its commit;
//! * or [`RECHECK`] passes: a change committed by another replica (a shared PostgreSQL) is seen
//!   at that re-check;
//! * or the wait ends ([`MAX_WAIT`] at most), or the connector shuts down: the current state
//!   is answered, unchanged.

use std::future::Future;
use std::time::Duration;

use apono_core::CancelSignal;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::ControlError;

/// The longest a watch waits before it answers the unchanged state.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// How often a waiting watch reads the object again even when this process committed nothing
/// (changes by other replicas).
pub const RECHECK: Duration = Duration::from_secs(1);

/// An object as a watch answers it.
#[derive(Clone, Debug, PartialEq)]
pub struct Versioned<T> {
    /// The current state.
    pub value: T,
    /// Its version (see the module docs): `v1-` and 16 hex digits.
    pub version: String,
    /// Whether the version differs from the one the client named (always true without one).
    pub changed: bool,
}

/// The version of `value`: a fingerprint of its JSON.
pub fn version_of<T: Serialize>(value: &T) -> String {
    // Serialising the API's own types cannot fail.
    let json = serde_json::to_vec(value).unwrap_or_default();
    let digest = Sha256::digest(&json);
    format!("v1-{}", data_encoding::HEXLOWER.encode(&digest[..8]))
}

/// Reads with `read` until the version differs from `after` (or there is no `after`), `wait`
/// (at most [`MAX_WAIT`]) passes, or `closing` fires; answers the last state read. An error
/// of `read` (the object is gone or no longer visible) is answered at once.
pub(crate) async fn until_changed<T, F, Fut>(
    mut commits: watch::Receiver<u64>,
    closing: &CancelSignal,
    after: Option<&str>,
    wait: Duration,
    mut read: F,
) -> Result<Versioned<T>, ControlError>
where
    T: Serialize,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ControlError>>,
{
    let deadline = Instant::now() + wait.min(MAX_WAIT);
    loop {
        // Before the read: a commit from here on wakes the wait below.
        commits.mark_unchanged();
        let value = read().await?;
        let version = version_of(&value);
        let changed = after.is_none_or(|a| a != version);
        let now = Instant::now();
        if changed || now >= deadline || closing.is_cancelled() {
            return Ok(Versioned {
                value,
                version,
                changed,
            });
        }
        let pause = RECHECK.min(deadline - now);
        tokio::select! {
            Ok(()) = commits.changed() => {}
            () = tokio::time::sleep(pause) => {}
            () = closing.cancelled() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_follow_the_content() {
        let a = version_of(&serde_json::json!({ "status": "Pending" }));
        let b = version_of(&serde_json::json!({ "status": "Active" }));
        assert_ne!(a, b);
        assert_eq!(a, version_of(&serde_json::json!({ "status": "Pending" })));
        assert!(a.starts_with("v1-") && a.len() == 19, "{a}");
    }

    #[tokio::test]
    async fn a_commit_wakes_the_wait_and_a_timeout_answers_unchanged() {
        let (tx, rx) = watch::channel(0_u64);
        let state = std::sync::Arc::new(std::sync::Mutex::new("Pending"));
        let read = {
            let state = state.clone();
            move || {
                let s = *state.lock().unwrap();
                async move { Ok::<_, ControlError>(s) }
            }
        };
        let closing = CancelSignal::new();
        let first = until_changed(rx.clone(), &closing, None, MAX_WAIT, read.clone())
            .await
            .unwrap();
        assert!(first.changed);

        // Nothing changes: the wait ends at its deadline with the same version.
        let started = Instant::now();
        let same = until_changed(
            rx.clone(),
            &closing,
            Some(&first.version),
            Duration::from_millis(150),
            read.clone(),
        )
        .await
        .unwrap();
        assert!(!same.changed && same.version == first.version);
        assert!(started.elapsed() >= Duration::from_millis(150));

        // A change and a commit: the waiter answers long before the re-check would.
        let waiter = {
            let version = first.version.clone();
            let closing = closing.clone();
            let rx = rx.clone();
            let read = read.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let v = until_changed(rx, &closing, Some(&version), MAX_WAIT, read).await;
                (v, started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        *state.lock().unwrap() = "Active";
        tx.send_modify(|n| *n += 1);
        let (changed, took) = waiter.await.unwrap();
        let changed = changed.unwrap();
        assert!(changed.changed && changed.value == "Active");
        assert!(took < RECHECK, "woken after {took:?}");

        // Shutdown ends a wait at once.
        let closing_now = CancelSignal::new();
        closing_now.cancel();
        let started = Instant::now();
        let v = until_changed(rx, &closing_now, Some(&changed.version), MAX_WAIT, read)
            .await
            .unwrap();
        assert!(!v.changed && started.elapsed() < RECHECK);
    }
}
