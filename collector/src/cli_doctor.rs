//! `caretaker-collector doctor`: checks what the collector needs from this machine and its
//! surroundings, one line each — `OK`, `WARN`, `FAIL` or `SKIP` (cannot be checked here,
//! with the reason) — and exits with the worst: 0 all OK, 1 a warning, 2 a failure.
//!
//! Run it as the collector's own user (`sudo -u caretaker caretaker-collector doctor …`) so
//! the permission checks see what the daemon sees. What only the running collector knows
//! (live hosts, agents' clocks) is asked of its API; with no collector running those lines
//! are `SKIP`.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use caretaker_collector::config::Config;
use caretaker_collector::scan::targets::{Ipv4Net, on_link_networks};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Skip,
    Ok,
    Warn,
    Fail,
}

impl Level {
    fn label(self) -> &'static str {
        match self {
            Level::Skip => "SKIP",
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        }
    }
}

struct Check {
    name: &'static str,
    level: Level,
    detail: String,
}

fn check(name: &'static str, level: Level, detail: impl Into<String>) -> Check {
    Check {
        name,
        level,
        detail: detail.into(),
    }
}

pub fn run(config_path: &Path) -> ExitCode {
    let config = match crate::cli_api::load(config_path) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let daemon = crate::cli_api::request(&config, "GET", "/api/v1/health", None);
    let mut checks = Vec::new();
    let raw = raw_socket();
    checks.push(collector_running(&daemon));
    checks.push(raw_check(raw));
    checks.push(neighbour_table(&config, raw));
    checks.push(free_disk(&config.data_dir));
    let running = matches!(daemon, Ok((200 | 503, _)));
    checks.push(clock_skew(&daemon));
    checks.push(smtp(&config));
    checks.push(snmp_coverage(&config, running));
    checks.push(certificates(&config.data_dir));
    let worst = checks.iter().map(|c| c.level).max().unwrap_or(Level::Ok);
    for c in &checks {
        println!("{:<4}  {:<16} {}", c.level.label(), c.name, c.detail);
    }
    match worst {
        Level::Skip | Level::Ok => ExitCode::SUCCESS,
        Level::Warn => ExitCode::from(1),
        Level::Fail => ExitCode::from(2),
    }
}

fn collector_running(daemon: &std::io::Result<(u16, String)>) -> Check {
    match daemon {
        Ok((200, _)) => check("collector", Level::Ok, "running; its API answers"),
        Ok((503, body)) => check(
            "collector",
            Level::Fail,
            format!("running but degraded: {}", problems(body)),
        ),
        Ok((status, body)) => check(
            "collector",
            Level::Warn,
            format!("its API answered {status}: {body}"),
        ),
        Err(error) => check(
            "collector",
            Level::Warn,
            format!("not running (or its API is unreachable: {error}); live checks skipped"),
        ),
    }
}

fn problems(body: &str) -> String {
    let value: Value = serde_json::from_str(body).unwrap_or_default();
    value["problems"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|p| {
                    format!(
                        "{} {}",
                        p["component"].as_str().unwrap_or("?"),
                        p["reason"].as_str().unwrap_or("?")
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| body.to_owned())
}

/// Whether this process may open the raw packet socket the ARP sweep uses.
fn raw_socket() -> bool {
    #[cfg(target_os = "linux")]
    {
        socket2::Socket::new(socket2::Domain::PACKET, socket2::Type::RAW, None).is_ok()
    }
    #[cfg(not(target_os = "linux"))]
    false
}

fn raw_check(raw: bool) -> Check {
    if raw {
        check(
            "raw sockets",
            Level::Ok,
            "CAP_NET_RAW: ARP sweeps of own segments, raw ICMP",
        )
    } else {
        check(
            "raw sockets",
            Level::Warn,
            "no CAP_NET_RAW: own segments are swept by ICMP through the kernel (slower, fills \
             the neighbour table); grant AmbientCapabilities=CAP_NET_RAW",
        )
    }
}

/// Addresses of the configured ranges on this machine's own segments.
fn on_link_addresses(ranges: &[Ipv4Net], on_link: &[Ipv4Net]) -> u64 {
    ranges
        .iter()
        .map(|range| {
            on_link
                .iter()
                .filter(|net| net.prefix() > 0)
                .map(|net| {
                    if net.prefix() <= range.prefix() && net.contains(range.network()) {
                        range.size()
                    } else if range.prefix() <= net.prefix() && range.contains(net.network()) {
                        net.size()
                    } else {
                        0
                    }
                })
                .max()
                .unwrap_or(0)
        })
        .sum()
}

fn neighbour_table(config: &Config, raw: bool) -> Check {
    let on_link = on_link_addresses(config.scan.scope.ranges(), &on_link_networks());
    let thresh = std::fs::read_to_string("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok());
    let Some(thresh) = thresh else {
        return check(
            "neighbour table",
            Level::Skip,
            "gc_thresh3 not readable here",
        );
    };
    let detail = format!("{on_link} configured addresses on own segments, gc_thresh3 = {thresh}");
    if on_link <= thresh || raw {
        let note = if raw && on_link > thresh {
            " (ARP sweep bypasses it)"
        } else {
            ""
        };
        check("neighbour table", Level::Ok, format!("{detail}{note}"))
    } else {
        check(
            "neighbour table",
            Level::Warn,
            format!(
                "{detail}: without CAP_NET_RAW a sweep overflows it; raise net.ipv4.neigh.default.gc_thresh3"
            ),
        )
    }
}

/// `(available, size)` bytes of the filesystem holding `dir` (or its nearest parent).
fn disk_space(dir: &Path) -> Option<(u64, u64)> {
    let mut existing = dir;
    while !existing.exists() {
        existing = existing.parent()?;
    }
    let output = Command::new("df").arg("-Pk").arg(existing).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<&str> = text.lines().nth(1)?.split_whitespace().collect();
    let size: u64 = fields.get(1)?.parse().ok()?;
    let avail: u64 = fields.get(3)?.parse().ok()?;
    Some((avail * 1024, size * 1024))
}

pub fn disk_level(avail: u64, size: u64) -> Level {
    let percent = if size == 0 {
        0.0
    } else {
        avail as f64 * 100.0 / size as f64
    };
    if avail < 256 << 20 || percent < 2.0 {
        Level::Fail
    } else if avail < 2 << 30 || percent < 10.0 {
        Level::Warn
    } else {
        Level::Ok
    }
}

fn free_disk(data_dir: &Path) -> Check {
    match disk_space(data_dir) {
        Some((avail, size)) => check(
            "free disk",
            disk_level(avail, size),
            format!(
                "{:.1} GiB free of {:.1} GiB under {}",
                avail as f64 / f64::from(1u32 << 30),
                size as f64 / f64::from(1u32 << 30),
                data_dir.display()
            ),
        ),
        None => check("free disk", Level::Skip, "df gave no answer"),
    }
}

fn clock_skew(daemon: &std::io::Result<(u16, String)>) -> Check {
    let Ok((200 | 503, body)) = daemon else {
        return check("agent clocks", Level::Skip, "needs the running collector");
    };
    let value: Value = serde_json::from_str(body).unwrap_or_default();
    let suspect = value["ingest"]["reports_clock_suspect"]
        .as_u64()
        .unwrap_or(0);
    let stored = value["ingest"]["reports_stored"].as_u64().unwrap_or(0);
    if suspect == 0 {
        check(
            "agent clocks",
            Level::Ok,
            format!("no report of {stored} since start had an implausible clock"),
        )
    } else {
        check(
            "agent clocks",
            Level::Warn,
            format!(
                "{suspect} of {stored} reports since start came from a clock too far ahead or \
                 behind ([agents] max_clock_ahead / max_report_age); check NTP on those PCs"
            ),
        )
    }
}

fn smtp(config: &Config) -> Check {
    let Some(smtp) = &config.smtp else {
        return check("smtp", Level::Warn, "no [smtp] section: nobody is emailed");
    };
    let target = format!("{}:{}", smtp.server, smtp.port);
    let addrs: Vec<SocketAddr> = match target.to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(error) => {
            return check(
                "smtp",
                Level::Fail,
                format!("cannot resolve {target}: {error}"),
            );
        }
    };
    for addr in &addrs {
        if TcpStream::connect_timeout(addr, Duration::from_secs(5)).is_ok() {
            return check(
                "smtp",
                Level::Ok,
                format!("{target} accepts connections (`test-email` sends a real message)"),
            );
        }
    }
    check(
        "smtp",
        Level::Fail,
        format!("{target} does not accept connections"),
    )
}

fn snmp_coverage(config: &Config, running: bool) -> Check {
    if config.scan.scope.ranges().is_empty() {
        return check("snmp coverage", Level::Skip, "no [scan] ranges");
    }
    if config.snmp.credentials.is_empty() {
        return check(
            "snmp coverage",
            Level::Warn,
            "no SNMP credentials: network devices are only pinged",
        );
    }
    if !running {
        return check("snmp coverage", Level::Skip, "needs the running collector");
    }
    let assets = match crate::cli_api::request(config, "GET", "/api/v1/assets", None) {
        Ok((200, body)) => serde_json::from_str::<Vec<Value>>(&body).unwrap_or_default(),
        _ => {
            return check(
                "snmp coverage",
                Level::Skip,
                "the asset list was not available",
            );
        }
    };
    let has = |a: &Value, source: &str| {
        a["sources"]
            .as_array()
            .is_some_and(|s| s.iter().any(|x| x == source))
    };
    let live: Vec<&Value> = assets
        .iter()
        .filter(|a| a["status"] == "up" && has(a, "ping") && !has(a, "agent"))
        .collect();
    let silent: Vec<String> = live
        .iter()
        .filter(|a| !has(a, "snmp"))
        .filter_map(|a| a["ips"].as_array()?.first()?.as_str().map(str::to_owned))
        .collect();
    let detail = format!(
        "{} of {} live hosts without an agent answered none of the {} credentials",
        silent.len(),
        live.len(),
        config.snmp.credentials.len()
    );
    if silent.is_empty() {
        check("snmp coverage", Level::Ok, detail)
    } else {
        let sample: Vec<&str> = silent.iter().take(5).map(String::as_str).collect();
        check(
            "snmp coverage",
            Level::Warn,
            format!("{detail} (e.g. {})", sample.join(", ")),
        )
    }
}

fn certificates(data_dir: &Path) -> Check {
    let pki = data_dir.join("pki");
    let Ok(entries) = std::fs::read_dir(&pki) else {
        return check(
            "certificates",
            Level::Skip,
            format!("no CA under {} (agent TLS not set up)", pki.display()),
        );
    };
    let certs: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("pem" | "crt")))
        .collect();
    let mut worst = Level::Ok;
    let mut notes = Vec::new();
    for cert in &certs {
        let expiring = |secs: u64| {
            Command::new("openssl")
                .args(["x509", "-noout", "-checkend", &secs.to_string(), "-in"])
                .arg(cert)
                .output()
                .map(|o| {
                    (
                        o.status.success(),
                        String::from_utf8_lossy(&o.stderr).into_owned(),
                    )
                })
        };
        let name = cert
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        match (expiring(0), expiring(30 * 86_400)) {
            (Ok((false, err)), _) if err.trim().is_empty() => {
                worst = Level::Fail;
                notes.push(format!("{name} has expired"));
            }
            (Ok((true, _)), Ok((false, _))) => {
                worst = worst.max(Level::Warn);
                notes.push(format!("{name} expires within 30 days"));
            }
            (Ok((true, _)), Ok((true, _))) => {}
            // Not a certificate (a key, a bundle openssl cannot read): not ours to judge.
            _ => {}
        }
    }
    if certs.is_empty() {
        return check(
            "certificates",
            Level::Skip,
            format!("no certificates in {}", pki.display()),
        );
    }
    let detail = if notes.is_empty() {
        format!(
            "{} certificate(s) in {} valid for 30 days or more",
            certs.len(),
            pki.display()
        )
    } else {
        notes.join("; ")
    };
    check("certificates", worst, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_link_counts_only_what_lies_on_own_segments() {
        let net = |t: &str| t.parse::<Ipv4Net>().expect("net");
        let on_link = [net("10.20.0.0/22"), net("0.0.0.0/0")];
        assert_eq!(on_link_addresses(&[net("10.20.1.0/24")], &on_link), 256);
        assert_eq!(on_link_addresses(&[net("10.0.0.0/8")], &on_link), 1024);
        assert_eq!(on_link_addresses(&[net("10.30.0.0/16")], &on_link), 0);
    }

    #[test]
    fn disk_levels() {
        assert_eq!(disk_level(100 << 30, 200 << 30), Level::Ok);
        assert_eq!(disk_level(1 << 30, 8 << 30), Level::Warn);
        assert_eq!(disk_level(15 << 30, 200 << 30), Level::Warn);
        assert_eq!(disk_level(100 << 20, 200 << 30), Level::Fail);
        assert!(Level::Fail > Level::Warn && Level::Warn > Level::Ok && Level::Ok > Level::Skip);
    }
}
