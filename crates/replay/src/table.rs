//! The query table: every query of a run encoded once, before the run, into one buffer, with the
//! source address each one is sent from. The hot loop only copies a query out and patches its id.

use std::collections::HashMap;
use std::net::IpAddr;

use sinkhole_dns::wire::HEADER_LEN;

/// Longest query the table holds: the send buffers are this big. Real queries are under 512 bytes.
pub(crate) const MAX_QUERY: usize = 4096;
/// Most queries one table holds (its offsets are 32-bit); a file with more is cut there.
pub(crate) const MAX_QUERIES: usize = 50_000_000;
/// Most bytes of queries one table holds (32-bit offsets).
const MAX_BYTES: usize = u32::MAX as usize;

/// Where one query sits in [`QueryTable::bytes`].
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Offset of its first byte.
    start: u32,
    /// Its length.
    len: u16,
    /// Offset (from the query's start) just after its question: answers are matched on it.
    question_end: u16,
    /// Index into [`QueryTable::sources`].
    source: u32,
}

/// Pre-encoded queries and their source addresses, read-only during the run (shared by every
/// sending thread).
#[derive(Debug, Default)]
pub struct QueryTable {
    /// All queries, back to back, each with id 0.
    bytes: Vec<u8>,
    /// One per query, in file order.
    entries: Vec<Entry>,
    /// Distinct source addresses, in order of first use.
    sources: Vec<IpAddr>,
    /// Index of each source in `sources`, while building.
    source_index: HashMap<IpAddr, u32>,
}

impl QueryTable {
    /// An empty table.
    pub fn new() -> QueryTable {
        QueryTable::default()
    }

    /// Adds one query (a whole DNS message with one question; its id is ignored) sent from
    /// `source`. Returns false, adding nothing, when the query does not fit (longer than
    /// [`MAX_QUERY`], the question cannot be walked, or the table is full).
    pub fn push(&mut self, query: &[u8], from: IpAddr) -> bool {
        if query.len() > MAX_QUERY || self.entries.len() >= MAX_QUERIES || self.bytes.len() + query.len() > MAX_BYTES {
            return false;
        }
        let Ok(question_end) = sinkhole_dns::wire::skip_question(query, HEADER_LEN) else {
            return false;
        };
        let next = self.sources.len() as u32;
        let source = *self.source_index.entry(from).or_insert(next);
        if source == next {
            self.sources.push(from);
        }
        self.entries.push(Entry {
            start: self.bytes.len() as u32,
            len: query.len() as u16,
            question_end: question_end as u16,
            source,
        });
        let start = self.bytes.len();
        self.bytes.extend_from_slice(query);
        self.bytes[start..start + 2].copy_from_slice(&[0, 0]);
        true
    }

    /// Number of queries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no query at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Query `i`'s bytes (id 0). Panics if `i >= len()`.
    pub fn query(&self, i: usize) -> &[u8] {
        let e = self.entries[i];
        &self.bytes[e.start as usize..][..usize::from(e.len)]
    }

    /// Query `i`'s question section, which a matching answer echoes.
    pub fn question(&self, i: usize) -> &[u8] {
        let e = self.entries[i];
        &self.bytes[e.start as usize..][HEADER_LEN..usize::from(e.question_end)]
    }

    /// The address query `i` is sent from.
    pub fn source(&self, i: usize) -> IpAddr {
        self.sources[self.entries[i].source as usize]
    }

    /// The distinct source addresses, in order of first use.
    pub fn sources(&self) -> &[IpAddr] {
        &self.sources
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sinkhole_dns::packet::encode_query;
    use sinkhole_dns::wire::rtype;

    #[test]
    fn table_keeps_queries_questions_and_sources() {
        let mut table = QueryTable::new();
        let mut out = Vec::new();
        let a: IpAddr = "127.10.0.5".parse().expect("literal");
        let b: IpAddr = "127.20.0.5".parse().expect("literal");
        encode_query("one.example", rtype::A, true, &mut out).expect("valid");
        out[0] = 0xab; // ids are zeroed in the table
        assert!(table.push(&out, a));
        encode_query("two.example", rtype::AAAA, false, &mut out).expect("valid");
        assert!(table.push(&out, b));
        assert!(table.push(&out, a));
        assert!(!table.push(&[0; 5], a), "no question");
        assert!(!table.push(&vec![0; MAX_QUERY + 1], a), "too long");
        assert_eq!(table.len(), 3);
        assert_eq!(table.sources(), &[a, b]);
        assert_eq!((table.source(0), table.source(1), table.source(2)), (a, b, a));
        assert_eq!(&table.query(0)[..2], &[0, 0]);
        assert_eq!(table.query(1), &out[..]);
        assert_eq!(table.question(1), &out[HEADER_LEN..]);
        assert_eq!(&table.question(0)[..4], b"\x03one");
    }
}
