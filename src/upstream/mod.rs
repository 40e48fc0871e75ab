//! Forwarding: sends client queries to the configured upstream resolvers and brings back their
//! answers, checked and analysed, with failover, per-server health, a total time budget, and TCP
//! when an answer comes back truncated.
//!
//! It owns the upstream servers' health and the upstream metrics. It must not change what it
//! forwards beyond the id and the case of the name's letters (EDNS, DO bit and payload size pass
//! through untouched; nothing is added), must not cache (that is `cache`), must not decide
//! anything about blocking, and must never make a caller wait longer than the configured
//! timeout: the caller answers SERVFAIL on an error, and that answer has to be in time.
//!
//! Against spoofed answers (RFC 5452) each attempt gets a fresh random id and, over UDP, a name
//! whose letters are randomly upper- or lowercased (0x20) where the server keeps case; it goes
//! out on one of the owner's few sockets to that server, on ports that move every few hundred
//! queries (`sockets`, `udp`); an answer must repeat id, question and case, and decode as a
//! whole (`waiters`), or the query waits on for the real one.
//!
//! An encrypted server (`dot`: DNS over TLS, `doh`: DNS over HTTPS) is asked over its own
//! transport whatever the client came in by, on connections all workers share; the rest (order,
//! health, budget, fallback, metrics) is the same as for plain servers.

mod doh;
mod dot;
mod exchange;
mod health;
mod sockets;
mod tcp;
mod tls;
mod udp;
mod waiters;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tls_tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::cache::{CachedResponse, TtlLimits};
use crate::wire::{HEADER_LEN, rcode};

use exchange::QueryInfo;
use health::{ErrorKind, Server, millis_since};
pub(crate) use sockets::Sockets;
pub(crate) use tls::{Roots, TlsError};

/// Queries in random case one attempt sends at most before asking without it, whatever the
/// server's case check says: one more than it takes to learn that a server does not keep case.
const CASE_TRIES: u32 = health::CASE_MISSES_TO_GIVE_UP + 1;

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
    /// The answer over TCP, with the right id and question, does not decode.
    #[error("its answer does not decode")]
    Malformed,
    /// Not sent: the queries in flight to this server are at the configured cap.
    #[error("too many queries in flight to it")]
    Busy,
    /// An answer with the right id and question came back in another case than the 0x20 case
    /// sent: asked again without it.
    #[error("its answer did not repeat the case of the name")]
    CaseMismatch,
}

impl AttemptError {
    /// The metric kind of this error.
    fn kind(&self) -> ErrorKind {
        match self {
            AttemptError::Timeout => ErrorKind::Timeout,
            AttemptError::Network(_) => ErrorKind::Network,
            AttemptError::Malformed => ErrorKind::Malformed,
            AttemptError::Busy => ErrorKind::Busy,
            AttemptError::CaseMismatch => ErrorKind::Case,
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
    /// Every upstream has as many queries in flight as `upstream.max_inflight` allows.
    #[error("every upstream server has upstream.max_inflight queries in flight")]
    Busy,
    /// Every upstream was tried and failed before the budget ran out (refused, unreachable).
    #[error("all {tried} upstream servers failed; the last one, {upstream}, with: {last}")]
    AllFailed {
        /// How many servers were tried.
        tried: usize,
        /// The last server tried.
        upstream: Arc<str>,
        /// Its error.
        #[source]
        last: AttemptError,
    },
}

/// One upstream server as the pool is given it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ServerSpec {
    /// Where queries go: the server's address, or the bootstrap address of a named one.
    pub(crate) addr: SocketAddr,
    /// How they travel there.
    pub(crate) encryption: Encryption,
    /// The server as configured: the `upstream` label of its metrics and its name in logs.
    pub(crate) label: String,
}

/// How queries travel to one upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Encryption {
    /// Plain DNS: UDP or TCP as the client came, TCP again for a truncated answer.
    None,
    /// DNS over TLS; `name` (a host name or an IP) is what the certificate must carry.
    Tls {
        /// The certificate's name, and the SNI.
        name: String,
    },
    /// DNS over HTTPS at `https://name:port/path` (port from `addr`).
    Https {
        /// The certificate's name, and the URL's host.
        name: String,
        /// The URL's path.
        path: String,
    },
}

/// Why a pool cannot be built.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PoolError {
    /// TLS to the encrypted servers cannot be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A server's name is no name a certificate can be checked against.
    #[error("upstream {0}: its host is not a valid TLS server name")]
    Name(String),
    /// The HTTPS client of a server cannot be built.
    #[error("upstream {label}: {error}")]
    Https {
        /// The server.
        label: String,
        /// What went wrong.
        #[source]
        error: reqwest::Error,
    },
}

/// The transport of an encrypted server.
#[derive(Debug)]
enum Encrypted {
    /// DNS over TLS.
    Tls(dot::Dot),
    /// DNS over HTTPS.
    Https(doh::Doh),
    /// Built outside an async runtime (a command that builds the config but forwards nothing):
    /// nothing to run connections on, so nothing is sent.
    NoRuntime,
}

/// The upstream resolvers, in configured order, with their health. Built from the config and
/// held in an `Arc` by the live snapshot; shared by all workers (`Send + Sync`, no locks: health
/// is atomics). A reload builds a new pool when the upstream settings change, so health starts
/// over with new config.
#[derive(Debug)]
pub struct UpstreamPool {
    /// The servers in configured order, each with health and metric handles (shared with the
    /// sockets that count their strays).
    servers: Box<[Arc<Server>]>,
    /// Their addresses, for [`UpstreamPool::servers`].
    addrs: Box<[SocketAddr]>,
    /// The servers as configured, for [`UpstreamPool::specs`].
    specs: Box<[ServerSpec]>,
    /// The transport of each encrypted server, by index (None: plain DNS).
    encrypted: Box<[Option<Encrypted>]>,
    /// The roots encrypted servers are checked against.
    roots: Roots,
    /// How the pool was configured.
    settings: PoolSettings,
    /// Origin of the millisecond clock health uses.
    epoch: Instant,
}

/// The settings of an [`UpstreamPool`] besides its servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// The total budget of one `forward` call.
    pub timeout: Duration,
    /// Queries in flight to one server at most, over all owners of [`Sockets`]; past it a server
    /// is skipped, and when all are, the query fails with [`ForwardError::Busy`].
    pub max_inflight: usize,
    /// Whether query names are sent in random case (0x20) and answers must repeat it.
    pub case_randomization: bool,
}

/// How a query travels to the upstream, on whose sockets.
#[derive(Clone, Copy, Debug)]
pub enum Transport<'a> {
    /// UDP on the caller's sockets (a worker's own), then TCP to the same server if the answer
    /// is truncated.
    Udp(&'a Sockets),
    /// TCP only: for queries that came in over TCP, whose answers may be larger than any UDP
    /// answer.
    Tcp(&'a Sockets),
}

impl UpstreamPool {
    /// A pool of plain `servers` (tried in this order while healthy), for tests.
    #[cfg(test)]
    pub(crate) fn new(servers: &[SocketAddr], settings: PoolSettings) -> Self {
        let specs: Vec<ServerSpec> = servers
            .iter()
            .map(|&addr| ServerSpec {
                addr,
                encryption: Encryption::None,
                label: addr.to_string(),
            })
            .collect();
        Self::with_specs(&specs, settings, Roots::System).expect("plain servers need no TLS")
    }

    /// A pool of `servers`, plain or encrypted, the encrypted ones checked against `roots`.
    /// Connections to encrypted servers live on the runtime this is called on, which must
    /// always run (the daemon's main runtime, not a UDP worker's).
    pub(crate) fn with_specs(servers: &[ServerSpec], settings: PoolSettings, roots: Roots) -> Result<Self, PoolError> {
        let runtime = tokio::runtime::Handle::try_current().ok();
        let encrypted_used = servers.iter().any(|s| s.encryption != Encryption::None);
        // Built once for all servers (loading the roots is the costly part); DoH offers only
        // HTTP/2 (RFC 8484 section 5.2), DoT no ALPN (some servers refuse one they do not know).
        let configs = match encrypted_used {
            true => Some((tls::client_config(&roots, &[])?, tls::client_config(&roots, &[b"h2"])?)),
            false => None,
        };
        let pool_servers: Box<[Arc<Server>]> = servers
            .iter()
            .map(|s| Arc::new(Server::new(s.addr, &s.label)))
            .collect();
        let mut encrypted = Vec::with_capacity(servers.len());
        for (spec, server) in servers.iter().zip(pool_servers.iter()) {
            // Without a runtime (or, never with an encrypted server, without configs) nothing
            // can be sent.
            let transport = match (&spec.encryption, runtime.as_ref().zip(configs.as_ref())) {
                (Encryption::None, _) => None,
                (_, None) => Some(Encrypted::NoRuntime),
                (Encryption::Tls { name }, Some((runtime, (dot_config, _)))) => {
                    let name = rustls::pki_types::ServerName::try_from(name.clone())
                        .map_err(|_| PoolError::Name(spec.label.clone()))?;
                    Some(Encrypted::Tls(dot::Dot::new(
                        Arc::clone(server),
                        name,
                        Arc::clone(dot_config),
                        runtime.clone(),
                    )))
                }
                (Encryption::Https { name, path }, Some((runtime, (_, doh_config)))) => {
                    let host = match name.parse::<std::net::Ipv6Addr>() {
                        Ok(_) => format!("[{name}]"),
                        Err(_) => name.clone(),
                    };
                    let url = reqwest::Url::parse(&format!("https://{host}:{}{path}", spec.addr.port()))
                        .map_err(|_| PoolError::Name(spec.label.clone()))?;
                    let doh = doh::Doh::new(Arc::clone(server), url, (**doh_config).clone(), runtime.clone()).map_err(
                        |error| PoolError::Https {
                            label: spec.label.clone(),
                            error,
                        },
                    )?;
                    Some(Encrypted::Https(doh))
                }
            };
            encrypted.push(transport);
        }
        Ok(UpstreamPool {
            servers: pool_servers,
            addrs: servers.iter().map(|s| s.addr).collect(),
            encrypted: encrypted.into(),
            specs: servers.into(),
            roots,
            settings,
            epoch: Instant::now(),
        })
    }

    /// The addresses queries go to, in configured order (the bootstrap address of a named
    /// encrypted server): what the loop check and descriptor sizing go by.
    pub fn servers(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The servers as configured, in order.
    pub(crate) fn specs(&self) -> &[ServerSpec] {
        &self.specs
    }

    /// The roots encrypted servers are checked against.
    pub(crate) fn roots(&self) -> &Roots {
        &self.roots
    }

    /// The settings the pool was built with.
    pub fn settings(&self) -> PoolSettings {
        self.settings
    }

    /// Each server's label and, while it is down (in its failure backoff), how long ago its
    /// failures in a row began: for readiness and `sinkhole_upstream_up`, read when asked (a
    /// scrape, a probe), never per query.
    pub(crate) fn health(&self) -> impl Iterator<Item = (&str, Option<Duration>)> + '_ {
        let now_ms = millis_since(self.epoch, Instant::now());
        self.servers.iter().map(move |s| {
            let down_for = s
                .health
                .down_since(now_ms)
                .map(|since| Duration::from_millis(now_ms - since));
            (&*s.label, down_for)
        })
    }

    /// Forwards one client query (the whole message: header, question, OPT) over `transport`
    /// and returns the upstream's answer, analysed with `limits` (the caller writes it for the
    /// client with the client's id and question). Over UDP, a truncated answer is asked again
    /// over TCP from the same server. Never takes longer than the pool's timeout.
    ///
    /// Servers are tried healthy ones first, in order; each attempt gets the remaining budget
    /// split over the servers left (at least 100 ms). A SERVFAIL or REFUSED answer moves on to
    /// the next server and is returned if no server answers better.
    pub async fn forward(
        &self,
        query: &[u8],
        transport: Transport<'_>,
        limits: &TtlLimits,
    ) -> Result<CachedResponse, ForwardError> {
        let info = QueryInfo::parse(query).map_err(ForwardError::BadQuery)?;
        if self.servers.is_empty() {
            return Err(ForwardError::NoServers);
        }
        let start = Instant::now();
        let deadline = start + self.settings.timeout;
        let order = self.order(start);
        let mut outgoing = query.to_vec();
        let mut fallback = None;
        let mut last_error = None;
        let (mut tried, mut busy) = (0, 0);

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

            let attempt = Attempt {
                server,
                encrypted: self.encrypted[index].as_ref(),
                question_len: info.question.len(),
                limits: *limits,
                deadline: now + share,
            };
            let answer = match self.attempt(&attempt, &mut outgoing, transport, deadline).await {
                Ok(answer) => answer,
                Err(AttemptError::Busy) => {
                    // Not the server's failure: it is not marked down.
                    server.count(ErrorKind::Busy);
                    busy += 1;
                    continue;
                }
                Err(error) => {
                    server.failed(millis_since(self.epoch, Instant::now()), error.kind(), &error);
                    last_error = Some((Arc::clone(&server.label), error));
                    continue;
                }
            };
            server.answered();
            match answer.rcode() {
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
            _ if busy == tried => Err(ForwardError::Busy),
            Some((upstream, last)) if Instant::now() < deadline => {
                Err(ForwardError::AllFailed { tried, upstream, last })
            }
            _ => Err(ForwardError::Timeout(self.settings.timeout)),
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

    /// One attempt at one server with a fresh id: UDP until the attempt's deadline (then TCP
    /// until `deadline`, the whole budget's, if the answer is truncated), or TCP until the
    /// attempt's deadline. `outgoing` is the client's query, whose id (and, over UDP, the case
    /// of whose name) the attempt changes.
    async fn attempt(
        &self,
        attempt: &Attempt<'_>,
        outgoing: &mut [u8],
        transport: Transport<'_>,
        deadline: Instant,
    ) -> Result<CachedResponse, AttemptError> {
        let Attempt {
            server,
            question_len,
            limits,
            ..
        } = *attempt;
        let max_inflight = self.settings.max_inflight;
        // An encrypted server is asked over its own transport, whatever the client's; its
        // answers are never truncated.
        match attempt.encrypted {
            None => {}
            Some(Encrypted::Tls(dot)) => {
                return dot
                    .exchange(outgoing, question_len, limits, max_inflight, attempt.deadline)
                    .await;
            }
            Some(Encrypted::Https(doh)) => {
                return doh
                    .exchange(outgoing, question_len, limits, max_inflight, attempt.deadline)
                    .await;
            }
            Some(Encrypted::NoRuntime) => {
                return Err(AttemptError::Network(std::io::Error::other(
                    "no async runtime to connect on",
                )));
            }
        }
        let sockets = match transport {
            Transport::Udp(sockets) => sockets,
            Transport::Tcp(sockets) => {
                return sockets
                    .tcp(server, outgoing, question_len, limits, max_inflight, attempt.deadline)
                    .await;
            }
        };
        // An answer in another case than sent is a spoofer's guess or a server that does not
        // keep case: asked again (a new id, port and case) until the server is known for the
        // latter, when it is asked without 0x20. A spoofer gains nothing by it: each retry needs
        // a new guess of id, port and case.
        let mut tries = 0;
        let answer = loop {
            tries += 1;
            let exact_case = self.settings.case_randomization && server.case.is_on() && tries <= CASE_TRIES;
            if exact_case {
                exchange::randomize_case(&mut outgoing[HEADER_LEN..HEADER_LEN + question_len]);
            }
            let sent = sockets
                .udp(
                    server,
                    outgoing,
                    question_len,
                    exact_case,
                    limits,
                    max_inflight,
                    attempt.deadline,
                )
                .await;
            match sent {
                Err(AttemptError::CaseMismatch) => continue,
                sent => break sent?,
            }
        };
        if !answer.is_truncated() {
            return Ok(answer);
        }
        // The server is alive and the answer is real, only too big: TCP gets the rest of the
        // whole budget, not just this attempt's share.
        server.tcp_retries.increment(1);
        match sockets
            .tcp(server, outgoing, question_len, limits, max_inflight, deadline)
            .await
        {
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

/// One attempt's fixed facts.
struct Attempt<'a> {
    server: &'a Arc<Server>,
    /// Its transport, if it is an encrypted server.
    encrypted: Option<&'a Encrypted>,
    /// Length of the question section, which follows the header.
    question_len: usize,
    limits: TtlLimits,
    /// The end of this attempt's share of the budget.
    deadline: Instant,
}
