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
//! memory without end.

use std::cell::Cell;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use socket2::{Domain, Protocol as SockProtocol, Socket, Type};
use std::os::fd::AsRawFd;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::handler::{Handler, Protocol, Step, Tally};
use super::mmsg::Batch;

/// Kernel receive buffer we ask for, so bursts queue in the kernel rather than drop.
const SOCKET_BUFFER: usize = 4 << 20;

/// The worker threads of all UDP listeners.
pub struct UdpWorkers {
    threads: Vec<JoinHandle<()>>,
}

impl UdpWorkers {
    /// Binds `threads` sockets to each address (all bound before any thread starts, so a bad
    /// address fails the start) and starts a worker on each.
    pub fn start(
        addrs: &[SocketAddr],
        threads: usize,
        max_inflight: usize,
        handler: Arc<Handler>,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<UdpWorkers> {
        let mut sockets = Vec::new();
        for addr in addrs {
            for _ in 0..threads {
                sockets.push((*addr, bind(*addr)?));
            }
        }
        let mut workers = UdpWorkers { threads: Vec::new() };
        for (i, (addr, socket)) in sockets.into_iter().enumerate() {
            let handler = Arc::clone(&handler);
            let shutdown = shutdown.clone();
            let thread = std::thread::Builder::new().name(format!("udp-{i}")).spawn(move || {
                if let Err(e) = run(socket, handler, shutdown, max_inflight) {
                    tracing::error!(%addr, error = %e, "UDP worker stopped");
                }
            })?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Waits for every worker to finish (after shutdown was signalled).
    pub fn join(self) {
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("a UDP worker panicked");
            }
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
    socket.set_nonblocking(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind UDP {addr}: {e}")))?;
    Ok(socket.into())
}

fn run(
    socket: std::net::UdpSocket,
    handler: Arc<Handler>,
    mut shutdown: watch::Receiver<bool>,
    max_inflight: usize,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let socket = Rc::new(UdpSocket::from_std(socket)?);
        let fd = socket.as_raw_fd();
        let inflight = Rc::new(Cell::new(0usize));
        let overload = metrics::counter!(crate::metrics::DROPPED, "protocol" => "udp", "reason" => "overload");
        let mut batch = Batch::new();
        let mut tally = Tally::default();
        loop {
            if shutdown.has_changed().unwrap_or(true) {
                break;
            }
            // try_io clears the socket's readiness on WouldBlock, so that readable() then
            // sleeps until the kernel has more.
            let received = match socket.try_io(Interest::READABLE, || batch.receive(fd)) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    tokio::select! {
                        ready = socket.readable() => ready?,
                        _ = shutdown.changed() => break,
                    }
                    continue;
                }
                Err(e) => {
                    // ICMP errors surfacing from earlier sends and the like: not fatal.
                    tracing::debug!(error = %e, "UDP receive error");
                    continue;
                }
            };
            for i in 0..received {
                let d = batch.slot(i);
                let Some(peer) = d.peer.filter(|_| !d.truncated) else {
                    continue;
                };
                match handler.answer_fast(d.packet, peer.ip(), Protocol::Udp, d.answer, &mut tally) {
                    Step::Reply => batch.queue_answer(i),
                    Step::Drop => {}
                    Step::Forward(_) if inflight.get() >= max_inflight => overload.increment(1),
                    Step::Forward(pending) => {
                        inflight.set(inflight.get() + 1);
                        let (socket, handler, inflight) =
                            (Rc::clone(&socket), Arc::clone(&handler), Rc::clone(&inflight));
                        tokio::task::spawn_local(async move {
                            let mut out = Vec::with_capacity(512);
                            handler.answer_forward(pending, &mut out).await;
                            send(&socket, &out, peer).await;
                            inflight.set(inflight.get() - 1);
                        });
                    }
                }
            }
            batch.send(fd);
            handler.flush(&mut tally);
        }
        // Let forwarded queries in flight finish (each is bounded by the upstream timeout).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while inflight.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    })
}

async fn send(socket: &UdpSocket, answer: &[u8], peer: SocketAddr) {
    let result = match socket.try_send_to(answer, peer) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.send_to(answer, peer).await,
        other => other,
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "UDP send failed");
    }
}
