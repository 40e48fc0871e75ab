//! The report's counts, kept as the lines stream by: per UTC day per policy per mode, per list,
//! per apex, per protocol, and which of a policy's client networks tried at all. Memory is
//! bounded by these aggregates, never by the log: days x policies, lists, and a capped table of
//! apexes; names beyond the caps are counted under "other" rather than kept.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

use super::read::{ClientField, HitLine};

/// Policies told apart; more (a log that is not sinkhole's) are counted as one "other".
const MAX_POLICIES: usize = 64;
/// Lists told apart; more are counted as one "other".
const MAX_LISTS: usize = 256;
/// Distinct apexes counted exactly; hits on apexes first seen after the table is full count
/// under "other apexes" (a list of a few thousand rules never fills it).
const MAX_APEXES: usize = 20_000;
/// The name under which what exceeds a cap is counted.
pub(super) const OTHER: &str = "(other)";
/// Protocols of the hit log schema, in the order shown; anything else counts as the last.
pub(super) const PROTOCOLS: [&str; 5] = ["udp", "tcp", "dot", "doh", "other"];
/// A prefix wider than the network unit (/24, /56) is split into networks of that size only
/// when that gives at most this many; a wider one counts as one network.
const MAX_SPLIT: u32 = 1024;

/// Index of the enforce count in `[u64; 2]` (as `policy::Mode::index`).
pub(super) const ENFORCE: usize = 0;
/// Index of the audit count.
pub(super) const AUDIT: usize = 1;

/// Names interned up to a cap, the rest as [`OTHER`].
#[derive(Default)]
pub(super) struct Names {
    pub(super) names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Names {
    fn id(&mut self, name: &str, cap: usize) -> usize {
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        let name = if self.names.len() + 1 >= cap { OTHER } else { name };
        if let Some(&i) = self.index.get(name) {
            return i;
        }
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), self.names.len() - 1);
        self.names.len() - 1
    }

    /// Registers a name ahead of the log (the config's policies, in its order).
    pub(super) fn declare(&mut self, name: &str) {
        self.id(name, MAX_POLICIES);
    }

    /// The index of a name already there.
    pub(super) fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// One configured client prefix of a policy, cut into networks.
struct Prefix {
    net: IpNet,
    /// The prefix length of its networks (its own when it is not split).
    unit: u8,
    /// Index of its first network in [`Networks::seen`].
    base: usize,
}

/// A blocking policy's client networks, and which saw at least one attempt. The addresses only
/// place a hit here; none is kept.
pub(super) struct Networks {
    prefixes: Vec<Prefix>,
    /// One flag per network.
    pub(super) seen: Vec<bool>,
    /// Hits of the policy placed in a network.
    pub(super) placed: u64,
    /// Hits of the policy whose client could not be placed (no address in the log, a hash, a
    /// network wider than the unit, an address outside the configured prefixes).
    pub(super) unplaced: u64,
}

impl Networks {
    /// The networks of `clients`: IPv4 prefixes wider than /24 split into /24s, IPv6 wider than
    /// /56 into /56s (the units the hit log's `truncated` mode keeps), when that gives at most
    /// [`MAX_SPLIT`] networks.
    pub(super) fn new(clients: &[IpNet]) -> Networks {
        let mut prefixes = Vec::new();
        let mut total = 0usize;
        for &net in clients {
            let unit_len = match net {
                IpNet::V4(_) => 24,
                IpNet::V6(_) => 56,
            };
            let unit = if net.prefix_len() < unit_len && u32::from(unit_len - net.prefix_len()) <= MAX_SPLIT.ilog2() {
                unit_len
            } else {
                net.prefix_len()
            };
            prefixes.push(Prefix { net, unit, base: total });
            total += 1usize << (unit - net.prefix_len());
        }
        // Most specific first, so that a client lands in the narrowest prefix holding it.
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.net.prefix_len()));
        Networks {
            prefixes,
            seen: vec![false; total],
            placed: 0,
            unplaced: 0,
        }
    }

    /// How the networks were cut, for the methods paragraph.
    pub(super) fn split(&self) -> bool {
        self.prefixes.iter().any(|p| p.unit != p.net.prefix_len())
    }

    /// Marks the network of a hit's client.
    fn place(&mut self, client: ClientField) {
        let (addr, width) = match client {
            ClientField::Address(ip) => (canonical(ip), None),
            ClientField::Network(net) => (net.network(), Some(net.prefix_len())),
            ClientField::Unknown => {
                self.unplaced += 1;
                return;
            }
        };
        let found = self
            .prefixes
            .iter()
            .find(|p| p.net.contains(&addr) && width.is_none_or(|w| w >= p.unit && same_family(addr, p.net.addr())));
        let Some(prefix) = found else {
            self.unplaced += 1;
            return;
        };
        let offset = offset_in(prefix.net, addr, prefix.unit);
        if let Some(flag) = self.seen.get_mut(prefix.base + offset) {
            *flag = true;
            self.placed += 1;
        } else {
            self.unplaced += 1;
        }
    }
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// An IPv4-mapped IPv6 address as IPv4, as the daemon classifies clients.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// Which of `net`'s networks of length `unit` holds `addr`: the address bits between the
/// prefix and the unit.
fn offset_in(net: IpNet, addr: IpAddr, unit: u8) -> usize {
    let (bits, width): (u128, u32) = match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    };
    let after_prefix = width - u32::from(net.prefix_len());
    let within = if after_prefix >= 128 {
        bits
    } else {
        bits & ((1u128 << after_prefix) - 1)
    };
    let host_bits = width - u32::from(unit);
    usize::try_from(within.checked_shr(host_bits).unwrap_or(0)).unwrap_or(0)
}

/// Every count of the report, before suppression.
#[derive(Default)]
pub(super) struct Tally {
    /// Policies by index, in the config's order and then as met.
    pub(super) policies: Names,
    /// Per UTC day (days since 1970-01-01): per policy, [enforce, audit].
    pub(super) days: BTreeMap<i32, Vec<[u64; 2]>>,
    /// Lists by index.
    pub(super) lists: Names,
    /// Per list, [enforce, audit].
    pub(super) list_counts: Vec<[u64; 2]>,
    /// Per apex.
    pub(super) apexes: HashMap<String, u64>,
    /// Hits on apexes met once the apex table was full.
    pub(super) apex_overflow: u64,
    /// Per protocol, as [`PROTOCOLS`].
    pub(super) protocols: [u64; PROTOCOLS.len()],
    /// The networks of the config's blocking policies, by policy index.
    pub(super) networks: HashMap<usize, Networks>,
}

/// Why a line is not counted.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Skip {
    /// Not a hit: bad JSON, a field missing, a bad time or mode.
    Malformed(&'static str),
    /// Outside `--from`/`--until`.
    OutsidePeriod,
}

/// The period kept: nanoseconds since the epoch, from inclusive, until exclusive.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Period {
    /// First instant kept.
    pub(super) from: Option<i128>,
    /// First instant no longer kept.
    pub(super) until: Option<i128>,
}

impl Tally {
    /// Counts one hit log line.
    pub(super) fn add(&mut self, line: &[u8], period: Period) -> Result<(), Skip> {
        let hit: HitLine<'_> = serde_json::from_slice(line).map_err(|_| Skip::Malformed("not a hit log line"))?;
        let time: jiff::Timestamp = hit.time.parse().map_err(|_| Skip::Malformed("bad time"))?;
        let mode = match &*hit.mode {
            "enforce" => ENFORCE,
            "audit" => AUDIT,
            _ => return Err(Skip::Malformed("bad mode")),
        };
        let ns = time.as_nanosecond();
        if period.from.is_some_and(|f| ns < f) || period.until.is_some_and(|u| ns >= u) {
            return Err(Skip::OutsidePeriod);
        }
        let day = i32::try_from(time.as_second().div_euclid(86_400)).map_err(|_| Skip::Malformed("bad time"))?;
        let policy = self.policies.id(&hit.policy, MAX_POLICIES);
        let cells = self.days.entry(day).or_default();
        if cells.len() <= policy {
            cells.resize(policy + 1, [0; 2]);
        }
        cells[policy][mode] += 1;
        let list = self.lists.id(&hit.list, MAX_LISTS);
        if self.list_counts.len() <= list {
            self.list_counts.resize(list + 1, [0; 2]);
        }
        self.list_counts[list][mode] += 1;
        let apex = apex(hit.rule.as_deref(), hit.qname.as_deref());
        if let Some(n) = self.apexes.get_mut(apex) {
            *n += 1;
        } else if self.apexes.len() < MAX_APEXES {
            self.apexes.insert(apex.to_string(), 1);
        } else {
            self.apex_overflow += 1;
        }
        let protocol = hit.protocol.as_deref().unwrap_or("");
        let p = PROTOCOLS
            .iter()
            .position(|&p| p == protocol)
            .unwrap_or(PROTOCOLS.len() - 1);
        self.protocols[p] += 1;
        if let Some(networks) = self.networks.get_mut(&policy) {
            networks.place(ClientField::parse(hit.client.as_deref()));
        }
        Ok(())
    }

    /// Every hit counted.
    pub(super) fn total(&self) -> u64 {
        self.protocols.iter().sum()
    }
}

/// The registrable part shown for a hit: the rule that matched (a list names apexes, and its
/// rules are public), without a wildcard's `*.`; with no rule, the last two labels of the name.
/// Never more of the name than that: the labels below an apex can name a person
/// (`firstname.lastname.phone.example`).
pub(super) fn apex<'a>(rule: Option<&'a str>, qname: Option<&'a str>) -> &'a str {
    let trim = |s: &'a str| s.trim_end_matches('.');
    if let Some(rule) = rule.map(trim).filter(|r| !r.is_empty()) {
        return rule.strip_prefix("*.").unwrap_or(rule);
    }
    let name = qname.map(trim).unwrap_or("");
    let mut dots = name.rmatch_indices('.');
    match (dots.next(), dots.next()) {
        (Some(_), Some((i, _))) => &name[i + 1..],
        _ if name.is_empty() => "(unknown)",
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(time: &str, client: &str, policy: &str, mode: &str, qname: &str, rule: &str) -> String {
        format!(
            r#"{{"time":"{time}","client":"{client}","policy":"{policy}","list":"tiktok","rule":"{rule}","qname":"{qname}","qtype":"A","answer":"nxdomain","mode":"{mode}","phase":0,"protocol":"udp"}}"#
        )
    }

    #[test]
    fn counts_by_day_policy_mode_list_apex_and_protocol() {
        let mut tally = Tally::default();
        let p = Period::default();
        for (time, mode) in [
            ("2026-03-01T10:00:00.000Z", "audit"),
            ("2026-03-01T23:59:59.999Z", "audit"),
            ("2026-03-02T00:00:00.000Z", "enforce"),
        ] {
            tally
                .add(
                    line(time, "10.0.0.1", "staff", mode, "jean.dupont.tiktok.com", "tiktok.com").as_bytes(),
                    p,
                )
                .expect("counted");
        }
        let day1 =
            i32::try_from(jiff::Timestamp::from_second(1_772_323_200).expect("ts").as_second() / 86_400).expect("day");
        assert_eq!(tally.days[&day1], [[0, 2]]);
        assert_eq!(tally.days[&(day1 + 1)], [[1, 0]]);
        assert_eq!(tally.list_counts, [[1, 2]]);
        assert_eq!(tally.apexes.get("tiktok.com"), Some(&3));
        assert_eq!(tally.protocols, [3, 0, 0, 0, 0]);
        assert_eq!(tally.total(), 3);
    }

    #[test]
    fn malformed_lines_are_skipped_with_a_reason() {
        let mut tally = Tally::default();
        let p = Period::default();
        assert_eq!(tally.add(b"not json", p), Err(Skip::Malformed("not a hit log line")));
        assert_eq!(
            tally.add(br#"{"time":"2026-03-01T10:00:00Z"}"#, p),
            Err(Skip::Malformed("not a hit log line"))
        );
        let bad_time = line("yesterday", "10.0.0.1", "staff", "audit", "a.example", "example");
        assert_eq!(tally.add(bad_time.as_bytes(), p), Err(Skip::Malformed("bad time")));
        let bad_mode = line(
            "2026-03-01T10:00:00Z",
            "10.0.0.1",
            "staff",
            "maybe",
            "a.example",
            "example",
        );
        assert_eq!(tally.add(bad_mode.as_bytes(), p), Err(Skip::Malformed("bad mode")));
        assert_eq!(tally.total(), 0);
    }

    #[test]
    fn the_period_keeps_its_ends() {
        let mut tally = Tally::default();
        let at = |s: &str| s.parse::<jiff::Timestamp>().expect("ts").as_nanosecond();
        let p = Period {
            from: Some(at("2026-03-02T00:00:00Z")),
            until: Some(at("2026-03-03T00:00:00Z")),
        };
        let mk = |t: &str| line(t, "10.0.0.1", "staff", "audit", "a.example", "example");
        assert_eq!(
            tally.add(mk("2026-03-01T23:59:59.999Z").as_bytes(), p),
            Err(Skip::OutsidePeriod)
        );
        assert_eq!(tally.add(mk("2026-03-02T00:00:00Z").as_bytes(), p), Ok(()));
        assert_eq!(tally.add(mk("2026-03-02T23:59:59.999Z").as_bytes(), p), Ok(()));
        assert_eq!(
            tally.add(mk("2026-03-03T00:00:00Z").as_bytes(), p),
            Err(Skip::OutsidePeriod)
        );
        assert_eq!(tally.total(), 2);
    }

    #[test]
    fn apexes_never_show_labels_below_the_rule() {
        assert_eq!(apex(Some("tiktok.com"), Some("jean.dupont.tiktok.com")), "tiktok.com");
        assert_eq!(
            apex(Some("*.tiktokcdn.com."), Some("x.y.tiktokcdn.com")),
            "tiktokcdn.com"
        );
        assert_eq!(apex(None, Some("marie.curie.phone.example.org.")), "example.org");
        assert_eq!(apex(None, None), "(unknown)");
    }

    #[test]
    fn networks_split_into_24s_and_place_addresses_and_truncated_networks() {
        let nets: Vec<IpNet> = vec![
            "10.1.0.0/22".parse().expect("net"),
            "10.1.2.128/25".parse().expect("net"),
        ];
        let mut n = Networks::new(&nets);
        assert_eq!(n.seen.len(), 5, "four /24s and the /25 whole");
        assert!(n.split());
        n.place(ClientField::Address("10.1.1.7".parse().expect("ip")));
        n.place(ClientField::Network("10.1.3.0/24".parse().expect("net")));
        n.place(ClientField::Address("10.1.2.200".parse().expect("ip")));
        n.place(ClientField::Address("192.0.2.1".parse().expect("ip")));
        n.place(ClientField::Unknown);
        assert_eq!(n.seen.iter().filter(|&&s| s).count(), 3);
        assert_eq!((n.placed, n.unplaced), (3, 2));
    }

    #[test]
    fn ipv6_prefixes_split_into_56s() {
        let nets: Vec<IpNet> = vec!["2001:db8:aa::/54".parse().expect("net")];
        let mut n = Networks::new(&nets);
        assert_eq!(n.seen.len(), 4);
        n.place(ClientField::Address("2001:db8:aa:300::1".parse().expect("ip")));
        assert_eq!(n.seen, [false, false, false, true]);
        let wide: Vec<IpNet> = vec!["2001:db8::/32".parse().expect("net")];
        assert_eq!(Networks::new(&wide).seen.len(), 1, "too wide to split: one network");
    }
}
