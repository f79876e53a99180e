//! The notification message: what happened ([`Event`]), to whom, about which request and
//! session. Its JSON form is the body of the generic webhook, versioned by [`SCHEMA`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The name and version of the message's JSON schema, carried in its `schema` field. A change
/// that removes or renames a field, or changes a field's meaning, gets a new version.
pub const SCHEMA: &str = "apono.notification.v1";

/// What a notification tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Event {
    /// A request awaits approval (sent to the approvers who may approve it now).
    #[serde(rename = "request.pending")]
    RequestPending,
    /// A request was approved (to the requester).
    #[serde(rename = "request.approved")]
    RequestApproved,
    /// A request was rejected (to the requester).
    #[serde(rename = "request.rejected")]
    RequestRejected,
    /// A session's access is active on its target (to the grantee).
    #[serde(rename = "session.active")]
    SessionActive,
    /// A session's access ends soon (to the grantee).
    #[serde(rename = "session.expiring")]
    SessionExpiring,
    /// A session's access was revoked (to the grantee).
    #[serde(rename = "session.ended")]
    SessionEnded,
    /// A session's revoke keeps failing: it is `RevokeFailed` and still retried (to admins).
    #[serde(rename = "session.revoke_failed")]
    SessionRevokeFailed,
}

impl Event {
    /// Every event.
    pub const ALL: [Self; 7] = [
        Self::RequestPending,
        Self::RequestApproved,
        Self::RequestRejected,
        Self::SessionActive,
        Self::SessionExpiring,
        Self::SessionEnded,
        Self::SessionRevokeFailed,
    ];

    /// The event's name, as in the message and the configuration.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RequestPending => "request.pending",
            Self::RequestApproved => "request.approved",
            Self::RequestRejected => "request.rejected",
            Self::SessionActive => "session.active",
            Self::SessionExpiring => "session.expiring",
            Self::SessionEnded => "session.ended",
            Self::SessionRevokeFailed => "session.revoke_failed",
        }
    }

    /// Whether the event is about a session (its subject is a session id) rather than a request.
    pub const fn is_session(self) -> bool {
        matches!(
            self,
            Self::SessionActive
                | Self::SessionExpiring
                | Self::SessionEnded
                | Self::SessionRevokeFailed
        )
    }

    /// A short sentence for people: the first line of an email or a Slack message.
    pub fn headline(self, message: &Notification) -> String {
        let r = &message.request;
        match self {
            Self::RequestPending => format!(
                "{} asks for {} on {} ({})",
                r.requester,
                r.permission,
                r.resource_ids.join(", "),
                r.integration
            ),
            Self::RequestApproved => format!(
                "Your request {} was approved{}",
                r.id,
                r.decided_by
                    .as_deref()
                    .map(|d| format!(" by {d}"))
                    .unwrap_or_default()
            ),
            Self::RequestRejected => format!(
                "Your request {} was rejected{}",
                r.id,
                r.decided_by
                    .as_deref()
                    .map(|d| format!(" by {d}"))
                    .unwrap_or_default()
            ),
            Self::SessionActive => format!(
                "Your access to {} ({}) is active",
                session_resource(message),
                r.integration
            ),
            Self::SessionExpiring => format!(
                "Your access to {} ({}) ends soon",
                session_resource(message),
                r.integration
            ),
            Self::SessionEnded => format!(
                "Your access to {} ({}) has ended",
                session_resource(message),
                r.integration
            ),
            Self::SessionRevokeFailed => format!(
                "Revoking {}'s access to {} ({}) keeps failing",
                message
                    .session
                    .as_ref()
                    .map_or(r.requester.as_str(), |s| s.grantee.as_str()),
                session_resource(message),
                r.integration
            ),
        }
    }
}

fn session_resource(message: &Notification) -> String {
    message.session.as_ref().map_or_else(
        || message.request.resource_ids.join(", "),
        |s| s.resource_id.clone(),
    )
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event name that is not one of [`Event::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown notification event {0:?}")]
pub struct UnknownEvent(pub String);

impl FromStr for Event {
    type Err = UnknownEvent;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == text)
            .ok_or_else(|| UnknownEvent(text.to_owned()))
    }
}

/// One notification: the body of a webhook delivery, and what Slack messages and emails are
/// rendered from. Schema [`SCHEMA`]; see `docs/notifications.md` for every field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// The delivery id: the same on every attempt to deliver this notification through this
    /// channel, so a receiver drops the ones it has seen.
    pub id: String,
    /// What happened.
    pub event: Event,
    /// When it happened (committed in the ledger).
    pub occurred_at: DateTime<Utc>,
    /// The connector's id.
    pub connector: String,
    /// Who the notification is for (emails): the approvers who may approve now, the requester,
    /// or the admins, depending on the event.
    pub recipients: Vec<String>,
    /// The request, as it is when the notification is sent.
    pub request: RequestFacts,
    /// The session, for `session.*` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionFacts>,
}

impl Notification {
    /// A new message of schema [`SCHEMA`].
    pub fn new(
        id: impl Into<String>,
        event: Event,
        occurred_at: DateTime<Utc>,
        connector: impl Into<String>,
        request: RequestFacts,
    ) -> Self {
        Self {
            schema: SCHEMA.to_owned(),
            id: id.into(),
            event,
            occurred_at,
            connector: connector.into(),
            recipients: Vec::new(),
            request,
            session: None,
        }
    }

    /// The headline ([`Event::headline`]).
    pub fn headline(&self) -> String {
        self.event.headline(self)
    }

    /// The facts as `(label, value)` lines, for plain text, HTML and Slack fields.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let r = &self.request;
        let mut facts = vec![
            ("Request", r.id.clone()),
            ("Requester", r.requester.clone()),
            ("Integration", r.integration.clone()),
            ("Resource type", r.resource_type.clone()),
            ("Resources", r.resource_ids.join(", ")),
            ("Permission", r.permission.clone()),
            (
                "Duration",
                apono_core::format_duration(std::time::Duration::from_secs(
                    u64::try_from(r.duration_seconds).unwrap_or(0),
                )),
            ),
            ("Status", r.status.clone()),
        ];
        if !r.justification.is_empty() {
            facts.push(("Justification", r.justification.clone()));
        }
        if let Some(reason) = &r.reason {
            facts.push(("Reason", reason.clone()));
        }
        if let Some(s) = &self.session {
            facts.push(("Session", s.id.clone()));
            facts.push(("Session status", s.status.clone()));
            if let Some(at) = s.expires_at {
                facts.push(("Ends", at.to_rfc3339()));
            }
        }
        facts
    }
}

/// The request a notification is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestFacts {
    /// Request id.
    pub id: String,
    /// Apono request status (`Pending`, `Granting`, `Active`, `Rejected`, …).
    pub status: String,
    /// Who asked (email).
    pub requester: String,
    /// The access flow that allowed it.
    pub flow: String,
    /// Integration name.
    pub integration: String,
    /// Resource type.
    pub resource_type: String,
    /// Resource ids.
    pub resource_ids: Vec<String>,
    /// Permission.
    pub permission: String,
    /// Why (may be empty).
    pub justification: String,
    /// Requested duration in seconds.
    pub duration_seconds: i64,
    /// Who approved or rejected, once decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The approver's or rejecter's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The session (grant) a `session.*` notification is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFacts {
    /// Session (grant) id.
    pub id: String,
    /// Apono grant status.
    pub status: String,
    /// The grantee (email).
    pub grantee: String,
    /// Resource id.
    pub resource_id: String,
    /// When access ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The last failure of an action on it (revoke failures).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}
