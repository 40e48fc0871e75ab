//! The policies' timelines as the running daemon sees them go by: each change of phase seen on
//! the one-second tick is logged and counted, and the next change ahead is exported, so that an
//! admin is told when a ban starts, switches from audit to enforce, and ends, and can be warned
//! before it does.
//!
//! Read on the gauge tick, never per query: [`next_change`] allocates (the policy's dates, sorted)
//! and the watch keeps a small map by policy name.

use std::collections::HashMap;
use std::sync::Arc;

use crate::policy::{Mode, PhaseId, Policy, PolicyTable};

/// The `mode` label of a policy that stops blocking (before its window, after it, outside its
/// weekly schedule).
const NONE: &str = "none";

/// The `mode` label of a phase: its mode, or `none` when the policy does not block.
fn mode_label(mode: Option<Mode>) -> &'static str {
    mode.map_or(NONE, Mode::as_str)
}

/// The first moment after `now` (Unix seconds) at which `policy`'s dates change its phase (its
/// window opens or closes, a phase ends: when a ban starts, leaves its grace period and ends),
/// with the mode it has from then on (None: it stops blocking). None when nothing changes ahead.
/// A weekly schedule's edges are left out: an alert on this warns of the ban's timeline, not of
/// every office-hours edge (`sinkhole_policy_phase` and the change counter show those).
pub(crate) fn next_change(policy: &Policy, now: i64) -> Option<(i64, Option<Mode>)> {
    let current = policy.timeline_at(now);
    let edges = [policy.window.from, policy.window.until]
        .into_iter()
        .flatten()
        .chain(policy.phases.iter().map(|p| p.until));
    let mut ahead: Vec<i64> = edges.filter(|&t| t > now).collect();
    ahead.sort_unstable();
    ahead.into_iter().find_map(|edge| {
        let then = policy.timeline_at(edge);
        (then != current).then(|| (edge, then.map(|(_, mode)| mode)))
    })
}

/// What the tick remembers of each policy: its phase at the last tick.
#[derive(Default)]
pub(crate) struct PhaseWatch {
    /// By policy name (names are unique in a config), so that a reload that keeps a policy
    /// keeps its history; policies a reload removed are forgotten at the next tick.
    seen: HashMap<Arc<str>, Option<(PhaseId, Mode)>>,
}

impl PhaseWatch {
    /// Looks at every policy at `now`: a phase other than at the last tick is logged and counted
    /// in `sinkhole_policy_changes_total` (the first sight of a policy is no change: the daemon
    /// did not see it happen), and `sinkhole_policy_next_change_timestamp_seconds` is set.
    pub(crate) fn tick(&mut self, policies: &PolicyTable, now: i64) {
        self.seen.retain(|name, _| policies.iter().any(|p| p.name == *name));
        for policy in policies.iter() {
            // Metrics first, the log line last: whoever sees the line finds them current.
            export_next_change(policy, now);
            let phase = policy.phase_at(now);
            let before = self.seen.insert(Arc::clone(&policy.name), phase);
            if let Some(before) = before
                && before != phase
            {
                changed(policy, phase);
            }
        }
    }
}

/// Logs and counts a change of phase seen.
fn changed(policy: &Policy, phase: Option<(PhaseId, Mode)>) {
    let labels = [
        ("policy", policy.name.to_string()),
        ("mode", mode_label(phase.map(|(_, m)| m)).to_string()),
    ];
    metrics::counter!(crate::metrics::POLICY_CHANGES, &labels).increment(1);
    match phase {
        Some((id, mode)) => {
            tracing::info!(policy = %policy.name, phase = id, mode = %mode.as_str(), "policy enters a phase");
        }
        None => tracing::info!(policy = %policy.name, "policy stops blocking"),
    }
}

/// Sets the next-change gauge of each mode of `policy` (those its timeline has, and `none`): the
/// time on the mode its dates change it to, 0 on the others.
fn export_next_change(policy: &Policy, now: i64) {
    let next = next_change(policy, now);
    let mut modes: Vec<&'static str> = if policy.phases.is_empty() {
        vec![policy.mode.as_str()]
    } else {
        policy.phases.iter().map(|p| p.mode.as_str()).collect()
    };
    modes.push(NONE);
    modes.sort_unstable();
    modes.dedup();
    for mode in modes {
        let value = next
            .filter(|(_, to)| mode_label(*to) == mode)
            .map_or(0.0, |(at, _)| at as f64);
        let labels = [("policy", policy.name.to_string()), ("mode", mode.to_string())];
        metrics::gauge!(crate::metrics::POLICY_NEXT_CHANGE, &labels).set(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Phase, Schedule, Window};

    const DAY: i64 = 86_400;

    /// A table of one policy "staff" with this timeline (read through [`only`]).
    fn policy(window: Window, phases: &[Phase], schedule: Option<Schedule>) -> PolicyTable {
        let spec = crate::policy::PolicySpec {
            name: "staff".into(),
            clients: vec!["10.0.0.0/8".parse().expect("prefix")],
            block: vec![],
            allow: vec![],
            mode: phases.first().map_or(Mode::Enforce, |p| p.mode),
            window,
            phases: phases.to_vec(),
            schedule: schedule.map(Arc::new),
            egress: false,
            answer: crate::answer::BlockAnswer::Nxdomain,
            block_ttl: 60,
            not_ready: false,
        };
        PolicyTable::build(&[spec], &[])
    }

    fn only(table: &PolicyTable) -> &Policy {
        table.iter().next().expect("one policy")
    }

    #[test]
    fn a_window_opens_then_closes_and_then_nothing_changes() {
        let t = policy(
            Window {
                from: Some(1000),
                until: Some(5000),
            },
            &[],
            None,
        );
        let p = only(&t);
        assert_eq!(next_change(p, 0), Some((1000, Some(Mode::Enforce))), "opens");
        assert_eq!(next_change(p, 999), Some((1000, Some(Mode::Enforce))));
        assert_eq!(next_change(p, 1000), Some((5000, None)), "closes");
        assert_eq!(next_change(p, 4999), Some((5000, None)));
        assert_eq!(next_change(p, 5000), None, "over: no change ahead");
    }

    #[test]
    fn a_policy_always_on_has_no_change_ahead() {
        let t = policy(Window::default(), &[], None);
        let p = only(&t);
        assert_eq!(next_change(p, 0), None);
    }

    #[test]
    fn a_grace_period_switches_from_audit_to_enforce_then_stops() {
        let phases = [
            Phase {
                until: 2000,
                mode: Mode::Audit,
            },
            Phase {
                until: 9000,
                mode: Mode::Enforce,
            },
        ];
        let t = policy(
            Window {
                from: Some(1000),
                until: Some(9000),
            },
            &phases,
            None,
        );
        let p = only(&t);
        assert_eq!(next_change(p, 0), Some((1000, Some(Mode::Audit))));
        assert_eq!(next_change(p, 1500), Some((2000, Some(Mode::Enforce))));
        assert_eq!(next_change(p, 2000), Some((9000, None)));
        assert_eq!(next_change(p, 9000), None);
    }

    #[test]
    fn two_phases_of_one_mode_are_still_a_change_of_phase() {
        let phases = [
            Phase {
                until: 2000,
                mode: Mode::Enforce,
            },
            Phase {
                until: 3000,
                mode: Mode::Enforce,
            },
        ];
        let t = policy(
            Window {
                from: Some(1000),
                until: Some(3000),
            },
            &phases,
            None,
        );
        let p = only(&t);
        assert_eq!(next_change(p, 1500), Some((2000, Some(Mode::Enforce))));
    }

    fn office_hours() -> Schedule {
        let zone = jiff::tz::TimeZone::UTC;
        let hours = vec![crate::policy::HourRange::parse("08:00-18:00").expect("hours")];
        // Monday to Friday.
        Schedule::new(0b0001_1111, hours, zone, "UTC".into())
    }

    /// Monday 2024-01-01 00:00:00 UTC.
    const MONDAY: i64 = 1_704_067_200;

    #[test]
    fn weekly_schedule_edges_are_not_the_bans_timeline() {
        // Office hours alone: the ban has no date, so nothing is ahead, however often the
        // schedule turns it on and off.
        let t = policy(Window::default(), &[], Some(office_hours()));
        assert_eq!(next_change(only(&t), MONDAY), None);
        assert_eq!(next_change(only(&t), MONDAY + 9 * 3600), None);
        // A window that opens on Saturday, when office hours block nothing: the ban starts then
        // (its first block comes on Monday at 08:00, which `sinkhole_policy_phase` shows).
        let t = policy(
            Window {
                from: Some(MONDAY + 5 * DAY),
                until: Some(MONDAY + 40 * DAY),
            },
            &[],
            Some(office_hours()),
        );
        let p = only(&t);
        assert_eq!(
            next_change(p, MONDAY + 4 * DAY + 20 * 3600),
            Some((MONDAY + 5 * DAY, Some(Mode::Enforce)))
        );
        // Inside the window, on a Monday morning before office hours: the next change is its end.
        assert_eq!(next_change(p, MONDAY + 7 * DAY + 3600), Some((MONDAY + 40 * DAY, None)));
    }
}
