//! Tests of the packet cache: responses built with hickory-proto, analysed, served and looked up.

use std::hash::BuildHasher;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, NULL, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::response::MAX_CHAIN;
use super::*;
use crate::wire::{self, WireError};

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn response(qname: &str, qtype: RecordType) -> Message {
    let mut m = Message::response(0x1234, OpCode::Query);
    m.add_query(Query::query(name(qname), qtype));
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m
}

fn a(owner: &str, ttl: u32, last: u8) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A::from(Ipv4Addr::new(192, 0, 2, last))))
}

fn cname(owner: &str, ttl: u32, target: &str) -> Record {
    Record::from_rdata(name(owner), ttl, RData::CNAME(CNAME(name(target))))
}

fn soa(owner: &str, ttl: u32, minimum: u32) -> Record {
    let data = SOA::new(
        name("ns1.example.com."),
        name("hostmaster.example.com."),
        1,
        7200,
        900,
        86400,
        minimum,
    );
    Record::from_rdata(name(owner), ttl, RData::SOA(data))
}

fn analyze_with(m: &Message, now: Instant, limits: &TtlLimits) -> CachedResponse {
    CachedResponse::analyze(m.to_vec().unwrap(), now, limits).unwrap()
}

fn analyze(m: &Message) -> CachedResponse {
    analyze_with(m, Instant::now(), &TtlLimits::default())
}

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

/// The question section of a client query for `qname` (as cased), type A, class IN.
fn client_question(qname: &str) -> Vec<u8> {
    let mut q = Message::new(7, MessageType::Query, OpCode::Query);
    q.add_query(Query::query(name(qname), RecordType::A));
    q.to_vec().unwrap()[12..].to_vec()
}

fn www_a() -> Message {
    let mut m = response("www.example.com.", RecordType::A);
    m.add_answer(cname("www.example.com.", 300, "web.example.net."));
    m.add_answer(a("web.example.net.", 60, 1));
    m
}

#[test]
fn positive_lifetime_is_lowest_answer_ttl_within_limits() {
    assert_eq!(analyze(&www_a()).cache_for(), secs(60));
    let now = Instant::now();
    let raised = TtlLimits {
        min: 120,
        ..TtlLimits::default()
    };
    assert_eq!(analyze_with(&www_a(), now, &raised).cache_for(), secs(120));
    let capped = TtlLimits {
        max: 30,
        ..TtlLimits::default()
    };
    assert_eq!(analyze_with(&www_a(), now, &capped).cache_for(), secs(30));
    // min above max: max wins, no panic.
    let odd = TtlLimits {
        min: 500,
        max: 100,
        ..TtlLimits::default()
    };
    assert_eq!(analyze_with(&www_a(), now, &odd).cache_for(), secs(100));
}

#[test]
fn zero_ttl_is_not_cached_even_with_a_minimum() {
    let mut m = response("www.example.com.", RecordType::A);
    m.add_answer(a("www.example.com.", 0, 1));
    let limits = TtlLimits {
        min: 60,
        ..TtlLimits::default()
    };
    assert_eq!(analyze_with(&m, Instant::now(), &limits).cache_for(), None);
    // RFC 2181: a TTL with the top bit set reads as zero.
    let mut m = response("www.example.com.", RecordType::A);
    m.add_answer(a("www.example.com.", 0x8000_0000, 1));
    assert_eq!(analyze(&m).cache_for(), None);
}

#[test]
fn nxdomain_lives_min_of_soa_ttl_and_minimum_capped() {
    let mut m = response("nope.example.com.", RecordType::A);
    m.metadata.response_code = ResponseCode::NXDomain;
    m.add_authority(soa("example.com.", 900, 600));
    assert_eq!(analyze(&m).cache_for(), secs(600));
    m.authorities = vec![soa("example.com.", 450, 600)];
    assert_eq!(analyze(&m).cache_for(), secs(450));
    let capped = TtlLimits {
        negative_max: 300,
        ..TtlLimits::default()
    };
    assert_eq!(analyze_with(&m, Instant::now(), &capped).cache_for(), secs(300));
    // The min limit is for positive answers only.
    let raised = TtlLimits {
        min: 1000,
        ..TtlLimits::default()
    };
    assert_eq!(analyze_with(&m, Instant::now(), &raised).cache_for(), secs(450));
    // Without SOA: not cached.
    m.authorities.clear();
    assert_eq!(analyze(&m).cache_for(), None);
}

#[test]
fn nodata_needs_an_soa() {
    let mut m = response("www.example.com.", RecordType::AAAA);
    assert_eq!(analyze(&m).cache_for(), None);
    m.add_authority(soa("example.com.", 3600, 120));
    let r = analyze(&m);
    assert_eq!(r.cache_for(), secs(120));
    assert_eq!(r.rcode(), 0);
}

#[test]
fn cname_to_nodata_is_bounded_by_the_soa() {
    let mut m = response("www.example.com.", RecordType::AAAA);
    m.add_answer(cname("www.example.com.", 300, "web.example.net."));
    m.add_authority(soa("example.net.", 3600, 30));
    assert_eq!(analyze(&m).cache_for(), secs(30));
}

#[test]
fn servfail_is_cached_only_as_configured_and_at_most_five_minutes() {
    let mut m = response("www.example.com.", RecordType::A);
    m.metadata.response_code = ResponseCode::ServFail;
    let r = analyze(&m);
    assert_eq!(r.cache_for(), None);
    assert_eq!(r.rcode(), 2);
    let now = Instant::now();
    let five = TtlLimits {
        servfail: 5,
        ..TtlLimits::default()
    };
    assert_eq!(analyze_with(&m, now, &five).cache_for(), secs(5));
    let long = TtlLimits {
        servfail: 1000,
        ..TtlLimits::default()
    };
    assert_eq!(analyze_with(&m, now, &long).cache_for(), secs(300));
}

#[test]
fn truncated_and_other_rcodes_are_not_cached() {
    let mut m = www_a();
    m.metadata.truncation = true;
    assert_eq!(analyze(&m).cache_for(), None);
    let mut m = www_a();
    m.metadata.response_code = ResponseCode::Refused;
    assert_eq!(analyze(&m).cache_for(), None);
    assert_eq!(analyze(&m).rcode(), 5);
}

#[test]
fn analyze_rejects_what_is_not_one_answer() {
    let limits = TtlLimits::default();
    let now = Instant::now();
    let check = |bytes: Vec<u8>| CachedResponse::analyze(bytes, now, &limits).unwrap_err();
    assert!(matches!(check(vec![0; 5]), ResponseError::TooShort(5)));
    assert!(matches!(check(vec![0; 70000]), ResponseError::TooLong(70000)));
    let mut query = www_a();
    query.metadata.message_type = MessageType::Query;
    assert!(matches!(check(query.to_vec().unwrap()), ResponseError::NotAResponse));
    let none = Message::response(1, OpCode::Query);
    assert!(matches!(check(none.to_vec().unwrap()), ResponseError::QuestionCount(0)));
    let mut cut = www_a().to_vec().unwrap();
    cut.truncate(cut.len() - 3);
    assert!(matches!(check(cut), ResponseError::Malformed(_)));
}

#[test]
fn analyze_rejects_broken_names_and_record_data() {
    let limits = TtlLimits::default();
    let check = |bytes: Vec<u8>| CachedResponse::analyze(bytes, Instant::now(), &limits);
    let mut m = response("www.example.com.", RecordType::A);
    m.add_answer(a("www.example.com.", 60, 1));
    let good = m.to_vec().unwrap();
    assert!(check(good.clone()).is_ok());
    // The answer's owner is a pointer to the question (0xC00C): point it past the message.
    let owner = good.len() - 16;
    assert_eq!(&good[owner..owner + 2], b"\xC0\x0C");
    let mut forward = good.clone();
    forward[owner + 1] = 0xF0;
    assert!(matches!(
        check(forward),
        Err(ResponseError::Malformed(WireError::BadPointer))
    ));
    // An A record of 3 bytes (the message shortened to match).
    let mut short = good.clone();
    let rdlength = good.len() - 6;
    short[rdlength + 1] = 3;
    short.pop();
    assert!(matches!(check(short), Err(ResponseError::BadRdata(1))));
    // A CNAME whose name does not fill its data.
    let mut alias = response("www.example.com.", RecordType::A);
    alias.add_answer(cname("www.example.com.", 60, "a.example."));
    let mut alias = alias.to_vec().unwrap();
    let rdlength = alias.len() - 13;
    alias[rdlength + 1] += 1;
    alias.push(0);
    assert!(matches!(check(alias), Err(ResponseError::BadRdata(5))));
    // An SOA one byte short of its five numbers.
    let mut negative = response("nx.example.com.", RecordType::A);
    negative.metadata.response_code = ResponseCode::NXDomain;
    negative.add_authority(soa("example.com.", 60, 30));
    let mut negative = negative.to_vec().unwrap();
    let question_end = wire::skip_question(&negative, 12).unwrap();
    let rdlength = wire::read_record(&negative, question_end).unwrap().0.rdata.start - 2;
    negative[rdlength + 1] -= 1;
    negative.pop();
    assert!(matches!(check(negative), Err(ResponseError::BadRdata(6))));
}

/// The bytes of a hex string (test vectors found by fuzzing are kept as hex).
fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn analyze_rejects_txt_data_that_its_strings_do_not_fill() {
    let limits = TtlLimits::default();
    let check = |bytes: Vec<u8>| CachedResponse::analyze(bytes, Instant::now(), &limits);
    // Found by the upstream_answer fuzz target: a TXT record of 6 bytes whose second string
    // (length 5) runs one byte past them. hickory-proto refuses the message, so it was relayed
    // over UDP but answered SERVFAIL over TCP (where the answer is decoded again).
    let overrun = hex(
        "61b581800001000100000000086261647264617461047365656404746573740000100001\
         c00c001000010000012c00060005656c6c6f01",
    );
    assert!(Message::from_vec(&overrun).is_err());
    assert!(matches!(check(overrun), Err(ResponseError::BadRdata(16))));

    let mut m = response("txt.example.com.", RecordType::TXT);
    let strings = TXT::new(vec!["v=spf1 -all".into(), "x".into()]);
    m.add_answer(Record::from_rdata(name("txt.example.com."), 60, RData::TXT(strings)));
    let good = m.to_vec().unwrap();
    assert!(check(good.clone()).is_ok());
    // RDLENGTH one byte longer than the strings (the message grown to match), and one shorter.
    let rdlength = good.len() - 16;
    assert_eq!(good[rdlength + 1], 14);
    let mut left_over = good.clone();
    left_over[rdlength + 1] += 1;
    left_over.push(b'x');
    assert!(Message::from_vec(&left_over).is_err());
    assert!(matches!(check(left_over), Err(ResponseError::BadRdata(16))));
    let mut cut = good.clone();
    cut[rdlength + 1] -= 1;
    cut.pop();
    assert!(Message::from_vec(&cut).is_err());
    assert!(matches!(check(cut), Err(ResponseError::BadRdata(16))));
    // No string at all: TXT data is one or more of them.
    let mut empty = good[..rdlength].to_vec();
    empty.extend_from_slice(&[0, 0]);
    assert!(Message::from_vec(&empty).is_err());
    assert!(matches!(check(empty), Err(ResponseError::BadRdata(16))));
}

#[test]
fn analyze_refuses_names_that_lead_into_a_ttl() {
    let limits = TtlLimits::default();
    let check = |bytes: Vec<u8>| CachedResponse::analyze(bytes, Instant::now(), &limits);
    // Found by the upstream_answer fuzz target: a CNAME target pointing at offset 120, inside
    // the TTL (01 00 00 00) of the record before it. Served 7 seconds later the TTL was
    // 00 ff ff f9 and the target no longer decoded.
    let fuzzed = hex(
        "5eed8180000100060000000001610162016301640165076578616d706c6503636f6d0000010001c00c0005\
         00010000012c001604686f70300363646e076578616d706c65036e657400c033000500010000012b000704\
         686f7031c038c055000500010000012a000704686f7632c038c068000a290101000000000704686f7033c0\
         78c07b0005000100000128000704686f7034c038c08e000100010000001e0004c0000203",
    );
    assert!(Message::from_vec(&fuzzed).is_ok());
    assert!(matches!(
        check(fuzzed),
        Err(ResponseError::Malformed(WireError::BadPointer))
    ));
    // An A record whose TTL (0x01610000) reads as the name "a", and a second record owned by a
    // pointer to it: a second later the TTL is 0x0160ffff, not a name.
    let mut m = response("www.example.com.", RecordType::A);
    m.add_answer(a("www.example.com.", 0x0161_0000, 1));
    let mut bytes = m.to_vec().unwrap();
    let ttl_at = bytes.len() - 10;
    bytes[7] = 2;
    bytes.extend_from_slice(&(0xC000 | ttl_at as u16).to_be_bytes());
    bytes.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 192, 0, 2, 2]);
    let read = Message::from_vec(&bytes).unwrap();
    assert_eq!(read.answers[1].name.to_ascii(), "a.");
    assert!(matches!(
        check(bytes),
        Err(ResponseError::Malformed(WireError::BadPointer))
    ));
}

#[test]
fn an_extended_response_code_is_not_cached() {
    let mut m = response("www.example.com.", RecordType::A);
    m.add_answer(a("www.example.com.", 60, 1));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    m.edns = Some(edns);
    assert_eq!(analyze(&m).cache_for(), secs(60));
    let mut bytes = m.to_vec().unwrap();
    // OPT is the last record and has no options: its TTL (extended rcode first) starts 6 bytes
    // from the end, before RDLENGTH. Set BADVERS (16: upper bits 1, header bits 0).
    let opt_ttl = bytes.len() - 6;
    bytes[opt_ttl] = 1;
    let cached = CachedResponse::analyze(bytes, Instant::now(), &TtlLimits::default()).unwrap();
    assert_eq!(cached.cache_for(), None);
}

#[test]
fn write_to_patches_id_rd_question_case_and_ttls() {
    let t0 = Instant::now();
    let mut m = www_a();
    m.add_authority(soa("example.net.", 100, 100));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(true);
    m.edns = Some(edns);
    let r = analyze_with(&m, t0, &TtlLimits::default());
    let question = client_question("wWw.ExAmple.COM.");
    let mut out = Vec::with_capacity(65535);

    r.write_to(
        0xBEEF,
        false,
        &question,
        t0 + Duration::from_millis(10_900),
        4096,
        &mut out,
    );
    assert_eq!(out.len(), r.len());
    assert_eq!(&out[12..12 + question.len()], &question[..], "client's case kept");
    let got = Message::from_vec(&out).unwrap();
    assert_eq!(got.metadata.id, 0xBEEF);
    assert!(!got.metadata.recursion_desired);
    assert!(got.metadata.recursion_available);
    let ttls: Vec<u32> = got.answers.iter().map(|r| r.ttl).collect();
    assert_eq!(ttls, [290, 50]);
    assert_eq!(got.authorities[0].ttl, 90);
    let edns = got.edns.unwrap();
    assert!(edns.flags().dnssec_ok, "OPT flags are not a TTL");
    assert_eq!(edns.max_payload(), 1232);

    r.write_to(1, true, &question, t0 + Duration::from_secs(200), 4096, &mut out);
    let got = Message::from_vec(&out).unwrap();
    assert!(got.metadata.recursion_desired);
    let ttls: Vec<u32> = got.answers.iter().map(|r| r.ttl).collect();
    assert_eq!(ttls, [100, 0], "saturates at 0");

    // Before analysis time (clock quirks) nothing is lowered.
    r.write_to(1, true, &question, t0 - Duration::from_secs(5), 4096, &mut out);
    let got = Message::from_vec(&out).unwrap();
    let ttls: Vec<u32> = got.answers.iter().map(|r| r.ttl).collect();
    assert_eq!(ttls, [300, 60]);
}

#[test]
fn write_to_ignores_a_question_of_another_length() {
    let r = analyze(&www_a());
    let mut out = Vec::new();
    r.write_to(
        9,
        true,
        &client_question("other.example.com."),
        Instant::now(),
        4096,
        &mut out,
    );
    let got = Message::from_vec(&out).unwrap();
    assert_eq!(got.metadata.id, 9);
    assert_eq!(got.queries[0].name().to_ascii(), "www.example.com.");
}

#[test]
fn write_to_truncates_past_the_client_limit() {
    let mut m = response("many.example.com.", RecordType::A);
    for i in 0..40 {
        m.add_answer(a("many.example.com.", 60, i));
    }
    let r = analyze(&m);
    assert!(r.len() > 512);
    let question = client_question("MANY.example.com.");
    let mut out = Vec::new();

    r.write_to(5, true, &question, Instant::now(), 512, &mut out);
    assert_eq!(out.len(), 12 + question.len());
    let got = Message::from_vec(&out).unwrap();
    assert!(got.metadata.truncation);
    assert_eq!(got.metadata.id, 5);
    assert_eq!(got.queries.len(), 1);
    assert!(got.answers.is_empty() && got.authorities.is_empty() && got.additionals.is_empty());
    assert_eq!(&out[12..], &question[..]);

    // A limit under 512 is taken as 512.
    r.write_to(5, true, &question, Instant::now(), 100, &mut out);
    assert_eq!(out.len(), 12 + question.len());

    r.write_to(5, true, &question, Instant::now(), r.len(), &mut out);
    assert_eq!(out.len(), r.len());
    assert!(!Message::from_vec(&out).unwrap().metadata.truncation);
}

#[test]
fn write_to_does_not_allocate_with_full_capacity() {
    let mut m = response("many.example.com.", RecordType::A);
    for i in 0..200 {
        m.add_answer(a("many.example.com.", 60, i));
    }
    let r = analyze(&m);
    let question = client_question("many.example.com.");
    let mut out = Vec::with_capacity(65535);
    let (ptr, cap) = (out.as_ptr(), out.capacity());
    r.write_to(
        5,
        true,
        &question,
        Instant::now() + Duration::from_secs(3),
        65535,
        &mut out,
    );
    assert_eq!(out.len(), r.len());
    assert_eq!((out.as_ptr(), out.capacity()), (ptr, cap));
}

#[test]
fn chain_lists_cname_and_dname_targets_lowercased() {
    let mut m = response("www.TikTok.com.", RecordType::A);
    m.add_answer(cname("www.TikTok.com.", 300, "www.TikTok.com.EdgeSuite.net."));
    m.add_answer(cname("www.tiktok.com.edgesuite.net.", 300, "a1.w10.AKAMAI.net."));
    // DNAME (hickory has no type for it): target `v.Example.org.`, uncompressed per RFC 6672.
    let dname = RData::Unknown {
        code: RecordType::DNAME,
        rdata: NULL::with(b"\x01v\x07Example\x03org\x00".to_vec()),
    };
    m.add_answer(Record::from_rdata(name("w10.akamai.net."), 300, dname));
    m.add_answer(a("a1.w10.akamai.net.", 20, 1));
    // An SOA in authority is not part of the chain.
    m.add_authority(soa("akamai.net.", 300, 300));
    let r = analyze(&m);
    let chain: Vec<&[u8]> = r.chain().collect();
    assert_eq!(
        chain,
        [
            &b"www.tiktok.com.edgesuite.net"[..],
            b"a1.w10.akamai.net",
            b"v.example.org"
        ]
    );
    assert_eq!(analyze(&response("x.", RecordType::A)).chain().count(), 0);
}

#[test]
fn addresses_are_the_answer_sections_a_and_aaaa_records() {
    use hickory_proto::rr::rdata::AAAA;
    let mut m = www_a();
    let v6: std::net::Ipv6Addr = "2001:db8::66".parse().unwrap();
    m.add_answer(Record::from_rdata(
        name("web.example.net."),
        60,
        RData::AAAA(AAAA::from(v6)),
    ));
    // Addresses outside the answer section are not what the client is told to connect to.
    m.add_additional(a("ns1.example.net.", 60, 53));
    m.add_authority(soa("example.net.", 300, 300));
    let r = analyze(&m);
    assert!(r.has_addresses());
    let addresses: Vec<std::net::IpAddr> = r.addresses().collect();
    assert_eq!(
        addresses,
        [
            std::net::IpAddr::from(Ipv4Addr::new(192, 0, 2, 1)),
            std::net::IpAddr::from(v6)
        ]
    );
    let none = analyze(&response("x.", RecordType::A));
    assert!(!none.has_addresses());
    assert_eq!(none.addresses().count(), 0);
}

#[test]
fn chain_follows_compression_pointers() {
    let mut m = response("www.example.com.", RecordType::A);
    m.add_answer(cname("www.example.com.", 300, "CDN.www.example.com."));
    let bytes = m.to_vec().unwrap();
    assert!(
        bytes.windows(6).any(|w| w == b"\x03CDN\xC0\x0C"),
        "target is compressed"
    );
    let r = CachedResponse::analyze(bytes, Instant::now(), &TtlLimits::default()).unwrap();
    assert_eq!(r.chain().collect::<Vec<_>>(), [b"cdn.www.example.com"]);
}

#[test]
fn chain_longer_than_the_limit_is_refused() {
    let mut m = response("c0.example.com.", RecordType::A);
    for i in 0..=MAX_CHAIN {
        m.add_answer(cname(
            &format!("c{i}.example.com."),
            60,
            &format!("c{}.example.com.", i + 1),
        ));
    }
    let err = CachedResponse::analyze(m.to_vec().unwrap(), Instant::now(), &TtlLimits::default());
    assert!(matches!(err, Err(ResponseError::ChainTooLong)));
}

fn key(name: &[u8], flags: KeyFlags) -> CacheKeyRef<'_> {
    CacheKeyRef {
        name,
        qtype: 1,
        qclass: 1,
        flags,
    }
}

#[test]
fn borrowed_key_hashes_like_the_owned_one() {
    let flags = KeyFlags {
        edns: true,
        dnssec_ok: false,
        checking_disabled: true,
    };
    let borrowed = key(b"www.example.com", flags);
    let owned = borrowed.to_owned();
    let state = foldhash::fast::FixedState::with_seed(42);
    assert_eq!(state.hash_one(borrowed), state.hash_one(&owned));
    assert_eq!(state.hash_one(owned.borrowed()), state.hash_one(&owned));
    let std_state = std::hash::RandomState::new();
    assert_eq!(std_state.hash_one(borrowed), std_state.hash_one(&owned));
    assert!(borrowed.equivalent(&owned));
    assert!(!key(b"www.example.org", flags).equivalent(&owned));
}

#[test]
fn get_finds_by_borrowed_key_and_expires() {
    let cache = PacketCache::new(100, 64 << 20);
    let t0 = Instant::now();
    let r = Arc::new(analyze_with(&www_a(), t0, &TtlLimits::default()));
    let flags = KeyFlags {
        edns: true,
        ..KeyFlags::default()
    };
    // The caller lowercases "WWW.Example.COM" from the packet before building the key.
    let packet_name = b"WWW.Example.COM".to_ascii_lowercase();
    cache.insert(key(b"www.example.com", flags).to_owned(), r.clone());
    assert_eq!(cache.len(), 1);

    let hit = cache
        .get(&key(&packet_name, flags), t0 + Duration::from_secs(59))
        .unwrap();
    assert!(Arc::ptr_eq(&hit, &r));
    assert!(
        cache.get(&key(&packet_name, KeyFlags::default()), t0).is_none(),
        "flags are part of the key"
    );
    let mut other = key(&packet_name, flags);
    other.qtype = 28;
    assert!(cache.get(&other, t0).is_none(), "type is part of the key");

    assert!(
        cache
            .get(&key(&packet_name, flags), t0 + Duration::from_secs(60))
            .is_none()
    );
    assert!(cache.is_empty(), "expired entry removed");
}

#[test]
fn uncacheable_responses_and_a_zero_size_cache_store_nothing() {
    let cache = PacketCache::new(100, 64 << 20);
    let mut m = www_a();
    m.metadata.truncation = true;
    cache.insert(
        key(b"www.example.com", KeyFlags::default()).to_owned(),
        Arc::new(analyze(&m)),
    );
    assert!(cache.is_empty());

    let off = PacketCache::new(0, 64 << 20);
    let k = key(b"www.example.com", KeyFlags::default());
    off.insert(k.to_owned(), Arc::new(analyze(&www_a())));
    assert!(off.is_empty());
    assert!(off.get(&k, Instant::now()).is_none());
}

#[test]
fn insert_replaces_the_entry_under_the_same_key() {
    let cache = PacketCache::new(100, 64 << 20);
    let k = key(b"www.example.com", KeyFlags::default());
    let t0 = Instant::now();
    cache.insert(
        k.to_owned(),
        Arc::new(analyze_with(&www_a(), t0, &TtlLimits::default())),
    );
    let newer = Arc::new(analyze_with(
        &www_a(),
        t0 + Duration::from_secs(50),
        &TtlLimits::default(),
    ));
    cache.insert(k.to_owned(), newer.clone());
    assert_eq!(cache.len(), 1);
    let hit = cache.get(&k, t0 + Duration::from_secs(70)).unwrap();
    assert!(Arc::ptr_eq(&hit, &newer));
}

#[test]
fn hop_by_hop_edns_options_are_not_cached() {
    use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
    let mut m = www_a();
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    let nsid = EdnsOption::Unknown(u16::from(EdnsCode::NSID), b"ns1".to_vec());
    edns.options_mut().insert(nsid);
    edns.options_mut().insert(EdnsOption::Unknown(10, vec![7; 24])); // client + server cookie
    edns.options_mut().insert(EdnsOption::Unknown(12, vec![0; 40])); // padding
    m.edns = Some(edns);
    let cached = analyze(&m);
    let served = Message::from_vec(cached.as_bytes()).unwrap();
    let options: Vec<u16> = served
        .edns
        .as_ref()
        .unwrap()
        .options()
        .as_ref()
        .iter()
        .map(|(code, _)| u16::from(*code))
        .collect();
    assert_eq!(options, vec![u16::from(EdnsCode::NSID)], "only NSID is kept");
    assert_eq!(served.answers.len(), 2, "records intact");
}

#[test]
fn an_opt_record_whose_options_do_not_fill_its_data_is_refused() {
    let check = |bytes: Vec<u8>| CachedResponse::analyze(bytes, Instant::now(), &TtlLimits::default());
    // Found by the upstream_answer fuzz target: a cookie, a padding option one byte short of its
    // length, so that the next option's length (3840) runs past the OPT data. The cookie and the
    // padding were stripped and the broken rest served: no client could decode it.
    let fuzzed = hex(
        "5eed8180000100010000000103777777076578616d706c6503636f6d0000010001c00c000100010000012c\
         0004c000020100002904d0000080000053000a0018070707070707070707070707070707070707070707070707\
         000c0028000000000000000000000000000000000000002f00000000000000000000000000000000000000\
         0000000f000700117374616c65",
    );
    assert!(Message::from_vec(&fuzzed).is_err());
    assert!(matches!(check(fuzzed), Err(ResponseError::BadRdata(41))));

    let mut m = www_a();
    let mut edns = Edns::new();
    edns.options_mut()
        .insert(hickory_proto::rr::rdata::opt::EdnsOption::Unknown(10, vec![7; 8]));
    m.edns = Some(edns);
    let good = m.to_vec().unwrap();
    assert!(check(good.clone()).is_ok());
    // The OPT record is last: its data (one 12-byte option) is the last 12 bytes.
    let option_len = good.len() - 10;
    assert_eq!(good[option_len + 1], 8);
    let mut overrun = good.clone();
    overrun[option_len + 1] = 9;
    assert!(matches!(check(overrun), Err(ResponseError::BadRdata(41))));
    // Two bytes left over after the option (RDLENGTH grown to match).
    let mut left_over = good.clone();
    left_over[good.len() - 13] += 2;
    left_over.extend_from_slice(&[0, 3]);
    assert!(matches!(check(left_over), Err(ResponseError::BadRdata(41))));
}

#[test]
fn opt_records_where_none_may_be_are_refused() {
    let check = |bytes: Vec<u8>| CachedResponse::analyze(bytes, Instant::now(), &TtlLimits::default());
    // Found by the upstream_answer fuzz target: an OPT record counted in the answer section,
    // whose options nobody checked (and whose "TTL" was lowered as a TTL).
    let fuzzed = hex(
        "5eed8180000100030000000103777777076578616d706c6503636f6d0000010001c00c000100010000012c00\
         04c000020100002904d0000080000053000a0018070707070707070707ffffffffffffffffffffffffffffff\
         ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff0707070707\
         07070707070707070707000c0028000000000000000000000071000000000000000000000000000000000000\
         00000000000000000000000f000700117374616c65",
    );
    assert!(Message::from_vec(&fuzzed).is_err());
    assert!(matches!(check(fuzzed), Err(ResponseError::MisplacedOpt)));

    let mut m = www_a();
    m.edns = Some(Edns::new());
    let good = m.to_vec().unwrap();
    assert!(check(good.clone()).is_ok());
    let opt = good[good.len() - 11..].to_vec();
    assert_eq!(opt[..3], [0, 0, 41]);
    // The same OPT record twice.
    let mut twice = good.clone();
    twice[11] = 2;
    twice.extend_from_slice(&opt);
    assert!(Message::from_vec(&twice).is_err());
    assert!(matches!(check(twice), Err(ResponseError::MisplacedOpt)));
    // Counted as an authority record.
    let mut authority = good.clone();
    authority[9] = 1;
    authority[11] = 0;
    assert!(Message::from_vec(&authority).is_err());
    assert!(matches!(check(authority), Err(ResponseError::MisplacedOpt)));
    // Owned by a name other than the root (a pointer to the question).
    let mut owned = good[..good.len() - 11].to_vec();
    owned.extend_from_slice(b"\xC0\x0C");
    owned.extend_from_slice(&opt[1..]);
    assert!(Message::from_vec(&owned).is_err());
    assert!(matches!(check(owned), Err(ResponseError::MisplacedOpt)));
}

#[test]
fn a_truncated_answer_keeps_the_opt_record() {
    let mut m = response("many.example.com.", RecordType::A);
    for i in 0..80 {
        m.add_answer(a("many.example.com.", 60, i));
    }
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(true);
    m.edns = Some(edns);
    let r = analyze(&m);
    let question = client_question("many.example.com.");
    let mut out = Vec::new();
    r.write_to(5, true, &question, Instant::now(), 1232, &mut out);
    let got = Message::from_vec(&out).unwrap();
    assert!(got.metadata.truncation);
    assert!(got.answers.is_empty());
    let opt = got.edns.expect("the OPT record is kept");
    assert_eq!((opt.max_payload(), opt.flags().dnssec_ok), (1232, true));
}

/// An answer of `records` A records for `qname`: about 16 bytes each.
fn many_a(qname: &str, records: u8) -> Message {
    let mut m = response(qname, RecordType::A);
    for i in 0..records {
        m.add_answer(a(qname, 300, i));
    }
    m
}

#[test]
fn the_cache_is_bounded_by_bytes_and_by_entries() {
    // Found from outside: 43,449 answers of ~65 KB each took the daemon from 45 MB to 2.85 GB,
    // since only entries were counted. Large answers now count by their size...
    let budget = 1 << 20;
    let cache = PacketCache::new(10_000, budget);
    let big = analyze(&many_a("big.example.com", 250));
    assert!(big.memory() > 4_000, "{}", big.memory());
    for i in 0..2_000 {
        let name = format!("n{i}.example.com");
        cache.insert(
            key(name.as_bytes(), KeyFlags::default()).to_owned(),
            Arc::new(analyze(&many_a(&name, 250))),
        );
    }
    assert!(cache.bytes() <= budget, "{} bytes held", cache.bytes());
    assert!(cache.len() < 260, "{} entries of 4 KB in 1 MiB", cache.len());
    assert!(cache.len() > 100, "the budget is used: {} entries", cache.len());

    // ...and small ones by the entry limit, each weighing at least its share of the budget.
    let cache = PacketCache::new(10, budget);
    for i in 0..100 {
        let name = format!("s{i}.example.com");
        cache.insert(
            key(name.as_bytes(), KeyFlags::default()).to_owned(),
            Arc::new(analyze(&www_a())),
        );
    }
    assert!(cache.len() <= 10, "{} entries for a limit of 10", cache.len());
}
