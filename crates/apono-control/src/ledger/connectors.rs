//! The agents' credentials (one row each: the connector id it serves, its hash, its expiry and
//! revoke) and when each was last used, which tells which connectors are online.
//!
//! Like API tokens, a credential is shown once at creation and only its SHA-256 is stored; it
//! is checked in the database at every request, so a revoke holds on every replica at the
//! next poll.

use serde_json::json;

use super::{Ledger, db, get, new_id};
use crate::error::ControlError;
use crate::model::{ConnectorCredential, now_ms, ts};

const COLUMNS: &str =
    "id, connector, name, created_at, expires_at, last_seen_at, revoked_at, revoked_by";

impl Ledger {
    /// Stores a credential's hash for connector `connector` (audited by `actor`); returns it
    /// as listed.
    pub(crate) async fn insert_connector_credential(
        &self,
        actor: &str,
        connector: &str,
        name: &str,
        hash: &str,
        expires_at: i64,
    ) -> Result<ConnectorCredential, ControlError> {
        let context = "creating a connector credential";
        let id = new_id("cc_");
        let now = now_ms();
        let mut tx = self.begin(context).await?;
        sqlx::query(
            "INSERT INTO connector_credentials (id, connector, credential_hash, name, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(connector)
        .bind(hash)
        .bind(name)
        .bind(now)
        .bind(expires_at)
        .execute(tx.conn())
        .await
        .map_err(db(context))?;
        tx.audit(
            actor,
            "connector_credential.created",
            &id,
            "ok",
            json!({ "connector": connector, "name": name, "expires_at": ts(expires_at) }),
        )
        .await?;
        tx.commit(context).await?;
        Ok(ConnectorCredential {
            id,
            connector: connector.to_owned(),
            name: name.to_owned(),
            status: "active".into(),
            created_at: ts(now),
            expires_at: ts(expires_at),
            last_seen_at: None,
            revoked_at: None,
            revoked_by: None,
        })
    }

    /// The live credential with this hash: `(id, connector)`. Revoked and expired credentials
    /// are not found.
    pub(crate) async fn connector_credential(
        &self,
        hash: &str,
    ) -> Result<Option<(String, String)>, ControlError> {
        sqlx::query_as(
            "SELECT id, connector FROM connector_credentials WHERE credential_hash = $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(hash)
        .bind(now_ms())
        .fetch_optional(self.store.pool())
        .await
        .map_err(db("checking a connector credential"))
    }

    /// Credentials, newest first: of one connector, or of all.
    pub(crate) async fn connector_credentials(
        &self,
        connector: Option<&str>,
    ) -> Result<Vec<ConnectorCredential>, ControlError> {
        let rows = match connector {
            Some(id) => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM connector_credentials WHERE connector = $1 ORDER BY created_at DESC, id"
            )))
            .bind(id)
            .fetch_all(self.store.pool())
            .await,
            None => sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {COLUMNS} FROM connector_credentials ORDER BY created_at DESC, id"
            )))
            .fetch_all(self.store.pool())
            .await,
        }
        .map_err(db("listing connector credentials"))?;
        let now = now_ms();
        rows.iter()
            .map(|row| {
                let expires_at: i64 = get(row, "expires_at")?;
                let revoked_at: Option<i64> = get(row, "revoked_at")?;
                let status = if revoked_at.is_some() {
                    "revoked"
                } else if expires_at <= now {
                    "expired"
                } else {
                    "active"
                };
                Ok(ConnectorCredential {
                    id: get(row, "id")?,
                    connector: get(row, "connector")?,
                    name: get(row, "name")?,
                    status: status.into(),
                    created_at: ts(get(row, "created_at")?),
                    expires_at: ts(expires_at),
                    last_seen_at: get::<Option<i64>>(row, "last_seen_at")?.map(ts),
                    revoked_at: revoked_at.map(ts),
                    revoked_by: get(row, "revoked_by")?,
                })
            })
            .collect()
    }

    /// Revokes credential `id` (audited). Revoking a revoked credential changes nothing.
    /// Returns whether it exists.
    pub(crate) async fn revoke_connector_credential(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<bool, ControlError> {
        let context = "revoking a connector credential";
        let mut tx = self.begin(context).await?;
        let found: Option<(String,)> =
            sqlx::query_as("SELECT connector FROM connector_credentials WHERE id = $1")
                .bind(id)
                .fetch_optional(tx.conn())
                .await
                .map_err(db(context))?;
        let Some((connector,)) = found else {
            return Ok(false);
        };
        let changed = sqlx::query(
            "UPDATE connector_credentials SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(actor)
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(db(context))?
        .rows_affected();
        if changed == 1 {
            tx.audit(
                actor,
                "connector_credential.revoked",
                id,
                "ok",
                json!({ "connector": connector }),
            )
            .await?;
        }
        tx.commit(context).await?;
        Ok(true)
    }

    /// Records that an agent used credential `id` now.
    pub(crate) async fn connector_seen(&self, id: &str) -> Result<(), ControlError> {
        let context = "recording an agent's poll";
        let mut tx = self.begin(context).await?;
        sqlx::query("UPDATE connector_credentials SET last_seen_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(tx.conn())
            .await
            .map_err(db(context))?;
        tx.commit(context).await
    }

    /// The connectors with a live credential used since `since`.
    pub(crate) async fn connectors_seen_since(
        &self,
        since: i64,
    ) -> Result<Vec<String>, ControlError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT connector FROM connector_credentials WHERE last_seen_at >= $1 AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(since)
        .bind(now_ms())
        .fetch_all(self.store.pool())
        .await
        .map_err(db("reading which connectors are online"))?;
        Ok(rows.into_iter().map(|(c,)| c).collect())
    }
}
