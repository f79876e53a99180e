//! Refused attempts (a bad or unknown token, an approval by someone who may not give it, a
//! request the policy refuses…) are audited, at most once a minute per actor and action, with
//! the number of refusals left out since: an attack leaves a trace, and a flood cannot grow the
//! audit log without bound.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use crate::model::now_ms;

/// How often one actor's refusals of one action are audited.
const WINDOW_MS: i64 = 60_000;
/// The most (actor, action) pairs remembered; beyond it the oldest windows are forgotten.
const REMEMBERED: usize = 10_000;

/// The rate limiter of refusal audit records.
#[derive(Debug, Default)]
pub(crate) struct Refusals(Mutex<HashMap<(String, &'static str), Window>>);

#[derive(Debug, Clone, Copy)]
struct Window {
    since: i64,
    suppressed: u64,
}

impl Refusals {
    /// Whether to audit this refusal now: `Some(n)` with the refusals of the same pair left out
    /// since the last record, or `None` to leave this one out (it is counted).
    pub(crate) fn admit(&self, actor: &str, action: &'static str) -> Option<u64> {
        let now = now_ms();
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= REMEMBERED {
            map.retain(|_, w| now - w.since < WINDOW_MS);
        }
        let key = (actor.to_ascii_lowercase(), action);
        match map.get_mut(&key) {
            Some(w) if now - w.since < WINDOW_MS => {
                w.suppressed += 1;
                None
            }
            Some(w) => {
                let left_out = w.suppressed;
                *w = Window {
                    since: now,
                    suppressed: 0,
                };
                Some(left_out)
            }
            None => {
                map.insert(
                    key,
                    Window {
                        since: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_per_actor_and_action_a_minute() {
        let r = Refusals::default();
        assert_eq!(r.admit("mallory", "token.refused"), Some(0));
        for _ in 0..1000 {
            assert_eq!(r.admit("mallory", "token.refused"), None);
        }
        assert_eq!(r.admit("MALLORY", "request.approve"), Some(0));
        assert_eq!(r.admit("eve", "token.refused"), Some(0));
    }
}
