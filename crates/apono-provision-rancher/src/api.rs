//! A small Rancher v3 (Norman) REST client: HTTPS only, TLS verified, deadline- and
//! cancel-aware, errors classified without ever quoting a request body.

use std::time::Duration;

use apono_core::json::describe_json_error;
use apono_core::{ActionContext, ProvisionError, error_chain};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::config::{ConfigError, RancherConfig};

/// The largest response read; Rancher collections are paginated well below this.
const MAX_BODY: usize = 16 << 20;
/// Deadline of one request when the action has none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Most pages followed in one listing.
const MAX_PAGES: usize = 100;

/// Whether a request body carries a secret (a password): then Rancher's error message, which
/// might echo it, is never kept.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body<'a> {
    None,
    Plain(&'a Value),
    Secret(&'a Value),
}

#[derive(Debug)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: Url,
    target: String,
}

/// An answer: status and JSON body (`Null` when empty).
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

impl Api {
    pub(crate) fn new(config: &RancherConfig) -> Result<Self, ConfigError> {
        let base = Url::parse(&config.base_url()).map_err(|_| ConfigError::Invalid {
            field: "host",
            reason: "does not form a valid URL".into(),
        })?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .no_proxy();
        if let Some(pem) = &config.certificate_authority {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|_| {
                ConfigError::Invalid {
                    field: "certificate_authority",
                    reason: "is not a valid PEM certificate bundle".into(),
                }
            })?;
            if certs.is_empty() {
                return Err(ConfigError::Invalid {
                    field: "certificate_authority",
                    reason: "holds no certificate".into(),
                });
            }
            builder = builder.tls_certs_only(certs);
        }
        let http = builder
            .build()
            .map_err(|e| ConfigError::Client(Box::new(e)))?;
        Ok(Self {
            http,
            target: format!("rancher {}", config.host),
            base,
        })
    }

    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// `{base}/{segments…}?{query}`, every segment percent-encoded.
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.clear().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends one request, honouring the context's deadline and cancellation.
    pub(crate) async fn send(
        &self,
        ctx: &ActionContext,
        method: Method,
        url: Url,
        auth: Option<&SecretString>,
        body: Body<'_>,
    ) -> Result<Reply, ProvisionError> {
        ctx.checkpoint()?;
        let timeout = ctx.remaining().unwrap_or(DEFAULT_TIMEOUT);
        let mut request = self
            .http
            .request(method, url)
            .timeout(timeout)
            .header("accept", "application/json");
        if let Some(auth) = auth {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", auth.expose_secret()))
                .map_err(|_| {
                    ProvisionError::Config(apono_core::InvalidIntegration::Config {
                        integration: "rancher".into(),
                        reason: "the API key contains characters not allowed in a header".into(),
                    })
                })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        match body {
            Body::None => {}
            Body::Plain(v) | Body::Secret(v) => {
                request = request
                    .header("content-type", "application/json")
                    .body(v.to_string());
            }
        }
        let exchange = async {
            let mut response = request.send().await?;
            let status = response.status().as_u16();
            let mut bytes = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if bytes.len() + chunk.len() > MAX_BODY {
                    return Ok((status, None));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, Some(bytes)))
        };
        let (status, bytes) = ctx
            .bounded(tokio::time::sleep, async {
                exchange.await.map_err(|e| {
                    if e.is_timeout() {
                        ProvisionError::Timeout
                    } else {
                        ProvisionError::Unavailable {
                            target: self.target.clone(),
                            // reqwest's errors say what failed (connect, TLS) in their sources.
                            source: Some(error_chain(&e).into()),
                        }
                    }
                })
            })
            .await?;
        let Some(bytes) = bytes else {
            return Err(self.target_error(format!(
                "HTTP {status}: the response exceeds {MAX_BODY} bytes"
            )));
        };
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                self.target_error(format!(
                    "HTTP {status}: the response {}",
                    describe_json_error(&e)
                ))
            })?
        };
        Ok(Reply { status, body })
    }

    fn target_error(&self, reason: String) -> ProvisionError {
        ProvisionError::Target {
            target: self.target.clone(),
            reason,
            source: None,
        }
    }

    /// Turns a non-2xx reply into an error that says what was attempted.
    pub(crate) fn fail(&self, what: &str, reply: &Reply, body: Body<'_>) -> ProvisionError {
        let code = reply.body.get("code").and_then(Value::as_str).unwrap_or("");
        let message = match body {
            Body::Secret(_) => None,
            _ => reply.body.get("message").and_then(Value::as_str).map(short),
        };
        let mut reason = format!("{what}: HTTP {}", reply.status);
        if !code.is_empty() {
            reason.push_str(&format!(" {code}"));
        }
        if let Some(message) = message {
            reason.push_str(&format!(" ({message})"));
        }
        match reply.status {
            401 => ProvisionError::PermissionDenied {
                target: self.target.clone(),
                reason: format!("{reason}; the API key was refused (wrong, expired or disabled)"),
                source: None,
            },
            403 => ProvisionError::PermissionDenied {
                target: self.target.clone(),
                reason,
                source: None,
            },
            409 => ProvisionError::Conflict {
                target: self.target.clone(),
                reason,
            },
            422 if code == "NotUnique" => ProvisionError::Conflict {
                target: self.target.clone(),
                reason,
            },
            408 | 429 | 500..=599 => ProvisionError::Unavailable {
                target: self.target.clone(),
                source: Some(reason.into()),
            },
            _ => self.target_error(reason),
        }
    }

    /// `GET` one object; `None` on 404.
    pub(crate) async fn get(
        &self,
        ctx: &ActionContext,
        auth: &SecretString,
        what: &str,
        segments: &[&str],
    ) -> Result<Option<Value>, ProvisionError> {
        let reply = self
            .send(
                ctx,
                Method::GET,
                self.url(segments, &[]),
                Some(auth),
                Body::None,
            )
            .await?;
        match reply.status {
            200 => Ok(Some(reply.body)),
            404 => Ok(None),
            _ => Err(self.fail(what, &reply, Body::None)),
        }
    }

    /// Lists a collection with filters, following `pagination.next` on the same server.
    pub(crate) async fn list(
        &self,
        ctx: &ActionContext,
        auth: &SecretString,
        collection: &str,
        filters: &[(&str, &str)],
    ) -> Result<Vec<Value>, ProvisionError> {
        let what = format!("list {collection}");
        let mut url = self.url(&["v3", collection], filters);
        let mut out = Vec::new();
        for _ in 0..MAX_PAGES {
            let reply = self
                .send(ctx, Method::GET, url.clone(), Some(auth), Body::None)
                .await?;
            if reply.status != 200 {
                return Err(self.fail(&what, &reply, Body::None));
            }
            match reply.body.get("data").and_then(Value::as_array) {
                Some(data) => out.extend(data.iter().cloned()),
                None => {
                    return Err(
                        self.target_error(format!("{what}: the answer is not a collection"))
                    );
                }
            }
            let next = reply
                .body
                .pointer("/pagination/next")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty());
            let Some(next) = next else {
                return Ok(out);
            };
            let next = Url::parse(next).map_err(|_| {
                self.target_error(format!("{what}: the next page link is not a URL"))
            })?;
            if next.origin() != self.base.origin() {
                return Err(self.target_error(format!(
                    "{what}: the next page link points to another server"
                )));
            }
            url = next;
        }
        Err(self.target_error(format!("{what}: more than {MAX_PAGES} pages")))
    }

    /// `POST /v3/{collection}`.
    pub(crate) async fn create(
        &self,
        ctx: &ActionContext,
        auth: &SecretString,
        collection: &str,
        body: Body<'_>,
    ) -> Result<Value, ProvisionError> {
        let reply = self
            .send(
                ctx,
                Method::POST,
                self.url(&["v3", collection], &[]),
                Some(auth),
                body,
            )
            .await?;
        if matches!(reply.status, 200 | 201) {
            Ok(reply.body)
        } else {
            Err(self.fail(&format!("create in {collection}"), &reply, body))
        }
    }

    /// `DELETE`; `Ok(false)` when it was already gone.
    pub(crate) async fn delete(
        &self,
        ctx: &ActionContext,
        auth: &SecretString,
        segments: &[&str],
    ) -> Result<bool, ProvisionError> {
        let reply = self
            .send(
                ctx,
                Method::DELETE,
                self.url(segments, &[]),
                Some(auth),
                Body::None,
            )
            .await?;
        match reply.status {
            200 | 202 | 204 => Ok(true),
            404 => Ok(false),
            _ => Err(self.fail(
                &format!("delete {}", segments.get(1).copied().unwrap_or("object")),
                &reply,
                Body::None,
            )),
        }
    }

    /// `POST {object}?action={action}`.
    pub(crate) async fn action(
        &self,
        ctx: &ActionContext,
        auth: Option<&SecretString>,
        segments: &[&str],
        action: &str,
        body: Body<'_>,
    ) -> Result<Reply, ProvisionError> {
        self.send(
            ctx,
            Method::POST,
            self.url(segments, &[("action", action)]),
            auth,
            body,
        )
        .await
    }
}

/// A server-written message, shortened and on one line.
fn short(message: &str) -> String {
    const MAX: usize = 200;
    let one_line: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX)
        .collect();
    if message.chars().count() > MAX {
        format!("{one_line}…")
    } else {
        one_line
    }
}
