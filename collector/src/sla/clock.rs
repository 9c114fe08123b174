//! SLA clocks: how long an incident took to be answered and to be resolved, on the agreed
//! clock, with the time it spent on hold (and resolved, before a reopen) left out. Pure.
//!
//! The clock starts when the incident opens. It pauses at `Held` and runs again at the next
//! `Resumed` (the desk taking it off hold), `Acknowledged` or `Reopened`; it stops at `Resolved` or
//! `Closed` and runs again at `Reopened`. The response is the first `Acknowledged` or
//! `Assigned` (to someone). Each running stretch counts only its school time when the clock
//! is `school_hours`.

use std::time::Duration;

use time::OffsetDateTime;

use super::config::{Clock, Targets};
use crate::model::{Incident, IncidentEvent, IncidentEventKind};
use crate::track::SchoolHours;

/// When an incident's SLA clock ran, from its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    pub opened: OffsetDateTime,
    pub responded: Option<OffsetDateTime>,
    pub resolved: Option<OffsetDateTime>,
    /// Disjoint, in order; the last one is open (`None`) while the clock runs.
    pub running: Vec<(OffsetDateTime, Option<OffsetDateTime>)>,
    /// Stretches on hold, in order; the last is open while the incident is on hold.
    pub held: Vec<(OffsetDateTime, Option<OffsetDateTime>)>,
}

/// The clock's timeline of `incident` from its events (any order, other incidents' events
/// ignored).
pub fn timeline(incident: &Incident, events: &[&IncidentEvent]) -> Timeline {
    let mut events: Vec<&IncidentEvent> = events
        .iter()
        .copied()
        .filter(|e| e.incident_id == incident.id)
        .collect();
    events.sort_by_key(|e| (e.at, e.seq));
    let mut running: Vec<(OffsetDateTime, Option<OffsetDateTime>)> =
        vec![(incident.opened_at, None)];
    let mut held: Vec<(OffsetDateTime, Option<OffsetDateTime>)> = Vec::new();
    let mut responded = None;
    let mut resolved = None;
    let is_running =
        |r: &[(OffsetDateTime, Option<OffsetDateTime>)]| r.last().is_some_and(|l| l.1.is_none());
    for event in events {
        let at = event.at.max(incident.opened_at);
        match &event.kind {
            IncidentEventKind::Opened
            | IncidentEventKind::PriorityChanged { .. }
            | IncidentEventKind::Noted { .. } => {}
            IncidentEventKind::Acknowledged { .. } => {
                responded.get_or_insert(at);
                if let Some(h) = held.last_mut().filter(|h| h.1.is_none()) {
                    h.1 = Some(at);
                    if !is_running(&running) {
                        running.push((at, None));
                    }
                }
            }
            IncidentEventKind::Resumed { .. } => {
                if let Some(h) = held.last_mut().filter(|h| h.1.is_none()) {
                    h.1 = Some(at);
                    if !is_running(&running) {
                        running.push((at, None));
                    }
                }
            }
            IncidentEventKind::Assigned { to, .. } => {
                if !to.trim().is_empty() {
                    responded.get_or_insert(at);
                }
            }
            IncidentEventKind::Held { .. } => {
                if is_running(&running) {
                    if let Some(last) = running.last_mut() {
                        last.1 = Some(at);
                    }
                    held.push((at, None));
                }
            }
            IncidentEventKind::Resolved { .. } | IncidentEventKind::Closed => {
                if let Some(last) = running.last_mut().filter(|l| l.1.is_none()) {
                    last.1 = Some(at);
                }
                if let Some(h) = held.last_mut().filter(|h| h.1.is_none()) {
                    h.1 = Some(at);
                }
                resolved = Some(at);
            }
            IncidentEventKind::Reopened => {
                if let Some(h) = held.last_mut().filter(|h| h.1.is_none()) {
                    h.1 = Some(at);
                }
                if !is_running(&running) {
                    running.push((at, None));
                }
                resolved = None;
            }
        }
    }
    // The record is the authority when events were pruned or never written.
    if responded.is_none() {
        responded = incident.acknowledged_at;
    }
    if !incident.state.is_open() {
        let end = incident
            .resolved_at
            .or(incident.closed_at)
            .or(resolved)
            .unwrap_or(incident.updated_at);
        if let Some(last) = running.last_mut().filter(|l| l.1.is_none()) {
            last.1 = Some(end.max(last.0));
        }
        if let Some(h) = held.last_mut().filter(|h| h.1.is_none()) {
            h.1 = Some(end.max(h.0));
        }
        resolved = Some(resolved.unwrap_or(end));
    } else {
        resolved = None;
    }
    Timeline {
        opened: incident.opened_at,
        responded,
        resolved,
        running,
        held,
    }
}

/// Time on `clock` inside `running`, up to `until`.
pub fn elapsed(
    running: &[(OffsetDateTime, Option<OffsetDateTime>)],
    until: OffsetDateTime,
    clock: Clock,
    hours: &SchoolHours,
) -> Duration {
    let always = SchoolHours::always();
    let hours = match clock {
        Clock::Always => &always,
        Clock::SchoolHours => hours,
    };
    let mut total = time::Duration::ZERO;
    for &(from, to) in running {
        let to = to.unwrap_or(until).min(until);
        if to <= from {
            continue;
        }
        for (a, b) in hours.school_intervals(from, to) {
            total += b - a;
        }
    }
    Duration::try_from(total).unwrap_or_default()
}

/// Where one clock stands against its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Stopped within the target.
    Met,
    /// Past the target (stopped or still running).
    Breached,
    /// Running, past the warning fraction of the target.
    AtRisk,
    /// Running, before the warning fraction.
    OnTrack,
    /// No target for this priority.
    NoTarget,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Met => "met",
            State::Breached => "breached",
            State::AtRisk => "at risk",
            State::OnTrack => "on track",
            State::NoTarget => "no target",
        }
    }
}

/// One clock (response or resolution) of one incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    /// Time counted so far (or in all, once stopped).
    pub elapsed: Duration,
    pub target: Option<Duration>,
    /// The clock has stopped (responded / resolved).
    pub stopped: bool,
    pub state: State,
}

impl Measure {
    fn new(elapsed: Duration, target: Option<Duration>, stopped: bool, warn: f64) -> Self {
        let state = match target {
            None => State::NoTarget,
            Some(t) if elapsed > t => State::Breached,
            Some(_) if stopped => State::Met,
            Some(t) if elapsed.as_secs_f64() >= t.as_secs_f64() * warn => State::AtRisk,
            Some(_) => State::OnTrack,
        };
        Self {
            elapsed,
            target,
            stopped,
            state,
        }
    }

    /// Time left on the clock before the breach (zero once breached); `None` without target.
    pub fn left(&self) -> Option<Duration> {
        self.target.map(|t| t.saturating_sub(self.elapsed))
    }
}

/// Both clocks of one incident at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assessment {
    pub response: Measure,
    pub resolution: Measure,
    /// Time on hold so far (wall clock).
    pub on_hold: Duration,
}

/// Assesses `incident` at `now` against `targets`.
pub fn assess(
    incident: &Incident,
    events: &[&IncidentEvent],
    now: OffsetDateTime,
    targets: &Targets,
    hours: &SchoolHours,
) -> Assessment {
    let line = timeline(incident, events);
    let until_response = line.responded.unwrap_or(now).min(now);
    let response = Measure::new(
        elapsed(&line.running, until_response, targets.clock, hours),
        targets.response(incident.priority),
        line.responded.is_some_and(|r| r <= now),
        targets.warn_fraction,
    );
    let until_resolution = line.resolved.unwrap_or(now).min(now);
    let resolution = Measure::new(
        elapsed(&line.running, until_resolution, targets.clock, hours),
        targets.resolution(incident.priority),
        line.resolved.is_some_and(|r| r <= now),
        targets.warn_fraction,
    );
    let on_hold = line
        .held
        .iter()
        .map(|&(a, b)| b.unwrap_or(now).min(now) - a)
        .filter(|d| d.is_positive())
        .fold(time::Duration::ZERO, |acc, d| acc + d);
    Assessment {
        response,
        resolution,
        on_hold: Duration::try_from(on_hold).unwrap_or_default(),
    }
}

/// `1h 05m`, `3d 2h`, `12m`: a duration as a person reads it on a report.
pub fn human(d: Duration) -> String {
    let mins = d.as_secs() / 60;
    let (days, hours, minutes) = (mins / 1440, (mins / 60) % 24, mins % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {minutes:02}m")
    } else {
        format!("{minutes}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IncidentState;
    use time::macros::datetime;

    fn incident(opened: OffsetDateTime, priority: u8) -> Incident {
        Incident {
            id: "i1".into(),
            number: "INC0000001".into(),
            asset_id: "a1".into(),
            asset_name: "sw1".into(),
            rule: "host_down".into(),
            title: "down".into(),
            description: String::new(),
            impact: 1,
            urgency: priority,
            priority,
            state: IncidentState::New,
            opened_at: opened,
            updated_at: opened,
            acknowledged_at: None,
            resolved_at: None,
            closed_at: None,
            occurrences: 1,
            notes: Vec::new(),
            affected: Vec::new(),
            flapping: false,
            measured: serde_json::Value::Null,
            problem_id: None,
            clear_since: None,
            transitions: Vec::new(),
            desk: Default::default(),
        }
    }

    fn ev(seq: u64, at: OffsetDateTime, kind: IncidentEventKind) -> IncidentEvent {
        IncidentEvent {
            seq,
            at,
            incident_id: "i1".into(),
            kind,
        }
    }

    fn targets(clock: Clock) -> Targets {
        let m = |n: u64| Some(Duration::from_secs(n * 60));
        Targets {
            response: [m(15), m(30), m(60), m(240), None],
            resolution: [m(240), m(240), m(480), m(1440), None],
            warn_fraction: 0.75,
            clock,
        }
    }

    fn by(s: &str) -> String {
        s.to_owned()
    }

    #[test]
    fn hold_time_is_not_counted() {
        let t0 = datetime!(2026-11-03 09:00 UTC);
        let mut inc = incident(t0, 2);
        inc.state = IncidentState::Resolved;
        inc.resolved_at = Some(datetime!(2026-11-03 13:30 UTC));
        inc.acknowledged_at = Some(datetime!(2026-11-03 09:50 UTC));
        let events = [
            ev(1, t0, IncidentEventKind::Opened),
            ev(
                2,
                datetime!(2026-11-03 09:50 UTC),
                IncidentEventKind::Acknowledged { by: by("t") },
            ),
            ev(
                3,
                datetime!(2026-11-03 10:00 UTC),
                IncidentEventKind::Held { by: by("t") },
            ),
            ev(
                4,
                datetime!(2026-11-03 11:00 UTC),
                IncidentEventKind::Acknowledged { by: by("t") },
            ),
            ev(
                5,
                datetime!(2026-11-03 13:30 UTC),
                IncidentEventKind::Resolved { automatic: false },
            ),
        ];
        let refs: Vec<&IncidentEvent> = events.iter().collect();
        let a = assess(
            &inc,
            &refs,
            datetime!(2026-12-01 00:00 UTC),
            &targets(Clock::Always),
            &SchoolHours::always(),
        );
        assert_eq!(a.response.elapsed, Duration::from_secs(50 * 60));
        assert_eq!(a.response.state, State::Breached);
        assert_eq!(
            a.resolution.elapsed,
            Duration::from_secs(210 * 60),
            "4h30 less the hour on hold"
        );
        assert_eq!(a.resolution.state, State::Met);
        assert_eq!(a.on_hold, Duration::from_secs(3600));
    }

    #[test]
    fn a_running_clock_warns_then_breaches() {
        let t0 = datetime!(2026-11-03 09:00 UTC);
        let inc = incident(t0, 3);
        let events = [ev(1, t0, IncidentEventKind::Opened)];
        let refs: Vec<&IncidentEvent> = events.iter().collect();
        let at = |m: i64| t0 + time::Duration::minutes(m);
        let t = targets(Clock::Always);
        let h = SchoolHours::always();
        assert_eq!(
            assess(&inc, &refs, at(44), &t, &h).response.state,
            State::OnTrack
        );
        let risk = assess(&inc, &refs, at(45), &t, &h).response;
        assert_eq!(risk.state, State::AtRisk);
        assert_eq!(risk.left(), Some(Duration::from_secs(15 * 60)));
        let late = assess(&inc, &refs, at(61), &t, &h).response;
        assert_eq!(late.state, State::Breached);
        assert_eq!(late.left(), Some(Duration::ZERO));
        assert!(!late.stopped);
    }

    #[test]
    fn an_open_hold_stops_the_clock_until_taken_off_hold() {
        let t0 = datetime!(2026-11-03 09:00 UTC);
        let mut inc = incident(t0, 3);
        inc.state = IncidentState::OnHold;
        let events = [
            ev(1, t0, IncidentEventKind::Opened),
            ev(
                2,
                t0 + time::Duration::minutes(10),
                IncidentEventKind::Assigned {
                    by: by("a"),
                    to: by("t"),
                },
            ),
            ev(
                3,
                t0 + time::Duration::minutes(20),
                IncidentEventKind::Held { by: by("t") },
            ),
        ];
        let refs: Vec<&IncidentEvent> = events.iter().collect();
        let t = targets(Clock::Always);
        let a = assess(
            &inc,
            &refs,
            t0 + time::Duration::hours(30),
            &t,
            &SchoolHours::always(),
        );
        assert_eq!(a.response.elapsed, Duration::from_secs(600));
        assert_eq!(a.response.state, State::Met);
        assert_eq!(a.resolution.elapsed, Duration::from_secs(1200));
        assert_eq!(a.resolution.state, State::OnTrack);
        assert_eq!(a.on_hold, Duration::from_secs(29 * 3600 + 40 * 60));
    }

    #[test]
    fn taking_an_incident_off_hold_starts_the_clock_again() {
        // The dashboard's and the API's "resume" (not an acknowledgement): the time on hold
        // moves the breach later by as much, no more.
        let t0 = datetime!(2026-11-03 09:00 UTC);
        let mut inc = incident(t0, 3);
        inc.state = IncidentState::InProgress;
        let at = |m: i64| t0 + time::Duration::minutes(m);
        let events = [
            ev(1, t0, IncidentEventKind::Opened),
            ev(2, at(10), IncidentEventKind::Held { by: by("t") }),
            ev(3, at(40), IncidentEventKind::Resumed { by: by("t") }),
        ];
        let refs: Vec<&IncidentEvent> = events.iter().collect();
        let t = targets(Clock::Always);
        let h = SchoolHours::always();
        let a = assess(&inc, &refs, at(60), &t, &h);
        assert_eq!(
            a.response.elapsed,
            Duration::from_secs(30 * 60),
            "60 min less 30 held"
        );
        assert_eq!(
            a.response.state,
            State::OnTrack,
            "not responded, not at risk"
        );
        assert!(!a.response.stopped);
        assert_eq!(a.on_hold, Duration::from_secs(30 * 60));
        // P3's response target is 1 h: at risk at 45 min counted, breached after 60.
        assert_eq!(
            assess(&inc, &refs, at(75), &t, &h).response.state,
            State::AtRisk
        );
        assert_eq!(
            assess(&inc, &refs, at(91), &t, &h).response.state,
            State::Breached
        );
    }

    #[test]
    fn school_hours_clock_skips_nights_and_weekends() {
        let hours = crate::track::SchoolHoursConfig {
            timezone: "UTC".into(),
            weekly: [
                ("mon", "08:00-16:00"),
                ("tue", "08:00-16:00"),
                ("wed", "08:00-16:00"),
                ("thu", "08:00-16:00"),
                ("fri", "08:00-16:00"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            terms: Vec::new(),
            closures: Vec::new(),
        }
        .validate()
        .expect("valid");
        // Friday 15:00 → Monday 09:00 is two school hours.
        let t0 = datetime!(2026-11-06 15:00 UTC);
        let mut inc = incident(t0, 3);
        inc.state = IncidentState::Resolved;
        inc.resolved_at = Some(datetime!(2026-11-09 09:00 UTC));
        let events = [
            ev(1, t0, IncidentEventKind::Opened),
            ev(
                2,
                datetime!(2026-11-09 09:00 UTC),
                IncidentEventKind::Resolved { automatic: true },
            ),
        ];
        let refs: Vec<&IncidentEvent> = events.iter().collect();
        let now = datetime!(2026-12-01 00:00 UTC);
        let school = assess(&inc, &refs, now, &targets(Clock::SchoolHours), &hours);
        assert_eq!(school.resolution.elapsed, Duration::from_secs(2 * 3600));
        assert_eq!(school.resolution.state, State::Met);
        assert_eq!(
            school.response.elapsed,
            Duration::from_secs(2 * 3600),
            "never acknowledged: runs until now"
        );
        let always = assess(&inc, &refs, now, &targets(Clock::Always), &hours);
        assert_eq!(always.resolution.elapsed, Duration::from_secs(66 * 3600));
        assert_eq!(always.resolution.state, State::Breached);
    }

    #[test]
    fn resolved_time_before_a_reopen_does_not_count() {
        let t0 = datetime!(2026-11-03 09:00 UTC);
        let inc = incident(t0, 2);
        let at = |m: i64| t0 + time::Duration::minutes(m);
        let events = [
            ev(1, t0, IncidentEventKind::Opened),
            ev(2, at(30), IncidentEventKind::Resolved { automatic: true }),
            ev(3, at(90), IncidentEventKind::Reopened),
        ];
        let refs: Vec<&IncidentEvent> = events.iter().collect();
        let a = assess(
            &inc,
            &refs,
            at(100),
            &targets(Clock::Always),
            &SchoolHours::always(),
        );
        assert_eq!(a.resolution.elapsed, Duration::from_secs(40 * 60));
        assert!(!a.resolution.stopped);
    }

    #[test]
    fn records_without_events_still_measure() {
        let t0 = datetime!(2026-11-03 09:00 UTC);
        let mut inc = incident(t0, 1);
        inc.state = IncidentState::Resolved;
        inc.acknowledged_at = Some(t0 + time::Duration::minutes(5));
        inc.resolved_at = Some(t0 + time::Duration::minutes(300));
        let a = assess(
            &inc,
            &[],
            t0 + time::Duration::days(3),
            &targets(Clock::Always),
            &SchoolHours::always(),
        );
        assert_eq!(a.response.elapsed, Duration::from_secs(300));
        assert_eq!(a.response.state, State::Met);
        assert_eq!(a.resolution.elapsed, Duration::from_secs(300 * 60));
        assert_eq!(a.resolution.state, State::Breached);
        let none = assess(
            &incident(t0, 5),
            &[],
            t0 + time::Duration::days(3),
            &targets(Clock::Always),
            &SchoolHours::always(),
        );
        assert_eq!(none.response.state, State::NoTarget);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_secs(12 * 60 + 5)), "12m");
        assert_eq!(human(Duration::from_secs(3900)), "1h 05m");
        assert_eq!(human(Duration::from_secs(3 * 86_400 + 7200)), "3d 2h");
    }

    proptest::proptest! {
        /// Whatever the events, the resolution clock never exceeds the wall time since
        /// opening, and the response clock never exceeds the resolution clock's span.
        #[test]
        fn clocks_are_bounded_by_wall_time(kinds in proptest::collection::vec(0u8..6, 0..12), gaps in proptest::collection::vec(0i64..600, 12)) {
            let t0 = datetime!(2026-11-03 09:00 UTC);
            let mut at = t0;
            let mut events = Vec::new();
            for (i, k) in kinds.iter().enumerate() {
                at += time::Duration::minutes(gaps[i]);
                let kind = match k {
                    0 => IncidentEventKind::Acknowledged { by: by("t") },
                    1 => IncidentEventKind::Held { by: by("t") },
                    2 => IncidentEventKind::Resolved { automatic: true },
                    3 => IncidentEventKind::Reopened,
                    4 => IncidentEventKind::Assigned { by: by("t"), to: by("x") },
                    _ => IncidentEventKind::Noted { by: by("t") },
                };
                events.push(ev(i as u64, at, kind));
            }
            let refs: Vec<&IncidentEvent> = events.iter().collect();
            let now = at + time::Duration::hours(1);
            let a = assess(&incident(t0, 2), &refs, now, &targets(Clock::Always), &SchoolHours::always());
            let wall = Duration::try_from(now - t0).unwrap_or_default();
            proptest::prop_assert!(a.resolution.elapsed <= wall);
            proptest::prop_assert!(a.on_hold <= wall);
            proptest::prop_assert!(a.resolution.elapsed + a.on_hold <= wall);
        }
    }
}
