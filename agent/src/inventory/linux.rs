//! Linux-only readers: DMI (`/sys/class/dmi/id`), the DNS domain and batteries
//! (`/sys/class/power_supply`).

use std::path::Path;

use super::clean;
use super::hardware::{Firmware, chassis_name};

fn dmi_field(name: &str) -> String {
    // Some fields (serials, UUID) are readable by root only; those stay empty.
    std::fs::read_to_string(Path::new("/sys/class/dmi/id").join(name))
        .map(|s| clean(&s))
        .unwrap_or_default()
}

pub fn dmi() -> Firmware {
    let chassis = dmi_field("chassis_type")
        .parse::<u32>()
        .map(|c| chassis_name(c).to_owned())
        .unwrap_or_default();
    let uuid = dmi_field("product_uuid").to_lowercase();
    Firmware {
        vendor: dmi_field("sys_vendor"),
        model: dmi_field("product_name"),
        serial: dmi_field("product_serial"),
        smbios_uuid: if uuid.is_empty() {
            super::hardware::smbios_uuid()
        } else {
            uuid
        },
        bios_vendor: dmi_field("bios_vendor"),
        bios_version: dmi_field("bios_version"),
        bios_date: dmi_field("bios_date"),
        board_vendor: dmi_field("board_vendor"),
        board_model: dmi_field("board_name"),
        board_serial: dmi_field("board_serial"),
        chassis,
    }
}

/// The DNS domain from `/etc/resolv.conf` (`domain`, else the first `search` entry).
pub fn dns_domain() -> String {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| parse_resolv_domain(&t))
        .unwrap_or_default()
}

pub fn parse_resolv_domain(text: &str) -> String {
    let mut search = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("domain") => {
                if let Some(d) = words.next() {
                    return d.trim_end_matches('.').to_owned();
                }
            }
            Some("search") if search.is_none() => {
                search = words
                    .next()
                    .filter(|d| *d != ".")
                    .map(|d| d.trim_end_matches('.').to_owned());
            }
            _ => {}
        }
    }
    search.unwrap_or_default()
}

/// Batteries from `/sys/class/power_supply/*` whose `type` is `Battery`.
pub fn batteries() -> Vec<caretaker_proto::v1::Battery> {
    batteries_in(Path::new("/sys/class/power_supply"))
}

pub fn batteries_in(root: &Path) -> Vec<caretaker_proto::v1::Battery> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let dir = e.path();
        let read = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        if read("type") != "Battery" || read("scope") == "Device" {
            continue; // mice and keyboards report batteries with scope Device
        }
        let num = |f: &str| read(f).parse::<u64>().ok();
        // energy_* in µWh; charge_* (µAh) only give a ratio.
        let (design, full, relative) = match (num("energy_full_design"), num("energy_full")) {
            (Some(d), Some(f)) => (d / 1000, f / 1000, false),
            _ => (
                num("charge_full_design").unwrap_or(0),
                num("charge_full").unwrap_or(0),
                true,
            ),
        };
        let name = [read("manufacturer"), read("model_name")]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        out.push(super::windows_data::battery(
            &if name.is_empty() {
                e.file_name().to_string_lossy().into_owned()
            } else {
                name
            },
            &read("technology"),
            u32::try_from(design).unwrap_or(u32::MAX),
            u32::try_from(full).unwrap_or(u32::MAX),
            num("cycle_count")
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(0),
            relative,
        ));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysfs_batteries() {
        let dir = tempfile::tempdir().unwrap();
        let put = |sub: &str, files: &[(&str, &str)]| {
            let d = dir.path().join(sub);
            std::fs::create_dir_all(&d).unwrap();
            for (f, v) in files {
                std::fs::write(d.join(f), format!("{v}\n")).unwrap();
            }
        };
        put(
            "BAT0",
            &[
                ("type", "Battery"),
                ("energy_full_design", "57000000"),
                ("energy_full", "42750000"),
                ("cycle_count", "412"),
                ("technology", "Li-ion"),
                ("manufacturer", "LGC"),
                ("model_name", "5B10W13930"),
            ],
        );
        put("AC", &[("type", "Mains")]);
        put(
            "hidpp_battery_0",
            &[("type", "Battery"), ("scope", "Device")],
        );
        let b = batteries_in(dir.path());
        assert_eq!(b.len(), 1, "{b:?}");
        assert_eq!(b[0].name, "LGC 5B10W13930");
        assert_eq!(
            (
                b[0].design_capacity_mwh,
                b[0].health_percent,
                b[0].cycle_count
            ),
            (57_000, 75, 412)
        );
    }

    #[test]
    fn resolv_conf_domain() {
        assert_eq!(
            parse_resolv_domain("nameserver 10.0.0.1\nsearch school.example other.example\n"),
            "school.example"
        );
        assert_eq!(
            parse_resolv_domain("search a.example\ndomain b.example.\n"),
            "b.example"
        );
        assert_eq!(parse_resolv_domain("search .\nnameserver 1.1.1.1\n"), "");
    }
}
