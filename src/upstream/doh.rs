//! DNS over HTTPS (RFC 8484) to one upstream server: POST application/dns-message over HTTP/2,
//! with reqwest on rustls (ring). The server's host name is never looked up: the client's
//! resolver answers every lookup with the configured bootstrap address, and counts each, since
//! reqwest asks it once per connection it opens (so `sinkhole_upstream_connections_total` shows
//! pooling at work).
//!
//! As for DNS over TLS, requests run on the daemon's main runtime: hyper's connection tasks are
//! spawned where the first request runs, and a UDP worker's runtime does not run while the worker
//! waits on its socket.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use metrics::Counter;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use tokio::runtime::Handle;
use tokio::time::{Instant, timeout_at};

use super::AttemptError;
use super::dot::IDLE;
use super::exchange::{answers, question_of, set_id};
use super::health::Server;
use crate::cache::{CachedResponse, TtlLimits};
use crate::wire::MAX_MESSAGE;

/// The media type of DNS messages over HTTP (RFC 8484 section 6).
const DNS_MESSAGE: &str = "application/dns-message";

/// DNS over HTTPS to one server.
pub(super) struct Doh {
    /// `https://name:port/path`.
    url: reqwest::Url,
    client: reqwest::Client,
    /// The runtime requests (and so hyper's connection tasks) run on: the daemon's.
    runtime: Handle,
    /// Queries in flight to the server, against `upstream.max_inflight`.
    load: AtomicUsize,
}

impl std::fmt::Debug for Doh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Doh")
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

/// The resolver of a DoH client: the bootstrap address for any name, counted as a connection.
struct Bootstrap {
    addr: SocketAddr,
    connections: Counter,
}

impl reqwest::dns::Resolve for Bootstrap {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        self.connections.increment(1);
        let addr = self.addr;
        Box::pin(async move { Ok(Box::new(std::iter::once(addr)) as reqwest::dns::Addrs) })
    }
}

impl Doh {
    /// DNS over HTTPS to `server` at `url` (whose host its certificate must carry), with
    /// `config` (ALPN h2).
    pub(super) fn new(
        server: Arc<Server>,
        url: reqwest::Url,
        config: rustls::ClientConfig,
        runtime: Handle,
    ) -> Result<Doh, reqwest::Error> {
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .dns_resolver(Arc::new(Bootstrap {
                addr: server.addr,
                connections: server.connections.clone(),
            }))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_idle_timeout(IDLE)
            .user_agent(concat!("sinkhole/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Doh {
            url,
            client,
            runtime,
            load: AtomicUsize::new(0),
        })
    }

    /// Posts `query` (its id set to 0, as RFC 8484 asks, for HTTP caches) and waits until
    /// `deadline` for the answer, which must repeat the question.
    pub(super) async fn exchange(
        &self,
        query: &mut [u8],
        question_len: usize,
        limits: TtlLimits,
        max_inflight: usize,
        deadline: Instant,
    ) -> Result<CachedResponse, AttemptError> {
        if self.load.fetch_add(1, Ordering::Relaxed) >= max_inflight {
            self.load.fetch_sub(1, Ordering::Relaxed);
            return Err(AttemptError::Busy);
        }
        let _in_flight = InFlight(&self.load);
        set_id(query, 0);
        let request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, DNS_MESSAGE)
            .header(ACCEPT, DNS_MESSAGE)
            .body(query.to_vec());
        let mut task = self.runtime.spawn(async move {
            let mut response = request.send().await?.error_for_status()?;
            // Read by chunks and given up past the largest DNS message: a server cannot make
            // sinkhole buffer more than that.
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_MESSAGE {
                    return Ok(None);
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>(Some(body))
        });
        let body = match timeout_at(deadline, &mut task).await {
            Ok(Ok(Ok(Some(body)))) => body,
            Ok(Ok(Ok(None))) => return Err(AttemptError::Malformed),
            Ok(Ok(Err(error))) => return Err(AttemptError::Network(io::Error::other(error_chain(&error)))),
            Ok(Err(join)) => return Err(AttemptError::Network(io::Error::other(join))),
            Err(_) => {
                task.abort();
                return Err(AttemptError::Timeout);
            }
        };
        if !answers(question_of(query, question_len), &body, 0) {
            return Err(AttemptError::Malformed);
        }
        CachedResponse::analyze(body, std::time::Instant::now(), &limits).map_err(|_| AttemptError::Malformed)
    }
}

/// One query counted in flight until dropped.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// reqwest's error with its causes (a certificate error is a cause of "error sending request").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
