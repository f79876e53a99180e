//! A throw-away certificate authority and a server certificate for `localhost`/`127.0.0.1`.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::FakeError;

/// A test certificate authority with one server certificate, valid for `localhost` and
/// `127.0.0.1`, generated afresh for every fake that serves HTTPS.
///
/// Clients trust the fake by adding [`TestCa::ca_pem`] to their roots (reqwest:
/// `add_root_certificate`; Python `requests`: `REQUESTS_CA_BUNDLE`).
pub struct TestCa {
    ca_pem: String,
    ca_der: CertificateDer<'static>,
    server_der: CertificateDer<'static>,
    server_key: Vec<u8>,
    server_pem: String,
    server_key_pem: String,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// Generates a CA and a server certificate signed by it, for `localhost` and `127.0.0.1`.
    pub fn generate() -> Result<Self, FakeError> {
        Self::generate_for(&["localhost", "127.0.0.1"])
    }

    /// Generates a CA and a server certificate signed by it for `names` (DNS names or IP
    /// addresses) only. With names other than `localhost` and `127.0.0.1`, a client that trusts
    /// the CA still refuses the fake: the name does not match.
    pub fn generate_for(names: &[&str]) -> Result<Self, FakeError> {
        let ca_key = KeyPair::generate().map_err(crypto)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(crypto)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "apono-testkit test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(crypto)?;

        let server_key = KeyPair::generate().map_err(crypto)?;
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .map_err(crypto)?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        params.is_ca = IsCa::NoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = params.signed_by(&server_key, &ca).map_err(crypto)?;
        Ok(Self {
            ca_pem: ca.pem(),
            ca_der: ca.der().clone(),
            server_der: server.der().clone(),
            server_key: server_key.serialize_der(),
            server_pem: server.pem(),
            server_key_pem: server_key.serialize_pem(),
        })
    }

    /// The CA certificate, PEM-encoded: what a client must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The server certificate, PEM-encoded: what a real server (such as `apono-connector`
    /// with `tls_cert`) serves.
    pub fn server_cert_pem(&self) -> &str {
        &self.server_pem
    }

    /// The server certificate's private key, PKCS#8 PEM.
    pub fn server_key_pem(&self) -> &str {
        &self.server_key_pem
    }

    /// The CA certificate, DER-encoded.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    /// The rustls configuration that serves the server certificate (and the CA after it).
    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, FakeError> {
        server_config(
            vec![self.server_der.clone(), self.ca_der.clone()],
            self.server_key.clone(),
        )
    }
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, which no client trusts unless
/// told to: the rustls configuration that serves it, and the certificate as PEM.
pub(crate) fn self_signed_localhost() -> Result<(Arc<rustls::ServerConfig>, String), FakeError> {
    let key = KeyPair::generate().map_err(crypto)?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .map_err(crypto)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.self_signed(&key).map_err(crypto)?;
    let config = server_config(vec![cert.der().clone()], key.serialize_der())?;
    Ok((config, cert.pem()))
}

/// Serves `chain` (leaf first) with the PKCS#8 `key`, HTTP/1.1 over TLS 1.2 or 1.3.
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
) -> Result<Arc<rustls::ServerConfig>, FakeError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(crypto)?
        .with_no_client_auth()
        .with_single_cert(chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)))
        .map_err(crypto)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn crypto(source: impl std::error::Error + Send + Sync + 'static) -> FakeError {
    FakeError::Crypto {
        fake: "test CA",
        source: Box::new(source),
    }
}
