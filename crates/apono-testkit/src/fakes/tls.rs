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
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// Generates a CA and a server certificate signed by it.
    pub fn generate() -> Result<Self, FakeError> {
        let crypto = |source: rcgen::Error| FakeError::Crypto {
            fake: "test CA",
            source: Box::new(source),
        };
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
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .map_err(crypto)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
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
        })
    }

    /// The CA certificate, PEM-encoded: what a client must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The CA certificate, DER-encoded.
    pub fn ca_der(&self) -> &[u8] {
        &self.ca_der
    }

    pub(crate) fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, FakeError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = |source: rustls::Error| FakeError::Crypto {
            fake: "test CA",
            source: Box::new(source),
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.server_der.clone(), self.ca_der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone())),
            )
            .map_err(tls)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
