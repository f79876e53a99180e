//! The `apono-vault` integration and the client against a real OpenBao (`bao server -dev`,
//! TLS). Every observation is made on OpenBao itself: grantees use the token they were given
//! and try the operations.

#![allow(clippy::print_stdout)]

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use apono_core::conformance::check_provisioner;
use apono_core::{ActionContext, ErrorKind, GrantState, Granted, Provisioner, SecretValue};
use apono_vault_client::policy::{GrantPolicy, MAX_SECRET_DEPTH, VaultOperation, VaultPermission};
use apono_vault_client::{AponoVaultProvisioner, OpenBaoClient, VaultError, VaultGrantState};
use common::{Harness, MOUNT, Vault, in_an_hour, spec};
use secrecy::{ExposeSecret, SecretString};

/// The grant's vault token, from the access details (the only credential handed out).
fn token_of(granted: &Granted) -> SecretString {
    granted
        .access
        .credentials
        .iter()
        .find(|c| c.name == apono_vault_client::integration::TOKEN)
        .map(|c| c.value.clone())
        .unwrap_or_else(|| SecretString::from(""))
}

/// A client using the grant's token, as the grantee would.
fn login(vault: &Vault, granted: &Granted) -> OpenBaoClient {
    vault.connection.client_with_token(token_of(granted))
}

/// Tries one matrix operation; `Ok(true)` allowed, `Ok(false)` denied by OpenBao.
async fn attempt(client: &OpenBaoClient, op: VaultOperation, tag: &str) -> Result<bool> {
    let data = SecretValue::new().with("value", format!("by-{tag}"));
    let result = match op {
        VaultOperation::List => client.kv_list(MOUNT, "matrix").await.map(|_| ()),
        VaultOperation::Create => client
            .kv_write(MOUNT, &format!("matrix/new-{tag}"), &data, Some(0))
            .await
            .map(|_| ()),
        VaultOperation::Fetch => client
            .kv_read(MOUNT, "matrix/existing", None)
            .await
            .map(|_| ()),
        VaultOperation::Update => client
            .kv_write(MOUNT, "matrix/existing", &data, None)
            .await
            .map(|_| ()),
        VaultOperation::Delete => client
            .kv_delete_all(MOUNT, &format!("matrix/victim-{tag}"))
            .await
            .map(|_| ()),
    };
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.is_permission_denied() => Ok(false),
        Err(e) => bail!("{op} gave an unexpected error: {e}"),
    }
}

/// Whether `client` can do anything at all on the mount or outside it.
async fn any_access(client: &OpenBaoClient) -> Result<bool> {
    for op in VaultOperation::ALL {
        if attempt(client, op, "after").await? {
            return Ok(true);
        }
    }
    Ok(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_matrix_holds_on_real_openbao() -> Result<()> {
    let vault = Vault::start().await?;
    let p = vault.provisioner()?;
    vault.put("matrix/existing", "v1").await?;
    vault.put("outside/other", "not granted").await?;
    // The dev server's own kv mount: a different mount is outside every grant.
    vault
        .root()
        .kv_write(
            "secret",
            "elsewhere",
            &SecretValue::new().with("k", "v"),
            None,
        )
        .await?;

    let mut table = vec![format!(
        "| permission | {} | outside mount | after revoke |",
        VaultOperation::ALL.map(|o| o.as_str()).join(" | ")
    )];
    table.push(format!("|{}", "---|".repeat(8)));
    for (n, permission) in VaultPermission::ALL.into_iter().enumerate() {
        let tag = permission.as_str().to_ascii_lowercase();
        vault.put(&format!("matrix/victim-{tag}"), "doomed").await?;
        let grant = spec(
            n,
            &format!("matrix-{tag}"),
            "management",
            MOUNT,
            permission.as_str(),
            in_an_hour(),
        );
        let granted = p.grant_access(&vault.context(), &grant).await?;
        let client = login(&vault, &granted);
        let mut cells = Vec::new();
        for op in VaultOperation::ALL {
            let allowed = attempt(&client, op, &tag).await?;
            ensure!(
                allowed == permission.allows(op),
                "{permission} {op}: OpenBao said allowed={allowed}, the matrix says {}",
                permission.allows(op)
            );
            cells.push(if allowed { "allowed" } else { "denied" });
        }
        let outside = client.kv_read("secret", "elsewhere", None).await;
        ensure!(
            outside
                .as_ref()
                .is_err_and(VaultError::is_permission_denied),
            "{permission}: a secret in another mount was readable"
        );

        p.revoke_access(&vault.context(), &grant, &granted.state)
            .await?;
        // The token obtained before revoke is dead, and the password no longer logs in.
        ensure!(
            !any_access(&client).await?,
            "{permission}: token still works after revoke"
        );
        ensure!(
            client.lookup_self().await.is_err(),
            "{permission}: token survived revoke"
        );
        let state: VaultGrantState = granted.state.decode()?;
        let root = vault.root();
        ensure!(
            state.policy == GrantPolicy::Mount(permission).name(MOUNT)?,
            "{permission}: {state:?}"
        );
        ensure!(
            root.userpass_read("userpass", &state.username)
                .await?
                .is_none()
                && vault.grant_entity(&state.username).await?.is_none(),
            "{permission}: revoke left the user or its alias and entity behind"
        );
        table.push(format!(
            "| {permission} | {} | denied | denied (token revoked; user, alias, entity deleted) |",
            cells.join(" | ")
        ));
    }
    println!(
        "\napono-vault permission matrix, observed on OpenBao {}:\n",
        vault.server.address()
    );
    for line in table {
        println!("{line}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_grant_reads_only_that_secret() -> Result<()> {
    let vault = Vault::start().await?;
    let p = vault.provisioner()?;
    vault.put("team/db", "root-pw").await?;
    vault.put("team/other", "other-pw").await?;

    let inventory = p.list_resources(&vault.context()).await?;
    let ids: Vec<_> = inventory
        .resources
        .iter()
        .map(|r| format!("{}:{}", r.resource_type, r.id))
        .collect();
    ensure!(
        ids == [
            "management:apono-store",
            "secret:team/db",
            "secret:team/other"
        ],
        "{ids:?}"
    );

    let grant = spec(
        7,
        "secret-db",
        "secret",
        "team/db",
        "ReadOnly",
        in_an_hour(),
    );
    let refused = spec(
        7,
        "secret-db-rw",
        "secret",
        "team/db",
        "ReadWrite",
        in_an_hour(),
    );
    let err = p
        .grant_access(&vault.context(), &refused)
        .await
        .unwrap_err();
    ensure!(err.kind() == ErrorKind::InvalidInput, "{err}");

    let granted = p.grant_access(&vault.context(), &grant).await?;
    // What the requester is shown, and what is stored.
    for key in ["vault_address", "username", "mount_name"] {
        ensure!(granted.access.json.contains_key(key), "missing {key}");
    }
    ensure!(granted.access.json["vault_address"] == "https://vault.example.test:8200");
    ensure!(granted.access.json["mount_name"] == MOUNT);
    // One credential, the token; no password that could log in again later.
    let names: Vec<_> = granted.access.credentials.iter().map(|c| &c.name).collect();
    ensure!(names == ["token"], "{names:?}");
    ensure!(granted.access.credentials[0].one_time);
    let token = token_of(&granted).expose_secret().to_owned();
    let stored = serde_json::to_string(&granted.state)?;
    let shown = serde_json::to_string(&granted.access)?;
    for text in [&stored, &shown, &format!("{granted:?}")] {
        ensure!(!text.contains(&token), "token leaked into {text}");
    }
    let state: VaultGrantState = granted.state.decode()?;
    ensure!(state.username.starts_with("apono-g-user7"), "{state:?}");
    // The token is the per-grant user's, on the per-grant entity (OpenBao's audit names both).
    let root = vault.root();
    let info = root.lookup_token(&token_of(&granted)).await?;
    ensure!(
        info.path == format!("auth/userpass/login/{}", state.username)
            && info.policies.contains(&state.policy)
            && state.policy == "apono-grant-secret-apono-store",
        "{info:?}"
    );
    // The alias's own entity, whose alias metadata names the grant and the secret.
    let entity = vault
        .grant_entity(&state.username)
        .await?
        .context("the grant's entity")?;
    ensure!(
        entity.aliases.len() == 1 && entity.aliases[0].name == state.username,
        "{entity:?}"
    );
    let meta = &entity.aliases[0].custom_metadata;
    ensure!(
        meta.get("apono_grant").map(String::as_str) == Some("secret-db")
            && meta.get("apono_integration").map(String::as_str) == Some(common::INTEGRATION)
            && meta.get("apono_s2_0").map(String::as_str) == Some("team")
            && meta.get("apono_s2_1").map(String::as_str) == Some("db"),
        "{meta:?}"
    );

    let client = login(&vault, &granted);
    let secret = client.kv_read(MOUNT, "team/db", None).await?;
    ensure!(secret.data.require("value")?.expose_secret() == "root-pw");
    ensure!(client.kv_versions(MOUNT, "team/db").await?.current_version == 1);
    for denied in [
        client.kv_read(MOUNT, "team/other", None).await.map(|_| ()),
        client.kv_list(MOUNT, "team").await.map(|_| ()),
        client
            .kv_write(
                MOUNT,
                "team/db",
                &SecretValue::new().with("value", "x"),
                None,
            )
            .await
            .map(|_| ()),
        client.kv_delete_all(MOUNT, "team/db").await,
    ] {
        ensure!(
            denied.is_err_and(|e| e.is_permission_denied()),
            "a secret grant allowed more"
        );
    }

    p.revoke_access(&vault.context(), &grant, &granted.state)
        .await?;
    ensure!(
        client
            .kv_read(MOUNT, "team/db", None)
            .await
            .is_err_and(|e| e.is_permission_denied())
    );
    // Revoking what is gone succeeds.
    p.revoke_access(&vault.context(), &grant, &granted.state)
        .await?;
    ensure!(
        root.userpass_read("userpass", &state.username)
            .await?
            .is_none()
    );
    ensure!(vault.grant_entity(&state.username).await?.is_none());
    // The fixed policy stays: other grants use it.
    ensure!(root.policy_read(&state.policy).await?.is_some());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_ends_access_at_expires_at_with_the_connector_idle() -> Result<()> {
    let vault = Vault::start().await?;
    let p = vault.provisioner()?;
    vault.put("team/db", "root-pw").await?;
    let expires_at = chrono::Utc::now() + chrono::Duration::seconds(6);
    let grant = spec(3, "short", "secret", "team/db", "ReadOnly", expires_at);
    let first = p.grant_access(&vault.context(), &grant).await?;
    // Granting again (a retried or extended grant) issues a new token and ends the old one.
    let granted = p.grant_access(&vault.context(), &grant).await?;
    ensure!(
        login(&vault, &first)
            .kv_read(MOUNT, "team/db", None)
            .await
            .is_err_and(|e| e.is_permission_denied()),
        "the token of the first grant call outlived the second"
    );
    let client = login(&vault, &granted);
    client.kv_read(MOUNT, "team/db", None).await?;
    let info = client.lookup_self().await?;
    ensure!(info.ttl <= 6 && info.explicit_max_ttl <= 6, "{info:?}");
    // Renewal cannot stretch it past expires_at either.
    if let Ok(renewed) = client.renew_self(Some(Duration::from_secs(3600))).await {
        ensure!(renewed.ttl.as_secs() <= 6, "{renewed:?}");
    }
    let state: VaultGrantState = granted.state.decode()?;
    drop(p); // the provisioner is gone: nothing will revoke this grant

    let wait = (expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(1500)).await;
    let after = client.kv_read(MOUNT, "team/db", None).await;
    ensure!(
        after.as_ref().is_err_and(VaultError::is_permission_denied),
        "OpenBao still served the secret after expires_at"
    );
    ensure!(
        client.lookup_self().await.is_err(),
        "the token outlived the grant"
    );
    // The per-grant user still exists (nothing revoked it), but no token of it is alive and the
    // only credential ever handed out was that token.
    let root = vault.root();
    ensure!(
        root.userpass_read("userpass", &state.username)
            .await?
            .is_some()
    );
    for accessor in root.list_accessors().await? {
        let info = root.lookup_accessor(&accessor).await?;
        ensure!(
            !info.path.ends_with(&state.username),
            "a token of the expired grant is still alive: {info:?}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_never_show_the_integration_secret() -> Result<()> {
    let vault = Vault::start().await?;
    let p = vault.provisioner()?;
    let canary = "canary-secret-id-5e1f";
    let ctx = ActionContext::new(
        SecretValue::new()
            .with("role_id", vault.role_id.expose_secret())
            .with("secret_id", canary),
    );
    let err = p.get_status(&ctx).await.unwrap_err();
    ensure!(err.kind() == ErrorKind::PermissionDenied, "{err}");
    let debugged = format!("{err:?}");
    let chain = format!("{:#} {debugged}", anyhow::Error::from(err));
    ensure!(
        !chain.contains(canary) && !chain.contains(vault.role_id.expose_secret()),
        "{chain}"
    );

    let missing = ActionContext::new(SecretValue::new().with("role_id", "x"));
    ensure!(p.get_status(&missing).await.unwrap_err().kind() == ErrorKind::Malformed);

    let report = p.get_status(&vault.context()).await?;
    ensure!(
        report.status == apono_core::IntegrationStatus::Active,
        "{report:?}"
    );

    // A wrong CA: TLS is verified.
    let other = apono_testkit::OpenBao::start_tls()?;
    let wrong = apono_vault_client::ClientSettings::new(vault.server.address())
        .ca_cert_pem(other.ca_cert_pem().context("ca")?)
        .connect()?;
    let err = wrong
        .client()
        .login_approle("approle", &vault.role_id, &vault.secret_id)
        .await
        .unwrap_err();
    ensure!(err.kind() == ErrorKind::Unavailable, "{err}");

    // Unknown config keys are errors.
    let integration: apono_core::Integration = serde_json::from_value(serde_json::json!({
        "name": "v", "type": "apono-vault",
        "config": {"vault_internal_url": vault.server.address(), "mount": MOUNT, "mounts": "x"},
        "secret_store": {"kubernetes": {"namespace": "apono-vault", "name": "apono-vault-role"}}
    }))?;
    ensure!(AponoVaultProvisioner::from_integration(&integration).is_err());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_covers_kv_tokens_and_users() -> Result<()> {
    let vault = Vault::start().await?;
    let mut client = vault.connection.client();
    let login = client
        .login_approle("approle", &vault.role_id, &vault.secret_id)
        .await?;
    ensure!(!format!("{login:?}").contains(login.token.expose_secret()));
    let renewed = client.renew_self(Some(Duration::from_secs(300))).await?;
    ensure!(
        renewed.ttl.as_secs() > 0 && renewed.ttl.as_secs() <= 300,
        "{renewed:?}"
    );
    ensure!(
        client
            .lookup_self()
            .await?
            .policies
            .contains(&"apono-connector".to_owned())
    );

    let root = vault.root();
    let data = SecretValue::new()
        .with("user", "admin")
        .with("password", "pw1");
    ensure!(root.kv_write(MOUNT, "a/b/c", &data, Some(0)).await? == 1);
    let clash = root
        .kv_write(MOUNT, "a/b/c", &data, Some(0))
        .await
        .unwrap_err();
    ensure!(clash.kind() == ErrorKind::Conflict, "{clash}");
    ensure!(root.kv_write(MOUNT, "a/b/c", &data, Some(1)).await? == 2);
    root.kv_write(MOUNT, "a/d", &data, None).await?;
    root.kv_write(MOUNT, "top", &data, None).await?;
    ensure!(root.kv_list_recursive(MOUNT, "").await? == ["a/b/c", "a/d", "top"]);
    let versions = root.kv_versions(MOUNT, "a/b/c").await?;
    ensure!(versions.current_version == 2 && versions.versions.len() == 2);
    ensure!(root.kv_read(MOUNT, "a/b/c", Some(1)).await?.version == 1);
    let read = root.kv_read(MOUNT, "a/b/c", None).await?;
    ensure!(!format!("{read:?}").contains("pw1"));
    root.kv_delete_all(MOUNT, "a/b/c").await?;
    ensure!(
        root.kv_read(MOUNT, "a/b/c", None)
            .await
            .unwrap_err()
            .is_not_found()
    );
    ensure!(
        root.kv_versions(MOUNT, "a/b/c")
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Userpass users, their tokens by accessor, and revoking them all.
    let pw = SecretString::from("correct horse battery");
    root.policy_write(
        "apono-g-t",
        "path \"apono-store/data/top\" { capabilities = [\"read\"] }",
    )
    .await?;
    root.userpass_write(
        "userpass",
        "apono-g-t",
        &pw,
        &apono_vault_client::UserpassUser {
            token_policies: vec!["apono-g-t".into()],
            token_ttl: Some(Duration::from_secs(600)),
            ..Default::default()
        },
    )
    .await?;
    let mut u1 = vault.connection.client();
    let l1 = u1.login_userpass("userpass", "apono-g-t", &pw).await?;
    let mut u2 = vault.connection.client();
    u2.login_userpass("userpass", "apono-g-t", &pw).await?;
    // A user whose name extends the other's keeps its tokens when the other's are revoked.
    root.userpass_write(
        "userpass",
        "apono-g-t2",
        &pw,
        &apono_vault_client::UserpassUser {
            token_policies: vec!["apono-g-t".into()],
            ..Default::default()
        },
    )
    .await?;
    let mut u3 = vault.connection.client();
    u3.login_userpass("userpass", "apono-g-t2", &pw).await?;
    ensure!(root.list_accessors().await?.contains(&l1.accessor));
    let info = root.lookup_accessor(&l1.accessor).await?;
    ensure!(info.path == "auth/userpass/login/apono-g-t", "{info:?}");
    ensure!(root.lookup_token(&l1.token).await?.accessor == l1.accessor);
    root.revoke_accessor(&l1.accessor).await?;
    ensure!(u1.kv_read(MOUNT, "top", None).await.is_err());
    u2.kv_read(MOUNT, "top", None).await?;
    // Revoking through the connector's own AppRole token (least privilege).
    client
        .revoke_userpass_logins("userpass", "apono-g-t")
        .await?;
    ensure!(u2.kv_read(MOUNT, "top", None).await.is_err());
    u3.kv_read(MOUNT, "top", None).await?;
    client.userpass_delete("userpass", "apono-g-t").await?;
    client.userpass_delete("userpass", "apono-g-t").await?;
    // The connector may not even delete a policy named like its users.
    ensure!(
        client
            .policy_delete("apono-g-t")
            .await
            .unwrap_err()
            .is_permission_denied()
    );
    root.policy_delete("apono-g-t").await?;
    // Entity aliases with a fresh entity each, through the connector's AppRole token.
    let accessor = client.auth_mount_accessor("userpass").await?;
    ensure!(accessor.starts_with("auth_userpass_"), "{accessor}");
    ensure!(
        client
            .auth_mount_accessor("nosuchmount")
            .await
            .unwrap_err()
            .is_not_found()
    );
    let meta = std::collections::BTreeMap::from([("apono_grant".to_owned(), "g1".to_owned())]);
    let id = client.alias_upsert("apono-g-e", &accessor, &meta).await?;
    let meta2 = std::collections::BTreeMap::from([("apono_grant".to_owned(), "g2".to_owned())]);
    ensure!(
        client.alias_upsert("apono-g-e", &accessor, &meta2).await? == id,
        "alias_upsert is not idempotent"
    );
    let entity = client
        .entity_by_alias("apono-g-e", &accessor)
        .await?
        .context("entity")?;
    ensure!(
        entity.id == id
            && entity.name.starts_with("entity_")
            && entity.aliases.len() == 1
            && entity.aliases[0].mount_accessor == accessor
            && entity.aliases[0].custom_metadata == meta2,
        "{entity:?}"
    );
    ensure!(
        client
            .entity_by_alias("apono-g-nobody", &accessor)
            .await?
            .is_none()
    );
    client.entity_delete_by_id(&id).await?;
    client.entity_delete_by_id(&id).await?;
    ensure!(
        root.entity_by_alias("apono-g-e", &accessor)
            .await?
            .is_none()
    );
    // Named entities with an alias: an administrator's tool, refused to the connector.
    ensure!(
        client
            .entity_ensure("apono-g-n", "apono-g-n", &accessor, &meta)
            .await
            .unwrap_err()
            .is_permission_denied()
    );
    let named = root
        .entity_ensure("apono-g-n", "apono-g-n", &accessor, &meta)
        .await?;
    ensure!(root.entity_read("apono-g-n").await?.map(|e| e.id) == Some(named.clone()));
    root.entity_delete("apono-g-n").await?;
    ensure!(root.entity_read("apono-g-n").await?.is_none());
    root.entity_ensure("someone", "someone", &accessor, &meta)
        .await?;
    // The connector's policy cannot touch anything not named apono-g-*.
    ensure!(
        client
            .entity_delete("someone")
            .await
            .unwrap_err()
            .is_permission_denied()
    );
    ensure!(
        client
            .policy_delete("apono-connector")
            .await
            .unwrap_err()
            .is_permission_denied()
    );
    client.revoke_self().await?;
    ensure!(client.lookup_self().await.unwrap_err().kind() == ErrorKind::PermissionDenied);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_on_real_openbao() -> Result<()> {
    let vault = Vault::start().await?;
    vault.put("team/db", "root-pw").await?;
    let harness = Harness {
        connection: vault.connection.clone(),
        root_token: SecretString::from(vault.server.root_token()),
        secret: vault.integration_secret(),
        provisioner: vault.provisioner()?,
    };
    let report = check_provisioner(&harness).await?;
    println!("conformance: {report}");
    ensure!(report.not_applicable.is_empty(), "{report}");
    Ok(())
}

/// Issue 13: whoever holds the connector's AppRole secret can reach nothing outside the mount.
/// Every attempt is made with the AppRole's own token, against a real OpenBao that also holds
/// another kv mount, a policy granting everything and an administrator's entity carrying it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_approle_cannot_reach_outside_the_mount() -> Result<()> {
    use serde_json::json;
    let vault = Vault::start().await?;
    let root = vault.root();
    let root_token = SecretString::from(vault.server.root_token().to_owned());
    vault.put("team/db", "in-mount").await?;
    let (status, _) = vault
        .raw(
            Some(&root_token),
            "POST",
            "sys/mounts/other",
            Some(json!({"type": "kv", "options": {"version": "2"}})),
        )
        .await?;
    ensure!(status == 204, "mounting other: {status}");
    root.kv_write(
        "other",
        "crown-jewels",
        &SecretValue::new().with("k", "v"),
        None,
    )
    .await?;
    let everything =
        r#"path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }"#;
    root.policy_write("everything", everything).await?;
    let (_, admin) = vault
        .raw(
            Some(&root_token),
            "POST",
            "identity/entity",
            Some(json!({"name": "admin-human", "policies": ["everything"]})),
        )
        .await?;
    let admin_id = admin["data"]["id"]
        .as_str()
        .context("entity id")?
        .to_owned();
    let accessor = vault.userpass_accessor().await?;
    let approle_accessor = root.auth_mount_accessor("approle").await?;
    let admin_policy = GrantPolicy::Mount(VaultPermission::Admin).name(MOUNT)?;

    let connector = vault.approle_client().await?;
    let token = connector.token().cloned().context("AppRole token")?;
    // Positive controls: what grants need still works with this token.
    let (status, alias) = vault
        .raw(
            Some(&token),
            "POST",
            "identity/entity-alias",
            Some(json!({"name": "apono-g-probe", "mount_accessor": accessor, "custom_metadata": {"apono_s1_0": "x"}})),
        )
        .await?;
    ensure!(status == 200, "alias: {status} {alias}");
    let probe_alias = alias["data"]["id"].as_str().context("alias id")?.to_owned();
    let (status, body) = vault
        .raw(
            Some(&token),
            "POST",
            "auth/userpass/users/apono-g-probe",
            Some(json!({"password": "pw-probe-1", "token_policies": admin_policy, "token_ttl": "60s"})),
        )
        .await?;
    ensure!(status == 204, "user with a fixed policy: {status} {body}");

    let god = json!({"policy": everything});
    let attempts: Vec<(&str, &str, String, Option<serde_json::Value>)> = vec![
        (
            "write ACL policy apono-g-x with path \"*\"",
            "PUT",
            "sys/policies/acl/apono-g-x".into(),
            Some(god.clone()),
        ),
        (
            "write it through the legacy sys/policy",
            "PUT",
            "sys/policy/apono-g-x".into(),
            Some(json!({"rules": everything})),
        ),
        (
            "overwrite a fixed grant policy",
            "PUT",
            format!("sys/policies/acl/{admin_policy}"),
            Some(god.clone()),
        ),
        (
            "delete a fixed grant policy",
            "DELETE",
            format!("sys/policies/acl/{admin_policy}"),
            None,
        ),
        (
            "read sys/policies/acl/default",
            "GET",
            "sys/policies/acl/default".into(),
            None,
        ),
        (
            "write sys/policies/acl/default",
            "PUT",
            "sys/policies/acl/default".into(),
            Some(god.clone()),
        ),
        ("read sys/mounts", "GET", "sys/mounts".into(), None),
        (
            "mount a secrets engine",
            "POST",
            "sys/mounts/evil".into(),
            Some(json!({"type": "kv"})),
        ),
        (
            "enable an auth method (sys/auth write)",
            "POST",
            "sys/auth/evil".into(),
            Some(json!({"type": "userpass"})),
        ),
        (
            "read another mount's secret",
            "GET",
            "other/data/crown-jewels".into(),
            None,
        ),
        ("list another mount", "LIST", "other/metadata".into(), None),
        (
            "read a secret of its own mount",
            "GET",
            format!("{MOUNT}/data/team/db"),
            None,
        ),
        (
            "auth/token/create with another policy",
            "POST",
            "auth/token/create".into(),
            Some(json!({"policies": ["everything"]})),
        ),
        (
            "auth/token/create with a fixed policy",
            "POST",
            "auth/token/create".into(),
            Some(json!({"policies": [admin_policy]})),
        ),
        (
            "auth/token/create-orphan",
            "POST",
            "auth/token/create-orphan".into(),
            Some(json!({"policies": ["everything"]})),
        ),
        (
            "write a token role",
            "POST",
            "auth/token/roles/evil".into(),
            Some(json!({"allowed_policies": ["everything"]})),
        ),
        (
            "widen its own AppRole role",
            "POST",
            "auth/approle/role/apono-connector".into(),
            Some(json!({"token_policies": ["everything"]})),
        ),
        (
            "write another AppRole role",
            "POST",
            "auth/approle/role/evil".into(),
            Some(json!({"token_policies": ["everything"]})),
        ),
        (
            "mint a secret id of its AppRole",
            "POST",
            "auth/approle/role/apono-connector/secret-id".into(),
            Some(json!({})),
        ),
        (
            "userpass user with another policy",
            "POST",
            "auth/userpass/users/apono-g-evil".into(),
            Some(json!({"password": "pw", "token_policies": "everything"})),
        ),
        (
            "userpass user with a fixed and another policy",
            "POST",
            "auth/userpass/users/apono-g-evil".into(),
            Some(json!({"password": "pw", "token_policies": format!("{admin_policy},everything")})),
        ),
        (
            "userpass user with policies as a list",
            "POST",
            "auth/userpass/users/apono-g-evil".into(),
            Some(json!({"password": "pw", "token_policies": [admin_policy, "everything"]})),
        ),
        (
            "userpass user with root",
            "POST",
            "auth/userpass/users/apono-g-evil".into(),
            Some(json!({"password": "pw", "token_policies": "root"})),
        ),
        (
            "userpass user through the legacy `policies`",
            "POST",
            "auth/userpass/users/apono-g-evil".into(),
            Some(json!({"password": "pw", "policies": "everything"})),
        ),
        (
            "userpass user with a periodic token",
            "POST",
            "auth/userpass/users/apono-g-evil".into(),
            Some(json!({"password": "pw", "token_policies": admin_policy, "token_period": "768h"})),
        ),
        (
            "a user's policies through users/<name>/policies",
            "POST",
            "auth/userpass/users/apono-g-probe/policies".into(),
            Some(json!({"token_policies": "everything"})),
        ),
        (
            "the same with the legacy `policies`",
            "POST",
            "auth/userpass/users/apono-g-probe/policies".into(),
            Some(json!({"policies": "everything"})),
        ),
        (
            "userpass user not named apono-g-*",
            "POST",
            "auth/userpass/users/mallory".into(),
            Some(json!({"password": "pw", "token_policies": admin_policy})),
        ),
        (
            "alias onto the administrator's entity (canonical_id)",
            "POST",
            "identity/entity-alias".into(),
            Some(
                json!({"name": "apono-g-evil", "mount_accessor": accessor, "canonical_id": admin_id}),
            ),
        ),
        (
            "re-point an alias by id",
            "POST",
            format!("identity/entity-alias/id/{probe_alias}"),
            Some(json!({"canonical_id": admin_id})),
        ),
        (
            "alias on another auth mount",
            "POST",
            "identity/entity-alias".into(),
            Some(json!({"name": "apono-g-evil", "mount_accessor": approle_accessor})),
        ),
        (
            "alias not named apono-g-*",
            "POST",
            "identity/entity-alias".into(),
            Some(json!({"name": "mallory", "mount_accessor": accessor})),
        ),
        (
            "named entity with a policy",
            "POST",
            "identity/entity/name/apono-g-evil".into(),
            Some(json!({"policies": ["everything"]})),
        ),
        (
            "entity with a policy",
            "POST",
            "identity/entity".into(),
            Some(json!({"name": "apono-g-evil", "policies": ["everything"]})),
        ),
        (
            "give an entity a policy by id",
            "POST",
            format!("identity/entity/id/{admin_id}"),
            Some(json!({"policies": ["everything"]})),
        ),
        (
            "read an entity by id",
            "GET",
            format!("identity/entity/id/{admin_id}"),
            None,
        ),
        (
            "group with a policy",
            "POST",
            "identity/group".into(),
            Some(
                json!({"name": "apono-g-evil", "policies": ["everything"], "member_entity_ids": [admin_id]}),
            ),
        ),
        (
            "merge entities",
            "POST",
            "identity/entity/merge".into(),
            Some(json!({"to_entity_id": admin_id, "from_entity_ids": [admin_id]})),
        ),
        (
            "look an entity up by id",
            "POST",
            "identity/lookup/entity".into(),
            Some(json!({"id": admin_id})),
        ),
        (
            "revoke other logins by prefix",
            "PUT",
            "sys/leases/revoke-prefix/auth/approle/login".into(),
            Some(json!({})),
        ),
        ("seal the vault", "PUT", "sys/seal".into(), None),
    ];
    let mut table = vec![
        "| attempt with only the connector's AppRole token | OpenBao |".to_owned(),
        "|---|---|".to_owned(),
    ];
    let mut allowed = Vec::new();
    for (what, method, path, body) in attempts {
        let (status, answer) = vault.raw(Some(&token), method, &path, body).await?;
        if status != 403 {
            allowed.push(format!("{what} ({method} {path}): {status} {answer}"));
        }
        table.push(format!("| {what} (`{method} {path}`) | {status} |"));
    }
    ensure!(allowed.is_empty(), "the AppRole could: {allowed:#?}");
    // What it may do, by design (each bounded as docs/vault-policy.md says), observed too.
    let (lookup, entity) = vault
        .raw(
            Some(&token),
            "POST",
            "identity/lookup/entity",
            Some(json!({"alias_name": "apono-g-probe", "alias_mount_accessor": accessor})),
        )
        .await?;
    let probe_entity = entity["data"]["id"]
        .as_str()
        .context("entity id")?
        .to_owned();
    let (sys_auth, _) = vault.raw(Some(&token), "GET", "sys/auth", None).await?;
    let (delete, _) = vault
        .raw(
            Some(&token),
            "DELETE",
            &format!("identity/entity/id/{probe_entity}"),
            None,
        )
        .await?;
    let by_design = [
        ("write user apono-g-* with one fixed grant policy", 204),
        (
            "create alias apono-g-* (fresh entity) with custom_metadata",
            200,
        ),
        ("look up the entity of an apono-g-* alias", lookup),
        ("read sys/auth (the userpass accessor)", sys_auth),
        ("delete an entity by id (revoke's cleanup)", delete),
    ];
    for (what, status) in by_design {
        ensure!((200..300).contains(&status), "{what}: {status}");
        table.push(format!("| allowed by design: {what} | {status} |"));
    }

    // Why an alias may not name its entity: had the AppRole been allowed `canonical_id` (as
    // an administrator is, here), a login it controls would carry the administrator's identity
    // policies.
    let (status, _) = vault
        .raw(
            Some(&root_token),
            "POST",
            "identity/entity-alias",
            Some(json!({"name": "apono-g-demo", "mount_accessor": accessor, "canonical_id": admin_id})),
        )
        .await?;
    ensure!(status == 200);
    let demo_password = SecretString::from("pw-demo-canonical");
    connector
        .userpass_write(
            "userpass",
            "apono-g-demo",
            &demo_password,
            &apono_vault_client::UserpassUser {
                token_policies: vec![admin_policy.clone()],
                ..Default::default()
            },
        )
        .await?;
    let mut demo = vault.connection.client();
    let demo_login = demo
        .login_userpass("userpass", "apono-g-demo", &demo_password)
        .await?;
    let (status, _) = vault
        .raw(Some(&demo_login.token), "GET", "sys/mounts", None)
        .await?;
    ensure!(
        status == 200,
        "an alias onto the administrator's entity should have carried its policies: {status}"
    );
    table.push(
        "| (had `canonical_id` been allowed: alias onto the administrator's entity, then log in) | sys/mounts readable: the hole the AppRole policy closes |"
            .to_owned(),
    );
    demo.revoke_self().await?;

    // The most the holder can build for itself: users with a fixed policy, aliases with any
    // metadata it likes. Each token it gets stays inside the mount.
    let probes: Vec<(&str, serde_json::Value, String)> = vec![
        ("fixed Admin policy", json!({}), admin_policy.clone()),
        (
            "secret policy, segments `..`, `..`, `sys`",
            json!({"apono_s3_0": "..", "apono_s3_1": "..", "apono_s3_2": "sys"}),
            GrantPolicy::Secret.name(MOUNT)?,
        ),
        (
            "secret policy, segments `..`, `other`",
            json!({"apono_s2_0": "..", "apono_s2_1": "other"}),
            GrantPolicy::Secret.name(MOUNT)?,
        ),
        (
            "secret policy, segment `*`",
            json!({"apono_s1_0": "*"}),
            GrantPolicy::Secret.name(MOUNT)?,
        ),
        (
            "secret policy, segments `+`, `db`",
            json!({"apono_s2_0": "+", "apono_s2_1": "db"}),
            GrantPolicy::Secret.name(MOUNT)?,
        ),
        (
            "secret policy, one segment `../../sys/mounts`",
            json!({"apono_s1_0": "../../sys/mounts"}),
            GrantPolicy::Secret.name(MOUNT)?,
        ),
        (
            "secret policy, one segment `{{identity.entity.id}}`",
            json!({"apono_s1_0": "{{identity.entity.id}}"}),
            GrantPolicy::Secret.name(MOUNT)?,
        ),
    ];
    let outside = [
        "sys/mounts",
        "sys/policies/acl/default",
        "other/data/crown-jewels",
        "other/metadata/crown-jewels",
        "auth/token/create",
        "identity/entity/id/x",
        "apono-store/data/../../sys/mounts",
        "apono-store/../sys/mounts",
    ];
    table.push(String::new());
    table.push("| token the holder made itself | reach |".to_owned());
    table.push("|---|---|".to_owned());
    for (n, (what, metadata, policy)) in probes.into_iter().enumerate() {
        let name = format!("apono-g-probe{n}");
        let (status, body) = vault
            .raw(
                Some(&token),
                "POST",
                "identity/entity-alias",
                Some(
                    json!({"name": name, "mount_accessor": accessor, "custom_metadata": metadata}),
                ),
            )
            .await?;
        ensure!(status == 200, "{what}: alias {status} {body}");
        let password = SecretString::from(format!("pw-{name}-x"));
        connector
            .userpass_write(
                "userpass",
                &name,
                &password,
                &apono_vault_client::UserpassUser {
                    token_policies: vec![policy],
                    token_ttl: Some(Duration::from_secs(120)),
                    ..Default::default()
                },
            )
            .await?;
        let mut evil = vault.connection.client();
        let login = evil.login_userpass("userpass", &name, &password).await?;
        // OpenBao's own verdict on each path, taken literally (no URL normalisation).
        let (status, caps) = vault
            .raw(
                Some(&login.token),
                "POST",
                "sys/capabilities-self",
                Some(json!({"paths": outside})),
            )
            .await?;
        let mut reach = Vec::new();
        for path in outside {
            let granted = if status == 200 {
                caps[path]
                    .as_array()
                    .map(|c| c.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let escapes =
                !granted.is_empty() && granted != ["deny"] && !path.starts_with("apono-store/");
            ensure!(!escapes, "{what}: {path} gives {granted:?}");
        }
        // And the requests themselves.
        for (method, path) in [
            ("GET", "sys/mounts"),
            ("GET", "sys/policies/acl/default"),
            ("GET", "other/data/crown-jewels"),
            ("POST", "auth/token/create"),
            ("GET", "apono-store/data/../../sys/mounts"),
        ] {
            let (code, answer) = vault
                .raw(Some(&login.token), method, path, Some(json!({})))
                .await?;
            ensure!(
                !(200..300).contains(&code),
                "{what}: {method} {path} answered {code} {answer}"
            );
        }
        let in_mount = vault
            .raw(Some(&login.token), "GET", "apono-store/data/team/db", None)
            .await?
            .0;
        if in_mount == 200 {
            reach.push("secrets of apono-store");
        }
        if status != 200 {
            reach.push("nothing (OpenBao refuses the template value: the token has no capability)");
        }
        if reach.is_empty() {
            reach.push("nothing outside apono-store");
        }
        table.push(format!("| {what} | {} |", reach.join("; ")));
        let _ = evil.revoke_self().await;
    }
    println!(
        "\nescalation attempts with the connector's AppRole, on OpenBao {}:\n",
        vault.server.address()
    );
    for line in table {
        println!("{line}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_grants_at_every_depth() -> Result<()> {
    let vault = Vault::start().await?;
    let p = vault.provisioner()?;
    let deepest = vec!["d"; MAX_SECRET_DEPTH].join("/");
    let paths = ["top", "team/db", "a/b/c", deepest.as_str()];
    for path in paths {
        vault.put(path, path).await?;
    }
    vault.put("team/other", "x").await?;
    for (n, path) in paths.into_iter().enumerate() {
        let grant = spec(
            n,
            &format!("depth-{n}"),
            "secret",
            path,
            "ReadOnly",
            in_an_hour(),
        );
        let granted = p.grant_access(&vault.context(), &grant).await?;
        let client = login(&vault, &granted);
        let secret = client.kv_read(MOUNT, path, None).await?;
        ensure!(secret.data.require("value")?.expose_secret() == path);
        for other in paths.iter().filter(|o| **o != path).chain([&"team/other"]) {
            ensure!(
                client
                    .kv_read(MOUNT, other, None)
                    .await
                    .is_err_and(|e| e.is_permission_denied()),
                "a grant of {path} could read {other}"
            );
        }
        p.revoke_access(&vault.context(), &grant, &granted.state)
            .await?;
        ensure!(
            client
                .kv_read(MOUNT, path, None)
                .await
                .is_err_and(|e| e.is_permission_denied())
        );
    }
    let too_deep = format!("{deepest}/e");
    let grant = spec(9, "too-deep", "secret", &too_deep, "ReadOnly", in_an_hour());
    let err = p.grant_access(&vault.context(), &grant).await.unwrap_err();
    ensure!(
        err.kind() == ErrorKind::InvalidInput && err.to_string().contains("16"),
        "{err}"
    );
    Ok(())
}

/// A grant made by an older connector (a per-grant policy, a named entity aliased to the user)
/// still revokes with the new AppRole policy: user, logins and entity go; the per-grant policy,
/// which the connector may no longer delete, stays for the operator and can be attached by no
/// user the connector makes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_of_the_per_grant_policy_era_still_revoke() -> Result<()> {
    let vault = Vault::start().await?;
    let p = vault.provisioner()?;
    vault.put("team/db", "root-pw").await?;
    let grant = spec(4, "legacy-1", "secret", "team/db", "ReadOnly", in_an_hour());
    let name = p.account_name(&grant)?;
    let root = vault.root();
    let accessor = vault.userpass_accessor().await?;
    // What the older connector left in OpenBao, made here with the root token.
    root.policy_write(
        &name,
        &format!("path \"{MOUNT}/data/team/db\" {{ capabilities = [\"read\"] }}"),
    )
    .await?;
    root.entity_ensure(&name, &name, &accessor, &Default::default())
        .await?;
    let password = SecretString::from("legacy-password-1");
    root.userpass_write(
        "userpass",
        &name,
        &password,
        &apono_vault_client::UserpassUser {
            token_policies: vec![name.clone()],
            ..Default::default()
        },
    )
    .await?;
    let mut old = vault.connection.client();
    old.login_userpass("userpass", &name, &password).await?;
    old.kv_read(MOUNT, "team/db", None).await?;
    let state = GrantState::encode(&VaultGrantState {
        username: name.clone(),
        policy: name.clone(),
        userpass_mount: "userpass".into(),
        entity: Some(name.clone()),
    })?;

    p.revoke_access(&vault.context(), &grant, &state).await?;
    ensure!(
        old.kv_read(MOUNT, "team/db", None)
            .await
            .is_err_and(|e| e.is_permission_denied()),
        "the old grant's token survived revoke"
    );
    ensure!(root.userpass_read("userpass", &name).await?.is_none());
    ensure!(root.entity_read(&name).await?.is_none());
    ensure!(vault.grant_entity(&name).await?.is_none());
    ensure!(
        root.policy_read(&name).await?.is_some(),
        "the connector deleted a policy"
    );
    // Nor can the connector attach that leftover policy to a user.
    let connector = vault.approle_client().await?;
    let err = connector
        .userpass_write(
            "userpass",
            &name,
            &password,
            &apono_vault_client::UserpassUser {
                token_policies: vec![name.clone()],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    ensure!(err.is_permission_denied(), "{err}");
    // Revoking again succeeds.
    p.revoke_access(&vault.context(), &grant, &state).await?;

    // A credential reset of such a grant moves it to the fixed policy and a fresh token.
    let grant = spec(4, "legacy-2", "secret", "team/db", "ReadOnly", in_an_hour());
    let name = p.account_name(&grant)?;
    root.policy_write(
        &name,
        &format!("path \"{MOUNT}/data/team/db\" {{ capabilities = [\"read\"] }}"),
    )
    .await?;
    root.entity_ensure(&name, &name, &accessor, &Default::default())
        .await?;
    root.userpass_write(
        "userpass",
        &name,
        &password,
        &apono_vault_client::UserpassUser {
            token_policies: vec![name.clone()],
            ..Default::default()
        },
    )
    .await?;
    let legacy = GrantState::encode(&VaultGrantState {
        username: name.clone(),
        policy: name.clone(),
        userpass_mount: "userpass".into(),
        entity: Some(name.clone()),
    })?;
    let reset = p
        .reset_credentials(&vault.context(), &grant, &legacy)
        .await?;
    let moved: VaultGrantState = reset.state.decode()?;
    ensure!(
        moved.policy == GrantPolicy::Secret.name(MOUNT)? && moved.entity.is_none(),
        "{moved:?}"
    );
    let client = login(&vault, &reset);
    client.kv_read(MOUNT, "team/db", None).await?;
    // Had the new state been lost, revoke with the old one still finds the user ours.
    p.revoke_access(&vault.context(), &grant, &legacy).await?;
    ensure!(
        client
            .kv_read(MOUNT, "team/db", None)
            .await
            .is_err_and(|e| e.is_permission_denied())
    );
    ensure!(root.userpass_read("userpass", &name).await?.is_none());
    ensure!(root.entity_read(&name).await?.is_none());
    Ok(())
}

/// An operator who did not install the fixed policies gets a clear error at grant time, not a
/// token that silently reads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_fail_clearly_without_the_fixed_policies() -> Result<()> {
    let vault = Vault::start().await?;
    let p = vault.provisioner()?;
    vault.put("team/db", "root-pw").await?;
    let secret_policy = GrantPolicy::Secret.name(MOUNT)?;
    vault.root().policy_delete(&secret_policy).await?;
    let grant = spec(
        5,
        "no-policy",
        "secret",
        "team/db",
        "ReadOnly",
        in_an_hour(),
    );
    let err = p.grant_access(&vault.context(), &grant).await.unwrap_err();
    ensure!(
        err.kind() == ErrorKind::InvalidInput && err.to_string().contains(&secret_policy),
        "{err}"
    );
    // No token of the user was left alive; revoke cleans up the rest.
    let name = p.account_name(&grant)?;
    let root = vault.root();
    for accessor in root.list_accessors().await? {
        let info = root.lookup_accessor(&accessor).await?;
        ensure!(!info.path.ends_with(&name), "a token was left: {info:?}");
    }
    // The management grants still work: their policies are there.
    let admin = spec(5, "with-policy", "management", MOUNT, "Admin", in_an_hour());
    let granted = p.grant_access(&vault.context(), &admin).await?;
    login(&vault, &granted)
        .kv_read(MOUNT, "team/db", None)
        .await?;
    p.revoke_access(&vault.context(), &admin, &granted.state)
        .await?;
    Ok(())
}
