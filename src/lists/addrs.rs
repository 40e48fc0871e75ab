//! Address ranges of a list (`ip = [...]`, RPZ `rpz-ip` triggers): does an answer's A/AAAA address fall in one?
//!
//! Owns the ranges of one list and the reading of a range as an operator writes it. The lookup is the one clients
//! get (`prefixes::PrefixRanges`: the ranges flattened once, at build, so that a lookup is one binary search with
//! no allocation). A list without ranges holds nothing, and the packet path asks nothing of it
//! (see `AddrSet::is_empty`).

use std::net::IpAddr;

use ipnet::IpNet;

use super::RuleId;
use crate::prefixes::{PrefixRanges, PrefixTable};

/// Reads a range as the operator writes it: a prefix (`203.0.113.0/24`, `2001:db8::/32`; host bits are cleared) or
/// one address (`198.51.100.7`, taken as /32 or /128). The message says what is wrong, for `check`.
pub(crate) fn parse_range(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    let Some((addr, len)) = text.split_once('/') else {
        return text.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
            format!("{text:?} is not an address or a range like \"203.0.113.0/24\" or \"2001:db8::/32\"")
        });
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("{text}: {addr:?} is not an IPv4 or IPv6 address"))?;
    let len: u8 = len
        .parse()
        .map_err(|_| format!("{text}: prefix length {len:?} is not a number"))?;
    IpNet::new(ip, len).map(|net| net.trunc()).map_err(|_| {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        format!("{text}: prefix length {len} is longer than {max}")
    })
}

/// Collects ranges with the rule id each reports, then [`build`](Self::build)s the [`AddrSet`].
#[derive(Default)]
pub(super) struct AddrSetBuilder {
    table: PrefixTable<RuleId>,
    /// Distinct ranges inserted.
    count: usize,
}

impl AddrSetBuilder {
    /// Adds a range (host bits cleared) as `rule`; if the same range is there already, nothing changes and its
    /// rule is returned.
    pub(super) fn insert(&mut self, net: IpNet, rule: RuleId) -> Result<(), RuleId> {
        if let Some(&existing) = self.table.get(net) {
            return Err(existing);
        }
        self.table.insert_new(net, rule);
        self.count += 1;
        Ok(())
    }

    pub(super) fn build(self) -> AddrSet {
        AddrSet {
            ranges: (self.count > 0).then(|| PrefixRanges::build(&self.table)),
            count: self.count,
        }
    }
}

/// A list's address ranges, flattened for the packet path (the lookup clients get: `PrefixRanges`). Immutable
/// once built.
#[derive(Default)]
pub(crate) struct AddrSet {
    /// None for a list without ranges: nothing is held and nothing is looked up.
    ranges: Option<PrefixRanges<RuleId>>,
    /// How many distinct ranges it was built from (for reports).
    count: usize,
}

impl std::fmt::Debug for AddrSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddrSet").field("ranges", &self.count).finish()
    }
}

impl AddrSet {
    /// The rule of the most specific range holding `ip` (IPv4-mapped IPv6 as IPv4), if any. No allocation.
    pub(crate) fn lookup(&self, ip: IpAddr) -> Option<RuleId> {
        self.ranges.as_ref()?.get(ip)
    }

    /// Whether there is no range at all: the packet path then never reads an answer's addresses for this list.
    pub(crate) fn is_empty(&self) -> bool {
        self.ranges.is_none()
    }

    /// How many distinct ranges it holds.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Heap memory held, in bytes.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.ranges.as_ref().map_or(0, PrefixRanges::heap_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn ranges_are_read_as_operators_write_them() {
        assert_eq!(
            parse_range("203.0.113.0/24"),
            Ok("203.0.113.0/24".parse().expect("net"))
        );
        assert_eq!(
            parse_range("203.0.113.9/24"),
            Ok("203.0.113.0/24".parse().expect("net"))
        );
        assert_eq!(parse_range("198.51.100.7"), Ok("198.51.100.7/32".parse().expect("net")));
        assert_eq!(parse_range("2001:db8::/32"), Ok("2001:db8::/32".parse().expect("net")));
        assert_eq!(parse_range("2001:db8::1"), Ok("2001:db8::1/128".parse().expect("net")));
        for bad in [
            "example.com",
            "10.0.0.0/33",
            "10.0.0.0/x",
            "300.1.1.1",
            "::/129",
            "",
            "1.2.3.4/",
        ] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
        assert!(parse_range("10.0.0.0/33").unwrap_err().contains("longer than 32"));
    }

    #[test]
    fn the_most_specific_range_holding_an_address_answers() {
        let mut b = AddrSetBuilder::default();
        let nets = [
            ("203.0.113.0/24", 0),
            ("203.0.113.128/25", 1),
            ("198.51.100.7/32", 2),
            ("2001:db8::/32", 3),
            ("0.0.0.0/0", 4),
        ];
        for (net, id) in &nets[..4] {
            assert_eq!(b.insert(net.parse().expect("net"), RuleId(*id)), Ok(()));
        }
        assert_eq!(
            b.insert("203.0.113.5/24".parse().expect("net"), RuleId(9)),
            Err(RuleId(0)),
            "same range"
        );
        let set = b.build();
        assert!(!set.is_empty());
        let cases = [
            ("203.0.112.255", None),
            ("203.0.113.0", Some(0)),
            ("203.0.113.127", Some(0)),
            ("203.0.113.128", Some(1)),
            ("203.0.113.255", Some(1)),
            ("203.0.114.0", None),
            ("198.51.100.6", None),
            ("198.51.100.7", Some(2)),
            ("198.51.100.8", None),
            ("::ffff:198.51.100.7", Some(2)),
            ("2001:db8:ffff::1", Some(3)),
            ("2001:db9::", None),
            ("::", None),
            ("255.255.255.255", None),
        ];
        for (addr, want) in cases {
            assert_eq!(set.lookup(ip(addr)), want.map(RuleId), "{addr}");
        }
        // The whole space, and an empty set.
        let mut all = AddrSetBuilder::default();
        assert_eq!(all.insert(nets[4].0.parse().expect("net"), RuleId(4)), Ok(()));
        let all = all.build();
        assert_eq!(all.lookup(ip("255.255.255.255")), Some(RuleId(4)));
        assert_eq!(all.lookup(ip("::1")), None);
        let empty = AddrSetBuilder::default().build();
        assert!(empty.is_empty());
        assert_eq!(empty.lookup(ip("10.0.0.1")), None);
        assert_eq!(empty.heap_bytes(), 0);
    }
}
