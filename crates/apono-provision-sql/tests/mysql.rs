//! The MySQL provisioner against a real MariaDB (`apono_testkit::MariaDb`). Every observation
//! comes from the server: logins with the vendor's `mariadb` client using the handed-out
//! credentials, and `mysql.*` / `SHOW GRANTS` read as the administrator.
#![cfg(feature = "mysql")]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use apono_core::conformance::{ProvisionerHarness, check_provisioner};
use apono_core::{
    ActionContext, BoxError, ErrorKind, GrantId, GrantSpec, GrantState, Granted, Grantee,
    Provisioner, Resource, SecretValue, async_trait,
};
use apono_provision_sql::mysql::MySqlProvisioner;
use apono_provision_sql::quote::{Dialect, quote_ident, quote_literal};
use apono_provision_sql::{Engine, SqlConfig};
use apono_testkit::MariaDb;
use chrono::Utc;
use secrecy::ExposeSecret;
use sqlx::{Column, Connection, Row};

const SEED: &str = r#"
CREATE DATABASE app_db;
CREATE DATABASE appXdb;
CREATE DATABASE other;
CREATE TABLE app_db.orders (id INT AUTO_INCREMENT PRIMARY KEY, item TEXT);
INSERT INTO app_db.orders (item) VALUES ('apple'), ('pear');
CREATE TABLE app_db.notes (t TEXT);
INSERT INTO app_db.notes VALUES ('note');
CREATE TABLE appXdb.secrets (s TEXT);
CREATE TABLE other.secrets (s TEXT);
CREATE TABLE app_db.`t``; DROP TABLE app_db.orders; --` (v TEXT);
INSERT INTO app_db.`t``; DROP TABLE app_db.orders; --` VALUES ('odd');
CREATE USER 'alice_decoy'@'%' IDENTIFIED BY 'decoy-pw';
GRANT SELECT ON app_db.notes TO 'alice_decoy'@'%';
CREATE USER 'erin'@'%' IDENTIFIED BY 'mine';
"#;

fn start() -> MariaDb {
    let db = MariaDb::start().expect("MariaDB starts");
    admin(&db, SEED).expect("seed");
    db
}

fn admin(db: &MariaDb, sql: &str) -> Result<String, String> {
    let mut cmd = db.client();
    cmd.args(["--batch", "--skip-column-names"]);
    run_with_stdin(cmd, sql)
}

fn run_with_stdin(mut cmd: Command, sql: &str) -> Result<String, String> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(sql.as_bytes())
        .map_err(|e| e.to_string())?;
    result(child.wait_with_output().map_err(|e| e.to_string())?)
}

fn result(out: Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// `mariadb` as the grantee, with the handed-out username and password (in `MYSQL_PWD`).
fn grantee_cmd(granted: &Granted) -> Command {
    let json = &granted.access.json;
    let password = granted
        .access
        .credentials
        .iter()
        .find(|c| c.name == "password")
        .expect("a password")
        .value
        .expose_secret()
        .to_owned();
    let mut cmd = Command::new("mariadb");
    cmd.args([
        "--no-defaults",
        "--protocol=tcp",
        "--batch",
        "--skip-column-names",
    ])
    .args([
        "--connect-timeout=5",
        "-h",
        json["host"].as_str().expect("host"),
    ])
    .args(["-P", &json["port"].to_string()])
    .args(["-u", json["username"].as_str().expect("username")])
    .env("MYSQL_PWD", password);
    cmd
}

fn as_grantee(granted: &Granted, sql: &str) -> Result<String, String> {
    let mut cmd = grantee_cmd(granted);
    cmd.args(["-e", sql]);
    result(cmd.output().map_err(|e| e.to_string())?)
}

fn provisioner(db: &MariaDb) -> MySqlProvisioner {
    provisioner_with_roles(db, &[])
}

fn provisioner_with_roles(db: &MariaDb, roles: &[&str]) -> MySqlProvisioner {
    let config = SqlConfig::from_json(
        Engine::MySql,
        &serde_json::json!({
            "hostname": db.host(), "port": db.port(), "ssl_mode": "DISABLED",
            "home_domain": "corp.example", "roles": roles,
        }),
    )
    .expect("config");
    MySqlProvisioner::new(config).expect("provisioner")
}

fn ctx(db: &MariaDb) -> ActionContext {
    ActionContext::new(
        SecretValue::new()
            .with("username", db.user())
            .with("password", db.password()),
    )
    .with_timeout(Duration::from_secs(60))
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
            integration: "mysql".into(),
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

/// Every account with its full row in `mysql.global_priv` (password hash, lock, limits), its
/// `SHOW GRANTS`, the events and the connector's records; sorted.
fn snapshot(db: &MariaDb) -> Vec<String> {
    let accounts = admin(
        db,
        "SELECT User, Host, Priv FROM mysql.global_priv; \
         SELECT 'db', Db, User, Host FROM mysql.db; \
         SELECT 'table', Db, Table_name, User, Host, Table_priv FROM mysql.tables_priv; \
         SELECT 'event', EVENT_SCHEMA, EVENT_NAME FROM information_schema.EVENTS;",
    )
    .expect("accounts");
    let mut lines: Vec<String> = accounts.lines().map(str::to_owned).collect();
    for line in accounts.lines().filter(|l| l.contains('{')) {
        let mut fields = line.split('\t');
        let (Some(user), Some(host)) = (fields.next(), fields.next()) else {
            continue;
        };
        if let Ok(grants) = admin(
            db,
            &format!(
                "SHOW GRANTS FOR {}@{}",
                quote_literal(Dialect::MySql, user).unwrap(),
                quote_literal(Dialect::MySql, host).unwrap()
            ),
        ) {
            lines.extend(grants.lines().map(|g| format!("grants {g}")));
        }
    }
    if let Ok(records) = admin(
        db,
        "SELECT 'login', user, host FROM apono_connector.logins; \
         SELECT 'record', grant_id FROM apono_connector.grants;",
    ) {
        lines.extend(records.lines().map(str::to_owned));
    }
    lines.sort();
    lines
}

fn assert_same(before: &[String], after: &[String]) {
    let added: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
    let removed: Vec<_> = before.iter().filter(|l| !after.contains(l)).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "the server is not back as it was: added {added:#?}, removed {removed:#?}"
    );
}

fn denied(result: Result<String, String>, what: &str) {
    let err = result.expect_err(what);
    assert!(
        err.contains("denied") || err.contains("command denied"),
        "{what}: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_reads_the_granted_table_only_and_revoke_ends_the_open_session() {
    let db = start();
    let p = provisioner(&db);
    let grant = spec("alice", "g-ro", "table", "app_db/orders", "read-only");
    let granted = p.grant_access(&ctx(&db), &grant).await.expect("grant");
    assert_eq!(granted.access.json["username"], "alice");
    assert_eq!(
        granted.access.cli.as_deref(),
        Some(format!("mysql -h 127.0.0.1 -P {} -u alice -p app_db", db.port()).as_str())
    );
    assert_eq!(
        as_grantee(&granted, "SELECT item FROM app_db.orders ORDER BY id").unwrap(),
        "apple\npear"
    );
    for sql in [
        "INSERT INTO app_db.orders (item) VALUES ('x')",
        "UPDATE app_db.orders SET item = 'x'",
        "DELETE FROM app_db.orders",
        "SELECT * FROM app_db.notes",
        "SELECT * FROM appXdb.secrets",
        "SELECT * FROM other.secrets",
        "CREATE TABLE app_db.mine (x INT)",
        "SELECT * FROM apono_connector.grants",
    ] {
        denied(as_grantee(&granted, sql), sql);
    }
    let mut session = grantee_cmd(&granted);
    session.args(["-e", "SELECT SLEEP(300)"]);
    let mut session = tokio::process::Command::from(session)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("session");
    wait_for(|| {
        admin(
            &db,
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'alice'",
        )
        .is_ok_and(|n| n == "1")
    });
    p.revoke_access(&ctx(&db), &grant, &granted.state)
        .await
        .expect("revoke");
    let status = tokio::time::timeout(Duration::from_secs(30), session.wait())
        .await
        .expect("the session ended")
        .expect("status");
    assert!(!status.success(), "the session was killed");
    let err = as_grantee(&granted, "SELECT 1").unwrap_err();
    assert!(
        err.contains("locked") || err.contains("Access denied"),
        "{err}"
    );
    p.revoke_access(&ctx(&db), &grant, &granted.state)
        .await
        .expect("second revoke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_writes_the_granted_table_only_and_admin_stays_in_its_database() {
    let db = start();
    let p = provisioner(&db);
    let rw = spec("bob", "g-rw", "table", "app_db/orders", "read-write");
    let granted = p.grant_access(&ctx(&db), &rw).await.expect("grant");
    as_grantee(
        &granted,
        "INSERT INTO app_db.orders (id, item) VALUES (10, 'plum')",
    )
    .expect("insert");
    as_grantee(
        &granted,
        "UPDATE app_db.orders SET item = 'fig' WHERE id = 10",
    )
    .expect("update");
    as_grantee(&granted, "DELETE FROM app_db.orders WHERE id = 10").expect("delete");
    for sql in [
        "INSERT INTO app_db.notes VALUES ('x')",
        "INSERT INTO other.secrets VALUES ('x')",
        "DROP TABLE app_db.orders",
    ] {
        denied(as_grantee(&granted, sql), sql);
    }
    p.revoke_access(&ctx(&db), &rw, &granted.state)
        .await
        .expect("revoke");

    let admin_grant = spec("carol", "g-admin", "database", "app_db", "admin");
    let granted = p
        .grant_access(&ctx(&db), &admin_grant)
        .await
        .expect("grant admin");
    as_grantee(
        &granted,
        "CREATE TABLE app_db.carols (x INT); INSERT INTO app_db.carols VALUES (1)",
    )
    .expect("admin creates in its database");
    assert_eq!(
        as_grantee(&granted, "SELECT t FROM app_db.notes").unwrap(),
        "note"
    );
    for sql in [
        "SELECT * FROM appXdb.secrets",
        "CREATE TABLE appXdb.mine (x INT)",
        "SELECT * FROM other.secrets",
        "CREATE DATABASE evil",
        "CREATE USER evil",
        "SELECT * FROM mysql.user",
        "GRANT SELECT ON app_db.notes TO 'alice_decoy'@'%'",
    ] {
        denied(as_grantee(&granted, sql), sql);
    }
    p.revoke_access(&ctx(&db), &admin_grant, &granted.state)
        .await
        .expect("revoke admin");
    // What carol created stays.
    assert_eq!(admin(&db, "SELECT x FROM app_db.carols").unwrap(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_grants_leave_the_union_and_decoys_are_untouched() {
    let db = start();
    let p = provisioner(&db);
    // The connector's records exist from the first grant on; compare from then.
    let warmup = spec("zed", "g-warmup", "table", "app_db/notes", "read-only");
    let w = p.grant_access(&ctx(&db), &warmup).await.expect("warmup");
    p.revoke_access(&ctx(&db), &warmup, &w.state)
        .await
        .expect("warmup revoke");
    p.delete_credentials(&ctx(&db), &warmup, &w.state)
        .await
        .expect("warmup cleanup");
    let before = snapshot(&db);

    let table = spec("dave", "g-table", "table", "app_db/orders", "read-only");
    let database = spec("dave", "g-db", "database", "app_db", "read-write");
    let a = p
        .grant_access(&ctx(&db), &table)
        .await
        .expect("grant table");
    let a2 = p
        .grant_access(&ctx(&db), &table)
        .await
        .expect("grant again");
    let b = p
        .grant_access(&ctx(&db), &database)
        .await
        .expect("grant database");
    assert!(
        as_grantee(&a, "SELECT 1").is_err(),
        "an older password is void"
    );
    assert!(
        as_grantee(&a2, "SELECT 1").is_err(),
        "an older password is void"
    );
    as_grantee(&b, "INSERT INTO app_db.notes VALUES ('more')").expect("database rw");

    p.revoke_access(&ctx(&db), &database, &b.state)
        .await
        .expect("revoke database");
    assert_eq!(
        as_grantee(&b, "SELECT COUNT(*) FROM app_db.orders").unwrap(),
        "2"
    );
    denied(
        as_grantee(&b, "INSERT INTO app_db.orders (item) VALUES ('x')"),
        "insert after",
    );
    denied(as_grantee(&b, "SELECT * FROM app_db.notes"), "notes after");
    let event = admin(
        &db,
        "SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_NAME = 'expire_dave'",
    )
    .unwrap();
    assert_eq!(
        event, "1",
        "the lock is still scheduled for the remaining grant"
    );

    p.revoke_access(&ctx(&db), &table, &a2.state)
        .await
        .expect("revoke table");
    p.revoke_access(&ctx(&db), &table, &a2.state)
        .await
        .expect("revoke again");
    assert!(as_grantee(&b, "SELECT 1").is_err());
    p.delete_credentials(&ctx(&db), &table, &a2.state)
        .await
        .expect("cleanup");
    p.delete_credentials(&ctx(&db), &table, &a2.state)
        .await
        .expect("cleanup again");
    assert_same(&before, &snapshot(&db));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmarked_account_is_never_adopted_and_hostile_names_are_quoted() {
    let db = start();
    let p = provisioner(&db);
    let before = snapshot(&db);
    let grant = spec("erin", "g-erin", "table", "app_db/orders", "read-only");
    let err = p.grant_access(&ctx(&db), &grant).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let err = p
        .delete_credentials(
            &ctx(&db),
            &grant,
            &GrantState::from_json(serde_json::json!({
                "engine": "mysql", "login": "erin", "login_created": true
            })),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    let after: Vec<String> = snapshot(&db)
        .into_iter()
        .filter(|l| !l.starts_with("db\tapono_connector") && !l.contains("apono_connector"))
        .collect();
    assert_same(&before, &after);

    let hostile = spec(
        "frank",
        "g-hostile",
        "table",
        "app_db/t`; DROP TABLE app_db.orders; --",
        "read-only",
    );
    let granted = p.grant_access(&ctx(&db), &hostile).await.expect("grant");
    let select = format!(
        "SELECT v FROM app_db.{}",
        quote_ident(Dialect::MySql, "t`; DROP TABLE app_db.orders; --").unwrap()
    );
    assert_eq!(as_grantee(&granted, &select).unwrap(), "odd");
    assert_eq!(
        admin(&db, "SELECT COUNT(*) FROM app_db.orders").unwrap(),
        "2"
    );
}

/// The live half of the quoting proof, for MySQL's rules: hostile strings quoted by the crate
/// are read back by the real server as exactly themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_reads_quoted_hostile_text_back_exactly() {
    let db = MariaDb::start().expect("MariaDB starts");
    let mut conn = sqlx::mysql::MySqlConnection::connect(&db.url())
        .await
        .expect("connect");
    sqlx::raw_sql("SET SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', '')")
        .execute(&mut conn)
        .await
        .expect("mode");
    let samples = [
        "plain",
        "it's",
        "\\",
        "\\'",
        "''",
        "`",
        "``",
        "\"",
        "; DROP USER apono; --",
        "/* x",
        "é ü 𝕏 \u{2019} \u{ff07}",
        "é ü \u{2019} \u{ff07}",
        "\\x27",
        "%_",
        "back\\\\slash",
        "\\0",
        "\\Z",
    ];
    for s in samples {
        // MariaDB's identifiers are utf8mb3: characters beyond U+FFFF are refused there (an
        // error, not a different name), so those samples are checked as literals only.
        let alias = if s.chars().any(|c| u32::from(c) > 0xFFFF) {
            "v".to_owned()
        } else {
            s.to_owned()
        };
        let sql = format!(
            "SELECT {} AS {}",
            quote_literal(Dialect::MySql, s).unwrap(),
            quote_ident(Dialect::MySql, &alias).unwrap()
        );
        let row = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut conn)
            .await
            .expect("query");
        let value: String = row.try_get(0).expect("value");
        assert_eq!(value, s, "literal");
        assert_eq!(row.columns()[0].name(), alias, "identifier");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_locks_the_account_with_the_connector_stopped() {
    let db = start();
    let p = provisioner(&db);
    let status = p.get_status(&ctx(&db)).await.expect("status");
    assert_eq!(
        status.status,
        apono_core::IntegrationStatus::Warning,
        "{status:?}"
    );
    assert!(format!("{status:?}").contains("event_scheduler is OFF"));
    admin(&db, "SET GLOBAL event_scheduler = ON").unwrap();
    let status = p.get_status(&ctx(&db)).await.expect("status");
    assert_eq!(
        status.status,
        apono_core::IntegrationStatus::Active,
        "{status:?}"
    );

    let mut grant = spec("gina", "g-short", "table", "app_db/orders", "read-only");
    grant.expires_at = Utc::now() + chrono::Duration::seconds(4);
    let granted = p.grant_access(&ctx(&db), &grant).await.expect("grant");
    as_grantee(&granted, "SELECT 1").expect("works before the end");
    drop(p);
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        match as_grantee(&granted, "SELECT 1") {
            Err(e) => break e,
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(250)),
            Ok(_) => panic!("the account still logs in 30 s after its end"),
        }
    };
    assert!(
        Utc::now() >= grant.expires_at,
        "refused before the end: {err}"
    );
    assert!(err.contains("locked"), "{err}");
}

fn wait_for(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "condition not reached in 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Harness {
    db: MariaDb,
    provisioner: MySqlProvisioner,
}

#[async_trait]
impl ProvisionerHarness for Harness {
    fn provisioner(&self) -> &dyn Provisioner {
        &self.provisioner
    }

    fn context(&self) -> ActionContext {
        ctx(&self.db)
    }

    fn grant(&self, grantee: usize, grant_id: &str) -> GrantSpec {
        spec(
            &format!("person{grantee}"),
            grant_id,
            "table",
            "app_db/orders",
            "read-only",
        )
    }

    async fn snapshot(&self) -> Result<Vec<String>, BoxError> {
        let mut lines = snapshot(&self.db);
        let sessions = admin(
            &self.db,
            "SELECT 'session', USER FROM information_schema.PROCESSLIST WHERE USER NOT IN ('apono', 'system user', 'event_scheduler')",
        )?;
        lines.extend(sessions.lines().map(str::to_owned));
        // The connector's own database appears with the first grant and stays (empty).
        lines.retain(|l| !l.contains("apono_connector"));
        Ok(lines)
    }

    async fn has_access(&self, _grant: &GrantSpec, granted: &Granted) -> Result<bool, BoxError> {
        Ok(as_grantee(granted, "SELECT COUNT(*) FROM app_db.orders").is_ok())
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
        admin(
            &self.db,
            &format!("DROP USER {}@'%'", quote_literal(Dialect::MySql, &login)?),
        )?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provisioner_conforms_on_a_real_server() {
    let db = start();
    let provisioner = provisioner(&db);
    let inventory = provisioner
        .list_resources(&ctx(&db))
        .await
        .expect("inventory");
    let ids: Vec<(String, String)> = inventory
        .resources
        .iter()
        .map(|r| (r.resource_type.to_string(), r.id.clone()))
        .collect();
    for expected in [
        ("cluster", "cluster"),
        ("database", "app_db"),
        ("database", "appXdb"),
        ("table", "app_db/orders"),
        ("table", "other/secrets"),
    ] {
        assert!(
            ids.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {ids:?}"
        );
    }
    for (_, id) in &ids {
        for system in [
            "mysql",
            "information_schema",
            "performance_schema",
            "sys",
            "apono_connector",
        ] {
            assert!(
                id != system && !id.starts_with(&format!("{system}/")),
                "{id}"
            );
        }
    }
    let harness = Harness { db, provisioner };
    let report = check_provisioner(&harness).await.expect("conformance");
    assert!(report.not_applicable.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_role_is_the_default_role_until_revoked() {
    let db = start();
    admin(
        &db,
        "CREATE ROLE reporting; GRANT SELECT ON app_db.notes TO reporting;",
    )
    .unwrap();
    let p = provisioner_with_roles(&db, &["reporting"]);
    let unlisted = spec("ivy", "g-unlisted", "cluster", "cluster", "mysql_admin");
    let err = p.grant_access(&ctx(&db), &unlisted).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");

    let role = spec("ivy", "g-role", "cluster", "cluster", "reporting");
    let table = spec("ivy", "g-table", "table", "app_db/orders", "read-only");
    let r = p.grant_access(&ctx(&db), &role).await.expect("grant role");
    let t = p
        .grant_access(&ctx(&db), &table)
        .await
        .expect("grant table");
    let _ = r;
    // The role is active at login, beside the table grant.
    assert_eq!(
        as_grantee(&t, "SELECT t FROM app_db.notes").unwrap(),
        "note"
    );
    assert_eq!(
        as_grantee(&t, "SELECT COUNT(*) FROM app_db.orders").unwrap(),
        "2"
    );

    p.revoke_access(&ctx(&db), &role, &t.state)
        .await
        .expect("revoke role");
    denied(
        as_grantee(&t, "SELECT t FROM app_db.notes"),
        "notes after the role",
    );
    assert_eq!(
        as_grantee(&t, "SELECT COUNT(*) FROM app_db.orders").unwrap(),
        "2"
    );
    let granted_roles = admin(
        &db,
        "SELECT COUNT(*) FROM mysql.roles_mapping WHERE User = 'ivy'",
    )
    .unwrap();
    assert_eq!(granted_roles, "0");
    p.revoke_access(&ctx(&db), &role, &t.state)
        .await
        .expect("revoke role again");
    // The other way round: revoking the table grant keeps a role grant (MariaDB's REVOKE ALL
    // takes roles too; the remaining role grant is given back, as the default role).
    let r2 = spec("ivy", "g-role-2", "cluster", "cluster", "reporting");
    let r2 = p
        .grant_access(&ctx(&db), &r2)
        .await
        .expect("grant role again");
    p.revoke_access(&ctx(&db), &table, &t.state)
        .await
        .expect("revoke table");
    assert_eq!(
        as_grantee(&r2, "SELECT t FROM app_db.notes").unwrap(),
        "note"
    );
    denied(
        as_grantee(&r2, "SELECT COUNT(*) FROM app_db.orders"),
        "orders after its revoke",
    );
    let last = spec("ivy", "g-role-2", "cluster", "cluster", "reporting");
    p.revoke_access(&ctx(&db), &last, &r2.state)
        .await
        .expect("revoke the last grant");
    assert!(
        as_grantee(&r2, "SELECT 1").is_err(),
        "the last revoke locks the account"
    );
    p.delete_credentials(&ctx(&db), &table, &t.state)
        .await
        .expect("cleanup");
    let role_kept = admin(&db, "SHOW GRANTS FOR reporting").unwrap();
    assert!(role_kept.contains("app_db`.`notes"), "{role_kept}");
}
