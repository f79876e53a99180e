//! The generic webhook: the [`Notification`] as JSON, POSTed and signed.

use std::time::Duration;

use apono_core::SecretValue;
use async_trait::async_trait;

use crate::signature::{
    WEBHOOK_DELIVERY_HEADER, WEBHOOK_EVENT_HEADER, WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TIMESTAMP_HEADER, webhook_signature,
};
use crate::{Deliver, DeliveryError, Notification, field, http_client, post};

/// POSTs each notification as JSON to one URL with `Apono-Delivery-Id`, `Apono-Event`,
/// `Apono-Timestamp` and `Apono-Signature` (see [`crate::signature`]); the secret's field
/// `signing_key` keys the signature.
#[derive(Debug, Clone)]
pub struct WebhookChannel {
    url: url::Url,
    client: reqwest::Client,
}

impl WebhookChannel {
    /// A channel to `url`, each attempt bounded by `timeout`.
    pub fn new(url: url::Url, timeout: Duration) -> Result<Self, DeliveryError> {
        Ok(Self {
            url,
            client: http_client(timeout)?,
        })
    }
}

#[async_trait]
impl Deliver for WebhookChannel {
    async fn deliver(
        &self,
        message: &Notification,
        secret: &SecretValue,
    ) -> Result<(), DeliveryError> {
        let key = field(secret, "signing_key")?;
        let body = serde_json::to_vec(message)
            .map_err(|e| DeliveryError::Invalid(format!("encoding the message: {e}")))?;
        let timestamp = chrono::Utc::now().timestamp();
        let signature = webhook_signature(key, timestamp, &body);
        post(
            self.client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(WEBHOOK_DELIVERY_HEADER, message.id.as_str())
                .header(WEBHOOK_EVENT_HEADER, message.event.as_str())
                .header(WEBHOOK_TIMESTAMP_HEADER, timestamp.to_string())
                .header(WEBHOOK_SIGNATURE_HEADER, signature)
                .body(body),
        )
        .await
    }
}
