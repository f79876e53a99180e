//! A `WinrmProvisioner` wired to `FakeWinrm`, and the conformance harness over it.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::Duration;

use apono_core::conformance::ProvisionerHarness;
use apono_core::secrecy::ExposeSecret;
use apono_core::{
    ActionContext, BoxError, GrantId, GrantSpec, GrantState, Granted, Grantee, Provisioner,
    Resource, SecretValue, async_trait,
};
use apono_provision_winrm::script::ScriptKind;
use apono_provision_winrm::{WindowsConfig, WindowsTarget, WinrmProvisioner};
use apono_testkit::fakes::winrm::{FakeWindowsKind, FakeWinrm, FakeWinrmTls, ScriptBehaviour};

pub const ADMIN: &str = "apono";
pub const ADMIN_PASSWORD: &str = "Adm1n!not-a-real-pass";
pub const HOME_DOMAIN: &str = "corp.example";

pub struct Setup {
    pub fake: FakeWinrm,
    pub target: WindowsTarget,
    pub config: WindowsConfig,
    pub provisioner: WinrmProvisioner,
    pub resource: Resource,
}

pub fn behaviour(kind: ScriptKind) -> ScriptBehaviour {
    match kind {
        ScriptKind::Status => ScriptBehaviour::Status,
        ScriptKind::Discover => ScriptBehaviour::Discover,
        ScriptKind::Grant => ScriptBehaviour::Grant,
        ScriptKind::Revoke => ScriptBehaviour::Revoke,
        ScriptKind::Rotate => ScriptBehaviour::Rotate,
        ScriptKind::Cleanup => ScriptBehaviour::Cleanup,
        other => panic!("no behaviour for {other:?}"),
    }
}

pub fn start_fake(target: WindowsTarget, tls: FakeWinrmTls) -> FakeWinrm {
    let kind = match target {
        WindowsTarget::Rdp => FakeWindowsKind::Server {
            computer: "WIN-RDP01".into(),
        },
        WindowsTarget::DomainController => FakeWindowsKind::DomainController {
            netbios: "CORP".into(),
            dns: HOME_DOMAIN.into(),
        },
    };
    let fake = FakeWinrm::start(kind, tls).expect("start the WinRM fake");
    fake.add_admin(ADMIN, ADMIN_PASSWORD, true);
    for kind in ScriptKind::ALL {
        fake.recognise(behaviour(kind), kind.text());
    }
    fake.add_group("Helpdesk");
    fake
}

/// The configuration that reaches `fake`: HTTPS trusting its CA, or plain HTTP with the Basic
/// opt-in.
pub fn config_for(fake: &FakeWinrm, https: bool) -> WindowsConfig {
    let mut config = WindowsConfig::new("localhost");
    config.winrm_port = Some(fake.port());
    config.operation_timeout_secs = 10;
    config.account_naming = apono_core::AccountNaming::new().with_home_domain(HOME_DOMAIN);
    if https {
        config.use_ssl = true;
        config.ca_certificate = fake.ca_pem().map(str::to_owned);
    } else {
        config.allow_unencrypted_basic = true;
    }
    config
}

pub fn setup(target: WindowsTarget, tls: FakeWinrmTls) -> Setup {
    let fake = start_fake(target, tls);
    let config = config_for(&fake, tls != FakeWinrmTls::None);
    let provisioner =
        WinrmProvisioner::new("windows", target, config.clone()).expect("valid config");
    let resource = Resource {
        integration: "windows".into(),
        resource_type: target.resource_type().into(),
        id: match target {
            WindowsTarget::Rdp => "localhost".into(),
            _ => HOME_DOMAIN.into(),
        },
        name: "target".into(),
        tags: BTreeMap::new(),
    };
    Setup {
        fake,
        target,
        config,
        provisioner,
        resource,
    }
}

pub fn secret() -> SecretValue {
    SecretValue::new()
        .with("username", ADMIN)
        .with("password", ADMIN_PASSWORD)
}

pub fn context() -> ActionContext {
    ActionContext::new(secret()).with_timeout(Duration::from_secs(20))
}

impl Setup {
    pub fn grant_for(&self, email: &str, grant_id: &str, permission: &str) -> GrantSpec {
        GrantSpec {
            grant_id: GrantId::new(grant_id).expect("valid id"),
            grantee: Grantee {
                id: format!("idp-{email}"),
                email: email.into(),
                display_name: String::new(),
                groups: vec![],
            },
            resource: self.resource.clone(),
            permission: permission.into(),
            expires_at: chrono::Utc::now() + chrono::Duration::hours(2),
            custom_parameters: BTreeMap::new(),
        }
    }

    /// `DOMAIN\user` → `user`, from the access details.
    pub fn user_of(granted: &Granted) -> String {
        let qualified = granted.access.json["username"].as_str().expect("username");
        qualified.rsplit('\\').next().expect("user part").to_owned()
    }

    pub fn password_of(granted: &Granted) -> String {
        granted.access.credentials[0]
            .value
            .expose_secret()
            .to_owned()
    }
}

#[async_trait]
impl ProvisionerHarness for Setup {
    fn provisioner(&self) -> &dyn Provisioner {
        &self.provisioner
    }

    fn context(&self) -> ActionContext {
        context()
    }

    fn grant(&self, grantee: usize, grant_id: &str) -> GrantSpec {
        self.grant_for(&format!("user{grantee}@{HOME_DOMAIN}"), grant_id, "Connect")
    }

    async fn snapshot(&self) -> Result<Vec<String>, BoxError> {
        Ok(self.fake.snapshot())
    }

    async fn has_access(&self, grant: &GrantSpec, granted: &Granted) -> Result<bool, BoxError> {
        let user = Self::user_of(granted);
        let logs_on = self.fake.can_log_on(&user, &Self::password_of(granted));
        let group = match (self.target, grant.permission.as_str()) {
            (WindowsTarget::Rdp, "Connect") => Some("Remote Desktop Users"),
            (_, "Connect") => None,
            (_, other) => Some(other),
        };
        Ok(logs_on && group.is_none_or(|g| self.fake.is_member(&user, g)))
    }

    async fn remove_out_of_band(
        &self,
        _grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), BoxError> {
        let account = state.as_json()["account"]
            .as_str()
            .ok_or("no account in state")?;
        self.fake.remove_account(account);
        Ok(())
    }
}
