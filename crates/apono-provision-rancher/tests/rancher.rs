//! The Rancher provisioner against the Rancher v3 fake, observed through the fake's HTTP API.

mod common;

use std::time::Duration;

use apono_core::conformance::check_provisioner;
use apono_core::{ErrorKind, GrantState, IntegrationStatus, Provisioner, SecretValue};
use apono_provision_rancher::{RancherConfig, RancherGrantState, RancherProvisioner};
use apono_testkit::fakes::TestCa;
use common::{Harness, credential, env, kubeconfig_token, spec};

fn state_of(granted: &apono_core::Granted) -> RancherGrantState {
    granted.state.decode().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_cluster() {
    let harness = Harness {
        env: env(),
        resource_type: "cluster",
        resource_id: "c-m-prod1",
        role: "cluster-member",
    };
    let report = check_provisioner(&harness).await.unwrap();
    assert!(report.not_applicable.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_project() {
    let harness = Harness {
        env: env(),
        resource_type: "project",
        resource_id: "c-m-prod1:p-web01",
        role: "read-only",
    };
    let report = check_provisioner(&harness).await.unwrap();
    assert!(report.not_applicable.is_empty(), "{report}");
}

#[tokio::test]
async fn grant_creates_a_marked_user_with_working_one_time_credentials() {
    let env = env();
    let grant = spec(1, "g-1", "cluster", "c-m-prod1", "cluster-owner");
    let granted = env
        .provisioner
        .grant_access(&env.ctx(), &grant)
        .await
        .unwrap();
    let state = state_of(&granted);
    assert!(state.user_created);

    // The user is marked as ours and has login access only.
    let user = env.admin_get(&format!("/v3/users/{}", state.user_id)).await;
    assert_eq!(user["labels"]["apono.io/managed-by"], "apono-connector");
    let grbs = env
        .admin_get(&format!("/v3/globalrolebindings?userId={}", state.user_id))
        .await;
    assert_eq!(grbs["data"][0]["globalRoleId"], "user-base");

    // The password logs in; the kubeconfig's token works and carries the grant's role.
    let password = credential(&granted, "password");
    assert!(password.len() >= 12);
    assert!(env.login(&state.username, &password).await.is_some());
    let kubeconfig = credential(&granted, "kubeconfig");
    let token = kubeconfig_token(&kubeconfig);
    assert!(
        env.token_has_role(&token, "cluster", "c-m-prod1", "cluster-owner")
            .await
    );
    assert!(kubeconfig.contains(&format!("{}/k8s/clusters/c-m-prod1", env.fake.endpoint())));

    // The token's TTL ends at the grant's expiry (Rancher enforces it without us).
    let stored = env
        .admin_get(&format!("/v3/tokens/{}", state.token_id))
        .await;
    let expires =
        chrono::DateTime::parse_from_rfc3339(stored["expiresAt"].as_str().unwrap()).unwrap();
    let drift = (expires.with_timezone(&chrono::Utc) - grant.expires_at)
        .num_seconds()
        .abs();
    assert!(
        drift <= 2,
        "token expires {expires}, grant {}",
        grant.expires_at
    );

    // Our kubeconfig points where Rancher's own generateKubeconfig points.
    let generated = env
        .http
        .post(format!(
            "{}/v3/clusters/c-m-prod1?action=generateKubeconfig",
            env.fake.endpoint()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(generated.status().as_u16(), 200);
    let generated: serde_json::Value =
        serde_json::from_slice(&generated.bytes().await.unwrap()).unwrap();
    let server_line = |k: &str| {
        k.lines()
            .find(|l| l.contains("server:"))
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    assert_eq!(
        server_line(generated["config"].as_str().unwrap()),
        server_line(&kubeconfig)
    );

    // Access details: UI link, username; no secret in the JSON view.
    assert_eq!(
        granted.access.link.as_deref(),
        Some(format!("{}/", env.fake.endpoint()).as_str())
    );
    assert_eq!(granted.access.json["username"], state.username.as_str());
}

#[tokio::test]
async fn secrets_stay_out_of_state_debug_and_errors() {
    let env = env();
    let grant = spec(
        1,
        "g-secret",
        "project",
        "c-m-prod1:p-web01",
        "project-member",
    );
    let granted = env
        .provisioner
        .grant_access(&env.ctx(), &grant)
        .await
        .unwrap();
    let password = credential(&granted, "password");
    let token = kubeconfig_token(&credential(&granted, "kubeconfig"));
    let token_secret = token.split_once(':').unwrap().1.to_owned();
    let shown = [
        granted.state.as_json().to_string(),
        format!("{granted:?}"),
        serde_json::to_string(&granted.access).unwrap(),
        format!("{:?}", env.provisioner),
    ];
    for text in &shown {
        for secret in [&password, &token_secret, &env.fake.api_key().secret_key] {
            assert!(!text.contains(secret.as_str()), "secret leaked into {text}");
        }
    }
    // A refused key: the error names the problem, not the key.
    let wrong = SecretValue::new()
        .with("access_key", env.fake.api_key().access_key.clone())
        .with("secret_key", "wrong-secret-canary");
    let err = env
        .provisioner
        .grant_access(
            &apono_core::ActionContext::new(wrong),
            &spec(2, "g-x", "cluster", "c-m-prod1", "cluster-member"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    let chain = format!("{err} {err:?}");
    assert!(!chain.contains("wrong-secret-canary"), "{chain}");
}

#[tokio::test]
async fn revoke_removes_only_its_grant_and_is_idempotent() {
    let env = env();
    let a = spec(1, "g-a", "cluster", "c-m-prod1", "cluster-member");
    let b = spec(1, "g-b", "project", "c-m-dev42:p-dflt2", "project-owner");
    let ga = env.provisioner.grant_access(&env.ctx(), &a).await.unwrap();
    let gb = env.provisioner.grant_access(&env.ctx(), &b).await.unwrap();
    assert_eq!(state_of(&ga).user_id, state_of(&gb).user_id);
    assert!(!state_of(&gb).user_created);

    env.provisioner
        .revoke_access(&env.ctx(), &a, &ga.state)
        .await
        .unwrap();
    env.provisioner
        .revoke_access(&env.ctx(), &a, &ga.state)
        .await
        .unwrap();
    let token_a = kubeconfig_token(&credential(&ga, "kubeconfig"));
    let token_b = kubeconfig_token(&credential(&gb, "kubeconfig"));
    assert!(
        !env.token_has_role(&token_a, "cluster", "c-m-prod1", "cluster-member")
            .await
    );
    let (status, _) = env.get_as(&token_a, "/v3/users?me=true").await;
    assert_eq!(status, 401, "the revoked grant's token still authenticates");
    assert!(
        env.token_has_role(&token_b, "project", "c-m-dev42:p-dflt2", "project-owner")
            .await
    );

    // Cleanup keeps a user that still has a grant, deletes it once none remain.
    env.provisioner
        .delete_credentials(&env.ctx(), &a, &ga.state)
        .await
        .unwrap();
    let user_id = state_of(&ga).user_id;
    let (status, _) = env
        .get_as(
            &env.fake.admin_key().bearer(),
            &format!("/v3/users/{user_id}"),
        )
        .await;
    assert_eq!(status, 200);
    env.provisioner
        .revoke_access(&env.ctx(), &b, &gb.state)
        .await
        .unwrap();
    env.provisioner
        .delete_credentials(&env.ctx(), &b, &gb.state)
        .await
        .unwrap();
    let (status, _) = env
        .get_as(
            &env.fake.admin_key().bearer(),
            &format!("/v3/users/{user_id}"),
        )
        .await;
    assert_eq!(status, 404);
    env.provisioner
        .delete_credentials(&env.ctx(), &b, &gb.state)
        .await
        .unwrap();
}

#[tokio::test]
async fn rotation_sets_a_new_password_and_voids_the_old_credentials() {
    let env = env();
    let grant = spec(3, "g-rot", "cluster", "c-m-dev42", "cluster-member");
    let first = env
        .provisioner
        .grant_access(&env.ctx(), &grant)
        .await
        .unwrap();
    let rotated = env
        .provisioner
        .reset_credentials(&env.ctx(), &grant, &first.state)
        .await
        .unwrap();
    let username = state_of(&first).username;
    assert!(
        env.login(&username, &credential(&first, "password"))
            .await
            .is_none()
    );
    assert!(
        env.login(&username, &credential(&rotated, "password"))
            .await
            .is_some()
    );
    let old = kubeconfig_token(&credential(&first, "kubeconfig"));
    let new = kubeconfig_token(&credential(&rotated, "kubeconfig"));
    assert!(
        !env.token_has_role(&old, "cluster", "c-m-dev42", "cluster-member")
            .await
    );
    assert!(
        env.token_has_role(&new, "cluster", "c-m-dev42", "cluster-member")
            .await
    );
    assert!(
        env.fake
            .requests()
            .iter()
            .any(|r| r.path_and_query.ends_with("?action=setpassword"))
    );
}

#[tokio::test]
async fn users_the_connector_did_not_create_are_never_touched() {
    let env = env();
    let grant = spec(4, "g-own", "cluster", "c-m-prod1", "cluster-owner");
    let username = env.provisioner.username_for(&grant).unwrap();
    let user_id = env.fake.add_local_user(&username, "their-own-password-1");
    let before = env.state_lines().await;

    let err = env
        .provisioner
        .grant_access(&env.ctx(), &grant)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");

    // A forged state naming that user: rotation refuses, cleanup leaves it.
    let forged = GrantState::encode(&RancherGrantState {
        resource_type: "cluster".into(),
        resource_id: "c-m-prod1".into(),
        cluster_id: "c-m-prod1".into(),
        role_template_id: "cluster-owner".into(),
        user_id: user_id.clone(),
        username: username.clone(),
        user_created: true,
        binding_id: "c-m-prod1:crtb-nope1".into(),
        token_id: "token-nope1".into(),
    })
    .unwrap();
    let err = env
        .provisioner
        .reset_credentials(&env.ctx(), &grant, &forged)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    env.provisioner
        .delete_credentials(&env.ctx(), &grant, &forged)
        .await
        .unwrap();
    env.provisioner
        .revoke_access(&env.ctx(), &grant, &forged)
        .await
        .unwrap();

    assert_eq!(env.state_lines().await, before);
    assert!(env.login(&username, "their-own-password-1").await.is_some());
    assert!(
        !env.fake
            .requests()
            .iter()
            .any(|r| r.method != "GET" && r.path_and_query.contains(&user_id))
    );
}

#[tokio::test]
async fn api_key_expiry_is_reported_and_warned_about() {
    let env = env();
    let report = env.provisioner.get_status(&env.ctx()).await.unwrap();
    assert_eq!(report.status, IntegrationStatus::Active, "{report:?}");

    env.fake
        .set_api_key_expiry(Some(Duration::from_secs(90 * 86_400)));
    let report = env.provisioner.get_status(&env.ctx()).await.unwrap();
    assert_eq!(report.status, IntegrationStatus::Active, "{report:?}");
    assert!(
        report
            .checks
            .iter()
            .any(|c| c.message.starts_with("the API key expires on"))
    );

    env.fake
        .set_api_key_expiry(Some(Duration::from_secs(5 * 86_400)));
    let report = env.provisioner.get_status(&env.ctx()).await.unwrap();
    assert_eq!(report.status, IntegrationStatus::Warning, "{report:?}");
    let expiry = report
        .checks
        .iter()
        .find(|c| c.name == "API key expiry")
        .unwrap();
    assert!(
        !expiry.ok
            && (expiry.message.contains("in 4 days") || expiry.message.contains("in 5 days")),
        "{expiry:?}"
    );

    env.fake.expire_api_key();
    let report = env.provisioner.get_status(&env.ctx()).await.unwrap();
    assert_eq!(report.status, IntegrationStatus::Error, "{report:?}");
}

#[tokio::test]
async fn bad_tls_is_refused_before_any_request() {
    let env = env();
    let other_ca = TestCa::generate().unwrap();
    for config in [
        RancherConfig::new("127.0.0.1", env.fake.port()),
        RancherConfig::new("127.0.0.1", env.fake.port())
            .with_certificate_authority(other_ca.ca_pem()),
        // Right CA, wrong name: the certificate is for localhost/127.0.0.1 only.
        RancherConfig::new("127.0.0.2", env.fake.port())
            .with_certificate_authority(env.fake.ca().ca_pem()),
    ] {
        let provisioner = RancherProvisioner::new(config).unwrap();
        let err = provisioner.get_status(&env.ctx()).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    }
    assert!(env.fake.requests().is_empty(), "{:?}", env.fake.requests());
}

#[tokio::test]
async fn hostile_names_are_refused_before_any_request() {
    let env = env();
    for (resource_type, id, role) in [
        ("cluster", "local", "cluster-owner"),
        ("cluster", "c-1/../../v3/users", "cluster-owner"),
        ("cluster", "c-1?action=setpassword", "cluster-owner"),
        ("cluster", "C-M-PROD1", "cluster-owner"),
        ("cluster", "c-m-prod1", "../users"),
        ("cluster", "c-m-prod1", "cluster-owner\n"),
        ("cluster", "c-m-prod1", "Cluster Owner"),
        ("project", "c-m-prod1", "project-owner"),
        ("project", "local:p-local1", "project-owner"),
        ("project", "c-m-prod1:p-web01/x", "project-owner"),
        ("namespace", "default", "admin"),
    ] {
        let err = env
            .provisioner
            .grant_access(&env.ctx(), &spec(1, "g-hostile", resource_type, id, role))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{id} {role}: {err}");
        assert!(!err.to_string().contains('\n'), "{err}");
    }
    // Ids read back from a (tampered) state are checked too.
    let tampered = GrantState::from_json(serde_json::json!({
        "resource_type": "cluster", "resource_id": "c-m-prod1", "cluster_id": "c-m-prod1",
        "role_template_id": "cluster-owner", "user_id": "u-1/../../settings", "username": "x",
        "user_created": true, "binding_id": "c-m-prod1:crtb-1", "token_id": "token-1",
    }));
    let grant = spec(1, "g-hostile", "cluster", "c-m-prod1", "cluster-owner");
    for result in [
        env.provisioner
            .revoke_access(&env.ctx(), &grant, &tampered)
            .await,
        env.provisioner
            .delete_credentials(&env.ctx(), &grant, &tampered)
            .await,
    ] {
        assert_eq!(result.unwrap_err().kind(), ErrorKind::InvalidInput);
    }
    assert!(env.fake.requests().is_empty(), "{:?}", env.fake.requests());
}

#[tokio::test]
async fn discovery_lists_downstream_clusters_projects_and_role_templates() {
    let env = env();
    env.fake
        .add_role_template("rt-dbadmin", "Database admins", "project");
    env.fake.set_page_size(2); // forces pagination
    let inventory = env.provisioner.list_resources(&env.ctx()).await.unwrap();
    let ids: Vec<(&str, &str)> = inventory
        .resources
        .iter()
        .map(|r| (r.resource_type.as_str(), r.id.as_str()))
        .collect();
    assert_eq!(
        ids,
        [
            ("cluster", "c-m-dev42"),
            ("cluster", "c-m-prod1"),
            ("project", "c-m-dev42:p-dflt2"),
            ("project", "c-m-prod1:p-dflt1"),
            ("project", "c-m-prod1:p-web01"),
        ]
    );
    let web = inventory
        .resources
        .iter()
        .find(|r| r.id == "c-m-prod1:p-web01")
        .unwrap();
    assert_eq!(web.tags["cluster"], "prod");
    assert_eq!(web.tags["cluster_id"], "c-m-prod1");
    let perms: Vec<(&str, &str)> = inventory
        .permissions
        .iter()
        .map(|p| (p.resource_type.as_str(), p.permission.as_str()))
        .collect();
    for expected in [
        ("cluster", "cluster-owner"),
        ("cluster", "cluster-member"),
        ("project", "project-owner"),
        ("project", "project-member"),
        ("project", "read-only"),
        ("project", "rt-dbadmin"),
    ] {
        assert!(
            perms.contains(&expected),
            "{expected:?} missing from {perms:?}"
        );
    }
    assert!(
        !perms.iter().any(|(_, p)| *p == "nodes-manage"),
        "locked templates are not offered"
    );
}

#[tokio::test]
async fn grant_is_idempotent_and_refuses_wrong_context_roles() {
    let env = env();
    let grant = spec(
        5,
        "g-idem",
        "project",
        "c-m-prod1:p-dflt1",
        "project-member",
    );
    let first = env
        .provisioner
        .grant_access(&env.ctx(), &grant)
        .await
        .unwrap();
    let after_first = env.state_lines().await;
    let again = env
        .provisioner
        .grant_access(&env.ctx(), &grant)
        .await
        .unwrap();
    assert_eq!(state_of(&first).binding_id, state_of(&again).binding_id);
    // Same objects; only the grant's token was replaced.
    let strip = |lines: Vec<String>| {
        lines
            .into_iter()
            .filter(|l| !l.starts_with("token"))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(env.state_lines().await), strip(after_first));
    let tokens = env.admin_list("tokens").await;
    assert_eq!(
        tokens
            .iter()
            .filter(|t| t["description"] == "apono-grant:g-idem")
            .count(),
        1
    );
    let err = env
        .provisioner
        .grant_access(
            &env.ctx(),
            &spec(5, "g-ctx", "cluster", "c-m-prod1", "project-member"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    let err = env
        .provisioner
        .grant_access(
            &env.ctx(),
            &spec(5, "g-missing", "cluster", "c-m-nope9", "cluster-member"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test]
async fn the_fake_accepts_basic_auth_and_answers_rancher_shapes() {
    let env = env();
    let key = env.fake.admin_key();
    let r = env
        .http
        .get(format!("{}/v3/clusters", env.fake.endpoint()))
        .basic_auth(&key.access_key, Some(&key.secret_key))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(body["type"], "collection");
    assert_eq!(body["data"][0]["type"], "cluster");
    assert!(body["data"][0]["actions"]["generateKubeconfig"].is_string());
    let (status, err) = env.get_as("token-nope:nope", "/v3/users").await;
    assert_eq!(status, 401);
    // Rancher's authentication filter answers before Norman, in its own shape.
    assert_eq!(err["type"], "error");
    assert_eq!(err["status"], "401");
    assert_eq!(err["message"], "Unauthorized 401: must authenticate");
    let (status, err) = env.get_as(&key.bearer(), "/v3/users/u-nope").await;
    assert_eq!(status, 404);
    assert_eq!(err["code"], "NotFound");
    assert_eq!(err["status"], 404);
}
