//! Policy: pure functions of the configuration, the inventory, the caller and a request. Which
//! access flow allows a request and what is wrong with it, who may see, approve and revoke it,
//! what an `all_of` approval still waits for. No I/O: the ledger reads what policy needs, and
//! writes what policy decided.

pub(crate) mod approval;
mod route;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use apono_core::{Inventory, RequestStatus, Resource};
use serde_json::{Value, json};

use crate::config::{AccessFlow, ApprovalMode, Config, HumanDuration, User};
use crate::error::ControlError;
use crate::model::{
    AccessRequest, ApprovalRoute, ApproverSource, NewRequest, Problem, ProblemCode,
};
pub(crate) use route::Route;

/// What an `all_of` approval did, decided by the caller from the approvals already stored.
#[derive(Debug)]
pub(crate) enum AllOfStep {
    /// This approval completes the request: every approver's email.
    Completes(Vec<String>),
    /// Recorded; the request still waits (audit details).
    Recorded(Value),
}

/// The result of checking a request against the access flows.
#[derive(Debug)]
pub(crate) struct Evaluation<'c> {
    /// Everything that stops the request (empty: allowed).
    pub(crate) problems: Vec<Problem>,
    /// The flow that allows it; with problems, the first flow that covers it (to name limits).
    pub(crate) flow: Option<&'c AccessFlow>,
    /// Whether `flow` allows it (no problems).
    pub(crate) allowed: bool,
    /// The requested resources found in the inventory.
    pub(crate) resources: Vec<Resource>,
    /// The duration granted: the one asked for, or the flow's maximum.
    pub(crate) duration: Option<Duration>,
    /// When `flow` needs approval: who approves.
    pub(crate) route: Option<Route>,
}

impl Route {
    /// The route as the API shows it.
    pub(crate) fn shown(&self) -> ApprovalRoute {
        ApprovalRoute {
            source: self.source,
            mode: self.approvers.mode,
            approvers: approval::entries(&self.approvers)
                .iter()
                .map(ToString::to_string)
                .collect(),
        }
    }
}

/// The policy of one configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy<'c> {
    config: &'c Config,
}

impl<'c> Policy<'c> {
    pub(crate) fn new(config: &'c Config) -> Self {
        Self { config }
    }

    /// The limits on one request's size, each named in its problem.
    fn limits(&self, req: &NewRequest) -> Vec<Problem> {
        let limits = &self.config.connector;
        let mut problems = Vec::new();
        if req.resource_ids.len() > limits.max_resources_per_request {
            problems.push(Problem::new(
                ProblemCode::TooManyResources,
                format!(
                    "{} resources in one request; the limit is {} (connector.max_resources_per_request)",
                    req.resource_ids.len(),
                    limits.max_resources_per_request
                ),
            ));
        }
        let mut seen = HashSet::new();
        let duplicates: Vec<&str> = req
            .resource_ids
            .iter()
            .filter(|id| !seen.insert(id.as_str()))
            .map(String::as_str)
            .collect();
        if !duplicates.is_empty() {
            problems.push(Problem::new(
                ProblemCode::DuplicateResource,
                format!(
                    "resource_ids names {} more than once",
                    duplicates
                        .iter()
                        .take(5)
                        .map(|d| format!("{d:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if let Some(j) = &req.justification
            && j.chars().count() > limits.max_justification_length
        {
            problems.push(Problem::new(
                ProblemCode::JustificationTooLong,
                format!(
                    "the justification is {} characters; the limit is {} (connector.max_justification_length)",
                    j.chars().count(),
                    limits.max_justification_length
                ),
            ));
        }
        problems
    }

    /// Checks an approver's or rejecter's reason against the length limit.
    pub(crate) fn check_reason(&self, reason: Option<&str>) -> Result<(), ControlError> {
        let max = self.config.connector.max_reason_length;
        match reason {
            Some(r) if r.chars().count() > max => Err(ControlError::Invalid(vec![format!(
                "the reason is {} characters; the limit is {max} (connector.max_reason_length)",
                r.chars().count()
            )])),
            _ => Ok(()),
        }
    }

    /// Checks `req` by `user` against the access flows (only `only_flow`, when given).
    pub(crate) fn evaluate(
        &self,
        user: &User,
        req: &NewRequest,
        inventory: &BTreeMap<String, Inventory>,
        only_flow: Option<&str>,
    ) -> Evaluation<'c> {
        let mut problems = self.limits(req);
        if !problems.is_empty() {
            // Not worth matching a request that is too large.
            return Evaluation {
                problems,
                flow: None,
                allowed: false,
                resources: Vec::new(),
                duration: None,
                route: None,
            };
        }
        let known_integration = self.config.integration(&req.integration).is_some();
        if !known_integration {
            problems.push(Problem::new(
                ProblemCode::UnknownIntegration,
                format!("integration {:?} does not exist", req.integration),
            ));
        }
        if req.resource_ids.is_empty() {
            problems.push(Problem::new(
                ProblemCode::NoResource,
                "resource_ids names no resource",
            ));
        }
        let (resources, missing) = matching_resources(inventory, req);
        problems.extend(
            missing
                .into_iter()
                .map(|m| Problem::new(ProblemCode::UnknownResource, m)),
        );
        let requested = match &req.duration {
            Some(d) => match HumanDuration::parse(d) {
                Ok(d) => Some(d),
                Err(e) => {
                    problems.push(Problem::new(
                        ProblemCode::InvalidDuration,
                        format!("duration: {e}"),
                    ));
                    None
                }
            },
            None => None,
        };
        // The flows that cover this requester, target, permission and every resource.
        let candidates: Vec<&'c AccessFlow> = self
            .config
            .access_flows
            .iter()
            .filter(|f| only_flow.is_none_or(|name| f.name == name))
            .filter(|f| f.requestors.contains(user))
            .filter(|f| {
                f.targets.iter().any(|t| {
                    t.integration == req.integration
                        && t.resource_type == req.resource_type
                        && t.permissions.contains(&req.permission)
                        && resources.iter().all(|r| t.resources.matches(r))
                })
            })
            .collect();
        let mut flow_problems = Vec::new();
        let mut chosen = None;
        for flow in &candidates {
            let mine = self.flow_problems(flow, user, req, requested, &resources);
            if mine.is_empty() {
                chosen = Some(*flow);
                break;
            }
            flow_problems.extend(mine);
        }
        if candidates.is_empty() {
            problems.extend(self.uncovered(user, req, inventory, known_integration, only_flow));
        } else if chosen.is_none() {
            problems.extend(flow_problems);
        }
        let flow = chosen.or(candidates.first().copied());
        let route = flow
            .filter(|f| f.needs_approval())
            .map(|f| self.route(f, &req.integration, &resources, &user.email));
        Evaluation {
            allowed: problems.is_empty() && chosen.is_some(),
            problems,
            flow,
            resources,
            duration: flow.map(|f| requested.unwrap_or(f.grant_duration).0),
            route,
        }
    }

    /// Who approves a request of `requester` for `resources` of `integration` under `flow`
    /// (which needs approval): see `route.rs`.
    fn route(
        &self,
        flow: &AccessFlow,
        integration: &str,
        resources: &[Resource],
        requester: &str,
    ) -> Route {
        route::route(
            self.config,
            flow,
            self.config.integration(integration),
            resources,
            requester,
        )
    }

    /// Who approves `request` now, under the current configuration and `inventory` (`None`:
    /// its flow is gone or needs no approval). Resources no longer discovered carry no tags.
    pub(crate) fn request_route(
        &self,
        request: &AccessRequest,
        inventory: &BTreeMap<String, Inventory>,
    ) -> Option<Route> {
        let flow = self
            .config
            .flow(&request.flow)
            .filter(|f| f.needs_approval())?;
        let resources: Vec<Resource> = request
            .resource_ids
            .iter()
            .map(|id| {
                inventory
                    .get(&request.integration)
                    .and_then(|inv| {
                        inv.resources.iter().find(|r| {
                            r.id == *id && r.resource_type == request.resource_type.as_str()
                        })
                    })
                    .cloned()
                    .unwrap_or_else(|| Resource {
                        integration: request.integration.clone(),
                        resource_type: request.resource_type.as_str().into(),
                        id: id.clone(),
                        name: id.clone(),
                        tags: BTreeMap::new(),
                    })
            })
            .collect();
        Some(self.route(flow, &request.integration, &resources, &request.requester))
    }

    /// What one covering flow has against the request.
    fn flow_problems(
        &self,
        flow: &AccessFlow,
        user: &User,
        req: &NewRequest,
        requested: Option<HumanDuration>,
        resources: &[Resource],
    ) -> Vec<Problem> {
        let mut mine = Vec::new();
        if flow.justification_required
            && req
                .justification
                .as_deref()
                .is_none_or(|j| j.trim().is_empty())
        {
            mine.push(Problem::new(
                ProblemCode::JustificationRequired,
                format!("access flow {:?} requires a justification", flow.name),
            ));
        }
        if let Some(d) = requested
            && d > flow.grant_duration
        {
            mine.push(Problem {
                code: ProblemCode::DurationOverMax,
                message: format!(
                    "duration {d} is over the maximum {} of access flow {:?}",
                    flow.grant_duration, flow.name
                ),
                max: Some(flow.grant_duration.to_string()),
            });
        }
        // Owners who take over a flow no one can approve make it approvable.
        let by_flow = !flow.needs_approval()
            || self
                .route(flow, &req.integration, resources, &user.email)
                .source
                == ApproverSource::AccessFlow;
        if by_flow && let Some(problem) = self.unapprovable(flow, user) {
            mine.push(problem);
        }
        mine
    }

    /// Why no flow covers the request.
    fn uncovered(
        &self,
        user: &User,
        req: &NewRequest,
        inventory: &BTreeMap<String, Inventory>,
        known_integration: bool,
        only_flow: Option<&str>,
    ) -> Vec<Problem> {
        let mut problems = Vec::new();
        // A permission the integration does not offer says more than "no flow": only reported
        // when discovery has listed the resource type's permissions.
        let offered: Vec<&str> = inventory
            .get(&req.integration)
            .map(|inv| {
                inv.permissions
                    .iter()
                    .filter(|p| p.resource_type.as_str() == req.resource_type)
                    .map(|p| p.permission.as_str())
                    .collect()
            })
            .unwrap_or_default();
        if known_integration && !offered.is_empty() && !offered.contains(&req.permission.as_str()) {
            problems.push(Problem::new(
                ProblemCode::UnknownPermission,
                format!(
                    "permission {:?} is unknown for {} in integration {:?} (it offers {})",
                    req.permission,
                    req.resource_type,
                    req.integration,
                    offered.join(", ")
                ),
            ));
        }
        let which = only_flow.map_or_else(
            || "no access flow".to_owned(),
            |f| format!("access flow {f:?} no longer"),
        );
        problems.push(Problem::new(
            ProblemCode::NoMatchingFlow,
            format!(
                "{which} lets {} request {:?} on {} {:?} of integration {:?}",
                user.email, req.permission, req.resource_type, req.resource_ids, req.integration
            ),
        ));
        problems
    }

    /// Under an `all_of` flow: a problem when even every configured user approving could not
    /// meet all entries, leaving out `requester` where the flow bars self-approval.
    fn unapprovable(&self, flow: &AccessFlow, requester: &User) -> Option<Problem> {
        if flow.approvers.mode != ApprovalMode::AllOf || !flow.needs_approval() {
            return None;
        }
        let entries = approval::entries(&flow.approvers);
        let everyone: Vec<&User> = self
            .config
            .users
            .iter()
            .filter(|u| {
                !(flow.requester_cannot_approve_self
                    && u.email.eq_ignore_ascii_case(&requester.email))
            })
            .collect();
        let best = approval::progress(&entries, &everyone);
        if best.complete() {
            return None;
        }
        let whom = best.awaiting().join(", ");
        let message = if flow.requester_cannot_approve_self {
            format!(
                "access flow {:?} needs approval from {whom}, and no configured user other than \
                 the requester can give it",
                flow.name
            )
        } else {
            format!(
                "access flow {:?} needs approval from {whom}, and no configured user can give it",
                flow.name
            )
        };
        Some(Problem::new(ProblemCode::NoPossibleApproval, message))
    }

    /// Re-checks a pending request against the current configuration before it is approved:
    /// the requester is still a user (`requester`, as the caller found them now: in the
    /// configuration, or signed in through an identity provider with fresh groups), and the
    /// request's own flow still allows this requester, target, permission and duration.
    /// Returns the evaluation to grant.
    pub(crate) fn recheck(
        &self,
        requester: Option<&User>,
        request: &AccessRequest,
        inventory: &BTreeMap<String, Inventory>,
    ) -> Result<Evaluation<'c>, ControlError> {
        let requester = requester
            .ok_or_else(|| ControlError::Conflict("the requester is no longer a user".into()))?;
        let req = NewRequest {
            integration: request.integration.clone(),
            resource_type: request.resource_type.clone(),
            resource_ids: request.resource_ids.clone(),
            permission: request.permission.clone(),
            justification: Some(request.justification.clone()),
            duration: Some(format!("{}s", request.duration_seconds.max(1))),
        };
        let evaluation = self.evaluate(requester, &req, inventory, Some(&request.flow));
        if !evaluation.allowed {
            let messages: Vec<String> = evaluation
                .problems
                .iter()
                .map(|p| p.message.clone())
                .collect();
            return Err(ControlError::Conflict(format!(
                "the request no longer holds under the current configuration: {}",
                messages.join("; ")
            )));
        }
        Ok(evaluation)
    }

    /// Whether `user` may see `request` (requester, one of the flow's approvers, one of the
    /// approvers `route` names, or admin).
    pub(crate) fn may_see(
        &self,
        user: &User,
        request: &AccessRequest,
        route: Option<&Route>,
    ) -> bool {
        user.admin
            || request.requester.eq_ignore_ascii_case(&user.email)
            || self
                .config
                .flow(&request.flow)
                .is_some_and(|f| f.approvers.principals().contains(user))
            || route.is_some_and(|r| r.approvers.principals().contains(user))
    }

    /// Whether `user` may revoke a request of `requester` (the requester or an admin).
    pub(crate) fn may_revoke(&self, user: &User, requester: &str) -> Result<(), ControlError> {
        if user.admin || requester.eq_ignore_ascii_case(&user.email) {
            Ok(())
        } else {
            Err(ControlError::Forbidden(
                "only the requester or an admin revokes a request".into(),
            ))
        }
    }

    /// Whether `user` may approve or reject `request`, whose approvers are `route`'s.
    pub(crate) fn may_approve(
        &self,
        user: &User,
        request: &AccessRequest,
        route: Option<&Route>,
    ) -> Result<(), ControlError> {
        let flow = self.config.flow(&request.flow).ok_or_else(|| {
            ControlError::Conflict(format!("access flow {:?} no longer exists", request.flow))
        })?;
        if flow.requester_cannot_approve_self && request.requester.eq_ignore_ascii_case(&user.email)
        {
            return Err(ControlError::Forbidden(
                "the requester cannot approve their own request".into(),
            ));
        }
        let approvers = route.map_or(&flow.approvers, |r| &r.approvers);
        if !(user.admin || approvers.principals().contains(user)) {
            return Err(ControlError::Forbidden(
                "not an approver of this request".into(),
            ));
        }
        Ok(())
    }

    /// The `all_of` flow of `request`, if its flow still exists, waits for approvers and is
    /// `all_of`, and its own approvers approve (`route`).
    pub(crate) fn all_of_flow(
        &self,
        request: &AccessRequest,
        route: Option<&Route>,
    ) -> Option<&'c AccessFlow> {
        if route.is_some_and(|r| r.source != ApproverSource::AccessFlow) {
            return None;
        }
        self.config
            .flow(&request.flow)
            .filter(|f| f.approvers.mode == ApprovalMode::AllOf && f.needs_approval())
    }

    /// For a `Pending` `all_of` request: the entries a maximum matching of its approvals leaves
    /// unmet, under the current configuration.
    pub(crate) fn awaiting(&self, request: &AccessRequest, route: Option<&Route>) -> Vec<String> {
        match self.all_of_flow(request, route) {
            Some(flow) if request.status == RequestStatus::Pending => {
                let emails: Vec<String> = request
                    .approvals
                    .iter()
                    .map(|a| a.approver.clone())
                    .collect();
                approval::progress(
                    &approval::entries(&flow.approvers),
                    &approval::users(self.config, &emails),
                )
                .awaiting()
            }
            _ => Vec::new(),
        }
    }

    /// Whether `user`'s approval would count towards `request` now.
    pub(crate) fn awaits_approval_of(
        &self,
        user: &User,
        request: &AccessRequest,
        route: Option<&Route>,
    ) -> bool {
        if self.may_approve(user, request, route).is_err() {
            return false;
        }
        let Some(flow) = self.all_of_flow(request, route) else {
            return true;
        };
        let emails: Vec<String> = request
            .approvals
            .iter()
            .map(|a| a.approver.clone())
            .collect();
        !emails.iter().any(|e| e.eq_ignore_ascii_case(&user.email))
            && approval::would_count(
                &approval::entries(&flow.approvers),
                &approval::users(self.config, &emails),
                user,
            )
    }

    /// What `user`'s approval of `all_of` request `id` does, given the approvals already stored.
    pub(crate) fn all_of_step(
        &self,
        flow: &AccessFlow,
        user: &User,
        id: &str,
        given: &[String],
        reason: Option<&str>,
    ) -> Result<AllOfStep, ControlError> {
        let entries = approval::entries(&flow.approvers);
        let before = approval::progress(&entries, &approval::users(self.config, given));
        if given.iter().any(|e| e.eq_ignore_ascii_case(&user.email)) {
            return Err(ControlError::Conflict(format!(
                "{} already approved request {id}; it awaits {}",
                user.email,
                before.awaiting().join(", ")
            )));
        }
        if !approval::would_count(&entries, &approval::users(self.config, given), user) {
            return Err(ControlError::Forbidden(format!(
                "your approval meets none of the approvals request {id} still awaits ({}); each needs a different approver",
                before.awaiting().join(", ")
            )));
        }
        let mut emails = given.to_vec();
        emails.push(user.email.clone());
        let after = approval::progress(&entries, &approval::users(self.config, &emails));
        if after.complete() {
            return Ok(AllOfStep::Completes(emails));
        }
        let mut details = json!({
            "approvals": after.counted,
            "required": entries.len(),
            "awaiting": after.awaiting(),
        });
        if let Some(reason) = reason {
            details["reason"] = json!(reason);
        }
        Ok(AllOfStep::Recorded(details))
    }
}

/// The requested resources found in the inventory, and a problem for each one not found.
fn matching_resources(
    inventory: &BTreeMap<String, Inventory>,
    req: &NewRequest,
) -> (Vec<Resource>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let empty = Inventory::default();
    let inv = inventory.get(&req.integration).unwrap_or(&empty);
    for id in &req.resource_ids {
        match inv
            .resources
            .iter()
            .find(|r| r.id == *id && r.resource_type == req.resource_type.as_str())
        {
            Some(r) => found.push(r.clone()),
            None => problems.push(format!(
                "resource {id:?} of type {:?} is unknown in integration {:?} (not discovered yet?)",
                req.resource_type, req.integration
            )),
        }
    }
    (found, problems)
}
