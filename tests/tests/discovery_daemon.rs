//! The daemon's discovery over time, in namespace labs (198.18.0.0/15 only; the scanner has
//! no route out): twenty sweeps of a crowded segment change nothing, and a router whose link
//! dies is one path incident naming the devices behind it, one email, one recovery.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use caretaker_tests::daemon::Daemon;
use caretaker_tests::lab::Lab;
use caretaker_tests::smtp::SmtpServer;
use serde_json::Value;

/// `live=N` of every "Network scan merged" line in the daemon's log.
fn merged_sweeps(daemon: &Daemon<'_>) -> Vec<usize> {
    daemon
        .log()
        .lines()
        .filter(|l| l.contains("Network scan merged into the register"))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("live="))
                .and_then(|n| n.parse().ok())
        })
        .collect()
}

#[test]
fn twenty_sweeps_of_a_crowded_segment_miss_nobody_invent_nobody_and_change_nothing() -> Result<()> {
    let mut lab = Lab::new()?;
    lab.add_hosts(300)?;
    let expected: BTreeSet<String> = lab.hosts().iter().map(|h| h.ip.to_string()).collect();
    let mut daemon = Daemon::start(
        &lab,
        "[rules.disk_full]\nenabled = false\n[rules.memory_pressure]\nenabled = false\n\
         [rules.cpu_saturation]\nenabled = false\n",
    )?;
    daemon.wait_until("twenty merged sweeps", Duration::from_secs(600), |d| {
        Ok(merged_sweeps(d).len() >= 20)
    })?;
    let sweeps = merged_sweeps(&daemon);
    println!("live per sweep: {sweeps:?}");
    ensure!(
        sweeps.iter().all(|n| *n == expected.len()),
        "every sweep finds all {} hosts and nothing else: {sweeps:?}",
        expected.len()
    );
    let assets = daemon.assets()?;
    let ips: BTreeSet<String> = assets
        .iter()
        .flat_map(|a| a["ips"].as_array().cloned().unwrap_or_default())
        .filter_map(|ip| ip.as_str().map(str::to_owned))
        .filter(|ip| !ip.contains(':'))
        .collect();
    assert_eq!(ips, expected, "no phantom and no missing asset");
    assert_eq!(assets.len(), expected.len());
    let changes = daemon.curl("/api/v1/changes?limit=5000")?;
    let not_created: Vec<&Value> = changes
        .as_array()
        .context("changes")?
        .iter()
        .filter(|c| c["kind"] != "created")
        .collect();
    assert!(
        not_created.is_empty(),
        "no change records: {not_created:#?}"
    );
    let incidents = daemon.curl("/api/v1/incidents?status=all")?;
    assert_eq!(incidents.as_array().map(Vec::len), Some(0), "{incidents:#}");
    Ok(())
}

#[test]
fn a_router_whose_link_dies_is_one_path_incident_one_email_one_recovery() -> Result<()> {
    let mut lab = Lab::with_prefix(24)?;
    lab.add_hosts(4)?;
    let routed = "198.19.0.0/22";
    let behind = lab.add_routed(routed, 32)?;
    let router = lab.router_of(routed).context("router")?;
    let mail_dir = tempfile::tempdir()?;
    let smtp = SmtpServer::start_in_netns(mail_dir.path(), lab.scanner_ns());
    let extra = format!(
        "[rules.host_down]\nmisses = 2\n\
         [rules.disk_full]\nenabled = false\n[rules.memory_pressure]\nenabled = false\n[rules.cpu_saturation]\nenabled = false\n\
         [incidents]\nevaluate_every = \"1s\"\nhold_down = \"3s\"\n\
         [smtp]\nserver = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nfrom = \"caretaker@school.example\"\n\
         to = [\"technician@school.example\"]\n",
        port = smtp.port
    );
    let mut daemon =
        Daemon::start_with_ranges(&lab, &[lab.lan().to_string(), routed.to_owned()], &extra)?;
    let behind_ips: Vec<String> = behind.iter().map(ToString::to_string).collect();
    daemon.wait_until(
        "every routed host and the router in the register",
        Duration::from_secs(90),
        |d| {
            let assets = d.assets()?;
            let has = |ip: &str| {
                assets.iter().any(|a| {
                    a["ips"]
                        .as_array()
                        .is_some_and(|ips| ips.iter().any(|i| i == ip))
                })
            };
            Ok(behind_ips.iter().all(|ip| has(ip)) && has(&router.ip.to_string()))
        },
    )?;
    let open = |d: &Daemon<'_>| -> Result<Vec<Value>> {
        d.curl("/api/v1/incidents?status=open")?
            .as_array()
            .cloned()
            .context("incidents")
    };
    ensure!(open(&daemon)?.is_empty(), "{:#?}", open(&daemon)?);

    lab.set_link(&router, false)?;
    daemon.wait_until("the path incident", Duration::from_secs(90), |d| {
        Ok(open(d)?
            .iter()
            .any(|i| i["asset_id"] == format!("path:{routed}").as_str()))
    })?;
    // A few more evaluation rounds in which per-device incidents would (wrongly) open.
    std::thread::sleep(Duration::from_secs(5));
    let incidents = open(&daemon)?;
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    let incident = &incidents[0];
    let title = incident["title"].as_str().unwrap_or_default();
    assert!(
        title.starts_with(&format!("Path to {routed} via {}", router.ip))
            && title.ends_with("down: 32 devices"),
        "{title}"
    );
    let affected = incident["affected"].as_array().context("affected")?;
    assert_eq!(affected.len(), 32);
    let mails = smtp.wait_for_messages(1, Duration::from_secs(60));
    assert!(
        mails[0].subject().contains(routed),
        "{}",
        mails[0].subject()
    );

    lab.set_link(&router, true)?;
    daemon.wait_until(
        "the path incident to resolve",
        Duration::from_secs(90),
        |d| Ok(open(d)?.is_empty()),
    )?;
    let mails = smtp.wait_for_messages(2, Duration::from_secs(60));
    std::thread::sleep(Duration::from_secs(3));
    let mails_now = smtp.messages();
    assert_eq!(
        mails_now.len(),
        2,
        "one email, one recovery: {:#?}",
        mails_now
            .iter()
            .map(|m| m.subject().to_owned())
            .collect::<Vec<_>>()
    );
    assert_eq!(
        mails[1].header("In-Reply-To"),
        Some(mails[0].message_id()),
        "the recovery answers the opening mail"
    );
    let all = daemon.curl("/api/v1/incidents?status=all")?;
    assert_eq!(all.as_array().map(Vec::len), Some(1), "{all:#}");
    Ok(())
}
