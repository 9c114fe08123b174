//! Windows installed software from the registry's Uninstall keys: HKLM in both the 64- and
//! 32-bit views, and every loaded user hive under HKEY_USERS (HKCU of each logged-on user,
//! and of the service account). What counts as a program is decided in
//! `windows_data::program` (system components and updates are skipped). Values of the wrong
//! type are treated as absent; one unreadable entry never fails the list.

use caretaker_proto::v1::Software;
use winreg::RegKey;
use winreg::enums::{HKEY_LOCAL_MACHINE, HKEY_USERS, KEY_READ, KEY_WOW64_32KEY, KEY_WOW64_64KEY};

use super::SourceError;
use super::windows_data::{UninstallEntry, program};

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
        // `.DEFAULT` is the same hive as S-1-5-18; `_Classes` hold no Uninstall key.
        if sid.ends_with("_Classes") || sid.eq_ignore_ascii_case(".DEFAULT") {
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
        let entry = UninstallEntry {
            display_name: text(&app, "DisplayName"),
            display_version: text(&app, "DisplayVersion"),
            publisher: text(&app, "Publisher"),
            install_date: text(&app, "InstallDate"),
            system_component: app.get_value::<u32, _>("SystemComponent").ok(),
            parent_key_name: text(&app, "ParentKeyName"),
            release_type: text(&app, "ReleaseType"),
            key: sub,
        };
        if let Some(p) = program(&entry, arch) {
            out.push(p);
        }
    }
}

/// A string value; a DWORD is formatted (some installers write versions that way); any other
/// type is absent.
fn text(key: &RegKey, name: &str) -> Option<String> {
    key.get_value::<String, _>(name)
        .ok()
        .or_else(|| key.get_value::<u32, _>(name).ok().map(|n| n.to_string()))
}
