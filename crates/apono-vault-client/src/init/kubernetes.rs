//! [`KubernetesSecrets`]: the [`InitSecretStore`] of the `apono-vault` chart's init Job.

use std::collections::BTreeMap;
use std::fmt;

use apono_core::{BoxError, async_trait};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use secrecy::{ExposeSecret, SecretString};

use super::{InitError, InitSecretStore};

/// Secrets of one Kubernetes namespace, through the API server (`get`, `create`, `update`).
///
/// Writing replaces the whole secret (labels and data) with an optimistic-concurrency check
/// on its `resourceVersion`. Errors carry the API server's status reason, never a secret's
/// content.
pub struct KubernetesSecrets {
    api: kube::Api<Secret>,
    namespace: String,
}

impl fmt::Debug for KubernetesSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesSecrets")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn options(reason: impl Into<String>) -> InitError {
    InitError::Options {
        reason: reason.into(),
    }
}

impl KubernetesSecrets {
    /// What `kubectl` would use (`$KUBECONFIG`, `~/.kube/config`, else the pod's service
    /// account), in `namespace` (`None`: the configuration's namespace, the pod's own in a
    /// cluster). Reads the environment and those files.
    pub async fn infer(namespace: Option<&str>) -> Result<Self, InitError> {
        let config = kube::Config::infer()
            .await
            .map_err(|_| options("no kubeconfig and no in-cluster service account was found"))?;
        Self::from_config(config, namespace)
    }

    /// An API server at `cluster_url` with a bearer `token`, in `namespace`. Reads nothing.
    pub fn with_token(
        cluster_url: &str,
        token: SecretString,
        namespace: &str,
    ) -> Result<Self, InitError> {
        let uri = cluster_url
            .parse()
            .map_err(|_| options(format!("cluster URL {cluster_url} is not a URL")))?;
        let mut config = kube::Config::new(uri);
        config.auth_info.token = Some(token);
        Self::from_config(config, Some(namespace))
    }

    fn from_config(config: kube::Config, namespace: Option<&str>) -> Result<Self, InitError> {
        let namespace = namespace
            .map(str::to_owned)
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config)
            .map_err(|e| options(format!("the Kubernetes client could not be built: {e}")))?;
        Ok(Self {
            api: kube::Api::namespaced(client, &namespace),
            namespace,
        })
    }

    /// The namespace written to.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn describe(&self, name: &str, error: kube::Error) -> BoxError {
        match error {
            kube::Error::Api(status) => format!(
                "the API server answered {} {} for secret {}/{name}",
                status.code, status.reason, self.namespace
            )
            .into(),
            // Transport and decoding errors carry no secret data.
            other => apono_core::error_chain(&other).into(),
        }
    }
}

#[async_trait]
impl InitSecretStore for KubernetesSecrets {
    async fn read(&self, name: &str) -> Result<Option<BTreeMap<String, SecretString>>, BoxError> {
        let secret = self
            .api
            .get_opt(name)
            .await
            .map_err(|e| self.describe(name, e))?;
        Ok(secret.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        SecretString::from(String::from_utf8_lossy(&v.0).into_owned()),
                    )
                })
                .collect()
        }))
    }

    async fn write(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        data: &BTreeMap<String, SecretString>,
    ) -> Result<(), BoxError> {
        let current = self
            .api
            .get_opt(name)
            .await
            .map_err(|e| self.describe(name, e))?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels.clone()),
                resource_version: current
                    .as_ref()
                    .and_then(|c| c.metadata.resource_version.clone()),
                ..ObjectMeta::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.clone(), ByteString(v.expose_secret().as_bytes().to_vec())))
                    .collect(),
            ),
            type_: Some("Opaque".to_owned()),
            ..Secret::default()
        };
        let params = PostParams::default();
        let result = match current {
            Some(_) => self.api.replace(name, &params, &secret).await,
            None => self.api.create(&params, &secret).await,
        };
        result.map(|_| ()).map_err(|e| self.describe(name, e))
    }
}
