//! The fuzz corpus as a plain test: every file under `fuzz/corpus/<target>/` (the seeds and every
//! crash the fuzzers found) goes through the same checks the fuzz targets run
//! (`fuzz/src/checks.rs`), so `cargo test` keeps them passing without cargo-fuzz or a nightly
//! toolchain. See fuzz/README.md.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seed_corpus` writes the generated seeds again
//! (real queries and answers built with hickory-proto, as the fake upstream of the integration
//! tests builds them; captures; configs; lists).

// The fuzz crate's library root, whose `pub` items are its API to the fuzz targets; a module here.
#[allow(unreachable_pub)]
#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Duration;

use etherparse::PacketBuilder;
use hickory_proto::op::{Edns, Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, CNAME, MX, NULL, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
}

/// Runs every corpus file of `target` through its check; fails naming each file that fails.
fn replay(target: &str) {
    let (_, check) = checks::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a fuzz target of that name");
    let dir = corpus_dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    let failed: Vec<String> = files
        .iter()
        .filter(|file| {
            let data = std::fs::read(file).expect("a corpus file");
            catch_unwind(AssertUnwindSafe(|| check(&data))).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "corpus inputs that fail their check:\n{}",
        failed.join("\n")
    );
}

#[test]
fn query_corpus() {
    replay("query");
}

#[test]
fn upstream_answer_corpus() {
    replay("upstream_answer");
}

#[test]
fn packet_parse_corpus() {
    replay("packet_parse");
}

#[test]
fn list_lines_corpus() {
    replay("list_lines");
}

#[test]
fn rpz_zone_corpus() {
    replay("rpz_zone");
}

#[test]
fn config_corpus() {
    replay("config");
}

#[test]
fn capture_corpus() {
    replay("capture");
}

#[test]
fn proxy_header_corpus() {
    replay("proxy_header");
}

#[test]
fn every_target_has_a_corpus_and_a_fuzz_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (target, _) in checks::TARGETS {
        assert!(corpus_dir(target).is_dir(), "no fuzz/corpus/{target}");
        assert!(
            root.join(format!("fuzz_targets/{target}.rs")).is_file(),
            "no fuzz/fuzz_targets/{target}.rs"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The seed generator.

/// Writes `seed-<name>` into the target's corpus directory.
fn write_seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).expect("create the corpus directory");
    std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write a seed");
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("a valid seed name")
}

/// Client queries: the cached questions (from each kind of client, over UDP and TCP), blocked
/// names of each rule kind, the allow-listed exception, misses, and the unusual: root, a zone
/// transfer, NOTIFY, two questions, a response, a short packet, EDNS with DO and a tiny payload.
fn query_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (label, query, _) in checks::cached_answers() {
        for (client, tcp) in [(0, false), (5, false), (6, false), (6, true)] {
            let mut query = query.clone();
            query[..2].copy_from_slice(&checks::query_id(client, tcp).to_be_bytes());
            let transport = if tcp { "tcp" } else { "udp" };
            seeds.push((format!("cached-{label}-client{client}-{transport}"), query));
        }
    }
    let asked = [
        ("blocked-apex", "tiktok.com.", RecordType::A),
        ("blocked-sub-aaaa", "www.TikTok.com.", RecordType::AAAA),
        ("blocked-cdn-https", "v16m.tiktokcdn.com.", RecordType::HTTPS),
        ("blocked-wildcard", "p16-sign-va.ibyteimg.com.", RecordType::A),
        ("blocked-exact", "exact.example.", RecordType::A),
        ("exact-sub-allowed", "www.exact.example.", RecordType::A),
        ("allow-exception", "ads.tiktok.com.", RecordType::A),
        ("miss", "www.example.net.", RecordType::A),
        ("root-ns", ".", RecordType::NS),
        ("axfr", "example.com.", RecordType::AXFR),
    ];
    for (label, qname, qtype) in asked {
        for client in 0..checks::QUERY_CLIENTS.len() {
            let edns = (client % 2 == 1).then_some(client % 4 == 1);
            let id = checks::query_id(client, client == 3);
            seeds.push((
                format!("{label}-client{client}"),
                checks::client_query(id, qname, qtype, edns),
            ));
        }
    }
    let base = checks::client_query(checks::query_id(0, false), "www.tiktok.com.", RecordType::A, Some(true));
    let mut tiny = base.clone();
    let len = tiny.len();
    tiny[len - 9..len - 7].copy_from_slice(&100u16.to_be_bytes());
    seeds.push(("edns-tiny-payload".into(), tiny));
    let mut notify = base.clone();
    notify[2] = (notify[2] & 0x87) | (4 << 3);
    seeds.push(("notify".into(), notify));
    let mut two = base.clone();
    two[5] = 2;
    seeds.push(("two-questions".into(), two));
    let mut response = base.clone();
    response[2] |= 0x80;
    seeds.push(("response".into(), response));
    seeds.push(("short".into(), base[..7].to_vec()));
    let mut pointer = base.clone();
    pointer[12] = 0xc0;
    seeds.push(("question-pointer".into(), pointer));
    seeds
}

/// A response skeleton to `qname`/`qtype` as the fake upstream makes it: RD, RA, question echoed.
fn response(qname: &str, qtype: RecordType) -> Message {
    let mut m = Message::response(0x5eed, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.add_query(Query::query(name(qname), qtype));
    m
}

fn a(owner: &str, ttl: u32, last: u8) -> Record {
    Record::from_rdata(name(owner), ttl, RData::A(A::new(192, 0, 2, last)))
}

fn soa(owner: &str) -> Record {
    let data = SOA::new(
        name("ns.fake-upstream.test."),
        name("hostmaster.fake-upstream.test."),
        1,
        3600,
        600,
        86_400,
        30,
    );
    Record::from_rdata(name(owner), 60, RData::SOA(data))
}

/// Upstream answers: the cached ones, the fake upstream's table (cname, cdn, ttl5, tc, big, nx,
/// servfail), and the record types and EDNS shapes the cache must handle (TXT, MX, unknown types,
/// a DNAME, OPT with cookie, padding and extended rcode).
fn upstream_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, Vec<u8>)> = checks::cached_answers()
        .into_iter()
        .map(|(label, _, answer)| (format!("cached-{label}"), answer))
        .collect();
    let mut add = |label: &str, m: &Message| seeds.push((label.to_string(), m.to_vec().expect("encode a seed")));

    let mut m = response("cname.example.com.", RecordType::AAAA);
    m.add_answer(Record::from_rdata(
        name("cname.example.com."),
        300,
        RData::CNAME(CNAME(name("edge.tiktokcdn.com."))),
    ));
    add("fake-cname-nodata", &m);
    let mut m = response("ttl5.example.com.", RecordType::A);
    m.add_answer(a("ttl5.example.com.", 5, 5));
    add("fake-ttl5", &m);
    let mut m = response("tc.example.com.", RecordType::A);
    m.metadata.truncation = true;
    add("fake-tc", &m);
    let mut m = response("servfail.example.com.", RecordType::A);
    m.metadata.response_code = ResponseCode::ServFail;
    add("fake-servfail", &m);
    let mut m = response("nx.example.com.", RecordType::AAAA);
    m.metadata.response_code = ResponseCode::NXDomain;
    m.add_authority(soa("example.com."));
    add("fake-nxdomain-aaaa", &m);
    let mut m = response("a.b.c.d.e.example.com.", RecordType::A);
    let mut owner = String::from("a.b.c.d.e.example.com.");
    for i in 0..5 {
        let target = format!("hop{i}.cdn.example.net.");
        m.add_answer(Record::from_rdata(
            name(&owner),
            300 - i,
            RData::CNAME(CNAME(name(&target))),
        ));
        owner = target;
    }
    m.add_answer(a(&owner, 30, 3));
    add("long-chain", &m);
    let mut m = response("txt.example.com.", RecordType::TXT);
    let txt = TXT::new(vec!["hello".into(), "x".repeat(255), String::new()]);
    m.add_answer(Record::from_rdata(name("txt.example.com."), 300, RData::TXT(txt)));
    add("txt-three-strings", &m);
    let mut m = response("example.com.", RecordType::MX);
    m.add_answer(Record::from_rdata(
        name("example.com."),
        300,
        RData::MX(MX::new(10, name("mail.example.com."))),
    ));
    m.add_additional(a("mail.example.com.", 300, 25));
    add("mx-with-glue", &m);
    let mut m = response("svc.example.com.", RecordType::Unknown(65280));
    let opaque = RData::Unknown {
        code: RecordType::Unknown(65280),
        rdata: NULL::with(vec![1, 2, 3, 0xc0, 0x0c]),
    };
    m.add_answer(Record::from_rdata(name("svc.example.com."), 300, opaque));
    add("unknown-type", &m);
    let mut m = response("www.video.example.org.", RecordType::AAAA);
    let mut target = b"\x06tiktok\x03com\x00".to_vec();
    let dname = RData::Unknown {
        code: RecordType::DNAME,
        rdata: NULL::with(std::mem::take(&mut target)),
    };
    m.add_answer(Record::from_rdata(name("video.example.org."), 300, dname));
    m.add_answer(Record::from_rdata(
        name("www.video.example.org."),
        300,
        RData::CNAME(CNAME(name("www.tiktok.com."))),
    ));
    add("dname", &m);
    let mut m = response("www.example.com.", RecordType::A);
    m.add_answer(a("www.example.com.", 300, 1));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    edns.set_dnssec_ok(true);
    edns.options_mut()
        .insert(EdnsOption::Unknown(u16::from(EdnsCode::Cookie), vec![7; 24]));
    edns.options_mut()
        .insert(EdnsOption::Unknown(u16::from(EdnsCode::Padding), vec![0; 40]));
    edns.options_mut()
        .insert(EdnsOption::Unknown(15, b"\x00\x11stale".to_vec()));
    m.edns = Some(edns);
    add("edns-cookie-padding-ede", &m);
    let mut m = response("www.example.com.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_rcode_high(1);
    m.edns = Some(edns);
    add("edns-badvers", &m);
    seeds
}

/// An Ethernet frame carrying a UDP datagram from `src` to `dst:port`.
fn frame(src: IpAddr, dst: IpAddr, port: u16, payload: &[u8]) -> Vec<u8> {
    let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    let builder = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => builder.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => builder.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    };
    let builder = builder.udp(40000, port);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).expect("write a frame");
    out
}

/// Captures (pcap of IPv4 and IPv6 clients with a response and another port mixed in, pcapng,
/// raw-IP pcap) and a dnsperf file.
fn capture_seeds() -> Vec<(String, Vec<u8>)> {
    let ip = |text: &str| -> IpAddr { text.parse().expect("an address") };
    let query = |qname: &str| checks::client_query(1, qname, RecordType::A, None);
    let mut answer = query("www.example.com.");
    answer[2] |= 0x80;
    let frames = [
        frame(ip("10.10.0.5"), ip("10.0.0.53"), 53, &query("www.tiktok.com.")),
        frame(ip("2001:db8::5"), ip("2001:db8::53"), 53, &query("v6.example.")),
        frame(ip("10.0.0.53"), ip("10.10.0.5"), 53, &answer),
        frame(ip("10.10.0.5"), ip("10.0.0.53"), 5353, &query("mdns.local.")),
    ];
    let mut pcap = Vec::new();
    {
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        };
        let mut writer = PcapWriter::with_header(&mut pcap, header).expect("pcap header");
        for (i, f) in frames.iter().enumerate() {
            let packet = PcapPacket::new(Duration::from_millis(i as u64), f.len() as u32, f);
            writer.write_packet(&packet).expect("write a packet");
        }
    }
    let mut pcapng = Vec::new();
    {
        let mut writer = PcapNgWriter::new(&mut pcapng).expect("pcapng header");
        writer
            .write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0))
            .expect("idb");
        for f in &frames[..2] {
            let packet = EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_secs(1),
                original_len: f.len() as u32,
                data: std::borrow::Cow::Borrowed(f),
                options: Vec::new(),
            };
            writer.write_pcapng_block(packet).expect("epb");
        }
    }
    let mut raw = Vec::new();
    {
        let header = PcapHeader {
            datalink: DataLink::RAW,
            ..PcapHeader::default()
        };
        let mut writer = PcapWriter::with_header(&mut raw, header).expect("pcap header");
        let ip_packet = &frames[0][14..];
        writer
            .write_packet(&PcapPacket::new(Duration::ZERO, ip_packet.len() as u32, ip_packet))
            .expect("packet");
    }
    vec![
        ("pcap-ethernet".into(), pcap),
        ("pcapng-ethernet".into(), pcapng),
        ("pcap-raw-ip".into(), raw),
        ("frame-ethernet-v4".into(), frames[0].clone()),
        (
            "dnsperf".into(),
            b"# dnsperf\nwww.example.com A\nwww.tiktok.com AAAA\nsvc.example type65\n".to_vec(),
        ),
    ]
}

/// Configs: the embedded default, the deployment examples, the query target's, and the shapes
/// the config tests use.
fn config_seeds() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| std::fs::read(root.join(path)).expect("a config file");
    let issue_example = r#"
[server]
listen = ["127.0.0.1:5353"]
metrics = "127.0.0.1:9153"
allow = ["127.0.0.0/8", "10.0.0.0/8"]

[upstream]
servers = ["127.0.0.1:5300", "[::1]:53", "192.0.2.1"]
timeout_ms = 1500

[cache]
entries = 100000
min_ttl = 10
servfail_ttl = 5

[lists.tiktok]
builtin = ["tiktok"]
domains = ["||extra.example^", "0.0.0.0 a.example b.example"]

[[policy]]
name = "staff"
clients = ["10.0.0.0/8", "127.10.0.0/16"]
block = ["tiktok"]
answer = "nxdomain"
mode = "enforce"
active_from = "2023-03-17T00:00:00+01:00"
active_until = 2033-09-17T00:00:00+02:00

[[policy]]
name = "comms-phones"
clients = ["10.50.0.0/24"]
block = []

[log]
hits = "stderr"
client_ip = "hashed"
salt = "0123456789abcdef"
"#;
    vec![
        (
            "embedded-default".into(),
            sinkhole::config::EMBEDDED_DEFAULT.as_bytes().to_vec(),
        ),
        ("deploy-sinkhole".into(), read("deploy/sinkhole.toml")),
        ("deploy-container".into(), read("deploy/container.toml")),
        ("query-target".into(), checks::QUERY_CONFIG.as_bytes().to_vec()),
        ("issue-example".into(), issue_example.as_bytes().to_vec()),
        (
            "unknown-key".into(),
            b"[server]\nlisten = [\"127.0.0.1:53\"]\nlistne = []\n".to_vec(),
        ),
        (
            "bad-values".into(),
            "[[policy]]\nname = \"ü\"\nclients = [\"10.0.0.0/33\"]\nanswer = \"nxdomian\"\n"
                .as_bytes()
                .to_vec(),
        ),
    ]
}

/// Lists: the builtin TikTok list, the allow example, and every line format with lookups.
fn list_seeds() -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| std::fs::read(root.join(path)).expect("a list file");
    let mixed = "\u{feff}# TikTok core\ntiktok.com\n0.0.0.0 TIKTOKV.COM. musical.ly localhost\n*.tiktokcdn.com\n\
                 ||byteoversea.com^\n|x.net^\n||p16-tiktok-*.ibyteimg.com^\n||v*.tiktokcdn-eu.com^\n\
                 |exact*.glob.example^\n::1 deep.example # comment\n@@||partner.example^\nbücher.de\n\
                 ||x.com^$important\nexample.com##.banner\n/regex/\n1.2.3.4\n\0www.tiktok.com\n\
                 p16-tiktok-va.ibyteimg.com\nexact1.glob.example\na.exact1.glob.example\nnottiktok.com\n";
    vec![
        ("builtin-tiktok".into(), read("blocklists/tiktok.txt")),
        ("allow-example".into(), read("blocklists/allow-example.txt")),
        ("mixed-formats".into(), mixed.as_bytes().to_vec()),
    ]
}

/// Regenerates the `seed-*` files of every target's corpus (crash inputs are kept as they are).
#[test]
#[ignore = "writes fuzz/corpus; run by hand after changing the seeds"]
fn write_seed_corpus() {
    for (target, _) in checks::TARGETS {
        if let Ok(entries) = std::fs::read_dir(corpus_dir(target)) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with("seed-") {
                    std::fs::remove_file(entry.path()).expect("remove an old seed");
                }
            }
        }
    }
    let queries = query_seeds();
    for (label, bytes) in &queries {
        write_seed("query", label, bytes);
        write_seed("packet_parse", label, bytes);
    }
    for (label, bytes) in upstream_seeds() {
        write_seed("upstream_answer", &label, &bytes);
    }
    for (label, bytes) in capture_seeds() {
        write_seed("capture", &label, &bytes);
    }
    for (label, bytes) in config_seeds() {
        write_seed("config", &label, &bytes);
    }
    for (label, bytes) in list_seeds() {
        write_seed("list_lines", &label, &bytes);
    }
}
