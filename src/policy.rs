//! Client address → policy, by longest prefix; what each policy blocks, when, and how it answers.
//!
//! Built once per config load (off the packet path) from [`PolicySpec`]s (which `state` makes of
//! the `[[policy]]` sections) and the compiled lists; read-only afterwards. [`Rules`] is all of
//! it together: the value the decision (`engine`) reads. This module knows nothing of the config
//! file, so that the config may use its types without the two importing each other.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::answer::{BlockAnswer, BlockTemplate};
use crate::lists::{BadLine, DomainSet, RuleAction};
use crate::packet::Query;
use crate::prefixes::{PrefixRanges, PrefixTable};

mod schedule;

pub(crate) use schedule::{DAY_MINUTES, DAY_NAMES, HourRange, Schedule, day_bit};

/// Index of a named list in the snapshot's lists.
pub(crate) type ListId = usize;
/// Index of a policy in its [`PolicyTable`].
pub(crate) type PolicyId = usize;

/// What the packet path needs to know of a client address: may it query, which policy is its,
/// and is it exempt from rate limits. One longest-prefix lookup answers all three.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientClass {
    /// Inside `server.allow`.
    pub allowed: bool,
    /// Its policy (that of its most specific policy prefix), if any.
    pub policy: Option<PolicyId>,
    /// Inside `ratelimit.exempt`: never rate limited.
    pub exempt: bool,
}

/// `server.allow`, `ratelimit.exempt` and the policies' prefixes in one table. Each prefix of
/// any set carries the answer for the addresses it is the most specific prefix of: whether an
/// allow prefix covers it, whether an exempt prefix does, and the policy of the most specific
/// policy prefix covering it. Every prefix of any set that holds an address covers that
/// address's most specific prefix in the union (else it would be more specific still), so the
/// answers are exact.
pub struct ClientTable {
    by_prefix: PrefixRanges<ClientClass>,
}

impl Default for ClientTable {
    fn default() -> Self {
        ClientTable {
            by_prefix: PrefixRanges::build(&PrefixTable::default()),
        }
    }
}

impl ClientTable {
    /// Builds the union table of `allow`, `exempt` and the policy prefixes of `policies`.
    pub fn build(allow: &PrefixTable<()>, exempt: &PrefixTable<()>, policies: &PolicyTable) -> ClientTable {
        let mut by_prefix = PrefixTable::default();
        for net in allow
            .prefixes()
            .chain(exempt.prefixes())
            .chain(policies.by_prefix.prefixes())
        {
            let class = ClientClass {
                allowed: allow.covering(net).is_some(),
                policy: policies.by_prefix.covering(net).map(|(_, id)| *id),
                exempt: exempt.covering(net).is_some(),
            };
            by_prefix.insert_new(net, class);
        }
        ClientTable {
            by_prefix: PrefixRanges::build(&by_prefix),
        }
    }

    /// The class of a client address.
    pub fn classify(&self, ip: IpAddr) -> ClientClass {
        self.by_prefix.get(ip).unwrap_or(ClientClass {
            allowed: false,
            policy: None,
            exempt: false,
        })
    }
}

/// Whether a policy answers with the block answer or only logs and counts what it would block
/// (`mode` in a `[[policy]]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Block.
    #[default]
    Enforce,
    /// Log and count, answer normally: to see what a policy would do before switching it on.
    Audit,
}

impl Mode {
    /// Its index in per-mode arrays (counters).
    pub fn index(self) -> usize {
        match self {
            Mode::Enforce => 0,
            Mode::Audit => 1,
        }
    }

    /// The `mode` label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

/// What a policy does while a list it blocks has never loaded (`on_missing_list`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMissingList {
    /// Answer SERVFAIL with EDE 14 "Not Ready" for every name the policy neither blocks nor
    /// excepts: a ban must not lapse because a download did not come.
    #[default]
    Closed,
    /// Block what the policy has, forward the rest.
    Open,
}

impl OnMissingList {
    /// The config's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            OnMissingList::Closed => "closed",
            OnMissingList::Open => "open",
        }
    }
}

/// When a policy blocks, as Unix seconds: built by config validation from `active_from` and
/// `active_until`, and read on the packet path with the clock of the moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Blocks from this time on, if set.
    pub from: Option<i64>,
    /// Blocks until just before this time, if set.
    pub until: Option<i64>,
}

impl Window {
    /// Whether the window holds the time `now` (Unix seconds).
    pub fn contains(self, now: i64) -> bool {
        self.from.is_none_or(|from| now >= from) && self.until.is_none_or(|until| now < until)
    }
}

/// One step of a policy's timeline (`phases` in a `[[policy]]`): the policy has `mode` until
/// `until` (Unix seconds, exclusive), from the end of the phase before (or `active_from`). So
/// that one policy can audit during a grace period and then enforce, on the same clients: two
/// policies on one prefix cannot do it, as only one of them ever applies to a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Phase {
    /// The first second it no longer holds.
    pub until: i64,
    /// What the policy does during it.
    pub mode: Mode,
}

/// Index of a phase in its policy's timeline (0 for a policy without `phases`): small, so that
/// a hit and its hit log record carry it without a string.
pub(crate) type PhaseId = u8;

/// One policy, ready for the packet path.
pub struct Policy {
    /// Its name, shared with every hit log record that names it.
    pub name: Arc<str>,
    /// Lists it blocks, each with its `sinkhole_blocks_total{policy,list,mode}` counters by
    /// [`Mode::index`]: only for the modes its timeline has, so that no series of a mode it never
    /// takes is exported.
    pub block: Vec<(ListId, [Option<metrics::Counter>; 2])>,
    /// Lists of names it never blocks.
    pub allow: Vec<ListId>,
    /// Enforce or only audit (without `phases`; with them, the first phase's mode).
    pub mode: Mode,
    /// When it blocks: with `phases`, from `active_from` to the last phase's end.
    pub window: Window,
    /// Its timeline, in increasing order of `until`; empty when it has one mode throughout its
    /// window. Read through [`Policy::phase_at`].
    pub phases: Box<[Phase]>,
    /// Its weekly windows (`schedule`), if any: it blocks only inside them (and inside its
    /// window). None costs the packet path nothing.
    pub schedule: Option<Arc<Schedule>>,
    /// Its answers, pre-encoded; written through [`Policy::write_block_answer`] only, so that
    /// whoever shows an answer (`explain`) shows what the packet path sends.
    template: BlockTemplate,
    /// The prefixes it was configured with (for reports).
    pub clients: Vec<IpNet>,
    /// A list it blocks has never loaded (a list by URL with no copy and no built-in stand-in)
    /// and `on_missing_list` is `closed`: names it neither blocks nor excepts get SERVFAIL with
    /// EDE 14 "Not Ready" rather than being forwarded, while it enforces.
    pub not_ready: bool,
    /// Whether a list it blocks has address ranges: only then are the A/AAAA records of its
    /// clients' answers read (`engine::check_addresses`), so that a policy without any costs
    /// nothing more than this flag.
    pub checks_addresses: bool,
    /// Whether it publishes the addresses of what it blocks (enforce mode) to the egress
    /// companion's nftables sets (`egress = true`).
    pub egress: bool,
}

impl Policy {
    /// Its phase and mode at `now` (Unix seconds), or None when it does not block then (before
    /// its window or after it, or outside its weekly schedule: both must hold). A scan of a few
    /// phases and, with a schedule, one binary search: no allocation, no I/O, for the packet
    /// path.
    pub fn phase_at(&self, now: i64) -> Option<(PhaseId, Mode)> {
        if !self.window.contains(now) {
            return None;
        }
        if let Some(schedule) = &self.schedule
            && !schedule.contains(now)
        {
            return None;
        }
        self.phase_inside_window(now)
    }

    /// Its phase and mode at `now` by its dates alone (window and phases: the ban's timeline),
    /// its weekly schedule left out: what says when a ban starts, leaves its grace period and
    /// ends, as opposed to the office hours it blocks within.
    pub(crate) fn timeline_at(&self, now: i64) -> Option<(PhaseId, Mode)> {
        if !self.window.contains(now) {
            return None;
        }
        self.phase_inside_window(now)
    }

    /// Its phase at `now`, a moment inside its window: the one place phases are read, inlined
    /// so that the packet path's [`Policy::phase_at`] costs what it did as one function.
    #[inline(always)]
    fn phase_inside_window(&self, now: i64) -> Option<(PhaseId, Mode)> {
        if self.phases.is_empty() {
            return Some((0, self.mode));
        }
        let i = self.phases.iter().position(|p| now < p.until)?;
        Some((PhaseId::try_from(i).ok()?, self.phases[i].mode))
    }

    /// The answer kind it sends.
    pub fn answer(&self) -> BlockAnswer {
        self.template.answer()
    }

    /// Writes its block answer to `query` (read from `packet`) into `out`, cleared first:
    /// `apex_len` is the hit's (`engine::Hit::apex_len`), which owns the SOA. The one way a block
    /// answer is written, by the packet path and by `explain` alike.
    pub fn write_block_answer(&self, packet: &[u8], query: &Query, apex_len: Option<u8>, out: &mut Vec<u8>) {
        self.template.write(packet, query, apex_len, out);
    }

    /// [`Policy::write_block_answer`] for a hit on a rule with an action of its own (an RPZ
    /// list's NXDOMAIN, NODATA or redirect): that action wins over the policy's `answer`, as RPZ
    /// users expect; the TTL, SOA and EDE stay the policy's. `None`: the policy's answer.
    pub(crate) fn write_block_answer_for(
        &self,
        action: Option<RuleAction>,
        packet: &[u8],
        query: &Query,
        apex_len: Option<u8>,
        out: &mut Vec<u8>,
    ) {
        match action.and_then(|a| answer_of(a, query.qtype)) {
            Some(answer) => self.template.write_as(answer, packet, query, apex_len, out),
            None => self.template.write(packet, query, apex_len, out),
        }
    }

    /// The answer kind a hit on a rule with `action` gets (the policy's without one), for the hit
    /// log and `explain`.
    pub(crate) fn answer_for(&self, action: Option<RuleAction>, qtype: u16) -> BlockAnswer {
        action
            .and_then(|a| answer_of(a, qtype))
            .unwrap_or_else(|| self.template.answer())
    }
}

/// The block answer an RPZ rule's action gives a query of type `qtype`; None for an exception
/// (never written: the engine gives no hit on one).
fn answer_of(action: RuleAction, qtype: u16) -> Option<BlockAnswer> {
    use crate::wire::rtype;
    match action {
        RuleAction::Passthru => None,
        RuleAction::Nxdomain => Some(BlockAnswer::Nxdomain),
        RuleAction::Nodata => Some(BlockAnswer::Nodata),
        RuleAction::Redirect { v4, v6 } => Some(match qtype {
            rtype::A => v4.map_or(BlockAnswer::Nodata, |a| BlockAnswer::Address(IpAddr::V4(a))),
            rtype::AAAA => v6.map_or(BlockAnswer::Nodata, |a| BlockAnswer::Address(IpAddr::V6(a))),
            _ => BlockAnswer::Nodata,
        }),
    }
}

/// One policy as the config describes it, with its lists already resolved to ids: what
/// [`PolicyTable::build`] makes a [`Policy`] of.
#[derive(Clone, Debug)]
pub struct PolicySpec {
    /// Its name.
    pub name: String,
    /// Its client prefixes, in config order.
    pub clients: Vec<IpNet>,
    /// The lists it blocks.
    pub block: Vec<ListId>,
    /// The lists of names it never blocks.
    pub allow: Vec<ListId>,
    /// Enforce or only audit (the first phase's, with `phases`).
    pub mode: Mode,
    /// When it blocks (to the last phase's end, with `phases`).
    pub window: Window,
    /// Its timeline; empty for one mode throughout.
    pub phases: Vec<Phase>,
    /// Its weekly windows, if it has a `schedule`.
    pub schedule: Option<Arc<Schedule>>,
    /// Whether it publishes what it blocks to the egress companion.
    pub egress: bool,
    /// What a blocked client is told.
    pub answer: BlockAnswer,
    /// TTL of its block answers (and their negative caching), in seconds.
    pub block_ttl: u32,
    /// A list it blocks has never loaded and it fails closed (`on_missing_list`): see
    /// [`Policy::not_ready`].
    pub not_ready: bool,
}

/// One compiled list.
pub struct NamedList {
    /// Its `[lists.NAME]` name.
    pub name: Arc<str>,
    /// The compiled rules.
    pub set: DomainSet,
    /// Lines that were skipped, with file and line number (for `check` and the logs).
    pub bad_lines: Vec<BadLine>,
    /// Where the rules came from, for reports: file paths, `builtin:NAME`, `inline`.
    pub sources: Vec<String>,
}

/// Everything a verdict is decided from: who may query and whose policy is which (one table),
/// the policies, and the lists they name. Built with each snapshot and immutable; the decision
/// (`engine::decide`) reads this and nothing else, so it does not depend on how the state
/// around it is kept.
#[derive(Default)]
pub struct Rules {
    /// `server.allow`, `ratelimit.exempt` and the policies' prefixes in one table, for the
    /// packet path.
    pub clients: ClientTable,
    /// The policies and the prefix table that selects one.
    pub policies: PolicyTable,
    /// Compiled lists, indexed by [`ListId`].
    pub lists: Vec<NamedList>,
}

impl Rules {
    /// Builds the rules: the policies of `specs` over `lists`, and the client table of `allow`,
    /// `exempt` and the policies' prefixes.
    pub fn build(
        allow: &PrefixTable<()>,
        exempt: &PrefixTable<()>,
        lists: Vec<NamedList>,
        specs: &[PolicySpec],
    ) -> Rules {
        let policies = PolicyTable::build(specs, &lists);
        Rules {
            clients: ClientTable::build(allow, exempt, &policies),
            policies,
            lists,
        }
    }

    /// Index of a list by name.
    pub fn list_id(&self, name: &str) -> Option<ListId> {
        self.lists.iter().position(|l| &*l.name == name)
    }

    /// Total rules over all lists.
    pub fn rule_count(&self) -> usize {
        self.lists.iter().map(|l| l.set.len()).sum()
    }

    /// Rules that some policy blocks, counted once per (policy, list): zero when the config
    /// blocks nothing at all, which a reload must not bring about by accident.
    pub fn blocking_rules(&self) -> usize {
        self.policies
            .iter()
            .flat_map(|p| &p.block)
            .filter_map(|(list, _)| self.lists.get(*list))
            .map(|l| l.set.len())
            .sum()
    }
}

/// All policies and the prefix table that selects one for a client.
#[derive(Default)]
pub struct PolicyTable {
    policies: Vec<Policy>,
    by_prefix: PrefixTable<PolicyId>,
}

impl PolicyTable {
    /// Builds the table of `specs`, whose list ids index `lists`. A prefix claimed twice goes
    /// to the first policy (config warns about it); an id out of range is left out.
    pub fn build(specs: &[PolicySpec], lists: &[NamedList]) -> PolicyTable {
        let mut table = PolicyTable::default();
        for (id, spec) in specs.iter().enumerate() {
            let name: Arc<str> = Arc::from(spec.name.as_str());
            let uses = |mode: Mode| {
                if spec.phases.is_empty() {
                    spec.mode == mode
                } else {
                    spec.phases.iter().any(|p| p.mode == mode)
                }
            };
            let block = spec
                .block
                .iter()
                .filter_map(|&list| {
                    let list_name = &lists.get(list)?.name;
                    let counter = |mode: Mode| {
                        uses(mode).then(|| {
                            metrics::counter!(
                                crate::metrics::BLOCKS,
                                "policy" => name.to_string(),
                                "list" => list_name.to_string(),
                                "mode" => mode.as_str(),
                            )
                        })
                    };
                    Some((list, [counter(Mode::Enforce), counter(Mode::Audit)]))
                })
                .collect();
            let allow = spec.allow.iter().copied().filter(|&list| list < lists.len()).collect();
            let checks_addresses = spec
                .block
                .iter()
                .any(|&list| lists.get(list).is_some_and(|l| !l.set.addrs().is_empty()));
            let clients: Vec<IpNet> = spec.clients.iter().map(IpNet::trunc).collect();
            for net in &clients {
                table.by_prefix.insert_new(*net, id);
            }
            table.policies.push(Policy {
                template: BlockTemplate::new(&name, spec.answer, spec.block_ttl),
                name,
                block,
                allow,
                mode: spec.mode,
                window: spec.window,
                phases: spec.phases.clone().into_boxed_slice(),
                schedule: spec.schedule.clone(),
                clients,
                not_ready: spec.not_ready,
                checks_addresses,
                egress: spec.egress,
            });
        }
        table
    }

    /// The policy of a client and the prefix that put it there, if any.
    pub fn for_client(&self, ip: IpAddr) -> Option<(PolicyId, IpNet)> {
        self.by_prefix.longest_match(ip).map(|(net, id)| (*id, net))
    }

    /// A policy by id. Ids come from this table, so they are in range.
    pub fn get(&self, id: PolicyId) -> &Policy {
        &self.policies[id]
    }

    /// All policies, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Policy> {
        self.policies.iter()
    }

    /// How many policies.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }
}

/// Rules for tests (of the engine, the hit log), as `state` builds them from a config: `lists` by
/// name with their rules (`ip:RANGE` an address range, `rpz:TEXT` an RPZ zone), and `policies` as [`TestPolicy`]s; every policy answers NXDOMAIN.
#[cfg(test)]
pub(crate) fn test_rules(allow: &[&str], lists: &[(&str, &[&str])], policies: &[TestPolicy<'_>]) -> Rules {
    test_rules_with(allow, lists, policies, |_| {})
}

/// [`test_rules`] with the specs changed by `edit` before they are built (to give a policy
/// `phases`).
#[cfg(test)]
pub(crate) fn test_rules_with(
    allow: &[&str],
    lists: &[(&str, &[&str])],
    policies: &[TestPolicy<'_>],
    edit: impl FnOnce(&mut [PolicySpec]),
) -> Rules {
    let net = |n: &&str| n.parse::<ipnet::IpNet>().expect("test prefix");
    let mut acl = PrefixTable::default();
    for n in allow.iter().map(net) {
        acl.insert_new(n, ());
    }
    let named = lists
        .iter()
        .map(|(name, rules)| {
            let mut builder = crate::lists::DomainSetBuilder::new();
            for rule in *rules {
                if let Some(zone) = rule.strip_prefix("rpz:") {
                    let bad = builder.add_text("test", zone);
                    assert!(bad.is_empty(), "{bad:?}");
                    continue;
                }
                match rule.strip_prefix("ip:") {
                    Some(range) => builder.add_range(crate::lists::parse_range(range).expect("test range")),
                    None => builder.add_rule(rule),
                }
                .expect("test rule");
            }
            NamedList {
                name: std::sync::Arc::from(*name),
                set: builder.build(),
                bad_lines: Vec::new(),
                sources: vec!["inline".into()],
            }
        })
        .collect();
    let id = |list: &&str| lists.iter().position(|(name, _)| name == list).expect("a test list");
    let mut specs: Vec<PolicySpec> = policies
        .iter()
        .map(|(name, clients, block, allow, mode, window)| PolicySpec {
            name: (*name).into(),
            clients: clients.iter().map(net).collect(),
            block: block.iter().map(id).collect(),
            allow: allow.iter().map(id).collect(),
            mode: *mode,
            window: *window,
            phases: Vec::new(),
            schedule: None,
            egress: false,
            answer: BlockAnswer::Nxdomain,
            block_ttl: 10,
            not_ready: false,
        })
        .collect();
    edit(&mut specs);
    Rules::build(&acl, &PrefixTable::default(), named, &specs)
}

/// A test policy: (name, clients, blocked lists, exception lists, mode, window).
#[cfg(test)]
pub(crate) type TestPolicy<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a [&'a str], Mode, Window);

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn one_lookup_answers_both_the_allow_list_and_the_policy() {
        let mut allow = PrefixTable::default();
        for net in ["10.0.0.0/8", "10.99.5.0/24", "fd00::/8"] {
            allow.insert_new(net.parse().expect("prefix"), ());
        }
        let mut policies = PolicyTable::default();
        for (net, id) in [
            ("10.10.0.0/16", 0),
            ("10.10.50.0/24", 1),
            ("192.168.0.0/16", 2),
            ("10.99.0.0/16", 3),
        ] {
            policies.by_prefix.insert_new(net.parse().expect("prefix"), id);
        }
        let mut exempt = PrefixTable::default();
        for net in ["10.10.50.128/25", "172.16.0.0/12"] {
            exempt.insert_new(net.parse().expect("prefix"), ());
        }
        let clients = ClientTable::build(&allow, &exempt, &policies);
        let class = |a: &str| {
            let c = clients.classify(ip(a));
            // The union table must agree with the three lookups it replaces.
            assert_eq!(c.allowed, allow.contains(ip(a)), "{a}");
            assert_eq!(c.policy, policies.for_client(ip(a)).map(|(id, _)| id), "{a}");
            assert_eq!(c.exempt, exempt.contains(ip(a).to_canonical()), "{a}");
            (c.allowed, c.policy)
        };
        assert!(clients.classify(ip("10.10.50.200")).exempt, "inside a policy's prefix");
        assert!(!clients.classify(ip("10.10.50.9")).exempt);
        assert_eq!(class("172.16.1.1"), (false, None), "exempt, but not allowed");
        assert_eq!(class("10.10.1.1"), (true, Some(0)));
        assert_eq!(class("10.10.50.9"), (true, Some(1)));
        assert_eq!(class("10.20.0.1"), (true, None));
        assert_eq!(class("192.168.1.1"), (false, Some(2)), "a policy outside allow");
        assert_eq!(
            class("10.99.5.7"),
            (true, Some(3)),
            "an allow prefix inside a policy prefix"
        );
        assert_eq!(class("10.99.6.7"), (true, Some(3)));
        assert_eq!(class("::ffff:10.10.50.9"), (true, Some(1)));
        assert_eq!(class("fd00::1"), (true, None));
        assert_eq!(class("192.0.2.1"), (false, None));
    }
}

/// Properties of the client lookups on random prefix sets (proptest): the longest prefix wins, as a scan of the
/// configured list finds it, and the flat table answers as the trie does, at every prefix edge and at random.
#[cfg(test)]
mod properties {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use ipnet::{Ipv4Net, Ipv6Net};

    use proptest::prelude::*;
    use proptest::sample::Index;

    use super::*;

    /// Prefixes drawn around a few base addresses (the base with one bit flipped or not, at any length), so that
    /// they nest, touch and overlap as real client subnets do; random ones would almost never meet.
    fn v4_prefixes() -> impl Strategy<Value = Vec<IpNet>> {
        let picks = prop::collection::vec((any::<Index>(), 0u8..=32, prop::option::of(0u32..32)), 0..24);
        (prop::collection::vec(any::<u32>(), 1..4), picks).prop_map(|(bases, picks)| {
            picks
                .into_iter()
                .map(|(base, len, flip)| {
                    let addr = *base.get(&bases) ^ flip.map_or(0, |bit| 1 << bit);
                    IpNet::V4(Ipv4Net::new(Ipv4Addr::from(addr), len).expect("length <= 32").trunc())
                })
                .collect()
        })
    }

    /// As [`v4_prefixes`]; `short` keeps every length at /64 or less, the case the flat table keys by the upper
    /// 64 bits.
    fn v6_prefixes() -> impl Strategy<Value = Vec<IpNet>> {
        let picks = prop::collection::vec((any::<Index>(), 0u8..=128, prop::option::of(0u32..128)), 0..24);
        (prop::collection::vec(any::<u128>(), 1..4), picks, any::<bool>()).prop_map(|(bases, picks, short)| {
            picks
                .into_iter()
                .map(|(base, len, flip)| {
                    let addr = *base.get(&bases) ^ flip.map_or(0, |bit| 1 << bit);
                    let len = if short { len % 65 } else { len };
                    IpNet::V6(Ipv6Net::new(Ipv6Addr::from(addr), len).expect("length <= 128").trunc())
                })
                .collect()
        })
    }

    /// Both families, shuffled together in config order.
    fn prefixes() -> impl Strategy<Value = Vec<IpNet>> {
        (v4_prefixes(), v6_prefixes())
            .prop_map(|(v4, v6)| v4.into_iter().chain(v6).collect::<Vec<_>>())
            .prop_shuffle()
    }

    /// Every prefix's first and last address and their neighbours (wrapping round the space), the IPv4 ones
    /// also as IPv4-mapped IPv6, and `random` addresses of both families.
    fn probes(nets: &[IpNet], random: &[(u32, u128)]) -> Vec<IpAddr> {
        let mut probes = Vec::new();
        for net in nets {
            match net {
                IpNet::V4(n) => {
                    let (a, b) = (u32::from(n.network()), u32::from(n.broadcast()));
                    for x in [
                        a.wrapping_sub(1),
                        a,
                        a.wrapping_add(1),
                        b.wrapping_sub(1),
                        b,
                        b.wrapping_add(1),
                    ] {
                        probes.push(IpAddr::V4(x.into()));
                        probes.push(IpAddr::V6(Ipv4Addr::from(x).to_ipv6_mapped()));
                    }
                }
                IpNet::V6(n) => {
                    let (a, b) = (u128::from(n.network()), u128::from(n.broadcast()));
                    for x in [
                        a.wrapping_sub(1),
                        a,
                        a.wrapping_add(1),
                        b.wrapping_sub(1),
                        b,
                        b.wrapping_add(1),
                    ] {
                        probes.push(IpAddr::V6(x.into()));
                    }
                }
            }
        }
        for &(v4, v6) in random {
            probes.push(IpAddr::V4(v4.into()));
            probes.push(IpAddr::V6(v6.into()));
        }
        probes
    }

    /// The longest match the slow way: every configured prefix holding the address (IPv4-mapped as IPv4), the
    /// longest; of equal prefixes, the first configured (as `PolicyTable::build` keeps it).
    fn brute_force(nets: &[IpNet], ip: IpAddr) -> Option<(PolicyId, IpNet)> {
        let ip = ip.to_canonical();
        let mut best: Option<(PolicyId, IpNet)> = None;
        for (id, net) in nets.iter().enumerate() {
            if net.contains(&ip) && best.is_none_or(|(_, b)| net.prefix_len() > b.prefix_len()) {
                best = Some((id, *net));
            }
        }
        best
    }

    fn policy_table(nets: &[IpNet]) -> PolicyTable {
        let mut policies = PolicyTable::default();
        for (id, net) in nets.iter().enumerate() {
            policies.by_prefix.insert_new(*net, id);
        }
        policies
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Prefixes of both families mapped to policies, in config order: for every address, at the edges of
        /// every prefix and at random, the policy chosen (by the trie and by the flat client table the packet
        /// path reads) is the one of the longest configured prefix holding it.
        #[test]
        fn the_longest_prefix_wins(nets in prefixes(), random in prop::collection::vec(any::<(u32, u128)>(), 16)) {
            let policies = policy_table(&nets);
            let mut everyone = PrefixTable::default();
            everyone.insert_new("0.0.0.0/0".parse().expect("prefix"), ());
            everyone.insert_new("::/0".parse().expect("prefix"), ());
            let clients = ClientTable::build(&everyone, &PrefixTable::default(), &policies);
            for ip in probes(&nets, &random) {
                let want = brute_force(&nets, ip);
                prop_assert_eq!(policies.for_client(ip), want, "{}", ip);
                prop_assert_eq!(clients.classify(ip).policy, want.map(|(id, _)| id), "{}", ip);
            }
        }

        /// The flat tables against the tries they flatten: `PrefixRanges` against `PrefixTable`, and the union
        /// `ClientTable` against the two lookups it replaces (allow list, policy prefixes), with allow prefixes
        /// that are policy prefixes, nest in them, hold them, or lie elsewhere.
        #[test]
        fn the_flat_tables_answer_as_the_tries(
            nets in prefixes(),
            shared in prop::collection::vec(any::<Index>(), 0..8),
            own in prefixes(),
            random in prop::collection::vec(any::<(u32, u128)>(), 16),
        ) {
            let policies = policy_table(&nets);
            let mut allow = PrefixTable::default();
            let from_policies = shared.iter().filter(|_| !nets.is_empty()).map(|i| *i.get(&nets));
            for net in from_policies.chain(own.iter().copied()) {
                allow.insert_new(net, ());
            }
            let clients = ClientTable::build(&allow, &PrefixTable::default(), &policies);
            let ranges = PrefixRanges::build(&policies.by_prefix);
            let all: Vec<IpNet> = nets.iter().chain(&own).copied().collect();
            for ip in probes(&all, &random) {
                let trie = policies.by_prefix.longest_match(ip).map(|(_, id)| *id);
                prop_assert_eq!(ranges.get(ip), trie, "{}", ip);
                let class = clients.classify(ip);
                prop_assert_eq!(class.allowed, allow.contains(ip), "{}", ip);
                prop_assert_eq!(class.policy, trie, "{}", ip);
            }
        }
    }
}
