//! The ledger's part of single sign-on: pending sign-ins (one row per `state` or device
//! handle, taken once), sessions (the connector's token from a sign-in, with the groups of the
//! last sign-in or refresh and the sealed refresh token) and the identities seen (a provider's
//! subject with its email, and whether the provider disabled it).

use apono_core::{GrantStatus, RequestStatus};
use serde_json::json;

use super::{Ledger, db, get, request_grant_revoke};
use crate::error::ControlError;
use crate::model::now_ms;

/// A session row.
#[derive(Clone, Debug)]
pub(crate) struct SsoSession {
    pub(crate) provider: String,
    pub(crate) subject: String,
    pub(crate) email: String,
    pub(crate) groups: Vec<String>,
    pub(crate) admin: bool,
    /// The refresh token, sealed under the master key (bound to the token id).
    pub(crate) sealed_refresh: Option<String>,
    pub(crate) refreshed_at: i64,
    pub(crate) ends_at: i64,
}

impl Ledger {
    /// Stores a pending sign-in under `id` (a hash of its state or device handle).
    pub(crate) async fn sso_login_put(
        &self,
        id: &str,
        provider: &str,
        sealed: &str,
        expires_at: i64,
    ) -> Result<(), ControlError> {
        let context = "storing a pending sign-in";
        let mut tx = self.begin(context).await?;
        // Old pending sign-ins are swept as new ones come.
        sqlx::query("DELETE FROM sso_logins WHERE expires_at < $1")
            .bind(now_ms())
            .execute(tx.conn())
            .await
            .map_err(db(context))?;
        sqlx::query(
            "INSERT INTO sso_logins (id, provider, sealed, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(provider)
        .bind(sealed)
        .bind(expires_at)
        .execute(tx.conn())
        .await
        .map_err(db(context))?;
        tx.commit(context).await
    }

    /// Takes the pending sign-in `id` (deleted: a state is used once): `(provider, sealed)`
    /// while it has not expired.
    pub(crate) async fn sso_login_take(
        &self,
        id: &str,
    ) -> Result<Option<(String, String)>, ControlError> {
        let context = "taking a pending sign-in";
        let mut tx = self.begin(context).await?;
        let row: Option<(String, String, i64)> = sqlx::query_as(
            "DELETE FROM sso_logins WHERE id = $1 RETURNING provider, sealed, expires_at",
        )
        .bind(id)
        .fetch_optional(tx.conn())
        .await
        .map_err(db(context))?;
        tx.commit(context).await?;
        Ok(row
            .filter(|(_, _, expires_at)| *expires_at > now_ms())
            .map(|(p, s, _)| (p, s)))
    }

    /// Records a sign-in: the session behind token `token_id`, and the identity (a subject
    /// keeps its email; the same email under another subject of the provider is refused).
    pub(crate) async fn sso_session_insert(
        &self,
        token_id: &str,
        session: &SsoSession,
    ) -> Result<(), ControlError> {
        let context = "recording a sign-in";
        let mut tx = self.begin(context).await?;
        let other: Option<(String,)> = sqlx::query_as(
            "SELECT subject FROM sso_identities WHERE provider = $1 AND LOWER(email) = LOWER($2) AND subject <> $3",
        )
        .bind(&session.provider)
        .bind(&session.email)
        .bind(&session.subject)
        .fetch_optional(tx.conn())
        .await
        .map_err(db(context))?;
        if other.is_some() {
            return Err(ControlError::Forbidden(format!(
                "{} belongs to another account of this identity provider",
                session.email
            )));
        }
        sqlx::query("DELETE FROM sso_identities WHERE provider = $1 AND subject = $2")
            .bind(&session.provider)
            .bind(&session.subject)
            .execute(tx.conn())
            .await
            .map_err(db(context))?;
        sqlx::query("INSERT INTO sso_identities (provider, subject, email, disabled_at) VALUES ($1, $2, $3, NULL)")
            .bind(&session.provider)
            .bind(&session.subject)
            .bind(&session.email)
            .execute(tx.conn())
            .await
            .map_err(db(context))?;
        sqlx::query(
            "INSERT INTO sso_sessions (token_id, provider, subject, email, groups, admin, refresh_token, refreshed_at, ends_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(token_id)
        .bind(&session.provider)
        .bind(&session.subject)
        .bind(&session.email)
        .bind(json!(session.groups).to_string())
        .bind(i64::from(session.admin))
        .bind(session.sealed_refresh.as_deref())
        .bind(session.refreshed_at)
        .bind(session.ends_at)
        .execute(tx.conn())
        .await
        .map_err(db(context))?;
        tx.audit(
            &session.email,
            "sso.signed_in",
            token_id,
            "ok",
            json!({ "provider": session.provider, "subject": session.subject, "groups": session.groups, "admin": session.admin }),
        )
        .await?;
        tx.commit(context).await
    }

    /// The session behind token `token_id`, if it is one.
    pub(crate) async fn sso_session(
        &self,
        token_id: &str,
    ) -> Result<Option<SsoSession>, ControlError> {
        let context = "reading a sign-in session";
        let row = sqlx::query(
            "SELECT provider, subject, email, groups, admin, refresh_token, refreshed_at, ends_at FROM sso_sessions WHERE token_id = $1",
        )
        .bind(token_id)
        .fetch_optional(self.store.pool())
        .await
        .map_err(db(context))?;
        let Some(row) = row else { return Ok(None) };
        let groups: String = get(&row, "groups")?;
        Ok(Some(SsoSession {
            provider: get(&row, "provider")?,
            subject: get(&row, "subject")?,
            email: get(&row, "email")?,
            groups: serde_json::from_str(&groups)
                .map_err(|_| ControlError::Corrupt("a session's groups".into()))?,
            admin: get::<i64>(&row, "admin")? != 0,
            sealed_refresh: get(&row, "refresh_token")?,
            refreshed_at: get(&row, "refreshed_at")?,
            ends_at: get(&row, "ends_at")?,
        }))
    }

    /// The token id of `email`'s most recently refreshed live session, if any.
    pub(crate) async fn sso_latest_session(
        &self,
        email: &str,
    ) -> Result<Option<String>, ControlError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT s.token_id FROM sso_sessions s JOIN tokens t ON t.id = s.token_id WHERE LOWER(s.email) = LOWER($1) AND t.revoked_at IS NULL AND t.expires_at > $2 ORDER BY s.refreshed_at DESC LIMIT 1",
        )
        .bind(email)
        .bind(now_ms())
        .fetch_optional(self.store.pool())
        .await
        .map_err(db("finding a sign-in session"))?;
        Ok(row.map(|(id,)| id))
    }

    /// Records a refresh: the groups now, the refresh token (a new one when the provider
    /// rotated it) and when (audited when the groups or the admin flag changed).
    pub(crate) async fn sso_session_refreshed(
        &self,
        token_id: &str,
        before: &SsoSession,
        groups: &[String],
        admin: bool,
        sealed_refresh: Option<&str>,
    ) -> Result<(), ControlError> {
        let context = "recording a refresh";
        let mut tx = self.begin(context).await?;
        sqlx::query("UPDATE sso_sessions SET groups = $1, admin = $2, refresh_token = $3, refreshed_at = $4 WHERE token_id = $5")
            .bind(json!(groups).to_string())
            .bind(i64::from(admin))
            .bind(sealed_refresh)
            .bind(now_ms())
            .bind(token_id)
            .execute(tx.conn())
            .await
            .map_err(db(context))?;
        if before.groups != groups || before.admin != admin {
            tx.audit(
                &before.email,
                "sso.groups_changed",
                token_id,
                "ok",
                json!({ "provider": before.provider, "before": before.groups, "after": groups, "admin": admin }),
            )
            .await?;
        }
        tx.commit(context).await
    }

    /// The identity provider no longer knows `subject` or has disabled it: every session of
    /// it ends (its tokens are revoked) and, when `revoke_grants`, the live grants of its email
    /// are revoked and its pending requests withdrawn. Returns how many grants were revoked.
    pub(crate) async fn sso_disable(
        &self,
        provider: &str,
        subject: &str,
        email: &str,
        revoke_grants: bool,
        why: &str,
    ) -> Result<usize, ControlError> {
        let context = "ending a disabled identity's sessions";
        let now = now_ms();
        let mut tx = self.begin(context).await?;
        sqlx::query(
            "UPDATE sso_identities SET disabled_at = $1 WHERE provider = $2 AND subject = $3",
        )
        .bind(now)
        .bind(provider)
        .bind(subject)
        .execute(tx.conn())
        .await
        .map_err(db(context))?;
        sqlx::query(
            "UPDATE tokens SET revoked_at = $1, revoked_by = 'connector' WHERE revoked_at IS NULL AND id IN (SELECT token_id FROM sso_sessions WHERE provider = $2 AND subject = $3)",
        )
        .bind(now)
        .bind(provider)
        .bind(subject)
        .execute(tx.conn())
        .await
        .map_err(db(context))?;
        tx.audit(
            "connector",
            "sso.identity_disabled",
            email,
            "ok",
            json!({ "provider": provider, "subject": subject, "reason": why, "grants": if revoke_grants { "revoke" } else { "keep_until_expiry" } }),
        )
        .await?;
        let mut revoked = 0;
        if revoke_grants {
            let live: Vec<(String,)> = sqlx::query_as(
                "SELECT id FROM grants WHERE LOWER(grantee_email) = LOWER($1) AND status IN ($2, $3, $4, $5, $6) AND revoke_requested_at IS NULL",
            )
            .bind(email)
            .bind(GrantStatus::Pending.as_str())
            .bind(GrantStatus::Granting.as_str())
            .bind(GrantStatus::Active.as_str())
            .bind(GrantStatus::Revoking.as_str())
            .bind(GrantStatus::RevokeFailed.as_str())
            .fetch_all(tx.conn())
            .await
            .map_err(db(context))?;
            for (id,) in &live {
                request_grant_revoke(&mut tx, id, "connector", now).await?;
                tx.audit("connector", "grant.revoked", id, "ok", json!({ "reason": "the identity provider no longer knows the grantee or has disabled them", "grantee": email }))
                    .await?;
            }
            revoked = live.len();
            let pending: Vec<(String,)> = sqlx::query_as(
                "SELECT id FROM requests WHERE status = $1 AND LOWER(requester) = LOWER($2)",
            )
            .bind(RequestStatus::Pending.as_str())
            .bind(email)
            .fetch_all(tx.conn())
            .await
            .map_err(db(context))?;
            for (id,) in &pending {
                sqlx::query("UPDATE requests SET status = $1, decided_by = 'connector', updated_at = $2 WHERE id = $3 AND status = $4")
                    .bind(RequestStatus::Revoked.as_str())
                    .bind(now)
                    .bind(id)
                    .bind(RequestStatus::Pending.as_str())
                    .execute(tx.conn())
                    .await
                    .map_err(db(context))?;
                tx.audit("connector", "request.revoked", id, "ok", json!({ "reason": "the identity provider no longer knows the requester or has disabled them", "requester": email }))
                    .await?;
            }
        }
        tx.commit(context).await?;
        Ok(revoked)
    }

    /// The identities seen: `(provider, email, disabled)`.
    pub(crate) async fn sso_identities(&self) -> Result<Vec<(String, String, bool)>, ControlError> {
        let rows: Vec<(String, String, Option<i64>)> =
            sqlx::query_as("SELECT provider, email, disabled_at FROM sso_identities")
                .fetch_all(self.store.pool())
                .await
                .map_err(db("listing signed-in identities"))?;
        Ok(rows
            .into_iter()
            .map(|(p, e, d)| (p, e.to_ascii_lowercase(), d.is_some()))
            .collect())
    }
}
