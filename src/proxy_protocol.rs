//! The PROXY protocol v2 header (HAProxy's proxy-protocol.txt, section 2.2): what a relay in
//! front of sinkhole (dnsdist, HAProxy, a load balancer) puts before the DNS bytes to say which
//! client it relays for.
//!
//! Only the binary v2 form is read: it is what DNS relays send, over TCP at the start of a
//! connection and over UDP at the start of each datagram. Layer 1: no I/O, no allocation, any
//! input gives a header, "not a header", or an error, so that it is fuzzed as it is
//! (`fuzz/fuzz_targets/proxy_header.rs`). Whether a sender may state a client at all is the
//! server's call (`server.trusted_relays`), not this module's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The 12 bytes every v2 header starts with. Chosen by the spec so that no DNS message over UDP
/// or TCP and no text protocol starts with them.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part: signature, version and command, family and transport, length.
pub const FIXED_LEN: usize = 16;

/// The longest header we take (fixed part, addresses and TLVs). Relays send 28 (IPv4) or 52
/// (IPv6) bytes plus a few TLVs; a longer one is refused rather than buffered without a bound.
pub const MAX_LEN: usize = 1024;

/// Address bytes of the PROXY command, by family: two addresses and two ports.
const INET_LEN: usize = 12;
const INET6_LEN: usize = 36;

/// A parsed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Its length in bytes: what follows is the DNS message (UDP) or stream (TCP).
    pub len: usize,
    /// The client the relay states; None where the relay's own address stands: the LOCAL
    /// command (its health checks) or a PROXY command for a family without an IP address
    /// (UNSPEC, UNIX).
    pub source: Option<SocketAddr>,
}

/// Why bytes that start with the signature are not a header we take. Each has a metric label
/// ([`HeaderError::reason`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer bytes than the header says it has (or than its fixed part).
    #[error("PROXY header cut short")]
    Truncated,
    /// A version other than 2.
    #[error("PROXY header version {0} (only 2 is read)")]
    Version(u8),
    /// A command other than LOCAL (0) or PROXY (1).
    #[error("PROXY header command {0} is not LOCAL or PROXY")]
    Command(u8),
    /// An address family or transport byte the spec does not define.
    #[error("PROXY header family/transport byte {0:#04x} is not defined")]
    Family(u8),
    /// A length too short for the addresses of its family.
    #[error("PROXY header too short for its addresses")]
    AddressLength,
    /// Longer than [`MAX_LEN`].
    #[error("PROXY header of {0} bytes is longer than {MAX_LEN}")]
    TooLong(usize),
}

impl HeaderError {
    /// The `reason` label of `sinkhole_proxy_header_errors_total`.
    pub fn reason(self) -> &'static str {
        match self {
            HeaderError::Truncated => "truncated",
            HeaderError::Version(_) => "version",
            HeaderError::Command(_) => "command",
            HeaderError::Family(_) => "family",
            HeaderError::AddressLength => "address_length",
            HeaderError::TooLong(_) => "too_long",
        }
    }
}

/// Whether `bytes` start like a v2 header (as far as they go): a plain DNS message never does.
pub fn starts_with_signature(bytes: &[u8]) -> bool {
    let n = bytes.len().min(SIGNATURE.len());
    n > 0 && bytes[..n] == SIGNATURE[..n]
}

/// The length the fixed part of a header says the whole has (at least [`FIXED_LEN`] bytes of
/// `fixed` are needed): what a stream reader reads next.
pub fn declared_len(fixed: &[u8]) -> Option<usize> {
    let len = u16::from_be_bytes([*fixed.get(14)?, *fixed.get(15)?]);
    Some(FIXED_LEN + usize::from(len))
}

/// Reads the header at the start of `bytes`: Ok(None) if they do not start with the signature
/// (a plain DNS message), the header if they do and it reads. TLVs after the addresses are
/// skipped: nothing in them changes who the client is.
pub fn parse(bytes: &[u8]) -> Result<Option<Header>, HeaderError> {
    if bytes.len() < SIGNATURE.len() || bytes[..SIGNATURE.len()] != SIGNATURE {
        return Ok(None);
    }
    let Some(len) = declared_len(bytes) else {
        return Err(HeaderError::Truncated);
    };
    if len > MAX_LEN {
        return Err(HeaderError::TooLong(len));
    }
    let Some(body) = bytes.get(FIXED_LEN..len) else {
        return Err(HeaderError::Truncated);
    };
    let (version, command) = (bytes[12] >> 4, bytes[12] & 0x0f);
    if version != 2 {
        return Err(HeaderError::Version(version));
    }
    let proxied = match command {
        0 => false,
        1 => true,
        other => return Err(HeaderError::Command(other)),
    };
    let family = bytes[13];
    let (family_nibble, transport) = (family >> 4, family & 0x0f);
    if family_nibble > 3 || transport > 2 {
        return Err(HeaderError::Family(family));
    }
    let source = match (proxied, family_nibble) {
        // LOCAL: the relay speaks for itself; whatever addresses follow are ignored (spec).
        (false, _) | (true, 0 | 3) => None,
        (true, _) if transport == 0 => return Err(HeaderError::Family(family)),
        (true, 1) => {
            let a = body.get(..INET_LEN).ok_or(HeaderError::AddressLength)?;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([a[8], a[9]])))
        }
        (true, _) => {
            let a = body.get(..INET6_LEN).ok_or(HeaderError::AddressLength)?;
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&a[..16]);
            let ip = Ipv6Addr::from(octets);
            Some(SocketAddr::new(IpAddr::V6(ip), u16::from_be_bytes([a[32], a[33]])))
        }
    };
    Ok(Some(Header { len, source }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 header: `command` (0 LOCAL, 1 PROXY), `family` byte, address bytes, then `tlvs`.
    fn header(command: u8, family: u8, addresses: &[u8], tlvs: &[u8]) -> Vec<u8> {
        let mut h = SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&u16::try_from(addresses.len() + tlvs.len()).unwrap().to_be_bytes());
        h.extend_from_slice(addresses);
        h.extend_from_slice(tlvs);
        h
    }

    fn inet(src: [u8; 4], port: u16) -> Vec<u8> {
        let mut a = src.to_vec();
        a.extend_from_slice(&[127, 0, 0, 1]);
        a.extend_from_slice(&port.to_be_bytes());
        a.extend_from_slice(&53u16.to_be_bytes());
        a
    }

    fn inet6(src: Ipv6Addr, port: u16) -> Vec<u8> {
        let mut a = src.octets().to_vec();
        a.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        a.extend_from_slice(&port.to_be_bytes());
        a.extend_from_slice(&53u16.to_be_bytes());
        a
    }

    const DNS: &[u8] = &[0xbe, 0xef, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];

    #[test]
    fn proxy_over_every_family_and_transport_states_the_source() {
        let v6: Ipv6Addr = "2001:db8::7".parse().unwrap();
        for (family, addresses, want) in [
            (0x11, inet([10, 9, 0, 5], 4242), "10.9.0.5:4242"),
            (0x12, inet([10, 9, 0, 5], 4242), "10.9.0.5:4242"),
            (0x21, inet6(v6, 7), "[2001:db8::7]:7"),
            (0x22, inet6(v6, 7), "[2001:db8::7]:7"),
        ] {
            let mut bytes = header(1, family, &addresses, &[]);
            let len = bytes.len();
            bytes.extend_from_slice(DNS);
            let parsed = parse(&bytes).unwrap().unwrap();
            assert_eq!(parsed.source, Some(want.parse().unwrap()), "family {family:#x}");
            assert_eq!(parsed.len, len);
            assert_eq!(&bytes[parsed.len..], DNS);
        }
    }

    #[test]
    fn local_and_unspec_keep_the_relay() {
        for bytes in [
            header(0, 0x00, &[], &[]),
            // LOCAL with addresses: they are ignored.
            header(0, 0x11, &inet([10, 9, 0, 5], 1), &[]),
            header(1, 0x00, &[], &[]),
            header(1, 0x31, &[0; 216], &[]),
        ] {
            assert_eq!(parse(&bytes).unwrap().unwrap().source, None, "{bytes:?}");
        }
    }

    #[test]
    fn tlvs_are_skipped() {
        // PP2_TYPE_AUTHORITY "dns.example" and a PP2_TYPE_NOOP.
        let mut tlvs = vec![0x02, 0, 11];
        tlvs.extend_from_slice(b"dns.example");
        tlvs.extend_from_slice(&[0x04, 0, 2, 0, 0]);
        let mut bytes = header(1, 0x12, &inet([10, 9, 0, 5], 9), &tlvs);
        let len = bytes.len();
        bytes.extend_from_slice(DNS);
        let parsed = parse(&bytes).unwrap().unwrap();
        assert_eq!(parsed.len, len);
        assert_eq!(parsed.source, Some("10.9.0.5:9".parse().unwrap()));
    }

    #[test]
    fn dns_is_not_a_header() {
        assert_eq!(parse(DNS), Ok(None));
        assert_eq!(parse(&[]), Ok(None));
        assert!(!starts_with_signature(DNS));
        assert!(starts_with_signature(&SIGNATURE[..3]));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let full = header(1, 0x21, &inet6(Ipv6Addr::LOCALHOST, 1), &[1, 0, 1, 0]);
        for cut in SIGNATURE.len()..full.len() {
            assert_eq!(parse(&full[..cut]), Err(HeaderError::Truncated), "cut at {cut}");
        }
        assert!(parse(&full).is_ok());
    }

    #[test]
    fn malformed_headers_are_errors() {
        let mut version1 = header(1, 0x11, &inet([1, 2, 3, 4], 1), &[]);
        version1[12] = 0x11;
        assert_eq!(parse(&version1), Err(HeaderError::Version(1)));
        assert_eq!(parse(&header(2, 0x11, &[], &[])), Err(HeaderError::Command(2)));
        assert_eq!(parse(&header(1, 0x41, &[], &[])), Err(HeaderError::Family(0x41)));
        assert_eq!(parse(&header(1, 0x13, &[], &[])), Err(HeaderError::Family(0x13)));
        assert_eq!(parse(&header(1, 0x10, &[0; 12], &[])), Err(HeaderError::Family(0x10)));
        // A length that does not cover the addresses of its family.
        assert_eq!(parse(&header(1, 0x11, &[0; 11], &[])), Err(HeaderError::AddressLength));
        assert_eq!(parse(&header(1, 0x21, &[0; 12], &[])), Err(HeaderError::AddressLength));
        let long = header(1, 0x11, &inet([1, 2, 3, 4], 1), &[0; MAX_LEN]);
        assert!(matches!(parse(&long), Err(HeaderError::TooLong(_))));
    }
}
