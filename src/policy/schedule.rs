//! Weekly windows (`schedule` in a `[[policy]]`): the days of the week and the hours of the day
//! in a time zone during which a policy blocks, as Blocky and AdGuard Home users ask for ("block
//! during office hours").
//!
//! What a window is, exactly, so that a DST change or a range past midnight cannot surprise:
//! - a range `"08:00-18:00"` on a listed day holds from the first moment the zone's clock reads
//!   08:00 that day until the first moment it reads 18:00; `"18:00-24:00"` runs to the next
//!   midnight;
//! - a range whose end is not after its start (`"22:00-06:00"`) starts on the listed day and runs
//!   into the next morning: with `days = ["fri"]` it holds from Friday 22:00 to Saturday 06:00,
//!   and not from Friday 00:00 to 06:00 (what AdGuard Home #6598 got wrong);
//! - "the first moment the clock reads T" settles DST: a time skipped in spring (02:30 in
//!   Europe/Brussels) is reached when the clock jumps past it (03:00 CEST), and a time that
//!   happens twice in autumn counts at its first occurrence, so that a window never turns on or
//!   off twice for one edge. A day of 23 or 25 hours just has fewer or more hours in a window.
//!
//! The packet path asks [`Schedule::contains`] for every query of a scheduled policy. Converting
//! an instant to local time costs a time zone lookup each time, so the windows of the coming
//! year are computed once, when the config is loaded, as a sorted array of instants: a query's
//! answer is one binary search over it, with no allocation. An instant outside that array (a
//! daemon not reloaded for a year, `explain --at` far away) is answered by the same rules
//! computed on the spot, which is slower but exact.

use std::fmt;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};

/// Minutes in a day, and the largest end of an hour range (`24:00`).
pub(crate) const DAY_MINUTES: u16 = 24 * 60;
/// How far ahead of its build a schedule's windows are computed; beyond, they are computed per
/// query. A year and a month: a daemon reloads its config far more often than that.
const AHEAD_DAYS: i32 = 400;
/// How far back of its build a schedule's windows are computed (for `explain --at` last week).
const BEHIND_DAYS: i32 = 8;

/// The days of the week, in the order of [`Schedule::days`]'s bits, with the names the config uses.
pub(crate) const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// One range of `hours`, in minutes after midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HourRange {
    /// Where it starts, 0 to 1439.
    pub start: u16,
    /// Where it ends, 1 to 1440 (`24:00`); not after `start`: on the next day.
    pub end: u16,
}

impl HourRange {
    /// Reads `"HH:MM-HH:MM"` (end `24:00` allowed, start and end not equal): an error message
    /// for the operator otherwise.
    pub fn parse(text: &str) -> Result<HourRange, String> {
        let usage = "write hours as \"HH:MM-HH:MM\", like \"08:00-18:00\" (or \"22:00-06:00\" past midnight)";
        let (start, end) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not a range of hours: {usage}"))?;
        let minute = |part: &str| -> Result<u16, String> {
            let bad = || format!("{text:?}: {:?} is not a time of day: {usage}", part.trim());
            let (h, m) = part.trim().split_once(':').ok_or_else(bad)?;
            if h.len() != 2 || m.len() != 2 {
                return Err(bad());
            }
            let (h, m) = (
                h.parse::<u16>().map_err(|_| bad())?,
                m.parse::<u16>().map_err(|_| bad())?,
            );
            if m > 59 || h > 24 || (h == 24 && m != 0) {
                return Err(bad());
            }
            Ok(h * 60 + m)
        };
        let (start, end) = (minute(start)?, minute(end)?);
        if start == DAY_MINUTES {
            return Err(format!(
                "{text:?}: a range cannot start at 24:00; start it at 00:00 on the next day"
            ));
        }
        if start == end {
            return Err(format!(
                "{text:?} is empty: start and end are the same time; for a whole day write \"00:00-24:00\""
            ));
        }
        let end = if end == 0 { DAY_MINUTES } else { end };
        Ok(HourRange { start, end })
    }

    /// Whether it runs past midnight into the next day.
    pub fn spans_midnight(self) -> bool {
        self.end <= self.start
    }
}

impl fmt::Display for HourRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(f, "{}-{}", hm(self.start), hm(self.end))
    }
}

/// A policy's weekly windows, ready for the packet path: see the module documentation for what
/// a window is.
#[derive(Clone)]
pub struct Schedule {
    /// The days a range may start on: bit 0 Monday to bit 6 Sunday.
    days: u8,
    /// The ranges of each of those days.
    hours: Box<[HourRange]>,
    /// The zone whose clock the days and hours are read on.
    zone: TimeZone,
    /// What the config said of the zone (its IANA name, or that it is the system's).
    zone_name: String,
    /// The windows from `from` to `until` (Unix seconds), sorted, merged where they meet: what
    /// the packet path searches.
    windows: Box<[(i64, i64)]>,
    /// Where `windows` starts to be complete.
    from: i64,
    /// Where `windows` stops being complete.
    until: i64,
}

impl fmt::Debug for Schedule {
    /// What it says and how many windows were computed, not the windows themselves (hundreds).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("rule", &format_args!("{self}"))
            .field("windows", &self.windows.len())
            .field("from", &self.from)
            .field("until", &self.until)
            .finish()
    }
}

impl PartialEq for Schedule {
    /// Two schedules are the same when they say the same: the windows computed from them do not
    /// matter (two configs loaded at different times compute different stretches of them).
    fn eq(&self, other: &Schedule) -> bool {
        self.days == other.days && self.hours == other.hours && self.zone == other.zone
    }
}

impl Schedule {
    /// A schedule of `hours` on `days` (bit 0 Monday) in `zone` (`zone_name` is what reports
    /// call it), its windows computed around the present.
    pub fn new(days: u8, hours: Vec<HourRange>, zone: TimeZone, zone_name: String) -> Schedule {
        Schedule::computed_around(days, hours, zone, zone_name, Timestamp::now().as_second())
    }

    /// [`Schedule::new`], its windows computed from `BEHIND_DAYS` before `now` to `AHEAD_DAYS`
    /// after it (Unix seconds), so that tests choose the stretch.
    pub fn computed_around(days: u8, hours: Vec<HourRange>, zone: TimeZone, zone_name: String, now: i64) -> Schedule {
        let mut schedule = Schedule {
            days: days & 0x7f,
            hours: hours.into_boxed_slice(),
            zone,
            zone_name,
            windows: Box::new([]),
            from: 0,
            until: 0,
        };
        if let Some(today) = schedule.local_date(now)
            && let (Ok(first), Ok(last)) = (
                today.checked_sub(jiff::Span::new().days(BEHIND_DAYS)),
                today.checked_add(jiff::Span::new().days(AHEAD_DAYS)),
            )
            && let (Some(from), Some(until)) = (schedule.midnight(first), schedule.midnight(last))
        {
            // Windows that start the day before `first` may reach into it: compute from there.
            schedule.windows = schedule
                .windows_of_days(first.yesterday().unwrap_or(first), last)
                .into_boxed_slice();
            schedule.from = from;
            schedule.until = until;
        }
        schedule
    }

    /// Whether `now` (Unix seconds) is inside one of its windows. One binary search over the
    /// windows computed at load; the rules applied on the spot outside them. No allocation.
    pub fn contains(&self, now: i64) -> bool {
        if now >= self.from && now < self.until {
            let i = self.windows.partition_point(|&(start, _)| start <= now);
            return i.checked_sub(1).is_some_and(|i| now < self.windows[i].1);
        }
        self.contains_slow(now)
    }

    /// [`Schedule::contains`] without the computed windows: the windows of the days around the
    /// local date of `now`, one by one.
    fn contains_slow(&self, now: i64) -> bool {
        let Some(today) = self.local_date(now) else {
            return false;
        };
        // A window starts at most a day before the date it reaches into; a zone that turns its
        // clock back over midnight puts an instant on the day before the one its windows count.
        [today.yesterday().ok(), Some(today), today.tomorrow().ok()]
            .into_iter()
            .flatten()
            .any(|day| {
                self.starts_on(day)
                    && self
                        .hours
                        .iter()
                        .filter_map(|&range| self.window(day, range))
                        .any(|(start, end)| start <= now && now < end)
            })
    }

    /// The first moment after `now` at which it turns on or off, if there is one within a week
    /// and a day (for reports; this allocates).
    pub fn next_change(&self, now: i64) -> Option<i64> {
        let today = self.local_date(now)?;
        let last = today.checked_add(jiff::Span::new().days(9)).ok()?;
        let windows = self.windows_of_days(today.yesterday().ok()?, last);
        let horizon = self.midnight(last)?;
        windows
            .iter()
            .flat_map(|&(start, end)| [start, end])
            .find(|&edge| edge > now && edge < horizon)
    }

    /// The windows of the days from `first` to `last` (both included), sorted and merged where
    /// they overlap or meet.
    fn windows_of_days(&self, first: Date, last: Date) -> Vec<(i64, i64)> {
        let mut windows: Vec<(i64, i64)> = Vec::new();
        let mut day = first;
        while day <= last {
            if self.starts_on(day) {
                windows.extend(self.hours.iter().filter_map(|&range| self.window(day, range)));
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }
        windows.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::with_capacity(windows.len());
        for (start, end) in windows {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
    }

    /// Whether its ranges start on `day`'s day of the week.
    fn starts_on(&self, day: Date) -> bool {
        self.days & (1 << day.weekday().to_monday_zero_offset()) != 0
    }

    /// The window `range` opens on `day`, as Unix seconds `[start, end)`; None where it is empty
    /// (a range inside the hour a DST change skips) or out of the calendar's range.
    fn window(&self, day: Date, range: HourRange) -> Option<(i64, i64)> {
        let start = self.edge(day, range.start)?;
        let end_day = if range.spans_midnight() {
            day.tomorrow().ok()?
        } else {
            day
        };
        let end = self.edge(end_day, range.end)?;
        (start < end).then_some((start, end))
    }

    /// The first moment at which the zone's clock reads `minute` (0 to 1440) on `day`, or later.
    fn edge(&self, day: Date, minute: u16) -> Option<i64> {
        if minute >= DAY_MINUTES {
            return self.midnight(day.tomorrow().ok()?);
        }
        // Both below 24 and 60, by HourRange::parse.
        let (hour, min) = ((minute / 60) as i8, (minute % 60) as i8);
        let dt: DateTime = day.at(hour, min, 0, 0);
        let at = |offset: jiff::tz::Offset| offset.to_timestamp(dt).ok().map(|t| t.as_second());
        match self.zone.to_ambiguous_timestamp(dt).offset() {
            AmbiguousOffset::Unambiguous { offset } => at(offset),
            // Twice on the clock: the first time.
            AmbiguousOffset::Fold { before, .. } => at(before),
            // Never on the clock: the moment the clock jumps past it, the zone's next transition
            // after `dt` read with the later offset (a moment before the jump).
            AmbiguousOffset::Gap { after, .. } => {
                let before_jump = after.to_timestamp(dt).ok()?;
                let jump = self.zone.following(before_jump).next()?;
                Some(jump.timestamp().as_second())
            }
        }
    }

    /// The first moment of `day` on the zone's clock.
    fn midnight(&self, day: Date) -> Option<i64> {
        self.edge(day, 0)
    }

    /// The zone's date at `now`.
    fn local_date(&self, now: i64) -> Option<Date> {
        let t = Timestamp::from_second(now).ok()?;
        Some(self.zone.to_datetime(t).date())
    }
}

impl fmt::Display for Schedule {
    /// `mon,tue,wed,thu,fri 08:00-12:00,13:00-18:00 (Europe/Brussels)`, as `check` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days: Vec<&str> = DAY_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| self.days & (1 << i) != 0)
            .map(|(_, name)| *name)
            .collect();
        let hours: Vec<String> = self.hours.iter().map(ToString::to_string).collect();
        write!(f, "{} {} ({})", days.join(","), hours.join(","), self.zone_name)
    }
}

/// The bit of a day name (`"mon"` to `"sun"`, any case; the full English name too).
pub(crate) fn day_bit(name: &str) -> Option<u8> {
    let name = name.to_ascii_lowercase();
    let full = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    let i = DAY_NAMES
        .iter()
        .position(|d| *d == name)
        .or_else(|| full.iter().position(|d| *d == name))?;
    Some(1 << i)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEEKDAYS: u8 = 0b001_1111;
    const EVERY_DAY: u8 = 0b111_1111;

    fn zone(name: &str) -> TimeZone {
        TimeZone::get(name).expect("the system's time zone database has it (tzdata)")
    }
    fn ranges(list: &[&str]) -> Vec<HourRange> {
        list.iter().map(|r| HourRange::parse(r).expect("test range")).collect()
    }
    /// Unix seconds of an RFC 3339 time.
    fn t(text: &str) -> i64 {
        text.parse::<Timestamp>().expect("test time").as_second()
    }
    /// A schedule computed around `around`, and the same computed far away (so that every
    /// answer comes from the rules on the spot): both must agree everywhere.
    fn both(days: u8, hours: &[&str], tz: &str, around: &str) -> [Schedule; 2] {
        let fast = Schedule::computed_around(days, ranges(hours), zone(tz), tz.into(), t(around));
        let slow = Schedule::computed_around(days, ranges(hours), zone(tz), tz.into(), t("1990-01-01T00:00:00Z"));
        assert!(fast.contains(t(around)) == fast.contains_slow(t(around)));
        [fast, slow]
    }
    /// Asserts, for both schedules, that it is `on` at each instant.
    fn walk(schedules: &[Schedule; 2], steps: &[(&str, bool)]) {
        for s in schedules {
            for (at, on) in steps {
                assert_eq!(s.contains(t(at)), *on, "{s} at {at}");
                assert_eq!(s.contains_slow(t(at)), *on, "{s} at {at} (on the spot)");
            }
        }
    }

    #[test]
    fn hour_ranges_are_read_and_refused_with_reasons() {
        assert_eq!(HourRange::parse("08:00-18:00"), Ok(HourRange { start: 480, end: 1080 }));
        assert_eq!(HourRange::parse("22:00-06:30"), Ok(HourRange { start: 1320, end: 390 }));
        assert_eq!(
            HourRange::parse("18:00-24:00"),
            Ok(HourRange { start: 1080, end: 1440 })
        );
        assert_eq!(
            HourRange::parse("18:00-00:00"),
            Ok(HourRange { start: 1080, end: 1440 })
        );
        assert_eq!(
            HourRange::parse(" 08:00 - 09:15 "),
            Ok(HourRange { start: 480, end: 555 })
        );
        assert!(HourRange::parse("22:00-06:30").expect("range").spans_midnight());
        assert!(!HourRange::parse("18:00-24:00").expect("range").spans_midnight());
        for bad in [
            "8-18",
            "08:00",
            "8:00-18:00",
            "08:60-09:00",
            "25:00-26:00",
            "24:00-06:00",
            "24:30-01:00",
        ] {
            assert!(HourRange::parse(bad).is_err(), "{bad}");
        }
        assert!(
            HourRange::parse("08:00-08:00")
                .expect_err("empty")
                .contains("00:00-24:00")
        );
        assert_eq!(
            HourRange::parse("22:00-06:30").expect("range").to_string(),
            "22:00-06:30"
        );
        assert_eq!(day_bit("Mon"), Some(1));
        assert_eq!(day_bit("sunday"), Some(64));
        assert_eq!(day_bit("lun"), None);
    }

    #[test]
    fn office_hours_on_weekdays_start_and_end_on_the_minute() {
        // 2026-12-01 is a Tuesday; Brussels is at +01:00 in winter.
        let s = both(WEEKDAYS, &["08:00-18:00"], "Europe/Brussels", "2026-12-01T12:00:00Z");
        walk(
            &s,
            &[
                ("2026-12-01T06:59:59Z", false),
                ("2026-12-01T07:00:00Z", true), // 08:00 in Brussels
                ("2026-12-01T16:59:59Z", true),
                ("2026-12-01T17:00:00Z", false), // 18:00: the end is not in the window
                ("2026-12-05T10:00:00Z", false), // Saturday
                ("2026-12-06T10:00:00Z", false), // Sunday
                ("2026-12-07T07:00:00Z", true),  // Monday 08:00
                ("2026-12-04T16:59:59Z", true),  // Friday 17:59:59
            ],
        );
        assert_eq!(
            s[0].next_change(t("2026-12-01T12:00:00Z")),
            Some(t("2026-12-01T17:00:00Z"))
        );
        assert_eq!(
            s[0].next_change(t("2026-12-04T18:00:00Z")),
            Some(t("2026-12-07T07:00:00Z"))
        );
        assert_eq!(s[0].to_string(), "mon,tue,wed,thu,fri 08:00-18:00 (Europe/Brussels)");
    }

    #[test]
    fn a_range_past_midnight_starts_on_the_listed_day_and_runs_into_the_next() {
        // Sunday 22:00 to Monday 06:00, and nothing on Sunday morning (AdGuard Home #6598 blocked
        // Sunday 00:00-06:00 instead). 2026-12-06 is a Sunday.
        let s = both(1 << 6, &["22:00-06:00"], "Europe/Brussels", "2026-12-06T12:00:00Z");
        walk(
            &s,
            &[
                ("2026-12-06T03:00:00Z", false), // Sunday 04:00
                ("2026-12-06T20:59:59Z", false),
                ("2026-12-06T21:00:00Z", true),  // Sunday 22:00
                ("2026-12-06T23:30:00Z", true),  // Monday 00:30
                ("2026-12-07T04:59:59Z", true),  // Monday 05:59:59
                ("2026-12-07T05:00:00Z", false), // Monday 06:00
                ("2026-12-07T21:00:00Z", false), // Monday 22:00: Monday is not listed
                ("2026-12-13T21:00:00Z", true),  // the next Sunday
            ],
        );
        // Saturday night into Sunday: Saturday is not listed, so Sunday morning stays open.
        let sat = both(1 << 5, &["22:00-06:00"], "Europe/Brussels", "2026-12-06T12:00:00Z");
        walk(&sat, &[("2026-12-06T03:00:00Z", true), ("2026-12-06T21:00:00Z", false)]);
    }

    #[test]
    fn a_spring_dst_change_shortens_the_night_and_moves_nothing_else() {
        // Europe/Brussels on 2026-03-29 (Sunday): 02:00 CET becomes 03:00 CEST at 01:00 UTC, a
        // day of 23 hours.
        let s = both(EVERY_DAY, &["08:00-18:00"], "Europe/Brussels", "2026-03-29T12:00:00Z");
        walk(
            &s,
            &[
                ("2026-03-28T06:59:59Z", false),
                ("2026-03-28T07:00:00Z", true), // Saturday 08:00 CET
                ("2026-03-29T05:59:59Z", false),
                ("2026-03-29T06:00:00Z", true), // Sunday 08:00 CEST
                ("2026-03-29T15:59:59Z", true),
                ("2026-03-29T16:00:00Z", false), // Sunday 18:00 CEST
            ],
        );
        // A night window across the change lasts 7 hours, and one starting in the skipped hour
        // starts when the clock jumps past its start.
        let night = both(1 << 5, &["22:00-06:00"], "Europe/Brussels", "2026-03-29T12:00:00Z");
        walk(
            &night,
            &[
                ("2026-03-28T20:59:59Z", false),
                ("2026-03-28T21:00:00Z", true), // Saturday 22:00 CET
                ("2026-03-29T01:00:00Z", true), // 03:00 CEST
                ("2026-03-29T03:59:59Z", true),
                ("2026-03-29T04:00:00Z", false), // Sunday 06:00 CEST
            ],
        );
        let skipped = both(1 << 6, &["02:30-04:00"], "Europe/Brussels", "2026-03-29T12:00:00Z");
        walk(
            &skipped,
            &[
                ("2026-03-29T00:59:59Z", false), // 01:59:59 CET
                ("2026-03-29T01:00:00Z", true),  // 03:00 CEST: the clock jumped past 02:30
                ("2026-03-29T01:59:59Z", true),
                ("2026-03-29T02:00:00Z", false), // 04:00 CEST
            ],
        );
        // Wholly inside the skipped hour: never on that day, on the next Sunday as usual.
        let gone = both(1 << 6, &["02:10-02:50"], "Europe/Brussels", "2026-03-29T12:00:00Z");
        walk(
            &gone,
            &[
                ("2026-03-29T00:59:59Z", false),
                ("2026-03-29T01:00:00Z", false),
                ("2026-04-05T00:10:00Z", true), // 02:10 CEST a week later
            ],
        );
    }

    #[test]
    fn an_autumn_dst_change_lengthens_the_night_and_turns_on_and_off_once() {
        // Europe/Brussels on 2026-10-25 (Sunday): 03:00 CEST becomes 02:00 CET at 01:00 UTC, a
        // day of 25 hours; 02:00-03:00 happens twice.
        let night = both(1 << 5, &["22:00-06:00"], "Europe/Brussels", "2026-10-25T12:00:00Z");
        walk(
            &night,
            &[
                ("2026-10-24T19:59:59Z", false),
                ("2026-10-24T20:00:00Z", true), // Saturday 22:00 CEST
                ("2026-10-25T04:59:59Z", true), // 05:59:59 CET: 9 hours in all
                ("2026-10-25T05:00:00Z", false),
            ],
        );
        // An edge inside the hour that happens twice counts the first time only: on from 02:00
        // CEST to 02:30 CEST, then off through the second 02:00-02:30 (CET).
        let fold = both(1 << 6, &["02:00-02:30"], "Europe/Brussels", "2026-10-25T12:00:00Z");
        walk(
            &fold,
            &[
                ("2026-10-24T23:59:59Z", false),
                ("2026-10-25T00:00:00Z", true), // 02:00 CEST
                ("2026-10-25T00:29:59Z", true),
                ("2026-10-25T00:30:00Z", false), // 02:30 CEST
                ("2026-10-25T01:00:00Z", false), // 02:00 CET, the second time
                ("2026-10-25T01:15:00Z", false),
            ],
        );
        let day = both(1 << 6, &["00:00-24:00"], "Europe/Brussels", "2026-10-25T12:00:00Z");
        walk(
            &day,
            &[
                ("2026-10-24T21:59:59Z", false),
                ("2026-10-24T22:00:00Z", true), // Sunday 00:00 CEST
                ("2026-10-25T22:59:59Z", true), // 23:59:59 CET: 25 hours later
                ("2026-10-25T23:00:00Z", false),
            ],
        );
    }

    #[test]
    fn several_ranges_a_day_and_ranges_that_meet_are_one_window() {
        let s = both(WEEKDAYS, &["08:00-12:00", "13:00-18:00"], "UTC", "2026-12-01T12:00:00Z");
        walk(
            &s,
            &[
                ("2026-12-01T11:59:59Z", true),
                ("2026-12-01T12:00:00Z", false),
                ("2026-12-01T12:59:59Z", false),
                ("2026-12-01T13:00:00Z", true),
            ],
        );
        // Every evening to the next morning, every day: the windows meet at nothing but open
        // at 18:00 and close at 08:00; over Friday to Monday they run on.
        let nights = both(
            EVERY_DAY,
            &["18:00-24:00", "00:00-08:00"],
            "UTC",
            "2026-12-01T12:00:00Z",
        );
        walk(
            &nights,
            &[
                ("2026-12-01T23:59:59Z", true),
                ("2026-12-02T00:00:00Z", true),
                ("2026-12-02T08:00:00Z", false),
            ],
        );
        assert_eq!(
            nights[0].next_change(t("2026-12-01T20:00:00Z")),
            Some(t("2026-12-02T08:00:00Z"))
        );
    }

    #[test]
    fn computed_windows_agree_with_the_rules_at_every_edge_of_a_dst_year() {
        // At every edge of the year's windows (and a second either side), and every 97 minutes
        // between, in two zones with DST (one south of the equator), for ranges of each kind:
        // the array the packet path searches says what the rules say.
        for (tz, around) in [
            ("Europe/Brussels", "2026-06-01T00:00:00Z"),
            ("Australia/Sydney", "2026-06-01T00:00:00Z"),
        ] {
            let s = Schedule::computed_around(
                0b101_0101,
                ranges(&["02:30-03:15", "22:00-06:00", "12:00-24:00"]),
                zone(tz),
                tz.into(),
                t(around),
            );
            let (from, until) = (s.from, s.until);
            assert!(until - from > 365 * 86_400);
            let edges = s.windows.iter().flat_map(|&(a, b)| [a - 1, a, a + 1, b - 1, b, b + 1]);
            let between = (from..until).step_by(97 * 60);
            for now in edges.chain(between).filter(|now| (from..until).contains(now)) {
                assert_eq!(s.contains(now), s.contains_slow(now), "{tz} at {now}");
            }
        }
    }
}
