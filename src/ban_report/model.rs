//! The report as shown: the tallies laid out by day, policy, list, apex and protocol, every count
//! passed through the [`Ledger`] so that what is hidden is hidden alike in every format, and the
//! policies' timelines read from the config.

use super::Bound;
use super::aggregate::{AUDIT, ENFORCE, Networks, PROTOCOLS, Tally};
use super::suppress::{Ledger, Shown};
use crate::config::Config;
use crate::policy::Mode;

/// How many apexes are named; the rest are one "other" count.
const TOP_APEXES: usize = 15;

/// What was read.
pub(super) struct Sources {
    pub(super) files: Vec<String>,
    pub(super) lines: u64,
    pub(super) skipped: u64,
    pub(super) outside: u64,
    pub(super) from: Option<Bound>,
    pub(super) until: Option<Bound>,
}

/// A stretch of a policy's timeline: Unix seconds, either end open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Band {
    pub(super) from: Option<i64>,
    pub(super) until: Option<i64>,
    pub(super) mode: Mode,
}

/// The share of a blocking policy's networks that tried, or why there is none.
pub(super) enum Share {
    /// No `-c`: the prefixes are unknown.
    NoConfig,
    /// The policy is not in the config, or blocks nothing.
    NotBlocking,
    /// No hit of the policy had a client that places it (log.client_ip none or hashed).
    NoClients,
    /// `tried` of `networks` saw at least one attempt.
    Known {
        networks: usize,
        tried: Shown,
        /// Whether prefixes were cut into /24 and /56 networks.
        split: bool,
        /// Hits that could not be placed, as shown.
        unplaced: Shown,
    },
}

/// One policy.
pub(super) struct PolicyView {
    pub(super) name: String,
    /// Enforce, audit, all.
    pub(super) totals: [Shown; 3],
    /// Its timeline from the config (empty without one, or when it blocks always).
    pub(super) bands: Vec<Band>,
    /// Whether it has a weekly schedule.
    pub(super) weekly: bool,
    pub(super) share: Share,
}

/// One day.
pub(super) struct DayView {
    pub(super) date: jiff::civil::Date,
    /// Per policy: [enforce, audit]. No total per day: the chart stacks them, and a total
    /// would be one more sum for a small count to leak through (and hide more to stop it).
    pub(super) cells: Vec<[Shown; 2]>,
}

/// The whole report.
pub(super) struct Report {
    pub(super) sources: Sources,
    pub(super) min_count: u64,
    pub(super) config_given: bool,
    pub(super) policies: Vec<PolicyView>,
    pub(super) days: Vec<DayView>,
    /// Enforce, audit, all.
    pub(super) totals: [Shown; 3],
    /// Name, [enforce, audit, all].
    pub(super) lists: Vec<(String, [Shown; 3])>,
    pub(super) apexes: Vec<(String, Shown)>,
    pub(super) other_apexes: Shown,
    pub(super) protocols: Vec<(&'static str, Shown)>,
}

impl Report {
    /// Unix seconds of the first and last day's start, or None without days.
    pub(super) fn span(&self) -> Option<(jiff::civil::Date, jiff::civil::Date)> {
        Some((self.days.first()?.date, self.days.last()?.date))
    }
}

/// Lays the tallies out and hides what must be.
pub(super) fn build(
    tally: &Tally,
    config: Option<&Config>,
    span: Option<(i32, i32)>,
    sources: Sources,
    min_count: u64,
) -> Report {
    let mut l = Ledger::default();
    let policies = tally.policies.names.len();
    let days: Vec<i32> = span.map(|(a, b)| (a..=b).collect()).unwrap_or_default();
    let count = |day: i32, p: usize, m: usize| tally.days.get(&day).and_then(|c| c.get(p)).map_or(0, |c| c[m]);

    // Day x policy x mode, and their sums.
    let cells: Vec<Vec<[usize; 2]>> = days
        .iter()
        .map(|&d| {
            (0..policies)
                .map(|p| [ENFORCE, AUDIT].map(|m| l.entry(count(d, p, m))))
                .collect()
        })
        .collect();
    let pm: Vec<[usize; 2]> = (0..policies)
        .map(|p| [ENFORCE, AUDIT].map(|m| l.entry(days.iter().map(|&d| count(d, p, m)).sum())))
        .collect();
    let pm_value = |p: usize, m: usize| days.iter().map(|&d| count(d, p, m)).sum::<u64>();
    let p_totals: Vec<usize> = (0..policies)
        .map(|p| l.entry(pm_value(p, ENFORCE) + pm_value(p, AUDIT)))
        .collect();
    let mode_value = |m: usize| (0..policies).map(|p| pm_value(p, m)).sum::<u64>();
    let modes = [ENFORCE, AUDIT].map(|m| l.entry(mode_value(m)));
    let grand_value = mode_value(ENFORCE) + mode_value(AUDIT);
    let grand = l.entry(grand_value);
    for p in 0..policies {
        for m in [ENFORCE, AUDIT] {
            l.sum(pm[p][m], cells.iter().map(|row| row[p][m]).collect());
        }
        l.sum(p_totals[p], pm[p].to_vec());
    }
    for m in [ENFORCE, AUDIT] {
        l.sum(modes[m], pm.iter().map(|e| e[m]).collect());
    }
    l.sum(grand, modes.to_vec());
    l.sum(grand, p_totals.clone());

    // Lists. Their counts are the whole tally's: the same hits as the days' when no line fell
    // outside the period, which the tally already dropped.
    let lists: Vec<(usize, [usize; 3])> = tally
        .list_counts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            (
                i,
                [l.entry(c[ENFORCE]), l.entry(c[AUDIT]), l.entry(c[ENFORCE] + c[AUDIT])],
            )
        })
        .collect();
    for (_, e) in &lists {
        l.sum(e[2], vec![e[0], e[1]]);
    }
    if !lists.is_empty() {
        for m in [ENFORCE, AUDIT] {
            l.sum(modes[m], lists.iter().map(|(_, e)| e[m]).collect());
        }
        l.sum(grand, lists.iter().map(|(_, e)| e[2]).collect());
    }

    // Apexes: the most blocked, then the rest as one.
    let mut ranked: Vec<(&String, u64)> = tally.apexes.iter().map(|(a, &n)| (a, n)).collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let rest: u64 = ranked.iter().skip(TOP_APEXES).map(|(_, n)| n).sum::<u64>() + tally.apex_overflow;
    let apexes: Vec<(String, usize)> = ranked
        .iter()
        .take(TOP_APEXES)
        .map(|(a, n)| ((*a).clone(), l.entry(*n)))
        .collect();
    let other_apexes = l.entry(rest);
    if grand_value > 0 {
        l.sum(grand, apexes.iter().map(|(_, e)| *e).chain([other_apexes]).collect());
    }

    let protocols: Vec<(&'static str, usize)> = PROTOCOLS
        .iter()
        .zip(tally.protocols)
        .map(|(&p, n)| (p, l.entry(n)))
        .collect();
    if grand_value > 0 {
        l.sum(grand, protocols.iter().map(|(_, e)| *e).collect());
    }

    // Networks: counts of networks, not of hits; hidden when small like any count.
    let tried: Vec<Option<(usize, usize, bool, usize)>> = (0..policies)
        .map(|p| {
            tally.networks.get(&p).map(|n: &Networks| {
                let seen = n.seen.iter().filter(|&&s| s).count() as u64;
                (n.seen.len(), l.entry(seen), n.split(), l.entry(n.unplaced))
            })
        })
        .collect();

    l.suppress(min_count);

    let policy_views = (0..policies)
        .map(|p| {
            let name = tally.policies.names[p].clone();
            let configured = config.and_then(|c| c.policies.iter().find(|x| x.name.get_ref() == &name));
            let share = match (config, configured, tried[p]) {
                (None, _, _) => Share::NoConfig,
                (Some(_), Some(_), Some((networks, seen, split, unplaced)))
                    if tally.networks.get(&p).is_some_and(|n| n.placed > 0) =>
                {
                    Share::Known {
                        networks,
                        tried: l.shown(seen),
                        split,
                        unplaced: l.shown(unplaced),
                    }
                }
                (Some(_), Some(_), Some(_)) if pm_value(p, ENFORCE) + pm_value(p, AUDIT) > 0 => Share::NoClients,
                (Some(_), Some(_), Some((networks, seen, split, unplaced))) => Share::Known {
                    networks,
                    tried: l.shown(seen),
                    split,
                    unplaced: l.shown(unplaced),
                },
                _ => Share::NotBlocking,
            };
            PolicyView {
                name,
                totals: [l.shown(pm[p][ENFORCE]), l.shown(pm[p][AUDIT]), l.shown(p_totals[p])],
                bands: configured.map(bands).unwrap_or_default(),
                weekly: configured.is_some_and(|c| c.weekly.is_some()),
                share,
            }
        })
        .collect();
    Report {
        sources,
        min_count,
        config_given: config.is_some(),
        policies: policy_views,
        days: days
            .iter()
            .enumerate()
            .map(|(d, &day)| DayView {
                date: super::date_of(day),
                cells: cells[d].iter().map(|c| c.map(|e| l.shown(e))).collect(),
            })
            .collect(),
        totals: [l.shown(modes[ENFORCE]), l.shown(modes[AUDIT]), l.shown(grand)],
        lists: lists
            .iter()
            .map(|(i, e)| (tally.lists.names[*i].clone(), e.map(|x| l.shown(x))))
            .collect(),
        apexes: apexes.into_iter().map(|(a, e)| (a, l.shown(e))).collect(),
        other_apexes: l.shown(other_apexes),
        protocols: protocols.into_iter().map(|(p, e)| (p, l.shown(e))).collect(),
    }
}

/// A policy's timeline: its window cut by its phases. Empty when it blocks always in one mode
/// (nothing to mark).
fn bands(policy: &crate::config::PolicyConfig) -> Vec<Band> {
    let window = policy.window;
    if policy.timeline.is_empty() {
        if window.from.is_none() && window.until.is_none() {
            return Vec::new();
        }
        return vec![Band {
            from: window.from,
            until: window.until,
            mode: policy.mode,
        }];
    }
    let mut from = window.from;
    policy
        .timeline
        .iter()
        .map(|phase| {
            let band = Band {
                from,
                until: Some(phase.until),
                mode: phase.mode,
            };
            from = Some(phase.until);
            band
        })
        .collect()
}
