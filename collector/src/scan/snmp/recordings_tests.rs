//! Integration tests: the real `snmpsimd` (Debian package `snmpsim`) serving the shared
//! recordings on 127.0.0.1, and a misbehaving fake agent for the walk bounds. Expected values
//! are read from the recordings themselves (see `../shared/snmp-recordings/README.md`).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::classify::tests::recordings_dir;
use super::fake_agent::{self, Request, encode_response};
use super::value::Val;
use super::*;
use crate::model::AssetKind;

const SNMPSIMD: &str = "/usr/bin/snmpsimd";

/// A running snmpsimd, killed on drop (also when a test panics).
struct Simulator {
    child: Child,
    addr: SocketAddr,
    _data: tempfile::TempDir,
    _cache: tempfile::TempDir,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chmod_world(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Copies the recordings (the Windows one with its masked `xx` OID arcs replaced by 0, as the
/// README explains) into a temp dir nobody can read, and starts snmpsimd on a free port.
async fn start_simulator() -> Simulator {
    assert!(
        std::path::Path::new(SNMPSIMD).exists(),
        "{SNMPSIMD} is missing: apt-get install snmpsim"
    );
    let src = recordings_dir();
    let data = tempfile::tempdir().expect("temp data dir");
    let cache = tempfile::tempdir().expect("temp cache dir");
    let mut copied = 0;
    for entry in std::fs::read_dir(&src).expect("read recordings") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("snmprec") {
            continue;
        }
        let name = path.file_name().expect("file name").to_owned();
        let mut body = std::fs::read_to_string(&path).expect("read recording");
        if name.to_string_lossy().starts_with("microsoft_windows") {
            body = fix_masked_arcs(&body);
        }
        let dest = data.path().join(&name);
        std::fs::write(&dest, body).expect("write recording copy");
        chmod_world(&dest, 0o644);
        copied += 1;
    }
    assert_eq!(
        copied,
        20,
        "expected the 20 recordings in {}",
        src.display()
    );
    chmod_world(data.path(), 0o755);
    chmod_world(cache.path(), 0o777);
    let mut cmd = Command::new(SNMPSIMD);
    cmd.arg(format!("--data-dir={}", data.path().display()))
        // Port 0; snmpsimd logs only the endpoint it was given, so the port comes from /proc.
        .arg("--agent-udpv4-endpoint=127.0.0.1:0")
        .arg(format!("--cache-dir={}", cache.path().display()))
        .arg("--logging-method=null")
        // The default USM user (MD5 + DES), plus an auth-only SHA-1 user and a SHA-256 + AES user.
        .args([
            "--v3-user=simulator",
            "--v3-auth-key=auctoritas",
            "--v3-priv-key=privatus",
        ])
        .args([
            "--v3-user=authonly",
            "--v3-auth-key=auctoritas2",
            "--v3-auth-proto=SHA",
        ])
        .args([
            "--v3-user=modern",
            "--v3-auth-key=auctoritas3",
            "--v3-auth-proto=SHA256",
        ])
        .args(["--v3-priv-key=privatus3", "--v3-priv-proto=AES"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if is_root() {
        cmd.arg("--process-user=nobody")
            .arg("--process-group=nogroup");
    }
    let mut child = cmd.spawn().expect("start snmpsimd");
    let started = std::time::Instant::now();
    let port = loop {
        if let Some(&port) = caretaker_tests::bound_ports(child.id(), "udp").first() {
            break port;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("snmpsimd exited with {status} before it bound its port");
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "snmpsimd bound no UDP port within 120 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let sim = Simulator {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _data: data,
        _cache: cache,
    };
    // Wait until it answers (it indexes every file on first start).
    let cred = [Credential::V2c {
        community: "lexmark_t640".into(),
    }];
    let limits = Limits {
        timeout: Duration::from_millis(500),
        retries: 0,
        ..Limits::default()
    };
    for _ in 0..120 {
        if probe(sim.addr, &cred, &limits).await.is_ok() {
            return sim;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("snmpsimd did not answer on {} within 60 s", sim.addr);
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// `1.3.6.1.2.1.4.20.1.2.10.xx.xx.100` → `...10.0.0.100` (whole `xx` arcs only).
fn fix_masked_arcs(body: &str) -> String {
    body.lines()
        .map(|line| match line.split_once('|') {
            Some((oid, rest)) => {
                let fixed: Vec<&str> = oid
                    .split('.')
                    .map(|a| if a == "xx" { "0" } else { a })
                    .collect();
                format!("{}|{rest}\n", fixed.join("."))
            }
            None => format!("{line}\n"),
        })
        .collect()
}

/// Lines of a recording as `(oid, type, value)`.
fn records(name: &str) -> Vec<(String, String, String)> {
    let body = std::fs::read_to_string(recordings_dir().join(format!("{name}.snmprec")))
        .expect("read recording");
    body.lines()
        .filter_map(|l| {
            let mut p = l.splitn(3, '|');
            Some((
                p.next()?.to_owned(),
                p.next()?.to_owned(),
                p.next()?.to_owned(),
            ))
        })
        .collect()
}

/// Distinct ifIndex values in ifTable/ifXTable rows of a recording.
fn interface_count(name: &str) -> usize {
    let mut set = BTreeSet::new();
    for (oid, _, _) in records(name) {
        for prefix in ["1.3.6.1.2.1.2.2.1.", "1.3.6.1.2.1.31.1.1.1."] {
            if let Some(rest) = oid.strip_prefix(prefix)
                && let Some((_col, idx)) = rest.split_once('.')
            {
                set.insert(idx.to_owned());
            }
        }
    }
    set.len()
}

fn count_prefix(name: &str, prefix: &str) -> usize {
    records(name)
        .iter()
        .filter(|(o, _, _)| o.starts_with(prefix))
        .count()
}

fn v2c(community: &str) -> Credential {
    Credential::V2c {
        community: community.into(),
    }
}

async fn inventory_of(sim: &Simulator, community: &str) -> SnmpSnapshot {
    let d = inventory(sim.addr, &v2c(community), &Limits::default())
        .await
        .unwrap_or_else(|e| panic!("{community}: {e}"));
    assert!(
        !d.gaps.iter().any(|g| g.reason == GapReason::Timeout),
        "{community}: {:?}",
        d.notes
    );
    d
}

fn supply<'a>(d: &'a SnmpSnapshot, prefix: &str) -> &'a Supply {
    d.supplies
        .iter()
        .find(|s| s.description.starts_with(prefix))
        .unwrap_or_else(|| panic!("no supply {prefix:?}: {:?}", d.supplies))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snmpsim_recordings() {
    let sim = start_simulator().await;

    // Printers: kinds, models, toner percents and page counts from the README tables.
    let hp = inventory_of(&sim, "hp_laserjet-mfp-m130nw").await;
    assert_eq!(hp.kind, AssetKind::Printer);
    assert_eq!(
        (hp.vendor.as_str(), hp.model.as_str(), hp.serial.as_str()),
        ("HP", "LaserJet MFP M130nw", "VNCRC48198")
    );
    assert_eq!(hp.page_count, Some(15232));
    let black = supply(&hp, "Black Cartridge");
    assert_eq!(
        (black.kind.as_str(), black.colour.as_str(), black.percent),
        ("toner", "black", Some(28.0))
    );
    assert_eq!(
        (
            supply(&hp, "Imaging Drum").kind.as_str(),
            supply(&hp, "Imaging Drum").percent
        ),
        ("drum", Some(71.0))
    );
    assert_eq!(
        hp.interfaces.len(),
        interface_count("hp_laserjet-mfp-m130nw")
    );

    let ricoh = inventory_of(&sim, "ricoh_aficio-mp-c3002").await;
    assert_eq!(ricoh.page_count, Some(271_871));
    assert_eq!(supply(&ricoh, "Cyan Toner").percent, Some(20.0));
    assert_eq!(supply(&ricoh, "Waste Toner").kind, "waste-toner");
    assert_eq!(ricoh.model, "Aficio MP C3002");

    let xerox = inventory_of(&sim, "xerox_altalink-c8045").await;
    assert_eq!(xerox.kind, AssetKind::Printer);
    assert_eq!(supply(&xerox, "Black Toner").percent, Some(20.0)); // 1060 / 5300
    assert_eq!(xerox.supplies.len(), 12);
    assert_eq!(xerox.page_count, None);

    let brother = inventory_of(&sim, "brother_hl-5370dw").await;
    assert_eq!(
        (brother.model.as_str(), brother.page_count),
        ("HL-5370DW", Some(7792))
    );
    let toners: Vec<&Supply> = brother
        .supplies
        .iter()
        .filter(|s| s.description == "Black Toner Cartridge")
        .collect();
    assert_eq!(toners.len(), 2);
    assert!(
        toners.iter().all(|s| s.percent.is_none()),
        "max -2 gives no percent: {toners:?}"
    );
    assert!(toners.iter().any(|s| s.state == SupplyState::SomeRemaining));
    assert_eq!(
        supply(&brother, "Drum Unit").percent.map(f32::round),
        Some(69.0)
    ); // 17208 / 25000

    let sharp = inventory_of(&sim, "sharp_mx-m266nv").await;
    assert_eq!(sharp.page_count, Some(90_474));
    assert_eq!(supply(&sharp, "Black Toner").percent, Some(75.0));
    assert_eq!(supply(&sharp, "Waste Toner").percent, None);

    let kyocera = inventory_of(&sim, "kyocera_fs-1028mfp").await;
    assert_eq!(
        (kyocera.kind, kyocera.model.as_str()),
        (AssetKind::Printer, "FS-1028MFP")
    );

    // The big switch: model from ENTITY-MIB, LLDP and FDB rows; timed (printed, not asserted).
    let started = std::time::Instant::now();
    let procurve = inventory_of(&sim, "hp_procurve-stack-5406r-3810m").await;
    let elapsed = started.elapsed();
    eprintln!("inventory of hp_procurve-stack-5406r-3810m took {elapsed:?} (target ≤ 1 s)");
    assert_eq!(procurve.kind, AssetKind::Switch);
    assert_eq!(
        (procurve.model.as_str(), procurve.firmware.as_str()),
        ("JL074A", "KB.16.11.0020")
    );
    assert_eq!(
        procurve.interfaces.len(),
        interface_count("hp_procurve-stack-5406r-3810m")
    );
    assert_eq!(
        procurve.entities.len(),
        count_prefix("hp_procurve-stack-5406r-3810m", "1.3.6.1.2.1.47.1.1.1.1.2.")
    );
    assert_eq!(procurve.lldp.len(), 7);
    assert_eq!(
        procurve
            .lldp
            .iter()
            .filter(|n| n.sys_name == "axis")
            .count(),
        3
    );
    let fdb_rows = count_prefix(
        "hp_procurve-stack-5406r-3810m",
        "1.3.6.1.2.1.17.7.1.2.2.1.2.",
    );
    assert_eq!(procurve.fdb.len(), fdb_rows);
    assert!(procurve.fdb.iter().any(|e| e.if_index.is_some()));

    let cisco = inventory_of(&sim, "cisco_cbs250-24p-4x").await;
    assert_eq!(
        (cisco.kind, cisco.model.as_str()),
        (AssetKind::Switch, "CBS250-24P-4X")
    );
    assert!(
        cisco.notes.iter().any(|n| n == "sysName missing"),
        "{:?}",
        cisco.notes
    );
    assert_eq!(
        cisco.fdb.len(),
        count_prefix("cisco_cbs250-24p-4x", "1.3.6.1.2.1.17.7.1.2.2.1.2.")
    );

    let dlink = inventory_of(&sim, "dlink_dgs-1510-28").await;
    assert_eq!(
        (dlink.kind, dlink.model.as_str(), dlink.serial.as_str()),
        (AssetKind::Switch, "DGS-1510-28", "RZC52H3000029")
    );
    assert_eq!(dlink.lldp.len(), 2);

    // Access points.
    let unifi = inventory_of(&sim, "ubiquiti_unifi-uap-nanohd").await;
    assert_eq!(
        (unifi.kind, unifi.vendor.as_str(), unifi.model.as_str()),
        (AssetKind::AccessPoint, "Ubiquiti", "UAP-nanoHD")
    );
    assert_eq!(
        unifi.interfaces.len(),
        interface_count("ubiquiti_unifi-uap-nanohd")
    );
    let ruckus = inventory_of(&sim, "ruckus_r850-unleashed").await;
    assert_eq!(
        (ruckus.kind, ruckus.model.as_str(), ruckus.firmware.as_str()),
        (AssetKind::AccessPoint, "R850", "200.14.6.1 build 203")
    );
    let aruba = inventory_of(&sim, "aruba_iap-225-instant").await;
    assert_eq!(aruba.kind, AssetKind::AccessPoint);

    // UPS (PowerNet only).
    let apc = inventory_of(&sim, "apc_smart-ups-1500-rm").await;
    assert_eq!(apc.kind, AssetKind::Ups);
    let ups = apc.ups.as_ref().expect("UPS status");
    assert_eq!(ups.model, "Smart-UPS 1500 RM");
    assert!(!ups.on_battery && !ups.replace_battery);
    assert_eq!(ups.runtime_secs, Some(66 * 60));
    assert_eq!(ups.charge_percent, Some(100.0));
    assert_eq!(
        (ups.input_voltage, ups.load_percent, ups.temperature_c),
        (Some(239.0), Some(16.9), Some(26.1))
    );

    // NAS and servers.
    let nas = inventory_of(&sim, "synology_rs2212rp").await;
    assert_eq!(
        (nas.kind, nas.model.as_str(), nas.serial.as_str()),
        (AssetKind::Nas, "RS2212RP+", "3005AWL999111")
    );
    assert_eq!(nas.firmware, "DSM 6.1-15217");
    assert!(!nas.storage.is_empty());

    let win = inventory_of(&sim, "microsoft_windows-server-2019").await;
    assert_eq!(
        (win.kind, win.vendor.as_str()),
        (AssetKind::Server, "Microsoft")
    );
    assert_eq!(win.interfaces.len(), 24);
    assert_eq!(win.processor_loads.len(), 4);
    assert!(
        win.storage
            .iter()
            .any(|s| s.descr.starts_with("C:\\") && s.kind == "disk" && s.size_bytes.is_some())
    );

    let linux = inventory_of(&sim, "linux_el8-server").await;
    assert_eq!(linux.kind, AssetKind::Server);
    assert_eq!(linux.processor_loads.len(), 24);
    assert_eq!(
        linux.software.len(),
        count_prefix("linux_el8-server", "1.3.6.1.2.1.25.6.3.1.2.")
    );

    let epson = inventory_of(&sim, "epson_eb-4770w-projector").await;
    assert_eq!(
        (epson.kind, epson.vendor.as_str()),
        (AssetKind::Projector, "Epson")
    );

    // SNMPv1 (GETNEXT walks, noSuchName handling) gives the same printer.
    let v1 = Credential::V1 {
        community: "ricoh_aficio-mp-c3002".into(),
    };
    let ricoh1 = inventory(sim.addr, &v1, &Limits::default())
        .await
        .expect("v1 inventory");
    assert_eq!(
        (ricoh1.kind, ricoh1.page_count),
        (AssetKind::Printer, Some(271_871))
    );
    assert_eq!(ricoh1.supplies, ricoh.supplies);
    assert_eq!(ricoh1.interfaces.len(), ricoh.interfaces.len());

    // Credentials are tried in order: a wrong community first, then the right one.
    // Short, but not so short that a loaded machine (SNMPv3 engine discovery + DES on two
    // busy cores) misses the answer.
    let quick = Limits {
        timeout: Duration::from_millis(1500),
        retries: 1,
        ..Limits::default()
    };
    let creds = [v2c("not-a-community"), v2c("hp_laserjet-mfp-m130nw")];
    let (index, system) = probe(sim.addr, &creds, &quick)
        .await
        .expect("second credential answers");
    assert_eq!(index, 1);
    assert!(system.descr.contains("PID:HP LaserJet MFP M130nw"));
    assert!(matches!(
        probe(sim.addr, &creds[..1], &quick).await,
        Err(SnmpError::NoCredential)
    ));

    // SNMPv3: USM user "simulator", MD5 + DES, context = recording name.
    let v3 = |context: &str, privacy: bool| Credential::V3 {
        user: "simulator".into(),
        auth: Some((AuthProtocol::Md5, "auctoritas".into())),
        privacy: privacy.then(|| (PrivProtocol::Des, "privatus".into())),
        context: context.into(),
    };
    let (index, system) = probe(
        sim.addr,
        &[v2c("wrong"), v3("synology_rs2212rp", true)],
        &quick,
    )
    .await
    .expect("v3 authPriv");
    assert_eq!(index, 1);
    assert!(system.descr.starts_with("Linux"));
    let nas3 = inventory(sim.addr, &v3("synology_rs2212rp", true), &Limits::default())
        .await
        .expect("v3 inventory");
    assert_eq!(
        (nas3.kind, nas3.model.as_str()),
        (AssetKind::Nas, "RS2212RP+")
    );
    assert_eq!(nas3.interfaces.len(), nas.interfaces.len());
    let auth_only = Credential::V3 {
        user: "authonly".into(),
        auth: Some((AuthProtocol::Sha1, "auctoritas2".into())),
        privacy: None,
        context: "apc_smart-ups-1500-rm".into(),
    };
    let (_, apc3) = probe(sim.addr, &[auth_only], &quick)
        .await
        .expect("v3 authNoPriv SHA-1");
    assert_eq!(apc3.object_id, "1.3.6.1.4.1.318.1.3.2.7");
    let modern = Credential::V3 {
        user: "modern".into(),
        auth: Some((AuthProtocol::Sha256, "auctoritas3".into())),
        privacy: Some((PrivProtocol::Aes128, "privatus3".into())),
        context: "apc_smart-ups-1500-rm".into(),
    };
    let apc3 = inventory(sim.addr, &modern, &Limits::default())
        .await
        .expect("v3 SHA-256 + AES-128 inventory");
    assert_eq!(
        apc3.ups.map(|u| u.model).as_deref(),
        Some("Smart-UPS 1500 RM")
    );
    // The default user is authPriv only: asking it for authNoPriv is refused, not answered.
    assert!(
        probe(sim.addr, &[v3("apc_smart-ups-1500-rm", false)], &quick)
            .await
            .is_err()
    );
    let bad = Credential::V3 {
        user: "simulator".into(),
        auth: Some((AuthProtocol::Md5, "wrong-passphrase".into())),
        privacy: None,
        context: "apc_smart-ups-1500-rm".into(),
    };
    assert!(probe(sim.addr, &[bad], &quick).await.is_err());
}

/// Benchmark, not a test: `cargo test -p caretaker-collector --lib -- --ignored --nocapture bench_`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; prints timings"]
async fn bench_big_switch_inventory() {
    let sim = start_simulator().await;
    for reps in [10, 25, 50, 100] {
        let limits = Limits {
            max_repetitions: reps,
            ..Limits::default()
        };
        let started = std::time::Instant::now();
        let d = inventory(sim.addr, &v2c("hp_procurve-stack-5406r-3810m"), &limits)
            .await
            .expect("inventory");
        eprintln!(
            "max_repetitions={reps}: {:?}, {} interfaces, {} entities, {} fdb, {} lldp",
            started.elapsed(),
            d.interfaces.len(),
            d.entities.len(),
            d.fdb.len(),
            d.lldp.len()
        );
    }
}

// ---- a hostile agent ---------------------------------------------------------------------

fn fast_limits() -> Limits {
    Limits {
        timeout: Duration::from_millis(200),
        retries: 1,
        walk_deadline: Duration::from_secs(2),
        device_deadline: Duration::from_secs(5),
        max_rows: 500,
        ..Limits::default()
    }
}

/// Answers GETs with a plausible system group, and every GETNEXT/GETBULK with `walk(req)`.
fn agent(
    walk: impl Fn(&Request) -> Vec<(Vec<u64>, Val)> + Send + Sync + 'static,
) -> fake_agent::Behaviour {
    Box::new(move |req: &Request| {
        let vbs = if req.kind == snmp2::MessageType::GetRequest {
            req.oids
                .iter()
                .map(|o| {
                    let v = match o.as_slice() {
                        [1, 3, 6, 1, 2, 1, 1, 1, 0] => Val::Str(b"Hostile switch".to_vec()),
                        [1, 3, 6, 1, 2, 1, 1, 2, 0] => Val::Oid(vec![1, 3, 6, 1, 4, 1, 171, 1]),
                        [1, 3, 6, 1, 2, 1, 1, 5, 0] => Val::Int(42), // wrong type for sysName
                        _ => Val::NoSuchObject,
                    };
                    (o.clone(), v)
                })
                .collect()
        } else {
            walk(req)
        };
        Some(encode_response(&req.community, req.req_id, 0, &vbs))
    })
}

#[tokio::test]
async fn hostile_agent_repeating_oids_cannot_hang_a_walk() {
    // Every GETNEXT/GETBULK answer repeats the requested OID (+ .1 once): never increasing.
    let addr = fake_agent::spawn(agent(|req| {
        req.oids
            .iter()
            .map(|o| ([o.as_slice(), &[1]].concat(), Val::Int(1)))
            .collect()
    }))
    .await;
    let started = std::time::Instant::now();
    let d = inventory(addr, &v2c("x"), &fast_limits())
        .await
        .expect("inventory");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(d.system.descr, "Hostile switch");
    assert_eq!(d.system.name, "", "an INTEGER sysName is not a name");
    assert!(
        d.notes.iter().any(|n| n == "sysName missing"),
        "{:?}",
        d.notes
    );
}

#[tokio::test]
async fn hostile_agent_endless_table_is_cut_at_max_rows() {
    // Each answer continues the table one step further, forever.
    let addr = fake_agent::spawn(agent(|req| {
        req.oids
            .iter()
            .map(|o| {
                let mut next = o.clone();
                if next.len() <= 11 {
                    next.push(1);
                } else if let Some(last) = next.last_mut() {
                    *last += 1;
                }
                (next, Val::Str(vec![b'x'; 100]))
            })
            .collect()
    }))
    .await;
    let d = inventory(addr, &v2c("x"), &fast_limits())
        .await
        .expect("inventory");
    assert!(d.interfaces.len() <= 500, "{}", d.interfaces.len());
    assert!(
        d.notes
            .iter()
            .any(|n| n.contains("walk stopped at 500 rows")),
        "{:?}",
        d.notes
    );
}

#[tokio::test]
async fn refused_batch_get_falls_back_to_single_gets() {
    // tooBig for any GET of more than one name; single GETs answered.
    let addr = fake_agent::spawn(Box::new(|req: &Request| {
        if req.kind == snmp2::MessageType::GetRequest && req.oids.len() > 1 {
            return Some(encode_response(&req.community, req.req_id, 1, &[]));
        }
        agent(|_| Vec::new())(req)
    }))
    .await;
    let (index, system) = probe(addr, &[v2c("x")], &fast_limits())
        .await
        .expect("probe");
    assert_eq!((index, system.descr.as_str()), (0, "Hostile switch"));
    assert_eq!(system.object_id, "1.3.6.1.4.1.171.1");
}

#[tokio::test]
async fn silent_and_garbage_agents_time_out() {
    let silent = fake_agent::spawn(Box::new(|_req: &Request| None)).await;
    let started = std::time::Instant::now();
    let r = probe(silent, &[v2c("a"), v2c("b")], &fast_limits()).await;
    assert!(matches!(r, Err(SnmpError::NoCredential)), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );

    let calls = Arc::new(AtomicU64::new(0));
    let seen = calls.clone();
    let garbage = fake_agent::spawn(Box::new(move |req: &Request| {
        let n = seen.fetch_add(1, Ordering::Relaxed);
        let good = encode_response(&req.community, req.req_id, 0, &[]);
        // Truncated, then pure noise.
        Some(if n.is_multiple_of(2) {
            good[..good.len() / 2].to_vec()
        } else {
            vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x02]
        })
    }))
    .await;
    let r = inventory(garbage, &v2c("x"), &fast_limits()).await;
    assert!(r.is_err(), "{r:?}");
    assert!(calls.load(Ordering::Relaxed) >= 1);
}
