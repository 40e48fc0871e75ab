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

/// When the leaf certificate of `pair` expires, in seconds since the Unix epoch; None if its
/// validity cannot be read.
pub fn expiry(pair: &CertifiedKey) -> Option<i64> {
    not_after(pair.end_entity_cert().ok()?)
}

/// The `notAfter` of a DER certificate, in seconds since the Unix epoch (x509-parser, which DDR
/// reads the certificate's names with too); None if it does not parse.
fn not_after(der: &[u8]) -> Option<i64> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(certificate.validity().not_after.timestamp())
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
        export_expiry(&pair);
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
                export_expiry(&pair);
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

/// Sets `sinkhole_tls_certificate_expiry_timestamp_seconds` to the expiry of `pair`, now serving.
fn export_expiry(pair: &CertifiedKey) {
    if let Some(expiry) = expiry(pair) {
        metrics::gauge!(crate::metrics::TLS_CERTIFICATE_EXPIRY).set(expiry as f64);
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinkhole_testkit::{TLS_NAME, TestCa, TestDir};

    fn pair_until(date: (i32, u8, u8)) -> Arc<CertifiedKey> {
        let dir = TestDir::new();
        let (cert, key) = TestCa::new()
            .server_cert_until(&[TLS_NAME], date)
            .write(dir.path(), "s");
        load_pair(&cert, &key).expect("a good pair")
    }

    #[test]
    fn the_expiry_is_read_in_both_time_formats() {
        // UTCTime up to 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5).
        assert_eq!(expiry(&pair_until((2031, 2, 3))), Some(1_927_843_200));
        assert_eq!(expiry(&pair_until((2060, 1, 1))), Some(2_840_140_800));
    }

    #[test]
    fn a_truncated_certificate_has_no_expiry() {
        let pair = pair_until((2031, 2, 3));
        let der = pair.end_entity_cert().expect("a leaf");
        for len in [0, 1, 10, 100, der.len() / 2] {
            assert_eq!(not_after(&der[..len]), None, "{len}");
        }
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_naming_both_files() {
        let dir = TestDir::new();
        let ca = TestCa::new();
        let (cert, _) = ca.dns_test_cert().write(dir.path(), "a");
        let (_, key) = ca.dns_test_cert().write(dir.path(), "b");
        let error = load_pair(&cert, &key).expect_err("a mismatch").to_string();
        assert!(
            error.contains("b.key: this key does not match the certificate"),
            "{error}"
        );
        assert!(error.contains("a.crt"), "{error}");
    }
}
