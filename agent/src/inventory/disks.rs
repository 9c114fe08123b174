//! Physical disks (Linux: `/sys/block`) and mounted volumes (sysinfo `Disks`, pseudo file
//! systems skipped).

use caretaker_proto::v1::{Disk, Volume};
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
            Some(Volume {
                mount: d.mount_point().to_string_lossy().into_owned(),
                device: d.name().to_string_lossy().into_owned(),
                file_system: fs,
                total_bytes: d.total_space(),
                free_bytes: d.available_space(),
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

/// Physical disks need WMI on Windows, which this agent does not query yet.
#[cfg(not(target_os = "linux"))]
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
    fn volumes_are_real_and_sorted() {
        let v = collect_volumes().unwrap();
        assert!(v.iter().all(|v| !is_pseudo_fs(&v.file_system)));
        assert!(v.iter().all(|v| v.free_bytes <= v.total_bytes));
        assert!(v.windows(2).all(|w| w[0].mount < w[1].mount));
    }
}
