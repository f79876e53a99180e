//! The status enums, with Apono's spellings.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares a status enum with `as_str`, `Display`, `FromStr` and serde in Apono's spelling.
macro_rules! status_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every value, in lifecycle order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The status as Apono spells it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownStatus;

            fn from_str(s: &str) -> Result<Self, UnknownStatus> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownStatus { kind: stringify!($name), value: s.to_owned() })
            }
        }
    };
}

status_enum!(
    /// The status of an access request.
    RequestStatus {
        /// Waiting for approval.
        Pending = "Pending",
        /// Approved; access is being provisioned.
        Granting = "Granting",
        /// Access is provisioned and usable.
        Active = "Active",
        /// An approver rejected it.
        Rejected = "Rejected",
        /// Access is being taken away (expiry or early revoke).
        Revoking = "Revoking",
        /// Access was taken away.
        Revoked = "Revoked",
        /// Provisioning failed.
        Failed = "Failed",
    }
);

impl RequestStatus {
    /// Whether the request has reached an end state.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Rejected | Self::Revoked | Self::Failed)
    }

    /// The status of an approved request, derived from its grants' (`None`: it has none).
    /// Work in progress wins (`Granting`, then `Active`, then `Revoking`); a request all of
    /// whose grants failed is `Failed`; otherwise it is `Revoked`.
    pub fn from_grants(grants: &[GrantStatus]) -> Option<Self> {
        use GrantStatus as G;
        if grants.is_empty() {
            return None;
        }
        let any = |wanted: &[G]| grants.iter().any(|g| wanted.contains(g));
        Some(if any(&[G::Pending, G::Granting]) {
            Self::Granting
        } else if any(&[G::Active]) {
            Self::Active
        } else if any(&[G::Revoking, G::RevokeFailed]) {
            Self::Revoking
        } else if grants.iter().all(|g| *g == G::Failed) {
            Self::Failed
        } else {
            Self::Revoked
        })
    }
}

status_enum!(
    /// The status of a grant (an access session) in the grant ledger.
    GrantStatus {
        /// Written down; the target has not been touched yet.
        Pending = "Pending",
        /// The provisioner is creating access.
        Granting = "Granting",
        /// Access exists on the target.
        Active = "Active",
        /// The provisioner is removing access.
        Revoking = "Revoking",
        /// Access is gone from the target.
        Revoked = "Revoked",
        /// Granting failed and left nothing behind.
        Failed = "Failed",
        /// Revoking keeps failing: access may still exist. Alerted on and still retried.
        RevokeFailed = "RevokeFailed",
    }
);

impl GrantStatus {
    /// Whether access may exist on the target in this status, so the grant must still be
    /// revoked eventually.
    pub const fn may_hold_access(self) -> bool {
        matches!(
            self,
            Self::Granting | Self::Active | Self::Revoking | Self::RevokeFailed
        )
    }

    /// Whether the ledger may move a grant from `self` to `next`.
    ///
    /// A failed grant attempt may have partly provisioned the target, so `Granting` can move to
    /// `Revoking` as well as to `Active` or `Failed`; `RevokeFailed` only moves on to a retried
    /// revoke or to `Revoked`.
    pub const fn can_become(self, next: Self) -> bool {
        use GrantStatus::*;
        matches!(
            (self, next),
            (Pending, Granting)
                | (Pending, Failed)
                | (Granting, Active)
                | (Granting, Failed)
                | (Granting, Revoking)
                | (Active, Active)
                | (Active, Revoking)
                | (Revoking, Revoked)
                | (Revoking, RevokeFailed)
                | (RevokeFailed, Revoking)
                | (RevokeFailed, Revoked)
        )
    }
}

status_enum!(
    /// Whether a grant's one-time credentials have been shown.
    CredentialStatus {
        /// Not shown yet.
        New = "new",
        /// Shown once; now masked.
        Viewed = "viewed",
    }
);

status_enum!(
    /// The health of an integration, as `get-status` reports it.
    IntegrationStatus {
        /// Not checked yet.
        Initializing = "Initializing",
        /// Everything checked works.
        Active = "Active",
        /// Works, with something to look at (an API key about to expire, one server down).
        Warning = "Warning",
        /// Does not work.
        Error = "Error",
        /// Switched off by an operator.
        Disabled = "Disabled",
    }
);

/// A string that is not one of a status enum's values.
#[derive(Debug, thiserror::Error)]
#[error("{value:?} is not a valid {kind}")]
pub struct UnknownStatus {
    kind: &'static str,
    value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_use_apono_spelling_both_ways() {
        for status in GrantStatus::ALL {
            let json = serde_json::to_string(status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
            assert_eq!(status.as_str().parse::<GrantStatus>().unwrap(), *status);
        }
        assert_eq!(
            serde_json::to_string(&CredentialStatus::Viewed).unwrap(),
            "\"viewed\""
        );
        assert!("active".parse::<RequestStatus>().is_err());
    }

    #[test]
    fn nothing_leaves_a_state_that_may_hold_access_without_revoking() {
        for from in GrantStatus::ALL {
            for to in GrantStatus::ALL {
                if from.may_hold_access() && from.can_become(*to) && *from != GrantStatus::Granting
                {
                    assert!(
                        to.may_hold_access() || *to == GrantStatus::Revoked,
                        "{from} -> {to} would drop access on the floor"
                    );
                }
            }
        }
        assert!(!GrantStatus::Active.can_become(GrantStatus::Revoked));
        assert!(GrantStatus::RevokeFailed.can_become(GrantStatus::Revoking));
        assert!(!GrantStatus::Revoked.can_become(GrantStatus::Active));
    }

    #[test]
    fn a_request_shows_the_work_in_progress_of_its_grants() {
        use GrantStatus as G;
        let cases: &[(&[G], Option<RequestStatus>)] = &[
            (&[], None),
            (&[G::Active, G::Pending], Some(RequestStatus::Granting)),
            (&[G::Active, G::Revoked], Some(RequestStatus::Active)),
            (
                &[G::RevokeFailed, G::Revoked],
                Some(RequestStatus::Revoking),
            ),
            (&[G::Failed, G::Failed], Some(RequestStatus::Failed)),
            (&[G::Failed, G::Revoked], Some(RequestStatus::Revoked)),
        ];
        for (grants, want) in cases {
            assert_eq!(RequestStatus::from_grants(grants), *want, "{grants:?}");
        }
    }
}
