//! One upstream response as the cache keeps it: the wire bytes plus what was learned from them
//! once (TTL positions, the CNAME/DNAME chain, the cache lifetime), so that serving it again is a
//! copy and a few patches.

use std::time::{Duration, Instant};

use crate::packet::{self, OptError};
use crate::wire::{self, HEADER_LEN, MAX_MESSAGE, MIN_UDP_PAYLOAD, RecordPos, WireError, flag, rcode, rtype};

/// RFC 2308 section 7.1: a SERVFAIL must not be cached for longer than five minutes, whatever
/// the config says.
const SERVFAIL_CAP: u32 = 300;
/// The most CNAME/DNAME records one answer may carry. Real chains are a handful long; a longer
/// one would make the chain (kept expanded for list matching) many times the packet's size.
pub(crate) const MAX_CHAIN: usize = 32;

/// Cache lifetime limits from the config. They are applied when a response is analysed, so the
/// cache itself holds no config and survives reloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TtlLimits {
    /// Positive answers are kept at least this long (seconds), even if their TTL is lower.
    pub min: u32,
    /// Positive answers are kept at most this long (seconds).
    pub max: u32,
    /// Negative answers (NXDOMAIN, NODATA) are kept at most this long (seconds).
    pub negative_max: u32,
    /// SERVFAIL answers are kept this long (seconds); 0 = not cached. Capped at 300 (RFC 2308).
    pub servfail: u32,
    /// Answers are kept this long (seconds) past their expiry, to be served stale when no
    /// upstream answers (RFC 8767); 0 = not at all.
    pub stale: u32,
}

impl Default for TtlLimits {
    /// The limits of a config that says nothing, but for `stale`: 0 here, so that tests of
    /// expiry see expired entries go.
    fn default() -> Self {
        use crate::config::defaults;
        TtlLimits {
            min: defaults::MIN_TTL,
            max: defaults::MAX_TTL,
            negative_max: defaults::NEGATIVE_MAX_TTL,
            servfail: defaults::SERVFAIL_TTL,
            stale: 0,
        }
    }
}

/// The TTL of every record in an answer served stale (RFC 8767 4: 30 seconds), so that clients
/// ask again soon, when an upstream may be back.
pub(crate) const STALE_TTL: u32 = 30;
/// EDE info code "Stale Answer" (RFC 8914 4.4).
const EDE_STALE: u16 = 3;

/// Why an upstream response cannot be cached or inspected. The caller may still relay the bytes
/// as they are; it just cannot serve them from the cache or check their CNAME chain.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    /// Shorter than a DNS header.
    #[error("upstream response is {0} bytes, shorter than a DNS header")]
    TooShort(usize),
    /// Longer than any DNS message can be.
    #[error("upstream response is {0} bytes, longer than a DNS message can be (65535)")]
    TooLong(usize),
    /// The QR bit is clear: this is a query, not an answer.
    #[error("upstream sent a query, not a response")]
    NotAResponse,
    /// Not exactly one question; the cache is keyed by the question.
    #[error("upstream response has {0} questions, expected exactly 1")]
    QuestionCount(u16),
    /// The message does not decode: it ends early, or a name in it is broken.
    #[error("upstream response is malformed: {0}")]
    Malformed(#[from] WireError),
    /// A record's data does not fit its type (an A record that is not 4 bytes, say).
    #[error("upstream response has a type {0} record whose data is malformed")]
    BadRdata(u16),
    /// An OPT record outside the additional section, a second one, or one not owned by the root.
    #[error(
        "upstream response has an OPT record outside the additional section, a second one, or one not owned by the root"
    )]
    MisplacedOpt,
    /// More CNAME/DNAME records than [`MAX_CHAIN`].
    #[error("upstream response has more than {MAX_CHAIN} CNAME/DNAME records")]
    ChainTooLong,
}

/// The EDNS option code of Extended DNS Errors (RFC 8914).
const OPTION_EDE: u16 = 15;

/// EDNS options that belong to one hop, between the upstream and us: a cached answer must not
/// hand them to other clients. A COOKIE (RFC 7873) echoes the client cookie of whoever asked
/// first, and a later client would see a mismatch; TCP keepalive (RFC 7828) and padding
/// (RFC 7830) describe a connection that is not theirs.
const HOP_BY_HOP_OPTIONS: [u16; 3] = [10, 11, 12];

/// Removes [`HOP_BY_HOP_OPTIONS`] from the OPT record, if any is there (the bytes are returned
/// untouched otherwise). An OPT record whose options do not fill its data is refused: the
/// options are read here, and an answer with them broken does not decode for clients. The
/// record and its options are found by `packet`'s walker, the daemon's one; a second OPT or one
/// not owned by the root is left for [`CachedResponse::analyze`] to refuse, in its walk.
fn strip_hop_by_hop_options(mut bytes: Vec<u8>) -> Result<Vec<u8>, ResponseError> {
    let opt = match packet::find_opt(&bytes) {
        Ok(Some(opt)) => opt,
        Ok(None) | Err(OptError::Placement) => return Ok(bytes),
        Err(OptError::Wire(e)) => return Err(e.into()),
        Err(OptError::Options) => return Err(ResponseError::BadRdata(rtype::OPT)),
    };
    let rdata = &bytes[opt.rdata.clone()];
    let mut hop_by_hop = false;
    for option in packet::edns_options(rdata) {
        let option = option.map_err(|_| ResponseError::BadRdata(rtype::OPT))?;
        hop_by_hop |= HOP_BY_HOP_OPTIONS.contains(&option.code);
    }
    // Most answers carry none of ours, and are returned without a copy.
    if hop_by_hop {
        let mut kept = Vec::with_capacity(rdata.len());
        for option in packet::edns_options(rdata).flatten() {
            if !HOP_BY_HOP_OPTIONS.contains(&option.code) {
                kept.extend_from_slice(&rdata[option.span]);
            }
        }
        let length_at = opt.rdata.start - 2;
        bytes[length_at..length_at + 2].copy_from_slice(&(kept.len() as u16).to_be_bytes());
        bytes.splice(opt.rdata, kept);
    }
    Ok(bytes)
}

/// One upstream response, analysed once: its bytes, where each RR's TTL sits, the CNAME/DNAME
/// chain names, how long it may be cached.
#[derive(Debug)]
pub struct CachedResponse {
    /// The response as the upstream sent it (id and all); at most 65535 bytes, so every offset
    /// fits a u16.
    bytes: Box<[u8]>,
    /// End of the question section: the client's question replaces `bytes[12..question_end]`.
    question_end: u16,
    /// Offsets of the TTL field of every RR except OPT, lowered on the way out.
    ttl_offsets: Box<[u16]>,
    /// Where the OPT record sits, kept in a truncated answer too (RFC 6891 6.1.1: an EDNS
    /// query gets an OPT back). Owned by the root, so it needs no name from elsewhere.
    opt: Option<(u16, u16)>,
    /// The chain names, concatenated (lowercase dotted, no trailing dot).
    chain: Box<[u8]>,
    /// End offset in `chain` of each name.
    chain_ends: Box<[u16]>,
    /// How many records the answer section holds: the first `answers` of `ttl_offsets` are
    /// theirs (an OPT there is refused), so that answer-address rules find the A and AAAA
    /// records from their TTL offsets without walking the message again, and without a list of
    /// their own to allocate.
    answers: u16,
    /// Whether the answer section holds an A or AAAA record (whose length, 4 or 16, `analyze`
    /// checked).
    has_addresses: bool,
    /// When the response was analysed: the TTLs in `bytes` are as of this instant.
    analyzed_at: Instant,
    /// How long it may be cached; None = not at all.
    cache_for: Option<Duration>,
    /// How long past `cache_for` it may be served stale.
    stale_for: Duration,
}

impl CachedResponse {
    /// Walks and analyses an upstream response in one pass over its bytes: checks it decodes
    /// (every name, and the data of the types clients read: A, AAAA, CNAME, DNAME, SOA, TXT),
    /// notes where each TTL sits and the CNAME/DNAME chain, and works out its cache lifetime.
    /// `now` is when it arrived; TTLs served later are lowered by the time since.
    pub fn analyze(bytes: Vec<u8>, now: Instant, limits: &TtlLimits) -> Result<Self, ResponseError> {
        if bytes.len() < HEADER_LEN {
            return Err(ResponseError::TooShort(bytes.len()));
        }
        if bytes.len() > MAX_MESSAGE {
            return Err(ResponseError::TooLong(bytes.len()));
        }
        if wire::flags(&bytes) & flag::QR == 0 {
            return Err(ResponseError::NotAResponse);
        }
        let [qd, an, ns, ar] = wire::counts(&bytes);
        if qd != 1 {
            return Err(ResponseError::QuestionCount(qd));
        }
        let bytes = strip_hop_by_hop_options(bytes)?;

        wire::check_name(&bytes, HEADER_LEN, &[])?;
        let question_end = wire::skip_question(&bytes, HEADER_LEN)?;
        let mut pos = question_end;
        let mut ttl_offsets = Vec::with_capacity(usize::from(an) + usize::from(ns) + usize::from(ar));
        let mut chain = Vec::new();
        let mut chain_ends = Vec::new();
        let mut has_addresses = false;
        let mut opt = None;
        let mut facts = Facts {
            truncated: wire::flags(&bytes) & flag::TC != 0,
            rcode: bytes[3] & 0x0F,
            extended_rcode: 0,
            lowest_answer: None,
            negative: None,
        };
        for (section, count) in [an, ns, ar].into_iter().enumerate() {
            for _ in 0..count {
                // Names may not lead into the TTLs lowered on the way out (this record's own
                // included, for the names in its data): they would change as the TTLs do.
                wire::check_name(&bytes, pos, &ttl_offsets)?;
                let (record, next) = wire::read_record(&bytes, pos)?;
                let ttl = ttl_at(&bytes, record.ttl_at);
                if record.rtype != rtype::OPT {
                    ttl_offsets.push(offset(record.ttl_at));
                } else if section != 2 || opt.is_some() || bytes.get(pos) != Some(&0) {
                    // RFC 6891 6.1.1: one OPT at most, in the additional section, owned by the
                    // root. Another is neither read as EDNS nor TTL-patched, and decoders refuse it.
                    return Err(ResponseError::MisplacedOpt);
                } else {
                    opt = Some((offset(pos), offset(next)));
                    // The OPT TTL's first byte holds the upper 8 bits of the response code.
                    facts.extended_rcode = bytes[record.ttl_at];
                }
                check_rdata(&bytes, &record, &ttl_offsets)?;
                match section {
                    0 => facts.lowest_answer = Some(facts.lowest_answer.map_or(ttl, |low: u32| low.min(ttl))),
                    1 if record.rtype == rtype::SOA && facts.negative.is_none() => {
                        facts.negative = Some(ttl.min(soa_minimum(&bytes, &record)));
                    }
                    _ => {}
                }
                if section == 0 && (record.rtype == rtype::A || record.rtype == rtype::AAAA) {
                    has_addresses = true;
                }
                let is_alias = record.rtype == rtype::CNAME || record.rtype == rtype::DNAME;
                if section == 0 && is_alias {
                    if chain_ends.len() == MAX_CHAIN {
                        return Err(ResponseError::ChainTooLong);
                    }
                    wire::read_name_dotted(&bytes, record.rdata.start, &mut chain)?;
                    chain_ends.push(offset(chain.len()));
                }
                pos = next;
            }
        }

        Ok(CachedResponse {
            cache_for: facts.lifetime(limits).map(|secs| Duration::from_secs(secs.into())),
            // Only what a real answer said may be served stale: not a cached SERVFAIL.
            stale_for: if facts.rcode == rcode::SERVFAIL {
                Duration::ZERO
            } else {
                Duration::from_secs(limits.stale.into())
            },
            bytes: bytes.into_boxed_slice(),
            question_end: offset(question_end),
            ttl_offsets: ttl_offsets.into_boxed_slice(),
            opt,
            chain: chain.into_boxed_slice(),
            chain_ends: chain_ends.into_boxed_slice(),
            answers: an,
            has_addresses,
            analyzed_at: now,
        })
    }

    /// How long it may be cached (None = not cacheable: TC set, rcode other than NOERROR or
    /// NXDOMAIN (SERVFAIL per `TtlLimits::servfail`), a zero TTL, a negative answer without SOA).
    pub fn cache_for(&self) -> Option<Duration> {
        self.cache_for
    }

    /// Whether the response has outlived its cache lifetime at `now` (always true for one that
    /// is not cacheable).
    pub fn is_expired(&self, now: Instant) -> bool {
        match self.cache_for {
            Some(life) => now.saturating_duration_since(self.analyzed_at) >= life,
            None => true,
        }
    }

    /// Whether the response has outlived the time it may be served stale, too (RFC 8767): the
    /// cache may drop it.
    pub fn is_past_stale(&self, now: Instant) -> bool {
        match self.cache_for {
            Some(life) => now.saturating_duration_since(self.analyzed_at) >= life + self.stale_for,
            None => true,
        }
    }

    /// Like [`CachedResponse::write_to`], for an answer served stale because no upstream
    /// answered (RFC 8767): every TTL is [`STALE_TTL`], and an EDNS answer whose OPT record comes
    /// last carries the Extended DNS Error "Stale Answer".
    pub fn write_stale_to(&self, id: u16, rd: bool, question: &[u8], max_len: usize, out: &mut Vec<u8>) {
        self.write_to(id, rd, question, self.analyzed_at, max_len, out);
        if out.len() < self.bytes.len() {
            return; // truncated: the question and OPT only
        }
        for &at in &self.ttl_offsets {
            let at = usize::from(at);
            if let Some(field) = out.get_mut(at..at + 4) {
                field.copy_from_slice(&STALE_TTL.to_be_bytes());
            }
        }
        if let Some((start, end)) = self.opt.map(|(s, e)| (usize::from(s), usize::from(e)))
            && end == out.len()
            && out.len() + 6 <= max_len.max(MIN_UDP_PAYLOAD)
            && let Some(rdlen) = wire::u16_at(out, start + 9)
        {
            out[start + 9..start + 11].copy_from_slice(&(rdlen + 6).to_be_bytes());
            for value in [OPTION_EDE, 2, EDE_STALE] {
                out.extend_from_slice(&value.to_be_bytes());
            }
        }
    }

    /// Writes the response for one client into `out` (cleared first): id set to `id`, RD copied
    /// from `rd`, the question section replaced by the client's own `question` bytes (name,
    /// type, class as the client sent them: same name modulo case, so the client's 0x20 case
    /// survives), every TTL (never the OPT pseudo-RR's) lowered by the whole seconds elapsed
    /// since `analyze`, saturating at 0.
    ///
    /// If the result is longer than `max_len` (the client's UDP limit; values under 512 are
    /// taken as 512), writes instead a truncated reply: the header with TC=1 and the question
    /// only, so the client retries over TCP. A `question` of another length than the stored one
    /// cannot be the same name and is ignored (the stored question is written) rather than
    /// breaking the compression pointers behind it.
    ///
    /// Does not allocate when `out` has capacity 65535.
    pub fn write_to(&self, id: u16, rd: bool, question: &[u8], now: Instant, max_len: usize, out: &mut Vec<u8>) {
        out.clear();
        let question_end = usize::from(self.question_end);
        let stored_question = &self.bytes[HEADER_LEN..question_end];
        let question = if question.len() == stored_question.len() {
            question
        } else {
            stored_question
        };

        out.extend_from_slice(&self.bytes[..HEADER_LEN]);
        out[..2].copy_from_slice(&id.to_be_bytes());
        let flags = (wire::flags(out) & !flag::RD) | if rd { flag::RD } else { 0 };
        wire::set_flags(out, flags);
        out.extend_from_slice(question);

        if self.bytes.len() > max_len.max(MIN_UDP_PAYLOAD) {
            let flags = wire::flags(out) | flag::TC;
            wire::set_flags(out, flags);
            // QDCOUNT stays 1; the other sections are dropped but for the OPT record.
            out[6..HEADER_LEN].fill(0);
            if let Some((start, end)) = self.opt {
                out.extend_from_slice(&self.bytes[usize::from(start)..usize::from(end)]);
                out[11] = 1;
            }
            return;
        }

        out.extend_from_slice(&self.bytes[question_end..]);
        let elapsed = now.saturating_duration_since(self.analyzed_at).as_secs();
        let elapsed = u32::try_from(elapsed).unwrap_or(u32::MAX);
        if elapsed == 0 {
            return;
        }
        for &at in &self.ttl_offsets {
            let at = usize::from(at);
            if let Some(field) = out.get_mut(at..at + 4) {
                let ttl = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
                field.copy_from_slice(&ttl.saturating_sub(elapsed).to_be_bytes());
            }
        }
    }

    /// The names the answer section's CNAME and DNAME records lead to (their targets), in
    /// answer order, lowercase dotted without trailing dot, for CNAME inspection against
    /// blocklists. Usually 0-3 names, never more than [`MAX_CHAIN`].
    pub fn chain(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.chain_ends.iter().copied());
        starts
            .zip(self.chain_ends.iter().copied())
            .map(|(start, end)| &self.chain[usize::from(start)..usize::from(end)])
    }

    /// The addresses of the answer section's A and AAAA records, in answer order, read from the
    /// stored bytes at the records' TTL offsets (type 4 bytes before, RDLENGTH 4 after, the data
    /// 6 after): no walk, no allocation.
    pub fn addresses(&self) -> impl Iterator<Item = std::net::IpAddr> + '_ {
        let answers = usize::from(self.answers).min(self.ttl_offsets.len());
        self.ttl_offsets[..answers].iter().filter_map(|&ttl_at| {
            let ttl_at = usize::from(ttl_at);
            let rtype = wire::u16_at(&self.bytes, ttl_at.checked_sub(4)?)?;
            let data = self.bytes.get(ttl_at + 6..)?;
            match (rtype, wire::u16_at(&self.bytes, ttl_at + 4)?) {
                (rtype::A, 4) => <[u8; 4]>::try_from(data.get(..4)?).ok().map(std::net::IpAddr::from),
                (rtype::AAAA, 16) => <[u8; 16]>::try_from(data.get(..16)?).ok().map(std::net::IpAddr::from),
                _ => None,
            }
        })
    }

    /// Whether the answer section holds an A or AAAA record.
    pub fn has_addresses(&self) -> bool {
        self.has_addresses
    }

    /// Whether the TC bit is set: the upstream cut the answer short for UDP.
    pub fn is_truncated(&self) -> bool {
        wire::flags(&self.bytes) & flag::TC != 0
    }

    /// The response code in the header (4 bits; the EDNS extension is not included).
    pub fn rcode(&self) -> u8 {
        self.bytes[3] & 0x0F
    }

    /// The memory this response takes, in bytes: its own fields, the heap data they own, and
    /// the `Arc` and allocator overhead around them. What the caches' byte budgets count.
    pub fn memory(&self) -> usize {
        /// Reference counts of the `Arc`, and a rough allocator overhead for each of the four
        /// boxed slices.
        const OVERHEAD: usize = 16 + 4 * 16;
        std::mem::size_of::<Self>()
            + OVERHEAD
            + self.bytes.len()
            + self.ttl_offsets.len() * 2
            + self.chain.len()
            + self.chain_ends.len() * 2
    }

    /// The response's length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a response has at least a header. Here because `len` is.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The response as the upstream sent it.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// An offset into a message of at most 65535 bytes (checked in `analyze`) or into the chain
/// (at most 32 names of 254 bytes).
fn offset(pos: usize) -> u16 {
    u16::try_from(pos).unwrap_or(u16::MAX)
}

/// A TTL as RFC 2181 section 8 reads it: values with the top bit set mean zero.
fn ttl_at(msg: &[u8], at: usize) -> u32 {
    let ttl = msg
        .get(at..at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    if ttl > i32::MAX as u32 { 0 } else { ttl }
}

/// Checks the data of the record types a client reads (an answer that a resolver library
/// cannot decode must not be cached and served to every client after): fixed sizes for A and
/// AAAA, one name filling the data for CNAME and DNAME, two names and five numbers for SOA,
/// character-strings filling the data for TXT. `ttls` as for `wire::check_name`.
fn check_rdata(msg: &[u8], record: &RecordPos, ttls: &[u16]) -> Result<(), ResponseError> {
    let rdata = &record.rdata;
    let fits = match record.rtype {
        rtype::A => rdata.len() == 4,
        rtype::AAAA => rdata.len() == 16,
        rtype::CNAME | rtype::DNAME => wire::check_name(msg, rdata.start, ttls)? == rdata.end,
        rtype::SOA => {
            let rname = wire::check_name(msg, rdata.start, ttls)?;
            rname < rdata.end && wire::check_name(msg, rname, ttls)? + 20 == rdata.end
        }
        rtype::TXT => msg.get(rdata.clone()).is_some_and(character_strings_fill),
        _ => true,
    };
    if fits {
        Ok(())
    } else {
        Err(ResponseError::BadRdata(record.rtype))
    }
}

/// Whether `data` is one or more character-strings (a length byte, then that many bytes) that
/// end exactly where it ends, as TXT data must be (RFC 1035 3.3.14). A decoder reads the strings
/// one by one and refuses a last one that runs past the data, or data left over.
fn character_strings_fill(data: &[u8]) -> bool {
    let mut at = 0;
    while let Some(&len) = data.get(at) {
        at += 1 + usize::from(len);
    }
    !data.is_empty() && at == data.len()
}

/// The MINIMUM field of an SOA record already checked by [`check_rdata`]: its last 4 bytes.
fn soa_minimum(msg: &[u8], record: &RecordPos) -> u32 {
    ttl_at(msg, record.rdata.end - 4)
}

/// What a response's cache lifetime depends on, gathered in the walk.
struct Facts {
    /// TC is set.
    truncated: bool,
    /// The header's 4-bit response code.
    rcode: u8,
    /// The upper 8 bits of the response code, from the OPT record (0 without one).
    extended_rcode: u8,
    /// The lowest TTL in the answer section, if it has records.
    lowest_answer: Option<u32>,
    /// min(TTL, MINIMUM) of the first SOA in the authority section, if there is one.
    negative: Option<u32>,
}

impl Facts {
    /// How many seconds the response may be cached, or None.
    ///
    /// Positive answers: the lowest answer TTL (and the negative TTL if an SOA rides along, as
    /// in a CNAME leading to NODATA), raised to `min` and capped at `max`. Negative answers
    /// (NXDOMAIN, or NOERROR without answers) per RFC 2308 section 5: min(SOA TTL, SOA MINIMUM)
    /// from the authority section (and no more than any CNAME in the answer), capped at
    /// `negative_max`; without an SOA they are not cached. A zero TTL from the upstream means
    /// "do not cache" and is not raised by `min`. An extended response code (BADVERS and the
    /// like) is not cached.
    fn lifetime(&self, limits: &TtlLimits) -> Option<u32> {
        if self.truncated || self.extended_rcode != 0 {
            return None;
        }
        let secs = match self.rcode {
            rcode::NOERROR if self.lowest_answer.is_some() => {
                let lowest = self.lowest_answer.into_iter().chain(self.negative).min().unwrap_or(0);
                if lowest == 0 {
                    return None;
                }
                lowest.max(limits.min).min(limits.max)
            }
            rcode::NOERROR | rcode::NXDOMAIN => {
                let lowest = self.negative?.min(self.lowest_answer.unwrap_or(u32::MAX));
                lowest.min(limits.negative_max)
            }
            rcode::SERVFAIL => limits.servfail.min(SERVFAIL_CAP),
            _ => return None,
        };
        (secs > 0).then_some(secs)
    }
}
