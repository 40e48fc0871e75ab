//! Client address → policy, by longest prefix; what each policy blocks, when, and how it answers.
//!
//! Built once per config load (off the packet path) from the `[[policy]]` sections and the
//! compiled lists; read-only afterwards. The decision that uses it is `engine`'s.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixMap;

use crate::answer::{BlockAnswer, BlockTemplate};
use crate::config::{Mode, PolicyConfig, Window};

/// Index of a named list in the snapshot's lists.
pub type ListId = usize;
/// Index of a policy in its [`PolicyTable`].
pub type PolicyId = usize;

/// Prefixes of both address families, with a value each; looked up by longest match.
///
/// IPv4-mapped IPv6 clients (`::ffff:10.1.2.3`, what a dual-stack socket reports for IPv4) are
/// looked up as the IPv4 address they are.
#[derive(Clone)]
pub struct PrefixTable<T> {
    v4: PrefixMap<Ipv4Net, T>,
    v6: PrefixMap<Ipv6Net, T>,
}

impl<T> Default for PrefixTable<T> {
    fn default() -> Self {
        PrefixTable {
            v4: PrefixMap::new(),
            v6: PrefixMap::new(),
        }
    }
}

impl<T> PrefixTable<T> {
    /// Adds a prefix (host bits are cleared) unless it is there already; returns whether it was new.
    pub fn insert_new(&mut self, net: IpNet, value: T) -> bool {
        match net.trunc() {
            IpNet::V4(n) => {
                if self.v4.get(&n).is_some() {
                    return false;
                }
                self.v4.insert(n, value);
            }
            IpNet::V6(n) => {
                if self.v6.get(&n).is_some() {
                    return false;
                }
                self.v6.insert(n, value);
            }
        }
        true
    }

    /// The most specific prefix holding `ip`, with its value.
    pub fn longest_match(&self, ip: IpAddr) -> Option<(IpNet, &T)> {
        match ip.to_canonical() {
            IpAddr::V4(v4) => self.v4.get_lpm(&Ipv4Net::from(v4)).map(|(n, v)| (IpNet::V4(n), v)),
            IpAddr::V6(v6) => self.v6.get_lpm(&Ipv6Net::from(v6)).map(|(n, v)| (IpNet::V6(n), v)),
        }
    }

    /// Whether any prefix holds `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.longest_match(ip).is_some()
    }

    /// The most specific prefix holding all of `net`, with its value.
    pub fn covering(&self, net: IpNet) -> Option<(IpNet, &T)> {
        match net.trunc() {
            IpNet::V4(n) => self.v4.get_lpm(&n).map(|(n, v)| (IpNet::V4(n), v)),
            IpNet::V6(n) => self.v6.get_lpm(&n).map(|(n, v)| (IpNet::V6(n), v)),
        }
    }

    /// Every prefix, IPv4 first.
    pub fn prefixes(&self) -> impl Iterator<Item = IpNet> + '_ {
        let v4 = self.v4.iter().map(|(n, _)| IpNet::V4(n));
        v4.chain(self.v6.iter().map(|(n, _)| IpNet::V6(n)))
    }
}

/// What the packet path needs to know of a client address: may it query, and which policy is
/// its. One longest-prefix lookup answers both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientClass {
    /// Inside `server.allow`.
    pub allowed: bool,
    /// Its policy (that of its most specific policy prefix), if any.
    pub policy: Option<PolicyId>,
}

/// `server.allow` and the policies' prefixes in one table. Each prefix of either set carries
/// the answer for the addresses it is the most specific prefix of: whether an allow prefix
/// covers it, and the policy of the most specific policy prefix covering it. Every prefix of
/// either set that holds an address covers that address's most specific prefix in the union
/// (else it would be more specific still), so the answers are exact.
#[derive(Default)]
pub struct ClientTable {
    by_prefix: PrefixTable<ClientClass>,
}

impl ClientTable {
    /// Builds the union table of `allow` and the policy prefixes of `policies`.
    pub fn build(allow: &PrefixTable<()>, policies: &PolicyTable) -> ClientTable {
        let mut by_prefix = PrefixTable::default();
        for net in allow.prefixes().chain(policies.by_prefix.prefixes()) {
            let class = ClientClass {
                allowed: allow.covering(net).is_some(),
                policy: policies.by_prefix.covering(net).map(|(_, id)| *id),
            };
            by_prefix.insert_new(net, class);
        }
        ClientTable { by_prefix }
    }

    /// The class of a client address.
    pub fn classify(&self, ip: IpAddr) -> ClientClass {
        self.by_prefix.longest_match(ip).map_or(
            ClientClass {
                allowed: false,
                policy: None,
            },
            |(_, class)| *class,
        )
    }
}

/// One policy, ready for the packet path.
pub struct Policy {
    /// Its name, shared with every hit log record that names it.
    pub name: Arc<str>,
    /// Lists it blocks, each with its `sinkhole_blocks_total{policy,list,mode}` counter.
    pub block: Vec<(ListId, metrics::Counter)>,
    /// Lists of names it never blocks.
    pub allow: Vec<ListId>,
    /// Enforce or only audit.
    pub mode: Mode,
    /// When it blocks.
    pub window: Window,
    /// Its answers, pre-encoded.
    pub template: BlockTemplate,
    /// The prefixes it was configured with (for reports).
    pub clients: Vec<IpNet>,
}

impl Policy {
    /// The answer kind it sends.
    pub fn answer(&self) -> BlockAnswer {
        self.template.answer()
    }
}

/// All policies and the prefix table that selects one for a client.
#[derive(Default)]
pub struct PolicyTable {
    policies: Vec<Policy>,
    by_prefix: PrefixTable<PolicyId>,
}

impl PolicyTable {
    /// Builds the table. `list_id` maps a list name to its index (validated by config). A prefix
    /// claimed twice goes to the first policy (config warns about it).
    pub fn build(
        configs: &[PolicyConfig],
        windows: &[Window],
        list_id: impl Fn(&str) -> Option<ListId>,
    ) -> PolicyTable {
        let mut table = PolicyTable::default();
        for (id, (config, window)) in configs.iter().zip(windows).enumerate() {
            let name: Arc<str> = Arc::from(config.name.get_ref().as_str());
            let block = config
                .block
                .iter()
                .filter_map(|list| {
                    let counter = metrics::counter!(
                        crate::metrics::BLOCKS,
                        "policy" => name.to_string(),
                        "list" => list.get_ref().clone(),
                        "mode" => config.mode.as_str(),
                    );
                    Some((list_id(list.get_ref())?, counter))
                })
                .collect();
            let allow = config.allow.iter().filter_map(|l| list_id(l.get_ref())).collect();
            let clients: Vec<IpNet> = config.clients.get_ref().iter().map(|c| c.get_ref().trunc()).collect();
            for net in &clients {
                table.by_prefix.insert_new(*net, id);
            }
            table.policies.push(Policy {
                template: BlockTemplate::new(&name, config.answer, config.block_ttl),
                name,
                block,
                allow,
                mode: config.mode,
                window: *window,
                clients,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn longest_prefix_wins_in_both_families() {
        let mut t = PrefixTable::default();
        assert!(t.insert_new(net("10.0.0.0/8"), "staff"));
        assert!(t.insert_new(net("10.50.0.0/24"), "comms"));
        assert!(t.insert_new(net("fd00::/8"), "ula"));
        assert!(!t.insert_new(net("10.0.0.1/8"), "dup"), "same prefix after truncation");
        assert_eq!(t.longest_match(ip("10.50.0.9")).map(|m| *m.1), Some("comms"));
        assert_eq!(t.longest_match(ip("10.51.0.9")).map(|m| *m.1), Some("staff"));
        assert_eq!(t.longest_match(ip("10.51.0.9")).map(|m| m.0), Some(net("10.0.0.0/8")));
        assert_eq!(t.longest_match(ip("::ffff:10.50.0.9")).map(|m| *m.1), Some("comms"));
        assert_eq!(t.longest_match(ip("fd12::1")).map(|m| *m.1), Some("ula"));
        assert!(!t.contains(ip("192.0.2.1")));
        assert!(!t.contains(ip("2001:db8::1")));
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
        let clients = ClientTable::build(&allow, &policies);
        let class = |a: &str| {
            let c = clients.classify(ip(a));
            // The union table must agree with the two lookups it replaces.
            assert_eq!(c.allowed, allow.contains(ip(a)), "{a}");
            assert_eq!(c.policy, policies.for_client(ip(a)).map(|(id, _)| id), "{a}");
            (c.allowed, c.policy)
        };
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
