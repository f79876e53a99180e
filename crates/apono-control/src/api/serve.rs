//! [`serve`]: the API's listener. Over TLS (rustls) when `connector.tls_cert` and `tls_key`
//! are set, with the two files read again whenever they change, so a certificate rotates
//! without a restart; over plain HTTP otherwise, which is refused on an address that is not
//! loopback unless `allow_insecure_listen` says so, and logged as unencrypted at start.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use apono_core::CancelSignal;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ServerConfig, crypto};

use crate::config::ConnectorSettings;
use crate::error::ControlError;
use crate::plane::ControlPlane;

/// How often the certificate and key files are checked for a change.
const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connections in flight may finish after `shutdown` fires.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves the API on `connector.listen` until `shutdown` fires, then lets the requests in
/// flight finish (for a few seconds at most).
pub async fn serve(plane: Arc<ControlPlane>, shutdown: CancelSignal) -> Result<(), ControlError> {
    let listen = plane.config().connector.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|source| ControlError::Listen {
            address: listen,
            source,
        })?;
    serve_on(listener, plane, shutdown).await
}

/// [`serve`] on a listener the caller bound (to learn its address first, or to pass one
/// inherited from a supervisor); `connector.listen` is used only to decide whether plain
/// HTTP is allowed.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    plane: Arc<ControlPlane>,
    shutdown: CancelSignal,
) -> Result<(), ControlError> {
    let c = plane.config().connector.clone();
    let local = listener
        .local_addr()
        .map_err(|source| ControlError::Listen {
            address: c.listen.clone(),
            source,
        })?;
    // Long polls (watches) answer at once when the API stops, so the drain does not wait.
    let watches = Arc::downgrade(&plane);
    let stopping = shutdown.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        watches.upgrade().inspect(|p| p.close_watches());
    });
    let router = super::router(plane);
    let Some((cert, key)) = tls_files(&c)? else {
        tracing::warn!(listen = %local, "apono-connector listening on plain HTTP: API traffic, bearer tokens and credentials included, is unencrypted (set connector.tls_cert and tls_key)");
        return axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(|source| ControlError::Io {
                context: "serving the API",
                source,
            });
    };
    let resolver = Arc::new(Reloading::load(cert, key)?);
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(crypto::aws_lc_rs::default_provider()));
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    tracing::info!(listen = %local, "apono-connector listening over TLS");
    tokio::spawn(resolver.clone().watch(shutdown.clone()));
    let graceful = GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
            if let Err(e) = watcher.watch(conn.into_owned()).await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
    Ok(())
}

/// The certificate and key paths, or `None` for plain HTTP, which is refused on an address
/// that is not loopback unless `allow_insecure_listen` is set.
fn tls_files(c: &ConnectorSettings) -> Result<Option<(PathBuf, PathBuf)>, ControlError> {
    match (&c.tls_cert, &c.tls_key) {
        (Some(cert), Some(key)) => Ok(Some((cert.clone(), key.clone()))),
        (None, None) => {
            let loopback = c
                .listen
                .parse::<SocketAddr>()
                .is_ok_and(|a| a.ip().is_loopback());
            if !loopback && !c.allow_insecure_listen {
                return Err(ControlError::Invalid(vec![format!(
                    "connector.listen {} is not a loopback address and no TLS is configured: set tls_cert and tls_key, or allow_insecure_listen = true",
                    c.listen
                )]));
            }
            Ok(None)
        }
        _ => Err(ControlError::Invalid(vec![
            "connector.tls_cert and tls_key go together".into(),
        ])),
    }
}

fn tls_error(message: String) -> ControlError {
    ControlError::Invalid(vec![message])
}

/// The files' modification times and sizes: what is compared to notice a change.
type Stamp = Option<(SystemTime, u64, SystemTime, u64)>;

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let a = std::fs::metadata(cert).ok()?;
    let b = std::fs::metadata(key).ok()?;
    Some((a.modified().ok()?, a.len(), b.modified().ok()?, b.len()))
}

/// The serving certificate, swapped when its files change.
#[derive(Debug)]
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Stamp)>,
}

impl Reloading {
    fn load(cert: PathBuf, key: PathBuf) -> Result<Self, ControlError> {
        let stamp = stamp(&cert, &key);
        let certified = certified_key(&cert, &key)?;
        Ok(Self {
            cert,
            key,
            current: RwLock::new((certified, stamp)),
        })
    }

    /// Checks the files every second until `shutdown`; a changed pair that loads replaces the
    /// certificate for new connections; one that does not is logged and the old one kept.
    async fn watch(self: Arc<Self>, shutdown: CancelSignal) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RELOAD_EVERY) => {}
            }
            let now = stamp(&self.cert, &self.key);
            let seen = self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .1;
            if now.is_none() || now == seen {
                continue;
            }
            match certified_key(&self.cert, &self.key) {
                Ok(certified) => {
                    *self
                        .current
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = (certified, now);
                    tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                }
                Err(e) => {
                    // A half-written pair during a rotation: tried again at the next change.
                    tracing::warn!(cert = %self.cert.display(), error = %e, "the changed TLS certificate or key does not load; serving the previous one");
                    self.current
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .1 = now;
                }
            }
        }
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0
                .clone(),
        )
    }
}

/// Reads a PEM certificate chain and its private key, and checks that they match.
fn certified_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, ControlError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| ControlError::Io {
            context: "reading the TLS certificate or key (connector.tls_cert, tls_key)",
            source,
        })
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .collect::<Result<_, _>>()
        .map_err(|e| tls_error(format!("{}: {e}", cert.display())))?;
    if chain.is_empty() {
        return Err(tls_error(format!(
            "{} holds no PEM certificate",
            cert.display()
        )));
    }
    // Only what the error says about the key's file is shown, never its content.
    let der = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|_| tls_error(format!("{} holds no PEM private key", key.display())))?;
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(crypto::aws_lc_rs::default_provider()));
    let certified = CertifiedKey::from_der(chain, der, &provider)
        .map_err(|e| tls_error(format!("{} and {}: {e}", cert.display(), key.display())))?;
    Ok(Arc::new(certified))
}
