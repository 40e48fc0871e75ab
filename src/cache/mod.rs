//! The packet cache: upstream responses kept as wire bytes, keyed by the question and the
//! query properties that change a response's shape, served again by copying the bytes and
//! patching id, RD, question case and TTLs (dnsdist's packet cache is the model).
//!
//! It owns the entries and their expiry; the server counts hits and misses. It must not decide anything
//! (blocking is the engine's; whether to cache is the response's own [`CachedResponse::cache_for`]),
//! must not do I/O, and holds no config but its size, because it is built once and survives
//! reloads: lifetime limits are applied when a response is analysed.

mod front;
mod response;

#[cfg(test)]
mod tests;

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use quick_cache::Equivalent;

use crate::packet::Query;
use quick_cache::sync::Cache;

pub use crate::wire::WireError;
pub use front::FRONT_ENTRIES;
pub(crate) use front::FrontCache;
pub use response::{CachedResponse, ResponseError, TtlLimits};

/// Query properties that change the response's shape, so that answers to queries that differ
/// in them are kept apart: an EDNS query gets an OPT back, a DO query gets RRSIGs, a CD query
/// may get data that failed validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct KeyFlags {
    /// The query carried an OPT record.
    pub edns: bool,
    /// The DO bit (DNSSEC OK) in the query's OPT.
    pub dnssec_ok: bool,
    /// The CD bit (checking disabled) in the query's header.
    pub checking_disabled: bool,
}

/// The cache key of a query, owned (stored in the cache). Built from a [`CacheKeyRef`] with
/// [`CacheKeyRef::to_owned`], so that both always agree.
///
/// The field order is the hash order [`CacheKeyRef`]'s `Hash` follows; keep them in step.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Query name, lowercase dotted, no trailing dot.
    name: Box<[u8]>,
    /// QTYPE.
    qtype: u16,
    /// QCLASS.
    qclass: u16,
    /// Shape-changing query properties.
    flags: KeyFlags,
}

impl CacheKey {
    /// The key borrowed, as lookups take it.
    pub fn borrowed(&self) -> CacheKeyRef<'_> {
        CacheKeyRef {
            name: &self.name,
            qtype: self.qtype,
            qclass: self.qclass,
            flags: self.flags,
        }
    }
}

/// The same key borrowed from a packet buffer, so that a lookup does not allocate. It hashes
/// identically to [`CacheKey`] and is compared to it through quick_cache's `Equivalent`.
///
/// `name` must already be lowercase dotted ASCII without trailing dot (`b"www.example.com"`):
/// the cache compares bytes and does no case folding of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheKeyRef<'a> {
    /// Query name, lowercase dotted, no trailing dot.
    pub name: &'a [u8],
    /// QTYPE.
    pub qtype: u16,
    /// QCLASS.
    pub qclass: u16,
    /// Shape-changing query properties.
    pub flags: KeyFlags,
}

impl<'a> CacheKeyRef<'a> {
    /// The key a query is cached under: its name, type, class and the flags that shape the answer.
    pub fn of(query: &'a Query) -> CacheKeyRef<'a> {
        CacheKeyRef {
            name: query.name.as_bytes(),
            qtype: query.qtype,
            qclass: query.qclass,
            flags: KeyFlags {
                edns: query.edns.is_some(),
                dnssec_ok: query.edns.is_some_and(|e| e.dnssec_ok),
                checking_disabled: query.cd(),
            },
        }
    }
}

impl CacheKeyRef<'_> {
    /// The owned key, for inserting (the one allocation, on a miss).
    pub fn to_owned(&self) -> CacheKey {
        CacheKey {
            name: self.name.into(),
            qtype: self.qtype,
            qclass: self.qclass,
            flags: self.flags,
        }
    }
}

impl Hash for CacheKeyRef<'_> {
    /// Same fields, same order, same types as the derived `Hash` of [`CacheKey`] (a
    /// `Box<[u8]>` hashes as its slice).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.qtype.hash(state);
        self.qclass.hash(state);
        self.flags.hash(state);
    }
}

impl Equivalent<CacheKey> for CacheKeyRef<'_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        self.name == &*key.name && self.qtype == key.qtype && self.qclass == key.qclass && self.flags == key.flags
    }
}

/// Weighs entries so that one weight bound holds two limits: each entry weighs its memory in
/// bytes, but never less than `slot` (the byte budget over the entry limit). So the cache holds
/// at most `max_bytes` of responses and at most `max_entries` of them, whichever comes first:
/// answers of 64 KiB cannot take a cache sized by entries to gigabytes, and tiny ones cannot
/// grow the table past its entry count.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ByteWeighter {
    /// The least weight of an entry: `max_bytes / max_entries`.
    slot: u64,
}

impl ByteWeighter {
    /// A weighter for a cache of `max_bytes` and `max_entries` (at least 1).
    pub(crate) fn new(max_entries: usize, max_bytes: u64) -> ByteWeighter {
        ByteWeighter {
            slot: (max_bytes / max_entries.max(1) as u64).max(1),
        }
    }

    /// The weight of one entry whose key takes `key_len` bytes.
    fn weigh(&self, key_len: usize, response: &CachedResponse) -> u64 {
        ((key_len + response.memory()) as u64).max(self.slot)
    }
}

impl quick_cache::Weighter<CacheKey, Arc<CachedResponse>> for ByteWeighter {
    fn weight(&self, key: &CacheKey, response: &Arc<CachedResponse>) -> u64 {
        self.weigh(key.name.len(), response)
    }
}

/// The packet cache, shared by all worker threads (`Send + Sync`, no lock of its own).
///
/// Entries are `Arc`s so a hit costs a reference count, not a copy; the bytes are copied once,
/// into the caller's send buffer, by [`CachedResponse::write_to`]. quick_cache shards the table
/// (4 shards per core by default) and evicts by its CLOCK-Pro policy when full, by weight (see
/// [`ByteWeighter`]: bytes, with a floor per entry); expired entries are dropped when a lookup
/// finds them.
pub struct PacketCache {
    /// The entries; None when the configured size is 0 (cache off).
    entries: Option<Cache<CacheKey, Arc<CachedResponse>, ByteWeighter>>,
}

impl PacketCache {
    /// A cache of at most `max_entries` responses taking at most `max_bytes` of memory
    /// (approximately: quick_cache bounds each shard to its share). 0 entries turns caching off:
    /// every lookup misses and inserts are dropped.
    pub fn new(max_entries: usize, max_bytes: u64) -> Self {
        PacketCache {
            entries: (max_entries > 0 && max_bytes > 0)
                .then(|| Cache::with_weighter(max_entries, max_bytes, ByteWeighter::new(max_entries, max_bytes))),
        }
    }

    /// Memory the entries take now, in bytes (as [`ByteWeighter`] counts it).
    pub(crate) fn bytes(&self) -> u64 {
        self.entries.as_ref().map_or(0, Cache::weight)
    }

    /// A live entry, or None. An expired entry stays as long as it may be served stale (see
    /// [`PacketCache::get_stale`]), and is removed once past that. Does not allocate. The caller
    /// counts hits and misses (per worker, so that no counter is shared per packet).
    pub fn get(&self, key: &CacheKeyRef<'_>, now: Instant) -> Option<Arc<CachedResponse>> {
        let entries = self.entries.as_ref()?;
        let response = entries.get(key)?;
        if !response.is_expired(now) {
            return Some(response);
        }
        if response.is_past_stale(now) {
            // Only this entry: another worker may have stored a fresh one meanwhile.
            entries.remove_if(key, |current| Arc::ptr_eq(current, &response));
        }
        None
    }

    /// An expired entry that may still be served stale at `now` (RFC 8767), for when no
    /// upstream answered; None if there is none, or a live one (the caller just missed).
    pub(crate) fn get_stale(&self, key: &CacheKeyRef<'_>, now: Instant) -> Option<Arc<CachedResponse>> {
        let response = self.entries.as_ref()?.get(key)?;
        (!response.is_past_stale(now)).then_some(response)
    }

    /// Stores the response if it is cacheable ([`CachedResponse::cache_for`] is Some), else
    /// does nothing. Replaces an entry under the same key.
    pub fn insert(&self, key: CacheKey, response: Arc<CachedResponse>) {
        let Some(entries) = &self.entries else {
            return;
        };
        if response.cache_for().is_none() {
            return;
        }
        entries.insert(key, response);
    }

    /// Entries now (including expired ones not yet looked up).
    pub(crate) fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, Cache::len)
    }

    /// Whether there are no entries.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
