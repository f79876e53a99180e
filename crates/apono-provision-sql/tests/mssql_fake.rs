//! The SQL Server provisioner's tiberius client against `apono_testkit::fakes::tds`, a TDS
//! peer whose wire format python-tds checks (`apono-testkit/tests/fake_tds.rs`). This proves
//! the conversation: login, batches, `sp_executesql` parameters, results and errors as a TDS
//! client sees them, and the provisioner's bookkeeping against the fake's model of the
//! statements. It does not prove what SQL Server does with them: no SQL Server runs here.
#![cfg(feature = "mssql")]

use std::time::Duration;

use apono_core::conformance::{ProvisionerHarness, check_provisioner};
use apono_core::{
    ActionContext, BoxError, ErrorKind, GrantId, GrantSpec, GrantState, Granted, Grantee,
    IntegrationStatus, Provisioner, Resource, SecretValue, async_trait,
};
use apono_provision_sql::mssql::MssqlProvisioner;
use apono_provision_sql::{Engine, SqlConfig, grant_role_name};
use apono_testkit::fakes::tds::FakeSqlServer;
use chrono::Utc;
use secrecy::ExposeSecret;
use tokio_util::compat::TokioAsyncWriteCompatExt;

const ADMIN: &str = "apono";
const PASSWORD: &str = "Adm1n-pass";

fn fake() -> FakeSqlServer {
    FakeSqlServer::start(
        ADMIN,
        PASSWORD,
        &[
            ("sales", "dbo", "orders"),
            ("sales", "dbo", "refunds"),
            ("sales", "audit", "log"),
            ("hr", "dbo", "payroll"),
        ],
    )
    .expect("start the fake")
}

fn provisioner(fake: &FakeSqlServer) -> MssqlProvisioner {
    let config = SqlConfig::from_json(
        Engine::Mssql,
        &serde_json::json!({
            "hostname": "127.0.0.1", "port": fake.port(), "encrypt": false,
            "home_domain": "corp.example",
        }),
    )
    .expect("config");
    MssqlProvisioner::new(config).expect("provisioner")
}

fn ctx() -> ActionContext {
    ActionContext::new(
        SecretValue::new()
            .with("username", ADMIN)
            .with("password", PASSWORD),
    )
    .with_timeout(Duration::from_secs(30))
}

fn spec(person: &str, id: &str, kind: &str, resource: &str, permission: &str) -> GrantSpec {
    GrantSpec {
        grant_id: GrantId::new(id).expect("id"),
        grantee: Grantee {
            id: format!("idp-{person}"),
            email: format!("{person}@corp.example"),
            display_name: person.into(),
            groups: vec![],
        },
        resource: Resource {
            integration: "erp".into(),
            resource_type: kind.into(),
            id: resource.into(),
            name: resource.into(),
            tags: Default::default(),
        },
        permission: permission.into(),
        expires_at: Utc::now() + chrono::Duration::hours(1),
        custom_parameters: Default::default(),
    }
}

/// Logs in with tiberius as `user`: whether the fake accepts the login.
async fn logs_in(fake: &FakeSqlServer, user: &str, password: &str) -> bool {
    let mut config = tiberius::Config::new();
    config.host("127.0.0.1");
    config.port(fake.port());
    config.authentication(tiberius::AuthMethod::sql_server(user, password));
    config.encryption(tiberius::EncryptionLevel::NotSupported);
    let Ok(tcp) = tokio::net::TcpStream::connect(("127.0.0.1", fake.port())).await else {
        return false;
    };
    tiberius::Client::connect(config, tcp.compat_write())
        .await
        .is_ok()
}

fn password(granted: &Granted) -> String {
    granted.access.credentials[0]
        .value
        .expose_secret()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_union_revoke_and_cleanup_through_tiberius() {
    let fake = fake();
    let p = provisioner(&fake);
    let status = p.get_status(&ctx()).await.expect("status");
    assert_eq!(status.status, IntegrationStatus::Warning, "{status:?}");
    assert!(format!("{status:?}").contains("no expiry time on logins"));
    let inventory = p.list_resources(&ctx()).await.expect("inventory");
    let ids: Vec<String> = inventory
        .resources
        .iter()
        .map(|r| format!("{}:{}", r.resource_type, r.id))
        .collect();
    for expected in [
        "cluster:cluster",
        "database:sales",
        "database:hr",
        "schema:sales/audit",
        "table:sales/dbo/orders",
        "table:hr/dbo/payroll",
    ] {
        assert!(ids.iter().any(|i| i == expected), "{expected} in {ids:?}");
    }

    let table = spec("alice", "g-table", "table", "sales/dbo/orders", "read-only");
    let schema = spec("alice", "g-schema", "schema", "sales/audit", "read-write");
    let a = p.grant_access(&ctx(), &table).await.expect("grant table");
    let a2 = p.grant_access(&ctx(), &table).await.expect("grant again");
    let b = p.grant_access(&ctx(), &schema).await.expect("grant schema");
    assert_eq!(a.access.json["username"], "alice");
    assert_eq!(
        a.access.cli.as_deref(),
        Some(format!("sqlcmd -S 127.0.0.1,{} -U alice -d sales", fake.port()).as_str())
    );
    assert!(
        !logs_in(&fake, "alice", &password(&a)).await,
        "an older password is void"
    );
    assert!(!logs_in(&fake, "alice", &password(&a2)).await);
    assert!(
        logs_in(&fake, "alice", &password(&b)).await,
        "the newest password works"
    );

    let table_role = grant_role_name(&table.grant_id);
    let schema_role = grant_role_name(&schema.grant_id);
    let state = fake.state();
    assert!(state.server_roles["apono_managed"].contains("alice"));
    assert!(state.server_roles[&table_role].contains("alice"));
    let sales = &state.databases["sales"];
    assert!(sales.users.contains("alice"));
    assert!(sales.roles[&table_role].contains("alice"));
    assert!(sales.grants.contains(&format!(
        "GRANT SELECT ON OBJECT::[dbo].[orders] TO [{table_role}]"
    )));
    assert!(sales.grants.contains(&format!(
        "GRANT SELECT, INSERT, UPDATE, DELETE ON SCHEMA::[audit] TO [{schema_role}]"
    )));
    assert!(state.databases["hr"].users.is_empty(), "nothing in hr");

    // Revoking the schema grant leaves the table grant, and the login enabled.
    p.revoke_access(&ctx(), &schema, &b.state)
        .await
        .expect("revoke schema");
    let state = fake.state();
    assert!(!state.server_roles.contains_key(&schema_role));
    assert!(!state.databases["sales"].roles.contains_key(&schema_role));
    assert!(state.databases["sales"].roles[&table_role].contains("alice"));
    assert!(state.logins["alice"].enabled);

    // The last revoke disables the login first; twice is fine.
    p.revoke_access(&ctx(), &table, &a2.state)
        .await
        .expect("revoke table");
    p.revoke_access(&ctx(), &table, &a2.state)
        .await
        .expect("revoke again");
    let state = fake.state();
    assert!(!state.logins["alice"].enabled);
    assert!(!logs_in(&fake, "alice", &password(&b)).await);
    let disable = state
        .statements
        .iter()
        .position(|s| s == "ALTER LOGIN [alice] DISABLE")
        .expect("disabled");
    let drop_role = state
        .statements
        .iter()
        .rposition(|s| s == &format!("DROP ROLE [{table_role}]"))
        .expect("role dropped");
    assert!(
        disable < drop_role,
        "the login is disabled before the privileges go"
    );

    p.delete_credentials(&ctx(), &table, &a2.state)
        .await
        .expect("cleanup");
    p.delete_credentials(&ctx(), &table, &a2.state)
        .await
        .expect("cleanup again");
    let state = fake.state();
    assert!(!state.logins.contains_key("alice"));
    assert!(!state.databases["sales"].users.contains("alice"));
    assert!(!state.server_roles["apono_managed"].contains("alice"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmarked_login_is_never_adopted() {
    let fake = fake();
    let p = provisioner(&fake);
    // erin exists, created by someone else.
    let mut config = tiberius::Config::new();
    config.host("127.0.0.1");
    config.port(fake.port());
    config.authentication(tiberius::AuthMethod::sql_server(ADMIN, PASSWORD));
    config.encryption(tiberius::EncryptionLevel::NotSupported);
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", fake.port()))
        .await
        .expect("tcp");
    let mut client = tiberius::Client::connect(config, tcp.compat_write())
        .await
        .expect("admin login");
    client
        .simple_query("CREATE LOGIN [erin] WITH PASSWORD = N'theirs', CHECK_EXPIRATION = OFF")
        .await
        .expect("create")
        .into_results()
        .await
        .expect("results");
    let grant = spec("erin", "g-erin", "table", "sales/dbo/orders", "read-only");
    let err = p.grant_access(&ctx(), &grant).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let state = fake.state();
    assert_eq!(state.logins["erin"].password, "theirs");
    assert!(state.logins["erin"].enabled);
    let missing = spec("erin", "g-missing", "table", "sales/dbo/nope", "read-only");
    let err = p.grant_access(&ctx(), &missing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

struct Harness {
    fake: FakeSqlServer,
    provisioner: MssqlProvisioner,
}

#[async_trait]
impl ProvisionerHarness for Harness {
    fn provisioner(&self) -> &dyn Provisioner {
        &self.provisioner
    }

    fn context(&self) -> ActionContext {
        ctx()
    }

    fn grant(&self, grantee: usize, grant_id: &str) -> GrantSpec {
        spec(
            &format!("person{grantee}"),
            grant_id,
            "table",
            "sales/dbo/orders",
            "read-only",
        )
    }

    async fn snapshot(&self) -> Result<Vec<String>, BoxError> {
        let state = self.fake.state();
        let mut lines: Vec<String> = state
            .logins
            .iter()
            .map(|(n, l)| format!("login {n} {}", l.enabled))
            .collect();
        for (role, members) in &state.server_roles {
            lines.push(format!("server role {role} {members:?}"));
        }
        for (name, db) in &state.databases {
            lines.push(format!(
                "db {name} users {:?} roles {:?} grants {:?}",
                db.users, db.roles, db.grants
            ));
        }
        lines.retain(|l| l != "server role apono_managed {}");
        lines.sort();
        Ok(lines)
    }

    async fn has_access(&self, grant: &GrantSpec, granted: &Granted) -> Result<bool, BoxError> {
        let login = granted.access.json["username"]
            .as_str()
            .ok_or("username")?
            .to_owned();
        let state = self.fake.state();
        let role = grant_role_name(&grant.grant_id);
        let privileged = state.databases["sales"]
            .roles
            .get(&role)
            .is_some_and(|m| m.contains(&login));
        Ok(privileged && logs_in(&self.fake, &login, &password(granted)).await)
    }

    async fn remove_out_of_band(
        &self,
        _grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), BoxError> {
        let login = state.as_json()["login"]
            .as_str()
            .ok_or("no login")?
            .to_owned();
        let mut config = tiberius::Config::new();
        config.host("127.0.0.1");
        config.port(self.fake.port());
        config.authentication(tiberius::AuthMethod::sql_server(ADMIN, PASSWORD));
        config.encryption(tiberius::EncryptionLevel::NotSupported);
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.fake.port())).await?;
        let mut client = tiberius::Client::connect(config, tcp.compat_write()).await?;
        client
            .simple_query(format!("DROP LOGIN [{login}]"))
            .await?
            .into_results()
            .await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provisioner_conforms_against_the_fake() {
    let fake = fake();
    let provisioner = provisioner(&fake);
    let harness = Harness { fake, provisioner };
    let report = check_provisioner(&harness).await.expect("conformance");
    assert!(report.not_applicable.is_empty(), "{report}");
}
