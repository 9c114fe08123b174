//! Discovery end to end, in a network-namespace lab the test builds (198.18.0.0/15 only; the
//! scanner namespace has no route out): `caretaker-collector scan` against live and dead
//! hosts, real `snmpd`, and `snmpsimd` serving recordings of real school kit.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::Output;

use anyhow::{Context, Result, ensure};
use caretaker_tests::bin;
use caretaker_tests::lab::{self, Lab, SnmpdConf};
use serde_json::Value;

/// Runs `caretaker-collector scan ARGS --json` in the scanner namespace; the hosts by IP.
fn scan_json(lab: &Lab, args: &[&str]) -> Result<BTreeMap<Ipv4Addr, Value>> {
    let mut all = vec!["scan", "--json", "--no-dns"];
    all.extend_from_slice(args);
    let output = {
        let _guard = lab::sweep_guard();
        lab.scanner_cmd(bin("caretaker-collector"), &all).output()?
    };
    ensure!(
        output.status.success(),
        "scan {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)?
        .lines()
        .map(|line| {
            let host: Value =
                serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
            let ip = host["ip"].as_str().context("ip")?.parse()?;
            Ok((ip, host))
        })
        .collect()
}

fn scan_fails(lab: &Lab, args: &[&str]) -> Output {
    let mut all = vec!["scan"];
    all.extend_from_slice(args);
    lab.scanner_cmd(bin("caretaker-collector"), &all)
        .output()
        .expect("run scan")
}

#[test]
fn a_sweep_finds_every_live_host_with_its_mac_and_nothing_else() -> Result<()> {
    let mut lab = Lab::new()?;
    // Fixed addresses first: random ones then avoid them.
    let lonely = lab.add_host_ns("198.18.2.200".parse()?)?;
    let hosts = lab.add_hosts(40)?;
    let cidr = lab.lan().to_string();

    let found = scan_json(&lab, &[&cidr, "--ports", ""])?;
    let mut expected: BTreeSet<Ipv4Addr> = hosts.iter().map(|h| h.ip).collect();
    expected.insert(lonely.ip);
    expected.extend(lab.infra_addrs().iter().copied());
    // The scanner answers its own pings, but it is not a find.
    expected.remove(&lab::SCANNER_IP);
    assert!(
        !found.contains_key(&lab::SCANNER_IP),
        "the scanning machine's own address is listed: {}",
        found[&lab::SCANNER_IP]
    );
    assert_eq!(found.keys().copied().collect::<BTreeSet<_>>(), expected);
    for host in hosts.iter().chain([&lonely]) {
        let seen = &found[&host.ip];
        assert_eq!(seen["mac"].as_str(), Some(host.mac.as_str()), "{seen}");
        assert!(
            seen["rtt_ms"]
                .as_f64()
                .is_some_and(|r| (0.0..1000.0).contains(&r)),
            "an RTT within the timeout: {seen}"
        );
    }

    // The same hosts as nmap finds, on the same lab (nmap lists the scanner itself too).
    let (_, mut nmap) = lab::nmap_sn(&lab, &[&cidr], &[])?;
    assert!(nmap.remove(&lab::SCANNER_IP), "nmap lists the scanner");
    assert_eq!(nmap, expected);

    // A host whose link goes down is no longer found.
    lab.set_link(&lonely, false)?;
    let again = scan_json(&lab, &[&cidr, "--ports", "", "--timeout", "300ms"])?;
    assert!(!again.contains_key(&lonely.ip));
    assert_eq!(again.len(), expected.len() - 1);
    Ok(())
}

/// The table's rows as column name → cell, cut at the header's column starts (cells are
/// padded to their column, and a vendor holds single spaces).
fn table_rows(table: &str) -> Vec<BTreeMap<String, String>> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let mut starts: Vec<(usize, String)> = Vec::new();
    let mut at = 0;
    for name in header.split_whitespace() {
        let start = at + header[at..].find(name).expect("header word");
        starts.push((start, name.to_owned()));
        at = start + name.len();
    }
    lines
        .take_while(|line| !line.trim().is_empty())
        .map(|line| {
            let chars: Vec<char> = line.chars().collect();
            starts
                .iter()
                .enumerate()
                .map(|(i, (start, name))| {
                    let end = starts.get(i + 1).map_or(chars.len(), |(next, _)| *next);
                    let cell: String = chars
                        .get(*start..end.min(chars.len()))
                        .map(|c| c.iter().collect())
                        .unwrap_or_default();
                    (name.clone(), cell.trim().to_owned())
                })
                .collect()
        })
        .collect()
}

#[test]
fn the_table_cuts_a_long_vendor_after_a_word_and_leaves_out_the_scanner() -> Result<()> {
    let mut lab = Lab::new()?;
    // 9c:96:13 is "Lenovo Future Communication Technology (Chongqing) Company Limited".
    let long = lab.add_hosts_at(&[("198.18.1.77".parse()?, Some("9c:96:13:00:00:77"))])?;
    let plain = lab.add_hosts(3)?;
    let cidr = lab.lan().to_string();
    let full = scan_json(&lab, &[&cidr, "--ports", ""])?[&long[0].ip]["vendor"]
        .as_str()
        .context("vendor")?
        .to_owned();
    assert!(full.chars().count() > 40, "a long vendor name: {full}");

    // Right after the first sweep the dead addresses have FAILED neighbour entries, and the
    // kernel answers echo requests to them with "host unreachable" within the timeout: those
    // are not hosts either.
    let output = {
        let _guard = lab::sweep_guard();
        lab.scanner_cmd(
            bin("caretaker-collector"),
            &["scan", &cidr, "--ports", "", "--no-dns"],
        )
        .output()?
    };
    ensure!(output.status.success(), "scan: {}", output.status);
    let table = String::from_utf8(output.stdout)?;
    let rows = table_rows(&table);
    let ips: BTreeSet<String> = rows.iter().map(|r| r["IP"].clone()).collect();
    let expected: BTreeSet<String> = plain
        .iter()
        .chain(&long)
        .map(|h| h.ip.to_string())
        .collect();
    assert_eq!(ips, expected, "{table}");
    let summary = table.lines().last().unwrap_or_default();
    assert!(
        summary.contains(&format!(
            "this machine's own {} not listed",
            lab::SCANNER_IP
        )),
        "{summary}"
    );

    let row = rows
        .iter()
        .find(|r| r["IP"] == long[0].ip.to_string())
        .context("the long-vendor host's row")?;
    let cell = &row["VENDOR"];
    assert_eq!(row["MAC"], long[0].mac, "{table}");
    let kept = cell
        .strip_suffix('…')
        .with_context(|| format!("a cut vendor ends in an ellipsis: {cell:?}"))?;
    assert!(
        full.starts_with(kept) && kept.chars().count() >= 16,
        "{cell:?} is a good part of {full:?}"
    );
    assert!(
        full[kept.len()..].starts_with(|c: char| !c.is_alphanumeric()),
        "cut mid-word: {cell:?} of {full:?}"
    );
    Ok(())
}

#[test]
fn bad_ranges_are_refused_naming_them_and_nothing_is_sent() -> Result<()> {
    let lab = Lab::new()?;
    for (range, needle) in [
        ("198.18.0.0/33", "198.18.0.0/33"),
        ("198.18.0/22", "198.18.0/22"),
        ("198.0.0.0/8", "the cap is 65536"),
        // The scanner namespace has no route there: refused before any packet leaves.
        ("203.0.113.0/24", "no route"),
    ] {
        let output = scan_fails(&lab, &[range, "--ports", ""]);
        assert_eq!(output.status.code(), Some(2), "{range}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{range}: {stderr}");
    }
    Ok(())
}

/// prtMarkerLifeCount of the first marker (written in parts: the OID is not an address).
const PRT_MARKER_LIFE_COUNT: &str = concat!("1.3.6.1.2.1.43.", "10", ".2.1.4.1.1");

/// Values read from a recording file: `OID|TYPE|VALUE` lines.
struct Recording(BTreeMap<String, String>);

impl Recording {
    fn load(name: &str) -> Result<Self> {
        let path = lab::recordings_dir()?.join(format!("{name}.snmprec"));
        let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
        Ok(Self(
            text.lines()
                .filter_map(|l| {
                    let mut parts = l.splitn(3, '|');
                    Some((parts.next()?.to_owned(), parts.nth(1)?.to_owned()))
                })
                .collect(),
        ))
    }

    fn get(&self, oid: &str) -> Option<&str> {
        self.0.get(oid).map(String::as_str)
    }

    fn int(&self, oid: &str) -> Option<i64> {
        self.get(oid)?.parse().ok()
    }

    /// Distinct row indexes of a table entry (`ENTRY.COLUMN.INDEX`), over all its columns.
    fn rows(&self, entry: &str) -> usize {
        let prefix = format!("{entry}.");
        self.0
            .keys()
            .filter_map(|k| {
                k.strip_prefix(&prefix)?
                    .split_once('.')
                    .map(|(_, index)| index.to_owned())
            })
            .collect::<BTreeSet<_>>()
            .len()
    }
}

fn supply<'a>(host: &'a Value, description_starts: &str) -> &'a Value {
    host["snmp"]["supplies"]
        .as_array()
        .and_then(|list| {
            list.iter().find(|s| {
                s["description"]
                    .as_str()
                    .is_some_and(|d| d.starts_with(description_starts))
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "no supply {description_starts:?} in {}",
                host["snmp"]["supplies"]
            )
        })
}

#[test]
fn snmp_describes_printers_switches_access_points_upses_and_nases() -> Result<()> {
    let mut lab = Lab::new()?;
    let devices: [(Ipv4Addr, &str); 7] = [
        ("198.18.1.10".parse()?, "hp_laserjet-mfp-m130nw"),
        ("198.18.1.11".parse()?, "ricoh_aficio-mp-c3002"),
        ("198.18.1.12".parse()?, "brother_hl-5370dw"),
        ("198.18.1.20".parse()?, "dlink_dgs-1510-28"),
        ("198.18.1.30".parse()?, "ubiquiti_unifi-uap-nanohd"),
        ("198.18.1.40".parse()?, "apc_smart-ups-1500-rm"),
        ("198.18.1.50".parse()?, "synology_rs2212rp"),
    ];
    lab.start_snmpsim(&devices)?;
    let server = lab.add_host_ns("198.18.1.60".parse()?)?;
    let conf = SnmpdConf {
        community: "school-ro".into(),
        sys_name: "LIB-SRV01".into(),
        ..SnmpdConf::default()
    };
    lab.start_snmpd(&server, &conf)?;
    let cidr = lab.lan().to_string();

    // The wrong community first: each device is asked with the next one.
    let found = scan_json(
        &lab,
        &[
            &cidr,
            "--snmp",
            "--community",
            "wrong",
            "--community",
            "public",
            "--community",
            "school-ro",
            "--ports",
            "",
        ],
    )?;
    let kind = |ip: Ipv4Addr| found[&ip]["kind"].as_str().unwrap_or_default().to_owned();
    let kinds: Vec<String> = devices.iter().map(|(ip, _)| kind(*ip)).collect();
    assert_eq!(
        kinds,
        [
            "printer",
            "printer",
            "printer",
            "switch",
            "access-point",
            "ups",
            "nas"
        ]
    );
    assert_eq!(found[&server.ip]["snmp"]["system"]["name"], "LIB-SRV01");
    assert_eq!(kind(server.ip), "server");

    // Printer supplies and page counts, against the recordings.
    let hp = Recording::load("hp_laserjet-mfp-m130nw")?;
    let hp_host = &found[&devices[0].0];
    let black = supply(hp_host, "Black Cartridge");
    let level = hp.int("1.3.6.1.2.1.43.11.1.1.9.1.1").context("level")?;
    let max = hp.int("1.3.6.1.2.1.43.11.1.1.8.1.1").context("max")?;
    assert_eq!(
        black["percent"].as_f64().map(f64::round),
        Some((level * 100 / max) as f64)
    );
    assert_eq!(
        hp_host["snmp"]["page_count"].as_i64(),
        hp.int(PRT_MARKER_LIFE_COUNT)
    );
    assert!(
        hp_host["snmp"]["model"]
            .as_str()
            .is_some_and(|m| m.contains("M130")),
        "{}",
        hp_host["snmp"]["model"]
    );

    let ricoh = Recording::load("ricoh_aficio-mp-c3002")?;
    let cyan = supply(&found[&devices[1].0], "Cyan Toner");
    assert_eq!(
        cyan["percent"].as_f64().map(f64::round),
        ricoh.int("1.3.6.1.2.1.43.11.1.1.9.1.3").map(|v| v as f64)
    );
    assert_eq!(
        found[&devices[1].0]["snmp"]["page_count"].as_i64(),
        ricoh.int(PRT_MARKER_LIFE_COUNT)
    );

    // Brother reports an unknown maximum (-2) and "some remaining" (-3): no percentages.
    let brother = &found[&devices[2].0];
    for s in brother["snmp"]["supplies"].as_array().context("supplies")? {
        if s["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("Black Toner"))
        {
            assert!(s["percent"].is_null(), "{s}");
        }
    }

    // The switch: every interface of the recording.
    let dlink = Recording::load("dlink_dgs-1510-28")?;
    let interfaces = found[&devices[3].0]["snmp"]["interfaces"]
        .as_array()
        .context("interfaces")?;
    assert_eq!(interfaces.len(), dlink.rows("1.3.6.1.2.1.2.2.1"));
    assert!(
        !found[&devices[3].0]["snmp"]["lldp"]
            .as_array()
            .context("lldp")?
            .is_empty()
    );

    // The UPS: model and runtime from PowerNet.
    let ups = &found[&devices[5].0]["snmp"];
    assert_eq!(ups["model"], "Smart-UPS 1500 RM");
    assert_eq!(ups["ups"]["on_battery"], false);
    let ticks = Recording::load("apc_smart-ups-1500-rm")?
        .int("1.3.6.1.4.1.318.1.1.1.2.2.3.0")
        .context("runtime")?;
    assert_eq!(ups["ups"]["runtime_secs"].as_i64(), Some(ticks / 100));

    // The NAS says only "net-snmp Linux" in sysObjectID; its model comes from the Synology MIB.
    let nas = Recording::load("synology_rs2212rp")?;
    let model = nas
        .get("1.3.6.1.4.1.6574.1.5.1.0")
        .context("synology model")?;
    assert_eq!(found[&devices[6].0]["snmp"]["model"].as_str(), Some(model));
    Ok(())
}
