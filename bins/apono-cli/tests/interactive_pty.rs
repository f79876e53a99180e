//! The picker (`apono` alone on a terminal) through a pseudo-terminal, against the real
//! `apono-connector` binary and the test kit's sshd: every recoverable mistake is asked again
//! with what was wrong, and the request made after the corrections is created and granted.
//! Nothing is skipped: without sshd or the connector binary this fails.

mod common;

use std::process::Stdio;

use anyhow::{Context, Result, ensure};
use apono_e2e::{Connector, ssh_secret_store, ssh_server};
use apono_testkit::SshServer;
use common::User;
use rexpect::process::WaitStatus;
use rexpect::session::{Options, spawn_with_options};

const ALICE: &str = "alice@example.com";
/// How long the terminal may stay silent: the last wait includes provisioning on sshd.
const TIMEOUT_MS: u64 = 60_000;
const JUSTIFICATION: &str = "rotate the web-1 certificate";

/// One server, one flow: self-serve without approvers, a justification required, at most 2m.
fn config(server: &SshServer) -> String {
    format!(
        r#"
[connector]
id = "cli-pty"
listen = "{{listen}}"
data_dir = "{{data}}"
retry_base = "1s"
retry_max = "2s"

[[users]]
email = "{ALICE}"
groups = ["developers"]

[[integrations]]
name = "servers"
type = "ssh"
connected_resource_types = ["ssh-server"]
secret_store = {secret_store}
config = {{ servers = [{web_1}] }}

[[access_flows]]
name = "picker"
trigger = "self_serve"
requestors = {{ groups = ["developers"] }}
justification_required = true
targets = [{{ integration = "servers", resource_type = "ssh-server", permissions = ["Default"] }}]
grant_duration = "2m"
"#,
        secret_store = ssh_secret_store(server),
        web_1 = ssh_server(server, "web-1", ""),
    )
}

/// Waits for `needle` on the terminal, with what was shown so far in the error.
fn expect(p: &mut rexpect::session::PtySession, needle: &str) -> Result<()> {
    p.exp_string(needle)
        .map(drop)
        .with_context(|| format!("the picker did not show {needle:?}"))
}

/// Types `keys` without a newline.
fn key(p: &mut rexpect::session::PtySession, keys: &str) -> Result<()> {
    p.send(keys)?;
    p.flush()?;
    Ok(())
}

#[test]
fn picker_asks_again_instead_of_exiting() -> Result<()> {
    let server = SshServer::start()?;
    let dir = tempfile::tempdir()?;
    let (mut connector, tokens) = Connector::start(dir.path(), &config(&server), &[ALICE])?;
    let token = tokens.first().context("a token")?;
    let alice = User::with_env(&connector.url, token)?;
    alice.wait_for_discovery(&mut connector, "servers", "ssh-server")?;

    let mut cmd = alice.command(env!("CARGO_BIN_EXE_apono"));
    // The pty is stdin, stdout and stderr: `apono` alone on a terminal is the picker.
    cmd.stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .env("TERM", "xterm")
        .env("COLUMNS", "200");
    let mut p = spawn_with_options(
        cmd,
        Options::new()
            .timeout_ms(Some(TIMEOUT_MS))
            .strip_ansi_escape_codes(true),
    )?;

    expect(&mut p, "What do you want to do?")?;
    key(&mut p, "\r")?; // Request new access
    expect(&mut p, "Integration")?;
    key(&mut p, "\r")?;
    expect(&mut p, "Resource type")?;
    key(&mut p, "\r")?;
    // The only resource is preselected: space clears it, and Enter with nothing selected is
    // asked again; a bare Enter then takes the preselected one.
    expect(&mut p, "Resources")?;
    key(&mut p, " ")?;
    key(&mut p, "\r")?;
    expect(&mut p, "no resource selected: press space on at least one")?;
    expect(&mut p, "Resources")?;
    key(&mut p, "\r")?;
    expect(&mut p, "Permission")?;
    key(&mut p, "\r")?;

    // The dry run told the picker the justification is required before asking.
    expect(&mut p, "Justification (required)")?;
    key(&mut p, "\r")?;
    expect(&mut p, "this access flow requires a justification")?;
    expect(&mut p, "Justification (required)")?;
    p.send_line(JUSTIFICATION)?;

    // And the maximum duration, which is also the default.
    expect(&mut p, "Duration (max 2m) (2m)")?;
    p.send_line("5m")?;
    expect(&mut p, "duration 5m is over the maximum 2m")?;
    expect(&mut p, "type 2m or less")?;
    expect(&mut p, "Duration (max 2m)")?;
    p.send_line("soon")?;
    expect(&mut p, "\"soon\" is not a duration")?;
    expect(&mut p, "Duration (max 2m)")?;
    p.send_line("1m")?;

    let rest = p.exp_eof().context("the picker did not finish")?;
    let status = p.process().wait()?;
    ensure!(
        matches!(status, WaitStatus::Exited(_, 0)),
        "apono exited {status:?}; it printed:\n{rest}"
    );
    ensure!(
        !rest.contains("add -j"),
        "a command-line hint in the picker:\n{rest}"
    );

    // The request made after the corrections exists, with the answers given.
    let requests = alice.run(&["requests", "list", "-o", "json"])?.json()?;
    let list = requests.as_array().context("a list of requests")?;
    ensure!(list.len() == 1, "one request expected: {requests:#}");
    let request = &list[0];
    ensure!(
        request["justification"] == JUSTIFICATION
            && request["resource_ids"][0] == "web-1"
            && request["permission"] == "Default"
            && request["status"] == "Active",
        "{request:#}"
    );
    Ok(())
}
