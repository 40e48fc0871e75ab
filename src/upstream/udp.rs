//! A worker's UDP sockets to the upstream servers: one connected socket per server at a time,
//! kept open and shared by every query the worker has in flight to that server, as dnsdist does.
//!
//! A socket per query costs more than the query itself (socket, connect, register with the event
//! loop, deregister, close: most of a cache miss's kernel time). A shared socket needs an owner
//! for the answers: each [`Link`] has a receiving task that reads every datagram that comes in,
//! matches it by id and question against the queries waiting on that socket, and wakes the one
//! it answers. Datagrams that answer nothing waiting (late answers, spoofing attempts, noise) are
//! counted and dropped.
//!
//! Against off-path spoofing a forwarder has the id (16 random bits) and the source port. A
//! socket per query gave a new port each time; here a socket carries [`ROTATE_AFTER`] queries or
//! lives [`ROTATE_AGE`] at most before a fresh one on a new random port takes over (the old one
//! stays open until its last query is answered or times out), so the port an attacker must find
//! keeps moving, at a cost spread over thousands of queries.

use std::cell::RefCell;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};
use std::time::Duration;

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;
use metrics::Counter;
use tokio::io::unix::AsyncFd;
use tokio::io::{Interest, Ready};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::exchange::answers;
use super::health::{ErrorKind, Server};
use crate::mmsg::Batch;

/// Queries one socket carries before a fresh socket (a new random port) replaces it.
pub(super) const ROTATE_AFTER: u32 = 2048;
/// The longest one socket takes new queries, however few went through it.
const ROTATE_AGE: Duration = Duration::from_secs(30);
/// The most queries waiting on one socket. Ids are 16 bits: below this a random id is free at
/// the first draw nearly always. A worker with more in flight to one server opens another socket.
const MAX_WAITING: usize = 8192;
/// Datagrams one `recvmmsg` of a receiving task takes.
const RECV_BATCH: usize = 16;
/// Batches a receiving task reads in a row before it lets the thread's other tasks run.
const DRAIN_ROUNDS: usize = 4;
/// Room for any datagram: an upstream may answer past the size the client advertised (the
/// server truncates for the client itself).
const MAX_DATAGRAM: usize = 65_535;

/// One worker's sockets to the upstream servers, keyed by server address (so they survive a
/// reload that keeps the server). Create one per worker thread and share it (an `Arc`) with that
/// worker's forwarding tasks; it must be used inside a tokio runtime, whose reactor its sockets
/// join. Dropping it retires every socket: each closes once its last query is done.
#[derive(Default)]
pub struct UdpSockets {
    /// The socket each server gets new queries on.
    links: Mutex<Vec<Arc<Link>>>,
}

impl std::fmt::Debug for UdpSockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpSockets")
            .field("links", &lock(&self.links).len())
            .finish()
    }
}

impl UdpSockets {
    /// A set with no sockets yet: each opens on the first query to its server.
    pub fn new() -> Self {
        UdpSockets::default()
    }

    /// The socket for new queries to `server`: the current one, or a fresh one if it is due for
    /// rotation (or full). Opening one also retires every other link past its time, so that the
    /// socket of a server a reload removed does not stay open.
    fn link(&self, server: &Server, now: Instant) -> io::Result<Arc<Link>> {
        let mut links = lock(&self.links);
        if let Some(link) = links
            .iter()
            .find(|link| link.server == server.addr && link.takes_more(now))
        {
            return Ok(Arc::clone(link));
        }
        links.retain(|link| {
            let keep = link.takes_more(now);
            if !keep {
                link.retire();
            }
            keep
        });
        let link = Link::open(server, now)?;
        links.push(Arc::clone(&link));
        Ok(link)
    }

    /// Sends `query` to `server` with a fresh random id (written into `query`) and waits until
    /// `deadline` for the datagram that answers it: same id, QR set, the same `question` (name
    /// without case, type, class). A socket error (ICMP port unreachable and the like) ends the
    /// wait at once.
    pub(crate) async fn exchange(
        &self,
        server: &Server,
        query: &mut [u8],
        question: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, super::AttemptError> {
        let link = self.link(server, Instant::now())?;
        let id = link
            .register(question)
            .ok_or_else(|| io::Error::other("too many queries in flight to this server"))?;
        super::exchange::set_id(query, id);
        let waiting = Waiting { link: &link, id };
        if let Err(error) = link
            .socket
            .async_io(Interest::WRITABLE, |socket| socket.send(query))
            .await
        {
            // A send reports the error an earlier datagram drew (ICMP port unreachable) and
            // clears it: the queries already waiting would not hear of it otherwise.
            link.fail_all(&error);
            return Err(error.into());
        }
        match tokio::time::timeout_at(deadline, waiting.answer()).await {
            Ok(answer) => Ok(answer?),
            Err(_) => Err(super::AttemptError::Timeout),
        }
    }
}

impl Drop for UdpSockets {
    fn drop(&mut self) {
        for link in lock(&self.links).drain(..) {
            link.retire();
        }
    }
}

/// One connected socket to one server, the queries waiting on it, and its receiving task.
struct Link {
    /// The server it is connected to: the kernel drops datagrams from any other address and
    /// reports ICMP errors (port unreachable) on it, so a closed port fails fast.
    server: SocketAddr,
    /// Non-blocking, registered with the runtime that opened it.
    socket: AsyncFd<std::net::UdpSocket>,
    /// When it was opened, for [`ROTATE_AGE`].
    opened: Instant,
    /// The queries waiting, and the counts rotation goes by.
    table: Mutex<Table>,
    /// Wakes the receiving task when the link is retired and its last query is gone.
    finished: Notify,
    /// `sinkhole_upstream_errors_total{kind="malformed"}` of the server: datagrams that answer
    /// no waiting query.
    strays: Counter,
}

/// The queries waiting on a [`Link`], by id.
#[derive(Default)]
struct Table {
    waiting: HashMap<u16, Waiter, foldhash::fast::RandomState>,
    /// Queries sent through the link so far.
    sent: u32,
    /// Set when the link takes no new queries.
    retired: bool,
}

/// One query waiting for its answer.
struct Waiter {
    /// Its question section, which the answer must repeat.
    question: Box<[u8]>,
    /// The task to wake when the outcome is in.
    waker: Option<Waker>,
    /// The answer, or the socket error that ended the wait.
    outcome: Option<io::Result<Vec<u8>>>,
}

impl Link {
    /// Opens a socket on a random port connected to `server`, and starts its receiving task.
    fn open(server: &Server, now: Instant) -> io::Result<Arc<Link>> {
        let local: SocketAddr = match server.addr {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = std::net::UdpSocket::bind(local)?;
        socket.connect(server.addr)?;
        socket.set_nonblocking(true)?;
        let interest = Interest::READABLE | Interest::WRITABLE | Interest::ERROR;
        // SAFETY: the UdpSocket owns its descriptor and the AsyncFd owns the UdpSocket, so the
        // descriptor stays open and the same for as long as it is registered.
        let socket = unsafe { AsyncFd::register_with_interest(socket, interest) }?;
        let link = Arc::new(Link {
            server: server.addr,
            socket,
            opened: now,
            table: Mutex::new(Table::default()),
            finished: Notify::new(),
            strays: server.counter(ErrorKind::Malformed),
        });
        tokio::spawn(receive(Arc::clone(&link)));
        Ok(link)
    }

    /// Whether new queries may still go through this link at `now`.
    fn takes_more(&self, now: Instant) -> bool {
        let table = lock(&self.table);
        !table.retired
            && table.sent < ROTATE_AFTER
            && table.waiting.len() < MAX_WAITING
            && now.saturating_duration_since(self.opened) < ROTATE_AGE
    }

    /// Takes no new queries from now on; the receiving task ends after the last waiting one.
    fn retire(&self) {
        let mut table = lock(&self.table);
        table.retired = true;
        if table.waiting.is_empty() {
            self.finished.notify_one();
        }
    }

    /// Whether the link is retired and nothing waits on it any more.
    fn is_finished(&self) -> bool {
        let table = lock(&self.table);
        table.retired && table.waiting.is_empty()
    }

    /// Registers a query with `question` under a random id not in use on this link; None if
    /// the link is full.
    fn register(&self, question: &[u8]) -> Option<u16> {
        let mut table = lock(&self.table);
        if table.waiting.len() >= MAX_WAITING {
            return None;
        }
        table.sent = table.sent.saturating_add(1);
        // At most MAX_WAITING of 65536 ids are taken: a draw is free with odds of 7 in 8 or
        // better, so 32 draws all failing does not happen in practice.
        for _ in 0..32 {
            if let Entry::Vacant(slot) = table.waiting.entry(rand::random::<u16>()) {
                let id = *slot.key();
                slot.insert(Waiter {
                    question: question.into(),
                    waker: None,
                    outcome: None,
                });
                return Some(id);
            }
        }
        None
    }

    /// Receives what is queued on the socket (`fd`, this link's) into `batch` with one
    /// `recvmmsg` and hands each datagram to the query it answers; returns how many came.
    fn receive_batch(&self, fd: RawFd, batch: &mut Batch) -> io::Result<usize> {
        let got = batch.recv(fd, RECV_BATCH, false)?;
        let mut strays = 0;
        let mut table = lock(&self.table);
        for datagram in (0..got).map(|i| batch.received(i)) {
            let id = datagram.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            match table.waiting.get_mut(&id) {
                Some(waiter) if waiter.outcome.is_none() && answers(&waiter.question, datagram, id) => {
                    waiter.outcome = Some(Ok(datagram.to_vec()));
                    if let Some(waker) = waiter.waker.take() {
                        waker.wake();
                    }
                }
                // Nothing waits for this id (a late answer after a timeout, a guess), the
                // question is not the one asked, or the query already has its answer.
                _ => strays += 1,
            }
        }
        drop(table);
        if strays > 0 {
            self.strays.increment(strays);
        }
        Ok(got)
    }

    /// Ends the wait of every query on the link with `error`: the socket reported a failure
    /// (the server's port is closed, the network unreachable) that no answer will follow.
    fn fail_all(&self, error: &io::Error) {
        let wakers: Vec<Waker> = {
            let mut table = lock(&self.table);
            table
                .waiting
                .values_mut()
                .filter(|waiter| waiter.outcome.is_none())
                .filter_map(|waiter| {
                    waiter.outcome = Some(Err(copy_error(error)));
                    waiter.waker.take()
                })
                .collect()
        };
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// A query registered on a link; dropping it (answered, timed out, or cancelled) frees its id.
struct Waiting<'a> {
    link: &'a Link,
    id: u16,
}

impl Waiting<'_> {
    /// Waits for the outcome the receiving task hands over.
    async fn answer(&self) -> io::Result<Vec<u8>> {
        std::future::poll_fn(|cx| {
            let mut table = lock(&self.link.table);
            let Some(waiter) = table.waiting.get_mut(&self.id) else {
                return Poll::Ready(Err(io::Error::other("query no longer registered")));
            };
            match waiter.outcome.take() {
                Some(outcome) => Poll::Ready(outcome),
                None => {
                    waiter.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut table = lock(&self.link.table);
        table.waiting.remove(&self.id);
        if table.retired && table.waiting.is_empty() {
            self.link.finished.notify_one();
        }
    }
}

thread_local! {
    /// The receive buffers of the links whose receiving tasks run on this thread: one set per
    /// thread is enough, since a task uses it only between two awaits.
    static SCRATCH: RefCell<Batch> = RefCell::new(Batch::new(RECV_BATCH, MAX_DATAGRAM));
}

/// The receiving task of a link: reads every datagram and hands it to its query, until the
/// link is retired and empty.
async fn receive(link: Arc<Link>) {
    loop {
        let mut guard = tokio::select! {
            ready = link.socket.ready(Interest::READABLE | Interest::ERROR) => match ready {
                Ok(guard) => guard,
                Err(error) => {
                    // The reactor is gone (the runtime is shutting down): nothing more comes.
                    link.fail_all(&error);
                    return;
                }
            },
            () = link.finished.notified() => {
                if link.is_finished() {
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
                link.fail_all(&error);
            }
            guard.clear_ready_matching(Ready::ERROR);
        }
        let fd = guard.get_inner().as_raw_fd();
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
                    link.fail_all(&error);
                    continue;
                }
            }
            guard.clear_ready_matching(Ready::READABLE);
            break;
        }
        drop(guard);
        if link.is_finished() {
            return;
        }
        if !drained {
            // More is queued: let the thread's other tasks (the answers just woken) run first.
            tokio::task::yield_now().await;
        }
    }
}

/// The same error again, for each query a socket error ends (io::Error is not Clone).
fn copy_error(error: &io::Error) -> io::Error {
    match error.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(error.kind(), error.to_string()),
    }
}

/// Locks a mutex of this module. Its critical sections cannot panic half-way through an
/// update, so a poisoned lock still guards consistent data.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn links_rotate_and_a_removed_servers_link_is_retired() {
        let (a, b) = (
            Server::new(([127, 0, 0, 1], 9).into()),
            Server::new(([127, 0, 0, 1], 19).into()),
        );
        let sockets = UdpSockets::new();
        let start = Instant::now();
        let first = sockets.link(&a, start).unwrap();
        assert!(
            Arc::ptr_eq(&first, &sockets.link(&a, start).unwrap()),
            "the same socket while it is fresh"
        );
        // Past its age, the next query to the server gets a new socket; the old one is retired
        // and its receiving task ends, as nothing waits on it.
        let later = start + ROTATE_AGE;
        let second = sockets.link(&a, later).unwrap();
        assert!(!Arc::ptr_eq(&first, &second));
        assert!(first.is_finished());
        // Only b is asked from now on (a reload dropped a): a's socket is retired when b's
        // next socket opens after a's has aged.
        sockets.link(&b, later).unwrap();
        assert_eq!(lock(&sockets.links).len(), 2);
        sockets.link(&b, later + ROTATE_AGE).unwrap();
        assert_eq!(lock(&sockets.links).len(), 1);
        assert!(second.is_finished());
        // The receiving tasks let go of their links: only the test's handles remain.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(Arc::strong_count(&first), 1);
        assert_eq!(Arc::strong_count(&second), 1);
    }
}
