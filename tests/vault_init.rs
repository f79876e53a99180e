//! `apono-connector vault-init` as the `apono-vault` chart's init Job runs it: the real binary,
//! a real OpenBao with Raft storage, and the Kubernetes API fake reached through a kubeconfig
//! (`KUBECONFIG`), as `kubectl` would reach it. The library's own tests
//! (`crates/apono-vault-client/tests/vault_init.rs`) cover every step; this one proves the
//! subcommand's wiring, its report and the print-once custody with `--keys-file`.

use std::process::Command;

use anyhow::{Context, Result, ensure};
use apono_e2e::connector_bin;
use apono_testkit::OpenBaoRaft;
use apono_testkit::fakes::FakeKubernetes;

const TOKEN: &str = "vault-init-job";

fn kubeconfig(dir: &std::path::Path, fake: &FakeKubernetes) -> Result<std::path::PathBuf> {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: job\n  user:\n    token: {TOKEN}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: job\n    namespace: apono-vault\ncurrent-context: fake\n",
            fake.url()
        ),
    )?;
    Ok(path)
}

fn vault_init(bao: &OpenBaoRaft, kubeconfig: &std::path::Path, extra: &[&str]) -> Result<String> {
    let out = Command::new(connector_bin()?)
        .args([
            "vault-init",
            "--address",
            &bao.address(),
            "--wait-seconds",
            "60",
        ])
        .args(extra)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("APONO_VAULT_ADDR")
        .env_remove("APONO_VAULT_NAMESPACE")
        .output()?;
    ensure!(
        out.status.success(),
        "vault-init failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn vault_init_through_the_binary() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fake = FakeKubernetes::start()?;
    fake.add_token(TOKEN);
    let kubeconfig = kubeconfig(dir.path(), &fake)?;

    // Keys in a Secret (the default): fresh, re-run, restart.
    let mut bao = OpenBaoRaft::start()?;
    let first = vault_init(&bao, &kubeconfig, &[])?;
    ensure!(
        first.contains("initialised now: yes, unsealed now: yes")
            && first.contains("apono-vault/apono-vault-role written"),
        "{first}"
    );
    let (labels, _) = fake
        .secret("apono-vault", "apono-vault-role")
        .context("apono-vault-role written in the kubeconfig's namespace")?;
    ensure!(labels.get("apono-connector-read").map(String::as_str) == Some("true"));
    let again = vault_init(&bao, &kubeconfig, &[])?;
    ensure!(
        again.contains("initialised now: no, unsealed now: no") && again.contains("unchanged"),
        "{again}"
    );
    bao.restart()?;
    let restarted = vault_init(&bao, &kubeconfig, &[])?;
    ensure!(
        restarted.contains("initialised now: no, unsealed now: yes"),
        "{restarted}"
    );

    // The watcher beside OpenBao (the chart's sidecar) unseals it after every restart.
    let mut watcher = Command::new(connector_bin()?)
        .args(["vault-init", "--address", &bao.address(), "--unseal-only"])
        .args(["--watch-seconds", "1"])
        .env("KUBECONFIG", &kubeconfig)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut unsealed_after_restart = true;
    for _ in 0..2 {
        bao.restart()?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        // `bao status` exits 0 once unsealed, 2 while sealed.
        while bao.cli().arg("status").output()?.status.code() != Some(0) {
            if std::time::Instant::now() > deadline {
                unsealed_after_restart = false;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    watcher.kill()?;
    watcher.wait()?;
    ensure!(
        unsealed_after_restart,
        "the watcher did not unseal the restarted vault"
    );
    drop(bao);

    // Printed once: nothing stored; a restarted vault needs the printed JSON back.
    let mut bao = OpenBaoRaft::start()?;
    let printed = vault_init(
        &bao,
        &kubeconfig,
        &["--key-custody", "print", "--role-secret", "printed-role"],
    )?;
    let json = printed
        .lines()
        .find(|l| l.starts_with('{'))
        .context("the keys, printed once")?;
    ensure!(json.contains("unseal_keys_b64") && json.contains("root_token"));
    let keys = dir.path().join("keys.json");
    std::fs::write(&keys, json)?;
    bao.restart()?;
    let keys_arg = keys.display().to_string();
    let reopened = vault_init(
        &bao,
        &kubeconfig,
        &[
            "--key-custody",
            "print",
            "--role-secret",
            "printed-role",
            "--keys-file",
            &keys_arg,
        ],
    )?;
    ensure!(
        reopened.contains("unsealed now: yes") && !reopened.contains("root_token"),
        "{reopened}"
    );
    Ok(())
}
