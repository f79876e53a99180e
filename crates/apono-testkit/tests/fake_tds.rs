//! `FakeSqlServer` checked by python-tds (pytds), an independent TDS client: the fake's
//! PRELOGIN, LOGIN7, batches, RPC parameters, result sets, errors and refused logins are read
//! the way a real client reads SQL Server.

mod vendor;

use apono_testkit::fakes::tds::FakeSqlServer;
use serde_json::json;

#[test]
fn python_tds_reads_the_fake_as_a_sql_server() {
    let fake = FakeSqlServer::start(
        "apono",
        "Adm1n-pass",
        &[("sales", "dbo", "orders"), ("hr", "dbo", "payroll")],
    )
    .expect("start the fake");
    vendor::run(
        "tds_sql_server.py",
        &json!({
            "port": fake.port(),
            "user": "apono",
            "password": "Adm1n-pass",
            "databases": ["hr", "sales"],
        }),
        &[],
    );
    let state = fake.state();
    let login = state
        .logins
        .get("py]tds")
        .expect("the login python-tds created");
    assert_eq!(login.password, "It's-a-Pa55word");
    assert!(!login.enabled);
    assert!(state.server_roles["apono_managed"].contains("py]tds"));
    assert!(
        state
            .failed_logins
            .iter()
            .filter(|l| *l == "py]tds")
            .count()
            >= 2
    );
}
