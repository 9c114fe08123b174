//! Physical disks (Linux: `/sys/block`) and mounted volumes (sysinfo `Disks`, pseudo file
//! systems skipped). Volume sizes count the way `df` does (see [`df_figures`]).

use caretaker_proto::v1::{Disk, Volume, VolumeUsage};
#[cfg(not(windows))]
use sysinfo::{DiskRefreshKind, Disks};

use super::SourceError;

/// File systems that hold no user data and are never reported as volumes.
pub fn is_pseudo_fs(fs: &str) -> bool {
    const PSEUDO: &[&str] = &[
        "tmpfs",
        "devtmpfs",
        "overlay",
        "squashfs",
        "proc",
        "sysfs",
        "cgroup",
        "cgroup2",
        "devpts",
        "ramfs",
        "efivarfs",
        "autofs",
        "nsfs",
        "tracefs",
        "debugfs",
        "securityfs",
        "pstore",
        "bpf",
        "mqueue",
        "hugetlbfs",
        "configfs",
        "fusectl",
        "binfmt_misc",
        "rpc_pipefs",
        "nfsd",
        "fuse.gvfsd-fuse",
        "fuse.portal",
        "fuse.lxcfs",
        "zram",
    ];
    PSEUDO.contains(&fs)
}

/// Size and free space as `df` counts them, from `statvfs` figures (in fragments).
///
/// `df` shows used = blocks − bfree and Use% = used / (used + bavail): blocks reserved for
/// root are neither used nor available. So the size reported is used + available, and free
/// is what an ordinary user can still write; the collector's `(total − free) / total` is
/// then exactly `df`'s Use%. (Counting reserved blocks as used made a 27 % volume look 74 %
/// full on a file system with a large reserve.)
pub fn df_figures(frsize: u64, blocks: u64, bfree: u64, bavail: u64) -> (u64, u64) {
    let used = blocks.saturating_sub(bfree);
    let total = used.saturating_add(bavail).saturating_mul(frsize);
    (total, bavail.saturating_mul(frsize))
}

/// Volume usage without the rest of the volume record (status reports).
pub fn volume_usage(v: &Volume) -> VolumeUsage {
    VolumeUsage {
        mount: v.mount.clone(),
        total_bytes: v.total_bytes,
        free_bytes: v.free_bytes,
    }
}

/// Total and free bytes of the file system at `mount`, `df`'s way; sysinfo's figures
/// (size, and space available to this user) when `statvfs` fails.
#[cfg(unix)]
fn space(mount: &std::path::Path, fallback: (u64, u64)) -> (u64, u64) {
    match rustix::fs::statvfs(mount) {
        Ok(s) => df_figures(s.f_frsize, s.f_blocks, s.f_bfree, s.f_bavail),
        Err(_) => fallback,
    }
}

#[cfg(not(any(unix, windows)))]
fn space(_mount: &std::path::Path, fallback: (u64, u64)) -> (u64, u64) {
    fallback
}

/// Drive letters from Win32 (sysinfo's list misses drives it cannot map to a disk).
#[cfg(windows)]
pub fn collect_volumes() -> Result<Vec<Volume>, SourceError> {
    let vols = crate::win32::logical_volumes().map_err(|e| SourceError::io("volumes", e))?;
    let mut out: Vec<Volume> = vols
        .into_iter()
        .filter(|v| v.total_bytes > 0)
        .map(|v| Volume {
            mount: v.root,
            device: v.volume,
            file_system: v.file_system,
            total_bytes: v.total_bytes,
            free_bytes: v.free_bytes.min(v.total_bytes),
            removable: v.removable,
        })
        .collect();
    out.sort_by(|a, b| a.mount.cmp(&b.mount));
    Ok(out)
}

#[cfg(not(windows))]
pub fn collect_volumes() -> Result<Vec<Volume>, SourceError> {
    let disks = Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing().with_storage())
        .map_err(|e| SourceError::Other(format!("sysinfo disks: {e}")))?;
    let mut out: Vec<Volume> = disks
        .iter()
        .filter_map(|d| {
            let fs = d.file_system().to_string_lossy().into_owned();
            if is_pseudo_fs(&fs) || d.total_space() == 0 {
                return None;
            }
            let (total_bytes, free_bytes) =
                space(d.mount_point(), (d.total_space(), d.available_space()));
            Some(Volume {
                mount: d.mount_point().to_string_lossy().into_owned(),
                device: d.name().to_string_lossy().into_owned(),
                file_system: fs,
                total_bytes,
                free_bytes,
                removable: d.is_removable(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.mount.cmp(&b.mount));
    out.dedup_by(|a, b| a.mount == b.mount);
    Ok(out)
}

#[cfg(target_os = "linux")]
pub fn collect_disks() -> Result<Vec<Disk>, SourceError> {
    use std::path::Path;
    let root = Path::new("/sys/block");
    let entries = std::fs::read_dir(root).map_err(|e| SourceError::io("/sys/block", e))?;
    let read = |p: &Path| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if ["loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            continue;
        }
        let dir = entry.path();
        // Sizes are in 512-byte sectors regardless of the device's block size.
        let sectors: u64 = read(&dir.join("size")).parse().unwrap_or(0);
        if sectors == 0 {
            continue;
        }
        let serial = {
            let s = read(&dir.join("device/serial"));
            if s.is_empty() {
                read(&dir.join("serial"))
            } else {
                s
            }
        };
        let kind = match read(&dir.join("queue/rotational")).as_str() {
            "0" => "ssd",
            "1" => "hdd",
            _ => "unknown",
        };
        out.push(Disk {
            name,
            model: super::clean(&read(&dir.join("device/model"))),
            serial: super::clean(&serial),
            size_bytes: sectors * 512,
            kind: kind.to_owned(),
            removable: read(&dir.join("removable")) == "1",
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Physical disks from the storage IOCTLs (`win32.rs`).
#[cfg(windows)]
pub fn collect_disks() -> Result<Vec<Disk>, SourceError> {
    super::windows::disks()
}

#[cfg(not(any(target_os = "linux", windows)))]
pub fn collect_disks() -> Result<Vec<Disk>, SourceError> {
    Err(SourceError::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_file_systems() {
        assert!(is_pseudo_fs("tmpfs"));
        assert!(is_pseudo_fs("overlay"));
        assert!(!is_pseudo_fs("ext4"));
        assert!(!is_pseudo_fs("ntfs"));
    }

    #[test]
    fn reserved_blocks_are_neither_used_nor_free() {
        // Figures like those of the build machine's / (a large reserve): df says 27 %.
        let (blocks, bfree, bavail) = (66_053_021, 59_697_609, 17_466_006);
        let (total, free) = df_figures(4096, blocks, bfree, bavail);
        assert_eq!(free, bavail * 4096);
        assert_eq!(
            total - free,
            (blocks - bfree) * 4096,
            "used = blocks - bfree"
        );
        let pct = (total - free) as f64 * 100.0 / total as f64;
        assert_eq!(pct.ceil(), 27.0);
        // No reserve: size is the whole file system.
        assert_eq!(df_figures(512, 100, 40, 40), (100 * 512, 40 * 512));
        // Nonsense from a broken file system does not wrap.
        assert_eq!(df_figures(4096, 10, 20, 30), (30 * 4096, 30 * 4096));
    }

    /// `df`'s own Use% for a mount on this machine, against what the agent reports.
    #[cfg(target_os = "linux")]
    #[test]
    fn used_percent_matches_df() {
        let out = std::process::Command::new("df")
            .args(["-B1", "--output=target,used,avail", "/"])
            .output()
            .expect("df (coreutils) runs");
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().nth(1).expect("df prints a row for /");
        let f: Vec<&str> = line.split_whitespace().collect();
        let (used, avail): (u64, u64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        let df_pct = used as f64 * 100.0 / (used + avail) as f64;

        let vols = collect_volumes().unwrap();
        let root = vols.iter().find(|v| v.mount == "/").expect("/ is a volume");
        let ours = (root.total_bytes - root.free_bytes) as f64 * 100.0 / root.total_bytes as f64;
        // Other processes write between the two readings: allow half a point.
        assert!(
            (ours - df_pct).abs() < 0.5,
            "agent says {ours:.2} % used, df says {df_pct:.2} %"
        );
        let used_ours = root.total_bytes - root.free_bytes;
        let drift = used_ours.abs_diff(used) as f64 / root.total_bytes as f64;
        assert!(drift < 0.005, "used {used_ours} vs df {used}");
    }

    #[test]
    fn volumes_are_real_and_sorted() {
        let v = collect_volumes().unwrap();
        assert!(v.iter().all(|v| !is_pseudo_fs(&v.file_system)));
        assert!(v.iter().all(|v| v.free_bytes <= v.total_bytes));
        assert!(v.windows(2).all(|w| w[0].mount < w[1].mount));
    }
}
