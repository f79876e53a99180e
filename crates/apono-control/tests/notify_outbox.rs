//! The notifications outbox on SQLite and PostgreSQL: each notification is delivered by one
//! replica once (two replicas on one PostgreSQL), a failing channel is retried with the same
//! delivery id and, past `max_attempts`, given up and audited; an automatically approved
//! request tells `request.approved`, never `request.pending`; a revoke that keeps failing
//! tells the admins once; approvers and admins who sign in through an identity provider are
//! told as the configuration's are.

#[macro_use]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use apono_control::{Channels, Config, ControlPlane, Store, audit};
use apono_core::{CancelSignal, SecretValue, async_trait};
use apono_notify::{Deliver, DeliveryError, Notification};
use apono_runtime::ExecutorLimits;
use support::{CORP_PROVIDER, StuckRevokes, Timed, database, executor, on};

const CONFIG: &str = r#"
[connector]
retry_base = "1s"
retry_max = "1s"
revoke_failed_after_attempts = 2
master_key = { secret_store = { apono = { parameters = { master_key = "6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b6b" } } } }

[[users]]
email = "alice@example.com"
groups = ["dev"]

[[users]]
email = "bob@example.com"

[[users]]
email = "root@example.com"
admin = true

[[integrations]]
name = "boxes"
type = "timed"
secret_store = { apono = { parameters = { k = "v" } } }

[[access_flows]]
name = "reviewed"
trigger = "self_serve"
requestors = { groups = ["dev"] }
approvers = { users = ["bob@example.com"] }
targets = [{ integration = "boxes", resource_type = "box", permissions = ["Default"], resources = { ids = ["r0"] } }]
grant_duration = "1h"

[[access_flows]]
name = "automatic"
trigger = "automatic"
requestors = { groups = ["dev"] }
targets = [{ integration = "boxes", resource_type = "box", permissions = ["Default"], resources = { ids = ["r1"] } }]
grant_duration = "1h"

[[notifications]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/unused"
events = ["request.pending", "request.approved", "session.revoke_failed"]
max_attempts = 3
secret_store = { apono = { parameters = { signing_key = "k" } } }
"#;

/// What a receiver saw: the replica, the delivery id, the event and its recipients.
type Seen = Arc<Mutex<Vec<(usize, String, String, Vec<String>)>>>;

/// A receiving end: what each replica delivered, failing the first `fail` attempts.
#[derive(Debug)]
struct Receiver {
    replica: usize,
    seen: Seen,
    fail: Arc<AtomicUsize>,
}

#[async_trait]
impl Deliver for Receiver {
    async fn deliver(&self, m: &Notification, secret: &SecretValue) -> Result<(), DeliveryError> {
        if secret.get("signing_key").is_none() {
            return Err(DeliveryError::MissingSecret("signing_key"));
        }
        let failed = self
            .fail
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        self.seen.lock().unwrap().push((
            self.replica,
            m.id.clone(),
            m.event.as_str().to_owned(),
            m.recipients.clone(),
        ));
        match failed {
            Ok(_) => Err(DeliveryError::Status { status: 503 }),
            Err(_) => Ok(()),
        }
    }
}

struct Replicas {
    planes: Vec<Arc<ControlPlane>>,
    seen: Seen,
    fail: Arc<AtomicUsize>,
    stop: CancelSignal,
    _db: support::Db,
}

async fn replicas(postgres: bool, n: usize, fail: usize) -> Result<Replicas> {
    replicas_of(postgres, CONFIG, n, fail, |timed| {
        executor("timed", timed, ExecutorLimits::default())
    })
    .await
}

async fn replicas_of(
    postgres: bool,
    config: &str,
    n: usize,
    fail: usize,
    executor: impl Fn(Timed) -> Arc<apono_runtime::Executor>,
) -> Result<Replicas> {
    let db = database(postgres)?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let fail = Arc::new(AtomicUsize::new(fail));
    let stop = CancelSignal::new();
    let mut planes = Vec::new();
    for replica in 0..n {
        let config = Config::parse(config, std::iter::empty(), None)?;
        let provisioner = Timed {
            latency: Duration::ZERO,
            resources: 3,
        };
        let plane = ControlPlane::new(Store::open(&db.url).await?, config, executor(provisioner));
        let channel: Arc<dyn Deliver> = Arc::new(Receiver {
            replica,
            seen: seen.clone(),
            fail: fail.clone(),
        });
        plane.set_notification_channels(Channels::from([("hook".to_owned(), channel)]));
        plane.bootstrap().await?;
        plane.run_due_once().await?;
        tokio::spawn(plane.clone().run_notifications(stop.clone()));
        planes.push(plane);
    }
    Ok(Replicas {
        planes,
        seen,
        fail,
        stop,
        _db: db,
    })
}

impl Replicas {
    async fn wait(
        &self,
        what: &str,
        done: impl Fn(&[(usize, String, String, Vec<String>)]) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if done(&self.seen.lock().unwrap()) {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.seen.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn each_notification_is_delivered_once(postgres: bool) -> Result<()> {
    const REQUESTS: usize = 30;
    let r = replicas(postgres, if postgres { 2 } else { 1 }, 0).await?;
    let alice = r.planes[0]
        .config()
        .user("alice@example.com")
        .unwrap()
        .clone();
    for i in 0..REQUESTS {
        // Withdraw each so that the next is not refused as a duplicate.
        let plane = &r.planes[i % r.planes.len()];
        let created = plane.create_request(&alice, &on("r0")).await?;
        plane.revoke(&alice, &created.id).await?;
    }
    // An automatic request: approved in its creating transaction, so never `request.pending`.
    let auto = r.planes[0].create_request(&alice, &on("r1")).await?;
    r.wait("every notification", |seen| seen.len() > REQUESTS)
        .await?;
    // Time for a second delivery to show up, if one were coming.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = r.seen.lock().unwrap().clone();
    let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, id, _, _) in &seen {
        *by_id.entry(id.as_str()).or_default() += 1;
    }
    assert!(by_id.values().all(|n| *n == 1), "delivered twice: {seen:?}");
    let pending = seen.iter().filter(|s| s.2 == "request.pending").count();
    let approved = seen.iter().filter(|s| s.2 == "request.approved").count();
    assert_eq!((pending, approved), (REQUESTS, 1), "{seen:?} ({})", auto.id);
    r.stop.cancel();
    Ok(())
}
on_both_databases!(each_notification_is_delivered_once);

async fn a_failing_channel_is_retried_then_given_up(postgres: bool) -> Result<()> {
    // Two failures, then success: three attempts, one delivery id.
    let r = replicas(postgres, 1, 2).await?;
    let plane = &r.planes[0];
    let alice = plane.config().user("alice@example.com").unwrap().clone();
    let first = plane.create_request(&alice, &on("r0")).await?;
    r.wait("three attempts", |seen| seen.len() >= 3).await?;
    let seen = r.seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|s| s.1 == seen[0].1),
        "one delivery id: {seen:?}"
    );
    plane.revoke(&alice, &first.id).await?;

    // Always failing: given up after max_attempts = 3, kept and audited.
    r.fail.store(usize::MAX, Ordering::SeqCst);
    let second = plane.create_request(&alice, &on("r0")).await?;
    r.wait("three more attempts", |seen| seen.len() >= 6)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records = audit::records(plane.store(), 0, 10_000, Some(&second.id)).await?;
        if let Some(failed) = records.iter().find(|a| a.action == "notification.failed") {
            assert!(
                failed.details.contains("\"attempts\":3"),
                "{}",
                failed.details
            );
            assert!(failed.details.contains("HTTP 503"), "{}", failed.details);
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no notification.failed in {records:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(r.seen.lock().unwrap().len(), 6, "nothing after giving up");
    r.stop.cancel();
    Ok(())
}
on_both_databases!(a_failing_channel_is_retried_then_given_up);

async fn a_revoke_that_keeps_failing_tells_the_admins_once(postgres: bool) -> Result<()> {
    let r = replicas_of(postgres, CONFIG, 1, 0, |timed| {
        executor("timed", StuckRevokes(timed), ExecutorLimits::default())
    })
    .await?;
    let plane = &r.planes[0];
    let alice = plane.config().user("alice@example.com").unwrap().clone();
    let mut short = on("r1");
    short.duration = Some("1s".into());
    plane.create_request(&alice, &short).await?;
    let shutdown = CancelSignal::new();
    tokio::spawn(plane.clone().run_scheduler(shutdown.clone()));
    r.wait("session.revoke_failed", |seen| {
        seen.iter().any(|s| s.2 == "session.revoke_failed")
    })
    .await?;
    // Two more failed attempts (the grant is still retried), and no second alert.
    let attempts = || async {
        let records = audit::records(plane.store(), 0, 10_000, None).await?;
        anyhow::Ok(
            records
                .iter()
                .filter(|a| a.action == "revoke.attempt")
                .count(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while attempts().await? < 4 {
        ensure!(Instant::now() < deadline, "the revoke was not retried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen = r.seen.lock().unwrap().clone();
    let alerts: Vec<_> = seen
        .iter()
        .filter(|s| s.2 == "session.revoke_failed")
        .collect();
    assert_eq!(alerts.len(), 1, "{seen:?}");
    assert_eq!(alerts[0].3, ["root@example.com"], "to the admins");
    shutdown.cancel();
    r.stop.cancel();
    Ok(())
}
on_both_databases!(a_revoke_that_keeps_failing_tells_the_admins_once);

/// The people signed in through an identity provider are among the recipients, with the groups
/// the provider gave them: `dana` (group `sre` at the provider, no `[[users]]` entry) hears of a
/// request the `sre` group approves; `erin` (`sre` and an admin there), whom the provider
/// disabled, does not.
async fn people_signed_in_through_a_provider_are_told(postgres: bool) -> Result<()> {
    let config = format!(
        r#"{CONFIG}
[[access_flows]]
name = "by-sre"
trigger = "self_serve"
requestors = {{ groups = ["dev"] }}
approvers = {{ groups = ["sre"] }}
targets = [{{ integration = "boxes", resource_type = "box", permissions = ["Default"], resources = {{ ids = ["r2"] }} }}]
grant_duration = "1h"
{CORP_PROVIDER}"#
    );
    let r = replicas_of(postgres, &config, 1, 0, |timed| {
        executor("timed", timed, ExecutorLimits::default())
    })
    .await?;
    let plane = &r.planes[0];
    support::signed_in_through_corp(plane, "dana@corp.example", r#"["sre"]"#, false, false).await?;
    support::signed_in_through_corp(plane, "erin@corp.example", r#"["sre"]"#, true, true).await?;
    let alice = plane.config().user("alice@example.com").unwrap().clone();
    plane.create_request(&alice, &on("r2")).await?;
    r.wait("request.pending", |seen| {
        seen.iter().any(|s| s.2 == "request.pending")
    })
    .await?;
    let seen = r.seen.lock().unwrap().clone();
    let pending: Vec<&Vec<String>> = seen
        .iter()
        .filter(|s| s.2 == "request.pending")
        .map(|s| &s.3)
        .collect();
    // The static admin may approve any request; dana through her provider group.
    assert_eq!(
        pending,
        [&vec![
            "root@example.com".to_owned(),
            "dana@corp.example".to_owned()
        ]],
        "{seen:?}"
    );
    r.stop.cancel();
    Ok(())
}
on_both_databases!(people_signed_in_through_a_provider_are_told);
