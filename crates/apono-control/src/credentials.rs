//! One-time credentials waiting to be shown, by grant id. Kept in this process's memory only:
//! after a restart a requester asks for `reset-credentials`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use apono_core::Credential;

/// The credentials a grant's provisioning returned, until shown or revoked.
#[derive(Debug, Default)]
pub(crate) struct Credentials(Mutex<HashMap<String, Vec<Credential>>>);

impl Credentials {
    /// Keeps `credentials` for grant `id` (none: forgets any).
    pub(crate) fn keep(&self, id: &str, credentials: Vec<Credential>) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if credentials.is_empty() {
            map.remove(id);
        } else {
            map.insert(id.to_owned(), credentials);
        }
    }

    /// Takes grant `id`'s credentials (they are shown at most once).
    pub(crate) fn take(&self, id: &str) -> Option<Vec<Credential>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
    }

    /// Whether grant `id` has credentials waiting.
    pub(crate) fn has(&self, id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(id)
    }

    /// Forgets grant `id`'s credentials.
    pub(crate) fn forget(&self, id: &str) {
        self.take(id);
    }
}
