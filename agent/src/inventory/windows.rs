//! Windows-only readers: OS edition and build, domain, BIOS and board from the registry.

use winreg::RegKey;
use winreg::enums::{HKEY_LOCAL_MACHINE, KEY_READ, KEY_WOW64_64KEY};

use super::clean;
use super::hardware::Firmware;
use super::system::OsInfo;

fn hklm(path: &str) -> Option<RegKey> {
    RegKey::predef(HKEY_LOCAL_MACHINE)
        .open_subkey_with_flags(path, KEY_READ | KEY_WOW64_64KEY)
        .ok()
}

fn string(key: &Option<RegKey>, name: &str) -> String {
    key.as_ref()
        .and_then(|k| k.get_value::<String, _>(name).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

pub fn os_info() -> OsInfo {
    let cv = hklm(r"SOFTWARE\Microsoft\Windows NT\CurrentVersion");
    let mut name = string(&cv, "ProductName");
    let build = string(&cv, "CurrentBuild");
    // Windows 11 still says "Windows 10" in ProductName; build 22000 is the first 11.
    if build.parse::<u32>().is_ok_and(|b| b >= 22000) && name.starts_with("Windows 10") {
        name = name.replacen("Windows 10", "Windows 11", 1);
    }
    let ubr = cv.as_ref().and_then(|k| k.get_value::<u32, _>("UBR").ok());
    let mut version = string(&cv, "DisplayVersion");
    if version.is_empty() {
        version = string(&cv, "ReleaseId");
    }
    OsInfo {
        name: if name.is_empty() {
            sysinfo::System::name().unwrap_or_else(|_| "Windows".into())
        } else {
            name
        },
        version,
        build: match ubr {
            Some(u) if !build.is_empty() => format!("{build}.{u}"),
            _ => build,
        },
    }
}

/// AD/DNS domain of the machine, else its workgroup when one is set.
pub fn domain() -> String {
    let tcpip = hklm(r"SYSTEM\CurrentControlSet\Services\Tcpip\Parameters");
    let d = string(&tcpip, "Domain");
    if !d.is_empty() {
        return d;
    }
    std::env::var("USERDNSDOMAIN").unwrap_or_default()
}

pub fn firmware(mut base: Firmware) -> Firmware {
    let bios = hklm(r"HARDWARE\DESCRIPTION\System\BIOS");
    let fill = |field: &mut String, name: &str| {
        if field.is_empty() {
            *field = clean(&string(&bios, name));
        }
    };
    fill(&mut base.vendor, "SystemManufacturer");
    fill(&mut base.model, "SystemProductName");
    fill(&mut base.bios_vendor, "BIOSVendor");
    fill(&mut base.bios_version, "BIOSVersion");
    fill(&mut base.bios_date, "BIOSReleaseDate");
    fill(&mut base.board_vendor, "BaseBoardManufacturer");
    fill(&mut base.board_model, "BaseBoardProduct");
    base
}

pub fn machine_guid() -> String {
    string(&hklm(r"SOFTWARE\Microsoft\Cryptography"), "MachineGuid").to_lowercase()
}

pub fn logged_on_users() -> Vec<String> {
    // Sessions need WTS APIs; the agent's own interactive user is the best cheap signal.
    Vec::new()
}
