//! The report's charts as inline SVG, by hand: a stacked bar chart of attempts per day and
//! policy over the policies' timelines, and a bar chart of the top apexes. Hand-made rather than
//! a chart crate's so that the file needs no font library and no script: text is SVG `<text>`
//! in the page's fonts, and inline SVG in HTML needs no namespace URL. A hidden count is drawn
//! at the threshold, hatched, so that no bar gives it away by its height.

use std::fmt::Write;

use super::html::esc;
use super::labels::Labels;
use super::model::Report;
use super::suppress::Shown;
use crate::policy::Mode;

/// The policies' colours (enforce), in order; audit is the same hue, lighter.
pub(super) const PALETTE: [(u8, u8, u8); 6] = [
    (0x1f, 0x5f, 0xa8),
    (0x2a, 0x8a, 0x3e),
    (0x8a, 0x4f, 0xbf),
    (0xb3, 0x5c, 0x00),
    (0x00, 0x83, 0x8f),
    (0x6d, 0x4c, 0x41),
];
/// The grace period's background.
pub(super) const GRACE: &str = "#fdeeb5";
/// The enforcement period's background.
pub(super) const ENFORCEMENT: &str = "#f6d5d5";
/// The apex bars.
pub(super) const APEX: &str = "#3b6e8f";

/// A policy's colour in a mode, as `#rrggbb`.
pub(super) fn colour(policy: usize, audit: bool) -> String {
    let (r, g, b) = PALETTE[policy % PALETTE.len()];
    let tint = |c: u8| {
        if audit {
            c + ((255 - c) as u16 * 11 / 20) as u8
        } else {
            c
        }
    };
    format!("#{:02x}{:02x}{:02x}", tint(r), tint(g), tint(b))
}

/// The pattern hidden counts are filled with.
pub(super) const HATCH_DEFS: &str = r##"<defs><pattern id="hidden" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#ffffff"/><line x1="0" y1="0" x2="0" y2="6" stroke="#777777" stroke-width="2.5"/></pattern></defs>"##;

/// A height drawn for a count: hidden ones at the threshold.
fn drawn(count: Shown, min_count: u64) -> u64 {
    count.value().unwrap_or(min_count)
}

/// A step for about five ticks up to `max`.
fn tick_step(max: u64) -> u64 {
    let rough = (max / 5).max(1);
    let magnitude = 10u64.pow(rough.ilog10());
    [1, 2, 5, 10]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= rough)
        .unwrap_or(rough)
}

/// The stacked chart of attempts per day and policy.
pub(super) fn per_day(report: &Report, labels: &Labels) -> String {
    let Some((first, last)) = report.span() else {
        return String::new();
    };
    let n = report.days.len().max(1);
    let (left, top, plot_w, plot_h) = (56.0, 12.0, 880.0, 280.0);
    let lane_h = 14.0;
    let lanes = report.policies.iter().filter(|p| !p.bands.is_empty()).count();
    let height = top + plot_h + 34.0 + lanes as f64 * (lane_h + 4.0) + 8.0;
    let max = report
        .days
        .iter()
        .map(|d| {
            d.cells
                .iter()
                .flatten()
                .map(|&c| drawn(c, report.min_count))
                .sum::<u64>()
        })
        .max()
        .unwrap_or(0)
        .max(report.min_count);
    let step = tick_step(max);
    let top_value = max.div_ceil(step) * step;
    let y = |v: u64| top + plot_h - plot_h * v as f64 / top_value as f64;
    let slot = plot_w / n as f64;
    let day_start = |d: jiff::civil::Date| super::day_number(d);
    let x_of_time = |t: Option<i64>, default: f64| {
        t.map_or(default, |t| {
            let days = (t as f64 / 86_400.0) - f64::from(day_start(first));
            (left + days * slot).clamp(left, left + plot_w)
        })
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" role="img" aria-label="{}" viewBox="0 0 960 {height:.0}">{HATCH_DEFS}"#,
        esc(labels.per_day)
    );
    // Background bands: each policy's grace and enforcement periods, over the whole plot.
    for policy in &report.policies {
        for band in &policy.bands {
            let (x0, x1) = (x_of_time(band.from, left), x_of_time(band.until, left + plot_w));
            if x1 > x0 {
                let fill = if band.mode == Mode::Audit { GRACE } else { ENFORCEMENT };
                let _ = write!(
                    s,
                    r#"<rect class="band" x="{x0:.1}" y="{top}" width="{:.1}" height="{plot_h}" fill="{fill}" fill-opacity="0.8"/>"#,
                    x1 - x0
                );
            }
        }
    }
    // Axis and grid.
    let mut v = 0;
    while v <= top_value {
        let yy = y(v);
        let _ = write!(
            s,
            r##"<line x1="{left}" x2="{:.0}" y1="{yy:.1}" y2="{yy:.1}" stroke="#cccccc" stroke-width="0.6"/><text x="{:.0}" y="{:.1}" font-size="11" text-anchor="end">{v}</text>"##,
            left + plot_w,
            left - 6.0,
            yy + 4.0
        );
        v += step;
    }
    // Bars.
    for (i, day) in report.days.iter().enumerate() {
        let x = left + i as f64 * slot + slot * 0.1;
        let w = (slot * 0.8).max(1.0);
        let mut base = 0u64;
        for (p, cell) in day.cells.iter().enumerate() {
            for (m, audit) in [(0usize, false), (1, true)] {
                let count = cell[m];
                if count == Shown::Count(0) {
                    continue;
                }
                let h = drawn(count, report.min_count);
                let fill = match count {
                    Shown::Count(_) => colour(p, audit),
                    Shown::Small | Shown::Withheld => "url(#hidden)".into(),
                };
                let (y0, y1) = (y(base + h), y(base));
                let _ = write!(
                    s,
                    r#"<rect class="bar" x="{x:.1}" y="{y0:.1}" width="{w:.1}" height="{:.1}" fill="{fill}"/>"#,
                    y1 - y0
                );
                base += h;
            }
        }
    }
    let every = n.div_ceil(12);
    for (i, day) in report.days.iter().enumerate().step_by(every) {
        let x = left + (i as f64 + 0.5) * slot;
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{:.0}" font-size="11" text-anchor="middle">{}</text>"#,
            top + plot_h + 16.0,
            day.date.strftime("%m-%d")
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{left}" x2="{:.0}" y1="{:.1}" y2="{:.1}" stroke="#333333"/>"##,
        left + plot_w,
        top + plot_h,
        top + plot_h
    );
    // Lanes: each policy's timeline on its own line, with the window's ends marked.
    let mut lane_y = top + plot_h + 26.0;
    for policy in report.policies.iter().filter(|p| !p.bands.is_empty()) {
        let _ = write!(
            s,
            r#"<text x="{:.0}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"#,
            left - 6.0,
            lane_y + 10.0,
            esc(&policy.name)
        );
        for band in &policy.bands {
            let (x0, x1) = (x_of_time(band.from, left), x_of_time(band.until, left + plot_w));
            if x1 > x0 {
                let fill = if band.mode == Mode::Audit { GRACE } else { ENFORCEMENT };
                let _ = write!(
                    s,
                    r##"<rect x="{x0:.1}" y="{lane_y:.1}" width="{:.1}" height="{lane_h}" fill="{fill}" stroke="#999999" stroke-width="0.5"/>"##,
                    x1 - x0
                );
            }
        }
        let ends = [
            policy.bands.first().and_then(|b| b.from),
            policy.bands.last().and_then(|b| b.until),
        ];
        for t in ends.into_iter().flatten() {
            let x = x_of_time(Some(t), left);
            if x > left && x < left + plot_w {
                let _ = write!(
                    s,
                    r##"<line class="window" x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{:.1}" stroke="#222222" stroke-dasharray="4 3"/>"##,
                    lane_y + lane_h
                );
            }
        }
        lane_y += lane_h + 4.0;
    }
    let _ = last;
    s.push_str("</svg>");
    s
}

/// The bar chart of the top apexes.
pub(super) fn apexes(report: &Report, labels: &Labels) -> String {
    let rows = report.apexes.len();
    if rows == 0 {
        return String::new();
    }
    let (label_w, bar_w, row_h) = (260.0, 560.0, 22.0);
    let max = report
        .apexes
        .iter()
        .map(|(_, c)| drawn(*c, report.min_count))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" role="img" aria-label="{}" viewBox="0 0 960 {:.0}">{HATCH_DEFS}"#,
        esc(labels.apexes),
        rows as f64 * row_h + 8.0
    );
    for (i, (apex, count)) in report.apexes.iter().enumerate() {
        let y = 4.0 + i as f64 * row_h;
        let w = (bar_w * drawn(*count, report.min_count) as f64 / max as f64).max(1.0);
        let fill = if count.value().is_some() {
            APEX.to_string()
        } else {
            "url(#hidden)".into()
        };
        let _ = write!(
            s,
            r#"<text x="{:.0}" y="{:.1}" font-size="12" text-anchor="end">{}</text><rect class="bar" x="{label_w}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{fill}"/><text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            label_w - 8.0,
            y + 14.0,
            esc(apex),
            row_h - 6.0,
            label_w + w + 6.0,
            y + 14.0,
            super::html::count(*count, report.min_count, labels)
        );
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(5), 1);
        assert_eq!(tick_step(47), 10);
        assert_eq!(tick_step(1234), 500);
    }

    #[test]
    fn audit_is_a_lighter_shade_of_the_policy_colour() {
        assert_eq!(colour(0, false), "#1f5fa8");
        assert_eq!(colour(0, true), "#9ab7d7");
    }
}
