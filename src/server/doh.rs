//! DNS over HTTPS (RFC 8484): `/dns-query` over HTTP/2 or HTTP/1.1, on a TLS connection the TCP
//! side accepted, admitted and handshook (src/server/tcp.rs, tls.rs).
//!
//! Each request carries one DNS message (GET `?dns=` in base64url, or a POST body of type
//! `application/dns-message`) and goes through the same [`Handler`] as every other transport;
//! the answer goes back as `application/dns-message` with `cache-control: max-age` of its least
//! TTL, so that HTTP caches keep it no longer than DNS would.
//!
//! What bounds a client, beside the connection limits it shares with TCP: bodies are read up to
//! 65535 bytes (a DNS message's most) within `server.tcp_io_timeout`, as are request headers;
//! HTTP/2 streams in flight per connection are capped at `server.tcp_pipeline`; a connection with
//! no request for `server.tcp_idle_timeout` is closed. Memory per connection is thus at most
//! `tcp_pipeline` requests and answers of 64 KiB each (HTTP/2's send buffer is capped to one
//! answer per stream); DoH answers do not draw on `server.tcp_buffer`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

use super::handler::{Clock, Protocol, Step, Worker};
use super::tcp::{Admission, Shared};
use crate::upstream::Transport;
use crate::wire;

/// The one path DoH answers on (RFC 8484 section 6's example, and what every client defaults to).
const PATH: &str = "/dns-query";
/// The media type of a DNS message in wire format.
const DNS_MESSAGE: &str = "application/dns-message";
/// The largest DNS message there is: a longer body is refused unread.
const MAX_MESSAGE: usize = 65_535;
/// Bytes of a refused body read and thrown away at most, so that the client gets its status;
/// nothing of it is kept.
const DRAIN_LIMIT: usize = 4 * MAX_MESSAGE;

/// Serves one DoH connection until the client closes it, it idles past `tcp_idle_timeout`, or
/// shutdown (requests in flight are answered first, within `tcp_io_timeout`).
pub(super) async fn serve_connection(
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    admission: Admission,
    mut stop: watch::Receiver<bool>,
) {
    let shared = Arc::clone(&admission.shared);
    let limits = shared.limits;
    let activity = Arc::new(Activity::new());
    let exchange = Exchange {
        shared: Arc::clone(&shared),
        peer,
        activity: Arc::clone(&activity),
    };
    let service = service_fn(move |request| {
        let exchange = exchange.clone();
        async move { Ok::<_, Infallible>(exchange.answer(request).await) }
    });
    let tasks = ConnectionTasks::default();
    let mut builder = auto::Builder::new(tasks.clone());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.io_timeout)
        .max_buf_size(MAX_MESSAGE.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(u32::try_from(limits.pipeline).unwrap_or(u32::MAX))
        .max_send_buf_size(MAX_MESSAGE + 1024);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut closing = false;
    loop {
        let idle_check = tokio::time::sleep(limits.idle.min(Duration::from_secs(1)));
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "DoH connection closed");
                }
                break;
            }
            _ = stop.changed(), if !closing => {
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = idle_check, if !closing => {
                if activity.idle_for() >= limits.idle {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
        if closing {
            // Requests in flight get the I/O timeout to be answered; then the connection goes.
            if tokio::time::timeout(limits.io_timeout, connection.as_mut())
                .await
                .is_err()
            {
                shared.metrics.slow.increment(1);
            }
            break;
        }
    }
    drop(admission);
}

/// The tasks hyper spawns for one connection (HTTP/2 streams and their answers): owned by it, and
/// aborted when the connection is dropped (the last clone, held by its builder and connection,
/// goes), so that none outlives a connection that shutdown gave up on.
#[derive(Clone, Default)]
struct ConnectionTasks(Arc<Mutex<JoinSet<()>>>);

impl<F> hyper::rt::Executor<F> for ConnectionTasks
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, task: F) {
        let mut tasks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Reap the finished ones first: the set holds no more than the streams in flight.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(task);
    }
}

/// When a connection last did something, to close it once idle.
struct Activity {
    /// When the connection started: `last` counts from here.
    start: Instant,
    /// Milliseconds after `start` that the last request ended (or the connection started).
    last: AtomicU64,
    /// Requests being answered now: a connection with one in flight is not idle.
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// How long the connection has had no request in flight (zero while one is).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What each request of one connection needs.
#[derive(Clone)]
struct Exchange {
    shared: Arc<Shared>,
    /// The client, whose address the policies see.
    peer: SocketAddr,
    activity: Arc<Activity>,
}

/// Why a request got no DNS answer: its HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refusal {
    NotFound,
    Method,
    BadRequest,
    TooLarge,
    MediaType,
    Timeout,
    NoAnswer,
}

impl Refusal {
    fn status(self) -> StatusCode {
        match self {
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::Method => StatusCode::METHOD_NOT_ALLOWED,
            Refusal::BadRequest => StatusCode::BAD_REQUEST,
            Refusal::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::MediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Refusal::Timeout => StatusCode::REQUEST_TIMEOUT,
            Refusal::NoAnswer => StatusCode::BAD_GATEWAY,
        }
    }
}

impl Exchange {
    /// The HTTP response to one request, counted by status.
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        self.activity.begin();
        let response = match self.resolve(request).await {
            Ok(message) => dns_response(message),
            Err(refusal) => {
                let mut response = Response::new(Full::new(Bytes::new()));
                *response.status_mut() = refusal.status();
                if refusal == Refusal::Method {
                    response
                        .headers_mut()
                        .insert(ALLOW, HeaderValue::from_static("GET, POST"));
                }
                response
            }
        };
        self.activity.end();
        self.shared.doh.count(response.status());
        response
    }

    /// The DNS answer to the query a request carries.
    async fn resolve(&self, request: Request<Incoming>) -> Result<Vec<u8>, Refusal> {
        if request.uri().path() != PATH {
            return Err(Refusal::NotFound);
        }
        let query = match *request.method() {
            Method::GET => query_of_get(request.uri().query().unwrap_or_default())?,
            Method::POST => self.query_of_post(request).await?,
            _ => return Err(Refusal::Method),
        };
        let handler = &self.shared.handler;
        let client = self.peer.ip().to_canonical();
        let mut out = Vec::with_capacity(512);
        let mut worker = Worker::default();
        let step = handler.answer_fast(&query, client, Protocol::Doh, Clock::now(), &mut out, &mut worker);
        handler.flush(&mut worker);
        match step {
            Step::Reply => {}
            // Not a query we can answer (a response, garbage): the client sent a bad message.
            Step::Drop => return Err(Refusal::BadRequest),
            Step::Forward(pending) => {
                // Boxed: the forwarding future is large, and inline it would make every
                // request's task as large, cache hits included, copied on each spawn (a tenth
                // of DoH's CPU per query went to those copies).
                Box::pin(handler.answer_forward(pending, Transport::Tcp(&self.shared.upstream), &mut out)).await;
            }
        }
        if out.is_empty() {
            return Err(Refusal::NoAnswer);
        }
        Ok(out)
    }

    /// The body of a POST, if it is a DNS message no longer than one can be, read in time.
    ///
    /// A refused body is still read (and thrown away, up to [`DRAIN_LIMIT`]) before the refusal
    /// goes out: an HTTP/2 client that is still sending when its stream is reset takes the
    /// reset for a protocol error, and never sees the status.
    async fn query_of_post(&self, request: Request<Incoming>) -> Result<Vec<u8>, Refusal> {
        let content_type = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        // Parameters (`; charset=...`) mean nothing for a binary type; the type itself must match.
        let media = content_type.map(|t| t.split(';').next().unwrap_or_default().trim());
        let refusal = (!media.is_some_and(|m| m.eq_ignore_ascii_case(DNS_MESSAGE))).then_some(Refusal::MediaType);
        let timeout = self.shared.limits.io_timeout;
        match tokio::time::timeout(timeout, read_body(request.into_body(), refusal.is_none())).await {
            Err(_) => {
                self.shared.metrics.slow.increment(1);
                Err(Refusal::Timeout)
            }
            Ok(read) => match refusal {
                Some(refusal) => Err(refusal),
                None => read,
            },
        }
    }
}

/// Reads a request body: kept if `keep` and no longer than [`MAX_MESSAGE`], else read on and
/// thrown away up to [`DRAIN_LIMIT`] (past that the stream is reset: the client gets no status).
async fn read_body(mut body: Incoming, keep: bool) -> Result<Vec<u8>, Refusal> {
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Refusal::BadRequest)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        seen = seen.saturating_add(data.len());
        if seen > DRAIN_LIMIT {
            break;
        }
        if keep && seen <= MAX_MESSAGE {
            kept.extend_from_slice(&data);
        }
    }
    if seen > MAX_MESSAGE {
        return Err(Refusal::TooLarge);
    }
    Ok(kept)
}

/// The query of a GET: the `dns` parameter, base64url without padding (RFC 8484 4.1).
fn query_of_get(query: &str) -> Result<Vec<u8>, Refusal> {
    let encoded = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("dns="))
        .ok_or(Refusal::BadRequest)?;
    if encoded.len() > MAX_MESSAGE.div_ceil(3) * 4 {
        return Err(Refusal::TooLarge);
    }
    URL_SAFE_NO_PAD.decode(encoded).map_err(|_| Refusal::BadRequest)
}

/// A 200 carrying `message`, fresh for HTTP caches as long as its least TTL.
fn dns_response(message: Vec<u8>) -> Response<Full<Bytes>> {
    let max_age = least_ttl(&message);
    let mut response = Response::new(Full::new(Bytes::from(message)));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
    if let Ok(value) = HeaderValue::from_str(&format!("max-age={max_age}")) {
        headers.insert(CACHE_CONTROL, value);
    }
    response
}

/// The least TTL of the records in the answer and authority sections (for a negative answer,
/// its SOA's), 0 for a message without any or one that does not read (RFC 8484 5.1). Walked on
/// the wire: an answer is not decoded (nor allocated) a second time to set one header.
fn least_ttl(message: &[u8]) -> u32 {
    let [questions, answers, authorities, _] = wire::counts(message);
    let mut pos = wire::HEADER_LEN;
    for _ in 0..questions {
        let Ok(next) = wire::skip_question(message, pos) else {
            return 0;
        };
        pos = next;
    }
    let mut least = None::<u32>;
    for _ in 0..u32::from(answers) + u32::from(authorities) {
        let Ok((record, next)) = wire::read_record(message, pos) else {
            return 0;
        };
        let ttl = message
            .get(record.ttl_at..record.ttl_at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_be_bytes);
        least = Some(least.map_or(ttl, |l| l.min(ttl)));
        pos = next;
    }
    least.unwrap_or(0)
}

/// The statuses DoH answers with, each with its `sinkhole_doh_responses_total` counter.
const STATUSES: [StatusCode; 8] = [
    StatusCode::OK,
    StatusCode::BAD_REQUEST,
    StatusCode::NOT_FOUND,
    StatusCode::METHOD_NOT_ALLOWED,
    StatusCode::REQUEST_TIMEOUT,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::UNSUPPORTED_MEDIA_TYPE,
    StatusCode::BAD_GATEWAY,
];

/// `sinkhole_doh_responses_total{status}`, one handle per status in [`STATUSES`], taken once.
pub(super) struct DohMetrics {
    responses: [metrics::Counter; STATUSES.len()],
}

impl DohMetrics {
    pub(super) fn new() -> DohMetrics {
        DohMetrics {
            responses: STATUSES
                .map(|s| metrics::counter!(crate::metrics::DOH_RESPONSES, "status" => s.as_str().to_string())),
        }
    }

    fn count(&self, status: StatusCode) {
        let index = STATUSES.iter().position(|s| *s == status);
        if let Some(counter) = index.and_then(|i| self.responses.get(i)) {
            counter.increment(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_query_is_base64url_without_padding() {
        assert_eq!(query_of_get("dns=AAEC_w"), Ok(vec![0, 1, 2, 255]));
        assert_eq!(query_of_get("ct=x&dns=AAEC_w"), Ok(vec![0, 1, 2, 255]));
        assert_eq!(query_of_get("dns=AAEC/w=="), Err(Refusal::BadRequest));
        assert_eq!(query_of_get("other=1"), Err(Refusal::BadRequest));
    }

    #[test]
    fn max_age_is_the_least_ttl_of_answers_and_authorities() {
        use hickory_proto::op::Message;
        use hickory_proto::rr::rdata::{A, SOA};
        use hickory_proto::rr::{Name, RData, Record};
        let name = Name::from_ascii("a.example.").expect("a name");
        let mut message = Message::response(7, hickory_proto::op::OpCode::Query);
        message.add_answer(Record::from_rdata(name.clone(), 300, RData::A(A::new(192, 0, 2, 1))));
        message.add_answer(Record::from_rdata(name.clone(), 60, RData::A(A::new(192, 0, 2, 2))));
        let bytes = message.to_vec().expect("encodes");
        assert_eq!(least_ttl(&bytes), 60);
        let soa = SOA::new(name.clone(), name.clone(), 1, 2, 3, 4, 5);
        message.add_authority(Record::from_rdata(name, 30, RData::SOA(soa)));
        let bytes = message.to_vec().expect("encodes");
        assert_eq!(least_ttl(&bytes), 30);
        // Cut short, or with no records: no caching.
        assert_eq!(least_ttl(&bytes[..bytes.len() - 3]), 0);
        assert_eq!(least_ttl(&bytes[..wire::HEADER_LEN]), 0);
    }
}
