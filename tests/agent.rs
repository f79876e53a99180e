//! Agent mode through the binaries: a control plane and agents of two connector ids, each agent
//! in its own network namespace that reaches only its own site (an sshd and an OpenBao holding
//! the sshd's admin key, on the host side of the namespace's veth pair) and the control plane.
//! The control plane has no secret store at all: every action on a target is an agent's.
//!
//! Grants and revokes on both sites; site B's agent killed: its integration shows `connector
//! offline`, its revokes go `RevokeFailed`, then it is killed again in the middle of the revoke
//! backlog, and everything completes when it is back; site A's agent cut off from the control
//! plane past its lease while it holds a revoke: a second agent of the same id takes the revoke
//! over and the first one's late result is refused. No access is left, and the audit chain names
//! the connector of every action.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apono_e2e::{ConnectorConfig, call, ssh_login, ssh_server};
use apono_testkit::fakes::TestCa;
use apono_testkit::{NetNamespace, OpenBao, SshServer};
use serde_json::{Value, json};

const USERS: [&str; 4] = [
    "alice@example.com",
    "bob@example.com",
    "carol@example.com",
    "dave@example.com",
];

/// One site: a network namespace for its agents, its sshd and its OpenBao.
struct Site {
    id: &'static str,
    integration: &'static str,
    netns: NetNamespace,
    sshd: SshServer,
    bao: OpenBao,
}

impl Site {
    fn start(index: u8, id: &'static str, integration: &'static str) -> Result<Self> {
        let netns = NetNamespace::create(index)?;
        let sshd = SshServer::builder()
            .listen_address(netns.host_ip())
            .start()?;
        let bao = OpenBao::start_on(netns.host_ip())?;
        run(bao
            .cli()
            .args(["secrets", "enable", "-version=2", "-path", "kv", "kv"]))?;
        let key_b64 = data_encoding::BASE64.encode(sshd.admin_private_key().as_bytes());
        run(bao.cli().args([
            "kv",
            "put",
            "kv/ssh",
            &format!("base64_private_key={key_b64}"),
        ]))?;
        Ok(Self {
            id,
            integration,
            netns,
            sshd,
            bao,
        })
    }

    fn integration_toml(&self) -> String {
        format!(
            "\n[[integrations]]\nname = \"{}\"\ntype = \"ssh\"\nconnector = \"{}\"\n\
             connected_resource_types = [\"ssh-server\"]\n\
             secret_store = {{ hashicorp_vault = {{ secret_engine = \"kv\", path = \"ssh\" }} }}\n\
             config = {{ servers = [{}] }}\n",
            self.integration,
            self.id,
            ssh_server(&self.sshd, "web", "")
        )
    }
}

/// A running `apono-connector agent` inside a site's namespace, killed when dropped.
struct AgentProcess {
    child: Child,
    log: PathBuf,
}

impl AgentProcess {
    #[allow(clippy::too_many_arguments)]
    fn start(
        bin: &Path,
        site: &Site,
        control_plane: &str,
        ca: &Path,
        credential: &Path,
        log: PathBuf,
    ) -> Result<Self> {
        let vault = json!([{ "address": site.bao.address(), "token": site.bao.root_token() }]);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = site
            .netns
            .command(bin)
            .args(["agent", "--connector-id", site.id, "--control-plane"])
            .arg(control_plane)
            .arg("--ca-file")
            .arg(ca)
            .arg("--credential-file")
            .arg(credential)
            .args([
                "--secret-store",
                "hashicorp_vault",
                "--action-timeout",
                "8s",
            ])
            .env("HASHICORP_VAULT_CONFIG", vault.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .context("starting an agent")?;
        Ok(Self { child, log })
    }

    fn kill(&mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output()?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// Sends `signal` to a process (the sshd namespace's init to freeze or thaw a target).
fn signal(pid: u32, signal: nix::sys::signal::Signal) -> Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid)?), signal)?;
    Ok(())
}

/// The API as the test sees it: the control plane's URL, a client trusting its CA, tokens.
struct Api {
    base: String,
    client: reqwest::Client,
    tokens: Vec<String>,
}

impl Api {
    async fn get(&self, path: &str) -> Result<Value> {
        call(
            &self.client,
            "GET",
            &format!("{}{path}", self.base),
            &self.tokens[0],
            None,
        )
        .await
    }

    async fn post(&self, user: usize, path: &str, body: &Value) -> Result<Value> {
        call(
            &self.client,
            "POST",
            &format!("{}{path}", self.base),
            &self.tokens[user],
            Some(body),
        )
        .await
    }

    /// `user` asks for `web` on `integration` for `duration`; returns the request id.
    async fn request(&self, user: usize, integration: &str, duration: &str) -> Result<String> {
        let request = self
            .post(
                user,
                "/api/v1/access-requests",
                &json!({ "integration": integration, "resource_type": "ssh-server",
                         "resource_ids": ["web"], "permission": "Default", "duration": duration }),
            )
            .await?;
        Ok(request["id"].as_str().context("request id")?.to_owned())
    }

    /// Waits until request `id` has a session whose status is one of `wanted`; returns it.
    async fn session_of(&self, id: &str, wanted: &[&str], limit: Duration) -> Result<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let r = self.get(&format!("/api/v1/access-requests/{id}")).await?;
            if let Some(session) = r["session_ids"][0].as_str() {
                let s = self
                    .get(&format!("/api/v1/access-sessions/{session}"))
                    .await?;
                if wanted.iter().any(|w| s["status"] == *w) {
                    return Ok(s);
                }
                ensure!(
                    Instant::now() < deadline,
                    "session of {id} not {wanted:?}: {s}"
                );
            } else {
                ensure!(
                    Instant::now() < deadline,
                    "request {id} has no session: {r}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The private key and username shown (once) for `session`, the key written to `dir`.
    async fn key(&self, user: usize, session: &Value, dir: &Path) -> Result<(PathBuf, String)> {
        let id = session["id"].as_str().context("session id")?;
        let details = call(
            &self.client,
            "GET",
            &format!("{}/api/v1/access-sessions/{id}/access-details", self.base),
            &self.tokens[user],
            None,
        )
        .await?;
        let key = details["credentials"]["private_key"]
            .as_str()
            .context("private key shown once")?;
        let path = dir.join(id);
        std::fs::write(&path, key)?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let username = details["json"]["username"]
            .as_str()
            .context("username")?
            .to_owned();
        Ok((path, username))
    }

    async fn integration_status(&self, name: &str) -> Result<String> {
        let list = self.get("/api/v1/integrations").await?;
        let found = list
            .as_array()
            .and_then(|l| l.iter().find(|i| i["name"] == name))
            .with_context(|| format!("integration {name} in {list}"))?;
        Ok(found["status"].as_str().unwrap_or_default().to_owned())
    }

    async fn wait_status(&self, name: &str, wanted: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.integration_status(name).await?;
            if status == wanted {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{name} is {status:?}, not {wanted:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The audit records of `subject`, each with its `details` decoded.
    async fn audit(&self, subject: &str) -> Result<Vec<Value>> {
        let records = self
            .get(&format!("/api/v1/audit?subject={subject}"))
            .await?;
        let mut records = records.as_array().cloned().unwrap_or_default();
        for r in &mut records {
            if let Some(text) = r["details"].as_str() {
                r["details"] = serde_json::from_str(text)?;
            }
        }
        Ok(records)
    }

    /// Every record of `action` on `subject` names `connector`, and there is one.
    async fn audited_by(&self, subject: &str, action: &str, connector: &str) -> Result<()> {
        let records = self.audit(subject).await?;
        let of: Vec<&Value> = records.iter().filter(|r| r["action"] == action).collect();
        ensure!(!of.is_empty(), "no {action} of {subject}: {records:?}");
        for r in of {
            ensure!(
                r["details"]["connector"] == connector,
                "{action} of {subject} not by {connector}: {r}"
            );
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_in_their_own_networks() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let site_a = Site::start(1, "site-a", "servers-a")?;
    let site_b = Site::start(2, "site-b", "servers-b")?;
    // Agent A1 reaches the control plane by a second host address, to be cut off alone.
    let a_alt = site_a.netns.add_host_address(5)?;
    let ips: Vec<String> = [
        Ipv4Addr::LOCALHOST,
        site_a.netns.host_ip(),
        a_alt,
        site_b.netns.host_ip(),
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    let ca = TestCa::generate_for(&ip_refs)?;
    let (cert, key, ca_file) = (
        dir.path().join("cp.pem"),
        dir.path().join("cp.key"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cert, ca.server_cert_pem())?;
    std::fs::write(&key, ca.server_key_pem())?;
    std::fs::write(&ca_file, ca.ca_pem())?;
    let port = std::net::TcpListener::bind("0.0.0.0:0")?
        .local_addr()?
        .port();

    let mut template = format!(
        r#"
[connector]
id = "central"
listen = "0.0.0.0:{port}"
data_dir = "{{data}}"
tls_cert = "{}"
tls_key = "{}"
agents = ["site-a", "site-b"]
agent_offline_after = "6s"
action_timeout = "8s"
retry_base = "1s"
retry_max = "2s"
revoke_failed_after_attempts = 3
"#,
        cert.display(),
        key.display()
    );
    for (i, user) in USERS.iter().enumerate() {
        template.push_str(&format!(
            "\n[[users]]\nemail = \"{user}\"\ngroups = [\"developers\"]\nadmin = {}\n",
            i == 0
        ));
    }
    template.push_str(&site_a.integration_toml());
    template.push_str(&site_b.integration_toml());
    template.push_str(
        "\n[[access_flows]]\nname = \"dev\"\ntrigger = \"automatic\"\n\
         requestors = { groups = [\"developers\"] }\ngrant_duration = \"1h\"\n\
         targets = [{ integration = \"servers-a\", resource_type = \"ssh-server\", permissions = [\"Default\"] }, \
                    { integration = \"servers-b\", resource_type = \"ssh-server\", permissions = [\"Default\"] }]\n",
    );
    let config = ConnectorConfig::write(dir.path(), &template)?;
    let credential = |id: &str, file: &str| -> Result<PathBuf> {
        let out = config.command(&["connectors", "create", id]).output()?;
        ensure!(
            out.status.success(),
            "connectors create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout)?;
        ensure!(text.trim().starts_with("apono_agent_"), "{text}");
        let path = dir.path().join(file);
        std::fs::write(&path, text.trim())?;
        Ok(path)
    };
    let (cred_a1, cred_a2, cred_b) = (
        credential("site-a", "a1.cred")?,
        credential("site-a", "a2.cred")?,
        credential("site-b", "b.cred")?,
    );
    let refused = config
        .command(&["connectors", "create", "site-c"])
        .output()?;
    ensure!(
        !refused.status.success(),
        "a credential for an undeclared id"
    );
    let tokens = USERS
        .iter()
        .map(|u| config.token(u))
        .collect::<Result<Vec<_>>>()?;

    // The control plane.
    let cp_log = dir.path().join("control-plane.log");
    let mut control_plane = config
        .command(&["run"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&cp_log)?)
        .spawn()?;
    let client = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(
            ca.ca_pem().as_bytes(),
        )?)
        .build()?;
    let api = Api {
        base: format!("https://127.0.0.1:{port}"),
        client,
        tokens,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.get("/api/v1/me").await.is_err() {
        if let Some(status) = control_plane.try_wait()? {
            bail!(
                "control plane exited {status}: {}",
                std::fs::read_to_string(&cp_log)?
            );
        }
        ensure!(Instant::now() < deadline, "control plane not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cp_log_text = || std::fs::read_to_string(&cp_log).unwrap_or_default();

    // No agent yet: both integrations are offline, and discovery waits.
    ensure!(api.integration_status("servers-a").await? == "connector offline");
    let dry = api
        .post(
            0,
            "/api/v1/access-requests/dry-run",
            &json!({ "integration": "servers-b", "resource_type": "ssh-server",
                     "resource_ids": ["web"], "permission": "Default" }),
        )
        .await?;
    ensure!(dry["integration_status"] == "connector offline", "{dry}");

    // An agent only gets what its credential serves.
    let agent_call = |cred: &Path, id: &str, path: &str, body: Value| {
        let cred = std::fs::read_to_string(cred).unwrap_or_default();
        api.client
            .post(format!("{}{path}", api.base))
            .bearer_auth(cred)
            .header("apono-connector-id", id)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let status = agent_call(&cred_b, "site-a", "/agent/v1/poll", json!({ "free": 1 }))
        .await?
        .status();
    ensure!(
        status == 403,
        "site-b's credential polled for site-a: {status}"
    );
    let forged = json!({ "lease": "site-a/agent-x#1", "kind": "revoke", "subject": "grt_x",
                         "result": { "result": "done" } });
    let status = agent_call(&cred_b, "site-b", "/agent/v1/report", forged)
        .await?
        .status();
    ensure!(status == 403, "site-b reported on site-a's lease: {status}");
    let unheld = json!({ "lease": "site-b/agent-x#1", "kind": "revoke", "subject": "grt_x",
                         "result": { "result": "done" } });
    let status = agent_call(&cred_b, "site-b", "/agent/v1/report", unheld)
        .await?
        .status();
    ensure!(status == 409, "a report on a lease not held: {status}");

    // The agents, each in its own namespace.
    let bin = config.bin.clone();
    let url_a1 = format!("https://{a_alt}:{port}");
    // An agent that pins another CA never talks to the control plane.
    let stranger_ca = dir.path().join("stranger-ca.pem");
    std::fs::write(&stranger_ca, TestCa::generate_for(&ip_refs)?.ca_pem())?;
    let mut stranger = AgentProcess::start(
        &bin,
        &site_a,
        &url_a1,
        &stranger_ca,
        &cred_a1,
        dir.path().join("agent-stranger.log"),
    )?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stranger
        .log_text()
        .contains("cannot poll the control plane")
    {
        ensure!(
            Instant::now() < deadline,
            "no TLS refusal: {}",
            stranger.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(
        stranger.log_text().contains("certificate"),
        "{}",
        stranger.log_text()
    );
    stranger.kill()?;
    ensure!(api.integration_status("servers-a").await? == "connector offline");
    let url_a = format!("https://{}:{port}", site_a.netns.host_ip());
    let url_b = format!("https://{}:{port}", site_b.netns.host_ip());
    let mut agent_a1 = AgentProcess::start(
        &bin,
        &site_a,
        &url_a1,
        &ca_file,
        &cred_a1,
        dir.path().join("agent-a1.log"),
    )?;
    let b_log = dir.path().join("agent-b.log");
    let mut agent_b = AgentProcess::start(&bin, &site_b, &url_b, &ca_file, &cred_b, b_log.clone())?;
    // Site A's namespace reaches site A and the control plane, not site B.
    let crossing = site_a
        .netns
        .command("bash")
        .args([
            "-c",
            &format!(
                "exec 3<>/dev/tcp/{}/{}",
                site_b.sshd.host(),
                site_b.sshd.port()
            ),
        ])
        .output()?;
    ensure!(
        !crossing.status.success(),
        "site A's namespace reaches site B's sshd"
    );

    api.wait_status("servers-a", "active", Duration::from_secs(20))
        .await
        .with_context(|| agent_a1.log_text())?;
    api.wait_status("servers-b", "active", Duration::from_secs(20))
        .await
        .with_context(|| agent_b.log_text())?;
    // Discovery ran through the agents.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resources = api.get("/api/v1/resources").await?;
        let n = resources.as_array().map_or(0, Vec::len);
        if n == 2 {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "not discovered: {resources}\n{}\n{}",
            agent_a1.log_text(),
            cp_log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // ---------------------------------------------------------------- grants on both sites
    let req_a = api.request(0, "servers-a", "1h").await?;
    let req_b = api.request(0, "servers-b", "8s").await?;
    let sess_a = api
        .session_of(&req_a, &["Active"], Duration::from_secs(30))
        .await?;
    let sess_b = api
        .session_of(&req_b, &["Active"], Duration::from_secs(30))
        .await?;
    let (key_a, user_a) = api.key(0, &sess_a, dir.path()).await?;
    let (key_b, user_b) = api.key(0, &sess_b, dir.path()).await?;
    ensure!(ssh_login(&site_a.sshd, &key_a, &user_a)?, "login on site A");
    ensure!(ssh_login(&site_b.sshd, &key_b, &user_b)?, "login on site B");
    // Expiry on site B: revoked by its agent within the lag bound.
    let ended_b = api
        .session_of(&req_b, &["Revoked"], Duration::from_secs(30))
        .await?;
    let at = |s: &Value, key: &str| -> Result<chrono::DateTime<chrono::Utc>> {
        serde_json::from_value(s[key].clone()).with_context(|| format!("{key} in {s}"))
    };
    let lag = at(&ended_b, "revoked_at")? - at(&ended_b, "expires_at")?;
    ensure!(
        lag.num_milliseconds() < 5_000,
        "revoke lag through the agent: {lag}"
    );
    ensure!(
        !ssh_login(&site_b.sshd, &key_b, &user_b)?,
        "login on B after expiry"
    );
    let sess_a_id = sess_a["id"].as_str().context("id")?.to_owned();
    let sess_b_id = ended_b["id"].as_str().context("id")?.to_owned();
    for action in [
        "grant.started",
        "grant.succeeded",
        "revoke.started",
        "revoke.succeeded",
    ] {
        api.audited_by(&sess_b_id, action, "site-b").await?;
    }
    let records_a = api.audit(&sess_a_id).await?;
    ensure!(
        records_a
            .iter()
            .any(|r| r["details"]["connector"] == "site-a"),
        "site A's grant not audited as site-a's: {records_a:?}"
    );
    ensure!(
        !records_a.iter().any(
            |r| r["details"]["connector"] == "central" || r["details"]["connector"] == "site-b"
        ),
        "site A's grant audited as another connector's: {records_a:?}"
    );

    // ---------------------------------------------------------------- site B offline
    let mut backlog = Vec::new();
    for user in 1..4 {
        backlog.push(api.request(user, "servers-b", "6s").await?);
    }
    let mut keys_b = Vec::new();
    for (i, req) in backlog.iter().enumerate() {
        let s = api
            .session_of(req, &["Active"], Duration::from_secs(30))
            .await?;
        keys_b.push(api.key(i + 1, &s, dir.path()).await?);
    }
    agent_b.kill()?;
    api.wait_status("servers-b", "connector offline", Duration::from_secs(15))
        .await?;
    // The inventory says so too, for site B's resources only.
    let resources = api.get("/api/v1/resources").await?;
    let resources = resources.as_array().context("a list of resources")?;
    for site in ["servers-a", "servers-b"] {
        let of_site: Vec<_> = resources
            .iter()
            .filter(|r| r["integration"] == site)
            .collect();
        ensure!(!of_site.is_empty(), "no resource of {site}: {resources:?}");
        let offline = site == "servers-b";
        ensure!(
            of_site
                .iter()
                .all(|r| (r["integration_status"] == "connector offline") == offline),
            "{site}: {of_site:?}"
        );
    }
    // The revokes fail for want of the connector, as for an unreachable target.
    for req in &backlog {
        let s = api
            .session_of(req, &["RevokeFailed"], Duration::from_secs(40))
            .await?;
        ensure!(
            s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("offline")),
            "{s}"
        );
    }
    // The agent comes back while the target is frozen, takes the backlog and is killed
    // holding it.
    signal(
        site_b.sshd.namespace_pid(),
        nix::sys::signal::Signal::SIGSTOP,
    )?;
    let mut agent_b = AgentProcess::start(&bin, &site_b, &url_b, &ca_file, &cred_b, b_log.clone())?;
    let first = api
        .session_of(&backlog[0], &["Revoking"], Duration::from_secs(20))
        .await
        .with_context(|| agent_b.log_text())?;
    ensure!(first["status"] == "Revoking");
    agent_b.kill()?;
    signal(
        site_b.sshd.namespace_pid(),
        nix::sys::signal::Signal::SIGCONT,
    )?;
    let _agent_b = AgentProcess::start(&bin, &site_b, &url_b, &ca_file, &cred_b, b_log.clone())?;
    for req in &backlog {
        // The killed agent's leases end (2 × 8 s + 10 s), then the work is sent again.
        api.session_of(req, &["Revoked"], Duration::from_secs(60))
            .await
            .with_context(|| std::fs::read_to_string(&b_log).unwrap_or_default())?;
    }
    for (key, user) in &keys_b {
        ensure!(
            !ssh_login(&site_b.sshd, key, user)?,
            "login on site B after the backlog"
        );
    }

    // ---------------------------------------------------------------- site A cut off
    let req_bob = api.request(1, "servers-a", "1h").await?;
    let sess_bob = api
        .session_of(&req_bob, &["Active"], Duration::from_secs(30))
        .await?;
    let (key_bob, user_bob) = api.key(1, &sess_bob, dir.path()).await?;
    ensure!(
        ssh_login(&site_a.sshd, &key_bob, &user_bob)?,
        "bob on site A"
    );
    signal(
        site_a.sshd.namespace_pid(),
        nix::sys::signal::Signal::SIGSTOP,
    )?;
    api.post(
        1,
        &format!("/api/v1/access-requests/{req_bob}/revoke"),
        &json!({}),
    )
    .await?;
    api.session_of(&req_bob, &["Revoking"], Duration::from_secs(10))
        .await?;
    // A1 holds the revoke: cut it off from the control plane, then let the target answer.
    site_a.netns.block(a_alt)?;
    signal(
        site_a.sshd.namespace_pid(),
        nix::sys::signal::Signal::SIGCONT,
    )?;
    let cut_at = Instant::now();
    // A second agent of the same id takes over once A1's lease ends.
    let agent_a2 = AgentProcess::start(
        &bin,
        &site_a,
        &url_a,
        &ca_file,
        &cred_a2,
        dir.path().join("agent-a2.log"),
    )?;
    let ended_bob = api
        .session_of(&req_bob, &["Revoked"], Duration::from_secs(60))
        .await
        .with_context(|| agent_a2.log_text())?;
    ensure!(
        cut_at.elapsed() > Duration::from_secs(5),
        "revoked before A1's lease could end: {ended_bob}"
    );
    ensure!(
        !ssh_login(&site_a.sshd, &key_bob, &user_bob)?,
        "bob after revoke"
    );
    // A1 is back: its late result is refused.
    site_a.netns.unblock(a_alt)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let bob_id = ended_bob["id"].as_str().context("id")?.to_owned();
    loop {
        let refusals: Vec<Value> = api
            .audit(&bob_id)
            .await?
            .into_iter()
            .filter(|r| r["action"] == "agent.report" && r["outcome"] == "denied")
            .collect();
        if let Some(r) = refusals.first() {
            ensure!(r["actor"] == "agent:site-a", "{r}");
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "A1's late result not refused: {}",
            agent_a1.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ensure!(
        agent_a1.log_text().contains("result refused"),
        "{}",
        agent_a1.log_text()
    );
    // One revoke recorded, by site A's connector; nothing by another.
    let records = api.audit(&bob_id).await?;
    let succeeded = records
        .iter()
        .filter(|r| r["action"] == "revoke.succeeded")
        .count();
    ensure!(succeeded == 1, "{records:?}");
    api.audited_by(&bob_id, "revoke.succeeded", "site-a")
        .await?;

    // ---------------------------------------------------------------- nothing left
    api.post(
        0,
        &format!("/api/v1/access-requests/{req_a}/revoke"),
        &json!({}),
    )
    .await?;
    api.session_of(&req_a, &["Revoked"], Duration::from_secs(30))
        .await?;
    ensure!(
        !ssh_login(&site_a.sshd, &key_a, &user_a)?,
        "alice on A after revoke"
    );
    agent_a1.kill()?;
    drop(agent_a2);
    control_plane.kill()?;
    control_plane.wait()?;
    let verify = config.command(&["audit", "verify"]).output()?;
    ensure!(
        verify.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    Ok(())
}
