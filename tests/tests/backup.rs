//! Backups that restore (Service Continuity): a backup taken from the running collector under
//! ingest load from real agents and many played ones, restored into another data directory,
//! holds one consistent point in time: every asset, change, incident and sample the restored
//! collector shows is exactly what the original shows, nothing is missing in between, and the
//! real agents, switched to the restored collector, carry on without enrolling again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use caretaker_tests::v1::{self, EnrollRequest, Report, SubmitRequest, report};
use caretaker_tests::{AgentProcess, Collector, authed, bin, now_timestamp, wait_for};
use serde_json::Value;

const PLAYED: usize = 12;

fn collector_cli(args: &[&str]) -> Output {
    Command::new(bin("caretaker-collector"))
        .args(args)
        .output()
        .expect("run caretaker-collector")
}

fn inventory(seq: u64, n: usize, ram_gib: u64) -> Report {
    Report {
        seq,
        collected_at: Some(now_timestamp()),
        body: Some(report::Body::Inventory(v1::Inventory {
            system: Some(v1::System {
                hostname: format!("R12-PC{n:02}"),
                os_name: "Windows 11 Education".to_owned(),
                machine_id: format!("machine-{n}"),
                ..Default::default()
            }),
            hardware: Some(v1::Hardware {
                vendor: "Dell Inc.".to_owned(),
                model: "OptiPlex 7010".to_owned(),
                serial: format!("SN{n:04}"),
                smbios_uuid: format!("4c4c4544-0000-1000-8000-{n:012}"),
                ram_bytes: ram_gib << 30,
                ..Default::default()
            }),
            interfaces: vec![v1::NetworkInterface {
                name: "Ethernet".to_owned(),
                mac: format!("00:1a:2b:3c:4d:{n:02x}"),
                ipv4: vec![format!("198.18.0.{}/24", 10 + n)],
                ..Default::default()
            }],
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn status(seq: u64) -> Report {
    Report {
        seq,
        collected_at: Some(now_timestamp()),
        body: Some(report::Body::Status(v1::Status {
            uptime_secs: seq * 10,
            cpu_percent: (seq % 90) as f32,
            memory_total_bytes: 8 << 30,
            memory_used_bytes: 3 << 30,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Played agents: each enrols, sends an inventory, then status reports as fast as the
/// collector takes them, with an inventory change (more RAM) every 25 reports, until `stop`.
fn play_agents(collector: &Collector, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    let url = collector.url();
    let token = collector.enroll_token();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async move {
            let mut tasks = Vec::new();
            for n in 0..PLAYED {
                let (url, token, stop) = (url.clone(), token.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    let mut client = v1::agent_service_client::AgentServiceClient::connect(url)
                        .await
                        .expect("connect");
                    let enrolled = client
                        .enroll(EnrollRequest {
                            enroll_token: token,
                            hostname: format!("R12-PC{n:02}"),
                            ..Default::default()
                        })
                        .await
                        .expect("enrol")
                        .into_inner();
                    let mut seq = 1;
                    let mut sent = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let report = if seq == 1 || seq % 25 == 0 {
                            inventory(seq, n, 8 + seq / 25)
                        } else {
                            status(seq)
                        };
                        let request = SubmitRequest {
                            agent_id: enrolled.agent_id.clone(),
                            reports: vec![report],
                            ..Default::default()
                        };
                        // UNAVAILABLE while the snapshot holds the writer: send it again.
                        if client
                            .submit(authed(request, &enrolled.agent_secret))
                            .await
                            .is_ok()
                        {
                            seq += 1;
                            sent += 1;
                        } else {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                    sent
                }));
            }
            let mut total = 0;
            for task in tasks {
                total += task.await.expect("played agent");
            }
            total
        })
    })
}

fn by_id(list: &Value) -> BTreeMap<String, Value> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|v| (v["id"].as_str().expect("id").to_owned(), v.clone()))
        .collect()
}

/// Samples of one asset by sequence number.
fn samples(collector: &Collector, asset: &str) -> BTreeMap<u64, Value> {
    collector.get(&format!(
        "/capacity?asset={asset}&since=1970-01-01T00:00:00Z&limit=100000"
    ))["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| (s["seq"].as_u64().expect("seq"), s.clone()))
        .collect()
}

fn agent_id(state_dir: &Path) -> String {
    let text = std::fs::read_to_string(state_dir.join("identity.json")).expect("identity.json");
    let value: Value = serde_json::from_str(&text).expect("identity JSON");
    value["agent_id"].as_str().expect("agent_id").to_owned()
}

#[test]
fn a_backup_under_load_restores_elsewhere_and_agents_carry_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Every volume over 1 % used is "nearly full": the real agents open incidents.
    let rules = "[rules.disk_full]\npercent = 1\n[incidents]\nevaluate_every = \"1s\"\n";
    let mut original = Collector::start_with(&dir.path().join("a"), rules);
    let agent_dirs: Vec<_> = (0..2)
        .map(|i| dir.path().join(format!("agent{i}")))
        .collect();
    let fast = ["--status-interval", "1s", "--heartbeat-interval", "1s"];
    // The real agents dial the collector's own address (not the harness's proxy), as they
    // would the school server's name: the restored collector answers there too.
    let (url, token) = (original.direct_url(), original.enroll_token());
    let agents: Vec<AgentProcess> = agent_dirs
        .iter()
        .map(|d| {
            let state = d.display().to_string();
            let mut args = vec![
                "run",
                "--collector",
                &url,
                "--enroll-token",
                &token,
                "--state-dir",
                &state,
            ];
            args.extend(fast);
            caretaker_tests::agent_process(&args)
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let played = play_agents(&original, stop.clone());
    wait_for(Duration::from_secs(60), "assets and an incident", || {
        let assets = original.assets().len();
        let incidents = original.get("/incidents?status=all");
        (assets > PLAYED && !incidents.as_array()?.is_empty()).then_some(())
    });
    let ids_before: Vec<String> = agent_dirs.iter().map(|d| agent_id(d)).collect();

    // The backup, while all of them keep sending.
    let passphrase = dir.path().join("passphrase");
    std::fs::write(&passphrase, "correct horse battery staple\n").expect("passphrase");
    let file = dir.path().join("school.ctbk");
    let config = original.config.display().to_string();
    let pass = passphrase.display().to_string();
    let output = collector_cli(&[
        "backup",
        "--config",
        &config,
        "--to",
        &file.display().to_string(),
        "--passphrase-file",
        &pass,
    ]);
    assert!(
        output.status.success(),
        "backup failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        original.log()
    );
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let sent = played.join().expect("played agents");
    drop(agents);
    assert!(sent > 100, "the load was real: {sent} reports");

    // Bad restores first: a wrong passphrase, a damaged copy, an occupied directory.
    let restored_dir = dir.path().join("b");
    let target = restored_dir.join("data").display().to_string();
    let file_arg = file.display().to_string();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "tr0ub4dor").expect("wrong passphrase");
    let output = collector_cli(&[
        "restore",
        "--from",
        &file_arg,
        "--data-dir",
        &target,
        "--passphrase-file",
        &wrong.display().to_string(),
    ]);
    assert_eq!(output.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&output.stderr).contains("passphrase does not open"));
    let mut bytes = std::fs::read(&file).expect("read backup");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    let damaged = dir.path().join("damaged.ctbk");
    std::fs::write(&damaged, &bytes).expect("write");
    let output = collector_cli(&[
        "restore",
        "--from",
        &damaged.display().to_string(),
        "--data-dir",
        &target,
        "--passphrase-file",
        &pass,
    ]);
    assert_eq!(
        output.status.code(),
        Some(65),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("damaged"));
    assert!(
        !restored_dir.join("data").exists(),
        "a refused restore writes nothing"
    );
    let occupied = dir.path().join("occupied");
    std::fs::create_dir_all(&occupied).expect("mkdir");
    std::fs::write(occupied.join("notes.txt"), "keep me").expect("write");
    let output = collector_cli(&[
        "restore",
        "--from",
        &file_arg,
        "--data-dir",
        &occupied.display().to_string(),
        "--passphrase-file",
        &pass,
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("is not empty"));
    assert_eq!(
        std::fs::read_to_string(occupied.join("notes.txt")).expect("read"),
        "keep me"
    );

    // What the original holds once the load has stopped; then its server "dies".
    let a_assets = by_id(&original.get("/assets"));
    let a_changes = by_id(&original.get("/changes?limit=100000"));
    let a_incidents = by_id(&original.get("/incidents?status=all"));
    let a_samples: BTreeMap<String, BTreeMap<u64, Value>> = a_assets
        .keys()
        .map(|id| (id.clone(), samples(&original, id)))
        .collect();
    let (grpc, http) = (original.grpc, original.http);
    let (api_token, enroll_token) = (original.api_token(), original.enroll_token());
    original.stop();

    let output = collector_cli(&[
        "restore",
        "--from",
        &file_arg,
        "--data-dir",
        &target,
        "--passphrase-file",
        &pass,
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The replacement server answers at the old address, as the school's DNS name would.
    // What it detects from here on (its first evaluation may open incidents the original
    // opened only after the snapshot) is its own; what it restored must be the original's.
    let restored_at = time::OffsetDateTime::now_utc();
    let mut restored = Collector::start_at(&restored_dir, rules, grpc, http);
    assert_eq!(restored.api_token(), api_token, "tokens come back");
    assert_eq!(restored.enroll_token(), enroll_token);

    // Every asset, change, incident and sample of the restored collector is the original's.
    let b_assets = by_id(&restored.get("/assets"));
    assert_eq!(
        a_assets.keys().collect::<Vec<_>>(),
        b_assets.keys().collect::<Vec<_>>(),
        "the same assets"
    );
    let b_changes = by_id(&restored.get("/changes?limit=100000"));
    assert!(
        b_changes.len() > PLAYED,
        "changes were restored: {}",
        b_changes.len()
    );
    for (id, change) in &b_changes {
        assert_eq!(a_changes.get(id), Some(change), "change {id}");
    }
    let b_incidents = by_id(&restored.get("/incidents?status=all"));
    assert!(!b_incidents.is_empty());
    let opened_before_restore = |incident: &Value| {
        incident["opened_at"]
            .as_str()
            .and_then(|t| {
                time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
            })
            .is_some_and(|t| t < restored_at)
    };
    for (id, incident) in b_incidents
        .iter()
        .filter(|(_, incident)| opened_before_restore(incident))
    {
        let a = a_incidents.get(id).unwrap_or_else(|| {
            panic!("incident {id} {incident:#} not in the original: {a_incidents:#?}")
        });
        for field in ["number", "asset_id", "rule", "opened_at", "impact"] {
            assert_eq!(a[field], incident[field], "incident {id} {field}");
        }
    }
    let mut restored_samples = 0;
    for (id, asset) in &b_assets {
        let (a, b) = (&a_samples[id], samples(&restored, id));
        restored_samples += b.len();
        for (seq, sample) in &b {
            assert_eq!(a.get(seq), Some(sample), "asset {id} sample {seq}");
        }
        if asset["hostname"]
            .as_str()
            .is_some_and(|h| h.starts_with("R12-PC"))
        {
            // One played agent per asset: one point in time means no hole before the last
            // sample the backup holds.
            let last = b.keys().next_back().copied().unwrap_or(0);
            let expected: BTreeSet<u64> = a.keys().copied().filter(|s| *s <= last).collect();
            assert_eq!(
                b.keys().copied().collect::<BTreeSet<_>>(),
                expected,
                "asset {id}"
            );
        }
        for field in ["id", "kind", "hostname", "macs", "serial", "first_seen"] {
            assert_eq!(a_assets[id][field], asset[field], "asset {id} {field}");
        }
    }
    assert!(
        restored_samples > 50,
        "samples were restored: {restored_samples}"
    );

    // The real agents, pointed at the restored collector with an enrolment token that would
    // not work, carry on: same identity, no new asset, new samples arrive.
    let machine = b_assets
        .values()
        .find(|a| !a["hostname"].as_str().unwrap_or("").starts_with("R12-PC"))
        .expect("this machine's asset")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let before = samples(&restored, &machine).len();
    let url = restored.direct_url();
    let switched: Vec<_> = agent_dirs
        .iter()
        .map(|d| {
            caretaker_tests::agent_process(&[
                "run",
                "--collector",
                &url,
                "--enroll-token",
                "not-the-token",
                "--state-dir",
                &d.display().to_string(),
                "--status-interval",
                "1s",
            ])
        })
        .collect();
    wait_for(
        Duration::from_secs(60),
        "reports at the restored collector",
        || (samples(&restored, &machine).len() > before + 2).then_some(()),
    );
    drop(switched);
    let ids_after: Vec<String> = agent_dirs.iter().map(|d| agent_id(d)).collect();
    assert_eq!(ids_before, ids_after, "the agents kept their identity");
    assert_eq!(restored.assets().len(), b_assets.len(), "no new asset");
    assert!(
        !restored.log().contains("Agent enrolled"),
        "nobody enrolled again:\n{}",
        restored.log()
    );
    restored.stop();
}

#[test]
fn the_daily_backup_is_written_at_start_encrypted_and_restores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let passphrase = dir.path().join("passphrase");
    std::fs::write(&passphrase, "daily secret\n").expect("passphrase");
    let extra = format!(
        "[backup]\nevery = \"1h\"\nkeep = 2\npassphrase_file = {:?}\n",
        passphrase.display().to_string()
    );
    let collector = Collector::start_with(&dir.path().join("c"), &extra);
    let backups = dir.path().join("c/data/backups");
    let file = wait_for(Duration::from_secs(30), "the first daily backup", || {
        std::fs::read_dir(&backups)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("caretaker-") && n.ends_with(".ctbk"))
            })
    });
    let target = dir.path().join("restored");
    let output = collector_cli(&[
        "restore",
        "--from",
        &file.display().to_string(),
        "--data-dir",
        &target.display().to_string(),
        "--passphrase-file",
        &passphrase.display().to_string(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(target.join("api-token"))
            .expect("token")
            .trim(),
        collector.api_token()
    );
    assert!(target.join("store").is_dir());
    assert!(
        !target.join("backups").exists(),
        "backups are not inside backups"
    );
    assert!(collector.log().contains("Daily backup written"));
}
