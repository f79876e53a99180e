//! `init::initialize` (what `apono-connector vault-init` runs) against a real OpenBao with Raft
//! storage (`bao server -config`, not dev mode), keeping its secrets in the testkit's Kubernetes
//! API fake: a fresh vault is initialised, a re-run changes nothing, a restarted (sealed) vault
//! is unsealed and never re-initialised, and the `apono-vault` integration then passes its
//! conformance suite with the AppRole secret that vault-init wrote.
#![cfg(feature = "kubernetes")]
#![allow(clippy::print_stdout)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use apono_core::SecretValue;
use apono_core::conformance::check_provisioner;
use apono_testkit::OpenBaoRaft;
use apono_testkit::fakes::{FakeKubernetes, KubernetesAccess};
use apono_vault_client::init::{
    InitKeys, InitOptions, KEYS_SECRET, KeyCustody, KubernetesSecrets, ROLE_SECRET, initialize,
};
use apono_vault_client::{
    AponoVaultConfig, AponoVaultProvisioner, ClientSettings, OpenBaoConnection,
};
use common::{Harness, INTEGRATION, MOUNT};
use secrecy::{ExposeSecret, SecretString};

const NAMESPACE: &str = "apono-vault";
const TOKEN: &str = "init-job-token";

fn options() -> InitOptions {
    InitOptions {
        wait: Duration::from_secs(60),
        ..InitOptions::default()
    }
}

struct Setup {
    bao: OpenBaoRaft,
    kube: FakeKubernetes,
    secrets: KubernetesSecrets,
    connection: OpenBaoConnection,
}

fn setup() -> Result<Setup> {
    let bao = OpenBaoRaft::start().context("OpenBao (Raft) must start for this test")?;
    let kube = FakeKubernetes::start()?;
    kube.add_token(TOKEN);
    let secrets = KubernetesSecrets::with_token(&kube.url(), SecretString::from(TOKEN), NAMESPACE)?;
    let connection = ClientSettings::new(bao.address()).connect()?;
    Ok(Setup {
        bao,
        kube,
        secrets,
        connection,
    })
}

/// `bao status`: (initialised, sealed, storage type), as OpenBao's own CLI reports it.
fn bao_status(bao: &OpenBaoRaft) -> Result<(bool, bool, String)> {
    let output = bao.cli().args(["status", "-format=json"]).output()?;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("bao status: {}", String::from_utf8_lossy(&output.stderr)))?;
    Ok((
        json["initialized"] == true,
        json["sealed"] == true,
        json["storage_type"].as_str().unwrap_or_default().to_owned(),
    ))
}

fn text(data: &BTreeMap<String, Vec<u8>>, key: &str) -> String {
    String::from_utf8_lossy(data.get(key).map(Vec::as_slice).unwrap_or_default()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_rerun_restart_then_the_integration_passes_conformance() -> Result<()> {
    let mut s = setup()?;
    ensure!(bao_status(&s.bao)? == (false, true, "raft".to_owned()));

    // 1. A fresh vault: initialised, unsealed, configured, both secrets written.
    let first = initialize(&s.connection, &options(), &s.secrets).await?;
    ensure!(
        first.initialised && first.unsealed && first.role_secret_written,
        "{first:?}"
    );
    ensure!(
        first.keys.is_none(),
        "custody is the secret: nothing to print"
    );
    ensure!(bao_status(&s.bao)? == (true, false, "raft".to_owned()));
    let (key_labels, keys) = s
        .kube
        .secret(NAMESPACE, KEYS_SECRET)
        .context("keys secret")?;
    ensure!(text(&keys, "status") == "initialised");
    ensure!(!text(&keys, "unseal_key_0").is_empty() && !text(&keys, "root_token").is_empty());
    ensure!(
        !key_labels.contains_key("apono-connector-read"),
        "the connector must not be able to read the root token: {key_labels:?}"
    );
    let (role_labels, role) = s
        .kube
        .secret(NAMESPACE, ROLE_SECRET)
        .context("role secret")?;
    ensure!(role_labels.get("apono-connector-read").map(String::as_str) == Some("true"));
    ensure!(role.keys().map(String::as_str).collect::<Vec<_>>() == ["role_id", "secret_id"]);
    // The placeholder was created before init, then replaced by the keys, before the role
    // secret was written.
    let writes: Vec<(String, String)> = s
        .kube
        .requests()
        .into_iter()
        .filter(|r| r.method == "POST" || r.method == "PUT")
        .map(|r| (format!("{} {}", r.method, r.path_and_query), r.body))
        .collect();
    ensure!(
        writes.len() == 3,
        "{:?}",
        writes.iter().map(|w| &w.0).collect::<Vec<_>>()
    );
    ensure!(
        writes[0]
            .0
            .starts_with("POST /api/v1/namespaces/apono-vault/secrets")
    );
    // base64("placeholder")
    ensure!(writes[0].1.contains("cGxhY2Vob2xkZXI="), "{}", writes[0].0);
    ensure!(
        writes[1]
            .0
            .starts_with("PUT /api/v1/namespaces/apono-vault/secrets/apono-vault-keys")
    );
    ensure!(writes[2].1.contains("\"apono-vault-role\""));

    // 2. A re-run on a running vault changes nothing.
    let second = initialize(&s.connection, &options(), &s.secrets).await?;
    ensure!(
        !second.initialised && !second.unsealed && !second.role_secret_written,
        "{second:?}"
    );
    ensure!(s.kube.secret(NAMESPACE, ROLE_SECRET).context("role")?.1 == role);
    ensure!(s.kube.secret(NAMESPACE, KEYS_SECRET).context("keys")?.1 == keys);

    // 3. A restart seals the vault; vault-init unseals it with the stored keys, never
    // initialising it again (the same root token still works, the data is there).
    s.bao.restart()?;
    ensure!(bao_status(&s.bao)? == (true, true, "raft".to_owned()));
    let third = initialize(&s.connection, &options(), &s.secrets).await?;
    ensure!(
        !third.initialised && third.unsealed && !third.role_secret_written,
        "{third:?}"
    );
    ensure!(bao_status(&s.bao)? == (true, false, "raft".to_owned()));
    ensure!(s.kube.secret(NAMESPACE, KEYS_SECRET).context("keys")?.1 == keys);

    // 4. The integration, with the secret vault-init wrote, passes its conformance suite.
    let root_token = SecretString::from(text(&keys, "root_token"));
    let root = s.connection.client_with_token(root_token.clone());
    root.kv_write(
        MOUNT,
        "team/db",
        &SecretValue::new().with("value", "root-pw"),
        None,
    )
    .await?;
    let harness = Harness {
        connection: s.connection.clone(),
        root_token,
        secret: SecretValue::new()
            .with("role_id", text(&role, "role_id"))
            .with("secret_id", text(&role, "secret_id")),
        provisioner: AponoVaultProvisioner::new(
            INTEGRATION,
            AponoVaultConfig::new(s.bao.address()),
        )?,
    };
    let report = check_provisioner(&harness).await?;
    println!("conformance on the vault-init vault: {report}");
    ensure!(report.not_applicable.is_empty(), "{report}");

    // 5. A secret id revoked behind its back is replaced at the next run.
    let status = s
        .bao
        .cli()
        .env("BAO_TOKEN", root.token().context("root")?.expose_secret())
        .args([
            "write",
            "-f",
            "auth/approle/role/apono-connector/secret-id/destroy",
        ])
        .arg(format!("secret_id={}", text(&role, "secret_id")))
        .output()?;
    ensure!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let fourth = initialize(&s.connection, &options(), &s.secrets).await?;
    ensure!(fourth.role_secret_written, "{fourth:?}");
    let renewed = s.kube.secret(NAMESPACE, ROLE_SECRET).context("role")?.1;
    ensure!(text(&renewed, "role_id") == text(&role, "role_id"));
    ensure!(text(&renewed, "secret_id") != text(&role, "secret_id"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_once_custody_stores_no_key_and_needs_them_back() -> Result<()> {
    let mut s = setup()?;
    let print = InitOptions {
        custody: KeyCustody::PrintOnce,
        ..options()
    };
    let first = initialize(&s.connection, &print, &s.secrets).await?;
    let keys = first.keys.clone().context("the keys, to print once")?;
    ensure!(
        s.kube.secret(NAMESPACE, KEYS_SECRET).is_none(),
        "nothing stored"
    );
    ensure!(s.kube.secret(NAMESPACE, ROLE_SECRET).is_some());
    // Nothing secret in Debug.
    ensure!(!format!("{first:?}").contains(keys.root_token.expose_secret()));

    s.bao.restart()?;
    let err = initialize(&s.connection, &print, &s.secrets)
        .await
        .unwrap_err();
    ensure!(err.to_string().contains("sealed"), "{err}");
    ensure!(bao_status(&s.bao)?.1, "still sealed, never re-initialised");
    let with_keys = InitOptions {
        keys: Some(InitKeys::from_json(keys.to_json().expose_secret())?),
        ..print
    };
    let again = initialize(&s.connection, &with_keys, &s.secrets).await?;
    ensure!(
        !again.initialised && again.unsealed && again.keys.is_none(),
        "{again:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_permission_for_the_keys_secret_fails_before_initialising() -> Result<()> {
    let s = setup()?;
    s.kube
        .set_access(NAMESPACE, KEYS_SECRET, KubernetesAccess::Denied);
    let err = initialize(&s.connection, &options(), &s.secrets)
        .await
        .unwrap_err();
    let chain = apono_core::error_chain(&err);
    ensure!(
        chain.contains(KEYS_SECRET) && chain.contains("403"),
        "{chain}"
    );
    ensure!(
        !bao_status(&s.bao)?.0,
        "the vault must stay uninitialised when its keys could not be kept"
    );
    Ok(())
}

/// The watcher beside OpenBao: never initialises or writes, only unseals after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unseal_only_never_initialises_and_unseals_after_a_restart() -> Result<()> {
    let mut s = setup()?;
    let watcher = InitOptions {
        unseal_only: true,
        ..options()
    };
    let idle = initialize(&s.connection, &watcher, &s.secrets).await?;
    ensure!(!idle.initialised && !idle.unsealed, "{idle:?}");
    ensure!(bao_status(&s.bao)? == (false, true, "raft".to_owned()));
    ensure!(s.kube.requests().is_empty(), "nothing read or written");

    initialize(&s.connection, &options(), &s.secrets).await?;
    s.bao.restart()?;
    let writes_before = s
        .kube
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .count();
    let woke = initialize(&s.connection, &watcher, &s.secrets).await?;
    ensure!(woke.unsealed && !woke.role_secret_written, "{woke:?}");
    ensure!(bao_status(&s.bao)? == (true, false, "raft".to_owned()));
    let writes_after = s
        .kube
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .count();
    ensure!(
        writes_before == writes_after,
        "unseal-only wrote to Kubernetes"
    );
    Ok(())
}
