//! A fast loopback DNS responder for benchmarks and tests: the bench upstream
//! (`cargo run --release -p sinkhole-bench --bin bench-upstream -- ADDR`) and the tiny server the replay tests
//! load. It answers every query at once, from the question alone, as the fake upstream does (the one table,
//! [`Script`]): [`Script::Default`], [`Script::Nx`], [`Script::Cname`] and [`Script::Large`] are played, every
//! other script is answered as `Default` (a measuring tool has no use for noise or delays).
//!
//! The answer has the query's id, question and RD, with RA set. If the query has an OPT record the
//! answer has one too (payload 1232, DO copied). Queries that do not parse are ignored.
//!
//! UDP is served with `recvmmsg`/`sendmmsg` batches (one thread per socket, SO_REUSEPORT for
//! more), TCP with a thread per connection (at most [`MAX_TCP_CONNECTIONS`]). It binds loopback
//! addresses only: it is a measuring tool, never a resolver anyone should reach.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use sinkhole_batchio::{self as sys, Batch};
use sinkhole_dns::packet;
use sinkhole_dns::wire::{CLASS_IN, HEADER_LEN, flag, push_name, push_u16, rtype};

use crate::answers::*;

/// Most TCP connections served at once; more wait in the listen backlog.
pub const MAX_TCP_CONNECTIONS: usize = 64;
/// Messages per recvmmsg/sendmmsg.
const BATCH: usize = 32;
/// Largest query read; larger ones are cut and then do not parse.
const QUERY_BUF: usize = 4096;
/// Room for any answer: the largest is `large.*`'s.
const ANSWER_BUF: usize = 65_507;
/// How often the serve loops look at their stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// An idle TCP connection is closed after this.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Attempts to find a port free for both UDP and TCP when binding port 0.
const BIND_ATTEMPTS: usize = 20;

/// Writes the answer to `query` into `out` (cleared first); false, leaving `out` empty, if the
/// query does not parse and gets no answer.
pub fn answer(query: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    let Ok(q) = packet::parse(query) else {
        return false;
    };
    let name = q.name.as_bytes();
    let script = Script::for_name(name);
    let (nx, cname) = (script == Script::Nx, script == Script::Cname);
    let large = script == Script::Large && q.qtype == rtype::A;
    let address = |v4, v6| match q.qtype {
        rtype::A => Some(IpAddr::V4(v4)),
        rtype::AAAA => Some(IpAddr::V6(v6)),
        _ => None,
    };
    let (rcode, answers, soa) = if nx {
        (3u16, 0u16, true)
    } else if cname {
        let target = address(CNAME_V4, CNAME_V6);
        (0, 1 + u16::from(target.is_some()), false)
    } else if large {
        (0, LARGE_RECORDS, false)
    } else {
        let a = address(DEFAULT_V4, DEFAULT_V6);
        (0, u16::from(a.is_some()), a.is_none())
    };
    push_u16(out, q.id);
    push_u16(out, flag::QR | (q.flags & flag::RD) | flag::RA | rcode);
    for count in [1, answers, u16::from(soa), u16::from(q.edns.is_some())] {
        push_u16(out, count);
    }
    out.extend_from_slice(&query[q.question.clone()]);
    let owner = 0xc000 | HEADER_LEN as u16;
    if cname {
        push_record_head(out, owner, rtype::CNAME, DEFAULT_TTL);
        let target_at = out.len() + 2;
        let mut rdata = Vec::with_capacity(TIKTOK_CNAME_TARGET.len() + 2);
        push_name(&mut rdata, TIKTOK_CNAME_TARGET);
        push_u16(out, rdata.len() as u16);
        out.extend_from_slice(&rdata);
        if let Some(ip) = address(CNAME_V4, CNAME_V6) {
            push_address(out, 0xc000 | target_at as u16, ip);
        }
    } else if large {
        for i in 0..LARGE_RECORDS {
            let [high, low] = i.to_be_bytes();
            push_address(out, owner, IpAddr::V4(Ipv4Addr::new(10, 0, high, low)));
        }
    } else if let Some(ip) = address(DEFAULT_V4, DEFAULT_V6).filter(|_| !nx) {
        push_address(out, owner, ip);
    }
    if soa {
        // Owned by the parent of the name asked (the root for a single label), as a zone's would be.
        let parent = match name.iter().position(|&b| b == b'.') {
            Some(dot) => 0xc000 | (HEADER_LEN + dot + 1) as u16,
            None => 0,
        };
        if parent == 0 {
            out.push(0);
        } else {
            push_u16(out, parent);
        }
        push_u16(out, rtype::SOA);
        push_u16(out, CLASS_IN);
        out.extend_from_slice(&SOA_TTL.to_be_bytes());
        let mut rdata = Vec::with_capacity(64);
        push_name(&mut rdata, SOA_MNAME);
        push_name(&mut rdata, SOA_RNAME);
        for value in [1, 3600, 600, 86400, SOA_MINIMUM] {
            rdata.extend_from_slice(&u32::to_be_bytes(value));
        }
        push_u16(out, rdata.len() as u16);
        out.extend_from_slice(&rdata);
    }
    if let Some(edns) = q.edns {
        out.push(0);
        push_u16(out, rtype::OPT);
        push_u16(out, EDNS_PAYLOAD);
        out.extend_from_slice(&[0, 0, if edns.dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    true
}

/// Owner (a compression pointer), type, class IN and TTL; RDLENGTH and RDATA follow.
fn push_record_head(out: &mut Vec<u8>, owner: u16, rtype: u16, ttl: u32) {
    push_u16(out, owner);
    push_u16(out, rtype);
    push_u16(out, CLASS_IN);
    out.extend_from_slice(&ttl.to_be_bytes());
}

fn push_address(out: &mut Vec<u8>, owner: u16, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            push_record_head(out, owner, rtype::A, DEFAULT_TTL);
            push_u16(out, 4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            push_record_head(out, owner, rtype::AAAA, DEFAULT_TTL);
            push_u16(out, 16);
            out.extend_from_slice(&v6.octets());
        }
    }
}

/// The sockets of a responder: `udp` sockets sharing one port with SO_REUSEPORT (one per serving
/// thread) and a TCP listener on the same port.
pub struct Sockets {
    /// UDP sockets, each served by its own thread.
    pub udp: Vec<UdpSocket>,
    /// The TCP listener.
    pub tcp: TcpListener,
    /// The address both are bound to (the real port when 0 was asked).
    pub addr: SocketAddr,
}

/// Binds `udp_sockets` UDP sockets and a TCP listener to `addr` (port 0: a free port, the same
/// for both). Refuses any address but loopback.
pub fn bind(addr: SocketAddr, udp_sockets: usize) -> io::Result<Sockets> {
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{addr} is not a loopback address: the bench responder serves 127.0.0.0/8 and ::1 only"),
        ));
    }
    for _ in 0..BIND_ATTEMPTS {
        let first = bind_udp(addr)?;
        let bound = first.local_addr()?;
        let tcp = match TcpListener::bind(bound) {
            Ok(tcp) => tcp,
            Err(e) if addr.port() == 0 && e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        };
        let mut udp = vec![first];
        for _ in 1..udp_sockets.max(1) {
            udp.push(bind_udp(bound)?);
        }
        return Ok(Sockets { udp, tcp, addr: bound });
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "no port free for both UDP and TCP on {} after {BIND_ATTEMPTS} attempts",
            addr.ip()
        ),
    ))
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    // Best effort: a bigger queue only absorbs bursts.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Serves UDP on `socket` until `stop` is set: waits for queries, reads up to a batch with one
/// `recvmmsg`, answers them with one `sendmmsg`. Returns how many queries it answered.
pub fn serve_udp(socket: &UdpSocket, stop: &AtomicBool) -> io::Result<u64> {
    let fd = socket.as_fd();
    let mut inbox = Batch::new(BATCH, QUERY_BUF);
    let mut outbox = Batch::new(BATCH, ANSWER_BUF);
    let mut scratch = Vec::with_capacity(ANSWER_BUF);
    let mut ready = [false];
    let mut answered = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let got = match inbox.recv(fd, BATCH, true) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                sys::wait_readable([fd], &mut ready, STOP_CHECK)?;
                continue;
            }
            // ICMP errors from earlier answers (a client gone) and interrupted calls: not ours to fix.
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted) => continue,
            Err(e) => return Err(e),
        };
        let mut n = 0;
        for i in 0..got {
            let Some(peer) = inbox.peer(i) else { continue };
            if inbox.truncated(i) || !answer(inbox.received(i), &mut scratch) || scratch.len() > ANSWER_BUF {
                continue;
            }
            outbox.buf_mut(n)[..scratch.len()].copy_from_slice(&scratch);
            outbox.set_len(n, scratch.len());
            outbox.set_peer(n, peer);
            n += 1;
        }
        let mut sent = 0;
        // Bounded: each round sends at least one answer or gives up on the rest.
        while sent < n {
            match outbox.send_from(fd, sent, n - sent) {
                Ok(0) | Err(_) => break,
                Ok(k) => sent += k,
            }
        }
        answered += sent as u64;
    }
    Ok(answered)
}

/// Serves TCP on `listener` until `stop` is set, a thread per connection (at most
/// [`MAX_TCP_CONNECTIONS`]), each closed after [`TCP_IDLE`] without a query.
pub fn serve_tcp(listener: &TcpListener, stop: &Arc<AtomicBool>) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let active = Arc::new(AtomicUsize::new(0));
    let mut ready = [false];
    while !stop.load(Ordering::Relaxed) {
        if active.load(Ordering::Relaxed) >= MAX_TCP_CONNECTIONS {
            thread::sleep(STOP_CHECK / 10);
            continue;
        }
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                sys::wait_readable([listener.as_fd()], &mut ready, STOP_CHECK)?;
                continue;
            }
            Err(_) => continue,
        };
        active.fetch_add(1, Ordering::Relaxed);
        let (active, stop) = (Arc::clone(&active), Arc::clone(stop));
        thread::spawn(move || {
            // A connection's failure is the client's business; the responder goes on.
            let _ = serve_connection(stream, &stop);
            active.fetch_sub(1, Ordering::Relaxed);
        });
    }
    Ok(())
}

fn serve_connection(mut stream: TcpStream, stop: &AtomicBool) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(TCP_IDLE))?;
    stream.set_nodelay(true)?;
    let mut query = vec![0; u16::MAX as usize];
    let mut out = Vec::with_capacity(ANSWER_BUF + 2);
    let mut scratch = Vec::with_capacity(ANSWER_BUF);
    while !stop.load(Ordering::Relaxed) {
        let mut len = [0; 2];
        stream.read_exact(&mut len)?;
        let len = usize::from(u16::from_be_bytes(len));
        stream.read_exact(&mut query[..len])?;
        if answer(&query[..len], &mut scratch) {
            out.clear();
            out.extend_from_slice(&(scratch.len() as u16).to_be_bytes());
            out.extend_from_slice(&scratch);
            stream.write_all(&out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::{RData, RecordType};
    use sinkhole_dns::packet::encode_query;

    fn ask(name: &str, qtype: u16, edns: bool) -> Message {
        let mut query = Vec::new();
        encode_query(name, qtype, edns, &mut query).expect("valid");
        query[..2].copy_from_slice(&0x1234u16.to_be_bytes());
        let mut out = Vec::new();
        assert!(answer(&query, &mut out));
        let msg = Message::from_vec(&out).expect("hickory reads the answer");
        assert_eq!(msg.metadata.id, 0x1234);
        assert!(msg.metadata.recursion_desired && msg.metadata.recursion_available);
        assert_eq!(msg.queries[0].name().to_ascii(), format!("{name}."));
        msg
    }

    #[test]
    fn answers_addresses_by_type() {
        let msg = ask("www.Example.com", rtype::A, false);
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
        assert_eq!(msg.answers.len(), 1);
        assert_eq!(msg.answers[0].data, RData::A(DEFAULT_V4.into()));
        assert_eq!(msg.answers[0].ttl, DEFAULT_TTL);
        assert!(msg.edns.is_none());
        let msg = ask("www.example.com", rtype::AAAA, true);
        assert_eq!(msg.answers[0].data, RData::AAAA(DEFAULT_V6.into()));
        assert_eq!(msg.edns.as_ref().map(|e| e.max_payload()), Some(EDNS_PAYLOAD));
        let msg = ask("www.example.com", 15, false);
        assert!(msg.answers.is_empty());
        assert_eq!(msg.authorities[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn nx_is_nxdomain_with_the_parents_soa() {
        let msg = ask("nx.example.com", rtype::A, true);
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
        assert!(msg.answers.is_empty());
        let soa = &msg.authorities[0];
        assert_eq!(soa.name.to_ascii(), "example.com.");
        assert_eq!(soa.ttl, SOA_TTL);
        let RData::SOA(data) = &soa.data else {
            panic!("not an SOA: {soa:?}")
        };
        assert_eq!(data.minimum, SOA_MINIMUM);
    }

    #[test]
    fn cname_points_into_tiktoks_cdn() {
        let msg = ask("cname.example.com", rtype::A, false);
        assert_eq!(msg.answers.len(), 2);
        let RData::CNAME(target) = &msg.answers[0].data else {
            panic!("{:?}", msg.answers)
        };
        assert_eq!(target.0.to_ascii(), format!("{TIKTOK_CNAME_TARGET}."));
        assert_eq!(msg.answers[1].name.to_ascii(), format!("{TIKTOK_CNAME_TARGET}."));
        assert_eq!(msg.answers[1].data, RData::A(CNAME_V4.into()));
    }

    #[test]
    fn large_is_48_kb_of_a_records() {
        let msg = ask("large.example.com", rtype::A, true);
        assert_eq!(msg.answers.len(), usize::from(LARGE_RECORDS));
        assert_eq!(msg.answers[2999].data, RData::A(Ipv4Addr::new(10, 0, 11, 183).into()));
        let mut out = Vec::new();
        let mut query = Vec::new();
        encode_query("large.example.com", rtype::A, false, &mut query).expect("valid");
        assert!(answer(&query, &mut out) && (48_000..ANSWER_BUF).contains(&out.len()));
        assert_eq!(ask("large.example.com", rtype::AAAA, false).answers.len(), 1);
    }

    #[test]
    fn ignores_what_is_not_a_query() {
        let mut out = Vec::new();
        assert!(!answer(b"garbage", &mut out));
        assert!(out.is_empty());
    }

    #[test]
    fn refuses_to_bind_beyond_loopback() {
        let err = bind("0.0.0.0:0".parse().expect("literal"), 1).err().expect("refused");
        assert!(err.to_string().contains("not a loopback"), "{err}");
    }

    #[test]
    fn serves_udp_and_tcp_on_one_port() {
        let sockets = bind("127.0.0.1:0".parse().expect("literal"), 2).expect("bind");
        let stop = Arc::new(AtomicBool::new(false));
        let addr = sockets.addr;
        let Sockets { udp, tcp, .. } = sockets;
        let mut threads = Vec::new();
        for socket in udp {
            let stop = Arc::clone(&stop);
            threads.push(thread::spawn(move || serve_udp(&socket, &stop).map(|_| ())));
        }
        let tcp_stop = Arc::clone(&stop);
        threads.push(thread::spawn(move || serve_tcp(&tcp, &tcp_stop)));

        let mut query = Vec::new();
        encode_query("nx.example", rtype::A, true, &mut query).expect("valid");
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind client");
        client.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        client.send_to(&query, addr).expect("send");
        let mut buf = [0; 512];
        let n = client.recv(&mut buf).expect("UDP answer");
        assert_eq!(buf[3] & 0xf, 3, "NXDOMAIN");
        assert!(n > query.len());

        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        stream.write_all(&framed).expect("write");
        let mut len = [0; 2];
        stream.read_exact(&mut len).expect("TCP answer length");
        let mut tcp_answer = vec![0; usize::from(u16::from_be_bytes(len))];
        stream.read_exact(&mut tcp_answer).expect("TCP answer");
        assert_eq!(&tcp_answer[..], &buf[..n]);
        drop(stream);

        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().expect("thread").expect("served without error");
        }
    }

    /// One table: for the scripts both play, the responder's answer says what the fake upstream's says (rcode,
    /// every record's type, data and TTL, the SOA's owner), though one writes bytes by hand and the other uses
    /// hickory.
    #[test]
    fn answers_as_the_fake_upstream_does() {
        let fake = crate::FakeUpstream::start();
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let cases = [
            ("www.example.com", RecordType::A),
            ("www.example.com", RecordType::AAAA),
            ("www.example.com", RecordType::MX),
            ("nx.example.com", RecordType::A),
            ("cname.example.com", RecordType::A),
            ("cname.example.com", RecordType::AAAA),
            ("large.example.com", RecordType::A),
        ];
        let records = |records: &[hickory_proto::rr::Record]| {
            records
                .iter()
                .map(|r| (r.name.to_ascii(), r.record_type(), r.ttl, r.data.clone()))
                .collect::<Vec<_>>()
        };
        for (name, qtype) in cases {
            let ours = ask(name, u16::from(qtype), true);
            let theirs = crate::query_tcp(fake.addr(), local, name, qtype, true).expect("the fake answers");
            let what = format!("{name} {qtype}");
            assert_eq!(ours.metadata.response_code, theirs.metadata.response_code, "{what}");
            for (section, ours, theirs) in [
                ("answer", records(&ours.answers), records(&theirs.answers)),
                ("authority", records(&ours.authorities), records(&theirs.authorities)),
            ] {
                // The first difference, not 3000 records of both.
                let differ = ours.iter().zip(&theirs).position(|(a, b)| a != b);
                assert!(
                    ours.len() == theirs.len() && differ.is_none(),
                    "{what}, {section}: {} records against {}; first difference at {differ:?}: {:?} against {:?}",
                    ours.len(),
                    theirs.len(),
                    differ.map(|i| &ours[i]),
                    differ.map(|i| &theirs[i]),
                );
            }
        }
    }
}
