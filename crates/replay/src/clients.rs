//! Where each replayed query comes from: capture client addresses mapped onto addresses this host
//! can send from on loopback, keeping the prefix structure so that policies written for the
//! mapped subnets still apply.
//!
//! The rules (`--map FROM=TO`, tried in the order given; the first whose FROM holds the client
//! wins): the client's host bits below FROM's prefix are kept, as many as fit below TO's prefix,
//! on TO's network. So `10.0.0.0/8=127.0.0.0/8` sends 10.1.2.3's queries from 127.1.2.3, and
//! `192.168.0.0/16=127.10.0.0/16` sends 192.168.7.9's from 127.10.7.9. Without a matching rule:
//! - against an IPv4 server, IPv4 a.b.c.d → 127.b.c.d: everything below the /8 is kept, so a
//!   policy for 127.10.0.0/16 applies to the capture's x.10.0.0/16 clients;
//! - IPv6 clients → 127.255.x.y, x.y the 64-bit FNV-1a hash of the whole address folded (xor) to 16 bits:
//!   stable from run to run, one address per client, but unrelated to its prefix (loopback has
//!   no IPv6 subnets to map onto) and shared by about one client in 65536;
//! - against an IPv6 server, everything → ::1, the only IPv6 loopback address.
//!
//! 127.b.c.0 style edge cases: the two broadcast-like ends of 127.0.0.0/8 (127.0.0.0 and
//! 127.255.255.255) cannot be a source, so they become 127.0.0.1 and 127.255.255.254.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// A `--map` argument that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--map {text:?}: {why}")]
pub struct MapError {
    /// The argument as given.
    text: String,
    /// What is wrong with it, for the operator.
    why: &'static str,
}

/// One `--map FROM=TO` rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapRule {
    /// The capture's client prefix this rule applies to.
    pub from: IpNet,
    /// The prefix its clients are sent from; must be loopback unless remote sending is allowed.
    pub to: IpNet,
}

impl FromStr for MapRule {
    type Err = MapError;

    fn from_str(text: &str) -> Result<MapRule, MapError> {
        let fail = |why| MapError {
            text: text.to_string(),
            why,
        };
        let (from, to) = text
            .split_once('=')
            .ok_or_else(|| fail("expected PREFIX=PREFIX, e.g. 10.0.0.0/8=127.0.0.0/8"))?;
        let from = parse_prefix(from.trim()).ok_or_else(|| fail("the left side is not an IP prefix"))?;
        let to = parse_prefix(to.trim()).ok_or_else(|| fail("the right side is not an IP prefix"))?;
        Ok(MapRule {
            from: from.trunc(),
            to: to.trunc(),
        })
    }
}

/// A prefix, or a bare address as a /32 or /128.
fn parse_prefix(text: &str) -> Option<IpNet> {
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

/// How capture clients become source addresses: the `--map` rules, then the defaults for the
/// server's address family (see the module docs).
#[derive(Clone, Debug)]
pub struct ClientMap {
    /// The rules, in the order given.
    rules: Vec<MapRule>,
    /// Whether the server is IPv6, which decides the family every source must have.
    server_v6: bool,
}

impl ClientMap {
    /// A map with `rules` for a server of the given family. Every rule must map onto the server's
    /// family, and (unless `allow_remote`) onto loopback: other addresses are not this host's.
    pub fn new(rules: Vec<MapRule>, server_v6: bool, allow_remote: bool) -> Result<ClientMap, MapError> {
        for rule in &rules {
            let fail = |why| MapError {
                text: format!("{}={}", rule.from, rule.to),
                why,
            };
            if matches!(rule.to, IpNet::V6(_)) != server_v6 {
                return Err(fail("the right side must be of the server's address family"));
            }
            let loopback = match rule.to {
                IpNet::V4(net) => Ipv4Net127::contains(net),
                IpNet::V6(net) => net.prefix_len() == 128 && net.addr() == Ipv6Addr::LOCALHOST,
            };
            if !loopback && !allow_remote {
                return Err(fail(
                    "the right side must be inside 127.0.0.0/8 (or ::1/128): queries can only leave from \
                     this host's own addresses (--allow-remote lifts this)",
                ));
            }
        }
        Ok(ClientMap { rules, server_v6 })
    }

    /// The address to send `client`'s queries from.
    pub fn map(&self, client: IpAddr) -> IpAddr {
        let client = client.to_canonical();
        if let Some(rule) = self.rules.iter().find(|rule| rule.from.contains(&client)) {
            return apply(rule, client);
        }
        if self.server_v6 {
            return IpAddr::V6(Ipv6Addr::LOCALHOST);
        }
        let mapped = match client {
            IpAddr::V4(v4) => {
                let [_, b, c, d] = v4.octets();
                Ipv4Addr::new(127, b, c, d)
            }
            IpAddr::V6(v6) => {
                let hash = fnv1a(&v6.octets());
                let folded = hash ^ (hash >> 32);
                let [.., x, y] = ((folded ^ (folded >> 16)) as u16).to_be_bytes();
                Ipv4Addr::new(127, 255, x, y)
            }
        };
        usable_v4(mapped)
    }
}

/// 127.0.0.0/8 membership for a v4 prefix.
struct Ipv4Net127;

impl Ipv4Net127 {
    fn contains(net: ipnet::Ipv4Net) -> bool {
        net.prefix_len() >= 8 && net.addr().octets()[0] == 127
    }
}

/// Applies one rule: TO's network bits, then the client's host bits below FROM's prefix, as
/// many as TO has room for.
fn apply(rule: &MapRule, client: IpAddr) -> IpAddr {
    let host = host_bits(client, rule.from.prefix_len());
    match rule.to {
        IpNet::V4(to) => {
            let room = 32 - u32::from(to.prefix_len());
            let mask = if room == 0 { 0 } else { u32::MAX >> (32 - room) };
            let bits = u32::from(to.network()) | (host as u32 & mask);
            usable_v4(Ipv4Addr::from(bits))
        }
        IpNet::V6(to) => {
            let room = 128 - u32::from(to.prefix_len());
            let mask = if room == 0 { 0 } else { u128::MAX >> (128 - room) };
            IpAddr::V6(Ipv6Addr::from(u128::from(to.network()) | (host & mask)))
        }
    }
}

/// The bits of `addr` below a prefix of `prefix_len`, as an integer.
fn host_bits(addr: IpAddr, prefix_len: u8) -> u128 {
    match addr {
        IpAddr::V4(v4) => {
            let room = 32u32.saturating_sub(u32::from(prefix_len));
            let mask = if room == 0 { 0 } else { u32::MAX >> (32 - room) };
            u128::from(u32::from(v4) & mask)
        }
        IpAddr::V6(v6) => {
            let room = 128u32.saturating_sub(u32::from(prefix_len));
            let mask = if room == 0 { 0 } else { u128::MAX >> (128 - room) };
            u128::from(v6) & mask
        }
    }
}

/// Keeps a mapped IPv4 address off the two ends of 127.0.0.0/8, which Linux treats as broadcast
/// addresses and refuses as a source.
fn usable_v4(addr: Ipv4Addr) -> IpAddr {
    IpAddr::V4(match addr.octets() {
        [127, 0, 0, 0] => Ipv4Addr::new(127, 0, 0, 1),
        [127, 255, 255, 255] => Ipv4Addr::new(127, 255, 255, 254),
        _ => addr,
    })
}

/// FNV-1a, 64 bits: a stable hash (std's hasher may change between releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("literal address")
    }

    fn map(rules: &[&str], server_v6: bool) -> ClientMap {
        let rules = rules.iter().map(|r| r.parse().expect("valid rule")).collect();
        ClientMap::new(rules, server_v6, false).expect("valid map")
    }

    #[test]
    fn default_keeps_everything_below_the_slash_8() {
        let m = map(&[], false);
        assert_eq!(m.map(ip("10.10.0.5")), ip("127.10.0.5"));
        assert_eq!(m.map(ip("192.168.1.20")), ip("127.168.1.20"));
        assert_eq!(m.map(ip("::ffff:10.1.2.3")), ip("127.1.2.3"), "v4-mapped v6 is v4");
        assert_eq!(m.map(ip("10.0.0.0")), ip("127.0.0.1"), "never the network address");
        assert_eq!(
            m.map(ip("10.255.255.255")),
            ip("127.255.255.254"),
            "never the broadcast"
        );
    }

    #[test]
    fn default_hashes_ipv6_clients_stably_into_127_255() {
        let m = map(&[], false);
        let a = m.map(ip("2001:db8::1"));
        let b = m.map(ip("2001:db8::2"));
        assert_eq!(a, m.map(ip("2001:db8::1")), "stable");
        assert_ne!(a, b, "distinct clients stay distinct (for these two)");
        for addr in [a, b] {
            let IpAddr::V4(v4) = addr else {
                panic!("{addr} is not IPv4")
            };
            assert_eq!(v4.octets()[..2], [127, 255]);
        }
    }

    #[test]
    fn fnv1a_is_the_published_function() {
        // Reference values of FNV-1a 64: the mapping must not change silently between releases.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn rules_keep_host_bits_and_apply_in_order() {
        let m = map(
            &[
                "192.168.7.0/24=127.99.0.0/16",
                "192.168.0.0/16=127.10.0.0/16",
                "10.0.0.0/8=127.0.0.0/8",
            ],
            false,
        );
        assert_eq!(m.map(ip("192.168.7.9")), ip("127.99.0.9"));
        assert_eq!(m.map(ip("192.168.1.9")), ip("127.10.1.9"));
        assert_eq!(m.map(ip("10.20.30.40")), ip("127.20.30.40"));
        assert_eq!(m.map(ip("172.16.0.1")), ip("127.16.0.1"), "no rule: default");
        // A narrower target keeps only the low bits that fit.
        let m = map(&["10.0.0.0/8=127.10.0.0/24"], false);
        assert_eq!(m.map(ip("10.1.2.3")), ip("127.10.0.3"));
        // A single address target takes every client of the prefix.
        let m = map(&["0.0.0.0/0=127.10.0.5", "::/0=127.10.0.6"], false);
        assert_eq!(m.map(ip("8.8.8.8")), ip("127.10.0.5"));
        assert_eq!(m.map(ip("2001:db8::1")), ip("127.10.0.6"));
    }

    #[test]
    fn ipv6_server_sends_from_loopback_v6() {
        let m = map(&[], true);
        assert_eq!(m.map(ip("10.1.2.3")), ip("::1"));
        assert_eq!(m.map(ip("2001:db8::1")), ip("::1"));
    }

    #[test]
    fn refuses_bad_rules() {
        for bad in ["10.0.0.0/8", "10.0.0.0/8=", "x=127.0.0.0/8", "10.0.0.0/8=127.0.0.0/33"] {
            assert!(bad.parse::<MapRule>().is_err(), "{bad} parses");
        }
        let remote: MapRule = "10.0.0.0/8=192.168.0.0/16".parse().expect("syntax ok");
        let err = ClientMap::new(vec![remote], false, false).expect_err("not loopback");
        assert!(err.to_string().contains("127.0.0.0/8"), "{err}");
        assert!(
            ClientMap::new(vec![remote], false, true).is_ok(),
            "--allow-remote lifts it"
        );
        let wide: MapRule = "10.0.0.0/8=0.0.0.0/0".parse().expect("syntax ok");
        assert!(ClientMap::new(vec![wide], false, false).is_err(), "wider than loopback");
        let v6: MapRule = "10.0.0.0/8=::1/128".parse().expect("syntax ok");
        assert!(ClientMap::new(vec![v6], false, false).is_err(), "family of the server");
        assert!(ClientMap::new(vec![v6], true, false).is_ok());
    }
}
