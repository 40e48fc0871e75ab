//! Address ranges of a list (`ip = [...]`, RPZ `rpz-ip` triggers): does an answer's A/AAAA address fall in one?
//!
//! Owns the range store and its lookup, and the reading of a range as an operator writes it. The ranges are
//! flattened once, at build, into each family's address space cut into pieces over which the most specific range
//! is the same, by start address: a lookup is one binary search over a flat array with no allocation, the shape of
//! `policy::PrefixRanges`, which measured 17-25 ns against up to 120 ns for walking a trie node by node (IPv6).
//! A list without ranges holds two empty arrays, and the packet path asks nothing of it (see `AddrSet::is_empty`).

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use super::RuleId;

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

/// One family's flattened ranges: `rules[i]` holds from `starts[i]` up to the next start (None: no range there).
#[derive(Debug)]
struct Flat<K> {
    starts: Box<[K]>,
    rules: Box<[Option<RuleId>]>,
}

impl<K> Default for Flat<K> {
    fn default() -> Self {
        Flat {
            starts: Box::new([]),
            rules: Box::new([]),
        }
    }
}

impl<K: Copy + Ord> Flat<K> {
    fn get(&self, key: K) -> Option<RuleId> {
        let i = self.starts.partition_point(|&start| start <= key);
        i.checked_sub(1).and_then(|i| self.rules.get(i).copied().flatten())
    }

    /// Cuts the space at every range's first address and the one after its last (`end` None: the top of the space),
    /// the value of each piece being the most specific range holding its first address (`lpm`).
    fn build(spans: impl Iterator<Item = (K, Option<K>)>, zero: K, lpm: impl Fn(K) -> Option<RuleId>) -> Flat<K> {
        let mut cuts = vec![zero];
        for (start, end) in spans {
            cuts.push(start);
            cuts.extend(end);
        }
        cuts.sort_unstable();
        cuts.dedup();
        let (mut starts, mut rules) = (Vec::new(), Vec::new());
        for cut in cuts {
            let rule = lpm(cut);
            if rules.last() != Some(&rule) {
                starts.push(cut);
                rules.push(rule);
            }
        }
        if rules.len() == 1 && rules[0].is_none() {
            return Flat::default();
        }
        Flat {
            starts: starts.into_boxed_slice(),
            rules: rules.into_boxed_slice(),
        }
    }

    fn heap_bytes(&self) -> usize {
        self.starts.len() * std::mem::size_of::<K>() + self.rules.len() * std::mem::size_of::<Option<RuleId>>()
    }
}

/// Collects ranges with the rule id each reports, then [`build`](Self::build)s the [`AddrSet`].
#[derive(Default)]
pub(super) struct AddrSetBuilder {
    v4: PrefixMap<Ipv4Net, RuleId>,
    v6: PrefixMap<Ipv6Net, RuleId>,
    /// Distinct ranges inserted.
    count: usize,
}

impl AddrSetBuilder {
    /// Adds a range (host bits cleared) as `rule`; if the same range is there already, nothing changes and its
    /// rule is returned.
    pub(super) fn insert(&mut self, net: IpNet, rule: RuleId) -> Result<(), RuleId> {
        match net.trunc() {
            IpNet::V4(n) => match self.v4.get(&n) {
                Some(&existing) => return Err(existing),
                None => {
                    self.v4.insert(n, rule);
                }
            },
            IpNet::V6(n) => match self.v6.get(&n) {
                Some(&existing) => return Err(existing),
                None => {
                    self.v6.insert(n, rule);
                }
            },
        }
        self.count += 1;
        Ok(())
    }

    pub(super) fn build(self) -> AddrSet {
        let v4 = Flat::build(
            self.v4.iter().map(|(net, _)| {
                let end = u32::from(net.broadcast()).checked_add(1);
                (u32::from(net.network()), end)
            }),
            0,
            |addr| {
                self.v4
                    .get_lpm(&Ipv4Net::from(std::net::Ipv4Addr::from(addr)))
                    .map(|(_, r)| *r)
            },
        );
        let v6 = Flat::build(
            self.v6.iter().map(|(net, _)| {
                let end = u128::from(net.broadcast()).checked_add(1);
                (u128::from(net.network()), end)
            }),
            0,
            |addr| {
                self.v6
                    .get_lpm(&Ipv6Net::from(std::net::Ipv6Addr::from(addr)))
                    .map(|(_, r)| *r)
            },
        );
        AddrSet {
            v4,
            v6,
            count: self.count,
        }
    }
}

/// A list's address ranges, flattened for the packet path. Immutable once built.
#[derive(Debug, Default)]
pub(crate) struct AddrSet {
    v4: Flat<u32>,
    v6: Flat<u128>,
    /// How many distinct ranges it was built from (for reports).
    count: usize,
}

impl AddrSet {
    /// The rule of the most specific range holding `ip` (IPv4-mapped IPv6 as IPv4), if any. No allocation.
    pub(crate) fn lookup(&self, ip: IpAddr) -> Option<RuleId> {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.v4.get(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.get(u128::from(v6)),
        }
    }

    /// Whether there is no range at all: the packet path then never reads an answer's addresses for this list.
    pub(crate) fn is_empty(&self) -> bool {
        self.v4.starts.is_empty() && self.v6.starts.is_empty()
    }

    /// How many distinct ranges it holds.
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Heap memory held, in bytes.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.v4.heap_bytes() + self.v6.heap_bytes()
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
