//! The metrics listener (`server.metrics`): a small HTTP/1.1 server of our own for Prometheus
//! (`/metrics`), liveness (`/health`) and readiness (`/ready`), and the client of
//! `sinkhole health`.
//!
//! Bound at start, before root is dropped, and answering at once, so that a liveness probe is
//! answered while lists by URL are still awaited (`/ready` says 503 meanwhile). Bounded: at most
//! [`MAX_CONNECTIONS`] at a time (more wait in the kernel's backlog), one request per connection
//! (no keep-alive to hold a slot), a few seconds to send the request and take the answer, request
//! heads of 8 KiB at most, bodies never read. Readiness and the process metrics are read when a
//! request asks for them, never on the packet path.

mod process;
mod ready;

use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::state::State;

/// Connections served at once; Prometheus and a couple of probes need a handful.
const MAX_CONNECTIONS: usize = 32;
/// Time to send the request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a connection may take in all (request, answer, the client reading it).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(15);
/// Request heads larger than this are refused (hyper's smallest buffer).
const MAX_HEAD: usize = 8192;
/// How often the recorder's upkeep runs (histogram buckets drained), as its docs ask of a
/// recorder installed without its own HTTP listener.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// The Prometheus text exposition format.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The body of `/health` and `/ready`.
const JSON: &str = "application/json";

/// What `/ready` is computed from: set by the daemon as it starts. Shared with the server.
#[derive(Default)]
pub struct Readiness {
    /// The live state, once built (lists by URL awaited, `server.list_wait`).
    state: OnceLock<Arc<State>>,
    /// Set once every UDP, TCP, DoT and DoH listener is bound.
    bound: AtomicBool,
}

impl Readiness {
    /// The state is built: its snapshots say what is loaded and how the upstreams are.
    pub fn state_built(&self, state: Arc<State>) {
        let _ = self.state.set(state);
    }

    /// Every listener is bound (called by `server::serve`'s `bound`).
    pub fn listeners_bound(&self) {
        self.bound.store(true, Ordering::Release);
    }

    fn report(&self) -> ready::Report {
        let snapshot = self.state.get().map(|s| s.load_full());
        ready::evaluate(
            self.bound.load(Ordering::Acquire),
            snapshot.as_deref(),
            crate::state::now_unix(),
        )
    }
}

/// The running metrics listener; its tasks end when it is dropped.
pub struct AdminServer {
    /// What `/ready` reads; the daemon fills it in as it starts.
    readiness: Arc<Readiness>,
    /// The accept loop and the upkeep task.
    tasks: [JoinHandle<()>; 2],
}

impl AdminServer {
    /// Binds `addr` and serves on it from now on, on the current runtime: `handle` renders the
    /// installed recorder's metrics. Must run before root is dropped (a port below 1024).
    pub async fn start(addr: SocketAddr, handle: PrometheusHandle) -> io::Result<AdminServer> {
        let listener = TcpListener::bind(addr).await?;
        let readiness = Arc::new(Readiness::default());
        let upkeep = {
            let handle = handle.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(UPKEEP_EVERY);
                loop {
                    tick.tick().await;
                    handle.run_upkeep();
                }
            })
        };
        let accept = tokio::spawn(accept_loop(listener, handle, Arc::clone(&readiness)));
        Ok(AdminServer {
            readiness,
            tasks: [accept, upkeep],
        })
    }

    /// What `/ready` reads, for the daemon to fill in.
    pub fn readiness(&self) -> Arc<Readiness> {
        Arc::clone(&self.readiness)
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Accepts connections while a slot is free; each is served in its own task, which gives the
/// slot back when it ends.
async fn accept_loop(listener: TcpListener, handle: PrometheusHandle, readiness: Arc<Readiness>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let pages = Arc::new(Pages { handle, readiness });
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::warn!(%error, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let pages = Arc::clone(&pages);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let pages = Arc::clone(&pages);
                async move { Ok::<_, Infallible>(pages.respond(&request).await) }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%peer, %error, "metrics listener: connection failed"),
                Err(_) => tracing::debug!(%peer, "metrics listener: connection timed out"),
            }
            drop(permit);
        });
    }
}

/// What the routes read.
struct Pages {
    /// Renders the recorder's metrics.
    handle: PrometheusHandle,
    /// Readiness, for `/ready` and `sinkhole_ready`.
    readiness: Arc<Readiness>,
}

impl Pages {
    /// The answer to one request: GET and HEAD on the three routes, 405 for other methods on
    /// them, 404 elsewhere.
    async fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path();
        if !matches!(path, "/metrics" | "/health" | "/ready") {
            return plain(StatusCode::NOT_FOUND, "not found: try /metrics, /health or /ready\n");
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: use GET or HEAD\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match path {
            "/metrics" => self.metrics().await,
            "/health" => body(StatusCode::OK, JSON, "{\"status\":\"ok\"}\n".into()),
            _ => {
                let report = self.readiness.report();
                let status = match report.ready {
                    true => StatusCode::OK,
                    false => StatusCode::SERVICE_UNAVAILABLE,
                };
                body(status, JSON, report.json())
            }
        }
    }

    /// The metrics page: the recorder's metrics, then readiness and the process's, read now.
    async fn metrics(&self) -> Response<Full<Bytes>> {
        let report = self.readiness.report();
        let handle = self.handle.clone();
        // Rendering walks every series and /proc is a file system: off the runtime's threads.
        let page = tokio::task::spawn_blocking(move || {
            let mut page = handle.render();
            write_readiness(&report, &mut page);
            process::Reading::now().write(&mut page);
            page
        })
        .await;
        match page {
            Ok(page) => body(StatusCode::OK, METRICS_TYPE, page),
            Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "metrics could not be rendered\n"),
        }
    }
}

/// `sinkhole_ready` and `sinkhole_upstream_up` as exposition text. Written here rather than
/// through the recorder, which cannot forget a series: an upstream a reload removed would stay on
/// the page with its last value (and keep an alert on it firing).
fn write_readiness(report: &ready::Report, page: &mut String) {
    use std::fmt::Write;
    let _ = write!(
        page,
        "# HELP {ready} 1 when GET /ready answers 200 (listeners bound, needed lists loaded, an upstream usable), \
         else 0.\n# TYPE {ready} gauge\n{ready} {}\n\n",
        u8::from(report.ready),
        ready = crate::metrics::READY,
    );
    if report.upstream_up.is_empty() {
        return;
    }
    let up = crate::metrics::UPSTREAM_UP;
    let _ = writeln!(
        page,
        "# HELP {up} 1 if the upstream server is usable now (not in failure backoff), else 0.\n# TYPE {up} gauge"
    );
    for (upstream, usable) in &report.upstream_up {
        let label = upstream.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = writeln!(page, "{up}{{upstream=\"{label}\"}} {}", u8::from(*usable));
    }
    page.push('\n');
}

/// A response with a body of `content_type`, never cached (it says how things are now).
fn body(status: StatusCode, content_type: &'static str, text: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A plain-text error response.
fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    body(status, "text/plain; charset=utf-8", text.to_string())
}

/// Why `sinkhole health` got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Nothing listens there, or it did not answer in time.
    #[error("cannot reach the metrics listener at {addr}: {source} (is sinkhole running with this config?)")]
    Connect {
        /// Where it was asked.
        addr: SocketAddr,
        /// The socket's error.
        source: io::Error,
    },
    /// Something answered that is not an HTTP response.
    #[error("the metrics listener at {addr} sent something that is not an HTTP answer")]
    NotHttp {
        /// Where it was asked.
        addr: SocketAddr,
    },
}

/// The biggest answer `sinkhole health` reads: `/ready` says a few lines at most.
const MAX_PROBE_ANSWER: u64 = 64 * 1024;

/// `GET path` on the metrics listener at `addr` (an unspecified address, as a listener binds to
/// all, is asked on loopback), within `timeout` for each step: the status and the body. For
/// `sinkhole health`, where no curl is at hand (the distroless image).
pub fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), ProbeError> {
    let addr = asked_at(addr);
    let failed = |source| ProbeError::Connect { addr, source };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(failed)?;
    stream.set_read_timeout(Some(timeout)).map_err(failed)?;
    stream.set_write_timeout(Some(timeout)).map_err(failed)?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: sinkhole-health\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(failed)?;
    let mut answer = Vec::new();
    stream.take(MAX_PROBE_ANSWER).read_to_end(&mut answer).map_err(failed)?;
    parse_answer(&answer).ok_or(ProbeError::NotHttp { addr })
}

/// Where to ask a listener bound to `addr`: an unspecified address (all interfaces) on loopback.
fn asked_at(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port()),
        _ => addr,
    }
}

/// The status and body of an HTTP/1.x answer that ends with the connection.
fn parse_answer(answer: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_line = head.lines().next()?;
    let mut words = status_line.split_ascii_whitespace();
    if !words.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status = words.next()?.parse().ok()?;
    Some((status, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_read_as_status_and_body() {
        let answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\r\n{\"ready\":false}\n";
        assert_eq!(parse_answer(answer), Some((503, "{\"ready\":false}\n".to_string())));
        assert_eq!(parse_answer(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_answer(b"HTTP/1.1 abc\r\n\r\n"), None);
    }

    #[test]
    fn a_listener_on_all_interfaces_is_asked_on_loopback() {
        let ask = |a: &str| asked_at(a.parse().expect("address")).to_string();
        assert_eq!(ask("0.0.0.0:9153"), "127.0.0.1:9153");
        assert_eq!(ask("[::]:9153"), "[::1]:9153");
        assert_eq!(ask("10.1.2.3:9153"), "10.1.2.3:9153");
    }
}
