//! A synthetic school for `caretaker-bench dashboard`: assets with inventories, incidents
//! and change records written straight into a store that no daemon holds (the hidden
//! `caretaker-collector bench-seed` command). Deterministic: the same counts give the same
//! store. Not used by the daemon.

use std::collections::BTreeSet;

use caretaker_proto::v1;
use time::OffsetDateTime;

use crate::model::{
    AssetKind, Change, Desk, Incident, IncidentState, InventoryMeta, InventoryRecord, Note,
    ReachSample, Source,
};
use crate::store::{Store, StoreError, WriteSet};

const KINDS: [AssetKind; 8] = [
    AssetKind::Pc,
    AssetKind::Pc,
    AssetKind::Pc,
    AssetKind::Laptop,
    AssetKind::Printer,
    AssetKind::Switch,
    AssetKind::AccessPoint,
    AssetKind::Projector,
];

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Writes `assets` assets (each PC with `programs` programs), `incidents` incidents (2% open)
/// and `changes` change records spread over the last 90 days.
pub fn seed(
    store: &dyn Store,
    assets: usize,
    programs: usize,
    incidents: usize,
    changes: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<(), StoreError> {
    let now = OffsetDateTime::now_utc();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let titles: Vec<String> = (0..2_000).map(|i| format!("Program {i:04}")).collect();
    let ids: Vec<String> = (0..assets)
        .map(|i| format!("{:016x}", 0xa5e7_0000_0000u64 + i as u64))
        .collect();
    let names: Vec<String> = (0..assets)
        .map(|i| format!("rm{:02}-pc{:03}", i / 30, i % 30))
        .collect();
    let mut set = WriteSet::default();
    for (i, id) in ids.iter().enumerate() {
        let kind = KINDS[i % KINDS.len()];
        let ip = format!("198.18.{}.{}", i / 250, i % 250 + 2);
        let mac = format!(
            "02:00:00:{:02x}:{:02x}:{:02x}",
            i >> 16 & 0xff,
            i >> 8 & 0xff,
            i & 0xff
        );
        let agent = matches!(kind, AssetKind::Pc | AssetKind::Laptop);
        let mut sources = BTreeSet::from([Source::Ping]);
        if agent {
            sources.insert(Source::Agent);
        }
        set.assets.push(crate::model::Asset {
            id: id.clone(),
            kind,
            name: names[i].clone(),
            hostname: names[i].clone(),
            ips: vec![ip],
            macs: vec![mac.clone()],
            vendor: "Dell Inc.".to_owned(),
            model: format!("OptiPlex {}", 3000 + i % 7 * 10),
            serial: format!("SN{i:07}"),
            smbios_uuid: String::new(),
            machine_id: String::new(),
            os: if agent { "Windows 11 Education" } else { "" }.to_owned(),
            sources,
            first_seen: now - time::Duration::days(120),
            agent_ids: if agent {
                vec![format!("agent-{i}")]
            } else {
                Vec::new()
            },
            identity_notes: Vec::new(),
            partial: Vec::new(),
            clock_suspect: false,
            classification: String::new(),
            register: Default::default(),
            register_rev: 0,
        });
        set.reach.push((
            id.clone(),
            ReachSample {
                at: now - time::Duration::seconds(30),
                up: rng.below(20) != 0,
                rtt_us: 400,
            },
        ));
        if agent {
            let software = (0..programs)
                .map(|_| {
                    let t = rng.below(titles.len() as u64) as usize;
                    v1::Software {
                        name: titles[t].clone(),
                        version: format!("{}.{}", t % 9, t % 5),
                        publisher: "Vendor".to_owned(),
                        ..Default::default()
                    }
                })
                .collect();
            set.inventories.push((
                id.clone(),
                InventoryRecord {
                    meta: InventoryMeta {
                        agent_id: format!("agent-{i}"),
                        seq: 1,
                        collected_at: now,
                        received_at: now,
                        partial: Vec::new(),
                    },
                    inventory: v1::Inventory {
                        software,
                        ..Default::default()
                    },
                },
            ));
        }
        if set.assets.len() >= 500 {
            store.commit(std::mem::take(&mut set))?;
        }
    }
    store.commit(std::mem::take(&mut set))?;
    progress(&format!("{assets} assets"));

    for n in 0..incidents {
        let a = rng.below(assets as u64) as usize;
        let opened = now - time::Duration::minutes(rng.below(90 * 24 * 60) as i64);
        let open = rng.below(50) == 0;
        let priority = 1 + rng.below(5) as u8;
        set.incidents.push(Incident {
            id: format!("{:016x}", 0x1ac1_0000_0000u64 + n as u64),
            number: format!("INC{:07}", n + 1),
            asset_id: ids[a].clone(),
            asset_name: names[a].clone(),
            rule: "host_down".to_owned(),
            title: format!("{} down", names[a]),
            description: "The device stopped answering ping.".to_owned(),
            impact: priority.div_ceil(2),
            urgency: priority.div_ceil(2),
            priority,
            state: if open {
                IncidentState::New
            } else {
                IncidentState::Closed
            },
            opened_at: opened,
            updated_at: opened,
            acknowledged_at: None,
            resolved_at: (!open).then_some(opened + time::Duration::hours(1)),
            closed_at: (!open).then_some(opened + time::Duration::days(7)),
            occurrences: 1,
            notes: vec![Note {
                at: opened,
                author: "caretaker".to_owned(),
                text: "Opened.".to_owned(),
            }],
            affected: Vec::new(),
            flapping: false,
            measured: serde_json::Value::Null,
            problem_id: None,
            clear_since: None,
            transitions: Vec::new(),
            desk: Desk::default(),
        });
        if set.incidents.len() >= 10_000 {
            store.commit(std::mem::take(&mut set))?;
            progress(&format!("{} incidents", n + 1));
        }
    }
    store.commit(std::mem::take(&mut set))?;

    for n in 0..changes {
        let a = rng.below(assets as u64) as usize;
        let t = rng.below(titles.len() as u64) as usize;
        set.changes.push(Change {
            id: format!("{:016x}", 0xc4a9_0000_0000u64 + n as u64),
            asset_id: ids[a].clone(),
            at: now - time::Duration::seconds(rng.below(90 * 86_400) as i64),
            kind: if n % 2 == 0 { "added" } else { "upgraded" }.to_owned(),
            field: format!("software:{}", titles[t]),
            before: (n % 2 == 1).then(|| "1.0".to_owned()),
            after: Some("1.1".to_owned()),
            clock_suspect: false,
            expected_by: None,
            author: None,
        });
        if set.changes.len() >= 20_000 {
            store.commit(std::mem::take(&mut set))?;
            if (n + 1) % 100_000 == 0 {
                progress(&format!("{} changes", n + 1));
            }
        }
    }
    store.commit(std::mem::take(&mut set))?;
    progress("done");
    Ok(())
}
