//! The liveness sweep: which addresses in scope have a device behind them, right now.
//!
//! Each target goes the way the kernel's routing table says it leaves: addresses on one of
//! this machine's own Ethernet segments are asked by ARP (`arp`, raw packet socket, one
//! blocking thread per interface), every other one by ICMP echo (`icmp`, one socket). An
//! address is live only if it answered a request we sent it, in time (see both modules). This
//! machine's own addresses are never probed and never listed. When no packet socket can be
//! had (no CAP_NET_RAW), on-link addresses fall back to ICMP through the kernel (ARP by the
//! kernel, paced at the on-link rate), and their MACs come from the neighbour table.
//!
//! Every address is checked against the [`Scope`] before a packet is sent.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::arp::{self, ArpChannel, ArpOptions, Segment};
use super::icmp::{self, IcmpOptions, IcmpSocket, Target};
use super::targets::{LocalAddresses, Routes, Scope};

#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Echo requests per second, across the whole sweep, to routed addresses.
    pub rate: u32,
    /// Requests per second to addresses on the collector's own segments (ARP broadcasts:
    /// every device on the segment has to look at every one of them).
    pub on_link_rate: u32,
    /// How long to wait for each reply.
    pub timeout: Duration,
    /// Extra requests to an address that stayed silent (ARP gets one more round: broadcasts
    /// are the first packets a busy network drops).
    pub retries: u32,
    /// Echo requests awaiting a reply at once.
    pub max_in_flight: usize,
}

impl Default for SweepOptions {
    fn default() -> Self {
        Self {
            rate: 20_000,
            on_link_rate: 4_000,
            timeout: Duration::from_secs(1),
            retries: 1,
            max_in_flight: 16_384,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error(
        "cannot open an ICMP socket (needs root, CAP_NET_RAW or net.ipv4.ping_group_range): {0}"
    )]
    Socket(#[source] std::io::Error),
}

/// How an address was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Arp,
    Icmp,
}

/// One address that answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Alive {
    pub ip: Ipv4Addr,
    pub rtt: Duration,
    /// 1 when the first request was answered.
    pub attempts: u32,
    /// The MAC that answered ARP (on-link addresses).
    pub mac: Option<String>,
    pub method: Method,
}

/// Progress callbacks: addresses probed so far and hosts found.
pub trait Progress: Send + Sync {
    fn probed(&self, _count: u64) {}
    fn found(&self, _alive: &Alive) {}
}

impl Progress for () {}

/// How each target leaves this machine.
#[derive(Debug, Default)]
pub struct Plan {
    /// ARP per interface.
    pub segments: Vec<Segment>,
    /// ICMP, with each address's pacing.
    pub icmp: Vec<Target>,
    /// This machine's own addresses among the targets (not probed).
    pub own: Vec<Ipv4Addr>,
}

/// An interface that can be swept by ARP: its MAC and IPv4 addresses.
#[derive(Debug, Clone)]
pub struct EtherIface {
    pub name: String,
    pub mac: [u8; 6],
    pub addrs: Vec<(Ipv4Addr, u8)>,
}

/// Up, broadcast-capable Ethernet interfaces with an IPv4 address (not loopback,
/// point-to-point or NOARP ones).
pub fn ether_interfaces() -> Vec<EtherIface> {
    #[cfg(target_os = "linux")]
    {
        const IFF_NOARP: u64 = 0x80;
        pnet_datalink::interfaces()
            .into_iter()
            .filter(|i| i.is_up() && !i.is_loopback() && !i.is_point_to_point() && i.is_broadcast())
            .filter(|i| u64::from(i.flags) & IFF_NOARP == 0)
            .filter_map(|i| {
                let mac: [u8; 6] = i.mac?.octets();
                let addrs: Vec<(Ipv4Addr, u8)> = i
                    .ips
                    .iter()
                    .filter_map(|n| match n.ip() {
                        std::net::IpAddr::V4(ip) => Some((ip, n.prefix())),
                        std::net::IpAddr::V6(_) => None,
                    })
                    .collect();
                (mac != [0; 6] && !addrs.is_empty()).then(|| EtherIface {
                    name: i.name.clone(),
                    mac,
                    addrs,
                })
            })
            .collect()
    }
    #[cfg(not(target_os = "linux"))]
    {
        Vec::new()
    }
}

/// Sorts `targets` (in scope, in the order given) into ARP segments and ICMP targets.
pub fn plan(
    scope: &Scope,
    targets: &[Ipv4Addr],
    options: &SweepOptions,
    routes: &Routes,
    ifaces: &[EtherIface],
    local: &LocalAddresses,
) -> Plan {
    let interval = Duration::from_secs_f64(1.0 / f64::from(options.rate.max(1)));
    let on_link_interval = Duration::from_secs_f64(1.0 / f64::from(options.on_link_rate.max(1)));
    let mut plan = Plan::default();
    let mut segments: BTreeMap<String, Segment> = BTreeMap::new();
    for &ip in targets {
        if !scope.contains(ip) {
            tracing::error!(%ip, "Refusing to probe an address outside the scan ranges");
            continue;
        }
        if local.contains(ip) {
            plan.own.push(ip);
            continue;
        }
        let route = routes.lookup(ip);
        let on_link = route.is_some_and(|r| r.gateway.is_none());
        let iface = route
            .filter(|r| r.gateway.is_none())
            .and_then(|r| ifaces.iter().find(|i| i.name == r.iface).map(|i| (r, i)));
        match iface {
            Some((route, iface)) => {
                let source = iface
                    .addrs
                    .iter()
                    .find(|(a, _)| route.dest.contains(*a))
                    .or(iface.addrs.first())
                    .map(|(a, _)| *a)
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                segments
                    .entry(iface.name.clone())
                    .or_insert_with(|| Segment {
                        iface: iface.name.clone(),
                        source,
                        mac: iface.mac,
                        targets: Vec::new(),
                    })
                    .targets
                    .push(ip);
            }
            None => plan.icmp.push(Target {
                ip,
                interval: if on_link { on_link_interval } else { interval },
            }),
        }
    }
    plan.segments = segments.into_values().collect();
    plan
}

enum Event {
    Probed,
    Found(Alive),
}

/// Sweeps `targets` (already shuffled, all inside `scope`). Returns the live hosts in the
/// order they answered. Stops early (returning what it has) when `cancel` fires.
pub async fn sweep(
    scope: &Scope,
    targets: Vec<Ipv4Addr>,
    options: &SweepOptions,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<Vec<Alive>, PingError> {
    let plan = plan(
        scope,
        &targets,
        options,
        &Routes::read(),
        &ether_interfaces(),
        &LocalAddresses::read(),
    );
    run_plan(plan, options, progress, cancel).await
}

/// Runs a [`plan`].
pub async fn run_plan(
    plan: Plan,
    options: &SweepOptions,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<Vec<Alive>, PingError> {
    let Plan {
        segments,
        mut icmp,
        own: _,
    } = plan;
    let on_link_interval = Duration::from_secs_f64(1.0 / f64::from(options.on_link_rate.max(1)));
    let mut channels = Vec::new();
    for segment in segments {
        match ArpChannel::open(&segment.iface, segment.source) {
            Ok(channel) => channels.push((channel, segment)),
            Err(error) => {
                tracing::warn!(%error, iface = %segment.iface,
                    "No ARP sweep on this segment; asking its addresses by ICMP through the kernel instead");
                icmp.extend(segment.targets.into_iter().map(|ip| Target {
                    ip,
                    interval: on_link_interval,
                }));
            }
        }
    }
    let capacity = channels.iter().map(|c| c.1.targets.len()).sum::<usize>() + icmp.len();
    let (tx, mut rx) = mpsc::channel::<Event>(capacity * 2 + 16);
    let arp_options = ArpOptions {
        rate: options.on_link_rate,
        rounds: options.retries + 1,
        gap: (options.timeout / 10).clamp(Duration::from_millis(50), Duration::from_millis(200)),
        timeout: options.timeout,
    };
    let mut threads = Vec::new();
    for (channel, segment) in channels {
        let tx = tx.clone();
        let cancel = cancel.clone();
        let arp_options = arp_options.clone();
        threads.push(tokio::task::spawn_blocking(move || {
            let probed_tx = tx.clone();
            channel.sweep(
                &segment,
                &arp_options,
                &cancel,
                &mut |reply| {
                    let _ = tx.blocking_send(Event::Found(Alive {
                        ip: reply.ip,
                        rtt: reply.rtt,
                        attempts: reply.attempts,
                        mac: Some(arp::mac_text(&reply.mac)),
                        method: Method::Arp,
                    }));
                },
                &mut || {
                    let _ = probed_tx.blocking_send(Event::Probed);
                },
            );
        }));
    }
    let (found_tx, probed_tx) = (tx.clone(), tx.clone());
    drop(tx);
    let icmp_sweep = async move {
        if icmp.is_empty() {
            return Ok(());
        }
        let socket = IcmpSocket::open().map_err(PingError::Socket)?;
        let icmp_options = IcmpOptions {
            timeout: options.timeout,
            retries: options.retries,
            max_in_flight: options.max_in_flight,
        };
        icmp::sweep(
            &socket,
            &icmp,
            &icmp_options,
            cancel,
            &mut |reply| {
                let _ = found_tx.try_send(Event::Found(Alive {
                    ip: reply.ip,
                    rtt: reply.rtt,
                    attempts: reply.attempts,
                    mac: None,
                    method: Method::Icmp,
                }));
            },
            &mut |_| {
                let _ = probed_tx.try_send(Event::Probed);
            },
        )
        .await;
        Ok(())
    };
    let mut alive = Vec::new();
    let collect = async {
        let mut probed = 0;
        while let Some(event) = rx.recv().await {
            match event {
                Event::Probed => {
                    probed += 1;
                    progress.probed(probed);
                }
                Event::Found(found) => {
                    progress.found(&found);
                    alive.push(found);
                }
            }
        }
    };
    let (icmp_result, ()) = tokio::join!(
        async {
            let result = icmp_sweep.await;
            for thread in threads {
                let _ = thread.await;
            }
            result
        },
        collect
    );
    icmp_result?;
    Ok(alive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_answers_and_out_of_scope_addresses_are_never_probed() {
        let scope = Scope::parse(&["127.0.0.0/30".to_owned()], 1024).expect("scope");
        let targets = vec![
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(127, 0, 0, 2),
            Ipv4Addr::new(198, 18, 0, 1),
        ];
        let options = SweepOptions {
            timeout: Duration::from_millis(500),
            retries: 0,
            ..Default::default()
        };
        // Loopback is this machine: planned as our own, never probed.
        let plan = plan(
            &scope,
            &targets,
            &options,
            &Routes::default(),
            &[],
            &LocalAddresses::read(),
        );
        assert!(plan.own.contains(&Ipv4Addr::new(127, 0, 0, 1)));
        assert!(
            plan.icmp
                .iter()
                .all(|t| t.ip != Ipv4Addr::new(198, 18, 0, 1))
        );
        // Without the local-address rule, loopback answers ICMP.
        let plan = super::plan(
            &scope,
            &targets,
            &options,
            &Routes::default(),
            &[],
            &LocalAddresses::default(),
        );
        let found = match run_plan(plan, &options, &(), &CancellationToken::new()).await {
            Ok(found) => found,
            Err(error) => panic!("run the tests as root or allow ping sockets: {error}"),
        };
        let ips: Vec<_> = found.iter().map(|a| a.ip).collect();
        assert!(ips.contains(&Ipv4Addr::new(127, 0, 0, 1)));
        assert!(
            !ips.contains(&Ipv4Addr::new(198, 18, 0, 1)),
            "outside the scope: never probed, never found"
        );
    }

    #[test]
    fn on_link_addresses_go_to_arp_and_routed_ones_to_icmp() {
        let scope = Scope::parse(
            &["198.18.0.0/22".to_owned(), "198.19.0.0/24".to_owned()],
            4096,
        )
        .expect("scope");
        let routes = Routes::parse(
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
             lab0\t000012C6\t00000000\t0001\t0\t0\t0\t00FCFFFF\n\
             lab0\t000013C6\t020012C6\t0003\t0\t0\t0\t00FFFFFF\n",
        );
        let ifaces = [EtherIface {
            name: "lab0".into(),
            mac: [2, 0, 0, 0, 0, 1],
            addrs: vec![(Ipv4Addr::new(198, 18, 0, 1), 22)],
        }];
        let local = LocalAddresses::parse("|-- 198.18.0.1\n   /32 host LOCAL\n");
        let targets = [
            Ipv4Addr::new(198, 18, 0, 1),
            Ipv4Addr::new(198, 18, 2, 9),
            Ipv4Addr::new(198, 19, 0, 7),
        ];
        let plan = plan(
            &scope,
            &targets,
            &SweepOptions::default(),
            &routes,
            &ifaces,
            &local,
        );
        assert_eq!(plan.own, [Ipv4Addr::new(198, 18, 0, 1)]);
        assert_eq!(plan.segments.len(), 1);
        assert_eq!(plan.segments[0].targets, [Ipv4Addr::new(198, 18, 2, 9)]);
        assert_eq!(plan.segments[0].source, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!(
            plan.icmp.iter().map(|t| t.ip).collect::<Vec<_>>(),
            [Ipv4Addr::new(198, 19, 0, 7)]
        );
    }
}
