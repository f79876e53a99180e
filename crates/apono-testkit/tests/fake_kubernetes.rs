//! `FakeKubernetes` checked by the official Python client (`kubernetes`).

mod vendor;

use apono_testkit::fakes::{FakeKubernetes, KubernetesAccess};
use serde_json::json;

#[test]
fn the_python_kubernetes_client_agrees_with_the_fake() {
    let fake = FakeKubernetes::start().expect("start the fake");
    fake.add_token("sa-token");
    fake.put_secret(
        "apono",
        "db-admin",
        &[("apono-connector-read", "true")],
        [("username", "admin"), ("password", "hunter2")],
    );
    fake.put_secret("apono", "locked", &[], [("k", "v")]);
    fake.set_access("apono", "locked", KubernetesAccess::Denied);
    fake.put_secret("apono", "busy", &[], [("k", "v")]);
    fake.set_access("apono", "busy", KubernetesAccess::Throttled);

    vendor::run(
        "kubernetes_api.py",
        &json!({
            "url": fake.url(),
            "token": "sa-token",
            "namespace": "apono",
            "name": "db-admin",
            "labels": {"apono-connector-read": "true"},
            "data": {"username": "admin", "password": "hunter2"},
            "denied": "locked",
            "throttled": "busy",
        }),
        &[],
    );
    let requests = fake.requests();
    let read = requests
        .iter()
        .find(|r| r.path_and_query == "/api/v1/namespaces/apono/secrets/db-admin")
        .expect("the client read the secret");
    assert_eq!(read.header("authorization"), Some("Bearer sa-token"));
}
