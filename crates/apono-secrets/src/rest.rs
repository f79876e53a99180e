//! HTTP plumbing shared by the REST backends (Azure Key Vault, GCP Secret Manager): one
//! `reqwest` client with rustls (platform roots plus any test CA), transport errors classified
//! without quoting bodies, bodies read with a size cap into zeroized buffers.

use std::time::Duration;

use apono_core::json::describe_json_error;
use apono_core::{SecretError, error_chain};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::backend_error::source;

/// The largest response body read; a secret store answer is a few kilobytes.
const MAX_BODY: usize = 1 << 20;

/// Default deadline of one HTTP request.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the HTTP client: TLS verified against the platform's roots plus `extra_roots` (PEM).
pub(crate) fn client(
    store: &str,
    timeout: Duration,
    extra_roots: &[Vec<u8>],
) -> Result<reqwest::Client, SecretError> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::none())
        .https_only(false);
    for pem in extra_roots {
        let certificate = reqwest::Certificate::from_pem(pem).map_err(|e| SecretError::Config {
            store: store.to_owned(),
            reason: "an extra root certificate is not valid PEM".into(),
            source: source(e.to_string()),
        })?;
        builder = builder.add_root_certificate(certificate);
    }
    builder.build().map_err(|e| SecretError::Config {
        store: store.to_owned(),
        reason: "the HTTP client could not be built".into(),
        source: source(error_chain(&e)),
    })
}

/// An HTTP answer: status, headers and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    #[cfg_attr(not(feature = "azure"), allow(dead_code))]
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Zeroizing<Vec<u8>>,
}

/// Sends `request` and reads the whole answer. A request that outlives the client's timeout is
/// [`SecretError::Timeout`] for `reference`; any other transport failure is
/// [`SecretError::Unavailable`] for `store`.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    store: &str,
    reference: &str,
) -> Result<Answer, SecretError> {
    let transport = |e: reqwest::Error| {
        if e.is_timeout() {
            SecretError::Timeout {
                reference: reference.to_owned(),
            }
        } else {
            SecretError::Unavailable {
                store: store.to_owned(),
                source: source(error_chain(&e.without_url())),
            }
        }
    };
    let mut response = request.send().await.map_err(transport)?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body = Zeroizing::new(Vec::new());
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(SecretError::Unavailable {
                store: store.to_owned(),
                source: source(format!(
                    "HTTP {status}: response body exceeds {MAX_BODY} bytes"
                )),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Parses a JSON body; the error describes the problem by position only, never by content.
pub(crate) fn json(body: &[u8]) -> Result<serde_json::Value, String> {
    serde_json::from_slice(body).map_err(|e| format!("the response {}", describe_json_error(&e)))
}

/// A string field of a JSON object, if present.
pub(crate) fn str_field<'a>(value: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(serde_json::Value::as_str)
}

/// A server-written message, trimmed to a length fit for an error chain.
pub(crate) fn short(message: &str) -> String {
    const MAX: usize = 300;
    if message.chars().count() <= MAX {
        message.to_owned()
    } else {
        let mut text: String = message.chars().take(MAX).collect();
        text.push('…');
        text
    }
}

/// An `application/x-www-form-urlencoded` body.
pub(crate) fn form(pairs: &[(&str, &str)]) -> Zeroizing<String> {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        serializer.append_pair(key, value);
    }
    Zeroizing::new(serializer.finish())
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads an OAuth 2.0 token endpoint's answer (RFC 6749 §5): the access token and its lifetime
/// in seconds (300 when the endpoint does not say), or an error that quotes only the endpoint's
/// `error` code and a shortened `error_description`, never the body. `refused` is the reason
/// given when the endpoint rejects the credentials (HTTP 400, 401 or 403).
pub(crate) fn oauth_token(
    answer: &Answer,
    store: &'static str,
    reference: &str,
    refused: &str,
) -> Result<(SecretString, u64), SecretError> {
    let body = json(&answer.body);
    if answer.status != 200 {
        let detail = body
            .ok()
            .and_then(|v| {
                let error = str_field(&v, "error")?.to_owned();
                let description = str_field(&v, "error_description").unwrap_or("");
                Some(format!("{error}: {}", short(description)))
            })
            .unwrap_or_else(|| "no OAuth error in the body".into());
        let description = format!("token endpoint answered HTTP {}: {detail}", answer.status);
        return Err(match answer.status {
            400 | 401 | 403 => SecretError::PermissionDenied {
                reference: reference.to_owned(),
                reason: refused.to_owned(),
                source: source(description),
            },
            _ => SecretError::Unavailable {
                store: store.into(),
                source: source(description),
            },
        });
    }
    let value = body.map_err(|e| SecretError::Unavailable {
        store: store.into(),
        source: source(format!("token endpoint: {e}")),
    })?;
    let token = str_field(&value, "access_token").ok_or_else(|| SecretError::Unavailable {
        store: store.into(),
        source: source("token endpoint answered without an access_token"),
    })?;
    let expires_in = value
        .get("expires_in")
        .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
        .unwrap_or(300);
    Ok((SecretString::from(token.to_owned()), expires_in))
}

/// How one REST store words the outcomes of an error answer shaped `{error: {…, message}}`.
pub(crate) struct ErrorWords {
    /// The store, for `Unavailable` and `Config` errors.
    pub(crate) store: &'static str,
    /// The field of `error` that names the error (`code` for Azure, `status` for Google).
    pub(crate) code_field: &'static str,
    /// The reason given for HTTP 401.
    pub(crate) token_rejected: &'static str,
    /// The reason given for HTTP 403: which right is missing.
    pub(crate) forbidden: &'static str,
    /// The reason given for HTTP 400.
    pub(crate) bad_request: &'static str,
}

/// Maps an error answer to a [`SecretError`]: 404 `NotFound`, 401 and 403 `PermissionDenied`,
/// 400 `Config`, anything else `Unavailable`. The source quotes only the status, the error's
/// name and its shortened message, never the body.
pub(crate) fn classify_error(reference: &str, answer: &Answer, words: &ErrorWords) -> SecretError {
    let parsed = json(&answer.body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let name = error
        .and_then(|e| str_field(e, words.code_field))
        .unwrap_or("");
    let message = error
        .and_then(|e| str_field(e, "message"))
        .map(short)
        .unwrap_or_default();
    let description = format!("HTTP {} {name}: {message}", answer.status);
    let denied = |reason: &str| SecretError::PermissionDenied {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
        source: source(description.clone()),
    };
    match answer.status {
        404 => SecretError::NotFound {
            reference: reference.to_owned(),
            source: source(description),
        },
        401 => denied(words.token_rejected),
        403 => denied(words.forbidden),
        400 => SecretError::Config {
            store: words.store.into(),
            reason: words.bad_request.into(),
            source: source(description),
        },
        _ => SecretError::Unavailable {
            store: words.store.into(),
            source: source(description),
        },
    }
}
