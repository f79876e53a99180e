//! Slack's interactivity: a press of a message's Approve or Reject button, posted by Slack to
//! `POST /api/v1/slack/{channel}/interactions`.
//!
//! 1. The request must carry Slack's signature under the channel's `signing_secret` (read from
//!    its secret store for this request), with a timestamp within five minutes of now.
//! 2. The Slack user id is mapped to a connector user through the channel's `slack_users`
//!    or, for a member not listed there when the channel's secret has a `bot_token`, through
//!    the email Slack's `users.info` gives (Slack's payload carries no email). A deactivated
//!    member, a bot or an unconfirmed address maps to no one; so does an email that is not a
//!    connector user who may act now. Whoever maps to no one decides nothing.
//! 3. The decision goes through [`ControlPlane::approve`] or [`ControlPlane::reject`] as that
//!    user, so every rule of the API holds (self-approval refused, `all_of` progress, the
//!    re-check against the configuration), and is audited the same way. A rejection from Slack
//!    carries the reason "rejected in Slack".
//! 4. Through the press's `response_url`: a decision replaces the message (its buttons gone)
//!    by what happened; a refusal, or an `all_of` approval others must complete, is shown to
//!    the presser alone, the buttons kept for the other approvers.

use std::sync::Arc;

use apono_notify::signature::{SignatureError, check_slack_timestamp, verify_slack};
use apono_notify::slack::{Decision, parse_interaction};
use secrecy::ExposeSecret;
use secrecy::SecretString;
use tracing::warn;

use super::ChannelType;
use crate::error::ControlError;
use crate::plane::ControlPlane;

/// What a button press did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SlackOutcome {
    /// `approved`, `recorded` (an `all_of` approval that others must complete), `rejected`
    /// or `refused`.
    pub outcome: &'static str,
    /// The request.
    pub request_id: String,
    /// The connector user the Slack user maps to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What the message now says.
    pub text: String,
}

impl ControlPlane {
    /// Handles a Slack button press on notification channel `channel`: `timestamp` and
    /// `signature` are the `X-Slack-Request-Timestamp` and `X-Slack-Signature` headers, `body`
    /// the raw body. A bad or stale signature is [`ControlError::Unauthenticated`]; a decision
    /// the rules refuse is an `Ok` with outcome `refused` (Slack shows the replaced message).
    pub async fn slack_interaction(
        self: &Arc<Self>,
        channel: &str,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<SlackOutcome, ControlError> {
        let settings = self
            .config()
            .notifications
            .iter()
            .find(|c| c.name == channel && c.channel_type == ChannelType::Slack)
            .ok_or_else(|| ControlError::NotFound(format!("Slack channel {channel}")))?;
        // What needs no secret first: a request that cannot be Slack's now never makes the
        // connector read its secret store.
        let now = chrono::Utc::now().timestamp();
        let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
            return Err(refused(channel, SignatureError::Malformed));
        };
        check_slack_timestamp(timestamp, now).map_err(|e| refused(channel, e))?;
        let reference = settings.secret_store.as_ref().ok_or_else(|| {
            ControlError::NotFound(format!("Slack channel {channel} has no secret store"))
        })?;
        let secret = self
            .executor()
            .resolver()
            .resolve(reference)
            .await
            .map_err(|e| {
                ControlError::Notification(format!(
                    "reading the Slack signing secret: {}",
                    apono_core::error_chain(&e)
                ))
            })?;
        let signing = secret.get("signing_secret").ok_or_else(|| {
            ControlError::Notification(
                "the Slack channel's secret has no field signing_secret".into(),
            )
        })?;
        let signing = SecretString::from(signing.expose_secret().to_owned());
        verify_slack(&signing, timestamp, signature, body, now).map_err(|e| refused(channel, e))?;
        let press =
            parse_interaction(body).map_err(|e| ControlError::Invalid(vec![e.to_string()]))?;
        // Who pressed: `slack_users`, else Slack's own answer (`users.info`) when the secret
        // has a bot token.
        let email = match settings.slack_users.get(&press.user_id) {
            Some(email) => Some(email.clone()),
            None => {
                self.slack_member_email(channel, &press.user_id, &secret)
                    .await
            }
        };
        // The person as they are now: a `[[users]]` entry, or someone signed in through an
        // identity provider with the provider's current groups (none once it disabled them).
        let user = match &email {
            Some(email) => match self.current_user(email).await {
                Ok(user) => user,
                Err(e) => {
                    warn!(channel, error = %e, "cannot read the groups of the Slack user's connector user");
                    None
                }
            },
            None => None,
        };
        let (outcome, text) = match &user {
            None => (
                "refused",
                format!(
                    "Slack user {} is not mapped to a connector user who may act now: nothing was decided",
                    press.user_id
                ),
            ),
            Some(user) => {
                let decided = match press.decision {
                    Decision::Approve => self.approve(user, &press.request_id, None).await,
                    Decision::Reject => {
                        self.reject(user, &press.request_id, "rejected in Slack")
                            .await
                    }
                };
                match (press.decision, decided) {
                    (Decision::Approve, Ok(r))
                        if r.status == apono_core::RequestStatus::Pending =>
                    {
                        (
                            "recorded",
                            format!(
                                "{} approved request {}; still waiting for {}",
                                user.email,
                                r.id,
                                r.awaiting.join(", ")
                            ),
                        )
                    }
                    (Decision::Approve, Ok(r)) => (
                        "approved",
                        format!("Request {} was approved by {}", r.id, user.email),
                    ),
                    (Decision::Reject, Ok(r)) => (
                        "rejected",
                        format!("Request {} was rejected by {}", r.id, user.email),
                    ),
                    (_, Err(e)) => (
                        "refused",
                        format!(
                            "{} could not decide request {}: {e}",
                            user.email, press.request_id
                        ),
                    ),
                }
            }
        };
        if let (Some(url), Some(channel)) =
            (&press.response_url, self.notification_channel(channel))
            && let Err(e) = channel
                .respond(url, &text, matches!(outcome, "approved" | "rejected"))
                .await
        {
            warn!(error = %apono_core::error_chain(&e), "replacing the Slack message failed");
        }
        Ok(SlackOutcome {
            outcome,
            request_id: press.request_id,
            user: user.map(|u| u.email),
            text,
        })
    }
}

impl ControlPlane {
    /// The email Slack gives for member `user_id` through the channel's `users.info` call,
    /// when its secret has a `bot_token`; `None` (logged) when there is no token, Slack
    /// cannot say, or says nothing the connector may trust.
    async fn slack_member_email(
        &self,
        channel: &str,
        user_id: &str,
        secret: &apono_core::SecretValue,
    ) -> Option<String> {
        secret.get("bot_token")?;
        let deliver = self.notification_channel(channel)?;
        match deliver.user_email(user_id, secret).await {
            Ok(Some(email)) => Some(email),
            Ok(None) => {
                warn!(
                    channel,
                    slack_user = user_id,
                    "Slack gives no confirmed email for this member (deactivated, a bot, unconfirmed, or the token lacks users:read.email)"
                );
                None
            }
            Err(e) => {
                warn!(channel, slack_user = user_id, error = %apono_core::error_chain(&e), "asking Slack who pressed failed");
                None
            }
        }
    }
}

/// A Slack request whose signature does not hold: logged, answered 401.
fn refused(channel: &str, error: SignatureError) -> ControlError {
    warn!(channel, error = %error, "a Slack interaction was refused");
    ControlError::Unauthenticated
}
