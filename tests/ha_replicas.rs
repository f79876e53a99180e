//! Three `apono-connector run` replicas on one PostgreSQL database, against a real sshd.
//!
//! 1. A storm like the crash test's (requests, approvals, expiries, early revokes, one-time
//!    credentials asked of two replicas at once) while replicas are SIGKILLed and restarted at
//!    random.
//! 2. Fencing: one replica, reaching PostgreSQL through a TCP proxy in this test, is the only
//!    one running while a burst of grants arrives; the moment it holds them, the proxy cuts it
//!    off (every connection reset, new ones refused) for longer than its lease, and the others
//!    resume. They take the expired leases over and finish the work; when the proxy lets the
//!    cut replica back, its late outcomes are refused (the log says so) and nothing is
//!    recorded twice.
//!
//! Afterwards: nothing granted remains on the target, no grant is `Active` or `Granting`,
//! every grant's success, revoke and credential view is in the audit log at most once, the
//! one-time credentials were shown exactly once wherever asked, and `audit verify` passes from
//! every replica, naming one key.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apono_e2e::{
    Connector, ConnectorConfig, XorShift, call as send, leftovers, ssh_secret_store, ssh_server,
};
use apono_testkit::{Postgres, SshServer};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

const USERS: usize = 12;
const SERVERS: usize = 8;
/// At most `USERS × SERVERS`: no user asks twice for one server, so no request extends a
/// grant and every grant succeeds, is revoked and shows its credentials once.
const CYCLES: usize = 90;
const REPLICAS: usize = 3;
/// The lease is `2 × action_timeout + 10 s` = 14 s; the cut lasts longer.
const CUT: Duration = Duration::from_secs(20);

/// A TCP proxy to PostgreSQL that can cut its replica off: every connection reset and the
/// port closed (connections refused, as when the database is unreachable) until restored.
struct Proxy {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
    links: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Result<Self> {
        let addr = TcpListener::bind("127.0.0.1:0").await?.local_addr()?;
        let (cut, mut watch) = tokio::sync::watch::channel(false);
        let links: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let l = links.clone();
        tokio::spawn(async move {
            loop {
                // Cut: no listener at all, so connecting is refused.
                while *watch.borrow_and_update() {
                    if watch.changed().await.is_err() {
                        return;
                    }
                }
                let Ok(listener) = TcpListener::bind(addr).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                loop {
                    tokio::select! {
                        changed = watch.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            if *watch.borrow() {
                                break; // drops the listener
                            }
                        }
                        accepted = listener.accept() => {
                            let Ok((mut client, _)) = accepted else { continue };
                            let link = tokio::spawn(async move {
                                if let Ok(mut server) = TcpStream::connect(upstream).await {
                                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                                }
                            });
                            l.lock().unwrap().push(link.abort_handle());
                        }
                    }
                }
            }
        });
        Ok(Self { addr, cut, links })
    }

    /// Resets every connection and refuses new ones until [`Proxy::restore`].
    fn cut(&self) {
        let _ = self.cut.send(true);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        let _ = self.cut.send(false);
    }
}

fn signal(connector: &Connector, signal: nix::sys::signal::Signal) -> Result<()> {
    let pid = i32::try_from(connector.pid())?;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)?;
    Ok(())
}

/// Sends to the replicas in turn, starting at `first`, until one answers (a replica may be
/// down); gives up after 30 s.
async fn any(
    client: &reqwest::Client,
    urls: &[String],
    first: usize,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = first;
    loop {
        match send(
            client,
            method,
            &format!("{}{path}", urls[i % urls.len()]),
            token,
            body,
        )
        .await
        {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() > deadline => return Err(e),
            // A refusal the API means (not a replica being down) is final.
            Err(e) if e.to_string().contains(": 4") => return Err(e),
            Err(_) => {
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Asks two replicas at once for a session's access details once it is `Active`; returns
/// whether one-time credentials were waiting (`credential_status` `new`; a grant completed
/// only after its expiry has none) and how many answers carried the private key (`None` when
/// a replica was down or the session ended first).
/// Waits (150 s at most) until every session is `Revoked` or `Failed` and nothing granted is
/// left on the target; returns the sessions.
async fn settled(
    client: &reqwest::Client,
    url: &str,
    admin: &str,
    server: &SshServer,
) -> Result<Vec<Value>> {
    let settle = Instant::now() + Duration::from_secs(150);
    loop {
        let sessions = send(
            client,
            "GET",
            &format!("{url}/api/v1/access-sessions?all=true"),
            admin,
            None,
        )
        .await
        .ok();
        let left = leftovers(server)?;
        if let Some(list) = sessions.as_ref().and_then(Value::as_array) {
            let open = list
                .iter()
                .filter(|s| !matches!(s["status"].as_str(), Some("Revoked" | "Failed")))
                .count();
            if open == 0 && left.is_empty() {
                return Ok(list.clone());
            }
        }
        if Instant::now() > settle {
            bail!(
                "not settled: leftovers {left:?}; sessions {}",
                sessions.map(|s| s.to_string()).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn show_twice(
    client: reqwest::Client,
    urls: Vec<String>,
    token: String,
    request_id: String,
    seed: usize,
) -> Option<(bool, usize)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let session = loop {
        if Instant::now() > deadline {
            return None;
        }
        if let Ok(r) = any(
            &client,
            &urls,
            seed,
            "GET",
            &format!("/api/v1/access-requests/{request_id}"),
            &token,
            None,
        )
        .await
            && let Some(id) = r["session_ids"][0].as_str()
            && let Ok(s) = any(
                &client,
                &urls,
                seed,
                "GET",
                &format!("/api/v1/access-sessions/{id}"),
                &token,
                None,
            )
            .await
        {
            match s["status"].as_str() {
                Some("Active") => break (id.to_owned(), s["credential_status"] == "new"),
                Some("Revoked" | "Failed" | "Revoking") => return None,
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (session, waiting) = session;
    let path = format!("/api/v1/access-sessions/{session}/access-details");
    let first = format!("{}{path}", urls[seed % urls.len()]);
    let second = format!("{}{path}", urls[(seed + 1) % urls.len()]);
    let (a, b) = tokio::join!(
        send(&client, "GET", &first, &token, None),
        send(&client, "GET", &second, &token, None),
    );
    let (a, b) = (a.ok()?, b.ok()?);
    Some((
        waiting,
        [a, b]
            .iter()
            .filter(|d| d["credentials"]["private_key"].is_string())
            .count(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[allow(clippy::print_stdout)] // the run's summary
async fn three_replicas_survive_kills_and_a_cut_off_replica_is_fenced() -> Result<()> {
    let server = SshServer::start()?;
    let pg = Postgres::start()?;
    let proxy = Proxy::start(SocketAddr::from(([127, 0, 0, 1], pg.port()))).await?;
    let dirs: Vec<tempfile::TempDir> = (0..REPLICAS)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    let key = dirs[0].path().join("master.key");
    std::fs::write(&key, "6b".repeat(32))?;
    let mut template = format!(
        r#"
[connector]
id = "ha"
listen = "{{listen}}"
data_dir = "{{data}}"
database_url = "{{database}}"
master_key = {{ file = "{key}" }}
action_timeout = "2s"
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
grant_duration = "6s"

[[access_flows]]
name = "contract"
trigger = "self_serve"
requestors = {{ groups = ["contractors"] }}
targets = [{{ integration = "servers", resource_type = "ssh-server", permissions = ["Default"] }}]
approvers = {{ users = ["root@example.com"] }}
grant_duration = "6s"
"#,
        key = key.display(),
        secret_store = ssh_secret_store(&server),
        servers = (0..SERVERS)
            .map(|i| ssh_server(&server, &format!("web-{i}"), ""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    for u in 0..USERS {
        let group = if u % 3 == 2 {
            "contractors"
        } else {
            "developers"
        };
        template.push_str(&format!(
            "\n[[users]]\nemail = \"u{u:02}@example.com\"\ngroups = [\"{group}\"]\n"
        ));
    }
    // Replicas 0 and 1 reach PostgreSQL directly, replica 2 through the proxy.
    let direct = pg.url();
    let proxied = direct.replace(
        &format!(":{}/", pg.port()),
        &format!(":{}/", proxy.addr.port()),
    );
    ensure!(proxied != direct, "{direct}");
    let configs: Vec<ConnectorConfig> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let url = if i == 2 { &proxied } else { &direct };
            ConnectorConfig::write(d.path(), &template.replace("{database}", url))
        })
        .collect::<Result<_>>()?;
    let admin = configs[0].token("root@example.com")?;
    let tokens: Vec<String> = (0..USERS)
        .map(|u| configs[u % REPLICAS].token(&format!("u{u:02}@example.com")))
        .collect::<Result<_>>()?;
    let replicas: Vec<Connector> = configs.iter().map(|c| c.start()).collect::<Result<_>>()?;
    let urls: Vec<String> = replicas.iter().map(|r| r.url.clone()).collect();
    let replicas: Vec<Arc<Mutex<Connector>>> = replicas
        .into_iter()
        .map(|r| Arc::new(Mutex::new(r)))
        .collect();
    let client = reqwest::Client::new();

    // Discovery, seen from every replica.
    let ready = Instant::now() + Duration::from_secs(60);
    for url in &urls {
        loop {
            if let Ok(r) = send(
                &client,
                "GET",
                &format!("{url}/api/v1/resources"),
                &admin,
                None,
            )
            .await
                && r.as_array().is_some_and(|a| a.len() == SERVERS)
            {
                break;
            }
            ensure!(Instant::now() < ready, "discovery not seen from {url}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // ---------------------------------------------------------------- 1. the storm
    let done = Arc::new(AtomicBool::new(false));
    let killer = {
        let (replicas, done) = (replicas.clone(), done.clone());
        tokio::task::spawn_blocking(move || -> Result<usize> {
            let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
            let mut kills = 0;
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(400 + rng.next(1600)));
                let victim = usize::try_from(rng.next(REPLICAS as u64))?;
                replicas[victim].lock().unwrap().kill_and_restart()?; // SIGKILL
                kills += 1;
            }
            Ok(kills)
        })
    };
    let mut shows = Vec::new();
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let (mut revoked_early, mut approved) = (0, 0);
    for cycle in 0..CYCLES {
        let (u, s) = (cycle % USERS, (cycle / USERS) % SERVERS);
        let body = json!({ "integration": "servers", "resource_type": "ssh-server", "resource_ids": [format!("web-{s}")], "permission": "Default", "duration": format!("{}s", 2 + cycle % 4), "justification": "storm" });
        let request = any(
            &client,
            &urls,
            cycle,
            "POST",
            "/api/v1/access-requests",
            &tokens[u],
            Some(&body),
        )
        .await?;
        let id = request["id"].as_str().context("request id")?.to_owned();
        if request["status"] == "Pending" {
            any(
                &client,
                &urls,
                cycle + 1,
                "POST",
                &format!("/api/v1/access-requests/{id}/approve"),
                &admin,
                None,
            )
            .await?;
            approved += 1;
        }
        if cycle % 4 == 1 {
            shows.push(tokio::spawn(show_twice(
                client.clone(),
                urls.clone(),
                tokens[u].clone(),
                id.clone(),
                cycle,
            )));
        } else if rng.next(5) == 0 {
            tokio::time::sleep(Duration::from_millis(rng.next(600))).await;
            any(
                &client,
                &urls,
                cycle + 2,
                "POST",
                &format!("/api/v1/access-requests/{id}/revoke"),
                &tokens[u],
                None,
            )
            .await?;
            revoked_early += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    done.store(true, Ordering::SeqCst);
    let kills = killer.await??;
    ensure!(kills >= 5, "only {kills} kills");
    let (mut asked, mut shown_once) = (0, 0);
    for show in shows {
        match show.await? {
            Some((true, n)) => {
                asked += 1;
                shown_once += n;
            }
            Some((false, n)) => ensure!(n == 0, "credentials of a late grant shown {n} times"),
            None => {}
        }
    }
    for r in &replicas {
        r.lock().unwrap().wait_ready(Duration::from_secs(30))?;
    }
    // Quiet before the next phase: no replica is inside a transaction when two are stopped.
    let storm_sessions = settled(&client, &urls[0], &admin, &server).await?.len();

    // ---------------------------------------------------------------- 2. fencing
    // Only replica 2 runs while a burst arrives; it is cut off the moment it holds the work.
    for r in &replicas[..2] {
        signal(&r.lock().unwrap(), nix::sys::signal::Signal::SIGSTOP)?;
    }
    let mut burst = Vec::new();
    for (n, u) in (0..USERS).filter(|u| u % 3 != 2).take(6).enumerate() {
        let body = json!({ "integration": "servers", "resource_type": "ssh-server", "resource_ids": [format!("web-{}", n % SERVERS)], "permission": "Default", "duration": "5s" });
        let r = send(
            &client,
            "POST",
            &format!("{}/api/v1/access-requests", urls[2]),
            &tokens[u],
            Some(&body),
        )
        .await?;
        burst.push(r["id"].as_str().context("id")?.to_owned());
    }
    // Replica 2 claims at once (the request wakes its scheduler): its claim moves the grants to
    // `Granting`, and their actions take a few hundred milliseconds on sshd. Cut while they run.
    let claimed_by = Instant::now() + Duration::from_secs(5);
    loop {
        let granting = send(
            &client,
            "GET",
            &format!("{}/api/v1/access-sessions?all=true", urls[2]),
            &admin,
            None,
        )
        .await?
        .as_array()
        .map_or(0, |a| {
            a.iter().filter(|s| s["status"] == "Granting").count()
        });
        if granting > 0 || Instant::now() > claimed_by {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.cut();
    let cut_at = Instant::now();
    for r in &replicas[..2] {
        signal(&r.lock().unwrap(), nix::sys::signal::Signal::SIGCONT)?;
    }
    tokio::time::sleep(CUT.saturating_sub(cut_at.elapsed())).await;
    proxy.restore();

    // ---------------------------------------------------------------- settle and check
    let sessions = settled(&client, &urls[0], &admin, &server).await?;
    ensure!(
        sessions
            .iter()
            .all(|s| !matches!(s["status"].as_str(), Some("Active" | "Granting"))),
        "a grant is still Active or Granting"
    );

    // Every effect recorded once: per grant, at most one success, one revoke, one view.
    let mut after = 0;
    let mut records = Vec::new();
    loop {
        let page = send(
            &client,
            "GET",
            &format!("{}/api/v1/audit?after={after}&limit=5000", urls[1]),
            &admin,
            None,
        )
        .await?;
        let page = page.as_array().context("audit page")?.clone();
        let Some(last) = page.last() else { break };
        after = last["seq"].as_i64().context("seq")?;
        records.extend(page);
    }
    let mut per: HashMap<(String, String), usize> = HashMap::new();
    for r in &records {
        let action = r["action"].as_str().unwrap_or_default();
        let shown = action == "session.access_details"
            && r["details"]
                .as_str()
                .is_some_and(|d| d.contains("\"credentials_shown\":true"));
        if matches!(action, "grant.succeeded" | "revoke.succeeded") || shown {
            *per.entry((
                action.to_owned(),
                r["subject"].as_str().unwrap_or_default().to_owned(),
            ))
            .or_default() += 1;
        }
    }
    let twice: Vec<_> = per.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(twice.is_empty(), "recorded more than once: {twice:?}");
    let text = serde_json::to_string(&records)?;
    ensure!(
        !text.contains("PRIVATE KEY"),
        "a private key in the audit log"
    );
    for id in &burst {
        let r = send(
            &client,
            "GET",
            &format!("{}/api/v1/access-requests/{id}", urls[0]),
            &admin,
            None,
        )
        .await?;
        ensure!(r["status"] == "Revoked", "burst request {id}: {r}");
    }

    // The cut replica lost its leases: its late outcomes, written once it reaches the database
    // again (its pool retries for 30 s), are refused.
    let fence = "the job's lease ended before its outcome was recorded";
    let mut connector = replicas[2].lock().unwrap();
    let waited = connector.wait(Duration::from_secs(40), || {
        std::fs::read_to_string(&configs[2].log).is_ok_and(|l| l.contains(fence))
    });
    let cut_log = connector.log_text();
    drop(connector);
    let fenced = cut_log.matches(fence).count();
    ensure!(
        waited.is_ok() && fenced >= 1,
        "replica 2 recorded no fenced outcome: {}",
        cut_log
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The audit chain, verified from every replica with the one key.
    let mut key_ids = Vec::new();
    for (i, r) in replicas.iter().enumerate() {
        let status = r.lock().unwrap().terminate()?;
        ensure!(status.success(), "replica {i} exit after SIGTERM");
        let verify = configs[i].command(&["audit", "verify"]).output()?;
        let out = String::from_utf8_lossy(&verify.stdout).into_owned();
        ensure!(
            verify.status.success() && out.contains("audit chain intact"),
            "audit verify from replica {i}: {out} {}",
            String::from_utf8_lossy(&verify.stderr)
        );
        key_ids.push(
            out.split("with key ")
                .nth(1)
                .map(|k| k.split(' ').next().unwrap_or("").to_owned()),
        );
    }
    ensure!(
        key_ids.iter().all(|k| k.is_some() && *k == key_ids[0]),
        "{key_ids:?}"
    );
    println!(
        "ha test: {CYCLES} requests ({approved} approved, {revoked_early} revoked early), {storm_sessions} sessions in the storm, {} in all, {kills} SIGKILLs over {REPLICAS} replicas, one-time credentials shown once in {}/{asked} double asks, replica 2 cut off for {CUT:?} with {fenced} fenced outcomes, {} audit records",
        sessions.len(),
        shown_once,
        records.len()
    );
    ensure!(
        asked >= 3 && shown_once == asked,
        "credentials shown once in {shown_once} of {asked} double asks"
    );
    Ok(())
}
