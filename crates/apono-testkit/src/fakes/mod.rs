//! Protocol fakes for the services that cannot run on a test machine: the Kubernetes API,
//! Azure Key Vault (with its Entra ID token endpoint), GCP Secret Manager (with its OAuth
//! token endpoint and the metadata server), Slack's Web API, and more (the table below).
//!
//! Each fake is an HTTP server on `127.0.0.1` with a free port, running on its own thread and
//! its own Tokio runtime, so it can be started from synchronous and asynchronous tests alike;
//! it stops when dropped. Each speaks the vendor's real REST shapes — paths, JSON bodies, error
//! objects, authentication challenges — and is itself checked by the vendor's own client in
//! this crate's `tests/fake_*.rs`, so that a fake cannot drift into agreeing with our bugs.
//!
//! | fake | serves | transport |
//! |---|---|---|
//! | [`FakeGcpSecretManager`] | Secret Manager v1 `:access`, the OAuth token endpoint (JWT-bearer and refresh-token grants), the metadata server's token | plain HTTP |
//! | [`FakeAzureKeyVault`] | Key Vault `GET /secrets/{name}`, the 401 challenge, Entra ID's `/{tenant}/oauth2/v2.0/token` and OpenID metadata, IMDS | HTTPS with a test CA ([`TestCa`]) |
//! | [`FakeKubernetes`] | `/version`, `/api`, `/api/v1`, `GET /api/v1/namespaces/{ns}/secrets/{name}` with `Status` errors | plain HTTP, bearer tokens |
//! | [`FakeSlackApi`] | Slack's Web API `users.info` (GET or POST), bearer tokens with or without the `users:read.email` scope, Slack's `{"ok": false, "error"}` answers | plain HTTP |
//! | [`tds::FakeSqlServer`] | SQL Server's TDS: PRELOGIN, LOGIN7, batches, `sp_executesql`, results, errors, over a model of the `mssql` provisioner's statements | plain TCP |
//!
//! Every fake records the requests it answered ([`RecordedRequest`]) so that tests can check
//! what a client sent.

mod azure;
mod gcp;
mod kubernetes;
pub mod rancher;
mod server;
mod slack;
pub mod tds;
mod tls;
pub mod winrm;

pub use azure::{AzureAccess, FakeAzureKeyVault, KEY_VAULT_RESOURCE};
pub use gcp::{FakeGcpSecretManager, GcpAccess, GcpServiceAccountKey};
pub use kubernetes::{FakeKubernetes, KubernetesAccess, Labels, SecretData};
pub use server::RecordedRequest;
pub use slack::{FAKE_TEAM, FakeSlackApi, SlackUser};
pub use tls::TestCa;

/// Why a fake could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FakeError {
    /// Binding the listening socket or starting the runtime failed.
    #[error("{fake}: could not start the server")]
    Start {
        /// Which fake.
        fake: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Generating test keys or certificates failed.
    #[error("{fake}: could not generate test key material")]
    Crypto {
        /// Which fake.
        fake: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
