//! Agent mode, the control plane's side: agents' credentials, the long poll that leases them
//! the jobs of the integrations bound to their connector id, and their reports.
//!
//! An agent's job is claimed exactly as a local one ([`crate::ledger`]'s `claim`, with a lease
//! token that names the agent's connector id), prepared by the same job modules, and its
//! reported result is concluded and recorded by them under the same fencing: a report whose
//! lease no longer holds the job is refused (409) and audited. An agent may report only on a
//! lease that names its own connector id, for an integration bound to it.

use std::time::Duration;

use apono_runtime::wire::{Leased, Poll, Report, Work};
use secrecy::SecretString;
use serde_json::json;
use tracing::info;

use super::{ControlPlane, hash_token};
use crate::config::is_connector_id;
use crate::error::ControlError;
use crate::ledger::audit::AuditEntry;
use crate::ledger::commit::Applied;
use crate::ledger::jobs::{JobScope, lease_connector};
use crate::model::{ConnectorCredential, now_ms};
use crate::scheduler::{Plan, offline_error};

/// The longest an agent's poll is held open without work.
const MAX_HOLD: Duration = Duration::from_secs(20);

/// An agent authenticated by its credential.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentIdentity {
    /// The credential's id (`cc_…`).
    pub credential: String,
    /// The connector id it serves.
    pub connector: String,
}

/// A connector credential just created: the secret is shown here once and never again.
#[derive(Debug)]
pub struct CreatedConnectorCredential {
    /// What lists show of it.
    pub info: ConnectorCredential,
    /// The credential an agent presents (`apono_agent_…`).
    pub credential: SecretString,
}

/// How integrations bound to a connector fare: what the API shows as their status.
pub const CONNECTOR_OFFLINE: &str = "connector offline";

impl ControlPlane {
    /// Creates a credential for the agents of connector `connector` (by the operator on the
    /// control plane's host), lasting `expires_in` (default `connector.token_default_expiry`,
    /// at most `connector.token_max_expiry`). Only its hash is stored.
    pub async fn create_connector_credential(
        &self,
        connector: &str,
        name: Option<&str>,
        expires_in: Option<Duration>,
    ) -> Result<CreatedConnectorCredential, ControlError> {
        let c = &self.config.connector;
        let mut problems = Vec::new();
        if !is_connector_id(connector) || connector == c.id {
            problems.push(format!(
                "{connector:?} is not another connector's id (1 to 63 lower-case letters, digits and `-`, not starting with `-`; not this connector's own id)"
            ));
        }
        let expiry = expires_in.unwrap_or(c.token_default_expiry.0);
        if expiry > c.token_max_expiry.0 || expiry.is_zero() {
            problems.push(format!(
                "the expiry must be more than 0 and at most {} (connector.token_max_expiry)",
                c.token_max_expiry
            ));
        }
        let name = name.unwrap_or("agent").trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            problems.push(
                "a credential's name has 1 to 100 characters, none of them control characters"
                    .into(),
            );
        }
        if !problems.is_empty() {
            return Err(ControlError::Invalid(problems));
        }
        let secret: [u8; 32] = rand::random();
        let credential = format!(
            "apono_agent_{}",
            data_encoding::BASE32_NOPAD
                .encode(&secret)
                .to_ascii_lowercase()
        );
        let expires_at = now_ms() + i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX / 2);
        let info = self
            .ledger
            .insert_connector_credential(
                "connector",
                connector,
                name,
                &hash_token(&credential),
                expires_at,
            )
            .await?;
        Ok(CreatedConnectorCredential {
            info,
            credential: credential.into(),
        })
    }

    /// Agents' credentials (never the credentials themselves), newest first: of one
    /// connector, or of all.
    pub async fn connector_credentials(
        &self,
        connector: Option<&str>,
    ) -> Result<Vec<ConnectorCredential>, ControlError> {
        self.ledger.connector_credentials(connector).await
    }

    /// Revokes credential `id` (by the operator): refused at the agent's next request on
    /// every replica.
    pub async fn revoke_connector_credential(&self, id: &str) -> Result<(), ControlError> {
        if self
            .ledger
            .revoke_connector_credential(id, "connector")
            .await?
        {
            Ok(())
        } else {
            Err(ControlError::NotFound(format!("connector credential {id}")))
        }
    }

    /// The agent a credential belongs to, which must serve connector `claimed` (what the
    /// agent says it serves) and be one of `connector.agents`.
    pub async fn authenticate_agent(
        &self,
        credential: &str,
        claimed: &str,
    ) -> Result<AgentIdentity, ControlError> {
        let found = self
            .ledger
            .connector_credential(&hash_token(credential))
            .await?;
        let Some((id, connector)) = found else {
            return Err(ControlError::Unauthenticated);
        };
        if connector != claimed || !self.config.connector.agents.contains(&connector) {
            return Err(self
                .refused(
                    &format!("agent:{connector}"),
                    "agent.poll",
                    &id,
                    ControlError::Forbidden(format!(
                        "this credential serves connector {connector:?}, which is not {claimed:?} or not one of connector.agents"
                    )),
                )
                .await);
        }
        Ok(AgentIdentity {
            credential: id,
            connector,
        })
    }

    /// `connector offline` when `integration` is bound to another connector none of whose
    /// agents is online; `None` otherwise.
    pub async fn integration_offline(&self, integration: &str) -> Option<&'static str> {
        let connector = self.scheduler.remote_connector(integration)?;
        if self.scheduler.online().await.contains(connector) {
            None
        } else {
            Some(CONNECTOR_OFFLINE)
        }
    }

    /// An agent's long poll: the due jobs of its connector's integrations, leased to it (at
    /// most `poll.free`), as soon as there are any, or none after a while
    /// (`connector.agent_offline_after` / 3, at most 20 s).
    pub async fn agent_poll(
        &self,
        agent: &AgentIdentity,
        poll: Poll,
    ) -> Result<Work, ControlError> {
        let s = &self.scheduler;
        let scope = JobScope::Only(s.integrations_of(&agent.connector));
        let free = poll.free.clamp(1, 256);
        let hold = (self.config.connector.agent_offline_after.0 / 3).min(MAX_HOLD);
        let deadline = tokio::time::Instant::now() + hold;
        loop {
            self.agent_seen(agent, &scope).await?;
            // Registered before looking, so new work announced meanwhile is not missed.
            let notified = self.wake.agents();
            let now = now_ms();
            let mut due = self.ledger.due_jobs(now, free as i64, &[], &scope).await?;
            due.truncate(free);
            if !due.is_empty() {
                let claimed = self
                    .ledger
                    .claim(due, now, now + s.lease_ms(), Some(&agent.connector))
                    .await?;
                let mut actions = Vec::new();
                for job in claimed {
                    match s.prepare(&job, now)? {
                        Plan::Run(prepared) => actions.push(Leased {
                            lease: job.lease.clone(),
                            kind: job.job.kind.as_str().to_owned(),
                            subject: job.job.subject.clone(),
                            lease_ms: u64::try_from(s.lease_ms()).unwrap_or(0),
                            action: prepared.action,
                        }),
                        Plan::Decided(outcome) => {
                            s.finish(&job, outcome).await?;
                        }
                    }
                }
                if !actions.is_empty() {
                    return Ok(Work { actions });
                }
                continue;
            }
            let next = self.ledger.next_due(&scope).await?;
            let wait = next.map_or(1000, |due| (due - now_ms()).clamp(5, 1000));
            tokio::select! {
                () = notified => {},
                () = tokio::time::sleep(Duration::from_millis(wait as u64)) => {},
                () = tokio::time::sleep_until(deadline) => return Ok(Work { actions: Vec::new() }),
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Work {
                    actions: Vec::new(),
                });
            }
        }
    }

    /// Records that an agent is polling (at most every `agent_offline_after` / 6 per
    /// credential); when its connector was offline, the jobs that failed for want of it are
    /// made due at once.
    async fn agent_seen(
        &self,
        agent: &AgentIdentity,
        scope: &JobScope,
    ) -> Result<(), ControlError> {
        let s = &self.scheduler;
        if !s.seen_due(&agent.credential) {
            return Ok(());
        }
        let was_online = s.online().await.contains(&agent.connector);
        self.ledger.connector_seen(&agent.credential).await?;
        s.forget_online();
        if !was_online {
            info!(connector = %agent.connector, "an agent of connector is online");
            self.ledger
                .audit(AuditEntry {
                    actor: &format!("agent:{}", agent.connector),
                    action: "connector.online",
                    subject: &agent.connector,
                    outcome: "ok",
                    details: json!({ "credential": agent.credential }),
                })
                .await?;
        }
        // What failed for want of the connector (here, or on a replica that had not seen the
        // agent yet) is due at once, not after its backoff.
        self.ledger
            .hasten(scope, &offline_error(&agent.connector))
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// An agent's result of one action it holds: concluded and recorded as the local
    /// scheduler's would be, under the claim's lease. Refused (403) for a lease of another
    /// connector or an integration not bound to the agent's; refused (409) when the lease no
    /// longer holds the job (it ended and another worker took it over).
    pub async fn agent_report(
        &self,
        agent: &AgentIdentity,
        report: Report,
    ) -> Result<(), ControlError> {
        let s = &self.scheduler;
        let actor = format!("agent:{}", agent.connector);
        if lease_connector(&report.lease) != agent.connector {
            return Err(self
                .refused(
                    &actor,
                    "agent.report",
                    &report.subject,
                    ControlError::Forbidden("the lease is not this connector's".into()),
                )
                .await);
        }
        let fenced = || {
            ControlError::Conflict(
                "the lease ended: the action was handed to another worker, whose outcome counts"
                    .into(),
            )
        };
        let Some(claimed) = self
            .ledger
            .held(&report.kind, &report.subject, &report.lease)
            .await?
        else {
            return Err(self
                .refused(&actor, "agent.report", &report.subject, fenced())
                .await);
        };
        let integration = claimed
            .grant
            .as_ref()
            .map_or(claimed.job.subject.as_str(), |g| g.integration.as_str());
        if s.remote_connector(integration) != Some(agent.connector.as_str()) {
            return Err(self
                .refused(
                    &actor,
                    "agent.report",
                    &report.subject,
                    ControlError::Forbidden(format!(
                        "integration {integration:?} is not bound to connector {:?}",
                        agent.connector
                    )),
                )
                .await);
        }
        let outcome = match s.prepare(&claimed, now_ms())? {
            Plan::Decided(outcome) => outcome,
            Plan::Run(prepared) => s.conclude(&claimed, &prepared, report.result).await?,
        };
        match s.finish(&claimed, outcome).await? {
            Applied::Fenced => Err(self
                .refused(&actor, "agent.report", &report.subject, fenced())
                .await),
            _ => Ok(()),
        }
    }
}
