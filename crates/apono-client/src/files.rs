//! Private files: the profile file and cached private keys, always created with mode `0600`
//! (directories `0700`) and replaced atomically, never `chmod`ed after the fact.

use std::collections::BTreeMap;
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use apono_core::json::describe_json_error;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::ClientError;

fn io(context: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ClientError {
    let path = path.display().to_string();
    move |source| ClientError::Io {
        context,
        path,
        source,
    }
}

/// Writes `contents` to `path` through a fresh `0600` file renamed into place, creating the
/// parent directories with mode `0700`.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), ClientError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(io("creating the directory", parent))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io("writing", path))
}

/// One connector login: its URL and the user's personal token.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Profile {
    /// The connector's base URL.
    pub url: String,
    /// The personal token (written to the `0600` profile file, never printed).
    #[serde(serialize_with = "expose")]
    pub personal_token: SecretString,
    /// A CA certificate file (PEM) to trust for this connector's TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
    /// Whether plain `http://` to a host that is not loopback is allowed (the token then
    /// crosses the network in clear).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure_http: bool,
}

fn expose<S: serde::Serializer>(token: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(token.expose_secret())
}

/// The profile file (`$XDG_CONFIG_HOME/apono/config.json` for the CLI):
/// `{"active": "default", "profiles": {"default": {"url": …, "personal_token": …}}}`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct Profiles {
    /// The profile used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<String>,
    /// Profiles by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

impl Profiles {
    /// Reads the profile file; a missing file is an empty set of profiles.
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(io("reading", path)(e)),
        };
        // serde's messages may quote values (the token); report only where it broke.
        serde_json::from_slice(&text).map_err(|e| ClientError::ProfileFile {
            path: path.display().to_string(),
            reason: format!("the file {}", describe_json_error(&e)),
        })
    }

    /// Writes the profile file with mode `0600`.
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let mut text = serde_json::to_vec_pretty(self).map_err(|e| ClientError::ProfileFile {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        text.push(b'\n');
        write_private(path, &text)
    }

    /// Adds or replaces profile `name` and makes it the active one.
    pub fn login(&mut self, name: &str, profile: Profile) -> Result<(), ClientError> {
        check_profile_name(name)?;
        self.profiles.insert(name.to_owned(), profile);
        self.active = Some(name.to_owned());
        Ok(())
    }

    /// Removes profile `name`; the active profile moves to another one, if any.
    /// Returns whether it existed.
    pub fn logout(&mut self, name: &str) -> bool {
        let existed = self.profiles.remove(name).is_some();
        if self.active.as_deref() == Some(name) {
            self.active = self.profiles.keys().next().cloned();
        }
        existed
    }

    /// Makes profile `name` the active one.
    pub fn activate(&mut self, name: &str) -> Result<(), ClientError> {
        if !self.profiles.contains_key(name) {
            return Err(ClientError::Usage(format!(
                "no profile {name:?} (apono profiles list shows them)"
            )));
        }
        self.active = Some(name.to_owned());
        Ok(())
    }

    /// The profile named `name`, or the active one.
    pub fn get(&self, name: Option<&str>) -> Option<(&str, &Profile)> {
        let name = name.or(self.active.as_deref())?;
        self.profiles
            .get_key_value(name)
            .map(|(k, v)| (k.as_str(), v))
    }
}

fn check_profile_name(name: &str) -> Result<(), ClientError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ClientError::Usage(
            "a profile name is 1-64 letters, digits, '-', '_' or '.'".into(),
        ))
    }
}

/// Private keys of access sessions, kept in `0600` files (`<dir>/<session id>.key`, with the
/// expiry beside it) for as long as the session lasts, because the connector shows a key only
/// once; beside them the server's host key (`<session id>.known_hosts`), so `ssh` checks the
/// server without asking.
#[derive(Clone, Debug)]
pub struct KeyCache {
    dir: PathBuf,
}

impl KeyCache {
    /// A cache in `dir` (the CLI uses `$XDG_CACHE_HOME/apono/keys`).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    fn paths(&self, session_id: &str) -> Result<(PathBuf, PathBuf), ClientError> {
        let key = self.file(session_id, "key")?;
        Ok((key, self.file(session_id, "expires")?))
    }

    fn file(&self, session_id: &str, extension: &str) -> Result<PathBuf, ClientError> {
        let ok = !session_id.is_empty()
            && session_id.len() <= 200
            && session_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
        if !ok {
            return Err(ClientError::Usage(format!(
                "{session_id:?} is not a session id"
            )));
        }
        Ok(self.dir.join(format!("{session_id}.{extension}")))
    }

    /// Stores a session's private key; returns the key file.
    pub fn store(
        &self,
        session_id: &str,
        key: &SecretString,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<PathBuf, ClientError> {
        let (key_path, expiry_path) = self.paths(session_id)?;
        let mut text = key.expose_secret().to_owned();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        write_private(&key_path, text.as_bytes())?;
        if let Some(at) = expires_at {
            write_private(&expiry_path, at.to_rfc3339().as_bytes())?;
        }
        Ok(key_path)
    }

    /// Stores a session's `known_hosts` line (`[host]:port type data`, as OpenSSH reads it) in a
    /// `0600` file beside its key, removed with the key; returns the file.
    pub fn store_known_hosts(&self, session_id: &str, line: &str) -> Result<PathBuf, ClientError> {
        let path = self.file(session_id, "known_hosts")?;
        let line = line.trim();
        if line.is_empty() || line.contains(['\n', '\r']) {
            return Err(ClientError::Usage(format!(
                "the host key of session {session_id} is not one known_hosts line"
            )));
        }
        write_private(&path, format!("{line}\n").as_bytes())?;
        Ok(path)
    }

    /// The `known_hosts` file of a session, if cached.
    pub fn find_known_hosts(&self, session_id: &str) -> Option<PathBuf> {
        let path = self.file(session_id, "known_hosts").ok()?;
        path.is_file().then_some(path)
    }

    /// The key file of a session, if cached.
    pub fn find(&self, session_id: &str) -> Option<PathBuf> {
        let (key, _) = self.paths(session_id).ok()?;
        key.is_file().then_some(key)
    }

    /// Removes a session's key; returns whether there was one.
    pub fn remove(&self, session_id: &str) -> Result<bool, ClientError> {
        let (key, expiry) = self.paths(session_id)?;
        let _ = std::fs::remove_file(expiry);
        let _ = std::fs::remove_file(self.file(session_id, "known_hosts")?);
        match std::fs::remove_file(&key) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io("removing", &key)(e)),
        }
    }

    /// Session ids with a cached key.
    pub fn sessions(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_suffix(".key"))
                    .map(str::to_owned)
            })
            .collect();
        ids.sort();
        ids
    }

    /// Removes the keys whose recorded expiry is at or before `now`; returns their sessions.
    pub fn remove_expired(&self, now: DateTime<Utc>) -> Vec<String> {
        let mut removed = Vec::new();
        for id in self.sessions() {
            let Ok((_, expiry)) = self.paths(&id) else {
                continue;
            };
            let expired = std::fs::read_to_string(expiry)
                .ok()
                .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
                .is_some_and(|at| at <= now);
            if expired && self.remove(&id).unwrap_or(false) {
                removed.push(id);
            }
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn profiles_round_trip_with_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("apono/config.json");
        let mut profiles = Profiles::load(&path).expect("missing is empty");
        assert!(profiles.get(None).is_none());
        profiles
            .login(
                "default",
                Profile {
                    url: "http://h".into(),
                    personal_token: "apono_secret".into(),
                    ca_cert: None,
                    allow_insecure_http: false,
                },
            )
            .expect("valid name");
        profiles.save(&path).expect("saved");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().expect("dir")), 0o700);
        let loaded = Profiles::load(&path).expect("loads");
        let (name, profile) = loaded.get(None).expect("active");
        assert_eq!((name, profile.url.as_str()), ("default", "http://h"));
        assert!(!format!("{loaded:?}").contains("apono_secret"));
        assert!(
            profiles
                .login("../x", profiles.profiles["default"].clone())
                .is_err()
        );
    }

    #[test]
    fn a_broken_profile_file_never_quotes_its_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"profiles": {"a": {"url": 1, "personal_token": "apono_x"}}}"#,
        )
        .expect("write");
        let e = Profiles::load(&path).expect_err("invalid");
        assert!(!e.to_string().contains("apono_x"), "{e}");
    }

    #[test]
    fn key_cache() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = KeyCache::new(dir.path().join("keys"));
        let past = Utc::now() - chrono::Duration::seconds(1);
        let future = Utc::now() + chrono::Duration::hours(1);
        let a = cache
            .store("g-a", &"KEY".into(), Some(past))
            .expect("store");
        cache
            .store("g-b", &"KEY".into(), Some(future))
            .expect("store");
        let hosts = cache
            .store_known_hosts("g-a", "[h]:2222 ssh-ed25519 AAAA")
            .expect("store known_hosts");
        assert_eq!(mode(&hosts), 0o600);
        assert_eq!(cache.find_known_hosts("g-a"), Some(hosts.clone()));
        assert!(cache.store_known_hosts("g-a", "h k\nx y").is_err());
        assert_eq!(mode(&a), 0o600);
        assert_eq!(std::fs::read_to_string(&a).expect("read"), "KEY\n");
        assert_eq!(cache.sessions(), ["g-a", "g-b"]);
        assert_eq!(cache.remove_expired(Utc::now()), ["g-a"]);
        assert!(cache.find("g-a").is_none() && cache.find("g-b").is_some());
        assert!(!hosts.exists() && cache.find_known_hosts("g-a").is_none());
        assert!(cache.store("../x", &"K".into(), None).is_err());
    }
}
