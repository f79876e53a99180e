//! Request signatures, both HMAC-SHA256:
//!
//! * the generic webhook's, which the connector writes ([`webhook_signature`]): over
//!   `"{timestamp}.{body}"`, sent as `Apono-Signature: v1=<hex>` beside `Apono-Timestamp`;
//! * Slack's, which the connector checks on its interactivity endpoint ([`verify_slack`]): over
//!   `"v0:{timestamp}:{body}"`, received as `X-Slack-Signature: v0=<hex>` beside
//!   `X-Slack-Request-Timestamp`, refused outside a five-minute window.
//!
//! Comparisons are in constant time (`hmac`'s `verify_slice`).

use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2_next::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The header carrying the webhook's signature.
pub const WEBHOOK_SIGNATURE_HEADER: &str = "Apono-Signature";
/// The header carrying the Unix time (seconds) the webhook's signature covers.
pub const WEBHOOK_TIMESTAMP_HEADER: &str = "Apono-Timestamp";
/// The header carrying the delivery id (the same on every attempt of one notification).
pub const WEBHOOK_DELIVERY_HEADER: &str = "Apono-Delivery-Id";
/// The header carrying the event name.
pub const WEBHOOK_EVENT_HEADER: &str = "Apono-Event";

/// Slack's signature header.
pub const SLACK_SIGNATURE_HEADER: &str = "X-Slack-Signature";
/// Slack's timestamp header.
pub const SLACK_TIMESTAMP_HEADER: &str = "X-Slack-Request-Timestamp";
/// How far (seconds) a Slack request's timestamp may be from now: five minutes, as Slack
/// recommends.
pub const SLACK_WINDOW_SECS: i64 = 300;

fn mac(key: &SecretString) -> HmacSha256 {
    // HMAC takes a key of any length.
    HmacSha256::new_from_slice(key.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"))
}

/// The generic webhook's signature of `body` sent at `timestamp` (Unix seconds) under `key`:
/// `v1=` and the lowercase hex of HMAC-SHA256(key, `"{timestamp}.{body}"`).
pub fn webhook_signature(key: &SecretString, timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac(key);
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1={}",
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
    )
}

/// Why a Slack request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A header is missing or not in the expected form.
    #[error("the request's signature headers are missing or malformed")]
    Malformed,
    /// The timestamp is more than five minutes from now (a replay, or a wrong clock).
    #[error("the request's timestamp is outside the five-minute window")]
    Stale,
    /// The signature does not match.
    #[error("the request's signature does not match")]
    Mismatch,
}

/// Checks a Slack request: `timestamp` and `signature` are the values of
/// [`SLACK_TIMESTAMP_HEADER`] and [`SLACK_SIGNATURE_HEADER`], `body` the raw body, `now` the
/// current Unix time in seconds.
pub fn verify_slack(
    signing_secret: &SecretString,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    check_slack_timestamp(timestamp, now)?;
    let hex = signature
        .trim()
        .strip_prefix("v0=")
        .ok_or(SignatureError::Malformed)?;
    let expected = data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.as_bytes())
        .map_err(|_| SignatureError::Malformed)?;
    let mut mac = mac(signing_secret);
    mac.update(b"v0:");
    mac.update(timestamp.trim().as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// Checks only the timestamp of a Slack request (cheap, before the signing secret is read):
/// [`SignatureError::Malformed`] or [`SignatureError::Stale`] when it cannot be Slack's now.
pub fn check_slack_timestamp(timestamp: &str, now: i64) -> Result<(), SignatureError> {
    let at: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed)?;
    if (now - at).abs() > SLACK_WINDOW_SECS {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// Slack's signature of `body` at `timestamp` (what Slack sends; for tests and fakes).
pub fn slack_signature(signing_secret: &SecretString, timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac(signing_secret);
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!(
        "v0={}",
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> SecretString {
        SecretString::from(k.to_owned())
    }

    #[test]
    fn slack_example_from_the_documentation_verifies() {
        // The worked example of Slack's "Verifying requests from Slack" guide.
        let secret = key("8f742231b10e8888abcd99yyyzzz85a5");
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let ts = "1531420618";
        let sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
        assert_eq!(verify_slack(&secret, ts, sig, body, 1_531_420_618), Ok(()));
        assert_eq!(slack_signature(&secret, 1_531_420_618, body), sig);
        // Six minutes later the same request is stale.
        assert_eq!(
            verify_slack(&secret, ts, sig, body, 1_531_420_618 + 360),
            Err(SignatureError::Stale)
        );
        // Another secret, or another body, does not verify.
        assert_eq!(
            verify_slack(&key("other"), ts, sig, body, 1_531_420_618),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_slack(&secret, ts, sig, b"token=x", 1_531_420_618),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_slack(&secret, ts, "a2114d57", body, 1_531_420_618),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn webhook_signature_covers_timestamp_and_body() {
        let k = key("whsec");
        let a = webhook_signature(&k, 1_700_000_000, b"{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64);
        assert_ne!(a, webhook_signature(&k, 1_700_000_001, b"{}"));
        assert_ne!(a, webhook_signature(&k, 1_700_000_000, b"{ }"));
        assert_ne!(a, webhook_signature(&key("other"), 1_700_000_000, b"{}"));
    }
}
