//! Outbox entries for service levels: one warning per incident and clock when an open
//! incident passes the warning fraction of its target (or is found already past it), and the
//! monthly report with its PDF.
//!
//! Called by the alerts task, the one writer of outbox entries. Sent once, across restarts:
//! a warning's id is `sla-{incident}-{response|resolution}` and is planned only when no entry
//! with that id exists (retention keeps mail while its incident is open); the monthly email
//! is committed together with the `report.monthly.sent` key (the month, `YYYYMM`), so a crash
//! either wrote both or neither, and a month is never sent twice.

use std::collections::{HashMap, HashSet};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::Settings;
use super::clock::{self, State, human};
use super::report::{self, Month};
use crate::alerts::config::Policy;
use crate::model::{Incident, IncidentEvent, MailAttachment, OutboxEntry};
use crate::store::{Store, StoreError, WriteSet};

/// The meta key holding the last month (`YYYYMM`) whose report was put in the outbox.
pub const MONTHLY_KEY: &str = "report.monthly.sent";

/// The month whose report is due at `now`: last month once this month's `day` and `hour`
/// (school time) have passed, else the month before.
pub fn due_month(settings: &Settings, now: OffsetDateTime) -> Month {
    let tz = settings.tz();
    let this = Month::of(now, &tz);
    let send_at = jiff::civil::date(
        this.year,
        this.month,
        settings.report.day.clamp(1, 28) as i8,
    )
    .at(settings.report.hour.min(23) as i8, 0, 0, 0)
    .to_zoned(tz)
    .ok()
    .and_then(|z| OffsetDateTime::from_unix_timestamp(z.timestamp().as_second()).ok())
    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    if now >= send_at {
        this.previous()
    } else {
        this.previous().previous()
    }
}

/// The monthly email for `report`, with the PDF attached.
pub fn monthly_entry(
    report: &report::MonthlyReport,
    pdf: &[u8],
    to: Vec<String>,
    now: OffsetDateTime,
) -> OutboxEntry {
    let hash = Sha256::digest(format!("{}/{}", report.month, to.join(",")).as_bytes());
    let school = if report.school_name.is_empty() {
        String::new()
    } else {
        format!("{}: ", report.school_name)
    };
    OutboxEntry {
        subject: format!("[Caretaker] {school}ICT service levels, {}", report.title),
        text: report::text(report),
        message_id: format!(
            "<report.{}.{}@caretaker>",
            report.month,
            hex::encode(&hash[..6])
        ),
        attachments: vec![MailAttachment {
            filename: format!("service-levels-{}.pdf", report.month),
            content_type: "application/pdf".to_owned(),
            base64: base64::engine::general_purpose::STANDARD.encode(pdf),
        }],
        ..OutboxEntry::pending(format!("report-{}", report.month), now, now, to)
    }
}

/// Puts the due month's report in the outbox unless it was already; returns that month.
/// Blocking.
pub fn plan_monthly(
    store: &dyn Store,
    settings: &Settings,
    now: OffsetDateTime,
) -> Result<Option<Month>, StoreError> {
    if settings.report.to.is_empty() {
        return Ok(None);
    }
    let month = due_month(settings, now);
    if store.meta(MONTHLY_KEY)?.unwrap_or(0) >= month.key() {
        return Ok(None);
    }
    let input = report::gather(store, settings, month, now)?;
    let built = report::build(settings, &input);
    let pdf = super::pdf::render(&built);
    let entry = monthly_entry(&built, &pdf, settings.report.to.clone(), now);
    store.commit(WriteSet {
        outbox: vec![entry],
        meta: vec![(MONTHLY_KEY.to_owned(), month.key())],
        ..WriteSet::default()
    })?;
    Ok(Some(month))
}

/// The events of open incidents, kept between checks so each is read from the store once.
#[derive(Debug, Default)]
pub struct EventCache {
    after: u64,
    events: HashMap<String, Vec<IncidentEvent>>,
}

impl EventCache {
    /// Reads the events after the last one seen, keeping those of `open` incidents.
    fn refresh(&mut self, store: &dyn Store, open: &HashSet<&str>) -> Result<(), StoreError> {
        loop {
            let batch = store.incident_events(self.after, 2_000)?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                break;
            };
            self.after = last;
            let full = batch.len() == 2_000;
            for event in batch {
                self.events
                    .entry(event.incident_id.clone())
                    .or_default()
                    .push(event);
            }
            if !full {
                break;
            }
        }
        self.events.retain(|id, _| open.contains(id.as_str()));
        Ok(())
    }
}

/// The warning for one clock of one incident.
fn warning(
    incident: &Incident,
    which: &str,
    measure: &clock::Measure,
    to: Vec<String>,
    base_url: Option<&str>,
    now: OffsetDateTime,
) -> OutboxEntry {
    let id = format!("sla-{}-{which}", incident.id);
    let target = measure.target.map(human).unwrap_or_default();
    let (verb, when) = match measure.state {
        State::Breached => ("breached", "the target has passed".to_owned()),
        _ => (
            "at risk",
            format!("{} left", measure.left().map(human).unwrap_or_default()),
        ),
    };
    let link = base_url
        .map(|b| format!("\n{b}/incidents/{}\n", incident.id))
        .unwrap_or_default();
    let hash = Sha256::digest(id.as_bytes());
    OutboxEntry {
        subject: format!(
            "[Caretaker] SLA {verb}: {} {which} (P{}), {when}",
            incident.number, incident.priority
        ),
        text: format!(
            "{number} {title}\n\nThe {which} target for P{p} is {target}; {elapsed} counted so far \
             (time on hold not counted): {when}.\n{link}",
            number = incident.number,
            title = incident.title,
            p = incident.priority,
            elapsed = human(measure.elapsed),
        ),
        message_id: format!(
            "<sla.{}.{which}.{}@caretaker>",
            incident.number,
            hex::encode(&hash[..6])
        ),
        in_reply_to: Some(crate::alerts::plan::message_id(incident)),
        references: vec![crate::alerts::plan::message_id(incident)],
        incident_ids: vec![incident.id.clone()],
        ..OutboxEntry::pending(id, now, now, to)
    }
}

/// Plans the warnings due at `now` and commits them; returns how many. Blocking.
pub fn plan_warnings(
    store: &dyn Store,
    settings: &Settings,
    policy: &Policy,
    cache: &mut EventCache,
    now: OffsetDateTime,
) -> Result<usize, StoreError> {
    let open: Vec<Incident> = store
        .incidents()?
        .into_iter()
        .filter(|i| i.state.is_open())
        .collect();
    let ids: HashSet<&str> = open.iter().map(|i| i.id.as_str()).collect();
    cache.refresh(store, &ids)?;
    if open.is_empty() {
        return Ok(0);
    }
    let planned: HashSet<String> = store.outbox()?.into_iter().map(|e| e.id).collect();
    let targets = settings.sla.parsed;
    let mut entries = Vec::new();
    for incident in &open {
        let events: Vec<&IncidentEvent> = cache
            .events
            .get(&incident.id)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let a = clock::assess(incident, &events, now, &targets, &settings.hours);
        for (which, m) in [("response", a.response), ("resolution", a.resolution)] {
            if m.stopped || !matches!(m.state, State::AtRisk | State::Breached) {
                continue;
            }
            if planned.contains(&format!("sla-{}-{which}", incident.id)) {
                continue;
            }
            let to = if settings.sla.warn_to.is_empty() {
                crate::alerts::plan::recipients(policy, incident)
            } else {
                settings.sla.warn_to.clone()
            };
            if to.is_empty() {
                continue;
            }
            entries.push(warning(
                incident,
                which,
                &m,
                to,
                policy.base_url.as_deref(),
                now,
            ));
        }
    }
    let n = entries.len();
    if n > 0 {
        store.commit(WriteSet {
            outbox: entries,
            ..WriteSet::default()
        })?;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn settings(day: u8, hour: u8, tz: &str) -> Settings {
        Settings {
            report: super::super::ReportConfig {
                to: vec!["head@school.example".into()],
                day,
                hour,
                school_name: String::new(),
            },
            timezone: tz.into(),
            ..Settings::default()
        }
    }

    #[test]
    fn the_due_month_turns_at_the_configured_day_and_hour() {
        let s = settings(3, 7, "Europe/London");
        assert_eq!(
            due_month(&s, datetime!(2026-12-03 06:59 UTC)).to_string(),
            "2026-10"
        );
        assert_eq!(
            due_month(&s, datetime!(2026-12-03 07:00 UTC)).to_string(),
            "2026-11"
        );
        // BST: 07:00 in London is 06:00 UTC.
        assert_eq!(
            due_month(&s, datetime!(2026-07-03 06:00 UTC)).to_string(),
            "2026-06"
        );
        assert_eq!(
            due_month(&s, datetime!(2026-01-10 00:00 UTC)).to_string(),
            "2025-12"
        );
    }

    #[test]
    fn the_monthly_entry_carries_the_pdf() {
        let store = crate::store::memory::MemoryStore::default();
        let s = settings(1, 0, "UTC");
        let now = datetime!(2026-12-02 10:00 UTC);
        assert_eq!(
            plan_monthly(&store, &s, now)
                .expect("plan")
                .map(|m| m.to_string()),
            Some("2026-11".into())
        );
        assert_eq!(
            plan_monthly(&store, &s, now).expect("plan"),
            None,
            "once per month"
        );
        let outbox = store.outbox().expect("outbox");
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox[0].id, "report-2026-11");
        let pdf = base64::engine::general_purpose::STANDARD
            .decode(&outbox[0].attachments[0].base64)
            .expect("b64");
        assert!(pdf.starts_with(b"%PDF-"));
        assert!(outbox[0].subject.contains("November 2026"));
    }
}
