//! One upstream server as the pool sees it: its address, whether it is down and for how long,
//! and its metric handles.
//!
//! Health is two atomics, shared by every worker without a lock. A failure marks the server
//! down for a backoff (1 s, doubling to 30 s); while down it is tried only after the healthy
//! ones. Failures of queries that were already in flight when it went down do not lengthen the
//! backoff: only a failure seen while the server counted as up (or after its backoff ran out)
//! does. Any answer marks it up again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use metrics::{Counter, Histogram};
use tracing::{info, warn};

use crate::metrics::{UPSTREAM_CONNECTIONS, UPSTREAM_DURATION, UPSTREAM_ERRORS, UPSTREAM_TCP_RETRIES};

/// The first backoff after a server fails.
const BACKOFF_MIN_MS: u64 = 1_000;
/// The longest backoff: a dead server is probed again at least this often.
const BACKOFF_MAX_MS: u64 = 30_000;

/// What went wrong in one attempt; the `kind` label of [`UPSTREAM_ERRORS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    /// No (matching) answer before the attempt's deadline.
    Timeout,
    /// The socket failed (unreachable, refused, reset).
    Network,
    /// An answer with the right id and question that does not decode.
    Malformed,
    /// The server answered SERVFAIL.
    Servfail,
    /// The server answered REFUSED.
    Refused,
    /// A datagram that answers no waiting query: late, noise, or a spoofing attempt.
    Stray,
    /// An answer with the right id and question in another case than the one sent (0x20).
    Case,
    /// Not sent: the queries in flight to this server were at `upstream.max_inflight`.
    Busy,
}

impl ErrorKind {
    /// Every kind, in the order of [`Server::errors`].
    const ALL: [ErrorKind; 8] = [
        ErrorKind::Timeout,
        ErrorKind::Network,
        ErrorKind::Malformed,
        ErrorKind::Servfail,
        ErrorKind::Refused,
        ErrorKind::Stray,
        ErrorKind::Case,
        ErrorKind::Busy,
    ];

    /// The label value.
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Network => "network",
            ErrorKind::Malformed => "malformed",
            ErrorKind::Servfail => "servfail",
            ErrorKind::Refused => "refused",
            ErrorKind::Stray => "stray",
            ErrorKind::Case => "case",
            ErrorKind::Busy => "busy",
        }
    }
}

/// How many answers in a row must come back in another case than asked before the 0x20 check
/// is turned off for a server: a server that lowercases every question does so from its first
/// answer (the pool asks again at once, so its first query learns it in as many round trips),
/// while a spoofer would have to guess the id and port of that many queries in a row, with no
/// true answer between (at the odds `benches/support/spoof.rs` measures, 1 in 10^9 or less).
pub(crate) const CASE_MISSES_TO_GIVE_UP: u32 = 8;
/// How long the check stays off once turned off: then the server is tried with 0x20 again, so
/// that a server fixed (or a spoofer's lucky run) does not cost the protection for good.
const CASE_OFF_FOR: Duration = Duration::from_secs(600);

/// Whether a server keeps the case of the question name, learnt from its answers (0x20, as in
/// draft-vixie-dnsext-dns0x20): while it does, an answer must repeat the randomised case exactly,
/// so that a spoofed answer must also guess one bit per letter of the name.
#[derive(Debug)]
pub(crate) struct CaseCheck {
    /// Origin of `off_until_ms`.
    epoch: std::time::Instant,
    /// Until when (milliseconds since `epoch`) answers are matched without case and names are
    /// sent as asked; 0: the check is on.
    off_until_ms: AtomicU64,
    /// Answers in a row that came back in another case.
    misses: AtomicU32,
}

impl Default for CaseCheck {
    fn default() -> Self {
        CaseCheck {
            epoch: std::time::Instant::now(),
            off_until_ms: AtomicU64::new(0),
            misses: AtomicU32::new(0),
        }
    }
}

impl CaseCheck {
    /// Whether answers must repeat the case exactly. Reads no clock while the check is on.
    pub(crate) fn is_on(&self) -> bool {
        let until = self.off_until_ms.load(Ordering::Relaxed);
        until == 0 || self.now_ms() >= until
    }

    /// An answer repeated the case: the server keeps it. Writes only after a miss, so that the
    /// usual case reads a line every core can share.
    pub(crate) fn matched(&self) {
        if self.misses.load(Ordering::Relaxed) != 0 {
            self.misses.store(0, Ordering::Relaxed);
        }
    }

    /// An answer came back in another case; true if this turns the check off (for
    /// [`CASE_OFF_FOR`]).
    pub(crate) fn missed(&self) -> bool {
        let misses = self.misses.fetch_add(1, Ordering::Relaxed) + 1;
        if misses < CASE_MISSES_TO_GIVE_UP || !self.is_on() {
            return false;
        }
        self.misses.store(0, Ordering::Relaxed);
        let until = self.now_ms() + CASE_OFF_FOR.as_millis() as u64;
        self.off_until_ms.store(until, Ordering::Relaxed);
        true
    }

    fn now_ms(&self) -> u64 {
        // At least 1: 0 means "on".
        (self.epoch.elapsed().as_millis() as u64).max(1)
    }
}

/// Up/down state of one server, lock-free. Times are milliseconds since the pool's epoch.
#[derive(Debug, Default)]
pub(crate) struct Health {
    /// Until when the server counts as down; 0 = up.
    down_until_ms: AtomicU64,
    /// Failures in a row (each one that set a new backoff): sets the backoff length.
    failures: AtomicU32,
    /// When the first of those failures came: what readiness reports as "down since".
    since_ms: AtomicU64,
}

impl Health {
    /// Whether the server counts as down at `now_ms`.
    pub(crate) fn is_down(&self, now_ms: u64) -> bool {
        self.down_until_ms.load(Ordering::Acquire) > now_ms
    }

    /// Records a failure at `now_ms`. Returns the new backoff if this failure started one
    /// (the server was up, or its backoff had run out), None if it was already down.
    pub(crate) fn fail(&self, now_ms: u64) -> Option<Duration> {
        let observed = self.down_until_ms.load(Ordering::Acquire);
        if observed > now_ms {
            return None;
        }
        let failures = self.failures.load(Ordering::Relaxed).saturating_add(1);
        let doublings = failures.saturating_sub(1).min(5);
        let backoff = (BACKOFF_MIN_MS << doublings).min(BACKOFF_MAX_MS);
        // Only one of the workers that saw the same failure moves the state on.
        self.down_until_ms
            .compare_exchange(observed, now_ms + backoff, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        self.failures.store(failures, Ordering::Relaxed);
        if failures == 1 {
            self.since_ms.store(now_ms, Ordering::Relaxed);
        }
        Some(Duration::from_millis(backoff))
    }

    /// While the server is down at `now_ms` (in its backoff), when its failures in a row began;
    /// None while it is up. For readiness and `sinkhole_upstream_up`, read on a scrape: a server
    /// whose backoff ran out counts as usable again, as the pool tries it again then.
    pub(crate) fn down_since(&self, now_ms: u64) -> Option<u64> {
        self.is_down(now_ms)
            .then(|| self.since_ms.load(Ordering::Relaxed).min(now_ms))
    }

    /// Records an answer. Returns true if the server was down (or failing) before.
    pub(crate) fn succeed(&self) -> bool {
        // A load first: every answer of every worker comes here, and a healthy server's state
        // must stay a cache line that all cores can read without writing it.
        if self.failures.load(Ordering::Relaxed) == 0 || self.failures.swap(0, Ordering::Relaxed) == 0 {
            return false;
        }
        self.down_until_ms.store(0, Ordering::Release);
        true
    }
}

/// One configured upstream: address, health and the metric handles taken once at start.
#[derive(Debug)]
pub(crate) struct Server {
    /// Where queries go (UDP, and TCP for truncated answers; TLS or HTTPS for an encrypted one).
    pub(crate) addr: SocketAddr,
    /// The server as configured: its `upstream` label and its name in logs.
    pub(crate) label: Arc<str>,
    /// Connections opened to it (TCP, TLS, HTTPS): reuse shows as a count that stays low.
    pub(crate) connections: Counter,
    /// Up/down state shared by all workers.
    pub(crate) health: Health,
    /// Time from sending to a valid answer.
    pub(crate) duration: Histogram,
    /// Failed attempts by kind, in [`ErrorKind::ALL`] order.
    errors: [Counter; 8],
    /// Truncated answers asked again over TCP.
    pub(crate) tcp_retries: Counter,
    /// Whether its answers keep the question's case.
    pub(crate) case: CaseCheck,
}

impl Server {
    /// The server at `addr`, configured as `label`, up, with its metric handles registered.
    pub(crate) fn new(addr: SocketAddr, label: &str) -> Self {
        let label: Arc<str> = Arc::from(label);
        Server {
            addr,
            connections: metrics::counter!(UPSTREAM_CONNECTIONS, "upstream" => label.to_string()),
            health: Health::default(),
            duration: metrics::histogram!(UPSTREAM_DURATION, "upstream" => label.to_string()),
            errors: ErrorKind::ALL.map(
                |kind| metrics::counter!(UPSTREAM_ERRORS, "upstream" => label.to_string(), "kind" => kind.as_str()),
            ),
            tcp_retries: metrics::counter!(UPSTREAM_TCP_RETRIES, "upstream" => label.to_string()),
            label,
            case: CaseCheck::default(),
        }
    }

    /// Counts one error of `kind`.
    pub(crate) fn count(&self, kind: ErrorKind) {
        self.count_n(kind, 1);
    }

    /// Counts `n` errors of `kind` (a receiving task counts once per batch).
    pub(crate) fn count_n(&self, kind: ErrorKind, n: u64) {
        if n > 0 {
            self.errors_of(kind).increment(n);
        }
    }

    /// An answer came back in another case than sent: counted, and the 0x20 check turned off
    /// for the server if it keeps doing so.
    pub(crate) fn case_missed(&self) {
        self.count(ErrorKind::Case);
        if self.case.missed() {
            warn!(
                upstream = %self.label,
                off_for = ?CASE_OFF_FOR,
                "upstream does not keep the case of query names: 0x20 randomisation is off for it"
            );
        }
    }

    fn errors_of(&self, kind: ErrorKind) -> &Counter {
        let index = ErrorKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        &self.errors[index]
    }

    /// Records a failed attempt: counts it and marks the server down (logged on the change).
    pub(crate) fn failed(&self, now_ms: u64, kind: ErrorKind, error: &dyn std::fmt::Display) {
        self.count(kind);
        if let Some(backoff) = self.health.fail(now_ms) {
            warn!(upstream = %self.label, error = %error, retry_in = ?backoff, "upstream down");
        }
    }

    /// Records an answer (of any rcode): the server is up (logged on the change).
    pub(crate) fn answered(&self) {
        if self.health.succeed() {
            info!(upstream = %self.label, "upstream up");
        }
    }
}

/// Milliseconds since `epoch`, for [`Health`].
pub(crate) fn millis_since(epoch: Instant, now: Instant) -> u64 {
    u64::try_from(now.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_case_check_gives_up_only_on_misses_in_a_row_and_for_a_while() {
        let case = CaseCheck::default();
        assert!(case.is_on());
        for _ in 1..CASE_MISSES_TO_GIVE_UP {
            assert!(!case.missed());
        }
        case.matched();
        for _ in 1..CASE_MISSES_TO_GIVE_UP {
            assert!(!case.missed(), "a match starts the count over");
        }
        assert!(case.missed(), "the eighth in a row turns it off");
        assert!(!case.is_on());
        assert!(!case.missed(), "reported once");
        // Ten minutes later it is on again: a spoofer's lucky run does not cost it for good.
        case.off_until_ms.store(case.now_ms(), Ordering::Relaxed);
        assert!(case.is_on());
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds_and_in_flight_failures_do_not_count() {
        let h = Health::default();
        assert!(!h.is_down(0));
        assert_eq!(h.down_since(0), None);
        assert_eq!(h.fail(10), Some(Duration::from_secs(1)));
        assert!(h.is_down(1009));
        assert_eq!(h.down_since(1009), Some(10));
        // Queries that were in flight fail too: no longer backoff.
        assert_eq!(h.fail(500), None);
        assert!(!h.is_down(1010));
        assert_eq!(h.down_since(1010), None, "usable again once the backoff ran out");
        assert_eq!(h.fail(1010), Some(Duration::from_secs(2)));
        assert_eq!(h.down_since(1011), Some(10), "down since the first failure in a row");
        assert_eq!(h.fail(3010), Some(Duration::from_secs(4)));
        let mut t = 7010;
        for expected in [8, 16, 30, 30] {
            assert_eq!(h.fail(t), Some(Duration::from_secs(expected)));
            t += expected * 1000;
        }
        assert!(h.succeed());
        assert!(!h.is_down(t - 1));
        assert!(!h.succeed(), "already up");
        assert_eq!(h.fail(t), Some(Duration::from_secs(1)), "backoff starts over");
    }
}
