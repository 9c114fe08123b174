//! Prometheus metrics (`GET /metrics`, text format) under the Prometheus naming conventions:
//! a `caretaker_` prefix, base units (seconds, bytes), `_total` on counters.
//!
//! Nothing here counts on its own: a scrape builds one registry from what the collector
//! already keeps — the ingest counters (`agents::IngestStats`), what the register writer notes
//! while it works ([`WriterMetrics`], inside `IngestStats`), the health problems, the job
//! queue, and the store (incidents, outbox, size), read in `spawn_blocking`.
//!
//! Access (`[metrics]`): a bearer token (the API token, or `token_file`) or a client address
//! inside `allow`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use serde::Deserialize;

use crate::model::{Incident, OutboxEntry};

/// `[metrics]`: who may scrape.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Clients in these ranges need no token (e.g. the school's Prometheus).
    pub allow: Vec<String>,
    /// A token of its own for scrapers; the API token is accepted too.
    pub token_file: Option<PathBuf>,
}

impl MetricsConfig {
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        for range in &self.allow {
            if parse_range(range).is_none() {
                problems.push((
                    "allow",
                    format!("{range:?} is not an address or CIDR range"),
                ));
            }
        }
        if let Some(file) = &self.token_file {
            match std::fs::read_to_string(file) {
                Ok(text) if text.trim().is_empty() => {
                    problems.push(("token_file", format!("{} is empty", file.display())));
                }
                Ok(_) => {}
                Err(error) => {
                    problems.push((
                        "token_file",
                        format!("cannot read {}: {error}", file.display()),
                    ));
                }
            }
        }
        problems
    }

    /// Whether a client at `addr` may scrape without a token.
    pub fn allows(&self, addr: IpAddr) -> bool {
        self.allow
            .iter()
            .filter_map(|r| parse_range(r))
            .any(|(net, len)| in_range(addr, net, len))
    }

    /// The scrape token from `token_file`, if one is configured and readable.
    pub fn token(&self) -> Option<String> {
        let file = self.token_file.as_ref()?;
        std::fs::read_to_string(file)
            .ok()
            .map(|t| t.trim().to_owned())
    }
}

fn parse_range(text: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) => (addr.parse::<IpAddr>().ok()?, len.parse::<u8>().ok()?),
        None => {
            let addr = text.parse::<IpAddr>().ok()?;
            (addr, if addr.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((addr, len))
}

fn in_range(addr: IpAddr, net: IpAddr, len: u8) -> bool {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// What the register writer notes for metrics as it works.
#[derive(Debug)]
pub struct WriterMetrics {
    /// Seconds per group commit (write + fsync).
    pub commit_seconds: Histogram,
    /// Reports in accepted submits, by kind.
    pub inventory_reports: AtomicU64,
    pub status_reports: AtomicU64,
    pub other_reports: AtomicU64,
    /// The last merged sweep.
    pub last_sweep: Mutex<Option<SweepFigures>>,
}

impl Default for WriterMetrics {
    fn default() -> Self {
        Self {
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            inventory_reports: AtomicU64::new(0),
            status_reports: AtomicU64::new(0),
            other_reports: AtomicU64::new(0),
            last_sweep: Mutex::new(None),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SweepFigures {
    pub duration_seconds: f64,
    pub finished_unix: f64,
    pub live_hosts: u64,
    pub snmp_answered: u64,
    pub snmp_silent: u64,
}

impl WriterMetrics {
    pub fn sweep(&self, sweep: &crate::scan::Sweep) {
        let answered = sweep.hosts.iter().filter(|h| h.snmp.is_some()).count() as u64;
        let figures = SweepFigures {
            duration_seconds: (sweep.finished_at - sweep.started_at).as_seconds_f64(),
            finished_unix: sweep.finished_at.unix_timestamp_nanos() as f64 / 1e9,
            live_hosts: sweep.hosts.len() as u64,
            snmp_answered: answered,
            snmp_silent: sweep.hosts.len() as u64 - answered,
        };
        *self.last_sweep.lock().unwrap_or_else(|p| p.into_inner()) = Some(figures);
    }
}

/// Everything one scrape shows, gathered by the caller.
pub struct Snapshot<'a> {
    pub stats: &'a crate::agents::IngestStats,
    pub problems: Vec<(&'static str, String)>,
    pub queue_depth: usize,
    /// Incidents, outbox and bytes on disk; `None` while the store cannot be read (those
    /// series are left out and `caretaker_store_readable` is 0).
    pub store: Option<(Vec<Incident>, Vec<OutboxEntry>, u64)>,
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn counter(value: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(value);
    c
}

fn gauge(value: i64) -> Gauge {
    let g = Gauge::default();
    g.set(value);
    g
}

fn fgauge(value: f64) -> Gauge<f64, AtomicU64> {
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(value);
    g
}

/// The text exposition of `snapshot`.
pub fn render(snapshot: &Snapshot<'_>) -> String {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let stats = snapshot.stats;
    let mut registry = Registry::with_prefix("caretaker");

    let build = Family::<Labels, Gauge>::default();
    build
        .get_or_create(&labels(&[("version", env!("CARGO_PKG_VERSION"))]))
        .set(1);
    registry.register("build_info", "The collector's release", build);

    let ingested = Family::<Labels, Counter>::default();
    for (result, value) in [
        ("stored", load(&stats.reports_stored)),
        ("duplicate", load(&stats.reports_duplicate)),
        ("clock_suspect", load(&stats.reports_clock_suspect)),
    ] {
        ingested
            .get_or_create(&labels(&[("result", result)]))
            .inc_by(value);
    }
    registry.register(
        "reports_ingested",
        "Agent reports by result (clock_suspect: stored at arrival time)",
        ingested,
    );
    let received = Family::<Labels, Counter>::default();
    for (kind, value) in [
        ("inventory", load(&stats.writer.inventory_reports)),
        ("status", load(&stats.writer.status_reports)),
        ("other", load(&stats.writer.other_reports)),
    ] {
        received
            .get_or_create(&labels(&[("kind", kind)]))
            .inc_by(value);
    }
    registry.register(
        "reports_received",
        "Agent reports taken by the register, by kind",
        received,
    );
    registry.register(
        "requests_unauthenticated",
        "gRPC requests refused for a wrong or missing credential",
        counter(load(&stats.rejected_unauthenticated)),
    );
    let commits = Family::<Labels, Counter>::default();
    commits
        .get_or_create(&labels(&[("result", "ok")]))
        .inc_by(load(&stats.commits));
    commits
        .get_or_create(&labels(&[("result", "failed")]))
        .inc_by(load(&stats.commits_failed));
    registry.register(
        "store_commits",
        "Group commits of the register writer",
        commits,
    );
    registry.register_with_unit(
        "store_commit_duration",
        "Time per group commit (write and fsync)",
        Unit::Seconds,
        stats.writer.commit_seconds.clone(),
    );
    registry.register(
        "register_queue_depth",
        "Jobs waiting for the register writer (8192 at most)",
        gauge(snapshot.queue_depth as i64),
    );

    let sweep = *stats
        .writer
        .last_sweep
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(sweep) = sweep {
        registry.register_with_unit(
            "sweep_duration",
            "Duration of the last network sweep",
            Unit::Seconds,
            fgauge(sweep.duration_seconds),
        );
        registry.register(
            "sweep_live_hosts",
            "Hosts that answered the last sweep",
            gauge(sweep.live_hosts as i64),
        );
        registry.register_with_unit(
            "sweep_last_success_timestamp",
            "When the last sweep merged into the register (Unix time)",
            Unit::Seconds,
            fgauge(sweep.finished_unix),
        );
        let snmp = Family::<Labels, Gauge>::default();
        snmp.get_or_create(&labels(&[("result", "answered")]))
            .set(sweep.snmp_answered as i64);
        snmp.get_or_create(&labels(&[("result", "failed")]))
            .set(sweep.snmp_silent as i64);
        registry.register(
            "snmp_devices",
            "Live hosts of the last sweep that answered SNMP, or did not",
            snmp,
        );
    }

    registry.register(
        "store_readable",
        "1 while the store answers reads",
        gauge(i64::from(snapshot.store.is_some())),
    );
    if let Some((incidents, outbox, store_bytes)) = &snapshot.store {
        let open = Family::<Labels, Gauge>::default();
        for priority in 1..=5u8 {
            let count = incidents
                .iter()
                .filter(|i| i.resolved_at.is_none() && i.priority == priority)
                .count();
            open.get_or_create(&labels(&[("priority", &format!("P{priority}"))]))
                .set(count as i64);
        }
        registry.register("incidents_open", "Open incidents by priority", open);

        let messages = Family::<Labels, Gauge>::default();
        for state in ["pending", "failed"] {
            let count = outbox.iter().filter(|e| e.status == state).count();
            messages
                .get_or_create(&labels(&[("state", state)]))
                .set(count as i64);
        }
        registry.register(
            "outbox_messages",
            "Alert emails waiting to be sent, or given up on",
            messages,
        );
        registry.register_with_unit(
            "store",
            "Bytes the store occupies on disk",
            Unit::Bytes,
            gauge(*store_bytes as i64),
        );
    }
    let degraded = Family::<Labels, Gauge>::default();
    degraded
        .get_or_create(&labels(&[("component", "store"), ("reason", "full")]))
        .set(0);
    for (component, reason) in &snapshot.problems {
        degraded
            .get_or_create(&labels(&[("component", component), ("reason", reason)]))
            .set(1);
    }
    registry.register(
        "degraded",
        "1 while a component is failing (store full: agents get UNAVAILABLE)",
        degraded,
    );

    let mut out = String::new();
    encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_match_addresses_and_ranges() {
        let config = MetricsConfig {
            allow: vec!["10.20.0.0/22".into(), "192.0.2.7".into()],
            token_file: None,
        };
        assert!(config.allows("10.20.3.255".parse().expect("ip")));
        assert!(!config.allows("10.20.4.0".parse().expect("ip")));
        assert!(config.allows("192.0.2.7".parse().expect("ip")));
        assert!(config.allows("::ffff:192.0.2.7".parse().expect("ip")));
        assert!(!config.allows("192.0.2.8".parse().expect("ip")));
        assert!(
            MetricsConfig {
                allow: vec!["10.0.0.0/33".into()],
                token_file: None
            }
            .problems()
            .len()
                == 1
        );
    }

    #[test]
    fn a_scrape_follows_the_naming_conventions() {
        let stats = crate::agents::IngestStats::default();
        stats.reports_stored.fetch_add(3, Ordering::Relaxed);
        stats.writer.commit_seconds.observe(0.002);
        let text = render(&Snapshot {
            stats: &stats,
            problems: vec![("store", "full".into())],
            queue_depth: 2,
            store: Some((Vec::new(), Vec::new(), 4096)),
        });
        for line in [
            "caretaker_reports_ingested_total{result=\"stored\"} 3",
            "caretaker_store_commit_duration_seconds_count 1",
            "caretaker_register_queue_depth 2",
            "caretaker_store_bytes 4096",
            "caretaker_degraded{component=\"store\",reason=\"full\"} 1",
            "caretaker_incidents_open{priority=\"P1\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
        assert!(text.contains("caretaker_build_info{version="));
    }
}
