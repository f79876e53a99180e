//! The SQL store: SQLite (embedded, default) or PostgreSQL, through sqlx's `Any` driver with
//! runtime-checked queries and embedded migrations.
//!
//! # Write transactions
//!
//! Every transaction that writes starts with [`Store::begin`]. On SQLite that is
//! `BEGIN IMMEDIATE`, taken behind an in-process gate:
//!
//! * `BEGIN IMMEDIATE` takes the database's write lock when the transaction starts, where
//!   SQLite's busy handler (`busy_timeout`) waits for another process (`apono-connector tokens
//!   create` next to a running connector) to finish. A deferred `BEGIN` whose first statement
//!   reads would take the lock only at its first write, and an upgrade from a read snapshot to
//!   a write fails at once with `SQLITE_BUSY` ("database is locked") whatever the busy timeout,
//!   because waiting could not make that snapshot current again.
//! * The gate (an async mutex) lets only one task of this process hold a write transaction at
//!   a time, so writers of one process queue in tokio rather than in SQLite's sleeping busy
//!   handler, and the pool's other connections serve readers meanwhile (WAL mode: readers never
//!   wait for the writer).
//!
//! On PostgreSQL [`Store::begin`] is a plain `BEGIN`; row locks order concurrent writers.
//!
//! Each commit of a write transaction bumps a counter that [`Store::commits`] lets tasks of this
//! process wait on (the API's watch endpoints); commits of other processes are not seen there.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyConnection, AnyPool, Executor as _, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard, watch};

use crate::error::ControlError;

/// Which database a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file: one connector process.
    Sqlite,
    /// PostgreSQL: several replicas may share it.
    Postgres,
}

/// The embedded migrations: `(version, statements)`. Portable SQL only (times are Unix
/// milliseconds in `BIGINT`, JSON is `TEXT`).
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r"
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    user_email TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    requester TEXT NOT NULL,
    flow TEXT NOT NULL,
    integration TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_ids TEXT NOT NULL,
    permission TEXT NOT NULL,
    justification TEXT NOT NULL,
    duration_secs BIGINT NOT NULL,
    status TEXT NOT NULL,
    decided_by TEXT,
    reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX requests_by_requester ON requests (requester);
CREATE INDEX requests_by_status ON requests (status);
CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    integration TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    resource TEXT NOT NULL,
    permission TEXT NOT NULL,
    grantee_email TEXT NOT NULL,
    grantee TEXT NOT NULL,
    account_name TEXT NOT NULL,
    status TEXT NOT NULL,
    state TEXT,
    access TEXT,
    credential_status TEXT,
    duration_secs BIGINT NOT NULL,
    expires_at BIGINT,
    activated_at BIGINT,
    revoked_at BIGINT,
    revoke_requested_at BIGINT,
    last_error TEXT,
    lease_owner TEXT,
    leased_until BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX grants_by_status ON grants (status);
CREATE INDEX grants_by_holder ON grants (grantee_email, integration, resource_id, permission);
CREATE TABLE request_grants (
    request_id TEXT NOT NULL,
    grant_id TEXT NOT NULL,
    PRIMARY KEY (request_id, grant_id)
);
CREATE INDEX request_grants_by_grant ON request_grants (grant_id);
CREATE TABLE jobs (
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    target TEXT NOT NULL,
    due_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    last_error TEXT,
    lease_owner TEXT,
    leased_until BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (kind, subject)
);
CREATE INDEX jobs_by_due ON jobs (due_at);
CREATE TABLE inventory (
    integration TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    discovered_at BIGINT NOT NULL
);
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, 'genesis');
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
)
",
    ),
    (
        2,
        // `all_of` approvals, one row per approver; which entry each is counted for is
        // recomputed (a matching), never stored.
        r"
CREATE TABLE request_approvals (
    request_id TEXT NOT NULL,
    approver TEXT NOT NULL,
    decided_at BIGINT NOT NULL,
    PRIMARY KEY (request_id, approver)
)
",
    ),
    (
        3,
        r"
CREATE TABLE grant_counts (
    status TEXT PRIMARY KEY,
    n BIGINT NOT NULL
);
CREATE INDEX jobs_by_kind_due ON jobs (kind, due_at)
",
    ),
    (
        4,
        // Who asked for a grant's early end (a user's email, or `connector` for someone removed
        // from the configuration); empty when it ended at its expiry.
        r"
ALTER TABLE grants ADD COLUMN revoke_requested_by TEXT
",
    ),
    (
        5,
        // One-time credentials sealed until shown (`v1:<key id>:<nonce>:<ciphertext>`); the
        // key id each audit link is an HMAC under; tokens with a name, an expiry and a revoke.
        r"
ALTER TABLE grants ADD COLUMN sealed_credentials TEXT;
ALTER TABLE audit ADD COLUMN key_id TEXT;
ALTER TABLE tokens ADD COLUMN name TEXT;
ALTER TABLE tokens ADD COLUMN expires_at BIGINT;
ALTER TABLE tokens ADD COLUMN revoked_at BIGINT;
ALTER TABLE tokens ADD COLUMN revoked_by TEXT;
CREATE INDEX tokens_by_user ON tokens (user_email)
",
    ),
    (
        6,
        // The notifications outbox (`ledger/outbox.rs`): one row per notification per channel,
        // written in the transaction of the change it tells of, deleted once delivered. The id
        // is the delivery id receivers deduplicate on; `failed_at` marks one given up.
        r"
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    subject TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    expires_at BIGINT,
    last_error TEXT,
    lease_owner TEXT,
    leased_until BIGINT,
    failed_at BIGINT
);
CREATE INDEX notifications_by_due ON notifications (due_at)
",
    ),
    (
        7,
        // Agents' credentials (`apono-connector connectors create`): hashed, expiring,
        // revocable; `last_seen_at` says whether the connector they serve is online.
        r"
CREATE TABLE connector_credentials (
    id TEXT PRIMARY KEY,
    connector TEXT NOT NULL,
    credential_hash TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_seen_at BIGINT,
    revoked_at BIGINT,
    revoked_by TEXT
);
CREATE INDEX connector_credentials_by_connector ON connector_credentials (connector)
",
    ),
    (
        9,
        // Single sign-on (identity providers): pending sign-ins (keyed by a hash of the state
        // or device handle, sealed nonce/verifier/device code, taken once), sessions (the API
        // token a sign-in minted, the groups of the last sign-in or refresh, the sealed refresh
        // token) and the identities seen (a subject keeps its email; disabled ones).
        r"
CREATE TABLE sso_logins (
    id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    sealed TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE sso_sessions (
    token_id TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    email TEXT NOT NULL,
    groups TEXT NOT NULL,
    admin BIGINT NOT NULL,
    refresh_token TEXT,
    refreshed_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL
);
CREATE INDEX sso_sessions_by_subject ON sso_sessions (provider, subject);
CREATE TABLE sso_identities (
    provider TEXT NOT NULL,
    subject TEXT NOT NULL,
    email TEXT NOT NULL,
    disabled_at BIGINT,
    PRIMARY KEY (provider, subject)
)
",
    ),
];

/// A connection pool to the control plane's database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite only: one write transaction of this process at a time.
    write_gate: Option<Arc<Mutex<()>>>,
    /// Counts this process's committed write transactions.
    commits: Arc<watch::Sender<u64>>,
}

/// How long SQLite waits for another process's write lock before "database is locked".
const SQLITE_BUSY_TIMEOUT_MS: u32 = 30_000;

/// SQLite pool size: one writer at a time (the gate) plus readers.
const SQLITE_CONNECTIONS: u32 = 4;

/// A write transaction from [`Store::begin`]: derefs to the connection, and must be committed
/// (dropping it rolls back).
pub(crate) struct WriteTx {
    tx: Transaction<'static, Any>,
    _gate: Option<OwnedMutexGuard<()>>,
    commits: Arc<watch::Sender<u64>>,
}

impl WriteTx {
    /// Commits, then lets the next writer in and wakes the tasks waiting on
    /// [`Store::commits`].
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    /// Rolls back, then lets the next writer in.
    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl Deref for WriteTx {
    type Target = AnyConnection;
    fn deref(&self) -> &AnyConnection {
        &self.tx
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

impl Store {
    /// Connects to `url` (`sqlite://path?mode=rwc` or `postgres://…`) and applies the embedded
    /// migrations.
    pub async fn open(url: &str) -> Result<Self, ControlError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(30));
        let options = match backend {
            // Write transactions are `BEGIN IMMEDIATE` behind the write gate (see the module
            // docs), so several connections never deadlock on a lock upgrade; the others read.
            Backend::Sqlite => {
                options
                    .max_connections(SQLITE_CONNECTIONS)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // The busy timeout first: the statements below may already wait for
                            // another process.
                            conn.execute(sqlx::AssertSqlSafe(format!(
                                "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"
                            )))
                            .await?;
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            Ok(())
                        })
                    })
            }
            Backend::Postgres => options.max_connections(16),
        };
        let pool = options
            .connect(url)
            .await
            .map_err(|e| ControlError::store("connecting to the database", e))?;
        let write_gate = (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(())));
        let store = Self {
            pool,
            backend,
            write_gate,
            commits: Arc::new(watch::Sender::new(0)),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a write transaction: `BEGIN IMMEDIATE` behind the write gate on SQLite, `BEGIN`
    /// on PostgreSQL (see the module docs).
    pub(crate) async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        match &self.write_gate {
            Some(gate) => {
                let guard = gate.clone().lock_owned().await;
                let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
                Ok(WriteTx {
                    tx,
                    _gate: Some(guard),
                    commits: self.commits.clone(),
                })
            }
            None => Ok(WriteTx {
                tx: self.pool.begin().await?,
                _gate: None,
                commits: self.commits.clone(),
            }),
        }
    }

    /// A receiver that sees each commit of a write transaction of this process (a counter).
    pub(crate) fn commits(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn migrate(&self) -> Result<(), ControlError> {
        let err = |e| ControlError::store("migrating the database", e);
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS apono_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await
        .map_err(err)?;
        for (version, sql) in MIGRATIONS {
            let mut tx = self.begin().await.map_err(err)?;
            if self.backend == Backend::Postgres {
                // Replicas starting together migrate one at a time.
                sqlx::query("LOCK TABLE apono_migrations IN EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
            let done: Option<(i64,)> =
                sqlx::query_as("SELECT version FROM apono_migrations WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(err)?;
            if done.is_some() {
                tx.rollback().await.map_err(err)?;
                continue;
            }
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
            if *version == 3 {
                // The status counters start from the grants that exist.
                super::gauges::seed(&mut tx).await.map_err(err)?;
            }
            sqlx::query("INSERT INTO apono_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(crate::model::now_ms())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
        }
        Ok(())
    }
}
