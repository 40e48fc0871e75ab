//! DoH over HTTP/1.1 (ALPN `http/1.1`, or none): hyper's HTTP/1.1 server, one request at a time.
//! The decisions are the parent module's; this file only adapts them to hyper.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;

use super::{Ask, BodyCap, DNS_MESSAGE, MAX_MESSAGE, Refusal, Shared, answer, ask, cache_control, query_of_get};
use crate::server::handler::Worker;

/// Serves one HTTP/1.1 connection (see [`super::serve_connection`]).
pub(super) async fn serve(
    stream: TlsStream<TcpStream>,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let limits = shared.limits;
    let activity = Arc::new(Activity::new());
    let exchange = Exchange {
        shared: Arc::clone(shared),
        client: peer.ip().to_canonical(),
        activity: Arc::clone(&activity),
    };
    let service = service_fn(move |request| {
        let exchange = exchange.clone();
        async move { Ok::<_, Infallible>(exchange.respond(request).await) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.io_timeout)
        .max_buf_size(MAX_MESSAGE.max(8192))
        .serve_connection(TokioIo::new(stream), service);
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
            // The request in flight gets the I/O timeout to be answered; then the connection goes.
            if tokio::time::timeout(limits.io_timeout, connection.as_mut())
                .await
                .is_err()
            {
                shared.metrics.slow.increment(1);
            }
            break;
        }
    }
}

/// When a connection last did something, to close it once idle. Shared with the service, which
/// hyper owns.
struct Activity {
    /// When the connection started: `last` counts from here.
    start: Instant,
    /// Milliseconds after `start` that the last request ended (or the connection started).
    last: AtomicU64,
    /// Whether a request is being answered now: a connection with one is not idle.
    busy: AtomicBool,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            busy: AtomicBool::new(false),
        }
    }

    /// How long the connection has had no request in flight (zero while one is).
    fn idle_for(&self) -> Duration {
        if self.busy.load(Ordering::Relaxed) {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }

    fn begin(&self) {
        self.busy.store(true, Ordering::Relaxed);
    }

    fn end(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
        self.busy.store(false, Ordering::Relaxed);
    }
}

/// What each request of one connection needs.
#[derive(Clone)]
struct Exchange {
    shared: Arc<Shared>,
    /// The client, whose address the policies see.
    client: IpAddr,
    activity: Arc<Activity>,
}

impl Exchange {
    /// The HTTP response to one request, counted by status.
    async fn respond(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        self.activity.begin();
        let mut out = Vec::with_capacity(512);
        let response = match self.resolve(request, &mut out).await {
            Ok(()) => {
                let mut response = Response::new(Full::new(Bytes::new()));
                let headers = response.headers_mut();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(DNS_MESSAGE));
                headers.insert(CACHE_CONTROL, cache_control(&out));
                *response.body_mut() = Full::new(Bytes::from(out));
                response
            }
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

    /// The DNS answer to the query a request carries, into `out`.
    async fn resolve(&self, request: Request<Incoming>, out: &mut Vec<u8>) -> Result<(), Refusal> {
        let query = match ask(request.method(), request.uri(), request.headers()) {
            Ask::Refused(refusal) => return Err(refusal),
            Ask::Get => {
                let mut query = Vec::new();
                query_of_get(request.uri().query().unwrap_or_default(), &mut query)?;
                query
            }
            Ask::Post(refusal) => self.query_of_post(request.into_body(), refusal).await?,
        };
        let mut worker = Worker::default();
        answer(&self.shared, self.client, &query, out, &mut worker).await
    }

    /// The body of a POST, read in time, refused with `refusal` once read if there is one.
    async fn query_of_post(&self, body: Incoming, refusal: Option<Refusal>) -> Result<Vec<u8>, Refusal> {
        let timeout = self.shared.limits.io_timeout;
        match tokio::time::timeout(timeout, read_body(body, refusal.is_none())).await {
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

/// Reads a request body under [`BodyCap`]'s rules.
async fn read_body(mut body: Incoming, keep: bool) -> Result<Vec<u8>, Refusal> {
    let mut cap = BodyCap::new(keep);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| Refusal::BadRequest)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if !cap.take(&data) {
            break;
        }
    }
    cap.finish()
}
