//! `cargo bench -p caretaker-collector --bench tracking`: rule evaluation for 5,000 assets per
//! cycle, and store growth per asset per day with and without roll-ups. Prints figures; no
//! assertions (machines here are shared and noisy).

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use caretaker_collector::incidents::topology::Parents;
use caretaker_collector::incidents::{Engine, IncidentsConfig};
use caretaker_collector::model::{Asset, AssetKind, ReachSample, Source, StatusSample};
use caretaker_collector::observe::{Observations, StatusPoint};
use caretaker_collector::rules::{Context, RulesConfig, evaluate};
use caretaker_collector::store::{SledStore, Store, WriteSet};
use caretaker_proto::v1;
use time::OffsetDateTime;

fn asset(i: usize, now: OffsetDateTime) -> Asset {
    let kind = match i % 10 {
        0 => AssetKind::Printer,
        1 => AssetKind::Switch,
        _ => AssetKind::Pc,
    };
    let mut sources = BTreeSet::from([Source::Ping]);
    if kind == AssetKind::Pc {
        sources.insert(Source::Agent);
    } else {
        sources.insert(Source::Snmp);
    }
    Asset {
        id: format!("{i:016x}"),
        kind,
        name: format!("DEV-{i:05}"),
        hostname: String::new(),
        ips: vec![format!("198.18.{}.{}", i / 250, i % 250 + 1)],
        macs: vec![format!("00:16:3e:00:{:02x}:{:02x}", i / 256, i % 256)],
        vendor: String::new(),
        model: String::new(),
        serial: String::new(),
        smbios_uuid: String::new(),
        machine_id: String::new(),
        os: String::new(),
        sources,
        first_seen: now - time::Duration::days(30),
        agent_ids: vec![],
        identity_notes: vec![],
        partial: vec![],
        clock_suspect: false,
        classification: String::new(),
        register: Default::default(),
        register_rev: 0,
    }
}

fn rules_per_cycle() {
    let now = OffsetDateTime::now_utc();
    let assets: Vec<Asset> = (0..5000).map(|i| asset(i, now)).collect();
    let mut obs = Observations::default();
    for (i, a) in assets.iter().enumerate() {
        obs.ping(
            &a.id,
            now - time::Duration::seconds(5),
            i % 97 != 0,
            time::Duration::minutes(15),
        );
        if a.sources.contains(&Source::Agent) {
            obs.agent(&a.id, now - time::Duration::seconds(30));
            for k in 0..288 {
                obs.status(
                    &a.id,
                    StatusPoint {
                        at: now - time::Duration::minutes(5 * (288 - k)),
                        cpu_percent: (k % 50) as f64,
                        memory_percent: Some(40.0 + (k % 7) as f64),
                        volumes: vec![
                            ("C:".to_owned(), 50.0 + k as f64 * 0.01, 256 << 30),
                            ("D:".to_owned(), 20.0, 1 << 40),
                        ],
                        boot_time: Some(now - time::Duration::days(2)),
                    },
                );
            }
        }
        if a.kind == AssetKind::Printer {
            for k in 0..48 {
                let snapshot = serde_json::from_value(serde_json::json!({
                    "supplies": [{"description": "Black Toner", "percent": 80.0 - k as f64}, {"description": "Drum", "percent": 60.0}],
                    "printer_errors": if i % 20 == 0 { vec!["doorOpen"] } else { vec![] },
                }))
                .expect("snapshot");
                obs.snmp(&a.id, now - time::Duration::hours(48 - k), &snapshot);
            }
        }
    }
    let config = RulesConfig::default();
    let store = caretaker_collector::store::MemoryStore::default();
    let mut engine = Engine::load(&store, IncidentsConfig::default(), Vec::new()).expect("engine");
    let by_id: HashMap<String, &Asset> = assets.iter().map(|a| (a.id.clone(), a)).collect();
    let parents = Parents::default();
    let mut times = Vec::new();
    let mut conditions_count = 0;
    for cycle in 0..20 {
        let at = now + time::Duration::seconds(5 * cycle);
        let start = Instant::now();
        let cx = Context {
            now: at,
            assets: &assets,
            obs: &obs,
            change_windows: &[],
            baseline: None,
        };
        let conditions = evaluate(&config, &cx);
        conditions_count = conditions.len();
        let mut out = WriteSet::default();
        engine.step(at, conditions, &by_id, &parents, &mut out);
        times.push(start.elapsed());
        store.commit(out).expect("commit");
    }
    times.sort();
    println!(
        "rules + incident engine, 5,000 assets x 11 rules: median {:.1} ms, max {:.1} ms per cycle ({} conditions; target <= 50 ms)",
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times.last().expect("times").as_secs_f64() * 1000.0,
        conditions_count
    );
}

fn store_growth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledStore::open(&dir.path().join("store")).expect("open");
    let now = OffsetDateTime::now_utc();
    let assets = 500;
    let empty = store.size_on_disk().expect("size");
    // One school day of data: a status report every 5 minutes per agent PC, ping verdicts
    // (transitions and 15-minute refreshes: 96), hourly supply levels per printer.
    for hour in 0..24 {
        let mut set = WriteSet::default();
        for i in 0..assets {
            let id = format!("{i:016x}");
            for k in 0..12 {
                let at = now - time::Duration::hours(24 - hour) + time::Duration::minutes(5 * k);
                set.samples.push(StatusSample {
                    asset_id: id.clone(),
                    at,
                    seq: (hour * 12 + k) as u64,
                    clock_suspect: false,
                    status: v1::Status {
                        uptime_secs: 3600 * hour as u64,
                        cpu_percent: 12.5,
                        load1: 0.4,
                        load5: 0.3,
                        load15: 0.2,
                        memory_total_bytes: 8 << 30,
                        memory_used_bytes: 3 << 30,
                        swap_total_bytes: 2 << 30,
                        volumes: vec![
                            v1::VolumeUsage {
                                mount: "C:\\".to_owned(),
                                total_bytes: 256 << 30,
                                free_bytes: 100 << 30,
                            },
                            v1::VolumeUsage {
                                mount: "D:\\".to_owned(),
                                total_bytes: 1 << 40,
                                free_bytes: 900 << 30,
                            },
                        ],
                        logged_on_users: vec!["SCHOOL\\\\pupil042".to_owned()],
                        ..Default::default()
                    },
                });
            }
            for q in 0..4 {
                let at = now - time::Duration::hours(24 - hour) + time::Duration::minutes(15 * q);
                set.reach.push((
                    id.clone(),
                    ReachSample {
                        at,
                        up: true,
                        rtt_us: 350,
                    },
                ));
            }
            if i % 10 == 0 {
                set.levels.push((
                    id.clone(),
                    now - time::Duration::hours(24 - hour),
                    [("Black Toner".to_owned(), 50.0), ("Drum".to_owned(), 70.0)].into(),
                ));
            }
        }
        store.commit(set).expect("commit");
    }
    let raw = store.size_on_disk().expect("size") - empty;
    println!(
        "store growth, raw: {:.1} KiB per asset per day ({} assets, one day; sled grows in chunks, so this is approximate)",
        raw as f64 / 1024.0 / assets as f64,
        assets
    );
    // Roll the day up and drop the raw samples, as retention does after seven days.
    let mut rolled = 0usize;
    for i in 0..assets {
        let id = format!("{i:016x}");
        let samples = store
            .samples(
                &id,
                OffsetDateTime::UNIX_EPOCH,
                now + time::Duration::days(1),
                usize::MAX,
            )
            .expect("samples");
        let rollups = caretaker_collector::retention::summarise(&samples);
        rolled += rollups
            .iter()
            .map(|(_, v)| v.to_string().len() + 24)
            .sum::<usize>();
        store
            .compact(
                &id,
                now + time::Duration::days(1),
                rollups,
                now + time::Duration::days(1),
            )
            .expect("compact");
    }
    println!(
        "store growth, rolled up (hourly summaries): ~{:.1} KiB per asset per day of history (encoded size)",
        rolled as f64 / 1024.0 / assets as f64
    );
}

fn main() {
    rules_per_cycle();
    store_growth();
}
