//! `sinkhole replay` as an operator runs it: the real binary loads a real daemon (and the bench
//! responder) on loopback, and its JSON summary must count what the daemon did: answers, rcodes,
//! and the block verdicts by policy, for queries from a dnsperf file and from a capture whose
//! client subnets are mapped into 127.0.0.0/8.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use serde_json::Value;
use sinkhole_testkit::*;

const CONFIG: &str = r#"
[server]
listen = ["{listen}"]
allow = ["127.0.0.0/8"]
threads = 1
metrics = "off"
[upstream]
servers = ["{upstream}"]
timeout_ms = 1000
[lists.tiktok]
domains = ["tiktok.com", "tiktokcdn.com"]
[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["tiktok"]
[[policy]]
name = "guests"
clients = ["127.30.0.0/16"]
block = ["tiktok"]
[log]
hits = "off"
"#;

fn daemon(up: &FakeUpstream) -> Daemon {
    Daemon::start(&CONFIG.replace("{upstream}", &up.addr().to_string()))
}

/// Runs `sinkhole replay --json ARGS` and returns its summary; panics with its stderr if it fails.
/// A modest window and a long timeout: these tests check counts, and a debug build on a busy CI
/// machine must not lose queries.
fn replay(args: &[&str]) -> Value {
    let mut all = vec!["replay", "--json", "--window", "32", "--timeout-ms", "5000"];
    all.extend_from_slice(args);
    let out = run_sinkhole(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "sinkhole {all:?} failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {stdout}"))
}

/// 300 queries: every third a TikTok name (blocked for the policies' clients), the rest allowed.
fn query_file(dir: &TestDir) -> String {
    let mut text = String::from("# replay test\n");
    for i in 0..300 {
        match i % 3 {
            0 => text.push_str(&format!("v{i}.tiktok.com A\n")),
            1 => text.push_str(&format!("www{i}.example.org AAAA\n")),
            _ => text.push_str(&format!("nx.site{i}.example A\n")),
        }
    }
    dir.write_file("queries.txt", &text).display().to_string()
}

fn count(summary: &Value, path: &[&str]) -> u64 {
    let mut value = summary;
    for key in path {
        value = &value[key];
    }
    value.as_u64().unwrap_or(0)
}

#[test]
fn dnsperf_file_from_a_blocked_subnet_reports_the_policy() {
    let up = FakeUpstream::start();
    let d = daemon(&up);
    let dir = TestDir::new();
    let file = query_file(&dir);
    let server = d.addr().to_string();

    let s = replay(&["--server", &server, "--source", "127.10.0.5", &file]);
    assert_eq!(
        (count(&s, &["sent"]), count(&s, &["answered"]), count(&s, &["lost"])),
        (300, 300, 0),
        "{s}"
    );
    // 100 blocked (NXDOMAIN by policy), 100 forwarded NOERROR, 100 forwarded NXDOMAIN from the upstream (nx.*).
    assert_eq!(count(&s, &["blocked", "staff"]), 100, "{s}");
    assert_eq!(s["blocked"].as_object().map(|o| o.len()), Some(1), "{s}");
    assert_eq!(count(&s, &["rcodes", "NXDOMAIN"]), 200, "{s}");
    assert_eq!(count(&s, &["rcodes", "NOERROR"]), 100, "{s}");
    assert_eq!(s["lost_pct"].as_f64(), Some(0.0));
    for key in ["qps", "duration_s"] {
        assert!(s[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {s}");
    }
    let latency = &s["latency_us"];
    let p50 = latency["p50"].as_f64().expect("p50");
    for (lower, higher) in [("p50", "p90"), ("p90", "p99"), ("p99", "p999"), ("p999", "max")] {
        assert!(
            latency[lower].as_f64() <= latency[higher].as_f64(),
            "{lower} > {higher}: {latency}"
        );
    }
    assert!(p50 > 0.0 && p50 < 1_000_000.0, "{latency}");
    assert_eq!(s["input"]["format"], "dnsperf");

    // The same file from outside every policy: nothing blocked, TikTok forwarded.
    let s = replay(&["--server", &server, "--source", "127.20.0.5", "--count", "150", &file]);
    assert_eq!(count(&s, &["answered"]), 150, "{s}");
    assert_eq!(s["blocked"], serde_json::json!({}), "{s}");
    assert_eq!(count(&s, &["rcodes", "NOERROR"]), 100, "{s}");

    // Without EDNS the daemon cannot say which policy: no verdicts by policy, but its block answers are still
    // told from the upstream's NXDOMAIN by the SOA it writes, and counted.
    let s = replay(&["--server", &server, "--source", "127.10.0.5", "--no-edns", &file]);
    assert_eq!(count(&s, &["rcodes", "NXDOMAIN"]), 200, "{s}");
    assert_eq!(s["blocked"], serde_json::json!({}), "{s}");
    assert_eq!(count(&s, &["blocked_without_policy"]), 100, "{s}");
    let out = run_sinkhole(&[
        "replay",
        "--server",
        &server,
        "--source",
        "127.10.0.5",
        "--no-edns",
        &file,
    ]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("blocked      100 (policy not named: queries without EDNS)"),
        "{table}"
    );
}

#[test]
fn an_error_is_said_once() {
    let out = run_sinkhole(&["replay", "--server", "127.0.0.1:53", "/nonexistent/queries.txt"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent/queries.txt"), "{stderr}");
}

/// An Ethernet frame with a UDP datagram from `client` to a resolver's port 53.
fn frame(client: IpAddr, payload: &[u8]) -> Vec<u8> {
    let IpAddr::V4(client) = client else {
        panic!("IPv4 clients only here")
    };
    let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(client.octets(), [10, 0, 0, 53], 64)
        .udp(40_000, 53);
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).expect("write frame");
    out
}

fn wire_query(id: u16, name: &str) -> Vec<u8> {
    let msg = new_query(name, hickory_proto::rr::RecordType::A, true, false);
    let mut bytes = msg.to_vec().expect("encode query");
    bytes[..2].copy_from_slice(&id.to_be_bytes());
    bytes
}

#[test]
fn capture_keeps_each_clients_subnet_and_policy() {
    let up = FakeUpstream::start();
    let d = daemon(&up);
    let dir = TestDir::new();
    // Clients of three office subnets, each asking for TikTok: 10.10/16 is "staff" once mapped
    // (default a.b.c.d -> 127.b.c.d), 192.168.x.y goes to "guests" by a --map rule, 10.20/16 is in no policy.
    let clients: [(&str, usize); 3] = [("10.10.0.5", 120), ("192.168.4.9", 60), ("10.20.0.5", 30)];
    let mut bytes = Vec::new();
    {
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            ..PcapHeader::default()
        };
        let mut writer = PcapWriter::with_header(&mut bytes, header).expect("pcap header");
        let mut n = 0u16;
        for (client, queries) in clients {
            for i in 0..queries {
                n += 1;
                let f = frame(
                    client.parse().expect("ip"),
                    &wire_query(n, &format!("p{i}.tiktokcdn.com")),
                );
                let packet = PcapPacket::new(Duration::from_millis(u64::from(n)), f.len() as u32, &f);
                writer.write_packet(&packet).expect("write packet");
            }
        }
    }
    let path = dir.path().join("office.pcap");
    std::fs::write(&path, &bytes).expect("write capture");
    let s = replay(&[
        "--server",
        &d.addr().to_string(),
        "--map",
        "192.168.0.0/16=127.30.0.0/16",
        &path.display().to_string(),
    ]);
    assert_eq!(count(&s, &["answered"]), 210, "{s}");
    assert_eq!(count(&s, &["blocked", "staff"]), 120, "{s}");
    assert_eq!(count(&s, &["blocked", "guests"]), 60, "{s}");
    assert_eq!(count(&s, &["rcodes", "NOERROR"]), 30, "{s}");
    assert_eq!(
        (count(&s, &["input", "clients"]), s["input"]["format"].as_str()),
        (3, Some("pcap")),
        "{s}"
    );
}

#[test]
fn loads_the_bench_responder_at_a_fixed_rate_from_many_threads() {
    let sockets = sinkhole_testkit::responder::bind("127.0.0.1:0".parse().expect("literal"), 1).expect("bind");
    let addr: SocketAddr = sockets.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let udp = sockets.udp.into_iter().next().expect("one socket");
    let udp_stop = Arc::clone(&stop);
    let server = std::thread::spawn(move || sinkhole_testkit::responder::serve_udp(&udp, &udp_stop));
    let dir = TestDir::new();
    let file = query_file(&dir);
    let s = replay(&[
        "--server",
        &addr.to_string(),
        "--rate",
        "1000",
        "--duration",
        "0.5",
        "--threads",
        "2",
        "--sockets",
        "2",
        &file,
    ]);
    stop.store(true, Ordering::Relaxed);
    let answered = server.join().expect("responder thread").expect("responder ran");
    let sent = count(&s, &["sent"]);
    assert!((450..=550).contains(&sent), "1000 qps for 0.5 s sent {sent}: {s}");
    assert_eq!(count(&s, &["answered"]), sent, "{s}");
    assert_eq!(answered, sent, "the responder answered each query once");
    assert_eq!(
        count(&s, &["rcodes", "NXDOMAIN"]) + count(&s, &["rcodes", "NOERROR"]),
        sent,
        "{s}"
    );
    assert_eq!(s["threads"], 2);
    assert_eq!(s["rate"].as_f64(), Some(1000.0));
}

#[test]
fn refuses_remote_servers_and_fails_on_a_dead_one() {
    let dir = TestDir::new();
    let file = query_file(&dir);
    let out = run_sinkhole(&["replay", "--server", "192.0.2.53:53", &file]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a loopback address") && stderr.contains("--allow-remote"),
        "{stderr}"
    );

    // A bound socket that never answers: every query lost, exit status 1, the summary still printed.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let server = silent.local_addr().expect("addr").to_string();
    let out = run_sinkhole(&[
        "replay",
        "--json",
        "--server",
        &server,
        "--count",
        "20",
        "--timeout-ms",
        "200",
        &file,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let s: Value = serde_json::from_slice(&out.stdout).expect("summary on stdout");
    assert_eq!((count(&s, &["sent"]), count(&s, &["lost"])), (20, 20), "{s}");
    assert_eq!(s["lost_pct"].as_f64(), Some(100.0));
}
