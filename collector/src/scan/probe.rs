//! Optional TCP connect probes of a few telling ports on live hosts, to classify devices that
//! do not answer SNMP (9100/631 printers, 3389/445 Windows PCs, 22 servers, 80/443 appliances).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::targets::Scope;
use crate::model::AssetKind;

pub const DEFAULT_PORTS: [u16; 7] = [22, 80, 443, 445, 631, 3389, 9100];

/// Ports that accepted a connection on each host, probed with bounded concurrency.
pub async fn open_ports(
    scope: &Scope,
    hosts: &[Ipv4Addr],
    ports: &[u16],
    timeout: Duration,
    concurrency: usize,
) -> Vec<(Ipv4Addr, Vec<u16>)> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for &ip in hosts.iter().filter(|ip| scope.contains(**ip)) {
        for &port in ports {
            let permits = permits.clone();
            tasks.spawn(async move {
                let _permit = permits
                    .acquire_owned()
                    .await
                    .expect("semaphore is never closed");
                let connect = tokio::net::TcpStream::connect(SocketAddr::from((ip, port)));
                let open = matches!(tokio::time::timeout(timeout, connect).await, Ok(Ok(_)));
                (ip, port, open)
            });
        }
    }
    let mut by_host: std::collections::BTreeMap<Ipv4Addr, Vec<u16>> =
        hosts.iter().map(|ip| (*ip, Vec::new())).collect();
    while let Some(Ok((ip, port, open))) = tasks.join_next().await {
        if open {
            by_host.entry(ip).or_default().push(port);
        }
    }
    by_host
        .into_iter()
        .map(|(ip, mut ports)| {
            ports.sort_unstable();
            (ip, ports)
        })
        .collect()
}

/// A best guess from open ports and the MAC vendor, for hosts SNMP could not describe.
pub fn guess_kind(open: &[u16], vendor: &str) -> AssetKind {
    let vendor = vendor.to_ascii_lowercase();
    let has = |p: u16| open.contains(&p);
    if has(9100) || has(631) && !has(22) {
        return AssetKind::Printer;
    }
    const BY_VENDOR: [(&str, AssetKind); 12] = [
        ("ubiquiti", AssetKind::AccessPoint),
        ("ruckus", AssetKind::AccessPoint),
        ("aruba", AssetKind::AccessPoint),
        ("synology", AssetKind::Nas),
        ("qnap", AssetKind::Nas),
        ("american power conversion", AssetKind::Ups),
        ("polycom", AssetKind::Phone),
        ("yealink", AssetKind::Phone),
        ("snom", AssetKind::Phone),
        ("brother", AssetKind::Printer),
        ("kyocera", AssetKind::Printer),
        ("seiko epson", AssetKind::Projector),
    ];
    if let Some((_, kind)) = BY_VENDOR.iter().find(|(v, _)| vendor.contains(v)) {
        return *kind;
    }
    if has(3389) || has(445) {
        return AssetKind::Pc;
    }
    if has(22) {
        return AssetKind::Server;
    }
    AssetKind::Unknown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_vendors_suggest_kinds() {
        assert_eq!(
            guess_kind(&[80, 443, 9100], "Hewlett Packard"),
            AssetKind::Printer
        );
        assert_eq!(guess_kind(&[445, 3389], "Dell Inc."), AssetKind::Pc);
        assert_eq!(
            guess_kind(&[22, 443], "Ubiquiti Inc"),
            AssetKind::AccessPoint
        );
        assert_eq!(guess_kind(&[22], ""), AssetKind::Server);
        assert_eq!(guess_kind(&[], ""), AssetKind::Unknown);
    }

    #[tokio::test]
    async fn an_open_loopback_port_is_found_and_a_closed_one_is_not() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open = listener.local_addr().expect("addr").port();
        // Bound but not listening: refused, and no other process can listen there meanwhile.
        let reserved = tokio::net::TcpSocket::new_v4().expect("socket");
        reserved
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let closed = reserved.local_addr().expect("addr").port();
        let scope = Scope::parse(&["127.0.0.1/32".to_owned()], 16).expect("scope");
        let found = open_ports(
            &scope,
            &[Ipv4Addr::LOCALHOST],
            &[open, closed],
            Duration::from_secs(1),
            8,
        )
        .await;
        assert_eq!(found, vec![(Ipv4Addr::LOCALHOST, vec![open])]);
    }
}
