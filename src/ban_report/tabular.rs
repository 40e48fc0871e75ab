//! The report's aggregates for other tools: JSON (one object) and CSV (one row per count).
//! A hidden count is a string in both, never a number, so that a tool summing a column fails
//! loudly rather than summing what is not there: `"<5"` (with the threshold) for a small count,
//! `"withheld"` for one hidden so that a total does not give a small one away.

use serde_json::{Value, json};

use super::model::{Report, Share};
use super::suppress::Shown;

/// A count hidden not for being small but so that no total gives a small one away.
const WITHHELD: &str = "withheld";

fn cell(shown: Shown, min_count: u64) -> Value {
    match shown {
        Shown::Count(n) => json!(n),
        Shown::Small => json!(format!("<{min_count}")),
        Shown::Withheld => json!(WITHHELD),
    }
}

fn text(shown: Shown, min_count: u64) -> String {
    match shown {
        Shown::Count(n) => n.to_string(),
        Shown::Small => format!("<{min_count}"),
        Shown::Withheld => WITHHELD.to_string(),
    }
}

/// The JSON document.
pub(super) fn json(report: &Report) -> String {
    let m = report.min_count;
    let s = &report.sources;
    let policies: Vec<Value> = report
        .policies
        .iter()
        .map(|p| {
            let networks = match &p.share {
                Share::Known {
                    networks,
                    tried,
                    split,
                    unplaced,
                } => json!({
                    "available": true,
                    "unit": if *split { "/24 and /56 networks" } else { "configured prefixes" },
                    "configured": networks,
                    "with_attempts": cell(*tried, m),
                    "share": tried.value().filter(|_| *networks > 0).map(|t| t as f64 / *networks as f64),
                    "attempts_not_placed": cell(*unplaced, m),
                }),
                Share::NoConfig => json!({"available": false, "why": "no config (-c)"}),
                Share::NotBlocking => json!({"available": false, "why": "not a blocking policy of the config"}),
                Share::NoClients => json!({"available": false, "why": "the hit log holds no client address"}),
            };
            let phases: Vec<Value> = p
                .bands
                .iter()
                .map(|b| json!({"from": b.from, "until": b.until, "mode": b.mode.as_str()}))
                .collect();
            json!({
                "name": p.name,
                "enforce": cell(p.totals[0], m),
                "audit": cell(p.totals[1], m),
                "total": cell(p.totals[2], m),
                "timeline": phases,
                "weekly_schedule": p.weekly,
                "networks": networks,
            })
        })
        .collect();
    let days: Vec<Value> = report
        .days
        .iter()
        .map(|d| {
            let per: serde_json::Map<String, Value> = report
                .policies
                .iter()
                .zip(&d.cells)
                .map(|(p, c)| {
                    (
                        p.name.clone(),
                        json!({"enforce": cell(c[0], m), "audit": cell(c[1], m)}),
                    )
                })
                .collect();
            json!({"date": d.date.to_string(), "policies": per})
        })
        .collect();
    let doc = json!({
        "report": "sinkhole ban report",
        "version": env!("CARGO_PKG_VERSION"),
        "time_zone": "UTC",
        "min_count": m,
        "hidden_count": format!("<{m}"),
        "period": {
            "first_day": report.span().map(|(a, _)| a.to_string()),
            "last_day": report.span().map(|(_, b)| b.to_string()),
        },
        "sources": {
            "files": s.files,
            "lines_read": s.lines,
            "lines_skipped_malformed": s.skipped,
            "lines_outside_period": s.outside,
        },
        "totals": {"enforce": cell(report.totals[0], m), "audit": cell(report.totals[1], m), "total": cell(report.totals[2], m)},
        "policies": policies,
        "days": days,
        "lists": report.lists.iter().map(|(n, c)| json!({"name": n, "enforce": cell(c[0], m), "audit": cell(c[1], m), "total": cell(c[2], m)})).collect::<Vec<_>>(),
        "apexes": report.apexes.iter().map(|(a, c)| json!({"apex": a, "count": cell(*c, m)})).collect::<Vec<_>>(),
        "other_apexes": cell(report.other_apexes, m),
        "protocols": report.protocols.iter().map(|(p, c)| (p.to_string(), cell(*c, m))).collect::<serde_json::Map<_, _>>(),
    });
    let mut out = serde_json::to_string_pretty(&doc).unwrap_or_default();
    out.push('\n');
    out
}

/// A CSV field, quoted when it must be (RFC 4180).
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The CSV: `table,day,policy,mode,name,count`, one row per count; `name` is the list, apex,
/// protocol or source figure the row is about.
pub(super) fn csv(report: &Report) -> String {
    let m = report.min_count;
    let mut out = String::from("table,day,policy,mode,name,count\n");
    let mut row = |table: &str, day: &str, policy: &str, mode: &str, name: &str, count: String| {
        out.push_str(&[table, day, policy, mode, name, &count].map(field).join(","));
        out.push('\n');
    };
    let s = &report.sources;
    row("source", "", "", "", "lines_read", s.lines.to_string());
    row("source", "", "", "", "lines_skipped_malformed", s.skipped.to_string());
    row("source", "", "", "", "lines_outside_period", s.outside.to_string());
    row("source", "", "", "", "min_count", m.to_string());
    for (i, mode) in ["enforce", "audit", "total"].iter().enumerate() {
        row("total", "", "", mode, "", text(report.totals[i], m));
    }
    for p in &report.policies {
        for (i, mode) in ["enforce", "audit", "total"].iter().enumerate() {
            row("policy", "", &p.name, mode, "", text(p.totals[i], m));
        }
        if let Share::Known { networks, tried, .. } = &p.share {
            row("networks", "", &p.name, "", "configured", networks.to_string());
            row("networks", "", &p.name, "", "with_attempts", text(*tried, m));
        }
    }
    for d in &report.days {
        let date = d.date.to_string();
        for (p, c) in report.policies.iter().zip(&d.cells) {
            row("day", &date, &p.name, "enforce", "", text(c[0], m));
            row("day", &date, &p.name, "audit", "", text(c[1], m));
        }
    }
    for (name, c) in &report.lists {
        for (i, mode) in ["enforce", "audit", "total"].iter().enumerate() {
            row("list", "", "", mode, name, text(c[i], m));
        }
    }
    for (apex, c) in &report.apexes {
        row("apex", "", "", "", apex, text(*c, m));
    }
    row("apex", "", "", "", "(other)", text(report.other_apexes, m));
    for (p, c) in &report.protocols {
        row("protocol", "", "", "", p, text(*c, m));
    }
    out
}
