//! Self-test of the network-namespace lab (`caretaker_tests::lab`). Runs as root; a missing
//! tool (ip, snmpd, snmpsimd, fping, nmap) fails the test with a message, it never skips.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Instant;

use anyhow::{Result, ensure};
use caretaker_tests::lab::{self, Lab, SnmpdConf, fping, fping_ag, nmap_sn};

/// fping pacing for ~200 dead targets: faster, and probes queued behind ARP overflow fping's
/// socket buffer (ENOBUFS; see `lab::fping_ag`).
const FPING_PACE: &[&str] = &["-i", "5", "-r", "1"];

fn all_tools() -> Result<()> {
    lab::require(&["ip", "snmpd", "snmpget", "snmpsimd", "fping", "nmap"])
}

fn netns_list() -> Result<String> {
    let out = lab::run(Command::new("ip").args(["netns", "list"]))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// fping over every lab host plus every 5th LAN address (mostly dead ones).
fn fping_lan(lab: &Lab) -> Result<BTreeSet<Ipv4Addr>> {
    let mut targets: BTreeSet<Ipv4Addr> = expected_alive(lab);
    targets.extend(lab.lan().hosts().step_by(5));
    let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    let (took, found) = fping(lab, &targets, 300, FPING_PACE)?;
    println!(
        "fping of {} LAN targets: {} alive in {took:?}",
        targets.len(),
        found.len()
    );
    Ok(found)
}

fn expected_alive(lab: &Lab) -> BTreeSet<Ipv4Addr> {
    lab.hosts()
        .iter()
        .map(|h| h.ip)
        .chain(lab.infra_addrs().iter().copied())
        .collect()
}

/// Text value of one OID via snmpget in the scanner (`-Oqv`).
fn snmpget(lab: &Lab, args: &[&str], ip: Ipv4Addr, oid: &str) -> Result<String> {
    let mut cmd = lab.scanner_cmd("snmpget", args);
    cmd.args(["-t", "1", "-r", "1", "-On", "-Oqv"])
        .arg(ip.to_string())
        .arg(oid);
    let out = lab::run(&mut cmd)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_matches('"')
        .to_string())
}

#[test]
fn sweep_finds_exactly_the_live_hosts_and_link_state_counts() -> Result<()> {
    all_tools()?;
    let mut lab = Lab::new()?;
    // Fixed addresses first: random ones then avoid them.
    let ns_host = lab.add_host_ns(Ipv4Addr::new(198, 18, 3, 7))?;
    let hosts = lab.add_hosts(20)?;
    assert_eq!(hosts.len(), 20);
    let macs: BTreeSet<&str> = lab.hosts().iter().map(|h| h.mac.as_str()).collect();
    assert_eq!(macs.len(), 21, "every host has its own MAC");
    for h in lab.hosts() {
        let o = h.ip.octets();
        assert!(
            o[0] == 198 && o[1] == 18 && h.ip != lab::SCANNER_IP,
            "{h:?}"
        );
    }

    let found = fping_lan(&lab)?;
    assert_eq!(
        found,
        expected_alive(&lab),
        "fping finds exactly the lab's hosts"
    );

    // The neighbour table shows each host's own MAC.
    let out = lab::run(&mut lab.scanner_cmd("ip", &["neigh", "show", "dev", "eth0"]))?;
    let neigh = String::from_utf8_lossy(&out.stdout).into_owned();
    for h in lab.hosts() {
        assert!(
            neigh
                .lines()
                .any(|l| l.starts_with(&format!("{} ", h.ip)) && l.contains(&h.mac)),
            "{} with MAC {} missing from the scanner's neighbours:\n{neigh}",
            h.ip,
            h.mac
        );
    }

    // `fping -g` over a /26 holding the namespace host.
    let net = lab::Net::parse("198.18.3.0/26")?;
    let (took, found) = fping_ag(&lab, &net.to_string(), 300, FPING_PACE)?;
    println!("fping -g {net}: {} alive in {took:?}", found.len());
    // `-g` skips the /26's own network and broadcast addresses, which a /22 host may hold.
    let expected: BTreeSet<Ipv4Addr> = expected_alive(&lab)
        .into_iter()
        .filter(|ip| net.hosts().any(|h| h == *ip))
        .collect();
    assert!(expected.contains(&ns_host.ip));
    assert_eq!(found, expected, "fping -g finds the hosts of {net}");

    lab.set_link(&ns_host, false)?;
    let found = fping_lan(&lab)?;
    let mut expected = expected_alive(&lab);
    expected.remove(&ns_host.ip);
    assert_eq!(found, expected, "the host whose link is down disappears");

    lab.set_link(&ns_host, true)?;
    // A macvlan host going down and up keeps answering too.
    lab.set_link(&hosts[0], false)?;
    lab.set_link(&hosts[0], true)?;
    let found = fping_lan(&lab)?;
    assert_eq!(found, expected_alive(&lab), "back after link up");
    Ok(())
}

#[test]
fn routed_range_answers_only_for_live_addresses() -> Result<()> {
    all_tools()?;
    let mut lab = Lab::new()?;
    let live = lab.add_routed("198.19.0.0/16", 50)?;
    assert_eq!(live.len(), 50);
    assert!(live.iter().all(|ip| ip.octets()[..2] == [198, 19]));
    assert!(
        lab.add_routed("203.0.113.0/24", 1).is_err(),
        "ranges outside 198.18/15 are refused"
    );

    // Failures name the command and the failing batch line.
    let err = lab.add_hosts_at(&[(Ipv4Addr::new(198, 18, 1, 1), Some("not-a-mac"))]);
    let msg = format!("{:#}", err.expect_err("a bad MAC is an error"));
    assert!(msg.contains("-batch") && msg.contains("not-a-mac"), "{msg}");
    let msg = format!(
        "{:#}",
        lab::require(&["ip", "no-such-tool-xyz"]).expect_err("missing")
    );
    assert!(
        msg.contains("no-such-tool-xyz") && !msg.contains("ip,"),
        "{msg}"
    );

    // Every live address plus 200 dead ones, and the whole /24 of the first live one.
    let first = live[0].octets();
    let slash24 = format!("{}.{}.{}.0/24", first[0], first[1], first[2]);
    let mut targets: Vec<String> = live.iter().map(ToString::to_string).collect();
    let mut dead = 0;
    for i in 0..=u16::MAX {
        let ip = Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8);
        if dead < 200 && i % 251 == 7 && !live.contains(&ip) {
            targets.push(ip.to_string());
            dead += 1;
        }
    }
    targets.push(slash24);
    let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
    let (took, found) = nmap_sn(&lab, &targets, &["-T5", "--max-retries", "1"])?;
    println!(
        "nmap -sn over {} targets: {} up in {took:?}",
        targets.len(),
        found.len()
    );
    assert_eq!(found, live.iter().copied().collect::<BTreeSet<_>>());
    Ok(())
}

#[test]
fn snmpd_answers_v2c_and_v3() -> Result<()> {
    all_tools()?;
    let mut lab = Lab::new()?;
    let host = lab.add_host_ns(Ipv4Addr::new(198, 18, 1, 161))?;
    let conf = SnmpdConf {
        community: "s3cret-lab".into(),
        sys_name: "lab-switch-01".into(),
        sys_location: "Science block".into(),
        ..SnmpdConf::default()
    };
    let start = Instant::now();
    lab.start_snmpd(&host, &conf)?;
    println!("snmpd ready in {:?}", start.elapsed());

    let v2c = ["-v2c", "-c", "s3cret-lab"];
    assert_eq!(
        snmpget(&lab, &v2c, host.ip, "1.3.6.1.2.1.1.5.0")?,
        "lab-switch-01"
    );
    assert_eq!(
        snmpget(&lab, &v2c, host.ip, "1.3.6.1.2.1.1.6.0")?,
        "Science block"
    );
    assert!(
        snmpget(&lab, &["-v2c", "-c", "wrong"], host.ip, "1.3.6.1.2.1.1.5.0").is_err(),
        "a wrong community gets no answer"
    );
    let v3 = conf.v3.as_ref().expect("default has a v3 user");
    let v3_args = [
        "-v3",
        "-l",
        "authPriv",
        "-u",
        &v3.user,
        "-a",
        "SHA",
        "-A",
        &v3.auth_pass,
        "-x",
        "AES",
        "-X",
        &v3.priv_pass,
    ];
    assert_eq!(
        snmpget(&lab, &v3_args, host.ip, "1.3.6.1.2.1.1.5.0")?,
        "lab-switch-01"
    );
    Ok(())
}

#[test]
fn snmpsim_serves_a_recording_per_address() -> Result<()> {
    all_tools()?;
    let mut lab = Lab::new()?;
    let printer = Ipv4Addr::new(198, 18, 0, 20);
    let switch = Ipv4Addr::new(198, 18, 0, 21);
    let windows = Ipv4Addr::new(198, 18, 0, 22);
    let start = Instant::now();
    lab.start_snmpsim(&[
        (printer, "hp_laserjet-mfp-m130nw"),
        (switch, "cisco_cbs250-24p-4x"),
        (windows, "microsoft_windows-server-2019"),
    ])?;
    println!("snmpsimd (3 devices) ready in {:?}", start.elapsed());
    let public = ["-v2c", "-c", "public"];
    let sys_object_id = "1.3.6.1.2.1.1.2.0";
    assert_eq!(
        snmpget(&lab, &public, printer, sys_object_id)?,
        ".1.3.6.1.4.1.11.2.3.9.1"
    );
    assert_eq!(
        snmpget(&lab, &public, switch, sys_object_id)?,
        ".1.3.6.1.4.1.9.6.1.1005.24.5"
    );
    assert_eq!(
        snmpget(&lab, &public, windows, sys_object_id)?,
        ".1.3.6.1.4.1.311.1.1.3.1.2"
    );
    // The sed-fixed Windows copy serves the formerly masked ipAddrTable rows.
    let mut walk = lab.scanner_cmd("snmpwalk", &["-v2c", "-c", "public", "-On", "-t", "1"]);
    walk.arg(windows.to_string()).arg("1.3.6.1.2.1.4.20");
    let out = lab::run(&mut walk)?;
    let rows = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(
        rows > 0,
        "ipAddrTable of the fixed Windows recording is served"
    );
    // The recording's own name works as a community too, at its own address only.
    let named = ["-v2c", "-c", "cisco_cbs250-24p-4x"];
    assert_eq!(
        snmpget(&lab, &named, switch, sys_object_id)?,
        ".1.3.6.1.4.1.9.6.1.1005.24.5"
    );
    assert!(snmpget(&lab, &named, printer, sys_object_id).is_err());
    // A GETBULK that runs past the end of the MIB is answered (snmpsim's --v2c-arch spins).
    let mut bulk = lab.scanner_cmd(
        "snmpbulkget",
        &["-v2c", "-c", "public", "-On", "-Cr8", "-t", "2", "-r", "0"],
    );
    bulk.arg(printer.to_string())
        .args(["1.3.6.1.2.1.31.1.1.1.1", "1.3.6.1.2.1.31.1.1.1.18"]);
    lab::run(&mut bulk)?;
    assert_eq!(
        snmpget(&lab, &public, printer, sys_object_id)?,
        ".1.3.6.1.4.1.11.2.3.9.1",
        "still answering after a bulk request past the end of the MIB"
    );
    // Devices are lab hosts with their own MACs.
    let devices: BTreeSet<&str> = lab.hosts().iter().map(|h| h.mac.as_str()).collect();
    assert_eq!(devices.len(), 3);
    Ok(())
}

#[test]
fn snmpsim_one_recording_on_a_hundred_addresses() -> Result<()> {
    all_tools()?;
    let mut lab = Lab::new()?;
    let ips: Vec<Ipv4Addr> = (0..100)
        .map(|i| Ipv4Addr::new(198, 18, 2, 10 + i))
        .collect();
    let devices: Vec<(Ipv4Addr, &str)> =
        ips.iter().map(|&ip| (ip, "cisco_cbs250-24p-4x")).collect();
    let start = Instant::now();
    lab.start_snmpsim(&devices)?;
    println!("snmpsimd with 100 devices ready in {:?}", start.elapsed());
    let public = ["-v2c", "-c", "public"];
    for ip in [ips[0], ips[57], ips[99]] {
        assert_eq!(
            snmpget(&lab, &public, ip, "1.3.6.1.2.1.1.2.0")?,
            ".1.3.6.1.4.1.9.6.1.1005.24.5"
        );
    }
    Ok(())
}

#[test]
fn two_labs_at_once_do_not_collide_and_leave_nothing_behind() -> Result<()> {
    all_tools()?;
    let run_one = || -> Result<Vec<String>> {
        let mut lab = Lab::new()?;
        lab.add_hosts(10)?;
        let found = fping_lan(&lab)?;
        ensure!(
            found == expected_alive(&lab),
            "lab {} found {found:?}",
            lab.id()
        );
        Ok(lab.namespaces().to_vec())
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(run_one);
        let b = s.spawn(run_one);
        (a.join().expect("lab a"), b.join().expect("lab b"))
    });
    let (a, b) = (a?, b?);
    assert!(
        a.iter().all(|ns| !b.contains(ns)),
        "labs share a namespace name: {a:?} {b:?}"
    );
    assert_gone(&a)?;
    assert_gone(&b)
}

/// Setup time of the benchmark-sized lab: a /22 with 300 hosts and a routed /16 with 2,000.
#[test]
fn big_lab_setup_time() -> Result<()> {
    all_tools()?;
    let start = Instant::now();
    let mut lab = Lab::new()?;
    let base = start.elapsed();
    let t = Instant::now();
    lab.add_hosts(300)?;
    let hosts = t.elapsed();
    let t = Instant::now();
    let live = lab.add_routed("198.19.0.0/16", 2000)?;
    let routed = t.elapsed();
    println!("lab base {base:?}, 300 hosts {hosts:?}, routed /16 with 2000 live {routed:?}");
    assert_eq!(live.len(), 2000);

    let cidr = lab.lan().to_string();
    let (took, found) = nmap_sn(&lab, &[&cidr], &[])?;
    println!("nmap -sn {cidr}: {} up in {took:?}", found.len());
    assert_eq!(found, expected_alive(&lab));
    // `fping_ag(&lab, &cidr, 500, &["-i", "10", "-r", "1"])` finds the same 302 in ~16.5 s;
    // faster pacing overflows fping's socket buffer (see `lab::fping_ag`).
    let live: Vec<String> = live.iter().map(ToString::to_string).collect();
    let live: Vec<&str> = live.iter().map(String::as_str).collect();
    let (took, found) = fping(&lab, &live, 500, &["-i", "1", "-r", "1"])?;
    println!(
        "fping of the 2000 routed live addresses -i 1: {} alive in {took:?}",
        found.len()
    );
    assert_eq!(found.len(), 2000);
    let t = Instant::now();
    let names = lab.namespaces().to_vec();
    drop(lab);
    println!("teardown {:?}", t.elapsed());
    assert_gone(&names)
}

fn assert_gone(names: &[String]) -> Result<()> {
    let list = netns_list()?;
    for ns in names {
        ensure!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(ns.as_str())),
            "{ns} is still there after drop:\n{list}"
        );
    }
    Ok(())
}
