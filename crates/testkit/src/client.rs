//! A DNS client for tests: blocking std sockets from a chosen loopback source address (policies match on the
//! client address, and Linux lets a socket bind any 127.x.y.z), replies parsed with hickory-proto.
//!
//! Every function either returns what arrived or says why nothing usable did; none retries or invents an answer.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// How long the `query_*` functions wait for a reply: long enough for a loaded CI machine, short enough that a
/// test expecting silence does not crawl. Use [`exchange_udp`]/[`exchange_tcp`] for another timeout.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// The EDNS payload size the client advertises when it sends EDNS (the DNS flag day 2020 value).
pub const CLIENT_EDNS_PAYLOAD: u16 = 1232;
/// The EDE option code (RFC 8914), which hickory 0.26 does not name.
pub const EDE_OPTION: u16 = 15;
/// Bound on datagrams read while waiting for the one with our id, so a flood cannot keep a test busy forever.
const MAX_DATAGRAMS: usize = 256;

/// `s` as an address: test input, so a typo panics at once.
pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Builds a recursive query (RD set) for `name` with a random id; `edns` adds an OPT record advertising 1232 bytes,
/// `dnssec_ok` sets its DO bit. Panics if `name` is not a valid domain name: that is a bug in the test.
pub fn new_query(name: &str, qtype: RecordType, edns: bool, dnssec_ok: bool) -> Message {
    let fqdn = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    let qname = Name::from_ascii(&fqdn).unwrap_or_else(|e| panic!("new_query: {name:?} is not a domain name: {e}"));
    let mut query = Message::query();
    query.metadata.recursion_desired = true;
    query.add_query(hickory_proto::op::Query::query(qname, qtype));
    if edns || dnssec_ok {
        let mut opt = Edns::new();
        opt.set_max_payload(CLIENT_EDNS_PAYLOAD);
        opt.set_dnssec_ok(dnssec_ok);
        query.edns = Some(opt);
    }
    query
}

/// One UDP query from `src` (e.g. 127.10.0.5) with or without EDNS, returning the parsed reply, or an error after
/// [`TIMEOUT`]. Replies with another id are skipped, as a stub resolver does (the error says if any came).
pub fn query_udp(
    server: SocketAddr,
    src: IpAddr,
    name: &str,
    qtype: RecordType,
    edns: bool,
) -> Result<Message, String> {
    exchange_udp(server, src, &new_query(name, qtype, edns, false), TIMEOUT)
}

/// One query over a fresh TCP connection from `src`, returning the parsed reply, or an error after [`TIMEOUT`].
pub fn query_tcp(
    server: SocketAddr,
    src: IpAddr,
    name: &str,
    qtype: RecordType,
    edns: bool,
) -> Result<Message, String> {
    let mut replies = exchange_tcp(server, src, &[new_query(name, qtype, edns, false)], TIMEOUT)?;
    replies
        .pop()
        .ok_or_else(|| format!("{server}: TCP exchange returned no reply for {name} {qtype}"))
}

/// Several queries (without EDNS) written at once on one TCP connection; the replies in the order they arrived,
/// which need not be the order asked (RFC 7766 lets a server answer out of order). Match them by question or id.
pub fn query_tcp_pipelined(
    server: SocketAddr,
    src: IpAddr,
    names: &[(&str, RecordType)],
) -> Result<Vec<Message>, String> {
    let first_id = Message::query().metadata.id;
    let queries: Vec<Message> = names
        .iter()
        .zip(0u16..)
        .map(|((name, qtype), i)| {
            let mut query = new_query(name, *qtype, false, false);
            // Distinct ids on one connection, or replies could not be told apart.
            query.metadata.id = first_id.wrapping_add(i);
            query
        })
        .collect();
    exchange_tcp(server, src, &queries, TIMEOUT)
}

/// Sends `query` over UDP from `src` and returns the first reply carrying its id, parsed. Replies with other ids
/// are skipped (and listed in the error if no right one comes); a reply with the right id that does not parse is
/// an error, as is an ICMP "port unreachable" (nothing listening).
pub fn exchange_udp(server: SocketAddr, src: IpAddr, query: &Message, timeout: Duration) -> Result<Message, String> {
    let what = describe_query(query);
    let socket = udp_socket(server, src)?;
    let bytes = query.to_vec().map_err(|e| format!("encode {what}: {e}"))?;
    socket
        .send(&bytes)
        .map_err(|e| format!("{server}: send {what} over UDP: {e}"))?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65_535];
    let mut skipped_ids = Vec::new();
    for _ in 0..MAX_DATAGRAMS {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| format!("set UDP read timeout: {e}"))?;
        let len = match socket.recv(&mut buf) {
            Ok(len) => len,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => {
                return Err(format!("{server}: waiting for the reply to {what} over UDP: {e}"));
            }
        };
        let reply = &buf[..len];
        match reply_id(reply) {
            Some(id) if id == query.metadata.id => {
                return Message::from_vec(reply).map_err(|e| {
                    format!(
                        "{server}: reply to {what} over UDP is not a DNS message ({e}): {}",
                        hex(reply)
                    )
                });
            }
            Some(id) => skipped_ids.push(id),
            None => skipped_ids.push(0),
        }
    }
    let skipped = if skipped_ids.is_empty() {
        String::new()
    } else {
        format!(
            " (skipped {} replies with other ids: {skipped_ids:?})",
            skipped_ids.len()
        )
    };
    Err(format!("{server}: no UDP reply to {what} within {timeout:?}{skipped}"))
}

/// Writes all `queries` at once on one fresh TCP connection from `src` and reads one reply per query, in arrival
/// order. Strict, unlike UDP: on TCP nobody can spoof, so a reply whose id matches no outstanding query is an error.
pub fn exchange_tcp(
    server: SocketAddr,
    src: IpAddr,
    queries: &[Message],
    timeout: Duration,
) -> Result<Vec<Message>, String> {
    let deadline = Instant::now() + timeout;
    let mut stream = tcp_connect(server, src, timeout)?;
    let mut framed = Vec::new();
    for query in queries {
        let bytes = query
            .to_vec()
            .map_err(|e| format!("encode {}: {e}", describe_query(query)))?;
        let len = u16::try_from(bytes.len()).map_err(|_| format!("{} is over 65535 bytes", describe_query(query)))?;
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&bytes);
    }
    stream
        .write_all(&framed)
        .map_err(|e| format!("{server}: write {} queries over TCP: {e}", queries.len()))?;
    let mut outstanding: Vec<u16> = queries.iter().map(|q| q.metadata.id).collect();
    let mut replies = Vec::with_capacity(queries.len());
    while !outstanding.is_empty() {
        let waiting_for = || {
            let names: Vec<String> = queries
                .iter()
                .filter(|q| outstanding.contains(&q.metadata.id))
                .map(describe_query)
                .collect();
            names.join(", ")
        };
        let mut len = [0u8; 2];
        read_before(&mut stream, &mut len, deadline)
            .map_err(|e| format!("{server}: TCP reply length for {}: {e}", waiting_for()))?;
        let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
        read_before(&mut stream, &mut reply, deadline)
            .map_err(|e| format!("{server}: TCP reply body for {}: {e}", waiting_for()))?;
        let id = reply_id(&reply).ok_or_else(|| format!("{server}: TCP reply too short to be DNS: {}", hex(&reply)))?;
        let Some(at) = outstanding.iter().position(|&o| o == id) else {
            return Err(format!(
                "{server}: TCP reply with id {id} matches no outstanding query ({})",
                waiting_for()
            ));
        };
        outstanding.swap_remove(at);
        let message = Message::from_vec(&reply).map_err(|e| {
            format!(
                "{server}: TCP reply with id {id} is not a DNS message ({e}): {}",
                hex(&reply)
            )
        })?;
        replies.push(message);
    }
    Ok(replies)
}

/// Sends raw bytes over UDP from `src` and returns the first datagram that comes back within `timeout`, whatever
/// it is, or `None`: for malformed-packet tests, where "no reply" is often the right behaviour.
pub fn send_raw_udp(server: SocketAddr, src: IpAddr, bytes: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let socket = udp_socket(server, src).unwrap_or_else(|e| panic!("send_raw_udp: {e}"));
    socket
        .send(bytes)
        .unwrap_or_else(|e| panic!("send_raw_udp: send to {server}: {e}"));
    socket
        .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
        .unwrap_or_else(|e| panic!("send_raw_udp: set read timeout: {e}"));
    let mut buf = vec![0u8; 65_535];
    // Any error (timeout, or "port unreachable" when nothing listens) means no reply came.
    let len = socket.recv(&mut buf).ok()?;
    buf.truncate(len);
    Some(buf)
}

/// The first Extended DNS Error (RFC 8914, option 15) of a reply, if any: (info code, extra text). Panics if the
/// option is there but shorter than its 2-byte info code: the daemon sent a malformed EDE.
pub fn ede(msg: &Message) -> Option<(u16, String)> {
    edes(msg).into_iter().next()
}

/// Every Extended DNS Error of a reply (RFC 8914 allows several), in the order they appear.
pub fn edes(msg: &Message) -> Vec<(u16, String)> {
    let Some(edns) = &msg.edns else {
        return Vec::new();
    };
    edns.options()
        .get_all(EdnsCode::from(EDE_OPTION))
        .into_iter()
        .map(|option| match option {
            EdnsOption::Unknown(_, data) if data.len() >= 2 => (
                u16::from_be_bytes([data[0], data[1]]),
                String::from_utf8_lossy(&data[2..]).into_owned(),
            ),
            other => panic!("malformed EDE option (needs a 2-byte info code): {other:?}"),
        })
        .collect()
}

/// The A/AAAA addresses of the answer section as strings ("192.0.2.1", "2001:db8::1"), in order; CNAMEs and other
/// records are left out.
pub fn addresses(msg: &Message) -> Vec<String> {
    msg.answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(aaaa) => Some(aaaa.0.to_string()),
            _ => None,
        })
        .collect()
}

/// The TTLs of every answer record (CNAMEs included), in order: for cache tests that watch TTLs count down.
pub fn answer_ttls(msg: &Message) -> Vec<u32> {
    msg.answers.iter().map(|record| record.ttl).collect()
}

/// A UDP socket bound to `src` and connected to `server`, so the kernel drops datagrams from anyone else and
/// reports "port unreachable" as an error instead of a silent timeout.
fn udp_socket(server: SocketAddr, src: IpAddr) -> Result<UdpSocket, String> {
    let socket = UdpSocket::bind(SocketAddr::new(src, 0)).map_err(|e| {
        format!("bind UDP source {src}: {e} (a loopback source must be 127.0.0.0/8 or ::1, same family as {server})")
    })?;
    socket
        .connect(server)
        .map_err(|e| format!("connect UDP {src} -> {server}: {e}"))?;
    Ok(socket)
}

/// A TCP connection from `src` (std cannot bind before connecting, socket2 can).
pub fn tcp_connect(server: SocketAddr, src: IpAddr, timeout: Duration) -> Result<TcpStream, String> {
    let socket = Socket::new(Domain::for_address(server), Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| format!("TCP socket for {server}: {e}"))?;
    socket
        .bind(&SockAddr::from(SocketAddr::new(src, 0)))
        .map_err(|e| format!("bind TCP source {src}: {e}"))?;
    socket
        .connect_timeout(&SockAddr::from(server), timeout)
        .map_err(|e| format!("connect TCP {src} -> {server}: {e}"))?;
    Ok(TcpStream::from(socket))
}

/// `read_exact` that gives up at `deadline` ("timed out") or when the server closes the connection early.
fn read_before(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Result<(), String> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("timed out after {filled} of {} bytes", buf.len()));
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|e| format!("set TCP read timeout: {e}"))?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(format!("connection closed after {filled} of {} bytes", buf.len()));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!("timed out after {filled} of {} bytes", buf.len()));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// The id of a DNS message, if it is long enough to have one.
fn reply_id(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

/// "name TYPE (id N)" for error messages.
fn describe_query(query: &Message) -> String {
    match query.queries.first() {
        Some(q) => format!("{} {} (id {})", q.name(), q.query_type(), query.metadata.id),
        None => format!("query without question (id {})", query.metadata.id),
    }
}

/// Bytes as hex, for error messages about things that are not DNS.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
