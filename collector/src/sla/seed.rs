//! A known month for the service-level test (the hidden `seed-sla` command): three network
//! devices with a day of ping verdicts, three P2 incidents with known response and
//! resolution times (one with an hour on hold), a capacity incident, warranties, and one open
//! P3 staff report 50 minutes old (at risk against a 1 h response target). Written straight
//! into a store no daemon holds, as the records the writer would have made. Times are UTC:
//! the test's school hours are Monday to Friday 08:00–16:00 in `UTC`.
//!
//! What it implies, with P2 targets of 30 min response and 4 h resolution on the 24×7 clock:
//! - "Curriculum network" (the switch and the access point): the switch is down 24 min of the
//!   day's 8 school hours, the access point down an hour after school: 97.50 %;
//!   "Printing" (the printer): 100.00 %.
//! - P2 response: 20 min, 50 min, 10 min: 2 of 3 within target, median 20 min.
//! - P2 resolution: 1 h, 4 h 30 less 1 h on hold = 3 h 30, 5 h: 2 of 3, median 3 h 30.

use std::collections::BTreeSet;

use time::{Date, OffsetDateTime, Weekday};

use super::report::Month;
use crate::model::{
    Asset, AssetKind, Desk, Incident, IncidentEvent, IncidentEventKind, IncidentState, Note,
    ReachSample, RegisterFields, Reporter, Source,
};
use crate::store::{Store, StoreError, WriteSet};

pub const SWITCH: &str = "5e1a000000000001";
pub const ACCESS_POINT: &str = "5e1a000000000002";
pub const PRINTER: &str = "5e1a000000000003";
pub const LAPTOP: &str = "5e1a000000000004";

fn asset(
    id: &str,
    kind: AssetKind,
    name: &str,
    tag: &str,
    room: &str,
    warranty: Option<Date>,
    at: OffsetDateTime,
) -> Asset {
    Asset {
        id: id.to_owned(),
        kind,
        name: name.to_owned(),
        hostname: name.to_owned(),
        ips: Vec::new(),
        macs: Vec::new(),
        vendor: String::new(),
        model: String::new(),
        serial: String::new(),
        smbios_uuid: String::new(),
        machine_id: String::new(),
        os: String::new(),
        sources: BTreeSet::from([if kind == AssetKind::Laptop {
            Source::Manual
        } else {
            Source::Ping
        }]),
        first_seen: at,
        agent_ids: Vec::new(),
        identity_notes: Vec::new(),
        partial: Vec::new(),
        clock_suspect: false,
        classification: String::new(),
        register: RegisterFields {
            asset_tag: tag.to_owned(),
            room: room.to_owned(),
            warranty_end: warranty,
            ..RegisterFields::default()
        },
        register_rev: 0,
    }
}

#[allow(clippy::too_many_arguments)] // One call per seeded incident reads best flat.
fn incident(
    n: u64,
    asset: &Asset,
    rule: &str,
    impact: u8,
    urgency: u8,
    opened: OffsetDateTime,
    acknowledged: Option<OffsetDateTime>,
    resolved: Option<OffsetDateTime>,
) -> Incident {
    Incident {
        id: format!("5e1a1c{n:010x}"),
        number: format!("INC{n:07}"),
        asset_id: asset.id.clone(),
        asset_name: asset.name.clone(),
        rule: rule.to_owned(),
        title: format!("{} on {}", rule.replace('_', " "), asset.name),
        description: String::new(),
        impact,
        urgency,
        priority: impact + urgency - 1,
        state: if resolved.is_some() {
            IncidentState::Resolved
        } else if acknowledged.is_some() {
            IncidentState::InProgress
        } else {
            IncidentState::New
        },
        opened_at: opened,
        updated_at: resolved.or(acknowledged).unwrap_or(opened),
        acknowledged_at: acknowledged,
        resolved_at: resolved,
        closed_at: None,
        occurrences: 1,
        notes: Vec::<Note>::new(),
        affected: Vec::new(),
        flapping: false,
        measured: serde_json::Value::Null,
        problem_id: None,
        clear_since: None,
        transitions: vec![opened.unix_timestamp()],
        desk: Desk::default(),
    }
}

/// The first Wednesday of `month` (UTC).
pub fn first_wednesday(month: Month) -> Date {
    let mut day = Date::from_calendar_date(
        i32::from(month.year),
        time::Month::try_from(u8::try_from(month.month).unwrap_or(1))
            .unwrap_or(time::Month::January),
        1,
    )
    .unwrap_or(Date::MIN);
    while day.weekday() != Weekday::Wednesday {
        day = day.next_day().unwrap_or(day);
    }
    day
}

/// Seeds `month` (and the open staff report at `now − 50 min`) into `store`.
pub fn seed(store: &dyn Store, month: Month, now: OffsetDateTime) -> Result<(), StoreError> {
    let d = first_wednesday(month);
    let at = |day: i64, h: u8, m: u8| {
        let date = d + time::Duration::days(day);
        date.with_hms(h, m, 0)
            .map(|t| t.assume_utc())
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    let next_term = month.next().next();
    let warranty = |m: Month, day: u8| {
        Date::from_calendar_date(
            i32::from(m.year),
            time::Month::try_from(u8::try_from(m.month).unwrap_or(1))
                .unwrap_or(time::Month::January),
            day,
        )
        .ok()
    };
    let seen = at(-20, 8, 0);
    let switch = asset(
        SWITCH,
        AssetKind::Switch,
        "core-sw1",
        "SW-0001",
        "Server room",
        None,
        seen,
    );
    let ap = asset(
        ACCESS_POINT,
        AssetKind::AccessPoint,
        "ap-b12",
        "AP-0012",
        "B12",
        None,
        seen,
    );
    let printer = asset(
        PRINTER,
        AssetKind::Printer,
        "prn-office",
        "PR-0001",
        "Office",
        warranty(next_term, 15),
        seen,
    );
    let laptop = asset(
        LAPTOP,
        AssetKind::Laptop,
        "trolley-laptop-07",
        "LT-0007",
        "B12",
        warranty(next_term.next().next().next().next(), 1),
        seen,
    );

    let mut set = WriteSet::default();
    // One verdict a minute from 06:00 to 20:00 on day D.
    for minute in 0..=(14 * 60) {
        let t = at(0, 6, 0) + time::Duration::minutes(minute);
        let clock = 6 * 60 + minute;
        let switch_down = (10 * 60..10 * 60 + 24).contains(&clock);
        let ap_down = (18 * 60..19 * 60).contains(&clock);
        for (id, down) in [
            (SWITCH, switch_down),
            (ACCESS_POINT, ap_down),
            (PRINTER, false),
        ] {
            set.reach.push((
                id.to_owned(),
                ReachSample {
                    at: t,
                    up: !down,
                    rtt_us: if down { 0 } else { 800 },
                },
            ));
        }
    }

    let mut seq = store.meta("incidents.next_event")?.unwrap_or(1);
    let mut event = |set: &mut WriteSet, id: &str, at: OffsetDateTime, kind: IncidentEventKind| {
        set.incident_events.push(IncidentEvent {
            seq,
            at,
            incident_id: id.to_owned(),
            kind,
        });
        seq += 1;
    };
    let by = |s: &str| s.to_owned();

    let i1 = incident(
        1,
        &switch,
        "host_down",
        1,
        2,
        at(0, 10, 0),
        Some(at(0, 10, 20)),
        Some(at(0, 11, 0)),
    );
    event(&mut set, &i1.id, i1.opened_at, IncidentEventKind::Opened);
    event(
        &mut set,
        &i1.id,
        at(0, 10, 20),
        IncidentEventKind::Acknowledged { by: by("tech") },
    );
    event(
        &mut set,
        &i1.id,
        at(0, 11, 0),
        IncidentEventKind::Resolved { automatic: true },
    );

    let mut i2 = incident(
        2,
        &switch,
        "host_down",
        1,
        2,
        at(1, 9, 0),
        Some(at(1, 9, 50)),
        Some(at(1, 13, 30)),
    );
    i2.desk.hold_reason = Some("waiting for a replacement PSU".to_owned());
    event(&mut set, &i2.id, i2.opened_at, IncidentEventKind::Opened);
    event(
        &mut set,
        &i2.id,
        at(1, 9, 50),
        IncidentEventKind::Acknowledged { by: by("tech") },
    );
    event(
        &mut set,
        &i2.id,
        at(1, 10, 0),
        IncidentEventKind::Held { by: by("tech") },
    );
    event(
        &mut set,
        &i2.id,
        at(1, 11, 0),
        IncidentEventKind::Acknowledged { by: by("tech") },
    );
    event(
        &mut set,
        &i2.id,
        at(1, 13, 30),
        IncidentEventKind::Resolved { automatic: false },
    );

    let i3 = incident(
        3,
        &ap,
        "host_down",
        1,
        2,
        at(2, 14, 0),
        None,
        Some(at(2, 19, 0)),
    );
    event(&mut set, &i3.id, i3.opened_at, IncidentEventKind::Opened);
    event(
        &mut set,
        &i3.id,
        at(2, 14, 10),
        IncidentEventKind::Assigned {
            by: by("admin"),
            to: by("tech"),
        },
    );
    event(
        &mut set,
        &i3.id,
        at(2, 19, 0),
        IncidentEventKind::Resolved { automatic: true },
    );

    // P4 (no targets in the test): the printer's toner, forecast to run out.
    let mut i4 = incident(4, &printer, "supply_low", 2, 3, at(2, 15, 0), None, None);
    i4.measured =
        serde_json::json!({"supply": "Black toner", "percent": 4, "days_until_empty": 6.0});
    i4.title = "Black toner low on prn-office".to_owned();
    event(&mut set, &i4.id, i4.opened_at, IncidentEventKind::Opened);

    // P3, open, 50 minutes old: at risk against a 1 h response target with a 75 % warning.
    let mut i5 = incident(
        5,
        &laptop,
        crate::model::STAFF_RULE,
        2,
        2,
        now - time::Duration::minutes(50),
        None,
        None,
    );
    i5.title = "Reported by Ms Khan: projector in B12 shows no picture".to_owned();
    i5.desk.reporter = Some(Reporter {
        name: "Ms Khan".into(),
        email: "khan@school.example".into(),
        room: "B12".into(),
    });
    event(&mut set, &i5.id, i5.opened_at, IncidentEventKind::Opened);

    set.meta.push(("incidents.next_event".to_owned(), seq));
    set.incidents = vec![i1, i2, i3, i4, i5];
    set.assets = vec![switch, ap, printer, laptop];
    store.commit(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sla::{Settings, report};

    /// The seeded month gives the figures its comment promises, through the same `gather`
    /// and `build` the daemon uses.
    #[test]
    fn the_seed_implies_its_figures() {
        let store = crate::store::memory::MemoryStore::default();
        let month = Month::parse("2026-11").expect("month");
        let now = time::macros::datetime!(2026-12-02 10:00 UTC);
        seed(&store, month, now).expect("seed");
        let text = r#"
data_dir = "/tmp"
[school_hours]
timezone = "UTC"
weekly = { mon = "08:00-16:00", tue = "08:00-16:00", wed = "08:00-16:00", thu = "08:00-16:00", fri = "08:00-16:00" }
[[service]]
name = "Curriculum network"
kinds = ["switch", "access-point"]
availability_target = 99.0
[[service]]
name = "Printing"
tags = ["PR-0001"]
availability_target = 98.0
[sla]
clock = "24x7"
response = ["15m", "30m", "1h", "", ""]
resolution = ["4h", "4h", "8h", "", ""]
"#;
        let config = crate::config::parse(std::path::Path::new("t.toml"), text).expect("config");
        let settings = Settings::from_config(&config);
        let input = report::gather(&store, &settings, month, now).expect("gather");
        let r = report::build(&settings, &input);
        assert_eq!(r.services[0].availability_text, "97.50 %");
        assert_eq!(r.services[0].verdict, "missed");
        assert_eq!(r.services[0].down_text, "24m");
        assert_eq!(r.services[0].opened, 3);
        assert_eq!(r.services[1].availability_text, "100.00 %");
        assert_eq!(r.services[1].verdict, "met");
        let p2 = r
            .priorities
            .iter()
            .find(|p| p.priority == "P2")
            .expect("P2");
        assert_eq!(p2.opened, 3);
        assert_eq!(p2.response_within, "2 of 3 (66.7 %)");
        assert_eq!(p2.response_median, "20m");
        assert_eq!(p2.resolution_within, "2 of 3 (66.7 %)");
        assert_eq!(p2.resolution_median, "3h 30m");
        assert_eq!(r.capacity.len(), 1);
        assert_eq!(r.capacity[0].outlook, "empty in 6 days");
        assert_eq!(r.warranties.len(), 1, "{:?}", r.warranties);
        assert_eq!(r.warranties[0].asset, "prn-office");
        assert_eq!(r.warranties[0].warranty_end, "2027-01-15");
        let pdf = crate::sla::pdf::render(&r);
        assert!(pdf.starts_with(b"%PDF-"));
    }
}
