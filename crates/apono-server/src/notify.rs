//! The notification channels of `[[notifications]]`, built for the control plane's delivery
//! worker and Slack's interactivity (feature `notify`; without it a configured channel is an
//! error at build time).

use apono_control::{Channels, Config};

use crate::ServerError;

/// Builds every channel of `config.notifications`.
pub(crate) fn channels(config: &Config) -> Result<Channels, ServerError> {
    let mut channels = Channels::new();
    for settings in &config.notifications {
        let channel = build(settings).map_err(|message| ServerError::Notification {
            channel: settings.name.clone(),
            message,
        })?;
        channels.insert(settings.name.clone(), channel);
    }
    Ok(channels)
}

#[cfg(feature = "notify")]
fn build(
    settings: &apono_control::NotificationChannel,
) -> Result<std::sync::Arc<dyn apono_notify::Deliver>, String> {
    use std::sync::Arc;

    use apono_control::ChannelType;
    use apono_core::error_chain;
    use apono_notify::{EmailChannel, EmailSettings, SlackChannel, WebhookChannel};

    let timeout = settings.timeout.0;
    Ok(match settings.channel_type {
        ChannelType::Webhook => {
            let url = settings
                .url
                .as_deref()
                .unwrap_or_default()
                .parse()
                .map_err(|e| format!("url: {e}"))?;
            Arc::new(WebhookChannel::new(url, timeout).map_err(|e| error_chain(&e))?)
        }
        ChannelType::Slack => Arc::new(
            SlackChannel::with_api(
                timeout,
                settings
                    .slack_api_url
                    .as_deref()
                    .unwrap_or(apono_notify::SLACK_API_URL),
            )
            .map_err(|e| error_chain(&e))?,
        ),
        ChannelType::Email => {
            let ca_pem = settings
                .smtp_ca_file
                .as_ref()
                .map(|path| {
                    std::fs::read(path).map_err(|e| format!("smtp_ca_file {}: {e}", path.display()))
                })
                .transpose()?;
            Arc::new(
                EmailChannel::new(EmailSettings {
                    host: settings.smtp_host.clone().unwrap_or_default(),
                    port: settings.smtp_port,
                    from: settings.from.clone().unwrap_or_default(),
                    ca_pem,
                    timeout,
                })
                .map_err(|e| error_chain(&e))?,
            )
        }
    })
}

#[cfg(not(feature = "notify"))]
fn build(
    _: &apono_control::NotificationChannel,
) -> Result<std::sync::Arc<dyn apono_notify::Deliver>, String> {
    Err("notification channels need apono-server's feature `notify`".into())
}
