//! Self-tests of the test harness: the fake upstream answers as documented and the client reads what arrives.
//! They query `FakeUpstream` directly, without the daemon, so a failure here is the harness's, not the daemon's.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{RData, RecordType};
use sinkhole_testkit::*;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Short wait for tests that expect silence, so the suite stays fast.
const SILENCE: Duration = Duration::from_millis(300);

#[test]
fn default_a_and_aaaa_echo_the_question() {
    let upstream = FakeUpstream::start();
    let query = new_query("www.Example.com", RecordType::A, false, false);
    let reply = exchange_udp(upstream.addr(), STAFF, &query, TIMEOUT).expect("default A over UDP");
    assert_eq!(reply.metadata.id, query.metadata.id);
    assert_eq!(reply.metadata.message_type, MessageType::Response);
    assert!(reply.metadata.recursion_available, "RA must be set");
    assert!(reply.metadata.recursion_desired, "RD must be echoed");
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert_eq!(reply.queries, query.queries, "question echoed as asked, case included");
    assert_eq!(addresses(&reply), ["192.0.2.1"]);
    assert_eq!(answer_ttls(&reply), [300]);
    assert!(reply.edns.is_none(), "no OPT in the reply to a query without one");

    let reply = query_udp(upstream.addr(), OTHER, "www.example.com", RecordType::AAAA, false).expect("default AAAA");
    assert_eq!(addresses(&reply), ["2001:db8::1"]);

    let reply =
        query_tcp(upstream.addr(), LOCALHOST, "www.example.com", RecordType::A, false).expect("default over TCP");
    assert_eq!(addresses(&reply), ["192.0.2.1"]);
}

#[test]
fn other_types_get_nodata_with_soa() {
    let upstream = FakeUpstream::start();
    let reply = query_udp(upstream.addr(), LOCALHOST, "www.example.com", RecordType::MX, false).expect("MX");
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.answers.is_empty());
    assert_soa(&reply, "example.com.");
}

#[test]
fn cname_hides_a_tiktok_cdn_name() {
    let upstream = FakeUpstream::start();
    let reply = query_udp(upstream.addr(), LOCALHOST, "cname.example.com", RecordType::A, false).expect("cname");
    assert_eq!(reply.answers.len(), 2);
    match &reply.answers[0].data {
        RData::CNAME(target) => assert_eq!(target.0.to_ascii(), "edge.tiktokcdn.com."),
        other => panic!("first answer should be the CNAME, got {other:?}"),
    }
    assert_eq!(reply.answers[1].name.to_ascii(), "edge.tiktokcdn.com.");
    assert_eq!(addresses(&reply), ["192.0.2.7"]);
    assert_eq!(answer_ttls(&reply), [300, 300]);
}

#[test]
fn cdn_chain_goes_through_akamai() {
    let upstream = FakeUpstream::start();
    let reply = query_udp(upstream.addr(), LOCALHOST, "cdn.example.com", RecordType::A, true).expect("cdn");
    match &reply.answers[0].data {
        RData::CNAME(target) => assert_eq!(target.0.to_ascii(), "cdn-example.com.akamaized.net."),
        other => panic!("first answer should be the CNAME, got {other:?}"),
    }
    assert_eq!(addresses(&reply), ["192.0.2.8"]);
}

#[test]
fn ttl5_has_a_short_ttl() {
    let upstream = FakeUpstream::start();
    let reply = query_udp(upstream.addr(), LOCALHOST, "ttl5.example.com", RecordType::A, false).expect("ttl5");
    assert_eq!(addresses(&reply), ["192.0.2.5"]);
    assert_eq!(answer_ttls(&reply), [5]);
}

#[test]
fn tc_is_truncated_over_udp_and_whole_over_tcp() {
    let upstream = FakeUpstream::start();
    let udp = query_udp(upstream.addr(), LOCALHOST, "tc.example.com", RecordType::A, false).expect("tc over UDP");
    assert!(udp.metadata.truncation, "TC must be set over UDP");
    assert!(udp.answers.is_empty());

    let tcp = query_tcp(upstream.addr(), LOCALHOST, "tc.example.com", RecordType::A, false).expect("tc over TCP");
    assert!(!tcp.metadata.truncation);
    let addrs = addresses(&tcp);
    assert_eq!(addrs.len(), 1 + BIG_RECORDS);
    assert_eq!(addrs[0], "192.0.2.9");
    let size = tcp.to_vec().expect("re-encode").len();
    assert!(size > 512, "tc over TCP must exceed 512 bytes, is {size}");
    assert_eq!(
        upstream.received(),
        [
            ("tc.example.com".to_string(), 1, "udp"),
            ("tc.example.com".to_string(), 1, "tcp")
        ]
    );
}

#[test]
fn big_is_over_512_bytes_even_over_udp() {
    let upstream = FakeUpstream::start();
    let query = new_query("big.example.com", RecordType::A, false, false);
    let raw = send_raw_udp(upstream.addr(), LOCALHOST, &query.to_vec().expect("encode"), TIMEOUT).expect("big reply");
    assert!(raw.len() > 512, "big must exceed 512 bytes, is {}", raw.len());
    let reply = Message::from_vec(&raw).expect("big parses");
    assert!(!reply.metadata.truncation);
    assert_eq!(addresses(&reply).len(), BIG_RECORDS);
    assert_eq!(addresses(&reply)[0], "203.0.113.1");
}

#[test]
fn nx_has_soa_for_negative_caching() {
    let upstream = FakeUpstream::start();
    let reply = query_udp(upstream.addr(), LOCALHOST, "nx.example.com", RecordType::A, false).expect("nx");
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    assert!(reply.answers.is_empty());
    assert_soa(&reply, "example.com.");
}

#[test]
fn servfail_is_servfail() {
    let upstream = FakeUpstream::start();
    let reply = query_udp(upstream.addr(), LOCALHOST, "servfail.example.com", RecordType::A, false).expect("servfail");
    assert_eq!(reply.metadata.response_code, ResponseCode::ServFail);
    assert!(reply.answers.is_empty());
}

#[test]
fn wrongid_sends_a_spoof_then_the_right_answer() {
    let upstream = FakeUpstream::start();
    let query = new_query("wrongid.example.com", RecordType::A, false, false);
    let first = send_raw_udp(upstream.addr(), LOCALHOST, &query.to_vec().expect("encode"), TIMEOUT).expect("a reply");
    let first = Message::from_vec(&first).expect("the spoof is DNS");
    assert_ne!(
        first.metadata.id, query.metadata.id,
        "the first reply must carry a wrong id"
    );
    assert_eq!(addresses(&first), ["203.0.113.66"]);

    let reply = exchange_udp(upstream.addr(), LOCALHOST, &query, TIMEOUT).expect("the right reply after the spoof");
    assert_eq!(reply.metadata.id, query.metadata.id);
    assert_eq!(addresses(&reply), ["192.0.2.1"]);
}

#[test]
fn garbage_is_not_dns() {
    let upstream = FakeUpstream::start();
    let query = new_query("garbage.example.com", RecordType::A, false, false);
    let raw = send_raw_udp(upstream.addr(), LOCALHOST, &query.to_vec().expect("encode"), TIMEOUT).expect("bytes");
    assert!(Message::from_vec(&raw).is_err(), "garbage must not parse: {raw:?}");
    assert_eq!(
        raw[..2],
        query.metadata.id.to_be_bytes(),
        "garbage starts with the query id"
    );
    let err = exchange_udp(upstream.addr(), LOCALHOST, &query, TIMEOUT).expect_err("garbage is an error");
    assert!(err.contains("not a DNS message"), "{err}");
}

#[test]
fn noise_sends_six_strays_then_the_right_answer() {
    let upstream = FakeUpstream::start();
    let query = new_query("noise.example.com", RecordType::A, false, false);
    let socket = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a client socket");
    socket.connect(upstream.addr()).expect("connect to the upstream");
    socket.set_read_timeout(Some(TIMEOUT)).expect("set a read timeout");
    socket.send(&query.to_vec().expect("encode")).expect("send");
    let mut buf = [0u8; 4096];
    let datagrams: Vec<Vec<u8>> = (0..7)
        .map(|i| {
            let len = socket.recv(&mut buf).unwrap_or_else(|e| panic!("datagram {i}: {e}"));
            buf[..len].to_vec()
        })
        .collect();
    assert!(
        Message::from_vec(&datagrams[0]).is_err(),
        "first, bytes that are not DNS"
    );
    assert_eq!(datagrams[0][..2], query.metadata.id.to_be_bytes());
    // The answer cut short (the sixth) does not parse; the rest do.
    assert!(Message::from_vec(&datagrams[5]).is_err(), "the answer cut short");
    let replies: Vec<Message> = [&datagrams[1..5], &datagrams[6..]]
        .concat()
        .iter()
        .map(|d| Message::from_vec(d).expect("the rest is DNS"))
        .collect();
    assert_ne!(replies[0].metadata.id, query.metadata.id, "a wrong id");
    assert_eq!(replies[1].metadata.id, query.metadata.id);
    assert_eq!(
        replies[1].queries[0].name().to_ascii(),
        "other.noise.test.",
        "another name"
    );
    assert_eq!(replies[2].metadata.id, query.metadata.id);
    assert_eq!(replies[2].queries[0].name(), query.queries[0].name());
    assert_eq!(replies[2].queries[0].query_type(), RecordType::AAAA, "another type");
    assert_eq!(replies[3].metadata.id, query.metadata.id);
    assert_eq!(
        replies[3].metadata.message_type,
        hickory_proto::op::MessageType::Query,
        "the answer without QR"
    );
    for stray in &replies[..4] {
        assert!(
            addresses(stray)
                .iter()
                .all(|a| a == "192.0.2.200" || a == "2001:db8::c8"),
            "strays carry the noise address: {stray:?}"
        );
    }
    assert_eq!(replies[4].metadata.id, query.metadata.id, "then the answer");
    assert_eq!(replies[4].queries, query.queries);
    assert_eq!(addresses(&replies[4]), ["192.0.2.1"]);
    let reply = query_tcp(upstream.addr(), LOCALHOST, "noise.example.com", RecordType::A, false).expect("TCP");
    assert_eq!(addresses(&reply), ["192.0.2.1"], "TCP gets the answer alone");
}

#[test]
fn a_late_upstream_answers_late_with_an_address_of_its_own() {
    let upstream = FakeUpstream::start_late(Duration::from_millis(400));
    let started = Instant::now();
    let reply = query_udp(upstream.addr(), LOCALHOST, "www.example.com", RecordType::A, false).expect("late");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(addresses(&reply), [LATE_V4.to_string()]);
    let reply = query_tcp(upstream.addr(), LOCALHOST, "nx.example.com", RecordType::A, false).expect("late");
    assert_eq!(
        reply.metadata.response_code,
        ResponseCode::NXDomain,
        "the table still holds"
    );
}

#[test]
fn a_stopped_upstream_refuses_and_a_restarted_one_answers_on_its_port() {
    let mut upstream = FakeUpstream::start();
    let addr = upstream.addr();
    query_udp(addr, LOCALHOST, "www.example.com", RecordType::A, false).expect("up");
    upstream.stop();
    let started = Instant::now();
    query_udp(addr, LOCALHOST, "www.example.com", RecordType::A, false).expect_err("stopped");
    query_tcp(addr, LOCALHOST, "www.example.com", RecordType::A, false).expect_err("stopped over TCP");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "the port refuses, no timeout"
    );
    upstream.stop();
    upstream.restart();
    assert_eq!(upstream.addr(), addr);
    let reply = query_udp(addr, LOCALHOST, "www.example.com", RecordType::A, false).expect("up again");
    assert_eq!(addresses(&reply), ["192.0.2.1"]);
    query_tcp(addr, LOCALHOST, "www.example.com", RecordType::A, false).expect("up again over TCP");
    assert_eq!(upstream.count("www.example.com"), 3, "the record survives a restart");
}

#[test]
fn drop_never_answers() {
    let upstream = FakeUpstream::start();
    let query = new_query("drop.example.com", RecordType::A, false, false);
    let started = Instant::now();
    let err = exchange_udp(upstream.addr(), LOCALHOST, &query, SILENCE).expect_err("drop must time out");
    assert!(started.elapsed() >= SILENCE);
    assert!(err.contains("no UDP reply"), "{err}");
    let err = exchange_tcp(upstream.addr(), LOCALHOST, &[query], SILENCE).expect_err("drop must time out on TCP");
    assert!(err.contains("timed out"), "{err}");
    assert_eq!(
        upstream.count("DROP.example.com."),
        2,
        "queries are counted even when dropped"
    );
}

#[test]
fn malformed_queries_are_ignored() {
    let upstream = FakeUpstream::start();
    assert_eq!(
        send_raw_udp(upstream.addr(), LOCALHOST, b"\x12\x34not dns", SILENCE),
        None
    );
    // A response (QR set) is not a query either.
    let mut response = new_query("www.example.com", RecordType::A, false, false);
    response.metadata.message_type = MessageType::Response;
    let bytes = response.to_vec().expect("encode");
    assert_eq!(send_raw_udp(upstream.addr(), LOCALHOST, &bytes, SILENCE), None);
    assert!(upstream.received().is_empty());
    // And it still answers afterwards.
    query_udp(upstream.addr(), LOCALHOST, "www.example.com", RecordType::A, false).expect("still serving");
}

#[test]
fn edns_is_echoed_with_do() {
    let upstream = FakeUpstream::start();
    let query = new_query("www.example.com", RecordType::A, true, true);
    let reply = exchange_udp(upstream.addr(), LOCALHOST, &query, TIMEOUT).expect("EDNS query");
    let edns = reply.edns.expect("OPT echoed");
    assert_eq!(edns.max_payload(), EDNS_PAYLOAD);
    assert!(edns.flags().dnssec_ok, "DO copied");

    let reply = query_udp(upstream.addr(), LOCALHOST, "www.example.com", RecordType::A, true).expect("EDNS, no DO");
    assert!(!reply.edns.expect("OPT echoed").flags().dnssec_ok);
}

#[test]
fn pipelined_tcp_gets_every_answer() {
    let upstream = FakeUpstream::start();
    let names = [
        ("one.example.com", RecordType::A),
        ("nx.example.com", RecordType::A),
        ("two.example.com", RecordType::AAAA),
    ];
    let replies = query_tcp_pipelined(upstream.addr(), STAFF, &names).expect("pipelined");
    assert_eq!(replies.len(), 3);
    for (name, qtype) in names {
        let reply = replies
            .iter()
            .find(|r| r.queries[0].name().to_ascii() == format!("{name}.") && r.queries[0].query_type() == qtype)
            .unwrap_or_else(|| panic!("no reply for {name} {qtype}"));
        let expected_rcode = if name.starts_with("nx.") {
            ResponseCode::NXDomain
        } else {
            ResponseCode::NoError
        };
        assert_eq!(reply.metadata.response_code, expected_rcode);
    }
    assert_eq!(
        upstream
            .received()
            .iter()
            .filter(|(_, _, transport)| *transport == "tcp")
            .count(),
        3
    );
}

#[test]
fn slow_answers_late_without_holding_back_others() {
    let upstream = FakeUpstream::start();
    let slow = new_query("slow.example.com", RecordType::A, false, false);
    let err = exchange_udp(upstream.addr(), LOCALHOST, &slow, SILENCE).expect_err("slow is not early");
    assert!(err.contains("no UDP reply"), "{err}");
    // Meanwhile the upstream serves other queries at once.
    let started = Instant::now();
    query_udp(upstream.addr(), LOCALHOST, "fast.example.com", RecordType::A, false).expect("fast");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn dead_upstream_records_but_never_answers() {
    let upstream = FakeUpstream::start_dead();
    let query = new_query("www.example.com", RecordType::A, false, false);
    exchange_udp(upstream.addr(), LOCALHOST, &query, SILENCE).expect_err("dead over UDP");
    exchange_tcp(upstream.addr(), LOCALHOST, &[query], SILENCE).expect_err("dead over TCP");
    assert_eq!(upstream.count("www.example.com"), 2);
}

#[test]
fn nothing_listening_is_an_error_not_a_hang() {
    let upstream = FakeUpstream::start();
    let addr = upstream.addr();
    drop(upstream);
    let started = Instant::now();
    query_udp(addr, LOCALHOST, "www.example.com", RecordType::A, false).expect_err("stopped upstream");
    query_tcp(addr, LOCALHOST, "www.example.com", RecordType::A, false).expect_err("stopped upstream over TCP");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn ede_reads_info_code_and_text() {
    let mut reply = Message::response(7, hickory_proto::op::OpCode::Query);
    assert_eq!(ede(&reply), None, "no EDNS, no EDE");
    let mut edns = Edns::new();
    edns.options_mut().insert(EdnsOption::Unknown(
        EDE_OPTION,
        b"\x00\x11blocked by policy staff".to_vec(),
    ));
    edns.options_mut()
        .insert(EdnsOption::Unknown(EDE_OPTION, b"\x00\x0f".to_vec()));
    reply.edns = Some(edns);
    let wire = reply.to_vec().expect("encode");
    let parsed = Message::from_vec(&wire).expect("decode");
    assert_eq!(ede(&parsed), Some((17, "blocked by policy staff".to_string())));
    assert_eq!(
        edes(&parsed),
        [(17, "blocked by policy staff".to_string()), (15, String::new())]
    );
}

#[test]
fn metric_sums_matching_series() {
    let page = "# HELP sinkhole_queries_total Queries answered.\n\
                # TYPE sinkhole_queries_total counter\n\
                sinkhole_queries_total{protocol=\"udp\",outcome=\"blocked\"} 3\n\
                sinkhole_queries_total{protocol=\"tcp\",outcome=\"blocked\"} 2\n\
                sinkhole_queries_total{protocol=\"udp\",outcome=\"forwarded\"} 5\n\
                sinkhole_queries_total_extra 100\n\
                sinkhole_cache_entries 42\n";
    assert_eq!(
        metric(page, "sinkhole_queries_total", &[("outcome", "blocked")]),
        Some(5.0)
    );
    assert_eq!(metric(page, "sinkhole_queries_total", &[]), Some(10.0));
    assert_eq!(metric(page, "sinkhole_cache_entries", &[]), Some(42.0));
    assert_eq!(metric(page, "sinkhole_queries_total", &[("outcome", "cached")]), None);
    assert_eq!(metric(page, "sinkhole_blocks_total", &[]), None);
}

#[test]
fn hits_are_read_line_by_line() {
    let dir = TestDir::new();
    let path = dir.write_file(
        "hits.jsonl",
        "{\"qname\":\"www.tiktok.com\"}\n\n{\"qname\":\"tiktokcdn.com\"}\n{\"qn",
    );
    assert_eq!(
        wait_for_hits(&path, 2, SILENCE).len(),
        2,
        "the unfinished last line is not counted yet"
    );
    assert_eq!(
        read_hits(dir.path().join("absent.jsonl")),
        Vec::<serde_json::Value>::new()
    );
    let path = dir.write_file("hits.jsonl", "{\"qname\":\"www.tiktok.com\"}\n");
    assert_eq!(read_hits(&path)[0]["qname"], "www.tiktok.com");
}

#[test]
fn free_ports_are_distinct() {
    let ports: std::collections::HashSet<u16> = (0..20).map(|_| free_port()).collect();
    assert_eq!(ports.len(), 20);
}

/// The reply's authority section holds exactly one SOA for `zone`, TTL 60, MINIMUM 30.
fn assert_soa(reply: &Message, zone: &str) {
    assert_eq!(reply.authorities.len(), 1, "one SOA in authority: {reply}");
    let soa = &reply.authorities[0];
    assert_eq!(soa.name.to_ascii(), zone);
    assert_eq!(soa.ttl, SOA_TTL);
    match &soa.data {
        RData::SOA(soa) => assert_eq!(soa.minimum, SOA_MINIMUM),
        other => panic!("authority should be an SOA, got {other:?}"),
    }
}
