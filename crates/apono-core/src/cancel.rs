//! A runtime-independent cancellation signal.
//!
//! `apono-core` depends on no async runtime, so it cannot use `tokio_util`'s token; this is the
//! same idea in a few lines of `std`: a flag plus the wakers of the futures waiting on it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// A cloneable signal that tells an action to stop at its next safe point.
///
/// Clones share one flag: cancelling any clone cancels them all. Cancelling is permanent.
///
/// ```
/// use apono_core::CancelSignal;
/// let signal = CancelSignal::new();
/// let seen_by_action = signal.clone();
/// assert!(!seen_by_action.is_cancelled());
/// signal.cancel();
/// assert!(seen_by_action.is_cancelled());
/// ```
#[derive(Clone, Debug, Default)]
pub struct CancelSignal {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    cancelled: AtomicBool,
    waiters: Mutex<Vec<Waker>>,
}

impl CancelSignal {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the signal and wakes every future waiting in [`CancelSignal::cancelled`].
    pub fn cancel(&self) {
        self.inner.cancelled.store(true, Ordering::SeqCst);
        let waiters = std::mem::take(
            &mut *self
                .inner
                .waiters
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for waker in waiters {
            waker.wake();
        }
    }

    /// Whether the signal has fired.
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::SeqCst)
    }

    /// A future that completes once the signal fires; use it in a `select!` beside the work.
    pub fn cancelled(&self) -> Cancelled {
        Cancelled {
            signal: self.clone(),
        }
    }
}

/// The future returned by [`CancelSignal::cancelled`].
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub struct Cancelled {
    signal: CancelSignal,
}

impl Future for Cancelled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.is_cancelled() {
            return Poll::Ready(());
        }
        let mut waiters = self
            .signal
            .inner
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Check again under the lock: `cancel` sets the flag before taking the lock, so either it
        // sees our waker or we see its flag.
        if self.signal.is_cancelled() {
            return Poll::Ready(());
        }
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waiting_futures_wake_on_cancel() {
        let signal = CancelSignal::new();
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.cancelled().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        signal.cancel();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("waiter woke")
            .unwrap();
        // Already cancelled: completes at once.
        signal.cancelled().await;
    }
}
