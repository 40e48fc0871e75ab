//! Forwarding, caching and transports as clients see them: TCP, truncation, timeouts, failover,
//! the cache's TTLs, and packets that are not proper queries.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use sinkhole_testkit::*;

const STAFF: &str = "127.10.0.5";
const NOBODY: &str = "127.20.0.5";

fn config(upstreams: &[SocketAddr], timeout_ms: u64) -> String {
    let servers: Vec<String> = upstreams.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"
[server]
listen = ["{{listen}}"]
allow = ["127.0.0.0/8"]
threads = 1
metrics = "off"
[upstream]
servers = [{}]
timeout_ms = {timeout_ms}
[lists.tiktok]
domains = ["tiktok.com", "tiktokcdn.com"]
[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["tiktok"]
[log]
hits = "off"
"#,
        servers.join(", ")
    )
}

#[test]
fn a_wildcard_listener_answers_from_the_address_each_query_was_sent_to() {
    // 0.0.0.0 hears every loopback address. The test's client sockets are connected to
    // 127.0.0.2 and so take only datagrams from 127.0.0.2: an answer sent from the kernel's
    // choice of source (127.0.0.1) never reaches them. Both kinds of answer are checked: a block
    // (sent in the worker's batch) and a forwarded one (sent by its own task).
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(&[up.addr()], 1000).replace("{listen}", "0.0.0.0:{port}"));
    let second = SocketAddr::new(ip("127.0.0.2"), d.addr().port());
    let blocked = query_udp(second, ip(STAFF), "www.tiktok.com", RecordType::A, true).expect("block answer");
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    let forwarded = query_udp(second, ip(NOBODY), "www.example.org", RecordType::A, false).expect("forwarded answer");
    assert_eq!(addresses(&forwarded), vec!["192.0.2.1"]);
    let cached = query_udp(second, ip(STAFF), "www.example.org", RecordType::A, false).expect("cached answer");
    assert_eq!(addresses(&cached), vec!["192.0.2.1"]);
}

#[test]
fn tcp_answers_blocks_forwards_and_pipelines() {
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(&[up.addr()], 1000));
    let blocked = query_tcp(d.addr(), ip(STAFF), "www.tiktok.com", RecordType::A, true).expect("tcp answer");
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(ede(&blocked).map(|e| e.0), Some(15));
    let open = query_tcp(d.addr(), ip(NOBODY), "www.example.org", RecordType::AAAA, false).expect("tcp answer");
    assert_eq!(addresses(&open), vec!["2001:db8::1"]);
    let answers = query_tcp_pipelined(
        d.addr(),
        ip(STAFF),
        &[
            ("a.example", RecordType::A),
            ("tiktok.com", RecordType::A),
            ("b.example", RecordType::A),
        ],
    )
    .expect("pipelined answers");
    assert_eq!(answers.len(), 3);
    let by_name = |n: &str| {
        answers
            .iter()
            .find(|m| m.queries[0].name().to_ascii() == n)
            .unwrap_or_else(|| panic!("no answer for {n}"))
    };
    assert_eq!(addresses(by_name("a.example.")), vec!["192.0.2.1"]);
    assert_eq!(by_name("tiktok.com.").metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(addresses(by_name("b.example.")), vec!["192.0.2.1"]);
}

#[test]
fn truncated_upstream_answers_are_fetched_over_tcp_and_truncated_for_small_clients() {
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(&[up.addr()], 1000));
    let big = query_udp(d.addr(), ip(NOBODY), "tc.example", RecordType::A, true).expect("answer");
    assert!(!big.metadata.truncation, "fits the client's 1232 bytes");
    assert!(
        addresses(&big).len() > 20,
        "the whole TCP answer: {}",
        addresses(&big).len()
    );
    assert!(
        up.received()
            .iter()
            .any(|(name, _, transport)| name == "tc.example" && *transport == "tcp"),
        "retried over TCP"
    );

    let small = query_udp(d.addr(), ip(NOBODY), "big.example", RecordType::A, false).expect("answer");
    assert!(
        small.metadata.truncation,
        "over 512 bytes without EDNS: TC; got {small:?}"
    );
    assert!(small.answers.is_empty());
    let full = query_tcp(d.addr(), ip(NOBODY), "big.example", RecordType::A, false).expect("tcp answer");
    assert_eq!(addresses(&full).len(), 40);
}

#[test]
fn udp_answers_never_exceed_the_configured_payload_whatever_the_client_advertises() {
    // A forged query advertising 65535 bytes must not draw 3 KB (or 64 KB) at its victim: the
    // answer is cut to TC at server.max_udp_payload (1232 by default), and TCP gets it whole.
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(&[up.addr()], 1000));
    let mut query = new_query("huge.example", RecordType::A, true, false);
    if let Some(edns) = query.edns.as_mut() {
        edns.set_max_payload(u16::MAX);
    }
    let bytes = query.to_vec().expect("encode");
    for _ in 0..2 {
        // The first answer is forwarded, the second comes from the cache: both are bounded.
        let answer = send_raw_udp(d.addr(), ip(NOBODY), &bytes, Duration::from_secs(2)).expect("an answer");
        assert!(answer.len() <= 1232, "{} bytes over UDP", answer.len());
        let message = hickory_proto::op::Message::from_vec(&answer).expect("decodes");
        assert!(message.metadata.truncation, "TC set, so the client retries over TCP");
    }
    let full = query_tcp(d.addr(), ip(NOBODY), "huge.example", RecordType::A, true).expect("tcp answer");
    assert_eq!(addresses(&full).len(), HUGE_RECORDS);

    // A higher limit is the operator's choice.
    let d = Daemon::start(&config(&[up.addr()], 1000).replace("threads = 1", "threads = 1\nmax_udp_payload = 4096"));
    let answer = send_raw_udp(d.addr(), ip(NOBODY), &bytes, Duration::from_secs(2)).expect("an answer");
    let message = hickory_proto::op::Message::from_vec(&answer).expect("decodes");
    assert!(
        !message.metadata.truncation && message.answers.len() == HUGE_RECORDS,
        "{} bytes",
        answer.len()
    );
}

#[test]
fn any_is_answered_minimally_and_not_forwarded() {
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(&[up.addr()], 1000));
    for answer in [
        query_udp(d.addr(), ip(NOBODY), "any.example", RecordType::ANY, true).expect("udp answer"),
        query_tcp(d.addr(), ip(NOBODY), "any.example", RecordType::ANY, false).expect("tcp answer"),
    ] {
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
        assert_eq!(answer.answers.len(), 1, "{answer:?}");
        assert_eq!(answer.answers[0].record_type(), RecordType::HINFO);
    }
    assert_eq!(up.count("any.example"), 0, "ANY is never forwarded");
    // A blocked name is blocked whatever the type.
    let blocked = query_udp(d.addr(), ip(STAFF), "tiktok.com", RecordType::ANY, true).expect("answer");
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
}

/// A CHAOS-class TXT query for `name` (`version.bind`, `id.server`, ...), as `dig NAME CH TXT` sends it.
fn chaos_query(name: &str) -> hickory_proto::op::Message {
    let mut query = new_query(name, RecordType::TXT, true, false);
    query.queries[0].set_query_class(hickory_proto::rr::DNSClass::CH);
    query
}

/// The TXT strings of the answer section.
fn txt(answer: &hickory_proto::op::Message) -> Vec<String> {
    answer
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            hickory_proto::rr::RData::TXT(txt) => Some(txt.to_string()),
            _ => None,
        })
        .collect()
}

#[test]
fn chaos_queries_are_answered_here_and_never_forwarded() {
    // Forwarded, version.bind and hostname.bind would tell every client the upstream's software and host name.
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(&[up.addr()], 1000));
    for name in [
        "version.bind",
        "version.server",
        "hostname.bind",
        "id.server",
        "authors.bind",
    ] {
        let answer = exchange_udp(d.addr(), ip(NOBODY), &chaos_query(name), TIMEOUT).expect("answer");
        assert_eq!(answer.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(answer.answers.is_empty(), "{name}: {answer:?}");
    }
    let answers = exchange_tcp(d.addr(), ip(NOBODY), &[chaos_query("version.bind")], TIMEOUT).expect("TCP answer");
    assert_eq!(answers[0].metadata.response_code, ResponseCode::Refused);
    let forwarded = |up: &FakeUpstream| {
        up.received()
            .into_iter()
            .filter(|(name, _, _)| name != PROBE_NAME)
            .count()
    };
    assert_eq!(forwarded(&up), 0, "nothing forwarded: {:?}", up.received());

    // Told what to say, it says that and nothing more.
    let told = config(&[up.addr()], 1000).replace(
        "metrics = \"off\"",
        "metrics = \"off\"\nidentity = \"resolver-1.office\"\nversion = \"sinkhole\"",
    );
    let d = Daemon::start(&told);
    for (name, said) in [
        ("version.bind", "sinkhole"),
        ("VERSION.server", "sinkhole"),
        ("hostname.bind", "resolver-1.office"),
        ("id.server", "resolver-1.office"),
    ] {
        let answer = exchange_udp(d.addr(), ip(NOBODY), &chaos_query(name), TIMEOUT).expect("answer");
        assert_eq!(answer.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(txt(&answer), [said], "{name}");
        assert_eq!(answer.answers[0].dns_class, hickory_proto::rr::DNSClass::CH, "{name}");
    }
    let answer = exchange_udp(d.addr(), ip(NOBODY), &chaos_query("authors.bind"), TIMEOUT).expect("answer");
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);
    assert_eq!(forwarded(&up), 0, "nothing forwarded: {:?}", up.received());
}

#[test]
fn identical_queries_in_flight_go_upstream_once() {
    // Found from outside: 50 clients asking one name made 50 upstream queries, so a spoofer had
    // 50 ids and ports to hit at once.
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(&[up.addr()], 5000));
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let server = d.addr();
            std::thread::spawn(move || {
                let src: IpAddr = format!("127.30.0.{}", i + 1).parse().expect("address");
                let query = new_query("slow.example", RecordType::A, false, false);
                exchange_udp(server, src, &query, Duration::from_secs(6)).map(|answer| addresses(&answer))
            })
        })
        .collect();
    for client in clients {
        let answer = client.join().expect("client thread").expect("an answer");
        assert_eq!(answer, vec!["192.0.2.1"]);
    }
    assert_eq!(up.count("slow.example"), 1, "one upstream query for 50 clients");
}

#[test]
fn when_every_upstream_fails_an_expired_answer_is_served_stale() {
    let up = FakeUpstream::start();
    // max_ttl = 1: answers expire after a second; serve_stale keeps them for a day.
    let d = Daemon::start(&config(&[up.addr()], 500).replace("[lists.tiktok]", "[cache]\nmax_ttl = 1\n[lists.tiktok]"));
    let fresh = query_udp(d.addr(), ip(NOBODY), "www.example.org", RecordType::A, true).expect("answer");
    assert_eq!(addresses(&fresh), vec!["192.0.2.1"]);
    drop(up);
    std::thread::sleep(Duration::from_millis(1100));
    let stale = query_udp(d.addr(), ip(NOBODY), "www.example.org", RecordType::A, true).expect("answer");
    assert_eq!(stale.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&stale), vec!["192.0.2.1"]);
    assert_eq!(answer_ttls(&stale), vec![30], "RFC 8767: stale answers live 30 s");
    assert_eq!(ede(&stale).map(|e| e.0), Some(3), "EDE 3, Stale Answer");
    // A name never answered is a SERVFAIL still.
    let never = query_udp(d.addr(), ip(NOBODY), "never.example", RecordType::A, true).expect("answer");
    assert_eq!(never.metadata.response_code, ResponseCode::ServFail);
}

#[test]
fn upstream_timeout_gives_servfail_in_time() {
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(&[up.addr()], 500));
    let start = Instant::now();
    let msg = query_udp(d.addr(), ip(NOBODY), "slow.example", RecordType::A, true).expect("an answer, not silence");
    assert_eq!(msg.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(ede(&msg).map(|e| e.0), Some(22));
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn fails_over_to_the_second_upstream() {
    let dead = FakeUpstream::start_dead();
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(&[dead.addr(), up.addr()], 1000));
    for name in ["one.example", "two.example"] {
        let msg = query_udp(d.addr(), ip(NOBODY), name, RecordType::A, false).expect("answer");
        assert_eq!(addresses(&msg), vec!["192.0.2.1"], "{name}");
    }
}

#[test]
fn cache_hits_count_ttls_down_and_servfail_is_not_cached() {
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(&[up.addr()], 1000));
    let first = query_udp(d.addr(), ip(NOBODY), "www.example.net", RecordType::A, false).expect("answer");
    assert_eq!(answer_ttls(&first), vec![300]);
    std::thread::sleep(Duration::from_millis(2100));
    let second = query_udp(d.addr(), ip(NOBODY), "WWW.Example.NET", RecordType::A, false).expect("answer");
    assert_eq!(
        second.queries[0].name().to_ascii(),
        "WWW.Example.NET.",
        "the client's case is echoed"
    );
    let ttl = answer_ttls(&second)[0];
    assert!(
        (297..=298).contains(&ttl),
        "TTL counted down by the 2 s in cache: {ttl}"
    );
    assert_eq!(up.count("www.example.net"), 1, "the second answer came from the cache");

    let nx = query_udp(d.addr(), ip(NOBODY), "nx.example", RecordType::A, false).expect("answer");
    assert_eq!(nx.metadata.response_code, ResponseCode::NXDomain);
    query_udp(d.addr(), ip(NOBODY), "nx.example", RecordType::A, false).expect("answer");
    assert_eq!(up.count("nx.example"), 1, "negative answers are cached (RFC 2308)");

    for _ in 0..2 {
        let sf = query_udp(d.addr(), ip(NOBODY), "servfail.example", RecordType::A, false).expect("answer");
        assert_eq!(sf.metadata.response_code, ResponseCode::ServFail);
    }
    assert_eq!(up.count("servfail.example"), 2, "SERVFAIL is not cached");
}

#[test]
fn answers_with_a_wrong_id_are_ignored() {
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(&[up.addr()], 1000));
    let msg = query_udp(d.addr(), ip(NOBODY), "wrongid.example", RecordType::A, false).expect("answer");
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&msg), vec!["192.0.2.1"]);
}

#[test]
fn malformed_packets_get_formerr_notimp_or_nothing_and_the_daemon_keeps_serving() {
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(&[up.addr()], 1000));
    let src = ip(NOBODY);
    let wait = Duration::from_millis(300);
    let good = new_query("ok.example", RecordType::A, false, false)
        .to_vec()
        .expect("encode");

    assert_eq!(
        send_raw_udp(d.addr(), src, &good[..5], wait),
        None,
        "shorter than a header: dropped"
    );
    let mut response = good.clone();
    response[2] |= 0x80;
    assert_eq!(
        send_raw_udp(d.addr(), src, &response, wait),
        None,
        "responses are never answered"
    );

    let mut two_questions = good.clone();
    two_questions[5] = 2;
    let reply = send_raw_udp(d.addr(), src, &two_questions, wait).expect("FORMERR");
    assert_eq!(reply[3] & 0x0f, 1, "FORMERR");
    assert_eq!(&reply[..2], &good[..2], "id echoed");

    let mut notify = good.clone();
    notify[2] = (notify[2] & 0x87) | (4 << 3);
    let reply = send_raw_udp(d.addr(), src, &notify, wait).expect("NOTIMP");
    assert_eq!(reply[3] & 0x0f, 4, "NOTIMP");

    let truncated_question = &good[..good.len() - 3];
    let reply = send_raw_udp(d.addr(), src, truncated_question, wait).expect("FORMERR");
    assert_eq!(reply[3] & 0x0f, 1);

    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..300 {
        let mut junk = good.clone();
        for _ in 0..4 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let i = (state as usize) % junk.len();
            junk[i] = (state >> 40) as u8;
        }
        junk.truncate(12 + (state as usize) % (junk.len() - 11));
        let _ = send_raw_udp(d.addr(), src, &junk, Duration::from_millis(5));
    }
    let after = query_udp(d.addr(), src, "still.example", RecordType::A, false).expect("still serving");
    assert_eq!(addresses(&after), vec!["192.0.2.1"]);
    let axfr = query_tcp(d.addr(), src, "example.com", RecordType::AXFR, false).expect("answer");
    assert_eq!(axfr.metadata.response_code, ResponseCode::Refused);
}
