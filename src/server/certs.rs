//! The certificate DoT and DoH present: loaded from `server.certificate` and `server.key` at
//! start and on every reload, and handed to each new TLS handshake.
//!
//! A reload swaps the pair for handshakes that begin afterwards; connections already open keep
//! the session they agreed. A new pair that does not load (unreadable, not PEM, a key that is
//! not the certificate's) leaves the old one serving: a renewal gone wrong must not take
//! encrypted DNS down with it. Nothing here runs on the packet path.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// Why a certificate and key pair did not load; each names the file to look at.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// `server.certificate` or `server.key` is not set.
    #[error("server.certificate and server.key must both be set to serve DNS over TLS or HTTPS")]
    NotConfigured,
    /// The certificate file could not be read, or holds no PEM certificate.
    #[error("{path}: cannot read a PEM certificate: {reason}")]
    Certificate {
        /// The file, resolved against the config's directory.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The key file could not be read, holds no PEM private key, or one rustls cannot sign with.
    #[error("{path}: cannot read a PEM private key: {reason}")]
    Key {
        /// The file, resolved against the config's directory.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The key is not the one the certificate was issued for.
    #[error("{key}: this key does not match the certificate {certificate}: {reason}")]
    Mismatch {
        /// The certificate file.
        certificate: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls found.
        reason: String,
    },
}

/// The certificate and key files a config names, resolved against its directory.
pub fn configured_pair(config: &Config) -> Result<(PathBuf, PathBuf), CertError> {
    match (&config.server.certificate, &config.server.key) {
        (Some(cert), Some(key)) => Ok((config.resolve(cert.get_ref()), config.resolve(key.get_ref()))),
        _ => Err(CertError::NotConfigured),
    }
}

/// Reads a PEM certificate chain (leaf first) and its private key, and checks that they belong
/// together, so that a broken pair is refused here rather than failing every handshake.
pub fn load_pair(certificate: &Path, key: &Path) -> Result<Arc<CertifiedKey>, CertError> {
    let cert_error = |reason: String| CertError::Certificate {
        path: certificate.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(certificate)
        .map_err(|e| cert_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_error(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_error("no CERTIFICATE block in the file".into()));
    }
    let key_error = |reason: String| CertError::Key {
        path: key.to_path_buf(),
        reason,
    };
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| key_error(e.to_string()))?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private).map_err(|e| key_error(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| CertError::Mismatch {
        certificate: certificate.to_path_buf(),
        key: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Arc::new(certified))
}

/// The pair new handshakes get, swapped whole on reload.
#[derive(Debug)]
pub(crate) struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    /// The store of the pair `config` names; an error stops the start.
    pub(crate) fn load(config: &Config) -> Result<CertStore, CertError> {
        let (cert, key) = configured_pair(config)?;
        let pair = load_pair(&cert, &key)?;
        Ok(CertStore {
            current: ArcSwap::new(pair),
        })
    }

    /// Loads the pair the (reloaded) `config` names and serves it to new handshakes; if it does
    /// not load the old pair serves on, and the reason is logged and counted.
    pub(crate) fn reload(&self, config: &Config) {
        use crate::metrics::TLS_CERTIFICATE_RELOADS;
        match configured_pair(config).and_then(|(cert, key)| load_pair(&cert, &key)) {
            Ok(pair) => {
                self.current.store(pair);
                metrics::counter!(TLS_CERTIFICATE_RELOADS, "result" => "ok").increment(1);
                tracing::info!("TLS certificate reloaded");
            }
            Err(error) => {
                metrics::counter!(TLS_CERTIFICATE_RELOADS, "result" => "failed").increment(1);
                tracing::error!(%error, "TLS certificate not reloaded: the previous one keeps serving");
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
