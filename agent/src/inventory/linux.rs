//! Linux-only readers: DMI (`/sys/class/dmi/id`) and the DNS domain.

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

#[cfg(test)]
mod tests {
    use super::*;

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
