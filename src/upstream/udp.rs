//! UDP to one upstream server: a connected socket on a random port, kept open and shared by the
//! queries a worker has in flight to that server, as dnsdist does.
//!
//! A socket per query costs more than the query itself (socket, connect, register with the event
//! loop, deregister, close: most of a cache miss's kernel time). A shared socket needs an owner
//! for the answers: each [`Link`] has a receiving task that reads every datagram that comes in
//! and offers it to the queries waiting on that socket (see `waiters`: id, question, case,
//! decoding), waking the one it answers. Datagrams that answer nothing are counted and dropped.
//!
//! Against off-path spoofing (RFC 5452) a forwarder has the id (16 random bits), the source port
//! and the case of the name's letters (0x20). A socket per query gave a new port each time; here
//! a worker spreads its queries to one server over [`PORTS`] sockets at random, and each carries
//! [`ROTATE_AFTER`] queries or lives [`ROTATE_AGE`] at most before a fresh one on a new random
//! port takes its place (the old one stays open until its last query is answered or times out):
//! a spoofer who learns one port reaches a quarter of the queries, for a few hundred of them.

use std::cell::RefCell;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};
use tokio::time::Instant;

use super::AttemptError;
use super::exchange::question_of;
use super::health::{ErrorKind, Server};
use super::waiters::{MAX_WAITING, Offer, Waiters};
use crate::cache::{CachedResponse, TtlLimits};
use sinkhole_batchio::Batch;

/// Sockets a worker spreads its queries to one server over, each on its own random port.
pub(super) const PORTS: usize = 4;
/// Queries one socket carries before a fresh socket (a new random port) replaces it.
pub(super) const ROTATE_AFTER: u32 = 256;
/// The longest one socket takes new queries, however few went through it.
pub(super) const ROTATE_AGE: Duration = Duration::from_secs(30);
/// Datagrams one `recvmmsg` of a receiving task takes.
const RECV_BATCH: usize = 16;
/// Batches a receiving task reads in a row before it lets the thread's other tasks run.
const DRAIN_ROUNDS: usize = 4;
/// Room for any datagram: an upstream may answer past the size the client advertised (the
/// server truncates for the client itself).
const MAX_DATAGRAM: usize = 65_535;

/// One connected socket to one server, the queries waiting on it, and its receiving task.
pub(super) struct Link {
    /// The server it is connected to: the kernel drops datagrams from any other address and
    /// reports ICMP errors (port unreachable) on it, so a closed port fails fast.
    server: Arc<Server>,
    /// Non-blocking, registered with the runtime that opened it.
    socket: AsyncFd<std::net::UdpSocket>,
    /// When it was opened, for [`ROTATE_AGE`].
    opened: Instant,
    /// The queries waiting.
    pub(super) waiters: Waiters,
}

impl Link {
    /// Opens a socket on a random port connected to `server`, and starts its receiving task;
    /// `load` counts the queries in flight to the server from the link's owner.
    pub(super) fn open(server: &Arc<Server>, load: Arc<AtomicUsize>, now: Instant) -> io::Result<Arc<Link>> {
        let local: SocketAddr = match server.addr {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = std::net::UdpSocket::bind(local)?;
        socket.connect(server.addr)?;
        socket.set_nonblocking(true)?;
        let interest = Interest::READABLE | Interest::WRITABLE | Interest::ERROR;
        let socket = sinkhole_batchio::register(socket, interest)?;
        let link = Arc::new(Link {
            server: Arc::clone(server),
            socket,
            opened: now,
            waiters: Waiters::new(load),
        });
        tokio::spawn(receive(Arc::clone(&link)));
        Ok(link)
    }

    /// Whether new queries may still go through this link at `now`.
    pub(super) fn takes_more(&self, now: Instant) -> bool {
        let (sent, waiting) = self.waiters.counts();
        !self.waiters.is_retired()
            && sent < ROTATE_AFTER
            && waiting < MAX_WAITING
            && now.saturating_duration_since(self.opened) < ROTATE_AGE
    }

    /// Sends `query` (its question section, as the answer must repeat it, `question_len` bytes
    /// after the header) with a fresh random id written into it, and waits until `deadline` for
    /// the datagram that answers it (see `waiters`). A socket error (ICMP port unreachable and
    /// the like) ends the wait at once.
    pub(super) async fn exchange(
        &self,
        query: &mut [u8],
        question_len: usize,
        exact_case: bool,
        limits: TtlLimits,
        deadline: Instant,
    ) -> Result<CachedResponse, AttemptError> {
        let waiting = self
            .waiters
            .register(question_of(query, question_len), exact_case, limits)
            .ok_or(AttemptError::Busy)?;
        super::exchange::set_id(query, waiting.id);
        if let Err(error) = self
            .socket
            .async_io(Interest::WRITABLE, |socket| socket.send(query))
            .await
        {
            // A send reports the error an earlier datagram drew (ICMP port unreachable) and
            // clears it: the queries already waiting would not hear of it otherwise.
            self.waiters.fail_all(&error);
            return Err(error.into());
        }
        match tokio::time::timeout_at(deadline, waiting.outcome()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(AttemptError::Timeout),
        }
    }

    /// Receives what is queued on the socket (`fd`, this link's) into `batch` with one
    /// `recvmmsg` and offers each datagram to the waiting queries; returns how many came.
    fn receive_batch(&self, fd: BorrowedFd<'_>, batch: &mut Batch) -> io::Result<usize> {
        let got = batch.recv(fd, RECV_BATCH, false)?;
        let now = std::time::Instant::now();
        let (mut strays, mut malformed) = (0, 0);
        for datagram in (0..got).map(|i| batch.received(i)) {
            match self.waiters.offer(datagram, now, false) {
                Offer::Taken { case_checked: true } => self.server.case.matched(),
                Offer::Taken { case_checked: false } => {}
                Offer::Stray => strays += 1,
                Offer::Malformed => malformed += 1,
                Offer::CaseMismatch => self.server.case_missed(),
            }
        }
        self.server.count_n(ErrorKind::Stray, strays);
        self.server.count_n(ErrorKind::Malformed, malformed);
        Ok(got)
    }
}

thread_local! {
    /// The receive buffers of the links whose receiving tasks run on this thread: one set per
    /// thread is enough, since a task uses it only between two awaits.
    static SCRATCH: RefCell<Batch> = RefCell::new(Batch::new(RECV_BATCH, MAX_DATAGRAM));
}

/// The receiving task of a link: reads every datagram and offers it to the waiting queries,
/// until the link is retired and empty.
async fn receive(link: Arc<Link>) {
    loop {
        let mut guard = tokio::select! {
            ready = link.socket.ready(Interest::READABLE | Interest::ERROR) => match ready {
                Ok(guard) => guard,
                Err(error) => {
                    // The reactor is gone (the runtime is shutting down): nothing more comes.
                    link.waiters.fail_all(&error);
                    return;
                }
            },
            () = link.waiters.finished.notified() => {
                if link.waiters.is_finished() {
                    return;
                }
                continue;
            }
        };
        let ready = guard.ready();
        if ready.is_error() {
            // SO_ERROR reads and clears the socket's pending error; the readiness bit is ours
            // to clear (the kernel reports it once).
            if let Ok(Some(error)) = guard.get_inner().take_error() {
                link.waiters.fail_all(&error);
            }
            guard.clear_ready_matching(Ready::ERROR);
        }
        let fd = guard.get_inner().as_fd();
        let mut drained = false;
        for _ in 0..DRAIN_ROUNDS {
            match SCRATCH.with_borrow_mut(|batch| link.receive_batch(fd, batch)) {
                // A short batch emptied the queue. Epoll (edge-triggered) reports every datagram
                // that comes after this call, so the readiness can be cleared without a call
                // that returns WouldBlock.
                Ok(got) if got < RECV_BATCH => drained = true,
                Ok(_) => continue,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => drained = true,
                // An ICMP error surfacing on the receive: the datagrams behind it still count.
                Err(error) => {
                    link.waiters.fail_all(&error);
                    continue;
                }
            }
            guard.clear_ready_matching(Ready::READABLE);
            break;
        }
        drop(guard);
        if link.waiters.is_finished() {
            return;
        }
        if !drained {
            // More is queued: let the thread's other tasks (the answers just woken) run first.
            tokio::task::yield_now().await;
        }
    }
}
