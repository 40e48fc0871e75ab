//! Rate limits on UDP queries: a token bucket per client (each IPv4 address, each IPv6 /64) and,
//! optionally, per client network and question (response rate limiting, RRL), as the trusted
//! resolvers do it: one client that floods is slowed down, its neighbours are not (AdGuard
//! Home's per-/24 default stalls whole offices behind one NAT, #6726), and the prefixes of such
//! NATs can be exempted.
//!
//! Over UDP a source address proves nothing: a spoofed flood "from" a victim is a reflection
//! attack, whose answers the victim gets. Over its limit a query is dropped, but every `slip`-th
//! one gets an empty truncated answer (TC) instead (BIND's RRL slip): a real client behind that
//! address retries over TCP and is served, and a victim gets a few small packets. TCP is not
//! limited here: its handshake proves the address, and its connections have limits of their own.
//!
//! The buckets live in two fixed tables of atomics ([`SLOTS`] each), shared by every worker:
//! memory does not grow with the number of clients, whatever a flood of spoofed sources does.
//! Clients whose keys hash to the same slot share one bucket (and its limit): with 65,536 slots
//! that happens to a few of several thousand active clients, and only makes the limit apply to
//! them together. A query under its limit costs one hash and one compare-and-swap on its
//! client's slot: other clients' slots are other cache lines.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use foldhash::fast::RandomState;

/// Slots in each table: 512 KiB of atomics.
pub(crate) const SLOTS: usize = 1 << 16;
/// One token, in the thousandths the buckets count in (so that a rate of a few per second
/// refills smoothly, per millisecond).
const TOKEN: u64 = 1000;

/// The limits, from `[ratelimit]`; part of the live snapshot, so a reload changes them. Its
/// exempt prefixes are in the snapshot's client table (`policy::ClientClass::exempt`), whose
/// one lookup per query the caller makes anyway: an exempt client costs the limiter nothing.
#[derive(Debug, Default)]
pub struct RateLimits {
    /// Queries per second per client; 0: no client limit.
    pub qps: u32,
    /// Queries a client may send at once above its rate.
    pub burst: u32,
    /// Identical questions per second per client network (/24, /56); 0: no RRL.
    pub identical_qps: u32,
    /// Queries a client network may ask the same at once above that rate.
    pub identical_burst: u32,
    /// Every `slip`-th query over a limit gets a truncated answer, the others are dropped; 0:
    /// all dropped, 1: all truncated.
    pub slip: u32,
}

/// What to do with one query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Under the limits: answer it.
    Pass,
    /// Over the client limit.
    Client,
    /// Over the limit of identical questions.
    Identical,
}

/// The buckets of every client, shared by all workers. Built once; the limits come with each
/// call, from the live snapshot.
pub struct RateLimiter {
    clients: Buckets,
    questions: Buckets,
    /// Origin of the millisecond clock the buckets keep.
    epoch: Instant,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter::new()
    }
}

impl RateLimiter {
    /// Empty tables (every bucket full).
    pub fn new() -> RateLimiter {
        RateLimiter {
            clients: Buckets::new(),
            questions: Buckets::new(),
            epoch: Instant::now(),
        }
    }

    /// Takes a token from `client`'s bucket, and, with RRL on and `question` given (lowercase
    /// name and type), from the bucket of its network and that question. The caller does not
    /// ask for exempt clients.
    pub fn check(&self, client: IpAddr, question: Option<(&[u8], u16)>, now: Instant, limits: &RateLimits) -> Limit {
        if limits.qps == 0 && limits.identical_qps == 0 {
            return Limit::Pass;
        }
        let client = client.to_canonical();
        // Milliseconds, wrapping every 49.7 days: buckets compare times with wrapping_sub.
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u32;
        let mut verdict = Limit::Pass;
        if limits.qps > 0 {
            let key = self.clients.slot(|h| h.write_u64(client_key(client)));
            if !self.clients.take(key, ms, limits.qps, limits.burst) {
                verdict = Limit::Client;
            }
        }
        if verdict == Limit::Pass
            && limits.identical_qps > 0
            && let Some((name, qtype)) = question
        {
            let key = self.questions.slot(|h| {
                h.write_u64(network_key(client));
                h.write(name);
                h.write_u16(qtype);
            });
            if !self
                .questions
                .take(key, ms, limits.identical_qps, limits.identical_burst)
            {
                verdict = Limit::Identical;
            }
        }
        verdict
    }
}

/// A client's bucket key: its IPv4 address, or the /64 of its IPv6 address (a host's share of
/// a network, as ISPs and SLAAC hand them out).
fn client_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4)),
        IpAddr::V6(v6) => (u128::from(v6) >> 64) as u64 | 1 << 63,
    }
}

/// A client network's key for RRL: its /24 or /56, as BIND's RRL groups clients.
fn network_key(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4) >> 8),
        IpAddr::V6(v6) => (u128::from(v6) >> 72) as u64 | 1 << 63,
    }
}

/// A table of token buckets, each one atomic word: the last refill time (milliseconds since
/// the limiter's epoch, wrapping) in the high half, the tokens in thousandths in the low half.
struct Buckets {
    slots: Box<[AtomicU64]>,
    hasher: RandomState,
}

impl Buckets {
    fn new() -> Buckets {
        Buckets {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::default(),
        }
    }

    /// The slot of the key `write` hashes (randomly seeded: a spoofer cannot aim at a
    /// victim's slot).
    fn slot(&self, write: impl FnOnce(&mut foldhash::fast::FoldHasher<'_>)) -> usize {
        let mut hasher = self.hasher.build_hasher();
        write(&mut hasher);
        hasher.finish() as usize & (SLOTS - 1)
    }

    /// Refills slot `at` for the time since its last use at `rate` tokens a second (up to
    /// `burst`, at least one), and takes one token if there is one.
    fn take(&self, at: usize, now_ms: u32, rate: u32, burst: u32) -> bool {
        let Some(slot) = self.slots.get(at) else {
            return true;
        };
        let full = u64::from(burst.max(1)) * TOKEN;
        let mut current = slot.load(Ordering::Relaxed);
        loop {
            let (last, tokens) = ((current >> 32) as u32, current & 0xFFFF_FFFF);
            let tokens = if current == 0 {
                full // never used: a full bucket
            } else {
                // Per millisecond, `rate` thousandths of a token: `rate` tokens a second.
                let elapsed = u64::from(now_ms.wrapping_sub(last));
                (tokens + elapsed.saturating_mul(u64::from(rate))).min(full)
            };
            let allowed = tokens >= TOKEN;
            let left = if allowed { tokens - TOKEN } else { tokens };
            // Never 0 as a whole: 0 means "never used".
            let next = (u64::from(now_ms) << 32 | left).max(1);
            match slot.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return allowed,
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(qps: u32, burst: u32) -> RateLimits {
        RateLimits {
            qps,
            burst,
            slip: 2,
            ..RateLimits::default()
        }
    }

    #[test]
    fn a_client_gets_its_burst_then_its_rate_and_others_are_untouched() {
        let limiter = RateLimiter::new();
        let limits = limits(100, 50);
        let t0 = limiter.epoch + Duration::from_secs(1);
        let flooder: IpAddr = "10.0.0.1".parse().unwrap();
        let passed = (0..200)
            .filter(|_| limiter.check(flooder, None, t0, &limits) == Limit::Pass)
            .count();
        assert_eq!(passed, 50, "the burst, then nothing within the same millisecond");
        let neighbour: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(limiter.check(neighbour, None, t0, &limits), Limit::Pass, "a /32 each");
        // 100 a second: 10 more after 100 ms.
        let later = t0 + Duration::from_millis(100);
        let passed = (0..50)
            .filter(|_| limiter.check(flooder, None, later, &limits) == Limit::Pass)
            .count();
        assert_eq!(passed, 10);
    }

    #[test]
    fn ipv6_clients_are_limited_per_64_and_mapped_ones_as_ipv4() {
        let limiter = RateLimiter::new();
        let limits = limits(10, 10);
        let now = limiter.epoch + Duration::from_secs(1);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::ffff".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(limiter.check(a, None, now, &limits), Limit::Pass);
        }
        assert_eq!(limiter.check(b, None, now, &limits), Limit::Client, "the same /64");
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(limiter.check(other, None, now, &limits), Limit::Pass);
        // IPv4-mapped IPv6 is the IPv4 client: one bucket.
        let v4: IpAddr = "10.9.0.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:10.9.0.1".parse().unwrap();
        for _ in 0..10 {
            assert_eq!(limiter.check(v4, None, now, &limits), Limit::Pass);
        }
        assert_eq!(limiter.check(mapped, None, now, &limits), Limit::Client);
    }

    #[test]
    fn identical_questions_are_limited_per_network_and_question() {
        let limiter = RateLimiter::new();
        let limits = RateLimits {
            identical_qps: 5,
            identical_burst: 5,
            ..RateLimits::default()
        };
        let now = limiter.epoch + Duration::from_secs(1);
        let victim: IpAddr = "192.0.2.10".parse().unwrap();
        let neighbour: IpAddr = "192.0.2.20".parse().unwrap();
        let any = Some((&b"example.com"[..], 255));
        for _ in 0..5 {
            assert_eq!(limiter.check(victim, any, now, &limits), Limit::Pass);
        }
        assert_eq!(
            limiter.check(neighbour, any, now, &limits),
            Limit::Identical,
            "the same /24"
        );
        let other = Some((&b"example.org"[..], 255));
        assert_eq!(
            limiter.check(victim, other, now, &limits),
            Limit::Pass,
            "another question"
        );
        assert_eq!(
            limiter.check(victim, None, now, &limits),
            Limit::Pass,
            "no client limit set"
        );
    }

    #[test]
    fn off_by_default_and_a_long_silence_refills_without_overflow() {
        let limiter = RateLimiter::new();
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        let off = RateLimits::default();
        for _ in 0..10_000 {
            assert_eq!(limiter.check(client, None, limiter.epoch, &off), Limit::Pass);
        }
        let limits = limits(u32::MAX, 3);
        let now = limiter.epoch + Duration::from_secs(1);
        for _ in 0..3 {
            assert_eq!(limiter.check(client, None, now, &limits), Limit::Pass);
        }
        let days = now + Duration::from_secs(3 * 86_400);
        assert_eq!(limiter.check(client, None, days, &limits), Limit::Pass);
    }

    #[test]
    fn the_clock_wraps_after_49_days_and_buckets_still_refill() {
        // Milliseconds since the limiter started no longer fit 32 bits after 49.7 days: the
        // buckets must go on refilling, not stop at a clock stuck at its maximum.
        let limiter = RateLimiter::new();
        let limits = limits(100, 10);
        let client: IpAddr = "10.0.0.1".parse().unwrap();
        let wrap = limiter.epoch + Duration::from_millis(u64::from(u32::MAX) - 500);
        for step in 0..4u64 {
            let now = wrap + Duration::from_secs(step);
            let passed = (0..20)
                .filter(|_| limiter.check(client, None, now, &limits) == Limit::Pass)
                .count();
            assert_eq!(passed, 10, "a full burst a second later, at step {step}");
        }
    }
}
