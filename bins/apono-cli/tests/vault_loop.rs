//! `apono vault …`: the real `apono` binary against the real `apono-connector` binary and a
//! real OpenBao (the test kit's dev server over TLS, prepared like an Apono Vault). Nothing is
//! skipped: without OpenBao or the connector binary this fails.

mod common;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use apono_e2e::Connector;
use apono_testkit::OpenBao;
use common::{Out, User, mode};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const VAULT: &str = "vault";
const MOUNT: &str = "apono-store";

fn bao(server: &OpenBao, args: &[&str]) -> Result<String> {
    let out = server
        .cli()
        .args(args)
        .output()
        .with_context(|| format!("running bao {}", args.join(" ")))?;
    ensure!(
        out.status.success(),
        "bao {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// kv-v2 at `apono-store`, userpass and AppRole, the grants' fixed policies, and the
/// connector's AppRole with exactly the policy the integration documents; returns its role id
/// and secret id.
fn prepare(server: &OpenBao) -> Result<(String, String)> {
    bao(server, &["secrets", "enable", "-path=apono-store", "kv-v2"])?;
    bao(server, &["auth", "enable", "userpass"])?;
    bao(server, &["auth", "enable", "approle"])?;
    // The operator writes the grants' fixed policies and the connector's AppRole policy,
    // both tied to the userpass mount's accessor (docs/vault-policy.md).
    let accessor = bao(server, &["read", "-field=accessor", "sys/auth/userpass"])?;
    let dir = tempfile::tempdir()?;
    let mut policies = apono_vault_client::policy::grant_policies(MOUNT, &accessor)?;
    policies.push((
        "apono-connector".into(),
        apono_vault_client::policy::connector_policy_hcl(MOUNT, "userpass", &accessor)?,
    ));
    for (name, hcl) in policies {
        let file = dir.path().join(format!("{name}.hcl"));
        std::fs::write(&file, hcl)?;
        bao(
            server,
            &[
                "policy",
                "write",
                &name,
                file.to_str().context("utf-8 path")?,
            ],
        )?;
    }
    bao(
        server,
        &[
            "write",
            "auth/approle/role/apono-connector",
            "token_policies=apono-connector",
            "token_ttl=10m",
            "token_max_ttl=30m",
        ],
    )?;
    let role_id = bao(
        server,
        &[
            "read",
            "-field=role_id",
            "auth/approle/role/apono-connector/role-id",
        ],
    )?;
    let secret_id = bao(
        server,
        &[
            "write",
            "-f",
            "-field=secret_id",
            "auth/approle/role/apono-connector/secret-id",
        ],
    )?;
    Ok((role_id, secret_id))
}

fn config(server: &OpenBao, role_id: &str, secret_id: &str) -> Result<String> {
    // A JSON string is a valid TOML basic string.
    let ca = serde_json::to_string(server.ca_cert_pem().context("TLS server has a CA")?)?;
    Ok(format!(
        r#"
[connector]
id = "cli-vault"
listen = "{{listen}}"
data_dir = "{{data}}"
retry_base = "1s"
retry_max = "2s"

[[users]]
email = "{ALICE}"
groups = ["developers"]

[[users]]
email = "{BOB}"
groups = ["leads"]

[[integrations]]
name = "{VAULT}"
type = "apono-vault"
connected_resource_types = ["management", "secret"]
secret_store = {{ apono = {{ parameters = {{ role_id = "{role_id}", secret_id = "{secret_id}" }} }} }}
config = {{ vault_internal_url = "{address}", ca_certificate = {ca} }}

[[access_flows]]
name = "vault-ops"
trigger = "self_serve"
requestors = {{ groups = ["developers"] }}
approvers = {{ users = ["{BOB}"] }}
targets = [{{ integration = "{VAULT}", resource_type = "management", permissions = ["Admin", "ReadWrite", "ReadOnly"] }}]
grant_duration = "10m"
"#,
        address = server.address(),
    ))
}

struct World {
    server: OpenBao,
    connector: Connector,
    alice: User,
    bob: User,
    _dir: tempfile::TempDir,
}

impl World {
    fn start() -> Result<Self> {
        let server = OpenBao::start_tls().context("OpenBao must start for this test")?;
        let (role_id, secret_id) = prepare(&server)?;
        let dir = tempfile::tempdir()?;
        let (mut connector, tokens) = Connector::start(
            dir.path(),
            &config(&server, &role_id, &secret_id)?,
            &[ALICE, BOB],
        )?;
        let [alice_token, bob_token] = &tokens[..] else {
            anyhow::bail!("two tokens expected");
        };
        let alice = User::with_env(&connector.url, alice_token)?;
        let bob = User::with_env(&connector.url, bob_token)?;
        // Ready once discovery found the mount.
        bob.wait_for_discovery(&mut connector, VAULT, "management")?;
        Ok(Self {
            server,
            connector,
            alice,
            bob,
            _dir: dir,
        })
    }

    /// Alice requests `permission` on the mount, bob approves; returns (request, session).
    fn grant(&self, permission: &str) -> Result<(String, String)> {
        self.grant_for(permission, "10m")
    }

    /// [`World::grant`] for `duration`.
    fn grant_for(&self, permission: &str, duration: &str) -> Result<(String, String)> {
        let args = [
            "requests",
            "create",
            "-i",
            VAULT,
            "-t",
            "management",
            "-r",
            MOUNT,
            "-p",
            permission,
            "-j",
            "rotate db password",
            "--duration",
            duration,
            "-o",
            "json",
        ];
        let child = self
            .alice
            .apono(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let id = loop {
            if let Some(id) = self.bob.first_pending() {
                break id;
            }
            ensure!(
                std::time::Instant::now() < deadline,
                "no pending request; connector log:\n{}",
                self.connector.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        self.bob.run(&["requests", "approve", &id])?.ok()?;
        let out = Out::from(&args, child.wait_with_output()?);
        let created = out.json()?;
        ensure!(created[0]["status"] == "Active", "{out:#?}");
        let session = created[0]["session_ids"][0]
            .as_str()
            .context("a session id")?
            .to_owned();
        Ok((id, session))
    }

    /// `apono vault OP --vault-id vault --ca-cert CA ARGS…` as alice.
    fn vault(&self, op: &str, args: &[&str]) -> Result<Out> {
        let ca = self
            .server
            .ca_cert_path()
            .context("TLS server has a CA file")?
            .to_str()
            .context("utf-8 path")?
            .to_owned();
        let mut all = vec!["vault", op, "--vault-id", VAULT, "--ca-cert", &ca];
        all.extend_from_slice(args);
        self.alice.run(&all)
    }
}

#[test]
fn vault_commands_on_real_openbao() -> Result<()> {
    let w = World::start()?;
    let alice = &w.alice;

    // Without access: a clear error that says how to get it.
    w.vault("list", &[])?
        .error(1, "no active access session on vault")?;

    // ReadWrite on the mount: create, fetch, update, list work; delete does not.
    let (rw_request, rw_session) = w.grant("ReadWrite")?;
    let created = w
        .vault(
            "create",
            &[
                "apono-store/team/db",
                "--value",
                r#"{"username":"admin","password":"s3cret"}"#,
                "-o",
                "json",
            ],
        )?
        .json()?;
    ensure!(
        created == serde_json::json!({"path": "team/db", "version": 1}),
        "{created}"
    );
    // The OpenBao token is cached 0600 in a 0700 directory, under the session id.
    let cached = alice
        .home
        .path()
        .join(format!("cache/apono/vault/{rw_session}.key"));
    ensure!(mode(&cached)? == 0o600, "token file mode");
    ensure!(mode(cached.parent().context("dir")?)? == 0o700, "dir mode");
    ensure!(std::fs::read_to_string(&cached)?.starts_with("token:"));

    w.vault("create", &["team/db", "--value", r#"{"a":"b"}"#])?
        .error(1, "already exists: use apono vault update")?;
    w.vault("create", &["team/x", "--value", "[1]"])?
        .error(2, "JSON object")?;

    let fetched = w.vault("fetch", &["team/db", "-o", "json"])?.json()?;
    ensure!(
        fetched
            == serde_json::json!({
                "path": "team/db",
                "version": 1,
                "data": {"username": "admin", "password": "s3cret"}
            }),
        "{fetched}"
    );
    let table = w.vault("fetch", &["apono-store/team/db"])?;
    ensure!(
        table.ok()?.contains("password") && table.stdout.contains("s3cret"),
        "{table:#?}"
    );

    let updated = w
        .vault(
            "update",
            &["team/db", "--value", r#"{"password":"n3w"}"#, "-o", "json"],
        )?
        .json()?;
    ensure!(
        updated == serde_json::json!({"path": "team/db", "version": 2}),
        "{updated}"
    );
    let fetched = w.vault("fetch", &["team/db", "-o", "json"])?.json()?;
    ensure!(
        fetched["data"] == serde_json::json!({"password": "n3w"}) && fetched["version"] == 2,
        "{fetched}"
    );
    w.vault("update", &["team/none", "--value", r#"{"a":"b"}"#])?
        .error(1, "no secret \"team/none\"")?;

    w.vault("create", &["team/api", "--value", r#"{"key":"k"}"#])?
        .ok()?;
    w.vault("create", &["top", "--value", r#"{"key":"k"}"#])?
        .ok()?;
    let listed = w.vault("list", &["-o", "json"])?.json()?;
    ensure!(
        listed == serde_json::json!(["team/api", "team/db", "top"]),
        "{listed}"
    );
    let team = w.vault("list", &["apono-store/team/"])?;
    ensure!(
        team.ok()?.contains("team/api") && !team.stdout.contains("top"),
        "{team:#?}"
    );

    w.vault("delete", &["team/api"])?.error(
        1,
        "your access (ReadWrite on management apono-store) does not allow delete",
    )?;

    // A token OpenBao no longer knows (here: the cached file lost) cannot be replaced from
    // the connector: the one-time token was shown. The CLI prints the exact command.
    std::fs::remove_file(&cached)?;
    w.vault("fetch", &["team/db"])?.error(
        1,
        &format!("run apono access reset-credentials {rw_session}, then try again"),
    )?;
    alice
        .run(&["access", "reset-credentials", &rw_session])?
        .ok()?;
    w.vault("fetch", &["team/db", "-o", "json"])?.json()?;
    ensure!(cached.is_file(), "token cached again");

    // ReadOnly: fetch works, create is refused with a permission error.
    let (ro_request, ro_session) = w.grant("ReadOnly")?;
    w.vault("fetch", &["--session", &ro_session, "team/db"])?
        .ok()?;
    w.vault(
        "create",
        &[
            "--session",
            &ro_session,
            "team/new",
            "--value",
            r#"{"a":"b"}"#,
        ],
    )?
    .error(
        1,
        "your access (ReadOnly on management apono-store) does not allow create",
    )?;

    // Admin deletes (metadata and all versions); the broadest session is picked by default.
    let (admin_request, admin_session) = w.grant("Admin")?;
    // Looking at the access details first shows the token once, and keeps it for apono vault.
    let shown = alice.run(&["access", "use", &admin_session])?;
    ensure!(
        shown.ok()?.contains("bao login") && shown.stdout.contains("token: "),
        "{shown:#?}"
    );
    let masked = alice.run(&["access", "use", &admin_session])?;
    ensure!(!masked.ok()?.contains("token: "), "{masked:#?}");
    let deleted = w.vault("delete", &["team/db", "-o", "json"])?.json()?;
    ensure!(
        deleted == serde_json::json!({"path": "team/db", "deleted": true}),
        "{deleted}"
    );
    w.vault("fetch", &["team/db"])?
        .error(1, "no secret \"team/db\"")?;
    let out = w
        .server
        .cli()
        .args(["kv", "metadata", "get", "apono-store/team/db"])
        .output()?;
    ensure!(!out.status.success(), "metadata of team/db still exists");

    // After revocation: a clear message, and the cached tokens are gone.
    for id in [&rw_request, &ro_request, &admin_request] {
        alice.run(&["requests", "revoke", id, "--wait"])?.ok()?;
    }
    ensure!(!cached.exists(), "token kept after revoke");
    w.vault("fetch", &["team/api"])?.error(
        1,
        "no active access session on vault (your sessions there have ended)",
    )?;
    Ok(())
}

/// With the connector killed, OpenBao itself refuses the session's vault token once the session
/// has expired: nothing else is left running that could revoke it.
#[test]
fn openbao_ends_the_session_with_the_connector_stopped() -> Result<()> {
    let mut w = World::start()?;
    bao(
        &w.server,
        &["kv", "put", "apono-store/team/db", "value=root-pw"],
    )?;
    let (_, session) = w.grant_for("ReadOnly", "15s")?;
    // Access was granted before this instant, so it expires within 15 s of it.
    let active = std::time::Instant::now();
    w.vault("fetch", &["team/db"])?.ok()?;
    let cached = w
        .alice
        .home
        .path()
        .join(format!("cache/apono/vault/{session}.key"));
    let token = std::fs::read_to_string(&cached)?
        .trim_end()
        .strip_prefix("token:")
        .context("a cached token")?
        .to_owned();
    // The grantee's token, straight to OpenBao with its own CLI.
    let fetch = |server: &OpenBao| {
        server
            .cli()
            .env("BAO_TOKEN", &token)
            .args(["kv", "get", "-field=value", "apono-store/team/db"])
            .output()
    };
    let before = fetch(&w.server)?;
    ensure!(
        before.status.success() && String::from_utf8_lossy(&before.stdout).trim() == "root-pw",
        "the token does not work while the session is active: {}",
        String::from_utf8_lossy(&before.stderr)
    );

    // OpenBao itself holds the end: the token's hard cap is the session's 15 s, not a
    // duration that a later login would restart.
    let lookup = w
        .server
        .cli()
        .env("BAO_TOKEN", &token)
        .args(["token", "lookup", "-format=json"])
        .output()?;
    ensure!(lookup.status.success(), "{lookup:?}");
    let info: serde_json::Value = serde_json::from_slice(&lookup.stdout)?;
    let cap = info["data"]["explicit_max_ttl"]
        .as_u64()
        .context("explicit_max_ttl")?;
    ensure!((1..=15).contains(&cap), "explicit_max_ttl {cap}: {info}");

    w.connector.kill()?;
    // Wait out the 15 s and a margin.
    let left = Duration::from_secs(17).saturating_sub(active.elapsed());
    std::thread::sleep(left);
    let after = fetch(&w.server)?;
    let stderr = String::from_utf8_lossy(&after.stderr);
    ensure!(
        !after.status.success() && stderr.contains("permission denied"),
        "OpenBao still accepted the token after expiry with the connector stopped: {stderr}"
    );
    Ok(())
}
