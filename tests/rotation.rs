//! Through the binary, on a real sshd: `credentials_rotation_period_in_days` written inside the
//! integration's `config` (where Apono's Terraform puts it) is honoured. The connector runs on
//! a clock that the test moves a day and two hours ahead (libfaketime, see [`FakeClock`]); the
//! scheduler then rotates the grant's key on its own: the session's credentials are new again,
//! the audit log records the reset, the old key no longer logs in and the new one does.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apono_e2e::{ConnectorConfig, FakeClock, call, ssh_login, ssh_secret_store, ssh_server};
use apono_testkit::SshServer;
use serde_json::{Value, json};

async fn get(client: &reqwest::Client, url: &str, token: &str) -> Result<Value> {
    call(client, "GET", url, token, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_period_in_config_rotates_on_schedule() -> Result<()> {
    let server = SshServer::start()?;
    let dir = tempfile::tempdir()?;
    let template = r#"
[connector]
id = "e2e"
listen = "{listen}"
data_dir = "{data}"

[[users]]
email = "alice@example.com"
groups = ["developers"]
admin = true

[[integrations]]
name = "servers"
type = "ssh"
secret_store = {secret_store}
config = { servers = [{web_1}], credentials_rotation_period_in_days = 1 }

[[access_flows]]
name = "dev"
trigger = "automatic"
requestors = { groups = ["developers"] }
targets = [{ integration = "servers", resource_type = "ssh-server", permissions = ["Default"] }]
grant_duration = "3d"
"#
    .replace("{secret_store}", &ssh_secret_store(&server))
    .replace("{web_1}", &ssh_server(&server, "web-1", ""));
    let mut config = ConnectorConfig::write(dir.path(), &template)?;
    let token = config.token("alice@example.com")?;
    let clock = FakeClock::new(dir.path())?;
    clock.apply(&mut config);
    let connector = config.start()?;
    let base = format!("{}/api/v1", connector.url);
    let client = reqwest::Client::new();

    let integrations = get(&client, &format!("{base}/integrations"), &token).await?;
    ensure!(
        integrations[0]["credentials_rotation_period_in_days"] == 1,
        "the period written in config is the integration's: {integrations}"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    while get(&client, &format!("{base}/resources"), &token)
        .await?
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        ensure!(
            Instant::now() < deadline,
            "no resources: {}",
            connector.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let request = call(&client, "POST", &format!("{base}/access-requests"), &token, Some(&json!({
        "integration": "servers", "resource_type": "ssh-server", "resource_ids": ["web-1"], "permission": "Default"
    }))).await?;
    let id = request["id"].as_str().context("request id")?;
    let session = loop {
        let r = get(&client, &format!("{base}/access-requests/{id}"), &token).await?;
        match r["status"].as_str() {
            Some("Active") => break r["session_ids"][0].as_str().context("session")?.to_owned(),
            Some("Pending" | "Granting") if Instant::now() < deadline => {}
            other => bail!("request went {other:?}: {r}\n{}", connector.log_text()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let details_url = format!("{base}/access-sessions/{session}/access-details");
    let first = get(&client, &details_url, &token).await?;
    let username = first["json"]["username"].as_str().context("username")?;
    let old_key = dir.path().join("old");
    write_key(&old_key, &first)?;
    ensure!(
        ssh_login(&server, &old_key, username)?,
        "the granted key logs in"
    );
    let session_url = format!("{base}/access-sessions/{session}");
    let viewed = get(&client, &session_url, &token).await?;
    ensure!(viewed["credential_status"] == "viewed", "{viewed}");

    // A day and two hours later (for the connector), the rotation is due and runs by itself.
    clock.shift(Duration::from_secs(26 * 3600))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = get(&client, &session_url, &token).await?;
        if s["credential_status"] == "new" {
            ensure!(s["status"] == "Active", "{s}");
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no rotation after the clock moved: {s}\n{}",
            connector.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let audit = get(&client, &format!("{base}/audit"), &token).await?;
    ensure!(
        audit.as_array().is_some_and(|a| a
            .iter()
            .any(|r| r["action"] == "credentials.reset" && r["subject"] == session.as_str())),
        "the rotation is audited: {audit}"
    );
    let second = get(&client, &details_url, &token).await?;
    ensure!(second["json"]["username"] == username, "same account");
    let new_key = dir.path().join("new");
    write_key(&new_key, &second)?;
    ensure!(
        std::fs::read(&old_key)? != std::fs::read(&new_key)?,
        "a new key"
    );
    ensure!(
        ssh_login(&server, &new_key, username)?,
        "the new key logs in"
    );
    ensure!(
        !ssh_login(&server, &old_key, username)?,
        "the old key no longer logs in"
    );
    Ok(())
}

fn write_key(path: &std::path::Path, details: &Value) -> Result<()> {
    let key = details["credentials"]["private_key"]
        .as_str()
        .context("private key shown once")?;
    std::fs::write(path, key)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(())
}
