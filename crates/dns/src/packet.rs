//! What the hot path reads of a query, straight from the packet buffer: the header, the one
//! question (its name lowercased into an inline buffer) and the EDNS OPT record.
//!
//! It never decodes the whole message and never allocates: a block answer or a cache hit needs
//! nothing more than this. Whole messages (upstream answers) are read with hickory-proto in
//! `cache`, not here. Every read is bounds-checked; any input gives a `Query` or a `ParseError`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;

use crate::wire::{self, CLASS_IN, EDNS_PAYLOAD, HEADER_LEN, MAX_NAME_WIRE, MIN_UDP_PAYLOAD, flag, rtype, u16_at};

/// A query name as lowercase dotted ASCII without the trailing dot ("www.tiktok.com"; the root is
/// empty), held inline so that reading it costs no allocation.
#[derive(Clone)]
pub struct QName {
    buf: [u8; MAX_NAME_WIRE],
    len: u8,
}

impl QName {
    /// The name bytes, as `lists::DomainSet::lookup` and the cache key take them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// The name for logs and reports (non-UTF-8 bytes shown as U+FFFD; names are ASCII in practice).
    pub fn to_string_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }

    /// Builds a name from dotted text (as `explain` gives it, or a CNAME target from the cache);
    /// lowercased, trailing dot removed. None if it is longer than a DNS name can be.
    pub fn from_dotted(text: impl AsRef<[u8]>) -> Option<QName> {
        let text = text.as_ref();
        let text = text.strip_suffix(b".").unwrap_or(text);
        if text.len() > MAX_NAME_WIRE - 2 {
            return None;
        }
        let mut name = QName {
            buf: [0; MAX_NAME_WIRE],
            len: 0,
        };
        for (slot, b) in name.buf.iter_mut().zip(text) {
            *slot = b.to_ascii_lowercase();
        }
        name.len = u8::try_from(text.len()).ok()?;
        Some(name)
    }
}

impl fmt::Debug for QName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QName({:?})", self.to_string_lossy())
    }
}

/// The client's EDNS parameters (RFC 6891), which shape our answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// Largest UDP answer the client accepts (never below 512).
    pub udp_size: u16,
    /// DNSSEC OK: the client wants signatures.
    pub dnssec_ok: bool,
    /// The EDNS Client Subnet option, if the query has one that reads (a malformed one is as
    /// none): who a relay says the client is, taken only from a trusted relay.
    pub client_subnet: Option<ClientSubnet>,
}

/// The EDNS option code of Client Subnet (RFC 7871).
pub const OPTION_CLIENT_SUBNET: u16 = 8;

/// An EDNS Client Subnet option (RFC 7871 6): the client's address cut to a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientSubnet {
    /// The address, its bits past `source_prefix` zeroed.
    pub address: IpAddr,
    /// SOURCE PREFIX-LENGTH: how many leading bits of `address` the relay states.
    pub source_prefix: u8,
}

/// Reads the data of a Client Subnet option: FAMILY (1 IPv4, 2 IPv6), SOURCE PREFIX-LENGTH,
/// SCOPE PREFIX-LENGTH, then exactly as many address bytes as the prefix needs. None for
/// anything else (another family, a prefix longer than the address, a wrong byte count).
pub fn client_subnet(data: &[u8]) -> Option<ClientSubnet> {
    let (&family, rest) = data.split_first()?;
    let (&family_low, rest) = rest.split_first()?;
    let (&source_prefix, rest) = rest.split_first()?;
    let (_scope, address) = rest.split_first()?;
    let bits = match (family, family_low) {
        (0, 1) => 32,
        (0, 2) => 128,
        _ => return None,
    };
    if source_prefix > bits || address.len() != usize::from(source_prefix).div_ceil(8) {
        return None;
    }
    let mut octets = [0u8; 16];
    octets[..address.len()].copy_from_slice(address);
    // Bits past the prefix must be zero (RFC 7871 6); zeroed here rather than trusted.
    let keep = u128::MAX.checked_shl(128 - u32::from(source_prefix)).unwrap_or(0);
    let masked = (u128::from_be_bytes(octets) & keep).to_be_bytes();
    let address = if bits == 32 {
        IpAddr::V4(Ipv4Addr::new(masked[0], masked[1], masked[2], masked[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(masked))
    };
    Some(ClientSubnet { address, source_prefix })
}

/// Removes every EDNS option with `code` from the OPT record of `message` and fixes the record's
/// RDLENGTH. Returns how many were removed; a message whose OPT record or options do not read
/// is left as it is (0).
pub fn strip_edns_option(message: &mut Vec<u8>, code: u16) -> usize {
    let Ok(Some(opt)) = find_opt(message) else {
        return 0;
    };
    // All options must read before any is removed: stopping half-way would leave RDLENGTH
    // counting bytes that are gone.
    let readable = message
        .get(opt.rdata.clone())
        .is_some_and(|rdata| edns_options(rdata).all(|o| o.is_ok()));
    if !readable {
        return 0;
    }
    let mut removed = 0;
    let mut at = opt.rdata.start;
    let mut end = opt.rdata.end;
    while at < end {
        let Some(option) = edns_options(&message[at..end]).next().and_then(Result::ok) else {
            break;
        };
        let len = option.span.len();
        if option.code == code {
            message.drain(at..at + len);
            end -= len;
            removed += 1;
        } else {
            at += len;
        }
    }
    if removed > 0
        && let Ok(rdlength) = u16::try_from(end - opt.rdata.start)
        && let Some(field) = message.get_mut(opt.rdata.start - 2..opt.rdata.start)
    {
        field.copy_from_slice(&rdlength.to_be_bytes());
    }
    removed
}

/// A query, read from its packet.
#[derive(Clone, Debug)]
pub struct Query {
    /// Transaction id, echoed in the answer.
    pub id: u16,
    /// The header's flag word as sent (RD and CD are echoed).
    pub flags: u16,
    /// The question name, lowercased.
    pub name: QName,
    /// The question type.
    pub qtype: u16,
    /// The question class.
    pub qclass: u16,
    /// Where the question sits in the packet (12..end): echoed verbatim, keeping the client's case.
    pub question: Range<usize>,
    /// The OPT record, if the client sent one.
    pub edns: Option<Edns>,
}

impl Query {
    /// Whether the client asked for recursion.
    pub fn rd(&self) -> bool {
        self.flags & flag::RD != 0
    }

    /// Whether the client asked us not to validate (passed upstream and into the cache key).
    pub fn cd(&self) -> bool {
        self.flags & flag::CD != 0
    }

    /// The largest answer this client takes over UDP.
    pub fn max_udp_len(&self) -> usize {
        self.edns
            .map_or(MIN_UDP_PAYLOAD, |e| usize::from(e.udp_size).max(MIN_UDP_PAYLOAD))
    }
}

/// Why a packet is not a query we can answer normally. Each kind maps to one reaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Shorter than a header: nothing to answer to, drop.
    #[error("packet shorter than a DNS header")]
    Short,
    /// The QR bit is set: a response, never answered (reflection loops).
    #[error("packet is a response, not a query")]
    Response,
    /// An opcode other than QUERY: answer NOTIMP.
    #[error("opcode {0} is not supported")]
    Opcode(u8),
    /// Not exactly one question, or a question that does not parse: answer FORMERR.
    #[error("malformed question section")]
    Question,
    /// A broken or duplicated OPT record, or records that run past the packet: answer FORMERR.
    #[error("malformed additional section")]
    Additional,
}

/// Why a name and type could not be encoded as a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// An empty label (`a..b`), or a leading dot.
    #[error("the name has an empty label")]
    EmptyLabel,
    /// A label over 63 bytes.
    #[error("a label is longer than 63 bytes")]
    LabelTooLong,
    /// A name over 255 bytes on the wire.
    #[error("the name is longer than 255 bytes")]
    NameTooLong,
}

/// Appends a query for `name` (dotted, trailing dot optional, "." the root) and `qtype`, class
/// IN, id 0, RD set, with an OPT record (payload [`EDNS_PAYLOAD`], no options) when `edns`.
/// `out` is cleared first.
pub fn encode_query(name: &str, qtype: u16, edns: bool, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    out.clear();
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&flag::RD.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns)]);
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if !trimmed.is_empty() {
        for label in trimmed.split('.') {
            if label.is_empty() {
                return Err(EncodeError::EmptyLabel);
            }
            if label.len() > 63 {
                return Err(EncodeError::LabelTooLong);
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    if out.len() - HEADER_LEN > 255 {
        return Err(EncodeError::NameTooLong);
    }
    out.extend_from_slice(&qtype.to_be_bytes());
    out.extend_from_slice(&CLASS_IN.to_be_bytes());
    if edns {
        out.push(0);
        out.extend_from_slice(&rtype::OPT.to_be_bytes());
        out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    }
    Ok(())
}

impl ParseError {
    /// Whether an answer may be sent at all (false for short packets and responses).
    pub fn answerable(self) -> bool {
        !matches!(self, ParseError::Short | ParseError::Response)
    }
}

/// The header fields of any packet at least 12 bytes long: id, flags and the four counts.
pub fn header(packet: &[u8]) -> Option<(u16, u16, [u16; 4])> {
    let id = u16_at(packet, 0)?;
    let flags = u16_at(packet, 2)?;
    let counts = [
        u16_at(packet, 4)?,
        u16_at(packet, 6)?,
        u16_at(packet, 8)?,
        u16_at(packet, 10)?,
    ];
    Some((id, flags, counts))
}

/// Reads a query packet.
pub fn parse(packet: &[u8]) -> Result<Query, ParseError> {
    let (id, flags, [qdcount, ancount, nscount, arcount]) = header(packet).ok_or(ParseError::Short)?;
    if flags & flag::QR != 0 {
        return Err(ParseError::Response);
    }
    let opcode = ((flags >> 11) & 0xf) as u8;
    if opcode != 0 {
        return Err(ParseError::Opcode(opcode));
    }
    if qdcount != 1 {
        return Err(ParseError::Question);
    }
    let mut name = QName {
        buf: [0; MAX_NAME_WIRE],
        len: 0,
    };
    let after_name = read_question_name(packet, &mut name).ok_or(ParseError::Question)?;
    let qtype = u16_at(packet, after_name).ok_or(ParseError::Question)?;
    let qclass = u16_at(packet, after_name + 2).ok_or(ParseError::Question)?;
    let question_end = after_name + 4;

    let opt = opt_after(packet, question_end, u32::from(ancount) + u32::from(nscount), arcount)
        .map_err(|_| ParseError::Additional)?;
    let edns = match opt {
        Some(opt) => {
            let ttl_flags = u16_at(packet, opt.ttl_at + 2).ok_or(ParseError::Additional)?;
            // The options are read only when there are any: most queries carry none.
            let client_subnet = packet
                .get(opt.rdata.clone())
                .filter(|rdata| !rdata.is_empty())
                .and_then(|rdata| {
                    edns_options(rdata)
                        .map_while(Result::ok)
                        .find(|o| o.code == OPTION_CLIENT_SUBNET)
                        .and_then(|o| client_subnet(o.data))
                });
            Some(Edns {
                udp_size: opt.udp_size.max(MIN_UDP_PAYLOAD as u16),
                dnssec_ok: ttl_flags & 0x8000 != 0,
                client_subnet,
            })
        }
        None => None,
    };
    Ok(Query {
        id,
        flags,
        name,
        qtype,
        qclass,
        question: HEADER_LEN..question_end,
        edns,
    })
}

/// The OPT record (RFC 6891) of a message: where its fields sit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptRecord {
    /// Offset of the record (its owner name, the root) in the message.
    pub at: usize,
    /// Offset just past the record.
    pub end: usize,
    /// The CLASS field: the sender's UDP payload size, as sent.
    pub udp_size: u16,
    /// Offset of the 4-byte TTL field: extended rcode, version, and the flags (DO is the top
    /// bit of its third byte).
    pub ttl_at: usize,
    /// Where its options sit (see [`edns_options`]).
    pub rdata: Range<usize>,
}

/// Why a message's OPT record or its options cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OptError {
    /// A record before or in the additional section does not read.
    #[error(transparent)]
    Wire(#[from] wire::WireError),
    /// A second OPT record, or one not owned by the root (RFC 6891 6.1.1).
    #[error("a second OPT record, or one not owned by the root")]
    Placement,
    /// The options do not fill the record's data exactly (RFC 6891 6.1.2).
    #[error("EDNS options that do not fill the OPT record")]
    Options,
}

/// Finds the OPT record of a message (a query or an answer): the one walker of OPT records.
/// Skips the question section and the answer and authority records, then reads the additional
/// section, which may hold one OPT at most, owned by the root. Its options are not read here:
/// [`edns_options`] walks them.
pub fn find_opt(message: &[u8]) -> Result<Option<OptRecord>, OptError> {
    let [qd, an, ns, ar] = wire::counts(message);
    let mut at = HEADER_LEN;
    for _ in 0..qd {
        at = wire::skip_question(message, at)?;
    }
    opt_after(message, at, u32::from(an) + u32::from(ns), ar)
}

/// [`find_opt`] from `at`, where `records` answer and authority records come before the
/// `additional` ones: `parse` has read the question already.
fn opt_after(message: &[u8], mut at: usize, records: u32, additional: u16) -> Result<Option<OptRecord>, OptError> {
    for _ in 0..records {
        at = wire::read_record(message, at)?.1;
    }
    let mut opt = None;
    for _ in 0..additional {
        let (record, next) = wire::read_record(message, at)?;
        if record.rtype == rtype::OPT {
            if opt.is_some() || message.get(at) != Some(&0) {
                return Err(OptError::Placement);
            }
            opt = Some(OptRecord {
                at,
                end: next,
                udp_size: record.rclass,
                ttl_at: record.ttl_at,
                rdata: record.rdata,
            });
        }
        at = next;
    }
    Ok(opt)
}

/// One EDNS option of an OPT record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdnsOption<'a> {
    /// The option code (15: Extended DNS Error, 10: COOKIE, ...).
    pub code: u16,
    /// Its data.
    pub data: &'a [u8],
    /// Where the whole option (code, length, data) sits in the record's data.
    pub span: Range<usize>,
}

/// The options of an OPT record's data (`&message[opt.rdata]`), in order. An option that runs
/// past the data gives [`OptError::Options`], and nothing follows it.
pub fn edns_options(rdata: &[u8]) -> EdnsOptions<'_> {
    EdnsOptions { rdata, at: 0 }
}

/// Iterator of [`edns_options`].
pub struct EdnsOptions<'a> {
    rdata: &'a [u8],
    at: usize,
}

impl<'a> Iterator for EdnsOptions<'a> {
    type Item = Result<EdnsOption<'a>, OptError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.at >= self.rdata.len() {
            return None;
        }
        let start = self.at;
        let option = u16_at(self.rdata, start)
            .zip(u16_at(self.rdata, start + 2))
            .and_then(|(code, len)| {
                let data = start + 4..start + 4 + usize::from(len);
                Some(EdnsOption {
                    code,
                    data: self.rdata.get(data.clone())?,
                    span: start..data.end,
                })
            });
        // A broken option ends the walk.
        self.at = option.as_ref().map_or(self.rdata.len(), |o| o.span.end);
        Some(option.ok_or(OptError::Options))
    }
}

/// Reads the question name at offset 12 into `name`, lowercased and dotted; returns the offset
/// after it. Compression pointers are refused: nothing precedes the question to point at. So is
/// a label with a dot in it: dotted, `x.tiktok` + `com` would be `x` + `tiktok` + `com`, the same
/// list matches and the same cache key for another name.
fn read_question_name(packet: &[u8], name: &mut QName) -> Option<usize> {
    let mut at = HEADER_LEN;
    let mut out = 0usize;
    loop {
        let len = usize::from(*packet.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 || at - HEADER_LEN + len >= MAX_NAME_WIRE {
            return None;
        }
        let label = packet.get(at..at + len)?;
        if label.contains(&b'.') {
            return None;
        }
        if out > 0 {
            name.buf[out] = b'.';
            out += 1;
        }
        for (slot, b) in name.buf[out..out + len].iter_mut().zip(label) {
            *slot = b.to_ascii_lowercase();
        }
        out += len;
        at += len;
    }
    name.len = u8::try_from(out).ok()?;
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::rtype;
    use hickory_proto::op::Message;
    use hickory_proto::rr::RecordType;

    /// A query packet as clients send it: header, one question, optional OPT.
    fn query_bytes(id: u16, name: &str, qtype: u16, edns: Option<(u16, bool)>) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&flag::RD.to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
        for label in name.split('.').filter(|l| !l.is_empty()) {
            p.push(label.len() as u8);
            p.extend_from_slice(label.as_bytes());
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        if let Some((size, dok)) = edns {
            p.push(0);
            p.extend_from_slice(&rtype::OPT.to_be_bytes());
            p.extend_from_slice(&size.to_be_bytes());
            p.extend_from_slice(&[0, 0, if dok { 0x80 } else { 0 }, 0, 0, 0]);
        }
        p
    }

    #[test]
    fn reads_name_type_and_edns() {
        let p = query_bytes(0xbeef, "WWW.TikTok.com", rtype::AAAA, Some((1232, true)));
        let q = parse(&p).expect("valid query");
        assert_eq!(q.id, 0xbeef);
        assert_eq!(q.name.as_bytes(), b"www.tiktok.com");
        assert_eq!(q.qtype, rtype::AAAA);
        assert_eq!(q.qclass, CLASS_IN);
        assert_eq!(&p[q.question.clone()][1..4], b"WWW", "question keeps the client's case");
        assert_eq!(
            q.edns,
            Some(Edns {
                udp_size: 1232,
                dnssec_ok: true,
                client_subnet: None,
            })
        );
        assert_eq!(q.max_udp_len(), 1232);
        assert!(q.rd());
    }

    #[test]
    fn without_edns_the_limit_is_512_and_tiny_sizes_are_raised() {
        let q = parse(&query_bytes(1, "example.com", rtype::A, None)).expect("valid");
        assert_eq!((q.edns, q.max_udp_len()), (None, 512));
        let q = parse(&query_bytes(1, "example.com", rtype::A, Some((100, false)))).expect("valid");
        assert_eq!(q.max_udp_len(), 512);
    }

    #[test]
    fn root_query() {
        let q = parse(&query_bytes(1, "", 2, None)).expect("valid");
        assert_eq!(q.name.as_bytes(), b"");
    }

    #[test]
    fn classifies_bad_packets() {
        let good = query_bytes(7, "a.example", rtype::A, None);
        assert_eq!(parse(&good[..5]).unwrap_err(), ParseError::Short);
        let mut response = good.clone();
        response[2] |= 0x80;
        assert_eq!(parse(&response).unwrap_err(), ParseError::Response);
        let mut notify = good.clone();
        notify[2] |= 4 << 3;
        assert_eq!(parse(&notify).unwrap_err(), ParseError::Opcode(4));
        let mut two = good.clone();
        two[5] = 2;
        assert_eq!(parse(&two).unwrap_err(), ParseError::Question);
        assert_eq!(parse(&good[..good.len() - 1]).unwrap_err(), ParseError::Question);
        let mut pointer = good.clone();
        pointer[12] = 0xc0;
        assert_eq!(parse(&pointer).unwrap_err(), ParseError::Question);
        let mut no_opt = query_bytes(7, "a.example", rtype::A, Some((1232, false)));
        no_opt.truncate(no_opt.len() - 3);
        assert_eq!(parse(&no_opt).unwrap_err(), ParseError::Additional);
    }

    #[test]
    fn refuses_a_dot_inside_a_label() {
        // Found with the query fuzz target's check: labels `x.tiktok` and `com` read as
        // x.tiktok.com, so the policy's tiktok.com rule matched and the block answer's SOA pointed
        // at offset 14, the middle of a label: no client could decode it. And a name of the same
        // dotted form shares its cache key: a client could have NXDOMAIN cached for
        // www.example.com by asking for `www.example` + `com`, whose question has the same length.
        let mut dotted = query_bytes(0x4200, "x.tiktok.com", rtype::A, None);
        dotted[12..21].copy_from_slice(b"\x08x.tiktok");
        assert_eq!(parse(&dotted).unwrap_err(), ParseError::Question);
        let plain = query_bytes(0x4200, "x.tiktok.com", rtype::A, None);
        assert_eq!(plain.len(), dotted.len());
        assert_eq!(parse(&plain).expect("valid").name.as_bytes(), b"x.tiktok.com");
    }

    #[test]
    fn rejects_overlong_names() {
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(
            parse(&query_bytes(1, &long, 1, None)).unwrap_err(),
            ParseError::Question
        );
        let fits = ["a".repeat(63), "b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".");
        let q = parse(&query_bytes(1, &fits, 1, None)).expect("253 bytes fit");
        assert_eq!(q.name.as_bytes().len(), 253);
    }

    #[test]
    fn finds_the_opt_record_and_walks_its_options() {
        let mut p = query_bytes(7, "a.example", rtype::A, Some((1232, true)));
        // Options: EDE 18 "x", then a COOKIE cut short.
        let options = [0, 15, 0, 3, 0, 18, b'x', 0, 10, 0, 8, 1, 2];
        let len_at = p.len() - 2;
        p[len_at..].copy_from_slice(&(options.len() as u16).to_be_bytes());
        p.extend_from_slice(&options);
        let opt = find_opt(&p).expect("reads").expect("an OPT");
        assert_eq!((opt.udp_size, opt.end), (1232, p.len()));
        assert_eq!(p[opt.ttl_at + 2] & 0x80, 0x80, "DO");
        let walked: Vec<_> = edns_options(&p[opt.rdata]).collect();
        assert_eq!(
            walked,
            [
                Ok(EdnsOption {
                    code: 15,
                    data: &[0, 18, b'x'][..],
                    span: 0..7
                }),
                Err(OptError::Options)
            ]
        );
        assert_eq!(find_opt(&query_bytes(7, "a.example", rtype::A, None)), Ok(None));
        // The same record twice.
        let mut twice = query_bytes(7, "a.example", rtype::A, Some((1232, false)));
        twice[11] = 2;
        twice.extend_from_within(twice.len() - 11..);
        assert_eq!(find_opt(&twice), Err(OptError::Placement));
    }

    #[test]
    fn never_panics_on_garbage() {
        let seed = query_bytes(9, "x.y.example", rtype::A, Some((4096, true)));
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut p = seed.clone();
            let i = (state as usize) % p.len();
            p[i] = (state >> 32) as u8;
            p.truncate(((state >> 16) as usize) % (p.len() + 1));
            let _ = parse(&p);
        }
    }

    #[test]
    fn encodes_queries_hickory_reads() {
        let mut out = Vec::new();
        encode_query("www.TikTok.com.", rtype::AAAA, true, &mut out).expect("valid");
        let msg = Message::from_vec(&out).expect("hickory parses it");
        let q = &msg.queries[0];
        assert_eq!(q.name().to_ascii(), "www.TikTok.com.");
        assert_eq!(q.query_type(), RecordType::AAAA);
        assert!(msg.metadata.recursion_desired);
        assert_eq!(msg.edns.as_ref().map(|e| e.max_payload()), Some(EDNS_PAYLOAD));

        encode_query(".", 2, false, &mut out).expect("root");
        let msg = Message::from_vec(&out).expect("hickory parses it");
        assert!(msg.queries[0].name().is_root());
        assert!(msg.edns.is_none());
    }

    #[test]
    fn refuses_bad_names() {
        let mut out = Vec::new();
        assert_eq!(encode_query("a..b", 1, false, &mut out), Err(EncodeError::EmptyLabel));
        assert_eq!(encode_query(".a", 1, false, &mut out), Err(EncodeError::EmptyLabel));
        let long_label = "x".repeat(64);
        assert_eq!(
            encode_query(&long_label, 1, false, &mut out),
            Err(EncodeError::LabelTooLong)
        );
        let long_name = vec!["x".repeat(63); 5].join(".");
        assert_eq!(
            encode_query(&long_name, 1, false, &mut out),
            Err(EncodeError::NameTooLong)
        );
    }

    /// `query_bytes` with an OPT record holding `options` (code, data).
    fn query_with_options(options: &[(u16, &[u8])]) -> Vec<u8> {
        let mut p = query_bytes(7, "example.com", rtype::A, None);
        p[11] = 1;
        let rdata: Vec<u8> = options
            .iter()
            .flat_map(|(code, data)| {
                let mut o = code.to_be_bytes().to_vec();
                o.extend_from_slice(&(data.len() as u16).to_be_bytes());
                o.extend_from_slice(data);
                o
            })
            .collect();
        p.push(0);
        p.extend_from_slice(&rtype::OPT.to_be_bytes());
        p.extend_from_slice(&1232u16.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        p.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        p.extend_from_slice(&rdata);
        p
    }

    #[test]
    fn client_subnet_is_read_and_zero_padded() {
        let ecs = |data: &[u8]| client_subnet(data).map(|c| (c.address.to_string(), c.source_prefix));
        assert_eq!(ecs(&[0, 1, 24, 0, 10, 9, 0]), Some(("10.9.0.0".into(), 24)));
        // Bits past the prefix are zeroed.
        assert_eq!(ecs(&[0, 1, 20, 0, 10, 9, 0xff]), Some(("10.9.240.0".into(), 20)));
        assert_eq!(ecs(&[0, 1, 32, 0, 10, 9, 0, 5]), Some(("10.9.0.5".into(), 32)));
        assert_eq!(ecs(&[0, 1, 0, 0]), Some(("0.0.0.0".into(), 0)));
        assert_eq!(
            ecs(&[0, 2, 48, 0, 0x20, 1, 0xd, 0xb8, 0, 1]),
            Some(("2001:db8:1::".into(), 48))
        );
        for bad in [
            &[0, 1, 24, 0, 10, 9][..],
            &[0, 1, 33, 0, 1, 2, 3, 4, 5],
            &[0, 3, 0, 0],
            &[0, 1, 24],
        ] {
            assert_eq!(client_subnet(bad), None, "{bad:?}");
        }
        let q = parse(&query_with_options(&[(10, &[1; 8]), (8, &[0, 1, 24, 0, 10, 9, 0])])).unwrap();
        assert_eq!(q.edns.unwrap().client_subnet.unwrap().address.to_string(), "10.9.0.0");
        let q = parse(&query_with_options(&[(10, &[1; 8])])).unwrap();
        assert_eq!(q.edns.unwrap().client_subnet, None);
    }

    #[test]
    fn stripping_an_option_keeps_the_others_and_fixes_the_length() {
        let ecs: &[u8] = &[0, 1, 24, 0, 10, 9, 0];
        let mut p = query_with_options(&[(10, &[1; 8]), (8, ecs), (15, &[0, 1])]);
        assert_eq!(strip_edns_option(&mut p, OPTION_CLIENT_SUBNET), 1);
        assert_eq!(p, query_with_options(&[(10, &[1; 8]), (15, &[0, 1])]));
        let message = Message::from_vec(&p).expect("hickory reads the stripped query");
        assert_eq!(message.edns.as_ref().expect("OPT").options().as_ref().len(), 2);
        let mut only = query_with_options(&[(8, ecs)]);
        assert_eq!(strip_edns_option(&mut only, OPTION_CLIENT_SUBNET), 1);
        assert_eq!(only, query_with_options(&[]));
        assert_eq!(strip_edns_option(&mut only, OPTION_CLIENT_SUBNET), 0);
        let mut plain = query_bytes(1, "example.com", rtype::A, None);
        assert_eq!(strip_edns_option(&mut plain, OPTION_CLIENT_SUBNET), 0);
    }

    /// Found by the proxy_header fuzz target: a Client Subnet option followed by options that end
    /// in a stray byte was removed, then the stray byte stopped the walk before RDLENGTH was
    /// fixed, leaving an OPT record longer than the message.
    #[test]
    fn options_that_do_not_all_read_are_left_as_they_are() {
        let ecs: &[u8] = &[0, 1, 24, 0, 10, 9, 0];
        let mut p = query_with_options(&[(10, &[1; 8]), (8, ecs), (0x7f00, &[0])]);
        // One byte past the last option, counted in RDLENGTH.
        let rdlength_at = p.len() - (4 + 8) - (4 + ecs.len()) - (4 + 1) - 2;
        p.push(1);
        let rdlength = u16::from_be_bytes([p[rdlength_at], p[rdlength_at + 1]]) + 1;
        p[rdlength_at..rdlength_at + 2].copy_from_slice(&rdlength.to_be_bytes());
        let before = p.clone();
        assert_eq!(strip_edns_option(&mut p, OPTION_CLIENT_SUBNET), 0);
        assert_eq!(p, before);
    }
}
