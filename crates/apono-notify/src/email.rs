//! Email over SMTP with STARTTLS (lettre): plain text and HTML alternatives, one message per
//! notification, to its recipients.

use std::time::Duration;

use apono_core::SecretValue;
use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use crate::{Deliver, DeliveryError, Notification, render_text_and_html};

/// Where and how to send email.
#[derive(Clone, Debug)]
pub struct EmailSettings {
    /// The SMTP server's host name (also the name its certificate must carry).
    pub host: String,
    /// Its submission port (usually 587).
    pub port: u16,
    /// The sender, such as `Apono <apono@example.com>`.
    pub from: String,
    /// Extra trusted root certificates (PEM), for a server with a private CA; the public web
    /// roots are trusted always.
    pub ca_pem: Option<Vec<u8>>,
    /// Deadline of one SMTP session.
    pub timeout: Duration,
}

/// Sends each notification as one email to its recipients over SMTP, always with STARTTLS
/// (a server that does not offer it is refused). The secret's fields `username` and
/// `password`, when present, log in.
#[derive(Clone)]
pub struct EmailChannel {
    settings: EmailSettings,
    from: Mailbox,
    tls: TlsParameters,
}

impl EmailChannel {
    /// A channel with `settings` (the sender and the certificates are checked now).
    pub fn new(settings: EmailSettings) -> Result<Self, DeliveryError> {
        let from: Mailbox = settings
            .from
            .parse()
            .map_err(|e| DeliveryError::Invalid(format!("the sender address: {e}")))?;
        let mut tls = TlsParameters::builder(settings.host.clone());
        if let Some(pem) = &settings.ca_pem {
            let cert = Certificate::from_pem(pem)
                .map_err(|e| DeliveryError::Invalid(format!("the CA certificate: {e}")))?;
            tls = tls.add_root_certificate(cert);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| DeliveryError::Invalid(format!("the TLS settings: {e}")))?;
        Ok(Self {
            settings,
            from,
            tls,
        })
    }
}

impl std::fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailChannel")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Deliver for EmailChannel {
    async fn deliver(
        &self,
        message: &Notification,
        secret: &SecretValue,
    ) -> Result<(), DeliveryError> {
        if message.recipients.is_empty() {
            return Ok(()); // nobody to tell (an event nobody is routed to)
        }
        let (text, html) = render_text_and_html(message);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(message.headline())
            .message_id(Some(format!("<{}@apono-connector>", message.id)));
        for to in &message.recipients {
            let to: Mailbox = to
                .parse()
                .map_err(|e| DeliveryError::Invalid(format!("a recipient's address: {e}")))?;
            builder = builder.to(to);
        }
        let email = builder
            .multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| DeliveryError::Invalid(format!("building the email: {e}")))?;
        let mut transport =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.settings.host.clone())
                .port(self.settings.port)
                .tls(Tls::Required(self.tls.clone()))
                .timeout(Some(self.settings.timeout));
        if let Some(password) = secret.get("password") {
            let user = secret.get("username").map_or_else(
                || self.from.email.to_string(),
                |u| u.expose_secret().to_owned(),
            );
            transport =
                transport.credentials(Credentials::new(user, password.expose_secret().to_owned()));
        }
        transport
            .build()
            .send(email)
            .await
            .map(drop)
            .map_err(|e| DeliveryError::Smtp(Box::new(e)))
    }
}
