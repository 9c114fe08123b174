//! Periodic status: uptime, CPU, load, memory, swap, volume usage and logged-on users. Keeps
//! one small `sysinfo::System` between ticks (CPU and memory only; processes are never
//! refreshed), so `cpu_percent` is the average since the previous sample.

use std::time::{Duration, SystemTime};

use caretaker_proto::v1::{Report, Status, report::Body};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind};

use crate::inventory::{AGENT_VERSION, timestamp, timestamp_secs};

pub struct StatusCollector {
    sys: Option<sysinfo::System>,
    sampled: bool,
    timeout: Duration,
}

impl StatusCollector {
    /// `timeout` bounds the sources that may block (volume figures).
    pub fn new(timeout: Duration) -> Self {
        let sys = sysinfo::System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_usage())
                .with_memory(MemoryRefreshKind::everything()),
        );
        if let Err(error) = &sys {
            tracing::warn!(%error, "Cannot read CPU and memory figures");
        }
        Self {
            sys: sys.ok(),
            sampled: false,
            timeout,
        }
    }

    /// Collects one status report (seq is assigned by the journal).
    pub async fn collect(&mut self, journal_dropped: u64) -> Report {
        let mut missing = Vec::new();
        let (mut cpu_percent, mut mem) = (0.0, (0, 0, 0, 0));
        if let Some(sys) = &mut self.sys {
            if !self.sampled {
                // The first figure needs two samples spaced by sysinfo's minimum interval.
                sys.refresh_cpu_usage();
                tokio::time::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL).await;
                self.sampled = true;
            }
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            cpu_percent = sys.global_cpu_usage().clamp(0.0, 100.0);
            mem = (
                sys.total_memory(),
                sys.used_memory(),
                sys.total_swap(),
                sys.used_swap(),
            );
        } else {
            missing.push("cpu".to_owned());
            missing.push("memory".to_owned());
        }
        let load = sysinfo::System::load_average().ok();
        let volumes = match crate::inventory::volume_usage(self.timeout).await {
            Ok(v) => v,
            Err(error) => {
                tracing::debug!(%error, "Volume usage unavailable");
                missing.push("volumes".to_owned());
                Vec::new()
            }
        };
        let status = Status {
            uptime_secs: sysinfo::System::uptime().unwrap_or(0),
            cpu_percent,
            load1: load.as_ref().map_or(0.0, |l| l.one as f32),
            load5: load.as_ref().map_or(0.0, |l| l.five as f32),
            load15: load.as_ref().map_or(0.0, |l| l.fifteen as f32),
            memory_total_bytes: mem.0,
            memory_used_bytes: mem.1,
            swap_total_bytes: mem.2,
            swap_used_bytes: mem.3,
            volumes,
            logged_on_users: crate::inventory::logged_on_users(),
            journal_dropped,
            boot_time: timestamp_secs(sysinfo::System::boot_time().unwrap_or(0)),
        };
        Report {
            seq: 0,
            collected_at: Some(timestamp(SystemTime::now())),
            missing,
            agent_version: AGENT_VERSION.to_owned(),
            body: Some(Body::Status(status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn real_status_has_memory_and_uptime() {
        let mut c = StatusCollector::new(Duration::from_secs(30));
        let r = c.collect(7).await;
        let Some(Body::Status(s)) = r.body else {
            panic!("not a status")
        };
        assert!(s.memory_total_bytes > 0);
        assert!(s.memory_used_bytes <= s.memory_total_bytes);
        assert!(s.uptime_secs > 0);
        assert!((0.0..=100.0).contains(&s.cpu_percent));
        assert_eq!(s.journal_dropped, 7);
    }
}
