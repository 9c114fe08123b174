//! What the collector's own segment tells about a live address: its MAC (from the kernel's
//! neighbour table) and the vendor that MAC was assigned to (IEEE OUI registry).

use std::collections::HashMap;
use std::net::Ipv4Addr;

/// MACs of complete entries in the IPv4 neighbour table (`/proc/net/arp` on Linux).
pub fn arp_table() -> HashMap<Ipv4Addr, String> {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_to_string("/proc/net/arp")
            .map(|t| parse_proc_net_arp(&t))
            .unwrap_or_default()
    }
    #[cfg(not(target_os = "linux"))]
    {
        HashMap::new()
    }
}

/// Parses `/proc/net/arp`: `IP address  HW type  Flags  HW address  Mask  Device`.
pub fn parse_proc_net_arp(text: &str) -> HashMap<Ipv4Addr, String> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let ip = cols.first()?.parse().ok()?;
            let flags = u32::from_str_radix(cols.get(2)?.trim_start_matches("0x"), 16).ok()?;
            let mac = crate::model::mac::normalise_mac(cols.get(3)?)?;
            // 0x2 = ATF_COM: the entry is complete (resolved).
            (flags & 0x2 != 0).then_some((ip, mac))
        })
        .collect()
}

/// IPv6 addresses in the kernel's neighbour table (netlink), by MAC: what this machine has
/// already heard of its neighbours over IPv6 (nothing is sent). Failed and incomplete
/// entries are left out. Empty where netlink is not available.
pub fn ipv6_by_mac() -> HashMap<String, Vec<String>> {
    #[cfg(target_os = "linux")]
    {
        match netlink_neighbours() {
            Ok(entries) => group_by_mac(entries),
            Err(error) => {
                tracing::debug!(%error, "Cannot read the IPv6 neighbour table");
                HashMap::new()
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        HashMap::new()
    }
}

fn group_by_mac(entries: Vec<(std::net::Ipv6Addr, String)>) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (ip, mac) in entries {
        if ip.is_multicast() || ip.is_unspecified() || ip.is_loopback() {
            continue;
        }
        let list = out.entry(mac).or_default();
        let text = ip.to_string();
        if !list.contains(&text) {
            list.push(text);
            list.sort();
        }
    }
    out
}

/// One RTM_GETNEIGH dump for AF_INET6.
#[cfg(target_os = "linux")]
fn netlink_neighbours() -> std::io::Result<Vec<(std::net::Ipv6Addr, String)>> {
    use netlink_packet_core::{
        NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
    };
    use netlink_packet_route::neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
    };
    use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
    use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_DUMP | NLM_F_REQUEST;
    let mut message = NeighbourMessage::default();
    message.header.family = AddressFamily::Inet6;
    let mut request = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::GetNeighbour(message)),
    );
    request.finalize();
    let mut buf = vec![0; request.header.length as usize];
    request.serialize(&mut buf[..]);
    socket.send(&buf, 0)?;
    let mut out = Vec::new();
    let mut receive = vec![0u8; 1 << 16];
    loop {
        let size = socket.recv(&mut &mut receive[..], 0)?;
        let mut offset = 0;
        while offset < size {
            let Ok(msg) =
                NetlinkMessage::<RouteNetlinkMessage>::deserialize(&receive[offset..size])
            else {
                return Ok(out);
            };
            let length = msg.header.length as usize;
            match msg.payload {
                NetlinkPayload::Done(_) => return Ok(out),
                NetlinkPayload::Error(error) => {
                    return Err(std::io::Error::other(format!("netlink: {error:?}")));
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(entry)) => {
                    let usable = !matches!(
                        entry.header.state,
                        NeighbourState::Failed | NeighbourState::Incomplete | NeighbourState::None
                    );
                    let ip = entry.attributes.iter().find_map(|a| match a {
                        NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => Some(*ip),
                        _ => None,
                    });
                    let mac = entry.attributes.iter().find_map(|a| match a {
                        NeighbourAttribute::LinkLayerAddress(bytes) if bytes.len() == 6 => Some(
                            bytes
                                .iter()
                                .map(|b| format!("{b:02x}"))
                                .collect::<Vec<_>>()
                                .join(":"),
                        ),
                        _ => None,
                    });
                    if let (true, Some(ip), Some(mac)) = (usable, ip, mac) {
                        out.push((ip, mac));
                    }
                }
                _ => {}
            }
            if length == 0 {
                return Ok(out);
            }
            offset += length;
        }
    }
}

/// What a MAC says about who made the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacVendor {
    /// Registered to this organisation.
    Known(String),
    /// Locally administered (random MACs of phones and laptops, VMs): no vendor.
    LocallyAdministered,
    /// Not in the registry.
    Unknown,
}

impl MacVendor {
    /// The vendor as the register shows it.
    pub fn label(&self) -> String {
        match self {
            MacVendor::Known(name) => name.clone(),
            MacVendor::LocallyAdministered => "(locally administered MAC)".to_owned(),
            MacVendor::Unknown => String::new(),
        }
    }
}

pub fn vendor_of(mac: &str) -> MacVendor {
    if crate::model::mac::is_locally_administered(mac) {
        return MacVendor::LocallyAdministered;
    }
    match oui_data::lookup(mac) {
        Some(record) => MacVendor::Known(record.organization().trim().to_owned()),
        None => MacVendor::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_neighbour_entries_only() {
        let table = "IP address       HW type     Flags       HW address            Mask     Device\n\
                     198.18.0.10      0x1         0x2         00:1b:21:aa:bb:cc     *        eth0\n\
                     198.18.0.11      0x1         0x0         00:00:00:00:00:00     *        eth0\n\
                     198.18.0.12      0x1         0x6         3C:22:FB:01:02:03     *        eth0\n";
        let parsed = parse_proc_net_arp(table);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[&Ipv4Addr::new(198, 18, 0, 12)], "3c:22:fb:01:02:03");
    }

    #[test]
    fn ipv6_neighbours_group_by_mac_without_multicast() {
        let mac = "02:00:00:00:00:07".to_owned();
        let grouped = group_by_mac(vec![
            ("fe80::7".parse().expect("v6"), mac.clone()),
            ("2001:db8::7".parse().expect("v6"), mac.clone()),
            ("fe80::7".parse().expect("v6"), mac.clone()),
            ("ff02::1".parse().expect("v6"), mac.clone()),
        ]);
        assert_eq!(grouped[&mac], ["2001:db8::7", "fe80::7"]);
    }

    #[test]
    fn the_ipv6_neighbour_table_can_be_read() {
        // Loopback has no neighbours; the call itself must work (netlink) and not panic.
        let _ = ipv6_by_mac();
        #[cfg(target_os = "linux")]
        assert!(netlink_neighbours().is_ok());
    }

    #[test]
    fn vendors_come_from_the_ieee_registry() {
        assert!(
            matches!(vendor_of("00:1b:21:aa:bb:cc"), MacVendor::Known(v) if v.contains("Intel"))
        );
        assert_eq!(
            vendor_of("02:fc:00:00:00:01"),
            MacVendor::LocallyAdministered
        );
        assert_eq!(
            vendor_of("da:a1:19:00:00:01").label(),
            "(locally administered MAC)"
        );
    }
}

/// How often the kernel's IPv4 neighbour table has been full (all CPUs), when it says.
///
/// A sweep of a large range on the collector's own segment creates one neighbour entry per
/// address; past `net.ipv4.neigh.default.gc_thresh3` (1024 by default) probes are silently
/// dropped, so a rising count during a sweep means hosts may have been missed.
pub fn table_fulls() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/stat/arp_cache").ok()?;
    parse_table_fulls(&text)
}

fn parse_table_fulls(text: &str) -> Option<u64> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    let column = header.iter().position(|h| *h == "table_fulls")?;
    Some(
        lines
            .filter_map(|l| l.split_whitespace().nth(column))
            .filter_map(|v| u64::from_str_radix(v, 16).ok())
            .sum(),
    )
}

#[cfg(test)]
mod table_tests {
    #[test]
    fn table_fulls_are_summed_over_cpus() {
        let text = "entries  allocs destroys hash_grows  lookups hits  res_failed  rcv_probes_mcast rcv_probes_ucast  periodic_gc_runs forced_gc_runs unresolved_discards table_fulls\n\
                    00000004  00000001 00000000 00000000  00000000 00000000  00000000  00000000 00000000  00000000 00000000 00000000 0000000a\n\
                    00000004  00000001 00000000 00000000  00000000 00000000  00000000  00000000 00000000  00000000 00000000 00000000 00000002\n";
        assert_eq!(super::parse_table_fulls(text), Some(12));
    }
}
