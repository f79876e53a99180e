//! The `apono-vault` integration and the client against a real OpenBao (`bao server -dev`,
//! TLS). Every observation is made on OpenBao itself: grantees use the token they were given
//! and try the operations.

#![allow(clippy::print_stdout)]

mod common;

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use apono_core::conformance::{ProvisionerHarness, check_provisioner};
use apono_core::{
    ActionContext, BoxError, ErrorKind, GrantSpec, GrantState, Granted, Provisioner, SecretValue,
};
use apono_vault_client::policy::{VaultOperation, VaultPermission};
use apono_vault_client::{AponoVaultProvisioner, OpenBaoClient, VaultError, VaultGrantState};
use common::{MOUNT, Vault, in_an_hour, spec};
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
            root.userpass_read("userpass", &state.username)
                .await?
                .is_none()
                && root.entity_read(&state.username).await?.is_none()
                && root.policy_read(&state.policy).await?.is_none(),
            "{permission}: revoke left the user, entity or policy behind"
        );
        table.push(format!(
            "| {permission} | {} | denied | denied (token revoked; user, entity, policy deleted) |",
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
            && info.policies.contains(&state.policy),
        "{info:?}"
    );
    let entity = root
        .entity_read(&state.username)
        .await?
        .context("the grant's entity")?;
    ensure!(
        entity.aliases.len() == 1 && entity.aliases[0].name == state.username,
        "{entity:?}"
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
    ensure!(root.policy_read(&state.policy).await?.is_none());
    ensure!(root.entity_read(&state.username).await?.is_none());
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
    client.policy_delete("apono-g-t").await?;
    // Identity entities by name, through the connector's AppRole token.
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
    let id = client
        .entity_ensure("apono-g-e", "apono-g-e", &accessor, &meta)
        .await?;
    ensure!(
        client
            .entity_ensure("apono-g-e", "apono-g-e", &accessor, &meta)
            .await?
            == id,
        "entity_ensure is not idempotent"
    );
    let entity = root.entity_read("apono-g-e").await?.context("entity")?;
    ensure!(
        entity.id == id
            && entity.aliases.len() == 1
            && entity.aliases[0].mount_accessor == accessor,
        "{entity:?}"
    );
    ensure!(root.entity_list().await?.contains(&"apono-g-e".to_owned()));
    client.entity_delete("apono-g-e").await?;
    client.entity_delete("apono-g-e").await?;
    ensure!(root.entity_read("apono-g-e").await?.is_none());
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

/// The conformance harness: observations come from OpenBao (logins, reads, listings with the
/// root token).
struct Harness {
    vault: Vault,
    provisioner: AponoVaultProvisioner,
}

#[apono_core::async_trait]
impl ProvisionerHarness for Harness {
    fn provisioner(&self) -> &dyn Provisioner {
        &self.provisioner
    }

    fn context(&self) -> ActionContext {
        self.vault.context()
    }

    fn grant(&self, grantee: usize, grant_id: &str) -> GrantSpec {
        spec(
            grantee,
            grant_id,
            "secret",
            "team/db",
            "ReadOnly",
            in_an_hour(),
        )
    }

    async fn snapshot(&self) -> Result<Vec<String>, BoxError> {
        let root = self.vault.root();
        let mut lines = Vec::new();
        for user in root.userpass_list("userpass").await? {
            lines.push(format!("user {user}"));
        }
        for policy in root.policy_list().await? {
            lines.push(format!("policy {policy}"));
        }
        for entity in root.entity_list().await? {
            lines.push(format!("entity {entity}"));
        }
        for accessor in root.list_accessors().await? {
            let info = root.lookup_accessor(&accessor).await?;
            lines.push(format!("token {accessor} {}", info.path));
        }
        lines.sort();
        Ok(lines)
    }

    async fn has_access(&self, grant: &GrantSpec, granted: &Granted) -> Result<bool, BoxError> {
        let client = login(&self.vault, granted);
        match client.kv_read(MOUNT, &grant.resource.id, None).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_permission_denied() => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_out_of_band(
        &self,
        _grant: &GrantSpec,
        state: &GrantState,
    ) -> Result<(), BoxError> {
        let state: VaultGrantState = state.decode()?;
        let root = self.vault.root();
        root.userpass_delete(&state.userpass_mount, &state.username)
            .await?;
        root.policy_delete(&state.policy).await?;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_suite_passes_on_real_openbao() -> Result<()> {
    let vault = Vault::start().await?;
    vault.put("team/db", "root-pw").await?;
    let provisioner = vault.provisioner()?;
    let harness = Harness { vault, provisioner };
    let report = check_provisioner(&harness).await?;
    println!("conformance: {report}");
    ensure!(report.not_applicable.is_empty(), "{report}");
    Ok(())
}
