//! One owner's sockets to the upstream servers: a UDP worker's, or the TCP listener's. Per
//! server, up to [`udp::PORTS`] UDP sockets and [`tcp::MAX_LINKS`] TCP connections, kept open
//! and shared by the owner's queries, and the count of its queries in flight to that server
//! (checked against `upstream.max_inflight`).
//!
//! Sockets are keyed by server address, so they survive a reload that keeps the server; those
//! of a server a reload removed are retired as they age. Dropping the set retires every socket:
//! each closes once its last query is done.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::health::Server;
use super::waiters::lock;
use super::{AttemptError, tcp, udp};
use crate::cache::{CachedResponse, TtlLimits};

/// One owner's sockets to every server it has asked. Create one per worker thread (or per
/// runtime) and share it with that owner's forwarding tasks; it must be used inside the tokio
/// runtime whose reactor its sockets join.
pub struct Sockets {
    /// Per server asked so far.
    servers: Mutex<Vec<ServerSockets>>,
    /// How many owners share `upstream.max_inflight`: each takes this share of it.
    owners: usize,
}

/// The sockets of one owner to one server.
struct ServerSockets {
    addr: SocketAddr,
    /// The UDP sockets queries are spread over; a slot is filled on first use.
    udp: [Option<Arc<udp::Link>>; udp::PORTS],
    /// Open TCP connections.
    tcp: Vec<Arc<tcp::Link>>,
    /// Queries in flight to the server on any of these sockets (retired ones included).
    load: Arc<AtomicUsize>,
}

impl ServerSockets {
    fn new(addr: SocketAddr) -> ServerSockets {
        ServerSockets {
            addr,
            udp: Default::default(),
            tcp: Vec::new(),
            load: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Whether nothing of it is in use or fresh: the entry of a server no longer asked.
    fn is_stale(&self, now: Instant) -> bool {
        self.load.load(Ordering::Relaxed) == 0
            && self.tcp.iter().all(|link| !link.is_open())
            && self.udp.iter().flatten().all(|link| !link.takes_more(now))
    }

    fn retire_all(&self) {
        self.udp.iter().flatten().for_each(|link| link.waiters.retire());
        self.tcp.iter().for_each(|link| link.retire());
    }
}

impl std::fmt::Debug for Sockets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sockets")
            .field("servers", &lock(&self.servers).len())
            .field("owners", &self.owners)
            .finish()
    }
}

impl Sockets {
    /// The most file descriptors one set holds for one server: its UDP sockets, as many again
    /// retired ones still waiting for their last answers, and its TCP connections. What the
    /// daemon keeps free for each set and server when it sizes its TCP connection limit.
    pub const DESCRIPTORS_PER_SERVER: usize = 2 * udp::PORTS + tcp::MAX_LINKS;

    /// A set with no sockets yet (each opens on the first query that needs it), for one of
    /// `owners` owners that share the configured in-flight cap.
    pub fn new(owners: usize) -> Sockets {
        Sockets {
            servers: Mutex::new(Vec::new()),
            owners: owners.max(1),
        }
    }

    /// The UDP sockets open now, to every server: for tests that hold them, so that the kernel
    /// cannot hand a replaced socket's port number to a later one while they count by port.
    #[cfg(test)]
    pub(super) fn udp_links(&self) -> Vec<Arc<udp::Link>> {
        lock(&self.servers)
            .iter()
            .flat_map(|s| s.udp.iter().flatten().cloned())
            .collect()
    }

    /// This owner's share of a cap of `max_inflight` queries to one server.
    fn share(&self, max_inflight: usize) -> usize {
        max_inflight.div_ceil(self.owners).max(1)
    }

    /// Sends `query` over UDP to `server` and waits for its answer until `deadline`; see
    /// [`udp::Link::exchange`]. Its question section (`question_len` bytes after the header) is
    /// what the answer must repeat, in the same case when `exact_case`. Busy when this owner has its share of
    /// `max_inflight` queries in flight to the server.
    #[allow(clippy::too_many_arguments)] // one exchange's facts, all needed, none related
    pub(super) async fn udp(
        &self,
        server: &Arc<Server>,
        query: &mut [u8],
        question_len: usize,
        exact_case: bool,
        limits: TtlLimits,
        max_inflight: usize,
        deadline: Instant,
    ) -> Result<CachedResponse, AttemptError> {
        let link = self.udp_link(server, max_inflight, Instant::now())?;
        link.exchange(query, question_len, exact_case, limits, deadline).await
    }

    /// A UDP socket to `server` for one more query: one of [`udp::PORTS`] at random, replaced
    /// by a fresh one (a new port) if it is due. Opening one also retires the sockets of
    /// servers no longer asked.
    fn udp_link(
        &self,
        server: &Arc<Server>,
        max_inflight: usize,
        now: Instant,
    ) -> Result<Arc<udp::Link>, AttemptError> {
        let mut servers = lock(&self.servers);
        let index = match servers.iter().position(|s| s.addr == server.addr) {
            Some(index) => index,
            None => {
                servers.push(ServerSockets::new(server.addr));
                servers.len() - 1
            }
        };
        let entry = &mut servers[index];
        if entry.load.load(Ordering::Relaxed) >= self.share(max_inflight) {
            return Err(AttemptError::Busy);
        }
        let slot = &mut entry.udp[usize::from(rand::random::<u8>()) % udp::PORTS];
        if let Some(link) = slot.as_ref().filter(|link| link.takes_more(now)) {
            return Ok(Arc::clone(link));
        }
        let link = udp::Link::open(server, Arc::clone(&entry.load), now)?;
        if let Some(old) = slot.replace(Arc::clone(&link)) {
            old.waiters.retire();
        }
        servers.retain(|s| {
            let stale = s.addr != server.addr && s.is_stale(now);
            if stale {
                s.retire_all();
            }
            !stale
        });
        Ok(link)
    }

    /// Sends `query` over TCP to `server` and waits for its answer until `deadline`, on an open
    /// connection if one has room (a new one otherwise). A query that fails on a connection
    /// that was already open (the server closed it as it went out) is tried once more on a new
    /// one.
    pub(super) async fn tcp(
        &self,
        server: &Arc<Server>,
        query: &mut [u8],
        question_len: usize,
        limits: TtlLimits,
        max_inflight: usize,
        deadline: Instant,
    ) -> Result<CachedResponse, AttemptError> {
        let reused = self.tcp_link(server, max_inflight)?;
        if let Some(link) = reused {
            match link.exchange(query, question_len, limits, deadline).await {
                Err(AttemptError::Network(_)) if Instant::now() < deadline => {}
                result => return result,
            }
        }
        let (link, kept) = self.tcp_connect(server, deadline).await?;
        let result = link.exchange(query, question_len, limits, deadline).await;
        if !kept {
            // Retired only now: retired and empty before the query, it would have closed.
            link.retire();
        }
        result
    }

    /// An open TCP connection to `server` with room for one more query, if there is one.
    fn tcp_link(&self, server: &Server, max_inflight: usize) -> Result<Option<Arc<tcp::Link>>, AttemptError> {
        let mut servers = lock(&self.servers);
        let Some(entry) = servers.iter_mut().find(|s| s.addr == server.addr) else {
            return Ok(None);
        };
        if entry.load.load(Ordering::Relaxed) >= self.share(max_inflight) {
            return Err(AttemptError::Busy);
        }
        entry.tcp.retain(|link| link.is_open());
        let least = entry.tcp.iter().min_by_key(|link| link.waiting());
        Ok(least
            .filter(|link| link.waiting() < tcp::PIPELINE || entry.tcp.len() >= tcp::MAX_LINKS)
            .cloned())
    }

    /// Opens a new TCP connection to `server` (before `deadline`) and keeps it for the queries
    /// that follow if there is room (true), else it is for one query only (false).
    async fn tcp_connect(
        &self,
        server: &Arc<Server>,
        deadline: Instant,
    ) -> Result<(Arc<tcp::Link>, bool), AttemptError> {
        let load = {
            let mut servers = lock(&self.servers);
            match servers.iter().find(|s| s.addr == server.addr) {
                Some(entry) => Arc::clone(&entry.load),
                None => {
                    let entry = ServerSockets::new(server.addr);
                    let load = Arc::clone(&entry.load);
                    servers.push(entry);
                    load
                }
            }
        };
        let link = tcp::Link::connect(server, load, deadline).await?;
        let mut servers = lock(&self.servers);
        let kept = match servers.iter_mut().find(|s| s.addr == server.addr) {
            Some(entry) if entry.tcp.len() < tcp::MAX_LINKS => {
                entry.tcp.push(Arc::clone(&link));
                true
            }
            _ => false,
        };
        Ok((link, kept))
    }
}

impl Drop for Sockets {
    fn drop(&mut self) {
        for server in lock(&self.servers).drain(..) {
            server.retire_all();
        }
    }
}
