//! The TLS layer of DNS over TLS (RFC 7858) and DNS over HTTPS (RFC 8484): the rustls server
//! configs of each (ALPN `dot`; `h2` and `http/1.1`), and a handshake bounded in time.
//!
//! Connections are accepted and admitted by the TCP side (src/server/tcp.rs), under the same
//! limits as plain TCP: a TLS client takes a connection slot like any other. What follows the
//! handshake is the TCP side's (DoT: the same framing and pipeline) or src/server/doh.rs's.
//! rustls with ring only, as everywhere in the daemon.

use std::sync::Arc;
use std::time::Duration;

use metrics::Counter;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::certs::CertStore;

/// What a listener serves after the handshake, which sets its ALPN protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Alpn {
    /// DNS over TLS: `dot` (RFC 7858 and the IANA registry).
    Dot,
    /// DNS over HTTPS: HTTP/2 first, HTTP/1.1 for older clients.
    Doh,
}

/// A TLS acceptor presenting the certificate of `store` (reloads included).
pub(crate) fn acceptor(store: Arc<CertStore>, alpn: Alpn) -> Result<TlsAcceptor, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(store);
    config.alpn_protocols = match alpn {
        Alpn::Dot => vec![b"dot".to_vec()],
        Alpn::Doh => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Handshakes that failed, by reason: `sinkhole_tls_handshake_failures_total{reason}`.
#[derive(Clone)]
pub(crate) struct HandshakeMetrics {
    /// `reason="timeout"`: not done within `server.tls_handshake_timeout`.
    timeout: Counter,
    /// `reason="error"`: the client spoke something else, or gave up, or refused our certificate.
    error: Counter,
}

impl HandshakeMetrics {
    pub(crate) fn new() -> HandshakeMetrics {
        use crate::metrics::TLS_HANDSHAKE_FAILURES;
        HandshakeMetrics {
            timeout: metrics::counter!(TLS_HANDSHAKE_FAILURES, "reason" => "timeout"),
            error: metrics::counter!(TLS_HANDSHAKE_FAILURES, "reason" => "error"),
        }
    }
}

/// Runs the server side of a handshake on an admitted connection, within `timeout`: a client
/// that connects and never finishes (or never starts) is closed, its slot given back. None (and
/// counted) when the handshake did not complete.
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
    metrics: &HandshakeMetrics,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(error)) => {
            metrics.error.increment(1);
            tracing::debug!(%error, "TLS handshake failed");
            None
        }
        Err(_) => {
            metrics.timeout.increment(1);
            tracing::debug!("TLS handshake timed out");
            None
        }
    }
}
