//! Availability: from ping sweeps and agent heartbeats to up / down / unknown, outages,
//! availability %, MTBF and MTTR.
//!
//! Two halves, both pure:
//!
//! - [`HostState`] is the live per-asset state machine. It turns observations (a ping sweep
//!   answered or missed, an agent heartbeat) into a [`Status`] at a given `now`, and tells
//!   "host down" from "agent stopped but host up".
//! - [`outages`], [`availability`] and [`mtbf_mttr`] read a stored timeline of
//!   `(at, Status)` samples.
//!
//! ## Time that nobody observed is unknown
//!
//! A sample speaks for the time from its own instant until the next sample, but for at most
//! `max_gap` (typically three sweep intervals). Beyond that the time is *unknown*, not up and
//! not down. So a collector that was stopped for an hour neither adds an hour of outage nor an
//! hour of uptime, and availability % = up / (up + down) ignores it.
//!
//! ## Clock jumps
//!
//! Samples are expected in time order. One that is older than its predecessor (an NTP step
//! backwards) is treated as if taken at its predecessor's time: it can change the state from
//! then on, but it never produces a negative duration, never reorders outages and never panics.
//! A step forwards is just a long gap: beyond `max_gap` it is unknown time, so it neither
//! creates nor hides an outage.

use std::time::Duration;

use time::OffsetDateTime;

use super::timetable::SchoolHours;
use super::{duration_nanos, from_nanos, nanos, nanos_duration};
pub use crate::model::Status;

/// One outage: from the first Down sample to the first Up sample after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub start: OffsetDateTime,
    /// `None` while the outage is ongoing (no Up sample yet).
    pub end: Option<OffsetDateTime>,
    /// How much of `[start, end)` no Down sample covered (collector stopped, Unknown samples):
    /// the outage was not seen to last that long, so its duration is an upper bound.
    pub unobserved: Duration,
}

impl Outage {
    /// The outage's length until `end`, or until `now` while ongoing; never negative.
    pub fn duration(&self, now: OffsetDateTime) -> Duration {
        let end = self.end.unwrap_or(now);
        nanos_duration(nanos(end) - nanos(self.start))
    }
}

/// Time in each state over a window (restricted to school hours when asked).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Availability {
    pub up_secs: f64,
    pub down_secs: f64,
    pub unknown_secs: f64,
    /// `up / (up + down) × 100`; `None` when no time in the window is known.
    pub percent: Option<f64>,
}

/// A stored verdict stands for this long; beyond it the state is unknown (the collector was
/// off, or the device was not checked), never "down". Shared by `/api/v1/availability` and the
/// monthly service-level report.
pub const VERDICT_MAX_GAP: Duration = Duration::from_secs(20 * 60);

/// Ping verdicts and agent reports merged into one timeline: a status report proves the host
/// was up at that moment; ping decides for devices without an agent.
pub fn verdict_timeline(
    reach: &[crate::model::ReachSample],
    status: &[crate::model::StatusSample],
) -> Vec<(OffsetDateTime, Status)> {
    let mut samples: Vec<(OffsetDateTime, Status)> = reach
        .iter()
        .map(|r| (r.at, if r.up { Status::Up } else { Status::Down }))
        .chain(
            status
                .iter()
                .filter(|s| !s.clock_suspect)
                .map(|s| (s.at, Status::Up)),
        )
        .collect();
    samples.sort_by_key(|(at, _)| *at);
    samples
}

/// Monotonic sample times: each is at least its predecessor's (see "Clock jumps").
fn monotonic(samples: &[(OffsetDateTime, Status)]) -> Vec<(i128, Status)> {
    let mut last = i128::MIN;
    samples
        .iter()
        .map(|&(at, state)| {
            last = last.max(nanos(at));
            (last, state)
        })
        .collect()
}

/// The outages in a timeline of samples, in order and never overlapping. An outage starts at
/// the first Down sample and ends at the first Up sample after it; Unknown samples and gaps
/// longer than `max_gap` in between neither end it nor count as observed down time
/// ([`Outage::unobserved`]).
pub fn outages(samples: &[(OffsetDateTime, Status)], max_gap: Duration) -> Vec<Outage> {
    let max_gap = duration_nanos(max_gap);
    let samples = monotonic(samples);
    let mut found = Vec::new();
    // (start, nanos covered by Down samples so far)
    let mut open: Option<(i128, i128)> = None;
    for (i, &(at, state)) in samples.iter().enumerate() {
        match (state, &mut open) {
            (Status::Down, None) => open = Some((at, 0)),
            (Status::Up, Some((start, covered))) => {
                found.push(Outage {
                    start: from_nanos(*start),
                    end: Some(from_nanos(at)),
                    unobserved: nanos_duration(at - *start - *covered),
                });
                open = None;
            }
            _ => {}
        }
        if let (Status::Down, Some((_, covered)), Some(&(next, _))) =
            (state, &mut open, samples.get(i + 1))
        {
            *covered += (next - at).min(max_gap);
        }
    }
    if let Some((start, covered)) = open {
        let last = samples.last().map_or(start, |&(at, _)| at);
        found.push(Outage {
            start: from_nanos(start),
            end: None,
            unobserved: nanos_duration(last - start - covered),
        });
    }
    found
}

/// The state over `[from, to)` as contiguous `(start, end, state)` segments covering the
/// whole window (Unknown where no sample speaks).
fn timeline(
    samples: &[(OffsetDateTime, Status)],
    from: i128,
    to: i128,
    max_gap: i128,
) -> Vec<(i128, i128, Status)> {
    let samples = monotonic(samples);
    let mut raw = Vec::with_capacity(samples.len() * 2 + 2);
    let mut cursor = i128::MIN;
    for (i, &(at, state)) in samples.iter().enumerate() {
        raw.push((cursor, at, Status::Unknown));
        let next = samples.get(i + 1).map_or(i128::MAX, |&(t, _)| t);
        let valid_until = at.saturating_add(max_gap).min(next);
        raw.push((at, valid_until, state));
        cursor = valid_until;
    }
    raw.push((cursor, i128::MAX, Status::Unknown));

    let mut segments: Vec<(i128, i128, Status)> = Vec::with_capacity(raw.len());
    for (start, end, state) in raw {
        let (start, end) = (start.max(from), end.min(to));
        if start >= end {
            continue;
        }
        match segments.last_mut() {
            Some(last) if last.2 == state && last.1 == start => last.1 = end,
            _ => segments.push((start, end, state)),
        }
    }
    segments
}

/// Up, down and unknown time over `[window_from, window_to)`, counting only school time
/// (pass [`SchoolHours::always`] for around the clock). `up + down + unknown` is exactly the
/// school time in the window.
pub fn availability(
    samples: &[(OffsetDateTime, Status)],
    window_from: OffsetDateTime,
    window_to: OffsetDateTime,
    max_gap: Duration,
    hours: &SchoolHours,
) -> Availability {
    let (from, to) = (nanos(window_from), nanos(window_to));
    let segments = timeline(samples, from, to, duration_nanos(max_gap));
    let mut totals = [0i128; 3];
    let mut k = 0;
    for (school_from, school_to) in hours.school_intervals(window_from, window_to) {
        let (school_from, school_to) = (nanos(school_from), nanos(school_to));
        while k < segments.len() && segments[k].1 <= school_from {
            k += 1;
        }
        let mut j = k;
        while j < segments.len() && segments[j].0 < school_to {
            let (start, end, state) = segments[j];
            let overlap = end.min(school_to) - start.max(school_from);
            if overlap > 0 {
                totals[slot(state)] += overlap;
            }
            j += 1;
        }
    }
    let secs = |n: i128| n as f64 / 1e9;
    let known = totals[0] + totals[1];
    Availability {
        up_secs: secs(totals[0]),
        down_secs: secs(totals[1]),
        unknown_secs: secs(totals[2]),
        percent: (known > 0).then(|| (totals[0] as f64 / known as f64 * 100.0).clamp(0.0, 100.0)),
    }
}

fn slot(state: Status) -> usize {
    match state {
        Status::Up => 0,
        Status::Down => 1,
        Status::Unknown => 2,
    }
}

/// Mean time between failures and mean time to repair over `[window_from, window_to)`.
///
/// Failures are the outages that start in the window. MTBF = time in the window not inside an
/// outage ÷ failures; MTTR = the mean full duration of those failures that have ended. Either
/// is `None` when there is nothing to divide by.
pub fn mtbf_mttr(
    outages: &[Outage],
    window_from: OffsetDateTime,
    window_to: OffsetDateTime,
) -> (Option<Duration>, Option<Duration>) {
    let (from, to) = (nanos(window_from), nanos(window_to));
    if from >= to {
        return (None, None);
    }
    let mut down = 0i128;
    let mut failures = 0i128;
    let mut repaired = (0i128, 0i128);
    for outage in outages {
        let start = nanos(outage.start);
        let end = outage.end.map_or(to, nanos).max(start);
        down += (end.min(to) - start.max(from)).max(0);
        if (from..to).contains(&start) {
            failures += 1;
            if outage.end.is_some() {
                repaired.0 += end - start;
                repaired.1 += 1;
            }
        }
    }
    let up = (to - from - down).max(0);
    let mtbf = (failures > 0).then(|| nanos_duration(up / failures));
    let mttr = (repaired.1 > 0).then(|| nanos_duration(repaired.0 / repaired.1));
    (mtbf, mttr)
}

/// Tuning for [`HostState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostParams {
    /// Consecutive missed ping sweeps before a host that has answered ping is Down.
    pub down_after_misses: u32,
    /// An agent heartbeat older than this no longer proves the host up.
    pub agent_stale_after: Duration,
    /// A ping result older than this says nothing (the sweeper stopped); typically three
    /// sweep intervals, like `max_gap`.
    pub ping_stale_after: Duration,
}

/// The live state of one asset from ping sweeps and agent heartbeats.
///
/// - Any fresh agent heartbeat → Up (a Windows PC whose firewall drops ping is up while its
///   agent reports).
/// - Otherwise, from fresh ping results: the last sweep answered → Up; fewer than
///   `down_after_misses` misses in a row since an answer → still Up; that many → Down.
/// - A host that has never answered ping is never Down from ping alone: with its agent silent
///   too it is Unknown. So is any host with no fresh observation at all.
///
/// Observations older than the latest one (the clock stepped back) are applied as if taken at
/// the latest time; a `now` before the latest observation counts as "just observed".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostState {
    params: HostParams,
    latest: Option<OffsetDateTime>,
    last_ping: Option<OffsetDateTime>,
    last_agent: Option<OffsetDateTime>,
    ever_answered: bool,
    misses: u32,
}

impl HostState {
    pub fn new(params: HostParams) -> Self {
        Self {
            params,
            latest: None,
            last_ping: None,
            last_agent: None,
            ever_answered: false,
            misses: 0,
        }
    }

    fn clamp(&mut self, at: OffsetDateTime) -> OffsetDateTime {
        let at = self.latest.map_or(at, |latest| latest.max(at));
        self.latest = Some(at);
        at
    }

    /// One sweep's result for this host.
    pub fn observe_ping(&mut self, at: OffsetDateTime, answered: bool) {
        let at = self.clamp(at);
        self.last_ping = Some(at);
        if answered {
            self.ever_answered = true;
            self.misses = 0;
        } else {
            self.misses = self.misses.saturating_add(1);
        }
    }

    /// An agent heartbeat or report from this host.
    pub fn observe_agent(&mut self, at: OffsetDateTime) {
        let at = self.clamp(at);
        self.last_agent = Some(at);
    }

    /// Consecutive missed sweeps since the last answer.
    pub fn misses(&self) -> u32 {
        self.misses
    }

    pub fn state(&self, now: OffsetDateTime) -> Status {
        if self.agent_fresh(now) {
            return Status::Up;
        }
        self.ping_state(now)
    }

    /// Ping says up but the agent this host has is silent past `agent_stale_after`:
    /// "agent stopped but host up".
    pub fn agent_silent_while_up(&self, now: OffsetDateTime) -> bool {
        self.last_agent.is_some() && !self.agent_fresh(now) && self.ping_state(now) == Status::Up
    }

    fn agent_fresh(&self, now: OffsetDateTime) -> bool {
        self.last_agent
            .is_some_and(|at| age(now, at) <= self.params.agent_stale_after)
    }

    fn ping_state(&self, now: OffsetDateTime) -> Status {
        let fresh = self
            .last_ping
            .is_some_and(|at| age(now, at) <= self.params.ping_stale_after);
        if !fresh || !self.ever_answered {
            Status::Unknown
        } else if self.misses >= self.params.down_after_misses.max(1) {
            Status::Down
        } else {
            Status::Up
        }
    }
}

/// `now - at`, zero when the clock says `at` is in the future.
fn age(now: OffsetDateTime, at: OffsetDateTime) -> Duration {
    nanos_duration(nanos(now) - nanos(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::SchoolHoursConfig;
    use proptest::prelude::*;
    use time::macros::datetime;

    const MINUTE: time::Duration = time::Duration::MINUTE;
    const GAP: Duration = Duration::from_secs(180);

    fn params() -> HostParams {
        HostParams {
            down_after_misses: 3,
            agent_stale_after: Duration::from_secs(300),
            ping_stale_after: GAP,
        }
    }

    #[test]
    fn one_miss_stays_up_n_misses_are_down_an_answer_is_up() {
        let t0 = datetime!(2026-05-04 9:00 UTC);
        let mut host = HostState::new(params());
        assert_eq!(host.state(t0), Status::Unknown, "nothing observed yet");
        host.observe_ping(t0, true);
        assert_eq!(host.state(t0), Status::Up);
        host.observe_ping(t0 + MINUTE, false);
        assert_eq!(
            host.state(t0 + MINUTE),
            Status::Up,
            "one miss is not an outage"
        );
        host.observe_ping(t0 + 2 * MINUTE, false);
        assert_eq!(host.state(t0 + 2 * MINUTE), Status::Up);
        host.observe_ping(t0 + 3 * MINUTE, false);
        assert_eq!(
            host.state(t0 + 3 * MINUTE),
            Status::Down,
            "three misses in a row"
        );
        host.observe_ping(t0 + 4 * MINUTE, true);
        assert_eq!(host.state(t0 + 4 * MINUTE), Status::Up);
        assert_eq!(host.misses(), 0);
        // The sweeper stops: the last result goes stale and the host is unknown, not up.
        assert_eq!(host.state(t0 + 10 * MINUTE), Status::Unknown);
    }

    #[test]
    fn agent_silent_while_ping_answers_is_reported() {
        let t0 = datetime!(2026-05-04 9:00 UTC);
        let mut host = HostState::new(params());
        host.observe_agent(t0);
        for minute in 0..10 {
            host.observe_ping(t0 + minute * MINUTE, true);
            let now = t0 + minute * MINUTE;
            assert_eq!(host.state(now), Status::Up);
            assert_eq!(
                host.agent_silent_while_up(now),
                minute > 5,
                "minute {minute}"
            );
        }
        // Host down too: that is "host down", not "agent stopped".
        for minute in 10..13 {
            host.observe_ping(t0 + minute * MINUTE, false);
        }
        assert_eq!(host.state(t0 + 12 * MINUTE), Status::Down);
        assert!(!host.agent_silent_while_up(t0 + 12 * MINUTE));
        // A host without an agent is never "agent silent".
        let mut plain = HostState::new(params());
        plain.observe_ping(t0, true);
        assert!(!plain.agent_silent_while_up(t0 + 10 * MINUTE));
    }

    #[test]
    fn firewalled_agent_host_is_up_while_reporting_and_unknown_when_silent() {
        let t0 = datetime!(2026-05-04 9:00 UTC);
        let mut host = HostState::new(params());
        for minute in 0..10 {
            let now = t0 + minute * MINUTE;
            host.observe_ping(now, false);
            if minute < 5 {
                host.observe_agent(now);
            }
            // Ping never answers, but the agent's last report is under 5 minutes old.
            assert_eq!(host.state(now), Status::Up, "minute {minute}");
        }
        assert_eq!(host.state(t0 + 10 * MINUTE), Status::Unknown);
        assert!(!host.agent_silent_while_up(t0 + 10 * MINUTE));
    }

    #[test]
    fn a_clock_step_backwards_is_applied_at_the_latest_time() {
        let t0 = datetime!(2026-05-04 9:00 UTC);
        let mut host = HostState::new(params());
        host.observe_ping(t0, true);
        host.observe_ping(t0 - 60 * MINUTE, false);
        host.observe_ping(t0 - 120 * MINUTE, false);
        host.observe_ping(t0 - 180 * MINUTE, false);
        assert_eq!(host.state(t0), Status::Down);
        assert_eq!(
            host.state(t0 - 500 * MINUTE),
            Status::Down,
            "now before the latest"
        );
    }

    fn hourly(
        from: OffsetDateTime,
        hours: i32,
        state: impl Fn(i32) -> Status,
    ) -> Vec<(OffsetDateTime, Status)> {
        (0..hours * 60)
            .map(|m| (from + m * MINUTE, state(m / 60)))
            .collect()
    }

    #[test]
    fn outages_start_at_first_down_and_end_at_first_up() {
        let t0 = datetime!(2026-05-04 9:00 UTC);
        let samples = vec![
            (t0, Status::Up),
            (t0 + MINUTE, Status::Down),
            (t0 + 2 * MINUTE, Status::Unknown),
            (t0 + 3 * MINUTE, Status::Down),
            (t0 + 63 * MINUTE, Status::Up), // collector was off for an hour
            (t0 + 64 * MINUTE, Status::Down),
        ];
        let found = outages(&samples, GAP);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].start, t0 + MINUTE);
        assert_eq!(found[0].end, Some(t0 + 63 * MINUTE));
        // Down seen for [1,2) and [3,6): 62 − 4 minutes nobody saw.
        assert_eq!(found[0].unobserved, Duration::from_secs(58 * 60));
        assert_eq!(
            found[1],
            Outage {
                start: t0 + 64 * MINUTE,
                end: None,
                unobserved: Duration::ZERO
            }
        );
    }

    #[test]
    fn collector_downtime_is_unknown_not_down() {
        let t0 = datetime!(2026-05-04 0:00 UTC);
        let mut samples = hourly(t0, 2, |_| Status::Up);
        samples.extend(hourly(t0 + 5 * 60 * MINUTE, 1, |_| Status::Up));
        let a = availability(
            &samples,
            t0,
            t0 + 6 * 60 * MINUTE,
            GAP,
            &SchoolHours::always(),
        );
        assert_eq!(a.percent, Some(100.0));
        // Each block's last sample speaks for 3 minutes more (max_gap), inside the window.
        assert_eq!(a.up_secs, (122 + 60) as f64 * 60.0);
        assert_eq!(a.down_secs, 0.0);
        assert_eq!(a.up_secs + a.unknown_secs, 6.0 * 3600.0);
        assert!(outages(&samples, GAP).is_empty());
    }

    #[test]
    fn night_outages_do_not_count_within_school_hours_across_dst() {
        let hours = toml::from_str::<SchoolHoursConfig>(
            r#"
            timezone = "Europe/London"
            weekly = { mon = "08:00-16:30", tue = "08:00-16:30", wed = "08:00-16:30", thu = "08:00-16:30", fri = "08:00-15:30" }
            "#,
        )
        .unwrap()
        .validate()
        .unwrap();
        let tz = jiff::tz::TimeZone::get("Europe/London").unwrap();
        for (from, to) in [
            (
                datetime!(2026-10-19 0:00 UTC),
                datetime!(2026-10-31 0:00 UTC),
            ),
            (
                datetime!(2026-03-23 0:00 UTC),
                datetime!(2026-04-04 0:00 UTC),
            ),
        ] {
            // A host switched off 20:00–06:00 local every night, one sample a minute.
            let mut samples = Vec::new();
            let mut at = from;
            while at < to {
                let local =
                    tz.to_datetime(jiff::Timestamp::from_second(at.unix_timestamp()).unwrap());
                let night = local.hour() >= 20 || local.hour() < 6;
                samples.push((at, if night { Status::Down } else { Status::Up }));
                at += MINUTE;
            }
            let school = availability(&samples, from, to, GAP, &hours);
            assert_eq!(school.percent, Some(100.0), "{from}");
            assert_eq!(school.up_secs, 2.0 * (4.0 * 8.5 + 7.5) * 3600.0);
            assert_eq!(school.down_secs + school.unknown_secs, 0.0);
            let all = availability(&samples, from, to, GAP, &SchoolHours::always());
            assert!(all.percent.unwrap() < 60.0, "{all:?}");
            // One per night: the window opens at night, then twelve evenings.
            assert_eq!(outages(&samples, GAP).len(), 13);
        }
    }

    #[test]
    fn mtbf_and_mttr() {
        let t0 = datetime!(2026-05-04 0:00 UTC);
        let day = 24 * 60 * MINUTE;
        let list = [
            Outage {
                start: t0 + 60 * MINUTE,
                end: Some(t0 + 90 * MINUTE),
                unobserved: Duration::ZERO,
            },
            Outage {
                start: t0 + 600 * MINUTE,
                end: Some(t0 + 610 * MINUTE),
                unobserved: Duration::ZERO,
            },
            Outage {
                start: t0 + 1420 * MINUTE,
                end: None,
                unobserved: Duration::ZERO,
            },
        ];
        let (mtbf, mttr) = mtbf_mttr(&list, t0, t0 + day);
        // Up = 1440 − 30 − 10 − 20 = 1380 min over 3 failures; repairs 30 and 10 min.
        assert_eq!(mtbf, Some(Duration::from_secs(460 * 60)));
        assert_eq!(mttr, Some(Duration::from_secs(20 * 60)));
        assert_eq!(mtbf_mttr(&[], t0, t0 + day), (None, None));
        assert_eq!(mtbf_mttr(&list, t0 + day, t0), (None, None));
    }

    fn arb_state() -> impl Strategy<Value = Status> {
        prop_oneof![Just(Status::Up), Just(Status::Down), Just(Status::Unknown)]
    }

    /// Samples with steps that may go backwards (NTP) or jump far forwards (collector off).
    fn arb_samples() -> impl Strategy<Value = Vec<(OffsetDateTime, Status)>> {
        prop::collection::vec((-600i64..7200, arb_state()), 0..80).prop_map(|steps| {
            let mut at = datetime!(2026-10-20 0:00 UTC);
            steps
                .into_iter()
                .map(|(step, state)| {
                    at += time::Duration::seconds(step);
                    (at, state)
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn availability_accounts_for_every_second(
            samples in arb_samples(),
            offset in -3600i64..86_400,
            len in 0i64..(10 * 86_400),
            gap in 1u64..3600,
            school in any::<bool>(),
        ) {
            let hours = if school {
                toml::from_str::<SchoolHoursConfig>(
                    "timezone = \"Europe/London\"\nweekly = { mon = \"08:00-16:30\", tue = \"08:00-12:00,13:00-16:30\", sun = \"22:00-24:00\" }\n",
                ).unwrap().validate().unwrap()
            } else {
                SchoolHours::always()
            };
            let from = datetime!(2026-10-20 0:00 UTC) + time::Duration::seconds(offset);
            let to = from + time::Duration::seconds(len);
            let a = availability(&samples, from, to, Duration::from_secs(gap), &hours);
            let total: f64 = hours
                .school_intervals(from, to)
                .iter()
                .map(|(s, e)| (*e - *s).as_seconds_f64())
                .sum();
            prop_assert!((a.up_secs + a.down_secs + a.unknown_secs - total).abs() < 1e-6);
            prop_assert!(a.up_secs >= 0.0 && a.down_secs >= 0.0 && a.unknown_secs >= 0.0);
            match a.percent {
                Some(p) => prop_assert!((0.0..=100.0).contains(&p)),
                None => prop_assert_eq!(a.up_secs + a.down_secs, 0.0),
            }
        }

        #[test]
        fn outages_are_ordered_and_never_overlap(samples in arb_samples(), gap in 1u64..3600) {
            let found = outages(&samples, Duration::from_secs(gap));
            for outage in &found {
                if let Some(end) = outage.end {
                    prop_assert!(outage.start <= end);
                    prop_assert!(outage.unobserved <= outage.duration(end));
                }
            }
            for pair in found.windows(2) {
                prop_assert!(pair[0].end.is_some_and(|end| end <= pair[1].start));
            }
            prop_assert!(found.iter().rev().skip(1).all(|o| o.end.is_some()));
            let last = samples.last().map_or(datetime!(2026-10-20 0:00 UTC), |s| s.0);
            let (mtbf, mttr) = mtbf_mttr(&found, last - time::Duration::days(3), last);
            prop_assert!(mtbf.is_none() || !found.is_empty());
            prop_assert!(mttr.is_none() || found.iter().any(|o| o.end.is_some()));
        }

        #[test]
        fn host_state_never_panics_whatever_the_clock_does(
            steps in prop::collection::vec((-86_400i64..86_400, 0u8..3), 0..200),
            probe in -86_400i64..86_400,
        ) {
            let mut host = HostState::new(params());
            let mut at = datetime!(2026-03-29 0:30 UTC);
            for (step, kind) in steps {
                at += time::Duration::seconds(step);
                match kind {
                    0 => host.observe_ping(at, true),
                    1 => host.observe_ping(at, false),
                    _ => host.observe_agent(at),
                }
                let now = at + time::Duration::seconds(probe);
                let state = host.state(now);
                if host.agent_silent_while_up(now) {
                    prop_assert_eq!(state, Status::Up);
                }
            }
        }
    }
}
