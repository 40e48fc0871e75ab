//! Block and error answers as wire bytes.
//!
//! A block answer is the client's own header and question followed by records that differ only
//! by policy and query type, so each policy pre-encodes them once ([`BlockTemplate`]) and an
//! answer is a few copies into the caller's buffer: no allocation, no message encoder. Names in
//! the records are compression pointers into the echoed question, which is why the bytes do not
//! depend on the name asked.
//!
//! This module decides nothing: which answer to send is the engine's and the policy's call.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::packet::{self, Query};
use crate::wire::{
    CLASS_CH, CLASS_IN, EDNS_PAYLOAD, HEADER_LEN, SINKHOLE_SOA_MNAME, flag, push_name, push_u16, rcode, rtype,
};

/// Extended DNS Error info codes (RFC 8914 5.2) that we use.
pub(crate) mod ede {
    /// Any other error; the text says which.
    pub(crate) const OTHER: u16 = 0;
    /// The server cannot answer yet: a list the client's policy blocks has not loaded.
    pub(crate) const NOT_READY: u16 = 14;
    /// The name is blocked by the operator's policy.
    pub(crate) const BLOCKED: u16 = 15;
    /// The client may not use this server.
    pub(crate) const PROHIBITED: u16 = 18;
    /// Zone transfers and the like: not something a forwarder does.
    pub(crate) const NOT_SUPPORTED: u16 = 21;
    /// No upstream answered in time.
    pub(crate) const NO_REACHABLE_AUTHORITY: u16 = 22;
}

/// The EDNS option code of Extended DNS Errors (RFC 8914).
const OPTION_EDE: u16 = 15;

/// Longest EDE text we send: it names a policy, and must never push an answer past 512 bytes.
const MAX_EDE_TEXT: usize = 120;

/// What a blocked client is told; `answer` in a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockAnswer {
    /// The name does not exist (with SOA, so the negative answer is cached for the block TTL).
    Nxdomain,
    /// The name exists but has no records of the type asked (with SOA).
    Nodata,
    /// 0.0.0.0 for A, :: for AAAA, NODATA for other types: apps fail fast instead of retrying.
    Null,
    /// REFUSED: the resolver will not answer this.
    Refused,
    /// This address for queries of its family (a block page), NODATA for the others.
    Address(IpAddr),
}

impl BlockAnswer {
    /// The response code this answer carries for a query type.
    pub fn rcode(self) -> u8 {
        match self {
            BlockAnswer::Nxdomain => rcode::NXDOMAIN,
            BlockAnswer::Refused => rcode::REFUSED,
            _ => rcode::NOERROR,
        }
    }

    /// The address record this answer gives for a query type, if any.
    pub fn address_for(self, qtype: u16) -> Option<IpAddr> {
        let address = match self {
            BlockAnswer::Null if qtype == rtype::A => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            BlockAnswer::Null if qtype == rtype::AAAA => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            BlockAnswer::Address(ip) => ip,
            _ => return None,
        };
        match (address, qtype) {
            (IpAddr::V4(_), rtype::A) | (IpAddr::V6(_), rtype::AAAA) => Some(address),
            _ => None,
        }
    }
}

impl FromStr for BlockAnswer {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "nxdomain" => Ok(BlockAnswer::Nxdomain),
            "nodata" => Ok(BlockAnswer::Nodata),
            "null" => Ok(BlockAnswer::Null),
            "refused" => Ok(BlockAnswer::Refused),
            other => other.parse::<IpAddr>().map(BlockAnswer::Address).map_err(|_| {
                format!("unknown answer {other:?}: expected nxdomain, nodata, null, refused or an IP address")
            }),
        }
    }
}

impl fmt::Display for BlockAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockAnswer::Nxdomain => f.write_str("nxdomain"),
            BlockAnswer::Nodata => f.write_str("nodata"),
            BlockAnswer::Null => f.write_str("null"),
            BlockAnswer::Refused => f.write_str("refused"),
            BlockAnswer::Address(ip) => write!(f, "{ip}"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for BlockAnswer {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One policy's block answers, pre-encoded: what follows the echoed question.
#[derive(Clone, Debug)]
pub struct BlockTemplate {
    answer: BlockAnswer,
    ttl: u32,
    /// SOA type, class, TTL, length and RDATA: written after a pointer to the owner name.
    soa: Vec<u8>,
    /// The OPT record with the EDE "Blocked" option naming the policy; DO is patched per client.
    opt: Vec<u8>,
}

impl BlockTemplate {
    /// Pre-encodes the answers of the policy `policy` for `answer`, with records and negative
    /// caching lasting `ttl` seconds.
    pub fn new(policy: &str, answer: BlockAnswer, ttl: u32) -> BlockTemplate {
        let mut soa = Vec::with_capacity(64);
        push_u16(&mut soa, rtype::SOA);
        push_u16(&mut soa, CLASS_IN);
        soa.extend_from_slice(&ttl.to_be_bytes());
        let mut rdata = Vec::with_capacity(48);
        // The MNAME tells a block answer from an upstream's negative answer without EDE (replay counts them).
        push_name(&mut rdata, SINKHOLE_SOA_MNAME);
        push_name(&mut rdata, &format!("hostmaster.{}", SINKHOLE_SOA_MNAME));
        // serial, refresh, retry, expire, minimum (the negative TTL, RFC 2308 5)
        for value in [1, 3600, 600, 86400, ttl] {
            rdata.extend_from_slice(&u32::to_be_bytes(value));
        }
        push_u16(&mut soa, rdata.len() as u16);
        soa.extend_from_slice(&rdata);
        BlockTemplate {
            answer,
            ttl,
            soa,
            opt: {
                let mut opt = Vec::with_capacity(32);
                push_opt_record(
                    &mut opt,
                    Some((ede::BLOCKED, &format!("blocked by policy {policy}"))),
                    false,
                );
                opt
            },
        }
    }

    /// The answer kind.
    pub fn answer(&self) -> BlockAnswer {
        self.answer
    }

    /// Writes the block answer to `query` (read from `packet`) into `out`, which is cleared first.
    /// `apex_len` is the length of the suffix of the query name that the matched rule names: the
    /// SOA is owned by that apex, as a zone's SOA would be.
    pub fn write(&self, packet: &[u8], query: &Query, apex_len: Option<u8>, out: &mut Vec<u8>) {
        self.write_as(self.answer, packet, query, apex_len, out);
    }

    /// [`BlockTemplate::write`] with another answer kind than the policy's (an RPZ rule's own
    /// action), with the policy's TTL, SOA and EDE text.
    pub(crate) fn write_as(
        &self,
        answer: BlockAnswer,
        packet: &[u8],
        query: &Query,
        apex_len: Option<u8>,
        out: &mut Vec<u8>,
    ) {
        let address = answer.address_for(query.qtype);
        let with_soa = matches!(answer, BlockAnswer::Nxdomain | BlockAnswer::Nodata)
            || (address.is_none() && answer != BlockAnswer::Refused);
        let counts = [
            1,
            u16::from(address.is_some()),
            u16::from(with_soa),
            u16::from(query.edns.is_some()),
        ];
        write_header(packet, query, answer.rcode(), counts, out);
        if let Some(ip) = address {
            push_u16(out, 0xc000 | HEADER_LEN as u16);
            let (qtype, data): (u16, &[u8]) = match &ip {
                IpAddr::V4(v4) => (rtype::A, &v4.octets()),
                IpAddr::V6(v6) => (rtype::AAAA, &v6.octets()),
            };
            push_u16(out, qtype);
            push_u16(out, CLASS_IN);
            out.extend_from_slice(&self.ttl.to_be_bytes());
            push_u16(out, data.len() as u16);
            out.extend_from_slice(data);
        }
        if with_soa {
            let name_len = query.name.as_bytes().len();
            let apex_at = apex_len
                .map(usize::from)
                .filter(|&len| len <= name_len)
                .map_or(0, |len| name_len - len);
            push_u16(out, 0xc000 | (HEADER_LEN + apex_at) as u16);
            out.extend_from_slice(&self.soa);
        }
        if let Some(edns) = query.edns {
            push_opt(out, &self.opt, edns.dnssec_ok);
        }
    }
}

/// Writes an error answer (`rcode`) to a query into `out`, cleared first. With the query read,
/// the question is echoed and, for EDNS clients, an OPT with the optional Extended DNS Error. With
/// only a header (FORMERR for a question we cannot read), the answer is that header alone.
pub(crate) fn write_error(
    packet: &[u8],
    query: Option<&Query>,
    rcode: u8,
    ede: Option<(u16, &str)>,
    out: &mut Vec<u8>,
) {
    match query {
        Some(query) => {
            let counts = [1, 0, 0, u16::from(query.edns.is_some())];
            write_header(packet, query, rcode, counts, out);
            if let Some(edns) = query.edns {
                push_opt_record(out, ede, edns.dnssec_ok);
            }
        }
        None => {
            out.clear();
            let (id, flags, _) = packet::header(packet).unwrap_or((0, 0, [0; 4]));
            push_u16(out, id);
            push_u16(
                out,
                flag::QR | (flags & (flag::RD | 0x7800)) | flag::RA | u16::from(rcode & 0xf),
            );
            out.extend_from_slice(&[0; 8]);
        }
    }
}

/// Header and echoed question. Flags: QR, the client's opcode (always QUERY here), RD and CD,
/// RA set, AA and AD clear.
fn write_header(packet: &[u8], query: &Query, rcode: u8, counts: [u16; 4], out: &mut Vec<u8>) {
    out.clear();
    push_u16(out, query.id);
    let flags = flag::QR | (query.flags & (flag::RD | flag::CD)) | flag::RA | u16::from(rcode & 0xf);
    push_u16(out, flags);
    for count in counts {
        push_u16(out, count);
    }
    // The question range was read from this very packet, so it is in bounds.
    if let Some(question) = packet.get(query.question.clone()) {
        out.extend_from_slice(question);
    }
}

/// Writes the answer to an ANY query (RFC 8482 4.2): one synthesised HINFO record, CPU
/// "RFC8482" and OS empty, instead of every record the name has. ANY is the query of choice for
/// reflection attacks (one small question, the largest answer a name has), and no client
/// library needs the real thing: mail servers and browsers ask for the types they use.
pub(crate) fn write_any_minimal(packet: &[u8], query: &Query, out: &mut Vec<u8>) {
    write_one_record(
        packet,
        query,
        (rtype::HINFO, CLASS_IN, ANY_TTL),
        &[b"\x07RFC8482\x00"],
        out,
    );
}

/// Writes the answer to a CHAOS-class TXT query (`version.bind`, `id.server`, ...): one TXT
/// record of class CH holding `text` (at most 255 bytes, as validation ensures; longer is cut),
/// TTL 0, as name servers answer it.
pub(crate) fn write_chaos_txt(packet: &[u8], query: &Query, text: &str, out: &mut Vec<u8>) {
    let text = truncate_utf8(text, 255);
    let length = [text.len() as u8];
    write_one_record(
        packet,
        query,
        (rtype::TXT, CLASS_CH, 0),
        &[&length, text.as_bytes()],
        out,
    );
}

/// Writes a NOERROR answer of one record answered here, owned by the question's name: `kind` is
/// its type, class and TTL, its data the concatenation of `rdata` (given in parts, so that the
/// caller allocates nothing). The client's OPT is echoed.
fn write_one_record(packet: &[u8], query: &Query, kind: (u16, u16, u32), rdata: &[&[u8]], out: &mut Vec<u8>) {
    let (rtype, class, ttl) = kind;
    write_header(
        packet,
        query,
        rcode::NOERROR,
        [1, 1, 0, u16::from(query.edns.is_some())],
        out,
    );
    push_u16(out, 0xc000 | HEADER_LEN as u16);
    push_u16(out, rtype);
    push_u16(out, class);
    out.extend_from_slice(&ttl.to_be_bytes());
    push_u16(out, rdata.iter().map(|part| part.len()).sum::<usize>() as u16);
    for part in rdata {
        out.extend_from_slice(part);
    }
    if let Some(edns) = query.edns {
        push_opt_record(out, None, edns.dnssec_ok);
    }
}

/// Writes a NOERROR answer made here from pre-encoded records (DDR's): `answers`, their count
/// and bytes, each owned by a pointer to the question name; for a negative answer, `soa`: where
/// the zone's apex starts in the question name and the SOA's bytes after its owner, which point
/// there. The client's OPT is echoed. Copies only: nothing allocated but into `out`.
pub(crate) fn write_local(
    packet: &[u8],
    query: &Query,
    answers: (u16, &[u8]),
    soa: Option<(usize, &[u8])>,
    out: &mut Vec<u8>,
) {
    let (count, records) = answers;
    let counts = [1, count, u16::from(soa.is_some()), u16::from(query.edns.is_some())];
    write_header(packet, query, rcode::NOERROR, counts, out);
    out.extend_from_slice(records);
    if let Some((apex_at, soa)) = soa {
        push_u16(out, 0xc000 | (HEADER_LEN + apex_at) as u16);
        out.extend_from_slice(soa);
    }
    if let Some(edns) = query.edns {
        push_opt_record(out, None, edns.dnssec_ok);
    }
}

/// Writes an empty answer with TC set (and the client's OPT echoed): what a rate-limited UDP
/// client gets now and then instead of silence, so that a real one retries over TCP.
pub(crate) fn write_truncated(packet: &[u8], query: &Query, out: &mut Vec<u8>) {
    write_header(
        packet,
        query,
        rcode::NOERROR,
        [1, 0, 0, u16::from(query.edns.is_some())],
        out,
    );
    let flags = crate::wire::flags(out) | flag::TC;
    crate::wire::set_flags(out, flags);
    if let Some(edns) = query.edns {
        push_opt_record(out, None, edns.dnssec_ok);
    }
}

/// TTL of the HINFO record that answers ANY: RFC 8482 4.2 leaves it to us; an hour spares
/// caches the question without hiding anything, since no record is withheld for long by it.
const ANY_TTL: u32 = 3600;

/// Appends an OPT record advertising our payload size, with an optional EDE option, echoing the
/// client's DO bit (RFC 3225 3). Written in place: an error answer allocates nothing.
fn push_opt_record(out: &mut Vec<u8>, ede: Option<(u16, &str)>, dnssec_ok: bool) {
    out.push(0);
    push_u16(out, rtype::OPT);
    push_u16(out, EDNS_PAYLOAD);
    // Extended rcode, version, then the flags word, whose top bit is DO.
    out.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0]);
    match ede {
        Some((code, text)) => {
            let text = truncate_utf8(text, MAX_EDE_TEXT);
            let len = 2 + text.len() as u16;
            push_u16(out, 4 + len);
            push_u16(out, OPTION_EDE);
            push_u16(out, len);
            push_u16(out, code);
            out.extend_from_slice(text.as_bytes());
        }
        None => push_u16(out, 0),
    }
}

/// Appends a pre-encoded OPT record, echoing the client's DO bit (RFC 3225 3).
fn push_opt(out: &mut Vec<u8>, opt: &[u8], dnssec_ok: bool) {
    let start = out.len();
    out.extend_from_slice(opt);
    if dnssec_ok {
        // byte 7 of the record: the high byte of the flags word in the TTL field
        out[start + 7] |= 0x80;
    }
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::parse;
    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::{RData, RecordType};

    fn query(name: &str, qtype: u16, edns: Option<(u16, bool)>) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&0x1234u16.to_be_bytes());
        p.extend_from_slice(&(flag::RD | flag::CD).to_be_bytes());
        p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
        push_name(&mut p, name);
        push_u16(&mut p, qtype);
        push_u16(&mut p, CLASS_IN);
        if let Some((size, dok)) = edns {
            p.push(0);
            push_u16(&mut p, rtype::OPT);
            push_u16(&mut p, size);
            p.extend_from_slice(&[0, 0, if dok { 0x80 } else { 0 }, 0, 0, 0]);
        }
        p
    }

    fn block(answer: BlockAnswer, name: &str, qtype: u16, edns: bool, apex: Option<u8>) -> Message {
        let packet = query(name, qtype, edns.then_some((1232, true)));
        let q = parse(&packet).expect("test query parses");
        let mut out = Vec::new();
        BlockTemplate::new("staff", answer, 10).write(&packet, &q, apex, &mut out);
        Message::from_vec(&out).expect("block answer decodes")
    }

    fn ede_of(msg: &Message) -> Option<(u16, String)> {
        let edns = msg.edns.as_ref()?;
        edns.options().as_ref().iter().find_map(|(_, opt)| match opt {
            hickory_proto::rr::rdata::opt::EdnsOption::Unknown(OPTION_EDE, bytes) => Some((
                u16::from_be_bytes([bytes[0], bytes[1]]),
                String::from_utf8_lossy(&bytes[2..]).into_owned(),
            )),
            _ => None,
        })
    }

    #[test]
    fn nxdomain_has_soa_at_matched_apex_and_ede() {
        let msg = block(BlockAnswer::Nxdomain, "WWW.TikTok.com", rtype::A, true, Some(10));
        assert_eq!(msg.metadata.id, 0x1234);
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
        assert!(!msg.metadata.authoritative);
        assert!(msg.metadata.recursion_available);
        assert!(msg.metadata.recursion_desired);
        assert!(msg.metadata.checking_disabled);
        assert_eq!(msg.queries[0].name().to_ascii(), "WWW.TikTok.com.");
        assert!(msg.answers.is_empty());
        let soa = &msg.authorities[0];
        assert_eq!(soa.name.to_ascii(), "TikTok.com.");
        assert_eq!(soa.ttl, 10);
        match &soa.data {
            RData::SOA(s) => assert_eq!(s.minimum, 10),
            other => panic!("expected SOA, got {other:?}"),
        }
        let edns = msg.edns.as_ref().expect("OPT echoed");
        assert!(edns.flags().dnssec_ok);
        assert_eq!(ede_of(&msg), Some((15, "blocked by policy staff".to_string())));
    }

    #[test]
    fn no_opt_without_client_edns() {
        let msg = block(BlockAnswer::Nodata, "tiktok.com", rtype::AAAA, false, None);
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
        assert!(msg.edns.is_none());
        assert_eq!(msg.authorities[0].name.to_ascii(), "tiktok.com.");
        assert!(msg.answers.is_empty());
    }

    #[test]
    fn null_gives_unspecified_addresses_and_nodata_otherwise() {
        let a = block(BlockAnswer::Null, "v16m.tiktokcdn.com", rtype::A, true, Some(13));
        assert_eq!(a.answers[0].data, RData::A(Ipv4Addr::UNSPECIFIED.into()));
        assert_eq!(a.answers[0].ttl, 10);
        assert!(a.authorities.is_empty());
        let aaaa = block(BlockAnswer::Null, "v16m.tiktokcdn.com", rtype::AAAA, false, None);
        assert_eq!(aaaa.answers[0].data, RData::AAAA(Ipv6Addr::UNSPECIFIED.into()));
        let mx = block(BlockAnswer::Null, "tiktok.com", 15, false, None);
        assert!(mx.answers.is_empty());
        assert_eq!(mx.authorities[0].record_type(), RecordType::SOA);
    }

    #[test]
    fn custom_address_only_for_its_family() {
        let page: IpAddr = "192.0.2.53".parse().expect("address");
        let a = block(BlockAnswer::Address(page), "tiktok.com", rtype::A, false, None);
        assert_eq!(
            a.answers[0].data,
            RData::A("192.0.2.53".parse::<Ipv4Addr>().expect("v4").into())
        );
        let aaaa = block(BlockAnswer::Address(page), "tiktok.com", rtype::AAAA, false, None);
        assert!(aaaa.answers.is_empty());
        assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    }

    #[test]
    fn refused_has_no_records() {
        let msg = block(BlockAnswer::Refused, "tiktok.com", rtype::A, true, None);
        assert_eq!(msg.metadata.response_code, ResponseCode::Refused);
        assert!(msg.answers.is_empty() && msg.authorities.is_empty());
        assert_eq!(ede_of(&msg).map(|e| e.0), Some(15));
    }

    #[test]
    fn errors_echo_question_or_header_only() {
        let packet = query("example.com", rtype::A, Some((1232, false)));
        let q = parse(&packet).expect("parses");
        let mut out = Vec::new();
        write_error(
            &packet,
            Some(&q),
            rcode::SERVFAIL,
            Some((ede::NO_REACHABLE_AUTHORITY, "x")),
            &mut out,
        );
        let msg = Message::from_vec(&out).expect("decodes");
        assert_eq!(msg.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(msg.queries.len(), 1);
        assert_eq!(ede_of(&msg).map(|e| e.0), Some(22));

        write_error(&packet[..14], None, rcode::FORMERR, None, &mut out);
        let msg = Message::from_vec(&out).expect("decodes");
        assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(msg.metadata.id, 0x1234);
        assert!(msg.queries.is_empty());
    }

    #[test]
    fn any_gets_one_hinfo_record() {
        let packet = query("Example.com", rtype::ANY, Some((4096, true)));
        let q = parse(&packet).expect("parses");
        let mut out = Vec::new();
        write_any_minimal(&packet, &q, &mut out);
        let msg = Message::from_vec(&out).expect("decodes");
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
        assert_eq!(msg.queries[0].name().to_ascii(), "Example.com.");
        assert_eq!(msg.answers.len(), 1);
        let hinfo = &msg.answers[0];
        assert_eq!(hinfo.name.to_ascii(), "Example.com.");
        assert_eq!(hinfo.ttl, ANY_TTL);
        match &hinfo.data {
            RData::HINFO(h) => assert_eq!((&*h.cpu, &*h.os), (&b"RFC8482"[..], &b""[..])),
            other => panic!("expected HINFO, got {other:?}"),
        }
        assert!(
            msg.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
            "OPT echoed with DO"
        );
    }

    #[test]
    fn parses_answer_kinds() {
        assert_eq!("null".parse(), Ok(BlockAnswer::Null));
        assert_eq!(
            "2001:db8::53".parse::<BlockAnswer>().map(|a| a.to_string()),
            Ok("2001:db8::53".to_string())
        );
        assert!(
            "nxdomian"
                .parse::<BlockAnswer>()
                .unwrap_err()
                .contains("nxdomain, nodata")
        );
    }
}
