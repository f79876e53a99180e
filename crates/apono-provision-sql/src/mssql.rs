//! Microsoft SQL Server (integration type `mssql`), through tiberius.
//!
//! **Not proven on a SQL Server**: none runs on the machine this was built on. Every statement
//! this module sends is written by the pure functions of [`plan`], and the tests parse each of
//! them, for ordinary and hostile names, with `sqlfluff parse --dialect tsql`, and run the
//! provisioner over tiberius against a TDS fake checked by python-tds; no SQL Server has
//! executed them. The crate docs say exactly what was and was not checked.
//!
//! # Logins, users and roles
//!
//! * The grantee's **login** `[L]` (server level): `CREATE LOGIN [L] WITH PASSWORD = N'…',
//!   CHECK_EXPIRATION = OFF`, and marked as ours by membership in the server role
//!   `[apono_managed]` (created once by the connector; it holds no permission). Only holders of
//!   `ALTER ANY SERVER ROLE` change that membership, so the grantee cannot.
//! * One **grant role** per grant, named `apono_grant__<hash of the grant id>`, twice: a server
//!   role the login is a member of (the server-wide record of the login's active grants, which
//!   revoke counts) and a database role in the grant's database that holds the privileges. The
//!   login's user `[L]` in that database (`CREATE USER [L] FOR LOGIN [L]`) is a member of it, so
//!   concurrent grants are so many roles and a revoke leaves exactly the union of the others.
//!
//! # What each permission grants to the database role `[G]`, statement by statement
//!
//! | resource | `read-only` | `read-write` | `admin` |
//! |---|---|---|---|
//! | `cluster` | for each database other than `master`, `model`, `msdb`, `tempdb`: the `database` row | likewise | likewise |
//! | `database` D | `ALTER ROLE [db_datareader] ADD MEMBER [G]` | and `ALTER ROLE [db_datawriter] ADD MEMBER [G]` | and `ALTER ROLE [db_ddladmin] ADD MEMBER [G]`, `GRANT EXECUTE TO [G]` (never `db_owner`, `db_securityadmin` or `db_accessadmin`) |
//! | `schema` D.S | `GRANT SELECT ON SCHEMA::[S] TO [G]` | `GRANT SELECT, INSERT, UPDATE, DELETE ON SCHEMA::[S] TO [G]` | `GRANT SELECT, INSERT, UPDATE, DELETE, EXECUTE, ALTER, REFERENCES, VIEW DEFINITION ON SCHEMA::[S] TO [G]`, `GRANT CREATE TABLE, CREATE VIEW, CREATE PROCEDURE, CREATE FUNCTION TO [G]` |
//! | `table` D.S.T | `GRANT SELECT ON OBJECT::[S].[T] TO [G]` | `GRANT SELECT, INSERT, UPDATE, DELETE ON OBJECT::[S].[T] TO [G]` | `GRANT SELECT, INSERT, UPDATE, DELETE, ALTER, REFERENCES, VIEW DEFINITION ON OBJECT::[S].[T] TO [G]` |
//!
//! The server's own roles are not offered on `mssql` integrations.
//!
//! # Expiry: what SQL Server has and has not
//!
//! SQL Server has **no expiry time on a login**: `CHECK_EXPIRATION` applies the Windows password
//! policy's maximum age in days, not a point in time, and contained database users have none
//! either. A scheduled `ALTER LOGIN … DISABLE` would need SQL Server Agent, which Express and
//! Azure SQL Database lack; this crate creates no Agent job. So on SQL Server **the end of
//! access depends on the connector's revoke**; there is no server-side backstop.
//!
//! # Revoke and cleanup
//!
//! With no other grant role left on the login: `ALTER LOGIN [L] DISABLE` first, then `KILL`
//! for each of its sessions. Then in the grant's databases `ALTER ROLE [G] DROP MEMBER [L]`,
//! `DROP ROLE [G]`, and `DROP SERVER ROLE [G]`. Schemas owned by `[L]`'s users are given to the
//! `owner_role` (default `dbo`) at cleanup, which then drops the users and the login.

use apono_core::{
    AccountNaming, ActionContext, GrantSpec, GrantState, Granted, Inventory, ProvisionError,
    Provisioner, Resource, ResourceType, StatusCheck, StatusReport, async_trait, generate_password,
};
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use tiberius::{AuthMethod, Client, EncryptionLevel, Query};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};
use tracing::instrument;

use crate::quote::Sql;
use crate::quote_error;
use crate::scope::encode_id;
use crate::{
    Connection, Engine, Level, Scope, SqlConfig, SqlGrantState, admin_credential, grant_role_name,
    resource_type,
};

/// The server role whose members are the logins this crate created.
pub const MARKER_ROLE: &str = "apono_managed";

/// Every statement text the provisioner sends, as pure functions of validated names.
pub mod plan {
    use secrecy::SecretString;

    use crate::quote::{Dialect, QuoteError, Sql};
    use crate::{Level, Scope};

    const D: Dialect = Dialect::Mssql;

    /// Queries with bound parameters (`@P1`, …): fixed text.
    pub const QUERIES: &[&str] = &[
        LOGIN_STATE,
        GRANT_ROLES_OF,
        SESSIONS_OF,
        USER_DATABASES,
        USER_SCHEMAS,
        USER_TABLES,
        SCHEMA_EXISTS,
        TABLE_EXISTS,
        ROLE_EXISTS,
        USER_EXISTS,
        SCHEMAS_OWNED_BY,
        ADMIN_RIGHTS,
        SERVER_ROLE_EXISTS,
    ];
    /// Server role `@P1`, if it exists.
    pub const SERVER_ROLE_EXISTS: &str =
        "SELECT name FROM sys.server_principals WHERE name = @P1 AND type = 'R'";
    /// `(login exists, is a member of apono_managed)` for login `@P1`.
    pub const LOGIN_STATE: &str = "SELECT CAST(COUNT(*) AS INT) AS found, \
         CAST(COALESCE(SUM(CASE WHEN r.name = N'apono_managed' THEN 1 ELSE 0 END), 0) AS INT) AS marked \
         FROM sys.server_principals AS p \
         LEFT JOIN sys.server_role_members AS m ON m.member_principal_id = p.principal_id \
         LEFT JOIN sys.server_principals AS r ON r.principal_id = m.role_principal_id \
         WHERE p.name = @P1 AND p.type = 'S'";
    /// The grant (server) roles login `@P1` is a member of.
    pub const GRANT_ROLES_OF: &str = "SELECT r.name FROM sys.server_role_members AS m \
         INNER JOIN sys.server_principals AS r ON r.principal_id = m.role_principal_id \
         INNER JOIN sys.server_principals AS p ON p.principal_id = m.member_principal_id \
         WHERE p.name = @P1 AND r.name LIKE N'apono\\_grant\\_\\_%' ESCAPE N'\\'";
    /// The sessions of login `@P1`.
    pub const SESSIONS_OF: &str = "SELECT session_id FROM sys.dm_exec_sessions \
         WHERE login_name = @P1 AND session_id <> @@SPID";
    /// Databases offered and reached.
    pub const USER_DATABASES: &str = "SELECT name FROM sys.databases \
         WHERE name NOT IN (N'master', N'model', N'msdb', N'tempdb') AND state = 0 ORDER BY name";
    /// Schemas offered in the current database.
    pub const USER_SCHEMAS: &str = "SELECT s.name FROM sys.schemas AS s \
         INNER JOIN sys.database_principals AS o ON o.principal_id = s.principal_id \
         WHERE s.name NOT IN (N'sys', N'INFORMATION_SCHEMA', N'guest') \
         AND o.type <> 'R' ORDER BY s.name";
    /// Tables and views of the offered schemas of the current database.
    pub const USER_TABLES: &str = "SELECT s.name AS schema_name, o.name AS table_name \
         FROM sys.objects AS o INNER JOIN sys.schemas AS s ON s.schema_id = o.schema_id \
         WHERE o.type IN ('U', 'V') AND o.is_ms_shipped = 0 \
         AND s.name NOT IN (N'sys', N'INFORMATION_SCHEMA') ORDER BY s.name, o.name";
    /// Whether schema `@P1` exists in the current database.
    pub const SCHEMA_EXISTS: &str = "SELECT CAST(COUNT(*) AS INT) FROM sys.schemas \
         WHERE name = @P1 AND name NOT IN (N'sys', N'INFORMATION_SCHEMA', N'guest')";
    /// Whether table or view `@P1`.`@P2` exists in the current database.
    pub const TABLE_EXISTS: &str = "SELECT CAST(COUNT(*) AS INT) FROM sys.objects AS o \
         INNER JOIN sys.schemas AS s ON s.schema_id = o.schema_id \
         WHERE s.name = @P1 AND o.name = @P2 AND o.type IN ('U', 'V') AND o.is_ms_shipped = 0";
    /// Whether database role `@P1` exists in the current database.
    pub const ROLE_EXISTS: &str = "SELECT CAST(COUNT(*) AS INT) FROM sys.database_principals \
         WHERE name = @P1 AND type = 'R'";
    /// Whether database user `@P1` exists in the current database.
    pub const USER_EXISTS: &str = "SELECT CAST(COUNT(*) AS INT) FROM sys.database_principals \
         WHERE name = @P1 AND type = 'S'";
    /// Schemas owned by principal `@P1` in the current database.
    pub const SCHEMAS_OWNED_BY: &str = "SELECT s.name FROM sys.schemas AS s \
         INNER JOIN sys.database_principals AS p ON p.principal_id = s.principal_id \
         WHERE p.name = @P1";
    /// Whether the admin may manage logins and server roles.
    pub const ADMIN_RIGHTS: &str = "SELECT CAST(HAS_PERMS_BY_NAME(NULL, NULL, 'ALTER ANY LOGIN') \
         * HAS_PERMS_BY_NAME(NULL, NULL, 'ALTER ANY SERVER ROLE') AS INT)";

    /// `CREATE SERVER ROLE [apono_managed]` (once).
    pub fn create_marker_role() -> Sql {
        Sql::new(
            D,
            "IF NOT EXISTS (SELECT 1 FROM sys.server_principals WHERE name = N'apono_managed' AND type = 'R') CREATE SERVER ROLE [apono_managed]",
        )
    }

    /// Creates the login, disabled until its password is set, and marks it.
    pub fn create_login(login: &str, password: &SecretString) -> Result<Vec<Sql>, QuoteError> {
        Ok(vec![
            Sql::new(D, "CREATE LOGIN ")
                .ident(login)?
                .push(" WITH PASSWORD = ")
                .secret(password)?
                .push(", CHECK_EXPIRATION = OFF"),
            Sql::new(D, "ALTER LOGIN ").ident(login)?.push(" DISABLE"),
            Sql::new(D, "ALTER SERVER ROLE [apono_managed] ADD MEMBER ").ident(login)?,
        ])
    }

    /// A fresh password, and the login enabled.
    pub fn set_password(login: &str, password: &SecretString) -> Result<Vec<Sql>, QuoteError> {
        Ok(vec![
            Sql::new(D, "ALTER LOGIN ")
                .ident(login)?
                .push(" WITH PASSWORD = ")
                .secret(password)?,
            Sql::new(D, "ALTER LOGIN ").ident(login)?.push(" ENABLE"),
        ])
    }

    /// `ALTER LOGIN [L] DISABLE`.
    pub fn disable_login(login: &str) -> Result<Sql, QuoteError> {
        Ok(Sql::new(D, "ALTER LOGIN ").ident(login)?.push(" DISABLE"))
    }

    /// `KILL n`.
    pub fn kill(session: u64) -> Sql {
        Sql::new(D, "KILL ").number(session)
    }

    /// `USE [D]`.
    pub fn use_database(db: &str) -> Result<Sql, QuoteError> {
        Sql::new(D, "USE ").ident(db)
    }

    /// The grant's server role (its record) and the login's membership.
    pub fn create_grant_record(role: &str, login: &str) -> Result<Vec<Sql>, QuoteError> {
        Ok(vec![
            Sql::new(D, "CREATE SERVER ROLE ").ident(role)?,
            Sql::new(D, "ALTER SERVER ROLE ")
                .ident(role)?
                .push(" ADD MEMBER ")
                .ident(login)?,
        ])
    }

    /// `DROP SERVER ROLE [G]` (its members go with it).
    pub fn drop_grant_record(role: &str, login: &str) -> Result<Vec<Sql>, QuoteError> {
        Ok(vec![
            Sql::new(D, "ALTER SERVER ROLE ")
                .ident(role)?
                .push(" DROP MEMBER ")
                .ident(login)?,
            Sql::new(D, "DROP SERVER ROLE ").ident(role)?,
        ])
    }

    /// `CREATE USER [L] FOR LOGIN [L]` in the current database.
    pub fn create_user(login: &str) -> Result<Sql, QuoteError> {
        Sql::new(D, "CREATE USER ")
            .ident(login)?
            .push(" FOR LOGIN ")
            .ident(login)
    }

    /// `CREATE ROLE [G]` in the current database.
    pub fn create_role(role: &str) -> Result<Sql, QuoteError> {
        Sql::new(D, "CREATE ROLE ").ident(role)
    }

    /// The privileges of `level` on `scope` (in the current database) for role `[G]`, and the
    /// user's membership.
    pub fn privileges(
        scope: &Scope,
        level: &Level,
        role: &str,
        login: &str,
    ) -> Result<Vec<Sql>, QuoteError> {
        let mut out = Vec::new();
        match scope {
            Scope::Cluster | Scope::Database(_) => {
                let roles: &[&'static str] = match level {
                    Level::ReadOnly => &["db_datareader"],
                    Level::ReadWrite => &["db_datareader", "db_datawriter"],
                    _ => &["db_datareader", "db_datawriter", "db_ddladmin"],
                };
                for r in roles {
                    out.push(
                        Sql::new(D, "ALTER ROLE ")
                            .push(r)
                            .push(" ADD MEMBER ")
                            .ident(role)?,
                    );
                }
                if *level == Level::Admin {
                    out.push(Sql::new(D, "GRANT EXECUTE TO ").ident(role)?);
                }
            }
            Scope::Schema { schema, .. } => {
                let p = match level {
                    Level::ReadOnly => "GRANT SELECT ON SCHEMA::",
                    Level::ReadWrite => "GRANT SELECT, INSERT, UPDATE, DELETE ON SCHEMA::",
                    _ => {
                        "GRANT SELECT, INSERT, UPDATE, DELETE, EXECUTE, ALTER, REFERENCES, VIEW DEFINITION ON SCHEMA::"
                    }
                };
                out.push(Sql::new(D, p).ident(schema)?.push(" TO ").ident(role)?);
                if *level == Level::Admin {
                    out.push(
                        Sql::new(
                            D,
                            "GRANT CREATE TABLE, CREATE VIEW, CREATE PROCEDURE, CREATE FUNCTION TO ",
                        )
                        .ident(role)?,
                    );
                }
            }
            Scope::Table { schema, table, .. } => {
                let p = match level {
                    Level::ReadOnly => "GRANT SELECT ON OBJECT::",
                    Level::ReadWrite => "GRANT SELECT, INSERT, UPDATE, DELETE ON OBJECT::",
                    _ => {
                        "GRANT SELECT, INSERT, UPDATE, DELETE, ALTER, REFERENCES, VIEW DEFINITION ON OBJECT::"
                    }
                };
                let schema = schema.as_deref().unwrap_or("dbo");
                out.push(
                    Sql::new(D, p)
                        .path(&[schema, table])?
                        .push(" TO ")
                        .ident(role)?,
                );
            }
        }
        out.push(
            Sql::new(D, "ALTER ROLE ")
                .ident(role)?
                .push(" ADD MEMBER ")
                .ident(login)?,
        );
        Ok(out)
    }

    /// Drops the grant's database role in the current database.
    pub fn drop_role(role: &str, login: &str) -> Result<Vec<Sql>, QuoteError> {
        Ok(vec![
            Sql::new(D, "ALTER ROLE ")
                .ident(role)?
                .push(" DROP MEMBER ")
                .ident(login)?,
            Sql::new(D, "DROP ROLE ").ident(role)?,
        ])
    }

    /// Gives schema `[S]` to the owner.
    pub fn reassign_schema(schema: &str, owner: &str) -> Result<Sql, QuoteError> {
        Sql::new(D, "ALTER AUTHORIZATION ON SCHEMA::")
            .ident(schema)?
            .push(" TO ")
            .ident(owner)
    }

    /// `DROP USER [L]` in the current database.
    pub fn drop_user(login: &str) -> Result<Sql, QuoteError> {
        Sql::new(D, "DROP USER ").ident(login)
    }

    /// Removes the marker and drops the login.
    pub fn drop_login(login: &str) -> Result<Vec<Sql>, QuoteError> {
        Ok(vec![
            Sql::new(D, "ALTER SERVER ROLE [apono_managed] DROP MEMBER ").ident(login)?,
            Sql::new(D, "DROP LOGIN ").ident(login)?,
        ])
    }
}

/// The `mssql` integration's provisioner.
#[derive(Debug)]
pub struct MssqlProvisioner {
    config: SqlConfig,
    naming: AccountNaming,
    target: String,
}

type Tds = Client<Compat<TcpStream>>;

struct Admin<'a> {
    client: Tds,
    target: &'a str,
}

impl Admin<'_> {
    async fn run(&mut self, sql: Sql) -> Result<(), ProvisionError> {
        let secret = sql.holds_secret();
        let text = sql.text().to_owned();
        self.client
            .simple_query(text)
            .await
            .map_err(|e| tds_error(self.target, e, secret))?
            .into_results()
            .await
            .map(drop)
            .map_err(|e| tds_error(self.target, e, secret))
    }

    async fn run_all(&mut self, statements: Vec<Sql>) -> Result<(), ProvisionError> {
        for sql in statements {
            self.run(sql).await?;
        }
        Ok(())
    }

    /// The first column of each row of a parameterised query, as text.
    async fn strings(
        &mut self,
        query: &'static str,
        bind: &[&str],
    ) -> Result<Vec<String>, ProvisionError> {
        let mut q = Query::new(query);
        for b in bind {
            q.bind(*b);
        }
        let rows = q
            .query(&mut self.client)
            .await
            .map_err(|e| tds_error(self.target, e, false))?
            .into_first_result()
            .await
            .map_err(|e| tds_error(self.target, e, false))?;
        Ok(rows
            .iter()
            .filter_map(|r| r.get::<&str, _>(0).map(str::to_owned))
            .collect())
    }

    /// The integer columns of the first row.
    async fn ints(
        &mut self,
        query: &'static str,
        bind: &[&str],
    ) -> Result<Vec<i64>, ProvisionError> {
        let mut q = Query::new(query);
        for b in bind {
            q.bind(*b);
        }
        let rows = q
            .query(&mut self.client)
            .await
            .map_err(|e| tds_error(self.target, e, false))?
            .into_first_result()
            .await
            .map_err(|e| tds_error(self.target, e, false))?;
        let Some(row) = rows.first() else {
            return Ok(Vec::new());
        };
        Ok((0..row.len())
            .map(|i| {
                row.get::<i32, _>(i)
                    .map(i64::from)
                    .or_else(|| row.get::<i16, _>(i).map(i64::from))
                    .or_else(|| row.get::<i64, _>(i))
                    .unwrap_or(0)
            })
            .collect())
    }
}

/// A tiberius error as a [`ProvisionError`]; for a statement holding a secret, the server's
/// message is left out.
fn tds_error(target: &str, e: tiberius::error::Error, secret: bool) -> ProvisionError {
    let target = target.to_owned();
    match e {
        tiberius::error::Error::Server(token) => {
            let code = token.code();
            let reason = if secret {
                format!("a statement holding a password failed (error {code})")
            } else {
                format!("{} (error {code})", token.message())
            };
            match code {
                229 | 230 | 262 | 297 | 300 | 916 | 15247 | 18456 => {
                    ProvisionError::PermissionDenied {
                        target,
                        reason,
                        source: None,
                    }
                }
                _ => ProvisionError::Target {
                    target,
                    reason,
                    source: None,
                },
            }
        }
        e @ (tiberius::error::Error::Io { .. } | tiberius::error::Error::Tls(_)) => {
            ProvisionError::Unavailable {
                target,
                source: Some(Box::new(e)),
            }
        }
        e => ProvisionError::Target {
            target,
            reason: "the SQL Server client failed".into(),
            source: Some(Box::new(e)),
        },
    }
}

impl MssqlProvisioner {
    /// A provisioner for `config` (checked again here).
    pub fn new(config: SqlConfig) -> Result<Self, crate::ConfigError> {
        config.validate(Engine::Mssql)?;
        if !config.roles.is_empty() {
            return Err(crate::ConfigError::Invalid(
                "mssql integrations do not offer server roles".into(),
            ));
        }
        let naming = match &config.home_domain {
            Some(domain) => AccountNaming::new().with_home_domain(domain.clone()),
            None => AccountNaming::new(),
        };
        let target = format!(
            "{}:{}",
            config.hostname,
            config.port_or_default(Engine::Mssql)
        );
        Ok(Self {
            config,
            naming,
            target,
        })
    }

    /// The login a grantee gets (SQL Server takes PostgreSQL's role grammar here: lower-case
    /// letters, digits, `_` and `-`, at most 63 characters).
    pub fn login_for(&self, grant: &GrantSpec) -> apono_core::names::PostgresRoleName {
        self.naming.account_for(&grant.grantee)
    }

    fn owner(&self) -> &str {
        self.config.owner_role.as_deref().unwrap_or("dbo")
    }

    /// Connects as the admin (over TLS unless `encrypt = false`).
    async fn connect(&self, ctx: &ActionContext) -> Result<Admin<'_>, ProvisionError> {
        let (user, password) = admin_credential(ctx)?;
        let mut config = tiberius::Config::new();
        config.host(&self.config.hostname);
        config.port(self.config.port_or_default(Engine::Mssql));
        config.database(self.config.dbname.as_deref().unwrap_or("master"));
        config.application_name("apono-connector");
        config.authentication(AuthMethod::sql_server(&user, password.expose_secret()));
        config.encryption(if self.config.encrypt.unwrap_or(true) {
            EncryptionLevel::Required
        } else {
            EncryptionLevel::NotSupported
        });
        if self.config.trust_server_certificate == Some(true) {
            config.trust_cert();
        } else if let Some(ca) = &self.config.ssl_ca {
            config.trust_cert_ca(ca.display());
        }
        let timeout = self.config.connect_timeout();
        let target = self.target.clone();
        let client = ctx
            .bounded(tokio::time::sleep, async {
                let connect = async {
                    let tcp = TcpStream::connect(config.get_addr()).await.map_err(|e| {
                        ProvisionError::Unavailable {
                            target: target.clone(),
                            source: Some(Box::new(e)),
                        }
                    })?;
                    let _ = tcp.set_nodelay(true);
                    Client::connect(config, tcp.compat_write())
                        .await
                        .map_err(|e| tds_error(&target, e, false))
                };
                match tokio::time::timeout(timeout, connect).await {
                    Ok(result) => result,
                    Err(_) => Err(ProvisionError::Unavailable {
                        target: target.clone(),
                        source: Some("connection timed out".into()),
                    }),
                }
            })
            .await?;
        Ok(Admin {
            client,
            target: &self.target,
        })
    }

    async fn check_scope(
        &self,
        admin: &mut Admin<'_>,
        scope: &Scope,
    ) -> Result<Vec<String>, ProvisionError> {
        let all = admin.strings(plan::USER_DATABASES, &[]).await?;
        let Some(db) = scope.database() else {
            return Ok(all);
        };
        if !all.iter().any(|d| d == db) {
            return Err(ProvisionError::InvalidGrant(
                "the database does not exist or is not offered".into(),
            ));
        }
        admin
            .run(plan::use_database(db).map_err(quote_error)?)
            .await?;
        let found = match scope {
            Scope::Schema { schema, .. } => admin.ints(plan::SCHEMA_EXISTS, &[schema]).await?,
            Scope::Table { schema, table, .. } => {
                admin
                    .ints(
                        plan::TABLE_EXISTS,
                        &[schema.as_deref().unwrap_or("dbo"), table],
                    )
                    .await?
            }
            _ => vec![1],
        };
        if found.first().copied().unwrap_or(0) == 0 {
            return Err(ProvisionError::InvalidGrant(
                "the resource does not exist or is not offered".into(),
            ));
        }
        Ok(vec![db.to_owned()])
    }

    async fn set_password(
        &self,
        admin: &mut Admin<'_>,
        login: &str,
    ) -> Result<SecretString, ProvisionError> {
        let password = generate_password();
        admin
            .run_all(plan::set_password(login, &password).map_err(quote_error)?)
            .await?;
        Ok(password)
    }

    fn access(
        &self,
        login: &str,
        scope: &Scope,
        grant: &GrantSpec,
        password: SecretString,
    ) -> apono_core::AccessDetails {
        Connection {
            engine: Engine::Mssql,
            host: &self.config.hostname,
            port: self.config.port_or_default(Engine::Mssql),
            login,
            database: scope.database(),
            tls: Some(("encrypt", self.config.encrypt.unwrap_or(true).to_string())),
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
        let scope = Scope::from_resource(&grant.resource, true)?;
        let level = Level::parse(&grant.permission, &scope, &[])?;
        if grant.expires_at <= Utc::now() {
            return Err(ProvisionError::InvalidGrant(
                "the grant has already expired".into(),
            ));
        }
        let login = self.login_for(grant);
        let login = login.as_str();
        let role = grant_role_name(&grant.grant_id);
        let mut admin = self.connect(ctx).await?;
        let databases = self.check_scope(&mut admin, &scope).await?;
        admin
            .run(plan::use_database("master").map_err(quote_error)?)
            .await?;
        admin.run(plan::create_marker_role()).await?;
        let state = admin.ints(plan::LOGIN_STATE, &[login]).await?;
        let (found, marked) = (
            state.first().copied().unwrap_or(0),
            state.get(1).copied().unwrap_or(0),
        );
        if found > 0 && marked == 0 {
            return Err(ProvisionError::Conflict {
                target: self.target.clone(),
                reason: format!("login {login} exists and was not created by this integration"),
            });
        }
        if found == 0 {
            admin
                .run_all(plan::create_login(login, &generate_password()).map_err(quote_error)?)
                .await?;
        }
        let records = admin.strings(plan::GRANT_ROLES_OF, &[login]).await?;
        if !records.contains(&role) {
            let mut statements = plan::create_grant_record(&role, login).map_err(quote_error)?;
            if !admin
                .strings(plan::SERVER_ROLE_EXISTS, &[&role])
                .await?
                .is_empty()
            {
                // Left by a grant that stopped half-way: only the membership is missing.
                statements.remove(0);
            }
            admin.run_all(statements).await?;
        }
        for db in &databases {
            ctx.checkpoint()?;
            admin
                .run(plan::use_database(db).map_err(quote_error)?)
                .await?;
            if admin
                .ints(plan::USER_EXISTS, &[login])
                .await?
                .first()
                .copied()
                .unwrap_or(0)
                == 0
            {
                admin
                    .run(plan::create_user(login).map_err(quote_error)?)
                    .await?;
            }
            if admin
                .ints(plan::ROLE_EXISTS, &[&role])
                .await?
                .first()
                .copied()
                .unwrap_or(0)
                == 0
            {
                admin
                    .run(plan::create_role(&role).map_err(quote_error)?)
                    .await?;
            }
            let scope = match &scope {
                Scope::Cluster => Scope::Database(db.clone()),
                other => other.clone(),
            };
            admin
                .run_all(plan::privileges(&scope, &level, &role, login).map_err(quote_error)?)
                .await?;
        }
        admin
            .run(plan::use_database("master").map_err(quote_error)?)
            .await?;
        let password = self.set_password(&mut admin, login).await?;
        let state = SqlGrantState {
            engine: Engine::Mssql,
            login: login.to_owned(),
            grant_role: Some(role),
            databases,
            login_created: found == 0,
        };
        Ok(Granted {
            state: GrantState::encode(&state)?,
            access: self.access(login, &scope, grant, password),
        })
    }

    async fn end_sessions(&self, admin: &mut Admin<'_>, login: &str) -> Result<(), ProvisionError> {
        admin
            .run(plan::disable_login(login).map_err(quote_error)?)
            .await?;
        let mut q = Query::new(plan::SESSIONS_OF);
        q.bind(login);
        let rows = q
            .query(&mut admin.client)
            .await
            .map_err(|e| tds_error(&self.target, e, false))?
            .into_first_result()
            .await
            .map_err(|e| tds_error(&self.target, e, false))?;
        let ids: Vec<u64> = rows
            .iter()
            .filter_map(|r| r.get::<i16, _>(0))
            .filter_map(|id| u64::try_from(id).ok())
            .collect();
        for id in ids {
            admin.run(plan::kill(id)).await?;
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
        let login = apono_core::names::PostgresRoleName::parse(state.login.as_str())?;
        let login = login.as_str();
        let role = grant_role_name(&grant.grant_id);
        let mut admin = self.connect(ctx).await?;
        admin
            .run(plan::use_database("master").map_err(quote_error)?)
            .await?;
        let found = admin.ints(plan::LOGIN_STATE, &[login]).await?;
        if found.get(1).copied().unwrap_or(0) == 0 {
            // Gone, or not ours: nothing of ours to touch on the login.
            return Ok(());
        }
        let records = admin.strings(plan::GRANT_ROLES_OF, &[login]).await?;
        if records.iter().all(|r| *r == role) {
            self.end_sessions(&mut admin, login).await?;
        }
        for db in &state.databases {
            admin
                .run(plan::use_database(db).map_err(quote_error)?)
                .await?;
            if admin
                .ints(plan::ROLE_EXISTS, &[&role])
                .await?
                .first()
                .copied()
                .unwrap_or(0)
                > 0
            {
                admin
                    .run_all(plan::drop_role(&role, login).map_err(quote_error)?)
                    .await?;
            }
        }
        admin
            .run(plan::use_database("master").map_err(quote_error)?)
            .await?;
        if records.contains(&role) {
            admin
                .run_all(plan::drop_grant_record(&role, login).map_err(quote_error)?)
                .await?;
        }
        Ok(())
    }

    async fn delete(&self, ctx: &ActionContext, state: &GrantState) -> Result<(), ProvisionError> {
        ctx.checkpoint()?;
        let state: SqlGrantState = state.decode()?;
        let login = apono_core::names::PostgresRoleName::parse(state.login.as_str())?;
        let login = login.as_str();
        let mut admin = self.connect(ctx).await?;
        admin
            .run(plan::use_database("master").map_err(quote_error)?)
            .await?;
        let found = admin.ints(plan::LOGIN_STATE, &[login]).await?;
        match (
            found.first().copied().unwrap_or(0),
            found.get(1).copied().unwrap_or(0),
        ) {
            (0, _) => return Ok(()),
            (_, 0) => {
                return Err(ProvisionError::Conflict {
                    target: self.target.clone(),
                    reason: format!("login {login} was not created by this integration"),
                });
            }
            _ => {}
        }
        if !admin
            .strings(plan::GRANT_ROLES_OF, &[login])
            .await?
            .is_empty()
        {
            return Ok(());
        }
        self.end_sessions(&mut admin, login).await?;
        for db in admin.strings(plan::USER_DATABASES, &[]).await? {
            admin
                .run(plan::use_database(&db).map_err(quote_error)?)
                .await?;
            if admin
                .ints(plan::USER_EXISTS, &[login])
                .await?
                .first()
                .copied()
                .unwrap_or(0)
                == 0
            {
                continue;
            }
            for schema in admin.strings(plan::SCHEMAS_OWNED_BY, &[login]).await? {
                admin
                    .run(plan::reassign_schema(&schema, self.owner()).map_err(quote_error)?)
                    .await?;
            }
            admin
                .run(plan::drop_user(login).map_err(quote_error)?)
                .await?;
        }
        admin
            .run(plan::use_database("master").map_err(quote_error)?)
            .await?;
        admin
            .run_all(plan::drop_login(login).map_err(quote_error)?)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Provisioner for MssqlProvisioner {
    #[instrument(skip_all, fields(integration_type = "mssql"))]
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
        let rights = admin.ints(plan::ADMIN_RIGHTS, &[]).await?;
        Ok(StatusReport::from_checks(vec![
            check("connected", Ok(())),
            check(
                "admin can manage logins and server roles",
                if rights.first().copied().unwrap_or(0) == 1 {
                    Ok(())
                } else {
                    Err("ALTER ANY LOGIN and ALTER ANY SERVER ROLE are needed".into())
                },
            ),
            check(
                "expiry backstop",
                Err("SQL Server has no expiry time on logins: access ends only when the connector revokes it".into()),
            ),
        ]))
    }

    #[instrument(skip_all, fields(integration_type = "mssql"))]
    async fn list_resources(&self, ctx: &ActionContext) -> Result<Inventory, ProvisionError> {
        ctx.checkpoint()?;
        let mut admin = self.connect(ctx).await?;
        let resource = |kind: &str, id: String, name: String| Resource {
            integration: String::new(),
            resource_type: ResourceType::from(kind),
            id,
            name,
            tags: Default::default(),
        };
        let mut resources = vec![resource(
            resource_type::CLUSTER,
            "cluster".into(),
            self.target.clone(),
        )];
        for db in admin.strings(plan::USER_DATABASES, &[]).await? {
            resources.push(resource(
                resource_type::DATABASE,
                encode_id(&[&db]),
                db.clone(),
            ));
            admin
                .run(plan::use_database(&db).map_err(quote_error)?)
                .await?;
            for schema in admin.strings(plan::USER_SCHEMAS, &[]).await? {
                resources.push(resource(
                    resource_type::SCHEMA,
                    encode_id(&[&db, &schema]),
                    format!("{db}.{schema}"),
                ));
            }
            let rows = Query::new(plan::USER_TABLES)
                .query(&mut admin.client)
                .await
                .map_err(|e| tds_error(&self.target, e, false))?
                .into_first_result()
                .await
                .map_err(|e| tds_error(&self.target, e, false))?;
            for row in rows {
                if let (Some(schema), Some(table)) = (row.get::<&str, _>(0), row.get::<&str, _>(1))
                {
                    resources.push(resource(
                        resource_type::TABLE,
                        encode_id(&[&db, schema, table]),
                        format!("{db}.{schema}.{table}"),
                    ));
                }
            }
        }
        Ok(Inventory {
            resources,
            permissions: crate::permissions(&[], true),
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
        let login = apono_core::names::PostgresRoleName::parse(decoded.login.as_str())?;
        let scope = Scope::from_resource(&grant.resource, true)?;
        let mut admin = self.connect(ctx).await?;
        let found = admin.ints(plan::LOGIN_STATE, &[login.as_str()]).await?;
        let active = !admin
            .strings(plan::GRANT_ROLES_OF, &[login.as_str()])
            .await?
            .is_empty();
        if found.get(1).copied().unwrap_or(0) == 0 || !active {
            return Err(ProvisionError::Conflict {
                target: self.target.clone(),
                reason: format!("login {login} is missing, not ours, or has no active grant"),
            });
        }
        let password = self.set_password(&mut admin, login.as_str()).await?;
        Ok(Granted {
            state: state.clone(),
            access: self.access(login.as_str(), &scope, grant, password),
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
