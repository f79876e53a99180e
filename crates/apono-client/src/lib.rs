//! A typed client of the Apono connector's HTTP API (`/api/v1`), used by the `apono` CLI and
//! reusable by any other tool.
//!
//! * [`Client`] — one method per endpoint (inventory, dry run, requests, approvals, access
//!   sessions, one-time access details, the audit log) plus [`Client::wait_for_request`].
//!   It authenticates with a personal token held as a [`secrecy::SecretString`]; the token never
//!   appears in `Debug`, logs or errors.
//! * [`model`] — the request and response types, with the API's field names. Their `Serialize`
//!   output is the stable JSON the CLI prints with `-o json` (see below).
//! * [`Profiles`] and [`KeyCache`] — the CLI's private files, always created with mode `0600`.
//!   Paths are passed in: the library reads no environment variables.
//! * [`VaultAccess`] — secrets of an `apono-vault` integration through the caller's own active
//!   access session: it takes the session's one-time OpenBao token (which OpenBao itself ends
//!   at the session's expiry), caches it in a [`KeyCache`] (`0600`) until the session ends
//!   ([`remember_vault_token`] for callers that show it themselves), and runs kv-v2 list,
//!   fetch, create (check-and-set 0), update (checked against the current version) and delete
//!   (metadata and every version).
//! * [`ClientError`] — what went wrong, with [`ClientError::kind`]; messages are single lines
//!   that never quote tokens or credentials.
//!
//! ```no_run
//! use apono_client::{Client, NewRequest};
//! use std::time::Duration;
//!
//! # async fn demo() -> Result<(), apono_client::ClientError> {
//! let client = Client::new("http://127.0.0.1:8080", "apono_…".to_owned().into())?;
//! let request = NewRequest {
//!     integration: "servers".into(),
//!     resource_type: "ssh-server".into(),
//!     resource_ids: vec!["web-1".into()],
//!     permission: "Default".into(),
//!     justification: Some("incident 42".into()),
//!     duration: Some("1h".into()),
//! };
//! let check = client.dry_run(&request).await?;
//! assert!(check.allowed, "{:?}", check.problems);
//! let created = client.create_request(&request).await?;
//! let done = client
//!     .wait_for_request(&created.id, Duration::from_secs(60), Duration::from_millis(500),
//!         |r| r.is_settled(), |_| {})
//!     .await?;
//! for session in &done.session_ids {
//!     let details = client.access_details(session).await?;
//!     println!("{}", details.instructions.plain);
//! }
//! # Ok(()) }
//! ```
//!
//! # JSON output of the `apono` CLI
//!
//! With `-o json` every command prints one JSON document on stdout, built from these types
//! with the API's field names; fields may be added in later versions, none are renamed or
//! removed:
//!
//! | command | document |
//! |---|---|
//! | `inventory integrations` | array of [`Integration`] |
//! | `inventory resource-types` | array of [`ResourceTypeEntry`] |
//! | `inventory resources` | array of [`Resource`] |
//! | `inventory permissions` | array of [`PermissionEntry`] |
//! | `requests create` | array of [`AccessRequest`], one per `-p` permission, as last seen (`Active`, `Rejected`, `Failed`, or `Pending` with `--no-wait`) |
//! | `requests describe`, `approve`, `reject`, `revoke` | one [`AccessRequest`] (`id`, `status`, `session_ids`, `approvals`, `awaiting`, …) |
//! | `requests list` | array of [`AccessRequest`] |
//! | `access list` | array of [`AccessSession`] (`id`, `request_id`, `status`, …) |
//! | `access use -o json` | the access details: `instructions` {`plain`, `markdown`}, `cli`, `link`, `json`, `credentials` (an object of one-time values the first time, then a string saying they were shown), `credential_status`, plus `key_file` when a private key was saved and, for an SSH login, `known_hosts_file` (the server's host key beside the key, or null) with `cli` rewritten to the `ssh` command that uses both |
//! | `access reset-credentials` | one [`AccessSession`] |
//! | `audit list` | array of [`AuditRecord`] |
//! | `vault list` | array of secret paths relative to the mount, recursive, sorted |
//! | `vault fetch` | one [`VaultSecret`]: `{"path", "version", "data": {key: value}}` |
//! | `vault create`, `update` | one [`VaultWrite`]: `{"path", "version"}` |
//! | `vault delete` | one [`VaultWrite`]: `{"path", "deleted": true}` |
//! | `profiles list` | array of `{"name", "url", "active"}` (never the token) |
//!
//! Statuses use Apono's spellings: requests `Pending`, `Granting`, `Active`, `Rejected`,
//! `Revoking`, `Revoked`, `Failed`; sessions additionally `RevokeFailed`. Timestamps are
//! RFC 3339 in UTC.
//!
//! # What is proven, against what
//!
//! Through the `apono` CLI's tests, against the real `apono-connector` binary, a real sshd and a
//! real OpenBao.

mod client;
mod duration;
mod error;
mod files;
pub mod model;
mod vault;

pub use client::{Client, ClientBuilder, parse_base_url};
pub use duration::parse_duration;
pub use error::ClientError;
pub use files::{KeyCache, Profile, Profiles, write_private};
pub use model::{
    AccessDetails, AccessRequest, AccessSession, ApiToken, ApprovalRoute, AuditRecord, Credentials,
    DeviceSignIn, DryRun, Instructions, Integration, Me, NewRequest, PermissionEntry, Problem,
    RequestApproval, RequestScope, Resource, ResourceTypeEntry, SignedIn, problem_code,
};
pub use vault::{
    VAULT_INTEGRATION_TYPE, VAULT_TOKEN, VaultAccess, VaultOptions, VaultSecret, VaultWrite,
    remember_vault_token,
};

/// Statuses, re-exported from `apono-core` so callers need no second dependency.
pub use apono_core::{ErrorKind, GrantStatus, RequestStatus, SecretValue};
