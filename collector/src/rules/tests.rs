//! Each rule against hand-made observations.

use std::collections::BTreeSet;

use serde_json::json;
use time::OffsetDateTime;
use time::macros::datetime;

use super::*;
use crate::model::SnmpSnapshot;
use crate::model::{Asset, AssetKind, Change, Source};
use crate::observe::{Observations, StatusPoint};

/// A snapshot from the JSON the store keeps (fields left out take their defaults).
fn snapshot(value: serde_json::Value) -> SnmpSnapshot {
    serde_json::from_value(value).expect("a valid snapshot")
}

pub(super) const NOW: OffsetDateTime = datetime!(2026-10-05 10:00 UTC);

pub(super) fn asset(id: &str, sources: &[Source]) -> Asset {
    Asset {
        id: id.to_owned(),
        kind: AssetKind::Pc,
        name: id.to_uppercase(),
        hostname: String::new(),
        ips: vec!["198.18.0.9".to_owned()],
        macs: vec!["3c:22:fb:00:00:01".to_owned()],
        vendor: String::new(),
        model: String::new(),
        serial: String::new(),
        smbios_uuid: String::new(),
        machine_id: String::new(),
        os: String::new(),
        sources: sources.iter().copied().collect::<BTreeSet<_>>(),
        first_seen: datetime!(2026-09-01 08:00 UTC),
        agent_ids: Vec::new(),
        identity_notes: Vec::new(),
        partial: Vec::new(),
        clock_suspect: false,
        classification: String::new(),
        register: Default::default(),
        register_rev: 0,
    }
}

fn fired(
    assets: &[Asset],
    obs: &Observations,
    config: &RulesConfig,
    windows: &[Window],
    baseline: Option<OffsetDateTime>,
) -> Vec<(&'static str, String)> {
    let cx = Context {
        now: NOW,
        assets,
        obs,
        change_windows: windows,
        baseline,
    };
    evaluate(config, &cx)
        .into_iter()
        .map(|c| (c.rule, c.title))
        .collect()
}

fn rules_fired(assets: &[Asset], obs: &Observations) -> Vec<&'static str> {
    fired(assets, obs, &RulesConfig::default(), &[], None)
        .into_iter()
        .map(|(r, _)| r)
        .collect()
}

#[test]
fn host_down_needs_consecutive_misses_and_a_silent_agent() {
    let assets = [asset("pc", &[Source::Ping])];
    let mut obs = Observations::default();
    let m = time::Duration::minutes(15);
    obs.ping("pc", NOW - time::Duration::seconds(30), true, m);
    obs.ping("pc", NOW - time::Duration::seconds(20), false, m);
    assert!(
        rules_fired(&assets, &obs).is_empty(),
        "one miss is not an outage"
    );
    obs.ping("pc", NOW - time::Duration::seconds(10), false, m);
    assert_eq!(rules_fired(&assets, &obs), ["host_down"]);
    // The description carries no raw UTC clock time (`… +00:00:00`), only durations.
    let cx = Context {
        now: NOW,
        assets: &assets,
        obs: &obs,
        change_windows: &[],
        baseline: None,
    };
    let down = evaluate(&RulesConfig::default(), &cx);
    assert!(
        down[0].description.ends_with("last answer 30 s ago."),
        "{}",
        down[0].description
    );
    // An agent still reporting proves the host is up (ping blocked by a firewall).
    let agent_pc = [asset("pc", &[Source::Ping, Source::Agent])];
    obs.agent("pc", NOW - time::Duration::seconds(5));
    assert!(rules_fired(&agent_pc, &obs).is_empty());
}

#[test]
fn an_agent_silent_while_the_host_answers_ping_is_its_own_incident() {
    let assets = [asset("pc", &[Source::Ping, Source::Agent])];
    let mut obs = Observations::default();
    obs.agent("pc", NOW - time::Duration::hours(1));
    obs.ping(
        "pc",
        NOW - time::Duration::seconds(10),
        true,
        time::Duration::minutes(15),
    );
    let fired = fired(&assets, &obs, &RulesConfig::default(), &[], None);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].0, "agent_silent");
    assert!(fired[0].1.contains("PC"), "{}", fired[0].1);
}

fn status(at: OffsetDateTime, cpu: f64, memory: f64, used: f64) -> StatusPoint {
    StatusPoint {
        at,
        cpu_percent: cpu,
        memory_percent: Some(memory),
        volumes: vec![("C:".to_owned(), used, 256 << 30)],
        boot_time: None,
    }
}

#[test]
fn disks_filling_up_now_or_soon() {
    let assets = [asset("pc", &[Source::Agent])];
    let mut obs = Observations::default();
    obs.agent("pc", NOW);
    obs.status("pc", status(NOW, 5.0, 40.0, 93.0));
    assert_eq!(rules_fired(&assets, &obs), ["disk_full"]);

    // 60 % but growing 3 % a day: full in ~13 days, inside the 14-day horizon.
    let mut obs = Observations::default();
    obs.agent("pc", NOW);
    for day in 0..10 {
        let at = NOW - time::Duration::days(9 - day);
        obs.status("pc", status(at, 5.0, 40.0, 33.0 + 3.0 * day as f64));
    }
    let fired = fired(&assets, &obs, &RulesConfig::default(), &[], None);
    assert_eq!(fired.len(), 1);
    assert!(fired[0].1.contains("full in about"), "{}", fired[0].1);
}

#[test]
fn memory_and_cpu_only_when_sustained() {
    let assets = [asset("pc", &[Source::Agent])];
    let mut obs = Observations::default();
    obs.agent("pc", NOW);
    for i in 0..3 {
        obs.status(
            "pc",
            status(
                NOW - time::Duration::minutes(10 - i),
                if i == 1 { 20.0 } else { 99.0 },
                97.0,
                10.0,
            ),
        );
    }
    assert_eq!(
        rules_fired(&assets, &obs),
        ["memory_pressure"],
        "the CPU dipped: not sustained"
    );
}

#[test]
fn printer_supplies_errors_and_upses() {
    let mut printer = asset("mfp", &[Source::Ping, Source::Snmp]);
    printer.kind = AssetKind::Printer;
    let mut obs = Observations::default();
    obs.ping("mfp", NOW, true, time::Duration::minutes(15));
    obs.snmp("mfp", NOW, &snapshot(json!({
        "supplies": [{"description": "Black Toner", "percent": 6.0}, {"description": "Waste Toner", "percent": 5.0}, {"description": "Cyan Toner", "percent": 50.0}],
        "printer_errors": ["lowPaper", "doorOpen"],
    })));
    let fired = fired(&[printer.clone()], &obs, &RulesConfig::default(), &[], None);
    let rules: Vec<_> = fired.iter().map(|f| f.0).collect();
    assert_eq!(rules, ["supply_low", "printer_error"]);
    assert!(fired[0].1.contains("black toner at 6 %"), "{}", fired[0].1);
    assert!(
        fired[1].1.contains("doorOpen") && !fired[1].1.contains("lowPaper"),
        "{}",
        fired[1].1
    );

    let mut ups = asset("ups", &[Source::Ping, Source::Snmp]);
    ups.kind = AssetKind::Ups;
    obs.snmp(
        "ups",
        NOW,
        &snapshot(
            json!({"ups": {"on_battery": true, "runtime_secs": 1800, "charge_percent": 80.0}}),
        ),
    );
    obs.ping("ups", NOW, true, time::Duration::minutes(15));
    assert_eq!(rules_fired(&[ups.clone()], &obs), ["ups_on_battery"]);
    obs.snmp(
        "ups",
        NOW,
        &snapshot(
            json!({"ups": {"on_battery": false, "runtime_secs": 300, "charge_percent": 20.0}}),
        ),
    );
    assert_eq!(
        rules_fired(&[ups.clone()], &obs),
        ["ups_on_battery"],
        "runtime low on mains"
    );
    obs.snmp(
        "ups",
        NOW,
        &snapshot(json!({"ups": {"on_battery": false, "runtime_secs": 3960}})),
    );
    assert!(rules_fired(&[ups], &obs).is_empty());
}

#[test]
fn unknown_devices_only_after_the_baseline_sweep() {
    let mut gadget = asset("x", &[Source::Ping]);
    gadget.kind = AssetKind::Unknown;
    gadget.first_seen = NOW - time::Duration::hours(1);
    let obs = Observations::default();
    let config = RulesConfig::default();
    assert!(
        fired(
            std::slice::from_ref(&gadget),
            &obs,
            &config,
            &[],
            Some(NOW - time::Duration::hours(1))
        )
        .is_empty(),
        "found by the first sweep"
    );
    let fired = fired(
        &[gadget],
        &obs,
        &config,
        &[],
        Some(NOW - time::Duration::days(3)),
    );
    assert_eq!(fired.len(), 1);
    assert!(fired[0].1.contains("3c:22:fb:00:00:01"), "{}", fired[0].1);
}

fn change(field: &str, kind: &str, at: OffsetDateTime) -> Change {
    Change {
        id: format!("{field}{kind}"),
        asset_id: "pc".to_owned(),
        at,
        kind: kind.to_owned(),
        field: field.to_owned(),
        before: Some("1".to_owned()),
        after: None,
        clock_suspect: false,
        expected_by: None,
        author: None,
    }
}

#[test]
fn changes_outside_a_window_and_software_lists() {
    let assets = [asset("pc", &[Source::Agent])];
    let mut obs = Observations::default();
    obs.agent("pc", NOW);
    let at = NOW - time::Duration::hours(2);
    obs.change(&change("software:adobe-reader", "removed", at));
    let window = Window {
        start: at - time::Duration::hours(1),
        end: at + time::Duration::hours(1),
        note: String::new(),
    };
    assert!(
        fired(
            &assets,
            &obs,
            &RulesConfig::default(),
            std::slice::from_ref(&window),
            None
        )
        .is_empty(),
        "inside the approved window"
    );
    let outside = fired(&assets, &obs, &RulesConfig::default(), &[], None);
    assert_eq!(outside.len(), 1);
    assert!(
        outside[0].1.contains("adobe-reader removed"),
        "{}",
        outside[0].1
    );

    let mut config = RulesConfig::default();
    config.unauthorised_change.blocklist = vec!["utorrent".to_owned()];
    config.unauthorised_change.required = vec!["sophos".to_owned()];
    let mut obs = Observations::default();
    obs.agent("pc", NOW);
    obs.entry("pc").software = Some(["utorrent".to_owned(), "firefox".to_owned()].into());
    let fired = fired(&assets, &obs, &config, &[], None);
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].1, "Blocklisted software on PC");
}

#[test]
fn a_change_marked_expected_no_longer_counts() {
    let assets = [asset("pc", &[Source::Agent])];
    let mut obs = Observations::default();
    obs.agent("pc", NOW);
    let at = NOW - time::Duration::hours(2);
    let removed = change("software:adobe-reader", "removed", at);
    let added = change("software:vlc", "added", at);
    obs.change(&removed);
    obs.change(&added);
    let both = fired(&assets, &obs, &RulesConfig::default(), &[], None);
    assert!(
        both[0].1.starts_with("adobe-reader removed"),
        "{}",
        both[0].1
    );
    // The dashboard writes the record again with who expected it: it replaces the one held.
    let mut expected = removed.clone();
    expected.expected_by = Some("sam".to_owned());
    obs.change(&expected);
    assert_eq!(obs.entry("pc").changes.len(), 2, "replaced, not added");
    let one = fired(&assets, &obs, &RulesConfig::default(), &[], None);
    assert!(one[0].1.starts_with("vlc added"), "{}", one[0].1);
    let mut expected = added.clone();
    expected.expected_by = Some("sam".to_owned());
    obs.change(&expected);
    assert!(
        fired(&assets, &obs, &RulesConfig::default(), &[], None).is_empty(),
        "every change expected: no condition"
    );
}

#[test]
fn repeated_reboots() {
    let assets = [asset("pc", &[Source::Agent])];
    let mut obs = Observations::default();
    obs.agent("pc", NOW);
    for hours in [20, 10, 1] {
        let boot = NOW - time::Duration::hours(hours);
        obs.status(
            "pc",
            StatusPoint {
                at: boot + time::Duration::minutes(5),
                cpu_percent: 1.0,
                memory_percent: Some(10.0),
                volumes: vec![],
                boot_time: Some(boot),
            },
        );
    }
    assert_eq!(rules_fired(&assets, &obs), ["reboots"]);
}

#[test]
fn impossible_thresholds_are_config_errors() {
    let mut config = RulesConfig::default();
    config.disk_full.percent = 120.0;
    config.host_down.misses = 0;
    config.printer_error.errors = vec!["onFire".to_owned()];
    config.reboots.impact = 4;
    let keys: Vec<_> = config
        .validate()
        .into_iter()
        .map(|(s, k, _)| format!("{s}.{k}"))
        .collect();
    assert_eq!(
        keys,
        [
            "rules.reboots.impact",
            "rules.disk_full.percent",
            "rules.host_down.misses",
            "rules.printer_error.errors"
        ]
    );
}
