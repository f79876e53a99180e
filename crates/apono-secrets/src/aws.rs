//! `aws`: AWS Secrets Manager.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use apono_core::{SecretError, SecretStore, SecretStoreKind, SecretStoreRef, SecretValue};
use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::{
    BehaviorVersion, Credentials, Region, SharedCredentialsProvider,
};
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use secrecy::{ExposeSecret, SecretString};
use tracing::{debug, instrument};

use crate::backend_error;

/// The tag a secret must carry before the connector reads it (with [`READ_TAG_VALUE`]).
pub const READ_TAG_KEY: &str = "apono-connector-read";
/// The value of [`READ_TAG_KEY`] that allows the connector to read a secret.
pub const READ_TAG_VALUE: &str = "true";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// Serves [`SecretStoreRef::Aws`] references from AWS Secrets Manager.
///
/// The secret's `SecretString` (or, failing that, its `SecretBinary`) must hold a JSON object;
/// its fields become the [`SecretValue`]. The reference's `region` picks the regional
/// endpoint and `secret_id` is the secret's name or ARN.
///
/// **Read-guard.** Before reading a value the store calls `DescribeSecret` and refuses, with
/// [`SecretError::PermissionDenied`], any secret without the tag
/// `apono-connector-read=true` — the same rule Apono's connector policy enforces. The
/// connector's role therefore needs `secretsmanager:DescribeSecret` as well as
/// `secretsmanager:GetSecretValue`. Where IAM already enforces the tag (a policy condition on
/// `secretsmanager:ResourceTag/apono-connector-read`), the extra call can be switched off with
/// [`AwsSecretsManagerStoreBuilder::require_read_tag`].
///
/// Each read is bounded by a timeout (15 s unless [`AwsSecretsManagerStoreBuilder::timeout`]
/// says otherwise), after which it fails with [`SecretError::Timeout`].
pub struct AwsSecretsManagerStore {
    base: aws_sdk_secretsmanager::config::Builder,
    endpoint_url: Option<String>,
    require_read_tag: bool,
    timeout: Duration,
    clients: Mutex<HashMap<String, Client>>,
}

/// Builds an [`AwsSecretsManagerStore`].
///
/// Start from [`AwsSecretsManagerStore::from_env`] (the standard AWS credential chain) or from
/// [`AwsSecretsManagerStore::builder`] with explicit [static
/// credentials](AwsSecretsManagerStoreBuilder::static_credentials).
pub struct AwsSecretsManagerStoreBuilder {
    base: aws_sdk_secretsmanager::config::Builder,
    has_credentials: bool,
    endpoint_url: Option<String>,
    require_read_tag: bool,
    timeout: Duration,
}

impl AwsSecretsManagerStore {
    /// A builder with no credentials: set them with
    /// [`AwsSecretsManagerStoreBuilder::static_credentials`]. Reads nothing from the
    /// environment.
    pub fn builder() -> AwsSecretsManagerStoreBuilder {
        AwsSecretsManagerStoreBuilder {
            base: aws_sdk_secretsmanager::config::Builder::new()
                .behavior_version(BehaviorVersion::latest()),
            has_credentials: false,
            endpoint_url: None,
            require_read_tag: true,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A builder configured the way the AWS CLI is: credentials from the standard chain
    /// (`AWS_ACCESS_KEY_ID`…, `AWS_PROFILE` and `~/.aws`, web identity for EKS, ECS and EC2
    /// metadata) and `AWS_ENDPOINT_URL` if set. This is the one place this backend reads the
    /// environment; call it explicitly.
    pub async fn from_env() -> AwsSecretsManagerStoreBuilder {
        let sdk_config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        AwsSecretsManagerStoreBuilder {
            base: aws_sdk_secretsmanager::config::Builder::from(&sdk_config),
            has_credentials: sdk_config.credentials_provider().is_some(),
            endpoint_url: None,
            require_read_tag: true,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    fn client(&self, region: &str) -> Client {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        clients
            .entry(region.to_owned())
            .or_insert_with(|| {
                let mut config = self.base.clone().region(Region::new(region.to_owned()));
                if let Some(url) = &self.endpoint_url {
                    config = config.endpoint_url(url.clone());
                }
                Client::from_conf(config.build())
            })
            .clone()
    }

    async fn read(
        &self,
        region: &str,
        secret_id: &str,
        shown: &str,
    ) -> Result<SecretValue, SecretError> {
        let client = self.client(region);
        if self.require_read_tag {
            let described = client
                .describe_secret()
                .secret_id(secret_id)
                .send()
                .await
                .map_err(|e| classify(e, shown, region))?;
            let tagged = described.tags().iter().any(|tag| {
                tag.key() == Some(READ_TAG_KEY)
                    && tag
                        .value()
                        .is_some_and(|v| v.eq_ignore_ascii_case(READ_TAG_VALUE))
            });
            if !tagged {
                return Err(SecretError::PermissionDenied {
                    reference: shown.to_owned(),
                    reason: format!(
                        "the secret lacks the tag `{READ_TAG_KEY}={READ_TAG_VALUE}` that allows \
                         the connector to read it"
                    ),
                    source: None,
                });
            }
        }
        let output = client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| classify(e, shown, region))?;
        if let Some(text) = output.secret_string() {
            SecretValue::from_json(text.as_bytes())
        } else if let Some(blob) = output.secret_binary() {
            SecretValue::from_json(blob.as_ref())
        } else {
            Err(SecretError::Malformed {
                reason: "the secret has neither a SecretString nor a SecretBinary".into(),
            })
        }
    }
}

impl fmt::Debug for AwsSecretsManagerStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSecretsManagerStore")
            .field("endpoint_url", &self.endpoint_url)
            .field("require_read_tag", &self.require_read_tag)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SecretStore for AwsSecretsManagerStore {
    fn kind(&self) -> SecretStoreKind {
        SecretStoreKind::Aws
    }

    #[instrument(skip_all, fields(store = "aws", region, secret_id))]
    async fn get(&self, reference: &SecretStoreRef) -> Result<SecretValue, SecretError> {
        let SecretStoreRef::Aws { region, secret_id } = reference else {
            return Err(SecretError::NotConfigured {
                kind: reference.kind(),
            });
        };
        let span = tracing::Span::current();
        span.record("region", region.as_str());
        span.record("secret_id", secret_id.as_str());
        let shown = reference.to_string();
        match tokio::time::timeout(self.timeout, self.read(region, secret_id, &shown)).await {
            Ok(Ok(value)) => {
                debug!(keys = value.len(), "read aws secret");
                Ok(value)
            }
            Ok(Err(e)) => {
                debug!(kind = %e.kind(), "reading aws secret failed");
                Err(e)
            }
            Err(_) => Err(SecretError::Timeout { reference: shown }),
        }
    }
}

impl AwsSecretsManagerStoreBuilder {
    /// Uses these credentials instead of the standard chain. The secret access key is a
    /// [`SecretString`].
    pub fn static_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: SecretString,
        session_token: Option<SecretString>,
    ) -> Self {
        let credentials = Credentials::new(
            access_key_id,
            secret_access_key.expose_secret(),
            session_token.map(|t| t.expose_secret().to_owned()),
            None,
            "apono-secrets-static",
        );
        self.base = self
            .base
            .credentials_provider(SharedCredentialsProvider::new(credentials));
        self.has_credentials = true;
        self
    }

    /// Sends every request to `url` instead of the regional AWS endpoint (a VPC endpoint, a
    /// proxy, or a test server such as moto).
    pub fn endpoint_url(mut self, url: impl Into<String>) -> Self {
        self.endpoint_url = Some(url.into());
        self
    }

    /// Whether to refuse secrets without the tag `apono-connector-read=true` (default
    /// `true`). Turn it off only where IAM already enforces the tag.
    pub fn require_read_tag(mut self, require: bool) -> Self {
        self.require_read_tag = require;
        self
    }

    /// The longest one read may take, retries included (default 15 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The store. Fails with [`SecretError::Config`] when no credentials are configured.
    pub fn build(self) -> Result<AwsSecretsManagerStore, SecretError> {
        if !self.has_credentials {
            return Err(SecretError::Config {
                store: "aws secrets manager".into(),
                reason: "no AWS credentials: use from_env() or static_credentials()".into(),
                source: None,
            });
        }
        if self.require_read_tag {
            debug!("aws store refuses secrets without the apono-connector-read=true tag");
        } else {
            tracing::info!("aws store read-guard disabled: IAM is trusted to enforce the tag");
        }
        Ok(AwsSecretsManagerStore {
            base: self.base,
            endpoint_url: self.endpoint_url,
            require_read_tag: self.require_read_tag,
            timeout: self.timeout,
            clients: Mutex::new(HashMap::new()),
        })
    }
}

impl fmt::Debug for AwsSecretsManagerStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsSecretsManagerStoreBuilder")
            .field("has_credentials", &self.has_credentials)
            .field("endpoint_url", &self.endpoint_url)
            .field("require_read_tag", &self.require_read_tag)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Classifies an SDK error. The SDK error itself is never attached: a `ResponseError` carries
/// the raw response, which for `GetSecretValue` is the secret. Service errors are reduced to
/// their code and message, transport errors to their cause chain.
fn classify<E, R>(error: SdkError<E, R>, reference: &str, region: &str) -> SecretError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: fmt::Debug,
{
    let store = format!("aws secrets manager in {region}");
    match &error {
        SdkError::ServiceError(_) => {
            let code = error.code().unwrap_or("unknown").to_owned();
            let message = error.message().unwrap_or("").to_owned();
            let described = backend_error::source(format!("aws error {code}: {message}"));
            match code.as_str() {
                "ResourceNotFoundException" => SecretError::NotFound {
                    reference: reference.to_owned(),
                    source: described,
                },
                "InvalidRequestException" if message.contains("delet") => SecretError::NotFound {
                    reference: reference.to_owned(),
                    source: described,
                },
                "AccessDeniedException"
                | "AccessDenied"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "ExpiredTokenException"
                | "DecryptionFailure" => SecretError::PermissionDenied {
                    reference: reference.to_owned(),
                    reason: format!("aws refused the request ({code})"),
                    source: described,
                },
                "InternalServiceError"
                | "InternalFailure"
                | "ServiceUnavailable"
                | "ThrottlingException"
                | "RequestTimeout" => SecretError::Unavailable {
                    store,
                    source: described,
                },
                _ => SecretError::Config {
                    store,
                    reason: format!("aws rejected the request ({code})"),
                    source: described,
                },
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => SecretError::Unavailable {
            store,
            source: backend_error::source(DisplayErrorContext(&error).to_string()),
        },
        SdkError::ResponseError(_) => SecretError::Unavailable {
            store,
            source: backend_error::source("aws sent a response that could not be parsed"),
        },
        SdkError::ConstructionFailure(_) => SecretError::Config {
            store,
            reason: "the request could not be built".into(),
            source: backend_error::source(DisplayErrorContext(&error).to_string()),
        },
        _ => SecretError::Unavailable {
            store,
            source: backend_error::source("unclassified aws sdk failure"),
        },
    }
}
