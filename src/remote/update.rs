//! The rules an update must pass before it replaces a good copy, and when to try again after one
//! that did not. Pure: no I/O, so that every rule is tested with a table.

use std::time::Duration;

use crate::lists::DomainSetBuilder;

/// Why an update was not taken; the previous copy keeps serving. [`Failure::reason`] is the
/// `reason` label of `sinkhole_list_update_failures_total`, one of [`Failure::REASONS`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum Failure {
    /// The server answered with an HTTP error.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The connection failed (DNS, refused, reset, TLS).
    #[error("network error: {0}")]
    Network(String),
    /// The download took longer than the list's `timeout`.
    #[error("timed out")]
    Timeout,
    /// The body went past the list's `max_bytes`.
    #[error("larger than max_bytes ({0} bytes)")]
    TooLarge(u64),
    /// The body is not UTF-8 text.
    #[error("not text (invalid UTF-8)")]
    NotText,
    /// Too many lines could not be read.
    #[error("{bad} of {lines} lines unreadable, over max_bad_share")]
    BadLines {
        /// Unreadable lines.
        bad: usize,
        /// Lines that are neither blank nor comments.
        lines: usize,
    },
    /// It would shrink the URL's rules by more than `max_shrink`.
    #[error("would shrink from {from} to {to} rules, more than max_shrink")]
    Shrink {
        /// Rules of the copy serving.
        from: usize,
        /// Rules of the download.
        to: usize,
    },
    /// It holds no rule at all.
    #[error("no rule in it")]
    Empty,
}

impl Failure {
    /// Every `reason` label, so that dashboards see each series from the start.
    pub(crate) const REASONS: [&'static str; 8] = [
        "http_status",
        "network",
        "timeout",
        "too_large",
        "not_text",
        "bad_lines",
        "shrink",
        "empty",
    ];

    /// The `reason` label.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Failure::Status(_) => "http_status",
            Failure::Network(_) => "network",
            Failure::Timeout => "timeout",
            Failure::TooLarge(_) => "too_large",
            Failure::NotText => "not_text",
            Failure::BadLines { .. } => "bad_lines",
            Failure::Shrink { .. } => "shrink",
            Failure::Empty => "empty",
        }
    }
}

/// The limits one list sets on its updates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Limits {
    /// Share of unreadable lines allowed.
    pub(crate) max_bad_share: f64,
    /// Share by which the rules may shrink in one update.
    pub(crate) max_shrink: f64,
}

/// What a download that passed compiles to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Judged {
    /// Distinct rules.
    pub(crate) rules: usize,
    /// Unreadable lines (skipped, and listed by `check`).
    pub(crate) bad_lines: usize,
}

/// Parses a downloaded text as the snapshot build will, and decides whether it may replace a
/// copy of `previous` rules (None: there is none).
pub(crate) fn judge(text: &str, previous: Option<usize>, limits: Limits) -> Result<Judged, Failure> {
    let mut builder = DomainSetBuilder::new();
    let bad = builder.add_text("download", text).len();
    // Names and answer-address ranges (an RPZ zone's rpz-ip triggers) alike: both are rules.
    let rules = builder.build().len();
    let lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(['#', '!', ';']))
        .count();
    if rules == 0 {
        return Err(if bad > 0 {
            Failure::BadLines { bad, lines }
        } else {
            Failure::Empty
        });
    }
    if lines > 0 && bad as f64 > limits.max_bad_share * lines as f64 {
        return Err(Failure::BadLines { bad, lines });
    }
    if let Some(from) = previous.filter(|&from| from > 0)
        && (rules as f64) < from as f64 * (1.0 - limits.max_shrink)
    {
        return Err(Failure::Shrink { from, to: rules });
    }
    Ok(Judged { rules, bad_lines: bad })
}

/// The first retry after a failure comes this soon (or at the next refresh, if sooner).
pub(crate) const RETRY_FIRST: Duration = Duration::from_secs(30);
/// Retries before a URL waits for its regular refresh again.
pub(crate) const MAX_RETRIES: u32 = 4;
/// Never fetch one URL more often than this, whatever `refresh` and the retries say.
pub(crate) const FLOOR: Duration = Duration::from_secs(1);

/// How long to wait before the next attempt after `failures` failures in a row (0: after a
/// success): the regular `refresh` after a success or once the retries are spent; in between,
/// [`RETRY_FIRST`] doubling at each failure, never later than `refresh` and never sooner than
/// [`FLOOR`].
pub(crate) fn next_attempt(failures: u32, refresh: Duration) -> Duration {
    let wait = if failures == 0 || failures > MAX_RETRIES {
        refresh
    } else {
        RETRY_FIRST.saturating_mul(1 << (failures - 1)).min(refresh)
    };
    wait.max(FLOOR)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_bad_share: 0.1,
        max_shrink: 0.5,
    };

    /// An RPZ zone as a URL may serve it: two names and an address range.
    const RPZ: &str = "$TTL 300\n@ SOA localhost. root.localhost. 1 3600 600 86400 300\n  NS localhost.\n\
                       ; blocked\ntiktok.com CNAME .\n*.tiktok.com CNAME .\n32.1.2.0.203.rpz-ip CNAME .\n";

    #[test]
    fn update_rules() {
        let ten: String = (0..10).map(|i| format!("site{i}.example\n")).collect();
        let four: String = (0..4).map(|i| format!("site{i}.example\n")).collect();
        let five: String = (0..5).map(|i| format!("site{i}.example\n")).collect();
        let html = "<html>\n<body>Not Found</body>\n</html>\n";
        let one_bad = format!("{ten}not a domain!\n");
        let two_bad = format!("{}bad one!\nbad two!\n", &four);
        /// (what, text, rules of the copy serving, rules taken or the refusal's reason)
        type Case<'a> = (&'a str, &'a str, Option<usize>, Result<usize, &'a str>);
        let cases: &[Case<'_>] = &[
            ("first download", &ten, None, Ok(10)),
            ("grows", &ten, Some(5), Ok(10)),
            ("shrinks by half: allowed", &five, Some(10), Ok(5)),
            ("shrinks by more than half", &four, Some(10), Err("shrink")),
            ("no previous: shrink does not apply", &four, None, Ok(4)),
            ("empty", "", Some(10), Err("empty")),
            ("comments only", "# nothing\n! here\n", None, Err("empty")),
            ("an error page", html, Some(10), Err("bad_lines")),
            ("one bad line in eleven", &one_bad, Some(10), Ok(10)),
            ("two bad in six", &two_bad, None, Err("bad_lines")),
            ("an RPZ zone", RPZ, None, Ok(3)),
        ];
        for (what, text, previous, want) in cases {
            let got = judge(text, *previous, LIMITS).map(|j| j.rules).map_err(|f| f.reason());
            assert_eq!(got, *want, "{what}");
        }
    }

    #[test]
    fn limits_are_the_lists_own() {
        let four: String = (0..4).map(|i| format!("site{i}.example\n")).collect();
        let lenient = Limits {
            max_bad_share: 1.0,
            max_shrink: 1.0,
        };
        assert_eq!(judge(&four, Some(100), lenient).map(|j| j.rules), Ok(4));
        let strict = Limits {
            max_bad_share: 0.0,
            max_shrink: 0.0,
        };
        assert_eq!(
            judge(&four, Some(5), strict).map_err(|f| f.reason()),
            Err("shrink"),
            "max_shrink 0: no shrinking at all"
        );
        assert_eq!(
            judge(&format!("{four}bad!\n"), None, strict).map_err(|f| f.reason()),
            Err("bad_lines")
        );
    }

    #[test]
    fn retries_back_off_within_the_refresh_and_above_the_floor() {
        let six_hours = Duration::from_secs(6 * 3600);
        let waits: Vec<u64> = (0..=6).map(|n| next_attempt(n, six_hours).as_secs()).collect();
        assert_eq!(waits, [21_600, 30, 60, 120, 240, 21_600, 21_600]);
        let short = Duration::from_secs(2);
        assert_eq!(next_attempt(1, short), short, "never later than the next refresh");
        assert_eq!(
            next_attempt(3, Duration::from_millis(10)),
            FLOOR,
            "never sooner than the floor"
        );
        assert_eq!(next_attempt(u32::MAX, six_hours), six_hours);
    }

    #[test]
    fn every_reason_is_listed() {
        let all = [
            Failure::Status(404),
            Failure::Network(String::new()),
            Failure::Timeout,
            Failure::TooLarge(1),
            Failure::NotText,
            Failure::BadLines { bad: 1, lines: 1 },
            Failure::Shrink { from: 2, to: 1 },
            Failure::Empty,
        ];
        let reasons: Vec<&str> = all.iter().map(Failure::reason).collect();
        assert_eq!(reasons, Failure::REASONS);
    }
}
