//! The behaviour every [`Store`] must show, run against each implementation.

use time::OffsetDateTime;
use time::macros::datetime;

use super::{ChangeQuery, Store, WriteSet};
use crate::model::{
    AgentRecord, Asset, AssetKind, Change, Incident, IncidentEvent, IncidentEventKind,
    IncidentState, InventoryMeta, InventoryRecord, ReachSample, SnmpSnapshot, Source, StatusSample,
    SupplyLevels,
};
use caretaker_proto::v1;

fn asset(id: &str, name: &str) -> Asset {
    Asset {
        id: id.to_owned(),
        kind: AssetKind::Pc,
        name: name.to_owned(),
        hostname: name.to_owned(),
        ips: vec!["198.18.0.5".to_owned()],
        macs: vec!["52:54:00:12:34:56".to_owned()],
        vendor: "Dell Inc.".to_owned(),
        model: "OptiPlex 7010".to_owned(),
        serial: "ABC123".to_owned(),
        smbios_uuid: String::new(),
        machine_id: String::new(),
        os: "Debian 12".to_owned(),
        sources: [Source::Agent].into(),
        first_seen: datetime!(2026-09-01 08:00 UTC),
        agent_ids: vec!["ag1".to_owned()],
        identity_notes: Vec::new(),
        partial: Vec::new(),
        clock_suspect: false,
        classification: String::new(),
        register: Default::default(),
        register_rev: 0,
    }
}

fn change(id: &str, asset: &str, at: OffsetDateTime) -> Change {
    Change {
        id: id.to_owned(),
        asset_id: asset.to_owned(),
        at,
        kind: "added".to_owned(),
        field: format!("software:{id}"),
        before: None,
        after: Some("1.0".to_owned()),
        clock_suspect: false,
        expected_by: None,
        author: None,
    }
}

fn sample(asset: &str, at: OffsetDateTime, seq: u64) -> StatusSample {
    StatusSample {
        asset_id: asset.to_owned(),
        at,
        seq,
        clock_suspect: seq.is_multiple_of(2),
        status: v1::Status {
            uptime_secs: seq * 60,
            cpu_percent: 12.5,
            memory_total_bytes: 8 << 30,
            volumes: vec![v1::VolumeUsage {
                mount: "/".to_owned(),
                total_bytes: 100,
                free_bytes: 40,
            }],
            ..Default::default()
        },
    }
}

/// Runs the suite; `make(n)` must return a fresh, empty store for each `n`.
pub fn run(make: impl Fn(usize) -> Box<dyn Store>) {
    records_round_trip(make(0).as_ref());
    changes_list_newest_first_and_filter(make(1).as_ref());
    samples_are_ranged_by_time(make(2).as_ref());
    replaying_a_commit_is_idempotent(make(3).as_ref());
    reach_samples_and_snmp_snapshots(make(4).as_ref());
    incidents_events_and_outbox(make(5).as_ref());
    compaction_keeps_summaries_and_recent_samples(make(6).as_ref());
    changes_by_kind_and_dashboard_records(make(7).as_ref());
}

fn changes_by_kind_and_dashboard_records(store: &dyn Store) {
    let t0 = OffsetDateTime::from_unix_timestamp(1_750_000_000).expect("time");
    let mut set = WriteSet::default();
    for n in 0..10i64 {
        let mut c = change(
            &format!("k{n}"),
            if n % 2 == 0 { "a1" } else { "a2" },
            t0 + time::Duration::minutes(n),
        );
        c.kind = if n % 3 == 0 { "removed" } else { "added" }.to_owned();
        set.changes.push(c);
    }
    set.users.push(crate::model::User {
        name: "tech".to_owned(),
        role: crate::model::Role::Technician,
        password_hash: "$argon2id$x".to_owned(),
        disabled: false,
        created_at: t0,
    });
    let session = crate::model::Session {
        token_sha256: "s1".to_owned(),
        user: "tech".to_owned(),
        csrf: "c".to_owned(),
        created_at: t0,
        expires_at: t0 + time::Duration::hours(1),
    };
    set.sessions.push(("s1".to_owned(), Some(session)));
    store.commit(set).expect("commit");
    let removed = store.changes_of_kind("removed", None, 10).expect("by kind");
    let ids: Vec<&str> = removed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["k9", "k6", "k3", "k0"], "newest first, one kind only");
    let since = store
        .changes_of_kind("added", Some(t0 + time::Duration::minutes(7)), 1)
        .expect("by kind");
    assert_eq!(since.len(), 1);
    assert_eq!(since[0].id, "k8");
    assert_eq!(store.users().expect("users").len(), 1);
    assert_eq!(store.sessions().expect("sessions").len(), 1);
    let mut set = WriteSet::default();
    set.sessions.push(("s1".to_owned(), None));
    store.commit(set).expect("commit");
    assert!(
        store.sessions().expect("sessions").is_empty(),
        "a session is removed"
    );
}

fn compaction_keeps_summaries_and_recent_samples(store: &dyn Store) {
    let base = datetime!(2026-10-01 00:00 UTC);
    let samples: Vec<_> = (0..12)
        .map(|i| sample("a1", base + time::Duration::hours(i as i64), i + 1))
        .chain([sample("a2", base, 1)])
        .collect();
    let reach = |h: i64| ReachSample {
        at: base + time::Duration::hours(h),
        up: true,
        rtt_us: 1,
    };
    store
        .commit(WriteSet {
            samples,
            reach: (0..12).map(|h| ("a1".to_owned(), reach(h))).collect(),
            ..Default::default()
        })
        .expect("commit");
    let cutoff = base + time::Duration::hours(6);
    let removed = store
        .compact(
            "a1",
            cutoff,
            vec![(base, serde_json::json!({"cpu": [1, 2, 3]}))],
            base + time::Duration::hours(3),
        )
        .expect("compact");
    assert_eq!(removed, 6 + 3);
    let far = datetime!(2100-01-01 00:00 UTC);
    let left = store
        .samples("a1", OffsetDateTime::UNIX_EPOCH, far, 100)
        .expect("samples");
    assert_eq!(left.len(), 6);
    assert!(left.iter().all(|s| s.at >= cutoff));
    assert_eq!(
        store
            .samples("a2", OffsetDateTime::UNIX_EPOCH, far, 100)
            .expect("samples")
            .len(),
        1,
        "other assets untouched"
    );
    assert_eq!(
        store
            .reach("a1", OffsetDateTime::UNIX_EPOCH, far, 100)
            .expect("reach")
            .len(),
        9
    );
    let rollups = store
        .rollups("a1", OffsetDateTime::UNIX_EPOCH, far)
        .expect("rollups");
    assert_eq!(rollups, vec![(base, serde_json::json!({"cpu": [1, 2, 3]}))]);
}

fn incidents_events_and_outbox(store: &dyn Store) {
    let at = datetime!(2026-10-05 07:55 UTC);
    let incident = |n: u32| Incident {
        id: format!("i{n}"),
        number: format!("INC{n:07}"),
        asset_id: "a1".to_owned(),
        asset_name: "ICT-SW2".to_owned(),
        rule: "host_down".to_owned(),
        title: "ICT-SW2 down".to_owned(),
        description: String::new(),
        impact: 1,
        urgency: 2,
        priority: 2,
        state: IncidentState::New,
        opened_at: at + time::Duration::minutes(i64::from(n)),
        updated_at: at,
        acknowledged_at: None,
        resolved_at: None,
        closed_at: None,
        occurrences: 1,
        notes: Vec::new(),
        affected: vec!["a2".to_owned()],
        flapping: false,
        measured: serde_json::json!({"missed_sweeps": 3}),
        problem_id: None,
        clear_since: None,
        transitions: vec![1],
        desk: Default::default(),
    };
    let event = |seq: u64| IncidentEvent {
        seq,
        at,
        incident_id: "i1".to_owned(),
        kind: IncidentEventKind::PriorityChanged { from: 3, to: 2 },
    };
    store
        .commit(WriteSet {
            incidents: vec![incident(2), incident(1)],
            incident_events: (1..=5).map(event).collect(),
            ..Default::default()
        })
        .expect("commit");
    assert_eq!(store.incident("i1").expect("read"), Some(incident(1)));
    let numbers: Vec<_> = store
        .incidents()
        .expect("all")
        .into_iter()
        .map(|i| i.number)
        .collect();
    assert_eq!(numbers, ["INC0000001", "INC0000002"]);
    let seqs: Vec<_> = store
        .incident_events(2, 2)
        .expect("events")
        .into_iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [3, 4]);
    assert_eq!(store.incident_events(5, 10).expect("events"), vec![]);
    assert_eq!(store.incident_events(0, 1).expect("events"), vec![event(1)]);

    assert_eq!(store.meta("alerts.cursor").expect("meta"), None);
    store.set_meta("alerts.cursor", 4).expect("set");
    assert_eq!(store.meta("alerts.cursor").expect("meta"), Some(4));
    store
        .commit(WriteSet {
            meta: vec![("alerts.cursor".to_owned(), 5)],
            ..Default::default()
        })
        .expect("commit");
    assert_eq!(store.meta("alerts.cursor").expect("meta"), Some(5));
}

fn reach_samples_and_snmp_snapshots(store: &dyn Store) {
    let levels = |black: f64| SupplyLevels::from([("Black Toner".to_owned(), black)]);
    let base = datetime!(2026-10-01 08:00 UTC);
    let reach = |minutes: i64, up: bool| ReachSample {
        at: base + time::Duration::minutes(minutes),
        up,
        rtt_us: if up { 350 } else { 0 },
    };
    assert_eq!(store.latest_reach("a1").expect("latest"), None);
    store
        .commit(WriteSet {
            reach: vec![
                ("a1".to_owned(), reach(0, true)),
                ("a1".to_owned(), reach(1, false)),
                ("a1".to_owned(), reach(2, true)),
                ("a10".to_owned(), reach(5, false)),
            ],
            snmp: vec![(
                "a1".to_owned(),
                SnmpSnapshot {
                    system: crate::model::snmp::SystemInfo {
                        name: "ICT-SW2".to_owned(),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            )],
            levels: vec![
                ("a1".to_owned(), base, levels(40.0)),
                (
                    "a1".to_owned(),
                    base + time::Duration::hours(1),
                    levels(38.0),
                ),
                ("a10".to_owned(), base, levels(1.0)),
            ],
            ..Default::default()
        })
        .expect("commit");
    let got = store
        .reach("a1", base, base + time::Duration::minutes(2), 10)
        .expect("reach");
    assert_eq!(got, vec![reach(0, true), reach(1, false)]);
    assert_eq!(
        store.latest_reach("a1").expect("latest"),
        Some(reach(2, true))
    );
    assert_eq!(
        store.latest_reach("a10").expect("latest"),
        Some(reach(5, false))
    );
    assert_eq!(
        store
            .snmp("a1")
            .expect("snmp")
            .expect("snapshot")
            .system
            .name,
        "ICT-SW2"
    );
    assert_eq!(store.snmp("a2").expect("snmp"), None);
    let stored = store
        .levels("a1", base, base + time::Duration::days(1))
        .expect("levels");
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1], (base + time::Duration::hours(1), levels(38.0)));
}

fn records_round_trip(store: &dyn Store) {
    let agent = AgentRecord {
        agent_id: "ag1".to_owned(),
        secret_sha256: "00".repeat(32),
        enrolled_at: datetime!(2026-09-01 08:00 UTC),
        hostname: "ROOM12-PC03".to_owned(),
        smbios_uuid: "4c4c4544-0031".to_owned(),
        macs: vec!["52:54:00:12:34:56".to_owned()],
        peer: "198.18.0.5:5000".to_owned(),
        asset_id: Some("a1".to_owned()),
        epoch: 0x5eed,
    };
    let inventory = InventoryRecord {
        meta: InventoryMeta {
            agent_id: "ag1".to_owned(),
            seq: 7,
            collected_at: datetime!(2026-09-01 08:00 UTC),
            received_at: datetime!(2026-09-01 08:00:01 UTC),
            partial: vec!["software".to_owned()],
        },
        inventory: v1::Inventory {
            software: vec![v1::Software {
                name: "firefox-esr".to_owned(),
                version: "128.3".to_owned(),
                ..Default::default()
            }],
            ..Default::default()
        },
    };
    let seen = datetime!(2026-09-02 09:30:15.250 UTC);
    store
        .commit(WriteSet {
            assets: vec![asset("a1", "ROOM12-PC03"), asset("a2", "LIBRARY-MFP")],
            agents: vec![agent.clone()],
            inventories: vec![("a1".to_owned(), inventory.clone())],
            last_seen: vec![("a1".to_owned(), seen)],
            agent_seqs: vec![("ag1".to_owned(), 7)],
            ..Default::default()
        })
        .expect("commit");
    assert_eq!(
        store.asset("a1").expect("read"),
        Some(asset("a1", "ROOM12-PC03"))
    );
    assert_eq!(store.asset("missing").expect("read"), None);
    let mut names: Vec<_> = store
        .assets()
        .expect("assets")
        .into_iter()
        .map(|a| a.name)
        .collect();
    names.sort();
    assert_eq!(names, ["LIBRARY-MFP", "ROOM12-PC03"]);
    assert_eq!(store.agents().expect("agents"), vec![agent]);
    assert_eq!(store.inventory("a1").expect("inventory"), Some(inventory));
    assert_eq!(store.last_seen().expect("seen").get("a1"), Some(&seen));
    assert_eq!(store.agent_seqs().expect("seqs").get("ag1"), Some(&7));

    // A later commit overwrites the sequence rather than adding to it.
    store
        .commit(WriteSet {
            agent_seqs: vec![("ag1".to_owned(), 9)],
            ..Default::default()
        })
        .expect("commit");
    assert_eq!(store.agent_seqs().expect("seqs").get("ag1"), Some(&9));
}

fn changes_list_newest_first_and_filter(store: &dyn Store) {
    store
        .commit(WriteSet {
            changes: vec![
                change("c1", "a1", datetime!(2026-09-01 08:00 UTC)),
                change("c2", "a2", datetime!(2026-09-01 09:00 UTC)),
                change("c3", "a1", datetime!(2026-09-01 10:00 UTC)),
                change("c0", "a1", datetime!(1969-12-31 23:00 UTC)),
            ],
            ..Default::default()
        })
        .expect("commit");
    let all = |q: ChangeQuery| -> Vec<String> {
        store
            .changes(&q)
            .expect("changes")
            .into_iter()
            .map(|c| c.id)
            .collect()
    };
    assert_eq!(
        all(ChangeQuery {
            limit: 10,
            ..Default::default()
        }),
        ["c3", "c2", "c1", "c0"]
    );
    assert_eq!(
        all(ChangeQuery {
            asset: Some("a1".to_owned()),
            limit: 10,
            ..Default::default()
        }),
        ["c3", "c1", "c0"]
    );
    assert_eq!(
        all(ChangeQuery {
            asset: Some("a1".to_owned()),
            since: Some(datetime!(2026-09-01 08:30 UTC)),
            limit: 10
        }),
        ["c3"]
    );
    assert_eq!(
        all(ChangeQuery {
            limit: 2,
            ..Default::default()
        }),
        ["c3", "c2"]
    );
    // An asset whose id is a prefix of another's sees only its own changes.
    assert!(
        all(ChangeQuery {
            asset: Some("a".to_owned()),
            limit: 10,
            ..Default::default()
        })
        .is_empty()
    );
    let full = store
        .changes(&ChangeQuery {
            limit: 1,
            ..Default::default()
        })
        .expect("changes");
    assert_eq!(
        full,
        vec![change("c3", "a1", datetime!(2026-09-01 10:00 UTC))]
    );
}

fn samples_are_ranged_by_time(store: &dyn Store) {
    let base = datetime!(2026-10-01 00:00 UTC);
    let samples: Vec<_> = (0..10)
        .map(|i| sample("a1", base + time::Duration::minutes(5 * i as i64), i + 1))
        .chain([sample("a10", base, 99)])
        .collect();
    store
        .commit(WriteSet {
            samples: samples.clone(),
            ..Default::default()
        })
        .expect("commit");
    let got = store
        .samples(
            "a1",
            base + time::Duration::minutes(10),
            base + time::Duration::minutes(30),
            100,
        )
        .expect("samples");
    assert_eq!(got, samples[2..6].to_vec());
    let limited = store
        .samples("a1", base, base + time::Duration::days(1), 3)
        .expect("samples");
    assert_eq!(limited, samples[..3].to_vec());
    let other = store
        .samples("a10", base, base + time::Duration::days(1), 10)
        .expect("samples");
    assert_eq!(other, vec![samples[10].clone()]);
}

fn replaying_a_commit_is_idempotent(store: &dyn Store) {
    let make = || WriteSet {
        samples: vec![sample("a1", datetime!(2026-10-01 00:00 UTC), 1)],
        changes: vec![change("c1", "a1", datetime!(2026-10-01 00:00 UTC))],
        assets: vec![asset("a1", "PC")],
        agent_seqs: vec![("ag1".to_owned(), 1)],
        ..Default::default()
    };
    store.commit(make()).expect("commit");
    store.commit(make()).expect("commit again");
    let far = datetime!(2100-01-01 00:00 UTC);
    assert_eq!(
        store
            .samples("a1", OffsetDateTime::UNIX_EPOCH, far, 10)
            .expect("samples")
            .len(),
        1
    );
    assert_eq!(
        store
            .changes(&ChangeQuery {
                limit: 10,
                ..Default::default()
            })
            .expect("c")
            .len(),
        1
    );
    assert_eq!(store.assets().expect("assets").len(), 1);
}

/// For persistent stores: what one instance committed, the next one opened on the same
/// path still has.
pub fn survives_reopen(open: impl Fn() -> Box<dyn Store>) {
    {
        let store = open();
        store
            .commit(WriteSet {
                assets: vec![asset("a1", "PC")],
                agent_seqs: vec![("ag1".to_owned(), 42)],
                ..Default::default()
            })
            .expect("commit");
    }
    let store = open();
    assert_eq!(
        store.asset("a1").expect("read").map(|a| a.name),
        Some("PC".to_owned())
    );
    assert_eq!(store.agent_seqs().expect("seqs").get("ag1"), Some(&42));
}
