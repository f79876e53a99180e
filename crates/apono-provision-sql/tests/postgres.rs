//! The PostgreSQL provisioner against a real PostgreSQL (`apono_testkit::Postgres`). Every
//! observation comes from the server: logins with the vendor's `psql` using the handed-out
//! credentials, and catalogs read as the superuser.
#![cfg(feature = "postgres")]

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use apono_core::conformance::{ProvisionerHarness, check_provisioner};
use apono_core::{
    ActionContext, BoxError, ErrorKind, GrantId, GrantSpec, GrantState, Granted, Grantee,
    Provisioner, Resource, SecretValue, async_trait,
};
use apono_provision_sql::postgres::PostgresProvisioner;
use apono_provision_sql::quote::{Dialect, quote_ident, quote_literal};
use apono_provision_sql::{Engine, SqlConfig};
use apono_testkit::Postgres;
use chrono::Utc;
use secrecy::ExposeSecret;

const SEED: &str = r#"
CREATE DATABASE app;
CREATE DATABASE other;
CREATE ROLE decoy_reader LOGIN PASSWORD 'decoy-pw';
CREATE ROLE alice_decoy LOGIN PASSWORD 'decoy-pw-2' VALID UNTIL '2100-01-01';
COMMENT ON ROLE alice_decoy IS 'apono-managed grant x until 2000-01-01T00:00:00Z';
CREATE ROLE reporting NOLOGIN;
\c app
CREATE SCHEMA sales;
CREATE TABLE sales.orders (id serial PRIMARY KEY, item text);
INSERT INTO sales.orders (item) VALUES ('apple'), ('pear');
CREATE TABLE sales.refunds (id int);
CREATE TABLE public.notes (t text);
INSERT INTO public.notes VALUES ('note');
GRANT SELECT ON sales.refunds TO decoy_reader;
GRANT SELECT ON public.notes TO reporting;
CREATE SCHEMA "we""ird $$ schema";
CREATE TABLE "we""ird $$ schema"."t'; DROP TABLE sales.orders; --" (v text);
INSERT INTO "we""ird $$ schema"."t'; DROP TABLE sales.orders; --" VALUES ('odd');
\c other
CREATE TABLE public.secrets (s text);
INSERT INTO public.secrets VALUES ('s3cret');
"#;

fn start() -> Postgres {
    let pg = Postgres::start().expect("PostgreSQL starts");
    psql_admin(&pg, "postgres", SEED).expect("seed");
    pg
}

fn psql_admin(pg: &Postgres, db: &str, sql: &str) -> Result<String, String> {
    let mut cmd = pg.psql();
    cmd.env("PGDATABASE", db).args(["-tA", "-q"]);
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
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    result(out)
}

fn result(out: Output) -> Result<String, String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// `psql` as the grantee, with the handed-out username and password (in `PGPASSWORD`).
fn grantee_cmd(pg: &Postgres, granted: &Granted, db: &str) -> Command {
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
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-v", "ON_ERROR_STOP=1", "-tA", "-q"])
        .args(["-h", json["host"].as_str().expect("host")])
        .args(["-p", &json["port"].to_string()])
        .args(["-U", json["username"].as_str().expect("username")])
        .args(["-d", db])
        .env("PGPASSWORD", password)
        .env("PGSSLMODE", "disable")
        .env("PGCONNECT_TIMEOUT", "5")
        .env_remove("PGSERVICE")
        .env_remove("PGPASSFILE");
    let _ = pg;
    cmd
}

fn as_grantee(pg: &Postgres, granted: &Granted, db: &str, sql: &str) -> Result<String, String> {
    let mut cmd = grantee_cmd(pg, granted, db);
    cmd.args(["-c", sql]);
    result(cmd.output().map_err(|e| e.to_string())?)
}

fn provisioner(pg: &Postgres, roles: &[&str]) -> PostgresProvisioner {
    let config = SqlConfig::from_json(
        Engine::Postgres,
        &serde_json::json!({
            "hostname": pg.host(), "port": pg.port(), "sslmode": "disable",
            "home_domain": "corp.example", "roles": roles,
        }),
    )
    .expect("config");
    PostgresProvisioner::new(config).expect("provisioner")
}

fn ctx(pg: &Postgres) -> ActionContext {
    ActionContext::new(
        SecretValue::new()
            .with("username", pg.superuser())
            .with("password", pg.password()),
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
            integration: "pg".into(),
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

/// Roles (with password hash, expiry, comment), memberships and every privilege on every
/// database, schema and table, from the catalogs; one line each, sorted.
fn snapshot(pg: &Postgres) -> Vec<String> {
    let mut lines = Vec::new();
    let roles = psql_admin(
        pg,
        "postgres",
        "SELECT 'role', rolname, rolcanlogin, rolsuper, rolinherit, coalesce(rolpassword, '-'), \
         coalesce(rolvaliduntil::text, '-'), coalesce(shobj_description(oid, 'pg_authid'), '-') \
         FROM pg_authid; \
         SELECT 'member', r.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid \
         JOIN pg_roles m ON m.oid = a.member; \
         SELECT 'database', datname, (aclexplode(coalesce(datacl, acldefault('d', datdba)))).* FROM pg_database;",
    )
    .expect("roles");
    lines.extend(roles.lines().map(str::to_owned));
    for db in ["postgres", "app", "other"] {
        let objects = psql_admin(
            pg,
            db,
            "SELECT current_database(), 'schema', nspname, (aclexplode(coalesce(nspacl, acldefault('n', nspowner)))).* FROM pg_namespace; \
             SELECT current_database(), 'rel', relname, relowner::regrole, (aclexplode(coalesce(relacl, acldefault(CASE WHEN relkind = 'S' THEN 's' ELSE 'r' END::\"char\", relowner)))).* FROM pg_class WHERE relkind IN ('r', 'v', 'S') AND relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace);",
        )
        .expect("objects");
        lines.extend(objects.lines().map(str::to_owned));
    }
    lines.sort();
    lines
}

/// Fails with only the lines that differ.
fn assert_same(before: &[String], after: &[String]) {
    let added: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
    let removed: Vec<_> = before.iter().filter(|l| !after.contains(l)).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "the server is not back as it was: added {added:#?}, removed {removed:#?}"
    );
}

fn only(mut lines: Vec<String>, needle: &str) -> Vec<String> {
    lines.retain(|l| l.contains(needle));
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_reads_the_granted_table_only_and_revoke_ends_the_open_session() {
    let pg = start();
    let p = provisioner(&pg, &[]);
    let grant = spec("alice", "g-ro", "table", "app/sales/orders", "read-only");
    let granted = p.grant_access(&ctx(&pg), &grant).await.expect("grant");
    assert_eq!(granted.access.json["username"], "alice");
    assert_eq!(
        granted.access.cli.as_deref(),
        Some(format!("psql -h 127.0.0.1 -p {} -U alice -d app", pg.port()).as_str())
    );
    assert!(
        !granted
            .access
            .cli
            .as_deref()
            .unwrap_or("")
            .contains("PGPASSWORD")
    );

    assert_eq!(
        as_grantee(
            &pg,
            &granted,
            "app",
            "SELECT item FROM sales.orders ORDER BY id"
        )
        .unwrap(),
        "apple\npear"
    );
    for denied in [
        "INSERT INTO sales.orders (item) VALUES ('x')",
        "UPDATE sales.orders SET item = 'x'",
        "DELETE FROM sales.orders",
        "SELECT * FROM sales.refunds",
        "SELECT * FROM public.notes",
        "CREATE TABLE sales.mine (x int)",
    ] {
        let err = as_grantee(&pg, &granted, "app", denied).unwrap_err();
        assert!(err.contains("permission denied"), "{denied}: {err}");
    }
    let err = as_grantee(&pg, &granted, "other", "SELECT * FROM public.secrets").unwrap_err();
    assert!(err.contains("permission denied"), "{err}");

    // An open session, ended by the revoke.
    let mut session = grantee_cmd(&pg, &granted, "app");
    session.args(["-c", "SELECT pg_sleep(300)"]);
    let mut session = tokio::process::Command::from(session)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("session");
    wait_for(|| {
        psql_admin(
            &pg,
            "postgres",
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'alice'",
        )
        .is_ok_and(|n| n == "1")
    });
    p.revoke_access(&ctx(&pg), &grant, &granted.state)
        .await
        .expect("revoke");
    let status = tokio::time::timeout(Duration::from_secs(30), session.wait())
        .await
        .expect("the session ended")
        .expect("status");
    assert!(!status.success(), "the session was terminated");
    let err = as_grantee(&pg, &granted, "app", "SELECT 1").unwrap_err();
    assert!(
        err.contains("password authentication failed") || err.contains("not permitted to log in"),
        "{err}"
    );
    // Idempotent.
    p.revoke_access(&ctx(&pg), &grant, &granted.state)
        .await
        .expect("second revoke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_write_writes_the_granted_table_only_and_admin_stays_in_its_database() {
    let pg = start();
    let p = provisioner(&pg, &[]);
    let rw = spec("bob", "g-rw", "table", "app/sales/orders", "read-write");
    let granted = p.grant_access(&ctx(&pg), &rw).await.expect("grant");
    as_grantee(
        &pg,
        &granted,
        "app",
        "INSERT INTO sales.orders (id, item) VALUES (10, 'plum')",
    )
    .expect("insert");
    as_grantee(
        &pg,
        &granted,
        "app",
        "UPDATE sales.orders SET item = 'fig' WHERE id = 10",
    )
    .expect("update");
    as_grantee(
        &pg,
        &granted,
        "app",
        "DELETE FROM sales.orders WHERE id = 10",
    )
    .expect("delete");
    for denied in [
        "INSERT INTO public.notes VALUES ('x')",
        "INSERT INTO sales.refunds VALUES (1)",
        "TRUNCATE sales.orders",
    ] {
        let err = as_grantee(&pg, &granted, "app", denied).unwrap_err();
        assert!(err.contains("permission denied"), "{denied}: {err}");
    }
    p.revoke_access(&ctx(&pg), &rw, &granted.state)
        .await
        .expect("revoke");

    let admin = spec("carol", "g-admin", "database", "app", "admin");
    let granted = p
        .grant_access(&ctx(&pg), &admin)
        .await
        .expect("grant admin");
    as_grantee(
        &pg,
        &granted,
        "app",
        "CREATE TABLE public.carols (x int); INSERT INTO public.carols VALUES (1)",
    )
    .expect("admin creates in its database");
    as_grantee(&pg, &granted, "app", "CREATE SCHEMA carol_s").expect("admin creates a schema");
    as_grantee(&pg, &granted, "app", "TRUNCATE sales.refunds").expect("admin truncates");
    assert_eq!(
        as_grantee(&pg, &granted, "app", "SELECT t FROM public.notes").unwrap(),
        "note"
    );
    for denied in [
        "SELECT * FROM public.secrets",
        "CREATE TABLE public.mine (x int)",
    ] {
        let err = as_grantee(&pg, &granted, "other", denied).unwrap_err();
        assert!(err.contains("permission denied"), "{denied}: {err}");
    }
    let err = as_grantee(&pg, &granted, "app", "CREATE ROLE evil").unwrap_err();
    assert!(err.contains("permission denied"), "{err}");
    let err = as_grantee(&pg, &granted, "app", "CREATE DATABASE evil").unwrap_err();
    assert!(err.contains("permission denied"), "{err}");

    p.revoke_access(&ctx(&pg), &admin, &granted.state)
        .await
        .expect("revoke admin");
    // What carol created is kept, owned by the admin user now.
    assert_eq!(
        psql_admin(
            &pg,
            "app",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'carols'"
        )
        .unwrap(),
        "apono"
    );
    assert_eq!(
        psql_admin(
            &pg,
            "app",
            "SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'carol_s'"
        )
        .unwrap(),
        "apono"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_grants_leave_the_union_and_decoys_are_untouched() {
    let pg = start();
    let before = snapshot(&pg);
    let p = provisioner(&pg, &["reporting"]);
    let table = spec("dave", "g-table", "table", "app/sales/orders", "read-only");
    let schema = spec("dave", "g-schema", "schema", "app/sales", "read-write");
    let role = spec("dave", "g-role", "cluster", "cluster", "reporting");
    let a = p
        .grant_access(&ctx(&pg), &table)
        .await
        .expect("grant table");
    let a2 = p
        .grant_access(&ctx(&pg), &table)
        .await
        .expect("grant again");
    let b = p
        .grant_access(&ctx(&pg), &schema)
        .await
        .expect("grant schema");
    let c = p.grant_access(&ctx(&pg), &role).await.expect("grant role");
    // One login; the newest password works, the older ones do not.
    assert_eq!(a.state.as_json()["login"], b.state.as_json()["login"]);
    assert!(as_grantee(&pg, &a, "app", "SELECT 1").is_err());
    assert!(as_grantee(&pg, &a2, "app", "SELECT 1").is_err());
    as_grantee(&pg, &c, "app", "INSERT INTO sales.refunds VALUES (7)").expect("schema rw");
    assert_eq!(
        as_grantee(&pg, &c, "app", "SELECT t FROM public.notes").unwrap(),
        "note"
    );

    // Revoking the schema grant leaves the table's read-only and the role.
    p.revoke_access(&ctx(&pg), &schema, &b.state)
        .await
        .expect("revoke schema");
    assert_eq!(
        as_grantee(&pg, &c, "app", "SELECT count(*) FROM sales.orders").unwrap(),
        "2"
    );
    let err = as_grantee(
        &pg,
        &c,
        "app",
        "INSERT INTO sales.orders (item) VALUES ('x')",
    )
    .unwrap_err();
    assert!(err.contains("permission denied"), "{err}");
    let err = as_grantee(&pg, &c, "app", "SELECT * FROM sales.refunds").unwrap_err();
    assert!(err.contains("permission denied"), "{err}");
    assert_eq!(
        as_grantee(&pg, &c, "app", "SELECT t FROM public.notes").unwrap(),
        "note"
    );
    // VALID UNTIL follows the latest remaining grant.
    let until = psql_admin(&pg, "postgres", "SELECT rolvaliduntil IS NOT NULL AND rolvaliduntil > now() FROM pg_roles WHERE rolname = 'dave'").unwrap();
    assert_eq!(until, "t");

    p.revoke_access(&ctx(&pg), &role, &c.state)
        .await
        .expect("revoke role");
    let err = as_grantee(&pg, &c, "app", "SELECT t FROM public.notes").unwrap_err();
    assert!(err.contains("permission denied"), "{err}");
    p.revoke_access(&ctx(&pg), &table, &a2.state)
        .await
        .expect("revoke table");
    p.revoke_access(&ctx(&pg), &table, &a2.state)
        .await
        .expect("revoke again");
    assert!(as_grantee(&pg, &c, "app", "SELECT 1").is_err());
    p.delete_credentials(&ctx(&pg), &table, &a2.state)
        .await
        .expect("cleanup");
    p.delete_credentials(&ctx(&pg), &table, &a2.state)
        .await
        .expect("cleanup again");

    let after = snapshot(&pg);
    assert_same(&before, &after);
    assert!(!only(after, "alice_decoy").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmarked_role_is_never_adopted_and_hostile_names_are_quoted() {
    let pg = start();
    let p = provisioner(&pg, &[]);
    psql_admin(&pg, "postgres", "CREATE ROLE erin LOGIN PASSWORD 'mine'").unwrap();
    let before = snapshot(&pg);
    let grant = spec("erin", "g-erin", "table", "app/sales/orders", "read-only");
    let err = p.grant_access(&ctx(&pg), &grant).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(only(snapshot(&pg), "erin"), only(before, "erin"));

    // A table whose schema and name hold quotes, `$$`, `;` and a comment.
    let hostile = spec(
        "frank",
        "g-hostile",
        "table",
        "app/we\"ird $$ schema/t'; DROP TABLE sales.orders; --",
        "read-only",
    );
    let granted = p.grant_access(&ctx(&pg), &hostile).await.expect("grant");
    let select = format!(
        "SELECT v FROM {}.{}",
        quote_ident(Dialect::Postgres, "we\"ird $$ schema").unwrap(),
        quote_ident(Dialect::Postgres, "t'; DROP TABLE sales.orders; --").unwrap()
    );
    assert_eq!(as_grantee(&pg, &granted, "app", &select).unwrap(), "odd");
    assert_eq!(
        psql_admin(&pg, "app", "SELECT count(*) FROM sales.orders").unwrap(),
        "2"
    );
    // A resource that does not exist is refused before anything is created.
    let missing = spec("frank", "g-missing", "table", "app/sales/nope", "read-only");
    let err = p.grant_access(&ctx(&pg), &missing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

/// The live half of the quoting proof: hostile strings, quoted by the crate, read back by the
/// real server as exactly themselves (as literals and as identifiers).
#[test]
fn the_server_reads_quoted_hostile_text_back_exactly() {
    let pg = Postgres::start().expect("PostgreSQL starts");
    let samples = [
        "plain",
        "it's",
        "\\",
        "\\'",
        "''",
        "$$",
        "$a$ x $a$",
        "\"",
        "\"\"",
        "; DROP ROLE apono; --",
        "/* x",
        "é ü 𝕏 \u{2019} \u{ff07}",
        "E'x'",
        "\\x27",
        "%I %L",
        "back\\\\slash",
    ];
    let mut sql = String::new();
    for s in samples {
        sql.push_str(&format!(
            "SELECT {} AS {};\n",
            quote_literal(Dialect::Postgres, s).unwrap(),
            quote_ident(Dialect::Postgres, s).unwrap()
        ));
    }
    // -A -t: one value a line; --echo-hidden off; column names checked through \gdesc-free
    // JSON: row_to_json shows the column name the server read.
    let mut json_sql = String::new();
    for line in sql.lines() {
        json_sql.push_str(&format!(
            "SELECT row_to_json(q)::text FROM ({}) q;\n",
            line.trim_end_matches(';')
        ));
    }
    let out = psql_admin(&pg, "postgres", &json_sql).expect("queries");
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(rows.len(), samples.len());
    for (row, s) in rows.iter().zip(samples) {
        let object = row.as_object().expect("object");
        assert_eq!(object.len(), 1);
        let (name, value) = object.iter().next().expect("one column");
        assert_eq!(name, s, "identifier");
        assert_eq!(value, s, "literal");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_until_refuses_the_login_with_the_connector_stopped() {
    let pg = start();
    let p = provisioner(&pg, &[]);
    let mut grant = spec("gina", "g-short", "table", "app/sales/orders", "read-only");
    grant.expires_at = Utc::now() + chrono::Duration::seconds(4);
    let granted = p.grant_access(&ctx(&pg), &grant).await.expect("grant");
    as_grantee(&pg, &granted, "app", "SELECT 1").expect("works before the end");
    drop(p); // the connector is gone: no revoke will run
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        match as_grantee(&pg, &granted, "app", "SELECT 1") {
            Err(e) => break e,
            Ok(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(250)),
            Ok(_) => panic!("the login still works 30 s after VALID UNTIL"),
        }
    };
    assert!(
        Utc::now() >= grant.expires_at,
        "refused before the end: {err}"
    );
    assert!(err.contains("password authentication failed"), "{err}");
}

fn wait_for(mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        assert!(Instant::now() < deadline, "condition not reached in 20 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

struct Harness {
    pg: Postgres,
    provisioner: PostgresProvisioner,
}

#[async_trait]
impl ProvisionerHarness for Harness {
    fn provisioner(&self) -> &dyn Provisioner {
        &self.provisioner
    }

    fn context(&self) -> ActionContext {
        ctx(&self.pg)
    }

    fn grant(&self, grantee: usize, grant_id: &str) -> GrantSpec {
        spec(
            &format!("person{grantee}"),
            grant_id,
            "table",
            "app/sales/orders",
            "read-only",
        )
    }

    async fn snapshot(&self) -> Result<Vec<String>, BoxError> {
        let mut lines = snapshot(&self.pg);
        let sessions = psql_admin(
            &self.pg,
            "postgres",
            "SELECT 'session', usename FROM pg_stat_activity WHERE usename IS NOT NULL AND usename <> 'apono'",
        )?;
        lines.extend(sessions.lines().map(str::to_owned));
        Ok(lines)
    }

    async fn has_access(&self, _grant: &GrantSpec, granted: &Granted) -> Result<bool, BoxError> {
        Ok(as_grantee(
            &self.pg,
            granted,
            "app",
            "SELECT count(*) FROM sales.orders",
        )
        .is_ok())
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
        psql_admin(
            &self.pg,
            "postgres",
            &format!("DROP ROLE {}", quote_ident(Dialect::Postgres, &login)?),
        )?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_provisioner_conforms_on_a_real_server() {
    let pg = start();
    let provisioner = provisioner(&pg, &[]);
    let inventory = provisioner
        .list_resources(&ctx(&pg))
        .await
        .expect("inventory");
    let ids: Vec<(String, String)> = inventory
        .resources
        .iter()
        .map(|r| (r.resource_type.to_string(), r.id.clone()))
        .collect();
    for expected in [
        ("cluster", "cluster"),
        ("database", "app"),
        ("database", "other"),
        ("schema", "app/sales"),
        ("table", "app/sales/orders"),
        ("table", "other/public/secrets"),
    ] {
        assert!(
            ids.contains(&(expected.0.into(), expected.1.into())),
            "{expected:?} in {ids:?}"
        );
    }
    for (_, id) in &ids {
        assert!(
            !id.contains("template")
                && !id.contains("pg_catalog")
                && !id.contains("information_schema"),
            "{id}"
        );
    }
    let status = provisioner.get_status(&ctx(&pg)).await.expect("status");
    assert_eq!(
        status.status,
        apono_core::IntegrationStatus::Active,
        "{status:?}"
    );
    let harness = Harness { pg, provisioner };
    let report = check_provisioner(&harness).await.expect("conformance");
    assert!(report.not_applicable.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_verified_by_default_and_a_partial_grant_is_finished_or_revoked() {
    let pg = start();
    // No sslmode: verify-full. This server has no TLS, so nothing is sent in the clear.
    let strict = PostgresProvisioner::new(
        SqlConfig::from_json(
            Engine::Postgres,
            &serde_json::json!({"hostname": pg.host(), "port": pg.port()}),
        )
        .expect("config"),
    )
    .expect("provisioner");
    let status = strict.get_status(&ctx(&pg)).await.expect("status");
    assert_eq!(
        status.status,
        apono_core::IntegrationStatus::Error,
        "{status:?}"
    );
    let grant = spec("hal", "g-partial", "table", "app/sales/orders", "read-only");
    let err = strict.grant_access(&ctx(&pg), &grant).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert_eq!(
        psql_admin(
            &pg,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'hal'"
        )
        .unwrap(),
        "0"
    );

    // A grant that stopped after creating its role (marked), before the login: revoke cleans
    // it up, and a retried grant completes it.
    let p = provisioner(&pg, &[]);
    let role = apono_provision_sql::grant_role_name(&grant.grant_id);
    let partial = format!(
        "CREATE ROLE {role} NOLOGIN; COMMENT ON ROLE {role} IS 'apono-managed grant g-partial until 2100-01-01T00:00:00Z'"
    );
    psql_admin(&pg, "postgres", &partial).unwrap();
    let state = GrantState::from_json(serde_json::json!({
        "engine": "postgresql", "login": "hal", "grant_role": role,
        "databases": ["app"], "login_created": true
    }));
    p.revoke_access(&ctx(&pg), &grant, &state)
        .await
        .expect("revoke a partial grant");
    let count = format!("SELECT count(*) FROM pg_roles WHERE rolname IN ('hal', '{role}')");
    assert_eq!(psql_admin(&pg, "postgres", &count).unwrap(), "0");
    psql_admin(&pg, "postgres", &partial).unwrap();
    let granted = p
        .grant_access(&ctx(&pg), &grant)
        .await
        .expect("grant over a partial one");
    assert_eq!(
        as_grantee(&pg, &granted, "app", "SELECT count(*) FROM sales.orders").unwrap(),
        "2"
    );
    p.revoke_access(&ctx(&pg), &grant, &granted.state)
        .await
        .expect("revoke");
    p.delete_credentials(&ctx(&pg), &grant, &granted.state)
        .await
        .expect("cleanup");
    assert_eq!(psql_admin(&pg, "postgres", &count).unwrap(), "0");
}
