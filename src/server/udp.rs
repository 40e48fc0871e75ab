//! The UDP hot path: per listen address, one socket per worker thread (SO_REUSEPORT lets the
//! kernel spread clients over them), each drained by its own loop on a current-thread runtime.
//!
//! Datagrams are received and answered in batches (`recvmmsg`/`sendmmsg`, see `mmsg`): one
//! system call per batch when packets queue up, which is when capacity is decided. Blocks,
//! refusals, malformed packets and cache hits are answered inline from the worker's buffers: no
//! task, no allocation, nothing shared but the lock-free snapshot and the cache; counts are kept
//! per worker and added to the shared metrics once per batch.
//! A cache miss becomes a task on the same thread, bounded by `server.max_inflight`, that
//! forwards and answers; past the bound misses are dropped and counted, so a flood cannot grow
//! memory without end. A miss for a question already in flight on the worker waits for that
//! answer (`inflight`) instead of going upstream again. The worker owns its forwarding tasks
//! through a task tracker: at shutdown it stops reading and waits for them (a few seconds at
//! most), so that the queries in flight are answered.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use std::os::fd::{AsFd, BorrowedFd};

use tokio::io::Interest;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use super::handler::{Clock, Handler, Protocol, Step, Worker};
use super::inflight::{Follower, InFlight};
use crate::upstream::{Sockets, Transport};
use sinkhole_batchio::{Batch, send_one};

/// Datagrams received and answers sent per system call.
const BATCH: usize = 32;
/// Receive buffer per datagram. Queries are tens of bytes, a few hundred with large EDNS
/// options; a longer one is flagged as cut and dropped.
const RECV_LEN: usize = 4096;
/// Send buffer per answer: the largest DNS message.
const SEND_LEN: usize = 65_535;
/// How often an idle worker looks at the shutdown signal.
const SHUTDOWN_POLL: Duration = Duration::from_millis(200);
/// Kernel receive buffer we ask for, so bursts queue in the kernel rather than drop.
const SOCKET_BUFFER: usize = 4 << 20;
/// How long shutdown waits for a worker's forwarded queries to be answered (each is bounded by
/// the upstream timeout anyway); what is still in flight then is dropped unanswered.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The worker threads of all UDP listeners.
pub(crate) struct UdpWorkers {
    threads: Vec<JoinHandle<()>>,
}

/// The UDP sockets of all listeners, bound and not yet read: what [`UdpWorkers::start`] serves.
pub(crate) struct BoundUdp(Vec<(SocketAddr, std::net::UdpSocket)>);

impl UdpWorkers {
    /// Binds `threads` sockets to each address, all before any worker starts: a bad address
    /// fails the start, and privileges can be dropped between binding and serving.
    pub(crate) fn bind(addrs: &[SocketAddr], threads: usize) -> io::Result<BoundUdp> {
        let mut sockets = Vec::new();
        for addr in addrs {
            for _ in 0..threads {
                sockets.push((*addr, bind(*addr)?));
            }
        }
        Ok(BoundUdp(sockets))
    }

    /// Starts a worker on each of the bound sockets.
    pub(crate) fn start(
        BoundUdp(sockets): BoundUdp,
        max_inflight: usize,
        handler: Arc<Handler>,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<UdpWorkers> {
        let mut workers = UdpWorkers { threads: Vec::new() };
        let count = sockets.len();
        for (i, (addr, socket)) in sockets.into_iter().enumerate() {
            let handler = Arc::clone(&handler);
            let shutdown = shutdown.clone();
            let worker = handler.worker(count);
            let thread = std::thread::Builder::new().name(format!("udp-{i}")).spawn(move || {
                if let Err(e) = run(socket, handler, worker, shutdown, max_inflight, count + 1) {
                    tracing::error!(%addr, error = %e, "UDP worker stopped");
                }
            })?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Waits for every worker to finish (after shutdown was signalled).
    pub(crate) fn join(self) {
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("a UDP worker panicked");
            }
        }
    }
}

/// Sends answers `0..queued` of a batch. An answer the kernel refuses (a full socket buffer, an
/// unreachable client) is dropped, as a UDP server must, and the rest still go.
fn send_all(outgoing: &mut Batch, fd: BorrowedFd<'_>, queued: usize) {
    let mut sent = 0;
    while sent < queued {
        match outgoing.send_from(fd, sent, queued - sent) {
            Ok(0) => break,
            Ok(n) => sent += n,
            // sendmmsg fails only when its first message does: skip that one.
            Err(_) => sent += 1,
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(SockProtocol::UDP))?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        // [::] listens to IPv6 only, so that a separate 0.0.0.0 listener can coexist.
        socket.set_only_v6(true)?;
    }
    // Best effort: the kernel caps it at net.core.rmem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    // Blocking, with a timeout: a worker with nothing in flight sleeps inside recvmmsg (see
    // `run`) and wakes at least this often to look at the shutdown signal. Every other call
    // passes MSG_DONTWAIT itself.
    socket.set_read_timeout(Some(SHUTDOWN_POLL))?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind UDP {addr}: {e}")))?;
    if addr.ip().is_unspecified() {
        // A wildcard listener answers each query from the address it was sent to (see `run`).
        sinkhole_batchio::enable_destinations(socket.as_fd(), addr.is_ipv6())
            .map_err(|e| io::Error::new(e.kind(), format!("cannot ask for packet addresses on UDP {addr}: {e}")))?;
    }
    Ok(socket.into())
}

/// One worker's loop over its socket, until `shutdown`. `owners` is how many sets of upstream
/// sockets share the upstream in-flight cap (every worker's, and the TCP listener's).
fn run(
    socket: std::net::UdpSocket,
    handler: Arc<Handler>,
    mut worker: Worker,
    mut shutdown: watch::Receiver<bool>,
    max_inflight: usize,
    owners: usize,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        // Readiness only: every call on the socket is ours, with MSG_DONTWAIT where it must not
        // block, so the blocking socket is safe under the event loop. Shared with the
        // forwarding tasks, which send their answers on it.
        let socket = Rc::new(
            sinkhole_batchio::register(socket, Interest::READABLE)
                .map_err(|e| io::Error::other(format!("cannot register a UDP socket: {e}")))?,
        );
        let fd = socket.get_ref().as_fd();
        // Clients waiting on a forwarded query (those merged into another's included): the
        // `max_inflight` cap, and whether the loop may sleep in the kernel.
        let inflight = Rc::new(Cell::new(0usize));
        // The forwarding tasks, awaited at shutdown.
        let tasks = TaskTracker::new();
        let overload = metrics::counter!(crate::metrics::DROPPED, "protocol" => "udp", "reason" => "overload");
        let mut incoming = Batch::new(BATCH, RECV_LEN);
        // Bound to 0.0.0.0 or [::], the socket hears queries sent to any of the host's
        // addresses; each answer must leave from the one its query was sent to, or a client on
        // a host with several addresses (a resolver on many VLANs) drops it.
        let wildcard = socket.get_ref().local_addr()?.ip().is_unspecified();
        incoming.receive_destinations(wildcard);
        let mut outgoing = Batch::new(BATCH, SEND_LEN);
        let mut answer = Vec::with_capacity(SEND_LEN);
        // This worker's sockets to the upstreams, shared by its forwarding tasks.
        let upstream = Arc::new(Sockets::new(owners));
        // Its questions in flight, so that the same one goes upstream once at a time.
        let questions = Rc::new(InFlight::default());
        loop {
            if shutdown.has_changed().unwrap_or(true) {
                break;
            }
            let received = if inflight.get() == 0 {
                // Nothing else to run on this thread: sleep in the kernel until datagrams come,
                // one system call per wake-up, as a bare loop does. The receive timeout brings
                // it back to look at the shutdown signal.
                match incoming.recv_waiting(fd, BATCH, true) {
                    Ok(n) => n,
                    Err(e) => {
                        if !matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
                            tracing::debug!(error = %e, "UDP receive error");
                        }
                        continue;
                    }
                }
            } else {
                // Forwarded queries are in flight on this thread: wait under the event loop.
                // try_io clears the readiness on WouldBlock, so readable() then sleeps until
                // the kernel has more.
                tokio::select! {
                    ready = socket.readable() => match ready?.try_io(|_| incoming.recv(fd, BATCH, true)) {
                        Ok(Ok(n)) => n,
                        Ok(Err(e)) => {
                            // ICMP errors surfacing from earlier sends and the like: not fatal.
                            tracing::debug!(error = %e, "UDP receive error");
                            continue;
                        }
                        Err(_would_block) => continue,
                    },
                    _ = shutdown.changed() => break,
                }
            };
            let now = Clock::now();
            let mut queued = 0;
            for i in 0..received {
                let Some(peer) = incoming.peer(i).filter(|_| !incoming.truncated(i)) else {
                    continue;
                };
                // Behind a trusted relay: the DNS bytes after its PROXY header, and the client
                // it states. The answer still goes to the relay, without a header.
                let Some((query, client)) = handler.unwrap_datagram(incoming.received(i), peer.ip(), &mut worker)
                else {
                    continue;
                };
                match handler.answer_fast(query, client, Protocol::Udp, now, &mut answer, &mut worker) {
                    Step::Reply => {
                        if let Some(slot) = outgoing.buf_mut(queued).get_mut(..answer.len()) {
                            slot.copy_from_slice(&answer);
                            outgoing.set_len(queued, answer.len());
                            outgoing.set_peer(queued, peer);
                            outgoing.set_source(queued, incoming.destination(i));
                            queued += 1;
                        }
                    }
                    Step::Drop => {}
                    Step::Forward(_) if inflight.get() >= max_inflight => overload.increment(1),
                    Step::Forward(pending) => {
                        inflight.set(inflight.get() + 1);
                        let follower = Follower {
                            pending,
                            peer,
                            source: incoming.destination(i),
                        };
                        // The same question in flight already: this client gets its answer.
                        let Err(leader) = questions.join(follower) else {
                            continue;
                        };
                        let (handler, inflight) = (Arc::clone(&handler), Rc::clone(&inflight));
                        let (upstream, questions) = (Arc::clone(&upstream), Rc::clone(&questions));
                        let socket = Rc::clone(&socket);
                        tasks.spawn_local(async move {
                            let mut out = Vec::with_capacity(512);
                            let resolution = handler.resolve(&leader.pending, Transport::Udp(&upstream)).await;
                            let followers = questions.finish(leader.pending.key());
                            let answered = 1 + followers.len();
                            for client in std::iter::once(leader).chain(followers) {
                                handler.reply(&client.pending, &resolution, &mut out);
                                if let Err(e) = send_one(socket.get_ref().as_fd(), &out, client.peer, client.source) {
                                    tracing::debug!(peer = %client.peer, error = %e, "UDP send failed");
                                }
                            }
                            inflight.set(inflight.get() - answered);
                        });
                    }
                }
            }
            send_all(&mut outgoing, fd, queued);
            handler.flush(&mut worker);
            if inflight.get() > 0 {
                // Under a steady load the socket never runs dry: give the forwarding tasks
                // their turn after every batch.
                tokio::task::yield_now().await;
            }
        }
        // Let forwarded queries in flight finish; past the grace, the runtime drops the rest.
        tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait()).await.is_err() {
            tracing::warn!(
                unanswered = inflight.get(),
                "UDP worker stopped with forwarded queries still unanswered"
            );
        }
        Ok(())
    })
}
