//! PostgreSQL (integration type `postgresql`), through sqlx.
//!
//! # Roles
//!
//! * The grantee's **login** `L` (named by [`apono_core::AccountNaming`]): created on the first
//!   grant by `CREATE ROLE L LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION
//!   NOBYPASSRLS PASSWORD '…' VALID UNTIL '…'` and `COMMENT ON ROLE L IS 'apono-managed
//!   login'` in one transaction, so a login never exists without its marker. A role of that
//!   name without the marker is a conflict, never adopted.
//! * One **grant role** `G` per grant (`apono_grant__<hash of the grant id>`, `NOLOGIN
//!   INHERIT`, comment `apono-managed grant <id> until <end>`) holds that grant's privileges,
//!   and `GRANT G TO L` gives them to the login. Concurrent grants of one person are so many
//!   roles: revoking one drops its role, and the login keeps exactly the union of the others.
//!   Only superusers and `CREATEROLE` holders can change role comments and memberships, so
//!   nothing the grantee can do changes what revoke decides.
//!
//! # What each permission grants to `G`, statement by statement
//!
//! `S` ranges over the database's schemas other than `pg_catalog`, `information_schema`,
//! `pg_toast` and `pg_temp_*`/`pg_toast_temp_*`, as they are at grant time (tables created
//! later are not included: PostgreSQL's `ALTER DEFAULT PRIVILEGES` binds to each creating role,
//! which the connector cannot know).
//!
//! | resource | `read-only` | `read-write` | `admin` |
//! |---|---|---|---|
//! | `cluster` | `GRANT pg_read_all_data TO G` | and `GRANT pg_write_all_data TO G` | and `GRANT pg_monitor, pg_signal_backend TO G` (never superuser, `CREATEROLE` or `CREATEDB`) |
//! | `database` D | `GRANT CONNECT ON DATABASE D`; per S: `GRANT USAGE ON SCHEMA S`, `GRANT SELECT ON ALL TABLES IN SCHEMA S`, `GRANT SELECT ON ALL SEQUENCES IN SCHEMA S` | as read-only, with `SELECT, INSERT, UPDATE, DELETE` on tables and `SELECT, USAGE, UPDATE` on sequences | `GRANT ALL ON DATABASE D` (connect, create schemas, temporary tables); per S: `GRANT ALL ON SCHEMA S`, `ALL` on all tables, sequences and routines |
//! | `schema` D.S | `CONNECT` on D, then the database row for S alone | likewise | `CONNECT, TEMPORARY` on D, then the database row for S alone |
//! | `table` D.S.T | `CONNECT` on D, `USAGE` on S, `GRANT SELECT ON TABLE S.T` | `SELECT, INSERT, UPDATE, DELETE` on S.T | `ALL` on S.T (adds `TRUNCATE, REFERENCES, TRIGGER`) |
//! | `cluster`, listed role R | `GRANT R TO G` | | |
//!
//! `pg_read_all_data`/`pg_write_all_data` (PostgreSQL 14 and later) cover every table, view
//! and sequence of every database, and `USAGE` on every schema; `CONNECT` is granted to
//! `PUBLIC` by default. Privileges on databases other than the granted one are never given
//! (PostgreSQL grants `CONNECT` on every database to `PUBLIC` by default, which this crate does
//! not change; without privileges there the login can only look at catalogs).
//!
//! # Expiry
//!
//! `VALID UNTIL` of `L` is the latest end among its grant roles (read from their comments), so
//! the server refuses the password after the last grant's end even with the connector down.
//! Sessions already open are not ended by `VALID UNTIL`; the revoke ends them.
//!
//! # Revoke
//!
//! If no other grant role of `L` remains, first `ALTER ROLE L NOLOGIN PASSWORD NULL`, then
//! `pg_terminate_backend` on each of its sessions. Then, in each database of the grant:
//! `REASSIGN OWNED BY G TO owner`, `DROP OWNED BY G` (which revokes every privilege of `G`,
//! there and on databases), and `DROP ROLE G`. With no grant left, `REASSIGN OWNED BY L TO
//! owner` in every database moves what the grantee created to the `owner_role` (default: the
//! connector's admin user) — never dropped. Otherwise `VALID UNTIL` moves to the latest
//! remaining end. Cleanup (`delete-credentials`) drops `L` once no grant role is left.
//!
//! # What the admin user needs
//!
//! Superuser, or `CREATEROLE` with membership in `pg_signal_backend`, the `owner_role` and the
//! listed roles (`ADMIN OPTION`), and the privileges it grants `WITH GRANT OPTION`.

use std::collections::HashMap;

use apono_core::names::PostgresRoleName;
use apono_core::{
    AccountNaming, ActionContext, GrantSpec, GrantState, Granted, Inventory, ProvisionError,
    Provisioner, Resource, ResourceType, StatusCheck, StatusReport, async_trait, generate_password,
};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection as _, Row};
use tracing::instrument;

use crate::quote::{Dialect, QuoteError, Sql};
use crate::quote_error;
use crate::scope::encode_id;
use crate::{
    Connection, Engine, LOGIN_MARKER, Level, PgSslMode, Scope, SqlConfig, SqlGrantState,
    admin_credential, grant_role_name, permissions, resource_type,
};

const D: Dialect = Dialect::Postgres;
/// The prefix of a grant role's comment.
const GRANT_MARKER: &str = "apono-managed grant ";

/// The `postgresql` integration's provisioner.
#[derive(Debug)]
pub struct PostgresProvisioner {
    config: SqlConfig,
    naming: AccountNaming,
    target: String,
    idle: IdleConnections,
}

/// Admin connections kept open between actions, per database and per credential (a SHA-256 of
/// the admin's name and password, so a rotated credential never reuses a connection opened
/// with the old one). No password is kept: a connection is only reused, never reopened.
#[derive(Default)]
struct IdleConnections(std::sync::Mutex<HashMap<IdleKey, Vec<PgConnection>>>);

/// A database and the hash of the credential its connections were opened with.
type IdleKey = (String, [u8; 32]);

/// At most this many idle connections per database and credential.
const IDLE_PER_KEY: usize = 2;

impl std::fmt::Debug for IdleConnections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self
            .0
            .lock()
            .map(|idle| idle.values().map(Vec::len).sum::<usize>())
            .unwrap_or(0);
        f.debug_struct("IdleConnections")
            .field("open", &count)
            .finish()
    }
}

impl IdleConnections {
    fn take(&self, key: &IdleKey) -> Option<PgConnection> {
        self.0.lock().ok()?.get_mut(key)?.pop()
    }

    fn put(&self, key: IdleKey, conn: PgConnection) {
        if let Ok(mut idle) = self.0.lock() {
            // Connections opened with a credential since rotated are dropped (closed).
            idle.retain(|(db, hash), _| *db != key.0 || *hash == key.1);
            let list = idle.entry(key).or_default();
            if list.len() < IDLE_PER_KEY {
                list.push(conn);
            }
        }
    }
}

/// One admin connection, with the target's name for errors. [`Admin::close`] hands it back
/// for reuse; dropped otherwise (after an error, or mid-transaction), it is closed.
struct Admin<'a> {
    conn: PgConnection,
    target: &'a str,
    idle: &'a IdleConnections,
    key: IdleKey,
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

    /// The comment on role `name`, `Some(None)` for a role without one, `None` for no role.
    async fn role_comment(&mut self, name: &str) -> Result<Option<Option<String>>, ProvisionError> {
        let row = sqlx::query(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
        )
        .bind(name)
        .fetch_optional(&mut self.conn)
        .await
        .map_err(|e| db_error(self.target, e, false))?;
        row.map(|r| r.try_get::<Option<String>, _>(0))
            .transpose()
            .map_err(|e| db_error(self.target, e, false))
    }

    /// The grant roles `login` is a member of (name, end), from their comments.
    async fn grant_roles_of(
        &mut self,
        login: &str,
    ) -> Result<Vec<(String, Option<DateTime<Utc>>)>, ProvisionError> {
        let rows = sqlx::query(
            "SELECT g.rolname, shobj_description(g.oid, 'pg_authid') \
             FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid \
             JOIN pg_roles l ON l.oid = m.member WHERE l.rolname = $1 ORDER BY 1",
        )
        .bind(login)
        .fetch_all(&mut self.conn)
        .await
        .map_err(|e| db_error(self.target, e, false))?;
        let mut out = Vec::new();
        for row in rows {
            let name: String = row
                .try_get(0)
                .map_err(|e| db_error(self.target, e, false))?;
            let comment: Option<String> = row
                .try_get(1)
                .map_err(|e| db_error(self.target, e, false))?;
            if let Some(marker) = comment.as_deref().and_then(parse_grant_marker) {
                out.push((name, marker.1));
            }
        }
        Ok(out)
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

    async fn close(self) {
        self.idle.put(self.key, self.conn);
    }
}

/// Reads `apono-managed grant <id> until <rfc3339>`.
fn parse_grant_marker(comment: &str) -> Option<(&str, Option<DateTime<Utc>>)> {
    let rest = comment.strip_prefix(GRANT_MARKER)?;
    let (id, until) = match rest.split_once(" until ") {
        Some((id, until)) => (
            id,
            DateTime::parse_from_rfc3339(until)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
        ),
        None => (rest, None),
    };
    Some((id, until))
}

fn grant_marker(grant: &GrantSpec) -> String {
    format!(
        "{GRANT_MARKER}{} until {}",
        grant.grant_id,
        grant
            .expires_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    )
}

/// SHA-256 of the admin credential: which idle connections an action may reuse.
fn credential_key(user: &str, password: &SecretString) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::new()
        .chain_update(user.as_bytes())
        .chain_update([0])
        .chain_update(password.expose_secret().as_bytes())
        .finalize()
        .into()
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string()
}

/// Schemas no grant reaches.
const USER_SCHEMAS: &str = "SELECT nspname::text FROM pg_namespace \
     WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
     AND nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%' ORDER BY 1";
/// Databases offered and reached: those that accept connections, no templates.
const USER_DATABASES: &str = "SELECT datname::text FROM pg_database \
     WHERE datallowconn AND NOT datistemplate ORDER BY 1";

impl PostgresProvisioner {
    /// A provisioner for `config` (checked again here).
    pub fn new(config: SqlConfig) -> Result<Self, crate::ConfigError> {
        config.validate(Engine::Postgres)?;
        let naming = match &config.home_domain {
            Some(domain) => AccountNaming::new().with_home_domain(domain.clone()),
            None => AccountNaming::new(),
        };
        let target = format!(
            "{}:{}",
            config.hostname,
            config.port_or_default(Engine::Postgres)
        );
        Ok(Self {
            config,
            naming,
            target,
            idle: IdleConnections::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SqlConfig {
        &self.config
    }

    /// The login a grantee gets on this server.
    pub fn login_for(&self, grant: &GrantSpec) -> PostgresRoleName {
        self.naming.account_for(&grant.grantee)
    }

    fn maintenance_db(&self) -> &str {
        self.config.dbname.as_deref().unwrap_or("postgres")
    }

    fn sslmode(&self) -> PgSslMode {
        self.config.sslmode.unwrap_or(PgSslMode::VerifyFull)
    }

    async fn connect(
        &self,
        ctx: &ActionContext,
        database: &str,
    ) -> Result<Admin<'_>, ProvisionError> {
        let (user, password) = admin_credential(ctx)?;
        use sqlx::postgres::PgSslMode as Mode;
        let mut options = PgConnectOptions::new_without_pgpass()
            .host(&self.config.hostname)
            .port(self.config.port_or_default(Engine::Postgres))
            .username(&user)
            .password(password.expose_secret())
            .database(database)
            .application_name("apono-connector")
            .ssl_mode(match self.sslmode() {
                PgSslMode::Disable => Mode::Disable,
                PgSslMode::Prefer => Mode::Prefer,
                PgSslMode::Require => Mode::Require,
                PgSslMode::VerifyCa => Mode::VerifyCa,
                PgSslMode::VerifyFull => Mode::VerifyFull,
            })
            // Every statement text is different (names, passwords): nothing to cache.
            .statement_cache_capacity(0);
        if let Some(ca) = &self.config.ssl_ca {
            options = options.ssl_root_cert(ca);
        }
        let key = (database.to_owned(), credential_key(&user, &password));
        while let Some(mut conn) = self.idle.take(&key) {
            // A connection the server closed meanwhile is dropped, not used.
            if ctx
                .bounded(tokio::time::sleep, async {
                    conn.ping()
                        .await
                        .map_err(|e| db_error(&self.target, e, false))
                })
                .await
                .is_ok()
            {
                return Ok(Admin {
                    conn,
                    target: &self.target,
                    idle: &self.idle,
                    key,
                });
            }
        }
        let timeout = self.config.connect_timeout();
        let conn = ctx
            .bounded(tokio::time::sleep, async {
                match tokio::time::timeout(timeout, PgConnection::connect_with(&options)).await {
                    Ok(result) => result.map_err(|e| db_error(&self.target, e, false)),
                    Err(_) => Err(ProvisionError::Unavailable {
                        target: self.target.clone(),
                        source: Some("connection timed out".into()),
                    }),
                }
            })
            .await?;
        Ok(Admin {
            conn,
            target: &self.target,
            idle: &self.idle,
            key,
        })
    }

    /// The owner of what a grantee created, once their access ends.
    fn owner_sql(&self, sql: Sql) -> Result<Sql, QuoteError> {
        match &self.config.owner_role {
            Some(owner) => sql.ident(owner),
            None => Ok(sql.push("CURRENT_USER")),
        }
    }

    /// Checks that the scope exists and is offered; returns the databases it spans.
    async fn databases_of(
        &self,
        admin: &mut Admin<'_>,
        scope: &Scope,
    ) -> Result<Vec<String>, ProvisionError> {
        let all = admin.strings(USER_DATABASES, &[]).await?;
        match scope.database() {
            None => Ok(all),
            Some(db) if all.iter().any(|d| d == db) => Ok(vec![db.to_owned()]),
            Some(_) => Err(ProvisionError::InvalidGrant(
                "the database does not exist or is not offered".into(),
            )),
        }
    }

    /// The statements that give `level` on `scope` to `role`, run in `db`.
    async fn privileges(
        &self,
        conn: &mut Admin<'_>,
        scope: &Scope,
        level: &Level,
        role: &str,
    ) -> Result<Vec<Sql>, ProvisionError> {
        let q = |r: Result<Sql, QuoteError>| r.map_err(quote_error);
        let to = |sql: Sql| sql.push(" TO ").ident(role);
        let mut out = Vec::new();
        match scope {
            Scope::Cluster => {
                let roles: &[&'static str] = match level {
                    Level::ReadOnly => &["pg_read_all_data"],
                    Level::ReadWrite => &["pg_read_all_data", "pg_write_all_data"],
                    Level::Admin => &[
                        "pg_read_all_data",
                        "pg_write_all_data",
                        "pg_monitor",
                        "pg_signal_backend",
                    ],
                    Level::Role(name) => {
                        let exists = conn
                            .strings(
                                "SELECT rolname::text FROM pg_roles WHERE rolname = $1",
                                &[name],
                            )
                            .await?;
                        if exists.is_empty() {
                            return Err(ProvisionError::InvalidGrant(format!(
                                "role {name:?} does not exist"
                            )));
                        }
                        out.push(q(to(Sql::new(D, "GRANT ")
                            .ident(name)
                            .map_err(quote_error)?))?);
                        return Ok(out);
                    }
                };
                for r in roles {
                    out.push(q(to(Sql::new(D, "GRANT ").push(r)))?);
                }
            }
            Scope::Database(db) | Scope::Schema { database: db, .. } => {
                let database_privilege = match (level, scope) {
                    (Level::Admin, Scope::Database(_)) => "GRANT ALL ON DATABASE ",
                    (Level::Admin, _) => "GRANT CONNECT, TEMPORARY ON DATABASE ",
                    _ => "GRANT CONNECT ON DATABASE ",
                };
                out.push(q(to(q(Sql::new(D, database_privilege).ident(db))?))?);
                let schemas = match scope {
                    Scope::Schema { schema, .. } => {
                        let found = conn
                            .strings(
                                "SELECT nspname::text FROM pg_namespace WHERE nspname = $1 \
                                 AND nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
                                 AND nspname NOT LIKE 'pg\\_temp\\_%' AND nspname NOT LIKE 'pg\\_toast\\_temp\\_%'",
                                &[schema],
                            )
                            .await?;
                        if found.is_empty() {
                            return Err(ProvisionError::InvalidGrant(
                                "the schema does not exist or is not offered".into(),
                            ));
                        }
                        found
                    }
                    _ => conn.strings(USER_SCHEMAS, &[]).await?,
                };
                let (schema_p, table_p, sequence_p) = match level {
                    Level::ReadOnly => (
                        "GRANT USAGE ON SCHEMA ",
                        "GRANT SELECT ON ALL TABLES IN SCHEMA ",
                        "GRANT SELECT ON ALL SEQUENCES IN SCHEMA ",
                    ),
                    Level::ReadWrite => (
                        "GRANT USAGE ON SCHEMA ",
                        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ",
                        "GRANT SELECT, USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA ",
                    ),
                    Level::Admin => (
                        "GRANT ALL ON SCHEMA ",
                        "GRANT ALL ON ALL TABLES IN SCHEMA ",
                        "GRANT ALL ON ALL SEQUENCES IN SCHEMA ",
                    ),
                    Level::Role(_) => unreachable_role()?,
                };
                for s in &schemas {
                    for p in [schema_p, table_p, sequence_p] {
                        out.push(q(to(q(Sql::new(D, p).ident(s))?))?);
                    }
                    if *level == Level::Admin {
                        out.push(q(to(q(Sql::new(
                            D,
                            "GRANT ALL ON ALL ROUTINES IN SCHEMA ",
                        )
                        .ident(s))?))?);
                    }
                }
            }
            Scope::Table {
                database,
                schema,
                table,
            } => {
                let schema = schema.as_deref().unwrap_or("public");
                let found = conn
                    .strings(
                        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') \
                         AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')",
                        &[schema, table],
                    )
                    .await?;
                if found.is_empty() {
                    return Err(ProvisionError::InvalidGrant(
                        "the table does not exist or is not offered".into(),
                    ));
                }
                out.push(q(to(q(
                    Sql::new(D, "GRANT CONNECT ON DATABASE ").ident(database)
                )?))?);
                out.push(q(to(q(
                    Sql::new(D, "GRANT USAGE ON SCHEMA ").ident(schema)
                )?))?);
                let p = match level {
                    Level::ReadOnly => "GRANT SELECT ON TABLE ",
                    Level::ReadWrite => "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE ",
                    Level::Admin => "GRANT ALL ON TABLE ",
                    Level::Role(_) => unreachable_role()?,
                };
                out.push(q(to(q(Sql::new(D, p).path(&[schema, table]))?))?);
            }
        }
        Ok(out)
    }

    /// Reads first (the login, the grant's role, the other grants' ends, the objects), then
    /// writes in as few round trips as possible: one multi-statement batch, which PostgreSQL
    /// runs as one transaction, when the grant's database is the maintenance database; else
    /// one batch there for the roles, one in the grant's database for the privileges, and one
    /// for the membership and the password.
    async fn grant(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        ctx.checkpoint()?;
        let scope = Scope::from_resource(&grant.resource, true)?;
        let level = Level::parse(&grant.permission, &scope, &self.config.roles)?;
        if grant.expires_at <= Utc::now() {
            return Err(ProvisionError::InvalidGrant(
                "the grant has already expired".into(),
            ));
        }
        let login = self.login_for(grant);
        let role = grant_role_name(&grant.grant_id);
        let mut admin = self.connect(ctx, self.maintenance_db()).await?;
        let databases = self.databases_of(&mut admin, &scope).await?;

        // One round trip: the login, the grant's role and the roles the login is a member of.
        let rows = sqlx::query(
            "SELECT r.rolname::text, shobj_description(r.oid, 'pg_authid'), \
             r.oid IN (SELECT m.roleid FROM pg_auth_members m \
                       JOIN pg_roles l ON l.oid = m.member WHERE l.rolname = $1) \
             FROM pg_roles r WHERE r.rolname = $1 OR r.rolname = $2 OR r.oid IN \
             (SELECT m.roleid FROM pg_auth_members m \
              JOIN pg_roles l ON l.oid = m.member WHERE l.rolname = $1)",
        )
        .bind(login.as_str())
        .bind(&role)
        .fetch_all(&mut admin.conn)
        .await
        .map_err(|e| db_error(&self.target, e, false))?;
        let mut login_comment = None;
        let mut role_comment = None;
        let mut others = Vec::new();
        for row in rows {
            let name: String = row
                .try_get(0)
                .map_err(|e| db_error(&self.target, e, false))?;
            let comment: Option<String> = row
                .try_get(1)
                .map_err(|e| db_error(&self.target, e, false))?;
            let member: bool = row
                .try_get(2)
                .map_err(|e| db_error(&self.target, e, false))?;
            if name == login.as_str() {
                login_comment = Some(comment);
            } else if name == role {
                role_comment = Some(comment);
            } else if member && let Some((_, end)) = comment.as_deref().and_then(parse_grant_marker)
            {
                others.push(end);
            }
        }
        let login_created = match login_comment {
            None => true,
            Some(Some(comment)) if comment == LOGIN_MARKER => false,
            Some(_) => {
                return Err(ProvisionError::Conflict {
                    target: self.target.clone(),
                    reason: format!("role {login} exists and was not created by this integration"),
                });
            }
        };
        let role_exists = match role_comment {
            None => false,
            Some(Some(comment))
                if parse_grant_marker(&comment)
                    .is_some_and(|(id, _)| id == grant.grant_id.as_str()) =>
            {
                true
            }
            Some(_) => {
                return Err(ProvisionError::Conflict {
                    target: self.target.clone(),
                    reason: format!("role {role} exists and was not created for this grant"),
                });
            }
        };
        // VALID UNTIL: the latest end among this grant and the login's others.
        let until = others
            .into_iter()
            .flatten()
            .chain([grant.expires_at])
            .max()
            .unwrap_or(grant.expires_at);
        let password = generate_password();
        let q = |r: Result<Sql, QuoteError>| r.map_err(quote_error);

        // The login and the grant's role, each created with its marker in the same transaction.
        let mut roles = Vec::new();
        if login_created {
            roles.push(q(Sql::new(D, "CREATE ROLE ")
                .ident(login.as_str())
                .map(|s| {
                    s.push(
                        " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION \
                         NOBYPASSRLS PASSWORD ",
                    )
                })
                .and_then(|s| s.secret(&password))
                .and_then(|s| s.push(" VALID UNTIL ").literal(&timestamp(until))))?);
            roles.push(comment_on(login.as_str(), LOGIN_MARKER)?);
        }
        if !role_exists {
            roles.push(q(Sql::new(D, "CREATE ROLE ").ident(&role))?.push(" NOLOGIN INHERIT"));
        }
        roles.push(comment_on(&role, &grant_marker(grant))?);
        let mut membership = vec![q(Sql::new(D, "GRANT ")
            .ident(&role)
            .and_then(|s| s.push(" TO ").ident(login.as_str())))?];
        if !login_created {
            // A new password for the existing login (the server hashes each one: only once).
            membership.push(q(Sql::new(D, "ALTER ROLE ")
                .ident(login.as_str())
                .map(|s| s.push(" LOGIN PASSWORD "))
                .and_then(|s| s.secret(&password))
                .and_then(|s| s.push(" VALID UNTIL ").literal(&timestamp(until))))?);
        }
        ctx.checkpoint()?;
        match scope.database() {
            Some(db) if db != self.maintenance_db() => {
                admin.run(Sql::batch(roles)).await?;
                let mut conn = self.connect(ctx, db).await?;
                let privileges = self.privileges(&mut conn, &scope, &level, &role).await?;
                conn.run(Sql::batch(privileges)).await?;
                conn.close().await;
                admin.run(Sql::batch(membership)).await?;
            }
            _ => {
                let privileges = self.privileges(&mut admin, &scope, &level, &role).await?;
                admin
                    .run(Sql::batch(
                        roles.into_iter().chain(privileges).chain(membership),
                    ))
                    .await?;
            }
        }
        admin.close().await;

        let state = SqlGrantState {
            engine: Engine::Postgres,
            login: login.to_string(),
            grant_role: Some(role),
            databases,
            login_created,
        };
        Ok(Granted {
            state: GrantState::encode(&state)?,
            access: self.access(&login, &scope, grant, password),
        })
    }

    /// A fresh password, and `VALID UNTIL` at the latest end of the login's grants.
    async fn set_password(
        &self,
        admin: &mut Admin<'_>,
        login: &PostgresRoleName,
    ) -> Result<SecretString, ProvisionError> {
        let ends = admin.grant_roles_of(login.as_str()).await?;
        let until = ends.iter().filter_map(|(_, end)| *end).max();
        let Some(until) = until else {
            return Err(ProvisionError::Conflict {
                target: self.target.clone(),
                reason: format!("login {login} has no active grant"),
            });
        };
        let password = generate_password();
        let sql = Sql::new(D, "ALTER ROLE ")
            .ident(login.as_str())
            .map(|s| s.push(" LOGIN PASSWORD "))
            .and_then(|s| s.secret(&password))
            .and_then(|s| s.push(" VALID UNTIL ").literal(&timestamp(until)))
            .map_err(quote_error)?;
        admin.run(sql).await?;
        Ok(password)
    }

    fn access(
        &self,
        login: &PostgresRoleName,
        scope: &Scope,
        grant: &GrantSpec,
        password: SecretString,
    ) -> apono_core::AccessDetails {
        let sslmode = serde_json::to_value(self.sslmode())
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        Connection {
            engine: Engine::Postgres,
            host: &self.config.hostname,
            port: self.config.port_or_default(Engine::Postgres),
            login: login.as_str(),
            database: Some(scope.database().unwrap_or(self.maintenance_db())),
            tls: Some(("sslmode", sslmode)),
            resource: &scope.display_name(&self.target),
            expires_at: grant.expires_at,
        }
        .access_details(password)
    }

    /// Disables the login and ends its sessions.
    async fn disable(&self, admin: &mut Admin<'_>, login: &str) -> Result<(), ProvisionError> {
        admin
            .run(
                Sql::new(D, "ALTER ROLE ")
                    .ident(login)
                    .map_err(quote_error)?
                    .push(" NOLOGIN PASSWORD NULL VALID UNTIL '-infinity'"),
            )
            .await?;
        // With a timeout, pg_terminate_backend waits until the session is gone.
        sqlx::query(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity \
             WHERE usename = $1 AND pid <> pg_backend_pid()",
        )
        .bind(login)
        .fetch_all(&mut admin.conn)
        .await
        .map_err(|e| db_error(admin.target, e, false))?;
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()",
        )
        .bind(login)
        .fetch_one(&mut admin.conn)
        .await
        .map_err(|e| db_error(admin.target, e, false))?;
        if left > 0 {
            return Err(ProvisionError::Unavailable {
                target: self.target.clone(),
                source: Some(format!("{left} session(s) of {login} survived termination").into()),
            });
        }
        Ok(())
    }

    /// `REASSIGN OWNED BY role TO owner` (and `DROP OWNED BY role` with `drop`) in each of
    /// `databases`.
    async fn reassign(
        &self,
        ctx: &ActionContext,
        admin: &mut Admin<'_>,
        role: &str,
        databases: &[String],
        drop: bool,
    ) -> Result<(), ProvisionError> {
        let mut statements = vec![
            self.owner_sql(
                Sql::new(D, "REASSIGN OWNED BY ")
                    .ident(role)
                    .map_err(quote_error)?
                    .push(" TO "),
            )
            .map_err(quote_error)?,
        ];
        if drop {
            statements.push(
                Sql::new(D, "DROP OWNED BY ")
                    .ident(role)
                    .map_err(quote_error)?,
            );
        }
        for db in databases {
            ctx.checkpoint()?;
            if db == self.maintenance_db() {
                for sql in &statements {
                    admin.run(sql.clone()).await?;
                }
                continue;
            }
            let mut conn = match self.connect(ctx, db).await {
                Ok(conn) => conn,
                // A database dropped since: nothing of the role is left there.
                Err(ProvisionError::Target { reason, .. }) if reason.contains("3D000") => continue,
                Err(e) => return Err(e),
            };
            for sql in &statements {
                conn.run(sql.clone()).await?;
            }
            conn.close().await;
        }
        Ok(())
    }

    async fn revoke(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        ctx.checkpoint()?;
        let state: SqlGrantState = state.decode()?;
        let login = PostgresRoleName::parse(state.login.as_str())?;
        let role = grant_role_name(&grant.grant_id);
        if state.grant_role.as_deref().is_some_and(|r| r != role) {
            return Err(ProvisionError::InvalidGrant(
                "the grant state names another grant's role".into(),
            ));
        }
        let mut admin = self.connect(ctx, self.maintenance_db()).await?;
        let role_ours = match admin.role_comment(&role).await? {
            Some(Some(comment)) => {
                parse_grant_marker(&comment).is_some_and(|(id, _)| id == grant.grant_id.as_str())
            }
            _ => false,
        };
        let login_ours = admin
            .role_comment(login.as_str())
            .await?
            .map(|comment| comment.as_deref() == Some(LOGIN_MARKER));
        let remaining: Vec<_> = match login_ours {
            Some(true) => admin
                .grant_roles_of(login.as_str())
                .await?
                .into_iter()
                .filter(|(name, _)| *name != role)
                .collect(),
            _ => Vec::new(),
        };
        // The last grant ends access at the account first.
        if login_ours == Some(true) && remaining.is_empty() {
            self.disable(&mut admin, login.as_str()).await?;
        }
        if role_ours {
            let mut databases = state.databases.clone();
            if !databases.iter().any(|d| d == self.maintenance_db()) {
                databases.push(self.maintenance_db().to_owned());
            }
            self.reassign(ctx, &mut admin, &role, &databases, true)
                .await?;
            admin
                .run(
                    Sql::new(D, "DROP ROLE IF EXISTS ")
                        .ident(&role)
                        .map_err(quote_error)?,
                )
                .await?;
        }
        match login_ours {
            None => {}
            Some(false) => {
                tracing::warn!(login = %login, "login is not marked as ours; left untouched")
            }
            Some(true) if remaining.is_empty() => {
                let databases = admin.strings(USER_DATABASES, &[]).await?;
                self.reassign(ctx, &mut admin, login.as_str(), &databases, false)
                    .await?;
            }
            Some(true) => {
                if let Some(until) = remaining.iter().filter_map(|(_, end)| *end).max() {
                    admin
                        .run(
                            Sql::new(D, "ALTER ROLE ")
                                .ident(login.as_str())
                                .and_then(|s| s.push(" VALID UNTIL ").literal(&timestamp(until)))
                                .map_err(quote_error)?,
                        )
                        .await?;
                }
            }
        }
        admin.close().await;
        Ok(())
    }

    async fn delete(&self, ctx: &ActionContext, state: &GrantState) -> Result<(), ProvisionError> {
        ctx.checkpoint()?;
        let state: SqlGrantState = state.decode()?;
        let login = PostgresRoleName::parse(state.login.as_str())?;
        let mut admin = self.connect(ctx, self.maintenance_db()).await?;
        match admin.role_comment(login.as_str()).await? {
            None => return Ok(()),
            Some(Some(comment)) if comment == LOGIN_MARKER => {}
            Some(_) => {
                return Err(ProvisionError::Conflict {
                    target: self.target.clone(),
                    reason: format!("role {login} was not created by this integration"),
                });
            }
        }
        if !admin.grant_roles_of(login.as_str()).await?.is_empty() {
            // An active grant still uses the login.
            return Ok(());
        }
        self.disable(&mut admin, login.as_str()).await?;
        let databases = admin.strings(USER_DATABASES, &[]).await?;
        self.reassign(ctx, &mut admin, login.as_str(), &databases, true)
            .await?;
        admin
            .run(
                Sql::new(D, "DROP ROLE IF EXISTS ")
                    .ident(login.as_str())
                    .map_err(quote_error)?,
            )
            .await?;
        admin.close().await;
        Ok(())
    }
}

fn unreachable_role<T>() -> Result<T, ProvisionError> {
    Err(ProvisionError::InvalidGrant(
        "roles are offered on the cluster only".into(),
    ))
}

fn comment_on(role: &str, comment: &str) -> Result<Sql, ProvisionError> {
    Sql::new(D, "COMMENT ON ROLE ")
        .ident(role)
        .and_then(|s| s.push(" IS ").literal(comment))
        .map_err(quote_error)
}

/// A sqlx error as a [`ProvisionError`]; for a statement holding a secret, the server's
/// message is left out (servers may quote the statement).
pub(crate) fn db_error(target: &str, e: sqlx::Error, secret: bool) -> ProvisionError {
    let target = target.to_owned();
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let reason = if secret {
                format!("a statement holding a password failed (SQLSTATE {code})")
            } else {
                format!("{} (SQLSTATE {code})", db.message())
            };
            match code.as_str() {
                "42501" | "28P01" | "28000" => ProvisionError::PermissionDenied {
                    target,
                    reason,
                    source: None,
                },
                c if c.starts_with("08") || c.starts_with("57") || c.starts_with("53") => {
                    ProvisionError::Unavailable {
                        target,
                        source: Some(reason.into()),
                    }
                }
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
impl Provisioner for PostgresProvisioner {
    #[instrument(skip_all, fields(integration_type = "postgresql"))]
    async fn get_status(&self, ctx: &ActionContext) -> Result<StatusReport, ProvisionError> {
        ctx.checkpoint()?;
        let check = |name: &str, result: Result<(), String>| StatusCheck {
            name: format!("{}: {name}", self.target),
            ok: result.is_ok(),
            message: result.err().unwrap_or_default(),
        };
        let mut admin = match self.connect(ctx, self.maintenance_db()).await {
            Ok(admin) => admin,
            Err(e) => {
                return Ok(StatusReport::from_checks(vec![check(
                    "connected",
                    Err(apono_core::error_chain(&e)),
                )]));
            }
        };
        let mut checks = vec![check("connected", Ok(()))];
        let rights = sqlx::query(
            "SELECT rolsuper OR rolcreaterole, current_setting('server_version_num')::int \
             FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&mut admin.conn)
        .await
        .map_err(|e| db_error(&self.target, e, false))?;
        let can: bool = rights.try_get(0).unwrap_or(false);
        let version: i32 = rights.try_get(1).unwrap_or(0);
        checks.push(check(
            "admin can create roles",
            if can {
                Ok(())
            } else {
                Err("the admin user needs SUPERUSER or CREATEROLE".into())
            },
        ));
        checks.push(check(
            "server version",
            if version >= 140000 {
                Ok(())
            } else {
                Err(format!(
                    "PostgreSQL 14 or later is needed (pg_read_all_data); found {version}"
                ))
            },
        ));
        for role in self.config.roles.iter().chain(&self.config.owner_role) {
            let found = admin
                .strings(
                    "SELECT rolname::text FROM pg_roles WHERE rolname = $1",
                    &[role],
                )
                .await?;
            checks.push(check(
                &format!("role {role:?} exists"),
                if found.is_empty() {
                    Err("not found".into())
                } else {
                    Ok(())
                },
            ));
        }
        admin.close().await;
        Ok(StatusReport::from_checks(checks))
    }

    #[instrument(skip_all, fields(integration_type = "postgresql"))]
    async fn list_resources(&self, ctx: &ActionContext) -> Result<Inventory, ProvisionError> {
        ctx.checkpoint()?;
        let resource = |kind: &str, id: String, name: String, tags: &[(&str, &str)]| Resource {
            integration: String::new(),
            resource_type: ResourceType::from(kind),
            id,
            name,
            tags: tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let mut resources = vec![resource(
            resource_type::CLUSTER,
            "cluster".into(),
            self.target.clone(),
            &[],
        )];
        let mut admin = self.connect(ctx, self.maintenance_db()).await?;
        let databases = admin.strings(USER_DATABASES, &[]).await?;
        admin.close().await;
        for db in &databases {
            resources.push(resource(
                resource_type::DATABASE,
                encode_id(&[db]),
                db.clone(),
                &[],
            ));
            let mut conn = self.connect(ctx, db).await?;
            for schema in conn.strings(USER_SCHEMAS, &[]).await? {
                resources.push(resource(
                    resource_type::SCHEMA,
                    encode_id(&[db, &schema]),
                    format!("{db}.{schema}"),
                    &[("database", db)],
                ));
            }
            let tables = sqlx::query(
                "SELECT n.nspname::text, c.relname::text FROM pg_class c \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') \
                 AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
                 AND n.nspname NOT LIKE 'pg\\_temp\\_%' AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%' \
                 ORDER BY 1, 2",
            )
            .fetch_all(&mut conn.conn)
            .await
            .map_err(|e| db_error(&self.target, e, false))?;
            for row in tables {
                let schema: String = row
                    .try_get(0)
                    .map_err(|e| db_error(&self.target, e, false))?;
                let table: String = row
                    .try_get(1)
                    .map_err(|e| db_error(&self.target, e, false))?;
                resources.push(resource(
                    resource_type::TABLE,
                    encode_id(&[db, &schema, &table]),
                    format!("{db}.{schema}.{table}"),
                    &[("database", db), ("schema", &schema)],
                ));
            }
            conn.close().await;
        }
        Ok(Inventory {
            resources,
            permissions: permissions(&self.config.roles, true),
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
        let login = PostgresRoleName::parse(decoded.login.as_str())?;
        let scope = Scope::from_resource(&grant.resource, true)?;
        let mut admin = self.connect(ctx, self.maintenance_db()).await?;
        if admin
            .role_comment(login.as_str())
            .await?
            .flatten()
            .as_deref()
            != Some(LOGIN_MARKER)
        {
            return Err(ProvisionError::Conflict {
                target: self.target.clone(),
                reason: format!("login {login} is missing or not ours"),
            });
        }
        let password = self.set_password(&mut admin, &login).await?;
        admin.close().await;
        Ok(Granted {
            state: state.clone(),
            access: self.access(&login, &scope, grant, password),
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
