//! `FakeAzureKeyVault` checked by Microsoft's own clients (azure-identity and
//! azure-keyvault-secrets), over TLS verified against the fake's test CA.

mod vendor;

use apono_testkit::fakes::{AzureAccess, FakeAzureKeyVault};
use serde_json::json;

const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

#[test]
fn azure_clients_agree_with_the_fake() {
    let fake = FakeAzureKeyVault::start(TENANT).expect("start the fake");
    fake.add_client("app-id", "app-secret");
    fake.add_federated_client("wi-app-id", "federated.jwt.token");
    let first = fake.set_secret("db-admin", r#"{"username":"old"}"#);
    fake.set_secret("db-admin", r#"{"username":"admin"}"#);
    fake.set_secret("locked", "{}");
    fake.set_access("locked", AzureAccess::Denied);

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, fake.ca().ca_pem()).unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "federated.jwt.token").unwrap();

    vendor::run(
        "azure_key_vault.py",
        &json!({
            "endpoint": fake.endpoint(),
            "tenant": TENANT,
            "client_id": "app-id",
            "client_secret": "app-secret",
            "federated_client_id": "wi-app-id",
            "federated_token_file": token_file,
            "secret": "db-admin",
            "value": r#"{"username":"admin"}"#,
            "first_version": first,
            "first_value": r#"{"username":"old"}"#,
            "missing": "nope",
            "denied": "locked",
        }),
        &[
            ("REQUESTS_CA_BUNDLE", ca.to_str().unwrap()),
            ("AZURE_POD_IDENTITY_AUTHORITY_HOST", &fake.endpoint()),
        ],
    );

    let requests = fake.requests();
    // The SDK's first request carried no token and got the challenge.
    let first_get = requests
        .iter()
        .find(|r| r.path_and_query.starts_with("/secrets/db-admin"))
        .expect("the SDK read the secret");
    assert_eq!(first_get.header("authorization"), None, "{first_get:?}");
    assert!(
        requests
            .iter()
            .any(|r| r.path_and_query == format!("/{TENANT}/oauth2/v2.0/token")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r
            .path_and_query
            .starts_with("/metadata/identity/oauth2/token")),
        "managed identity did not use IMDS: {requests:?}"
    );
}
