//! Rate limits as a flooding client, its neighbours and a reflection victim see them: one client
//! over its limit is dropped (every second query gets an empty TC answer instead, so a real client
//! retries over TCP), its neighbours and exempt prefixes are served, and identical questions from
//! one network are limited when RRL is on.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use sinkhole_testkit::*;

/// The tests of this file flood the machine: run one at a time, so that one's flood does not take
/// the CPU another's daemon needs to answer (a 2-core CI machine, debug builds).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serialized() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn config(upstream: SocketAddr, ratelimit: &str) -> String {
    format!(
        r#"
[server]
listen = ["{{listen}}"]
metrics = "{{metrics}}"
allow = ["127.0.0.0/8"]
threads = 1
[upstream]
servers = ["{upstream}"]
timeout_ms = 2000
[lists.tiktok]
domains = ["tiktok.com"]
[[policy]]
name = "staff"
clients = ["127.0.0.0/8"]
block = ["tiktok"]
[log]
hits = "off"
[ratelimit]
{ratelimit}
"#
    )
}

/// What came back to `count` queries for `name` sent as fast as the replies are read, from
/// `src`: (full answers, empty truncated ones). Sent 50 at a time, reading what came back in
/// between, so that the test's own socket buffer does not drop replies.
fn flood(server: SocketAddr, src: &str, name: impl Fn(usize) -> String, count: usize) -> (usize, usize) {
    let socket = UdpSocket::bind((ip(src), 0)).expect("bind");
    socket.connect(server).expect("connect");
    let (mut full, mut truncated) = (0, 0);
    let mut read = |wait: Duration| {
        socket.set_read_timeout(Some(wait)).expect("timeout");
        let mut buf = [0; 4096];
        while let Ok(len) = socket.recv(&mut buf) {
            let Ok(answer) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            if answer.metadata.truncation {
                assert!(answer.answers.is_empty() && answer.authorities.is_empty());
                truncated += 1;
            } else {
                full += 1;
            }
        }
    };
    for i in 0..count {
        let mut query = new_query(&name(i), RecordType::A, false, false);
        query.metadata.id = i as u16;
        let _ = socket.send(&query.to_vec().expect("encode"));
        if i % 50 == 49 {
            read(Duration::from_millis(2));
        }
    }
    read(Duration::from_millis(500));
    (full, truncated)
}

#[test]
fn a_client_over_its_limit_is_slowed_and_its_neighbours_are_not() {
    let _one = serialized();
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(
        up.addr(),
        "qps = 50\nburst = 100\nexempt = [\"127.60.0.0/16\"]",
    ));
    let (full, slipped) = flood(d.addr(), "127.50.0.1", |_| "www.tiktok.com".into(), 600);
    // The burst, a few more refilled meanwhile, then one in two of the rest truncated.
    assert!((100..200).contains(&full), "{full} full answers");
    assert!((200..=300).contains(&slipped), "{slipped} truncated answers");
    // A neighbour in the same /24 has a bucket of its own.
    for _ in 0..20 {
        let answer = query_udp(d.addr(), ip("127.50.0.2"), "www.tiktok.com", RecordType::A, false).expect("answer");
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    }
    // An exempt prefix (a VLAN's NAT) is never limited.
    let (full, truncated) = flood(d.addr(), "127.60.0.1", |_| "www.tiktok.com".into(), 600);
    assert_eq!((full, truncated), (600, 0));
    // The flooder's TCP retry is served: TCP is not limited by the UDP buckets.
    let answer = query_tcp(d.addr(), ip("127.50.0.1"), "www.tiktok.com", RecordType::A, false).expect("tcp");
    assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
    let page = d.scrape_metrics();
    let dropped = metric(
        &page,
        "sinkhole_ratelimited_total",
        &[("limit", "client"), ("action", "dropped")],
    );
    let truncated = metric(
        &page,
        "sinkhole_ratelimited_total",
        &[("limit", "client"), ("action", "truncated")],
    );
    assert_eq!(truncated, Some(slipped as f64));
    assert!(dropped.unwrap_or(0.0) >= 200.0, "{dropped:?}");
}

#[test]
fn a_flood_of_cache_misses_from_one_client_does_not_cost_the_others_their_answers() {
    let _one = serialized();
    // Found from outside: during a unique-name flood from one client, other clients' block
    // answers were lost 9/20. With the default limit (1000 a second), the flood is cut down to
    // what the worker can answer, and the others keep theirs.
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(up.addr(), "exempt = []"));
    let flooder = std::thread::spawn({
        let server = d.addr();
        move || {
            // As fast as it can send, for 2 s, answers unread.
            let socket = UdpSocket::bind((ip("127.70.0.1"), 0)).expect("bind");
            socket.connect(server).expect("connect");
            let started = Instant::now();
            let mut sent = 0u32;
            while started.elapsed() < Duration::from_secs(2) {
                let query = new_query(&format!("u{sent}.flood.example"), RecordType::A, false, false);
                let _ = socket.send(&query.to_vec().expect("encode"));
                sent += 1;
            }
            sent
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let mut answered = 0;
    for _ in 0..20 {
        // Two tries, as a stub resolver makes (glibc's default): a datagram the kernel drops from
        // a socket buffer the flood keeps full is UDP's lot on a busy machine; a client whose
        // answers the flood takes (9 of 20 before the limit) loses most of them either way.
        let answer =
            (0..2).find_map(|_| query_udp(d.addr(), ip("127.71.0.1"), "www.tiktok.com", RecordType::A, false).ok());
        answered += usize::from(answer.is_some_and(|a| a.metadata.response_code == ResponseCode::NXDomain));
    }
    let sent = flooder.join().expect("flooder");
    assert_eq!(answered, 20, "every block answered during the flood");
    let page = d.scrape_metrics();
    let limited = metric(
        &page,
        "sinkhole_ratelimited_total",
        &[("limit", "client"), ("action", "dropped")],
    );
    assert!(sent > 10_000, "a flood: {sent} queries in 2 s");
    assert!(
        limited.unwrap_or(0.0) > 1000.0,
        "the flood was limited: {limited:?} of {sent}"
    );
}

#[test]
fn identical_questions_from_one_network_are_limited_when_rrl_is_on() {
    let _one = serialized();
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(
        up.addr(),
        "qps = 0\nidentical_qps = 10\nidentical_burst = 20\nslip = 0\nexempt = []",
    ));
    // A spoofed victim's /24 asks the same question again and again: 20 answers, then silence
    // (slip = 0 drops all).
    let (full, truncated) = flood(d.addr(), "127.80.0.1", |_| "reflect.example".into(), 300);
    assert!((20..40).contains(&full), "{full} answers");
    assert_eq!(truncated, 0);
    // Another question from the same network, and the same question from another network, pass.
    let other = query_udp(d.addr(), ip("127.80.0.2"), "other.example", RecordType::A, false).expect("answer");
    assert_eq!(addresses(&other), vec!["192.0.2.1"]);
    let elsewhere = query_udp(d.addr(), ip("127.81.0.1"), "reflect.example", RecordType::A, false).expect("answer");
    assert_eq!(addresses(&elsewhere), vec!["192.0.2.1"]);
}
