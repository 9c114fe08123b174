//! Live reload on a running collector: a changed rule threshold takes effect without a
//! restart (`caretaker-collector reload` and SIGHUP), and a bad file keeps the old config,
//! with the reason printed (exit 78) or logged.

use std::process::Command;
use std::time::Duration;

use caretaker_tests::{AgentProcess, Collector, bin, wait_for};

fn open_disk_incidents(collector: &Collector) -> usize {
    collector
        .get("/incidents?status=open")
        .as_array()
        .expect("incidents")
        .iter()
        .filter(|i| i["rule"] == "disk_full")
        .count()
}

fn set_threshold(collector: &Collector, from: &str, to: &str) {
    let text = std::fs::read_to_string(&collector.config).expect("config");
    assert!(text.contains(from), "{text}");
    std::fs::write(&collector.config, text.replace(from, to)).expect("write config");
}

fn reload(collector: &Collector) -> std::process::Output {
    Command::new(bin("caretaker-collector"))
        .args(["reload", "--config"])
        .arg(&collector.config)
        .output()
        .expect("run reload")
}

#[test]
fn rules_reload_live_and_a_bad_file_keeps_the_old_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = "[rules.disk_full]\npercent = 99.9\nforecast_days = 0.001\n\
                 [incidents]\nevaluate_every = \"1s\"\nhold_down = \"1s\"\n";
    let collector = Collector::start_with(&dir.path().join("collector"), extra);
    let _agent = AgentProcess::start(
        &collector,
        &dir.path().join("agent"),
        &["--status-interval", "1s"],
    );
    wait_for(Duration::from_secs(30), "the agent's first status", || {
        let assets = collector.assets();
        let id = assets.first()?["id"].as_str()?.to_owned();
        let capacity = collector.get(&format!("/capacity?asset={id}"));
        (!capacity["samples"].as_array()?.is_empty()).then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        open_disk_incidents(&collector),
        0,
        "no volume is 99.9 % full"
    );

    // `reload`: every volume over 1 % is now "nearly full".
    set_threshold(&collector, "percent = 99.9", "percent = 1");
    let output = reload(&collector);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("now in force: rules"), "{stdout}");
    wait_for(
        Duration::from_secs(30),
        "a disk_full incident under the new rule",
        || (open_disk_incidents(&collector) > 0).then_some(()),
    );

    // A bad file: refused with file, line and key; the running rules stay.
    set_threshold(&collector, "percent = 1", "percent = \"lots\"");
    let output = reload(&collector);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("collector.toml:"),
        "names the file and line: {stderr}"
    );
    assert!(stderr.contains("not reloaded"), "{stderr}");
    collector.signal("HUP");
    wait_for(
        Duration::from_secs(10),
        "the SIGHUP refusal in the log",
        || {
            collector
                .log()
                .contains("SIGHUP: config not reloaded")
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        open_disk_incidents(&collector) > 0,
        "the old rule is still in force"
    );

    // SIGHUP with a good file: back to 99.9 %, and the incident resolves.
    set_threshold(&collector, "percent = \"lots\"", "percent = 99.9");
    collector.signal("HUP");
    wait_for(
        Duration::from_secs(30),
        "the incident resolved under the reloaded rule",
        || (open_disk_incidents(&collector) == 0).then_some(()),
    );
    assert!(collector.log().contains("Config reloaded"));
}
