//! The outbound-only agent of an Apono connector (`apono-connector agent`).
//!
//! A connector in another network (an AWS account, an on-prem data centre) runs an [`Agent`]:
//! it dials out to the control plane over HTTPS (no inbound port), long-polls for the actions of
//! the integrations bound to its connector id, runs each on its own [`Executor`] — which
//! resolves the integration's secret from the agent's own secret stores, so admin secrets never
//! leave that network — and reports each result. The control plane's ledger owns every state:
//! the agent keeps only the results it has not delivered yet, a cache it can lose (a lost
//! result's lease ends and the action, idempotent, is sent again).
//!
//! * The control plane is authenticated by TLS against a pinned CA ([`AgentOptions::ca_pem`]:
//!   only that CA is trusted); the agent by its credential (`apono-connector connectors
//!   create`), sent as a bearer token with its connector id.
//! * Every action is leased: a result reported after its lease ended, once another worker took
//!   the action over, is refused by the control plane (409), and the agent drops it.
//! * Agents with one connector id run active-active: each takes what it has room for.
//!
//! The messages are [`apono_runtime::wire`]'s.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use apono_agent::{Agent, AgentOptions};
//! use apono_core::CancelSignal;
//! # async fn run(executor: Arc<apono_runtime::Executor>, ca_pem: Vec<u8>) -> Result<(), apono_agent::AgentError> {
//! let agent = Agent::new(
//!     AgentOptions {
//!         connector_id: "site-a".into(),
//!         control_plane: "https://apono.example.com:8443".parse().expect("a URL"),
//!         credential: std::env::var("APONO_AGENT_CREDENTIAL").unwrap_or_default().into(),
//!         ca_pem,
//!     },
//!     executor,
//! )?;
//! agent.run(CancelSignal::new()).await;
//! # Ok(())
//! # }
//! ```
//!
//! # What is proven, against what
//!
//! The repository's `tests/agent.rs` runs the control plane and two agents of different
//! connector ids, each in its own network namespace with its own sshd and OpenBao, through
//! grants and revokes, an agent killed mid-backlog, one cut off past its lease (its late result
//! refused) and a second agent of the same id taking over.

use std::sync::Arc;
use std::time::Duration;

use apono_core::CancelSignal;
use apono_runtime::Executor;
use apono_runtime::wire::{CONNECTOR_HEADER, Leased, POLL_PATH, Poll, REPORT_PATH, Report, Work};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};
use url::Url;

/// How long a poll may take on the wire (the control plane holds one at most 20 s).
const POLL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one report may take.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an undelivered result is kept (retried) before it is given up.
const KEEP_RESULT: Duration = Duration::from_secs(600);
/// How long a stopping agent waits for its actions in flight and their results.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The longest wait between two tries to reach the control plane.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What an agent needs to know.
pub struct AgentOptions {
    /// The connector id it serves.
    pub connector_id: String,
    /// The control plane's base URL (`https://…`).
    pub control_plane: Url,
    /// The agent's credential (`apono-connector connectors create`).
    pub credential: SecretString,
    /// The CA certificate(s), PEM, that the control plane's certificate must chain to; the
    /// only ones trusted.
    pub ca_pem: Vec<u8>,
}

impl std::fmt::Debug for AgentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentOptions")
            .field("connector_id", &self.connector_id)
            .field("control_plane", &self.control_plane.as_str())
            .finish_non_exhaustive()
    }
}

/// Why an agent cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The control plane's URL is not `https://`.
    #[error("the control plane's URL must be https://, not {0}")]
    NotHttps(String),
    /// The CA file holds no usable certificate.
    #[error("the CA certificate is not usable")]
    Ca(#[source] reqwest::Error),
    /// The HTTP client cannot be built.
    #[error("cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// An agent (see the [crate documentation](crate)).
#[derive(Debug, Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    connector_id: String,
    poll_url: Url,
    report_url: Url,
    credential: SecretString,
    http: reqwest::Client,
    executor: Arc<Executor>,
    slots: Arc<Semaphore>,
}

/// What became of one report.
enum Delivery {
    Accepted,
    Refused(String),
    Retry(String),
}

impl Agent {
    /// An agent of `options` running actions on `executor` (at most its global limit at once).
    pub fn new(options: AgentOptions, executor: Arc<Executor>) -> Result<Self, AgentError> {
        if options.control_plane.scheme() != "https" {
            return Err(AgentError::NotHttps(options.control_plane.to_string()));
        }
        let certs =
            reqwest::Certificate::from_pem_bundle(&options.ca_pem).map_err(AgentError::Ca)?;
        let http = reqwest::Client::builder()
            .tls_certs_only(certs)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(AgentError::Client)?;
        let join = |path: &str| {
            options
                .control_plane
                .join(path)
                .map_err(|_| AgentError::NotHttps(options.control_plane.to_string()))
        };
        let slots = Arc::new(Semaphore::new(executor.limits().global));
        Ok(Self {
            inner: Arc::new(Inner {
                connector_id: options.connector_id.clone(),
                poll_url: join(POLL_PATH)?,
                report_url: join(REPORT_PATH)?,
                credential: options.credential,
                http,
                executor,
                slots,
            }),
        })
    }

    /// Polls for work and runs it until `shutdown` fires, then waits up to 10 s for the actions
    /// in flight and the delivery of their results; what is left is abandoned (its leases end
    /// and the control plane sends it again).
    pub async fn run(&self, shutdown: CancelSignal) {
        let mut tasks = JoinSet::new();
        let mut failures: u32 = 0;
        info!(connector = %self.inner.connector_id, control_plane = %self.inner.poll_url.origin().ascii_serialization(), "agent started");
        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            // Room for at least one action before asking for work.
            let first = tokio::select! {
                () = shutdown.cancelled() => break,
                permit = self.inner.slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let free = self.inner.slots.available_permits() + 1;
            let work = tokio::select! {
                () = shutdown.cancelled() => break,
                work = self.poll(free) => work,
            };
            let actions = match work {
                Ok(work) => {
                    if failures > 0 {
                        info!(connector = %self.inner.connector_id, "control plane reachable again");
                    }
                    failures = 0;
                    work.actions
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(30) {
                        warn!(connector = %self.inner.connector_id, error = %e, "cannot poll the control plane");
                    }
                    drop(first);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff(failures)) => continue,
                    }
                }
            };
            let mut first = Some(first);
            for leased in actions {
                let permit = match first.take() {
                    Some(permit) => permit,
                    None => match self.inner.slots.clone().acquire_owned().await {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                };
                let inner = self.inner.clone();
                tasks.spawn(async move {
                    inner.run_one(leased).await;
                    drop(permit);
                });
            }
        }
        info!(in_flight = tasks.len(), "agent stopping");
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            // Their leases end and the control plane sends the actions again.
            warn!(
                in_flight = tasks.len(),
                "abandoning actions and undelivered results"
            );
            tasks.abort_all();
        }
    }

    async fn poll(&self, free: usize) -> Result<Work, String> {
        let body = serde_json::to_vec(&Poll { free }).map_err(|e| e.to_string())?;
        let response = self
            .inner
            .request(&self.inner.poll_url, body, POLL_TIMEOUT)
            .await
            .map_err(|e| apono_core::error_chain(&e))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| apono_core::error_chain(&e))?;
        if !status.is_success() {
            return Err(format!(
                "the control plane answered {status}: {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    }
}

impl Inner {
    async fn request(
        &self,
        url: &Url,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<reqwest::Response, reqwest::Error> {
        self.http
            .post(url.clone())
            .bearer_auth(self.credential.expose_secret())
            .header(CONNECTOR_HEADER, &self.connector_id)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body)
            .send()
            .await
    }

    /// Runs one leased action and delivers its result: retried while the control plane
    /// cannot be reached, dropped once it is accepted or refused.
    async fn run_one(&self, leased: Leased) {
        let Leased {
            lease,
            kind,
            subject,
            action,
            ..
        } = leased;
        debug!(%kind, %subject, integration = %action.integration().name, "running");
        let result = self.executor.perform(&action, &CancelSignal::new()).await;
        let report = Report {
            lease,
            kind,
            subject,
            result,
        };
        let body = match serde_json::to_vec(&report) {
            Ok(body) => body,
            Err(e) => {
                warn!(kind = %report.kind, subject = %report.subject, error = %e, "cannot encode a result");
                return;
            }
        };
        let give_up = tokio::time::Instant::now() + KEEP_RESULT;
        let mut tries = 0;
        loop {
            tries += 1;
            match self.deliver(body.clone()).await {
                Delivery::Accepted => {
                    debug!(kind = %report.kind, subject = %report.subject, "result recorded");
                    return;
                }
                Delivery::Refused(why) => {
                    warn!(kind = %report.kind, subject = %report.subject, reason = %why, "result refused by the control plane");
                    return;
                }
                Delivery::Retry(why) => {
                    if tries == 1 || tries % 30 == 0 {
                        warn!(kind = %report.kind, subject = %report.subject, error = %why, "cannot deliver a result; retrying");
                    }
                    if tokio::time::Instant::now() > give_up {
                        warn!(kind = %report.kind, subject = %report.subject, "giving up a result; its lease ends and the action is sent again");
                        return;
                    }
                    tokio::time::sleep(backoff(tries)).await;
                }
            }
        }
    }

    async fn deliver(&self, body: Vec<u8>) -> Delivery {
        let response = match self.request(&self.report_url, body, REPORT_TIMEOUT).await {
            Ok(response) => response,
            Err(e) => return Delivery::Retry(apono_core::error_chain(&e)),
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let text: String = text.chars().take(300).collect();
        match status {
            s if s.is_success() => Delivery::Accepted,
            StatusCode::CONFLICT
            | StatusCode::FORBIDDEN
            | StatusCode::BAD_REQUEST
            | StatusCode::NOT_FOUND => Delivery::Refused(format!("{status}: {text}")),
            _ => Delivery::Retry(format!("{status}: {text}")),
        }
    }
}

/// 100 ms, doubled per failure, at most [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    let ms = 100u64.saturating_mul(1 << failures.clamp(1, 10).saturating_sub(1));
    Duration::from_millis(ms).min(MAX_BACKOFF)
}
