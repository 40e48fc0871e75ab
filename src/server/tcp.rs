//! DNS over TCP (RFC 7766): the listeners, their connections, and the limits that keep one
//! client from taking the server down with them.
//!
//! Every query goes through the same [`Handler`] as UDP, and its answer goes out as the handler
//! wrote it (the cached bytes, name compression and all). Queries on one connection are answered
//! concurrently and out of order, as they are resolved (RFC 7766 6.2.1.1): ten fast queries no
//! longer wait behind a slow one.
//!
//! What bounds a client, as the mini-redis `Listener` bounds its connections:
//! - the allow list is checked when a connection is accepted: a host outside `server.allow`
//!   cannot hold a connection (nor a file descriptor) at all;
//! - connections are capped in total and per client address, below the file descriptor limit
//!   (raised at start to the hard limit) with descriptors kept for upstream sockets, so that a
//!   TCP flood cannot take the UDP path's upstream sockets with it;
//! - a connection is closed when idle between queries, when a query it started does not finish
//!   arriving in time (slowloris), and when an answer is not taken in time (a client that does
//!   not read);
//! - each connection has a bounded number of queries in flight, and the answers waiting to be
//!   written share a byte budget, so memory stays bounded by configuration.
//!
//! An accept that fails for want of descriptors backs off instead of spinning on the backlog.
//!
//! DNS over TLS and DNS over HTTPS listeners are accepted here too, and share these limits with
//! plain TCP (one pool of connections, one share per client, the allow list at accept): an
//! encrypted connection costs a descriptor and memory like any other, and one budget is what the
//! descriptor limit allows. After a handshake bounded by `server.tls_handshake_timeout`
//! (src/server/tls.rs), a DoT connection is served by the same [`serve_connection`] as plain
//! TCP, and a DoH one by src/server/doh.rs.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use metrics::{Counter, Gauge};
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::doh::DohMetrics;
use super::handler::{Clock, Handler, Protocol, Step, Worker};
use super::tls::{self, HandshakeMetrics};
use crate::framing::{FrameReader, framed};
use crate::upstream::{Sockets, Transport};

/// Connections the kernel queues before we accept them.
const LISTEN_BACKLOG: i32 = 1024;
/// How long an accept loop pauses after the system refused it a descriptor (EMFILE, ENFILE),
/// rather than retry at once on the same waiting connection (which spun a core at 100 %).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long shutdown waits for connections to finish the queries they have in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The limits of the TCP side, from `[server]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TcpLimits {
    /// Open connections at most, over all listeners.
    pub max_connections: usize,
    /// Open connections at most from one client address.
    pub max_per_client: usize,
    /// A connection with no query for this long is closed.
    pub idle: Duration,
    /// A query (or an answer) that takes longer than this to arrive (to be taken) closes its
    /// connection.
    pub io_timeout: Duration,
    /// Queries one connection may have in flight; it reads no more until one is answered.
    pub pipeline: usize,
    /// Bytes of answers waiting to be written, over all connections.
    pub buffer_bytes: usize,
    /// A DoT or DoH connection that has not finished its TLS handshake by then is closed.
    pub handshake: Duration,
}

/// What a listener serves on the connections it accepts.
#[derive(Clone)]
pub(crate) enum Service {
    /// DNS over TCP (RFC 7766).
    Dns,
    /// DNS over TLS (RFC 7858): TCP framing inside TLS.
    Dot(TlsAcceptor),
    /// DNS over HTTPS (RFC 8484), HTTP/2 or HTTP/1.1 inside TLS.
    Doh(TlsAcceptor),
}

/// The TCP side of the server: one accept loop per listen address.
pub(crate) struct TcpServer {
    loops: Vec<tokio::task::JoinHandle<()>>,
    stop: watch::Sender<bool>,
}

/// The TCP listeners, bound and listening but not yet accepting: what [`TcpServer::start`] serves.
pub(crate) struct BoundTcp(Vec<(TcpListener, Service)>);

impl BoundTcp {
    /// Binds more listeners for `service` (DoT, DoH), served beside the plain TCP ones.
    pub(crate) fn bind_more(&mut self, addrs: &[SocketAddr], service: &Service) -> io::Result<()> {
        let what = match service {
            Service::Dns => "TCP",
            Service::Dot(_) => "DNS over TLS",
            Service::Doh(_) => "DNS over HTTPS",
        };
        for addr in addrs {
            let listener =
                bind(*addr).map_err(|e| io::Error::new(e.kind(), format!("cannot bind {what} {addr}: {e}")))?;
            self.0.push((listener, service.clone()));
        }
        Ok(())
    }
}

impl TcpServer {
    /// Binds every address, before anything is served: privileges can be dropped in between.
    pub(crate) fn bind(addrs: &[SocketAddr]) -> io::Result<BoundTcp> {
        let mut listeners = Vec::new();
        for addr in addrs {
            let listener = bind(*addr).map_err(|e| io::Error::new(e.kind(), format!("cannot bind TCP {addr}: {e}")))?;
            listeners.push((listener, Service::Dns));
        }
        Ok(BoundTcp(listeners))
    }

    /// Starts serving the bound listeners. `upstream` is the set of upstream sockets its
    /// forwarded queries use.
    pub(crate) fn start(
        BoundTcp(listeners): BoundTcp,
        limits: TcpLimits,
        handler: Arc<Handler>,
        upstream: Arc<Sockets>,
    ) -> TcpServer {
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            handler,
            upstream,
            limits,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            per_client: Mutex::new(HashMap::new()),
            buffer: Arc::new(Semaphore::new(limits.buffer_bytes.div_ceil(1024))),
            metrics: TcpMetrics::new(),
            handshakes: HandshakeMetrics::new(),
            doh: DohMetrics::new(),
        });
        let loops = listeners
            .into_iter()
            .map(|(listener, service)| {
                tokio::spawn(accept_loop(listener, service, Arc::clone(&shared), stopped.clone()))
            })
            .collect();
        TcpServer { loops, stop }
    }

    /// Stops accepting, lets the connections finish the queries in flight (for a few seconds at
    /// most), and waits.
    pub(crate) async fn shutdown(self) {
        let _ = self.stop.send(true);
        for accept in self.loops {
            if let Err(e) = accept.await {
                tracing::warn!(error = %e, "a TCP accept loop failed");
            }
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(SockProtocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // As for UDP: [::] is IPv6 only, so that 0.0.0.0 can be listened on beside it.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    TcpListener::from_std(socket.into())
}

/// What every accept loop and connection of the TCP side shares (DoT and DoH included).
pub(super) struct Shared {
    pub(super) handler: Arc<Handler>,
    /// The upstream sockets forwarded queries go out on.
    pub(super) upstream: Arc<Sockets>,
    pub(super) limits: TcpLimits,
    /// One permit per connection that may be open.
    connections: Arc<Semaphore>,
    /// Open connections per client address (absent: none).
    per_client: Mutex<HashMap<IpAddr, usize>>,
    /// One permit per KiB of answers that may wait to be written.
    buffer: Arc<Semaphore>,
    pub(super) metrics: TcpMetrics,
    handshakes: HandshakeMetrics,
    /// DoH responses by status.
    pub(super) doh: DohMetrics,
}

/// The metric handles of the TCP side.
pub(super) struct TcpMetrics {
    /// `sinkhole_tcp_connections`: open now.
    open: Gauge,
    /// `sinkhole_tcp_rejected_total{reason}`: not allowed to query, over the total limit, over
    /// the per-client limit.
    refused_acl: Counter,
    refused_total: Counter,
    refused_client: Counter,
    /// `sinkhole_tcp_closed_total{reason="timeout"}`: closed for being too slow to send a
    /// query or to take an answer.
    pub(super) slow: Counter,
}

impl TcpMetrics {
    fn new() -> TcpMetrics {
        use crate::metrics::{TCP_CLOSED, TCP_CONNECTIONS, TCP_REJECTED};
        TcpMetrics {
            open: metrics::gauge!(TCP_CONNECTIONS),
            refused_acl: metrics::counter!(TCP_REJECTED, "reason" => "not_allowed"),
            refused_total: metrics::counter!(TCP_REJECTED, "reason" => "limit"),
            refused_client: metrics::counter!(TCP_REJECTED, "reason" => "client_limit"),
            slow: metrics::counter!(TCP_CLOSED, "reason" => "timeout"),
        }
    }
}

/// A connection's place under the limits; given back on drop.
pub(super) struct Admission {
    pub(super) shared: Arc<Shared>,
    client: IpAddr,
    _permit: OwnedSemaphorePermit,
}

impl Shared {
    /// Admits a connection from `client`, or says why not (counted).
    fn admit(self: &Arc<Shared>, client: IpAddr) -> Option<Admission> {
        let client = client.to_canonical();
        if !self.handler.client_allowed(client) {
            self.metrics.refused_acl.increment(1);
            return None;
        }
        let Ok(permit) = Arc::clone(&self.connections).try_acquire_owned() else {
            self.metrics.refused_total.increment(1);
            return None;
        };
        let mut per_client = self.per_client.lock().unwrap_or_else(PoisonError::into_inner);
        let open = per_client.entry(client).or_insert(0);
        if *open >= self.limits.max_per_client {
            self.metrics.refused_client.increment(1);
            return None;
        }
        *open += 1;
        self.metrics.open.increment(1.0);
        Some(Admission {
            shared: Arc::clone(self),
            client,
            _permit: permit,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut per_client = self.shared.per_client.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = per_client.get_mut(&self.client) {
            *open -= 1;
            if *open == 0 {
                per_client.remove(&self.client);
            }
        }
        self.shared.metrics.open.decrement(1.0);
    }
}

/// Accepts connections until `stop`, then waits for them to finish (a few seconds at most).
async fn accept_loop(listener: TcpListener, service: Service, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.changed() => break,
            // Reap finished connections as they go, so the set stays as small as the open ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors (or another per-connection error): the connection stays in
                // the backlog, so retrying at once would spin. Pause, and let others close.
                tracing::debug!(%error, "TCP accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Refused: dropping the stream closes it at once.
        let Some(admission) = shared.admit(peer.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        match &service {
            Service::Dns => {
                let stop = stop.clone();
                connections.spawn(async move {
                    let mut stream = stream;
                    let Some(peer) = stated_client(&mut stream, peer, &admission).await else {
                        return;
                    };
                    serve_connection(stream, peer, admission, stop, Protocol::Tcp).await;
                });
            }
            Service::Dot(acceptor) | Service::Doh(acceptor) => {
                let (acceptor, stop) = (acceptor.clone(), stop.clone());
                let doh = matches!(service, Service::Doh(_));
                connections.spawn(async move {
                    // The client's address is decided before the handshake: a relay's PROXY
                    // header comes in clear ahead of the TLS session it carries.
                    let mut stream = stream;
                    let Some(peer) = stated_client(&mut stream, peer, &admission).await else {
                        return;
                    };
                    let timeout = admission.shared.limits.handshake;
                    let handshakes = &admission.shared.handshakes;
                    let Some(stream) = tls::handshake(&acceptor, stream, timeout, handshakes).await else {
                        return;
                    };
                    if doh {
                        super::doh::serve_connection(stream, peer, admission, stop).await;
                    } else {
                        serve_connection(stream, peer, admission, stop, Protocol::Dot).await;
                    }
                });
            }
        }
    }
    drop(listener);
    let grace = tokio::time::sleep(SHUTDOWN_GRACE);
    tokio::pin!(grace);
    while !connections.is_empty() {
        tokio::select! {
            _ = connections.join_next() => {}
            () = &mut grace => {
                connections.abort_all();
                break;
            }
        }
    }
}

/// The client a connection from `peer` is for: the one a trusted relay's PROXY header states at
/// the start of the stream (`server.trusted_relays`), else `peer` itself. None: a trusted relay's
/// header did not read in time, and the connection is closed (counted). The admission stays the
/// relay's: connection limits count the sender that holds the connection.
async fn stated_client(stream: &mut TcpStream, peer: SocketAddr, admission: &Admission) -> Option<SocketAddr> {
    let shared = &admission.shared;
    let client = super::relay::stream_client(&shared.handler, stream, peer.ip(), shared.limits.io_timeout).await?;
    Some(SocketAddr::new(client, peer.port()))
}

/// Serves one connection: reads queries, answers each as soon as it is resolved (the fast ones
/// inline, cache misses in tasks of their own, at most `pipeline` at once), and closes on idle,
/// slowness, the client's close, or shutdown (after the queries in flight are answered).
///
/// `stream` is a TCP connection, or the TLS session on one (DoT, `protocol`); `peer` is the
/// client, whose address the handler's policies see.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    admission: Admission,
    mut stop: watch::Receiver<bool>,
    protocol: Protocol,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = Arc::clone(&admission.shared);
    let limits = shared.limits;
    let client = peer.ip().to_canonical();
    let (mut reader, writer) = tokio::io::split(stream);
    let (answers, outgoing) = mpsc::channel::<Answer>(limits.pipeline);
    let write = tokio::spawn(write_answers(writer, outgoing, limits.io_timeout, Arc::clone(&shared)));
    let in_flight = Arc::new(Semaphore::new(limits.pipeline));
    let mut tasks = JoinSet::new();
    let mut frames = FrameReader::new();
    let mut worker = Worker::default();
    let mut out = Vec::with_capacity(512);
    loop {
        // Between queries the idle limit; a query under way must arrive within io_timeout.
        let frame = tokio::select! {
            frame = frames.next_timed(&mut reader, limits.idle, limits.io_timeout) => frame,
            _ = stop.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let query = match frame {
            Ok(Some(query)) => query,
            Ok(None) => break,
            Err(error) => {
                if error.kind() == io::ErrorKind::TimedOut && frames.is_mid_frame() {
                    shared.metrics.slow.increment(1);
                }
                tracing::debug!(%peer, %error, "TCP connection closed");
                break;
            }
        };
        let step = shared
            .handler
            .answer_fast(query, client, protocol, Clock::now(), &mut out, &mut worker);
        shared.handler.flush(&mut worker);
        match step {
            Step::Reply => {
                let Some(answer) = Answer::new(&out, &shared).await else {
                    break;
                };
                if answers.send(answer).await.is_err() {
                    break;
                }
            }
            Step::Drop => {}
            Step::Forward(pending) => {
                // Bounded: past `pipeline` queries in flight, reading waits for one to finish.
                let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                    break;
                };
                let (shared, answers) = (Arc::clone(&shared), answers.clone());
                tasks.spawn(async move {
                    let mut out = Vec::with_capacity(512);
                    let transport = Transport::Tcp(&shared.upstream);
                    shared.handler.answer_forward(pending, transport, &mut out).await;
                    if let Some(answer) = Answer::new(&out, &shared).await {
                        let _ = answers.send(answer).await;
                    }
                    drop(permit);
                });
            }
        }
    }
    // Answer what is in flight (each is bounded by the upstream timeout), then close.
    while tasks.join_next().await.is_some() {}
    drop(answers);
    let _ = write.await;
    drop(admission);
}

/// One answer waiting to be written, holding its share of the answer byte budget.
struct Answer {
    bytes: Vec<u8>,
    _budget: OwnedSemaphorePermit,
}

impl Answer {
    /// Frames `message` once it has its share of the byte budget; None if it does not get it
    /// within the I/O timeout (the budget is held by clients that do not read: this connection
    /// is closed rather than wait on them) or cannot be framed.
    async fn new(message: &[u8], shared: &Shared) -> Option<Answer> {
        let bytes = framed(message)?;
        let kib = u32::try_from(bytes.len().div_ceil(1024)).ok()?;
        let wait = Arc::clone(&shared.buffer).acquire_many_owned(kib);
        let budget = tokio::time::timeout(shared.limits.io_timeout, wait).await.ok()?.ok()?;
        Some(Answer { bytes, _budget: budget })
    }
}

/// Writes answers as they come, each within the I/O timeout: a client that stops reading is
/// disconnected, not waited on.
async fn write_answers<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut answers: mpsc::Receiver<Answer>,
    timeout: Duration,
    shared: Arc<Shared>,
) {
    while let Some(answer) = answers.recv().await {
        match tokio::time::timeout(timeout, writer.write_all(&answer.bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break,
            Err(_) => {
                shared.metrics.slow.increment(1);
                break;
            }
        }
    }
    // Best effort: the client may be gone.
    let _ = writer.shutdown().await;
}
