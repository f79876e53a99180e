//! `FakeGcpSecretManager` checked by Google's own clients (google-auth and
//! google-cloud-secret-manager with the REST transport).

mod vendor;

use apono_testkit::fakes::{FakeGcpSecretManager, GcpAccess};
use serde_json::json;

#[test]
fn google_clients_agree_with_the_fake() {
    let fake = FakeGcpSecretManager::start().expect("start the fake");
    let stranger = FakeGcpSecretManager::start().expect("start a second fake for its key");
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.json");
    let other_key_file = dir.path().join("other.json");
    let key = fake.service_account_key();
    std::fs::write(
        &key_file,
        key.key_file_json("fake-project", &fake.token_uri()),
    )
    .unwrap();
    std::fs::write(
        &other_key_file,
        stranger
            .service_account_key()
            .key_file_json("fake-project", &fake.token_uri()),
    )
    .unwrap();

    fake.add_secret_version("fake-project", "db-admin", r#"{"username":"old"}"#);
    fake.add_secret_version("fake-project", "db-admin", r#"{"username":"admin"}"#);
    fake.add_secret_version("fake-project", "locked", "x");
    fake.set_access("fake-project", "locked", GcpAccess::Denied);

    vendor::run(
        "gcp_secret_manager.py",
        &json!({
            "endpoint": fake.endpoint(),
            "key_file": key_file,
            "other_key_file": other_key_file,
            "project": "fake-project",
            "secret": "db-admin",
            "value": r#"{"username":"admin"}"#,
            "first_value": r#"{"username":"old"}"#,
            "missing": "nope",
            "denied": "locked",
        }),
        &[],
    );

    // The vendor client really went through the token endpoint and the access path.
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "POST" && r.path_and_query == "/token"),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.path_and_query
            == "/v1/projects/fake-project/secrets/db-admin/versions/latest:access"),
        "{requests:?}"
    );
}

#[test]
fn metadata_server_requires_the_flavor_header() {
    let fake = FakeGcpSecretManager::start().unwrap();
    let url = format!(
        "{}/computeMetadata/v1/instance/service-accounts/default/token",
        fake.metadata_endpoint()
    );
    vendor::run("gcp_metadata.py", &json!({ "url": url }), &[]);
}
