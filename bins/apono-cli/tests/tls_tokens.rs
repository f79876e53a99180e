//! The real `apono-connector` serving its API over TLS, and the real `apono` CLI trusting it
//! through `--ca-cert`: API tokens listed and revoked from the CLI, the certificate rotated
//! while the connector runs, plain http to a host that is not loopback refused by the CLI, and
//! a non-loopback listener without TLS refused by the connector.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apono_e2e::ConnectorConfig;
use apono_testkit::fakes::TestCa;
use common::User;

const CONFIG: &str = r#"
[connector]
id = "tls"
listen = "{listen}"
data_dir = "{data}"
token_default_expiry = "1h"
tls_cert = "{dir}/cert.pem"
tls_key = "{dir}/key.pem"

[[users]]
email = "alice@example.com"

[[users]]
email = "root@example.com"
admin = true
"#;

/// `apono-connector run`, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_pair(dir: &Path, ca: &TestCa) -> Result<()> {
    // Key first, certificate last: the connector reloads when both have changed and load.
    std::fs::write(dir.join("key.pem.new"), ca.server_key_pem())?;
    std::fs::write(dir.join("cert.pem.new"), ca.server_cert_pem())?;
    std::fs::rename(dir.join("key.pem.new"), dir.join("key.pem"))?;
    std::fs::rename(dir.join("cert.pem.new"), dir.join("cert.pem"))?;
    Ok(())
}

/// Runs `apono ARGS` as `user` until it succeeds (30 s at most).
fn until_ok(user: &User, args: &[&str]) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = user.run(args)?;
        if out.code == Some(0) {
            return Ok(out.stdout);
        }
        if Instant::now() > deadline {
            bail!("apono {} never succeeded: {out:#?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn tls_api_tokens_and_certificate_rotation() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let first = TestCa::generate()?;
    let second = TestCa::generate()?;
    write_pair(dir.path(), &first)?;
    std::fs::write(dir.path().join("ca1.pem"), first.ca_pem())?;
    std::fs::write(dir.path().join("ca2.pem"), second.ca_pem())?;
    let ca1 = dir.path().join("ca1.pem").display().to_string();
    let ca2 = dir.path().join("ca2.pem").display().to_string();

    let config = ConnectorConfig::write(
        dir.path(),
        &CONFIG.replace("{dir}", &dir.path().display().to_string()),
    )?;
    let url = config.url.replace("http://", "https://");
    let alice_token = config.token("alice@example.com")?;
    let spare = config
        .command(&[
            "tokens",
            "create",
            "--user",
            "alice@example.com",
            "--name",
            "spare",
            "--expires-in",
            "2h",
        ])
        .output()?;
    ensure!(spare.status.success(), "{spare:?}");
    let spare_token = String::from_utf8(spare.stdout)?.trim().to_owned();
    let root_token = config.token("root@example.com")?;
    // Longer than the maximum: refused.
    let long = config
        .command(&[
            "tokens",
            "create",
            "--user",
            "alice@example.com",
            "--expires-in",
            "400d",
        ])
        .output()?;
    ensure!(!long.status.success(), "{long:?}");
    ensure!(
        String::from_utf8_lossy(&long.stderr).contains("token_max_expiry"),
        "{long:?}"
    );

    let log = std::fs::File::create(dir.path().join("connector.log"))?;
    let _connector = Running(
        config
            .command(&["run"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the connector")?,
    );

    // Alice logs in trusting the first CA; the CA file is kept in her profile.
    let alice = User::new()?;
    until_ok(
        &alice,
        &[
            "login",
            "--url",
            &url,
            "--personal-token",
            &alice_token,
            "--ca-cert",
            &ca1,
        ],
    )?;
    let profile = std::fs::read_to_string(alice.config_file())?;
    ensure!(profile.contains("ca1.pem"), "{profile}");
    // Without the CA, the certificate is not trusted.
    let stranger = User::with_env(&url, &alice_token)?;
    stranger.run(&["tokens", "list"])?.error(1, "unreachable")?;

    // Her tokens: listed without their secrets; the spare one revoked from the CLI stops
    // working at once.
    let list = alice.run(&["tokens", "list", "-o", "json"])?.json()?;
    let tokens = list.as_array().context("a list")?;
    ensure!(tokens.len() == 2, "{list}");
    let text = list.to_string();
    ensure!(
        !text.contains(&alice_token) && !text.contains(&spare_token),
        "{text}"
    );
    let spare_id = tokens
        .iter()
        .find(|t| t["name"] == "spare")
        .and_then(|t| t["id"].as_str())
        .context("the spare token")?
        .to_owned();
    alice
        .run(&["tokens", "list", "--all"])?
        .error(1, "only admins")?;
    let mut spare_user = User::with_env(&url, &spare_token)?;
    spare_user.env.push(("APONO_CA_CERT".into(), ca1.clone()));
    spare_user.run(&["tokens", "list"])?.ok()?;
    let revoked = alice.run(&["tokens", "revoke", &spare_id])?;
    ensure!(revoked.ok()?.contains("revoked"), "{revoked:?}");
    spare_user
        .run(&["tokens", "list"])?
        .error(1, "refused the personal token")?;
    // The admin sees everyone's, the revoked one as such.
    let mut root = User::with_env(&url, &root_token)?;
    root.env.push(("APONO_CA_CERT".into(), ca1.clone()));
    let all = root
        .run(&["tokens", "list", "--all", "-o", "json"])?
        .json()?;
    ensure!(all.as_array().map(Vec::len) == Some(3), "{all}");
    ensure!(
        all.as_array()
            .into_iter()
            .flatten()
            .any(|t| t["id"] == spare_id.as_str() && t["status"] == "revoked"),
        "{all}"
    );

    // Rotation without a restart: a certificate from the second CA replaces the first.
    write_pair(dir.path(), &second)?;
    let mut rotated = User::with_env(&url, &alice_token)?;
    rotated.env.push(("APONO_CA_CERT".into(), ca2.clone()));
    until_ok(&rotated, &["tokens", "list"])?;
    alice.run(&["tokens", "list"])?.error(1, "unreachable")?;
    let log = std::fs::read_to_string(dir.path().join("connector.log"))?;
    ensure!(log.contains("TLS certificate reloaded"), "{log}");
    ensure!(log.contains("listening over TLS"), "{log}");
    Ok(())
}

#[test]
fn plain_http_is_refused_off_loopback() -> Result<()> {
    // The CLI: plain http to an address that is not loopback, before anything is sent.
    let user = User::with_env("http://192.0.2.7:8080", "apono_whatever")?;
    user.run(&["tokens", "list"])?
        .error(2, "refusing plain http to http://192.0.2.7:8080")?;
    let login = User::new()?;
    login
        .run(&[
            "login",
            "--url",
            "http://192.0.2.7:8080",
            "--personal-token",
            "apono_whatever",
        ])?
        .error(2, "refusing plain http")?;

    // The connector: a non-loopback listener without TLS fails check-config ...
    let dir = tempfile::tempdir()?;
    let bin = apono_e2e::connector_bin()?;
    let path = dir.path().join("connector.toml");
    let text = format!(
        "[connector]\nlisten = \"0.0.0.0:8443\"\ndata_dir = \"{}\"\n",
        dir.path().join("data").display()
    );
    std::fs::write(&path, &text)?;
    let out = std::process::Command::new(&bin)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(!out.status.success(), "{stderr}");
    ensure!(
        stderr.contains("connector.listen") && stderr.contains("allow_insecure_listen"),
        "{stderr}"
    );
    // ... and passes when allowed explicitly (not started here: tests listen on loopback only).
    std::fs::write(&path, format!("{text}allow_insecure_listen = true\n"))?;
    let out = std::process::Command::new(&bin)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()?;
    ensure!(out.status.success(), "{out:?}");

    // A plain-HTTP connector on loopback says at start that its traffic is unencrypted.
    let plain = tempfile::tempdir()?;
    let (mut connector, _) = apono_e2e::Connector::start(
        plain.path(),
        "[connector]\nlisten = \"{listen}\"\ndata_dir = \"{data}\"\n",
        &[],
    )?;
    connector.wait(Duration::from_secs(10), || {
        std::fs::read_to_string(connector_log(plain.path()))
            .is_ok_and(|l| l.contains("unencrypted"))
    })?;
    Ok(())
}

fn connector_log(dir: &Path) -> std::path::PathBuf {
    dir.join("connector.log")
}
