//! Host-key trust: a server is trusted only through a pinned key, a `known_hosts` entry, a
//! host certificate signed by a `@cert-authority` of the `known_hosts` file, or — when
//! explicitly enabled — the key first seen (trust on first use). Everything else is refused.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use data_encoding::BASE64;
use hmac::{KeyInit, Mac};
use russh::keys::{Certificate, HashAlg, PublicKey, PublicKeyOrCertificate};

use crate::config::ServerConfig;

/// Why a server's host key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host key {fingerprint} of {host_port} is {reason}")]
pub struct HostKeyRejected {
    /// `host` or `[host]:port`.
    pub host_port: String,
    /// The SHA-256 fingerprint of the key the server offered (`SHA256:…`).
    pub fingerprint: String,
    /// Why it is refused.
    pub reason: String,
}

/// The host-trust policy shared by every connection of one provisioner.
#[derive(Debug)]
pub(crate) struct HostTrust {
    known_hosts_file: Option<PathBuf>,
    trust_on_first_use: bool,
    /// Keys recorded by trust on first use (in memory, and in the `known_hosts` file if set).
    first_seen: Mutex<HashMap<String, PublicKey>>,
    /// The plain host key each server last presented and was trusted with, by `host:port`,
    /// so access details can hand it to the requester.
    accepted: Mutex<HashMap<String, PublicKey>>,
}

/// One `known_hosts` line.
struct KnownHost {
    marker: Option<String>,
    patterns: String,
    key: PublicKey,
}

impl HostTrust {
    pub(crate) fn new(known_hosts_file: Option<PathBuf>, trust_on_first_use: bool) -> Self {
        Self {
            known_hosts_file,
            trust_on_first_use,
            first_seen: Mutex::new(HashMap::new()),
            accepted: Mutex::new(HashMap::new()),
        }
    }

    /// The plain host key `host_port` last presented and was trusted with, if any.
    pub(crate) fn accepted(&self, host_port: &str) -> Option<PublicKey> {
        self.accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(host_port)
            .cloned()
    }

    /// Decides whether `offered` is trusted for `server`, and remembers a trusted plain key.
    pub(crate) fn verify(
        &self,
        server: &ServerConfig,
        offered: &PublicKeyOrCertificate,
    ) -> Result<(), HostKeyRejected> {
        self.decide(server, offered)?;
        if let PublicKeyOrCertificate::PublicKey { key, .. } = offered {
            self.accepted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(host_port(&server.host, server.port), key.clone());
        }
        Ok(())
    }

    fn decide(
        &self,
        server: &ServerConfig,
        offered: &PublicKeyOrCertificate,
    ) -> Result<(), HostKeyRejected> {
        let host_port = host_port(&server.host, server.port);
        let (key, cert): (PublicKey, Option<&Certificate>) = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => (key.clone(), None),
            PublicKeyOrCertificate::Certificate(cert) => {
                (PublicKey::new(cert.public_key().clone(), ""), Some(cert))
            }
        };
        let reject = |reason: String| HostKeyRejected {
            host_port: host_port.clone(),
            fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
            reason,
        };
        let entries = match &self.known_hosts_file {
            Some(path) => read_known_hosts(path).map_err(|e| {
                reject(format!(
                    "not checked: known_hosts file {} is unreadable ({e})",
                    path.display()
                ))
            })?,
            None => Vec::new(),
        };
        let host_entries: Vec<&KnownHost> = entries
            .iter()
            .filter(|e| host_matches(&e.patterns, &host_port))
            .collect();
        let marked = |marker: &'static str| {
            host_entries
                .iter()
                .filter(move |e| e.marker.as_deref() == Some(marker))
        };
        if marked("@revoked").any(|e| e.key.key_data() == key.key_data()) {
            return Err(reject("revoked in the known_hosts file".into()));
        }
        if let Some(cert) = cert {
            let cas: Vec<_> = marked("@cert-authority")
                .map(|e| e.key.fingerprint(HashAlg::Sha256))
                .collect();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let principal_ok = cert.valid_principals().is_empty()
                || cert.valid_principals().iter().any(|p| p == &server.host);
            if !cas.is_empty()
                && cert.cert_type().is_host()
                && principal_ok
                && cert.validate_at(now, &cas).is_ok()
            {
                return Ok(());
            }
        }
        let mut known = false;
        if let Some(line) = &server.host_key {
            known = true;
            if PublicKey::from_openssh(line.trim())
                .is_ok_and(|pinned| pinned.key_data() == key.key_data())
            {
                return Ok(());
            }
        }
        for entry in host_entries.iter().filter(|e| e.marker.is_none()) {
            known = true;
            if entry.key.key_data() == key.key_data() {
                return Ok(());
            }
        }
        let mut first_seen = self
            .first_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(seen) = first_seen.get(&host_port) {
            if seen.key_data() == key.key_data() {
                return Ok(());
            }
            return Err(reject(
                "different from the key first seen: refusing a changed host key".into(),
            ));
        }
        if known {
            return Err(reject(
                "different from the pinned or known key: refusing a changed host key".into(),
            ));
        }
        if !self.trust_on_first_use {
            return Err(reject(
                "unknown: pin it in host_key, add it to known_hosts_file, or enable trust_on_first_use"
                    .into(),
            ));
        }
        if let Some(path) = &self.known_hosts_file {
            append_known_host(path, &host_port, &key)
                .map_err(|e| reject(format!("not recorded in {} ({e})", path.display())))?;
        }
        tracing::warn!(
            host = %host_port,
            fingerprint = %key.fingerprint(HashAlg::Sha256),
            "trusting a host key on first use"
        );
        first_seen.insert(host_port, key);
        Ok(())
    }
}

/// `host` for port 22, `[host]:port` otherwise, as OpenSSH writes `known_hosts`.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

fn read_known_hosts(path: &Path) -> std::io::Result<Vec<KnownHost>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let Some(mut first) = fields.next() else {
            continue;
        };
        let marker = if first.starts_with('@') {
            let marker = first.to_owned();
            match fields.next() {
                Some(next) => first = next,
                None => continue,
            }
            Some(marker)
        } else {
            None
        };
        let (Some(kind), Some(data)) = (fields.next(), fields.next()) else {
            continue;
        };
        // A line that does not parse trusts nothing.
        if let Ok(key) = PublicKey::from_openssh(&format!("{kind} {data}")) {
            entries.push(KnownHost {
                marker,
                patterns: first.to_owned(),
                key,
            });
        }
    }
    Ok(entries)
}

fn append_known_host(path: &Path, host_port: &str, key: &PublicKey) -> std::io::Result<()> {
    let line = key
        .to_openssh()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{host_port} {line}")
}

/// Whether a comma-separated `known_hosts` pattern list matches `host_port`: hashed entries
/// (`|1|salt|hash`), wildcards `*` and `?`, and negations `!pattern` (which veto).
fn host_matches(patterns: &str, host_port: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        if let Some(hashed) = pattern.strip_prefix("|1|") {
            if hashed_matches(hashed, host_port) {
                matched = true;
            }
        } else if let Some(negated) = pattern.strip_prefix('!') {
            if glob(negated.as_bytes(), host_port.as_bytes()) {
                return false;
            }
        } else if glob(pattern.as_bytes(), host_port.as_bytes()) {
            matched = true;
        }
    }
    matched
}

fn hashed_matches(hashed: &str, host_port: &str) -> bool {
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(hash.as_bytes()),
    ) else {
        return false;
    };
    let Ok(mac) = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(&salt) else {
        return false;
    };
    mac.chain_update(host_port.as_bytes())
        .verify_slice(&hash)
        .is_ok()
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => {
            text.first().is_some_and(|t| t.eq_ignore_ascii_case(c)) && glob(rest, &text[1..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_openssh() {
        assert!(host_matches("[127.0.0.1]:2222", "[127.0.0.1]:2222"));
        assert!(!host_matches("127.0.0.1", "[127.0.0.1]:2222"));
        assert!(host_matches(
            "*.corp.example,!bad.corp.example",
            "a.corp.example"
        ));
        assert!(!host_matches(
            "*.corp.example,!bad.corp.example",
            "bad.corp.example"
        ));
        // `ssh-keygen -H` of "example.com" with a fixed salt, computed with HMAC-SHA1.
        let salt = [7u8; 20];
        let mac = <hmac::Hmac<sha1::Sha1> as KeyInit>::new_from_slice(&salt)
            .unwrap()
            .chain_update(b"example.com")
            .finalize()
            .into_bytes();
        let entry = format!("|1|{}|{}", BASE64.encode(&salt), BASE64.encode(&mac));
        assert!(host_matches(&entry, "example.com"));
        assert!(!host_matches(&entry, "example.org"));
    }
}
