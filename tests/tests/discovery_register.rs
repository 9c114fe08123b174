//! The collector daemon sweeping a namespace lab on its `[scan]` interval and merging what it
//! finds into the asset register, next to a real agent running on one of the lab's hosts.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use caretaker_tests::bin;
use caretaker_tests::daemon::Daemon;
use caretaker_tests::lab::Lab;

#[test]
fn the_daemon_registers_discovered_devices_merges_agent_pcs_and_sees_hosts_go_down() -> Result<()> {
    let mut lab = Lab::new()?;
    // Fixed addresses first: random ones then avoid them.
    let pc = lab.add_host_ns("198.18.0.50".parse()?)?;
    lab.start_snmpsim(&[("198.18.1.10".parse()?, "hp_laserjet-mfp-m130nw")])?;
    let plain = lab.add_hosts(5)?;
    let mut daemon = Daemon::start(&lab, "")?;

    // A real agent on the PC host, reporting to the collector over the lab network.
    let grpc_port = daemon.grpc;
    let enroll = std::fs::read_to_string(daemon.dir.path().join("data/enroll-token"))?
        .trim()
        .to_owned();
    let agent_state = tempfile::tempdir()?;
    let mut agent = Command::new("ip")
        .args(["netns", "exec", &pc.netns])
        .arg(bin("caretaker-agent"))
        .args([
            "run",
            "--collector",
            &format!("http://198.18.0.1:{grpc_port}"),
            "--enroll-token",
            &enroll,
        ])
        .arg("--state-dir")
        .arg(agent_state.path())
        .args(["--heartbeat-interval", "2s", "--status-interval", "5s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;

    let pc_ip = pc.ip.to_string();
    daemon.wait_until(
        "the agent PC to be one asset seen by agent and ping",
        Duration::from_secs(60),
        |d| {
            Ok(d.asset_with_ip(&pc_ip)?
                .is_some_and(|a| a["sources"] == serde_json::json!(["agent", "ping"])))
        },
    )?;
    daemon.wait_until(
        "every plain host and the printer",
        Duration::from_secs(60),
        |d| {
            let assets = d.assets()?;
            let printer = assets.iter().any(|a| {
                a["kind"] == "printer" && a["sources"] == serde_json::json!(["ping", "snmp"])
            });
            Ok(printer
                && plain.iter().all(|h| {
                    assets.iter().any(|a| {
                        a["macs"]
                            .as_array()
                            .is_some_and(|m| m.iter().any(|x| x == &h.mac))
                    })
                }))
        },
    )?;
    let assets = daemon.assets()?;
    let with_pc_ip: Vec<_> = assets
        .iter()
        .filter(|a| {
            a["ips"]
                .as_array()
                .is_some_and(|ips| ips.iter().any(|i| i == &pc_ip))
        })
        .collect();
    assert_eq!(
        with_pc_ip.len(),
        1,
        "the PC with an agent that answers ping is one asset: {with_pc_ip:#?}"
    );
    assert_eq!(with_pc_ip[0]["macs"], serde_json::json!([pc.mac]));

    // The printer's supplies and page count are in its asset record.
    let printer = assets
        .iter()
        .find(|a| a["kind"] == "printer")
        .context("printer")?
        .clone();
    let path = format!("/api/v1/assets/{}", printer["id"].as_str().context("id")?);
    daemon.wait_until("the printer's supplies", Duration::from_secs(30), |d| {
        Ok(d.curl(&path)?["supplies"]
            .as_array()
            .is_some_and(|s| !s.is_empty()))
    })?;
    let detail = daemon.curl(&path)?;
    let black = detail["supplies"]
        .as_array()
        .context("supplies")?
        .iter()
        .find(|s| {
            s["description"]
                .as_str()
                .is_some_and(|d| d.starts_with("Black"))
        })
        .with_context(|| format!("black toner in {detail:#}"))?;
    assert_eq!(black["percent"].as_f64().map(f64::round), Some(28.0));
    assert_eq!(detail["counters"]["page_count"], 15232);
    let capacity = daemon.curl(&format!(
        "/api/v1/capacity?asset={}",
        printer["id"].as_str().context("id")?
    ))?;
    let series = capacity["supplies"].as_array().context("supply series")?;
    assert!(
        series.iter().any(|s| s["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("Black"))
            && s["percent"] == 28.0),
        "{capacity:#}"
    );
    assert!(
        printer["model"]
            .as_str()
            .is_some_and(|m| m.contains("M130"))
    );

    // Every device's first appearance is a change record.
    let changes = daemon.curl("/api/v1/changes")?;
    let created = changes
        .as_array()
        .context("changes")?
        .iter()
        .filter(|c| c["kind"] == "created")
        .count();
    assert!(created >= plain.len() + 2, "{changes:#}");

    // A plain host whose link goes down turns `down` after the next sweeps.
    lab.set_link(&plain[0], false)?;
    let mac = plain[0].mac.clone();
    daemon.wait_until(
        "the unplugged host to show down",
        Duration::from_secs(40),
        |d| {
            Ok(d.assets()?.iter().any(|a| {
                a["macs"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|x| x == &mac))
                    && a["status"] == "down"
            }))
        },
    )?;
    // Silent past [scan] gone_after (4 s here): one "removed" change record.
    let gone_id = daemon
        .assets()?
        .into_iter()
        .find(|a| {
            a["macs"]
                .as_array()
                .is_some_and(|m| m.iter().any(|x| x == &mac))
        })
        .context("unplugged asset")?["id"]
        .as_str()
        .context("id")?
        .to_owned();
    daemon.wait_until(
        "a device-gone change record",
        Duration::from_secs(40),
        |d| {
            let changes = d.curl(&format!("/api/v1/changes?asset={gone_id}"))?;
            Ok(changes.as_array().is_some_and(|c| {
                c.iter()
                    .filter(|c| c["kind"] == "removed" && c["field"] == "asset")
                    .count()
                    == 1
            }))
        },
    )?;
    let _ = agent.kill();
    let _ = agent.wait();
    Ok(())
}
