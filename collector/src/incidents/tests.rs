//! The incident engine on synthetic timelines (no clocks, no sleeping).

use std::collections::{BTreeSet, HashMap};

use time::OffsetDateTime;
use time::macros::datetime;

use super::topology::Parents;
use super::*;
use crate::model::{Asset, AssetKind, IncidentEventKind, IncidentState};
use crate::rules::Condition;
use crate::store::MemoryStore;

fn asset(id: &str, kind: AssetKind) -> Asset {
    Asset {
        id: id.to_owned(),
        kind,
        name: id.to_uppercase(),
        hostname: String::new(),
        ips: vec![format!("198.18.0.{}", id.len())],
        macs: Vec::new(),
        vendor: String::new(),
        model: String::new(),
        serial: String::new(),
        smbios_uuid: String::new(),
        machine_id: String::new(),
        os: String::new(),
        sources: BTreeSet::new(),
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

fn down(id: &str) -> Condition {
    Condition {
        rule: "host_down",
        asset_id: id.to_owned(),
        title: format!("{} down", id.to_uppercase()),
        description: String::new(),
        impact: 2,
        urgency: 1,
        measured: serde_json::json!({}),
    }
}

struct Harness {
    engine: Engine,
    store: MemoryStore,
    assets: Vec<Asset>,
    parents: Parents,
    t: OffsetDateTime,
}

impl Harness {
    fn new(config: IncidentsConfig, maintenance: Vec<Maintenance>) -> Self {
        let store = MemoryStore::default();
        let engine = Engine::load(&store, config, maintenance).expect("load");
        let assets = ["sw", "pc1", "pc2", "pc3", "printer"]
            .iter()
            .map(|id| {
                asset(
                    id,
                    if *id == "sw" {
                        AssetKind::Switch
                    } else {
                        AssetKind::Pc
                    },
                )
            })
            .collect();
        Self {
            engine,
            store,
            assets,
            parents: Parents::default(),
            t: datetime!(2026-10-05 07:55 UTC),
        }
    }

    /// Advances the clock and runs one step with these conditions.
    fn step(&mut self, after_secs: i64, conditions: Vec<Condition>) -> WriteSet {
        self.t += time::Duration::seconds(after_secs);
        let by_id: HashMap<AssetId, &Asset> =
            self.assets.iter().map(|a| (a.id.clone(), a)).collect();
        let mut out = WriteSet::default();
        self.engine
            .step(self.t, conditions, &by_id, &self.parents, &mut out);
        let events = out.incident_events.clone();
        self.store.commit(out).expect("commit");
        WriteSet {
            incident_events: events,
            ..Default::default()
        }
    }

    fn incidents(&self) -> Vec<crate::model::Incident> {
        self.store.incidents().expect("incidents")
    }
}

fn kinds(out: &WriteSet) -> Vec<IncidentEventKind> {
    out.incident_events.iter().map(|e| e.kind.clone()).collect()
}

#[test]
fn one_incident_per_condition_resolved_after_the_hold_down_and_reopened_when_it_returns() {
    let mut h = Harness::new(IncidentsConfig::default(), Vec::new());
    assert_eq!(
        kinds(&h.step(0, vec![down("pc1")])),
        [IncidentEventKind::Opened]
    );
    assert!(
        kinds(&h.step(10, vec![down("pc1")])).is_empty(),
        "no duplicate while it persists"
    );
    let incidents = h.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].number, "INC0000001");
    assert_eq!(incidents[0].priority, 2, "impact 2 + urgency 1 - 1");

    // Clear, but not for the whole hold-down: still open.
    assert!(kinds(&h.step(10, vec![])).is_empty());
    assert!(kinds(&h.step(30, vec![])).is_empty());
    assert_eq!(
        kinds(&h.step(31, vec![])),
        [IncidentEventKind::Resolved { automatic: true }]
    );
    assert_eq!(h.incidents()[0].state, IncidentState::Resolved);

    // Back within the reopen window: the same incident, reopened.
    assert_eq!(
        kinds(&h.step(120, vec![down("pc1")])),
        [IncidentEventKind::Reopened]
    );
    let incidents = h.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].occurrences, 2);
    assert!(incidents[0].state.is_open());
}

#[test]
fn a_condition_that_blips_clear_inside_the_hold_down_does_not_resolve() {
    let mut h = Harness::new(IncidentsConfig::default(), Vec::new());
    h.step(0, vec![down("pc1")]);
    h.step(20, vec![]);
    assert!(kinds(&h.step(20, vec![down("pc1")])).is_empty());
    assert!(
        kinds(&h.step(50, vec![])).is_empty(),
        "the hold-down restarts after a blip"
    );
    assert_eq!(h.incidents()[0].state, IncidentState::New);
}

#[test]
fn a_flapping_device_gives_one_incident_that_stays_open_until_stable() {
    let config = IncidentsConfig {
        flap_transitions: 4,
        ..IncidentsConfig::default()
    };
    let mut h = Harness::new(config, Vec::new());
    for _ in 0..6 {
        h.step(1, vec![down("pc2")]);
        h.step(61, vec![]);
        h.step(1, vec![]);
    }
    let incidents = h.incidents();
    assert_eq!(incidents.len(), 1, "forty flaps are one incident");
    assert!(incidents[0].flapping);
    // Flapping: it takes four hold-downs of calm to resolve.
    h.step(1, vec![down("pc2")]);
    h.step(61, vec![]);
    h.step(120, vec![]);
    assert!(h.incidents()[0].state.is_open());
    h.step(130, vec![]);
    assert_eq!(h.incidents()[0].state, IncidentState::Resolved);
}

#[test]
fn maintenance_windows_suppress_rules_for_the_chosen_assets() {
    let window = Maintenance {
        start: datetime!(2026-10-05 07:00 UTC),
        end: datetime!(2026-10-05 09:00 UTC),
        assets: vec!["PC1".to_owned(), "kind:switch".to_owned()],
        rules: vec!["host_down".to_owned()],
        note: "summer reimaging".to_owned(),
    };
    let mut h = Harness::new(IncidentsConfig::default(), vec![window]);
    h.step(0, vec![down("pc1"), down("sw"), down("pc2")]);
    let opened: Vec<_> = h.incidents().into_iter().map(|i| i.asset_id).collect();
    assert_eq!(opened, ["pc2"]);
    // After the window, pc1 still down is an incident.
    h.step(2 * 3600, vec![down("pc1")]);
    assert!(h.incidents().iter().any(|i| i.asset_id == "pc1"));
}

#[test]
fn a_switch_down_with_devices_behind_it_is_one_incident_naming_them() {
    let mut h = Harness::new(IncidentsConfig::default(), Vec::new());
    h.parents = Parents {
        of: ["pc1", "pc2", "pc3"]
            .iter()
            .map(|c| ((*c).to_owned(), "sw".to_owned()))
            .collect(),
        ..Parents::default()
    };
    h.step(
        0,
        vec![
            down("sw"),
            down("pc1"),
            down("pc2"),
            down("pc3"),
            down("printer"),
        ],
    );
    let incidents = h.incidents();
    let sw = incidents
        .iter()
        .find(|i| i.asset_id == "sw")
        .expect("switch incident");
    assert_eq!(
        incidents.len(),
        2,
        "the switch, and the printer that is not behind it: {incidents:#?}"
    );
    assert!(sw.title.contains("3 devices behind it"), "{}", sw.title);
    let affected: BTreeSet<_> = sw.affected.iter().cloned().collect();
    assert_eq!(affected, ["pc1", "pc2", "pc3"].map(String::from).into());
    assert_eq!(sw.priority, 1, "a switch taking others down is high impact");
}

#[test]
fn devices_behind_a_switch_that_still_answers_are_one_path_incident() {
    let mut h = Harness::new(IncidentsConfig::default(), Vec::new());
    h.parents = Parents {
        of: ["pc1", "pc2", "pc3"]
            .iter()
            .map(|c| ((*c).to_owned(), "sw".to_owned()))
            .collect(),
        ..Parents::default()
    };
    h.step(0, vec![down("pc1"), down("pc2"), down("pc3")]);
    let incidents = h.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(incidents[0].asset_id, "sw");
    assert!(incidents[0].title.contains("Path through SW down"));
}

#[test]
fn technician_actions_and_their_conflicts() {
    let mut h = Harness::new(IncidentsConfig::default(), Vec::new());
    h.step(0, vec![down("pc1")]);
    let id = h.incidents()[0].id.clone();
    let act = |h: &mut Harness, id: &str, action: Action| {
        let mut out = WriteSet::default();
        let t = h.t;
        let result = h
            .engine
            .act(&h.store, t, id, action, &mut out)
            .expect("store");
        h.store.commit(out).expect("commit");
        result
    };
    let acked = act(
        &mut h,
        "INC0000001",
        Action::Acknowledge {
            by: "sam".to_owned(),
        },
    )
    .expect("ack");
    assert_eq!(acked.state, IncidentState::InProgress);
    assert!(acked.acknowledged_at.is_some());
    let noted = act(
        &mut h,
        &id,
        Action::Note {
            by: "sam".to_owned(),
            text: "Cable replaced".to_owned(),
        },
    )
    .expect("note");
    assert!(noted.notes.iter().any(|n| n.text == "Cable replaced"));
    assert_eq!(
        act(
            &mut h,
            "nope",
            Action::Acknowledge {
                by: "sam".to_owned()
            }
        ),
        Err(ActionError::NotFound("nope".to_owned()))
    );
    act(
        &mut h,
        &id,
        Action::Resolve {
            by: "sam".to_owned(),
            text: None,
        },
    )
    .expect("resolve");
    assert!(matches!(
        act(
            &mut h,
            &id,
            Action::Acknowledge {
                by: "sam".to_owned()
            }
        ),
        Err(ActionError::Conflict { .. })
    ));
    // Resolved by hand while still down: not reopened until the condition clears once.
    h.step(5, vec![down("pc1")]);
    assert_eq!(h.incidents()[0].state, IncidentState::Resolved);
    h.step(5, vec![]);
    h.step(5, vec![down("pc1")]);
    assert!(h.incidents()[0].state.is_open());
    // Closed incidents take no actions.
    let config = IncidentsConfig {
        close_after: std::time::Duration::from_secs(60),
        ..IncidentsConfig::default()
    };
    let mut h2 = Harness::new(config, Vec::new());
    h2.step(0, vec![down("pc3")]);
    h2.step(61, vec![]);
    h2.step(61, vec![]);
    h2.step(61, vec![]);
    assert_eq!(h2.incidents()[0].state, IncidentState::Closed);
    let closed = h2.incidents()[0].number.clone();
    assert!(matches!(
        act(
            &mut h2,
            &closed,
            Action::Note {
                by: "sam".to_owned(),
                text: "x".to_owned()
            }
        ),
        Err(ActionError::Conflict { .. })
    ));
}

#[test]
fn a_priority_change_is_an_event() {
    let mut h = Harness::new(IncidentsConfig::default(), Vec::new());
    h.step(0, vec![down("pc1")]);
    let mut worse = down("pc1");
    worse.impact = 1;
    assert_eq!(
        kinds(&h.step(5, vec![worse])),
        [IncidentEventKind::PriorityChanged { from: 2, to: 1 }]
    );
}

#[test]
fn repeats_and_widespread_failures_propose_problems() {
    let config = IncidentsConfig {
        reopen_within: std::time::Duration::from_secs(60),
        ..IncidentsConfig::default()
    };
    let mut h = Harness::new(config, Vec::new());
    for _ in 0..3 {
        // Each time long after the last resolution: three separate incidents.
        h.step(3600, vec![down("printer")]);
        h.step(70, vec![]);
        h.step(70, vec![]);
    }
    let problems = h.store.problems().expect("problems");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].pattern, "repeat");
    assert_eq!(
        problems[0].incident_ids.len(),
        3,
        "{problems:#?} {:#?}",
        h.incidents()
    );
    assert!(
        h.incidents()
            .iter()
            .all(|i| i.problem_id.as_deref() == Some(problems[0].id.as_str()))
    );

    let mut h = Harness::new(IncidentsConfig::default(), Vec::new());
    h.assets
        .extend((0..6).map(|n| asset(&format!("lab{n}"), AssetKind::Pc)));
    let mut burst: Vec<_> = (0..6).map(|n| down(&format!("lab{n}"))).collect();
    for c in &mut burst {
        c.rule = "unauthorised_change";
    }
    h.step(0, burst);
    let problems = h.store.problems().expect("problems");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].pattern, "widespread");
    assert_eq!(problems[0].asset_ids.len(), 6);
}

#[test]
fn priority_is_impact_plus_urgency_minus_one() {
    assert_eq!(priority(1, 1), 1);
    assert_eq!(priority(2, 3), 4);
    assert_eq!(priority(3, 3), 5);
}

#[test]
fn an_incident_on_hold_is_resumed_and_only_then() {
    let mut h = Harness::new(IncidentsConfig::default(), Vec::new());
    h.step(0, vec![down("pc1")]);
    let id = h.incidents()[0].id.clone();
    let act = |h: &mut Harness, action: Action| {
        let mut out = WriteSet::default();
        let t = h.t;
        let result = h
            .engine
            .act(&h.store, t, &id, action, &mut out)
            .expect("store");
        h.store.commit(out).expect("commit");
        result
    };
    let resume = || Action::Resume {
        by: "sam".to_owned(),
        text: Some("part arrived".to_owned()),
    };
    assert!(
        matches!(act(&mut h, resume()), Err(ActionError::Conflict { .. })),
        "an incident not on hold cannot be resumed"
    );
    let held = act(
        &mut h,
        Action::Hold {
            by: "sam".to_owned(),
            reason: "waiting for a part".to_owned(),
        },
    )
    .expect("hold");
    assert_eq!(held.state, IncidentState::OnHold);
    let resumed = act(&mut h, resume()).expect("resume");
    assert_eq!(resumed.state, IncidentState::InProgress);
    assert_eq!(resumed.desk.hold_reason, None);
    assert_eq!(
        resumed.notes.last().map(|n| n.text.as_str()),
        Some("Taken off hold: part arrived")
    );
    assert_eq!(h.incidents()[0].state, IncidentState::InProgress, "stored");
}

/// `warranty_expiry` through the engine: the rule says so at every evaluation, the school
/// hears once; the countdown updates the one incident, and a renewal resolves it.
#[test]
fn a_warranty_notice_opens_once_however_often_the_rules_run() {
    let mut h = Harness::new(IncidentsConfig::default(), Vec::new());
    h.assets[1].register.warranty_end = Some(time::macros::date!(2026 - 10 - 09));
    let config = crate::rules::RulesConfig {
        warranty_notice_days: 7,
        ..Default::default()
    };
    let obs = crate::observe::Observations::default();
    let conditions = |h: &Harness, after: i64| {
        let cx = crate::rules::Context {
            now: h.t + time::Duration::seconds(after),
            assets: &h.assets,
            obs: &obs,
            change_windows: &[],
            baseline: None,
        };
        crate::rules::evaluate(&config, &cx)
    };
    let mut events = Vec::new();
    // Every 10 s for a minute, then daily for three days.
    for after in [10; 6].into_iter().chain([86_400; 3]) {
        let found = conditions(&h, after);
        assert_eq!(found.len(), 1, "{found:?}");
        events.extend(kinds(&h.step(after, found)));
    }
    assert_eq!(events, [IncidentEventKind::Opened], "one notice");
    let incidents = h.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].rule, "warranty_expiry");
    assert_eq!(incidents[0].asset_id, "pc1");
    assert_eq!(incidents[0].priority, 5);
    assert_eq!(
        incidents[0].title, "Warranty of PC1 ends tomorrow (2026-10-09)",
        "the title follows the countdown"
    );

    // Renewed: the condition is gone and the notice resolves after the hold-down.
    h.assets[1].register.warranty_end = Some(time::macros::date!(2029 - 10 - 09));
    let mut later = Vec::new();
    for _ in 0..5 {
        let found = conditions(&h, 60);
        assert!(found.is_empty(), "{found:?}");
        later.extend(kinds(&h.step(60, found)));
    }
    assert_eq!(later, [IncidentEventKind::Resolved { automatic: true }]);
}
