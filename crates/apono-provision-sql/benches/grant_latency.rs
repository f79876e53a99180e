//! Grant and revoke latency on one real PostgreSQL: this crate's `postgresql` provisioner
//! (`read-only` on one table) beside the anchor, OpenBao's database secrets engine issuing a
//! dynamic role with the same privilege on the same server (`GET database/creds/…`, then
//! `PUT sys/leases/revoke`, over its HTTP API). The two take turns cycle by cycle, so that load
//! from elsewhere on the machine falls on both alike.
//!
//! Run by hand: `cargo bench -p apono-provision-sql --features postgres` (needs root, like the
//! tests; `bao` from the workspace venv).

#![allow(clippy::print_stdout, missing_docs)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use apono_core::{
    ActionContext, GrantId, GrantSpec, Grantee, Permission, Provisioner, Resource, SecretValue,
};
use apono_provision_sql::postgres::PostgresProvisioner;
use apono_provision_sql::{Engine, SqlConfig};
use apono_testkit::{OpenBao, Postgres};

const RUNS: usize = 40;

fn psql(pg: &Postgres, sql: &str) -> Result<(), Box<dyn std::error::Error>> {
    let status = pg
        .psql()
        .args(["-q", "-c", sql])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(format!("psql failed: {sql}").into());
    }
    Ok(())
}

fn bao(server: &OpenBao, args: &[&str]) -> Result<(), Box<dyn std::error::Error>> {
    let out = server.cli().args(args).output()?;
    if !out.status.success() {
        return Err(format!("bao {args:?}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pg = Postgres::start()?;
    psql(&pg, "CREATE TABLE public.orders (id int)")?;
    let bao_server = OpenBao::start()?;
    bao(&bao_server, &["secrets", "enable", "database"])?;
    let url = format!(
        "connection_url=postgresql://{{{{username}}}}:{{{{password}}}}@{}:{}/postgres?sslmode=disable",
        pg.host(),
        pg.port()
    );
    bao(
        &bao_server,
        &[
            "write",
            "database/config/pg",
            "plugin_name=postgresql-database-plugin",
            &url,
            &format!("username={}", pg.superuser()),
            &format!("password={}", pg.password()),
            "allowed_roles=reader",
            "verify_connection=true",
        ],
    )?;
    bao(
        &bao_server,
        &[
            "write",
            "database/roles/reader",
            "db_name=pg",
            "default_ttl=1h",
            "max_ttl=2h",
            "creation_statements=CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON TABLE public.orders TO \"{{name}}\";",
        ],
    )?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let config = SqlConfig::from_json(
        Engine::Postgres,
        &serde_json::json!({"hostname": pg.host(), "port": pg.port(), "sslmode": "disable"}),
    )?;
    let provisioner = PostgresProvisioner::new(config)?;
    let secret = SecretValue::new()
        .with("username", pg.superuser())
        .with("password", pg.password());
    let ctx = || ActionContext::new(secret.clone());
    let http = reqwest::Client::new();
    let token = bao_server.root_token().to_owned();
    let address = bao_server.address().to_owned();

    let mut ours = (Vec::new(), Vec::new());
    let mut anchor = (Vec::new(), Vec::new());
    for i in 0..RUNS + 3 {
        let grant = GrantSpec {
            grant_id: GrantId::new(format!("bench-{i}"))?,
            grantee: Grantee {
                id: format!("person{i}"),
                email: format!("person{i}@bench.example"),
                display_name: String::new(),
                groups: vec![],
            },
            resource: Resource {
                integration: "pg".into(),
                resource_type: "table".into(),
                id: "postgres/public/orders".into(),
                name: "orders".into(),
                tags: Default::default(),
            },
            permission: Permission::from("read-only"),
            expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
            custom_parameters: Default::default(),
        };
        let (ours_grant, ours_revoke) = runtime.block_on(async {
            let start = Instant::now();
            let granted = provisioner.grant_access(&ctx(), &grant).await?;
            let granted_in = start.elapsed();
            let start = Instant::now();
            provisioner
                .revoke_access(&ctx(), &grant, &granted.state)
                .await?;
            Ok::<_, Box<dyn std::error::Error>>((granted_in, start.elapsed()))
        })?;
        let (bao_grant, bao_revoke) = runtime.block_on(async {
            let start = Instant::now();
            let creds: serde_json::Value = http
                .get(format!("{address}/v1/database/creds/reader"))
                .header("X-Vault-Token", &token)
                .send()
                .await?
                .error_for_status()?
                .text()
                .await
                .map(|t| serde_json::from_str(&t))??;
            let granted_in = start.elapsed();
            let lease = creds["lease_id"].as_str().ok_or("no lease id")?.to_owned();
            let start = Instant::now();
            http.put(format!("{address}/v1/sys/leases/revoke"))
                .header("X-Vault-Token", &token)
                .body(serde_json::json!({ "lease_id": lease }).to_string())
                .send()
                .await?
                .error_for_status()?;
            Ok::<_, Box<dyn std::error::Error>>((granted_in, start.elapsed()))
        })?;
        if i >= 3 {
            // The first cycles warm caches on both sides.
            ours.0.push(ours_grant);
            ours.1.push(ours_revoke);
            anchor.0.push(bao_grant);
            anchor.1.push(bao_revoke);
        }
    }
    println!(
        "grant and revoke latency, {RUNS} cycles each, same PostgreSQL (loopback, no TLS), \
         taking turns"
    );
    println!("| client | grant p50 ms | grant p99 ms | revoke p50 ms | revoke p99 ms |");
    println!("|---|---|---|---|---|");
    for (name, (grants, revokes)) in [
        ("apono-provision-sql (read-only on a table)", &mut ours),
        (
            "OpenBao database engine (dynamic role, anchor)",
            &mut anchor,
        ),
    ] {
        grants.sort();
        revokes.sort();
        println!(
            "| {name} | {} | {} | {} | {} |",
            ms(percentile(grants, 50.0)),
            ms(percentile(grants, 99.0)),
            ms(percentile(revokes, 50.0)),
            ms(percentile(revokes, 99.0)),
        );
    }
    Ok(())
}
