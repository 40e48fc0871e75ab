//! `sinkhole report`: the ban report, made from hit logs, for an office to attach to a memo: blocked
//! attempts per day per policy (audit and enforce told apart, the policy's window and phases
//! marked), the lists, the top blocked apexes, the protocols, and the share of a blocking
//! policy's client networks that tried at all; as one self-contained HTML file, or as JSON or
//! CSV for other tools.
//!
//! It must not become a file on anyone: no client address (hashed or not) and no name below an
//! apex is ever written, and every count under `--min-count` is hidden along with whatever total
//! would give it away (`suppress`). Logs are streamed (`read`) into bounded aggregates
//! (`aggregate`); `model` turns them into the report as shown, which `html` (with `svg`) and
//! `tabular` write. The policies' windows come from the daemon's own config loader.

mod aggregate;
mod html;
mod labels;
mod model;
mod read;
mod suppress;
mod svg;
mod tabular;

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;

use crate::config::ConfigError;
use crate::state::ConfigSource;

/// The longest span of days a report draws: a chart of more is unreadable, and a stray line
/// dated years away must not make one.
const MAX_DAYS: i64 = 1100;

/// `sinkhole report`'s options.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Hit log files (plain or gzipped, as logrotate leaves them), in any order.
    #[arg(long, value_name = "FILE", num_args = 1.., required = true)]
    pub hits: Vec<PathBuf>,
    /// The daemon's config: marks each policy's window and phases on the chart, and gives the
    /// client prefixes for the share of networks that tried.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// First day (YYYY-MM-DD, a UTC day) or instant (RFC 3339) counted. Default: the first hit.
    #[arg(long, value_name = "DATE")]
    pub from: Option<Bound>,
    /// Last day (YYYY-MM-DD, inclusive, a UTC day) or instant (RFC 3339) counted. Default: the
    /// last hit.
    #[arg(long, value_name = "DATE")]
    pub until: Option<Bound>,
    /// Counts below this are shown as "< N" (and hidden with any total that would give them away).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub min_count: u64,
    /// html (one self-contained file), json or csv.
    #[arg(long, value_name = "FORMAT", default_value = "html")]
    pub format: Format,
    /// Write to this file (replaced whole, never half-written) rather than to stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// What the report is written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One HTML file: inline CSS and SVG, no script, no external URL.
    Html,
    /// The aggregates as one JSON object.
    Json,
    /// The aggregates as CSV rows.
    Csv,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Format, String> {
        match s {
            "html" => Ok(Format::Html),
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            other => Err(format!("unknown format {other:?}: use html, json or csv")),
        }
    }
}

/// A `--from`/`--until` value: a whole UTC day, or an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// `YYYY-MM-DD`: the whole day, in UTC.
    Day(jiff::civil::Date),
    /// RFC 3339 with an offset.
    Instant(jiff::Timestamp),
}

impl FromStr for Bound {
    type Err = String;

    fn from_str(s: &str) -> Result<Bound, String> {
        if let Ok(day) = s.parse::<jiff::civil::Date>()
            && s.len() == 10
        {
            return Ok(Bound::Day(day));
        }
        s.parse::<jiff::Timestamp>().map(Bound::Instant).map_err(|_| {
            format!("{s:?}: give a day as YYYY-MM-DD (UTC) or an RFC 3339 time like 2026-03-01T00:00:00+01:00")
        })
    }
}

impl Bound {
    /// The first nanosecond it stands for (as `--from`).
    fn start_ns(self) -> i128 {
        match self {
            Bound::Day(day) => i128::from(day_number(day)) * 86_400 * 1_000_000_000,
            Bound::Instant(t) => t.as_nanosecond(),
        }
    }

    /// The first nanosecond after it (as the inclusive `--until`).
    fn end_ns(self) -> i128 {
        match self {
            Bound::Day(day) => (i128::from(day_number(day)) + 1) * 86_400 * 1_000_000_000,
            Bound::Instant(t) => t.as_nanosecond() + 1,
        }
    }

    /// Its UTC day (days since 1970-01-01).
    fn day(self) -> i32 {
        match self {
            Bound::Day(day) => day_number(day),
            Bound::Instant(t) => i32::try_from(t.as_second().div_euclid(86_400)).unwrap_or(0),
        }
    }
}

/// Days since 1970-01-01 of a civil date.
fn day_number(day: jiff::civil::Date) -> i32 {
    let epoch = jiff::civil::date(1970, 1, 1);
    epoch.until(day).map(|span| span.get_days()).unwrap_or(0)
}

/// The civil date of a day number.
pub(crate) fn date_of(day: i32) -> jiff::civil::Date {
    jiff::Timestamp::from_second(i64::from(day) * 86_400)
        .map(|t| t.to_zoned_datetime(jiff::tz::TimeZone::UTC).date())
        .unwrap_or_default()
}

/// Why no report was written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A hit log could not be opened or read (line 0: opening it).
    #[error("{}{}: cannot read the hit log: {source}", path.display(), if *line > 0 { format!(": line {line}") } else { String::new() })]
    Read {
        /// The file.
        path: PathBuf,
        /// The line being read.
        line: u64,
        /// Why.
        source: std::io::Error,
    },
    /// The config did not load.
    #[error("{0}\nthe config has errors; `sinkhole check -c FILE` shows them all")]
    Config(#[from] ConfigError),
    /// `--from` is after `--until`.
    #[error("--from is after --until: the period is empty")]
    EmptyPeriod,
    /// The hits span more days than a chart can show.
    #[error("the hits span {0} days, more than {MAX_DAYS}: choose a period with --from and --until")]
    TooManyDays(i64),
    /// The report could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The output file (or `-` for stdout).
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What `report` read and wrote, for its closing line on stderr.
#[derive(Debug)]
pub struct Summary {
    /// Lines read, all files together.
    pub lines: u64,
    /// Lines that were not hits.
    pub skipped: u64,
    /// The first of them, as `file:line: why`.
    pub first_skipped: Option<String>,
    /// Lines outside `--from`/`--until`.
    pub outside: u64,
    /// Hits counted.
    pub counted: u64,
    /// Where the report went.
    pub output: Option<PathBuf>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sinkhole report: {} lines read, {} hits counted, {} outside the period, {} malformed lines skipped",
            self.lines, self.counted, self.outside, self.skipped
        )?;
        if let Some(first) = &self.first_skipped {
            write!(f, " (first: {first})")?;
        }
        if let Some(path) = &self.output {
            write!(f, "; written to {}", path.display())?;
        }
        Ok(())
    }
}

/// Reads the logs, writes the report.
pub fn run(args: &Args) -> Result<Summary, ReportError> {
    let config = args
        .config
        .as_ref()
        .map(|path| ConfigSource::File(path.clone()).load())
        .transpose()?;
    let period = aggregate::Period {
        from: args.from.map(Bound::start_ns),
        until: args.until.map(Bound::end_ns),
    };
    if let (Some(from), Some(until)) = (period.from, period.until)
        && from >= until
    {
        return Err(ReportError::EmptyPeriod);
    }
    let mut tally = aggregate::Tally::default();
    if let Some(config) = &config {
        // The blocking policies, in the config's order, each with its row even without a hit
        // (a policy that saw no attempt is news too); exempt ones (`block = []`) never hit.
        for policy in config.policies.iter().filter(|p| !p.block.is_empty()) {
            tally.policies.declare(policy.name.get_ref());
            let clients: Vec<ipnet::IpNet> = policy.clients.get_ref().iter().map(|c| *c.get_ref()).collect();
            if let Some(i) = tally.policies.get(policy.name.get_ref()) {
                tally.networks.insert(i, aggregate::Networks::new(&clients));
            }
        }
    }
    let mut summary = Summary {
        lines: 0,
        skipped: 0,
        first_skipped: None,
        outside: 0,
        counted: 0,
        output: args.output.clone(),
    };
    for path in &args.hits {
        let mut file = read::HitFile::open(path)?;
        while let Some(line) = file.next_line()? {
            summary.lines += 1;
            let why = match line {
                read::Line::TooLong => Some("line too long"),
                read::Line::Text(text) if text.iter().all(u8::is_ascii_whitespace) => {
                    summary.lines -= 1;
                    None
                }
                read::Line::Text(text) => match tally.add(text, period) {
                    Ok(()) => {
                        // Stop early rather than hold a day for each line of a log whose dates
                        // are nonsense: no chart of more than MAX_DAYS is drawn anyway.
                        if let (Some((&first, _)), Some((&last, _))) =
                            (tally.days.first_key_value(), tally.days.last_key_value())
                        {
                            let days = i64::from(last) - i64::from(first) + 1;
                            if days > MAX_DAYS {
                                return Err(ReportError::TooManyDays(days));
                            }
                        }
                        None
                    }
                    Err(aggregate::Skip::OutsidePeriod) => {
                        summary.outside += 1;
                        None
                    }
                    Err(aggregate::Skip::Malformed(why)) => Some(why),
                },
            };
            if let Some(why) = why {
                summary.skipped += 1;
                if summary.first_skipped.is_none() {
                    summary.first_skipped = Some(format!("{}:{}: {why}", file.path().display(), file.line_number()));
                }
            }
        }
    }
    summary.counted = tally.total();
    let first = args.from.map(Bound::day).or_else(|| tally.days.keys().next().copied());
    let last = args
        .until
        .map(Bound::day)
        .or_else(|| tally.days.keys().next_back().copied());
    let span = match (first, last) {
        (Some(first), Some(last)) => {
            let days = i64::from(last) - i64::from(first) + 1;
            if days > MAX_DAYS {
                return Err(ReportError::TooManyDays(days));
            }
            Some((first, last))
        }
        _ => None,
    };
    let sources = model::Sources {
        files: args.hits.iter().map(|p| p.display().to_string()).collect(),
        lines: summary.lines,
        skipped: summary.skipped,
        outside: summary.outside,
        from: args.from,
        until: args.until,
    };
    let report = model::build(&tally, config.as_ref(), span, sources, args.min_count);
    let text = match args.format {
        Format::Html => html::render(&report, &labels::EN),
        Format::Json => tabular::json(&report),
        Format::Csv => tabular::csv(&report),
    };
    write_out(args.output.as_ref(), text.as_bytes())?;
    Ok(summary)
}

/// Writes to stdout, or beside the target and renamed over it, so that a reader never sees
/// half a report.
fn write_out(output: Option<&PathBuf>, bytes: &[u8]) -> Result<(), ReportError> {
    let Some(path) = output else {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(|source| ReportError::Write {
                path: PathBuf::from("-"),
                source,
            });
    };
    crate::atomic_file::replace(path, |file| file.write_all(bytes)).map_err(|source| ReportError::Write {
        path: path.clone(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_read_days_and_instants() {
        let day: Bound = "2026-03-02".parse().expect("a day");
        assert_eq!(date_of(day.day()), jiff::civil::date(2026, 3, 2));
        assert_eq!(day.end_ns() - day.start_ns(), 86_400 * 1_000_000_000);
        let instant: Bound = "2026-03-02T12:00:00+01:00".parse().expect("an instant");
        assert_eq!(instant.start_ns(), i128::from(1_772_449_200i64) * 1_000_000_000);
        assert!("02/03/2026".parse::<Bound>().is_err());
    }
}
