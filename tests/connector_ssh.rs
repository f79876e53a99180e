//! Through the binary, on a real sshd: request → (automatic) approval → log in with the
//! returned key → expiry → login refused; the revoke lag is measured; SIGTERM exits cleanly.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apono_e2e::{ConnectorConfig, call, ssh_login, ssh_secret_store, ssh_server};
use apono_testkit::SshServer;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)] // the measured revoke lag
async fn request_login_expire_on_real_sshd() -> Result<()> {
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

[[integrations]]
name = "servers"
type = "ssh"
connected_resource_types = ["ssh-server"]
secret_store = {secret_store}
config = { servers = [{web_1}] }

[[access_flows]]
name = "dev"
trigger = "automatic"
requestors = { groups = ["developers"] }
targets = [{ integration = "servers", resource_type = "ssh-server", permissions = ["Default"] }]
grant_duration = "6s"
"#
    .replace("{secret_store}", &ssh_secret_store(&server))
    .replace(
        "{web_1}",
        &ssh_server(&server, "web-1", r#", tags = { env = "test" }"#),
    );
    let config = ConnectorConfig::write(dir.path(), &template)?;

    let discover = config.command(&["discover"]).output()?;
    ensure!(
        discover.status.success() && String::from_utf8_lossy(&discover.stdout).contains("web-1"),
        "discover: {}{}",
        String::from_utf8_lossy(&discover.stdout),
        String::from_utf8_lossy(&discover.stderr)
    );

    let token = config.token("alice@example.com")?;
    ensure!(token.starts_with("apono_") && !token.contains('\n'));

    let mut connector = config.start()?;
    let base = connector.url.clone();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resources = call(
            &client,
            "GET",
            &format!("{base}/api/v1/resources"),
            &token,
            None,
        )
        .await?;
        if resources.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        if Instant::now() > deadline {
            bail!("connector not ready: {}", connector.log_text());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let request = call(&client, "POST", &format!("{base}/api/v1/access-requests"), &token, Some(&json!({
        "integration": "servers", "resource_type": "ssh-server", "resource_ids": ["web-1"], "permission": "Default"
    }))).await?;
    let id = request["id"].as_str().context("request id")?.to_owned();
    let session_id = loop {
        let r = call(
            &client,
            "GET",
            &format!("{base}/api/v1/access-requests/{id}"),
            &token,
            None,
        )
        .await?;
        match r["status"].as_str() {
            Some("Active") => break r["session_ids"][0].as_str().context("session")?.to_owned(),
            Some("Granting" | "Pending") if Instant::now() < deadline + Duration::from_secs(30) => {
            }
            other => bail!("request went {other:?}: {r}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let details = call(
        &client,
        "GET",
        &format!("{base}/api/v1/access-sessions/{session_id}/access-details"),
        &token,
        None,
    )
    .await?;
    let private_key = details["credentials"]["private_key"]
        .as_str()
        .context("private key shown once")?;
    let username = details["json"]["username"]
        .as_str()
        .context("username")?
        .to_owned();
    let key_path = dir.path().join("id");
    std::fs::write(&key_path, private_key)?;
    std::fs::set_permissions(
        &key_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    let again = call(
        &client,
        "GET",
        &format!("{base}/api/v1/access-sessions/{session_id}/access-details"),
        &token,
        None,
    )
    .await?;
    ensure!(
        !again.to_string().contains("PRIVATE KEY"),
        "credentials shown twice"
    );
    ensure!(
        ssh_login(&server, &key_path, &username)?,
        "login with the granted key failed"
    );

    // Expiry: the session turns Revoked, the key stops working.
    let session = loop {
        let s = call(
            &client,
            "GET",
            &format!("{base}/api/v1/access-sessions/{session_id}"),
            &token,
            None,
        )
        .await?;
        if s["status"] == "Revoked" {
            break s;
        }
        ensure!(
            Instant::now() < deadline + Duration::from_secs(60),
            "not revoked: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let at = |key: &str| -> Result<chrono::DateTime<chrono::Utc>> {
        serde_json::from_value(session[key].clone()).with_context(|| format!("{key} in {session}"))
    };
    let lag = at("revoked_at")? - at("expires_at")?;
    println!("revoke lag on the real sshd: {} ms", lag.num_milliseconds());
    ensure!(lag.num_milliseconds() < 5_000, "revoke lag {lag}");
    ensure!(
        !ssh_login(&server, &key_path, &username)?,
        "login still works after expiry"
    );

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    ensure!(
        metrics.contains("apono_revoke_lag_seconds_count 1"),
        "{metrics}"
    );

    // SIGTERM: a clean exit.
    let status = connector.terminate()?;
    ensure!(status.success(), "exit after SIGTERM: {status}");

    let verify = config.command(&["audit", "verify"]).output()?;
    ensure!(
        verify.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    Ok(())
}
