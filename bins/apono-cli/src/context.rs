//! Where the CLI finds its connector, token and private files: the environment
//! (`APONO_URL`, `APONO_TOKEN`, `XDG_CONFIG_HOME`, `XDG_CACHE_HOME`, `HOME`) and the profile
//! file. The library never reads the environment; this module does, once.

use std::path::PathBuf;

use apono_client::{Client, ClientError, KeyCache, Profile, Profiles};
use secrecy::SecretString;

/// An error whose message already says what to do; exits with status 2 when `usage`.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) usage: bool,
    pub(crate) source: Option<ClientError>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The message already says what the client error says; the chain goes on from its
        // cause, so `--verbose` shows each fact once.
        self.source
            .as_ref()
            .and_then(|e| std::error::Error::source(e))
    }
}

/// A failure of the command line's use (exit status 2).
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    Failure {
        message: message.into(),
        usage: true,
        source: None,
    }
    .into()
}

/// A plain failure (exit status 1).
pub(crate) fn fail(message: impl Into<String>) -> anyhow::Error {
    Failure {
        message: message.into(),
        usage: false,
        source: None,
    }
    .into()
}

/// Turns a client error into one line saying what went wrong and what to do.
pub(crate) fn explain(e: ClientError) -> anyhow::Error {
    let (message, usage) = match &e {
        ClientError::Unreachable { url, .. } => (
            format!(
                "connector at {url} unreachable: check that it is running and the URL (apono profiles list)"
            ),
            false,
        ),
        ClientError::Timeout { url } => (
            format!("connector at {url} did not answer in time: try again later"),
            false,
        ),
        ClientError::Unauthenticated => (
            "the connector refused the personal token (unknown, revoked or expired): \
             run apono login --url URL --personal-token TOKEN with a new token"
                .to_owned(),
            false,
        ),
        ClientError::NoActiveSession { integration, .. } => (
            format!(
                "{e}: request access with apono requests create -i {integration} -t management -r MOUNT -p ReadWrite"
            ),
            false,
        ),
        ClientError::CredentialsShown { session_id } => (
            format!("{e}: run apono access reset-credentials {session_id}, then try again"),
            false,
        ),
        ClientError::SecretExists { .. } => (format!("{e}: use apono vault update"), false),
        ClientError::SecretNotFound { .. } => (
            format!("{e}: see apono vault list, or create it with apono vault create"),
            false,
        ),
        ClientError::VaultDenied { .. } => (
            format!("{e}: request a broader permission with apono requests create"),
            false,
        ),
        ClientError::InsecureUrl { .. } => (
            format!("{e} (apono login --allow-insecure-http; prefer https with --ca-cert FILE)"),
            true,
        ),
        ClientError::InvalidUrl { .. } | ClientError::Usage(_) => (e.to_string(), true),
        _ => (e.to_string(), false),
    };
    Failure {
        message,
        usage,
        source: Some(e),
    }
    .into()
}

/// Extension to turn `Result<T, ClientError>` into `anyhow::Result<T>` with [`explain`].
pub(crate) trait Explain<T> {
    fn explained(self) -> anyhow::Result<T>;
}

impl<T> Explain<T> for Result<T, ClientError> {
    fn explained(self) -> anyhow::Result<T> {
        self.map_err(explain)
    }
}

/// The command's surroundings.
#[derive(Debug)]
pub(crate) struct Context {
    /// `--profile`.
    pub(crate) profile: Option<String>,
    /// `--verbose`.
    pub(crate) verbose: bool,
}

fn env_dir(var: &str, fallback: &str) -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(var).map(PathBuf::from)
        && dir.is_absolute()
    {
        return Ok(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .filter(|h| h.is_absolute())
        .ok_or_else(|| fail(format!("neither {var} nor HOME is set to an absolute path")))?;
    Ok(home.join(fallback))
}

impl Context {
    /// `$XDG_CONFIG_HOME/apono/config.json` (fallback `~/.config`).
    pub(crate) fn config_path(&self) -> anyhow::Result<PathBuf> {
        Ok(env_dir("XDG_CONFIG_HOME", ".config")?.join("apono/config.json"))
    }

    /// `$XDG_CACHE_HOME/apono/keys` (fallback `~/.cache`).
    pub(crate) fn key_cache(&self) -> anyhow::Result<KeyCache> {
        Ok(KeyCache::new(
            env_dir("XDG_CACHE_HOME", ".cache")?.join("apono/keys"),
        ))
    }

    /// `$XDG_CACHE_HOME/apono/vault`: OpenBao tokens of vault sessions (fallback `~/.cache`).
    pub(crate) fn vault_cache(&self) -> anyhow::Result<KeyCache> {
        Ok(KeyCache::new(
            env_dir("XDG_CACHE_HOME", ".cache")?.join("apono/vault"),
        ))
    }

    pub(crate) fn profiles(&self) -> anyhow::Result<Profiles> {
        Profiles::load(&self.config_path()?).explained()
    }

    /// The client: `APONO_URL` + `APONO_TOKEN` when set, else the profile (whose URL goes with
    /// an `APONO_TOKEN` set alone).
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let url = std::env::var("APONO_URL").ok().filter(|v| !v.is_empty());
        let token = std::env::var("APONO_TOKEN").ok().filter(|v| !v.is_empty());
        let profile = match (url, token) {
            (Some(url), Some(token)) if self.profile.is_none() => Profile {
                url,
                personal_token: SecretString::from(token),
                ca_cert: std::env::var_os("APONO_CA_CERT")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
                allow_insecure_http: false,
            },
            (Some(_), None) if self.profile.is_none() => {
                return Err(fail("APONO_URL is set but APONO_TOKEN is not: set both"));
            }
            (None, Some(token)) if self.profile.is_none() => {
                // The token from the environment, the URL from the active profile.
                let profiles = self.profiles()?;
                match profiles.get(None) {
                    Some((_, p)) => Profile {
                        personal_token: SecretString::from(token),
                        ..p.clone()
                    },
                    None => {
                        return Err(fail(
                            "APONO_TOKEN is set but APONO_URL is not, and no profile has a URL: set APONO_URL or run apono login",
                        ));
                    }
                }
            }
            _ => {
                let profiles = self.profiles()?;
                match profiles.get(self.profile.as_deref()) {
                    Some((_, p)) => p.clone(),
                    None => {
                        return Err(match &self.profile {
                            Some(name) => fail(format!(
                                "no profile {name:?}: run apono login --profile {name} or apono profiles list"
                            )),
                            None => fail(
                                "not logged in: run apono login or set APONO_URL and APONO_TOKEN",
                            ),
                        });
                    }
                }
            }
        };
        client_for(&profile)
    }
}

/// The client of `profile`: its URL and token, trusting its CA file, refusing plain http to
/// a host that is not loopback unless the profile allows it.
pub(crate) fn client_for(profile: &Profile) -> anyhow::Result<Client> {
    let mut builder = Client::builder(&profile.url, profile.personal_token.clone())
        .user_agent(concat!("apono-cli/", env!("CARGO_PKG_VERSION")))
        .allow_insecure_http(profile.allow_insecure_http);
    if let Some(path) = &profile.ca_cert {
        let pem = std::fs::read(path).map_err(|e| {
            fail(format!(
                "reading the CA certificate {}: {e}",
                path.display()
            ))
        })?;
        builder = builder
            .ca_cert_pem(&pem, &path.display().to_string())
            .explained()?;
    }
    builder.build().explained()
}
