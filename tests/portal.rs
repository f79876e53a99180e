//! The web portal in a real headless Chromium (Debian's `chromium`, driven by `playwright-core`
//! from `tests/portal/`, installed by `scripts/test.sh`), against the real connector binary and
//! the test kit's sshd: `tests/portal/portal.mjs` walks the whole loop in the browser, and this
//! side logs in to sshd with each key the browser revealed (the first, and the one after a
//! reset), and checks neither works after the browser revoked the request. Screenshots of every page are written to
//! `$CARGO_TARGET_DIR/portal-screenshots` (or `target/portal-screenshots`).
//!
//! Nothing is skipped: without node, `tests/portal/node_modules` or `/usr/bin/chromium` this
//! fails, saying what is missing.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apono_e2e::{Connector, call, ssh_login, ssh_secret_store, ssh_server};
use apono_testkit::SshServer;
use serde_json::json;

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";

/// alice (developers) requests through `ops`, which bob approves; bob (leads) gets access
/// without approval through `leads`; carol is an admin.
fn config(server: &SshServer) -> String {
    format!(
        r#"
[connector]
id = "portal-e2e"
listen = "{{listen}}"
data_dir = "{{data}}"

[[users]]
email = "{ALICE}"
groups = ["developers"]

[[users]]
email = "{BOB}"
groups = ["leads"]

[[users]]
email = "{CAROL}"
admin = true

[[integrations]]
name = "servers"
type = "ssh"
connected_resource_types = ["ssh-server"]
secret_store = {secret_store}
config = {{ servers = [{web_1}] }}

[[access_flows]]
name = "ops"
trigger = "self_serve"
requestors = {{ groups = ["developers"] }}
approvers = {{ users = ["{BOB}"] }}
justification_required = true
targets = [{{ integration = "servers", resource_type = "ssh-server", permissions = ["Default"] }}]
grant_duration = "10m"

[[access_flows]]
name = "leads"
trigger = "automatic"
requestors = {{ groups = ["leads"] }}
targets = [{{ integration = "servers", resource_type = "ssh-server", permissions = ["Default"] }}]
grant_duration = "10m"
"#,
        secret_store = ssh_secret_store(server),
        web_1 = ssh_server(server, "web-1", ""),
    )
}

fn portal_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("portal")
}

fn screenshots_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("portal-screenshots")
}

/// Polls `GET url` as `token` until `done` holds for the answer (30 s at most).
async fn poll(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let value = call(client, "GET", url, token, None).await?;
        if done(&value) {
            return Ok(value);
        }
        ensure!(Instant::now() < deadline, "{url} never got there: {value}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)] // where the screenshots are
async fn portal_loop_in_headless_chromium() -> Result<()> {
    ensure!(
        Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium is missing: scripts/test.sh installs Debian's chromium"
    );
    ensure!(
        portal_dir().join("node_modules/playwright-core").is_dir(),
        "tests/portal/node_modules is missing: scripts/test.sh runs npm ci there"
    );
    let server = SshServer::start()?;
    let dir = tempfile::tempdir()?;
    let (mut connector, tokens) =
        Connector::start(dir.path(), &config(&server), &[ALICE, BOB, CAROL])?;
    let [alice, bob, carol] = &tokens[..] else {
        bail!("three tokens expected");
    };
    let base = connector.url.clone();
    let client = reqwest::Client::new();
    poll(&client, &format!("{base}/api/v1/resources"), bob, |v| {
        v.as_array().is_some_and(|a| !a.is_empty())
    })
    .await?;

    // bob's own access, which alice must not see.
    let bob_request = call(
        &client,
        "POST",
        &format!("{base}/api/v1/access-requests"),
        bob,
        Some(&json!({ "integration": "servers", "resource_type": "ssh-server", "resource_ids": ["web-1"], "permission": "Default" })),
    )
    .await?;
    let bob_request_id = bob_request["id"].as_str().context("request id")?.to_owned();
    let bob_request = poll(
        &client,
        &format!("{base}/api/v1/access-requests/{bob_request_id}"),
        bob,
        |v| v["status"] == "Active",
    )
    .await?;
    let bob_session = bob_request["session_ids"][0]
        .as_str()
        .context("bob's session")?
        .to_owned();

    let out = tempfile::tempdir()?;
    let shots = screenshots_dir();
    let mut browser = Command::new("node")
        .arg(portal_dir().join("portal.mjs"))
        .current_dir(portal_dir())
        .env("PORTAL_URL", &base)
        .env("ALICE_TOKEN", alice)
        .env("BOB_TOKEN", bob)
        .env("CAROL_TOKEN", carol)
        .env("BOB_REQUEST", &bob_request_id)
        .env("BOB_SESSION", &bob_session)
        .env("OUT", out.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting node (scripts/test.sh installs it)")?;

    // The browser hands over each key it reveals (the first, then the one after a reset): log
    // in to sshd with it as the session's account, and tell the browser how it went.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut account = String::new();
    let mut pending = vec!["key", "key2"].into_iter().peekable();
    let status = loop {
        if let Some(status) = browser.try_wait()? {
            break status;
        }
        if let Some(name) = pending.peek().copied()
            && out.path().join(format!("{name}.ready")).is_file()
        {
            pending.next();
            account = std::fs::read_to_string(out.path().join("account"))?
                .trim()
                .to_owned();
            let logged_in = ssh_login(&server, &out.path().join(name), &account)?;
            std::fs::write(
                out.path().join(format!("{name}.result")),
                if logged_in { "ok" } else { "refused" },
            )?;
        }
        if Instant::now() > deadline {
            let _ = browser.kill();
            bail!("the browser walk did not finish within 300 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (stdout, stderr) = outputs(&mut browser);
    copy_screenshots(&out.path().join("screenshots"), &shots)?;
    ensure!(
        status.success() && stdout.contains("portal walk passed"),
        "the browser walk failed ({status}):\n{stdout}\n{stderr}\nconnector log:\n{}",
        connector.log_text()
    );
    println!("{stdout}screenshots in {}", shots.display());

    // Both keys opened sshd (the walk checked each verdict); revoked from the portal, neither
    // does now.
    ensure!(
        pending.next().is_none(),
        "the walk revealed fewer keys than expected"
    );
    for name in ["key", "key2"] {
        ensure!(
            !ssh_login(&server, &out.path().join(name), &account)?,
            "{name} still logs in after the revoke"
        );
    }

    // A long poll in flight does not hold up a graceful stop: SIGTERM answers it at once.
    let watch = format!("{base}/api/v1/access-requests/{bob_request_id}/watch");
    let first = client.get(&watch).bearer_auth(bob).send().await?;
    let version = first
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .context("the watch answers an ETag")?
        .trim_matches('"')
        .to_owned();
    let pending = tokio::spawn(
        client
            .get(format!("{watch}?wait=60&after={version}"))
            .bearer_auth(bob)
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(!pending.is_finished(), "the watch did not wait");
    let stopping = Instant::now();
    let exit = connector.terminate()?;
    ensure!(
        exit.success() && stopping.elapsed() < Duration::from_secs(5),
        "SIGTERM with a long poll in flight: {exit} after {:?}",
        stopping.elapsed()
    );
    let answer = pending.await??;
    ensure!(
        answer.status() == 200,
        "the long poll was answered {}",
        answer.status()
    );
    Ok(())
}

fn outputs(child: &mut std::process::Child) -> (String, String) {
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut s) = child.stdout.take() {
        let _ = s.read_to_string(&mut stdout);
    }
    if let Some(mut s) = child.stderr.take() {
        let _ = s.read_to_string(&mut stderr);
    }
    (stdout, stderr)
}

fn copy_screenshots(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    if let Ok(entries) = std::fs::read_dir(from) {
        for entry in entries.flatten() {
            std::fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}
