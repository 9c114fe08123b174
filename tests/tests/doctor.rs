//! `caretaker-collector doctor` on this machine against a real collector and a real SMTP
//! server: one OK/WARN/FAIL/SKIP line per check, and the exit code is the worst of them.

use std::process::Command;

use caretaker_tests::smtp::SmtpServer;
use caretaker_tests::{Collector, bin};

struct Report {
    lines: Vec<(String, String, String)>,
    code: i32,
}

impl Report {
    fn line(&self, name: &str) -> (&str, &str) {
        let (level, _, detail) = self
            .lines
            .iter()
            .find(|(_, n, _)| n == name)
            .unwrap_or_else(|| panic!("no {name} line in {:#?}", self.lines));
        (level, detail)
    }
}

fn doctor(config: &std::path::Path) -> Report {
    let output = Command::new(bin("caretaker-collector"))
        .args(["doctor", "--config"])
        .arg(config)
        .output()
        .expect("run doctor");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<(String, String, String)> = stdout
        .lines()
        .map(|l| {
            let (level, rest) = l.split_once("  ").expect("LEVEL  name detail");
            let rest = rest.trim_start();
            let name_end = rest.find("  ").unwrap_or(rest.len());
            let (name, detail) = rest.split_at(name_end);
            (
                level.trim().to_owned(),
                name.trim().to_owned(),
                detail.trim().to_owned(),
            )
        })
        .collect();
    let report = Report {
        lines,
        code: output.status.code().expect("exit code"),
    };
    let worst = report
        .lines
        .iter()
        .map(|(level, _, _)| match level.as_str() {
            "FAIL" => 2,
            "WARN" => 1,
            "OK" | "SKIP" => 0,
            other => panic!("unknown level {other}:\n{stdout}"),
        })
        .max()
        .expect("some checks");
    assert_eq!(
        report.code, worst,
        "the exit code is the worst line:\n{stdout}"
    );
    report
}

#[test]
fn doctor_reports_each_check_and_exits_with_the_worst() {
    let dir = tempfile::tempdir().expect("tempdir");
    let smtp = SmtpServer::start(&dir.path().join("smtp"));
    let extra = format!(
        "[smtp]\nserver = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
         from = \"caretaker@school.example\"\nto = [\"tech@school.example\"]\n",
        smtp.port
    );
    let mut collector = Collector::start_with(&dir.path().join("collector"), &extra);

    let report = doctor(&collector.config);
    assert_eq!(report.line("collector").0, "OK");
    assert_eq!(report.line("smtp").0, "OK", "aiosmtpd answers");
    assert_eq!(report.line("agent clocks").0, "OK");
    // The collector made its CA and server certificate on first start (pki).
    let (level, detail) = report.line("certificates");
    assert_eq!(level, "OK", "{detail}");
    assert!(detail.contains("valid for 30 days or more"), "{detail}");
    for name in [
        "raw sockets",
        "neighbour table",
        "free disk",
        "snmp coverage",
    ] {
        report.line(name);
    }

    // A CA certificate that runs out tomorrow is a warning.
    let pki = dir.path().join("collector/data/pki");
    std::fs::create_dir_all(&pki).expect("pki");
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=Caretaker test CA",
            "-keyout",
        ])
        .arg(pki.join("ca.key"))
        .arg("-out")
        .arg(pki.join("ca.pem"))
        .output()
        .expect("openssl");
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let report = doctor(&collector.config);
    let (level, detail) = report.line("certificates");
    assert_eq!(level, "WARN", "{detail}");
    assert!(detail.contains("ca.pem expires within 30 days"), "{detail}");
    assert!(report.code >= 1);

    // SMTP gone and the collector stopped: FAIL and WARN, exit 2.
    drop(smtp);
    collector.stop();
    let report = doctor(&collector.config);
    assert_eq!(report.line("smtp").0, "FAIL");
    assert_eq!(report.line("collector").0, "WARN");
    assert_eq!(report.line("agent clocks").0, "SKIP");
    assert_eq!(report.code, 2);
}
