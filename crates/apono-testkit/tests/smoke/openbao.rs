use anyhow::ensure;
use apono_testkit::OpenBao;

use crate::{output_of, stdout_of};

/// Writes a kv-v2 secret through the CLI and reads it back.
fn kv_round_trip(bao: &OpenBao) -> anyhow::Result<()> {
    stdout_of(bao.cli().args([
        "kv",
        "put",
        "-mount=secret",
        "apono-smoke",
        "password=s3cret",
    ]))?;
    let read = stdout_of(bao.cli().args([
        "kv",
        "get",
        "-mount=secret",
        "-field=password",
        "apono-smoke",
    ]))?;
    ensure!(read == "s3cret", "read back {read:?}");
    Ok(())
}

#[test]
fn plain_server_stores_kv_v2_secrets() -> anyhow::Result<()> {
    let bao = OpenBao::start()?;
    ensure!(bao.address().starts_with("http://127.0.0.1:"));
    ensure!(bao.ca_cert_pem().is_none());
    kv_round_trip(&bao)?;
    let wrong_token = output_of(bao.cli().env("BAO_TOKEN", "wrong").args([
        "kv",
        "get",
        "-mount=secret",
        "apono-smoke",
    ]))?;
    ensure!(!wrong_token.status.success(), "a wrong token was accepted");
    Ok(())
}

#[test]
fn tls_server_stores_kv_v2_secrets_and_needs_its_ca() -> anyhow::Result<()> {
    let bao = OpenBao::start_tls()?;
    ensure!(bao.address().starts_with("https://127.0.0.1:"));
    ensure!(
        bao.ca_cert_pem()
            .is_some_and(|pem| pem.starts_with("-----BEGIN CERTIFICATE-----"))
    );
    kv_round_trip(&bao)?;
    let untrusted = output_of(bao.cli().env_remove("BAO_CACERT").args([
        "kv",
        "get",
        "-mount=secret",
        "apono-smoke",
    ]))?;
    let stderr = String::from_utf8(untrusted.stderr)?;
    ensure!(
        !untrusted.status.success(),
        "the server's certificate was trusted without its CA"
    );
    ensure!(stderr.contains("certificate"), "{stderr}");
    Ok(())
}

/// A Raft server starts uninitialised and sealed; once initialised and unsealed (with the
/// CLI), a restart keeps its data and seals it again, and the same key unseals it.
#[test]
fn raft_server_keeps_its_data_and_seals_at_restart() -> anyhow::Result<()> {
    let mut bao = apono_testkit::OpenBaoRaft::start()?;
    let status = |bao: &apono_testkit::OpenBaoRaft| -> anyhow::Result<serde_json::Value> {
        let out = output_of(bao.cli().args(["status", "-format=json"]))?;
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let s = status(&bao)?;
    ensure!(
        s["initialized"] == false && s["sealed"] == true && s["storage_type"] == "raft",
        "{s}"
    );
    let init: serde_json::Value = serde_json::from_str(&stdout_of(bao.cli().args([
        "operator",
        "init",
        "-key-shares=1",
        "-key-threshold=1",
        "-format=json",
    ]))?)?;
    let key = init["unseal_keys_b64"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    stdout_of(bao.cli().args(["operator", "unseal", &key]))?;
    ensure!(status(&bao)?["sealed"] == false);
    bao.restart()?;
    let s = status(&bao)?;
    ensure!(s["initialized"] == true && s["sealed"] == true, "{s}");
    stdout_of(bao.cli().args(["operator", "unseal", &key]))?;
    ensure!(status(&bao)?["sealed"] == false);
    Ok(())
}
