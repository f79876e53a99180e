//! Agent mode in the control plane, in process: credentials (shown once, expiring, revocable,
//! bound to one connector id), which jobs an agent is handed (only its connector's, even for
//! integration names that are `LIKE` wildcards) and which the local scheduler keeps, and the
//! refusal of reports on leases an agent does not hold or that ended.

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, ensure};
use apono_control::{Config, ControlError, ControlPlane, Store};
use apono_runtime::ExecutorLimits;
use apono_runtime::wire::{Action, ActionResult, Poll, Report};
use secrecy::ExposeSecret;
use support::Timed;

/// `a_b` is bound to connector `edge`; `axb`, which `a_b` matches as a `LIKE` pattern, is local.
const CONFIG: &str = r#"
[connector]
id = "central"
agents = ["edge", "other"]
agent_offline_after = "3s"
master_key = { secret_store = { apono = { parameters = { master_key = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a" } } } }
[[users]]
email = "alice@example.com"
[[integrations]]
name = "a_b"
type = "slow"
connector = "edge"
secret_store = { aws = { region = "eu-west-1", secret_id = "x" } }
[[integrations]]
name = "axb"
type = "slow"
secret_store = { apono = { parameters = { k = "v" } } }
"#;

async fn plane(url: &str) -> Result<Arc<ControlPlane>> {
    let executor = support::executor(
        "slow",
        Timed {
            latency: Duration::ZERO,
            resources: 1,
        },
        ExecutorLimits {
            global: 8,
            per_target: 2,
            action_timeout: Duration::from_secs(5),
        },
    );
    let plane = ControlPlane::new(
        Store::open(url).await?,
        Config::parse(CONFIG, std::iter::empty(), None)?,
        executor,
    );
    plane.bootstrap().await?;
    Ok(plane)
}

on_both_databases!(agents_get_only_their_connectors_jobs_and_report_only_on_their_leases);

async fn agents_get_only_their_connectors_jobs_and_report_only_on_their_leases(
    postgres: bool,
) -> Result<()> {
    let db = support::database(postgres)?;
    let plane = plane(&db.url).await?;

    // Credentials: for declared other connectors only; shown once, checked against the id.
    for bad in ["central", "Edge", "-x", ""] {
        ensure!(matches!(
            plane.create_connector_credential(bad, None, None).await,
            Err(ControlError::Invalid(_))
        ));
    }
    let edge = plane
        .create_connector_credential("edge", Some("rack 1"), None)
        .await?;
    let secret = edge.credential.expose_secret().to_owned();
    ensure!(secret.starts_with("apono_agent_"));
    let listed = plane.connector_credentials(Some("edge")).await?;
    ensure!(listed.len() == 1 && listed[0].status == "active");
    ensure!(!format!("{listed:?}").contains(&secret));
    ensure!(matches!(
        plane.authenticate_agent(&secret, "other").await,
        Err(ControlError::Forbidden(_))
    ));
    ensure!(matches!(
        plane.authenticate_agent("apono_agent_nope", "edge").await,
        Err(ControlError::Unauthenticated)
    ));
    let agent = plane.authenticate_agent(&secret, "edge").await?;
    ensure!(plane.integration_offline("a_b").await == Some("connector offline"));
    ensure!(plane.integration_offline("axb").await.is_none());

    // The agent's poll hands out the discovery of `a_b` only, leased to `edge`.
    let work = plane.agent_poll(&agent, Poll { free: 8 }).await?;
    ensure!(work.actions.len() == 1, "{work:?}");
    let leased = &work.actions[0];
    ensure!(leased.lease.starts_with("edge/"));
    ensure!(
        matches!(&leased.action, Action::ListResources { integration } if integration.name == "a_b")
    );
    ensure!(plane.integration_offline("a_b").await.is_none());

    // The local scheduler runs `axb` and leaves the online agent's `a_b` alone.
    ensure!(plane.run_due_once().await? == 1);
    ensure!(plane.inventory().await?.contains_key("axb"));
    ensure!(!plane.inventory().await?.contains_key("a_b"));

    // Reports: not on another connector's lease, not on a lease not held, then the real one.
    let other = plane
        .create_connector_credential("other", None, None)
        .await?;
    let other = plane
        .authenticate_agent(other.credential.expose_secret(), "other")
        .await?;
    let report = |lease: &str| Report {
        lease: lease.to_owned(),
        kind: leased.kind.clone(),
        subject: leased.subject.clone(),
        result: ActionResult::Inventory(apono_core::Inventory::default()),
    };
    ensure!(matches!(
        plane.agent_report(&other, report(&leased.lease)).await,
        Err(ControlError::Forbidden(_))
    ));
    ensure!(matches!(
        plane
            .agent_report(&agent, report("edge/agent-forged#1"))
            .await,
        Err(ControlError::Conflict(_))
    ));
    // A lease that ended is refused even before another worker takes the job: the late
    // outcome is dropped, and the job, due again, is handed out under a new lease.
    let ended = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64
        - 1;
    sqlx::query("UPDATE jobs SET leased_until = $1, due_at = $1 WHERE lease_owner = $2")
        .bind(ended)
        .bind(leased.lease.clone())
        .execute(plane.store().pool())
        .await?;
    ensure!(matches!(
        plane.agent_report(&agent, report(&leased.lease)).await,
        Err(ControlError::Conflict(_))
    ));
    ensure!(!plane.inventory().await?.contains_key("a_b"));
    let again = plane.agent_poll(&agent, Poll { free: 8 }).await?;
    ensure!(again.actions.len() == 1, "{again:?}");
    let lease = again.actions[0].lease.clone();
    ensure!(lease != leased.lease && again.actions[0].subject == leased.subject);
    plane.agent_report(&agent, report(&lease)).await?;
    ensure!(plane.inventory().await?.contains_key("a_b"));
    // Once recorded, the lease is gone: the same report again is refused.
    ensure!(matches!(
        plane.agent_report(&agent, report(&lease)).await,
        Err(ControlError::Conflict(_))
    ));

    // A revoked credential stops working at once; an expired one too.
    plane.revoke_connector_credential(&agent.credential).await?;
    ensure!(matches!(
        plane.authenticate_agent(&secret, "edge").await,
        Err(ControlError::Unauthenticated)
    ));
    let short = plane
        .create_connector_credential("edge", None, Some(Duration::from_secs(1)))
        .await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ensure!(matches!(
        plane
            .authenticate_agent(short.credential.expose_secret(), "edge")
            .await,
        Err(ControlError::Unauthenticated)
    ));
    ensure!(matches!(
        plane.revoke_connector_credential("cc_missing").await,
        Err(ControlError::NotFound(_))
    ));
    Ok(())
}

#[test]
fn integrations_bound_to_agents_are_checked() {
    let refused = |text: &str| {
        Config::parse(text, std::iter::empty(), None)
            .unwrap_err()
            .to_string()
    };
    let base = "[[integrations]]\nname = \"i\"\ntype = \"ssh\"\n";
    let undeclared = refused(&format!(
        "{base}connector = \"edge\"\nsecret_store = {{ aws = {{ region = \"r\", secret_id = \"s\" }} }}\n"
    ));
    ensure_contains(&undeclared, "integrations[0].connector");
    let inline = refused(&format!(
        "[connector]\nagents = [\"edge\"]\n{base}connector = \"edge\"\nsecret_store = {{ apono = {{ parameters = {{ k = \"v\" }} }} }}\n"
    ));
    ensure_contains(&inline, "secret_store");
    let own = refused("[connector]\nid = \"edge\"\nagents = [\"edge\", \"Bad_Id\"]\n");
    ensure_contains(&own, "connector.agents[0]");
    ensure_contains(&own, "connector.agents[1]");
}

fn ensure_contains(text: &str, part: &str) {
    assert!(text.contains(part), "{part:?} not in {text}");
}
