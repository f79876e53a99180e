//! Notifications: the `[[notifications]]` channels ([`NotificationChannel`]), the delivery
//! worker over the ledger's outbox, and Slack's interactivity (a button press decides a
//! request through the same [`ControlPlane`] operations as the API).
//!
//! The outbox rows are written by the ledger in the transaction of the change they tell of
//! (`ledger/outbox.rs`). The worker leases due rows, builds each [`apono_notify::Notification`]
//! from the request and session as they are now, resolves the channel's secret from its secret
//! store for that attempt, and hands both to the channel ([`Channels`], built by
//! `apono-server` from the configuration). Success deletes the row; a failure is retried with
//! exponential backoff (`connector.retry_base` doubled per attempt, up to `retry_max`, with
//! jitter) until the channel's `max_attempts`, then the row is kept, marked failed and audited
//! (`notification.failed`); a permanent failure (a 4xx, a missing secret field) is given up at
//! once. A worker that dies mid-delivery leaves its rows leased; they are due again when the
//! lease ends (at once after a restart on SQLite) and re-sent with the same delivery id.

mod config;
mod slack;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apono_core::{CancelSignal, SecretValue};
use apono_notify::{Deliver, Event, Notification, RequestFacts, SessionFacts};
use tracing::{debug, warn};

pub(crate) use config::check as check_config;
pub use config::{ChannelType, NotificationChannel};
pub use slack::SlackOutcome;

use crate::config::{Config, User};
use crate::error::ControlError;
use crate::ledger::Ledger;
use crate::ledger::outbox::{Claimed, Outcome};
use crate::ledger::store::Backend;
use crate::model::{AccessRequest, AccessSession, now_ms, ts};
use crate::plane::ControlPlane;
use crate::policy::Policy;
use crate::scheduler::backoff_ms;

/// The notification channels by `[[notifications]]` name.
pub type Channels = BTreeMap<String, Arc<dyn Deliver>>;

/// How many notifications one claim takes.
const BATCH: i64 = 32;
/// The longest sleep between looks at the outbox when nothing rings.
const IDLE_MS: i64 = 5_000;

/// Delivers the outbox's notifications.
#[derive(Debug)]
pub(crate) struct Worker {
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) config: Arc<Config>,
    pub(crate) executor: Arc<apono_runtime::Executor>,
    pub(crate) channels: Channels,
    /// The control plane, for the people signed in through an identity provider (weak: the
    /// worker never keeps the plane alive).
    pub(crate) plane: std::sync::Weak<ControlPlane>,
}

impl Worker {
    fn lease_ms(&self) -> i64 {
        let longest = self
            .config
            .notifications
            .iter()
            .map(|c| c.timeout.0)
            .max()
            .unwrap_or(Duration::from_secs(10));
        i64::try_from(longest.as_millis()).unwrap_or(i64::MAX / 4) * 2 + 30_000
    }

    /// Delivers until `shutdown` fires (deliveries in flight finish first: each is bounded by
    /// its channel's `timeout`).
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancelSignal) -> Result<(), ControlError> {
        if self.config.notifications.is_empty() {
            return Ok(());
        }
        for channel in &self.config.notifications {
            if channel
                .secret_store
                .as_ref()
                .is_some_and(|s| s.kind() == apono_core::SecretStoreKind::Apono)
            {
                warn!(
                    channel = %channel.name,
                    "the notification channel's secret is written inline in the configuration; \
                     not recommended for production, use a secret manager"
                );
            }
        }
        if self.ledger.store().backend() == Backend::Sqlite {
            self.ledger.void_notification_leases().await?;
        }
        while !shutdown.is_cancelled() {
            let now = now_ms();
            let claimed = match self
                .ledger
                .claim_notifications(now, now + self.lease_ms(), BATCH)
                .await
            {
                Ok(claimed) => claimed,
                Err(e) => {
                    warn!(error = %e, "claiming notifications failed; trying again shortly");
                    Vec::new()
                }
            };
            if claimed.is_empty() {
                let next = self.ledger.next_notification_due().await.ok().flatten();
                let wait = next.map_or(IDLE_MS, |due| (due - now_ms()).clamp(0, IDLE_MS));
                tokio::select! {
                    () = shutdown.cancelled() => {}
                    () = self.ledger.routes().rung() => {}
                    () = tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))) => {}
                }
                continue;
            }
            let mut tasks = tokio::task::JoinSet::new();
            for one in claimed {
                let worker = self.clone();
                tasks.spawn(async move { worker.deliver(one).await });
            }
            while let Some(done) = tasks.join_next().await {
                match done {
                    Ok(Err(e)) => warn!(error = %e, "recording a notification failed"),
                    Err(e) => warn!(error = %e, "a notification task failed"),
                    Ok(Ok(())) => {}
                }
            }
        }
        Ok(())
    }

    /// One attempt at `claimed`, and its outcome written (fenced by its lease).
    async fn deliver(&self, claimed: Claimed) -> Result<(), ControlError> {
        let outcome = self.attempt(&claimed).await;
        let label = match &outcome {
            Outcome::Done => "done",
            Outcome::Retry { .. } => "retry",
            Outcome::GiveUp { .. } => "given up",
        };
        let held = self.ledger.notification_outcome(&claimed, outcome).await?;
        debug!(notification = %claimed.id, channel = %claimed.channel, event = %claimed.event, outcome = label, held, "notification attempt");
        Ok(())
    }

    async fn attempt(&self, claimed: &Claimed) -> Outcome {
        let give_up = |error: String| Outcome::GiveUp { error };
        let Some(settings) = self
            .config
            .notifications
            .iter()
            .find(|c| c.name == claimed.channel)
        else {
            return give_up(format!("channel {:?} is not configured", claimed.channel));
        };
        let Some(channel) = self.channels.get(&claimed.channel) else {
            return give_up(format!(
                "channel {:?} was not built by this connector",
                claimed.channel
            ));
        };
        let failed = |error: String| {
            let attempts = claimed.attempts + 1;
            if attempts >= i64::from(settings.max_attempts) {
                Outcome::GiveUp { error }
            } else {
                Outcome::Retry {
                    error,
                    due_at: now_ms() + backoff_ms(&self.config.connector, attempts),
                }
            }
        };
        let message = match self.message(claimed).await {
            Ok(Some(message)) => message,
            Ok(None) => return Outcome::Done, // nothing left to tell
            Err(e) => return failed(apono_core::error_chain(&e)),
        };
        let secret = match &settings.secret_store {
            Some(reference) => match self.executor.resolver().resolve(reference).await {
                Ok(secret) => secret,
                Err(e) => {
                    return failed(format!(
                        "reading the channel's secret: {}",
                        apono_core::error_chain(&e)
                    ));
                }
            },
            None => SecretValue::new(),
        };
        match tokio::time::timeout(settings.timeout.0, channel.deliver(&message, &secret)).await {
            Ok(Ok(())) => Outcome::Done,
            Ok(Err(e)) if e.is_permanent() => give_up(apono_core::error_chain(&e)),
            Ok(Err(e)) => failed(apono_core::error_chain(&e)),
            Err(_) => failed(format!("no answer within {}", settings.timeout)),
        }
    }

    /// The message of `claimed`, from the request and session as they are now; `None` when
    /// there is nothing left to tell (the subject is gone, or a session's end moved since a
    /// `session.expiring` was queued).
    async fn message(&self, claimed: &Claimed) -> Result<Option<Notification>, ControlError> {
        let session = if claimed.event.is_session() {
            let Some(session) = self.ledger.session(&claimed.subject).await? else {
                return Ok(None);
            };
            if claimed.event == Event::SessionExpiring
                && (session.status != apono_core::GrantStatus::Active
                    || session.expires_at.map(|t| t.timestamp_millis()) != claimed.expires_at)
            {
                return Ok(None);
            }
            Some(session)
        } else {
            None
        };
        let request_id = session
            .as_ref()
            .map_or(claimed.subject.as_str(), |s| s.request_id.as_str());
        let Some(request) = self.ledger.request(request_id).await? else {
            return Ok(None);
        };
        let recipients = self
            .recipients(claimed.event, &request, session.as_ref())
            .await?;
        let mut message = Notification::new(
            claimed.id.clone(),
            claimed.event,
            ts(claimed.occurred_at),
            self.config.connector.id.clone(),
            request_facts(&request),
        );
        message.recipients = recipients;
        message.session = session.as_ref().map(session_facts);
        Ok(Some(message))
    }

    /// Who `event` is for: the approvers who may approve now, the requester (the grantee),
    /// or the admins.
    async fn recipients(
        &self,
        event: Event,
        request: &AccessRequest,
        session: Option<&AccessSession>,
    ) -> Result<Vec<String>, ControlError> {
        Ok(match event {
            Event::RequestPending => {
                let policy = Policy::new(&self.config);
                let mut inventory = self.ledger.inventory().await?;
                inventory.retain(|name, _| self.config.integration(name).is_some());
                let route = policy.request_route(request, &inventory);
                self.people()
                    .await
                    .iter()
                    .filter(|u| policy.awaits_approval_of(u, request, route.as_ref()))
                    .map(|u| u.email.clone())
                    .collect()
            }
            Event::SessionRevokeFailed => self
                .people()
                .await
                .iter()
                .filter(|u| u.admin)
                .map(|u| u.email.clone())
                .collect(),
            _ => vec![session.map_or_else(|| request.requester.clone(), |s| s.grantee.clone())],
        })
    }

    /// Everyone a notification may be for: the configuration's `[[users]]`, then the people
    /// signed in through an identity provider who are still users, with their groups as the
    /// provider says now (refreshed when older than `groups_max_age`, as for any call). One
    /// whose groups cannot be read is left out of this notification, with a warning.
    async fn people(&self) -> Vec<User> {
        let mut people = self.config.users.clone();
        let Some(plane) = self.plane.upgrade() else {
            return people;
        };
        let signed_in = match plane.sso_users().await {
            Ok(emails) => emails,
            Err(e) => {
                warn!(error = %e, "cannot list the people signed in through an identity provider");
                return people;
            }
        };
        let mut signed_in: Vec<String> = signed_in.into_iter().collect();
        signed_in.sort();
        for email in signed_in {
            if let Some(known) = people
                .iter_mut()
                .find(|u| u.email.eq_ignore_ascii_case(&email))
            {
                // A static user who is also the provider's (`same_person`): the merged groups.
                if let Ok(Some(now)) = plane.current_user(&known.email.clone()).await {
                    *known = now;
                }
                continue;
            }
            match plane.current_user(&email).await {
                Ok(Some(user)) => people.push(user),
                Ok(None) => {}
                Err(e) => {
                    warn!(error = %e, "cannot read a signed-in user's groups; left out of a notification")
                }
            }
        }
        people
    }
}

fn request_facts(r: &AccessRequest) -> RequestFacts {
    RequestFacts {
        id: r.id.clone(),
        status: r.status.to_string(),
        requester: r.requester.clone(),
        flow: r.flow.clone(),
        integration: r.integration.clone(),
        resource_type: r.resource_type.clone(),
        resource_ids: r.resource_ids.clone(),
        permission: r.permission.clone(),
        justification: r.justification.clone(),
        duration_seconds: r.duration_seconds,
        decided_by: r.decided_by.clone(),
        reason: r.reason.clone(),
    }
}

fn session_facts(s: &AccessSession) -> SessionFacts {
    SessionFacts {
        id: s.id.clone(),
        status: s.status.to_string(),
        grantee: s.grantee.clone(),
        resource_id: s.resource_id.clone(),
        expires_at: s.expires_at,
        last_error: s.last_error.clone(),
    }
}
