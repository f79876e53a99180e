//! Well-known Windows groups, found by SID rather than by name.
//!
//! Windows localises the names of its built-in groups: *Remote Desktop Users* is
//! *Remotedesktopbenutzer* on German Windows and *Utilisateurs du Bureau à distance* on French,
//! and a domain created in German names *Domain Admins* *Domänen-Admins*. Their security
//! identifiers never change. So a permission that names a group below (in English, as Apono
//! shows it, compared case-insensitively like Windows does) is resolved on the target by its
//! SID; any other permission is a group looked up by its exact name. Discovery reports a group
//! whose SID is in this table under the table's name, so the permissions offered are the same
//! on every language of Windows.
//!
//! Sources: Microsoft's "Well-known SIDs" (`S-1-5-32-…` built-in aliases, the same on every
//! computer and in every domain's *Builtin* container) and the domain-relative RIDs of the
//! default Active Directory groups.

use crate::WindowsTarget;

/// Where a well-known group's SID comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum WellKnownSid {
    /// A built-in alias, `S-1-5-32-<rid>`: a local group on every Windows computer, and a
    /// domain-local group in the *Builtin* container of every domain.
    Builtin(u32),
    /// A default domain group, `<domain SID>-<rid>`; only in Active Directory.
    DomainRelative(u32),
}

/// A group Windows creates itself, under the name Apono shows for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WellKnownGroup {
    /// The English name, as permissions carry it.
    pub name: &'static str,
    /// How its SID is formed.
    pub sid: WellKnownSid,
}

impl WellKnownGroup {
    /// The full SID for a built-in alias (`S-1-5-32-555`); `None` for a domain-relative group,
    /// whose SID the script forms from the domain's SID.
    pub fn builtin_sid(&self) -> Option<String> {
        match self.sid {
            WellKnownSid::Builtin(rid) => Some(format!("S-1-5-32-{rid}")),
            WellKnownSid::DomainRelative(_) => None,
        }
    }

    /// The RID of a domain-relative group (`512` for *Domain Admins*); `None` for a built-in
    /// alias.
    pub fn domain_rid(&self) -> Option<u32> {
        match self.sid {
            WellKnownSid::DomainRelative(rid) => Some(rid),
            WellKnownSid::Builtin(_) => None,
        }
    }

    /// Whether the group exists on `target`: built-in aliases everywhere, domain groups only in
    /// a domain.
    pub fn exists_on(&self, target: WindowsTarget) -> bool {
        match self.sid {
            WellKnownSid::Builtin(_) => true,
            WellKnownSid::DomainRelative(_) => target == WindowsTarget::DomainController,
        }
    }
}

const fn builtin(name: &'static str, rid: u32) -> WellKnownGroup {
    WellKnownGroup {
        name,
        sid: WellKnownSid::Builtin(rid),
    }
}

const fn domain(name: &'static str, rid: u32) -> WellKnownGroup {
    WellKnownGroup {
        name,
        sid: WellKnownSid::DomainRelative(rid),
    }
}

/// Every group resolved by SID.
///
/// *Schema Admins*, *Enterprise Admins* and *Enterprise Key Admins* are relative to the
/// forest root domain; in a child domain they are not found (the connector manages one
/// domain) and a grant of them fails with "group not found".
pub const WELL_KNOWN_GROUPS: &[WellKnownGroup] = &[
    builtin("Administrators", 544),
    builtin("Users", 545),
    builtin("Guests", 546),
    builtin("Power Users", 547),
    builtin("Account Operators", 548),
    builtin("Server Operators", 549),
    builtin("Print Operators", 550),
    builtin("Backup Operators", 551),
    builtin("Replicator", 552),
    builtin("Remote Desktop Users", 555),
    builtin("Network Configuration Operators", 556),
    builtin("Performance Monitor Users", 558),
    builtin("Performance Log Users", 559),
    builtin("Distributed COM Users", 562),
    builtin("IIS_IUSRS", 568),
    builtin("Cryptographic Operators", 569),
    builtin("Event Log Readers", 573),
    builtin("Certificate Service DCOM Access", 574),
    builtin("RDS Remote Access Servers", 575),
    builtin("RDS Endpoint Servers", 576),
    builtin("RDS Management Servers", 577),
    builtin("Hyper-V Administrators", 578),
    builtin("Access Control Assistance Operators", 579),
    builtin("Remote Management Users", 580),
    builtin("Storage Replica Administrators", 582),
    domain("Domain Admins", 512),
    domain("Domain Users", 513),
    domain("Domain Guests", 514),
    domain("Domain Computers", 515),
    domain("Domain Controllers", 516),
    domain("Cert Publishers", 517),
    domain("Schema Admins", 518),
    domain("Enterprise Admins", 519),
    domain("Group Policy Creator Owners", 520),
    domain("Read-only Domain Controllers", 521),
    domain("Cloneable Domain Controllers", 522),
    domain("Protected Users", 525),
    domain("Key Admins", 526),
    domain("Enterprise Key Admins", 527),
    domain("RAS and IAS Servers", 553),
    domain("Allowed RODC Password Replication Group", 571),
    domain("Denied RODC Password Replication Group", 572),
];

/// The well-known group a permission names on `target`, compared case-insensitively (as
/// Windows compares group names).
pub fn by_name(target: WindowsTarget, name: &str) -> Option<&'static WellKnownGroup> {
    WELL_KNOWN_GROUPS
        .iter()
        .find(|g| g.exists_on(target) && g.name.eq_ignore_ascii_case(name))
}

/// The well-known group whose SID is `sid` on `target`; `domain_sid` is the domain's SID
/// (`S-1-5-21-…`) for domain-relative groups.
pub fn by_sid(
    target: WindowsTarget,
    sid: &str,
    domain_sid: Option<&str>,
) -> Option<&'static WellKnownGroup> {
    let rid_after = |prefix: &str| -> Option<u32> {
        let rest = sid.strip_prefix(prefix)?.strip_prefix('-')?;
        if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        rest.parse().ok()
    };
    let wanted = if let Some(rid) = rid_after("S-1-5-32") {
        WellKnownSid::Builtin(rid)
    } else {
        let domain_sid = domain_sid.filter(|d| !d.is_empty())?;
        WellKnownSid::DomainRelative(rid_after(domain_sid)?)
    };
    WELL_KNOWN_GROUPS
        .iter()
        .find(|g| g.exists_on(target) && g.sid == wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn names_and_sids_are_unique_and_pass_the_group_grammar() {
        let names: BTreeSet<String> = WELL_KNOWN_GROUPS
            .iter()
            .map(|g| g.name.to_ascii_lowercase())
            .collect();
        assert_eq!(names.len(), WELL_KNOWN_GROUPS.len());
        let sids: BTreeSet<_> = WELL_KNOWN_GROUPS.iter().map(|g| g.sid).collect();
        assert_eq!(sids.len(), WELL_KNOWN_GROUPS.len());
        for g in WELL_KNOWN_GROUPS {
            crate::checked_group(g.name).unwrap_or_else(|e| panic!("{}: {e}", g.name));
        }
    }

    #[test]
    fn lookups_depend_on_the_target() {
        let rdp = WindowsTarget::Rdp;
        let dc = WindowsTarget::DomainController;
        let rdu = by_name(rdp, "remote desktop users").unwrap();
        assert_eq!(rdu.builtin_sid().as_deref(), Some("S-1-5-32-555"));
        assert_eq!(rdu.domain_rid(), None);
        assert_eq!(by_name(rdp, "Domain Admins"), None);
        assert_eq!(
            by_name(dc, "Domain Admins").unwrap().domain_rid(),
            Some(512)
        );
        assert_eq!(by_name(dc, "Helpdesk"), None);

        let d = "S-1-5-21-1004336348-1177238915-682003330";
        assert_eq!(
            by_sid(rdp, "S-1-5-32-544", None).unwrap().name,
            "Administrators"
        );
        assert_eq!(
            by_sid(dc, &format!("{d}-512"), Some(d)).unwrap().name,
            "Domain Admins"
        );
        assert_eq!(by_sid(rdp, &format!("{d}-512"), Some(d)), None);
        assert_eq!(by_sid(dc, &format!("{d}-512"), None), None);
        assert_eq!(by_sid(dc, &format!("{d}-1105"), Some(d)), None);
        assert_eq!(by_sid(dc, &format!("{d}1-512"), Some(d)), None);
        assert_eq!(by_sid(dc, "S-1-5-32-5x", Some(d)), None);
        assert_eq!(by_sid(dc, "S-1-5-32-", Some(d)), None);
    }
}
