//! DoH over HTTP/2 (ALPN `h2`), served with the `h2` crate in the connection's own task.
//!
//! Why not hyper's HTTP/2 server, as before: it spawns a task per stream, and under DoH's load
//! (many streams of one small GET each) spawning, moving and joining those tasks was a fifth of
//! the CPU per query. Here the connection's task accepts streams in a loop and answers what it
//! can at once (blocks and cache hits, most of the traffic): no task, no channel, one `Worker`
//! and one output buffer for the connection. What must wait (a POST body still arriving, a
//! cache miss forwarded upstream) waits in a [`FuturesUnordered`] polled by the same task
//! beside `accept()`; it holds no more than the streams the client may open
//! (`server.tcp_pipeline`, as SETTINGS_MAX_CONCURRENT_STREAMS), and nothing outlives the
//! connection: dropping the set drops them.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt as _, StreamExt as _};
use h2::RecvStream;
use h2::server::{Builder, SendResponse};
use hyper::body::Bytes;
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use super::{
    Ask, BodyCap, DNS_MESSAGE, Fast, MAX_MESSAGE, Refusal, Shared, answer, answer_fast, answer_forward, ask,
    cache_control, query_of_get,
};
use crate::server::handler::{Pending, Worker};

/// The connection's flow-control window (what all its streams may send us unread), as hyper
/// had it: a few streams can post whole messages at once. Each stream's own stays at HTTP/2's
/// 64 KiB, a message's most.
const CONNECTION_WINDOW: u32 = 1024 * 1024;
/// The largest request head we take (hyper's default before): a GET's URL with a query the
/// size of any real one, and its headers.
const MAX_HEADER_LIST: u32 = 16 * 1024;
/// Bytes one stream may have buffered to send: one answer of a DNS message's most, and its
/// frame headers. An answer is written whole, so this bounds what a client that does not read
/// can hold, per stream.
const SEND_BUFFER: usize = MAX_MESSAGE + 1024;
/// Bytes of answers [`Gather`] holds back at most; past this they are written at once.
const GATHER_LIMIT: usize = 64 * 1024;

/// Serves one HTTP/2 connection (see [`super::serve_connection`]).
pub(super) async fn serve(
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let shared: &Shared = shared;
    let limits = shared.limits;
    let client = peer.ip().to_canonical();
    let mut builder = Builder::new();
    builder
        .max_concurrent_streams(u32::try_from(limits.pipeline).unwrap_or(u32::MAX))
        .max_send_buffer_size(SEND_BUFFER)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST);
    // The client's preface must come within the time a connection may idle.
    let hold = Arc::new(AtomicBool::new(false));
    let stream = Gather {
        inner: stream,
        buf: Vec::new(),
        written: 0,
        hold: Arc::clone(&hold),
    };
    let handshake = tokio::select! {
        handshake = tokio::time::timeout(limits.idle, builder.handshake::<_, Bytes>(stream)) => handshake,
        _ = stop.changed() => return,
    };
    let mut connection = match handshake {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "DoH connection closed");
            return;
        }
        Err(_) => return,
    };
    let mut inline = Inline {
        query: Vec::new(),
        out: Vec::with_capacity(512),
        worker: Worker::default(),
    };
    let mut waiting = FuturesUnordered::new();
    // When a request last came or ended: the connection idles from then when none is in flight.
    let mut last = Instant::now();
    // One timer, moved rather than made again per request: first the idle limit, once closing
    // the time the requests in flight have to be answered.
    let timer = tokio::time::sleep_until(last + limits.idle);
    tokio::pin!(timer);
    let mut closing = false;
    loop {
        tokio::select! {
            // None: the connection is done (the client went, or it closed gracefully once every
            // stream was answered).
            accepted = connection.accept() => match accepted {
                None => break,
                Some(Err(error)) => {
                    tracing::debug!(%peer, %error, "DoH connection closed");
                    break;
                }
                Some(Ok((request, respond))) => {
                    last = Instant::now();
                    if let Some(later) = inline.respond(shared, client, request, respond) {
                        waiting.push(answer_later(shared, client, later));
                    }
                    // The requests that came with it are answered before any answer is written:
                    // their answers go out together, not in a TLS record and a write each.
                    hold.store(true, Ordering::Relaxed);
                    let mut done = false;
                    while let Some(accepted) = connection.accept().now_or_never() {
                        let Some(Ok((request, respond))) = accepted else {
                            done = true;
                            break;
                        };
                        if let Some(later) = inline.respond(shared, client, request, respond) {
                            waiting.push(answer_later(shared, client, later));
                        }
                    }
                    hold.store(false, Ordering::Relaxed);
                    if done {
                        break;
                    }
                }
            },
            Some(()) = waiting.next(), if !waiting.is_empty() => last = Instant::now(),
            _ = stop.changed(), if !closing => {
                connection.graceful_shutdown();
                closing = true;
                timer.as_mut().reset(Instant::now() + limits.io_timeout);
            }
            () = timer.as_mut() => {
                if closing {
                    // Requests in flight had their time; the connection goes without them.
                    shared.metrics.slow.increment(1);
                    break;
                }
                let now = Instant::now();
                if !waiting.is_empty() {
                    timer.as_mut().reset(now + limits.idle);
                } else if last + limits.idle > now {
                    timer.as_mut().reset(last + limits.idle);
                } else {
                    connection.graceful_shutdown();
                    closing = true;
                    timer.as_mut().reset(now + limits.io_timeout);
                }
            }
        }
    }
}

/// What the connection's task keeps from request to request for the ones it answers at once.
struct Inline {
    /// A GET's query, decoded.
    query: Vec<u8>,
    /// The answer, copied out into its DATA frame.
    out: Vec<u8>,
    worker: Worker,
}

impl Inline {
    /// Answers a request at once if it can; else hands back what it must wait for.
    fn respond(
        &mut self,
        shared: &Shared,
        client: IpAddr,
        request: Request<RecvStream>,
        mut respond: SendResponse<Bytes>,
    ) -> Option<Later> {
        let (head, body) = request.into_parts();
        let fast = match ask(&head.method, &head.uri, &head.headers) {
            Ask::Refused(refusal) => Err(refusal),
            Ask::Post(refusal) => {
                return Some(Later {
                    respond,
                    wait: Wait::Body(body, refusal),
                });
            }
            Ask::Get => query_of_get(head.uri.query().unwrap_or_default(), &mut self.query)
                .and_then(|()| answer_fast(shared, client, &self.query, &mut self.out, &mut self.worker)),
        };
        match fast {
            Ok(Fast::Answered) => send(shared, &mut respond, Ok(&self.out)),
            Ok(Fast::Forward(pending)) => {
                return Some(Later {
                    respond,
                    wait: Wait::Forward(pending),
                });
            }
            Err(refusal) => send(shared, &mut respond, Err(refusal)),
        }
        None
    }
}

/// A request that waits, and the stream its response goes on.
struct Later {
    respond: SendResponse<Bytes>,
    wait: Wait,
}

/// What a request waits for.
enum Wait {
    /// Its body (a POST), to be refused with this status once read if there is one.
    Body(RecvStream, Option<Refusal>),
    /// The upstream's answer to a cache miss.
    Forward(Box<Pending>),
}

/// Answers a request that had to wait, when what it waits for is there.
async fn answer_later(shared: &Shared, client: IpAddr, later: Later) {
    let Later { mut respond, wait } = later;
    let mut out = Vec::new();
    let answered = match wait {
        Wait::Forward(pending) => answer_forward(shared, pending, &mut out).await,
        Wait::Body(body, refusal) => match query_of_post(shared, body, refusal).await {
            // A Worker of its own: the connection's is the inline path's, and a POST is rare.
            Ok(query) => answer(shared, client, &query, &mut out, &mut Worker::default()).await,
            Err(refusal) => Err(refusal),
        },
    };
    send(shared, &mut respond, answered.map(|()| out.as_slice()));
}

/// The body of a POST, read within `tcp_io_timeout`, refused with `refusal` once read if there
/// is one.
async fn query_of_post(shared: &Shared, mut body: RecvStream, refusal: Option<Refusal>) -> Result<Vec<u8>, Refusal> {
    let timeout = shared.limits.io_timeout;
    match tokio::time::timeout(timeout, read_body(&mut body, refusal.is_none())).await {
        Err(_) => {
            shared.metrics.slow.increment(1);
            Err(Refusal::Timeout)
        }
        Ok(read) => match refusal {
            Some(refusal) => Err(refusal),
            None => read,
        },
    }
}

/// Reads a request body under [`BodyCap`]'s rules.
async fn read_body(body: &mut RecvStream, keep: bool) -> Result<Vec<u8>, Refusal> {
    let mut cap = BodyCap::new(keep);
    while let Some(data) = body.data().await {
        let data = data.map_err(|_| Refusal::BadRequest)?;
        // What is read is done with: the client may send on (the window stays a message's size).
        let _ = body.flow_control().release_capacity(data.len());
        if !cap.take(&data) {
            break;
        }
    }
    cap.finish()
}

/// Sends the response to one request, counted by status: a DNS answer in one DATA frame (headers
/// first, the end of the stream with the data), or a refusal's status alone. A stream the client
/// has reset takes nothing, and there is nothing more to do for it.
fn send(shared: &Shared, respond: &mut SendResponse<Bytes>, answer: Result<&[u8], Refusal>) {
    let mut response = Response::new(());
    match answer {
        Ok(message) => {
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
            headers.insert(CACHE_CONTROL, cache_control(message));
            headers.insert(CONTENT_LENGTH, HeaderValue::from(message.len()));
            shared.doh.count(response.status());
            if let Ok(mut stream) = respond.send_response(response, false) {
                let _ = stream.send_data(Bytes::copy_from_slice(message), true);
            }
        }
        Err(refusal) => {
            *response.status_mut() = refusal.status();
            if refusal == Refusal::Method {
                response
                    .headers_mut()
                    .insert(ALLOW, HeaderValue::from_static("GET, POST"));
            }
            shared.doh.count(response.status());
            let _ = respond.send_response(response, true);
        }
    }
}

/// The TLS stream under h2, with its writes held back while `hold` is set: h2 writes (and
/// flushes) whatever is ready each time it is polled, which is once per request accepted, so
/// that every answer would be a TLS record and a `sendmsg` of its own. The connection's task
/// sets `hold` while it answers the requests that are already in, and the answers go out in one
/// write when it next waits. At most [`GATHER_LIMIT`] bytes are held.
struct Gather<S> {
    inner: S,
    /// Bytes written by h2 and not yet to `inner`; those before `written` have gone.
    buf: Vec<u8>,
    written: usize,
    /// Set by the connection's task while it answers a batch: flushes wait for its end.
    hold: Arc<AtomicBool>,
}

impl<S: AsyncWrite + Unpin> Gather<S> {
    /// Writes what is held to `inner`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some(rest) = self.buf.get(self.written..).filter(|rest| !rest.is_empty()) {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Gather<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Gather<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.hold.load(Ordering::Relaxed) && this.buf.len() + data.len() <= GATHER_LIMIT {
            this.buf.extend_from_slice(data);
            return Poll::Ready(Ok(data.len()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.hold.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn held_writes_go_out_together_when_the_hold_ends() {
        let (near, mut far) = tokio::io::duplex(4 * GATHER_LIMIT);
        let hold = Arc::new(AtomicBool::new(true));
        let mut gather = Gather {
            inner: near,
            buf: Vec::new(),
            written: 0,
            hold: Arc::clone(&hold),
        };
        gather.write_all(b"one ").await.expect("held");
        gather.write_all(b"two").await.expect("held");
        gather.flush().await.expect("a flush while held is put off");
        let mut got = [0u8; 7];
        let nothing = tokio::time::timeout(Duration::from_millis(20), far.read(&mut got)).await;
        assert!(nothing.is_err(), "nothing is written while held");
        hold.store(false, Ordering::Relaxed);
        gather.flush().await.expect("written");
        far.read_exact(&mut got).await.expect("both writes");
        assert_eq!(&got, b"one two");
        // Past the limit, a held write goes through (after what was held): memory stays bounded.
        hold.store(true, Ordering::Relaxed);
        gather.write_all(b"x").await.expect("held");
        let big = vec![7u8; GATHER_LIMIT];
        gather.write_all(&big).await.expect("written through");
        let mut got = vec![0u8; GATHER_LIMIT + 1];
        far.read_exact(&mut got).await.expect("both, in order");
        assert_eq!(got.first(), Some(&b'x'));
        assert!(gather.buf.is_empty());
    }
}
