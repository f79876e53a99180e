//! Benchmark (not run in CI): revoke lag for 1,000 and 10,000 grants expiring together on SQLite
//! (one connector) and on PostgreSQL with one, two and three replicas (control planes in this
//! process on one database, each with its own executor and scheduler), with `/healthz` latency
//! meanwhile; time to drain 10,000 overdue grants after a restart with `/healthz` and
//! `/metrics` latency meanwhile; the time from an approval's commit to `Active` beyond the
//! provisioner's own; and peak RSS.
//!
//! `cargo bench -p apono-control --bench revoke_lag -- [latency_ms]` (default 5 ms per action,
//! in-process provisioner; PostgreSQL is a private cluster from `apono-testkit`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use apono_control::{Config, ControlPlane, NewRequest, Store};
use apono_core::CancelSignal;
use apono_runtime::ExecutorLimits;
use sqlx::Row;
use support::{Timed, count};

fn config(listen: &str) -> String {
    format!(
        r#"
[connector]
listen = "{listen}"
master_key = {{ secret_store = {{ apono = {{ parameters = {{ master_key = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a" }} }} }} }}
max_concurrent_actions = 64
[[users]]
email = "alice@example.com"
groups = ["dev"]
[[users]]
email = "bob@example.com"
groups = ["ops"]
[[integrations]]
name = "boxes"
type = "slow"
secret_store = {{ apono = {{ parameters = {{ k = "v" }} }} }}
[[access_flows]]
name = "f"
trigger = "automatic"
requestors = {{ groups = ["dev"] }}
targets = [{{ integration = "boxes", resource_type = "box", permissions = ["Default"] }}]
grant_duration = "1h"
[[access_flows]]
name = "approved"
trigger = "self_serve"
requestors = {{ groups = ["dev"] }}
targets = [{{ integration = "boxes", resource_type = "box", permissions = ["Approved"] }}]
approvers = {{ mode = "any_of", groups = ["ops"] }}
grant_duration = "1h"
"#
    )
}

async fn plane(
    url: &str,
    n: usize,
    latency: Duration,
    listen: &str,
    settle: bool,
) -> Result<Arc<ControlPlane>> {
    let limits = ExecutorLimits {
        global: 64,
        per_target: 4,
        action_timeout: Duration::from_secs(30),
    };
    let slow = Timed {
        latency,
        resources: n,
    };
    let executor = support::executor("slow", slow, limits);
    let plane = ControlPlane::new(
        Store::open(url).await?,
        Config::parse(&config(listen), std::iter::empty(), None)?,
        executor,
    );
    plane.bootstrap().await?;
    if settle {
        plane.run_due_once().await?;
    }
    Ok(plane)
}

async fn wait_for(plane: &ControlPlane, status: &str, n: usize) -> Result<()> {
    while count(plane, status).await? < n as i64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

fn percentiles(mut v: Vec<i64>) -> (i64, i64, i64) {
    v.sort_unstable();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.99), *v.last().unwrap_or(&0))
}

/// Creates `n` active grants (in requests of 100 resources, the default limit) and makes them
/// all expire `offset_ms` after they are all active; returns that expiry (Unix ms).
async fn setup(plane: &Arc<ControlPlane>, n: usize, offset_ms: i64) -> Result<i64> {
    let alice = plane.config().user("alice@example.com").unwrap().clone();
    for start in (0..n).step_by(100) {
        let req = NewRequest {
            integration: "boxes".into(),
            resource_type: "box".into(),
            resource_ids: (start..n.min(start + 100))
                .map(|i| format!("r{i}"))
                .collect(),
            permission: "Default".into(),
            justification: None,
            duration: None,
        };
        plane.create_request(&alice, &req).await?;
    }
    plane.run_due_once().await?;
    wait_for(plane, "Active", n).await?;
    let expiry = now_ms() + offset_ms;
    sqlx::query("UPDATE grants SET expires_at = $1")
        .bind(expiry)
        .execute(plane.store().pool())
        .await?;
    sqlx::query("UPDATE jobs SET due_at = $1 WHERE kind = 'revoke'")
        .bind(expiry)
        .execute(plane.store().pool())
        .await?;
    Ok(expiry)
}

/// Approves `n` requests one after another with the scheduler running; for each, the time from
/// the approval's commit (its audit record) to `Active` (the grant's `activated_at`), less the
/// provisioner's own `latency`.
async fn approval_overhead(n: usize, latency: Duration) -> Result<Vec<i64>> {
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite3").display()
    );
    let p = plane(&url, n, latency, "127.0.0.1:0", true).await?;
    let shutdown = CancelSignal::new();
    let scheduler = tokio::spawn(p.clone().run_scheduler(shutdown.clone()));
    let alice = p.config().user("alice@example.com").unwrap().clone();
    let bob = p.config().user("bob@example.com").unwrap().clone();
    let mut out = Vec::new();
    for i in 0..n {
        let req = NewRequest {
            integration: "boxes".into(),
            resource_type: "box".into(),
            resource_ids: vec![format!("r{i}")],
            permission: "Approved".into(),
            justification: Some("bench".into()),
            duration: None,
        };
        let request = p.create_request(&alice, &req).await?;
        p.approve(&bob, &request.id, None).await?;
        loop {
            let row = sqlx::query("SELECT g.activated_at AS a FROM grants g JOIN request_grants rg ON rg.grant_id = g.id WHERE rg.request_id = $1")
                .bind(&request.id)
                .fetch_one(p.store().pool())
                .await?;
            if let Some(activated) = row.try_get::<Option<i64>, _>("a")? {
                let approved =
                    apono_control::audit::records(p.store(), 0, 1_000_000, Some(&request.id))
                        .await?
                        .into_iter()
                        .find(|r| r.action == "request.approved")
                        .map(|r| r.at)
                        .unwrap_or(activated);
                out.push(activated - approved - latency.as_millis() as i64);
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    shutdown.cancel();
    scheduler.await??;
    Ok(out)
}

/// `n` active grants made by the first of `replicas` control planes on `url`, expiring together
/// 2 s later while every replica's scheduler runs and `/healthz` of the first is probed every
/// 10 ms; returns each grant's lag, the time from the expiry to the last revoke, and the
/// `/healthz` latencies (µs).
async fn expire_together(
    url: &str,
    n: usize,
    replicas: usize,
    latency: Duration,
) -> Result<(Vec<i64>, i64, Vec<i64>)> {
    let mut planes = Vec::new();
    for _ in 0..replicas {
        planes.push(plane(url, n, latency, "127.0.0.1:0", planes.is_empty()).await?);
    }
    let expiry = setup(&planes[0], n, 2000).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let router = apono_control::api::router(planes[0].clone());
    let server = tokio::spawn(async move { axum::serve(listener, router).await });
    let shutdown = CancelSignal::new();
    let schedulers: Vec<_> = planes
        .iter()
        .map(|p| tokio::spawn(p.clone().run_scheduler(shutdown.clone())))
        .collect();
    let health = {
        let stop = shutdown.clone();
        tokio::task::spawn_blocking(move || {
            let mut samples = Vec::new();
            while !stop.is_cancelled() {
                if let Some(d) = get(&addr, "/healthz") {
                    samples.push(d.as_micros() as i64);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            samples
        })
    };
    wait_for(&planes[0], "Revoked", n).await?;
    let total = now_ms() - expiry;
    shutdown.cancel();
    for s in schedulers {
        s.await??;
    }
    server.abort();
    let lag = lags(&planes[0]).await?;
    for p in &planes {
        p.store().close().await;
    }
    Ok((lag, total, health.await?))
}

async fn lags(plane: &ControlPlane) -> Result<Vec<i64>> {
    let rows =
        sqlx::query("SELECT revoked_at - expires_at AS lag FROM grants WHERE status = 'Revoked'")
            .fetch_all(plane.store().pool())
            .await?;
    rows.iter()
        .map(|r| Ok(r.try_get::<i64, _>("lag")?))
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn get(addr: &str, path: &str) -> Option<Duration> {
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.starts_with("HTTP/1.1 200").then(|| start.elapsed())
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

#[tokio::main(flavor = "multi_thread")]
#[allow(clippy::print_stdout)]
async fn main() -> Result<()> {
    let latency = Duration::from_millis(
        std::env::args()
            .skip(1)
            .find_map(|a| a.parse().ok())
            .unwrap_or(5),
    );
    println!(
        "in-process provisioner, {} ms per action, 64 actions in flight per replica\n",
        latency.as_millis()
    );
    println!(
        "| store | replicas | grants expiring together | lag p50 | p99 | max | total | /healthz p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for n in [1_000usize, 10_000] {
        for (postgres, replicas) in [(false, 1), (true, 1), (true, 2), (true, 3)] {
            let dir = tempfile::tempdir()?;
            let pg = postgres.then(apono_testkit::Postgres::start).transpose()?;
            let url = match &pg {
                Some(pg) => pg.url(),
                None => format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("db.sqlite3").display()
                ),
            };
            let (lag, total, health) = expire_together(&url, n, replicas, latency).await?;
            let (p50, p99, max) = percentiles(lag);
            let (_, h99, _) = percentiles(health);
            println!(
                "| {} | {replicas} | {n} | {p50} ms | {p99} ms | {max} ms | {total} ms | {:.1} ms |",
                if postgres { "PostgreSQL" } else { "SQLite" },
                h99 as f64 / 1000.0
            );
        }
    }

    // Drain after restart: 10,000 grants already overdue when the connector starts.
    let n = 10_000;
    let dir = tempfile::tempdir()?;
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("db.sqlite3").display()
    );
    let first = plane(&url, n, latency, "127.0.0.1:0", true).await?;
    setup(&first, n, -60_000).await?;
    first.store().close().await;
    drop(first);
    let restarted = plane(&url, n, latency, "127.0.0.1:0", false).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let router = apono_control::api::router(restarted.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let start = Instant::now();
    let shutdown = CancelSignal::new();
    let scheduler = tokio::spawn(restarted.clone().run_scheduler(shutdown.clone()));
    let probe = |path: &'static str| {
        let addr = addr.clone();
        let stop = shutdown.clone();
        tokio::task::spawn_blocking(move || {
            let mut samples = Vec::new();
            while !stop.is_cancelled() {
                if let Some(d) = get(&addr, path) {
                    samples.push(d.as_micros() as i64);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            samples
        })
    };
    let health = probe("/healthz");
    let metrics = probe("/metrics");
    wait_for(&restarted, "Revoked", n).await?;
    let drain = start.elapsed();
    shutdown.cancel();
    scheduler.await??;
    let (h50, h99, hmax) = percentiles(health.await?);
    let (m50, m99, mmax) = percentiles(metrics.await?);
    let (p50, p99, max) = percentiles(lags(&restarted).await?);
    println!(
        "| drain after restart (lag counts downtime) | {n} | {p50} ms | {p99} ms | {max} ms | {} ms |",
        drain.as_millis()
    );
    println!(
        "\n/healthz while draining: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        h50 as f64 / 1000.0,
        h99 as f64 / 1000.0,
        hmax as f64 / 1000.0
    );
    println!(
        "/metrics while draining: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        m50 as f64 / 1000.0,
        m99 as f64 / 1000.0,
        mmax as f64 / 1000.0
    );

    let (o50, o99, omax) = percentiles(approval_overhead(50, latency).await?);
    println!(
        "\napproval commit → Active, beyond the provisioner's {} ms (50 approvals, scheduler idle): p50 {o50} ms, p99 {o99} ms, max {omax} ms",
        latency.as_millis()
    );
    println!("peak RSS: {:.1} MiB", peak_rss_mib());
    Ok(())
}
