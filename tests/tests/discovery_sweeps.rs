//! Sweeps back to back, compared with nmap every time: no address missed, none made up.
//! Each lab lives in network namespaces the test builds (198.18.0.0/15 only; the scanner has
//! no route out).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use caretaker_tests::bin;
use caretaker_tests::lab::{self, Lab};

/// `caretaker-collector scan ARGS --json --no-dns --ports ""` in the scanner: the addresses
/// listed, and how long it took.
fn sweep(lab: &Lab, ranges: &[&str]) -> Result<(BTreeSet<Ipv4Addr>, f64)> {
    let mut args = vec!["scan", "--json", "--no-dns", "--ports", ""];
    args.extend_from_slice(ranges);
    let started = Instant::now();
    let output = {
        let _guard = lab::sweep_guard();
        lab.scanner_cmd(bin("caretaker-collector"), &args)
            .output()?
    };
    let took = started.elapsed().as_secs_f64();
    ensure!(
        output.status.success(),
        "scan failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let ips = String::from_utf8(output.stdout)?
        .lines()
        .map(|line| {
            let host: serde_json::Value = serde_json::from_str(line)?;
            host["ip"]
                .as_str()
                .context("ip")?
                .parse()
                .context("an address")
        })
        .collect::<Result<_>>()?;
    Ok((ips, took))
}

fn diff(expected: &BTreeSet<Ipv4Addr>, found: &BTreeSet<Ipv4Addr>) -> String {
    format!(
        "missed {:?}, extra {:?}",
        expected.difference(found).collect::<Vec<_>>(),
        found.difference(expected).collect::<Vec<_>>()
    )
}

#[test]
fn a_sparse_lab_swept_ten_times_back_to_back_matches_nmap_every_time() -> Result<()> {
    let mut lab = Lab::new()?;
    let unplugged = lab.add_host_ns("198.18.1.99".parse()?)?;
    lab.add_hosts(12)?;
    // A routed /24 (246 silent addresses behind the router) besides the LAN's /22 (1,010).
    let routed = lab.add_routed("198.19.0.0/24", 10)?;
    // A host that was there a moment ago leaves a neighbour entry behind: not an answer.
    lab.set_link(&unplugged, false)?;
    let lan = lab.lan().to_string();
    let ranges = [lan.as_str(), "198.19.0.0/24"];
    let mut expected: BTreeSet<Ipv4Addr> = lab
        .hosts()
        .iter()
        .map(|h| h.ip)
        .filter(|ip| *ip != unplugged.ip)
        .chain(lab.infra_addrs().iter().copied())
        .chain(routed)
        .collect();
    expected.remove(&lab::SCANNER_IP);
    for round in 1..=10 {
        let (ours, took) = sweep(&lab, &ranges)?;
        // -T4: nmap's timing for a fast, reliable network (the lab): the same hosts as its
        // default, sooner (its time goes on the routed range's silent addresses).
        let (_, mut nmap) = lab::nmap_sn(&lab, &ranges, &["-T4"])?;
        nmap.remove(&lab::SCANNER_IP);
        println!(
            "sweep {round}: {} hosts in {took:.2} s; nmap {}",
            ours.len(),
            nmap.len()
        );
        assert_eq!(
            nmap,
            expected,
            "nmap, sweep {round}: {}",
            diff(&expected, &nmap)
        );
        assert_eq!(ours, nmap, "sweep {round}: {}", diff(&nmap, &ours));
    }
    Ok(())
}

#[test]
fn a_crowded_segment_swept_twenty_times_misses_nobody() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.add_hosts(300)?;
    let lan = lab.lan().to_string();
    let mut expected: BTreeSet<Ipv4Addr> = lab
        .hosts()
        .iter()
        .map(|h| h.ip)
        .chain(lab.infra_addrs().iter().copied())
        .collect();
    expected.remove(&lab::SCANNER_IP);
    let (_, mut nmap) = lab::nmap_sn(&lab, &[&lan], &[])?;
    nmap.remove(&lab::SCANNER_IP);
    assert_eq!(nmap, expected, "nmap: {}", diff(&expected, &nmap));
    let mut times = Vec::new();
    for round in 1..=20 {
        let (ours, took) = sweep(&lab, &[&lan])?;
        times.push(took);
        assert_eq!(ours, expected, "sweep {round}: {}", diff(&expected, &ours));
    }
    println!(
        "20 sweeps of {lan} with {} hosts: {times:.2?} s",
        expected.len()
    );
    Ok(())
}
