//! What `GET /ready` says: every listener bound, the lists of each policy that fails closed and
//! enforces now loaded, and at least one upstream usable. A pure function of the snapshot and
//! the clock, read on a request or a scrape, never per query.

use std::time::Duration;

use serde_json::json;

use crate::policy::Mode;
use crate::state::Snapshot;

/// The word of a check that passes.
const OK: &str = "ok";

/// The answer to `/ready`, and what `sinkhole_ready` and `sinkhole_upstream_up` show.
#[derive(Debug)]
pub(super) struct Report {
    /// All checks pass.
    pub(super) ready: bool,
    /// `ok`, or why the listeners are not ready.
    listeners: String,
    /// `ok`, or which lists have not loaded, for which policy.
    lists: String,
    /// `ok`, or which upstreams are down and since when.
    upstreams: String,
    /// Each upstream's label and whether it is usable now.
    pub(super) upstream_up: Vec<(String, bool)>,
}

impl Report {
    /// The JSON body: `{"ready":bool,"checks":{"listeners":..,"lists":..,"upstreams":..}}`.
    pub(super) fn json(&self) -> String {
        let body = json!({
            "ready": self.ready,
            "checks": {
                "listeners": self.listeners,
                "lists": self.lists,
                "upstreams": self.upstreams,
            },
        });
        format!("{body}\n")
    }
}

/// Readiness at `now` (Unix seconds): `bound` once every listener is, `snapshot` once the state
/// is built (None while the daemon is still starting).
pub(super) fn evaluate(bound: bool, snapshot: Option<&Snapshot>, now: i64) -> Report {
    let listeners = match bound {
        true => OK.to_string(),
        false => "not bound yet (starting)".to_string(),
    };
    let Some(snapshot) = snapshot else {
        return Report {
            ready: false,
            listeners,
            lists: "not loaded yet (starting)".into(),
            upstreams: "not known yet (starting)".into(),
            upstream_up: Vec::new(),
        };
    };
    let lists = lists(snapshot, now);
    let upstream_up: Vec<(String, bool)> = snapshot
        .upstream
        .health()
        .map(|(label, down)| (label.to_string(), down.is_none()))
        .collect();
    let upstreams = upstreams(snapshot, now);
    Report {
        ready: bound && lists == OK && upstreams == OK,
        listeners,
        lists,
        upstreams,
        upstream_up,
    }
}

/// `ok`, or the lists that have never loaded of each policy that fails closed for want of them
/// and enforces now: its clients get SERVFAIL (EDE "Not Ready") until they load. A policy with
/// `on_missing_list = "open"`, auditing, or outside its window serves anyway, and counts as
/// ready (`sinkhole_list_loaded` shows its missing list).
fn lists(snapshot: &Snapshot, now: i64) -> String {
    let rules = &snapshot.rules;
    let mut missing = Vec::new();
    for policy in rules.policies.iter() {
        if !policy.not_ready || !matches!(policy.phase_at(now), Some((_, Mode::Enforce))) {
            continue;
        }
        for (list, _) in &policy.block {
            let Some(list) = rules.lists.get(*list) else {
                continue;
            };
            let never_loaded = snapshot
                .url_lists
                .iter()
                .any(|status| *status.name == *list.name && status.missing());
            if never_loaded {
                missing.push(format!("list {} (policy {}) has not loaded", list.name, policy.name));
            }
        }
    }
    match missing.is_empty() {
        true => OK.to_string(),
        false => missing.join("; "),
    }
}

/// `ok` while some upstream is usable; else every one with the time its failures began.
fn upstreams(snapshot: &Snapshot, now: i64) -> String {
    let down: Vec<(&str, Option<Duration>)> = snapshot.upstream.health().collect();
    if down.iter().any(|(_, down)| down.is_none()) {
        return OK.to_string();
    }
    if down.is_empty() {
        return "no upstream configured".to_string();
    }
    let servers: Vec<String> = down
        .iter()
        .map(|(label, down_for)| {
            let secs = down_for.map_or(0, |d| d.as_secs());
            let since = jiff::Timestamp::from_second(now.saturating_sub(i64::try_from(secs).unwrap_or(0)))
                .map_or_else(|_| "?".to_string(), |t| t.to_string());
            format!("{label} down since {since}")
        })
        .collect();
    format!("no upstream healthy: {}", servers.join(", "))
}
