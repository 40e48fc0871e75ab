//! Forwarding: sends client queries to the configured upstream resolvers and brings back their
//! answers, with failover, per-server health, a total time budget, and TCP when an answer comes
//! back truncated.
//!
//! It owns the upstream servers' health and the upstream metrics. It must not change what it
//! forwards beyond the id (EDNS, DO bit and payload size pass through untouched; nothing is
//! added), must not cache (that is `cache`), must not decide anything about blocking, and must
//! never make a caller wait longer than the configured timeout: the caller answers SERVFAIL on
//! an error, and that answer has to be in time.
//!
//! Each attempt gets a fresh random id (against spoofed answers) and goes out on the worker's
//! socket to that server (see `udp`: kept open, on a port that moves every few thousand
//! queries); answers must repeat the question.

mod exchange;
mod health;
mod udp;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use crate::wire::rcode;

use exchange::QueryInfo;
use health::{ErrorKind, Server, millis_since};
pub use udp::UdpSockets;

/// The least time one attempt gets, even when the remaining budget split over the servers left
/// would be less: below this a real resolver cannot answer anyway.
const MIN_ATTEMPT: Duration = Duration::from_millis(100);

/// Why one attempt at one server failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// No matching answer before the attempt's share of the budget ran out.
    #[error("no answer in time")]
    Timeout,
    /// The socket failed: the server refused or reset the connection, or is unreachable.
    #[error("network error: {0}")]
    Network(#[from] std::io::Error),
    /// The answer over TCP was not the answer to our query.
    #[error("its answer over TCP did not match the query")]
    Malformed,
}

impl AttemptError {
    /// The metric kind of this error.
    fn kind(&self) -> ErrorKind {
        match self {
            AttemptError::Timeout => ErrorKind::Timeout,
            AttemptError::Network(_) => ErrorKind::Network,
            AttemptError::Malformed => ErrorKind::Malformed,
        }
    }
}

/// Why a query could not be forwarded. The caller answers SERVFAIL (or FORMERR for
/// [`ForwardError::BadQuery`]).
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The upstream list is empty.
    #[error("no upstream servers are configured; add at least one to the upstream servers list")]
    NoServers,
    /// The query cannot be forwarded as it is.
    #[error("query not forwarded: {0}")]
    BadQuery(&'static str),
    /// The time budget ran out before any upstream answered.
    #[error("no upstream answered within {0:?}; check that the upstream servers are reachable from this host")]
    Timeout(Duration),
    /// Every upstream was tried and failed before the budget ran out (refused, unreachable).
    #[error("all {tried} upstream servers failed; the last one, {upstream}, with: {last}")]
    AllFailed {
        /// How many servers were tried.
        tried: usize,
        /// The last server tried.
        upstream: SocketAddr,
        /// Its error.
        #[source]
        last: AttemptError,
    },
}

/// The upstream resolvers, in configured order, with their health. Built from the config and
/// held in an `Arc` by the live snapshot; shared by all workers (`Send + Sync`, no locks: health
/// is atomics). A reload builds a new pool, so health starts over with new config.
#[derive(Debug)]
pub struct UpstreamPool {
    /// The servers in configured order, each with health and metric handles.
    servers: Box<[Server]>,
    /// Their addresses, for [`UpstreamPool::servers`].
    addrs: Box<[SocketAddr]>,
    /// The total budget of one `forward` call.
    timeout: Duration,
    /// Origin of the millisecond clock health uses.
    epoch: Instant,
}

/// How a query travels to the upstream.
#[derive(Clone, Copy, Debug)]
pub enum Transport<'a> {
    /// UDP on the caller's sockets (a worker's own), then TCP to the same server if the answer
    /// is truncated.
    Udp(&'a UdpSockets),
    /// TCP only: for queries that came in over TCP, whose answers may be larger than any UDP
    /// answer.
    Tcp,
}

impl UpstreamPool {
    /// A pool of `servers` (tried in this order while healthy); `timeout` is the most one
    /// [`forward`](Self::forward) call may take. Registers the metric handles of each server.
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Self {
        UpstreamPool {
            servers: servers.iter().copied().map(Server::new).collect(),
            addrs: servers.into(),
            timeout,
            epoch: Instant::now(),
        }
    }

    /// The configured servers, in order.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Forwards one client query (the whole message: header, question, OPT) over `transport`
    /// and returns the upstream's answer with the id set back to the query's. Over UDP, a
    /// truncated answer is asked again over TCP from the same server. Never takes longer than
    /// the pool's timeout.
    ///
    /// Servers are tried healthy ones first, in order; each attempt gets the remaining budget
    /// split over the servers left (at least 100 ms). A SERVFAIL or REFUSED answer moves on to
    /// the next server and is returned if no server answers better.
    pub async fn forward(&self, query: &[u8], transport: Transport<'_>) -> Result<Vec<u8>, ForwardError> {
        let info = QueryInfo::parse(query).map_err(ForwardError::BadQuery)?;
        if self.servers.is_empty() {
            return Err(ForwardError::NoServers);
        }
        let start = Instant::now();
        let deadline = start + self.timeout;
        let order = self.order(start);
        let mut outgoing = query.to_vec();
        let mut fallback = None;
        let mut last_error = None;
        let mut tried = 0;

        for (position, &index) in order.iter().enumerate() {
            let now = Instant::now();
            let remaining = deadline.saturating_duration_since(now);
            if remaining.is_zero() {
                break;
            }
            let servers_left = u32::try_from(order.len() - position).unwrap_or(u32::MAX);
            let share = (remaining / servers_left).max(MIN_ATTEMPT).min(remaining);
            let server = &self.servers[index];
            tried += 1;

            let result = self
                .attempt(server, &info, &mut outgoing, transport, now + share, deadline)
                .await;
            let mut answer = match result {
                Ok(answer) => answer,
                Err(error) => {
                    server.failed(millis_since(self.epoch, Instant::now()), error.kind(), &error);
                    last_error = Some((server.addr, error));
                    continue;
                }
            };
            server.answered();
            exchange::set_id(&mut answer, info.id);
            match exchange::rcode(&answer) {
                rcode::SERVFAIL => server.count(ErrorKind::Servfail),
                rcode::REFUSED => server.count(ErrorKind::Refused),
                _ => {
                    server.duration.record(now.elapsed().as_secs_f64());
                    return Ok(answer);
                }
            }
            fallback = Some(answer);
        }

        if let Some(answer) = fallback {
            return Ok(answer);
        }
        match last_error {
            Some((upstream, last)) if Instant::now() < deadline => {
                Err(ForwardError::AllFailed { tried, upstream, last })
            }
            _ => Err(ForwardError::Timeout(self.timeout)),
        }
    }

    /// The order to try servers in now: healthy ones in configured order, then those marked
    /// down, in configured order.
    fn order(&self, now: Instant) -> Vec<usize> {
        let now_ms = millis_since(self.epoch, now);
        let (mut order, down): (Vec<usize>, Vec<usize>) =
            (0..self.servers.len()).partition(|&i| !self.servers[i].health.is_down(now_ms));
        order.extend(down);
        order
    }

    /// One attempt at one server with a fresh id: UDP until `attempt_deadline` (then TCP until
    /// `deadline` if the answer is truncated), or TCP until `attempt_deadline`.
    async fn attempt(
        &self,
        server: &Server,
        info: &QueryInfo<'_>,
        outgoing: &mut [u8],
        transport: Transport<'_>,
        attempt_deadline: Instant,
        deadline: Instant,
    ) -> Result<Vec<u8>, AttemptError> {
        let sockets = match transport {
            Transport::Udp(sockets) => sockets,
            Transport::Tcp => {
                let id = rand::random::<u16>();
                exchange::set_id(outgoing, id);
                return exchange::tcp(server.addr, outgoing, info, id, attempt_deadline).await;
            }
        };
        let answer = sockets
            .exchange(server, outgoing, info.question, attempt_deadline)
            .await?;
        if !exchange::is_truncated(&answer) {
            return Ok(answer);
        }
        // The server is alive and the answer is real, only too big: TCP gets the rest of the
        // whole budget, not just this attempt's share.
        server.tcp_retries.increment(1);
        let id = rand::random::<u16>();
        exchange::set_id(outgoing, id);
        match exchange::tcp(server.addr, outgoing, info, id, deadline).await {
            Ok(full) => Ok(full),
            Err(error) => {
                // Counted, but the server stays up (it answered over UDP); the client gets the
                // truncated answer and may try TCP itself.
                server.count(error.kind());
                Ok(answer)
            }
        }
    }
}
