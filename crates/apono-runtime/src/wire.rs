//! One action on one integration as a value ([`Action`]), what became of it ([`ActionResult`]),
//! and the messages a control plane and its agents exchange about them ([`Poll`], [`Work`],
//! [`Leased`], [`Report`]), in one place for both sides.
//!
//! The control plane's scheduler runs every job through [`Executor::perform`]: on its own
//! executor for the integrations bound to it, or on an agent's (`apono-agent`) for those bound
//! to another connector id, which receives the same [`Action`] over HTTPS and sends the
//! [`ActionResult`] back. Both are JSON. An action carries the integration's definition (its
//! `secret_store` is a reference, never a secret) and the grant; a result carries the one-time
//! credentials a grant or a rotation produced, the only secret that ever crosses the wire. Their
//! `Debug` never shows them.

use std::fmt;

use apono_core::{
    AccessDetails, CancelSignal, Credential, ErrorKind, GrantSpec, GrantState, Granted,
    Integration, Inventory, error_chain,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Executor;

/// The path of the agents' long poll (`POST`, a [`Poll`] answered by [`Work`]).
pub const POLL_PATH: &str = "/agent/v1/poll";
/// The path of an agent's outcome (`POST`, a [`Report`]; 204 recorded, 409 refused).
pub const REPORT_PATH: &str = "/agent/v1/report";
/// The header naming the connector id an agent serves (its credential must belong to it).
pub const CONNECTOR_HEADER: &str = "apono-connector-id";

/// One of Apono's actions on one integration, with everything the executor needs but the
/// integration's secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// `grant-access`.
    Grant {
        /// The integration, as configured on the control plane.
        integration: Integration,
        /// The grant.
        grant: GrantSpec,
    },
    /// `revoke-access`.
    Revoke {
        /// The integration.
        integration: Integration,
        /// The grant.
        grant: GrantSpec,
        /// What its grant recorded.
        state: GrantState,
    },
    /// `reset-credentials`.
    ResetCredentials {
        /// The integration.
        integration: Integration,
        /// The grant.
        grant: GrantSpec,
        /// What its grant recorded.
        state: GrantState,
    },
    /// `delete-credentials`.
    DeleteCredentials {
        /// The integration.
        integration: Integration,
        /// The grant.
        grant: GrantSpec,
        /// What its grant recorded.
        state: GrantState,
    },
    /// `list-resources`.
    ListResources {
        /// The integration.
        integration: Integration,
    },
}

impl Action {
    /// The integration it acts on.
    pub fn integration(&self) -> &Integration {
        match self {
            Self::Grant { integration, .. }
            | Self::Revoke { integration, .. }
            | Self::ResetCredentials { integration, .. }
            | Self::DeleteCredentials { integration, .. }
            | Self::ListResources { integration } => integration,
        }
    }
}

/// A failed action: its kind (what the scheduler decides retries on) and its error chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The error and its causes on one line (never a secret: errors carry none).
    pub error: String,
}

impl Failure {
    /// A failure of `kind` with this text.
    pub fn new(kind: ErrorKind, error: impl Into<String>) -> Self {
        Self {
            kind,
            error: error.into(),
        }
    }
}

/// What became of an [`Action`].
#[derive(Clone, Debug, PartialEq)]
pub enum ActionResult {
    /// `grant-access` or `reset-credentials` succeeded.
    Granted(Granted),
    /// `revoke-access` or `delete-credentials` succeeded.
    Done,
    /// `list-resources` succeeded.
    Inventory(Inventory),
    /// The action failed.
    Failed(Failure),
}

impl Executor {
    /// Runs `action` (see the other methods for each one), its error reduced to a [`Failure`].
    pub async fn perform(&self, action: &Action, cancel: &CancelSignal) -> ActionResult {
        let failed =
            |e: crate::RuntimeError| ActionResult::Failed(Failure::new(e.kind(), error_chain(&e)));
        match action {
            Action::Grant { integration, grant } => self
                .grant(integration, grant, cancel)
                .await
                .map_or_else(failed, ActionResult::Granted),
            Action::Revoke {
                integration,
                grant,
                state,
            } => self
                .revoke(integration, grant, state, cancel)
                .await
                .map_or_else(failed, |()| ActionResult::Done),
            Action::ResetCredentials {
                integration,
                grant,
                state,
            } => self
                .reset_credentials(integration, grant, state, cancel)
                .await
                .map_or_else(failed, ActionResult::Granted),
            Action::DeleteCredentials {
                integration,
                grant,
                state,
            } => self
                .delete_credentials(integration, grant, state, cancel)
                .await
                .map_or_else(failed, |()| ActionResult::Done),
            Action::ListResources { integration } => self
                .list_resources(integration, cancel)
                .await
                .map_or_else(failed, ActionResult::Inventory),
        }
    }
}

/// An agent's request for work: how many actions it can start now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Poll {
    /// The most actions to hand out (at least 1).
    pub free: usize,
}

/// The actions leased to an agent (none when the long poll ended without work).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Work {
    /// The actions, each with its lease.
    pub actions: Vec<Leased>,
}

/// One action leased to an agent until its lease ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Leased {
    /// The lease token its outcome must name.
    pub lease: String,
    /// The job's kind (`grant`, `revoke`, …).
    pub kind: String,
    /// The job's subject (a grant id, or an integration name).
    pub subject: String,
    /// How long the lease lasts from when it was handed out, in milliseconds.
    pub lease_ms: u64,
    /// What to run.
    pub action: Action,
}

/// An agent's outcome of one [`Leased`] action.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The lease token it was handed with.
    pub lease: String,
    /// The job's kind.
    pub kind: String,
    /// The job's subject.
    pub subject: String,
    /// What became of it.
    pub result: ActionResult,
}

// ---------------------------------------------------------------- JSON of ActionResult

/// The JSON shape of an [`ActionResult`]: the credentials as a list beside the access details
/// (whose own serialisation leaves them out).
#[derive(Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
enum ResultJson {
    Granted {
        state: GrantState,
        access: AccessDetails,
        credentials: Vec<CredentialJson>,
    },
    Done,
    Inventory {
        inventory: Inventory,
    },
    Failed {
        kind: String,
        error: String,
    },
}

#[derive(Serialize, Deserialize)]
struct CredentialJson {
    name: String,
    #[serde(serialize_with = "expose", deserialize_with = "conceal")]
    value: SecretString,
    one_time: bool,
}

impl fmt::Debug for CredentialJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialJson")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn expose<S: Serializer>(value: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.expose_secret())
}

fn conceal<'de, D: Deserializer<'de>>(d: D) -> Result<SecretString, D::Error> {
    String::deserialize(d).map(SecretString::from)
}

/// Every [`ErrorKind`], for reading one back from its name.
const KINDS: [ErrorKind; 10] = [
    ErrorKind::NotFound,
    ErrorKind::PermissionDenied,
    ErrorKind::Unavailable,
    ErrorKind::Timeout,
    ErrorKind::Cancelled,
    ErrorKind::Malformed,
    ErrorKind::InvalidInput,
    ErrorKind::Conflict,
    ErrorKind::Unsupported,
    ErrorKind::Internal,
];

impl Serialize for ActionResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let json = match self {
            Self::Granted(granted) => ResultJson::Granted {
                state: granted.state.clone(),
                access: granted.access.clone(),
                credentials: granted
                    .access
                    .credentials
                    .iter()
                    .map(|c| CredentialJson {
                        name: c.name.clone(),
                        value: c.value.clone(),
                        one_time: c.one_time,
                    })
                    .collect(),
            },
            Self::Done => ResultJson::Done,
            Self::Inventory(inventory) => ResultJson::Inventory {
                inventory: inventory.clone(),
            },
            Self::Failed(f) => ResultJson::Failed {
                kind: f.kind.as_str().to_owned(),
                error: f.error.clone(),
            },
        };
        json.serialize(s)
    }
}

impl<'de> Deserialize<'de> for ActionResult {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match ResultJson::deserialize(d)? {
            ResultJson::Granted {
                state,
                mut access,
                credentials,
            } => {
                access.credentials = credentials
                    .into_iter()
                    .map(|c| Credential {
                        name: c.name,
                        value: c.value,
                        one_time: c.one_time,
                    })
                    .collect();
                Self::Granted(Granted { state, access })
            }
            ResultJson::Done => Self::Done,
            ResultJson::Inventory { inventory } => Self::Inventory(inventory),
            ResultJson::Failed { kind, error } => {
                // A kind this side does not know is an internal failure: never retried blindly.
                let kind = KINDS
                    .into_iter()
                    .find(|k| k.as_str() == kind)
                    .unwrap_or(ErrorKind::Internal);
                Self::Failed(Failure { kind, error })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_cross_the_wire_but_never_debug() {
        let mut access = AccessDetails::default();
        access
            .credentials
            .push(Credential::one_time("password", "canary-7f3a"));
        let result = ActionResult::Granted(Granted {
            state: GrantState::from_json(serde_json::json!({ "user": "alice" })),
            access,
        });
        let text = serde_json::to_string(&result).unwrap();
        assert!(text.contains("canary-7f3a"));
        let back: ActionResult = serde_json::from_str(&text).unwrap();
        assert_eq!(back, result);
        assert!(!format!("{back:?}").contains("canary-7f3a"));
    }

    #[test]
    fn failures_keep_their_kind() {
        for kind in KINDS {
            let result = ActionResult::Failed(Failure::new(kind, "no route to host"));
            let back: ActionResult =
                serde_json::from_str(&serde_json::to_string(&result).unwrap()).unwrap();
            assert_eq!(back, result);
        }
        let odd: ActionResult =
            serde_json::from_str(r#"{"result":"failed","kind":"novel","error":"x"}"#).unwrap();
        assert_eq!(
            odd,
            ActionResult::Failed(Failure::new(ErrorKind::Internal, "x"))
        );
    }
}
