//! School hours: when "within school hours" is.
//!
//! Owns the `[school_hours]` config section ([`SchoolHoursConfig`]), its validation into a
//! typed [`SchoolHours`] (every problem collected as a `(key, message)` pair so the config
//! loader can name the file, line and key and exit 78), and the conversion of local school
//! time into UTC intervals.
//!
//! ```toml
//! [school_hours]
//! timezone = "Europe/London"
//! weekly = { mon = "08:00-16:30", fri = "08:00-12:00,13:00-15:30" }  # absent days are closed
//! terms = [["2026-09-03", "2026-10-23"], ["2026-11-02", "2026-12-18"]]  # inclusive; empty = always term
//! closures = ["2026-11-27"]  # INSET days, bank holidays
//! ```
//!
//! Times are wall-clock times in `timezone`: 08:00 is 07:00 UTC in summer and 08:00 UTC in
//! winter in London, and a day that spans a DST change is still as long as its timetable says
//! (a local time that does not exist, inside a spring-forward gap, is moved forward; one that
//! occurs twice picks the earlier instant). The tz database is bundled, so the answer does not
//! depend on the host having `/usr/share/zoneinfo`.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use serde::Deserialize;
use time::OffsetDateTime;

const DAY_SECS: u32 = 24 * 60 * 60;
const DAY_KEYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// The `[school_hours]` section as written. Validate it with [`SchoolHoursConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchoolHoursConfig {
    /// An IANA time zone name, e.g. `Europe/London`.
    pub timezone: String,
    /// Day key (`mon` … `sun`) → `"HH:MM-HH:MM"`, several separated by commas. Absent days
    /// (or an empty string) are closed. `24:00` is allowed as an end.
    #[serde(default)]
    pub weekly: BTreeMap<String, String>,
    /// Inclusive `["YYYY-MM-DD", "YYYY-MM-DD"]` ranges; empty means every date is in term.
    #[serde(default)]
    pub terms: Vec<(String, String)>,
    /// Dates with no school (INSET days, bank holidays).
    #[serde(default)]
    pub closures: Vec<String>,
}

/// A validated timetable. Cheap to clone; all queries are pure.
#[derive(Debug, Clone, PartialEq)]
pub struct SchoolHours {
    inner: Option<Timetable>,
}

#[derive(Debug, Clone, PartialEq)]
struct Timetable {
    tz: TimeZone,
    /// Monday first; each day's `[start, end)` seconds after local midnight, sorted, disjoint.
    weekly: [Vec<(u32, u32)>; 7],
    /// Inclusive, sorted, disjoint.
    terms: Vec<(Date, Date)>,
    closures: BTreeSet<Date>,
}

impl SchoolHoursConfig {
    /// Checks everything and returns the typed timetable, or every problem found as
    /// `(key, message)` with `key` one of `timezone`, `weekly`, `terms`, `closures`.
    pub fn validate(&self) -> Result<SchoolHours, Vec<(&'static str, String)>> {
        let mut issues = Vec::new();

        let tz = match TimeZone::get(self.timezone.trim()) {
            Ok(tz) => Some(tz),
            Err(_) => {
                issues.push((
                    "timezone",
                    format!(
                        "unknown time zone {:?} (use an IANA name such as \"Europe/London\")",
                        self.timezone
                    ),
                ));
                None
            }
        };

        let mut weekly: [Vec<(u32, u32)>; 7] = Default::default();
        for (key, spec) in &self.weekly {
            let Some(day) = DAY_KEYS.iter().position(|d| d == key) else {
                issues.push((
                    "weekly",
                    format!("unknown day {key:?}; use mon, tue, wed, thu, fri, sat or sun"),
                ));
                continue;
            };
            match parse_day(spec) {
                Ok(intervals) => weekly[day] = intervals,
                Err(problems) => issues.extend(
                    problems
                        .into_iter()
                        .map(|problem| ("weekly", format!("{key} = {spec:?}: {problem}"))),
                ),
            }
        }

        let mut terms = Vec::new();
        for (start, end) in &self.terms {
            match (parse_date(start), parse_date(end)) {
                (Ok(s), Ok(e)) if e < s => issues.push((
                    "terms",
                    format!("term [{start:?}, {end:?}] ends before it starts"),
                )),
                (Ok(s), Ok(e)) => terms.push((s, e)),
                (s, e) => issues.extend(
                    [s.err(), e.err()]
                        .into_iter()
                        .flatten()
                        .map(|problem| ("terms", problem)),
                ),
            }
        }
        terms.sort();
        for pair in terms.windows(2) {
            let ((s1, e1), (s2, e2)) = (pair[0], pair[1]);
            if s2 <= e1 {
                issues.push(("terms", format!("term {s1}..{e1} overlaps term {s2}..{e2}")));
            }
        }

        let mut closures = BTreeSet::new();
        for date in &self.closures {
            match parse_date(date) {
                Ok(d) => {
                    closures.insert(d);
                }
                Err(problem) => issues.push(("closures", problem)),
            }
        }

        match tz {
            Some(tz) if issues.is_empty() => Ok(SchoolHours {
                inner: Some(Timetable {
                    tz,
                    weekly,
                    terms,
                    closures,
                }),
            }),
            _ => Err(issues),
        }
    }
}

impl Default for SchoolHours {
    fn default() -> Self {
        Self::always()
    }
}

impl SchoolHours {
    /// Around the clock: every instant is school time.
    pub fn always() -> Self {
        Self { inner: None }
    }

    /// Whether this is the 24/7 timetable.
    pub fn is_always(&self) -> bool {
        self.inner.is_none()
    }

    /// The UTC intervals of school time inside `[from, to)`, sorted, disjoint and non-empty
    /// (touching intervals are merged). Empty when `from >= to`.
    pub fn school_intervals(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Vec<(OffsetDateTime, OffsetDateTime)> {
        if from >= to {
            return Vec::new();
        }
        let Some(table) = &self.inner else {
            return vec![(from, to)];
        };
        let lo = to_timestamp(from);
        let hi = to_timestamp(to);
        // One local day either side, so that offsets never hide an interval at the edges.
        let first = table.tz.to_datetime(lo).date();
        let first = first.yesterday().unwrap_or(first);
        let last = table.tz.to_datetime(hi).date();
        let last = last.tomorrow().unwrap_or(last);

        let mut found: Vec<(Timestamp, Timestamp)> = Vec::new();
        let mut day = first;
        while day <= last {
            if table.is_school_day(day) {
                let weekday = usize::try_from(day.weekday().to_monday_zero_offset()).unwrap_or(0);
                for &(start, end) in &table.weekly[weekday] {
                    let (Some(start), Some(end)) =
                        (table.instant(day, start), table.instant(day, end))
                    else {
                        continue;
                    };
                    let (start, end) = (start.max(lo), end.min(hi));
                    if start < end {
                        found.push((start, end));
                    }
                }
            }
            match day.tomorrow() {
                Ok(next) => day = next,
                Err(_) => break,
            }
        }

        found.sort();
        let mut merged: Vec<(Timestamp, Timestamp)> = Vec::with_capacity(found.len());
        for (start, end) in found {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        merged
            .into_iter()
            .map(|(s, e)| (from_timestamp(s, from), from_timestamp(e, to)))
            .collect()
    }

    /// Whether `at` falls within school time.
    pub fn is_school_time(&self, at: OffsetDateTime) -> bool {
        !self
            .school_intervals(at, at + time::Duration::NANOSECOND)
            .is_empty()
    }
}

impl Timetable {
    fn is_school_day(&self, day: Date) -> bool {
        !self.closures.contains(&day)
            && (self.terms.is_empty() || self.terms.iter().any(|&(s, e)| s <= day && day <= e))
    }

    /// The instant of `secs` after local midnight of `day` (`DAY_SECS` = next midnight).
    fn instant(&self, day: Date, secs: u32) -> Option<Timestamp> {
        let civil: DateTime = if secs >= DAY_SECS {
            day.tomorrow().ok()?.at(0, 0, 0, 0)
        } else {
            let h = i8::try_from(secs / 3600).ok()?;
            let m = i8::try_from(secs / 60 % 60).ok()?;
            let s = i8::try_from(secs % 60).ok()?;
            day.at(h, m, s, 0)
        };
        self.tz.to_ambiguous_timestamp(civil).compatible().ok()
    }
}

fn to_timestamp(at: OffsetDateTime) -> Timestamp {
    let nanos = at.unix_timestamp_nanos();
    Timestamp::from_nanosecond(nanos).unwrap_or(if nanos < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

fn from_timestamp(ts: Timestamp, fallback: OffsetDateTime) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ts.as_nanosecond()).unwrap_or(fallback)
}

fn parse_date(text: &str) -> Result<Date, String> {
    let trimmed = text.trim();
    if trimmed.len() != 10 {
        return Err(format!("{text:?} is not a date (YYYY-MM-DD)"));
    }
    trimmed
        .parse::<Date>()
        .map_err(|_| format!("{text:?} is not a date (YYYY-MM-DD)"))
}

/// `"08:00-12:00,13:00-16:00"` → sorted `[start, end)` seconds; every problem reported.
fn parse_day(spec: &str) -> Result<Vec<(u32, u32)>, Vec<String>> {
    let mut problems = Vec::new();
    let mut intervals = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((start, end)) = part.split_once('-') else {
            problems.push(format!("{part:?} is not a range like 08:00-16:30"));
            continue;
        };
        match (parse_clock(start.trim()), parse_clock(end.trim())) {
            (Ok(s), Ok(e)) if e <= s => {
                problems.push(format!("{part:?} ends before (or when) it starts"));
            }
            (Ok(s), Ok(_)) if s >= DAY_SECS => problems.push(format!("{part:?} starts at 24:00")),
            (Ok(s), Ok(e)) => intervals.push((s, e)),
            (s, e) => problems.extend([s.err(), e.err()].into_iter().flatten()),
        }
    }
    intervals.sort_unstable();
    for pair in intervals.windows(2) {
        if pair[1].0 < pair[0].1 {
            problems.push(format!(
                "{} overlaps {}",
                show_range(pair[0]),
                show_range(pair[1])
            ));
        }
    }
    if problems.is_empty() {
        Ok(intervals)
    } else {
        Err(problems)
    }
}

/// `"HH:MM"` → seconds after midnight; `24:00` allowed (as an end).
fn parse_clock(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a time (HH:MM, 00:00 to 24:00)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 3600 + m * 60)
}

fn show_range((start, end): (u32, u32)) -> String {
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        start / 3600,
        start / 60 % 60,
        end / 3600,
        end / 60 % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    const WEEK: &str = r#"
        timezone = "Europe/London"
        weekly = { mon = "08:00-16:30", tue = "08:00-16:30", wed = "08:00-16:30", thu = "08:00-16:30", fri = "08:00-15:30" }
    "#;

    fn parse(text: &str) -> Result<SchoolHours, Vec<(&'static str, String)>> {
        toml::from_str::<SchoolHoursConfig>(text)
            .expect("config parses")
            .validate()
    }

    fn london() -> SchoolHours {
        parse(WEEK).expect("valid timetable")
    }

    fn secs(intervals: &[(OffsetDateTime, OffsetDateTime)]) -> i64 {
        intervals
            .iter()
            .map(|(s, e)| (*e - *s).whole_seconds())
            .sum()
    }

    #[test]
    fn autumn_dst_change_moves_utc_start_but_not_length() {
        // Clocks go back at 02:00 BST on Sunday 25 October 2026.
        let hours = london();
        let days = hours.school_intervals(
            datetime!(2026-10-19 0:00 UTC),
            datetime!(2026-10-31 0:00 UTC),
        );
        assert_eq!(days.len(), 10, "{days:?}");
        // The week before: BST, 08:00 local = 07:00 UTC.
        assert_eq!(
            days[0],
            (
                datetime!(2026-10-19 7:00 UTC),
                datetime!(2026-10-19 15:30 UTC)
            )
        );
        assert_eq!(days[4].0, datetime!(2026-10-23 7:00 UTC));
        // The Monday after the change: GMT, 08:00 local = 08:00 UTC, still 8.5 h.
        assert_eq!(
            days[5],
            (
                datetime!(2026-10-26 8:00 UTC),
                datetime!(2026-10-26 16:30 UTC)
            )
        );
        for (i, (start, end)) in days.iter().enumerate() {
            let expected = if i % 5 == 4 { 7.5 } else { 8.5 };
            assert_eq!(
                (*end - *start).as_seconds_f64() / 3600.0,
                expected,
                "day {i}"
            );
        }
    }

    #[test]
    fn spring_dst_change_moves_utc_start_but_not_length() {
        // Clocks go forward at 01:00 GMT on Sunday 29 March 2026.
        let hours = london();
        let days = hours.school_intervals(
            datetime!(2026-03-23 0:00 UTC),
            datetime!(2026-04-04 0:00 UTC),
        );
        assert_eq!(days.len(), 10);
        assert_eq!(days[0].0, datetime!(2026-03-23 8:00 UTC));
        assert_eq!(
            days[5],
            (
                datetime!(2026-03-30 7:00 UTC),
                datetime!(2026-03-30 15:30 UTC)
            )
        );
        assert_eq!(secs(&days), 2 * (4 * 8 * 3600 + 4 * 1800 + 7 * 3600 + 1800));
    }

    #[test]
    fn a_weekend_day_across_the_change_is_as_long_as_its_timetable() {
        let hours = parse(
            r#"
            timezone = "Europe/London"
            weekly = { sun = "00:00-24:00" }
            "#,
        )
        .unwrap();
        // 25 October 2026 has 25 hours in London, 29 March 2026 has 23.
        let autumn = hours.school_intervals(
            datetime!(2026-10-24 0:00 UTC),
            datetime!(2026-10-27 0:00 UTC),
        );
        assert_eq!(
            autumn,
            vec![(
                datetime!(2026-10-24 23:00 UTC),
                datetime!(2026-10-26 0:00 UTC)
            )]
        );
        let spring = hours.school_intervals(
            datetime!(2026-03-28 0:00 UTC),
            datetime!(2026-03-31 0:00 UTC),
        );
        assert_eq!(
            spring,
            vec![(
                datetime!(2026-03-29 0:00 UTC),
                datetime!(2026-03-29 23:00 UTC)
            )]
        );
    }

    #[test]
    fn closures_and_holidays_have_no_school_time() {
        let hours = parse(
            r#"
            timezone = "Europe/London"
            weekly = { mon = "08:00-16:30", tue = "08:00-16:30", wed = "08:00-16:30", thu = "08:00-16:30", fri = "08:00-15:30" }
            terms = [["2026-09-03", "2026-10-23"], ["2026-11-02", "2026-12-18"]]
            closures = ["2026-11-27"]
            "#,
        )
        .unwrap();
        // Half term (24 Oct – 1 Nov) is out of term.
        assert!(
            hours
                .school_intervals(
                    datetime!(2026-10-24 0:00 UTC),
                    datetime!(2026-11-02 0:00 UTC)
                )
                .is_empty()
        );
        assert!(!hours.is_school_time(datetime!(2026-10-28 10:00 UTC)));
        // Friday 27 November is an INSET day; Thursday is a normal day.
        assert!(hours.is_school_time(datetime!(2026-11-26 10:00 UTC)));
        assert!(!hours.is_school_time(datetime!(2026-11-27 10:00 UTC)));
        // Before the first term and after the last.
        assert!(!hours.is_school_time(datetime!(2026-09-02 10:00 UTC)));
        assert!(hours.is_school_time(datetime!(2026-09-03 10:00 UTC)));
        assert!(hours.is_school_time(datetime!(2026-12-18 10:00 UTC)));
        assert!(!hours.is_school_time(datetime!(2026-12-21 10:00 UTC)));
        // The week of 23 Nov: Mon–Thu 8.5 h, Friday closed.
        let week = hours.school_intervals(
            datetime!(2026-11-23 0:00 UTC),
            datetime!(2026-11-30 0:00 UTC),
        );
        assert_eq!(secs(&week), 4 * (8 * 3600 + 1800));
    }

    #[test]
    fn split_days_and_edges() {
        let hours = parse(
            r#"
            timezone = "UTC"
            weekly = { wed = "13:00-16:00, 08:00-12:00" }
            "#,
        )
        .unwrap();
        let wed = hours.school_intervals(
            datetime!(2026-01-07 9:00 UTC),
            datetime!(2026-01-07 14:00 UTC),
        );
        assert_eq!(
            wed,
            vec![
                (
                    datetime!(2026-01-07 9:00 UTC),
                    datetime!(2026-01-07 12:00 UTC)
                ),
                (
                    datetime!(2026-01-07 13:00 UTC),
                    datetime!(2026-01-07 14:00 UTC)
                ),
            ]
        );
        assert!(hours.is_school_time(datetime!(2026-01-07 8:00 UTC)));
        assert!(
            !hours.is_school_time(datetime!(2026-01-07 12:00 UTC)),
            "ends are exclusive"
        );
        assert!(!hours.is_school_time(datetime!(2026-01-08 10:00 UTC)));
    }

    #[test]
    fn always_is_the_whole_window() {
        let hours = SchoolHours::always();
        let (from, to) = (
            datetime!(2026-01-01 0:00 UTC),
            datetime!(2026-02-01 0:00 UTC),
        );
        assert_eq!(hours.school_intervals(from, to), vec![(from, to)]);
        assert!(hours.school_intervals(to, from).is_empty());
        assert!(hours.is_school_time(from));
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let issues = parse(
            r#"
            timezone = "Europe/Lundun"
            weekly = { mon = "08:00-16:30", tue = "8:00-25:00", wed = "16:30-08:00", thu = "08:00-12:00,11:00-13:00", fry = "08:00-15:30", sat = "08-12" }
            terms = [["2026-09-03", "2026-10-23"], ["2026-10-20", "2026-12-18"], ["2027-01-10", "2027-01-05"], ["2027-02-30", "2027-03-01"]]
            closures = ["2026-11-27", "27/11/2026"]
            "#,
        )
        .unwrap_err();
        let keys: Vec<&str> = issues.iter().map(|(key, _)| *key).collect();
        let text = issues
            .iter()
            .map(|(key, message)| format!("{key}: {message}"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(
            keys,
            [
                "timezone", "weekly", "weekly", "weekly", "weekly", "weekly", "weekly", "terms",
                "terms", "terms", "closures"
            ],
            "{text}"
        );
        for needle in [
            "Europe/Lundun",
            "\"fry\"",
            "\"25:00\" is not a time",
            "ends before",
            "08:00-12:00 overlaps 11:00-13:00",
            "sat = \"08-12\": \"08\" is not a time",
            "overlaps term",
            "\"2027-02-30\" is not a date",
            "\"27/11/2026\"",
        ] {
            assert!(text.contains(needle), "missing {needle}: {text}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let error =
            toml::from_str::<SchoolHoursConfig>("timezone = \"UTC\"\nholidays = []\n").unwrap_err();
        assert!(error.to_string().contains("holidays"), "{error}");
    }

    proptest! {
        #[test]
        fn intervals_are_sorted_disjoint_inside_the_window_and_match_is_school_time(
            start in 1_700_000_000i64..1_900_000_000,
            len in 0i64..(20 * 86_400),
            probe in 0i64..(20 * 86_400),
        ) {
            let hours = london();
            let from = OffsetDateTime::from_unix_timestamp(start).unwrap();
            let to = from + time::Duration::seconds(len);
            let intervals = hours.school_intervals(from, to);
            for (s, e) in &intervals {
                prop_assert!(from <= *s && s < e && *e <= to);
            }
            for pair in intervals.windows(2) {
                prop_assert!(pair[0].1 < pair[1].0);
            }
            // No school day is longer than its timetable, whatever the DST state.
            prop_assert!(intervals.iter().all(|(s, e)| (*e - *s).whole_seconds() <= 8 * 3600 + 1800));
            let at = from + time::Duration::seconds(probe.min(len.max(1) - 1));
            if at < to {
                let inside = intervals.iter().any(|(s, e)| *s <= at && at < *e);
                prop_assert_eq!(inside, hours.is_school_time(at));
            }
        }
    }
}
