//! Kubernetes secrets, behind the `kubernetes` feature.
//!
//! See the store type for the protocol, credentials and an example.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use apono_core::{
    SecretError, SecretStore, SecretStoreKind, SecretStoreRef, SecretValue, error_chain,
};
use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use secrecy::SecretString;
use zeroize::Zeroize;

use crate::backend_error::source;

/// The label a secret must carry for the connector to read it: `apono-connector-read`.
pub const KUBERNETES_READ_LABEL: &str = "apono-connector-read";
/// The value [`KUBERNETES_READ_LABEL`] must have: `true`.
pub const KUBERNETES_READ_LABEL_VALUE: &str = "true";

const STORE: &str = "kubernetes";

fn config(reason: impl Into<String>) -> SecretError {
    SecretError::Config {
        store: STORE.into(),
        reason: reason.into(),
        source: None,
    }
}

/// Builds a [`KubernetesStore`]: where the API server is and how to authenticate (one of the
/// constructors on [`KubernetesStore`]), the allow-list and the timeout.
pub struct KubernetesStoreBuilder {
    config: kube::Config,
    allowed: Option<BTreeSet<String>>,
    timeout: Duration,
}

impl fmt::Debug for KubernetesStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesStoreBuilder")
            .field("cluster_url", &self.config.cluster_url.to_string())
            .field("allowed", &self.allowed)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl KubernetesStoreBuilder {
    fn new(config: kube::Config) -> Self {
        Self {
            config,
            allowed: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// Restricts reads to these secrets (the Helm chart's `allowedSecretsToRead`): entries are
    /// `namespace/name`, or a bare `name` for a secret in the default namespace (the pod's own
    /// namespace in-cluster, the context's namespace with a kubeconfig). Without this call every
    /// labelled secret the service account may `get` is readable.
    pub fn allowed_secrets<I, S>(mut self, entries: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let namespace = self.config.default_namespace.clone();
        self.allowed = Some(
            entries
                .into_iter()
                .map(|e| e.as_ref().trim().to_owned())
                .filter(|e| !e.is_empty())
                .map(|e| {
                    if e.contains('/') {
                        e
                    } else {
                        format!("{namespace}/{e}")
                    }
                })
                .collect(),
        );
        self
    }

    /// Deadline of each read (default 30 seconds); exceeding it is [`SecretError::Timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Trusts this CA certificate (PEM) for the API server, in addition to the configured
    /// ones.
    pub fn add_root_certificate_pem(mut self, pem: &[u8]) -> Result<Self, SecretError> {
        let text =
            std::str::from_utf8(pem).map_err(|_| config("the root certificate is not PEM text"))?;
        let mut ders = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
            let body_start = start + "-----BEGIN CERTIFICATE-----".len();
            let end = rest[body_start..]
                .find("-----END CERTIFICATE-----")
                .ok_or_else(|| config("the root certificate PEM is truncated"))?;
            let body: String = rest[body_start..body_start + end]
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            ders.push(
                data_encoding::BASE64
                    .decode(body.as_bytes())
                    .map_err(|_| config("the root certificate PEM is not base64"))?,
            );
            rest = &rest[body_start + end..];
        }
        if ders.is_empty() {
            return Err(config("no certificate in the root certificate PEM"));
        }
        self.config
            .root_cert
            .get_or_insert_with(Vec::new)
            .extend(ders);
        Ok(self)
    }

    /// Builds the store (no request is made yet).
    pub fn build(mut self) -> Result<KubernetesStore, SecretError> {
        // kube 5 retries 429/503/504 by default (up to 15 times, honouring `Retry-After`), which
        // would turn an overloaded API server into our `Timeout`. One read per call: the
        // caller's scheduler retries `Unavailable`.
        self.config.default_retry = false;
        let cluster_url = self.config.cluster_url.to_string();
        let client = kube::Client::try_from(self.config).map_err(|e| SecretError::Config {
            store: STORE.into(),
            reason: format!("cannot build a client for {cluster_url}"),
            source: source(error_chain(&e)),
        })?;
        Ok(KubernetesStore {
            client,
            cluster_url,
            allowed: self.allowed,
            timeout: self.timeout,
        })
    }
}

/// Kubernetes secrets, behind the `kubernetes` feature.
///
/// A [`SecretStoreRef::Kubernetes`] `{namespace, name}` is read with
/// `GET /api/v1/namespaces/{namespace}/secrets/{name}`; the secret's `data` keys, base64-decoded
/// (and UTF-8), become the fields.
///
/// The connector reads only the secrets an operator marked for it, as Apono's Helm chart
/// promises: the secret must carry the label `apono-connector-read=true`
/// ([`KUBERNETES_READ_LABEL`]), and when an allow-list is configured (the chart's
/// `allowedSecretsToRead`, see [`KubernetesStoreBuilder::allowed_secrets`]) it must be on it.
/// Otherwise the read fails with [`SecretError::PermissionDenied`] naming the rule; a secret
/// outside the allow-list is not even fetched.
///
/// This crate does not choose the Kubernetes API version of `k8s-openapi`: the application
/// does, by enabling one version feature of `k8s-openapi` in its own manifest (see the
/// `k8s-openapi` documentation; commands that build no binary, such as `cargo doc`, can set
/// `K8S_OPENAPI_ENABLED_VERSION`).
///
/// # Example
///
/// ```no_run
/// use apono_core::{SecretStore, SecretStoreRef};
/// use apono_secrets::KubernetesStore;
/// # async fn run() -> Result<(), apono_core::SecretError> {
/// // The pod's service account (reads KUBERNETES_SERVICE_HOST/PORT and the mounted token).
/// let store = KubernetesStore::in_cluster()?
///     // The Helm chart's allowedSecretsToRead.
///     .allowed_secrets(["apono/postgres-admin", "ssh-admin"])
///     .build()?;
/// let reference = SecretStoreRef::Kubernetes {
///     namespace: "apono".into(),
///     name: "postgres-admin".into(),
/// };
/// let value = store.get(&reference).await?;
/// # Ok(())
/// # }
/// ```
pub struct KubernetesStore {
    client: kube::Client,
    cluster_url: String,
    allowed: Option<BTreeSet<String>>,
    timeout: Duration,
}

impl fmt::Debug for KubernetesStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesStore")
            .field("cluster_url", &self.cluster_url)
            .field("allowed", &self.allowed)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl KubernetesStore {
    /// The pod's service account: reads `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`
    /// and the token, CA and namespace mounted under
    /// `/var/run/secrets/kubernetes.io/serviceaccount/`.
    pub fn in_cluster() -> Result<KubernetesStoreBuilder, SecretError> {
        let config = kube::Config::incluster().map_err(|e| SecretError::Config {
            store: STORE.into(),
            reason: "not running in a cluster, or the service account is not mounted".into(),
            source: source(e.to_string()),
        })?;
        Ok(KubernetesStoreBuilder::new(config))
    }

    /// A kubeconfig file (read now), with its current context or `context`.
    pub async fn from_kubeconfig_file(
        path: impl AsRef<Path>,
        context: Option<&str>,
    ) -> Result<KubernetesStoreBuilder, SecretError> {
        let path = path.as_ref();
        // Kubeconfig errors can quote the file, which holds credentials: none is attached.
        let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|_| {
            config(format!(
                "cannot read or parse the kubeconfig {}",
                path.display()
            ))
        })?;
        let options = kube::config::KubeConfigOptions {
            context: context.map(str::to_owned),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|_| {
                config(format!(
                    "the kubeconfig {} has no usable context, cluster or user",
                    path.display()
                ))
            })?;
        Ok(KubernetesStoreBuilder::new(config))
    }

    /// What `kubectl` would use: `$KUBECONFIG` or `~/.kube/config`, else the in-cluster
    /// service account. Reads the environment and those files.
    pub async fn infer() -> Result<KubernetesStoreBuilder, SecretError> {
        let config = kube::Config::infer()
            .await
            .map_err(|_| config("no kubeconfig and no in-cluster service account was found"))?;
        Ok(KubernetesStoreBuilder::new(config))
    }

    /// An API server at `cluster_url` with a bearer `token` (a service account token), and
    /// `default_namespace` for bare allow-list entries. Reads nothing.
    pub fn with_token(
        cluster_url: &str,
        token: SecretString,
        default_namespace: &str,
    ) -> Result<KubernetesStoreBuilder, SecretError> {
        let uri = cluster_url
            .parse()
            .map_err(|_| config(format!("cluster URL {cluster_url} is not a URL")))?;
        let mut config = kube::Config::new(uri);
        config.default_namespace = default_namespace.to_owned();
        config.auth_info.token = Some(token);
        Ok(KubernetesStoreBuilder::new(config))
    }

    async fn fetch(
        &self,
        namespace: &str,
        name: &str,
        reference: &str,
    ) -> Result<Secret, SecretError> {
        let api: kube::Api<Secret> = kube::Api::namespaced(self.client.clone(), namespace);
        match tokio::time::timeout(self.timeout, api.get(name)).await {
            Err(_elapsed) => Err(SecretError::Timeout {
                reference: reference.to_owned(),
            }),
            Ok(Ok(secret)) => Ok(secret),
            Ok(Err(kube::Error::Api(status))) => {
                let description = format!(
                    "HTTP {} {}: {}",
                    status.code,
                    status.reason,
                    short(&status.message)
                );
                Err(match status.code {
                    404 => SecretError::NotFound {
                        reference: reference.to_owned(),
                        source: source(description),
                    },
                    401 => SecretError::PermissionDenied {
                        reference: reference.to_owned(),
                        reason: "the API server rejected the credentials".into(),
                        source: source(description),
                    },
                    403 => SecretError::PermissionDenied {
                        reference: reference.to_owned(),
                        reason: "RBAC does not let the service account get this secret".into(),
                        source: source(description),
                    },
                    _ => SecretError::Unavailable {
                        store: format!("{STORE} {}", self.cluster_url),
                        source: source(description),
                    },
                })
            }
            // The body did not decode as a Secret: serde's message could quote it.
            Ok(Err(kube::Error::SerdeError(_))) => Err(SecretError::Malformed {
                reason: "the API server's answer is not a valid Secret".into(),
            }),
            Ok(Err(e)) => Err(SecretError::Unavailable {
                store: format!("{STORE} {}", self.cluster_url),
                source: source(error_chain(&e)),
            }),
        }
    }
}

/// A server-written message, trimmed to a length fit for an error chain.
fn short(message: &str) -> String {
    const MAX: usize = 300;
    let mut text: String = message.chars().take(MAX).collect();
    if message.chars().count() > MAX {
        text.push('…');
    }
    text
}

#[async_trait]
impl SecretStore for KubernetesStore {
    fn kind(&self) -> SecretStoreKind {
        SecretStoreKind::Kubernetes
    }

    #[tracing::instrument(skip_all, fields(store = "kubernetes", reference = %reference))]
    async fn get(&self, reference: &SecretStoreRef) -> Result<SecretValue, SecretError> {
        let SecretStoreRef::Kubernetes { namespace, name } = reference else {
            return Err(SecretError::NotConfigured {
                kind: reference.kind(),
            });
        };
        let shown = reference.to_string();
        if let Some(allowed) = &self.allowed
            && !allowed.contains(&format!("{namespace}/{name}"))
        {
            tracing::debug!("refused: not on the allow-list");
            return Err(SecretError::PermissionDenied {
                reference: shown,
                reason: format!(
                    "{namespace}/{name} is not in the connector's allow-list (allowedSecretsToRead)"
                ),
                source: None,
            });
        }
        let mut secret = self.fetch(namespace, name, &shown).await?;
        let labelled = secret
            .metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(KUBERNETES_READ_LABEL))
            .is_some_and(|v| v == KUBERNETES_READ_LABEL_VALUE);
        let mut data = secret.data.take().unwrap_or_default();
        if !labelled {
            for bytes in data.values_mut() {
                bytes.0.zeroize();
            }
            tracing::debug!("refused: the read label is missing");
            return Err(SecretError::PermissionDenied {
                reference: shown,
                reason: format!(
                    "the secret does not carry the label {KUBERNETES_READ_LABEL}={KUBERNETES_READ_LABEL_VALUE}"
                ),
                source: None,
            });
        }
        let mut value = SecretValue::new();
        let mut failure = None;
        for (key, mut bytes) in data {
            match String::from_utf8(std::mem::take(&mut bytes.0)) {
                Ok(text) => value.insert(key, SecretString::from(text)),
                Err(e) => {
                    e.into_bytes().zeroize();
                    failure.get_or_insert(key);
                }
            }
        }
        if let Some(key) = failure {
            return Err(SecretError::Malformed {
                reason: format!("key `{key}` is not UTF-8 text"),
            });
        }
        tracing::debug!(keys = value.len(), "secret read");
        Ok(value)
    }
}
