//! The real `apono` binary against the real `apono-connector` binary and a real PostgreSQL
//! (the test kit's): request `read-only` on a table, query it through `apono access use ID
//! --run -- -c '…'` (psql, the password in `PGPASSWORD`), and see the login refused after the
//! grant's end. Nothing is skipped: without PostgreSQL or the connector binary this fails.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use apono_e2e::Connector;
use apono_testkit::Postgres;
use common::{User, mode};

const ALICE: &str = "alice@example.com";

fn seed(pg: &Postgres) -> Result<()> {
    let mut child = pg
        .psql()
        .args(["-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    child.stdin.take().context("stdin")?.write_all(
        b"CREATE DATABASE app;\n\\c app\n\
          CREATE TABLE public.orders (id int, item text);\n\
          INSERT INTO public.orders VALUES (1, 'apple'), (2, 'pear');\n\
          CREATE TABLE public.payroll (salary int);\n",
    )?;
    ensure!(child.wait()?.success(), "seeding PostgreSQL failed");
    Ok(())
}

fn config(pg: &Postgres) -> String {
    format!(
        r#"
[connector]
id = "db-e2e"
listen = "{{listen}}"
data_dir = "{{data}}"
retry_base = "1s"
retry_max = "2s"

[[users]]
email = "{ALICE}"
groups = ["developers"]

[[integrations]]
name = "orders-db"
type = "postgresql"
connected_resource_types = ["table"]
secret_store = {{ apono = {{ parameters = {{ username = "{user}", password = "{password}" }} }} }}

[integrations.config]
hostname = "{host}"
port = {port}
sslmode = "disable"

[[access_flows]]
name = "db"
trigger = "automatic"
requestors = {{ groups = ["developers"] }}
targets = [{{ integration = "orders-db", resource_type = "table", permissions = ["read-only"] }}]
grant_duration = "8s"
"#,
        user = pg.superuser(),
        password = pg.password(),
        host = pg.host(),
        port = pg.port(),
    )
}

/// `psql` straight, as anyone holding the password would use it.
fn psql(pg: &Postgres, user: &str, password: &str, sql: &str) -> Result<std::process::Output> {
    Ok(Command::new("psql")
        .args(["-X", "-tA", "-h", pg.host(), "-p", &pg.port().to_string()])
        .args(["-U", user, "-d", "app", "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .env_remove("PGPASSFILE")
        .env_remove("PGSERVICE")
        .output()?)
}

#[test]
fn read_only_on_a_postgres_table_through_the_cli_until_it_expires() -> Result<()> {
    let pg = Postgres::start()?;
    seed(&pg)?;
    let dir = tempfile::tempdir()?;
    let (mut connector, tokens) = Connector::start(dir.path(), &config(&pg), &[ALICE])?;
    let token = tokens.first().context("a token")?;
    let alice = User::with_env(&connector.url, token)?;
    alice.wait_for_discovery(&mut connector, "orders-db", "table")?;

    let created = alice
        .run(&[
            "requests",
            "create",
            "-i",
            "postgresql/orders-db",
            "-t",
            "table",
            "-r",
            "app/public/orders",
            "-p",
            "read-only",
            "-o",
            "json",
            "--timeout",
            "60s",
        ])?
        .json()?;
    ensure!(created[0]["status"] == "Active", "{created}");
    let session_id = created[0]["session_ids"][0]
        .as_str()
        .context("a session id")?
        .to_owned();

    // The details: a psql command line and a URL without the password; the password once.
    let details = alice
        .run(&["access", "use", &session_id, "-o", "json"])?
        .json()?;
    let user = details["json"]["username"]
        .as_str()
        .context("username")?
        .to_owned();
    let cli = details["cli"].as_str().context("cli")?;
    ensure!(
        cli == format!("psql -h 127.0.0.1 -p {} -U {user} -d app", pg.port()),
        "{cli}"
    );
    let password = details["credentials"]["password"]
        .as_str()
        .with_context(|| format!("the password, shown once: {details}"))?
        .to_owned();
    ensure!(!cli.contains(&password) && !details["link"].to_string().contains(&password));
    let kept = alice.key_dir().join(format!("{session_id}.key"));
    ensure!(mode(&kept)? == 0o600, "the password is kept 0600");

    // --run: psql with the kept password in PGPASSWORD; the arguments after `--` are psql's.
    let run = alice.run(&[
        "access",
        "use",
        &session_id,
        "--run",
        "--",
        "-X",
        "-tA",
        "-c",
        "select item from public.orders order by id",
    ])?;
    ensure!(run.ok()?.trim() == "apple\npear", "{run:#?}");
    let other = alice.run(&[
        "access",
        "use",
        &session_id,
        "--run",
        "--",
        "-X",
        "-c",
        "select * from public.payroll",
    ])?;
    ensure!(
        other.code != Some(0) && other.stderr.contains("permission denied"),
        "{other:#?}"
    );
    let write = alice.run(&[
        "access",
        "use",
        &session_id,
        "--run",
        "--",
        "-X",
        "-c",
        "insert into public.orders values (3, 'x')",
    ])?;
    ensure!(
        write.code != Some(0) && write.stderr.contains("permission denied"),
        "{write:#?}"
    );

    // After the grant's end: the session is revoked, the CLI says so, and the server refuses
    // the password itself.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sessions = alice.run(&["access", "list", "-o", "json"])?.json()?;
        if sessions[0]["status"] == "Revoked" {
            break;
        }
        ensure!(Instant::now() < deadline, "not revoked: {sessions}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = alice.run(&[
        "access",
        "use",
        &session_id,
        "--run",
        "--",
        "-X",
        "-c",
        "select 1",
    ])?;
    ensure!(
        after.code != Some(0) && after.stderr.contains("access has ended"),
        "{after:#?}"
    );
    let direct = psql(&pg, &user, &password, "select item from public.orders")?;
    let stderr = String::from_utf8_lossy(&direct.stderr);
    ensure!(
        !direct.status.success()
            && (stderr.contains("password authentication failed")
                || stderr.contains("not permitted to log in")),
        "the expired password still works: {direct:?}"
    );
    let status = connector.terminate()?;
    ensure!(status.success(), "exit after SIGTERM: {status}");
    Ok(())
}
