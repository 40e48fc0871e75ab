//! A worker's own small cache in front of the shared [`PacketCache`](super::PacketCache).
//!
//! Every hit on the shared cache takes its shard's read lock and the entry's reference count:
//! two atomic writes to memory every core shares, and the most popular names, which most queries
//! ask for, hit the same entries from every core. Those cache lines then move between cores on
//! every query (a cache hit cost 27 % more per thread on two cores than on one). The front
//! cache holds the worker's hottest entries as `Arc`s of its own, filled from shared hits, and
//! serves them with no shared write at all.
//!
//! An entry lives no longer than its response's own lifetime, so a front hit is always an answer
//! the shared cache would have served at some point within its TTL; a fresher answer stored in
//! the shared cache meanwhile reaches the worker once the old one expires or is evicted.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use quick_cache::Equivalent;
use quick_cache::unsync::Cache;

use super::{ByteWeighter, CacheKeyRef, CachedResponse, KeyFlags};
use crate::wire::MAX_NAME_WIRE;

/// Entries a worker's front cache holds. Popular names follow a Zipf law: the top thousand
/// carry most of the hits that contend, and 1024 entries of about 300 bytes (the key is held
/// inline, so that filling allocates nothing) are a few hundred KiB per worker.
pub const FRONT_ENTRIES: usize = 1024;
/// Most memory the responses a front cache holds may take. They are shared with the shared cache,
/// but one the shared cache evicts lives on here: without a byte bound, 1024 answers of 64 KiB
/// would keep 64 MiB per worker alive. 2 MiB keeps the hot answers, of a few hundred bytes.
pub(crate) const FRONT_BYTES: u64 = 2 << 20;

/// A cache key with its name inline: filling the front cache allocates nothing.
#[derive(Clone, PartialEq, Eq)]
struct FrontKey {
    name: [u8; MAX_NAME_WIRE],
    name_len: u8,
    qtype: u16,
    qclass: u16,
    flags: KeyFlags,
}

impl FrontKey {
    /// The owned key of `key`; None for a name longer than any valid one (never cached here).
    fn of(key: &CacheKeyRef<'_>) -> Option<FrontKey> {
        let mut name = [0; MAX_NAME_WIRE];
        name.get_mut(..key.name.len())?.copy_from_slice(key.name);
        Some(FrontKey {
            name,
            name_len: u8::try_from(key.name.len()).ok()?,
            qtype: key.qtype,
            qclass: key.qclass,
            flags: key.flags,
        })
    }

    fn name(&self) -> &[u8] {
        &self.name[..usize::from(self.name_len)]
    }
}

impl Hash for FrontKey {
    /// As [`CacheKeyRef`] hashes: name slice, type, class, flags.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
        self.qtype.hash(state);
        self.qclass.hash(state);
        self.flags.hash(state);
    }
}

impl Equivalent<FrontKey> for CacheKeyRef<'_> {
    fn equivalent(&self, key: &FrontKey) -> bool {
        self.name == key.name() && self.qtype == key.qtype && self.qclass == key.qclass && self.flags == key.flags
    }
}

impl quick_cache::Weighter<FrontKey, Arc<CachedResponse>> for ByteWeighter {
    fn weight(&self, key: &FrontKey, response: &Arc<CachedResponse>) -> u64 {
        self.weigh(std::mem::size_of_val(key), response)
    }
}

/// One worker's front cache; not shared (`!Sync` by design: that is its point).
pub(crate) struct FrontCache {
    entries: Cache<FrontKey, Arc<CachedResponse>, ByteWeighter>,
}

impl FrontCache {
    /// An empty front cache of [`FRONT_ENTRIES`] entries and [`FRONT_BYTES`], its memory
    /// allocated now.
    pub(crate) fn new() -> FrontCache {
        FrontCache {
            entries: Cache::with_weighter(
                FRONT_ENTRIES,
                FRONT_BYTES,
                ByteWeighter::new(FRONT_ENTRIES, FRONT_BYTES),
            ),
        }
    }

    /// A live entry, or None. Touches nothing shared. An expired entry stays until the fresh
    /// answer the caller then finds replaces it, or until it is evicted.
    pub(crate) fn get(&self, key: &CacheKeyRef<'_>, now: Instant) -> Option<&CachedResponse> {
        let response = self.entries.get(key)?;
        (!response.is_expired(now)).then_some(&**response)
    }

    /// Keeps a response the shared cache just served; replaces what was under the same key.
    pub(crate) fn insert(&mut self, key: &CacheKeyRef<'_>, response: Arc<CachedResponse>) {
        if let Some(key) = FrontKey::of(key) {
            self.entries.insert(key, response);
        }
    }
}

impl Default for FrontCache {
    fn default() -> Self {
        FrontCache::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::TtlLimits;
    use std::time::Duration;

    /// An answer for `www.example.com` A with TTL 60, no EDNS.
    fn response(now: Instant) -> Arc<CachedResponse> {
        let mut bytes = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        bytes.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        bytes.extend_from_slice(b"\xC0\x0C\x00\x01\x00\x01\x00\x00\x00\x3C\x00\x04\xC0\x00\x02\x01");
        Arc::new(CachedResponse::analyze(bytes, now, &TtlLimits::default()).unwrap())
    }

    /// An answer for `www.example.com` A with `records` A records (16 bytes each), TTL 60.
    fn big_response(now: Instant, records: u16) -> Arc<CachedResponse> {
        let mut bytes = vec![0x12, 0x34, 0x81, 0x80, 0, 1];
        bytes.extend_from_slice(&records.to_be_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        bytes.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        for i in 0..records {
            bytes.extend_from_slice(b"\xC0\x0C\x00\x01\x00\x01\x00\x00\x00\x3C\x00\x04\xC0\x00");
            bytes.extend_from_slice(&i.to_be_bytes());
        }
        Arc::new(CachedResponse::analyze(bytes, now, &TtlLimits::default()).unwrap())
    }

    #[test]
    fn large_answers_are_bounded_by_bytes() {
        // 1024 answers of 32 KiB would keep 32 MiB alive per worker, after the shared cache
        // let them go.
        let now = Instant::now();
        let mut front = FrontCache::new();
        let names: Vec<String> = (0..1024).map(|i| format!("n{i}.example.com")).collect();
        for name in &names {
            front.insert(&key(name.as_bytes(), 1), big_response(now, 2000));
        }
        let held: usize = names
            .iter()
            .filter_map(|name| front.get(&key(name.as_bytes(), 1), now))
            .map(CachedResponse::memory)
            .sum();
        assert!(held as u64 <= FRONT_BYTES, "{held} bytes held");
        assert!(held > 0);
    }

    fn key(name: &[u8], qtype: u16) -> CacheKeyRef<'_> {
        CacheKeyRef {
            name,
            qtype,
            qclass: 1,
            flags: KeyFlags::default(),
        }
    }

    #[test]
    fn serves_what_it_was_given_under_the_same_key_until_it_expires() {
        let now = Instant::now();
        let mut front = FrontCache::new();
        let www = key(b"www.example.com", 1);
        assert!(front.get(&www, now).is_none());
        let shared = response(now);
        front.insert(&www, Arc::clone(&shared));
        let hit = front.get(&www, now).expect("a hit under the key it was stored under");
        assert!(std::ptr::eq(hit, &*shared), "the shared response itself, not a copy");
        assert!(front.get(&key(b"www.example.com", 28), now).is_none(), "another type");
        assert!(front.get(&key(b"ww.example.com", 1), now).is_none(), "another name");
        let edns = CacheKeyRef {
            flags: KeyFlags {
                edns: true,
                ..KeyFlags::default()
            },
            ..www
        };
        assert!(front.get(&edns, now).is_none(), "other flags");
        assert!(
            front.get(&www, now + Duration::from_secs(60)).is_none(),
            "expired with its TTL"
        );
    }
}
