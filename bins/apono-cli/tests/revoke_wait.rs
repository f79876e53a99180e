//! How soon `apono requests revoke --wait` returns after the connector commits the revoke's
//! outcome: the real `apono` binary against the real `apono-connector` and the test kit's sshd.
//! For each round, the lag is the moment the CLI exited less the time of the session's
//! `revoke.succeeded` audit record (written in the commit of the outcome; same host clock).
//!
//! The CLI waits by long-polling the request's watch endpoint, which the connector answers as
//! the outcome commits; a CLI that polls every 300 ms lags 150 ms at the median. The test fails
//! when this CLI's median lag is 100 ms or more. With `APONO_BASELINE_CLI` naming another
//! `apono` binary (such as one built before the watch endpoints), both are measured in turn in
//! the same run and both are printed (the table in `docs/benchmarks.md`).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use apono_e2e::{Connector, ssh_secret_store, ssh_server};
use apono_testkit::SshServer;
use common::User;

const ALICE: &str = "alice@example.com";
const CAROL: &str = "carol@example.com";
const ROUNDS: usize = 15;

fn config(server: &SshServer) -> String {
    format!(
        r#"
[connector]
id = "revoke-wait"
listen = "{{listen}}"
data_dir = "{{data}}"

[[users]]
email = "{ALICE}"
groups = ["developers"]

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
name = "dev"
trigger = "automatic"
requestors = {{ groups = ["developers"] }}
targets = [{{ integration = "servers", resource_type = "ssh-server", permissions = ["Default"] }}]
grant_duration = "10m"
"#,
        secret_store = ssh_secret_store(server),
        web_1 = ssh_server(server, "web-1", ""),
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn percentile(sorted: &[i64], p: usize) -> i64 {
    sorted[(sorted.len() - 1) * p / 100]
}

/// One round with `cli`: a request (granted at once), then `revoke --wait`; the CLI's total
/// time and its lag behind the revoke's commit, in ms.
fn round(alice: &User, carol: &User, cli: &PathBuf) -> Result<(i64, i64)> {
    let created = alice
        .run(&[
            "requests",
            "create",
            "-i",
            "servers",
            "-t",
            "ssh-server",
            "-r",
            "web-1",
            "-p",
            "Default",
            "-o",
            "json",
        ])?
        .json()?;
    let request = &created[0];
    ensure!(request["status"] == "Active", "not granted: {created}");
    let id = request["id"].as_str().context("request id")?;
    let session = request["session_ids"][0].as_str().context("session id")?;
    let started = Instant::now();
    let out = alice
        .command(cli)
        .args(["requests", "revoke", id, "--wait", "-o", "json"])
        .output()?;
    let exited = now_ms();
    let total = i64::try_from(started.elapsed().as_millis())?;
    ensure!(
        out.status.success(),
        "revoke --wait failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit = carol.run(&["audit", "list", "-o", "json"])?.json()?;
    let committed = audit
        .as_array()
        .context("audit records")?
        .iter()
        .rev()
        .find(|r| r["action"] == "revoke.succeeded" && r["subject"] == session)
        .and_then(|r| r["at"].as_i64())
        .context("no revoke.succeeded record for the session")?;
    Ok((total, exited - committed))
}

#[test]
#[allow(clippy::print_stdout)] // the measured table
fn revoke_wait_returns_at_the_commit() -> Result<()> {
    let server = SshServer::start()?;
    let dir = tempfile::tempdir()?;
    let (mut connector, tokens) = Connector::start(dir.path(), &config(&server), &[ALICE, CAROL])?;
    let alice = User::with_env(&connector.url, &tokens[0])?;
    let carol = User::with_env(&connector.url, &tokens[1])?;
    alice.wait_for_discovery(&mut connector, "servers", "ssh-server")?;

    let mut clis = vec![(
        "long poll (this CLI)",
        PathBuf::from(env!("CARGO_BIN_EXE_apono")),
    )];
    if let Some(baseline) = std::env::var_os("APONO_BASELINE_CLI") {
        clis.push(("baseline (APONO_BASELINE_CLI)", PathBuf::from(baseline)));
    }
    // One warm-up round each, then the CLIs take turns round by round.
    for (_, cli) in &clis {
        round(&alice, &carol, cli)?;
    }
    let mut results = vec![(Vec::new(), Vec::new()); clis.len()];
    for _ in 0..ROUNDS {
        for (i, (_, cli)) in clis.iter().enumerate() {
            let (total, lag) = round(&alice, &carol, cli)?;
            results[i].0.push(total);
            results[i].1.push(lag);
        }
    }
    println!("| CLI | revoke --wait total p50 / p90 / max | after the commit p50 / p90 / max |");
    println!("|---|---|---|");
    for ((label, _), (totals, lags)) in clis.iter().zip(results.iter_mut()) {
        totals.sort_unstable();
        lags.sort_unstable();
        println!(
            "| {label} | {} / {} / {} ms | {} / {} / {} ms |",
            percentile(totals, 50),
            percentile(totals, 90),
            percentile(totals, 100),
            percentile(lags, 50),
            percentile(lags, 90),
            percentile(lags, 100),
        );
    }
    let median_lag = percentile(&results[0].1, 50);
    ensure!(
        median_lag < 100,
        "revoke --wait returned {median_lag} ms after the commit at the median"
    );
    connector.wait_ready(Duration::from_secs(5))?;
    Ok(())
}
