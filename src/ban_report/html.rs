//! The report as one HTML file an office can attach to a memo: inline CSS (A4 when printed),
//! inline SVG charts, tables beside them, a methods paragraph. No script and no external URL,
//! so that it opens the same offline, in a mail client, or years later.

use std::fmt::Write;

use super::labels::Labels;
use super::model::{Band, Report, Share};
use super::suppress::Shown;
use super::svg;
use crate::policy::Mode;

const STYLE: &str = "body{font-family:'DejaVu Sans',Arial,Helvetica,sans-serif;color:#1a1a1a;max-width:960px;margin:24px auto;padding:0 12px;font-size:14px;line-height:1.45}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #bbb;padding-bottom:2px}
.sub{color:#444;margin:0 0 12px}table{border-collapse:collapse;margin:6px 0 10px}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f0f0f0}.chart{width:100%;height:auto;display:block}
.legend{display:flex;flex-wrap:wrap;gap:6px 16px;font-size:12px;margin:6px 0}.legend span{display:inline-flex;align-items:center;gap:5px}
.sw{display:inline-block;width:14px;height:12px;border:1px solid #999}.hatch{background:repeating-linear-gradient(45deg,#fff 0 2px,#777 2px 4px)}
.note{color:#444;font-size:12px}.methods p{margin:6px 0}
@page{size:A4;margin:14mm}
@media print{body{margin:0;max-width:none;font-size:11pt}h2{break-after:avoid}section,svg,table{break-inside:avoid}.appendix{break-before:page}}";

/// Escapes text for HTML (and SVG) content and attributes.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A count as shown: the number, or `< N` when hidden (escaped).
pub(super) fn count(shown: Shown, min_count: u64, labels: &Labels) -> String {
    match shown {
        Shown::Count(n) => n.to_string(),
        Shown::Small => format!("&lt; {min_count}"),
        Shown::Withheld => esc(labels.withheld),
    }
}

fn time(t: Option<i64>) -> Option<String> {
    let t = jiff::Timestamp::from_second(t?).ok()?;
    Some(
        t.to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .strftime("%Y-%m-%d %H:%M UTC")
            .to_string(),
    )
}

fn timeline(bands: &[Band], labels: &Labels) -> String {
    bands
        .iter()
        .map(|b| {
            let mode = if b.mode == Mode::Audit {
                labels.legend_grace
            } else {
                labels.legend_enforcement
            };
            let from = time(b.from).map(|t| format!("{} {t}", labels.opens));
            let until = time(b.until).map(|t| format!("{} {t}", labels.closes));
            let when: Vec<String> = from.into_iter().chain(until).collect();
            format!("{}: {}", when.join(" "), esc(mode))
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

fn share(share: &Share, min_count: u64, labels: &Labels) -> String {
    match share {
        Share::NoConfig => esc(labels.share_no_config),
        Share::NotBlocking => esc(labels.share_not_blocking),
        Share::NoClients => esc(labels.share_no_clients),
        Share::Known { networks, tried, .. } => match tried {
            Shown::Count(n) if *networks > 0 => format!(
                "{n} {} {networks} ({:.0} %)",
                labels.of,
                *n as f64 * 100.0 / *networks as f64
            ),
            _ => format!("{} {} {networks}", count(*tried, min_count, labels), labels.of),
        },
    }
}

/// The whole page.
pub(super) fn render(report: &Report, labels: &Labels) -> String {
    let m = report.min_count;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{}</title><style>{STYLE}</style></head><body>",
        esc(labels.title)
    );
    let period = match report.span() {
        Some((a, b)) => format!("{a} – {b} ({})", labels.days_in_utc),
        None => "–".into(),
    };
    let _ = write!(
        h,
        "<h1>{}</h1><p class=\"sub\">{}<br>{}: {period}. {}: {}.</p>",
        esc(labels.title),
        esc(labels.subtitle),
        esc(labels.period),
        esc(labels.generated),
        jiff::Timestamp::now()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .strftime("%Y-%m-%d %H:%M UTC")
    );

    // Summary.
    let _ = write!(
        h,
        "<section><h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        esc(labels.summary),
        esc(labels.policy),
        esc(labels.enforce),
        esc(labels.audit),
        esc(labels.total),
        esc(labels.networks_tried),
        esc(labels.timeline)
    );
    for p in &report.policies {
        let weekly = if p.weekly {
            format!("<br>{}", esc(labels.weekly))
        } else {
            String::new()
        };
        let tl = if p.bands.is_empty() {
            esc(labels.always)
        } else {
            timeline(&p.bands, labels)
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{tl}{weekly}</td></tr>",
            esc(&p.name),
            count(p.totals[0], m, labels),
            count(p.totals[1], m, labels),
            count(p.totals[2], m, labels),
            share(&p.share, m, labels)
        );
    }
    let _ = write!(
        h,
        "<tr><th>{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td></td><td></td></tr></table></section>",
        esc(labels.total),
        count(report.totals[0], m, labels),
        count(report.totals[1], m, labels),
        count(report.totals[2], m, labels)
    );

    // Per day.
    let _ = write!(h, "<section><h2>{}</h2>", esc(labels.per_day));
    if report.days.is_empty() || report.totals[2] == Shown::Count(0) {
        let _ = write!(h, "<p>{}</p>", esc(labels.no_hits));
    }
    h.push_str(&svg::per_day(report, labels));
    h.push_str("<div class=\"legend\">");
    for (i, p) in report.policies.iter().enumerate() {
        let _ = write!(
            h,
            "<span><i class=\"sw\" style=\"background:{}\"></i>{} – {}</span><span><i class=\"sw\" style=\"background:{}\"></i>{} – {}</span>",
            svg::colour(i, false),
            esc(&p.name),
            esc(labels.enforce),
            svg::colour(i, true),
            esc(&p.name),
            esc(labels.audit)
        );
    }
    let _ = write!(
        h,
        "<span><i class=\"sw\" style=\"background:{}\"></i>{}</span><span><i class=\"sw\" style=\"background:{}\"></i>{}</span><span><i class=\"sw\" style=\"border-left:2px dashed #222;border-top:0;border-bottom:0;border-right:0;width:6px\"></i>{}</span><span><i class=\"sw hatch\"></i>{} ({m})</span></div><p class=\"note\">{}</p></section>",
        svg::GRACE,
        esc(labels.legend_grace),
        svg::ENFORCEMENT,
        esc(labels.legend_enforcement),
        esc(labels.legend_window),
        esc(labels.legend_hidden),
        esc(labels.per_day_caption)
    );

    // Lists.
    let _ = write!(
        h,
        "<section><h2>{}</h2><table><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        esc(labels.lists),
        esc(labels.list),
        esc(labels.enforce),
        esc(labels.audit),
        esc(labels.total)
    );
    for (name, c) in &report.lists {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(name),
            count(c[0], m, labels),
            count(c[1], m, labels),
            count(c[2], m, labels)
        );
    }
    h.push_str("</table></section>");

    // Apexes.
    let _ = write!(h, "<section><h2>{}</h2>", esc(labels.apexes));
    h.push_str(&svg::apexes(report, labels));
    let _ = write!(
        h,
        "<p>{}: {}</p></section>",
        esc(labels.other_apexes),
        count(report.other_apexes, m, labels)
    );

    // Protocols.
    let _ = write!(
        h,
        "<section><h2>{}</h2><table><tr><th>{}</th><th>{}</th></tr>",
        esc(labels.protocols),
        esc(labels.protocol),
        esc(labels.attempts)
    );
    for (i, (_, c)) in report.protocols.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(labels.protocol_names[i]),
            count(*c, m, labels)
        );
    }
    h.push_str("</table></section>");

    // Methods.
    let _ = write!(h, "<section class=\"methods\"><h2>{}</h2>", esc(labels.methods));
    for paragraph in methods(report) {
        let _ = write!(h, "<p>{}</p>", esc(&paragraph));
    }
    h.push_str("</section>");

    // Appendix: the daily counts.
    let _ = write!(
        h,
        "<section class=\"appendix\"><h2>{}</h2><table><tr><th>{}</th>",
        esc(labels.appendix),
        esc(labels.day)
    );
    for p in &report.policies {
        let _ = write!(
            h,
            "<th>{} – {}</th><th>{} – {}</th>",
            esc(&p.name),
            esc(labels.enforce),
            esc(&p.name),
            esc(labels.audit)
        );
    }
    h.push_str("</tr>");
    for day in &report.days {
        let _ = write!(h, "<tr><td>{}</td>", day.date);
        for c in &day.cells {
            let _ = write!(
                h,
                "<td class=\"n\">{}</td><td class=\"n\">{}</td>",
                count(c[0], m, labels),
                count(c[1], m, labels)
            );
        }
        h.push_str("</tr>");
    }
    h.push_str("</table></section></body></html>\n");
    h
}

/// The methods paragraph, as sentences (English: the labels hold the short words; this text is
/// one block to translate).
pub(super) fn methods(report: &Report) -> Vec<String> {
    let s = &report.sources;
    let m = report.min_count;
    let bound = |b: Option<super::Bound>, default: &str| match b {
        Some(super::Bound::Day(d)) => d.to_string(),
        Some(super::Bound::Instant(t)) => t.to_string(),
        None => default.to_string(),
    };
    let mut out = vec![
        format!(
            "Sources: the sinkhole hit log{} {}. {} lines were read; {} malformed lines were skipped; {} lines fell outside the period ({} to {}). Days are UTC days.",
            if s.files.len() == 1 { "" } else { "s" },
            s.files.join(", "),
            s.lines,
            s.skipped,
            s.outside,
            bound(s.from, "the first hit"),
            bound(s.until, "the last hit")
        ),
        "What is counted: each line of the hit log is one DNS query for a name of a blocked list, from a client \
         of a blocking policy: blocked when the policy enforced (its answer was sent), only logged when it audited \
         (the grace period: the query was answered normally). Devices repeat queries on their own, so attempts \
         are not people, nor devices. A domain is shown by its apex: the rule of the list that matched, never \
         the name asked below it."
            .to_string(),
        format!(
            "Small counts: every count from 1 to {} is shown as \"< {m}\" (0 is shown). So that no total gives a \
             hidden count away by subtraction, every sum in the report (a policy over its days and over its modes, a list over its modes, the total over days, policies, lists, domains and protocols) \
             hides either none of its terms or at least two: where only one is hidden, another non-zero term is \
             hidden too, shown as \"withheld\" (the one that leaves the fewest other sums with a single hidden \
             term, the smallest of those). Charts draw a hidden count at {m}, hatched, not to scale.",
            m - 1
        ),
    ];
    let split = report
        .policies
        .iter()
        .any(|p| matches!(p.share, Share::Known { split: true, .. }));
    out.push(if report.config_given {
        format!(
            "Networks that tried: for each blocking policy, its configured client prefixes{}, and how many of them \
             had at least one attempt. A client's address is used only to place its attempt in a network and is \
             written nowhere; where the hit log holds no address (log.client_ip = \"none\" or \"hashed\"), the \
             share is not available.",
            if split {
                " cut into /24 (IPv4) and /56 (IPv6) networks (a prefix that would give more than 1024 counts as one)"
            } else {
                ""
            }
        )
    } else {
        "Networks that tried: not available, as the report was made without the daemon's configuration (-c), \
         which names the policies' client prefixes."
            .to_string()
    });
    out.push(
        "What is not in this report, and why: no client address (whole, truncated or hashed), no name asked below \
         its apex, no allowed query (sinkhole never logs them), and no figure per person or device. The \
         administration has promised not to inventory its staff's private applications: the report counts \
         attempts to reach the banned applications on its networks, and nothing that could single out who made \
         them."
            .to_string(),
    );
    out
}
