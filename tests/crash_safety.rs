//! Crash safety through the binary on a real sshd: 200 grant/revoke cycles with short
//! durations while the connector is SIGKILLed at random moments and restarted. Afterwards no
//! account, key or group granted by the connector remains on the target, no grant is left
//! `Active` or `Granting`, and the audit chain is intact.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apono_e2e::{ConnectorConfig, XorShift, call as send, leftovers, ssh_secret_store, ssh_server};
use apono_testkit::SshServer;
use serde_json::json;

const USERS: usize = 20;
const SERVERS: usize = 10;
const CYCLES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)] // the run's summary
async fn sigkill_during_200_cycles_leaves_nothing_behind() -> Result<()> {
    let server = SshServer::start()?;
    let dir = tempfile::tempdir()?;
    let mut config = format!(
        r#"
[connector]
id = "crash"
listen = "{{listen}}"
data_dir = "{{data}}"
retry_base = "1s"
retry_max = "2s"
max_concurrent_actions = 8
max_concurrent_per_target = 2
shutdown_grace = "1s"

[[users]]
email = "root@example.com"
admin = true

[[integrations]]
name = "servers"
type = "ssh"
secret_store = {secret_store}
credentials_cleanup_period_in_days = 0
config = {{ servers = [{servers}] }}

[[access_flows]]
name = "dev"
trigger = "automatic"
requestors = {{ groups = ["developers"] }}
targets = [{{ integration = "servers", resource_type = "ssh-server", permissions = ["Default"] }}]
grant_duration = "3s"
"#,
        secret_store = ssh_secret_store(&server),
        servers = (0..SERVERS)
            .map(|i| ssh_server(&server, &format!("web-{i}"), ""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    for u in 0..USERS {
        config.push_str(&format!(
            "\n[[users]]\nemail = \"u{u:02}@example.com\"\ngroups = [\"developers\"]\n"
        ));
    }
    let config = ConnectorConfig::write(dir.path(), &config)?;
    let token = |email: &str| config.token(email);
    let admin = token("root@example.com")?;
    let tokens: Vec<String> = (0..USERS)
        .map(|u| token(&format!("u{u:02}@example.com")))
        .collect::<Result<_>>()?;

    let connector = config.start()?;
    let base = connector.url.clone();
    let connector = Arc::new(Mutex::new(connector));
    let client = reqwest::Client::new();
    // Wait for discovery before the storm.
    let ready = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = send(
            &client,
            "GET",
            &format!("{base}/api/v1/resources"),
            &admin,
            None,
        )
        .await
            && r.as_array().is_some_and(|a| a.len() == SERVERS)
        {
            break;
        }
        ensure!(
            Instant::now() < ready,
            "not ready: {}",
            connector.lock().unwrap().log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (connector, done) = (connector.clone(), done.clone());
        tokio::task::spawn_blocking(move || -> Result<usize> {
            let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
            let mut kills = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(300 + rng.next(2200)));
                connector.lock().unwrap().kill_and_restart()?; // SIGKILL
                kills += 1;
            }
            Ok(kills)
        })
    };

    let mut created = 0;
    let deadline = Instant::now() + Duration::from_secs(150);
    for cycle in 0..CYCLES {
        let (u, s) = (cycle % USERS, (cycle / USERS) % SERVERS);
        let body = json!({ "integration": "servers", "resource_type": "ssh-server", "resource_ids": [format!("web-{s}")], "permission": "Default", "duration": format!("{}s", 1 + cycle % 3) });
        loop {
            ensure!(Instant::now() < deadline, "only {created} requests created");
            match send(
                &client,
                "POST",
                &format!("{base}/api/v1/access-requests"),
                &tokens[u],
                Some(&body),
            )
            .await
            {
                Ok(_) => break,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        created += 1;
        // Spread the cycles over ~30 s so that kills land in every phase.
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let kills = killer.await??;
    ensure!(kills >= 3, "only {kills} kills");

    // Let the (last) connector finish: every grant Revoked or Failed, and the target clean.
    let settle = Instant::now() + Duration::from_secs(120);
    let (sessions, left) = loop {
        let sessions = send(
            &client,
            "GET",
            &format!("{base}/api/v1/access-sessions?all=true"),
            &admin,
            None,
        )
        .await
        .ok();
        let left = leftovers(&server)?;
        if let Some(sessions) = &sessions {
            let open = sessions.as_array().map_or(0, |a| {
                a.iter()
                    .filter(|s| !matches!(s["status"].as_str(), Some("Revoked" | "Failed")))
                    .count()
            });
            if open == 0 && left.is_empty() {
                break (sessions.clone(), left);
            }
        }
        if Instant::now() > settle {
            bail!(
                "not settled: leftovers {left:?}; sessions {}",
                sessions.map(|s| s.to_string()).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let sessions = sessions.as_array().context("sessions")?;
    let failed = sessions.iter().filter(|s| s["status"] == "Failed").count();
    println!(
        "crash test: {created} requests, {} sessions ({failed} failed), {kills} SIGKILLs, leftovers {left:?}",
        sessions.len()
    );
    ensure!(
        sessions.len() >= SERVERS,
        "too few sessions: {}",
        sessions.len()
    );

    let status = connector.lock().unwrap().terminate()?;
    ensure!(status.success(), "exit after SIGTERM");
    let verify = config.command(&["audit", "verify"]).output()?;
    ensure!(
        verify.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    Ok(())
}
