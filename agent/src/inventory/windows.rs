//! Windows-only readers. The registry where it suffices (OS edition and build, BIOS and board,
//! machine GUID, Windows Firewall profiles, servicing packages, the last Windows Update
//! install), Win32 calls through `win32.rs` (WTS sessions, domain join, SMBIOS chassis,
//! physical disks, batteries) and WMI through `wmi.rs` only where nothing else has the answer
//! (Security Center's antivirus and firewall products, BitLocker, QFE hotfixes). Never
//! `Win32_Product`: querying it makes Windows Installer check, and repair, every MSI package.

use std::time::Duration;

use caretaker_proto::v1::{Disk, Firewall, Hotfix, VolumeEncryption};
use winreg::RegKey;
use winreg::enums::{HKEY_LOCAL_MACHINE, KEY_READ, KEY_WOW64_64KEY};

use super::hardware::{Firmware, chassis_name};
use super::system::OsInfo;
use super::windows_data::{self, PhysicalDisk};
use super::{SourceError, clean, wmi};
use crate::win32;

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

fn dword(key: &RegKey, name: &str) -> Option<u32> {
    key.get_value::<u32, _>(name).ok()
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
    if version.is_empty() {
        version = string(&cv, "CurrentVersion");
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

/// The AD domain (its DNS name where known) or the workgroup, and which of the two it is.
pub fn domain() -> (String, &'static str) {
    let dns = string(
        &hklm(r"SYSTEM\CurrentControlSet\Services\Tcpip\Parameters"),
        "Domain",
    );
    match win32::join_information() {
        Ok((name, win32::Join::Domain)) => (if dns.is_empty() { name } else { dns }, "domain"),
        Ok((name, win32::Join::Workgroup)) => (name, "workgroup"),
        Ok((_, win32::Join::Unknown)) | Err(_) => (dns, ""),
    }
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
    if base.chassis.is_empty() {
        base.chassis = match win32::smbios_table() {
            Ok(t) => windows_data::smbios_chassis_type(&t)
                .map(|c| chassis_name(u32::from(c)).to_owned())
                .unwrap_or_default(),
            Err(error) => {
                tracing::debug!(%error, "No SMBIOS table; chassis unknown");
                String::new()
            }
        };
    }
    base
}

pub fn machine_guid() -> String {
    string(&hklm(r"SOFTWARE\Microsoft\Cryptography"), "MachineGuid").to_lowercase()
}

pub fn logged_on_users() -> Vec<String> {
    win32::session_users().unwrap_or_else(|error| {
        tracing::debug!(%error, "Cannot list sessions");
        Vec::new()
    })
}

pub fn disks() -> Result<Vec<Disk>, SourceError> {
    let disks = win32::physical_disks().map_err(|e| SourceError::io("physical disks", e))?;
    Ok(disks.iter().map(PhysicalDisk::to_proto).collect())
}

pub fn batteries() -> Result<Vec<caretaker_proto::v1::Battery>, SourceError> {
    let list = win32::batteries().map_err(|e| SourceError::io("batteries", e))?;
    Ok(list
        .iter()
        .map(|b| {
            windows_data::battery(
                &b.name,
                &b.chemistry,
                b.designed_capacity,
                b.full_charged_capacity,
                b.cycle_count,
                b.relative,
            )
        })
        .collect())
}

// ---- security -------------------------------------------------------------------------------

const SECURITY_CENTER: &str = r"ROOT\SecurityCenter2";
/// WBEM_E_INVALID_NAMESPACE: the namespace does not exist on this edition (Windows Server has
/// no Security Center; editions without BitLocker have no encryption namespace). That is "has
/// none", not "could not read".
const INVALID_NAMESPACE: &str = "0x8004100e";

fn no_such_namespace(e: &SourceError) -> bool {
    matches!(e, SourceError::Other(m) if m.to_ascii_lowercase().contains(INVALID_NAMESPACE))
}

pub fn antivirus(timeout: Duration) -> Result<Vec<caretaker_proto::v1::Antivirus>, SourceError> {
    let rows = match wmi::query(
        SECURITY_CENTER,
        "SELECT displayName, productState FROM AntiVirusProduct",
        timeout,
    ) {
        Err(e) if no_such_namespace(&e) => return Ok(Vec::new()),
        r => r?,
    };
    let mut out: Vec<_> = rows
        .iter()
        .map(|r| {
            windows_data::antivirus(
                &wmi::text(r, "displayName"),
                wmi::unsigned(r, "productState").unwrap_or(0) as u32,
            )
        })
        .filter(|a| !a.name.is_empty())
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Windows Firewall per profile from the registry (group policy wins over local settings),
/// plus third-party firewalls registered with Security Center.
pub fn firewalls(timeout: Duration) -> Result<Vec<Firewall>, SourceError> {
    const LOCAL: &str = r"SYSTEM\CurrentControlSet\Services\SharedAccess\Parameters\FirewallPolicy";
    const POLICY: &str = r"SOFTWARE\Policies\Microsoft\WindowsFirewall";
    let mut out = Vec::new();
    for (profile, local, policy) in [
        ("domain", "DomainProfile", "DomainProfile"),
        ("private", "StandardProfile", "PrivateProfile"),
        ("public", "PublicProfile", "PublicProfile"),
    ] {
        let from_policy =
            hklm(&format!(r"{POLICY}\{policy}")).and_then(|k| dword(&k, "EnableFirewall"));
        let from_local =
            hklm(&format!(r"{LOCAL}\{local}")).and_then(|k| dword(&k, "EnableFirewall"));
        if let Some(v) = from_policy.or(from_local) {
            out.push(Firewall {
                name: "Windows Firewall".into(),
                profile: profile.into(),
                enabled: v != 0,
            });
        }
    }
    // A failed product query fails the part: a list without them would read "no third-party
    // firewall".
    let products = match wmi::query(
        SECURITY_CENTER,
        "SELECT displayName, productState FROM FirewallProduct",
        timeout,
    ) {
        Err(e) if no_such_namespace(&e) => Vec::new(),
        r => r?,
    };
    for r in &products {
        let name = clean(&wmi::text(r, "displayName"));
        if name.is_empty() {
            continue;
        }
        let state = wmi::unsigned(r, "productState").unwrap_or(0) as u32;
        out.push(Firewall {
            name,
            profile: String::new(),
            enabled: windows_data::antivirus("", state).enabled,
        });
    }
    if out.is_empty() {
        return Err(SourceError::Other(
            "no Windows Firewall settings in the registry".into(),
        ));
    }
    Ok(out)
}

/// BitLocker state per volume. Needs administrator rights (the agent runs as SYSTEM).
pub fn encryption(timeout: Duration) -> Result<Vec<VolumeEncryption>, SourceError> {
    let rows = match wmi::query(
        r"ROOT\CIMV2\Security\MicrosoftVolumeEncryption",
        "SELECT DriveLetter, ProtectionStatus, ConversionStatus FROM Win32_EncryptableVolume",
        timeout,
    ) {
        Err(e) if no_such_namespace(&e) => return Ok(Vec::new()),
        r => r?,
    };
    let mut out: Vec<VolumeEncryption> = rows
        .iter()
        .filter_map(|r| {
            let mount = wmi::text(r, "DriveLetter");
            if mount.is_empty() {
                return None;
            }
            let protection = match wmi::unsigned(r, "ProtectionStatus") {
                Some(0) => "off",
                Some(1) => "on",
                _ => "unknown",
            };
            let (conversion, percent) = match wmi::unsigned(r, "ConversionStatus") {
                Some(0) => ("decrypted", 0),
                Some(1) => ("encrypted", 100),
                Some(2) => ("encrypting", 0),
                Some(3) => ("decrypting", 0),
                Some(4 | 5) => ("paused", 0),
                _ => ("", 0),
            };
            Some(VolumeEncryption {
                mount,
                method: "bitlocker".into(),
                protection: protection.into(),
                conversion: conversion.into(),
                percent,
            })
        })
        .collect();
    out.sort_by(|a, b| a.mount.cmp(&b.mount));
    Ok(out)
}

// ---- updates --------------------------------------------------------------------------------

/// Hotfixes from QFE (WMI) merged with the servicing stack's installed packages in the
/// registry, which also list the cumulative rollups QFE misses. If QFE fails the registry
/// list alone would look complete, so the part is reported missing.
pub fn hotfixes(timeout: Duration) -> Result<Vec<Hotfix>, SourceError> {
    let qfe = wmi::query(
        r"ROOT\CIMV2",
        "SELECT HotFixID, Description, InstalledOn FROM Win32_QuickFixEngineering",
        timeout,
    )?;
    let qfe: Vec<Hotfix> = qfe
        .iter()
        .map(|r| Hotfix {
            id: wmi::text(r, "HotFixID"),
            description: wmi::text(r, "Description"),
            installed_at: windows_data::qfe_date(&wmi::text(r, "InstalledOn")),
            source: "qfe".into(),
        })
        .filter(|h| h.id.to_ascii_uppercase().starts_with("KB"))
        .collect();
    Ok(windows_data::merge_hotfixes(qfe, servicing_packages()))
}

/// Installed packages under Component Based Servicing that name a KB.
fn servicing_packages() -> Vec<Hotfix> {
    const INSTALLED: u32 = 0x70;
    let Some(packages) =
        hklm(r"SOFTWARE\Microsoft\Windows\CurrentVersion\Component Based Servicing\Packages")
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in packages.enum_keys().flatten() {
        let Some(kb) = windows_data::kb_of_package(&name) else {
            continue;
        };
        let Ok(key) = packages.open_subkey_with_flags(&name, KEY_READ) else {
            continue;
        };
        if dword(&key, "CurrentState") != Some(INSTALLED) {
            continue;
        }
        let high = dword(&key, "InstallTimeHigh").unwrap_or(0);
        let low = dword(&key, "InstallTimeLow").unwrap_or(0);
        let ticks = (u64::from(high) << 32) | u64::from(low);
        out.push(Hotfix {
            id: kb,
            description: String::new(),
            installed_at: windows_data::filetime(ticks),
            source: "cbs".into(),
        });
    }
    out
}

/// When Windows Update last installed updates: its own record where this Windows keeps one,
/// else the newest hotfix install date.
pub fn last_update(hotfixes: &[Hotfix]) -> Option<prost_types::Timestamp> {
    let recorded = string(
        &hklm(
            r"SOFTWARE\Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\Results\Install",
        ),
        "LastSuccessTime",
    );
    windows_data::update_time(&recorded).or_else(|| {
        hotfixes
            .iter()
            .filter_map(|h| h.installed_at)
            .max_by_key(|t| t.seconds)
    })
}
