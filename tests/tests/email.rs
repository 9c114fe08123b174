//! Email alerting through the real `caretaker-collector` binary: the `[smtp]` section is
//! checked before the daemon starts (exit 78 naming file:line and key), and a valid section
//! with every storm-control key passes.
//!
//! The alerting task itself is tested in-process against a real aiosmtpd and a real sled store
//! in `collector/src/alerts/tests.rs` (it shares `caretaker_tests::smtp`); these tests only
//! need the binary.

use std::path::Path;
use std::process::{Command, Output};

fn check_config(path: &Path) -> Output {
    Command::new(caretaker_tests::bin("caretaker-collector"))
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .expect("run caretaker-collector")
}

const BASE: &str = "data_dir = \"/tmp/caretaker-email-test\"\n";

#[test]
fn a_full_smtp_section_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("collector.toml");
    std::fs::write(
        &path,
        format!(
            "{BASE}[smtp]\nserver = \"mail.school.example\"\nport = 465\nsecurity = \"tls\"\n\
             from = \"caretaker@school.example\"\nto = [\"ict@school.example\"]\n\
             username = \"caretaker\"\ntimeout = \"20s\"\nbase_url = \"http://caretaker.school.example:8080\"\n\
             rate_limit_per_hour = 20\ndigest_window = \"90s\"\ndigest_threshold = 4\n\
             quiet_min_priority = 4\ntime_zone = \"Europe/Amsterdam\"\nescalate_to = [\"head@school.example\"]\n\
             [smtp.quiet_hours]\nstart = \"18:00\"\nend = \"07:30\"\n\
             [smtp.escalate_after]\np1 = \"10m\"\np5 = \"0s\"\n\
             [[smtp.routes]]\nto = [\"network@school.example\"]\nrules = [\"host_down\"]\npriorities = [1, 2]\n"
        ),
    )
    .expect("write");
    let output = check_config(&path);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn an_invalid_address_exits_78_naming_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("collector.toml");
    std::fs::write(
        &path,
        format!(
            "{BASE}[smtp]\nserver = \"m\"\nfrom = \"caretaker@school.example\"\n\
             to = [\"ict@school.example\"]\nescalate_to = [\"head of ict\"]\n"
        ),
    )
    .expect("write");
    let output = check_config(&path);
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("{}:6:", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("head of ict"), "{stderr}");
}

#[test]
fn an_unknown_security_mode_or_bad_quiet_hours_exit_78() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("collector.toml");
    std::fs::write(
        &path,
        format!(
            "{BASE}[smtp]\nserver = \"m\"\nfrom = \"a@school.example\"\nto = [\"a@school.example\"]\n\
             security = \"ssl\"\n"
        ),
    )
    .expect("write");
    let output = check_config(&path);
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr).contains("ssl"));

    std::fs::write(
        &path,
        format!(
            "{BASE}[smtp]\nserver = \"m\"\nfrom = \"a@school.example\"\nto = [\"a@school.example\"]\n\
             [smtp.quiet_hours]\nstart = \"18:00\"\nend = \"25:99\"\n"
        ),
    )
    .expect("write");
    let output = check_config(&path);
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("25:99"), "{stderr}");
}

#[test]
fn test_email_reports_what_the_server_said_and_fails_clearly_when_it_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = caretaker_tests::smtp::SmtpServer::start(&dir.path().join("smtp"));
    let config = dir.path().join("caretaker.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[smtp]\nserver = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
             from = \"caretaker@school.example\"\nto = [\"technician@school.example\"]\n",
            dir.path().join("data").display().to_string(),
            server.port
        ),
    )
    .expect("write config");
    let run = || {
        std::process::Command::new(caretaker_tests::bin("caretaker-collector"))
            .args(["test-email", "--config"])
            .arg(&config)
            .output()
            .expect("run test-email")
    };
    let output = run();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("250"),
        "the server's reply is shown"
    );
    let mails = server.wait_for_messages(1, std::time::Duration::from_secs(30));
    assert_eq!(mails[0].subject(), "[Caretaker] Test message");

    server.stop();
    let output = run();
    assert_eq!(output.status.code(), Some(69));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("refused"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
