//! The conformance suites checked against themselves: a well-behaved in-memory implementation
//! passes, and implementations that break one promise each are caught.
//!
//! The in-memory target here exists only to test the suites; real provisioners run them against
//! real servers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apono_core::conformance::{
    ProvisionerHarness, SecretStoreFixture, check_provisioner, check_secret_store,
};
use apono_core::secrecy::ExposeSecret;
use apono_core::{
    AccessDetails, AccountNaming, ActionContext, BoxError, Credential, GrantId, GrantSpec,
    GrantState, Granted, Grantee, Inventory, LinuxUsername, ProvisionError, Provisioner, Resource,
    SecretError, SecretStore, SecretStoreKind, SecretStoreRef, SecretValue, StatusReport,
    async_trait,
};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------- secret store suite

#[derive(Debug)]
struct MapStore {
    secrets: BTreeMap<String, SecretValue>,
    leak_in_errors: bool,
}

#[async_trait]
impl SecretStore for MapStore {
    fn kind(&self) -> SecretStoreKind {
        SecretStoreKind::Gcp
    }

    async fn get(&self, reference: &SecretStoreRef) -> Result<SecretValue, SecretError> {
        let SecretStoreRef::Gcp { secret_id, .. } = reference else {
            return Err(SecretError::NotConfigured {
                kind: reference.kind(),
            });
        };
        self.secrets
            .get(secret_id)
            .cloned()
            .ok_or_else(|| SecretError::NotFound {
                reference: if self.leak_in_errors {
                    format!(
                        "{:?}",
                        self.secrets
                            .values()
                            .next()
                            .map(|v| v.get("password").map(|p| p.expose_secret().to_owned()))
                    )
                } else {
                    reference.to_string()
                },
                source: None,
            })
    }
}

fn gcp(id: &str) -> SecretStoreRef {
    serde_json::from_value(serde_json::json!({"gcp": {"project": "p", "secret_id": id}})).unwrap()
}

fn store_fixture() -> (BTreeMap<String, SecretValue>, SecretStoreFixture) {
    let value = SecretValue::new()
        .with("username", "admin")
        .with("password", "canary-0c41d9");
    let secrets = BTreeMap::from([("present".to_owned(), value.clone())]);
    let fixture = SecretStoreFixture {
        existing: gcp("present"),
        expected: value,
        missing: gcp("absent"),
    };
    (secrets, fixture)
}

#[tokio::test]
async fn a_correct_store_passes() {
    let (secrets, fixture) = store_fixture();
    let store = MapStore {
        secrets,
        leak_in_errors: false,
    };
    let report = check_secret_store(&store, &fixture).await.unwrap();
    assert_eq!(report.passed.len(), 5, "{report}");
}

#[tokio::test]
async fn a_store_that_leaks_in_errors_fails() {
    let (secrets, fixture) = store_fixture();
    let store = MapStore {
        secrets,
        leak_in_errors: true,
    };
    let failure = check_secret_store(&store, &fixture).await.unwrap_err();
    assert_eq!(failure.check, "no value in Debug or errors");
}

#[tokio::test]
async fn a_store_returning_wrong_values_fails() {
    let (mut secrets, fixture) = store_fixture();
    secrets.insert(
        "present".into(),
        SecretValue::new()
            .with("username", "admin")
            .with("password", "other"),
    );
    let store = MapStore {
        secrets,
        leak_in_errors: false,
    };
    let failure = check_secret_store(&store, &fixture).await.unwrap_err();
    assert_eq!(failure.check, "reads an existing secret");
}

// ---------------------------------------------------------------- provisioner suite

/// One account on the in-memory target.
#[derive(Debug, Clone, PartialEq)]
struct Account {
    ours: bool,
    keys: BTreeSet<String>,
    locked: bool,
}

type Target = Arc<Mutex<BTreeMap<String, Account>>>;

/// Ways to break the contract, one at a time.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Defect {
    None,
    RevokeFailsWhenGone,
    IgnoresCancellation,
    RevokeRemovesEveryKey,
    CleanupLeavesAccount,
}

#[derive(Debug)]
struct MemoryProvisioner {
    target: Target,
    defect: Defect,
}

#[derive(Serialize, Deserialize)]
struct State {
    user: LinuxUsername,
    key: String,
}

impl MemoryProvisioner {
    fn user(grant: &GrantSpec) -> LinuxUsername {
        AccountNaming::new()
            .with_home_domain("corp.example")
            .account_for(&grant.grantee)
    }
}

#[async_trait]
impl Provisioner for MemoryProvisioner {
    async fn get_status(&self, ctx: &ActionContext) -> Result<StatusReport, ProvisionError> {
        ctx.checkpoint()?;
        Ok(StatusReport::from_checks(vec![apono_core::StatusCheck {
            name: "memory".into(),
            ok: true,
            message: String::new(),
        }]))
    }

    async fn list_resources(&self, ctx: &ActionContext) -> Result<Inventory, ProvisionError> {
        ctx.checkpoint()?;
        Ok(Inventory {
            resources: vec![resource()],
            permissions: vec![],
        })
    }

    async fn grant_access(
        &self,
        ctx: &ActionContext,
        grant: &GrantSpec,
    ) -> Result<Granted, ProvisionError> {
        if self.defect != Defect::IgnoresCancellation {
            ctx.checkpoint()?;
        }
        ctx.secret().require("password")?;
        let user = Self::user(grant);
        let key = format!("{}-{}", grant.grant_id, rand_suffix());
        let mut target = self.target.lock().unwrap();
        let account = target.entry(user.to_string()).or_insert(Account {
            ours: true,
            keys: BTreeSet::new(),
            locked: false,
        });
        if !account.ours {
            return Err(ProvisionError::Conflict {
                target: "memory".into(),
                reason: format!("account {user} exists and is not ours"),
            });
        }
        account.locked = false;
        // Idempotent: a grant replaces its own earlier key.
        account
            .keys
            .retain(|k| !k.starts_with(&format!("{}-", grant.grant_id)));
        account.keys.insert(key.clone());
        let mut access = AccessDetails::default();
        access
            .credentials
            .push(Credential::one_time("key", key.clone()));
        Ok(Granted {
            state: GrantState::encode(&State { user, key })?,
            access,
        })
    }

    async fn revoke_access(
        &self,
        ctx: &ActionContext,
        _grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        ctx.checkpoint()?;
        let state: State = state.decode()?;
        let mut target = self.target.lock().unwrap();
        let Some(account) = target.get_mut(state.user.as_str()) else {
            return if self.defect == Defect::RevokeFailsWhenGone {
                Err(ProvisionError::Target {
                    target: "memory".into(),
                    reason: "no such user".into(),
                    source: None,
                })
            } else {
                Ok(())
            };
        };
        if self.defect == Defect::RevokeRemovesEveryKey {
            account.keys.clear();
        } else {
            account
                .keys
                .retain(|k| !k.starts_with(&state.key[..state.key.rfind('-').unwrap()]));
        }
        account.locked = account.keys.is_empty();
        Ok(())
    }

    async fn delete_credentials(
        &self,
        ctx: &ActionContext,
        _grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), ProvisionError> {
        ctx.checkpoint()?;
        let state: State = state.decode()?;
        if self.defect == Defect::CleanupLeavesAccount {
            return Ok(());
        }
        let mut target = self.target.lock().unwrap();
        if target
            .get(state.user.as_str())
            .is_some_and(|a| a.ours && a.keys.is_empty())
        {
            target.remove(state.user.as_str());
        }
        Ok(())
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn resource() -> Resource {
    Resource {
        integration: "memory".into(),
        resource_type: "ssh-server".into(),
        id: "m1".into(),
        name: "m1".into(),
        tags: BTreeMap::new(),
    }
}

struct Harness {
    provisioner: MemoryProvisioner,
}

impl Harness {
    fn new(defect: Defect) -> Self {
        let target: Target = Arc::default();
        // A pre-existing account the provisioner must never touch.
        target.lock().unwrap().insert(
            "bob".into(),
            Account {
                ours: false,
                keys: BTreeSet::from(["bob-own-key".into()]),
                locked: false,
            },
        );
        Self {
            provisioner: MemoryProvisioner { target, defect },
        }
    }
}

#[async_trait]
impl ProvisionerHarness for Harness {
    fn provisioner(&self) -> &dyn Provisioner {
        &self.provisioner
    }

    fn context(&self) -> ActionContext {
        ActionContext::new(SecretValue::new().with("password", "admin-secret"))
            .with_timeout(Duration::from_secs(30))
    }

    fn grant(&self, grantee: usize, grant_id: &str) -> GrantSpec {
        GrantSpec {
            grant_id: GrantId::new(grant_id).unwrap(),
            grantee: Grantee {
                id: format!("u{grantee}"),
                email: format!("user{grantee}@corp.example"),
                display_name: String::new(),
                groups: vec![],
            },
            resource: resource(),
            permission: "Default".into(),
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            custom_parameters: BTreeMap::new(),
        }
    }

    async fn snapshot(&self) -> Result<Vec<String>, BoxError> {
        Ok(self
            .provisioner
            .target
            .lock()
            .unwrap()
            .iter()
            .map(|(name, a)| format!("{name} {a:?}"))
            .collect())
    }

    async fn has_access(&self, _grant: &GrantSpec, granted: &Granted) -> Result<bool, BoxError> {
        let state: State = granted.state.decode()?;
        let key = granted.access.credentials[0]
            .value
            .expose_secret()
            .to_owned();
        Ok(self
            .provisioner
            .target
            .lock()
            .unwrap()
            .get(state.user.as_str())
            .is_some_and(|a| !a.locked && a.keys.contains(&key)))
    }

    async fn remove_out_of_band(
        &self,
        _grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), BoxError> {
        let state: State = state.decode()?;
        self.provisioner
            .target
            .lock()
            .unwrap()
            .remove(state.user.as_str());
        Ok(())
    }
}

#[tokio::test]
async fn a_correct_provisioner_passes() {
    let report = check_provisioner(&Harness::new(Defect::None))
        .await
        .unwrap();
    assert_eq!(report.passed.len(), 7, "{report}");
    assert_eq!(
        report.not_applicable,
        ["reset-credentials voids the old credentials"]
    );
}

#[tokio::test]
async fn each_broken_promise_is_caught() {
    for (defect, check) in [
        (
            Defect::RevokeFailsWhenGone,
            "revoke succeeds after out-of-band removal",
        ),
        (
            Defect::IgnoresCancellation,
            "cancelled and late actions change nothing",
        ),
        (
            Defect::RevokeRemovesEveryKey,
            "grants of one grantee are independent",
        ),
        (
            Defect::CleanupLeavesAccount,
            "grant, revoke and cleanup leave the target as it was",
        ),
    ] {
        let failure = check_provisioner(&Harness::new(defect)).await.unwrap_err();
        assert_eq!(failure.check, check, "{defect:?}: {failure}");
    }
}
