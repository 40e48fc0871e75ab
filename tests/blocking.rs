//! Blocking as clients see it: the real daemon on loopback, a fake upstream owned by the test,
//! and queries from source addresses inside and outside the policies.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use sinkhole_testkit::*;

/// Client addresses, one per policy of [`CONFIG`].
const STAFF: &str = "127.10.0.5";
const COMMS: &str = "127.10.50.5";
const NOBODY: &str = "127.20.0.5";
const NULL: &str = "127.11.0.5";
const NODATA: &str = "127.12.0.5";
const REFUSE: &str = "127.13.0.5";
const PAGE: &str = "127.14.0.5";
const AUDIT: &str = "127.15.0.5";
const PAST: &str = "127.16.0.5";
const FUTURE: &str = "127.17.0.5";

const LIST: &str =
    "# TikTok, as a test list\ntiktok.com\n0.0.0.0 tiktokcdn.com\n||p16-tiktok-*.ibyteimg.com^\nnot a domain!\n";

const CONFIG: &str = r#"
[server]
listen = ["{listen}"]
metrics = "{metrics}"
allow = ["127.0.0.0/9"]
threads = 2
[upstream]
servers = ["{upstream}"]
timeout_ms = 1000
[lists.tiktok]
files = ["{dir}/tiktok.txt"]
[lists.exceptions]
domains = ["developers.tiktok.com"]

[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["tiktok"]
allow = ["exceptions"]

[[policy]]
name = "comms-phones"
clients = ["127.10.50.0/24"]
block = []

[[policy]]
name = "null"
clients = ["127.11.0.0/16"]
block = ["tiktok"]
answer = "null"

[[policy]]
name = "nodata"
clients = ["127.12.0.0/16"]
block = ["tiktok"]
answer = "nodata"
block_ttl = 30

[[policy]]
name = "refuse"
clients = ["127.13.0.0/16"]
block = ["tiktok"]
answer = "refused"

[[policy]]
name = "page"
clients = ["127.14.0.0/16"]
block = ["tiktok"]
answer = "192.0.2.53"

[[policy]]
name = "pilot"
clients = ["127.15.0.0/16"]
block = ["tiktok"]
mode = "audit"

[[policy]]
name = "ban-2023"
clients = ["127.16.0.0/16"]
block = ["tiktok"]
active_from = "2023-03-17T00:00:00+01:00"
active_until = "2023-09-17T00:00:00+02:00"

[[policy]]
name = "next-year"
clients = ["127.17.0.0/16"]
block = ["tiktok"]
active_from = "2099-01-01T00:00:00Z"

[log]
hits = "{dir}/hits.jsonl"
"#;

struct Setup {
    upstream: FakeUpstream,
    daemon: Daemon,
}

fn start() -> Setup {
    let (upstream, daemon) = Daemon::start_forwarding(CONFIG, &[("tiktok.txt", LIST)]);
    Setup { upstream, daemon }
}

impl Setup {
    fn udp(&self, src: &str, name: &str, qtype: RecordType, edns: bool) -> hickory_proto::op::Message {
        query_udp(self.daemon.addr(), ip(src), name, qtype, edns).expect("daemon answers")
    }

    fn hits(&self, count: usize) -> Vec<serde_json::Value> {
        wait_for_hits(self.daemon.dir().join("hits.jsonl"), count, Duration::from_secs(5))
    }
}

#[test]
fn staff_get_nxdomain_with_soa_and_extended_error() {
    let s = start();
    let msg = s.udp(STAFF, "www.TikTok.com", RecordType::A, true);
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    assert!(!msg.metadata.authoritative, "AA off");
    assert!(msg.metadata.recursion_available, "RA on");
    assert_eq!(
        msg.queries[0].name().to_ascii(),
        "www.TikTok.com.",
        "question echoed as asked"
    );
    assert!(msg.answers.is_empty());
    let soa = &msg.authorities[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.name.to_ascii().to_lowercase(), "tiktok.com.");
    assert_eq!(soa.ttl, 10, "the default block TTL");
    assert_eq!(ede(&msg), Some((15, "blocked by policy staff".to_string())));

    let plain = s.udp(STAFF, "www.tiktok.com", RecordType::A, false);
    assert_eq!(plain.metadata.response_code, ResponseCode::NXDomain);
    assert!(plain.edns.is_none(), "no OPT to a client that sent none");
    assert_eq!(s.upstream.count("www.tiktok.com"), 0, "blocked names never go upstream");
}

#[test]
fn subdomains_and_apex_match_but_lookalikes_do_not() {
    let s = start();
    for name in [
        "tiktok.com",
        "a.b.c.tiktok.com",
        "v16m.tiktokcdn.com",
        "p16-tiktok-va.ibyteimg.com",
    ] {
        let msg = s.udp(STAFF, name, RecordType::A, false);
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain, "{name}");
    }
    for name in ["nottiktok.com", "tiktok.com.example", "p16-other.ibyteimg.com"] {
        let msg = s.udp(STAFF, name, RecordType::A, false);
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError, "{name}");
        assert_eq!(addresses(&msg), vec!["192.0.2.1"], "{name}");
    }
}

#[test]
fn clients_outside_policies_and_exempt_prefixes_resolve_normally() {
    let s = start();
    for src in [NOBODY, COMMS] {
        let msg = s.udp(src, "www.tiktok.com", RecordType::A, false);
        assert_eq!(msg.metadata.response_code, ResponseCode::NoError, "{src}");
        assert_eq!(addresses(&msg), vec!["192.0.2.1"], "{src}");
    }
    let refused = s.udp("127.200.0.1", "example.com", RecordType::A, true);
    assert_eq!(
        refused.metadata.response_code,
        ResponseCode::Refused,
        "outside server.allow"
    );
    assert_eq!(ede(&refused).map(|e| e.0), Some(18));
}

#[test]
fn exceptions_are_never_blocked() {
    let s = start();
    let msg = s.udp(STAFF, "developers.tiktok.com", RecordType::A, false);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&msg), vec!["192.0.2.1"]);
}

#[test]
fn each_answer_kind() {
    let s = start();
    let a = s.udp(NULL, "www.tiktok.com", RecordType::A, false);
    assert_eq!(
        (a.metadata.response_code, addresses(&a)),
        (ResponseCode::NoError, vec!["0.0.0.0".to_string()])
    );
    let aaaa = s.udp(NULL, "www.tiktok.com", RecordType::AAAA, false);
    assert_eq!(addresses(&aaaa), vec!["::"]);
    let mx = s.udp(NULL, "tiktok.com", RecordType::MX, false);
    assert!(
        mx.answers.is_empty() && mx.authorities.len() == 1,
        "null is NODATA for other types"
    );

    let nodata = s.udp(NODATA, "www.tiktok.com", RecordType::A, false);
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    assert_eq!(nodata.authorities[0].ttl, 30, "block_ttl");
    match &nodata.authorities[0].data {
        RData::SOA(soa) => assert_eq!(soa.minimum, 30, "negative TTL"),
        other => panic!("expected SOA, got {other:?}"),
    }

    let refused = s.udp(REFUSE, "www.tiktok.com", RecordType::A, true);
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert_eq!(ede(&refused).map(|e| e.0), Some(15));

    let page = s.udp(PAGE, "www.tiktok.com", RecordType::A, false);
    assert_eq!(addresses(&page), vec!["192.0.2.53"]);
    let page6 = s.udp(PAGE, "www.tiktok.com", RecordType::AAAA, false);
    assert!(page6.answers.is_empty(), "an IPv4 block page gives AAAA NODATA");
}

#[test]
fn audit_mode_logs_and_answers_normally() {
    let s = start();
    let msg = s.udp(AUDIT, "www.tiktok.com", RecordType::A, false);
    assert_eq!(addresses(&msg), vec!["192.0.2.1"]);
    let hits = s.hits(1);
    assert_eq!(hits[0]["mode"], "audit");
    assert_eq!(hits[0]["policy"], "pilot");
}

#[test]
fn windows_in_the_past_or_future_do_not_block() {
    let s = start();
    for src in [PAST, FUTURE] {
        let msg = s.udp(src, "www.tiktok.com", RecordType::A, false);
        assert_eq!(addresses(&msg), vec!["192.0.2.1"], "{src}");
    }
}

#[test]
fn cname_chains_into_blocked_names_are_blocked_also_from_the_cache() {
    let s = start();
    // Unscoped first: fills the cache with the chain cname.example -> edge.tiktokcdn.com.
    let open = s.udp(NOBODY, "cname.example", RecordType::A, true);
    assert_eq!(addresses(&open), vec!["192.0.2.7"]);
    for _ in 0..2 {
        let blocked = s.udp(STAFF, "cname.example", RecordType::A, true);
        assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
        assert_eq!(ede(&blocked), Some((15, "blocked by policy staff".to_string())));
    }
    assert_eq!(
        s.upstream.count("cname.example"),
        1,
        "later answers came from the cache"
    );
    let hits = s.hits(2);
    assert_eq!(hits[0]["cname"], "edge.tiktokcdn.com");
    assert_eq!(hits[0]["qname"], "cname.example");
    // A chain through a shared CDN that is not TikTok's stays open.
    let cdn = s.udp(STAFF, "cdn.example", RecordType::A, false);
    assert_eq!(cdn.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&cdn), vec!["192.0.2.8"]);
}

#[test]
fn hit_log_lines_carry_the_schema() {
    let s = start();
    s.udp(STAFF, "WWW.tiktok.com", RecordType::AAAA, false);
    s.udp(STAFF, "p16-tiktok-va.ibyteimg.com", RecordType::A, false);
    let hits = s.hits(2);
    let first = &hits[0];
    assert_eq!(first["client"], STAFF);
    assert_eq!(first["policy"], "staff");
    assert_eq!(first["list"], "tiktok");
    assert_eq!(first["rule"], "tiktok.com");
    assert_eq!(first["qname"], "www.tiktok.com");
    assert_eq!(first["qtype"], "AAAA");
    assert_eq!(first["answer"], "nxdomain");
    assert_eq!(first["mode"], "enforce");
    assert_eq!(first["protocol"], "udp");
    let time = first["time"].as_str().expect("time is a string");
    assert!(time.ends_with('Z') && time.len() >= 20, "RFC 3339 UTC: {time}");
    assert_eq!(hits[1]["rule"], "||p16-tiktok-*.ibyteimg.com^");
    assert!(hits.iter().all(|h| h.get("cname").is_none()));
}

#[test]
fn allowed_queries_are_not_logged() {
    let s = start();
    s.udp(NOBODY, "www.tiktok.com", RecordType::A, false);
    s.udp(STAFF, "example.com", RecordType::A, false);
    s.udp(STAFF, "tiktok.com", RecordType::A, false);
    let hits = s.hits(1);
    std::thread::sleep(Duration::from_millis(200));
    let hits_later = read_hits(s.daemon.dir().join("hits.jsonl"));
    assert_eq!(hits_later.len(), 1, "only the block: {hits_later:?}");
    assert_eq!(hits[0]["qname"], "tiktok.com");
}

#[test]
fn ipv6_clients_are_matched_by_their_prefix() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("no IPv6 loopback on this host: IPv6 client test skipped");
        return;
    }
    let upstream = FakeUpstream::start();
    let v6 = std::net::SocketAddr::new(ip("::1"), free_port());
    let config = format!(
        r#"
[server]
listen = ["{{listen}}", "{v6}"]
metrics = "off"
allow = ["127.0.0.0/8", "::1/128"]
[upstream]
servers = ["{}"]
[lists.tiktok]
domains = ["tiktok.com"]
[[policy]]
name = "v6-staff"
clients = ["::1/128"]
block = ["tiktok"]
[log]
hits = "off"
"#,
        upstream.addr()
    );
    let d = Daemon::start(&config);
    let blocked = query_udp(v6, ip("::1"), "www.tiktok.com", RecordType::A, true).expect("answer over IPv6");
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(ede(&blocked), Some((15, "blocked by policy v6-staff".to_string())));
    let tcp = query_tcp(v6, ip("::1"), "tiktok.com", RecordType::AAAA, false).expect("TCP answer over IPv6");
    assert_eq!(tcp.metadata.response_code, ResponseCode::NXDomain);
    let v4 = query_udp(d.addr(), ip(NOBODY), "www.tiktok.com", RecordType::A, false).expect("answer");
    assert_eq!(
        addresses(&v4),
        vec!["192.0.2.1"],
        "the IPv6 policy does not cover IPv4 clients"
    );
}

/// Shutdown answers the queries in flight: a client whose query is upstream when SIGTERM comes gets the upstream's
/// answer (here 1.5 s late), and the daemon then exits cleanly. (Forwarding, not blocking: here because this file
/// is the one of these tests the UDP worker's owner edits; it may move to tests/forwarding.rs.)
#[test]
fn queries_in_flight_at_shutdown_are_answered() {
    let upstream = FakeUpstream::start_late(Duration::from_millis(1500));
    let config = format!(
        "[server]\nlisten = [\"{{listen}}\"]\nallow = [\"127.0.0.0/8\"]\nthreads = 1\n\
         [upstream]\nservers = [\"{}\"]\ntimeout_ms = 4000\n[log]\nhits = \"off\"\n",
        upstream.addr()
    );
    let mut daemon = Daemon::start(&config);
    let server = daemon.addr();
    let client = std::thread::spawn(move || {
        let query = new_query("in-flight.example.", RecordType::A, false, false);
        exchange_udp(server, ip(NOBODY), &query, Duration::from_secs(8))
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while upstream.count("in-flight.example") == 0 {
        assert!(std::time::Instant::now() < deadline, "the query never went upstream");
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = daemon.terminate();
    let answer = client
        .join()
        .expect("the client thread")
        .expect("answered before the daemon stopped");
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&answer), [LATE_V4.to_string()]);
    assert!(status.success(), "{status}");
}
