//! Answer-address blocking as clients see it: a list with address ranges (`ip = [...]`) blocks an
//! answer whose A/AAAA address falls in one, whatever name was asked, for the clients of a policy
//! blocking that list; fresh from the upstream, from the shared cache and from a worker's front
//! cache alike. The fake upstream answers `cdn.*` with a CNAME into akamaized.net and then
//! A 192.0.2.8 / AAAA 2001:db8::8 (no list knows the names), every other name with 192.0.2.1.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use sinkhole_testkit::*;

const STAFF: &str = "127.10.0.5";
const EXEMPT: &str = "127.10.50.5";
const NOBODY: &str = "127.20.0.5";
const PILOT: &str = "127.15.0.5";
const PAGE: &str = "127.14.0.5";

/// One worker thread: the first query of a name is forwarded, the second is a shared-cache hit
/// (and fills the worker's front cache), the third a front-cache hit.
const CONFIG: &str = r#"
[server]
listen = ["{listen}"]
metrics = "{metrics}"
allow = ["127.0.0.0/9"]
threads = 1
[upstream]
servers = ["{upstream}"]
timeout_ms = 1000
[lists.hidden]
ip = ["192.0.2.8", "2001:db8::8/128", "203.0.113.0/24"]
[lists.exceptions]
domains = ["cdn.allowed.example"]

[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["hidden"]
allow = ["exceptions"]

[[policy]]
name = "comms-phones"
clients = ["127.10.50.0/24"]
block = []

[[policy]]
name = "pilot"
clients = ["127.15.0.0/16"]
block = ["hidden"]
mode = "audit"

[[policy]]
name = "page"
clients = ["127.14.0.0/16"]
block = ["hidden"]
answer = "192.0.2.53"

[log]
hits = "{dir}/hits.jsonl"
"#;

struct Setup {
    upstream: FakeUpstream,
    daemon: Daemon,
}

fn start() -> Setup {
    let (upstream, daemon) = Daemon::start_forwarding(CONFIG, &[]);
    Setup { upstream, daemon }
}

impl Setup {
    fn udp(&self, src: &str, name: &str, qtype: RecordType) -> hickory_proto::op::Message {
        query_udp(self.daemon.addr(), ip(src), name, qtype, true).expect("daemon answers")
    }

    fn hits(&self, count: usize) -> Vec<serde_json::Value> {
        wait_for_hits(self.daemon.dir().join("hits.jsonl"), count, Duration::from_secs(10))
    }
}

#[test]
fn an_answer_in_a_range_is_blocked_fresh_and_from_both_caches() {
    let s = start();
    // Forwarded for the blocking policy's client itself: checked on the fresh answer.
    for round in 0..3 {
        let msg = s.udp(STAFF, "cdn.app.example", RecordType::A);
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain, "round {round}");
        assert!(msg.answers.is_empty(), "round {round}: no address leaks");
        assert_eq!(
            ede(&msg),
            Some((15, "blocked by policy staff".to_string())),
            "round {round}"
        );
    }
    assert_eq!(
        s.upstream.count("cdn.app.example"),
        1,
        "rounds 2 and 3 were cache hits, checked all the same"
    );
    // Filled by a client of no policy first: the cached answer is checked for staff too.
    let open = s.udp(NOBODY, "cdn.shared.example", RecordType::A);
    assert_eq!(addresses(&open), vec!["192.0.2.8"]);
    for _ in 0..2 {
        let msg = s.udp(STAFF, "cdn.shared.example", RecordType::A);
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    }
    assert_eq!(s.upstream.count("cdn.shared.example"), 1);
    let hits = s.hits(5);
    for hit in &hits {
        assert_eq!(hit["policy"], "staff");
        assert_eq!(hit["list"], "hidden");
        assert_eq!(hit["rule"], "192.0.2.8/32");
        assert_eq!(hit["address"], "192.0.2.8");
        assert_eq!(hit["mode"], "enforce");
        assert_eq!(hit["qtype"], "A");
        assert!(hit.get("cname").is_none());
    }
    assert_eq!(hits[0]["qname"], "cdn.app.example");
    assert_eq!(hits[4]["qname"], "cdn.shared.example");
    // An answer outside every range is served.
    let other = s.udp(STAFF, "www.app.example", RecordType::A);
    assert_eq!(addresses(&other), vec!["192.0.2.1"]);
}

#[test]
fn aaaa_answers_are_checked_too() {
    let s = start();
    let msg = s.udp(STAFF, "cdn.six.example", RecordType::AAAA);
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    let hits = s.hits(1);
    assert_eq!(hits[0]["rule"], "2001:db8::8/128");
    assert_eq!(hits[0]["address"], "2001:db8::8");
    assert_eq!(hits[0]["qtype"], "AAAA");
    let other = s.udp(STAFF, "www.six.example", RecordType::AAAA);
    assert_eq!(addresses(&other), vec!["2001:db8::1"]);
}

#[test]
fn exempt_clients_and_exceptions_get_the_answer_and_audit_only_logs() {
    let s = start();
    let exempt = s.udp(EXEMPT, "cdn.app.example", RecordType::A);
    assert_eq!(addresses(&exempt), vec!["192.0.2.8"], "a policy that blocks nothing");
    let nobody = s.udp(NOBODY, "cdn.app.example", RecordType::A);
    assert_eq!(addresses(&nobody), vec!["192.0.2.8"], "a client in no policy");
    let excepted = s.udp(STAFF, "cdn.allowed.example", RecordType::A);
    assert_eq!(
        addresses(&excepted),
        vec!["192.0.2.8"],
        "an exception for the name asked wins"
    );
    let audited = s.udp(PILOT, "cdn.app.example", RecordType::A);
    assert_eq!(addresses(&audited), vec!["192.0.2.8"], "audit answers normally");
    let hits = s.hits(1);
    assert_eq!(hits.len(), 1, "only the audited query is logged: {hits:?}");
    assert_eq!(hits[0]["policy"], "pilot");
    assert_eq!(hits[0]["mode"], "audit");
    assert_eq!(hits[0]["address"], "192.0.2.8");
    assert_eq!(hits[0]["qname"], "cdn.app.example");
}

#[test]
fn the_block_answer_is_the_policys_own() {
    let s = start();
    let msg = s.udp(PAGE, "cdn.page.example", RecordType::A);
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&msg), vec!["192.0.2.53"]);
}

#[test]
fn check_counts_the_ranges_and_reports_a_bad_one_at_its_key() {
    let dir = TestDir::new();
    let good = CONFIG
        .replace("{listen}", "127.0.0.1:5353")
        .replace("{metrics}", "127.0.0.1:9153")
        .replace("{upstream}", "127.0.0.1:53")
        .replace("{dir}", &dir.path().display().to_string());
    let path = dir.write_file("good.toml", &good);
    let out = run_sinkhole(&["check", "-c", path.to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some("hidden"))
        .unwrap_or_else(|| panic!("check names the list:\n{stdout}"));
    assert!(line.contains("3 rules"), "{line}");
    assert!(line.contains("3 of the rules are answer-address ranges"), "{line}");

    let bad = good.replace(r#""203.0.113.0/24"]"#, r#""203.0.113.0/33", "tiktok.com"]"#);
    let path = dir.write_file("bad.toml", &bad);
    let out = run_sinkhole(&["check", "-c", path.to_str().expect("utf-8 path")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a bad range fails the check");
    let ip_line = bad.lines().position(|l| l.starts_with("ip = ")).expect("the ip line") + 1;
    for needle in ["prefix length 33 is longer than 32", "\"tiktok.com\" is not an address"] {
        let at = stderr
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle} reported:\n{stderr}"));
        assert!(at.contains(&format!("bad.toml:{ip_line}:")), "at its line: {at}");
    }
}

#[test]
fn explain_says_what_it_would_check() {
    let dir = TestDir::new();
    let config = CONFIG
        .replace("{listen}", "127.0.0.1:5353")
        .replace("{metrics}", "127.0.0.1:9153")
        .replace("{upstream}", "127.0.0.1:53")
        .replace("{dir}", &dir.path().display().to_string());
    let path = dir.write_file("sinkhole.toml", &config);
    let out = run_sinkhole(&[
        "explain",
        "-c",
        path.to_str().expect("utf-8 path"),
        "--client",
        STAFF,
        "cdn.app.example",
        "A",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("an A/AAAA address of its answer falls in an address range of hidden (3 ranges)"),
        "{stdout}"
    );
}
