//! A real OpenBao dev server prepared like an Apono Vault: kv-v2 mount `apono-store`, userpass
//! and AppRole enabled on the server itself, the fixed grant policies and the connector's
//! policy written by `policy::install_policies` (as an installer would, with the root token),
//! and an AppRole for the connector holding exactly that policy.

#![allow(dead_code, unreachable_pub)]

use std::process::Command;

use anyhow::{Context, Result, ensure};
use apono_core::conformance::ProvisionerHarness;
use apono_core::{
    ActionContext, BoxError, GrantId, GrantSpec, GrantState, Granted, Grantee, Permission,
    Provisioner, Resource, ResourceType, SecretValue,
};
use apono_testkit::OpenBao;
use apono_vault_client::policy::install_policies;
use apono_vault_client::{
    AponoVaultConfig, AponoVaultProvisioner, ClientSettings, OpenBaoClient, OpenBaoConnection,
    VaultGrantState,
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
        install_policies(&root, MOUNT, "userpass", "apono-connector").await?;
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

    /// The connector's own AppRole token, as whoever holds the integration secret gets it.
    pub async fn approle_client(&self) -> Result<OpenBaoClient> {
        let mut client = self.connection.client();
        client
            .login_approle("approle", &self.role_id, &self.secret_id)
            .await?;
        Ok(client)
    }

    /// One raw request with `token` (none: unauthenticated): OpenBao's status and JSON body.
    pub async fn raw(
        &self,
        token: Option<&SecretString>,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value)> {
        use secrecy::ExposeSecret;
        let pem = self.server.ca_cert_pem().context("TLS server has a CA")?;
        let http = reqwest::Client::builder()
            .tls_backend_rustls()
            .tls_certs_only(reqwest::Certificate::from_pem_bundle(pem.as_bytes())?)
            .build()?;
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut request = http.request(method, format!("{}/v1/{path}", self.server.address()));
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token.expose_secret());
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let json = if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        Ok((status, json))
    }

    /// The accessor of the grantees' userpass mount.
    pub async fn userpass_accessor(&self) -> Result<String> {
        Ok(self.root().auth_mount_accessor("userpass").await?)
    }

    /// The entity that the grant's alias `username` belongs to, seen with the root token.
    pub async fn grant_entity(&self, username: &str) -> Result<Option<apono_vault_client::Entity>> {
        let accessor = self.userpass_accessor().await?;
        Ok(self.root().entity_by_alias(username, &accessor).await?)
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

/// The conformance harness on any OpenBao: observations come from OpenBao itself (logins,
/// reads, listings with the root token).
pub struct Harness {
    pub connection: OpenBaoConnection,
    pub root_token: SecretString,
    /// The integration secret (`role_id`, `secret_id`).
    pub secret: SecretValue,
    pub provisioner: AponoVaultProvisioner,
}

impl Harness {
    fn root(&self) -> OpenBaoClient {
        self.connection.client_with_token(self.root_token.clone())
    }
}

#[apono_core::async_trait]
impl ProvisionerHarness for Harness {
    fn provisioner(&self) -> &dyn Provisioner {
        &self.provisioner
    }

    fn context(&self) -> ActionContext {
        ActionContext::new(self.secret.clone()).with_timeout(std::time::Duration::from_secs(30))
    }

    fn grant(&self, grantee: usize, grant_id: &str) -> GrantSpec {
        spec(
            grantee,
            grant_id,
            "secret",
            "team/db",
            "ReadOnly",
            in_an_hour(),
        )
    }

    async fn snapshot(&self) -> Result<Vec<String>, BoxError> {
        let root = self.root();
        let mut lines = Vec::new();
        for user in root.userpass_list("userpass").await? {
            lines.push(format!("user {user}"));
        }
        for policy in root.policy_list().await? {
            lines.push(format!("policy {policy}"));
        }
        for entity in root.entity_list().await? {
            lines.push(format!("entity {entity}"));
        }
        for accessor in root.list_accessors().await? {
            let info = root.lookup_accessor(&accessor).await?;
            lines.push(format!("token {accessor} {}", info.path));
        }
        lines.sort();
        Ok(lines)
    }

    async fn has_access(&self, grant: &GrantSpec, granted: &Granted) -> Result<bool, BoxError> {
        let token = granted
            .access
            .credentials
            .iter()
            .find(|c| c.name == apono_vault_client::integration::TOKEN)
            .map(|c| c.value.clone())
            .unwrap_or_else(|| SecretString::from(""));
        let client = self.connection.client_with_token(token);
        match client.kv_read(MOUNT, &grant.resource.id, None).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_permission_denied() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_out_of_band(
        &self,
        _grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), BoxError> {
        let state: VaultGrantState = state.decode()?;
        let root = self.root();
        root.userpass_delete(&state.userpass_mount, &state.username)
            .await?;
        let accessor = root.auth_mount_accessor(&state.userpass_mount).await?;
        if let Some(entity) = root.entity_by_alias(&state.username, &accessor).await? {
            root.entity_delete_by_id(&entity.id).await?;
        }
        Ok(())
    }
}
