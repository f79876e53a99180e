//! Measures how long an `apono-vault` grant (and its revoke) takes compared with a plain kv-v2
//! read on the same OpenBao, in the same run. Starts its own OpenBao dev server (TLS) through
//! the test kit:
//!
//! ```sh
//! cargo run -p apono-vault-client --example grant_latency --release
//! ```

#![allow(clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use anyhow::Result;
use apono_core::Provisioner;
use common::{MOUNT, Vault, in_an_hour, spec};

const ROUNDS: usize = 20;

fn summary(name: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    let median = samples[samples.len() / 2];
    println!(
        "{name:<34} n={:<3} mean {:>8.2} ms  median {:>8.2} ms  min {:>8.2} ms  max {:>8.2} ms",
        samples.len(),
        ms(mean),
        ms(median),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
    );
    median
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let vault = Vault::start().await?;
    vault.put("team/db", "root-pw").await?;
    let provisioner = vault.provisioner()?;
    let root = vault.root();

    // Warm up connections and caches on both paths.
    root.kv_read(MOUNT, "team/db", None).await?;
    let warm = spec(0, "warm-up", "secret", "team/db", "ReadOnly", in_an_hour());
    let granted = provisioner.grant_access(&vault.context(), &warm).await?;
    provisioner
        .revoke_access(&vault.context(), &warm, &granted.state)
        .await?;

    let mut reads = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        root.kv_read(MOUNT, "team/db", None).await?;
        reads.push(start.elapsed());
    }
    let mut grants = Vec::new();
    let mut revokes = Vec::new();
    for round in 0..ROUNDS {
        let grant = spec(
            round,
            &format!("bench-{round}"),
            "management",
            MOUNT,
            "ReadWrite",
            in_an_hour(),
        );
        let start = Instant::now();
        let granted = provisioner.grant_access(&vault.context(), &grant).await?;
        grants.push(start.elapsed());
        let start = Instant::now();
        provisioner
            .revoke_access(&vault.context(), &grant, &granted.state)
            .await?;
        revokes.push(start.elapsed());
    }
    println!(
        "OpenBao dev server over TLS at {}, {ROUNDS} rounds each:",
        vault.server.address()
    );
    let read = summary("plain kv read (one GET)", reads);
    let grant = summary("grant-access (login..logout)", grants);
    summary("revoke-access (login..logout)", revokes);
    println!(
        "a grant costs {:.1}x a plain kv read (median)",
        grant.as_secs_f64() / read.as_secs_f64()
    );
    Ok(())
}
