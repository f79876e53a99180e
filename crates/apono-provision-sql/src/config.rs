//! The integrations' configuration, with the names of Apono's database integrations.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Engine;

/// Configuration of a `postgresql`, `mysql` or `mssql` integration (its `config` object).
///
/// The keys are the same for the three engines, except TLS: `sslmode` (PostgreSQL),
/// `ssl_mode` (MySQL/MariaDB) and `encrypt` + `trust_server_certificate` (SQL Server); a TLS
/// key of another engine is refused. Unknown keys are errors. The admin credential is not
/// here: it is the integration secret's `username` and `password`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// Host name or IP address of the server.
    pub hostname: String,
    /// TCP port. Default: 5432 (PostgreSQL), 3306 (MySQL), 1433 (SQL Server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The database the connector connects to for server-wide work. Default: `postgres`
    /// (PostgreSQL), none (MySQL), `master` (SQL Server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dbname: Option<String>,
    /// PostgreSQL only: libpq's `sslmode` (`disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`). Default: `verify-full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sslmode: Option<PgSslMode>,
    /// MySQL/MariaDB only: the client's `--ssl-mode` (`DISABLED`, `PREFERRED`, `REQUIRED`,
    /// `VERIFY_CA`, `VERIFY_IDENTITY`). Default: `VERIFY_IDENTITY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_mode: Option<MySqlSslMode>,
    /// SQL Server only: encrypt the connection. Default: `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypt: Option<bool>,
    /// SQL Server only: accept any server certificate. Default: `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_server_certificate: Option<bool>,
    /// A PEM file of the CA that signed the server's certificate; default: the web PKI roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssl_ca: Option<PathBuf>,
    /// Existing server roles offered as permissions on the `cluster` resource, by name. Only
    /// roles listed here are ever granted; a superuser role is offered only if listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The role that receives the objects a grantee's login created, when its access ends.
    /// Default: the connector's admin user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_role: Option<String>,
    /// MySQL/MariaDB only: the host part of created accounts (`'name'@'<host>'`). Default: `%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_host: Option<String>,
    /// The email domain whose addresses map to readable login names
    /// (`john.smith@corp.example` → `john_smith`); other identities get hashed names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_domain: Option<String>,
    /// Seconds to wait for a connection to the server. Default: 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_secs: Option<u64>,
}

/// PostgreSQL's `sslmode`, as libpq spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum PgSslMode {
    /// No TLS.
    Disable,
    /// TLS if the server offers it, unverified.
    Prefer,
    /// TLS, unverified.
    Require,
    /// TLS, the certificate verified against the CA.
    VerifyCa,
    /// TLS, the certificate and the host name verified.
    VerifyFull,
}

/// MySQL's `--ssl-mode`, as the MySQL client spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MySqlSslMode {
    /// No TLS.
    Disabled,
    /// TLS if the server offers it, unverified.
    Preferred,
    /// TLS, unverified.
    Required,
    /// TLS, the certificate verified against the CA.
    VerifyCa,
    /// TLS, the certificate and the host name verified.
    VerifyIdentity,
}

/// Why a configuration is not acceptable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration does not parse.
    #[error("database integration config does not parse: {0}")]
    Parse(String),
    /// A value breaks a rule.
    #[error("database integration config is invalid: {0}")]
    Invalid(String),
}

impl SqlConfig {
    /// Parses and checks a JSON config object for `engine`.
    pub fn from_json(engine: Engine, value: &serde_json::Value) -> Result<Self, ConfigError> {
        let config = Self::deserialize(value).map_err(|e| ConfigError::Parse(e.to_string()))?;
        config.validate(engine)?;
        Ok(config)
    }

    /// Checks the rules serde cannot express.
    pub fn validate(&self, engine: Engine) -> Result<(), ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_owned()));
        let host_ok = !self.hostname.is_empty()
            && self.hostname.len() <= 253
            && self
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b))
            && !self.hostname.starts_with('-');
        if !host_ok {
            return invalid("hostname must be a host name or an IP address");
        }
        if self.port == Some(0) {
            return invalid("port must not be 0");
        }
        let foreign = match engine {
            Engine::Postgres => self.ssl_mode.is_some() || self.mssql_tls(),
            Engine::MySql => self.sslmode.is_some() || self.mssql_tls(),
            Engine::Mssql => self.sslmode.is_some() || self.ssl_mode.is_some(),
        };
        if foreign {
            return invalid(match engine {
                Engine::Postgres => "a postgresql integration sets TLS with sslmode",
                Engine::MySql => "a mysql integration sets TLS with ssl_mode",
                Engine::Mssql => {
                    "an mssql integration sets TLS with encrypt and trust_server_certificate"
                }
            });
        }
        if engine != Engine::MySql && self.user_host.is_some() {
            return invalid("user_host applies to mysql integrations only");
        }
        for name in self
            .roles
            .iter()
            .chain(&self.owner_role)
            .chain(&self.dbname)
        {
            if name.is_empty() || name.chars().any(char::is_control) {
                return invalid("roles, owner_role and dbname must be non-empty names");
            }
        }
        if let Some(host) = &self.user_host
            && (host.is_empty() || host.len() > 255 || host.chars().any(char::is_control))
        {
            return invalid("user_host must be a MySQL host pattern");
        }
        if self.connect_timeout_secs == Some(0) {
            return invalid("connect_timeout_secs must not be 0");
        }
        Ok(())
    }

    fn mssql_tls(&self) -> bool {
        self.encrypt.is_some() || self.trust_server_certificate.is_some()
    }

    /// The port, or the engine's default.
    pub fn port_or_default(&self, engine: Engine) -> u16 {
        self.port.unwrap_or(match engine {
            Engine::Postgres => 5432,
            Engine::MySql => 3306,
            Engine::Mssql => 1433,
        })
    }

    /// The connect timeout.
    pub fn connect_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.connect_timeout_secs.unwrap_or(10))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_and_refusals() {
        let config = SqlConfig::from_json(Engine::Postgres, &json!({"hostname": "db"})).unwrap();
        assert_eq!(config.port_or_default(Engine::Postgres), 5432);
        assert_eq!(config.port_or_default(Engine::MySql), 3306);
        assert_eq!(config.port_or_default(Engine::Mssql), 1433);
        for (engine, bad) in [
            (
                Engine::Postgres,
                json!({"hostname": "db", "ssl_mode": "DISABLED"}),
            ),
            (
                Engine::MySql,
                json!({"hostname": "db", "sslmode": "disable"}),
            ),
            (
                Engine::Mssql,
                json!({"hostname": "db", "sslmode": "disable"}),
            ),
            (
                Engine::Postgres,
                json!({"hostname": "db", "encrypt": false}),
            ),
            (Engine::Postgres, json!({"hostname": "db", "prot": 1})),
            (Engine::Postgres, json!({"hostname": "-oProxy=x"})),
            (
                Engine::Postgres,
                json!({"hostname": "db", "sslmode": "allow-all"}),
            ),
            (
                Engine::Postgres,
                json!({"hostname": "db", "user_host": "%"}),
            ),
            (Engine::MySql, json!({"hostname": "db", "roles": [""]})),
        ] {
            assert!(SqlConfig::from_json(engine, &bad).is_err(), "{bad}");
        }
        let mysql = SqlConfig::from_json(
            Engine::MySql,
            &json!({"hostname": "db", "ssl_mode": "VERIFY_CA", "user_host": "10.%"}),
        )
        .unwrap();
        assert_eq!(mysql.ssl_mode, Some(MySqlSslMode::VerifyCa));
    }
}
