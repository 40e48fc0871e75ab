//! RPZ zone files as a list format, as clients see it: the real daemon on loopback with an RPZ file in a list's
//! `files`, a fake upstream owned by the test, and the answer each rule gives (NXDOMAIN, NODATA, a redirect), its
//! exceptions (`rpz-passthru`), its wildcards (below a name, not the name), and its `rpz-ip` ranges; `check` reports
//! what it does not apply and no bad line.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use sinkhole_testkit::*;

const STAFF: &str = "127.10.0.5";
const NOBODY: &str = "127.20.0.5";

/// A zone as BIND would load it: `$TTL`, `$ORIGIN`, an SOA over several lines with comments, NS at the apex,
/// relative and absolute owners, a blank owner, every trigger kind.
const ZONE: &str = r#"; sinkhole test policy zone
$TTL 300
$ORIGIN rpz.example.
@       IN SOA  ns.rpz.example. hostmaster.rpz.example. (
                2026120101 ; serial
                3600       ; refresh
                600        ; retry
                86400      ; expire
                60 )       ; minimum
        IN NS   ns.rpz.example.

blocked.app.test            CNAME .
nodata.app.test     60 IN   CNAME *.
page.app.test.rpz.example.  A     192.0.2.53
                            AAAA  2001:db8::53
*.wild.app.test             CNAME .
ok.wild.app.test            CNAME rpz-passthru.
garden.app.test             CNAME walled-garden.example.
32.8.2.0.192.rpz-ip         CNAME .
ns1.evil.test.rpz-nsdname   CNAME .
32.5.0.0.127.rpz-client-ip  CNAME .
"#;

const CONFIG: &str = r#"
[server]
listen = ["{listen}"]
metrics = "{metrics}"
allow = ["127.0.0.0/9"]
threads = 1
[upstream]
servers = ["{upstream}"]
timeout_ms = 1000
[lists.rpz]
files = ["{dir}/policy.rpz"]

[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["rpz"]
answer = "null"

[log]
hits = "{dir}/hits.jsonl"
"#;

struct Setup {
    upstream: FakeUpstream,
    daemon: Daemon,
}

fn start() -> Setup {
    let (upstream, daemon) = Daemon::start_forwarding(CONFIG, &[("policy.rpz", ZONE)]);
    Setup { upstream, daemon }
}

impl Setup {
    fn ask(&self, src: &str, name: &str, qtype: RecordType) -> hickory_proto::op::Message {
        query_udp(self.daemon.addr(), ip(src), name, qtype, true).expect("daemon answers")
    }
}

#[test]
fn each_rule_gives_its_own_answer_over_the_policys() {
    let s = start();
    let nx = s.ask(STAFF, "blocked.app.test", RecordType::A);
    assert_eq!(
        nx.metadata.response_code,
        ResponseCode::NXDomain,
        "CNAME . is NXDOMAIN, not the policy's null"
    );
    assert_eq!(ede(&nx), Some((15, "blocked by policy staff".to_string())));
    let nodata = s.ask(STAFF, "nodata.app.test", RecordType::A);
    assert_eq!(nodata.metadata.response_code, ResponseCode::NoError);
    assert!(nodata.answers.is_empty(), "CNAME *. is NODATA");
    let page = s.ask(STAFF, "page.app.test", RecordType::A);
    assert_eq!(addresses(&page), vec!["192.0.2.53"]);
    let page6 = s.ask(STAFF, "page.app.test", RecordType::AAAA);
    assert_eq!(addresses(&page6), vec!["2001:db8::53"]);
    let page_mx = s.ask(STAFF, "page.app.test", RecordType::MX);
    assert!(page_mx.answers.is_empty(), "a redirect gives other types NODATA");
    // A CNAME to a walled garden: the policy's own answer.
    let garden = s.ask(STAFF, "garden.app.test", RecordType::A);
    assert_eq!(addresses(&garden), vec!["0.0.0.0"]);
    // An RPZ name is that name only.
    let below = s.ask(STAFF, "www.blocked.app.test", RecordType::A);
    assert_eq!(addresses(&below), vec!["192.0.2.1"]);
    // Clients of no policy are never blocked.
    let open = s.ask(NOBODY, "blocked.app.test", RecordType::A);
    assert_eq!(addresses(&open), vec!["192.0.2.1"]);
    for name in [
        "blocked.app.test",
        "nodata.app.test",
        "page.app.test",
        "garden.app.test",
    ] {
        assert_eq!(
            s.upstream.count(name),
            usize::from(name == "blocked.app.test"),
            "{name}"
        );
    }
    let hits = wait_for_hits(s.daemon.dir().join("hits.jsonl"), 6, Duration::from_secs(10));
    let answers: Vec<(&str, &str)> = hits
        .iter()
        .map(|h| {
            (
                h["qname"].as_str().unwrap_or_default(),
                h["answer"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        answers,
        [
            ("blocked.app.test", "nxdomain"),
            ("nodata.app.test", "nodata"),
            ("page.app.test", "192.0.2.53"),
            ("page.app.test", "2001:db8::53"),
            ("page.app.test", "nodata"),
            ("garden.app.test", "null"),
        ]
    );
    assert_eq!(hits[0]["rule"], "|blocked.app.test^");
}

#[test]
fn wildcards_block_below_a_name_and_passthru_exempts() {
    let s = start();
    for name in ["a.wild.app.test", "x.y.wild.app.test"] {
        let msg = s.ask(STAFF, name, RecordType::A);
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain, "{name}");
    }
    let apex = s.ask(STAFF, "wild.app.test", RecordType::A);
    assert_eq!(addresses(&apex), vec!["192.0.2.1"], "*.name does not block the name");
    let passthru = s.ask(STAFF, "ok.wild.app.test", RecordType::A);
    assert_eq!(addresses(&passthru), vec!["192.0.2.1"], "rpz-passthru exempts");
}

#[test]
fn rpz_ip_triggers_block_answers_by_address() {
    let s = start();
    // `cdn.*` answers A 192.0.2.8 through an akamaized.net CNAME: only the rpz-ip trigger matches it.
    let msg = s.ask(STAFF, "cdn.app.test", RecordType::A);
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    let hits = wait_for_hits(s.daemon.dir().join("hits.jsonl"), 1, Duration::from_secs(10));
    assert_eq!(hits[0]["rule"], "192.0.2.8/32");
    assert_eq!(hits[0]["address"], "192.0.2.8");
    assert_eq!(hits[0]["answer"], "nxdomain");
    let open = s.ask(NOBODY, "cdn.app.test", RecordType::A);
    assert_eq!(addresses(&open), vec!["192.0.2.8"]);
}

#[test]
fn check_reports_ignored_triggers_and_no_bad_line() {
    let dir = TestDir::new();
    dir.write_file("policy.rpz", ZONE);
    let config = CONFIG
        .replace("{listen}", "127.0.0.1:5353")
        .replace("{metrics}", "127.0.0.1:9153")
        .replace("{upstream}", "127.0.0.1:53")
        .replace("{dir}", &dir.path().display().to_string());
    let path = dir.write_file("sinkhole.toml", &config);
    let out = run_sinkhole(&["check", "-c", path.to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let list = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some("rpz"))
        .unwrap_or_else(|| panic!("check names the list:\n{stdout}"));
    // Six names (page.app.test once), one range.
    assert!(list.contains("7 rules, 0 bad lines"), "{list}");
    assert!(list.contains("1 of the rules are answer-address ranges"), "{list}");
    assert!(stdout.contains("list rpz: 1 rpz-nsdname triggers ignored"), "{stdout}");
    assert!(
        stdout.contains("list rpz: 1 rpz-client-ip triggers ignored"),
        "{stdout}"
    );

    // A broken record is a bad line, reported with its line, never fatal.
    dir.write_file("policy.rpz", &format!("{ZONE}bad..name CNAME .\n"));
    let out = run_sinkhole(&["check", "-c", path.to_str().expect("utf-8 path")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let line = ZONE.lines().count() + 1;
    assert!(stdout.contains(&format!("policy.rpz:{line}")), "{stdout}");
    assert!(stdout.contains("7 rules, 1 bad lines"), "{stdout}");
}
