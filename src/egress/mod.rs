//! The egress companion: the firewall told what DNS alone cannot stop.
//!
//! A phone with hard-coded addresses, or a resolver of its own, walks past any sinkhole. For
//! each name a policy with `egress = true` blocked (in enforce mode), the packet path offers the
//! name to a bounded queue ([`EgressQueue`], without blocking or allocating); this module's
//! [`Companion`], a task of its own and never on the packet path, resolves the name itself
//! through the daemon's upstreams (A and AAAA, through the CNAME chain), leaves out the
//! addresses it must never publish (`never_add`, the network's own), and adds the rest to two
//! nftables sets (`[egress]`) with a timeout each, the answer's TTL clamped, in one transaction a
//! second at most. The gateway's rules (deploy/nftables/sinkhole.nft) drop flows from the
//! blocking VLANs to those addresses. It never blocks anything itself, and never creates,
//! flushes or changes the firewall's table, sets or rules: only elements come and go.
//!
//! Bounds: the queue (`egress.queue`), names resolved a second (`egress.rate`), names
//! remembered for deduplication (`egress.max_names`, a name is resolved again only once its
//! elements would have expired, and not within `egress.dedup_window`), elements pending (one
//! batch), elements remembered. Each bound reached is counted, and failures to talk to nftables
//! (no `nft`, no CAP_NET_ADMIN, no set) are logged with what to do and counted: DNS goes on.

mod nft;
mod queue;
mod resolve;

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio::task::JoinSet;

use crate::config::{Config, defaults};
use crate::policy::Mode;
use crate::state::{Snapshot, State};
use crate::upstream::Sockets;

use self::nft::{Entry, Failure, NftError, Sets};
pub use self::queue::{EgressQueue, EgressSender, Offer};
use self::resolve::ResolveError;

/// What resolving a name came to: its addresses, each with its TTL.
type Resolution = Result<Vec<(IpAddr, u32)>, ResolveError>;

/// How often the companion takes offers, starts resolutions and looks at its batch.
const TICK: Duration = Duration::from_millis(100);
/// A batch is applied once its first element waited this long, or it holds [`MAX_BATCH`].
const BATCH_WAIT: Duration = Duration::from_secs(1);
/// Elements one transaction adds at most.
const MAX_BATCH: usize = 256;
/// Elements waiting for a transaction at most (while nft is slow or failing); past it new ones
/// are dropped and counted.
const MAX_PENDING: usize = 4 * MAX_BATCH;
/// Resolutions in flight at once at most (the rate bounds how many start a second).
const MAX_CONCURRENT: usize = 64;
/// How often expired elements are forgotten, the gauges set, and missing sets checked again.
const HOUSEKEEPING: Duration = Duration::from_secs(10);
/// Failure log lines of one kind at most this often (each failure is counted).
const LOG_EVERY: Duration = Duration::from_secs(60);

/// What the companion works with, read from the config at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    sets: Sets,
    min_timeout: u32,
    max_timeout: u32,
    /// The defaults that are always left out, `egress.never_add`, and `server.allow`.
    never_add: Vec<IpNet>,
    rate: u32,
    queue: usize,
    dedup_window: Duration,
    max_names: usize,
}

impl Settings {
    /// The settings `config` gives.
    pub fn from_config(config: &Config) -> Settings {
        let egress = &config.egress;
        let mut never_add: Vec<IpNet> = defaults::EGRESS_NEVER_ADD.to_vec();
        never_add.extend(egress.never_add.iter().map(IpNet::trunc));
        never_add.extend(config.server.allow.get_ref().iter().map(IpNet::trunc));
        never_add.sort();
        never_add.dedup();
        Settings {
            sets: Sets {
                table: egress.table.get_ref().clone(),
                v4: egress.set_v4.get_ref().clone(),
                v6: egress.set_v6.get_ref().clone(),
            },
            min_timeout: egress.min_timeout,
            max_timeout: egress.max_timeout.max(egress.min_timeout),
            never_add,
            rate: egress.rate.max(1),
            queue: egress.queue.max(1),
            dedup_window: Duration::from_secs(u64::from(egress.dedup_window)),
            max_names: egress.max_names.max(1),
        }
    }

    /// Names that may wait in the queue (`egress.queue`).
    pub fn queue(&self) -> usize {
        self.queue
    }

    /// An answer's TTL as an element's timeout: within `min_timeout..=max_timeout`.
    fn timeout(&self, ttl: u32) -> u32 {
        ttl.clamp(self.min_timeout, self.max_timeout)
    }

    /// Whether an address may be published: not in a `never_add` prefix.
    fn publishable(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        !self.never_add.iter().any(|net| net.contains(&ip))
    }
}

/// Names resolved lately, each with the moment it may be resolved again; bounded, the least
/// recently used forgotten first (forgetting one costs at most an early second resolution).
struct Dedup {
    names: quick_cache::unsync::Cache<Box<str>, Instant>,
}

impl Dedup {
    fn new(capacity: usize) -> Dedup {
        Dedup {
            names: quick_cache::unsync::Cache::new(capacity),
        }
    }

    /// Whether `name` is due for resolving at `now`; if it is, it is not again before `until`
    /// (the dedup window: [`Dedup::hold`] moves it once the answer is known).
    fn take(&mut self, name: &str, now: Instant, until: Instant) -> bool {
        if self.names.get(name).is_some_and(|not_before| now < *not_before) {
            return false;
        }
        self.names.insert(name.into(), until);
        true
    }

    /// `name` is not resolved again before `until`.
    fn hold(&mut self, name: &str, until: Instant) {
        self.names.insert(name.into(), until);
    }
}

/// The addresses added and still live, each with when its element expires: an address many
/// blocked names share (a CDN's) is added once while it lives. Bounded: past the bound an
/// address is added but not remembered (adding it again is harmless).
struct Known {
    live: HashMap<IpAddr, Instant, foldhash::fast::RandomState>,
    capacity: usize,
}

impl Known {
    fn new(capacity: usize) -> Known {
        Known {
            live: HashMap::default(),
            capacity,
        }
    }

    /// Whether `ip`'s element lives past `until` already.
    fn covers(&self, ip: IpAddr, until: Instant) -> bool {
        self.live.get(&ip).is_some_and(|expires| *expires >= until)
    }

    fn insert(&mut self, ip: IpAddr, expires: Instant) {
        if self.live.len() < self.capacity || self.live.contains_key(&ip) {
            self.live.insert(ip, expires);
        }
    }

    /// Forgets the expired; returns how many live, (IPv4, IPv6).
    fn purge(&mut self, now: Instant) -> (usize, usize) {
        self.live.retain(|_, expires| *expires > now);
        let v4 = self.live.keys().filter(|ip| ip.is_ipv4()).count();
        (v4, self.live.len() - v4)
    }
}

/// Names a second, as tokens: at most a second's worth saved up.
struct Bucket {
    tokens: f64,
    rate: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(rate),
            rate: f64::from(rate),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
    }

    fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The metric handles, taken once.
struct Counters {
    resolved_ok: metrics::Counter,
    resolved_empty: metrics::Counter,
    resolved_failed: metrics::Counter,
    added: [metrics::Counter; 2],
    never_add: metrics::Counter,
    dropped: metrics::Counter,
    elements: [metrics::Gauge; 2],
    ready: metrics::Gauge,
}

impl Counters {
    fn new() -> Counters {
        use crate::metrics as m;
        let resolved = |result: &'static str| metrics::counter!(m::EGRESS_RESOLUTIONS, "result" => result);
        Counters {
            resolved_ok: resolved("ok"),
            resolved_empty: resolved("empty"),
            resolved_failed: resolved("failed"),
            added: ["ipv4", "ipv6"].map(|f| metrics::counter!(m::EGRESS_ADDED, "family" => f)),
            never_add: metrics::counter!(m::EGRESS_SKIPPED, "reason" => "never_add"),
            dropped: metrics::counter!(m::EGRESS_DROPPED),
            elements: ["ipv4", "ipv6"].map(|f| metrics::gauge!(m::EGRESS_ELEMENTS, "family" => f)),
            ready: metrics::gauge!(m::EGRESS_READY),
        }
    }

    fn failure(reason: Failure) -> metrics::Counter {
        metrics::counter!(crate::metrics::EGRESS_NFT_FAILURES, "reason" => reason.as_str())
    }
}

/// The background task: takes offered names, resolves them (deduplicated, rate-bounded) and
/// adds their addresses to the sets in batches. Owned by `server::serve`, which aborts it at
/// shutdown.
pub struct Companion {
    settings: Settings,
    offers: Receiver<Offer>,
    /// Names taken from the queue, waiting for the rate to let them be resolved.
    waiting: VecDeque<Box<str>>,
    dedup: Dedup,
    bucket: Bucket,
    /// Elements for the next transaction, and when the first of them came.
    batch: Vec<Entry>,
    batch_since: Option<Instant>,
    known: Known,
    /// A list's ranges now in the sets (see [`Companion::sync_ranges`]).
    ranges: Vec<IpNet>,
    /// Whether both sets were found, at the last look.
    ready: bool,
    next_housekeeping: Instant,
    /// When each kind of failure was last logged.
    logged: HashMap<&'static str, Instant>,
    counters: Counters,
}

impl Companion {
    /// A companion for `settings`, reading names from `offers` (the receiving end of the
    /// [`EgressQueue`] the handler offers to).
    pub fn new(settings: Settings, offers: Receiver<Offer>) -> Companion {
        let now = Instant::now();
        Companion {
            waiting: VecDeque::with_capacity(settings.queue.min(4096)),
            dedup: Dedup::new(settings.max_names),
            bucket: Bucket::new(settings.rate, now),
            batch: Vec::new(),
            batch_since: None,
            known: Known::new(settings.max_names.saturating_mul(4)),
            ranges: Vec::new(),
            ready: false,
            next_housekeeping: now + HOUSEKEEPING,
            logged: HashMap::new(),
            counters: Counters::new(),
            offers,
            settings,
        }
    }

    /// Runs until aborted: resolves names through the upstreams of `state`'s live snapshot, on
    /// `sockets`, and publishes their addresses.
    pub async fn run(mut self, state: Arc<State>, sockets: Arc<Sockets>) {
        self.check_sets().await;
        self.sync_list_ranges(&state).await;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut resolving: JoinSet<(Box<str>, Resolution)> = JoinSet::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.take_offers(now);
                    self.bucket.refill(now);
                    // While the sets cannot be used, names wait (bounded) rather than cost upstream queries
                    // whose addresses could go nowhere.
                    while self.ready
                        && resolving.len() < MAX_CONCURRENT
                        && !self.waiting.is_empty()
                        && self.bucket.take()
                    {
                        let Some(name) = self.waiting.pop_front() else { break };
                        let (state, sockets) = (Arc::clone(&state), Arc::clone(&sockets));
                        resolving.spawn(async move {
                            let snapshot = state.load_full();
                            let found = resolve::resolve(&name, &snapshot, &sockets).await;
                            (name, found)
                        });
                    }
                    if self.batch_since.is_some_and(|since| now.saturating_duration_since(since) >= BATCH_WAIT)
                        || self.batch.len() >= MAX_BATCH
                    {
                        self.flush().await;
                    }
                    if now >= self.next_housekeeping {
                        self.housekeeping(now).await;
                        self.sync_list_ranges(&state).await;
                    }
                }
                Some(done) = resolving.join_next(), if !resolving.is_empty() => {
                    if let Ok((name, found)) = done {
                        self.resolved(&name, found, Instant::now());
                    }
                }
            }
        }
    }

    /// Takes what the queue holds: names not resolved lately wait for their turn.
    fn take_offers(&mut self, now: Instant) {
        loop {
            let offer = match self.offers.try_recv() {
                Ok(offer) => offer,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            };
            let name = offer.name.to_string_lossy();
            if !self.dedup.take(&name, now, now + self.settings.dedup_window) {
                continue;
            }
            if self.waiting.len() >= self.settings.queue {
                self.counters.dropped.increment(1);
                // Not resolved: it may be offered again.
                self.dedup.hold(&name, now);
                continue;
            }
            tracing::debug!(name = %name, qtype = offer.qtype, "egress: resolving a blocked name");
            self.waiting.push_back(name.into());
        }
    }

    /// What a resolution came to: its publishable addresses join the batch, and the name is
    /// not resolved again before its first element would expire (nor within the dedup window).
    fn resolved(&mut self, name: &str, found: Resolution, now: Instant) {
        let found = match found {
            Ok(found) => found,
            Err(error) => {
                self.counters.resolved_failed.increment(1);
                tracing::debug!(name, %error, "egress: a blocked name did not resolve");
                return;
            }
        };
        let (added, shortest) = self.admit(&found, now);
        if found.is_empty() {
            self.counters.resolved_empty.increment(1);
        } else {
            self.counters.resolved_ok.increment(1);
        }
        tracing::debug!(name, addresses = found.len(), added, "egress: resolved a blocked name");
        let hold = shortest.map_or(self.settings.dedup_window, |s| {
            Duration::from_secs(u64::from(s)).max(self.settings.dedup_window)
        });
        self.dedup.hold(name, now + hold);
    }

    /// Adds the publishable addresses of `found` to the batch; returns how many, and the
    /// shortest timeout among all publishable ones.
    fn admit(&mut self, found: &[(IpAddr, u32)], now: Instant) -> (usize, Option<u32>) {
        let mut added = 0;
        let mut shortest: Option<u32> = None;
        for &(ip, ttl) in found {
            if !self.settings.publishable(ip) {
                self.counters.never_add.increment(1);
                continue;
            }
            if self.ranges.iter().any(|net| net.contains(&ip)) {
                // In the set already, as part of a list's range: adding it would overlap.
                continue;
            }
            let timeout = self.settings.timeout(ttl);
            shortest = Some(shortest.map_or(timeout, |s| s.min(timeout)));
            let expires = now + Duration::from_secs(u64::from(timeout));
            if self.known.covers(ip, expires) || self.batch.iter().any(|e| e.ip == ip) {
                continue;
            }
            if self.batch.len() >= MAX_PENDING {
                self.counters.dropped.increment(1);
                continue;
            }
            self.batch.push(Entry { ip, timeout });
            self.batch_since.get_or_insert(now);
            added += 1;
        }
        (added, shortest)
    }

    /// Applies the batch in one transaction (elements one by one if nft refused the whole:
    /// one bad element must not keep the others out).
    async fn flush(&mut self) {
        let entries = std::mem::take(&mut self.batch);
        self.batch_since = None;
        if entries.is_empty() {
            return;
        }
        let sets = self.settings.sets.clone();
        let applied = tokio::task::spawn_blocking(move || apply_entries(&sets, entries)).await;
        let Ok((added, failures)) = applied else { return };
        let now = Instant::now();
        for entry in &added {
            let expires = now + Duration::from_secs(u64::from(entry.timeout));
            self.known.insert(entry.ip, expires);
            self.counters.added[usize::from(entry.ip.is_ipv6())].increment(1);
        }
        for failure in failures {
            self.failed(&failure, now);
        }
    }

    fn failed(&mut self, error: &NftError, now: Instant) {
        Counters::failure(error.failure).increment(1);
        if matches!(
            error.failure,
            Failure::NftMissing | Failure::Permission | Failure::MissingSet
        ) {
            self.set_ready(false);
            // The names whose addresses were lost are held as if they had gone in: forget them, so that
            // they are resolved again when asked once the sets are back.
            self.dedup = Dedup::new(self.settings.max_names);
        }
        let last = self.logged.get(error.failure.as_str());
        if last.is_none_or(|at| now.saturating_duration_since(*at) >= LOG_EVERY) {
            self.logged.insert(error.failure.as_str(), now);
            tracing::error!(reason = error.failure.as_str(), detail = %error.detail, "egress: cannot add to the nftables sets: {}", error.failure.advice());
        }
    }

    fn set_ready(&mut self, ready: bool) {
        self.ready = ready;
        self.counters.ready.set(f64::from(u8::from(ready)));
    }

    /// Checks that both sets exist with the flags the elements need; logs what to do if not.
    async fn check_sets(&mut self) {
        let sets = self.settings.sets.clone();
        let checked = tokio::task::spawn_blocking(move || {
            nft::check_set(&sets.table, &sets.v4).and_then(|()| nft::check_set(&sets.table, &sets.v6))
        })
        .await;
        let s = self.settings.sets.clone();
        match checked {
            Ok(Ok(())) => {
                if !self.ready {
                    tracing::info!(table = %s.table, set_v4 = %s.v4, set_v6 = %s.v6, "egress: publishing the addresses of blocked names to nftables sets");
                }
                self.set_ready(true);
            }
            Ok(Err(error)) => {
                Counters::failure(error.failure).increment(1);
                self.set_ready(false);
                tracing::error!(
                    table = %s.table, set_v4 = %s.v4, set_v6 = %s.v6, reason = error.failure.as_str(),
                    detail = %error.detail,
                    "egress: the nftables sets cannot be used, addresses are not published (DNS goes on): {}",
                    error.failure.advice()
                );
            }
            Err(_) => self.set_ready(false),
        }
    }

    async fn housekeeping(&mut self, now: Instant) {
        self.next_housekeeping = now + HOUSEKEEPING;
        let (v4, v6) = self.known.purge(now);
        self.counters.elements[0].set(v4 as f64);
        self.counters.elements[1].set(v6 as f64);
        if !self.ready {
            self.check_sets().await;
        }
    }

    /// Publishes the address ranges of the lists that policies with `egress = true` block while
    /// they enforce (`ip = [...]`, RPZ `rpz-ip` triggers), once the sets can be used: at start, then
    /// at each housekeeping, so that a reload or a phase edge shows in the sets within
    /// `HOUSEKEEPING`. Nothing is sent while they are unchanged.
    async fn sync_list_ranges(&mut self, state: &State) {
        if !self.ready {
            return;
        }
        let wanted = wanted_ranges(&state.load(), crate::state::now_unix());
        if let Err(error) = self.sync_ranges(&wanted).await {
            tracing::warn!(%error, "egress: the address ranges of the lists could not be published");
        }
    }

    /// Brings a list's address ranges in the sets to `wanted`, as intervals without timeout, in
    /// one transaction: the ranges no longer wanted are deleted, the new ones added. Addresses
    /// inside a range are not added on their own from then on (nft would refuse the overlap).
    /// Call it at start and after each reload with the ranges of the lists the egress policies
    /// block.
    pub async fn sync_ranges(&mut self, wanted: &[IpNet]) -> Result<(), String> {
        let wanted: Vec<IpNet> = wanted
            .iter()
            .map(IpNet::trunc)
            .filter(|n| self.range_publishable(n))
            .collect();
        let Some(batch) = self.settings.sets.sync_ranges_batch(&self.ranges, &wanted) else {
            return Ok(());
        };
        match tokio::task::spawn_blocking(move || nft::apply(&batch)).await {
            Ok(Ok(())) => {
                self.ranges = wanted;
                Ok(())
            }
            Ok(Err(error)) => {
                self.failed(&error, Instant::now());
                Err(error.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// Whether a range may be published: it overlaps no `never_add` prefix.
    fn range_publishable(&self, net: &IpNet) -> bool {
        !self
            .settings
            .never_add
            .iter()
            .any(|never| never.contains(net) || net.contains(never))
    }
}

/// The address ranges of the lists that policies with `egress = true` block, for those of them
/// that enforce at `now` (audit publishes nothing, as for names), sorted and without repeats.
fn wanted_ranges(snapshot: &Snapshot, now: i64) -> Vec<IpNet> {
    let rules = &snapshot.rules;
    let mut wanted: Vec<IpNet> = rules
        .policies
        .iter()
        .filter(|p| p.egress && matches!(p.phase_at(now), Some((_, Mode::Enforce))))
        .flat_map(|p| p.block.iter().map(|(list, _)| *list))
        .filter_map(|list| rules.lists.get(list))
        .flat_map(|list| list.set.blocking_ranges())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    wanted
}

/// Applies `entries` in one transaction; if nft refuses it, each alone, so that one element it
/// refuses (an overlap) keeps no other out. Returns those added and the failures. Blocks.
fn apply_entries(sets: &Sets, entries: Vec<Entry>) -> (Vec<Entry>, Vec<NftError>) {
    match nft::apply(&sets.add_batch(&entries)) {
        Ok(()) => (entries, Vec::new()),
        Err(error) if error.failure == Failure::Rejected && entries.len() > 1 => {
            let mut added = Vec::new();
            let mut failures = Vec::new();
            for entry in entries {
                match nft::apply(&sets.add_batch(&[entry])) {
                    Ok(()) => added.push(entry),
                    Err(error) => failures.push(error),
                }
            }
            (added, failures)
        }
        Err(error) => (Vec::new(), vec![error]),
    }
}

#[cfg(test)]
mod tests;
