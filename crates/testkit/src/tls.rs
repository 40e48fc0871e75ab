//! Certificates for tests of DNS over TLS and HTTPS: a test CA, and server certificates it signs
//! for the name and addresses clients check, written as PEM files a config and a client can name.
//!
//! Made fresh by each test (rcgen, ring): nothing is read from outside the repository, and no
//! test trusts another's CA.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// The name the usual test server certificate is for (`.test` is reserved: RFC 6761).
pub const TLS_NAME: &str = "dns.test";

/// A certificate authority made for one test: clients trust [`TestCa::ca_file`].
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The CA certificate as PEM, for a client's `--cacert`/`+tls-ca`.
    pub ca_pem: String,
}

/// A server certificate and its key, as PEM.
pub struct ServerCert {
    /// The certificate (the leaf alone: the CA is what the client trusts).
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl TestCa {
    /// A fresh CA, "sinkhole test CA".
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("empty SAN list");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, "sinkhole test CA");
        let key = KeyPair::generate().expect("generate a CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-sign the test CA");
        let ca_pem = issuer.pem();
        TestCa { issuer, ca_pem }
    }

    /// A server certificate signed by this CA for `names`: DNS names, or IP addresses (which
    /// become IP SANs, as clients that connect by address check them). Valid until 4096.
    pub fn server_cert(&self, names: &[&str]) -> ServerCert {
        self.server_cert_until(names, (4096, 1, 1))
    }

    /// [`TestCa::server_cert`], valid until midnight UTC of `(year, month, day)`.
    pub fn server_cert_until(&self, names: &[&str], (year, month, day): (i32, u8, u8)) -> ServerCert {
        let names: Vec<String> = names.iter().map(ToString::to_string).collect();
        let mut params = CertificateParams::new(names).expect("valid SANs");
        params.not_after = rcgen::date_time_ymd(year, month, day);
        params.distinguished_name.push(DnType::CommonName, TLS_NAME);
        let key = KeyPair::generate().expect("generate a server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the server certificate");
        ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// The usual server certificate: [`TLS_NAME`] and 127.0.0.1.
    pub fn dns_test_cert(&self) -> ServerCert {
        self.server_cert(&[TLS_NAME, "127.0.0.1"])
    }

    /// Writes the CA certificate to `dir/ca.pem` and returns its path.
    pub fn write_ca(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        fs::write(&path, &self.ca_pem).expect("write ca.pem");
        path
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

impl ServerCert {
    /// Writes `dir/<stem>.crt` and `dir/<stem>.key` (for `server.certificate` and `server.key`).
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let cert = dir.join(format!("{stem}.crt"));
        let key = dir.join(format!("{stem}.key"));
        fs::write(&cert, &self.cert_pem).expect("write the certificate");
        fs::write(&key, &self.key_pem).expect("write the key");
        (cert, key)
    }
}
