//! Vendor, model, serials, SMBIOS UUID, BIOS, board, chassis, CPU and RAM.

use caretaker_proto::v1::Hardware;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind};

use super::{SourceError, clean};

/// Firmware-level facts; platform readers fill what they can.
#[derive(Debug, Default)]
pub struct Firmware {
    pub vendor: String,
    pub model: String,
    pub serial: String,
    pub smbios_uuid: String,
    pub bios_vendor: String,
    pub bios_version: String,
    pub bios_date: String,
    pub board_vendor: String,
    pub board_model: String,
    pub board_serial: String,
    pub chassis: String,
}

pub fn collect() -> Result<Hardware, SourceError> {
    let sys = sysinfo::System::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    )
    .map_err(|e| SourceError::Other(format!("sysinfo: {e}")))?;
    let ram_bytes = sys.total_memory();
    if ram_bytes == 0 {
        return Err(SourceError::Other("no memory size".into()));
    }
    let cpu_model = sys
        .cpus()
        .first()
        .map(|c| c.brand().trim().to_owned())
        .unwrap_or_default();
    let cpu_threads = sys.cpus().len() as u32;
    let cpu_cores = sysinfo::System::physical_core_count().map_or(0, |n| n as u32);

    let fw = firmware();
    Ok(Hardware {
        vendor: fw.vendor,
        model: fw.model,
        serial: fw.serial,
        smbios_uuid: fw.smbios_uuid,
        bios_vendor: fw.bios_vendor,
        bios_version: fw.bios_version,
        bios_date: fw.bios_date,
        board_vendor: fw.board_vendor,
        board_model: fw.board_model,
        board_serial: fw.board_serial,
        cpu_model,
        cpu_cores,
        cpu_threads,
        ram_bytes,
        chassis: fw.chassis,
    })
}

pub fn smbios_uuid() -> String {
    clean(&sysinfo::Product::uuid().unwrap_or_default()).to_lowercase()
}

/// The system serial number where readable (root-only on Linux).
pub fn serial() -> String {
    firmware().serial
}

/// sysinfo's cross-platform view, used where no better platform reader exists.
fn from_sysinfo() -> Firmware {
    let get = |r: Result<String, sysinfo::Error>| clean(&r.unwrap_or_default());
    let board = sysinfo::Motherboard::new().ok();
    let board_get = |f: fn(&sysinfo::Motherboard) -> Option<String>| {
        board
            .as_ref()
            .and_then(f)
            .map(|s| clean(&s))
            .unwrap_or_default()
    };
    Firmware {
        vendor: get(sysinfo::Product::vendor_name()),
        model: get(sysinfo::Product::name()),
        serial: get(sysinfo::Product::serial_number()),
        smbios_uuid: smbios_uuid(),
        board_vendor: board_get(sysinfo::Motherboard::vendor_name),
        board_model: board_get(sysinfo::Motherboard::name),
        board_serial: board_get(sysinfo::Motherboard::serial_number),
        ..Firmware::default()
    }
}

#[cfg(target_os = "linux")]
fn firmware() -> Firmware {
    let mut fw = super::linux::dmi();
    if fw.vendor.is_empty() && fw.model.is_empty() {
        fw = Firmware {
            chassis: fw.chassis,
            ..from_sysinfo()
        };
    }
    fw
}

#[cfg(windows)]
fn firmware() -> Firmware {
    super::windows::firmware(from_sysinfo())
}

#[cfg(not(any(target_os = "linux", windows)))]
fn firmware() -> Firmware {
    from_sysinfo()
}

/// SMBIOS chassis type number → a coarse kind.
#[cfg_attr(not(any(target_os = "linux", windows)), allow(dead_code))]
pub fn chassis_name(code: u32) -> &'static str {
    match code {
        3..=7 | 13 | 15 | 16 | 24 | 35 | 36 => "desktop",
        8..=10 | 14 => "laptop",
        30..=32 => "tablet",
        11 => "handheld",
        17 | 23 | 25 | 28 | 29 => "server",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chassis_codes() {
        assert_eq!(chassis_name(3), "desktop");
        assert_eq!(chassis_name(10), "laptop");
        assert_eq!(chassis_name(23), "server");
        assert_eq!(chassis_name(2), "unknown");
    }
}
