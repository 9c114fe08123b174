//! `caretaker-bench year`: the store of a school after a year, as retention leaves it, and
//! how long the real collector then takes to start.
//!
//! Written straight through the collector's own store (`SledStore`), in the shape the
//! daemon writes: `--assets` devices, `--agent-share` of them PCs with agents (an inventory of
//! `--programs` programs, five-minute status reports for the last `[retention] raw_status`
//! (7 days) and hourly summaries from the year before that), the rest network devices (a ping
//! verdict every 15 minutes for `[retention] reach`, 90 days). Two changes a week per PC,
//! `--incidents-per-day` incidents with their events, and 30 days of sent mail. Then one
//! retention pass (what the hourly task costs on a year of data), the size on disk, and the
//! real `caretaker-collector run` on the store: time until its API answers, and its RSS.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use caretaker_collector::model::{
    AgentRecord, Asset, Change, Incident, IncidentEvent, OutboxEntry, ReachSample, StatusSample,
};
use caretaker_collector::retention::{RetentionConfig, compact_all, summarise};
use caretaker_collector::store::{SledStore, Store, WriteSet};
use caretaker_proto::v1;
use serde_json::json;
use time::OffsetDateTime;

use crate::harness;

pub struct Options {
    pub assets: usize,
    pub agent_share: f64,
    pub days: i64,
    pub programs: usize,
    pub incidents_per_day: usize,
    pub collector_bin: Option<PathBuf>,
    pub keep: Option<PathBuf>,
    pub json: bool,
}

fn rfc(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}

fn asset(n: usize, pc: bool, first_seen: OffsetDateTime) -> Result<Asset> {
    Ok(serde_json::from_value(json!({
        "id": format!("asset{n:05}"), "kind": if pc { "pc" } else { "printer" },
        "name": format!("R{:02}-PC{:02}", n / 30, n % 30), "hostname": format!("r{n}"),
        "ips": [format!("10.20.{}.{}", n / 250, n % 250 + 1)],
        "macs": [format!("00:1a:2b:{:02x}:{:02x}:{:02x}", n >> 16 & 255, n >> 8 & 255, n & 255)],
        "vendor": "Dell Inc.", "model": "OptiPlex 7010", "serial": format!("SN{n:06}"),
        "smbios_uuid": "", "machine_id": "", "os": if pc { "Windows 11 Education" } else { "" },
        "sources": if pc { json!(["agent", "ping"]) } else { json!(["ping", "snmp"]) },
        "first_seen": rfc(first_seen),
        "agent_ids": if pc { json!([format!("agent{n:05}")]) } else { json!([]) },
        "identity_notes": [], "partial": [], "clock_suspect": false, "classification": ""
    }))?)
}

fn status(at: OffsetDateTime, i: u64) -> v1::Status {
    v1::Status {
        uptime_secs: i * 300,
        cpu_percent: (i % 97) as f32,
        load1: 0.5,
        memory_total_bytes: 8 << 30,
        memory_used_bytes: (3 << 30) + (i % 1000) * (1 << 20),
        volumes: vec![v1::VolumeUsage {
            mount: "C:".to_owned(),
            total_bytes: 256 << 30,
            free_bytes: (120 << 30) - (at.unix_timestamp() as u64 % 1000) * (1 << 20),
        }],
        logged_on_users: vec!["pupil".to_owned()],
        ..Default::default()
    }
}

fn inventory(n: usize, programs: usize) -> v1::Inventory {
    v1::Inventory {
        system: Some(v1::System {
            hostname: format!("r{n}"),
            os_name: "Windows 11 Education".to_owned(),
            ..Default::default()
        }),
        software: (0..programs)
            .map(|p| v1::Software {
                name: format!("Program {p}"),
                version: format!("{}.{}.{}", p % 10, p % 7, n % 5),
                publisher: "Publisher Ltd".to_owned(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub fn run(opts: Options) -> Result<bool> {
    let collector_bin = harness::sibling_binary(opts.collector_bin.clone(), "caretaker-collector")?;
    let dir = tempfile::tempdir()?;
    let data_dir = opts.keep.clone().unwrap_or_else(|| dir.path().join("data"));
    if data_dir.exists() {
        bail!("{} exists; give a new directory", data_dir.display());
    }
    let store = SledStore::open(&data_dir.join("store"))?;
    let now = OffsetDateTime::now_utc();
    let year_ago = now - time::Duration::days(opts.days);
    let retention = RetentionConfig::default();
    let raw_days = (retention.raw_status.as_secs() / 86_400) as i64;
    let reach_days = (retention.reach.as_secs() / 86_400) as i64;
    let pcs = (opts.assets as f64 * opts.agent_share).round() as usize;
    let started = Instant::now();
    let mut records = 0u64;

    // One day of hourly summaries, the shape retention writes, shifted to every day.
    let day: Vec<StatusSample> = (0..288u64)
        .map(|i| {
            let at = year_ago + time::Duration::minutes(5 * i as i64);
            StatusSample {
                asset_id: String::new(),
                at,
                seq: i,
                clock_suspect: false,
                status: status(at, i),
            }
        })
        .collect();
    let template = summarise(&day);

    for n in 0..opts.assets {
        let pc = n < pcs;
        let mut set = WriteSet {
            assets: vec![asset(n, pc, year_ago)?],
            ..WriteSet::default()
        };
        if pc {
            let id = format!("asset{n:05}");
            let agent = format!("agent{n:05}");
            set.agents
                .push(serde_json::from_value::<AgentRecord>(json!({
                    "agent_id": agent, "secret_sha256": "00".repeat(32),
                    "enrolled_at": rfc(year_ago), "hostname": format!("r{n}"),
                    "smbios_uuid": "", "macs": [], "peer": "198.18.0.1:50000", "asset_id": id
                }))?);
            set.inventories.push((
                id.clone(),
                caretaker_collector::model::InventoryRecord {
                    meta: serde_json::from_value(json!({
                        "agent_id": agent, "seq": 1, "collected_at": rfc(now),
                        "received_at": rfc(now), "partial": []
                    }))?,
                    inventory: inventory(n, opts.programs),
                },
            ));
            for week in 0..opts.days / 7 {
                for c in 0..2 {
                    let at = year_ago + time::Duration::days(week * 7 + c * 3);
                    set.changes.push(Change {
                        id: format!("chg-{n}-{week}-{c}"),
                        asset_id: id.clone(),
                        at,
                        kind: "software".to_owned(),
                        field: format!("Program {}", week % 50),
                        before: Some(format!("1.{week}")),
                        after: Some(format!("1.{}", week + 1)),
                        clock_suspect: false,
                        expected_by: None,
                        author: None,
                    });
                }
            }
            let raw_from = now - time::Duration::days(raw_days);
            let mut i = 0u64;
            let mut at = raw_from;
            while at < now {
                set.samples.push(StatusSample {
                    asset_id: id.clone(),
                    at,
                    seq: i + 2,
                    clock_suspect: false,
                    status: status(at, i),
                });
                i += 1;
                at += time::Duration::minutes(5);
            }
            set.agent_seqs.push((agent, i + 1));
            records += set.samples.len() as u64 + set.changes.len() as u64 + 3;
            store.write(set)?;
            let mut rollups = Vec::new();
            for d in 0..(opts.days - raw_days).max(0) {
                for (start, value) in &template {
                    rollups.push((*start + time::Duration::days(d), value.clone()));
                }
            }
            records += rollups.len() as u64;
            store.compact(
                &id,
                OffsetDateTime::UNIX_EPOCH,
                rollups,
                OffsetDateTime::UNIX_EPOCH,
            )?;
        } else {
            let id = format!("asset{n:05}");
            let mut at = now - time::Duration::days(reach_days);
            while at < now {
                set.reach.push((
                    id.clone(),
                    ReachSample {
                        at,
                        up: true,
                        rtt_us: 900,
                    },
                ));
                at += time::Duration::minutes(15);
            }
            records += set.reach.len() as u64 + 1;
            store.write(set)?;
        }
    }
    let assets_done = started.elapsed();

    // Incidents, their events, and the last 30 days of sent mail.
    let mut set = WriteSet::default();
    let mut seq = 0;
    for d in 0..opts.days {
        for k in 0..opts.incidents_per_day {
            let n = (d as usize * 7 + k * 13) % opts.assets.max(1);
            let opened = year_ago + time::Duration::days(d) + time::Duration::hours(k as i64 % 10);
            let id = format!("inc-{d}-{k}");
            set.incidents
                .push(serde_json::from_value::<Incident>(json!({
                    "id": id, "number": format!("INC{:07}", d as usize * 100 + k),
                    "asset_id": format!("asset{n:05}"), "asset_name": format!("r{n}"),
                    "rule": "host_down", "title": format!("r{n} is down"), "description": "",
                    "impact": 2, "urgency": 2, "priority": 3, "state": "resolved",
                    "opened_at": rfc(opened), "updated_at": rfc(opened),
                    "resolved_at": rfc(opened + time::Duration::minutes(20)),
                    "occurrences": 1, "notes": []
                }))?);
            for kind in [
                json!({"type": "opened"}),
                json!({"type": "resolved", "automatic": true}),
            ] {
                seq += 1;
                set.incident_events
                    .push(serde_json::from_value::<IncidentEvent>(json!({
                        "seq": seq, "incident_id": id, "kind": kind, "at": rfc(opened)
                    }))?);
            }
            if d >= opts.days - 30 {
                set.outbox.push(serde_json::from_value::<OutboxEntry>(json!({
                    "id": format!("mail-{id}"), "created_at": rfc(opened), "due_at": rfc(opened),
                    "to": ["technician@school.example"], "subject": format!("[INC] r{n} is down"),
                    "text": "Host down.\n".repeat(20), "html": "<p>Host down.</p>".repeat(20),
                    "message_id": format!("<{id}@caretaker>"), "incident_ids": [id],
                    "attempts": 1, "status": "sent", "sent_at": rfc(opened)
                }))?);
            }
        }
    }
    records += (set.incidents.len() + set.incident_events.len() + set.outbox.len()) as u64;
    store.commit(set).context("incidents")?;
    store.flush()?;
    let written = started.elapsed();

    let pass = Instant::now();
    let removed = compact_all(&store, &retention, now)?;
    let retention_pass = pass.elapsed();
    store.flush()?;
    drop(store);
    let bytes = harness::dir_size(&data_dir.join("store"));

    // The real collector on it: until the API answers.
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[grpc]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
            data_dir.display().to_string()
        ),
    )?;
    let start = Instant::now();
    let mut child = std::process::Command::new(&collector_bin)
        .args(["run", "--config"])
        .arg(&config)
        .stderr(std::fs::File::create(dir.path().join("collector.log"))?)
        .spawn()?;
    let listening = loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "the collector exited ({status}): {}",
                harness::log_tail(&dir.path().join("collector.log"), 20)
            );
        }
        if let Some(l) = caretaker_tests::Listening::read(&data_dir) {
            break l;
        }
        if start.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            bail!("the collector did not start within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    while !caretaker_tests::get_raw(listening.http, "/api/v1/health", None)
        .is_ok_and(|r| r.0 == 200)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let startup = start.elapsed();
    let rss = harness::status_bytes(child.id(), "VmHWM").unwrap_or(0);
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();

    let per_asset = bytes as f64 / opts.assets.max(1) as f64;
    if opts.json {
        println!(
            "{}",
            json!({"assets": opts.assets, "pcs": pcs, "days": opts.days, "records": records,
                   "write_secs": written.as_secs_f64(), "assets_secs": assets_done.as_secs_f64(),
                   "retention_pass_secs": retention_pass.as_secs_f64(), "retention_removed": removed,
                   "store_bytes": bytes, "bytes_per_asset": per_asset,
                   "startup_secs": startup.as_secs_f64(), "startup_rss_bytes": rss})
        );
    } else {
        println!(
            "A year of a school: {} assets ({pcs} PCs with agents), {} days",
            opts.assets, opts.days
        );
        println!(
            "  records written      {records} in {:.1} s",
            written.as_secs_f64()
        );
        println!(
            "  retention pass       {:.1} s ({removed} removed)",
            retention_pass.as_secs_f64()
        );
        println!(
            "  store on disk        {:.1} MiB ({:.0} KiB per asset)",
            harness::mib(bytes),
            per_asset / 1024.0
        );
        println!(
            "  collector start-up   {:.2} s until the API answers, peak RSS {:.0} MiB",
            startup.as_secs_f64(),
            harness::mib(rss)
        );
    }
    Ok(true)
}
