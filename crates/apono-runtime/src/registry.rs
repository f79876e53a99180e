//! [`ProvisionerRegistry`]: integration type → provisioner factory.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use apono_core::{Integration, ProvisionError, Provisioner};

/// Builds the provisioner of one integration from its definition (typically by parsing
/// [`Integration::config`] with [`Integration::config_as`]).
pub type ProvisionerFactory =
    Arc<dyn Fn(&Integration) -> Result<Arc<dyn Provisioner>, ProvisionError> + Send + Sync>;

/// Which provisioner serves which integration type.
///
/// [`ProvisionerRegistry::with_builtin`] knows the types compiled in through this crate's
/// features (`ssh`, `rancher`, `winrm`, `apono-vault`, `postgresql`, `mysql`, `mssql`); a custom connector adds its own with [`ProvisionerRegistry::register`]:
///
/// ```no_run
/// use std::sync::Arc;
/// use apono_runtime::ProvisionerRegistry;
/// # fn my_provisioner(_: &apono_core::Integration) -> Arc<dyn apono_core::Provisioner> { todo!() }
/// let mut registry = ProvisionerRegistry::with_builtin();
/// registry.register("acme-widgets", Arc::new(|integration| Ok(my_provisioner(integration))));
/// ```
#[derive(Clone, Default)]
pub struct ProvisionerRegistry {
    factories: BTreeMap<String, ProvisionerFactory>,
}

impl ProvisionerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with every integration type compiled into this crate, one cargo feature per
    /// provisioner crate:
    ///
    /// | feature | integration types |
    /// |---|---|
    /// | `ssh` | `ssh` |
    /// | `rancher` | `rancher` |
    /// | `winrm` | `rdp`, `windows-domain-controller` |
    /// | `apono-vault` | `apono-vault` |
    /// | `postgresql` | `postgresql` |
    /// | `mysql` | `mysql` (MySQL and MariaDB) |
    /// | `mssql` | `mssql` (SQL Server) |
    ///
    /// Building a provisioner parses and checks the integration's config and sets up its
    /// client; none of the factories touches the network.
    pub fn with_builtin() -> Self {
        #[allow(unused_mut)]
        let mut registry = Self::new();
        #[cfg(feature = "ssh")]
        registry.register(
            apono_provision_ssh::INTEGRATION_TYPE,
            Arc::new(|integration: &Integration| {
                let config = apono_provision_ssh::SshConfig::from_json(&integration.config)
                    .map_err(|e| config_error(integration, e))?;
                let provisioner = apono_provision_ssh::SshProvisioner::new(config)
                    .map_err(|e| config_error(integration, e))?;
                Ok(Arc::new(provisioner) as Arc<dyn Provisioner>)
            }),
        );
        #[cfg(feature = "rancher")]
        registry.register(
            apono_provision_rancher::INTEGRATION_TYPE,
            Arc::new(|integration: &Integration| {
                let provisioner =
                    apono_provision_rancher::RancherProvisioner::from_integration(integration)
                        .map_err(|e| config_error(integration, e))?;
                Ok(Arc::new(provisioner) as Arc<dyn Provisioner>)
            }),
        );
        #[cfg(feature = "winrm")]
        for integration_type in [
            apono_core::IntegrationType::Rdp,
            apono_core::IntegrationType::WindowsDomainController,
        ] {
            registry.register(
                integration_type.as_str(),
                Arc::new(|integration: &Integration| {
                    let provisioner =
                        apono_provision_winrm::WinrmProvisioner::from_integration(integration)?;
                    Ok(Arc::new(provisioner) as Arc<dyn Provisioner>)
                }),
            );
        }
        #[cfg(feature = "apono-vault")]
        registry.register(
            apono_core::IntegrationType::AponoVault.as_str(),
            Arc::new(|integration: &Integration| {
                let provisioner =
                    apono_vault_client::AponoVaultProvisioner::from_integration(integration)?;
                Ok(Arc::new(provisioner) as Arc<dyn Provisioner>)
            }),
        );
        #[cfg(feature = "postgresql")]
        registry.register(
            apono_provision_sql::Engine::Postgres.integration_type(),
            Arc::new(|integration: &Integration| {
                let config = apono_provision_sql::SqlConfig::from_json(
                    apono_provision_sql::Engine::Postgres,
                    &integration.config,
                )
                .map_err(|e| config_error(integration, e))?;
                let provisioner = apono_provision_sql::postgres::PostgresProvisioner::new(config)
                    .map_err(|e| config_error(integration, e))?;
                Ok(Arc::new(provisioner) as Arc<dyn Provisioner>)
            }),
        );
        #[cfg(feature = "mysql")]
        registry.register(
            apono_provision_sql::Engine::MySql.integration_type(),
            Arc::new(|integration: &Integration| {
                let config = apono_provision_sql::SqlConfig::from_json(
                    apono_provision_sql::Engine::MySql,
                    &integration.config,
                )
                .map_err(|e| config_error(integration, e))?;
                let provisioner = apono_provision_sql::mysql::MySqlProvisioner::new(config)
                    .map_err(|e| config_error(integration, e))?;
                Ok(Arc::new(provisioner) as Arc<dyn Provisioner>)
            }),
        );
        #[cfg(feature = "mssql")]
        registry.register(
            apono_provision_sql::Engine::Mssql.integration_type(),
            Arc::new(|integration: &Integration| {
                let config = apono_provision_sql::SqlConfig::from_json(
                    apono_provision_sql::Engine::Mssql,
                    &integration.config,
                )
                .map_err(|e| config_error(integration, e))?;
                let provisioner = apono_provision_sql::mssql::MssqlProvisioner::new(config)
                    .map_err(|e| config_error(integration, e))?;
                Ok(Arc::new(provisioner) as Arc<dyn Provisioner>)
            }),
        );
        registry
    }

    /// Serves integrations of type `integration_type` with `factory`, replacing any factory
    /// registered for that type before.
    pub fn register(
        &mut self,
        integration_type: impl Into<String>,
        factory: ProvisionerFactory,
    ) -> &mut Self {
        self.factories.insert(integration_type.into(), factory);
        self
    }

    /// Whether a factory serves `integration_type`.
    pub fn contains(&self, integration_type: &str) -> bool {
        self.factories.contains_key(integration_type)
    }

    /// The registered integration types.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    /// The factory for `integration_type`.
    pub fn factory(&self, integration_type: &str) -> Option<&ProvisionerFactory> {
        self.factories.get(integration_type)
    }
}

/// A provisioner crate's own configuration error, as the [`ProvisionError`] the executor reports.
#[cfg(any(
    feature = "ssh",
    feature = "rancher",
    feature = "postgresql",
    feature = "mysql",
    feature = "mssql"
))]
fn config_error(integration: &Integration, error: impl fmt::Display) -> ProvisionError {
    ProvisionError::Config(apono_core::InvalidIntegration::Config {
        integration: integration.name.clone(),
        reason: error.to_string(),
    })
}

impl fmt::Debug for ProvisionerRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvisionerRegistry")
            .field("types", &self.factories.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(all(
    test,
    feature = "ssh",
    feature = "rancher",
    feature = "winrm",
    feature = "apono-vault",
    feature = "postgresql",
    feature = "mysql",
    feature = "mssql"
))]
mod tests {
    use super::*;

    fn integration(kind: &str, config: serde_json::Value) -> Integration {
        serde_json::from_value(serde_json::json!({
            "name": "i", "type": kind, "config": config,
            "secret_store": {"aws": {"region": "eu-west-1", "secret_id": "s"}}
        }))
        .unwrap()
    }

    /// Every built-in type, a valid minimal config and an invalid one.
    fn builtin_cases() -> Vec<(&'static str, serde_json::Value, serde_json::Value)> {
        use serde_json::json;
        vec![
            (
                "ssh",
                json!({"servers": [{"name": "web-1", "host": "10.0.0.5"}]}),
                json!({"servers": []}),
            ),
            (
                "rancher",
                json!({"host": "rancher.example.com"}),
                json!({"host": "rancher.example.com", "prot": 443}),
            ),
            (
                "rdp",
                json!({"host": "win-1.example.com"}),
                json!({"host": "-bad host"}),
            ),
            (
                "windows-domain-controller",
                json!({"host": "dc-1.example.com"}),
                json!({"host": "dc-1.example.com", "operation_timeout_secs": 0}),
            ),
            (
                "apono-vault",
                json!({"vault_internal_url": "https://bao.example.com:8200"}),
                json!({"vault_internal_url": "https://bao.example.com:8200", "mount": "../x"}),
            ),
            (
                "postgresql",
                json!({"hostname": "db.example.com"}),
                json!({"hostname": "db.example.com", "ssl_mode": "DISABLED"}),
            ),
            (
                "mysql",
                json!({"hostname": "db.example.com", "port": 3306}),
                json!({"hostname": "db.example.com", "sslmode": "disable"}),
            ),
            (
                "mssql",
                json!({"hostname": "db.example.com", "encrypt": true}),
                json!({"hostname": "db.example.com", "roles": ["sysadmin"]}),
            ),
        ]
    }

    #[test]
    fn with_builtin_knows_and_builds_every_type() {
        let registry = ProvisionerRegistry::with_builtin();
        let cases = builtin_cases();
        let expected: Vec<&str> = {
            let mut v: Vec<&str> = cases.iter().map(|(kind, _, _)| *kind).collect();
            v.sort_unstable();
            v
        };
        assert_eq!(registry.types().collect::<Vec<_>>(), expected);
        for (kind, good, bad) in cases {
            let factory = registry.factory(kind).unwrap();
            if let Err(e) = factory(&integration(kind, good)) {
                panic!("{kind}: a valid config is refused: {e}");
            }
            match factory(&integration(kind, bad)) {
                Err(ProvisionError::Config(_)) => {}
                Err(e) => panic!("{kind}: an invalid config fails with a non-config error: {e}"),
                Ok(_) => panic!("{kind}: an invalid config is accepted"),
            }
        }
    }
}

/// The JSON Schema of the `config` of each built-in integration type this build registers
/// (`ProvisionerRegistry::with_builtin`), by type name.
#[cfg(feature = "schemars")]
pub fn integration_config_schemas(
    generator: &mut schemars::SchemaGenerator,
) -> Vec<(&'static str, schemars::Schema)> {
    #[allow(unused_mut)]
    let mut out = Vec::new();
    #[cfg(feature = "ssh")]
    out.push((
        apono_provision_ssh::INTEGRATION_TYPE,
        generator.subschema_for::<apono_provision_ssh::SshConfig>(),
    ));
    #[cfg(feature = "winrm")]
    {
        let windows = generator.subschema_for::<apono_provision_winrm::WindowsConfig>();
        out.push((apono_core::IntegrationType::Rdp.as_str(), windows.clone()));
        out.push((
            apono_core::IntegrationType::WindowsDomainController.as_str(),
            windows,
        ));
    }
    #[cfg(feature = "rancher")]
    out.push((
        apono_provision_rancher::INTEGRATION_TYPE,
        generator.subschema_for::<apono_provision_rancher::RancherConfig>(),
    ));
    #[cfg(feature = "apono-vault")]
    out.push((
        apono_core::IntegrationType::AponoVault.as_str(),
        generator.subschema_for::<apono_vault_client::AponoVaultConfig>(),
    ));
    #[cfg(feature = "postgresql")]
    out.push((
        apono_provision_sql::Engine::Postgres.integration_type(),
        generator.subschema_for::<apono_provision_sql::SqlConfig>(),
    ));
    #[cfg(feature = "mysql")]
    out.push((
        apono_provision_sql::Engine::MySql.integration_type(),
        generator.subschema_for::<apono_provision_sql::SqlConfig>(),
    ));
    #[cfg(feature = "mssql")]
    out.push((
        apono_provision_sql::Engine::Mssql.integration_type(),
        generator.subschema_for::<apono_provision_sql::SqlConfig>(),
    ));
    let _ = &generator; // nothing to generate in a build without provisioners
    out
}
