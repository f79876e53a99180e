//! The connector's master key and what is derived from it: the key that seals one-time
//! credentials in the store (AES-256-GCM, bound to the grant id) and the key of the audit
//! chain's links (HMAC-SHA-256). Neither is ever in the database; only the key id (a
//! fingerprint that reveals nothing of the key) is stored beside what they protect.
//!
//! The master key is 32 random bytes, written as 64 hex digits or as base64, and comes from
//! `connector.master_key`: a file, or a field `master_key` of a secret in one of the secret
//! stores. Without `master_key` an SQLite connector keeps a generated key in `data_dir`
//! (`master.key`, mode 0600); a PostgreSQL connector refuses to start, since every replica
//! must hold the same key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use apono_core::Credential;
use hmac::Mac;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2_next::Sha256;
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use crate::config::MasterKeySource;
use crate::error::ControlError;
use crate::ledger::store::Backend;

/// The file name of the generated key of an SQLite connector, in `data_dir`.
pub(crate) const GENERATED_KEY_FILE: &str = "master.key";

/// The field of a secret store's secret that holds the master key.
pub(crate) const SECRET_FIELD: &str = "master_key";

/// The prefix of a sealed blob's text (`v1:<key id>:<nonce>:<ciphertext>`).
const SEALED_V1: &str = "v1";

/// The keys derived from the master key. `Debug` shows the key id only.
pub struct Keys {
    id: String,
    sealing: SecretBox<[u8; 32]>,
    audit: SecretBox<[u8; 32]>,
    forms: SecretBox<[u8; 32]>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys").field("id", &self.id).finish()
    }
}

/// Why sealed credentials could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// Sealed under another master key (the key changed or was lost).
    #[error("sealed under key {0}, not the configured key")]
    OtherKey(String),
    /// Not a sealed blob, or altered, or sealed for another grant.
    #[error("the sealed credentials do not open (altered, or copied from another grant)")]
    Invalid,
}

impl Keys {
    /// Derives the sealing and audit keys (HKDF-SHA-256) and the key id from `master`.
    pub fn derive(master: &[u8; 32]) -> Self {
        let hkdf = hkdf::Hkdf::<Sha256>::new(Some(b"apono-connector"), master);
        let mut sealing = Box::new([0u8; 32]);
        let mut audit = Box::new([0u8; 32]);
        let mut forms = Box::new([0u8; 32]);
        let mut id = Zeroizing::new([0u8; 8]);
        // 32 and 8 bytes are far below HKDF-SHA-256's limit: the expansions cannot fail.
        let _ = hkdf.expand(b"sealing one-time credentials", sealing.as_mut());
        let _ = hkdf.expand(b"audit chain links", audit.as_mut());
        let _ = hkdf.expand(b"portal form tokens", forms.as_mut());
        let _ = hkdf.expand(b"key id", id.as_mut());
        Self {
            id: data_encoding::HEXLOWER.encode(id.as_ref()),
            sealing: SecretBox::new(sealing),
            audit: SecretBox::new(audit),
            forms: SecretBox::new(forms),
        }
    }

    /// Parses a master key's text: 64 hex digits, or base64 of 32 bytes (surrounding
    /// whitespace ignored). The error never repeats the text.
    pub fn parse(text: &str) -> Result<Self, ControlError> {
        let text = text.trim();
        let bytes = Zeroizing::new(
            data_encoding::HEXLOWER_PERMISSIVE
                .decode(text.as_bytes())
                .or_else(|_| data_encoding::BASE64.decode(text.as_bytes()))
                .map_err(|_| {
                    ControlError::Key(
                        "the master key is neither 64 hex digits nor base64 of 32 bytes".into(),
                    )
                })?,
        );
        let key: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            ControlError::Key(format!(
                "the master key has {} bytes; it must have 32",
                bytes.len()
            ))
        })?;
        Ok(Self::derive(key))
    }

    /// A new random master key as 64 hex digits.
    pub fn generate_text() -> Zeroizing<String> {
        let key = Zeroizing::new(rand::random::<[u8; 32]>());
        Zeroizing::new(data_encoding::HEXLOWER.encode(key.as_ref()))
    }

    /// The key id: a fingerprint of the master key (16 hex digits), stored beside sealed
    /// credentials and audit records and named by `audit verify`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `credentials` for grant `grant_id`: the text stored in the grant's row.
    pub(crate) fn seal(&self, grant_id: &str, credentials: &[Credential]) -> String {
        let plain: Vec<(&str, &str)> = credentials
            .iter()
            .map(|c| (c.name.as_str(), c.value.expose_secret()))
            .collect();
        // Serialising pairs of strings cannot fail.
        let plain = Zeroizing::new(serde_json::to_vec(&plain).unwrap_or_default());
        let nonce_bytes: [u8; 12] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        let cipher = Aes256Gcm::new(self.sealing.expose_secret().into());
        let aad = self.aad(grant_id);
        // AES-GCM encryption fails only for messages beyond 64 GiB.
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        format!(
            "{SEALED_V1}:{}:{}:{}",
            self.id,
            data_encoding::BASE64.encode(&nonce_bytes),
            data_encoding::BASE64.encode(&sealed)
        )
    }

    /// Opens what [`Keys::seal`] sealed for `grant_id`: `(name, value)` pairs.
    pub(crate) fn open(
        &self,
        grant_id: &str,
        sealed: &str,
    ) -> Result<Vec<(String, SecretString)>, UnsealError> {
        let mut parts = sealed.split(':');
        let (Some(SEALED_V1), Some(id), Some(nonce), Some(body), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(UnsealError::Invalid);
        };
        if id != self.id {
            return Err(UnsealError::OtherKey(id.to_owned()));
        }
        let nonce: [u8; 12] = data_encoding::BASE64
            .decode(nonce.as_bytes())
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(UnsealError::Invalid)?;
        let body = data_encoding::BASE64
            .decode(body.as_bytes())
            .map_err(|_| UnsealError::Invalid)?;
        let cipher = Aes256Gcm::new(self.sealing.expose_secret().into());
        let aad = self.aad(grant_id);
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    &Nonce::from(nonce),
                    Payload {
                        msg: &body,
                        aad: &aad,
                    },
                )
                .map_err(|_| UnsealError::Invalid)?,
        );
        let pairs: Vec<(String, String)> =
            serde_json::from_slice(&plain).map_err(|_| UnsealError::Invalid)?;
        Ok(pairs
            .into_iter()
            .map(|(name, value)| (name, SecretString::from(value)))
            .collect())
    }

    /// The associated data binding a sealed blob to its grant and key.
    fn aad(&self, grant_id: &str) -> Vec<u8> {
        format!("apono sealed credentials\0{}\0{grant_id}", self.id).into_bytes()
    }

    /// The link of an audit record: HMAC-SHA-256 under the audit key over `parts`, each
    /// length-prefixed, as hex.
    pub(crate) fn audit_link(&self, parts: &[&str]) -> String {
        mac(self.audit.expose_secret(), parts)
    }

    /// The portal's form token (CSRF) of a sign-in session: HMAC-SHA-256 under the forms key
    /// over the session's token id, as hex. Every replica with the same master key agrees.
    pub(crate) fn form_token(&self, session: &str) -> String {
        mac(self.forms.expose_secret(), &["portal form", session])
    }
}

/// HMAC-SHA-256 under `key` over `parts`, each length-prefixed, as hex.
fn mac(key: &[u8; 32], parts: &[&str]) -> String {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part.as_bytes());
    }
    data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
}

/// Loads the master key once, on first use, from where the configuration says.
pub(crate) struct Keyring {
    source: Option<MasterKeySource>,
    data_dir: PathBuf,
    backend: Backend,
    executor: Arc<apono_runtime::Executor>,
    keys: OnceCell<Arc<Keys>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("source", &self.source)
            .field("keys", &self.keys.get())
            .finish()
    }
}

impl Keyring {
    pub(crate) fn new(
        source: Option<MasterKeySource>,
        data_dir: PathBuf,
        backend: Backend,
        executor: Arc<apono_runtime::Executor>,
    ) -> Self {
        Self {
            source,
            data_dir,
            backend,
            executor,
            keys: OnceCell::new(),
        }
    }

    /// The keys, loaded on first use.
    pub(crate) async fn get(&self) -> Result<Arc<Keys>, ControlError> {
        self.keys.get_or_try_init(|| self.load()).await.cloned()
    }

    async fn load(&self) -> Result<Arc<Keys>, ControlError> {
        let keys = match &self.source {
            Some(MasterKeySource::File(path)) => Keys::parse(&read_key_file(path)?)?,
            Some(MasterKeySource::SecretStore(reference)) => {
                let value = self
                    .executor
                    .resolver()
                    .resolve(reference)
                    .await
                    .map_err(|e| {
                        ControlError::Key(format!(
                            "cannot read the master key from the secret store: {}",
                            apono_core::error_chain(&e)
                        ))
                    })?;
                let text = value.get(SECRET_FIELD).ok_or_else(|| {
                    ControlError::Key(format!(
                        "the master key's secret has no field {SECRET_FIELD:?}"
                    ))
                })?;
                Keys::parse(text.expose_secret())?
            }
            None if self.backend == Backend::Postgres => {
                return Err(ControlError::Key(
                    "connector.master_key is required with database_url: every replica must \
                     hold the same key"
                        .into(),
                ));
            }
            None => {
                let path = self.data_dir.join(GENERATED_KEY_FILE);
                if !path.exists() {
                    write_new_key(&path)?;
                    tracing::warn!(path = %path.display(), "connector.master_key is not set: generated a master key beside the database; anyone who can read both can open pending credentials and rewrite the audit log, so keep the key elsewhere (connector.master_key)");
                }
                Keys::parse(&read_key_file(&path)?)?
            }
        };
        tracing::info!(key_id = %keys.id(), "master key loaded");
        Ok(Arc::new(keys))
    }
}

fn read_key_file(path: &Path) -> Result<Zeroizing<String>, ControlError> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| ControlError::Key(format!("cannot read {}: {e}", path.display())))
}

fn write_new_key(path: &Path) -> Result<(), ControlError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let text = Keys::generate_text();
    options
        .open(path)
        .and_then(|mut f| f.write_all(format!("{}\n", text.as_str()).as_bytes()))
        .map_err(|e| ControlError::Key(format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(byte: u8) -> Keys {
        Keys::derive(&[byte; 32])
    }

    #[test]
    fn sealed_credentials_open_only_for_their_grant_and_key() {
        let k = keys(7);
        let creds = vec![Credential::one_time("password", "canary-s3cret")];
        let sealed = k.seal("grt_a", &creds);
        assert!(!sealed.contains("canary"));
        let opened = k.open("grt_a", &sealed).expect("opens");
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].0, "password");
        assert_eq!(opened[0].1.expose_secret(), "canary-s3cret");
        // Copied to another grant's row: refused.
        assert!(matches!(
            k.open("grt_b", &sealed),
            Err(UnsealError::Invalid)
        ));
        // Another key: refused, naming the key it was sealed under.
        assert!(matches!(
            keys(8).open("grt_a", &sealed),
            Err(UnsealError::OtherKey(id)) if id == k.id()
        ));
        // One bit flipped in the ciphertext: refused.
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).expect("ascii");
        assert!(k.open("grt_a", &altered).is_err());
    }

    #[test]
    fn key_text_parses_as_hex_or_base64_and_never_echoes() {
        let hex = "11".repeat(32);
        let b64 = data_encoding::BASE64.encode(&[0x11; 32]);
        assert_eq!(
            Keys::parse(&hex).expect("hex").id(),
            Keys::parse(&b64).expect("b64").id()
        );
        let err = Keys::parse("not-a-key-canary").unwrap_err().to_string();
        assert!(!err.contains("canary"), "{err}");
        let short = Keys::parse(&"ab".repeat(16)).unwrap_err().to_string();
        assert!(short.contains("16 bytes"), "{short}");
        assert!(!format!("{:?}", keys(1)).contains("sealing"));
    }

    #[test]
    fn audit_links_depend_on_the_key() {
        assert_ne!(
            keys(1).audit_link(&["a", "b"]),
            keys(2).audit_link(&["a", "b"])
        );
        // Length prefixes: moving a boundary changes the link.
        assert_ne!(
            keys(1).audit_link(&["ab", "c"]),
            keys(1).audit_link(&["a", "bc"])
        );
    }
}
