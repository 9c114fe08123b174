//! The real agent against the real collector on loopback: what a technician sees in the API
//! after installing the agent on this very machine.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use caretaker_tests::{
    AgentProcess, Collector, agent, agent_once, dpkg_installed_count, hostname, mem_total_bytes,
    physical_macs, wait_for,
};
use serde_json::Value;

fn only_asset(collector: &Collector) -> Value {
    let assets = collector.assets();
    assert_eq!(assets.len(), 1, "expected exactly one asset: {assets:#?}");
    assets[0].clone()
}

#[test]
fn an_agent_reports_this_machines_real_inventory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(&dir.path().join("collector"));
    agent_once(&collector, &dir.path().join("agent"), &[]);

    let asset = only_asset(&collector);
    assert_eq!(asset["hostname"], hostname());
    assert_eq!(asset["kind"], "pc");
    assert_eq!(asset["status"], "up");
    assert_eq!(asset["sources"], serde_json::json!(["agent"]));
    let macs: BTreeSet<String> = asset["macs"]
        .as_array()
        .expect("macs")
        .iter()
        .map(|m| m.as_str().expect("mac").to_owned())
        .collect();
    for mac in physical_macs() {
        assert!(
            macs.contains(&mac),
            "MAC {mac} of this machine missing from {macs:?}"
        );
    }

    let detail = collector.get(&format!("/assets/{}", asset["id"].as_str().expect("id")));
    let ram = detail["hardware"]["ram_bytes"].as_u64().expect("ram");
    let real = mem_total_bytes();
    assert!(
        ram.abs_diff(real) <= real / 20,
        "RAM {ram} vs MemTotal {real}"
    );
    let software = detail["software"].as_array().expect("software");
    assert_eq!(
        software.len(),
        dpkg_installed_count(None),
        "one entry per installed dpkg package"
    );
    let dpkg = software
        .iter()
        .find(|s| s["name"] == "dpkg")
        .expect("dpkg itself is installed");
    assert!(!dpkg["version"].as_str().expect("version").is_empty());
    assert!(!dpkg["publisher"].as_str().expect("publisher").is_empty());
    assert!(
        !detail["hardware"]["os"]["name"]
            .as_str()
            .expect("os")
            .is_empty()
    );

    // The first inventory is recorded as the asset's creation, nothing else yet.
    let changes = collector.get(&format!(
        "/changes?asset={}",
        asset["id"].as_str().expect("id")
    ));
    let kinds: Vec<_> = changes
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["kind"].clone())
        .collect();
    assert_eq!(kinds, vec![Value::from("created")]);
}

/// A dpkg database of this machine's packages that the test can edit.
fn copy_dpkg_status(dir: &Path) -> String {
    std::fs::create_dir_all(dir).expect("admindir");
    let status = std::fs::read_to_string("/var/lib/dpkg/status").expect("dpkg status");
    std::fs::write(dir.join("status"), &status).expect("write status");
    status
}

fn stanza(status: &str, package: &str) -> String {
    status
        .split("\n\n")
        .find(|s| s.lines().next() == Some(&format!("Package: {package}")))
        .unwrap_or_else(|| panic!("{package} is not in the dpkg status"))
        .to_owned()
}

#[test]
fn installed_removed_and_upgraded_packages_become_change_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(&dir.path().join("collector"));
    let admindir = dir.path().join("dpkg");
    let status = copy_dpkg_status(&admindir);
    let admin = format!("--dpkg-admindir={}", admindir.display());
    let state = dir.path().join("agent");
    agent_once(&collector, &state, &[&admin]);
    let asset = only_asset(&collector);
    let id = asset["id"].as_str().expect("id").to_owned();

    // Remove one package, upgrade another, install a new one.
    let removed = stanza(&status, "adduser");
    let old = stanza(&status, "dpkg");
    let old_version = old
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .expect("dpkg version")
        .to_owned();
    let new_version = format!("{old_version}+school1");
    let upgraded = old.replace(
        &format!("Version: {old_version}"),
        &format!("Version: {new_version}"),
    );
    let installed = "Package: caretaker-test-tool\nStatus: install ok installed\nPriority: optional\n\
                     Section: misc\nMaintainer: Caretaker Tests <tests@school.example>\n\
                     Architecture: all\nVersion: 2.4.1-1\nDescription: a package the test installs";
    let edited = status
        .replace(&format!("{removed}\n\n"), "")
        .replace(&old, &upgraded)
        + &format!("\n{installed}\n");
    std::fs::write(admindir.join("status"), edited).expect("edit status");
    agent_once(&collector, &state, &[&admin]);

    let changes = collector.get(&format!("/changes?asset={id}"));
    let changes = changes.as_array().expect("changes");
    let find = |field: &str| {
        changes
            .iter()
            .find(|c| c["field"].as_str().is_some_and(|f| f.starts_with(field)))
            .unwrap_or_else(|| panic!("no change for {field} in {changes:#?}"))
    };
    let added = find("software:caretaker-test-tool");
    assert_eq!(
        (added["kind"].as_str(), added["after"].as_str()),
        (Some("added"), Some("2.4.1-1"))
    );
    let gone = find("software:adduser");
    assert_eq!(gone["kind"], "removed");
    assert!(gone["after"].is_null());
    let up = find("software:dpkg");
    assert_eq!(up["kind"], "upgraded");
    assert_eq!(up["before"].as_str(), Some(old_version.as_str()));
    assert_eq!(up["after"].as_str(), Some(new_version.as_str()));
    let software: Vec<_> = changes
        .iter()
        .filter(|c| {
            c["field"]
                .as_str()
                .is_some_and(|f| f.starts_with("software:"))
        })
        .collect();
    assert_eq!(
        software.len(),
        3,
        "exactly the three package changes, no phantoms: {software:#?}"
    );

    // Nothing changed: another run records nothing new.
    let before = changes.len();
    agent_once(&collector, &state, &[&admin]);
    let after = collector.get(&format!("/changes?asset={id}"));
    assert_eq!(after.as_array().expect("changes").len(), before);
}

#[test]
fn a_wiped_agent_state_directory_stays_the_same_asset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(&dir.path().join("collector"));
    let state = dir.path().join("agent");
    agent_once(&collector, &state, &[]);
    let first = only_asset(&collector);

    std::fs::remove_dir_all(&state).expect("wipe the agent state");
    agent_once(&collector, &state, &[]);
    let second = only_asset(&collector);
    assert_eq!(first["id"], second["id"]);
    assert_eq!(
        second["agent_ids"].as_array().expect("agent ids").len(),
        2,
        "{second:#}"
    );
    assert!(
        !second["identity_notes"]
            .as_array()
            .expect("notes")
            .is_empty(),
        "the register says why the new agent was joined to this asset"
    );
}

fn samples(collector: &Collector, asset: &str) -> Vec<Value> {
    collector.get(&format!("/capacity?asset={asset}"))["samples"]
        .as_array()
        .expect("samples")
        .clone()
}

#[test]
fn status_collected_while_the_collector_is_down_arrives_in_order_afterwards() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut collector = Collector::start(&dir.path().join("collector"));
    let _agent = AgentProcess::start(
        &collector,
        &dir.path().join("agent"),
        &["--status-interval", "1s", "--heartbeat-interval", "1s"],
    );
    let asset = wait_for(
        Duration::from_secs(60),
        "the agent's first status reports",
        || {
            let assets = collector.assets();
            let id = assets.first()?["id"].as_str()?.to_owned();
            (samples(&collector, &id).len() >= 2).then_some(id)
        },
    );

    collector.stop();
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    let outage = down.elapsed();
    let before_restart = std::time::SystemTime::now();
    collector.restart();

    // Everything collected during the outage is delivered after the restart.
    let delivered = wait_for(Duration::from_secs(90), "the journalled reports", || {
        let all = samples(&collector, &asset);
        let during = all
            .iter()
            .filter(|s| {
                let at = s["at"].as_str().unwrap_or_default();
                at_system_time(at) < before_restart && at_system_time(at) > before_restart - outage
            })
            .count();
        (during >= 4).then_some(all)
    });
    let seqs: Vec<u64> = delivered
        .iter()
        .map(|s| s["seq"].as_u64().expect("seq"))
        .collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        seqs, sorted,
        "samples are stored in collection order, without duplicates"
    );
    let times: Vec<_> = delivered
        .iter()
        .map(|s| at_system_time(s["at"].as_str().expect("at")))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "collection times rise with seq"
    );
}

fn at_system_time(rfc3339: &str) -> std::time::SystemTime {
    let output = std::process::Command::new("date")
        .args(["-u", "-d", rfc3339, "+%s.%N"])
        .output()
        .expect("date");
    let secs: f64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0.0);
    std::time::UNIX_EPOCH + Duration::from_secs_f64(secs)
}

#[test]
fn the_agent_rejects_a_mistyped_config_key_with_exit_78() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "collector = \"http://127.0.0.1:1\"\nstatus_intervall = \"5m\"\n",
    )
    .expect("write");
    let config = path.display().to_string();
    let output = agent(
        &["run", "--config", &config, "--once"],
        Duration::from_secs(30),
    );
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{config}:2:1")), "{stderr}");
    assert!(stderr.contains("status_intervall"), "{stderr}");
}

#[test]
fn a_wrong_enrolment_token_fails_clearly_and_keeps_what_was_collected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(&dir.path().join("collector"));
    let state = dir.path().join("agent");
    let state_arg = state.display().to_string();
    let url = collector.url();
    let output = agent(
        &[
            "run",
            "--once",
            "--collector",
            &url,
            "--enroll-token",
            "wrong",
            "--state-dir",
            &state_arg,
        ],
        Duration::from_secs(90),
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.to_lowercase().contains("token"),
        "the agent says the token is the problem: {stderr}"
    );
    assert!(collector.assets().is_empty());
    // With the right token, what was journalled is delivered.
    agent_once(&collector, &state, &[]);
    let asset = only_asset(&collector);
    assert!(!samples(&collector, asset["id"].as_str().expect("id")).is_empty());
}

#[test]
fn the_shipped_agent_config_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = Collector::start(&dir.path().join("collector"));
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/agent.toml");
    // Flags override the example's server, token file and state directory.
    agent_once(
        &collector,
        &dir.path().join("agent"),
        &["--config", example],
    );
    assert_eq!(collector.assets().len(), 1);
}
