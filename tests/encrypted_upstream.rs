//! Encrypted upstreams as a user sees them: sinkhole forwarding to a real Unbound (the Debian
//! package) on loopback over DNS over TLS (`tls://`) and DNS over HTTPS (`https://`), with the
//! server's certificate checked against a test CA given as `upstream.ca`. UDP and TCP clients
//! get Unbound's answers, blocked names stay blocked, a certificate for another name or from
//! another CA gives SERVFAIL (counted as the upstream's error), a dead or silent TLS upstream is
//! failed over within the timeout, and many queries share one or few connections.
//!
//! Certificates come from a test CA (sinkhole_testkit's `TestCa`). Skipped, with a message, where
//! Unbound is not installed (`apt-get install unbound`), and the DoH tests where this Unbound is
//! built without nghttp2.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use sinkhole_testkit::*;

const STAFF: &str = "127.10.0.5";

/// An Unbound serving DoT and DoH (and plain DNS, to know when it is up) on 127.0.0.1, with a
/// certificate for `upstream.test` from the test CA; killed on drop.
struct Upstream {
    _unbound: Unbound,
    dir: TestDir,
    tls_port: u16,
    https_port: Option<u16>,
}

impl Upstream {
    /// Starts it, or None (with a message) where Unbound is missing.
    fn start(doh: bool) -> Option<Upstream> {
        let Some(unbound) = unbound_program("unbound") else {
            eprintln!("skipped: unbound is not installed (apt-get install unbound)");
            return None;
        };
        if doh && !unbound_has_doh(&unbound) {
            eprintln!("skipped: this unbound has no DNS over HTTPS (built without nghttp2)");
            return None;
        }
        let dir = TestDir::new();
        let ca = TestCa::new();
        ca.write_ca(dir.path());
        std::fs::write(dir.path().join("other-ca.pem"), TestCa::new().ca_pem).expect("write other-ca.pem");
        ca.server_cert(&["upstream.test"]).write(dir.path(), "server");
        let (tls_port, https_port) = (free_port(), free_port());
        let https = if doh {
            format!(
                "    interface: 127.0.0.1@{https_port}\n    https-port: {https_port}\n    http-notls-downstream: no\n"
            )
        } else {
            String::new()
        };
        let server = format!(
            r#"    interface: 127.0.0.1@{tls_port}
{https}    tls-port: {tls_port}
    tls-service-key: "{dir}/server.key"
    tls-service-pem: "{dir}/server.crt"
    module-config: "iterator"
    incoming-num-tcp: 100
    local-zone: "example." static
    local-data: "allowed.example. 300 IN A 192.0.2.7"
    local-data: "other.example. 300 IN A 192.0.2.8"
    local-data: "blocked.example. 300 IN A 192.0.2.66"
"#,
            dir = dir.path().display(),
        );
        Some(Upstream {
            _unbound: Unbound::start(&unbound, dir.path(), &server, ""),
            dir,
            tls_port,
            https_port: doh.then_some(https_port),
        })
    }

    /// The file of a CA in its dir ("ca" signed the server's certificate, "other-ca" did not).
    fn ca(&self, name: &str) -> String {
        self.dir.path().join(format!("{name}.pem")).display().to_string()
    }

    /// The DoT server as sinkhole's config writes it, checked against `name`.
    fn tls(&self, name: &str) -> String {
        format!("tls://{name}:{}#127.0.0.1", self.tls_port)
    }

    /// The DoH server as sinkhole's config writes it.
    fn https(&self) -> String {
        format!(
            "https://upstream.test:{}/dns-query#127.0.0.1",
            self.https_port.expect("started with DoH")
        )
    }
}

/// sinkhole forwarding to `servers` (as configured), checked against `ca`, blocking
/// `blocked.example` for STAFF.
fn config(servers: &[String], ca: &str, timeout_ms: u64) -> String {
    let servers: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    format!(
        r#"
[server]
listen = ["{{listen}}"]
allow = ["127.0.0.0/8"]
threads = 2
metrics = "{{metrics}}"
[upstream]
servers = [{}]
timeout_ms = {timeout_ms}
ca = "{ca}"
[lists.bad]
domains = ["blocked.example"]
[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["bad"]
[log]
hits = "off"
"#,
        servers.join(", ")
    )
}

/// UDP and TCP clients get the upstream's answers through `server`, a blocked name stays
/// blocked, and many queries open one or few connections to it.
fn answers_through(upstream_server: &str, ca: &str) {
    let d = Daemon::start(&config(&[upstream_server.to_string()], ca, 2000));
    let udp = query_udp(d.addr(), ip(STAFF), "allowed.example", RecordType::A, true).expect("udp answer");
    assert_eq!(udp.metadata.response_code, ResponseCode::NoError, "{}", d.stderr());
    assert_eq!(addresses(&udp), vec!["192.0.2.7"]);
    let tcp = query_tcp(d.addr(), ip(STAFF), "other.example", RecordType::A, true).expect("tcp answer");
    assert_eq!(addresses(&tcp), vec!["192.0.2.8"]);
    let blocked = query_udp(d.addr(), ip(STAFF), "blocked.example", RecordType::A, true).expect("block answer");
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
    assert!(addresses(&blocked).is_empty());
    // Names the cache has not seen: each is forwarded.
    for i in 0..40 {
        let name = format!("n{i}.example");
        let answer = query_udp(d.addr(), ip(STAFF), &name, RecordType::A, false).expect("udp answer");
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain, "{name}");
    }
    let page = d.scrape_metrics();
    let connections = metric(
        &page,
        "sinkhole_upstream_connections_total",
        &[("upstream", upstream_server)],
    )
    .expect("connections counted");
    assert!(
        (1.0..=4.0).contains(&connections),
        "{connections} connections for 42 queries: they are not reused"
    );
    assert_eq!(
        metric(
            &page,
            "sinkhole_upstream_errors_total",
            &[("upstream", upstream_server)]
        )
        .unwrap_or(0.0),
        0.0,
        "{page}"
    );
}

#[test]
fn dns_over_tls_answers_udp_and_tcp_clients_on_few_connections() {
    let Some(up) = Upstream::start(false) else {
        return;
    };
    answers_through(&up.tls("upstream.test"), &up.ca("ca"));
}

#[test]
fn dns_over_https_answers_udp_and_tcp_clients_on_few_connections() {
    let Some(up) = Upstream::start(true) else {
        return;
    };
    answers_through(&up.https(), &up.ca("ca"));
}

/// A query through a daemon forwarding to `server` alone gets SERVFAIL, counted as that
/// upstream's error.
fn refused_certificate(server: &str, ca: &str) {
    let d = Daemon::start(&config(&[server.to_string()], ca, 1000));
    let answer = query_udp(d.addr(), ip(STAFF), "allowed.example", RecordType::A, true).expect("an answer");
    assert_eq!(answer.metadata.response_code, ResponseCode::ServFail);
    assert!(addresses(&answer).is_empty());
    let page = d.scrape_metrics();
    let errors = metric(&page, "sinkhole_upstream_errors_total", &[("upstream", server)]).unwrap_or(0.0);
    assert!(errors >= 1.0, "the refused certificate is not counted:\n{page}");
}

#[test]
fn a_certificate_for_another_name_or_from_another_ca_gives_servfail() {
    let Some(up) = Upstream::start(false) else {
        return;
    };
    // The server's certificate is for upstream.test, not wrong.test.
    refused_certificate(&up.tls("wrong.test"), &up.ca("ca"));
    // The right name, but from a CA sinkhole was not told to trust.
    refused_certificate(&up.tls("upstream.test"), &up.ca("other-ca"));
}

#[test]
fn a_dead_or_silent_tls_upstream_is_failed_over_within_the_timeout() {
    let Some(up) = Upstream::start(false) else {
        return;
    };
    // Nothing listens on the first; the second accepts connections and never says a word.
    let dead = free_port();
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind silent listener");
    let silent_port = silent.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held: Vec<TcpStream> = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let servers = [
        format!("tls://upstream.test:{dead}#127.0.0.1"),
        format!("tls://upstream.test:{silent_port}#127.0.0.1"),
        up.tls("upstream.test"),
    ];
    let d = Daemon::start(&config(&servers, &up.ca("ca"), 1500));
    for (name, want) in [("allowed.example", "192.0.2.7"), ("other.example", "192.0.2.8")] {
        let start = Instant::now();
        let answer = query_udp(d.addr(), ip(STAFF), name, RecordType::A, true).expect("an answer");
        assert_eq!(addresses(&answer), vec![want], "{}", d.stderr());
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "took {:?}",
            start.elapsed()
        );
    }
    let page = d.scrape_metrics();
    let silent_errors = metric(
        &page,
        "sinkhole_upstream_errors_total",
        &[("upstream", &servers[1]), ("kind", "timeout")],
    );
    assert!(silent_errors.unwrap_or(0.0) >= 1.0, "{page}");
}

#[test]
fn a_named_tls_upstream_without_an_address_is_refused_at_its_place() {
    let dir = TestDir::new();
    let path = dir.write_file(
        "sinkhole.toml",
        "[upstream]\nservers = [\"192.0.2.1\", \"tls://dns.example.net\"]\n",
    );
    let out = run_sinkhole(&["check", "-c", path.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sinkhole.toml:2:"), "{stderr}");
    assert!(stderr.contains("tls://dns.example.net#IP"), "{stderr}");
}

#[test]
fn a_ca_file_that_does_not_load_is_an_error_at_its_key() {
    let dir = TestDir::new();
    dir.write_file("ca.pem", "not a certificate\n");
    let path = dir.write_file(
        "sinkhole.toml",
        "[upstream]\nservers = [\"tls://192.0.2.1\"]\nca = \"ca.pem\"\n",
    );
    let out = run_sinkhole(&["check", "-c", path.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sinkhole.toml:3:"), "{stderr}");
    assert!(stderr.contains("upstream.ca"), "{stderr}");
}

#[test]
fn a_reload_with_a_ca_file_that_does_not_load_keeps_the_upstreams_serving() {
    let Some(up) = Upstream::start(false) else {
        return;
    };
    let server = up.tls("upstream.test");
    let good = config(std::slice::from_ref(&server), &up.ca("ca"), 2000);
    let d = Daemon::start(&good);
    let first = query_udp(d.addr(), ip(STAFF), "allowed.example", RecordType::A, true).expect("an answer");
    assert_eq!(addresses(&first), vec!["192.0.2.7"]);
    d.write_file(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    );
    let expanded = std::fs::read_to_string(d.dir().join("sinkhole.toml")).expect("config");
    d.write_file("sinkhole.toml", &expanded.replace(&up.ca("ca"), "broken.pem"));
    d.reload();
    d.wait_for_stderr("reload failed", Duration::from_secs(5));
    assert!(d.stderr().contains("upstream.ca"), "{}", d.stderr());
    let after = query_udp(d.addr(), ip(STAFF), "other.example", RecordType::A, true).expect("an answer");
    assert_eq!(addresses(&after), vec!["192.0.2.8"], "{}", d.stderr());
}
