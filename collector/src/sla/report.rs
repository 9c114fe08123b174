//! The monthly service-level report: one model, built once, rendered as the printable page,
//! the PDF and the email.
//!
//! [`gather`] reads what a month needs from the store (blocking: call it in
//! `spawn_blocking`); [`build`] is pure and turns it into a [`MonthlyReport`] whose figures are
//! already text, so the page, the PDF and the email say exactly the same thing.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use super::Settings;
use super::clock::{self, State, human};
use crate::model::{Asset, Incident, IncidentEvent, Problem, Status};
use crate::store::{Store, StoreError};
use crate::track;

/// A calendar month in the school's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Month {
    pub year: i16,
    pub month: i8,
}

impl Month {
    /// `YYYY-MM`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || format!("month {text:?} is not YYYY-MM (e.g. 2026-11)");
        let (y, m) = text.trim().split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i16 = y.parse().map_err(|_| bad())?;
        let month: i8 = m.parse().map_err(|_| bad())?;
        if !(1..=12).contains(&month) || !(1970..=9998).contains(&year) {
            return Err(bad());
        }
        Ok(Self { year, month })
    }

    /// The month `at` falls in, in `tz`.
    pub fn of(at: OffsetDateTime, tz: &jiff::tz::TimeZone) -> Self {
        let date = jiff::Timestamp::from_second(at.unix_timestamp())
            .map(|ts| ts.to_zoned(tz.clone()).date())
            .unwrap_or_default();
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    pub fn previous(self) -> Self {
        if self.month == 1 {
            Self {
                year: self.year - 1,
                month: 12,
            }
        } else {
            Self {
                year: self.year,
                month: self.month - 1,
            }
        }
    }

    pub fn next(self) -> Self {
        if self.month == 12 {
            Self {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Self {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// `202611`: the key the monthly email's cursor keeps.
    pub fn key(self) -> u64 {
        u64::try_from(i64::from(self.year) * 100 + i64::from(self.month)).unwrap_or(0)
    }

    /// Local midnight on the first of this month, as UTC.
    pub fn start(self, tz: &jiff::tz::TimeZone) -> OffsetDateTime {
        jiff::civil::date(self.year, self.month, 1)
            .to_zoned(tz.clone())
            .ok()
            .and_then(|z| OffsetDateTime::from_unix_timestamp(z.timestamp().as_second()).ok())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// `November 2026`.
    pub fn title(self) -> String {
        const NAMES: [&str; 12] = [
            "January",
            "February",
            "March",
            "April",
            "May",
            "June",
            "July",
            "August",
            "September",
            "October",
            "November",
            "December",
        ];
        let i = usize::try_from(self.month - 1).unwrap_or(0).min(11);
        format!("{} {}", NAMES[i], self.year)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// What [`build`] needs, read from the store by [`gather`].
#[derive(Debug, Clone)]
pub struct Input {
    pub month: Month,
    pub now: OffsetDateTime,
    pub assets: Vec<Asset>,
    pub incidents: Vec<Incident>,
    pub events: Vec<IncidentEvent>,
    /// Ping verdicts and agent reports merged (as `/api/v1/availability` does), per member
    /// asset of any service, for the month.
    pub timelines: HashMap<String, Vec<(OffsetDateTime, Status)>>,
    pub problems: Vec<Problem>,
}

/// Events read per store round trip.
const EVENT_BATCH: usize = 5_000;
/// Verdicts read per asset and month (a 10 s watch interval gives ~270,000).
const MAX_SAMPLES: usize = 400_000;

/// Reads the month's inputs. Blocking.
pub fn gather(
    store: &dyn Store,
    settings: &Settings,
    month: Month,
    now: OffsetDateTime,
) -> Result<Input, StoreError> {
    let tz = settings.tz();
    let (from, to) = (month.start(&tz), month.next().start(&tz));
    let assets = store.assets()?;
    let incidents = store.incidents()?;
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let batch = store.incident_events(after, EVENT_BATCH)?;
        let Some(last) = batch.last().map(|e| e.seq) else {
            break;
        };
        after = last;
        let full = batch.len() == EVENT_BATCH;
        events.extend(batch);
        if !full {
            break;
        }
    }
    let lookback = from - time::Duration::try_from(track::VERDICT_MAX_GAP).unwrap_or_default();
    let mut timelines = HashMap::new();
    for asset in &assets {
        if !settings.services.iter().any(|s| s.has(asset)) {
            continue;
        }
        let reach = store.reach(&asset.id, lookback, to, MAX_SAMPLES)?;
        let status = store.samples(&asset.id, lookback, to, MAX_SAMPLES)?;
        timelines.insert(asset.id.clone(), track::verdict_timeline(&reach, &status));
    }
    Ok(Input {
        month,
        now,
        assets,
        incidents,
        events,
        timelines,
        problems: store.problems()?,
    })
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct MonthlyReport {
    pub school_name: String,
    /// `2026-11`.
    pub month: String,
    /// `November 2026`.
    pub title: String,
    /// First and last day, `2026-11-01` … `2026-11-30`.
    pub first_day: String,
    pub last_day: String,
    /// When it was built, school time, `2026-12-01 07:00`.
    pub generated: String,
    /// `school hours` or `24×7`.
    pub clock: String,
    pub opened: usize,
    pub resolved: usize,
    pub services: Vec<ServiceRow>,
    pub priorities: Vec<PriorityRow>,
    pub problems: Vec<ProblemRow>,
    pub capacity: Vec<CapacityRow>,
    pub warranty_window: String,
    pub warranties: Vec<WarrantyRow>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ServiceRow {
    pub name: String,
    pub members: usize,
    /// Up ÷ (up + down) within school hours over every member; `None` without data.
    pub availability: Option<f64>,
    /// `97.50 %`, or `no data`.
    pub availability_text: String,
    pub target_text: String,
    /// `met`, `missed` or `no data`.
    pub verdict: String,
    /// Down time within school hours, all members added up.
    pub down_text: String,
    pub opened: usize,
    pub resolved: usize,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PriorityRow {
    /// `P2`.
    pub priority: String,
    pub opened: usize,
    pub resolved: usize,
    pub response_target: String,
    /// `2 of 3 (66.7 %)`; `–` when nothing was measured.
    pub response_within: String,
    pub response_median: String,
    pub resolution_target: String,
    pub resolution_within: String,
    pub resolution_median: String,
    /// Incidents of this priority still running against a target.
    pub pending: usize,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ProblemRow {
    /// A problem's number and title, or the rule name.
    pub what: String,
    pub incidents: usize,
    pub assets: usize,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct CapacityRow {
    pub asset: String,
    pub what: String,
    /// `full in 12 days`, `empty in 3 days`, or the level.
    pub outlook: String,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct WarrantyRow {
    pub asset: String,
    pub tag: String,
    pub room: String,
    pub warranty_end: String,
}

fn percent_text(p: f64) -> String {
    format!("{p:.2} %")
}

fn within_text(within: usize, measured: usize) -> String {
    if measured == 0 {
        "–".to_owned()
    } else {
        format!(
            "{within} of {measured} ({:.1} %)",
            within as f64 / measured as f64 * 100.0
        )
    }
}

fn median(mut values: Vec<Duration>) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    values.sort();
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2
    })
}

fn local_date(at: OffsetDateTime, tz: &jiff::tz::TimeZone) -> jiff::civil::Date {
    jiff::Timestamp::from_second(at.unix_timestamp())
        .map(|ts| ts.to_zoned(tz.clone()).date())
        .unwrap_or_default()
}

fn local_time(at: OffsetDateTime, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_second(at.unix_timestamp())
        .map(|ts| {
            ts.to_zoned(tz.clone())
                .strftime("%Y-%m-%d %H:%M")
                .to_string()
        })
        .unwrap_or_default()
}

/// The dates of "next term" after `after`: the first configured term starting after it, or
/// the three months after it when no terms are configured.
fn next_term(
    settings: &Settings,
    after: jiff::civil::Date,
) -> (jiff::civil::Date, jiff::civil::Date) {
    let mut terms: Vec<(jiff::civil::Date, jiff::civil::Date)> = settings
        .terms
        .iter()
        .filter_map(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .collect();
    terms.sort();
    terms
        .into_iter()
        .find(|(start, _)| *start > after)
        .unwrap_or_else(|| {
            let start = after.tomorrow().unwrap_or(after);
            let end = start
                .checked_add(jiff::Span::new().months(3))
                .ok()
                .and_then(|d| d.yesterday().ok())
                .unwrap_or(start);
            (start, end)
        })
}

/// Builds the report for `input.month`. Pure.
pub fn build(settings: &Settings, input: &Input) -> MonthlyReport {
    let tz = settings.tz();
    let month = input.month;
    let (from, to) = (month.start(&tz), month.next().start(&tz));
    let until = to.min(input.now);
    let targets = settings.sla.parsed;
    let names: HashMap<&str, &Asset> = input.assets.iter().map(|a| (a.id.as_str(), a)).collect();
    let mut events_of: HashMap<&str, Vec<&IncidentEvent>> = HashMap::new();
    for event in &input.events {
        events_of
            .entry(event.incident_id.as_str())
            .or_default()
            .push(event);
    }
    let in_month = |at: OffsetDateTime| at >= from && at < to;
    let opened: Vec<&Incident> = input
        .incidents
        .iter()
        .filter(|i| in_month(i.opened_at))
        .collect();
    let resolved_in: Vec<&Incident> = input
        .incidents
        .iter()
        .filter(|i| i.resolved_at.is_some_and(in_month))
        .collect();

    let services = settings
        .services
        .iter()
        .map(|service| {
            let members: Vec<&Asset> = input.assets.iter().filter(|a| service.has(a)).collect();
            let (mut up, mut down) = (0.0, 0.0);
            for asset in &members {
                if let Some(samples) = input.timelines.get(&asset.id) {
                    let a = track::availability(
                        samples,
                        from,
                        until,
                        track::VERDICT_MAX_GAP,
                        &settings.hours,
                    );
                    up += a.up_secs;
                    down += a.down_secs;
                }
            }
            let availability =
                (up + down > 0.0).then(|| (up / (up + down) * 100.0).clamp(0.0, 100.0));
            let member = |i: &Incident| {
                let is_member = names
                    .get(i.asset_id.as_str())
                    .is_some_and(|a| service.has(a));
                service.counts(i, is_member)
            };
            ServiceRow {
                name: service.name.clone(),
                members: members.len(),
                availability,
                availability_text: availability.map_or_else(|| "no data".to_owned(), percent_text),
                target_text: percent_text(service.availability_target),
                verdict: match availability {
                    None => "no data",
                    // Compared as shown (two decimals), so "99.50 % of 99.50 %" is met.
                    Some(a)
                        if (a * 100.0).round() >= (service.availability_target * 100.0).round() =>
                    {
                        "met"
                    }
                    Some(_) => "missed",
                }
                .to_owned(),
                down_text: human(Duration::from_secs_f64(down.max(0.0))),
                opened: opened.iter().filter(|i| member(i)).count(),
                resolved: resolved_in.iter().filter(|i| member(i)).count(),
            }
        })
        .collect();

    let priorities = (1u8..=5)
        .filter_map(|p| {
            let these: Vec<&Incident> =
                opened.iter().copied().filter(|i| i.priority == p).collect();
            let resolved = resolved_in.iter().filter(|i| i.priority == p).count();
            if these.is_empty() && resolved == 0 {
                return None;
            }
            let (mut resp, mut resp_within, mut resol, mut resol_within, mut pending) =
                (Vec::new(), 0, Vec::new(), 0, 0);
            for incident in &these {
                let events = events_of
                    .get(incident.id.as_str())
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                let a = clock::assess(incident, events, input.now, &targets, &settings.hours);
                for (m, values, within) in [
                    (a.response, &mut resp, &mut resp_within),
                    (a.resolution, &mut resol, &mut resol_within),
                ] {
                    match m.state {
                        State::Met => {
                            values.push(m.elapsed);
                            *within += 1;
                        }
                        State::Breached => values.push(m.elapsed),
                        State::NoTarget if m.stopped => values.push(m.elapsed),
                        State::AtRisk | State::OnTrack => pending += 1,
                        State::NoTarget => {}
                    }
                }
            }
            let target = |t: Option<Duration>| t.map_or_else(|| "none".to_owned(), human);
            let med = |v: &[Duration]| median(v.to_vec()).map_or_else(|| "–".to_owned(), human);
            let measured =
                |v: &[Duration], t: Option<Duration>| if t.is_some() { v.len() } else { 0 };
            Some(PriorityRow {
                priority: format!("P{p}"),
                opened: these.len(),
                resolved,
                response_target: target(targets.response(p)),
                response_within: within_text(resp_within, measured(&resp, targets.response(p))),
                response_median: med(&resp),
                resolution_target: target(targets.resolution(p)),
                resolution_within: within_text(
                    resol_within,
                    measured(&resol, targets.resolution(p)),
                ),
                resolution_median: med(&resol),
                pending,
            })
        })
        .collect();

    // Top problems: problem records first, then rules, by incidents opened this month.
    let mut by_problem: BTreeMap<String, (usize, std::collections::BTreeSet<&str>)> =
        BTreeMap::new();
    let problem_names: HashMap<&str, String> = input
        .problems
        .iter()
        .map(|p| (p.id.as_str(), format!("{}: {}", p.number, p.title)))
        .collect();
    for incident in &opened {
        let what = incident
            .problem_id
            .as_deref()
            .and_then(|id| problem_names.get(id).cloned())
            .unwrap_or_else(|| format!("rule {}", incident.rule));
        let entry = by_problem.entry(what).or_default();
        entry.0 += 1;
        entry.1.insert(incident.asset_id.as_str());
    }
    let mut problems: Vec<ProblemRow> = by_problem
        .into_iter()
        .map(|(what, (incidents, assets))| ProblemRow {
            what,
            incidents,
            assets: assets.len(),
        })
        .collect();
    problems.sort_by(|a, b| {
        b.incidents
            .cmp(&a.incidents)
            .then_with(|| a.what.cmp(&b.what))
    });
    problems.truncate(10);

    // Capacity outlook: the forecasts the capacity rules act on, from their incidents.
    let mut capacity: Vec<CapacityRow> = input
        .incidents
        .iter()
        // Open at the month's end: what the head teacher should know about then.
        .filter(|i| i.opened_at < to && i.resolved_at.is_none_or(|r| r >= to))
        .filter(|i| matches!(i.rule.as_str(), "disk_full" | "supply_low"))
        .map(|i| {
            let m = &i.measured;
            let days = m
                .get("days_until_full")
                .or_else(|| m.get("days_until_empty"))
                .and_then(serde_json::Value::as_f64);
            let (what, word, level) = if i.rule == "disk_full" {
                (
                    m.get("mount")
                        .and_then(|v| v.as_str())
                        .unwrap_or("disk")
                        .to_owned(),
                    "full",
                    m.get("used_percent"),
                )
            } else {
                (
                    m.get("supply")
                        .and_then(|v| v.as_str())
                        .unwrap_or("supply")
                        .to_owned(),
                    "empty",
                    m.get("percent"),
                )
            };
            let outlook = match (days, level.and_then(serde_json::Value::as_f64)) {
                (Some(d), _) => format!("{word} in {:.0} days", d.max(0.0)),
                (None, Some(l)) => format!("at {l:.0} %"),
                (None, None) => i.title.clone(),
            };
            CapacityRow {
                asset: i.asset_name.clone(),
                what,
                outlook,
            }
        })
        .collect();
    capacity.sort_by(|a, b| a.asset.cmp(&b.asset).then_with(|| a.what.cmp(&b.what)));

    let last_day = local_date(to - time::Duration::SECOND, &tz);
    let (term_from, term_to) = next_term(settings, last_day);
    let mut warranties: Vec<(time::Date, WarrantyRow)> = input
        .assets
        .iter()
        .filter_map(|a| {
            let end = a.register.warranty_end?;
            let civil = jiff::civil::date(
                end.year() as i16,
                u8::from(end.month()) as i8,
                end.day() as i8,
            );
            (civil >= term_from && civil <= term_to).then(|| {
                (
                    end,
                    WarrantyRow {
                        asset: a.name.clone(),
                        tag: a.register.asset_tag.clone(),
                        room: a.register.room.clone(),
                        warranty_end: civil.to_string(),
                    },
                )
            })
        })
        .collect();
    warranties.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.asset.cmp(&b.1.asset)));

    MonthlyReport {
        school_name: settings.school_name.clone(),
        month: month.to_string(),
        title: month.title(),
        first_day: local_date(from, &tz).to_string(),
        last_day: last_day.to_string(),
        generated: local_time(input.now, &tz),
        clock: match targets.clock {
            super::Clock::SchoolHours if !settings.hours.is_always() => "school hours".to_owned(),
            _ => "24×7".to_owned(),
        },
        opened: opened.len(),
        resolved: resolved_in.len(),
        services,
        priorities,
        problems,
        capacity,
        warranty_window: format!("{term_from} to {term_to}"),
        warranties: warranties.into_iter().map(|(_, w)| w).collect(),
    }
}

/// The report as plain text: the monthly email's body.
pub fn text(report: &MonthlyReport) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let school = if report.school_name.is_empty() {
        String::new()
    } else {
        format!("{}: ", report.school_name)
    };
    line(format!("{school}ICT service levels, {}", report.title));
    line(format!(
        "{} to {}; targets on the {} clock.",
        report.first_day, report.last_day, report.clock
    ));
    line(String::new());
    line(format!(
        "Incidents opened: {}, resolved: {}",
        report.opened, report.resolved
    ));
    line(String::new());
    line("Availability within school hours".to_owned());
    for s in &report.services {
        line(format!(
            "  {}: {} (target {}, {}); down {}; incidents opened {}, resolved {}",
            s.name,
            s.availability_text,
            s.target_text,
            s.verdict,
            s.down_text,
            s.opened,
            s.resolved
        ));
    }
    line(String::new());
    line("Response and resolution by priority".to_owned());
    for p in &report.priorities {
        line(format!(
            "  {}: opened {}, resolved {}; response within {}: {}, median {}; resolution within {}: {}, median {}",
            p.priority,
            p.opened,
            p.resolved,
            p.response_target,
            p.response_within,
            p.response_median,
            p.resolution_target,
            p.resolution_within,
            p.resolution_median
        ));
    }
    if !report.problems.is_empty() {
        line(String::new());
        line("Top problems".to_owned());
        for p in &report.problems {
            line(format!(
                "  {}: {} incidents on {} devices",
                p.what, p.incidents, p.assets
            ));
        }
    }
    if !report.capacity.is_empty() {
        line(String::new());
        line("Capacity outlook".to_owned());
        for c in &report.capacity {
            line(format!("  {} {}: {}", c.asset, c.what, c.outlook));
        }
    }
    line(String::new());
    line(format!(
        "Warranties ending next term ({})",
        report.warranty_window
    ));
    if report.warranties.is_empty() {
        line("  none".to_owned());
    }
    for w in &report.warranties {
        line(format!(
            "  {} {} {}: {}",
            w.asset, w.tag, w.room, w.warranty_end
        ));
    }
    line(String::new());
    line("The full report is attached as a PDF.".to_owned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_and_step() {
        let m = Month::parse("2026-11").expect("valid");
        assert_eq!(m.to_string(), "2026-11");
        assert_eq!(m.next().to_string(), "2026-12");
        assert_eq!(
            Month::parse("2026-01")
                .expect("valid")
                .previous()
                .to_string(),
            "2025-12"
        );
        assert_eq!(m.key(), 202_611);
        assert_eq!(m.title(), "November 2026");
        for bad in [
            "2026-13", "2026-00", "26-11", "2026/11", "", "2026-1x", "99999-01",
        ] {
            assert!(Month::parse(bad).is_err(), "{bad}");
        }
        let london = jiff::tz::TimeZone::get("Europe/London").expect("tz");
        // July starts at 23:00 UTC on 30 June (BST).
        assert_eq!(
            Month::parse("2026-07").expect("valid").start(&london),
            time::macros::datetime!(2026-06-30 23:00 UTC)
        );
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        let m = |v: &[u64]| median(v.iter().map(|s| Duration::from_secs(*s)).collect());
        assert_eq!(m(&[]), None);
        assert_eq!(m(&[30, 10, 20]), Some(Duration::from_secs(20)));
        assert_eq!(m(&[10, 20, 30, 40]), Some(Duration::from_secs(25)));
    }

    #[test]
    fn within_reads_as_counts_and_percent() {
        assert_eq!(within_text(2, 3), "2 of 3 (66.7 %)");
        assert_eq!(within_text(0, 0), "–");
    }
}
