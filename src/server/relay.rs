//! The real client behind a relay: which senders may state it (`server.trusted_relays`), and the
//! PROXY protocol v2 header read at the start of a stream.
//!
//! A trusted relay states its client by a PROXY header (parsed in `proxy_protocol`) or by the
//! EDNS Client Subnet option of a query (read in `handler`); the listeners hand the handler the
//! stated client, so that policy, rate limits, the hit log and metrics see it. From any other
//! sender neither counts: whoever could send one would pick their own policy.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use super::handler::{Handler, Worker};
use crate::proxy_protocol::{self, FIXED_LEN, HeaderError, MAX_LEN, SIGNATURE};

/// The `source` labels of the relay counters, by index.
pub(crate) const SOURCES: [&str; 2] = ["proxy", "ecs"];
/// Index of a PROXY header in [`SOURCES`].
pub(crate) const PROXY: usize = 0;
/// Index of a Client Subnet option in [`SOURCES`].
pub(crate) const ECS: usize = 1;

/// How long to wait before looking again at a stream whose first bytes so far match the
/// signature but are too few to decide: a relay sends its header in one segment, so this is
/// rare, and the whole wait is bounded by the I/O timeout.
const PEEK_PAUSE: Duration = Duration::from_millis(5);

/// Whether `sender` lies in one of `relays`.
pub(crate) fn is_trusted(relays: &[IpNet], sender: IpAddr) -> bool {
    // An IPv4 relay reaching a dual-stack socket shows as ::ffff:a.b.c.d.
    let sender = sender.to_canonical();
    relays.iter().any(|net| net.contains(&sender))
}

/// Why a trusted relay's PROXY header was refused: the datagram is dropped, the connection
/// closed, and it is counted by [`Failure::reason`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Failure {
    /// The header did not read.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The header did not arrive within `server.tcp_io_timeout`.
    #[error("PROXY header not received in time")]
    Timeout,
    /// The connection failed or closed inside the header.
    #[error("connection failed while reading the PROXY header")]
    Io,
}

impl Failure {
    /// How many reasons there are: the length of the counters' array.
    pub(crate) const COUNT: usize = 8;
    /// The `reason` labels, by [`Failure::index`].
    pub(crate) const REASONS: [&'static str; Failure::COUNT] = [
        "truncated",
        "version",
        "command",
        "family",
        "address_length",
        "too_long",
        "timeout",
        "io",
    ];

    /// Its place in [`Failure::REASONS`].
    pub(crate) fn index(self) -> usize {
        match self {
            Failure::Header(HeaderError::Truncated) => 0,
            Failure::Header(HeaderError::Version(_)) => 1,
            Failure::Header(HeaderError::Command(_)) => 2,
            Failure::Header(HeaderError::Family(_)) => 3,
            Failure::Header(HeaderError::AddressLength) => 4,
            Failure::Header(HeaderError::TooLong(_)) => 5,
            Failure::Timeout => 6,
            Failure::Io => 7,
        }
    }
}

/// The client of a stream from `sender`: the one a trusted relay states in a PROXY header at its
/// start, else `sender`. None: a trusted relay's header did not read (or come in `timeout`), and
/// the connection must be closed (counted).
pub(crate) async fn stream_client(
    handler: &Handler,
    stream: &mut TcpStream,
    sender: IpAddr,
    timeout: Duration,
) -> Option<IpAddr> {
    if !handler.trusted_relay(sender) {
        return Some(sender);
    }
    let read = read_header(stream, timeout).await;
    let mut worker = Worker::default();
    handler.count_stream_header(read.map(|stated| stated.is_some()), &mut worker);
    handler.flush(&mut worker);
    match read {
        Ok(stated) => Some(stated.map_or(sender, |source| source.ip().to_canonical())),
        Err(error) => {
            tracing::debug!(%sender, %error, "PROXY header refused, connection closed");
            None
        }
    }
}

/// Reads the PROXY header at the start of a stream from a trusted relay, within `timeout`:
/// the client it states, None where the relay's own address stands (a LOCAL header, or no
/// header: a dnsmasq forwarder states its clients by Client Subnet and sends plain DNS). The
/// bytes are looked at first (peeked), so a stream without a header is left as it came; one
/// with a header is read past it. Called before anything else reads the stream: by the TCP
/// listener, and by DoT and DoH before their TLS handshake.
pub(crate) async fn read_header(stream: &mut TcpStream, timeout: Duration) -> Result<Option<SocketAddr>, Failure> {
    match tokio::time::timeout(timeout, read_header_now(stream)).await {
        Ok(read) => read,
        Err(_elapsed) => Err(Failure::Timeout),
    }
}

async fn read_header_now(stream: &mut TcpStream) -> Result<Option<SocketAddr>, Failure> {
    let mut buf = [0u8; MAX_LEN];
    loop {
        let seen = stream.peek(&mut buf[..FIXED_LEN]).await.map_err(|_| Failure::Io)?;
        let head = buf.get(..seen.min(SIGNATURE.len())).unwrap_or_default();
        // Closed before a byte, or plain DNS (its length prefix never starts like the
        // signature): the stream is the DNS reader's.
        if seen == 0 || !proxy_protocol::starts_with_signature(head) {
            return Ok(None);
        }
        if seen >= FIXED_LEN {
            break;
        }
        tokio::time::sleep(PEEK_PAUSE).await;
    }
    let len = proxy_protocol::declared_len(&buf).ok_or(Failure::Header(HeaderError::Truncated))?;
    if len > MAX_LEN {
        return Err(Failure::Header(HeaderError::TooLong(len)));
    }
    let header = buf.get_mut(..len).ok_or(Failure::Header(HeaderError::TooLong(len)))?;
    stream.read_exact(header).await.map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Failure::Header(HeaderError::Truncated),
        _ => Failure::Io,
    })?;
    match proxy_protocol::parse(header)? {
        Some(header) => Ok(header.source),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_is_by_prefix_and_sees_through_mapped_addresses() {
        let relays: Vec<IpNet> = vec!["10.1.0.1/32".parse().unwrap(), "fd00::/64".parse().unwrap()];
        assert!(is_trusted(&relays, "10.1.0.1".parse().unwrap()));
        assert!(is_trusted(&relays, "::ffff:10.1.0.1".parse().unwrap()));
        assert!(is_trusted(&relays, "fd00::53".parse().unwrap()));
        assert!(!is_trusted(&relays, "10.1.0.2".parse().unwrap()));
        assert!(!is_trusted(&[], "10.1.0.1".parse().unwrap()));
    }

    #[test]
    fn every_failure_has_its_own_reason() {
        let all = [
            Failure::Header(HeaderError::Truncated),
            Failure::Header(HeaderError::Version(1)),
            Failure::Header(HeaderError::Command(2)),
            Failure::Header(HeaderError::Family(0x41)),
            Failure::Header(HeaderError::AddressLength),
            Failure::Header(HeaderError::TooLong(2000)),
            Failure::Timeout,
            Failure::Io,
        ];
        for (i, failure) in all.iter().enumerate() {
            assert_eq!(failure.index(), i);
            if let Failure::Header(e) = failure {
                assert_eq!(e.reason(), Failure::REASONS[i]);
            }
        }
    }
}
