//! Windows installed software from the registry's Uninstall keys: HKLM in both the 64- and
//! 32-bit views, and every loaded user hive under HKEY_USERS (which includes HKCU).

use caretaker_proto::v1::Software;
use winreg::RegKey;
use winreg::enums::{HKEY_LOCAL_MACHINE, HKEY_USERS, KEY_READ, KEY_WOW64_32KEY, KEY_WOW64_64KEY};

use super::{SourceError, timestamp_secs};

const UNINSTALL: &str = r"SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall";

pub fn collect() -> Result<Vec<Software>, SourceError> {
    let mut out = Vec::new();
    let hklm = RegKey::predef(HKEY_LOCAL_MACHINE);
    let mut opened_any = false;
    for (flag, arch) in [(KEY_WOW64_64KEY, "x64"), (KEY_WOW64_32KEY, "x86")] {
        if let Ok(key) = hklm.open_subkey_with_flags(UNINSTALL, KEY_READ | flag) {
            opened_any = true;
            read_uninstall(&key, arch, &mut out);
        }
    }
    let hku = RegKey::predef(HKEY_USERS);
    for sid in hku.enum_keys().flatten() {
        if sid.ends_with("_Classes") {
            continue;
        }
        if let Ok(key) = hku.open_subkey_with_flags(format!(r"{sid}\{UNINSTALL}"), KEY_READ) {
            read_uninstall(&key, "", &mut out);
        }
    }
    if !opened_any {
        return Err(SourceError::Other(
            "cannot open the Uninstall registry key".into(),
        ));
    }
    Ok(out)
}

fn read_uninstall(key: &RegKey, arch: &str, out: &mut Vec<Software>) {
    for sub in key.enum_keys().flatten() {
        let Ok(app) = key.open_subkey_with_flags(&sub, KEY_READ) else {
            continue;
        };
        let s = |n: &str| app.get_value::<String, _>(n).unwrap_or_default();
        let name = s("DisplayName").trim().to_owned();
        if name.is_empty() {
            continue;
        }
        // Updates and hidden components are not programs a technician counts.
        if app.get_value::<u32, _>("SystemComponent").unwrap_or(0) == 1
            || !s("ParentKeyName").is_empty()
        {
            continue;
        }
        out.push(Software {
            name,
            version: s("DisplayVersion").trim().to_owned(),
            publisher: s("Publisher").trim().to_owned(),
            installed_at: parse_install_date(&s("InstallDate")),
            source: "registry".into(),
            arch: arch.to_owned(),
        });
    }
}

/// `InstallDate` is `YYYYMMDD`.
fn parse_install_date(s: &str) -> Option<prost_types::Timestamp> {
    let s = s.trim();
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = s[0..4].parse().ok()?;
    let m: u32 = s[4..6].parse().ok()?;
    let d: u32 = s[6..8].parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
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
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
