//! Runs `examples/custom_connector.rs` as its own process and drives it through the API: a
//! request for the third-party `allowlist` integration waits for an approver, is approved,
//! granted (the allowlist file appears with the grantee and the tool), revoked (the file is
//! gone), and the connector stops cleanly on SIGTERM.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apono_control::Config;
use apono_e2e::{call, example_bin};
use apono_server::Connector;
use serde_json::{Value, json};

const CONFIG: &str = r#"
[connector]
id = "custom"
listen = "{listen}"
data_dir = "{data}"

[[users]]
email = "alice@example.com"
groups = ["developers"]

[[users]]
email = "bob@example.com"
groups = ["leads"]

[[integrations]]
name = "tools"
type = "allowlist"
secret_store = { apono = { parameters = { note = "the allowlist needs no secret" } } }
config = { dir = "{allow}", tools = ["wiki", "ci"] }

[[access_flows]]
name = "tools-with-approval"
trigger = "self_serve"
requestors = { groups = ["developers"] }
approvers = { groups = ["leads"] }
targets = [{ integration = "tools", resource_type = "tool", permissions = ["use"] }]
grant_duration = "1h"
"#;

/// The running example, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Personal tokens for `emails`, created in the connector's own store (as
/// `apono-connector tokens create` does) before the example starts.
async fn tokens(config: Config, emails: &[&str]) -> Result<Vec<String>> {
    let connector = Connector::builder(config)
        .secret_store(Arc::new(apono_secrets::AponoStore::new()))
        .build()
        .await?;
    let mut tokens = Vec::new();
    for email in emails {
        tokens.push(connector.plane().create_token(email).await?);
    }
    connector.plane().store().close().await;
    Ok(tokens)
}

/// Polls `GET path` as `token` until `done` holds (20 s at most).
async fn poll(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    log: &Path,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let last = call(client, "GET", url, token, None).await;
        if let Ok(value) = &last
            && done(value)
        {
            return last;
        }
        if Instant::now() > deadline {
            bail!(
                "{url} never reached the expected state (last: {last:?}); connector log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn files(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        out.push((name, std::fs::read_to_string(entry.path())?));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_approve_grant_revoke_through_the_api() -> Result<()> {
    let bin = example_bin("custom_connector")?;
    let dir = tempfile::tempdir()?;
    let allow = dir.path().join("allow");
    std::fs::create_dir(&allow)?;
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let text = CONFIG
        .replace("{listen}", &addr.to_string())
        .replace("{data}", &dir.path().join("data").display().to_string())
        .replace("{allow}", &allow.display().to_string());
    let path = dir.path().join("connector.toml");
    std::fs::write(&path, &text)?;
    let [alice, bob] = <[String; 2]>::try_from(
        tokens(
            Config::parse(&text, std::iter::empty(), None)?,
            &["alice@example.com", "bob@example.com"],
        )
        .await?,
    )
    .map_err(|_| anyhow::anyhow!("two tokens"))?;

    let log = dir.path().join("connector.log");
    let mut running = Running(
        Command::new(&bin)
            .arg(&path)
            .env_remove("HASHICORP_VAULT_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?,
    );
    let base = format!("http://{addr}/api/v1");
    let client = reqwest::Client::new();

    // Discovery runs at start: the tools appear as resources.
    poll(&client, &format!("{base}/resources"), &alice, &log, |r| {
        r.as_array().is_some_and(|a| a.len() == 2)
    })
    .await?;
    let request = call(
        &client,
        "POST",
        &format!("{base}/access-requests"),
        &alice,
        Some(&json!({
            "integration": "tools", "resource_type": "tool",
            "resource_ids": ["wiki"], "permission": "use"
        })),
    )
    .await?;
    let id = request["id"].as_str().context("request id")?.to_owned();
    ensure!(request["status"] == "Pending", "waits for bob: {request}");
    ensure!(files(&allow)?.is_empty(), "nothing granted before approval");

    // Alice cannot approve her own request; bob (a lead) can.
    let own = call(
        &client,
        "POST",
        &format!("{base}/access-requests/{id}/approve"),
        &alice,
        None,
    )
    .await;
    ensure!(own.is_err(), "the requester approved her own request");
    call(
        &client,
        "POST",
        &format!("{base}/access-requests/{id}/approve"),
        &bob,
        Some(&json!({"reason": "on call"})),
    )
    .await?;
    let active = poll(
        &client,
        &format!("{base}/access-requests/{id}"),
        &alice,
        &log,
        |r| r["status"] == "Active",
    )
    .await?;
    let session = active["session_ids"][0].as_str().context("session")?;
    ensure!(
        files(&allow)? == [(session.to_owned(), "alice@example.com wiki\n".to_owned())],
        "the grant wrote the allowlist entry: {:?}",
        files(&allow)?
    );

    call(
        &client,
        "POST",
        &format!("{base}/access-requests/{id}/revoke"),
        &alice,
        None,
    )
    .await?;
    poll(
        &client,
        &format!("{base}/access-requests/{id}"),
        &alice,
        &log,
        |r| r["status"] == "Revoked",
    )
    .await?;
    ensure!(files(&allow)?.is_empty(), "revoke removed the entry");

    let pid = nix::unistd::Pid::from_raw(i32::try_from(running.0.id())?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    let status = running.0.wait()?;
    ensure!(
        status.success(),
        "exit after SIGTERM: {status}; log:\n{}",
        std::fs::read_to_string(&log)?
    );
    Ok(())
}
