//! The audit log: an append-only table where each row's link is an HMAC-SHA-256, under the
//! audit key derived from the connector's master key, over the previous row's link and the
//! row's own fields, so that changing, inserting or deleting a row breaks the chain
//! ([`verify`]). The key is not in the database: someone who can write the database but does
//! not hold the key cannot rewrite a record and recompute the links after it. Each row names
//! the key id it was linked under (`key_id`); rows written before the chain was keyed
//! (`key_id` empty) carry a plain SHA-256 link: `verify` accepts them only as a prefix
//! followed by keyed rows (every connector writes a keyed row when it starts), so an unkeyed
//! rewrite of the whole chain is refused too.
//!
//! Rows never hold secrets: callers pass names, ids, statuses and error messages (which are
//! secret-free by the contracts of `apono-core`).

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use super::store::Store;
use crate::error::ControlError;
use crate::keys::Keys;

/// One audit record, as stored and exported.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When (Unix milliseconds).
    pub at: i64,
    /// Who: a user's email, or `connector` for the scheduler.
    pub actor: String,
    /// What: `request.created`, `grant.succeeded`, `revoke.failed`, `token.used`, …
    pub action: String,
    /// On what: a request, grant, integration or token id.
    pub subject: String,
    /// `ok`, `failed`, `denied`, …
    pub outcome: String,
    /// Further details as JSON text.
    pub details: String,
    /// Hash of the previous record (`genesis` for the first).
    pub prev_hash: String,
    /// Hash of this record.
    pub hash: String,
    /// The id of the key this record's link is an HMAC under (empty: written before the
    /// chain was keyed, a plain SHA-256).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key_id: String,
}

/// What is appended; the chain fields are computed.
#[derive(Clone, Debug)]
pub struct AuditEntry<'a> {
    /// Who.
    pub actor: &'a str,
    /// What.
    pub action: &'a str,
    /// On what.
    pub subject: &'a str,
    /// The outcome.
    pub outcome: &'a str,
    /// Details (no secrets).
    pub details: serde_json::Value,
}

/// The keyed link: `fields` are actor, action, subject, outcome and details, in that order.
fn keyed_link(keys: &Keys, prev: &str, seq: i64, at: i64, fields: [&str; 5]) -> String {
    let (seq, at) = (seq.to_string(), at.to_string());
    let mut parts = vec![prev, seq.as_str(), at.as_str()];
    parts.extend(fields);
    keys.audit_link(&parts)
}

/// The link of a record written before the chain was keyed: SHA-256 over the same fields.
fn chain_hash(prev: &str, seq: i64, at: i64, fields: [&str; 5]) -> String {
    let mut h = Sha256::new();
    let (seq, at) = (seq.to_string(), at.to_string());
    for part in [prev, seq.as_str(), at.as_str()].into_iter().chain(fields) {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    data_encoding::HEXLOWER.encode(&h.finalize())
}

/// Appends `entry` inside the caller's transaction (so the audit row commits with the change it
/// describes). Writers are serialised by the single `audit_head` row.
pub(crate) async fn append(
    conn: &mut AnyConnection,
    keys: &Keys,
    entry: AuditEntry<'_>,
) -> Result<(), ControlError> {
    let mut chain = Chain::open(conn, keys).await?;
    chain.append(conn, entry).await?;
    chain.close(conn).await
}

/// Several appends in one transaction: the head row is locked and read once, each entry is one
/// `INSERT` chained to the one before, and the head is written once at the end.
pub(crate) struct Chain<'k> {
    keys: &'k Keys,
    seq: i64,
    hash: String,
    appended: bool,
}

impl<'k> Chain<'k> {
    /// Locks the head row and reads it in one statement (an `UPDATE … RETURNING`, which on
    /// PostgreSQL holds the row lock until commit and on SQLite runs inside the write
    /// transaction).
    pub(crate) async fn open(
        conn: &mut AnyConnection,
        keys: &'k Keys,
    ) -> Result<Self, ControlError> {
        let err = |e| ControlError::store("appending to the audit log", e);
        let (seq, hash): (i64, String) =
            sqlx::query_as("UPDATE audit_head SET seq = seq WHERE id = 1 RETURNING seq, hash")
                .fetch_one(&mut *conn)
                .await
                .map_err(err)?;
        Ok(Self {
            keys,
            seq,
            hash,
            appended: false,
        })
    }

    /// Appends one record after the previous one.
    pub(crate) async fn append(
        &mut self,
        conn: &mut AnyConnection,
        entry: AuditEntry<'_>,
    ) -> Result<(), ControlError> {
        let seq = self.seq + 1;
        let at = crate::model::now_ms();
        let details = entry.details.to_string();
        let hash = keyed_link(
            self.keys,
            &self.hash,
            seq,
            at,
            [
                entry.actor,
                entry.action,
                entry.subject,
                entry.outcome,
                &details,
            ],
        );
        sqlx::query(
            "INSERT INTO audit (seq, at, actor, action, subject, outcome, details, prev_hash, hash, key_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(seq)
        .bind(at)
        .bind(entry.actor)
        .bind(entry.action)
        .bind(entry.subject)
        .bind(entry.outcome)
        .bind(details)
        .bind(&self.hash)
        .bind(&hash)
        .bind(self.keys.id())
        .execute(&mut *conn)
        .await
        .map_err(|e| ControlError::store("appending to the audit log", e))?;
        self.seq = seq;
        self.hash = hash;
        self.appended = true;
        Ok(())
    }

    /// Appends `entries` in order, as few multi-row `INSERT`s as the driver's parameter limit
    /// allows (the chain is the same as with one `append` each).
    pub(crate) async fn append_all(
        &mut self,
        conn: &mut AnyConnection,
        entries: &[AuditEntry<'_>],
    ) -> Result<(), ControlError> {
        const ROWS: usize = 90;
        for chunk in entries.chunks(ROWS) {
            let mut rows = Vec::with_capacity(chunk.len());
            for entry in chunk {
                let seq = self.seq + 1;
                let at = crate::model::now_ms();
                let details = entry.details.to_string();
                let hash = keyed_link(
                    self.keys,
                    &self.hash,
                    seq,
                    at,
                    [
                        entry.actor,
                        entry.action,
                        entry.subject,
                        entry.outcome,
                        &details,
                    ],
                );
                rows.push((seq, at, entry, details, self.hash.clone(), hash.clone()));
                self.seq = seq;
                self.hash = hash;
            }
            let values: Vec<String> = (0..rows.len())
                .map(|r| {
                    let b = r * 10;
                    format!("({})", super::marks(b + 1, 10))
                })
                .collect();
            // Only placeholders are added to the text; every value is bound.
            let sql = format!(
                "INSERT INTO audit (seq, at, actor, action, subject, outcome, details, prev_hash, hash, key_id) VALUES {}",
                values.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (seq, at, entry, details, prev, hash) in rows {
                query = query
                    .bind(seq)
                    .bind(at)
                    .bind(entry.actor.to_owned())
                    .bind(entry.action.to_owned())
                    .bind(entry.subject.to_owned())
                    .bind(entry.outcome.to_owned())
                    .bind(details)
                    .bind(prev)
                    .bind(hash)
                    .bind(self.keys.id().to_owned());
            }
            query
                .execute(&mut *conn)
                .await
                .map_err(|e| ControlError::store("appending to the audit log", e))?;
            self.appended = true;
        }
        Ok(())
    }

    /// Writes the new head (nothing if nothing was appended).
    pub(crate) async fn close(self, conn: &mut AnyConnection) -> Result<(), ControlError> {
        if !self.appended {
            return Ok(());
        }
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(self.seq)
            .bind(self.hash)
            .execute(&mut *conn)
            .await
            .map_err(|e| ControlError::store("appending to the audit log", e))?;
        Ok(())
    }
}

/// Reads records with `seq > after`, at most `limit`, optionally only those about `subject`.
pub async fn records(
    store: &Store,
    after: i64,
    limit: i64,
    subject: Option<&str>,
) -> Result<Vec<AuditRecord>, ControlError> {
    let rows = match subject {
        Some(subject) => sqlx::query(
            "SELECT seq, at, actor, action, subject, outcome, details, prev_hash, hash, key_id FROM audit WHERE seq > $1 AND subject = $2 ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(subject)
        .bind(limit)
        .fetch_all(store.pool())
        .await,
        None => sqlx::query(
            "SELECT seq, at, actor, action, subject, outcome, details, prev_hash, hash, key_id FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(store.pool())
        .await,
    }
    .map_err(|e| ControlError::store("reading the audit log", e))?;
    rows.iter()
        .map(|r| {
            Ok(AuditRecord {
                seq: r.try_get(0)?,
                at: r.try_get(1)?,
                actor: r.try_get(2)?,
                action: r.try_get(3)?,
                subject: r.try_get(4)?,
                outcome: r.try_get(5)?,
                details: r.try_get(6)?,
                prev_hash: r.try_get(7)?,
                hash: r.try_get(8)?,
                key_id: r.try_get::<Option<String>, _>(9)?.unwrap_or_default(),
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(|e| ControlError::store("reading the audit log", e))
}

/// The result of [`verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    /// The id of the key the links were checked with.
    pub key_id: String,
    /// Records checked.
    pub records: u64,
    /// Of those, records written before the chain was keyed (plain SHA-256 links).
    pub unkeyed: u64,
    /// The first record whose hash or link does not match, if any.
    pub first_broken: Option<i64>,
}

impl ChainReport {
    /// Whether the chain is intact.
    pub fn is_intact(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// Recomputes every link with `keys` and checks every link, the sequence's continuity and
/// the head. A record linked under another key, or an unkeyed record after a keyed one, breaks
/// the chain.
pub async fn verify(store: &Store, keys: &Keys) -> Result<ChainReport, ControlError> {
    let mut prev = "genesis".to_owned();
    let mut expected_seq = 1;
    let mut count = 0;
    let mut unkeyed = 0;
    let mut keyed_seen = false;
    let mut after = 0;
    let report = |records, unkeyed, first_broken| ChainReport {
        key_id: keys.id().to_owned(),
        records,
        unkeyed,
        first_broken,
    };
    loop {
        let batch = records(store, after, 1000, None).await?;
        if batch.is_empty() {
            break;
        }
        for r in &batch {
            let fields = [
                r.actor.as_str(),
                &r.action,
                &r.subject,
                &r.outcome,
                &r.details,
            ];
            let hash = if r.key_id.is_empty() && !keyed_seen {
                unkeyed += 1;
                chain_hash(&prev, r.seq, r.at, fields)
            } else if r.key_id == keys.id() {
                keyed_seen = true;
                keyed_link(keys, &prev, r.seq, r.at, fields)
            } else {
                return Ok(report(count, unkeyed, Some(r.seq)));
            };
            if r.seq != expected_seq || r.prev_hash != prev || r.hash != hash {
                return Ok(report(count, unkeyed, Some(r.seq)));
            }
            prev = hash;
            expected_seq += 1;
            count += 1;
            after = r.seq;
        }
    }
    if count > 0 && !keyed_seen {
        // Every connector since the chain was keyed writes a keyed record when it starts, so
        // a chain without one was rewritten from its start by someone without the key.
        return Ok(report(0, unkeyed, Some(1)));
    }
    let (seq, head): (i64, String) =
        sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_one(store.pool())
            .await
            .map_err(|e| ControlError::store("reading the audit head", e))?;
    if seq != expected_seq - 1 || head != prev {
        // Rows were deleted from the end.
        return Ok(report(count, unkeyed, Some(expected_seq)));
    }
    Ok(report(count, unkeyed, None))
}
