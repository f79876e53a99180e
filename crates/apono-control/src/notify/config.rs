//! `[[notifications]]`: the notification channels and the events routed to each.
//!
//! ```toml
//! [[notifications]]
//! name = "ops-webhook"
//! type = "webhook"
//! url = "https://hooks.example.com/apono"
//! events = ["request.pending", "session.revoke_failed"]
//! secret_store = { kubernetes = { namespace = "apono", name = "notify-webhook" } }
//! ```
//!
//! Who receives an event is fixed by the event (the approvers who may approve now, the
//! requester, or the admins); a channel chooses which events it carries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use apono_notify::Event;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::config::{HumanDuration, User};

/// How a channel delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelType {
    /// A signed JSON POST (schema `apono.notification.v1`).
    Webhook,
    /// A Slack incoming webhook, Block Kit with Approve / Reject buttons.
    Slack,
    /// Email over SMTP with STARTTLS.
    Email,
}

fn default_expiring_before() -> HumanDuration {
    HumanDuration(Duration::from_secs(15 * 60))
}
fn default_max_attempts() -> u32 {
    12
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_smtp_port() -> u16 {
    587
}

/// `[[notifications]]`: one channel.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationChannel {
    /// Unique name (kept with each queued notification).
    pub name: String,
    /// `webhook`, `slack` or `email`.
    #[serde(rename = "type")]
    pub channel_type: ChannelType,
    /// The events it carries (empty, the default: every event).
    #[serde(default)]
    pub events: Vec<String>,
    /// Where the channel's secret is kept (same shape as an integration's `secret_store`):
    /// `signing_key` (webhook), `webhook_url`, `signing_secret` and optionally `bot_token`
    /// (Slack), `username` and `password` (email, optional).
    #[serde(default)]
    #[schemars(with = "Option<BTreeMap<String, serde_json::Value>>")]
    pub secret_store: Option<apono_core::SecretStoreRef>,
    /// Webhook: the receiver's URL.
    #[serde(default)]
    pub url: Option<String>,
    /// Slack: Slack user ids (`U…`) and the connector users' emails they are. A member not
    /// listed is looked up in Slack (`users.info`) when the secret has a `bot_token`.
    #[serde(default)]
    pub slack_users: BTreeMap<String, String>,
    /// Slack: the Web API's base URL, for `users.info` (default `https://slack.com/api/`;
    /// `https` only, or `http` to a loopback address).
    #[serde(default)]
    pub slack_api_url: Option<String>,
    /// Email: the SMTP server's host name.
    #[serde(default)]
    pub smtp_host: Option<String>,
    /// Email: the SMTP submission port.
    #[serde(default = "default_smtp_port")]
    pub smtp_port: u16,
    /// Email: extra trusted CA certificates (PEM file) for the SMTP server.
    #[serde(default)]
    pub smtp_ca_file: Option<PathBuf>,
    /// Email: the sender.
    #[serde(default)]
    pub from: Option<String>,
    /// How long before a session ends `session.expiring` is sent.
    #[serde(default = "default_expiring_before")]
    pub expiring_before: HumanDuration,
    /// Attempts after which a notification is given up (kept in the ledger, audited).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Deadline of one delivery attempt.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

impl NotificationChannel {
    /// The events it carries: those of `events`, or every event when it is empty (unknown
    /// names are refused when the configuration is read).
    pub fn routed(&self) -> BTreeSet<Event> {
        if self.events.is_empty() {
            return Event::ALL.into_iter().collect();
        }
        self.events.iter().filter_map(|e| e.parse().ok()).collect()
    }
}

/// Every problem of the `[[notifications]]` section, `(key, message)`.
///
/// A Slack user maps to a `[[users]]` entry, or to an email one of `providers` lets sign in
/// (that person acts once signed in, with the provider's groups).
pub(crate) fn check(
    channels: &[NotificationChannel],
    users: &[User],
    providers: &[crate::identity::config::IdentityProvider],
) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    let mut names = BTreeSet::new();
    for (i, c) in channels.iter().enumerate() {
        let key = format!("notifications[{i}] ({})", c.name);
        let mut problem = |k: &str, m: String| problems.push((format!("{key}{k}"), m));
        if !names.insert(c.name.as_str()) {
            problem(".name", "is used twice".into());
        }
        for e in &c.events {
            if let Err(err) = e.parse::<Event>() {
                problem(".events", err.to_string());
            }
        }
        let needs_secret = matches!(c.channel_type, ChannelType::Webhook | ChannelType::Slack);
        if needs_secret && c.secret_store.is_none() {
            problem(
                ".secret_store",
                "is required: it holds the channel's signing secret".into(),
            );
        }
        match c.channel_type {
            ChannelType::Webhook => match c.url.as_deref().map(url_is_http) {
                None => problem(".url", "is required for a webhook".into()),
                Some(false) => problem(".url", "must be an http or https URL".into()),
                Some(true) => {}
            },
            ChannelType::Slack => {
                if let Some(api) = &c.slack_api_url
                    && !api_url_is_safe(api)
                {
                    problem(
                        ".slack_api_url",
                        "must be an https URL (or http to a loopback address): the bot token is sent there".into(),
                    );
                }
                for (slack_id, email) in &c.slack_users {
                    let configured = users.iter().any(|u| u.email.eq_ignore_ascii_case(email));
                    let may_sign_in = providers.iter().any(|p| p.domain_allowed(email));
                    if !configured && !may_sign_in {
                        problem(
                            ".slack_users",
                            format!(
                                "{slack_id} maps to {email}, who is not a configured user and may not sign in through an identity provider"
                            ),
                        );
                    }
                }
            }
            ChannelType::Email => {
                if c.smtp_host.as_deref().is_none_or(str::is_empty) {
                    problem(".smtp_host", "is required for email".into());
                }
                if c.from.as_deref().is_none_or(|f| !f.contains('@')) {
                    problem(".from", "is required for email: a sender address".into());
                }
            }
        }
        let wrong_type = |present: bool, what: &str, only: &str| {
            present.then(|| {
                (
                    what.to_owned(),
                    format!("applies to type = \"{only}\" only"),
                )
            })
        };
        let extras = [
            wrong_type(
                c.url.is_some() && c.channel_type != ChannelType::Webhook,
                ".url",
                "webhook",
            ),
            wrong_type(
                (!c.slack_users.is_empty() || c.slack_api_url.is_some())
                    && c.channel_type != ChannelType::Slack,
                ".slack_users",
                "slack",
            ),
            wrong_type(
                (c.smtp_host.is_some() || c.from.is_some() || c.smtp_ca_file.is_some())
                    && c.channel_type != ChannelType::Email,
                ".smtp_host",
                "email",
            ),
        ];
        for (k, m) in extras.into_iter().flatten() {
            problem(&k, m);
        }
        if c.max_attempts == 0 {
            problem(".max_attempts", "must be at least 1".into());
        }
    }
    problems
}

/// An `https` URL, or an `http` one to a loopback address.
fn api_url_is_safe(text: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(text) else {
        return false;
    };
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => true,
        ("http", Some(url::Host::Ipv4(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Ipv6(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Domain(d))) => d.eq_ignore_ascii_case("localhost"),
        _ => false,
    }
}

fn url_is_http(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, rest)| {
        (scheme.eq_ignore_ascii_case("https") || scheme.eq_ignore_ascii_case("http"))
            && !rest.is_empty()
    })
}
