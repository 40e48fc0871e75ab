//! The verdict for one query: may this client ask, and does its policy block this name?
//!
//! Pure and synchronous: it reads the policy side's [`Rules`] and the clock value it is given,
//! does no I/O and does not allocate, so it runs inline on the packet path and is tested with a
//! table of cases. It knows nothing of the live state that holds the rules (`state`), nor of the
//! config they were built from. What to do with a verdict (answer, log, count, forward) is the
//! server's business.

use std::net::IpAddr;

use crate::lists::RuleId;
use crate::policy::Mode;
use crate::policy::{ClientClass, ListId, PhaseId, Policy, PolicyId, Rules};

/// A policy's block list matched a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The client's policy.
    pub policy: PolicyId,
    /// Which of its lists matched.
    pub list: ListId,
    /// Which rule of that list.
    pub rule: RuleId,
    /// How long the matched apex is (see `lists::Match::apex_len`); None through a wildcard.
    pub apex_len: Option<u8>,
    /// Enforce: send the block answer. Audit: log and count, then answer normally. The mode of
    /// the policy's phase at the time of the query.
    pub mode: Mode,
    /// Which phase of the policy's timeline it was (0 without `phases`), for the hit log.
    pub phase: PhaseId,
}

/// What to do with a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The client is outside `server.allow`: REFUSED.
    Refused,
    /// Resolve it. `inspect` is the client's policy when that policy is blocking now and the
    /// name is not an exception: the answer's CNAME chain must then be checked with
    /// [`check_chain`].
    Allowed {
        /// The policy to inspect CNAME chains with.
        inspect: Option<PolicyId>,
    },
    /// A block list matched the name.
    Blocked(Hit),
    /// The client's policy enforces, a list it blocks has never loaded, it fails closed
    /// (`on_missing_list`), and no list blocks or excepts the name: SERVFAIL, "Not Ready".
    NotReady(PolicyId),
}

/// Decides for a query from `client` for `name` (lowercase, dotted, no trailing dot) at `now`
/// (Unix seconds).
pub(crate) fn decide(rules: &Rules, client: IpAddr, name: &[u8], now: i64) -> Verdict {
    decide_for(rules, rules.clients.classify(client), name, now)
}

/// [`decide`] for a client already classified (the packet path classifies once, for the rate
/// limit and the verdict both).
pub(crate) fn decide_for(rules: &Rules, class: ClientClass, name: &[u8], now: i64) -> Verdict {
    if !class.allowed {
        return Verdict::Refused;
    }
    let Some(id) = class.policy else {
        return Verdict::Allowed { inspect: None };
    };
    let policy = rules.policies.get(id);
    if policy.block.is_empty() {
        return Verdict::Allowed { inspect: None };
    }
    let Some(phase) = policy.phase_at(now) else {
        return Verdict::Allowed { inspect: None };
    };
    if is_exception(rules, policy, name) {
        return Verdict::Allowed { inspect: None };
    }
    match first_block(rules, id, policy, phase, name) {
        Some(hit) => Verdict::Blocked(hit),
        None if policy.not_ready && phase.1 == Mode::Enforce => Verdict::NotReady(id),
        None => Verdict::Allowed { inspect: Some(id) },
    }
}

/// Checks the names an answer's CNAME/DNAME chain leads to against the policy that
/// [`decide`] asked to inspect with, in its phase at `now` (the time [`decide`] was given): the
/// first blocked name gives the hit.
pub(crate) fn check_chain<'a>(
    rules: &Rules,
    policy: PolicyId,
    now: i64,
    chain: impl IntoIterator<Item = &'a [u8]>,
) -> Option<Hit> {
    let p = rules.policies.get(policy);
    let phase = p.phase_at(now)?;
    chain
        .into_iter()
        .filter(|name| !is_exception(rules, p, name))
        .find_map(|name| first_block(rules, policy, p, phase, name))
        .map(|hit| Hit { apex_len: None, ..hit })
}

/// Checks the addresses of an answer's A/AAAA records against the address ranges of the lists
/// the policy [`decide`] asked to inspect with blocks, in its phase at `now`: the first address
/// in a range gives the hit, with that address (for the hit log). Exceptions for the name asked
/// were already applied by [`decide`] (it asks for no inspection then). A policy without ranges
/// returns at once, before the answer's addresses are read.
pub(crate) fn check_addresses(
    rules: &Rules,
    policy: PolicyId,
    now: i64,
    addresses: impl IntoIterator<Item = IpAddr>,
) -> Option<(Hit, IpAddr)> {
    let p = rules.policies.get(policy);
    if !p.checks_addresses {
        return None;
    }
    let (phase, mode) = p.phase_at(now)?;
    addresses.into_iter().find_map(|address| {
        p.block.iter().find_map(|(list, _)| {
            let set = &rules.lists[*list].set;
            let rule = set.addrs().lookup(address).filter(|&rule| !set.is_passthru(rule))?;
            let hit = Hit {
                policy,
                list: *list,
                rule,
                apex_len: None,
                mode,
                phase,
            };
            Some((hit, address))
        })
    })
}

fn is_exception(rules: &Rules, policy: &Policy, name: &[u8]) -> bool {
    policy
        .allow
        .iter()
        .any(|&list| rules.lists[list].set.lookup(name).is_some())
}

fn first_block(
    rules: &Rules,
    id: PolicyId,
    policy: &Policy,
    (phase, mode): (PhaseId, Mode),
    name: &[u8],
) -> Option<Hit> {
    policy.block.iter().find_map(|(list, _)| {
        let set = &rules.lists[*list].set;
        // An RPZ list's own exception (`rpz-passthru`) stops that list, not the others.
        set.lookup(name).filter(|m| !set.is_passthru(m.rule)).map(|m| Hit {
            policy: id,
            list: *list,
            rule: m.rule,
            apex_len: m.apex_len,
            mode,
            phase,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Window;
    use crate::policy::test_rules;

    /// Four policies over lists given inline: the shape of a real office config.
    fn snapshot() -> Rules {
        let always = Window::default();
        // 2023-03-17T00:00:00+01:00 until 2023-09-17T00:00:00+02:00.
        let ban = Window {
            from: Some(1_679_007_600),
            until: Some(1_694_901_600),
        };
        test_rules(
            &["127.0.0.0/8", "10.0.0.0/8", "fd00::/8"],
            &[
                (
                    "tiktok",
                    &["tiktok.com", "tiktokcdn.com", "||p16-tiktok-*.ibyteimg.com^"],
                ),
                ("meta", &["facebook.com"]),
                ("exceptions", &["developers.tiktok.com"]),
            ],
            &[
                (
                    "staff",
                    &["10.0.0.0/8", "127.10.0.0/16", "fd00::/8"],
                    &["tiktok", "meta"],
                    &["exceptions"],
                    Mode::Enforce,
                    always,
                ),
                ("comms", &["10.50.0.0/24"], &[], &[], Mode::Enforce, always),
                ("pilot", &["10.60.0.0/16"], &["tiktok"], &[], Mode::Audit, always),
                ("ban-2023", &["10.70.0.0/16"], &["tiktok"], &[], Mode::Enforce, ban),
            ],
        )
    }

    fn verdict_name(s: &Rules, v: Verdict) -> String {
        match v {
            Verdict::Refused => "refused".into(),
            Verdict::Allowed { inspect: None } => "allowed".into(),
            Verdict::Allowed { inspect: Some(p) } => {
                format!("allowed inspect={}", s.policies.get(p).name)
            }
            Verdict::NotReady(p) => format!("not ready {}", s.policies.get(p).name),
            Verdict::Blocked(hit) => format!(
                "{} {} {} {}",
                hit.mode.as_str(),
                s.policies.get(hit.policy).name,
                s.lists[hit.list].name,
                s.lists[hit.list].set.rule(hit.rule)
            ),
        }
    }

    #[test]
    fn a_policy_not_ready_fails_closed_for_what_it_neither_blocks_nor_excepts() {
        let always = Window::default();
        let rules = crate::policy::test_rules_with(
            &["10.0.0.0/8"],
            &[("tiktok", &["tiktok.com"]), ("exceptions", &["ok.example"])],
            &[
                (
                    "closed",
                    &["10.1.0.0/16"],
                    &["tiktok"],
                    &["exceptions"],
                    Mode::Enforce,
                    always,
                ),
                ("audit", &["10.2.0.0/16"], &["tiktok"], &[], Mode::Audit, always),
            ],
            |specs| specs.iter_mut().for_each(|spec| spec.not_ready = true),
        );
        let cases: &[(&str, &str, &str)] = &[
            ("10.1.0.1", "other.example", "not ready closed"),
            ("10.1.0.1", "www.tiktok.com", "enforce closed tiktok tiktok.com"),
            ("10.1.0.1", "ok.example", "allowed"),
            ("10.2.0.1", "other.example", "allowed inspect=audit"),
            ("10.9.0.1", "other.example", "allowed"),
        ];
        for (client, name, want) in cases {
            let client: IpAddr = client.parse().expect("test address");
            let got = verdict_name(&rules, decide(&rules, client, name.as_bytes(), 0));
            assert_eq!(got, *want, "{client} {name}");
        }
    }

    #[test]
    fn decision_table() {
        let s = snapshot();
        let during_ban = 1_680_000_000; // 2023-03-28
        let after_ban = 1_700_000_000; // 2023-11-14
        let before_ban = 1_670_000_000; // 2022-12-02
        let cases: &[(&str, &str, i64, &str)] = &[
            (
                "10.1.2.3",
                "www.tiktok.com",
                during_ban,
                "enforce staff tiktok tiktok.com",
            ),
            ("10.1.2.3", "tiktok.com", during_ban, "enforce staff tiktok tiktok.com"),
            ("10.1.2.3", "nottiktok.com", during_ban, "allowed inspect=staff"),
            (
                "10.1.2.3",
                "m.facebook.com",
                during_ban,
                "enforce staff meta facebook.com",
            ),
            (
                "10.1.2.3",
                "p16-tiktok-va.ibyteimg.com",
                during_ban,
                "enforce staff tiktok ||p16-tiktok-*.ibyteimg.com^",
            ),
            (
                "10.1.2.3",
                "p16-other.ibyteimg.com",
                during_ban,
                "allowed inspect=staff",
            ),
            ("10.1.2.3", "developers.tiktok.com", during_ban, "allowed"),
            ("10.1.2.3", "api.developers.tiktok.com", during_ban, "allowed"),
            (
                "127.10.0.5",
                "www.tiktok.com",
                during_ban,
                "enforce staff tiktok tiktok.com",
            ),
            (
                "::ffff:10.1.2.3",
                "www.tiktok.com",
                during_ban,
                "enforce staff tiktok tiktok.com",
            ),
            (
                "fd00::5",
                "www.tiktok.com",
                during_ban,
                "enforce staff tiktok tiktok.com",
            ),
            ("10.50.0.7", "www.tiktok.com", during_ban, "allowed"),
            (
                "10.60.1.1",
                "www.tiktok.com",
                during_ban,
                "audit pilot tiktok tiktok.com",
            ),
            (
                "10.70.1.1",
                "www.tiktok.com",
                during_ban,
                "enforce ban-2023 tiktok tiktok.com",
            ),
            ("10.70.1.1", "www.tiktok.com", after_ban, "allowed"),
            ("10.70.1.1", "www.tiktok.com", before_ban, "allowed"),
            ("127.20.0.5", "www.tiktok.com", during_ban, "allowed"),
            ("192.0.2.1", "www.tiktok.com", during_ban, "refused"),
            ("2001:db8::1", "example.com", during_ban, "refused"),
        ];
        for (client, name, now, want) in cases {
            let got = decide(&s, client.parse().expect("ip"), name.as_bytes(), *now);
            assert_eq!(verdict_name(&s, got), *want, "{client} asks {name}");
        }
    }

    /// The Walloon ban as one policy, `ban`, on 10.0.0.0/8 blocking tiktok.com: from `from`, audit until
    /// `grace_ends`, then enforce until `ban_ends`; only inside `schedule` where there is one.
    fn phased_ban(from: i64, grace_ends: i64, ban_ends: i64, schedule: Option<crate::policy::Schedule>) -> Rules {
        use crate::policy::Phase;
        let window = Window {
            from: Some(from),
            until: Some(ban_ends),
        };
        crate::policy::test_rules_with(
            &["10.0.0.0/8"],
            &[("tiktok", &["tiktok.com"])],
            &[("ban", &["10.0.0.0/8"], &["tiktok"], &[], Mode::Audit, window)],
            |specs| {
                specs[0].phases = vec![
                    Phase {
                        until: grace_ends,
                        mode: Mode::Audit,
                    },
                    Phase {
                        until: ban_ends,
                        mode: Mode::Enforce,
                    },
                ];
                specs[0].schedule = schedule.map(std::sync::Arc::new);
            },
        )
    }

    /// A ban with a grace period, as one policy: from active_from, audit until 31 March, then
    /// enforce until 17 September, then nothing. The clock walks each edge: a second before, at
    /// and after every `until` and `active_from`, and long after the last phase.
    #[test]
    fn a_timeline_switches_modes_at_each_edge() {
        // 2023-03-17T00:00:00+01:00, 2023-03-31T00:00:00+02:00, 2023-09-17T00:00:00+02:00.
        let (from, grace_ends, ban_ends) = (1_679_007_600, 1_680_213_600, 1_694_901_600);
        let s = phased_ban(from, grace_ends, ban_ends, None);
        let cases: &[(i64, Option<(Mode, u8)>)] = &[
            (0, None),
            (from - 1, None),
            (from, Some((Mode::Audit, 0))),
            (from + 1, Some((Mode::Audit, 0))),
            (grace_ends - 1, Some((Mode::Audit, 0))),
            (grace_ends, Some((Mode::Enforce, 1))),
            (grace_ends + 1, Some((Mode::Enforce, 1))),
            (ban_ends - 1, Some((Mode::Enforce, 1))),
            (ban_ends, None),
            (ban_ends + 1, None),
            (i64::MAX, None),
        ];
        let client = "10.1.2.3".parse().expect("ip");
        for &(now, want) in cases {
            let got = match decide(&s, client, b"www.tiktok.com", now) {
                Verdict::Blocked(hit) => Some((hit.mode, hit.phase)),
                Verdict::Allowed { inspect: None } => None,
                other => panic!("at {now}: {other:?}"),
            };
            assert_eq!(got, want, "at {now}");
            // The CNAME chain is judged in the same phase as the name asked.
            let chain = check_chain(&s, 0, now, [b"cdn.tiktok.com".as_slice()]).map(|hit| (hit.mode, hit.phase));
            assert_eq!(chain, want, "chain at {now}");
        }
    }

    /// The same ban blocking only during office hours (weekdays 08:00-18:00 in Brussels): the
    /// weekly window and the timeline must both hold, and the phase is the timeline's.
    #[test]
    fn a_weekly_schedule_inside_a_timeline_blocks_when_both_hold() {
        use crate::policy::{HourRange, Schedule};
        let t = |s: &str| s.parse::<jiff::Timestamp>().expect("test time").as_second();
        let (from, grace_ends, ban_ends) = (
            t("2023-03-17T00:00:00+01:00"),
            t("2023-03-31T00:00:00+02:00"),
            t("2023-09-17T00:00:00+02:00"),
        );
        let zone = jiff::tz::TimeZone::get("Europe/Brussels").expect("tzdata");
        let hours = vec![HourRange::parse("08:00-18:00").expect("range")];
        let office = Schedule::computed_around(0b001_1111, hours, zone, "Europe/Brussels".into(), grace_ends);
        let s = phased_ban(from, grace_ends, ban_ends, Some(office));
        let cases: &[(&str, Option<(Mode, u8)>)] = &[
            ("2023-03-16T10:00:00+01:00", None), // a Thursday before active_from
            ("2023-03-17T07:59:59+01:00", None), // Friday, the first day, before 08:00
            ("2023-03-17T08:00:00+01:00", Some((Mode::Audit, 0))),
            ("2023-03-17T17:59:59+01:00", Some((Mode::Audit, 0))),
            ("2023-03-17T18:00:00+01:00", None),
            ("2023-03-18T10:00:00+01:00", None),                   // Saturday
            ("2023-03-27T08:00:00+02:00", Some((Mode::Audit, 0))), // Monday after the DST change
            ("2023-03-27T07:59:59+02:00", None),
            ("2023-03-30T17:59:59+02:00", Some((Mode::Audit, 0))),
            ("2023-03-31T00:00:00+02:00", None), // the ban begins at night: outside the hours
            ("2023-03-31T08:00:00+02:00", Some((Mode::Enforce, 1))),
            ("2023-04-01T08:00:00+02:00", None), // Saturday
            ("2023-09-15T17:59:59+02:00", Some((Mode::Enforce, 1))),
            ("2023-09-18T08:00:00+02:00", None), // a Monday after the ban
        ];
        let client = "10.1.2.3".parse().expect("ip");
        for &(at, want) in cases {
            let now = t(at);
            let got = match decide(&s, client, b"www.tiktok.com", now) {
                Verdict::Blocked(hit) => Some((hit.mode, hit.phase)),
                Verdict::Allowed { inspect: None } => None,
                other => panic!("at {at}: {other:?}"),
            };
            assert_eq!(got, want, "at {at}");
            assert_eq!(s.policies.get(0).phase_at(now), want.map(|(m, p)| (p, m)), "at {at}");
        }
    }

    /// Answer-address rules: an address in a range of a list the policy blocks is a hit with that
    /// address and the range as its rule, in the policy's mode; a policy whose lists have no
    /// ranges, one outside its window and an address outside every range are not.
    #[test]
    fn answer_addresses_in_a_blocked_range_are_hits() {
        let ban = Window {
            from: Some(1_000),
            until: Some(2_000),
        };
        let s = test_rules(
            &["10.0.0.0/8"],
            &[
                ("names", &["tiktok.com"]),
                (
                    "hidden",
                    &[
                        "hidden.example",
                        "ip:203.0.113.0/24",
                        "ip:2001:db8:66::/48",
                        "ip:198.51.100.7",
                    ],
                ),
            ],
            &[
                (
                    "staff",
                    &["10.1.0.0/16"],
                    &["names", "hidden"],
                    &[],
                    Mode::Enforce,
                    Window::default(),
                ),
                (
                    "pilot",
                    &["10.2.0.0/16"],
                    &["hidden"],
                    &[],
                    Mode::Audit,
                    Window::default(),
                ),
                (
                    "names-only",
                    &["10.3.0.0/16"],
                    &["names"],
                    &[],
                    Mode::Enforce,
                    Window::default(),
                ),
                ("later", &["10.4.0.0/16"], &["hidden"], &[], Mode::Enforce, ban),
            ],
        );
        let ip = |a: &str| a.parse::<IpAddr>().expect("test address");
        let check = |policy: PolicyId, now: i64, addrs: &[&str]| {
            check_addresses(&s, policy, now, addrs.iter().map(|a| ip(a))).map(|(hit, address)| {
                let rule = s.lists[hit.list].set.rule(hit.rule).to_owned();
                (hit.mode, rule, address)
            })
        };
        assert_eq!(
            check(0, 0, &["192.0.2.1", "203.0.113.9"]),
            Some((Mode::Enforce, "203.0.113.0/24".into(), ip("203.0.113.9")))
        );
        assert_eq!(
            check(0, 0, &["2001:db8:66:1::5"]),
            Some((Mode::Enforce, "2001:db8:66::/48".into(), ip("2001:db8:66:1::5")))
        );
        assert_eq!(
            check(0, 0, &["198.51.100.7"]),
            Some((Mode::Enforce, "198.51.100.7/32".into(), ip("198.51.100.7")))
        );
        assert_eq!(check(0, 0, &["198.51.100.8", "2001:db8:67::1", "192.0.2.1"]), None);
        assert_eq!(check(0, 0, &[]), None);
        assert_eq!(
            check(1, 0, &["203.0.113.1"]).map(|(mode, _, _)| mode),
            Some(Mode::Audit)
        );
        assert!(!s.policies.get(2).checks_addresses, "no list of it has ranges");
        assert_eq!(check(2, 0, &["203.0.113.1"]), None);
        assert_eq!(check(3, 999, &["203.0.113.1"]), None, "before its window");
        assert!(check(3, 1_000, &["203.0.113.1"]).is_some());
        // A range is not a name rule: the names of the list still block as names.
        assert!(matches!(
            decide(&s, ip("10.1.0.1"), b"a.hidden.example", 0),
            Verdict::Blocked(_)
        ));
        assert_eq!(
            decide(&s, ip("10.1.0.1"), b"203.0.113.0", 0),
            Verdict::Allowed { inspect: Some(0) }
        );
    }

    /// An RPZ list's passthru rule stops that list only: another list of the policy still blocks
    /// the name; passthru ranges carve a hole in a wider range of the same list.
    #[test]
    fn rpz_passthru_is_an_exception_of_its_own_list() {
        let zone = "rpz:$ORIGIN rpz.\n@ SOA a. b. 1 2 3 4 5\n*.tiktok.com CNAME .\nok.tiktok.com CNAME rpz-passthru.\n\
                    24.0.113.0.203.rpz-ip CNAME .\n32.7.113.0.203.rpz-ip CNAME rpz-passthru.\n";
        let s = test_rules(
            &["10.0.0.0/8"],
            &[("rpz", &[zone]), ("plain", &["tiktok.com"])],
            &[
                (
                    "rpz-only",
                    &["10.1.0.0/16"],
                    &["rpz"],
                    &[],
                    Mode::Enforce,
                    Window::default(),
                ),
                (
                    "both",
                    &["10.2.0.0/16"],
                    &["rpz", "plain"],
                    &[],
                    Mode::Enforce,
                    Window::default(),
                ),
            ],
        );
        let ip = |a: &str| a.parse::<IpAddr>().expect("test address");
        let list_of = |v: Verdict| match v {
            Verdict::Blocked(hit) => Some(s.lists[hit.list].name.to_string()),
            _ => None,
        };
        assert_eq!(
            list_of(decide(&s, ip("10.1.0.1"), b"a.tiktok.com", 0)).as_deref(),
            Some("rpz")
        );
        assert_eq!(list_of(decide(&s, ip("10.1.0.1"), b"ok.tiktok.com", 0)), None);
        assert_eq!(
            list_of(decide(&s, ip("10.1.0.1"), b"tiktok.com", 0)),
            None,
            "*.name is below name only"
        );
        assert_eq!(
            list_of(decide(&s, ip("10.2.0.1"), b"ok.tiktok.com", 0)).as_deref(),
            Some("plain")
        );
        assert!(check_addresses(&s, 0, 0, [ip("203.0.113.9")]).is_some());
        assert_eq!(check_addresses(&s, 0, 0, [ip("203.0.113.7")]), None, "a passthru range");
    }

    #[test]
    fn apex_len_points_at_the_matched_suffix() {
        let s = snapshot();
        match decide(&s, "10.1.2.3".parse().expect("ip"), b"a.b.tiktok.com", 0) {
            Verdict::Blocked(hit) => assert_eq!(hit.apex_len, Some(10)),
            other => panic!("expected a block, got {other:?}"),
        }
    }

    #[test]
    fn chains_block_through_cdn_names_but_respect_exceptions() {
        let s = snapshot();
        let staff = match decide(&s, "10.1.2.3".parse().expect("ip"), b"innocent.example", 0) {
            Verdict::Allowed { inspect: Some(p) } => p,
            other => panic!("expected inspection, got {other:?}"),
        };
        let hit = check_chain(&s, staff, 0, [b"edge.example".as_slice(), b"v16m.tiktokcdn.com"]).expect("blocked");
        assert_eq!(s.lists[hit.list].set.rule(hit.rule), "tiktokcdn.com");
        assert_eq!(hit.apex_len, None);
        assert_eq!(check_chain(&s, staff, 0, [b"cdn.akamaized.net".as_slice()]), None);
        assert_eq!(check_chain(&s, staff, 0, [b"developers.tiktok.com".as_slice()]), None);
    }
}

/// Properties of the verdict on random lists and names (proptest): blocks cover whole subtrees, and an exception
/// of the client's own policy always wins over its block lists, for the name asked and for its CNAME chain.
#[cfg(test)]
mod properties {
    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;

    use super::*;
    use crate::policy::test_rules;

    /// Labels from a small alphabet, so that random rules and names meet often (see `lists`' properties).
    const LABELS: &[&str] = &["a", "b", "ab", "ba", "a-b", "x_1"];
    /// In the policy that blocks.
    const MEMBER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    /// Allowed to resolve, in no policy.
    const OUTSIDER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 2, 0, 1));
    /// Not in `server.allow`.
    const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    fn name(max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(LABELS), 1..=max).prop_map(|l| l.join("."))
    }

    /// A rule: its domain and whether it is exact (`|domain^`) rather than a suffix rule.
    type Rule = (String, bool);

    fn rules(max: usize) -> impl Strategy<Value = Vec<Rule>> {
        prop::collection::vec((name(3), prop::bool::weighted(0.2)), 0..=max)
    }

    fn line((domain, exact): &Rule) -> String {
        if *exact { format!("|{domain}^") } else { domain.clone() }
    }

    /// Rules with one policy for 10.1.0.0/16 that blocks `block` and makes exceptions of `allow`.
    fn snapshot(block: &[Rule], allow: &[Rule]) -> Rules {
        let list = |rules: &[Rule]| rules.iter().map(line).collect::<Vec<_>>();
        let (block, allow) = (list(block), list(allow));
        let block: Vec<&str> = block.iter().map(String::as_str).collect();
        let allow: Vec<&str> = allow.iter().map(String::as_str).collect();
        test_rules(
            &["10.0.0.0/8"],
            &[("block", &block), ("exceptions", &allow)],
            &[(
                "p",
                &["10.1.0.0/16"],
                &["block"],
                &["exceptions"],
                Mode::Enforce,
                crate::policy::Window::default(),
            )],
        )
    }

    /// Whether a rule covers a name, the slow way: the name itself, or (suffix rules) a name below it.
    fn covers((domain, exact): &Rule, name: &str) -> bool {
        name == domain || (!exact && name.ends_with(&format!(".{domain}")))
    }

    /// The most specific rule of `rules` covering `name`, as the apex length a block reports.
    fn apex(rules: &[Rule], name: &str) -> Option<u8> {
        rules
            .iter()
            .filter(|rule| covers(rule, name))
            .map(|(domain, _)| u8::try_from(domain.len()).expect("short"))
            .max()
    }

    /// Names around the rules: each rule's domain, a name below it, and random ones.
    fn names_for(rules: &[&[Rule]], prefix: &str, random: &[String]) -> Vec<String> {
        let mut names = random.to_vec();
        for (domain, _) in rules.iter().flat_map(|r| r.iter()) {
            names.push(domain.clone());
            names.push(format!("{prefix}.{domain}"));
            names.push(format!("x{domain}"));
        }
        names
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Through a policy that blocks the list: a member asking for a name a rule covers is blocked by the most
        /// specific covering rule, every other name is let through for CNAME inspection; a client in no policy is
        /// never blocked, and one outside `server.allow` is refused.
        #[test]
        fn a_policy_blocks_exactly_what_its_list_covers(
            block in rules(10),
            prefix in name(3),
            random in prop::collection::vec(name(5), 1..10),
        ) {
            let s = snapshot(&block, &[]);
            for name in names_for(&[&block], &prefix, &random) {
                let verdict = decide(&s, MEMBER, name.as_bytes(), 0);
                match apex(&block, &name) {
                    Some(len) => {
                        let Verdict::Blocked(hit) = verdict else {
                            return Err(TestCaseError::fail(format!("{name}: {verdict:?}, expected a block")));
                        };
                        prop_assert_eq!(hit.apex_len, Some(len), "{}", name);
                        prop_assert_eq!(hit.mode, Mode::Enforce);
                        let rule = s.lists[hit.list].set.rule(hit.rule);
                        let domain = rule.trim_start_matches('|').trim_end_matches('^');
                        prop_assert_eq!(domain.len(), usize::from(len), "{} blocked by {}", name, rule);
                    }
                    None => prop_assert_eq!(verdict, Verdict::Allowed { inspect: Some(0) }, "{}", name),
                }
                prop_assert_eq!(decide(&s, OUTSIDER, name.as_bytes(), 0), Verdict::Allowed { inspect: None });
                prop_assert_eq!(decide(&s, STRANGER, name.as_bytes(), 0), Verdict::Refused);
            }
        }

        /// Block and exception lists that overlap (exceptions drawn below block rules as well as at random): a
        /// name an exception covers is never blocked, nor inspected; the rest is blocked as the block list says.
        /// Through a CNAME chain: the hit is the first chain name that a block rule covers and no exception does.
        #[test]
        fn an_exception_always_beats_a_block(
            block in rules(8),
            below in prop::collection::vec((name(2), any::<prop::sample::Index>(), any::<bool>()), 0..6),
            random_allow in rules(3),
            prefix in name(3),
            random in prop::collection::vec(name(5), 1..10),
            chains in prop::collection::vec(prop::collection::vec(any::<prop::sample::Index>(), 1..5), 1..6),
        ) {
            // Exceptions below block rules (and equal to them) are the cases that matter most.
            let mut allow = random_allow;
            if !block.is_empty() {
                for (head, at, exact) in &below {
                    let (domain, _) = at.get(&block);
                    allow.push((format!("{head}.{domain}"), *exact));
                    allow.push((domain.clone(), *exact));
                }
            }
            let s = snapshot(&block, &allow);
            let names = names_for(&[&block, &allow], &prefix, &random);
            let excepted = |name: &str| allow.iter().any(|rule| covers(rule, name));
            for name in &names {
                let verdict = decide(&s, MEMBER, name.as_bytes(), 0);
                if excepted(name) {
                    prop_assert_eq!(verdict, Verdict::Allowed { inspect: None }, "{}", name);
                } else if let Some(len) = apex(&block, name) {
                    prop_assert!(
                        matches!(verdict, Verdict::Blocked(hit) if hit.apex_len == Some(len)),
                        "{}: {:?}", name, verdict
                    );
                } else {
                    prop_assert_eq!(verdict, Verdict::Allowed { inspect: Some(0) }, "{}", name);
                }
            }
            for chain in &chains {
                let chain: Vec<&str> = chain.iter().map(|i| i.get(&names).as_str()).collect();
                let hit = check_chain(&s, 0, 0, chain.iter().map(|n| n.as_bytes()));
                let want = chain.iter().find(|n| !excepted(n) && apex(&block, n).is_some());
                match (hit, want) {
                    (None, None) => {}
                    (Some(hit), Some(name)) => {
                        prop_assert_eq!(hit.apex_len, None, "chain hits carry no apex");
                        // The hit's rule covers that first name (an earlier one would have been the hit).
                        let rule = s.lists[hit.list].set.rule(hit.rule);
                        let exact = rule.starts_with('|');
                        let domain = rule.trim_start_matches('|').trim_end_matches('^').to_owned();
                        prop_assert!(covers(&(domain, exact), name), "{:?}: {} by {}", chain, name, rule);
                    }
                    (hit, want) => {
                        return Err(TestCaseError::fail(format!("{chain:?}: hit {hit:?}, expected one on {want:?}")));
                    }
                }
            }
        }
    }
}
