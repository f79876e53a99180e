//! The OpenID Connect client of one provider: discovery, the key set (refetched when a token
//! names a key it does not hold: the provider rotated its keys), ID-token validation through
//! `jsonwebtoken` (signature with an allow-listed asymmetric algorithm, issuer, audience,
//! expiry, nonce), and the token endpoint's grants (authorization code with PKCE, refresh
//! token, device code).
//!
//! Nothing here logs a token or the client secret; errors name what was wrong, never a value.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use super::config::IdentityProvider;

/// How long discovery's answer is kept.
const METADATA_TTL: Duration = Duration::from_secs(3600);
/// How long a key set is kept when every token finds its key in it.
const JWKS_TTL: Duration = Duration::from_secs(3600);
/// The least time between two fetches of the key set prompted by unknown key ids, so that
/// tokens naming made-up keys cannot make the connector hammer the provider.
const JWKS_REFETCH_MIN: Duration = Duration::from_secs(10);
/// Clock skew allowed on `exp`, `iat` and `nbf`.
const LEEWAY_SECS: u64 = 30;
/// The longest answer read from the provider.
const MAX_ANSWER: usize = 1 << 20;

/// An accepted signature algorithm by its JOSE name: asymmetric ones only. `HS*` (a shared
/// secret: with a public key as the secret, anyone could sign) and `none` are never accepted.
pub(crate) fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Why talking to the provider, or a token from it, failed. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OidcError {
    /// A token (or an answer) was refused: what was wrong with it.
    #[error("{0}")]
    Refused(String),
    /// The provider refused a grant (`invalid_grant`: an expired or revoked code or refresh
    /// token, a user it no longer knows or has disabled).
    #[error("the identity provider refused: {0}")]
    InvalidGrant(String),
    /// The device flow goes on: the user has not finished (`authorization_pending`,
    /// `slow_down`).
    #[error("waiting for the user to finish signing in")]
    Pending {
        /// Whether the provider asked to poll less often.
        slow_down: bool,
    },
    /// The provider could not be reached or answered something unusable.
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
}

/// The provider's discovery document (the fields used).
#[derive(Clone, Debug, Deserialize)]
pub(crate) struct Metadata {
    pub(crate) issuer: String,
    pub(crate) authorization_endpoint: String,
    pub(crate) token_endpoint: String,
    pub(crate) jwks_uri: String,
    #[serde(default)]
    pub(crate) device_authorization_endpoint: Option<String>,
}

/// What a valid ID token says about the person.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    pub(crate) subject: String,
    pub(crate) email: String,
    /// The provider's group names (not yet mapped).
    pub(crate) groups: Vec<String>,
}

/// The token endpoint's answer (the fields used). `Debug` names no token.
pub(crate) struct Tokens {
    pub(crate) id_token: Option<SecretString>,
    pub(crate) refresh_token: Option<SecretString>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("id_token", &self.id_token.is_some())
            .field("refresh_token", &self.refresh_token.is_some())
            .finish()
    }
}

/// The device authorization endpoint's answer.
#[derive(Debug, Deserialize)]
pub(crate) struct DeviceAuthorization {
    pub(crate) device_code: SecretString,
    pub(crate) user_code: String,
    pub(crate) verification_uri: String,
    #[serde(default)]
    pub(crate) verification_uri_complete: Option<String>,
    pub(crate) expires_in: u64,
    #[serde(default)]
    pub(crate) interval: Option<u64>,
}

/// The client of one provider; cheap to share.
#[derive(Debug)]
pub(crate) struct OidcClient {
    pub(crate) provider: IdentityProvider,
    http: reqwest::Client,
    metadata: Mutex<Option<(Arc<Metadata>, Instant)>>,
    jwks: Mutex<Option<(Arc<JwkSet>, Instant)>>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> OidcError {
    OidcError::Unavailable(format!("{what}: {e}"))
}

impl OidcClient {
    pub(crate) fn new(provider: IdentityProvider) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            // Shorter than servers' keep-alive (Node's is 5 s): a pooled connection the
            // provider is closing would fail the next request.
            .pool_idle_timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        Self {
            provider,
            http,
            metadata: Mutex::new(None),
            jwks: Mutex::new(None),
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        url: &str,
    ) -> Result<T, OidcError> {
        let response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| unavailable(what, e.without_url()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(what, e.without_url()))?;
        if !status.is_success() || body.len() > MAX_ANSWER {
            return Err(unavailable(what, format!("HTTP {}", status.as_u16())));
        }
        serde_json::from_slice(&body).map_err(|e| unavailable(what, e))
    }

    /// The discovery document, fetched at first use and kept for an hour. Its `issuer` must
    /// be the configured one.
    pub(crate) async fn metadata(&self) -> Result<Arc<Metadata>, OidcError> {
        let mut cached = self.metadata.lock().await;
        if let Some((m, at)) = cached.as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(m.clone());
        }
        let issuer = self.provider.issuer.trim_end_matches('/');
        let url = format!("{issuer}/.well-known/openid-configuration");
        let m: Metadata = self.get_json("discovery", &url).await?;
        if m.issuer.trim_end_matches('/') != issuer {
            return Err(OidcError::Unavailable(format!(
                "discovery names issuer {:?}, not the configured {:?}",
                m.issuer, self.provider.issuer
            )));
        }
        let m = Arc::new(m);
        *cached = Some((m.clone(), Instant::now()));
        Ok(m)
    }

    /// The key set: the cached one, or a fresh one when `refetch` (a token named a key the
    /// cached set does not hold) and the last fetch is not too recent.
    async fn jwks(&self, refetch: bool) -> Result<Arc<JwkSet>, OidcError> {
        let mut cached = self.jwks.lock().await;
        if let Some((set, at)) = cached.as_ref() {
            let fresh = at.elapsed() < JWKS_TTL;
            if (fresh && !refetch) || (refetch && at.elapsed() < JWKS_REFETCH_MIN) {
                return Ok(set.clone());
            }
        }
        let uri = self.metadata().await?.jwks_uri.clone();
        let set: JwkSet = self.get_json("the key set", &uri).await?;
        tracing::info!(provider = %self.provider.name, keys = set.keys.len(), "identity provider keys fetched");
        let set = Arc::new(set);
        *cached = Some((set.clone(), Instant::now()));
        Ok(set)
    }

    fn find_key(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Option<Jwk> {
        let fits = |k: &&Jwk| {
            // A key that names its algorithm is used for that algorithm only.
            k.common
                .key_algorithm
                .is_none_or(|a| a.to_string() == format!("{alg:?}"))
                && DecodingKey::from_jwk(k).is_ok_and(|d| d.family() == alg.family())
        };
        match kid {
            Some(kid) => set
                .keys
                .iter()
                .filter(|k| k.common.key_id.as_deref() == Some(kid))
                .find(fits)
                .cloned(),
            None => {
                let mut candidates = set.keys.iter().filter(fits);
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => Some(only.clone()),
                    _ => None,
                }
            }
        }
    }

    /// Validates an ID token: an allow-listed asymmetric algorithm, a signature by one of the
    /// provider's keys, this provider as issuer, this client in the audience (and as `azp`
    /// when there are several), not expired, and — when `nonce` is given — that nonce.
    pub(crate) async fn validate(
        &self,
        id_token: &str,
        nonce: Option<&str>,
    ) -> Result<Identity, OidcError> {
        let refused = |m: &str| OidcError::Refused(format!("ID token refused: {m}"));
        let header = jsonwebtoken::decode_header(id_token)
            .map_err(|_| refused("not a signed JWT with a known algorithm"))?;
        let alg = header.alg;
        let allowed = self
            .provider
            .algorithms
            .iter()
            .filter_map(|a| algorithm(a))
            .any(|a| a == alg);
        if !allowed {
            return Err(refused(&format!(
                "algorithm {alg:?} is not accepted (identity_providers.algorithms)"
            )));
        }
        let kid = header.kid.as_deref();
        let mut key = Self::find_key(&*self.jwks(false).await?, kid, alg);
        if key.is_none() {
            // The provider may have rotated its keys.
            key = Self::find_key(&*self.jwks(true).await?, kid, alg);
        }
        let key = key.ok_or_else(|| refused("signed by a key the provider does not publish"))?;
        let key =
            DecodingKey::from_jwk(&key).map_err(|_| refused("the provider's key is unusable"))?;
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[self.provider.issuer.trim_end_matches('/')]);
        validation.set_audience(&[&self.provider.client_id]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, Value>>(id_token, &key, &validation)
                .map_err(|e| {
                    use jsonwebtoken::errors::ErrorKind as K;
                    refused(match e.kind() {
                        K::InvalidSignature => "bad signature",
                        K::ExpiredSignature => "expired",
                        K::ImmatureSignature => "not valid yet",
                        K::InvalidIssuer => "wrong issuer",
                        K::InvalidAudience => "wrong audience",
                        K::InvalidAlgorithm => "wrong algorithm for the key",
                        K::MissingRequiredClaim(_) => "a required claim is missing",
                        _ => "malformed",
                    })
                })?;
        let claims = data.claims;
        if let Some(Value::Array(aud)) = claims.get("aud")
            && aud.len() > 1
            && claims.get("azp").and_then(Value::as_str) != Some(&self.provider.client_id)
        {
            return Err(refused(
                "several audiences and this client is not the authorized party",
            ));
        }
        if let Some(expected) = nonce {
            let given = claims
                .get("nonce")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !super::constant_time_eq(given, expected) {
                return Err(refused("wrong or missing nonce"));
            }
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 255)
            .ok_or_else(|| refused("no subject"))?
            .to_owned();
        let email = claims
            .get(&self.provider.email_claim)
            .and_then(Value::as_str)
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| e.contains('@') && e.len() <= 254 && !e.contains(char::is_control))
            .ok_or_else(|| {
                refused(&format!(
                    "no email in claim {:?}",
                    self.provider.email_claim
                ))
            })?;
        if claims.get("email_verified") == Some(&Value::Bool(false)) {
            return Err(refused("the email is not verified"));
        }
        let groups = match claims.get(&self.provider.groups_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .filter(|g| !g.is_empty() && g.len() <= 256 && !g.contains(char::is_control))
                .map(str::to_owned)
                .collect(),
            Some(_) => {
                return Err(refused(&format!(
                    "claim {:?} is not a list of group names",
                    self.provider.groups_claim
                )));
            }
        };
        Ok(Identity {
            subject,
            email,
            groups,
        })
    }

    /// POSTs `body` (a form) to `endpoint` with the client's credentials (HTTP Basic, as
    /// `client_secret_basic`: id and secret form-encoded first); the answer's status and body.
    /// Errors name `what`, never the URL or anything sent.
    async fn post_as_client(
        &self,
        endpoint: String,
        secret: &SecretString,
        body: String,
        what: &'static str,
    ) -> Result<(reqwest::StatusCode, Vec<u8>), OidcError> {
        let encode =
            |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let response = self
            .http
            .post(endpoint)
            .basic_auth(
                encode(&self.provider.client_id),
                Some(encode(secret.expose_secret())),
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| unavailable(what, e.without_url()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| unavailable(what, e.without_url()))?;
        Ok((status, bytes.to_vec()))
    }

    /// A request to the token endpoint with the client's credentials (HTTP Basic, as
    /// `client_secret_basic`).
    async fn token_request(
        &self,
        secret: &SecretString,
        form: &[(&str, &str)],
    ) -> Result<Tokens, OidcError> {
        let endpoint = self.metadata().await?.token_endpoint.clone();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let (status, bytes) = self
            .post_as_client(endpoint, secret, body, "the token endpoint")
            .await?;
        let answer: serde_json::Map<String, Value> =
            serde_json::from_slice(&bytes).map_err(|_| {
                tracing::warn!(
                    status = status.as_u16(),
                    "the token endpoint answered without JSON"
                );
                unavailable(
                    "the token endpoint",
                    format!("HTTP {} without JSON", status.as_u16()),
                )
            })?;
        if !status.is_success() {
            let code = answer
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            // Only the error code: descriptions may echo what was sent.
            let code: String = code
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(60)
                .collect();
            tracing::debug!(status = status.as_u16(), error = %code, "the token endpoint refused");
            return Err(match code.as_str() {
                "authorization_pending" => OidcError::Pending { slow_down: false },
                "slow_down" => OidcError::Pending { slow_down: true },
                "invalid_grant" | "access_denied" | "expired_token" => {
                    OidcError::InvalidGrant(code)
                }
                _ => unavailable(
                    "the token endpoint",
                    format!("HTTP {}: {code}", status.as_u16()),
                ),
            });
        }
        let secret_of = |name: &str| {
            answer
                .get(name)
                .and_then(Value::as_str)
                .map(|s| SecretString::from(s.to_owned()))
        };
        Ok(Tokens {
            id_token: secret_of("id_token"),
            refresh_token: secret_of("refresh_token"),
        })
    }

    /// Exchanges an authorization code (with its PKCE verifier).
    pub(crate) async fn exchange_code(
        &self,
        secret: &SecretString,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, OidcError> {
        self.token_request(
            secret,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier),
                ("redirect_uri", redirect_uri),
            ],
        )
        .await
    }

    /// Refreshes with a refresh token.
    pub(crate) async fn refresh(
        &self,
        secret: &SecretString,
        refresh_token: &SecretString,
    ) -> Result<Tokens, OidcError> {
        self.token_request(
            secret,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose_secret()),
            ],
        )
        .await
    }

    /// Starts the device authorization grant.
    pub(crate) async fn device_authorization(
        &self,
        secret: &SecretString,
    ) -> Result<DeviceAuthorization, OidcError> {
        let endpoint = self
            .metadata()
            .await?
            .device_authorization_endpoint
            .clone()
            .ok_or_else(|| {
                OidcError::Refused("the identity provider offers no device flow".into())
            })?;
        let scope = self.provider.scopes.join(" ");
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.provider.client_id)
            .append_pair("scope", &scope)
            .finish();
        let (status, bytes) = self
            .post_as_client(endpoint, secret, body, "the device authorization endpoint")
            .await?;
        if !status.is_success() {
            return Err(unavailable(
                "the device authorization endpoint",
                format!("HTTP {}", status.as_u16()),
            ));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| unavailable("the device authorization endpoint", e))
    }

    /// Polls the token endpoint for a device code.
    pub(crate) async fn poll_device(
        &self,
        secret: &SecretString,
        device_code: &SecretString,
    ) -> Result<Tokens, OidcError> {
        self.token_request(
            secret,
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("device_code", device_code.expose_secret()),
            ],
        )
        .await
    }

    /// The authorization URL of a code flow with PKCE (S256).
    pub(crate) async fn authorization_url(
        &self,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        challenge: &str,
    ) -> Result<String, OidcError> {
        let endpoint = self.metadata().await?.authorization_endpoint.clone();
        let mut url =
            url::Url::parse(&endpoint).map_err(|e| unavailable("the authorization endpoint", e))?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.provider.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &self.provider.scopes.join(" "))
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", challenge)
            .append_pair("code_challenge_method", "S256");
        if self.provider.scopes.iter().any(|s| s == "offline_access") {
            // Providers issue a refresh token for offline_access only after consent.
            url.query_pairs_mut().append_pair("prompt", "consent");
        }
        Ok(url.into())
    }
}

#[cfg(test)]
mod tests {
    use super::algorithm;

    #[test]
    fn only_asymmetric_algorithms_are_accepted() {
        for ok in ["RS256", "RS512", "PS256", "ES256", "ES384", "EdDSA"] {
            assert!(algorithm(ok).is_some(), "{ok}");
        }
        for bad in ["HS256", "HS384", "HS512", "none", "None", "rs256", ""] {
            assert!(algorithm(bad).is_none(), "{bad}");
        }
    }
}
