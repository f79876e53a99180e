//! MySQL and MariaDB (integration type `mysql`), through sqlx. Tested against MariaDB.
//!
//! # Accounts and records
//!
//! * The grantee's **account** `'L'@'H'` (`L` named by [`apono_core::AccountNaming`], `H` the
//!   config's `user_host`, default `%`).
//! * MySQL has no comment on accounts that MariaDB shares, so the marker and the grants live in
//!   the connector's own database on the server, [`STATE_DATABASE`] (`apono_connector`),
//!   created on the first grant: `logins(user, host)` marks the accounts this crate created;
//!   `grants(grant_id, user, host, resource_type, resource_id, permission, expires_at)` holds
//!   one row per active grant. That database is never offered as a resource, and no permission
//!   reaches it (database-level grants are per database, never `*.*`), so the grantee cannot
//!   write what revoke reads. An account of that name without a `logins` row is a conflict,
//!   never adopted.
//!
//! # What each permission grants to `'L'@'H'`, statement by statement
//!
//! | resource | `read-only` | `read-write` | `admin` |
//! |---|---|---|---|
//! | `cluster` | for each database D offered at that time: `GRANT SELECT, SHOW VIEW ON D.*` | `GRANT SELECT, INSERT, UPDATE, DELETE, SHOW VIEW ON D.*` | `GRANT ALL PRIVILEGES ON D.*` |
//! | `database` D | `GRANT SELECT, SHOW VIEW ON D.*` | `GRANT SELECT, INSERT, UPDATE, DELETE, SHOW VIEW ON D.*` | `GRANT ALL PRIVILEGES ON D.*` (create, alter, drop, index, views, routines, events, triggers, temporary tables, locks; never `GRANT OPTION`) |
//! | `table` D.T | `GRANT SELECT, SHOW VIEW ON D.T` | `GRANT SELECT, INSERT, UPDATE, DELETE, SHOW VIEW ON D.T` | `GRANT ALL PRIVILEGES ON D.T` |
//! | `cluster`, listed role R | `GRANT R TO 'L'@'H'`, `SET DEFAULT ROLE R FOR 'L'@'H'` | | |
//!
//! No global privilege (`*.*`) is ever granted: it would reach `mysql.*` and the connector's
//! records. In database-level grants MySQL reads `_` and `%` in the name as wildcards, so they
//! are escaped (`app\_db`): a grant on `app_db` never reaches `appXdb`. MySQL and MariaDB have
//! no schemas below databases, so there is no `schema` resource. The server's roles are offered
//! only when listed in `roles`; MariaDB activates one default role per account, so with two
//! role grants at once the newer is active at login and the other needs `SET ROLE`.
//!
//! # Union and expiry
//!
//! A grant adds its privileges (`GRANT` is additive and idempotent). A revoke deletes its
//! record, then `REVOKE ALL PRIVILEGES, GRANT OPTION FROM 'L'@'H'` (and `REVOKE R FROM 'L'@'H'`
//! for a role no remaining record names) and grants the remaining records again, so the
//! account holds exactly their union. The backstop is an event,
//! `apono_connector.expire_L`: `CREATE OR REPLACE EVENT … ON SCHEDULE AT <latest end> DO ALTER
//! USER 'L'@'H' ACCOUNT LOCK`; it runs only when `event_scheduler` is `ON`, which `get-status`
//! checks.
//!
//! # Revoke and cleanup
//!
//! With no record left: `ALTER USER … ACCOUNT LOCK` first, then `KILL CONNECTION` for each of
//! its sessions, `REVOKE ALL PRIVILEGES, GRANT OPTION`, and `DROP EVENT`. Cleanup
//! (`delete-credentials`) drops the account and its `logins` row. MySQL has no object
//! ownership: tables the grantee created stay where they are; views, routines, triggers and
//! events keep naming the account as their `DEFINER` (nothing is dropped).
//!
//! Sessions run with `NO_BACKSLASH_ESCAPES` removed from `sql_mode`, so that
//! [`quote_literal`](crate::quote::quote_literal)'s backslash escaping means what it says.

use apono_core::names::MySqlUserName;
use apono_core::{
    AccountNaming, ActionContext, GrantSpec, GrantState, Granted, Inventory, ProvisionError,
    Provisioner, Resource, ResourceType, StatusCheck, StatusReport, async_trait, generate_password,
};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{Connection as _, Row};
use tracing::instrument;

use crate::quote::{Dialect, QuoteError, Sql};
use crate::quote_error;
use crate::scope::encode_id;
use crate::{
    Connection, Engine, Level, MySqlSslMode, Scope, SqlConfig, SqlGrantState, admin_credential,
    permission, permissions, resource_type,
};

const D: Dialect = Dialect::MySql;
/// The connector's database on the server: account markers and grant records.
pub const STATE_DATABASE: &str = "apono_connector";

/// The `mysql` integration's provisioner (MySQL and MariaDB).
#[derive(Debug)]
pub struct MySqlProvisioner {
    config: SqlConfig,
    naming: AccountNaming,
    target: String,
}

struct Admin<'a> {
    conn: MySqlConnection,
    target: &'a str,
}

/// One active grant, as recorded on the server.
struct Record {
    resource_type: String,
    resource_id: String,
    permission: String,
    expires_at: DateTime<Utc>,
}

impl Admin<'_> {
    async fn run(&mut self, sql: Sql) -> Result<(), ProvisionError> {
        let secret = sql.holds_secret();
        sqlx::raw_sql(sql.into_sqlx())
            .execute(&mut self.conn)
            .await
            .map(drop)
            .map_err(|e| db_error(self.target, e, secret))
    }

    async fn count(&mut self, query: &'static str, bind: &[&str]) -> Result<i64, ProvisionError> {
        let mut q = sqlx::query_scalar::<_, i64>(query);
        for b in bind {
            q = q.bind(*b);
        }
        q.fetch_one(&mut self.conn)
            .await
            .map_err(|e| db_error(self.target, e, false))
    }

    async fn strings(
        &mut self,
        query: &'static str,
        bind: &[&str],
    ) -> Result<Vec<String>, ProvisionError> {
        let mut q = sqlx::query_scalar::<_, String>(query);
        for b in bind {
            q = q.bind(*b);
        }
        q.fetch_all(&mut self.conn)
            .await
            .map_err(|e| db_error(self.target, e, false))
    }

    async fn state_exists(&mut self) -> Result<bool, ProvisionError> {
        Ok(self
            .count(
                "SELECT COUNT(*) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = 'apono_connector' AND TABLE_NAME IN ('logins', 'grants')",
                &[],
            )
            .await?
            == 2)
    }

    async fn ensure_state(&mut self) -> Result<(), ProvisionError> {
        for sql in [
            "CREATE DATABASE IF NOT EXISTS apono_connector",
            "CREATE TABLE IF NOT EXISTS apono_connector.logins (\
             user VARCHAR(128) NOT NULL, host VARCHAR(255) NOT NULL, \
             created_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
             PRIMARY KEY (user, host)) DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
            "CREATE TABLE IF NOT EXISTS apono_connector.grants (\
             grant_id VARCHAR(64) NOT NULL PRIMARY KEY, user VARCHAR(128) NOT NULL, \
             host VARCHAR(255) NOT NULL, resource_type VARCHAR(16) NOT NULL, \
             resource_id VARCHAR(1024) NOT NULL, permission VARCHAR(128) NOT NULL, \
             expires_at DATETIME(6) NOT NULL, KEY by_user (user, host)) \
             DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
        ] {
            self.run(Sql::new(D, sql)).await?;
        }
        Ok(())
    }

    async fn marked(&mut self, user: &str, host: &str) -> Result<bool, ProvisionError> {
        if !self.state_exists().await? {
            return Ok(false);
        }
        Ok(self
            .count(
                "SELECT COUNT(*) FROM apono_connector.logins WHERE user = ? AND host = ?",
                &[user, host],
            )
            .await?
            > 0)
    }

    async fn account_exists(&mut self, user: &str, host: &str) -> Result<bool, ProvisionError> {
        Ok(self
            .count(
                "SELECT COUNT(*) FROM mysql.user WHERE User = ? AND Host = ?",
                &[user, host],
            )
            .await?
            > 0)
    }

    async fn records(&mut self, user: &str, host: &str) -> Result<Vec<Record>, ProvisionError> {
        let rows = sqlx::query(
            "SELECT resource_type, resource_id, permission, \
             DATE_FORMAT(expires_at, '%Y-%m-%dT%H:%i:%s.%fZ') \
             FROM apono_connector.grants WHERE user = ? AND host = ? ORDER BY grant_id",
        )
        .bind(user)
        .bind(host)
        .fetch_all(&mut self.conn)
        .await
        .map_err(|e| db_error(self.target, e, false))?;
        let target = self.target;
        let text = |row: &sqlx::mysql::MySqlRow, i: usize| -> Result<String, ProvisionError> {
            row.try_get::<String, _>(i)
                .map_err(|e| db_error(target, e, false))
        };
        let mut out = Vec::new();
        for row in &rows {
            let expires_at = DateTime::parse_from_rfc3339(&text(row, 3)?)
                .map_err(|_| ProvisionError::Target {
                    target: target.to_owned(),
                    reason: "a grant record has an unreadable end".into(),
                    source: None,
                })?
                .with_timezone(&Utc);
            out.push(Record {
                resource_type: text(row, 0)?,
                resource_id: text(row, 1)?,
                permission: text(row, 2)?,
                expires_at,
            });
        }
        Ok(out)
    }

    async fn close(self) {
        let _ = self.conn.close().await;
    }
}

/// `'user'@'host'`.
fn account(sql: Sql, user: &str, host: &str) -> Result<Sql, QuoteError> {
    sql.literal(user)
        .map(|s| s.push("@"))
        .and_then(|s| s.literal(host))
}

/// A database name for a database-level grant, where `_` and `%` are wildcards.
fn db_pattern(db: &str) -> Result<String, ProvisionError> {
    if db.contains('\\') {
        return Err(ProvisionError::InvalidGrant(
            "database names holding a backslash are not supported".into(),
        ));
    }
    Ok(db.replace('_', "\\_").replace('%', "\\%"))
}

/// The event time: the end rounded up to the second (events keep whole seconds).
fn event_time(at: DateTime<Utc>) -> String {
    let up = if at.timestamp_subsec_nanos() > 0 {
        at + chrono::Duration::seconds(1)
    } else {
        at
    };
    up.format("%Y-%m-%d %H:%M:%S").to_string()
}

impl MySqlProvisioner {
    /// A provisioner for `config` (checked again here).
    pub fn new(config: SqlConfig) -> Result<Self, crate::ConfigError> {
        config.validate(Engine::MySql)?;
        let naming = match &config.home_domain {
            Some(domain) => AccountNaming::new().with_home_domain(domain.clone()),
            None => AccountNaming::new(),
        };
        let target = format!(
            "{}:{}",
            config.hostname,
            config.port_or_default(Engine::MySql)
        );
        Ok(Self {
            config,
            naming,
            target,
        })
    }

    /// The account name a grantee gets on this server.
    pub fn login_for(&self, grant: &GrantSpec) -> MySqlUserName {
        self.naming.account_for(&grant.grantee)
    }

    /// The host part of created accounts.
    pub fn user_host(&self) -> &str {
        self.config.user_host.as_deref().unwrap_or("%")
    }

    fn ssl_mode(&self) -> MySqlSslMode {
        self.config.ssl_mode.unwrap_or(MySqlSslMode::VerifyIdentity)
    }

    async fn connect(&self, ctx: &ActionContext) -> Result<Admin<'_>, ProvisionError> {
        let (user, password) = admin_credential(ctx)?;
        use sqlx::mysql::MySqlSslMode as Mode;
        let mut options = MySqlConnectOptions::new()
            .host(&self.config.hostname)
            .port(self.config.port_or_default(Engine::MySql))
            .username(&user)
            .password(password.expose_secret())
            .ssl_mode(match self.ssl_mode() {
                MySqlSslMode::Disabled => Mode::Disabled,
                MySqlSslMode::Preferred => Mode::Preferred,
                MySqlSslMode::Required => Mode::Required,
                MySqlSslMode::VerifyCa => Mode::VerifyCa,
                MySqlSslMode::VerifyIdentity => Mode::VerifyIdentity,
            })
            .statement_cache_capacity(0);
        if let Some(db) = &self.config.dbname {
            options = options.database(db);
        }
        if let Some(ca) = &self.config.ssl_ca {
            options = options.ssl_ca(ca);
        }
        let timeout = self.config.connect_timeout();
        let conn = ctx
            .bounded(tokio::time::sleep, async {
                match tokio::time::timeout(timeout, MySqlConnection::connect_with(&options)).await {
                    Ok(result) => result.map_err(|e| db_error(&self.target, e, false)),
                    Err(_) => Err(ProvisionError::Unavailable {
                        target: self.target.clone(),
                        source: Some("connection timed out".into()),
                    }),
                }
            })
            .await?;
        let mut admin = Admin {
            conn,
            target: &self.target,
        };
        admin
            .run(Sql::new(
                D,
                "SET SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', '')",
            ))
            .await?;
        Ok(admin)
    }

    async fn user_databases(&self, admin: &mut Admin<'_>) -> Result<Vec<String>, ProvisionError> {
        admin
            .strings(
                "SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA \
                 WHERE SCHEMA_NAME NOT IN ('mysql', 'information_schema', 'performance_schema', \
                 'sys', 'apono_connector') ORDER BY 1",
                &[],
            )
            .await
    }

    /// Checks that the scope exists and is offered.
    async fn check_scope(
        &self,
        admin: &mut Admin<'_>,
        scope: &Scope,
    ) -> Result<(), ProvisionError> {
        let Some(db) = scope.database() else {
            return Ok(());
        };
        if !self.user_databases(admin).await?.iter().any(|d| d == db) {
            return Err(ProvisionError::InvalidGrant(
                "the database does not exist or is not offered".into(),
            ));
        }
        if let Scope::Table { table, .. } = scope {
            let found = admin
                .count(
                    "SELECT COUNT(*) FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                    &[db, table],
                )
                .await?;
            if found == 0 {
                return Err(ProvisionError::InvalidGrant(
                    "the table does not exist or is not offered".into(),
                ));
            }
        }
        Ok(())
    }

    /// The `GRANT` statements of one grant.
    async fn privileges(
        &self,
        admin: &mut Admin<'_>,
        scope: &Scope,
        level: &Level,
        user: &str,
    ) -> Result<Vec<Sql>, ProvisionError> {
        let host = self.user_host();
        let q = |r: Result<Sql, QuoteError>| r.map_err(quote_error);
        let privileges = match level {
            Level::ReadOnly => "GRANT SELECT, SHOW VIEW ON ",
            Level::ReadWrite => "GRANT SELECT, INSERT, UPDATE, DELETE, SHOW VIEW ON ",
            Level::Admin => "GRANT ALL PRIVILEGES ON ",
            Level::Role(role) => {
                return Ok(vec![
                    q(Sql::new(D, "GRANT ")
                        .ident(role)
                        .map(|s| s.push(" TO "))
                        .and_then(|s| account(s, user, host)))?,
                    q(Sql::new(D, "SET DEFAULT ROLE ")
                        .ident(role)
                        .map(|s| s.push(" FOR "))
                        .and_then(|s| account(s, user, host)))?,
                ]);
            }
        };
        let on_db = |db: &str| -> Result<Sql, ProvisionError> {
            q(Sql::new(D, privileges)
                .ident(&db_pattern(db)?)
                .map(|s| s.push(".* TO ")))
            .and_then(|s| q(account(s, user, host)))
        };
        Ok(match scope {
            Scope::Cluster => self
                .user_databases(admin)
                .await?
                .iter()
                .map(|db| on_db(db))
                .collect::<Result<_, _>>()?,
            Scope::Database(db) => vec![on_db(db)?],
            Scope::Table {
                database, table, ..
            } => vec![q(Sql::new(D, privileges)
                .path(&[database, table])
                .map(|s| s.push(" TO "))
                .and_then(|s| account(s, user, host)))?],
            Scope::Schema { .. } => {
                return Err(ProvisionError::InvalidGrant(
                    "mysql has no schemas below databases".into(),
                ));
            }
        })
    }

    /// Locks the account and ends its sessions.
    async fn lock(&self, admin: &mut Admin<'_>, user: &str) -> Result<(), ProvisionError> {
        let host = self.user_host();
        admin
            .run(
                account(Sql::new(D, "ALTER USER "), user, host)
                    .map_err(quote_error)?
                    .push(" ACCOUNT LOCK"),
            )
            .await?;
        let ids: Vec<u64> = sqlx::query_scalar(
            "SELECT CAST(ID AS UNSIGNED) FROM information_schema.PROCESSLIST \
             WHERE USER = ? AND ID <> CONNECTION_ID()",
        )
        .bind(user)
        .fetch_all(&mut admin.conn)
        .await
        .map_err(|e| db_error(&self.target, e, false))?;
        for id in ids {
            match admin.run(Sql::new(D, "KILL CONNECTION ").number(id)).await {
                // Unknown thread id: the session ended meanwhile.
                Err(ProvisionError::Target { reason, .. }) if reason.contains("1094") => {}
                other => other?,
            }
        }
        Ok(())
    }

    /// Schedules the account lock at the latest end of `records`, or drops the event.
    async fn schedule(
        &self,
        admin: &mut Admin<'_>,
        user: &str,
        records: &[Record],
    ) -> Result<(), ProvisionError> {
        let event = format!("expire_{user}");
        match records.iter().map(|r| r.expires_at).max() {
            Some(end) => {
                let sql = Sql::new(D, "CREATE OR REPLACE EVENT apono_connector.")
                    .ident(&event)
                    .and_then(|s| s.push(" ON SCHEDULE AT ").literal(&event_time(end)))
                    .map(|s| s.push(" ON COMPLETION NOT PRESERVE DO ALTER USER "))
                    .and_then(|s| account(s, user, self.user_host()))
                    .map_err(quote_error)?
                    .push(" ACCOUNT LOCK");
                admin.run(sql).await
            }
            None => {
                admin
                    .run(
                        Sql::new(D, "DROP EVENT IF EXISTS apono_connector.")
                            .ident(&event)
                            .map_err(quote_error)?,
                    )
                    .await
            }
        }
    }

    async fn set_password(
        &self,
        admin: &mut Admin<'_>,
        user: &str,
    ) -> Result<SecretString, ProvisionError> {
        let password = generate_password();
        let sql = account(Sql::new(D, "ALTER USER "), user, self.user_host())
            .map(|s| s.push(" IDENTIFIED BY "))
            .and_then(|s| s.secret(&password))
            .map_err(quote_error)?
            .push(" ACCOUNT UNLOCK");
        admin.run(sql).await?;
        Ok(password)
    }

    fn access(
        &self,
        user: &MySqlUserName,
        scope: &Scope,
        grant: &GrantSpec,
        password: SecretString,
    ) -> apono_core::AccessDetails {
        let ssl_mode = serde_json::to_value(self.ssl_mode())
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Connection {
            engine: Engine::MySql,
            host: &self.config.hostname,
            port: self.config.port_or_default(Engine::MySql),
            login: user.as_str(),
            database: scope.database(),
            tls: Some(("ssl-mode", ssl_mode)),
            resource: &scope.display_name(&self.target),
            expires_at: grant.expires_at,
        }
        .access_details(password)
    }

    async fn grant(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        ctx.checkpoint()?;
        let scope = Scope::from_resource(&grant.resource, false)?;
        let level = Level::parse(&grant.permission, &scope, &self.config.roles)?;
        if grant.expires_at <= Utc::now() {
            return Err(ProvisionError::InvalidGrant(
                "the grant has already expired".into(),
            ));
        }
        let user = self.login_for(grant);
        let host = self.user_host();
        let mut admin = self.connect(ctx).await?;
        self.check_scope(&mut admin, &scope).await?;
        admin.ensure_state().await?;
        let exists = admin.account_exists(user.as_str(), host).await?;
        let marked = admin.marked(user.as_str(), host).await?;
        if exists && !marked {
            return Err(ProvisionError::Conflict {
                target: self.target.clone(),
                reason: format!("account {user} exists and was not created by this integration"),
            });
        }
        if !exists {
            sqlx::query("INSERT IGNORE INTO apono_connector.logins (user, host) VALUES (?, ?)")
                .bind(user.as_str())
                .bind(host)
                .execute(&mut admin.conn)
                .await
                .map_err(|e| db_error(&self.target, e, false))?;
            // Locked until the password is set, below.
            let create = account(Sql::new(D, "CREATE USER "), user.as_str(), host)
                .map(|s| s.push(" IDENTIFIED BY "))
                .and_then(|s| s.secret(&generate_password()))
                .map_err(quote_error)?
                .push(" ACCOUNT LOCK");
            admin.run(create).await?;
        }
        sqlx::query(
            "REPLACE INTO apono_connector.grants \
             (grant_id, user, host, resource_type, resource_id, permission, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(grant.grant_id.as_str())
        .bind(user.as_str())
        .bind(host)
        .bind(scope.resource_type())
        .bind(scope.id())
        .bind(grant.permission.as_str())
        .bind(grant.expires_at.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
        .execute(&mut admin.conn)
        .await
        .map_err(|e| db_error(&self.target, e, false))?;
        ctx.checkpoint()?;
        for sql in self
            .privileges(&mut admin, &scope, &level, user.as_str())
            .await?
        {
            admin.run(sql).await?;
        }
        let records = admin.records(user.as_str(), host).await?;
        self.schedule(&mut admin, user.as_str(), &records).await?;
        let password = self.set_password(&mut admin, user.as_str()).await?;
        admin.close().await;
        let state = SqlGrantState {
            engine: Engine::MySql,
            login: user.to_string(),
            grant_role: None,
            databases: scope.database().map(str::to_owned).into_iter().collect(),
            login_created: !exists,
        };
        Ok(Granted {
            state: GrantState::encode(&state)?,
            access: self.access(&user, &scope, grant, password),
        })
    }

    async fn revoke(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        ctx.checkpoint()?;
        let state: SqlGrantState = state.decode()?;
        let user = MySqlUserName::parse(state.login.as_str())?;
        let host = self.user_host();
        let mut admin = self.connect(ctx).await?;
        if !admin.marked(user.as_str(), host).await? {
            if admin.account_exists(user.as_str(), host).await? {
                tracing::warn!(user = %user, "account is not marked as ours; left untouched");
            }
            admin.close().await;
            return Ok(());
        }
        // This grant's permission, for a role it may have given.
        let removed: Vec<String> = sqlx::query_scalar(
            "SELECT permission FROM apono_connector.grants \
             WHERE grant_id = ? AND user = ? AND host = ?",
        )
        .bind(grant.grant_id.as_str())
        .bind(user.as_str())
        .bind(host)
        .fetch_all(&mut admin.conn)
        .await
        .map_err(|e| db_error(&self.target, e, false))?;
        sqlx::query(
            "DELETE FROM apono_connector.grants WHERE grant_id = ? AND user = ? AND host = ?",
        )
        .bind(grant.grant_id.as_str())
        .bind(user.as_str())
        .bind(host)
        .execute(&mut admin.conn)
        .await
        .map_err(|e| db_error(&self.target, e, false))?;
        let remaining = admin.records(user.as_str(), host).await?;
        if !admin.account_exists(user.as_str(), host).await? {
            self.schedule(&mut admin, user.as_str(), &[]).await?;
            admin.close().await;
            return Ok(());
        }
        if remaining.is_empty() {
            // The last grant ends access at the account first.
            self.lock(&mut admin, user.as_str()).await?;
        }
        let revoke_all = account(
            Sql::new(D, "REVOKE ALL PRIVILEGES, GRANT OPTION FROM "),
            user.as_str(),
            host,
        )
        .map_err(quote_error)?;
        admin.run(revoke_all).await?;
        // A role no remaining grant gives goes, and with no role grant left, the default role.
        let is_role = |p: &str| {
            ![
                permission::READ_ONLY,
                permission::READ_WRITE,
                permission::ADMIN,
            ]
            .contains(&p)
        };
        for role in removed.iter().filter(|p| is_role(p)) {
            if remaining.iter().all(|r| r.permission != *role) {
                let sql = Sql::new(D, "REVOKE ")
                    .ident(role)
                    .map(|s| s.push(" FROM "))
                    .and_then(|s| account(s, user.as_str(), host))
                    .map_err(quote_error)?;
                match admin.run(sql).await {
                    // Not granted any more (MariaDB's `REVOKE ALL PRIVILEGES, GRANT OPTION`
                    // takes roles too): nothing to take back.
                    Err(ProvisionError::Target { reason, .. })
                        if reason.contains("error 1919") || reason.contains("error 1962") => {}
                    other => other?,
                }
            }
        }
        if remaining.iter().all(|r| !is_role(&r.permission)) {
            admin
                .run(
                    account(
                        Sql::new(D, "SET DEFAULT ROLE NONE FOR "),
                        user.as_str(),
                        host,
                    )
                    .map_err(quote_error)?,
                )
                .await?;
        }
        for record in &remaining {
            let resource = Resource {
                integration: String::new(),
                resource_type: ResourceType::from(record.resource_type.as_str()),
                id: record.resource_id.clone(),
                name: String::new(),
                tags: Default::default(),
            };
            let scope = Scope::from_resource(&resource, false)?;
            // A role record keeps its role even if the role is no longer listed: it was then.
            let level = if is_role(&record.permission) && scope == Scope::Cluster {
                Level::Role(record.permission.clone())
            } else {
                Level::parse(&record.permission.as_str().into(), &scope, &[])?
            };
            match self.check_scope(&mut admin, &scope).await {
                Ok(()) => {}
                // Dropped since: nothing to give back there.
                Err(ProvisionError::InvalidGrant(_)) => continue,
                Err(e) => return Err(e),
            }
            for sql in self
                .privileges(&mut admin, &scope, &level, user.as_str())
                .await?
            {
                admin.run(sql).await?;
            }
        }
        self.schedule(&mut admin, user.as_str(), &remaining).await?;
        admin.close().await;
        Ok(())
    }

    async fn delete(&self, ctx: &ActionContext, state: &GrantState) -> Result<(), ProvisionError> {
        ctx.checkpoint()?;
        let state: SqlGrantState = state.decode()?;
        let user = MySqlUserName::parse(state.login.as_str())?;
        let host = self.user_host();
        let mut admin = self.connect(ctx).await?;
        let exists = admin.account_exists(user.as_str(), host).await?;
        if !admin.marked(user.as_str(), host).await? {
            admin.close().await;
            return if exists {
                Err(ProvisionError::Conflict {
                    target: self.target.clone(),
                    reason: format!("account {user} was not created by this integration"),
                })
            } else {
                Ok(())
            };
        }
        if !admin.records(user.as_str(), host).await?.is_empty() {
            admin.close().await;
            return Ok(());
        }
        if exists {
            self.lock(&mut admin, user.as_str()).await?;
            admin
                .run(
                    account(Sql::new(D, "DROP USER IF EXISTS "), user.as_str(), host)
                        .map_err(quote_error)?,
                )
                .await?;
        }
        self.schedule(&mut admin, user.as_str(), &[]).await?;
        sqlx::query("DELETE FROM apono_connector.logins WHERE user = ? AND host = ?")
            .bind(user.as_str())
            .bind(host)
            .execute(&mut admin.conn)
            .await
            .map_err(|e| db_error(&self.target, e, false))?;
        admin.close().await;
        Ok(())
    }
}

/// A sqlx error as a [`ProvisionError`]; for a statement holding a secret, the server's
/// message is left out (MySQL quotes the statement in syntax errors).
fn db_error(target: &str, e: sqlx::Error, secret: bool) -> ProvisionError {
    let target = target.to_owned();
    match e {
        sqlx::Error::Database(db) => {
            let code = db
                .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .map(|m| m.number())
                .unwrap_or(0);
            let reason = if secret {
                format!("a statement holding a password failed (error {code})")
            } else {
                format!("{} (error {code})", db.message())
            };
            match code {
                1044 | 1045 | 1142 | 1143 | 1227 | 1370 => ProvisionError::PermissionDenied {
                    target,
                    reason,
                    source: None,
                },
                _ => ProvisionError::Target {
                    target,
                    reason,
                    source: None,
                },
            }
        }
        e => crate::sqlx_client_error(target, e),
    }
}

#[async_trait]
impl Provisioner for MySqlProvisioner {
    #[instrument(skip_all, fields(integration_type = "mysql"))]
    async fn get_status(&self, ctx: &ActionContext) -> Result<StatusReport, ProvisionError> {
        ctx.checkpoint()?;
        let check = |name: &str, result: Result<(), String>| StatusCheck {
            name: format!("{}: {name}", self.target),
            ok: result.is_ok(),
            message: result.err().unwrap_or_default(),
        };
        let mut admin = match self.connect(ctx).await {
            Ok(admin) => admin,
            Err(e) => {
                return Ok(StatusReport::from_checks(vec![check(
                    "connected",
                    Err(apono_core::error_chain(&e)),
                )]));
            }
        };
        let scheduler = admin
            .strings("SELECT CAST(@@GLOBAL.event_scheduler AS CHAR)", &[])
            .await?;
        let on = scheduler
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case("ON"));
        admin.close().await;
        Ok(StatusReport::from_checks(vec![
            check("connected", Ok(())),
            check(
                "expiry backstop (event scheduler)",
                if on {
                    Ok(())
                } else {
                    Err(
                        "event_scheduler is OFF: accounts are not locked on the server at the \
                         end of their grants if the connector is down"
                            .into(),
                    )
                },
            ),
        ]))
    }

    #[instrument(skip_all, fields(integration_type = "mysql"))]
    async fn list_resources(&self, ctx: &ActionContext) -> Result<Inventory, ProvisionError> {
        ctx.checkpoint()?;
        let mut admin = self.connect(ctx).await?;
        let databases = self.user_databases(&mut admin).await?;
        let tables = sqlx::query(
            "SELECT CAST(TABLE_SCHEMA AS CHAR), CAST(TABLE_NAME AS CHAR) \
             FROM information_schema.TABLES WHERE TABLE_SCHEMA NOT IN \
             ('mysql', 'information_schema', 'performance_schema', 'sys', 'apono_connector') \
             ORDER BY 1, 2",
        )
        .fetch_all(&mut admin.conn)
        .await
        .map_err(|e| db_error(&self.target, e, false))?;
        admin.close().await;
        let resource = |kind: &str, id: String, name: String, db: Option<&str>| Resource {
            integration: String::new(),
            resource_type: ResourceType::from(kind),
            id,
            name,
            tags: db
                .map(|d| [("database".to_owned(), d.to_owned())].into())
                .unwrap_or_default(),
        };
        let mut resources = vec![resource(
            resource_type::CLUSTER,
            "cluster".into(),
            self.target.clone(),
            None,
        )];
        for db in &databases {
            resources.push(resource(
                resource_type::DATABASE,
                encode_id(&[db]),
                db.clone(),
                None,
            ));
        }
        for row in tables {
            let db: String = row
                .try_get(0)
                .map_err(|e| db_error(&self.target, e, false))?;
            let table: String = row
                .try_get(1)
                .map_err(|e| db_error(&self.target, e, false))?;
            resources.push(resource(
                resource_type::TABLE,
                encode_id(&[&db, &table]),
                format!("{db}.{table}"),
                Some(&db),
            ));
        }
        Ok(Inventory {
            resources,
            permissions: permissions(&self.config.roles, false),
        })
    }

    #[instrument(skip_all, fields(grant_id = %grant.grant_id, resource = %grant.resource.id))]
    async fn grant_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        self.grant(ctx, grant).await
    }

    #[instrument(skip_all, fields(grant_id = %grant.grant_id, resource = %grant.resource.id))]
    async fn revoke_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        self.revoke(ctx, grant, state).await
    }

    #[instrument(skip_all, fields(grant_id = %grant.grant_id, resource = %grant.resource.id))]
    async fn reset_credentials(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<Granted, ProvisionError> {
        ctx.checkpoint()?;
        let decoded: SqlGrantState = state.decode()?;
        let user = MySqlUserName::parse(decoded.login.as_str())?;
        let scope = Scope::from_resource(&grant.resource, false)?;
        let mut admin = self.connect(ctx).await?;
        let host = self.user_host();
        let active = admin
            .records(user.as_str(), host)
            .await
            .map(|r| !r.is_empty())
            .unwrap_or(false);
        if !admin.marked(user.as_str(), host).await? || !active {
            return Err(ProvisionError::Conflict {
                target: self.target.clone(),
                reason: format!("account {user} is missing, not ours, or has no active grant"),
            });
        }
        let password = self.set_password(&mut admin, user.as_str()).await?;
        admin.close().await;
        Ok(Granted {
            state: state.clone(),
            access: self.access(&user, &scope, grant, password),
        })
    }

    #[instrument(skip_all, fields(grant_id = %grant.grant_id, resource = %grant.resource.id))]
    async fn delete_credentials(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        let _ = grant;
        self.delete(ctx, state).await
    }
}
