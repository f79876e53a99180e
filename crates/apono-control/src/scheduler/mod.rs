//! The durable scheduler: claims due jobs from the ledger and runs them on the executor, one
//! module per job kind ([`grant`], [`revoke`], [`rotate`], [`cleanup`], [`discover`]).
//!
//! # A job is claimed only when it can start
//!
//! The loop counts the actions it has in flight, per target and in all, and claims only due
//! jobs that fit the executor's limits (taken round-robin over targets): a claimed job never
//! waits for an executor slot, so it runs at once, within `action_timeout`, well inside its
//! lease (`2 × action_timeout + 10 s`). Other replicas claim what they can run; a job is held
//! by one lease at a time, and an outcome is written only while its lease is still held
//! ([`crate::ledger`]'s fencing), so no job is ever executed by two workers at once.
//!
//! # Jobs of other connectors
//!
//! Each job module `prepare`s a claimed job into an [`Action`] and `conclude`s its
//! [`ActionResult`] into a ledger change; the loop runs the action on the local executor
//! ([`Executor::perform`]). The jobs of an integration bound to another connector id are left to
//! that connector's agents while one is online (they are claimed, prepared and concluded the same
//! way in `plane/agents.rs`); while none is, the loop claims them and fails them as for an
//! unreachable target ([`offline_error`]), so grants wait and revokes go `RevokeFailed`.

mod cleanup;
mod discover;
mod grant;
mod revoke;
mod rotate;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use apono_core::{CancelSignal, ErrorKind};
use apono_runtime::Executor;
use apono_runtime::wire::{Action, ActionResult, Failure};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::Config;
use crate::error::ControlError;
use crate::ledger::Ledger;
use crate::ledger::commit::{After, Applied, Change, Release};
use crate::ledger::jobs::{Claimed, Job, JobKind, JobScope};
use crate::ledger::store::Backend;
use crate::metrics::RevokeLag;
use crate::model::now_ms;

/// What a job's run asks the ledger to record, and what to do once it is recorded.
pub(crate) struct Outcome {
    change: Change,
    next: Next,
    then: Then,
}

/// A claimed job, ready to run or already decided.
pub(crate) enum Plan {
    /// Run this action, then conclude.
    Run(Box<Prepared>),
    /// Nothing to run (the integration was removed, the grant has no state): record this.
    Decided(Outcome),
}

/// The action of a claimed job and what its conclusion needs to know of when it started.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// What to run.
    pub(crate) action: Action,
    /// A grant completed only so that its revoke can remove it (credentials never shown).
    recovering: bool,
    /// When it was prepared (Unix ms).
    started: i64,
}

/// What becomes of the job row.
enum Next {
    /// The change deleted or moved it; a row it left stays due at the lease's end.
    Done,
    /// Retry with backoff.
    Retry(String),
    /// Due again at this time.
    Reschedule(i64),
}

/// What to do in memory once the outcome is committed.
enum Then {
    Nothing,
    Revoked(Option<i64>),
}

impl Outcome {
    fn done(change: Change) -> Self {
        Self {
            change,
            next: Next::Done,
            then: Then::Nothing,
        }
    }

    fn retry(error: String) -> Self {
        Self {
            change: Change::Nothing,
            next: Next::Retry(error),
            then: Then::Nothing,
        }
    }
}

/// Actions in flight, by target and in all.
#[derive(Debug, Default)]
struct InFlight {
    by_target: HashMap<String, usize>,
    total: usize,
}

/// The scheduler of one control plane.
#[derive(Debug)]
pub(crate) struct Scheduler {
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) config: Arc<Config>,
    pub(crate) executor: Arc<Executor>,
    pub(crate) lag: Arc<RevokeLag>,
    pub(crate) wake: Arc<Wake>,
    in_flight: Mutex<InFlight>,
    /// When the set of online connectors was read, and the set.
    online: Mutex<(i64, BTreeSet<String>)>,
    /// When each agent credential's use was last written to the ledger.
    seen: Mutex<HashMap<String, i64>>,
}

/// Wakes the scheduler loop (one waiter) and every agent's long poll waiting for work.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    scheduler: Notify,
    agents: Notify,
}

impl Wake {
    /// New work, or a slot freed: the scheduler loop and the agents' polls look again.
    pub(crate) fn notify_one(&self) {
        self.scheduler.notify_one();
        self.agents.notify_waiters();
    }

    /// Resolves at the next [`Wake::notify_one`] (for the scheduler loop).
    pub(crate) async fn notified(&self) {
        self.scheduler.notified().await;
    }

    /// The agents' side: a future that resolves at the next [`Wake::notify_one`] after it was
    /// created (create it before looking for work, await it after finding none).
    pub(crate) fn agents(&self) -> tokio::sync::futures::Notified<'_> {
        self.agents.notified()
    }
}

impl Scheduler {
    pub(crate) fn new(
        ledger: Arc<Ledger>,
        config: Arc<Config>,
        executor: Arc<Executor>,
        lag: Arc<RevokeLag>,
        wake: Arc<Wake>,
    ) -> Self {
        Self {
            ledger,
            config,
            executor,
            lag,
            wake,
            in_flight: Mutex::new(InFlight::default()),
            online: Mutex::new((i64::MIN / 2, BTreeSet::new())),
            seen: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn lease_ms(&self) -> i64 {
        (self.config.connector.action_timeout.0.as_millis() as i64) * 2 + 10_000
    }

    pub(crate) fn backoff_ms(&self, attempts: i64) -> i64 {
        backoff_ms(&self.config.connector, attempts)
    }

    /// The most actions this scheduler runs at once, and per target.
    fn limits(&self) -> (usize, usize) {
        let executor = self.executor.limits();
        (
            self.config
                .connector
                .max_concurrent_actions
                .clamp(1, executor.global),
            executor.per_target,
        )
    }

    /// From `due` (in round-robin order), the jobs that can start now, counted as in flight.
    fn reserve(&self, due: Vec<Job>) -> Vec<Job> {
        let (global, per_target) = self.limits();
        let mut flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for job in due {
            if flight.total >= global {
                break;
            }
            let busy = flight.by_target.get(&job.target).copied().unwrap_or(0);
            if busy >= per_target {
                continue;
            }
            flight.total += 1;
            *flight.by_target.entry(job.target.clone()).or_default() += 1;
            out.push(job);
        }
        out
    }

    /// Gives back the slot of a job that ended (or was not claimed).
    fn unreserve(&self, target: &str) {
        let mut flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        flight.total = flight.total.saturating_sub(1);
        if let Some(n) = flight.by_target.get_mut(target) {
            *n -= 1;
            if *n == 0 {
                flight.by_target.remove(target);
            }
        }
    }

    /// Targets at their limit of actions in flight (at most 100, the busiest first).
    fn busy_targets(&self) -> Vec<String> {
        let (_, per_target) = self.limits();
        let flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut busy: Vec<(&String, &usize)> = flight
            .by_target
            .iter()
            .filter(|(_, n)| **n >= per_target)
            .collect();
        busy.sort_by(|a, b| b.1.cmp(a.1));
        busy.into_iter().take(100).map(|(t, _)| t.clone()).collect()
    }

    fn free(&self) -> usize {
        let (global, _) = self.limits();
        let flight = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        global.saturating_sub(flight.total)
    }

    /// Claims what can start now from the due jobs; the slots of jobs not claimed are given
    /// back.
    async fn claim_startable(&self) -> Result<Vec<Claimed>, ControlError> {
        let now = now_ms();
        // Read a little more than fits, for round-robin over targets; never the whole backlog.
        let limit = (self.free() * 2).clamp(32, 512) as i64;
        let scope = self.local_scope().await;
        let due = self
            .ledger
            .due_jobs(now, limit, &self.busy_targets(), &scope)
            .await?;
        let wanted = self.reserve(round_robin(due));
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let targets: Vec<String> = wanted.iter().map(|j| j.target.clone()).collect();
        let claimed = match self
            .ledger
            .claim(wanted, now_ms(), now_ms() + self.lease_ms(), None)
            .await
        {
            Ok(claimed) => claimed,
            Err(e) => {
                for t in &targets {
                    self.unreserve(t);
                }
                return Err(e);
            }
        };
        // Give back the slots of the jobs not claimed (held elsewhere, or nothing to do).
        let mut left: HashMap<&str, usize> = HashMap::new();
        for t in &targets {
            *left.entry(t.as_str()).or_default() += 1;
        }
        for c in &claimed {
            if let Some(n) = left.get_mut(c.job.target.as_str()) {
                *n -= 1;
            }
        }
        for (t, n) in left {
            for _ in 0..n {
                self.unreserve(t);
            }
        }
        Ok(claimed)
    }

    /// Runs until `shutdown` fires, then waits up to `shutdown_grace` for work in flight; work
    /// still running after that is cancelled, which leaves its job due again.
    pub(crate) async fn run(self: Arc<Self>, shutdown: CancelSignal) -> Result<(), ControlError> {
        let abort = CancelSignal::new();
        if self.ledger.store().backend() == Backend::Sqlite {
            // SQLite means one process: leases left by a killed predecessor are void.
            self.ledger.void_leases().await?;
        }
        let mut tasks = JoinSet::new();
        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            if self.free() == 0 {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.wake.notified() => {},
                    () = tokio::time::sleep(Duration::from_millis(50)) => {},
                }
                continue;
            }
            let (global, _) = self.limits();
            if !tasks.is_empty() && self.free() < global / 8 {
                // Under load, let a few more slots free up so one claim takes several jobs
                // (each claim is a write transaction).
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(1)) => {},
                }
            }
            let claimed = match self.claim_startable().await {
                Ok(claimed) => claimed,
                Err(e) => {
                    warn!(error = %e, "cannot claim due jobs");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            if !claimed.is_empty() {
                for job in claimed {
                    let this = self.clone();
                    let abort = abort.clone();
                    tasks.spawn(async move {
                        let target = job.job.target.clone();
                        this.execute(job, &abort).await;
                        this.unreserve(&target);
                        this.wake.notify_one();
                    });
                }
                continue;
            }
            // Nothing startable: sleep until the next due time, a wake-up (new work, or a slot
            // freed), or 1 s (other replicas may add work).
            let scope = self.local_scope().await;
            let next = self.ledger.next_due(&scope).await.unwrap_or(None);
            let wait = next
                .map(|due| (due - now_ms()).clamp(0, 1000))
                .unwrap_or(1000);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {},
                () = tokio::time::sleep(Duration::from_millis(wait.max(5) as u64)) => {},
            }
        }
        info!(in_flight = tasks.len(), "scheduler stopping");
        let grace = self.config.connector.shutdown_grace.0;
        let drained =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            warn!(in_flight = tasks.len(), "abandoning in-flight actions");
            abort.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            tasks.abort_all();
        }
        Ok(())
    }

    /// Runs every job due now until none is left that this worker can claim.
    pub(crate) async fn run_due_once(self: &Arc<Self>) -> Result<usize, ControlError> {
        let mut ran = 0;
        loop {
            let claimed = self.claim_startable().await?;
            if claimed.is_empty() {
                // Nothing due, or all of it held by other leases (or waiting for a slot that
                // no action of this call holds).
                return Ok(ran);
            }
            let mut set = JoinSet::new();
            for job in claimed {
                ran += 1;
                let this = self.clone();
                set.spawn(async move {
                    let target = job.job.target.clone();
                    this.execute(job, &CancelSignal::new()).await;
                    this.unreserve(&target);
                });
            }
            while set.join_next().await.is_some() {}
        }
    }

    /// What a claimed job will run, or the outcome already decided without running anything.
    pub(crate) fn prepare(&self, claimed: &Claimed, now: i64) -> Result<Plan, ControlError> {
        let job = &claimed.job;
        match (job.kind, &claimed.grant) {
            (JobKind::Grant, Some(grant)) => grant::prepare(self, grant, now),
            (JobKind::Revoke, Some(grant)) => revoke::prepare(self, grant, now),
            (JobKind::Rotate, Some(grant)) => rotate::prepare(self, grant, now),
            (JobKind::Cleanup, Some(grant)) => cleanup::prepare(self, grant, now),
            (JobKind::Discover, _) => Ok(discover::prepare(self, job, now)),
            (kind, None) => Err(ControlError::Corrupt(format!(
                "a {kind} job was claimed without its grant"
            ))),
        }
    }

    /// The outcome of a prepared job from what its action did (here or on an agent).
    pub(crate) async fn conclude(
        &self,
        claimed: &Claimed,
        prepared: &Prepared,
        result: ActionResult,
    ) -> Result<Outcome, ControlError> {
        let job = &claimed.job;
        match (job.kind, &claimed.grant) {
            (JobKind::Grant, Some(grant)) => grant::conclude(self, grant, prepared, result).await,
            (JobKind::Revoke, Some(grant)) => revoke::conclude(self, job, grant, prepared, result),
            (JobKind::Rotate, Some(grant)) => {
                rotate::conclude(self, job, grant, prepared, result).await
            }
            (JobKind::Cleanup, Some(grant)) => cleanup::conclude(job, grant, result),
            (JobKind::Discover, _) => discover::conclude(self, prepared, result),
            (kind, None) => Err(ControlError::Corrupt(format!(
                "a {kind} job was claimed without its grant"
            ))),
        }
    }

    /// Runs a job claimed by this scheduler: on the local executor, or, for an integration
    /// bound to another connector (claimed here only while that connector is offline), as an
    /// attempt failed for want of its connector, exactly like an unreachable target.
    async fn execute(&self, claimed: Claimed, abort: &CancelSignal) {
        let job = &claimed.job;
        let result = match self.prepare(&claimed, now_ms()) {
            Ok(Plan::Decided(outcome)) => Ok(outcome),
            Ok(Plan::Run(prepared)) => {
                let result = match self.remote_connector(&prepared.action.integration().name) {
                    Some(connector) => ActionResult::Failed(Failure::new(
                        ErrorKind::Unavailable,
                        offline_error(connector),
                    )),
                    None => self.executor.perform(&prepared.action, abort).await,
                };
                self.conclude(&claimed, &prepared, result).await
            }
            Err(e) => Err(e),
        };
        let outcome = result.unwrap_or_else(|e| {
            warn!(kind = %job.kind, subject = %job.subject, error = %e, "job failed");
            Outcome::retry(e.to_string())
        });
        let _ = self.finish(&claimed, outcome).await;
    }

    /// Records a job's outcome under its claim's lease (fenced), logs it, and returns what
    /// the ledger did with it.
    pub(crate) async fn finish(
        &self,
        claimed: &Claimed,
        outcome: Outcome,
    ) -> Result<Applied, ControlError> {
        let job = &claimed.job;
        let attempts = job.attempts + 1;
        let after = match outcome.next {
            Next::Done => After::Keep,
            Next::Retry(error) => After::Retry {
                attempts,
                error,
                due_at: now_ms() + self.backoff_ms(attempts),
            },
            Next::Reschedule(due_at) => After::Reschedule { due_at },
        };
        let release = Release {
            kind: job.kind,
            subject: job.subject.clone(),
            lease: claimed.lease.clone(),
            after,
        };
        let granted = matches!(outcome.change, Change::Granted { .. });
        let revoked = matches!(outcome.change, Change::Revoked { .. });
        let applied = self.ledger.record(outcome.change, release).await;
        if let (Ok(Applied::Done), Some(grant)) = (&applied, &claimed.grant)
            && (granted || revoked)
            && tracing::enabled!(tracing::Level::INFO)
        {
            // One line per grant and revoke for the operator: who, what, where, and the lag.
            let spec = grant.spec().ok();
            let grantee = spec.as_ref().map(|s| s.grantee.email.clone());
            let lag_ms = grant.expires_at.map(|e| (now_ms() - e).max(0));
            let connector = crate::ledger::jobs::lease_connector(&claimed.lease);
            if granted {
                info!(grant = %grant.id, grantee = ?grantee, integration = %grant.integration, resource = %grant.resource_id, connector, expires_at = ?grant.expires_at.map(crate::model::ts), "access granted");
            } else {
                info!(grant = %grant.id, grantee = ?grantee, integration = %grant.integration, resource = %grant.resource_id, connector, lag_ms = ?lag_ms, "access revoked");
            }
        }
        match &applied {
            Ok(Applied::Done) => match outcome.then {
                Then::Nothing => {}
                Then::Revoked(lag) => {
                    if let Some(lag) = lag {
                        self.lag.observe(lag);
                    }
                }
            },
            Ok(Applied::RevokedWhileGranting) => {
                // Credentials of a grant revoked while it was being granted were never sealed
                // into the store: they are never shown.
                self.wake.notify_one();
            }
            Ok(Applied::Changed) => {
                warn!(kind = %job.kind, subject = %job.subject, "the grant changed while its action ran; retried");
            }
            Ok(Applied::Fenced) => {
                warn!(kind = %job.kind, subject = %job.subject, "the job's lease ended before its outcome was recorded; another worker owns it now");
            }
            Err(e) => {
                warn!(kind = %job.kind, subject = %job.subject, error = %e, "cannot record a job's outcome; its lease will expire");
            }
        }
        applied
    }

    /// The connector id an integration is bound to, when it is not this control plane's.
    pub(crate) fn remote_connector(&self, integration: &str) -> Option<&str> {
        self.config
            .integration(integration)
            .and_then(|i| i.connector.as_deref())
            .filter(|c| *c != self.config.connector.id)
    }

    /// The integrations bound to connector `id`.
    pub(crate) fn integrations_of(&self, id: &str) -> Vec<String> {
        self.config
            .integrations
            .iter()
            .filter(|i| i.connector.as_deref() == Some(id))
            .map(|i| i.name.clone())
            .collect()
    }

    /// The connectors (other than this one) with an agent seen within
    /// `connector.agent_offline_after`, read from the ledger at most every 500 ms.
    pub(crate) async fn online(&self) -> BTreeSet<String> {
        if self.config.connector.agents.is_empty() {
            return BTreeSet::new();
        }
        let now = now_ms();
        {
            let cached = self.online.lock().unwrap_or_else(PoisonError::into_inner);
            if now - cached.0 < 500 {
                return cached.1.clone();
            }
        }
        let since = now - self.offline_after_ms();
        match self.ledger.connectors_seen_since(since).await {
            Ok(seen) => {
                let seen: BTreeSet<String> = seen.into_iter().collect();
                *self.online.lock().unwrap_or_else(PoisonError::into_inner) = (now, seen.clone());
                seen
            }
            Err(e) => {
                warn!(error = %e, "cannot read which connectors are online");
                self.online
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .1
                    .clone()
            }
        }
    }

    /// Whether an agent's use of `credential` is to be written to the ledger now (at most
    /// every `agent_offline_after` / 6); marks it written.
    pub(crate) fn seen_due(&self, credential: &str) -> bool {
        let now = now_ms();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let last = seen.get(credential).copied().unwrap_or(i64::MIN / 2);
        if now - last < self.offline_after_ms() / 6 {
            return false;
        }
        seen.insert(credential.to_owned(), now);
        true
    }

    /// Forgets the cached set of online connectors (an agent just came back).
    pub(crate) fn forget_online(&self) {
        self.online.lock().unwrap_or_else(PoisonError::into_inner).0 = i64::MIN / 2;
    }

    /// `connector.agent_offline_after` in milliseconds.
    pub(crate) fn offline_after_ms(&self) -> i64 {
        self.config.connector.agent_offline_after.0.as_millis() as i64
    }

    /// The jobs this scheduler runs itself: all but those of integrations whose connector has
    /// an agent online.
    async fn local_scope(&self) -> JobScope {
        let online = self.online().await;
        let exclude: Vec<String> = self
            .config
            .integrations
            .iter()
            .filter(|i| {
                i.connector
                    .as_deref()
                    .is_some_and(|c| c != self.config.connector.id && online.contains(c))
            })
            .map(|i| i.name.clone())
            .collect();
        JobScope::Except(exclude)
    }
}

/// The error of an action whose connector has no agent online (what a job waiting for it
/// carries, and what [`crate::ledger`]'s `hasten` looks for).
pub(crate) fn offline_error(connector: &str) -> String {
    format!("connector {connector:?} is offline")
}

/// Orders jobs so that each target gets a turn before any gets a second one, keeping the
/// due-time order within a target.
fn round_robin(jobs: Vec<Job>) -> Vec<Job> {
    let mut queues: BTreeMap<String, VecDeque<Job>> = BTreeMap::new();
    let mut order = Vec::new();
    for job in jobs {
        if !queues.contains_key(&job.target) {
            order.push(job.target.clone());
        }
        queues.entry(job.target.clone()).or_default().push_back(job);
    }
    let mut out = Vec::new();
    loop {
        let mut any = false;
        for target in &order {
            if let Some(job) = queues.get_mut(target).and_then(VecDeque::pop_front) {
                out.push(job);
                any = true;
            }
        }
        if !any {
            return out;
        }
    }
}

/// The delay before retry number `attempts` (from 1): `retry_base` doubled per attempt, at
/// most `retry_max`, with jitter (a half to the whole of it). Actions and notifications alike.
pub(crate) fn backoff_ms(connector: &crate::config::ConnectorSettings, attempts: i64) -> i64 {
    let base = connector.retry_base.0.as_millis() as f64;
    let max = connector.retry_max.0.as_millis() as f64;
    let exp = base * 2f64.powi((attempts.clamp(1, 30) - 1) as i32);
    let capped = exp.min(max);
    let jitter: f64 = rand::random::<f64>() * 0.5 + 0.5;
    (capped * jitter) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(target: &str, n: usize) -> Job {
        Job {
            kind: JobKind::Revoke,
            subject: format!("{target}-{n}"),
            target: target.into(),
            attempts: 0,
            due_at: 0,
        }
    }

    #[test]
    fn every_target_gets_a_turn_before_any_gets_a_second() {
        let mut jobs: Vec<Job> = (0..5).map(|n| job("busy", n)).collect();
        jobs.push(job("quiet", 0));
        jobs.push(job("other", 0));
        let order: Vec<String> = round_robin(jobs).into_iter().map(|j| j.subject).collect();
        assert_eq!(
            order[..4],
            ["busy-0", "quiet-0", "other-0", "busy-1"].map(String::from)
        );
        assert_eq!(order.len(), 7);
        assert_eq!(order[6], "busy-4");
    }
}
