//! Discovery of Designated Resolvers (RFC 9462) as clients see it: with DoT and DoH listeners
//! configured, `_dns.resolver.arpa` SVCB is answered by sinkhole with one record per encrypted
//! endpoint (RFC 9461), over UDP and TCP, to every allowed client whatever its policy blocks;
//! the rest of `resolver.arpa` is NODATA and never forwarded; `_dns.<name>` gets the same records.

use std::net::SocketAddr;
use std::process::Command;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::svcb::{SVCB, SvcParamKey, SvcParamValue};
use hickory_proto::rr::{RData, RecordType};
use sinkhole_testkit::*;

/// The name the test certificate holds: the DDR target.
const NAME: &str = "dns.example.test";
/// A client of the blocking policy, whose list blocks the whole of `resolver.arpa` and the name.
const BLOCKED_CLIENT: &str = "127.10.0.5";
/// A client of no policy.
const PLAIN_CLIENT: &str = "127.20.0.5";
/// A client outside `server.allow`.
const REFUSED_CLIENT: &str = "127.200.0.5";

const CONFIG: &str = r#"
[server]
listen = ["{listen}"]
metrics = "off"
allow = ["127.0.0.0/9"]
threads = 1
tls = ["127.0.0.1:{tls_port}"]
https = ["127.0.0.1:{https_port}"]
certificate = "cert.pem"
key = "key.pem"
[upstream]
servers = ["{upstream}"]
timeout_ms = 1000
[lists.everything]
domains = ["resolver.arpa", "dns.example.test", "example.test"]

[[policy]]
name = "staff"
clients = ["127.10.0.0/16"]
block = ["everything"]
"#;

/// A daemon with DoT and DoH listener addresses on free loopback ports and a certificate naming
/// `NAME` (and 127.0.0.1, for verified discovery).
struct Setup {
    upstream: FakeUpstream,
    daemon: Daemon,
    tls_port: u16,
    https_port: u16,
}

/// Writes a certificate naming `names` and its key into `dir`, as `cert.pem` and `key.pem`.
fn write_certificate(dir: &TestDir, names: &[&str]) {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let pair = rcgen::generate_simple_self_signed(names).expect("rcgen makes a certificate");
    dir.write_file("cert.pem", &pair.cert.pem());
    dir.write_file("key.pem", &pair.signing_key.serialize_pem());
}

fn config_text(upstream: SocketAddr, tls_port: u16, https_port: u16) -> String {
    CONFIG
        .replace("{upstream}", &upstream.to_string())
        .replace("{tls_port}", &tls_port.to_string())
        .replace("{https_port}", &https_port.to_string())
}

fn start() -> Setup {
    let upstream = FakeUpstream::start();
    let (tls_port, https_port) = (free_port(), free_port());
    let dir = TestDir::new();
    write_certificate(&dir, &[NAME, "127.0.0.1"]);
    let daemon = Daemon::start_in(dir, &config_text(upstream.addr(), tls_port, https_port));
    Setup {
        upstream,
        daemon,
        tls_port,
        https_port,
    }
}

impl Setup {
    fn udp(&self, src: &str, name: &str, qtype: RecordType) -> Message {
        query_udp(self.daemon.addr(), ip(src), name, qtype, true).expect("daemon answers over UDP")
    }

    fn tcp(&self, src: &str, name: &str, qtype: RecordType) -> Message {
        query_tcp(self.daemon.addr(), ip(src), name, qtype, false).expect("daemon answers over TCP")
    }

    /// Checks that `message` holds the two records: DoH on the https port first, DoT second.
    fn assert_records(&self, message: &Message, owner: &str) {
        assert_eq!(message.metadata.response_code, ResponseCode::NoError);
        let records: Vec<&SVCB> = message
            .answers
            .iter()
            .map(|r| {
                assert_eq!(r.name.to_ascii().to_ascii_lowercase(), owner);
                match &r.data {
                    RData::SVCB(svcb) => svcb,
                    other => panic!("expected SVCB, got {other:?}"),
                }
            })
            .collect();
        assert_eq!(records.len(), 2, "{message:?}");
        let (doh, dot) = (records[0], records[1]);
        assert_eq!((doh.svc_priority, dot.svc_priority), (1, 2));
        for record in [doh, dot] {
            assert_eq!(record.target_name.to_ascii(), format!("{NAME}."));
            match param(record, SvcParamKey::Ipv4Hint) {
                Some(SvcParamValue::Ipv4Hint(hint)) => {
                    assert_eq!(
                        hint.0.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        ["127.0.0.1"]
                    );
                }
                other => panic!("ipv4hint: {other:?}"),
            }
        }
        match param(doh, SvcParamKey::Alpn) {
            Some(SvcParamValue::Alpn(alpn)) => assert_eq!(alpn.0, ["h2", "http/1.1"]),
            other => panic!("DoH alpn: {other:?}"),
        }
        match param(dot, SvcParamKey::Alpn) {
            Some(SvcParamValue::Alpn(alpn)) => assert_eq!(alpn.0, ["dot"]),
            other => panic!("DoT alpn: {other:?}"),
        }
        assert!(
            matches!(param(doh, SvcParamKey::Port), Some(SvcParamValue::Port(p)) if *p == self.https_port),
            "{doh:?}"
        );
        assert!(
            matches!(param(dot, SvcParamKey::Port), Some(SvcParamValue::Port(p)) if *p == self.tls_port),
            "{dot:?}"
        );
        // dohpath (key 7) is not a key hickory-proto 0.26 knows: its value comes as opaque bytes.
        match param(doh, SvcParamKey::Unknown(7)) {
            Some(SvcParamValue::Unknown(path)) => assert_eq!(path.0, b"/dns-query{?dns}"),
            other => panic!("dohpath: {other:?}"),
        }
        assert!(param(dot, SvcParamKey::Unknown(7)).is_none());
    }
}

fn param(record: &SVCB, key: SvcParamKey) -> Option<&SvcParamValue> {
    record.svc_params.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

fn assert_nodata(message: &Message, what: &str) {
    assert_eq!(message.metadata.response_code, ResponseCode::NoError, "{what}");
    assert!(message.answers.is_empty(), "{what}: {message:?}");
    let soa = message.authorities.first().unwrap_or_else(|| panic!("{what}: no SOA"));
    assert_eq!(soa.record_type(), RecordType::SOA, "{what}");
    assert_eq!(soa.name.to_ascii().to_ascii_lowercase(), "resolver.arpa.", "{what}");
}

#[test]
fn discovery_answers_svcb_over_udp_and_tcp_even_to_a_blocking_policy() {
    let s = start();
    for client in [PLAIN_CLIENT, BLOCKED_CLIENT] {
        s.assert_records(
            &s.udp(client, "_dns.resolver.arpa", RecordType::SVCB),
            "_dns.resolver.arpa.",
        );
        s.assert_records(
            &s.tcp(client, "_dns.resolver.arpa", RecordType::SVCB),
            "_dns.resolver.arpa.",
        );
    }
    // Discovery Using Resolver Names (RFC 9462 4): the same records under the name itself.
    let named = format!("_dns.{NAME}");
    s.assert_records(&s.udp(PLAIN_CLIENT, &named, RecordType::SVCB), &format!("{named}."));
    s.assert_records(&s.udp(BLOCKED_CLIENT, &named, RecordType::SVCB), &format!("{named}."));
    assert_eq!(s.upstream.count("_dns.resolver.arpa"), 0, "never forwarded");
    assert_eq!(s.upstream.count(&named), 0, "answered here");
}

#[test]
fn the_rest_of_resolver_arpa_is_nodata_and_never_forwarded() {
    let s = start();
    for (name, qtype) in [
        ("_dns.resolver.arpa", RecordType::A),
        ("_dns.resolver.arpa", RecordType::HTTPS),
        ("resolver.arpa", RecordType::SOA),
        ("other.resolver.arpa", RecordType::SVCB),
        ("a.b.resolver.arpa", RecordType::AAAA),
    ] {
        for client in [PLAIN_CLIENT, BLOCKED_CLIENT] {
            let what = format!("{name} {qtype} from {client}");
            assert_nodata(&s.udp(client, name, qtype), &what);
        }
        assert_eq!(s.upstream.count(name), 0, "{name} never forwarded");
    }
    // Not under resolver.arpa: the policy blocks it as any name.
    let blocked = s.udp(BLOCKED_CLIENT, "_dns.example.test", RecordType::SVCB);
    assert_eq!(blocked.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn a_refused_client_stays_refused() {
    let s = start();
    for message in [
        s.udp(REFUSED_CLIENT, "_dns.resolver.arpa", RecordType::SVCB),
        s.udp(REFUSED_CLIENT, "x.resolver.arpa", RecordType::A),
    ] {
        assert_eq!(message.metadata.response_code, ResponseCode::Refused);
        assert!(message.answers.is_empty() && message.authorities.is_empty());
    }
    // Over TCP a client outside `server.allow` does not get a connection to ask on.
    let tcp = query_tcp(
        s.daemon.addr(),
        ip(REFUSED_CLIENT),
        "_dns.resolver.arpa",
        RecordType::SVCB,
        false,
    );
    assert!(tcp.is_err(), "{tcp:?}");
}

#[test]
fn without_encrypted_listeners_discovery_is_nodata() {
    let (upstream, daemon) = Daemon::start_forwarding(
        "[server]\nlisten = [\"{listen}\"]\nmetrics = \"off\"\nallow = [\"127.0.0.0/8\"]\n[upstream]\nservers = [\"{upstream}\"]\n",
        &[],
    );
    let message = query_udp(
        daemon.addr(),
        ip(PLAIN_CLIENT),
        "_dns.resolver.arpa",
        RecordType::SVCB,
        true,
    )
    .expect("answers");
    assert_nodata(&message, "no tls, no https");
    assert_eq!(message.authorities[0].ttl, 300, "cached by clients for five minutes");
    assert_eq!(upstream.count("_dns.resolver.arpa"), 0);
}

#[test]
fn kdig_shows_the_records() {
    if Command::new("kdig").arg("--version").output().is_err() {
        eprintln!("kdig (knot-dnsutils) is not installed: skipping");
        return;
    }
    let s = start();
    let addr = s.daemon.addr();
    let out = Command::new("kdig")
        .args([
            &format!("@{}", addr.ip()),
            "-p",
            &addr.port().to_string(),
            "-b",
            PLAIN_CLIENT,
            "+tcp",
            "_dns.resolver.arpa",
            "SVCB",
        ])
        .output()
        .expect("kdig runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status: NOERROR"), "{text}");
    let doh = format!(
        "SVCB\t1 {NAME}. alpn=h2,http/1.1 port={} ipv4hint=127.0.0.1 ",
        s.https_port
    );
    let dot = format!("SVCB\t2 {NAME}. alpn=dot port={} ipv4hint=127.0.0.1", s.tls_port);
    assert!(text.contains(&doh), "{doh:?} in\n{text}");
    // kdig before Knot 3.3 does not know the dohpath key by name and shows it by number.
    assert!(
        text.contains(&format!("{doh}dohpath=/dns-query{{?dns}}"))
            || text.contains(&format!("{doh}key7=\"/dns-query{{?dns}}\"")),
        "dohpath in\n{text}"
    );
    assert!(text.contains(&dot), "{dot:?} in\n{text}");
}

#[test]
fn check_shows_discovery_and_warns_what_breaks_it() {
    let dir = TestDir::new();
    // No IP address in the certificate: verified discovery cannot work through 127.0.0.1.
    write_certificate(&dir, &[NAME]);
    let upstream = "127.0.0.1:53".parse().expect("address");
    let path = dir.write_file(
        "sinkhole.toml",
        &config_text(upstream, 8853, 8443).replace("{listen}", "127.0.0.1:5399"),
    );
    let out = sinkhole_stdout(&["check", "-c", path.to_str().expect("utf-8 path")]);
    assert!(
        out.contains(&format!(
            "ddr       {NAME}: DoH port 8443, DoT port 8853 (addresses 127.0.0.1)"
        )),
        "{out}"
    );
    assert!(out.contains("the certificate does not name 127.0.0.1"), "{out}");

    // A wildcard listener and a certificate without a DNS name: nothing to discover.
    write_certificate(&dir, &["127.0.0.1"]);
    let wild = config_text(upstream, 8853, 8443)
        .replace("{listen}", "127.0.0.1:5399")
        .replace("tls = [\"127.0.0.1:", "tls = [\"0.0.0.0:");
    let path = dir.write_file("wild.toml", &wild);
    let out = sinkhole_stdout(&["check", "-c", path.to_str().expect("utf-8 path")]);
    assert!(out.contains("set server.ddr_name"), "{out}");
    assert!(!out.contains("ddr       "), "{out}");
}
