//! A fake Rancher, a provisioner pointed at it, and an observer that looks at the fake only
//! through its HTTP API.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;

use apono_core::conformance::ProvisionerHarness;
use apono_core::{
    ActionContext, BoxError, GrantId, GrantSpec, GrantState, Granted, Grantee, Permission,
    Provisioner, Resource, ResourceType, SecretValue, async_trait,
};
use apono_provision_rancher::{RancherConfig, RancherGrantState, RancherProvisioner};
use apono_testkit::fakes::rancher::FakeRancher;
use secrecy::ExposeSecret;
use serde_json::Value;

pub struct Env {
    pub fake: FakeRancher,
    pub provisioner: RancherProvisioner,
    pub http: reqwest::Client,
}

pub fn config(fake: &FakeRancher) -> RancherConfig {
    RancherConfig::new("127.0.0.1", fake.port()).with_certificate_authority(fake.ca().ca_pem())
}

pub fn env() -> Env {
    let fake = FakeRancher::start().expect("fake rancher starts");
    let provisioner = RancherProvisioner::new(config(&fake)).expect("provisioner");
    let http = reqwest::Client::builder()
        .tls_backend_rustls()
        .tls_certs_only(
            reqwest::Certificate::from_pem_bundle(fake.ca().ca_pem().as_bytes()).unwrap(),
        )
        .no_proxy()
        .build()
        .unwrap();
    Env {
        fake,
        provisioner,
        http,
    }
}

pub fn secret(fake: &FakeRancher) -> SecretValue {
    SecretValue::new()
        .with("access_key", fake.api_key().access_key.clone())
        .with("secret_key", fake.api_key().secret_key.clone())
}

pub fn spec(
    grantee: usize,
    grant_id: &str,
    resource_type: &str,
    id: &str,
    role: &str,
) -> GrantSpec {
    GrantSpec {
        grant_id: GrantId::new(grant_id).unwrap(),
        grantee: Grantee {
            id: format!("idp-{grantee}"),
            email: format!("user{grantee}@corp.example"),
            display_name: format!("User {grantee}"),
            groups: vec![],
        },
        resource: Resource {
            integration: "rancher".into(),
            resource_type: ResourceType::new(resource_type),
            id: id.into(),
            name: id.into(),
            tags: BTreeMap::new(),
        },
        permission: Permission::new(role),
        expires_at: chrono::Utc::now() + chrono::Duration::hours(2),
        custom_parameters: BTreeMap::new(),
    }
}

/// The value of a credential in access details.
pub fn credential(granted: &Granted, name: &str) -> String {
    granted
        .access
        .credentials
        .iter()
        .find(|c| c.name == name)
        .map(|c| c.value.expose_secret().to_owned())
        .unwrap_or_default()
}

/// The bearer token inside a kubeconfig.
pub fn kubeconfig_token(kubeconfig: &str) -> String {
    kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .and_then(|q| serde_json::from_str::<String>(q).ok())
        .unwrap_or_default()
}

impl Env {
    pub fn ctx(&self) -> ActionContext {
        ActionContext::new(secret(&self.fake)).with_timeout(std::time::Duration::from_secs(20))
    }

    /// `GET {path}` with `Authorization: Bearer {bearer}`; status and JSON.
    pub async fn get_as(&self, bearer: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.fake.endpoint()))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (
            status,
            serde_json::from_slice(&r.bytes().await.unwrap()).unwrap_or(Value::Null),
        )
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let (status, body) = self.get_as(&self.fake.admin_key().bearer(), path).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    pub async fn admin_list(&self, collection: &str) -> Vec<Value> {
        self.admin_get(&format!("/v3/{collection}")).await["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Logs in through the public local provider, as a browser would.
    pub async fn login(&self, username: &str, password: &str) -> Option<String> {
        let r = self
            .http
            .post(format!(
                "{}/v3-public/localProviders/local?action=login",
                self.fake.endpoint()
            ))
            .body(
                serde_json::json!({"username": username, "password": password, "responseType": "json"})
                    .to_string(),
            )
            .send()
            .await
            .unwrap();
        if r.status().as_u16() != 201 {
            return None;
        }
        let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        v["token"].as_str().map(str::to_owned)
    }

    /// Whether `bearer` authenticates and its user holds `role` on the resource, as that user
    /// sees it.
    pub async fn token_has_role(
        &self,
        bearer: &str,
        resource_type: &str,
        id: &str,
        role: &str,
    ) -> bool {
        let (status, me) = self.get_as(bearer, "/v3/users?me=true").await;
        if status != 200 {
            return false;
        }
        let Some(user_id) = me["data"][0]["id"].as_str() else {
            return false;
        };
        let (collection, field) = match resource_type {
            "cluster" => ("clusterroletemplatebindings", "clusterId"),
            _ => ("projectroletemplatebindings", "projectId"),
        };
        let (status, list) = self
            .get_as(
                bearer,
                &format!("/v3/{collection}?userId={user_id}&{field}={id}&roleTemplateId={role}"),
            )
            .await;
        status == 200 && list["data"].as_array().is_some_and(|d| !d.is_empty())
    }

    /// Every user, binding and token, as lines.
    pub async fn state_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for u in self.admin_list("users").await {
            lines.push(format!(
                "user {} {} enabled={} labels={}",
                u["id"], u["username"], u["enabled"], u["labels"]
            ));
        }
        for b in self.admin_list("globalrolebindings").await {
            lines.push(format!(
                "grb {} {} {}",
                b["id"], b["globalRoleId"], b["userId"]
            ));
        }
        for c in ["clusterroletemplatebindings", "projectroletemplatebindings"] {
            for b in self.admin_list(c).await {
                lines.push(format!(
                    "{c} {} {} {}",
                    b["id"], b["roleTemplateId"], b["userId"]
                ));
            }
        }
        for t in self.admin_list("tokens").await {
            lines.push(format!(
                "token {} {} {}",
                t["id"], t["userId"], t["description"]
            ));
        }
        lines.sort();
        lines
    }
}

/// The conformance harness: grants on one resource, observations through the fake's API.
pub struct Harness {
    pub env: Env,
    pub resource_type: &'static str,
    pub resource_id: &'static str,
    pub role: &'static str,
}

#[async_trait]
impl ProvisionerHarness for Harness {
    fn provisioner(&self) -> &dyn Provisioner {
        &self.env.provisioner
    }

    fn context(&self) -> ActionContext {
        self.env.ctx()
    }

    fn grant(&self, grantee: usize, grant_id: &str) -> GrantSpec {
        spec(
            grantee,
            grant_id,
            self.resource_type,
            self.resource_id,
            self.role,
        )
    }

    async fn snapshot(&self) -> Result<Vec<String>, BoxError> {
        Ok(self.env.state_lines().await)
    }

    async fn has_access(&self, grant: &GrantSpec, granted: &Granted) -> Result<bool, BoxError> {
        let token = kubeconfig_token(&credential(granted, "kubeconfig"));
        if token.is_empty() {
            return Err("no token in the kubeconfig".into());
        }
        Ok(self
            .env
            .token_has_role(
                &token,
                grant.resource.resource_type.as_str(),
                &grant.resource.id,
                grant.permission.as_str(),
            )
            .await)
    }

    async fn remove_out_of_band(
        &self,
        _grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), BoxError> {
        let state: RancherGrantState = state.decode()?;
        let r = self
            .env
            .http
            .delete(format!(
                "{}/v3/users/{}",
                self.env.fake.endpoint(),
                state.user_id
            ))
            .bearer_auth(self.env.fake.admin_key().bearer())
            .send()
            .await?;
        if r.status().as_u16() != 200 {
            return Err(format!("out-of-band delete answered {}", r.status()).into());
        }
        Ok(())
    }
}
