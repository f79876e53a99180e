//! Installs an Apono Vault: initialises and unseals an OpenBao server, and prepares it for the
//! `apono-vault` integration (what `apono-connector vault-init` and the `apono-vault` Helm
//! chart's init Job run).
//!
//! [`initialize`] is idempotent: run it after every start of the vault. Each step looks first and
//! changes only what is missing:
//!
//! 1. waits until OpenBao answers (`sys/seal-status`);
//! 2. if OpenBao is **not initialised**, initialises it and hands the unseal keys and root
//!    token to their custodian ([`KeyCustody`]): a secret ([`InitSecretStore`], a Kubernetes
//!    Secret by default, written as a placeholder *before* initialising, so that a missing
//!    permission fails before any key exists), or the caller, who prints them once. An
//!    initialised vault is never initialised again;
//! 3. if OpenBao is **sealed**, unseals it with the custodian's keys, then waits until the node
//!    is active;
//! 4. enables kv-v2 at the integration's mount (`apono-store`), `userpass` and `approle` where
//!    they are missing (a mount of another type is an error, never replaced);
//! 5. writes the four fixed grant policies and the connector's AppRole policy
//!    ([`crate::policy::install_policies`]) and the AppRole role carrying that policy only;
//! 6. writes the integration secret (`apono-vault-role`, labelled `apono-connector-read=true`)
//!    with the role's `role_id` and a `secret_id`, unless the secret already holds that role id
//!    and a secret id that still logs in.
//!
//! Keys and tokens are [`SecretString`]s: never logged, never in errors or `Debug`.
//!
//! ```no_run
//! use apono_vault_client::ClientSettings;
//! use apono_vault_client::init::{InitOptions, KeyCustody, initialize};
//! # async fn demo(secrets: &dyn apono_vault_client::init::InitSecretStore) -> Result<(), Box<dyn std::error::Error>> {
//! let connection = ClientSettings::new("http://apono-vault.apono-vault.svc:8200").connect()?;
//! let report = initialize(&connection, &InitOptions::default(), secrets).await?;
//! println!("initialised now: {}, unsealed now: {}", report.initialised, report.unsealed);
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use apono_core::{BoxError, ErrorKind, async_trait};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tracing::{info, warn};

use crate::client::{OpenBaoClient, OpenBaoConnection, check_mount, check_name};
use crate::error::VaultError;
use crate::integration::{DEFAULT_MOUNT, ROLE_ID, SECRET_ID};
use crate::policy::install_policies;

/// Name of the integration secret the `apono-vault` integration reads (Apono's name).
pub const ROLE_SECRET: &str = "apono-vault-role";
/// Default name of the secret holding the unseal keys and the root token.
pub const KEYS_SECRET: &str = "apono-vault-keys";
/// The label that lets the connector read a secret.
pub const READ_LABEL: &str = "apono-connector-read";
/// Key of the keys secret that says what it holds: [`KEYS_PLACEHOLDER`] or [`KEYS_PRESENT`].
const KEYS_STATUS: &str = "status";
/// The keys secret before the vault is initialised.
pub const KEYS_PLACEHOLDER: &str = "placeholder";
/// The keys secret once it holds the keys.
pub const KEYS_PRESENT: &str = "initialised";
/// Key of the root token in the keys secret.
const ROOT_TOKEN: &str = "root_token";
/// Prefix of the unseal keys' keys in the keys secret (`unseal_key_0`, …).
const UNSEAL_KEY: &str = "unseal_key_";

/// Where the unseal keys and the root token go when the vault is initialised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyCustody {
    /// Into the secret of this name in the [`InitSecretStore`] (not readable by the connector:
    /// it carries no [`READ_LABEL`]). Later runs read them from there to unseal. Anyone who can
    /// read that secret controls the vault.
    Secret(String),
    /// Returned once in [`InitReport::keys`] for the caller to print; stored nowhere. Later
    /// runs need them back ([`InitOptions::keys`]) to unseal and configure.
    PrintOnce,
}

/// The unseal keys and root token of an initialised vault.
#[derive(Clone)]
pub struct InitKeys {
    /// The unseal keys (base64), as many as [`InitOptions::key_shares`].
    pub unseal_keys: Vec<SecretString>,
    /// The root token.
    pub root_token: SecretString,
}

impl fmt::Debug for InitKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitKeys")
            .field("unseal_keys", &self.unseal_keys.len())
            .field("root_token", &"[redacted]")
            .finish()
    }
}

impl InitKeys {
    /// The keys as JSON (`{"unseal_keys_b64": […], "root_token": "…"}`), the form printed once
    /// and read back by [`InitKeys::from_json`].
    pub fn to_json(&self) -> SecretString {
        let keys: Vec<&str> = self
            .unseal_keys
            .iter()
            .map(ExposeSecret::expose_secret)
            .collect();
        SecretString::from(
            json!({"unseal_keys_b64": keys, "root_token": self.root_token.expose_secret()})
                .to_string(),
        )
    }

    /// Parses what [`InitKeys::to_json`] wrote.
    pub fn from_json(text: &str) -> Result<Self, InitError> {
        let bad = || InitError::Options {
            reason: "the keys must be JSON with unseal_keys_b64 (a list) and root_token".into(),
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|_| bad())?;
        let unseal_keys = value["unseal_keys_b64"]
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|k| k.as_str().map(|k| SecretString::from(k.to_owned())))
            .collect::<Option<Vec<_>>>()
            .filter(|k| !k.is_empty())
            .ok_or_else(bad)?;
        let root_token = SecretString::from(value["root_token"].as_str().ok_or_else(bad)?);
        Ok(Self {
            unseal_keys,
            root_token,
        })
    }

    fn to_secret_data(&self) -> BTreeMap<String, SecretString> {
        let mut data = BTreeMap::new();
        data.insert(KEYS_STATUS.to_owned(), SecretString::from(KEYS_PRESENT));
        data.insert(ROOT_TOKEN.to_owned(), self.root_token.clone());
        for (i, key) in self.unseal_keys.iter().enumerate() {
            data.insert(format!("{UNSEAL_KEY}{i}"), key.clone());
        }
        data
    }

    fn from_secret_data(
        name: &str,
        data: &BTreeMap<String, SecretString>,
    ) -> Result<Self, InitError> {
        let problem = |problem: &'static str| InitError::Keys {
            name: name.to_owned(),
            problem,
        };
        match data.get(KEYS_STATUS).map(ExposeSecret::expose_secret) {
            Some(KEYS_PRESENT) => {}
            Some(KEYS_PLACEHOLDER) => {
                return Err(problem(
                    "the placeholder: an earlier run initialised the vault but could not store its keys; they are lost, so the vault must be reinstalled (its data volume deleted)",
                ));
            }
            _ => return Err(problem("no status key saying what it holds")),
        }
        let root_token = data
            .get(ROOT_TOKEN)
            .cloned()
            .ok_or_else(|| problem("no root_token"))?;
        let mut unseal_keys = Vec::new();
        while let Some(key) = data.get(&format!("{UNSEAL_KEY}{}", unseal_keys.len())) {
            unseal_keys.push(key.clone());
        }
        if unseal_keys.is_empty() {
            return Err(problem("no unseal_key_0"));
        }
        Ok(Self {
            unseal_keys,
            root_token,
        })
    }
}

/// Where [`initialize`] reads and writes its secrets (the keys secret and the integration
/// secret): a Kubernetes namespace in production ([`KubernetesSecrets`] with feature
/// `kubernetes`). Values are secrets and must never be logged.
#[async_trait]
pub trait InitSecretStore: Send + Sync + fmt::Debug {
    /// The data of secret `name`, or `None` when it does not exist.
    async fn read(&self, name: &str) -> Result<Option<BTreeMap<String, SecretString>>, BoxError>;
    /// Creates or replaces secret `name` with exactly these labels and data.
    async fn write(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        data: &BTreeMap<String, SecretString>,
    ) -> Result<(), BoxError>;
}

/// What [`initialize`] does; [`Default`] is Apono Vault's installation.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// The kv-v2 mount of the integration's secrets (default `apono-store`).
    pub mount: String,
    /// The userpass auth mount grantees log in with (default `userpass`).
    pub userpass_mount: String,
    /// The AppRole auth mount the connector logs in with (default `approle`).
    pub approle_mount: String,
    /// The AppRole role of the connector, and the name of its policy (default
    /// `apono-connector`).
    pub role: String,
    /// TTL of the connector's AppRole tokens (default 1 h).
    pub token_ttl: Duration,
    /// Maximum TTL of the connector's AppRole tokens (default 4 h).
    pub token_max_ttl: Duration,
    /// Unseal key shares made at initialisation (default 1).
    pub key_shares: u8,
    /// Shares needed to unseal (default 1).
    pub key_threshold: u8,
    /// Where the keys go (default the secret [`KEYS_SECRET`]).
    pub custody: KeyCustody,
    /// With [`KeyCustody::PrintOnce`], the keys printed at initialisation, for later runs.
    pub keys: Option<InitKeys>,
    /// Name of the integration secret (default [`ROLE_SECRET`]).
    pub role_secret: String,
    /// How long to wait for OpenBao to answer, and then to become active (default 5 min).
    pub wait: Duration,
    /// Only unseal a sealed vault with the custodian's keys: never initialise, configure or
    /// write anything (an uninitialised vault is left for the full run). What a watcher beside
    /// OpenBao runs after every restart, so that it never races the init Job.
    pub unseal_only: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            mount: DEFAULT_MOUNT.to_owned(),
            userpass_mount: "userpass".to_owned(),
            approle_mount: "approle".to_owned(),
            role: "apono-connector".to_owned(),
            token_ttl: Duration::from_secs(3600),
            token_max_ttl: Duration::from_secs(4 * 3600),
            key_shares: 1,
            key_threshold: 1,
            custody: KeyCustody::Secret(KEYS_SECRET.to_owned()),
            keys: None,
            role_secret: ROLE_SECRET.to_owned(),
            wait: Duration::from_secs(300),
            unseal_only: false,
        }
    }
}

/// What [`initialize`] found and did.
#[derive(Debug)]
#[non_exhaustive]
pub struct InitReport {
    /// Whether this run initialised the vault (false: it already was).
    pub initialised: bool,
    /// Whether this run unsealed the vault (false: it was not sealed).
    pub unsealed: bool,
    /// Whether this run wrote the integration secret (false: it already held a working
    /// secret id for the role).
    pub role_secret_written: bool,
    /// With [`KeyCustody::PrintOnce`] and a vault initialised by this run: the keys, to be
    /// printed once. `None` otherwise.
    pub keys: Option<InitKeys>,
}

/// Why [`initialize`] failed. Never contains a key, token or secret id.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The options are invalid.
    #[error("invalid vault-init options: {reason}")]
    Options {
        /// What is wrong.
        reason: String,
    },
    /// OpenBao refused or failed a step.
    #[error("OpenBao failed to {step}")]
    Vault {
        /// The step.
        step: &'static str,
        /// OpenBao's error.
        #[source]
        source: VaultError,
    },
    /// OpenBao did not answer, or did not become active, in time.
    #[error("OpenBao at {address} did not {what} within {waited:?}")]
    NotReady {
        /// The server.
        address: String,
        /// What it did not do.
        what: &'static str,
        /// How long we waited.
        waited: Duration,
        /// The last error, if any.
        #[source]
        source: Option<VaultError>,
    },
    /// The vault is initialised and sealed, and no keys are available to unseal it.
    #[error("OpenBao is initialised but sealed, and {reason}")]
    NoKeys {
        /// Why there are no keys.
        reason: String,
    },
    /// The keys secret exists but cannot be used.
    #[error("the keys secret {name} holds {problem}")]
    Keys {
        /// The secret's name.
        name: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The keys given do not unseal the vault.
    #[error("the unseal keys did not unseal OpenBao ({progress} of {threshold} accepted)")]
    StillSealed {
        /// Keys accepted.
        progress: u64,
        /// Keys needed.
        threshold: u64,
    },
    /// A mount exists with another type than the one needed.
    #[error("{path} is mounted as {found}, not {wanted}; it is left alone")]
    WrongMount {
        /// The mount path.
        path: String,
        /// Its type.
        found: String,
        /// The type needed.
        wanted: &'static str,
    },
    /// Reading or writing a secret in the [`InitSecretStore`] failed.
    #[error("could not {action} the secret {name}")]
    Store {
        /// `read` or `write`.
        action: &'static str,
        /// The secret.
        name: String,
        /// The store's error.
        #[source]
        source: BoxError,
    },
}

impl InitError {
    /// The kind of failure, for retry decisions.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Options { .. } | Self::WrongMount { .. } | Self::StillSealed { .. } => {
                ErrorKind::InvalidInput
            }
            Self::Vault { source, .. } => source.kind(),
            Self::NotReady { .. } => ErrorKind::Timeout,
            Self::NoKeys { .. } | Self::Keys { .. } => ErrorKind::NotFound,
            Self::Store { .. } => ErrorKind::Unavailable,
        }
    }
}

fn vault(step: &'static str) -> impl FnOnce(VaultError) -> InitError {
    move |source| InitError::Vault { step, source }
}

/// The seal status (`sys/seal-status`).
#[derive(Debug, Clone, Copy)]
struct SealStatus {
    initialized: bool,
    sealed: bool,
    threshold: u64,
    progress: u64,
}

fn seal_status_of(body: Option<&serde_json::Value>) -> Result<SealStatus, VaultError> {
    const OP: &str = "seal status";
    let body = body.ok_or(VaultError::Malformed { operation: OP })?;
    let flag = |key: &str| {
        body[key]
            .as_bool()
            .ok_or(VaultError::Malformed { operation: OP })
    };
    Ok(SealStatus {
        initialized: flag("initialized").unwrap_or(true),
        sealed: flag("sealed")?,
        threshold: body["t"].as_u64().unwrap_or(0),
        progress: body["progress"].as_u64().unwrap_or(0),
    })
}

fn get() -> Option<reqwest::Method> {
    Some(reqwest::Method::GET)
}
fn post() -> Option<reqwest::Method> {
    Some(reqwest::Method::POST)
}

async fn seal_status(client: &OpenBaoClient) -> Result<SealStatus, VaultError> {
    let body = client
        .raw_unauthenticated("seal status", get(), "sys/seal-status", None)
        .await?;
    seal_status_of(body.as_ref())
}

/// Polls `probe` every second until it gives `Some`, or fails with [`InitError::NotReady`].
async fn wait_until<T, F, Fut>(
    address: &str,
    what: &'static str,
    wait: Duration,
    mut probe: F,
) -> Result<T, InitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, VaultError>>,
{
    let start = Instant::now();
    let mut last = None;
    loop {
        match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            // Only a server that is not there yet is waited for; a refusal is an answer.
            Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Timeout) => {
                last = Some(e);
            }
            Err(e) => return Err(vault(what)(e)),
        }
        if start.elapsed() >= wait {
            return Err(InitError::NotReady {
                address: address.to_owned(),
                what,
                waited: wait,
                source: last,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn check_options(options: &InitOptions) -> Result<(), InitError> {
    let invalid = |e: VaultError| InitError::Options {
        reason: e.to_string(),
    };
    for mount in [
        &options.mount,
        &options.userpass_mount,
        &options.approle_mount,
    ] {
        check_mount(mount).map_err(invalid)?;
    }
    check_name("AppRole role", &options.role).map_err(invalid)?;
    for name in [&options.role_secret]
        .into_iter()
        .chain(match &options.custody {
            KeyCustody::Secret(name) => Some(name),
            KeyCustody::PrintOnce => None,
        })
    {
        check_name("secret name", name).map_err(invalid)?;
    }
    if options.key_threshold == 0 || options.key_threshold > options.key_shares {
        return Err(InitError::Options {
            reason: format!(
                "the key threshold ({}) must be between 1 and the key shares ({})",
                options.key_threshold, options.key_shares
            ),
        });
    }
    if options.token_ttl.is_zero() || options.token_max_ttl < options.token_ttl {
        return Err(InitError::Options {
            reason: "token TTLs must be positive, the maximum at least the TTL".into(),
        });
    }
    Ok(())
}

async fn read_secret(
    secrets: &dyn InitSecretStore,
    name: &str,
) -> Result<Option<BTreeMap<String, SecretString>>, InitError> {
    secrets.read(name).await.map_err(|source| InitError::Store {
        action: "read",
        name: name.to_owned(),
        source,
    })
}

async fn write_secret(
    secrets: &dyn InitSecretStore,
    name: &str,
    labels: &[(&str, &str)],
    data: &BTreeMap<String, SecretString>,
) -> Result<(), InitError> {
    let labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    secrets
        .write(name, &labels, data)
        .await
        .map_err(|source| InitError::Store {
            action: "write",
            name: name.to_owned(),
            source,
        })
}

/// Labels of the keys secret: it is the vault's, never the connector's to read.
const KEYS_LABELS: &[(&str, &str)] = &[("app.kubernetes.io/part-of", "apono-vault")];

fn loud_warning(name: &str) {
    warn!(
        secret = name,
        "THE UNSEAL KEYS AND ROOT TOKEN ARE STORED IN THE SECRET {name}: whoever can read it controls the vault. \
         Restrict who can read secrets in this namespace, or copy the keys somewhere offline and \
         run vault-init with --key-custody print (unsealing after a restart then needs them)"
    );
}

/// Initialises (if needed), unseals (if needed) and prepares the OpenBao server behind
/// `connection` for the `apono-vault` integration; see the [module docs](self). Idempotent.
pub async fn initialize(
    connection: &OpenBaoConnection,
    options: &InitOptions,
    secrets: &dyn InitSecretStore,
) -> Result<InitReport, InitError> {
    check_options(options)?;
    let address = connection.address().to_owned();
    let anonymous = connection.client();
    let status = wait_until(&address, "answer", options.wait, || async {
        seal_status(&anonymous).await.map(Some)
    })
    .await?;
    let mut report = InitReport {
        initialised: false,
        unsealed: false,
        role_secret_written: false,
        keys: None,
    };

    if options.unseal_only {
        if status.initialized && status.sealed {
            let keys = existing_keys(options, secrets)
                .await?
                .ok_or_else(|| InitError::NoKeys {
                    reason:
                        "the keys were printed once at initialisation; give them back (--keys-file)"
                            .into(),
                })?;
            unseal(&anonymous, &keys).await?;
            report.unsealed = true;
        }
        return Ok(report);
    }

    let keys = if status.initialized {
        info!(sealed = status.sealed, "OpenBao is initialised already");
        existing_keys(options, secrets).await?
    } else {
        let keys = init_vault(&anonymous, options, secrets).await?;
        report.initialised = true;
        if options.custody == KeyCustody::PrintOnce {
            report.keys = Some(keys.clone());
        }
        Some(keys)
    };

    // A freshly initialised vault is sealed; so is one after every restart.
    if seal_status(&anonymous)
        .await
        .map_err(vault("read the seal status"))?
        .sealed
    {
        let keys = keys.as_ref().ok_or_else(|| InitError::NoKeys {
            reason: "the keys were printed once at initialisation; give them back (--keys-file)"
                .into(),
        })?;
        unseal(&anonymous, keys).await?;
        report.unsealed = true;
    }
    wait_until(&address, "become active", options.wait, || async {
        active(&anonymous).await
    })
    .await?;

    let Some(keys) = keys else {
        return Err(InitError::Options {
            reason: "OpenBao is unsealed, but its root token was printed once at initialisation; give the keys back (--keys-file) to configure it".into(),
        });
    };
    let root = connection.client_with_token(keys.root_token.clone());
    configure(&root, options).await?;
    report.role_secret_written = write_role_secret(connection, &root, options, secrets).await?;
    info!(
        initialised = report.initialised,
        unsealed = report.unsealed,
        role_secret_written = report.role_secret_written,
        role_secret = %options.role_secret,
        "vault-init done"
    );
    Ok(report)
}

/// The keys of an initialised vault from their custodian, if it has them.
async fn existing_keys(
    options: &InitOptions,
    secrets: &dyn InitSecretStore,
) -> Result<Option<InitKeys>, InitError> {
    match &options.custody {
        KeyCustody::PrintOnce => Ok(options.keys.clone()),
        KeyCustody::Secret(name) => match read_secret(secrets, name).await? {
            Some(data) => InitKeys::from_secret_data(name, &data).map(Some),
            None => Err(InitError::NoKeys {
                reason: format!(
                    "the keys secret {name} does not exist (was the vault initialised by hand, or the secret deleted?)"
                ),
            }),
        },
    }
}

async fn init_vault(
    anonymous: &OpenBaoClient,
    options: &InitOptions,
    secrets: &dyn InitSecretStore,
) -> Result<InitKeys, InitError> {
    if let KeyCustody::Secret(name) = &options.custody {
        // Proves the custodian can take the keys before any key exists.
        let mut placeholder = BTreeMap::new();
        placeholder.insert(KEYS_STATUS.to_owned(), SecretString::from(KEYS_PLACEHOLDER));
        write_secret(secrets, name, KEYS_LABELS, &placeholder).await?;
    }
    let body = anonymous
        .raw_unauthenticated(
            "initialisation",
            post(),
            "sys/init",
            Some(json!({
                "secret_shares": options.key_shares,
                "secret_threshold": options.key_threshold,
            })),
        )
        .await
        .map_err(vault("initialise"))?
        .ok_or(VaultError::Malformed {
            operation: "initialisation",
        })
        .map_err(vault("initialise"))?;
    let malformed = || {
        vault("initialise")(VaultError::Malformed {
            operation: "initialisation",
        })
    };
    let unseal_keys = body["keys_base64"]
        .as_array()
        .ok_or_else(malformed)?
        .iter()
        .map(|k| k.as_str().map(|k| SecretString::from(k.to_owned())))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(malformed)?;
    let root_token = SecretString::from(body["root_token"].as_str().ok_or_else(malformed)?);
    let keys = InitKeys {
        unseal_keys,
        root_token,
    };
    info!(
        shares = options.key_shares,
        threshold = options.key_threshold,
        "OpenBao initialised"
    );
    if let KeyCustody::Secret(name) = &options.custody {
        write_secret(secrets, name, KEYS_LABELS, &keys.to_secret_data()).await?;
        loud_warning(name);
    }
    Ok(keys)
}

async fn unseal(anonymous: &OpenBaoClient, keys: &InitKeys) -> Result<(), InitError> {
    let mut status = None;
    for key in &keys.unseal_keys {
        let body = anonymous
            .raw_unauthenticated(
                "unseal",
                post(),
                "sys/unseal",
                Some(json!({"key": key.expose_secret()})),
            )
            .await
            .map_err(vault("unseal"))?;
        let now = seal_status_of(body.as_ref()).map_err(vault("unseal"))?;
        status = Some(now);
        if !now.sealed {
            info!("OpenBao unsealed");
            return Ok(());
        }
    }
    let status = status.unwrap_or(SealStatus {
        initialized: true,
        sealed: true,
        threshold: 0,
        progress: 0,
    });
    // Leave no partial progress behind for the next attempt to trip on.
    let _ = anonymous
        .raw_unauthenticated("unseal", post(), "sys/unseal", Some(json!({"reset": true})))
        .await;
    Err(InitError::StillSealed {
        progress: status.progress,
        threshold: status.threshold,
    })
}

/// `Some(())` once this node is initialised, unsealed and the active node (Raft has elected
/// it), `None` before.
async fn active(anonymous: &OpenBaoClient) -> Result<Option<()>, VaultError> {
    // Every state answers 200 with these codes, so the body says which it is.
    let body = anonymous
        .raw_unauthenticated(
            "health check",
            get(),
            "sys/health?uninitcode=200&sealedcode=200&standbycode=200&perfstandbyok=true",
            None,
        )
        .await?;
    let body = body.ok_or(VaultError::Malformed {
        operation: "health check",
    })?;
    let ready = body["initialized"] == true && body["sealed"] == false && body["standby"] == false;
    Ok(ready.then_some(()))
}

/// The mounts at `sys/mounts` or `sys/auth`: path (with `/`) → type.
async fn mounts(
    root: &OpenBaoClient,
    path: &str,
) -> Result<BTreeMap<String, (String, serde_json::Value)>, VaultError> {
    let body = root
        .raw("mount listing", get(), path, None)
        .await?
        .unwrap_or_default();
    let data = body.get("data").unwrap_or(&body);
    Ok(data
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| {
                    let kind = v.get("type")?.as_str()?.to_owned();
                    Some((
                        k.clone(),
                        (kind, v.get("options").cloned().unwrap_or_default()),
                    ))
                })
                .collect()
        })
        .unwrap_or_default())
}

async fn configure(root: &OpenBaoClient, options: &InitOptions) -> Result<(), InitError> {
    // kv-v2 at the integration's mount.
    let engines = mounts(root, "sys/mounts")
        .await
        .map_err(vault("list the secrets engines"))?;
    match engines.get(&format!("{}/", options.mount)) {
        None => {
            root.raw(
                "secrets engine enable",
                post(),
                &format!("sys/mounts/{}", options.mount),
                Some(json!({"type": "kv", "options": {"version": "2"}})),
            )
            .await
            .map_err(vault("enable the kv-v2 secrets engine"))?;
            info!(mount = %options.mount, "kv-v2 enabled");
        }
        Some((kind, opts)) => {
            let version = opts.get("version").and_then(serde_json::Value::as_str);
            if kind != "kv" || version != Some("2") {
                return Err(InitError::WrongMount {
                    path: options.mount.clone(),
                    found: format!("{kind} (version {})", version.unwrap_or("1")),
                    wanted: "kv version 2",
                });
            }
        }
    }
    // userpass (grantees) and approle (the connector).
    let auths = mounts(root, "sys/auth")
        .await
        .map_err(vault("list the auth methods"))?;
    for (mount, kind) in [
        (&options.userpass_mount, "userpass"),
        (&options.approle_mount, "approle"),
    ] {
        match auths.get(&format!("{mount}/")) {
            None => {
                root.raw(
                    "auth method enable",
                    post(),
                    &format!("sys/auth/{mount}"),
                    Some(json!({"type": kind})),
                )
                .await
                .map_err(vault("enable an auth method"))?;
                info!(mount = %mount, kind, "auth method enabled");
            }
            Some((found, _)) if found != kind => {
                return Err(InitError::WrongMount {
                    path: format!("auth/{mount}"),
                    found: found.clone(),
                    wanted: kind,
                });
            }
            Some(_) => {}
        }
    }
    install_policies(root, &options.mount, &options.userpass_mount, &options.role)
        .await
        .map_err(vault("write the policies"))?;
    root.raw(
        "AppRole role write",
        post(),
        &format!("auth/{}/role/{}", options.approle_mount, options.role),
        Some(json!({
            "token_policies": [options.role],
            "token_ttl": options.token_ttl.as_secs(),
            "token_max_ttl": options.token_max_ttl.as_secs(),
            "token_type": "service",
            "secret_id_ttl": 0,
            "secret_id_num_uses": 0,
        })),
    )
    .await
    .map_err(vault("write the AppRole role"))?;
    Ok(())
}

/// Writes the integration secret unless it already holds the role's id and a secret id that
/// logs in. Returns whether it wrote.
async fn write_role_secret(
    connection: &OpenBaoConnection,
    root: &OpenBaoClient,
    options: &InitOptions,
    secrets: &dyn InitSecretStore,
) -> Result<bool, InitError> {
    let role_path = format!("auth/{}/role/{}", options.approle_mount, options.role);
    let malformed = || {
        vault("read the role id")(VaultError::Malformed {
            operation: "AppRole role id read",
        })
    };
    let role_id = root
        .raw(
            "AppRole role id read",
            get(),
            &format!("{role_path}/role-id"),
            None,
        )
        .await
        .map_err(vault("read the role id"))?
        .and_then(|b| b["data"]["role_id"].as_str().map(str::to_owned))
        .ok_or_else(malformed)?;
    let role_id = SecretString::from(role_id);

    if let Some(existing) = read_secret(secrets, &options.role_secret).await?
        && let (Some(id), Some(secret_id)) = (existing.get(ROLE_ID), existing.get(SECRET_ID))
        && id.expose_secret() == role_id.expose_secret()
    {
        let mut probe = connection.client();
        match probe
            .login_approle(&options.approle_mount, &role_id, secret_id)
            .await
        {
            Ok(_) => {
                let _ = probe.revoke_self().await;
                info!(secret = %options.role_secret, "the integration secret works; left as it is");
                return Ok(false);
            }
            Err(e) if e.is_permission_denied() => {
                info!(secret = %options.role_secret, "the integration secret's secret id no longer logs in; writing a new one");
            }
            Err(e) => return Err(vault("check the integration secret")(e)),
        }
    }
    let secret_id = root
        .raw(
            "AppRole secret id create",
            post(),
            &format!("{role_path}/secret-id"),
            Some(json!({})),
        )
        .await
        .map_err(vault("create a secret id"))?
        .and_then(|b| b["data"]["secret_id"].as_str().map(str::to_owned))
        .ok_or_else(|| {
            vault("create a secret id")(VaultError::Malformed {
                operation: "AppRole secret id create",
            })
        })?;
    let mut data = BTreeMap::new();
    data.insert(ROLE_ID.to_owned(), role_id);
    data.insert(SECRET_ID.to_owned(), SecretString::from(secret_id));
    write_secret(
        secrets,
        &options.role_secret,
        &[
            (READ_LABEL, "true"),
            ("app.kubernetes.io/part-of", "apono-vault"),
        ],
        &data,
    )
    .await?;
    info!(secret = %options.role_secret, "integration secret written");
    Ok(true)
}

#[cfg(feature = "kubernetes")]
mod kubernetes;
#[cfg(feature = "kubernetes")]
pub use kubernetes::KubernetesSecrets;
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
pub use cli::{CliError, CustodyArg, VaultInitArgs, run_cli};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_never_show_in_debug() {
        let keys = InitKeys {
            unseal_keys: vec![SecretString::from("k0"), SecretString::from("k1")],
            root_token: SecretString::from("s.root"),
        };
        assert!(!format!("{keys:?}").contains("s.root"));
        let back = InitKeys::from_json(keys.to_json().expose_secret()).unwrap();
        assert_eq!(back.unseal_keys.len(), 2);
        assert_eq!(back.root_token.expose_secret(), "s.root");
        let data = keys.to_secret_data();
        let back = InitKeys::from_secret_data("k", &data).unwrap();
        assert_eq!(back.unseal_keys[1].expose_secret(), "k1");
        let mut placeholder = BTreeMap::new();
        placeholder.insert(KEYS_STATUS.to_owned(), SecretString::from(KEYS_PLACEHOLDER));
        let err = InitKeys::from_secret_data("k", &placeholder).unwrap_err();
        assert!(err.to_string().contains("placeholder"), "{err}");
        assert!(InitKeys::from_json("{}").is_err());
    }

    #[test]
    fn options_are_checked() {
        assert!(check_options(&InitOptions::default()).is_ok());
        let bad = [
            InitOptions {
                key_threshold: 3,
                key_shares: 2,
                ..InitOptions::default()
            },
            InitOptions {
                mount: "a/b".into(),
                ..InitOptions::default()
            },
            InitOptions {
                role_secret: "Bad Name".into(),
                ..InitOptions::default()
            },
        ];
        for options in bad {
            assert_eq!(
                check_options(&options).unwrap_err().kind(),
                ErrorKind::InvalidInput
            );
        }
    }
}
