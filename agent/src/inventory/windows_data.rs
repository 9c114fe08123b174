//! Decoding what Windows hands back: storage descriptors, the SMBIOS table, Security Center's
//! `productState`, update package names and dates, battery capacities, and Uninstall-key
//! entries. Pure functions on bytes and strings, compiled on every platform so their tests
//! run in the ordinary Linux test run; the Windows readers (`windows.rs`, `win32.rs`,
//! `wmi.rs`) feed them.
// Used by the Windows readers; elsewhere only the tests (and batteries) call in.
#![cfg_attr(not(windows), allow(dead_code))]

use caretaker_proto::v1::{Antivirus, Battery, Disk, Hotfix, Software};

use super::{clean, timestamp_secs};

// ---- physical disks -------------------------------------------------------------------------

/// What the storage stack says about one `\\.\PhysicalDriveN`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PhysicalDisk {
    pub index: u32,
    pub vendor: String,
    pub product: String,
    pub serial: String,
    pub removable: bool,
    pub bus_type: u32,
    pub size_bytes: u64,
    /// `Some(true)` for spinning disks, `Some(false)` for SSDs, `None` when not reported.
    pub seek_penalty: Option<bool>,
}

/// Fills `disk` from a `STORAGE_DEVICE_DESCRIPTOR` (IOCTL_STORAGE_QUERY_PROPERTY). Strings are
/// NUL-terminated ASCII at byte offsets given in the header; an offset of 0 means absent.
pub fn parse_storage_descriptor(b: &[u8], disk: &mut PhysicalDisk) {
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    };
    let string_at = |o: u32| -> String {
        let o = o as usize;
        if o == 0 || o >= b.len() {
            return String::new();
        }
        let end = b[o..]
            .iter()
            .position(|&c| c == 0)
            .map_or(b.len(), |p| o + p);
        clean(&String::from_utf8_lossy(&b[o..end]))
    };
    if b.len() < 32 {
        return;
    }
    disk.removable = b[10] != 0;
    disk.vendor = string_at(u32_at(12));
    disk.product = string_at(u32_at(16));
    disk.serial = string_at(u32_at(24));
    disk.bus_type = u32_at(28);
}

/// STORAGE_BUS_TYPE values worth naming.
const BUS_USB: u32 = 7;
const BUS_SD: u32 = 12;
const BUS_MMC: u32 = 13;
const BUS_NVME: u32 = 17;

impl PhysicalDisk {
    pub fn to_proto(&self) -> Disk {
        let model = match (self.vendor.as_str(), self.product.as_str()) {
            ("", p) => p.to_owned(),
            (v, p) if p.starts_with(v) => p.to_owned(),
            (v, p) => format!("{v} {p}"),
        };
        let kind = match (self.seek_penalty, self.bus_type) {
            (_, BUS_NVME) => "ssd",
            (Some(false), _) => "ssd",
            (Some(true), _) => "hdd",
            (None, _) => "unknown",
        };
        Disk {
            name: format!("PhysicalDrive{}", self.index),
            model: model.trim().to_owned(),
            serial: self.serial.clone(),
            size_bytes: self.size_bytes,
            kind: kind.to_owned(),
            removable: self.removable || matches!(self.bus_type, BUS_USB | BUS_SD | BUS_MMC),
        }
    }
}

// ---- SMBIOS ---------------------------------------------------------------------------------

/// The chassis type code (SMBIOS structure type 3, offset 5, lock bit cleared) from a raw
/// structure table, as Windows' `GetSystemFirmwareTable('RSMB')` or Linux's
/// `/sys/firmware/dmi/tables/DMI` give it.
pub fn smbios_chassis_type(table: &[u8]) -> Option<u8> {
    let mut at = 0;
    while at + 4 <= table.len() {
        let kind = table[at];
        let len = table[at + 1] as usize;
        if len < 4 || at + len > table.len() {
            return None;
        }
        if kind == 3 && len > 5 {
            return Some(table[at + 5] & 0x7f);
        }
        if kind == 127 {
            return None; // end of table
        }
        // Skip the formatted area, then the string set (ends with a double NUL).
        let mut p = at + len;
        while p + 1 < table.len() && !(table[p] == 0 && table[p + 1] == 0) {
            p += 1;
        }
        at = p + 2;
    }
    None
}

// ---- Security Center ------------------------------------------------------------------------

/// Decodes Security Center's `productState`: the middle byte says on (0x10) or off/snoozed,
/// the low byte up to date (0x00) or out of date (0x10).
pub fn antivirus(name: &str, product_state: u32) -> Antivirus {
    let scanner = (product_state >> 8) & 0xff;
    let signatures = product_state & 0xff;
    Antivirus {
        name: clean(name),
        enabled: scanner & 0x10 != 0,
        up_to_date: signatures & 0x10 == 0,
        product_state,
    }
}

// ---- updates --------------------------------------------------------------------------------

/// The KB number in a servicing package name such as
/// `Package_for_KB5034441~31bf3856ad364e35~amd64~~19041.3920.1.2` or
/// `Package_for_RollupFix~...` (rollups carry no KB in the name: `None`).
pub fn kb_of_package(name: &str) -> Option<String> {
    let at = name.find("KB")?;
    let digits: String = name[at + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (digits.len() >= 6).then(|| format!("KB{digits}"))
}

/// A Windows FILETIME (100 ns ticks since 1601) as a Unix timestamp.
pub fn filetime(ticks: u64) -> Option<prost_types::Timestamp> {
    const UNIX_EPOCH_TICKS: u64 = 116_444_736_000_000_000;
    let secs = ticks.checked_sub(UNIX_EPOCH_TICKS)? / 10_000_000;
    timestamp_secs(secs)
}

/// QFE's `InstalledOn`: `M/D/YYYY` (US order, whatever the locale), or a hex FILETIME on some
/// old systems. Anything else is no date.
pub fn qfe_date(s: &str) -> Option<prost_types::Timestamp> {
    let s = s.trim();
    if let Some((m, rest)) = s.split_once('/') {
        let (d, y) = rest.split_once('/')?;
        let (m, d, y): (u32, u32, i64) = (m.parse().ok()?, d.parse().ok()?, y.parse().ok()?);
        return date(y, m, d);
    }
    if s.len() == 16 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return filetime(u64::from_str_radix(s, 16).ok()?);
    }
    None
}

/// `YYYYMMDD` (Uninstall keys' `InstallDate`).
pub fn yyyymmdd(s: &str) -> Option<prost_types::Timestamp> {
    let s = s.trim();
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    date(
        s[0..4].parse().ok()?,
        s[4..6].parse().ok()?,
        s[6..8].parse().ok()?,
    )
}

/// `YYYY-MM-DD HH:MM:SS` in UTC (Windows Update's `LastSuccessTime`).
pub fn update_time(s: &str) -> Option<prost_types::Timestamp> {
    let (d, t) = s.trim().split_once(' ')?;
    let mut dp = d.split('-');
    let (y, m, day) = (
        dp.next()?.parse().ok()?,
        dp.next()?.parse().ok()?,
        dp.next()?.parse().ok()?,
    );
    let mut tp = t.split(':');
    let (hh, mm, ss): (u64, u64, u64) = (
        tp.next()?.parse().ok()?,
        tp.next()?.parse().ok()?,
        tp.next()?.parse().ok()?,
    );
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let midnight = date(y, m, day)?.seconds as u64;
    timestamp_secs(midnight + hh * 3600 + mm * 60 + ss)
}

fn date(y: i64, m: u32, d: u32) -> Option<prost_types::Timestamp> {
    if !(1980..=2200).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    timestamp_secs(u64::try_from(days * 86_400).ok()?)
}

/// Days since 1970-01-01 (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// QFE and servicing-package hotfixes as one list, one entry per KB, sorted by id. QFE's
/// description wins; the earliest known install date is kept.
pub fn merge_hotfixes(qfe: Vec<Hotfix>, cbs: Vec<Hotfix>) -> Vec<Hotfix> {
    let mut by_id: std::collections::BTreeMap<String, Hotfix> = Default::default();
    for h in qfe.into_iter().chain(cbs) {
        let id = h.id.trim().to_ascii_uppercase();
        if id.is_empty() {
            continue;
        }
        match by_id.get_mut(&id) {
            None => {
                by_id.insert(id.clone(), Hotfix { id, ..h });
            }
            Some(known) => {
                if known.description.is_empty() {
                    known.description = h.description;
                }
                known.installed_at = match (known.installed_at.take(), h.installed_at) {
                    (Some(a), Some(b)) => Some(if a.seconds <= b.seconds { a } else { b }),
                    (a, b) => a.or(b),
                };
            }
        }
    }
    by_id.into_values().collect()
}

// ---- batteries ------------------------------------------------------------------------------

pub fn battery(
    name: &str,
    chemistry: &str,
    designed: u32,
    full_charged: u32,
    cycle_count: u32,
    relative: bool,
) -> Battery {
    // Health is a ratio, so relative units work too; a full charge above design (new cells,
    // calibration) counts as 100 %.
    let health_percent = if designed > 0 && full_charged > 0 {
        ((u64::from(full_charged) * 100 / u64::from(designed)).min(100)) as u32
    } else {
        0
    };
    let mwh = |v: u32| if relative { 0 } else { u64::from(v) };
    Battery {
        name: clean(name),
        chemistry: clean(chemistry),
        design_capacity_mwh: mwh(designed),
        full_charge_capacity_mwh: mwh(full_charged),
        cycle_count,
        health_percent,
    }
}

// ---- installed programs ---------------------------------------------------------------------

/// One subkey of an Uninstall key, as read from the registry (values of the wrong type are
/// `None`).
#[derive(Debug, Default, Clone)]
pub struct UninstallEntry {
    pub key: String,
    pub display_name: Option<String>,
    pub display_version: Option<String>,
    pub publisher: Option<String>,
    pub install_date: Option<String>,
    pub system_component: Option<u32>,
    pub parent_key_name: Option<String>,
    pub release_type: Option<String>,
}

/// Longest name, version or publisher kept; registry values can be megabytes of junk.
const MAX_TEXT: usize = 256;

/// Printable text: control characters dropped, whitespace trimmed, bounded in length.
fn text(v: Option<&String>) -> String {
    let s: String = v
        .map(|s| s.chars().filter(|c| !c.is_control()).collect())
        .unwrap_or_default();
    let s = s.trim();
    match s.char_indices().nth(MAX_TEXT) {
        Some((cut, _)) => s[..cut].trim_end().to_owned(),
        None => s.to_owned(),
    }
}

/// The program an Uninstall entry describes, or `None` for what a technician does not count
/// as a program: entries without a name, system components, and updates (entries with a
/// parent, an update release type, or a KB key).
pub fn program(e: &UninstallEntry, arch: &str) -> Option<Software> {
    let name = text(e.display_name.as_ref());
    if name.is_empty() || e.system_component == Some(1) {
        return None;
    }
    if !text(e.parent_key_name.as_ref()).is_empty() {
        return None;
    }
    let release = text(e.release_type.as_ref()).to_ascii_lowercase();
    if matches!(
        release.as_str(),
        "update" | "hotfix" | "security update" | "update rollup" | "service pack"
    ) {
        return None;
    }
    if kb_of_package(&e.key).is_some_and(|kb| e.key.trim_start_matches('{').starts_with(&kb))
        || e.key.contains(".KB")
    {
        return None;
    }
    Some(Software {
        name,
        version: text(e.display_version.as_ref()),
        publisher: text(e.publisher.as_ref()),
        installed_at: e.install_date.as_deref().and_then(yyyymmdd),
        source: "registry".into(),
        arch: arch.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(vendor: &str, product: &str, serial: &str, bus: u32, removable: bool) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        b[10] = u8::from(removable);
        let put = |at_field: usize, s: &str, b: &mut Vec<u8>| {
            if s.is_empty() {
                return;
            }
            let off = b.len() as u32;
            b[at_field..at_field + 4].copy_from_slice(&off.to_le_bytes());
            b.extend_from_slice(s.as_bytes());
            b.push(0);
        };
        put(12, vendor, &mut b);
        put(16, product, &mut b);
        put(24, serial, &mut b);
        b[28..32].copy_from_slice(&bus.to_le_bytes());
        b
    }

    #[test]
    fn storage_descriptor_to_disk() {
        let mut d = PhysicalDisk {
            index: 0,
            seek_penalty: Some(false),
            size_bytes: 512_110_190_592,
            ..PhysicalDisk::default()
        };
        parse_storage_descriptor(
            &descriptor("", "Samsung SSD 970 EVO 500GB", "  S466NX0K  ", 17, false),
            &mut d,
        );
        let p = d.to_proto();
        assert_eq!(p.name, "PhysicalDrive0");
        assert_eq!(p.model, "Samsung SSD 970 EVO 500GB");
        assert_eq!(p.serial, "S466NX0K");
        assert_eq!(p.kind, "ssd");
        assert!(!p.removable);

        let mut usb = PhysicalDisk {
            index: 2,
            seek_penalty: Some(true),
            ..PhysicalDisk::default()
        };
        parse_storage_descriptor(&descriptor("WD", "Elements 25A2", "", 7, false), &mut usb);
        let p = usb.to_proto();
        assert_eq!(
            (p.model.as_str(), p.kind.as_str(), p.removable),
            ("WD Elements 25A2", "hdd", true)
        );

        // Truncated or garbage buffers leave the disk as it was.
        let mut g = PhysicalDisk::default();
        parse_storage_descriptor(&[0xff; 20], &mut g);
        assert_eq!(g, PhysicalDisk::default());
        let mut bad = descriptor("x", "y", "z", 3, false);
        bad[12..16].copy_from_slice(&9999u32.to_le_bytes());
        parse_storage_descriptor(&bad, &mut g);
        assert_eq!(g.vendor, "", "an offset past the end is ignored");
    }

    fn smbios_structure(kind: u8, formatted: &[u8], strings: &[&str]) -> Vec<u8> {
        let mut s = vec![kind, (4 + formatted.len()) as u8, 0, 0];
        s.extend_from_slice(formatted);
        for t in strings {
            s.extend_from_slice(t.as_bytes());
            s.push(0);
        }
        if strings.is_empty() {
            s.push(0);
        }
        s.push(0);
        s
    }

    #[test]
    fn chassis_from_smbios() {
        let mut table = smbios_structure(0, &[1, 2, 3, 4], &["Vendor", "1.0"]);
        table.extend(smbios_structure(1, &[1; 20], &["Dell Inc.", "Latitude"]));
        table.extend(smbios_structure(
            3,
            &[1, 0x8a, 2, 3, 4],
            &["Dell Inc.", "SN1"],
        ));
        table.extend(smbios_structure(127, &[], &[]));
        assert_eq!(smbios_chassis_type(&table), Some(10), "lock bit cleared");
        assert_eq!(smbios_chassis_type(&table[..20]), None);
        assert_eq!(
            smbios_chassis_type(&[3, 2, 0, 0]),
            None,
            "length below the header"
        );
    }

    /// The parser against this machine's own firmware table, where it can be read (root).
    #[cfg(target_os = "linux")]
    #[test]
    fn chassis_matches_linux_dmi() {
        let (Ok(table), Ok(code)) = (
            std::fs::read("/sys/firmware/dmi/tables/DMI"),
            std::fs::read_to_string("/sys/class/dmi/id/chassis_type"),
        ) else {
            return; // not root, or no DMI (containers): the synthetic test above covers it
        };
        assert_eq!(
            smbios_chassis_type(&table).map(u32::from),
            code.trim().parse().ok()
        );
    }

    #[test]
    fn security_center_states() {
        let on = antivirus("Windows Defender", 397_568); // 0x061100
        assert!(on.enabled && on.up_to_date);
        let off = antivirus("Windows Defender", 393_472); // 0x060100
        assert!(!off.enabled && off.up_to_date);
        let stale = antivirus("Sophos", 266_256); // 0x041010
        assert!(stale.enabled && !stale.up_to_date);
        assert_eq!(stale.product_state, 266_256);
    }

    #[test]
    fn update_names_and_dates() {
        assert_eq!(
            kb_of_package("Package_for_KB5034441~31bf3856ad364e35~amd64~~19041.3920.1.2")
                .as_deref(),
            Some("KB5034441")
        );
        assert_eq!(
            kb_of_package("Package_for_RollupFix~31bf3856ad364e35~amd64~~19041.3930.1.6"),
            None
        );
        assert_eq!(kb_of_package("KB12"), None);
        assert_eq!(qfe_date("1/15/2024").unwrap().seconds, 1_705_276_800);
        assert_eq!(qfe_date("12/31/2023").unwrap().seconds, 1_703_980_800);
        assert!(
            qfe_date("31/12/2023").is_none(),
            "not US order: no date rather than a wrong one"
        );
        assert!(qfe_date("garbage").is_none());
        assert_eq!(
            qfe_date("01da4745c8524000").map(|t| t.seconds / 86_400),
            Some(19_737), // 2024-01-15
        );
        assert_eq!(yyyymmdd("20240115").unwrap().seconds, 1_705_276_800);
        assert!(yyyymmdd("2024011").is_none() && yyyymmdd("20241315").is_none());
        assert_eq!(
            update_time("2024-01-15 10:20:30").unwrap().seconds,
            1_705_276_800 + 10 * 3600 + 20 * 60 + 30
        );
        assert!(
            update_time("2024-01-15").is_none() && update_time("2024-01-15 25:00:00").is_none()
        );
        assert_eq!(
            filetime(116_444_736_000_000_000 + 10_000_000)
                .unwrap()
                .seconds,
            1
        );
        assert!(filetime(5).is_none());
    }

    #[test]
    fn hotfixes_merge_by_kb() {
        let h = |id: &str, d: &str, at: Option<i64>, src: &str| Hotfix {
            id: id.into(),
            description: d.into(),
            installed_at: at.map(|s| prost_types::Timestamp {
                seconds: s,
                nanos: 0,
            }),
            source: src.into(),
        };
        let merged = merge_hotfixes(
            vec![
                h("KB5034441", "Security Update", None, "qfe"),
                h("kb500", "Update", Some(9), "qfe"),
            ],
            vec![
                h("KB5034441", "", Some(100), "cbs"),
                h("KB5035000", "", Some(50), "cbs"),
            ],
        );
        let ids: Vec<&str> = merged.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["KB500", "KB5034441", "KB5035000"]);
        assert_eq!(merged[1].description, "Security Update");
        assert_eq!(merged[1].installed_at.as_ref().unwrap().seconds, 100);
        assert_eq!(merged[1].source, "qfe");
    }

    #[test]
    fn battery_health() {
        let b = battery("DELL 7FHHV", "LION", 60_000, 45_000, 300, false);
        assert_eq!(
            (b.health_percent, b.design_capacity_mwh, b.cycle_count),
            (75, 60_000, 300)
        );
        assert_eq!(battery("x", "LiP", 100, 120, 0, false).health_percent, 100);
        let rel = battery("x", "LION", 100, 80, 0, true);
        assert_eq!((rel.health_percent, rel.design_capacity_mwh), (80, 0));
        assert_eq!(
            battery("x", "", 0, 50, 0, false).health_percent,
            0,
            "unknown, not 0 % health"
        );
    }

    fn entry(key: &str, name: &str) -> UninstallEntry {
        UninstallEntry {
            key: key.into(),
            display_name: Some(name.into()),
            display_version: Some("1.2.3".into()),
            publisher: Some("Example Ltd".into()),
            install_date: Some("20240115".into()),
            ..UninstallEntry::default()
        }
    }

    #[test]
    fn programs_and_what_is_skipped() {
        let p = program(&entry("{1111-2222}", "  Firefox  "), "x64").unwrap();
        assert_eq!(
            (p.name.as_str(), p.version.as_str(), p.arch.as_str()),
            ("Firefox", "1.2.3", "x64")
        );
        assert_eq!(p.installed_at.unwrap().seconds, 1_705_276_800);

        let mut sys = entry("Connection Manager", "Connection Manager");
        sys.system_component = Some(1);
        assert!(program(&sys, "x64").is_none(), "system component");
        let mut child = entry("{x}.KB2504637", "Update for Office");
        assert!(program(&child, "x86").is_none(), "update key name");
        child.key = "{abc}".into();
        child.parent_key_name = Some("{office}".into());
        assert!(program(&child, "x86").is_none(), "entry with a parent");
        let mut rel = entry("{def}", "Some hotfix");
        rel.release_type = Some("Security Update".into());
        assert!(program(&rel, "x86").is_none(), "update release type");
        assert!(
            program(&entry("KB5001716", "Update for Windows"), "x64").is_none(),
            "KB key"
        );
        assert!(program(&entry("{k}", "   "), "x64").is_none(), "blank name");
        let mut zero = entry("{z}", "Zoom");
        zero.system_component = Some(0);
        assert!(
            program(&zero, "x64").is_some(),
            "SystemComponent=0 is a program"
        );
    }

    #[test]
    fn garbage_values_are_tamed() {
        let mut e = entry("{g}", "Bad\u{0}\u{7}Name\r\n");
        e.display_version = Some("x".repeat(100_000));
        e.install_date = Some("yesterday".into());
        e.publisher = None;
        let p = program(&e, "x86").unwrap();
        assert_eq!(p.name, "BadName");
        assert_eq!(p.version.chars().count(), MAX_TEXT);
        assert!(p.installed_at.is_none());
        assert_eq!(p.publisher, "");
        let mut wide = entry("{w}", &"é".repeat(300));
        wide.display_version = None;
        assert_eq!(program(&wide, "").unwrap().name.chars().count(), MAX_TEXT);
    }
}
