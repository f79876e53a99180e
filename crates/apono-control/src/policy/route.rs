//! Who approves a request that needs approval: its access flow's approvers, the owner its
//! resources' tag names, or the integration's owners (Apono's resource and integration owners).
//!
//! In order:
//! 1. **Resource owner.** When the integration sets `resource_owner_tag`, every requested
//!    resource carries that tag with one and the same value (an email, or else a group name),
//!    and that owner can approve (a configured user, other than the requester when the flow
//!    bars self-approval, or a group with such a member): under an `any_of` flow, the owner
//!    approves instead of the flow's approvers. An `all_of` flow keeps its approvers
//!    (separation of duties is never narrowed to one person); its owner is still the fallback.
//! 2. **The access flow's approvers**, when someone can meet them.
//! 3. **Fallback**, when no one can: the resource owner found as in 1, else the integration's
//!    `owners`, any one of whom approves.
//! 4. Otherwise the flow's approvers stay (an admin can still approve; the dry run of an
//!    `all_of` flow says no one can).
//!
//! Resources with different owners have no single owner: such a request goes to its flow's
//! approvers, or to the integration's owners. Everything is recomputed from the current
//! configuration and inventory whenever it is asked, as the rest of the policy is.

use apono_core::{Integration, Resource};

use super::approval;
use crate::config::{AccessFlow, ApprovalMode, Approvers, Config, User};
use crate::model::ApproverSource;

/// Who approves one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// Where the approvers come from.
    pub(crate) source: ApproverSource,
    /// The approvers (the flow's, or one of the owners' as `any_of`).
    pub(crate) approvers: Approvers,
}

/// An owner named by a tag value or an `owners` entry: an email, or else a group name.
fn as_approvers(owners: &[String]) -> Approvers {
    let (users, groups): (Vec<&String>, Vec<&String>) =
        owners.iter().partition(|o| o.contains('@'));
    Approvers {
        mode: ApprovalMode::AnyOf,
        users: users.into_iter().cloned().collect(),
        groups: groups.into_iter().cloned().collect(),
    }
}

/// The one owner the integration's `resource_owner_tag` names on every resource, if any.
fn resource_owner(integration: &Integration, resources: &[Resource]) -> Option<Approvers> {
    let tag = integration.resource_owner_tag.as_deref()?;
    let mut owners = resources.iter().map(|r| r.tags.get(tag).map(|v| v.trim()));
    let first = owners.next()??;
    if first.is_empty() || !owners.all(|o| o == Some(first)) {
        return None;
    }
    Some(as_approvers(&[first.to_owned()]))
}

/// Whether some configured users (leaving out `requester` when `barred`) can meet `approvers`.
fn reachable(config: &Config, approvers: &Approvers, requester: &str, barred: bool) -> bool {
    let everyone: Vec<&User> = config
        .users
        .iter()
        .filter(|u| !(barred && u.email.eq_ignore_ascii_case(requester)))
        .collect();
    match approvers.mode {
        ApprovalMode::AnyOf => {
            let principals = approvers.principals();
            everyone.iter().any(|u| principals.contains(u))
        }
        ApprovalMode::AllOf => {
            approval::progress(&approval::entries(approvers), &everyone).complete()
        }
    }
}

/// Who approves a request of `requester` for `resources` of `integration` under `flow`, which
/// needs approval (see the module documentation).
pub(crate) fn route(
    config: &Config,
    flow: &AccessFlow,
    integration: Option<&Integration>,
    resources: &[Resource],
    requester: &str,
) -> Route {
    let barred = flow.requester_cannot_approve_self;
    let can = |a: &Approvers| reachable(config, a, requester, barred);
    let owner = integration
        .and_then(|i| resource_owner(i, resources))
        .filter(|a| can(a));
    if let Some(owner) = &owner
        && flow.approvers.mode == ApprovalMode::AnyOf
    {
        return Route {
            source: ApproverSource::ResourceOwner,
            approvers: owner.clone(),
        };
    }
    let by_flow = Route {
        source: ApproverSource::AccessFlow,
        approvers: flow.approvers.clone(),
    };
    if can(&flow.approvers) {
        return by_flow;
    }
    if let Some(owner) = owner {
        return Route {
            source: ApproverSource::ResourceOwner,
            approvers: owner,
        };
    }
    match integration.map(|i| as_approvers(&i.owners)) {
        Some(owners) if can(&owners) => Route {
            source: ApproverSource::IntegrationOwners,
            approvers: owners,
        },
        _ => by_flow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[[users]]
email = "req@x"
groups = ["dev"]
[[users]]
email = "lead@x"
groups = ["leads"]
[[users]]
email = "carol@x"
groups = ["payments"]
[[users]]
email = "ops@x"
groups = ["ops"]
"#;

    fn resource(owner: Option<&str>) -> Resource {
        Resource {
            integration: "i".into(),
            resource_type: "t".into(),
            id: "r".into(),
            name: "r".into(),
            tags: owner
                .map(|o| [("owner".to_owned(), o.to_owned())].into())
                .unwrap_or_default(),
        }
    }

    /// `flow_approvers` and `owners` as TOML values; returns the route as `source: entries`.
    fn check(
        mode: &str,
        flow_approvers: &str,
        owners: &str,
        tag: bool,
        resource_owners: &[Option<&str>],
        barred: bool,
    ) -> String {
        let integration: Integration = serde_json::from_value(serde_json::json!({
            "name": "i", "type": "ssh", "secret_store": {"apono": {"parameters": {"k": "v"}}},
            "owners": serde_json::from_str::<serde_json::Value>(owners).unwrap(),
            "resource_owner_tag": tag.then_some("owner"),
        }))
        .unwrap();
        let flow: AccessFlow = toml::from_str(&format!(
            "name = \"f\"\ntrigger = \"self_serve\"\nrequestors = {{ groups = [\"dev\"] }}\n\
             targets = []\ngrant_duration = \"1h\"\nrequester_cannot_approve_self = {barred}\n\
             approvers = {{ mode = \"{mode}\", {flow_approvers} }}\n"
        ))
        .unwrap();
        let config = Config::parse(CONFIG, std::iter::empty(), None).unwrap();
        let resources: Vec<Resource> = resource_owners.iter().map(|o| resource(*o)).collect();
        let r = route(&config, &flow, Some(&integration), &resources, "req@x");
        let entries: Vec<String> = approval::entries(&r.approvers)
            .iter()
            .map(ToString::to_string)
            .collect();
        format!("{}: {}", r.source.as_str(), entries.join(", "))
    }

    /// Flow mode, flow approvers, owners, tag set?, the resources' owner tags, self-approval
    /// barred → the route.
    type Row<'a> = (
        &'a str,
        &'a str,
        &'a str,
        bool,
        &'a [Option<&'a str>],
        bool,
        &'a str,
    );

    #[test]
    fn routes() {
        let leads = r#"groups = ["leads"]"#;
        let nobody = r#"groups = ["absent"]"#;
        let ops = r#"["ops", "lead@x"]"#;
        #[rustfmt::skip]
        let table: &[Row<'_>] = &[
            // mode, flow approvers, owners, tag?, resources' owner tags, barred → route
            ("any_of", leads, "[]", false, &[None], true, "access_flow: group:leads"),
            ("any_of", leads, ops, false, &[None], true, "access_flow: group:leads"),
            // No reachable approver: the integration's owners.
            ("any_of", nobody, ops, false, &[None], true, "integration_owners: user:lead@x, group:ops"),
            ("any_of", nobody, "[]", false, &[None], true, "access_flow: group:absent"),
            ("any_of", nobody, r#"["absent"]"#, false, &[None], true, "access_flow: group:absent"),
            // Only the requester could approve, and may not: owners; if allowed, the flow.
            ("any_of", r#"users = ["req@x"]"#, ops, false, &[None], true, "integration_owners: user:lead@x, group:ops"),
            ("any_of", r#"users = ["req@x"]"#, ops, false, &[None], false, "access_flow: user:req@x"),
            // The resource owner approves its resources' requests under any_of.
            ("any_of", leads, ops, true, &[Some("carol@x")], true, "resource_owner: user:carol@x"),
            ("any_of", leads, ops, true, &[Some("payments"), Some("payments")], true, "resource_owner: group:payments"),
            // Different owners, a resource without the tag, or an unknown owner: no resource owner.
            ("any_of", leads, ops, true, &[Some("carol@x"), Some("ops")], true, "access_flow: group:leads"),
            ("any_of", nobody, ops, true, &[Some("carol@x"), None], true, "integration_owners: user:lead@x, group:ops"),
            ("any_of", nobody, ops, true, &[Some("ghost@x")], true, "integration_owners: user:lead@x, group:ops"),
            // The tag is read only when the integration names it.
            ("any_of", leads, ops, false, &[Some("carol@x")], true, "access_flow: group:leads"),
            // A requester who owns the resource does not approve their own request.
            ("any_of", leads, ops, true, &[Some("req@x")], true, "access_flow: group:leads"),
            ("any_of", leads, ops, true, &[Some("req@x")], false, "resource_owner: user:req@x"),
            // all_of keeps its approvers; owners only when no one can meet them.
            ("all_of", r#"users = ["lead@x"], groups = ["ops"]"#, ops, true, &[Some("carol@x")], true, "access_flow: user:lead@x, group:ops"),
            ("all_of", r#"groups = ["leads", "absent"]"#, ops, true, &[Some("carol@x")], true, "resource_owner: user:carol@x"),
            ("all_of", r#"groups = ["leads", "absent"]"#, ops, false, &[None], true, "integration_owners: user:lead@x, group:ops"),
        ];
        for (mode, approvers, owners, tag, tags, barred, want) in table {
            assert_eq!(
                check(mode, approvers, owners, *tag, tags, *barred),
                *want,
                "{mode} {approvers} owners={owners} tag={tag} {tags:?} barred={barred}"
            );
        }
    }
}
