//! Slack: the Block Kit message a notification becomes (with Approve / Reject buttons on
//! `request.pending`), the interactivity payload a button press sends back, and (feature
//! `slack`) the incoming-webhook channel.
//!
//! A button carries the request id as its `value` and [`APPROVE_ACTION`] or
//! [`REJECT_ACTION`] as its `action_id`; the connector's interactivity endpoint checks Slack's
//! signature ([`crate::signature::verify_slack`]), then [`parse_interaction`] reads the press.

use serde_json::{Value, json};

use crate::{Event, Notification};

/// The `action_id` of the Approve button.
pub const APPROVE_ACTION: &str = "apono.approve";
/// The `action_id` of the Reject button.
pub const REJECT_ACTION: &str = "apono.reject";

/// Escapes text for Slack's `mrkdwn` and `plain_text` (`&`, `<`, `>`), so that a
/// justification cannot mention `@channel` or forge a link.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Block Kit message for `message`: the headline, the request's facts as fields, and, for
/// `request.pending`, Approve and Reject buttons carrying the request id.
pub fn message(message: &Notification) -> Value {
    let headline = escape(&message.headline());
    let fields: Vec<Value> = message
        .facts()
        .into_iter()
        .take(10) // Slack's limit of fields per section
        .map(|(label, value)| {
            json!({ "type": "mrkdwn", "text": format!("*{label}*\n{}", escape(&value)) })
        })
        .collect();
    let mut blocks = vec![
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": format!("*{headline}*") } }),
        json!({ "type": "section", "fields": fields }),
    ];
    if !message.recipients.is_empty() {
        blocks.push(json!({
            "type": "context",
            "elements": [{ "type": "mrkdwn", "text": format!("For: {}", escape(&message.recipients.join(", "))) }],
        }));
    }
    if message.event == Event::RequestPending {
        blocks.push(json!({
            "type": "actions",
            "block_id": "apono.decision",
            "elements": [
                {
                    "type": "button",
                    "action_id": APPROVE_ACTION,
                    "style": "primary",
                    "text": { "type": "plain_text", "text": "Approve" },
                    "value": message.request.id,
                },
                {
                    "type": "button",
                    "action_id": REJECT_ACTION,
                    "style": "danger",
                    "text": { "type": "plain_text", "text": "Reject" },
                    "value": message.request.id,
                },
            ],
        }));
    }
    json!({ "text": headline, "blocks": blocks })
}

/// The answer to a button press, posted to its `response_url`: with `replace`, a message
/// that replaces the original (its buttons gone); otherwise an ephemeral message to the presser
/// alone, the original kept for the other approvers.
pub fn response(text: &str, replace: bool) -> Value {
    let blocks = json!([{ "type": "section", "text": { "type": "mrkdwn", "text": escape(text) } }]);
    if replace {
        json!({ "replace_original": true, "text": escape(text), "blocks": blocks })
    } else {
        json!({ "response_type": "ephemeral", "replace_original": false, "text": escape(text), "blocks": blocks })
    }
}

/// Which button was pressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Approve.
    Approve,
    /// Reject.
    Reject,
}

/// A button press, from Slack's `block_actions` payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interaction {
    /// The Slack user who pressed (`U…`).
    pub user_id: String,
    /// The Slack workspace (`T…`), when given.
    pub team_id: Option<String>,
    /// Approve or Reject.
    pub decision: Decision,
    /// The request id the button carries.
    pub request_id: String,
    /// Where to post the replacement message, when given.
    pub response_url: Option<String>,
}

/// Why a payload is not a button press of ours.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an Apono button press: {0}")]
pub struct InteractionError(pub &'static str);

/// Reads a button press from the raw body Slack posts (`application/x-www-form-urlencoded`
/// with one field, `payload`, holding JSON).
pub fn parse_interaction(body: &[u8]) -> Result<Interaction, InteractionError> {
    let payload = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or(InteractionError("no payload field"))?;
    let payload: Value =
        serde_json::from_str(&payload).map_err(|_| InteractionError("the payload is not JSON"))?;
    if payload["type"] != "block_actions" {
        return Err(InteractionError("not a block_actions payload"));
    }
    let user_id = payload["user"]["id"]
        .as_str()
        .ok_or(InteractionError("no user id"))?
        .to_owned();
    let action = payload["actions"]
        .as_array()
        .and_then(|a| a.first())
        .ok_or(InteractionError("no action"))?;
    let decision = match action["action_id"].as_str() {
        Some(APPROVE_ACTION) => Decision::Approve,
        Some(REJECT_ACTION) => Decision::Reject,
        _ => return Err(InteractionError("an unknown action")),
    };
    let request_id = action["value"]
        .as_str()
        .filter(|v| !v.is_empty())
        .ok_or(InteractionError("no request id"))?
        .to_owned();
    Ok(Interaction {
        user_id,
        team_id: payload["team"]["id"].as_str().map(str::to_owned),
        decision,
        request_id,
        response_url: payload["response_url"].as_str().map(str::to_owned),
    })
}

#[cfg(feature = "slack")]
mod channel {
    use std::time::Duration;

    use apono_core::SecretValue;
    use async_trait::async_trait;
    use secrecy::ExposeSecret;

    use crate::{Deliver, DeliveryError, Notification, field, http_client, post};

    /// Slack's Web API.
    pub const SLACK_API_URL: &str = "https://slack.com/api/";

    /// Posts Block Kit messages to a Slack incoming webhook, whose URL (a secret: whoever
    /// holds it posts to the channel) is the secret's field `webhook_url`; asks the Web API
    /// who a member is (`users.info`, with the secret's field `bot_token`).
    #[derive(Debug, Clone)]
    pub struct SlackChannel {
        client: reqwest::Client,
        api: url::Url,
    }

    impl SlackChannel {
        /// A channel whose attempts are bounded by `timeout`, calling Slack's Web API at
        /// [`SLACK_API_URL`].
        pub fn new(timeout: Duration) -> Result<Self, DeliveryError> {
            Self::with_api(timeout, SLACK_API_URL)
        }

        /// A channel calling the Web API at `api` (a proxy, or a test's fake), whose methods
        /// are `{api}users.info` and so on.
        pub fn with_api(timeout: Duration, api: &str) -> Result<Self, DeliveryError> {
            let mut api: url::Url = api
                .parse()
                .map_err(|_| DeliveryError::Invalid("the Slack API URL is not a URL".into()))?;
            if !api.path().ends_with('/') {
                let path = format!("{}/", api.path());
                api.set_path(&path);
            }
            Ok(Self {
                client: http_client(timeout)?,
                api,
            })
        }
    }

    /// The part of `users.info`'s answer the connector reads.
    #[derive(serde::Deserialize)]
    struct UsersInfo {
        ok: bool,
        #[serde(default)]
        error: Option<String>,
        #[serde(default)]
        user: Option<Member>,
    }

    #[derive(serde::Deserialize)]
    struct Member {
        #[serde(default)]
        deleted: bool,
        #[serde(default)]
        is_bot: bool,
        /// Only `true` is trusted: an absent field is an address nobody confirmed.
        #[serde(default)]
        is_email_confirmed: bool,
        #[serde(default)]
        profile: Profile,
    }

    #[derive(serde::Deserialize, Default)]
    struct Profile {
        #[serde(default)]
        email: Option<String>,
    }

    #[async_trait]
    impl Deliver for SlackChannel {
        async fn deliver(
            &self,
            message: &Notification,
            secret: &SecretValue,
        ) -> Result<(), DeliveryError> {
            let url = field(secret, "webhook_url")?;
            let url: url::Url = url
                .expose_secret()
                .parse()
                .map_err(|_| DeliveryError::Invalid("webhook_url is not a URL".into()))?;
            post(self.client.post(url).json(&super::message(message))).await
        }

        async fn respond(
            &self,
            response_url: &str,
            text: &str,
            replace: bool,
        ) -> Result<(), DeliveryError> {
            let url: url::Url = response_url
                .parse()
                .map_err(|_| DeliveryError::Invalid("response_url is not a URL".into()))?;
            post(self.client.post(url).json(&super::response(text, replace))).await
        }

        async fn user_email(
            &self,
            user_id: &str,
            secret: &SecretValue,
        ) -> Result<Option<String>, DeliveryError> {
            let token = field(secret, "bot_token")?;
            let url = self
                .api
                .join("users.info")
                .map_err(|_| DeliveryError::Invalid("the Slack API URL cannot be joined".into()))?;
            // As Slack's own SDK calls every method: a form POST, the token in the header.
            let response = self
                .client
                .post(url)
                .bearer_auth(token.expose_secret())
                .form(&[("user", user_id)])
                .send()
                .await
                .map_err(|e| DeliveryError::Transport(Box::new(e.without_url())))?;
            let status = response.status();
            if !status.is_success() {
                return Err(DeliveryError::Status {
                    status: status.as_u16(),
                });
            }
            let answer: UsersInfo = response
                .json()
                .await
                .map_err(|e| DeliveryError::Transport(Box::new(e.without_url())))?;
            if !answer.ok {
                // Only a code's safe characters reach the log: an answer cannot forge lines.
                let code: String = answer
                    .error
                    .unwrap_or_default()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(60)
                    .collect();
                return Err(DeliveryError::SlackApi(if code.is_empty() {
                    "an error without a code".into()
                } else {
                    code
                }));
            }
            let Some(member) = answer.user else {
                return Err(DeliveryError::SlackApi("an answer without a user".into()));
            };
            if member.deleted || member.is_bot || !member.is_email_confirmed {
                return Ok(None);
            }
            Ok(member.profile.email.filter(|e| e.contains('@')))
        }
    }
}

#[cfg(feature = "slack")]
pub use channel::{SLACK_API_URL, SlackChannel};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_button_press_is_read_and_anything_else_refused() {
        let payload = json!({
            "type": "block_actions",
            "user": { "id": "U123" },
            "team": { "id": "T9" },
            "actions": [{ "action_id": APPROVE_ACTION, "value": "req_abc" }],
            "response_url": "https://hooks.slack.com/actions/x",
        });
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish();
        let got = parse_interaction(body.as_bytes()).expect("a press");
        assert_eq!(got.user_id, "U123");
        assert_eq!(got.decision, Decision::Approve);
        assert_eq!(got.request_id, "req_abc");
        assert!(parse_interaction(b"payload=%7B%7D").is_err());
        assert!(parse_interaction(b"nothing=1").is_err());
    }

    #[test]
    fn text_cannot_mention_or_link() {
        assert_eq!(
            escape("<!channel> & <http://x|y>"),
            "&lt;!channel&gt; &amp; &lt;http://x|y&gt;"
        );
    }
}
