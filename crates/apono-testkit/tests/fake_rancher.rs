//! `FakeRancher` checked by Rancher's own schema-driven Python client
//! (`rancher-client-python-3p`, module `rancher`), over TLS verified against the fake's test CA:
//! the client discovers every method from `/v3` and `/v3/schemas`, then drives the v3 calls a
//! just-in-time grant makes, and the fake's own state must show exactly those changes.

mod vendor;

use std::collections::BTreeMap;

use apono_testkit::fakes::rancher::{FakeRancher, RancherBinding, RancherBindingKind, RancherUser};
use serde_json::{Value, json};

const USERNAME: &str = "jit-alice-7f3k";
const PASSWORD: &str = "first-Passw0rd-long-enough";
const NEW_PASSWORD: &str = "second-Passw0rd-long-enough";
const CLUSTER: &str = "c-m-prod1";
const PROJECT: &str = "c-m-prod1:p-web01";

fn text_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn the_rancher_python_client_agrees_with_the_fake() {
    let fake = FakeRancher::start().expect("start the fake");
    let users_before = fake.users();
    let bindings_before = fake.bindings();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, fake.ca().ca_pem()).unwrap();
    let ca = ca.to_str().unwrap();
    let key = fake.api_key();
    let url = format!("{}/v3", fake.endpoint());
    let envs = [("REQUESTS_CA_BUNDLE", ca), ("NO_PROXY", "127.0.0.1")];
    let common = json!({
        "url": url,
        "ca": ca,
        "token": key.bearer(),
        "access_key": key.access_key,
    });
    let with = |extra: Value| {
        let mut args = common.clone();
        args.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        args
    };

    // Phase 1: discovery, then a user and its three bindings.
    let out = vendor::run(
        "rancher_v3_api.py",
        &with(json!({
            "phase": "create",
            "clusters": ["c-m-dev42", CLUSTER, "local"],
            "cluster": CLUSTER,
            "cluster_name": "prod",
            "projects": ["c-m-dev42:p-dflt2", "c-m-prod1:p-dflt1", PROJECT, "local:p-local1"],
            "cluster_projects": ["c-m-prod1:p-dflt1", PROJECT],
            "project": PROJECT,
            "cluster_role": "cluster-member",
            "project_role": "project-member",
            "locked_roles": ["nodes-manage"],
            "username": USERNAME,
            "name": "Alice (JIT)",
            "description": "jit access for alice",
            "password": PASSWORD,
            "new_password": NEW_PASSWORD,
            "labels": {"apono.io/managed-by": "apono-connector"},
            "annotations": {"apono.io/grantee": "alice@corp.example"},
            "binding_annotations": {"apono.io/grant-id": "g-1"},
        })),
        &envs,
    );
    let created: Value = out
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("the script printed no ids: {out}"));
    let id = |k: &str| created[k].as_str().unwrap().to_owned();
    let user_id = id("user");

    let mut users_expected = users_before.clone();
    users_expected.push(RancherUser {
        id: user_id.clone(),
        username: USERNAME.into(),
        name: "Alice (JIT)".into(),
        description: "jit access for alice".into(),
        enabled: true,
        must_change_password: false,
        labels: text_map(&[("apono.io/managed-by", "apono-connector")]),
        annotations: text_map(&[("apono.io/grantee", "alice@corp.example")]),
    });
    let mut users_now = fake.users();
    users_expected.sort();
    users_now.sort();
    assert_eq!(users_now, users_expected, "exactly one user was added");
    assert!(
        fake.password_is(&user_id, NEW_PASSWORD),
        "setpassword reached the fake"
    );

    let grant = text_map(&[("apono.io/grant-id", "g-1")]);
    let mut bindings_expected = bindings_before.clone();
    bindings_expected.extend([
        RancherBinding {
            kind: RancherBindingKind::Global,
            id: id("grb"),
            scope: "user-base".into(),
            role: "user-base".into(),
            user_id: user_id.clone(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        },
        RancherBinding {
            kind: RancherBindingKind::Cluster,
            id: id("crtb"),
            scope: CLUSTER.into(),
            role: "cluster-member".into(),
            user_id: user_id.clone(),
            labels: BTreeMap::new(),
            annotations: grant.clone(),
        },
        RancherBinding {
            kind: RancherBindingKind::Project,
            id: id("prtb"),
            scope: PROJECT.into(),
            role: "project-member".into(),
            user_id: user_id.clone(),
            labels: BTreeMap::new(),
            annotations: grant,
        },
    ]);
    bindings_expected.sort();
    assert_eq!(
        fake.bindings(),
        bindings_expected,
        "exactly three bindings were added"
    );

    // Phase 2: the bindings and the user deleted through the client; a wrong token refused.
    let requests_before = fake.requests().len();
    vendor::run(
        "rancher_v3_api.py",
        &with(json!({
            "phase": "delete",
            "user": user_id,
            "grb": id("grb"),
            "crtb": id("crtb"),
            "prtb": id("prtb"),
        })),
        &envs,
    );
    let mut users_now = fake.users();
    users_now.sort();
    let mut users_before = users_before;
    users_before.sort();
    assert_eq!(users_now, users_before, "the user is gone, nothing else");
    assert_eq!(
        fake.bindings(),
        bindings_before,
        "the bindings are gone, nothing else"
    );

    let requests = fake.requests();
    let deletes: Vec<&str> = requests[requests_before..]
        .iter()
        .filter(|r| r.method == "DELETE")
        .map(|r| r.path_and_query.as_str())
        .collect();
    let grb_path = format!("/v3/globalrolebindings/{}", id("grb"));
    let crtb_path = format!("/v3/clusterroletemplatebindings/{}", id("crtb"));
    let prtb_path = format!("/v3/projectroletemplatebindings/{}", id("prtb"));
    let user_path = format!("/v3/users/{user_id}");
    assert_eq!(
        deletes,
        [
            crtb_path.as_str(),
            &prtb_path,
            &grb_path,
            &user_path,
            &user_path
        ],
        "the client deleted through each object's links.self (the user twice: the second is the 404 check)"
    );
    // Discovery went through /v3 and the X-Api-Schemas header, with the API key as bearer.
    let first = &requests[0];
    assert_eq!(first.path_and_query, "/v3", "{requests:?}");
    assert_eq!(requests[1].path_and_query, "/v3/schemas", "{requests:?}");
    assert_eq!(
        first.header("authorization"),
        Some(format!("Bearer {}", key.bearer()).as_str())
    );
    let refused = requests
        .iter()
        .rev()
        .find(|r| {
            r.header("authorization")
                .is_some_and(|h| h.ends_with(":wrong"))
        })
        .expect("the wrong token was sent");
    assert_eq!(refused.path_and_query, "/v3");
}
