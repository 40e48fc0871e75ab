//! Just enough of the DNS wire format (RFC 1035 4.1) to find positions in a message: where a
//! question ends, where each resource record's TTL sits, what a CNAME/DNAME points to; and the
//! constants (types, classes, header flags) that the packet path reads and writes.
//!
//! hickory-proto decodes whole messages but does not say where anything was in the buffer, and
//! the packet path and the cache read and patch bytes in place, so this walk exists beside it. It never decodes
//! RDATA beyond a name, never allocates except into a buffer the caller gives it, and every
//! loop is bounded by the message length, the 255-byte name limit or a pointer-hop limit.

use std::ops::Range;

/// MNAME of the SOA in sinkhole's negative block answers (NXDOMAIN, NODATA): a name of the
/// reserved `.invalid` TLD, so that a block answer can be told from an upstream's negative answer
/// even without the EDE that names the policy (a query without EDNS gets none).
pub const SINKHOLE_SOA_MNAME: &str = "sinkhole.invalid";

/// Length of the fixed message header.
pub const HEADER_LEN: usize = 12;
/// The largest DNS message (its length must fit the TCP 2-byte length prefix).
pub const MAX_MESSAGE: usize = 65535;
/// Smallest UDP payload any client must accept (RFC 1035), and what we assume without EDNS.
pub const MIN_UDP_PAYLOAD: usize = 512;
/// The UDP payload size we advertise in our OPT records and ask for in the queries we make
/// (the DNS Flag Day 2020 value: no IP fragmentation on common paths).
pub const EDNS_PAYLOAD: u16 = 1232;
/// Class IN.
pub const CLASS_IN: u16 = 1;
/// Class CHAOS (CH): `version.bind`, `hostname.bind`, `id.server` and their kind.
pub const CLASS_CH: u16 = 3;

/// Record types the daemon reads or writes itself.
pub mod rtype {
    /// IPv4 address.
    pub const A: u16 = 1;
    /// Alias (RFC 1035).
    pub const CNAME: u16 = 5;
    /// Start of authority.
    pub const SOA: u16 = 6;
    /// Host information: the record RFC 8482 answers ANY with.
    pub const HINFO: u16 = 13;
    /// Text strings.
    pub const TXT: u16 = 16;
    /// IPv6 address.
    pub const AAAA: u16 = 28;
    /// Subtree alias (RFC 6672).
    pub const DNAME: u16 = 39;
    /// The EDNS pseudo-record (RFC 6891), whose "TTL" is flags, not a lifetime.
    pub const OPT: u16 = 41;
    /// Incremental zone transfer: we are no authoritative server.
    pub const IXFR: u16 = 251;
    /// Full zone transfer: likewise.
    pub const AXFR: u16 = 252;
    /// Every record of the name (RFC 1035 QTYPE `*`).
    pub const ANY: u16 = 255;
}

/// Response codes (RFC 1035 4.1.1, RFC 6895) the daemon sends or reads.
pub mod rcode {
    /// No error.
    pub const NOERROR: u8 = 0;
    /// The query could not be read.
    pub const FORMERR: u8 = 1;
    /// No upstream answered.
    pub const SERVFAIL: u8 = 2;
    /// The name does not exist.
    pub const NXDOMAIN: u8 = 3;
    /// Opcode not implemented.
    pub const NOTIMP: u8 = 4;
    /// Not for this client.
    pub const REFUSED: u8 = 5;
}

/// Header flag bits in the second 16-bit word (RFC 1035 4.1.1).
pub mod flag {
    /// Response.
    pub const QR: u16 = 0x8000;
    /// Authoritative answer.
    pub const AA: u16 = 0x0400;
    /// Truncated.
    pub const TC: u16 = 0x0200;
    /// Recursion desired.
    pub const RD: u16 = 0x0100;
    /// Recursion available.
    pub const RA: u16 = 0x0080;
    /// Authentic data (RFC 4035).
    pub const AD: u16 = 0x0020;
    /// Checking disabled (RFC 4035).
    pub const CD: u16 = 0x0010;
}

/// A name on the wire is at most 255 bytes (RFC 1035 3.1), so its dotted text form at most 253.
pub const MAX_NAME_WIRE: usize = 255;
/// Compression pointers followed in one name before giving up: a legal name has at most 127
/// labels, so more hops than that can only be a loop.
const MAX_POINTERS: usize = 127;

/// Why a message could not be walked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message ends in the middle of something.
    #[error("message ends inside a {0}")]
    Truncated(&'static str),
    /// A label length byte uses the reserved 0b01/0b10 prefixes.
    #[error("name has a label of unknown type")]
    BadLabel,
    /// A name is longer than 255 bytes (or pointers loop until it is).
    #[error("name is longer than 255 bytes")]
    NameTooLong,
    /// A compression pointer points forward or the chain of pointers does not end.
    #[error("name has a bad compression pointer")]
    BadPointer,
}

/// The header's flag word (QR, opcode, AA, TC, RD, RA, AD, CD, rcode); 0 if the header is short.
pub fn flags(msg: &[u8]) -> u16 {
    u16_at(msg, 2).unwrap_or(0)
}

/// Replaces the header's flag word (nothing if the header is short).
pub fn set_flags(msg: &mut [u8], flags: u16) {
    if let Some(word) = msg.get_mut(2..4) {
        word.copy_from_slice(&flags.to_be_bytes());
    }
}

/// Appends a big-endian u16.
pub fn push_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

/// Appends a dotted name (a trailing dot or none) in uncompressed wire form. The name must be
/// valid already (labels of 1 to 63 bytes, 255 in all: config-checked or our own constants);
/// `packet::encode_query` is the checking encoder for names from input.
pub fn push_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}

/// The big-endian u16 at `pos`, if the message is long enough.
pub fn u16_at(msg: &[u8], pos: usize) -> Option<u16> {
    let b = msg.get(pos..pos.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// The four section counts of the header (QD, AN, NS, AR); zeros if the header is short.
pub fn counts(msg: &[u8]) -> [u16; 4] {
    [4, 6, 8, 10].map(|pos| u16_at(msg, pos).unwrap_or(0))
}

/// The position just after the name that starts at `pos`. A compression pointer ends the name
/// in place, so it is not followed.
pub fn skip_name(msg: &[u8], mut pos: usize) -> Result<usize, WireError> {
    let mut wire_len = 1;
    loop {
        let len = usize::from(*msg.get(pos).ok_or(WireError::Truncated("name"))?);
        match len & 0xC0 {
            0x00 if len == 0 => return Ok(pos + 1),
            0x00 => {
                wire_len += len + 1;
                if wire_len > MAX_NAME_WIRE {
                    return Err(WireError::NameTooLong);
                }
                pos += 1 + len;
            }
            0xC0 if pos + 2 <= msg.len() => return Ok(pos + 2),
            0xC0 => return Err(WireError::Truncated("name")),
            _ => return Err(WireError::BadLabel),
        }
    }
}

/// Appends the name at `pos` to `out` as lowercase dotted ASCII without the trailing dot
/// (`b"www.example.com"`; the root is empty), following compression pointers.
pub fn read_name_dotted(msg: &[u8], pos: usize, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    walk_name(msg, pos, &[], |label| {
        if out.len() > start {
            out.push(b'.');
        }
        out.extend(label.iter().map(u8::to_ascii_lowercase));
    })?;
    Ok(())
}

/// Checks the name at `pos` as a decoder would, following compression pointers (each must
/// point back, the whole name fit 255 bytes), and returns the position just after it in place.
///
/// `ttls` (ascending) are the offsets of TTL fields that will be rewritten: no byte of the name
/// may lie in one, or the name would change when they do (only a pointer can lead there).
pub fn check_name(msg: &[u8], pos: usize, ttls: &[u16]) -> Result<usize, WireError> {
    walk_name(msg, pos, ttls, |_| {})
}

/// Walks the name at `pos` label by label (`on_label` gets each, root excluded), following
/// compression pointers; returns the position just after the name in place (after its first
/// pointer, or its root label).
///
/// Pointers follow the rules decoders apply (hickory-proto's among them), so that what is
/// accepted here decodes for every client: a pointer points before the start of the run of
/// labels it ends, and the labels it leads to end before that start too (no overlap).
fn walk_name(msg: &[u8], mut pos: usize, ttls: &[u16], mut on_label: impl FnMut(&[u8])) -> Result<usize, WireError> {
    // Whether bytes `start..end` reach into one of the 4-byte TTL fields.
    let in_ttl = |start: usize, end: usize| {
        let first = ttls.partition_point(|&ttl| usize::from(ttl) + 4 <= start);
        ttls.get(first).is_some_and(|&ttl| usize::from(ttl) < end)
    };
    let mut end = None;
    let mut wire_len = 1;
    let mut hops = 0;
    // Where the current run of labels began, and (after a pointer) where the run that pointed
    // here began: the labels read now must end before it.
    let mut run_start = pos;
    let mut limit = usize::MAX;
    loop {
        if pos >= limit {
            return Err(WireError::BadPointer);
        }
        let len = usize::from(*msg.get(pos).ok_or(WireError::Truncated("name"))?);
        let span = match len & 0xC0 {
            0x00 => 1 + len,
            _ => 2,
        };
        if in_ttl(pos, pos + span) {
            return Err(WireError::BadPointer);
        }
        match len & 0xC0 {
            0x00 if len == 0 => return Ok(end.unwrap_or(pos + 1)),
            0x00 => {
                wire_len += len + 1;
                if wire_len > MAX_NAME_WIRE {
                    return Err(WireError::NameTooLong);
                }
                on_label(msg.get(pos + 1..pos + 1 + len).ok_or(WireError::Truncated("name"))?);
                pos += 1 + len;
            }
            0xC0 => {
                let low = *msg.get(pos + 1).ok_or(WireError::Truncated("name"))?;
                let target = ((len & 0x3F) << 8) | usize::from(low);
                hops += 1;
                // A pointer must point back (RFC 1035 4.1.4 "a prior occurrence"), before the
                // labels it ends, so the runs only ever move back: no loop. Never into the header:
                // no name is there, and a name made of header bytes would change with the id and
                // flags we rewrite.
                if target < HEADER_LEN || target >= run_start || hops > MAX_POINTERS {
                    return Err(WireError::BadPointer);
                }
                end.get_or_insert(pos + 2);
                limit = run_start;
                run_start = target;
                pos = target;
            }
            _ => return Err(WireError::BadLabel),
        }
    }
}

/// The position just after the question (name, type, class) that starts at `pos`.
pub fn skip_question(msg: &[u8], pos: usize) -> Result<usize, WireError> {
    let end = skip_name(msg, pos)? + 4;
    if end > msg.len() {
        return Err(WireError::Truncated("question"));
    }
    Ok(end)
}

/// The fixed fields of one resource record and where its parts are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordPos {
    /// TYPE.
    pub rtype: u16,
    /// CLASS (for OPT: the requester's UDP payload size).
    pub rclass: u16,
    /// Offset of the 4-byte TTL.
    pub ttl_at: usize,
    /// The RDATA bytes' range.
    pub rdata: Range<usize>,
}

/// Reads the resource record that starts at `pos`; returns it and the position after it.
pub fn read_record(msg: &[u8], pos: usize) -> Result<(RecordPos, usize), WireError> {
    let fixed = skip_name(msg, pos)?;
    let truncated = WireError::Truncated("resource record");
    let rtype = u16_at(msg, fixed).ok_or(truncated)?;
    let rclass = u16_at(msg, fixed + 2).ok_or(truncated)?;
    let rdlen = usize::from(u16_at(msg, fixed + 8).ok_or(truncated)?);
    let rdata = fixed + 10..fixed + 10 + rdlen;
    if rdata.end > msg.len() {
        return Err(truncated);
    }
    let next = rdata.end;
    let record = RecordPos {
        rtype,
        rclass,
        ttl_at: fixed + 4,
        rdata,
    };
    Ok((record, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `names` after a 12-byte header: names start at 12, and pointers point past the header.
    fn message(names: &[u8]) -> Vec<u8> {
        let mut msg = vec![0; HEADER_LEN];
        msg.extend_from_slice(names);
        msg
    }

    /// `www.Example.com` at 12, then a pointer to `Example.com` at offset 16.
    const NAMES: &[u8] = b"\x03www\x07Example\x03com\x00\xC0\x10";

    #[test]
    fn skip_name_stops_at_root_and_pointer() {
        let names = message(NAMES);
        assert_eq!(skip_name(&names, 12), Ok(29));
        assert_eq!(skip_name(&names, 29), Ok(31));
        assert_eq!(skip_name(&names[..22], 12), Err(WireError::Truncated("name")));
        assert_eq!(skip_name(b"\x40abc", 0), Err(WireError::BadLabel));
    }

    #[test]
    fn read_name_lowercases_and_follows_pointers() {
        let names = message(NAMES);
        let mut out = Vec::new();
        read_name_dotted(&names, 12, &mut out).unwrap();
        assert_eq!(out, b"www.example.com");
        out.clear();
        read_name_dotted(&names, 29, &mut out).unwrap();
        assert_eq!(out, b"example.com");
        out.clear();
        read_name_dotted(b"\x00", 0, &mut out).unwrap();
        assert_eq!(out, b"");
    }

    #[test]
    fn check_name_ends_after_the_first_pointer_and_checks_its_target() {
        let names = message(NAMES);
        assert_eq!(check_name(&names, 12, &[]), Ok(29));
        assert_eq!(check_name(&names, 29, &[]), Ok(31));
        assert_eq!(
            check_name(&message(b"\x01a\xC0\x11"), 12, &[]),
            Err(WireError::BadPointer)
        );
        assert_eq!(check_name(&message(b"\x01a\x00\xC0\x0C"), 15, &[]), Ok(17));
        assert_eq!(check_name(&message(b"\x01a\x00\xC0\x0C"), 12, &[]), Ok(15));
    }

    #[test]
    fn pointers_into_the_header_are_refused() {
        // Found by the upstream_answer fuzz target: an answer whose owner name points at offset 1,
        // so that the id's low byte is a label length and the flags and counts are its label.
        // Served with another id or RD bit, the record's owner name changed.
        let mut msg = b"\x42\x06\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00".to_vec();
        msg.extend_from_slice(b"\x03www\x07example\x03com\x00\x00\x01\x00\x01");
        msg.extend_from_slice(b"\xC0\x01\x00\x01\x00\x01\x00\x01\x51\x80\x00\x04\xC0\x00\x02\x01");
        assert_eq!(check_name(&msg, 33, &[]), Err(WireError::BadPointer));
        assert_eq!(read_name_dotted(&msg, 33, &mut Vec::new()), Err(WireError::BadPointer));
        // The question at 12 is the first place a name can be.
        assert_eq!(check_name(&msg, 12, &[]), Ok(29));
        msg[34] = 12;
        assert_eq!(check_name(&msg, 33, &[]), Ok(35));
        msg[34] = 11;
        assert_eq!(check_name(&msg, 33, &[]), Err(WireError::BadPointer));
    }

    #[test]
    fn pointers_point_before_the_labels_they_end_and_lead_to_labels_that_end_before_them() {
        // Found by the upstream_answer fuzz target: names hickory-proto refuses (so TCP clients
        // got SERVFAIL) that were accepted and relayed to UDP clients.
        // A pointer into the run of labels it ends: at 16, inside the name that starts at 15.
        let inside = message(b"\x01a\x00\x03\x01y\x00\xC0\x10");
        assert_eq!(check_name(&inside, 15, &[]), Err(WireError::BadPointer));
        // A pointer to 12, whose label runs over the start of the name that pointed there (15).
        let overlap = message(b"\x03xy\x02\x00q\xC0\x0C");
        assert_eq!(check_name(&overlap, 15, &[]), Err(WireError::BadPointer));
        assert_eq!(
            read_name_dotted(&overlap, 15, &mut Vec::new()),
            Err(WireError::BadPointer)
        );
        // Chains of pointers, each to an earlier name, are fine.
        let chain = message(b"\x03com\x00\x07example\xC0\x0C\x03www\xC0\x11");
        let mut out = Vec::new();
        assert_eq!(walk_name(&chain, 27, &[], |l| out.push(l.to_vec())), Ok(33));
        assert_eq!(out, [b"www".to_vec(), b"example".to_vec(), b"com".to_vec()]);
    }

    #[test]
    fn names_may_not_lead_into_the_ttls_that_are_rewritten() {
        // A name at 12, then a record's fixed fields: type (15), class (17), TTL (19), RDLENGTH
        // (23). The TTL's bytes read as a name ("a"), and the pointer at 25 leads there.
        let mut msg = message(b"\x01x\x00\x00\x01\x00\x01\x01a\x00\x00\x00\x00\xC0\x13");
        assert_eq!(check_name(&msg, 25, &[]), Ok(27));
        assert_eq!(check_name(&msg, 25, &[19]), Err(WireError::BadPointer));
        // Reaching into the TTL from before it counts too: a pointer to the root label at 14
        // reads nothing of it; one to 15, where a label of 3 bytes starts, runs into it.
        msg[26] = 14;
        assert_eq!(check_name(&msg, 25, &[19]), Ok(27));
        msg[15] = 3;
        msg[26] = 15;
        assert_eq!(check_name(&msg, 25, &[]), Ok(27));
        assert_eq!(check_name(&msg, 25, &[19]), Err(WireError::BadPointer));
        assert_eq!(check_name(&msg, 25, &[2, 8, 27]), Ok(27));
    }

    #[test]
    fn read_name_rejects_loops_and_forward_pointers() {
        let mut out = Vec::new();
        // A pointer to itself.
        assert_eq!(
            read_name_dotted(&message(b"\xC0\x0C"), 12, &mut out),
            Err(WireError::BadPointer)
        );
        // A forward pointer.
        assert_eq!(
            read_name_dotted(&message(b"\xC0\x0E\x00"), 12, &mut out),
            Err(WireError::BadPointer)
        );
        // A label followed by a pointer back to it: a loop, refused at the pointer.
        out.clear();
        assert_eq!(
            read_name_dotted(&message(b"\x01a\xC0\x0C"), 12, &mut out),
            Err(WireError::BadPointer)
        );
        // Too long without pointers.
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert_eq!(skip_name(&long, 0), Err(WireError::NameTooLong));
        assert_eq!(read_name_dotted(&long, 0, &mut out), Err(WireError::NameTooLong));
    }
}
