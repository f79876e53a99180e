//! The notifications outbox: a row per notification per channel, written in the transaction
//! that commits the change it tells of (so a notification is never lost, and never sent for a
//! change that did not commit), delivered by [`crate::notify`]'s worker under a lease.
//!
//! The events are read from the audit records a transaction appends ([`Told`]), at its end:
//!
//! | audit record | event |
//! |---|---|
//! | `request.created` (not approved in the same transaction) | `request.pending` |
//! | `request.approved`, `request.rejected` | `request.approved`, `request.rejected` |
//! | `grant.succeeded` (access became active) | `session.active`, and `session.expiring` due `expiring_before` ahead of its expiry |
//! | `revoke.succeeded` | `session.ended` |
//! | `revoke.attempt` that reached `revoke_failed_after_attempts` | `session.revoke_failed` |
//!
//! Leases follow the jobs' discipline ([`super::jobs`]): a claim sets `lease_owner` to a
//! token of its own and moves `due_at` to the lease's end (a crashed worker's rows are due
//! again then; at once after a restart on SQLite); an outcome is written only while the row
//! still carries the claim's token.

use std::collections::BTreeMap;

use apono_notify::Event;
use serde_json::{Value, json};
use sqlx::AnyConnection;
use tokio::sync::Notify;

use super::{Ledger, db, new_id};
use crate::error::ControlError;
use crate::model::now_ms;
use crate::notify::NotificationChannel;

/// One channel an event is routed to.
#[derive(Clone, Debug)]
struct Route {
    channel: String,
    expiring_before_ms: i64,
}

/// Which channels carry which events (from `[[notifications]]`), and the bell that wakes the
/// delivery worker after a commit queued something.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    by_event: BTreeMap<Event, Vec<Route>>,
    bell: Notify,
}

impl Routes {
    /// The routes of `channels`.
    pub(crate) fn new(channels: &[NotificationChannel]) -> Self {
        let mut by_event: BTreeMap<Event, Vec<Route>> = BTreeMap::new();
        for channel in channels {
            for event in channel.routed() {
                by_event.entry(event).or_default().push(Route {
                    channel: channel.name.clone(),
                    expiring_before_ms: i64::try_from(channel.expiring_before.0.as_millis())
                        .unwrap_or(i64::MAX),
                });
            }
        }
        Self {
            by_event,
            bell: Notify::new(),
        }
    }

    /// Whether no event is routed anywhere (then nothing is ever queued).
    pub(crate) fn is_empty(&self) -> bool {
        self.by_event.is_empty()
    }

    /// Wakes the delivery worker.
    pub(crate) fn ring(&self) {
        self.bell.notify_one();
    }

    /// Completes at the next [`Routes::ring`] (or at once if one rang meanwhile).
    pub(crate) async fn rung(&self) {
        self.bell.notified().await;
    }

    fn of(&self, event: Event) -> &[Route] {
        self.by_event.get(&event).map_or(&[], Vec::as_slice)
    }
}

/// An audit record of the transaction being committed, as the outbox reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Told<'a> {
    pub(crate) action: &'a str,
    pub(crate) subject: &'a str,
    pub(crate) details: &'a Value,
}

/// The events `told[i]` calls for.
fn events_of(told: &[Told<'_>], i: usize) -> Vec<Event> {
    let t = told[i];
    match t.action {
        "request.created"
            if !told
                .iter()
                .any(|o| o.action == "request.approved" && o.subject == t.subject) =>
        {
            vec![Event::RequestPending]
        }
        "request.approved" => vec![Event::RequestApproved],
        "request.rejected" => vec![Event::RequestRejected],
        "grant.succeeded" if t.details.get("revoke_requested").is_none() => {
            vec![Event::SessionActive, Event::SessionExpiring]
        }
        "revoke.succeeded" => vec![Event::SessionEnded],
        "revoke.attempt" if t.details["alert"] == json!(true) => {
            vec![Event::SessionRevokeFailed]
        }
        _ => Vec::new(),
    }
}

/// Queues, in the caller's transaction, the notifications `told` (its audit records, in
/// order) call for. Returns how many rows it wrote.
pub(crate) async fn enqueue(
    conn: &mut AnyConnection,
    routes: &Routes,
    told: &[Told<'_>],
) -> Result<usize, ControlError> {
    if routes.is_empty() {
        return Ok(0);
    }
    let now = now_ms();
    let mut queued = 0;
    for i in 0..told.len() {
        for event in events_of(told, i) {
            let subject = told[i].subject;
            let mut expiry = None;
            for route in routes.of(event) {
                let (due_at, expires_at) = if event == Event::SessionExpiring {
                    if expiry.is_none() {
                        let row: Option<(Option<i64>,)> =
                            sqlx::query_as("SELECT expires_at FROM grants WHERE id = $1")
                                .bind(subject)
                                .fetch_optional(&mut *conn)
                                .await
                                .map_err(db("queueing a notification"))?;
                        expiry = Some(row.and_then(|r| r.0));
                    }
                    let Some(Some(ends)) = expiry else { continue };
                    let due = ends.saturating_sub(route.expiring_before_ms);
                    if due <= now {
                        continue; // shorter than the warning: `session.active` said it all
                    }
                    (due, Some(ends))
                } else {
                    (now, None)
                };
                sqlx::query("INSERT INTO notifications (id, channel, event, subject, occurred_at, due_at, attempts, expires_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7)")
                    .bind(new_id("ntf_"))
                    .bind(route.channel.as_str())
                    .bind(event.as_str())
                    .bind(subject)
                    .bind(now)
                    .bind(due_at)
                    .bind(expires_at)
                    .execute(&mut *conn)
                    .await
                    .map_err(db("queueing a notification"))?;
                queued += 1;
            }
        }
    }
    Ok(queued)
}

/// A notification this worker holds.
#[derive(Clone, Debug)]
pub(crate) struct Claimed {
    /// The delivery id.
    pub(crate) id: String,
    pub(crate) channel: String,
    pub(crate) event: Event,
    pub(crate) subject: String,
    pub(crate) occurred_at: i64,
    /// Attempts before this one.
    pub(crate) attempts: i64,
    /// `session.expiring`: the expiry it warns of.
    pub(crate) expires_at: Option<i64>,
    /// The lease token every outcome is fenced by.
    pub(crate) lease: String,
}

/// What became of one delivery attempt.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    /// Delivered, or nothing left to deliver: the row goes.
    Done,
    /// Failed; due again at `due_at`.
    Retry { error: String, due_at: i64 },
    /// Given up (permanent failure or too many attempts): kept, marked, audited.
    GiveUp { error: String },
}

impl Ledger {
    /// Leases up to `limit` notifications due at `now` until `until`.
    pub(crate) async fn claim_notifications(
        &self,
        now: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<Claimed>, ControlError> {
        let lease = self.new_lease();
        let mut tx = self
            .store
            .begin()
            .await
            .map_err(db("claiming notifications"))?;
        type Row = (String, String, String, String, i64, i64, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(
            "UPDATE notifications SET lease_owner = $1, leased_until = $2, due_at = $2 WHERE id IN (SELECT id FROM notifications WHERE due_at <= $3 AND failed_at IS NULL AND (leased_until IS NULL OR leased_until < $3) ORDER BY due_at LIMIT $4) AND due_at <= $3 AND failed_at IS NULL AND (leased_until IS NULL OR leased_until < $3) RETURNING id, channel, event, subject, occurred_at, attempts, expires_at",
        )
        .bind(lease.as_str())
        .bind(until)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("claiming notifications"))?;
        tx.commit().await.map_err(db("claiming notifications"))?;
        rows.into_iter()
            .map(
                |(id, channel, event, subject, occurred_at, attempts, expires_at)| {
                    Ok(Claimed {
                        event: event.parse().map_err(|e: apono_notify::UnknownEvent| {
                            ControlError::Corrupt(e.to_string())
                        })?,
                        id,
                        channel,
                        subject,
                        occurred_at,
                        attempts,
                        expires_at,
                        lease: lease.clone(),
                    })
                },
            )
            .collect()
    }

    /// Records what became of `claimed`'s attempt, if its lease still holds (whether it did).
    pub(crate) async fn notification_outcome(
        &self,
        claimed: &Claimed,
        outcome: Outcome,
    ) -> Result<bool, ControlError> {
        let mut tx = self.begin("recording a notification").await?;
        let attempts = claimed.attempts + 1;
        let n = match &outcome {
            Outcome::Done => sqlx::query(
                "DELETE FROM notifications WHERE id = $1 AND lease_owner = $2",
            )
            .bind(claimed.id.as_str())
            .bind(claimed.lease.as_str())
            .execute(tx.conn())
            .await,
            Outcome::Retry { error, due_at } => sqlx::query(
                "UPDATE notifications SET attempts = $1, last_error = $2, due_at = $3, lease_owner = NULL, leased_until = NULL WHERE id = $4 AND lease_owner = $5",
            )
            .bind(attempts)
            .bind(error.as_str())
            .bind(*due_at)
            .bind(claimed.id.as_str())
            .bind(claimed.lease.as_str())
            .execute(tx.conn())
            .await,
            Outcome::GiveUp { error } => sqlx::query(
                "UPDATE notifications SET attempts = $1, last_error = $2, failed_at = $3, lease_owner = NULL, leased_until = NULL WHERE id = $4 AND lease_owner = $5",
            )
            .bind(attempts)
            .bind(error.as_str())
            .bind(now_ms())
            .bind(claimed.id.as_str())
            .bind(claimed.lease.as_str())
            .execute(tx.conn())
            .await,
        }
        .map_err(db("recording a notification"))?
        .rows_affected();
        if n == 1
            && let Outcome::GiveUp { error } = &outcome
        {
            tx.audit(
                "connector",
                "notification.failed",
                &claimed.subject,
                "failed",
                json!({ "notification": claimed.id, "channel": claimed.channel, "event": claimed.event.as_str(), "attempts": attempts, "error": error }),
            )
            .await?;
        }
        tx.commit("recording a notification").await?;
        Ok(n == 1)
    }

    /// The earliest due time of a notification not given up.
    pub(crate) async fn next_notification_due(&self) -> Result<Option<i64>, ControlError> {
        let row: (Option<i64>,) =
            sqlx::query_as("SELECT MIN(due_at) FROM notifications WHERE failed_at IS NULL")
                .fetch_one(self.store.pool())
                .await
                .map_err(db("reading the next notification"))?;
        Ok(row.0)
    }

    /// Voids every notification lease (SQLite at start-up: the one process that held them
    /// is gone, so their rows are due at once).
    pub(crate) async fn void_notification_leases(&self) -> Result<(), ControlError> {
        let mut tx = self
            .store
            .begin()
            .await
            .map_err(db("releasing notification leases"))?;
        sqlx::query("UPDATE notifications SET lease_owner = NULL, leased_until = NULL, due_at = $1 WHERE lease_owner IS NOT NULL")
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db("releasing notification leases"))?;
        tx.commit()
            .await
            .map_err(db("releasing notification leases"))
    }

    /// The routes of this ledger's notifications.
    pub(crate) fn routes(&self) -> &Routes {
        &self.routes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told<'a>(action: &'a str, subject: &'a str, details: &'a Value) -> Told<'a> {
        Told {
            action,
            subject,
            details,
        }
    }

    #[test]
    fn audit_records_map_to_the_events_they_tell() {
        let none = json!({});
        let check = |records: &[Told<'_>], want: &[&[Event]]| {
            let got: Vec<Vec<Event>> = (0..records.len()).map(|i| events_of(records, i)).collect();
            let want: Vec<Vec<Event>> = want.iter().map(|w| w.to_vec()).collect();
            assert_eq!(got, want);
        };
        // A request waiting for approval; one approved in its creating transaction is not.
        check(
            &[told("request.created", "req_1", &none)],
            &[&[Event::RequestPending]],
        );
        check(
            &[
                told("request.created", "req_1", &none),
                told("request.approved", "req_1", &none),
            ],
            &[&[], &[Event::RequestApproved]],
        );
        check(
            &[told("request.rejected", "req_1", &none)],
            &[&[Event::RequestRejected]],
        );
        // Access became active (and its end will be warned of); not when a revoke won.
        let won = json!({ "revoke_requested": true });
        check(
            &[
                told("grant.succeeded", "grt_1", &none),
                told("grant.succeeded", "grt_2", &won),
            ],
            &[&[Event::SessionActive, Event::SessionExpiring], &[]],
        );
        check(
            &[told("revoke.succeeded", "grt_1", &none)],
            &[&[Event::SessionEnded]],
        );
        // Only the attempt that reached the limit alerts; later ones (still retried) do not.
        let became = json!({ "revoke_failed": true, "alert": true });
        let still = json!({ "revoke_failed": true, "alert": false });
        check(
            &[
                told("revoke.attempt", "grt_1", &became),
                told("revoke.attempt", "grt_1", &still),
                told("request.approval_recorded", "req_1", &none),
            ],
            &[&[Event::SessionRevokeFailed], &[], &[]],
        );
    }
}
