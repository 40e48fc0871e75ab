//! `FakeUpstream`: a scripted upstream resolver on loopback, so that a test decides exactly what the daemon gets
//! back from "the Internet" and can count what the daemon asked.
//!
//! It answers by the first label of the query name (see [`FakeUpstream`] for the table). It runs on a thread of its
//! own with its own current-thread tokio runtime, so it serves while a sync test blocks on a socket and while an async
//! test's runtime is busy. It must never panic on what arrives from the network: whatever it cannot read as a query
//! is ignored, as a real resolver would do.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use crate::ports::bind_udp_tcp;

/// The address every plain A answer carries (`anything.else` A).
pub const DEFAULT_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The address every plain AAAA answer carries (`anything.else` AAAA).
pub const DEFAULT_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// TTL of every record the fake upstream sends, but for `ttl5.*` and the SOA.
pub const DEFAULT_TTL: u32 = 300;
/// The CDN name `cname.*` points to: a TikTok CDN host, so the daemon must block through the CNAME chain.
pub const TIKTOK_CNAME_TARGET: &str = "edge.tiktokcdn.com";
/// Address of [`TIKTOK_CNAME_TARGET`] in the `cname.*` answer.
pub const CNAME_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);
/// Address at the end of the harmless `cdn.*` chain (through akamaized.net), which must not be blocked.
pub const CDN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 8);
/// Address of `ttl5.*`, answered with TTL 5 so that cache expiry can be tested in seconds.
pub const TTL5_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 5);
/// First address of `tc.*` over TCP (more follow, to pass 512 bytes).
pub const TC_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);
/// The address the wrong-id reply of `wrongid.*` carries, so a test can see if a daemon ever accepted it.
pub const SPOOF_V4: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 66);
/// How many A records `big.*` (and the extra records of `tc.*` over TCP) carry: enough for more than 512 bytes.
pub const BIG_RECORDS: usize = 40;
/// How many A records `huge.*` carries: over 3 KB (under 4096), more than any UDP answer sinkhole sends by default (1232).
pub const HUGE_RECORDS: usize = 150;
/// How many A records `many.*` carries over TCP: 16 KB with name compression, about 28 KB without.
pub const MANY_RECORDS: usize = 1000;
/// TTL of the SOA in negative answers (`nx.*`, and NODATA for other types).
pub const SOA_TTL: u32 = 60;
/// MINIMUM field of that SOA: the negative-caching TTL is min(SOA TTL, MINIMUM) = 30 s (RFC 2308).
pub const SOA_MINIMUM: u32 = 30;
/// How late `slow.*` is answered: later than any sane upstream timeout in a test config.
pub const SLOW_DELAY: Duration = Duration::from_secs(3);
/// The address a [`FakeUpstream::start_late`] upstream answers A queries with instead of [`DEFAULT_V4`], so that a
/// test sees whether a client ever got the late answer rather than another upstream's.
pub const LATE_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
/// The name the other-name reply of `noise.*` carries in its question.
pub const NOISE_OTHER_NAME: &str = "other.noise.test";
/// Payload size the fake upstream advertises when it echoes EDNS (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;

/// One query the fake upstream received: (qname lowercase without trailing dot, qtype, transport "udp"/"tcp").
pub type ReceivedQuery = (String, u16, &'static str);

/// A fake upstream resolver owned by the test: UDP and TCP on `127.0.0.1:<free port>`, runs on its own thread with
/// its own tokio runtime (so it works from sync tests and from any test runtime), stops on Drop.
///
/// It answers by the first label of the query name, with the query's id, question and RD echoed and RA set:
///
/// | first label | answer |
/// | --- | --- |
/// | anything else | A 192.0.2.1 / AAAA 2001:db8::1, TTL 300; other types NOERROR, no answer, SOA in authority |
/// | `cname` | CNAME `edge.tiktokcdn.com.`, then its A 192.0.2.7 (AAAA 2001:db8::7); a name hiding behind TikTok's CDN |
/// | `cdn` | CNAME `cdn-<rest>.akamaized.net.` (`cdn.example.com` → `cdn-example.com.akamaized.net.`), then A 192.0.2.8 (AAAA 2001:db8::8) |
/// | `ttl5` | A 192.0.2.5 (AAAA 2001:db8::5), TTL 5 |
/// | `tc` | UDP: no answer, TC set; TCP: A 192.0.2.9 then 40 more A records (198.51.100.1..=40), over 512 bytes |
/// | `big` | UDP and TCP: 40 A records 203.0.113.1..=40 (AAAA 2001:db8::1:1..), over 512 bytes, TC never set |
/// | `many` | UDP: no answer, TC set; TCP: 1000 A records 10.1.x.y (16 KB, compressed; the query's OPT not echoed) |
/// | `huge` | UDP and TCP: 150 A records 10.0.0.1.. (over 3 KB), TC never set, whatever size the query allows |
/// | `slow` | the default answer, 3 s late |
/// | `nx` | NXDOMAIN, SOA in authority (TTL 60, MINIMUM 30) |
/// | `servfail` | SERVFAIL, no records |
/// | `wrongid` | first a reply with the id flipped carrying A 203.0.113.66, then the right default answer |
/// | `noise` | UDP: first four datagrams that answer nothing asked: the `garbage` bytes, the `wrongid` spoof, a reply with the right id for `other.noise.test`, one with the right id and name but another type (AAAA for A, A otherwise); then the right default answer. TCP: the default answer |
/// | `garbage` | 11 bytes that are not DNS (the query id, then junk), nothing else |
/// | `drop` | nothing, ever |
///
/// Negative answers carry an SOA owned by the name's parent (`nx.example.com` → `example.com.`). If the query had an
/// OPT record the reply has one too (payload 1232, DO copied from the query). Malformed queries are ignored.
/// Every query that parses is recorded (before its answer is sent), `drop.*` and `garbage.*` included.
///
/// Besides [`FakeUpstream::start`]: [`FakeUpstream::start_dead`] (a black hole), [`FakeUpstream::start_late`] (every
/// answer late), and [`FakeUpstream::stop`]/[`FakeUpstream::restart`] to take one down and bring it back on its port.
pub struct FakeUpstream {
    /// The one port both transports listen on, so a config can name a single upstream address.
    addr: SocketAddr,
    /// How it answers; kept for [`FakeUpstream::restart`].
    behaviour: Behaviour,
    /// Shared with the server thread, which appends every query it parses; kept across a restart.
    received: Arc<Mutex<Vec<ReceivedQuery>>>,
    /// Dropping or sending on it stops the server; `Option` so Drop can take it.
    shutdown: Option<oneshot::Sender<()>>,
    /// Joined on stop and Drop so that the sockets are closed when the server is stopped.
    thread: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    /// Starts a fake upstream that answers per the table above. Panics if no loopback port can be bound.
    pub fn start() -> FakeUpstream {
        Self::spawn(Behaviour::Answer)
    }

    /// Starts a fake upstream that is bound (UDP and TCP, connections accepted) and records queries, but never
    /// answers anything: a dead resolver that still swallows packets, for failover and timeout tests.
    pub fn start_dead() -> FakeUpstream {
        Self::spawn(Behaviour::Dead)
    }

    /// Starts a fake upstream that answers per the table, but every reply `delay` late (on top of any delay the
    /// table has), and A queries that would get [`DEFAULT_V4`] get [`LATE_V4`]: a slow resolver whose answers a
    /// test can tell apart from another upstream's.
    pub fn start_late(delay: Duration) -> FakeUpstream {
        Self::spawn(Behaviour::Late(delay))
    }

    /// Stops serving: both sockets are closed (the port refuses: ICMP port unreachable, TCP reset) until
    /// [`FakeUpstream::restart`]; replies not yet sent (late ones) are never sent. Stopping a stopped upstream does
    /// nothing.
    pub fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // An error only means the server already stopped; joining below still reaps it.
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panic in the server thread would be a harness bug; surface it unless we are already unwinding.
            if thread.join().is_err() && !std::thread::panicking() {
                panic!("fake upstream {}: server thread panicked", self.addr);
            }
        }
    }

    /// Serves again on the same port, as before [`FakeUpstream::stop`] (the queries it recorded are kept). The port
    /// was handed out to this upstream alone (`ports`), so it is free unless another process took it meanwhile,
    /// and then this panics. Restarting a running upstream does nothing.
    pub fn restart(&mut self) {
        if self.thread.is_some() {
            return;
        }
        let udp = StdUdpSocket::bind(self.addr)
            .unwrap_or_else(|e| panic!("fake upstream: bind UDP {} again: {e}", self.addr));
        // std sets SO_REUSEADDR on listeners, so the connections of the first run, in TIME_WAIT, are no obstacle.
        let tcp = StdTcpListener::bind(self.addr)
            .unwrap_or_else(|e| panic!("fake upstream: bind TCP {} again: {e}", self.addr));
        let (shutdown, thread) = Self::serve(udp, tcp, self.behaviour, &self.received);
        self.shutdown = Some(shutdown);
        self.thread = Some(thread);
    }

    /// The address to put in the daemon's `upstream.servers`; the same port serves UDP and TCP.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries received so far (UDP+TCP), in arrival order, as (qname lowercase without trailing dot, qtype,
    /// transport "udp"/"tcp").
    pub fn received(&self) -> Vec<ReceivedQuery> {
        lock(&self.received).clone()
    }

    /// How many times `name` was asked, any type, any transport (case and a trailing dot do not matter).
    pub fn count(&self, name: &str) -> usize {
        let name = normalize(name);
        lock(&self.received).iter().filter(|(n, _, _)| *n == name).count()
    }

    /// Binds both sockets here, on the caller's thread, so that a bind failure panics in the test that asked for
    /// the upstream rather than in a thread nobody joins.
    fn spawn(behaviour: Behaviour) -> FakeUpstream {
        let (udp, tcp) = bind_udp_tcp();
        let addr = udp.local_addr().expect("fake upstream: local_addr of a bound socket");
        let received = Arc::new(Mutex::new(Vec::new()));
        let (shutdown, thread) = Self::serve(udp, tcp, behaviour, &received);
        FakeUpstream {
            addr,
            behaviour,
            received,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Runs the server on bound sockets, on a thread of its own; returns what stops and reaps it.
    fn serve(
        udp: StdUdpSocket,
        tcp: StdTcpListener,
        behaviour: Behaviour,
        received: &Arc<Mutex<Vec<ReceivedQuery>>>,
    ) -> (oneshot::Sender<()>, JoinHandle<()>) {
        udp.set_nonblocking(true)
            .expect("fake upstream: set UDP socket non-blocking");
        tcp.set_nonblocking(true)
            .expect("fake upstream: set TCP listener non-blocking");
        let port = udp
            .local_addr()
            .expect("fake upstream: local_addr of a bound socket")
            .port();
        let (shutdown, stop) = oneshot::channel();
        let server = Server {
            behaviour,
            received: Arc::clone(received),
        };
        let thread = std::thread::Builder::new()
            .name(format!("fake-upstream-{port}"))
            .spawn(move || server.run(udp, tcp, stop))
            .expect("fake upstream: spawn its thread");
        (shutdown, thread)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the server answers, late or at once, or only listens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Answer per the table on [`FakeUpstream`].
    Answer,
    /// Record and swallow every query.
    Dead,
    /// Answer per the table, this much later, with [`LATE_V4`] for [`DEFAULT_V4`].
    Late(Duration),
}

impl Behaviour {
    /// The last byte of the address plain answers carry: 192.0.2.`host`, 2001:db8::`host`.
    fn default_host(self) -> u8 {
        match self {
            Behaviour::Late(_) => LATE_V4.octets()[3],
            _ => DEFAULT_V4.octets()[3],
        }
    }

    /// How much later than the table says every reply goes out.
    fn extra_delay(self) -> Duration {
        match self {
            Behaviour::Late(delay) => delay,
            _ => Duration::ZERO,
        }
    }
}

/// The transport a query came on; some answers differ (TC over UDP), and it is recorded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// The name used in [`FakeUpstream::received`].
    fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// One message to send back, possibly late.
struct Reply {
    /// How long to wait before sending it (zero for all but `slow.*`).
    delay: Duration,
    /// The message as it goes on the wire (without the TCP length prefix).
    bytes: Vec<u8>,
}

/// What the server thread owns: how to answer, and where to record.
#[derive(Clone)]
struct Server {
    behaviour: Behaviour,
    received: Arc<Mutex<Vec<ReceivedQuery>>>,
}

/// Largest DNS message over UDP or TCP; the receive buffer size.
const MAX_MESSAGE: usize = 65_535;
/// A TCP connection with nothing to read for this long is closed, so no task outlives a forgotten client by much.
const TCP_IDLE: Duration = Duration::from_secs(30);
/// Bound on replies queued for one TCP connection's writer.
const TCP_QUEUE: usize = 64;

impl Server {
    /// The server thread's body: serves UDP and TCP until `stop` fires (or its sender is dropped). Dropping the
    /// runtime at the end cancels every task still running (late `slow.*` answers, open connections).
    fn run(self, udp: StdUdpSocket, tcp: StdTcpListener, stop: oneshot::Receiver<()>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("fake upstream: build its tokio runtime");
        runtime.block_on(async move {
            let udp = UdpSocket::from_std(udp).expect("fake upstream: register UDP socket with tokio");
            let tcp = TcpListener::from_std(tcp).expect("fake upstream: register TCP listener with tokio");
            tokio::select! {
                _ = stop => {}
                _ = self.clone().serve_udp(udp) => {}
                _ = self.serve_tcp(tcp) => {}
            }
        });
    }

    /// Answers UDP queries; only `slow.*` gets a task of its own so the others stay in order.
    async fn serve_udp(self, socket: UdpSocket) {
        let socket = Arc::new(socket);
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            // Errors on an unconnected UDP socket (e.g. ICMP from a client that went away) are not fatal.
            let Ok((len, client)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            for reply in self.answer(&buf[..len], Transport::Udp) {
                if reply.delay.is_zero() {
                    let _ = socket.send_to(&reply.bytes, client).await;
                } else {
                    let socket = Arc::clone(&socket);
                    tokio::spawn(async move {
                        tokio::time::sleep(reply.delay).await;
                        let _ = socket.send_to(&reply.bytes, client).await;
                    });
                }
            }
        }
    }

    /// Accepts TCP connections, one task each.
    async fn serve_tcp(self, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(self.clone().serve_connection(stream));
        }
    }

    /// Reads length-prefixed queries from one connection. Answers go through a writer task so that pipelined
    /// queries are answered as soon as each is ready (a `slow.*` one does not hold back the rest, RFC 7766).
    async fn serve_connection(self, stream: TcpStream) {
        let (mut reader, mut writer) = stream.into_split();
        let (replies, mut outgoing) = mpsc::channel::<Vec<u8>>(TCP_QUEUE);
        let write_task = tokio::spawn(async move {
            while let Some(bytes) = outgoing.recv().await {
                let Ok(len) = u16::try_from(bytes.len()) else {
                    continue;
                };
                let mut framed = Vec::with_capacity(bytes.len() + 2);
                framed.extend_from_slice(&len.to_be_bytes());
                framed.extend_from_slice(&bytes);
                if writer.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
        loop {
            let mut len = [0u8; 2];
            match tokio::time::timeout(TCP_IDLE, reader.read_exact(&mut len)).await {
                Ok(Ok(_)) => {}
                _ => break,
            }
            let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
            match tokio::time::timeout(TCP_IDLE, reader.read_exact(&mut query)).await {
                Ok(Ok(_)) => {}
                _ => break,
            }
            for reply in self.answer(&query, Transport::Tcp) {
                let replies = replies.clone();
                if reply.delay.is_zero() {
                    if replies.send(reply.bytes).await.is_err() {
                        break;
                    }
                } else {
                    tokio::spawn(async move {
                        tokio::time::sleep(reply.delay).await;
                        let _ = replies.send(reply.bytes).await;
                    });
                }
            }
        }
        // The client closed its side: let queued and late replies go out, then the writer ends with the channel.
        drop(replies);
        let _ = write_task.await;
    }

    /// Records a query and decides the replies to it; nothing for a malformed query or a dead upstream.
    fn answer(&self, packet: &[u8], transport: Transport) -> Vec<Reply> {
        let extra = self.behaviour.extra_delay();
        let mut replies = self.scripted_replies(packet, transport);
        for reply in &mut replies {
            reply.delay += extra;
        }
        replies
    }

    /// The replies per the table, before the behaviour's extra delay.
    fn scripted_replies(&self, packet: &[u8], transport: Transport) -> Vec<Reply> {
        let Some(query) = parse_query(packet) else {
            return Vec::new();
        };
        let Some(question) = query.queries.first() else {
            return Vec::new();
        };
        let qname = question.name().to_lowercase();
        let qtype = question.query_type();
        lock(&self.received).push((normalize(&qname.to_ascii()), u16::from(qtype), transport.as_str()));
        if self.behaviour == Behaviour::Dead {
            return Vec::new();
        }
        let label = qname
            .iter()
            .next()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .unwrap_or_default();
        let now = |bytes| Reply {
            delay: Duration::ZERO,
            bytes,
        };
        let host = self.behaviour.default_host();
        match label.as_str() {
            "drop" => Vec::new(),
            "many" if transport == Transport::Tcp && qtype == RecordType::A => vec![now(many_answer(packet))],
            "garbage" => {
                // The query's id first, so a forwarder that matches replies by id alone must still reject it.
                let mut junk = packet.get(..2).unwrap_or_default().to_vec();
                junk.extend_from_slice(b"\xde\xad\xbe\xef\xffjunk");
                vec![now(junk)]
            }
            "wrongid" => {
                let mut spoof = response_to(&query);
                spoof.metadata.id ^= 0x5a5a;
                if qtype == RecordType::A {
                    spoof
                        .answers
                        .push(Record::from_rdata(qname.clone(), DEFAULT_TTL, RData::A(A(SPOOF_V4))));
                }
                let right = default_answer(&query, &qname, qtype, host);
                [encode(&spoof), encode(&right)]
                    .into_iter()
                    .flatten()
                    .map(now)
                    .collect()
            }
            "noise" if transport == Transport::Udp => noise(packet, &query, &qname, qtype, host)
                .into_iter()
                .map(now)
                .collect(),
            "slow" => encode(&default_answer(&query, &qname, qtype, host))
                .map(|bytes| Reply {
                    delay: SLOW_DELAY,
                    bytes,
                })
                .into_iter()
                .collect(),
            _ => encode(&scripted_answer(&query, &qname, qtype, &label, transport, host))
                .map(now)
                .into_iter()
                .collect(),
        }
    }
}

/// A query we are willing to answer: parses, is a standard query (not a response), one question.
fn parse_query(packet: &[u8]) -> Option<Message> {
    let message = Message::from_vec(packet).ok()?;
    let is_query = message.metadata.message_type == MessageType::Query
        && message.metadata.op_code == OpCode::Query
        && message.queries.len() == 1;
    is_query.then_some(message)
}

/// The reply skeleton: id, question, RD and CD echoed, RA set, EDNS echoed if the query had it.
fn response_to(query: &Message) -> Message {
    let mut response = Message::response(query.metadata.id, query.metadata.op_code);
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.checking_disabled = query.metadata.checking_disabled;
    response.metadata.recursion_available = true;
    response.queries = query.queries.clone();
    if let Some(query_edns) = &query.edns {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        edns.set_dnssec_ok(query_edns.flags().dnssec_ok);
        response.edns = Some(edns);
    }
    response
}

/// What `noise.*` sends over UDP: four datagrams that answer nothing the daemon asked (not DNS; a wrong id; the
/// right id for another name; the right id and name for another type), then the right default answer.
fn noise(packet: &[u8], query: &Message, qname: &Name, qtype: RecordType, host: u8) -> Vec<Vec<u8>> {
    let mut junk = packet.get(..2).unwrap_or_default().to_vec();
    junk.extend_from_slice(b"\xde\xad\xbe\xef\xffjunk");
    let mut wrong_id = default_answer(query, qname, qtype, host);
    wrong_id.metadata.id ^= 0x5a5a;
    let mut replies = vec![wrong_id];
    replies.extend(
        Name::from_ascii(format!("{NOISE_OTHER_NAME}."))
            .ok()
            .map(|other| answer_as_if(query, &other, qtype, host)),
    );
    let other_type = if qtype == RecordType::A {
        RecordType::AAAA
    } else {
        RecordType::A
    };
    replies.push(answer_as_if(query, qname, other_type, host));
    replies.push(default_answer(query, qname, qtype, host));
    let mut datagrams = vec![junk];
    datagrams.extend(replies.iter().filter_map(encode));
    datagrams
}

/// The default answer to `query` as if it had asked `name` `qtype`: the right id, another question.
fn answer_as_if(query: &Message, name: &Name, qtype: RecordType, host: u8) -> Message {
    let mut other = query.clone();
    if let Some(question) = other.queries.first_mut() {
        question.set_name(name.clone()).set_query_type(qtype);
    }
    default_answer(&other, name, qtype, host)
}

/// The answer for every first label but the few handled in [`Server::answer`]; plain addresses end in `host`.
fn scripted_answer(
    query: &Message,
    qname: &Name,
    qtype: RecordType,
    label: &str,
    transport: Transport,
    host: u8,
) -> Message {
    let mut response = response_to(query);
    match label {
        "cname" => chain(
            &mut response,
            qname,
            qtype,
            Name::from_ascii("edge.tiktokcdn.com.").ok(),
            7,
        ),
        "cdn" => {
            let rest = normalize(&qname.base_name().to_ascii());
            let target = if rest.is_empty() {
                "cdn.akamaized.net.".to_string()
            } else {
                format!("cdn-{rest}.akamaized.net.")
            };
            chain(&mut response, qname, qtype, Name::from_ascii(target).ok(), 8);
        }
        "ttl5" => address(&mut response, qname, qtype, 5, 5),
        "tc" if transport == Transport::Udp => response.metadata.truncation = true,
        "tc" => {
            address(&mut response, qname, qtype, 9, DEFAULT_TTL);
            if qtype == RecordType::A {
                for i in 1..=BIG_RECORDS {
                    let ip = Ipv4Addr::new(198, 51, 100, i as u8);
                    response
                        .answers
                        .push(Record::from_rdata(qname.clone(), DEFAULT_TTL, RData::A(A(ip))));
                }
            }
        }
        "big" => match qtype {
            RecordType::A => {
                for i in 1..=BIG_RECORDS {
                    let ip = Ipv4Addr::new(203, 0, 113, i as u8);
                    response
                        .answers
                        .push(Record::from_rdata(qname.clone(), DEFAULT_TTL, RData::A(A(ip))));
                }
            }
            RecordType::AAAA => {
                for i in 1..=BIG_RECORDS {
                    let ip = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, i as u16);
                    response
                        .answers
                        .push(Record::from_rdata(qname.clone(), DEFAULT_TTL, RData::AAAA(AAAA(ip))));
                }
            }
            _ => negative(&mut response, qname),
        },
        "many" if transport == Transport::Udp => response.metadata.truncation = true,
        "huge" if qtype == RecordType::A => {
            for i in 1..=HUGE_RECORDS {
                let ip = Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8);
                response
                    .answers
                    .push(Record::from_rdata(qname.clone(), DEFAULT_TTL, RData::A(A(ip))));
            }
        }
        "nx" => {
            response.metadata.response_code = ResponseCode::NXDomain;
            negative(&mut response, qname);
        }
        "servfail" => response.metadata.response_code = ResponseCode::ServFail,
        _ => address(&mut response, qname, qtype, host, DEFAULT_TTL),
    }
    response
}

/// The answer to `many.*` A over TCP, written by hand so that every owner name is a compression pointer to the
/// question (hickory's encoder does not compress them): 1000 A records 10.1.x.y in about 16 KB, as real resolvers
/// send such answers. A server that decodes and encodes again without compression would send nearly twice that.
fn many_answer(query: &[u8]) -> Vec<u8> {
    let question_end = 12 + query[12..].iter().position(|&b| b == 0).unwrap_or(0) + 5;
    let mut answer = query[..2].to_vec();
    answer.extend_from_slice(&[0x81, 0x80, 0, 1]);
    answer.extend_from_slice(&(MANY_RECORDS as u16).to_be_bytes());
    answer.extend_from_slice(&[0, 0, 0, 0]);
    answer.extend_from_slice(&query[12..question_end.min(query.len())]);
    for i in 1..=MANY_RECORDS {
        answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        answer.extend_from_slice(&DEFAULT_TTL.to_be_bytes());
        answer.extend_from_slice(&[0, 4, 10, 1, (i >> 8) as u8, i as u8]);
    }
    answer
}

/// The default answer (A 192.0.2.`host` / AAAA 2001:db8::`host` / NODATA), for `slow.*`, `wrongid.*`, `noise.*`
/// and unknown labels.
fn default_answer(query: &Message, qname: &Name, qtype: RecordType, host: u8) -> Message {
    let mut response = response_to(query);
    address(&mut response, qname, qtype, host, DEFAULT_TTL);
    response
}

/// Adds A 192.0.2.`host` or AAAA 2001:db8::`host` for `owner`, or makes the reply NODATA for other types.
fn address(response: &mut Message, owner: &Name, qtype: RecordType, host: u8, ttl: u32) {
    let rdata = match qtype {
        RecordType::A => RData::A(A(Ipv4Addr::new(192, 0, 2, host))),
        RecordType::AAAA => RData::AAAA(AAAA(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(host)))),
        _ => return negative(response, owner),
    };
    response.answers.push(Record::from_rdata(owner.clone(), ttl, rdata));
}

/// Adds `owner` CNAME `target`, then the target's address (A/AAAA 192.0.2.`host`); for other types the CNAME
/// alone, as a recursive resolver would send it. A target that is not a valid name (a query name so long that
/// `cdn-` pushes a label over 63 bytes) turns the reply into SERVFAIL rather than a panic.
fn chain(response: &mut Message, owner: &Name, qtype: RecordType, target: Option<Name>, host: u8) {
    let Some(target) = target else {
        response.metadata.response_code = ResponseCode::ServFail;
        return;
    };
    response.answers.push(Record::from_rdata(
        owner.clone(),
        DEFAULT_TTL,
        RData::CNAME(CNAME(target.clone())),
    ));
    if matches!(qtype, RecordType::A | RecordType::AAAA) {
        address(response, &target, qtype, host, DEFAULT_TTL);
    }
}

/// Puts the SOA of `qname`'s parent zone in the authority section, as negative answers carry (RFC 2308).
fn negative(response: &mut Message, qname: &Name) {
    let (Ok(mname), Ok(rname)) = (
        Name::from_ascii("ns.fake-upstream.test."),
        Name::from_ascii("hostmaster.fake-upstream.test."),
    ) else {
        return;
    };
    let soa = SOA::new(mname, rname, 1, 3600, 600, 86_400, SOA_MINIMUM);
    response
        .authorities
        .push(Record::from_rdata(qname.base_name(), SOA_TTL, RData::SOA(soa)));
}

/// Encodes a reply; `None` (nothing sent) in the unlikely case hickory cannot encode what we built.
fn encode(message: &Message) -> Option<Vec<u8>> {
    message.to_vec().ok()
}

/// The form names are recorded and compared in: lowercase, no trailing dot.
fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Locks the query log; a poisoned lock only means a test thread panicked while reading, the data is still whole.
fn lock(received: &Mutex<Vec<ReceivedQuery>>) -> std::sync::MutexGuard<'_, Vec<ReceivedQuery>> {
    received.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
