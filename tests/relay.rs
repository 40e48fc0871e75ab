//! The real client behind a relay: a trusted relay (`server.trusted_relays`) states its client by a
//! PROXY protocol v2 header (UDP and TCP) or by EDNS Client Subnet, and that client's policy
//! applies; from any other sender neither counts. Client Subnet is stripped before forwarding
//! unless `upstream.forward_client_subnet`.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::Message;
use sinkhole_testkit::*;

const RELAY: &str = "127.0.0.1";
const STRANGER: &str = "127.0.0.2";
const NXDOMAIN: u8 = 3;

fn config(forward_client_subnet: bool) -> String {
    format!(
        r#"
[server]
listen = ["{{listen}}"]
metrics = "{{metrics}}"
allow = ["127.0.0.0/8", "10.0.0.0/8"]
trusted_relays = ["127.0.0.1/32"]
threads = 1
tcp_io_timeout = 1
[upstream]
servers = ["{{upstream}}"]
forward_client_subnet = {forward_client_subnet}
[lists.tiktok]
domains = ["tiktok.com"]
[[policy]]
name = "relayed"
clients = ["10.9.0.0/24"]
block = ["tiktok"]
[log]
hits = "{{dir}}/hits.jsonl"
"#
    )
}

fn start(forward_client_subnet: bool) -> (FakeUpstream, Daemon) {
    Daemon::start_forwarding(&config(forward_client_subnet), &[])
}

/// A query for `name` (A, RD), with an OPT record holding a Client Subnet option of `ecs`
/// (address bytes, source prefix) when given.
fn query(id: u16, name: &str, ecs: Option<(&[u8], u8)>) -> Vec<u8> {
    let mut p = id.to_be_bytes().to_vec();
    p.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, u8::from(ecs.is_some())]);
    for label in name.split('.') {
        p.push(label.len() as u8);
        p.extend_from_slice(label.as_bytes());
    }
    p.extend_from_slice(&[0, 0, 1, 0, 1]);
    if let Some((address, prefix)) = ecs {
        let mut option = vec![0, 8];
        option.extend_from_slice(&(4 + address.len() as u16).to_be_bytes());
        option.extend_from_slice(&[0, 1, prefix, 0]);
        option.extend_from_slice(address);
        p.extend_from_slice(&[0, 0, 41, 4, 0xd0, 0, 0, 0, 0]);
        p.extend_from_slice(&(option.len() as u16).to_be_bytes());
        p.extend_from_slice(&option);
    }
    p
}

/// A PROXY v2 header: `command` 1 (PROXY) stating `source` over UDP/IPv4, or 0 (LOCAL).
fn proxy_header(command: u8, source: [u8; 4]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x20 | command, 0x12, 0, 12]);
    h.extend_from_slice(&source);
    h.extend_from_slice(&[127, 0, 0, 1, 0x30, 0x39, 0, 53]);
    h
}

/// The rcode of a raw reply.
fn rcode(reply: &[u8]) -> u8 {
    reply[3] & 0x0f
}

fn udp(daemon: &Daemon, src: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    send_raw_udp(daemon.addr(), ip(src), bytes, Duration::from_secs(2))
}

/// Sends `prefix` then `query` framed over a new TCP connection from `src`; the reply, or why none.
fn tcp(daemon: &Daemon, src: &str, prefix: &[u8], query: &[u8]) -> Result<Vec<u8>, String> {
    let mut stream = tcp_connect(daemon.addr(), ip(src), Duration::from_secs(2))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    stream.write_all(prefix).map_err(|e| e.to_string())?;
    exchange_framed(&mut stream, query)
}

/// Sends `query` with its 2-byte length on `stream` and reads the framed reply.
fn exchange_framed(stream: &mut (impl Read + Write), query: &[u8]) -> Result<Vec<u8>, String> {
    let mut bytes = (query.len() as u16).to_be_bytes().to_vec();
    bytes.extend_from_slice(query);
    stream.write_all(&bytes).map_err(|e| e.to_string())?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).map_err(|e| format!("no reply: {e}"))?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).map_err(|e| format!("cut reply: {e}"))?;
    Ok(reply)
}

/// Sends `prefix` in clear over a new TCP connection from `src` to the DoT listener `tls`, then
/// `query` over TLS (the server checked as `dns.test` against `ca_pem`); the reply, or why none.
fn dot(tls: SocketAddr, src: &str, prefix: &[u8], ca_pem: &str, query: &[u8]) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut tcp = tcp_connect(tls, ip(src), Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    tcp.write_all(prefix).map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"dot".to_vec()];
    let name = ServerName::try_from(TLS_NAME).map_err(|e| e.to_string())?;
    let session = rustls::ClientConnection::new(Arc::new(config), name).map_err(|e| e.to_string())?;
    exchange_framed(&mut rustls::StreamOwned::new(session, tcp), query)
}

fn hits(daemon: &Daemon, count: usize) -> Vec<serde_json::Value> {
    wait_for_hits(daemon.dir().join("hits.jsonl"), count, Duration::from_secs(5))
}

/// The counter `name{labels}` once it reads `want` (workers add their counts after sending the
/// answers of a batch), or its value after 3 s.
fn counter(daemon: &Daemon, name: &str, labels: &[(&str, &str)], want: f64) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let value = metric(&daemon.scrape_metrics(), name, labels).unwrap_or(0.0);
        if value == want || std::time::Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_proxy_header_from_the_trusted_relay_states_the_client_over_udp_and_tcp() {
    let (_upstream, daemon) = start(false);
    let mut datagram = proxy_header(1, [10, 9, 0, 5]);
    datagram.extend_from_slice(&query(1, "www.tiktok.com", None));
    let reply = udp(&daemon, RELAY, &datagram).expect("the relay gets the answer");
    assert_eq!(rcode(&reply), NXDOMAIN, "10.9.0.5's policy blocks");
    assert_eq!(&reply[..2], &[0, 1], "the answer goes back without a header");

    let reply = tcp(
        &daemon,
        RELAY,
        &proxy_header(1, [10, 9, 0, 6]),
        &query(2, "tiktok.com", None),
    )
    .unwrap();
    assert_eq!(rcode(&reply), NXDOMAIN, "over TCP too");

    let clients: Vec<_> = hits(&daemon, 2).iter().map(|h| h["client"].clone()).collect();
    assert_eq!(clients, ["10.9.0.5", "10.9.0.6"]);
    assert_eq!(
        counter(&daemon, "sinkhole_relayed_queries_total", &[("source", "proxy")], 2.0),
        2.0
    );

    // Without a header the relay is a client like any other: no policy, forwarded.
    let plain = udp(&daemon, RELAY, &query(3, "www.tiktok.com", None)).unwrap();
    assert_eq!(rcode(&plain), 0);
}

#[test]
fn a_proxy_header_from_anyone_else_is_not_honoured() {
    let (_upstream, daemon) = start(false);
    let mut datagram = proxy_header(1, [10, 9, 0, 5]);
    datagram.extend_from_slice(&query(1, "www.tiktok.com", None));
    // Read as DNS, it is no query we answer normally (its "header" says opcode 1: NOTIMP).
    if let Some(reply) = udp(&daemon, STRANGER, &datagram) {
        assert_ne!(rcode(&reply), NXDOMAIN, "a stranger cannot state its client");
    }
    assert_eq!(
        counter(&daemon, "sinkhole_relay_ignored_total", &[("source", "proxy")], 1.0),
        1.0
    );
    // Over TCP its first bytes are a frame length far past what follows: no answer comes.
    let reply = tcp(
        &daemon,
        STRANGER,
        &proxy_header(1, [10, 9, 0, 5]),
        &query(2, "tiktok.com", None),
    );
    assert!(reply.is_err(), "{reply:?}");
    assert_eq!(
        counter(&daemon, "sinkhole_relayed_queries_total", &[("source", "proxy")], 0.0),
        0.0
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(read_hits(daemon.dir().join("hits.jsonl")).is_empty(), "nothing blocked");
}

#[test]
fn client_subnet_states_the_client_only_from_the_trusted_relay() {
    let (_upstream, daemon) = start(false);
    let ecs = Some((&[10u8, 9, 0][..], 24));
    let reply = udp(&daemon, RELAY, &query(1, "www.tiktok.com", ecs)).unwrap();
    assert_eq!(rcode(&reply), NXDOMAIN, "10.9.0.0/24's policy");
    let reply = tcp(&daemon, RELAY, &[], &query(2, "tiktok.com", ecs)).unwrap();
    assert_eq!(rcode(&reply), NXDOMAIN, "over TCP too");
    let clients: Vec<_> = hits(&daemon, 2).iter().map(|h| h["client"].clone()).collect();
    assert_eq!(clients, ["10.9.0.0", "10.9.0.0"]);

    let reply = udp(&daemon, STRANGER, &query(3, "www.tiktok.com", ecs)).unwrap();
    assert_eq!(rcode(&reply), 0, "a client cannot pick its own policy");
    assert_eq!(
        counter(&daemon, "sinkhole_relayed_queries_total", &[("source", "ecs")], 2.0),
        2.0
    );
    assert_eq!(
        counter(&daemon, "sinkhole_relay_ignored_total", &[("source", "ecs")], 1.0),
        1.0
    );
}

/// Whether the upstream's copy of the query for `name` carried a Client Subnet option.
fn upstream_saw_subnet(upstream: &FakeUpstream, name: &str) -> bool {
    let wire = upstream.received_wire();
    let message = wire
        .iter()
        .filter_map(|bytes| Message::from_vec(bytes).ok())
        // Names go upstream in random case (0x20).
        .find(|m| {
            m.queries
                .first()
                .is_some_and(|q| q.name().to_ascii().eq_ignore_ascii_case(&format!("{name}.")))
        })
        .unwrap_or_else(|| panic!("{name} was not forwarded"));
    let edns = message.edns.as_ref().expect("the query had an OPT record");
    edns.options().as_ref().iter().any(|(code, _)| u16::from(*code) == 8)
}

#[test]
fn client_subnet_never_reaches_the_upstream_unless_configured() {
    let (upstream, daemon) = start(false);
    let ecs = Some((&[10u8, 9, 0][..], 24));
    let reply = udp(&daemon, RELAY, &query(1, "example.org", ecs)).unwrap();
    assert_eq!(rcode(&reply), 0);
    assert!(!upstream_saw_subnet(&upstream, "example.org"), "stripped by default");

    let (upstream, daemon) = start(true);
    let reply = udp(&daemon, RELAY, &query(1, "example.org", ecs)).unwrap();
    assert_eq!(rcode(&reply), 0);
    assert!(
        upstream_saw_subnet(&upstream, "example.org"),
        "forward_client_subnet = true"
    );
}

#[test]
fn a_malformed_header_from_the_trusted_relay_is_dropped_and_counted() {
    let (_upstream, daemon) = start(false);
    let mut bad = proxy_header(1, [10, 9, 0, 5]);
    bad[12] = 0x11; // version 1
    let mut datagram = bad.clone();
    datagram.extend_from_slice(&query(1, "www.tiktok.com", None));
    assert_eq!(udp(&daemon, RELAY, &datagram), None, "dropped");
    let reply = tcp(&daemon, RELAY, &bad, &query(2, "tiktok.com", None));
    assert!(reply.is_err(), "closed: {reply:?}");
    // A header that says it is longer than the datagram.
    let mut long = proxy_header(1, [10, 9, 0, 5]);
    long[15] = 200;
    assert_eq!(udp(&daemon, RELAY, &long), None, "dropped");
    let errors = |reason, want| {
        counter(
            &daemon,
            "sinkhole_proxy_header_errors_total",
            &[("reason", reason)],
            want,
        )
    };
    assert_eq!(errors("version", 2.0), 2.0);
    assert_eq!(errors("truncated", 1.0), 1.0);
}

#[test]
fn a_local_header_keeps_the_relays_address() {
    let (_upstream, daemon) = start(false);
    let mut datagram = proxy_header(0, [10, 9, 0, 5]);
    datagram.extend_from_slice(&query(1, "www.tiktok.com", None));
    let reply = udp(&daemon, RELAY, &datagram).unwrap();
    assert_eq!(rcode(&reply), 0, "the relay's own (no) policy");
    let reply = tcp(
        &daemon,
        RELAY,
        &proxy_header(0, [10, 9, 0, 5]),
        &query(2, "tiktok.com", None),
    )
    .unwrap();
    assert_eq!(rcode(&reply), 0, "over TCP too");
}

#[test]
fn explain_via_says_whose_policy_applies() {
    let dir = TestDir::new();
    let text = config(false)
        .replace("{upstream}", "127.0.0.1:5300")
        .replace("{listen}", "127.0.0.1:5353")
        .replace("{metrics}", "off")
        .replace("{dir}", &dir.path().display().to_string());
    let path = dir.write_file("sinkhole.toml", &text);
    let path = path.to_str().unwrap();
    let explain = |via: &str| {
        sinkhole_stdout(&[
            "explain",
            "-c",
            path,
            "--via",
            via,
            "--client",
            "10.9.0.5",
            "tiktok.com",
        ])
    };
    let trusted = explain(RELAY);
    assert!(trusted.contains("is a trusted relay"), "{trusted}");
    assert!(trusted.contains("answer    NXDOMAIN"), "{trusted}");
    let other = explain(STRANGER);
    assert!(other.contains("is not in server.trusted_relays"), "{other}");
    assert!(other.contains("answer    forwarded"), "{other}");
}

/// DoT (and DoH, which is accepted the same way) behind a relay: its PROXY header comes in clear
/// before the TLS handshake, and the client it states is the one whose policy applies; from any
/// other sender the same bytes are not TLS, and the handshake fails.
#[test]
fn a_proxy_header_before_the_tls_handshake_states_the_dot_client() {
    let ca = TestCa::new();
    let dir = TestDir::new();
    ca.dns_test_cert().write(dir.path(), "server");
    let upstream = FakeUpstream::start();
    let port = free_port();
    let text = config(false)
        .replace(
            "threads = 1",
            &format!("threads = 1\ntls = [\"127.0.0.1:{port}\"]\ncertificate = \"server.crt\"\nkey = \"server.key\""),
        )
        .replace("{upstream}", &upstream.addr().to_string());
    let daemon = Daemon::start_in(dir, &text);
    let tls = SocketAddr::new(ip(RELAY), port);

    let reply = dot(
        tls,
        RELAY,
        &proxy_header(1, [10, 9, 0, 5]),
        &ca.ca_pem,
        &query(1, "www.tiktok.com", None),
    )
    .expect("an answer over DoT through the relay");
    assert_eq!(rcode(&reply), NXDOMAIN, "10.9.0.5's policy blocks");
    let logged = hits(&daemon, 1);
    assert_eq!(logged[0]["client"], "10.9.0.5", "{logged:?}");
    assert_eq!(logged[0]["protocol"], "dot", "{logged:?}");

    let reply = dot(tls, RELAY, &[], &ca.ca_pem, &query(2, "www.tiktok.com", None)).expect("plain DoT from the relay");
    assert_eq!(
        rcode(&reply),
        0,
        "without a header the relay's own policy (none) applies"
    );

    let stranger = dot(
        tls,
        STRANGER,
        &proxy_header(1, [10, 9, 0, 5]),
        &ca.ca_pem,
        &query(3, "www.tiktok.com", None),
    );
    assert!(
        stranger.is_err(),
        "a header from a stranger is not honoured: {stranger:?}"
    );
}
