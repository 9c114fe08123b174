//! Network interfaces: name, MAC, addresses in CIDR, speed, up, virtual.

use std::net::IpAddr;

use caretaker_proto::v1::NetworkInterface;
use sysinfo::{InterfaceOperationalState, Networks};

use super::SourceError;

pub fn collect() -> Result<Vec<NetworkInterface>, SourceError> {
    let networks = Networks::new_with_refreshed_list()
        .map_err(|e| SourceError::Other(format!("sysinfo networks: {e}")))?;
    let mut out: Vec<NetworkInterface> = networks
        .iter()
        .map(|(name, data)| {
            let name = name.to_string_lossy().into_owned();
            let mac = data.mac_address();
            let mac = if mac.is_unspecified() {
                String::new()
            } else {
                mac.to_string().to_lowercase()
            };
            let mut ipv4 = Vec::new();
            let mut ipv6 = Vec::new();
            for net in data.ip_networks() {
                match net.addr {
                    IpAddr::V4(_) => ipv4.push(net.to_string()),
                    IpAddr::V6(_) => ipv6.push(net.to_string()),
                }
            }
            ipv4.sort();
            ipv6.sort();
            let facts = platform_facts(&name, data);
            NetworkInterface {
                name,
                mac,
                ipv4,
                ipv6,
                speed_mbps: facts.speed_mbps,
                up: facts.up,
                r#virtual: facts.is_virtual,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

struct Facts {
    speed_mbps: u64,
    up: bool,
    is_virtual: bool,
}

#[cfg(target_os = "linux")]
fn platform_facts(name: &str, data: &sysinfo::NetworkData) -> Facts {
    let dir = std::path::Path::new("/sys/class/net").join(name);
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default()
    };
    // -1 (or unreadable, when the link is down) means unknown.
    let speed_mbps = read("speed").parse::<i64>().unwrap_or(0).max(0) as u64;
    let flags = u32::from_str_radix(read("flags").trim_start_matches("0x"), 16).ok();
    let up = match flags {
        Some(f) => f & 1 == 1, // IFF_UP
        None => data.operational_state() == InterfaceOperationalState::Up,
    };
    let is_virtual = name == "lo"
        || std::fs::canonicalize(&dir)
            .map(|p| p.starts_with("/sys/devices/virtual"))
            .unwrap_or(false);
    Facts {
        speed_mbps,
        up,
        is_virtual,
    }
}

#[cfg(not(target_os = "linux"))]
fn platform_facts(name: &str, data: &sysinfo::NetworkData) -> Facts {
    let lower = name.to_lowercase();
    let is_virtual = lower.contains("loopback")
        || lower.contains("virtual")
        || lower.contains("vethernet")
        || lower.contains("hyper-v")
        || lower.contains("vpn")
        || data.mac_address().is_unspecified();
    Facts {
        speed_mbps: data.receive_link_speed().unwrap_or(0) / 1_000_000,
        up: data.operational_state() == InterfaceOperationalState::Up,
        is_virtual,
    }
}
