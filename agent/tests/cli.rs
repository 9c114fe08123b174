//! The real binary: exit codes and messages users and scripts rely on.

use std::process::Command;

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_caretaker-agent"))
}

#[test]
fn unknown_config_key_exits_78_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        "collector = \"http://127.0.0.1:1\"\nstate_dir = \"/tmp/x\"\n  heartbeat_intreval = \"1m\"\n",
    )
    .unwrap();
    let out = agent()
        .args(["run", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!("{}:3:3: unknown field", path.display());
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let out = agent().args(["run", "--bogus"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = agent().args(["run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "missing collector/state dir");
}

#[test]
fn once_without_collector_exits_69_and_keeps_journal() {
    let dir = tempfile::tempdir().unwrap();
    // Bound but not listening: connections are refused and nobody else can take the port.
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = reserved.local_addr().unwrap().port();
    let started = std::time::Instant::now();
    let out = agent()
        .args([
            "run",
            "--once",
            "--collector",
            &format!("http://127.0.0.1:{port}"),
            "--enroll-token",
            "super-secret-token",
            "--state-dir",
            dir.path().to_str().unwrap(),
        ])
        .env("CARETAKER_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert!(started.elapsed().as_secs() < 60);
    assert!(dir.path().join("journal.log").metadata().unwrap().len() > 0);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("super-secret-token"),
        "token leaked: {stderr}"
    );
}

#[test]
fn inventory_json_is_one_report() {
    let out = agent().args(["inventory", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        !v["inventory"]["system"]["hostname"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert!(v["inventory"]["hardware"]["ram_bytes"].as_u64().unwrap() > 0);
    assert!(v["collected_at"].as_str().unwrap().ends_with('Z'));
}
