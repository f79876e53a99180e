//! Through the binary, on a real sshd: request → (automatic) approval → log in with the
//! returned key → expiry → login refused; the revoke lag is measured; SIGTERM exits cleanly.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apono_testkit::SshServer;
use serde_json::{Value, json};

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Connector(Child);

impl Drop for Connector {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn call(
    client: &reqwest::Client,
    method: &str,
    url: String,
    token: &str,
    body: Option<Value>,
) -> Result<Value> {
    let mut req = client
        .request(method.parse()?, &url)
        .header("authorization", format!("Bearer {token}"));
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    ensure!(status.is_success(), "{method} {url}: {status}: {text}");
    Ok(serde_json::from_str(&text)?)
}

fn ssh_login(server: &SshServer, key: &std::path::Path, user: &str) -> Result<bool> {
    let status = Command::new("ssh")
        .args([
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
        ])
        .arg(format!(
            "-oUserKnownHostsFile={}",
            server.known_hosts_path().display()
        ))
        .arg("-i")
        .arg(key)
        .args(["-p", &server.port().to_string()])
        .arg(format!("{user}@{}", server.host()))
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    Ok(status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)] // the measured revoke lag
async fn request_login_expire_on_real_sshd() -> Result<()> {
    let server = SshServer::start()?;
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let key_b64 = data_encoding::BASE64.encode(server.admin_private_key().as_bytes());
    let config = format!(
        r#"
[connector]
id = "e2e"
listen = "127.0.0.1:{port}"
data_dir = "{data}"

[[users]]
email = "alice@example.com"
groups = ["developers"]

[[integrations]]
name = "servers"
type = "ssh"
connected_resource_types = ["ssh-server"]
secret_store = {{ apono = {{ parameters = {{ base64_private_key = "{key_b64}" }} }} }}
config = {{ servers = [{{ name = "web-1", host = "{host}", port = {sshport}, user = "{admin}", host_key = "{host_key}", tags = {{ env = "test" }} }}] }}

[[access_flows]]
name = "dev"
trigger = "automatic"
requestors = {{ groups = ["developers"] }}
targets = [{{ integration = "servers", resource_type = "ssh-server", permissions = ["Default"] }}]
grant_duration = "6s"
"#,
        data = dir.path().join("data").display(),
        host = server.host(),
        sshport = server.port(),
        admin = server.admin_user(),
        host_key = server.host_public_key().trim(),
    );
    let config_path = dir.path().join("connector.toml");
    std::fs::write(&config_path, config)?;
    let bin = apono_e2e::connector_bin();

    let check = Command::new(&bin)
        .arg("check-config")
        .arg("--config")
        .arg(&config_path)
        .output()?;
    ensure!(
        check.status.success(),
        "check-config: {}",
        String::from_utf8_lossy(&check.stderr)
    );

    let discover = Command::new(&bin)
        .arg("discover")
        .arg("--config")
        .arg(&config_path)
        .output()?;
    ensure!(
        discover.status.success() && String::from_utf8_lossy(&discover.stdout).contains("web-1"),
        "discover: {}{}",
        String::from_utf8_lossy(&discover.stdout),
        String::from_utf8_lossy(&discover.stderr)
    );

    let out = Command::new(&bin)
        .args([
            "tokens",
            "create",
            "--user",
            "alice@example.com",
            "--config",
        ])
        .arg(&config_path)
        .output()?;
    ensure!(
        out.status.success(),
        "tokens create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)?.trim().to_owned();
    ensure!(token.starts_with("apono_") && !token.contains('\n'));

    let log = std::fs::File::create(dir.path().join("connector.log"))?;
    let child = Command::new(&bin)
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    let mut connector = Connector(child);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            let resources = call(
                &client,
                "GET",
                format!("{base}/api/v1/resources"),
                &token,
                None,
            )
            .await?;
            if resources.as_array().is_some_and(|a| !a.is_empty()) {
                break;
            }
        }
        if Instant::now() > deadline {
            bail!(
                "connector not ready: {}",
                std::fs::read_to_string(dir.path().join("connector.log"))?
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let request = call(&client, "POST", format!("{base}/api/v1/access-requests"), &token, Some(json!({
        "integration": "servers", "resource_type": "ssh-server", "resource_ids": ["web-1"], "permission": "Default"
    }))).await?;
    let id = request["id"].as_str().context("request id")?.to_owned();
    let session_id = loop {
        let r = call(
            &client,
            "GET",
            format!("{base}/api/v1/access-requests/{id}"),
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
        format!("{base}/api/v1/access-sessions/{session_id}/access-details"),
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
        format!("{base}/api/v1/access-sessions/{session_id}/access-details"),
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
            format!("{base}/api/v1/access-sessions/{session_id}"),
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
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(connector.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )?;
    let status = connector.0.wait()?;
    ensure!(status.success(), "exit after SIGTERM: {status}");

    let verify = Command::new(&bin)
        .args(["audit", "verify", "--config"])
        .arg(&config_path)
        .output()?;
    ensure!(
        verify.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    Ok(())
}
