//! DNS over TCP as clients see it, and as one client trying to take it down sees it: pipelined
//! queries answered out of order, answers sent as cached (compressed), the allow list checked at
//! accept, connection limits in total and per client, and slow clients cut off.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use sinkhole_testkit::*;

const NOBODY: &str = "127.20.0.5";

fn config(upstream: SocketAddr, server_extra: &str) -> String {
    format!(
        r#"
[server]
listen = ["{{listen}}"]
metrics = "{{metrics}}"
allow = ["127.0.0.0/9"]
threads = 1
tcp_io_timeout = 1
{server_extra}
[upstream]
servers = ["{upstream}"]
timeout_ms = 5000
[lists.tiktok]
domains = ["tiktok.com"]
[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["tiktok"]
[log]
hits = "off"
"#
    )
}

/// Sends one query on `stream` and reads the raw answer.
fn ask(stream: &mut TcpStream, name: &str, qtype: RecordType) -> Vec<u8> {
    let bytes = new_query(name, qtype, false, false).to_vec().expect("encode");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    stream.write_all(&framed).expect("write query");
    read_frame(stream).expect("an answer")
}

fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0; 2];
    stream.read_exact(&mut len)?;
    let mut answer = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer)?;
    Ok(answer)
}

/// Whether the server has closed `stream` (EOF or a reset within `within`).
fn is_closed(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).expect("timeout");
    let mut byte = [0; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

fn connect(d: &Daemon, src: &str) -> TcpStream {
    let stream = tcp_connect(d.addr(), ip(src), Duration::from_secs(2)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    stream
}

#[test]
fn pipelined_queries_are_answered_as_they_resolve_not_in_order() {
    // Found from outside: 10 fast queries behind a slow one waited 1.5 s on one connection.
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(up.addr(), ""));
    let mut names = vec![("slow.example", RecordType::A)];
    let fast: Vec<String> = (0..10).map(|i| format!("fast{i}.example")).collect();
    names.extend(fast.iter().map(|n| (n.as_str(), RecordType::A)));
    let started = Instant::now();
    let queries: Vec<Message> = names
        .iter()
        .zip(1u16..)
        .map(|((name, qtype), id)| {
            let mut query = new_query(name, *qtype, false, false);
            query.metadata.id = id;
            query
        })
        .collect();
    let answers = exchange_tcp(d.addr(), ip(NOBODY), &queries, SLOW_DELAY * 2).expect("answers");
    assert_eq!(answers.len(), 11);
    let position = |name: &str| {
        answers
            .iter()
            .position(|m| m.queries[0].name().to_ascii() == format!("{name}."))
            .unwrap_or_else(|| panic!("no answer for {name}"))
    };
    assert_eq!(position("slow.example"), 10, "the slow one comes last");
    assert!(started.elapsed() >= SLOW_DELAY, "it waited for the slow one");
}

#[test]
fn answers_go_out_as_the_upstream_sent_them_whole_and_compressed() {
    // Found from outside: TCP answers were decoded and encoded again without name compression
    // (19 KB from upstream became 35 KB), and a 48 KB answer was cut to 2,170 of 3,000 records.
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(up.addr(), ""));
    let mut stream = connect(&d, NOBODY);
    for _ in 0..2 {
        // Forwarded, then from the cache.
        let answer = ask(&mut stream, "many.example", RecordType::A);
        let message = Message::from_vec(&answer).expect("decodes");
        assert_eq!(message.answers.len(), MANY_RECORDS);
        assert!(
            answer.len() < 17 * MANY_RECORDS,
            "{} bytes: names are compressed",
            answer.len()
        );
    }
    // Over UDP, the same question is truncated for the client to ask over TCP.
    let udp = query_udp(d.addr(), ip(NOBODY), "many.example", RecordType::A, true).expect("answer");
    assert!(udp.metadata.truncation);
}

#[test]
fn a_client_outside_the_allow_list_is_closed_at_accept() {
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(up.addr(), ""));
    // 127.200.0.1 is outside allow = 127.0.0.0/9: not even a REFUSED, the connection is closed.
    let mut outsider = connect(&d, "127.200.0.1");
    let bytes = new_query("example.com", RecordType::A, false, false)
        .to_vec()
        .expect("encode");
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    let _ = outsider.write_all(&framed);
    assert!(read_frame(&mut outsider).is_err(), "no answer on a closed connection");
    // Over UDP the same client is told REFUSED.
    let refused = query_udp(d.addr(), ip("127.200.0.1"), "example.com", RecordType::A, false).expect("answer");
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    let page = d.scrape_metrics();
    assert_eq!(
        metric(&page, "sinkhole_tcp_rejected_total", &[("reason", "not_allowed")]),
        Some(1.0)
    );
}

#[test]
fn connections_are_capped_in_total_and_per_client_and_udp_keeps_answering() {
    // Found from outside: 2,000 idle connections took every descriptor, the accept loop spun,
    // UDP cache misses got SERVFAIL ("Too many open files") and new TCP clients timed out.
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(
        up.addr(),
        "tcp_max_connections = 13\ntcp_max_connections_per_client = 4\ntcp_idle_timeout = 30",
    ));
    let mut held = Vec::new();
    for client in 0..3 {
        let src = format!("127.30.0.{client}");
        for _ in 0..4 {
            let mut stream = connect(&d, &src);
            assert!(Message::from_vec(&ask(&mut stream, "held.example", RecordType::A)).is_ok());
            held.push(stream);
        }
        // A fifth from the same client is closed at once.
        let mut fifth = connect(&d, &src);
        assert!(
            is_closed(&mut fifth, Duration::from_secs(2)),
            "over the per-client limit"
        );
    }
    // Twelve open, and a thirteenth from a new client: the fourteenth is closed.
    let mut last = connect(&d, "127.31.0.1");
    assert!(Message::from_vec(&ask(&mut last, "last.example", RecordType::A)).is_ok());
    held.push(last);
    let mut over = connect(&d, "127.31.0.2");
    assert!(is_closed(&mut over, Duration::from_secs(2)), "over the total limit");
    // UDP forwarding is untouched.
    for i in 0..20 {
        let answer = query_udp(d.addr(), ip(NOBODY), &format!("udp{i}.example"), RecordType::A, false)
            .expect("a UDP answer while TCP is full");
        assert_eq!(addresses(&answer), vec!["192.0.2.1"]);
    }
    // A slot freed is a slot taken.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = connect(&d, "127.31.0.3");
        let bytes = new_query("again.example", RecordType::A, false, false)
            .to_vec()
            .expect("encode");
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        if stream.write_all(&framed).is_ok() && read_frame(&mut stream).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was never given out");
        std::thread::sleep(Duration::from_millis(100));
    }
    let page = d.scrape_metrics();
    assert_eq!(
        metric(&page, "sinkhole_tcp_rejected_total", &[("reason", "client_limit")]),
        Some(3.0)
    );
    assert!(metric(&page, "sinkhole_tcp_rejected_total", &[("reason", "limit")]).unwrap_or(0.0) >= 1.0);
}

#[test]
fn a_slow_client_loses_its_connection() {
    let up = FakeUpstream::start();
    let d = Daemon::start(&config(up.addr(), "tcp_idle_timeout = 30"));
    // Half a query, then nothing: closed after tcp_io_timeout (1 s), not after the idle 30 s.
    let mut slow = connect(&d, NOBODY);
    slow.write_all(&[0, 40, 0x12]).expect("write");
    let started = Instant::now();
    assert!(is_closed(&mut slow, Duration::from_secs(5)));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "closed after {took:?}");
    let page = d.scrape_metrics();
    assert_eq!(
        metric(&page, "sinkhole_tcp_closed_total", &[("reason", "timeout")]),
        Some(1.0)
    );
}
