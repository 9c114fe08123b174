//! Incidents end to end in a namespace lab: a host going down opens one incident and emails
//! the technician (real aiosmtpd), coming back resolves it with a threaded recovery mail; a
//! "switch" going down with devices behind it is one incident naming them; a program removed
//! outside a change window on a PC with a real agent is an incident.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use caretaker_tests::bin;
use caretaker_tests::daemon::Daemon;
use caretaker_tests::lab::Lab;
use caretaker_tests::smtp::SmtpServer;
use serde_json::Value;

fn open_incidents(daemon: &Daemon<'_>) -> Result<Vec<Value>> {
    daemon
        .curl("/api/v1/incidents?status=open")?
        .as_array()
        .cloned()
        .context("incident list")
}

fn asset_id(daemon: &Daemon<'_>, ip: &str) -> Result<String> {
    Ok(daemon.asset_with_ip(ip)?.context("asset")?["id"]
        .as_str()
        .context("id")?
        .to_owned())
}

#[test]
fn incidents_open_email_resolve_and_fold_behind_a_switch() -> Result<()> {
    let mut lab = Lab::new()?;
    let host = lab.add_host_ns("198.18.0.60".parse()?)?;
    let switch = lab.add_host_ns("198.18.0.2".parse()?)?;
    let behind = lab.add_hosts_at(&[
        ("198.18.2.10".parse()?, None),
        ("198.18.2.11".parse()?, None),
        ("198.18.2.12".parse()?, None),
    ])?;
    let pc = lab.add_host_ns("198.18.0.50".parse()?)?;
    let mail_dir = tempfile::tempdir()?;
    let smtp = SmtpServer::start_in_netns(mail_dir.path(), lab.scanner_ns());
    let extra = format!(
        "[rules.host_down]\nmisses = 2\n\
         [rules.disk_full]\nenabled = false\n[rules.memory_pressure]\nenabled = false\n[rules.cpu_saturation]\nenabled = false\n\
         [incidents]\nevaluate_every = \"1s\"\nhold_down = \"3s\"\n\
         [[topology.parents]]\nchild = \"198.18.2.0/24\"\nparent = \"198.18.0.2\"\n\
         [smtp]\nserver = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nfrom = \"caretaker@school.example\"\n\
         to = [\"technician@school.example\"]\nbase_url = \"http://caretaker.school.example:8080\"\n",
        port = smtp.port
    );
    let mut daemon = Daemon::start(&lab, &extra)?;

    // A PC with a real agent, whose packages come from a dpkg database the test edits. (Its
    // disks, memory and CPU are this machine's, so those rules are off: their state is not
    // the test's to decide.)
    let admindir = tempfile::tempdir()?;
    let dpkg_status = std::fs::read_to_string("/var/lib/dpkg/status")?;
    std::fs::write(admindir.path().join("status"), &dpkg_status)?;
    let agent_state = tempfile::tempdir()?;
    let mut agent = Command::new("ip")
        .args(["netns", "exec", &pc.netns])
        .arg(bin("caretaker-agent"))
        .args([
            "run",
            "--collector",
            &format!("http://198.18.0.1:{}", daemon.grpc),
            "--enroll-token",
            &daemon.enroll_token()?,
        ])
        .arg("--state-dir")
        .arg(agent_state.path())
        .arg(format!("--dpkg-admindir={}", admindir.path().display()))
        .args([
            "--heartbeat-interval",
            "2s",
            "--status-interval",
            "5s",
            "--inventory-interval",
            "2s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;

    let everyone = [
        "198.18.0.60",
        "198.18.0.2",
        "198.18.2.10",
        "198.18.2.11",
        "198.18.2.12",
    ];
    daemon.wait_until(
        "every lab device in the register",
        Duration::from_secs(60),
        |d| {
            Ok(everyone
                .iter()
                .all(|ip| d.asset_with_ip(ip).ok().flatten().is_some())
                && d.asset_with_ip("198.18.0.50")?
                    .is_some_and(|a| a["sources"] == serde_json::json!(["agent", "ping"])))
        },
    )?;
    assert!(
        open_incidents(&daemon)?.is_empty(),
        "a fresh install opens nothing: {:#?}",
        open_incidents(&daemon)?
    );

    // 1. A host's link goes down: one incident, one email.
    let host_id = asset_id(&daemon, "198.18.0.60")?;
    let unplugged = Instant::now();
    lab.set_link(&host, false)?;
    daemon.wait_until("the host-down incident", Duration::from_secs(60), |d| {
        Ok(open_incidents(d)?
            .iter()
            .any(|i| i["asset_id"] == host_id.as_str() && i["rule"] == "host_down"))
    })?;
    let to_incident = unplugged.elapsed();
    let mails = smtp.wait_for_messages(1, Duration::from_secs(60));
    let to_email = unplugged.elapsed();
    println!("host down -> incident {to_incident:?}, -> email accepted {to_email:?}");
    let opened = &mails[0];
    assert!(opened.subject().starts_with("[P2]"), "{}", opened.subject());
    assert!(
        opened.subject().contains("198.18.0.60"),
        "{}",
        opened.subject()
    );
    let incident = open_incidents(&daemon)?
        .into_iter()
        .find(|i| i["asset_id"] == host_id.as_str())
        .context("incident")?;
    let number = incident["number"].as_str().context("number")?.to_owned();
    assert!(opened.subject().contains("down"), "{}", opened.subject());
    assert!(
        opened.message_id().contains(&number),
        "{}",
        opened.message_id()
    );

    // 2. It comes back: resolved by itself, and a recovery mail in the same thread.
    lab.set_link(&host, true)?;
    daemon.wait_until(
        "the incident to resolve itself",
        Duration::from_secs(60),
        |d| {
            Ok(!open_incidents(d)?
                .iter()
                .any(|i| i["asset_id"] == host_id.as_str()))
        },
    )?;
    let mails = smtp.wait_for_messages(2, Duration::from_secs(60));
    let recovery = mails
        .iter()
        .find(|m| m.header("In-Reply-To").is_some())
        .context("recovery mail")?;
    assert_eq!(recovery.header("In-Reply-To"), Some(opened.message_id()));
    let resolved = daemon.curl(&format!("/api/v1/incidents/{number}"))?;
    assert_eq!(resolved["state"], "resolved");
    let availability = daemon.curl(&format!("/api/v1/availability?asset={host_id}&window=24h"))?;
    assert!(
        !availability["outages"]
            .as_array()
            .context("outages")?
            .is_empty(),
        "{availability:#}"
    );
    assert!(
        availability["around_the_clock"]["percent"]
            .as_f64()
            .is_some_and(|p| p < 100.0),
        "{availability:#}"
    );

    // Technician actions on a resolved incident: a conflict, not a crash.
    let (status, body) = daemon.post(&format!("/api/v1/incidents/{number}/ack"), "{}")?;
    assert_eq!(status, 409, "{body}");
    let (status, _) = daemon.post("/api/v1/incidents/INC9999999/ack", "{}")?;
    assert_eq!(status, 404);

    // 3. The switch and everything behind it go down: one incident naming them.
    let switch_id = asset_id(&daemon, "198.18.0.2")?;
    lab.set_link(&switch, false)?;
    for h in &behind {
        lab.set_link(h, false)?;
    }
    daemon.wait_until(
        "one incident for the switch",
        Duration::from_secs(60),
        |d| {
            Ok(open_incidents(d)?.iter().any(|i| {
                i["asset_id"] == switch_id.as_str()
                    && i["affected"].as_array().is_some_and(|a| a.len() == 3)
            }))
        },
    )?;
    // Give the rules a few more rounds to (wrongly) open per-device incidents.
    std::thread::sleep(Duration::from_secs(4));
    let open = open_incidents(&daemon)?;
    let host_down: Vec<_> = open.iter().filter(|i| i["rule"] == "host_down").collect();
    assert_eq!(host_down.len(), 1, "{host_down:#?}");
    assert!(
        host_down[0]["title"]
            .as_str()
            .is_some_and(|t| t.contains("3 devices")),
        "{}",
        host_down[0]["title"]
    );

    // 4. A program removed from the PC outside any change window.
    let removed = "adduser";
    let edited: String = dpkg_status
        .split("\n\n")
        .filter(|s| s.lines().next() != Some(&format!("Package: {removed}")))
        .collect::<Vec<_>>()
        .join("\n\n");
    std::fs::write(admindir.path().join("status"), edited)?;
    daemon.wait_until(
        "an unauthorised-change incident",
        Duration::from_secs(60),
        |d| {
            Ok(open_incidents(d)?.iter().any(|i| {
                i["rule"] == "unauthorised_change"
                    && i["title"].as_str().is_some_and(|t| t.contains(removed))
            }))
        },
    )?;
    let _ = agent.kill();
    let _ = agent.wait();
    Ok(())
}
