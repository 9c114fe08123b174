//! Network discovery: find every live device in the configured ranges and describe it.
//!
//! One scan ([`run`]) is: an ICMP sweep of the [`Scope`] (`ping`), then, for the hosts that
//! answered and at bounded concurrency, the neighbour table and OUI vendor (`neighbors`),
//! reverse DNS (`dns`), SNMP credentials and inventory (`snmp`) and optional TCP port probes
//! (`probe`). Nothing is ever sent outside the scope: the sweep only targets it, and every
//! later stage only talks to hosts the sweep found in it. The result, a [`Sweep`], is what
//! the `scan` CLI prints and what the daemon (`app::discovery`) hands the register writer.
//! `targets` owns CIDR parsing, caps and route checks. A library: it knows nothing of the
//! register or the store.

pub mod arp;
pub mod classify;
pub mod dns;
pub mod icmp;
pub mod neighbors;
pub mod paths;
pub mod ping;
pub mod probe;
pub mod snmp;
pub mod targets;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::model::AssetKind;
pub use ping::{Alive, Method, Progress, SweepOptions};
pub use targets::{LocalAddresses, Scope, TargetError};

/// How a scan behaves beyond the sweep itself.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    pub sweep: SweepOptions,
    /// Credential sets tried in order on live hosts; empty = no SNMP.
    pub snmp_credentials: Vec<snmp::Credential>,
    pub snmp_limits: snmp::Limits,
    /// SNMP sessions at once.
    pub snmp_sessions: usize,
    /// UDP port SNMP agents listen on (161; tests may use another).
    pub snmp_port: u16,
    /// TCP ports probed on every live host; empty = none.
    pub tcp_ports: Vec<u16>,
    pub tcp_timeout: Duration,
    pub reverse_dns: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            sweep: SweepOptions::default(),
            snmp_credentials: Vec::new(),
            snmp_limits: snmp::Limits::default(),
            snmp_sessions: 64,
            snmp_port: 161,
            tcp_ports: probe::DEFAULT_PORTS.to_vec(),
            tcp_timeout: Duration::from_millis(800),
            reverse_dns: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Ping(#[from] ping::PingError),
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Targets(Vec<TargetError>),
}

/// One live host, as the scan saw it.
#[derive(Debug, Clone, Serialize)]
pub struct DiscoveredHost {
    pub ip: Ipv4Addr,
    pub rtt_ms: f64,
    /// How it answered: `arp` (the collector's own segments) or `icmp`.
    pub found_by: Method,
    /// From its ARP reply, for hosts on the collector's own segment.
    pub mac: Option<String>,
    /// The MAC's registered vendor, or "(locally administered MAC)".
    pub vendor: String,
    /// Reverse DNS name.
    pub dns_name: Option<String>,
    /// Every clue weighed together (`classify`): SNMP, enterprise number, sysDescr,
    /// sysServices, ports, MAC vendor.
    pub kind: AssetKind,
    /// Why: "router: enterprise 9 Cisco, sysServices layer 3, port 23" ("" when unknown).
    pub classification: String,
    /// The maker, from the sysObjectID's enterprise number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enterprise_vendor: Option<String>,
    pub open_ports: Vec<u16>,
    pub snmp: Option<snmp::SnmpSnapshot>,
    /// Which configured credential answered (index into the options' list).
    #[serde(skip)]
    pub snmp_credential: Option<usize>,
    /// IPv6 addresses the kernel's neighbour table holds for the host's MAC.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ipv6: Vec<String>,
}

impl DiscoveredHost {
    /// The best name we have: sysName, then reverse DNS.
    pub fn name(&self) -> Option<String> {
        self.snmp
            .as_ref()
            .map(|d| d.system.name.trim().to_owned())
            .filter(|n| !n.is_empty())
            .or_else(|| self.dns_name.clone())
    }
}

/// The outcome of one scan.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub started_at: OffsetDateTime,
    pub finished_at: OffsetDateTime,
    pub scope: Scope,
    pub probed: u64,
    pub hosts: Vec<DiscoveredHost>,
    /// This machine's own addresses in scope: never probed, never listed.
    pub own: Vec<Ipv4Addr>,
    /// The routed parts of the scope and the way to them.
    pub paths: Vec<paths::RoutedPath>,
}

/// Which credential worked for which address, so the next scan tries it first.
pub type CredentialMemory = Mutex<HashMap<Ipv4Addr, usize>>;

/// Runs one scan of `scope`.
pub async fn run(
    scope: &Scope,
    options: &ScanOptions,
    memory: &CredentialMemory,
    dns: &dns::ReverseDns,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<Sweep, ScanError> {
    let started_at = OffsetDateTime::now_utc();
    scope.check_routes().map_err(ScanError::Targets)?;
    let targets = scope.shuffled_hosts();
    let probed = targets.len() as u64;
    let routes = targets::Routes::read();
    let plan = ping::plan(
        scope,
        &targets,
        &options.sweep,
        &routes,
        &ping::ether_interfaces(),
        &LocalAddresses::read(),
    );
    let mut own = plan.own.clone();
    own.sort();
    let fulls_before = neighbors::table_fulls();
    let kernel_arp = !plan.icmp.is_empty();
    // Hosts go to SNMP as the sweep finds them: the probe burst runs alongside the sweep.
    let (found_tx, found_rx) = tokio::sync::mpsc::channel(targets.len() + 1);
    let forward = Forward {
        inner: progress,
        to_snmp: Mutex::new((!options.snmp_credentials.is_empty()).then_some(found_tx)),
    };
    let sweep = async {
        let alive = ping::run_plan(plan, &options.sweep, &forward, cancel).await;
        forward.close();
        alive
    };
    let (alive, (mut snmp, systems)) =
        tokio::join!(sweep, snmp_all(found_rx, options, memory, cancel));
    let alive = alive?;
    if kernel_arp
        && let (Some(before), Some(after)) = (fulls_before, neighbors::table_fulls())
        && after > before
    {
        tracing::warn!(
            overflows = after - before,
            "The kernel's neighbour (ARP) table overflowed during the sweep, so some hosts may have been missed; \
             raise net.ipv4.neigh.default.gc_thresh1/2/3 on this server for large ranges on its own segment"
        );
    }
    let ips: Vec<Ipv4Addr> = alive.iter().map(|a| a.ip).collect();

    let names = async {
        if options.reverse_dns {
            dns.names(&ips, 64).await
        } else {
            HashMap::new()
        }
    };
    let ports = async {
        if options.tcp_ports.is_empty() {
            Vec::new()
        } else {
            probe::open_ports(scope, &ips, &options.tcp_ports, options.tcp_timeout, 256).await
        }
    };
    let mut routed = paths::routed_parts(scope, &routes);
    let hops = paths::learn_last_hops(&mut routed, &ips, options.sweep.timeout);
    let (names, ports, ()) = tokio::join!(names, ports, hops);
    let ports: HashMap<Ipv4Addr, Vec<u16>> = ports.into_iter().collect();
    let arp = neighbors::arp_table();
    let v6 = neighbors::ipv6_by_mac();

    let mut hosts: Vec<DiscoveredHost> = alive
        .iter()
        .map(|a| {
            let mac = a.mac.clone().or_else(|| arp.get(&a.ip).cloned());
            let vendor = mac
                .as_deref()
                .map(|m| neighbors::vendor_of(m).label())
                .unwrap_or_default();
            let open_ports = ports.get(&a.ip).cloned().unwrap_or_default();
            let (snmp_credential, device) = match snmp.remove(&a.ip) {
                Some((index, device)) => (Some(index), Some(device)),
                None => (None, None),
            };
            let heard = device
                .as_ref()
                .map(|d| &d.system)
                .or_else(|| systems.get(&a.ip));
            let verdict = classify::classify(&classify::Clues {
                snmp_kind: device.as_ref().map(|d| d.kind),
                object_id: heard.map_or("", |s| s.object_id.as_str()),
                descr: heard.map_or("", |s| s.descr.as_str()),
                services: heard.and_then(|s| s.services),
                open_ports: &open_ports,
                mac_vendor: &vendor,
            });
            let ipv6 = mac
                .as_ref()
                .and_then(|m| v6.get(m))
                .cloned()
                .unwrap_or_default();
            DiscoveredHost {
                ip: a.ip,
                rtt_ms: a.rtt.as_secs_f64() * 1000.0,
                found_by: a.method,
                mac,
                vendor,
                dns_name: names.get(&a.ip).cloned(),
                kind: verdict.kind,
                classification: verdict.summary(),
                enterprise_vendor: verdict.vendor.map(str::to_owned),
                open_ports,
                snmp: device,
                snmp_credential,
                ipv6,
            }
        })
        .collect();
    hosts.sort_by_key(|h| h.ip);
    Ok(Sweep {
        started_at,
        finished_at: OffsetDateTime::now_utc(),
        scope: scope.clone(),
        probed,
        hosts,
        own,
        paths: routed,
    })
}

/// Passes progress on, and every host found to the SNMP burst.
struct Forward<'a> {
    inner: &'a dyn Progress,
    to_snmp: Mutex<Option<tokio::sync::mpsc::Sender<Ipv4Addr>>>,
}

impl Forward<'_> {
    /// The sweep is over: the burst gets no more hosts.
    fn close(&self) {
        self.to_snmp
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

impl Progress for Forward<'_> {
    fn probed(&self, count: u64) {
        self.inner.probed(count);
    }
    fn found(&self, alive: &Alive) {
        self.inner.found(alive);
        if let Some(tx) = self
            .to_snmp
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            // Room for every target: never full.
            let _ = tx.try_send(alive.ip);
        }
    }
}

/// SNMP on the live hosts as they arrive: one probe burst (every community, plus v3 engine
/// discovery, the remembered credential first), then a full inventory, with the credential
/// that answered, of the hosts that answered, at most `snmp_sessions` at once.
async fn snmp_all(
    hosts: tokio::sync::mpsc::Receiver<Ipv4Addr>,
    options: &ScanOptions,
    memory: &CredentialMemory,
    cancel: &CancellationToken,
) -> (
    HashMap<Ipv4Addr, (usize, snmp::SnmpSnapshot)>,
    HashMap<Ipv4Addr, snmp::SystemInfo>,
) {
    if options.snmp_credentials.is_empty() {
        return (HashMap::new(), HashMap::new());
    }
    let mut systems = HashMap::new();
    let credentials = &options.snmp_credentials;
    let order = |ip: Ipv4Addr| -> Vec<usize> {
        let remembered = memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ip)
            .copied();
        let mut order: Vec<usize> = (0..credentials.len()).collect();
        if let Some(first) = remembered.filter(|i| *i < order.len()) {
            order.retain(|i| *i != first);
            order.insert(0, first);
        }
        order
    };
    let permits = Arc::new(Semaphore::new(options.snmp_sessions.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let burst_options = snmp::burst::BurstOptions {
        port: options.snmp_port,
        timeout: options.snmp_limits.timeout,
        rate: 2_000,
    };
    snmp::burst::run(
        hosts,
        credentials,
        &order,
        &burst_options,
        cancel,
        &mut |ip, heard| {
            if !heard.any() {
                return;
            }
            if let Some(system) = &heard.system {
                systems.insert(ip, system.clone());
            }
            // The first credential in this host's order that answered (v3 users are checked
            // by a real query: the engine answering says nothing of the user).
            let candidates: Vec<usize> = order(ip)
                .into_iter()
                .filter(|i| match credentials[*i] {
                    snmp::Credential::V3 { .. } => heard.v3_engine,
                    _ => heard.communities.contains(i),
                })
                .collect();
            let limits = options.snmp_limits.clone();
            let permits = permits.clone();
            let target = SocketAddr::from((ip, options.snmp_port));
            let cancel = cancel.clone();
            let credentials = credentials.clone();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore is never closed");
                let work = async {
                    for index in candidates {
                        let credential = &credentials[index];
                        if matches!(credential, snmp::Credential::V3 { .. })
                            && snmp::probe(target, std::slice::from_ref(credential), &limits)
                                .await
                                .is_err()
                        {
                            continue;
                        }
                        match snmp::inventory(target, credential, &limits).await {
                            Ok(device) => return Some((index, device)),
                            Err(error) => {
                                tracing::debug!(%ip, %error, "SNMP inventory failed after the device answered");
                            }
                        }
                    }
                    None
                };
                let result = tokio::select! {
                    () = cancel.cancelled() => None,
                    r = work => r,
                };
                (ip, result)
            });
        },
    )
    .await;
    let mut found = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((ip, Some((index, device)))) => {
                memory
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(ip, index);
                found.insert(ip, (index, device));
            }
            Ok((_, None)) => {}
            Err(error) => tracing::error!(%error, "An SNMP task failed"),
        }
    }
    (found, systems)
}
