//! Just-in-time access to Rancher clusters and projects: Apono's `rancher` integration, resource
//! types `cluster` and `project`, permissions = Rancher role templates.
//!
//! **This crate has been verified against the Rancher v3 API fake in `apono-testkit` only**
//! (`apono_testkit::fakes::rancher`), never against a real Rancher server. That fake is itself
//! checked by Rancher's own schema-driven Python client (`rancher-client-python-3p`, in
//! `apono-testkit`'s `tests/fake_rancher.rs`): discovery through `/v3` and `/v3/schemas`, the
//! list filters the provisioner relies on (`username`, `userId`, `clusterId`, `projectId`,
//! `roleTemplateId`), creating and deleting users and global, cluster and project role
//! (template) bindings, `setpassword`, reading the API key's token, Norman's error objects and
//! the `401` of a wrong key. Not checked by any independent client: the
//! `/v3-public/localProviders/local?action=login` endpoint, the token TTL cap, Rancher's
//! permission checks and what its controllers do after a change (such as removing a deleted
//! user's bindings).
//!
//! [`RancherProvisioner`] implements [`apono_core::Provisioner`] over Rancher's v3 (Norman)
//! REST API, authenticated with the dedicated user's API key (`access_key` / `secret_key` in the
//! integration's secret), over HTTPS only, TLS verified against
//! [`RancherConfig::certificate_authority`] when given, else the platform's roots.
//!
//! * **Discovery**: downstream clusters (`GET /v3/clusters`, the `local` management cluster
//!   excluded), their projects (`GET /v3/projects`, tagged `cluster_id`/`cluster`), and the
//!   unlocked role templates (`GET /v3/roletemplates`) as permissions of the matching context.
//! * **Grant**: looks up the grantee's local user by the name [`apono_core::AccountNaming`]
//!   derives (`GET /v3/users?username=`); creates it if missing, **marked as the connector's**
//!   (label `apono.io/managed-by=apono-connector`, a description saying so) with a generated
//!   password and the `user-base` (login) global role; a user found without the mark is never
//!   touched ([`ProvisionError::Conflict`]). It then creates a cluster or project role template
//!   binding annotated with the grant id, logs in as the user
//!   (`POST /v3-public/localProviders/local?action=login`) for a token whose TTL ends at the
//!   grant's expiry — so **Rancher itself** ends the token even if the connector is down — and
//!   returns the UI URL, the username, the one-time password and a kubeconfig built on that
//!   token.
//! * **Revoke** deletes the grant's binding and token (and any others annotated with the grant's
//!   id, so a grant interrupted half-way is cleaned up too); already-gone is success.
//! * **Rotation** (`reset-credentials`) sets a new password (`setpassword`) and replaces the
//!   grant's token. **Cleanup** (`delete-credentials`) deletes the user if it carries the mark
//!   and no role template binding of it remains.
//! * **Status** checks the API key (`GET /v3/tokens/{access_key}`) and warns
//!   ([`apono_core::IntegrationStatus::Warning`]) from
//!   [`RancherConfig::api_key_expiry_warning_days`] before it expires.
//!
//! Every id that reaches a URL or body (cluster, project, role template, username, stored ids)
//! is checked against a strict grammar first. Passwords, tokens and kubeconfigs appear only in
//! the returned [`apono_core::Credential`]s — never in logs, errors, `Debug` or the grant state.
//!
//! # Rights of the dedicated user
//!
//! Beyond the reference setup (list users, `cluster-owner` inherited on downstream clusters),
//! the dedicated user's global role needs `create`, `get`, `list`, `update`, `delete` on
//! `users`, `globalrolebindings` and `tokens`, and `setpassword` on users
//! (`management.cattle.io`), plus `create`/`delete` of project role template bindings.
//!
//! # What is proven, against what
//!
//! Against the test kit's Rancher v3 API fake, itself checked with Rancher's schema-driven Python
//! client. No real Rancher server has answered: its login endpoint, permission checks and
//! controllers stay unproven.
//!
//! # Example
//!
//! ```no_run
//! use apono_core::{ActionContext, Provisioner, SecretValue};
//! use apono_provision_rancher::{RancherConfig, RancherProvisioner};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = RancherConfig::from_json(&serde_json::json!({
//!     "host": "rancher.corp.example",
//!     "port": 443,
//!     "rancher_ui_url": "https://rancher.corp.example/dashboard/",
//! }))?;
//! let provisioner = RancherProvisioner::new(config)?;
//! let secret = SecretValue::new()
//!     .with("access_key", "token-x7k2p")
//!     .with("secret_key", "…");
//! let report = provisioner.get_status(&ActionContext::new(secret)).await?;
//! println!("{:?}", report.status);
//! # Ok(())
//! # }
//! ```

mod api;
mod config;
mod ids;

use std::collections::BTreeMap;

use apono_core::{
    AccessDetails, AccountNaming, ActionContext, Credential, GrantSpec, GrantState, Granted,
    Instructions, Integration, Inventory, LinuxUsername, Permission, PermissionInfo,
    ProvisionError, Provisioner, Resource, ResourceType, StatusCheck, StatusReport, async_trait,
    generate_password,
};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::{info, instrument, warn};

pub use config::{ConfigError, DEFAULT_EXPIRY_WARNING_DAYS, RancherConfig};

use api::{Api, Body};

/// The integration type, as Apono names it.
pub const INTEGRATION_TYPE: &str = "rancher";
/// Resource type of a downstream cluster.
pub const RESOURCE_CLUSTER: &str = "cluster";
/// Resource type of a project.
pub const RESOURCE_PROJECT: &str = "project";
/// Secret key: the API key's access key (the token name, `token-xxxxx`).
pub const SECRET_ACCESS_KEY: &str = "access_key";
/// Secret key: the API key's secret key.
pub const SECRET_SECRET_KEY: &str = "secret_key";
/// Label key and value marking users (and global role bindings) the connector created.
pub const MANAGED_LABEL: (&str, &str) = ("apono.io/managed-by", "apono-connector");
/// Annotation naming the grant a binding belongs to.
pub const GRANT_ANNOTATION: &str = "apono.io/grant-id";
/// The global role a created user gets: login access only.
pub const LOGIN_GLOBAL_ROLE: &str = "user-base";

const USER_DESCRIPTION: &str =
    "Created by the Apono connector for just-in-time access; deleted by its cleanup";

/// What a grant recorded: the ids of exactly what it created. No secrets (a token's name is
/// not its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RancherGrantState {
    /// `cluster` or `project`.
    pub resource_type: String,
    /// The cluster or project id.
    pub resource_id: String,
    /// The cluster (of the project).
    pub cluster_id: String,
    /// The role template bound.
    pub role_template_id: String,
    /// The Rancher user's id.
    pub user_id: String,
    /// The Rancher user's username.
    pub username: String,
    /// Whether this grant created the user.
    pub user_created: bool,
    /// The role template binding's id (`c-xxxxx:crtb-xxxxx` or `p-xxxxx:prtb-xxxxx`).
    pub binding_id: String,
    /// The login token's name (`token-xxxxx`), whose TTL ends at the grant's expiry.
    pub token_id: String,
}

/// The `rancher` integration's provisioner. Cheap to share; holds no secrets.
#[derive(Debug)]
pub struct RancherProvisioner {
    config: RancherConfig,
    naming: AccountNaming,
    api: Api,
}

/// Which scope a grant binds in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Cluster,
    Project,
}

impl Scope {
    fn resource_type(self) -> &'static str {
        match self {
            Self::Cluster => RESOURCE_CLUSTER,
            Self::Project => RESOURCE_PROJECT,
        }
    }

    fn collection(self) -> &'static str {
        match self {
            Self::Cluster => "clusterroletemplatebindings",
            Self::Project => "projectroletemplatebindings",
        }
    }

    fn scope_field(self) -> &'static str {
        match self {
            Self::Cluster => "clusterId",
            Self::Project => "projectId",
        }
    }

    fn parse(resource_type: &str) -> Result<Self, ProvisionError> {
        match resource_type {
            RESOURCE_CLUSTER => Ok(Self::Cluster),
            RESOURCE_PROJECT => Ok(Self::Project),
            other => Err(ProvisionError::InvalidGrant(format!(
                "resource type {other:?} is not one of cluster, project"
            ))),
        }
    }
}

/// A grant's target, validated before any request.
struct Target {
    scope: Scope,
    resource_id: String,
    cluster_id: String,
    role: String,
}

impl Target {
    fn of(resource_type: &str, resource_id: &str, role: &str) -> Result<Self, ProvisionError> {
        let scope = Scope::parse(resource_type)?;
        let cluster_id = match scope {
            Scope::Cluster => ids::cluster_id(resource_id)?,
            Scope::Project => ids::project_id(resource_id)?,
        };
        Ok(Self {
            scope,
            resource_id: resource_id.to_owned(),
            cluster_id: cluster_id.to_owned(),
            role: ids::role_template_id(role)?.to_owned(),
        })
    }
}

/// Checks a decoded state's ids, which come from storage, before they reach a URL.
fn checked_state(state: &GrantState) -> Result<(RancherGrantState, Target), ProvisionError> {
    let s: RancherGrantState = state.decode()?;
    let target = Target::of(&s.resource_type, &s.resource_id, &s.role_template_id)?;
    ids::object_name("user id", &s.user_id)?;
    ids::username(&s.username)?;
    ids::namespaced_id("binding id", &s.binding_id)?;
    ids::object_name("token id", &s.token_id)?;
    Ok((s, target))
}

/// The admin credentials from the action's secret: `access_key:secret_key`.
struct AdminKey {
    access_key: String,
    bearer: SecretString,
}

fn admin_key(ctx: &ActionContext) -> Result<AdminKey, ProvisionError> {
    let access = ctx
        .secret()
        .require(SECRET_ACCESS_KEY)?
        .expose_secret()
        .trim();
    let secret = ctx.secret().require(SECRET_SECRET_KEY)?;
    let access_key = ids::object_name("access key", access)?.to_owned();
    Ok(AdminKey {
        bearer: SecretString::from(format!("{access_key}:{}", secret.expose_secret().trim())),
        access_key,
    })
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("")
}

fn is_managed(user: &Value) -> bool {
    user.pointer("/labels")
        .and_then(|l| l.get(MANAGED_LABEL.0))
        .and_then(Value::as_str)
        == Some(MANAGED_LABEL.1)
}

fn grant_marker(grant_id: &str) -> String {
    format!("apono-grant:{grant_id}")
}

fn annotated_for(binding: &Value, grant_id: &str) -> bool {
    binding
        .pointer("/annotations")
        .and_then(|a| a.get(GRANT_ANNOTATION))
        .and_then(Value::as_str)
        == Some(grant_id)
}

/// A login token: its name (kept in state) and the full `name:secret` value (handed out once).
struct LoginToken {
    id: String,
    value: SecretString,
    expires_at: String,
}

impl RancherProvisioner {
    /// A provisioner for `config`.
    pub fn new(config: RancherConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let naming = match &config.home_domain {
            Some(domain) => AccountNaming::new().with_home_domain(domain),
            None => AccountNaming::new(),
        };
        let api = Api::new(&config)?;
        Ok(Self {
            config,
            naming,
            api,
        })
    }

    /// A provisioner for an integration of type `rancher`.
    pub fn from_integration(integration: &Integration) -> Result<Self, ConfigError> {
        Self::new(RancherConfig::from_json(&integration.config)?)
    }

    /// The configuration.
    pub fn config(&self) -> &RancherConfig {
        &self.config
    }

    /// The Rancher username a grantee's identity maps to.
    pub fn username_for(&self, grant: &GrantSpec) -> Result<String, ProvisionError> {
        let derived: LinuxUsername = self.naming.account_for(&grant.grantee);
        Ok(ids::username(derived.as_str())?.to_owned())
    }

    fn target_name(&self) -> String {
        self.api.target().to_owned()
    }

    fn bad_answer(&self, what: &str) -> ProvisionError {
        ProvisionError::Target {
            target: self.target_name(),
            reason: format!("{what}: the answer lacks expected fields"),
            source: None,
        }
    }

    /// Checks that the role template exists in the right context and the resource exists;
    /// returns the cluster's name.
    async fn check_target(
        &self,
        ctx: &ActionContext,
        key: &AdminKey,
        target: &Target,
    ) -> Result<(), ProvisionError> {
        let template = self
            .api
            .get(
                ctx,
                &key.bearer,
                "read role template",
                &["v3", "roletemplates", &target.role],
            )
            .await?
            .ok_or_else(|| {
                ProvisionError::InvalidGrant(format!(
                    "role template {:?} does not exist",
                    target.role
                ))
            })?;
        let context = str_of(&template, "context");
        if context != target.scope.resource_type() {
            return Err(ProvisionError::InvalidGrant(format!(
                "role template {:?} applies to {context:?}, not to a {}",
                target.role,
                target.scope.resource_type()
            )));
        }
        if template.get("locked").and_then(Value::as_bool) == Some(true) {
            return Err(ProvisionError::InvalidGrant(format!(
                "role template {:?} is locked",
                target.role
            )));
        }
        let collection = match target.scope {
            Scope::Cluster => "clusters",
            Scope::Project => "projects",
        };
        let found = self
            .api
            .get(
                ctx,
                &key.bearer,
                "read resource",
                &["v3", collection, &target.resource_id],
            )
            .await?;
        if found.is_none() {
            return Err(ProvisionError::InvalidGrant(format!(
                "{} {:?} does not exist or is not visible",
                target.scope.resource_type(),
                target.resource_id
            )));
        }
        Ok(())
    }

    /// Finds the user by username: `Ok(None)` if absent, `Conflict` if present but not ours.
    async fn find_managed_user(
        &self,
        ctx: &ActionContext,
        key: &AdminKey,
        username: &str,
    ) -> Result<Option<String>, ProvisionError> {
        let users = self
            .api
            .list(ctx, &key.bearer, "users", &[("username", username)])
            .await?;
        let Some(user) = users.iter().find(|u| str_of(u, "username") == username) else {
            return Ok(None);
        };
        if !is_managed(user) {
            return Err(ProvisionError::Conflict {
                target: self.target_name(),
                reason: format!(
                    "user {username:?} exists but was not created by the connector; it is left alone"
                ),
            });
        }
        let id = ids::object_name("user id", str_of(user, "id"))?;
        Ok(Some(id.to_owned()))
    }

    /// Creates a marked local user with `password`; returns its id.
    async fn create_user(
        &self,
        ctx: &ActionContext,
        key: &AdminKey,
        grant: &GrantSpec,
        username: &str,
        password: &SecretString,
    ) -> Result<String, ProvisionError> {
        let display = if grant.grantee.display_name.is_empty() {
            grant.grantee.identity().to_owned()
        } else {
            grant.grantee.display_name.clone()
        };
        let body = json!({
            "type": "user",
            "username": username,
            "name": display,
            "description": USER_DESCRIPTION,
            "password": password.expose_secret(),
            "mustChangePassword": false,
            "enabled": true,
            "labels": {MANAGED_LABEL.0: MANAGED_LABEL.1},
            "annotations": {"apono.io/grantee": grant.grantee.identity()},
        });
        let created = self
            .api
            .create(ctx, &key.bearer, "users", Body::Secret(&body))
            .await?;
        let id = ids::object_name("user id", str_of(&created, "id"))?.to_owned();
        info!(user_id = %id, username, "created Rancher user");
        Ok(id)
    }

    async fn set_password(
        &self,
        ctx: &ActionContext,
        key: &AdminKey,
        user_id: &str,
        password: &SecretString,
    ) -> Result<(), ProvisionError> {
        let body = json!({"newPassword": password.expose_secret()});
        let reply = self
            .api
            .action(
                ctx,
                Some(&key.bearer),
                &["v3", "users", user_id],
                "setpassword",
                Body::Secret(&body),
            )
            .await?;
        if reply.status == 200 || reply.status == 201 {
            Ok(())
        } else {
            Err(self.api.fail("set password", &reply, Body::Secret(&body)))
        }
    }

    /// Makes sure the user has the login global role.
    async fn ensure_login_role(
        &self,
        ctx: &ActionContext,
        key: &AdminKey,
        user_id: &str,
    ) -> Result<(), ProvisionError> {
        let grbs = self
            .api
            .list(
                ctx,
                &key.bearer,
                "globalrolebindings",
                &[("userId", user_id)],
            )
            .await?;
        if grbs.iter().any(|b| {
            matches!(
                str_of(b, "globalRoleId"),
                LOGIN_GLOBAL_ROLE | "user" | "admin" | "restricted-admin"
            )
        }) {
            return Ok(());
        }
        let body = json!({
            "type": "globalRoleBinding",
            "globalRoleId": LOGIN_GLOBAL_ROLE,
            "userId": user_id,
            "labels": {MANAGED_LABEL.0: MANAGED_LABEL.1},
        });
        self.api
            .create(ctx, &key.bearer, "globalrolebindings", Body::Plain(&body))
            .await?;
        Ok(())
    }

    /// Finds this grant's binding or creates it; returns its id.
    async fn ensure_binding(
        &self,
        ctx: &ActionContext,
        key: &AdminKey,
        target: &Target,
        user_id: &str,
        grant_id: &str,
    ) -> Result<String, ProvisionError> {
        let collection = target.scope.collection();
        let existing = self
            .api
            .list(
                ctx,
                &key.bearer,
                collection,
                &[
                    ("userId", user_id),
                    (target.scope.scope_field(), &target.resource_id),
                    ("roleTemplateId", &target.role),
                ],
            )
            .await?;
        if let Some(binding) = existing.iter().find(|b| annotated_for(b, grant_id)) {
            return Ok(ids::namespaced_id("binding id", str_of(binding, "id"))?.to_owned());
        }
        let kind = match target.scope {
            Scope::Cluster => "clusterRoleTemplateBinding",
            Scope::Project => "projectRoleTemplateBinding",
        };
        let mut body = json!({
            "type": kind,
            "roleTemplateId": target.role,
            "userId": user_id,
            "labels": {MANAGED_LABEL.0: MANAGED_LABEL.1},
            "annotations": {GRANT_ANNOTATION: grant_id},
        });
        body[target.scope.scope_field()] = target.resource_id.clone().into();
        let created = self
            .api
            .create(ctx, &key.bearer, collection, Body::Plain(&body))
            .await?;
        let id = ids::namespaced_id("binding id", str_of(&created, "id"))?.to_owned();
        info!(binding_id = %id, "created role template binding");
        Ok(id)
    }

    /// Logs in as the user for a token whose TTL ends at `expires_at`.
    async fn login(
        &self,
        ctx: &ActionContext,
        username: &str,
        password: &SecretString,
        grant: &GrantSpec,
    ) -> Result<LoginToken, ProvisionError> {
        let ttl_ms = (grant.expires_at - Utc::now()).num_milliseconds();
        if ttl_ms <= 0 {
            return Err(ProvisionError::InvalidGrant(
                "the grant has already expired".into(),
            ));
        }
        let body = json!({
            "type": "localProvider",
            "username": username,
            "password": password.expose_secret(),
            "ttl": ttl_ms,
            "description": grant_marker(grant.grant_id.as_str()),
            "responseType": "json",
        });
        let reply = self
            .api
            .action(
                ctx,
                None,
                &["v3-public", "localProviders", "local"],
                "login",
                Body::Secret(&body),
            )
            .await?;
        if !matches!(reply.status, 200 | 201) {
            return Err(self
                .api
                .fail("log in as the grant's user", &reply, Body::Secret(&body)));
        }
        let value = str_of(&reply.body, "token");
        let Some((name, _)) = value.split_once(':') else {
            return Err(self.bad_answer("log in as the grant's user"));
        };
        let id = ids::object_name("token id", name)?.to_owned();
        let expires_at = str_of(&reply.body, "expiresAt").to_owned();
        if let Ok(at) = DateTime::parse_from_rfc3339(&expires_at)
            && at < grant.expires_at
        {
            warn!(token_id = %id, "Rancher capped the token's TTL before the grant's expiry (auth-token-max-ttl-minutes)");
        }
        Ok(LoginToken {
            id,
            value: SecretString::from(value.to_owned()),
            expires_at,
        })
    }

    /// Deletes the grant's tokens other than `keep`: the one recorded, and any the user holds
    /// with the grant's marker.
    async fn delete_grant_tokens(
        &self,
        ctx: &ActionContext,
        key: &AdminKey,
        user_id: &str,
        grant_id: &str,
        recorded: Option<&str>,
        keep: Option<&str>,
    ) -> Result<(), ProvisionError> {
        let marker = grant_marker(grant_id);
        let tokens = self
            .api
            .list(ctx, &key.bearer, "tokens", &[("userId", user_id)])
            .await?;
        let mut doomed: Vec<String> = tokens
            .iter()
            .filter(|t| str_of(t, "userId") == user_id && str_of(t, "description") == marker)
            .map(|t| str_of(t, "id").to_owned())
            .collect();
        if let Some(recorded) = recorded {
            doomed.push(recorded.to_owned());
        }
        doomed.sort();
        doomed.dedup();
        for id in doomed.iter().filter(|id| Some(id.as_str()) != keep) {
            let id = ids::object_name("token id", id)?;
            self.api
                .delete(ctx, &key.bearer, &["v3", "tokens", id])
                .await?;
        }
        Ok(())
    }

    fn kubeconfig(&self, cluster_id: &str, token: &LoginToken) -> SecretString {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_default();
        let server = format!("{}/k8s/clusters/{cluster_id}", self.config.base_url());
        let mut cluster = format!("    server: {}\n", q(&server));
        if let Some(pem) = &self.config.certificate_authority {
            cluster.push_str(&format!(
                "    certificate-authority-data: {}\n",
                q(&data_encoding::BASE64.encode(pem.as_bytes()))
            ));
        }
        let name = q(cluster_id);
        SecretString::from(format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n{cluster}users:\n- name: {name}\n  user:\n    token: {}\ncontexts:\n- name: {name}\n  context:\n    user: {name}\n    cluster: {name}\ncurrent-context: {name}\n",
            q(token.value.expose_secret())
        ))
    }

    fn access_details(
        &self,
        grant: &GrantSpec,
        state: &RancherGrantState,
        password: SecretString,
        token: &LoginToken,
    ) -> AccessDetails {
        let ui = self.config.ui_url();
        let kubeconfig = self.kubeconfig(&state.cluster_id, token);
        let expiry = grant.expires_at.to_rfc3339();
        let what = format!(
            "{} {} as {}",
            state.resource_type, state.resource_id, state.role_template_id
        );
        let plain = format!(
            "Sign in to Rancher at {ui} as {} with the one-time password below ({what}), or save \
             the kubeconfig to a file and use kubectl with it. Access ends at {expiry}.",
            state.username
        );
        let markdown = format!(
            "Sign in to [Rancher]({ui}) as `{}` with the one-time password below ({what}), or \
             save the kubeconfig to a file and run `kubectl --kubeconfig <file> get namespaces`. \
             Access ends at {expiry}.",
            state.username
        );
        let mut json = BTreeMap::new();
        json.insert("rancher_url".into(), ui.clone().into());
        json.insert("username".into(), state.username.clone().into());
        json.insert("cluster_id".into(), state.cluster_id.clone().into());
        if state.resource_type == RESOURCE_PROJECT {
            json.insert("project_id".into(), state.resource_id.clone().into());
        }
        json.insert(
            "role_template".into(),
            state.role_template_id.clone().into(),
        );
        json.insert("expires_at".into(), expiry.into());
        if !token.expires_at.is_empty() {
            json.insert("token_expires_at".into(), token.expires_at.clone().into());
        }
        AccessDetails {
            instructions: Instructions { plain, markdown },
            cli: Some("kubectl --kubeconfig <kubeconfig file> get namespaces".into()),
            link: Some(ui),
            json,
            credentials: vec![
                Credential::one_time("password", password),
                Credential::one_time("kubeconfig", kubeconfig),
            ],
        }
    }
}

#[async_trait]
impl Provisioner for RancherProvisioner {
    #[instrument(skip_all, fields(integration = INTEGRATION_TYPE, host = %self.config.host))]
    async fn get_status(&self, ctx: &ActionContext) -> Result<StatusReport, ProvisionError> {
        ctx.checkpoint()?;
        let key = admin_key(ctx)?;
        let mut checks = Vec::new();
        let reply = self
            .api
            .send(
                ctx,
                reqwest::Method::GET,
                self.api.url(&["v3", "tokens", &key.access_key], &[]),
                Some(&key.bearer),
                Body::None,
            )
            .await?;
        match reply.status {
            200 => {
                checks.push(StatusCheck {
                    name: "API key accepted".into(),
                    ok: true,
                    message: String::new(),
                });
                let expires = str_of(&reply.body, "expiresAt");
                let warn_days = i64::from(self.config.api_key_expiry_warning_days);
                let check = if expires.is_empty() {
                    StatusCheck {
                        name: "API key expiry".into(),
                        ok: true,
                        message: "the API key never expires".into(),
                    }
                } else {
                    match DateTime::parse_from_rfc3339(expires) {
                        Ok(at) => {
                            let at = at.with_timezone(&Utc);
                            let left = at - Utc::now();
                            let date = at.format("%Y-%m-%d");
                            if left.num_days() < warn_days {
                                warn!(expires_at = %at, "the Rancher API key expires soon");
                                StatusCheck {
                                    name: "API key expiry".into(),
                                    ok: false,
                                    message: format!(
                                        "the API key expires on {date} (in {} days); create a new one and update the integration's secret",
                                        left.num_days().max(0)
                                    ),
                                }
                            } else {
                                StatusCheck {
                                    name: "API key expiry".into(),
                                    ok: true,
                                    message: format!("the API key expires on {date}"),
                                }
                            }
                        }
                        Err(_) => StatusCheck {
                            name: "API key expiry".into(),
                            ok: false,
                            message: "Rancher reported an expiry that is not a date".into(),
                        },
                    }
                };
                checks.push(check);
            }
            401 => {
                checks.push(StatusCheck {
                    name: "API key accepted".into(),
                    ok: false,
                    message:
                        "Rancher refused the API key: it is wrong, expired or its user is disabled"
                            .into(),
                });
                return Ok(StatusReport::from_checks(checks));
            }
            _ => return Err(self.api.fail("read the API key", &reply, Body::None)),
        }
        let clusters = self.api.list(ctx, &key.bearer, "clusters", &[]).await?;
        let downstream = clusters
            .iter()
            .filter(|c| str_of(c, "id") != ids::LOCAL_CLUSTER)
            .count();
        checks.push(StatusCheck {
            name: "downstream clusters visible".into(),
            ok: downstream > 0,
            message: format!("{downstream} downstream clusters"),
        });
        let users = self
            .api
            .send(
                ctx,
                reqwest::Method::GET,
                self.api.url(&["v3", "users"], &[("limit", "1")]),
                Some(&key.bearer),
                Body::None,
            )
            .await?;
        checks.push(StatusCheck {
            name: "may list users".into(),
            ok: users.status == 200,
            message: if users.status == 200 {
                String::new()
            } else {
                format!("HTTP {}", users.status)
            },
        });
        Ok(StatusReport::from_checks(checks))
    }

    #[instrument(skip_all, fields(integration = INTEGRATION_TYPE, host = %self.config.host))]
    async fn list_resources(&self, ctx: &ActionContext) -> Result<Inventory, ProvisionError> {
        ctx.checkpoint()?;
        let key = admin_key(ctx)?;
        let clusters = self.api.list(ctx, &key.bearer, "clusters", &[]).await?;
        let projects = self.api.list(ctx, &key.bearer, "projects", &[]).await?;
        let templates = self
            .api
            .list(ctx, &key.bearer, "roletemplates", &[])
            .await?;
        let mut names = BTreeMap::new();
        let mut inventory = Inventory::default();
        for cluster in &clusters {
            let Ok(id) = ids::cluster_id(str_of(cluster, "id")) else {
                continue; // `local`, or an id we would refuse to grant on
            };
            let name = str_of(cluster, "name");
            names.insert(id.to_owned(), name.to_owned());
            let mut tags = BTreeMap::new();
            tags.insert("cluster_id".into(), id.to_owned());
            inventory.resources.push(Resource {
                integration: INTEGRATION_TYPE.into(),
                resource_type: ResourceType::new(RESOURCE_CLUSTER),
                id: id.to_owned(),
                name: if name.is_empty() {
                    id.to_owned()
                } else {
                    name.to_owned()
                },
                tags,
            });
        }
        for project in &projects {
            let id = str_of(project, "id");
            let Ok(cluster) = ids::project_id(id) else {
                continue;
            };
            let Some(cluster_name) = names.get(cluster) else {
                continue;
            };
            let mut tags = BTreeMap::new();
            tags.insert("cluster_id".into(), cluster.to_owned());
            tags.insert("cluster".into(), cluster_name.clone());
            let name = str_of(project, "name");
            inventory.resources.push(Resource {
                integration: INTEGRATION_TYPE.into(),
                resource_type: ResourceType::new(RESOURCE_PROJECT),
                id: id.to_owned(),
                name: if name.is_empty() {
                    id.to_owned()
                } else {
                    format!("{cluster_name}/{name}")
                },
                tags,
            });
        }
        for template in &templates {
            let id = str_of(template, "id");
            if ids::role_template_id(id).is_err()
                || template.get("locked").and_then(Value::as_bool) == Some(true)
            {
                continue;
            }
            let resource_type = match str_of(template, "context") {
                "cluster" => RESOURCE_CLUSTER,
                "project" => RESOURCE_PROJECT,
                _ => continue,
            };
            let name = str_of(template, "name");
            inventory.permissions.push(PermissionInfo {
                resource_type: ResourceType::new(resource_type),
                permission: Permission::new(id),
                description: (!name.is_empty()).then(|| name.to_owned()),
            });
        }
        Ok(inventory)
    }

    #[instrument(skip_all, fields(integration = INTEGRATION_TYPE, grant_id = %grant.grant_id))]
    async fn grant_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        let target = Target::of(
            grant.resource.resource_type.as_str(),
            &grant.resource.id,
            grant.permission.as_str(),
        )?;
        let username = self.username_for(grant)?;
        ctx.checkpoint()?;
        let key = admin_key(ctx)?;
        if grant.expires_at <= Utc::now() {
            return Err(ProvisionError::InvalidGrant(
                "the grant has already expired".into(),
            ));
        }
        self.check_target(ctx, &key, &target).await?;

        let password = generate_password();
        let (user_id, created) = match self.find_managed_user(ctx, &key, &username).await? {
            Some(id) => {
                self.set_password(ctx, &key, &id, &password).await?;
                (id, false)
            }
            None => (
                self.create_user(ctx, &key, grant, &username, &password)
                    .await?,
                true,
            ),
        };
        self.ensure_login_role(ctx, &key, &user_id).await?;
        let binding_id = self
            .ensure_binding(ctx, &key, &target, &user_id, grant.grant_id.as_str())
            .await?;
        let token = self.login(ctx, &username, &password, grant).await?;
        // A repeated grant converges on one token: the previous ones of this grant go.
        self.delete_grant_tokens(
            ctx,
            &key,
            &user_id,
            grant.grant_id.as_str(),
            None,
            Some(&token.id),
        )
        .await?;
        let state = RancherGrantState {
            resource_type: target.scope.resource_type().into(),
            resource_id: target.resource_id.clone(),
            cluster_id: target.cluster_id.clone(),
            role_template_id: target.role.clone(),
            user_id,
            username,
            user_created: created,
            binding_id,
            token_id: token.id.clone(),
        };
        info!(user_id = %state.user_id, binding_id = %state.binding_id, token_id = %state.token_id, "granted");
        let access = self.access_details(grant, &state, password, &token);
        Ok(Granted {
            state: GrantState::encode(&state)?,
            access,
        })
    }

    #[instrument(skip_all, fields(integration = INTEGRATION_TYPE, grant_id = %grant.grant_id))]
    async fn revoke_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        let (state, target) = checked_state(state)?;
        ctx.checkpoint()?;
        let key = admin_key(ctx)?;
        let collection = target.scope.collection();
        self.api
            .delete(ctx, &key.bearer, &["v3", collection, &state.binding_id])
            .await?;
        // Bindings of this grant that the state does not know (an interrupted earlier attempt).
        let leftovers = self
            .api
            .list(
                ctx,
                &key.bearer,
                collection,
                &[
                    ("userId", &state.user_id),
                    (target.scope.scope_field(), &target.resource_id),
                ],
            )
            .await?;
        for binding in leftovers
            .iter()
            .filter(|b| annotated_for(b, grant.grant_id.as_str()))
        {
            let id = ids::namespaced_id("binding id", str_of(binding, "id"))?;
            self.api
                .delete(ctx, &key.bearer, &["v3", collection, id])
                .await?;
        }
        self.delete_grant_tokens(
            ctx,
            &key,
            &state.user_id,
            grant.grant_id.as_str(),
            Some(&state.token_id),
            None,
        )
        .await?;
        info!(user_id = %state.user_id, binding_id = %state.binding_id, "revoked");
        Ok(())
    }

    #[instrument(skip_all, fields(integration = INTEGRATION_TYPE, grant_id = %grant.grant_id))]
    async fn reset_credentials(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<Granted, ProvisionError> {
        let (mut state, _) = checked_state(state)?;
        ctx.checkpoint()?;
        let key = admin_key(ctx)?;
        let user = self
            .api
            .get(
                ctx,
                &key.bearer,
                "read user",
                &["v3", "users", &state.user_id],
            )
            .await?
            .ok_or_else(|| ProvisionError::Target {
                target: self.target_name(),
                reason: format!("user {:?} no longer exists", state.username),
                source: None,
            })?;
        if !is_managed(&user) || str_of(&user, "username") != state.username {
            return Err(ProvisionError::Conflict {
                target: self.target_name(),
                reason: format!(
                    "user {:?} is not one the connector created; its password is left alone",
                    state.username
                ),
            });
        }
        let password = generate_password();
        self.set_password(ctx, &key, &state.user_id, &password)
            .await?;
        let token = self.login(ctx, &state.username, &password, grant).await?;
        self.delete_grant_tokens(
            ctx,
            &key,
            &state.user_id,
            grant.grant_id.as_str(),
            Some(&state.token_id),
            Some(&token.id),
        )
        .await?;
        state.token_id = token.id.clone();
        info!(user_id = %state.user_id, token_id = %state.token_id, "credentials rotated");
        let access = self.access_details(grant, &state, password, &token);
        Ok(Granted {
            state: GrantState::encode(&state)?,
            access,
        })
    }

    #[instrument(skip_all, fields(integration = INTEGRATION_TYPE, grant_id = %grant.grant_id))]
    async fn delete_credentials(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        let _ = grant;
        let (state, _) = checked_state(state)?;
        ctx.checkpoint()?;
        let key = admin_key(ctx)?;
        let Some(user) = self
            .api
            .get(
                ctx,
                &key.bearer,
                "read user",
                &["v3", "users", &state.user_id],
            )
            .await?
        else {
            return Ok(());
        };
        if !is_managed(&user) || str_of(&user, "username") != state.username {
            warn!(user_id = %state.user_id, "not deleting a user the connector did not create");
            return Ok(());
        }
        for collection in ["clusterroletemplatebindings", "projectroletemplatebindings"] {
            let remaining = self
                .api
                .list(ctx, &key.bearer, collection, &[("userId", &state.user_id)])
                .await?;
            if !remaining.is_empty() {
                info!(user_id = %state.user_id, "user still has role template bindings; kept");
                return Ok(());
            }
        }
        self.api
            .delete(ctx, &key.bearer, &["v3", "users", &state.user_id])
            .await?;
        info!(user_id = %state.user_id, "deleted Rancher user");
        Ok(())
    }
}
