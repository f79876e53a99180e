//! Single sign-on with OpenID Connect providers (`[[identity_providers]]`).
//!
//! * `config`: the `[[identity_providers]]` section and its checks.
//! * `oidc`: one provider's client: discovery, keys, ID-token validation, the token
//!   endpoint's grants.
//! * `openapi`: the sign-in endpoints' part of the OpenAPI document.
//! * `portal`: the portal's "Sign in with …" (`/ui/sso/…`).
//! * `routes`: the API's sign-in endpoints (`/api/v1/auth/…`).
//!
//! **Where the code exchange happens.** The connector is the OIDC client (it alone holds the
//! client secret, the PKCE verifier and the nonce); the CLI and the portal never see an IdP
//! token. A sign-in starts at the connector, which stores the state's hash, the nonce and the
//! verifier (sealed) for ten minutes and answers the provider's authorization URL; the browser
//! comes back to the CLI's loopback listener (or to the portal's callback) with `code` and
//! `state`, which go to the connector; it takes the pending sign-in (once: a replayed state
//! finds nothing), exchanges the code, validates the ID token, and mints its own API token
//! bound to the provider's subject, with the provider's groups of that moment.
//!
//! **Groups are fresh when they matter.** Every authenticated call (request, approval,
//! extension, …) reads the session: groups older than `groups_max_age` are refreshed with the
//! provider's refresh token first (a new ID token, validated again); a provider that refuses
//! the refresh (a user it no longer knows or has disabled) ends every session of that subject
//! and, under `disabled_user_grants = "revoke"`, revokes their grants at once.

pub(crate) mod config;
pub(crate) mod oidc;
pub(crate) mod openapi;
pub(crate) mod portal;
pub(crate) mod routes;

use std::collections::HashMap;
use std::sync::Arc;

use apono_core::Credential;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::config::User;
use crate::error::ControlError;
use crate::ledger::sso::SsoSession;
use crate::model::now_ms;
use crate::plane::ControlPlane;
use config::{DisabledUserGrants, IdentityProvider};
use oidc::{OidcClient, OidcError};

/// How long a started sign-in may take.
const LOGIN_TTL_MS: i64 = 10 * 60 * 1000;

/// The name of API tokens from a CLI sign-in.
pub(crate) const CLI_TOKEN_NAME: &str = "sso cli";

/// Compares two strings in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0_u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn random_text() -> String {
    data_encoding::BASE64URL_NOPAD.encode(&rand::random::<[u8; 32]>())
}

fn hash(text: &str) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(text.as_bytes()))
}

impl From<OidcError> for ControlError {
    fn from(e: OidcError) -> Self {
        match e {
            OidcError::Refused(m) => Self::Forbidden(m),
            OidcError::InvalidGrant(_) => Self::Forbidden(e.to_string()),
            OidcError::Pending { .. } => Self::Conflict(e.to_string()),
            OidcError::Unavailable(_) => {
                tracing::warn!(error = %e, "the identity provider is unavailable");
                Self::Io {
                    context: "talking to the identity provider",
                    source: std::io::Error::other(e.to_string()),
                }
            }
        }
    }
}

/// What a finished sign-in gives: the connector's token and who it is for.
#[derive(Debug)]
pub(crate) struct SignedIn {
    pub(crate) user: User,
    pub(crate) token_id: String,
    pub(crate) token: SecretString,
    pub(crate) expires_at: i64,
}

/// A pending sign-in, as sealed in the ledger.
struct Pending {
    nonce: SecretString,
    verifier: SecretString,
    redirect_uri: String,
    /// The token name the sign-in mints (the CLI's or the portal's).
    purpose: String,
}

/// The identity providers' clients, and one lock per session so that one replica refreshes
/// a session once at a time.
#[derive(Debug, Default)]
pub(crate) struct Sso {
    clients: Vec<Arc<OidcClient>>,
    refreshing: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Sso {
    pub(crate) fn new(providers: &[IdentityProvider]) -> Self {
        Self {
            clients: providers
                .iter()
                .map(|p| Arc::new(OidcClient::new(p.clone())))
                .collect(),
            refreshing: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Warns about client secrets written inline in the configuration (`apono` store).
    pub(crate) fn warn_inline_secrets(&self) {
        for c in &self.clients {
            if c.provider.client_secret.kind() == apono_core::SecretStoreKind::Apono {
                tracing::warn!(
                    provider = %c.provider.name,
                    "the identity provider's client secret is written inline in the \
                     configuration; not recommended for production, use a secret manager"
                );
            }
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        !self.clients.is_empty()
    }

    pub(crate) fn providers(&self) -> impl Iterator<Item = &IdentityProvider> {
        self.clients.iter().map(|c| &c.provider)
    }

    /// The provider named, or the only one when none is named.
    pub(crate) fn client(&self, name: Option<&str>) -> Result<Arc<OidcClient>, ControlError> {
        match name {
            Some(name) => self
                .clients
                .iter()
                .find(|c| c.provider.name == name)
                .cloned()
                .ok_or_else(|| ControlError::NotFound(format!("identity provider {name:?}"))),
            None => match self.clients.as_slice() {
                [only] => Ok(only.clone()),
                [] => Err(ControlError::NotFound(
                    "identity provider (none is configured)".into(),
                )),
                _ => Err(ControlError::Invalid(vec![
                    "several identity providers are configured: name one".into(),
                ])),
            },
        }
    }

    /// The client secret, read from its secret store at each use.
    async fn secret(
        plane: &ControlPlane,
        client: &OidcClient,
    ) -> Result<SecretString, ControlError> {
        let value = plane
            .executor()
            .resolver()
            .resolve(&client.provider.client_secret)
            .await
            .map_err(|e| ControlError::Io {
                context: "reading the identity provider's client secret",
                source: std::io::Error::other(apono_core::error_chain(&e)),
            })?;
        value.get("client_secret").cloned().ok_or_else(|| {
            ControlError::Invalid(vec![format!(
                "identity_providers ({}).client_secret: the secret has no field \"client_secret\"",
                client.provider.name
            )])
        })
    }

    /// Starts an authorization-code sign-in: stores the pending sign-in and answers the URL to
    /// send the browser to, and the state.
    pub(crate) async fn start(
        &self,
        plane: &ControlPlane,
        provider: Option<&str>,
        redirect_uri: &str,
        purpose: &str,
    ) -> Result<(String, String), ControlError> {
        let client = self.client(provider)?;
        let state = random_text();
        let nonce = random_text();
        let verifier = random_text();
        let challenge = data_encoding::BASE64URL_NOPAD.encode(&Sha256::digest(verifier.as_bytes()));
        let url = client
            .authorization_url(redirect_uri, &state, &nonce, &challenge)
            .await?;
        let id = hash(&state);
        let keys = plane.keys().await?;
        let sealed = keys.seal(
            &format!("sso login {id}"),
            &[
                Credential::one_time("nonce", nonce),
                Credential::one_time("verifier", verifier),
                Credential::one_time("redirect_uri", redirect_uri.to_owned()),
                Credential::one_time("purpose", purpose.to_owned()),
            ],
        );
        plane
            .ledger()
            .sso_login_put(&id, &client.provider.name, &sealed, now_ms() + LOGIN_TTL_MS)
            .await?;
        Ok((url, state))
    }

    async fn take_pending(
        plane: &ControlPlane,
        state: &str,
    ) -> Result<(String, Pending), ControlError> {
        let id = hash(state);
        let refused = || {
            ControlError::Forbidden(
                "sign-in refused: unknown, expired or already used state".into(),
            )
        };
        let (provider, sealed) = plane
            .ledger()
            .sso_login_take(&id)
            .await?
            .ok_or_else(refused)?;
        let keys = plane.keys().await?;
        let pairs = keys
            .open(&format!("sso login {id}"), &sealed)
            .map_err(|_| refused())?;
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .ok_or_else(refused)
        };
        Ok((
            provider,
            Pending {
                nonce: field("nonce")?,
                verifier: field("verifier")?,
                redirect_uri: field("redirect_uri")?.expose_secret().to_owned(),
                purpose: field("purpose")?.expose_secret().to_owned(),
            },
        ))
    }

    /// Finishes an authorization-code sign-in: `state` must be a pending sign-in's (taken
    /// once), the code is exchanged with its verifier, and the ID token must carry its nonce.
    pub(crate) async fn finish(
        &self,
        plane: &ControlPlane,
        state: &str,
        code: &str,
        purpose: &str,
    ) -> Result<SignedIn, ControlError> {
        let (provider, pending) = Self::take_pending(plane, state).await?;
        if pending.purpose != purpose {
            return Err(ControlError::Forbidden(
                "sign-in refused: the state was started for another client".into(),
            ));
        }
        let client = self.client(Some(&provider))?;
        let secret = Self::secret(plane, &client).await?;
        let tokens = client
            .exchange_code(
                &secret,
                code,
                pending.verifier.expose_secret(),
                &pending.redirect_uri,
            )
            .await?;
        self.signed_in(
            plane,
            &client,
            tokens,
            Some(pending.nonce.expose_secret()),
            purpose,
        )
        .await
    }

    /// Starts a device-authorization sign-in: the user code and where to enter it, and a
    /// handle the CLI polls with (the device code itself stays in the connector).
    pub(crate) async fn device_start(
        &self,
        plane: &ControlPlane,
        provider: Option<&str>,
    ) -> Result<(String, oidc::DeviceAuthorization), ControlError> {
        let client = self.client(provider)?;
        let secret = Self::secret(plane, &client).await?;
        let device = client.device_authorization(&secret).await?;
        let handle = random_text();
        let id = hash(&handle);
        let keys = plane.keys().await?;
        let sealed = keys.seal(
            &format!("sso device {id}"),
            &[Credential::one_time(
                "device_code",
                device.device_code.expose_secret().to_owned(),
            )],
        );
        let ttl = i64::try_from(device.expires_in.min(1800) * 1000).unwrap_or(LOGIN_TTL_MS);
        plane
            .ledger()
            .sso_login_put(&id, &client.provider.name, &sealed, now_ms() + ttl)
            .await?;
        Ok((handle, device))
    }

    /// Polls a device sign-in: `Ok(None)` while the user has not finished (with whether to
    /// slow down).
    pub(crate) async fn device_poll(
        &self,
        plane: &ControlPlane,
        handle: &str,
    ) -> Result<Result<SignedIn, bool>, ControlError> {
        let id = hash(handle);
        let unknown =
            || ControlError::Forbidden("sign-in refused: unknown or expired device sign-in".into());
        let (provider, sealed) = plane
            .ledger()
            .sso_login_take(&id)
            .await?
            .ok_or_else(unknown)?;
        let keys = plane.keys().await?;
        let pairs = keys
            .open(&format!("sso device {id}"), &sealed)
            .map_err(|_| unknown())?;
        let device_code = pairs
            .into_iter()
            .find(|(n, _)| n == "device_code")
            .map(|(_, v)| v)
            .ok_or_else(unknown)?;
        let client = self.client(Some(&provider))?;
        let secret = Self::secret(plane, &client).await?;
        match client.poll_device(&secret, &device_code).await {
            Ok(tokens) => self
                .signed_in(plane, &client, tokens, None, CLI_TOKEN_NAME)
                .await
                .map(Ok),
            Err(OidcError::Pending { slow_down }) => {
                // Still waiting: put it back for the next poll.
                plane
                    .ledger()
                    .sso_login_put(&id, &provider, &sealed, now_ms() + LOGIN_TTL_MS)
                    .await?;
                Ok(Err(slow_down))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The user of a valid ID token from `client`, mapped and checked against the static users.
    fn user_of(
        plane: &ControlPlane,
        provider: &IdentityProvider,
        identity: &oidc::Identity,
    ) -> Result<User, ControlError> {
        if !provider.domain_allowed(&identity.email) {
            return Err(ControlError::Forbidden(format!(
                "sign-in refused: {} is not in an allowed email domain",
                identity.email
            )));
        }
        let groups = provider.map_groups(&identity.groups);
        let admin = groups.iter().any(|g| provider.admin_groups.contains(g));
        match plane.config().user(&identity.email) {
            None => Ok(User {
                email: identity.email.clone(),
                groups,
                admin,
            }),
            Some(fixed)
                if provider
                    .same_person
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case(&fixed.email)) =>
            {
                let mut all = fixed.groups.clone();
                all.extend(groups);
                all.sort();
                all.dedup();
                Ok(User {
                    email: fixed.email.clone(),
                    groups: all,
                    admin: fixed.admin || admin,
                })
            }
            Some(_) => Err(ControlError::Forbidden(format!(
                "sign-in refused: {} is a configured user, and identity_providers.same_person \
                 does not say the provider's user is the same person",
                identity.email
            ))),
        }
    }

    /// Validates the ID token of a token answer and mints the connector's token.
    async fn signed_in(
        &self,
        plane: &ControlPlane,
        client: &OidcClient,
        tokens: oidc::Tokens,
        nonce: Option<&str>,
        purpose: &str,
    ) -> Result<SignedIn, ControlError> {
        let id_token = tokens.id_token.as_ref().ok_or_else(|| {
            ControlError::Forbidden("sign-in refused: the provider sent no ID token".into())
        })?;
        let identity = client.validate(id_token.expose_secret(), nonce).await?;
        let user = Self::user_of(plane, &client.provider, &identity)?;
        let c = &plane.config().connector;
        let lifetime = client
            .provider
            .session_max_age
            .0
            .min(c.token_max_expiry.0)
            .min(if purpose == CLI_TOKEN_NAME {
                std::time::Duration::MAX
            } else {
                crate::portal::session::SESSION_LIFETIME
            });
        let expires_at = now_ms() + i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX / 2);
        let secret: [u8; 32] = rand::random();
        let token = format!(
            "apono_{}",
            data_encoding::BASE32_NOPAD
                .encode(&secret)
                .to_ascii_lowercase()
        );
        let info = plane
            .ledger()
            .insert_token(&user.email, &user.email, purpose, &hash(&token), expires_at)
            .await?;
        let keys = plane.keys().await?;
        let sealed_refresh = tokens.refresh_token.as_ref().map(|r| {
            keys.seal(
                &format!("sso refresh {}", info.id),
                &[Credential::one_time(
                    "refresh_token",
                    r.expose_secret().to_owned(),
                )],
            )
        });
        let session = SsoSession {
            provider: client.provider.name.clone(),
            subject: identity.subject.clone(),
            email: user.email.clone(),
            groups: user.groups.clone(),
            admin: user.admin,
            sealed_refresh,
            refreshed_at: now_ms(),
            ends_at: expires_at,
        };
        if let Err(e) = plane.ledger().sso_session_insert(&info.id, &session).await {
            // The token must not outlive a session that was not recorded.
            let _ = plane
                .ledger()
                .revoke_token(&info.id, "connector", |_| Ok(()))
                .await;
            return Err(e);
        }
        tracing::info!(provider = %client.provider.name, email = %user.email, groups = ?user.groups, "signed in through the identity provider");
        Ok(SignedIn {
            user,
            token_id: info.id,
            token: token.into(),
            expires_at,
        })
    }

    /// The user behind token `token_id` when it comes from a sign-in: its groups fresh (within
    /// `groups_max_age`, refreshed with the provider when older). `Ok(None)`: not a sign-in's
    /// token.
    pub(crate) async fn user_for_token(
        &self,
        plane: &ControlPlane,
        token_id: &str,
    ) -> Result<Option<User>, ControlError> {
        let Some(session) = plane.ledger().sso_session(token_id).await? else {
            return Ok(None);
        };
        let Ok(client) = self.client(Some(&session.provider)) else {
            // The provider was removed from the configuration: its sessions end.
            return Err(ControlError::Unauthenticated);
        };
        let max_age =
            i64::try_from(client.provider.groups_max_age.0.as_millis()).unwrap_or(i64::MAX);
        if now_ms() - session.refreshed_at <= max_age {
            return Ok(Some(User {
                email: session.email,
                groups: session.groups,
                admin: session.admin,
            }));
        }
        let lock = {
            let mut locks = self
                .refreshing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(token_id.to_owned()).or_default().clone()
        };
        let _guard = lock.lock().await;
        // Another call may have refreshed it meanwhile.
        let Some(session) = plane.ledger().sso_session(token_id).await? else {
            return Ok(None);
        };
        if now_ms() - session.refreshed_at <= max_age {
            return Ok(Some(User {
                email: session.email,
                groups: session.groups,
                admin: session.admin,
            }));
        }
        self.refresh(plane, &client, token_id, &session)
            .await
            .map(Some)
    }

    async fn refresh(
        &self,
        plane: &ControlPlane,
        client: &OidcClient,
        token_id: &str,
        session: &SsoSession,
    ) -> Result<User, ControlError> {
        let stale = || {
            ControlError::Forbidden(
                "your groups from the identity provider are older than groups_max_age and cannot \
                 be refreshed: sign in again"
                    .into(),
            )
        };
        let keys = plane.keys().await?;
        let Some(refresh_token) = session
            .sealed_refresh
            .as_deref()
            .and_then(|s| keys.open(&format!("sso refresh {token_id}"), s).ok())
            .and_then(|pairs| pairs.into_iter().next().map(|(_, v)| v))
        else {
            return Err(stale());
        };
        let secret = Self::secret(plane, client).await?;
        let tokens = match client.refresh(&secret, &refresh_token).await {
            Ok(t) => t,
            Err(OidcError::InvalidGrant(code)) => {
                let keep =
                    client.provider.disabled_user_grants == DisabledUserGrants::KeepUntilExpiry;
                let revoked = plane
                    .ledger()
                    .sso_disable(
                        &session.provider,
                        &session.subject,
                        &session.email,
                        !keep,
                        &format!("the provider refused the refresh ({code})"),
                    )
                    .await?;
                plane.wake_scheduler();
                tracing::warn!(provider = %session.provider, email = %session.email, grants_revoked = revoked, "the identity provider no longer accepts this user: sessions ended");
                return Err(ControlError::Unauthenticated);
            }
            Err(e) => {
                tracing::warn!(provider = %session.provider, error = %e, "refreshing a session failed");
                return Err(stale());
            }
        };
        let Some(id_token) = tokens.id_token.as_ref() else {
            return Err(stale());
        };
        let identity = client.validate(id_token.expose_secret(), None).await?;
        if identity.subject != session.subject {
            return Err(ControlError::Forbidden(
                "the refreshed ID token names another subject".into(),
            ));
        }
        let user = Self::user_of(plane, &client.provider, &identity)?;
        if !user.email.eq_ignore_ascii_case(&session.email) {
            return Err(ControlError::Forbidden(
                "your email at the identity provider changed: sign in again".into(),
            ));
        }
        let sealed = match tokens.refresh_token.as_ref() {
            Some(new) => Some(keys.seal(
                &format!("sso refresh {token_id}"),
                &[Credential::one_time(
                    "refresh_token",
                    new.expose_secret().to_owned(),
                )],
            )),
            None => session.sealed_refresh.clone(),
        };
        plane
            .ledger()
            .sso_session_refreshed(
                token_id,
                session,
                &user.groups,
                user.admin,
                sealed.as_deref(),
            )
            .await?;
        tracing::info!(provider = %session.provider, email = %user.email, groups = ?user.groups, "groups refreshed from the identity provider");
        Ok(user)
    }
}

impl ControlPlane {
    /// Audits a refused sign-in (under `anonymous`, rate-limited as unknown tokens are) and
    /// gives the error back.
    pub(crate) async fn refused_sign_in(&self, e: ControlError) -> ControlError {
        tracing::warn!(error = %e, "sign-in refused");
        match e {
            ControlError::Forbidden(_) => self.refused("anonymous", "sso.sign_in", "-", e).await,
            other => other,
        }
    }

    /// The user `email` is now: signed in through an identity provider (their latest live
    /// session, groups refreshed when older than the bound), else in the configuration. `None`:
    /// no longer a user (a provider that disabled them, or neither).
    pub(crate) async fn current_user(&self, email: &str) -> Result<Option<User>, ControlError> {
        if self.sso().enabled()
            && let Some(token_id) = self.ledger().sso_latest_session(email).await?
        {
            return match self.sso().user_for_token(self, &token_id).await {
                Ok(Some(user)) => Ok(Some(user)),
                Ok(None) | Err(ControlError::Unauthenticated) => {
                    Ok(self.config().user(email).cloned())
                }
                Err(e) => Err(e),
            };
        }
        Ok(self.config().user(email).cloned())
    }

    /// The emails (lowercase) of the people who signed in through a configured provider and
    /// are still users: not disabled by it, or disabled under `keep_until_expiry` (their grants
    /// run out rather than being revoked at a restart).
    pub(crate) async fn sso_users(
        &self,
    ) -> Result<std::collections::HashSet<String>, ControlError> {
        if !self.sso().enabled() {
            return Ok(std::collections::HashSet::new());
        }
        Ok(self
            .ledger()
            .sso_identities()
            .await?
            .into_iter()
            .filter(|(provider, _, disabled)| {
                self.sso().providers().any(|p| {
                    &p.name == provider
                        && (!disabled
                            || p.disabled_user_grants == DisabledUserGrants::KeepUntilExpiry)
                })
            })
            .map(|(_, email, _)| email)
            .collect())
    }

    /// Revokes `token` when it is a sign-in's (`apono logout`); `false` for any other token.
    pub(crate) async fn sso_logout(&self, token: &str) -> Result<bool, ControlError> {
        let Some((id, email)) = self.ledger().token(&hash(token), 0).await? else {
            return Err(ControlError::Unauthenticated);
        };
        if self.ledger().sso_session(&id).await?.is_none() {
            return Ok(false);
        }
        self.ledger().revoke_token(&id, &email, |_| Ok(())).await?;
        Ok(true)
    }
}
