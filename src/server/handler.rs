//! The query pipeline every transport shares: a query's bytes in, the answer's bytes out.
//!
//! [`Handler::answer_fast`] does everything that needs no waiting (parse, ACL, policy, block
//! answer, cache hit) synchronously into the caller's buffer, so the UDP loop answers those
//! without a task or an allocation. Only a cache miss comes back as [`Step::Forward`], which the
//! transport runs with [`Handler::answer_forward`] where it can wait.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::answer::{self, ede};
use crate::cache::{CacheKey, CacheKeyRef, CachedResponse, FrontCache, PacketCache};
use crate::egress::{EgressQueue, EgressSender};
use crate::engine::{self, Hit, Verdict};
use crate::hitlog::{HitLog, HitRecord, HitSender};
use crate::metrics::{self as names, Outcome};
use crate::packet::{self, OPTION_CLIENT_SUBNET, ParseError, QName, Query};
use crate::policy::Mode;
use crate::policy::{ListId, PolicyId};
use crate::proxy_protocol;
use crate::ratelimit::{Limit, RateLimiter};
use crate::state::{Snapshot, State};
use crate::upstream::{ForwardError, Transport};

use super::relay::{self, Failure};
use crate::wire::{CLASS_CH, rcode, rtype};

/// How many [`Protocol`]s there are: the length of the per-protocol metric arrays.
const PROTOCOLS: usize = 4;

/// The transport a query came over: it sets the answer size limit and the metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Datagrams: answers above the client's limit are truncated (TC).
    Udp,
    /// Streams: answers up to 64 KiB.
    Tcp,
    /// DNS over TLS (RFC 7858): a TCP stream inside TLS, answers up to 64 KiB.
    Dot,
    /// DNS over HTTPS (RFC 8484): one message per HTTP exchange, answers up to 64 KiB.
    Doh,
}

impl Protocol {
    /// The `protocol` label and log field.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            Protocol::Dot => "dot",
            Protocol::Doh => "doh",
        }
    }

    fn index(self) -> usize {
        match self {
            Protocol::Udp => 0,
            Protocol::Tcp => 1,
            Protocol::Dot => 2,
            Protocol::Doh => 3,
        }
    }

    /// Every protocol, in [`Protocol::index`] order: the per-protocol metric arrays.
    const ALL: [Protocol; PROTOCOLS] = [Protocol::Udp, Protocol::Tcp, Protocol::Dot, Protocol::Doh];
}

/// The time, read once per batch of packets rather than once or twice per packet: policy
/// windows need the wall clock, cache lifetimes a monotonic one.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    instant: Instant,
    wall: SystemTime,
    /// `wall` in whole seconds since the Unix epoch, as policy windows compare it: worked out
    /// here once rather than for every packet of the batch.
    unix: i64,
}

impl Clock {
    /// Both clocks, now.
    pub fn now() -> Clock {
        let wall = SystemTime::now();
        Clock {
            instant: Instant::now(),
            wall,
            unix: wall
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        }
    }

    /// The wall clock at `unix` seconds (the monotonic one now): for `explain --at`, which asks
    /// what policies do at another moment.
    pub fn at(unix: i64) -> Clock {
        let wall = u64::try_from(unix).map_or(std::time::UNIX_EPOCH, |s| {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(s)
        });
        Clock {
            instant: Instant::now(),
            wall,
            unix,
        }
    }

    /// The wall clock in Unix seconds, as policy windows compare it.
    pub fn unix(&self) -> i64 {
        self.unix
    }
}

/// What the transport must do after [`Handler::answer_fast`].
pub enum Step {
    /// Send the buffer: it holds the answer.
    Reply,
    /// Send nothing (not a query: too short, or a response).
    Drop,
    /// A cache miss: run [`Handler::answer_forward`] with this, then send the buffer.
    Forward(Box<Pending>),
}

/// What forwarding a query came to; [`Handler::reply`] turns it into the answer of each client
/// that asked (the one that forwarded it, and those that asked the same meanwhile).
pub enum Resolution {
    /// An upstream's answer (a SERVFAIL or REFUSED one included, if no server answered better).
    Answer(Arc<CachedResponse>),
    /// No upstream answered, and the cache had an expired answer it may serve stale.
    Stale(Arc<CachedResponse>),
    /// No answer: the client gets SERVFAIL.
    Failed(ForwardError),
}

/// Where a resolved answer comes from, which decides its TTLs and its outcome label.
#[derive(Clone, Copy)]
enum Served {
    /// The cache, live: TTLs counted down.
    Cached,
    /// An upstream, just now.
    Fresh,
    /// The cache, expired, because no upstream answered: TTLs of 30 s.
    Stale,
}

/// A query that must go upstream, with all it was decided with.
pub struct Pending {
    snapshot: Arc<Snapshot>,
    packet: Vec<u8>,
    query: Query,
    client: IpAddr,
    protocol: Protocol,
    key: CacheKey,
    /// The client's policy, when the answer's CNAME chain must be checked against it.
    inspect: Option<PolicyId>,
    /// Set when an audit-mode policy matched the name itself (already logged).
    audited: bool,
}

impl Pending {
    /// The cache key of its question: queries with equal keys get the same upstream answer.
    pub(crate) fn key(&self) -> &CacheKey {
        &self.key
    }
}

/// One query and what it is read against, as the steps after the decision need it.
struct QueryCtx<'a> {
    now: Clock,
    snapshot: &'a Arc<Snapshot>,
    packet: &'a [u8],
    query: &'a Query,
    client: IpAddr,
    protocol: Protocol,
}

/// What one worker keeps to itself between packets, so that the packet path writes to nothing
/// another core reads: its counts, added to the shared metrics by [`Handler::flush`] once per
/// batch, and (a long-lived worker, see [`Handler::worker`]) its front cache and hit log queue.
#[derive(Default)]
pub struct Worker {
    tally: Tally,
    front: Option<FrontCache>,
    /// Its own way into the egress companion's queue, when some policy publishes its blocks.
    egress: Option<EgressSender>,
}

/// Counts kept by one worker and added to the shared metrics now and then (after each receive
/// batch), so that the packet path touches no counter shared across cores.
#[derive(Default)]
struct Tally {
    counts: Counts,
    blocks: BlockTally,
    /// The worker's own hit log queue; None: the shared one.
    hits: Option<HitSender>,
    /// Queries over a rate limit so far: every `slip`-th gets a truncated answer. Kept across
    /// flushes.
    over_limit: u32,
}

/// The plain counts of a [`Tally`], zeroed as a whole at each flush.
#[derive(Default)]
struct Counts {
    queries: [[u64; Outcome::ALL.len()]; PROTOCOLS],
    dropped: [u64; PROTOCOLS],
    cache_hits: u64,
    cache_misses: u64,
    /// Queries over a rate limit: [client, identical] x [dropped, truncated].
    limited: [[u64; 2]; 2],
    /// Clients stated by trusted relays: [PROXY header, Client Subnet].
    relayed: [u64; 2],
    /// PROXY headers and Client Subnet options from untrusted senders, ignored: as `relayed`.
    relay_ignored: [u64; 2],
    /// PROXY headers from trusted relays that did not read, by [`Failure::index`].
    header_errors: [u64; Failure::COUNT],
}

impl Tally {
    fn query(&mut self, protocol: Protocol, outcome: Outcome) {
        if let Some(n) = self.counts.queries[protocol.index()].get_mut(outcome as usize) {
            *n += 1;
        }
    }
}

/// Most (policy, list) pairs one worker counts blocks for between two flushes; a block of
/// another pair goes to its counter at once.
const BLOCK_PAIRS: usize = 8;

/// Blocks a worker counted since the last flush, by (policy, list), for the snapshot that decided
/// them: its policies own the counters (`sinkhole_blocks_total{policy, list, mode}`). A counter is
/// shared by every worker, and one atomic add per block made blocks cost more on two cores than
/// on one (`cargo bench --bench hot_path -- answer_fast_threads`).
#[derive(Default)]
struct BlockTally {
    /// The snapshot the counts belong to; cloned once per batch, not per block.
    snapshot: Option<Arc<Snapshot>>,
    counts: [(PolicyId, ListId, Mode, u64); BLOCK_PAIRS],
    len: usize,
}

impl BlockTally {
    /// Counts one block by `list` of `policy` in `mode`, decided in `snapshot`.
    fn add(&mut self, snapshot: &Arc<Snapshot>, policy: PolicyId, list: ListId, mode: Mode) {
        if !self.snapshot.as_ref().is_some_and(|s| Arc::ptr_eq(s, snapshot)) {
            self.flush();
            self.snapshot = Some(Arc::clone(snapshot));
        }
        let counts = &mut self.counts[..self.len];
        if let Some(entry) = counts
            .iter_mut()
            .find(|(p, l, m, _)| (*p, *l, *m) == (policy, list, mode))
        {
            entry.3 += 1;
        } else if self.len < BLOCK_PAIRS {
            self.counts[self.len] = (policy, list, mode, 1);
            self.len += 1;
        } else {
            increment_block_counter(snapshot, policy, list, mode, 1);
        }
    }

    /// Adds the counts to their counters and lets go of the snapshot.
    fn flush(&mut self) {
        if let Some(snapshot) = self.snapshot.take() {
            for &(policy, list, mode, n) in &self.counts[..self.len] {
                increment_block_counter(&snapshot, policy, list, mode, n);
            }
        }
        self.len = 0;
    }
}

/// Adds `n` to the block counter of `list` in `policy` for `mode` (a policy with `phases` has
/// one per mode it takes).
fn increment_block_counter(snapshot: &Snapshot, policy: PolicyId, list: ListId, mode: Mode, n: u64) {
    let policy = snapshot.rules.policies.get(policy);
    if let Some((_, counters)) = policy.block.iter().find(|(l, _)| *l == list)
        && let Some(Some(counter)) = counters.get(mode.index())
    {
        counter.increment(n);
    }
}

/// The longest answer `query` may get over `protocol`: over UDP the client's EDNS size, but never
/// more than we send over UDP to anyone (a forged source address must not draw a large answer at
/// its victim); over the streams a whole DNS message.
fn max_answer_len(protocol: Protocol, query: &Query, snapshot: &Snapshot) -> usize {
    match protocol {
        Protocol::Udp => query
            .max_udp_len()
            .min(usize::from(*snapshot.config.server.max_udp_payload.get_ref())),
        Protocol::Tcp | Protocol::Dot | Protocol::Doh => usize::from(u16::MAX),
    }
}

/// The shared metric handles a [`Tally`] is flushed into.
struct Counters {
    /// `sinkhole_queries_total`, by protocol then outcome.
    queries: [[metrics::Counter; Outcome::ALL.len()]; PROTOCOLS],
    /// `sinkhole_dropped_packets_total{reason="unanswerable"}`, by protocol.
    dropped: [metrics::Counter; PROTOCOLS],
    cache_hits: metrics::Counter,
    cache_misses: metrics::Counter,
    /// `sinkhole_ratelimited_total`, as [`Counts::limited`].
    limited: [[metrics::Counter; 2]; 2],
    /// `sinkhole_relayed_queries_total{source}`, as [`Counts::relayed`].
    relayed: [metrics::Counter; 2],
    /// `sinkhole_relay_ignored_total{source}`, as [`Counts::relay_ignored`].
    relay_ignored: [metrics::Counter; 2],
    /// `sinkhole_proxy_header_errors_total{reason}`, as [`Counts::header_errors`].
    header_errors: [metrics::Counter; Failure::COUNT],
}

/// The pipeline, shared by all workers of all transports.
pub struct Handler {
    state: Arc<State>,
    cache: Arc<PacketCache>,
    hitlog: HitLog,
    counters: Counters,
    /// The rate limit buckets of every client.
    limiter: RateLimiter,
    /// The egress companion's queue, when it runs ([`Handler::with_egress`]).
    egress: Option<EgressQueue>,
}

impl Handler {
    /// A pipeline reading `state`, caching in `cache`, logging hits to `hitlog`.
    pub fn new(state: Arc<State>, cache: Arc<PacketCache>, hitlog: HitLog) -> Handler {
        let per_protocol = |p: Protocol| {
            Outcome::ALL.map(|o| metrics::counter!(names::QUERIES, "protocol" => p.as_str(), "outcome" => o.as_str()))
        };
        let dropped =
            |p: Protocol| metrics::counter!(names::DROPPED, "protocol" => p.as_str(), "reason" => "unanswerable");
        Handler {
            state,
            cache,
            hitlog,
            counters: Counters {
                queries: Protocol::ALL.map(per_protocol),
                dropped: Protocol::ALL.map(dropped),
                cache_hits: metrics::counter!(names::CACHE_HITS),
                cache_misses: metrics::counter!(names::CACHE_MISSES),
                limited: ["client", "identical"].map(|limit| {
                    ["dropped", "truncated"]
                        .map(|action| metrics::counter!(names::RATELIMITED, "limit" => limit, "action" => action))
                }),
                relayed: relay::SOURCES.map(|source| metrics::counter!(names::RELAYED_QUERIES, "source" => source)),
                relay_ignored: relay::SOURCES.map(|source| metrics::counter!(names::RELAY_IGNORED, "source" => source)),
                header_errors: Failure::REASONS
                    .map(|reason| metrics::counter!(names::PROXY_HEADER_ERRORS, "reason" => reason)),
            },
            limiter: RateLimiter::new(),
            egress: None,
        }
    }

    /// Offers the names that policies with `egress = true` block (in enforce mode) to the egress
    /// companion's queue.
    pub fn with_egress(mut self, egress: EgressQueue) -> Handler {
        self.egress = Some(egress);
        self
    }

    /// The state of one of `workers` long-lived workers (UDP worker threads): with a front cache
    /// and a hit log queue of its own. Short-lived ones (a TCP query) take `Worker::default()`,
    /// with neither.
    pub fn worker(&self, workers: usize) -> Worker {
        Worker {
            tally: Tally {
                hits: self.hitlog.sender(workers),
                ..Tally::default()
            },
            front: Some(FrontCache::new()),
            egress: self.egress.as_ref().map(EgressQueue::sender),
        }
    }

    /// Adds a worker's counts to the shared metrics and zeroes them.
    pub fn flush(&self, worker: &mut Worker) {
        self.flush_tally(&mut worker.tally);
    }

    fn flush_tally(&self, tally: &mut Tally) {
        let c = &self.counters;
        let counts = std::mem::take(&mut tally.counts);
        for (counters, counts) in c.queries.iter().zip(&counts.queries) {
            for (counter, &n) in counters.iter().zip(counts) {
                if n > 0 {
                    counter.increment(n);
                }
            }
        }
        for (counter, &n) in c.dropped.iter().zip(&counts.dropped) {
            if n > 0 {
                counter.increment(n);
            }
        }
        if counts.cache_hits > 0 {
            c.cache_hits.increment(counts.cache_hits);
        }
        if counts.cache_misses > 0 {
            c.cache_misses.increment(counts.cache_misses);
        }
        for (counters, counts) in c.limited.iter().zip(&counts.limited) {
            for (counter, &n) in counters.iter().zip(counts) {
                if n > 0 {
                    counter.increment(n);
                }
            }
        }
        let relay_counts = (counts.relayed.iter().chain(&counts.relay_ignored)).chain(&counts.header_errors);
        let relay_counters = (c.relayed.iter().chain(&c.relay_ignored)).chain(&c.header_errors);
        for (counter, &n) in relay_counters.zip(relay_counts) {
            if n > 0 {
                counter.increment(n);
            }
        }
        tally.blocks.flush();
    }

    /// Whether `client` may query at all (`server.allow`), as the live config says: what a TCP
    /// listener checks before it gives a connection a slot.
    pub(crate) fn client_allowed(&self, client: IpAddr) -> bool {
        self.state.load().rules.clients.classify(client).allowed
    }

    /// Whether `sender` is one of `server.trusted_relays`, as the live config says: whether a
    /// PROXY header or Client Subnet option from it states the client.
    pub(crate) fn trusted_relay(&self, sender: IpAddr) -> bool {
        relay::is_trusted(&self.state.load().config.server.trusted_relays, sender)
    }

    /// The DNS bytes of a datagram from `sender` and the client they are for: past a PROXY
    /// header, and its stated client, when `sender` is a trusted relay; the datagram as it is
    /// from anyone else (counted if it starts with a header: it then fails as DNS). None: a
    /// trusted relay's header did not read, and the datagram is dropped (counted).
    /// The common case, no header, costs one comparison of a few bytes.
    pub fn unwrap_datagram<'a>(
        &self,
        datagram: &'a [u8],
        sender: IpAddr,
        worker: &mut Worker,
    ) -> Option<(&'a [u8], IpAddr)> {
        if !proxy_protocol::starts_with_signature(datagram) {
            return Some((datagram, sender));
        }
        let counts = &mut worker.tally.counts;
        if !self.trusted_relay(sender) {
            counts.relay_ignored[relay::PROXY] += 1;
            return Some((datagram, sender));
        }
        match proxy_protocol::parse(datagram) {
            Ok(Some(header)) => {
                let dns = datagram.get(header.len..).unwrap_or_default();
                let client = match header.source {
                    Some(source) => {
                        counts.relayed[relay::PROXY] += 1;
                        source.ip().to_canonical()
                    }
                    None => sender,
                };
                Some((dns, client))
            }
            // Not a full signature: DNS that happens to start like one (it will not parse).
            Ok(None) => Some((datagram, sender)),
            Err(e) => {
                counts.header_errors[Failure::Header(e).index()] += 1;
                None
            }
        }
    }

    /// Counts a PROXY header read from a stream (see [`relay::stream_client`]) in `worker`.
    pub(crate) fn count_stream_header(&self, stated: Result<bool, Failure>, worker: &mut Worker) {
        let counts = &mut worker.tally.counts;
        match stated {
            Ok(true) => counts.relayed[relay::PROXY] += 1,
            Ok(false) => {}
            Err(failure) => counts.header_errors[failure.index()] += 1,
        }
    }

    /// The packet cache.
    pub fn cache(&self) -> &Arc<PacketCache> {
        &self.cache
    }

    /// Answers what can be answered without waiting; see [`Step`]. Counts go to the worker's
    /// tally, cache hits come from its front cache if it has one; `now` is the time of the batch
    /// the packet came in.
    pub fn answer_fast(
        &self,
        packet: &[u8],
        client: IpAddr,
        protocol: Protocol,
        now: Clock,
        out: &mut Vec<u8>,
        worker: &mut Worker,
    ) -> Step {
        let Worker { tally, front, egress } = worker;
        let snapshot = self.state.load();
        let parsed = packet::parse(packet);
        // A Client Subnet option states the client, if a trusted relay sent it (or a client
        // that a PROXY header stated is itself one: a chain of relays); from anyone else it
        // changes nothing, or a client could pick its own policy.
        let subnet = parsed.as_ref().ok().and_then(|q| q.edns?.client_subnet);
        let client = match subnet {
            Some(subnet) if relay::is_trusted(&snapshot.config.server.trusted_relays, client) => {
                tally.counts.relayed[relay::ECS] += 1;
                subnet.address
            }
            Some(_) => {
                tally.counts.relay_ignored[relay::ECS] += 1;
                client
            }
            None => client,
        };
        let class = snapshot.rules.clients.classify(client);
        if protocol == Protocol::Udp && !class.exempt {
            let question = parsed.as_ref().ok().map(|q| (q.name.as_bytes(), q.qtype));
            let limit = self.limiter.check(client, question, now.instant, &snapshot.ratelimit);
            if limit != Limit::Pass {
                return self.over_limit(limit, packet, parsed.ok().as_ref(), snapshot.ratelimit.slip, out, tally);
            }
        }
        let query = match parsed {
            Ok(query) => query,
            Err(e) if !e.answerable() => {
                tally.counts.dropped[protocol.index()] += 1;
                return Step::Drop;
            }
            Err(e) => {
                let (code, outcome) = match e {
                    ParseError::Opcode(_) => (rcode::NOTIMP, Outcome::Notimp),
                    _ => (rcode::FORMERR, Outcome::Formerr),
                };
                answer::write_error(packet, None, code, None, out);
                tally.query(protocol, outcome);
                return Step::Reply;
            }
        };
        // DDR before any policy: a client that may use the resolver at all may learn how to reach
        // it encrypted, whatever its policy blocks; `resolver.arpa` is never forwarded.
        if class.allowed
            && let Some(reply) = snapshot.ddr.reply_for(&query)
        {
            snapshot.ddr.write(packet, &query, reply, out);
            if out.len() > max_answer_len(protocol, &query, &snapshot) {
                answer::write_truncated(packet, &query, out);
            }
            tally.query(protocol, Outcome::Minimal);
            return Step::Reply;
        }
        let q = QueryCtx {
            now,
            snapshot: &snapshot,
            packet,
            query: &query,
            client,
            protocol,
        };
        let verdict = engine::decide_for(&snapshot.rules, class, query.name.as_bytes(), now.unix);
        let (inspect, audited) = match verdict {
            Verdict::Refused => {
                let ede = Some((ede::PROHIBITED, "client not allowed"));
                answer::write_error(packet, Some(&query), rcode::REFUSED, ede, out);
                tally.query(protocol, Outcome::Refused);
                return Step::Reply;
            }
            Verdict::Blocked(hit) if hit.mode == Mode::Enforce => {
                self.log_hit(&q, hit, None, tally);
                write_block(&snapshot, hit, packet, &query, out);
                tally.query(protocol, Outcome::Blocked);
                if let Some(queue) = &self.egress
                    && publishes(&snapshot, hit.policy)
                {
                    match egress {
                        Some(sender) => sender.offer(&query.name, query.qtype, now.instant),
                        None => queue.offer(&query.name, query.qtype),
                    }
                }
                return Step::Reply;
            }
            Verdict::Blocked(hit) => {
                self.log_hit(&q, hit, None, tally);
                (None, true)
            }
            Verdict::NotReady(_) => {
                // Fail closed: a list the policy blocks never loaded, so forwarding could let
                // through what it would block. Static text: this path allocates nothing.
                let ede = Some((ede::NOT_READY, "a blocklist of this network has not loaded yet"));
                answer::write_error(packet, Some(&query), rcode::SERVFAIL, ede, out);
                tally.query(protocol, Outcome::Servfail);
                return Step::Reply;
            }
            Verdict::Allowed { inspect } => (inspect, false),
        };
        if query.qclass == CLASS_CH {
            // Never forwarded: `version.bind` and `hostname.bind` would tell every client the
            // upstream's software and host name. Answered only with what the config says.
            let server = &snapshot.config.server;
            match chaos_text(query.name.as_bytes(), &server.identity, &server.version) {
                Some(text) => {
                    answer::write_chaos_txt(packet, &query, text, out);
                    tally.query(protocol, Outcome::Minimal);
                }
                None => {
                    let ede = Some((ede::NOT_SUPPORTED, "CHAOS queries are not answered"));
                    answer::write_error(packet, Some(&query), rcode::REFUSED, ede, out);
                    tally.query(protocol, Outcome::Refused);
                }
            }
            return Step::Reply;
        }
        if query.qtype == rtype::AXFR || query.qtype == rtype::IXFR {
            let ede = Some((ede::NOT_SUPPORTED, "zone transfers are not served"));
            answer::write_error(packet, Some(&query), rcode::REFUSED, ede, out);
            tally.query(protocol, Outcome::Refused);
            return Step::Reply;
        }
        if query.qtype == rtype::ANY {
            answer::write_any_minimal(packet, &query, out);
            tally.query(protocol, if audited { Outcome::Audited } else { Outcome::Minimal });
            return Step::Reply;
        }
        let key = CacheKeyRef::of(&query);
        // The worker's front cache first (nothing shared touched), then the shared cache.
        let front_hit = front.as_ref().and_then(|front| front.get(&key, now.instant));
        let shared_hit = match front_hit {
            Some(_) => None,
            None => self.cache.get(&key, now.instant),
        };
        let cached = front_hit.or(shared_hit.as_deref());
        tally.counts.cache_hits += u64::from(cached.is_some());
        tally.counts.cache_misses += u64::from(cached.is_none());
        if let Some(cached) = cached {
            let outcome = self.finish(&q, inspect, cached, Served::Cached, out, tally);
            let outcome = if audited { Outcome::Audited } else { outcome };
            tally.query(protocol, outcome);
            if let (Some(front), Some(response)) = (front.as_mut(), shared_hit) {
                front.insert(&key, response);
            }
            return Step::Reply;
        }
        let mut packet = packet.to_vec();
        if subnet.is_some() && !snapshot.config.upstream.forward_client_subnet {
            // The answer is cached for every client: the upstream must not tailor it to one
            // subnet (`upstream.forward_client_subnet`).
            packet::strip_edns_option(&mut packet, OPTION_CLIENT_SUBNET);
        }
        Step::Forward(Box::new(Pending {
            snapshot: arc_swap::Guard::into_inner(snapshot),
            packet,
            key: key.to_owned(),
            query,
            client,
            protocol,
            inspect,
            audited,
        }))
    }

    /// What a UDP query over a rate limit gets: every `slip`-th an empty truncated answer (a
    /// real client retries over TCP), the rest nothing. Counted by limit and action.
    fn over_limit(
        &self,
        limit: Limit,
        packet: &[u8],
        query: Option<&Query>,
        slip: u32,
        out: &mut Vec<u8>,
        tally: &mut Tally,
    ) -> Step {
        let counts = &mut tally.counts.limited[usize::from(limit == Limit::Identical)];
        tally.over_limit = tally.over_limit.wrapping_add(1);
        if let Some(query) = query
            && slip > 0
            && tally.over_limit.is_multiple_of(slip)
        {
            answer::write_truncated(packet, query, out);
            counts[1] += 1;
            return Step::Reply;
        }
        counts[0] += 1;
        Step::Drop
    }

    /// Forwards a cache miss over `transport` (the worker's UDP sockets for a UDP client, TCP
    /// for a TCP one: its answer may exceed any UDP size) and writes the answer for its client
    /// into `out`: [`Handler::resolve`], then [`Handler::reply`].
    pub(crate) async fn answer_forward(&self, pending: Box<Pending>, transport: Transport<'_>, out: &mut Vec<u8>) {
        let resolution = self.resolve(&pending, transport).await;
        self.reply(&pending, &resolution, out);
    }

    /// Forwards a cache miss and caches the answer. When no upstream answers, an expired answer
    /// still within `cache.serve_stale` is the resolution (RFC 8767).
    pub(crate) async fn resolve(&self, pending: &Pending, transport: Transport<'_>) -> Resolution {
        let snapshot = &pending.snapshot;
        match snapshot
            .upstream
            .forward(&pending.packet, transport, &snapshot.ttl_limits)
            .await
        {
            Ok(response) => {
                let response = Arc::new(response);
                self.cache.insert(pending.key.clone(), Arc::clone(&response));
                Resolution::Answer(response)
            }
            Err(error) => {
                tracing::debug!(%error, "forwarding failed");
                match self.cache.get_stale(&pending.key.borrowed(), Instant::now()) {
                    Some(stale) => Resolution::Stale(stale),
                    None => Resolution::Failed(error),
                }
            }
        }
    }

    /// Writes the answer to `pending`'s client from what forwarding it (or a query for the same
    /// question) came to: the answer (or the block answer, if its CNAME chain leads into a name
    /// the client's policy blocks), or SERVFAIL with an Extended DNS Error saying why. Counts it.
    pub fn reply(&self, pending: &Pending, resolution: &Resolution, out: &mut Vec<u8>) {
        let q = QueryCtx {
            now: Clock::now(),
            snapshot: &pending.snapshot,
            packet: &pending.packet,
            query: &pending.query,
            client: pending.client,
            protocol: pending.protocol,
        };
        let mut tally = Tally::default();
        let outcome = match resolution {
            Resolution::Answer(response) => self.finish(&q, pending.inspect, response, Served::Fresh, out, &mut tally),
            Resolution::Stale(response) => self.finish(&q, pending.inspect, response, Served::Stale, out, &mut tally),
            Resolution::Failed(error) => {
                let ede = match error {
                    ForwardError::Busy => (ede::OTHER, "upstream servers busy"),
                    _ => (ede::NO_REACHABLE_AUTHORITY, "no upstream answered"),
                };
                answer::write_error(&pending.packet, Some(&pending.query), rcode::SERVFAIL, Some(ede), out);
                Outcome::Servfail
            }
        };
        tally.query(
            pending.protocol,
            if pending.audited { Outcome::Audited } else { outcome },
        );
        self.flush_tally(&mut tally);
    }

    /// Sends a resolved answer (`served`: from the cache or an upstream), unless its CNAME chain
    /// leads into a name the client's policy blocks: then the block answer (enforce) or the
    /// answer and a log line (audit).
    fn finish(
        &self,
        q: &QueryCtx<'_>,
        inspect: Option<PolicyId>,
        response: &CachedResponse,
        served: Served,
        out: &mut Vec<u8>,
        tally: &mut Tally,
    ) -> Outcome {
        let chain_hit = inspect.and_then(|policy| {
            let mut matched = None;
            let hit = engine::check_chain(
                &q.snapshot.rules,
                policy,
                q.now.unix,
                response.chain().inspect(|name| matched = Some(*name)),
            );
            hit.map(|hit| (hit, matched.and_then(QName::from_dotted), None))
        });
        // Then the answer's addresses, for a policy whose lists have address ranges (a flag
        // read first: nothing more for the others), at no more than one binary search per
        // A/AAAA record and list.
        let chain_hit = chain_hit.or_else(|| {
            let policy = inspect?;
            if !response.has_addresses() {
                return None;
            }
            engine::check_addresses(&q.snapshot.rules, policy, q.now.unix, response.addresses())
                .map(|(hit, address)| (hit, None, Some(address)))
        });
        let audited = chain_hit.is_some();
        if let Some((hit, cname, address)) = chain_hit {
            self.log_hit_at(q, hit, cname, address, tally);
            if hit.mode == Mode::Enforce {
                if let Some(queue) = &self.egress
                    && publishes(q.snapshot, hit.policy)
                {
                    // The name asked: resolved, its chain leads to the blocked name's addresses.
                    queue.offer(&q.query.name, q.query.qtype);
                }
                write_block(q.snapshot, hit, q.packet, q.query, out);
                return Outcome::Blocked;
            }
        }
        let question = q.packet.get(q.query.question.clone()).unwrap_or_default();
        let max_len = max_answer_len(q.protocol, q.query, q.snapshot);
        let (id, rd) = (q.query.id, q.query.rd());
        let outcome = match served {
            Served::Cached => {
                response.write_to(id, rd, question, q.now.instant, max_len, out);
                Outcome::Cached
            }
            Served::Fresh => {
                response.write_to(id, rd, question, q.now.instant, max_len, out);
                Outcome::Forwarded
            }
            Served::Stale => {
                response.write_stale_to(id, rd, question, max_len, out);
                Outcome::Stale
            }
        };
        if audited { Outcome::Audited } else { outcome }
    }

    fn log_hit(&self, q: &QueryCtx<'_>, hit: Hit, cname: Option<QName>, tally: &mut Tally) {
        self.log_hit_at(q, hit, cname, None, tally);
    }

    /// [`Handler::log_hit`] for a hit on an answer's `address` (answer-address rules).
    fn log_hit_at(&self, q: &QueryCtx<'_>, hit: Hit, cname: Option<QName>, address: Option<IpAddr>, tally: &mut Tally) {
        tally.blocks.add(q.snapshot, hit.policy, hit.list, hit.mode);
        if !self.hitlog.is_enabled() {
            return;
        }
        let record = HitRecord {
            time: q.now.wall,
            client: q.client,
            hit,
            qname: q.query.name.clone(),
            qtype: q.query.qtype,
            cname,
            address,
            protocol: q.protocol.as_str(),
        };
        match &mut tally.hits {
            Some(sender) => sender.record(q.snapshot, record),
            None => self.hitlog.record(q.snapshot, record),
        }
    }
}

/// Whether `policy` publishes the names it blocks to the egress companion (`egress = true`).
fn publishes(snapshot: &Snapshot, policy: PolicyId) -> bool {
    snapshot.rules.policies.get(policy).egress
}

/// Writes the block answer of `hit`: its policy's, or the matched rule's own where its list gave
/// it one (an RPZ list's NXDOMAIN, NODATA or redirect). A plain list's rule has none, found by
/// one length check.
fn write_block(snapshot: &Snapshot, hit: Hit, packet: &[u8], query: &Query, out: &mut Vec<u8>) {
    let action = snapshot.rules.lists[hit.list].set.action(hit.rule);
    snapshot
        .rules
        .policies
        .get(hit.policy)
        .write_block_answer_for(action, packet, query, hit.apex_len, out);
}

/// What a CHAOS-class query for `name` (lowercased) is answered with: `identity` for
/// `id.server` and `hostname.bind`, `version` for `version.bind` and `version.server` (RFC 4892,
/// BIND's names); None (REFUSED) for the rest and for what the config does not set.
fn chaos_text<'a>(name: &[u8], identity: &'a Option<String>, version: &'a Option<String>) -> Option<&'a str> {
    match name {
        b"id.server" | b"hostname.bind" => identity.as_deref(),
        b"version.bind" | b"version.server" => version.as_deref(),
        _ => None,
    }
}

#[cfg(test)]
mod properties;
