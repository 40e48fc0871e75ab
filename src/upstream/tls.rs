//! The TLS side of encrypted upstreams: which roots their certificates are checked against, and
//! the rustls client configurations DNS over TLS and DNS over HTTPS connect with. Always the
//! ring provider, installed here explicitly (no aws-lc, no OpenSSL), as `remote` does.

use std::sync::Arc;

use rustls::ClientConfig;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The certificates upstream servers are checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Roots {
    /// The system's (rustls-platform-verifier: /etc/ssl/certs on Linux), as for lists by URL.
    System,
    /// Only these CA certificates (`upstream.ca`): a private resolver's own CA.
    Certificates(Vec<CertificateDer<'static>>),
}

/// Why TLS to the upstreams cannot be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// The CA file holds no certificate, or one that does not parse.
    #[error("{0}: give a PEM file of CA certificates (-----BEGIN CERTIFICATE-----)")]
    Pem(String),
    /// rustls refused the configuration (the system's roots cannot be read).
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

impl Roots {
    /// The CA certificates of a PEM file's contents; an error if there is none or one is broken.
    pub(crate) fn from_pem(pem: &[u8]) -> Result<Roots, TlsError> {
        let certificates = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Pem(format!("a certificate does not parse ({e})")))?;
        if certificates.is_empty() {
            return Err(TlsError::Pem("no certificate in it".into()));
        }
        let mut store = RootCertStore::empty();
        let (_, bad) = store.add_parsable_certificates(certificates.iter().cloned());
        if bad > 0 {
            return Err(TlsError::Pem(format!(
                "{bad} of its certificates are not usable as a CA"
            )));
        }
        Ok(Roots::Certificates(certificates))
    }
}

/// A client configuration that checks servers against `roots` and offers `alpn` (empty for
/// none), with the ring provider.
pub(super) fn client_config(roots: &Roots, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider)).with_safe_default_protocol_versions()?;
    let mut config = match roots {
        Roots::System => {
            let verifier = rustls_platform_verifier::Verifier::new(provider)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
        Roots::Certificates(certificates) => {
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(certificates.iter().cloned());
            builder.with_root_certificates(store).with_no_client_auth()
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}
