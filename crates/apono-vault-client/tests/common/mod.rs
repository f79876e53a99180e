//! A real OpenBao dev server prepared like an Apono Vault: kv-v2 mount `apono-store`, userpass
//! and AppRole enabled on the server itself, and an AppRole for the connector holding exactly
//! the policy the integration documents.

#![allow(dead_code, unreachable_pub)]

use std::process::Command;

use anyhow::{Context, Result, ensure};
use apono_core::{
    ActionContext, GrantId, GrantSpec, Grantee, Permission, Resource, ResourceType, SecretValue,
};
use apono_testkit::OpenBao;
use apono_vault_client::policy::connector_policy_hcl;
use apono_vault_client::{
    AponoVaultConfig, AponoVaultProvisioner, ClientSettings, OpenBaoClient, OpenBaoConnection,
};
use chrono::{DateTime, Utc};
use secrecy::SecretString;

pub const MOUNT: &str = "apono-store";
pub const INTEGRATION: &str = "vault-test";

pub struct Vault {
    pub server: OpenBao,
    pub connection: OpenBaoConnection,
    pub role_id: SecretString,
    pub secret_id: SecretString,
}

fn run(mut command: Command, what: &str) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running bao {what}"))?;
    ensure!(
        output.status.success(),
        "bao {what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

impl Vault {
    /// Starts OpenBao over TLS (its CA given to the client explicitly) and prepares it.
    pub async fn start() -> Result<Self> {
        let server = OpenBao::start_tls().context("OpenBao must start for this test")?;
        let bao = |args: &[&str]| {
            let mut command = server.cli();
            command.args(args);
            command
        };
        run(
            bao(&["secrets", "enable", "-path=apono-store", "kv-v2"]),
            "secrets enable",
        )?;
        run(bao(&["auth", "enable", "userpass"]), "auth enable userpass")?;
        run(bao(&["auth", "enable", "approle"]), "auth enable approle")?;
        let connection = ClientSettings::new(server.address())
            .ca_cert_pem(server.ca_cert_pem().context("TLS server has a CA")?)
            .connect()?;
        let root = connection.client_with_token(SecretString::from(server.root_token()));
        root.policy_write("apono-connector", &connector_policy_hcl(MOUNT, "userpass")?)
            .await?;
        run(
            bao(&[
                "write",
                "auth/approle/role/apono-connector",
                "token_policies=apono-connector",
                "token_ttl=10m",
                "token_max_ttl=30m",
            ]),
            "write approle role",
        )?;
        let role_id = run(
            bao(&[
                "read",
                "-field=role_id",
                "auth/approle/role/apono-connector/role-id",
            ]),
            "read role-id",
        )?;
        let secret_id = run(
            bao(&[
                "write",
                "-f",
                "-field=secret_id",
                "auth/approle/role/apono-connector/secret-id",
            ]),
            "write secret-id",
        )?;
        Ok(Self {
            server,
            connection,
            role_id: SecretString::from(role_id),
            secret_id: SecretString::from(secret_id),
        })
    }

    /// A client holding the root token (the test's own view of OpenBao).
    pub fn root(&self) -> OpenBaoClient {
        self.connection
            .client_with_token(SecretString::from(self.server.root_token()))
    }

    /// The integration secret, as the Kubernetes secret `apono-vault-role` holds it.
    pub fn integration_secret(&self) -> SecretValue {
        use secrecy::ExposeSecret;
        SecretValue::new()
            .with("role_id", self.role_id.expose_secret())
            .with("secret_id", self.secret_id.expose_secret())
    }

    pub fn context(&self) -> ActionContext {
        ActionContext::new(self.integration_secret())
            .with_timeout(std::time::Duration::from_secs(30))
    }

    pub fn config(&self) -> AponoVaultConfig {
        AponoVaultConfig {
            vault_external_url: Some("https://vault.example.test:8200".into()),
            ca_certificate: self.server.ca_cert_pem().map(str::to_owned),
            ..AponoVaultConfig::new(self.server.address())
        }
    }

    pub fn provisioner(&self) -> Result<AponoVaultProvisioner> {
        Ok(AponoVaultProvisioner::new(INTEGRATION, self.config())?)
    }

    /// Writes a secret with the root token.
    pub async fn put(&self, path: &str, value: &str) -> Result<u64> {
        Ok(self
            .root()
            .kv_write(MOUNT, path, &SecretValue::new().with("value", value), None)
            .await?)
    }
}

pub fn grantee(n: usize) -> Grantee {
    Grantee {
        id: format!("user-{n}"),
        email: format!("user{n}@corp.example"),
        display_name: format!("User {n}"),
        groups: Vec::new(),
    }
}

pub fn spec(
    grantee_no: usize,
    grant_id: &str,
    resource_type: &str,
    resource_id: &str,
    permission: &str,
    expires_at: DateTime<Utc>,
) -> GrantSpec {
    GrantSpec {
        grant_id: GrantId::new(grant_id).expect("valid grant id"),
        grantee: grantee(grantee_no),
        resource: Resource {
            integration: INTEGRATION.into(),
            resource_type: ResourceType::from(resource_type),
            id: resource_id.into(),
            name: resource_id.into(),
            tags: Default::default(),
        },
        permission: Permission::from(permission),
        expires_at,
        custom_parameters: Default::default(),
    }
}

pub fn in_an_hour() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::hours(1)
}
