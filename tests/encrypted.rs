//! DNS over TLS and DNS over HTTPS as clients see them: kdig over DoT and DoH, curl's DoH GET and
//! POST over HTTP/2 and HTTP/1.1, the HTTP errors, the hit log and metrics by protocol, the
//! certificate swapped (or kept) on SIGHUP, and a client that never handshakes cut off.
//!
//! Skipped, with a message, where kdig (knot-dnsutils), curl or openssl is missing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use sinkhole_testkit::*;

/// The daemon of these tests: DoT on `tls`, DoH on `https`, the certificate in its dir
/// (`server.crt`, `server.key`, relative to the config), staff (127.10/16) blocked from tiktok.
fn config(tls: u16, https: u16, extra: &str) -> String {
    format!(
        r#"
[server]
listen = ["{{listen}}"]
metrics = "{{metrics}}"
allow = ["127.0.0.0/8"]
threads = 1
tls = ["127.0.0.1:{tls}"]
https = ["127.0.0.1:{https}"]
certificate = "server.crt"
key = "server.key"
{extra}
[upstream]
servers = ["{{upstream}}"]
timeout_ms = 5000
[lists.tiktok]
domains = ["tiktok.com"]
[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["tiktok"]
[log]
hits = "{{dir}}/hits.jsonl"
"#
    )
}

/// A running daemon with DoT and DoH, the CA its certificate comes from, and its ports.
struct Encrypted {
    ca: TestCa,
    daemon: Daemon,
    _upstream: FakeUpstream,
    tls: u16,
    https: u16,
}

impl Encrypted {
    fn start(extra: &str) -> Encrypted {
        let ca = TestCa::new();
        let dir = TestDir::new();
        ca.dns_test_cert().write(dir.path(), "server");
        ca.write_ca(dir.path());
        let upstream = FakeUpstream::start();
        let (tls, https) = (free_port(), free_port());
        let text = config(tls, https, extra).replace("{upstream}", &upstream.addr().to_string());
        let daemon = Daemon::start_in(dir, &text);
        Encrypted {
            ca,
            daemon,
            _upstream: upstream,
            tls,
            https,
        }
    }

    fn ca_file(&self) -> String {
        self.daemon.dir().join("ca.pem").display().to_string()
    }
}

/// What kdig printed for one query, which must have run.
fn kdig(args: &[String]) -> String {
    let out = Command::new("kdig")
        .args(args)
        .args(["+timeout=5", "+retry=0"])
        .output()
        .expect("run kdig");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kdig {args:?} failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// kdig over DoT (`https` false) or DoH from `source`, the server checked against the test CA
/// under the name `dns.test`.
fn kdig_encrypted(e: &Encrypted, https: bool, source: &str, name: &str) -> String {
    let port = if https { e.https } else { e.tls };
    let mut args = vec![
        "@127.0.0.1".to_string(),
        "-p".into(),
        port.to_string(),
        "-b".into(),
        source.into(),
        format!("+tls-ca={}", e.ca_file()),
        format!("+tls-hostname={TLS_NAME}"),
        name.into(),
        "A".into(),
    ];
    if https {
        args.push("+https".into());
    }
    kdig(&args)
}

#[test]
fn dot_and_doh_answer_and_block_as_the_client_s_policy_says() {
    if !installed("kdig", "DoT and DoH clients") {
        return;
    }
    let e = Encrypted::start("");
    for (https, protocol) in [(false, "dot"), (true, "doh")] {
        let allowed = kdig_encrypted(&e, https, "127.10.0.5", &format!("ok-{protocol}.example"));
        assert!(allowed.contains("status: NOERROR"), "{protocol}: {allowed}");
        assert!(allowed.contains("192.0.2.1"), "{protocol}: {allowed}");
        let session = if https { "HTTP session" } else { "TLS session" };
        assert!(allowed.contains(session), "{protocol} was not encrypted: {allowed}");

        let blocked = kdig_encrypted(&e, https, "127.10.0.5", "tiktok.com");
        assert!(blocked.contains("status: NXDOMAIN"), "{protocol}: {blocked}");

        let outside = kdig_encrypted(&e, https, "127.20.0.5", "tiktok.com");
        assert!(outside.contains("status: NOERROR"), "{protocol}: {outside}");
        assert!(outside.contains("192.0.2.1"), "{protocol}: {outside}");

        // Answers up to 64 KiB, as over TCP: never truncated.
        let many = kdig_encrypted(&e, https, "127.20.0.5", "many.example");
        assert!(many.contains(&format!("ANSWER: {MANY_RECORDS};")), "{protocol}: {many}");
    }

    let hits = wait_for_hits(e.daemon.dir().join("hits.jsonl"), 2, Duration::from_secs(5));
    let protocols: Vec<&str> = hits.iter().filter_map(|h| h["protocol"].as_str()).collect();
    assert_eq!(protocols, ["dot", "doh"], "{hits:?}");
    assert!(hits.iter().all(|h| h["client"] == "127.10.0.5"), "{hits:?}");

    let page = e.daemon.scrape_metrics();
    for protocol in ["dot", "doh"] {
        let blocked = metric(
            &page,
            "sinkhole_queries_total",
            &[("protocol", protocol), ("outcome", "blocked")],
        );
        assert_eq!(blocked, Some(1.0), "{protocol}:\n{page}");
    }
}

/// An HTTP exchange with curl: status, headers (lower-cased names), body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Runs curl against the DoH listener (as `https://dns.test:PORT`, checked against the test CA)
/// with `args` (the version flag, method, data), at `path`.
fn curl(e: &Encrypted, args: &[&str], path: &str, body: Option<&[u8]>) -> Reply {
    let dir = e.daemon.dir();
    let (headers_file, body_file, data_file) = (dir.join("h.txt"), dir.join("b.bin"), dir.join("d.bin"));
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "10", "--cacert", &e.ca_file()])
        .args(["--resolve", &format!("{TLS_NAME}:{}:127.0.0.1", e.https)])
        .arg("-D")
        .arg(&headers_file)
        .arg("-o")
        .arg(&body_file)
        .args(args);
    if let Some(body) = body {
        std::fs::write(&data_file, body).expect("write the body");
        command.arg("--data-binary").arg(format!("@{}", data_file.display()));
    }
    let out = command
        .arg(format!("https://{TLS_NAME}:{}{path}", e.https))
        .output()
        .expect("run curl");
    assert!(
        out.status.success(),
        "curl {args:?} {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&headers_file).expect("headers");
    let mut lines = text.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: std::fs::read(&body_file).unwrap_or_default(),
    }
}

fn query_bytes(name: &str) -> Vec<u8> {
    let mut query = new_query(name, RecordType::A, false, false);
    // RFC 8484 4.1: DoH clients use id 0, so that answers are cacheable by HTTP caches.
    query.metadata.id = 0;
    query.to_vec().expect("encode")
}

/// The answer to a DoH request that must have worked: a DNS message for `name`, and its
/// max-age, which must be its least TTL.
fn check_answer(reply: &Reply, name: &str) {
    assert_eq!(reply.status, 200, "{name}");
    assert_eq!(reply.header("content-type"), Some("application/dns-message"));
    let message = Message::from_vec(&reply.body).expect("a DNS message");
    assert_eq!(message.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&message), vec!["192.0.2.1"], "{name}");
    let least = answer_ttls(&message).into_iter().min().expect("an answer");
    assert!(least > 0 && least <= 300, "{least}");
    assert_eq!(reply.header("cache-control"), Some(format!("max-age={least}").as_str()));
}

#[test]
fn doh_get_and_post_over_http2_and_http1_and_its_errors() {
    if !installed("curl", "a DoH client") {
        return;
    }
    let e = Encrypted::start("");
    for version in ["--http2", "--http1.1"] {
        let name = format!("get{}.example", &version[6..].replace('.', ""));
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(query_bytes(&name));
        let get = curl(&e, &[version], &format!("/dns-query?dns={encoded}"), None);
        check_answer(&get, &name);

        let name = format!("post{}.example", &version[6..].replace('.', ""));
        let post_args = [version, "-H", "content-type: application/dns-message"];
        let post = curl(&e, &post_args, "/dns-query", Some(&query_bytes(&name)));
        check_answer(&post, &name);

        assert_eq!(curl(&e, &[version], "/other", None).status, 404);
        assert_eq!(curl(&e, &[version, "-X", "PUT"], "/dns-query", None).status, 405);
        assert_eq!(curl(&e, &[version], "/dns-query?dns=!!!", None).status, 400);
        let wrong_type = [version, "-H", "content-type: text/plain"];
        assert_eq!(curl(&e, &wrong_type, "/dns-query", Some(b"x")).status, 415);
        let too_large = vec![0u8; 70_000];
        assert_eq!(curl(&e, &post_args, "/dns-query", Some(&too_large)).status, 413);
    }
    let page = e.daemon.scrape_metrics();
    for (status, n) in [
        ("200", 4.0),
        ("404", 2.0),
        ("405", 2.0),
        ("400", 2.0),
        ("415", 2.0),
        ("413", 2.0),
    ] {
        let got = metric(&page, "sinkhole_doh_responses_total", &[("status", status)]);
        assert_eq!(got, Some(n), "status {status}:\n{page}");
    }
    assert_eq!(
        metric(
            &page,
            "sinkhole_queries_total",
            &[("protocol", "doh"), ("outcome", "forwarded")]
        ),
        Some(4.0),
        "{page}"
    );
    promtool_lint(&page);
}

/// The certificate a new DoT handshake sees, as its base64 body (no PEM lines or markers).
fn served_certificate(port: u16) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            TLS_NAME,
        ])
        .args(["-alpn", "dot"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    drop(child.stdin.take());
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)
        .expect("read s_client");
    let _ = child.wait();
    pem_body(&out)
}

/// The base64 of the first certificate in `text`, whitespace removed.
fn pem_body(text: &str) -> String {
    let start = text.find("-----BEGIN CERTIFICATE-----").map(|i| i + 27);
    let end = text.find("-----END CERTIFICATE-----");
    match (start, end) {
        (Some(s), Some(e)) if s < e => text[s..e].split_whitespace().collect(),
        _ => String::new(),
    }
}

fn reloads(e: &Encrypted, result: &str) -> f64 {
    let page = e.daemon.scrape_metrics();
    metric(&page, "sinkhole_tls_certificate_reloads_total", &[("result", result)]).unwrap_or(0.0)
}

fn wait_for_reloads(e: &Encrypted, result: &str, n: f64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while reloads(e, result) < n {
        assert!(Instant::now() < deadline, "no {result} certificate reload counted");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_swaps_the_certificate_and_a_broken_pair_keeps_the_old_one() {
    if !installed("openssl", "reads the served certificate") {
        return;
    }
    let e = Encrypted::start("");
    let dir = e.daemon.dir();
    let first = pem_body(&std::fs::read_to_string(dir.join("server.crt")).expect("cert"));
    assert_eq!(served_certificate(e.tls), first);

    assert_eq!(expiry_gauge(&e), Some(67_090_118_400.0), "4096-01-01");

    let renewed = e.ca.server_cert_until(&[TLS_NAME, "127.0.0.1"], (2031, 2, 3));
    renewed.write(dir, "server");
    e.daemon.reload();
    wait_for_reloads(&e, "ok", 1.0);
    assert_eq!(expiry_gauge(&e), Some(1_927_843_200.0), "2031-02-03");
    let second = pem_body(&renewed.cert_pem);
    assert_ne!(first, second);
    assert_eq!(
        served_certificate(e.tls),
        second,
        "a new handshake sees the new certificate"
    );

    // A key that is not the certificate's (a renewal half done), then a key that is not PEM.
    let other = e.ca.dns_test_cert();
    std::fs::write(dir.join("server.crt"), &other.cert_pem).expect("write");
    e.daemon.reload();
    wait_for_reloads(&e, "failed", 1.0);
    std::fs::write(dir.join("server.key"), "not a key").expect("write");
    e.daemon.reload();
    wait_for_reloads(&e, "failed", 2.0);
    assert_eq!(served_certificate(e.tls), second, "the old pair serves on");
    assert!(
        e.daemon.stderr().contains("does not match the certificate"),
        "{}",
        e.daemon.stderr()
    );
    assert_eq!(reloads(&e, "ok"), 1.0);
    assert_eq!(expiry_gauge(&e), Some(1_927_843_200.0), "the serving one's");
    promtool_lint(&e.daemon.scrape_metrics());
}

fn expiry_gauge(e: &Encrypted) -> Option<f64> {
    let page = e.daemon.scrape_metrics();
    metric(&page, "sinkhole_tls_certificate_expiry_timestamp_seconds", &[])
}

#[test]
fn a_client_that_never_handshakes_is_closed_after_the_handshake_timeout() {
    let e = Encrypted::start("tls_handshake_timeout = 1");
    for port in [e.tls, e.https] {
        let started = Instant::now();
        let mut silent = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).expect("connect");
        silent.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut byte = [0; 1];
        let read = silent.read(&mut byte);
        assert!(matches!(read, Ok(0)) || read.is_err(), "{read:?}");
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(900), "closed after {took:?}: too soon");
        assert!(took < Duration::from_secs(3), "closed after {took:?}");
    }
    // Not TLS at all: a handshake error, closed at once.
    let mut plain = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], e.tls))).expect("connect");
    plain.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    plain
        .set_read_timeout(Some(Duration::from_millis(900)))
        .expect("timeout");
    let mut rest = Vec::new();
    let _ = plain.read_to_end(&mut rest);
    let page = e.daemon.scrape_metrics();
    let timeouts = metric(&page, "sinkhole_tls_handshake_failures_total", &[("reason", "timeout")]);
    assert_eq!(timeouts, Some(2.0), "{page}");
    let errors = metric(&page, "sinkhole_tls_handshake_failures_total", &[("reason", "error")]);
    assert_eq!(errors, Some(1.0), "{page}");
}

#[test]
fn dot_and_doh_connections_share_the_tcp_limits() {
    let e = Encrypted::start("tcp_max_connections_per_client = 1\ntls_handshake_timeout = 5");
    // One connection from 127.0.0.1, still handshaking, holds its share: plain TCP, DoT and DoH
    // from that address are turned away at accept.
    let _held = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], e.tls))).expect("connect");
    std::thread::sleep(Duration::from_millis(200));
    for port in [e.tls, e.https, e.daemon.addr().port()] {
        let mut over = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).expect("connect");
        over.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
        assert!(is_closed(&mut over), "port {port}: over the client's share, still open");
    }
    let page = e.daemon.scrape_metrics();
    let refused = metric(&page, "sinkhole_tcp_rejected_total", &[("reason", "client_limit")]);
    assert_eq!(refused, Some(3.0), "{page}");
    // Another client address has its own share.
    let mut other = tcp_connect(
        SocketAddr::from(([127, 0, 0, 1], e.tls)),
        ip("127.20.0.5"),
        Duration::from_secs(2),
    )
    .expect("connect");
    assert!(!is_closed(&mut other), "another client was turned away");
}

/// Whether the server closed `stream` (EOF or reset) within a second.
fn is_closed(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
    let mut byte = [0; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}
/// How long an `openssl s_client` connection that sends nothing after its handshake (ALPN
/// `alpn`) stays open, up to `limit`.
fn idle_connection_lifetime(port: u16, alpn: &str, limit: Duration) -> Duration {
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", TLS_NAME, "-alpn", alpn])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    let started = Instant::now();
    while started.elapsed() < limit {
        if child.try_wait().expect("wait").is_some() {
            return started.elapsed();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    started.elapsed()
}

#[test]
fn idle_dot_and_doh_connections_are_closed() {
    if !installed("openssl", "holds an idle TLS connection") {
        return;
    }
    let e = Encrypted::start("tcp_idle_timeout = 1");
    for (port, alpn) in [(e.tls, "dot"), (e.https, "h2"), (e.https, "http/1.1")] {
        let lived = idle_connection_lifetime(port, alpn, Duration::from_secs(6));
        assert!(
            lived >= Duration::from_millis(900),
            "{alpn}: closed after {lived:?}: too soon"
        );
        assert!(lived < Duration::from_secs(4), "{alpn}: still open after {lived:?}");
    }
}

#[test]
fn check_names_the_encrypted_listeners_and_fails_on_a_bad_pair() {
    let ca = TestCa::new();
    let dir = TestDir::new();
    ca.dns_test_cert().write(dir.path(), "server");
    let text = config(8853, 8443, "")
        .replace("{listen}", "127.0.0.1:5353")
        .replace("{metrics}", "127.0.0.1:9153");
    let text = text
        .replace("{upstream}", "127.0.0.1:5354")
        .replace("{dir}", &dir.path().display().to_string());
    let file = dir.write_file("sinkhole.toml", &text);
    let file = file.display().to_string();
    let out = sinkhole_stdout(&["check", "-c", &file]);
    assert!(out.contains("dot       127.0.0.1:8853 (DNS over TLS)"), "{out}");
    assert!(out.contains("doh       127.0.0.1:8443 (DNS over HTTPS"), "{out}");

    std::fs::write(dir.path().join("server.key"), "not a key").expect("write");
    let failed = run_sinkhole(&["check", "-c", &file]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    let key = dir.path().join("server.key");
    assert!(
        stderr.contains(&format!("{}: cannot read a PEM private key", key.display())),
        "{stderr}"
    );
    assert_start_fails(&text, dir.path(), &key);
}

/// `sinkhole run` with the broken pair stops at start, naming the file.
fn assert_start_fails(text: &str, dir: &Path, key: &Path) {
    let (tls, https, listen) = (free_port(), free_port(), free_port());
    let text = text
        .replace("127.0.0.1:8853", &format!("127.0.0.1:{tls}"))
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{https}"))
        .replace("127.0.0.1:5353", &format!("127.0.0.1:{listen}"))
        .replace("127.0.0.1:9153", &format!("127.0.0.1:{}", free_port()));
    let file = dir.join("run.toml");
    std::fs::write(&file, text).expect("write");
    let mut args = vec!["run".to_string(), "-c".into(), file.display().to_string()];
    args.extend(harness_run_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_sinkhole(&args);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&key.display().to_string()), "{stderr}");
}
