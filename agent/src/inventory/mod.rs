//! Inventory collection: one file per area (system, hardware, disks, network, software), with
//! OS-specific readers in `linux.rs` / `windows.rs` and `software_linux.rs` /
//! `software_windows.rs` behind `#[cfg]`. [`collect`] runs every source under the per-source
//! timeout; a source that fails or times out is named in `Report.missing` and its section left
//! empty — never guessed. Lists are sorted so identical machines give identical inventories.
//! Spawns only short-lived blocking jobs and child processes (killed when they time out).

mod disks;
mod hardware;
mod hung;
#[cfg(target_os = "linux")]
pub(crate) mod linux;
mod network;
mod posture;
mod software;
#[cfg(target_os = "linux")]
mod software_linux;
#[cfg(windows)]
mod software_windows;
mod system;
mod users;
#[cfg(windows)]
pub(crate) mod windows;
pub(crate) mod windows_data;
#[cfg(windows)]
mod wmi;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use caretaker_proto::v1::{Inventory, Report, report::Body};
use prost::Message;
use sha2::{Digest, Sha256};

pub use disks::{df_figures, is_pseudo_fs};
#[cfg(target_os = "linux")]
pub use software_linux::parse_dpkg;
pub use system::parse_os_release;

/// The agent's version, sent in every report.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What the collection sources need from the configuration.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    pub timeout: Duration,
    /// Per WMI query (Windows); a query past it marks its part missing.
    pub wmi_timeout: Duration,
    pub dpkg_admindir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("not supported on this platform")]
    Unsupported,
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} exited with {status}: {stderr}")]
    Command {
        what: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{0}")]
    Other(String),
}

impl SourceError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

/// The hardware fingerprint used to notice a copied state directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    pub hostname: String,
    pub machine_id: String,
    pub serial: String,
    pub smbios_uuid: String,
    /// Sorted, lower-case MACs of physical interfaces.
    pub macs: Vec<String>,
}

/// Reads the fingerprint quickly (no software or disk scan).
pub fn fingerprint() -> Fingerprint {
    let full = system::hostname();
    let hostname = full.split('.').next().unwrap_or_default().to_owned();
    let smbios_uuid = hardware::smbios_uuid();
    let mut macs: Vec<String> = network::collect()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| !i.r#virtual && !i.mac.is_empty())
        .map(|i| i.mac)
        .collect();
    macs.sort();
    macs.dedup();
    Fingerprint {
        hostname,
        machine_id: system::machine_id(),
        serial: hardware::serial(),
        smbios_uuid,
        macs,
    }
}

/// Runs a blocking source on the blocking pool, bounded by `timeout`.
async fn blocking<T, F>(timeout: Duration, f: F) -> Result<T, SourceError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, SourceError> + Send + 'static,
{
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(r)) => r,
        Ok(Err(join)) => Err(SourceError::Other(format!(
            "collector thread failed: {join}"
        ))),
        Err(_) => Err(SourceError::Timeout(timeout)),
    }
}

/// Records a failed source in `missing` and falls back to an empty section.
fn take<T: Default>(name: &str, r: Result<T, SourceError>, missing: &mut Vec<String>) -> T {
    match r {
        Ok(v) => v,
        Err(error) => {
            tracing::warn!(%error, source = name, "Inventory source failed; reporting it as missing");
            missing.push(name.to_owned());
            T::default()
        }
    }
}

async fn bounded<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, SourceError>>,
) -> Result<T, SourceError> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or(Err(SourceError::Timeout(timeout)))
}

/// Collects a full inventory report (seq is assigned by the journal).
pub async fn collect(opts: &CollectOptions) -> Report {
    let t = opts.timeout;
    let (sys, hw, dsk, vols, nics, sw, posture) = tokio::join!(
        blocking(t, system::collect),
        blocking(t, hardware::collect),
        blocking(t, disks::collect_disks),
        blocking(t, disks::collect_volumes),
        blocking(t, network::collect),
        bounded(t, software::collect(opts)),
        posture::collect(opts),
    );
    let mut missing = Vec::new();
    let mut system = take("system", sys.map(Some), &mut missing);
    let hardware = take("hardware", hw.map(Some), &mut missing);
    let disks = take("disks", dsk, &mut missing);
    let volumes = take("volumes", vols, &mut missing);
    let interfaces = take("interfaces", nics, &mut missing);
    let software = take("software", sw, &mut missing);
    let antivirus = take("antivirus", posture.antivirus, &mut missing);
    let firewalls = take("firewalls", posture.firewalls, &mut missing);
    let encryption = take("encryption", posture.encryption, &mut missing);
    let hotfixes = take("hotfixes", posture.hotfixes, &mut missing);
    let batteries = take("batteries", posture.batteries, &mut missing);
    #[cfg(windows)]
    if let Some(s) = &mut system {
        s.last_update_at = windows::last_update(&hotfixes);
    }
    #[cfg(not(windows))]
    let _ = &mut system;
    Report {
        seq: 0,
        collected_at: Some(timestamp(SystemTime::now())),
        missing,
        agent_version: AGENT_VERSION.to_owned(),
        body: Some(Body::Inventory(Inventory {
            system,
            hardware,
            disks,
            volumes,
            interfaces,
            software,
            antivirus,
            firewalls,
            encryption,
            hotfixes,
            batteries,
        })),
    }
}

/// Mount, size and free space of each real volume (for status reports), bounded by
/// `timeout` (a hung network mount must not stall the status).
pub async fn volume_usage(
    timeout: Duration,
) -> Result<Vec<caretaker_proto::v1::VolumeUsage>, SourceError> {
    blocking(timeout, || {
        disks::collect_volumes().map(|v| v.iter().map(disks::volume_usage).collect())
    })
    .await
}

/// Users with a login session now (for status reports).
pub fn logged_on_users() -> Vec<String> {
    users::logged_on()
}

/// A digest of what matters in an inventory: ignores the collection time, free space and
/// boot time, which change without the machine changing.
pub fn change_digest(report: &Report) -> [u8; 32] {
    let mut r = report.clone();
    r.seq = 0;
    r.collected_at = None;
    if let Some(Body::Inventory(inv)) = &mut r.body {
        if let Some(s) = &mut inv.system {
            s.boot_time = None;
        }
        for v in &mut inv.volumes {
            v.free_bytes = 0;
        }
    }
    Sha256::digest(r.encode_to_vec()).into()
}

pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    prost_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

pub fn timestamp_secs(secs: u64) -> Option<prost_types::Timestamp> {
    (secs > 0).then_some(prost_types::Timestamp {
        seconds: secs as i64,
        nanos: 0,
    })
}

/// Trims and drops the placeholder strings firmware vendors leave in SMBIOS fields.
pub(crate) fn clean(s: &str) -> String {
    let t = s.trim().trim_matches(char::from(0)).trim();
    const PLACEHOLDERS: &[&str] = &[
        "to be filled by o.e.m.",
        "to be filled by oem",
        "default string",
        "not specified",
        "not applicable",
        "system serial number",
        "system product name",
        "system manufacturer",
        "system version",
        "base board serial number",
        "chassis serial number",
        "none",
        "n/a",
        "0",
        "00000000-0000-0000-0000-000000000000",
        "ffffffff-ffff-ffff-ffff-ffffffffffff",
        "03000200-0400-0500-0006-000700080009",
    ];
    if PLACEHOLDERS.iter().any(|p| t.eq_ignore_ascii_case(p)) {
        String::new()
    } else {
        t.to_owned()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn opts() -> CollectOptions {
        CollectOptions {
            timeout: Duration::from_secs(60),
            wmi_timeout: Duration::from_secs(10),
            dpkg_admindir: None,
        }
    }

    #[tokio::test]
    async fn real_machine_inventory() {
        let report = collect(&opts()).await;
        let Some(Body::Inventory(inv)) = report.body else {
            panic!("not an inventory")
        };
        assert!(report.missing.is_empty(), "missing {:?}", report.missing);
        let sys = inv.system.expect("system");
        assert!(!sys.hostname.is_empty());
        assert!(!sys.kernel.is_empty());
        let hw = inv.hardware.expect("hardware");
        assert!(hw.ram_bytes > 0);
        assert!(hw.cpu_threads > 0);

        // Every physical interface with a MAC in /sys must show up with it.
        let mut expected = Vec::new();
        for e in std::fs::read_dir("/sys/class/net").unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let mac = std::fs::read_to_string(e.path().join("address")).unwrap_or_default();
            let mac = mac.trim().to_lowercase();
            if name != "lo" && !mac.is_empty() && mac != "00:00:00:00:00:00" {
                expected.push((name, mac));
            }
        }
        for (name, mac) in &expected {
            let found = inv.interfaces.iter().find(|i| &i.name == name);
            let found = found.unwrap_or_else(|| panic!("interface {name} missing"));
            assert_eq!(&found.mac, mac);
        }
        assert!(inv.interfaces.windows(2).all(|w| w[0].name < w[1].name));

        // Software count equals dpkg's own count of installed packages.
        let out = std::process::Command::new("dpkg-query")
            .args(["-W", "-f=${db:Status-Abbrev}\n"])
            .output()
            .expect("dpkg-query is installed on this machine");
        let installed = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("ii"))
            .count();
        let dpkg = inv.software.iter().filter(|s| s.source == "dpkg").count();
        assert!(installed > 0);
        assert_eq!(dpkg, installed);
        assert!(
            inv.software
                .windows(2)
                .all(|w| (&w[0].name, &w[0].arch) <= (&w[1].name, &w[1].arch))
        );
    }

    #[tokio::test]
    async fn identical_collections_have_identical_digests() {
        let a = collect(&opts()).await;
        let b = collect(&opts()).await;
        assert_eq!(change_digest(&a), change_digest(&b));
    }

    #[test]
    fn placeholders_are_cleaned() {
        assert_eq!(clean("  To Be Filled By O.E.M. "), "");
        assert_eq!(clean("Dell Inc.\n"), "Dell Inc.");
    }
}
