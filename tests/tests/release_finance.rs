//! Release and Financial Management (issue 10) on the real collector, with a real agent on a
//! lab PC reporting this Debian machine's dpkg packages and a printer simulated by snmpsimd:
//! a minimum version above the installed `bash` makes the install outdated and opens an
//! incident, zero licences open an over-deployment incident (both mailed to a real SMTP
//! server, both resolved once the policy is met again); the printer's page counter moving
//! between two sweeps becomes pages printed this month; a register asset whose warranty ends
//! in a few days gets one notice, mailed once, and is no repair.

use std::io::{Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use caretaker_tests::bin;
use caretaker_tests::daemon::Daemon;
use caretaker_tests::lab::{self, Lab};
use caretaker_tests::smtp::SmtpServer;
use serde_json::{Value, json};

const PRINTER: &str = "hp_laserjet-mfp-m130nw";
const PAGES_BEFORE: u64 = 15232;
const PAGES_AFTER: u64 = 15352;

/// prtMarkerLifeCount.1.1 (the OID the collector reads, marker 1 of printer 1), dotted as the
/// recording and `snmpget` write it; its value in the recording is `PAGES_BEFORE`.
fn page_counter() -> String {
    use caretaker_collector::scan::snmp::tables::oids::PRT_MARKER_LIFE_COUNT;
    PRT_MARKER_LIFE_COUNT
        .iter()
        .chain(&[1, 1])
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// Every rule but the three under test is off: the agent reports this machine's disks,
/// memory and CPU, and the recording's supplies, which are not the test's to decide.
const RULES: &str = "[rules.host_down]\nenabled = false\n[rules.agent_silent]\nenabled = false\n\
    [rules.disk_full]\nenabled = false\n[rules.memory_pressure]\nenabled = false\n\
    [rules.cpu_saturation]\nenabled = false\n[rules.supply_low]\nenabled = false\n\
    [rules.printer_error]\nenabled = false\n[rules.ups_on_battery]\nenabled = false\n\
    [rules.unknown_device]\nenabled = false\n[rules.unauthorised_change]\nenabled = false\n\
    [rules.reboots]\nenabled = false\n";

fn incidents(daemon: &Daemon, status: &str) -> Result<Vec<Value>> {
    daemon
        .curl(&format!("/api/v1/incidents?status={status}"))?
        .as_array()
        .cloned()
        .context("incident list")
}

fn find<'a>(list: &'a [Value], rule: &str, asset: &str) -> Option<&'a Value> {
    list.iter()
        .find(|i| i["rule"] == rule && i["asset_id"] == asset)
}

/// The version dpkg has installed of `package` on this machine.
fn installed(package: &str) -> Result<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .context("dpkg-query runs")?;
    ensure!(out.status.success(), "dpkg-query -W {package}: {:?}", out);
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

/// A version above `version`: the next major number.
fn above(version: &str) -> Result<String> {
    let upstream = version.split_once(':').map_or(version, |(_, rest)| rest);
    let major: u64 = upstream
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|d| d.parse().ok())
        .with_context(|| format!("no leading number in {version:?}"))?;
    Ok(match version.split_once(':') {
        Some((epoch, _)) => format!("{epoch}:{}.0", major + 1),
        None => format!("{}.0", major + 1),
    })
}

/// Replaces `[[release.title]]` tables in the daemon's config with `policy` and reloads.
fn set_policy(daemon: &Daemon, policy: &str) -> Result<()> {
    let path = daemon.dir.path().join("collector.toml");
    let text = std::fs::read_to_string(&path)?;
    let base = text
        .split_once("\n[[release.title]]")
        .map_or(text.as_str(), |(b, _)| b)
        .trim_end();
    std::fs::write(&path, format!("{base}\n{policy}"))?;
    let (status, body) = daemon.post("/api/v1/reload", "{}")?;
    ensure!(status == 200, "reload: {status} {body}");
    Ok(())
}

/// The copy of the printer's recording snmpsimd serves.
fn served_recording(lab: &Lab) -> Result<PathBuf> {
    for entry in std::fs::read_dir(lab.dir())? {
        let path = entry?
            .path()
            .join("data")
            .join(format!("{PRINTER}.snmprec"));
        if path.exists() {
            return Ok(path);
        }
    }
    bail!("no served copy of {PRINTER} under {}", lab.dir().display())
}

/// Sets the page counter in the served recording, in place (same length, same file:
/// snmpsimd reads records by their offset in the file it opened).
fn set_counter(lab: &Lab, from: u64, to: u64) -> Result<()> {
    let path = served_recording(lab)?;
    let text = std::fs::read_to_string(&path)?;
    let (old, new) = (
        format!("{}|65|{from}\n", page_counter()),
        format!("{}|65|{to}\n", page_counter()),
    );
    ensure!(old.len() == new.len(), "the counter must keep its length");
    let at = text
        .find(&old)
        .with_context(|| format!("{old:?} in {}", path.display()))?;
    let mut file = std::fs::OpenOptions::new().write(true).open(&path)?;
    file.seek(SeekFrom::Start(at as u64))?;
    file.write_all(new.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn snmp_counter(lab: &Lab, ip: Ipv4Addr) -> Result<String> {
    let out = lab::run(&mut lab.scanner_cmd(
        "snmpget",
        &[
            "-v2c",
            "-c",
            "public",
            "-Oqv",
            "-t",
            "1",
            &ip.to_string(),
            &page_counter(),
        ],
    ))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn this_month() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:04}-{:02}", now.year(), u8::from(now.month()))
}

fn in_days(days: i64) -> String {
    let d = time::OffsetDateTime::now_utc().date() + time::Duration::days(days);
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[test]
fn release_and_finance_from_a_real_agent_a_printer_and_the_register() -> Result<()> {
    let _guard = lab::sweep_guard();
    let mut lab = Lab::new()?;
    let pc = lab.add_host_ns("198.18.0.50".parse()?)?;
    let printer_ip: Ipv4Addr = "198.18.0.60".parse()?;
    lab.start_snmpsim(&[(printer_ip, PRINTER)])?;
    let mail_dir = tempfile::tempdir()?;
    let smtp = SmtpServer::start_in_netns(mail_dir.path(), lab.scanner_ns());
    let extra = format!(
        "{RULES}[incidents]\nevaluate_every = \"1s\"\nhold_down = \"3s\"\n\
         [finance]\nwarranty_notice_days = 30\n\
         [smtp]\nserver = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\n\
         from = \"caretaker@school.example\"\nto = [\"technician@school.example\"]\n",
        port = smtp.port
    );
    let mut daemon = Daemon::start(&lab, &extra)?;

    // A real agent on the PC, with this machine's real dpkg database.
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
        .args(["--heartbeat-interval", "2s", "--status-interval", "5s"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let result = run(&lab, &mut daemon, &smtp, printer_ip);
    let _ = agent.kill();
    let _ = agent.wait();
    result
}

fn run(lab: &Lab, daemon: &mut Daemon, smtp: &SmtpServer, printer_ip: Ipv4Addr) -> Result<()> {
    let bash = installed("bash")?;
    daemon.wait_until(
        "the agent's PC with its software and the printer in the register",
        Duration::from_secs(90),
        |d| {
            let pc = d.asset_with_ip("198.18.0.50")?;
            let printer = d.asset_with_ip(&printer_ip.to_string())?;
            let title = d.curl("/api/v1/software/bash")?;
            Ok(
                pc.is_some_and(|a| a["sources"].to_string().contains("agent"))
                    && printer.is_some_and(|p| p["kind"] == "printer")
                    && title["installs"] == 1,
            )
        },
    )?;
    let pc_id = daemon.asset_with_ip("198.18.0.50")?.context("pc")?["id"]
        .as_str()
        .context("id")?
        .to_owned();
    let title = daemon.curl("/api/v1/software/bash")?;
    assert_eq!(title["versions"][0]["version"], bash.as_str(), "{title}");
    assert_eq!(
        title["versions"][0]["assets"][0]["asset_id"],
        pc_id.as_str()
    );
    assert_eq!(
        title["minimum_version"],
        Value::Null,
        "no policy yet: {title}"
    );
    assert_eq!(title["outdated"], json!([]));

    // 1. Release Management: a minimum above what is installed, and no licences.
    let minimum = above(&bash)?;
    set_policy(
        daemon,
        &format!(
            "[[release.title]]\nname = \"bash\"\nminimum_version = \"{minimum}\"\nlicences = 0\nincident = true\n"
        ),
    )?;
    daemon.wait_until(
        "the outdated and over-deployment incidents",
        Duration::from_secs(30),
        |d| {
            let open = incidents(d, "open")?;
            Ok(find(&open, "outdated_software", "software:bash").is_some()
                && find(&open, "licence_overdeployed", "software:bash").is_some())
        },
    )?;
    let open = incidents(daemon, "open")?;
    let outdated = find(&open, "outdated_software", "software:bash").context("outdated")?;
    assert_eq!(
        outdated["title"],
        format!("bash older than {minimum} on 1 asset(s)"),
        "{outdated}"
    );
    assert_eq!(
        outdated["measured"]["outdated"][0]["asset_id"],
        pc_id.as_str()
    );
    assert_eq!(
        outdated["measured"]["outdated"][0]["version"],
        bash.as_str()
    );
    let over = find(&open, "licence_overdeployed", "software:bash").context("over")?;
    assert_eq!(
        over["title"],
        "bash installed on 1 assets, 0 licence(s) owned"
    );
    let title = daemon.curl("/api/v1/software/bash")?;
    assert_eq!(title["minimum_version"], minimum.as_str(), "{title}");
    assert_eq!(title["outdated"][0]["asset_id"], pc_id.as_str(), "{title}");
    assert_eq!(title["versions"][0]["outdated"], true);
    assert_eq!(title["licences"], 0);
    assert_eq!(title["over_deployed"], 1);
    let list = daemon.curl("/api/v1/software?q=bash")?;
    let listed = list
        .as_array()
        .and_then(|l| l.iter().find(|t| t["key"] == "bash"))
        .context("bash in the software list")?;
    assert_eq!(listed["outdated"], 1, "{listed}");
    assert_eq!(listed["over_deployed"], 1);
    let older = format!("bash older than {minimum}");
    caretaker_tests::wait_for(Duration::from_secs(60), "both release mails", || {
        let subjects: Vec<String> = smtp
            .messages()
            .iter()
            .map(|m| m.subject().to_owned())
            .collect();
        (subjects.iter().any(|s| s.contains(&older))
            && subjects.iter().any(|s| s.contains("0 licence(s) owned")))
        .then_some(())
    });

    // The policy met again (the installed version is the minimum, one licence): both resolve.
    set_policy(
        daemon,
        &format!(
            "[[release.title]]\nname = \"bash\"\nminimum_version = \"{bash}\"\nlicences = 1\nincident = true\n"
        ),
    )?;
    daemon.wait_until(
        "both release incidents resolved",
        Duration::from_secs(30),
        |d| {
            let open = incidents(d, "open")?;
            Ok(find(&open, "outdated_software", "software:bash").is_none()
                && find(&open, "licence_overdeployed", "software:bash").is_none())
        },
    )?;
    let title = daemon.curl("/api/v1/software/bash")?;
    assert_eq!(title["outdated"], json!([]), "{title}");
    assert_eq!(title["over_deployed"], Value::Null);

    // 2. Pages printed: the counter is read at one sweep, moves, and the next sweep counts.
    let printer_id = daemon
        .asset_with_ip(&printer_ip.to_string())?
        .context("printer")?["id"]
        .as_str()
        .context("id")?
        .to_owned();
    let printer_pages = |d: &Daemon| -> Result<Value> {
        let pages = d.curl("/api/v1/finance/pages")?;
        pages["printers"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["asset_id"] == printer_id.as_str()))
            .cloned()
            .with_context(|| format!("the printer in {pages}"))
    };
    daemon.wait_until(
        "the printer's first counter reading",
        Duration::from_secs(60),
        |d| Ok(printer_pages(d)?["counter"] == PAGES_BEFORE),
    )?;
    let month = this_month();
    let before = printer_pages(daemon)?;
    assert_eq!(before["months"][0], json!([month, 0]), "{before}");
    set_counter(lab, PAGES_BEFORE, PAGES_AFTER)?;
    assert_eq!(
        snmp_counter(lab, printer_ip)?,
        PAGES_AFTER.to_string(),
        "snmpsimd serves the new counter"
    );
    daemon.wait_until(
        "the pages between two sweeps",
        Duration::from_secs(60),
        |d| Ok(printer_pages(d)?["counter"] == PAGES_AFTER),
    )?;
    let after = printer_pages(daemon)?;
    assert_eq!(
        after["months"][0],
        json!([month, PAGES_AFTER - PAGES_BEFORE]),
        "{after}"
    );
    let finance = daemon.curl("/api/v1/finance")?;
    assert_eq!(finance["months"][0], month.as_str(), "{finance}");

    // 3. A register asset whose warranty ends in 5 days: one notice, one mail; one far away
    //    gets none.
    let (status, soon) = daemon.post(
        "/api/v1/assets",
        &json!({"kind": "display", "name": "B7 display", "asset_tag": "CT-0700",
                "supplier": "AV Supplies Ltd", "warranty_end": in_days(5), "cost_pence": 89900,
                "department": "Science"})
        .to_string(),
    )?;
    assert_eq!(status, 201, "{soon}");
    let soon_id = soon["id"].as_str().context("id")?.to_owned();
    let (status, far) = daemon.post(
        "/api/v1/assets",
        &json!({"kind": "display", "name": "B8 display", "asset_tag": "CT-0800",
                "warranty_end": in_days(200)})
        .to_string(),
    )?;
    assert_eq!(status, 201, "{far}");
    let far_id = far["id"].as_str().context("id")?.to_owned();
    daemon.wait_until("the warranty notice", Duration::from_secs(30), |d| {
        Ok(find(&incidents(d, "open")?, "warranty_expiry", &soon_id).is_some())
    })?;
    let open = incidents(daemon, "open")?;
    let notice = find(&open, "warranty_expiry", &soon_id).context("notice")?;
    assert_eq!(
        notice["title"],
        format!("Warranty of B7 display ends in 5 days ({})", in_days(5)),
        "{notice}"
    );
    assert!(
        notice["description"]
            .as_str()
            .is_some_and(|d| d.contains("tag CT-0700, supplier AV Supplies Ltd")),
        "{notice}"
    );
    assert!(
        find(&open, "warranty_expiry", &far_id).is_none(),
        "{open:#?}"
    );
    let warranties = daemon.curl("/api/v1/finance/warranties")?;
    let soon_rows: Vec<&Value> = warranties["soon"]
        .as_array()
        .context("soon")?
        .iter()
        .collect();
    assert_eq!(soon_rows.len(), 1, "{warranties}");
    assert_eq!(soon_rows[0]["asset_id"], soon_id.as_str());
    assert_eq!(soon_rows[0]["days_left"], 5);
    let notice_mails = |smtp: &SmtpServer| {
        smtp.messages()
            .iter()
            .filter(|m| m.subject().contains("Warranty of B7 display"))
            .count()
    };
    caretaker_tests::wait_for(Duration::from_secs(60), "the notice's mail", || {
        (notice_mails(smtp) > 0).then_some(())
    });
    assert_eq!(notice_mails(smtp), 1, "{:?}", smtp.messages());
    assert!(
        smtp.messages()
            .iter()
            .all(|m| !m.subject().contains("Warranty of B8 display")),
        "no mail for the warranty far away"
    );
    // Many evaluations later (one a second): still one notice and one mail.
    std::thread::sleep(Duration::from_secs(8));
    let all = incidents(daemon, "all")?;
    let notices = all
        .iter()
        .filter(|i| i["rule"] == "warranty_expiry")
        .count();
    assert_eq!(notices, 1, "{all:#?}");
    assert_eq!(notice_mails(smtp), 1, "{:?}", smtp.messages());
    // A notice is no repair: the display costs nothing in repairs.
    let repairs = daemon.curl("/api/v1/finance/repairs")?;
    assert!(
        !repairs["assets"]
            .as_array()
            .context("repairs")?
            .iter()
            .any(|r| r["asset_id"] == soon_id.as_str()),
        "{repairs}"
    );
    let costs = daemon.curl("/api/v1/finance/costs")?;
    let science = costs["by_department"]
        .as_array()
        .and_then(|l| l.iter().find(|g| g["name"] == "Science"))
        .context("Science")?;
    assert_eq!(science["total_pence"], 89_900, "{costs}");
    Ok(())
}
