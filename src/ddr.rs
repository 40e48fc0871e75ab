//! Discovery of Designated Resolvers (DDR, RFC 9462): how a client that found sinkhole as a
//! plain DNS server learns that it also speaks DNS over TLS and over HTTPS, and upgrades.
//!
//! A client asks `_dns.resolver.arpa` for SVCB records (RFC 9461): one per encrypted endpoint,
//! each naming the resolver (the target, which the certificate must hold), its ALPN protocols,
//! port, DoH path and address hints. Those records depend only on the config, so they are built
//! once per snapshot as wire bytes ([`Ddr::build`]) and an answer is a few copies into the
//! caller's buffer ([`Ddr::write`]), like the other answers made here (`answer`).
//!
//! `resolver.arpa` is a locally served zone (RFC 9462 6.4, RFC 6303): every other name and type
//! under it gets NODATA with the zone's SOA and is never forwarded. `_dns.<target name>` gets the
//! same records (Discovery Using Resolver Names, RFC 9462 4), for clients told the name.
//!
//! This module decides what the records say; it does not serve TLS (the listeners do) and reads
//! the certificate only for its names.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use toml::Spanned;
use x509_parser::extensions::GeneralName;

use crate::answer;
use crate::config::{Config, Diagnostic};
use crate::packet::Query;
use crate::wire::{CLASS_IN, push_name, push_u16};

/// The SVCB record type (RFC 9460 14.1).
pub(crate) const SVCB: u16 = 64;

/// The zone RFC 9462 reserves, lowercased as query names are compared.
const ZONE: &[u8] = b"resolver.arpa";
/// The name a client asks to discover the encrypted resolver behind a plain one.
const DISCOVERY_NAME: &[u8] = b"_dns.resolver.arpa";

/// TTL of the SVCB records and of the NODATA answers (the SOA minimum): five minutes, so that a
/// reload that adds or removes a listener reaches clients soon, while a client does not ask again
/// for every connection.
const TTL: u32 = 300;

/// The DoH URI template (RFC 8484 4.1, RFC 9461 5): where the DoH listener answers.
const DOH_PATH: &str = "/dns-query{?dns}";

/// Priorities: a client takes the lowest it supports. DoH first: most platforms that use DDR use
/// DoH only (Windows 11, the browsers), and one that speaks both (Apple's) gains nothing from DoT.
const PRIORITY_DOH: u16 = 1;
/// DoT second: for clients that speak DoT only (the rare ones that use DDR with it).
const PRIORITY_DOT: u16 = 2;

/// SvcParamKeys (RFC 9460 14.3.2, RFC 9461 5).
mod key {
    pub(super) const ALPN: u16 = 1;
    pub(super) const PORT: u16 = 3;
    pub(super) const IPV4HINT: u16 = 4;
    pub(super) const IPV6HINT: u16 = 6;
    pub(super) const DOHPATH: u16 = 7;
}

/// What the certificate names: the default target name, and what verified discovery checks.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CertificateNames {
    /// DNS names of the leaf's subject alternative names, in order, lowercased.
    pub(crate) dns: Vec<String>,
    /// IP addresses of the leaf's subject alternative names.
    pub(crate) ips: Vec<IpAddr>,
}

/// How DDR answers a query that is its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The SVCB records.
    Records,
    /// NOERROR with no records and the SOA of `resolver.arpa`, which starts `apex_at` bytes into
    /// the question name.
    Nodata {
        /// Where `resolver.arpa` starts in the query name (dotted and wire offsets agree).
        apex_at: usize,
    },
}

/// The DDR answers of one snapshot, as wire bytes.
#[derive(Debug, Default)]
pub(crate) struct Ddr {
    /// The target name (lowercased, no trailing dot), when one is set or the certificate gives one.
    target: Option<String>,
    /// `_dns.` + target: the name of Discovery Using Resolver Names.
    resolver_name: Option<String>,
    /// The SVCB records, each owned by a pointer to the question name.
    records: Vec<u8>,
    /// How many records `records` holds; 0: DDR answers NODATA.
    count: u16,
    /// The SOA of `resolver.arpa` after its owner name: type, class, TTL, length, RDATA.
    soa: Vec<u8>,
    /// One line for `check`: what the records offer.
    summary: Option<String>,
}

/// One encrypted endpoint.
#[derive(Clone, Copy)]
struct Endpoint {
    priority: u16,
    alpn: &'static [&'static str],
    port: u16,
    doh_path: Option<&'static str>,
}

impl Ddr {
    /// The records for `config`, with the warnings about what keeps discovery from working
    /// (no target name, no addresses, a certificate that does not name the addresses clients use).
    pub(crate) fn build(config: &Config) -> (Ddr, Vec<Diagnostic>) {
        let server = &config.server;
        let mut warnings = Vec::new();
        let mut ddr = Ddr {
            soa: soa(),
            ..Ddr::default()
        };
        let listeners: Vec<&Spanned<SocketAddr>> = server.https.iter().chain(&server.tls).collect();
        let Some(first) = listeners.first() else {
            return (ddr, warnings);
        };
        let certificate = server
            .certificate
            .as_ref()
            .map(|path| read_certificate_names(&config.resolve(path.get_ref())));
        let names = certificate.as_ref().and_then(|c| c.as_ref().ok());
        let target = match &server.ddr_name {
            Some(name) => Some(lowercase_name(name.get_ref())),
            None => names.and_then(|n| n.dns.iter().find(|d| !d.starts_with('*')).cloned()),
        };
        let Some(target) = target else {
            let why = match &certificate {
                Some(Err(e)) => format!("the certificate could not be read ({e})"),
                Some(Ok(_)) => "the certificate names no DNS name".to_owned(),
                None => "no certificate is set".to_owned(),
            };
            warnings.push(config.origin.error(
                first.span(),
                format!(
                    "DDR has no resolver name: {why}; set server.ddr_name (until then _dns.resolver.arpa gets NODATA)"
                ),
            ));
            return (ddr, warnings);
        };
        if let (Some(name), Some(names)) = (&server.ddr_name, names)
            && !names.dns.iter().any(|d| name_matches(d, &target))
        {
            warnings.push(config.origin.error(
                name.span(),
                format!("server.ddr_name {target:?} is not among the certificate's DNS names: clients will reject the encrypted resolver"),
            ));
        }
        let addresses = match &server.ddr_addresses {
            Some(addresses) => addresses.get_ref().iter().map(|a| *a.get_ref()).collect(),
            None => {
                let mut addresses: Vec<IpAddr> = Vec::new();
                for listener in &listeners {
                    let ip = listener.get_ref().ip();
                    if ip.is_unspecified() {
                        warnings.push(config.origin.error(
                            listener.span(),
                            format!("{ip} is a wildcard: DDR cannot tell clients this resolver's addresses; set server.ddr_addresses"),
                        ));
                    } else if !addresses.contains(&ip) {
                        addresses.push(ip);
                    }
                }
                addresses
            }
        };
        if let Some(names) = names {
            let listen = server
                .listen
                .iter()
                .map(|l| (l.span(), l.get_ref().ip(), "server.listen"));
            let hints = server
                .ddr_addresses
                .iter()
                .flat_map(|a| a.get_ref())
                .map(|a| (a.span(), *a.get_ref(), "server.ddr_addresses"));
            for (span, ip, key) in listen.chain(hints) {
                if !ip.is_unspecified() && !names.ips.contains(&ip) {
                    warnings.push(config.origin.error(
                        span,
                        format!("{key}: the certificate does not name {ip} (no IP address SAN), so clients cannot verify DDR discovery through it (RFC 9462 4.2)"),
                    ));
                }
            }
        }
        let mut endpoints = Vec::new();
        for (listeners, endpoint) in [
            (
                &server.https,
                Endpoint {
                    priority: PRIORITY_DOH,
                    alpn: &["h2", "http/1.1"],
                    port: 0,
                    doh_path: Some(DOH_PATH),
                },
            ),
            (
                &server.tls,
                Endpoint {
                    priority: PRIORITY_DOT,
                    alpn: &["dot"],
                    port: 0,
                    doh_path: None,
                },
            ),
        ] {
            let mut ports: Vec<u16> = listeners.iter().map(|l| l.get_ref().port()).collect();
            ports.sort_unstable();
            ports.dedup();
            for port in ports {
                endpoints.push(Endpoint { port, ..endpoint });
            }
        }
        for endpoint in &endpoints {
            push_record(&mut ddr.records, &target, endpoint, &addresses);
            ddr.count += 1;
        }
        let offers: Vec<String> = endpoints
            .iter()
            .map(|e| format!("{} port {}", if e.doh_path.is_some() { "DoH" } else { "DoT" }, e.port))
            .collect();
        let hints: Vec<String> = addresses.iter().map(ToString::to_string).collect();
        ddr.summary = Some(format!(
            "ddr       {target}: {} (addresses {})",
            offers.join(", "),
            if hints.is_empty() {
                "none".to_owned()
            } else {
                hints.join(", ")
            }
        ));
        ddr.resolver_name = Some(format!("_dns.{target}"));
        ddr.target = Some(target);
        (ddr, warnings)
    }

    /// How DDR answers `query`, or None when the query is not DDR's (it goes on as any other).
    /// Allocates nothing.
    pub(crate) fn reply_for(&self, query: &Query) -> Option<Reply> {
        if query.qclass != CLASS_IN {
            return None;
        }
        let name = query.name.as_bytes();
        let in_zone = name == ZONE || name.strip_suffix(ZONE).is_some_and(|rest| rest.ends_with(b"."));
        if in_zone {
            return Some(if name == DISCOVERY_NAME && query.qtype == SVCB && self.count > 0 {
                Reply::Records
            } else {
                Reply::Nodata {
                    apex_at: name.len() - ZONE.len(),
                }
            });
        }
        let ours = self.resolver_name.as_ref().is_some_and(|n| n.as_bytes() == name);
        (ours && query.qtype == SVCB && self.count > 0).then_some(Reply::Records)
    }

    /// Writes `reply` to `query` (read from `packet`) into `out`, cleared first.
    pub(crate) fn write(&self, packet: &[u8], query: &Query, reply: Reply, out: &mut Vec<u8>) {
        match reply {
            Reply::Records => answer::write_local(packet, query, (self.count, &self.records), None, out),
            Reply::Nodata { apex_at } => {
                // The dotted name and the wire name line up unless a label holds a dot itself
                // (`\.`): then the SOA is owned by the whole name rather than by a pointer into a label.
                let at_label = packet.get(crate::wire::HEADER_LEN + apex_at) == Some(&(b"resolver".len() as u8));
                let apex_at = if at_label { apex_at } else { 0 };
                answer::write_local(packet, query, (0, &[]), Some((apex_at, &self.soa)), out);
            }
        }
    }

    /// The `check` line: the target name, the endpoints and the address hints; None when DDR
    /// offers nothing.
    pub(crate) fn summary(&self) -> Option<&str> {
        self.summary.as_deref()
    }
}

/// Appends one SVCB record for `endpoint`, owned by a pointer to the question name.
fn push_record(out: &mut Vec<u8>, target: &str, endpoint: &Endpoint, addresses: &[IpAddr]) {
    push_u16(out, 0xc000 | crate::wire::HEADER_LEN as u16);
    push_u16(out, SVCB);
    push_u16(out, CLASS_IN);
    out.extend_from_slice(&TTL.to_be_bytes());
    let mut rdata = Vec::with_capacity(128);
    push_u16(&mut rdata, endpoint.priority);
    push_name(&mut rdata, target);
    // SvcParams in ascending key order (RFC 9460 2.2).
    let mut alpn = Vec::new();
    for id in endpoint.alpn {
        alpn.push(id.len() as u8);
        alpn.extend_from_slice(id.as_bytes());
    }
    push_param(&mut rdata, key::ALPN, &alpn);
    push_param(&mut rdata, key::PORT, &endpoint.port.to_be_bytes());
    let v4: Vec<u8> = addresses
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(v4) => Some(v4.octets()),
            IpAddr::V6(_) => None,
        })
        .flatten()
        .collect();
    if !v4.is_empty() {
        push_param(&mut rdata, key::IPV4HINT, &v4);
    }
    let v6: Vec<u8> = addresses
        .iter()
        .filter_map(|a| match a {
            IpAddr::V6(v6) => Some(v6.octets()),
            IpAddr::V4(_) => None,
        })
        .flatten()
        .collect();
    if !v6.is_empty() {
        push_param(&mut rdata, key::IPV6HINT, &v6);
    }
    if let Some(path) = endpoint.doh_path {
        push_param(&mut rdata, key::DOHPATH, path.as_bytes());
    }
    push_u16(out, rdata.len() as u16);
    out.extend_from_slice(&rdata);
}

fn push_param(out: &mut Vec<u8>, key: u16, value: &[u8]) {
    push_u16(out, key);
    push_u16(out, value.len() as u16);
    out.extend_from_slice(value);
}

/// The SOA of `resolver.arpa` after its owner name, as RFC 6303 3 has locally served zones write
/// it (the zone as MNAME, `nobody.invalid` as RNAME); the minimum is the negative TTL.
fn soa() -> Vec<u8> {
    let mut rdata = Vec::with_capacity(48);
    push_name(&mut rdata, "resolver.arpa");
    push_name(&mut rdata, "nobody.invalid");
    for value in [1, 3600, 1200, 604_800, TTL] {
        rdata.extend_from_slice(&u32::to_be_bytes(value));
    }
    let mut soa = Vec::with_capacity(10 + rdata.len());
    push_u16(&mut soa, crate::wire::rtype::SOA);
    push_u16(&mut soa, CLASS_IN);
    soa.extend_from_slice(&TTL.to_be_bytes());
    push_u16(&mut soa, rdata.len() as u16);
    soa.extend_from_slice(&rdata);
    soa
}

fn lowercase_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// Whether a certificate's DNS name (`*.example.net` covers one label) covers `name`.
fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == name,
    }
}

/// The subject alternative names of the first certificate of the PEM file at `path`.
pub(crate) fn read_certificate_names(path: &Path) -> Result<CertificateNames, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    certificate_names(&pem).map_err(|e| format!("{}: {e}", path.display()))
}

/// The subject alternative names of the first certificate in `pem`.
fn certificate_names(pem: &[u8]) -> Result<CertificateNames, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| format!("no PEM certificate ({e})"))?;
    let certificate = pem
        .parse_x509()
        .map_err(|e| format!("not an X.509 certificate ({e})"))?;
    let mut names = CertificateNames::default();
    let san = certificate
        .subject_alternative_name()
        .map_err(|e| format!("bad subject alternative names ({e})"))?;
    for name in san.iter().flat_map(|san| &san.value.general_names) {
        match name {
            GeneralName::DNSName(dns) => names.dns.push(lowercase_name(dns)),
            GeneralName::IPAddress(bytes) => {
                if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                    names.ips.push(IpAddr::from(v4));
                } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                    names.ips.push(IpAddr::from(v6));
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use hickory_proto::op::{Message, ResponseCode};
    use hickory_proto::rr::RData;
    use hickory_proto::rr::rdata::svcb::{SVCB as Svcb, SvcParamKey, SvcParamValue};

    use super::*;
    use crate::config::Origin;
    use crate::packet::parse;
    use crate::wire::rtype;

    /// A directory of its own for one test's certificate.
    fn temp_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sinkhole-ddr-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    /// Writes `cert.pem` (and `key.pem`) naming `names` into `dir`.
    fn certificate(dir: &Path, names: &[&str]) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let pair = rcgen::generate_simple_self_signed(names).expect("rcgen makes a certificate");
        std::fs::write(dir.join("cert.pem"), pair.cert.pem()).expect("write cert");
        std::fs::write(dir.join("key.pem"), pair.signing_key.serialize_pem()).expect("write key");
    }

    fn config(dir: &Path, server: &str) -> Config {
        let text = format!("[server]\n{server}\n");
        Config::parse(Origin {
            name: "test.toml".into(),
            dir: dir.to_path_buf(),
            text,
        })
        .expect("config loads")
    }

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut packet = Vec::new();
        crate::packet::encode_query(name, qtype, true, &mut packet).expect("query encodes");
        packet
    }

    /// The answer DDR gives `name`/`qtype`, decoded; None when the query is not DDR's.
    fn ask(ddr: &Ddr, name: &str, qtype: u16) -> Option<Message> {
        let packet = query(name, qtype);
        let q = parse(&packet).expect("query parses");
        let reply = ddr.reply_for(&q)?;
        let mut out = Vec::new();
        ddr.write(&packet, &q, reply, &mut out);
        Some(Message::from_vec(&out).expect("DDR answer decodes"))
    }

    fn svcb(message: &Message) -> Vec<&Svcb> {
        message
            .answers
            .iter()
            .map(|r| match &r.data {
                RData::SVCB(svcb) => svcb,
                other => panic!("expected SVCB, got {other:?}"),
            })
            .collect()
    }

    fn param(record: &Svcb, key: SvcParamKey) -> Option<&SvcParamValue> {
        record.svc_params.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    const BOTH: &str = r#"
tls = ["192.0.2.53:853"]
https = ["192.0.2.53:443", "[2001:db8::53]:443"]
certificate = "cert.pem"
key = "key.pem"
"#;

    #[test]
    fn records_offer_doh_then_dot_with_hints_and_path() {
        let dir = temp_dir("records");
        certificate(&dir, &["dns.example.net", "192.0.2.53", "2001:db8::53"]);
        let (ddr, warnings) = Ddr::build(&config(&dir, BOTH));
        let message = ask(&ddr, "_dns.resolver.arpa", SVCB).expect("DDR answers");
        assert_eq!(message.metadata.response_code, ResponseCode::NoError);
        assert_eq!(message.answers[0].name.to_ascii(), "_dns.resolver.arpa.");
        assert_eq!(message.answers[0].ttl, TTL);
        let records = svcb(&message);
        assert_eq!(records.len(), 2);
        let (doh, dot) = (records[0], records[1]);
        assert_eq!((doh.svc_priority, dot.svc_priority), (1, 2));
        assert_eq!(doh.target_name.to_ascii(), "dns.example.net.");
        assert_eq!(dot.target_name.to_ascii(), "dns.example.net.");
        match param(doh, SvcParamKey::Alpn) {
            Some(SvcParamValue::Alpn(alpn)) => assert_eq!(alpn.0, ["h2", "http/1.1"]),
            other => panic!("DoH alpn: {other:?}"),
        }
        match param(dot, SvcParamKey::Alpn) {
            Some(SvcParamValue::Alpn(alpn)) => assert_eq!(alpn.0, ["dot"]),
            other => panic!("DoT alpn: {other:?}"),
        }
        assert!(matches!(param(doh, SvcParamKey::Port), Some(SvcParamValue::Port(443))));
        assert!(matches!(param(dot, SvcParamKey::Port), Some(SvcParamValue::Port(853))));
        match param(doh, SvcParamKey::Ipv4Hint) {
            Some(SvcParamValue::Ipv4Hint(hint)) => {
                assert_eq!(hint.0, ["192.0.2.53".parse::<std::net::Ipv4Addr>().expect("v4").into()]);
            }
            other => panic!("ipv4hint: {other:?}"),
        }
        match param(doh, SvcParamKey::Ipv6Hint) {
            Some(SvcParamValue::Ipv6Hint(hint)) => assert_eq!(hint.0.len(), 1),
            other => panic!("ipv6hint: {other:?}"),
        }
        match param(doh, SvcParamKey::Unknown(key::DOHPATH)) {
            Some(SvcParamValue::Unknown(path)) => assert_eq!(path.0, DOH_PATH.as_bytes()),
            other => panic!("dohpath: {other:?}"),
        }
        assert!(param(dot, SvcParamKey::Unknown(key::DOHPATH)).is_none());
        // The default listen (127.0.0.1:5353) is not in the certificate: verified discovery warns.
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].message.contains("does not name 127.0.0.1"), "{warnings:?}");
        assert_eq!(
            ddr.summary(),
            Some("ddr       dns.example.net: DoH port 443, DoT port 853 (addresses 192.0.2.53, 2001:db8::53)")
        );
    }

    #[test]
    fn zone_names_get_nodata_with_soa_and_other_names_pass() {
        let dir = temp_dir("zone");
        certificate(&dir, &["dns.example.net"]);
        let (ddr, _) = Ddr::build(&config(&dir, BOTH));
        for (name, qtype) in [
            ("_dns.resolver.arpa", rtype::A),
            ("_DNS.Resolver.ARPA", rtype::TXT),
            ("resolver.arpa", SVCB),
            ("foo._dns.resolver.arpa", SVCB),
            ("x.resolver.arpa", rtype::AAAA),
        ] {
            let message = ask(&ddr, name, qtype).unwrap_or_else(|| panic!("{name} is DDR's"));
            assert_eq!(message.metadata.response_code, ResponseCode::NoError, "{name}");
            assert!(message.answers.is_empty(), "{name}");
            let soa = &message.authorities[0];
            assert_eq!(soa.name.to_ascii().to_ascii_lowercase(), "resolver.arpa.", "{name}");
            match &soa.data {
                RData::SOA(s) => assert_eq!(s.minimum, TTL),
                other => panic!("expected SOA, got {other:?}"),
            }
        }
        for name in ["notresolver.arpa", "arpa", "example.net", "resolver.arpa.example.net"] {
            assert!(ask(&ddr, name, SVCB).is_none(), "{name} is not DDR's");
        }
        let named = ask(&ddr, "_dns.dns.example.net", SVCB).expect("Discovery Using Resolver Names");
        assert_eq!(svcb(&named).len(), 2);
        assert_eq!(named.answers[0].name.to_ascii(), "_dns.dns.example.net.");
        assert!(ask(&ddr, "_dns.dns.example.net", rtype::A).is_none());
    }

    #[test]
    fn without_encrypted_listeners_discovery_is_nodata() {
        let dir = temp_dir("none");
        let (ddr, warnings) = Ddr::build(&config(&dir, "ddr_name = \"dns.example.net\""));
        assert!(warnings.is_empty(), "{warnings:?}");
        assert!(ddr.summary().is_none());
        let message = ask(&ddr, "_dns.resolver.arpa", SVCB).expect("the zone is still DDR's");
        assert!(message.answers.is_empty());
        assert_eq!(message.authorities.len(), 1);
        assert!(
            ask(&ddr, "_dns.dns.example.net", SVCB).is_none(),
            "forwarded as any name"
        );
    }

    #[test]
    fn name_defaults_to_the_certificate_and_warns_without_one() {
        let dir = temp_dir("default");
        certificate(&dir, &["127.0.0.1", "Resolver.Example.Org"]);
        let (ddr, warnings) = Ddr::build(&config(
            &dir,
            "tls = [\"0.0.0.0:853\"]\ncertificate = \"cert.pem\"\nkey = \"key.pem\"",
        ));
        assert_eq!(ddr.target.as_deref(), Some("resolver.example.org"));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].message.contains("set server.ddr_addresses"), "{warnings:?}");
        assert!(warnings[0].location.starts_with("test.toml:2:"), "{warnings:?}");

        certificate(&dir, &["127.0.0.1"]);
        let (ddr, warnings) = Ddr::build(&config(
            &dir,
            "tls = [\"127.0.0.1:853\"]\ncertificate = \"cert.pem\"\nkey = \"key.pem\"",
        ));
        assert_eq!(ddr.count, 0);
        assert!(warnings[0].message.contains("set server.ddr_name"), "{warnings:?}");
        assert!(svcb(&ask(&ddr, "_dns.resolver.arpa", SVCB).expect("NODATA")).is_empty());

        let (_, warnings) = Ddr::build(&config(
            &dir,
            "tls = [\"127.0.0.1:853\"]\ncertificate = \"cert.pem\"\nkey = \"key.pem\"\nddr_name = \"other.example\"\nddr_addresses = [\"192.0.2.1\"]",
        ));
        let messages: Vec<&str> = warnings.iter().map(|w| w.message.as_str()).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages[0].contains("not among the certificate's DNS names"),
            "{messages:?}"
        );
        assert!(messages[1].contains("server.ddr_addresses: the certificate does not name 192.0.2.1"));
    }

    #[test]
    fn certificate_names_read_dns_and_ip_sans() {
        let dir = temp_dir("sans");
        certificate(&dir, &["a.example", "*.b.example", "10.0.0.53", "fd00::53"]);
        let names = read_certificate_names(&dir.join("cert.pem")).expect("certificate reads");
        assert_eq!(names.dns, ["a.example", "*.b.example"]);
        assert_eq!(names.ips.len(), 2);
        assert!(read_certificate_names(&dir.join("key.pem")).is_err());
        assert!(read_certificate_names(&dir.join("missing.pem")).is_err());
        assert!(name_matches("*.b.example", "dns.b.example"));
        assert!(!name_matches("*.b.example", "b.example"));
    }

    #[test]
    fn config_errors_point_at_the_ddr_keys() {
        let dir = temp_dir("errors");
        let bad = match Config::parse(Origin {
            name: "test.toml".into(),
            dir,
            text: "[server]\nddr_name = \"bad_name.example\"\nddr_addresses = [\"192.0.2.1\", \"0.0.0.0\"]\n".into(),
        }) {
            Ok(_) => panic!("config should not load"),
            Err(e) => e.to_string(),
        };
        assert!(bad.contains("test.toml:2:12: server.ddr_name"), "{bad}");
        assert!(bad.contains("test.toml:3:31: server.ddr_addresses: 0.0.0.0"), "{bad}");
    }
}
