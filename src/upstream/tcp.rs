//! TCP to one upstream server: a connection kept open and shared by the queries that go over TCP
//! (truncated UDP answers asked again, queries from TCP clients), several at a time on it
//! (pipelining, RFC 7766 6.2.1.1), each answer matched to its query by id and question.
//!
//! A connection per query left tens of thousands of sockets in TIME_WAIT at a few hundred TCP
//! misses a second, and SERVFAILs when the ports ran out. A [`Link`] is opened on the first query
//! that needs one, carries queries until the server closes it or it has been idle for
//! [`IDLE`], and fails every waiting query at once if it breaks (they fail over).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{Instant, timeout_at};

use super::AttemptError;
use super::exchange::question_of;
use super::health::{ErrorKind, Server};
use super::waiters::{Offer, Waiters};
use crate::cache::{CachedResponse, TtlLimits};
use crate::framing::{FrameReader, framed};

/// A connection with no query waiting for this long is closed (servers close theirs after 10 to
/// 30 s of quiet; closing ours first spares a query sent on a connection as it closes).
pub(super) const IDLE: Duration = Duration::from_secs(8);
/// Queries waiting on one connection before another is opened beside it.
pub(super) const PIPELINE: usize = 32;
/// Connections to one server from one owner.
pub(super) const MAX_LINKS: usize = 4;

/// One TCP connection to one server, the queries waiting on it, and its reading task.
pub(super) struct Link {
    server: Arc<Server>,
    /// The sending half; None once the connection is closed.
    writer: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
    /// The queries waiting.
    pub(super) waiters: Waiters,
    /// Set when the connection broke or was closed: no new query may use it.
    closed: AtomicBool,
}

impl Link {
    /// Connects to `server` before `deadline` and starts the reading task; `load` counts the
    /// queries in flight to the server from the link's owner.
    pub(super) async fn connect(
        server: &Arc<Server>,
        load: Arc<AtomicUsize>,
        deadline: Instant,
    ) -> Result<Arc<Link>, AttemptError> {
        let stream = match timeout_at(deadline, TcpStream::connect(server.addr)).await {
            Ok(stream) => stream?,
            Err(_) => return Err(AttemptError::Timeout),
        };
        stream.set_nodelay(true)?;
        server.connections.increment(1);
        let (reader, writer) = stream.into_split();
        let link = Arc::new(Link {
            server: Arc::clone(server),
            writer: tokio::sync::Mutex::new(Some(writer)),
            waiters: Waiters::new(load),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(read(Arc::clone(&link), reader));
        Ok(link)
    }

    /// Whether new queries may use this connection.
    pub(super) fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Relaxed) && !self.waiters.is_retired()
    }

    /// Queries waiting on it now.
    pub(super) fn waiting(&self) -> usize {
        self.waiters.counts().1
    }

    /// Sends `query` (its question section `question_len` bytes after the header, as the answer
    /// must repeat it) with a fresh id written into it and waits until `deadline` for its answer.
    pub(super) async fn exchange(
        &self,
        query: &mut [u8],
        question_len: usize,
        limits: TtlLimits,
        deadline: Instant,
    ) -> Result<CachedResponse, AttemptError> {
        let waiting = self
            .waiters
            .register(question_of(query, question_len), false, limits)
            .ok_or(AttemptError::Busy)?;
        super::exchange::set_id(query, waiting.id);
        let bytes = framed(query).ok_or_else(|| io::Error::other("query too long"))?;
        let sent = timeout_at(deadline, async {
            let mut writer = self.writer.lock().await;
            let writer = writer
                .as_mut()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "connection closed"))?;
            writer.write_all(&bytes).await
        })
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                self.close(&error);
                return Err(error.into());
            }
            Err(_) => {
                // Half a message may be on the wire: the stream is of no further use.
                self.close(&io::Error::new(io::ErrorKind::TimedOut, "write timed out"));
                return Err(AttemptError::Timeout);
            }
        }
        match timeout_at(deadline, waiting.outcome()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(AttemptError::Timeout),
        }
    }

    /// Takes no new queries and fails those waiting: the connection is gone.
    fn close(&self, why: &io::Error) {
        self.closed.store(true, Ordering::Relaxed);
        self.waiters.retire();
        self.waiters.fail_all(why);
    }

    /// Takes no new queries; the connection closes once the last waiting one is done.
    pub(super) fn retire(&self) {
        self.waiters.retire();
    }
}

/// The reading task of a link: hands each answer to its query, until the server closes the
/// connection, it breaks, it idles past [`IDLE`], or it is retired and empty. It then closes the
/// connection (both halves) and fails whatever still waits.
async fn read(link: Arc<Link>, mut stream: OwnedReadHalf) {
    let mut frames = FrameReader::new();
    let why = loop {
        let frame = tokio::select! {
            frame = frames.next(&mut stream) => frame,
            () = link.waiters.finished.notified() => {
                if link.waiters.is_finished() {
                    break io::Error::other("connection retired");
                }
                continue;
            }
            // Quiet for IDLE: closed if nothing waits. Checked when the time is up, not when it
            // starts: the last query may have given up (timed out) without anything arriving.
            () = tokio::time::sleep(IDLE) => {
                if link.waiting() == 0 {
                    break io::Error::new(io::ErrorKind::TimedOut, "connection idle");
                }
                continue;
            }
        };
        match frame {
            Ok(Some(message)) => match link.waiters.offer(message, std::time::Instant::now(), true) {
                // A malformed answer fails its query, which the pool counts with the attempt.
                Offer::Taken { .. } | Offer::Malformed => {}
                Offer::Stray | Offer::CaseMismatch => link.server.count(ErrorKind::Stray),
            },
            Ok(None) => break io::Error::new(io::ErrorKind::ConnectionAborted, "the server closed the connection"),
            Err(error) => break error,
        }
    };
    link.close(&why);
    if let Some(mut writer) = link.writer.lock().await.take() {
        // Best effort: the connection is going away either way.
        let _ = writer.shutdown().await;
    }
}
