//! Just-in-time access to databases: Apono's `postgresql` (PostgreSQL), `mysql` (MySQL and
//! MariaDB) and `mssql` (Microsoft SQL Server) integrations, one cargo feature per engine
//! (`postgres`, `mysql`, `mssql`), plus `schemars` for the configuration's JSON Schema.
//!
//! Each engine's provisioner implements [`apono_core::Provisioner`]:
//!
//! * **Resources**, discovered with their hierarchy: `cluster` (the server), `database`,
//!   `schema` (PostgreSQL, SQL Server) and `table`. Ids are the path of names joined by `/`
//!   (`/` and `%` inside a name written `%2F` and `%25`), the cluster's id is `cluster`.
//!   System databases and schemas are never offered.
//! * **Permissions** `read-only`, `read-write` and `admin` on every resource type, plus, on
//!   `cluster`, the server's existing roles listed in the integration's `roles`. What each
//!   means, statement by statement, is in the engine's module: [`postgres`], [`mysql`] and
//!   [`mssql`].
//! * **One login per grantee per server**, named by [`apono_core::AccountNaming`] (with the
//!   config's `home_domain`), created on the first grant and **marked as ours** (PostgreSQL: a
//!   `COMMENT ON ROLE`; MySQL/MariaDB: a row in the connector's own database on the server; SQL
//!   Server: membership in the server role `apono_managed`); a
//!   login of that name that is not marked is never adopted ([`ProvisionError::Conflict`]).
//! * **A one-time password per grant**: each grant (and `reset-credentials`) sets a fresh
//!   password on the shared login, so the newest grant's password is the one that works; the
//!   access details carry a ready `psql`/`mysql`/`sqlcmd` command line without the password, a
//!   connection URL with the placeholder `{password}`, and the parameters as JSON.
//! * **Union semantics**: concurrent grants of one person share the login; revoking one leaves
//!   exactly what the others give (PostgreSQL and SQL Server: one role per grant; MySQL:
//!   privileges recomputed from the server-side grant records).
//! * **Expiry on the server**, so access ends even when the connector is down: PostgreSQL
//!   `VALID UNTIL` at the latest active grant's end; MySQL/MariaDB an `EVENT` that locks the
//!   account then (`get-status` warns when the event scheduler is off). SQL Server has no
//!   expiry time on logins: there, access ends only with the connector's revoke (`get-status`
//!   says so).
//! * **Revoke** removes the grant's privileges; with no grant left it disables the login
//!   first, ends its sessions and reassigns the objects it created to the `owner_role`.
//!   **Cleanup** (`delete-credentials`, run by the control plane after
//!   `credentials_cleanup_period_in_days`) drops the login. Accounts, roles and privileges this
//!   crate did not create are never touched. Every action is idempotent.
//! * **Injection-proof by construction**: statements are built by [`quote::Sql`] from static
//!   text and the one audited pair of quoting functions ([`quote::quote_ident`],
//!   [`quote::quote_literal`]); every value a driver can bind is bound.
//!
//! The admin credential is the integration secret's `username` and `password`.
//!
//! # What was proven, and how
//!
//! * **PostgreSQL** (15, `apono_testkit::Postgres`) and **MariaDB** (10.11,
//!   `apono_testkit::MariaDb`): real servers. `tests/postgres.rs` and `tests/mysql.rs` log in
//!   with the handed-out credentials through the vendors' own clients (`psql`, `mariadb`):
//!   read-only selects the granted table and nothing else and cannot write; read-write writes
//!   the granted table only; admin is confined to its database; revoke refuses the next login
//!   and ends an open session; with the connector gone, `VALID UNTIL` (PostgreSQL) and the
//!   `EVENT` (MariaDB) refuse the login after the end; concurrent grants leave the union;
//!   grant, revoke and cleanup are idempotent and leave pre-existing roles, users and
//!   privileges (decoys with the same prefix among them) byte for byte as they were; an
//!   existing unmarked account is never adopted; hostile schema and table names are quoted;
//!   a listed server role is granted and taken back within the union (PostgreSQL, MariaDB);
//!   by default TLS is required and verified (shown on PostgreSQL: a server without TLS is
//!   refused); `apono_core::conformance` passes on both. Hostile strings quoted by [`quote`] are read back
//!   exactly by both servers. MySQL itself (not MariaDB) has not run, and no TLS connection
//!   has been made (the test servers have no TLS).
//! * **SQL Server**: **no SQL Server runs here; nothing in [`mssql`] has run against one.**
//!   Every statement text it sends is parsed with `sqlfluff parse --dialect tsql` (sqlfluff
//!   4.5) for ordinary and hostile names (`tests/mssql_statements.rs`), except the kinds
//!   sqlfluff's grammar lacks (`ALTER LOGIN`, `DROP LOGIN`, `ALTER SERVER ROLE`, `DROP SERVER
//!   ROLE`, `KILL`), which are checked against their exact fixed form instead. The tiberius
//!   client runs against `apono_testkit::fakes::tds`, a TDS peer (PRELOGIN without TLS,
//!   LOGIN7, batches, `sp_executesql` with parameters, result sets, errors) whose wire format
//!   the independent client python-tds checks; there grant, union, revoke (login disabled
//!   first), cleanup, the refusal of an unmarked login and the conformance suite pass
//!   (`tests/mssql_fake.rs`). The fake's handling of the SQL is our own model of the
//!   statements, so **not proven**: that SQL Server accepts them, that the privileges mean
//!   what the table in [`mssql`] says, the catalog queries' results on a real server,
//!   `KILL` of real sessions, and TLS (the fake has none).
//!
//! # Example
//!
//! ```no_run
//! # #[cfg(feature = "postgres")]
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use apono_core::{ActionContext, Provisioner, SecretValue};
//! use apono_provision_sql::{Engine, SqlConfig, postgres::PostgresProvisioner};
//!
//! let config = SqlConfig::from_json(
//!     Engine::Postgres,
//!     &serde_json::json!({"hostname": "db.internal", "sslmode": "verify-full"}),
//! )?;
//! let provisioner = PostgresProvisioner::new(config)?;
//! let secret = SecretValue::new().with("username", "apono").with("password", "…");
//! let report = provisioner.get_status(&ActionContext::new(secret)).await?;
//! println!("{:?}", report.status);
//! # Ok(())
//! # }
//! ```

mod config;
pub mod quote;
mod scope;

#[cfg(feature = "mssql")]
pub mod mssql;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;

use std::fmt;

use apono_core::{AccessDetails, Credential, Instructions, ProvisionError};
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use config::{ConfigError, MySqlSslMode, PgSslMode, SqlConfig};
pub use scope::{Level, Scope};

/// Secret key: the admin user's name.
pub const SECRET_USERNAME: &str = "username";
/// Secret key: the admin user's password.
pub const SECRET_PASSWORD: &str = "password";

/// A name that cannot be quoted, as the error of the grant that named it.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "mssql"))]
pub(crate) fn quote_error(e: quote::QuoteError) -> ProvisionError {
    ProvisionError::InvalidGrant(format!("a name cannot be used: {e}"))
}

/// The sqlx errors that say the server cannot be reached (the connection, TLS, the pool),
/// as [`ProvisionError::Unavailable`], and any other non-database error as a target failure;
/// the engines map their own [`sqlx::Error::Database`] codes before calling this.
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub(crate) fn sqlx_client_error(target: String, e: sqlx::Error) -> ProvisionError {
    match e {
        e @ (sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)) => ProvisionError::Unavailable {
            target,
            source: Some(Box::new(e)),
        },
        e => ProvisionError::Target {
            target,
            reason: "the database client failed".into(),
            source: Some(Box::new(e)),
        },
    }
}

/// The resource types, as Apono names them.
pub mod resource_type {
    /// The server.
    pub const CLUSTER: &str = "cluster";
    /// A database.
    pub const DATABASE: &str = "database";
    /// A schema (PostgreSQL, SQL Server).
    pub const SCHEMA: &str = "schema";
    /// A table (or view).
    pub const TABLE: &str = "table";
}

/// The three permission levels.
pub mod permission {
    /// Read data.
    pub const READ_ONLY: &str = "read-only";
    /// Read and change data.
    pub const READ_WRITE: &str = "read-write";
    /// Everything on the resource, short of server administration.
    pub const ADMIN: &str = "admin";
}

/// A database engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL (integration type `postgresql`).
    #[serde(rename = "postgresql")]
    Postgres,
    /// MySQL or MariaDB (integration type `mysql`).
    MySql,
    /// Microsoft SQL Server (integration type `mssql`).
    Mssql,
}

impl Engine {
    /// The integration type, as Apono names it.
    pub const fn integration_type(self) -> &'static str {
        match self {
            Self::Postgres => "postgresql",
            Self::MySql => "mysql",
            Self::Mssql => "mssql",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.integration_type())
    }
}

/// What a grant recorded: the login and what was created for this grant. No secrets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlGrantState {
    /// The engine.
    pub engine: Engine,
    /// The grantee's login.
    pub login: String,
    /// PostgreSQL: the role that holds this grant's privileges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_role: Option<String>,
    /// The databases the grant's privileges live in.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Whether this grant created the login.
    pub login_created: bool,
}

/// The marker on a login this crate created.
pub const LOGIN_MARKER: &str = "apono-managed login";

/// Everything the access details are made of.
pub(crate) struct Connection<'a> {
    pub(crate) engine: Engine,
    pub(crate) host: &'a str,
    pub(crate) port: u16,
    pub(crate) login: &'a str,
    pub(crate) database: Option<&'a str>,
    /// TLS parameter for the URL and JSON (`sslmode=…`), if any.
    pub(crate) tls: Option<(&'static str, String)>,
    pub(crate) resource: &'a str,
    pub(crate) expires_at: DateTime<Utc>,
}

impl Connection<'_> {
    /// The access details: command line and URL without the password, JSON parameters, and
    /// the password as a one-time credential.
    pub(crate) fn access_details(&self, password: SecretString) -> AccessDetails {
        let host = self.host;
        let port = self.port.to_string();
        let login = self.login;
        let mut cli: Vec<String> = match self.engine {
            Engine::Postgres => ["psql", "-h", host, "-p", &port, "-U", login]
                .map(str::to_owned)
                .to_vec(),
            Engine::MySql => ["mysql", "-h", host, "-P", &port, "-u", login, "-p"]
                .map(str::to_owned)
                .to_vec(),
            Engine::Mssql => vec![
                "sqlcmd".into(),
                "-S".into(),
                format!("{host},{port}"),
                "-U".into(),
                login.to_owned(),
            ],
        };
        if let Some(db) = self.database {
            match self.engine {
                Engine::Postgres => cli.extend(["-d".into(), db.to_owned()]),
                Engine::MySql => cli.push(db.to_owned()),
                Engine::Mssql => cli.extend(["-d".into(), db.to_owned()]),
            }
        }
        let cli = cli
            .iter()
            .map(|w| shell_word(w))
            .collect::<Vec<_>>()
            .join(" ");
        let scheme = match self.engine {
            Engine::Postgres => "postgresql",
            Engine::MySql => "mysql",
            Engine::Mssql => "sqlserver",
        };
        let mut url = format!(
            "{scheme}://{}:{{password}}@{host}:{port}/",
            url_escape(login)
        );
        if let Some(db) = self.database {
            url.push_str(&url_escape(db));
        }
        if let Some((key, value)) = &self.tls {
            url.push_str(&format!("?{key}={value}"));
        }
        let until = self.expires_at.to_rfc3339();
        let password_env = match self.engine {
            Engine::Postgres => "PGPASSWORD",
            Engine::MySql => "MYSQL_PWD",
            Engine::Mssql => "SQLCMDPASSWORD",
        };
        let plain = format!(
            "Connect with: {cli}\nand enter the one-time password when asked (or set \
             {password_env}). URL: {url}\nAccess to {} ends at {until}.",
            self.resource
        );
        let markdown = format!(
            "Connect with:\n\n```\n{cli}\n```\n\nand enter the one-time password when asked (or \
             set `{password_env}`). URL: `{url}`\n\nAccess to **{}** ends at {until}.",
            self.resource
        );
        let mut access = AccessDetails {
            instructions: Instructions { plain, markdown },
            cli: Some(cli),
            link: Some(url.clone()),
            ..AccessDetails::default()
        };
        let json = &mut access.json;
        json.insert("engine".into(), self.engine.integration_type().into());
        json.insert("host".into(), host.into());
        json.insert("port".into(), self.port.into());
        json.insert("username".into(), login.into());
        if let Some(db) = self.database {
            json.insert("database".into(), db.into());
        }
        if let Some((key, value)) = &self.tls {
            json.insert((*key).into(), value.as_str().into());
        }
        json.insert("url".into(), url.into());
        json.insert("expires_at".into(), until.into());
        access
            .credentials
            .push(Credential::one_time(SECRET_PASSWORD, password));
        access
    }
}

/// A word for a POSIX shell: as is when it holds only safe characters, else single-quoted.
fn shell_word(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,:/@%+=".contains(&b));
    if safe {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The admin credential from the action's secret.
pub(crate) fn admin_credential(
    ctx: &apono_core::ActionContext,
) -> Result<(String, SecretString), ProvisionError> {
    use secrecy::ExposeSecret;
    let user = ctx.secret().require(SECRET_USERNAME)?;
    let password = ctx.secret().require(SECRET_PASSWORD)?;
    Ok((user.expose_secret().to_owned(), password.clone()))
}

/// The role name holding one grant's privileges: `apono_grant__` and 16 base32 characters of a
/// hash of the grant id. [`apono_core::AccountNaming`] never derives such a name (its hashed
/// names end in `__` and exactly ten characters; its clean names never hold `__`).
pub fn grant_role_name(grant_id: &apono_core::GrantId) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"apono-grant-role-v1\0")
        .chain_update(grant_id.as_str().as_bytes())
        .finalize();
    let hash = data_encoding::BASE32_NOPAD
        .encode(&digest)
        .to_ascii_lowercase();
    format!("apono_grant__{}", &hash[..16])
}

/// The permissions offered per resource type (levels everywhere; listed roles on the cluster).
#[cfg(any(feature = "postgres", feature = "mysql", feature = "mssql"))]
pub(crate) fn permissions(roles: &[String], with_schemas: bool) -> Vec<apono_core::PermissionInfo> {
    let mut types = vec![resource_type::CLUSTER, resource_type::DATABASE];
    if with_schemas {
        types.push(resource_type::SCHEMA);
    }
    types.push(resource_type::TABLE);
    let mut out = Vec::new();
    for kind in types {
        for (p, what) in [
            (permission::READ_ONLY, "read data"),
            (permission::READ_WRITE, "read and change data"),
            (
                permission::ADMIN,
                "all privileges on the resource, short of server administration",
            ),
        ] {
            out.push(apono_core::PermissionInfo {
                resource_type: kind.into(),
                permission: apono_core::Permission::from(p),
                description: Some(what.into()),
            });
        }
    }
    let unique: std::collections::BTreeSet<&String> = roles.iter().collect();
    for role in unique {
        out.push(apono_core::PermissionInfo {
            resource_type: resource_type::CLUSTER.into(),
            permission: apono_core::Permission::from(role.as_str()),
            description: Some(format!("membership in the server role {role}")),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_details_leave_the_password_out() {
        let connection = Connection {
            engine: Engine::Postgres,
            host: "db.internal",
            port: 5432,
            login: "alice",
            database: Some("sales db"),
            tls: Some(("sslmode", "verify-full".into())),
            resource: "sales db/public/orders",
            expires_at: Utc::now(),
        };
        let access = connection.access_details(SecretString::from("canary-93"));
        assert_eq!(
            access.cli.as_deref(),
            Some("psql -h db.internal -p 5432 -U alice -d 'sales db'")
        );
        assert_eq!(
            access.json["url"],
            "postgresql://alice:{password}@db.internal:5432/sales%20db?sslmode=verify-full"
        );
        let shown = format!("{access:?} {}", serde_json::to_string(&access).unwrap());
        assert!(!shown.contains("canary-93"));
        assert_eq!(access.json_with_credentials()["password"], "canary-93");
    }

    #[test]
    fn shell_words_are_quoted() {
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("$(id)"), "'$(id)'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn grant_roles_never_meet_derived_logins() {
        let role = grant_role_name(&apono_core::GrantId::new("g-1").unwrap());
        assert!(
            role.starts_with("apono_grant__") && role.len() == 29,
            "{role}"
        );
        let naming = apono_core::AccountNaming::new().with_home_domain("corp.example");
        for identity in [
            "apono_grant@corp.example",
            "apono.grant@corp.example",
            &role,
        ] {
            let login: apono_core::names::PostgresRoleName = naming.derive(identity);
            assert_ne!(login.as_str(), role);
            assert!(!login.as_str().starts_with("apono_grant__") || login.as_str().len() != 29);
        }
    }
}
