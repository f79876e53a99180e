//! Sign-in through a real OpenID provider: `oidc-provider` (a certified implementation, run
//! by `tests/oidc/provider.mjs` on loopback; `scripts/test.sh` installs it with `npm ci`),
//! against the real connector and CLI binaries. What a person does in the browser at the
//! provider (log in, consent, confirm a device) is done over HTTP by `tests/oidc/browse.mjs`.
//!
//! Proven here: `apono login --sso` (loopback redirect, PKCE) and `--device` end to end; the
//! portal's "Sign in with …" in headless Chromium (`tests/oidc/portal-sso.mjs`); ID
//! tokens with a wrong audience, a wrong issuer, an expired one, `alg=none`, HS256 signed with
//! the provider's public key, a wrong nonce and a key the provider does not publish are each
//! refused, and so is a replayed state; a static user's email cannot be taken; someone moved
//! out of the approvers' group at the provider can no longer approve once `groups_max_age` has
//! passed; someone the provider disabled can no longer act and their grant is revoked; `apono
//! logout` revokes the token; a provider restarted with a new signing key is followed (the
//! key set is fetched again for an unknown key id); a restart keeps a signed-in user's grant;
//! no IdP token and not the client secret are in the connector's log.
//!
//! The whole walk runs twice: on SQLite and on a real PostgreSQL (the test kit's).
//!
//! Nothing is skipped: without node or `tests/oidc/node_modules` this fails, saying so.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use apono_e2e::{Connector, call, cli_bin, ssh_secret_store, ssh_server};
use apono_testkit::{Postgres, SshServer};
use serde_json::{Value, json};

const CLIENT_ID: &str = "apono-connector";
const CLIENT_SECRET: &str = "client-secret-9f3b1c7a5d";
const CAROL: &str = "carol@example.com";

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// The provider, stopped when dropped.
struct Provider {
    child: Child,
    issuer: String,
    /// The id of its signing key.
    kid: String,
    port: u16,
    tokens: PathBuf,
}

impl Provider {
    /// Starts the provider on a free port, or on `port` (a restart: the same issuer with a new
    /// signing key).
    fn start(dir: &Path, port: Option<u16>) -> Result<Self> {
        ensure!(
            oidc_dir().join("node_modules/oidc-provider").is_dir(),
            "tests/oidc/node_modules is missing: scripts/test.sh runs npm ci there"
        );
        let port = match port {
            Some(port) => port,
            None => std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port(),
        };
        let tokens = dir.join("issued-tokens");
        let mut child = Command::new("node")
            .arg(oidc_dir().join("provider.mjs"))
            .args([&port.to_string(), CLIENT_ID, CLIENT_SECRET])
            .arg(&tokens)
            .current_dir(oidc_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting node (scripts/test.sh installs it)")?;
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
        stdout.read_line(&mut line)?;
        // The provider prints notices later: keep reading, or it dies of a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let ready: Value = serde_json::from_str(&line)
            .with_context(|| format!("the provider did not start: {line:?}"))?;
        Ok(Self {
            child,
            issuer: ready["issuer"].as_str().context("issuer")?.to_owned(),
            kid: ready["kid"].as_str().context("kid")?.to_owned(),
            port,
            tokens,
        })
    }

    async fn admin(&self, path: &str, body: &Value) -> Result<()> {
        let resp = reqwest::Client::new()
            .post(format!("{}{path}", self.issuer))
            .body(body.to_string())
            .send()
            .await?;
        ensure!(resp.status().is_success(), "{path}: {}", resp.status());
        Ok(())
    }

    async fn user(&self, login: &str, groups: &[&str], disabled: bool) -> Result<()> {
        self.admin(
            &format!("/admin/users/{login}"),
            &json!({ "email": format!("{login}@example.com"), "groups": groups, "disabled": disabled }),
        )
        .await
    }

    fn issued(&self) -> Vec<String> {
        std::fs::read_to_string(&self.tokens)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// developers request through `ops`; the IdP's `okta-sre` (mapped to `sre`) approve; carol is a
/// static admin (break-glass) whose email the IdP cannot take.
fn config(server: &SshServer, issuer: &str, store: &str) -> String {
    format!(
        r#"
[connector]
id = "sso-e2e"
listen = "{{listen}}"
data_dir = "{{data}}"
{store}

[[users]]
email = "{CAROL}"
admin = true

[[identity_providers]]
name = "corp"
display_name = "Corp SSO"
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
client_secret = {{ apono = {{ parameters = {{ client_secret = "{CLIENT_SECRET}" }} }} }}
group_mapping = {{ "okta-sre" = "sre" }}
allowed_email_domains = ["example.com"]
groups_max_age = "3s"

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
approvers = {{ groups = ["sre"] }}
targets = [{{ integration = "servers", resource_type = "ssh-server", permissions = ["Default"] }}]
grant_duration = "10m"
"#,
        secret_store = ssh_secret_store(server),
        web_1 = ssh_server(server, "web-1", ""),
    )
}

/// `node browse.mjs URL LOGIN [stop]`: its one JSON line.
fn browse(url: &str, login: &str, stop: bool) -> Result<Value> {
    let mut cmd = Command::new("node");
    cmd.arg(oidc_dir().join("browse.mjs")).args([url, login]);
    if stop {
        cmd.arg("stop");
    }
    let out = cmd.current_dir(oidc_dir()).output()?;
    ensure!(
        out.status.success(),
        "browse.mjs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// A sign-in through the API as the CLI makes it, the browser's part by `browse.mjs`, up to
/// the redirect back: `(state, code)`.
async fn authorize(client: &reqwest::Client, base: &str, login: &str) -> Result<(String, String)> {
    let started = call(
        client,
        "POST",
        &format!("{base}/api/v1/auth/oidc/start"),
        "",
        Some(&json!({ "redirect_uri": "http://127.0.0.1:9/callback" })),
    )
    .await?;
    let url = started["authorization_url"].as_str().context("url")?;
    let back = browse(url, login, true)?;
    let back = reqwest::Url::parse(back["url"].as_str().context("redirect")?)?;
    ensure!(
        back.port() == Some(9) && back.path() == "/callback",
        "{back}"
    );
    let get = |k: &str| {
        back.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .with_context(|| format!("{k} missing from {back}"))
    };
    let state = get("state")?;
    ensure!(state == started["state"], "the state came back changed");
    Ok((state, get("code")?))
}

/// POSTs the callback: the status and the JSON answer.
async fn callback(
    client: &reqwest::Client,
    base: &str,
    state: &str,
    code: &str,
) -> Result<(u16, Value)> {
    let resp = client
        .post(format!("{base}/api/v1/auth/oidc/callback"))
        .header("content-type", "application/json")
        .body(json!({ "state": state, "code": code }).to_string())
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, serde_json::from_str(&resp.text().await?)?))
}

/// A full sign-in through the API: the connector's token.
async fn sign_in(client: &reqwest::Client, base: &str, login: &str) -> Result<String> {
    let (state, code) = authorize(client, base, login).await?;
    let (status, body) = callback(client, base, &state, &code).await?;
    ensure!(status == 200, "sign-in of {login}: {status} {body}");
    Ok(body["token"].as_str().context("token")?.to_owned())
}

/// Status of `METHOD url` as `token`.
async fn status_of(client: &reqwest::Client, method: &str, url: &str, token: &str) -> Result<u16> {
    Ok(client
        .request(method.parse()?, url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await?
        .status()
        .as_u16())
}

async fn request_access(client: &reqwest::Client, base: &str, token: &str) -> Result<String> {
    let created = call(
        client,
        "POST",
        &format!("{base}/api/v1/access-requests"),
        token,
        Some(&json!({ "integration": "servers", "resource_type": "ssh-server", "resource_ids": ["web-1"], "permission": "Default" })),
    )
    .await?;
    Ok(created["id"].as_str().context("id")?.to_owned())
}

async fn poll(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let value = call(client, "GET", url, token, None).await?;
        if done(&value) {
            return Ok(value);
        }
        ensure!(Instant::now() < deadline, "{url} never got there: {value}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs `apono ARGS` with its own config home; stderr lines go to `lines` as they come.
fn cli(home: &Path, args: &[&str]) -> Result<(Child, std::sync::mpsc::Receiver<String>)> {
    let mut child = Command::new(cli_bin()?)
        .args(args)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("HOME", home)
        .env_remove("APONO_URL")
        .env_remove("APONO_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((child, rx))
}

/// The first stderr line containing `needle` (60 s at most).
fn line_with(
    rx: &std::sync::mpsc::Receiver<String>,
    needle: &str,
    seen: &mut Vec<String>,
) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(line.clone());
            if line.contains(needle) {
                return Ok(line);
            }
        }
    }
    bail!("no line with {needle:?} from the CLI: {seen:?}")
}

fn finish(
    mut child: Child,
    rx: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<String>,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the CLI did not finish: {seen:?}");
        }
        while let Ok(line) = rx.try_recv() {
            seen.push(line);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(100));
    while let Ok(line) = rx.try_recv() {
        seen.push(line);
    }
    ensure!(status.success(), "the CLI failed ({status}): {seen:?}");
    Ok(())
}

fn saved_token(home: &Path) -> Result<String> {
    let text = std::fs::read_to_string(home.join("config/apono/config.json"))?;
    let profiles: Value = serde_json::from_str(&text)?;
    Ok(profiles["profiles"]["default"]["personal_token"]
        .as_str()
        .context("no token saved")?
        .to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_through_a_real_openid_provider_on_sqlite() -> Result<()> {
    sign_in_through_a_real_openid_provider(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_through_a_real_openid_provider_on_postgresql() -> Result<()> {
    sign_in_through_a_real_openid_provider(true).await
}

async fn sign_in_through_a_real_openid_provider(postgresql: bool) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pg = if postgresql {
        Some(Postgres::start()?)
    } else {
        None
    };
    let store = match &pg {
        Some(pg) => {
            let key = dir.path().join("master.key");
            std::fs::write(&key, "5c".repeat(32))?;
            format!(
                "database_url = \"{}\"\nmaster_key = {{ file = \"{}\" }}",
                pg.url(),
                key.display()
            )
        }
        None => String::new(),
    };
    let mut provider = Provider::start(dir.path(), None)?;
    provider.user("alice", &["developers"], false).await?;
    provider.user("bob", &["okta-sre"], false).await?;
    let server = SshServer::start()?;
    let (mut connector, tokens) = Connector::start(
        dir.path(),
        &config(&server, &provider.issuer, &store),
        &[CAROL],
    )?;
    let carol = &tokens[0];
    let base = connector.url.clone();
    let client = reqwest::Client::new();

    // --- apono login --sso: the loopback flow, the browser's part by browse.mjs.
    let home = dir.path().join("alice-home");
    let (child, rx) = cli(&home, &["login", "--url", &base, "--sso", "--no-browser"])?;
    let mut seen = Vec::new();
    let line = line_with(&rx, "http", &mut seen)?;
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .context("no URL")?;
    let delivered = browse(url, "alice", false)?;
    ensure!(
        delivered["status"] == 200
            && delivered["body"]
                .as_str()
                .is_some_and(|b| b.contains("Signed in")),
        "the CLI's listener answered {delivered}"
    );
    finish(child, &rx, &mut seen)?;
    let alice = saved_token(&home)?;
    let me = call(&client, "GET", &format!("{base}/api/v1/me"), &alice, None).await?;
    ensure!(
        me["email"] == "alice@example.com"
            && me["groups"] == json!(["developers"])
            && me["admin"] == false,
        "alice is {me}"
    );

    // --- Refusals: each forged ID token, served by the provider's token endpoint.
    let mut last_jwks_fetch = Instant::now();
    for (mutation, why) in [
        ("wrong-audience", "wrong audience"),
        ("wrong-issuer", "wrong issuer"),
        ("expired", "expired"),
        ("alg-none", "not a signed JWT"),
        ("hs256-public-key", "algorithm HS256 is not accepted"),
        ("wrong-nonce", "nonce"),
        ("unknown-key", "key the provider does not publish"),
    ] {
        if mutation == "unknown-key" {
            // The connector refetches the key set for an unknown key id, at most every 10 s.
            last_jwks_fetch = Instant::now();
        }
        let (state, code) = authorize(&client, &base, "alice").await?;
        provider
            .admin("/admin/mutate", &json!({ "mutation": mutation }))
            .await?;
        let (status, body) = callback(&client, &base, &state, &code).await?;
        ensure!(
            status == 403 && body["error"].as_str().is_some_and(|e| e.contains(why)),
            "{mutation}: {status} {body}"
        );
    }
    // A replayed state: the first use signs in, the second finds nothing.
    let (state, code) = authorize(&client, &base, "alice").await?;
    let (first, _) = callback(&client, &base, &state, &code).await?;
    let (again, body) = callback(&client, &base, &state, &code).await?;
    ensure!(
        first == 200 && again == 403,
        "replayed state: {first}, then {again} {body}"
    );
    ensure!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("already used")),
        "{body}"
    );
    // A static user's email cannot be taken through the provider.
    let (state, code) = authorize(&client, &base, "carol").await?;
    let (status, body) = callback(&client, &base, &state, &code).await?;
    ensure!(
        status == 403
            && body["error"]
                .as_str()
                .is_some_and(|e| e.contains("configured user")),
        "carol: {status} {body}"
    );
    // A redirect anywhere but the CLI's loopback is refused at the start.
    let resp = client
        .post(format!("{base}/api/v1/auth/oidc/start"))
        .header("content-type", "application/json")
        .body(json!({ "redirect_uri": "https://evil.example/callback" }).to_string())
        .send()
        .await?;
    ensure!(
        resp.status() == 400,
        "a non-loopback redirect: {}",
        resp.status()
    );

    // --- Groups when they matter: bob approves alice's first request.
    let bob = sign_in(&client, &base, "bob").await?;
    let first = request_access(&client, &base, &alice).await?;
    let second = request_access(&client, &base, &alice).await?;
    call(
        &client,
        "POST",
        &format!("{base}/api/v1/access-requests/{first}/approve"),
        &bob,
        None,
    )
    .await?;
    poll(
        &client,
        &format!("{base}/api/v1/access-requests/{first}"),
        carol,
        |v| v["status"] == "Active",
    )
    .await?;
    // bob leaves okta-sre at the provider: within groups_max_age (3 s) his groups are the
    // sign-in's; past it, the connector refreshes them and he can no longer approve.
    provider.user("bob", &[], false).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let refused = status_of(
        &client,
        "POST",
        &format!("{base}/api/v1/access-requests/{second}/approve"),
        &bob,
    )
    .await?;
    // Not an approver any more, the request is not even visible to him (404).
    ensure!(
        refused == 404,
        "bob approved after leaving the group: {refused}"
    );
    let still = call(
        &client,
        "GET",
        &format!("{base}/api/v1/access-requests/{second}"),
        carol,
        None,
    )
    .await?;
    ensure!(still["status"] == "Pending", "the second request: {still}");
    let me = call(&client, "GET", &format!("{base}/api/v1/me"), &bob, None).await?;
    ensure!(
        me["groups"] == json!([]),
        "bob's groups after the refresh: {me}"
    );

    // --- alice is disabled at the provider: past the bound she cannot act, and her active
    // grant is revoked (disabled_user_grants defaults to revoke).
    provider.user("alice", &["developers"], true).await?;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let gone = status_of(&client, "GET", &format!("{base}/api/v1/me"), &alice).await?;
    ensure!(gone == 401, "a disabled user still acts: {gone}");
    poll(
        &client,
        &format!("{base}/api/v1/access-requests/{first}"),
        carol,
        |v| v["status"] == "Revoked",
    )
    .await?;
    let withdrawn = call(
        &client,
        "GET",
        &format!("{base}/api/v1/access-requests/{second}"),
        carol,
        None,
    )
    .await?;
    ensure!(
        withdrawn["status"] == "Revoked",
        "alice's pending request: {withdrawn}"
    );
    // The static admin works beside the provider throughout.
    call(&client, "GET", &format!("{base}/api/v1/me"), carol, None).await?;

    // --- apono login --device, then apono logout revokes the token.
    provider.user("dave", &["developers"], false).await?;
    let home = dir.path().join("dave-home");
    let (child, rx) = cli(&home, &["login", "--url", &base, "--device"])?;
    let mut seen = Vec::new();
    let line = line_with(&rx, "(or open ", &mut seen)?;
    let complete = line
        .trim_start_matches("(or open ")
        .trim_end_matches(')')
        .to_owned();
    let page = browse(&complete, "dave", false)?;
    ensure!(page["status"] == 200, "the device confirmation: {page}");
    finish(child, &rx, &mut seen).with_context(|| {
        format!(
            "after the browser's {page}\nconnector log:\n{}",
            connector.log_text()
        )
    })?;
    let dave = saved_token(&home)?;
    let me = call(&client, "GET", &format!("{base}/api/v1/me"), &dave, None).await?;
    ensure!(me["email"] == "dave@example.com", "dave is {me}");
    let out = Command::new(cli_bin()?)
        .arg("logout")
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env("HOME", &home)
        .output()?;
    ensure!(
        out.status.success(),
        "logout: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = status_of(&client, "GET", &format!("{base}/api/v1/me"), &dave).await?;
    ensure!(after == 401, "the token works after apono logout: {after}");

    // --- The portal's "Sign in with Corp SSO" in headless Chromium.
    ensure!(
        Path::new("/usr/bin/chromium").is_file(),
        "/usr/bin/chromium is missing: scripts/test.sh installs Debian's chromium"
    );
    provider.user("erin", &["developers"], false).await?;
    let out = tempfile::tempdir()?;
    let walk = Command::new("node")
        .arg(oidc_dir().join("portal-sso.mjs"))
        .current_dir(oidc_dir())
        .env("PORTAL_URL", &base)
        .env("LOGIN", "erin")
        .env("EMAIL", "erin@example.com")
        .env("OUT", out.path())
        .stdin(Stdio::null())
        .output()
        .context("running node")?;
    let stdout = String::from_utf8_lossy(&walk.stdout);
    ensure!(
        walk.status.success() && stdout.contains("portal sso walk passed"),
        "the portal walk failed:\n{stdout}\n{}\nconnector log:\n{}",
        String::from_utf8_lossy(&walk.stderr),
        connector.log_text()
    );

    // --- Key rotation: the provider restarts with a new signing key (a new key id); the
    // connector fetches the key set again when a token names a key it does not hold.
    let port = provider.port;
    let old_kid = provider.kid.clone();
    drop(provider);
    provider = Provider::start(dir.path(), Some(port))?;
    ensure!(
        provider.kid != old_kid,
        "the restarted provider kept its key"
    );
    provider.user("frank", &["developers"], false).await?;
    let wait = Duration::from_secs(11).saturating_sub(last_jwks_fetch.elapsed());
    tokio::time::sleep(wait).await;
    let frank = sign_in(&client, &base, "frank").await?;
    let me = call(&client, "GET", &format!("{base}/api/v1/me"), &frank, None).await?;
    ensure!(me["email"] == "frank@example.com", "frank is {me}");

    // --- A restart keeps the grants of people who signed in through the provider (they are
    // users beside the configuration's): frank's access, approved by gina (okta-sre).
    provider.user("gina", &["okta-sre"], false).await?;
    let gina = sign_in(&client, &base, "gina").await?;
    let franks = request_access(&client, &base, &frank).await?;
    call(
        &client,
        "POST",
        &format!("{base}/api/v1/access-requests/{franks}/approve"),
        &gina,
        None,
    )
    .await?;
    let url = format!("{base}/api/v1/access-requests/{franks}");
    poll(&client, &url, carol, |v| v["status"] == "Active").await?;
    connector.kill_and_restart()?;
    connector.wait_ready(Duration::from_secs(30))?;
    // The start revokes the grants of people who are no longer users: give it a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = call(&client, "GET", &url, carol, None).await?;
    ensure!(
        after["status"] == "Active",
        "frank's access after a restart: {after}"
    );
    call(&client, "GET", &format!("{base}/api/v1/me"), &frank, None).await?;

    // --- No IdP token, and not the client secret, in the connector's log.
    let log = connector.log_text();
    // Both providers appended to the same file.
    let issued = provider.issued();
    ensure!(
        issued.len() >= 5,
        "the provider issued only {} tokens",
        issued.len()
    );
    for token in &issued {
        ensure!(
            !log.contains(token.as_str()),
            "an IdP token is in the connector's log"
        );
    }
    ensure!(
        !log.contains(CLIENT_SECRET),
        "the client secret is in the connector's log"
    );
    ensure!(
        log.contains("signed in through the identity provider"),
        "no sign-in logged: {log}"
    );
    Ok(())
}
