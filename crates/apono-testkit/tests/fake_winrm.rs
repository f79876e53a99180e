//! `FakeWinrm` checked by pywinrm, an independent WinRM client, over plain HTTP and over HTTPS
//! verified against the fake's test CA.

mod vendor;

use apono_testkit::fakes::winrm::{FakeWindowsKind, FakeWinrm, FakeWinrmTls, ScriptBehaviour};
use serde_json::json;

const SCRIPT: &str = "$p = $input | Select-Object -First 1 # stand-in for a fixed script";

fn check(tls: FakeWinrmTls) {
    let fake = FakeWinrm::start(
        FakeWindowsKind::Server {
            computer: "WIN-FAKE01".into(),
        },
        tls,
    )
    .expect("start the fake");
    fake.add_admin("apono", "S3cret!pass", true);
    fake.recognise(ScriptBehaviour::Status, SCRIPT);
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    if let Some(pem) = fake.ca_pem() {
        std::fs::write(&ca, pem).unwrap();
    }
    vendor::run(
        "winrm_ws_management.py",
        &json!({
            "endpoint": fake.endpoint(),
            "ca": ca,
            "user": "apono",
            "password": "S3cret!pass",
            "hostname": "WIN-FAKE01",
            "script": SCRIPT,
        }),
        &[],
    );
    assert_eq!(
        fake.open_shells(),
        0,
        "pywinrm closed every shell it opened"
    );
    let sent_stdin = fake
        .commands()
        .iter()
        .any(|c| c.stdin.ends_with(b"\r\n") && !c.stdin.is_empty());
    assert!(sent_stdin, "the Send request reached the command");
}

#[test]
fn pywinrm_agrees_with_the_fake_over_http() {
    check(FakeWinrmTls::None);
}

#[test]
fn pywinrm_agrees_with_the_fake_over_https() {
    check(FakeWinrmTls::TestCa);
}
