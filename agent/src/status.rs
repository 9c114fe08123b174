//! Periodic status: uptime, CPU, load, memory, swap, volume usage and logged-on users. Keeps
//! one small `sysinfo::System` between ticks (CPU and memory only; processes are never
//! refreshed), so `cpu_percent` is the average since the previous sample. On Windows the CPU
//! figure comes from `GetSystemTimes` instead: sysinfo's PDH counters need a background
//! thread and the performance-counter registry, which is often broken on school images (and
//! missing under Wine).

use std::time::{Duration, SystemTime};

use caretaker_proto::v1::{Report, Status, report::Body};
use sysinfo::{MemoryRefreshKind, RefreshKind};

use crate::inventory::{AGENT_VERSION, timestamp, timestamp_secs};

pub struct StatusCollector {
    sys: Option<sysinfo::System>,
    sampled: bool,
    timeout: Duration,
    /// Windows: the previous (idle, kernel, user) times.
    #[cfg(windows)]
    times: Option<(u64, u64, u64)>,
}

/// Busy percentage between two (idle, kernel, user) samples, Windows style: kernel time
/// includes idle time.
#[cfg_attr(not(windows), allow(dead_code))]
pub fn busy_percent(before: (u64, u64, u64), after: (u64, u64, u64)) -> f32 {
    let idle = after.0.saturating_sub(before.0);
    let total = after.1.saturating_sub(before.1) + after.2.saturating_sub(before.2);
    if total == 0 {
        return 0.0;
    }
    (100.0 * (1.0 - idle.min(total) as f64 / total as f64)) as f32
}

impl StatusCollector {
    /// `timeout` bounds the sources that may block (volume figures).
    pub fn new(timeout: Duration) -> Self {
        #[cfg(not(windows))]
        let kind = RefreshKind::nothing()
            .with_cpu(sysinfo::CpuRefreshKind::nothing().with_usage())
            .with_memory(MemoryRefreshKind::everything());
        #[cfg(windows)]
        let kind = RefreshKind::nothing().with_memory(MemoryRefreshKind::everything());
        let sys = sysinfo::System::new_with_specifics(kind);
        if let Err(error) = &sys {
            tracing::warn!(%error, "Cannot read CPU and memory figures");
        }
        Self {
            sys: sys.ok(),
            sampled: false,
            timeout,
            #[cfg(windows)]
            times: None,
        }
    }

    /// Average busy percentage since the previous status (the first one over 200 ms).
    #[cfg(windows)]
    async fn windows_cpu(&mut self) -> Option<f32> {
        let before = match self.times {
            Some(t) => t,
            None => {
                let t = crate::win32::system_times().ok()?;
                tokio::time::sleep(Duration::from_millis(200)).await;
                t
            }
        };
        let now = crate::win32::system_times().ok()?;
        self.times = Some(now);
        self.sampled = true;
        Some(busy_percent(before, now).clamp(0.0, 100.0))
    }

    /// Collects one status report (seq is assigned by the journal).
    pub async fn collect(&mut self, journal_dropped: u64) -> Report {
        let mut missing = Vec::new();
        let (mut cpu_percent, mut mem) = (0.0, (0, 0, 0, 0));
        #[cfg(windows)]
        match self.windows_cpu().await {
            Some(p) => cpu_percent = p,
            None => missing.push("cpu".to_owned()),
        }
        if let Some(sys) = &mut self.sys {
            #[cfg(not(windows))]
            {
                if !self.sampled {
                    // The first figure needs two samples spaced by sysinfo's minimum interval.
                    sys.refresh_cpu_usage();
                    tokio::time::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL).await;
                    self.sampled = true;
                }
                sys.refresh_cpu_usage();
                cpu_percent = sys.global_cpu_usage().clamp(0.0, 100.0);
            }
            sys.refresh_memory();
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
        // Windows has no load average; sysinfo emulates one with PDH counters, which cost a
        // background thread (and abort under Wine, which lacks PdhEnumObjects). Zero there.
        #[cfg(not(windows))]
        let load = sysinfo::System::load_average().ok();
        #[cfg(windows)]
        let load: Option<sysinfo::LoadAvg> = None;
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

    #[test]
    fn windows_style_busy_percent() {
        // 1 s on 2 CPUs: 2e7 ticks, of which 1.5e7 idle (kernel includes idle).
        let before = (1_000, 2_000, 3_000);
        let after = (1_000 + 15_000_000, 2_000 + 16_000_000, 3_000 + 4_000_000);
        assert!((busy_percent(before, after) - 25.0).abs() < 0.01);
        assert_eq!(busy_percent(after, after), 0.0);
        assert_eq!(
            busy_percent(after, before),
            0.0,
            "a counter going backwards is no load"
        );
    }

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
