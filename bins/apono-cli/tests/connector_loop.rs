//! The real `apono` binary against the real `apono-connector` binary and a real sshd (the
//! test kit's, in a private namespace): the whole loop a user goes through, and the errors a
//! connector gives back. Nothing is skipped: without sshd or the connector binary these fail.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use apono_e2e::{Connector, ssh_login, ssh_secret_store, ssh_server};
use apono_testkit::SshServer;
use common::{Out, User, mode};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
const CAROL: &str = "carol@example.com";
const CUSTOM: &str = "Log in through the bastion only during the change window.";

/// alice (developers) requests; bob approves the `ops` flow; carol is an admin.
fn config(server: &SshServer) -> String {
    format!(
        r#"
[connector]
id = "cli-e2e"
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

[[users]]
email = "{CAROL}"
admin = true

[[integrations]]
name = "servers"
type = "ssh"
connected_resource_types = ["ssh-server"]
custom_access_details = "{CUSTOM}"
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
"#,
        secret_store = ssh_secret_store(server),
        web_1 = ssh_server(server, "web-1", r#", tags = { env = "test" }"#),
    )
}

/// Starts sshd and the connector, logs alice in with `apono login`, and gives bob and carol
/// `APONO_URL`/`APONO_TOKEN`.
struct World {
    server: SshServer,
    connector: Connector,
    alice: User,
    bob: User,
    carol: User,
    _dir: tempfile::TempDir,
}

impl World {
    fn start() -> Result<Self> {
        let server = SshServer::start()?;
        let dir = tempfile::tempdir()?;
        let (mut connector, tokens) =
            Connector::start(dir.path(), &config(&server), &[ALICE, BOB, CAROL])?;
        let [alice_token, bob_token, carol_token] = &tokens[..] else {
            anyhow::bail!("three tokens expected");
        };
        let bob = User::with_env(&connector.url, bob_token)?;
        let carol = User::with_env(&connector.url, carol_token)?;
        // Ready once discovery found web-1.
        bob.wait_for_discovery(&mut connector, "servers", "ssh-server")?;
        let alice = User::new()?;
        alice
            .run(&[
                "login",
                "--url",
                &connector.url,
                "--personal-token",
                alice_token,
            ])?
            .ok()?;
        ensure!(mode(&alice.config_file())? == 0o600);
        Ok(Self {
            server,
            connector,
            alice,
            bob,
            carol,
            _dir: dir,
        })
    }

    /// Runs `apono requests create ARGS -o json` as alice in the background, approves or
    /// rejects the request as bob once it is pending, and returns alice's result.
    fn create_and_decide(&self, args: &[&str], decision: &[&str]) -> Result<(Out, String)> {
        let mut all = vec!["requests", "create"];
        all.extend_from_slice(args);
        let child = self
            .alice
            .apono(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut pending = None;
        self.wait(|| {
            pending = self.bob.first_pending();
            pending.is_some()
        })?;
        let id = pending.context("pending request")?;
        let mut decide = decision.to_vec();
        decide.insert(2, &id);
        self.bob.run(&decide)?.ok()?;
        Ok((Out::from(&all, child.wait_with_output()?), id))
    }

    fn wait(&self, ready: impl FnMut() -> bool) -> Result<()> {
        // The connector is only borrowed; `Connector::wait` needs it mutably for try_wait.
        let mut ready = ready;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !ready() {
            ensure!(
                std::time::Instant::now() < deadline,
                "timed out; connector log:\n{}",
                self.connector.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

const CREATE: [&str; 8] = [
    "-i",
    "ssh/servers",
    "-t",
    "ssh-server",
    "-r",
    "web-1",
    "-p",
    "Default",
];

fn create_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args: Vec<&str> = CREATE.to_vec();
    args.extend_from_slice(extra);
    args
}

#[test]
fn full_loop_on_real_sshd() -> Result<()> {
    let w = World::start()?;
    let (alice, bob) = (&w.alice, &w.bob);

    // Create → (bob approves while alice waits) → Active with a session.
    let (out, id) = w.create_and_decide(
        &create_args(&[
            "-j",
            "deploy hotfix",
            "-d",
            "5m",
            "-o",
            "json",
            "--timeout",
            "60s",
        ]),
        &["requests", "approve", "--reason", "ok"],
    )?;
    let created = out.json()?;
    ensure!(
        created[0]["id"] == id.as_str() && created[0]["status"] == "Active",
        "{out:#?}"
    );
    let session_id = created[0]["session_ids"][0]
        .as_str()
        .context("a session id")?
        .to_owned();

    let sessions = alice
        .run(&["access", "list", "-r", &id, "-o", "json"])?
        .json()?;
    ensure!(
        sessions.as_array().map(Vec::len) == Some(1)
            && sessions[0]["id"] == session_id.as_str()
            && sessions[0]["request_id"] == id.as_str()
            && sessions[0]["status"] == "Active",
        "{sessions}"
    );
    let described = alice
        .run(&["requests", "describe", &id, "-o", "json"])?
        .json()?;
    ensure!(described["decided_by"] == BOB, "{described}");

    // access use -o json: the one-time key, saved 0600 in the cache directory.
    let details = alice
        .run(&["access", "use", &session_id, "-o", "json"])?
        .json()?;
    ensure!(details["credential_status"] == "new", "{details}");
    ensure!(
        details["credentials"]["private_key"]
            .as_str()
            .is_some_and(|k| k.contains("PRIVATE KEY")),
        "no key: {details}"
    );
    let username = details["json"]["username"]
        .as_str()
        .context("username")?
        .to_owned();
    let key_file = std::path::PathBuf::from(details["key_file"].as_str().context("key_file")?);
    ensure!(
        key_file.starts_with(alice.key_dir()),
        "{}",
        key_file.display()
    );
    ensure!(mode(&key_file)? == 0o600, "key file mode");
    ensure!(mode(&alice.key_dir())? == 0o700, "key dir mode");
    ensure!(
        ssh_login(&w.server, &key_file, &username)?,
        "login with the granted key failed"
    );

    // Shown once: the second time the server masks it and the CLI says what to do, but the
    // cached key still works, also through --run.
    let again = alice.run(&["access", "use", &session_id, "-o", "json"])?;
    let masked = again.json()?;
    ensure!(masked["credentials"].is_string(), "{masked}");
    ensure!(
        !again.stdout.contains("PRIVATE KEY"),
        "credentials shown twice"
    );
    ensure!(
        masked["key_file"] == key_file.display().to_string().as_str(),
        "{masked}"
    );
    let run = alice.run(&[
        "access",
        "use",
        &session_id,
        "--run",
        "--",
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        &format!(
            "-oUserKnownHostsFile={}",
            w.server.known_hosts_path().display()
        ),
        "id",
        "-un",
    ])?;
    ensure!(run.ok()?.trim() == username, "{run:#?}");
    let cli = alice.run(&["access", "use", &session_id, "-o", "cli"])?;
    ensure!(
        cli.ok()?.contains(&key_file.display().to_string()),
        "{cli:#?}"
    );

    // Without the cached key the CLI points at reset-credentials.
    std::fs::remove_file(&key_file)?;
    let out = alice.run(&["access", "use", &session_id])?;
    ensure!(
        out.ok().is_ok() && out.stderr.contains("apono access reset-credentials"),
        "{out:#?}"
    );
    alice
        .run(&["access", "use", &session_id, "--run"])?
        .error(1, "apono access reset-credentials")?;

    // Others cannot approve alice's own request or see her session.
    alice
        .run(&["requests", "approve", &id])?
        .error(1, "not permitted")?;
    bob.run(&["access", "use", &session_id])?
        .error(1, "not found")?;

    // reset-credentials issues a fresh key, shown once again.
    let reset = alice.run(&["access", "reset-credentials", &session_id])?;
    reset.ok()?;
    let fresh = alice
        .run(&["access", "use", &session_id, "-o", "json"])?
        .json()?;
    let fresh_key = fresh["key_file"]
        .as_str()
        .context("fresh key_file")?
        .to_owned();
    let fresh_private = fresh["credentials"]["private_key"]
        .as_str()
        .with_context(|| format!("no fresh key: {reset:#?} {fresh}"))?;
    // A copy the test keeps, to prove the target refuses the key after the revoke.
    let copy = w._dir.path().join("copy");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&copy)?
            .write_all(fresh_private.as_bytes())?;
    }
    ensure!(
        ssh_login(&w.server, &copy, &username)?,
        "login with the fresh key failed"
    );

    // revoke --wait: access gone on the target, the cached key removed, use refused.
    let revoked = alice
        .run(&["requests", "revoke", &id, "--wait", "-o", "json"])?
        .json()?;
    ensure!(revoked["status"] == "Revoked", "{revoked}");
    ensure!(
        !Path::new(&fresh_key).exists(),
        "cached key not removed at revoke"
    );
    ensure!(
        !ssh_login(&w.server, &copy, &username)?,
        "login still works after revoke"
    );
    alice
        .run(&["access", "use", &session_id])?
        .error(1, "access has ended")?;
    Ok(())
}

/// `sh -c "LINE ARGS"` as `user`: a printed command pasted into a shell.
fn pasted(user: &User, line: &str, args: &str) -> Result<std::process::Output> {
    Ok(user
        .command("sh")
        .arg("-c")
        .arg(format!("{line} {args}"))
        .output()?)
}

#[test]
fn host_key_custom_details_and_expiry_reach_the_user() -> Result<()> {
    let w = World::start()?;
    let alice = &w.alice;
    let (out, request_id) = w.create_and_decide(
        &create_args(&["-j", "first hour", "-d", "5m", "-o", "json"]),
        &["requests", "approve"],
    )?;
    let session_id = out.json()?[0]["session_ids"][0]
        .as_str()
        .context("a session id")?
        .to_owned();

    // The text a person reads: the command with the host key checked strictly, the exact
    // end, why "expire in 1 day" does not matter, and the integration's own words.
    let text = alice.run(&["access", "use", &session_id])?;
    let text = text.ok()?;
    for needle in [
        "UserKnownHostsFile=",
        "StrictHostKeyChecking=yes",
        "the key stops working then, to the second",
        "Your account will expire in 1 day",
        CUSTOM,
    ] {
        ensure!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    let ends = regex_free_time(text).context("an end time to the second")?;
    ensure!(ends.contains("(in 4m") || ends.contains("(in 5m"), "{text}");

    // EXPIRES to the second, with the time left.
    let list = alice.run(&["access", "list"])?;
    let row = list
        .ok()?
        .lines()
        .find(|l| l.starts_with(session_id.as_str()))
        .context("the session's row")?
        .to_owned();
    ensure!(
        regex_free_time(&row).is_some_and(|t| t.contains("(in ")),
        "{row}"
    );

    // The JSON: the server's host key as OpenSSH writes it, the file beside the key, and a
    // `cli` that names the real key file.
    let details = alice
        .run(&["access", "use", &session_id, "-o", "json"])?
        .json()?;
    let host_key = w
        .server
        .host_public_key()
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let known = format!("[{}]:{} {host_key}", w.server.host(), w.server.port());
    ensure!(
        details["json"]["known_hosts"] == known.as_str(),
        "{details}"
    );
    ensure!(
        details["json"]["host_key"] == host_key.as_str(),
        "{details}"
    );
    let key_file = details["key_file"].as_str().context("key_file")?.to_owned();
    let hosts_file = std::path::PathBuf::from(
        details["known_hosts_file"]
            .as_str()
            .context("known_hosts_file")?,
    );
    ensure!(hosts_file.starts_with(alice.key_dir()) && mode(&hosts_file)? == 0o600);
    ensure!(std::fs::read_to_string(&hosts_file)?.trim() == known);
    let cli = details["cli"].as_str().context("cli")?;
    ensure!(
        cli.contains(&key_file) && cli.contains("StrictHostKeyChecking=yes"),
        "{cli}"
    );
    ensure!(!cli.contains("~/.ssh"), "{cli}");

    // --run logs in with no ssh option from the user.
    let username = details["json"]["username"]
        .as_str()
        .context("username")?
        .to_owned();
    let run = alice.run(&["access", "use", &session_id, "--run", "--", "id", "-un"])?;
    ensure!(run.ok()?.trim() == username, "{run:#?}");
    ensure!(run.stderr.contains(CUSTOM), "{run:#?}");

    // The printed command works pasted as it is, and refuses a server with another key.
    let line = alice.run(&["access", "use", &session_id, "-o", "cli"])?;
    let line = line.ok()?.trim().to_owned();
    let pasted_ok = pasted(alice, &line, "id -un")?;
    ensure!(
        pasted_ok.status.success() && String::from_utf8_lossy(&pasted_ok.stdout).trim() == username,
        "{line}: {pasted_ok:?}"
    );
    let other = alice
        .command("ssh-keygen")
        .args(["-y", "-f", &key_file])
        .output()?;
    ensure!(other.status.success(), "{other:?}");
    let other = String::from_utf8(other.stdout)?;
    let other: Vec<&str> = other.split_whitespace().take(2).collect();
    std::fs::write(
        &hosts_file,
        format!(
            "[{}]:{} {}\n",
            w.server.host(),
            w.server.port(),
            other.join(" ")
        ),
    )?;
    let refused = pasted(alice, &line, "-o BatchMode=yes true")?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && stderr.contains("Host key verification failed"),
        "a different host key was accepted: {refused:?}"
    );

    // The host key file goes with the key.
    alice
        .run(&["requests", "revoke", &request_id, "--wait", "-o", "json"])?
        .json()?;
    ensure!(
        !hosts_file.exists() && !Path::new(&key_file).exists(),
        "key or host key left after revoke"
    );
    Ok(())
}

/// The first `YYYY-MM-DD HH:MM:SS UTC …` in `text`, to the end of its line.
fn regex_free_time(text: &str) -> Option<&str> {
    text.lines().find_map(|line| {
        let at = line.find(" UTC")?;
        let start = at.checked_sub(19)?;
        let stamp = line.get(start..at)?;
        let shape = stamp.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
        shape.then(|| &line[start..])
    })
}

#[test]
fn request_errors_from_a_real_connector() -> Result<()> {
    let w = World::start()?;
    let (alice, bob, carol) = (&w.alice, &w.bob, &w.carol);

    // The dry run says exactly what is missing, and nothing is created.
    alice
        .run(
            &["requests", "create"]
                .into_iter()
                .chain(create_args(&[]))
                .collect::<Vec<_>>(),
        )?
        .error(1, "requires a justification (add -j JUSTIFICATION)")?;
    alice
        .run(
            &["requests", "create"]
                .into_iter()
                .chain(create_args(&["-j", "x", "-d", "2h"]))
                .collect::<Vec<_>>(),
        )?
        .error(
            1,
            "duration 2h is over the maximum 10m of access flow \"ops\" (use -d 10m or less)",
        )?;
    alice
        .run(&[
            "requests",
            "create",
            "-i",
            "servers",
            "-t",
            "ssh-server",
            "-r",
            "web-9",
            "-p",
            "Default",
            "-j",
            "x",
        ])?
        .error(1, "web-9")?;
    let none = alice.run(&["requests", "list", "-o", "json"])?.json()?;
    ensure!(none == serde_json::json!([]), "{none}");

    // Rejected while alice waits: who and why.
    let (out, id) = w.create_and_decide(
        &create_args(&["-j", "curious", "-o", "json"]),
        &["requests", "reject", "--reason", "not during the freeze"],
    )?;
    out.error(
        1,
        &format!("request {id} rejected by {BOB}: reason not during the freeze"),
    )?;
    ensure!(
        out.stdout.contains("Rejected"),
        "json printed before the error: {out:#?}"
    );
    bob.run(&["requests", "approve", &id])?
        .error(1, "not Pending")?;

    // Nobody approves in time: the wait ends with what to do, the request stays.
    let out = alice.run(
        &["requests", "create"]
            .into_iter()
            .chain(create_args(&["-j", "later", "--timeout", "1s"]))
            .collect::<Vec<_>>(),
    )?;
    let line = out.error(1, "is still Pending after")?.to_owned();
    ensure!(line.contains("apono requests describe"), "{line}");
    let mine = alice
        .run(&["requests", "list", "--days", "1", "-o", "json"])?
        .json()?;
    ensure!(mine.as_array().map(Vec::len) == Some(2), "{mine}");
    let waiting = mine[0]["id"].as_str().context("id")?.to_owned();
    let withdrawn = alice
        .run(&["requests", "revoke", &waiting, "-o", "json"])?
        .json()?;
    ensure!(withdrawn["status"] == "Revoked", "{withdrawn}");
    // Revoking it again: nothing is left to revoke, and the words say so.
    let again = alice.run(&["requests", "revoke", &waiting])?;
    ensure!(again.code == Some(0), "{again:#?}");
    ensure!(
        again.stderr.trim() == format!("request {waiting} is Revoked: access removed"),
        "{again:#?}"
    );
    // bob approves but requested nothing: his empty list names the scope with his work.
    let empty = bob.run(&["requests", "list"])?;
    ensure!(
        empty.code == Some(0)
            && empty
                .stderr
                .contains("those awaiting your approval: apono requests list --scope approvals"),
        "{empty:#?}"
    );
    // A misspelt resource type is a type, and the real connector's types are listed.
    alice
        .run(&[
            "requests",
            "create",
            "-i",
            "servers",
            "-t",
            "ssh-servers",
            "-r",
            "web-1",
            "-p",
            "Default",
        ])?
        .error(
            1,
            "unknown resource type \"ssh-servers\" in integration servers: use -t with one of ssh-server",
        )?;

    // --no-wait returns the pending request at once.
    let quick = alice
        .run(
            &["requests", "create"]
                .into_iter()
                .chain(create_args(&["-j", "q", "--no-wait", "-o", "json"]))
                .collect::<Vec<_>>(),
        )?
        .json()?;
    ensure!(quick[0]["status"] == "Pending", "{quick}");

    // Scopes and the admin-only views.
    alice
        .run(&["requests", "list", "--scope", "all"])?
        .error(1, "not permitted")?;
    let all = carol
        .run(&["requests", "list", "--scope", "all", "-o", "json"])?
        .json()?;
    ensure!(all.as_array().map(Vec::len) == Some(3), "{all}");
    alice
        .run(&["audit", "list"])?
        .error(1, "only admins read the audit log")?;
    let audit = carol
        .run(&["audit", "list", "--since", "1h", "-o", "json"])?
        .json()?;
    ensure!(
        audit
            .as_array()
            .is_some_and(|a| a.iter().any(|r| r["action"] == "request.rejected")),
        "{audit}"
    );
    let table = carol.run(&["audit", "list"])?;
    ensure!(table.ok()?.starts_with("SEQ"), "{table:#?}");

    // Unknown ids and a wrong token.
    alice
        .run(&["requests", "describe", "r-nope"])?
        .error(1, "not found")?;
    User::with_env(&w.connector.url, "apono_not_a_token")?
        .run(&["requests", "list"])?
        .error(1, "refused the personal token")?;
    Ok(())
}

const DAVE: &str = "dave@example.com";

/// The `ops` flow with `all_of` approval: bob by name and one member of `sre` (dave).
fn all_of_config(server: &SshServer) -> String {
    config(server)
        .replace(
            &format!(r#"approvers = {{ users = ["{BOB}"] }}"#),
            &format!(r#"approvers = {{ mode = "all_of", users = ["{BOB}"], groups = ["sre"] }}"#),
        )
        .replace(
            "[[integrations]]",
            &format!("[[users]]\nemail = \"{DAVE}\"\ngroups = [\"sre\"]\n\n[[integrations]]"),
        )
}

#[test]
fn all_of_approval_progress() -> Result<()> {
    let server = SshServer::start()?;
    let dir = tempfile::tempdir()?;
    let text = all_of_config(&server);
    ensure!(text.contains("all_of") && text.contains(DAVE), "{text}");
    let (mut connector, tokens) = Connector::start(dir.path(), &text, &[ALICE, BOB, DAVE])?;
    let [alice, bob, dave] = &tokens[..] else {
        anyhow::bail!("three tokens expected");
    };
    let [alice, bob, dave] = [alice, bob, dave].map(|t| User::with_env(&connector.url, t));
    let (alice, bob, dave) = (alice?, bob?, dave?);
    bob.wait_for_discovery(&mut connector, "servers", "ssh-server")?;

    let created = alice
        .run(
            &["requests", "create"]
                .into_iter()
                .chain(create_args(&[
                    "-j",
                    "two keys\u{1b}[8m",
                    "--no-wait",
                    "-o",
                    "json",
                ]))
                .collect::<Vec<_>>(),
        )?
        .json()?;
    let id = created[0]["id"].as_str().context("id")?.to_owned();
    ensure!(
        created[0]["awaiting"] == serde_json::json!([format!("user:{BOB}"), "group:sre"]),
        "{created}"
    );

    // Both approvers see it; bob's approval leaves it Pending, awaiting sre.
    let waiting = dave.run(&["requests", "list", "--scope", "approvals"])?;
    let table = waiting.ok()?;
    ensure!(
        table.starts_with("ID") && table.contains("APPROVALS"),
        "{waiting:#?}"
    );
    ensure!(
        table.contains(&format!("0 of 2 approvals, awaiting user:{BOB}, group:sre")),
        "{waiting:#?}"
    );
    let approved = bob.run(&["requests", "approve", &id])?;
    approved.ok()?;
    ensure!(
        approved.stderr.trim()
            == format!(
                "recorded your approval of request {id}: still Pending, 1 of 2 approvals, awaiting group:sre"
            ),
        "{approved:#?}"
    );
    bob.run(&["requests", "approve", &id])?
        .error(1, "already approved")?;
    ensure!(bob.first_pending().is_none(), "bob already approved");

    let described = alice.run(&["requests", "describe", &id])?;
    let text = described.ok()?;
    ensure!(
        text.contains("1 of 2 approvals, awaiting group:sre") && text.contains(BOB),
        "{described:#?}"
    );
    ensure!(
        text.contains(&format!(
            "all of user:{BOB}, group:sre (the access flow's approvers)"
        )),
        "who approves is shown: {described:#?}"
    );
    // The requester's justification carries an escape sequence (`ESC[8m` hides what follows
    // on a terminal): the approver's table shows it written out, never obeys it.
    let bobs = bob.run(&["requests", "describe", &id])?;
    let bobs = bobs.ok()?;
    ensure!(
        !bobs.contains('\u{1b}') && bobs.contains("two keys\\u{1b}[8m"),
        "{bobs:?}"
    );
    let json = alice
        .run(&["requests", "describe", &id, "-o", "json"])?
        .json()?;
    ensure!(
        json["status"] == "Pending"
            && json["awaiting"] == serde_json::json!(["group:sre"])
            && json["approvals"][0]["approver"] == BOB,
        "{json}"
    );
    let listed = alice.run(&["requests", "list"])?;
    ensure!(
        listed
            .ok()?
            .contains("1 of 2 approvals, awaiting group:sre"),
        "{listed:#?}"
    );

    // dave (sre) completes it: approved, and granted on the real sshd.
    let last = dave.run(&["requests", "approve", &id])?;
    last.ok()?;
    ensure!(
        last.stderr
            .contains(&format!("approved request {id} (now "))
            && last.stderr.contains("2 of 2 approvals"),
        "{last:#?}"
    );
    connector.wait(Duration::from_secs(30), || {
        alice
            .run(&["requests", "describe", &id, "-o", "json"])
            .ok()
            .and_then(|o| o.json().ok())
            .is_some_and(|v| v["status"] == "Active")
    })?;
    let json = alice.run(&["requests", "list", "-o", "json"])?.json()?;
    ensure!(
        json[0]["awaiting"] == serde_json::json!([])
            && json[0]["approvals"].as_array().map(Vec::len) == Some(2),
        "{json}"
    );
    alice.run(&["requests", "revoke", &id, "--wait"])?.ok()?;
    Ok(())
}

/// `apono-connector check-config` and `run` on broken files and a busy address: what is
/// wrong, where, in words that fit the count.
#[test]
fn connector_configuration_errors_read_well() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let bin = apono_e2e::connector_bin()?;
    let connector = |args: &[&str], text: &str| -> Result<std::process::Output> {
        let path = dir.path().join("connector.toml");
        std::fs::write(&path, text)?;
        let mut cmd = std::process::Command::new(&bin);
        cmd.args(args)
            .arg("--config")
            .arg(&path)
            .env_remove("APONO_CONFIG")
            .stdin(Stdio::null());
        Ok(cmd.output()?)
    };
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // A TOML syntax error keeps TOML's own lines: the line number, the line and the caret.
    let out = connector(
        &["check-config"],
        "[connector]\nid = \"x\"\n[[users]\nemail = \"a@example.com\"\n",
    )?;
    let text = stderr(&out);
    ensure!(out.status.code() == Some(1), "{text}");
    ensure!(text.contains("has 1 problem:\n"), "{text}");
    ensure!(text.contains("\n  3 | [[users]\n"), "{text}");
    ensure!(text.contains("^"), "{text}");

    // A typo in connected_resource_types is named as such, not as the integration lacking a type.
    let good = format!(
        r#"
[connector]
id = "x"
listen = "{{listen}}"
data_dir = "{data}"

[[users]]
email = "{ALICE}"

[[integrations]]
name = "servers"
type = "ssh"
connected_resource_types = ["ssh-server"]
secret_store = {{ apono = {{ parameters = {{ base64_private_key = "eA==" }} }} }}
config = {{ servers = [{{ name = "web-1", host = "127.0.0.1", port = 22, user = "root" }}] }}

[[access_flows]]
name = "ops"
trigger = "self_serve"
requestors = {{ users = ["{ALICE}"] }}
approvers = {{ users = ["{ALICE}"] }}
targets = [{{ integration = "servers", resource_type = "ssh-server", permissions = ["Default"] }}]
grant_duration = "10m"
"#,
        data = dir.path().join("data").display(),
    );
    let typo = good
        .replace("{listen}", "127.0.0.1:0")
        .replace(r#"["ssh-server"]"#, r#"["ssh-servr"]"#);
    let out = connector(&["check-config"], &typo)?;
    let text = stderr(&out);
    ensure!(out.status.code() == Some(1), "{text}");
    ensure!(
        text.contains(
            r#"access_flows[0].targets[0].resource_type: "ssh-server" is not in integration "servers"'s connected_resource_types ("ssh-servr"): check both for a typo"#
        ),
        "{text}"
    );
    ensure!(text.contains("has 1 problem:"), "{text}");

    // A busy address: the error names connector.listen and the address.
    let busy = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = busy.local_addr()?.to_string();
    let out = connector(&["run"], &good.replace("{listen}", &address))?;
    let text = stderr(&out);
    ensure!(out.status.code() == Some(1), "{text}");
    ensure!(
        text.contains(&format!(
            "error: cannot listen on {address} (connector.listen): "
        )),
        "{text}"
    );
    Ok(())
}
