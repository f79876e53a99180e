//! Grant and revoke latency against a real OpenSSH server: this crate's provisioner (cold: a
//! new connection per action; warm: pooled) beside the same scripts run by the OpenSSH client
//! (`ssh` per command, and multiplexed through a ControlMaster). The four clients take turns
//! cycle by cycle, so that load from elsewhere on the machine falls on all of them alike.
//!
//! Run by hand: `cargo bench -p apono-provision-ssh` (needs root, like the tests).

#![allow(clippy::print_stdout, missing_docs)]

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use apono_core::{
    ActionContext, GrantId, GrantSpec, Grantee, Permission, Provisioner, Resource, SecretValue,
};
use apono_provision_ssh::{PoolOptions, SshConfig, SshProvisioner, script};
use apono_testkit::SshServer;

const RUNS: usize = 50;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let server = SshServer::start()?;
    server.exec(&["groupadd", "devs"])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let config = SshConfig::from_json(&serde_json::json!({
        "servers": [{"name": "srv", "host": server.host(), "port": server.port(),
                     "host_key": server.host_public_key()}],
        "user_groups": ["Default", "devs"],
    }))?;
    let secret = SecretValue::new().with(
        "base64_private_key",
        data_encoding::BASE64.encode(server.admin_private_key().as_bytes()),
    );
    let ctx = || ActionContext::new(secret.clone());

    let cold = SshProvisioner::with_pool_options(
        config.clone(),
        PoolOptions {
            reuse: false,
            ..PoolOptions::default()
        },
    )?;
    let warm = SshProvisioner::with_pool_options(config, PoolOptions::default())?;
    runtime.block_on(warm.get_status(&ctx()))?; // warm the pool

    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("control");
    let master = server
        .ssh_command()
        .args(["-o", "ControlMaster=yes", "-o", "ControlPersist=600", "-o"])
        .arg(format!("ControlPath={}", socket.display()))
        .args(["-N", "-f"])
        .status()?;
    assert!(master.success(), "ControlMaster did not start");

    // The clients take turns, cycle by cycle, so that a busy moment on the machine falls on
    // all of them alike.
    let labels = [
        "provisioner, cold (new connection)",
        "provisioner, warm (pooled)",
        "OpenSSH ssh per command",
        "OpenSSH ControlMaster",
    ];
    let mut samples: Vec<(Vec<Duration>, Vec<Duration>)> =
        labels.iter().map(|_| (Vec::new(), Vec::new())).collect();
    for i in 0..RUNS {
        for (row, p) in [(0, &cold), (1, &warm)] {
            let spec = spec(&format!("p{row}-{i}"));
            let t = Instant::now();
            let granted = runtime.block_on(p.grant_access(&ctx(), &spec))?;
            samples[row].0.push(t.elapsed());
            let t = Instant::now();
            runtime.block_on(p.revoke_access(&ctx(), &spec, &granted.state))?;
            samples[row].1.push(t.elapsed());
        }
        for (row, mux) in [(2, false), (3, true)] {
            let grant_id = format!("o{row}-{i}");
            let line = format!(
                "expiry-time=\"20991231000000Z\" {} apono-grant:{grant_id}\n",
                server
                    .admin_public_key()
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let grant = script::command_line(
                script::GRANT,
                &[
                    script::EDIT_KEYS,
                    "bench",
                    "/bin/bash",
                    &grant_id,
                    "4102444800",
                    "2100-01-01",
                    "devs",
                ],
            )
            .ok_or("bad argument")?;
            let revoke =
                script::command_line(script::REVOKE, &[script::EDIT_KEYS, "bench", &grant_id])
                    .ok_or("bad argument")?;
            samples[row].0.push(openssh(
                &server,
                mux.then_some(&socket),
                &grant,
                line.as_bytes(),
            )?);
            samples[row]
                .1
                .push(openssh(&server, mux.then_some(&socket), &revoke, b"")?);
        }
    }
    let rows: Vec<_> = labels
        .into_iter()
        .zip(samples)
        .map(|(label, (grants, revokes))| (label, grants, revokes))
        .collect();
    let _ = server
        .ssh_command()
        .arg("-o")
        .arg(format!("ControlPath={}", socket.display()))
        .args(["-O", "exit"])
        .stderr(Stdio::null())
        .status();

    println!(
        "\n{RUNS} runs each, server {}:{}\n",
        server.host(),
        server.port()
    );
    println!(
        "| {:<36} | {:>9} | {:>9} | {:>10} | {:>10} |",
        "client", "grant p50", "grant p99", "revoke p50", "revoke p99"
    );
    println!(
        "|{:-<38}|{:->11}|{:->11}|{:->12}|{:->12}|",
        "", "", "", "", ""
    );
    for (label, mut grants, mut revokes) in rows {
        println!(
            "| {label:<36} | {:>9} | {:>9} | {:>10} | {:>10} |",
            ms(pct(&mut grants, 50)),
            ms(pct(&mut grants, 99)),
            ms(pct(&mut revokes, 50)),
            ms(pct(&mut revokes, 99)),
        );
    }
    Ok(())
}

fn spec(id: &str) -> GrantSpec {
    GrantSpec {
        grant_id: GrantId::new(id).expect("valid id"),
        grantee: Grantee {
            id: "bench".into(),
            email: "bench".into(),
            display_name: String::new(),
            groups: vec![],
        },
        resource: Resource {
            integration: "bench".into(),
            resource_type: "ssh-server".into(),
            id: "srv".into(),
            name: "srv".into(),
            tags: Default::default(),
        },
        permission: Permission::from("devs"),
        expires_at: chrono::Utc::now() + chrono::Duration::hours(1),
        custom_parameters: Default::default(),
    }
}

fn openssh(
    server: &SshServer,
    socket: Option<&std::path::PathBuf>,
    command: &str,
    stdin: &[u8],
) -> Result<Duration, Box<dyn std::error::Error>> {
    let mut cmd = server.ssh_command();
    if let Some(socket) = socket {
        cmd.arg("-o")
            .arg(format!("ControlPath={}", socket.display()));
    }
    let t = Instant::now();
    let mut child = cmd
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    child.stdin.take().ok_or("no stdin")?.write_all(stdin)?;
    let status = child.wait()?;
    let elapsed = t.elapsed();
    if !status.success() {
        return Err(format!("ssh exited with {status}").into());
    }
    Ok(elapsed)
}

fn pct(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    let index = ((samples.len() * p).div_ceil(100)).saturating_sub(1);
    samples[index.min(samples.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
