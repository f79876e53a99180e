//! `all_of` approval: which approvals satisfy which approver entries.
//!
//! An `all_of` flow needs one approval per entry: every listed user, and one member of every
//! listed group, **each from a different person** (separation of duties: someone in two listed
//! groups satisfies only one of them). Whether the approvals given so far satisfy the flow is a
//! maximum bipartite matching of approvers to entries, recomputed from the stored approvals and
//! the current configuration every time, so the order of approvals never matters. Entries are
//! few; Kuhn's augmenting paths are plenty.

use std::fmt;

use crate::config::{Approvers, Config, User};

/// One thing an `all_of` flow waits for: a named user's approval, or one group member's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Entry {
    /// This user (email, as configured).
    User(String),
    /// Any one member of this group.
    Group(String),
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(email) => write!(f, "user:{email}"),
            Self::Group(group) => write!(f, "group:{group}"),
        }
    }
}

impl Entry {
    /// Whether `user`'s approval can count for this entry.
    fn satisfied_by(&self, user: &User) -> bool {
        match self {
            Self::User(email) => email.eq_ignore_ascii_case(&user.email),
            Self::Group(group) => user.groups.iter().any(|g| g == group),
        }
    }
}

/// The entries of `approvers`, users first, each once (emails compared without case).
pub(crate) fn entries(approvers: &Approvers) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for email in &approvers.users {
        if !out
            .iter()
            .any(|e| matches!(e, Entry::User(u) if u.eq_ignore_ascii_case(email)))
        {
            out.push(Entry::User(email.clone()));
        }
    }
    for group in &approvers.groups {
        if !out
            .iter()
            .any(|e| matches!(e, Entry::Group(g) if g == group))
        {
            out.push(Entry::Group(group.clone()));
        }
    }
    out
}

/// How far the approvals of one request are: the entries a maximum matching leaves unmet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Entries no approval is counted for, in configuration order (users first).
    pub(crate) unmet: Vec<Entry>,
    /// How many approvals count (the matching's size).
    pub(crate) counted: usize,
}

impl Progress {
    /// Whether every entry is met.
    pub(crate) fn complete(&self) -> bool {
        self.unmet.is_empty()
    }

    /// The unmet entries as the API shows them (`user:bob@x`, `group:sre`).
    pub(crate) fn awaiting(&self) -> Vec<String> {
        self.unmet.iter().map(ToString::to_string).collect()
    }
}

/// Matches `approvers` (each one person) to `entries`. Returns, per entry, the index of the
/// approver counted for it. Entries are tried in order, so the result is deterministic.
fn matching(entries: &[Entry], approvers: &[&User]) -> Vec<Option<usize>> {
    // approver index → entry index it is counted for
    let mut assigned: Vec<Option<usize>> = vec![None; approvers.len()];
    for entry in 0..entries.len() {
        let mut visited = vec![false; approvers.len()];
        augment(entry, entries, approvers, &mut assigned, &mut visited);
    }
    let mut by_entry = vec![None; entries.len()];
    for (approver, entry) in assigned.iter().enumerate() {
        if let Some(entry) = entry {
            by_entry[*entry] = Some(approver);
        }
    }
    by_entry
}

/// Kuhn's step: finds an approver for `entry`, moving others along an augmenting path.
fn augment(
    entry: usize,
    entries: &[Entry],
    approvers: &[&User],
    assigned: &mut [Option<usize>],
    visited: &mut [bool],
) -> bool {
    for (a, approver) in approvers.iter().enumerate() {
        if visited[a] || !entries[entry].satisfied_by(approver) {
            continue;
        }
        visited[a] = true;
        let free = match assigned[a] {
            None => true,
            Some(other) => augment(other, entries, approvers, assigned, visited),
        };
        if free {
            assigned[a] = Some(entry);
            return true;
        }
    }
    false
}

/// The configured users behind `emails` (approvers no longer configured count for nothing).
pub(crate) fn users<'c>(config: &'c Config, emails: &[String]) -> Vec<&'c User> {
    let mut out: Vec<&User> = Vec::new();
    for email in emails {
        if let Some(user) = config.user(email)
            && !out
                .iter()
                .any(|u| u.email.eq_ignore_ascii_case(&user.email))
        {
            out.push(user);
        }
    }
    out
}

/// The progress of `approvers` (distinct people) towards `entries`.
pub(crate) fn progress(entries: &[Entry], approvers: &[&User]) -> Progress {
    let by_entry = matching(entries, approvers);
    Progress {
        unmet: entries
            .iter()
            .zip(&by_entry)
            .filter(|(_, m)| m.is_none())
            .map(|(e, _)| e.clone())
            .collect(),
        counted: by_entry.iter().filter(|m| m.is_some()).count(),
    }
}

/// Whether `candidate`'s approval, added to `approvers`', would meet one more entry (an
/// augmenting path exists). An approval that would not count now never will: more approvals
/// only take entries away.
pub(crate) fn would_count(entries: &[Entry], approvers: &[&User], candidate: &User) -> bool {
    if approvers
        .iter()
        .any(|a| a.email.eq_ignore_ascii_case(&candidate.email))
    {
        return false;
    }
    let before = progress(entries, approvers).counted;
    let mut with = approvers.to_vec();
    with.push(candidate);
    progress(entries, &with).counted > before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(email: &str, groups: &[&str]) -> User {
        User {
            email: email.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            admin: false,
        }
    }

    fn approvers(users: &[&str], groups: &[&str]) -> Approvers {
        Approvers {
            mode: crate::config::ApprovalMode::AllOf,
            users: users.iter().map(|u| (*u).to_owned()).collect(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    #[test]
    fn entries_are_listed_once() {
        let e = entries(&approvers(&["a@x", "A@x", "b@x"], &["sre", "sre", "dba"]));
        let shown: Vec<String> = e.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["user:a@x", "user:b@x", "group:sre", "group:dba"]);
    }

    #[test]
    fn one_person_meets_one_entry_only() {
        let e = entries(&approvers(&[], &["sre", "dba"]));
        let both = user("both@x", &["sre", "dba"]);
        let p = progress(&e, &[&both]);
        assert_eq!(p.counted, 1);
        assert_eq!(p.awaiting(), ["group:dba"]);
        assert!(!would_count(&e, &[&both], &both), "no second vote");
        let sre = user("sre@x", &["sre"]);
        // sre@x can only meet group:sre, which both@x holds: both@x moves to group:dba.
        assert!(would_count(&e, &[&both], &sre));
        assert!(progress(&e, &[&both, &sre]).complete());
    }

    #[test]
    fn order_never_matters() {
        let e = entries(&approvers(&["lead@x"], &["sre", "dba"]));
        let lead = user("lead@x", &["sre", "dba"]);
        let sre = user("sre@x", &["sre"]);
        let dba = user("dba@x", &["dba", "sre"]);
        let people = [&lead, &sre, &dba];
        for order in [
            [0, 1, 2],
            [0, 2, 1],
            [1, 0, 2],
            [1, 2, 0],
            [2, 0, 1],
            [2, 1, 0],
        ] {
            let given: Vec<&User> = order.iter().map(|i| people[*i]).collect();
            assert!(progress(&e, &given).complete(), "{order:?}");
            // Any two of them leave exactly one entry unmet.
            assert_eq!(progress(&e, &given[..2]).counted, 2, "{order:?}");
        }
        let outsider = user("out@x", &["web"]);
        assert!(!would_count(&e, &[&sre], &outsider));
    }
}
