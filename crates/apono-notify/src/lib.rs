//! Notifications of the Apono connector: what a notification says ([`Notification`], JSON
//! schema [`SCHEMA`]), how each channel delivers it, and the signatures around them.
//!
//! * [`Notification`] and [`Event`]: the versioned message (the generic webhook's body, and
//!   what Slack messages and emails are rendered from).
//! * [`signature`]: HMAC-SHA256 signatures: the webhook's (`Apono-Signature`, over timestamp
//!   and body) and Slack's request signature (`X-Slack-Signature`, five-minute window).
//! * [`slack`]: Block Kit messages with Approve / Reject buttons, and the parsing of Slack's
//!   interactivity payloads.
//! * [`Deliver`]: the one trait every channel implements; [`WebhookChannel`] (feature
//!   `webhook`), [`SlackChannel`] (feature `slack`), [`EmailChannel`] (feature `email`, SMTP with
//!   STARTTLS through lettre).
//!
//! This crate keeps no state and never retries: the connector's control plane keeps each
//! notification in its ledger's outbox, retries with backoff and leases each delivery to one
//! replica; a channel is asked to deliver one message once per attempt. Channel secrets (the
//! webhook's signing key, Slack's webhook URL, the SMTP password) are handed to each call,
//! read from a secret store for that attempt, and never logged or shown in errors.
//!
//! # Example
//!
//! ```no_run
//! # #[cfg(feature = "webhook")]
//! # async fn send(message: apono_notify::Notification) -> Result<(), apono_notify::DeliveryError> {
//! use apono_core::SecretValue;
//! use apono_notify::{Deliver, WebhookChannel};
//!
//! let channel = WebhookChannel::new("https://hooks.example.com/apono".parse().unwrap(),
//!     std::time::Duration::from_secs(10))?;
//! let secret = SecretValue::new().with("signing_key", "a long random key");
//! channel.deliver(&message, &secret).await
//! # }
//! ```
//!
//! # What is proven, against what
//!
//! Signatures against Slack's documented example; the webhook's and Slack's signatures, the
//! Block Kit message and the SMTP delivery (STARTTLS, plain text and HTML) against independent
//! receivers written in Python (`hmac`, `aiosmtpd`) by the repository's end-to-end tests.

#[cfg(feature = "email")]
mod email;
mod message;
pub mod signature;
pub mod slack;
#[cfg(feature = "webhook")]
mod webhook;

use std::fmt;

use apono_core::SecretValue;
use async_trait::async_trait;

#[cfg(feature = "email")]
pub use email::{EmailChannel, EmailSettings};
pub use message::{Event, Notification, RequestFacts, SCHEMA, SessionFacts, UnknownEvent};
#[cfg(feature = "slack")]
pub use slack::{SLACK_API_URL, SlackChannel};
#[cfg(feature = "webhook")]
pub use webhook::WebhookChannel;

/// A boxed error source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A channel: delivers one [`Notification`] per call.
///
/// A call may be repeated with the same message (the same [`Notification::id`]) after a
/// failure or a crash of the caller: channels pass the id on where the receiver can drop
/// repeats (the webhook's `Apono-Delivery-Id`, the email's `Message-ID`). Cancel-safe: dropping
/// the future abandons the attempt, which counts as failed.
#[async_trait]
pub trait Deliver: Send + Sync + fmt::Debug + 'static {
    /// Delivers `message`. `secret` holds the channel's secret fields, read from its secret
    /// store for this attempt.
    async fn deliver(
        &self,
        message: &Notification,
        secret: &SecretValue,
    ) -> Result<(), DeliveryError>;

    /// Answers a button press on a message this channel posted, through the `response_url`
    /// Slack gave with it: `replace` replaces the message (buttons included) by `text`;
    /// otherwise `text` is shown to the presser alone. Only Slack channels can; the others
    /// answer [`DeliveryError::Unsupported`].
    async fn respond(
        &self,
        response_url: &str,
        text: &str,
        replace: bool,
    ) -> Result<(), DeliveryError> {
        let _ = (response_url, text, replace);
        Err(DeliveryError::Unsupported)
    }

    /// Who a Slack user is: the email address of member `user_id` (`U…`), asked of Slack's
    /// Web API (`users.info`) with the bot token in the secret's field `bot_token`. `None`
    /// when Slack knows the member but gives no address the connector may trust: a
    /// deactivated account, a bot, an unconfirmed address, or a token without the
    /// `users:read.email` scope. Only Slack channels can; the others answer
    /// [`DeliveryError::Unsupported`].
    async fn user_email(
        &self,
        user_id: &str,
        secret: &SecretValue,
    ) -> Result<Option<String>, DeliveryError> {
        let _ = (user_id, secret);
        Err(DeliveryError::Unsupported)
    }
}

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// The receiver answered with a status other than 2xx.
    #[error("the receiver answered HTTP {status}")]
    Status {
        /// The HTTP status.
        status: u16,
    },
    /// The receiver could not be reached or did not answer in time.
    #[error("the receiver could not be reached")]
    Transport(#[source] BoxError),
    /// The channel's secret lacks a field it needs.
    #[error("the channel's secret has no field {0:?}")]
    MissingSecret(&'static str),
    /// The channel's settings or the message cannot be used (an address, a certificate).
    #[error("the message could not be built: {0}")]
    Invalid(String),
    /// The SMTP server refused the message or the session.
    #[error("the SMTP server refused the message")]
    Smtp(#[source] BoxError),
    /// The channel cannot do this.
    #[error("the channel does not support this")]
    Unsupported,
    /// Slack's Web API answered `{"ok": false}` with this error code (`invalid_auth`,
    /// `user_not_found`, …).
    #[error("Slack's Web API answered {0}")]
    SlackApi(String),
}

impl DeliveryError {
    /// Whether trying again cannot help (a 4xx other than 408 and 429, a missing secret
    /// field, an invalid setting): the notification is then given up at once.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Status { status } => {
                (400..500).contains(status) && *status != 408 && *status != 429
            }
            Self::MissingSecret(_) | Self::Invalid(_) | Self::Unsupported => true,
            Self::SlackApi(code) => code != "ratelimited" && code != "internal_error",
            Self::Transport(_) | Self::Smtp(_) => false,
        }
    }
}

/// A field of a channel's secret.
#[cfg(any(feature = "webhook", feature = "slack"))]
pub(crate) fn field<'a>(
    secret: &'a SecretValue,
    name: &'static str,
) -> Result<&'a secrecy::SecretString, DeliveryError> {
    secret.get(name).ok_or(DeliveryError::MissingSecret(name))
}

/// An HTTP client for the webhook and Slack channels: no redirects (a signed body is never
/// re-sent elsewhere), a deadline per attempt.
#[cfg(any(feature = "webhook", feature = "slack"))]
pub(crate) fn http_client(timeout: std::time::Duration) -> Result<reqwest::Client, DeliveryError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| DeliveryError::Invalid(format!("building the HTTP client: {e}")))
}

/// Sends a JSON POST; 2xx is success. Errors never carry the URL (Slack's is a secret).
#[cfg(any(feature = "webhook", feature = "slack"))]
pub(crate) async fn post(request: reqwest::RequestBuilder) -> Result<(), DeliveryError> {
    let response = request
        .send()
        .await
        .map_err(|e| DeliveryError::Transport(Box::new(e.without_url())))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(DeliveryError::Status {
            status: status.as_u16(),
        })
    }
}

/// Escapes text for HTML.
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The plain-text and HTML bodies of a notification (emails).
pub fn render_text_and_html(message: &Notification) -> (String, String) {
    let headline = message.headline();
    let mut text = format!("{headline}\n\n");
    let mut html = format!(
        "<!DOCTYPE html><html><body><p><strong>{}</strong></p><table>",
        html_escape(&headline)
    );
    for (label, value) in message.facts() {
        text.push_str(&format!("{label}: {value}\n"));
        html.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            html_escape(label),
            html_escape(&value)
        ));
    }
    text.push_str(&format!(
        "\nEvent: {} (notification {})\n",
        message.event, message.id
    ));
    html.push_str(&format!(
        "</table><p><small>Event {} &middot; notification {}</small></p></body></html>",
        html_escape(message.event.as_str()),
        html_escape(&message.id)
    ));
    (text, html)
}
