//! Host name, domain, operating system, kernel, architecture and boot time.

use caretaker_proto::v1::System;

use super::{SourceError, timestamp_secs};

pub fn hostname() -> String {
    sysinfo::System::host_name()
        .map(|h| h.trim().to_owned())
        .unwrap_or_default()
}

pub fn collect() -> Result<System, SourceError> {
    let full = hostname();
    if full.is_empty() {
        return Err(SourceError::Other("no host name".into()));
    }
    // A fully qualified node name carries its domain; keep the short name as hostname.
    let (host, fqdn_domain) = match full.split_once('.') {
        Some((h, d)) => (h.to_owned(), d.to_owned()),
        None => (full.clone(), String::new()),
    };
    let os = os_info();
    let (dom, dom_type) = domain();
    Ok(System {
        hostname: host,
        domain: if fqdn_domain.is_empty() {
            dom
        } else {
            fqdn_domain
        },
        domain_type: dom_type.to_owned(),
        last_update_at: None,
        os_name: os.name,
        os_version: os.version,
        os_build: os.build,
        kernel: sysinfo::System::kernel_version().unwrap_or_default(),
        arch: sysinfo::System::cpu_arch(),
        boot_time: timestamp_secs(sysinfo::System::boot_time().unwrap_or(0)),
        machine_id: machine_id(),
    })
}

/// The OS installation's id: changes on reimage, shared by unsysprepped clones.
#[cfg(target_os = "linux")]
pub fn machine_id() -> String {
    ["/etc/machine-id", "/var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_default()
}

#[cfg(windows)]
pub fn machine_id() -> String {
    super::windows::machine_guid()
}

#[cfg(not(any(target_os = "linux", windows)))]
pub fn machine_id() -> String {
    String::new()
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct OsInfo {
    pub name: String,
    pub version: String,
    pub build: String,
}

#[cfg(target_os = "linux")]
fn os_info() -> OsInfo {
    let text = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .unwrap_or_default();
    let mut os = parse_os_release(&text);
    // Debian keeps its point release ("12.5") here.
    if let Ok(v) = std::fs::read_to_string("/etc/debian_version") {
        let v = v.trim();
        if v.starts_with(|c: char| c.is_ascii_digit()) {
            os.build = v.to_owned();
        }
    }
    if os.name.is_empty() {
        os.name = sysinfo::System::name().unwrap_or_else(|_| "Linux".into());
    }
    os
}

#[cfg(windows)]
fn os_info() -> OsInfo {
    super::windows::os_info()
}

#[cfg(not(any(target_os = "linux", windows)))]
fn os_info() -> OsInfo {
    OsInfo {
        name: sysinfo::System::name().unwrap_or_default(),
        version: sysinfo::System::os_version().unwrap_or_default(),
        build: sysinfo::System::long_os_version().unwrap_or_default(),
    }
}

/// The domain and whether it is an AD `domain` or a `workgroup` ("" when unknown).
#[cfg(target_os = "linux")]
fn domain() -> (String, &'static str) {
    (super::linux::dns_domain(), "")
}

#[cfg(windows)]
fn domain() -> (String, &'static str) {
    super::windows::domain()
}

#[cfg(not(any(target_os = "linux", windows)))]
fn domain() -> (String, &'static str) {
    (String::new(), "")
}

/// Parses `/etc/os-release`: NAME, VERSION_ID, and VERSION (or PRETTY_NAME) as the build.
pub fn parse_os_release(text: &str) -> OsInfo {
    let mut name = String::new();
    let mut version_id = String::new();
    let mut version = String::new();
    let mut pretty = String::new();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        match key.trim() {
            "NAME" => name = value,
            "VERSION_ID" => version_id = value,
            "VERSION" => version = value,
            "PRETTY_NAME" => pretty = value,
            _ => {}
        }
    }
    OsInfo {
        name,
        version: version_id,
        build: if version.is_empty() { pretty } else { version },
    }
}

fn unquote(v: &str) -> String {
    let v = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(v);
    v.replace("\\\"", "\"").replace("\\\\", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_os_release() {
        let text = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"#;
        assert_eq!(
            parse_os_release(text),
            OsInfo {
                name: "Debian GNU/Linux".into(),
                version: "12".into(),
                build: "12 (bookworm)".into(),
            }
        );
    }

    #[test]
    fn rolling_release_without_version_uses_pretty_name() {
        let text = "NAME=Arch Linux\nPRETTY_NAME='Arch Linux'\n# comment\nID=arch\n";
        let os = parse_os_release(text);
        assert_eq!(os.name, "Arch Linux");
        assert_eq!(os.version, "");
        assert_eq!(os.build, "Arch Linux");
    }
}
