//! Notifications through the binary, against independent local receivers
//! (`tests/python/notify_receiver.py`: Python's `hmac` and `http.server`, and `aiosmtpd` with
//! STARTTLS and AUTH) and a real sshd as the target.
//!
//! alice requests access; the signed webhook and a Slack Block Kit message with Approve /
//! Reject buttons arrive; Slack presses with a forged, a stale or a missing signature are
//! refused (401); alice pressing Approve on her own request and an unmapped Slack user are
//! refused (the request stays `Pending`); bob's press approves it and replaces the message
//! through its `response_url`; the approval and the activation arrive by email (STARTTLS,
//! plain text and HTML, logged in with the password from the channel's secret store); the
//! expiry warning and the end follow. The first delivery of `session.ended` is held by the
//! receiver while the connector is SIGKILLed; after the restart it is delivered again with the
//! same delivery id: the duplicate is counted, nothing is lost, every signature verifies.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apono_e2e::{ConnectorConfig, call, ssh_secret_store, ssh_server};
use apono_testkit::SshServer;
use serde_json::{Value, json};

const WEBHOOK_KEY: &str = "whsec-test-3f9a1c0e5b7d";
const SLACK_SECRET: &str = "slack-signing-8e1f22c4";
const SMTP_PASSWORD: &str = "smtp-pass-71b0";

fn receiver_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/notify_receiver.py")
}

/// The Python receivers, killed on drop.
struct Receivers {
    child: Child,
    http: u16,
    smtp: u16,
    log: PathBuf,
}

impl Receivers {
    fn start(dir: &Path, hold_event: &str) -> Result<Self> {
        // A CA (what the connector trusts, `smtp_ca_file`) and the server's certificate.
        let (cert, key) = (dir.join("smtp-cert.pem"), dir.join("smtp-key.pem"));
        let ext = dir.join("smtp-ext.cnf");
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
        )?;
        let p = |name: &str| dir.join(name).display().to_string();
        for args in [
            vec![
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=apono-test-ca",
                "-keyout",
                &p("smtp-ca.key"),
                "-out",
                &p("smtp-ca.pem"),
            ],
            vec![
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                &p("smtp-key.pem"),
                "-out",
                &p("smtp.csr"),
            ],
            vec![
                "x509",
                "-req",
                "-days",
                "1",
                "-in",
                &p("smtp.csr"),
                "-CA",
                &p("smtp-ca.pem"),
                "-CAkey",
                &p("smtp-ca.key"),
                "-CAcreateserial",
                "-extfile",
                &p("smtp-ext.cnf"),
                "-out",
                &p("smtp-cert.pem"),
            ],
        ] {
            let status = Command::new("openssl")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?;
            ensure!(status.success(), "openssl {args:?} failed");
        }
        let config = json!({
            "dir": dir, "webhook_key": WEBHOOK_KEY, "cert": cert, "key": key,
            "smtp_user": "apono", "smtp_password": SMTP_PASSWORD, "hold_event": hold_event,
        });
        let mut child = Command::new(apono_testkit::python::venv_python())
            .arg(receiver_script())
            .arg("serve")
            .arg(config.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("receiver stdout")?).read_line(&mut line)?;
        let ports: Value = serde_json::from_str(&line)
            .with_context(|| format!("the receivers did not start: {line:?}"))?;
        Ok(Self {
            child,
            http: u16::try_from(ports["http"].as_u64().context("http port")?)?,
            smtp: u16::try_from(ports["smtp"].as_u64().context("smtp port")?)?,
            log: dir.join("received.jsonl"),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http)
    }

    fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until `what` of the receipts holds (60 s at most), and returns the receipts.
    async fn wait(&self, what: &str, mut done: impl FnMut(&[Value]) -> bool) -> Result<Vec<Value>> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.received();
            if done(&got) {
                return Ok(got);
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}; received: {got:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receivers {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn webhooks<'a>(got: &'a [Value], event: &str) -> Vec<&'a Value> {
    got.iter()
        .filter(|r| r["kind"] == "webhook" && r["event"] == event)
        .collect()
}

/// Slack's signature, computed by Python's `hmac` (not by the connector's code).
fn slack_signature(ts: i64, body: &str) -> Result<String> {
    let out = Command::new(apono_testkit::python::venv_python())
        .arg(receiver_script())
        .args(["sign", SLACK_SECRET, &ts.to_string(), body])
        .output()?;
    ensure!(out.status.success(), "signing failed");
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// A Slack button press on request `id` by Slack user `user`.
fn press(user: &str, action: &str, id: &str, response_url: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": { "id": user, "username": user },
        "team": { "id": "T0TEST" },
        "actions": [{ "action_id": action, "value": id, "type": "button" }],
        "response_url": response_url,
    });
    let encoded: String = payload
        .to_string()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("payload={encoded}")
}

async fn post_slack(
    client: &reqwest::Client,
    url: &str,
    body: &str,
    ts: Option<i64>,
    signature: Option<String>,
) -> Result<(u16, Value)> {
    let mut req = client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(ts) = ts {
        req = req.header("X-Slack-Request-Timestamp", ts.to_string());
    }
    if let Some(signature) = signature {
        req = req.header("X-Slack-Signature", signature);
    }
    let response = req.send().await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)] // the count of duplicates
async fn webhook_slack_and_email_notifications_survive_a_sigkill() -> Result<()> {
    let server = SshServer::start()?;
    let dir = tempfile::tempdir()?;
    let receivers = Receivers::start(dir.path(), "session.ended")?;
    let template = format!(
        r#"
[connector]
listen = "{{listen}}"
data_dir = "{{data}}"
retry_base = "1s"
retry_max = "2s"

[[users]]
email = "alice@example.com"
groups = ["developers"]

[[users]]
email = "bob@example.com"

[[users]]
email = "root@example.com"
admin = true

[[integrations]]
name = "servers"
type = "ssh"
secret_store = {secret_store}
config = {{ servers = [{servers}] }}

[[access_flows]]
name = "dev"
trigger = "self_serve"
requestors = {{ groups = ["developers"] }}
approvers = {{ users = ["alice@example.com", "bob@example.com"] }}
targets = [{{ integration = "servers", resource_type = "ssh-server", permissions = ["Default"] }}]
grant_duration = "1h"

[[notifications]]
name = "hook"
type = "webhook"
url = "{webhook}"
secret_store = {{ apono = {{ parameters = {{ signing_key = "{WEBHOOK_KEY}" }} }} }}

[[notifications]]
name = "team-slack"
type = "slack"
events = ["request.pending"]
secret_store = {{ apono = {{ parameters = {{ webhook_url = "{slack}", signing_secret = "{SLACK_SECRET}" }} }} }}
slack_users = {{ U0ALICE = "alice@example.com", U0BOB = "bob@example.com" }}

[[notifications]]
name = "mail"
type = "email"
events = ["request.approved", "session.active"]
smtp_host = "localhost"
smtp_port = {smtp}
smtp_ca_file = "{ca}"
from = "Apono <apono@example.com>"
secret_store = {{ apono = {{ parameters = {{ username = "apono", password = "{SMTP_PASSWORD}" }} }} }}
expiring_before = "15s"
"#,
        secret_store = ssh_secret_store(&server),
        servers = ssh_server(&server, "web-1", ""),
        webhook = receivers.url("/webhook"),
        slack = receivers.url("/slack"),
        smtp = receivers.smtp,
        ca = dir.path().join("smtp-ca.pem").display(),
    );
    // The webhook also warns 15 s before the end (its own `expiring_before`).
    let template = template.replace(
        "secret_store = { apono = { parameters = { signing_key",
        "expiring_before = \"15s\"\nsecret_store = { apono = { parameters = { signing_key",
    );
    let config = ConnectorConfig::write(dir.path(), &template)?;
    let alice = config.token("alice@example.com")?;
    let bob = config.token("bob@example.com")?;
    let mut connector = config.start()?;
    let base = connector.url.clone();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while call(
        &client,
        "GET",
        &format!("{base}/api/v1/resources"),
        &alice,
        None,
    )
    .await
    .ok()
    .and_then(|r| r.as_array().map(Vec::len))
        != Some(1)
    {
        ensure!(
            Instant::now() < deadline,
            "no discovery: {}",
            connector.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // 1. The request: a signed webhook and a Slack message with buttons.
    let body = json!({ "integration": "servers", "resource_type": "ssh-server", "resource_ids": ["web-1"], "permission": "Default", "justification": "deploy <!channel>", "duration": "25s" });
    let request = call(
        &client,
        "POST",
        &format!("{base}/api/v1/access-requests"),
        &alice,
        Some(&body),
    )
    .await?;
    let id = request["id"].as_str().context("request id")?.to_owned();
    let got = receivers
        .wait("request.pending on the webhook and Slack", |got| {
            !webhooks(got, "request.pending").is_empty() && got.iter().any(|r| r["kind"] == "slack")
        })
        .await?;
    let pending = webhooks(&got, "request.pending")[0];
    assert_eq!(pending["signature_ok"], true, "{pending}");
    assert_eq!(pending["fresh"], true);
    assert_eq!(pending["body"]["schema"], "apono.notification.v1");
    assert_eq!(
        pending["body"]["id"], pending["id"],
        "the body's id is the delivery id"
    );
    assert_eq!(pending["body"]["request"]["id"], id.as_str());
    // alice is an approver of the flow but may not approve her own request: she is not told;
    // bob (the flow's other approver) and root (an admin, who may approve anything) are.
    assert_eq!(
        pending["body"]["recipients"],
        json!(["bob@example.com", "root@example.com"])
    );
    let slack = got.iter().find(|r| r["kind"] == "slack").context("slack")?;
    let blocks = slack["body"]["blocks"].as_array().context("blocks")?;
    let actions = blocks
        .iter()
        .find(|b| b["type"] == "actions")
        .context("buttons")?;
    let buttons: Vec<(&str, &str)> = actions["elements"]
        .as_array()
        .context("elements")?
        .iter()
        .map(|e| {
            (
                e["action_id"].as_str().unwrap_or(""),
                e["value"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        buttons,
        [
            ("apono.approve", id.as_str()),
            ("apono.reject", id.as_str())
        ]
    );
    let text = slack["body"].to_string();
    assert!(
        !text.contains("<!channel>"),
        "a justification cannot mention @channel: {text}"
    );

    // 2. Slack presses.
    let interactions = format!("{base}/api/v1/slack/team-slack/interactions");
    let response_url = receivers.url("/slack-response");
    let now = chrono::Utc::now().timestamp();
    let by_bob = press("U0BOB", "apono.approve", &id, &response_url);
    let forged = format!("v0={}", "0".repeat(64));
    for (what, ts, signature) in [
        ("forged", Some(now), Some(forged)),
        (
            "stale",
            Some(now - 600),
            Some(slack_signature(now - 600, &by_bob)?),
        ),
        ("unsigned", None, None),
        (
            "signed for another body",
            Some(now),
            Some(slack_signature(now, "payload=%7B%7D")?),
        ),
    ] {
        let (status, _) = post_slack(&client, &interactions, &by_bob, ts, signature).await?;
        assert_eq!(status, 401, "a {what} Slack request is refused");
    }
    // Signed as Slack would (by Python's hmac), at `now`.
    let signed = |user: &'static str| {
        let (client, interactions, id, response_url) = (
            client.clone(),
            interactions.clone(),
            id.clone(),
            response_url.clone(),
        );
        async move {
            let body = press(user, "apono.approve", &id, &response_url);
            let signature = slack_signature(now, &body)?;
            post_slack(&client, &interactions, &body, Some(now), Some(signature)).await
        }
    };
    for user in ["U0ALICE", "U0EVE"] {
        let (status, outcome) = signed(user).await?;
        assert_eq!(
            (status, outcome["outcome"].as_str()),
            (200, Some("refused")),
            "{outcome}"
        );
    }
    let still = call(
        &client,
        "GET",
        &format!("{base}/api/v1/access-requests/{id}"),
        &bob,
        None,
    )
    .await?;
    assert_eq!(
        still["status"], "Pending",
        "no refused press decided anything"
    );
    let (status, outcome) = signed("U0BOB").await?;
    assert_eq!(
        (status, outcome["outcome"].as_str()),
        (200, Some("approved")),
        "{outcome}"
    );
    let decided = call(
        &client,
        "GET",
        &format!("{base}/api/v1/access-requests/{id}"),
        &bob,
        None,
    )
    .await?;
    assert_eq!(decided["decided_by"], "bob@example.com");
    let got = receivers
        .wait("the replaced Slack message", |got| {
            got.iter()
                .any(|r| r["kind"] == "slack-response" && r["body"]["replace_original"] == true)
        })
        .await?;
    let responses: Vec<&Value> = got
        .iter()
        .filter(|r| r["kind"] == "slack-response")
        .collect();
    // The refusals went to the presser alone; the approval replaced the message.
    assert_eq!(responses.len(), 3, "{responses:#?}");
    for refused in &responses[..2] {
        assert_eq!(refused["body"]["response_type"], "ephemeral", "{refused}");
        assert_eq!(refused["body"]["replace_original"], false);
    }
    assert!(
        responses[0]["body"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("cannot approve their own request"),
        "{}",
        responses[0]
    );
    assert!(
        responses[1]["body"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("U0EVE is not mapped"),
        "{}",
        responses[1]
    );
    let replaced = responses[2];
    assert_eq!(replaced["body"]["replace_original"], true);
    assert!(
        replaced["body"]["text"]
            .as_str()
            .unwrap_or("")
            .contains("approved by bob@example.com"),
        "{replaced}"
    );

    // 3. Approved and active: webhook and email (STARTTLS, AUTH, text and HTML) to alice.
    let got = receivers
        .wait("approval and activation by webhook and email", |got| {
            !webhooks(got, "session.active").is_empty()
                && got.iter().filter(|r| r["kind"] == "email").count() >= 2
        })
        .await?;
    assert!(!webhooks(&got, "request.approved").is_empty());
    let emails: Vec<&Value> = got.iter().filter(|r| r["kind"] == "email").collect();
    for mail in &emails {
        assert_eq!(mail["tls"], true, "STARTTLS: {mail}");
        assert_eq!(mail["auth_user"], "apono");
        assert_eq!(mail["rcpt_tos"], json!(["alice@example.com"]));
        assert!(mail["text"].as_str().unwrap_or("").contains(&id));
        assert!(mail["html"].as_str().unwrap_or("").contains("<table>"));
        assert!(
            !mail["html"].as_str().unwrap_or("").contains("<!channel>"),
            "HTML is escaped"
        );
    }
    let subjects: Vec<&str> = emails
        .iter()
        .filter_map(|m| m["subject"].as_str())
        .collect();
    assert!(
        subjects
            .iter()
            .any(|s| s.contains("was approved by bob@example.com")),
        "{subjects:?}"
    );
    assert!(
        subjects.iter().any(|s| s.contains("is active")),
        "{subjects:?}"
    );

    // 4. The warning, then the end: its first delivery is held while the connector is killed.
    receivers
        .wait("session.expiring", |got| {
            !webhooks(got, "session.expiring").is_empty()
        })
        .await?;
    receivers
        .wait("the held session.ended", |got| {
            !webhooks(got, "session.ended").is_empty()
        })
        .await?;
    connector.kill()?; // SIGKILL, mid-delivery
    client.get(receivers.url("/release")).send().await?;
    let mut connector = config.start()?;
    let got = receivers
        .wait("session.ended delivered again", |got| {
            webhooks(got, "session.ended").len() >= 2
        })
        .await?;

    // 5. Every delivery verified; duplicates only of the interrupted one, with the same id.
    let mut by_id: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for hook in got.iter().filter(|r| r["kind"] == "webhook") {
        assert_eq!(hook["signature_ok"], true, "{hook}");
        assert_eq!(hook["fresh"], true, "{hook}");
        by_id
            .entry(hook["id"].as_str().context("delivery id")?)
            .or_default()
            .push(hook);
    }
    let events: Vec<&str> = by_id
        .values()
        .filter_map(|d| d[0]["event"].as_str())
        .collect();
    assert_eq!(
        events
            .iter()
            .copied()
            .collect::<std::collections::BTreeSet<_>>(),
        [
            "request.approved",
            "request.pending",
            "session.active",
            "session.ended",
            "session.expiring"
        ]
        .into(),
        "every event once after deduplication by delivery id"
    );
    let duplicated: Vec<(&&str, usize)> = by_id
        .iter()
        .filter(|(_, d)| d.len() > 1)
        .map(|(id, d)| (id, d.len()))
        .collect();
    assert_eq!(
        duplicated.len(),
        1,
        "only the interrupted delivery came twice: {duplicated:?}"
    );
    assert_eq!(by_id[duplicated[0].0][0]["event"], "session.ended");
    println!(
        "webhook deliveries: {}, after deduplication: {}, duplicates after the SIGKILL: {}",
        got.iter().filter(|r| r["kind"] == "webhook").count(),
        by_id.len(),
        duplicated[0].1 - 1
    );
    connector.terminate()?;
    Ok(())
}
