//! `discovery`: the collector's sweeps and SNMP inventory side by side with `nmap -sn`,
//! `fping` and `snmpbulkwalk`, in throw-away network-namespace labs (`caretaker_tests::lab`).
//!
//! 1. A /22 LAN with 300 live hosts: 20 consecutive plain sweeps of ours (each must find
//!    exactly nmap's hosts; target ≤ 0.7× nmap's median) and 3 `scan --snmp` (≤ 1.5× nmap) vs
//!    `nmap -sn -n`, `arp-scan` and `fping -a -g` (3 each, the scanner's ARP cache flushed
//!    before every run); every tool must find the same hosts.
//! 2. A routed /16 with 2,000 live addresses behind a router namespace: ours (time, CPU, peak
//!    RSS from `/usr/bin/time -v`) vs nmap `-T4` and fping `-i 1`, measured over the whole /16
//!    or, with `--skip-slow`, extrapolated from 4 random /24s of it.
//! 3. SNMP: full inventory of the largest switch recording (vs one `snmpbulkwalk` of the whole
//!    MIB), and 100 snmpsim devices of 5 recordings in one scan.
//!
//! Safety: every probe runs inside the lab's scanner namespace (`Lab::scanner_cmd`), whose only
//! link goes to the lab; every address is in 198.18.0.0/15. Nothing is sent from the host.
//! Exit status: errors (missing tool, failing command, hosts not found) fail the run; a missed
//! target does not.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use caretaker_tests::lab::{self, Lab};
use rand::seq::IndexedRandom;
use serde_json::{Value, json};

pub struct Options {
    pub collector_bin: PathBuf,
    pub json: bool,
    /// Extrapolate nmap and fping over the /16 from 4 random /24s instead of measuring them.
    pub skip_slow: bool,
}

/// Runs of each tool for the medians.
const RUNS: usize = 3;
/// Consecutive plain sweeps of ours on the /22, each of which must find exactly nmap's hosts.
const LAN_SWEEPS: usize = 20;
const TIME: &str = "/usr/bin/time";
const ROUTED: &str = "198.19.0.0/16";
/// Addresses `nmap` / `fping -g` probe in the routed /16.
const ROUTED_NMAP_ADDRS: f64 = 65_536.0;
const ROUTED_HOST_ADDRS: f64 = 65_534.0;
const SWITCH: &str = "hp_procurve-stack-5406r-3810m";
/// The 100-device mix: recording and the kind the collector must report.
const MIX: [(&str, &str); 5] = [
    ("hp_laserjet-mfp-m130nw", "printer"),
    ("brother_hl-5370dw", "printer"),
    ("dlink_dgs-1510-28", "switch"),
    ("ubiquiti_unifi-uap-nanohd", "access-point"),
    ("apc_smart-ups-1500-rm", "ups"),
];
/// Sweep flags for every run of ours: no reverse DNS (the lab has no resolver), no TCP probes.
const QUIET: [&str; 4] = ["--json", "--no-dns", "--ports", ""];

/// Runs the benchmark; `Ok(false)` when there were errors (already printed).
pub fn run(options: &Options) -> Result<bool> {
    ensure!(
        Path::new(TIME).is_file(),
        "{TIME} is missing (Debian package `time`): it measures the collector's CPU and peak RSS"
    );
    lab::require(&["ip", "nmap", "fping", "snmpbulkwalk", "snmpsimd", "snmpget"])?;
    let mut report = Report {
        json: options.json,
        ..Report::default()
    };
    report.say(format!(
        "caretaker-bench discovery: {} (2 cores here; labs in 198.18.0.0/15)",
        options.collector_bin.display()
    ));
    type Section = fn(&Options, &mut Report) -> Result<()>;
    let sections: [(&str, Section); 4] = [
        ("/22 sweep", lan_sweep),
        ("routed /16 sweep", routed_sweep),
        ("SNMP switch inventory", snmp_switch),
        ("SNMP 100 devices", snmp_fleet),
    ];
    for (name, section) in sections {
        report.say(format!("\n== {name} =="));
        if let Err(error) = section(options, &mut report) {
            report.error(format!("{name}: {error:#}"));
        }
    }
    report.finish();
    Ok(report.errors.is_empty())
}

// --- sections ---

fn lan_sweep(o: &Options, r: &mut Report) -> Result<()> {
    let mut lab = Lab::new()?;
    lab.add_hosts(300)?;
    let cidr = lab.lan().to_string();
    let expected: BTreeSet<Ipv4Addr> = lab
        .hosts()
        .iter()
        .map(|h| h.ip)
        .chain(lab.infra_addrs().iter().copied())
        .collect();
    r.say(format!(
        "{cidr}: {} live ({} hosts + lab infra {:?}); ARP cache flushed before every run",
        expected.len(),
        lab.hosts().len(),
        lab.infra_addrs()
    ));
    // nmap first: what it finds is what every sweep of ours must find, no more, no less.
    let mut nmap = Vec::new();
    for i in 1..=RUNS {
        flush_neighbours(&lab)?;
        let (took, found) = watch_table(r, &format!("nmap #{i}"), || {
            lab::nmap_sn(&lab, &[&cidr], &[])
        })?;
        r.compare(&format!("nmap #{i}"), &expected, &found);
        r.say(format!(
            "  nmap  #{i}: {:.3} s, {} found",
            took.as_secs_f64(),
            found.len()
        ));
        nmap.push(took);
    }
    // `scan` and arp-scan leave out the scanning machine's own address; nmap lists it.
    let mut ours_expected = expected.clone();
    ours_expected.remove(&lab::SCANNER_IP);
    let mut ours = Vec::new();
    let mut exact = 0;
    for i in 1..=LAN_SWEEPS {
        flush_neighbours(&lab)?;
        let run = watch_table(r, &format!("ours #{i}"), || {
            run_ours(&lab, &o.collector_bin, &[&cidr, "--timeout", "1s"], &QUIET)
        })?;
        exact += usize::from(run.ips() == ours_expected);
        r.compare(&format!("ours #{i}"), &ours_expected, &run.ips());
        r.say(format!(
            "  ours  #{i}: {:.3} s, {} found, cpu {:.2} s, rss {:.1} MiB",
            run.wall.as_secs_f64(),
            run.hosts.len(),
            run.cpu_s(),
            run.rss_mib()
        ));
        r.stderr_note("ours", &run.stderr);
        ours.push(run.wall);
    }
    r.say(format!(
        "  ours: {exact} of {LAN_SWEEPS} consecutive sweeps found exactly nmap's hosts"
    ));
    let mut snmp = Vec::new();
    for i in 1..=RUNS {
        flush_neighbours(&lab)?;
        let run = watch_table(r, &format!("ours --snmp #{i}"), || {
            run_ours(&lab, &o.collector_bin, &[&cidr, "--snmp"], &QUIET)
        })?;
        r.compare(&format!("ours --snmp #{i}"), &ours_expected, &run.ips());
        r.say(format!(
            "  ours --snmp #{i}: {:.3} s, {} found (none answers SNMP), cpu {:.2} s",
            run.wall.as_secs_f64(),
            run.hosts.len(),
            run.cpu_s()
        ));
        r.stderr_note("ours --snmp", &run.stderr);
        snmp.push(run.wall);
    }
    let mut arp_scan = Vec::new();
    for i in 1..=RUNS {
        flush_neighbours(&lab)?;
        let (took, found) =
            watch_table(r, &format!("arp-scan #{i}"), || arp_scan_lan(&lab, &cidr))?;
        r.compare(&format!("arp-scan #{i}"), &ours_expected, &found);
        r.say(format!(
            "  arp-scan #{i}: {:.3} s, {} found",
            took.as_secs_f64(),
            found.len()
        ));
        arp_scan.push(took);
    }
    // fping's pacing: the fastest -i that does not run out of socket buffer (ENOBUFS) while
    // ARP resolves; raised when a run hits it.
    let intervals = [10u32, 20, 50];
    let mut pick = 0;
    let mut fping = Vec::new();
    while fping.len() < RUNS {
        flush_neighbours(&lab)?;
        let i = intervals[pick].to_string();
        let who = format!("fping #{} (-i {i})", fping.len() + 1);
        match watch_table(r, &who, || lab::fping_ag(&lab, &cidr, 1000, &["-i", &i])) {
            Ok((took, found)) => {
                let n = fping.len() + 1;
                r.compare(&format!("fping #{n}"), &expected, &found);
                r.say(format!(
                    "  fping #{n}: {:.3} s, {} found (-t 1000 -i {i})",
                    took.as_secs_f64(),
                    found.len()
                ));
                fping.push(took);
            }
            Err(e) if format!("{e:#}").contains("could not send all probes") => {
                r.say(format!(
                    "  fping -i {i}: ENOBUFS (sends outran ARP), slowing down"
                ));
                r.surprise(format!("fping -g /22 with -i {i} hit ENOBUFS"));
                pick += 1;
                ensure!(pick < intervals.len(), "fping hits ENOBUFS even at -i 50");
            }
            Err(e) => return Err(e),
        }
    }
    let interval = intervals[pick];
    r.details.insert(
        "lan".into(),
        json!({
            "cidr": cidr, "live": expected.len(), "runs": RUNS, "sweeps": LAN_SWEEPS,
            "sweeps_exactly_nmaps_hosts": exact,
            "ours_s": secs_list(&ours), "ours_snmp_s": secs_list(&snmp),
            "nmap_s": secs_list(&nmap), "arp_scan_s": secs_list(&arp_scan),
            "fping_s": secs_list(&fping), "fping_interval_ms": interval,
            "ours_args": format!("scan {cidr} --json --no-dns --ports \"\" --timeout 1s"),
            "ours_snmp_args": format!("scan {cidr} --snmp --json --no-dns --ports \"\""),
            "arp_scan_args": format!("arp-scan -I eth0 -x {cidr}"),
        }),
    );
    let nmap_m = median(&nmap);
    let peers = || {
        vec![
            Peer::new("nmap -sn -n", nmap_m, "measured"),
            Peer::new("arp-scan", median(&arp_scan), "measured"),
            Peer::new(
                &format!("fping -a -g -i {interval}"),
                median(&fping),
                "measured",
            ),
        ]
    };
    r.rows.push(Row {
        what: format!(
            "/22 sweep, {} live (median of {LAN_SWEEPS}; {exact}/{LAN_SWEEPS} exact)",
            expected.len()
        ),
        ours: Some(median(&ours)),
        ours_note: String::new(),
        peers: peers(),
        target: Some(0.7 * nmap_m.as_secs_f64()),
        target_note: "0.7× nmap".into(),
    });
    r.rows.push(Row {
        what: format!(
            "/22 scan --snmp, {} live (median of {RUNS})",
            expected.len()
        ),
        ours: Some(median(&snmp)),
        ours_note: String::new(),
        peers: peers(),
        target: Some(1.5 * nmap_m.as_secs_f64()),
        target_note: "1.5× nmap".into(),
    });
    Ok(())
}

/// `arp-scan -I eth0 -x CIDR` in the scanner (its defaults: 2 tries, 500 ms, 256 kbit/s); the
/// addresses that answered.
fn arp_scan_lan(lab: &Lab, cidr: &str) -> Result<(Duration, BTreeSet<Ipv4Addr>)> {
    lab::require(&["arp-scan"])?;
    let mut cmd = lab.scanner_cmd("arp-scan", &["-I", "eth0", "-x", cidr]);
    let _guard = lab::sweep_guard();
    let started = Instant::now();
    let out = lab::run(&mut cmd)?;
    let took = started.elapsed();
    let found = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    Ok((took, found))
}

fn routed_sweep(o: &Options, r: &mut Report) -> Result<()> {
    let mut lab = Lab::new()?;
    let live = lab.add_routed(ROUTED, 2000)?;
    let expected: BTreeSet<Ipv4Addr> = live.into_iter().collect();
    r.say(format!(
        "{ROUTED}: {} live /32s behind a router namespace (blackhole for the rest)",
        expected.len()
    ));
    let mut runs = Vec::new();
    for i in 1..=RUNS {
        let run = run_ours(&lab, &o.collector_bin, &[ROUTED], &QUIET)?;
        r.compare(&format!("ours #{i}"), &expected, &run.ips());
        r.say(format!(
            "  ours  #{i}: {:.3} s, {} found, cpu {:.2} s (user {:.2} + sys {:.2}), peak rss {:.1} MiB",
            run.wall.as_secs_f64(),
            run.hosts.len(),
            run.cpu_s(),
            run.user_s,
            run.sys_s,
            run.rss_mib()
        ));
        r.stderr_note("ours", &run.stderr);
        runs.push(run);
    }
    runs.sort_by_key(|run| run.wall);
    let mid = &runs[RUNS / 2];
    let max_rss = runs.iter().map(OurRun::rss_mib).fold(0.0, f64::max);

    let (nmap, fping) = if o.skip_slow {
        let mut octets: Vec<u8> = (0..=255).collect::<Vec<u8>>();
        octets = octets
            .choose_multiple(&mut rand::rng(), 4)
            .copied()
            .collect();
        octets.sort_unstable();
        let nets: Vec<String> = octets.iter().map(|c| format!("198.19.{c}.0/24")).collect();
        let net_refs: Vec<&str> = nets.iter().map(String::as_str).collect();
        let in_sample: BTreeSet<Ipv4Addr> = expected
            .iter()
            .copied()
            .filter(|ip| octets.contains(&ip.octets()[2]))
            .collect();
        r.say(format!(
            "  peers over 4 random /24s ({}; {} live), extrapolated to the /16",
            nets.join(" "),
            in_sample.len()
        ));
        let (took, found) = lab::nmap_sn(&lab, &net_refs, &["-T4"])?;
        r.compare("nmap (4 /24s)", &in_sample, &found);
        let nmap_x = took.as_secs_f64() * ROUTED_NMAP_ADDRS / (256.0 * 4.0);
        r.say(format!(
            "  nmap -T4 on 1,024 addresses: {:.2} s → {nmap_x:.0} s for the /16 (×64, extrapolated)",
            took.as_secs_f64()
        ));
        let targets: Vec<String> = octets
            .iter()
            .flat_map(|&c| (0..=255u8).map(move |d| Ipv4Addr::new(198, 19, c, d)))
            // The /16's network and broadcast addresses are not hosts.
            .filter(|ip| ip.octets()[2..] != [0, 0] && ip.octets()[2..] != [255, 255])
            .map(|ip| ip.to_string())
            .collect();
        let target_refs: Vec<&str> = targets.iter().map(String::as_str).collect();
        let (ftook, ffound) = lab::fping(&lab, &target_refs, 1000, &["-i", "1"])?;
        r.compare("fping (4 /24s)", &in_sample, &ffound);
        let factor = ROUTED_HOST_ADDRS / targets.len() as f64;
        let fping_x = ftook.as_secs_f64() * factor;
        r.say(format!(
            "  fping -i 1 -t 1000 on {} addresses: {:.2} s → {fping_x:.0} s for the /16 (×{factor:.1}, extrapolated)",
            targets.len(),
            ftook.as_secs_f64()
        ));
        (
            Peer::new(
                "nmap -sn -n -T4",
                Duration::from_secs_f64(nmap_x),
                &format!(
                    "extrapolated ×64 from {:.2} s over 4 random /24s",
                    took.as_secs_f64()
                ),
            ),
            Peer::new(
                "fping -a -i 1",
                Duration::from_secs_f64(fping_x),
                &format!(
                    "extrapolated ×{factor:.1} from {:.2} s over 4 random /24s",
                    ftook.as_secs_f64()
                ),
            ),
        )
    } else {
        r.say("  nmap -sn -n -T4 over the whole /16 (minutes)…".to_string());
        let (took, found) = lab::nmap_sn(&lab, &[ROUTED], &["-T4"])?;
        r.compare("nmap", &expected, &found);
        r.say(format!("  nmap: {:.1} s", took.as_secs_f64()));
        r.say("  fping -a -i 1 -t 1000 -g over the whole /16 (minutes)…".to_string());
        let (ftook, ffound) = lab::fping_ag(&lab, ROUTED, 1000, &["-i", "1"])?;
        r.compare("fping", &expected, &ffound);
        r.say(format!("  fping: {:.1} s", ftook.as_secs_f64()));
        (
            Peer::new("nmap -sn -n -T4", took, "measured"),
            Peer::new("fping -a -g -i 1", ftook, "measured"),
        )
    };
    r.details.insert(
        "routed".into(),
        json!({
            "cidr": ROUTED, "live": expected.len(),
            "ours_s": secs_list(&runs.iter().map(|x| x.wall).collect::<Vec<_>>()),
            "ours_median_cpu_s": mid.cpu_s(), "ours_median_user_s": mid.user_s,
            "ours_median_sys_s": mid.sys_s, "ours_median_peak_rss_mib": mid.rss_mib(),
            "ours_max_peak_rss_mib": max_rss,
            "ours_args": format!("scan {ROUTED} --json --no-dns --ports \"\" (default rate, timeout, retries)"),
            "nmap": peer_json(&nmap, 0.0), "fping": peer_json(&fping, 0.0),
        }),
    );
    r.rows.push(Row {
        what: format!("routed /16 sweep, {} live", expected.len()),
        ours: Some(mid.wall),
        ours_note: String::new(),
        peers: vec![nmap, fping],
        target: Some(10.0),
        target_note: String::new(),
    });
    r.rows.push(Row {
        what: "  collector during /16 sweep".into(),
        ours: None,
        ours_note: format!(
            "cpu {:.2} s, peak RSS {:.1} MiB",
            mid.cpu_s(),
            mid.rss_mib()
        ),
        peers: Vec::new(),
        target: None,
        target_note: String::new(),
    });
    Ok(())
}

fn snmp_switch(o: &Options, r: &mut Report) -> Result<()> {
    let mut lab = Lab::new()?;
    let ip = Ipv4Addr::new(198, 18, 1, 5);
    let started = Instant::now();
    lab.start_snmpsim(&[(ip, SWITCH)])?;
    r.say(format!(
        "{SWITCH} on {ip} (snmpsimd ready in {:.1} s)",
        started.elapsed().as_secs_f64()
    ));
    let target = format!("{ip}/32");
    let mut sweep = Vec::new();
    let mut full = Vec::new();
    let mut interfaces = 0;
    for i in 1..=RUNS {
        let s = run_ours(&lab, &o.collector_bin, &[&target], &QUIET)?;
        ensure!(
            s.ips() == BTreeSet::from([ip]),
            "the ping sweep of {target} found {:?}",
            s.ips()
        );
        let run = run_ours(&lab, &o.collector_bin, &[&target, "--snmp"], &QUIET)?;
        let host = run
            .hosts
            .iter()
            .find(|h| h["ip"] == ip.to_string())
            .with_context(|| format!("{ip} not found by the --snmp scan"))?;
        ensure!(
            host["snmp"].is_object(),
            "{ip} came back without an snmp object: {host}"
        );
        interfaces = host["snmp"]["interfaces"].as_array().map_or(0, Vec::len);
        r.say(format!(
            "  ours #{i}: inventory {:.3} s (ping sweep alone {:.3} s), kind {}, {interfaces} interfaces, cpu {:.2} s",
            run.wall.as_secs_f64(),
            s.wall.as_secs_f64(),
            host["kind"],
            run.cpu_s()
        ));
        r.stderr_note("ours", &run.stderr);
        sweep.push(s.wall);
        full.push(run.wall);
    }
    let ip_s = ip.to_string();
    let started = Instant::now();
    let out = lab::run(&mut lab.scanner_cmd(
        "snmpbulkwalk",
        &["-v2c", "-c", "public", "-Cr25", "-On", &ip_s, ".1"],
    ))?;
    let walk = started.elapsed();
    let varbinds = String::from_utf8_lossy(&out.stdout).lines().count();
    r.say(format!(
        "  snmpbulkwalk -v2c -Cr25 .1: {:.3} s, {varbinds} varbinds (the whole recording)",
        walk.as_secs_f64()
    ));
    let (full_m, sweep_m) = (median(&full), median(&sweep));
    r.details.insert(
        "snmp_switch".into(),
        json!({
            "recording": SWITCH, "interfaces": interfaces,
            "ours_s": secs_list(&full), "ours_sweep_only_s": secs_list(&sweep),
            "ours_snmp_part_s": full_m.as_secs_f64() - sweep_m.as_secs_f64(),
            "snmpbulkwalk_s": walk.as_secs_f64(), "snmpbulkwalk_varbinds": varbinds,
        }),
    );
    r.rows.push(Row {
        what: format!("SNMP inventory, {interfaces}-if switch"),
        ours: Some(full_m),
        ours_note: format!(
            "(whole command; minus sweep {:.2} s)",
            full_m.as_secs_f64() - sweep_m.as_secs_f64()
        ),
        peers: vec![Peer::new(
            "snmpbulkwalk -Cr25 .1",
            walk,
            &format!("measured once, {varbinds} varbinds"),
        )],
        target: Some(1.0),
        target_note: String::new(),
    });
    Ok(())
}

fn snmp_fleet(o: &Options, r: &mut Report) -> Result<()> {
    let mut lab = Lab::new()?;
    let base = u32::from(Ipv4Addr::new(198, 18, 1, 10));
    let devices: Vec<(Ipv4Addr, &str, &str)> = (0..100u32)
        .map(|i| {
            let (rec, kind) = MIX[i as usize % MIX.len()];
            (Ipv4Addr::from(base + i), rec, kind)
        })
        .collect();
    let started = Instant::now();
    let spec: Vec<(Ipv4Addr, &str)> = devices.iter().map(|&(ip, rec, _)| (ip, rec)).collect();
    lab.start_snmpsim(&spec)?;
    r.say(format!(
        "100 devices, 20 each of {} (one snmpsimd per recording), ready in {:.1} s",
        MIX.map(|m| m.0).join(", "),
        started.elapsed().as_secs_f64()
    ));
    let lan = lab.lan().to_string();
    let mut times = Vec::new();
    for i in 1..=RUNS {
        flush_neighbours(&lab)?;
        let run = run_ours(&lab, &o.collector_bin, &[&lan, "--snmp"], &QUIET)?;
        let by_ip: BTreeMap<String, &Value> = run
            .hosts
            .iter()
            .map(|h| (h["ip"].as_str().unwrap_or_default().to_string(), h))
            .collect();
        let mut wrong = Vec::new();
        for (ip, rec, kind) in &devices {
            match by_ip.get(&ip.to_string()) {
                None => wrong.push(format!("{ip} ({rec}) not found")),
                Some(h) if !h["snmp"].is_object() => {
                    wrong.push(format!("{ip} ({rec}) without snmp"));
                }
                Some(h) if h["kind"] != *kind => {
                    wrong.push(format!("{ip} ({rec}) kind {} not {kind}", h["kind"]));
                }
                Some(_) => {}
            }
        }
        let ok = devices.len() - wrong.len();
        r.say(format!(
            "  ours #{i}: {:.3} s, {} hosts, {ok}/100 with snmp and the right kind, cpu {:.2} s, rss {:.1} MiB",
            run.wall.as_secs_f64(),
            run.hosts.len(),
            run.cpu_s(),
            run.rss_mib()
        ));
        if !wrong.is_empty() {
            r.error(format!(
                "100 SNMP devices, run {i}: {} wrong: {}",
                wrong.len(),
                wrong.join("; ")
            ));
        }
        r.stderr_note("ours", &run.stderr);
        times.push(run.wall);
    }
    r.details.insert(
        "snmp_fleet".into(),
        json!({
            "devices": 100, "recordings": MIX.map(|m| m.0), "ours_s": secs_list(&times),
            "ours_args": format!("scan {lan} --snmp --json --no-dns --ports \"\""),
        }),
    );
    r.rows.push(Row {
        what: "SNMP, 100 devices (sweep + inventory)".into(),
        ours: Some(median(&times)),
        ours_note: String::new(),
        peers: Vec::new(),
        target: Some(10.0),
        target_note: String::new(),
    });
    Ok(())
}

// --- running things in the lab ---

/// One `caretaker-collector scan` in the scanner namespace under `/usr/bin/time -v`.
struct OurRun {
    wall: Duration,
    hosts: Vec<Value>,
    user_s: f64,
    sys_s: f64,
    max_rss_kib: u64,
    stderr: String,
}

impl OurRun {
    fn ips(&self) -> BTreeSet<Ipv4Addr> {
        self.hosts
            .iter()
            .filter_map(|h| h["ip"].as_str()?.parse().ok())
            .collect()
    }
    fn cpu_s(&self) -> f64 {
        self.user_s + self.sys_s
    }
    fn rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 / 1024.0
    }
}

fn run_ours(lab: &Lab, bin: &Path, args: &[&str], flags: &[&str]) -> Result<OurRun> {
    let time_file = lab.dir().join("time.txt");
    let _ = std::fs::remove_file(&time_file);
    let mut cmd = lab.scanner_cmd(TIME, &["-v", "-o"]);
    cmd.arg(&time_file)
        .arg(bin)
        .arg("scan")
        .args(args)
        .args(flags);
    let desc = format!(
        "caretaker-collector scan {} {}",
        args.join(" "),
        flags.join(" ")
    );
    let _guard = lab::sweep_guard();
    let started = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run `{desc}`"))?;
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        bail!("`{desc}` failed ({}): {}", out.status, stderr.trim());
    }
    let hosts = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("`{desc}` printed `{l}`")))
        .collect::<Result<Vec<Value>>>()?;
    let times = std::fs::read_to_string(&time_file)
        .with_context(|| format!("reading {}", time_file.display()))?;
    let field = |key: &str| -> Result<f64> {
        times
            .lines()
            .find_map(|l| l.trim().strip_prefix(key)?.trim().parse().ok())
            .with_context(|| format!("no `{key}` in {TIME} -v output:\n{times}"))
    };
    Ok(OurRun {
        wall,
        hosts,
        user_s: field("User time (seconds):")?,
        sys_s: field("System time (seconds):")?,
        max_rss_kib: field("Maximum resident set size (kbytes):")? as u64,
        stderr,
    })
}

/// Empties the scanner's neighbour table, so every run starts with a cold ARP cache, then waits
/// (up to 10 s) until the kernel-wide neighbour count has drained below 64: the previous
/// sweep's entries count against `gc_thresh3` (1024, shared by all namespaces) until freed.
fn flush_neighbours(lab: &Lab) -> Result<()> {
    lab::run(Command::new("ip").args(["-n", lab.scanner_ns(), "neigh", "flush", "all"]))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while arp_stat("entries").unwrap_or(0) > 64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A column of `/proc/net/stat/arp_cache` (hex, per CPU; `entries` is global), summed over
/// CPUs except `entries`, which every row repeats.
fn arp_stat(column: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/stat/arp_cache").ok()?;
    let mut lines = text.lines();
    let index = lines.next()?.split_whitespace().position(|c| c == column)?;
    let values =
        lines.filter_map(|l| u64::from_str_radix(l.split_whitespace().nth(index)?, 16).ok());
    if column == "entries" {
        values.max()
    } else {
        Some(values.sum())
    }
}

/// Runs `f`, noting when the kernel's neighbour table overflowed meanwhile.
fn watch_table<T>(r: &mut Report, who: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let before = arp_stat("table_fulls");
    let out = f()?;
    if let (Some(a), Some(b)) = (before, arp_stat("table_fulls"))
        && b > a
    {
        r.say(format!(
            "    {who}: neighbour table full {} times (gc_thresh3)",
            b - a
        ));
        r.surprise(format!(
            "neighbour table overflow (table_fulls) during {who}"
        ));
    }
    Ok(out)
}

// --- reporting ---

struct Peer {
    name: String,
    took: Duration,
    how: String,
    extrapolated: bool,
}

impl Peer {
    fn new(name: &str, took: Duration, how: &str) -> Peer {
        Peer {
            name: name.into(),
            took,
            how: how.into(),
            extrapolated: how.starts_with("extrapolated"),
        }
    }
}

struct Row {
    what: String,
    ours: Option<Duration>,
    ours_note: String,
    peers: Vec<Peer>,
    /// Seconds ours must not exceed.
    target: Option<f64>,
    /// How `target` was set when it is relative to a peer (`0.7× nmap`).
    target_note: String,
}

#[derive(Default)]
struct Report {
    json: bool,
    rows: Vec<Row>,
    details: serde_json::Map<String, Value>,
    errors: Vec<String>,
    surprises: Vec<String>,
}

impl Report {
    /// Progress and detail lines: stdout in text mode, stderr with `--json`.
    fn say(&self, line: String) {
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    fn error(&mut self, message: String) {
        eprintln!("ERROR: {message}");
        self.errors.push(message);
    }

    fn surprise(&mut self, message: String) {
        if !self.surprises.contains(&message) {
            self.surprises.push(message);
        }
    }

    /// Records an error naming the differences when `found` is not `expected`.
    fn compare(&mut self, who: &str, expected: &BTreeSet<Ipv4Addr>, found: &BTreeSet<Ipv4Addr>) {
        if expected == found {
            return;
        }
        let missed: Vec<String> = expected.difference(found).map(|a| a.to_string()).collect();
        let extra: Vec<String> = found.difference(expected).map(|a| a.to_string()).collect();
        let list = |v: &[String]| {
            let mut s = v.iter().take(20).cloned().collect::<Vec<_>>().join(" ");
            if v.len() > 20 {
                let _ = write!(s, " … ({} in all)", v.len());
            }
            s
        };
        self.error(format!(
            "{who}: found {} of {} expected; missed [{}], extra [{}]",
            found.len(),
            expected.len(),
            list(&missed),
            list(&extra)
        ));
    }

    /// Notes the collector's stderr (warnings such as ENOBUFS or neighbour table overflow).
    fn stderr_note(&mut self, who: &str, stderr: &str) {
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        if let Some(first) = lines.first() {
            self.say(format!(
                "    {who} stderr ({} lines), first: {first}",
                lines.len()
            ));
            self.surprise(format!("{who} wrote to stderr: {first}"));
        }
    }

    fn finish(&self) {
        let rows: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|row| {
                let ours = row.ours.map_or_else(
                    || row.ours_note.clone(),
                    |d| format!("{:.2} s {}", d.as_secs_f64(), row.ours_note),
                );
                let peers = row
                    .peers
                    .iter()
                    .map(|p| {
                        let x = if p.how == "measured" {
                            ""
                        } else {
                            " (extrap.)"
                        };
                        format!("{} {:.2} s{x}", p.name, p.took.as_secs_f64())
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                let ratio = row
                    .ours
                    .map(|o| {
                        row.peers
                            .iter()
                            .map(|p| format!("{:.3}×", ratio(o, p.took)))
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default();
                let (target, met) = match (row.target, row.ours) {
                    (Some(t), Some(o)) => (
                        if row.target_note.is_empty() {
                            format!("≤ {t} s")
                        } else {
                            format!("≤ {t:.2} s ({})", row.target_note)
                        },
                        if o.as_secs_f64() <= t { "yes" } else { "NO" }.to_string(),
                    ),
                    _ => (String::new(), String::new()),
                };
                [
                    row.what.clone(),
                    ours.trim().to_string(),
                    peers,
                    ratio,
                    target,
                    met,
                ]
            })
            .collect();
        let header = ["what", "ours", "peers", "ours/peer", "target", "met"].map(String::from);
        let mut widths = [0usize; 6];
        for row in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut table = String::new();
        for row in std::iter::once(&header).chain(&rows) {
            let line: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            let _ = writeln!(table, "{}", line.join(" | ").trim_end());
        }
        if self.json {
            eprint!("\n{table}");
            let rows: Vec<Value> = self
                .rows
                .iter()
                .map(|row| {
                    let ours = row.ours.map(|d| d.as_secs_f64());
                    json!({
                        "what": row.what.trim(),
                        "ours_s": ours,
                        "ours_note": row.ours_note,
                        "peers": row.peers.iter().map(|p| peer_json(p, ours.unwrap_or(0.0))).collect::<Vec<_>>(),
                        "target_s": row.target,
                        "target_note": row.target_note,
                        "met": match (row.target, ours) {
                            (Some(t), Some(o)) => Some(o <= t),
                            _ => None,
                        },
                    })
                })
                .collect();
            let doc = json!({
                "benchmark": "discovery",
                "rows": rows,
                "details": self.details,
                "surprises": self.surprises,
                "errors": self.errors,
            });
            println!("{doc:#}");
        } else {
            println!("\n{table}");
            for s in &self.surprises {
                println!("note: {s}");
            }
            if !self.errors.is_empty() {
                println!("{} error(s):", self.errors.len());
                for e in &self.errors {
                    println!("  - {e}");
                }
            }
        }
    }
}

fn peer_json(p: &Peer, ours_s: f64) -> Value {
    let secs = p.took.as_secs_f64();
    json!({
        "name": p.name,
        "secs": secs,
        "how": p.how,
        "extrapolated": p.extrapolated,
        "ours_over_peer": (ours_s > 0.0 && secs > 0.0).then(|| ours_s / secs),
    })
}

fn ratio(ours: Duration, peer: Duration) -> f64 {
    ours.as_secs_f64() / peer.as_secs_f64().max(1e-9)
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn secs_list(samples: &[Duration]) -> Vec<f64> {
    samples.iter().map(Duration::as_secs_f64).collect()
}
