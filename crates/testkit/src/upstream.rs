//! `FakeUpstream`: a scripted upstream resolver on loopback, so that a test decides exactly what the daemon gets
//! back from "the Internet" and can count what the daemon asked.
//!
//! It answers by the first label of the query name (the table is [`Script`]'s, in `answers`). It runs on a thread of its
//! own with its own current-thread tokio runtime, so it serves while a sync test blocks on a socket and while an async
//! test's runtime is busy. It must never panic on what arrives from the network: whatever it cannot read as a query
//! is ignored, as a real resolver would do.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};

use crate::answers::*;
use crate::ports::bind_udp_tcp;

/// One query the fake upstream received: (qname lowercase without trailing dot, qtype, transport "udp"/"tcp").
pub type ReceivedQuery = (String, u16, &'static str);

/// A fake upstream resolver owned by the test: UDP and TCP on `127.0.0.1:<free port>`, runs on its own thread with
/// its own tokio runtime (so it works from sync tests and from any test runtime), stops on Drop.
///
/// It answers by the first label of the query name as [`Script`] says (`nx.*` NXDOMAIN, `cname.*` a CNAME to
/// TikTok's CDN, `tc.*` truncated over UDP, `noise.*` stray datagrams first, `drop.*` nothing, ...), with the
/// query's id, question, RD and CD echoed and RA set. Negative answers carry an SOA owned by the name's parent
/// (`nx.example.com` → `example.com.`). If the query had an OPT record the reply has one too (payload 1232, DO
/// copied from the query). Malformed queries are ignored. Every query that parses is recorded (before its answer
/// is sent), `drop.*` and `garbage.*` included.
///
/// Besides [`FakeUpstream::start`]: [`FakeUpstream::start_dead`] (a black hole), [`FakeUpstream::start_late`] (every
/// answer late), [`FakeUpstream::start_as`] (one script for every name, plain answers ending in a byte of the
/// test's), [`FakeUpstream::start_holding`] (UDP answers held until a batch is in, then sent last first), and
/// [`FakeUpstream::stop`]/[`FakeUpstream::restart`] to take one down and bring it back on its port.
pub struct FakeUpstream {
    /// The one port both transports listen on, so a config can name a single upstream address.
    addr: SocketAddr,
    /// How it answers; kept for [`FakeUpstream::restart`].
    behaviour: Behaviour,
    /// Shared with the server thread, which records every query it parses; kept across a restart.
    log: Arc<Log>,
    /// Dropping or sending on it stops the server; `Option` so Drop can take it.
    shutdown: Option<oneshot::Sender<()>>,
    /// Joined on stop and Drop so that the sockets are closed when the server is stopped.
    thread: Option<JoinHandle<()>>,
}

impl FakeUpstream {
    /// Starts a fake upstream that answers per the table above. Panics if no loopback port can be bound.
    pub fn start() -> FakeUpstream {
        Self::spawn(Behaviour::ANSWER)
    }

    /// Starts a fake upstream that is bound (UDP and TCP, connections accepted) and records queries, but never
    /// answers anything: a dead resolver that still swallows packets, for failover and timeout tests.
    pub fn start_dead() -> FakeUpstream {
        Self::spawn(Behaviour {
            dead: true,
            ..Behaviour::ANSWER
        })
    }

    /// Starts a fake upstream that answers per the table, but every reply `delay` late (on top of any delay the
    /// table has), and A queries that would get [`DEFAULT_V4`] get [`LATE_V4`]: a slow resolver whose answers a
    /// test can tell apart from another upstream's.
    pub fn start_late(delay: Duration) -> FakeUpstream {
        Self::spawn(Behaviour {
            delay,
            host: LATE_V4.octets()[3],
            ..Behaviour::ANSWER
        })
    }

    /// Starts a fake upstream that plays `script` for every name, whatever its first label, and whose plain
    /// answers carry A 192.0.2.`host` / AAAA 2001:db8::`host`: a server that always fails, always lowercases, always
    /// sends noise, told apart from the others of a test by `host`.
    pub fn start_as(script: Script, host: u8) -> FakeUpstream {
        Self::spawn(Behaviour {
            every: Some(script),
            host,
            ..Behaviour::ANSWER
        })
    }

    /// Starts a fake upstream that holds its UDP answers until `batch` queries have come, then sends them last
    /// first: a forwarder must give each of its waiting queries its own answer, whatever the order.
    pub fn start_holding(batch: usize) -> FakeUpstream {
        Self::spawn(Behaviour {
            hold: batch.max(1),
            ..Behaviour::ANSWER
        })
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
        let (shutdown, thread) = Self::serve(udp, tcp, self.behaviour, &self.log);
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
        lock(&self.log.queries).clone()
    }

    /// The queries received so far (UDP+TCP), in arrival order, as the bytes that came (the name's case kept).
    pub fn received_wire(&self) -> Vec<Vec<u8>> {
        lock(&self.log.wire).clone()
    }

    /// The source port of every UDP query received so far, in arrival order.
    pub fn client_ports(&self) -> Vec<u16> {
        lock(&self.log.ports).clone()
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.log.connections.load(Ordering::Relaxed)
    }

    /// How many times `name` was asked, any type, any transport (case and a trailing dot do not matter).
    pub fn count(&self, name: &str) -> usize {
        let name = normalize(name);
        lock(&self.log.queries).iter().filter(|(n, _, _)| *n == name).count()
    }

    /// Binds both sockets here, on the caller's thread, so that a bind failure panics in the test that asked for
    /// the upstream rather than in a thread nobody joins.
    fn spawn(behaviour: Behaviour) -> FakeUpstream {
        let (udp, tcp) = bind_udp_tcp();
        let addr = udp.local_addr().expect("fake upstream: local_addr of a bound socket");
        let log = Arc::new(Log::default());
        let (shutdown, thread) = Self::serve(udp, tcp, behaviour, &log);
        FakeUpstream {
            addr,
            behaviour,
            log,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Runs the server on bound sockets, on a thread of its own; returns what stops and reaps it.
    fn serve(
        udp: StdUdpSocket,
        tcp: StdTcpListener,
        behaviour: Behaviour,
        log: &Arc<Log>,
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
            log: Arc::clone(log),
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

/// How the server answers: by the table or one script for all, at once or late, or not at all.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Behaviour {
    /// Play this script for every name instead of choosing by the first label.
    every: Option<Script>,
    /// The last byte of the address plain answers carry: 192.0.2.`host`, 2001:db8::`host`.
    host: u8,
    /// How much later than the script says every reply goes out.
    delay: Duration,
    /// Record and swallow every query.
    dead: bool,
    /// UDP answers are held until this many queries have come, then sent last first (1: at once).
    hold: usize,
}

impl Behaviour {
    /// Answer per the table, at once.
    const ANSWER: Behaviour = Behaviour {
        every: None,
        host: DEFAULT_HOST,
        delay: Duration::ZERO,
        dead: false,
        hold: 1,
    };
}

/// What the server records, shared with the [`FakeUpstream`] that reads it.
#[derive(Default)]
struct Log {
    /// Every query that parsed: (qname lowercase without trailing dot, qtype, transport).
    queries: Mutex<Vec<ReceivedQuery>>,
    /// The same queries as the bytes that came.
    wire: Mutex<Vec<Vec<u8>>>,
    /// The source port of every UDP query.
    ports: Mutex<Vec<u16>>,
    /// TCP connections accepted.
    connections: AtomicUsize,
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
    log: Arc<Log>,
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
        // Replies held back until `hold` queries have come (see `FakeUpstream::start_holding`).
        let mut held: Vec<(Vec<Reply>, SocketAddr)> = Vec::new();
        loop {
            // Errors on an unconnected UDP socket (e.g. ICMP from a client that went away) are not fatal.
            let Ok((len, client)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            lock(&self.log.ports).push(client.port());
            held.push((self.answer(&buf[..len], Transport::Udp), client));
            if held.len() < self.behaviour.hold {
                continue;
            }
            for (replies, client) in held.drain(..).rev() {
                for reply in replies {
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
    }

    /// Accepts TCP connections, one task each.
    async fn serve_tcp(self, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            self.log.connections.fetch_add(1, Ordering::Relaxed);
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
        let mut replies = self.scripted_replies(packet, transport);
        for reply in &mut replies {
            reply.delay += self.behaviour.delay;
        }
        replies
    }

    /// The replies the script says, before the behaviour's delay.
    fn scripted_replies(&self, packet: &[u8], transport: Transport) -> Vec<Reply> {
        let Some(query) = parse_query(packet) else {
            return Vec::new();
        };
        let Some(question) = query.queries.first() else {
            return Vec::new();
        };
        let qname = question.name().to_lowercase();
        let qtype = question.query_type();
        lock(&self.log.queries).push((normalize(&qname.to_ascii()), u16::from(qtype), transport.as_str()));
        lock(&self.log.wire).push(packet.to_vec());
        if self.behaviour.dead {
            return Vec::new();
        }
        let script = self
            .behaviour
            .every
            .unwrap_or_else(|| Script::for_label(qname.iter().next().unwrap_or_default()));
        let now = |bytes| Reply {
            delay: Duration::ZERO,
            bytes,
        };
        let host = self.behaviour.host;
        let default = || default_answer(&query, &qname, qtype, host);
        match script {
            Script::Drop => Vec::new(),
            Script::Many if transport == Transport::Tcp && qtype == RecordType::A => {
                let addresses = (1..MANY_RECORDS + 1).map(|i| Ipv4Addr::new(10, 1, (i >> 8) as u8, i as u8));
                vec![now(compressed_answer(packet, addresses))]
            }
            Script::Large if qtype == RecordType::A => {
                let addresses = (0..LARGE_RECORDS).map(|i| Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8));
                vec![now(compressed_answer(packet, addresses))]
            }
            Script::Garbage => vec![now(junk(packet))],
            Script::WrongId => {
                let mut spoof = response_to(&query);
                spoof.metadata.id ^= 0x5a5a;
                if qtype == RecordType::A {
                    spoof
                        .answers
                        .push(Record::from_rdata(qname.clone(), DEFAULT_TTL, RData::A(A(SPOOF_V4))));
                }
                [encode(&spoof), encode(&default())]
                    .into_iter()
                    .flatten()
                    .map(now)
                    .collect()
            }
            Script::Noise if transport == Transport::Udp => noise(packet, &query, &qname, qtype, host)
                .into_iter()
                .map(now)
                .collect(),
            Script::Slow => encode(&default())
                .map(|bytes| Reply {
                    delay: SLOW_DELAY,
                    bytes,
                })
                .into_iter()
                .collect(),
            Script::Lowercase => {
                // The question as the server "normalised" it: the client's 0x20 case lost.
                let mut lowered = query.clone();
                if let Some(question) = lowered.queries.first_mut() {
                    question.set_name(qname.clone());
                }
                encode(&default_answer(&lowered, &qname, qtype, host))
                    .map(now)
                    .into_iter()
                    .collect()
            }
            Script::CutShort => encode(&default())
                .map(|mut bytes| {
                    bytes.truncate(bytes.len().saturating_sub(6));
                    now(bytes)
                })
                .into_iter()
                .collect(),
            _ => encode(&scripted_answer(&query, &qname, qtype, script, transport, host))
                .map(now)
                .into_iter()
                .collect(),
        }
    }
}

/// The query's id, then bytes that are not DNS: a forwarder that matches replies by id alone must still reject it.
fn junk(query: &[u8]) -> Vec<u8> {
    let mut junk = query.get(..2).unwrap_or_default().to_vec();
    junk.extend_from_slice(b"\xde\xad\xbe\xef\xffjunk");
    junk
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

/// What `noise.*` sends over UDP: six datagrams that answer nothing the daemon asked, each carrying A
/// 192.0.2.[`NOISE_HOST`] (not DNS; a wrong id; the right id for another name; the right id and name for another
/// type; the answer without QR; the answer cut short), then the right default answer.
fn noise(packet: &[u8], query: &Message, qname: &Name, qtype: RecordType, host: u8) -> Vec<Vec<u8>> {
    let mut wrong_id = default_answer(query, qname, qtype, NOISE_HOST);
    wrong_id.metadata.id ^= 0x5a5a;
    let mut strays = vec![wrong_id];
    strays.extend(
        Name::from_ascii(format!("{NOISE_OTHER_NAME}."))
            .ok()
            .map(|other| answer_as_if(query, &other, qtype, NOISE_HOST)),
    );
    let other_type = if qtype == RecordType::A {
        RecordType::AAAA
    } else {
        RecordType::A
    };
    strays.push(answer_as_if(query, qname, other_type, NOISE_HOST));
    let mut datagrams = vec![junk(packet)];
    datagrams.extend(strays.iter().filter_map(encode));
    if let Some(right_but_noise) = encode(&default_answer(query, qname, qtype, NOISE_HOST)) {
        let mut not_a_response = right_but_noise.clone();
        not_a_response[2] &= 0x7f;
        datagrams.push(not_a_response);
        let cut = right_but_noise.len().saturating_sub(3);
        datagrams.push(right_but_noise[..cut].to_vec());
    }
    datagrams.extend(encode(&default_answer(query, qname, qtype, host)));
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
    script: Script,
    transport: Transport,
    host: u8,
) -> Message {
    let mut response = response_to(query);
    match script {
        Script::Cname => chain(
            &mut response,
            qname,
            qtype,
            Name::from_ascii(format!("{TIKTOK_CNAME_TARGET}.")).ok(),
            CNAME_HOST,
        ),
        Script::Cdn => {
            let rest = normalize(&qname.base_name().to_ascii());
            let target = if rest.is_empty() {
                "cdn.akamaized.net.".to_string()
            } else {
                format!("cdn-{rest}.akamaized.net.")
            };
            chain(&mut response, qname, qtype, Name::from_ascii(target).ok(), 8);
        }
        Script::Ttl5 => address(&mut response, qname, qtype, TTL5_V4.octets()[3], 5),
        Script::Tc if transport == Transport::Udp => response.metadata.truncation = true,
        Script::Tc => {
            address(&mut response, qname, qtype, TC_V4.octets()[3], DEFAULT_TTL);
            if qtype == RecordType::A {
                for i in 1..=BIG_RECORDS {
                    let ip = Ipv4Addr::new(198, 51, 100, i as u8);
                    response
                        .answers
                        .push(Record::from_rdata(qname.clone(), DEFAULT_TTL, RData::A(A(ip))));
                }
            }
        }
        Script::Big => match qtype {
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
        Script::Many if transport == Transport::Udp => response.metadata.truncation = true,
        Script::Huge if qtype == RecordType::A => {
            for i in 1..=HUGE_RECORDS {
                let ip = Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8);
                response
                    .answers
                    .push(Record::from_rdata(qname.clone(), DEFAULT_TTL, RData::A(A(ip))));
            }
        }
        Script::Nx => {
            response.metadata.response_code = ResponseCode::NXDomain;
            negative(&mut response, qname);
        }
        Script::ServFail => response.metadata.response_code = ResponseCode::ServFail,
        _ => address(&mut response, qname, qtype, host, DEFAULT_TTL),
    }
    response
}

/// The answer to `many.*` A over TCP (1000 A records 10.1.x.y, about 16 KB; the query's OPT not echoed) and to
/// `large.*` A (3000 A records 10.0.x.y, 48 KB), written by hand so that every owner name is a compression pointer
/// to the question (hickory's encoder does not compress them) as real resolvers send such answers; `large.*` would
/// not even fit in a message without. A server that decodes and encodes again without compression would send
/// nearly twice that.
fn compressed_answer(query: &[u8], addresses: impl ExactSizeIterator<Item = Ipv4Addr>) -> Vec<u8> {
    let question_end = 12 + query[12..].iter().position(|&b| b == 0).unwrap_or(0) + 5;
    let mut answer = query[..2].to_vec();
    answer.extend_from_slice(&[0x81, 0x80, 0, 1]);
    answer.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    answer.extend_from_slice(&[0, 0, 0, 0]);
    answer.extend_from_slice(&query[12..question_end.min(query.len())]);
    for ip in addresses {
        answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        answer.extend_from_slice(&DEFAULT_TTL.to_be_bytes());
        answer.extend_from_slice(&[0, 4]);
        answer.extend_from_slice(&ip.octets());
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
        Name::from_ascii(format!("{SOA_MNAME}.")),
        Name::from_ascii(format!("{SOA_RNAME}.")),
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
fn lock<T>(log: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
