//! `/metrics` in the Prometheus text format: the ledger's gauges (a fixed number of indexed
//! reads, whatever the ledger holds) and the revoke lag observed by this process.
//!
//! | metric | type | meaning |
//! |---|---|---|
//! | `apono_grants{status}` | gauge | grants in the ledger by status (all replicas) |
//! | `apono_active_grants` | gauge | grants whose access is active |
//! | `apono_revokes_due` | gauge | revokes whose due time has passed, counted up to 1000 |
//! | `apono_revokes_failed` | gauge | grants in `RevokeFailed` (access may remain; still retried) |
//! | `apono_oldest_due_revoke_seconds` | gauge | age of the oldest overdue revoke |
//! | `apono_actions_in_flight` | gauge | actions this process runs on targets now |
//! | `apono_revoke_lag_seconds` | histogram | time from expiry to confirmed revoke (this process) |
//! | `apono_revoke_lag_max_seconds` | gauge | largest revoke lag this process saw |

use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

use apono_core::GrantStatus;

use crate::ledger::gauges::Gauges;
use crate::model::now_ms;

const BUCKETS: [f64; 8] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

/// Revoke lag observed by this process (time from expiry to a confirmed revoke).
#[derive(Debug, Default)]
pub(crate) struct RevokeLag(Mutex<LagStats>);

#[derive(Debug, Default)]
struct LagStats {
    count: u64,
    sum_ms: i64,
    max_ms: i64,
    buckets: [u64; BUCKETS.len()],
}

impl RevokeLag {
    pub(crate) fn observe(&self, lag_ms: i64) {
        let mut s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        s.count += 1;
        s.sum_ms += lag_ms;
        s.max_ms = s.max_ms.max(lag_ms);
        for (i, le) in BUCKETS.iter().enumerate() {
            if (lag_ms as f64) / 1000.0 <= *le {
                s.buckets[i] += 1;
            }
        }
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    let _ = writeln!(out, "{name} {value}");
}

/// The text of `/metrics`.
pub(crate) fn render(gauges: &Gauges, in_flight: usize, lag: &RevokeLag) -> String {
    let now = now_ms();
    let mut out = String::new();
    let _ = writeln!(out, "# HELP apono_grants Grants in the ledger by status.");
    let _ = writeln!(out, "# TYPE apono_grants gauge");
    for (status, n) in &gauges.grants {
        let _ = writeln!(out, "apono_grants{{status=\"{status}\"}} {n}");
    }
    gauge(
        &mut out,
        "apono_active_grants",
        "Grants whose access is active.",
        gauges.count(GrantStatus::Active),
    );
    gauge(
        &mut out,
        "apono_revokes_due",
        "Revokes whose due time has passed (counted up to 1000).",
        gauges.revokes_due,
    );
    gauge(
        &mut out,
        "apono_revokes_failed",
        "Grants in RevokeFailed (access may remain; still retried).",
        gauges.count(GrantStatus::RevokeFailed),
    );
    gauge(
        &mut out,
        "apono_oldest_due_revoke_seconds",
        "Age of the oldest overdue revoke.",
        format!(
            "{:.3}",
            gauges
                .oldest_due_revoke
                .map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0)
        ),
    );
    gauge(
        &mut out,
        "apono_actions_in_flight",
        "Actions running on targets.",
        in_flight,
    );
    let s = lag.0.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = writeln!(
        out,
        "# HELP apono_revoke_lag_seconds Time from expiry to confirmed revoke."
    );
    let _ = writeln!(out, "# TYPE apono_revoke_lag_seconds histogram");
    for (i, le) in BUCKETS.iter().enumerate() {
        let _ = writeln!(
            out,
            "apono_revoke_lag_seconds_bucket{{le=\"{le}\"}} {}",
            s.buckets[i]
        );
    }
    let _ = writeln!(
        out,
        "apono_revoke_lag_seconds_bucket{{le=\"+Inf\"}} {}",
        s.count
    );
    let _ = writeln!(
        out,
        "apono_revoke_lag_seconds_sum {:.3}",
        s.sum_ms as f64 / 1000.0
    );
    let _ = writeln!(out, "apono_revoke_lag_seconds_count {}", s.count);
    gauge(
        &mut out,
        "apono_revoke_lag_max_seconds",
        "Largest revoke lag seen by this process.",
        format!("{:.3}", s.max_ms as f64 / 1000.0),
    );
    out
}
