//! The SQL store: SQLite (embedded, default) or PostgreSQL, through sqlx's `Any` driver with
//! runtime-checked queries and embedded migrations.

use std::fmt;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor as _};

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
const MIGRATIONS: &[(i64, &str)] = &[(
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
)];

/// A connection pool to the control plane's database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
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
            // One writer at a time is what SQLite allows anyway; a single connection avoids
            // lock-upgrade deadlocks between pooled connections.
            Backend::Sqlite => options.max_connections(1).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    Ok(())
                })
            }),
            Backend::Postgres => options.max_connections(16),
        };
        let pool = options
            .connect(url)
            .await
            .map_err(|e| ControlError::store("connecting to the database", e))?;
        let store = Self { pool, backend };
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
            let mut tx = self.pool.begin().await.map_err(err)?;
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
                continue;
            }
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
                    .execute(&mut *tx)
                    .await
                    .map_err(err)?;
            }
            sqlx::query("INSERT INTO apono_migrations (version, applied_at) VALUES ($1, $2)")
                .bind(version)
                .bind(crate::now_ms())
                .execute(&mut *tx)
                .await
                .map_err(err)?;
            tx.commit().await.map_err(err)?;
        }
        Ok(())
    }
}
