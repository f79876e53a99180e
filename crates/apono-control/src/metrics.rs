//! Prometheus metrics: gauges read from the ledger at scrape time, plus the revoke lag observed
//! by this process.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::PoisonError;

use crate::error::ControlError;
use crate::now_ms;
use crate::plane::{ControlPlane, db};

/// Revoke lag observed by this process (time from expiry to a confirmed revoke).
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    lag: Mutex<LagStats>,
}

#[derive(Debug, Default)]
struct LagStats {
    count: u64,
    sum_ms: i64,
    max_ms: i64,
    buckets: [u64; BUCKETS.len()],
}

const BUCKETS: [f64; 8] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0];

impl Metrics {
    pub(crate) fn observe_revoke_lag(&self, lag_ms: i64) {
        let mut s = self.lag.lock().unwrap_or_else(PoisonError::into_inner);
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

impl ControlPlane {
    /// The metrics in Prometheus text format.
    pub async fn metrics_text(&self) -> Result<String, ControlError> {
        let now = now_ms();
        let statuses: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, COUNT(*) FROM grants GROUP BY status")
                .fetch_all(self.store.pool())
                .await
                .map_err(db("reading metrics"))?;
        let (due, oldest): (i64, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*), MIN(due_at) FROM jobs WHERE kind = 'revoke' AND due_at <= $1",
        )
        .bind(now)
        .fetch_one(self.store.pool())
        .await
        .map_err(db("reading metrics"))?;
        let count = |s: &str| statuses.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
        let mut out = String::new();
        let _ = writeln!(out, "# HELP apono_grants Grants in the ledger by status.");
        let _ = writeln!(out, "# TYPE apono_grants gauge");
        for status in apono_core::GrantStatus::ALL {
            let _ = writeln!(
                out,
                "apono_grants{{status=\"{status}\"}} {}",
                count(status.as_str())
            );
        }
        let _ = writeln!(
            out,
            "# HELP apono_active_grants Grants whose access is active."
        );
        let _ = writeln!(out, "# TYPE apono_active_grants gauge");
        let _ = writeln!(out, "apono_active_grants {}", count("Active"));
        let _ = writeln!(
            out,
            "# HELP apono_revokes_due Revokes whose due time has passed."
        );
        let _ = writeln!(out, "# TYPE apono_revokes_due gauge");
        let _ = writeln!(out, "apono_revokes_due {due}");
        let _ = writeln!(
            out,
            "# HELP apono_revokes_failed Grants in RevokeFailed (access may remain; still retried)."
        );
        let _ = writeln!(out, "# TYPE apono_revokes_failed gauge");
        let _ = writeln!(out, "apono_revokes_failed {}", count("RevokeFailed"));
        let _ = writeln!(
            out,
            "# HELP apono_oldest_due_revoke_seconds Age of the oldest overdue revoke."
        );
        let _ = writeln!(out, "# TYPE apono_oldest_due_revoke_seconds gauge");
        let _ = writeln!(
            out,
            "apono_oldest_due_revoke_seconds {:.3}",
            oldest.map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0)
        );
        let _ = writeln!(
            out,
            "# HELP apono_actions_in_flight Actions running on targets."
        );
        let _ = writeln!(out, "# TYPE apono_actions_in_flight gauge");
        let _ = writeln!(out, "apono_actions_in_flight {}", self.executor.in_flight());
        let s = self
            .metrics
            .lag
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
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
        let _ = writeln!(
            out,
            "# HELP apono_revoke_lag_max_seconds Largest revoke lag seen by this process."
        );
        let _ = writeln!(out, "# TYPE apono_revoke_lag_max_seconds gauge");
        let _ = writeln!(
            out,
            "apono_revoke_lag_max_seconds {:.3}",
            s.max_ms as f64 / 1000.0
        );
        Ok(out)
    }
}
