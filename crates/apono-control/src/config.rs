//! The connector's configuration: one TOML file (`[connector]`, `[[users]]`,
//! `[[integrations]]`, `[[access_flows]]`, `[[notifications]]` (in `notify/config.rs`)),
//! checked as a whole so that every problem is reported at once, each naming its key.
//!
//! ```toml
//! [connector]
//! id = "local"
//! listen = "127.0.0.1:8080"
//! # Kubernetes secrets the `kubernetes` secret store may read (Helm's `allowedSecretsToRead`);
//! # leave out to allow every secret labelled for the connector.
//! allowed_secrets_to_read = ["apono/ssh-admin", "db-admin"]
//! ```
//!
//! Unknown keys are errors. `APONO_CONNECTOR_<KEY>` environment variables override
//! `[connector]` keys (`APONO_CONNECTOR_ALLOWED_SECRETS_TO_READ` as a comma-separated list,
//! `APONO_CONNECTOR_MASTER_KEY_FILE` as `master_key = { file = … }`).
//!
//! Every key, with its type, default and an example, is in the repository's
//! `docs/configuration.md`, which a test of `apono-connector` checks against the JSON Schema
//! derived from these types (`apono-connector config-schema` prints it). The connector reads
//! the file once, at start: a change takes effect when it is restarted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use apono_core::Integration;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// A duration written as `90s`, `15m`, `2h`, `1d` or a sum such as `1h30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// Parses `90s`, `15m`, `2h`, `1d`, `1h30m` (the workspace's one duration grammar,
    /// [`apono_core::parse_duration`]).
    pub fn parse(text: &str) -> Result<Self, apono_core::DurationError> {
        apono_core::parse_duration(text).map(Self)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&apono_core::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HumanDuration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration greater than zero: whole numbers of days (d), hours (h), minutes (m) and seconds (s) added up, such as `90s`, `15m`, `2h`, `1d` or `1h30m`; a bare number is seconds.",
            "pattern": "^\\s*(?:[0-9]+|(?:[0-9]+[dhms]\\s*)+)\\s*$",
            "examples": ["30s", "15m", "1h30m", "1d"],
        })
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

fn default_id() -> String {
    "local".into()
}
fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./apono-data")
}
fn secs(n: u64) -> HumanDuration {
    HumanDuration(Duration::from_secs(n))
}
fn default_action_timeout() -> HumanDuration {
    secs(30)
}
fn default_retry_base() -> HumanDuration {
    secs(1)
}
fn default_retry_max() -> HumanDuration {
    secs(300)
}
fn default_discovery_interval() -> HumanDuration {
    secs(3600)
}
fn default_shutdown_grace() -> HumanDuration {
    secs(10)
}
fn default_agent_offline_after() -> HumanDuration {
    secs(30)
}
fn default_global() -> usize {
    64
}
fn default_per_target() -> usize {
    4
}
fn default_revoke_failed_after() -> u32 {
    5
}
fn default_true() -> bool {
    true
}

/// `[connector]`: this connector's identity, listener, store and scheduler settings.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSettings {
    /// The connector's id (integrations may bind to it with `connector`).
    #[serde(default = "default_id")]
    pub id: String,
    /// Address of the API, `/healthz`, `/readyz` and `/metrics`.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Directory of the embedded SQLite store.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// A PostgreSQL URL (`postgres://…`) instead of SQLite, for several replicas.
    #[serde(default, skip_serializing)]
    pub database_url: Option<String>,
    /// Deadline of one action against a target.
    #[serde(default = "default_action_timeout")]
    pub action_timeout: HumanDuration,
    /// Actions running at once over all targets.
    #[serde(default = "default_global")]
    pub max_concurrent_actions: usize,
    /// Actions running at once against one target.
    #[serde(default = "default_per_target")]
    pub max_concurrent_per_target: usize,
    /// First retry delay of a failed action (doubled per attempt, with jitter).
    #[serde(default = "default_retry_base")]
    pub retry_base: HumanDuration,
    /// Longest retry delay.
    #[serde(default = "default_retry_max")]
    pub retry_max: HumanDuration,
    /// Failed revoke attempts after which a grant is marked `RevokeFailed` (and still retried).
    #[serde(default = "default_revoke_failed_after")]
    pub revoke_failed_after_attempts: u32,
    /// How often each integration's resources are discovered.
    #[serde(default = "default_discovery_interval")]
    pub discovery_interval: HumanDuration,
    /// How long shutdown waits for in-flight actions before abandoning them.
    #[serde(default = "default_shutdown_grace")]
    pub shutdown_grace: HumanDuration,
    /// The Kubernetes secrets the `kubernetes` secret store may read (the Helm chart's
    /// `allowedSecretsToRead`): `namespace/name`, or a bare `name` in the default namespace.
    /// Absent: every secret labelled for the connector that its service account may `get`;
    /// an empty list: none. From the environment, `APONO_CONNECTOR_ALLOWED_SECRETS_TO_READ`
    /// is a comma-separated list.
    #[serde(default)]
    pub allowed_secrets_to_read: Option<Vec<String>>,
    /// The most resources one access request may name.
    #[serde(default = "default_max_resources")]
    pub max_resources_per_request: usize,
    /// The longest justification, in characters.
    #[serde(default = "default_max_text")]
    pub max_justification_length: usize,
    /// The longest approval or rejection reason, in characters.
    #[serde(default = "default_max_text")]
    pub max_reason_length: usize,
    /// The largest API request body, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Where the 32-byte master key is kept (64 hex digits or base64): `{ file = "/path" }`,
    /// or `{ secret_store = { … } }` whose secret has a field `master_key`. It seals one-time
    /// credentials in the store and keys the audit chain; it is never stored in the database.
    /// Absent: an SQLite connector generates `master.key` in `data_dir`; a PostgreSQL
    /// connector refuses to start (every replica must hold the same key). A lost key makes
    /// pending one-time credentials unrecoverable (the requester resets them).
    #[serde(default)]
    pub master_key: Option<MasterKeySource>,
    /// How long a new API token lasts when its creator names no expiry.
    #[serde(default = "default_token_expiry")]
    pub token_default_expiry: HumanDuration,
    /// The longest expiry a new API token may have.
    #[serde(default = "default_token_max_expiry")]
    pub token_max_expiry: HumanDuration,
    /// The API listener's TLS certificate chain (PEM). With `tls_key`, the API is served
    /// over TLS (rustls); both files are read again when they change, so a certificate
    /// rotates without a restart.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Whether a `listen` address that is not loopback may serve plain HTTP (without TLS,
    /// bearer tokens and credentials cross the network in clear). Refused unless set.
    #[serde(default)]
    pub allow_insecure_listen: bool,
    /// The connector ids whose agents (`apono-connector agent`) run the actions of the
    /// integrations bound to them; an integration's `connector` must be this connector's `id`
    /// or one of these. From the environment, `APONO_CONNECTOR_AGENTS` is a comma-separated
    /// list.
    #[serde(default)]
    pub agents: Vec<String>,
    /// A connector none of whose agents polled for this long is offline: its integrations
    /// show `connector offline`, and their actions fail as if the target were unreachable.
    #[serde(default = "default_agent_offline_after")]
    pub agent_offline_after: HumanDuration,
}

/// Where the master key is kept (`connector.master_key`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MasterKeySource {
    /// A file holding the key (mode 0600, readable by the connector only).
    File(PathBuf),
    /// A secret in one of the secret stores (same shape as an integration's `secret_store`),
    /// whose field `master_key` holds the key.
    SecretStore(
        #[schemars(with = "BTreeMap<String, serde_json::Value>")] apono_core::SecretStoreRef,
    ),
}

impl MasterKeySource {
    /// The secret store the key is read from, if any.
    pub fn secret_store_kind(&self) -> Option<apono_core::SecretStoreKind> {
        match self {
            Self::File(_) => None,
            Self::SecretStore(reference) => Some(reference.kind()),
        }
    }
}

fn default_token_expiry() -> HumanDuration {
    secs(30 * 86_400)
}
fn default_token_max_expiry() -> HumanDuration {
    secs(365 * 86_400)
}

fn default_max_resources() -> usize {
    100
}
fn default_max_text() -> usize {
    2000
}
fn default_max_body() -> usize {
    64 * 1024
}

impl Default for ConnectorSettings {
    fn default() -> Self {
        Self {
            id: default_id(),
            listen: default_listen(),
            data_dir: default_data_dir(),
            database_url: None,
            action_timeout: default_action_timeout(),
            max_concurrent_actions: default_global(),
            max_concurrent_per_target: default_per_target(),
            retry_base: default_retry_base(),
            retry_max: default_retry_max(),
            revoke_failed_after_attempts: default_revoke_failed_after(),
            discovery_interval: default_discovery_interval(),
            shutdown_grace: default_shutdown_grace(),
            allowed_secrets_to_read: None,
            max_resources_per_request: default_max_resources(),
            max_justification_length: default_max_text(),
            max_reason_length: default_max_text(),
            max_body_bytes: default_max_body(),
            master_key: None,
            token_default_expiry: default_token_expiry(),
            token_max_expiry: default_token_max_expiry(),
            tls_cert: None,
            tls_key: None,
            allow_insecure_listen: false,
            agents: Vec::new(),
            agent_offline_after: default_agent_offline_after(),
        }
    }
}

impl ConnectorSettings {
    /// Creates `data_dir` if it is missing and checks that this process can write there (by
    /// creating and removing a file), so that a missing volume or a read-only mount stops the
    /// connector with a message naming the directory, not an SQLite error.
    pub fn prepare_data_dir(&self) -> Result<(), crate::ControlError> {
        let path = &self.data_dir;
        let error = |problem, source| crate::ControlError::DataDir {
            path: path.clone(),
            problem,
            source,
        };
        std::fs::create_dir_all(path).map_err(|e| {
            error(
                "is missing and cannot be created; create it or mount a writable volume there",
                e,
            )
        })?;
        let probe = path.join(format!(".apono-write-check-{}", std::process::id()));
        std::fs::write(&probe, b"").map_err(|e| {
            error(
                "is not writable by this process; mount a writable volume there or fix its owner",
                e,
            )
        })?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    /// The store URL: `database_url`, or an SQLite file in `data_dir`.
    pub fn store_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("apono.sqlite3").display()
            ),
        }
    }
}

/// `[[users]]`: a person who may use the API.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Email; the identity requests, approvals and tokens refer to.
    pub email: String,
    /// Groups, matched by access flows' requestors and approvers.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Admins see and manage everything.
    #[serde(default)]
    pub admin: bool,
}

/// How an access flow is triggered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// Users request access; approvers (if any) decide.
    SelfServe,
    /// Requests are approved automatically, whatever the approvers.
    Automatic,
}

/// Users and groups.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Principals {
    /// Emails.
    #[serde(default)]
    pub users: Vec<String>,
    /// Group names.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Principals {
    /// Whether `user` is one of these principals.
    pub fn contains(&self, user: &User) -> bool {
        self.users
            .iter()
            .any(|u| u.eq_ignore_ascii_case(&user.email))
            || user.groups.iter().any(|g| self.groups.contains(g))
    }

    /// Whether no one is named.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }
}

/// How many approvers must approve.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// One approval from any approver suffices.
    #[default]
    AnyOf,
    /// Every listed user must approve, and one member of every listed group, each a
    /// different person (separation of duties).
    AllOf,
}

/// `approvers = { mode = "any_of", users = […], groups = […] }` (or `mode = "all_of"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approvers {
    /// The approval mode.
    #[serde(default)]
    pub mode: ApprovalMode,
    /// Approving users.
    #[serde(default)]
    pub users: Vec<String>,
    /// Approving groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Approvers {
    /// The approvers as principals.
    pub fn principals(&self) -> Principals {
        Principals {
            users: self.users.clone(),
            groups: self.groups.clone(),
        }
    }
}

/// Which resources a flow target covers: all, or those with all the given tags, or the given
/// ids.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceSelector {
    /// Tags every selected resource carries.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Resource ids (empty: any).
    #[serde(default)]
    pub ids: Vec<String>,
}

impl ResourceSelector {
    /// Whether `resource` is selected.
    pub fn matches(&self, resource: &apono_core::Resource) -> bool {
        (self.ids.is_empty() || self.ids.contains(&resource.id))
            && self
                .tags
                .iter()
                .all(|(k, v)| resource.tags.get(k) == Some(v))
    }
}

/// One target of an access flow.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowTarget {
    /// Integration name.
    pub integration: String,
    /// Resource type.
    pub resource_type: String,
    /// Permissions that may be requested.
    pub permissions: Vec<String>,
    /// Which resources.
    #[serde(default)]
    pub resources: ResourceSelector,
}

/// `[[access_flows]]`: who may request what, who approves, for how long at most.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessFlow {
    /// Unique name.
    pub name: String,
    /// How requests are approved.
    pub trigger: Trigger,
    /// Who may request.
    pub requestors: Principals,
    /// What may be requested.
    pub targets: Vec<FlowTarget>,
    /// Who approves (`self_serve` without approvers: approved automatically).
    #[serde(default)]
    pub approvers: Approvers,
    /// The longest grant (and the default when a request names none).
    pub grant_duration: HumanDuration,
    /// Whether requests must say why.
    #[serde(default)]
    pub justification_required: bool,
    /// Whether a requester is barred from approving their own request.
    #[serde(default = "default_true")]
    pub requester_cannot_approve_self: bool,
}

impl AccessFlow {
    /// Whether requests under this flow wait for an approver.
    pub fn needs_approval(&self) -> bool {
        self.trigger == Trigger::SelfServe
            && !(self.approvers.users.is_empty() && self.approvers.groups.is_empty())
    }
}

/// The whole configuration file.
///
/// Its JSON Schema ([`schemars::schema_for!`]`(Config)`) names every key; the reference,
/// `docs/configuration.md`, is checked against it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, JsonSchema)]
#[schemars(default, deny_unknown_fields)]
pub struct Config {
    /// `[connector]`.
    pub connector: ConnectorSettings,
    /// `[[users]]`.
    pub users: Vec<User>,
    /// `[[integrations]]`.
    pub integrations: Vec<Integration>,
    /// `[[access_flows]]`.
    pub access_flows: Vec<AccessFlow>,
    /// `[[notifications]]`.
    pub notifications: Vec<crate::notify::NotificationChannel>,
    /// `[[identity_providers]]`: OpenID Connect providers to sign in with.
    pub identity_providers: Vec<crate::identity::config::IdentityProvider>,
}

/// One problem found in a configuration, naming its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Where: `connector.listen`, `integrations[0] (prod-servers)`, …
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The configuration could not be used; every problem found is listed.
#[derive(Debug, thiserror::Error)]
#[error("configuration has {} problem{}: {}", problems.len(), if problems.len() == 1 { "" } else { "s" }, problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigError {
    /// Every problem, in file order.
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    /// The kind: always invalid input.
    pub fn kind(&self) -> apono_core::ErrorKind {
        apono_core::ErrorKind::InvalidInput
    }
}

const TOP_LEVEL: [&str; 6] = [
    "connector",
    "users",
    "integrations",
    "access_flows",
    "notifications",
    "identity_providers",
];

impl Config {
    /// Parses and checks a configuration file's text. `env` supplies overrides of the
    /// `[connector]` keys as `APONO_CONNECTOR_<KEY>` (pass `std::env::vars()` from a binary;
    /// the library never reads the environment itself). `known_types` are the integration
    /// types the executor can serve (`None`: do not check).
    pub fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        known_types: Option<&BTreeSet<String>>,
    ) -> Result<Self, ConfigError> {
        let (config, problems) = Self::parse_lenient(text, env, known_types);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Like [`Config::parse`], but returns what could be read together with every problem, so
    /// that a checker can go on to check the parts that did parse (such as each integration's
    /// typed `config`).
    pub fn parse_lenient(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        known_types: Option<&BTreeSet<String>>,
    ) -> (Self, Vec<ConfigProblem>) {
        let mut problems = Vec::new();
        let mut problem = |key: String, message: String| {
            problems.push(ConfigProblem { key, message });
        };
        let mut table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                // TOML's own message points at the line with a caret: keep its line breaks.
                problem("(file)".into(), e.to_string().trim().to_owned());
                return (Self::default(), problems);
            }
        };
        for key in table.keys() {
            if !TOP_LEVEL.contains(&key.as_str()) {
                problem(
                    key.clone(),
                    format!("unknown key; expected one of {}", TOP_LEVEL.join(", ")),
                );
            }
        }

        // [connector], with environment overrides.
        let mut connector_table = match table.remove("connector") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(_) => {
                problem("connector".into(), "must be a table".into());
                toml::Table::new()
            }
        };
        for (name, value) in env {
            if let Some(key) = name.strip_prefix("APONO_CONNECTOR_") {
                // A table cannot be written in one variable: the key file's path can.
                if key.eq_ignore_ascii_case("master_key_file") {
                    let file: toml::Table = [("file".to_owned(), toml::Value::String(value))]
                        .into_iter()
                        .collect();
                    connector_table.insert("master_key".into(), toml::Value::Table(file));
                    continue;
                }
                let value = if key.eq_ignore_ascii_case("allowed_secrets_to_read")
                    || key.eq_ignore_ascii_case("agents")
                {
                    toml::Value::Array(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|e| !e.is_empty())
                            .map(|e| toml::Value::String(e.to_owned()))
                            .collect(),
                    )
                } else if let Ok(n) = value.parse::<i64>() {
                    toml::Value::Integer(n)
                } else if let Ok(b) = value.parse::<bool>() {
                    toml::Value::Boolean(b)
                } else {
                    toml::Value::String(value)
                };
                connector_table.insert(key.to_ascii_lowercase(), value);
            }
        }
        // Each key on its own, so that every bad key is reported; the good ones are kept.
        let mut good = toml::Table::new();
        for (key, value) in connector_table {
            let single: toml::Table = [(key.clone(), value.clone())].into_iter().collect();
            match ConnectorSettings::deserialize(toml::Value::Table(single)) {
                Ok(_) => {
                    good.insert(key, value);
                }
                Err(e) => problem(format!("connector.{key}"), one_line(&e)),
            }
        }
        let connector =
            ConnectorSettings::deserialize(toml::Value::Table(good)).unwrap_or_default();
        if connector.listen.parse::<std::net::SocketAddr>().is_err() {
            problem(
                "connector.listen".into(),
                format!(
                    "{:?} is not an address such as 127.0.0.1:8080",
                    connector.listen
                ),
            );
        }
        match (&connector.tls_cert, &connector.tls_key) {
            (Some(_), None) | (None, Some(_)) => problem(
                "connector.tls_cert".into(),
                "tls_cert and tls_key go together".into(),
            ),
            (None, None) => {
                if let Ok(addr) = connector.listen.parse::<std::net::SocketAddr>()
                    && !addr.ip().is_loopback()
                    && !connector.allow_insecure_listen
                {
                    problem(
                        "connector.listen".into(),
                        format!(
                            "{addr} is not a loopback address and no TLS is configured: set \
                             tls_cert and tls_key, or allow_insecure_listen = true to serve \
                             plain HTTP (tokens and credentials in clear)"
                        ),
                    );
                }
            }
            (Some(_), Some(_)) => {}
        }
        if connector.token_default_expiry > connector.token_max_expiry {
            problem(
                "connector.token_default_expiry".into(),
                format!(
                    "{} is longer than token_max_expiry ({})",
                    connector.token_default_expiry, connector.token_max_expiry
                ),
            );
        }
        if let Some(url) = &connector.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            problem(
                "connector.database_url".into(),
                "must be a postgres:// URL".into(),
            );
        }
        for (i, agent) in connector.agents.iter().enumerate() {
            if !is_connector_id(agent) || agent == &connector.id {
                problem(
                    format!("connector.agents[{i}]"),
                    format!(
                        "{agent:?} is not another connector's id (1 to 63 lower-case letters, digits and `-`, not starting with `-`)"
                    ),
                );
            }
        }
        if connector.max_concurrent_actions == 0 || connector.max_concurrent_per_target == 0 {
            problem(
                "connector.max_concurrent_actions".into(),
                "concurrency limits must be at least 1".into(),
            );
        }

        for (i, entry) in connector
            .allowed_secrets_to_read
            .iter()
            .flatten()
            .enumerate()
        {
            let parts: Vec<&str> = entry.split('/').collect();
            let ok = parts.len() <= 2 && parts.iter().all(|p| is_kubernetes_name(p));
            if !ok {
                problem(
                    format!("connector.allowed_secrets_to_read[{i}]"),
                    format!(
                        "{entry:?} is not a Kubernetes secret such as \"namespace/name\" or \"name\""
                    ),
                );
            }
        }

        let users: Vec<User> = section(&mut table, "users", &mut problem);
        let mut integrations: Vec<Integration> = section(&mut table, "integrations", &mut problem);
        for (i, integration) in integrations.iter_mut().enumerate() {
            lift_periods(i, integration, &mut problem);
        }
        let access_flows: Vec<AccessFlow> = section(&mut table, "access_flows", &mut problem);
        let identity_providers = section(&mut table, "identity_providers", &mut problem);
        for p in crate::identity::config::check(&identity_providers, &users) {
            problem(p.key, p.message);
        }

        // Cross-references.
        let mut seen = BTreeSet::new();
        for (i, user) in users.iter().enumerate() {
            if !user.email.contains('@') {
                problem(
                    format!("users[{i}].email"),
                    "must be an email address".into(),
                );
            }
            if !seen.insert(user.email.to_ascii_lowercase()) {
                problem(
                    format!("users[{i}].email"),
                    format!("{} is listed twice", user.email),
                );
            }
        }
        let mut names = BTreeSet::new();
        for (i, integration) in integrations.iter().enumerate() {
            let key = format!("integrations[{i}]");
            if !names.insert(integration.name.clone()) {
                problem(
                    format!("{key}.name"),
                    format!("{} is used twice", integration.name),
                );
            }
            if let Some(types) = known_types
                && !types.contains(integration.integration_type.as_str())
            {
                problem(
                    format!("{key}.type"),
                    format!(
                        "no provisioner for type {:?}; known: {}",
                        integration.integration_type.as_str(),
                        types.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
            if integration.resource_owner_tag.is_some() && integration.owners.is_empty() {
                problem(
                    format!("{key}.resource_owner_tag"),
                    "needs `owners` too: the integration's owners approve when a resource has \
                     no owner"
                        .into(),
                );
            }
            if integration
                .resource_owner_tag
                .as_deref()
                .is_some_and(|t| t.trim().is_empty())
            {
                problem(
                    format!("{key}.resource_owner_tag"),
                    "must name a tag key".into(),
                );
            }
            for owner in &integration.owners {
                if owner.contains('@') && !users.iter().any(|u| u.email.eq_ignore_ascii_case(owner))
                {
                    problem(
                        format!("{key}.owners"),
                        format!("{owner} is not a configured user"),
                    );
                }
            }
            if let Some(bound) = &integration.connector
                && bound != &connector.id
            {
                if !connector.agents.contains(bound) {
                    problem(
                        format!("{key}.connector"),
                        format!(
                            "bound to connector {bound:?}, which is neither this connector ({:?}) nor one of connector.agents",
                            connector.id
                        ),
                    );
                }
                if integration.secret_store.kind() == apono_core::SecretStoreKind::Apono {
                    problem(
                        format!("{key}.secret_store"),
                        "an integration bound to an agent reads its secret from the agent's own \
                         secret stores; an inline (`apono`) secret would cross the network"
                            .into(),
                    );
                }
            }
        }
        let mut flow_names = BTreeSet::new();
        for (i, flow) in access_flows.iter().enumerate() {
            let key = format!("access_flows[{i}]");
            if !flow_names.insert(flow.name.clone()) {
                problem(
                    format!("{key}.name"),
                    format!("{} is used twice", flow.name),
                );
            }
            if flow.requestors.is_empty() {
                problem(format!("{key}.requestors"), "names no user or group".into());
            }
            if flow.targets.is_empty() {
                problem(format!("{key}.targets"), "names no target".into());
            }
            for (j, target) in flow.targets.iter().enumerate() {
                match integrations.iter().find(|x| x.name == target.integration) {
                    None => problem(
                        format!("{key}.targets[{j}].integration"),
                        format!("no integration is named {:?}", target.integration),
                    ),
                    Some(integration) => {
                        if !integration.offers(&target.resource_type.as_str().into()) {
                            problem(
                                format!("{key}.targets[{j}].resource_type"),
                                format!(
                                    "{:?} is not in integration {:?}'s connected_resource_types ({}): check both for a typo",
                                    target.resource_type,
                                    integration.name,
                                    integration
                                        .connected_resource_types
                                        .iter()
                                        .map(|t| format!("{:?}", t.as_str()))
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            );
                        }
                    }
                }
                if target.permissions.is_empty() {
                    problem(
                        format!("{key}.targets[{j}].permissions"),
                        "names no permission".into(),
                    );
                }
            }
            if flow.approvers.mode == ApprovalMode::AllOf
                && flow.approvers.users.is_empty()
                && flow.approvers.groups.is_empty()
            {
                problem(
                    format!("{key}.approvers"),
                    "mode all_of names no user or group to approve".into(),
                );
            }
            for approver in &flow.approvers.users {
                if !users.iter().any(|u| u.email.eq_ignore_ascii_case(approver)) {
                    problem(
                        format!("{key}.approvers.users"),
                        format!("{approver} is not a configured user"),
                    );
                }
            }
        }
        let notifications: Vec<crate::notify::NotificationChannel> =
            section(&mut table, "notifications", &mut problem);
        for (key, message) in
            crate::notify::check_config(&notifications, &users, &identity_providers)
        {
            problem(key, message);
        }
        (
            Self {
                connector,
                users,
                integrations,
                access_flows,
                notifications,
                identity_providers,
            },
            problems,
        )
    }

    /// The user with this email (case-insensitive).
    pub fn user(&self, email: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email))
    }

    /// The integration with this name.
    pub fn integration(&self, name: &str) -> Option<&Integration> {
        self.integrations.iter().find(|i| i.name == name)
    }

    /// The access flow with this name.
    pub fn flow(&self, name: &str) -> Option<&AccessFlow> {
        self.access_flows.iter().find(|f| f.name == name)
    }
}

/// The integration keys Apono's Terraform writes inside `config`, which the control plane's
/// scheduler acts on.
const PERIOD_KEYS: [&str; 2] = [
    "credentials_rotation_period_in_days",
    "credentials_cleanup_period_in_days",
];

/// Moves `credentials_rotation_period_in_days` and `credentials_cleanup_period_in_days` from
/// an integration's `config` (where Apono's Terraform puts them) to its top level (where the
/// scheduler reads them), so both places are honoured and a provisioner's own `config` never
/// sees them. The same value in both places is fine; different values are a problem.
fn lift_periods(
    index: usize,
    integration: &mut Integration,
    problem: &mut impl FnMut(String, String),
) {
    let serde_json::Value::Object(config) = &mut integration.config else {
        return;
    };
    for key in PERIOD_KEYS {
        let Some(value) = config.remove(key) else {
            continue;
        };
        let at = format!("integrations[{index}] ({}).config.{key}", integration.name);
        let Some(days) = value.as_u64().and_then(|d| u32::try_from(d).ok()) else {
            problem(at, format!("must be a whole number of days, found {value}"));
            continue;
        };
        let top = if key == PERIOD_KEYS[0] {
            &mut integration.credentials_rotation_period_in_days
        } else {
            &mut integration.credentials_cleanup_period_in_days
        };
        match *top {
            Some(other) if other != days => problem(
                at,
                format!(
                    "is {days} here but {other} at the integration's top level; set it in one \
                     place (Apono's Terraform puts it in `config`)"
                ),
            ),
            _ => *top = Some(days),
        }
    }
}

/// A DNS-subdomain name, as Kubernetes requires of namespaces and secrets.
fn is_kubernetes_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn one_line(e: &impl fmt::Display) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Deserialises every element of an array-of-tables section on its own, so that one bad
/// element does not hide the others.
fn section<T: serde::de::DeserializeOwned>(
    table: &mut toml::Table,
    name: &str,
    problem: &mut impl FnMut(String, String),
) -> Vec<T> {
    let items = match table.remove(name) {
        None => return Vec::new(),
        Some(toml::Value::Array(items)) => items,
        Some(_) => {
            problem(
                name.into(),
                format!("must be an array of tables ([[{name}]])"),
            );
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let hint = item
            .get("name")
            .or_else(|| item.get("email"))
            .and_then(toml::Value::as_str)
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        match T::deserialize(item) {
            Ok(value) => out.push(value),
            Err(e) => problem(format!("{name}[{i}]{hint}"), one_line(&e)),
        }
    }
    out
}

/// Checks a configuration file's text completely: the file itself ([`Config::parse_lenient`])
/// and each integration's typed `config`, as the provisioner registered for its type reads it.
/// Every problem is reported at once. Touches no target and reads no secret.
pub fn check_config(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
    registry: &apono_runtime::ProvisionerRegistry,
) -> Result<Config, ConfigError> {
    let types: BTreeSet<String> = registry.types().map(str::to_owned).collect();
    let (config, mut problems) = Config::parse_lenient(text, env, Some(&types));
    for (i, integration) in config.integrations.iter().enumerate() {
        let Some(factory) = registry.factory(integration.integration_type.as_str()) else {
            continue; // already reported
        };
        if let Err(e) = factory(integration) {
            let message = apono_core::error_chain(&e);
            problems.push(ConfigProblem {
                key: format!("integrations[{i}] ({}).config", integration.name),
                message,
            });
        }
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError { problems })
    }
}

/// Whether `id` is a connector id an agent may serve: 1 to 63 lower-case ASCII letters, digits
/// and `-`, not starting with `-` (it starts the agents' lease tokens, before a `/`).
pub fn is_connector_id(id: &str) -> bool {
    (1..=63).contains(&id.len())
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The configuration's JSON Schema (what `apono-connector config-schema` prints): [`Config`]'s,
/// where an integration's `config` follows its `type`, for every built-in type this build
/// registers (an `if`/`then` per built-in type in `$defs.Integration.allOf`).
pub fn config_schema() -> serde_json::Value {
    let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
    let typed = apono_runtime::integration_config_schemas(&mut generator);
    let mut root = generator.root_schema_for::<Config>().to_value();
    let rules: Vec<serde_json::Value> = typed
        .into_iter()
        .map(|(name, config)| {
            serde_json::json!({
                "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                "then": {"properties": {"config": config}},
            })
        })
        .collect();
    if let Some(integration) = root
        .pointer_mut("/$defs/Integration")
        .and_then(serde_json::Value::as_object_mut)
    {
        integration.insert("allOf".into(), rules.into());
    }
    root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_dir_that_cannot_be_made_or_written_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").unwrap();
        let settings = |data_dir: std::path::PathBuf| ConnectorSettings {
            data_dir,
            ..ConnectorSettings::default()
        };
        // Under a regular file: it can never be created, whoever runs the test.
        let err = settings(file.join("data")).prepare_data_dir().unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(&format!("{}", file.join("data").display()))
                && text.contains("(connector.data_dir) is missing and cannot be created"),
            "{text}"
        );
        let fine = dir.path().join("data");
        settings(fine.clone()).prepare_data_dir().unwrap();
        assert!(fine.is_dir());
        assert_eq!(
            std::fs::read_dir(&fine).unwrap().count(),
            0,
            "the check file is removed"
        );
    }

    #[test]
    fn durations_parse_and_print() {
        for (text, secs, shown) in [
            ("90s", 90, "1m30s"),
            ("2h", 7200, "2h"),
            ("1h30m", 5400, "1h30m"),
            ("1d", 86_400, "1d"),
        ] {
            let d = HumanDuration::parse(text).unwrap();
            assert_eq!(d.0.as_secs(), secs);
            assert_eq!(d.to_string(), shown);
        }
        for bad in ["", "2 hours", "0s", "h", "-1h"] {
            assert!(HumanDuration::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn allowed_secrets_to_read_is_checked_with_everything_else() {
        let check = |text: &str, env: &[(&str, &str)]| {
            Config::parse(
                text,
                env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
                None,
            )
        };
        let config = check(
            "[connector]\nallowed_secrets_to_read = [\"apono/ssh-admin\", \"db-admin\"]\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            config.connector.allowed_secrets_to_read,
            Some(vec!["apono/ssh-admin".to_owned(), "db-admin".to_owned()])
        );
        assert_eq!(
            check("", &[]).unwrap().connector.allowed_secrets_to_read,
            None
        );
        let config = check("", &[("APONO_CONNECTOR_ALLOWED_SECRETS_TO_READ", "a/b, c")]).unwrap();
        assert_eq!(
            config.connector.allowed_secrets_to_read,
            Some(vec!["a/b".to_owned(), "c".to_owned()])
        );
        let config = check("", &[("APONO_CONNECTOR_MASTER_KEY_FILE", "/keys/master")]).unwrap();
        assert_eq!(
            config.connector.master_key,
            Some(MasterKeySource::File("/keys/master".into()))
        );
        let err = check(
            "[connector]\nallowed_secrets_to_read = [\"ok\", \"a/b/c\", \"Bad_Name\"]\nlisten = \"nowhere\"\nallowed_secret = []\n",
            &[],
        )
        .unwrap_err();
        let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "connector.allowed_secret",
                "connector.listen",
                "connector.allowed_secrets_to_read[1]",
                "connector.allowed_secrets_to_read[2]",
            ]
        );
        let err = check("[connector]\nallowed_secrets_to_read = \"a/b\"\n", &[]).unwrap_err();
        assert_eq!(err.problems[0].key, "connector.allowed_secrets_to_read");
    }

    #[test]
    fn rotation_and_cleanup_periods_are_read_in_config_or_at_the_top_level() {
        // (top level, inside config) → (rotation, cleanup) honoured, or the problem's key.
        let check = |top: &str, inner: &str| {
            let text = format!(
                "[[integrations]]\nname = \"s\"\ntype = \"ssh\"\nsecret_store = {{ apono = {{ parameters = {{ k = \"v\" }} }} }}\n{top}\nconfig = {{ servers = []{inner} }}\n"
            );
            Config::parse(&text, std::iter::empty(), None)
                .map(|c| {
                    let i = &c.integrations[0];
                    assert!(
                        PERIOD_KEYS.iter().all(|k| i.config.get(k).is_none()),
                        "moved out of config: {}",
                        i.config
                    );
                    (
                        i.credentials_rotation_period_in_days,
                        i.credentials_cleanup_period_in_days,
                    )
                })
                .map_err(|e| {
                    e.problems
                        .iter()
                        .map(|p| format!("{} {}", p.key, p.message))
                        .collect::<Vec<_>>()
                })
        };
        let rot = "credentials_rotation_period_in_days";
        let cln = "credentials_cleanup_period_in_days";
        assert_eq!(check("", ""), Ok((None, None)));
        assert_eq!(check(&format!("{rot} = 30"), ""), Ok((Some(30), None)));
        assert_eq!(check("", &format!(", {rot} = 30")), Ok((Some(30), None)));
        assert_eq!(
            check("", &format!(", {rot} = 30, {cln} = 0")),
            Ok((Some(30), Some(0)))
        );
        assert_eq!(
            check(&format!("{cln} = 7"), &format!(", {rot} = 1, {cln} = 7")),
            Ok((Some(1), Some(7)))
        );
        let err = check(&format!("{rot} = 30"), &format!(", {rot} = 7")).unwrap_err();
        assert_eq!(err.len(), 1, "{err:?}");
        assert!(
            err[0].starts_with(&format!(
                "integrations[0] (s).config.{rot} is 7 here but 30 at the integration's top level"
            )),
            "{err:?}"
        );
        for bad in ["-1", "\"7\"", "1.5", "4294967296"] {
            let err = check("", &format!(", {cln} = {bad}")).unwrap_err();
            assert_eq!(err.len(), 1, "{bad}: {err:?}");
            assert!(
                err[0].starts_with(&format!(
                    "integrations[0] (s).config.{cln} must be a whole number of days"
                )),
                "{err:?}"
            );
        }
    }

    #[test]
    fn slack_users_are_users_or_may_sign_in_through_a_provider() {
        let text = r#"
[[users]]
email = "a@x"

[[identity_providers]]
name = "corp"
issuer = "https://idp.example.com"
client_id = "apono"
client_secret = { apono = { parameters = { client_secret = "s" } } }
allowed_email_domains = ["corp.example"]

[[notifications]]
name = "team"
type = "slack"
events = ["request.pending"]
secret_store = { apono = { parameters = { webhook_url = "https://hooks.slack.com/x", signing_secret = "s" } } }
slack_users = { U1 = "a@x", U2 = "b@CORP.example", U3 = "c@corp.example.evil.net" }
"#;
        let problems = Config::parse(text, std::iter::empty(), None)
            .map(|_| ())
            .map_err(|e| e.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>());
        assert_eq!(
            problems,
            Err(vec!["notifications[0] (team).slack_users: U3 maps to c@corp.example.evil.net, who is not a configured user and may not sign in through an identity provider".to_owned()])
        );
        // The bot token goes to slack_api_url: https, or http to loopback only.
        let valid = text.replace(", U3 = \"c@corp.example.evil.net\"", "");
        for (api, ok) in [
            ("https://slack-proxy.example.com/api/", true),
            ("http://127.0.0.1:9/api/", true),
            ("http://localhost:9/api/", true),
            ("http://slack-proxy.example.com/api/", false),
            ("http://127.0.0.1.evil.net/api/", false),
            ("slack.com/api", false),
        ] {
            let parsed = Config::parse(
                &format!("{valid}slack_api_url = \"{api}\"\n"),
                std::iter::empty(),
                None,
            );
            match parsed {
                Ok(_) => assert!(ok, "{api} accepted"),
                Err(e) => {
                    assert!(!ok, "{api}: {e:?}");
                    assert_eq!(e.problems.len(), 1, "{api}: {e:?}");
                    assert!(
                        e.problems[0].to_string().starts_with(
                            "notifications[0] (team).slack_api_url: must be an https URL"
                        ),
                        "{api}: {e:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_resource_owner_tag_needs_owners_and_owner_emails_are_users() {
        let check = |extra: &str| {
            let text = format!(
                "[[users]]\nemail = \"a@x\"\n[[integrations]]\nname = \"s\"\ntype = \"ssh\"\nsecret_store = {{ apono = {{ parameters = {{ k = \"v\" }} }} }}\n{extra}\n"
            );
            Config::parse(&text, std::iter::empty(), None)
                .map(|_| ())
                .map_err(|e| e.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        };
        assert_eq!(
            check("owners = [\"a@x\", \"sre\"]\nresource_owner_tag = \"owner\""),
            Ok(())
        );
        assert_eq!(
            check("resource_owner_tag = \"owner\""),
            Err(vec!["integrations[0].resource_owner_tag: needs `owners` too: the integration's owners approve when a resource has no owner".to_owned()])
        );
        assert_eq!(
            check("owners = [\"b@x\"]\nresource_owner_tag = \" \""),
            Err(vec![
                "integrations[0].resource_owner_tag: must name a tag key".to_owned(),
                "integrations[0].owners: b@x is not a configured user".to_owned(),
            ])
        );
    }
}
