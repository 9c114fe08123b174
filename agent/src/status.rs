//! Periodic status: uptime, CPU, load, memory, swap, volume usage and logged-on users. Keeps
//! one small `sysinfo::System` between ticks (CPU and memory only; processes are never
//! refreshed), so `cpu_percent` is the average since the previous sample.

use std::collections::BTreeSet;
use std::time::SystemTime;

use caretaker_proto::v1::{Report, Status, VolumeUsage, report::Body};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind};

use crate::inventory::{AGENT_VERSION, timestamp, timestamp_secs};

pub struct StatusCollector {
    sys: Option<sysinfo::System>,
    sampled: bool,
}

impl StatusCollector {
    pub fn new() -> Self {
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
        let volumes = match crate::inventory::collect_volume_usage() {
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
            logged_on_users: logged_on_users(),
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

impl Default for StatusCollector {
    fn default() -> Self {
        Self::new()
    }
}

/// Volume usage without the rest of the volume record.
pub fn volume_usage(v: &caretaker_proto::v1::Volume) -> VolumeUsage {
    VolumeUsage {
        mount: v.mount.clone(),
        total_bytes: v.total_bytes,
        free_bytes: v.free_bytes,
    }
}

#[cfg(target_os = "linux")]
fn logged_on_users() -> Vec<String> {
    crate::inventory::linux::logged_on_users()
}

#[cfg(windows)]
fn logged_on_users() -> Vec<String> {
    crate::inventory::windows::logged_on_users()
}

#[cfg(not(any(target_os = "linux", windows)))]
fn logged_on_users() -> Vec<String> {
    Vec::new()
}

const UTMP_RECORD: usize = 384;
const UT_USER_PROCESS: i32 = 7;
const UT_USER_OFFSET: usize = 44;
const UT_USER_LEN: usize = 32;

/// Unique, sorted user names of USER_PROCESS records in a glibc `utmp` file.
pub fn parse_utmp(bytes: &[u8]) -> Vec<String> {
    let mut users = BTreeSet::new();
    for rec in bytes.chunks_exact(UTMP_RECORD) {
        let ut_type = i32::from_le_bytes([rec[0], rec[1], rec[2], rec[3]]);
        if ut_type != UT_USER_PROCESS {
            continue;
        }
        let field = &rec[UT_USER_OFFSET..UT_USER_OFFSET + UT_USER_LEN];
        let end = field.iter().position(|&b| b == 0).unwrap_or(UT_USER_LEN);
        let name = String::from_utf8_lossy(&field[..end]).trim().to_owned();
        if !name.is_empty() {
            users.insert(name);
        }
    }
    users.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(ut_type: i32, user: &str) -> Vec<u8> {
        let mut r = vec![0u8; UTMP_RECORD];
        r[0..4].copy_from_slice(&ut_type.to_le_bytes());
        // Something in ut_line (offset 8) to make sure we read the right field.
        r[8..13].copy_from_slice(b"tty1\0");
        r[UT_USER_OFFSET..UT_USER_OFFSET + user.len()].copy_from_slice(user.as_bytes());
        r
    }

    #[test]
    fn utmp_users_unique_and_sorted() {
        let mut bytes = Vec::new();
        bytes.extend(record(2, "reboot")); // BOOT_TIME
        bytes.extend(record(7, "teacher"));
        bytes.extend(record(6, "LOGIN")); // LOGIN_PROCESS
        bytes.extend(record(7, "admin"));
        bytes.extend(record(7, "teacher"));
        bytes.extend(record(8, "gone")); // DEAD_PROCESS
        bytes.extend(record(7, &"x".repeat(32))); // full-width name, no NUL
        bytes.extend([7, 0, 0]); // torn trailing record is ignored
        assert_eq!(
            parse_utmp(&bytes),
            vec!["admin".to_owned(), "teacher".to_owned(), "x".repeat(32)]
        );
    }

    #[tokio::test]
    async fn real_status_has_memory_and_uptime() {
        let mut c = StatusCollector::new();
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
