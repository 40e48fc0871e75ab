//! DNS over TLS (RFC 7858) to one upstream server: connections kept open and shared by every
//! worker, several queries at a time on each (pipelining), each answer matched to its query by
//! id and question as over plain TCP.
//!
//! UDP workers run a current-thread runtime each, which makes progress only while that worker
//! polls: a connection task there would stall whenever its worker waits on its socket. So each
//! connection is one task on the daemon's main runtime (the [`Handle`] the pool was built on),
//! which reads answers and writes the queries callers hand it through a bounded channel; callers
//! on any runtime wait on their [`Waiters`] entry, which wakes across runtimes.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::AttemptError;
use super::exchange::{question_of, set_id};
use super::health::{ErrorKind, Server};
use super::waiters::{Offer, Waiters, lock};
use crate::cache::{CachedResponse, TtlLimits};
use crate::framing::{FrameReader, framed};

/// A connection with no query waiting for this long is closed (servers close idle ones after
/// 10 to 30 s; closing ours first spares a query sent on a connection as it closes).
pub(super) const IDLE: Duration = Duration::from_secs(8);
/// Queries waiting on one connection before another is opened beside it.
const PIPELINE: usize = 64;
/// Connections to one server at most: pipelining carries the load, more only spread it.
const MAX_LINKS: usize = 4;

/// DNS over TLS to one server.
pub(super) struct Dot {
    server: Arc<Server>,
    /// The name its certificate must carry (and the SNI).
    name: ServerName<'static>,
    connector: TlsConnector,
    /// The runtime connection tasks live on: the daemon's, which always runs.
    runtime: Handle,
    /// Open connections (closed ones are pruned when a new one is added).
    links: Mutex<Vec<Arc<Link>>>,
    /// One connection opened at a time, so that a burst of first queries shares one.
    connecting: tokio::sync::Mutex<()>,
    /// Queries in flight to the server over all connections, against `upstream.max_inflight`.
    load: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Dot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dot")
            .field("server", &self.server.label)
            .finish_non_exhaustive()
    }
}

impl Dot {
    /// DNS over TLS to `server`, whose certificate must carry `name`, with `config`'s roots.
    pub(super) fn new(
        server: Arc<Server>,
        name: ServerName<'static>,
        config: Arc<rustls::ClientConfig>,
        runtime: Handle,
    ) -> Dot {
        Dot {
            server,
            name,
            connector: TlsConnector::from(config),
            runtime,
            links: Mutex::new(Vec::new()),
            connecting: tokio::sync::Mutex::new(()),
            load: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Sends `query` (its question `question_len` bytes after the header) with a fresh id written
    /// into it and waits until `deadline` for the answer, connecting first if need be.
    ///
    /// A connection the server closed (servers close idle ones, or after so many queries) is
    /// not the server failing: the query is sent once more, on a new connection, before the
    /// attempt counts as failed (RFC 7766 section 6.2.1).
    pub(super) async fn exchange(
        &self,
        query: &mut [u8],
        question_len: usize,
        limits: TtlLimits,
        max_inflight: usize,
        deadline: Instant,
    ) -> Result<CachedResponse, AttemptError> {
        if self.load.load(Ordering::Relaxed) >= max_inflight {
            return Err(AttemptError::Busy);
        }
        match self.exchange_once(query, question_len, limits, deadline).await {
            Err(AttemptError::Network(error)) if closed_under_us(&error) => {
                self.exchange_once(query, question_len, limits, deadline).await
            }
            outcome => outcome,
        }
    }

    /// One try of [`Dot::exchange`].
    async fn exchange_once(
        &self,
        query: &mut [u8],
        question_len: usize,
        limits: TtlLimits,
        deadline: Instant,
    ) -> Result<CachedResponse, AttemptError> {
        let link = self.link(deadline).await?;
        let waiting = link
            .waiters
            .register(question_of(query, question_len), false, limits)
            .ok_or(AttemptError::Busy)?;
        set_id(query, waiting.id);
        let bytes = framed(query).ok_or_else(|| io::Error::other("query too long"))?;
        match timeout_at(deadline, link.outgoing.send(bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                return Err(AttemptError::Network(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "connection closed",
                )));
            }
            Err(_) => return Err(AttemptError::Timeout),
        }
        match timeout_at(deadline, waiting.outcome()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(AttemptError::Timeout),
        }
    }

    /// An open connection with room, or a new one opened before `deadline`.
    async fn link(&self, deadline: Instant) -> Result<Arc<Link>, AttemptError> {
        if let Some(link) = self.pick(PIPELINE) {
            return Ok(link);
        }
        let _turn = timeout_at(deadline, self.connecting.lock())
            .await
            .map_err(|_| AttemptError::Timeout)?;
        // Another caller may have opened one while this one waited for its turn.
        if let Some(link) = self.pick(PIPELINE) {
            return Ok(link);
        }
        let open = lock(&self.links).iter().filter(|l| l.is_open()).count();
        if open >= MAX_LINKS {
            return self.pick(usize::MAX).ok_or(AttemptError::Busy);
        }
        // The handshake runs on the main runtime, so that the connection is registered with
        // the reactor that always runs; it is abandoned when the attempt's time is up.
        let mut task = self.runtime.spawn(connect(
            Arc::clone(&self.server),
            self.connector.clone(),
            self.name.clone(),
            Arc::clone(&self.load),
        ));
        let link = match timeout_at(deadline, &mut task).await {
            Ok(Ok(link)) => link?,
            Ok(Err(join)) => return Err(AttemptError::Network(io::Error::other(join))),
            Err(_) => {
                task.abort();
                return Err(AttemptError::Timeout);
            }
        };
        let mut links = lock(&self.links);
        links.retain(|l| l.is_open());
        links.push(Arc::clone(&link));
        Ok(link)
    }

    /// The open connection with the fewest queries waiting, if that is below `room`.
    fn pick(&self, room: usize) -> Option<Arc<Link>> {
        lock(&self.links)
            .iter()
            .filter(|l| l.is_open())
            .map(|l| (l.waiters.counts().1, l))
            .filter(|(waiting, _)| *waiting < room)
            .min_by_key(|(waiting, _)| *waiting)
            .map(|(_, l)| Arc::clone(l))
    }
}

/// Whether an exchange failed because its connection went away rather than the server failing:
/// closed by the server, or by this side before the query was written.
fn closed_under_us(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::NotConnected
    )
}

impl Drop for Dot {
    /// A reload that replaced the pool: each connection closes once its last query is done.
    fn drop(&mut self) {
        for link in lock(&self.links).iter() {
            link.waiters.retire();
        }
    }
}

/// One TLS connection: the queries waiting on it and the way to its task.
struct Link {
    /// Framed queries for the connection's task to write.
    outgoing: mpsc::Sender<Vec<u8>>,
    waiters: Waiters,
    /// Set when the connection broke or was closed: no new query may use it.
    closed: AtomicBool,
}

impl Link {
    /// Whether new queries may use this connection.
    fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Relaxed) && !self.waiters.is_retired()
    }

    /// Takes no new queries and fails those waiting: the connection is gone.
    fn close(&self, why: &io::Error) {
        self.closed.store(true, Ordering::Relaxed);
        self.waiters.retire();
        self.waiters.fail_all(why);
    }
}

/// Connects to `server` over TLS (certificate checked against `name`), counts the connection and
/// starts its task on the current runtime.
async fn connect(
    server: Arc<Server>,
    connector: TlsConnector,
    name: ServerName<'static>,
    load: Arc<AtomicUsize>,
) -> Result<Arc<Link>, AttemptError> {
    let tcp = TcpStream::connect(server.addr).await?;
    tcp.set_nodelay(true)?;
    let tls = connector.connect(name, tcp).await?;
    server.connections.increment(1);
    let (tx, rx) = mpsc::channel(PIPELINE);
    let link = Arc::new(Link {
        outgoing: tx,
        waiters: Waiters::new(load),
        closed: AtomicBool::new(false),
    });
    let (reader, writer) = tokio::io::split(tls);
    tokio::spawn(run(Arc::clone(&link), server, reader, writer, rx));
    Ok(link)
}

/// The task of one connection: writes the queries handed to it, hands each answer to its
/// query, until the server closes the connection, it breaks, it idles past [`IDLE`], or it is
/// retired and empty. It then closes the connection and fails whatever still waits.
async fn run(
    link: Arc<Link>,
    server: Arc<Server>,
    mut reader: ReadHalf<TlsStream<TcpStream>>,
    mut writer: WriteHalf<TlsStream<TcpStream>>,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
) {
    let mut frames = FrameReader::new();
    let why = loop {
        tokio::select! {
            frame = frames.next(&mut reader) => match frame {
                Ok(Some(message)) => match link.waiters.offer(message, std::time::Instant::now(), true) {
                    Offer::Taken { .. } | Offer::Malformed => {}
                    Offer::Stray | Offer::CaseMismatch => server.count(ErrorKind::Stray),
                },
                Ok(None) => break io::Error::new(io::ErrorKind::ConnectionAborted, "the server closed the connection"),
                Err(error) => break error,
            },
            query = outgoing.recv() => {
                let Some(query) = query else {
                    break io::Error::other("connection dropped");
                };
                // The queries are small and the server reads them as they come: writing
                // before reading on does not hold answers back for long.
                let written = async {
                    writer.write_all(&query).await?;
                    writer.flush().await
                };
                if let Err(error) = written.await {
                    break error;
                }
            }
            () = link.waiters.finished.notified() => {
                if link.waiters.is_finished() {
                    break io::Error::other("connection retired");
                }
            }
            // Quiet for IDLE: closed if nothing waits (a query may have finished after the
            // last message, so this is checked when the time is up, not when it starts).
            () = tokio::time::sleep(IDLE) => {
                if link.waiters.counts().1 == 0 {
                    break io::Error::new(io::ErrorKind::TimedOut, "connection idle");
                }
            }
        }
    };
    link.close(&why);
    // Best effort, and bounded: a server that stopped reading must not keep the task alive.
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.shutdown()).await;
}
