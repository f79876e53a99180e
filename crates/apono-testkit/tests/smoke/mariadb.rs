use anyhow::ensure;
use apono_testkit::MariaDb;

use crate::{output_of, stdout_of};

#[test]
fn users_and_databases_round_trip_through_the_client() -> anyhow::Result<()> {
    let db = MariaDb::start()?;
    let sql = "CREATE USER 'smoke'@'%' IDENTIFIED BY 'smoke-pw'; \
               CREATE DATABASE smoke_db; \
               GRANT ALL PRIVILEGES ON smoke_db.* TO 'smoke'@'%';";
    stdout_of(db.client().args(["--batch", "--execute", sql]))?;
    let query = "CREATE TABLE smoke_db.t (id INT PRIMARY KEY, name TEXT); \
                 INSERT INTO smoke_db.t VALUES (1, 'apono'); \
                 SELECT name FROM smoke_db.t WHERE id = 1;";
    let name = stdout_of(
        db.client()
            .args(["--user", "smoke"])
            .env("MYSQL_PWD", "smoke-pw")
            .args(["--batch", "--skip-column-names", "--execute", query]),
    )?;
    ensure!(name == "apono", "read back {name:?}");
    let users = stdout_of(db.client().args([
        "--batch",
        "--skip-column-names",
        "--execute",
        "SELECT CONCAT(user, '@', host) FROM mysql.user WHERE user = 'smoke'",
    ]))?;
    ensure!(users == "smoke@%", "{users}");
    ensure!(db.url() == format!("mysql://apono:{}@127.0.0.1:{}/", db.password(), db.port()));
    Ok(())
}

#[test]
fn a_wrong_password_is_refused() -> anyhow::Result<()> {
    let db = MariaDb::start()?;
    let output = output_of(
        db.client()
            .env("MYSQL_PWD", "wrong")
            .args(["--execute", "SELECT 1"]),
    )?;
    let stderr = String::from_utf8(output.stderr)?;
    ensure!(!output.status.success());
    ensure!(stderr.contains("Access denied"), "{stderr}");
    Ok(())
}
