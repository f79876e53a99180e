//! What the throughput benchmark and the shared-SQLite test share: an in-process provisioner
//! with a fixed latency per action, the executor around it, and a count of grants by status.
//! (`benches/revoke_lag.rs` includes this file by path.)

#![allow(dead_code, unreachable_pub, unused_macros)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use apono_control::ControlPlane;
use apono_core::{
    AccessDetails, ActionContext, GrantSpec, GrantState, Granted, Inventory, Permission,
    PermissionInfo, ProvisionError, Provisioner, Resource, StatusReport, async_trait,
};
use apono_runtime::{Executor, ExecutorLimits, ProvisionerRegistry};
use apono_secrets::{AponoStore, SecretResolver};
use sqlx::Row;

/// Discovers `resources` boxes `r0`, `r1`, … with the permission `Default`; grants and revokes
/// after sleeping `latency`.
#[derive(Clone, Debug)]
pub struct Timed {
    pub latency: Duration,
    pub resources: usize,
}

#[async_trait]
impl Provisioner for Timed {
    async fn get_status(&self, _: &ActionContext) -> Result<StatusReport, ProvisionError> {
        Ok(StatusReport::from_checks(vec![]))
    }
    async fn list_resources(&self, _: &ActionContext) -> Result<Inventory, ProvisionError> {
        Ok(Inventory {
            resources: (0..self.resources)
                .map(|i| Resource {
                    integration: String::new(),
                    resource_type: "box".into(),
                    id: format!("r{i}"),
                    name: format!("r{i}"),
                    tags: Default::default(),
                })
                .collect(),
            permissions: vec![PermissionInfo {
                resource_type: "box".into(),
                permission: Permission::from("Default"),
                description: None,
            }],
        })
    }
    async fn grant_access(
        &self,
        _: &ActionContext,
        g: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        tokio::time::sleep(self.latency).await;
        Ok(Granted {
            state: GrantState::encode(&g.grant_id)?,
            access: AccessDetails::default(),
        })
    }
    async fn revoke_access(
        &self,
        _: &ActionContext,
        _: &GrantSpec,
        _: &GrantState,
    ) -> Result<(), ProvisionError> {
        tokio::time::sleep(self.latency).await;
        Ok(())
    }
}

/// [`Timed`], whose revokes all fail (a target that keeps refusing).
#[derive(Clone, Debug)]
pub struct StuckRevokes(pub Timed);

#[async_trait]
impl Provisioner for StuckRevokes {
    async fn get_status(&self, ctx: &ActionContext) -> Result<StatusReport, ProvisionError> {
        self.0.get_status(ctx).await
    }
    async fn list_resources(&self, ctx: &ActionContext) -> Result<Inventory, ProvisionError> {
        self.0.list_resources(ctx).await
    }
    async fn grant_access(
        &self,
        ctx: &ActionContext,
        g: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        self.0.grant_access(ctx, g).await
    }
    async fn revoke_access(
        &self,
        _: &ActionContext,
        _: &GrantSpec,
        _: &GrantState,
    ) -> Result<(), ProvisionError> {
        Err(ProvisionError::Unavailable {
            target: "stuck".into(),
            source: None,
        })
    }
}

/// An executor running `provisioner` for integrations of type `integration_type`, with secrets
/// from the `apono` store.
pub fn executor<P: Provisioner + Clone>(
    integration_type: &str,
    provisioner: P,
    limits: ExecutorLimits,
) -> Arc<Executor> {
    let mut registry = ProvisionerRegistry::new();
    registry.register(
        integration_type,
        Arc::new(move |_| Ok(Arc::new(provisioner.clone()) as Arc<dyn Provisioner>)),
    );
    let resolver = SecretResolver::builder()
        .store(Arc::new(AponoStore::new()))
        .build();
    Arc::new(Executor::new(registry, Arc::new(resolver), limits))
}

/// How many grants have `status`.
pub async fn count(plane: &ControlPlane, status: &str) -> Result<i64> {
    Ok(
        sqlx::query("SELECT COUNT(*) AS n FROM grants WHERE status = $1")
            .bind(status)
            .fetch_one(plane.store().pool())
            .await?
            .try_get("n")?,
    )
}

/// The tests `NAME::sqlite` and `NAME::postgres`, which run `async fn NAME(postgres: bool)` on
/// each database.
macro_rules! on_both_databases {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() -> anyhow::Result<()> {
                super::$name(false).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() -> anyhow::Result<()> {
                super::$name(true).await
            }
        }
    };
}

/// A database for one test: a private PostgreSQL cluster, or an SQLite file in a temporary
/// directory; both go with the value.
pub struct Db {
    pub url: String,
    _pg: Option<apono_testkit::Postgres>,
    _dir: tempfile::TempDir,
}

pub fn database(postgres: bool) -> Result<Db> {
    let dir = tempfile::tempdir()?;
    Ok(if postgres {
        let pg = apono_testkit::Postgres::start()?;
        Db {
            url: pg.url(),
            _pg: Some(pg),
            _dir: dir,
        }
    } else {
        Db {
            url: format!(
                "sqlite://{}?mode=rwc",
                dir.path().join("db.sqlite3").display()
            ),
            _pg: None,
            _dir: dir,
        }
    })
}

/// A request for `Default` on box `resource` of integration `boxes`, for the flow's maximum.
pub fn on(resource: &str) -> apono_control::NewRequest {
    apono_control::NewRequest {
        integration: "boxes".into(),
        resource_type: "box".into(),
        resource_ids: vec![resource.into()],
        permission: "Default".into(),
        justification: None,
        duration: None,
    }
}

/// Leaves the rows a sign-in through identity provider `corp` would (`identity/` writes them):
/// a live session token for `email`, the session with `groups` (a JSON list) and `admin` as of
/// now, and the identity; when `disabled`, as the connector leaves someone the provider
/// disabled (found at a refresh): the identity marked and the session's token revoked.
#[allow(dead_code)]
pub async fn signed_in_through_corp(
    plane: &apono_control::ControlPlane,
    email: &str,
    groups: &str,
    admin: bool,
    disabled: bool,
) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    let pool = plane.store().pool();
    sqlx::query("INSERT INTO tokens (id, user_email, token_hash, created_at, name, expires_at, revoked_at) VALUES ($1, $2, $3, $4, 'sso', $5, $6)")
        .bind(format!("tok_{email}"))
        .bind(email)
        .bind(format!("hash-{email}"))
        .bind(now)
        .bind(now + 3_600_000)
        .bind(disabled.then_some(now))
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO sso_sessions (token_id, provider, subject, email, groups, admin, refresh_token, refreshed_at, ends_at) VALUES ($1, 'corp', $2, $3, $4, $5, NULL, $6, $7)")
        .bind(format!("tok_{email}"))
        .bind(format!("sub-{email}"))
        .bind(email)
        .bind(groups)
        .bind(i64::from(admin))
        .bind(now)
        .bind(now + 3_600_000)
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO sso_identities (provider, subject, email, disabled_at) VALUES ('corp', $1, $2, $3)")
        .bind(format!("sub-{email}"))
        .bind(email)
        .bind(disabled.then_some(now))
        .execute(pool)
        .await?;
    Ok(())
}

/// An `[[identity_providers]]` entry named `corp` (never reached: the tests leave its sign-ins'
/// rows themselves, with groups fresher than `groups_max_age`).
#[allow(dead_code)]
pub const CORP_PROVIDER: &str = r#"
[[identity_providers]]
name = "corp"
issuer = "https://idp.example.com"
client_id = "apono"
client_secret = { apono = { parameters = { client_secret = "s" } } }
"#;
