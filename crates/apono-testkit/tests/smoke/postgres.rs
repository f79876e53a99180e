use anyhow::ensure;
use apono_testkit::Postgres;

use crate::{output_of, stdout_of};

#[test]
fn roles_and_tables_round_trip_through_psql() -> anyhow::Result<()> {
    let pg = Postgres::start()?;
    let sql = "CREATE ROLE smoke_reader LOGIN PASSWORD 'reader-pw'; \
               CREATE TABLE smoke (id int PRIMARY KEY, name text); \
               INSERT INTO smoke VALUES (1, 'apono'); \
               GRANT SELECT ON smoke TO smoke_reader;";
    stdout_of(pg.psql().args(["-c", sql]))?;
    let name = stdout_of(
        pg.psql()
            .env("PGUSER", "smoke_reader")
            .env("PGPASSWORD", "reader-pw")
            .args(["-tA", "-c", "SELECT name FROM smoke WHERE id = 1"]),
    )?;
    ensure!(name == "apono", "read back {name:?}");
    let listen = stdout_of(pg.psql().args(["-tA", "-c", "SHOW listen_addresses"]))?;
    ensure!(listen == "127.0.0.1", "listen_addresses = {listen}");
    ensure!(
        pg.url()
            == format!(
                "postgres://apono:{}@127.0.0.1:{}/postgres",
                pg.password(),
                pg.port()
            )
    );
    Ok(())
}

#[test]
fn a_wrong_password_is_refused() -> anyhow::Result<()> {
    let pg = Postgres::start()?;
    let output = output_of(
        pg.psql()
            .env("PGPASSWORD", "wrong")
            .args(["-c", "SELECT 1"]),
    )?;
    let stderr = String::from_utf8(output.stderr)?;
    ensure!(!output.status.success());
    ensure!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    Ok(())
}
